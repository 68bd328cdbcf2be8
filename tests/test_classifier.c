/* test_classifier.c - the Fashion-MNIST classifier's checkpoint config (eval/classifier.c):
 * written as {"n_classes":N,"features":F} through its field table and read back by
 * cls_load; a missing, mistyped or out-of-range field is refused by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "ckpt.h"
#include "classifier.h"
#include "safetensors.h"
#include "testutil.h"

static cls_model g_model; /* the weights every damaged config is saved with */
static char *g_path;

/* cls_load of a checkpoint holding g_model's weights and json as its config */
static int read_cls_config(const char *json) {
    nn_ckpt_part part = {&g_model.ps, "", 0, 0};
    nn_ckpt_meta meta = {"classifier", json, NULL, NULL, NULL, 0, ST_F32};
    assert_int_equal(nn_ckpt_save(g_path, &part, 1, &meta), 0);
    cls_model m;
    int rc = cls_load(&m, g_path);
    if (rc == 0) cls_free(&m);
    return rc;
}

static void test_config(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    g_path = t2i_asprintf("%s/cls.safetensors", dir);
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    cls_build(&g_model, 10, &r);
    assert_int_equal(cls_save(&g_model, g_path, NULL), 0);
    st_file f;
    assert_int_equal(st_open(&f, g_path), 0);
    char *want = t2i_asprintf("{\"n_classes\":10,\"features\":%d}", CLS_FEATURES);
    assert_string_equal(st_meta(&f, "config"), want);
    st_close(&f);
    cls_model m;
    assert_int_equal(cls_load(&m, g_path), 0);
    assert_int_equal(m.n_classes, 10);
    cls_free(&m);
    tu_config_refusals(want, read_cls_config, NULL);
    assert_int_equal(read_cls_config("{\"n_classes\":10,\"features\":64}"), -1);
    assert_non_null(strstr(t2i_error_msg(), "cls.safetensors: classifier config: 'features' = 64 is outside"));
    free(want);
    cls_free(&g_model);
    free(g_path);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_config)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
