/* infer.h - the inference path of nn_seq networks: a planned interpreter that keeps no
 * activations it no longer needs.
 *
 * nn_seq_forward keeps every layer's input and output for a backward pass; inference walks
 * the same layer list with a few reusable buffers instead:
 *   - a buffer is reference-counted: the running activation holds one reference, an open
 *     residual block (res_begin) another, so an activation that is also a skip input is
 *     never overwritten in place;
 *   - elementwise layers (activations, eval-mode BatchNorm, conditional BatchNorm,
 *     GroupNorm, the residual addition) run in place when nothing else holds the buffer;
 *     reshape, dropout and res_begin cost nothing.
 * A call first plans: for its batch N, input size (in_C, H, W), thread count and CPU path
 * it lists the steps (layer, shapes, buffers, kernel) and sizes every buffer; the plan is
 * kept, so further calls of the same size allocate nothing, and no call allocates inside
 * the layer loop. Convolution stacks may be run at any H, W (the SR upscaler's tiles);
 * a network with Linear or reshape layers only at the size it was built for.
 *
 * Two sets of kernels:
 *   NN_INFER_EXACT  every layer through the core's forward ops with the same batching as
 *                   nn_seq_forward (one im2col + GEMM over the batch, grouped by the conv
 *                   scratch budget): outputs are bit-identical to nn_seq_forward(training 0).
 *                   The GAN and VQ models run so.
 *   NN_INFER_FAST   stride-1 "same" convolutions with an odd kernel are computed per image
 *                   on bands of output rows, the bands spread over the threads, each with
 *                   its own scratch and a single-threaded GEMM: 3x3 by Winograd F(2x2, 3x3)
 *                   (winograd.c: 2.25x fewer multiplications), others by im2col of the band;
 *                   those with at most 4 outputs (an image's last layer) directly with the
 *                   sums in AVX2 registers when the CPU has AVX2 + FMA (T2I_NO_AVX2=1 turns
 *                   that off); a convolution followed by PixelShuffle writes its bands
 *                   straight to the shuffled positions. Results differ from nn_seq_forward
 *                   by float rounding (Winograd's transforms, FMA, another summation order;
 *                   tests/test_infer.c states the bounds). The SR upscaler runs so; other
 *                   layers take the exact ops.
 * nn_infer.ran tells which convolution kernels the last call used (NN_INFER_RAN_*).
 *
 *     nn_infer w; nn_infer_init(&w, NN_INFER_EXACT);
 *     float *x = nn_infer_input(&w, &g, N, g.in_H, g.in_W);    fill x (N, in_C, H, W)
 *     const float *y = nn_infer_run(&w, &g, x, cond, N, g.in_H, g.in_W);
 *     ... y (N, C, OH, OW) stays valid until the next call ...
 *     nn_infer_free(&w);
 * A zero-filled nn_infer is an empty workspace of the exact kernels; w.kernels may be
 * changed between calls. The workspace names
 * no network: one may serve several in turn (each change of network or size re-plans).
 * Weights are read at every call, so a model may change between calls (an EMA update).
 */
#ifndef T2I_INFER_H
#define T2I_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "seq.h"

typedef enum { NN_INFER_EXACT, NN_INFER_FAST } nn_infer_kernels;

enum {
    NN_INFER_RAN_GEMM = 1,     /* a convolution by im2col + GEMM over the batch (exact) */
    NN_INFER_RAN_WINOGRAD = 2, /* banded Winograd F(2x2, 3x3) */
    NN_INFER_RAN_BANDED = 4,   /* banded im2col + GEMM */
    NN_INFER_RAN_DIRECT = 8,   /* the direct AVX2 + FMA kernel */
};

#define NN_INFER_SLOTS 6
#define NN_INFER_MAX_THREADS 64

/* One step of a plan (internal to infer.c; in the header only to size nn_infer). */
typedef struct {
    int layer;              /* index in the network */
    int C, H, W;            /* input shape per item */
    int OC, OH, OW;         /* output shape per item */
    int in, out, skip;      /* buffers: a slot, or -1 for the caller's input */
    int shuffle;            /* FAST: PixelShuffle factor fused into this convolution (1: none) */
    int kernel;             /* NN_INFER_RAN_* of a convolution */
} nn_infer_step;

/* A plan's buffers: their sizes in floats, and where they are for the running call. */
typedef struct {
    size_t slot[NN_INFER_SLOTS], scratch, wt, tscratch[NN_INFER_MAX_THREADS], band[NN_INFER_MAX_THREADS];
} nn_infer_sizes;
typedef struct {
    float *slot[NN_INFER_SLOTS], *scratch, *wt, *tscratch[NN_INFER_MAX_THREADS], *band[NN_INFER_MAX_THREADS];
} nn_infer_bufs;

typedef struct {
    nn_infer_kernels kernels;
    /* the plan and what it was made for */
    const nn_seq *seq;
    uint64_t seq_hash;      /* of its layer list: a network rebuilt at the same address re-plans */
    int N, H, W, threads, avx2, planned;
    nn_infer_kernels plan_kernels;
    nn_infer_step step[NN_SEQ_MAX];
    int nstep, out;         /* output buffer: a slot, or -1 (the input itself) */
    /* buffers: activations (slots); exact-op scratch and statistics; rearranged weights;
     * FAST's per-thread scratch and bands */
    nn_infer_sizes need;    /* what the plan takes */
    nn_infer_bufs own;      /* the workspace's own buffers, and their capacities */
    nn_infer_sizes cap;
    nn_infer_bufs buf;      /* the running call's: own, or carved from the caller's arena */
    float *in;              /* nn_infer_input's buffer */
    size_t in_cap;
    long allocs;            /* buffer (re)allocations so far */
    unsigned ran;           /* NN_INFER_RAN_* bits of the last call */
} nn_infer;

void nn_infer_init(nn_infer *w, nn_infer_kernels kernels);
void nn_infer_free(nn_infer *w);
/* A workspace buffer for the input of a call on N items of (s->in_C, H, W), for callers
 * that would otherwise copy it from a buffer of their own. Valid until the next
 * nn_infer_input or nn_infer_free. */
float *nn_infer_input(nn_infer *w, const nn_seq *s, int N, int H, int W);
/* Plans for N items of (s->in_C, H, W) now: steps and buffer sizes, nothing allocated
 * (nn_infer_run plans when needed and allocates when the plan outgrew the workspace). */
void nn_infer_plan(nn_infer *w, const nn_seq *s, int N, int H, int W);
/* Runs s on x (N, in_C, H, W) in evaluation mode; cond (N, cond_dim) for conditional
 * BatchNorm layers, else NULL. Returns the output (N, C, OH, OW), in the workspace (or x
 * itself for a network that computes nothing); valid until the next call. */
const float *nn_infer_run(nn_infer *w, const nn_seq *s, const float *x, const float *cond, int N, int H, int W);
/* As nn_infer_run, with every buffer of the call carved from the arena a at its current
 * position instead of from the workspace: for a model that already holds an arena planned
 * for training, so that inference takes no memory beside it (the workspace keeps only the
 * plan). The output lives in the arena: the caller marks before and rewinds after use. */
const float *nn_infer_run_in(nn_infer *w, nn_arena *a, const nn_seq *s, const float *x, const float *cond, int N,
                             int H, int W);
/* Floats a call of the current plan takes (from the workspace or from an arena), after
 * nn_infer_plan. */
size_t nn_infer_plan_floats(const nn_infer *w);
/* Output shape per item for an input (s->in_C, H, W). */
void nn_infer_out_shape(const nn_seq *s, int H, int W, int *C, int *OH, int *OW);
/* "exact" / "fast", and the kernels of the last call ("gemm winograd direct-avx2"). */
const char *nn_infer_kernels_name(nn_infer_kernels k);
void nn_infer_describe_ran(const nn_infer *w, char *buf, size_t n);

#endif
