/* params.c - parameter store and arena; see params.h. */
#include "params.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "collective.h"

void nn_params_init(nn_params *ps) { memset(ps, 0, sizeof *ps); }

void nn_params_free(nn_params *ps) {
    free(ps->p);
    t2i_free(ps->data);
    t2i_free(ps->grad);
    t2i_free(ps->m);
    t2i_free(ps->v);
    memset(ps, 0, sizeof *ps);
}

int nn_params_add(nn_params *ps, const char *name, int ndim, const int *shape, int trainable) {
    T2I_ASSERTF(!ps->data, "nn_params_add(%s) after nn_params_alloc", name);
    T2I_ASSERT(ndim >= 0 && ndim <= NN_MAX_DIMS);
    T2I_ASSERTF(strlen(name) < NN_NAME_MAX, "parameter name too long: %s", name);
    T2I_ASSERTF(nn_params_find(ps, name) < 0, "duplicate parameter name %s", name);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        ps->p = t2i_realloc(ps->p, (size_t)ps->cap * sizeof *ps->p);
    }
    nn_param *p = &ps->p[ps->n];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        T2I_ASSERTF(shape[d] > 0, "%s: dimension %d is %d", name, d, shape[d]);
        p->shape[d] = shape[d];
        p->numel *= (size_t)shape[d];
    }
    p->trainable = trainable;
    p->offset = ps->total;
    ps->total += (p->numel + 15) & ~(size_t)15;
    return ps->n++;
}

void nn_params_alloc(nn_params *ps) {
    T2I_ASSERT(!ps->data);
    size_t bytes = (ps->total ? ps->total : 16) * sizeof(float);
    ps->data = t2i_malloc_aligned(bytes);
    memset(ps->data, 0, bytes);
}

/* Gradients are allocated on first use: a model loaded only to run forward (sampling,
 * reranking) never pays for them. */
void nn_params_ensure_grad(nn_params *ps) {
    T2I_ASSERT(ps->data);
    if (ps->grad) return;
    size_t bytes = (ps->total ? ps->total : 16) * sizeof(float);
    ps->grad = t2i_malloc_aligned(bytes);
    memset(ps->grad, 0, bytes);
}

void nn_params_moments(nn_params *ps) {
    size_t bytes = (ps->total ? ps->total : 16) * sizeof(float);
    if (!ps->m) {
        ps->m = t2i_malloc_aligned(bytes);
        memset(ps->m, 0, bytes);
    }
    if (!ps->v) {
        ps->v = t2i_malloc_aligned(bytes);
        memset(ps->v, 0, bytes);
    }
}

int nn_params_find(const nn_params *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0) return i;
    return -1;
}

float *nn_params_val(nn_params *ps, int i) {
    T2I_ASSERT(ps->data && i >= 0 && i < ps->n);
    return ps->data + ps->p[i].offset;
}

float *nn_params_grad(nn_params *ps, int i) {
    T2I_ASSERT(i >= 0 && i < ps->n);
    nn_params_ensure_grad(ps);
    return ps->grad + ps->p[i].offset;
}

size_t nn_params_count(const nn_params *ps, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (!trainable_only || ps->p[i].trainable) n += ps->p[i].numel;
    return n;
}

void nn_params_zero_grad(nn_params *ps) {
    nn_params_ensure_grad(ps);
    memset(ps->grad, 0, ps->total * sizeof(float));
    ps->grad_synced = 0;
}

void nn_params_sync_grad(nn_params *ps) {
    const nn_collective *cc = nn_collective_get();
    if (!cc || cc->size <= 1 || cc->no_grad_sync || ps->grad_synced) return;
    nn_params_ensure_grad(ps);
    cc->sum_floats(cc->ctx, ps->grad, ps->total);
    float s = cc->grad_scale;
    if (s != 1.0f) {
#pragma omp parallel for schedule(static) if (ps->total > 65536)
        for (size_t i = 0; i < ps->total; i++) ps->grad[i] *= s;
    }
    ps->grad_synced = 1;
}

void nn_params_copy_values(nn_params *dst, const nn_params *src) {
    T2I_ASSERT(dst->n == src->n && dst->total == src->total);
    memcpy(dst->data, src->data, src->total * sizeof(float));
}

/* ---- arena ---- */

#define ARENA_MIN_SPILL ((size_t)16 << 20)
#define MARK_SHIFT 48

void nn_arena_init(nn_arena *a) { memset(a, 0, sizeof *a); }

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static void ensure_block0(nn_arena *a) {
    if (a->nblk == 0) {
        a->blk = t2i_calloc(1, sizeof *a->blk);
        a->nblk = 1;
    }
}

void nn_arena_reserve(nn_arena *a, size_t bytes) {
    T2I_ASSERT(a->live == 0);
    ensure_block0(a);
    bytes = round64(bytes);
    if (bytes <= a->blk[0].cap) return;
    t2i_free(a->blk[0].mem);
    a->blk[0].mem = t2i_malloc_aligned(bytes);
    a->blk[0].cap = bytes;
}

void *nn_arena_bytes(nn_arena *a, size_t n) {
    ensure_block0(a);
    n = round64(n ? n : 1);
    nn_arena_blk *b = &a->blk[a->cur];
    if (b->used + n > b->cap) {
        /* next block: reuse one left by a rewind if it is big enough, else (re)allocate */
        a->cur++;
        a->spilled = 1;
        if (a->cur == a->nblk) {
            a->blk = t2i_realloc(a->blk, (size_t)(a->nblk + 1) * sizeof *a->blk);
            memset(&a->blk[a->nblk], 0, sizeof *a->blk);
            a->nblk++;
        }
        b = &a->blk[a->cur];
        if (b->cap < n) {
            t2i_free(b->mem);
            b->cap = T2I_MAX(n, ARENA_MIN_SPILL);
            b->mem = t2i_malloc_aligned(b->cap);
        }
        b->used = 0;
    }
    void *p = b->mem + b->used;
    b->used += n;
    a->live += n;
    if (a->live > a->peak) a->peak = a->live;
    return p;
}

float *nn_arena_floats(nn_arena *a, size_t n) { return nn_arena_bytes(a, n * sizeof(float)); }

float *nn_arena_zeros(nn_arena *a, size_t n) {
    float *p = nn_arena_floats(a, n);
    memset(p, 0, n * sizeof(float));
    return p;
}

size_t nn_arena_mark(const nn_arena *a) {
    if (a->nblk == 0) return 0;
    return ((size_t)a->cur << MARK_SHIFT) | a->blk[a->cur].used;
}

void nn_arena_rewind(nn_arena *a, size_t mark) {
    if (a->nblk == 0) return;
    int c = (int)(mark >> MARK_SHIFT);
    size_t u = mark & (((size_t)1 << MARK_SHIFT) - 1);
    T2I_ASSERT(c <= a->cur && u <= a->blk[c].used);
    for (int i = c + 1; i <= a->cur; i++) {
        a->live -= a->blk[i].used;
        a->blk[i].used = 0;
    }
    a->live -= a->blk[c].used - u;
    a->blk[c].used = u;
    a->cur = c;
}

void nn_arena_reset(nn_arena *a) {
    if (a->nblk == 0) return;
    if (a->spilled) {
        /* replace every block by one that holds the whole high-water mark */
        for (int i = 0; i < a->nblk; i++) t2i_free(a->blk[i].mem);
        size_t want = round64(a->peak + a->peak / 16);
        a->blk = t2i_realloc(a->blk, sizeof *a->blk);
        a->nblk = 1;
        a->blk[0].mem = t2i_malloc_aligned(want);
        a->blk[0].cap = want;
        a->spilled = 0;
    }
    for (int i = 0; i < a->nblk; i++) a->blk[i].used = 0;
    a->cur = 0;
    a->live = 0;
}

void nn_arena_free(nn_arena *a) {
    for (int i = 0; i < a->nblk; i++) t2i_free(a->blk[i].mem);
    free(a->blk);
    memset(a, 0, sizeof *a);
}

size_t nn_arena_capacity(const nn_arena *a) { return a->nblk ? a->blk[0].cap : 0; }
size_t nn_arena_in_use(const nn_arena *a) { return a->live; }
