#!/usr/bin/python3
"""gen_corpus.py - seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed_*).

  safetensors  a dozen small files, valid and malformed, covering every dtype, scalars,
               empty tensors, metadata, unaligned offsets and typical defects (overlaps,
               holes), so the fuzzer starts from inputs that reach deep into the validator;
  image        the small PNGs and JPEGs of tests/data/img (every PNG colour type and
               depth, Adam7, tRNS; gray, 4:2:0, 4:4:4, progressive and CMYK JPEG) and tiny
               BMP, GIF, PGM, 16-bit PPM and TGA files written here, plus truncated ones
               and a JPEG with garbage entropy-coded data;
  metadata     metadata.jsonl and metadata.csv texts naming the fuzz folder's files
               (a.png, b.jpg, sub/c.png), with quoting, CRLF, a byte-order mark, errors;
  tokenizer    captions with HTML entities, contractions, special tokens, accents, CJK,
               Greek final sigma, emoji, long words;
  prompts      prompts files: comments, blank lines, CRLF, tabs, errors;
  ckpt_json    a selector byte and a JSON text: a GAN trainer's state, a table of every
               field type, and the configs of the shipped models (samples/models).
Standard library only.

Usage: python3 tests/fuzz/gen_corpus.py   (rewrites the corpus folders' seed_* files)
"""
import glob
import hashlib
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

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


def safetensors_seeds():
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
    return seeds


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w, h, color, depth, rows):
    """A non-interlaced PNG; rows are the filtered scanlines (filter byte included)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def image_seeds():
    seeds = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "img", "*.png"))
                       + glob.glob(os.path.join(ROOT, "tests", "data", "img", "*.jpg"))
                       + glob.glob(os.path.join(ROOT, "tests", "data", "img", "*.webp"))):
        data = open(path, "rb").read()
        if len(data) <= 4096:
            seeds[os.path.splitext(os.path.basename(path))[0]] = data
    # damaged JPEGs, each refused by the decoder: cut inside the entropy-coded data (baseline,
    # and progressive between scans), and one whose entropy-coded data is replaced after 32
    # bytes by runs of stuffed 0xFF 0x00 and pseudo-random bytes (stb_image's JPEG decoder
    # shifted by a negative bit count on such data; the fuzzer found it in CI)
    seeds["jpeg_truncated"] = seeds["jpeg_rgb420"][:len(seeds["jpeg_rgb420"]) // 2]
    seeds["jpeg_progressive_truncated"] = seeds["jpeg_progressive"][:len(seeds["jpeg_progressive"]) * 2 // 3]
    base = seeds["jpeg_rgb420"]
    sos = base.index(b"\xff\xda")
    data = sos + 2 + (base[sos + 2] << 8 | base[sos + 3])
    noise = b"".join(hashlib.sha256(b"t2i jpeg %d" % i).digest() for i in range(8))
    seeds["jpeg_corrupt_entropy"] = (base[:data + 32] + b"\xff\x00" * 160 + noise + b"\xff\x00" * 40 + noise[::-1]
                                     + b"\xff\xd9")
    rgba16 = b"".join(b"\0" + bytes(range(y * 16, y * 16 + 16)) for y in range(3))  # 2x3, 8 bytes a pixel
    seeds["png_rgba16"] = png(2, 3, 6, 16, rgba16)
    seeds["png_rgb8_filters"] = png(2, 2, 2, 8, b"\1" + bytes(6) + b"\4" + bytes(range(6)))
    seeds["png_truncated"] = seeds["png_rgba16"][:45]
    seeds["webp_truncated"] = seeds["webp_lossless_rgba_5x3"][:60]  # the WebPs: cwebp -lossless (package webp)
    w, h = 3, 2  # BMP: 24-bit bottom-up rows padded to 4 bytes
    row = bytes(range(9)) + b"\0\0\0"
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(row) * h, 2835, 2835, 0, 0)
    seeds["bmp_24"] = b"BM" + struct.pack("<IHHI", 14 + 40 + len(row) * h, 0, 0, 54) + dib + row * h
    seeds["bmp_truncated"] = seeds["bmp_24"][:60]
    seeds["gif_2x2"] = (b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
                        + b"," + struct.pack("<HHHHB", 0, 0, 2, 2, 0) + b"\x02\x02\x44\x01\x00;")
    seeds["pgm"] = b"P5\n# a comment\n3 2\n255\n" + bytes(range(6))
    seeds["ppm16"] = b"P6 2 1 65535 " + bytes(range(12))
    seeds["pnm_truncated"] = b"P6 400 300 255\n" + bytes(10)
    seeds["tga_rgb"] = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 2, 2, 24, 0) + bytes(range(12))
    return seeds


def metadata_seeds():
    return {
        "jsonl": b'{"file_name": "a.png", "text": "a red sneaker"}\n'
                 b'\n{"file_name": "sub/c.png", "text": "caf\\u00e9 &amp; \\"quotes\\""}\n',
        "jsonl_bom_crlf": b'\xef\xbb\xbf{"text": "x", "file_name": "b.jpg", "extra": [1, {"a": null}]}\r\n',
        "jsonl_errors": b'{"file_name": "missing.png", "text": "x"}\n{"file_name": "empty", "text": " "}\n',
        "csv": b'file_name,text\na.png,a red sneaker\n"b.jpg","a ""quoted"", multi\nline caption"\n',
        "csv_crlf_extra": b'\xef\xbb\xbfid,text,file_name\r\n1,gray shirt,sub/c.png\r\n\r\n2,x,a.png\r\n',
        "csv_errors": b'file_name,text\n"a.png"x,y\n"unterminated\n',
    }


def tokenizer_seeds():
    texts = [
        "a photo of a red sneaker on a white background",
        "It's THE dog's toy, they'll say &amp; we're sure &lt;3 &#x1F600; &notin &NotEqualTilde;",
        "<|startoftext|>hello<|endoftext|> <|endoftext|",
        "caf\u00e9 na\u00efve \u0130stanbul \u039f\u0394\u039f\u03a3 \u03a3\u03b1 \u00df",
        "\u732b\u306e\u5199\u771f \U0001f44d\U0001f3fd 12345 \u0663\u0664",
        "  tabs\tand\u00a0nbsp\u2028line   ends\r\n",
        "x" * 300 + " " + "ab" * 100,
        "&amp;amp;lt; &#0; &#x110000; &#128; \u0345 'S '\u017f",
    ]
    seeds = {"text_%d" % i: t.encode() for i, t in enumerate(texts)}
    seeds["bad_utf8"] = b"ok \xc3\x28 \xed\xa0\x80"
    return seeds


def prompts_seeds():
    return {
        "plain": b"a red sneaker\na gray shirt\n",
        "comments": b"# captions\n\n  a bag with a strap  \n\t# indented comment\nlast line without newline",
        "crlf_unicode": b"caf\xc3\xa9 au lait\r\n\r\n\xe7\x8c\xab\r\n",
        "nul": b"one\ntw\0o\n",
        "control": b"ok\nbell\x07\n",
        "bad_utf8": b"ok\n\xff\xfe\n",
        "only_comments": b"# nothing\n   \n",
    }


def shipped_config(name):
    with open(os.path.join(ROOT, "samples", "models", name + ".safetensors"), "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return json.loads(fh.read(n))["__metadata__"]["config"].encode()


def ckpt_json_seeds():
    rng = '["0123456789abcdef","fedcba9876543210","0000000000000001","8000000000000000","1","3f800000"]'
    state = ('{"step":120,"target":1000,"rng":%s,"loader_epoch":2,"loader_pos":7,"opt_g_step":120,'
             '"opt_d_step":240,"train":{"data":"fmnist","loss":"hinge","lr_g":0.0002,"lr_d":0.0002,'
             '"beta1":0.5,"beta2":0.999,"n_critic":1,"label_smooth":1,"ema":0.999,"ema_start":-1,'
             '"mismatch":0,"batch":64,"flip":false,"cond_classes":true,"seed":"18446744073709551615"}}' % rng)
    every = ('{"l":-9007199254740992,"i":-2147483647,"irange":1000,"b":true,"e":"all","act":"gelu",'
             '"f":1e-45,"frange":2,"fdef":0.25,"v":[1,-2.5,3e38],"seed":"0","rng":%s,"s":"abc\\u00e9",'
             '"sdef":"","sof":"none"}' % rng)
    seeds = {"state": b"\0" + state.encode(), "every": b"\1" + every.encode(),
             "every_defaults": b"\1" + b'{"l":1,"i":2,"irange":0,"b":false,"act":"relu","f":0,"frange":1,'
                               b'"seed":"5","rng":' + rng.encode() + b',"s":""}'}
    for sel, name in ((2, "gan"), (3, "sr"), (4, "dalle"), (5, "vq"), (6, "clip")):
        seeds["config_" + name] = bytes([sel]) + shipped_config(name)
    return seeds


def main():
    for target, make in (("safetensors", safetensors_seeds), ("image", image_seeds), ("metadata", metadata_seeds),
                         ("tokenizer", tokenizer_seeds), ("prompts", prompts_seeds), ("ckpt_json", ckpt_json_seeds)):
        out = os.path.join(HERE, "corpus", target)
        os.makedirs(out, exist_ok=True)
        for old in glob.glob(os.path.join(out, "seed_*")):  # regress_* files stay
            os.remove(old)
        seeds = make()
        for name, data in seeds.items():
            with open(os.path.join(out, "seed_" + name), "wb") as fh:
                fh.write(data)
        print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
