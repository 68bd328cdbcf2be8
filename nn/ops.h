/* ops.h - the layers of the t2i core: forward and backward kernels as plain functions.
 *
 * Layout: float32, row-major; images NCHW; sequences (B, T, C). Argument order follows
 * llm.c: outputs first, then what backward needs saved, then inputs, weights, sizes.
 * Backward kernels ADD into every gradient they produce (dinp, dweight, dbias), so the
 * caller zeroes gradients once per step; any gradient pointer may be NULL to skip it
 * (for example dinp of a first layer, or dweight of a frozen network).
 *
 * Weight layouts are PyTorch's, so checkpoints map one to one:
 *   Linear            w (out, in), b (out)                    y = x w^T + b
 *   Conv2d            w (OC, C, KH, KW), b (OC)
 *   ConvTranspose2d   w (C, OC, KH, KW), b (OC)
 *   norms             weight/bias (C)
 *   Embedding         w (V, C)
 *
 * Kernels never allocate: scratch comes from the caller (sizes given by *_scratch
 * functions), usually from an nn_arena. GEMMs go through nn_gemm (cblas_sgemm); loops
 * over independent items are OpenMP-parallel and write disjoint memory. Every
 * BLAS-backed op has a naive reference (nn_ref_*) in ops_ref.c that the tests compare
 * with; nothing else uses those.
 *
 * Files, by family: ops.c (GEMM, Linear, Embedding, activations, dropout), ops_conv.c,
 * ops_norm.c, ops_shape.c (adds, concat, pixel shuffle, upsampling, pooling),
 * ops_attention.c (softmax, attention), ops_loss.c, ops_augment.c (minibatch stddev,
 * augmentation); each backward's derivation is in its file.
 */
#ifndef T2I_OPS_H
#define T2I_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/* ---- GEMM ----
 * C (M, N) = alpha * op(A) op(B) + beta * C, row-major; op transposes when ta/tb.
 * nn_gemm may use all threads; call nn_gemm_serial inside an OpenMP parallel region. */
void nn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);
void nn_gemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

/* ---- Packed weights (packed.c) ----
 * A Linear's weight w (N out, K in) packed once for many products with few rows (the
 * decode steps of sampling, a caption through CLIP's text tower):
 * out (M, N) = (accumulate ? out : 0) + bias + in (M, K) w^T; bias may be NULL. Uses all
 * threads when the product is large enough; the packed copy does not follow later changes
 * to w. When every weight is exactly a bf16 (a model loaded from a bf16 checkpoint) or
 * a finite f16 (OpenAI's fp16 weights), the copy keeps them in that form, half the bytes
 * to read, and widens them in registers: the results are the same bits as from an f32
 * copy. */
typedef enum { NN_PK_F32, NN_PK_BF16, NN_PK_F16 } nn_pk_dtype;
typedef struct {
    int N, K, np;      /* np panels */
    nn_pk_dtype dtype; /* how the panels are stored */
    float *w;          /* (np, K, 48) f32 panels, or NULL when w16 holds them */
    uint16_t *w16;     /* the same as bf16 or f16 */
} nn_packed;
void nn_pack_weights(nn_packed *p, const float *w, int N, int K);
void nn_packed_free(nn_packed *p);
void nn_packed_gemm(float *out, const float *in, const nn_packed *p, const float *bias, int M, int accumulate);

/* ---- Linear ----  inp (N, IN) -> out (N, OUT); b may be NULL. */
void nn_linear_forward(float *out, const float *inp, const float *w, const float *b, size_t N, int IN,
                       int OUT);
void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, size_t N, int IN, int OUT);

/* ---- Convolutions ----
 * One shape struct describes both Conv2d (C -> OC, H x W -> OH x OW) and
 * ConvTranspose2d (C -> OC, H x W -> OH x OW with OH = (H-1)*stride - 2*pad + KH + out_pad). */
typedef struct {
    int N, C, H, W;      /* input */
    int OC, OH, OW;      /* output */
    int KH, KW, stride, pad;
} nn_conv;

nn_conv nn_conv2d_shape(int N, int C, int H, int W, int OC, int K, int stride, int pad);
nn_conv nn_conv_transpose2d_shape(int N, int C, int H, int W, int OC, int K, int stride, int pad,
                                  int out_pad);
/* Floats of scratch needed by forward and backward (the same bound serves both), for
 * the thread count of the first call (a later rise in threads is not used by them). */
size_t nn_conv2d_scratch(const nn_conv *s);
/* The smaller scratch of the forward pass alone (inference). */
size_t nn_conv2d_forward_scratch(const nn_conv *s);
/* Floats of one im2col block of Conv2d (0 restores the default, 256K); a
 * smaller one splits images into bands of rows. Tests lower it to exercise the bands.
 * Set before sizing scratch. */
void nn_set_conv_block_floats(size_t floats);
/* The code path Conv2d's tile kernels take now: "baseline", "avx2" or "avx512". */
const char *nn_conv_path(void);
size_t nn_conv_transpose2d_scratch(const nn_conv *s);
size_t nn_conv_transpose2d_forward_scratch(const nn_conv *s);

/* inp (N, C, H, W), w (OC, C, KH, KW), b (OC) or NULL -> out (N, OC, OH, OW) */
void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                       const nn_conv *s);
void nn_conv2d_backward(float *dinp, float *dw, float *db, float *scratch, const float *dout,
                        const float *inp, const float *w, const nn_conv *s);
/* The im2col matrix of one image x (s->C, s->H, s->W) of conv s, for output rows [oh0, oh1) only:
 * col (C*KH*KW, (oh1 - oh0)*OW), zeros for taps outside the image. Single-threaded: for
 * callers that split a large image into bands of rows across threads. */
void nn_im2col_rows(float *col, const float *x, const nn_conv *s, int oh0, int oh1);
/* Winograd F(2x2, 3x3) for a 3x3 stride-1 pad-1 convolution of one image (winograd.c;
 * inference only). nn_winograd_weights transforms w (OC, C, 3, 3) into U (16, OC, C),
 * once per layer. nn_winograd_rows computes output rows [r0, r0 + nr) of x (C, H, W) into
 * out, which points at output row r0 of channel 0, channels ostride floats apart, rows W
 * apart (ostride = H*W for a whole output image, nr*W for a band buffer). Single-threaded
 * (run bands on several threads), scratch of nn_winograd_scratch(C, OC, W, nr) floats. */
void nn_winograd_weights(float *U, const float *w, int OC, int C);
size_t nn_winograd_scratch(int C, int OC, int W, int nr);
void nn_winograd_rows(float *out, size_t ostride, const float *x, int C, int H, int W, const float *U, const float *b,
                      int OC, int r0, int nr, float *scratch);
/* inp (N, C, H, W), w (C, OC, KH, KW), b (OC) or NULL -> out (N, OC, OH, OW) */
void nn_conv_transpose2d_forward(float *out, float *scratch, const float *inp, const float *w,
                                 const float *b, const nn_conv *s);
void nn_conv_transpose2d_backward(float *dinp, float *dw, float *db, float *scratch,
                                  const float *dout, const float *inp, const float *w,
                                  const nn_conv *s);

/* ---- Normalisation ----
 * BatchNorm over x (N, C, S) with S = H*W (S = 1 for BatchNorm1d on (N, C)).
 * Training: normalise with the batch's biased variance, save mean and rstd (C),
 * update running_mean/var (C) with momentum (PyTorch: 0.1) using the unbiased variance.
 * Evaluation: normalise with the running statistics (mean/rstd unused, may be NULL). */
void nn_batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, float *running_mean, float *running_var, int N, int C,
                          int S, float eps, float momentum, int training);
void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int S);
/* LayerNorm over the last dimension: x (N, C); mean, rstd (N). */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, size_t N, int C, float eps);
void nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t N, int C);
/* GroupNorm: x (N, C, S), G groups; mean, rstd (N, G); gamma/beta (C). */
void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int N, int C, int S, int G, float eps);
void nn_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int S, int G);

/* ---- Embedding ----  ids (N) in [0, V) -> out (N, C). */
void nn_embedding_forward(float *out, const int *ids, const float *w, size_t N, int V, int C);
void nn_embedding_backward(float *dw, const float *dout, const int *ids, size_t N, int V, int C);

/* ---- Elementwise activations ----  (n elements; out may alias inp in forward).
 * Backward takes the forward input (or output where noted) and adds into dinp. */
typedef enum {
    NN_ACT_NONE,
    NN_ACT_RELU,
    NN_ACT_LEAKY_RELU,  /* slope given separately */
    NN_ACT_GELU_TANH,
    NN_ACT_GELU_ERF,
    NN_ACT_QUICK_GELU,  /* x * sigmoid(1.702 x), as OpenAI's CLIP */
    NN_ACT_SILU,
    NN_ACT_TANH,
    NN_ACT_SIGMOID,
} nn_act;

void nn_act_forward(float *out, const float *inp, size_t n, nn_act act, float slope);
/* dinp += dout * act'(inp). inp is the forward input. dinp == dout is allowed and means
 * in place: dinp = dout * act'(inp). */
void nn_act_backward(float *dinp, const float *dout, const float *inp, size_t n, nn_act act,
                     float slope);
const char *nn_act_name(nn_act act);
/* Parses "relu", "gelu", "gelu_tanh", "quick_gelu", ...; returns -1 if unknown. */
int nn_act_parse(const char *name);

/* Dropout (inverted, as PyTorch): mask (n) holds 0 or 1/(1-p). p = 0 copies. */
void nn_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p, t2i_rng *rng);
void nn_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* ---- Structural ---- */
/* out = a + b (n elements); backward is dout added to both, see nn_add_inplace. */
void nn_add_forward(float *out, const float *a, const float *b, size_t n);
/* y += x */
void nn_add_inplace(float *y, const float *x, size_t n);
/* y (N, C): every row += b (C). */
void nn_add_bias_rows(float *y, const float *b, size_t N, int C);
/* Concatenate along channels: a (N, Ca, S), b (N, Cb, S) -> out (N, Ca+Cb, S). */
void nn_concat_forward(float *out, const float *a, const float *b, int N, int Ca, int Cb, int S);
void nn_concat_backward(float *da, float *db, const float *dout, int N, int Ca, int Cb, int S);
/* Each of N (R, C) matrices transposed: out[n, c, r] = inp[n, r, c] (NCHW maps <-> token
 * rows). Its backward is the same call with R and C swapped. */
void nn_transpose_batched(float *out, const float *inp, int N, int R, int C);
/* PixelShuffle(r): (N, C*r*r, H, W) -> (N, C, H*r, W*r). */
void nn_pixel_shuffle_forward(float *out, const float *inp, int N, int C, int H, int W, int r);
void nn_pixel_shuffle_backward(float *dinp, const float *dout, int N, int C, int H, int W, int r);
/* Nearest upsampling by an integer factor: (N, C, H, W) -> (N, C, H*f, W*f). */
void nn_upsample_nearest_forward(float *out, const float *inp, int N, int C, int H, int W, int f);
void nn_upsample_nearest_backward(float *dinp, const float *dout, int N, int C, int H, int W, int f);
/* AvgPool2d(k, stride, no padding): (N, C, H, W) -> (N, C, OH, OW), OH = (H-k)/stride+1. */
void nn_avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int k, int stride);
void nn_avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int k,
                           int stride);

/* ---- GAN discriminator helpers (ops_augment.c) ----
 * Minibatch standard deviation: inp (N, C, S) in groups of G consecutive items (N a
 * multiple of G) -> out (N, C + 1, S), the extra channel holding the group's mean over
 * (C, S) of the per-feature standard deviation across the group; sd (N/G, C*S) saves
 * those deviations for backward. */
void nn_mbstd_forward(float *out, float *sd, const float *inp, int N, int C, int S, int G);
void nn_mbstd_backward(float *dinp, const float *dout, const float *inp, const float *sd, int N, int C, int S, int G);
/* Differentiable augmentation (DiffAugment's colour, translation and cutout) of images
 * (N, C, H, W) with per-item draws; each is affine in the image, so gradients reach
 * whatever made it (the generator). nn_augment_draw draws the parameters of N items for
 * a policy (NN_AUG_* bits; an unset bit leaves that step the identity); forward must not
 * alias out and inp; backward adds into dinp. */
enum { NN_AUG_COLOR = 1, NN_AUG_TRANSLATION = 2, NN_AUG_CUTOUT = 4 };
typedef struct {
    float bright, sat, contrast; /* x + bright; saturation and contrast factors (1: none) */
    int tx, ty;                  /* shift in pixels (right, down); zeros come in */
    int cx, cy, cw, ch;          /* cutout box: columns [cx, cx + cw), rows [cy, cy + ch); cw 0: none */
} nn_aug_item;
void nn_augment_draw(nn_aug_item *p, int N, int H, int W, int policy, t2i_rng *rng);
void nn_augment_forward(float *out, const float *inp, const nn_aug_item *p, int N, int C, int H, int W);
void nn_augment_backward(float *dinp, const float *dout, const nn_aug_item *p, int N, int C, int H, int W);

/* ---- Softmax over the last dimension ----  x (N, C). */
void nn_softmax_forward(float *out, const float *inp, size_t N, int C);
/* dinp += out * (dout - sum(dout * out)) */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, size_t N, int C);

/* ---- Multi-head self-attention core ----
 * qkv (B, T, 3C) holds q, k, v side by side (as a fused projection produces them; head h
 * of q is columns [h*hs, (h+1)*hs)). out (B, T, C) = softmax(q k^T / sqrt(hs) + mask) v
 * with heads concatenated. att (B, NH, T, T) saves the probabilities for backward
 * (masked entries are 0). causal selects the lower-triangular mask.
 * Scratch: nn_attention_scratch floats. */
size_t nn_attention_scratch(int B, int T, int C, int NH);
void nn_attention_forward(float *out, float *att, float *scratch, const float *qkv, int B, int T,
                          int C, int NH, int causal);
void nn_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH);

/* Key/value cache for incremental decoding: k, v (B, NH, Tmax, hs); len positions filled. */
typedef struct {
    int B, NH, Tmax, hs;
    int len;
    float *k, *v;
} nn_kv_cache;
/* qkv (B, Tn, 3C) are the projections of Tn new positions that follow cache->len
 * earlier ones. Appends their k and v, attends causally over all len+Tn positions,
 * writes out (B, Tn, C). scratch: nn_attention_cached_scratch floats. */
size_t nn_attention_cached_scratch(int B, int Tn, int Tmax, int NH);
void nn_attention_cached_forward(float *out, float *scratch, nn_kv_cache *cache, const float *qkv,
                                 int Tn);

/* ---- Losses ----
 * Every loss returns the scalar loss and, if dinp is non-NULL, ADDS scale * dloss/dinp
 * (scale lets a caller weight or split a loss without another pass). */
/* Mean BCE-with-logits of logits (n) against targets (n) in [0, 1]. */
float nn_bce_logits(float *dinp, const float *logits, const float *targets, size_t n, float scale);
/* Same with one target value for all (1 for real, 0 for fake, 0.9 for smoothing). */
float nn_bce_logits_const(float *dinp, const float *logits, float target, size_t n, float scale);
/* Cross-entropy of logits (N, V) against targets (N). Positions whose target equals
 * ignore_index contribute nothing. With weights == NULL the loss is the mean over
 * counted positions (PyTorch's reduction='mean'); with weights (N) it is
 * sum_i weights[i] * ce_i (the caller normalises the weights). */
float nn_cross_entropy(float *dinp, const float *logits, const int *targets, const float *weights,
                       size_t N, int V, int ignore_index, float scale);
float nn_mse(float *dinp, const float *x, const float *y, size_t n, float scale);
float nn_l1(float *dinp, const float *x, const float *y, size_t n, float scale);

/* ---- Patch embedding (ops_patch.c) ----
 * A Conv2d whose stride equals its kernel P, without bias (a ViT's patch embedding), with
 * the output as a sequence of patch vectors: inp (N, C, H, W), H and W multiples of P;
 * w (OC, C, P, P) as Conv2d; out (N, G, OC) with G = (H/P) (W/P) patches in row-major grid
 * order (patch g = gy * (W/P) + gx). patches (N*G, C*P*P) receives each patch in the
 * weight's (c, ky, kx) order, as backward needs it; out = patches w^T is one GEMM.
 * Backward: dw (OC, C*P*P) += dout^T patches; dinp += each row of dout w put back at its
 * patch (patches do not overlap, so this is im2col's adjoint without sums). dinp needs
 * scratch of nn_patch_embed_scratch floats (none when dinp is NULL). */
size_t nn_patch_embed_scratch(int N, int C, int H, int W, int P);
void nn_patch_embed_forward(float *out, float *patches, const float *inp, const float *w, int N, int C, int H, int W,
                            int P, int OC);
void nn_patch_embed_backward(float *dinp, float *dw, float *scratch, const float *dout, const float *patches,
                             const float *w, int N, int C, int H, int W, int P, int OC);

#endif
