"""The VQ image tokenizer of benchmark B5 and dalle_tok/vq.h: convolutional encoder,
nearest-code quantiser with an EMA codebook, convolutional decoder.

Used by bench/torch_b5.py at B5's sizes (the defaults below) and by tests/ref/gen_vq_ref.py
at reduced widths. Layers are keyed by their t2i names ("enc.2", "dec.9": layer indices of
the C nn_seq, the ReLUs and residual markers taking indices too) and created in that order,
so PyTorch's default initialisation draws the same numbers as long as the sizes agree.

  encoder  Conv3x3(c, w1) ReLU Conv4x4 s2 p1 (w1, w2) ReLU Conv4x4 s2 p1 (w2, w2) ReLU
           nres x [x + Conv1x1(rh, w2)(ReLU(Conv3x3(w2, rh)(ReLU(x))))] Conv1x1(w2, d)
  decoder  Conv3x3(d, w2) nres x residual block ReLU ConvT4x4 s2 p1 (w2, w2) ReLU
           ConvT4x4 s2 p1 (w2, w1) ReLU Conv3x3(w1, c)
  quantiser  nearest codebook row by |z|^2 - 2 z.e + |e|^2 (first index on ties),
           straight-through gradient, loss MSE(dec(q), x) + beta MSE(z, q), then the EMA
           codebook update with Laplace smoothing.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# B5: widths, residual inner width, residual blocks per side, code size, codebook size
W1, W2, RH, NRES, D, K = 64, 128, 128, 2, 64, 512
BETA, DECAY, EPS = 0.25, 0.99, 1e-5


class VQ(nn.Module):
    """Encoder and decoder; self.names lists the C layer names of the convolutions."""

    def __init__(self, c=3, w1=W1, w2=W2, rh=RH, nres=NRES, d=D):
        super().__init__()
        self.nres = nres
        m = {}
        m["enc.0"] = nn.Conv2d(c, w1, 3, 1, 1)
        m["enc.2"] = nn.Conv2d(w1, w2, 4, 2, 1)
        m["enc.4"] = nn.Conv2d(w2, w2, 4, 2, 1)
        for b in range(nres):  # res_begin, relu, conv3, relu, conv1, res_end
            base = 6 + 6 * b
            m[f"enc.{base + 2}"] = nn.Conv2d(w2, rh, 3, 1, 1)
            m[f"enc.{base + 4}"] = nn.Conv2d(rh, w2, 1, 1, 0)
        m[f"enc.{6 + 6 * nres}"] = nn.Conv2d(w2, d, 1, 1, 0)
        m["dec.0"] = nn.Conv2d(d, w2, 3, 1, 1)
        for b in range(nres):
            base = 1 + 6 * b
            m[f"dec.{base + 2}"] = nn.Conv2d(w2, rh, 3, 1, 1)
            m[f"dec.{base + 4}"] = nn.Conv2d(rh, w2, 1, 1, 0)
        t = 1 + 6 * nres  # relu, convT, relu, convT, relu, conv3
        m[f"dec.{t + 1}"] = nn.ConvTranspose2d(w2, w2, 4, 2, 1)
        m[f"dec.{t + 3}"] = nn.ConvTranspose2d(w2, w1, 4, 2, 1)
        m[f"dec.{t + 5}"] = nn.Conv2d(w1, c, 3, 1, 1)
        self.names = list(m.keys())
        self.mods = nn.ModuleDict({k.replace(".", "_"): v for k, v in m.items()})

    def l(self, name):
        return self.mods[name.replace(".", "_")]

    def res(self, h, prefix, base):
        r = self.l(f"{prefix}.{base + 2}")(F.relu(h))
        return h + self.l(f"{prefix}.{base + 4}")(F.relu(r))

    def encode(self, x):
        h = F.relu(self.l("enc.0")(x))
        h = F.relu(self.l("enc.2")(h))
        h = F.relu(self.l("enc.4")(h))
        for b in range(self.nres):
            h = self.res(h, "enc", 6 + 6 * b)
        return self.l(f"enc.{6 + 6 * self.nres}")(h)

    def decode(self, q):
        h = self.l("dec.0")(q)
        for b in range(self.nres):
            h = self.res(h, "dec", 1 + 6 * b)
        t = 1 + 6 * self.nres
        h = F.relu(self.l(f"dec.{t + 1}")(F.relu(h)))
        h = F.relu(self.l(f"dec.{t + 3}")(h))
        return self.l(f"dec.{t + 5}")(h)

    def c_tensors(self):
        """{C name: parameter} for every weight and bias."""
        out = {}
        for n in self.names:
            mod = self.l(n)
            out[n + ".weight"] = mod.weight
            out[n + ".bias"] = mod.bias
        return out


def rows(z):
    """(N, d, g, g) -> (N*g*g, d), one code vector per grid cell in row-major order."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def nearest(zf, E):
    """Index of the nearest row of E for each row of zf."""
    d = (zf ** 2).sum(1, keepdim=True) - 2 * zf @ E.t() + (E ** 2).sum(1)
    return torch.argmin(d, 1)


def losses(model, codebook, x, beta=BETA):
    """One forward pass of the training step: (loss, recon, commit, zf, idx), where zf are
    the encoder's vectors (grid rows) and idx their codes. The decoder sees the codes with
    the straight-through term q + (z - sg(z)), which equals q in value."""
    z = model.encode(x)
    zf = rows(z)
    idx = nearest(zf.detach(), codebook)
    g = z.shape[2]
    q = codebook[idx].reshape(z.shape[0], g, g, z.shape[1]).permute(0, 3, 1, 2)
    xr = model.decode(q + (z - z.detach()))
    recon = F.mse_loss(xr, x)
    commit = beta * F.mse_loss(z, q)
    return recon + commit, recon, commit, zf, idx


@torch.no_grad()
def ema_update(ema_count, ema_sum, idx, zf, decay=DECAY, eps=EPS):
    """Fold one batch's assignments into the EMA counts and sums (in place) and return the
    new codebook and the batch's per-code counts n."""
    k, d = ema_sum.shape
    n = torch.bincount(idx, minlength=k).float()
    s = torch.zeros(k, d).index_add_(0, idx, zf.detach())
    ema_count.mul_(decay).add_((1 - decay) * n)
    ema_sum.mul_(decay).add_((1 - decay) * s)
    tot = ema_count.sum()
    smoothed = (ema_count + eps) / (tot + k * eps) * tot
    return ema_sum / smoothed[:, None], n


def blob_images(n, rng, res=32):
    """FC32-like inputs in [-1, 1]: a black canvas with one coloured, textured elliptic blob,
    quantised to 8-bit levels; rng is a numpy Generator."""
    x = np.zeros((n, 3, res, res), np.float32)
    palette = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [.5, 0, .5], [1, .5, 0], [0, 1, 1]])
    yy, xx = np.mgrid[0:res, 0:res]
    for i in range(n):
        cy, cx = rng.uniform(10, 22, 2)
        ry, rx = rng.uniform(5, 12, 2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        g = np.clip(rng.uniform(0.3, 1.0) + 0.2 * rng.standard_normal((res, res)), 0, 1) * mask
        col = palette[rng.integers(8)]
        u8 = np.round(g[None] * col[:, None, None] * 255)
        x[i] = u8 / 127.5 - 1.0
    return torch.from_numpy(x)
