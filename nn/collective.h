/* collective.h - the core's hook for data-parallel training (no MPI here).
 *
 * The core never talks to other processes. Where a layer's arithmetic spans the whole
 * batch (BatchNorm's batch sums in training) or a parameter block's gradients must be
 * averaged over the processes of a data-parallel run, it calls the hook that the caller
 * installed (run/dist.c installs one for the duration of each training step under MPI):
 *
 *     nn_collective c = {.size = N, .grad_scale = 1.0f / N, .sum_doubles = f, .sum_floats = g, .ctx = p};
 *     nn_collective_set(&c);  ... step ...  nn_collective_set(NULL);
 *
 * With no hook installed (the default, and every single-process run) the core does exactly
 * the local arithmetic it always did: the same code path, bit for bit.
 *
 * With a hook, every process holds a slice of the global batch and runs the same calls in
 * the same order (the sums are collective: a process that skips one hangs the others).
 *   - BatchNorm in training normalises with the global batch's mean and variance, and its
 *     backward uses the global sums of dy and dy*xhat (nn/ops_norm.c has the derivation);
 *     the gamma/beta gradients stay local sums, averaged with the rest below.
 *   - nn_params_sync_grad (called by nn_optim_step, nn_clip_grad_norm, nn_grad_norm) sums
 *     a block's gradients over the processes once after each nn_params_zero_grad and scales
 *     them by grad_scale: 1/N when each process's loss is the mean over its equal slice, so
 *     that the result is the gradient of the mean over the global batch.
 */
#ifndef T2I_COLLECTIVE_H
#define T2I_COLLECTIVE_H

#include <stddef.h>

typedef struct {
    int rank, size;
    float grad_scale; /* applied to summed gradients */
    void *ctx;
    /* in place: buf[i] = sum over processes of buf[i]; every process gets the same values */
    void (*sum_doubles)(void *ctx, double *buf, size_t n);
    void (*sum_floats)(void *ctx, float *buf, size_t n);
    int no_bn_sync;   /* test switch: BatchNorm keeps per-process statistics (a wrong run) */
    int no_grad_sync; /* test switch: gradients stay per-process (a wrong run) */
} nn_collective;

/* Installs c (copied; NULL removes the hook). */
void nn_collective_set(const nn_collective *c);
/* The installed hook, or NULL in a single process. */
const nn_collective *nn_collective_get(void);

#endif
