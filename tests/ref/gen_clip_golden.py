#!/usr/bin/python3
"""gen_clip_golden.py - golden CLIP data for test_clip_golden.c, test_tokenizer.c, cli_clip.sh and
cli_tokenize.sh, computed by OpenAI's own CLIP code. Writes tests/data/clip_golden/.

OpenAI's code is not part of this repository: pass a folder holding openai/CLIP's `clip/model.py`
and `clip/simple_tokenizer.py` (commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 was used; their
sha256 are printed and stored in the weights' metadata). Only those two files are loaded, by path,
so that clip/__init__.py (which needs torchvision, PIL and tqdm) is never imported.
`clip.tokenize` lives in that __init__'s clip.py; its padding / truncation rule (SOT + ids + EOT,
zero padded to the context; if longer, the first N with EOT written last) is restated in
`tokenize()` below.

ftfy: simple_tokenizer.py calls `ftfy.fix_text` first. Debian 12 has no ftfy package, so when the
module is missing this script installs a stand-in whose fix_text returns its text unchanged. The
strings below are plain NFC text without mojibake, curly quotes, ligatures or fullwidth forms, on
which ftfy changes nothing. The `regex` module is needed (Debian: python3-regex).

The model: a random (untrained) tiny ViT CLIP; the numbers check the maths, not quality.
  embed_dim 32; image 32x32, patch 8 (4x4 grid + class token = 17 positions); vision width 64,
  2 layers, 4 heads (head dim 16); context 77, vocab 49408 (OpenAI's merges, so real token ids);
  text width 8, 2 layers, 2 heads (head dim 4). QuickGELU, pre-LN, LayerNorm eps 1e-5.
The text width is small because the token embedding (49408 x width floats) is nearly all of the
file: at width 8 the weights take 2.1 MB. The head counts cannot be read from the shapes
(OpenAI's build_model would say width // 64 = 1 and 0), so they are in the weights' metadata
("config", a JSON object with build_model's keys plus vision_heads). OpenAI's CLIP class always
builds its ViT with width // 64 heads, so the visual tower is rebuilt here with
VisionTransformer(heads=4) from the same model.py.

Random init: torch.manual_seed(SEED), CLIP(...) (its initialize_parameters) and the rebuilt
VisionTransformer; then, from a second generator (seed SEED + 1), every LayerNorm weight =
1 + 0.1 N(0,1), every LayerNorm bias = 0.1 N(0,1), every other bias (attention in_proj/out_proj,
MLP c_fc/c_proj) += 0.05 N(0,1), and logit_scale = 3.5 + U[0,1), so that a dropped bias, a
LayerNorm without its affine terms or a hard-coded logit scale of 100 cannot pass.

Files (safetensors: 8-byte little-endian header length, JSON header with sorted keys, raw data):
  weights.safetensors       float32, OpenAI's state_dict names and shapes (Linear weights
                            [out, in]; visual.proj and text_projection [in, out], used as x @ P;
                            in_proj rows q | k | v; logit_scale 0-d, a log). Metadata: config,
                            seed, sha256 of the two OpenAI files.
  inputs.safetensors        pixels_u8 uint8 [4, 32, 32, 3] (synthetic images, NHWC); images01
                            float32 [4, 3, 32, 32] = pixels / 255; images = (images01 - mean) / std
                            with OpenAI's Normalize constants (the model input); tokens int32
                            [4, 77] = tokenize(captions). Metadata: captions, mean, std.
  expected.safetensors      float32: image_features, text_features [4, 32] (encode_image /
                            encode_text, not normalised); image_features_normalized,
                            text_features_normalized; logits_per_image, logits_per_text [4, 4]
                            (the model's forward); logit_scale_exp [1].
  intermediates.safetensors float32, batch first: visual.conv1_out [4, 64, 4, 4],
                            visual.ln_pre_out, visual.block{0,1}_out [4, 17, 64],
                            visual.ln_post_out [4, 64], text.embed_out (token + position
                            embedding), text.block{0,1}_out, text.ln_final_out [4, 77, 8].
  tokens.jsonl              per string: text; ids = SimpleTokenizer.encode (no SOT/EOT); n_ids;
                            truncated; tokens77 = tokenize(text, 77, truncate=True); decoded =
                            SimpleTokenizer.decode(ids). One JSON object per line.
  captions.txt              the 4 captions of inputs.tokens, one per line.
  SHA256SUMS                of the files above.
Tolerance the tests use: |got - want| <= 1e-4 or <= 1e-4 |want|, elementwise. The script checks
that the same model in float64 stays within a tenth of that (1e-5, absolute or relative) of every
float32 output, so the tolerance is well above PyTorch's own rounding. Running it again gives byte-identical files.

Usage (from the repository root):
  /usr/bin/python3 tests/ref/gen_clip_golden.py --openai-clip DIR
  (DIR/clip/model.py and DIR/clip/simple_tokenizer.py; --out to write elsewhere)
"""
import argparse
import hashlib
import importlib.util
import json
import os
import struct
import sys
import types

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "clip_rerank", "vocab", "bpe_simple_vocab_16e6.txt.gz")
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
SEED = 20240501
CONFIG = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
              vision_heads=4, context_length=77, vocab_size=49408, transformer_width=8, transformer_heads=2,
              transformer_layers=2)
NORM_MEAN, NORM_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # OpenAI's
MEAN, STD = np.array(NORM_MEAN, np.float32), np.array(NORM_STD, np.float32)
CAPTIONS = ["a photo of a cat", "A red car parked on the street.", "two dogs playing in the snow",
            "it's a sunny day at the beach!"]
# the tokenizer strings: plain words, casing, digits, contractions, accents, emoji, CJK and Hangul,
# whitespace runs, punctuation (line 3 and line 11 are read by cli_tokenize.sh)
STRINGS = [
    "a photo of a cat", "a photo of a dog", "A red car parked on the street.", "two dogs playing in the snow",
    "it's a sunny day at the beach!", "Hello, World!", "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "there are 3 apples and 12 oranges", "call 555-0199 before 10pm", "the year 2024",
    "I'm sure they're coming; we'll see, won't we? You've been told, he'd said.", "what's this?!",
    "a caf\u00e9 in Z\u00fcrich", "na\u00efve fa\u00e7ade, r\u00e9sum\u00e9, jalape\u00f1o", "cr\u00e8me br\u00fbl\u00e9e",
    "a cat \U0001f431 on a mat", "\U0001f525\U0001f525\U0001f525", "I \u2764 NY",
    "\u4e1c\u4eac\u7684\u591c\u666f", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\ud55c\uad6d\uc5b4 \ubb38\uc7a5",
    "   leading and trailing spaces   ", "multiple    spaces\tand\ttabs\nand newlines",
    "email me at test@example.com", "a #hashtag and an @mention", "(parentheses) [brackets] {braces}",
    "semi-colons; colons: and -- dashes", "Mixed CASE Words In A Sentence",
    "a photo of a red cube next to a blue sphere", "a small green bird sitting on a branch, digital art",
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_openai(folder):
    """OpenAI's model.py and simple_tokenizer.py as modules, without the clip package."""
    try:
        import ftfy  # noqa: F401
    except ImportError:
        stub = types.ModuleType("ftfy")
        stub.fix_text = lambda text: text
        sys.modules["ftfy"] = stub
        print("ftfy missing: fix_text is the identity (see the header)")
    mods, hashes = {}, {}
    for name in ("model", "simple_tokenizer"):
        path = os.path.join(folder, "clip", name + ".py")
        spec = importlib.util.spec_from_file_location("openai_clip_" + name, path)
        mods[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[name])
        hashes[name + ".py"] = sha256(path)
        print("%s: sha256 %s" % (path, hashes[name + ".py"]))
    return mods["model"], mods["simple_tokenizer"], hashes


def tokenize(tok, texts, context_length=77, truncate=True):
    """clip.tokenize (openai/CLIP clip/clip.py), restated: the module imports torchvision."""
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.int32)
    for i, text in enumerate(texts):
        ids = [sot] + tok.encode(text) + [eot]
        if len(ids) > context_length:
            assert truncate, text
            ids = ids[:context_length]
            ids[-1] = eot
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def build(model_py):
    c = CONFIG
    torch.manual_seed(SEED)
    m = model_py.CLIP(c["embed_dim"], c["image_resolution"], c["vision_layers"], c["vision_width"],
                      c["vision_patch_size"], c["context_length"], c["vocab_size"], c["transformer_width"],
                      c["transformer_heads"], c["transformer_layers"])
    m.visual = model_py.VisionTransformer(c["image_resolution"], c["vision_patch_size"], c["vision_width"],
                                          c["vision_layers"], c["vision_heads"], c["embed_dim"])
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name == "logit_scale":
                p.fill_(3.5 + torch.rand((), generator=g).item())
            elif ".ln_" in name or name.startswith("ln_"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    assert m.visual.transformer.resblocks[0].attn.num_heads == c["vision_heads"]
    assert m.transformer.resblocks[0].attn.num_heads == c["transformer_heads"]
    return m.eval()


def synthetic_images():
    """Four 32x32 RGB images: a colour ramp, a disc, a noisy checkerboard, plain noise."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    ramp = np.stack([x * 8, y * 8, 255 - (x + y) * 4], -1)
    disc = np.where((((x - 13) ** 2 + (y - 18) ** 2) < 90)[..., None], [230, 40, 30], [20, 90, 200])
    board = ((x // 4 + y // 4) % 2)[..., None] * np.array([200, 200, 60]) + rng.normal(0, 20, (32, 32, 3))
    noise = rng.uniform(0, 256, (32, 32, 3))
    return np.clip(np.round(np.stack([ramp, disc, board, noise])), 0, 255).astype(np.uint8)


def run(m, images, tokens):
    """Features, logits and batch-first intermediates of one forward pass."""
    mid, hooks = {}, []

    def keep(name, lnd=False):
        def hook(mod, inp, out):
            mid[name] = (out.permute(1, 0, 2) if lnd else out).detach().clone()
        return hook

    v, t = m.visual, m.transformer
    hooks.append(v.conv1.register_forward_hook(keep("visual.conv1_out")))
    hooks.append(v.ln_pre.register_forward_hook(keep("visual.ln_pre_out")))
    hooks.append(v.ln_post.register_forward_hook(keep("visual.ln_post_out")))
    hooks.append(t.register_forward_pre_hook(lambda mod, inp: mid.__setitem__("text.embed_out", inp[0].permute(1, 0, 2).clone())))
    hooks.append(m.ln_final.register_forward_hook(keep("text.ln_final_out")))
    for i in range(CONFIG["vision_layers"]):
        hooks.append(v.transformer.resblocks[i].register_forward_hook(keep("visual.block%d_out" % i, True)))
    for i in range(CONFIG["transformer_layers"]):
        hooks.append(t.resblocks[i].register_forward_hook(keep("text.block%d_out" % i, True)))
    with torch.no_grad():
        fi = m.encode_image(images)
        ft = m.encode_text(tokens)
        lpi, lpt = m(images, tokens)
    for h in hooks:
        h.remove()
    exp = {
        "image_features": fi, "text_features": ft,
        "image_features_normalized": fi / fi.norm(dim=1, keepdim=True),
        "text_features_normalized": ft / ft.norm(dim=1, keepdim=True),
        "logits_per_image": lpi, "logits_per_text": lpt,
        "logit_scale_exp": m.logit_scale.detach().exp().reshape(1),
    }
    return exp, mid


def save_st(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}
    for k in sorted(tensors):
        v = tensors[k].detach().numpy() if torch.is_tensor(tensors[k]) else tensors[k]
        a = np.array(v, order="C")  # np.ascontiguousarray would make logit_scale 1-d
        b = a.tobytes()
        header[k] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--openai-clip", required=True, help="folder with clip/model.py and clip/simple_tokenizer.py")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "clip_golden"))
    a = ap.parse_args()
    torch.set_num_threads(1)  # one summation order: the same bytes on every run
    assert sha256(VOCAB) == VOCAB_SHA256, VOCAB + ": not OpenAI's merges file"
    model_py, tok_py, hashes = load_openai(a.openai_clip)
    tok = tok_py.SimpleTokenizer(VOCAB)
    os.makedirs(a.out, exist_ok=True)

    m = build(model_py)
    pixels = synthetic_images()
    images01 = torch.from_numpy(pixels.astype(np.float32) / np.float32(255)).permute(0, 3, 1, 2).contiguous()
    images = ((images01 - torch.from_numpy(MEAN)[:, None, None]) / torch.from_numpy(STD)[:, None, None]).contiguous()
    tokens = tokenize(tok, CAPTIONS)
    exp, mid = run(m, images, tokens)

    # float64 twin: how far float32 rounding alone moves each output
    m64 = build(model_py).double()
    for mod in m64.modules():  # OpenAI's LayerNorm computes in float32 whatever its input
        if isinstance(mod, model_py.LayerNorm):
            mod.forward = types.MethodType(torch.nn.LayerNorm.forward, mod)
    exp64, mid64 = run(m64, images.double(), tokens)
    for k in list(exp) + list(mid):
        want, got = (exp64, exp) if k in exp else (mid64, mid)
        d = (want[k] - got[k].double()).abs()
        print("  %-28s float64 vs float32 %.2e" % (k, d.max().item()))
        assert ((d <= 1e-5) | (d <= 1e-5 * want[k].abs())).all(), k  # a tenth of the tests' tolerance

    meta = {"format": "openai-clip state_dict (key names as in openai/CLIP model.py)",
            "config": json.dumps(CONFIG, sort_keys=True), "seed": str(SEED), "dtype": "float32",
            "openai_sha256": json.dumps(hashes, sort_keys=True)}
    save_st(os.path.join(a.out, "weights.safetensors"), dict(m.state_dict()), meta)
    save_st(os.path.join(a.out, "inputs.safetensors"),
            {"pixels_u8": pixels, "images01": images01, "images": images, "tokens": tokens},
            {"captions": json.dumps(CAPTIONS, ensure_ascii=False), "mean": json.dumps(NORM_MEAN),
             "std": json.dumps(NORM_STD)})
    save_st(os.path.join(a.out, "expected.safetensors"), exp,
            {"tolerance": "elementwise |got-exp| <= 1e-4 or |got-exp| <= 1e-4*|exp|"})
    save_st(os.path.join(a.out, "intermediates.safetensors"), mid)
    with open(os.path.join(a.out, "captions.txt"), "w", encoding="utf-8") as f:
        f.write("".join(c + "\n" for c in CAPTIONS))
    with open(os.path.join(a.out, "tokens.jsonl"), "w", encoding="utf-8") as f:
        for text in STRINGS:
            ids = tok.encode(text)
            t77 = tokenize(tok, [text])[0].tolist()
            rec = {"text": text, "ids": ids, "n_ids": len(ids), "truncated": len(ids) + 2 > 77, "tokens77": t77,
                   "decoded": tok.decode(ids)}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    names = ["captions.txt", "expected.safetensors", "inputs.safetensors", "intermediates.safetensors",
             "tokens.jsonl", "weights.safetensors"]
    with open(os.path.join(a.out, "SHA256SUMS"), "w") as f:
        f.write("".join("%s  %s\n" % (sha256(os.path.join(a.out, n)), n) for n in names))
    total = sum(os.path.getsize(os.path.join(a.out, n)) for n in names)
    print("wrote %s (%d files, %.2f MB)" % (a.out, len(names), total / 1e6))


if __name__ == "__main__":
    main()
