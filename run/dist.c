/* dist.c - MPI behind dist.h; a single process when built without MPI or run without mpirun. */
#include "dist.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "collective.h"

#ifdef T2I_HAVE_MPI
#include <mpi.h>
#endif

static int g_init, g_rank, g_size = 1;
#ifdef T2I_HAVE_MPI
static int g_mpi; /* MPI_Init was called (and MPI_Finalize not yet) */
#endif
static char g_break[64];
static double g_comm_seconds, g_comm_bytes, g_comm_calls; /* in collectives, since t2i_dist_init */

#ifdef T2I_HAVE_MPI
/* Was this process started by an MPI launcher? (Without one, MPI_Init would start a
 * one-rank "singleton" job: slower to start, and nothing to share.) */
static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}
#endif

int t2i_dist_init(void) {
    if (g_init) return 0;
    g_init = 1;
    const char *b = getenv("T2I_DIST_BREAK");
    snprintf(g_break, sizeof g_break, "%s", b ? b : "");
#ifdef T2I_HAVE_MPI
    if (!launched()) return 0;
    int provided = 0;
    /* OpenMP threads compute; only the main thread calls MPI */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "t2i: MPI_Init failed\n");
        return 1;
    }
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    /* errors end the job with a message instead of a return code nobody checks */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    if (g_rank > 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "t2i: rank %d: cannot silence stdout\n", g_rank);
        return 1;
    }
#endif
    return 0;
}

void t2i_dist_finalize(void) {
#ifdef T2I_HAVE_MPI
    if (g_mpi) {
        fflush(stdout);
        MPI_Finalize();
        g_mpi = 0;
    }
#endif
}

_Noreturn void t2i_dist_abort(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "t2i: rank %d of %d: ", g_rank, g_size);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
#ifdef T2I_HAVE_MPI
    if (g_mpi) MPI_Abort(MPI_COMM_WORLD, status);
#endif
    exit(status);
}

int t2i_dist_rank(void) { return g_rank; }
int t2i_dist_size(void) { return g_size; }

int t2i_dist_available(void) {
#ifdef T2I_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int t2i_dist_broken(const char *what) { return g_size > 1 && strcmp(g_break, what) == 0; }

void t2i_dist_slice(int B, int *lo, int *hi) {
    int q = B / g_size, r = B % g_size;
    *lo = g_rank * q + T2I_MIN(g_rank, r);
    *hi = *lo + q + (g_rank < r);
}

#ifdef T2I_HAVE_MPI
/* MPI counts are ints: long buffers go in chunks. */
#define CHUNK ((size_t)1 << 28)
static void allreduce(void *buf, size_t n, MPI_Datatype type, size_t size, MPI_Op op) {
    double t0 = t2i_now();
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t m = T2I_MIN(CHUNK, n - off);
        MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * size, (int)m, type, op, MPI_COMM_WORLD);
    }
    g_comm_seconds += t2i_now() - t0;
    g_comm_bytes += (double)n * size;
    g_comm_calls++;
}
#endif

void t2i_dist_sum_floats(float *buf, size_t n) {
#ifdef T2I_HAVE_MPI
    if (g_size > 1) allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_SUM);
#else
    (void)buf, (void)n;
#endif
}

void t2i_dist_sum_doubles(double *buf, size_t n) {
#ifdef T2I_HAVE_MPI
    if (g_size > 1) allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM);
#else
    (void)buf, (void)n;
#endif
}

void t2i_dist_mean(double *buf, size_t n) {
    if (g_size <= 1) return;
    t2i_dist_sum_doubles(buf, n);
    for (size_t i = 0; i < n; i++) buf[i] /= g_size;
}

int t2i_dist_any(int flag) {
    if (g_size <= 1) return flag != 0;
    double v = flag != 0;
    t2i_dist_sum_doubles(&v, 1);
    return v > 0;
}

void t2i_dist_gather(const float *mine, const int *counts, size_t width, float *all) {
    if (g_size <= 1) {
        if (all != mine) memmove(all, mine, (size_t)counts[0] * width * sizeof(float));
        return;
    }
#ifdef T2I_HAVE_MPI
    int *rc = t2i_malloc((size_t)g_size * 2 * sizeof(int)), *displ = rc + g_size;
    size_t off = 0;
    for (int r = 0; r < g_size; r++) {
        size_t c = (size_t)counts[r] * width;
        T2I_ASSERTF(off + c <= INT_MAX, "gather of %zu floats", off + c);
        rc[r] = (int)c, displ[r] = (int)off;
        off += c;
    }
    double t0 = t2i_now();
    MPI_Allgatherv(mine, rc[g_rank], MPI_FLOAT, all, rc, displ, MPI_FLOAT, MPI_COMM_WORLD);
    g_comm_seconds += t2i_now() - t0;
    g_comm_bytes += (double)off * sizeof(float);
    g_comm_calls++;
    free(rc);
#endif
}

void t2i_dist_bcast(void *buf, size_t bytes, int root) {
#ifdef T2I_HAVE_MPI
    if (g_size <= 1) return;
    for (size_t off = 0; off < bytes; off += CHUNK)
        MPI_Bcast((char *)buf + off, (int)T2I_MIN(CHUNK, bytes - off), MPI_BYTE, root, MPI_COMM_WORLD);
#else
    (void)buf, (void)bytes, (void)root;
#endif
}

void t2i_dist_comm(double *seconds, double *bytes, double *calls) {
    *seconds = g_comm_seconds;
    *bytes = g_comm_bytes;
    *calls = g_comm_calls;
}

void t2i_dist_barrier(void) {
#ifdef T2I_HAVE_MPI
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

static void hook_floats(void *ctx, float *buf, size_t n) { (void)ctx, t2i_dist_sum_floats(buf, n); }
static void hook_doubles(void *ctx, double *buf, size_t n) { (void)ctx, t2i_dist_sum_doubles(buf, n); }

void t2i_dist_step_begin(float grad_scale) {
    if (g_size <= 1) return;
    nn_collective c = {.rank = g_rank, .size = g_size, .grad_scale = grad_scale, .sum_floats = hook_floats,
                       .sum_doubles = hook_doubles, .no_bn_sync = t2i_dist_broken("bn"),
                       .no_grad_sync = t2i_dist_broken("grad")};
    nn_collective_set(&c);
}

void t2i_dist_step_end(void) { nn_collective_set(NULL); }
