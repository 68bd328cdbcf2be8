/* dalle_train.c - `t2i dalle train`: the image-token transformer on a codes file.
 *
 *     t2i vq encode --vq VQ --data fashion-captions --out codes.safetensors
 *     t2i dalle train --codes codes.safetensors --steps 20000 --out runs/dalle
 *
 * Data: the codes file (dalle_codes_load) holds the 8x8 codes of dataset items and their
 * indices; the captions are those of the items in the source dataset named in its
 * metadata (for fashion-captions the dataset is regenerated in memory). At the start of
 * a new run a BPE vocabulary of at most text_vocab - text_len ids is learned from those
 * captions (clip_tok_train) and stored in the checkpoint; every caption is tokenized once.
 *
 * One step: a batch of items in a shuffled order (epoch e's order is a shuffle drawn from
 * t2i_rng_split(seed, e)); each caption is replaced by the unconditional text (SOT + pads)
 * with probability --cond-drop (draws from the run's RNG), so that classifier-free
 * guidance has an unconditional model; loss = text_weight * CE(text) + (1 - text_weight) *
 * CE(image) (dalle.h); gradient clipping; AdamW with linear warmup and cosine decay.
 *
 * The run folder (--out): config.json, metrics.jsonl, checkpoint.safetensors (weights,
 * AdamW moments, vocabulary, the captions' word set (caption_words, text/words.h: what
 * generate checks captions against), the training state: step, RNG, epoch/position, optimizer
 * step, options) and samples/ (a grid of fixed prompts every --sample-every steps when
 * the codes' VQ checkpoint is readable: one row per prompt). --resume continues
 * bit-identically with the same thread count. Ctrl-C saves and exits with status 130; a
 * NaN/Inf loss stops with an error, keeping the last checkpoint.
 *
 * --init CKPT fine-tunes: a new run (fresh AdamW moments, warmup and cosine over --steps)
 * whose weights, architecture, text vocabulary and VQ come from CKPT; the codes must be
 * of that VQ, and every new caption must fit CKPT's text positions under its vocabulary
 * (a fresh run would learn a vocabulary; this one cannot). The word set becomes the
 * union of CKPT's and the new captions'.
 *
 * Failures: bad flags exit 2 (--init with --resume, an architecture flag other than
 * CKPT's); unreadable data, a codes file whose grid or codes do not
 * fit the model, or a failed save exit 1 with a message naming the file.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "dalle.h"
#include "data.h"
#include "dist.h"
#include "fc32.h"
#include "image.h"
#include "optim.h"
#include "progress.h"
#include "trainer.h"
#include "words.h"
#include "safetensors.h"

/* ---- codes files ---- */

void dalle_codes_free(dalle_codes *c) {
    free(c->codes), free(c->index), free(c->source), free(c->vq);
    memset(c, 0, sizeof *c);
}

/* The codes file names its VQ checkpoint as `t2i vq encode` was given it: relative to the
 * working folder of that command, or to the codes file. An absolute path is kept (so the
 * transformer's checkpoint can record it); otherwise the name is returned unchanged. */
static char *resolve_vq(const char *vq, const char *codes_path) {
    char *abs = realpath(vq, NULL);
    if (!abs && vq[0] != '/') {
        const char *slash = strrchr(codes_path, '/');
        if (slash) {
            char *p = t2i_asprintf("%.*s/%s", (int)(slash - codes_path), codes_path, vq);
            abs = realpath(p, NULL);
            free(p);
        }
    }
    if (!abs) return t2i_strdup(vq);
    char *r = t2i_strdup(abs);
    free(abs);
    return r;
}

int dalle_codes_load(dalle_codes *c, const char *path) {
    memset(c, 0, sizeof *c);
    st_file f;
    if (st_open(&f, path) != 0) return -1;
    int rc = 0;
    const st_tensor *tc = st_find(&f, "codes"), *ti = st_find(&f, "index");
    const char *src = st_meta(&f, "source"), *vq = st_meta(&f, "vq");
    if (!tc || !ti) rc = t2i_error_set("%s: not a codes file (tensors 'codes' and 'index' expected; see t2i vq encode)", path);
    else if (tc->ndim != 3 || tc->shape[1] != tc->shape[2] || tc->shape[0] < 1 || tc->shape[1] < 1 ||
             tc->shape[0] > INT32_MAX)
        rc = t2i_error_set("%s: tensor codes must be (N, side, side), found %d dimensions", path, tc->ndim);
    else if (ti->ndim != 1 || ti->shape[0] != tc->shape[0])
        rc = t2i_error_set("%s: tensor index must be (%lld), like codes", path, (long long)tc->shape[0]);
    else if (!src) rc = t2i_error_set("%s: no 'source' metadata (the dataset the codes came from)", path);
    if (!rc) {
        c->n = (int)tc->shape[0], c->side = (int)tc->shape[1];
        c->codes = t2i_malloc(tc->numel * sizeof(int32_t));
        c->index = t2i_malloc(ti->numel * sizeof(int32_t));
        if (st_read_i32(&f, tc, c->codes, tc->numel) != 0 || st_read_i32(&f, ti, c->index, ti->numel) != 0) rc = -1;
        for (size_t i = 0; !rc && i < tc->numel; i++)
            if (c->codes[i] < 0) rc = t2i_error_set("%s: negative code %d at element %zu", path, c->codes[i], i);
        for (int i = 0; !rc && i < c->n; i++)
            if (c->index[i] < 0) rc = t2i_error_set("%s: negative item index %d at row %d", path, c->index[i], i);
        c->source = t2i_strdup(src);
        c->vq = vq ? resolve_vq(vq, path) : NULL;
    }
    st_close(&f);
    if (rc) dalle_codes_free(c);
    return rc;
}

/* ---- the trainer ---- */

typedef struct {
    char codes[1024];
    float lr, min_lr, beta1, beta2, wd, clip, text_weight, cond_drop;
    long warmup;
    int batch;
} train_opts;

typedef struct {
    int n;
    int32_t *text;   /* (n, text_len) */
    int32_t *image;  /* (n, image_len) joint ids */
    int *order;      /* (n) this epoch's order */
    long order_epoch;
} train_data;

/* The command's own part of the run (t2i_trainer holds the common one). */
typedef struct {
    /* flags of a new run */
    const char *codes_path, *preset, *act, *init;
    int width, layers, heads, text_len, text_vocab, codebook, batch;
    long warmup;
    float lr, min_lr, beta1, beta2, wd, clip, text_weight, cond_drop;
    /* options and state saved in the checkpoint, besides the trainer's */
    train_opts o;
    long epoch, opt_step; /* the data position: epoch, next index into its order */
    int pos;
    /* model, data, optimizer and buffers */
    dalle_model m;
    int have_model;
    dalle_codes cd;
    t2i_dataset ds;
    const char **caps;
    train_data d;
    vq_model vq; /* the codes' VQ, for the sample grids */
    int have_vq;
    char prompts[8][FC32_CAPTION_MAX * 4];
    int nprompts;
    nn_optim opt;
    nn_schedule sched;
    nn_arena arena;
    int32_t *tokens, *null_text;
    dalle_loss L;
    float gnorm, lr_now;
} dalle_trainer;

static void data_order(train_data *d, long epoch, uint64_t seed) {
    for (int i = 0; i < d->n; i++) d->order[i] = i;
    t2i_rng root, r;
    t2i_rng_seed(&root, seed ^ 0x64616c6c65ull); /* "dalle": apart from the run RNG's seed */
    r = t2i_rng_split(&root, (uint64_t)epoch);
    t2i_rng_shuffle(&r, d->order, (size_t)d->n);
    d->order_epoch = epoch;
}

/* Fills tokens (B, T) with the next batch; the caption of each is dropped with p_drop. */
static void next_batch(dalle_trainer *g, t2i_trainer *t) {
    const dalle_config *c = &g->m.cfg;
    train_data *d = &g->d;
    int TL = c->text_len, IL = dalle_image_len(c), T = TL + IL;
    for (int b = 0; b < g->o.batch; b++) {
        if (g->pos >= d->n) g->epoch++, g->pos = 0;
        if (d->order_epoch != g->epoch) data_order(d, g->epoch, t->seed);
        int i = d->order[g->pos++];
        int drop = g->o.cond_drop > 0 && t2i_rng_uniform(&t->rng) < g->o.cond_drop;
        int32_t *row = g->tokens + (size_t)b * T;
        memcpy(row, drop ? g->null_text : d->text + (size_t)i * TL, (size_t)TL * sizeof(int32_t));
        memcpy(row + TL, d->image + (size_t)i * IL, (size_t)IL * sizeof(int32_t));
    }
}

/* Captions of the codes' items, from the source dataset. */
static int load_captions(const dalle_codes *cd, const char *codes_path, t2i_dataset *ds, const char ***caps) {
    if (t2i_dataset_open(ds, cd->source, 0, 0, 0) != 0)
        return t2i_error_prefix("%s: cannot open its source dataset '%s'", codes_path, cd->source);
    if (!ds->captions) {
        t2i_dataset_free(ds);
        return t2i_error_set("%s: its source dataset '%s' has no captions", codes_path, cd->source);
    }
    *caps = t2i_malloc((size_t)cd->n * sizeof(char *));
    for (int i = 0; i < cd->n; i++) {
        if (cd->index[i] >= ds->n) {
            free(*caps);
            *caps = NULL;
            int n = ds->n;
            t2i_dataset_free(ds);
            return t2i_error_set("%s: row %d refers to item %d, but '%s' has %d items", codes_path, i, cd->index[i],
                                 cd->source, n);
        }
        (*caps)[i] = ds->captions[cd->index[i]];
    }
    return 0;
}

/* The fixed prompts of the sample grids: for fashion-captions one per colour (colour k
 * with class k, which includes the held-out yellow coat and purple sandal), else the
 * captions of the first items. */
static int sample_prompts(const dalle_codes *cd, const char *const *caps, char prompts[8][FC32_CAPTION_MAX * 4]) {
    int n = 0;
    if (strncmp(cd->source, "fashion-captions", 16) == 0) {
        for (int k = 0; k < 8; k++) snprintf(prompts[n++], sizeof prompts[0], "%s", fc32_canonical_captions[k * 10 + k]);
        return n;
    }
    for (int i = 0; i < cd->n && n < 8; i++) {
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= strcmp(prompts[k], caps[i]) == 0;
        if (!dup) snprintf(prompts[n++], sizeof prompts[0], "%s", caps[i]);
    }
    return n;
}

static int dalle_tr_load(void *self, const char *path, char **state_json) {
    dalle_trainer *g = self;
    if (dalle_load(&g->m, path, 1, state_json) != 0) return -1;
    g->have_model = 1;
    return 0;
}

/* The counters are not negative and the options are within a new run's ranges (the tables);
 * the position may pass the end of the data (the epoch then wraps). */
static int dalle_tr_check_state(void *self, t2i_trainer *t) {
    (void)self;
    if (t->target < t->step) return t2i_error_set("training state: step %ld is past the target %ld", t->step, t->target);
    return 0;
}

/* A new run's options from the flags. */
static int new_opts(dalle_trainer *g) {
    if (!g->codes_path) return t2i_fail("dalle train: --codes is required (make one with `t2i vq encode`)"), 2;
    if (t2i_check_range_f("--lr", g->lr, NN_LR_MIN, NN_LR_MAX) || t2i_check_range_f("--min-lr", g->min_lr, 0, g->lr) ||
        t2i_check_range_f("--beta1", g->beta1, 0, NN_BETA1_MAX) ||
        t2i_check_range_f("--beta2", g->beta2, 0, NN_BETA2_MAX) || t2i_check_range_f("--wd", g->wd, 0, 10) ||
        t2i_check_range_f("--clip", g->clip, 0, 1e6) || t2i_check_range_f("--text-weight", g->text_weight, 0, 1) ||
        t2i_check_range_f("--cond-drop", g->cond_drop, 0, 1) || t2i_check_range_i("--batch", g->batch, 1, 65536) ||
        t2i_check_range_i("--warmup", g->warmup, 0, 1000000000))
        return 2;
    train_opts *o = &g->o;
    /* recorded absolute, so that --resume works from any working folder */
    char *abs = realpath(g->codes_path, NULL);
    const char *keep = abs ? abs : g->codes_path; /* missing: the load below says so */
    int fits = strlen(keep) < sizeof o->codes;
    if (fits) strcpy(o->codes, keep);
    free(abs);
    if (!fits) return t2i_fail("--codes: path too long"), 2;
    o->lr = g->lr, o->min_lr = g->min_lr, o->beta1 = g->beta1, o->beta2 = g->beta2, o->wd = g->wd, o->clip = g->clip;
    o->text_weight = g->text_weight, o->cond_drop = g->cond_drop, o->warmup = g->warmup, o->batch = g->batch;
    return 0;
}

static int dalle_tr_check_flags(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    if (t->resume && g->init) return t2i_fail("dalle train: --init starts a new run; --resume continues the one in --out"), 2;
    return 0;
}

/* The real path of a recorded or given checkpoint path (heap), or a copy when it is missing. */
static char *real_of(const char *p) {
    char *r = t2i_resolve_path(p), *abs = r ? realpath(r, NULL) : NULL;
    if (abs) return free(r), abs;
    return r;
}

/* --init: weights, vocabulary, VQ and word set from a checkpoint; an architecture flag
 * that asks for something else, or codes of another VQ, is refused. */
static int init_model(dalle_trainer *g, t2i_trainer *t) {
    if (dalle_load(&g->m, g->init, 0, NULL) != 0) return t2i_fail_err();
    g->have_model = 1;
    const dalle_config *c = &g->m.cfg;
    struct {
        const char *flag;
        int want, have;
    } ints[] = {{"--width", g->width, c->width},          {"--layers", g->layers, c->n_layer},
                {"--heads", g->heads, c->n_head},          {"--text-len", g->text_len, c->text_len},
                {"--text-vocab", g->text_vocab, c->text_vocab}, {"--codebook", g->codebook, c->codebook}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (t2i_flag_given(t->cmd, ints[i].flag) && ints[i].want != ints[i].have)
            return t2i_fail("dalle train: %s %d does not match %s (%d); the architecture comes from --init", ints[i].flag,
                            ints[i].want, g->init, ints[i].have), 2;
    if (t2i_flag_given(t->cmd, "--act") && nn_act_parse(g->act) != (int)c->act)
        return t2i_fail("dalle train: --act %s does not match %s (%s); the architecture comes from --init", g->act,
                        g->init, nn_act_name(c->act)), 2;
    if (t2i_flag_given(t->cmd, "--preset") && strcmp(g->preset, c->preset) != 0)
        return t2i_fail("dalle train: --preset %s does not match %s (%s)", g->preset, g->init, c->preset), 2;
    if (!g->m.tok) return t2i_fail("%s: no text vocabulary in the checkpoint", g->init);
    if (g->cd.vq && g->m.vq_path) {
        char *a = real_of(g->cd.vq), *b = real_of(g->m.vq_path);
        int same = strcmp(a, b) == 0;
        free(a), free(b);
        if (!same)
            return t2i_fail("%s: codes made with the VQ %s, but %s was trained on the codes of %s", g->o.codes, g->cd.vq,
                            g->init, g->m.vq_path);
    }
    if (!g->m.vq_path && g->cd.vq) g->m.vq_path = t2i_strdup(g->cd.vq);
    /* the fine-tuned model knows the words of both caption sets */
    if (g->m.caption_words) {
        t2i_wordset ws;
        t2i_wordset_init(&ws);
        if (t2i_wordset_parse(&ws, g->m.caption_words, g->init) == 0) {
            for (int i = 0; i < g->cd.n; i++) t2i_wordset_add_text(&ws, g->caps[i]);
            t2i_wordset_finish(&ws);
            free(g->m.caption_words);
            g->m.caption_words = t2i_wordset_join(&ws);
        }
        t2i_wordset_free(&ws);
    }
    printf("dalle train: starting from %s (weights, vocabulary of %zu BPE ids, VQ); a fresh optimizer\n", g->init,
           clip_tok_vocab_size(g->m.tok));
    return 0;
}

/* A new run's model from the flags and the codes, and its text vocabulary learned from the captions. */
static int new_model(dalle_trainer *g, t2i_trainer *t) {
    if (g->init) return init_model(g, t);
    dalle_config cfg;
    if (strcmp(g->preset, "b2") == 0) {
        dalle_config_b2(&cfg);
        static const char *const fixed[] = {"--width", "--layers", "--heads", "--text-len", "--text-vocab",
                                            "--codebook", "--act"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (t2i_flag_given(t->cmd, fixed[i])) return t2i_fail("--preset b2 is fixed; %s needs --preset custom", fixed[i]), 2;
    } else if (strcmp(g->preset, "custom") == 0) {
        memset(&cfg, 0, sizeof cfg);
        strcpy(cfg.preset, "custom");
        cfg.text_len = g->text_len, cfg.text_vocab = g->text_vocab, cfg.image_side = g->cd.side;
        cfg.codebook = g->codebook > 0 ? g->codebook : g->have_vq ? vq_n_codes(&g->vq) : 512;
        cfg.width = g->width, cfg.n_layer = g->layers, cfg.n_head = g->heads, cfg.mlp_ratio = 4;
        int a = nn_act_parse(g->act);
        if (a < 0) return t2i_fail("--act: unknown activation '%s'", g->act), 2;
        cfg.act = (nn_act)a;
        cfg.ln_eps = 1e-5f;
    } else {
        return t2i_fail("--preset must be b2 or custom, got '%s'", g->preset), 2;
    }
    if (dalle_config_check(&cfg) != 0) return t2i_fail_err(), 2;
    t2i_rng init_rng = t2i_rng_split(&t->rng, 1);
    dalle_build(&g->m, &cfg);
    g->have_model = 1;
    dalle_init(&g->m, &init_rng);
    double t0 = t2i_now();
    size_t vlen = 0;
    char *merges = clip_tok_train(g->caps, NULL, (size_t)g->cd.n, (size_t)dalle_pad_id(&cfg, 0), &vlen);
    if (!merges || dalle_set_vocab(&g->m, merges, vlen) != 0) {
        t2i_free(merges);
        return t2i_fail("%s: learning the text vocabulary: %s", g->o.codes, t2i_error_msg());
    }
    t2i_free(merges);
    printf("dalle train: text vocabulary of %zu BPE ids learned from %d captions in %.1f s\n",
           clip_tok_vocab_size(g->m.tok), g->cd.n, t2i_now() - t0);
    if (g->cd.vq) g->m.vq_path = t2i_strdup(g->cd.vq);
    return 0;
}

/* Every caption tokenized once, every code as its joint id. */
static int tokenize_data(dalle_trainer *g) {
    const dalle_codes *cd = &g->cd;
    const dalle_config *cfg = &g->m.cfg;
    int TL = cfg->text_len, IL = dalle_image_len(cfg);
    train_data *d = &g->d;
    d->n = cd->n;
    d->text = t2i_malloc((size_t)cd->n * TL * sizeof(int32_t));
    d->image = t2i_malloc((size_t)cd->n * IL * sizeof(int32_t));
    d->order = t2i_malloc((size_t)cd->n * sizeof(int));
    d->order_epoch = -1;
    int truncated = 0, longest = 0;
    for (int i = 0; i < cd->n; i++) {
        int nt = 0;
        int r = dalle_encode_text(&g->m, g->caps[i], d->text + (size_t)i * TL, &nt);
        if (r < 0) {
            char shown[160];
            return t2i_fail("%s: caption of item %d (\"%s\"): %s", cd->source, cd->index[i],
                            t2i_text_show(g->caps[i], 80, shown, sizeof shown), t2i_error_msg());
        }
        if (r > 0 && g->init) {
            char shown[160];
            return t2i_fail("%s: caption of item %d (\"%s\") has %d tokens in the vocabulary of %s, more than its %d "
                            "text positions", cd->source, cd->index[i], t2i_text_show(g->caps[i], 80, shown, sizeof shown),
                            nt, g->init, TL - 1);
        }
        truncated += r;
        longest = nt > longest ? nt : longest;
    }
    if (truncated)
        fprintf(stderr, "t2i: warning: %d of %d captions have more than %d tokens (longest %d) and were truncated\n",
                truncated, cd->n, TL - 1, longest);
    for (size_t i = 0; i < (size_t)cd->n * IL; i++) {
        if (cd->codes[i] >= cfg->codebook)
            return t2i_fail("%s: code %d at row %zu is outside the model's codebook of %d", g->o.codes, cd->codes[i],
                            i / IL, cfg->codebook);
        d->image[i] = cfg->text_vocab + cd->codes[i];
    }
    return 0;
}

static int dalle_tr_setup(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    int rc;
    if (t->resume) {
        char *given = g->codes_path ? realpath(g->codes_path, NULL) : NULL;
        if (g->codes_path && strcmp(given ? given : g->codes_path, g->o.codes) != 0)
            fprintf(stderr, "t2i: warning: --codes ignored with --resume; the run uses %s\n", g->o.codes);
        free(given);
    } else if ((rc = new_opts(g)) != 0) {
        return rc;
    }
    dalle_codes *cd = &g->cd;
    if (dalle_codes_load(cd, g->o.codes) != 0 || load_captions(cd, g->o.codes, &g->ds, &g->caps) != 0) {
        if (t->resume) return t2i_fail("%s (the codes file the checkpoint names)", t2i_error_msg());
        return t2i_fail_err();
    }
    if (cd->vq && !t2i_path_exists(cd->vq)) {
        fprintf(stderr, "t2i: warning: the codes' VQ checkpoint %s is missing: no sample grids\n", cd->vq);
    } else if (cd->vq) {
        if (vq_load(&g->vq, cd->vq, 0, NULL) == 0) g->have_vq = 1;
        else fprintf(stderr, "t2i: warning: %s; no sample grids\n", t2i_error_msg());
    }
    if (!t->resume && (rc = new_model(g, t)) != 0) return rc;
    /* the word set of the captions (a resumed run keeps its checkpoint's; an older one gets it now) */
    if (!g->m.caption_words && !(g->m.caption_words = t2i_words_of_texts(g->caps, (size_t)cd->n)))
        fprintf(stderr, "t2i: warning: the captions' word set is over %zu MB: not stored (generate cannot warn about "
                        "unknown words)\n", T2I_WORDS_META_MAX >> 20);
    const dalle_config *cfg = &g->m.cfg;
    if (cd->side != cfg->image_side)
        return t2i_fail("%s: codes are %dx%d grids, the model expects %dx%d", g->o.codes, cd->side, cd->side,
                        cfg->image_side, cfg->image_side);
    if (g->have_vq && (vq_n_codes(&g->vq) != cfg->codebook || vq_grid(&g->vq) != cfg->image_side)) {
        fprintf(stderr, "t2i: warning: the VQ checkpoint %s (%d codes, grid %d) does not fit the model (%d codes, grid %d): "
                        "no sample grids\n",
                cd->vq, vq_n_codes(&g->vq), vq_grid(&g->vq), cfg->codebook, cfg->image_side);
        vq_model_free(&g->vq);
        g->have_vq = 0;
    }
    if ((rc = tokenize_data(g)) != 0) return rc;
    if (cd->n < g->o.batch) fprintf(stderr, "t2i: warning: %d items, fewer than one batch of %d\n", cd->n, g->o.batch);
    if ((rc = t2i_trainer_split(t, "--batch", g->o.batch)) != 0) return rc;
    t->per_epoch = (cd->n + g->o.batch - 1) / g->o.batch;
    t->default_steps = 10 * t->per_epoch;
    return 0;
}

static char *dalle_tr_config(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    cJSON *src = cJSON_CreateString(g->cd.source); /* a path: escaped by cJSON */
    char *srcs = cJSON_PrintUnformatted(src);
    cJSON *ij = g->init ? cJSON_CreateString(g->init) : NULL;
    char *is = ij ? cJSON_PrintUnformatted(ij) : NULL;
    char *tail = t2i_asprintf(",\"items\":%d,\"source\":%s%s%s", g->cd.n, srcs, is ? ",\"init\":" : "", is ? is : "");
    cJSON_free(srcs), cJSON_free(is);
    cJSON_Delete(src), cJSON_Delete(ij);
    char *full = t2i_trainer_config(t, dalle_config_to_json(&g->m.cfg), t->target, NULL, tail);
    free(tail);
    return full;
}

static int dalle_tr_start(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    const dalle_config *cfg = &g->m.cfg;
    int TL = cfg->text_len, IL = dalle_image_len(cfg);
    /* the cosine runs over the planned length (extending a run stretches it) */
    g->sched = nn_schedule_cosine(g->o.lr, g->o.warmup, t->target, g->o.min_lr);
    g->nprompts = sample_prompts(&g->cd, g->caps, g->prompts);
    g->opt = nn_adamw(g->o.lr, g->o.beta1, g->o.beta2, 1e-8f, g->o.wd);
    g->opt.step = g->opt_step;
    nn_params_moments(&g->m.ps);
    g->tokens = t2i_malloc((size_t)g->o.batch * (TL + IL) * sizeof(int32_t));
    g->null_text = t2i_malloc((size_t)TL * sizeof(int32_t));
    dalle_null_text(&g->m, g->null_text);
    printf("dalle train: %s (%s), %d items, model %s (width %d, %d layers, %d heads, text %d x %d, image %d x %d), "
           "%zu parameters, batch %d, steps %ld (%.2f epochs), %d threads\n",
           g->o.codes, g->cd.source, g->cd.n, cfg->preset, cfg->width, cfg->n_layer, cfg->n_head, cfg->text_len,
           cfg->text_vocab, IL, cfg->codebook, nn_params_count(&g->m.ps, 1), g->o.batch, t->target,
           (double)t->target / t->per_epoch, t2i_get_threads());
    return 0;
}

static int dalle_tr_step(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    next_batch(g, t); /* the whole global batch (its caption drops in order), on every rank */
    nn_arena_reset(&g->arena);
    int lo = t->size > 1 ? t->lo : 0, b = t->size > 1 ? t->hi - t->lo : g->o.batch;
    dalle_train_grads(&g->m, &g->arena, g->tokens + (size_t)lo * dalle_seq_len(&g->m.cfg), b, g->o.text_weight, &g->L);
    if (t->size > 1) {
        /* every row has the same targets: the global means are the mean of the ranks' */
        double v[3] = {g->L.loss, g->L.loss_text, g->L.loss_image};
        t2i_dist_mean(v, 3);
        g->L.loss = (float)v[0], g->L.loss_text = (float)v[1], g->L.loss_image = (float)v[2];
    }
    if (t2i_trainer_nonfinite(t, "", g->L.loss)) return T2I_STEP_NONFINITE;
    g->gnorm = g->o.clip > 0 ? nn_clip_grad_norm(&g->m.ps, g->o.clip) : nn_grad_norm(&g->m.ps);
    g->lr_now = nn_schedule_lr(&g->sched, t->step);
    nn_optim_step(&g->opt, &g->m.ps, g->lr_now);
    return T2I_STEP_OK;
}

static int dalle_tr_metrics(void *self, t2i_trainer *t, char *buf, size_t n) {
    dalle_trainer *g = self;
    return snprintf(buf, n,
                    "{\"step\":%ld,\"epoch\":%.3f,\"loss\":%.5f,\"loss_text\":%.5f,\"loss_image\":%.5f,\"lr\":%.3g,"
                    "\"grad_norm\":%.4f,\"step_ms\":%.2f}",
                    t->step, (double)g->epoch + (double)g->pos / g->d.n, g->L.loss, g->L.loss_text, g->L.loss_image,
                    g->lr_now, g->gnorm, t->step_seconds * 1e3);
}

static void dalle_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    dalle_trainer *g = self;
    (void)t;
    if (last) snprintf(buf, n, "loss %.4f text %.3f image %.3f", g->L.loss, g->L.loss_text, g->L.loss_image);
    else snprintf(buf, n, "loss %.4f text %.3f image %.3f lr %.2g", g->L.loss, g->L.loss_text, g->L.loss_image, g->lr_now);
}

/* A grid of the fixed prompts, one row of 8 samples each, decoded by the codes' VQ. */
static int dalle_tr_sample(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    if (!g->have_vq || g->nprompts <= 0) return 0;
    const int per = 8, np = g->nprompts;
    int TL = g->m.cfg.text_len, IL = dalle_image_len(&g->m.cfg);
    dalle_sample_opts so;
    dalle_sample_defaults(&so);
    int32_t *txt = t2i_malloc((size_t)TL * sizeof(int32_t));
    int32_t *sc = t2i_malloc((size_t)np * per * IL * sizeof(int32_t));
    for (int k = 0; k < np; k++) {
        if (dalle_encode_text(&g->m, g->prompts[k], txt, NULL) != 0) {
            /* a prompt the vocabulary cannot encode: a blank row in the grid, not a crash */
            memset(sc + (size_t)k * per * IL, 0, (size_t)per * IL * sizeof(int32_t));
            continue;
        }
        nn_arena_reset(&g->arena);
        dalle_sample(&g->m, &g->arena, txt, per, t->seed, 0, &so, sc + (size_t)k * per * IL);
    }
    nn_arena_reset(&g->arena);
    const vq_config *vc = &g->vq.cfg;
    size_t isz = (size_t)vc->channels * vc->res * vc->res;
    float *imgs = t2i_malloc((size_t)np * per * isz * sizeof(float));
    dalle_decode(&g->vq, &g->arena, sc, np * per, imgs);
    char *p = t2i_trainer_sample_path(t), *pl = t2i_trainer_latest_path(t);
    if (t2i_save_grid(p, imgs, np * per, vc->channels, vc->res, vc->res, per) != 0 ||
        t2i_save_grid(pl, imgs, np * per, vc->channels, vc->res, vc->res, per) != 0)
        t2i_fail_err();
    free(p), free(pl), free(imgs), free(sc), free(txt);
    return 0;
}

static void dalle_tr_sync(void *self) {
    dalle_trainer *g = self;
    g->opt_step = g->opt.step;
}

static int dalle_tr_save(void *self, const char *path, const char *state_json) {
    return dalle_save(&((dalle_trainer *)self)->m, path, state_json, 1);
}

static void dalle_tr_finish(void *self, t2i_trainer *t) {
    dalle_trainer *g = self;
    printf("dalle train: %ld steps in %.1f s; checkpoint %s%s%s\n", t->step - t->start_step, t->elapsed, t->ckpt_path,
           g->have_vq ? ", samples in " : "", g->have_vq ? t->samples_dir : "");
}

static void dalle_tr_release(void *self) {
    dalle_trainer *g = self;
    free(g->tokens), free(g->null_text);
    nn_arena_free(&g->arena);
    free(g->d.text), free(g->d.image), free(g->d.order);
    free(g->caps);
    t2i_dataset_free(&g->ds);
    dalle_codes_free(&g->cd);
    if (g->have_vq) vq_model_free(&g->vq);
    if (g->have_model) dalle_free(&g->m);
}

static const t2i_trainer_ops dalle_ops = {
    .check_flags = dalle_tr_check_flags,
    .load = dalle_tr_load,
    .check_state = dalle_tr_check_state,
    .setup = dalle_tr_setup,
    .config = dalle_tr_config,
    .start = dalle_tr_start,
    .step = dalle_tr_step,
    .metrics = dalle_tr_metrics,
    .progress = dalle_tr_progress,
    .sample = dalle_tr_sample,
    .sync = dalle_tr_sync,
    .save = dalle_tr_save,
    .finish = dalle_tr_finish,
    .release = dalle_tr_release,
};

int dalle_cmd_train(int argc, char **argv) {
    dalle_trainer g = {.preset = "custom", .act = "gelu", .width = 256, .layers = 6, .heads = 8, .text_len = 16,
                       .text_vocab = 1024, .batch = 32, .warmup = 500, .lr = 3e-4f, .min_lr = 3e-5f, .beta1 = 0.9f,
                       .beta2 = 0.95f, .wd = 0.01f, .clip = 1.0f, .text_weight = 0.125f, .cond_drop = 0.15f};
    nn_arena_init(&g.arena);
    t2i_trainer t;
    t2i_trainer_init(&t, &dalle_ops, &g, "dalle");
    t.out = "runs/dalle", t.seed_arg = 1, t.sample_every = 1000, t.ckpt_every = 1000, t.log_every = 50;
    t.every_max = 1000000000, t.steps_max = 1000000000000L, t.sample_min = 0;
    t.samples = "samples";
    train_opts *o = &g.o;
    nn_field sf[] = {NN_F_LONG("step", t.step), NN_F_LONG("target", t.target), NN_F_RNG("rng", t.rng),
                     NN_F_LONG("epoch", g.epoch), NN_F_INT("pos", g.pos),         NN_F_LONG("opt_step", g.opt_step)};
    nn_field of[] = {NN_F_STR("codes", o->codes),
                     NN_F_FLOAT_IN("lr", o->lr, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("min_lr", o->min_lr, 0, 1),
                     NN_F_FLOAT_IN("beta1", o->beta1, 0, NN_BETA1_MAX),
                     NN_F_FLOAT_IN("beta2", o->beta2, 0, NN_BETA2_MAX),
                     NN_F_FLOAT_IN("weight_decay", o->wd, 0, 10),
                     NN_F_FLOAT_IN("clip", o->clip, 0, 1e6),
                     NN_F_FLOAT_IN("text_weight", o->text_weight, 0, 1),
                     NN_F_FLOAT_IN("cond_drop", o->cond_drop, 0, 1),
                     NN_F_LONG_IN("warmup", o->warmup, 0, 1000000000),
                     NN_F_INT_IN("batch", o->batch, 1, 65536),
                     NN_F_SEED("seed", t.seed)};
    t.state = sf, t.nstate = NN_NFIELDS(sf), t.opts = of, t.nopts = NN_NFIELDS(of);
    t2i_flag flags[] = {
        {"--codes", T2I_STR, &g.codes_path, "codes file of `t2i vq encode` (required for a new run)"},
        {"--init", T2I_STR, &g.init, "start from this dalle checkpoint's weights, vocabulary and VQ (fine-tuning; "
                                     "fresh optimizer; the codes must come from the same VQ)"},
        {"--preset", T2I_STR, &g.preset, "b2 (bench/README.md B2 exactly) or custom (the sizes below)"},
        {"--width", T2I_INT, &g.width, "model width (custom)"},
        {"--layers", T2I_INT, &g.layers, "transformer layers (custom)"},
        {"--heads", T2I_INT, &g.heads, "attention heads (custom)"},
        {"--text-len", T2I_INT, &g.text_len, "text positions, start token included (custom)"},
        {"--text-vocab", T2I_INT, &g.text_vocab, "text ids: BPE vocabulary + text-len pad ids (custom)"},
        {"--codebook", T2I_INT, &g.codebook, "image codes (custom; 0 = the VQ checkpoint's, else 512)"},
        {"--act", T2I_STR, &g.act, "MLP activation (custom): gelu (exact), gelu_tanh, quick_gelu"},
        {"--batch", T2I_INT, &g.batch, "batch size"},
        {"--steps", T2I_LONG, &t.steps, "training steps (default: 10 epochs)"},
        {"--epochs", T2I_FLOAT, &t.epochs, "training length in epochs (instead of --steps)"},
        {"--lr", T2I_FLOAT, &g.lr, "peak learning rate (AdamW)"},
        {"--min-lr", T2I_FLOAT, &g.min_lr, "learning rate at the end of the cosine decay"},
        {"--warmup", T2I_LONG, &g.warmup, "linear warmup steps"},
        {"--beta1", T2I_FLOAT, &g.beta1, "AdamW beta1"},
        {"--beta2", T2I_FLOAT, &g.beta2, "AdamW beta2"},
        {"--wd", T2I_FLOAT, &g.wd, "AdamW weight decay (Linear weights only)"},
        {"--clip", T2I_FLOAT, &g.clip, "gradient clipping: max global L2 norm (0 = off)"},
        {"--text-weight", T2I_FLOAT, &g.text_weight, "weight of the text loss (image: 1 - this; DALL-E 1/8)"},
        {"--cond-drop", T2I_FLOAT, &g.cond_drop, "probability of replacing a caption by the unconditional text"},
        {"--sample-every", T2I_INT, &t.sample_every, "write a sample grid every N steps (0 = only at the end)"},
        T2I_TRAIN_FLAGS(t),
    };
    t2i_cmd cmd = {"t2i dalle train", "Train the DALL-E-style image-token transformer on VQ codes.", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "The captions come from the dataset named in the codes file. With --resume the model and\n"
                   "options come from the checkpoint; --steps/--epochs may extend the run."};
    return t2i_trainer_main(&t, &cmd, argc, argv);
}
