/* generate.c - `t2i generate`: candidates from generators, CLIP reranking, the best kept
 * (see generate.h).
 *
 *     t2i generate --prompt "a red sneaker" --candidates 512 --top 32 --out out/
 *     t2i generate --prompts captions.txt --out out/ --clip ViT-B-32.safetensors
 * For each caption: OUT/<slug>/rank_000.png ... (best first), OUT/<slug>/grid.png and
 * OUT/<slug>/scores.json; OUT/scores.json lists every caption's results with paths
 * relative to OUT (the input of `t2i eval fidelity OUT`). A result is
 *   {"caption", "rank", "source", "seed", "candidate", "score", "file"}
 * and `t2i dalle sample --seed S --first CANDIDATE --n 1` regenerates a dalle result.
 * Words of a caption that a model never saw in training are named on stderr (known_words.h).
 *
 * Image prompts (the transformer alone; prompt.h, pipeline.h gen_call.image):
 *     t2i generate --prompt "a blue dress" --image IMG --keep-rows 0.5 --out out/
 *     t2i generate --prompt "a blue dress" --image IMG --mask MASK.png [--passes 2] --out out/
 *     t2i generate --prompt "a blue dress" --variations IMG [--variation-keep 0.5] --out out/
 * keep IMG's token rows/columns or the cells the mask leaves black, or (variations) each
 * token with a probability; OUT/prompt.png is IMG's VQ reconstruction, which the kept
 * cells of every result show exactly (--blend: decoded with the rest, so the kept pixels
 * next to redrawn cells blend with them), OUT/prompt_kept.png the kept part (redrawn black).
 *
 * Default checkpoints (when --clip, --dalle, --gan or --vq are not given): samples/models/
 * {clip,dalle,gan,vq}.safetensors of the source tree (T2I_SOURCE_DIR), or of the folder
 * $T2I_MODELS when set; clip2.safetensors there (then clip3, clip4) joins clip in the
 * ranking (an ensemble, as --clip A,B). --vq defaults to the
 * VQ checkpoint recorded in the DALL-E file when that exists, else to the shipped one.
 *
 * Failures: bad flags exit 2; an unreadable or too small image, a mask of another size,
 * a keep count beyond the grid exit 1 naming the file or flag; a missing checkpoint (the message says how to train one or
 * which flag to pass), a CLIP that does not fit, an empty caption or a failed write exit 1.
 */
#include "generate.h"
#include "known_words.h"
#include "pipeline.h"
#include "prompt.h"
#include "prompts.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "dist.h"
#include "image.h"
#include "progress.h"
#include "safetensors.h"

static int default_exists(const char *file) {
    char *p = t2i_asprintf("%s/%s.safetensors", gen_models_dir(), file);
    int r = t2i_path_exists(p);
    free(p);
    return r;
}

void gen_slug(char *out, size_t cap, const char *caption) {
    T2I_ASSERT(cap >= 8);
    size_t n = 0, max = cap - 1 < 60 ? cap - 1 : 60;
    int gap = 0;
    for (const unsigned char *p = (const unsigned char *)caption; *p && n < max; p++) {
        if (isalnum(*p) && *p < 128) {
            if (gap && n > 0 && n + 1 < max) out[n++] = '_';
            gap = 0;
            out[n++] = (char)tolower(*p);
        } else {
            gap = 1;
        }
    }
    out[n] = 0;
    if (n == 0) snprintf(out, cap, "caption");
}

/* ---- writing ---- */

/* Images of a ranked list as one grid (resized to the first image's shape when sources
 * differ; gray is replicated to RGB). */
/* The first n kept images as (n, C, H, W) cells at dst: resized (bicubic) to H x W when
 * a source differs, gray replicated to C channels. */
static void fill_cells(float *dst, const gen_ranked *r, int n, int C, int H, int W) {
    for (int i = 0; i < n; i++) {
        float *cell = dst + (size_t)i * C * H * W;
        int c = r->C[i];
        float *tmp = NULL;
        const float *img = r->images[i];
        if (r->H[i] != H || r->W[i] != W) {
            tmp = t2i_malloc((size_t)c * H * W * sizeof(float));
            t2i_resize_chw(tmp, img, c, r->H[i], r->W[i], H, W, T2I_RESIZE_BICUBIC);
            img = tmp;
        }
        for (int k = 0; k < C; k++)
            memcpy(cell + (size_t)k * H * W, img + (size_t)(c == C ? k : 0) * H * W, (size_t)H * W * sizeof(float));
        free(tmp);
    }
}

static int write_grid(const char *path, const gen_ranked *r) {
    int C = r->C[0], H = r->H[0], W = r->W[0];
    for (int i = 1; i < r->n; i++) C = r->C[i] > C ? r->C[i] : C;
    float *all = t2i_malloc((size_t)r->n * C * H * W * sizeof(float));
    fill_cells(all, r, r->n, C, H, W);
    int nrow = 1;
    while (nrow * nrow < r->n) nrow++;
    int rc = t2i_save_grid(path, all, r->n, C, H, W, nrow);
    free(all);
    return rc;
}

/* DIR/grid.png of a run with several captions: one row per caption (the first
 * GEN_OVERVIEW_ROWS), its best GEN_OVERVIEW_COLS images, black where fewer were kept. */
enum { GEN_OVERVIEW_ROWS = 16, GEN_OVERVIEW_COLS = 8 };
typedef struct {
    float *cells;
    int rows, C, H, W;
} gen_overview;

static void overview_add(gen_overview *o, const gen_ranked *r) {
    if (o->rows >= GEN_OVERVIEW_ROWS || r->n == 0) return;
    if (!o->cells) {
        o->C = 3, o->H = r->H[0], o->W = r->W[0];
        size_t total = (size_t)GEN_OVERVIEW_ROWS * GEN_OVERVIEW_COLS * o->C * o->H * o->W;
        o->cells = t2i_malloc(total * sizeof(float));
        for (size_t i = 0; i < total; i++) o->cells[i] = -1.0f; /* black */
    }
    int n = r->n < GEN_OVERVIEW_COLS ? r->n : GEN_OVERVIEW_COLS;
    fill_cells(o->cells + (size_t)o->rows * GEN_OVERVIEW_COLS * o->C * o->H * o->W, r, n, o->C, o->H, o->W);
    o->rows++;
}

/* Writes DIR/rank_NNN.png, DIR/grid.png, DIR/scores.json; appends the results (with files
 * relative to the top folder: prefix/rank_NNN.png) to all. */
static int write_ranked(const char *dir, const char *prefix, const char *caption, const gen_ranked *r,
                        uint64_t seed, cJSON *all) {
    if (t2i_mkdirs(dir) != 0) return -1;
    cJSON *list = cJSON_CreateArray();
    int rc = 0;
    for (int i = 0; i < r->n && !rc; i++) {
        char fn[32];
        snprintf(fn, sizeof fn, "rank_%03d.png", i);
        char *p = t2i_asprintf("%s/%s", dir, fn);
        uint8_t *px = t2i_malloc((size_t)r->C[i] * r->H[i] * r->W[i]);
        t2i_chw_to_u8(px, r->images[i], r->C[i], r->H[i], r->W[i]);
        rc = t2i_image_save_png(p, px, r->W[i], r->H[i], r->C[i]);
        free(px), free(p);
        for (int k = 0; k < 2 && !rc; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "caption", caption);
            cJSON_AddNumberToObject(e, "rank", i);
            cJSON_AddStringToObject(e, "source", r->res[i].source_name);
            cJSON_AddNumberToObject(e, "seed", (double)seed);
            cJSON_AddNumberToObject(e, "candidate", (double)r->res[i].candidate);
            cJSON_AddNumberToObject(e, "score", r->res[i].score);
            if (k == 0) {
                cJSON_AddStringToObject(e, "file", fn);
                cJSON_AddItemToArray(list, e);
            } else {
                char *rel = t2i_asprintf("%s/%s", prefix, fn);
                cJSON_AddStringToObject(e, "file", rel);
                free(rel);
                cJSON_AddItemToArray(all, e);
            }
        }
    }
    /* a run with fewer results into the same folder: remove the earlier run's surplus
     * ranks, which would otherwise read as this run's (and count in eval fid) */
    for (int i = r->n; !rc; i++) {
        char *p = t2i_asprintf("%s/rank_%03d.png", dir, i);
        int gone = unlink(p) != 0;
        free(p);
        if (gone) break;
    }
    if (!rc && r->n > 0) {
        char *gp = t2i_asprintf("%s/grid.png", dir);
        rc = write_grid(gp, r);
        free(gp);
    }
    if (!rc) {
        char *s = cJSON_Print(list);
        char *p = t2i_asprintf("%s/scores.json", dir);
        size_t n = strlen(s);
        char *buf = t2i_malloc(n + 2);
        memcpy(buf, s, n);
        buf[n] = '\n';
        rc = t2i_write_file_atomic(p, buf, n + 1);
        free(buf), free(p);
        cJSON_free(s);
    }
    cJSON_Delete(list);
    return rc;
}

/* The image prompt: *img (C, R, R) of IMG; *keep (g x g) from the mask or the kept
 * lines (NULL for variations); OUT/prompt.png (the reconstruction) and, with kept cells,
 * OUT/prompt_kept.png (the redrawn cells black), unless out is NULL (MPI ranks above 0). */
static int load_prompt(gen_pipeline *pl, const char *path, const char *mask, float rows, float cols, const char *out,
                       float **img, uint8_t **keep) {
    int C, R, g, w, h;
    if (gen_pipeline_prompt_shape(pl, &C, &R, &g) != 0) return -1;
    size_t isz = (size_t)C * R * R;
    *img = t2i_malloc(isz * sizeof(float));
    if (gen_prompt_image(path, C, R, *img, &w, &h) != 0) return -1;
    if (mask || rows != 0.0f || cols != 0.0f) {
        *keep = t2i_malloc((size_t)g * g);
        if (mask ? gen_prompt_mask(mask, w, h, g, *keep) : gen_prompt_keep_lines(rows, cols, g, *keep)) return -1;
    }
    if (!out) return 0;
    float *rec = t2i_malloc(isz * sizeof(float));
    uint8_t *px = t2i_malloc(isz);
    int rc = gen_pipeline_reconstruct(pl, *img, rec, NULL);
    char *p = t2i_asprintf("%s/prompt.png", out);
    if (rc == 0) t2i_chw_to_u8(px, rec, C, R, R), rc = t2i_image_save_png(p, px, R, R, C);
    free(p);
    if (rc == 0 && *keep) {
        int cell = R / g;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < R; y++)
                for (int x = 0; x < R; x++)
                    if (!(*keep)[(y / cell) * g + x / cell]) rec[(size_t)c * R * R + (size_t)y * R + x] = -1.0f;
        p = t2i_asprintf("%s/prompt_kept.png", out);
        t2i_chw_to_u8(px, rec, C, R, R);
        rc = t2i_image_save_png(p, px, R, R, C);
        free(p);
    }
    free(rec), free(px);
    return rc;
}

int generate_cmd(int argc, char **argv) {
    const char *prompt = NULL, *prompts = NULL, *out = NULL, *clip_path = NULL, *clip_vocab = NULL,
               *dalle_path = NULL, *vq_path = NULL, *generator = "auto", *gan_path = NULL,
               *upscale = NULL, *image = NULL, *mask = NULL, *variations = NULL;
    int candidates = 512, top = 32, batch = 64, threads = 0, top_k = 0, passes = 2, blend = 0, tta_flip = 1;
    float keep_rows = 0.0f, keep_cols = 0.0f, variation_keep = 0.5f;
    long seed = 1;
    float temperature = 1.0f, top_p = 1.0f, cfg_scale = 3.0f; /* guidance 3: best caption fidelity in bench/RESULTS.md */
    t2i_flag flags[] = {
        {"--prompt", T2I_STR, &prompt, "a caption"},
        {"--prompts", T2I_STR, &prompts, "a file of captions, one per line ('#' comments)"},
        {"--candidates", T2I_INT, &candidates, "candidates generated per caption (per source)"},
        {"--top", T2I_INT, &top, "results kept per caption, best first"},
        {"--out", T2I_STR, &out, "output folder (required)"},
        {"--clip", T2I_STR, &clip_path, "CLIP checkpoint for reranking (t2i, OpenAI or Hugging Face), or several "
                                        "separated by commas: an ensemble ranking by the mean similarity (default "
                                        "samples/models/clip.safetensors with clip2.safetensors, clip3... when present)"},
        {"--clip-vocab", T2I_STR, &clip_vocab, "BPE vocabulary for a CLIP file without one (e.g. OpenAI's)"},
        {"--tta-flip", T2I_BOOL, &tta_flip,
         "CLIP scores each candidate together with its mirror image (--tta-flip=0: the image alone)"},
        {"--dalle", T2I_STR, &dalle_path, "DALL-E checkpoint (default samples/models/dalle.safetensors)"},
        {"--generator", T2I_STR, &generator,
         "dalle, gan, both, or auto (the --dalle/--gan models given; none given: the shipped transformer)"},
        {"--gan", T2I_STR, &gan_path, "caption-conditioned GAN checkpoint (default samples/models/gan.safetensors)"},
        {"--upscale", T2I_STR, &upscale, "super-resolution checkpoint: upscale the kept images (t2i sr train)"},
        {"--vq", T2I_STR, &vq_path, "VQ checkpoint (default: the DALL-E file's, else samples/models/vq.safetensors)"},
        {"--temperature", T2I_FLOAT, &temperature, "sampling temperature"},
        {"--top-k", T2I_INT, &top_k, "keep the k most likely codes (0 = all)"},
        {"--top-p", T2I_FLOAT, &top_p, "nucleus sampling mass (1 = off)"},
        {"--cfg", T2I_FLOAT, &cfg_scale, "classifier-free guidance scale (1 = off)"},
        {"--seed", T2I_LONG, &seed, "random seed (candidate i of a caption draws from stream i)"},
        {"--batch", T2I_INT, &batch, "candidates generated together"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--image", T2I_STR, &image, "image prompt (dalle): keep part of IMG's token grid, sample the rest"},
        {"--keep-rows", T2I_FLOAT, &keep_rows, "with --image: token rows kept from the top (a count, or a fraction "
                                               "below 1: 0.5 = the top half)"},
        {"--keep-cols", T2I_FLOAT, &keep_cols, "with --image: token columns kept from the left (count or fraction)"},
        {"--mask", T2I_STR, &mask, "with --image: inpainting mask of IMG's size, white = redraw (a cell is redrawn "
                                   "when at least half of it is white)"},
        {"--passes", T2I_INT, &passes, "with --mask: refinement passes over redrawn cells that precede kept ones"},
        {"--blend", T2I_BOOL, &blend, "with --image: decode the kept cells with the rest (no seam) instead of "
                                      "pasting IMG's reconstruction into them"},
        {"--variations", T2I_STR, &variations, "variations of IMG: each token keeps IMG's code with probability "
                                               "--variation-keep, the others are resampled"},
        {"--variation-keep", T2I_FLOAT, &variation_keep, "with --variations: probability of keeping each token"},
    };
    t2i_cmd cmd = {"t2i generate", "Generate images for captions: many candidates, reranked by CLIP.",
                   "--prompt TEXT | --prompts FILE --out DIR [options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "Writes DIR/<caption-slug>/rank_000.png ... (best first), grid.png and scores.json per\n"
                   "caption, and DIR/scores.json for all (read by `t2i eval fidelity DIR`); with several\n"
                   "captions also DIR/grid.png: the best 8 of each of the first 16 captions, a row each.\n"
                   "Default models come from samples/models/ (or the folder $T2I_MODELS).\n"
                   "Image prompts (the transformer only): --image IMG --keep-rows 0.5 completes IMG's top\n"
                   "half; --image IMG --mask MASK redraws the white cells; --variations IMG resamples a\n"
                   "share of IMG's tokens. IMG is resized and centre-cropped to the VQ's input; kept\n"
                   "cells show IMG's VQ reconstruction exactly, written as DIR/prompt.png (and the kept\n"
                   "part, the rest black, as DIR/prompt_kept.png); that leaves a seam where the decoder\n"
                   "would blend kept and redrawn cells, which --blend allows (bench/RESULTS.md)."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("generate: unexpected argument '%s'", cmd.pos[0]), 2;
    if (!out) return t2i_fail("generate: --out DIR is required"), 2;
    if (!prompt == !prompts) return t2i_fail("generate: give exactly one of --prompt and --prompts"), 2;
    if (t2i_check_range_i("--candidates", candidates, 1, 1000000) || t2i_check_range_i("--top", top, 1, 1000000) ||
        t2i_check_range_i("--batch", batch, 1, 4096) || t2i_check_range_i("--seed", seed, 0, 1L << 53))
        return 2; /* seeds up to 2^53 are exact in scores.json's JSON numbers */
    int lines = keep_rows != 0.0f || keep_cols != 0.0f;
    if (variations && image) return t2i_fail("generate: give --image or --variations, not both"), 2;
    if (image && !lines && !mask) return t2i_fail("generate: --image needs --keep-rows, --keep-cols or --mask"), 2;
    if (image && lines && mask) return t2i_fail("generate: give --mask or --keep-rows/--keep-cols, not both"), 2;
    if (!image && (lines || mask || blend))
        return t2i_fail("generate: --keep-rows, --keep-cols, --mask and --blend need --image IMG"), 2;
    if ((image || variations) && strcmp(generator, "auto") != 0 && strcmp(generator, "dalle") != 0)
        return t2i_fail("generate: image prompts need --generator dalle (the transformer)"), 2;
    if ((image || variations) && gan_path) return t2i_fail("generate: image prompts need the transformer alone, not --gan"), 2;
    if (t2i_check_range_i("--passes", passes, 0, 100)) return 2;
    if (!(variation_keep > 0.0f && variation_keep < 1.0f))
        return t2i_fail("generate: --variation-keep must be in (0, 1), got %g", (double)variation_keep), 2;
    dalle_sample_opts so;
    dalle_sample_defaults(&so);
    so.temperature = temperature, so.top_k = top_k, so.top_p = top_p, so.cfg = cfg_scale;
    so.passes = mask ? passes : 0;
    if (dalle_sample_check(&so, 1 << 20) != 0) return t2i_fail_err(), 2;
    int use_dalle, use_gan;
    if (strcmp(generator, "auto") == 0) {
        /* the models given; with none, the shipped transformer (more faithful than the shipped
         * GAN, alone or together: bench/RESULTS.md), else the shipped GAN */
        use_dalle = dalle_path != NULL, use_gan = gan_path != NULL;
        if (!use_dalle && !use_gan) {
            use_dalle = default_exists("dalle");
            use_gan = !use_dalle && default_exists("gan");
        }
        if (!use_dalle && !use_gan) use_dalle = 1; /* and the error below says what is missing */
    } else if (strcmp(generator, "dalle") == 0 || strcmp(generator, "gan") == 0 || strcmp(generator, "both") == 0) {
        use_dalle = generator[0] != 'g';
        use_gan = generator[0] != 'd';
    } else {
        return t2i_fail("generate: --generator must be dalle, gan, both or auto, not '%s'", generator), 2;
    }
    if (top > candidates * (use_dalle + use_gan))
        return t2i_fail("generate: --top %d is more than the %d candidates per caption (--candidates %d x %d "
                        "generator%s)", top, candidates * (use_dalle + use_gan), candidates, use_dalle + use_gan,
                        use_dalle + use_gan > 1 ? "s" : ""), 2;
    t2i_set_threads(threads);
    if (t2i_dist_init() != 0) return 1;
    int me = t2i_dist_rank(); /* under mpirun: rank 0 alone writes; see generate.h */

    char **caps = NULL;
    int ncap = 0;
    size_t at;
    const char *why = prompt ? t2i_text_problem(prompt, &at) : NULL;
    if (why == T2I_TEXT_EMPTY) return t2i_fail("generate: the prompt is empty"), 2;
    if (why) return t2i_fail("generate: --prompt: %s (byte %zu)", why, at), 2;
    if (prompts) {
        if (t2i_prompts_read(prompts, &caps, &ncap) != 0) return t2i_fail_err();
        if ((double)ncap * candidates * (use_dalle + use_gan) > 1e6) /* over an hour on 2 cores */
            fprintf(stderr, "t2i: note: %d captions x %d candidates x %d generator%s: a long run (Ctrl-C stops it; "
                            "captions already done stay written)\n", ncap, candidates, use_dalle + use_gan,
                    use_dalle + use_gan > 1 ? "s" : "");
    } else {
        caps = t2i_malloc(sizeof(char *));
        caps[0] = t2i_strdup(prompt);
        ncap = 1;
    }
    int rc = 1;
    float *prompt_img = NULL;
    uint8_t *prompt_keep = NULL;
    cJSON *all = cJSON_CreateArray();
    gen_overview ov = {0}; /* several captions: DIR/grid.png, one row each */
    char **slugs = t2i_calloc((size_t)ncap, sizeof(char *));
    gen_pipeline_cfg pc;
    gen_pipeline_cfg_defaults(&pc);
    pc.clip_path = clip_path, pc.clip_vocab = clip_vocab, pc.dalle_path = dalle_path, pc.vq_path = vq_path;
    pc.tta_flip = tta_flip;
    pc.gan_path = gan_path, pc.upscale_path = upscale, pc.generator = generator, pc.batch = batch, pc.sample = so;
    gen_pipeline *pl = gen_pipeline_load(&pc);
    if (!pl) {
        t2i_fail_err();
        goto done;
    }
    int nsrc = pl->nsrc;
    T2I_ASSERT(top <= candidates * nsrc); /* checked with the flags */
    if (me == 0 && t2i_mkdirs(out) != 0) {
        t2i_fail_err();
        goto done;
    }
    gen_call go;
    gen_call_defaults(pl, &go);
    go.candidates = candidates, go.top = top, go.seed = (uint64_t)seed;
    go.quiet = me > 0;
    if ((image || variations) && load_prompt(pl, image ? image : variations, mask, keep_rows, keep_cols,
                                             me == 0 ? out : NULL, &prompt_img, &prompt_keep) != 0) {
        t2i_fail_err();
        goto done;
    }
    go.image = prompt_img, go.keep = prompt_keep, go.blend = blend;
    if (variations) go.sample.keep_prob = variation_keep;
    for (int c = 0; c < ncap; c++) {
        char slug[64];
        gen_slug(slug, sizeof slug, caps[c]);
        /* repeated slugs get a suffix _2, _3, ... */
        slugs[c] = t2i_strdup(slug);
        for (int v = 2, clash = 1; clash; v++) {
            clash = 0;
            for (int k = 0; k < c; k++) clash |= strcmp(slugs[k], slugs[c]) == 0;
            if (clash) {
                free(slugs[c]);
                slugs[c] = t2i_asprintf("%s_%d", slug, v);
            }
        }
        gen_ranked r;
        printf("generate: \"%s\" -> %s/%s\n", caps[c], out, slugs[c]);
        fflush(stdout);
        if (me == 0) gen_warn_unknown_words(pl->src, pl->nsrc, caps[c]);
        if (gen_pipeline_run(pl, caps[c], &go, &r) != 0) {
            t2i_fail("\"%s\": %s", caps[c], t2i_error_msg());
            goto done;
        }
        char *dir = t2i_asprintf("%s/%s", out, slugs[c]);
        int wrc = me == 0 ? write_ranked(dir, slugs[c], caps[c], &r, (uint64_t)seed, all) : 0;
        if (ncap > 1) overview_add(&ov, &r);
        printf("generate: %d candidates x %d sources in %.1f s (+ %.1f s CLIP); best score %.4f, #%d %.4f\n", candidates, nsrc,
               r.seconds_generate, r.seconds_score, (double)r.res[0].score, r.n, (double)r.res[r.n - 1].score);
        free(dir);
        gen_ranked_free(&r);
        if (wrc != 0) {
            t2i_fail_err();
            goto done;
        }
    }
    if (ov.rows > 0 && me == 0) {
        char *gp = t2i_asprintf("%s/grid.png", out);
        int grc = t2i_save_grid(gp, ov.cells, ov.rows * GEN_OVERVIEW_COLS, ov.C, ov.H, ov.W, GEN_OVERVIEW_COLS);
        free(gp);
        if (grc != 0) {
            t2i_fail_err();
            goto done;
        }
    }
    if (me == 0) {
        char *s = cJSON_Print(all);
        char *p = t2i_asprintf("%s/scores.json", out);
        size_t n = strlen(s);
        char *buf = t2i_malloc(n + 2);
        memcpy(buf, s, n);
        buf[n] = '\n';
        int wrc = t2i_write_file_atomic(p, buf, n + 1);
        free(buf), free(p);
        cJSON_free(s);
        if (wrc != 0) {
            t2i_fail_err();
            goto done;
        }
    }
    rc = 0;
done:
    free(prompt_img), free(prompt_keep);
    free(ov.cells);
    cJSON_Delete(all);
    for (int c = 0; c < ncap; c++) free(caps[c]), free(slugs[c]);
    free(caps), free(slugs);
    gen_pipeline_free(pl);
    /* a failure on one rank only (a write) would leave the others waiting in a collective */
    if (t2i_dist_size() > 1 && rc != 0) t2i_dist_abort(rc, "stopped (exit status %d); ending the job", rc);
    t2i_dist_finalize();
    return rc;
}
