/* test_ops_torch.c - the dense layers of nn/ops.c (Linear, Embedding, activations,
 * dropout) and the optimizers against PyTorch, plus the BLAS paths against the naive
 * references of nn/ops_ref.c at production sizes. The other op families have their own
 * test_ops_*.c.
 *
 * Reference data and tolerances: tests/helpers/torchref.h. Input shapes are read from the
 * file; output shapes are computed by our shape functions and must match the stored ones
 * (st_load_f32 checks), so a wrong output-size formula fails too.
 * Backward kernels add into gradients: buffers are zeroed first, then a second backward
 * call into the same buffers must double every gradient.
 * GELU erf vs tanh: the test checks that their torch outputs differ beyond the forward
 * tolerance in many elements, so swapping the two implementations fails.
 *
 * Production-size checks (random data, no torch): Linear(100, 12544) at batch 64, the
 * packed few-row GEMM of decoding against the naive Linear.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "ops.h"
#include "ops_ref.h"
#include "optim.h"
#include "params.h"
#include "safetensors.h"
#include "testutil.h"
#include "torchref.h"

/* ---------------------------------------------------------------- Linear */

static void test_linear(void **state) {
    (void)state;
    const st_tensor *tx = tu_ref_find("linear.a.x"), *tw = tu_ref_find("linear.a.w");
    size_t N = (size_t)tx->shape[0];
    int IN = (int)tx->shape[1], OUT = (int)tw->shape[0];
    assert_int_equal(tw->shape[1], IN);
    float *x = tu_ref_get("linear.a.x"), *w = tu_ref_get("linear.a.w"), *b = tu_ref_get("linear.a.b");
    float *dy = tu_ref_get("linear.a.dy");
    int64_t sy[2] = {(int64_t)N, OUT}, sx[2] = {(int64_t)N, IN}, sw[2] = {OUT, IN}, sb[1] = {OUT};
    float *ry = tu_ref_get_shaped(2, sy, "linear.a.y"), *rdx = tu_ref_get_shaped(2, sx, "linear.a.dx");
    float *rdw = tu_ref_get_shaped(2, sw, "linear.a.dw"), *rdb = tu_ref_get_shaped(1, sb, "linear.a.db");

    float *y = tu_zeros(N * OUT), *dx = tu_zeros(N * IN), *dw = tu_zeros((size_t)OUT * IN), *db = tu_zeros(OUT);
    nn_linear_forward(y, x, w, b, N, IN, OUT);
    tu_close_fwd("linear y", y, ry, N * OUT);
    nn_linear_backward(dx, dw, db, dy, x, w, N, IN, OUT);
    tu_close_grad("linear dx", dx, rdx, N * IN);
    tu_close_grad("linear dw", dw, rdw, (size_t)OUT * IN);
    tu_close_grad("linear db", db, rdb, OUT);
    nn_linear_backward(dx, dw, db, dy, x, w, N, IN, OUT);
    tu_close_twice("linear dx", dx, rdx, N * IN);
    tu_close_twice("linear dw", dw, rdw, (size_t)OUT * IN);
    tu_close_twice("linear db", db, rdb, OUT);

    /* without bias: y - b */
    nn_linear_forward(y, x, w, NULL, N, IN, OUT);
    for (size_t i = 0; i < N; i++)
        for (int j = 0; j < OUT; j++) y[i * OUT + j] += b[j];
    tu_close_fwd("linear y (no bias) + b", y, ry, N * OUT);

    free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb);
    free(y), free(dx), free(dw), free(db);
}

/* ---------------------------------------------------------------- Embedding */

static void test_embedding(void **state) {
    (void)state;
    const st_tensor *tid = tu_ref_find("embedding.a.ids"), *tw = tu_ref_find("embedding.a.w");
    size_t N = tid->numel;
    int V = (int)tw->shape[0], C = (int)tw->shape[1];
    int32_t *ids = tu_ref_get_ids("embedding.a.ids");
    float *w = tu_ref_get("embedding.a.w"), *dy = tu_ref_get("embedding.a.dy");
    float *ry = tu_ref_get_shaped(3, SHAPE(tid->shape[0], tid->shape[1], C), "embedding.a.y");
    float *rdw = tu_ref_get_shaped(2, SHAPE(V, C), "embedding.a.dw");
    float *y = tu_zeros(N * C), *dw = tu_zeros((size_t)V * C);
    nn_embedding_forward(y, (const int *)ids, w, N, V, C);
    tu_close_fwd("embedding y", y, ry, N * C);
    nn_embedding_backward(dw, dy, (const int *)ids, N, V, C);
    tu_close_grad("embedding dw (repeated ids sum)", dw, rdw, (size_t)V * C);
    nn_embedding_backward(dw, dy, (const int *)ids, N, V, C);
    tu_close_twice("embedding dw", dw, rdw, (size_t)V * C);
    free(ids), free(w), free(dy), free(ry), free(rdw), free(y), free(dw);
}

/* ---------------------------------------------------------------- activations */

/* Caps the CPU path at lv (T2I_CPU) and returns 1, or reports a path this CPU lacks as not
 * tested (once, when say, naming what) and returns 0. */
static int cpu_path_cap(int lv, const char *what, int say) {
    if (t2i_cpu_best() < (t2i_cpu_level)lv) {
        if (say)
            print_message("%s, path %s: NOT TESTED, this CPU lacks it (best: %s)\n", what,
                          t2i_cpu_name((t2i_cpu_level)lv), t2i_cpu_name(t2i_cpu_best()));
        return 0;
    }
    setenv("T2I_CPU", t2i_cpu_name((t2i_cpu_level)lv), 1);
    return 1;
}

static void test_activations(void **state) {
    (void)state;
    static const struct {
        const char *name;
        nn_act act;
        float slope;
    } acts[] = {
        {"relu", NN_ACT_RELU, 0.0f},           {"leaky_relu", NN_ACT_LEAKY_RELU, 0.2f},
        {"gelu_tanh", NN_ACT_GELU_TANH, 0.0f}, {"gelu_erf", NN_ACT_GELU_ERF, 0.0f},
        {"quick_gelu", NN_ACT_QUICK_GELU, 0.0f}, {"silu", NN_ACT_SILU, 0.0f},
        {"tanh", NN_ACT_TANH, 0.0f},           {"sigmoid", NN_ACT_SIGMOID, 0.0f},
    };
    const st_tensor *tx = tu_ref_find("act.x");
    size_t n = tx->numel;
    float *x = tu_ref_get("act.x"), *dy = tu_ref_get("act.dy");
    float *y = tu_zeros(n), *dx = tu_zeros(n), *buf = tu_zeros(n);
    char label[96];
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        float *ry = tu_ref_get_shaped(tx->ndim, tx->shape, "act.%s.y", acts[a].name);
        float *rdx = tu_ref_get_shaped(tx->ndim, tx->shape, "act.%s.dx", acts[a].name);
        nn_act_forward(y, x, n, acts[a].act, acts[a].slope);
        snprintf(label, sizeof label, "act %s y", acts[a].name);
        tu_close_fwd(label, y, ry, n);
        /* in place (out == inp) */
        memcpy(buf, x, n * sizeof(float));
        nn_act_forward(buf, buf, n, acts[a].act, acts[a].slope);
        snprintf(label, sizeof label, "act %s y in place", acts[a].name);
        tu_close_fwd(label, buf, ry, n);
        /* every copy of the vectorised activations (one per CPU path) gives the same bits */
        for (int lv = T2I_CPU_BASELINE; lv <= T2I_CPU_AVX512; lv++) {
            if (!cpu_path_cap(lv, "activations", a == 0)) continue;
            nn_act_forward(buf, x, n, acts[a].act, acts[a].slope);
            unsetenv("T2I_CPU");
            assert_memory_equal(buf, y, n * sizeof(float));
        }

        memset(dx, 0, n * sizeof(float));
        nn_act_backward(dx, dy, x, n, acts[a].act, acts[a].slope);
        snprintf(label, sizeof label, "act %s dx", acts[a].name);
        tu_close_grad(label, dx, rdx, n);
        nn_act_backward(dx, dy, x, n, acts[a].act, acts[a].slope);
        tu_close_twice(label, dx, rdx, n);
        /* dinp == dout means overwrite, not accumulate */
        memcpy(buf, dy, n * sizeof(float));
        nn_act_backward(buf, buf, x, n, acts[a].act, acts[a].slope);
        snprintf(label, sizeof label, "act %s dx in place", acts[a].name);
        tu_close_grad(label, buf, rdx, n);
        /* every path's copy gives the same bits, accumulating and in place */
        float *base = tu_zeros(n), *base_in = tu_zeros(n);
        for (int lv = T2I_CPU_BASELINE; lv <= T2I_CPU_AVX512; lv++) {
            if (!cpu_path_cap(lv, "activations", 0)) continue;
            memset(base, 0, n * sizeof(float));
            memcpy(base_in, dy, n * sizeof(float));
            nn_act_backward(base, dy, x, n, acts[a].act, acts[a].slope);
            nn_act_backward(base, dy, x, n, acts[a].act, acts[a].slope);
            nn_act_backward(base_in, base_in, x, n, acts[a].act, acts[a].slope);
            unsetenv("T2I_CPU");
            assert_memory_equal(base, dx, n * sizeof(float));
            assert_memory_equal(base_in, buf, n * sizeof(float));
        }
        free(base), free(base_in);
        free(ry), free(rdx);
    }

    /* GELU erf and tanh must be told apart by the forward tolerance: count the elements
     * where torch's two outputs differ by more than it (each of them then fails if an
     * implementation computed the other one). */
    float *ge = tu_ref_get("act.gelu_erf.y"), *gt = tu_ref_get("act.gelu_tanh.y");
    int apart = 0;
    double gap = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ge[i] - gt[i]);
        if (d > FWD_ATOL + FWD_RTOL * fabs(ge[i]) && d > FWD_ATOL + FWD_RTOL * fabs(gt[i])) apart++;
        if (d > gap) gap = d;
    }
    print_message("gelu erf vs tanh: %d of %zu elements differ beyond tolerance (max %.3g)\n", apart,
                  n, gap);
    assert_true(apart >= 10);
    free(ge), free(gt);
    free(x), free(dy), free(y), free(dx), free(buf);
}

/* Inverted dropout keeps the expectation: E[out] = x. Statistical check on a constant
 * input: the mean of n outputs has standard deviation x sqrt(p / (1 - p) / n). */
static void test_dropout(void **state) {
    (void)state;
    const size_t n = 200000;
    const float p = 0.3f, xval = 1.5f;
    t2i_rng rng;
    t2i_rng_seed(&rng, 7);
    float *x = t2i_malloc(n * sizeof(float)), *y = tu_zeros(n), *mask = tu_zeros(n), *dx = tu_zeros(n);
    for (size_t i = 0; i < n; i++) x[i] = xval;
    nn_dropout_forward(y, mask, x, n, p, &rng);
    double sum = 0.0;
    size_t dropped = 0;
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        sum += y[i];
        dropped += mask[i] == 0.0f;
        assert_true(mask[i] == 0.0f || mask[i] == keep);
        assert_true(y[i] == x[i] * mask[i]);
    }
    double mean = sum / (double)n, sd_mean = xval * sqrt(p / (1.0 - p) / (double)n);
    double frac = (double)dropped / (double)n, sd_frac = sqrt(p * (1.0 - p) / (double)n);
    print_message("dropout p=%.2f: mean %.5f (want %.2f +- %.4f), dropped %.4f\n", p, mean, xval,
                  5 * sd_mean, frac);
    assert_true(fabs(mean - xval) < 5.0 * sd_mean);
    assert_true(fabs(frac - p) < 5.0 * sd_frac);
    /* backward routes through the same mask and accumulates */
    for (size_t i = 0; i < n; i++) dx[i] = 1.0f;
    nn_dropout_backward(dx, x, mask, n);
    for (size_t i = 0; i < n; i++) assert_true(dx[i] == 1.0f + xval * mask[i]);
    /* a different stream gives a different mask */
    t2i_rng r2;
    t2i_rng_seed(&r2, 8);
    float *mask2 = tu_zeros(n);
    nn_dropout_forward(y, mask2, x, n, p, &r2);
    assert_true(memcmp(mask, mask2, n * sizeof(float)) != 0);
    /* p = 0 is the identity */
    nn_dropout_forward(y, mask2, x, n, 0.0f, &r2);
    assert_memory_equal(y, x, n * sizeof(float));
    free(x), free(y), free(mask), free(mask2), free(dx);
}

/* ---------------------------------------------------------------- optimizers */

static void test_optimizers(void **state) {
    (void)state;
    const st_tensor *tp = tu_ref_find("optim.p0");
    size_t n = tp->numel;
    float *p0 = tu_ref_get("optim.p0");
    float *grads = tu_ref_get_shaped(3, SHAPE(3, tp->shape[0], tp->shape[1]), "optim.grads");
    static const char *const names[3] = {"sgd", "adam", "adamw"};
    for (int k = 0; k < 3; k++) {
        nn_optim o = k == 0   ? nn_sgd(0.1f, 0.9f, 0.01f)
                     : k == 1 ? nn_adam(0.01f, 0.9f, 0.999f, 1e-8f, 0.1f)
                              : nn_adamw(0.01f, 0.9f, 0.999f, 1e-8f, 0.1f);
        nn_params ps;
        nn_params_init(&ps);
        int shape[2] = {(int)tp->shape[0], (int)tp->shape[1]};
        int ip = nn_params_add(&ps, "p", 2, shape, NN_TRAIN);
        nn_params_alloc(&ps);
        memcpy(nn_params_val(&ps, ip), p0, n * sizeof(float));
        for (int step = 0; step < 3; step++) {
            memcpy(nn_params_grad(&ps, ip), grads + step * n, n * sizeof(float));
            nn_optim_step(&o, &ps, o.lr);
            float *want = tu_ref_get_shaped(2, tp->shape, "optim.%s.p%d", names[k], step + 1);
            char label[64];
            snprintf(label, sizeof label, "%s after step %d", names[k], step + 1);
            tu_assert_close(label, nn_params_val(&ps, ip), want, n, OPT_ATOL, 0.0f);
            free(want);
        }
        nn_params_free(&ps);
    }
    free(p0), free(grads);
}

/* ---------------------------------------------------------------- production sizes */

/* What every fused-multiply-add copy of the packed GEMM must give, bit for bit: each sum a
 * chain of fmaf over k in order, then (out or 0) + bias + sum. */
static void packed_fma_ref(float *y, const float *x, const float *w, const float *b, int M, int N, int K,
                           int accumulate) {
    for (int r = 0; r < M; r++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s = fmaf(x[(size_t)r * K + k], w[(size_t)j * K + k], s);
            float *o = &y[(size_t)r * N + j];
            *o = (accumulate ? *o : 0.0f) + (b ? b[j] : 0.0f) + s;
        }
}

/* The packed few-row GEMM against the naive Linear on every CPU path the machine has: row
 * counts below, at and above the 4- and 8-row tiles, output widths with a partial last
 * 48-column panel and partial 12/24-column tile parts, with and without bias, accumulating
 * onto existing values; weights as f32 panels and, rounded to bf16 or to f16 (with f16
 * subnormals among them), as bf16 or f16 panels. A dropped tail row/column, a wrong panel
 * or part offset, bias counted twice or a wrong widening fails. The AVX2 and AVX-512
 * copies must equal a chain of fmaf bit for bit (so they equal each other, and 16-bit
 * panels equal f32 panels of the same values). */
static void test_packed_gemm(void **state) {
    (void)state;
    const int cases[][3] = {{1, 7, 5},    {3, 24, 33},  {4, 50, 37},  {5, 256, 96}, {8, 13, 64},
                            {9, 100, 20}, {16, 48, 512}, {17, 73, 40}, {32, 1, 300}, {64, 73, 256}}; /* M N K */
    t2i_rng r;
    t2i_rng_seed(&r, 17);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int M = cases[ci][0], N = cases[ci][1], K = cases[ci][2];
        size_t MN = (size_t)M * N;
        float *x = tu_randn(&r, (size_t)M * K, 1.0f), *w = tu_init_w(&r, (size_t)N * K, K), *b = tu_init_w(&r, N, K);
        float *ry = tu_zeros(MN), *y = tu_zeros(MN), *base = tu_randn(&r, MN, 1.0f), *fy = tu_zeros(MN);
        float *w0 = tu_zeros((size_t)N * K);
        memcpy(w0, w, (size_t)N * K * sizeof(float));
        for (int half = 0; half < 3; half++) { /* f32, bf16, f16 */
            for (size_t i = 0; i < (size_t)N * K; i++) {
                float v = i % 7 == 3 ? w0[i] * 1e-5f : w0[i]; /* some f16 subnormals */
                w[i] = half == 1 ? t2i_bf16_to_f32(t2i_f32_to_bf16(w0[i])) : half == 2 ? t2i_f16_to_f32(t2i_f32_to_f16(v)) : w0[i];
            }
            nn_ref_linear_forward(ry, x, w, b, M, K, N);
            nn_packed p;
            nn_pack_weights(&p, w, N, K);
            /* 16-bit panels exactly when lossless */
            assert_int_equal(p.dtype, half == 1 ? NN_PK_BF16 : half == 2 ? NN_PK_F16 : NN_PK_F32);
            assert_true(half ? p.w16 && !p.w : p.w && !p.w16);
            for (int lv = T2I_CPU_BASELINE; lv <= T2I_CPU_AVX512; lv++) {
                if (!cpu_path_cap(lv, "packed gemm", ci == 0 && half == 0)) continue;
                for (size_t i = 0; i < MN; i++) y[i] = 1e9f; /* overwritten, not added to */
                nn_packed_gemm(y, x, &p, b, M, 0);
                tu_assert_close(half == 1 ? "packed y (bf16)" : half == 2 ? "packed y (f16)" : "packed y", y, ry, MN, 1e-5f,
                                1e-4f);
                if (lv > T2I_CPU_BASELINE) {
                    packed_fma_ref(fy, x, w, b, M, N, K, 0);
                    assert_memory_equal(y, fy, MN * sizeof(float));
                }
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    memcpy(y, base, MN * sizeof(float));
                    nn_packed_gemm(y, x, &p, with_bias ? b : NULL, M, 1);
                    for (size_t i = 0; i < MN; i++) {
                        float want = base[i] + ry[i] - (with_bias ? 0.0f : b[i % N]);
                        assert_true(fabsf(y[i] - want) <= 1e-5f + 1e-4f * fabsf(want));
                    }
                    if (lv > T2I_CPU_BASELINE) {
                        memcpy(fy, base, MN * sizeof(float));
                        packed_fma_ref(fy, x, w, with_bias ? b : NULL, M, N, K, 1);
                        assert_memory_equal(y, fy, MN * sizeof(float));
                    }
                }
                unsetenv("T2I_CPU");
            }
            nn_packed_free(&p);
        }
        free(x), free(w), free(w0), free(b), free(ry), free(y), free(base), free(fy);
    }
}

/* B1 generator's input layer: Linear(100, 256*7*7) at batch 64. */
static void test_big_linear(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 103);
    const size_t N = 64;
    const int IN = 100, OUT = 256 * 7 * 7;
    float *x = tu_randn(&r, N * IN, 1.0f), *w = tu_init_w(&r, (size_t)OUT * IN, IN), *b = tu_init_w(&r, OUT, IN);
    float *y = tu_zeros(N * OUT), *ry = tu_zeros(N * OUT);
    nn_linear_forward(y, x, w, b, N, IN, OUT);
    nn_ref_linear_forward(ry, x, w, b, N, IN, OUT);
    tu_assert_close("big linear y", y, ry, N * OUT, 1e-5f, 1e-4f);
    free(x), free(w), free(b), free(y), free(ry);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_packed_gemm),
        cmocka_unit_test(test_big_linear),
    };
    return cmocka_run_group_tests(tests, tu_ref_setup, tu_ref_teardown);
}
