/* test_ops_loss.c - the losses (nn/ops_loss.c) against PyTorch: the scalar within the
 * forward tolerance, the gradient within the gradient tolerance (tests/helpers/torchref.h).
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

/* ---------------------------------------------------------------- losses */

static float load_scalar(const char *name) {
    float v;
    assert_int_equal(st_load_f32(&tu_ref, name, &v, 1, SHAPE(1)), 0);
    return v;
}

static void check_loss(const char *what, float got, float want) {
    if (!(fabsf(got - want) <= FWD_ATOL + FWD_RTOL * fabsf(want)))
        fprintf(stderr, "%s: loss %.8g, torch %.8g\n", what, got, want);
    assert_true(fabsf(got - want) <= FWD_ATOL + FWD_RTOL * fabsf(want));
}

/* The gradient is added times `scale`: compare with scale * torch's gradient. */
static void check_scaled_grad(const char *what, const float *dx, const float *rdx, size_t n, float scale) {
    float *want = t2i_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) want[i] = scale * rdx[i];
    tu_close_grad(what, dx, want, n);
    free(want);
}

static void test_losses(void **state) {
    (void)state;
    const float scale = 0.7f;
    /* BCE with per-element targets */
    const st_tensor *t = tu_ref_find("bce.a.x");
    size_t n = t->numel;
    float *x = tu_ref_get("bce.a.x"), *tg = tu_ref_get("bce.a.t"), *rdx = tu_ref_get_shaped(t->ndim, t->shape, "bce.a.dx");
    float *dx = tu_zeros(n);
    float loss = nn_bce_logits(dx, x, tg, n, scale);
    check_loss("bce", loss, load_scalar("bce.a.loss"));
    check_scaled_grad("bce dx", dx, rdx, n, scale);
    check_loss("bce (no grad)", nn_bce_logits(NULL, x, tg, n, 1.0f), load_scalar("bce.a.loss"));
    free(x), free(tg), free(rdx), free(dx);

    /* BCE against the constant 0.9 (label smoothing) */
    t = tu_ref_find("bce.const09.x");
    n = t->numel;
    x = tu_ref_get("bce.const09.x"), rdx = tu_ref_get_shaped(t->ndim, t->shape, "bce.const09.dx"), dx = tu_zeros(n);
    loss = nn_bce_logits_const(dx, x, 0.9f, n, scale);
    check_loss("bce const 0.9", loss, load_scalar("bce.const09.loss"));
    check_scaled_grad("bce const 0.9 dx", dx, rdx, n, scale);
    free(x), free(rdx), free(dx);

    /* cross-entropy, mean over non-ignored positions, and the weighted sum */
    t = tu_ref_find("ce.mean.x");
    size_t N = (size_t)t->shape[0];
    int V = (int)t->shape[1];
    static const char *const ce_cases[2] = {"ce.mean", "ce.weighted"};
    for (int c = 0; c < 2; c++) {
        const char *p = ce_cases[c];
        char label[64];
        x = tu_ref_get("%s.x", p), rdx = tu_ref_get_shaped(2, SHAPE((int64_t)N, V), "%s.dx", p), dx = tu_zeros(N * V);
        int32_t *tgt = tu_ref_get_ids("%s.t", p);
        int ignored = 0;
        for (size_t i = 0; i < N; i++) ignored += tgt[i] == -100;
        assert_true(ignored > 0); /* the case exercises ignore_index */
        float *w = c ? tu_ref_get_shaped(1, SHAPE((int64_t)N), "%s.w", p) : NULL;
        char lname[64];
        snprintf(lname, sizeof lname, "%s.loss", p);
        loss = nn_cross_entropy(dx, x, (const int *)tgt, w, N, V, -100, scale);
        check_loss(p, loss, load_scalar(lname));
        snprintf(label, sizeof label, "%s dx", p);
        check_scaled_grad(label, dx, rdx, N * V, scale);
        free(x), free(rdx), free(dx), free(tgt), free(w);
    }

    /* MSE and L1 of x against t (gradient with respect to x) */
    static const char *const reg_cases[2] = {"mse.a", "l1.a"};
    for (int c = 0; c < 2; c++) {
        const char *p = reg_cases[c];
        char label[64], lname[64];
        t = tu_ref_find("%s.x", p);
        n = t->numel;
        x = tu_ref_get("%s.x", p), tg = tu_ref_get("%s.t", p), rdx = tu_ref_get_shaped(t->ndim, t->shape, "%s.dx", p), dx = tu_zeros(n);
        loss = c ? nn_l1(dx, x, tg, n, scale) : nn_mse(dx, x, tg, n, scale);
        snprintf(lname, sizeof lname, "%s.loss", p);
        check_loss(p, loss, load_scalar(lname));
        snprintf(label, sizeof label, "%s dx", p);
        check_scaled_grad(label, dx, rdx, n, scale);
        free(x), free(tg), free(rdx), free(dx);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_losses),
    };
    return cmocka_run_group_tests(tests, tu_ref_setup, tu_ref_teardown);
}
