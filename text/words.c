/* words.c - caption words and word sets; see words.h. */
#include "words.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base.h"

enum { CP_SEP, CP_WORD, CP_MARK, CP_APOS };

static int classify(utf8proc_int32_t c) {
    if (c == '\'' || c == 0x2019) return CP_APOS;
    if (c < 128) return ((c | 32) >= 'a' && (c | 32) <= 'z') || (c >= '0' && c <= '9') ? CP_WORD : CP_SEP;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return CP_WORD;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
        return CP_MARK;
    default:
        return CP_SEP;
    }
}

/* The code point at p (n bytes left) into *c; its length, or -1 for invalid UTF-8. */
static int next_cp(const uint8_t *p, size_t n, utf8proc_int32_t *c) {
    utf8proc_ssize_t l = utf8proc_iterate(p, (utf8proc_ssize_t)(n > 4 ? 4 : n), c);
    return l > 0 ? (int)l : -1;
}

/* The folded form of the len bytes at w (valid UTF-8), malloc'd. */
static char *fold(const char *w, size_t len) {
    int ascii = 1;
    for (size_t i = 0; i < len && ascii; i++) ascii = (unsigned char)w[i] < 128;
    if (ascii) {
        char *o = t2i_malloc(len + 1);
        for (size_t i = 0; i < len; i++) o[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
        o[len] = 0;
        return o;
    }
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)w, (utf8proc_ssize_t)len, &out,
                                      UTF8PROC_CASEFOLD | UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    T2I_ASSERTF(r >= 0 && out, "utf8proc_map: %s", utf8proc_errmsg(r)); /* the input was checked valid */
    char *o = t2i_strdup((const char *)out);
    free(out);
    return o;
}

int t2i_words_split(const char *text, char ***words) {
    const uint8_t *p = (const uint8_t *)text;
    size_t n = strlen(text), i = 0;
    char *buf = t2i_malloc(n + 1); /* the current word's bytes; ’ becomes ' (shorter) */
    size_t bl = 0;
    int count = 0, cap = 0;
    *words = NULL;
    for (;;) {
        utf8proc_int32_t c = 0;
        int l = i < n ? next_cp(p + i, n - i, &c) : 0;
        int k = l > 0 ? classify(c) : CP_SEP;
        if (k == CP_APOS && bl > 0) {
            /* inside a word only when a letter or digit follows */
            utf8proc_int32_t d = 0;
            int l2 = i + (size_t)l < n ? next_cp(p + i + l, n - i - (size_t)l, &d) : -1;
            if (l2 > 0 && classify(d) == CP_WORD) {
                buf[bl++] = '\'';
                i += (size_t)l;
                continue;
            }
            k = CP_SEP;
        }
        if (k == CP_WORD || (k == CP_MARK && bl > 0)) {
            memcpy(buf + bl, p + i, (size_t)l);
            bl += (size_t)l;
            i += (size_t)l;
            continue;
        }
        if (bl > 0) {
            if (count == cap) {
                cap = cap ? 2 * cap : 8;
                *words = t2i_realloc(*words, (size_t)cap * sizeof(char *));
            }
            (*words)[count++] = fold(buf, bl);
            bl = 0;
        }
        if (i >= n) break;
        i += l > 0 ? (size_t)l : 1;
    }
    free(buf);
    return count;
}

void t2i_words_free(char **words, int n) {
    for (int i = 0; i < n; i++) free(words[i]);
    free(words);
}

void t2i_wordset_init(t2i_wordset *s) { memset(s, 0, sizeof *s); }

static void push(t2i_wordset *s, char *w) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->w = t2i_realloc(s->w, s->cap * sizeof(char *));
    }
    s->w[s->n++] = w;
}

void t2i_wordset_add_text(t2i_wordset *s, const char *text) {
    char **w;
    int n = t2i_words_split(text, &w);
    for (int i = 0; i < n; i++) push(s, w[i]);
    free(w);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void t2i_wordset_finish(t2i_wordset *s) {
    if (s->n == 0) return;
    qsort(s->w, s->n, sizeof(char *), cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->w[i], s->w[k - 1]) == 0) free(s->w[i]);
        else s->w[k++] = s->w[i];
    }
    s->n = k;
}

int t2i_wordset_has(const t2i_wordset *s, const char *word) {
    return s->n > 0 && bsearch(&word, s->w, s->n, sizeof(char *), cmp_str) != NULL;
}

char *t2i_wordset_join(const t2i_wordset *s) {
    size_t len = 0;
    for (size_t i = 0; i < s->n; i++) len += strlen(s->w[i]) + 1;
    char *o = t2i_malloc(len + 1), *q = o;
    for (size_t i = 0; i < s->n; i++) {
        size_t l = strlen(s->w[i]);
        if (i) *q++ = ' ';
        memcpy(q, s->w[i], l);
        q += l;
    }
    *q = 0;
    return o;
}

int t2i_wordset_parse(t2i_wordset *s, const char *joined, const char *what) {
    t2i_wordset_init(s);
    const char *p = joined;
    while (*p) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char *tok = t2i_malloc(l + 1);
        memcpy(tok, p, l);
        tok[l] = 0;
        char **w;
        int n = l ? t2i_words_split(tok, &w) : 0;
        int ok = n == 1 && strcmp(w[0], tok) == 0;
        if (n > 0) t2i_words_free(w, n);
        if (!ok) {
            char shown[80];
            t2i_error_set("%s: '%s' at byte %zu is not a word as t2i splits captions (words are separated by single "
                          "spaces)", what, t2i_text_show(tok, 40, shown, sizeof shown), (size_t)(p - joined));
            free(tok);
            t2i_wordset_free(s);
            return -1;
        }
        push(s, tok);
        p += l;
        if (*p == ' ') {
            p++;
            if (!*p) {
                t2i_wordset_free(s);
                return t2i_error_set("%s: ends with a space", what);
            }
        }
    }
    t2i_wordset_finish(s);
    return 0;
}

void t2i_wordset_free(t2i_wordset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->w[i]);
    free(s->w);
    memset(s, 0, sizeof *s);
}

char *t2i_words_of_texts(const char *const *texts, size_t n) {
    t2i_wordset s;
    t2i_wordset_init(&s);
    for (size_t i = 0; i < n; i++) {
        t2i_wordset_add_text(&s, texts[i]);
        if (s.n > 4096 && (i & 1023) == 0) t2i_wordset_finish(&s); /* repeats dropped as it goes */
    }
    t2i_wordset_finish(&s);
    size_t len = 0;
    for (size_t i = 0; i < s.n; i++) len += strlen(s.w[i]) + 1;
    char *o = len <= T2I_WORDS_META_MAX ? t2i_wordset_join(&s) : NULL;
    t2i_wordset_free(&s);
    return o;
}
