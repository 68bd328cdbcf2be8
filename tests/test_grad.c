/* test_grad.c - every layer's backward against central finite differences.
 *
 * See testutil.h for the method. Tolerances: h = 1e-2 and |analytic - numeric| <=
 * 2e-3 + 2e-2 |numeric| unless a test says otherwise; inputs of piecewise-linear ops are
 * kept at least 0.05 away from their kinks so that x +- h never crosses one.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "ops.h"
#include "testutil.h"

#define STEP 1e-2f
#define ATOL 2e-3f
#define RTOL 2e-2f

static t2i_rng rng;

static void away_from_zero(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 0.05f) x[i] = x[i] < 0 ? x[i] - 0.05f : x[i] + 0.05f;
}

/* ---------------------------------------------------------------- Linear */
typedef struct {
    size_t N;
    int IN, OUT;
    float *x, *w, *b, *y, *dx, *dw, *db, *dy;
} lin_ctx;
static void lin_fwd(void *p) {
    lin_ctx *c = p;
    nn_linear_forward(c->y, c->x, c->w, c->b, c->N, c->IN, c->OUT);
}
static void lin_bwd(void *p) {
    lin_ctx *c = p;
    nn_linear_backward(c->dx, c->dw, c->db, c->dy, c->x, c->w, c->N, c->IN, c->OUT);
}
static void test_linear(void **state) {
    (void)state;
    lin_ctx c = {5, 7, 4};
    c.x = tu_randn(&rng, c.N * c.IN, 1);
    c.w = tu_randn(&rng, (size_t)c.OUT * c.IN, 0.5f);
    c.b = tu_randn(&rng, c.OUT, 0.5f);
    c.y = tu_zeros(c.N * c.OUT);
    c.dy = tu_zeros(c.N * c.OUT);
    c.dx = tu_zeros(c.N * c.IN);
    c.dw = tu_zeros((size_t)c.OUT * c.IN);
    c.db = tu_zeros(c.OUT);
    tu_var v[] = {{"x", c.x, c.dx, c.N * c.IN}, {"w", c.w, c.dw, (size_t)c.OUT * c.IN}, {"b", c.b, c.db, c.OUT}};
    assert_int_equal(tu_gradcheck("linear", &c, lin_fwd, lin_bwd, v, 3, c.y, c.dy, c.N * c.OUT, STEP, ATOL, RTOL), 0);
    /* backward accumulates: a second call doubles the gradients */
    float db0 = c.db[0];
    lin_bwd(&c);
    assert_float_equal(c.db[0], 2 * db0, 1e-5);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.dy), free(c.dx), free(c.dw), free(c.db);
}

/* ---------------------------------------------------------------- Conv2d / ConvTranspose2d */
typedef struct {
    nn_conv s;
    int transpose;
    float *x, *w, *b, *y, *dx, *dw, *db, *dy, *scratch;
} conv_ctx;
static void conv_fwd(void *p) {
    conv_ctx *c = p;
    if (c->transpose) nn_conv_transpose2d_forward(c->y, c->scratch, c->x, c->w, c->b, &c->s);
    else nn_conv2d_forward(c->y, c->scratch, c->x, c->w, c->b, &c->s);
}
static void conv_bwd(void *p) {
    conv_ctx *c = p;
    if (c->transpose) nn_conv_transpose2d_backward(c->dx, c->dw, c->db, c->scratch, c->dy, c->x, c->w, &c->s);
    else nn_conv2d_backward(c->dx, c->dw, c->db, c->scratch, c->dy, c->x, c->w, &c->s);
}
static void check_conv(const char *what, nn_conv s, int transpose) {
    conv_ctx c = {s, transpose};
    size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
    size_t nw = (size_t)s.C * s.OC * s.KH * s.KW;
    c.x = tu_randn(&rng, nx, 1);
    c.w = tu_randn(&rng, nw, 0.3f);
    c.b = tu_randn(&rng, s.OC, 0.3f);
    c.y = tu_zeros(ny);
    c.dy = tu_zeros(ny);
    c.dx = tu_zeros(nx);
    c.dw = tu_zeros(nw);
    c.db = tu_zeros(s.OC);
    c.scratch = tu_zeros(transpose ? nn_conv_transpose2d_scratch(&s) : nn_conv2d_scratch(&s));
    tu_var v[] = {{"x", c.x, c.dx, nx}, {"w", c.w, c.dw, nw}, {"b", c.b, c.db, s.OC}};
    assert_int_equal(tu_gradcheck(what, &c, conv_fwd, conv_bwd, v, 3, c.y, c.dy, ny, STEP, ATOL, RTOL), 0);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.dy), free(c.dx), free(c.dw), free(c.db), free(c.scratch);
}
static void test_conv2d(void **state) {
    (void)state;
    check_conv("conv k3 s1 p1", nn_conv2d_shape(2, 3, 6, 5, 4, 3, 1, 1), 0);
    check_conv("conv k4 s2 p1", nn_conv2d_shape(2, 2, 8, 8, 3, 4, 2, 1), 0);
    check_conv("conv k1 s1 p0", nn_conv2d_shape(3, 4, 3, 3, 2, 1, 1, 0), 0);
    check_conv("conv k3 s1 p0", nn_conv2d_shape(2, 2, 6, 7, 3, 3, 1, 0), 0);
    check_conv("conv k5 s1 p2", nn_conv2d_shape(2, 2, 5, 6, 3, 5, 1, 2), 0);
    check_conv("conv k3 s2 p0", nn_conv2d_shape(1, 2, 7, 6, 3, 3, 2, 0), 0);
    /* tiny blocks: bands of one or two output rows instead of whole images */
    nn_set_conv_block_floats(1);
    check_conv("conv k3 s1 p1 bands", nn_conv2d_shape(3, 2, 5, 5, 3, 3, 1, 1), 0);
    nn_set_conv_block_floats(0);
}
/* Forward values against a direct sum over taps: shapes with and without padding, stride
 * 1 and 2, odd and even kernels, blocks of whole images and (block 1) bands of rows. */
static void check_conv_direct(nn_conv s, size_t block) {
    t2i_rng r;
    t2i_rng_seed(&r, 11);
    size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
    float *x = tu_randn(&r, nx, 1.0f), *w = tu_randn(&r, (size_t)s.OC * s.C * s.KH * s.KW, 1.0f);
    float *b = tu_randn(&r, (size_t)s.OC, 1.0f), *y = tu_zeros(ny);
    nn_set_conv_block_floats(block);
    float *scratch = tu_zeros(nn_conv2d_scratch(&s));
    nn_conv2d_forward(y, scratch, x, w, b, &s);
    nn_set_conv_block_floats(0);
    double worst = 0;
    for (int n = 0; n < s.N; n++)
        for (int o = 0; o < s.OC; o++)
            for (int oh = 0; oh < s.OH; oh++)
                for (int ow = 0; ow < s.OW; ow++) {
                    double acc = b[o];
                    for (int c = 0; c < s.C; c++)
                        for (int kh = 0; kh < s.KH; kh++)
                            for (int kw = 0; kw < s.KW; kw++) {
                                int ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
                                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                acc += (double)w[((o * s.C + c) * s.KH + kh) * s.KW + kw] *
                                       x[((size_t)(n * s.C + c) * s.H + ih) * s.W + iw];
                            }
                    double d = fabs(acc - y[(((size_t)n * s.OC + o) * s.OH + oh) * s.OW + ow]);
                    if (d > worst) worst = d;
                }
    assert_true(worst < 1e-4);
    free(x), free(w), free(b), free(y), free(scratch);
}

static void test_conv2d_direct(void **state) {
    (void)state;
    check_conv_direct(nn_conv2d_shape(3, 5, 9, 7, 6, 3, 1, 1), 0);
    check_conv_direct(nn_conv2d_shape(3, 5, 9, 7, 6, 3, 1, 1), 1);
    check_conv_direct(nn_conv2d_shape(2, 4, 8, 9, 3, 3, 1, 0), 0);
    check_conv_direct(nn_conv2d_shape(2, 4, 8, 9, 3, 4, 1, 2), 1);
    check_conv_direct(nn_conv2d_shape(2, 3, 6, 6, 5, 1, 1, 0), 0);
    check_conv_direct(nn_conv2d_shape(2, 3, 9, 8, 5, 4, 2, 1), 0);
}

static void test_conv_transpose2d(void **state) {
    (void)state;
    check_conv("convT k4 s2 p1", nn_conv_transpose2d_shape(2, 3, 4, 4, 2, 4, 2, 1, 0), 1);
    check_conv("convT k3 s1 p1", nn_conv_transpose2d_shape(2, 2, 5, 4, 3, 3, 1, 1, 0), 1);
    check_conv("convT k3 s2 p1 op1", nn_conv_transpose2d_shape(1, 2, 3, 3, 2, 3, 2, 1, 1), 1);
    nn_set_conv_block_floats(1);
    check_conv("convT k4 s2 p1 bands", nn_conv_transpose2d_shape(3, 2, 3, 3, 2, 4, 2, 1, 0), 1);
    nn_set_conv_block_floats(0);
}

/* ---------------------------------------------------------------- norms */
typedef struct {
    int kind; /* 0 batch, 1 layer, 2 group */
    int N, C, S, G;
    float *x, *g, *b, *y, *dx, *dg, *db, *dy, *mean, *rstd, *rm, *rv;
} norm_ctx;
static void norm_fwd(void *p) {
    norm_ctx *c = p;
    if (c->kind == 0)
        nn_batchnorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, c->rm, c->rv, c->N, c->C, c->S, 1e-5f, 0.1f, 1);
    else if (c->kind == 1)
        nn_layernorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, (size_t)c->N * c->S, c->C, 1e-5f);
    else
        nn_groupnorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, c->S, c->G, 1e-5f);
}
static void norm_bwd(void *p) {
    norm_ctx *c = p;
    if (c->kind == 0)
        nn_batchnorm_backward(c->dx, c->dg, c->db, c->dy, c->x, c->g, c->mean, c->rstd, c->N, c->C, c->S);
    else if (c->kind == 1)
        nn_layernorm_backward(c->dx, c->dg, c->db, c->dy, c->x, c->g, c->mean, c->rstd, (size_t)c->N * c->S, c->C);
    else
        nn_groupnorm_backward(c->dx, c->dg, c->db, c->dy, c->x, c->g, c->mean, c->rstd, c->N, c->C, c->S, c->G);
}
static void check_norm(const char *what, int kind, int N, int C, int S, int G) {
    norm_ctx c = {kind, N, C, S, G};
    size_t n = (size_t)N * C * S;
    c.x = tu_randn(&rng, n, 1.5f);
    for (size_t i = 0; i < n; i++) c.x[i] += 0.7f; /* a non-zero mean must be removed */
    c.g = tu_randn(&rng, C, 0.5f);
    for (int i = 0; i < C; i++) c.g[i] += 1.0f;
    c.b = tu_randn(&rng, C, 0.5f);
    c.y = tu_zeros(n), c.dy = tu_zeros(n), c.dx = tu_zeros(n);
    c.dg = tu_zeros(C), c.db = tu_zeros(C);
    c.mean = tu_zeros(n), c.rstd = tu_zeros(n);
    c.rm = tu_zeros(C), c.rv = tu_zeros(C);
    tu_var v[] = {{"x", c.x, c.dx, n}, {"gamma", c.g, c.dg, C}, {"beta", c.b, c.db, C}};
    assert_int_equal(tu_gradcheck(what, &c, norm_fwd, norm_bwd, v, 3, c.y, c.dy, n, STEP, ATOL, RTOL), 0);
    free(c.x), free(c.g), free(c.b), free(c.y), free(c.dy), free(c.dx), free(c.dg), free(c.db);
    free(c.mean), free(c.rstd), free(c.rm), free(c.rv);
}
static void test_norms(void **state) {
    (void)state;
    check_norm("batchnorm2d", 0, 4, 3, 5, 1);
    check_norm("batchnorm1d", 0, 6, 4, 1, 1);
    check_norm("layernorm", 1, 3, 8, 2, 1); /* (N*S) rows of C */
    check_norm("groupnorm", 2, 2, 6, 4, 3);
    check_norm("groupnorm G=1", 2, 2, 4, 3, 1);
}

/* ---------------------------------------------------------------- activations */
typedef struct {
    nn_act act;
    float slope;
    size_t n;
    float *x, *y, *dx, *dy;
} act_ctx;
static void act_fwd(void *p) {
    act_ctx *c = p;
    nn_act_forward(c->y, c->x, c->n, c->act, c->slope);
}
static void act_bwd(void *p) {
    act_ctx *c = p;
    nn_act_backward(c->dx, c->dy, c->x, c->n, c->act, c->slope);
}
static void test_activations(void **state) {
    (void)state;
    for (int a = NN_ACT_RELU; a <= NN_ACT_SIGMOID; a++) {
        act_ctx c = {(nn_act)a, 0.2f, 64};
        c.x = tu_randn(&rng, c.n, 2.0f);
        away_from_zero(c.x, c.n);
        c.y = tu_zeros(c.n), c.dx = tu_zeros(c.n), c.dy = tu_zeros(c.n);
        tu_var v[] = {{"x", c.x, c.dx, c.n}};
        assert_int_equal(tu_gradcheck(nn_act_name(c.act), &c, act_fwd, act_bwd, v, 1, c.y, c.dy, c.n, STEP, ATOL, RTOL), 0);
        /* in-place form: dinp == dout gives dout * act'(x) */
        float *d = tu_randn(&rng, c.n, 1.0f), *ref = tu_zeros(c.n);
        nn_act_backward(ref, d, c.x, c.n, c.act, c.slope);
        nn_act_backward(d, d, c.x, c.n, c.act, c.slope);
        tu_assert_close("in-place act backward", d, ref, c.n, 0, 0);
        free(d), free(ref);
        free(c.x), free(c.y), free(c.dx), free(c.dy);
    }
}

/* ---------------------------------------------------------------- softmax */
typedef struct {
    size_t N;
    int C;
    float *x, *y, *dx, *dy;
} sm_ctx;
static void sm_fwd(void *p) {
    sm_ctx *c = p;
    nn_softmax_forward(c->y, c->x, c->N, c->C);
}
static void sm_bwd(void *p) {
    sm_ctx *c = p;
    nn_softmax_backward(c->dx, c->dy, c->y, c->N, c->C);
}
static void test_softmax(void **state) {
    (void)state;
    sm_ctx c = {4, 7};
    size_t n = c.N * c.C;
    c.x = tu_randn(&rng, n, 2.0f), c.y = tu_zeros(n), c.dx = tu_zeros(n), c.dy = tu_zeros(n);
    tu_var v[] = {{"x", c.x, c.dx, n}};
    assert_int_equal(tu_gradcheck("softmax", &c, sm_fwd, sm_bwd, v, 1, c.y, c.dy, n, STEP, ATOL, RTOL), 0);
    free(c.x), free(c.y), free(c.dx), free(c.dy);
}

/* ---------------------------------------------------------------- embedding */
typedef struct {
    size_t N;
    int V, C;
    int *ids;
    float *w, *y, *dw, *dy;
} emb_ctx;
static void emb_fwd(void *p) {
    emb_ctx *c = p;
    nn_embedding_forward(c->y, c->ids, c->w, c->N, c->V, c->C);
}
static void emb_bwd(void *p) {
    emb_ctx *c = p;
    nn_embedding_backward(c->dw, c->dy, c->ids, c->N, c->V, c->C);
}
static void test_embedding(void **state) {
    (void)state;
    int ids[] = {3, 1, 3, 0, 4, 3}; /* repeats must accumulate */
    emb_ctx c = {6, 5, 4, ids};
    c.w = tu_randn(&rng, 20, 1), c.y = tu_zeros(24), c.dw = tu_zeros(20), c.dy = tu_zeros(24);
    tu_var v[] = {{"w", c.w, c.dw, 20}};
    assert_int_equal(tu_gradcheck("embedding", &c, emb_fwd, emb_bwd, v, 1, c.y, c.dy, 24, STEP, ATOL, RTOL), 0);
    /* row 2 is never used: its gradient is exactly zero */
    for (int j = 0; j < 4; j++) assert_true(c.dw[2 * 4 + j] == 0.0f);
    free(c.w), free(c.y), free(c.dw), free(c.dy);
}

/* ---------------------------------------------------------------- structural ops */
typedef struct {
    int op; /* 0 pixel shuffle, 1 upsample, 2 avgpool, 3 concat, 4 add, 5 dropout */
    int N, C, Hh, W, r;
    size_t nx, nx2, ny;
    float *x, *x2, *y, *dx, *dx2, *dy, *mask;
} st_ctx;
static void st_fwd(void *p) {
    st_ctx *c = p;
    switch (c->op) {
    case 0: nn_pixel_shuffle_forward(c->y, c->x, c->N, c->C, c->Hh, c->W, c->r); break;
    case 1: nn_upsample_nearest_forward(c->y, c->x, c->N, c->C, c->Hh, c->W, c->r); break;
    case 2: nn_avgpool2d_forward(c->y, c->x, c->N, c->C, c->Hh, c->W, c->r, c->r); break;
    case 3: nn_concat_forward(c->y, c->x, c->x2, c->N, c->C, c->r, c->Hh * c->W); break;
    case 4: nn_add_forward(c->y, c->x, c->x2, c->nx); break;
    case 5: {
        t2i_rng r;
        t2i_rng_seed(&r, 7); /* the same mask on every call */
        nn_dropout_forward(c->y, c->mask, c->x, c->nx, 0.3f, &r);
        break;
    }
    }
}
static void st_bwd(void *p) {
    st_ctx *c = p;
    switch (c->op) {
    case 0: nn_pixel_shuffle_backward(c->dx, c->dy, c->N, c->C, c->Hh, c->W, c->r); break;
    case 1: nn_upsample_nearest_backward(c->dx, c->dy, c->N, c->C, c->Hh, c->W, c->r); break;
    case 2: nn_avgpool2d_backward(c->dx, c->dy, c->N, c->C, c->Hh, c->W, c->r, c->r); break;
    case 3: nn_concat_backward(c->dx, c->dx2, c->dy, c->N, c->C, c->r, c->Hh * c->W); break;
    case 4: nn_add_inplace(c->dx, c->dy, c->nx), nn_add_inplace(c->dx2, c->dy, c->nx); break;
    case 5: nn_dropout_backward(c->dx, c->dy, c->mask, c->nx); break;
    }
}
static void check_struct(const char *what, int op, int N, int C, int Hh, int W, int r) {
    st_ctx c = {op, N, C, Hh, W, r};
    c.nx = (size_t)N * C * Hh * W * (op == 0 ? r * r : 1); /* pixel shuffle: C is the output's */
    c.nx2 = op == 3 ? (size_t)N * r * Hh * W : c.nx;
    switch (op) {
    case 0: c.ny = c.nx; break;
    case 1: c.ny = c.nx * r * r; break;
    case 2: c.ny = (size_t)N * C * ((Hh - r) / r + 1) * ((W - r) / r + 1); break;
    case 3: c.ny = c.nx + c.nx2; break;
    default: c.ny = c.nx; break;
    }
    c.x = tu_randn(&rng, c.nx, 1), c.x2 = tu_randn(&rng, c.nx2, 1);
    c.dx = tu_zeros(c.nx), c.dx2 = tu_zeros(c.nx2), c.y = tu_zeros(c.ny), c.dy = tu_zeros(c.ny);
    c.mask = tu_zeros(c.nx);
    tu_var v[] = {{"x", c.x, c.dx, c.nx}, {"x2", c.x2, c.dx2, c.nx2}};
    int nv = (op == 3 || op == 4) ? 2 : 1;
    assert_int_equal(tu_gradcheck(what, &c, st_fwd, st_bwd, v, nv, c.y, c.dy, c.ny, STEP, ATOL, RTOL), 0);
    free(c.x), free(c.x2), free(c.dx), free(c.dx2), free(c.y), free(c.dy), free(c.mask);
}
static void test_structural(void **state) {
    (void)state;
    check_struct("pixel_shuffle", 0, 2, 2, 3, 2, 2);
    check_struct("upsample_nearest", 1, 2, 3, 3, 2, 2);
    check_struct("avgpool", 2, 2, 2, 6, 4, 2);
    check_struct("concat", 3, 2, 3, 2, 2, 2);
    check_struct("add", 4, 2, 3, 2, 2, 1);
    check_struct("dropout", 5, 2, 3, 4, 4, 1);
}

/* ---------------------------------------------------------------- GAN D helpers */
typedef struct {
    int op; /* 0 minibatch stddev, 1 augmentation */
    int N, C, H, W, G;
    size_t nx, ny;
    float *x, *y, *dx, *dy, *sd;
    nn_aug_item *aug;
} gd_ctx;
static void gd_fwd(void *p) {
    gd_ctx *c = p;
    if (c->op == 0) nn_mbstd_forward(c->y, c->sd, c->x, c->N, c->C, c->H * c->W, c->G);
    else nn_augment_forward(c->y, c->x, c->aug, c->N, c->C, c->H, c->W);
}
static void gd_bwd(void *p) {
    gd_ctx *c = p;
    if (c->op == 0) nn_mbstd_backward(c->dx, c->dy, c->x, c->sd, c->N, c->C, c->H * c->W, c->G);
    else nn_augment_backward(c->dx, c->dy, c->aug, c->N, c->C, c->H, c->W);
}
static void check_gd(const char *what, int op, int N, int C, int H, int W, int G, int policy) {
    gd_ctx c = {op, N, C, H, W, G};
    c.nx = (size_t)N * C * H * W;
    c.ny = op == 0 ? (size_t)N * (C + 1) * H * W : c.nx;
    c.x = tu_randn(&rng, c.nx, 1), c.dx = tu_zeros(c.nx), c.y = tu_zeros(c.ny), c.dy = tu_zeros(c.ny);
    c.sd = tu_zeros(c.nx);
    c.aug = calloc((size_t)N, sizeof *c.aug);
    nn_augment_draw(c.aug, N, H, W, policy, &rng);
    tu_var v[] = {{"x", c.x, c.dx, c.nx}};
    assert_int_equal(tu_gradcheck(what, &c, gd_fwd, gd_bwd, v, 1, c.y, c.dy, c.ny, STEP, ATOL, RTOL), 0);
    /* backward adds: a second call doubles the gradient */
    float *g1 = tu_zeros(c.nx);
    memcpy(g1, c.dx, c.nx * sizeof(float));
    gd_bwd(&c);
    for (size_t i = 0; i < c.nx; i++) assert_float_equal(c.dx[i], 2 * g1[i], 1e-5 + 1e-5 * fabsf(g1[i]));
    free(g1), free(c.x), free(c.dx), free(c.y), free(c.dy), free(c.sd), free(c.aug);
}
static void test_gan_d_ops(void **state) {
    (void)state;
    check_gd("mbstd", 0, 8, 3, 2, 2, 4, 0);
    check_gd("mbstd_whole_batch", 0, 5, 2, 3, 1, 5, 0);
    for (int rep = 0; rep < 3; rep++) {
        check_gd("augment_rgb", 1, 4, 3, 8, 8, 1, NN_AUG_COLOR | NN_AUG_TRANSLATION | NN_AUG_CUTOUT);
        check_gd("augment_gray", 1, 4, 1, 7, 9, 1, NN_AUG_COLOR | NN_AUG_TRANSLATION | NN_AUG_CUTOUT);
        check_gd("augment_colour", 1, 3, 3, 4, 4, 1, NN_AUG_COLOR);
    }

    /* values by hand. mbstd: two items of two features, (1, 3) and (3, 3): deviations
     * over the group 1 and sqrt(1e-8) -> m = (1 + 1e-4) / 2 on the extra channel */
    float x[4] = {1, 3, 3, 3}, y[8], sd[2];
    nn_mbstd_forward(y, sd, x, 2, 1, 2, 2);
    const float want_mb[8] = {1, 3, 0.50005f, 0.50005f, 3, 3, 0.50005f, 0.50005f};
    for (int i = 0; i < 8; i++) assert_float_equal(y[i], want_mb[i], 1e-6);

    /* augmentation: a 1x3x4 image shifted right by one and down by one, a 2x2 box cut at
     * column 2, row 1; brightness +0.5 and contrast 2 around the mean */
    float img[12], out[12];
    for (int i = 0; i < 12; i++) img[i] = (float)i;
    nn_aug_item a = {0};
    a.sat = 1, a.contrast = 1, a.tx = 1, a.ty = 1;
    nn_augment_forward(out, img, &a, 1, 1, 3, 4);
    const float want[12] = {0, 0, 0, 0, 0, 0, 1, 2, 0, 4, 5, 6};
    for (int i = 0; i < 12; i++) assert_float_equal(out[i], want[i], 0);
    a.cx = 2, a.cy = 1, a.cw = 2, a.ch = 2;
    nn_augment_forward(out, img, &a, 1, 1, 3, 4);
    const float want_cut[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0};
    for (int i = 0; i < 12; i++) assert_float_equal(out[i], want_cut[i], 0);
    nn_aug_item b = {0};
    b.bright = 0.5f, b.sat = 0.3f, b.contrast = 2;
    nn_augment_forward(out, img, &b, 1, 1, 3, 4);
    for (int i = 0; i < 12; i++) assert_float_equal(out[i], (i - 5.5f) * 2 + 6.0f, 1e-5);
}

/* ---------------------------------------------------------------- attention */
typedef struct {
    int B, T, C, NH, causal;
    float *qkv, *y, *att, *dqkv, *dy, *scratch;
} att_ctx;
static void att_fwd(void *p) {
    att_ctx *c = p;
    nn_attention_forward(c->y, c->att, c->scratch, c->qkv, c->B, c->T, c->C, c->NH, c->causal);
}
static void att_bwd(void *p) {
    att_ctx *c = p;
    nn_attention_backward(c->dqkv, c->scratch, c->dy, c->qkv, c->att, c->B, c->T, c->C, c->NH);
}
static void test_attention(void **state) {
    (void)state;
    for (int causal = 0; causal <= 1; causal++) {
        att_ctx c = {2, 5, 8, 2, causal};
        size_t nq = (size_t)c.B * c.T * 3 * c.C, ny = (size_t)c.B * c.T * c.C;
        c.qkv = tu_randn(&rng, nq, 1), c.dqkv = tu_zeros(nq), c.y = tu_zeros(ny), c.dy = tu_zeros(ny);
        c.att = tu_zeros((size_t)c.B * c.NH * c.T * c.T);
        c.scratch = tu_zeros(nn_attention_scratch(c.B, c.T, c.C, c.NH));
        tu_var v[] = {{"qkv", c.qkv, c.dqkv, nq}};
        assert_int_equal(tu_gradcheck(causal ? "attention causal" : "attention full", &c, att_fwd, att_bwd, v, 1,
                                      c.y, c.dy, ny, STEP, ATOL, RTOL), 0);
        free(c.qkv), free(c.dqkv), free(c.y), free(c.dy), free(c.att), free(c.scratch);
    }
}

/* ---------------------------------------------------------------- losses */
typedef struct {
    int kind; /* 0 bce, 1 bce const, 2 ce, 3 ce weighted, 4 mse, 5 l1 */
    size_t n;
    int V;
    float *x, *t, *w, *dx, loss, dloss;
    int *tg;
} loss_ctx;
static float loss_eval(loss_ctx *c, float *dx, float scale) {
    switch (c->kind) {
    case 0: return nn_bce_logits(dx, c->x, c->t, c->n, scale);
    case 1: return nn_bce_logits_const(dx, c->x, 0.9f, c->n, scale);
    case 2: return nn_cross_entropy(dx, c->x, c->tg, NULL, c->n, c->V, -100, scale);
    case 3: return nn_cross_entropy(dx, c->x, c->tg, c->w, c->n, c->V, -100, scale);
    case 4: return nn_mse(dx, c->x, c->t, c->n, scale);
    default: return nn_l1(dx, c->x, c->t, c->n, scale);
    }
}
static void loss_fwd(void *p) {
    loss_ctx *c = p;
    c->loss = loss_eval(c, NULL, 1.0f);
}
static void loss_bwd(void *p) {
    loss_ctx *c = p;
    loss_eval(c, c->dx, c->dloss);
}
static void test_losses(void **state) {
    (void)state;
    const char *names[] = {"bce", "bce const", "cross-entropy", "cross-entropy weighted", "mse", "l1"};
    for (int k = 0; k < 6; k++) {
        loss_ctx c = {k, 6, 5};
        size_t nx = (k == 2 || k == 3) ? c.n * c.V : c.n;
        c.x = tu_randn(&rng, nx, 1.5f);
        c.t = tu_randn(&rng, nx, 1.0f);
        if (k == 0)
            for (size_t i = 0; i < nx; i++) c.t[i] = t2i_rng_uniform(&rng);
        if (k == 5)
            for (size_t i = 0; i < nx; i++)
                if (fabsf(c.x[i] - c.t[i]) < 0.05f) c.x[i] += 0.1f;
        int tg[6] = {0, 4, -100, 2, 2, 1}; /* one ignored position */
        c.tg = tg;
        float w[6] = {0.1f, 0.3f, 0.0f, 0.2f, 0.25f, 0.15f};
        c.w = w;
        c.dx = tu_zeros(nx);
        tu_var v[] = {{"x", c.x, c.dx, nx}};
        assert_int_equal(tu_gradcheck(names[k], &c, loss_fwd, loss_bwd, v, 1, &c.loss, &c.dloss, 1, STEP, ATOL, RTOL), 0);
        if (k == 2) {
            /* ignored row gets no gradient; mean is over the 5 counted rows */
            for (int j = 0; j < c.V; j++) assert_true(c.dx[2 * c.V + j] == 0.0f);
        }
        free(c.x), free(c.t), free(c.dx);
    }
}

int main(void) {
    t2i_rng_seed(&rng, 2024);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),     cmocka_unit_test(test_conv2d),     cmocka_unit_test(test_conv2d_direct),     cmocka_unit_test(test_conv_transpose2d),
        cmocka_unit_test(test_norms),      cmocka_unit_test(test_activations), cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_embedding),  cmocka_unit_test(test_structural), cmocka_unit_test(test_attention),
        cmocka_unit_test(test_losses),     cmocka_unit_test(test_gan_d_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
