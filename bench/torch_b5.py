#!/usr/bin/python3
"""PyTorch counterpart of `t2i bench b5` (bench/README.md B5: the VQ image tokenizer).

Same network as dalle_tok/vq.h preset "b5" (PyTorch default init, biases on):
  encoder Conv3x3(3,64) ReLU Conv4x4 s2 p1 (64,128) ReLU Conv4x4 s2 p1 (128,128) ReLU
          2 x [x + Conv1x1(128,128)(ReLU(Conv3x3(128,128)(ReLU(x))))] Conv1x1(128,64)
  decoder Conv3x3(64,128) 2 x residual block ReLU ConvT4x4 s2 p1 (128,128) ReLU
          ConvT4x4 s2 p1 (128,64) ReLU Conv3x3(64,3)
  quantizer codebook 512 x 64, nearest by |z|^2 - 2 z.e + |e|^2, straight-through,
          commitment 0.25, EMA update (decay 0.99, Laplace eps 1e-5).
Same step: zero grad + forward + backward + Adam (lr 3e-4) + EMA update at batch 64, after
one untimed step and a codebook initialised from encoder outputs; encode = encoder + nearest
code of 1024 images in chunks of 64 under no_grad. Same random FC32-like inputs (not the
same values: only the shapes matter for timing).

Usage: /usr/bin/python3 bench/torch_b5.py --threads 2 [--reps 5]
Prints readable lines and one JSON line like t2i's, with "impl": "pytorch".
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--encode-n", type=int, default=1024)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
K, D, BETA, DECAY, EPS = 512, 64, 0.25, 0.99, 1e-5


class Res(torch.nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.c3 = torch.nn.Conv2d(c, h, 3, 1, 1)
        self.c1 = torch.nn.Conv2d(h, c, 1)

    def forward(self, x):
        return x + self.c1(F.relu(self.c3(F.relu(x))))


enc = torch.nn.Sequential(
    torch.nn.Conv2d(3, 64, 3, 1, 1), torch.nn.ReLU(),
    torch.nn.Conv2d(64, 128, 4, 2, 1), torch.nn.ReLU(),
    torch.nn.Conv2d(128, 128, 4, 2, 1), torch.nn.ReLU(),
    Res(128, 128), Res(128, 128),
    torch.nn.Conv2d(128, D, 1))
dec = torch.nn.Sequential(
    torch.nn.Conv2d(D, 128, 3, 1, 1),
    Res(128, 128), Res(128, 128), torch.nn.ReLU(),
    torch.nn.ConvTranspose2d(128, 128, 4, 2, 1), torch.nn.ReLU(),
    torch.nn.ConvTranspose2d(128, 64, 4, 2, 1), torch.nn.ReLU(),
    torch.nn.Conv2d(64, 3, 3, 1, 1))
n_params = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in dec.parameters())
params = list(enc.parameters()) + list(dec.parameters())
opt = torch.optim.Adam(params, lr=3e-4)


def fake_images(n, rng):
    pal = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [.5, 0, .5], [1, .5, 0], [0, 1, 1]])
    yy, xx = np.mgrid[0:32, 0:32]
    x = np.zeros((n, 3, 32, 32), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(10, 22, 2)
        ry, rx = rng.uniform(5, 12, 2)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        g = np.clip(rng.uniform(.3, 1) + .2 * rng.standard_normal((32, 32)), 0, 1) * m
        x[i] = 2 * g[None] * pal[rng.integers(8)][:, None, None] - 1
    return torch.from_numpy(x)


rng = np.random.default_rng(42)
x = fake_images(max(a.batch, a.encode_n), rng)
xb = x[:a.batch].contiguous()


def rows(z):
    return z.permute(0, 2, 3, 1).reshape(-1, D)


def nearest(zf, E):
    return torch.argmin((zf ** 2).sum(1, keepdim=True) - 2 * zf @ E.t() + (E ** 2).sum(1), 1)


with torch.no_grad():
    z0 = rows(enc(xb))
    codebook = z0[torch.randperm(z0.shape[0])[:K]].clone()
ema_count = torch.ones(K)
ema_sum = codebook.clone()


def train_step():
    global codebook
    opt.zero_grad()
    z = enc(xb)
    zf = rows(z)
    idx = nearest(zf.detach(), codebook)
    g = z.shape[2]
    q = codebook[idx].reshape(z.shape[0], g, g, D).permute(0, 3, 1, 2)
    xr = dec(q + (z - z.detach()))
    loss = F.mse_loss(xr, xb) + BETA * F.mse_loss(z, q)
    loss.backward()
    opt.step()
    with torch.no_grad():
        n = torch.bincount(idx, minlength=K).float()
        s = torch.zeros(K, D).index_add_(0, idx, zf.detach())
        ema_count.mul_(DECAY).add_((1 - DECAY) * n)
        ema_sum.mul_(DECAY).add_((1 - DECAY) * s)
        tot = ema_count.sum()
        codebook = ema_sum / ((ema_count + EPS) / (tot + K * EPS) * tot)[:, None]


def encode():
    with torch.no_grad():
        for i in range(0, a.encode_n, 64):
            nearest(rows(enc(x[i:i + 64])), codebook)


def timeit(fn, warmup=1, reps=a.reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def conv_flops(model, shape):
    """2 x multiply-adds of the convolutions of one forward pass of one item."""
    total, hooks = [0.0], []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += 2.0 * out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += 2.0 * inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]

    for m in model.modules():
        hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total[0]


print(f"b5: VQ tokenizer (PyTorch {torch.__version__}), {n_params} parameters, codebook {K} x {D}, "
      f"{a.threads} threads")
f_enc = conv_flops(enc, (3, 32, 32)) + 2.0 * 64 * K * D
f_img = f_enc + conv_flops(dec, (D, 8, 8))
t_train = timeit(train_step)
train_flop = 3.0 * f_img * a.batch
print(f"train step (batch {a.batch}): {t_train * 1e3:.1f} ms ({train_flop / t_train * 1e-9:.1f} GFLOP/s, "
      f"{a.batch / t_train:.0f} images/s)")
t_enc = timeit(encode)
print(f"encode {a.encode_n} images: {t_enc * 1e3:.1f} ms ({a.encode_n / t_enc:.0f} images/s, "
      f"{f_enc * a.encode_n / t_enc * 1e-9:.1f} GFLOP/s)")
print(json.dumps({"bench": "b5", "impl": "pytorch", "threads": a.threads,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "gflops": round(train_flop / t_train * 1e-9, 1),
                  "train_ms_per_step": round(t_train * 1e3, 2),
                  "encode_images_per_s": round(a.encode_n / t_enc, 1)}))
