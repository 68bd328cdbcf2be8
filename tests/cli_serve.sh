#!/bin/bash
# cli_serve.sh - `t2i serve` over HTTP with curl, on 127.0.0.1 and a free port, with the
# shipped models: every endpoint; the PNGs of a generation byte-identical to `t2i generate`'s
# rank files for the same request and seed; rerank and classify agreeing with `t2i clip
# rerank`/`classify`; a job followed by its events; a job cancelled mid-way; every error
# status (400 for each kind of bad input, 401, 404, 405, 408, 413, 429) with the server
# still answering afterwards; SIGTERM -> exit 0; SIGINT while a job runs, a generation
# waits and an event stream is open -> each is ended, exit 0.
# Usage: cli_serve.sh PATH/TO/t2i   (needs curl and python3)
source "$(dirname "$0")/lib.sh"
export T2I_THREADS=2
M="$ROOT/samples/models"
command -v curl >/dev/null || { echo "FAIL: curl is not installed (cli/setup.sh installs it)" >&2; exit 1; }

# start_server NAME ARGS...: starts t2i serve in the background, sets PID_NAME and URL_NAME
start_server() {
    local name=$1
    shift
    "$T2I" serve --port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    local pid=$! url=
    for _ in $(seq 1 600); do
        url=$(sed -n 's/^t2i serve: listening on //p' "$TMP/$name.out")
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "FAIL: $name did not start: $(cat "$TMP/$name.err")" >&2; kill "$pid" 2>/dev/null; exit 1; }
    printf -v "PID_$name" %s "$pid"
    printf -v "URL_$name" %s "$url"
}

# req METHOD PATH [BODY-FILE] [curl args...]: status in $CODE, body in $TMP/body
req() {
    local method=$1 path=$2 body=${3:-}
    shift 3 2>/dev/null || shift $#
    if [ -n "$body" ]; then
        CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json' \
                    --data-binary "@$body" "$@" "$URL$path")
    else
        CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" "$@" "$URL$path")
    fi
}

# expect CODE WHAT: the last request's status, and for errors the JSON error shape
expect() {
    if [ "$CODE" != "$1" ]; then
        fail "$2: HTTP $CODE, expected $1: $(head -c 300 "$TMP/body")"
        return 1
    fi
    if [ "$1" -ge 400 ]; then
        python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["message"] and e["type"]' \
            "$TMP/body" 2>/dev/null || fail "$2: not an {\"error\": {message, type}} body: $(head -c 300 "$TMP/body")"
    fi
    return 0
}

# bad STATUS WHAT JSON-TEXT [PATH]: POSTs the text, expects the status
bad() {
    printf '%s' "$3" >"$TMP/req.json"
    req POST "${4:-/v1/images/generations}" "$TMP/req.json"
    expect "$1" "$2"
}

py() { python3 -c "$@"; }

start_server main --batch 8 --queue 2 --max-body 300000 --max-candidates 512 --timeout 3
URL=$URL_main

# ---- simple GETs ----
req GET /health && expect 200 "GET /health" && grep -q '"status":"ok"' "$TMP/body" || fail "health body: $(cat "$TMP/body")"
req GET / && expect 200 "GET /" && grep -qi '<html' "$TMP/body" || fail "GET / is not HTML"
req GET /v1/models && expect 200 "GET /v1/models"
py 'import json,sys
d=json.load(open(sys.argv[1]))["data"]; k={m["kind"]: m for m in d}
assert set(k) == {"dalle","vq","clip"}, k.keys()
assert all(m["parameters"] > 100000 and m["file"].endswith(".safetensors") for m in d), d
assert k["dalle"]["resolution"] == 32 and k["clip"]["resolution"] > 0
import os  # an entry per CLIP of the ranking ensemble
want = ["clip"]
while len(want) < 4 and os.path.exists("%s/clip%d.safetensors" % (sys.argv[2], len(want) + 1)):
    want.append("clip%d" % (len(want) + 1))
assert [m["id"] for m in d if m["kind"] == "clip"] == want, d' "$TMP/body" "$M" || fail "models: $(cat "$TMP/body")"

# ---- a generation: the CLI's bytes ----
printf '{"prompt":"a red sneaker","n":3,"candidates":16,"seed":7,"model":"t2i","user":"x"}' >"$TMP/gen.json"
req POST /v1/images/generations "$TMP/gen.json" && expect 200 "generation"
cp "$TMP/body" "$TMP/gen_answer.json"
"$T2I" generate --prompt "a red sneaker" --candidates 16 --top 3 --seed 7 --batch 8 --out "$TMP/cli" >/dev/null 2>&1 ||
    fail "t2i generate failed"
py 'import json,sys,base64
a=json.load(open(sys.argv[1])); s=json.load(open(sys.argv[2]+"/a_red_sneaker/scores.json"))
assert len(a["data"]) == 3 and len(s) == 3
for i,(x,y) in enumerate(zip(a["data"],s)):
    png=base64.b64decode(x["b64_json"])
    assert png == open(sys.argv[2]+"/a_red_sneaker/rank_%03d.png" % i,"rb").read(), "rank %d bytes differ" % i
    assert x["candidate"] == y["candidate"] and x["seed"] == 7 and x["source"] == "dalle", (x, y)
    assert abs(x["score"] - y["score"]) < 1e-6, (x["score"], y["score"])
assert a["data"][0]["score"] >= a["data"][1]["score"] >= a["data"][2]["score"]' "$TMP/gen_answer.json" "$TMP/cli" ||
    fail "generation differs from t2i generate's"
# response_format url: the same PNG at /v1/files/...
printf '{"prompt":"a red sneaker","n":1,"candidates":16,"seed":7,"response_format":"url","size":"32x32"}' >"$TMP/gen.json"
req POST /v1/images/generations "$TMP/gen.json" && expect 200 "generation (url)"
FILE=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["data"][0]["url"])' "$TMP/body")
req GET "$FILE" && expect 200 "GET $FILE" && cmp -s "$TMP/body" "$TMP/cli/a_red_sneaker/rank_000.png" ||
    fail "$FILE is not the CLI's rank_000.png"
req GET /v1/files/job-999/0.png && expect 404 "unknown file"
# a caption word the transformer never saw in training: named in "warnings", images made anyway
printf '{"prompt":"a red giraffe sneaker","n":1,"candidates":8}' >"$TMP/gen.json"
req POST /v1/images/generations "$TMP/gen.json" && expect 200 "generation with an unknown word"
py 'import json,sys
a=json.load(open(sys.argv[1])); w=a["warnings"]
assert len(a["data"]) == 1 and len(w) == 1, a.get("warnings")
assert "the dalle model never saw the word giraffe" in w[0] and "sneaker" not in w[0].split("never saw")[1], w' \
    "$TMP/body" || fail "warnings: $(head -c 300 "$TMP/body")"
# an image prompt (completion from the top half): the CLI's bytes; bad image prompts: 400
IMGP="$TMP/cli/a_red_sneaker/rank_000.png"
py 'import json,sys,base64
json.dump({"prompt":"a blue sneaker","n":2,"candidates":8,"seed":3,"keep_rows":0.5,
           "image":base64.b64encode(open(sys.argv[2],"rb").read()).decode()}, open(sys.argv[1],"w"))' "$TMP/gen.json" "$IMGP"
req POST /v1/images/generations "$TMP/gen.json" && expect 200 "generation from an image prompt"
"$T2I" generate --prompt "a blue sneaker" --image "$IMGP" --keep-rows 0.5 --candidates 8 --top 2 --seed 3 \
    --out "$TMP/clip_img" >/dev/null 2>&1 || fail "t2i generate --image failed"
py 'import json,sys,base64
a=json.load(open(sys.argv[1]))["data"]
assert len(a) == 2
for i, x in enumerate(a):
    assert base64.b64decode(x["b64_json"]) == open(sys.argv[2] + "/a_blue_sneaker/rank_%03d.png" % i, "rb").read(), i' \
    "$TMP/body" "$TMP/clip_img" || fail "image-prompted generation differs from t2i generate's"
B64=$(py 'import sys,base64; print(base64.b64encode(open(sys.argv[1],"rb").read()).decode())' "$IMGP")
SMALL=$(py 'import base64,struct,zlib
raw=b"".join(b"\0"+b"\xff"*8 for _ in range(8))
c=lambda t,d: struct.pack(">I",len(d))+t+d+struct.pack(">I",zlib.crc32(t+d)&0xffffffff)
print(base64.b64encode(b"\x89PNG\r\n\x1a\n"+c(b"IHDR",struct.pack(">IIBBBBB",8,8,8,0,0,0,0))+c(b"IDAT",zlib.compress(raw))+c(b"IEND",b"")).decode())')
bad 400 "keep_rows without an image" '{"prompt": "a red sneaker", "keep_rows": 2}'
bad 400 "an image without a mode" "{\"prompt\": \"a red sneaker\", \"image\": \"$B64\"}"
bad 400 "an image with two modes" "{\"prompt\": \"a red sneaker\", \"image\": \"$B64\", \"keep_rows\": 2, \"variations\": true}"
bad 400 "a mask of another size" "{\"prompt\": \"a red sneaker\", \"image\": \"$B64\", \"mask\": \"$SMALL\"}"
grep -q "mask is 8x8 but the image is 32x32" "$TMP/body" || fail "mask size message: $(cat "$TMP/body")"
bad 400 "an image smaller than the VQ's" "{\"prompt\": \"a red sneaker\", \"image\": \"$SMALL\", \"variations\": true}"
grep -q "image is 8x8; the VQ needs at least 32x32" "$TMP/body" || fail "small image message: $(cat "$TMP/body")"
bad 400 "image prompts with the GAN" "{\"prompt\": \"a red sneaker\", \"image\": \"$B64\", \"keep_rows\": 2, \"generator\": \"gan\"}"

# ---- jobs and events ----
# 64 candidates (8 batches of 8): the job still runs when the event stream connects, so
# progress events come before the final one (a client arriving after the end gets only that)
printf '{"prompt":"a blue dress","n":4,"candidates":64}' >"$TMP/job.json"
req POST /v1/jobs "$TMP/job.json" && expect 202 "POST /v1/jobs"
JOB=$(py 'import json,sys; d=json.load(open(sys.argv[1])); assert d["state"]=="queued"; print(d["id"])' "$TMP/body")
curl -sN --max-time 900 "$URL/v1/jobs/$JOB/events" >"$TMP/events" # ends with the job (slow under ASan)
grep -q '^event: progress$' "$TMP/events" || fail "events: no progress event: $(head -c 300 "$TMP/events")"
grep -q '^data: {.*"progress":{"done":64,"total":64}' "$TMP/events" || fail "events: the done event lacks progress 64/64"
[ "$(grep '^event: ' "$TMP/events" | tail -1)" = "event: done" ] || fail "events: the last event is not done"
req GET "/v1/jobs/$JOB" && expect 200 "GET job"
py 'import json,sys
d=json.load(open(sys.argv[1])); assert d["state"]=="done" and d["progress"]=={"done":64,"total":64}, d
assert len(d["data"]) == 4 and d["data"][0]["url"] == "/v1/files/%s/0.png" % d["id"] and d["warnings"] == []
s=[x["score"] for x in d["data"]]; assert s == sorted(s, reverse=True)' "$TMP/body" || fail "job: $(head -c 300 "$TMP/body")"
timeout 10 curl -sN "$URL/v1/jobs/$JOB/events" >"$TMP/events2" || fail "events after the end did not end at once"
grep -q '^event: done$' "$TMP/events2" || fail "events after the end: $(head -c 200 "$TMP/events2")"
req GET /v1/jobs && expect 200 "GET /v1/jobs"
py 'import json,sys
d=json.load(open(sys.argv[1]))["data"]; assert d[0]["id"] == sys.argv[2] and "data" not in d[0] and len(d) >= 3' \
    "$TMP/body" "$JOB" || fail "job list: $(head -c 300 "$TMP/body")"
req DELETE "/v1/jobs/$JOB" && expect 200 "DELETE a done job" && grep -q '"state":"done"' "$TMP/body" ||
    fail "DELETE of a done job changed it"
req GET /v1/jobs/job-999 && expect 404 "unknown job"

# ---- a job cancelled mid-way; then a full queue ----
printf '{"prompt":"a green bag","n":2,"candidates":512}' >"$TMP/long.json"
req POST /v1/jobs "$TMP/long.json" && expect 202 "long job"
LONG=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/body")
for _ in $(seq 1 600); do
    req GET "/v1/jobs/$LONG"
    py 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["progress"]["done"] > 0 else 1)' "$TMP/body" && break
    sleep 0.1
done
# queue of 2: two wait, the third is refused
req POST /v1/jobs "$TMP/long.json" && expect 202 "queued job 1"
Q1=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/body")
req POST /v1/jobs "$TMP/long.json" && expect 202 "queued job 2"
Q2=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/body")
req POST /v1/jobs "$TMP/long.json" && expect 429 "queue full"
req GET /metrics && expect 200 "metrics (busy)" && grep -q '^t2i_queue_depth 2$' "$TMP/body" || fail "queue depth is not 2"
req DELETE "/v1/jobs/$Q2" && expect 200 "cancel a queued job" && grep -q '"state":"cancelled"' "$TMP/body" ||
    fail "queued job not cancelled: $(head -c 200 "$TMP/body")"
req DELETE "/v1/jobs/$Q1" && expect 200 "cancel a queued job"
T0=$(date +%s.%N)
req DELETE "/v1/jobs/$LONG" && expect 200 "cancel the running job"
T1=$(date +%s.%N)
py 'import json,sys
d=json.load(open(sys.argv[1])); assert d["state"]=="cancelled" and 0 < d["progress"]["done"] < 512 and "data" not in d, d' \
    "$TMP/body" || fail "running job not cancelled mid-way: $(head -c 300 "$TMP/body")"
echo "cancelled a running job in $(py "print(round($T1 - $T0, 2))") s"
req GET /health && expect 200 "health after the cancel"

# ---- rerank and classify, against the CLI ----
R0="$TMP/cli/a_red_sneaker/rank_000.png" R2="$TMP/cli/a_red_sneaker/rank_002.png"
PHOTO="$ROOT/tests/data/img/jpeg_rgb444.jpg"
py 'import json,sys,base64
imgs=[base64.b64encode(open(f,"rb").read()).decode() for f in sys.argv[2:]]
imgs[1]="data:image/jpeg;base64,"+imgs[1]
json.dump({"prompt":"a red sneaker","images":imgs}, open(sys.argv[1],"w"))' "$TMP/rr.json" "$R2" "$PHOTO" "$R0"
req POST /v1/rerank "$TMP/rr.json" && expect 200 "rerank"
# the server ranks with the shipped ensemble (clip2, clip3... beside clip) and test-time
# flipping, as generate does
RR_CKPT="$M/clip.safetensors"
for k in 2 3 4; do
    [ -f "$M/clip$k.safetensors" ] || break
    RR_CKPT="$RR_CKPT,$M/clip$k.safetensors"
done
"$T2I" clip rerank --ckpt "$RR_CKPT" --tta-flip --prompt "a red sneaker" --json "$R2" "$PHOTO" "$R0" \
    >"$TMP/cli_rr.json" 2>/dev/null ||
    fail "t2i clip rerank failed"
py 'import json,sys
d=json.load(open(sys.argv[1]))["data"]; c=json.load(open(sys.argv[2])); files=sys.argv[3:]
assert [x["index"] for x in d] == [files.index(x["path"]) for x in c], (d, c)
for x, y in zip(d, c): assert abs(x["score"] - y["cosine"]) < 1e-5, (x, y)
g=json.load(open(sys.argv[5].rsplit("/",1)[0]+"/scores.json"))
r0=[x for x in d if x["index"]==2][0]["score"]; assert abs(r0 - g[0]["score"]) < 1e-4, (r0, g[0])' \
    "$TMP/body" "$TMP/cli_rr.json" "$R2" "$PHOTO" "$R0" || fail "rerank differs from the CLI: $(cat "$TMP/body")"
py 'import json,sys,base64
json.dump({"image":base64.b64encode(open(sys.argv[2],"rb").read()).decode(),
           "labels":["a red sneaker","a blue dress","a green bag"]}, open(sys.argv[1],"w"))' "$TMP/cl.json" "$R0"
req POST /v1/classify "$TMP/cl.json" && expect 200 "classify"
"$T2I" clip classify "$R0" --ckpt "$M/clip.safetensors" --tta-flip --json --labels "a red sneaker" "a blue dress" "a green bag" \
    >"$TMP/cli_cl.json" 2>/dev/null || fail "t2i clip classify failed"
py 'import json,sys
d=json.load(open(sys.argv[1]))["data"]; c=json.load(open(sys.argv[2]))["labels"]
assert abs(sum(x["probability"] for x in d) - 1) < 1e-5, d
assert [x["label"] for x in d] == [x["label"] for x in c], (d, c)
for x, y in zip(d, c): assert abs(x["probability"] - y["prob"]) < 1e-4, (x, y)' "$TMP/body" "$TMP/cli_cl.json" ||
    fail "classify differs from the CLI: $(cat "$TMP/body") vs $(cat "$TMP/cli_cl.json")"

# ---- every kind of bad input: 400, and the server keeps answering ----
bad 400 "malformed JSON" '{"prompt": "a red'
bad 400 "not an object" '["a red sneaker"]'
bad 400 "empty body" ''
bad 400 "missing prompt" '{"n": 1}'
bad 400 "prompt of the wrong type" '{"prompt": 42}'
bad 400 "n of the wrong type" '{"prompt": "a red sneaker", "n": "2"}'
bad 400 "fractional n" '{"prompt": "a red sneaker", "n": 1.5}'
bad 400 "n 0" '{"prompt": "a red sneaker", "n": 0}'
bad 400 "n over the candidates" '{"prompt": "a red sneaker", "n": 20, "candidates": 16}'
bad 400 "candidates 0" '{"prompt": "a red sneaker", "candidates": 0}'
bad 400 "candidates over --max-candidates" '{"prompt": "a red sneaker", "candidates": 513}'
bad 400 "negative seed" '{"prompt": "a red sneaker", "seed": -1}'
bad 400 "top_p over 1" '{"prompt": "a red sneaker", "top_p": 1.5}'
bad 400 "temperature 0" '{"prompt": "a red sneaker", "temperature": 0}'
bad 400 "upscale without an upscaler" '{"prompt": "a red sneaker", "upscale": true}'
bad 400 "upscale not a bool" '{"prompt": "a red sneaker", "upscale": "yes"}'
bad 400 "generator not loaded" '{"prompt": "a red sneaker", "generator": "gan"}'
bad 400 "unknown generator" '{"prompt": "a red sneaker", "generator": "sdxl"}'
bad 400 "wrong size" '{"prompt": "a red sneaker", "size": "1024x1024"}'
bad 400 "unknown response_format" '{"prompt": "a red sneaker", "response_format": "png"}'
bad 400 "empty prompt" '{"prompt": "   "}'
bad 400 "control character" '{"prompt": "a red\u0001 sneaker"}'
grep -q 'prompt' "$TMP/body" || fail "the error does not name the field: $(cat "$TMP/body")"
printf '{"prompt": "a red \xff\xfe sneaker"}' >"$TMP/req.json"
req POST /v1/images/generations "$TMP/req.json" && expect 400 "non-UTF-8 prompt"
grep -q 'UTF-8' "$TMP/body" || fail "non-UTF-8: $(cat "$TMP/body")"
py 'import json,sys; json.dump({"prompt": "a red sneaker " * 7500}, open(sys.argv[1], "w"))' "$TMP/req.json"
req POST /v1/jobs "$TMP/req.json" && expect 400 "100 kB prompt"
py 'import json,sys; json.dump({"prompt": "x", "images": ["a" * 400000]}, open(sys.argv[1], "w"))' "$TMP/req.json"
req POST /v1/rerank "$TMP/req.json" && expect 413 "body over --max-body"
req POST /v1/rerank "$TMP/req.json" -H 'Transfer-Encoding: chunked' && expect 413 "chunked body over --max-body"
bad 400 "rerank without images" '{"prompt": "a red sneaker"}' /v1/rerank
bad 400 "rerank with no image" '{"prompt": "a red sneaker", "images": []}' /v1/rerank
bad 400 "rerank image not base64" '{"prompt": "a red sneaker", "images": ["%%%"]}' /v1/rerank
bad 400 "rerank image of the wrong type" '{"prompt": "a red sneaker", "images": [7]}' /v1/rerank
bad 400 "rerank: not an image" "{\"prompt\": \"a red sneaker\", \"images\": [\"$(printf 'just some text, no image' | base64 -w0)\"]}" /v1/rerank
grep -q 'images\[0\]' "$TMP/body" || fail "not-an-image error does not name images[0]: $(cat "$TMP/body")"
head -c 300 "$R0" >"$TMP/cut.png"
bad 400 "rerank: a cut PNG" "{\"prompt\": \"a red sneaker\", \"images\": [\"$(base64 -w0 "$TMP/cut.png")\"]}" /v1/rerank
# a PNG whose header claims 100000 x 100000 pixels (over the pixel limit)
py 'import struct,zlib,sys,base64
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + \
      chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
print(base64.b64encode(png).decode())' >"$TMP/huge.b64"
bad 400 "classify: a huge image" "{\"image\": \"$(cat "$TMP/huge.b64")\", \"labels\": [\"a\", \"b\"]}" /v1/classify
bad 400 "classify with one label" "{\"image\": \"$(base64 -w0 "$R0")\", \"labels\": [\"a red sneaker\"]}" /v1/classify
bad 400 "classify label of the wrong type" "{\"image\": \"$(base64 -w0 "$R0")\", \"labels\": [\"a\", null]}" /v1/classify
bad 400 "classify without image" '{"labels": ["a", "b"]}' /v1/classify
req GET /v1/nothing && expect 404 "unknown path"
req GET /v1/jobs/job-1/other && expect 404 "unknown job sub-path"
req GET /v1/rerank && expect 405 "GET /v1/rerank"
req PUT /v1/jobs && expect 405 "PUT /v1/jobs"
req POST /health && expect 405 "POST /health"
# a client that sends part of a body and stalls is cut off after --timeout (3 s)
if exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"; then
    printf 'POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pr' >&3
    if timeout 15 cat <&3 >"$TMP/slow"; then :; else fail "a stalled client was not cut off within 15 s"; fi
    exec 3<&-
fi
# a client that sends its headers a byte every 0.3 s (never idle for long, so libmicrohttpd's
# idle timeout never fires) is cut off once its headers have taken --timeout (3 s)
py 'import socket,sys,time
s=socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
t0=time.time()
try:
    while time.time() - t0 < 20:
        s.sendall(b"X-Slow: " if int((time.time() - t0) / 0.3) % 40 == 0 else b"a")
        time.sleep(0.3)
        s.setblocking(False)
        try:
            if s.recv(100) == b"": break
        except BlockingIOError: pass
        s.setblocking(True)
except (BrokenPipeError, ConnectionResetError): pass
dt=time.time() - t0
assert 2.5 < dt < 10, "cut off after %.1f s" % dt
print("a byte-a-0.3-s client was cut off after %.1f s" % dt)' "${URL##*:}" || fail "a client trickling its headers was not cut off"
req GET /health && expect 200 "health after the bad requests"

# ---- metrics after all this ----
req GET /metrics && expect 200 "metrics"
for want in 't2i_requests_total{endpoint="/v1/images/generations",status="200"} 4' \
            't2i_requests_total{endpoint="/v1/jobs",status="429"} 1' 't2i_jobs_total{state="cancelled"} 3' \
            't2i_images_generated_total 11' 't2i_generation_seconds_count 5' 't2i_queue_depth 0' \
            't2i_connections_cut_total 1'; do
    grep -qF "$want" "$TMP/body" || fail "metrics lack '$want'"
done
grep -qE '^t2i_resident_memory_bytes [1-9][0-9]{6,}$' "$TMP/body" || fail "metrics: no resident memory"

# ---- SIGTERM: exit 0 ----
kill -TERM "$PID_main"
wait "$PID_main"
rc=$?
[ "$rc" -eq 0 ] || fail "SIGTERM: exit $rc, expected 0: $(tail -3 "$TMP/main.err")"

# ---- an API key ----
# (this server also runs both generators and the upscaler: their PNGs are the CLI's too)
T2I_API_KEY=s3cret start_server auth --batch 8 --generator both --upscale "$M/sr.safetensors"
URL=$URL_auth
req GET /v1/models && expect 401 "no key"
req GET /v1/models "" -H 'Authorization: Bearer wrong' && expect 401 "wrong key"
req GET /v1/models "" -H 'Authorization: Bearer s3cret' && expect 200 "right key"
py 'import json,sys
k={m["kind"]: m["resolution"] for m in json.load(open(sys.argv[1]))["data"]}
assert k["gan"] == 32 and k["upscale"] == 128, k' "$TMP/body" || fail "models (both, upscale): $(cat "$TMP/body")"
req GET /health && expect 200 "health needs no key"
# every candidate of both generators is kept (n = 16 of 8 + 8), so both sources are in the
# answer whichever ranks higher
printf '{"prompt":"a red sneaker","n":16,"candidates":8,"seed":5,"size":"128x128"}' >"$TMP/gen.json"
req POST /v1/images/generations "$TMP/gen.json" -H 'Authorization: Bearer s3cret' && expect 200 "generation (both, upscaled)"
"$T2I" generate --prompt "a red sneaker" --generator both --gan "$M/gan.safetensors" --upscale "$M/sr.safetensors" \
    --candidates 8 --top 16 --seed 5 --batch 8 --out "$TMP/cli_up" >/dev/null 2>&1 || fail "t2i generate --upscale failed"
py 'import json,sys,base64
a=json.load(open(sys.argv[1]))["data"]; s=json.load(open(sys.argv[2]+"/a_red_sneaker/scores.json"))
assert len(a) == 16 and sorted(x["source"] for x in a) == ["dalle"] * 8 + ["gan"] * 8, [x["source"] for x in a]
for i,(x,y) in enumerate(zip(a,s)):
    png=base64.b64decode(x["b64_json"])
    assert png[16:24] == bytes([0,0,0,128,0,0,0,128]), "rank %d is not 128x128" % i
    assert png == open(sys.argv[2]+"/a_red_sneaker/rank_%03d.png" % i,"rb").read(), "rank %d bytes differ" % i
    assert x["candidate"] == y["candidate"] and x["source"] == y["source"], (x, y)' "$TMP/body" "$TMP/cli_up" ||
    fail "the upscaled generation of both generators differs from t2i generate's"

# ---- SIGINT while busy: the running job is cancelled, a waiting generation gets 503, an
# event stream ends with "cancelled", and the server exits 0 ----
printf '{"prompt":"a green bag","n":2,"candidates":2048}' >"$TMP/long.json"
req POST /v1/jobs "$TMP/long.json" -H 'Authorization: Bearer s3cret' && expect 202 "long job (auth)"
LONG=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/body")
for _ in $(seq 1 600); do
    req GET "/v1/jobs/$LONG" "" -H 'Authorization: Bearer s3cret'
    grep -q '"state":"running"' "$TMP/body" && break
    sleep 0.1
done
curl -sN --max-time 120 -H 'Authorization: Bearer s3cret' "$URL/v1/jobs/$LONG/events" >"$TMP/stop_events" &
EV=$!
curl -s --max-time 120 -o "$TMP/stop_sync" -w '%{http_code}' -H 'Authorization: Bearer s3cret' \
    --data-binary @"$TMP/long.json" "$URL/v1/images/generations" >"$TMP/stop_sync_code" &
SY=$!
for _ in $(seq 1 300); do # the stream has its first event and the generation waits in the queue
    grep -q '^event: progress$' "$TMP/stop_events" && curl -s "$URL/health" | grep -q '"queue":1' && break
    sleep 0.1
done
kill -INT "$PID_auth"
wait "$PID_auth"
rc=$?
[ "$rc" -eq 0 ] || fail "SIGINT while busy: exit $rc, expected 0: $(tail -3 "$TMP/auth.err")"
wait "$EV" "$SY"
[ "$(grep '^event: ' "$TMP/stop_events" | tail -1)" = "event: cancelled" ] ||
    fail "the event stream did not end with cancelled: $(tail -c 300 "$TMP/stop_events")"
[ "$(cat "$TMP/stop_sync_code")" = 503 ] || fail "the waiting generation got HTTP $(cat "$TMP/stop_sync_code"), not 503"
grep -q '"type":"unavailable"' "$TMP/stop_sync" || fail "the waiting generation's answer: $(head -c 300 "$TMP/stop_sync")"

finish
