#!/usr/bin/python3
"""gen_safetensors_ref.py - reference safetensors file for tests/test_safetensors.c.

Writes tests/data/st_ref.safetensors with PyTorch computing every value: float32 inputs
chosen to hit the hard cases of half-precision rounding (ties to even, subnormals,
overflow to inf, inf, nan, signed zero), their torch .half() and .bfloat16() conversions,
those converted back with .float(), integer tensors (I64, U8) with their .float() copies,
an F64 tensor with its .float() copy, a scalar and an empty tensor, and metadata.

The safetensors Python package is not installed, so the file is serialised here with
struct + json following the format: 8-byte little-endian header length, compact JSON
header (metadata first, then tensors in insertion order, data_offsets consecutive),
padded with spaces to a multiple of 8 bytes, then the data block. The C writer is
expected to reproduce this file byte for byte from the same tensors and metadata.

Usage: /usr/bin/python3 tests/ref/gen_safetensors_ref.py   (from the repository root)
"""
import json
import os
import struct

import torch


def f32_bits(*bits):
    """float32 tensor from raw bit patterns (exact, no Python float rounding)."""
    raw = struct.pack("<%dI" % len(bits), *bits)
    return torch.frombuffer(bytearray(raw), dtype=torch.float32).clone()


def f32_values(*vals):
    return torch.tensor(vals, dtype=torch.float32)


def build_sources():
    two = lambda e: 2.0 ** e  # noqa: E731
    parts = [
        f32_values(1.0, -2.5, 0.1, 1.0 / 3.0, 0.0, -0.0, 1000.0, -65504.0),
        # F16 ties and near-ties around 1 (spacing 2^-10) and 2048 (spacing 2)
        f32_values(1 + two(-11), 1 + 3 * two(-11), 1 + two(-11) + two(-20), 1 + two(-11) - two(-20),
                   2047.5, 2049.0, 2051.0, -(1 + 3 * two(-11))),
        # F16 overflow boundary
        f32_values(65504.0, 65519.0, 65519.99, 65520.0, 1e6, -1e6),
        # F16 subnormals and their rounding
        f32_values(two(-14), two(-24), two(-25), 3 * two(-25), two(-25) + two(-40), two(-26),
                   two(-14) - two(-26), two(-14) - two(-25), 5 * two(-26), -3 * two(-25), 1e-6, -7e-7),
        # BF16 ties and near-ties around 1 (spacing 2^-7)
        f32_values(1 + two(-8), 1 + 3 * two(-8), 1 + two(-8) + two(-20), 1 + two(-8) - two(-20),
                   -(1 + 3 * two(-8)), 3.0e38),
        # specials and float32 extremes: inf, -inf, nan, -nan, max, min normal,
        # float32 subnormals (bf16 ties at bit 15), largest finite that rounds to bf16 inf
        f32_bits(0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F7FFFFF, 0x00800000,
                 0x00000001, 0x00008000, 0x00018000, 0x00017FFF, 0x807FFFFF, 0x7F7F8000,
                 0x7F7F7FFF, 0x3F808000, 0x3F818000),
    ]
    g = torch.Generator().manual_seed(1234)
    parts.append(torch.randn(24, generator=g) * torch.logspace(-6, 5, 24))
    return torch.cat(parts).contiguous()


def raw_bytes(t):
    t = t.contiguous().reshape(-1)
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.uint8: "U8",
}


def serialise(tensors, metadata):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name, t in tensors:
        b = raw_bytes(t)
        header[name] = {"dtype": DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def main():
    src = build_sources()
    g = torch.Generator().manual_seed(99)
    ids = torch.tensor([[0, 1, -1, 2147483647, -2147483648], [7, -300, 65536, 123456789, -5]],
                       dtype=torch.int64)
    mask = torch.tensor([0, 1, 2, 127, 128, 254, 255], dtype=torch.uint8)
    f64 = torch.tensor([0.1, 1e300, -1e-300, 1.0 + 2.0 ** -30], dtype=torch.float64)
    mat = torch.randn(3, 4, generator=g)
    tensors = [
        ("src", src),
        ("src_f16", src.half()),
        ("src_bf16", src.bfloat16()),
        ("src_f16_f32", src.half().float()),
        ("src_bf16_f32", src.bfloat16().float()),
        ("mat", mat),
        ("mat_f16", mat.half()),
        ("ids", ids),
        ("ids_f32", ids.float()),
        ("big_i64", torch.tensor([2 ** 40, -(2 ** 40)], dtype=torch.int64)),
        ("mask", mask),
        ("mask_f32", mask.float()),
        ("f64", f64),
        ("f64_f32", f64.float()),
        ("scalar", torch.tensor(3.5)),
        ("empty", torch.zeros(0, 3)),
    ]
    metadata = {
        "format": "pt",
        "config": json.dumps({"dim": 64, "layers": 2, "name": "tiny"}, separators=(",", ":")),
        "note": "unicode \u2713 \"quoted\"\ttab\nnewline \\ \x01",
    }
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "data", "st_ref.safetensors")
    data = serialise(tensors, metadata)
    with open(out, "wb") as fh:
        fh.write(data)
    print("wrote %s (%d bytes, %d source values)" % (out, len(data), src.numel()))


if __name__ == "__main__":
    main()
