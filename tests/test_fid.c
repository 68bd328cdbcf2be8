/* test_fid.c - FID and KID against numpy (tests/ref/gen_fid_ref.py), and their basic
 * properties: FID of a set with itself is 0, a shifted set adds |shift|^2, KID grows
 * with the shift. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "fid.h"

static void features(float *a, float *b) {
    for (int i = 0; i < 50; i++)
        for (int j = 0; j < 8; j++) a[i * 8 + j] = (float)(sin(0.37 * i + 1.3 * j) + 0.1 * j);
    for (int i = 0; i < 60; i++)
        for (int j = 0; j < 8; j++) b[i * 8 + j] = (float)(cos(0.21 * i + 0.7 * j) * (1 + 0.05 * j) + 0.3);
}

static void test_fid_reference(void **state) {
    (void)state;
    float a[400], b[480];
    features(a, b);
    double fid = fid_features(a, 50, b, 60, 8);
    assert_float_equal(fid, 7.3777117704, 1e-4); /* numpy float64 */
    assert_float_equal(fid_features(a, 50, a, 50, 8), 0.0, 1e-6);
    /* shifting every feature by 0.5 adds 8 * 0.25 to the mean term only */
    float s[400];
    for (int i = 0; i < 400; i++) s[i] = a[i] + 0.5f;
    assert_float_equal(fid_features(a, 50, s, 50, 8), 2.0, 1e-4);
}

static void test_kid_reference(void **state) {
    (void)state;
    float a[400], b[480];
    features(a, b);
    double m, sd;
    kid_features(a, 50, b, 50, 8, 1, 50, 7, &m, &sd); /* one subset of everything: deterministic */
    assert_float_equal(m, 0.9373634647, 1e-5);
    /* a larger shift of the same set gives a larger KID */
    float s1[400], s2[400];
    for (int i = 0; i < 400; i++) s1[i] = a[i] + 0.25f, s2[i] = a[i] + 1.0f;
    double m1, m2;
    kid_features(a, 50, s1, 50, 8, 1, 50, 7, &m1, &sd);
    kid_features(a, 50, s2, 50, 8, 1, 50, 7, &m2, &sd);
    assert_true(m2 > m1 + 0.1);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fid_reference), cmocka_unit_test(test_kid_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
