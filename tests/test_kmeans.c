/* test_kmeans.c - balanced k-means (nn/kmeans.h): cluster sizes, recovery of separated
 * groups, sizes forced equal on unequal groups, values by hand, determinism. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "kmeans.h"

/* Four groups of 50 points in 3-d around corners 10 apart (noise 0.5), stored
 * interleaved (point i in group i % 4): the clusters must be the groups exactly, whatever
 * the labels' order, with their centres within 0.3 of the corners. */
static void test_recovers_groups(void **state) {
    (void)state;
    enum { N = 200, D = 3, K = 4 };
    const float corner[K][D] = {{0, 0, 0}, {10, 0, 0}, {0, 10, 0}, {0, 0, 10}};
    float X[N * D], C[K * D];
    int a[N];
    t2i_rng r;
    t2i_rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) X[i * D + j] = corner[i % K][j] + 0.5f * t2i_rng_normal(&r);
    int rounds = nn_kmeans_balanced(a, C, X, N, D, K, 50, &r);
    assert_true(rounds >= 1 && rounds < 50); /* settled */
    int map[K];
    for (int g = 0; g < K; g++) map[g] = a[g];
    for (int g = 0; g < K; g++)
        for (int h = g + 1; h < K; h++) assert_int_not_equal(map[g], map[h]);
    for (int i = 0; i < N; i++) assert_int_equal(a[i], map[i % K]);
    for (int g = 0; g < K; g++)
        for (int j = 0; j < D; j++) assert_true(fabsf(C[map[g] * D + j] - corner[g][j]) < 0.3f);
}

/* 1-d points 0..5 and 100..101 (6 near 0, 2 near 100) in K = 2 clusters: balanced means 4
 * and 4, so the two points of 0..5 nearest 100 (4 and 5) join 100 and 101. Plain k-means
 * would give 6 and 2. Centres by hand: (0+1+2+3)/4 = 1.5, (4+5+100+101)/4 = 52.5. */
static void test_sizes_forced_equal(void **state) {
    (void)state;
    float X[8] = {0, 1, 2, 3, 4, 5, 100, 101}, C[2];
    int a[8];
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    nn_kmeans_balanced(a, C, X, 8, 1, 2, 20, &r);
    int hi = a[7];
    for (int i = 0; i < 8; i++) assert_int_equal(a[i], i >= 4 ? hi : 1 - hi);
    assert_float_equal(C[1 - hi], 1.5f, 1e-6f);
    assert_float_equal(C[hi], 52.5f, 1e-6f);
}

/* n not a multiple of K: sizes differ by at most one (n / K, the first n % K one more),
 * and the same generator state gives the same answer. */
static void test_uneven_and_deterministic(void **state) {
    (void)state;
    enum { N = 1003, D = 5, K = 7 };
    float *X = t2i_malloc(N * D * sizeof(float));
    int a[N], b[N], cnt[K] = {0};
    t2i_rng r, s;
    t2i_rng_seed(&r, 11);
    for (int i = 0; i < N * D; i++) X[i] = t2i_rng_normal(&r);
    t2i_rng_seed(&r, 5), t2i_rng_seed(&s, 5);
    nn_kmeans_balanced(a, NULL, X, N, D, K, 10, &r);
    nn_kmeans_balanced(b, NULL, X, N, D, K, 10, &s);
    for (int i = 0; i < N; i++) {
        assert_true(a[i] >= 0 && a[i] < K);
        assert_int_equal(a[i], b[i]);
        cnt[a[i]]++;
    }
    for (int k = 0; k < K; k++) assert_int_equal(cnt[k], N / K + (k < N % K));
    free(X);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovers_groups),
        cmocka_unit_test(test_sizes_forced_equal),
        cmocka_unit_test(test_uneven_and_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
