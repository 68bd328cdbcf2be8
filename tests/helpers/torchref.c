/* torchref.c - see torchref.h. */
#include "torchref.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base.h"
#include "testutil.h"

st_file tu_ref;
static char ref_name[256]; /* the open file, for messages */

int tu_ref_open(const char *rel) {
    char *p = tu_path(rel);
    snprintf(ref_name, sizeof ref_name, "%s", rel);
    int rc = st_open(&tu_ref, p);
    if (rc) fprintf(stderr, "%s\n", t2i_error_msg());
    free(p);
    return rc;
}

static const st_tensor *find_v(const char *fmt, va_list ap) {
    char name[256];
    vsnprintf(name, sizeof name, fmt, ap);
    const st_tensor *t = st_find(&tu_ref, name);
    if (!t) fprintf(stderr, "%s: tensor %s missing\n", ref_name, name);
    assert_non_null(t);
    return t;
}

const st_tensor *tu_ref_find(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const st_tensor *t = find_v(fmt, ap);
    va_end(ap);
    return t;
}

float *tu_ref_get(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const st_tensor *t = find_v(fmt, ap);
    va_end(ap);
    float *x = t2i_malloc((t->numel ? t->numel : 1) * sizeof(float));
    assert_int_equal(st_read_f32(&tu_ref, t, x, t->numel), 0);
    return x;
}

float *tu_ref_read(const char *name, size_t *n) {
    const st_tensor *t = tu_ref_find("%s", name);
    float *x = t2i_malloc((t->numel ? t->numel : 1) * sizeof(float));
    assert_int_equal(st_read_f32(&tu_ref, t, x, t->numel), 0);
    if (n) *n = t->numel;
    return x;
}

float *tu_ref_get_shaped(int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *x = t2i_malloc((n ? n : 1) * sizeof(float));
    int rc = st_load_f32(&tu_ref, name, x, ndim, shape);
    if (rc != 0) fprintf(stderr, "%s\n", t2i_error_msg());
    assert_int_equal(rc, 0);
    return x;
}

int32_t *tu_ref_get_ids(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const st_tensor *t = find_v(fmt, ap);
    va_end(ap);
    int32_t *x = t2i_malloc(t->numel * sizeof(int32_t));
    assert_int_equal(st_read_i32(&tu_ref, t, x, t->numel), 0);
    return x;
}


void tu_close_fwd(const char *what, const float *got, const float *want, size_t n) {
    tu_assert_close(what, got, want, n, FWD_ATOL, FWD_RTOL);
}

void tu_close_grad(const char *what, const float *got, const float *want, size_t n) {
    tu_assert_close(what, got, want, n, GRAD_ATOL, GRAD_RTOL);
}

void tu_close_twice(const char *what, const float *got, const float *want, size_t n) {
    float *w2 = t2i_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) w2[i] = 2.0f * want[i];
    char label[160];
    snprintf(label, sizeof label, "%s (accumulated twice)", what);
    tu_assert_close(label, got, w2, n, 2.0f * GRAD_ATOL, GRAD_RTOL);
    free(w2);
}

int tu_ref_setup(void **state) {
    (void)state;
    return tu_ref_open("data/ops_ref.safetensors");
}

int tu_ref_teardown(void **state) {
    (void)state;
    st_close(&tu_ref);
    return 0;
}

float *tu_init_w(t2i_rng *r, size_t n, int fan_in) {
    float *w = t2i_malloc(n * sizeof(float));
    float a = 1.0f / sqrtf((float)fan_in);
    t2i_rng_fill_uniform(r, w, n, -a, a);
    return w;
}

