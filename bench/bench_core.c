/* bench_core.c - `t2i bench core`: sgemm peak, and forward+backward of the core's
 * convolutions and attention at the sizes B1 and B2 use (bench/README.md):
 *   conv   Conv2d(64, 128, k4, s2, p1) on 128 x 64 x 14 x 14   (B1's D, real+fake batch)
 *   convT  ConvTranspose2d(256, 128, k4, s2, p1) on 64 x 256 x 7 x 7   (B1's G)
 *   attn   causal self-attention core, B 32, T 80, C 256, 8 heads   (B2)
 * and a table of Conv2d shapes that B1, B4 training, B5 and the Fashion-MNIST classifier use,
 * each timed as forward, backward-data (dx only) and backward-weights (dw and db only).
 * bench/torch_core.py measures the same operations with PyTorch. */
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "ops.h"
#include "rng.h"

typedef struct {
    nn_conv s;
    int transpose;
    float *x, *w, *b, *y, *dx, *dw, *db, *dy, *scratch;
} conv_bench;

static void conv_fwd(void *p) {
    conv_bench *c = p;
    if (c->transpose) nn_conv_transpose2d_forward(c->y, c->scratch, c->x, c->w, c->b, &c->s);
    else nn_conv2d_forward(c->y, c->scratch, c->x, c->w, c->b, &c->s);
}

static void conv_bwd(void *p) {
    conv_bench *c = p;
    if (c->transpose) nn_conv_transpose2d_backward(c->dx, c->dw, c->db, c->scratch, c->dy, c->x, c->w, &c->s);
    else nn_conv2d_backward(c->dx, c->dw, c->db, c->scratch, c->dy, c->x, c->w, &c->s);
}

static float *randbuf(t2i_rng *r, size_t n) {
    float *p = t2i_malloc_aligned(n * sizeof(float));
    t2i_rng_fill_uniform(r, p, n, -1, 1);
    return p;
}

static void conv_setup(conv_bench *c, t2i_rng *r) {
    nn_conv *s = &c->s;
    size_t nx = (size_t)s->N * s->C * s->H * s->W, ny = (size_t)s->N * s->OC * s->OH * s->OW;
    size_t nw = (size_t)s->C * s->OC * s->KH * s->KW;
    c->x = randbuf(r, nx), c->dx = randbuf(r, nx);
    c->w = randbuf(r, nw), c->dw = randbuf(r, nw);
    c->b = randbuf(r, s->OC), c->db = randbuf(r, s->OC);
    c->y = randbuf(r, ny), c->dy = randbuf(r, ny);
    c->scratch = t2i_malloc_aligned((c->transpose ? nn_conv_transpose2d_scratch(s) : nn_conv2d_scratch(s)) * sizeof(float));
}

static void conv_free(conv_bench *c) {
    t2i_free(c->x), t2i_free(c->dx), t2i_free(c->w), t2i_free(c->dw), t2i_free(c->b), t2i_free(c->db);
    t2i_free(c->y), t2i_free(c->dy), t2i_free(c->scratch);
}

/* The Conv2d shapes of the benchmarks; bwd_data 0 where the layer reads the input image
 * (no gradient is wanted there). Keep in step with SHAPES in bench/torch_core.py. */
typedef struct {
    const char *name;
    int N, C, H, W, OC, K, stride, pad, bwd_data;
} conv_shape;

static const conv_shape conv_shapes[] = {
    {"b1_d1", 128, 1, 28, 28, 64, 4, 2, 1, 0},    {"b1_d2", 128, 64, 14, 14, 128, 4, 2, 1, 1},
    {"b4_in", 16, 3, 32, 32, 64, 3, 1, 1, 0},     {"b4_body", 16, 64, 32, 32, 64, 3, 1, 1, 1},
    {"b4_up1", 16, 64, 32, 32, 256, 3, 1, 1, 1},  {"b4_up2", 16, 64, 64, 64, 256, 3, 1, 1, 1},
    {"b4_out", 16, 64, 128, 128, 3, 3, 1, 1, 1},  {"b5_in", 64, 3, 32, 32, 64, 3, 1, 1, 0},
    {"b5_down1", 64, 64, 32, 32, 128, 4, 2, 1, 1}, {"b5_down2", 64, 128, 16, 16, 128, 4, 2, 1, 1},
    {"b5_res3", 64, 128, 8, 8, 128, 3, 1, 1, 1},  {"b5_res1", 64, 128, 8, 8, 128, 1, 1, 0, 1},
    {"b5_proj", 64, 128, 8, 8, 64, 1, 1, 0, 1},   {"cls_1", 128, 1, 28, 28, 32, 3, 1, 1, 0},
    {"cls_2", 128, 32, 28, 28, 32, 3, 1, 1, 1},   {"cls_3", 128, 32, 14, 14, 64, 3, 1, 1, 1},
    {"cls_4", 128, 64, 14, 14, 64, 3, 1, 1, 1},
};

static void conv_bwd_data(void *p) {
    conv_bench *c = p;
    nn_conv2d_backward(c->dx, NULL, NULL, c->scratch, c->dy, c->x, c->w, &c->s);
}

static void conv_bwd_weight(void *p) {
    conv_bench *c = p;
    nn_conv2d_backward(NULL, c->dw, c->db, c->scratch, c->dy, c->x, c->w, &c->s);
}

/* Times every shape; prints a line each and returns the JSON entries (caller frees). */
static char *conv_table(t2i_rng *r, int reps) {
    size_t n = sizeof conv_shapes / sizeof conv_shapes[0];
    char *json = t2i_strdup("");
    printf("conv2d shapes (ms; fwd, bwd-data, bwd-weight), path %s:\n", nn_conv_path());
    for (size_t i = 0; i < n; i++) {
        const conv_shape *q = &conv_shapes[i];
        conv_bench c = {nn_conv2d_shape(q->N, q->C, q->H, q->W, q->OC, q->K, q->stride, q->pad), 0};
        conv_setup(&c, r);
        double tf = bench_time(conv_fwd, &c, 1, reps);
        double td = q->bwd_data ? bench_time(conv_bwd_data, &c, 1, reps) : 0.0;
        double tw = bench_time(conv_bwd_weight, &c, 1, reps);
        conv_free(&c);
        printf("  %-9s N=%-3d %3d->%-3d %3dx%-3d k%d s%d: %8.3f %8.3f %8.3f\n", q->name, q->N, q->C, q->OC, q->H,
               q->W, q->K, q->stride, tf * 1e3, td * 1e3, tw * 1e3);
        char *next = t2i_asprintf("%s%s\"%s\":[%.4f,%.4f,%.4f]", json, i ? "," : "", q->name, tf * 1e3, td * 1e3,
                                  tw * 1e3);
        free(json);
        json = next;
    }
    return json;
}

typedef struct {
    int B, T, C, NH;
    float *qkv, *dqkv, *y, *dy, *att, *scratch;
} attn_bench;

static void attn_fwd(void *p) {
    attn_bench *a = p;
    nn_attention_forward(a->y, a->att, a->scratch, a->qkv, a->B, a->T, a->C, a->NH, 1);
}

static void attn_bwd(void *p) {
    attn_bench *a = p;
    nn_attention_backward(a->dqkv, a->scratch, a->dy, a->qkv, a->att, a->B, a->T, a->C, a->NH);
}

int bench_core(int argc, char **argv) {
    int threads = 0, reps = 10;
    t2i_flag flags[] = {
        {"--threads", T2I_INT, &threads, "threads (0 = OpenMP default)"},
        {"--reps", T2I_INT, &reps, "timed repetitions (median reported)"},
    };
    t2i_cmd cmd = {"t2i bench core", "sgemm peak; conv, convT and attention forward+backward at B1/B2 sizes.",
                   "[options]", flags, 2};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 1000)) return 2;
    t2i_set_threads(threads);
    int nt = t2i_get_threads();
    t2i_rng r;
    t2i_rng_seed(&r, 42);

    double peak = bench_sgemm_gflops(2048, reps);
    printf("sgemm 2048^3: %.1f GFLOP/s (%d threads)\n", peak, nt);

    conv_bench cv = {nn_conv2d_shape(128, 64, 14, 14, 128, 4, 2, 1), 0};
    conv_setup(&cv, &r);
    double conv_flop = 2.0 * 128 * 128 * 7 * 7 * 64 * 16;
    double t_cf = bench_time(conv_fwd, &cv, 2, reps), t_cb = bench_time(conv_bwd, &cv, 2, reps);
    printf("conv  Conv2d(64,128,k4,s2,p1) N=128 14x14: fwd %.2f ms (%.1f GFLOP/s)  bwd %.2f ms (%.1f GFLOP/s)\n",
           t_cf * 1e3, conv_flop / t_cf * 1e-9, t_cb * 1e3, 2 * conv_flop / t_cb * 1e-9);
    conv_free(&cv);

    conv_bench ct = {nn_conv_transpose2d_shape(64, 256, 7, 7, 128, 4, 2, 1, 0), 1};
    conv_setup(&ct, &r);
    double convt_flop = 2.0 * 64 * 256 * 7 * 7 * 128 * 16;
    double t_tf = bench_time(conv_fwd, &ct, 2, reps), t_tb = bench_time(conv_bwd, &ct, 2, reps);
    printf("convT ConvTranspose2d(256,128,k4,s2,p1) N=64 7x7: fwd %.2f ms (%.1f GFLOP/s)  bwd %.2f ms (%.1f GFLOP/s)\n",
           t_tf * 1e3, convt_flop / t_tf * 1e-9, t_tb * 1e3, 2 * convt_flop / t_tb * 1e-9);
    conv_free(&ct);

    attn_bench at = {32, 80, 256, 8};
    size_t nq = (size_t)at.B * at.T * 3 * at.C, ny = (size_t)at.B * at.T * at.C;
    at.qkv = randbuf(&r, nq), at.dqkv = randbuf(&r, nq), at.y = randbuf(&r, ny), at.dy = randbuf(&r, ny);
    at.att = randbuf(&r, (size_t)at.B * at.NH * at.T * at.T);
    at.scratch = randbuf(&r, nn_attention_scratch(at.B, at.T, at.C, at.NH));
    double attn_flop = 4.0 * at.B * at.T * at.T * at.C; /* QK^T and PV */
    double t_af = bench_time(attn_fwd, &at, 2, reps), t_ab = bench_time(attn_bwd, &at, 2, reps);
    printf("attn  causal B=32 T=80 C=256 H=8: fwd %.2f ms  bwd %.2f ms\n", t_af * 1e3, t_ab * 1e3);
    t2i_free(at.qkv), t2i_free(at.dqkv), t2i_free(at.y), t2i_free(at.dy), t2i_free(at.att), t2i_free(at.scratch);

    char *shapes = conv_table(&r, reps);

    double total_flop = 3 * conv_flop + 3 * convt_flop + 3 * attn_flop;
    double total_t = t_cf + t_cb + t_tf + t_tb + t_af + t_ab;
    printf("{\"bench\":\"core\",\"threads\":%d,\"peak_rss_mb\":%.1f,\"gflops\":%.1f,\"sgemm_gflops\":%.1f,"
           "\"conv_fwd_ms\":%.3f,\"conv_bwd_ms\":%.3f,\"convt_fwd_ms\":%.3f,\"convt_bwd_ms\":%.3f,"
           "\"attn_fwd_ms\":%.3f,\"attn_bwd_ms\":%.3f,\"conv_path\":\"%s\",\"conv_shapes\":{%s}}\n",
           nt, t2i_peak_rss_mb(), total_flop / total_t * 1e-9, peak, t_cf * 1e3, t_cb * 1e3, t_tf * 1e3,
           t_tb * 1e3, t_af * 1e3, t_ab * 1e3, nn_conv_path(), shapes);
    free(shapes);
    return 0;
}
