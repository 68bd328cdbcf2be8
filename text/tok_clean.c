/* tok_clean.c - what the tokenizer does to text before BPE (tokenizer.h, steps 1-4):
 * strict UTF-8 decoding, html.unescape twice, whitespace cleaning, lowercasing, then the
 * pre-tokenizer, all on an array of code points (uint32_t).
 *
 * Unicode properties come from utf8proc; the few behaviours of Python's standard library
 * that utf8proc cannot express (HTML5 entity names, numeric reference fix-ups, Python's
 * Cased/Case_Ignorable extras for the final sigma) are tables generated from Python into
 * html_entities.c.
 *
 * The correspondence with the regex module (IGNORECASE) was checked over every code point
 * assigned in utf8proc's Unicode version: letters/numbers by general category; the
 * contraction and special-token letters also match a character whose uppercase is the
 * letter's (only U+017F long s matters: "'ſ" is a contraction); a non-letter whose case
 * variants are letters (U+0345) matches no alternative and is dropped.
 */
#include <string.h>
#include <utf8proc.h>

#include "base.h"
#include "tok_util.h"
#include "tokenizer.h"

/* ============================================================ UTF-8 */

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
        int len = tok_utf8_next(s + i, n - i, &c);
        if (len < 0) {
            if (what) return t2i_error_set("%s: invalid UTF-8 at byte %zu", what, i);
            return t2i_error_set("invalid UTF-8 at byte %zu", i);
        }
        out[k++] = c;
        i += (size_t)len;
    }
    return (long)k;
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
int tok_clean_codepoints(const char *text, size_t len, const char *what, uint32_t **out, size_t *n_out) {
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

/* The pattern, alternative by alternative, at each position (regex findall semantics:
 * the first alternative that matches wins; a character nothing matches is skipped). */
int tok_pretokenize_cp(const uint32_t *s, size_t n, piece_fn fn, void *ctx) {
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

/* ============================================================ public helpers */

char *clip_tok_clean(const char *text, size_t len, size_t *out_len) {
    uint32_t *cp;
    size_t n;
    if (tok_clean_codepoints(text, len, NULL, &cp, &n) < 0) return NULL;
    uint8_t *out = t2i_malloc(4 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += tok_utf8_put(out + k, cp[i]);
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
    for (size_t i = 0; i < n; i++) nb += tok_utf8_put(c->tmp + nb, piece[i]);
    return c->fn((const char *)c->tmp, nb, c->ctx);
}

int clip_tok_pretokenize(const char *text, size_t len, int (*fn)(const char *piece, size_t piece_len, void *ctx),
                         void *ctx) {
    uint32_t *cp;
    size_t n;
    if (tok_clean_codepoints(text, len, NULL, &cp, &n) < 0) return -1;
    piece_utf8_ctx c = {fn, ctx, t2i_malloc(4 * n + 1)};
    tok_pretokenize_cp(cp, n, piece_utf8_cb, &c);
    t2i_free(c.tmp);
    t2i_free(cp);
    return 0;
}

const char *clip_tok_unicode_version(void) { return utf8proc_unicode_version(); }

