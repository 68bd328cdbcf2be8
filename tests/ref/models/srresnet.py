"""SRResNet-lite: the super-resolution generator of benchmark B4 and of gan/sr.h.

Used by bench/torch_b4.py at B4's sizes (width 64, 8 residual blocks, x4: the defaults
below) and by tests/ref/gen_sr_ref.py at width 8 with 2 blocks.

  Conv3x3(3, w) -> ReLU = h
  blocks: t -> t + Conv3x3(w, w)(ReLU(Conv3x3(w, w)(t)))    (no normalisation)
  h + Conv3x3(w, w)(blocks(h))                              (global skip)
  per factor 2: Conv3x3(w, 4w) -> PixelShuffle(2) -> ReLU
  Conv3x3(w, 3)
PyTorch's default initialisation, layers created in forward order. c_names() lists the
convolutions under the C network's names.
"""
import torch.nn as nn
import torch.nn.functional as F

WIDTH, BLOCKS, SCALE = 64, 8, 4  # B4


class Block(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.c1 = nn.Conv2d(w, w, 3, 1, 1)
        self.c2 = nn.Conv2d(w, w, 3, 1, 1)

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(x)))


class SRGenerator(nn.Module):
    def __init__(self, width=WIDTH, blocks=BLOCKS, scale=SCALE):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, 1, 1)
        self.blocks = nn.ModuleList([Block(width) for _ in range(blocks)])
        self.mid = nn.Conv2d(width, width, 3, 1, 1)
        self.ups = nn.ModuleList([nn.Conv2d(width, 4 * width, 3, 1, 1) for _ in range(scale.bit_length() - 1)])
        self.tail = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x):
        h = F.relu(self.head(x))
        t = h
        for b in self.blocks:
            t = b(t)
        h = h + self.mid(t)
        for u in self.ups:
            h = F.relu(F.pixel_shuffle(u(h), 2))
        return self.tail(h)

    def c_names(self):
        """(C name, parameter) pairs: "g.<i>.weight" / "g.<i>.bias" with i the layer index in
        the nn_seq that sr_build_g makes (conv, relu, res_begin, per block res_begin conv relu
        conv res_end, conv, res_end, per stage conv shuffle relu, conv)."""
        out, i = [], 0
        out.append((i, self.head)); i += 3
        for b in self.blocks:
            out.append((i + 1, b.c1)); out.append((i + 3, b.c2)); i += 5
        out.append((i, self.mid)); i += 2
        for u in self.ups:
            out.append((i, u)); i += 3
        out.append((i, self.tail))
        res = []
        for idx, conv in out:
            res.append(("g.%d.weight" % idx, conv.weight))
            res.append(("g.%d.bias" % idx, conv.bias))
        return res
