/* ops_ref.h - naive reference versions of the BLAS-backed kernels in ops.c.
 *
 * Direct loops in double, written for clarity, not speed; used only by the tests to
 * check the im2col/GEMM/batched implementations (STYLE rule 3). Same signatures and
 * semantics as the ops.h kernels (backward adds into gradients), minus scratch.
 */
#ifndef T2I_OPS_REF_H
#define T2I_OPS_REF_H

#include <stddef.h>

#include "ops.h"

void nn_ref_linear_forward(float *out, const float *inp, const float *w, const float *b, size_t N,
                           int IN, int OUT);
void nn_ref_conv2d_forward(float *out, const float *inp, const float *w, const float *b, const nn_conv *s);
void nn_ref_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const nn_conv *s);
void nn_ref_conv_transpose2d_forward(float *out, const float *inp, const float *w, const float *b,
                                     const nn_conv *s);
void nn_ref_attention_forward(float *out, const float *qkv, int B, int T, int C, int NH, int causal);

#endif
