#!/usr/bin/python3
"""Reference for tests/test_gan.c: three GAN training steps in PyTorch on a reduced
DCGAN-28 (the B1 architecture at widths 8/8, z 16, batch 8), from initial weights this
script writes, so the C implementation can replay them and compare losses and weights.

Each step is B1's: D update on real x and G(z_d) (two D calls, BCE-with-logits, targets
1/0), then G update on G(z_g) through D (target 1); Adam lr 1e-3 betas (0.5, 0.999),
eps 1e-4 (with 1e-8, Adam amplifies the rounding noise of the biases in front of a
BatchNorm, whose true gradient is zero, into lr-sized steps of arbitrary sign).
Parameter names are t2i's (nn_seq layer indices). Output: tests/data/gan_ref.safetensors.
"""
import json, os, struct
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(7)
Z, B, GW, DW = 16, 8, 8, 8


class G(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(Z, 4 * GW * 49)        # g.0
        self.bn0 = nn.BatchNorm1d(4 * GW * 49)     # g.1
        self.ct1 = nn.ConvTranspose2d(4 * GW, 2 * GW, 4, 2, 1)  # g.4
        self.bn1 = nn.BatchNorm2d(2 * GW)          # g.5
        self.ct2 = nn.ConvTranspose2d(2 * GW, 1, 4, 2, 1)       # g.7

    def forward(self, z):
        h = torch.relu(self.bn0(self.fc(z))).view(-1, 4 * GW, 7, 7)
        return torch.tanh(self.ct2(torch.relu(self.bn1(self.ct1(h)))))


class D(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(1, DW, 4, 2, 1)        # d.0
        self.c2 = nn.Conv2d(DW, 2 * DW, 4, 2, 1)   # d.2
        self.bn3 = nn.BatchNorm2d(2 * DW)          # d.3
        self.head = nn.Linear(2 * DW * 49, 1)      # d.head

    def forward(self, x):
        h = nn.functional.leaky_relu(self.c0(x), 0.2)
        h = nn.functional.leaky_relu(self.bn3(self.c2(h)), 0.2)
        return self.head(h.flatten(1))


g, d = G(), D()
# non-trivial BatchNorm affine terms so that a missing gamma/beta cannot pass
with torch.no_grad():
    for m in [g.bn0, g.bn1, d.bn3]:
        m.weight.add_(0.1 * torch.randn_like(m.weight))
        m.bias.add_(0.1 * torch.randn_like(m.bias))

names = {"g.0": g.fc, "g.1": g.bn0, "g.4": g.ct1, "g.5": g.bn1, "g.7": g.ct2,
         "d.0": d.c0, "d.2": d.c2, "d.3": d.bn3}


def state():
    out = {}
    for k, m in names.items():
        out[k + ".weight"] = m.weight
        out[k + ".bias"] = m.bias
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[k + ".running_mean"] = m.running_mean
            out[k + ".running_var"] = m.running_var
    out["d.head.weight"] = d.head.weight
    out["d.head.bias"] = d.head.bias
    return {k: v.detach().clone() for k, v in out.items()}


tensors = {"init." + k: v for k, v in state().items()}
og = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-4)
od = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-4)
bce = nn.BCEWithLogitsLoss()
x = torch.rand(B, 1, 28, 28) * 2 - 1
losses = []
for s in range(3):
    zd, zg = torch.randn(B, Z), torch.randn(B, Z)
    tensors[f"z_d.{s}"], tensors[f"z_g.{s}"] = zd, zg
    fake = g(zd)
    od.zero_grad()
    ld = bce(d(x), torch.ones(B, 1)) + bce(d(fake.detach()), torch.zeros(B, 1))
    ld.backward()
    od.step()
    og.zero_grad()
    for p in d.parameters():
        p.requires_grad_(False)
    lg = bce(d(g(zg)), torch.ones(B, 1))
    lg.backward()
    for p in d.parameters():
        p.requires_grad_(True)
    og.step()
    losses += [ld.item(), lg.item()]
tensors["x"] = x
tensors["losses"] = torch.tensor(losses)
tensors.update({"final." + k: v for k, v in state().items()})

header, off, blobs = {}, 0, []
for k, v in tensors.items():
    a = v.detach().contiguous().numpy().astype("<f4")
    b = a.tobytes()
    header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
header["__metadata__"] = {"what": "3 GAN steps of a reduced DCGAN-28, torch " + torch.__version__}
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
out = os.path.join(os.path.dirname(__file__), "..", "data", "gan_ref.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(out, off, "bytes of data; losses", [round(l, 5) for l in losses])
