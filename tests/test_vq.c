/* test_vq.c - the VQ image tokenizer (dalle_tok/vq.h).
 *
 * A finite-difference check of the whole loss through the argmin is meaningless (the code
 * choice is piecewise constant), so the pieces are checked separately:
 *   - straight-through: with beta = 0, dL/dz equals the gradient of MSE(dec(q), x) with
 *     respect to q, taken by central differences of the decoder;
 *   - commitment: the change of dL/dz when beta goes 0 -> 0.25 is 2 beta (z - e) / n, with
 *     e found by this file's own brute-force search, and the reported term is
 *     beta * mean((z - e)^2);
 *   - EMA update with Laplace smoothing on a 3-code example worked out by hand;
 *   - nearest-code search against a brute-force loop (random data; integer data with
 *     exact ties, which must go to the lowest index; a codebook large enough that the
 *     search runs in several GEMM blocks);
 *   - dead-code restarts replace exactly the dead codes, from distinct batch rows;
 *   - six training steps against PyTorch (tests/ref/gen_vq_ref.py -> data/vq_ref.safetensors):
 *     per-step losses and perplexities within 1e-4 relative, codes, final weights, codebook
 *     and EMA buffers within 1e-4;
 *   - the B5 preset's shapes and parameter count (counted by hand from bench/README.md B5),
 *     configuration JSON, checkpoint round trip and errors, encode/decode consistency.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "ckpt.h"
#include "vq.h"
#include "safetensors.h"
#include "testutil.h"

/* A small custom model: 3x8x8 images -> 2x2 codes of 4 dims from 16 codes. */
static void tiny_config(vq_config *c) {
    vq_config_b5(c);
    strcpy(c->preset, "custom");
    c->res = 8;
    c->width1 = 4;
    c->width2 = 8;
    c->res_hidden = 4;
    c->n_res = 1;
    c->code_dim = 4;
    c->n_codes = 16;
}

/* Brute force: argmin_k sum_d (z_d - e_kd)^2 in double, lowest k on ties. */
static int brute_nearest(const float *z, const float *cb, int K, int D, double *best_out, double *second_out) {
    double best = INFINITY, second = INFINITY;
    int bk = -1;
    for (int k = 0; k < K; k++) {
        double s = 0.0;
        for (int d = 0; d < D; d++) {
            double e = (double)z[d] - cb[(size_t)k * D + d];
            s += e * e;
        }
        if (s < best) {
            second = best;
            best = s, bk = k;
        } else if (s < second) {
            second = s;
        }
    }
    if (best_out) *best_out = best;
    if (second_out) *second_out = second;
    return bk;
}

/* ------------------------------------------------------------ B5 preset ---- */

static void test_b5_preset(void **state) {
    (void)state;
    vq_config c;
    vq_config_b5(&c);
    assert_int_equal(vq_config_check(&c), 0);
    t2i_rng r;
    t2i_rng_seed(&r, 5);
    vq_model m;
    vq_model_build(&m, &c, &r);
    assert_int_equal(m.enc.C, 64);
    assert_int_equal(m.enc.H, 8);
    assert_int_equal(m.enc.W, 8);
    assert_int_equal(m.dec.C, 3);
    assert_int_equal(m.dec.H, 32);
    assert_int_equal(vq_grid(&m), 8);
    assert_int_equal(vq_n_codes(&m), 512);
    /* By hand from B5 (weights + biases):
     *   encoder  Conv3x3(3,64) 1792, Conv4x4(64,128) 131200, Conv4x4(128,128) 262272,
     *            2 x [Conv3x3(128,128) 147584 + Conv1x1(128,128) 16512], Conv1x1(128,64) 8256
     *            = 731712
     *   decoder  Conv3x3(64,128) 73856, 2 x 164096, ConvT(128,128) 262272, ConvT(128,64) 131136,
     *            Conv3x3(64,3) 1731 = 797187
     *   buffers  codebook 512*64, EMA count 512, EMA sum 512*64 = 66048 */
    assert_int_equal(nn_params_count(&m.ps, 1), 731712 + 797187);
    assert_int_equal(nn_params_count(&m.ps, 0) - nn_params_count(&m.ps, 1), 66048);
    assert_true(nn_params_find(&m.ps, "vq.codebook") >= 0);
    assert_int_equal(m.ps.p[nn_params_find(&m.ps, "enc.18.weight")].shape[0], 64); /* the last Conv1x1 */
    assert_int_equal(m.ps.p[nn_params_find(&m.ps, "dec.14.weight")].shape[2], 4);  /* ConvT 4x4 */

    /* two images through encode/decode: codes in range, finite output of the right size */
    float *x = tu_randn(&r, 2 * 3 * 32 * 32, 0.5f), *y = tu_zeros(2 * 3 * 32 * 32 + 1);
    int32_t codes[128];
    nn_arena a;
    nn_arena_init(&a);
    vq_encode(&m, &a, x, 2, codes);
    for (int i = 0; i < 128; i++) assert_true(codes[i] >= 0 && codes[i] < 512);
    y[2 * 3 * 32 * 32] = 12345.0f;
    vq_decode(&m, &a, codes, 2, y);
    for (int i = 0; i < 2 * 3 * 32 * 32; i++) assert_true(isfinite(y[i]));
    assert_true(y[2 * 3 * 32 * 32] == 12345.0f);
    nn_arena_free(&a);
    free(x), free(y);

    /* JSON round trip; b5 refuses other sizes */
    char *j = vq_config_to_json(&c);
    vq_config c2;
    assert_int_equal(vq_config_from_json(&c2, j), 0);
    assert_memory_equal(&c, &c2, sizeof c);
    free(j);
    c2.width2 = 96;
    assert_int_equal(vq_config_check(&c2), -1);
    strcpy(c2.preset, "custom");
    assert_int_equal(vq_config_check(&c2), 0);
    c2.res = 30;
    assert_int_equal(vq_config_check(&c2), -1);
    assert_int_equal(vq_config_from_json(&c2, "{\"preset\":\"b5\"}"), -1);
    vq_model_free(&m);
}

/* ------------------------------------------------------- nearest search ---- */

static void check_nearest(const float *z, const float *cb, size_t M, int K, int D, int exact) {
    int32_t *idx = malloc(M * sizeof(int32_t));
    float *mind = malloc(M * sizeof(float));
    float *scratch = malloc(vq_nearest_scratch(M, K) * sizeof(float));
    vq_nearest(idx, mind, scratch, z, cb, M, K, D);
    int differ = 0;
    for (size_t i = 0; i < M; i++) {
        double best, second;
        int bk = brute_nearest(z + i * D, cb, K, D, &best, &second);
        if (idx[i] == bk) {
            assert_true(fabs(mind[i] - best) <= 1e-4 * (1.0 + best));
            continue;
        }
        /* float rounding may only swap codes that are within rounding of each other */
        assert_false(exact);
        double got = 0.0;
        for (int d = 0; d < D; d++) {
            double e = (double)z[i * D + d] - cb[(size_t)idx[i] * D + d];
            got += e * e;
        }
        assert_true(got - best <= 1e-5 * (1.0 + best));
        differ++;
    }
    assert_true(differ <= (int)(M / 100)); /* near-ties are rare on random data */
    free(idx), free(mind), free(scratch);
}

static int read_vq_config(const char *json) {
    vq_config c;
    return vq_config_from_json(&c, json);
}

/* config -> JSON -> config is exact and writes the JSON back unchanged (grid derived from
 * res); every field refuses a missing, mistyped or out-of-range value by name. */
static void test_config_table(void **state) {
    (void)state;
    vq_config c, d;
    vq_config_b5(&c);
    strcpy(c.preset, "custom");
    c.channels = 1, c.res = 28, c.n_res = 0, c.beta = 0.3f, c.decay = 0.95f, c.eps = 1e-3f;
    char *j = vq_config_to_json(&c);
    assert_string_equal(j, "{\"preset\":\"custom\",\"channels\":1,\"res\":28,\"width1\":64,\"width2\":128,\"res_hidden\":128,"
                           "\"n_res\":0,\"code_dim\":64,\"n_codes\":512,\"grid\":7,\"beta\":0.3,\"decay\":0.95,\"eps\":0.001}");
    assert_int_equal(vq_config_from_json(&d, j), 0);
    assert_memory_equal(&c, &d, sizeof c);
    char *j2 = vq_config_to_json(&d);
    assert_string_equal(j2, j);
    tu_config_refusals(j, read_vq_config, NULL);
    c.n_codes = 1;
    assert_int_equal(vq_config_check(&c), -1);
    assert_non_null(strstr(t2i_error_msg(), "'n_codes' = 1 is outside [2, 65536]"));
    free(j), free(j2);
}

static void test_nearest(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 11);
    /* random data */
    size_t M = 500;
    int K = 40, D = 16;
    float *z = tu_randn(&r, M * D, 1.0f), *cb = tu_randn(&r, (size_t)K * D, 1.0f);
    check_nearest(z, cb, M, K, D, 0);
    free(z), free(cb);

    /* integer data: every distance is exact in float, ties are frequent and must go to the
     * lowest index; K = 4096 makes vq_nearest work in blocks of 256 rows */
    M = 700, K = 4096, D = 4;
    z = malloc(M * D * sizeof(float)), cb = malloc((size_t)K * D * sizeof(float));
    for (size_t i = 0; i < M * D; i++) z[i] = (float)((int)t2i_rng_below(&r, 5) - 2);
    for (size_t i = 0; i < (size_t)K * D; i++) cb[i] = (float)((int)t2i_rng_below(&r, 5) - 2);
    int ties = 0;
    for (size_t i = 0; i < M; i++) {
        double b, s;
        brute_nearest(z + i * D, cb, K, D, &b, &s);
        ties += b == s;
    }
    assert_true(ties > (int)(M / 2)); /* the case is really about ties */
    check_nearest(z, cb, M, K, D, 1);

    /* duplicated codes: the first copy wins */
    K = 6, D = 4;
    float cb2[24] = {5, 5, 5, 5, 1, 0, 0, 0, 9, 9, 9, 9, 1, 0, 0, 0, 1, 0, 0, 0, -3, 0, 0, 0};
    float zz[4] = {1.2f, 0.1f, -0.1f, 0.0f};
    int32_t idx;
    float scratch[64];
    vq_nearest(&idx, NULL, scratch, zz, cb2, 1, K, D);
    assert_int_equal(idx, 1);
    free(z), free(cb);
}

/* ----------------------------------------------------------- EMA update ---- */

static void test_ema_hand(void **state) {
    (void)state;
    /* K = 3 codes of D = 2, decay 0.9, eps 0.1 (large, so smoothing shows). Code 1 gets
     * nothing from this batch. */
    float count[3] = {2.0f, 1.0f, 0.5f};
    float sum[6] = {2, 4, 1, -1, 0.5f, 0.5f};
    float cb[6] = {7, 7, 7, 7, 7, 7}; /* overwritten */
    float z[8] = {1, 0, 3, 2, 0, 1, -1, -1};
    int32_t idx[4] = {0, 0, 2, 2};
    float bc[3], bs[6];
    vq_ema_update(cb, count, sum, bc, bs, z, idx, 4, 3, 2, 0.9f, 0.1f);
    /* batch counts n = (2, 0, 2), sums s0 = (4, 2), s1 = 0, s2 = (-1, 0) */
    assert_float_equal(bc[0], 2.0f, 0);
    assert_float_equal(bc[1], 0.0f, 0);
    assert_float_equal(bc[2], 2.0f, 0);
    assert_float_equal(bs[0], 4.0f, 0);
    assert_float_equal(bs[1], 2.0f, 0);
    assert_float_equal(bs[4], -1.0f, 0);
    /* counts 0.9 c + 0.1 n = (2.0, 0.9, 0.65); sums 0.9 S + 0.1 s */
    assert_float_equal(count[0], 2.0f, 1e-6);
    assert_float_equal(count[1], 0.9f, 1e-6);
    assert_float_equal(count[2], 0.65f, 1e-6);
    const double s_exp[6] = {2.2, 3.8, 0.9, -0.9, 0.35, 0.45};
    for (int i = 0; i < 6; i++) assert_float_equal(sum[i], s_exp[i], 1e-6);
    /* N = 3.55; smoothed count (c + 0.1) / (3.55 + 3 * 0.1) * 3.55; e = S / smoothed */
    const double cnt[3] = {2.0, 0.9, 0.65};
    for (int k = 0; k < 3; k++) {
        double sm = (cnt[k] + 0.1) / 3.85 * 3.55;
        for (int d = 0; d < 2; d++) assert_float_equal(cb[k * 2 + d], s_exp[k * 2 + d] / sm, 1e-5);
    }
    /* so code 0 = (2.2, 3.8) / 1.93636..: about (1.1362, 1.9624) */
    assert_float_equal(cb[0], 1.13615f, 1e-4);
    assert_float_equal(cb[1], 1.96244f, 1e-4);
}

/* -------------------------------------------------------------- restarts ---- */

static void test_restart(void **state) {
    (void)state;
    enum { K = 8, D = 3, M = 10 };
    float count[K] = {5, 0.1f, 2, 0, 0.6f, 3, 0.2f, 1};
    float cb[K * D], sum[K * D], cb0[K * D], sum0[K * D], count0[K];
    for (int i = 0; i < K * D; i++) cb[i] = 100.0f + i, sum[i] = 200.0f + i;
    memcpy(cb0, cb, sizeof cb), memcpy(sum0, sum, sizeof sum), memcpy(count0, count, sizeof count);
    float z[M * D];
    for (int i = 0; i < M; i++)
        for (int d = 0; d < D; d++) z[i * D + d] = (float)(i + 10 * d);
    int perm[M];
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    int n = vq_restart_codes(cb, count, sum, K, D, z, M, 0.5f, &r, perm);
    assert_int_equal(n, 3);
    int dead[K] = {0, 1, 0, 1, 0, 0, 1, 0}, used_rows[M] = {0};
    for (int k = 0; k < K; k++) {
        if (!dead[k]) {
            assert_memory_equal(cb + k * D, cb0 + k * D, D * sizeof(float));
            assert_memory_equal(sum + k * D, sum0 + k * D, D * sizeof(float));
            assert_true(count[k] == count0[k]);
            continue;
        }
        int row = (int)cb[k * D];
        assert_true(row >= 0 && row < M);
        for (int d = 0; d < D; d++) {
            assert_true(cb[k * D + d] == z[row * D + d]);
            assert_true(sum[k * D + d] == z[row * D + d]);
        }
        assert_true(count[k] == 1.0f);
        assert_int_equal(used_rows[row], 0); /* distinct rows */
        used_rows[row] = 1;
    }
    /* more dead codes than rows: the first M come from distinct rows, the rest repeat */
    float cnt2[K] = {0};
    n = vq_restart_codes(cb, cnt2, sum, K, D, z, 2, 0.5f, &r, perm);
    assert_int_equal(n, K);
    assert_true(cb[0] != cb[D]);
    for (int k = 0; k < K; k++) assert_true(cb[k * D] == 0.0f || cb[k * D] == 1.0f);
    /* INFINITY restarts everything; threshold 0 restarts nothing */
    for (int k = 0; k < K; k++) count[k] = 50.0f;
    assert_int_equal(vq_restart_codes(cb, count, sum, K, D, z, M, INFINITY, &r, perm), K);
    assert_int_equal(vq_restart_codes(cb, count, sum, K, D, z, M, 0.0f, &r, perm), 0);
}

/* ------------------------------------------- straight-through / commitment ---- */

/* sum of squared errors of dec(q) against x, in double (the sum, not the mean, keeps the
 * finite differences well above float rounding) */
static double decoder_sse(vq_model *m, nn_arena *a, const float *q, const float *x, int N) {
    size_t mark = nn_arena_mark(a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    float *y = nn_seq_forward(&m->dec, &t, a, q, N, 1);
    size_t nx = (size_t)N * m->cfg.channels * m->cfg.res * m->cfg.res;
    double s = 0.0;
    for (size_t i = 0; i < nx; i++) s += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    nn_arena_rewind(a, mark);
    return s;
}

static void test_gradients(void **state) {
    (void)state;
    vq_config c;
    tiny_config(&c);
    t2i_rng r;
    t2i_rng_seed(&r, 21);
    vq_model m;
    vq_model_build(&m, &c, &r);
    const int N = 3, D = c.code_dim, S = 4;
    size_t nx = (size_t)N * 3 * 8 * 8, nz = (size_t)N * D * S;
    float *x = tu_randn(&r, nx, 0.6f);
    nn_arena a;
    nn_arena_init(&a);
    /* a codebook spread over the encoder outputs, so several codes are in use */
    {
        vq_pass p;
        vq_stats st;
        t2i_rng rr;
        t2i_rng_seed(&rr, 1);
        vq_loss_backward(&m, &a, x, N, VQ_RESTART_ALL, 0, &rr, &st, &p);
        assert_int_equal(st.restarted, 16);
        float *cb = nn_params_val(&m.ps, m.i_codebook);
        for (int i = 0; i < 16 * D; i++) cb[i] += 0.2f * t2i_rng_normal(&r);
    }

    /* beta = 0: dz must be the decoder's gradient at q */
    m.cfg.beta = 0.0f;
    nn_arena_reset(&a);
    vq_pass p0;
    vq_stats s0;
    vq_loss_backward(&m, &a, x, N, VQ_RESTART_NONE, 0, NULL, &s0, &p0);
    assert_float_equal(s0.commit, 0.0f, 0);
    assert_true(s0.codes_used >= 3);
    float *q = malloc(nz * sizeof(float)), *dz0 = malloc(nz * sizeof(float)), *z = malloc(nz * sizeof(float));
    memcpy(q, p0.q, nz * sizeof(float));
    memcpy(dz0, p0.dz, nz * sizeof(float));
    memcpy(z, p0.z, nz * sizeof(float));
    /* dL/dz of the mean loss times nx is the derivative of the sum. The decoder is piecewise
     * linear (ReLU): an element whose +-h step crosses a kink shows it as different one-sided
     * slopes and is skipped (a few are, with 2x2 grids of 8-channel features). */
    int big = 0, skipped = 0;
    const float h = 3e-3f;
    double l0 = decoder_sse(&m, &a, q, x, N);
    for (size_t i = 0; i < nz; i++) {
        float keep = q[i];
        q[i] = keep + h;
        double lp = decoder_sse(&m, &a, q, x, N);
        q[i] = keep - h;
        double lm = decoder_sse(&m, &a, q, x, N);
        q[i] = keep;
        double num = (lp - lm) / (2.0 * h), ana = (double)dz0[i] * nx;
        double fwd = (lp - l0) / h, bwd = (l0 - lm) / h;
        if (fabs(fwd - bwd) > 2e-3 + 2e-2 * fabs(num)) {
            skipped++;
            continue;
        }
        if (!(fabs(ana - num) <= 1e-3 + 1e-2 * fabs(num)))
            fail_msg("dz[%zu] = %g (x %zu), decoder finite difference %g", i, dz0[i], nx, num);
        big += fabs(num) > 1e-2;
    }
    printf("straight-through: %d of %zu gradients above 1e-2, %d skipped at ReLU kinks\n", big, nz, skipped);
    assert_true(skipped <= (int)nz / 4);
    assert_true(big > (int)nz / 2); /* the gradients are not trivially zero */
    /* the z the gradient is attached to is not q itself */
    assert_true(tu_max_abs_diff(z, q, nz, NULL) > 1e-3f);

    /* beta = 0.25: dz grows by 2 beta (z - e) / n with e from a brute-force search */
    m.cfg.beta = 0.25f;
    nn_arena_reset(&a);
    vq_pass p1;
    vq_stats s1;
    vq_loss_backward(&m, &a, x, N, VQ_RESTART_NONE, 0, NULL, &s1, &p1);
    const float *cb = nn_params_val(&m.ps, m.i_codebook);
    double cs = 0.0;
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            float zr[64];
            for (int d = 0; d < D; d++) zr[d] = z[((size_t)n * D + d) * S + s];
            int k = brute_nearest(zr, cb, 16, D, NULL, NULL);
            assert_int_equal(p1.idx[n * S + s], k);
            for (int d = 0; d < D; d++) {
                size_t i = ((size_t)n * D + d) * S + s;
                double diff = (double)zr[d] - cb[k * D + d];
                cs += diff * diff;
                double want = 2.0 * 0.25 * diff / (double)nz;
                assert_true(fabs((p1.dz[i] - dz0[i]) - want) <= 1e-7 + 1e-3 * fabs(want));
            }
        }
    assert_float_equal(s1.commit, 0.25 * cs / nz, 1e-6 * (1 + s1.commit));
    assert_float_equal(s1.recon, s0.recon, 0);
    assert_float_equal(s1.loss, s1.recon + s1.commit, 1e-7);

    /* evaluation-mode encode/decode give the training pass's codes and reconstruction */
    int32_t codes[12], idx1[12];
    float *xr = malloc(nx * sizeof(float)), *xr_train = malloc(nx * sizeof(float));
    memcpy(idx1, p1.idx, sizeof idx1); /* the pass lives in the arena, reset below */
    memcpy(xr_train, p1.xr, nx * sizeof(float));
    nn_arena_reset(&a);
    vq_encode(&m, &a, x, N, codes);
    for (int i = 0; i < N * S; i++) assert_int_equal(codes[i], idx1[i]);
    vq_decode(&m, &a, codes, N, xr);
    tu_assert_close("decode vs training pass", xr, xr_train, nx, 1e-6f, 1e-6f);
    free(xr), free(xr_train);

    nn_arena_free(&a);
    free(x), free(q), free(dz0), free(z);
    vq_model_free(&m);
}

/* ------------------------------------------------------------- PyTorch ---- */

static void load_prefixed(const st_file *f, vq_model *m, const char *prefix) {
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (st_load_f32(f, name, m->ps.data + p->offset, p->ndim, shape) != 0) fail_msg("%s", t2i_error_msg());
    }
}

static float *read_all(const st_file *f, const char *name, size_t n) {
    size_t got;
    float *v = tu_st_read_f32(f, name, &got);
    assert_int_equal(got, n);
    return v;
}

static void test_torch_steps(void **state) {
    (void)state;
    char *path = tu_path("data/vq_ref.safetensors");
    st_file f;
    if (st_open(&f, path) != 0) fail_msg("%s", t2i_error_msg());
    vq_config c;
    vq_config_b5(&c);
    strcpy(c.preset, "custom");
    c.width1 = 16, c.width2 = 32, c.res_hidden = 16, c.n_res = 2, c.code_dim = 8, c.n_codes = 32;
    t2i_rng r;
    t2i_rng_seed(&r, 0);
    vq_model m, ref;
    vq_model_build(&m, &c, &r);
    vq_model_build(&ref, &c, &r);
    load_prefixed(&f, &m, "init.");
    load_prefixed(&f, &ref, "final.");
    const int STEPS = 6, B = 4;
    size_t item = 3 * 32 * 32;
    float *xs = read_all(&f, "x", 2 * B * item);
    float *loss = read_all(&f, "loss", STEPS), *recon = read_all(&f, "recon", STEPS);
    float *commit = read_all(&f, "commit", STEPS), *ppl = read_all(&f, "perplexity", STEPS);
    float *used = read_all(&f, "codes_used", STEPS);
    const st_tensor *ti = st_find(&f, "idx");
    assert_non_null(ti);
    int32_t *idx = malloc((size_t)STEPS * B * 64 * sizeof(int32_t));
    assert_int_equal(st_read_i32(&f, ti, idx, (size_t)STEPS * B * 64), 0);

    nn_optim opt = nn_adam(1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    nn_arena a;
    nn_arena_init(&a);
    for (int s = 0; s < STEPS; s++) {
        const float *x = xs + (size_t)(s % 2) * B * item;
        /* vq_train_step, unrolled to see the codes */
        nn_arena_reset(&a);
        nn_params_zero_grad(&m.ps);
        vq_stats st;
        vq_pass p;
        vq_loss_backward(&m, &a, x, B, VQ_RESTART_NONE, 0, NULL, &st, &p);
        int mismatched = 0;
        for (int i = 0; i < B * 64; i++) mismatched += p.idx[i] != idx[s * B * 64 + i];
        if (mismatched) fail_msg("step %d: %d of %d codes differ from PyTorch", s + 1, mismatched, B * 64);
        nn_optim_step(&opt, &m.ps, opt.lr);
        float bc[32], bs[32 * 8];
        vq_ema_update(nn_params_val(&m.ps, m.i_codebook), nn_params_val(&m.ps, m.i_count),
                      nn_params_val(&m.ps, m.i_sum), bc, bs, p.zr, p.idx, (size_t)B * 64, 32, 8, c.decay, c.eps);
        printf("step %d: loss %.6f (torch %.6f) recon %.6f commit %.6f ppl %.3f (torch %.3f) used %d\n", s + 1,
               st.loss, loss[s], st.recon, st.commit, st.perplexity, ppl[s], st.codes_used);
        assert_float_equal(st.loss, loss[s], 1e-4 * loss[s]);
        assert_float_equal(st.recon, recon[s], 1e-4 * recon[s]);
        assert_float_equal(st.commit, commit[s], 1e-4 * commit[s] + 1e-9);
        assert_float_equal(st.perplexity, ppl[s], 1e-4 * ppl[s]);
        assert_int_equal(st.codes_used, (int)used[s]);
    }
    /* every tensor: trainable weights, codebook, EMA count and sum */
    for (int i = 0; i < m.ps.n; i++) {
        const nn_param *p = &m.ps.p[i];
        tu_assert_close(p->name, m.ps.data + p->offset, ref.ps.data + p->offset, p->numel, 1e-4f, 1e-4f);
    }
    /* and the run really moved the weights (a no-op would not pass) */
    vq_model init;
    vq_model_build(&init, &c, &r);
    load_prefixed(&f, &init, "init.");
    int iw = nn_params_find(&m.ps, "dec.18.weight");
    assert_true(tu_max_abs_diff(nn_params_val(&init.ps, iw), nn_params_val(&m.ps, iw), m.ps.p[iw].numel, NULL) >
                1e-3f);
    nn_arena_free(&a);
    free(xs), free(loss), free(recon), free(commit), free(ppl), free(used), free(idx), free(path);
    vq_model_free(&m), vq_model_free(&ref), vq_model_free(&init);
    st_close(&f);
}

/* ----------------------------------------------------------- checkpoints ---- */

static void test_checkpoint(void **state) {
    (void)state;
    vq_config c;
    tiny_config(&c);
    t2i_rng r;
    t2i_rng_seed(&r, 8);
    vq_model m;
    vq_model_build(&m, &c, &r);
    float *cnt = nn_params_val(&m.ps, m.i_count);
    for (int k = 0; k < 16; k++) cnt[k] = 0.5f * k; /* buffers must survive the trip */
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/vq.safetensors", dir);
    assert_int_equal(vq_save(&m, p, "{\"step\":3}", 0), 0);
    vq_model l;
    char *sj = NULL;
    assert_int_equal(vq_load(&l, p, 0, &sj), 0);
    assert_string_equal(sj, "{\"step\":3}");
    assert_memory_equal(&l.cfg, &m.cfg, sizeof m.cfg);
    assert_int_equal(l.ps.total, m.ps.total);
    assert_memory_equal(l.ps.data, m.ps.data, m.ps.total * sizeof(float));
    vq_model_free(&l);
    free(sj);
    /* errors: missing file, a file of another model type */
    char *missing = t2i_asprintf("%s/none.safetensors", dir);
    assert_int_equal(vq_load(&l, missing, 0, NULL), -1);
    assert_non_null(strstr(t2i_error_msg(), "none.safetensors"));
    char *other = t2i_asprintf("%s/other.safetensors", dir);
    nn_ckpt_part part = {&m.ps, "", 0, 0};
    nn_ckpt_meta meta = {"gan", "{}", NULL, NULL, NULL, 0, ST_F32};
    assert_int_equal(nn_ckpt_save(other, &part, 1, &meta), 0);
    assert_int_equal(vq_load(&l, other, 0, NULL), -1);
    assert_non_null(strstr(t2i_error_msg(), "'gan'"));
    /* a NaN or an infinity in any tensor (a damaged or diverged run) is refused by name */
    const nn_param *q = &m.ps.p[m.ps.n - 1];
    float *last = m.ps.data + q->offset, keep = last[q->numel - 1];
    for (int k = 0; k < 2; k++) {
        last[q->numel - 1] = k ? -INFINITY : NAN;
        assert_int_equal(vq_save(&m, p, NULL, 0), 0);
        assert_int_equal(vq_load(&l, p, 0, NULL), -1);
        char want[200];
        snprintf(want, sizeof want, "tensor '%s' holds %s at element %zu", q->name, k ? "an infinity" : "NaN",
                 q->numel - 1);
        if (!strstr(t2i_error_msg(), want)) fail_msg("%s", t2i_error_msg());
    }
    last[q->numel - 1] = keep;
    /* a tensor the config does not describe (here a second copy under "extra.") is refused */
    char *vcfg = vq_config_to_json(&m.cfg);
    nn_ckpt_part two[2] = {{&m.ps, "", 0, 0}, {&m.ps, "extra.", 0, 0}};
    nn_ckpt_meta vmeta = {"vq", vcfg, NULL, NULL, NULL, 0, ST_F32};
    assert_int_equal(nn_ckpt_save(p, two, 2, &vmeta), 0);
    assert_int_equal(vq_load(&l, p, 0, NULL), -1);
    if (!strstr(t2i_error_msg(), "tensor 'extra.") || !strstr(t2i_error_msg(), "is not part of the model"))
        fail_msg("%s", t2i_error_msg());
    free(vcfg);
    tu_rmtree(dir);
    free(dir), free(p), free(missing), free(other);
    vq_model_free(&m);
}

/* ------------------------------------------------------------ codes files ---- */

static void write_codes(const char *path, const int32_t *codes, int n, const int32_t *index, const char *n_codes) {
    st_writer *w = st_writer_new();
    if (n_codes) st_writer_meta(w, "n_codes", n_codes);
    st_writer_meta(w, "source", "fashion-captions:test");
    st_writer_add_raw(w, "codes", ST_I32, 3, (int64_t[]){n, 2, 2}, codes);
    if (index) st_writer_add_raw(w, "index", ST_I32, 1, (int64_t[]){n}, index);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
}

static void test_codes_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/codes.safetensors", dir);
    int32_t codes[12] = {0, 1, 2, 3, 15, 14, 13, 12, 7, 7, 7, 7}, index[3] = {10, 20, 30};
    write_codes(p, codes, 3, index, "16");
    vq_codes c;
    assert_int_equal(vq_codes_load(&c, p), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.grid, 2);
    assert_int_equal(c.n_codes, 16);
    assert_memory_equal(c.codes, codes, sizeof codes);
    assert_memory_equal(c.index, index, sizeof index);
    assert_null(c.labels);
    assert_string_equal(c.source, "fashion-captions:test");
    vq_codes_free(&c);
    /* a code outside the codebook, a missing index, a missing n_codes */
    codes[6] = 16;
    write_codes(p, codes, 3, index, "16");
    assert_int_equal(vq_codes_load(&c, p), -1);
    assert_non_null(strstr(t2i_error_msg(), "item 1 has code 16"));
    codes[6] = 1;
    write_codes(p, codes, 3, NULL, "16");
    assert_int_equal(vq_codes_load(&c, p), -1);
    assert_non_null(strstr(t2i_error_msg(), "'index'"));
    write_codes(p, codes, 3, index, NULL);
    assert_int_equal(vq_codes_load(&c, p), -1);
    assert_non_null(strstr(t2i_error_msg(), "n_codes"));
    tu_rmtree(dir);
    free(dir), free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b5_preset), cmocka_unit_test(test_config_table), cmocka_unit_test(test_nearest),     cmocka_unit_test(test_ema_hand),
        cmocka_unit_test(test_restart),    cmocka_unit_test(test_gradients),   cmocka_unit_test(test_torch_steps),
        cmocka_unit_test(test_checkpoint), cmocka_unit_test(test_codes_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
