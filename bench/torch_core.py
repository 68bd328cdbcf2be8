#!/usr/bin/python3
"""PyTorch counterpart of `t2i bench core` (same operations, sizes and reporting).

Usage: /usr/bin/python3 bench/torch_core.py --threads 2 [--reps 10]
Prints readable lines and one JSON line like t2i's, with "impl": "pytorch".
"""
import argparse, json, resource, statistics, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw",
                help="layout of the conv shapes' tensors (bench/torch_fastest.py tries both)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


def timeit(fn, warmup=2, reps=a.reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


n = 2048
A, B = torch.rand(n, n), torch.rand(n, n)
t = timeit(lambda: torch.mm(A, B))
peak = 2 * n ** 3 / t * 1e-9
print(f"sgemm 2048^3: {peak:.1f} GFLOP/s ({a.threads} threads)")


def conv_case(mod, x):
    x = x.requires_grad_(True)
    y = mod(x)
    dy = torch.randn_like(y)

    def fwd():
        with torch.no_grad():
            mod(x)

    def fwdbwd():
        out = mod(x)
        out.backward(dy)

    tf = timeit(fwd)
    tfb = timeit(fwdbwd)
    return tf, tfb - tf  # backward = (forward+backward) - forward


conv = torch.nn.Conv2d(64, 128, 4, 2, 1)
cf, cb = conv_case(conv, torch.randn(128, 64, 14, 14))
convt = torch.nn.ConvTranspose2d(256, 128, 4, 2, 1)
tf, tb = conv_case(convt, torch.randn(64, 256, 7, 7))
cflop = 2.0 * 128 * 128 * 7 * 7 * 64 * 16
tflop = 2.0 * 64 * 256 * 7 * 7 * 128 * 16
print(f"conv  fwd {cf*1e3:.2f} ms ({cflop/cf*1e-9:.1f} GFLOP/s)  bwd {cb*1e3:.2f} ms")
print(f"convT fwd {tf*1e3:.2f} ms ({tflop/tf*1e-9:.1f} GFLOP/s)  bwd {tb*1e3:.2f} ms")

B_, T, C, NH = 32, 80, 256, 8
hs = C // NH
qkv = torch.randn(B_, T, 3 * C, requires_grad=True)
mask = torch.full((T, T), float("-inf")).triu(1)


def attn():
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B_, T, NH, hs).transpose(1, 2)
    k = k.view(B_, T, NH, hs).transpose(1, 2)
    v = v.view(B_, T, NH, hs).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) / hs ** 0.5 + mask
    att = att.softmax(-1)
    return (att @ v).transpose(1, 2).reshape(B_, T, C)


dy = torch.randn(B_, T, C)


def afwd():
    with torch.no_grad():
        attn()


def afb():
    attn().backward(dy)


af = timeit(afwd)
ab = timeit(afb) - af
print(f"attn  causal B=32 T=80 C=256 H=8: fwd {af*1e3:.2f} ms  bwd {ab*1e3:.2f} ms")
aflop = 4.0 * B_ * T * T * C

# The Conv2d shapes of the benchmarks (keep in step with conv_shapes in bench/bench_core.c):
# name, N, C, H, W, OC, K, stride, pad, bwd_data. Backward passes are timed alone through the
# op autograd calls (aten.convolution_backward with an output mask), as t2i times its own.
SHAPES = [
    ("b1_d1", 128, 1, 28, 28, 64, 4, 2, 1, 0), ("b1_d2", 128, 64, 14, 14, 128, 4, 2, 1, 1),
    ("b4_in", 16, 3, 32, 32, 64, 3, 1, 1, 0), ("b4_body", 16, 64, 32, 32, 64, 3, 1, 1, 1),
    ("b4_up1", 16, 64, 32, 32, 256, 3, 1, 1, 1), ("b4_up2", 16, 64, 64, 64, 256, 3, 1, 1, 1),
    ("b4_out", 16, 64, 128, 128, 3, 3, 1, 1, 1), ("b5_in", 64, 3, 32, 32, 64, 3, 1, 1, 0),
    ("b5_down1", 64, 64, 32, 32, 128, 4, 2, 1, 1), ("b5_down2", 64, 128, 16, 16, 128, 4, 2, 1, 1),
    ("b5_res3", 64, 128, 8, 8, 128, 3, 1, 1, 1), ("b5_res1", 64, 128, 8, 8, 128, 1, 1, 0, 1),
    ("b5_proj", 64, 128, 8, 8, 64, 1, 1, 0, 1), ("cls_1", 128, 1, 28, 28, 32, 3, 1, 1, 0),
    ("cls_2", 128, 32, 28, 28, 32, 3, 1, 1, 1), ("cls_3", 128, 32, 14, 14, 64, 3, 1, 1, 1),
    ("cls_4", 128, 64, 14, 14, 64, 3, 1, 1, 1),
]
shape_ms = {}
print("conv2d shapes (ms; fwd, bwd-data, bwd-weight):")
mf = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
for name, N, Ci, H, W, OC, K, st, pd, bd in SHAPES:
    x = (torch.rand(N, Ci, H, W) * 2 - 1).contiguous(memory_format=mf)
    w = (torch.rand(OC, Ci, K, K) * 2 - 1).contiguous(memory_format=mf)
    b = torch.rand(OC) * 2 - 1
    with torch.no_grad():
        y = torch.nn.functional.conv2d(x, w, b, st, pd)
    g = (torch.rand_like(y) * 2 - 1).contiguous(memory_format=mf)

    def back(mask):
        torch.ops.aten.convolution_backward(g, x, w, [OC], [st, st], [pd, pd], [1, 1], False, [0, 0], 1, mask)

    with torch.no_grad():
        f_ = timeit(lambda: torch.nn.functional.conv2d(x, w, b, st, pd), warmup=1)
        d_ = timeit(lambda: back([True, False, False]), warmup=1) if bd else 0.0
        w_ = timeit(lambda: back([False, True, True]), warmup=1)
    shape_ms[name] = [round(f_ * 1e3, 4), round(d_ * 1e3, 4), round(w_ * 1e3, 4)]
    print(f"  {name:9s} N={N:<3d} {Ci:3d}->{OC:<3d} {H:3d}x{W:<3d} k{K} s{st}: "
          f"{f_*1e3:8.3f} {d_*1e3:8.3f} {w_*1e3:8.3f}")
total = 3 * cflop + 3 * tflop + 3 * aflop
tt = cf + cb + tf + tb + af + ab
print(json.dumps({"bench": "core", "impl": "pytorch", "threads": a.threads, "memory_format": a.memory_format,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "gflops": round(total / tt * 1e-9, 1), "sgemm_gflops": round(peak, 1),
                  "conv_fwd_ms": round(cf * 1e3, 3), "conv_bwd_ms": round(cb * 1e3, 3),
                  "convt_fwd_ms": round(tf * 1e3, 3), "convt_bwd_ms": round(tb * 1e3, 3),
                  "attn_fwd_ms": round(af * 1e3, 3), "attn_bwd_ms": round(ab * 1e3, 3),
                  "conv_shapes": shape_ms}))
