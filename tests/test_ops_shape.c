/* test_ops_shape.c - adds, concat, batched transposes, pixel shuffle, nearest upsampling and average pooling
 * (nn/ops_shape.c) against PyTorch.
 *
 * Reference data and tolerances: tests/helpers/torchref.h. Input shapes are read from the
 * file; output shapes are computed by our shape functions and must match the stored ones
 * (st_load_f32 checks), so a wrong output-size formula fails too.
 * Backward kernels add into gradients: buffers are zeroed first, then a second backward
 * call into the same buffers must double every gradient.
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

/* ---------------------------------------------------------------- structural */

static void test_add_cat(void **state) {
    (void)state;
    const st_tensor *ta = tu_ref_find("add.a.a");
    size_t n = ta->numel;
    float *a = tu_ref_get("add.a.a"), *b = tu_ref_get("add.a.b"), *dy = tu_ref_get("add.a.dy");
    float *ry = tu_ref_get_shaped(4, ta->shape, "add.a.y"), *rda = tu_ref_get_shaped(4, ta->shape, "add.a.da");
    float *rdb = tu_ref_get_shaped(4, ta->shape, "add.a.db");
    float *y = tu_zeros(n), *da = tu_zeros(n), *db = tu_zeros(n);
    nn_add_forward(y, a, b, n);
    tu_close_fwd("add y", y, ry, n);
    nn_add_inplace(da, dy, n);
    nn_add_inplace(db, dy, n);
    tu_close_grad("add da", da, rda, n);
    tu_close_grad("add db", db, rdb, n);
    free(a), free(b), free(dy), free(ry), free(rda), free(rdb), free(y), free(da), free(db);

    const st_tensor *tca = tu_ref_find("cat.a.a"), *tcb = tu_ref_find("cat.a.b");
    int N = (int)tca->shape[0], Ca = (int)tca->shape[1], Cb = (int)tcb->shape[1];
    int S = (int)(tca->shape[2] * tca->shape[3]);
    size_t na = tca->numel, nb = tcb->numel;
    a = tu_ref_get("cat.a.a"), b = tu_ref_get("cat.a.b"), dy = tu_ref_get("cat.a.dy");
    ry = tu_ref_get_shaped(4, SHAPE(N, Ca + Cb, tca->shape[2], tca->shape[3]), "cat.a.y");
    rda = tu_ref_get_shaped(4, tca->shape, "cat.a.da");
    rdb = tu_ref_get_shaped(4, tcb->shape, "cat.a.db");
    y = tu_zeros(na + nb), da = tu_zeros(na), db = tu_zeros(nb);
    nn_concat_forward(y, a, b, N, Ca, Cb, S);
    tu_close_fwd("cat y", y, ry, na + nb);
    nn_concat_backward(da, db, dy, N, Ca, Cb, S);
    tu_close_grad("cat da", da, rda, na);
    tu_close_grad("cat db", db, rdb, nb);
    nn_concat_backward(da, db, dy, N, Ca, Cb, S);
    tu_close_twice("cat da", da, rda, na);
    tu_close_twice("cat db", db, rdb, nb);
    free(a), free(b), free(dy), free(ry), free(rda), free(rdb), free(y), free(da), free(db);
}

/* Batched transposes at sizes that are not multiples of the 8x8 blocks, and back: every
 * element lands where out[n, c, r] = inp[n, r, c] puts it, and twice is the identity. */
static void test_transpose_batched(void **state) {
    (void)state;
    static const int sizes[][3] = {{3, 13, 21}, {2, 8, 16}, {1, 1, 9}, {5, 128, 16}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int N = sizes[k][0], R = sizes[k][1], C = sizes[k][2];
        size_t n = (size_t)N * R * C;
        float *x = t2i_malloc(n * sizeof(float)), *y = t2i_malloc(n * sizeof(float)), *z = t2i_malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) x[i] = (float)i;
        nn_transpose_batched(y, x, N, R, C);
        for (int b = 0; b < N; b++)
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++)
                    assert_true(y[((size_t)b * C + c) * R + r] == x[((size_t)b * R + r) * C + c]);
        nn_transpose_batched(z, y, N, C, R);
        assert_memory_equal(z, x, n * sizeof(float));
        free(x), free(y), free(z);
    }
}

static void test_pixel_shuffle_upsample(void **state) {
    (void)state;
    const int r = 2;
    const st_tensor *tx = tu_ref_find("pixel_shuffle.r2.x");
    int N = (int)tx->shape[0], C = (int)tx->shape[1] / (r * r), H = (int)tx->shape[2], W = (int)tx->shape[3];
    size_t n = tx->numel;
    float *x = tu_ref_get("pixel_shuffle.r2.x"), *dy = tu_ref_get("pixel_shuffle.r2.dy");
    float *ry = tu_ref_get_shaped(4, SHAPE(N, C, H * r, W * r), "pixel_shuffle.r2.y");
    float *rdx = tu_ref_get_shaped(4, tx->shape, "pixel_shuffle.r2.dx");
    float *y = tu_zeros(n), *dx = tu_zeros(n);
    nn_pixel_shuffle_forward(y, x, N, C, H, W, r);
    tu_close_fwd("pixel_shuffle y", y, ry, n);
    nn_pixel_shuffle_backward(dx, dy, N, C, H, W, r);
    tu_close_grad("pixel_shuffle dx", dx, rdx, n);
    nn_pixel_shuffle_backward(dx, dy, N, C, H, W, r);
    tu_close_twice("pixel_shuffle dx", dx, rdx, n);
    free(x), free(dy), free(ry), free(rdx), free(y), free(dx);

    const int f = 2;
    tx = tu_ref_find("upsample.f2.x");
    N = (int)tx->shape[0], C = (int)tx->shape[1], H = (int)tx->shape[2], W = (int)tx->shape[3];
    n = tx->numel;
    x = tu_ref_get("upsample.f2.x"), dy = tu_ref_get("upsample.f2.dy");
    ry = tu_ref_get_shaped(4, SHAPE(N, C, H * f, W * f), "upsample.f2.y");
    rdx = tu_ref_get_shaped(4, tx->shape, "upsample.f2.dx");
    y = tu_zeros(n * f * f), dx = tu_zeros(n);
    nn_upsample_nearest_forward(y, x, N, C, H, W, f);
    tu_close_fwd("upsample y", y, ry, n * f * f);
    nn_upsample_nearest_backward(dx, dy, N, C, H, W, f);
    tu_close_grad("upsample dx", dx, rdx, n);
    nn_upsample_nearest_backward(dx, dy, N, C, H, W, f);
    tu_close_twice("upsample dx", dx, rdx, n);
    free(x), free(dy), free(ry), free(rdx), free(y), free(dx);
}

static void run_avgpool(const char *p, int k, int stride) {
    const st_tensor *tx = tu_ref_find("%s.x", p);
    int N = (int)tx->shape[0], C = (int)tx->shape[1], H = (int)tx->shape[2], W = (int)tx->shape[3];
    /* PyTorch floors the output size (ceil_mode=False) */
    int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
    size_t n = tx->numel, ny = (size_t)N * C * OH * OW;
    char label[96];
    float *x = tu_ref_get("%s.x", p), *dy = tu_ref_get("%s.dy", p);
    float *ry = tu_ref_get_shaped(4, SHAPE(N, C, OH, OW), "%s.y", p), *rdx = tu_ref_get_shaped(4, tx->shape, "%s.dx", p);
    float *y = tu_zeros(ny), *dx = tu_zeros(n);
    nn_avgpool2d_forward(y, x, N, C, H, W, k, stride);
    snprintf(label, sizeof label, "%s y", p);
    tu_close_fwd(label, y, ry, ny);
    nn_avgpool2d_backward(dx, dy, N, C, H, W, k, stride);
    snprintf(label, sizeof label, "%s dx", p);
    tu_close_grad(label, dx, rdx, n);
    nn_avgpool2d_backward(dx, dy, N, C, H, W, k, stride);
    tu_close_twice(label, dx, rdx, n);
    free(x), free(dy), free(ry), free(rdx), free(y), free(dx);
}

static void test_avgpool(void **state) {
    (void)state;
    run_avgpool("avgpool.k2", 2, 2);
    run_avgpool("avgpool.k3s2", 3, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_cat),
        cmocka_unit_test(test_pixel_shuffle_upsample),
        cmocka_unit_test(test_transpose_batched),
        cmocka_unit_test(test_avgpool),
    };
    return cmocka_run_group_tests(tests, tu_ref_setup, tu_ref_teardown);
}
