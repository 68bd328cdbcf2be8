/* gan_source.c - GAN candidates for `t2i generate`; see gan_source.h. */
#include "gan_source.h"
#include "known_words.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "gan.h"
#include "text_cond.h"

typedef struct {
    gan_model m;
    clip_model *clip;
    nn_infer ws; /* G's inference workspace (exact kernels) */
    float *z, *c;
    int batch;
    char *caption;
} gan_src;

static int gan_generate(gen_source *s, const char *caption, const float *clip_text, uint64_t seed, long first, int n,
                        float *images) {
    (void)clip_text;
    gan_src *g = s->ctx;
    int zd = g->m.cfg.z_dim, cd = g->m.cfg.cond_dim;
    if (!g->caption || strcmp(g->caption, caption) != 0) {
        if (clip_embed_texts(g->clip, &caption, 1, g->c) != 0) return -1;
        for (int i = 1; i < g->batch; i++) memcpy(g->c + (size_t)i * cd, g->c, (size_t)cd * sizeof(float));
        free(g->caption);
        g->caption = t2i_strdup(caption);
    }
    size_t isz = (size_t)s->C * s->H * s->W;
    t2i_rng base;
    t2i_rng_seed(&base, seed ^ 0x6a4e0000ull);
    for (int i = 0; i < n; i += g->batch) {
        int k = n - i < g->batch ? n - i : g->batch;
        for (int j = 0; j < k; j++) {
            t2i_rng r = t2i_rng_split(&base, (uint64_t)(first + i + j));
            t2i_rng_fill_normal(&r, g->z + (size_t)j * zd, (size_t)zd, 0.0f, 1.0f);
        }
        const float *y = gan_g_infer(&g->m, &g->m.ema, &g->ws, g->z, g->c, k);
        memcpy(images + (size_t)i * isz, y, (size_t)k * isz * sizeof(float));
    }
    return 0;
}

static void gan_destroy(gen_source *s) {
    gan_src *g = s->ctx;
    nn_infer_free(&g->ws);
    free(g->z), free(g->c), free(g->caption);
    clip_free(g->clip);
    gan_model_free(&g->m);
    free(g);
}

int gen_source_gan(gen_source **out, const char *gan_path, const char *text_encoder, const char *vocab, int batch) {
    T2I_ASSERT(batch > 0);
    gan_src *g = t2i_calloc(1, sizeof *g);
    if (gan_load(&g->m, gan_path, 0, NULL) != 0) {
        free(g);
        return -1;
    }
    const gan_config *cfg = &g->m.cfg;
    if (cfg->cond_dim <= 0 || !cfg->text_encoder[0]) {
        gan_model_free(&g->m);
        free(g);
        return t2i_error_set("%s: not a caption-conditioned GAN (train one with gan train --text-encoder)", gan_path);
    }
    const char *enc = text_encoder ? text_encoder : cfg->text_encoder;
    g->clip = gan_text_encoder_load(enc, vocab ? vocab : cfg->text_vocab);
    int rc = g->clip ? clip_check_embed_dim(g->clip, cfg->cond_dim, gan_path) : -1;
    if (rc == 0 && cfg->n_probe == cfg->cond_dim) {
        /* the same encoder gives (nearly) the same probe embedding; bf16 copies differ slightly */
        float *e = t2i_malloc((size_t)cfg->cond_dim * sizeof(float));
        const char *probe = GAN_TEXT_PROBE;
        rc = clip_embed_texts(g->clip, &probe, 1, e);
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; rc == 0 && i < cfg->cond_dim; i++)
            dot += e[i] * cfg->text_probe[i], na += e[i] * e[i], nb += cfg->text_probe[i] * cfg->text_probe[i];
        if (rc == 0 && dot / sqrt(na * nb + 1e-30) < 0.99)
            rc = t2i_error_set("%s: text encoder %s is not the one the GAN was trained with (probe cosine %.3f)",
                               gan_path, enc, dot / sqrt(na * nb + 1e-30));
        free(e);
    }
    if (rc != 0) {
        if (g->clip) clip_free(g->clip);
        gan_model_free(&g->m);
        free(g);
        return -1;
    }
    g->batch = batch;
    g->z = t2i_malloc((size_t)batch * cfg->z_dim * sizeof(float));
    g->c = t2i_malloc((size_t)batch * cfg->cond_dim * sizeof(float));
    nn_infer_init(&g->ws, NN_INFER_EXACT);
    gen_source *s = t2i_calloc(1, sizeof *s);
    s->name = "gan";
    s->C = cfg->channels, s->H = s->W = cfg->res;
    s->batch = batch;
    s->clip_dim = 0; /* it embeds captions with its own encoder */
    s->generate = gan_generate;
    s->destroy = gan_destroy;
    s->ctx = g;
    if (gen_known_words_attach(s, gan_path) != 0) {
        gen_source_free(s);
        return -1;
    }
    *out = s;
    return 0;
}
