#!/usr/bin/env python3
"""serve_load.py - a bounded load test of `t2i serve` (python3 standard library only).

Starts the server on 127.0.0.1 and a free port with the shipped models, warms it up with
one round of every kind of request from 8 concurrent clients, reads its resident memory
(VmRSS of /proc/PID/status), then runs 8 concurrent clients, each sending a fixed mix of
small generations, reranks, classifications and bad requests (malformed JSON, a corrupt
image, an unknown path, a wrong method, a field out of range). Checks that every request
gets its expected status and a well-formed body, that the server is alive afterwards, that
its resident memory after the run is within 10% of after the warm-up (no leak per
request; in a sanitizer build LeakSanitizer checks the server at its exit instead), and
that SIGTERM ends it with exit 0.

Usage: serve_load.py PATH/TO/t2i [--rounds N]   (exit 1 on any failure)
"""
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

CLIENTS = 8
ROOT = os.environ.get("T2I_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        out = r.read()
        c.close()
        return r.status, r.getheader("Content-Type", ""), out


def main():
    t2i = sys.argv[1]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    err = tempfile.TemporaryFile(mode="w+")  # not a pipe: nobody reads it while the server runs
    srv = subprocess.Popen([t2i, "serve", "--port", "0", "--batch", "4", "--queue", "64"], stdout=subprocess.PIPE,
                           stderr=err, env=env, text=True)
    line = srv.stdout.readline()
    if not line.startswith("t2i serve: listening on http://"):
        err.seek(0)
        print("FAIL: the server did not start: %r %s" % (line, err.read()), file=sys.stderr)
        return 1
    port = int(line.rsplit(":", 1)[1])
    cl = Client(port)
    fails = []
    lock = threading.Lock()

    def expect(what, got, want, ctype, body):
        ok = got == want
        if ok and want < 300 and "json" in ctype:
            ok = isinstance(json.loads(body), dict)
        if ok and want >= 400:
            e = json.loads(body).get("error", {})
            ok = bool(e.get("message")) and bool(e.get("type"))
        if not ok:
            with lock:
                fails.append("%s: HTTP %d (expected %d): %s" % (what, got, want, body[:200]))

    # images for rerank/classify: a generated PNG and a JPEG
    st, ct, body = cl.request("POST", "/v1/images/generations", {"prompt": "a red sneaker", "n": 2, "candidates": 4})
    if st != 200:
        print("FAIL: first generation: %d %s" % (st, body[:300]), file=sys.stderr)
        srv.kill()
        return 1
    pngs = [d["b64_json"] for d in json.loads(body)["data"]]
    with open(os.path.join(ROOT, "tests/data/img/jpeg_rgb444.jpg"), "rb") as f:
        jpeg = base64.b64encode(f.read()).decode()
    mix = [
        ("generation", "POST", "/v1/images/generations",
         {"prompt": "a blue dress", "n": 2, "candidates": 4, "seed": 3}, 200),
        ("rerank", "POST", "/v1/rerank", {"prompt": "a red sneaker", "images": pngs + [jpeg]}, 200),
        ("classify", "POST", "/v1/classify", {"image": pngs[0], "labels": ["a red sneaker", "a blue dress", "a bag"]},
         200),
        ("malformed JSON", "POST", "/v1/jobs", b'{"prompt": "a red', 400),
        ("corrupt image", "POST", "/v1/classify", {"image": base64.b64encode(b"\x89PNG\r\n\x1a\nrubbish").decode(),
                                                   "labels": ["a", "b"]}, 400),
        ("unknown path", "GET", "/v1/nothing", None, 404),
        ("wrong method", "DELETE", "/v1/rerank", None, 405),
        ("n out of range", "POST", "/v1/images/generations", {"prompt": "a bag", "n": 0}, 400),
        ("health", "GET", "/health", None, 200),
        ("models", "GET", "/v1/models", None, 200),
        ("metrics", "GET", "/metrics", None, 200),
        ("rerank", "POST", "/v1/rerank", {"prompt": "a bag", "images": [jpeg]}, 200),
        ("classify", "POST", "/v1/classify", {"image": jpeg, "labels": ["a photo", "a drawing"]}, 200),
    ]
    counts = {"requests": 0}

    def client(k, n_rounds):
        for r in range(n_rounds):
            for i in range(len(mix)):
                what, method, path, body, want = mix[(i + k) % len(mix)]
                if what == "generation" and (r + k) % 3:  # a third of the rounds: generations are the slow part
                    continue
                try:
                    st, ct, out = cl.request(method, path, body)
                except Exception as e:  # a dropped connection is a failure, not a crash of the test
                    with lock:
                        fails.append("%s: %r" % (what, e))
                    continue
                expect(what, st, want, ct, out)
                with lock:
                    counts["requests"] += 1

    def run(n_rounds):
        ts = [threading.Thread(target=client, args=(k, n_rounds)) for k in range(CLIENTS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    t0 = time.time()
    run(1)
    warm = rss_kb(srv.pid)
    t1 = time.time()
    run(rounds)
    after = rss_kb(srv.pid)
    t2 = time.time()
    st, _, _ = cl.request("GET", "/health")
    if st != 200:
        fails.append("health after the run: %d" % st)
    print("serve_load: %d requests from %d clients (warm-up %.1f s, run %.1f s); RSS %d kB after warm-up, %d kB after"
          % (counts["requests"], CLIENTS, t1 - t0, t2 - t1, warm, after))
    if "detect_leaks=1" in os.environ.get("ASAN_OPTIONS", ""):
        # AddressSanitizer keeps freed blocks in its quarantine (up to 256 MB), so resident
        # memory grows without a leak; there LeakSanitizer checks the server at its exit
        # (the sanitizer_reports test fails on any report)
        print("serve_load: under AddressSanitizer the RSS bound is LeakSanitizer's job at exit")
    elif after > warm * 1.10:
        fails.append("resident memory grew from %d kB to %d kB (more than 10%%)" % (warm, after))
    srv.send_signal(signal.SIGTERM)
    try:
        rc = srv.wait(timeout=120)
    except subprocess.TimeoutExpired:
        srv.kill()
        rc = "timeout"
    if rc != 0:
        err.seek(0)
        fails.append("SIGTERM: exit %s: %s" % (rc, err.read()[-500:]))
    for f in fails[:20]:
        print("FAIL: " + f, file=sys.stderr)
    if fails:
        print("serve_load: %d failure(s)" % len(fails), file=sys.stderr)
        return 1
    print("serve_load: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
