#!/usr/bin/python3
"""gen_clip_ref.py - PyTorch / PIL references for the CLIP tests (test_clip_model.c,
test_clip_golden.c). Writes tests/data/clip_ref.safetensors.

1. Preprocessing (torchvision semantics, computed with PIL + numpy): the 300x200 test image
   tests/data/img/clip_src_300x200.png -> Resize(R) with PIL bicubic on the shorter side
   (longer side int(R * long / short)), CenterCrop(R) (left = round((w - R) / 2)),
   / 255, (x - mean) / std in float32, for R = 64 and R = 37 ("pre_64", "pre_37", (3, R, R)).

2. A tiny CLIP (models/clip.py) written from the paper / openai's model.py description (ViT image tower,
   causal text tower, pre-LN blocks with fused in_proj, QuickGELU, EOT pooling by argmax,
   x @ proj, logit scale as a log) with OpenAI's state_dict names. It is first checked
   against the golden outputs (tests/data/clip_golden, made with openai's own code)
   so that this script's architecture is known to be openai's. Then, at a small config
   (embed 16, 16x16 images, patch 4, vision width 24 / 2 layers / 2 heads, text context 12,
   vocab 64, width 16 / 2 layers / 2 heads), with random weights (LayerNorm and bias
   terms perturbed), a batch of 6 normalised images and 6 token rows (EOT = 63, the largest
   id, at varying positions): three steps of symmetric InfoNCE + AdamW (lr 1e-3, betas
   (0.9, 0.98), eps 1e-6, weight decay 0.2 except gains, biases, embeddings and
   logit_scale), logit_scale clamped to [0, log 100] after each step as OpenAI's training.
   Saved: "init.<name>" weights, "grad.<name>" gradients of step 1, "final.<name>" weights
   after 3 steps, "images" (6, 3, 16, 16), "tokens" (6, 12) int32, "losses" (3),
   "accs" (3); metadata "config" (OpenAI build_model keys + heads) and "adamw" (JSON).

3. The same with a convolutional stem (vision_stem 4, vision_stem_extra 1: Conv3x3 BN ReLU,
   then for patch 4 twice [stride-2 Conv3x3 BN ReLU, stride-1 Conv3x3 BN ReLU], Conv1x1 with
   bias), BatchNorm in training mode (batch statistics;
   running statistics updated with momentum 0.1 and the unbiased variance), weight decay
   on the convolution weights only: every tensor above under "stem." ("stem.init.*",
   "stem.grad.*", "stem.final.*" with the running statistics, "stem.losses", ...), plus
   "stem.eval_image_features" (6, 16): the trained model's image features in eval mode
   (running statistics); metadata "stem_config".

Usage: /usr/bin/python3 tests/ref/gen_clip_ref.py   (from the repository root)
"""
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models.clip import CLIP  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "clip_ref.safetensors")
GOLDEN = os.path.join(ROOT, "tests", "data", "clip_golden")
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


# ---------------------------------------------------------------- safetensors I/O
DT = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}
DT_BACK = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "I64": np.int64}


def save_st(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k, v in tensors.items():
        a = np.asarray(v).copy(order="C")  # keeps 0-d tensors 0-d
        b = a.tobytes()
        header[k] = {"dtype": DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], DT_BACK[v["dtype"]]).reshape(v["shape"]).copy()
    return out, meta


# ---------------------------------------------------------------- preprocessing
def preprocess(img, R):
    w, h = img.size
    if w <= h:
        nw, nh = R, int(R * h / w)
    else:
        nw, nh = int(R * w / h), R
    r = img.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - R) / 2.0)), int(round((nh - R) / 2.0))
    c = np.asarray(r.crop((left, top, left + R, top + R)), np.float32) / np.float32(255)
    c = (c - MEAN) / STD
    return np.ascontiguousarray(c.transpose(2, 0, 1).astype(np.float32))


def check_golden():
    w, meta = load_st(os.path.join(GOLDEN, "weights.safetensors"))
    cfg = json.loads(meta["config"])
    m = CLIP(cfg)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    inp, _ = load_st(os.path.join(GOLDEN, "inputs.safetensors"))
    exp, _ = load_st(os.path.join(GOLDEN, "expected.safetensors"))
    with torch.no_grad():
        fi = m.encode_image(torch.from_numpy(inp["images"]))
        ft = m.encode_text(torch.from_numpy(inp["tokens"]).long())
    di = np.abs(fi.numpy() - exp["image_features"]).max()
    dt = np.abs(ft.numpy() - exp["text_features"]).max()
    print("architecture vs openai's golden outputs: image %.2e, text %.2e" % (di, dt))
    assert di < 1e-4 and dt < 1e-4, "this script's CLIP is not openai's"


def train_ref(stem=0, stem_extra=0):
    cfg = dict(embed_dim=16, image_resolution=16, vision_patch_size=4, vision_width=24, vision_layers=2,
               vision_heads=2, context_length=12, vocab_size=64, transformer_width=16, transformer_layers=2,
               transformer_heads=2)
    if stem:
        cfg["vision_stem"] = stem
        cfg["vision_stem_extra"] = stem_extra
    torch.manual_seed(20240611)
    m = CLIP(cfg)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name == "logit_scale":
                continue
            if "ln_" in name or "ln_final" in name or (name.startswith("visual.stem.") and p.dim() == 1):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "token_embedding" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif name == "positional_embedding":
                p.copy_(0.01 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2 and "positional" not in name:
                fan_in = p.shape[1] if p.dim() == 2 else p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * fan_in ** -0.5)
    N, R, ctx, V = 6, cfg["image_resolution"], cfg["context_length"], cfg["vocab_size"]
    images = torch.randn(N, 3, R, R, generator=g)
    tokens = torch.zeros(N, ctx, dtype=torch.int32)
    eot_pos = [3, 5, 2, 7, 4, 5]
    for i, e in enumerate(eot_pos):
        tokens[i, 0] = V - 2  # "start" token
        tokens[i, 1:e] = torch.randint(1, V - 2, (e - 1,), generator=g)
        tokens[i, e] = V - 1  # EOT, the largest id
    init = OrderedDict((k, v.detach().clone()) for k, v in m.state_dict().items())
    no_decay = [p for n, p in m.named_parameters() if p.dim() < 2 or "embedding" in n or n == "logit_scale"]
    decay = [p for n, p in m.named_parameters() if not (p.dim() < 2 or "embedding" in n or n == "logit_scale")]
    hp = dict(lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"],
                            betas=hp["betas"], eps=hp["eps"], weight_decay=hp["weight_decay"])
    losses, accs, grads = [], [], None
    for step in range(3):
        opt.zero_grad()
        loss, acc = m.loss(images, tokens.long())
        loss.backward()
        if step == 0:
            grads = OrderedDict((n, p.grad.detach().clone()) for n, p in m.named_parameters())
        opt.step()
        with torch.no_grad():
            m.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        accs.append(acc.item())
    print("losses", losses, "accs", accs)
    t = OrderedDict()
    t["images"] = images.numpy()
    t["tokens"] = tokens.numpy()
    t["losses"] = np.array(losses, np.float32)
    t["accs"] = np.array(accs, np.float32)
    for k, v in init.items():
        if not k.endswith("num_batches_tracked"):
            t["init." + k] = v.numpy()
    for k, v in grads.items():
        t["grad." + k] = v.numpy()
    for k, v in m.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            t["final." + k] = v.detach().numpy()
    if stem:
        m.eval()
        with torch.no_grad():
            t["eval_image_features"] = m.encode_image(images).numpy()
    meta = {"config": json.dumps(cfg), "adamw": json.dumps(dict(hp, betas=list(hp["betas"])))}
    return t, meta


def main():
    check_golden()
    tensors, meta = train_ref()
    st, smeta = train_ref(stem=4, stem_extra=1)
    for k, v in st.items():
        tensors["stem." + k] = v
    meta["stem_config"] = smeta["config"]
    src = Image.open(os.path.join(ROOT, "tests", "data", "img", "clip_src_300x200.png")).convert("RGB")
    tensors["pre_64"] = preprocess(src, 64)
    tensors["pre_37"] = preprocess(src, 37)
    meta["preprocess"] = "clip_src_300x200.png -> pre_64, pre_37"
    save_st(OUT, tensors, meta)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
