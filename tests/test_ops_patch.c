/* test_ops_patch.c - the patch embedding (nn/ops_patch.c) against PyTorch, a naive
 * convolution and finite differences.
 *
 *   torch    forward and both gradients against nn.Conv2d(stride = kernel, no bias)
 *            (tests/ref/gen_patch_ref.py: a square CLIP-like case, a non-square grid, and
 *            patch 1), within 1e-5 + 1e-4 relative; backward run twice gives twice the
 *            gradients (it adds)
 *   naive    the same against nn_ref_conv2d_* (stride P, pad 0) rearranged to (N, G, OC)
 *   grad     central differences on the input and the weight (test_grad.c's tolerances)
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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

static int setup(void **state) {
    (void)state;
    return tu_ref_open("data/patch_ref.safetensors");
}

typedef struct {
    const char *name;
    int N, C, H, W, P, OC;
} patch_case;

/* as in gen_patch_ref.py */
static const patch_case CASES[] = {{"sq", 2, 3, 8, 8, 4, 5}, {"rect", 3, 2, 6, 9, 3, 7}, {"p1", 1, 4, 3, 2, 1, 3}};

static size_t n_patches(const patch_case *c) { return (size_t)c->N * (c->H / c->P) * (c->W / c->P); }

static void test_torch(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const patch_case *c = &CASES[k];
        char nm[64];
        size_t nx, nw, ny;
#define R(what, n) (snprintf(nm, sizeof nm, "patch.%s.%s", c->name, what), tu_ref_read(nm, n))
        float *x = R("x", &nx), *w = R("w", &nw), *dy = R("dy", &ny), *y0 = R("y", NULL), *dx0 = R("dx", NULL),
              *dw0 = R("dw", NULL);
#undef R
        size_t K = (size_t)c->C * c->P * c->P, NG = n_patches(c);
        assert_int_equal(ny, NG * c->OC);
        float *patches = t2i_malloc(NG * K * sizeof(float)), *y = t2i_malloc(ny * sizeof(float));
        float *scratch = t2i_malloc(nn_patch_embed_scratch(c->N, c->C, c->H, c->W, c->P) * sizeof(float));
        float *dx = tu_zeros(nx), *dw = tu_zeros(nw);
        nn_patch_embed_forward(y, patches, x, w, c->N, c->C, c->H, c->W, c->P, c->OC);
        printf("%s: N %d, %dx%dx%d, patch %d -> %zu x %d\n", c->name, c->N, c->C, c->H, c->W, c->P, NG, c->OC);
        tu_assert_close("forward", y, y0, ny, 1e-5f, 1e-4f);
        nn_patch_embed_backward(dx, dw, scratch, dy, patches, w, c->N, c->C, c->H, c->W, c->P, c->OC);
        tu_assert_close("dinp", dx, dx0, nx, 1e-5f, 1e-4f);
        tu_assert_close("dweight", dw, dw0, nw, 1e-5f, 1e-4f);
        /* a second backward adds as much again */
        nn_patch_embed_backward(dx, dw, scratch, dy, patches, w, c->N, c->C, c->H, c->W, c->P, c->OC);
        for (size_t i = 0; i < nx; i++) dx0[i] *= 2.0f;
        for (size_t i = 0; i < nw; i++) dw0[i] *= 2.0f;
        tu_assert_close("dinp twice", dx, dx0, nx, 2e-5f, 1e-4f);
        tu_assert_close("dweight twice", dw, dw0, nw, 2e-5f, 1e-4f);
        /* the weight gradient alone (as CLIP calls it) */
        memset(dw, 0, nw * sizeof(float));
        nn_patch_embed_backward(NULL, dw, NULL, dy, patches, w, c->N, c->C, c->H, c->W, c->P, c->OC);
        for (size_t i = 0; i < nw; i++) dw0[i] *= 0.5f;
        tu_assert_close("dweight alone", dw, dw0, nw, 1e-5f, 1e-4f);
        free(x), free(w), free(dy), free(y0), free(dx0), free(dw0), free(patches), free(y), free(scratch), free(dx),
            free(dw);
    }
}

/* (N, OC, gh, gw) of a convolution -> (N, G, OC) */
static void to_sequence(float *seq, const float *nchw, int N, int OC, int G) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++)
            for (int g = 0; g < G; g++) seq[((size_t)n * G + g) * OC + o] = nchw[((size_t)n * OC + o) * G + g];
}

static void test_naive(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 5);
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const patch_case *c = &CASES[k];
        nn_conv s = nn_conv2d_shape(c->N, c->C, c->H, c->W, c->OC, c->P, c->P, 0);
        int G = s.OH * s.OW;
        size_t nx = (size_t)c->N * c->C * c->H * c->W, nw = (size_t)c->OC * c->C * c->P * c->P,
               ny = n_patches(c) * c->OC;
        float *x = tu_randn(&r, nx, 1.0f), *w = tu_randn(&r, nw, 0.5f), *dy = tu_randn(&r, ny, 1.0f);
        float *patches = t2i_malloc(n_patches(c) * c->C * c->P * c->P * sizeof(float));
        float *scratch = t2i_malloc(nn_patch_embed_scratch(c->N, c->C, c->H, c->W, c->P) * sizeof(float));
        float *y = t2i_malloc(ny * sizeof(float)), *yn = t2i_malloc(ny * sizeof(float)),
              *ys = t2i_malloc(ny * sizeof(float));
        nn_patch_embed_forward(y, patches, x, w, c->N, c->C, c->H, c->W, c->P, c->OC);
        nn_ref_conv2d_forward(yn, x, w, NULL, &s);
        to_sequence(ys, yn, c->N, c->OC, G);
        tu_assert_close("forward vs naive", y, ys, ny, 1e-5f, 1e-4f);
        /* dy as a (N, OC, gh, gw) image for the naive backward */
        float *dyi = t2i_malloc(ny * sizeof(float));
        for (int n = 0; n < c->N; n++)
            for (int o = 0; o < c->OC; o++)
                for (int g = 0; g < G; g++) dyi[((size_t)n * c->OC + o) * G + g] = dy[((size_t)n * G + g) * c->OC + o];
        float *dx = tu_zeros(nx), *dw = tu_zeros(nw), *dxn = tu_zeros(nx), *dwn = tu_zeros(nw);
        nn_patch_embed_backward(dx, dw, scratch, dy, patches, w, c->N, c->C, c->H, c->W, c->P, c->OC);
        nn_ref_conv2d_backward(dxn, dwn, NULL, dyi, x, w, &s);
        tu_assert_close("dinp vs naive", dx, dxn, nx, 1e-5f, 1e-4f);
        tu_assert_close("dweight vs naive", dw, dwn, nw, 1e-5f, 1e-4f);
        free(x), free(w), free(dy), free(patches), free(scratch), free(y), free(yn), free(ys), free(dyi), free(dx),
            free(dw), free(dxn), free(dwn);
    }
}

typedef struct {
    const patch_case *c;
    float *x, *w, *y, *dx, *dw, *dy, *patches, *scratch;
} grad_ctx;

static void fwd(void *p) {
    grad_ctx *g = p;
    const patch_case *c = g->c;
    nn_patch_embed_forward(g->y, g->patches, g->x, g->w, c->N, c->C, c->H, c->W, c->P, c->OC);
}

static void bwd(void *p) {
    grad_ctx *g = p;
    const patch_case *c = g->c;
    nn_patch_embed_backward(g->dx, g->dw, g->scratch, g->dy, g->patches, g->w, c->N, c->C, c->H, c->W, c->P, c->OC);
}

static void test_grad(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 11);
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const patch_case *c = &CASES[k];
        size_t nx = (size_t)c->N * c->C * c->H * c->W, nw = (size_t)c->OC * c->C * c->P * c->P,
               ny = n_patches(c) * c->OC;
        grad_ctx g = {c, tu_randn(&r, nx, 1.0f), tu_randn(&r, nw, 0.5f), tu_zeros(ny), tu_zeros(nx), tu_zeros(nw),
                      tu_zeros(ny), tu_zeros(n_patches(c) * c->C * c->P * c->P),
                      tu_zeros(nn_patch_embed_scratch(c->N, c->C, c->H, c->W, c->P))};
        tu_var vars[] = {{"x", g.x, g.dx, nx}, {"w", g.w, g.dw, nw}};
        fwd(&g);
        assert_int_equal(tu_gradcheck(c->name, &g, fwd, bwd, vars, 2, g.y, g.dy, ny, 1e-2f, 2e-3f, 2e-2f), 0);
        free(g.x), free(g.w), free(g.y), free(g.dx), free(g.dw), free(g.dy), free(g.patches), free(g.scratch);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_torch), cmocka_unit_test(test_naive),
                                       cmocka_unit_test(test_grad)};
    return cmocka_run_group_tests(tests, setup, tu_ref_teardown);
}
