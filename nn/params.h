/* params.h - named parameters in planned blocks, and a scratch arena.
 *
 * A model registers every tensor it owns (name, shape, trainable or buffer) in an
 * nn_params, then calls nn_params_alloc once: one block holds all values, one all
 * gradients, and the optimizer lazily adds one block per moment (nn_params_moments).
 * Tensors are then addressed by the index nn_params_add returned:
 *
 *     nn_params ps; nn_params_init(&ps);
 *     int iw = nn_params_add(&ps, "fc.weight", 2, (int[]){out, in}, NN_TRAIN);
 *     nn_params_alloc(&ps);
 *     float *w = nn_params_val(&ps, iw), *dw = nn_params_grad(&ps, iw);  (allocates grads)
 *
 * Buffers (BatchNorm running statistics, a VQ codebook updated by EMA, spectral-norm
 * vectors) are saved in checkpoints but skipped by optimizers and gradient clipping.
 * Every tensor starts 64-byte aligned.
 *
 * nn_arena is a bump allocator for activations and scratch. A model sizes it before the
 * first step (nn_arena_reserve); nn_arena_reset rewinds it between steps. If a step needs
 * more than was reserved, allocation continues in further blocks (marks and rewinds keep
 * working across them), the high-water mark of live bytes is recorded and, at the next
 * reset, the blocks are replaced by one of the peak size, so steady-state steps never
 * call malloc and the planned size converges to what a step really needs.
 */
#ifndef T2I_PARAMS_H
#define T2I_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define NN_MAX_DIMS 6
#define NN_NAME_MAX 128

enum { NN_TRAIN = 1, NN_BUFFER = 0 };

typedef struct {
    char name[NN_NAME_MAX];
    int ndim;
    int shape[NN_MAX_DIMS];
    size_t numel;
    size_t offset;   /* in floats, into data/grad/m/v; a multiple of 16 */
    int trainable;
    int no_decay;    /* AdamW skips weight decay (biases, norms, embeddings by choice) */
} nn_param;

typedef struct {
    nn_param *p;
    int n, cap;
    size_t total;    /* floats in each block, including alignment padding */
    float *data;     /* values */
    float *grad;     /* gradients, same layout (NULL until first needed) */
    float *m, *v;    /* optimizer moments (NULL until nn_params_moments) */
    int grad_synced; /* a data-parallel step summed grad over the processes (collective.h) */
} nn_params;

void nn_params_init(nn_params *ps);
void nn_params_free(nn_params *ps);
/* Register a tensor; returns its index. Only before nn_params_alloc. Names are unique. */
int nn_params_add(nn_params *ps, const char *name, int ndim, const int *shape, int trainable);
/* Allocate the value block, zero-filled. The gradient block is allocated (zeroed) on the
 * first nn_params_grad / nn_params_zero_grad / optimizer step, so inference-only models
 * never hold one. */
void nn_params_alloc(nn_params *ps);
void nn_params_ensure_grad(nn_params *ps);
/* Allocate (zeroed) first and second moment blocks if absent. */
void nn_params_moments(nn_params *ps);
int nn_params_find(const nn_params *ps, const char *name); /* -1 if absent */
float *nn_params_val(nn_params *ps, int i);
float *nn_params_grad(nn_params *ps, int i);
size_t nn_params_count(const nn_params *ps, int trainable_only); /* number of scalars */
void nn_params_zero_grad(nn_params *ps);
/* In a data-parallel step (collective.h): sums the gradient block over the processes and
 * scales it by the hook's grad_scale, once between two nn_params_zero_grad calls (the
 * optimizer step and gradient clipping call it first). Without a hook: nothing. */
void nn_params_sync_grad(nn_params *ps);
/* Copy values between two stores with identical registrations (for EMA copies). */
void nn_params_copy_values(nn_params *dst, const nn_params *src);

typedef struct {
    char *mem;
    size_t cap, used;
} nn_arena_blk;

typedef struct {
    nn_arena_blk *blk;      /* blk[0] is the planned block; more only after an overflow */
    int nblk, cur;          /* blocks allocated, block being filled */
    size_t live;            /* bytes handed out and not rewound */
    size_t peak;            /* high-water mark of live, bytes */
    int spilled;            /* an allocation went past blk[0] since the last reset */
} nn_arena;

void nn_arena_init(nn_arena *a);
void nn_arena_reserve(nn_arena *a, size_t bytes);
/* 64-byte aligned floats; contents undefined. Never NULL. */
float *nn_arena_floats(nn_arena *a, size_t n);
/* Same, zero-filled. */
float *nn_arena_zeros(nn_arena *a, size_t n);
void *nn_arena_bytes(nn_arena *a, size_t n);
/* Position marks, to free scratch inside a step: rewinds to a mark from nn_arena_mark. */
size_t nn_arena_mark(const nn_arena *a);
void nn_arena_rewind(nn_arena *a, size_t mark);
void nn_arena_reset(nn_arena *a);
void nn_arena_free(nn_arena *a);
/* Bytes of the planned block, and bytes currently handed out. */
size_t nn_arena_capacity(const nn_arena *a);
size_t nn_arena_in_use(const nn_arena *a);

#endif
