#!/usr/bin/python3
"""PyTorch counterpart of `t2i bench b5` (bench/README.md B5: the VQ image tokenizer).

Same network as dalle_tok/vq.h preset "b5" (tests/ref/models/vq.py at its defaults; PyTorch
default init, biases on):
  encoder Conv3x3(3,64) ReLU Conv4x4 s2 p1 (64,128) ReLU Conv4x4 s2 p1 (128,128) ReLU
          2 x [x + Conv1x1(128,128)(ReLU(Conv3x3(128,128)(ReLU(x))))] Conv1x1(128,64)
  decoder Conv3x3(64,128) 2 x residual block ReLU ConvT4x4 s2 p1 (128,128) ReLU
          ConvT4x4 s2 p1 (128,64) ReLU Conv3x3(64,3)
  quantizer codebook 512 x 64, nearest by |z|^2 - 2 z.e + |e|^2, straight-through,
          commitment 0.25, EMA update (decay 0.99, Laplace eps 1e-5).
Same step: zero grad + forward + backward + Adam (lr 3e-4) + EMA update at batch 64, after
one untimed step and a codebook initialised from encoder outputs; encode = encoder + nearest
code of 1024 images in chunks of 64 under no_grad. Same random FC32-like inputs (not the
same values: only the shapes matter for timing), made as the test reference makes its own.

Usage: /usr/bin/python3 bench/torch_b5.py --threads 2 [--reps 5]
Prints readable lines and one JSON line like t2i's, with "impl": "pytorch".
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from models.vq import BETA, DECAY, EPS, VQ, D, K, blob_images, ema_update, losses, nearest, rows  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--encode-n", type=int, default=1024)
ap.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw",
                help="layout of the model and its images (bench/torch_fastest.py tries both)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

mf = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
model = VQ().to(memory_format=mf)
n_params = sum(p.numel() for p in model.parameters())
opt = torch.optim.Adam(model.parameters(), lr=3e-4)

rng = np.random.default_rng(42)
x = blob_images(max(a.batch, a.encode_n), rng)
x = x.contiguous(memory_format=mf)
xb = x[:a.batch].contiguous(memory_format=mf)

with torch.no_grad():
    z0 = rows(model.encode(xb))
    codebook = z0[torch.randperm(z0.shape[0])[:K]].clone()
ema_count = torch.ones(K)
ema_sum = codebook.clone()


def train_step():
    global codebook
    opt.zero_grad()
    loss, _, _, zf, idx = losses(model, codebook, xb, BETA)
    loss.backward()
    opt.step()
    codebook, _ = ema_update(ema_count, ema_sum, idx, zf, DECAY, EPS)


def encode():
    with torch.no_grad():
        for i in range(0, a.encode_n, 64):
            nearest(rows(model.encode(x[i:i + 64])), codebook)


def timeit(fn, warmup=1, reps=a.reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def conv_flops(fn, shape):
    """2 x multiply-adds of the convolutions of one pass of fn (model.encode or model.decode)
    over one item."""
    total, hooks = [0.0], []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += 2.0 * out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += 2.0 * inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]

    for m in model.modules():
        hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        fn(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total[0]


print(f"b5: VQ tokenizer (PyTorch {torch.__version__}), {n_params} parameters, codebook {K} x {D}, "
      f"{a.threads} threads")
f_enc = conv_flops(model.encode, (3, 32, 32)) + 2.0 * 64 * K * D
f_img = f_enc + conv_flops(model.decode, (D, 8, 8))
t_train = timeit(train_step)
train_flop = 3.0 * f_img * a.batch
print(f"train step (batch {a.batch}): {t_train * 1e3:.1f} ms ({train_flop / t_train * 1e-9:.1f} GFLOP/s, "
      f"{a.batch / t_train:.0f} images/s)")
t_enc = timeit(encode)
print(f"encode {a.encode_n} images: {t_enc * 1e3:.1f} ms ({a.encode_n / t_enc:.0f} images/s, "
      f"{f_enc * a.encode_n / t_enc * 1e-9:.1f} GFLOP/s)")
print(json.dumps({"bench": "b5", "impl": "pytorch", "threads": a.threads, "memory_format": a.memory_format,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "gflops": round(train_flop / t_train * 1e-9, 1),
                  "train_ms_per_step": round(t_train * 1e3, 2),
                  "encode_images_per_s": round(a.encode_n / t_enc, 1)}))
