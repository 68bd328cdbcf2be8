/* test_fastmath.c - the vectorisable exp/tanh/erf of nn/fastmath.h against libm over
 * dense grids, within the bounds stated in that header. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "fastmath.h"

static void test_exp(void **state) {
    (void)state;
    double worst = 0;
    for (double x = -87.0; x <= 88.0; x += 0.001) {
        double want = exp((float)x), got = t2i_expf((float)x);
        double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
    }
    printf("exp: max relative error %.3g\n", worst);
    assert_true(worst < 2.5e-7);
    assert_true(t2i_expf(-200.0f) < 1e-37f);
    assert_true(t2i_expf(0.0f) == 1.0f);
}

static void test_tanh_erf(void **state) {
    (void)state;
    double wt = 0, we = 0;
    for (double x = -12.0; x <= 12.0; x += 0.0005) {
        double t = fabs(t2i_tanhf((float)x) - tanh((float)x));
        double e = fabs(t2i_erff((float)x) - erf((float)x));
        if (t > wt) wt = t;
        if (e > we) we = e;
    }
    printf("tanh: max abs error %.3g, erf: %.3g\n", wt, we);
    assert_true(wt < 3e-7);
    assert_true(we < 4e-7);
    /* odd symmetry and tiny arguments */
    assert_true(t2i_tanhf(-0.3f) == -t2i_tanhf(0.3f));
    assert_float_equal(t2i_tanhf(1e-6f), 1e-6, 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_exp), cmocka_unit_test(test_tanh_erf)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
