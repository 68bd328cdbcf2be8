#!/usr/bin/python3
"""Reference for tests/test_vq.c: a few training steps of the VQ tokenizer in PyTorch.

The model is dalle_tok/vq.h's architecture (the B5 layout) at reduced widths so that the
data file stays small: widths 16/32, residual inner width 16, 2 residual blocks per side,
codebook 32 x 8, 3x32x32 images -> 8x8 codes. It is written here from the description in
vq.h (not generated from the C code), with PyTorch's default initialisation:

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

import numpy as np
import torch
import torch.nn.functional as F

W1, W2, RH, NRES, D, K, RES, C = 16, 32, 16, 2, 8, 32, 32, 3
BETA, DECAY, EPS, LR, STEPS, B = 0.25, 0.99, 1e-5, 1e-3, 6, 4

torch.manual_seed(1234)
rng = np.random.default_rng(1234)


class VQ(torch.nn.Module):
    """Encoder and decoder with modules keyed by the C names ("enc.2" -> enc_2)."""

    def __init__(self):
        super().__init__()
        m = {}
        m["enc.0"] = torch.nn.Conv2d(C, W1, 3, 1, 1)
        m["enc.2"] = torch.nn.Conv2d(W1, W2, 4, 2, 1)
        m["enc.4"] = torch.nn.Conv2d(W2, W2, 4, 2, 1)
        for b in range(NRES):  # res_begin, relu, conv3, relu, conv1, res_end
            base = 6 + 6 * b
            m[f"enc.{base + 2}"] = torch.nn.Conv2d(W2, RH, 3, 1, 1)
            m[f"enc.{base + 4}"] = torch.nn.Conv2d(RH, W2, 1, 1, 0)
        m[f"enc.{6 + 6 * NRES}"] = torch.nn.Conv2d(W2, D, 1, 1, 0)
        m["dec.0"] = torch.nn.Conv2d(D, W2, 3, 1, 1)
        for b in range(NRES):
            base = 1 + 6 * b
            m[f"dec.{base + 2}"] = torch.nn.Conv2d(W2, RH, 3, 1, 1)
            m[f"dec.{base + 4}"] = torch.nn.Conv2d(RH, W2, 1, 1, 0)
        t = 1 + 6 * NRES  # relu, convT, relu, convT, relu, conv3
        m[f"dec.{t + 1}"] = torch.nn.ConvTranspose2d(W2, W2, 4, 2, 1)
        m[f"dec.{t + 3}"] = torch.nn.ConvTranspose2d(W2, W1, 4, 2, 1)
        m[f"dec.{t + 5}"] = torch.nn.Conv2d(W1, C, 3, 1, 1)
        self.names = list(m.keys())
        self.mods = torch.nn.ModuleDict({k.replace(".", "_"): v for k, v in m.items()})

    def l(self, name):
        return self.mods[name.replace(".", "_")]

    def res(self, h, prefix, base):
        r = self.l(f"{prefix}.{base + 2}")(F.relu(h))
        return h + self.l(f"{prefix}.{base + 4}")(F.relu(r))

    def encode(self, x):
        h = F.relu(self.l("enc.0")(x))
        h = F.relu(self.l("enc.2")(h))
        h = F.relu(self.l("enc.4")(h))
        for b in range(NRES):
            h = self.res(h, "enc", 6 + 6 * b)
        return self.l(f"enc.{6 + 6 * NRES}")(h)

    def decode(self, q):
        h = self.l("dec.0")(q)
        for b in range(NRES):
            h = self.res(h, "dec", 1 + 6 * b)
        t = 1 + 6 * NRES
        h = F.relu(self.l(f"dec.{t + 1}")(F.relu(h)))
        h = F.relu(self.l(f"dec.{t + 3}")(h))
        return self.l(f"dec.{t + 5}")(h)

    def c_tensors(self):
        out = {}
        for n in self.names:
            mod = self.l(n)
            out[n + ".weight"] = mod.weight
            out[n + ".bias"] = mod.bias
        return out


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


def fc32_like(n):
    x = np.zeros((n, C, RES, RES), np.float32)
    palette = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [.5, 0, .5], [1, .5, 0], [0, 1, 1]])
    yy, xx = np.mgrid[0:RES, 0:RES]
    for i in range(n):
        cy, cx = rng.uniform(10, 22, 2)
        ry, rx = rng.uniform(5, 12, 2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        g = np.clip(rng.uniform(0.3, 1.0) + 0.2 * rng.standard_normal((RES, RES)), 0, 1) * mask
        col = palette[rng.integers(8)]
        u8 = np.round(g[None] * col[:, None, None] * 255)
        x[i] = u8 / 127.5 - 1.0
    return torch.from_numpy(x)


def nearest(zf, E):
    d = (zf ** 2).sum(1, keepdim=True) - 2 * zf @ E.t() + (E ** 2).sum(1)
    return torch.argmin(d, 1)


def rows(z):  # (N, D, g, g) -> (N*g*g, D)
    return z.permute(0, 2, 3, 1).reshape(-1, D)


model = VQ()
xs = fc32_like(2 * B).reshape(2, B, C, RES, RES)
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
    z = model.encode(x)
    zf = rows(z)
    idx = nearest(zf.detach(), codebook)
    q = codebook[idx].reshape(B, RES // 4, RES // 4, D).permute(0, 3, 1, 2)
    # straight-through with q's exact values: q + (z - sg(z)) is q in the forward pass
    q_st = q + (z - z.detach())
    xr = model.decode(q_st)
    recon = F.mse_loss(xr, x)
    commit = BETA * F.mse_loss(z, q)
    loss = recon + commit
    loss.backward()
    opt.step()
    with torch.no_grad():
        n = torch.bincount(idx, minlength=K).float()
        s = torch.zeros(K, D).index_add_(0, idx, zf.detach())
        ema_count.mul_(DECAY).add_((1 - DECAY) * n)
        ema_sum.mul_(DECAY).add_((1 - DECAY) * s)
        tot = ema_count.sum()
        smoothed = (ema_count + EPS) / (tot + K * EPS) * tot
        codebook = ema_sum / smoothed[:, None]
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
