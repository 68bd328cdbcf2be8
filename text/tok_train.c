/* tok_train.c - the BPE trainer (clip_tok_train in tokenizer.h): counts the pre-tokenized
 * words of the texts, then merges the most frequent pair repeatedly, keeping pair counts
 * and the words that hold each pair up to date so that a merge only revisits its words.
 */
#include "tokenizer.h"

#include <string.h>

#include "base.h"
#include "tok_util.h"

/* ============================================================ training */

/* Symbols of the trainer: raw bytes in an arena, the "</w>" flag separate. */
typedef struct {
    size_t *off;
    uint32_t *len;
    uint8_t *eow;
    size_t n, cap;
    buf bytes;
    smap ids;   /* raw bytes (+ "</w>" when eow, the loader's identity) -> id */
} symtab;

static int32_t sym_add(symtab *t, const uint8_t *raw, size_t n, int eow) {
    buf key = {0};
    tok_buf_add(&key, raw, n);
    if (eow) tok_buf_add(&key, EOW_TEXT, 4);
    int64_t *v = tok_smap_put(&t->ids, key.p, key.n, -1);
    t2i_free(key.p);
    if (*v >= 0) return (int32_t)*v;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->off = t2i_realloc(t->off, t->cap * sizeof(size_t));
        t->len = t2i_realloc(t->len, t->cap * sizeof(uint32_t));
        t->eow = t2i_realloc(t->eow, t->cap);
    }
    t->off[t->n] = t->bytes.n;
    t->len[t->n] = (uint32_t)n;
    t->eow[t->n] = (uint8_t)eow;
    tok_buf_add(&t->bytes, raw, n);
    *v = (int64_t)t->n;
    return (int32_t)t->n++;
}

static void sym_write(const symtab *t, int32_t id, buf *out) {
    const uint8_t *r = (const uint8_t *)t->bytes.p + t->off[id];
    for (uint32_t i = 0; i < t->len[id]; i++) {
        uint8_t u[4];
        tok_buf_add(out, u, tok_utf8_put(u, tok_cp_of_byte[r[i]]));
    }
    if (t->eow[id]) tok_buf_add(out, EOW_TEXT, 4);
}

typedef struct {
    smap words;   /* word bytes -> index */
    int64_t *freq;
    size_t n, cap;
    int bad;
} word_count;

static int count_piece(const char *piece, size_t n, void *vctx) {
    word_count *wc = vctx;
    if ((n == strlen(SOT_TEXT) && memcmp(piece, SOT_TEXT, n) == 0) ||
        (n == strlen(EOT_TEXT) && memcmp(piece, EOT_TEXT, n) == 0))
        return 0;  /* encode gives these their special ids; they are not BPE words */
    int64_t *v = tok_smap_put(&wc->words, piece, n, -1);
    if (*v < 0) {
        if (wc->n == wc->cap) {
            wc->cap = wc->cap ? 2 * wc->cap : 1024;
            wc->freq = t2i_realloc(wc->freq, wc->cap * sizeof(int64_t));
        }
        wc->freq[wc->n] = 0;
        *v = (int64_t)wc->n++;
    }
    wc->freq[*v]++;
    return 0;
}

/* Pair statistics: count, the words that may hold the pair (a linked list of word
 * indices in a pool; stale or repeated entries are filtered when read), a stamp for
 * "changed during this merge". Stored in a pmap slot: a = index into pair_info. */
typedef struct {
    int64_t count;
    int32_t a, b;
    int64_t head;  /* first occurrence node, -1 none */
    int64_t dirty; /* merge number that last changed count */
} pair_info;

typedef struct {
    int32_t word;
    int64_t next;
} occ_node;

typedef struct {
    int64_t count;
    int32_t a, b;
} cand;

typedef struct {
    pmap index;      /* (a, b) -> pair_info index in slot.a */
    pair_info *info;
    size_t n, cap;
    occ_node *occ;
    size_t nocc, occ_cap;
    cand *heap;
    size_t heap_n, heap_cap;
    size_t *changed;  /* pair_info indices whose count changed during the current merge */
    size_t nchanged, changed_cap;
} pairs;

static int cand_better(const cand *x, const cand *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void cand_push(pairs *p, cand c) {
    if (p->heap_n == p->heap_cap) {
        p->heap_cap = p->heap_cap ? 2 * p->heap_cap : 1024;
        p->heap = t2i_realloc(p->heap, p->heap_cap * sizeof(cand));
    }
    size_t i = p->heap_n++;
    while (i > 0 && cand_better(&c, &p->heap[(i - 1) / 2])) {
        p->heap[i] = p->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    p->heap[i] = c;
}

static cand cand_pop(pairs *p) {
    cand top = p->heap[0], last = p->heap[--p->heap_n];
    size_t i = 0, n = p->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_better(&p->heap[c + 1], &p->heap[c])) c++;
        if (!cand_better(&p->heap[c], &last)) break;
        p->heap[i] = p->heap[c];
        i = c;
    }
    if (n) p->heap[i] = last;
    return top;
}

static pair_info *pair_get(pairs *p, int32_t a, int32_t b) {
    pmap_slot *s = tok_pmap_put(&p->index, a, b);
    if (s->b == 0) {  /* new: b = 1 marks the slot as used, a = info index */
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 4096;
            p->info = t2i_realloc(p->info, p->cap * sizeof(pair_info));
        }
        p->info[p->n] = (pair_info){0, a, b, -1, -1};
        s->a = (int32_t)p->n++;
        s->b = 1;
    }
    return &p->info[s->a];
}

static void pair_add(pairs *p, int32_t a, int32_t b, int64_t delta, int32_t word, int64_t stamp, int add_occ) {
    pair_info *pi = pair_get(p, a, b);
    pi->count += delta;
    if (pi->dirty != stamp) {
        pi->dirty = stamp;
        if (p->nchanged == p->changed_cap) {
            p->changed_cap = p->changed_cap ? 2 * p->changed_cap : 1024;
            p->changed = t2i_realloc(p->changed, p->changed_cap * sizeof(size_t));
        }
        p->changed[p->nchanged++] = (size_t)(pi - p->info);
    }
    if (add_occ) {
        if (p->nocc == p->occ_cap) {
            p->occ_cap = p->occ_cap ? 2 * p->occ_cap : 4096;
            p->occ = t2i_realloc(p->occ, p->occ_cap * sizeof(occ_node));
        }
        p->occ[p->nocc] = (occ_node){word, pi->head};
        pi->head = (int64_t)p->nocc++;
    }
}

char *clip_tok_train(const char *const *texts, const size_t *lens, size_t n, size_t vocab_size, size_t *out_len) {
    tok_bytes_ready();
    if (vocab_size < 514) {
        t2i_error_set("vocabulary size %zu is below 514 (256 bytes, 256 with </w>, 2 special tokens)", vocab_size);
        return NULL;
    }
    size_t target = vocab_size - 514;
    word_count wc = {0};
    tok_smap_init(&wc.words, 1024);
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        if (clip_tok_pretokenize(texts[i], len, count_piece, &wc) < 0) {
            t2i_error_prefix("text %zu", i);
            tok_smap_free(&wc.words);
            t2i_free(wc.freq);
            return NULL;
        }
    }
    /* word symbol sequences, in one flat array */
    size_t *woff = t2i_malloc((wc.n + 1) * sizeof(size_t));
    size_t *wlen = t2i_malloc((wc.n + 1) * sizeof(size_t));
    size_t total = 0;
    for (size_t s = 0; s < wc.words.cap; s++)
        if (wc.words.slots[s].used) total += wc.words.slots[s].len;
    int32_t *seq = t2i_malloc((total + 1) * sizeof(int32_t));
    symtab st = {0};
    tok_smap_init(&st.ids, 1024);
    for (int p = 0; p < 512; p++) {
        uint8_t b = tok_byte_at[p & 255];
        sym_add(&st, &b, 1, p >= 256);
    }
    int16_t pos_of_byte[256];
    for (int p = 0; p < 256; p++) pos_of_byte[tok_byte_at[p]] = (int16_t)p;
    size_t at = 0;
    for (size_t s = 0; s < wc.words.cap; s++) {
        const smap_slot *sl = &wc.words.slots[s];
        if (!sl->used) continue;
        const uint8_t *w = (const uint8_t *)wc.words.arena + sl->off;
        size_t wi = (size_t)sl->val;
        woff[wi] = at;
        wlen[wi] = sl->len;
        for (uint32_t k = 0; k < sl->len; k++) seq[at + k] = pos_of_byte[w[k]];
        seq[at + sl->len - 1] += 256;
        at += sl->len;
    }
    pairs P = {0};
    tok_pmap_init(&P.index, 4096);
    for (size_t w = 0; w < wc.n; w++)
        for (size_t k = 0; k + 1 < wlen[w]; k++)
            pair_add(&P, seq[woff[w] + k], seq[woff[w] + k + 1], wc.freq[w], (int32_t)w, 0, 1);
    P.nchanged = 0;
    for (size_t i = 0; i < P.n; i++)
        if (P.info[i].count >= 2) cand_push(&P, (cand){P.info[i].count, P.info[i].a, P.info[i].b});

    int64_t *wstamp = t2i_malloc((wc.n + 1) * sizeof(int64_t));
    for (size_t w = 0; w < wc.n; w++) wstamp[w] = -1;
    buf out = {0};
    tok_buf_add(&out, "#version: 0.2\n", 14);
    size_t merges = 0;
    while (merges < target && P.heap_n) {
        cand c = cand_pop(&P);
        size_t pidx = (size_t)tok_pmap_get(&P.index, c.a, c.b)->a;
        if (P.info[pidx].count != c.count) continue;  /* stale: a fresher entry exists */
        int64_t stamp = (int64_t)merges + 1;
        sym_write(&st, c.a, &out);
        tok_buf_add(&out, " ", 1);
        sym_write(&st, c.b, &out);
        tok_buf_add(&out, "\n", 1);
        buf raw = {0};
        tok_buf_add(&raw, st.bytes.p + st.off[c.a], st.len[c.a]);
        tok_buf_add(&raw, st.bytes.p + st.off[c.b], st.len[c.b]);
        int32_t nid = sym_add(&st, (const uint8_t *)raw.p, raw.n, st.eow[c.b]);
        t2i_free(raw.p);
        merges++;
        P.nchanged = 0;
        /* (a, b) gains no occurrence below: the new symbol is longer than a and b */
        for (int64_t o = P.info[pidx].head; o >= 0; o = P.occ[o].next) {
            int32_t w = P.occ[o].word;
            if (wstamp[w] == stamp) continue;
            wstamp[w] = stamp;
            int32_t *q = seq + woff[w];
            size_t L = wlen[w], hit = 0;
            for (size_t k = 0; k + 1 < L && !hit; k++) hit = q[k] == c.a && q[k + 1] == c.b;
            if (!hit) continue;
            int64_t f = wc.freq[w];
            for (size_t k = 0; k + 1 < L; k++) pair_add(&P, q[k], q[k + 1], -f, w, stamp, 0);
            size_t m = 0;
            for (size_t k = 0; k < L;) {
                if (k + 1 < L && q[k] == c.a && q[k + 1] == c.b) {
                    q[m++] = nid;
                    k += 2;
                } else {
                    q[m++] = q[k++];
                }
            }
            wlen[w] = m;
            for (size_t k = 0; k + 1 < m; k++)
                pair_add(&P, q[k], q[k + 1], f, w, stamp, q[k] == nid || q[k + 1] == nid);
        }
        /* re-offer every pair whose count changed; older entries become stale */
        for (size_t i = 0; i < P.nchanged; i++) {
            const pair_info *x = &P.info[P.changed[i]];
            if (x->count >= 2) cand_push(&P, (cand){x->count, x->a, x->b});
        }
    }
    t2i_free(wstamp);
    t2i_free(P.changed);
    t2i_free(P.info);
    t2i_free(P.occ);
    t2i_free(P.heap);
    tok_pmap_free(&P.index);
    t2i_free(st.off);
    t2i_free(st.len);
    t2i_free(st.eow);
    t2i_free(st.bytes.p);
    tok_smap_free(&st.ids);
    t2i_free(seq);
    t2i_free(woff);
    t2i_free(wlen);
    t2i_free(wc.freq);
    tok_smap_free(&wc.words);
    if (out_len) *out_len = out.n;
    return out.p;
}
