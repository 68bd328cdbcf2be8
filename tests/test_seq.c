/* test_seq.c - whole sequential networks (residual blocks, conditional BatchNorm,
 * spectral norm, GroupNorm, dropout, reshapes) against finite differences, for the input,
 * the conditioning vector and every parameter; plus SN against a power-iteration-free
 * SVD bound, and the frozen flag. Step h = 2e-3 (BatchNorm over few items is curved enough
 * that 1e-2 leaves truncation error), tolerances 3e-3 + 3e-2 relative (smooth activations only,
 * so x +- h never crosses a kink). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "seq.h"
#include "testutil.h"

typedef struct {
    nn_seq *s;
    nn_arena *a;
    int N, training;
    float *x, *dx, *cond, *dcond, *y, *dy;
    size_t ny;
    uint64_t drop_seed;
} net_ctx;

static void net_fwd(void *p) {
    net_ctx *c = p;
    nn_arena_reset(c->a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    t2i_rng r;
    t2i_rng_seed(&r, c->drop_seed);
    t.rng = &r;
    t.cond = c->cond;
    float *y = nn_seq_forward(c->s, &t, c->a, c->x, c->N, c->training);
    memcpy(c->y, y, c->ny * sizeof(float));
}

static void net_bwd(void *p) {
    net_ctx *c = p;
    nn_arena_reset(c->a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    t2i_rng r;
    t2i_rng_seed(&r, c->drop_seed);
    t.rng = &r;
    t.cond = c->cond;
    t.dcond = c->dcond;
    nn_seq_forward(c->s, &t, c->a, c->x, c->N, c->training);
    float *dx = nn_seq_backward(c->s, &t, c->a, c->dy, 1);
    for (size_t i = 0; i < (size_t)c->N * c->s->in_C * c->s->in_H * c->s->in_W; i++) c->dx[i] += dx[i];
}

static void check_net(const char *what, nn_seq *s, nn_params *ps, int N, int cond_dim, int training) {
    nn_arena a;
    nn_arena_init(&a);
    t2i_rng r;
    t2i_rng_seed(&r, 99);
    size_t nx = (size_t)N * s->in_C * s->in_H * s->in_W;
    net_ctx c = {s, &a, N, training};
    c.x = tu_randn(&r, nx, 1.0f);
    c.dx = tu_zeros(nx);
    c.ny = (size_t)N * nn_seq_out_size(s);
    c.y = tu_zeros(c.ny);
    c.dy = tu_zeros(c.ny);
    c.drop_seed = 5;
    if (cond_dim) {
        c.cond = tu_randn(&r, (size_t)N * cond_dim, 1.0f);
        c.dcond = tu_zeros((size_t)N * cond_dim);
    }
    tu_var vars[64];
    int nv = 0;
    vars[nv++] = (tu_var){"x", c.x, c.dx, nx};
    if (cond_dim) vars[nv++] = (tu_var){"cond", c.cond, c.dcond, (size_t)N * cond_dim};
    for (int i = 0; i < ps->n && nv < 64; i++)
        if (ps->p[i].trainable) vars[nv++] = (tu_var){ps->p[i].name, nn_params_val(ps, i), nn_params_grad(ps, i), ps->p[i].numel};
    assert_int_equal(tu_gradcheck(what, &c, net_fwd, net_bwd, vars, nv, c.y, c.dy, c.ny, 2e-3f, 3e-3f, 3e-2f), 0);
    free(c.x), free(c.dx), free(c.y), free(c.dy), free(c.cond), free(c.dcond);
    nn_arena_free(&a);
}

static void test_residual_bn(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq s;
    nn_seq_init(&s, &ps, "net", 3, 6, 6);
    nn_seq_conv(&s, 4, 3, 1, 1, 1);
    nn_seq_bn(&s);
    nn_seq_act(&s, NN_ACT_SILU, 0);
    nn_seq_res_begin(&s);
    nn_seq_conv(&s, 4, 3, 1, 1, 0);
    nn_seq_act(&s, NN_ACT_TANH, 0);
    nn_seq_res_begin(&s); /* nested block */
    nn_seq_conv(&s, 4, 1, 1, 0, 1);
    nn_seq_res_end(&s, 1.0f);
    nn_seq_res_end(&s, 0.5f);
    nn_seq_avgpool(&s, 2);
    nn_seq_linear(&s, 3, 1);
    nn_seq_act(&s, NN_ACT_TANH, 0);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    nn_seq_init_params(&s, &r, NN_INIT_PYTORCH);
    check_net("residual+bn", &s, &ps, 3, 0, 1);
    nn_params_free(&ps);
}

static void test_cbn_generator(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq s;
    nn_seq_init(&s, &ps, "g", 6, 1, 1);
    nn_seq_linear(&s, 4 * 2 * 2, 1);
    nn_seq_reshape(&s, 4, 2, 2);
    nn_seq_cbn(&s, 5);
    nn_seq_act(&s, NN_ACT_GELU_ERF, 0);
    nn_seq_convt(&s, 8, 4, 2, 1, 0, 1);
    nn_seq_cbn(&s, 5);
    nn_seq_act(&s, NN_ACT_SILU, 0);
    nn_seq_pixel_shuffle(&s, 2);
    nn_seq_upsample(&s, 2);
    nn_seq_conv(&s, 1, 3, 2, 1, 1);
    nn_seq_act(&s, NN_ACT_TANH, 0);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 2);
    /* PyTorch init, not N(0, 0.02): tiny pre-BatchNorm activations would make the
     * normalisation strongly nonlinear at the finite-difference step */
    nn_seq_init_params(&s, &r, NN_INIT_PYTORCH);
    /* CBN projections start at 0; give them values so their gradients matter */
    for (int i = 0; i < ps.n; i++)
        if (strstr(ps.p[i].name, "gain") || strstr(ps.p[i].name, "bias.weight"))
            t2i_rng_fill_normal(&r, nn_params_val(&ps, i), ps.p[i].numel, 0.0f, 0.3f);
    check_net("cbn generator", &s, &ps, 4, 5, 1);
    nn_params_free(&ps);
}

static void test_sn_gn_dropout(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq s;
    nn_seq_init(&s, &ps, "d", 2, 5, 5);
    s.sn_next = 1;
    nn_seq_conv(&s, 4, 3, 2, 1, 1);
    nn_seq_gn(&s, 2);
    nn_seq_act(&s, NN_ACT_GELU_TANH, 0);
    nn_seq_dropout(&s, 0.25f);
    s.sn_next = 1;
    nn_seq_linear(&s, 2, 1);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    nn_seq_init_params(&s, &r, NN_INIT_PYTORCH);
    /* run a few training forwards so u, v converge, then check gradients with u, v
     * frozen (eval-mode SN) and dropout active through the tape's rng */
    nn_arena a;
    nn_arena_init(&a);
    float *x = tu_randn(&r, 2 * 50, 1.0f);
    for (int it = 0; it < 30; it++) {
        nn_tape t;
        memset(&t, 0, sizeof t);
        t.rng = &r;
        nn_arena_reset(&a);
        nn_seq_forward(&s, &t, &a, x, 2, 1);
    }
    /* sigma must now be the largest singular value of the conv weight (4 x 18): check
     * ||W v|| = sigma and that no random unit vector is stretched more */
    const float *w = nn_params_val(&ps, s.L[0].iw);
    const float *v = nn_params_val(&ps, s.L[0].iv);
    double sig2 = 0;
    for (int i = 0; i < 4; i++) {
        double d = 0;
        for (int j = 0; j < 18; j++) d += w[i * 18 + j] * v[j];
        sig2 += d * d;
    }
    for (int trial = 0; trial < 200; trial++) {
        float u[18];
        double n2 = 0, s2 = 0;
        for (int j = 0; j < 18; j++) u[j] = t2i_rng_normal(&r), n2 += u[j] * u[j];
        for (int i = 0; i < 4; i++) {
            double d = 0;
            for (int j = 0; j < 18; j++) d += w[i * 18 + j] * u[j];
            s2 += d * d;
        }
        assert_true(s2 / n2 <= sig2 * 1.001);
    }
    free(x);
    nn_arena_free(&a);
    check_net("sn+gn+dropout (eval SN)", &s, &ps, 2, 0, 0);
    nn_params_free(&ps);
}

static void test_frozen(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq s;
    nn_seq_init(&s, &ps, "d", 1, 4, 4);
    nn_seq_conv(&s, 2, 3, 1, 1, 1);
    nn_seq_bn(&s);
    nn_seq_act(&s, NN_ACT_LEAKY_RELU, 0.2f);
    nn_seq_linear(&s, 1, 1);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 4);
    nn_seq_init_params(&s, &r, NN_INIT_PYTORCH);
    nn_arena a;
    nn_arena_init(&a);
    float *x = tu_randn(&r, 3 * 16, 1.0f), dy[3] = {1, -1, 0.5f};
    nn_tape t;
    memset(&t, 0, sizeof t);
    nn_seq_forward(&s, &t, &a, x, 3, 1);
    s.frozen = 1;
    nn_params_zero_grad(&ps);
    float *dx = nn_seq_backward(&s, &t, &a, dy, 1);
    for (size_t i = 0; i < ps.total; i++) assert_true(ps.grad[i] == 0.0f);
    double sum = 0;
    for (int i = 0; i < 48; i++) sum += fabs(dx[i]);
    assert_true(sum > 1e-3); /* but the input gradient is there */
    /* running statistics moved from (0, 1) after one training forward */
    const float *rm = nn_params_val(&ps, s.L[1].irm);
    assert_true(fabsf(rm[0]) > 1e-4f);
    free(x);
    nn_arena_free(&a);
    nn_params_free(&ps);
}

/* Inner-output gradients (nn_seq_backward_ex): L = <dy, y> + <e1, h1> + <e3, h3>, with h1
 * and h3 the outputs of the two activations, against finite differences for the input and
 * every parameter; then the backward pass is run twice on one tape (gradients doubled) and
 * the caller's dout buffers are left unchanged. The net: conv, tanh (h1), a stride-2 conv,
 * SiLU (h3), linear: smooth, so no kink is crossed. */
typedef struct {
    nn_seq *s;
    nn_arena *a;
    int N;
    float *x, *dx, *out, *dout; /* out = [y; h1; h3] */
    size_t ny, n1, n3;
} ex_ctx;

static void ex_fwd(void *p) {
    ex_ctx *c = p;
    nn_arena_reset(c->a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    float *y = nn_seq_forward(c->s, &t, c->a, c->x, c->N, 1);
    memcpy(c->out, y, c->ny * sizeof(float));
    memcpy(c->out + c->ny, t.out[1], c->n1 * sizeof(float));
    memcpy(c->out + c->ny + c->n1, t.out[3], c->n3 * sizeof(float));
}

static void ex_bwd(void *p) {
    ex_ctx *c = p;
    nn_arena_reset(c->a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    nn_seq_forward(c->s, &t, c->a, c->x, c->N, 1);
    const float *extra[NN_SEQ_MAX] = {0};
    extra[1] = c->dout + c->ny, extra[3] = c->dout + c->ny + c->n1;
    float *dx = nn_seq_backward_ex(c->s, &t, c->a, c->dout, 1, extra);
    for (size_t i = 0; i < (size_t)c->N * 2 * 6 * 6; i++) c->dx[i] += dx[i];
}

static void test_inner_grads(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq s;
    nn_seq_init(&s, &ps, "d", 2, 6, 6);
    nn_seq_conv(&s, 3, 3, 1, 1, 1);
    nn_seq_act(&s, NN_ACT_TANH, 0);
    nn_seq_conv(&s, 4, 4, 2, 1, 1);
    nn_seq_act(&s, NN_ACT_SILU, 0);
    nn_seq_linear(&s, 2, 1);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 8);
    nn_seq_init_params(&s, &r, NN_INIT_PYTORCH);
    nn_arena a;
    nn_arena_init(&a);
    const int N = 3;
    size_t nx = (size_t)N * 2 * 6 * 6;
    ex_ctx c = {&s, &a, N};
    c.ny = (size_t)N * 2, c.n1 = (size_t)N * 3 * 6 * 6, c.n3 = (size_t)N * 4 * 3 * 3;
    size_t nout = c.ny + c.n1 + c.n3;
    c.x = tu_randn(&r, nx, 1.0f), c.dx = tu_zeros(nx);
    c.out = tu_zeros(nout), c.dout = tu_zeros(nout);
    tu_var vars[16];
    int nv = 0;
    vars[nv++] = (tu_var){"x", c.x, c.dx, nx};
    for (int i = 0; i < ps.n; i++)
        if (ps.p[i].trainable)
            vars[nv++] = (tu_var){ps.p[i].name, nn_params_val(&ps, i), nn_params_grad(&ps, i), ps.p[i].numel};
    int bad = tu_gradcheck("inner grads", &c, ex_fwd, ex_bwd, vars, nv, c.out, c.dout, nout, 2e-3f, 3e-3f, 3e-2f);
    assert_int_equal(bad, 0);
    /* twice on one tape: twice the gradients; dout untouched */
    float *keep = tu_zeros(nout);
    for (size_t i = 0; i < nout; i++) c.dout[i] = (float)((int)(i % 7) - 3) * 0.25f;
    memcpy(keep, c.dout, nout * sizeof(float));
    nn_arena_reset(&a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    nn_seq_forward(&s, &t, &a, c.x, N, 1);
    const float *extra[NN_SEQ_MAX] = {0};
    extra[1] = c.dout + c.ny, extra[3] = c.dout + c.ny + c.n1;
    nn_params_zero_grad(&ps);
    float *d1 = nn_seq_backward_ex(&s, &t, &a, c.dout, 1, extra);
    float *once = tu_zeros(nx), *g1 = tu_zeros(ps.total);
    memcpy(once, d1, nx * sizeof(float));
    memcpy(g1, ps.grad, ps.total * sizeof(float));
    float *d2 = nn_seq_backward_ex(&s, &t, &a, c.dout, 1, extra);
    for (size_t i = 0; i < nx; i++) assert_float_equal(d2[i], once[i], 1e-6);
    for (size_t i = 0; i < ps.total; i++) assert_float_equal(ps.grad[i], 2 * g1[i], 1e-5 + 1e-5 * fabs(g1[i]));
    assert_memory_equal(keep, c.dout, nout * sizeof(float));
    /* and without the extra terms, a different input gradient (the terms are not ignored) */
    float *d3 = nn_seq_backward(&s, &t, &a, c.dout, 1);
    double diff = 0;
    for (size_t i = 0; i < nx; i++) diff += fabs(d3[i] - once[i]);
    assert_true(diff > 1e-3);
    free(keep), free(once), free(g1), free(c.x), free(c.dx), free(c.out), free(c.dout);
    nn_arena_free(&a);
    nn_params_free(&ps);
}

/* One training pass with the memory plan (in-place ReLU, pooled gradient buffers) and one
 * with tape.keep_all: output, input gradient and every parameter gradient equal bit for
 * bit, the caller's dy unchanged, and the planned pass needs less arena. The network has
 * what the plan treats specially: ReLU and LeakyReLU after convolutions, BatchNorm, a pixel
 * shuffle, a residual sum and a dropout; ReLU right after a RES_BEGIN (whose input is the
 * skip, so it must not run in place); nested blocks with scales 1 and 0.5; a final ReLU. */
static float *plan_pass(nn_seq *s, nn_params *ps, nn_arena *a, const float *x, const float *dy, int N, int keep_all,
                        float **dx_out, size_t *peak) {
    nn_arena_reset(a);
    a->peak = a->live;
    nn_params_zero_grad(ps);
    t2i_rng r;
    t2i_rng_seed(&r, 11);
    nn_tape t;
    memset(&t, 0, sizeof t);
    t.rng = &r;
    t.keep_all = keep_all;
    float *y = nn_seq_forward(s, &t, a, x, N, 1);
    size_t ny = (size_t)N * nn_seq_out_size(s);
    float *yc = tu_zeros(ny);
    memcpy(yc, y, ny * sizeof(float));
    float *dx = nn_seq_backward(s, &t, a, dy, 1);
    size_t nx = (size_t)N * s->in_C * s->in_H * s->in_W;
    *dx_out = tu_zeros(nx);
    memcpy(*dx_out, dx, nx * sizeof(float));
    *peak = a->peak;
    return yc;
}

static void test_memory_plan(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq s;
    nn_seq_init(&s, &ps, "p", 3, 8, 8);
    nn_seq_conv(&s, 8, 3, 1, 1, 1);
    nn_seq_act(&s, NN_ACT_LEAKY_RELU, 0.2f);
    nn_seq_res_begin(&s);
    nn_seq_act(&s, NN_ACT_RELU, 0); /* input is the skip (with negative values): not in place */
    nn_seq_conv(&s, 8, 3, 1, 1, 1);
    nn_seq_bn(&s);
    nn_seq_act(&s, NN_ACT_LEAKY_RELU, 0.1f);
    nn_seq_res_begin(&s);
    nn_seq_conv(&s, 8, 3, 1, 1, 0);
    nn_seq_res_end(&s, 1.0f);
    nn_seq_dropout(&s, 0.3f);
    nn_seq_act(&s, NN_ACT_RELU, 0);
    nn_seq_conv(&s, 8, 3, 1, 1, 1);
    nn_seq_res_end(&s, 0.5f);
    nn_seq_act(&s, NN_ACT_RELU, 0);
    nn_seq_conv(&s, 16, 3, 1, 1, 1);
    nn_seq_pixel_shuffle(&s, 2);
    nn_seq_act(&s, NN_ACT_RELU, 0);
    nn_seq_conv(&s, 3, 3, 1, 1, 1);
    nn_seq_act(&s, NN_ACT_RELU, 0);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 8);
    nn_seq_init_params(&s, &r, NN_INIT_PYTORCH);
    int N = 32;
    nn_set_conv_block_floats(2048); /* so that activations, not convolution scratch, fill the arena */
    size_t nx = (size_t)N * 3 * 64, ny = (size_t)N * nn_seq_out_size(&s);
    float *x = tu_randn(&r, nx, 1.0f), *dy = tu_randn(&r, ny, 1.0f), *dy0 = tu_zeros(ny);
    memcpy(dy0, dy, ny * sizeof(float));
    /* the running statistics move in each pass: start both from the same values */
    float *vals = tu_zeros(ps.total);
    memcpy(vals, ps.data, ps.total * sizeof(float));
    nn_arena a;
    nn_arena_init(&a);
    float *dxp, *dxk;
    size_t peak_p, peak_k;
    float *yp = plan_pass(&s, &ps, &a, x, dy, N, 0, &dxp, &peak_p);
    float *gp = tu_zeros(ps.total);
    memcpy(gp, ps.grad, ps.total * sizeof(float));
    memcpy(ps.data, vals, ps.total * sizeof(float));
    float *yk = plan_pass(&s, &ps, &a, x, dy, N, 1, &dxk, &peak_k);
    assert_memory_equal(yp, yk, ny * sizeof(float));
    assert_memory_equal(dxp, dxk, nx * sizeof(float));
    assert_memory_equal(gp, ps.grad, ps.total * sizeof(float));
    assert_memory_equal(dy, dy0, ny * sizeof(float));
    double g2 = 0;
    for (size_t i = 0; i < ps.total; i++) g2 += (double)gp[i] * gp[i];
    assert_true(g2 > 1e-6); /* gradients are there, not zeros on both sides */
    assert_true(peak_p < peak_k * 3 / 4);
    nn_set_conv_block_floats(0);
    free(x), free(dy), free(dy0), free(vals), free(dxp), free(dxk), free(yp), free(yk), free(gp);
    nn_arena_free(&a);
    nn_params_free(&ps);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_bn),
        cmocka_unit_test(test_cbn_generator),
        cmocka_unit_test(test_sn_gn_dropout),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_memory_plan),
        cmocka_unit_test(test_inner_grads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
