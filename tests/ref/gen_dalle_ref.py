#!/usr/bin/python3
"""Reference for tests/test_dalle.c: three AdamW training steps of a reduced DALL-E-style
image-token transformer (the B2 architecture at toy sizes, models/dalle.py) in PyTorch,
written from the description in dalle_tok/dalle.h, from initial weights this script saves,
so that the C implementation can replay the steps and compare losses and weights.

Model: text 4 positions x vocab 520 (the top 4 ids are pads), image 2x2 = 4 positions x
codebook 16, width 16, 2 layers, 2 heads, exact GELU, MLP 4x, LayerNorm eps 1e-5; separate
text/image token embeddings, learned positions, final LayerNorm, untied head over the joint
vocabulary (536) with bias. Loss: logits at 0..T-2 against tokens 1..T-1, 1/8 * mean CE of
the text targets + 7/8 * mean CE of the image targets. AdamW lr 1e-2, betas (0.9, 0.95),
eps 1e-8, weight decay 0.1 on the Linear weights only. Batch 3 of random sequences.
LayerNorm gains/biases and all biases are perturbed from their usual init so that a
missing term cannot pass. Output: tests/data/dalle_ref.safetensors (init.* weights,
final.* weights, tokens, losses).
"""
import json, os, struct, sys
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models.dalle import Dalle  # noqa: E402

TL, TV, SIDE, K, C, L, NH = 4, 520, 2, 16, 16, 2, 2
IL = SIDE * SIDE
V, B = TV + K, 3

# the constructor's default init draws random numbers: build first, then seed, so that the
# values below depend on the seed alone; unfused: this reference's historic rounding order
model = Dalle(TL, TV, IL, K, C, L, NH, unfused=True)
torch.manual_seed(11)
P = dict(model.named_parameters())
with torch.no_grad():
    for name, p in P.items():  # in registration order, which fixes the random draws
        if "ln_" in name:  # LayerNorm gains around 1, biases around 0
            std, base = 0.1, 1.0 if name.endswith("weight") else 0.0
        elif name.endswith("bias"):
            std, base = 0.05, 0.0
        else:
            std, base = 0.02, 0.0
        p.copy_(base + std * torch.randn(*p.shape))

decay = [n for n in P if n.endswith("weight") and ("proj" in n or "c_fc" in n or n == "head.weight")]
decay = [n for n in decay if "ln_" not in n]
no_decay = [n for n in P if n not in decay]


def losses(tok):
    logits = model.logits(tok)[:, :-1]                 # (B, T-1, V)
    tgt = tok[:, 1:]
    lt = F.cross_entropy(logits[:, :TL - 1].reshape(-1, V), tgt[:, :TL - 1].reshape(-1))
    li = F.cross_entropy(logits[:, TL - 1:].reshape(-1, V), tgt[:, TL - 1:].reshape(-1))
    plain = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
    return lt / 8 + 7 * li / 8, lt, li, plain


text = torch.randint(0, TV, (B, TL))
image = TV + torch.randint(0, K, (B, IL))
tok = torch.cat([text, image], 1)

out = {}
for n, p in P.items():
    out["init." + n] = p.detach().clone().numpy()
opt = torch.optim.AdamW([{"params": [P[n] for n in decay], "weight_decay": 0.1},
                         {"params": [P[n] for n in no_decay], "weight_decay": 0.0}],
                        lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
rec = []
for s in range(3):
    opt.zero_grad()
    loss, lt, li, plain = losses(tok)
    rec += [loss.item(), lt.item(), li.item(), plain.item()]
    loss.backward()
    opt.step()
for n, p in P.items():
    out["final." + n] = p.detach().clone().numpy()
out["tokens"] = tok.numpy().astype(np.int32)
out["losses"] = np.array(rec, dtype=np.float32)  # per step: loss, text, image, plain mean


def save(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for n, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.float32: "F32", np.int32: "I32"}[a.dtype.type]
        b = a.tobytes()
        header[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


here = os.path.dirname(os.path.abspath(__file__))
cfg = {"text_len": TL, "text_vocab": TV, "image_side": SIDE, "codebook": K, "width": C, "n_layer": L,
       "n_head": NH}
save(os.path.join(here, "..", "data", "dalle_ref.safetensors"), out, {"config": json.dumps(cfg)})
print("losses", rec)
