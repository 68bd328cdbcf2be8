/* tok_util.h - what the tokenizer's files share inside text/ (not part of the public
 * tokenizer.h): the bytes_to_unicode tables, UTF-8 stepping, a byte-string hash map, a
 * symbol-pair hash map, a growable buffer (tok_util.c), and the cleaning and
 * pre-tokenizing steps on code points (tok_clean.c). The lookups that the BPE runs per
 * symbol are inline here; everything allocates with t2i_malloc and aborts on failure.
 */
#ifndef T2I_TOK_UTIL_H
#define T2I_TOK_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SOT_TEXT "<|startoftext|>"
#define EOT_TEXT "<|endoftext|>"
#define EOW_TEXT "</w>"

/* ============================================================ bytes_to_unicode */

/* The printable bytes map to themselves, the other 68 to U+0100.. in byte order; the
 * vocabulary lists the printable ones ascending, then the others. */
extern uint32_t tok_cp_of_byte[256];  /* byte -> code point of its symbol character */
extern int16_t tok_byte_of_cp[324];   /* code point -> byte, -1 if not a symbol character */
extern uint8_t tok_byte_at[256];      /* vocabulary position -> byte */
/* Fills the three tables once (thread-safe); every entry point calls it first. */
void tok_bytes_ready(void);

/* ============================================================ UTF-8 */

/* Length of the valid sequence at s (1..4), or minus the length of its maximal invalid
 * subpart (what Python's errors='replace' turns into one U+FFFD). */
static inline int tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b >= 0xC2 && b <= 0xDF) need = 1, c = b & 0x1F;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2, c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3, c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n || s[k] < lo || s[k] > hi) return -k;
        c = (c << 6) | (s[k] & 0x3F);
        lo = 0x80, hi = 0xBF;
    }
    *cp = c;
    return need + 1;
}

static inline size_t tok_utf8_put(uint8_t *out, uint32_t c) {
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xC0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* ============================================================ byte-string hash map */

/* Open addressing map from byte strings (kept in an arena) to int64 values. */
typedef struct {
    uint64_t hash;
    size_t off;
    uint32_t len;
    uint32_t used;
    int64_t val;
} smap_slot;

typedef struct {
    smap_slot *slots;
    size_t cap, count;  /* cap: power of two */
    char *arena;
    size_t arena_len, arena_cap;
} smap;

static inline uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static inline smap_slot *tok_smap_find(const smap *m, const void *key, size_t len, uint64_t h) {
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        smap_slot *s = &m->slots[i];
        if (!s->used) return s;
        if (s->hash == h && s->len == len && memcmp(m->arena + s->off, key, len) == 0) return s;
    }
}

static inline int64_t *tok_smap_get(const smap *m, const void *key, size_t len) {
    smap_slot *s = tok_smap_find(m, key, len, tok_hash_bytes(key, len));
    return s->used ? &s->val : NULL;
}

void tok_smap_init(smap *m, size_t cap_hint);
void tok_smap_free(smap *m);
void tok_smap_clear(smap *m);
/* Returns the value slot for key, inserting it with value init when absent. */
int64_t *tok_smap_put(smap *m, const void *key, size_t len, int64_t init);

/* ============================================================ pair hash map */

/* (left, right) symbol ids -> rank and merged id (a = rank, b = result). */
typedef struct {
    uint64_t key;
    int32_t a, b;
} pmap_slot;

typedef struct {
    pmap_slot *slots;
    size_t cap, count;
} pmap;

#define PMAP_EMPTY UINT64_MAX

static inline uint64_t tok_pair_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r; }

static inline size_t tok_pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

static inline pmap_slot *tok_pmap_find(const pmap *m, uint64_t k) {
    size_t mask = m->cap - 1;
    for (size_t i = tok_pair_hash(k) & mask;; i = (i + 1) & mask)
        if (m->slots[i].key == k || m->slots[i].key == PMAP_EMPTY) return &m->slots[i];
}

static inline const pmap_slot *tok_pmap_get(const pmap *m, int32_t l, int32_t r) {
    const pmap_slot *s = tok_pmap_find(m, tok_pair_key(l, r));
    return s->key == PMAP_EMPTY ? NULL : s;
}

void tok_pmap_init(pmap *m, size_t cap_hint);
void tok_pmap_free(pmap *m);
/* Returns the slot for (l, r), inserting it (a = b = 0) when absent. */
pmap_slot *tok_pmap_put(pmap *m, int32_t l, int32_t r);

/* ============================================================ buffer */

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} buf;

void tok_buf_add(buf *b, const void *data, size_t n);

/* ============================================================ cleaning (tok_clean.c) */

/* Steps 1-3 of tokenizer.h on UTF-8 text: a t2i_malloc'd code point array and its length,
 * or -1 with the error set (what, when not NULL, prefixes the message). */
int tok_clean_codepoints(const char *text, size_t len, const char *what, uint32_t **out, size_t *n_out);

typedef int (*piece_fn)(const uint32_t *piece, size_t n, void *ctx);

/* Step 4: calls fn on each piece of the cleaned code points in order; returns 1 when fn
 * stopped it early, else 0. */
int tok_pretokenize_cp(const uint32_t *s, size_t n, piece_fn fn, void *ctx);

#endif
