/* known_words.c - a caption's words that a source never saw in training; see known_words.h. */
#include "known_words.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "safetensors.h"

int gen_known_words_attach(gen_source *s, const char *path) {
    st_file f;
    if (st_open(&f, path) != 0) return -1;
    const char *v = st_meta(&f, T2I_WORDS_META_KEY);
    int rc = 0;
    if (v) {
        t2i_wordset *w = t2i_malloc(sizeof *w);
        char *what = t2i_asprintf("%s: metadata '%s'", path, T2I_WORDS_META_KEY);
        rc = t2i_wordset_parse(w, v, what);
        free(what);
        if (rc == 0) s->known_words = w;
        else free(w);
    }
    st_close(&f);
    return rc;
}

/* Sorted (strcmp) for bsearch. */
static const char *const function_words[] = {"a", "an", "and", "are", "at", "by", "for", "from", "in", "is",
                                             "its", "of", "on", "or", "the", "to", "with"};

static int cmp_word(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int gen_is_function_word(const char *word) {
    return bsearch(&word, function_words, sizeof function_words / sizeof function_words[0], sizeof(char *),
                   cmp_word) != NULL;
}

int gen_unknown_words_of(const t2i_wordset *known, const char *caption, char ***out) {
    char **w;
    int n = t2i_words_split(caption, &w), k = 0;
    for (int i = 0; i < n; i++) {
        int keep = !gen_is_function_word(w[i]) && !t2i_wordset_has(known, w[i]);
        for (int j = 0; j < k && keep; j++) keep = strcmp(w[j], w[i]) != 0;
        if (keep) {
            char *t = w[k];
            w[k++] = w[i];
            w[i] = t;
        }
    }
    for (int i = k; i < n; i++) free(w[i]);
    if (k == 0) {
        free(w);
        w = NULL;
    }
    *out = w;
    return k;
}

enum { GEN_WORDS_SHOWN = 12 };

int gen_unknown_words(gen_source *const *src, int nsrc, const char *caption, char *msg, size_t cap) {
    T2I_ASSERT(cap > 0);
    msg[0] = 0;
    size_t used = 0;
    int count = 0;
    char shown[240];
    t2i_text_show(caption, 200, shown, sizeof shown);
    for (int s = 0; s < nsrc; s++) {
        if (!src[s]->known_words) continue;
        char **w;
        int n = gen_unknown_words_of(src[s]->known_words, caption, &w);
        if (n == 0) continue;
        count++;
        /* a bounded line whatever the caption: the first GEN_WORDS_SHOWN words, each cut at 40 bytes */
        char list[GEN_WORDS_SHOWN * 64 + 64], one[64];
        size_t q = 0;
        for (int i = 0; i < n && i < GEN_WORDS_SHOWN; i++)
            q += (size_t)snprintf(list + q, sizeof list - q, "%s%s", i ? ", " : "", t2i_text_show(w[i], 40, one, sizeof one));
        if (n > GEN_WORDS_SHOWN) snprintf(list + q, sizeof list - q, " and %d more", n - GEN_WORDS_SHOWN);
        char *line = t2i_asprintf("\"%s\": the %s model never saw the word%s %s in its training captions; its images "
                                  "will not show %s\n",
                                  shown, src[s]->name, n > 1 ? "s" : "", list, n > 1 ? "them" : "it");
        size_t l = strlen(line);
        if (used + l < cap) {
            memcpy(msg + used, line, l + 1);
            used += l;
        }
        free(line);
        t2i_words_free(w, n);
    }
    return count;
}

void gen_warn_unknown_words(gen_source *const *src, int nsrc, const char *caption) {
    char msg[8192]; /* lines of at most 1.5 kB each, one per source */
    if (gen_unknown_words(src, nsrc, caption, msg, sizeof msg) == 0) return;
    for (char *line = msg, *e; *line; line = e + 1) {
        e = strchr(line, '\n');
        fprintf(stderr, "t2i: warning: %.*s\n", (int)(e - line), line);
    }
}
