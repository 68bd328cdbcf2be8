/* testutil.h - shared helpers for the cmocka tests.
 *
 * Paths: tu_path("data/x") resolves against the tests/ folder of the source tree
 * ($T2I_SOURCE_DIR/tests); tu_clip_merges() is OpenAI's merges file carried in the tree
 * (clip_rerank/vocab/).
 *
 * Gradient checking (tu_gradcheck): the scalar L = sum_i out[i] * r[i], with r a fixed
 * random vector, is differentiated two ways - by the kernel's backward given dout = r, and
 * by central differences (L(x+h) - L(x-h)) / 2h accumulated in double - for every
 * element of every checked input (or a random sample of 256 for large ones). An element
 * passes if |analytic - numeric| <= atol + rtol * |numeric|. Forward passes run in float,
 * so h and the tolerances are chosen per op (typical: h = 1e-2, atol = 2e-3, rtol = 2e-2);
 * a wrong backward (missing term, wrong sign, transposed weight) is off by O(1).
 */
#ifndef T2I_TESTUTIL_H
#define T2I_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "rng.h"
#include "safetensors.h"

const char *tu_source_dir(void);
char *tu_path(const char *rel);    /* heap string */
char *tu_clip_merges(void);        /* heap string */
/* A fresh empty temporary folder (removed by tu_rmtree). */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* How many names in dir contain ".tmp." (temporary files of atomic writes). */
int tu_count_tmp(const char *dir);

/* Writes n bytes to path (asserting every step). */
void tu_write_bytes(const char *path, const void *data, size_t n);
/* Big-endian uint32 at p (IDX and PNG headers). */
void tu_put_be32(uint8_t *p, uint32_t v);
int tu_contains(const char *hay, const char *needle); /* strstr(hay, needle) != NULL */
/* Fails the test (at the caller's line) unless t2i_error_msg() contains needle. */
#define tu_assert_error_contains(needle)                                                                     \
    do {                                                                                                     \
        if (!tu_contains(t2i_error_msg(), (needle)))                                                         \
            fail_msg("error '%s' lacks '%s'", t2i_error_msg(), (needle));                                    \
    } while (0)
/* A JSON object's number / string field; the test fails when it is missing or of
 * another type. */
int tu_jint(const cJSON *o, const char *key);
const char *tu_jstr(const cJSON *o, const char *key);
/* A tensor of a safetensors file as floats (t2i_malloc'd; *n its count, n may be NULL);
 * the test fails when the file has no such tensor or it cannot be read. */
float *tu_st_read_f32(const st_file *f, const char *name, size_t *n);
uint32_t tu_f32_bits(float x);

float *tu_randn(t2i_rng *r, size_t n, float std);
float *tu_zeros(size_t n); /* at least one float, so that n = 0 still gives a buffer */

typedef struct {
    const char *name;
    float *x;      /* the input, perturbed in place */
    float *dx;     /* its gradient buffer (zeroed by tu_gradcheck before backward) */
    size_t n;
} tu_var;

typedef void (*tu_fn)(void *ctx);

/* fwd(ctx) must fill out (nout floats) from the current inputs; bwd(ctx) must read dout
 * (nout floats, set by the checker) and add gradients into every var's dx. Returns the
 * number of failing elements (0 = pass) and prints the worst one per var. */
int tu_gradcheck(const char *what, void *ctx, tu_fn fwd, tu_fn bwd, tu_var *vars, int nvars,
                 const float *out, float *dout, size_t nout, float h, float atol, float rtol);

/* max |a - b| and the index where it occurs */
float tu_max_abs_diff(const float *a, const float *b, size_t n, size_t *where);
/* Asserts |a - b| <= atol + rtol |b| elementwise (b the reference); prints the worst. */
void tu_assert_close(const char *what, const float *a, const float *b, size_t n, float atol, float rtol);

/* A model config's reader against damaged copies of a good config's JSON text: for every
 * key, the key removed (refused unless the key is in optional, a space-separated list), its
 * value replaced by a value of another type (7 for a string, "x" otherwise) and by -1e9;
 * each refusal's message must name 'key'. read returns 0 or -1 with the message set. */
typedef int (*tu_config_reader)(const char *json);
void tu_config_refusals(const char *json, tu_config_reader read, const char *optional);

#endif
