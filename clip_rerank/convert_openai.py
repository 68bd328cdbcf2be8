#!/usr/bin/python3
"""convert_openai.py - OpenAI CLIP .pt (TorchScript archive or plain state_dict) ->
safetensors with OpenAI's key names, which `t2i clip ... --ckpt` loads directly.

Usage: /usr/bin/python3 clip_rerank/convert_openai.py ViT-B-32.pt ViT-B-32.safetensors [--dtype f16|f32]

Only ViT models (a visual.conv1.weight) are supported, as by t2i. The non-tensor entries
OpenAI's build_model drops (input_resolution, context_length, vocab_size) are dropped
here too. Head counts follow build_model (width // 64, or --vision-heads / --text-heads) and are written to the metadata
"config" JSON with the other shapes. Needs only torch (Debian's python3-torch works); the
safetensors format is written directly: 8-byte little-endian header length, JSON header
(padded with spaces to a multiple of 8), raw little-endian data.
"""
import argparse
import json
import struct
import sys

import torch


def load_state_dict(path):
    try:  # OpenAI's released files are TorchScript archives
        return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        sd = torch.load(path, map_location="cpu")
        return sd.get("state_dict", sd) if isinstance(sd, dict) else sd.state_dict()


def config_of(sd, vision_heads, text_heads):
    w = sd["visual.conv1.weight"]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    count = lambda p: len({k.split(".")[p.count(".")] for k in sd if k.startswith(p)})  # noqa: E731
    vw, tw = w.shape[0], sd["ln_final.weight"].shape[0]
    vision_heads, text_heads = vision_heads or vw // 64, text_heads or tw // 64
    if vision_heads < 1 or text_heads < 1:
        sys.exit("convert_openai.py: a tower narrower than 64 (vision %d, text %d): give --vision-heads and "
                 "--text-heads" % (vw, tw))
    return {"embed_dim": sd["text_projection"].shape[1], "image_resolution": w.shape[-1] * grid,
            "vision_layers": count("visual.transformer.resblocks."), "vision_width": vw,
            "vision_patch_size": w.shape[-1], "vision_heads": vision_heads,
            "context_length": sd["positional_embedding"].shape[0], "vocab_size": sd["token_embedding.weight"].shape[0],
            "transformer_width": tw, "transformer_heads": text_heads,
            "transformer_layers": count("transformer.resblocks.")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f32")
    ap.add_argument("--vision-heads", type=int, default=0, help="override width // 64")
    ap.add_argument("--text-heads", type=int, default=0, help="override width // 64")
    a = ap.parse_args()
    sd = {k: v for k, v in load_state_dict(a.src).items()
          if k not in ("input_resolution", "context_length", "vocab_size")}
    if "visual.conv1.weight" not in sd:
        sys.exit("%s: not a CLIP ViT state_dict (no visual.conv1.weight)" % a.src)
    dtype, tag = (torch.float16, "F16") if a.dtype == "f16" else (torch.float32, "F32")
    header, blobs, off = {"__metadata__": {"format": "openai-clip", "config": json.dumps(config_of(sd, a.vision_heads, a.text_heads))}}, [], 0
    for k in sorted(sd):
        t = sd[k].detach().to(dtype).contiguous()
        b = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": tag, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(a.dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    print("%s: %d tensors, %.1f MB, config %s" % (a.dst, len(sd), (8 + len(h) + off) / 1e6, header["__metadata__"]["config"]))


if __name__ == "__main__":
    main()
