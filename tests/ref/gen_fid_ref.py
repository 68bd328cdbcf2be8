#!/usr/bin/python3
"""Reference FID/KID values for tests/test_fid.c (numpy, float64).

Features are a deterministic formula so the C test rebuilds them exactly:
  a[i, j] = sin(0.37 i + 1.3 j) + 0.1 j            (50 x 8)
  b[i, j] = cos(0.21 i + 0.7 j) * (1 + 0.05 j) + 0.3  (60 x 8)
FID via eigh (the symmetric form); cross-checked with scipy.linalg.sqrtm when present.
KID over the full sets (one "subset" of all items, so no randomness).
"""
import numpy as np

a = np.array([[np.sin(0.37 * i + 1.3 * j) + 0.1 * j for j in range(8)] for i in range(50)], dtype=np.float32).astype(np.float64)
b = np.array([[np.cos(0.21 * i + 0.7 * j) * (1 + 0.05 * j) + 0.3 for j in range(8)] for i in range(60)], dtype=np.float32).astype(np.float64)
mu1, mu2 = a.mean(0), b.mean(0)
s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
w, v = np.linalg.eigh(s1)
h = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
e = np.linalg.eigvalsh(h @ s2 @ h)
fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(e, 0, None)).sum()
try:
    import scipy.linalg
    fid2 = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    print("scipy check", fid2)
except ImportError:
    pass
m = 50
bb = b[:m]
d = a.shape[1]
k = lambda x, y: (x @ y.T / d + 1) ** 3
kxx, kyy, kxy = k(a, a), k(bb, bb), k(a, bb)
kid = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)
print(f"fid {fid:.10f}")
print(f"kid {kid:.10f}")
