/* pipeline.c - the models of `t2i generate` loaded once and run per caption (see
 * pipeline.h): the default-model rules, the VQ recorded in the DALL-E file, CLIP, the
 * optional upscaler, and one call = candidates -> rerank -> upscale.
 */
#include "pipeline.h"
#include "gan_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "dist.h"
#include "safetensors.h"

const char *gen_models_dir(void) {
    const char *e = getenv("T2I_MODELS");
    return e && *e ? e : T2I_SOURCE_DIR "/samples/models";
}

void gen_pipeline_cfg_defaults(gen_pipeline_cfg *c) {
    memset(c, 0, sizeof *c);
    c->generator = "auto";
    c->batch = 64;
    c->tta_flip = 1; /* the shipped ensemble ranks better with it (bench/RESULTS.md) */
    dalle_sample_defaults(&c->sample);
    c->sample.cfg = 3.0f; /* guidance 3: best caption fidelity in bench/RESULTS.md */
}

static const char *dir_of(const gen_pipeline_cfg *c) { return c->models_dir ? c->models_dir : gen_models_dir(); }

static int default_exists(const gen_pipeline_cfg *c, const char *file) {
    char *p = t2i_asprintf("%s/%s.safetensors", dir_of(c), file);
    int r = t2i_path_exists(p);
    free(p);
    return r;
}

/* given, else DIR/file.safetensors when it exists (heap), else NULL with an error saying
 * which flag to pass (what) and how to make one (how). */
static char *default_model(const gen_pipeline_cfg *c, const char *given, const char *file, const char *what,
                           const char *how) {
    if (given) return t2i_strdup(given);
    char *p = t2i_asprintf("%s/%s.safetensors", dir_of(c), file);
    if (!t2i_path_exists(p)) {
        t2i_error_set("no %s given and the default %s does not exist; %s", what, p, how);
        free(p);
        return NULL;
    }
    return p;
}

/* The VQ decoder of a DALL-E file: given, else the one it records if present, else the
 * shipped one. NULL with the error set. */
static char *vq_for(const gen_pipeline_cfg *c, const char *dp) {
    if (c->vq_path) return t2i_strdup(c->vq_path);
    st_file f;
    char *rec = NULL;
    if (st_open(&f, dp) == 0) {
        const char *v = st_meta(&f, "vq");
        char *r = t2i_resolve_path(v);
        if (r && t2i_path_exists(r)) {
            rec = r;
        } else if (v) {
            /* another VQ's decoder would turn the codes into noise: no silent stand-in */
            t2i_error_set("%s was trained with the VQ '%s', which is not here: pass --vq with that tokenizer", dp, v);
            free(r);
            st_close(&f);
            return NULL;
        }
        st_close(&f);
    }
    if (rec) return rec;
    return default_model(c, NULL, "vq", "--vq", "train one with `t2i vq train` and pass --vq RUN/checkpoint.safetensors");
}

/* The CLIPs of list (files separated by commas): the first as p->clip, the others as
 * p->clip_more. */
static int load_clips(gen_pipeline *p, const char *list, const char *vocab) {
    clip_model *ms[GEN_MAX_CLIPS];
    int n = clip_load_list(list, vocab, GEN_MAX_CLIPS, ms);
    if (n < 0) return n == -2 ? t2i_error_prefix("--clip") : -1;
    p->clip = ms[0];
    for (int k = 1; k < n; k++) p->clip_more[p->n_clip_more++] = ms[k];
    return 0;
}

static int load_models(gen_pipeline *p, const gen_pipeline_cfg *c) {
    int use_dalle, use_gan;
    const char *g = c->generator ? c->generator : "auto";
    if (strcmp(g, "auto") == 0) {
        /* the models given; with none, the shipped transformer (more faithful than the shipped
         * GAN, alone or together: bench/RESULTS.md), else the shipped GAN */
        use_dalle = c->dalle_path != NULL, use_gan = c->gan_path != NULL;
        if (!use_dalle && !use_gan) {
            use_dalle = default_exists(c, "dalle");
            use_gan = !use_dalle && default_exists(c, "gan");
        }
        if (!use_dalle && !use_gan) use_dalle = 1; /* and the error below says what is missing */
    } else if (strcmp(g, "dalle") == 0 || strcmp(g, "gan") == 0 || strcmp(g, "both") == 0) {
        use_dalle = g[0] != 'g';
        use_gan = g[0] != 'd';
    } else {
        return t2i_error_set("--generator must be dalle, gan, both or auto, not '%s'", g);
    }
    if (use_dalle) {
        p->dalle_file = default_model(c, c->dalle_path, "dalle", "--dalle",
                                      "train one (t2i vq train, t2i vq encode, t2i dalle train) and pass --dalle "
                                      "RUN/checkpoint.safetensors");
        if (!p->dalle_file) return -1;
        st_file f; /* the DALL-E file's own problems first: missing, damaged, another model */
        if (nn_ckpt_open(&f, p->dalle_file, "dalle") != 0) return -1;
        st_close(&f);
        p->vq_file = vq_for(c, p->dalle_file);
        if (!p->vq_file) return -1;
        if (gen_source_dalle(&p->src[p->nsrc], p->dalle_file, p->vq_file, &c->sample, c->batch) != 0) return -1;
        p->dalle_index = p->nsrc++;
    }
    if (use_gan) {
        p->gan_file = default_model(c, c->gan_path, "gan", "--gan",
                                    "train one with `t2i gan train --text-encoder CLIP ...` and pass --gan FILE");
        if (!p->gan_file) return -1;
        if (gen_source_gan(&p->src[p->nsrc], p->gan_file, NULL, NULL, c->batch) != 0) return -1;
        p->gan_index = p->nsrc++;
    }
    if (c->upscale_path) {
        if (sr_load(&p->sr, c->upscale_path, 0, NULL) != 0) return -1;
        p->have_sr = 1;
        p->upscale_file = t2i_strdup(c->upscale_path);
    }
    p->clip_file = default_model(c, c->clip_path, "clip", "--clip",
                                 "train one with `t2i clip train` or pass --clip FILE (OpenAI's ViT-B/32 works too)");
    if (!p->clip_file) return -1;
    /* the shipped ensemble: clip2, clip3, ... beside clip, as many as are there in turn */
    for (int k = 2; !c->clip_path && k <= GEN_MAX_CLIPS; k++) {
        char name[16];
        snprintf(name, sizeof name, "clip%d", k);
        if (!default_exists(c, name)) break;
        char *more = t2i_asprintf("%s,%s/%s.safetensors", p->clip_file, dir_of(c), name);
        free(p->clip_file);
        p->clip_file = more;
    }
    if (load_clips(p, p->clip_file, c->clip_vocab) != 0) return -1;
    clip_set_tta_flip(p->clip, c->tta_flip);
    for (int k = 0; k < p->n_clip_more; k++) clip_set_tta_flip(p->clip_more[k], c->tta_flip);
    return 0;
}

gen_pipeline *gen_pipeline_load(const gen_pipeline_cfg *c) {
    T2I_ASSERT(c->batch > 0);
    if (dalle_sample_check(&c->sample, 1 << 20) != 0) return NULL;
    gen_pipeline *p = t2i_calloc(1, sizeof *p);
    p->dalle_index = p->gan_index = -1;
    p->sample = c->sample;
    if (load_models(p, c) != 0) {
        gen_pipeline_free(p);
        return NULL;
    }
    return p;
}

void gen_pipeline_free(gen_pipeline *p) {
    if (!p) return;
    for (int k = 0; k < p->nsrc; k++) gen_source_free(p->src[k]);
    if (p->clip) clip_free(p->clip);
    for (int k = 0; k < p->n_clip_more; k++) clip_free(p->clip_more[k]);
    if (p->have_sr) sr_model_free(&p->sr);
    free(p->clip_file), free(p->dalle_file), free(p->vq_file), free(p->gan_file), free(p->upscale_file);
    free(p);
}

void gen_call_defaults(const gen_pipeline *p, gen_call *k) {
    memset(k, 0, sizeof *k);
    k->use_dalle = p->dalle_index >= 0, k->use_gan = p->gan_index >= 0;
    k->candidates = 512, k->top = 32, k->seed = 1;
    k->sample = p->sample;
    k->upscale = p->have_sr;
}

/* Replaces each kept image by its upscaled version (grey images are upscaled as RGB). The
 * kept images of one size go through sr_upscale_batch together (small images run one per
 * thread there); the generators may draw different sizes, hence the groups. */
static void upscale_ranked(const sr_model *m, gen_ranked *r) {
    int s = m->cfg.scale;
    int *group = t2i_malloc((size_t)(r->n > 0 ? r->n : 1) * sizeof(int));
    char *done = t2i_calloc((size_t)(r->n > 0 ? r->n : 1), 1);
    for (int first = 0; first < r->n; first++) {
        if (done[first]) continue;
        int H = r->H[first], W = r->W[first], n = 0;
        for (int i = first; i < r->n; i++)
            if (!done[i] && r->H[i] == H && r->W[i] == W) group[n++] = i, done[i] = 1;
        size_t hw = (size_t)H * W, osz = 3 * hw * (size_t)s * s;
        float *rgb = t2i_malloc((size_t)n * 3 * hw * sizeof(float)), *up = t2i_malloc((size_t)n * osz * sizeof(float));
        for (int g = 0; g < n; g++) {
            int i = group[g];
            for (int c = 0; c < 3; c++)
                memcpy(rgb + ((size_t)g * 3 + c) * hw, r->images[i] + (size_t)(r->C[i] == 3 ? c : 0) * hw,
                       hw * sizeof(float));
        }
        sr_upscale_batch(m, rgb, n, H, W, up);
        for (int g = 0; g < n; g++) {
            int i = group[g];
            free(r->images[i]);
            r->images[i] = t2i_malloc(osz * sizeof(float));
            memcpy(r->images[i], up + (size_t)g * osz, osz * sizeof(float));
            r->C[i] = 3, r->H[i] = H * s, r->W[i] = W * s;
        }
        free(rgb), free(up);
    }
    free(group), free(done);
}

int gen_pipeline_prompt_shape(const gen_pipeline *p, int *C, int *R, int *g) {
    if (p->dalle_index < 0) return t2i_error_set("image prompts need the dalle generator, which is not loaded");
    gen_source_dalle_shape(p->src[p->dalle_index], C, R, g);
    return 0;
}

int gen_pipeline_reconstruct(gen_pipeline *p, const float *image, float *rec, int32_t *codes) {
    int C, R, g;
    if (gen_pipeline_prompt_shape(p, &C, &R, &g) != 0) return -1;
    int32_t *own = codes ? codes : t2i_malloc((size_t)g * g * sizeof(int32_t));
    gen_source_dalle_encode(p->src[p->dalle_index], image, own);
    gen_source_dalle_decode(p->src[p->dalle_index], own, rec);
    if (!codes) free(own);
    return 0;
}

int gen_pipeline_run(gen_pipeline *p, const char *caption, const gen_call *k, gen_ranked *r) {
    memset(r, 0, sizeof *r);
    gen_source *src[2];
    int nsrc = 0;
    int32_t *prompt = NULL;
    if (k->image) {
        int C, R, g;
        if (gen_pipeline_prompt_shape(p, &C, &R, &g) != 0) return -1;
        if (!k->use_dalle || k->use_gan) return t2i_error_set("image prompts need the dalle generator alone");
        if (!k->keep && !(k->sample.keep_prob > 0.0f))
            return t2i_error_set("an image prompt needs kept cells or a variation keep probability");
        prompt = t2i_malloc((size_t)g * g * sizeof(int32_t));
        gen_source_dalle_encode(p->src[p->dalle_index], k->image, prompt);
    }
    if (k->use_dalle) {
        if (p->dalle_index < 0) return free(prompt), t2i_error_set("the dalle generator is not loaded");
        dalle_sample_opts so = k->sample;
        so.stop = k->stop;
        so.prompt = prompt, so.keep = prompt ? k->keep : NULL;
        if (!prompt) so.keep_prob = 0.0f;
        if (gen_source_dalle_set_sample(p->src[p->dalle_index], &so) != 0) return free(prompt), -1;
        gen_source_dalle_set_blend(p->src[p->dalle_index], k->blend);
        src[nsrc++] = p->src[p->dalle_index];
    }
    if (k->use_gan) {
        if (p->gan_index < 0) return t2i_error_set("the gan generator is not loaded");
        src[nsrc++] = p->src[p->gan_index];
    }
    int rc = -1;
    if (nsrc == 0) {
        t2i_error_set("no generator chosen");
    } else if (k->candidates < 1 || k->top < 1 || (long)k->top > (long)k->candidates * nsrc) {
        t2i_error_set("top %d must be 1 .. the %ld candidates", k->top, (long)k->candidates * nsrc);
    } else {
        gen_opts o = {k->candidates, k->top,         k->seed,         k->quiet,
                      k->progress,   k->progress_arg, p->clip_more,    p->n_clip_more};
        rc = gen_rank_caption(p->clip, src, nsrc, caption, &o, r);
        if (rc == 0 && k->upscale && p->have_sr && t2i_dist_rank() == 0) upscale_ranked(&p->sr, r); /* MPI: rank 0 writes */
    }
    if (prompt) {
        /* the source keeps its options: drop the pointers into this call's prompt */
        dalle_sample_opts so = k->sample;
        so.prompt = NULL, so.keep = NULL, so.keep_prob = 0.0f;
        so.stop = k->stop;
        (void)gen_source_dalle_set_sample(p->src[p->dalle_index], &so);
        free(prompt);
    }
    return rc;
}
