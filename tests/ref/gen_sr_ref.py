#!/usr/bin/python3
"""gen_sr_ref.py - reference values for tests/test_sr.c (super-resolution, gan/sr/sr.h).

Writes tests/data/sr_ref.safetensors with:

  metric.a, metric.b        two 8-bit RGB images (H, W, 3) as F32 0..255: a smooth random
                            field with edges, and a degraded copy (blur + noise + shift)
  metric.b<k>.psnr_rgb / .psnr_y / .ssim_y   [1] each, for border k in {0, 3}: PSNR over
                            RGB, PSNR over BT.601 Y (16 + 65.481 R + 128.553 G + 24.966 B,
                            RGB in [0, 1], unrounded), SSIM on Y with an 11-tap Gaussian
                            window (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2, valid
                            region only, mean of the map - all implemented below in numpy
                            (float64), independently of the C code
  model.init.<name>         initial weights of a reduced SR generator (models/srresnet.py at
                            width 8, 2 residual blocks, x4), PyTorch default init, under the
                            C network's names
                            ("g.<layer index>.weight/bias", layer indices of the nn_seq
                            built by sr_build_g)
  model.lr, model.hr        a batch of 2 inputs (3, 6, 7) and targets (3, 24, 28)
  model.y0                  the generator's output on model.lr with the initial weights
  model.grad0.<name>        gradients of the first L1 loss
  model.loss                [3] L1 losses of 3 Adam steps (lr 1e-3, betas (0.9, 0.999),
                            eps 1e-8), each the loss before its update
  model.final.<name>        the weights after the 3 steps
  ragan.r, ragan.f          real and fake logits (12 each)
  ragan.{d,g}.loss / .dr / .df   the relativistic average loss of ESRGAN for D and for G,
                            and its autograd gradients
  b4.params                 [1] parameter count of the B4 generator (x4), from PyTorch

Usage: /usr/bin/python3 tests/ref/gen_sr_ref.py
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models.srresnet import SRGenerator  # noqa: E402

torch.manual_seed(424242)
rng = np.random.default_rng(17)
OUT = []


def put(name, t):
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(t))
    if not torch.is_tensor(t):
        t = torch.tensor([float(t)])
    t = t.detach().contiguous().float()
    assert all(n != name for n, _ in OUT), name
    OUT.append((name, t.clone()))


def serialise(tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        b = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


# ---------------------------------------------------------------- metrics

def luma(img):
    x = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def crop(img, b):
    return img[b:img.shape[0] - b, b:img.shape[1] - b] if b else img


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10.0 * np.log10(255.0 ** 2 / mse)


def filter_valid(x, g):
    # correlate rows then columns with the 1-D kernel, keeping only full windows
    k = len(g)
    h = sum(g[i] * x[:, i:x.shape[1] - k + 1 + i] for i in range(k))
    return sum(g[i] * h[i:h.shape[0] - k + 1 + i, :] for i in range(k))


def ssim(y1, y2):
    t = np.arange(11) - 5
    g = np.exp(-(t ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filter_valid(y1, g), filter_valid(y2, g)
    s11 = filter_valid(y1 * y1, g) - mu1 ** 2
    s22 = filter_valid(y2 * y2, g) - mu2 ** 2
    s12 = filter_valid(y1 * y2, g) - mu1 * mu2
    m = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1 ** 2 + mu2 ** 2 + C1) * (s11 + s22 + C2))
    return m.mean()


def gen_metrics():
    H, W = 37, 45
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([
        120 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0),
        100 + 80 * (xx > 20) + 10 * np.cos(yy / 3.0),
        60 + 2.5 * yy + 1.5 * xx,
    ], axis=-1) + rng.normal(0, 6, (H, W, 3))
    a = np.clip(np.round(base), 0, 255).astype(np.uint8)
    deg = a.astype(np.float64)
    deg = 0.5 * deg + 0.25 * np.roll(deg, 1, axis=1) + 0.25 * np.roll(deg, 1, axis=0)
    deg += rng.normal(0, 4, deg.shape)
    b = np.clip(np.round(deg), 0, 255).astype(np.uint8)
    put("metric.a", a.astype(np.float32))
    put("metric.b", b.astype(np.float32))
    for k in (0, 3):
        ca, cb = crop(a, k), crop(b, k)
        put("metric.b%d.psnr_rgb" % k, psnr(ca, cb))
        put("metric.b%d.psnr_y" % k, psnr(luma(ca), luma(cb)))
        put("metric.b%d.ssim_y" % k, ssim(luma(ca), luma(cb)))


# ---------------------------------------------------------------- model

def gen_model():
    g = SRGenerator(8, 2, 4)
    for name, p in g.c_names():
        put("model.init." + name, p)
    lr = torch.rand(2, 3, 6, 7) * 2 - 1
    hr = torch.rand(2, 3, 24, 28) * 2 - 1
    put("model.lr", lr)
    put("model.hr", hr)
    with torch.no_grad():
        put("model.y0", g(lr))
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for step in range(3):
        opt.zero_grad()
        loss = F.l1_loss(g(lr), hr)
        loss.backward()
        if step == 0:
            for name, p in g.c_names():
                put("model.grad0." + name, p.grad)
        opt.step()
        losses.append(loss.item())
    put("model.loss", torch.tensor(losses))
    for name, p in g.c_names():
        put("model.final." + name, p)
    b4 = SRGenerator()
    put("b4.params", sum(p.numel() for p in b4.parameters()))
    return losses


# ---------------------------------------------------------------- relativistic loss

def gen_ragan():
    r = torch.randn(12) * 1.5 + 0.5
    f = torch.randn(12) * 1.5 - 0.5
    put("ragan.r", r)
    put("ragan.f", f)
    for who, (tr, tf) in (("d", (1.0, 0.0)), ("g", (0.0, 1.0))):
        rl, fl = r.clone().requires_grad_(True), f.clone().requires_grad_(True)
        a, b = rl - fl.mean(), fl - rl.mean()
        loss = 0.5 * (F.binary_cross_entropy_with_logits(a, torch.full_like(a, tr))
                      + F.binary_cross_entropy_with_logits(b, torch.full_like(b, tf)))
        loss.backward()
        put("ragan.%s.loss" % who, loss)
        put("ragan.%s.dr" % who, rl.grad)
        put("ragan.%s.df" % who, fl.grad)


def main():
    gen_metrics()
    losses = gen_model()
    gen_ragan()
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "data", "sr_ref.safetensors")
    data = serialise(OUT)
    with open(path, "wb") as fh:
        fh.write(data)
    print("wrote %s (%d bytes, %d tensors); L1 losses %s" % (os.path.normpath(path), len(data), len(OUT), losses))


if __name__ == "__main__":
    main()
