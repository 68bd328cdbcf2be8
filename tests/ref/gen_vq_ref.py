#!/usr/bin/python3
"""Reference for tests/test_vq.c: a few training steps of the VQ tokenizer in PyTorch.

The model is dalle_tok/vq.h's architecture (the B5 layout) at reduced widths so that the
data file stays small: widths 16/32, residual inner width 16, 2 residual blocks per side,
codebook 32 x 8, 3x32x32 images -> 8x8 codes. The model (models/vq.py) is written from the
description in vq.h (not generated from the C code), with PyTorch's default initialisation:

  loss = MSE(dec(q), x) + beta * MSE(z, sg(q)),  beta 0.25
  q = nearest codebook row of each z vector (|z|^2 - 2 z.e + |e|^2, first index on ties),
  straight-through: the decoder's input gradient flows to z unchanged,
  Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8) on the encoder and decoder,
  then the EMA codebook update with Laplace smoothing (decay 0.99, eps 1e-5).

The initial codebook is 32 encoder outputs of the first batch plus a little noise, with EMA
counts 1 and sums equal to the codes (the state right after a dead-code restart). Inputs are
FC32-like random images: a black 32x32 canvas with a coloured, textured blob. Six steps
alternate between two batches of 4.

Writes tests/data/vq_ref.safetensors:
  init.<name>, final.<name>   every tensor of the C model under its C name (trainable
                              weights and the buffers vq.codebook / vq.ema_count / vq.ema_sum)
  x            (2, 4, 3, 32, 32) the two batches
  loss, recon, commit, perplexity, codes_used   (6,) per-step statistics (codes_used as
                              float), computed before that step's updates
  idx          (6, 256) int32 the code of every grid cell at every step
Usage: /usr/bin/python3 tests/ref/gen_vq_ref.py   (from the repository root or anywhere)
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models.vq import VQ, blob_images, ema_update, losses, rows  # noqa: E402

W1, W2, RH, NRES, D, K, RES, C = 16, 32, 16, 2, 8, 32, 32, 3
BETA, DECAY, EPS, LR, STEPS, B = 0.25, 0.99, 1e-5, 1e-3, 6, 4

torch.manual_seed(1234)
rng = np.random.default_rng(1234)


def save_file(tensors, path, metadata):
    """Minimal safetensors writer (the safetensors package is not installed): F32 and I32."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        a = t.detach().cpu().numpy()
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


model = VQ(C, W1, W2, RH, NRES, D)
xs = blob_images(2 * B, rng, RES).reshape(2, B, C, RES, RES)
with torch.no_grad():
    z0 = rows(model.encode(xs[0]))
    sel = torch.from_numpy(rng.choice(z0.shape[0], K, replace=False))
    codebook = (z0[sel] + 0.01 * torch.randn(K, D)).contiguous()
ema_count = torch.ones(K)
ema_sum = codebook.clone()

init = {"init." + k: v.detach().clone() for k, v in model.c_tensors().items()}
init["init.vq.codebook"] = codebook.clone()
init["init.vq.ema_count"] = ema_count.clone()
init["init.vq.ema_sum"] = ema_sum.clone()

opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
stats = {k: [] for k in ("loss", "recon", "commit", "perplexity", "codes_used")}
idxs = []
for step in range(STEPS):
    x = xs[step % 2]
    opt.zero_grad()
    loss, recon, commit, zf, idx = losses(model, codebook, x, BETA)
    loss.backward()
    opt.step()
    codebook, n = ema_update(ema_count, ema_sum, idx, zf, DECAY, EPS)
    with torch.no_grad():
        p = n / n.sum()
        ppl = torch.exp(-(p[p > 0] * torch.log(p[p > 0])).sum())
    stats["loss"].append(loss.item())
    stats["recon"].append(recon.item())
    stats["commit"].append(commit.item())
    stats["perplexity"].append(ppl.item())
    stats["codes_used"].append(float((n > 0).sum().item()))
    idxs.append(idx.int())
    print(f"step {step + 1}: loss {loss.item():.6f} recon {recon.item():.6f} commit {commit.item():.6f} "
          f"ppl {ppl.item():.3f} used {int((n > 0).sum())}")

out = dict(init)
out.update({"final." + k: v.detach().clone() for k, v in model.c_tensors().items()})
out["final.vq.codebook"] = codebook.clone()
out["final.vq.ema_count"] = ema_count.clone()
out["final.vq.ema_sum"] = ema_sum.clone()
out["x"] = xs.contiguous()
for k, v in stats.items():
    out[k] = torch.tensor(v, dtype=torch.float32)
out["idx"] = torch.stack(idxs).contiguous()
out = {k: v.contiguous() for k, v in out.items()}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "vq_ref.safetensors")
save_file(out, path, metadata={"generator": "tests/ref/gen_vq_ref.py", "torch": torch.__version__})
print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")
