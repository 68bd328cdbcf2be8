/* test_params.c - the parameter store (alignment, names, counts) and the arena: bump
 * allocation, marks and rewinds (also across overflow blocks), the high-water mark, and
 * consolidation into one block so that a repeated step stops allocating. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "params.h"

static void test_store(void **state) {
    (void)state;
    nn_params ps;
    nn_params_init(&ps);
    int a = nn_params_add(&ps, "a.weight", 2, (int[]){3, 5}, NN_TRAIN);
    int b = nn_params_add(&ps, "a.running_mean", 1, (int[]){7}, NN_BUFFER);
    int c = nn_params_add(&ps, "b.bias", 1, (int[]){1}, NN_TRAIN);
    nn_params_alloc(&ps);
    assert_int_equal(nn_params_find(&ps, "a.running_mean"), b);
    assert_int_equal(nn_params_find(&ps, "nope"), -1);
    assert_int_equal(nn_params_count(&ps, 0), 15 + 7 + 1);
    assert_int_equal(nn_params_count(&ps, 1), 16);
    for (int i = 0; i < 3; i++) {
        assert_int_equal((uintptr_t)nn_params_val(&ps, i) % 64, 0); /* every tensor 64-byte aligned */
        assert_int_equal((uintptr_t)nn_params_grad(&ps, i) % 64, 0);
    }
    nn_params_val(&ps, a)[14] = 1.5f;
    nn_params_val(&ps, c)[0] = 2.5f;
    assert_true(nn_params_val(&ps, a)[14] == 1.5f); /* tensors do not overlap */
    nn_params_free(&ps);
}

static void test_arena(void **state) {
    (void)state;
    nn_arena a;
    nn_arena_init(&a);
    nn_arena_reserve(&a, 1000);
    assert_int_equal(nn_arena_capacity(&a), 1024);
    char *p = nn_arena_bytes(&a, 100); /* rounded to 128 */
    assert_int_equal((uintptr_t)p % 64, 0);
    size_t m = nn_arena_mark(&a);
    char *q = nn_arena_bytes(&a, 500);
    assert_ptr_equal(q, p + 128);
    nn_arena_rewind(&a, m);
    assert_ptr_equal(nn_arena_bytes(&a, 64), q); /* rewind gives the space back */
    nn_arena_rewind(&a, m);
    /* overflow: 3000 bytes do not fit; marks still work across blocks */
    size_t m2 = nn_arena_mark(&a);
    char *big = nn_arena_bytes(&a, 3000);
    memset(big, 1, 3000);
    assert_int_equal(nn_arena_in_use(&a), 128 + 3008);
    nn_arena_rewind(&a, m2);
    assert_int_equal(nn_arena_in_use(&a), 128);
    char *small = nn_arena_bytes(&a, 64);
    assert_ptr_equal(small, p + 128); /* back in the first block */
    nn_arena_reset(&a);
    /* the next step gets one block holding the high-water mark (128 + 3008 bytes) */
    assert_true(nn_arena_capacity(&a) >= 3136);
    char *x = nn_arena_bytes(&a, 128);
    char *y = nn_arena_bytes(&a, 3000);
    assert_ptr_equal(y, x + 128); /* contiguous now: no overflow */
    assert_int_equal(a.nblk, 1);
    nn_arena_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_store), cmocka_unit_test(test_arena)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
