/* pipeline.h - the models of `t2i generate`, loaded once, run for many captions: what
 * `t2i generate` does per caption and what `t2i serve` does per request.
 *
 *     gen_pipeline_cfg c;
 *     gen_pipeline_cfg_defaults(&c);            // the shipped models, generator "auto"
 *     gen_pipeline *p = gen_pipeline_load(&c);  // NULL with the error set
 *     gen_call k;
 *     gen_call_defaults(p, &k);                 // 512 candidates, top 32, seed 1, cfg 3
 *     k.candidates = 64, k.top = 8;
 *     gen_ranked r;
 *     if (gen_pipeline_run(p, "a red sneaker", &k, &r) == 0) {  // upscaled when loaded
 *         ... r.res[i].source_name, r.images[i] ...
 *         gen_ranked_free(&r);
 *     }
 *     gen_pipeline_free(p);
 *
 * Default models (a path left NULL): samples/models/{clip,dalle,gan,vq}.safetensors of the
 * source tree, or of $T2I_MODELS, or of cfg.models_dir when set. Generator "auto" loads
 * the --dalle/--gan models given, and with none of them the shipped transformer (else
 * the shipped GAN); "dalle", "gan", "both" load those. The VQ decoder is cfg.vq_path, else
 * the one recorded in the DALL-E file, else the shipped one. The reranking CLIP is
 * cfg.clip_path, which may list several files separated by commas (an ensemble: each
 * candidate's score is the mean of its cosine similarity in each, gen_opts); the default
 * is clip.safetensors, with clip2.safetensors (then clip3, clip4) beside it when those
 * files exist. With cfg.tta_flip the CLIPs score each candidate with its mirror image
 * (clip_set_tta_flip).
 *
 * Not thread-safe: one caller at a time (the models keep scratch state).
 * Failures: load returns NULL and run returns -1 with the error set (t2i_error_msg): a
 * missing checkpoint says which flag to pass or how to train one; a run whose progress
 * callback returned non-zero fails with "cancelled".
 */
#ifndef T2I_PIPELINE_H
#define T2I_PIPELINE_H

#include "generate.h"
#include "sr.h"

/* CLIPs of a reranking ensemble, at most */
#define GEN_MAX_CLIPS 4

typedef struct {
    const char *models_dir;   /* NULL = $T2I_MODELS, else samples/models of the source tree */
    const char *clip_path, *clip_vocab, *dalle_path, *vq_path, *gan_path;
    const char *upscale_path; /* NULL = no upscaler */
    const char *generator;    /* "auto", "dalle", "gan" or "both" */
    int batch;                /* candidates generated together (64) */
    int tta_flip;             /* the CLIPs embed each candidate and its mirror image (clip_set_tta_flip; 1) */
    dalle_sample_opts sample; /* checked at load: the defaults of every call */
} gen_pipeline_cfg;

void gen_pipeline_cfg_defaults(gen_pipeline_cfg *c);

typedef struct {
    gen_source *src[2];       /* the loaded sources, dalle first */
    int nsrc;
    int dalle_index, gan_index; /* into src, -1 when not loaded */
    clip_model *clip;         /* the reranking CLIP (the first of an ensemble) */
    clip_model *clip_more[GEN_MAX_CLIPS - 1]; /* the ensemble's others: n_clip_more of them */
    int n_clip_more;
    sr_model sr;
    int have_sr;
    dalle_sample_opts sample; /* the defaults */
    char *clip_file, *dalle_file, *vq_file, *gan_file, *upscale_file; /* the files loaded (NULL: none; clip_file:
                                                                        * the ensemble's, comma-separated) */
} gen_pipeline;

gen_pipeline *gen_pipeline_load(const gen_pipeline_cfg *c);
void gen_pipeline_free(gen_pipeline *p);

typedef struct {
    int use_dalle, use_gan;   /* sources to draw from (each must be loaded) */
    int candidates, top;      /* per source; kept */
    uint64_t seed;
    dalle_sample_opts sample; /* temperature, top_k, top_p, cfg of this call */
    int upscale;              /* upscale the kept images (when an upscaler is loaded) */
    int quiet;                /* no progress line on stderr */
    int (*progress)(void *arg, long done, long total); /* after each batch; non-zero cancels */
    void *progress_arg;
    const atomic_int *stop;   /* non-NULL: non-zero stops the dalle source within one sampling step */
    /* Image prompt (the dalle source alone): image (C, R, R) in [-1, 1], the VQ's input
     * (gen_pipeline_prompt_shape; prompt.h loads files), NULL = none. With keep (g x g,
     * 1 = keep the image's code in that cell): completion and inpainting (sample.passes
     * refines redrawn cells that precede kept ones); without: variations, which need
     * sample.keep_prob > 0. Kept cells of every result are the image's reconstruction
     * (unless blend). */
    const float *image;
    const uint8_t *keep;
    int blend;                /* 1: kept cells as decoded with the rest, not pasted (no seam) */
} gen_call;

/* Every loaded source, 512 candidates, top 32, seed 1, the pipeline's sampling options,
 * upscaling when an upscaler is loaded. */
void gen_call_defaults(const gen_pipeline *p, gen_call *k);

/* One caption: candidates -> CLIP rerank -> the best k->top (upscaled when asked and
 * loaded). 0, or -1 with the error set (a bad sampling option, a source not loaded, a
 * caption a model cannot encode, "cancelled"). */
int gen_pipeline_run(gen_pipeline *p, const char *caption, const gen_call *k, gen_ranked *r);

/* The dalle source's image shape and token grid: 0, or -1 with the error set when the
 * transformer is not loaded. */
int gen_pipeline_prompt_shape(const gen_pipeline *p, int *C, int *R, int *g);
/* rec (C, R, R) <- the VQ reconstruction of image (what the kept cells show); codes (g, g)
 * may be NULL. -1 with the error set when the transformer is not loaded. */
int gen_pipeline_reconstruct(gen_pipeline *p, const float *image, float *rec, int32_t *codes);

/* The shipped models' folder: $T2I_MODELS, else samples/models/ of the source tree. */
const char *gen_models_dir(void);

#endif
