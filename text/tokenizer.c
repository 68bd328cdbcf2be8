/* tokenizer.c - the CLIP BPE tokenizer and trainer; see tokenizer.h for the steps, the
 * vocabulary formats and the error conventions.
 *
 * Text is processed as an array of code points (uint32_t): strict UTF-8 decoding,
 * html.unescape twice, whitespace cleaning, lowercasing, then the pre-tokenizer walks the
 * array and hands each piece, re-encoded as UTF-8, to the BPE. Unicode properties come
 * from utf8proc; the few behaviours of Python's standard library that utf8proc cannot
 * express (HTML5 entity names, numeric reference fix-ups, Python's Cased/Case_Ignorable
 * extras for the final sigma) are tables generated from Python into html_entities.c.
 *
 * The correspondence with the regex module (IGNORECASE) was checked over every code point
 * assigned in utf8proc's Unicode version: letters/numbers by general category; the
 * contraction and special-token letters also match a character whose uppercase is the
 * letter's (only U+017F long s matters: "'ſ" is a contraction); a non-letter whose case
 * variants are letters (U+0345) matches no alternative and is dropped.
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
#include <utf8proc.h>
#include <zlib.h>

#include "base.h"
#include "safetensors.h"

#define SOT_TEXT "<|startoftext|>"
#define EOT_TEXT "<|endoftext|>"
#define EOW_TEXT "</w>"
#define CACHE_MAX_WORD 64       /* longest word (bytes) kept in the cache */
#define CACHE_MAX_ENTRIES 32768 /* the cache is emptied when it holds this many words */
#define MAX_VOCAB_FILE ((size_t)256 << 20)

/* ============================================================ bytes_to_unicode */

/* The printable bytes map to themselves, the other 68 to U+0100.. in byte order; the
 * vocabulary lists the printable ones ascending, then the others. */
static uint32_t g_cp_of_byte[256];  /* byte -> code point of its symbol character */
static int16_t g_byte_of_cp[324];   /* code point -> byte, -1 if not a symbol character */
static uint8_t g_byte_at[256];      /* vocabulary position -> byte */
static pthread_once_t g_bytes_once = PTHREAD_ONCE_INIT;

static int byte_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

static void bytes_init(void) {
    int pos = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if (byte_printable(b)) g_byte_at[pos++] = (uint8_t)b;
    for (int b = 0; b < 256; b++)
        if (!byte_printable(b)) g_byte_at[pos++] = (uint8_t)b;
    for (int c = 0; c < 324; c++) g_byte_of_cp[c] = -1;
    for (int b = 0; b < 256; b++) {
        g_cp_of_byte[b] = byte_printable(b) ? (uint32_t)b : (uint32_t)(256 + extra++);
        g_byte_of_cp[g_cp_of_byte[b]] = (int16_t)b;
    }
}

static void bytes_ready(void) { pthread_once(&g_bytes_once, bytes_init); }

/* ============================================================ UTF-8 */

/* Length of the valid sequence at s (1..4), or minus the length of its maximal invalid
 * subpart (what Python's errors='replace' turns into one U+FFFD). */
static int utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
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

static size_t utf8_put(uint8_t *out, uint32_t c) {
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

/* Strict decoding into out (capacity n). Returns the count, or -1 with the error set. */
static long utf8_decode(const char *text, size_t n, uint32_t *out, const char *what) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, k = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            out[k++] = s[i++];
            continue;
        }
        uint32_t c;
        int len = utf8_next(s + i, n - i, &c);
        if (len < 0) {
            if (what) return t2i_error_set("%s: invalid UTF-8 at byte %zu", what, i);
            return t2i_error_set("invalid UTF-8 at byte %zu", i);
        }
        out[k++] = c;
        i += (size_t)len;
    }
    return (long)k;
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

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static void smap_init(smap *m, size_t cap_hint) {
    size_t cap = 64;
    while (cap < 2 * cap_hint) cap *= 2;
    m->slots = t2i_calloc(cap, sizeof(smap_slot));
    m->cap = cap;
    m->count = 0;
    m->arena = NULL;
    m->arena_len = m->arena_cap = 0;
}

static void smap_free(smap *m) {
    t2i_free(m->slots);
    t2i_free(m->arena);
    memset(m, 0, sizeof *m);
}

static void smap_clear(smap *m) {
    memset(m->slots, 0, m->cap * sizeof(smap_slot));
    m->count = 0;
    m->arena_len = 0;
}

static smap_slot *smap_find(const smap *m, const void *key, size_t len, uint64_t h) {
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        smap_slot *s = &m->slots[i];
        if (!s->used) return s;
        if (s->hash == h && s->len == len && memcmp(m->arena + s->off, key, len) == 0) return s;
    }
}

static int64_t *smap_get(const smap *m, const void *key, size_t len) {
    smap_slot *s = smap_find(m, key, len, hash_bytes(key, len));
    return s->used ? &s->val : NULL;
}

/* Returns the value slot for key, inserting it with value init when absent. */
static int64_t *smap_put(smap *m, const void *key, size_t len, int64_t init) {
    uint64_t h = hash_bytes(key, len);
    smap_slot *s = smap_find(m, key, len, h);
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
        s = smap_find(m, key, len, h);
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

static uint64_t pair_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r; }

static size_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

static void pmap_init(pmap *m, size_t cap_hint) {
    size_t cap = 64;
    while (cap < 2 * cap_hint) cap *= 2;
    m->slots = t2i_malloc(cap * sizeof(pmap_slot));
    for (size_t i = 0; i < cap; i++) m->slots[i].key = PMAP_EMPTY;
    m->cap = cap;
    m->count = 0;
}

static void pmap_free(pmap *m) {
    t2i_free(m->slots);
    memset(m, 0, sizeof *m);
}

static pmap_slot *pmap_find(const pmap *m, uint64_t k) {
    size_t mask = m->cap - 1;
    for (size_t i = pair_hash(k) & mask;; i = (i + 1) & mask)
        if (m->slots[i].key == k || m->slots[i].key == PMAP_EMPTY) return &m->slots[i];
}

static const pmap_slot *pmap_get(const pmap *m, int32_t l, int32_t r) {
    const pmap_slot *s = pmap_find(m, pair_key(l, r));
    return s->key == PMAP_EMPTY ? NULL : s;
}

/* Returns the slot for (l, r), inserting it (a = b = 0) when absent. */
static pmap_slot *pmap_put(pmap *m, int32_t l, int32_t r) {
    uint64_t k = pair_key(l, r);
    pmap_slot *s = pmap_find(m, k);
    if (s->key == k) return s;
    if (2 * (m->count + 1) > m->cap) {
        pmap_slot *old = m->slots;
        size_t old_cap = m->cap;
        pmap_init(m, old_cap);
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].key == PMAP_EMPTY) continue;
            *pmap_find(m, old[i].key) = old[i];
            m->count++;
        }
        t2i_free(old);
        s = pmap_find(m, k);
    }
    s->key = k;
    s->a = s->b = 0;
    m->count++;
    return s;
}

/* ============================================================ Unicode properties */

static int cat_is_letter(int c) { return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO; }
static int cat_is_number(int c) { return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO; }

/* Python's str.isspace(): category Zs or bidirectional class B, S or WS. */
static int py_isspace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)c);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_B ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_S || p->bidi_class == UTF8PROC_BIDI_CLASS_WS;
}

static int in_ranges(uint32_t c, const uint32_t (*r)[2], size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0]) hi = mid;
        else if (c > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* Python's Case_Ignorable and Cased, as used by its final-sigma rule. */
static int py_case_ignorable(uint32_t c) {
    int cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
        cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK)
        return 1;
    return in_ranges(c, clip_tok_sigma_ignorable_extra, clip_tok_sigma_ignorable_extra_count);
}

static int py_cased(uint32_t c) {
    int cat = utf8proc_category((utf8proc_int32_t)c);
    utf8proc_int32_t x = (utf8proc_int32_t)c;
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return 1;
    if (utf8proc_tolower(x) != x || utf8proc_toupper(x) != x || utf8proc_totitle(x) != x) return 1;
    return in_ranges(c, clip_tok_sigma_cased_extra, clip_tok_sigma_cased_extra_count);
}

/* Pre-tokenizer classes: what the pattern's last three alternatives do with a character. */
enum { CL_SKIP, CL_LETTER, CL_NUMBER, CL_OTHER };

static int char_class(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CL_LETTER;
        if (c >= '0' && c <= '9') return CL_NUMBER;
        if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return CL_SKIP;  /* regex's \s (not 1C-1F) */
        return CL_OTHER;
    }
    utf8proc_int32_t x = (utf8proc_int32_t)c;
    int cat = utf8proc_category(x);
    if (cat_is_letter(cat)) return CL_LETTER;
    if (cat_is_number(cat)) return CL_NUMBER;
    if (py_isspace(c)) return CL_SKIP;
    /* Under IGNORECASE, [^\s\p{L}\p{N}] rejects a character when one of its case variants
     * is a letter or number, while [\p{L}] does not accept it: regex skips it (U+0345). */
    utf8proc_int32_t v[3] = {utf8proc_tolower(x), utf8proc_toupper(x), utf8proc_totitle(x)};
    for (int k = 0; k < 3; k++) {
        if (v[k] == x) continue;
        int vc = utf8proc_category(v[k]);
        if (cat_is_letter(vc) || cat_is_number(vc)) return CL_SKIP;
    }
    return CL_OTHER;
}

/* Does c match the pattern letter a (lowercase ASCII) under IGNORECASE? */
static int fold_eq(uint32_t c, char a) {
    if (c == (uint32_t)(unsigned char)a) return 1;
    if (c < 0x80 || a < 'a' || a > 'z') return 0;
    return utf8proc_toupper((utf8proc_int32_t)c) == a - 32;
}

/* ============================================================ cleaning */

static int html_name_cmp(const char *name, const char *key, size_t klen) {
    size_t nlen = strlen(name);
    int c = memcmp(name, key, T2I_MIN(nlen, klen));
    if (c) return c;
    return nlen < klen ? -1 : nlen > klen ? 1 : 0;
}

static const clip_tok_entity *html_lookup(const char *key, size_t klen) {
    size_t lo = 0, hi = clip_tok_html5_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = html_name_cmp(clip_tok_html5[mid].name, key, klen);
        if (c == 0) return &clip_tok_html5[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int is_hex(uint32_t c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* Python's _replace_charref for a numeric reference (num saturated above 0x10FFFF).
 * Writes 0 or 1 code point. */
static size_t charref_value(uint32_t num, uint32_t *out) {
    size_t lo = 0, hi = clip_tok_charref_fix_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (clip_tok_charref_fix[mid][0] == num) {
            out[0] = clip_tok_charref_fix[mid][1];
            return 1;
        }
        if (clip_tok_charref_fix[mid][0] < num) lo = mid + 1;
        else hi = mid;
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        out[0] = 0xFFFD;
        return 1;
    }
    if (in_ranges(num, clip_tok_charref_drop, clip_tok_charref_drop_count)) return 0;
    out[0] = num;
    return 1;
}

/* html.unescape: the output is never longer than the input. Returns the output length. */
static size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out) {
    size_t i = 0, k = 0;
    while (i < n) {
        if (in[i] != '&') {
            out[k++] = in[i++];
            continue;
        }
        if (i + 1 < n && in[i + 1] == '#') {
            size_t j = i + 2;
            uint32_t num = 0;
            int base = 10;
            if (j < n && (in[j] == 'x' || in[j] == 'X') && j + 1 < n && is_hex(in[j + 1])) base = 16, j++;
            else if (!(j < n && in[j] >= '0' && in[j] <= '9')) {
                out[k++] = in[i++];  /* "&#" without digits: not a reference */
                continue;
            }
            for (; j < n && (base == 16 ? is_hex(in[j]) : (in[j] >= '0' && in[j] <= '9')); j++) {
                uint32_t d = in[j] <= '9' ? in[j] - '0' : (in[j] | 0x20) - 'a' + 10;
                num = num > 0x10FFFF ? 0x110000 : num * (uint32_t)base + d;
            }
            if (num > 0x10FFFF) num = 0x110000;
            if (j < n && in[j] == ';') j++;
            k += charref_value(num, out + k);
            i = j;
            continue;
        }
        /* Named: up to 32 characters other than \t \n \f space < & # ;, then an optional ';'. */
        size_t j = i + 1;
        while (j < n && j - (i + 1) < 32) {
            uint32_t c = in[j];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';')
                break;
            j++;
        }
        if (j == i + 1) {
            out[k++] = in[i++];
            continue;
        }
        if (j < n && in[j] == ';') j++;
        size_t slen = j - (i + 1);
        char key[34];
        for (size_t q = 0; q < slen; q++) {
            uint32_t c = in[i + 1 + q];
            key[q] = (c > 0 && c < 0x80) ? (char)c : 1;  /* 1: in no entity name */
        }
        const clip_tok_entity *e = html_lookup(key, slen);
        size_t used = slen;
        /* Not a full name: the longest prefix (at least 2 characters) that is one. */
        for (size_t x = slen - 1; !e && x >= 2; x--) {
            e = html_lookup(key, x);
            used = x;
        }
        if (e) {
            out[k++] = e->cp[0];
            if (e->cp[1]) out[k++] = e->cp[1];
            for (size_t q = used; q < slen; q++) out[k++] = in[i + 1 + q];
        } else {
            for (size_t q = i; q < j; q++) out[k++] = in[q];
        }
        i = j;
    }
    return k;
}

/* strip, collapse whitespace runs to one space, strip (in place). */
static size_t clean_whitespace(uint32_t *s, size_t n) {
    size_t k = 0;
    int pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (py_isspace(s[i])) {
            pending = k > 0;
            continue;
        }
        if (pending) s[k++] = ' ';
        pending = 0;
        s[k++] = s[i];
    }
    return k;
}

/* str.lower(): out needs n + (number of U+0130) slots. */
static size_t py_lower(const uint32_t *in, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) {
            out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            out[k++] = 'i';
            out[k++] = 0x307;
        } else if (c == 0x3A3) {
            /* Final_Sigma: a cased letter before (skipping case-ignorables) and none after. */
            size_t j = i;
            while (j > 0 && py_case_ignorable(in[j - 1])) j--;
            int final = j > 0 && py_cased(in[j - 1]);
            if (final) {
                j = i + 1;
                while (j < n && py_case_ignorable(in[j])) j++;
                final = j == n || !py_cased(in[j]);
            }
            out[k++] = final ? 0x3C2 : 0x3C3;
        } else {
            out[k++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    return k;
}

/* Steps 1-3 on UTF-8 text: a t2i_malloc'd code point array and its length, or -1. */
static int clean_codepoints(const char *text, size_t len, const char *what, uint32_t **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (len > CLIP_TOK_MAX_TEXT) {
        if (what) return t2i_error_set("%s: text of %zu bytes is over the %zu-byte limit", what, len, CLIP_TOK_MAX_TEXT);
        return t2i_error_set("text of %zu bytes is over the %zu-byte limit", len, CLIP_TOK_MAX_TEXT);
    }
    uint32_t *a = t2i_malloc((len + 1) * sizeof(uint32_t));
    long n = utf8_decode(text, len, a, what);
    if (n < 0) {
        t2i_free(a);
        return -1;
    }
    size_t m = (size_t)n;
    int has_amp = 0;
    for (size_t i = 0; i < m && !has_amp; i++) has_amp = a[i] == '&';
    if (has_amp) {
        uint32_t *b = t2i_malloc((m + 1) * sizeof(uint32_t));
        m = html_unescape(a, m, b);
        m = html_unescape(b, m, a);
        t2i_free(b);
    }
    m = clean_whitespace(a, m);
    size_t extra = 0;
    for (size_t i = 0; i < m; i++) extra += a[i] == 0x130;
    uint32_t *low = t2i_malloc((m + extra + 1) * sizeof(uint32_t));
    *n_out = py_lower(a, m, low);
    t2i_free(a);
    *out = low;
    return 0;
}

/* ============================================================ pre-tokenizer */

static size_t match_literal(const uint32_t *s, size_t n, const char *lit) {
    size_t L = strlen(lit);
    if (n < L) return 0;
    for (size_t i = 0; i < L; i++)
        if (!fold_eq(s[i], lit[i])) return 0;
    return L;
}

typedef int (*piece_fn)(const uint32_t *piece, size_t n, void *ctx);

/* The pattern, alternative by alternative, at each position (regex findall semantics:
 * the first alternative that matches wins; a character nothing matches is skipped). */
static int pretokenize_cp(const uint32_t *s, size_t n, piece_fn fn, void *ctx) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i];
        size_t len = 0;
        if (c == '<') {
            len = match_literal(s + i, n - i, SOT_TEXT);
            if (!len) len = match_literal(s + i, n - i, EOT_TEXT);
        } else if (c == '\'' && i + 1 < n) {
            static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
            for (int k = 0; k < 7 && !len; k++) len = match_literal(s + i, n - i, contractions[k]);
        }
        if (!len) {
            int cls = char_class(c);
            if (cls == CL_SKIP) {
                i++;
                continue;
            }
            len = 1;
            if (cls != CL_NUMBER)
                while (i + len < n && char_class(s[i + len]) == cls) len++;
        }
        if (fn(s + i, len, ctx)) return 1;
        i += len;
    }
    return 0;
}

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
const char *clip_tok_unicode_version(void) { return utf8proc_unicode_version(); }

void clip_tok_free(clip_tok *tok) {
    if (!tok) return;
    t2i_free(tok->tok_off);
    t2i_free(tok->tok_len);
    t2i_free(tok->tok_bytes);
    pmap_free(&tok->merges);
    smap_free(&tok->cache);
    t2i_free(tok->cache_ids);
    pthread_mutex_destroy(&tok->cache_mu);
    t2i_free(tok);
}

static clip_tok *tok_new(void) {
    clip_tok *tok = t2i_calloc(1, sizeof *tok);
    pthread_mutex_init(&tok->cache_mu, NULL);
    smap_init(&tok->cache, 1024);
    return tok;
}

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void buf_add(buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = T2I_MAX(2 * b->cap, b->n + n + 64);
        b->p = t2i_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* Decodes a vocabulary string (symbol characters) into raw bytes appended to out.
 * Returns 0, or -1 when a character is not a bytes_to_unicode character. */
static int symbol_to_bytes(const char *s, size_t n, buf *out) {
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        int len = utf8_next((const uint8_t *)s + i, n - i, &c);
        if (len < 0 || c >= 324 || g_byte_of_cp[c] < 0) return -1;
        uint8_t b = (uint8_t)g_byte_of_cp[c];
        buf_add(out, &b, 1);
        i += (size_t)len;
    }
    return 0;
}

/* Fills byte_sym / eow_sym / sot / eot from the canonical map of raw bytes -> id. */
static int resolve_specials(clip_tok *tok, const smap *ids, const char *name) {
    for (int b = 0; b < 256; b++) {
        char key[5] = {(char)b, '<', '/', 'w', '>'};
        int64_t *v = smap_get(ids, key, 1), *w = smap_get(ids, key, 5);
        if (!v || !w)
            return t2i_error_set("%s: no token for byte 0x%02X%s", name, b, v ? " with </w>" : "");
        tok->byte_sym[b] = (int32_t)*v;
        tok->eow_sym[b] = (int32_t)*w;
    }
    int64_t *s = smap_get(ids, SOT_TEXT, strlen(SOT_TEXT)), *e = smap_get(ids, EOT_TEXT, strlen(EOT_TEXT));
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
    bytes_ready();
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
        uint8_t b = g_byte_at[p & 255];
        buf_add(&bytes, &b, 1);
        if (p >= 256) buf_add(&bytes, EOW_TEXT, 4);
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
    buf_add(&bytes, SOT_TEXT, strlen(SOT_TEXT));
    tok->tok_len[V - 2] = (int32_t)strlen(SOT_TEXT);
    tok->tok_off[V - 1] = bytes.n;
    buf_add(&bytes, EOT_TEXT, strlen(EOT_TEXT));
    tok->tok_len[V - 1] = (int32_t)strlen(EOT_TEXT);
    tok->tok_bytes = bytes.p;
    bytes.p = NULL;

    /* Python: encoder = dict(zip(vocab, ids)), bpe_ranks = dict(zip(merges, ranks)): for a
     * repeated string or pair, the last one wins. */
    smap ids;
    smap_init(&ids, V);
    for (size_t id = 0; id < V; id++)
        *smap_put(&ids, tok->tok_bytes + tok->tok_off[id], (size_t)tok->tok_len[id], 0) = (int64_t)id;
    pmap_init(&tok->merges, ml.n);
    for (size_t k = 0; k < ml.n; k++) {
        const char *m = tok->tok_bytes + tok->tok_off[512 + k];
        int64_t *l = smap_get(&ids, m, split[k]);
        int64_t *r = smap_get(&ids, m + split[k], (size_t)tok->tok_len[512 + k] - split[k]);
        int64_t *res = smap_get(&ids, m, (size_t)tok->tok_len[512 + k]);
        if (!l || !r) continue;  /* a symbol no merge produces: the pair can never occur */
        pmap_slot *s = pmap_put(&tok->merges, (int32_t)*l, (int32_t)*r);
        s->a = (int32_t)k;
        s->b = (int32_t)*res;
    }
    int rc = resolve_specials(tok, &ids, name);
    smap_free(&ids);
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
        buf_add(&b, chunk, (size_t)got);
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
    if (!b.p) buf_add(&b, "", 0);
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
    smap_init(&ids, count);
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
        if (tok->tok_len[id] >= 0) *smap_put(&ids, bytes.p + tok->tok_off[id], (size_t)tok->tok_len[id], 0) = (int64_t)id;
    tok->tok_bytes = bytes.p;
    bytes = (buf){0};
    if (resolve_specials(tok, &ids, json_path) < 0) goto fail;

    mtext = read_maybe_gz(merges_path, &mlen);
    if (!mtext) goto fail;
    if (parse_merges(mtext, mlen, n_merges, merges_path, &ml) < 0) goto fail;
    tok->n_merges = ml.n;
    pmap_init(&tok->merges, ml.n);
    size_t line_base = ml.header ? 2 : 1;
    for (size_t k = 0; k < ml.n; k++) {
        size_t la, lb;
        bytes.n = 0;
        if (merge_line_bytes(mtext, &ml, k, &bytes, &la, &lb, merges_path, line_base) < 0) goto fail;
        int64_t *l = smap_get(&ids, bytes.p, la), *r = smap_get(&ids, bytes.p + la, lb);
        int64_t *res = smap_get(&ids, bytes.p, la + lb);
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
        pmap_slot *s = pmap_put(&tok->merges, (int32_t)*l, (int32_t)*r);
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
    smap_free(&ids);
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
    bytes_ready();
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
    const pmap_slot *m = pmap_get(&tok->merges, s->sym[pos], s->sym[r]);
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
            const pmap_slot *m = pmap_get(&tok->merges, s->sym[e->pos], s->sym[r]);
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
    int64_t *v = smap_get(&tok->cache, w, n);
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
        smap_clear(&tok->cache);
        tok->cache_nids = 0;
    }
    if (tok->cache_nids + got > tok->cache_cap) {
        tok->cache_cap = T2I_MAX(2 * tok->cache_cap, tok->cache_nids + got + 1024);
        tok->cache_ids = t2i_realloc(tok->cache_ids, tok->cache_cap * sizeof(int32_t));
    }
    int64_t *slot = smap_put(&tok->cache, w, n, -1);
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
    for (size_t i = 0; i < n; i++) nb += utf8_put(s->bytes + nb, piece[i]);
    encode_piece(c->tok, s, s->bytes, nb);
    return s->out_n >= s->max_ids;
}

static int encode_impl(clip_tok *tok, const char *text, size_t len, size_t max_ids, scratch *s) {
    uint32_t *cp;
    size_t n;
    if (clean_codepoints(text, len, NULL, &cp, &n) < 0) return -1;
    s->max_ids = max_ids;
    encode_ctx ctx = {tok, s};
    if (max_ids > 0) pretokenize_cp(cp, n, encode_piece_cb, &ctx);
    t2i_free(cp);
    return 0;
}

int clip_tok_encode(clip_tok *tok, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    bytes_ready();
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
    bytes_ready();
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
        buf_add(&raw, tok->tok_bytes + tok->tok_off[ids[i]], (size_t)tok->tok_len[ids[i]]);
    }
    /* UTF-8 with errors='replace', then "</w>" -> " " */
    uint8_t *out = t2i_malloc(3 * raw.n + 1);
    const uint8_t *r = (const uint8_t *)raw.p;
    size_t k = 0;
    for (size_t i = 0; i < raw.n;) {
        uint32_t c;
        int len = utf8_next(r + i, raw.n - i, &c);
        if (len > 0) {
            memcpy(out + k, r + i, (size_t)len);
            k += (size_t)len;
            i += (size_t)len;
        } else {
            k += utf8_put(out + k, 0xFFFD);
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

/* ============================================================ public helpers */

char *clip_tok_clean(const char *text, size_t len, size_t *out_len) {
    uint32_t *cp;
    size_t n;
    if (clean_codepoints(text, len, NULL, &cp, &n) < 0) return NULL;
    uint8_t *out = t2i_malloc(4 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_put(out + k, cp[i]);
    out[k] = 0;
    t2i_free(cp);
    if (out_len) *out_len = k;
    return (char *)out;
}

typedef struct {
    int (*fn)(const char *, size_t, void *);
    void *ctx;
    uint8_t *tmp;
} piece_utf8_ctx;

static int piece_utf8_cb(const uint32_t *piece, size_t n, void *vctx) {
    piece_utf8_ctx *c = vctx;
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) nb += utf8_put(c->tmp + nb, piece[i]);
    return c->fn((const char *)c->tmp, nb, c->ctx);
}

int clip_tok_pretokenize(const char *text, size_t len, int (*fn)(const char *piece, size_t piece_len, void *ctx),
                         void *ctx) {
    uint32_t *cp;
    size_t n;
    if (clean_codepoints(text, len, NULL, &cp, &n) < 0) return -1;
    piece_utf8_ctx c = {fn, ctx, t2i_malloc(4 * n + 1)};
    pretokenize_cp(cp, n, piece_utf8_cb, &c);
    t2i_free(c.tmp);
    t2i_free(cp);
    return 0;
}

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
    buf_add(&key, raw, n);
    if (eow) buf_add(&key, EOW_TEXT, 4);
    int64_t *v = smap_put(&t->ids, key.p, key.n, -1);
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
    buf_add(&t->bytes, raw, n);
    *v = (int64_t)t->n;
    return (int32_t)t->n++;
}

static void sym_write(const symtab *t, int32_t id, buf *out) {
    const uint8_t *r = (const uint8_t *)t->bytes.p + t->off[id];
    for (uint32_t i = 0; i < t->len[id]; i++) {
        uint8_t u[4];
        buf_add(out, u, utf8_put(u, g_cp_of_byte[r[i]]));
    }
    if (t->eow[id]) buf_add(out, EOW_TEXT, 4);
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
    int64_t *v = smap_put(&wc->words, piece, n, -1);
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
    pmap_slot *s = pmap_put(&p->index, a, b);
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
    bytes_ready();
    if (vocab_size < 514) {
        t2i_error_set("vocabulary size %zu is below 514 (256 bytes, 256 with </w>, 2 special tokens)", vocab_size);
        return NULL;
    }
    size_t target = vocab_size - 514;
    word_count wc = {0};
    smap_init(&wc.words, 1024);
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        if (clip_tok_pretokenize(texts[i], len, count_piece, &wc) < 0) {
            t2i_error_prefix("text %zu", i);
            smap_free(&wc.words);
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
    smap_init(&st.ids, 1024);
    for (int p = 0; p < 512; p++) {
        uint8_t b = g_byte_at[p & 255];
        sym_add(&st, &b, 1, p >= 256);
    }
    int16_t pos_of_byte[256];
    for (int p = 0; p < 256; p++) pos_of_byte[g_byte_at[p]] = (int16_t)p;
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
    pmap_init(&P.index, 4096);
    for (size_t w = 0; w < wc.n; w++)
        for (size_t k = 0; k + 1 < wlen[w]; k++)
            pair_add(&P, seq[woff[w] + k], seq[woff[w] + k + 1], wc.freq[w], (int32_t)w, 0, 1);
    P.nchanged = 0;
    for (size_t i = 0; i < P.n; i++)
        if (P.info[i].count >= 2) cand_push(&P, (cand){P.info[i].count, P.info[i].a, P.info[i].b});

    int64_t *wstamp = t2i_malloc((wc.n + 1) * sizeof(int64_t));
    for (size_t w = 0; w < wc.n; w++) wstamp[w] = -1;
    buf out = {0};
    buf_add(&out, "#version: 0.2\n", 14);
    size_t merges = 0;
    while (merges < target && P.heap_n) {
        cand c = cand_pop(&P);
        size_t pidx = (size_t)pmap_get(&P.index, c.a, c.b)->a;
        if (P.info[pidx].count != c.count) continue;  /* stale: a fresher entry exists */
        int64_t stamp = (int64_t)merges + 1;
        sym_write(&st, c.a, &out);
        buf_add(&out, " ", 1);
        sym_write(&st, c.b, &out);
        buf_add(&out, "\n", 1);
        buf raw = {0};
        buf_add(&raw, st.bytes.p + st.off[c.a], st.len[c.a]);
        buf_add(&raw, st.bytes.p + st.off[c.b], st.len[c.b]);
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
    pmap_free(&P.index);
    t2i_free(st.off);
    t2i_free(st.len);
    t2i_free(st.eow);
    t2i_free(st.bytes.p);
    smap_free(&st.ids);
    t2i_free(seq);
    t2i_free(woff);
    t2i_free(wlen);
    t2i_free(wc.freq);
    smap_free(&wc.words);
    if (out_len) *out_len = out.n;
    return out.p;
}
