/* torchref.h - the PyTorch reference files of the tests (tests/test_ops*.c, test_sr.c)
 * and the ops tests' tolerances.
 *
 * tests/data/ops_ref.safetensors, written by tests/ref/gen_ops_ref.py (torch 1.13,
 * float32), holds inputs, parameters, a random upstream gradient dy, the module's output
 * y and its autograd gradients, under names "<op>.<case>.<what>". tu_ref_setup and
 * tu_ref_teardown (cmocka group fixtures) open and close it as tu_ref; the getters take a
 * printf-style name, assert that the tensor exists and return a t2i_malloc'd copy.
 *
 * Tolerances (|ours - torch| <= atol + rtol |torch|, elementwise):
 *   forward  1e-5 + 1e-4 rel   (float32 both sides; sums of at most ~100 terms)
 *   gradient 1e-4 + 1e-3 rel   (longer reductions, different summation order)
 *   losses   1e-5 + 1e-4 rel on the scalar, gradient tolerance on dx
 *   optimizers 1e-6 absolute on the parameters after each of three steps
 */
#ifndef T2I_TORCHREF_H
#define T2I_TORCHREF_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "safetensors.h"

#define FWD_ATOL 1e-5f
#define FWD_RTOL 1e-4f
#define GRAD_ATOL 1e-4f
#define GRAD_RTOL 1e-3f
#define OPT_ATOL 1e-6f

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

extern st_file tu_ref;
int tu_ref_setup(void **state);
int tu_ref_teardown(void **state);
/* Opens another reference file (a path under tests/) as tu_ref: for tests whose models
 * have a file of their own (data/sr_ref.safetensors, data/patch_ref.safetensors); close it
 * with tu_ref_teardown. 0, or -1 after printing the error. */
int tu_ref_open(const char *rel);

const st_tensor *tu_ref_find(const char *fmt, ...);
/* Reads a tensor whatever its shape (for inputs; the caller takes the shape from it). */
float *tu_ref_get(const char *fmt, ...);
/* Reads a tensor by its exact name whatever its shape; *n (if not NULL) its element count. */
float *tu_ref_read(const char *name, size_t *n);
/* Reads a tensor that must have the given shape (for outputs and gradients). */
float *tu_ref_get_shaped(int ndim, const int64_t *shape, const char *fmt, ...);
int32_t *tu_ref_get_ids(const char *fmt, ...);

void tu_close_fwd(const char *what, const float *got, const float *want, size_t n);
void tu_close_grad(const char *what, const float *got, const float *want, size_t n);
/* After a second backward call into the same buffers: got must be 2 * want. */
void tu_close_twice(const char *what, const float *got, const float *want, size_t n);

/* Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch's default init (t2i_malloc'd). */
float *tu_init_w(t2i_rng *r, size_t n, int fan_in);

#endif
