#!/usr/bin/python3
"""B1 (bench/README.md) in PyTorch: the DCGAN-28 training step, as a benchmark and
as the reference training run for the FID comparison.

  /usr/bin/python3 bench/torch_b1.py --threads 2 bench [--steps 20]
      times the step (median after warm-up), prints lines and a JSON line like `t2i bench b1`.
  /usr/bin/python3 bench/torch_b1.py --threads 2 train --epochs 5 --out DIR [--samples 10000]
      trains B1 on Fashion-MNIST (Debian's dataset-fashion-mnist), logs wall time, then
      writes DIR/samples/NNNNN.png (G in eval mode) for `t2i eval fid --fake DIR/samples`.
The networks are tests/ref/models/dcgan.py's. The recipe is exactly B1: batch 64 (drop_last), Adam lr 2e-4 betas (0.5, 0.999), PyTorch
default init, non-saturating BCE-with-logits loss, D on real and fake as two calls.
"""
import argparse, gzip, json, os, resource, statistics, sys, time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from models.dcgan import Discriminator, Generator  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=1)
sub = ap.add_subparsers(dest="mode", required=True)
b = sub.add_parser("bench")
b.add_argument("--steps", type=int, default=20)
t = sub.add_parser("train")
t.add_argument("--epochs", type=float, default=5)
t.add_argument("--out", required=True)
t.add_argument("--samples", type=int, default=10000)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


g, d = Generator(), Discriminator()
og = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
B = 64
ones, zeros = torch.ones(B, 1), torch.zeros(B, 1)


def step(real):
    z = torch.randn(B, 100)
    fake = g(z)
    od.zero_grad(set_to_none=True)
    ld = bce(d(real), ones) + bce(d(fake.detach()), zeros)
    ld.backward()
    od.step()
    og.zero_grad(set_to_none=True)
    for p in d.parameters():
        p.requires_grad_(False)
    lg = bce(d(g(torch.randn(B, 100))), ones)
    lg.backward()
    for p in d.parameters():
        p.requires_grad_(True)
    og.step()
    return ld.item(), lg.item()


def load_fmnist():
    root = os.environ.get("T2I_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    with gzip.open(os.path.join(root, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)


if a.mode == "bench":
    real = torch.rand(B, 1, 28, 28) * 2 - 1
    for _ in range(3):
        step(real)
    ts = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step(real)
        ts.append(time.perf_counter() - t0)
    ms = statistics.median(ts) * 1e3
    # nominal FLOPs: G fwd 3.50 GF, D fwd 1.67 GF per 64 images; step = 4 G_f + 8 D_f
    gf, df = 2 * (100 * 12544 + 256 * 49 * 128 * 16 + 128 * 196 * 16), 2 * (64 * 196 * 16 + 128 * 49 * 64 * 16 + 6272)
    flops = B * (4 * gf + 8 * df)
    print(f"B1 pytorch: {ms:.1f} ms/step, {B / ms * 1e3:.0f} images/s, {flops / ms * 1e-6:.1f} GFLOP/s ({a.threads} threads)")
    print(json.dumps({"bench": "b1", "impl": "pytorch", "threads": a.threads,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "gflops": round(flops / ms * 1e-6, 1), "ms_per_step": round(ms, 2),
                      "images_per_s": round(B / ms * 1e3, 1)}))
    sys.exit(0)

data = load_fmnist()
n = data.shape[0]
per_epoch = n // B
steps = int(a.epochs * per_epoch)
os.makedirs(a.out, exist_ok=True)
log = open(os.path.join(a.out, "metrics.jsonl"), "w")
t0 = time.perf_counter()
s = 0
while s < steps:
    perm = torch.randperm(n)
    for i in range(per_epoch):
        if s >= steps:
            break
        ld, lg = step(data[perm[i * B:(i + 1) * B]])
        s += 1
        if s % 100 == 0 or s == steps:
            el = time.perf_counter() - t0
            log.write(json.dumps({"step": s, "loss_d": ld, "loss_g": lg, "elapsed_s": round(el, 2)}) + "\n")
            log.flush()
            print(f"step {s}/{steps} D {ld:.3f} G {lg:.3f} {el:.0f}s", file=sys.stderr, flush=True)
train_s = time.perf_counter() - t0
g.eval()
from PIL import Image
sd = os.path.join(a.out, "samples")
os.makedirs(sd, exist_ok=True)
with torch.no_grad():
    k = 0
    while k < a.samples:
        m = min(500, a.samples - k)
        x = g(torch.randn(m, 100))
        u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        for j in range(m):
            Image.fromarray(u8[j, 0]).save(os.path.join(sd, f"{k + j:05d}.png"))
        k += m
json.dump({"steps": steps, "epochs": a.epochs, "train_seconds": round(train_s, 1),
           "ms_per_step": round(train_s / steps * 1e3, 2), "threads": a.threads}, open(os.path.join(a.out, "run.json"), "w"))
print(json.dumps({"bench": "b1-train", "impl": "pytorch", "steps": steps, "train_seconds": round(train_s, 1)}))
