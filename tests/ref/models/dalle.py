"""The DALL-E-style image-token transformer of benchmark B2 and dalle_tok/dalle.h.

Used by bench/torch_b2.py at B2's sizes (the defaults below) and by
tests/ref/gen_dalle_ref.py at toy sizes. A sequence is text_len text ids (0..text_vocab-1)
followed by image_len image codes, stored as text_vocab + code in one joint vocabulary of
text_vocab + codebook ids.

  separate text and image token embeddings + learned positions, causal pre-LN blocks
  (LayerNorm eps 1e-5, fused q|k|v projection, exact GELU, MLP 4x), final LayerNorm,
  untied head Linear(width, joint vocabulary) with bias.

State_dict names are t2i's, which are openai's CLIP names for the blocks:
"text_emb.weight", "image_emb.weight", "pos_emb.weight",
"transformer.resblocks.<i>.{ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj,
ln_2, mlp.c_fc, mlp.c_proj}", "ln_f", "head". The constructor leaves PyTorch's default
initialisation; callers set their own (B2: N(0, 0.02) with zero biases; the test reference
perturbs every term).

Attention is written out (torch 1.13 has no fused scaled-dot-product attention). With a
key/value cache (per block two preallocated (B, heads, T, head size) tensors) a call can
feed positions pos..pos+n-1 only, as sampling does: the new keys and values are stored and
the queries see every earlier position.

unfused=True evaluates each affine map as x @ W.T + b and each residual sum left to right
as (x + y @ W.T) + b, the order in which the test reference has always computed them; the
default uses F.linear (one addmm) as nn.Linear does. Same values up to the last bits.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# B2: text positions, text vocabulary, image positions (8x8), codebook, width, layers, heads
TEXT_LEN, TEXT_VOCAB, IMAGE_LEN, CODEBOOK, WIDTH, LAYERS, HEADS = 16, 1024, 64, 512, 256, 6, 8


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def mix(self, x, cache=None, pos=0, unfused=False):
        """Attention output before out_proj, (B, n, width)."""
        B, n, C = x.shape
        hs = C // self.heads
        if unfused:
            qkv = x @ self.in_proj_weight.T + self.in_proj_bias
        else:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = (t.reshape(B, n, self.heads, hs).transpose(1, 2) for t in qkv.split(C, 2))
        if cache is not None:
            cache[0][:, :, pos:pos + n] = k
            cache[1][:, :, pos:pos + n] = v
            k, v = cache[0][:, :, :pos + n], cache[1][:, :, :pos + n]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        nk = k.shape[2]
        if n > 1:  # causal among the new positions (a single new one sees every key)
            mask = torch.ones(n, nk, dtype=torch.bool).triu(nk - n + 1)
            att = att.masked_fill(mask, float("-inf"))
        return (att.softmax(-1) @ v).transpose(1, 2).reshape(B, n, C)


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(width, 4 * width), "c_proj": nn.Linear(4 * width, width)})

    def forward(self, x, cache=None, pos=0, unfused=False):
        y = self.attn.mix(self.ln_1(x), cache, pos, unfused)
        o, fc, proj = self.attn.out_proj, self.mlp["c_fc"], self.mlp["c_proj"]
        if unfused:
            x = x + y @ o.weight.T + o.bias
            h = F.gelu(self.ln_2(x) @ fc.weight.T + fc.bias)
            return x + h @ proj.weight.T + proj.bias
        x = x + F.linear(y, o.weight, o.bias)
        return x + F.linear(F.gelu(F.linear(self.ln_2(x), fc.weight, fc.bias)), proj.weight, proj.bias)


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])


class Dalle(nn.Module):
    def __init__(self, text_len=TEXT_LEN, text_vocab=TEXT_VOCAB, image_len=IMAGE_LEN, codebook=CODEBOOK,
                 width=WIDTH, layers=LAYERS, heads=HEADS, unfused=False):
        super().__init__()
        self.text_len, self.text_vocab, self.unfused = text_len, text_vocab, unfused
        self.text_emb = nn.Embedding(text_vocab, width)
        self.image_emb = nn.Embedding(codebook, width)
        self.pos_emb = nn.Embedding(text_len + image_len, width)  # only its weight is used
        self.transformer = Transformer(width, layers, heads)
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, text_vocab + codebook)

    def embed(self, tok, pos=0):
        """Embeddings of joint ids tok (B, n) at positions pos..pos+n-1."""
        n = tok.shape[1]
        nt = max(0, min(n, self.text_len - pos))  # how many of them are text
        parts = []
        if nt:
            parts.append(self.text_emb.weight[tok[:, :nt]])
        if nt < n:
            parts.append(self.image_emb.weight[tok[:, nt:] - self.text_vocab])
        x = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        return x + self.pos_emb.weight[None, pos:pos + n]

    def forward(self, tok, caches=None, pos=0):
        """Final hidden states (B, n, width) of ids tok at positions pos..pos+n-1; caches: one
        (keys, values) pair per block, or None."""
        x = self.embed(tok, pos)
        for i, b in enumerate(self.transformer.resblocks):
            x = b(x, caches[i] if caches is not None else None, pos, self.unfused)
        return self.ln_f(x)

    def logits(self, tok):
        x = self(tok)
        if self.unfused:
            return x @ self.head.weight.T + self.head.bias
        return F.linear(x, self.head.weight, self.head.bias)
