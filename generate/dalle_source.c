/* dalle_source.c - the DALL-E-style transformer as a candidate source of `t2i generate`
 * (gen_source_dalle in generate.h): the caption's tokens are encoded once per caption,
 * token grids are sampled with the KV cache batch by batch (candidate i of a seed is
 * always the same grid) and decoded to images by the VQ decoder. With an image prompt
 * (the sampling options' keep mask) the kept cells of every image are the prompt's own
 * reconstruction (paste_kept), unless blending was asked (gen_source_dalle_set_blend).
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "generate.h"
#include "known_words.h"

typedef struct {
    dalle_model m;
    vq_model vq;
    dalle_sample_opts o;
    nn_arena a;
    int batch;
    int blend;       /* image prompts: decode kept cells with the rest (no paste) */
    int32_t *codes, *text;
    char *caption;   /* the caption text holds the tokens of */
} dalle_src;

/* The decoder's convolutions reach across cells, so a kept code's pixels move a little
 * with its redrawn neighbours: the kept cells take the prompt's own reconstruction, so
 * that what was kept is exactly what the VQ makes of the image. */
static void paste_kept(dalle_src *d, float *images, int n) {
    int C = d->vq.cfg.channels, R = d->vq.cfg.res, g = vq_grid(&d->vq), cell = R / g;
    size_t isz = (size_t)C * R * R;
    float *rec = t2i_malloc(isz * sizeof(float));
    nn_arena_reset(&d->a);
    dalle_decode(&d->vq, &d->a, d->o.prompt, 1, rec);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < g * g; j++) {
            if (!d->o.keep[j]) continue;
            int y0 = (j / g) * cell, x0 = (j % g) * cell;
            for (int c = 0; c < C; c++)
                for (int y = y0; y < y0 + cell; y++) {
                    size_t at = (size_t)c * R * R + (size_t)y * R + x0;
                    memcpy(images + (size_t)i * isz + at, rec + at, (size_t)cell * sizeof(float));
                }
        }
    free(rec);
}

static int dalle_generate(gen_source *s, const char *caption, const float *clip_text, uint64_t seed, long first,
                          int n, float *images) {
    (void)clip_text;
    dalle_src *d = s->ctx;
    if (!d->caption || strcmp(d->caption, caption) != 0) {
        free(d->caption);
        d->caption = NULL;
        if (dalle_encode_text_warn(&d->m, caption, d->text) < 0) return -1;
        d->caption = t2i_strdup(caption);
    }
    size_t isz = (size_t)s->C * s->H * s->W;
    for (int i = 0; i < n; i += d->batch) {
        int k = n - i < d->batch ? n - i : d->batch;
        nn_arena_reset(&d->a);
        dalle_sample(&d->m, &d->a, d->text, k, seed, first + i, &d->o, d->codes);
        if (d->o.stop && atomic_load_explicit(d->o.stop, memory_order_relaxed)) return t2i_error_set("cancelled");
        nn_arena_reset(&d->a);
        dalle_decode(&d->vq, &d->a, d->codes, k, images + (size_t)i * isz);
    }
    if (d->o.keep && !d->blend) paste_kept(d, images, n);
    return 0;
}

static void dalle_destroy(gen_source *s) {
    dalle_src *d = s->ctx;
    nn_arena_free(&d->a);
    free(d->codes), free(d->text), free(d->caption);
    vq_model_free(&d->vq);
    dalle_free(&d->m);
    free(d);
}

int gen_source_dalle(gen_source **out, const char *dalle_path, const char *vq_path, const dalle_sample_opts *o,
                     int batch) {
    T2I_ASSERT(batch > 0);
    dalle_src *d = t2i_calloc(1, sizeof *d);
    if (dalle_load(&d->m, dalle_path, 0, NULL) != 0) {
        free(d);
        return -1;
    }
    if (dalle_sample_check(o, d->m.cfg.codebook) != 0) {
        dalle_free(&d->m);
        free(d);
        return -1;
    }
    if (!vq_path) vq_path = d->m.vq_path;
    if (!vq_path) {
        dalle_free(&d->m);
        free(d);
        return t2i_error_set("%s records no VQ checkpoint; pass --vq", dalle_path);
    }
    if (dalle_vq_load(&d->vq, vq_path, &d->m.cfg) != 0) {
        dalle_free(&d->m);
        free(d);
        return -1;
    }
    d->o = *o;
    d->batch = batch;
    nn_arena_init(&d->a);
    d->codes = t2i_malloc((size_t)batch * dalle_image_len(&d->m.cfg) * sizeof(int32_t));
    d->text = t2i_malloc((size_t)d->m.cfg.text_len * sizeof(int32_t));
    gen_source *s = t2i_calloc(1, sizeof *s);
    s->name = "dalle";
    s->C = d->vq.cfg.channels, s->H = s->W = d->vq.cfg.res;
    s->batch = batch;
    s->clip_dim = 0;
    s->generate = dalle_generate;
    s->destroy = dalle_destroy;
    s->ctx = d;
    if (gen_known_words_attach(s, dalle_path) != 0) {
        gen_source_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int gen_source_dalle_set_sample(gen_source *s, const dalle_sample_opts *o) {
    T2I_ASSERT(s->destroy == dalle_destroy);
    dalle_src *d = s->ctx;
    if (dalle_sample_check(o, d->m.cfg.codebook) != 0) return -1;
    d->o = *o;
    return 0;
}

void gen_source_free(gen_source *s) {
    if (!s) return;
    if (s->destroy) s->destroy(s);
    if (s->known_words) t2i_wordset_free(s->known_words), free(s->known_words);
    free(s);
}

void gen_source_dalle_shape(const gen_source *s, int *C, int *R, int *g) {
    T2I_ASSERT(s->destroy == dalle_destroy);
    const dalle_src *d = s->ctx;
    *C = d->vq.cfg.channels, *R = d->vq.cfg.res, *g = vq_grid(&d->vq);
}

void gen_source_dalle_encode(gen_source *s, const float *image, int32_t *codes) {
    T2I_ASSERT(s->destroy == dalle_destroy);
    dalle_src *d = s->ctx;
    nn_arena_reset(&d->a);
    vq_encode(&d->vq, &d->a, image, 1, codes);
}

void gen_source_dalle_decode(gen_source *s, const int32_t *codes, float *image) {
    T2I_ASSERT(s->destroy == dalle_destroy);
    dalle_src *d = s->ctx;
    nn_arena_reset(&d->a);
    dalle_decode(&d->vq, &d->a, codes, 1, image);
}

void gen_source_dalle_set_blend(gen_source *s, int blend) {
    T2I_ASSERT(s->destroy == dalle_destroy);
    ((dalle_src *)s->ctx)->blend = blend;
}
