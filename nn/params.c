/* params.c - parameter store and arena; see params.h. */
#include "params.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

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
    ps->grad = t2i_malloc_aligned(bytes);
    memset(ps->data, 0, bytes);
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
    T2I_ASSERT(ps->grad && i >= 0 && i < ps->n);
    return ps->grad + ps->p[i].offset;
}

size_t nn_params_count(const nn_params *ps, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (!trainable_only || ps->p[i].trainable) n += ps->p[i].numel;
    return n;
}

void nn_params_zero_grad(nn_params *ps) {
    if (ps->grad) memset(ps->grad, 0, ps->total * sizeof(float));
}

void nn_params_copy_values(nn_params *dst, const nn_params *src) {
    T2I_ASSERT(dst->n == src->n && dst->total == src->total);
    memcpy(dst->data, src->data, src->total * sizeof(float));
}

/* ---- arena ---- */

struct nn_arena_block {
    nn_arena_block *next;
    size_t cap, used;
    char *mem;
};

void nn_arena_init(nn_arena *a) { memset(a, 0, sizeof *a); }

void nn_arena_reserve(nn_arena *a, size_t bytes) {
    T2I_ASSERT(a->used == 0 && !a->extra);
    if (bytes <= a->cap) return;
    t2i_free(a->base);
    a->base = t2i_malloc_aligned(bytes);
    a->cap = bytes;
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

void *nn_arena_bytes(nn_arena *a, size_t n) {
    n = round64(n ? n : 1);
    if (!a->extra && a->used + n <= a->cap) {
        void *p = a->base + a->used;
        a->used += n;
        if (a->used > a->peak) a->peak = a->used;
        return p;
    }
    /* Overflow: chain a block; reset() will consolidate to the peak size. */
    nn_arena_block *b = a->extra;
    if (!b || b->used + n > b->cap) {
        size_t cap = T2I_MAX(n, (size_t)64 << 20);
        nn_arena_block *nb = t2i_malloc(sizeof *nb);
        nb->mem = t2i_malloc_aligned(cap);
        nb->cap = cap;
        nb->used = 0;
        nb->next = a->extra;
        a->extra = nb;
        b = nb;
    }
    void *p = b->mem + b->used;
    b->used += n;
    a->extra_used += n;
    if (a->used + a->extra_used > a->peak) a->peak = a->used + a->extra_used;
    return p;
}

float *nn_arena_floats(nn_arena *a, size_t n) { return nn_arena_bytes(a, n * sizeof(float)); }

float *nn_arena_zeros(nn_arena *a, size_t n) {
    float *p = nn_arena_floats(a, n);
    memset(p, 0, n * sizeof(float));
    return p;
}

size_t nn_arena_mark(const nn_arena *a) { return a->extra ? (size_t)-1 : a->used; }

void nn_arena_rewind(nn_arena *a, size_t mark) {
    if (mark == (size_t)-1 || a->extra) return; /* overflow mode: freed at reset */
    T2I_ASSERT(mark <= a->used);
    a->used = mark;
}

void nn_arena_reset(nn_arena *a) {
    if (a->extra) {
        while (a->extra) {
            nn_arena_block *b = a->extra;
            a->extra = b->next;
            t2i_free(b->mem);
            free(b);
        }
        a->extra_used = 0;
        a->used = 0;
        size_t want = round64(a->peak + a->peak / 16);
        t2i_free(a->base);
        a->base = t2i_malloc_aligned(want);
        a->cap = want;
    }
    a->used = 0;
}

void nn_arena_free(nn_arena *a) {
    a->used = 0;
    nn_arena_reset(a);
    t2i_free(a->base);
    memset(a, 0, sizeof *a);
}
