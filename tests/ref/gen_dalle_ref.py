#!/usr/bin/python3
"""Reference for tests/test_dalle.c: three AdamW training steps of a reduced DALL-E-style
image-token transformer (the B2 architecture at toy sizes) in PyTorch, written from the
description in dalle_tok/dalle.h, from initial weights this script saves, so that the C
implementation can replay the steps and compare losses and weights.

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
import json, os, struct
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(11)
TL, TV, SIDE, K, C, L, NH = 4, 520, 2, 16, 16, 2, 2
IL = SIDE * SIDE
T, V, B = TL + IL, TV + K, 3
HS = C // NH

P = {}


def add(name, *shape, std=0.02, base=0.0):
    P[name] = (base + std * torch.randn(*shape)).requires_grad_(True)


add("text_emb.weight", TV, C)
add("image_emb.weight", K, C)
add("pos_emb.weight", T, C)
for l in range(L):
    pre = f"transformer.resblocks.{l}."
    add(pre + "ln_1.weight", C, std=0.1, base=1.0)
    add(pre + "ln_1.bias", C, std=0.1)
    add(pre + "attn.in_proj_weight", 3 * C, C)
    add(pre + "attn.in_proj_bias", 3 * C, std=0.05)
    add(pre + "attn.out_proj.weight", C, C)
    add(pre + "attn.out_proj.bias", C, std=0.05)
    add(pre + "ln_2.weight", C, std=0.1, base=1.0)
    add(pre + "ln_2.bias", C, std=0.1)
    add(pre + "mlp.c_fc.weight", 4 * C, C)
    add(pre + "mlp.c_fc.bias", 4 * C, std=0.05)
    add(pre + "mlp.c_proj.weight", C, 4 * C)
    add(pre + "mlp.c_proj.bias", C, std=0.05)
add("ln_f.weight", C, std=0.1, base=1.0)
add("ln_f.bias", C, std=0.1)
add("head.weight", V, C)
add("head.bias", V, std=0.05)

decay = [n for n in P if n.endswith("weight") and ("proj" in n or "c_fc" in n or n == "head.weight")]
decay = [n for n in decay if "ln_" not in n]
no_decay = [n for n in P if n not in decay]


def forward(tok):
    # tok (B, T) joint ids: text ids at 0..TL-1, TV + code after
    x = torch.cat([P["text_emb.weight"][tok[:, :TL]], P["image_emb.weight"][tok[:, TL:] - TV]], 1)
    x = x + P["pos_emb.weight"][None]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(L):
        pre = f"transformer.resblocks.{l}."
        h = F.layer_norm(x, (C,), P[pre + "ln_1.weight"], P[pre + "ln_1.bias"], 1e-5)
        qkv = h @ P[pre + "attn.in_proj_weight"].T + P[pre + "attn.in_proj_bias"]
        q, k, v = qkv.split(C, 2)
        q, k, v = [t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-1, -2)) / HS ** 0.5
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P[pre + "attn.out_proj.weight"].T + P[pre + "attn.out_proj.bias"]
        h = F.layer_norm(x, (C,), P[pre + "ln_2.weight"], P[pre + "ln_2.bias"], 1e-5)
        h = F.gelu(h @ P[pre + "mlp.c_fc.weight"].T + P[pre + "mlp.c_fc.bias"])
        x = x + h @ P[pre + "mlp.c_proj.weight"].T + P[pre + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
    return x @ P["head.weight"].T + P["head.bias"]


def losses(tok):
    logits = forward(tok)[:, :-1]                      # (B, T-1, V)
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
