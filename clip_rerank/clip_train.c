/* clip_train.c - `t2i clip train`: contrastive training of a CLIP from scratch.
 *
 * One step: a batch of N (image, caption) pairs -> both towers -> symmetric InfoNCE
 * (cross-entropy of the image->text and text->image logits over the batch, averaged) ->
 * backward through both towers -> AdamW (no decay on gains, biases, embeddings and the
 * logit scale) with linear warmup then cosine decay -> logit scale clamped to
 * [0, log 100] as OpenAI. The logit scale is learned from log(1/0.07).
 *
 * Data: fashion-captions (FC32, the default; train split, 60000 items, 32x32) or any
 * folder in the imagefolder layout (images + metadata.jsonl / metadata.csv with captions),
 * brought to the model resolution by OpenAI's resize + centre crop. Random horizontal
 * flips (on by default) keep colour and class; no colour jitter (colour is what captions
 * name); --crop-pad N adds random shifts (zero-pad N pixels, crop back at a random
 * offset); --erase P blacks out one random rectangle (2-33% of the image, aspect 0.3-3.3,
 * torchvision's RandomErasing) with probability P. For FC32, --recaption (default on)
 * redraws each item's caption template every time it is seen ("a red dress", "a dress in
 * red", "a product photo of a red dress", ...) from the colour and class its caption names,
 * so the text tower sees every phrasing.
 * --dup-positives makes pairs of a batch with the same caption (FC32: colour and class)
 * positives of each other (multi-positive InfoNCE, clip_contrastive_loss); the logged
 * in-batch accuracy then counts any positive, so it is not comparable with a plain run's.
 *
 * Vocabulary: a new run learns a byte-level BPE vocabulary from the training captions
 * (clip_tok_train, --vocab-size) and stores its merges in the checkpoint metadata "vocab";
 * the token embedding is sized to it.
 *
 * Run folder (--out): config.json, metrics.jsonl (loss, in-batch matching accuracy,
 * exp(logit_scale), lr, and every --eval-every steps FC32 zero-shot accuracies on the
 * first --eval-n test items), checkpoint.safetensors (weights, Adam moments, state).
 * --init W starts a new run (fresh AdamW moments, warmup and cosine over --steps) from the
 * weights and vocabulary of a t2i CLIP checkpoint W; the model flags give way to W's shape,
 * except --res: a resolution other than W's (a multiple of its patch size) resamples W's
 * patch-grid position embeddings bilinearly (clip_model_set_resolution), so a model trained at
 * 32x32 can be fine-tuned on its images upsampled to 64x64 (twice the patches per side).
 * --resume continues bit-identically with the same thread count (--stop-after N ends a
 * session early, e.g. to train in slices; the schedule follows --steps). Ctrl-C saves and exits
 * 130; a NaN/Inf loss stops with an error and keeps the last checkpoint.
 *
 * Default recipe (FC32; the first stage of the shipped samples/models/clip.safetensors): 32x32,
 * a convolutional stem of base width 32 (clip.h: 3x3 convolutions 3 -> 32, then at stride 2
 * 64, 128, 128, then 1x1 to 128) giving the 4x4 grid of patch 8, vision 128 wide x 4 layers x
 * 4 heads, text 96 x 3 x 4, context 16, embed 64, batch 128, random shifts of up to 2 pixels
 * and flips, AdamW lr 1e-3 (betas 0.9/0.98, eps 1e-6, wd 0.1), 5% warmup then cosine to 0, 16
 * epochs (7488 steps; 5.4 steps/s at two threads on an idle AVX-512 EPYC, about 23 min).
 * Zero-shot top-1 over the 80 captions on FC32 test: 90.82% (held-out pairs 80.37%), against
 * 86.3% for the same recipe with OpenAI's patch embedding (--stem 0), which needed 128 epochs,
 * a soup of fine-tunes and a 64x64 fine-tune to reach 90.46%. Extended to 32 epochs
 * (`--resume --steps 14976`) the stem model reaches 91.25% (held-out 76.77%; FC32 train
 * 95.6%). bench/RESULTS.md, "A convolutional stem for CLIP", has the rest.
 * A deeper stem (--stem-extra 1: a stride-1 3x3 convolution after each stride-2 one, 1.24x
 * the time per step) reaches 91.55% in 16 epochs (held-out 80.06%), 91.85% in 32; a wider
 * one (--stem 64, 1.34x the time) 90.85% (78.11%) in 16. The deeper one ranks generated
 * candidates worse than the default (bench/RESULTS.md, "A deeper CLIP stem"), which stays.
 *
 * The history of the patch-embedding recipe (--stem 0), kept for its lessons: 16 epochs gave
 * zero-shot top-1 on FC32 test 86.3% (held-out pairs 74.0%; plain
 * Fashion-MNIST 82.9%); colour is right 100% of the time, so the remaining error is
 * Fashion-MNIST's class confusions (shirt, pullover, coat, t-shirt). The previous recipe
 * (vision 96 wide, no shifts) gave 85.8% / 73.7% / 79.6%, and 91.4% on train images against
 * 85.6% on test; the shifts narrow that gap (89.7% train vs 86.3% test), so what is left is the
 * model and the length of training. Patch 4 (4x the vision tokens, 3.5x the cost per step)
 * learned no faster (82.7% against 84.1% at step 4000; stopped there). Training longer does
 * help: extended to 32 epochs (`--resume --steps 14976`: the rate restarts at 5.4e-4 and
 * decays to 0 again) it reaches 87.7% on FC32 test, extended again to 64 epochs (`--steps
 * 29952`) 89.0%, and at 128 epochs (`--steps 59904`) 89.3% (held-out pairs 73.4%,
 * Fashion-MNIST 85.5%): that last doubling gave +0.3 points, against +1.4 for each before.
 * Fine-tuning that model with --init and --erase 0.5 (10 epochs, lr 3e-4) gave 89.45%
 * (held-out pairs 77.5%, Fashion-MNIST 86.7%) against 89.28% for the same cycle without
 * erasing: erasing narrows the train/test gap and lifts the held-out pairs, not FC32 test.
 * The mean (`t2i ckpt average`) of the 128-epoch model and four such fine-tunes (erasing 0,
 * 0.25 and 0.5, seeds 1-3) gives 89.65% (held-out pairs 76.5%, Fashion-MNIST 86.7%) as bf16,
 * above each of its members (89.25-89.45%). Fine-tuning that mean at 64x64 (`--init --res 64
 * --crop-pad 4`: the 32x32 images upsampled, 8x8 patches of 8 instead of 4x4, about 4x the
 * time per step; 10 epochs at lr 3e-4) gives 89.98%, 90.15% and 90.06% for three seeds (48x48:
 * 89.75%), and the mean of the three, the shipped model, 90.46% as bf16 (held-out pairs 76.7%,
 * Fashion-MNIST 88.2%).
 * --dup-positives made no measurable difference (86.35% vs 86.6% at step 6000 of the
 * same recipe, 2000-item evaluations).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "clip.h"
#include "data.h"
#include "dist.h"
#include "fc32.h"
#include "optim.h"
#include "progress.h"
#include "trainer.h"

static int is_fc32(const char *spec) { return strncmp(spec, "fashion-captions", 16) == 0; }

/* Learns the BPE vocabulary from every training caption (plus, with recaptioning, every
 * phrasing of every colour x class, so no template word is unknown). */
static clip_tok *learn_vocab(const t2i_dataset *ds, int recaption, int vocab_target, char **merges) {
    int extra = recaption ? FC32_N_CANONICAL * FC32_N_TEMPLATES : 0;
    const char **texts = t2i_malloc((size_t)(ds->n + extra) * sizeof(char *));
    char *buf = extra ? t2i_malloc((size_t)extra * FC32_CAPTION_MAX) : NULL;
    for (int i = 0; i < ds->n; i++) texts[i] = ds->captions[i];
    for (int k = 0; k < extra; k++) {
        char *b = buf + (size_t)k * FC32_CAPTION_MAX;
        int ct = k / FC32_N_TEMPLATES;
        fc32_caption(b, FC32_CAPTION_MAX, ct / FC32_N_CLASSES, ct % FC32_N_CLASSES, k % FC32_N_TEMPLATES);
        texts[ds->n + k] = b;
    }
    *merges = clip_tok_train(texts, NULL, (size_t)(ds->n + extra), (size_t)vocab_target, NULL);
    free(texts);
    free(buf);
    if (!*merges) return NULL;
    return clip_tok_from_merges(*merges, strlen(*merges), -1, "learned vocabulary");
}

typedef struct {
    char data[1024];
    int batch, flip, crop_pad, recaption, dup_pos, vocab_target;
    float erase;
    float lr, min_lr, wd, beta1, beta2, eps, clip_grad;
    long warmup;
} train_opts;

/* The command's own part of the run (t2i_trainer holds the common one). */
typedef struct {
    /* flags of a new run (with --resume, the checkpoint's model and options count) */
    const char *data, *act, *init;
    int res, patch, stem, stem_extra, vwidth, vlayers, vheads, twidth, tlayers, theads, context, embed, vocab_size, batch;
    int flip, crop_pad, recaption, dup_pos, eval_n;
    long warmup;
    float lr, min_lr, wd, beta1, beta2, eps, clip_grad, erase;
    /* options and state saved in the checkpoint, besides the trainer's */
    train_opts o;
    long loader_epoch, opt_step;
    int loader_pos;
    /* model, data, optimizer and buffers */
    clip_config cfg;
    clip_model m;
    t2i_dataset ds, test;
    int evaluate, fc32;
    t2i_loader L;
    nn_optim opt;
    nn_schedule sched;
    nn_arena arena;
    size_t item;
    float *x, *px;
    const char **caps, **use;
    char *capbuf;
    int32_t *tokens;
    int *group;
    float loss, acc, lr_now;
} clip_trainer;

static int clip_tr_check_flags(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    if (t->resume && c->init) return t2i_fail("clip train: --init starts a new run; --resume continues the one in --out"), 2;
    if (t2i_check_range_i("--eval-n", c->eval_n, 1, 1000000000)) return 2;
    if (t->stop_after < 0) return t2i_fail("--stop-after must be >= 0"), 2;
    return 0;
}

static int clip_tr_load(void *self, const char *path, char **state_json) {
    clip_trainer *c = self;
    if (clip_load_ckpt(&c->m, path, 1, state_json) != 0) return -1;
    c->cfg = c->m.cfg;
    return 0;
}

static int clip_tr_check_state(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    (void)t;
    if (!c->m.tok) return t2i_error_set("no vocabulary in the checkpoint");
    if (c->o.crop_pad > c->cfg.image_resolution / 2)
        return t2i_error_set("training state: crop_pad %d is more than half the %d-pixel resolution", c->o.crop_pad,
                             c->cfg.image_resolution);
    return 0;
}

/* A new run's model (or --init's) and options from the flags. */
static int new_run(clip_trainer *c, t2i_trainer *t) {
    int a = nn_act_parse(c->act);
    if (a != NN_ACT_QUICK_GELU && a != NN_ACT_GELU_ERF)
        return t2i_fail("--act must be quick_gelu or gelu, got '%s'", c->act), 2;
    if (t2i_check_range_i("--res", c->res, 4, 1024) || t2i_check_range_i("--patch", c->patch, 1, c->init ? 1024 : c->res) ||
        t2i_check_range_i("--stem", c->stem, 0, 4096) || t2i_check_range_i("--stem-extra", c->stem_extra, 0, 16) || t2i_check_range_i("--vision-width", c->vwidth, 4, 4096) || t2i_check_range_i("--vision-layers", c->vlayers, 1, 64) ||
        t2i_check_range_i("--vision-heads", c->vheads, 1, 64) || t2i_check_range_i("--text-width", c->twidth, 4, 4096) ||
        t2i_check_range_i("--text-layers", c->tlayers, 1, 64) || t2i_check_range_i("--text-heads", c->theads, 1, 64) ||
        t2i_check_range_i("--context", c->context, 4, 1024) || t2i_check_range_i("--embed-dim", c->embed, 2, 4096) ||
        t2i_check_range_i("--vocab-size", c->vocab_size, 514, 1 << 20) || t2i_check_range_i("--batch", c->batch, 2, 8192) ||
        t2i_check_range_f("--lr", c->lr, NN_LR_MIN, NN_LR_MAX) || t2i_check_range_f("--min-lr", c->min_lr, 0, c->lr) ||
        t2i_check_range_f("--wd", c->wd, 0, 10) || t2i_check_range_f("--beta1", c->beta1, 0, NN_BETA1_MAX) ||
        t2i_check_range_f("--beta2", c->beta2, 0, NN_BETA2_MAX) || t2i_check_range_f("--eps", c->eps, 1e-12, 1) ||
        t2i_check_range_f("--clip-grad", c->clip_grad, 0, 1e6) || t2i_check_range_f("--erase", c->erase, 0, 1))
        return 2;
    if (!c->init && c->res % c->patch) /* with --init, the checkpoint's patch size counts */
        return t2i_fail("--res %d is not a multiple of --patch %d", c->res, c->patch), 2;
    if (!c->init && c->stem > 0 && (c->patch & (c->patch - 1)))
        return t2i_fail("--stem needs a power-of-two --patch (each stride-2 convolution halves the grid), not %d",
                        c->patch),
               2;
    if (!c->init && c->stem_extra > 0 && c->stem == 0)
        return t2i_fail("--stem-extra %d needs a convolutional stem (--stem C > 0)", c->stem_extra), 2;
    if (c->vwidth % c->vheads || c->twidth % c->theads)
        return t2i_fail("widths must be divisible by the head counts (%d/%d, %d/%d)", c->vwidth, c->vheads, c->twidth,
                        c->theads),
               2;
    clip_config *cfg = &c->cfg;
    cfg->embed_dim = c->embed, cfg->image_resolution = c->res, cfg->vision_patch_size = c->patch;
    cfg->vision_width = c->vwidth, cfg->vision_layers = c->vlayers, cfg->vision_heads = c->vheads;
    cfg->vision_stem = c->stem, cfg->vision_stem_extra = c->stem_extra;
    cfg->context_length = c->context;
    cfg->transformer_width = c->twidth, cfg->transformer_layers = c->tlayers, cfg->transformer_heads = c->theads;
    cfg->act = (nn_act)a;
    if (c->init) { /* the model and its vocabulary come from the checkpoint; a fresh optimizer and schedule */
        if (clip_load_ckpt(&c->m, c->init, 0, NULL) != 0) return t2i_fail_err();
        if (!c->m.tok || !c->m.vocab) return t2i_fail("%s: no vocabulary in the checkpoint", c->init);
        if (t2i_flag_given(t->cmd, "--res") && c->res != c->m.cfg.image_resolution) {
            int r0 = c->m.cfg.image_resolution;
            if (clip_model_set_resolution(&c->m, c->res) != 0)
                return t2i_fail("--res: %s: %s", c->init, t2i_error_msg()), 2;
            fprintf(stderr, "clip train: %s: %dx%d -> %dx%d images, position embeddings resampled\n", c->init, r0, r0,
                    c->res, c->res);
        }
        *cfg = c->m.cfg;
    }
    if (t2i_check_range_i("--crop-pad", c->crop_pad, 0, cfg->image_resolution / 2)) return 2;
    train_opts *o = &c->o;
    if (strlen(c->data) >= sizeof o->data) return t2i_fail("--data: path too long"), 2;
    strcpy(o->data, c->data);
    o->batch = c->batch, o->flip = c->flip, o->crop_pad = c->crop_pad, o->recaption = c->recaption && is_fc32(c->data);
    o->dup_pos = c->dup_pos, o->erase = c->erase, o->vocab_target = c->vocab_size;
    o->lr = c->lr, o->min_lr = c->min_lr, o->wd = c->wd, o->beta1 = c->beta1, o->beta2 = c->beta2, o->eps = c->eps;
    o->clip_grad = c->clip_grad, o->warmup = c->warmup;
    return 0;
}

/* A model from scratch, with a vocabulary learned from the training captions. */
static int new_model(clip_trainer *c, t2i_trainer *t) {
    clip_config *cfg = &c->cfg;
    char *merges = NULL;
    double tv = t2i_now();
    clip_tok *tok = learn_vocab(&c->ds, c->o.recaption, c->o.vocab_target, &merges);
    if (!tok) return t2i_fail("%s: learning the vocabulary: %s", c->ds.source, t2i_error_msg());
    cfg->vocab_size = (int)clip_tok_vocab_size(tok);
    if (clip_config_check(cfg) != 0) {
        clip_tok_free(tok);
        free(merges);
        return t2i_fail_err();
    }
    t2i_rng init_rng = t2i_rng_split(&t->rng, 1);
    clip_model_build(&c->m, cfg);
    clip_model_init(&c->m, &init_rng);
    c->m.vocab = merges;
    clip_set_tokenizer(&c->m, tok, "learned vocabulary");
    printf("clip train: learned a %d-token vocabulary from %d captions in %.1f s\n", cfg->vocab_size, c->ds.n,
           t2i_now() - tv);
    return 0;
}

static int clip_tr_setup(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    int rc;
    if (!t->resume && (rc = new_run(c, t)) != 0) return rc;
    /* data at the model's resolution */
    int R = c->cfg.image_resolution;
    char spec[1100];
    snprintf(spec, sizeof spec, "%s%s", c->o.data, strcmp(c->o.data, "fashion-captions") == 0 ? ":train" : "");
    if (t2i_dataset_open(&c->ds, spec, 3, R, R) != 0) return t2i_fail_err();
    if (!c->ds.captions)
        return t2i_fail("%s: no captions (fashion-captions, or a folder with metadata.jsonl / metadata.csv)", c->ds.source);
    if (c->ds.n < c->o.batch)
        return t2i_fail("%s: %d images, fewer than one batch of %d", c->ds.source, c->ds.n, c->o.batch);
    c->fc32 = is_fc32(c->o.data);
    c->evaluate = t->sample_every > 0 && c->fc32;
    if (c->evaluate && t2i_dataset_open(&c->test, "fashion-captions:test", 3, R, R) != 0) return t2i_fail_err();
    if (!t->resume && !c->init && (rc = new_model(c, t)) != 0) return rc;
    clip_model_set_no_decay(&c->m);
    if ((rc = t2i_trainer_split(t, "--batch", c->o.batch)) != 0) return rc;
    t->per_epoch = c->ds.n / c->o.batch;
    t->default_steps = 16 * t->per_epoch;
    return 0;
}

/* The schedule belongs to the run: fixed by the first target unless extended. */
static long warmup_steps(const clip_trainer *c, const t2i_trainer *t) {
    return c->o.warmup >= 0 ? c->o.warmup : t->target / 20;
}

static char *clip_tr_config(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    char *mid = t2i_asprintf(",\"warmup\":%ld", warmup_steps(c, t));
    char *tail = t2i_trainer_init_tail(c->init);
    char *full = t2i_trainer_config(t, clip_config_to_json(&c->cfg), t->target, mid, tail);
    free(mid), free(tail);
    return full;
}

static int clip_tr_start(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    const clip_config *cfg = &c->cfg;
    const train_opts *o = &c->o;
    c->sched = nn_schedule_cosine(o->lr, warmup_steps(c, t), t->target, o->min_lr);
    t2i_loader_init(&c->L, &c->ds, o->batch, 1, t->seed);
    c->L.drop_last = 1;
    c->L.flip = o->flip;
    c->L.crop_pad = o->crop_pad;
    c->L.erase = o->erase;
    if (t->size > 1) c->L.part_lo = t->lo, c->L.part_hi = t->hi; /* decode this rank's rows only */
    if (t->resume && t2i_loader_seek(&c->L, c->loader_epoch, c->loader_pos) != 0)
        return t2i_fail("%s: %s", t->ckpt_path, t2i_error_msg());
    c->opt = nn_adamw(o->lr, o->beta1, o->beta2, o->eps, o->wd);
    c->opt.step = c->opt_step;
    int B = o->batch, R = cfg->image_resolution, ctx = cfg->context_length;
    c->item = (size_t)3 * R * R;
    c->x = t2i_malloc_aligned((size_t)B * c->item * sizeof(float));
    c->px = t2i_malloc_aligned((size_t)B * c->item * sizeof(float));
    c->caps = t2i_malloc((size_t)B * sizeof(char *));
    c->use = t2i_malloc((size_t)B * sizeof(char *));
    c->capbuf = t2i_malloc((size_t)B * FC32_CAPTION_MAX);
    c->tokens = t2i_malloc((size_t)B * ctx * sizeof(int32_t));
    c->group = t2i_malloc((size_t)B * sizeof(int));
    printf("clip train: %s, %d pairs %dx%d, batch %d, steps %ld (%.2f epochs), vision %dx%d (patch %d%s), text %dx%d "
           "(context %d, vocab %d), embed %d, %zu parameters, %d threads\n",
           c->ds.source, c->ds.n, R, R, B, t->target, (double)t->target / t->per_epoch, cfg->vision_width,
           cfg->vision_layers, cfg->vision_patch_size, cfg->vision_stem > 0 ? ", convolutional stem" : "", cfg->transformer_width, cfg->transformer_layers, ctx,
           cfg->vocab_size, cfg->embed_dim, nn_params_count(&c->m.ps, 1), t2i_get_threads());
    return 0;
}

/* The captions of a batch as trained on (FC32: a fresh phrasing) and, with --dup-positives,
 * their groups of equal captions. */
static void batch_captions(clip_trainer *c, t2i_trainer *t) {
    for (int i = 0; i < c->o.batch; i++) {
        int colour, cls;
        c->use[i] = c->caps[i];
        int parsed = c->fc32 && fc32_parse_caption(c->caps[i], &colour, &cls) == 0;
        if (c->o.recaption && parsed) {
            char *b = c->capbuf + (size_t)i * FC32_CAPTION_MAX;
            fc32_caption(b, FC32_CAPTION_MAX, colour, cls, (int)t2i_rng_below(&t->rng, FC32_N_TEMPLATES));
            c->use[i] = b;
        }
        /* groups of equal captions: FC32's colour x class (whatever the phrasing), else
         * the first item of the batch with the same text */
        if (!c->o.dup_pos) continue;
        c->group[i] = i;
        if (parsed) c->group[i] = -1 - (colour * FC32_N_CLASSES + cls);
        else
            for (int j = 0; j < i; j++)
                if (strcmp(c->caps[j], c->caps[i]) == 0) {
                    c->group[i] = c->group[j];
                    break;
                }
    }
}

static int clip_tr_step(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    int B = c->o.batch, R = c->cfg.image_resolution;
    int got = t2i_loader_next(&c->L, c->x, NULL, c->caps, NULL);
    if (got == 0) got = t2i_loader_next(&c->L, c->x, NULL, c->caps, NULL);
    if (got < 0) return t2i_fail_err(), T2I_STEP_FAILED;
    /* under MPI this rank's images [lo, hi); the captions of the whole global batch (their
     * random phrasings in the single process's order, and the groups of equal captions) */
    int lo = t->size > 1 ? t->lo : 0, hi = t->size > 1 ? t->hi : B, ctx = c->cfg.context_length;
    for (int i = lo; i < hi; i++) clip_normalize_m11(c->px + i * c->item, c->x + i * c->item, R);
    batch_captions(c, t);
    if (clip_tokenize(&c->m, c->use, B, c->tokens) != 0)
        return t2i_fail("%s: %s", c->ds.source, t2i_error_msg()), T2I_STEP_FAILED;
    c->lr_now = nn_schedule_lr(&c->sched, t->step);
    const int *group = c->o.dup_pos ? c->group : NULL;
    const float *px = c->px + lo * c->item;
    const int32_t *tok = c->tokens + (size_t)lo * ctx;
    if (t2i_dist_broken("loss")) { /* test switch: a per-rank loss over the rank's rows alone (wrong) */
        c->loss = clip_train_grads(&c->m, &c->arena, px, tok, group ? group + lo : NULL, hi - lo, &c->acc);
        double v[2] = {c->loss, c->acc};
        t2i_dist_mean(v, 2);
        c->loss = (float)v[0], c->acc = (float)v[1];
    } else {
        c->loss = clip_train_grads_part(&c->m, &c->arena, px, tok, group, B, lo, hi, &c->acc);
    }
    if (t2i_trainer_nonfinite(t, "", c->loss)) return T2I_STEP_NONFINITE;
    if (c->o.clip_grad > 0) nn_clip_grad_norm(&c->m.ps, c->o.clip_grad);
    nn_optim_step(&c->opt, &c->m.ps, c->lr_now);
    clip_clamp_logit_scale(&c->m);
    return T2I_STEP_OK;
}

static int clip_tr_metrics(void *self, t2i_trainer *t, char *buf, size_t n) {
    clip_trainer *c = self;
    double dt = t->step_seconds;
    return snprintf(buf, n,
                    "{\"step\":%ld,\"epoch\":%.3f,\"loss\":%.5f,\"acc\":%.4f,\"logit_scale\":%.3f,\"lr\":%.3g,"
                    "\"step_ms\":%.1f,\"pairs_per_s\":%.1f}",
                    t->step, (double)c->L.epoch + (double)c->L.pos / c->ds.n, c->loss, c->acc,
                    clip_logit_scale_exp(&c->m), c->lr_now, dt * 1e3, c->o.batch / dt);
}

static void clip_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    clip_trainer *c = self;
    (void)t;
    if (last) snprintf(buf, n, "loss %.3f acc %.3f", c->loss, c->acc);
    else snprintf(buf, n, "loss %.3f acc %.3f scale %.1f", c->loss, c->acc, clip_logit_scale_exp(&c->m));
}

/* FC32 zero-shot accuracies on the first --eval-n test items. */
static int clip_tr_sample(void *self, t2i_trainer *t) {
    clip_trainer *c = self;
    clip_fc32_eval ev;
    if (!c->evaluate || clip_eval_fc32(&c->m, &c->test, c->eval_n, 0, &ev) != 0) return 0;
    char line[512];
    snprintf(line, sizeof line,
             "{\"step\":%ld,\"zs_top1\":%.4f,\"zs_top5\":%.4f,\"zs_held_top1\":%.4f,\"zs_class_acc\":%.4f,"
             "\"zs_colour_acc\":%.4f,\"zs_n\":%d}",
             t->step, ev.top1, ev.top5, ev.held_top1, ev.class_acc, ev.colour_acc, ev.n);
    t2i_run_metrics(&t->run, line);
    return 0;
}

static void clip_tr_sync(void *self) {
    clip_trainer *c = self;
    c->loader_epoch = c->L.epoch, c->loader_pos = c->L.pos, c->opt_step = c->opt.step;
}

static int clip_tr_save(void *self, const char *path, const char *state_json) {
    return clip_save(&((clip_trainer *)self)->m, path, state_json, 1, 0);
}

static void clip_tr_finish(void *self, t2i_trainer *t) {
    (void)self;
    printf("clip train: %ld steps in %.1f s; checkpoint %s\n", t->step - t->start_step, t->elapsed, t->ckpt_path);
}

static void clip_tr_release(void *self) {
    clip_trainer *c = self;
    nn_arena_free(&c->arena);
    t2i_free(c->x), t2i_free(c->px);
    free(c->caps), free(c->use), free(c->capbuf), free(c->tokens), free(c->group);
    t2i_loader_free(&c->L);
    t2i_dataset_free(&c->ds);
    t2i_dataset_free(&c->test);
    clip_model_free(&c->m);
}

static const t2i_trainer_ops clip_ops = {
    .check_flags = clip_tr_check_flags,
    .load = clip_tr_load,
    .check_state = clip_tr_check_state,
    .setup = clip_tr_setup,
    .config = clip_tr_config,
    .start = clip_tr_start,
    .step = clip_tr_step,
    .metrics = clip_tr_metrics,
    .progress = clip_tr_progress,
    .sample = clip_tr_sample,
    .sync = clip_tr_sync,
    .save = clip_tr_save,
    .finish = clip_tr_finish,
    .release = clip_tr_release,
};

int clip_cmd_train(int argc, char **argv) {
    /* defaults: the toolkit's FC32 recipe */
    clip_trainer c = {.data = "fashion-captions", .act = "quick_gelu", .res = 32, .patch = 8, .stem = 32, .vwidth = 128,
                      .vlayers = 4, .vheads = 4, .twidth = 96, .tlayers = 3, .theads = 4, .context = 16, .embed = 64,
                      .vocab_size = 1024, .batch = 128, .flip = 1, .crop_pad = 2, .recaption = 1, .eval_n = 2000,
                      .warmup = -1, .lr = 1e-3f, .wd = 0.1f, .beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f};
    clip_config_default(&c.cfg);
    nn_arena_init(&c.arena);
    t2i_trainer t;
    t2i_trainer_init(&t, &clip_ops, &c, "clip");
    t.out = "runs/clip", t.seed_arg = 1, t.ckpt_every = 500, t.log_every = 10, t.sample_every = 1000;
    t.every_max = 1000000000, t.sample_min = 0, t.stop_session = 1;
    train_opts *o = &c.o;
    nn_field sf[] = {NN_F_LONG("step", t.step),          NN_F_LONG("target", t.target),
                     NN_F_RNG("rng", t.rng),             NN_F_LONG("loader_epoch", c.loader_epoch),
                     NN_F_INT("loader_pos", c.loader_pos), NN_F_LONG("opt_step", c.opt_step)};
    nn_field of[] = {NN_F_STR("data", o->data),
                     NN_F_INT_IN("batch", o->batch, 2, 8192),
                     NN_F_BOOL("flip", o->flip),
                     NN_F_INT_DEF_IN("crop_pad", o->crop_pad, 0, 0, 512),
                     NN_F_FLOAT_DEF_IN("erase", o->erase, 0, 0, 1),
                     NN_F_BOOL("recaption", o->recaption),
                     NN_F_BOOL_DEF("dup_positives", o->dup_pos, 0),
                     NN_F_INT_IN("vocab_size", o->vocab_target, 514, 1 << 20),
                     NN_F_FLOAT_IN("lr", o->lr, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("min_lr", o->min_lr, 0, 1),
                     NN_F_FLOAT_IN("weight_decay", o->wd, 0, 10),
                     NN_F_FLOAT_IN("beta1", o->beta1, 0, NN_BETA1_MAX),
                     NN_F_FLOAT_IN("beta2", o->beta2, 0, NN_BETA2_MAX),
                     NN_F_FLOAT_IN("eps", o->eps, 1e-12, 1),
                     NN_F_FLOAT_IN("clip_grad", o->clip_grad, 0, 1e6),
                     NN_F_LONG_IN("warmup", o->warmup, -1e15, 1e15),
                     NN_F_SEED("seed", t.seed)};
    t.state = sf, t.nstate = NN_NFIELDS(sf), t.opts = of, t.nopts = NN_NFIELDS(of);
    t2i_flag flags[] = {
        {"--data", T2I_STR, &c.data, "fashion-captions (FC32) or a folder with metadata.jsonl/csv captions"},
        {"--res", T2I_INT, &c.res,
         "image resolution (images are resized + centre cropped to it; with --init, resamples the model's position "
         "embeddings to it)"},
        {"--patch", T2I_INT, &c.patch, "vision patch size"},
        {"--stem", T2I_INT, &c.stem,
         "convolutional stem of this base width instead of the patch embedding (3x3 convolutions with BatchNorm, "
         "log2(patch) of them at stride 2; 0 = OpenAI's patch embedding)"},
        {"--stem-extra", T2I_INT, &c.stem_extra,
         "3x3 convolutions at stride 1 (same channels, BatchNorm, ReLU) after each stride-2 one of the stem"},
        {"--vision-width", T2I_INT, &c.vwidth, "vision transformer width"},
        {"--vision-layers", T2I_INT, &c.vlayers, "vision transformer layers"},
        {"--vision-heads", T2I_INT, &c.vheads, "vision attention heads"},
        {"--text-width", T2I_INT, &c.twidth, "text transformer width"},
        {"--text-layers", T2I_INT, &c.tlayers, "text transformer layers"},
        {"--text-heads", T2I_INT, &c.theads, "text attention heads"},
        {"--context", T2I_INT, &c.context, "text context length (tokens incl. start/end)"},
        {"--embed-dim", T2I_INT, &c.embed, "joint embedding size"},
        {"--act", T2I_STR, &c.act, "quick_gelu or gelu"},
        {"--vocab-size", T2I_INT, &c.vocab_size, "BPE vocabulary size learned from the captions (>= 514)"},
        {"--batch", T2I_INT, &c.batch, "pairs per step (the contrastive batch)"},
        {"--steps", T2I_LONG, &t.steps, "training steps"},
        {"--epochs", T2I_FLOAT, &t.epochs, "training length in epochs (instead of --steps; neither: 16 epochs)"},
        {"--lr", T2I_FLOAT, &c.lr, "peak learning rate (AdamW)"},
        {"--min-lr", T2I_FLOAT, &c.min_lr, "learning rate at the end of the cosine"},
        {"--warmup", T2I_LONG, &c.warmup, "linear warmup steps (-1: 5% of the run)"},
        {"--wd", T2I_FLOAT, &c.wd, "AdamW weight decay (not on gains, biases, embeddings, logit scale)"},
        {"--beta1", T2I_FLOAT, &c.beta1, "AdamW beta1"},
        {"--beta2", T2I_FLOAT, &c.beta2, "AdamW beta2"},
        {"--eps", T2I_FLOAT, &c.eps, "AdamW epsilon"},
        {"--clip-grad", T2I_FLOAT, &c.clip_grad, "clip the global gradient norm to this (0 = off)"},
        {"--flip", T2I_BOOL, &c.flip, "random horizontal flips (--flip=0 to disable)"},
        {"--crop-pad", T2I_INT, &c.crop_pad, "random shifts: zero-pad this many pixels, crop back at a random offset (0 = off)"},
        {"--erase", T2I_FLOAT, &c.erase, "random erasing: chance of blacking out one rectangle (2-33% of the image)"},
        {"--recaption", T2I_BOOL, &c.recaption, "FC32: redraw the caption template each time (--recaption=0: keep)"},
        {"--dup-positives", T2I_BOOL, &c.dup_pos,
         "pairs of a batch with the same caption (FC32: colour and class) are positives of each other"},
        {"--eval-every", T2I_INT, &t.sample_every, "FC32 zero-shot accuracy every N steps (0 = off)"},
        {"--eval-n", T2I_INT, &c.eval_n, "test items used by that evaluation"},
        T2I_TRAIN_CKPT_EVERY(t),
        T2I_TRAIN_LOG_EVERY(t),
        T2I_TRAIN_SEED(t),
        T2I_TRAIN_THREADS(t),
        T2I_TRAIN_OUT(t),
        {"--init", T2I_STR, &c.init, "start from this t2i CLIP checkpoint's weights and vocabulary (fine-tuning)"},
        T2I_TRAIN_RESUME(t),
        {"--stop-after", T2I_LONG, &t.stop_after, "save and stop after N steps of this session (0 = run to --steps)"},
    };
    t2i_cmd cmd = {"t2i clip train", "Train a CLIP (ViT + text transformer) contrastively on captioned images.",
                   "[options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "The default trains the toolkit's small CLIP on FC32 (fashion-captions) with a BPE\n"
                   "vocabulary learned from its captions (kept in the checkpoint). With --resume the\n"
                   "model and training options come from the checkpoint; --steps may extend the run."};
    return t2i_trainer_main(&t, &cmd, argc, argv);
}
