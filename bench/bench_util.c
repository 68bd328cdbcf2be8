/* bench_util.c - timing helpers; see bench.h. */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "bench.h"
#include "ops.h"
#include "rng.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(const double *v, int n) {
    double *c = t2i_malloc((size_t)n * sizeof(double));
    memcpy(c, v, (size_t)n * sizeof(double));
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

double bench_time(void (*fn)(void *), void *ctx, int warmup, int reps) {
    for (int i = 0; i < warmup; i++) fn(ctx);
    double *t = t2i_malloc((size_t)reps * sizeof(double));
    for (int i = 0; i < reps; i++) {
        double t0 = t2i_now();
        fn(ctx);
        t[i] = t2i_now() - t0;
    }
    double m = bench_median(t, reps);
    free(t);
    return m;
}

typedef struct {
    int n;
    float *a, *b, *c;
} gemm_ctx;

static void run_gemm(void *p) {
    gemm_ctx *g = p;
    nn_gemm(0, 0, g->n, g->n, g->n, 1.0f, g->a, g->n, g->b, g->n, 0.0f, g->c, g->n);
}

double bench_sgemm_gflops(int n, int reps) {
    gemm_ctx g = {n, NULL, NULL, NULL};
    size_t nn = (size_t)n * n;
    g.a = t2i_malloc_aligned(nn * sizeof(float));
    g.b = t2i_malloc_aligned(nn * sizeof(float));
    g.c = t2i_malloc_aligned(nn * sizeof(float));
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    t2i_rng_fill_uniform(&r, g.a, nn, -1, 1);
    t2i_rng_fill_uniform(&r, g.b, nn, -1, 1);
    double s = bench_time(run_gemm, &g, 2, reps);
    t2i_free(g.a), t2i_free(g.b), t2i_free(g.c);
    return 2.0 * n * (double)n * n / s * 1e-9;
}
