#!/usr/bin/python3
"""Reference for tests/test_gan.c: three GAN training steps in PyTorch on a reduced
DCGAN-28 (the B1 architecture at widths 8/8, z 16, batch 8), from initial weights this
script writes, so the C implementation can replay them and compare losses and weights.

Each step is B1's: D update on real x and G(z_d) (two D calls, BCE-with-logits, targets
1/0), then G update on G(z_g) through D (target 1); Adam lr 1e-3 betas (0.5, 0.999),
eps 1e-4 (with 1e-8, Adam amplifies the rounding noise of the biases in front of a
BatchNorm, whose true gradient is zero, into lr-sized steps of arbitrary sign).
The networks are models/dcgan.py's; parameter names are t2i's (nn_seq layer indices).
Output: tests/data/gan_ref.safetensors.
"""
import json, os, struct, sys
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models.dcgan import Discriminator, Generator, c_layers  # noqa: E402

torch.manual_seed(7)
Z, B, GW, DW = 16, 8, 8, 8


g, d = Generator(Z, GW), Discriminator(DW)
# non-trivial BatchNorm affine terms so that a missing gamma/beta cannot pass
with torch.no_grad():
    for m in [g.bn0, g.bn1, d.bn3]:
        m.weight.add_(0.1 * torch.randn_like(m.weight))
        m.bias.add_(0.1 * torch.randn_like(m.bias))

names = c_layers(g, d)


def state():
    out = {}
    for k, m in names.items():
        out[k + ".weight"] = m.weight
        out[k + ".bias"] = m.bias
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[k + ".running_mean"] = m.running_mean
            out[k + ".running_var"] = m.running_var
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
