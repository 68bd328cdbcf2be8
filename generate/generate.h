/* generate.h - `t2i generate`: many candidates per caption from one or more generators,
 * reranked by CLIP, the best kept.
 *
 * A generator plugs in as a gen_source: it produces images for a caption, candidate by
 * candidate, where candidate i of a seed is always the same image (so a result can be
 * regenerated from its seed and index). The DALL-E-style transformer is one source
 * (gen_source_dalle); a text-conditioned GAN can be another - every source's candidates
 * enter the same ranking, and scores.json names the source of each result.
 *
 * Under `mpirun -np N t2i generate ...` the ranks share each caption's candidate batches
 * (gen_rank_caption deals them out and merges the ranks' best: the results are the single
 * process's, byte for byte) and rank 0 alone upscales and writes the files.
 *
 *     gen_source *src[1];
 *     if (gen_source_dalle(&src[0], "dalle.safetensors", "vq.safetensors", &sample_opts, 32) != 0) die();
 *     clip_model *clip = clip_load("clip.safetensors", NULL);
 *     gen_opts o = {.candidates = 512, .top = 32, .seed = 1};
 *     gen_ranked r;
 *     if (gen_rank_caption(clip, src, 1, "a red sneaker", &o, &r) == 0) {
 *         // r.res[k] (source, candidate, score) and r.images[k], best first
 *         gen_ranked_free(&r);
 *     }
 *     gen_source_free(src[0]);
 * generate_cmd writes the results (rank PNGs, grid, scores.json) for each caption.
 * A new source fills a gen_source (name, image shape, batch, clip_dim, generate, destroy,
 * ctx) and is appended to the list generate_cmd passes to gen_rank_caption.
 *
 * Scores are CLIP cosine similarities between the caption's and the image's (L2-normalised)
 * embeddings; candidates are ranked by score (ties: source order, then candidate index).
 *
 * Failures: every function returns -1 with the error set (a source that cannot load its
 * checkpoint, a caption the source cannot encode, a CLIP whose embedding size does not fit
 * a source that needs CLIP text embeddings, a failed write).
 */
#ifndef T2I_GENERATE_H
#define T2I_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "clip.h"
#include "dalle.h"

typedef struct gen_source gen_source;
struct gen_source {
    const char *name;     /* "dalle", "gan", ...: the "source" field of scores.json */
    int C, H, W;          /* shape of its images (NCHW floats in [-1, 1]) */
    int batch;            /* images per generate call it prefers */
    int clip_dim;         /* size of the CLIP text embedding it conditions on (0 = none) */
    /* images (n, C, H, W) <- candidates first .. first+n-1 of seed for caption;
     * clip_text is the caption's normalised CLIP embedding (clip_dim floats) or NULL when
     * clip_dim is 0. Returns 0, or -1 with the error set. */
    int (*generate)(gen_source *s, const char *caption, const float *clip_text, uint64_t seed, long first, int n,
                    float *images);
    void (*destroy)(gen_source *s);
    void *ctx;            /* the source's own state */
    struct t2i_wordset *known_words; /* its training captions' words (known_words.h); NULL: not recorded */
};

/* The DALL-E-style source: loads the transformer and the VQ decoder (vq_path NULL = the
 * checkpoint recorded in the transformer's file). */
int gen_source_dalle(gen_source **out, const char *dalle_path, const char *vq_path, const dalle_sample_opts *o,
                     int batch);
void gen_source_free(gen_source *s);
/* The dalle source's VQ: image channels C, side R (its input) and token grid side g. */
void gen_source_dalle_shape(const gen_source *s, int *C, int *R, int *g);
/* codes (g, g) <- the VQ codes of image (C, R, R) in [-1, 1]. */
void gen_source_dalle_encode(gen_source *s, const float *image, int32_t *codes);
/* image (C, R, R) <- codes (g, g) decoded (clamped to [-1, 1]). */
void gen_source_dalle_decode(gen_source *s, const int32_t *codes, float *image);
/* Image prompts: 0 (the default) pastes the prompt's reconstruction into the kept cells of
 * every image; 1 keeps the decoder's output of the whole grid (the kept codes are the
 * same, the kept pixels next to redrawn cells blend with them: no seam). */
void gen_source_dalle_set_blend(gen_source *s, int blend);
/* Changes the sampling options of a dalle source (checked against its codebook) for the
 * next generate calls: 0, or -1 with the error set and the options unchanged. */
int gen_source_dalle_set_sample(gen_source *s, const dalle_sample_opts *o);

typedef struct {
    int candidates;       /* per source */
    int top;              /* results kept */
    uint64_t seed;
    int quiet;            /* no progress line */
    /* called after each batch with candidates done / total (NULL = none); a non-zero
     * return cancels: gen_rank_caption returns -1 with the error "cancelled" */
    int (*progress)(void *arg, long done, long total);
    void *progress_arg;
    /* further CLIPs (NULL / 0: none): a candidate's score is then the mean of its cosine
     * similarity to the caption in each CLIP (the first one's and these), an ensemble;
     * sources conditioned on a CLIP embedding get the first one's */
    clip_model *const *more_clips;
    int n_more_clips;
} gen_opts;

typedef struct {
    int source;           /* index into the sources */
    long candidate;       /* candidate index (of the seed) */
    float score;          /* CLIP cosine similarity (the mean over an ensemble's CLIPs) */
    const char *source_name; /* the source's name ("dalle", "gan") */
} gen_result;

typedef struct {
    int n;                /* results kept (<= top) */
    gen_result *res;      /* n, best first */
    float **images;       /* n images, each (C, H, W) of its source */
    int *C, *H, *W;
    double seconds_generate, seconds_score;
} gen_ranked;

/* Generates o->candidates images per source for caption, scores them, keeps the best
 * o->top (all kept images in memory; the rest are dropped batch by batch). */
int gen_rank_caption(clip_model *clip, gen_source *const *src, int nsrc, const char *caption, const gen_opts *o,
                     gen_ranked *r);
void gen_ranked_free(gen_ranked *r);

/* "A Red Sneaker!" -> "a_red_sneaker" (ASCII letters and digits, '_' between words, at
 * most 60 bytes; "caption" if nothing is left). */
void gen_slug(char *out, size_t cap, const char *caption);

/* The `t2i generate` command. */
int generate_cmd(int argc, char **argv);

#endif
