/* test_ops_attention.c - softmax and attention (nn/ops_attention.c) against PyTorch, and
 * at production sizes against the naive references of nn/ops_ref.c.
 *
 * Reference data and tolerances: tests/helpers/torchref.h. Input shapes are read from the
 * file; output shapes are computed by our shape functions and must match the stored ones
 * (st_load_f32 checks), so a wrong output-size formula fails too.
 * Backward kernels add into gradients: buffers are zeroed first, then a second backward
 * call into the same buffers must double every gradient.
 *
 * Production-size checks (random data, no torch): attention at B2 size (B 2, T 80, C 256,
 * 8 heads) causal and full, the KV-cached attention fed a prefill then single positions
 * (and one 3-position chunk) against the full causal forward (head sizes 32 and 30,
 * vector loops with and without AVX2).
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
#include "safetensors.h"
#include "testutil.h"
#include "torchref.h"

static void test_softmax(void **state) {
    (void)state;
    const st_tensor *tx = tu_ref_find("softmax.a.x");
    size_t N = (size_t)tx->shape[0];
    int C = (int)tx->shape[1];
    size_t n = tx->numel;
    float *x = tu_ref_get("softmax.a.x"), *dy = tu_ref_get("softmax.a.dy");
    float *ry = tu_ref_get_shaped(2, tx->shape, "softmax.a.y"), *rdx = tu_ref_get_shaped(2, tx->shape, "softmax.a.dx");
    float *y = tu_zeros(n), *dx = tu_zeros(n);
    nn_softmax_forward(y, x, N, C);
    tu_close_fwd("softmax y", y, ry, n);
    nn_softmax_backward(dx, dy, y, N, C);
    tu_close_grad("softmax dx", dx, rdx, n);
    nn_softmax_backward(dx, dy, y, N, C);
    tu_close_twice("softmax dx", dx, rdx, n);
    free(x), free(dy), free(ry), free(rdx), free(y), free(dx);
}

/* ---------------------------------------------------------------- attention */

static void test_attention(void **state) {
    (void)state;
    const int NH = 3; /* attention_core(..., NH=3) in the script */
    static const char *const names[2] = {"causal", "full"};
    for (int causal = 1; causal >= 0; causal--) {
        const char *nm = names[1 - causal];
        const st_tensor *tq = tu_ref_find("attn.%s.qkv", nm);
        int B = (int)tq->shape[0], T = (int)tq->shape[1], C = (int)tq->shape[2] / 3;
        size_t nq = tq->numel, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
        char label[96];
        float *qkv = tu_ref_get("attn.%s.qkv", nm), *dy = tu_ref_get("attn.%s.dy", nm);
        float *ry = tu_ref_get_shaped(3, SHAPE(B, T, C), "attn.%s.y", nm);
        float *ratt = tu_ref_get_shaped(4, SHAPE(B, NH, T, T), "attn.%s.att", nm);
        float *rdq = tu_ref_get_shaped(3, tq->shape, "attn.%s.dqkv", nm);
        float *y = tu_zeros(no), *att = tu_zeros(na), *dq = tu_zeros(nq);
        float *scratch = tu_zeros(nn_attention_scratch(B, T, C, NH));
        nn_attention_forward(y, att, scratch, qkv, B, T, C, NH, causal);
        snprintf(label, sizeof label, "attention %s y", nm);
        tu_close_fwd(label, y, ry, no);
        snprintf(label, sizeof label, "attention %s probabilities", nm);
        tu_close_fwd(label, att, ratt, na);
        nn_attention_backward(dq, scratch, dy, qkv, att, B, T, C, NH);
        snprintf(label, sizeof label, "attention %s dqkv", nm);
        tu_close_grad(label, dq, rdq, nq);
        nn_attention_backward(dq, scratch, dy, qkv, att, B, T, C, NH);
        tu_close_twice(label, dq, rdq, nq);
        free(qkv), free(dy), free(ry), free(ratt), free(rdq), free(y), free(att), free(dq), free(scratch);
    }
}

/* nn.MultiheadAttention = out_proj(core(in_proj(x))): in_proj_weight (3C, C) holds the
 * q, k, v rows in that order, which must match the qkv column order of our kernel. */
static void test_multihead_attention(void **state) {
    (void)state;
    const int NH = 3;
    static const char *const names[2] = {"full", "causal"};
    for (int causal = 0; causal <= 1; causal++) {
        const char *nm = names[causal];
        const st_tensor *tx = tu_ref_find("mha.%s.x", nm);
        int B = (int)tx->shape[0], T = (int)tx->shape[1], C = (int)tx->shape[2];
        size_t N = (size_t)B * T, nx = N * C;
        char label[96];
        float *x = tu_ref_get("mha.%s.x", nm), *dy = tu_ref_get("mha.%s.dy", nm);
        float *iw = tu_ref_get_shaped(2, SHAPE(3 * C, C), "mha.%s.in_w", nm);
        float *ib = tu_ref_get_shaped(1, SHAPE(3 * C), "mha.%s.in_b", nm);
        float *ow = tu_ref_get_shaped(2, SHAPE(C, C), "mha.%s.out_w", nm);
        float *ob = tu_ref_get_shaped(1, SHAPE(C), "mha.%s.out_b", nm);
        float *ry = tu_ref_get_shaped(3, tx->shape, "mha.%s.y", nm), *rdx = tu_ref_get_shaped(3, tx->shape, "mha.%s.dx", nm);
        float *rdiw = tu_ref_get_shaped(2, SHAPE(3 * C, C), "mha.%s.din_w", nm);
        float *rdib = tu_ref_get_shaped(1, SHAPE(3 * C), "mha.%s.din_b", nm);
        float *rdow = tu_ref_get_shaped(2, SHAPE(C, C), "mha.%s.dout_w", nm);
        float *rdob = tu_ref_get_shaped(1, SHAPE(C), "mha.%s.dout_b", nm);

        float *qkv = tu_zeros(3 * nx), *o = tu_zeros(nx), *y = tu_zeros(nx), *att = tu_zeros((size_t)B * NH * T * T);
        float *scratch = tu_zeros(nn_attention_scratch(B, T, C, NH));
        float *dqkv = tu_zeros(3 * nx), *dO = tu_zeros(nx), *dx = tu_zeros(nx);
        float *diw = tu_zeros((size_t)3 * C * C), *dib = tu_zeros(3 * (size_t)C), *dow = tu_zeros((size_t)C * C);
        float *dob = tu_zeros(C);
        nn_linear_forward(qkv, x, iw, ib, N, C, 3 * C);
        nn_attention_forward(o, att, scratch, qkv, B, T, C, NH, causal);
        nn_linear_forward(y, o, ow, ob, N, C, C);
        snprintf(label, sizeof label, "MultiheadAttention %s y", nm);
        tu_close_fwd(label, y, ry, nx);
        nn_linear_backward(dO, dow, dob, dy, o, ow, N, C, C);
        nn_attention_backward(dqkv, scratch, dO, qkv, att, B, T, C, NH);
        nn_linear_backward(dx, diw, dib, dqkv, x, iw, N, C, 3 * C);
        snprintf(label, sizeof label, "MultiheadAttention %s dx", nm);
        tu_close_grad(label, dx, rdx, nx);
        snprintf(label, sizeof label, "MultiheadAttention %s d in_proj_weight", nm);
        tu_close_grad(label, diw, rdiw, (size_t)3 * C * C);
        snprintf(label, sizeof label, "MultiheadAttention %s d in_proj_bias", nm);
        tu_close_grad(label, dib, rdib, 3 * (size_t)C);
        snprintf(label, sizeof label, "MultiheadAttention %s d out_proj.weight", nm);
        tu_close_grad(label, dow, rdow, (size_t)C * C);
        snprintf(label, sizeof label, "MultiheadAttention %s d out_proj.bias", nm);
        tu_close_grad(label, dob, rdob, C);
        free(x), free(dy), free(iw), free(ib), free(ow), free(ob), free(ry), free(rdx), free(rdiw);
        free(rdib), free(rdow), free(rdob), free(qkv), free(o), free(y), free(att), free(scratch);
        free(dqkv), free(dO), free(dx), free(diw), free(dib), free(dow), free(dob);
    }
}

/* B2 attention: B 2, T 80, C 256, 8 heads. */
static void test_big_attention(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 104);
    const int B = 2, T = 80, C = 256, NH = 8;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    /* std 0.8: scores q.k / sqrt(hs) have std ~0.64, so the softmax is far from uniform */
    float *qkv = tu_randn(&r, nq, 0.8f);
    float *y = tu_zeros(no), *ry = tu_zeros(no), *att = tu_zeros((size_t)B * NH * T * T);
    float *scratch = tu_zeros(nn_attention_scratch(B, T, C, NH));
    for (int causal = 0; causal <= 1; causal++) {
        nn_attention_forward(y, att, scratch, qkv, B, T, C, NH, causal);
        nn_ref_attention_forward(ry, qkv, B, T, C, NH, causal);
        tu_assert_close(causal ? "big attention causal" : "big attention full", y, ry, no, 1e-5f, 1e-4f);
    }
    free(qkv), free(y), free(ry), free(att), free(scratch);
}

/* Incremental decoding through the KV cache must reproduce the full causal forward row by
 * row: prefill 16 positions, then single positions, a chunk of 3 at position 40 (loops)
 * and a chunk of 5 at position 60 (GEMMs over a filled cache, masked within the chunk).
 * Head sizes: 32 (B2: the vector loops' 32-float blocks, AVX2 and baseline), 40 (their
 * 8-float tail) and 30 (the scalar loops). */
static void check_attention_cache(int C, int NH, int no_avx2) {
    t2i_rng r;
    t2i_rng_seed(&r, 105);
    const int B = 2, T = 80, hs = C / NH, C3 = 3 * C;
    size_t nq = (size_t)B * T * C3, no = (size_t)B * T * C;
    float *qkv = tu_randn(&r, nq, 0.8f);
    float *full = tu_zeros(no), *att = tu_zeros((size_t)B * NH * T * T);
    float *scratch = tu_zeros(nn_attention_scratch(B, T, C, NH));
    nn_attention_forward(full, att, scratch, qkv, B, T, C, NH, 1);

    nn_kv_cache cache = {B, NH, T, hs, 0, tu_zeros((size_t)B * NH * T * hs), tu_zeros((size_t)B * NH * T * hs)};
    float *chunk = tu_zeros((size_t)B * 16 * C3), *out = tu_zeros((size_t)B * 16 * C);
    float *cscratch = tu_zeros(nn_attention_cached_scratch(B, 16, T, NH));
    if (no_avx2) setenv("T2I_NO_AVX2", "1", 1);
    int pos = 0;
    while (pos < T) {
        int Tn = pos == 0 ? 16 : pos == 40 ? 3 : pos == 60 ? 5 : 1;
        for (int b = 0; b < B; b++)
            memcpy(chunk + (size_t)b * Tn * C3, qkv + ((size_t)b * T + pos) * C3, (size_t)Tn * C3 * sizeof(float));
        nn_attention_cached_forward(out, cscratch, &cache, chunk, Tn);
        assert_int_equal(cache.len, pos + Tn);
        for (int b = 0; b < B; b++) {
            char label[96];
            snprintf(label, sizeof label, "cached attention hs %d%s b%d positions %d..%d", hs,
                     no_avx2 ? " (baseline)" : "", b, pos, pos + Tn - 1);
            tu_assert_close(label, out + (size_t)b * Tn * C, full + ((size_t)b * T + pos) * C, (size_t)Tn * C,
                            1e-5f, 1e-4f);
        }
        pos += Tn;
    }
    unsetenv("T2I_NO_AVX2");
    free(qkv), free(full), free(att), free(scratch), free(cache.k), free(cache.v), free(chunk), free(out);
    free(cscratch);
}

static void test_attention_cache(void **state) {
    (void)state;
    check_attention_cache(256, 8, 0);
    check_attention_cache(256, 8, 1);
    check_attention_cache(320, 8, 0);
    check_attention_cache(320, 8, 1);
    check_attention_cache(240, 8, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_multihead_attention),
        cmocka_unit_test(test_big_attention),
        cmocka_unit_test(test_attention_cache),
    };
    return cmocka_run_group_tests(tests, tu_ref_setup, tu_ref_teardown);
}
