#!/usr/bin/env python3
"""mpi_projection.py - on paper: data-parallel speed-up on N machines from one machine's figures.

    python3 bench/mpi_projection.py NAME:STEP_MS:MB:CALLS ...

STEP_MS: one machine's step time at the benchmark batch (here 1 process x 2 threads);
MB: megabytes summed or gathered per step (rank 0's line of `mpirun -np 2 t2i ... train`);
CALLS: collectives per step (the same line). For N machines over a link of B bit/s:

  communication  C(N) = 2 (N-1)/N * bytes / (B/8)          (ring all-reduce, bandwidth term)
                      + CALLS * 2 ceil(log2 N) * alpha       (latency: recursive doubling)
  alpha = 50 us at 1 Gbit/s, 10 us at 10 Gbit/s (TCP through a switch; MPI over RDMA is
  lower). Nothing overlaps: the step computes, then communicates, as t2i does today.

  strong scaling (global batch fixed): T(N) = STEP/N + C(N), speed-up STEP / T(N);
    it also assumes that a rank's smaller batch keeps the same throughput, which small
    GEMMs do not (optimistic);
  weak scaling (batch per machine fixed, global batch N times larger): T(N) = STEP + C(N),
    efficiency STEP / T(N), speed-up N * efficiency (in samples per second).
  For 80% efficiency at a fixed global batch, C(N) must be at most STEP / (4 N): the last
  column is either the share of C(N) that overlapping the all-reduce with the backward
  pass (or compressing it) would have to hide, or, equivalently, the factor by which the
  global batch would have to grow (weak scaling at 80% needs C(N) <= STEP / 4).
"""
import math
import sys


def comm_s(n, mb, calls, gbit):
    alpha = 50e-6 if gbit < 5 else 10e-6
    if n <= 1:
        return 0.0
    bw = gbit * 1e9 / 8.0
    return 2.0 * (n - 1) / n * mb * 1e6 / bw + calls * 2 * math.ceil(math.log2(n)) * alpha


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    print("| model | link | N | communication ms | fixed global batch: step ms, speed-up | "
          "batch per machine fixed: efficiency, speed-up | 80% at fixed batch: hide, or batch x |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for spec in argv[1:]:
        name, step_ms, mb, calls = spec.split(":")
        step = float(step_ms) / 1e3
        mb, calls = float(mb), float(calls)
        for gbit in (1, 10):
            for n in (2, 8, 32):
                c = comm_s(n, mb, calls, gbit)
                strong = step / n + c
                eff = step / (step + c)
                budget = step / (4.0 * n)
                need = "-" if c <= budget else "%.0f%%, x%.1f" % (100 * (1 - budget / c), c / budget)
                print("| %s | %d Gbit/s | %d | %.1f | %.1f, %.2fx | %.0f%%, %.1fx | %s |" %
                      (name, gbit, n, c * 1e3, strong * 1e3, step / strong, 100 * eff, n * eff, need))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
