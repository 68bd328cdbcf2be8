#!/usr/bin/python3
"""Runs a PyTorch twin (bench/torch_NAME.py) once per memory format, NCHW and channels_last,
and prints one JSON line made of the better figure of the two for each field: the shorter
time, the higher rate (images_per_s, gflops), for conv_shapes each cell on its own, and the
lower peak RSS. PyTorch's oneDNN convolutions are much faster in channels_last at some
sizes (B4's 64x64 and 128x128 layers: 2x and 9x on the AVX-512 machine), so the fastest
reasonable twin is whichever layout wins. "memory_format" tells which won each figure.

Usage: /usr/bin/python3 bench/torch_fastest.py NAME [twin arguments...]
"""
import json
import os
import subprocess
import sys

name, rest = sys.argv[1], sys.argv[2:]
twin = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"torch_{name}.py")
runs = {}
for mf in ("nchw", "channels_last"):
    out = subprocess.run([sys.executable, twin, *rest, "--memory-format", mf], check=True, capture_output=True,
                         text=True).stdout
    sys.stdout.write(out.replace("\n{", f"\n[{mf}] {{").rsplit("\n", 2)[0] + "\n")
    runs[mf] = json.loads(out.strip().splitlines()[-1])
higher = {"images_per_s", "encode_images_per_s", "gflops", "sgemm_gflops", "infer_gflops", "train_gflops"}
a, b = runs["nchw"], runs["channels_last"]
best, won = {}, {}
for k, v in a.items():
    w = b.get(k)
    if k == "conv_shapes":
        best[k] = {s: [min(x, y) if x and y else (x or y) for x, y in zip(v[s], w[s])] for s in v}
    elif isinstance(v, (int, float)) and isinstance(w, (int, float)) and k not in ("threads",):
        pick_b = (w > v) if k in higher else (w < v)
        best[k] = w if pick_b else v
        if k != "peak_rss_mb":
            won[k] = "channels_last" if pick_b else "nchw"
    else:
        best[k] = v
best["memory_format"] = won
print(json.dumps(best))
