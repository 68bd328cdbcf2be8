/* tok_util.c - the tokenizer's shared plumbing (tok_util.h): the bytes_to_unicode tables,
 * the growing halves of the two hash maps, the byte buffer.
 */
#include "tok_util.h"

#include <pthread.h>

#include "base.h"

/* ============================================================ bytes_to_unicode */

uint32_t tok_cp_of_byte[256];  /* byte -> code point of its symbol character */
int16_t tok_byte_of_cp[324];   /* code point -> byte, -1 if not a symbol character */
uint8_t tok_byte_at[256];      /* vocabulary position -> byte */
static pthread_once_t g_bytes_once = PTHREAD_ONCE_INIT;

static int byte_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

static void bytes_init(void) {
    int pos = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if (byte_printable(b)) tok_byte_at[pos++] = (uint8_t)b;
    for (int b = 0; b < 256; b++)
        if (!byte_printable(b)) tok_byte_at[pos++] = (uint8_t)b;
    for (int c = 0; c < 324; c++) tok_byte_of_cp[c] = -1;
    for (int b = 0; b < 256; b++) {
        tok_cp_of_byte[b] = byte_printable(b) ? (uint32_t)b : (uint32_t)(256 + extra++);
        tok_byte_of_cp[tok_cp_of_byte[b]] = (int16_t)b;
    }
}

void tok_bytes_ready(void) { pthread_once(&g_bytes_once, bytes_init); }

/* ============================================================ byte-string hash map */

void tok_smap_init(smap *m, size_t cap_hint) {
    size_t cap = 64;
    while (cap < 2 * cap_hint) cap *= 2;
    m->slots = t2i_calloc(cap, sizeof(smap_slot));
    m->cap = cap;
    m->count = 0;
    m->arena = NULL;
    m->arena_len = m->arena_cap = 0;
}

void tok_smap_free(smap *m) {
    t2i_free(m->slots);
    t2i_free(m->arena);
    memset(m, 0, sizeof *m);
}

void tok_smap_clear(smap *m) {
    memset(m->slots, 0, m->cap * sizeof(smap_slot));
    m->count = 0;
    m->arena_len = 0;
}

/* Returns the value slot for key, inserting it with value init when absent. */
int64_t *tok_smap_put(smap *m, const void *key, size_t len, int64_t init) {
    uint64_t h = tok_hash_bytes(key, len);
    smap_slot *s = tok_smap_find(m, key, len, h);
    if (s->used) return &s->val;
    if (2 * (m->count + 1) > m->cap) {
        smap_slot *old = m->slots;
        size_t old_cap = m->cap;
        m->cap *= 2;
        m->slots = t2i_calloc(m->cap, sizeof(smap_slot));
        for (size_t i = 0; i < old_cap; i++) {
            if (!old[i].used) continue;
            size_t mask = m->cap - 1, j = (size_t)old[i].hash & mask;
            while (m->slots[j].used) j = (j + 1) & mask;
            m->slots[j] = old[i];
        }
        t2i_free(old);
        s = tok_smap_find(m, key, len, h);
    }
    if (m->arena_len + len > m->arena_cap) {
        m->arena_cap = T2I_MAX(2 * m->arena_cap, m->arena_len + len + 256);
        m->arena = t2i_realloc(m->arena, m->arena_cap);
    }
    memcpy(m->arena + m->arena_len, key, len);
    s->hash = h;
    s->off = m->arena_len;
    s->len = (uint32_t)len;
    s->used = 1;
    s->val = init;
    m->arena_len += len;
    m->count++;
    return &s->val;
}

/* ============================================================ pair hash map */

void tok_pmap_init(pmap *m, size_t cap_hint) {
    size_t cap = 64;
    while (cap < 2 * cap_hint) cap *= 2;
    m->slots = t2i_malloc(cap * sizeof(pmap_slot));
    for (size_t i = 0; i < cap; i++) m->slots[i].key = PMAP_EMPTY;
    m->cap = cap;
    m->count = 0;
}

void tok_pmap_free(pmap *m) {
    t2i_free(m->slots);
    memset(m, 0, sizeof *m);
}

/* Returns the slot for (l, r), inserting it (a = b = 0) when absent. */
pmap_slot *tok_pmap_put(pmap *m, int32_t l, int32_t r) {
    uint64_t k = tok_pair_key(l, r);
    pmap_slot *s = tok_pmap_find(m, k);
    if (s->key == k) return s;
    if (2 * (m->count + 1) > m->cap) {
        pmap_slot *old = m->slots;
        size_t old_cap = m->cap;
        tok_pmap_init(m, old_cap);
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].key == PMAP_EMPTY) continue;
            *tok_pmap_find(m, old[i].key) = old[i];
            m->count++;
        }
        t2i_free(old);
        s = tok_pmap_find(m, k);
    }
    s->key = k;
    s->a = s->b = 0;
    m->count++;
    return s;
}

/* ============================================================ buffer */

void tok_buf_add(buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = T2I_MAX(2 * b->cap, b->n + n + 64);
        b->p = t2i_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}
