/* vq.h - the VQ-VAE image tokenizer of the DALL-E-style path: images -> a grid of codes
 * from a learned codebook, and back.
 *
 * Architecture (preset "b5" = bench/README.md B5 exactly; "custom" changes the
 * sizes in brackets). Images are (C, R, R) in [-1, 1] (C = 3, R = 32); codes form a
 * (R/4) x (R/4) grid (8 x 8).
 *   Encoder "enc" (an nn_seq):
 *     Conv3x3 p1 (C, w1[64]) ReLU
 *     Conv4x4 s2 p1 (w1, w2[128]) ReLU
 *     Conv4x4 s2 p1 (w2, w2) ReLU
 *     n_res[2] x residual block: x + Conv1x1(h, w2)(ReLU(Conv3x3 p1 (w2, h[128])(ReLU(x))))
 *     Conv1x1 (w2, D[64])                                   -> z (D, R/4, R/4)
 *   Quantizer: each z vector (one per grid cell) is replaced by its nearest codebook row
 *     (K[512] x D, squared Euclidean distance |z|^2 - 2 z.e + |e|^2 through one GEMM,
 *     ties to the lowest index)                             -> q (D, R/4, R/4)
 *   Decoder "dec" (an nn_seq), the encoder mirrored:
 *     Conv3x3 p1 (D, w2)
 *     n_res x the same residual block
 *     ReLU
 *     ConvTranspose4x4 s2 p1 (w2, w2) ReLU
 *     ConvTranspose4x4 s2 p1 (w2, w1) ReLU
 *     Conv3x3 p1 (w1, C)                                    -> reconstruction (no tanh:
 *                                                              clamped when saved)
 *   All convolutions have biases; PyTorch default initialisation. Parameter names follow
 *   nn_seq ("enc.<layer>.weight", "dec.<layer>.bias"); the quantizer's buffers are
 *   "vq.codebook" (K, D), "vq.ema_count" (K) and "vq.ema_sum" (K, D).
 *
 * Training (vq_train_step), as VQ-VAE with EMA codebook updates (van den Oord et al.,
 * appendix; Laplace smoothing as Sonnet's VectorQuantizerEMA):
 *   loss = MSE(dec(q), x) + beta * mean((z - sg(q))^2)              beta[0.25]
 *   straight-through estimator: dL/dz = dL/dq (decoder's input gradient) + 2 beta (z - q) / n
 *   the codebook gets no gradient; after each step, with n_k the batch count of code k
 *   and s_k the sum of the z vectors assigned to it:
 *     count_k = decay count_k + (1 - decay) n_k;  sum_k = decay sum_k + (1 - decay) s_k
 *     N = sum_k count_k;  e_k = sum_k / ((count_k + eps) / (N + K eps) * N)
 *   (decay[0.99], eps[1e-5]; the stored counts stay unsmoothed).
 *   Dead-code restarts: codes whose EMA count is below a threshold are set to encoder
 *   outputs of the current batch drawn at random (distinct rows while they last), with
 *   count 1 and sum = that vector. The model starts with all counts 0; the trainer's first
 *   step restarts every code, which initialises the codebook from data.
 *
 * Usage (the transformer path):
 *     vq_model m;
 *     if (vq_load(&m, "runs/vq/checkpoint.safetensors", 0, NULL) != 0) die(t2i_error_msg());
 *     nn_arena a; nn_arena_init(&a);
 *     int32_t *codes = ...;  // N * vq_grid(&m) * vq_grid(&m)
 *     vq_encode(&m, &a, images, N, codes);   // images (N, 3, 32, 32) in [-1, 1]
 *     vq_decode(&m, &a, codes, N, images);   // codes in [0, vq_n_codes(&m))
 *     vq_model_free(&m);
 * vq_encode/vq_decode run in evaluation mode through the model's inference workspaces
 * and leave the arena as they found it.
 *
 * Failures: vq_load and vq_config_from_json return -1 with the error set (missing file,
 * not a t2i checkpoint, another model type, bad config, tensor missing or of another
 * shape). Misuse (codes out of range given to vq_decode, shape mismatch) trips
 * T2I_ASSERT: commands validate user data first.
 */
#ifndef T2I_VQ_H
#define T2I_VQ_H

#include <stddef.h>
#include <stdint.h>

#include "infer.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "seq.h"

typedef struct {
    char preset[16];      /* "b5" or "custom" */
    int channels, res;    /* input images: channels (1 or 3) and side (multiple of 4) */
    int width1, width2;   /* encoder widths before and after the first downsampling */
    int res_hidden;       /* inner channels of a residual block */
    int n_res;            /* residual blocks in the encoder and in the decoder */
    int code_dim;         /* D */
    int n_codes;          /* K */
    float beta;           /* commitment weight */
    float decay;          /* EMA decay of the codebook statistics */
    float eps;            /* Laplace smoothing of the EMA counts */
} vq_config;

typedef struct {
    vq_config cfg;
    nn_params ps;         /* encoder + decoder weights (trainable) and the quantizer buffers */
    nn_seq enc, dec;
    int i_codebook;       /* (K, D) */
    int i_count;          /* (K)    EMA of per-batch code counts */
    int i_sum;            /* (K, D) EMA of per-batch sums of assigned vectors */
    int grid;             /* res / 4 */
    /* inference workspaces of vq_encode / vq_decode (nn/infer.h): exact kernels, so that
     * codes and images equal the training forward's; enc_ws.kernels / dec_ws.kernels =
     * NN_INFER_FAST selects the banded convolutions instead. They hold the plans only:
     * each call's buffers come from the caller's arena (nn_infer_run_in) */
    nn_infer enc_ws, dec_ws;
    /* training updates the decoder only (set by the trainer, not saved with the model): the
     * encoder gets no gradient, the codebook no restart and no EMA update, so every image
     * keeps its codes and a transformer trained on them stays valid */
    int decoder_only;
} vq_model;

void vq_config_b5(vq_config *c);
/* Validates sizes; the b5 preset must have exactly B5's sizes. -1 with a message. */
int vq_config_check(const vq_config *c);
char *vq_config_to_json(const vq_config *c); /* caller frees */
int vq_config_from_json(vq_config *c, const char *json);

/* Builds and allocates; weights drawn from rng (PyTorch defaults), codebook U(-1/K, 1/K),
 * EMA counts and sums 0. */
void vq_model_build(vq_model *m, const vq_config *cfg, t2i_rng *rng);
void vq_model_free(vq_model *m);

static inline int vq_grid(const vq_model *m) { return m->grid; }
static inline int vq_n_codes(const vq_model *m) { return m->cfg.n_codes; }
static inline int vq_code_dim(const vq_model *m) { return m->cfg.code_dim; }
/* Multiply-adds x 2 of one image through encoder + quantizer + decoder (forward). */
double vq_flops_per_image(const vq_model *m);

/* ---- the quantizer as plain functions (rows are (M, D) vectors) ---- */

/* Floats of scratch vq_nearest needs for M rows and K codes. */
size_t vq_nearest_scratch(size_t M, int K);
/* idx (M) <- argmin_k |z_i - e_k|^2 (lowest k on ties); mind (M, or NULL) <- that distance
 * (as computed: |z|^2 - 2 z.e + |e|^2, may be slightly negative through rounding). */
void vq_nearest(int32_t *idx, float *mind, float *scratch, const float *z, const float *codebook, size_t M, int K,
                int D);
/* EMA update of the codebook from rows z (M, D) assigned to idx (see the header block).
 * batch_count (K) and batch_sum (K, D) are caller scratch; they hold n_k and s_k after. */
void vq_ema_update(float *codebook, float *ema_count, float *ema_sum, float *batch_count, float *batch_sum,
                   const float *z, const int32_t *idx, size_t M, int K, int D, float decay, float eps);
/* Restarts every code with ema_count < threshold (INFINITY: all codes) from random rows of
 * z; perm is caller scratch of M ints. Returns the number of codes restarted. */
int vq_restart_codes(float *codebook, float *ema_count, float *ema_sum, int K, int D, const float *z, size_t M,
                     float threshold, t2i_rng *rng, int *perm);
/* Perplexity exp(-sum p log p) of counts (K) and the number of nonzero counts. */
float vq_perplexity(const float *counts, int K, int *used);

/* NCHW (N, D, S) <-> rows (N*S, D) */
void vq_nchw_to_rows(float *rows, const float *x, int N, int D, int S);
void vq_rows_to_nchw(float *x, const float *rows, int N, int D, int S);

/* ---- training ---- */

enum { VQ_RESTART_NONE = 0, VQ_RESTART_DEAD = 1, VQ_RESTART_ALL = 2 };

typedef struct {
    float loss, recon, commit; /* commit is the beta-weighted term */
    float perplexity;          /* of this batch's code counts */
    int codes_used;            /* distinct codes in this batch */
    int restarted;             /* codes restarted before this step */
} vq_stats;

/* What one vq_loss_backward leaves (pointers into the arena). */
typedef struct {
    float *z;        /* encoder output (N, D, g, g) */
    float *zr;       /* the same as rows (N*g*g, D) */
    float *q;        /* quantized (N, D, g, g) */
    int32_t *idx;    /* codes (N*g*g) */
    float *xr;       /* reconstruction (N, C, R, R) */
    float *dz;       /* dL/dz (N, D, g, g) */
} vq_pass;

/* Forward and backward of the loss on x (N images): restarts codes first when restart is
 * VQ_RESTART_DEAD (threshold) or VQ_RESTART_ALL, then adds every trainable tensor's
 * gradient into m->ps.grad (the caller zeroes them) and fills st (without the EMA update:
 * perplexity/codes_used come from this batch's assignment). pass may be NULL. */
void vq_loss_backward(vq_model *m, nn_arena *a, const float *x, int N, int restart, float threshold, t2i_rng *rng,
                      vq_stats *st, vq_pass *pass);
/* One training step: arena reset, zero grad, vq_loss_backward, optimizer update of the
 * encoder and decoder, EMA update of the codebook (m->decoder_only: the decoder's update
 * alone; the encoder's gradients stay zero, so a fresh Adam leaves it unchanged). */
void vq_train_step(vq_model *m, nn_optim *opt, nn_arena *a, const float *x, int N, int restart, float threshold,
                   t2i_rng *rng, vq_stats *st);

/* ---- inference (evaluation mode) ---- */

/* images (N, C, R, R) -> codes (N, g, g). */
void vq_encode(vq_model *m, nn_arena *a, const float *x, int N, int32_t *codes);
/* codes (N, g, g) in [0, K) -> images (N, C, R, R) (unclamped). */
void vq_decode(vq_model *m, nn_arena *a, const int32_t *codes, int N, float *out);

/* ---- checkpoints (model "vq") ---- */

/* state_json may be NULL; with_optimizer saves the Adam moments. */
int vq_save(const vq_model *m, const char *path, const char *state_json, int with_optimizer);
/* Loads config + weights (+ moments); m must be unbuilt. *state_json (may be NULL) gets a
 * heap copy of the training state, or NULL if the file has none. */
int vq_load(vq_model *m, const char *path, int with_optimizer, char **state_json);

/* ---- codes files (written by `t2i vq encode`) ----
 * Tensors "codes" (N, g, g) int32, "index" (N) int32 (item index in the source) and
 * optionally "labels" (N) int32; metadata "source" (the data spec), "vq" (the checkpoint
 * path), "config" (the VQ config JSON), "n_codes", "grid". */
typedef struct {
    int n, grid, n_codes;
    int32_t *codes;       /* (n, grid, grid) */
    int32_t *index;       /* (n) */
    int32_t *labels;      /* (n) or NULL */
    char *source, *vq, *config;
} vq_codes;
/* Reads and validates a codes file (shapes, every code in [0, n_codes)); -1 with a message
 * naming the file otherwise. */
int vq_codes_load(vq_codes *c, const char *path);
void vq_codes_free(vq_codes *c);

/* `t2i vq train|encode|decode|eval` */
int vq_cmd(int argc, char **argv);

#endif
