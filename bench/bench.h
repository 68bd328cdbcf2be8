/* bench.h - shared helpers for `t2i bench NAME` (see bench/README.md).
 *
 * Each benchmark warms up, times several repetitions and reports the median, prints
 * readable lines, and ends with ONE JSON line of its figures (bench, threads,
 * peak_rss_mb, gflops, and the per-benchmark fields) so tools can compare runs.
 */
#ifndef T2I_BENCH_H
#define T2I_BENCH_H

#include <stddef.h>

/* Median of n doubles (sorts a copy). */
double bench_median(const double *v, int n);
/* Times fn(ctx) reps times after warmup calls; returns the median seconds. */
double bench_time(void (*fn)(void *), void *ctx, int warmup, int reps);
/* Measures sgemm throughput (GFLOP/s) on square matrices of size n. */
double bench_sgemm_gflops(int n, int reps);

/* `t2i bench NAME` (bench.c), registered by cli/main.c. */
int cmd_bench(int argc, char **argv);

int bench_core(int argc, char **argv);
int bench_b1(int argc, char **argv);
int bench_b2(int argc, char **argv);
int bench_b3(int argc, char **argv);
int bench_b4(int argc, char **argv);
int bench_b5(int argc, char **argv);
int bench_infer(int argc, char **argv);

#endif
