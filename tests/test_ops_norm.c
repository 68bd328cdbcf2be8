/* test_ops_norm.c - BatchNorm, LayerNorm and GroupNorm (nn/ops_norm.c) against PyTorch.
 *
 * Reference data and tolerances: tests/helpers/torchref.h. Input shapes are read from the
 * file; output shapes are computed by our shape functions and must match the stored ones
 * (st_load_f32 checks), so a wrong output-size formula fails too.
 * Backward kernels add into gradients: buffers are zeroed first, then a second backward
 * call into the same buffers must double every gradient.
 * Each norm case has a channel/row/group whose variance is close to eps, so eps added
 * outside the square root (or a different eps) fails. BatchNorm training also checks the
 * batch mean, rstd and both running statistics.
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

/* ---------------------------------------------------------------- normalisation */

static void run_batchnorm_train(const char *p) {
    const st_tensor *tx = tu_ref_find("%s.x", p);
    int N = (int)tx->shape[0], C = (int)tx->shape[1], S = 1;
    for (int i = 2; i < tx->ndim; i++) S *= (int)tx->shape[i];
    size_t n = (size_t)N * C * S;
    char label[128];
    float *x = tu_ref_get("%s.x", p), *gamma = tu_ref_get("%s.gamma", p), *beta = tu_ref_get("%s.beta", p), *dy = tu_ref_get("%s.dy", p);
    float *rm = tu_ref_get("%s.running_mean0", p), *rv = tu_ref_get("%s.running_var0", p);
    float *ry = tu_ref_get_shaped(tx->ndim, tx->shape, "%s.y", p), *rdx = tu_ref_get_shaped(tx->ndim, tx->shape, "%s.dx", p);
    float *rmean = tu_ref_get_shaped(1, SHAPE(C), "%s.mean", p), *rvar = tu_ref_get_shaped(1, SHAPE(C), "%s.var", p);
    float *rm1 = tu_ref_get_shaped(1, SHAPE(C), "%s.running_mean1", p);
    float *rv1 = tu_ref_get_shaped(1, SHAPE(C), "%s.running_var1", p);
    float *rdg = tu_ref_get_shaped(1, SHAPE(C), "%s.dgamma", p), *rdb = tu_ref_get_shaped(1, SHAPE(C), "%s.dbeta", p);

    float *y = tu_zeros(n), *mean = tu_zeros(C), *rstd = tu_zeros(C), *dx = tu_zeros(n), *dg = tu_zeros(C), *db = tu_zeros(C);
    float *rrstd = tu_zeros(C);
    for (int c = 0; c < C; c++) rrstd[c] = (float)(1.0 / sqrt((double)rvar[c] + 1e-5));
    nn_batchnorm_forward(y, mean, rstd, x, gamma, beta, rm, rv, N, C, S, 1e-5f, 0.1f, 1);
    snprintf(label, sizeof label, "%s y", p);
    tu_close_fwd(label, y, ry, n);
    snprintf(label, sizeof label, "%s batch mean", p);
    tu_close_fwd(label, mean, rmean, C);
    snprintf(label, sizeof label, "%s batch rstd", p);
    tu_close_fwd(label, rstd, rrstd, C);
    /* torch: running = 0.9 running + 0.1 batch, with the UNBIASED variance */
    snprintf(label, sizeof label, "%s running_mean", p);
    tu_close_fwd(label, rm, rm1, C);
    snprintf(label, sizeof label, "%s running_var", p);
    tu_close_fwd(label, rv, rv1, C);

    nn_batchnorm_backward(dx, dg, db, dy, x, gamma, mean, rstd, N, C, S);
    snprintf(label, sizeof label, "%s dx", p);
    tu_close_grad(label, dx, rdx, n);
    snprintf(label, sizeof label, "%s dgamma", p);
    tu_close_grad(label, dg, rdg, C);
    snprintf(label, sizeof label, "%s dbeta", p);
    tu_close_grad(label, db, rdb, C);
    nn_batchnorm_backward(dx, dg, db, dy, x, gamma, mean, rstd, N, C, S);
    snprintf(label, sizeof label, "%s dx", p);
    tu_close_twice(label, dx, rdx, n);
    snprintf(label, sizeof label, "%s dgamma", p);
    tu_close_twice(label, dg, rdg, C);

    free(x), free(gamma), free(beta), free(dy), free(rm), free(rv), free(ry), free(rdx), free(rmean);
    free(rvar), free(rm1), free(rv1), free(rdg), free(rdb), free(y), free(mean), free(rstd), free(dx);
    free(dg), free(db), free(rrstd);
}

static void test_batchnorm2d_train(void **state) {
    (void)state;
    run_batchnorm_train("bn2d.train");
}

static void test_batchnorm1d_train(void **state) {
    (void)state;
    run_batchnorm_train("bn1d.train");
}

static void test_batchnorm2d_eval(void **state) {
    (void)state;
    const st_tensor *tx = tu_ref_find("bn2d.eval.x");
    int N = (int)tx->shape[0], C = (int)tx->shape[1], S = (int)(tx->shape[2] * tx->shape[3]);
    size_t n = (size_t)N * C * S;
    float *x = tu_ref_get("bn2d.eval.x"), *gamma = tu_ref_get("bn2d.eval.gamma"), *beta = tu_ref_get("bn2d.eval.beta");
    float *rm = tu_ref_get("bn2d.eval.running_mean"), *rv = tu_ref_get("bn2d.eval.running_var");
    float *ry = tu_ref_get_shaped(4, tx->shape, "bn2d.eval.y");
    float *rm0 = t2i_malloc(C * sizeof(float)), *rv0 = t2i_malloc(C * sizeof(float));
    memcpy(rm0, rm, C * sizeof(float));
    memcpy(rv0, rv, C * sizeof(float));
    float *y = tu_zeros(n);
    nn_batchnorm_forward(y, NULL, NULL, x, gamma, beta, rm, rv, N, C, S, 1e-5f, 0.1f, 0);
    tu_close_fwd("bn2d.eval y", y, ry, n);
    /* evaluation must not touch the running statistics */
    assert_memory_equal(rm, rm0, C * sizeof(float));
    assert_memory_equal(rv, rv0, C * sizeof(float));
    free(x), free(gamma), free(beta), free(rm), free(rv), free(ry), free(rm0), free(rv0), free(y);
}

static void test_layernorm(void **state) {
    (void)state;
    const st_tensor *tx = tu_ref_find("layernorm.a.x");
    int C = (int)tx->shape[tx->ndim - 1];
    size_t n = tx->numel, N = n / C;
    float *x = tu_ref_get("layernorm.a.x"), *w = tu_ref_get("layernorm.a.w"), *b = tu_ref_get("layernorm.a.b");
    float *dy = tu_ref_get("layernorm.a.dy");
    float *ry = tu_ref_get_shaped(tx->ndim, tx->shape, "layernorm.a.y");
    float *rdx = tu_ref_get_shaped(tx->ndim, tx->shape, "layernorm.a.dx");
    float *rdw = tu_ref_get_shaped(1, SHAPE(C), "layernorm.a.dw"), *rdb = tu_ref_get_shaped(1, SHAPE(C), "layernorm.a.db");
    float *y = tu_zeros(n), *mean = tu_zeros(N), *rstd = tu_zeros(N), *dx = tu_zeros(n), *dw = tu_zeros(C), *db = tu_zeros(C);
    nn_layernorm_forward(y, mean, rstd, x, w, b, N, C, 1e-5f);
    tu_close_fwd("layernorm y", y, ry, n);
    nn_layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
    tu_close_grad("layernorm dx", dx, rdx, n);
    tu_close_grad("layernorm dw", dw, rdw, C);
    tu_close_grad("layernorm db", db, rdb, C);
    nn_layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
    tu_close_twice("layernorm dx", dx, rdx, n);
    tu_close_twice("layernorm dw", dw, rdw, C);
    tu_close_twice("layernorm db", db, rdb, C);
    free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb);
    free(y), free(mean), free(rstd), free(dx), free(dw), free(db);
}

static void test_groupnorm(void **state) {
    (void)state;
    const int G = 3; /* nn.GroupNorm(3, 6) in the script */
    const st_tensor *tx = tu_ref_find("groupnorm.g3.x");
    int N = (int)tx->shape[0], C = (int)tx->shape[1], S = (int)(tx->shape[2] * tx->shape[3]);
    size_t n = tx->numel;
    float *x = tu_ref_get("groupnorm.g3.x"), *g = tu_ref_get("groupnorm.g3.gamma"), *b = tu_ref_get("groupnorm.g3.beta");
    float *dy = tu_ref_get("groupnorm.g3.dy");
    float *ry = tu_ref_get_shaped(4, tx->shape, "groupnorm.g3.y"), *rdx = tu_ref_get_shaped(4, tx->shape, "groupnorm.g3.dx");
    float *rdg = tu_ref_get_shaped(1, SHAPE(C), "groupnorm.g3.dgamma");
    float *rdb = tu_ref_get_shaped(1, SHAPE(C), "groupnorm.g3.dbeta");
    float *y = tu_zeros(n), *mean = tu_zeros((size_t)N * G), *rstd = tu_zeros((size_t)N * G), *dx = tu_zeros(n);
    float *dg = tu_zeros(C), *db = tu_zeros(C);
    nn_groupnorm_forward(y, mean, rstd, x, g, b, N, C, S, G, 1e-5f);
    tu_close_fwd("groupnorm y", y, ry, n);
    nn_groupnorm_backward(dx, dg, db, dy, x, g, mean, rstd, N, C, S, G);
    tu_close_grad("groupnorm dx", dx, rdx, n);
    tu_close_grad("groupnorm dgamma", dg, rdg, C);
    tu_close_grad("groupnorm dbeta", db, rdb, C);
    nn_groupnorm_backward(dx, dg, db, dy, x, g, mean, rstd, N, C, S, G);
    tu_close_twice("groupnorm dx", dx, rdx, n);
    tu_close_twice("groupnorm dgamma", dg, rdg, C);
    free(x), free(g), free(b), free(dy), free(ry), free(rdx), free(rdg), free(rdb);
    free(y), free(mean), free(rstd), free(dx), free(dg), free(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm2d_train),
        cmocka_unit_test(test_batchnorm1d_train),
        cmocka_unit_test(test_batchnorm2d_eval),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_groupnorm),
    };
    return cmocka_run_group_tests(tests, tu_ref_setup, tu_ref_teardown);
}
