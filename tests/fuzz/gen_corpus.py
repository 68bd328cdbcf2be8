#!/usr/bin/python3
"""gen_corpus.py - seed corpus for fuzz_safetensors (tests/fuzz/corpus/safetensors/).

A dozen small files, valid and malformed, covering every dtype, scalars, empty tensors,
metadata, unaligned offsets and typical defects (overlaps, holes), so the fuzzer starts from inputs that
reach deep into the validator. Standard library only.

Usage: python3 tests/fuzz/gen_corpus.py   (rewrites the corpus folder's seed_* files)
"""
import json
import os
import struct

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
         "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def pack(header, data=b"", pad=True):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def tensors(specs, meta=None, start=0):
    """specs: (name, dtype, shape); data is a byte ramp so decoded values vary."""
    header, blob, off = {}, b"", start
    if meta is not None:
        header["__metadata__"] = meta
    blob = bytes(i * 37 % 256 for i in range(start))
    for name, dt, shape in specs:
        n = SIZES[dt]
        for d in shape:
            n *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        blob += bytes((off + i) * 53 % 256 for i in range(n))
        off += n
    return header, blob


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
    os.makedirs(out, exist_ok=True)
    seeds = {}
    h, b = tensors([(dt.lower(), dt, [2, 3]) for dt in SIZES], {"format": "pt", "config": '{"dim":4}'})
    seeds["all_dtypes"] = pack(h, b)
    h, b = tensors([("scalar", "F32", []), ("empty", "F16", [0, 5]), ("deep", "U8", [1] * 8)])
    seeds["scalar_empty_deep"] = pack(h, b)
    h, b = tensors([("b", "U8", [1]), ("w", "F32", [3])])  # w at an odd offset of an odd-length header
    seeds["unaligned"] = pack(h, b, pad=False)
    h, b = tensors([("w", "F32", [3])], start=1)  # the data block's first byte belongs to no tensor
    seeds["hole"] = pack(h, b)
    seeds["empty_header"] = pack({})
    seeds["meta_only"] = pack({"__metadata__": {"a": "b", "unicode": "\u2713"}})
    h, b = tensors([("a", "F32", [4]), ("b", "F32", [4])])
    h["b"]["data_offsets"] = [8, 24]
    seeds["overlap"] = pack(h, b)
    h, b = tensors([("a", "BF16", [3])])
    h["a"]["data_offsets"] = [0, 8]
    seeds["wrong_size"] = pack(h, b + b"\0\0")
    h, b = tensors([("a", "F32", [2])])
    seeds["truncated_data"] = pack(h, b[:5])
    seeds["bad_dtype"] = pack(b'{"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4)
    seeds["negative_dim"] = pack(b'{"a":{"dtype":"U8","shape":[-1,2.5],"data_offsets":[0,1]}}', b"\0")
    seeds["duplicate"] = pack(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                              b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0")
    seeds["meta_not_string"] = pack(b'{"__metadata__":{"k":1,"k":"v"}}')
    seeds["not_object"] = pack(b'[{"dtype":"F32"}]')
    seeds["bad_utf8"] = pack(b'{"\xc3\x28":{}}')
    seeds["header_beyond"] = struct.pack("<Q", 1 << 40) + b"{}"
    seeds["short"] = b"\x02\0\0"
    for name, data in seeds.items():
        with open(os.path.join(out, "seed_" + name), "wb") as fh:
            fh.write(data)
    print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
