#!/usr/bin/python3
"""B2 (bench/README.md) in PyTorch: the DALL-E-style image-token transformer, the
twin of `t2i bench b2` (same sizes, same JSON fields plus "impl": "pytorch").

  /usr/bin/python3 bench/torch_b2.py --threads 2 [--reps 5] [--sample-reps 3] [--nocache-reps 1]

Model: 16 text tokens (vocab 1024) + 64 image tokens (codebook 512), width 256, 6 pre-LN
layers, 8 heads, exact GELU, MLP 4x, learned positions, separate text/image embeddings,
final LayerNorm, untied head Linear(256, 1536) with bias; init N(0, 0.02), zero biases.
Train step: batch 32 of random sequences, mean cross-entropy of the 79 next-token
targets, AdamW lr 3e-4 betas (0.9, 0.999) eps 1e-8 weight decay 0.01 (on the Linear
weights, as t2i), zero grad + forward + backward + update.
Sampling: one caption, 32 candidates, 64 image tokens, image-code logits / 1, top 64,
softmax, multinomial; cached = a hand-written key/value cache (prefill 16 positions, then
63 one-token steps, keys/values appended in preallocated tensors), uncached = a full
forward over the growing prefix at every step. Attention is written out (torch 1.13 has
no fused scaled_dot_product_attention).
"""
import argparse, json, resource, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--sample-reps", type=int, default=3)
ap.add_argument("--nocache-reps", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)

TL, TV, IL, K, C, L, NH = 16, 1024, 64, 512, 256, 6, 8
T, V, HS = TL + IL, TV + K, C // NH


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.fc_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def attend(self, x, cache=None, pos=0):
        B, Tn, _ = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, 2)
        q, k, v = [t.view(B, Tn, NH, HS).transpose(1, 2) for t in (q, k, v)]
        if cache is not None:  # (k_all, v_all) preallocated (B, NH, T, HS)
            cache[0][:, :, pos:pos + Tn] = k
            cache[1][:, :, pos:pos + Tn] = v
            k, v = cache[0][:, :, :pos + Tn], cache[1][:, :, :pos + Tn]
        att = (q @ k.transpose(-1, -2)) / HS ** 0.5
        Tk = k.shape[2]
        if Tn > 1:  # causal among the new positions (a single new one sees everything)
            mask = torch.ones(Tn, Tk, dtype=torch.bool).triu(Tk - Tn + 1)
            att = att.masked_fill(mask, float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, Tn, C)
        return self.proj(y)

    def forward(self, x, cache=None, pos=0):
        x = x + self.attend(x, cache, pos)
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class Dalle(nn.Module):
    def __init__(self):
        super().__init__()
        self.text_emb, self.image_emb = nn.Embedding(TV, C), nn.Embedding(K, C)
        self.pos_emb = nn.Parameter(torch.zeros(T, C))
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.ln_f, self.head = nn.LayerNorm(C), nn.Linear(C, V)
        for n, p in self.named_parameters():
            if n.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" not in n:
                nn.init.normal_(p, 0.0, 0.02)

    def embed(self, tok, pos):
        # tok (B, Tn) joint ids at positions pos..pos+Tn-1
        Tn = tok.shape[1]
        e = torch.empty(tok.shape[0], Tn, C)
        nt = max(0, min(Tn, TL - pos))
        if nt:
            e[:, :nt] = self.text_emb(tok[:, :nt])
        if nt < Tn:
            e[:, nt:] = self.image_emb(tok[:, nt:] - TV)
        return e + self.pos_emb[pos:pos + Tn]

    def forward(self, tok, caches=None, pos=0):
        x = self.embed(tok, pos)
        for i, b in enumerate(self.blocks):
            x = b(x, caches[i] if caches is not None else None, pos)
        return self.ln_f(x)


m = Dalle()
decay = [p for n, p in m.named_parameters() if n.endswith("weight") and "ln" not in n and "emb" not in n]
rest = [p for n, p in m.named_parameters() if not (n.endswith("weight") and "ln" not in n and "emb" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                        lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
B = 32
tok = torch.cat([torch.randint(0, TV, (B, TL)), TV + torch.randint(0, K, (B, IL))], 1)


def train_step():
    opt.zero_grad(set_to_none=True)
    logits = m.head(m(tok))[:, :-1]
    loss = F.cross_entropy(logits.reshape(-1, V), tok[:, 1:].reshape(-1))
    loss.backward()
    opt.step()


def draw(h):
    lg = F.linear(h, m.head.weight[TV:], m.head.bias[TV:])  # image codes only
    v, i = lg.topk(64, -1)
    return i.gather(-1, torch.multinomial(v.softmax(-1), 1))


@torch.no_grad()
def sample(cached):
    seq = torch.empty(32, T, dtype=torch.long)
    seq[:, :TL] = tok[0, :TL]
    caches = [(torch.empty(32, NH, T, HS), torch.empty(32, NH, T, HS)) for _ in range(L)] if cached else None
    for j in range(IL):
        t = TL + j
        if cached:
            h = m(seq[:, :TL], caches, 0) if j == 0 else m(seq[:, t - 1:t], caches, t - 1)
        else:
            h = m(seq[:, :t])
        seq[:, t:t + 1] = TV + draw(h[:, -1])
    return seq


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


st = timed(train_step, 1, a.reps)
# 3 forwards' worth per step (nn_tf_flops: per position 2 (12 C^2) per layer + full attention
# 2*2*T*C, plus the head 2 C V)
per_pos = L * (2 * 12 * C * C + 4 * T * C) + 2 * C * V
flops = 3.0 * B * T * per_pos
print(f"B2 pytorch train: {st * 1e3:.1f} ms/step, {flops / st * 1e-9:.1f} GFLOP/s ({a.threads} threads)", flush=True)
sc = timed(lambda: sample(True), 1, a.sample_reps)
print(f"B2 pytorch sample 32 x 64 tokens, cached: {sc * 1e3:.1f} ms", flush=True)
sn = timed(lambda: sample(False), 0, a.nocache_reps) if a.nocache_reps > 0 else -1e-3
if a.nocache_reps > 0:
    print(f"B2 pytorch sample 32 x 64 tokens, uncached: {sn * 1e3:.1f} ms", flush=True)
print(json.dumps({"bench": "b2", "impl": "pytorch", "threads": a.threads,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "gflops": round(flops / st * 1e-9, 1), "train_ms_per_step": round(st * 1e3, 2),
                  "sample_cached_ms": round(sc * 1e3, 1), "sample_nocache_ms": round(sn * 1e3, 1)}))
