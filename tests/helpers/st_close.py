#!/usr/bin/env python3
"""st_close.py A B TOL [--meta K,..] [--skip P,..] [--only P,..] - the weights of
checkpoint B are A's to within TOL.

Every float32 tensor of safetensors file A whose name does not start with "opt_" (the
optimizer moments) must exist in B with the same shape, and the largest absolute
difference over all of them must be below TOL. Prints the largest difference; exits 1
otherwise. --meta names metadata entries that must be equal in both; --skip leaves out
tensors whose names contain one of the strings (BatchNorm's running_ statistics move
without a learning rate), --only keeps only names that start with one of the prefixes.
Used by the shell tests of the trainers' --init (tests/cli_*.sh).
"""
import json
import struct
import sys


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        if v["dtype"] == "F32":
            out[k] = (tuple(v["shape"]), struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e]))
    return out, meta


a, ma = load(sys.argv[1])
b, mb = load(sys.argv[2])
opt = dict(zip(sys.argv[4::2], (v.split(",") for v in sys.argv[5::2])))
for key in opt.get("--meta", []):
    if ma.get(key) != mb.get(key):
        sys.exit("st_close: metadata %s differs: %r vs %r" % (key, ma.get(key), mb.get(key)))
tol = float(sys.argv[3])
names = [k for k in a if not k.startswith("opt_") and not any(p in k for p in opt.get("--skip", []))
         and ("--only" not in opt or any(k.startswith(p) for p in opt["--only"]))]
if not names:
    sys.exit("st_close: no weights in " + sys.argv[1])
worst = 0.0
for k in names:
    if k not in b or b[k][0] != a[k][0]:
        sys.exit("st_close: %s missing or reshaped in %s" % (k, sys.argv[2]))
    worst = max(worst, max((abs(x - y) for x, y in zip(a[k][1], b[k][1])), default=0.0))
print("st_close: %d tensors, largest difference %.3g" % (len(names), worst))
sys.exit(0 if worst < tol else 1)
