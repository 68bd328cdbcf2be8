/* tokenizer.c - the CLIP BPE tokenizer: loading vocabularies, encoding and decoding; see
 * tokenizer.h for the steps, the vocabulary formats and the error conventions. Cleaning
 * and pre-tokenizing are in tok_clean.c, the trainer in tok_train.c, the hash maps and
 * the bytes_to_unicode tables in tok_util.c.
 *
 * Each piece from the pre-tokenizer, re-encoded as UTF-8, goes to the BPE.
 *
 * Symbols are identified by their bytes: a vocabulary string is mapped back through
 * bytes_to_unicode to raw bytes ("</w>" stays the four bytes "</w>"), which is a bijection,
 * so equal strings <=> equal bytes.
 */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base.h"
#include "safetensors.h"
#include "tok_util.h"

#define CACHE_MAX_WORD 64       /* longest word (bytes) kept in the cache */
#define CACHE_MAX_ENTRIES 32768 /* the cache is emptied when it holds this many words */
#define MAX_VOCAB_FILE ((size_t)256 << 20)

/* ============================================================ the tokenizer */

struct clip_tok {
    size_t vocab_size;      /* ids are < vocab_size */
    size_t n_merges;
    int32_t sot, eot;
    int32_t byte_sym[256];  /* symbol of a byte inside a word */
    int32_t eow_sym[256];   /* symbol of a byte ending a word ("x</w>") */
    /* id -> raw bytes (tok_off[id] .. tok_off[id] + tok_len[id] in tok_bytes); tok_len -1
     * marks an id that a vocab.json leaves unused */
    size_t *tok_off;
    int32_t *tok_len;
    char *tok_bytes;
    pmap merges;            /* (left, right) -> (rank, merged id) */
    /* word cache: bytes -> (offset << 8 | count) into cache_ids */
    pthread_mutex_t cache_mu;
    smap cache;
    int32_t *cache_ids;
    size_t cache_nids, cache_cap;
};

size_t clip_tok_vocab_size(const clip_tok *tok) { return tok->vocab_size; }
int32_t clip_tok_sot(const clip_tok *tok) { return tok->sot; }
int32_t clip_tok_eot(const clip_tok *tok) { return tok->eot; }
size_t clip_tok_n_merges(const clip_tok *tok) { return tok->n_merges; }

void clip_tok_free(clip_tok *tok) {
    if (!tok) return;
    t2i_free(tok->tok_off);
    t2i_free(tok->tok_len);
    t2i_free(tok->tok_bytes);
    tok_pmap_free(&tok->merges);
    tok_smap_free(&tok->cache);
    t2i_free(tok->cache_ids);
    pthread_mutex_destroy(&tok->cache_mu);
    t2i_free(tok);
}

static clip_tok *tok_new(void) {
    clip_tok *tok = t2i_calloc(1, sizeof *tok);
    pthread_mutex_init(&tok->cache_mu, NULL);
    tok_smap_init(&tok->cache, 1024);
    return tok;
}

/* Decodes a vocabulary string (symbol characters) into raw bytes appended to out.
 * Returns 0, or -1 when a character is not a bytes_to_unicode character. */
static int symbol_to_bytes(const char *s, size_t n, buf *out) {
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        int len = tok_utf8_next((const uint8_t *)s + i, n - i, &c);
        if (len < 0 || c >= 324 || tok_byte_of_cp[c] < 0) return -1;
        uint8_t b = (uint8_t)tok_byte_of_cp[c];
        tok_buf_add(out, &b, 1);
        i += (size_t)len;
    }
    return 0;
}

/* Fills byte_sym / eow_sym / sot / eot from the canonical map of raw bytes -> id. */
static int resolve_specials(clip_tok *tok, const smap *ids, const char *name) {
    for (int b = 0; b < 256; b++) {
        char key[5] = {(char)b, '<', '/', 'w', '>'};
        int64_t *v = tok_smap_get(ids, key, 1), *w = tok_smap_get(ids, key, 5);
        if (!v || !w)
            return t2i_error_set("%s: no token for byte 0x%02X%s", name, b, v ? " with </w>" : "");
        tok->byte_sym[b] = (int32_t)*v;
        tok->eow_sym[b] = (int32_t)*w;
    }
    int64_t *s = tok_smap_get(ids, SOT_TEXT, strlen(SOT_TEXT)), *e = tok_smap_get(ids, EOT_TEXT, strlen(EOT_TEXT));
    if (!s || !e) return t2i_error_set("%s: no %s token", name, s ? EOT_TEXT : SOT_TEXT);
    tok->sot = (int32_t)*s;
    tok->eot = (int32_t)*e;
    return 0;
}

/* One parsed merges text: the byte offsets of each line's two symbols. */
typedef struct {
    size_t n;
    size_t (*f)[4];  /* start, len of the first symbol; start, len of the second */
    int header;      /* the text has a header line */
    int header_openai;
} merge_lines;

/* Splits a merges text into lines of two symbols (Python's str.split()). want < 0: all
 * lines (trailing empty lines ignored); else exactly want lines, the rest unread. */
static int parse_merges(const char *text, size_t len, long want, const char *name, merge_lines *ml) {
    memset(ml, 0, sizeof *ml);
    size_t pos = 0, line_no = 0, cap = 0;
    /* The header: a first line containing "#version". */
    const char *nl = memchr(text, '\n', len);
    size_t first_len = nl ? (size_t)(nl - text) : len;
    if (memmem(text, first_len, "#version", 8)) {
        ml->header = 1;
        ml->header_openai = memmem(text, first_len, "bpe_simple_vocab_16e6", 21) != NULL;
        pos = nl ? first_len + 1 : len;
        line_no = 1;
    }
    if (want < 0 && ml->header_openai) want = CLIP_TOK_OPENAI_MERGES;
    while (pos < len && (want < 0 || ml->n < (size_t)want)) {
        const char *ln = text + pos;
        const char *end = memchr(ln, '\n', len - pos);
        size_t ll = end ? (size_t)(end - ln) : len - pos;
        pos += ll + (end ? 1 : 0);
        line_no++;
        size_t f[4], nf = 0, i = 0;
        while (i < ll) {
            while (i < ll && (ln[i] == ' ' || ln[i] == '\t' || ln[i] == '\r' || ln[i] == '\v' || ln[i] == '\f')) i++;
            if (i >= ll) break;
            size_t st = i;
            while (i < ll && !(ln[i] == ' ' || ln[i] == '\t' || ln[i] == '\r' || ln[i] == '\v' || ln[i] == '\f')) i++;
            if (nf < 2) f[2 * nf] = (size_t)(ln - text) + st, f[2 * nf + 1] = i - st;
            nf++;
        }
        if (nf == 0 && want < 0) {
            /* an empty line is allowed only at the end */
            size_t q = pos;
            while (q < len && (text[q] == '\n' || text[q] == '\r' || text[q] == ' ')) q++;
            if (q == len) break;
        }
        if (nf != 2) {
            t2i_free(ml->f);
            ml->f = NULL;
            return t2i_error_set("%s: line %zu: expected two symbols separated by a space, found %zu",
                                 name, line_no, nf);
        }
        if (ml->n == cap) {
            cap = cap ? 2 * cap : 1024;
            ml->f = t2i_realloc(ml->f, cap * sizeof *ml->f);
        }
        memcpy(ml->f[ml->n++], f, sizeof f);
    }
    if (want >= 0 && ml->n < (size_t)want) {
        t2i_free(ml->f);
        ml->f = NULL;
        return t2i_error_set("%s: has %zu merges, %ld expected", name, ml->n, want);
    }
    return 0;
}

/* Raw bytes of line k's two symbols appended to out; *la, *lb their lengths. */
static int merge_line_bytes(const char *text, const merge_lines *ml, size_t k, buf *out, size_t *la,
                            size_t *lb, const char *name, size_t line_base) {
    size_t before = out->n;
    *la = *lb = 0;
    if (symbol_to_bytes(text + ml->f[k][0], ml->f[k][1], out) < 0)
        return t2i_error_set("%s: line %zu: '%.*s' is not a byte-level BPE symbol", name, k + line_base,
                             (int)ml->f[k][1], text + ml->f[k][0]);
    *la = out->n - before;
    if (symbol_to_bytes(text + ml->f[k][2], ml->f[k][3], out) < 0)
        return t2i_error_set("%s: line %zu: '%.*s' is not a byte-level BPE symbol", name, k + line_base,
                             (int)ml->f[k][3], text + ml->f[k][2]);
    *lb = out->n - before - *la;
    return 0;
}

clip_tok *clip_tok_from_merges(const char *text, size_t len, long n_merges, const char *name) {
    tok_bytes_ready();
    if (!name) name = "merges";
    merge_lines ml;
    if (parse_merges(text, len, n_merges, name, &ml) < 0) return NULL;
    size_t line_base = ml.header ? 2 : 1;  /* file line of merge 0 */
    clip_tok *tok = tok_new();
    size_t V = 512 + ml.n + 2;
    tok->vocab_size = V;
    tok->n_merges = ml.n;
    tok->tok_off = t2i_malloc(V * sizeof(size_t));
    tok->tok_len = t2i_malloc(V * sizeof(int32_t));
    buf bytes = {0};
    for (int p = 0; p < 512; p++) {
        tok->tok_off[p] = bytes.n;
        uint8_t b = tok_byte_at[p & 255];
        tok_buf_add(&bytes, &b, 1);
        if (p >= 256) tok_buf_add(&bytes, EOW_TEXT, 4);
        tok->tok_len[p] = (int32_t)(bytes.n - tok->tok_off[p]);
    }
    size_t *split = t2i_malloc((ml.n + 1) * sizeof(size_t));  /* length of each merge's first part */
    for (size_t k = 0; k < ml.n; k++) {
        size_t id = 512 + k, la, lb;
        tok->tok_off[id] = bytes.n;
        if (merge_line_bytes(text, &ml, k, &bytes, &la, &lb, name, line_base) < 0) goto fail;
        if (la == 0 || lb == 0) {
            t2i_error_set("%s: line %zu: empty symbol", name, k + line_base);
            goto fail;
        }
        split[k] = la;
        tok->tok_len[id] = (int32_t)(la + lb);
    }
    tok->tok_off[V - 2] = bytes.n;
    tok_buf_add(&bytes, SOT_TEXT, strlen(SOT_TEXT));
    tok->tok_len[V - 2] = (int32_t)strlen(SOT_TEXT);
    tok->tok_off[V - 1] = bytes.n;
    tok_buf_add(&bytes, EOT_TEXT, strlen(EOT_TEXT));
    tok->tok_len[V - 1] = (int32_t)strlen(EOT_TEXT);
    tok->tok_bytes = bytes.p;
    bytes.p = NULL;

    /* Python: encoder = dict(zip(vocab, ids)), bpe_ranks = dict(zip(merges, ranks)): for a
     * repeated string or pair, the last one wins. */
    smap ids;
    tok_smap_init(&ids, V);
    for (size_t id = 0; id < V; id++)
        *tok_smap_put(&ids, tok->tok_bytes + tok->tok_off[id], (size_t)tok->tok_len[id], 0) = (int64_t)id;
    tok_pmap_init(&tok->merges, ml.n);
    for (size_t k = 0; k < ml.n; k++) {
        const char *m = tok->tok_bytes + tok->tok_off[512 + k];
        int64_t *l = tok_smap_get(&ids, m, split[k]);
        int64_t *r = tok_smap_get(&ids, m + split[k], (size_t)tok->tok_len[512 + k] - split[k]);
        int64_t *res = tok_smap_get(&ids, m, (size_t)tok->tok_len[512 + k]);
        if (!l || !r) continue;  /* a symbol no merge produces: the pair can never occur */
        pmap_slot *s = tok_pmap_put(&tok->merges, (int32_t)*l, (int32_t)*r);
        s->a = (int32_t)k;
        s->b = (int32_t)*res;
    }
    int rc = resolve_specials(tok, &ids, name);
    tok_smap_free(&ids);
    t2i_free(split);
    t2i_free(ml.f);
    if (rc < 0) {
        clip_tok_free(tok);
        return NULL;
    }
    return tok;
fail:
    t2i_free(bytes.p);
    t2i_free(split);
    t2i_free(ml.f);
    clip_tok_free(tok);
    return NULL;
}

/* Reads a whole file, gunzipping it when it is gzip (zlib reads plain files as they are). */
static char *read_maybe_gz(const char *path, size_t *len) {
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        t2i_error_set("%s: cannot open (%s)", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    buf b = {0};
    char chunk[1 << 16];
    for (;;) {
        int got = gzread(f, chunk, sizeof chunk);
        if (got < 0) {
            int err;
            const char *msg = gzerror(f, &err);
            t2i_error_set("%s: corrupt or unreadable (%s)", path, err == Z_ERRNO ? strerror(errno) : msg);
            gzclose(f);
            t2i_free(b.p);
            return NULL;
        }
        if (got == 0) break;
        tok_buf_add(&b, chunk, (size_t)got);
        if (b.n > MAX_VOCAB_FILE) {
            t2i_error_set("%s: larger than %zu bytes, not a vocabulary", path, MAX_VOCAB_FILE);
            gzclose(f);
            t2i_free(b.p);
            return NULL;
        }
    }
    int err;
    const char *msg = gzerror(f, &err);
    if (err != Z_OK) {
        t2i_error_set("%s: corrupt gzip data (%s)", path, msg);
        gzclose(f);
        t2i_free(b.p);
        return NULL;
    }
    gzclose(f);
    if (!b.p) tok_buf_add(&b, "", 0);
    *len = b.n;
    return b.p;
}

/* vocab.json (token -> id) + merges.txt beside it. */
static clip_tok *load_hf(const char *json_path, long n_merges) {
    size_t jlen = 0, mlen = 0;
    char *json = t2i_read_file(json_path, &jlen, MAX_VOCAB_FILE);
    if (!json) return NULL;
    const char *slash = strrchr(json_path, '/');
    char *merges_path = slash ? t2i_asprintf("%.*s/merges.txt", (int)(slash - json_path), json_path)
                              : t2i_strdup("merges.txt");
    clip_tok *tok = NULL;
    smap ids = {0};
    merge_lines ml = {0};
    buf bytes = {0};
    char *mtext = NULL;
    cJSON *root = cJSON_ParseWithLength(json, jlen);
    if (!root || !cJSON_IsObject(root)) {
        t2i_error_set("%s: not a JSON object of token -> id", json_path);
        goto done;
    }
    int64_t max_id = -1;
    size_t count = 0;
    for (cJSON *it = root->child; it; it = it->next) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v < 0 || v != (double)(int64_t)v || v >= 16777216.0) {
            t2i_error_set("%s: token '%s' has no valid id", json_path, it->string ? it->string : "?");
            goto done;
        }
        if ((int64_t)v > max_id) max_id = (int64_t)v;
        count++;
    }
    if (count == 0) {
        t2i_error_set("%s: empty vocabulary", json_path);
        goto done;
    }
    tok = tok_new();
    tok->vocab_size = (size_t)max_id + 1;
    tok->tok_off = t2i_calloc(tok->vocab_size, sizeof(size_t));
    tok->tok_len = t2i_malloc(tok->vocab_size * sizeof(int32_t));
    for (size_t i = 0; i < tok->vocab_size; i++) tok->tok_len[i] = -1;
    tok_smap_init(&ids, count);
    for (cJSON *it = root->child; it; it = it->next) {
        int32_t id = (int32_t)it->valuedouble;
        if (tok->tok_len[id] >= 0) {
            t2i_error_set("%s: id %d is used twice", json_path, id);
            goto fail;
        }
        size_t before = bytes.n;
        /* every token, the special ones included, is made of bytes_to_unicode characters */
        if (symbol_to_bytes(it->string, strlen(it->string), &bytes) < 0) {
            t2i_error_set("%s: token '%s' is not a byte-level BPE symbol", json_path, it->string);
            goto fail;
        }
        tok->tok_off[id] = before;
        tok->tok_len[id] = (int32_t)(bytes.n - before);
    }
    for (size_t id = 0; id < tok->vocab_size; id++)
        if (tok->tok_len[id] >= 0) *tok_smap_put(&ids, bytes.p + tok->tok_off[id], (size_t)tok->tok_len[id], 0) = (int64_t)id;
    tok->tok_bytes = bytes.p;
    bytes = (buf){0};
    if (resolve_specials(tok, &ids, json_path) < 0) goto fail;

    mtext = read_maybe_gz(merges_path, &mlen);
    if (!mtext) goto fail;
    if (parse_merges(mtext, mlen, n_merges, merges_path, &ml) < 0) goto fail;
    tok->n_merges = ml.n;
    tok_pmap_init(&tok->merges, ml.n);
    size_t line_base = ml.header ? 2 : 1;
    for (size_t k = 0; k < ml.n; k++) {
        size_t la, lb;
        bytes.n = 0;
        if (merge_line_bytes(mtext, &ml, k, &bytes, &la, &lb, merges_path, line_base) < 0) goto fail;
        int64_t *l = tok_smap_get(&ids, bytes.p, la), *r = tok_smap_get(&ids, bytes.p + la, lb);
        int64_t *res = tok_smap_get(&ids, bytes.p, la + lb);
        if (!l || !r || !res) {
            size_t which = !l ? 0 : 2;
            if (l && r)
                t2i_error_set("%s: line %zu: the merged symbol of '%.*s %.*s' is not in %s", merges_path,
                              k + line_base, (int)ml.f[k][1], mtext + ml.f[k][0], (int)ml.f[k][3],
                              mtext + ml.f[k][2], json_path);
            else
                t2i_error_set("%s: line %zu: symbol '%.*s' is not in %s", merges_path, k + line_base,
                              (int)ml.f[k][which + 1], mtext + ml.f[k][which], json_path);
            goto fail;
        }
        pmap_slot *s = tok_pmap_put(&tok->merges, (int32_t)*l, (int32_t)*r);
        s->a = (int32_t)k;
        s->b = (int32_t)*res;
    }
    /* 512 byte symbols, one token per merge, the two specials: more tokens than that means
     * a cut merges file, whose missing merges would silently change every id after them */
    if (count != 512 + ml.n + 2) {
        t2i_error_set("%s: %zu merges, so %zu tokens, but %s has %zu: the files do not belong together", merges_path,
                      ml.n, 512 + ml.n + 2, json_path, count);
        goto fail;
    }
    goto done;
fail:
    clip_tok_free(tok);
    tok = NULL;
done:
    cJSON_Delete(root);
    tok_smap_free(&ids);
    t2i_free(ml.f);
    t2i_free(bytes.p);
    t2i_free(mtext);
    t2i_free(merges_path);
    t2i_free(json);
    return tok;
}

/* A t2i checkpoint's learned vocabulary (metadata "vocab"). */
static clip_tok *load_from_checkpoint(const char *path, long n_merges) {
    st_file f;
    if (st_open(&f, path) != 0) return NULL;
    const char *v = st_meta(&f, "vocab");
    clip_tok *tok = NULL;
    if (!v)
        t2i_error_set("%s: a safetensors file without a vocabulary (t2i CLIP checkpoints carry theirs in metadata "
                      "\"vocab\"; OpenAI and Hugging Face weights need their merges file or vocab.json)", path);
    else tok = clip_tok_from_merges(v, strlen(v), n_merges, path);
    st_close(&f);
    return tok;
}

clip_tok *clip_tok_load(const char *path, long n_merges) {
    tok_bytes_ready();
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0) return load_hf(path, n_merges);
    if (n >= 12 && strcmp(path + n - 12, ".safetensors") == 0) return load_from_checkpoint(path, n_merges);
    size_t len = 0;
    char *text = read_maybe_gz(path, &len);
    if (!text) return NULL;
    clip_tok *tok = clip_tok_from_merges(text, len, n_merges, path);
    t2i_free(text);
    return tok;
}

/* ============================================================ BPE */

/* A pair in the heap: its rank and the node of its left symbol. It is still valid when
 * the pair now at pos has the same rank (ranks identify pairs, and a node's pair never
 * returns to an earlier one since symbols only grow). */
typedef struct {
    int32_t rank, pos;
} heap_ent;

/* Per-call scratch, grown as needed (one allocation per growth, not per word). */
typedef struct {
    int32_t *sym, *prev, *next;
    size_t cap;
    heap_ent *heap, *batch;
    size_t heap_n, heap_cap, batch_cap;
    uint8_t *bytes;
    size_t bytes_cap;
    int32_t *out;
    size_t out_n, out_cap;
    size_t max_ids;
} scratch;

static void scratch_free(scratch *s) {
    t2i_free(s->sym);
    t2i_free(s->prev);
    t2i_free(s->next);
    t2i_free(s->heap);
    t2i_free(s->batch);
    t2i_free(s->bytes);
    t2i_free(s->out);
}

static void out_push(scratch *s, const int32_t *ids, size_t n) {
    if (s->out_n + n > s->out_cap) {
        s->out_cap = T2I_MAX(2 * s->out_cap, s->out_n + n + 64);
        s->out = t2i_realloc(s->out, s->out_cap * sizeof(int32_t));
    }
    memcpy(s->out + s->out_n, ids, n * sizeof(int32_t));
    s->out_n += n;
}

static int ent_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(scratch *s, heap_ent e) {
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 256;
        s->heap = t2i_realloc(s->heap, s->heap_cap * sizeof(heap_ent));
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static heap_ent heap_pop(scratch *s) {
    heap_ent top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ent_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!ent_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static void push_pair(const clip_tok *tok, scratch *s, int32_t pos) {
    int32_t r = s->next[pos];
    if (r < 0) return;
    const pmap_slot *m = tok_pmap_get(&tok->merges, s->sym[pos], s->sym[r]);
    if (m) heap_push(s, (heap_ent){m->a, pos});
}

/* BPE of one word (n bytes): merges the lowest-rank pair everywhere (left to right, not
 * overlapping), then the next lowest, as openai's loop does. Pairs live in a heap keyed by
 * (rank, position); all entries of the current rank are taken out before any merge, so a
 * pair created during a round is only considered in a later round, as in Python (a merge
 * can never recreate a pair of its own rank: the merged string is longer than both parts). */
static void bpe_word(const clip_tok *tok, scratch *s, const uint8_t *w, size_t n) {
    if (n > s->cap) {
        s->cap = T2I_MAX(n, 2 * s->cap);
        s->sym = t2i_realloc(s->sym, s->cap * sizeof(int32_t));
        s->prev = t2i_realloc(s->prev, s->cap * sizeof(int32_t));
        s->next = t2i_realloc(s->next, s->cap * sizeof(int32_t));
    }
    for (size_t k = 0; k < n; k++) {
        s->sym[k] = tok->byte_sym[w[k]];
        s->prev[k] = (int32_t)k - 1;
        s->next[k] = (int32_t)k + 1;
    }
    s->sym[n - 1] = tok->eow_sym[w[n - 1]];
    s->next[n - 1] = -1;
    s->heap_n = 0;
    for (size_t k = 0; k + 1 < n; k++) push_pair(tok, s, (int32_t)k);
    while (s->heap_n) {
        int32_t rank = s->heap[0].rank;
        size_t nb = 0;
        while (s->heap_n && s->heap[0].rank == rank) {
            if (nb == s->batch_cap) {
                s->batch_cap = s->batch_cap ? 2 * s->batch_cap : 256;
                s->batch = t2i_realloc(s->batch, s->batch_cap * sizeof(heap_ent));
            }
            s->batch[nb++] = heap_pop(s);
        }
        for (size_t q = 0; q < nb; q++) {
            const heap_ent *e = &s->batch[q];
            int32_t r = s->next[e->pos];
            if (s->sym[e->pos] < 0 || r < 0) continue;
            const pmap_slot *m = tok_pmap_get(&tok->merges, s->sym[e->pos], s->sym[r]);
            if (!m || m->a != e->rank) continue;
            int32_t rr = s->next[r];
            s->sym[e->pos] = m->b;
            s->next[e->pos] = rr;
            if (rr >= 0) s->prev[rr] = e->pos;
            s->sym[r] = -1;
            if (s->prev[e->pos] >= 0) push_pair(tok, s, s->prev[e->pos]);
            push_pair(tok, s, e->pos);
        }
    }
    for (int32_t k = 0; k >= 0; k = s->next[k]) out_push(s, &s->sym[k], 1);
}

/* Appends the ids of one piece (UTF-8 bytes) to s->out, through the cache. */
static void encode_piece(clip_tok *tok, scratch *s, const uint8_t *w, size_t n) {
    if (n == strlen(SOT_TEXT) && memcmp(w, SOT_TEXT, n) == 0) {
        out_push(s, &tok->sot, 1);
        return;
    }
    if (n == strlen(EOT_TEXT) && memcmp(w, EOT_TEXT, n) == 0) {
        out_push(s, &tok->eot, 1);
        return;
    }
    if (n > CACHE_MAX_WORD) {
        bpe_word(tok, s, w, n);
        return;
    }
    int32_t hit[CACHE_MAX_WORD];
    size_t nhit = 0;
    pthread_mutex_lock(&tok->cache_mu);
    int64_t *v = tok_smap_get(&tok->cache, w, n);
    if (v) {
        nhit = (size_t)(*v & 0xFF);
        memcpy(hit, tok->cache_ids + (*v >> 8), nhit * sizeof(int32_t));
    }
    pthread_mutex_unlock(&tok->cache_mu);
    if (v) {
        out_push(s, hit, nhit);
        return;
    }
    size_t start = s->out_n;
    bpe_word(tok, s, w, n);
    size_t got = s->out_n - start;
    pthread_mutex_lock(&tok->cache_mu);
    if (tok->cache.count >= CACHE_MAX_ENTRIES) {
        tok_smap_clear(&tok->cache);
        tok->cache_nids = 0;
    }
    if (tok->cache_nids + got > tok->cache_cap) {
        tok->cache_cap = T2I_MAX(2 * tok->cache_cap, tok->cache_nids + got + 1024);
        tok->cache_ids = t2i_realloc(tok->cache_ids, tok->cache_cap * sizeof(int32_t));
    }
    int64_t *slot = tok_smap_put(&tok->cache, w, n, -1);
    if (*slot < 0) {
        memcpy(tok->cache_ids + tok->cache_nids, s->out + start, got * sizeof(int32_t));
        *slot = (int64_t)(tok->cache_nids << 8) | (int64_t)got;
        tok->cache_nids += got;
    }
    pthread_mutex_unlock(&tok->cache_mu);
}

typedef struct {
    clip_tok *tok;
    scratch *s;
} encode_ctx;

static int encode_piece_cb(const uint32_t *piece, size_t n, void *vctx) {
    encode_ctx *c = vctx;
    scratch *s = c->s;
    if (4 * n > s->bytes_cap) {
        s->bytes_cap = T2I_MAX(4 * n, 2 * s->bytes_cap);
        s->bytes = t2i_realloc(s->bytes, s->bytes_cap);
    }
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) nb += tok_utf8_put(s->bytes + nb, piece[i]);
    encode_piece(c->tok, s, s->bytes, nb);
    return s->out_n >= s->max_ids;
}

static int encode_impl(clip_tok *tok, const char *text, size_t len, size_t max_ids, scratch *s) {
    uint32_t *cp;
    size_t n;
    if (tok_clean_codepoints(text, len, NULL, &cp, &n) < 0) return -1;
    s->max_ids = max_ids;
    encode_ctx ctx = {tok, s};
    if (max_ids > 0) tok_pretokenize_cp(cp, n, encode_piece_cb, &ctx);
    t2i_free(cp);
    return 0;
}

int clip_tok_encode(clip_tok *tok, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    tok_bytes_ready();
    scratch s = {0};
    *ids = NULL;
    *n_ids = 0;
    int rc = encode_impl(tok, text, len, SIZE_MAX, &s);
    if (rc == 0) {
        *ids = s.out;
        *n_ids = s.out_n;
        s.out = NULL;
    }
    scratch_free(&s);
    return rc;
}

int clip_tok_tokenize(clip_tok *tok, const char *text, size_t len, int32_t *out, size_t context) {
    T2I_ASSERT(context >= 2);
    tok_bytes_ready();
    scratch s = {0};
    /* context - 1 ids are enough to know whether SOT + ids + EOT overflows */
    int rc = encode_impl(tok, text, len, context - 1, &s);
    if (rc < 0) {
        scratch_free(&s);
        return -1;
    }
    memset(out, 0, context * sizeof(int32_t));
    out[0] = tok->sot;
    int truncated = s.out_n + 2 > context;
    size_t keep = truncated ? context - 2 : s.out_n;
    if (keep) memcpy(out + 1, s.out, keep * sizeof(int32_t));
    out[1 + keep] = tok->eot;
    scratch_free(&s);
    return truncated;
}

char *clip_tok_decode(const clip_tok *tok, const int32_t *ids, size_t n, size_t *out_len) {
    buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= tok->vocab_size || tok->tok_len[ids[i]] < 0) {
            t2i_free(raw.p);
            t2i_error_set("token id %d is not in the vocabulary (size %zu)", ids[i], tok->vocab_size);
            return NULL;
        }
        tok_buf_add(&raw, tok->tok_bytes + tok->tok_off[ids[i]], (size_t)tok->tok_len[ids[i]]);
    }
    /* UTF-8 with errors='replace', then "</w>" -> " " */
    uint8_t *out = t2i_malloc(3 * raw.n + 1);
    const uint8_t *r = (const uint8_t *)raw.p;
    size_t k = 0;
    for (size_t i = 0; i < raw.n;) {
        uint32_t c;
        int len = tok_utf8_next(r + i, raw.n - i, &c);
        if (len > 0) {
            memcpy(out + k, r + i, (size_t)len);
            k += (size_t)len;
            i += (size_t)len;
        } else {
            k += tok_utf8_put(out + k, 0xFFFD);
            i += (size_t)-len;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        if (i + 4 <= k && memcmp(out + i, EOW_TEXT, 4) == 0) {
            out[m++] = ' ';
            i += 4;
        } else {
            out[m++] = out[i++];
        }
    }
    out[m] = 0;
    t2i_free(raw.p);
    if (out_len) *out_len = m;
    return (char *)out;
}

