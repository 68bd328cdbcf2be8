#!/usr/bin/python3
"""PyTorch counterpart of `t2i bench b3`: CLIP ViT-B/32 inference at random weights.

The model is the OpenAI-architecture CLIP of the tests (tests/ref/models/clip.py, checked by
tests/ref/gen_clip_ref.py against openai's golden outputs), at the ViT-B/32 configuration of
bench/README.md B3. Same measurements as the C benchmark: ms per image for a batch of 32
224x224 images, ms for one caption of --caption-tokens tokens (the text tower run only
up to the end token, as t2i does) and for the full 77-token context, peak RSS, GFLOP/s of
the image batch, sgemm peak.

Usage: /usr/bin/python3 bench/torch_b3.py --threads 2 [--reps 5]
Prints readable lines and one JSON line like t2i's, with "impl": "pytorch".
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from models.clip import CLIP  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--caption-tokens", type=int, default=16)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(42)


def timeit(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


n = 1024
A, B = torch.rand(n, n), torch.rand(n, n)
peak = 2 * n ** 3 / timeit(lambda: torch.mm(A, B), 2, a.reps) * 1e-9
print(f"sgemm 1024^3: {peak:.1f} GFLOP/s ({a.threads} threads)")

cfg = dict(embed_dim=512, image_resolution=224, vision_patch_size=32, vision_width=768, vision_layers=12,
           vision_heads=12, context_length=77, vocab_size=49408, transformer_width=512, transformer_layers=12,
           transformer_heads=8)
m = CLIP(cfg).eval()
with torch.no_grad():
    for name, p in m.named_parameters():  # random weights in the usual ranges
        if p.dim() >= 2 and not name.endswith("embedding"):
            p.normal_(0, p.shape[-1] ** -0.5)
        elif "embedding" in name:
            p.normal_(0, 0.02)
print(f"ViT-B/32: {sum(p.numel() for p in m.parameters())} parameters")

images = torch.randn(a.batch, 3, 224, 224)
tok = torch.zeros(1, 77, dtype=torch.long)
tok[0, 0] = 49406
tok[0, 1:a.caption_tokens - 1] = torch.randint(256, 40256, (a.caption_tokens - 2,))
tok[0, a.caption_tokens - 1] = 49407
full = tok.clone()
full[0, a.caption_tokens - 1] = 320
full[0, 76] = 49407


def text(t, length):
    # the same work as t2i: positions up to the end token only (exact for a causal tower)
    x = m.token_embedding(t[:, :length]) + m.positional_embedding[:length]
    x = m.ln_final(m.transformer(x))
    return x[torch.arange(1), t[:, :length].argmax(-1)] @ m.text_projection


with torch.inference_mode():
    t_img = timeit(lambda: m.encode_image(images), 1, a.reps)
    t_txt = timeit(lambda: text(tok, a.caption_tokens), 2, a.reps * 4)
    t_full = timeit(lambda: text(full, 77), 1, a.reps * 2)

g, W, T = 7, 768, 50
flop = 2 * 49 * 3 * 32 * 32 * W + 12 * T * (2 * 12 * W * W + 4 * T * W) + 2 * W * 512
gflops = flop * a.batch / t_img * 1e-9
print(f"images: batch {a.batch} 224x224: {t_img*1e3:.1f} ms per batch, {t_img*1e3/a.batch:.2f} ms per image, "
      f"{gflops:.1f} GFLOP/s ({100*gflops/peak:.0f}% of sgemm)")
print(f"caption: {a.caption_tokens} tokens: {t_txt*1e3:.2f} ms (full 77-token context: {t_full*1e3:.2f} ms)")
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"bench": "b3", "impl": "pytorch", "threads": a.threads, "peak_rss_mb": round(rss, 1),
                  "gflops": round(gflops, 1), "ms_per_image": round(t_img * 1e3 / a.batch, 3),
                  "ms_per_caption": round(t_txt * 1e3, 3), "caption_tokens": a.caption_tokens,
                  "ms_per_caption_ctx77": round(t_full * 1e3, 3), "sgemm_gflops": round(peak, 1)},
                 separators=(",", ":")))
