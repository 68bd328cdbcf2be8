/* text_cond.c - caption -> text-embedding table; see text_cond.h. */
#include "text_cond.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int gan_text_table_build(gan_text_table *t, clip_model *clip, char *const *caps, int n_items) {
    memset(t, 0, sizeof *t);
    char **all = t2i_malloc((size_t)(n_items ? n_items : 1) * sizeof(char *));
    int n = 0;
    for (int i = 0; i < n_items; i++)
        if (caps[i]) all[n++] = caps[i];
    if (n == 0) {
        free(all);
        return t2i_error_set("the data has no captions to condition on");
    }
    qsort(all, (size_t)n, sizeof(char *), cmp_str);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || strcmp(all[u - 1], all[i]) != 0) all[u++] = all[i];
    t->n = u;
    t->dim = clip_embed_dim(clip);
    t->caps = t2i_malloc((size_t)u * sizeof(char *));
    for (int i = 0; i < u; i++) t->caps[i] = t2i_strdup(all[i]);
    free(all);
    t->emb = t2i_malloc((size_t)u * t->dim * sizeof(float));
    const int chunk = 256;
    for (int i = 0; i < u; i += chunk) {
        int k = u - i < chunk ? u - i : chunk;
        if (clip_embed_texts(clip, (const char *const *)t->caps + i, k, t->emb + (size_t)i * t->dim) != 0) {
            gan_text_table_free(t);
            return -1;
        }
    }
    return 0;
}

const float *gan_text_lookup(const gan_text_table *t, const char *caption) {
    int lo = 0, hi = t->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(t->caps[mid], caption);
        if (c == 0) return t->emb + (size_t)mid * t->dim;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void gan_text_table_free(gan_text_table *t) {
    for (int i = 0; i < t->n; i++) free(t->caps[i]);
    free(t->caps);
    free(t->emb);
    memset(t, 0, sizeof *t);
}

clip_model *gan_text_encoder_load(const char *encoder, const char *vocab) {
    char *enc = t2i_resolve_path(encoder), *voc = t2i_resolve_path(vocab);
    clip_model *clip = clip_load(enc, voc);
    free(enc), free(voc);
    return clip;
}
