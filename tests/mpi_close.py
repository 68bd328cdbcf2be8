#!/usr/bin/env python3
"""mpi_close.py - are two training runs the same within a float tolerance?

    mpi_close.py RUN_A RUN_B [--tol T] [--wtol W] [--weights-only] [--skip-prefix P ...]

Compares RUN_A/metrics.jsonl with RUN_B's (the same lines; every numeric field except
timings equal within T relative, or T absolute below 1; default 1e-3) and the float
tensors of their checkpoint.safetensors (same names and shapes; max |a - b| <= W,
default 2e-3, for every tensor, divided by max |a| when that is above 1). Prints the worst difference of each kind; exits 0 when
close, 1 when not, 2 on unreadable input. The data-parallel tests (tests/cli_mpi.sh) use
it: a sum split over ranks adds in another order, so the runs agree to float rounding,
not bit for bit. --weights-only skips metrics.jsonl (a resumed run's holds the lines
of its sessions, which need not line up with an uninterrupted run's). Why W is absolute and about lr * steps: a parameter whose true gradient
is zero (a convolution's bias before BatchNorm) gets a gradient of pure rounding noise,
which Adam normalises into a step of about +-lr whatever its size; such a tensor can
differ by up to 2 * lr per step between two exact implementations.
"""
import json
import struct
import sys

TIMING = {"step_ms", "images_per_s", "tokens_per_s", "samples_per_s", "pairs_per_s", "elapsed_s", "seconds"}


def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in head.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "F32":
            out[name] = struct.unpack("<%df" % (len(raw) // 4), raw)
        elif info["dtype"] == "BF16":
            out[name] = tuple(struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2))
    return out


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv):
    args = argv[1:]
    tol = 1e-3
    wtol = 2e-3
    skip = []
    weights_only = False
    pos = []
    i = 0
    while i < len(args):
        if args[i] == "--tol":
            tol = float(args[i + 1])
            i += 2
        elif args[i] == "--wtol":
            wtol = float(args[i + 1])
            i += 2
        elif args[i] == "--weights-only":
            weights_only = True
            i += 1
        elif args[i] == "--skip-prefix":
            skip.append(args[i + 1])
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if len(pos) != 2:
        print("usage: " + __doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a_dir, b_dir = pos
    try:
        ma, mb = ([], []) if weights_only else (metrics(a_dir + "/metrics.jsonl"), metrics(b_dir + "/metrics.jsonl"))
        ta, tb = load_st(a_dir + "/checkpoint.safetensors"), load_st(b_dir + "/checkpoint.safetensors")
    except (OSError, ValueError) as e:
        print("mpi_close: %s" % e, file=sys.stderr)
        return 2
    bad = []
    if len(ma) != len(mb):
        bad.append("metrics: %d lines vs %d" % (len(ma), len(mb)))
    worst_m = (0.0, "")
    for k, (la, lb) in enumerate(zip(ma, mb)):
        if set(la) != set(lb):
            bad.append("metrics line %d: fields differ" % (k + 1))
            continue
        for key, va in la.items():
            vb = lb[key]
            if key in TIMING or not isinstance(va, (int, float)):
                if va != vb and key not in TIMING:
                    bad.append("metrics line %d: %s %r vs %r" % (k + 1, key, va, vb))
                continue
            d = abs(va - vb) / max(1.0, abs(va))
            if d > worst_m[0]:
                worst_m = (d, "line %d %s %r vs %r" % (k + 1, key, va, vb))
    if worst_m[0] > tol:
        bad.append("metrics: " + worst_m[1])
    if set(ta) != set(tb):
        bad.append("checkpoints hold different tensors")
    worst_t = (0.0, "")
    for name in sorted(set(ta) & set(tb)):
        if any(name.startswith(p) for p in skip):
            continue
        xa, xb = ta[name], tb[name]
        if len(xa) != len(xb):
            bad.append("%s: %d vs %d values" % (name, len(xa), len(xb)))
            continue
        # absolute for values up to 1 (weights), relative to the largest value above (Adam's
        # second moments of large gradients)
        scale = max(1.0, max((abs(v) for v in xa), default=0.0))
        d = max((abs(p - q) for p, q in zip(xa, xb)), default=0.0) / scale
        if d != d or d > worst_t[0]:
            worst_t = (d, name)
    if not worst_t[0] <= wtol:
        bad.append("weights: %s differs by %.3g" % (worst_t[1], worst_t[0]))
    print("mpi_close: metrics worst %.3g (%s), tolerance %g; weights worst %.3g (%s), tolerance %g" %
          (worst_m[0], worst_m[1] or "-", tol, worst_t[0], worst_t[1] or "-", wtol))
    for b in bad:
        print("mpi_close: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
