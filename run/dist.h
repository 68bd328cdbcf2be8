/* dist.h - data-parallel runs under MPI: who I am, and the few collectives training needs.
 *
 * `mpirun -np N t2i gan train ...` starts N processes ("ranks") of the same command. Each
 * calls t2i_dist_init (the trainer scaffold does), which joins the MPI job when the process
 * was started by mpirun and otherwise, or in a build without MPI (CMake option T2I_MPI),
 * is a single process of rank 0 among 1: every function below then does nothing (the sums
 * and gathers leave or copy the data as they are), so a single-process run does exactly
 * the arithmetic it did before MPI existed.
 *
 * What a data-parallel step shares (docs/DISTRIBUTED.md):
 *   - t2i_dist_step_begin/end bracket each training step and install the core's hook
 *     (nn/collective.h) in between: BatchNorm uses the global batch's statistics, and the
 *     optimizer steps average each parameter block's gradients over the ranks;
 *   - t2i_dist_slice gives rank r its rows of a global batch (every rank runs the same
 *     global shuffle and draws the global batch's random numbers, then keeps its slice);
 *   - a trainer averages its reported losses (t2i_dist_mean) and gathers what a loss over
 *     the global batch needs (CLIP's embeddings: t2i_dist_gather).
 * Every rank must make the same collective calls in the same order.
 *
 * Test switches (environment, read once by t2i_dist_init; they make a run deliberately
 * wrong, so that the tests can show that their comparison would catch it):
 *   T2I_DIST_BREAK=bn     BatchNorm keeps per-rank statistics
 *   T2I_DIST_BREAK=grad   gradients are not averaged over the ranks
 *   T2I_DIST_BREAK=scale  gradients are summed over the ranks but not divided by their number
 *   T2I_DIST_BREAK=loss   CLIP's contrastive loss is per rank (no gathered embeddings)
 *   T2I_DIST_BREAK=codebook  the VQ codebook's EMA and restarts use the rank's rows alone
 *   T2I_DIST_BREAK=ragan  SR's relativistic means are the rank's rows' alone
 */
#ifndef T2I_DIST_H
#define T2I_DIST_H

#include <stddef.h>

/* Joins the MPI job when started by mpirun (idempotent); ranks above 0 stop writing to
 * stdout. Returns 0, or 1 after printing why MPI could not start. */
int t2i_dist_init(void);
/* MPI_Finalize after a successful run (every rank calls it). */
void t2i_dist_finalize(void);
/* Stops the whole job: prints "t2i: rank R of N: MESSAGE" and aborts every rank with status. */
_Noreturn void t2i_dist_abort(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int t2i_dist_rank(void);
int t2i_dist_size(void);
/* Was this build made with MPI? */
int t2i_dist_available(void);
/* A test switch of T2I_DIST_BREAK ("bn", "grad", "scale", "loss", "codebook", "ragan") is on (never in one
 * process). */
int t2i_dist_broken(const char *what);

/* Rank r's rows [lo, hi) of a global batch of B items: ranks take consecutive equal shares
 * (the first B % N ranks one more). */
void t2i_dist_slice(int B, int *lo, int *hi);

/* In place, the same result on every rank: sums, means over the ranks, any non-zero. */
void t2i_dist_sum_floats(float *buf, size_t n);
void t2i_dist_sum_doubles(double *buf, size_t n);
void t2i_dist_mean(double *buf, size_t n);
int t2i_dist_any(int flag);
/* all = the ranks' rows in rank order: rank r contributes counts[r] rows of width floats
 * (mine); counts has size() entries. */
void t2i_dist_gather(const float *mine, const int *counts, size_t width, float *all);
/* The root's bytes to every rank. */
void t2i_dist_bcast(void *buf, size_t bytes, int root);
void t2i_dist_barrier(void);
/* Seconds this rank spent in sums and gathers since t2i_dist_init (waiting for slower ranks
 * included), the bytes it contributed to them (a sum of n floats counts 4n, a gather the
 * gathered result) and their number. Zero in one process. */
void t2i_dist_comm(double *seconds, double *bytes, double *calls);

/* Around each training step: the core's collective hook (nn/collective.h) in a job of more
 * than one rank, gradients scaled by grad_scale after their sum (1/N for equal shares). */
void t2i_dist_step_begin(float grad_scale);
void t2i_dist_step_end(void);

#endif
