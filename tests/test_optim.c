/* test_optim.c - optimizers, clipping, schedules, EMA and initialisation against values
 * computed by hand (the derivations are in the comments; Python float64 confirmed the
 * digits). One scalar parameter w = 1 receives the gradients 0.5, -0.25, 0.125. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "optim.h"
#include "testutil.h"

static const float grads[3] = {0.5f, -0.25f, 0.125f};

/* Store with: "w" trainable scalar, "frozen" buffer, "nd" trainable but no_decay. */
static void make_store(nn_params *ps) {
    nn_params_init(ps);
    int one[1] = {1};
    nn_params_add(ps, "w", 1, one, NN_TRAIN);
    nn_params_add(ps, "frozen", 1, one, NN_BUFFER);
    int nd = nn_params_add(ps, "nd", 1, one, NN_TRAIN);
    ps->p[nd].no_decay = 1;
    nn_params_alloc(ps);
    for (int i = 0; i < 3; i++) nn_params_val(ps, i)[0] = 1.0f;
}

static void run3(nn_optim *o, nn_params *ps, float *after) {
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < 3; i++) nn_params_grad(ps, i)[0] = grads[t];
        nn_optim_step(o, ps, o->lr);
        after[t] = nn_params_val(ps, 0)[0];
    }
}

static void test_sgd(void **state) {
    (void)state;
    /* lr 0.1, momentum 0.9, wd 0.01. Step 1: g = 0.5 + 0.01 = 0.51, buf = 0.51,
     * w = 1 - 0.051 = 0.949. Step 2: g = -0.25 + 0.00949 = -0.24051,
     * buf = 0.459 - 0.24051 = 0.21849, w = 0.927151. Step 3 likewise: 0.894059749. */
    nn_params ps;
    make_store(&ps);
    nn_optim o = nn_sgd(0.1f, 0.9f, 0.01f);
    float w[3];
    run3(&o, &ps, w);
    assert_float_equal(w[0], 0.949, 1e-6);
    assert_float_equal(w[1], 0.927151, 1e-6);
    assert_float_equal(w[2], 0.894059749, 1e-6);
    assert_true(nn_params_val(&ps, 1)[0] == 1.0f); /* buffers are not optimised */
    assert_int_equal(o.step, 3);
    nn_params_free(&ps);
}

static void test_adam(void **state) {
    (void)state;
    /* lr 0.1, betas (0.9, 0.999), eps 1e-8, L2 wd 0.1 added to the gradient.
     * Step 1: g = 0.6, m = 0.06, v = 0.00036, mhat = 0.6, vhat = 0.36,
     * w = 1 - 0.1 * 0.6 / (0.6 + 1e-8) = 0.9000000017. */
    nn_params ps;
    make_store(&ps);
    nn_optim o = nn_adam(0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
    float w[3];
    run3(&o, &ps, w);
    assert_float_equal(w[0], 0.9000000017, 1e-6);
    assert_float_equal(w[1], 0.8544413675, 1e-6);
    assert_float_equal(w[2], 0.8005694721, 1e-6);
    nn_params_free(&ps);
}

static void test_adamw(void **state) {
    (void)state;
    /* Same with decoupled decay: w *= 1 - lr*wd = 0.99 before each Adam update.
     * Step 1: w = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.890000002. */
    nn_params ps;
    make_store(&ps);
    nn_optim o = nn_adamw(0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
    float w[3];
    run3(&o, &ps, w);
    assert_float_equal(w[0], 0.890000002, 1e-6);
    assert_float_equal(w[1], 0.8544662987, 1e-6);
    assert_float_equal(w[2], 0.8118787219, 1e-6);
    /* the no_decay parameter follows plain Adam without decay: step 1 gives 0.9 */
    nn_params ps2;
    make_store(&ps2);
    nn_optim o2 = nn_adamw(0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
    for (int i = 0; i < 3; i++) nn_params_grad(&ps2, i)[0] = 0.5f;
    nn_optim_step(&o2, &ps2, 0.1f);
    assert_float_equal(nn_params_val(&ps2, 2)[0], 0.9, 1e-6);
    assert_float_equal(nn_params_val(&ps2, 0)[0], 0.89, 1e-6);
    nn_params_free(&ps);
    nn_params_free(&ps2);
}

static void test_clip(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    int two[1] = {2}, one[1] = {1};
    nn_params_add(&ps, "a", 1, two, NN_TRAIN);
    nn_params_add(&ps, "buf", 1, one, NN_BUFFER);
    nn_params_alloc(&ps);
    float *g = nn_params_grad(&ps, 0);
    g[0] = 3.0f, g[1] = 4.0f;
    nn_params_grad(&ps, 1)[0] = 100.0f; /* buffers do not count */
    float norm = nn_clip_grad_norm(&ps, 1.0f);
    assert_float_equal(norm, 5.0, 1e-6);
    assert_float_equal(g[0], 0.6, 1e-6);
    assert_float_equal(g[1], 0.8, 1e-6);
    /* under the limit: unchanged */
    norm = nn_clip_grad_norm(&ps, 10.0f);
    assert_float_equal(norm, 1.0, 1e-5);
    assert_float_equal(g[0], 0.6, 1e-6);
    nn_params_free(&ps);
}

static void test_schedules(void **state) {
    (void)state;
    nn_schedule c = nn_schedule_constant(3e-4f);
    assert_float_equal(nn_schedule_lr(&c, 12345), 3e-4, 1e-12);
    nn_schedule s = nn_schedule_cosine(1.0f, 10, 110, 0.1f);
    assert_float_equal(nn_schedule_lr(&s, 0), 0.1, 1e-6);  /* 1/10 of the way up */
    assert_float_equal(nn_schedule_lr(&s, 4), 0.5, 1e-6);
    assert_float_equal(nn_schedule_lr(&s, 10), 1.0, 1e-6); /* top of the cosine */
    assert_float_equal(nn_schedule_lr(&s, 60), 0.55, 1e-6); /* halfway: min + (max-min)/2 */
    assert_float_equal(nn_schedule_lr(&s, 110), 0.1, 1e-6);
    assert_float_equal(nn_schedule_lr(&s, 500), 0.1, 1e-6);
    assert_true(nn_schedule_lr(&s, 35) > nn_schedule_lr(&s, 36));
}

static void test_ema(void **state) {
    (void)state;
    nn_params a, e;
    make_store(&a);
    make_store(&e);
    nn_params_val(&a, 0)[0] = 3.0f;
    nn_params_val(&a, 1)[0] = 7.0f;
    nn_ema_update(&e, &a, 0.9f);
    assert_float_equal(nn_params_val(&e, 0)[0], 0.9 * 1 + 0.1 * 3, 1e-6);
    assert_float_equal(nn_params_val(&e, 1)[0], 7.0, 0); /* buffers are copied */
    nn_params_free(&a);
    nn_params_free(&e);
}

static void test_init(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    size_t n = 100000;
    float *w = malloc(n * sizeof(float));
    nn_init_pytorch_uniform(w, n, 25, &r); /* bound 1/sqrt(25) = 0.2 */
    double s = 0, ss = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        s += w[i], ss += (double)w[i] * w[i];
        if (fabs(w[i]) > mx) mx = fabs(w[i]);
    }
    assert_true(mx <= 0.2 && mx > 0.199);
    assert_float_equal(sqrt(ss / n), 0.2 / sqrt(3.0), 0.002); /* std of U(-b, b) */
    assert_float_equal(s / n, 0.0, 0.002);
    nn_init_normal(w, n, 0.0f, 0.02f, &r);
    s = ss = 0;
    for (size_t i = 0; i < n; i++) s += w[i], ss += (double)w[i] * w[i];
    assert_float_equal(sqrt(ss / n), 0.02, 0.0003);
    free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),  cmocka_unit_test(test_adam),      cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_clip), cmocka_unit_test(test_schedules), cmocka_unit_test(test_ema),
        cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
