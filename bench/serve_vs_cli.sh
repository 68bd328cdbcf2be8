#!/usr/bin/env bash
# serve_vs_cli.sh - what loading the models once buys: `t2i serve` against one `t2i generate`
# process per request, with the shipped models.
#
#   bash bench/serve_vs_cli.sh [build/t2i] [--requests N] [--candidates C]
#
# For concurrency 1 and 4: N requests (default 8) of C candidates (default 64), top 4, each
# with its own seed, sent as POST /v1/images/generations to one server, or run as
# `t2i generate` processes (at most `concurrency` at a time). Prints the first request's
# latency (the CLI's includes loading the models; the server's start-up is printed apart),
# the median latency, and images/s over the whole batch; then p50/p95 of 50 /v1/rerank (4
# images) and 50 /v1/classify (3 labels) requests one at a time, and the idle server's
# resident memory. Also the CPU (model name, AVX2/AVX-512) and the load average, since
# other work on the machine moves every number. Markdown on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
T2I=$(realpath -e "${1:-build/t2i}")
shift || true
N=8 C=64
while [ $# -gt 0 ]; do
    case $1 in
    --requests) N=$2; shift 2 ;;
    --candidates) C=$2; shift 2 ;;
    *) echo "usage: $0 [T2I] [--requests N] [--candidates C]" >&2; exit 2 ;;
    esac
done
exec python3 - "$T2I" "$N" "$C" <<'EOF'
import base64, http.client, json, os, re, statistics, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

t2i, N, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
TOP = 4
cpu = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", cpu).group(1)
flags = re.search(r"flags\s*:\s*(.*)", cpu).group(1).split()
print("CPU: %s, %d cores, avx2 %s, avx512f %s; load average before: %s" % (
    model, os.cpu_count(), "yes" if "avx2" in flags else "no", "yes" if "avx512f" in flags else "no",
    open("/proc/loadavg").read().split()[0]))
print("Requests: %d x (\"a red sneaker\", candidates %d, top %d, seeds 1..%d)\n" % (N, C, TOP, N))

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

t0 = time.time()
srv = subprocess.Popen([t2i, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = int(srv.stdout.readline().rsplit(":", 1)[1])
startup = time.time() - t0

def post(path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    t = time.time()
    c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    c.close()
    assert r.status == 200, (r.status, out[:200])
    return time.time() - t, json.loads(out)

def serve_one(seed):
    return post("/v1/images/generations", {"prompt": "a red sneaker", "n": TOP, "candidates": C, "seed": seed})[0]

tmp = tempfile.mkdtemp()
def cli_one(seed):
    t = time.time()
    subprocess.run([t2i, "generate", "--prompt", "a red sneaker", "--candidates", str(C), "--top", str(TOP),
                    "--seed", str(seed), "--out", "%s/%d" % (tmp, seed)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.time() - t

print("| way | concurrency | first request (s) | median latency (s) | images/s |")
print("|---|---|---|---|---|")
for conc in (1, 4):
    for name, fn in (("t2i serve (loaded once)", serve_one), ("t2i generate per request", cli_one)):
        t = time.time()
        with ThreadPoolExecutor(conc) as ex:
            lat = list(ex.map(fn, range(1, N + 1)))
        wall = time.time() - t
        print("| %s | %d | %.2f | %.2f | %.1f |" % (name, conc, lat[0], statistics.median(lat), N * TOP / wall))
print("\nServer start-up (models loaded, listening): %.2f s\n" % startup)

_, g = post("/v1/images/generations", {"prompt": "a red sneaker", "n": 4, "candidates": 16})
imgs = [d["b64_json"] for d in g["data"]]
rr = [post("/v1/rerank", {"prompt": "a red sneaker", "images": imgs})[0] for _ in range(50)]
cl = [post("/v1/classify", {"image": imgs[0], "labels": ["a red sneaker", "a blue dress", "a green bag"]})[0]
      for _ in range(50)]
print("| request | p50 (ms) | p95 (ms) |")
print("|---|---|---|")
print("| POST /v1/rerank, 4 images | %.1f | %.1f |" % (1000 * pct(rr, 50), 1000 * pct(rr, 95)))
print("| POST /v1/classify, 3 labels | %.1f | %.1f |" % (1000 * pct(cl, 50), 1000 * pct(cl, 95)))
time.sleep(1)
rss = [l for l in open("/proc/%d/status" % srv.pid) if l.startswith("VmRSS")][0].split()[1]
print("\nIdle server resident memory (VmRSS): %.1f MB; load average after: %s" % (
    int(rss) / 1024, open("/proc/loadavg").read().split()[0]))
srv.terminate()
srv.wait()
subprocess.run(["rm", "-rf", tmp])
EOF
