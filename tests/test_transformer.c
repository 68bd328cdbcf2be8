/* test_transformer.c - the pre-LN transformer stack: gradients of the input and every
 * parameter by central differences (causal and full attention, QuickGELU and exact GELU),
 * inference mode equal to the taped forward, and the key/value-cached forward equal to
 * the full causal forward position by position, with BLAS products and with packed
 * weights (nn_tf_pack). Step 1e-2, tolerance 3e-3 + 3e-2 rel. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "testutil.h"
#include "transformer.h"

typedef struct {
    nn_transformer *tf;
    nn_arena *a;
    int B, T, C;
    float *x, *dx, *y, *dy;
} tf_ctx;

static void tf_fwd(void *p) {
    tf_ctx *c = p;
    nn_arena_reset(c->a);
    nn_tf_tape t;
    float *y = nn_tf_forward(c->tf, &t, c->a, c->x, c->B, c->T);
    memcpy(c->y, y, (size_t)c->B * c->T * c->C * sizeof(float));
}

static void tf_bwd(void *p) {
    tf_ctx *c = p;
    nn_arena_reset(c->a);
    nn_tf_tape t;
    nn_tf_forward(c->tf, &t, c->a, c->x, c->B, c->T);
    float *dx = nn_tf_backward(c->tf, &t, c->a, c->dy);
    size_t n = (size_t)c->B * c->T * c->C;
    for (size_t i = 0; i < n; i++) c->dx[i] += dx[i];
}

static void build(nn_transformer *tf, nn_params *ps, int causal, nn_act act, int L) {
    nn_params_init(ps);
    nn_tf_config cfg = {L, 8, 2, 4, act, causal, 1e-5f};
    nn_tf_init(tf, ps, "transformer", &cfg);
    nn_params_alloc(ps);
    t2i_rng r;
    t2i_rng_seed(&r, 11);
    nn_tf_init_params(tf, &r, NN_TF_INIT_CLIP);
    /* non-trivial LayerNorm affine terms and biases */
    for (int i = 0; i < ps->n; i++)
        if (strstr(ps->p[i].name, "bias") || strstr(ps->p[i].name, "ln_"))
            for (size_t k = 0; k < ps->p[i].numel; k++) nn_params_val(ps, i)[k] += 0.2f * t2i_rng_normal(&r);
}

static void check(const char *what, int causal, nn_act act) {
    nn_params ps;
    nn_transformer tf;
    build(&tf, &ps, causal, act, 2);
    nn_arena a;
    nn_arena_init(&a);
    t2i_rng r;
    t2i_rng_seed(&r, 5);
    tf_ctx c = {&tf, &a, 2, 5, 8};
    size_t n = 2 * 5 * 8;
    c.x = tu_randn(&r, n, 1.0f), c.dx = tu_zeros(n), c.y = tu_zeros(n), c.dy = tu_zeros(n);
    tu_var vars[32];
    int nv = 0;
    vars[nv++] = (tu_var){"x", c.x, c.dx, n};
    for (int i = 0; i < ps.n; i++) vars[nv++] = (tu_var){ps.p[i].name, nn_params_val(&ps, i), nn_params_grad(&ps, i), ps.p[i].numel};
    assert_int_equal(tu_gradcheck(what, &c, tf_fwd, tf_bwd, vars, nv, c.y, c.dy, n, 1e-2f, 3e-3f, 3e-2f), 0);
    /* inference path: same numbers */
    nn_arena_reset(&a);
    float *yi = nn_tf_forward(&tf, NULL, &a, c.x, 2, 5);
    tu_assert_close("inference == taped", yi, c.y, n, 1e-6f, 1e-6f);
    free(c.x), free(c.dx), free(c.y), free(c.dy);
    nn_arena_free(&a);
    nn_tf_free(&tf);
    nn_params_free(&ps);
}

static void test_grad_causal_quickgelu(void **s) {
    (void)s;
    check("causal quickgelu", 1, NN_ACT_QUICK_GELU);
}
static void test_grad_full_gelu(void **s) {
    (void)s;
    check("full gelu", 0, NN_ACT_GELU_ERF);
}

static void test_kv_cache(void **s) {
    (void)s;
    nn_params ps;
    nn_transformer tf;
    build(&tf, &ps, 1, NN_ACT_GELU_ERF, 3);
    int B = 3, T = 9, C = 8;
    t2i_rng r;
    t2i_rng_seed(&r, 6);
    float *x = tu_randn(&r, (size_t)B * T * C, 1.0f);
    nn_arena a;
    nn_arena_init(&a);
    float *full = nn_tf_forward(&tf, NULL, &a, x, B, T);
    float *ref = tu_zeros((size_t)B * T * C);
    memcpy(ref, full, (size_t)B * T * C * sizeof(float));
    /* with the BLAS products, then with the packed weights of decoding */
    float *chunk = tu_zeros((size_t)B * 4 * C);
    for (int packed = 0; packed < 2; packed++) {
        if (packed) {
            /* from here on only the packed copies may be used: zero the originals */
            nn_tf_pack(&tf);
            static const int mats[] = {NN_TF_QKVW, NN_TF_PROJW, NN_TF_FCW, NN_TF_FCPW};
            for (int l = 0; l < tf.cfg.n_layer; l++)
                for (int k = 0; k < 4; k++) {
                    int ix = tf.idx[l][mats[k]];
                    memset(nn_params_val(&ps, ix), 0, ps.p[ix].numel * sizeof(float));
                }
        }
        nn_tf_cache cache;
        nn_tf_cache_init(&cache, &tf, B, T);
        /* prefill 4 positions, then one at a time */
        for (int pos = 0; pos < T;) {
            int tn = pos == 0 ? 4 : 1;
            for (int b = 0; b < B; b++)
                memcpy(chunk + (size_t)b * tn * C, x + ((size_t)b * T + pos) * C, (size_t)tn * C * sizeof(float));
            nn_arena_reset(&a);
            float *y = nn_tf_forward_cached(&tf, &cache, &a, chunk, tn);
            for (int b = 0; b < B; b++)
                tu_assert_close(packed ? "cached (packed) == full" : "cached == full", y + (size_t)b * tn * C,
                                ref + ((size_t)b * T + pos) * C, (size_t)tn * C, 2e-5f, 1e-4f);
            pos += tn;
        }
        assert_int_equal(cache.layer[0].len, T);
        nn_tf_cache_free(&cache);
    }
    assert_non_null(tf.packed); /* freed by nn_tf_free */
    free(x), free(ref), free(chunk);
    nn_arena_free(&a);
    nn_tf_free(&tf);
    nn_params_free(&ps);
}

/* nn_tf_pack_forward: an inference forward (no tape) reads the packed copies - with the
 * originals zeroed it still gives the unpacked result, within rounding -, a training
 * forward (with a tape) still reads the parameters, and nn_tf_unpack goes back to them. */
static void test_packed_forward(void **s) {
    (void)s;
    nn_params ps;
    nn_transformer tf;
    build(&tf, &ps, 1, NN_ACT_QUICK_GELU, 2);
    int B = 2, T = 7, C = 8;
    size_t n = (size_t)B * T * C;
    t2i_rng r;
    t2i_rng_seed(&r, 9);
    float *x = tu_randn(&r, n, 1.0f), *ref = tu_zeros(n), *y = tu_zeros(n);
    nn_arena a;
    nn_arena_init(&a);
    memcpy(ref, nn_tf_forward(&tf, NULL, &a, x, B, T), n * sizeof(float));
    nn_tf_pack_forward(&tf);
    static const int mats[] = {NN_TF_QKVW, NN_TF_PROJW, NN_TF_FCW, NN_TF_FCPW};
    for (int l = 0; l < tf.cfg.n_layer; l++)
        for (int k = 0; k < 4; k++) {
            int ix = tf.idx[l][mats[k]];
            memset(nn_params_val(&ps, ix), 0, ps.p[ix].numel * sizeof(float));
        }
    nn_arena_reset(&a);
    tu_assert_close("packed inference == unpacked", nn_tf_forward(&tf, NULL, &a, x, B, T), ref, n, 2e-5f, 1e-4f);
    /* a training pass reads the (now zero) parameters: far from ref */
    nn_tf_tape tape;
    memset(&tape, 0, sizeof tape);
    nn_arena_reset(&a);
    memcpy(y, nn_tf_forward(&tf, &tape, &a, x, B, T), n * sizeof(float));
    double d = 0;
    for (size_t i = 0; i < n; i++) d += fabs(y[i] - ref[i]);
    assert_true(d / n > 1e-2);
    nn_tf_unpack(&tf);
    assert_int_equal(tf.packed_forward, 0);
    nn_arena_reset(&a);
    assert_memory_equal(nn_tf_forward(&tf, NULL, &a, x, B, T), y, n * sizeof(float));
    free(x), free(ref), free(y);
    nn_arena_free(&a);
    nn_tf_free(&tf);
    nn_params_free(&ps);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_causal_quickgelu),
        cmocka_unit_test(test_grad_full_gelu),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_packed_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
