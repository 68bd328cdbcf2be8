#!/usr/bin/python3
"""PyTorch counterpart of `t2i bench b4` (bench/README.md B4, same sizes and reporting).

SRResNet-lite x4: Conv3x3(3, 64) -> ReLU, 8 residual blocks (Conv3x3 -> ReLU -> Conv3x3, + skip,
no norm), Conv3x3(64, 64) + global skip, twice [Conv3x3(64, 256) -> PixelShuffle(2) -> ReLU],
Conv3x3(64, 3); PyTorch default init (tests/ref/models/srresnet.py).
  infer_ms           one 128x128 image -> 512x512 (no_grad)
  train_ms_per_step  batch 16 of 32x32 LR / 128x128 HR, L1 loss, Adam lr 1e-4
                     (zero_grad + forward + backward + step)
  gflops             achieved GFLOP/s over both (multiply-adds = 2 flops, backward = 2x forward)

Usage: /usr/bin/python3 bench/torch_b4.py --threads 2 [--reps 5 --warmup 2]
Prints readable lines and one JSON line like t2i's, with "impl": "pytorch".
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from models.srresnet import SRGenerator  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw",
                help="layout of the model and its images (bench/torch_fastest.py tries both)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(4)


def conv_flops(cin, cout, pixels):
    return 2.0 * cin * cout * 9 * pixels


def forward_flops(h, w):
    p = h * w
    f = conv_flops(3, 64, p) + 17 * conv_flops(64, 64, p)  # head, 16 block convs, mid
    f += conv_flops(64, 256, p) + conv_flops(64, 256, 4 * p) + conv_flops(64, 3, 16 * p)
    return f


def timeit(fn):
    for _ in range(a.warmup):
        fn()
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


mf = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
g = SRGenerator().to(memory_format=mf)
nparams = sum(p.numel() for p in g.parameters())
x = (torch.rand(1, 3, 128, 128) * 2 - 1).contiguous(memory_format=mf)
lr = (torch.rand(16, 3, 32, 32) * 2 - 1).contiguous(memory_format=mf)
hr = (torch.rand(16, 3, 128, 128) * 2 - 1).contiguous(memory_format=mf)
opt = torch.optim.Adam(g.parameters(), lr=1e-4)


def infer():
    with torch.no_grad():
        g(x)


def train():
    opt.zero_grad()
    F.l1_loss(g(lr), hr).backward()
    opt.step()


infer_flop = forward_flops(128, 128)
train_flop = 3 * 16 * forward_flops(32, 32)
print(f"b4: G {nparams} parameters, {infer_flop * 1e-9:.2f} GFLOP per 128x128 -> 512x512 forward, {a.threads} threads")
ti = timeit(infer)
print(f"infer 128x128 -> 512x512: {ti * 1e3:.1f} ms ({infer_flop / ti * 1e-9:.1f} GFLOP/s)")
tt = timeit(train)
print(f"train step, batch 16 (32x32 -> 128x128), L1, Adam: {tt * 1e3:.1f} ms ({train_flop / tt * 1e-9:.1f} GFLOP/s)")
print(json.dumps({"bench": "b4", "impl": "pytorch", "threads": a.threads, "memory_format": a.memory_format,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "gflops": round((infer_flop + train_flop) / (ti + tt) * 1e-9, 1),
                  "infer_ms": round(ti * 1e3, 2), "train_ms_per_step": round(tt * 1e3, 2),
                  "infer_gflops": round(infer_flop / ti * 1e-9, 1), "train_gflops": round(train_flop / tt * 1e-9, 1)}))
