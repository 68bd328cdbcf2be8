#!/usr/bin/python3
"""gen_patch_ref.py - PyTorch reference values for the patch embedding (tests/test_ops_patch.c).

nn.Conv2d(C, OC, P, stride=P, bias=False) on random images, its output flattened to the
sequence layout of ops.h ((N, C, H, W) -> (N, G, OC), patches in row-major grid order),
then backward with a random upstream gradient dy (N, G, OC). Stored per case:

    patch.<case>.x / .w / .dy / .y / .dx / .dw

Cases (N, C, H, W, P, OC): "sq" a square image as CLIP's (2, 3, 8, 8, 4, 5); "rect" a
non-square image whose grid is 2 x 3 with more channels (3, 2, 6, 9, 3, 7); "p1" patch 1
(a 1x1 convolution) (1, 4, 3, 2, 1, 3).

Written in the safetensors format by gen_ops_ref.py's writer (the package is not installed).

Usage: /usr/bin/python3 tests/ref/gen_patch_ref.py   (writes tests/data/patch_ref.safetensors)
"""
import os

import torch
import torch.nn as nn

from gen_ops_ref import serialise

torch.manual_seed(20250101)

CASES = {"sq": (2, 3, 8, 8, 4, 5), "rect": (3, 2, 6, 9, 3, 7), "p1": (1, 4, 3, 2, 1, 3)}


def main():
    out = []
    for name, (N, C, H, W, P, OC) in CASES.items():
        conv = nn.Conv2d(C, OC, P, stride=P, bias=False)
        x = torch.randn(N, C, H, W, requires_grad=True)
        y = conv(x).flatten(2).transpose(1, 2)  # (N, G, OC)
        dy = torch.randn(*y.shape)
        y.backward(dy)
        for what, t in (("x", x), ("w", conv.weight), ("dy", dy), ("y", y), ("dx", x.grad), ("dw", conv.weight.grad)):
            out.append(("patch.%s.%s" % (name, what), t.detach().contiguous()))
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "data", "patch_ref.safetensors")
    data = serialise(out)
    with open(path, "wb") as fh:
        fh.write(data)
    print("wrote %s (%d bytes, %d tensors)" % (os.path.normpath(path), len(data), len(out)))


if __name__ == "__main__":
    main()
