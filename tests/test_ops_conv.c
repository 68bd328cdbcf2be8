/* test_ops_conv.c - Conv2d and ConvTranspose2d (nn/ops_conv.c) against PyTorch, and at
 * production sizes against the naive references of nn/ops_ref.c.
 *
 * Reference data and tolerances: tests/helpers/torchref.h. Input shapes are read from the
 * file; output shapes are computed by our shape functions and must match the stored ones
 * (st_load_f32 checks), so a wrong output-size formula fails too.
 * Backward kernels add into gradients: buffers are zeroed first, then a second backward
 * call into the same buffers must double every gradient.
 * Convolutions are also run with NULL for some gradients.
 *
 * Production-size checks (random data, no torch): Conv2d(64, 128, k4 s2 p1) on
 * 8x64x14x14 forward and backward, ConvTranspose2d(256, 128, k4 s2 p1) on 4x256x7x7
 * forward and backward (the transpose's backward is checked through adjointness: its dinp
 * is a Conv2d of dout with the same weights, its dweight the Conv2d weight gradient with
 * the roles of input and output swapped), both also in groups of images under a small
 * scratch budget; the Winograd 3x3 convolution against the naive one.
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

/* ---------------------------------------------------------------- convolutions */

typedef struct {
    const char *name;
    int K, stride, pad, out_pad;
} conv_case;

static void run_conv(const char *op, const conv_case *cc, int transpose) {
    const st_tensor *tx = tu_ref_find("%s.%s.x", op, cc->name), *tw = tu_ref_find("%s.%s.w", op, cc->name);
    assert_int_equal(tx->ndim, 4);
    assert_int_equal(tw->ndim, 4);
    int N = (int)tx->shape[0], C = (int)tx->shape[1], H = (int)tx->shape[2], W = (int)tx->shape[3];
    /* Conv2d w (OC, C, K, K); ConvTranspose2d w (C, OC, K, K) */
    int OC = (int)(transpose ? tw->shape[1] : tw->shape[0]);
    assert_int_equal(transpose ? tw->shape[0] : tw->shape[1], C);
    assert_int_equal(tw->shape[2], cc->K);
    nn_conv s = transpose ? nn_conv_transpose2d_shape(N, C, H, W, OC, cc->K, cc->stride, cc->pad, cc->out_pad)
                          : nn_conv2d_shape(N, C, H, W, OC, cc->K, cc->stride, cc->pad);
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * OC * s.OH * s.OW, nw = (size_t)OC * C * cc->K * cc->K;
    char label[128];

    float *x = tu_ref_get("%s.%s.x", op, cc->name), *w = tu_ref_get("%s.%s.w", op, cc->name);
    float *b = tu_ref_get("%s.%s.b", op, cc->name), *dy = tu_ref_get("%s.%s.dy", op, cc->name);
    float *ry = tu_ref_get_shaped(4, SHAPE(N, OC, s.OH, s.OW), "%s.%s.y", op, cc->name);
    float *rdx = tu_ref_get_shaped(4, SHAPE(N, C, H, W), "%s.%s.dx", op, cc->name);
    float *rdw = tu_ref_get_shaped(4, tw->shape, "%s.%s.dw", op, cc->name);
    float *rdb = tu_ref_get_shaped(1, SHAPE(OC), "%s.%s.db", op, cc->name);

    size_t ns = transpose ? nn_conv_transpose2d_scratch(&s) : nn_conv2d_scratch(&s);
    float *scratch = tu_zeros(ns), *y = tu_zeros(ny), *dx = tu_zeros(nx), *dw = tu_zeros(nw), *db = tu_zeros(OC);
    if (transpose) {
        nn_conv_transpose2d_forward(y, scratch, x, w, b, &s);
        nn_conv_transpose2d_backward(dx, dw, db, scratch, dy, x, w, &s);
    } else {
        nn_conv2d_forward(y, scratch, x, w, b, &s);
        nn_conv2d_backward(dx, dw, db, scratch, dy, x, w, &s);
    }
    snprintf(label, sizeof label, "%s.%s y", op, cc->name);
    tu_close_fwd(label, y, ry, ny);
    snprintf(label, sizeof label, "%s.%s dx", op, cc->name);
    tu_close_grad(label, dx, rdx, nx);
    snprintf(label, sizeof label, "%s.%s dw", op, cc->name);
    tu_close_grad(label, dw, rdw, nw);
    snprintf(label, sizeof label, "%s.%s db", op, cc->name);
    tu_close_grad(label, db, rdb, OC);

    if (transpose)
        nn_conv_transpose2d_backward(dx, dw, db, scratch, dy, x, w, &s);
    else
        nn_conv2d_backward(dx, dw, db, scratch, dy, x, w, &s);
    snprintf(label, sizeof label, "%s.%s dx", op, cc->name);
    tu_close_twice(label, dx, rdx, nx);
    snprintf(label, sizeof label, "%s.%s dw", op, cc->name);
    tu_close_twice(label, dw, rdw, nw);
    snprintf(label, sizeof label, "%s.%s db", op, cc->name);
    tu_close_twice(label, db, rdb, OC);

    /* NULL gradients are skipped without disturbing the others (first layer: no dinp;
     * frozen network: only dinp) */
    memset(dx, 0, nx * sizeof(float));
    memset(dw, 0, nw * sizeof(float));
    if (transpose) {
        nn_conv_transpose2d_backward(NULL, dw, NULL, scratch, dy, x, w, &s);
        nn_conv_transpose2d_backward(dx, NULL, NULL, scratch, dy, x, w, &s);
    } else {
        nn_conv2d_backward(NULL, dw, NULL, scratch, dy, x, w, &s);
        nn_conv2d_backward(dx, NULL, NULL, scratch, dy, x, w, &s);
    }
    snprintf(label, sizeof label, "%s.%s dx (alone)", op, cc->name);
    tu_close_grad(label, dx, rdx, nx);
    snprintf(label, sizeof label, "%s.%s dw (alone)", op, cc->name);
    tu_close_grad(label, dw, rdw, nw);

    free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb);
    free(scratch), free(y), free(dx), free(dw), free(db);
}

static void test_conv2d(void **state) {
    (void)state;
    static const conv_case cases[] = {
        {"k3s1p1", 3, 1, 1, 0}, {"k4s2p1", 4, 2, 1, 0}, {"k1s1p0", 1, 1, 0, 0}, {"k3s2p0", 3, 2, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv("conv2d", &cases[i], 0);
}

static void test_conv_transpose2d(void **state) {
    (void)state;
    static const conv_case cases[] = {{"k4s2p1", 4, 2, 1, 0}, {"k3s1p1", 3, 1, 1, 0}, {"k3s2p1op1", 3, 2, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv("convt2d", &cases[i], 1);
}

/* B1 discriminator's second conv: Conv2d(64, 128, k4, s2, p1) on 8 x 64 x 14 x 14. */
/* Every code path of Conv2d's tile kernels (baseline, AVX2, AVX-512) against the naive
 * reference, at shapes that reach each case of the blocking: image groups, bands of rows
 * (a small block), partial tiles in both directions (OC and Kd not multiples of mr or nr,
 * blocks whose columns are not a multiple of nr, images split across tiles), stride 2,
 * 1x1 and 5x5 kernels, a first layer whose weight-gradient tiles run over taps. Backward runs twice into the same buffers and must double. A path
 * the CPU lacks is reported as skipped (not tested), never passed. */
static void check_conv_path(t2i_cpu_level level) {
    if (t2i_cpu_best() < level) {
        print_message("conv path %s: NOT TESTED, this CPU lacks it (best: %s)\n", t2i_cpu_name(level),
                      t2i_cpu_name(t2i_cpu_best()));
        skip();
    }
    setenv("T2I_CPU", t2i_cpu_name(level), 1);
    assert_string_equal(nn_conv_path(), t2i_cpu_name(level));
    static const int shapes[][8] = {
        /* N, C, H, W, OC, K, stride, pad */
        {3, 5, 9, 11, 7, 3, 1, 1},  {5, 6, 14, 14, 10, 4, 2, 1}, {4, 16, 8, 8, 12, 1, 1, 0},
        {2, 3, 17, 13, 5, 5, 2, 2}, {2, 9, 30, 33, 33, 3, 1, 1}, {1, 2, 6, 40, 3, 3, 1, 0},
        {3, 1, 12, 12, 40, 3, 1, 1}, /* 9 taps, 40 channels: dW by dot products */
        /* dW by dot products (few taps or few channels; nn_dot_kernel), with db as a row of
         * ones: images of 195 positions (partial vectors), both orientations of the row
         * blocks on each path (taps as the A side: 3 or 4 tap rows against 6 or 4 channels) */
        {5, 3, 15, 13, 64, 3, 1, 1}, {2, 3, 7, 9, 6, 1, 1, 0}, {2, 2, 9, 7, 4, 1, 1, 0},
        {2, 1, 5, 6, 4, 1, 1, 0},    {2, 20, 21, 19, 3, 3, 1, 1}, /* an output layer of 3 channels */
        /* 1x1 stride 1 without padding: products on NCHW in place (images of 35 and 63
         * positions: partial panels copied), and a 1x1 of stride 2 that still takes im2col */
        {3, 40, 5, 7, 36, 1, 1, 0},  {2, 24, 7, 9, 20, 1, 1, 0},  {2, 5, 9, 9, 7, 1, 2, 0},
        /* forward by gathered tiles (conv_gather.c) on every path: 72 and 128 taps, 20 and
         * 24 channels (a partial panel), images of 35 pixels sharing tiles, stride 2 */
        {3, 8, 5, 7, 20, 3, 1, 1},   {2, 8, 10, 10, 24, 4, 2, 1},
        /* backward-data of stride 1 by gathered tiles (the turned kernel over dY): 16 and
         * 20 input channels, 3x3 and 5x5 with pad 2 */
        {2, 16, 6, 9, 12, 3, 1, 1},  {2, 20, 9, 8, 10, 5, 1, 2},
        /* backward-data of stride 2 by phases of gathered tiles: k4 on odd sizes, k3 (phases
         * of one and two taps a side) */
        {2, 16, 9, 11, 20, 4, 2, 1}, {3, 16, 9, 9, 32, 3, 2, 1},
        /* widths of whole tiles of pixels per phase (24 on every path, 16 on two): both column phases of
         * a row at once (put2), k4 and k3 (phases of two and one taps a side) */
        {2, 16, 9, 24, 20, 4, 2, 1}, {3, 16, 8, 16, 32, 3, 2, 1},
        /* forward of few taps by row tiles (channels by consecutive pixels): 27 and 50 taps,
         * rows of 37 and 20 pixels (a short last panel on each path), 20 and 9 channels
         * (partial panels) */
        {2, 3, 9, 37, 20, 3, 1, 1},  {3, 2, 7, 20, 9, 5, 1, 2},
        /* gathered forward skipping the kernel rows in the padding: pad 3 of a 3x3 kernel
         * (edge rows with no tap inside: the bias alone) */
        {2, 8, 4, 5, 16, 3, 1, 3},
        /* a 1x1 weight gradient of 72 channels by gathered tiles, reading the input in
         * place (bands: from a copy) */
        {3, 72, 5, 6, 20, 1, 1, 0},
    };
    t2i_rng r;
    t2i_rng_seed(&r, 7);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int banded = 0; banded < 2; banded++) {
            const int *q = shapes[si];
            nn_set_conv_block_floats(banded ? 64 : 0);
            nn_conv s = nn_conv2d_shape(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]);
            size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
            size_t nw = (size_t)s.OC * s.C * s.KH * s.KW;
            float *x = tu_randn(&r, nx, 1.0f), *w = tu_randn(&r, nw, 0.3f), *b = tu_randn(&r, s.OC, 1.0f);
            float *dy = tu_randn(&r, ny, 1.0f), *scratch = tu_zeros(nn_conv2d_scratch(&s));
            float *y = tu_zeros(ny), *ry = tu_zeros(ny), *dx = tu_zeros(nx), *rdx = tu_zeros(nx);
            float *dw = tu_zeros(nw), *rdw = tu_zeros(nw), *db = tu_zeros(s.OC), *rdb = tu_zeros(s.OC);
            char label[96];
            nn_conv2d_forward(y, scratch, x, w, b, &s);
            nn_ref_conv2d_forward(ry, x, w, b, &s);
            snprintf(label, sizeof label, "%s shape %zu%s y", t2i_cpu_name(level), si, banded ? " bands" : "");
            tu_assert_close(label, y, ry, ny, 1e-4f, 1e-4f);
            for (int twice = 1; twice <= 2; twice++) {
                nn_conv2d_backward(dx, dw, db, scratch, dy, x, w, &s);
                nn_ref_conv2d_backward(rdx, rdw, rdb, dy, x, w, &s);
                snprintf(label, sizeof label, "%s shape %zu%s dx x%d", t2i_cpu_name(level), si, banded ? " bands" : "",
                         twice);
                tu_assert_close(label, dx, rdx, nx, 1e-4f, 1e-4f);
                snprintf(label, sizeof label, "%s shape %zu%s dw x%d", t2i_cpu_name(level), si, banded ? " bands" : "",
                         twice);
                tu_assert_close(label, dw, rdw, nw, 1e-3f, 1e-4f);
                tu_assert_close(label, db, rdb, s.OC, 1e-3f, 1e-4f);
            }
            /* dW alone (no row of ones for db: another blocking of the dot products) adds the
             * reference's once more */
            nn_conv2d_backward(NULL, dw, NULL, scratch, dy, x, w, &s);
            for (size_t i = 0; i < nw; i++) rdw[i] *= 1.5f;
            snprintf(label, sizeof label, "%s shape %zu%s dw alone", t2i_cpu_name(level), si, banded ? " bands" : "");
            tu_assert_close(label, dw, rdw, nw, 1e-3f, 1e-4f);
            free(x), free(w), free(b), free(dy), free(scratch), free(y), free(ry), free(dx), free(rdx);
            free(dw), free(rdw), free(db), free(rdb);
        }
    /* ConvTranspose2d: forward against the naive transpose, backward against the naive
     * adjoint Conv2d (dx = conv2d(dy, w), dw = its weight gradient for input dy and output
     * gradient x) */
    static const int tshapes[][9] = {
        /* N, C, H, W, OC, K, stride, pad, out_pad */
        {2, 6, 5, 7, 5, 4, 2, 1, 0},
        {3, 4, 4, 4, 33, 3, 2, 1, 1},
        {2, 40, 3, 3, 3, 3, 1, 1, 0},
        {2, 24, 5, 18, 3, 3, 1, 1, 0}, /* backward-data: row tiles adding into dx */
    };
    for (size_t si = 0; si < sizeof tshapes / sizeof tshapes[0]; si++) {
        const int *q = tshapes[si];
        nn_conv s = nn_conv_transpose2d_shape(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8]);
        nn_conv back = nn_conv2d_shape(s.N, s.OC, s.OH, s.OW, s.C, s.KH, s.stride, s.pad);
        size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
        size_t nw = (size_t)s.OC * s.C * s.KH * s.KW;
        float *x = tu_randn(&r, nx, 1.0f), *w = tu_randn(&r, nw, 0.3f), *b = tu_randn(&r, s.OC, 1.0f);
        float *dy = tu_randn(&r, ny, 1.0f), *scratch = tu_zeros(nn_conv_transpose2d_scratch(&s));
        float *y = tu_zeros(ny), *ry = tu_zeros(ny), *dx = tu_zeros(nx), *rdx = tu_zeros(nx);
        float *dw = tu_zeros(nw), *rdw = tu_zeros(nw);
        char label[96];
        nn_conv_transpose2d_forward(y, scratch, x, w, b, &s);
        nn_ref_conv_transpose2d_forward(ry, x, w, b, &s);
        snprintf(label, sizeof label, "%s convT shape %zu y", t2i_cpu_name(level), si);
        tu_assert_close(label, y, ry, ny, 1e-4f, 1e-4f);
        nn_conv_transpose2d_backward(dx, dw, NULL, scratch, dy, x, w, &s);
        nn_ref_conv2d_forward(rdx, dy, w, NULL, &back);
        nn_ref_conv2d_backward(NULL, rdw, NULL, x, dy, w, &back);
        snprintf(label, sizeof label, "%s convT shape %zu dx", t2i_cpu_name(level), si);
        tu_assert_close(label, dx, rdx, nx, 1e-4f, 1e-4f);
        snprintf(label, sizeof label, "%s convT shape %zu dw", t2i_cpu_name(level), si);
        tu_assert_close(label, dw, rdw, nw, 1e-3f, 1e-4f);
        free(x), free(w), free(b), free(dy), free(scratch), free(y), free(ry), free(dx), free(rdx);
        free(dw), free(rdw);
    }
    nn_set_conv_block_floats(0);
    unsetenv("T2I_CPU");
}

/* Results do not depend on the thread count (ARCHITECTURE.md promises it): forward,
 * backward-data and backward-weights at 1 thread and at 2 are the same bits. */
static void check_threads_same_bits(int N, int C, int H, int W, int OC, int K, int pad) {
    t2i_rng r;
    t2i_rng_seed(&r, 9);
    nn_conv s = nn_conv2d_shape(N, C, H, W, OC, K, 1, pad);
    size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
    size_t nw = (size_t)s.OC * s.C * s.KH * s.KW;
    float *x = tu_randn(&r, nx, 1.0f), *w = tu_randn(&r, nw, 0.3f), *b = tu_randn(&r, s.OC, 1.0f);
    float *dy = tu_randn(&r, ny, 1.0f), *scratch = tu_zeros(nn_conv2d_scratch(&s));
    float *out[2][4];
    int before = t2i_get_threads();
    for (int i = 0; i < 2; i++) {
        t2i_set_threads(i + 1);
        out[i][0] = tu_zeros(ny), out[i][1] = tu_zeros(nx), out[i][2] = tu_zeros(nw), out[i][3] = tu_zeros(OC);
        nn_conv2d_forward(out[i][0], scratch, x, w, b, &s);
        nn_conv2d_backward(out[i][1], out[i][2], out[i][3], scratch, dy, x, w, &s);
    }
    t2i_set_threads(before);
    assert_memory_equal(out[0][0], out[1][0], ny * sizeof(float));
    assert_memory_equal(out[0][1], out[1][1], nx * sizeof(float));
    assert_memory_equal(out[0][2], out[1][2], nw * sizeof(float));
    assert_memory_equal(out[0][3], out[1][3], OC * sizeof(float));
    for (int i = 0; i < 2; i++) free(out[i][0]), free(out[i][1]), free(out[i][2]), free(out[i][3]);
    free(x), free(w), free(b), free(dy), free(scratch);
}

static void test_conv_threads_same_bits(void **state) {
    (void)state;
    check_threads_same_bits(7, 12, 11, 10, 20, 3, 1); /* dW by tiles */
    check_threads_same_bits(9, 3, 10, 11, 16, 3, 1);  /* dW and db by dot products */
    check_threads_same_bits(5, 3, 6, 40, 16, 3, 1);   /* forward by row tiles */
    check_threads_same_bits(5, 72, 4, 6, 24, 1, 0);   /* 1x1: dW by gathered tiles on the input in place */
    check_threads_same_bits(9, 24, 7, 9, 20, 1, 0);   /* 1x1: products in place */
}

static void test_conv_path_baseline(void **state) {
    (void)state;
    check_conv_path(T2I_CPU_BASELINE);
}

static void test_conv_path_avx2(void **state) {
    (void)state;
    check_conv_path(T2I_CPU_AVX2);
}

static void test_conv_path_avx512(void **state) {
    (void)state;
    check_conv_path(T2I_CPU_AVX512);
}

static void test_big_conv2d(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 101);
    nn_conv s = nn_conv2d_shape(8, 64, 14, 14, 128, 4, 2, 1);
    size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
    size_t nw = (size_t)s.OC * s.C * s.KH * s.KW;
    float *x = tu_randn(&r, nx, 1.0f), *w = tu_init_w(&r, nw, s.C * 16), *b = tu_init_w(&r, s.OC, s.C * 16);
    float *dy = tu_randn(&r, ny, 1.0f);
    float *y = tu_zeros(ny), *ry = tu_zeros(ny), *scratch = tu_zeros(nn_conv2d_scratch(&s));
    float *dx = tu_zeros(nx), *dw = tu_zeros(nw), *db = tu_zeros(s.OC);
    float *rdx = tu_zeros(nx), *rdw = tu_zeros(nw), *rdb = tu_zeros(s.OC);
    nn_conv2d_forward(y, scratch, x, w, b, &s);
    nn_ref_conv2d_forward(ry, x, w, b, &s);
    tu_assert_close("big conv2d y", y, ry, ny, 1e-5f, 1e-4f);
    nn_conv2d_backward(dx, dw, db, scratch, dy, x, w, &s);
    nn_ref_conv2d_backward(rdx, rdw, rdb, dy, x, w, &s);
    tu_assert_close("big conv2d dx", dx, rdx, nx, 1e-4f, 1e-4f);
    /* weight gradients sum 392 products of N(0,1) values (magnitude ~20) and the naive
     * reference accumulates in float: allow 3e-4 absolute (~1e-5 of their scale) */
    tu_assert_close("big conv2d dw", dw, rdw, nw, 3e-4f, 1e-4f);
    tu_assert_close("big conv2d db", db, rdb, s.OC, 1e-4f, 1e-4f);

    /* blocks of a few output rows (bands) instead of whole images */
    nn_set_conv_block_floats(1024 * 3);
    float *small = tu_zeros(nn_conv2d_scratch(&s));
    memset(dx, 0, nx * sizeof(float));
    memset(dw, 0, nw * sizeof(float));
    nn_conv2d_forward(y, small, x, w, b, &s);
    nn_conv2d_backward(dx, dw, NULL, small, dy, x, w, &s);
    nn_set_conv_block_floats(0);
    tu_assert_close("big conv2d y (bands)", y, ry, ny, 1e-5f, 1e-4f);
    tu_assert_close("big conv2d dx (bands)", dx, rdx, nx, 1e-4f, 1e-4f);
    tu_assert_close("big conv2d dw (bands)", dw, rdw, nw, 3e-4f, 1e-4f);
    free(x), free(w), free(b), free(dy), free(y), free(ry), free(scratch), free(dx), free(dw), free(db);
    free(rdx), free(rdw), free(rdb), free(small);
}

/* Winograd F(2x2, 3x3) against the naive convolution: odd sizes (partial tiles at the
 * right and bottom edges), bands that start on odd rows, a band written into a buffer
 * of its own (ostride = rows * W), and B4-sized channels. Also nn_im2col_rows. */
static void test_winograd_conv3x3(void **state) {
    (void)state;
    const int cases[][4] = {{5, 7, 9, 6}, {64, 16, 12, 32}, {3, 1, 1, 2}, {8, 2, 5, 3}}; /* C, H, W, OC */
    t2i_rng r;
    t2i_rng_seed(&r, 7);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int C = cases[ci][0], H = cases[ci][1], W = cases[ci][2], OC = cases[ci][3];
        nn_conv s = nn_conv2d_shape(1, C, H, W, OC, 3, 1, 1);
        size_t nx = (size_t)C * H * W, ny = (size_t)OC * H * W;
        float *x = tu_randn(&r, nx, 1.0f), *w = tu_init_w(&r, (size_t)OC * C * 9, C * 9), *b = tu_init_w(&r, OC, C * 9);
        float *ry = tu_zeros(ny), *y = tu_zeros(ny), *U = tu_zeros((size_t)16 * OC * C);
        nn_ref_conv2d_forward(ry, x, w, b, &s);
        nn_winograd_weights(U, w, OC, C);
        /* bands [0, 3), [3, 4), [4, H): odd starts and lengths */
        float *scratch = tu_zeros(nn_winograd_scratch(C, OC, W, H));
        for (int r0 = 0; r0 < H;) {
            int nr = r0 == 0 ? T2I_MIN(3, H) : r0 == 3 ? 1 : H - r0;
            nn_winograd_rows(y + (size_t)r0 * W, (size_t)H * W, x, C, H, W, U, b, OC, r0, nr, scratch);
            r0 += nr;
        }
        tu_assert_close("winograd y", y, ry, ny, 2e-5f, 1e-4f);
        /* the baseline transforms (what a CPU without AVX2 runs) give the same */
        setenv("T2I_NO_AVX2", "1", 1);
        memset(y, 0, ny * sizeof(float));
        nn_winograd_rows(y, (size_t)H * W, x, C, H, W, U, b, OC, 0, H, scratch);
        unsetenv("T2I_NO_AVX2");
        tu_assert_close("winograd y (baseline transforms)", y, ry, ny, 2e-5f, 1e-4f);
        /* the last band into a buffer of its own, as before a pixel shuffle */
        int r0 = H / 2, nr = H - r0;
        float *band = tu_zeros((size_t)OC * nr * W);
        nn_winograd_rows(band, (size_t)nr * W, x, C, H, W, U, NULL, OC, r0, nr, scratch);
        for (int o = 0; o < OC; o++)
            for (int i = 0; i < nr * W; i++)
                assert_float_equal(band[(size_t)o * nr * W + i] + b[o], ry[(size_t)o * H * W + (size_t)r0 * W + i],
                                   1e-4f);
        /* im2col of a band of rows == the matching columns of the whole image's im2col */
        float *col = tu_zeros((size_t)C * 9 * H * W), *colb = tu_zeros((size_t)C * 9 * nr * W);
        nn_im2col_rows(col, x, &s, 0, H);
        nn_im2col_rows(colb, x, &s, r0, H);
        for (int k = 0; k < C * 9; k++)
            assert_memory_equal(colb + (size_t)k * nr * W, col + (size_t)k * H * W + (size_t)r0 * W,
                                (size_t)nr * W * sizeof(float));
        free(x), free(w), free(b), free(ry), free(y), free(U), free(scratch), free(band), free(col), free(colb);
    }
}

/* B1 generator's first transpose: ConvTranspose2d(256, 128, k4, s2, p1) on 4 x 256 x 7 x 7. */
static void test_big_conv_transpose2d(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 102);
    nn_conv s = nn_conv_transpose2d_shape(4, 256, 7, 7, 128, 4, 2, 1, 0);
    assert_int_equal(s.OH, 14);
    size_t nx = (size_t)s.N * s.C * s.H * s.W, ny = (size_t)s.N * s.OC * s.OH * s.OW;
    size_t nw = (size_t)s.C * s.OC * s.KH * s.KW;
    float *x = tu_randn(&r, nx, 1.0f), *w = tu_init_w(&r, nw, s.OC * 16), *b = tu_init_w(&r, s.OC, s.OC * 16);
    float *dy = tu_randn(&r, ny, 1.0f);
    float *y = tu_zeros(ny), *ry = tu_zeros(ny), *scratch = tu_zeros(nn_conv_transpose2d_scratch(&s));
    float *dx = tu_zeros(nx), *dw = tu_zeros(nw), *rdx = tu_zeros(nx), *rdw = tu_zeros(nw);
    nn_conv_transpose2d_forward(y, scratch, x, w, b, &s);
    nn_ref_conv_transpose2d_forward(ry, x, w, b, &s);
    tu_assert_close("big conv_transpose2d y", y, ry, ny, 1e-5f, 1e-4f);

    /* Adjointness: the transpose maps (C, 7x7) -> (OC, 14x14); the Conv2d with the same
     * weight tensor read as (out = C, in = OC, K, K) and the same stride/pad maps back.
     * dinp = conv2d(dout, w); dweight = that conv's weight gradient for input dout and
     * output gradient x. */
    nn_conv back = nn_conv2d_shape(s.N, s.OC, s.OH, s.OW, s.C, s.KH, s.stride, s.pad);
    assert_int_equal(back.OH, s.H);
    nn_conv_transpose2d_backward(dx, dw, NULL, scratch, dy, x, w, &s);
    nn_ref_conv2d_forward(rdx, dy, w, NULL, &back);
    nn_ref_conv2d_backward(NULL, rdw, NULL, x, dy, w, &back);
    tu_assert_close("big conv_transpose2d dx", dx, rdx, nx, 1e-4f, 1e-4f);
    tu_assert_close("big conv_transpose2d dw", dw, rdw, nw, 3e-4f, 1e-4f);

    /* small blocks: bands of output rows of the adjoint convolution */
    nn_set_conv_block_floats(64);
    float *small = tu_zeros(nn_conv_transpose2d_scratch(&s));
    memset(dx, 0, nx * sizeof(float));
    memset(dw, 0, nw * sizeof(float));
    nn_conv_transpose2d_forward(y, small, x, w, b, &s);
    nn_conv_transpose2d_backward(dx, dw, NULL, small, dy, x, w, &s);
    nn_set_conv_block_floats(0);
    tu_assert_close("big conv_transpose2d y (bands)", y, ry, ny, 1e-5f, 1e-4f);
    tu_assert_close("big conv_transpose2d dx (bands)", dx, rdx, nx, 1e-4f, 1e-4f);
    tu_assert_close("big conv_transpose2d dw (bands)", dw, rdw, nw, 3e-4f, 1e-4f);
    free(small);
    free(x), free(w), free(b), free(dy), free(y), free(ry), free(scratch), free(dx), free(dw);
    free(rdx), free(rdw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv_transpose2d),
        cmocka_unit_test(test_big_conv2d),
        cmocka_unit_test(test_conv_threads_same_bits),
        cmocka_unit_test(test_conv_path_baseline),
        cmocka_unit_test(test_conv_path_avx2),
        cmocka_unit_test(test_conv_path_avx512),
        cmocka_unit_test(test_big_conv_transpose2d),
        cmocka_unit_test(test_winograd_conv3x3),
    };
    return cmocka_run_group_tests(tests, tu_ref_setup, tu_ref_teardown);
}
