"""CLIP with OpenAI's architecture and state_dict names: the model of benchmark B3 and of
clip_rerank/.

Used by tests/ref/gen_clip_ref.py (checked there against openai's golden outputs, then
trained at a tiny size for test_clip_model.c) and by bench/torch_b3.py at the ViT-B/32
configuration. The config is a dict with openai's build_model keys plus the head counts:
embed_dim, image_resolution, vision_patch_size, vision_width, vision_layers, vision_heads,
context_length, vocab_size, transformer_width, transformer_layers, transformer_heads.

Image tower: patch convolution (no bias), class token, learned positions, ln_pre,
bidirectional blocks, ln_post on the class token, @ proj. Text tower: token embedding +
positions, causal blocks, ln_final, the end token's row (the largest id, found by argmax)
@ text_projection. Blocks: pre-LN, fused in_proj (q, k, v rows), QuickGELU MLP 4x.
logit_scale is stored as a log.

vision_stem = C > 0 (a t2i extension, clip_rerank/clip.h): the patch convolution is replaced
by Conv3x3(3 -> C) BN ReLU, then log2(P) x [Conv3x3 stride 2 (channels doubled, at most W) BN
ReLU, then vision_stem_extra x [Conv3x3 stride 1 BN ReLU]], then Conv1x1(-> W, bias), as one
nn.Sequential "stem" (t2i's nn_seq names).
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with openai's parameter names (fused q|k|v rows)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, causal):
        B, T, C = x.shape
        hs = C // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(C, dim=2)
        q, k, v = (t.reshape(B, T, self.heads, hs).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(hs)
        if causal:
            s = s + torch.full((T, T), float("-inf")).triu(1)
        y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(),
                                             c_proj=nn.Linear(4 * width, width)))

    def forward(self, x, causal):
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Stack(nn.Module):
    def __init__(self, width, layers, heads, causal):
        super().__init__()
        self.causal = causal
        self.resblocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])

    def forward(self, x):
        for b in self.resblocks:
            x = b(x, self.causal)
        return x


def conv_stem(C, P, W, extra=0):
    ch = min(C, W)
    layers = [nn.Conv2d(3, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
    p = P
    while p > 1:
        nxt = min(2 * ch, W)
        layers += [nn.Conv2d(ch, nxt, 3, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU()]
        for _ in range(extra):
            layers += [nn.Conv2d(nxt, nxt, 3, 1, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU()]
        ch, p = nxt, p // 2
    layers.append(nn.Conv2d(ch, W, 1))
    return nn.Sequential(*layers)


class Visual(nn.Module):
    def __init__(self, R, P, W, L, H, D, stem=0, stem_extra=0):
        super().__init__()
        g = R // P
        if stem > 0:
            self.stem = conv_stem(stem, P, W, stem_extra)
        else:
            self.conv1 = nn.Conv2d(3, W, P, P, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(W) * W ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(g * g + 1, W) * W ** -0.5)
        self.ln_pre = nn.LayerNorm(W)
        self.transformer = Stack(W, L, H, False)
        self.ln_post = nn.LayerNorm(W)
        self.proj = nn.Parameter(torch.randn(W, D) * W ** -0.5)

    def forward(self, x):
        x = (self.stem if hasattr(self, "stem") else self.conv1)(x)
        x = x.flatten(2).transpose(1, 2)  # (N, G, W), row-major over the grid
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.visual = Visual(c["image_resolution"], c["vision_patch_size"], c["vision_width"],
                             c["vision_layers"], c["vision_heads"], c["embed_dim"], c.get("vision_stem", 0),
                             c.get("vision_stem_extra", 0))
        W = c["transformer_width"]
        self.transformer = Stack(W, c["transformer_layers"], c["transformer_heads"], True)
        self.token_embedding = nn.Embedding(c["vocab_size"], W)
        self.positional_embedding = nn.Parameter(torch.empty(c["context_length"], W))
        self.ln_final = nn.LayerNorm(W)
        self.text_projection = nn.Parameter(torch.empty(W, c["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, tok):
        x = self.token_embedding(tok) + self.positional_embedding
        x = self.ln_final(self.transformer(x))
        return x[torch.arange(x.shape[0]), tok.argmax(-1)] @ self.text_projection

    def loss(self, images, tok):
        """Symmetric InfoNCE over the batch and the mean of both directions' top-1 accuracy."""
        i = F.normalize(self.encode_image(images), dim=-1)
        t = F.normalize(self.encode_text(tok), dim=-1)
        logits = self.logit_scale.exp() * i @ t.t()
        lab = torch.arange(len(i))
        loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
        acc = ((logits.argmax(1) == lab).float().mean() + (logits.argmax(0) == lab).float().mean()) / 2
        return loss, acc
