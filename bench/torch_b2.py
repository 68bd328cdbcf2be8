#!/usr/bin/python3
"""B2 (bench/README.md) in PyTorch: the DALL-E-style image-token transformer, the
twin of `t2i bench b2` (same sizes, same JSON fields plus "impl": "pytorch").

  /usr/bin/python3 bench/torch_b2.py --threads 2 [--reps 5] [--sample-reps 3] [--nocache-reps 1]

Model (tests/ref/models/dalle.py): 16 text tokens (vocab 1024) + 64 image tokens (codebook 512), width 256, 6 pre-LN
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
import argparse, json, os, resource, statistics, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from models.dalle import CODEBOOK, HEADS, IMAGE_LEN, LAYERS, TEXT_LEN, TEXT_VOCAB, WIDTH, Dalle  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--sample-reps", type=int, default=3)
ap.add_argument("--nocache-reps", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)

TL, TV, IL, K, C, L, NH = TEXT_LEN, TEXT_VOCAB, IMAGE_LEN, CODEBOOK, WIDTH, LAYERS, HEADS
T, V, HS = TL + IL, TV + K, C // NH

m = Dalle()
for n, p in m.named_parameters():
    if n.endswith("bias"):
        nn.init.zeros_(p)
    elif "ln" not in n:
        nn.init.normal_(p, 0.0, 0.02)
decay = [p for n, p in m.named_parameters() if n.endswith("weight") and "ln" not in n and "emb" not in n]
rest = [p for n, p in m.named_parameters() if not (n.endswith("weight") and "ln" not in n and "emb" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                        lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
B = 32
tok = torch.cat([torch.randint(0, TV, (B, TL)), TV + torch.randint(0, K, (B, IL))], 1)


def train_step():
    opt.zero_grad(set_to_none=True)
    logits = m.logits(tok)[:, :-1]
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
