/* train.c - `t2i gan train`: the GAN training loop.
 *
 * One step = n_critic D updates, then one G update:
 *   D: x real batch; z ~ N(0, 1); fake = G(z) (no G gradient); D runs separately on real
 *      and on fake images (each with its own BatchNorm statistics, as two PyTorch calls);
 *      loss = L_real(D(x)) + L_fake(D(fake)) [+ w * L_fake(D(x, wrong condition))]; Adam.
 *   G: fresh z'; loss = L_gen(D(G(z'))) with D frozen (input gradients only); Adam.
 *   --augment: every image D sees (real, fake, and G's fakes) first goes through random
 *      colour/translation/cutout with fresh draws per batch (DiffAugment); G's gradient
 *      comes back through the augmentation's adjoint. --mbstd: D's trunk output gets a
 *      minibatch-stddev channel (groups of N images) and one more 3x3 conv (model.c).
 *   EMA: ema = decay * ema + (1 - decay) * G after every G update (from --ema-start).
 *   --clusters K (by default 10 for a DCGAN whose data has no labels or whose labels --cond
 *      none leaves unused, with 100 images per cluster or more): before the first step the images are split into K equal-sized balanced
 *      k-means clusters (data.h t2i_dataset_cluster) and the run is class-conditional on
 *      them. Sampling draws every class in equal shares, so every cluster - 1/K of the
 *      data - gets 1/K of the samples, where an unconditional G is free to pile its
 *      samples onto a few kinds of image.
 * Losses on logits l: non-saturating (BCE; real target 1 or the smoothed value), hinge
 * (relu(1 - l), relu(1 + l), -l) and least squares (0.5 (l-1)^2, 0.5 l^2, 0.5 (l-1)^2).
 *
 * The run folder (--out) holds config.json, metrics.jsonl, checkpoint.safetensors (G, D,
 * EMA, Adam moments, a caption GAN's word set of its captions (caption_words, text/words.h)
 * and the training state: step, RNG, data position), and samples/ with a
 * fixed-noise grid every --sample-every steps. --resume continues from the checkpoint:
 * with the same thread count the weights are bit-identical to an uninterrupted run.
 * Ctrl-C saves a checkpoint and exits with status 130; a NaN/Inf loss stops with an
 * error (the last checkpoint is kept); collapsing sample diversity prints a warning.
 * --init CKPT (anything but the scheme names pytorch and normal) fine-tunes: a new run
 * with fresh Adam moments whose G, D and EMA weights and architecture come from CKPT
 * (size flags must agree; class data must have CKPT's class count; a caption GAN keeps
 * its text encoder and learns the new captions' embeddings).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "data.h"
#include "dist.h"
#include "gan.h"
#include "words.h"
#include "image.h"
#include "optim.h"
#include "progress.h"
#include "trainer.h"
#include "text_cond.h"

#define GAN_DEFAULT_STEPS 12000 /* the Fashion-MNIST recipe: 12.8 epochs at batch 64 */
#define GAN_UNLABELLED_CLUSTERS 10 /* unlabelled data: pseudo-classes by default (--clusters) */

/* Mean pairwise L2 distance of N images (sample diversity). */
static double diversity(const float *x, int N, size_t item) {
    double s = 0.0;
    long pairs = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            double d = 0.0;
            for (size_t k = 0; k < item; k++) {
                double e = x[i * item + k] - x[j * item + k];
                d += e * e;
            }
            s += sqrt(d);
            pairs++;
        }
    return pairs ? s / pairs : 0.0;
}

/* Fixed noise (and labels) for the sample grids: n samples, 8 per row, class k on the rows
 * r with r % n_classes == k. */
static void fixed_inputs(const gan_model *m, uint64_t seed, float *z, float *c, int n, const gan_text_table *tt) {
    t2i_rng r;
    t2i_rng_seed(&r, seed ^ 0xf12ed0000ull);
    t2i_rng_fill_normal(&r, z, (size_t)n * m->cfg.z_dim, 0.0f, 1.0f);
    if (tt && tt->n > 0) {
        /* one caption per row, spread over the sorted distinct captions */
        for (int i = 0; i < n; i++) {
            int k = (int)((long)((i / 8) * 37 + 5) % tt->n);
            memcpy(c + (size_t)i * tt->dim, tt->emb + (size_t)k * tt->dim, (size_t)tt->dim * sizeof(float));
        }
    } else if (m->cfg.n_classes > 0) {
        int lab[256];
        for (int i = 0; i < n; i++) lab[i] = (i / 8) % m->cfg.n_classes;
        gan_onehot(c, lab, n, m->cfg.n_classes);
    }
}

/* The command's own part of the run (t2i_trainer holds the common one). */
typedef struct {
    /* flags of a new run (with --resume, the checkpoint's config and options count) */
    const char *data, *arch, *loss, *dnorm, *init, *cond, *text_enc, *vocab, *augment;
    int res, channels, z_dim, g_width, d_width, depth, sn, mbstd, batch, n_critic, flip, clusters;
    float lr_g, lr_d, beta1, beta2, smooth, ema, mismatch;
    long ema_start;
    /* options and state saved in the checkpoint, besides the trainer's */
    gan_train_opts o;
    char loss_name[16], aug_name[64];
    long loader_epoch, opt_g_step, opt_d_step;
    int loader_pos;
    /* model, data, optimizers and buffers */
    gan_config cfg;
    gan_model m;
    gan_text_table tt; /* caption -> condition, for text-conditioned GANs */
    t2i_dataset ds;
    t2i_loader L;
    nn_optim og, od;
    nn_arena arena;
    int NF; /* fixed samples of the grids */
    size_t item;
    float *x, *z, *c, *cw, *fz, *fc;
    int *labels;
    const char **caps;
    double real_div;
    gan_step_stats stats;
} gan_trainer;

/* --init names a checkpoint to fine-tune from unless it is one of the initialisation
 * schemes of a new model. */
static int init_from_ckpt(const gan_trainer *g) { return strcmp(g->init, "pytorch") != 0 && strcmp(g->init, "normal") != 0; }

static int gan_tr_check_flags(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    if (t->resume && init_from_ckpt(g))
        return t2i_fail("gan train: --init CKPT starts a new run; --resume continues the one in --out"), 2;
    /* the flags alone, before any data loads (the config check repeats the sizes' bounds) */
    if (t2i_check_range_i("--ema-start", g->ema_start, 0, 1000000000) ||
        t2i_check_range_i("--seed", t->seed_arg, 0, LONG_MAX) || t2i_check_range_i("--z-dim", g->z_dim, 1, 4096) ||
        t2i_check_range_i("--g-width", g->g_width, 4, 1024) || t2i_check_range_i("--d-width", g->d_width, 4, 1024) ||
        t2i_check_range_i("--depth", g->depth, 0, 4) || t2i_check_range_i("--mbstd", g->mbstd, 0, 64))
        return 2;
    if (g->res != 0 && g->res != 28 && g->res != 32 && g->res != 64 && g->res != 128)
        return t2i_fail("--res must be 28, 32, 64 or 128 (0: the data's own), got %d", g->res), 2;
    if (g->channels != 0 && g->channels != 1 && g->channels != 3)
        return t2i_fail("--channels must be 1 or 3 (0: the data's own), got %d", g->channels), 2;
    return 0;
}

static int gan_tr_load(void *self, const char *path, char **state_json) {
    gan_trainer *g = self;
    if (gan_load(&g->m, path, 1, state_json) != 0) return -1;
    g->cfg = g->m.cfg;
    return 0;
}

static int gan_tr_check_state(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    (void)t;
    if (gan_loss_parse(g->loss_name, &g->o.loss) != 0) return t2i_error_set("training state: bad 'loss'");
    if ((g->o.augment = gan_augment_parse(g->aug_name)) < 0) return t2i_error_set("training state: bad 'augment'");
    return 0;
}

/* A new run's options from the flags. */
static int new_opts(gan_trainer *g, t2i_trainer *t) {
    gan_train_opts *o = &g->o;
    if (gan_loss_parse(g->loss, &o->loss)) return t2i_fail("--loss must be ns, hinge or ls, got '%s'", g->loss), 2;
    if (t2i_check_range_f("--lr-g", g->lr_g, NN_LR_MIN, NN_LR_MAX) ||
        t2i_check_range_f("--lr-d", g->lr_d, NN_LR_MIN, NN_LR_MAX) ||
        t2i_check_range_f("--beta1", g->beta1, 0, NN_BETA1_MAX) ||
        t2i_check_range_f("--beta2", g->beta2, 0, NN_BETA2_MAX) || t2i_check_range_i("--n-critic", g->n_critic, 1, 20) ||
        t2i_check_range_f("--label-smooth", g->smooth, 0.5, 1) || t2i_check_range_f("--ema", g->ema, 0, 0.99999) ||
        t2i_check_range_f("--mismatch", g->mismatch, 0, 10) || t2i_check_range_i("--batch", g->batch, 2, 4096))
        return 2;
    o->lr_g = g->lr_g, o->lr_d = g->lr_d, o->beta1 = g->beta1, o->beta2 = g->beta2, o->n_critic = g->n_critic;
    o->smooth = g->smooth, o->ema = g->ema, o->ema_start = g->ema_start, o->mismatch = g->mismatch;
    o->batch = g->batch, o->flip = g->flip, o->seed = t->seed;
    snprintf(g->loss_name, sizeof g->loss_name, "%s", gan_loss_name(o->loss));
    if ((o->augment = gan_augment_parse(g->augment)) < 0)
        return t2i_fail("--augment must be none or a comma list of color, translation, cutout, got '%s'", g->augment), 2;
    gan_augment_name(o->augment, g->aug_name, sizeof g->aug_name);
    if (strcmp(g->cond, "class") == 0) o->cond_classes = 1;
    else if (strcmp(g->cond, "auto") == 0) o->cond_classes = -1; /* decided once the data is open */
    else if (strcmp(g->cond, "none") != 0) return t2i_fail("--cond must be none, class or auto, got '%s'", g->cond), 2;
    if (t2i_check_range_i("--clusters", g->clusters, 0, 1000)) return 2;
    if (g->clusters == 1) return t2i_fail("--clusters must be 0 (none) or at least 2, got 1"), 2;
    if (strlen(g->data) >= sizeof o->data) return t2i_fail("--data: path too long"), 2;
    strcpy(o->data, g->data);
    return 0;
}

/* --init CKPT: the model (G, D, EMA) and its architecture from a training checkpoint; an
 * architecture flag that asks for another is refused. */
static int init_model(gan_trainer *g, t2i_trainer *t) {
    if (gan_load(&g->m, g->init, 0, NULL) != 0) return t2i_fail_err();
    g->cfg = g->m.cfg;
    const gan_config *c = &g->cfg;
    if (g->m.inference_only)
        return t2i_fail("%s is an inference copy without the discriminator: fine-tune from a training checkpoint",
                        g->init);
    struct {
        const char *flag;
        int want, have;
    } ints[] = {{"--res", g->res, c->res},           {"--channels", g->channels, c->channels},
                {"--z-dim", g->z_dim, c->z_dim},     {"--g-width", g->g_width, c->g_width},
                {"--d-width", g->d_width, c->d_width}, {"--depth", g->depth, c->depth},
                {"--sn", g->sn, c->d_sn}, {"--mbstd", g->mbstd, c->d_mbstd}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (t2i_flag_given(t->cmd, ints[i].flag) && ints[i].want != ints[i].have)
            return t2i_fail("gan train: %s %d does not match %s (%d); the architecture comes from --init", ints[i].flag,
                            ints[i].want, g->init, ints[i].have), 2;
    if (t2i_flag_given(t->cmd, "--arch") && strcmp(g->arch, c->preset) != 0)
        return t2i_fail("gan train: --arch %s does not match %s (%s)", g->arch, g->init, c->preset), 2;
    if (t2i_flag_given(t->cmd, "--d-norm") && (strcmp(g->dnorm, "none") == 0) != (c->d_norm == GAN_NORM_NONE))
        return t2i_fail("gan train: --d-norm %s does not match %s", g->dnorm, g->init), 2;
    if (t2i_flag_given(t->cmd, "--text-encoder") && strcmp(g->text_enc, c->text_encoder) != 0)
        return t2i_fail("gan train: --text-encoder %s does not match %s (%s)", g->text_enc, g->init,
                        c->text_encoder[0] ? c->text_encoder : "none"), 2;
    if (t2i_flag_given(t->cmd, "--cond") && strcmp(g->cond, "auto") != 0 && (strcmp(g->cond, "class") == 0) != (c->n_classes > 0))
        return t2i_fail("gan train: --cond %s does not match %s (%s)", g->cond, g->init,
                        c->n_classes > 0 ? "class-conditional" : "not class-conditional"), 2;
    g->o.cond_classes = c->n_classes > 0;
    if (c->text_encoder[0] && !t2i_flag_given(t->cmd, "--mismatch")) g->o.mismatch = 1.0f;
    printf("gan train: starting from %s (G, D and EMA weights); fresh optimizers\n", g->init);
    return 0;
}

/* A new run's model: the architecture flags and the data's shape (and the text encoder's
 * embedding size). */
static int new_model(gan_trainer *g, t2i_trainer *t) {
    if (init_from_ckpt(g)) {
        const t2i_dataset *ds = &g->ds;
        if (g->cfg.n_classes > 0 && (!ds->labels || ds->n_classes != g->cfg.n_classes))
            return t2i_fail("%s: %d classes, but %s conditions on %d", ds->source, ds->labels ? ds->n_classes : 0,
                            g->init, g->cfg.n_classes);
        if (g->m.caption_words && ds->captions) { /* it knows the words of both caption sets */
            t2i_wordset ws;
            t2i_wordset_init(&ws);
            if (t2i_wordset_parse(&ws, g->m.caption_words, g->init) == 0) {
                for (int i = 0; i < ds->n; i++) t2i_wordset_add_text(&ws, ds->captions[i]);
                t2i_wordset_finish(&ws);
                free(g->m.caption_words);
                g->m.caption_words = t2i_wordset_join(&ws);
            }
            t2i_wordset_free(&ws);
        }
        return 0;
    }
    gan_config *cfg = &g->cfg;
    const t2i_dataset *ds = &g->ds;
    int dcgan = strcmp(g->arch, "dcgan") == 0;
    if (strcmp(g->arch, "b1") == 0) gan_config_b1(cfg);
    else if (dcgan) gan_config_default(cfg);
    else return t2i_fail("--arch must be b1 or dcgan, got '%s'", g->arch);
    if (dcgan) {
        cfg->res = ds->H;
        if (!g->res && ds->H != 28 && ds->H != 32 && ds->H != 64 && ds->H != 128)
            return t2i_fail("%s: its first image is %dx%d, not a size the GAN has; pass --res 28, 32, 64 or 128 to "
                            "resize them",
                            ds->source, ds->W, ds->H);
        cfg->channels = ds->C;
        cfg->z_dim = g->z_dim, cfg->g_width = g->g_width, cfg->d_width = g->d_width, cfg->depth = g->depth;
        cfg->d_sn = g->sn, cfg->d_mbstd = g->mbstd;
        cfg->init_normal = strcmp(g->init, "normal") == 0;
        if (strcmp(g->init, "normal") && strcmp(g->init, "pytorch"))
            return t2i_fail("--init must be pytorch or normal, got '%s'", g->init);
        if (strcmp(g->dnorm, "none") == 0) cfg->d_norm = GAN_NORM_NONE;
        else if (strcmp(g->dnorm, "batch") != 0) return t2i_fail("--d-norm must be batch or none, got '%s'", g->dnorm);
    } else if (g->sn || strcmp(g->dnorm, "batch") || g->depth || g->mbstd) {
        return t2i_fail("--arch b1 is fixed (no --sn, --d-norm, --depth or --mbstd); use --arch dcgan");
    }
    gan_train_opts *o = &g->o;
    if (o->cond_classes < 0) /* auto: the data's classes, unless B1 or a text encoder decides */
        o->cond_classes = dcgan && !g->text_enc && ds->labels && ds->n_classes >= 2;
    if (o->cond_classes) {
        if (!ds->labels || ds->n_classes < 2)
            return t2i_fail("%s: --cond class needs labelled data (class folders or fashion-mnist)", ds->source);
        cfg->n_classes = ds->n_classes;
    }
    if (g->text_enc) {
        if (o->cond_classes) return t2i_fail("--text-encoder and --cond class exclude each other");
        if (strlen(g->text_enc) >= sizeof cfg->text_encoder || (g->vocab && strlen(g->vocab) >= sizeof cfg->text_vocab))
            return t2i_fail("--text-encoder/--vocab: path too long");
        strcpy(cfg->text_encoder, g->text_enc);
        strcpy(cfg->text_vocab, g->vocab ? g->vocab : "");
    }
    if (gan_config_check(cfg) != 0) return t2i_fail_err();
    if (cfg->text_encoder[0]) {
        /* the condition size comes from the encoder; the probe pins its identity */
        clip_model *clip = gan_text_encoder_load(cfg->text_encoder, cfg->text_vocab);
        if (!clip) return t2i_fail_err();
        cfg->cond_dim = clip_embed_dim(clip);
        cfg->n_probe = cfg->cond_dim <= 1024 ? cfg->cond_dim : 0;
        const char *probe = GAN_TEXT_PROBE;
        int prc = cfg->n_probe ? clip_embed_texts(clip, &probe, 1, cfg->text_probe) : 0;
        clip_free(clip);
        if (prc != 0 || gan_config_check(cfg) != 0) return t2i_fail_err();
        if (!t2i_flag_given(t->cmd, "--mismatch")) o->mismatch = 1.0f; /* matching-aware D by default */
    }
    t2i_rng init_rng = t2i_rng_split(&t->rng, 1);
    gan_model_build(&g->m, cfg, &init_rng);
    return 0;
}

/* A new run's pseudo-classes (o->clusters, 0 for none): --clusters K, or by default
 * GAN_UNLABELLED_CLUSTERS for a DCGAN whose data's labels go unused (--cond none, or data
 * without them) and that no text conditions, given at least 100 images per cluster. A run
 * fine-tuned from a class-conditional checkpoint on such data clusters it into as many. */
static int choose_clusters(gan_trainer *g, t2i_trainer *t, int from_ckpt) {
    gan_train_opts *o = &g->o;
    const t2i_dataset *ds = &g->ds;
    int given = t2i_flag_given(t->cmd, "--clusters");
    int labels = ds->labels && ds->n_classes >= 2;
    if (from_ckpt) {
        int want = g->cfg.n_classes > 0 && (!labels || strcmp(g->cond, "none") == 0) ? g->cfg.n_classes : 0;
        if (given && g->clusters != want)
            return t2i_fail("gan train: --clusters %d does not match %s (%d classes)", g->clusters, g->init,
                            g->cfg.n_classes), 2;
        o->clusters = want;
    } else {
        int dcgan = strcmp(g->arch, "dcgan") == 0, used = o->cond_classes == 1 || (o->cond_classes < 0 && labels);
        int eligible = dcgan && !g->text_enc && !used;
        if (given && g->clusters && !eligible)
            return t2i_fail("--clusters: only for --arch dcgan without --text-encoder, on data whose labels are not "
                            "used (--cond none, or data without them)"), 2;
        o->clusters = given                                                 ? g->clusters
                      : eligible && ds->n >= 100 * GAN_UNLABELLED_CLUSTERS ? GAN_UNLABELLED_CLUSTERS
                                                                           : 0;
    }
    if (o->clusters > ds->n) return t2i_fail("%s: %d images, fewer than --clusters %d", ds->source, ds->n, o->clusters), 2;
    if (o->clusters) o->cond_classes = 1;
    return 0;
}

static int gan_tr_setup(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    int rc;
    if (!t->resume && (rc = new_opts(g, t)) != 0) return rc;
    /* data: its native shape decides resolution/channels unless given */
    int from_ckpt = !t->resume && init_from_ckpt(g);
    if (from_ckpt && (rc = init_model(g, t)) != 0) return rc;
    int want_res = t->resume || from_ckpt ? g->cfg.res : g->res, want_c = t->resume || from_ckpt ? g->cfg.channels : g->channels;
    if (strcmp(g->arch, "b1") == 0 && !t->resume && !from_ckpt) want_res = 28, want_c = 1;
    if (t2i_dataset_open(&g->ds, g->o.data, want_c, want_res, want_res) != 0) return t2i_fail_err();
    if (g->ds.n < g->o.batch)
        return t2i_fail("%s: %d images, fewer than one batch of %d", g->ds.source, g->ds.n, g->o.batch);
    if (!t->resume && (rc = choose_clusters(g, t, from_ckpt)) != 0) return rc;
    if (g->o.clusters) {
        /* the data's own labels (if any) give way to the clusters; a resumed run recomputes
         * the same ones from the seed */
        double t0 = t2i_now();
        if (t2i_dataset_cluster(&g->ds, g->o.clusters, g->o.seed) != 0) return t2i_fail_err();
        printf("gan train: conditioned on %d balanced k-means clusters of the images (%.1f s)\n", g->o.clusters,
               t2i_now() - t0);
    }
    if (!t->resume && (rc = new_model(g, t)) != 0) return rc;
    const gan_config *cfg = &g->cfg;
    if (cfg->text_encoder[0]) {
        if (!g->ds.captions)
            return t2i_fail("%s: --text-encoder needs captioned data (fashion-captions, or a folder with metadata.jsonl)",
                            g->ds.source);
        clip_model *clip = gan_text_encoder_load(cfg->text_encoder, cfg->text_vocab);
        if (!clip) return t2i_fail_err();
        int trc = clip_check_embed_dim(clip, cfg->cond_dim, "gan train --text-encoder");
        if (trc == 0) trc = gan_text_table_build(&g->tt, clip, g->ds.captions, g->ds.n);
        clip_free(clip);
        if (trc != 0) return t2i_fail_err();
        /* the word set of the captions (a resumed run keeps its checkpoint's; an older one gets it now) */
        if (!g->m.caption_words &&
            !(g->m.caption_words = t2i_words_of_texts((const char *const *)g->ds.captions, (size_t)g->ds.n)))
            fprintf(stderr, "t2i: warning: the captions' word set is over %zu MB: not stored (generate cannot warn "
                            "about unknown words)\n", T2I_WORDS_META_MAX >> 20);
        printf("gan train: conditioned on %d distinct captions embedded by %s (%d-d)\n", g->tt.n, cfg->text_encoder,
               g->tt.dim);
    }
    if (g->ds.C != cfg->channels || g->ds.H != cfg->res)
        return t2i_fail("%s: images are %dx%dx%d, the model expects %dx%dx%d", g->ds.source, g->ds.C, g->ds.H, g->ds.W,
                        cfg->channels, cfg->res, cfg->res);
    if ((rc = t2i_trainer_split(t, "--batch", g->o.batch)) != 0) return rc;
    int slice = t->size > 1 ? t->hi - t->lo : g->o.batch;
    if (cfg->d_mbstd && slice % T2I_MIN(cfg->d_mbstd, slice) != 0)
        return t2i_fail("gan train: a batch of %d per process is not whole groups of %d for --mbstd", slice,
                        cfg->d_mbstd), 2;
    g->o.aug_rng = &t->rng;
    /* "augment" and "clusters" are the options' last fields: unset, they are not written
     * (from the end), so runs without them record their options as before they existed
     * (absent reads as none) */
    if (!g->o.clusters && strcmp(t->opts[t->nopts - 1].key, "clusters") == 0) t->nopts--;
    if (!g->o.augment && strcmp(t->opts[t->nopts - 1].key, "augment") == 0) t->nopts--;
    t->per_epoch = g->ds.n / g->o.batch;
    t->epoch_div = g->o.n_critic;
    t->default_steps = GAN_DEFAULT_STEPS;
    return 0;
}

static char *gan_tr_config(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    char *tail = t2i_trainer_init_tail(!t->resume && init_from_ckpt(g) ? g->init : NULL);
    char *full = t2i_trainer_config(t, gan_config_to_json(&g->cfg), t->target, NULL, tail);
    free(tail);
    return full;
}

static int gan_tr_start(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    const gan_config *cfg = &g->cfg;
    const gan_train_opts *o = &g->o;
    t2i_loader_init(&g->L, &g->ds, o->batch, 1, o->seed);
    g->L.drop_last = 1;
    g->L.flip = o->flip;
    if (t->size > 1) g->L.part_lo = t->lo, g->L.part_hi = t->hi; /* decode this rank's rows only */
    if (t->resume && t2i_loader_seek(&g->L, g->loader_epoch, g->loader_pos) != 0)
        return t2i_fail("%s: %s", t->ckpt_path, t2i_error_msg());
    g->og = nn_adam(o->lr_g, o->beta1, o->beta2, 1e-8f, 0.0f);
    g->od = nn_adam(o->lr_d, o->beta1, o->beta2, 1e-8f, 0.0f);
    g->og.step = g->opt_g_step, g->od.step = g->opt_d_step;

    int B = o->batch, zd = cfg->z_dim, cs = gan_cond_size(cfg);
    g->item = (size_t)cfg->channels * cfg->res * cfg->res;
    g->x = t2i_malloc_aligned((size_t)B * g->item * sizeof(float));
    g->z = t2i_malloc((size_t)B * zd * sizeof(float));
    g->c = cs ? t2i_malloc((size_t)B * cs * sizeof(float)) : NULL;
    g->cw = cs ? t2i_malloc((size_t)B * cs * sizeof(float)) : NULL;
    g->labels = t2i_malloc((size_t)B * sizeof(int));
    /* 8 samples per row; a class-conditional model gets a row per class (up to 32) */
    g->NF = 8 * (!cfg->text_encoder[0] && cfg->n_classes > 8 ? T2I_MIN(cfg->n_classes, 32) : 8);
    g->fz = t2i_malloc((size_t)g->NF * zd * sizeof(float));
    g->fc = cs ? t2i_malloc((size_t)g->NF * cs * sizeof(float)) : NULL;
    fixed_inputs(&g->m, o->seed, g->fz, g->fc, g->NF, cfg->text_encoder[0] ? &g->tt : NULL);
    g->caps = t2i_malloc((size_t)B * sizeof(char *));
    g->real_div = -1.0;

    printf("gan train: %s, %d images %dx%dx%d, arch %s, %s loss, batch %d, steps %ld (%.2f epochs), G %zu / D %zu "
           "parameters, %d threads\n",
           g->ds.source, g->ds.n, cfg->channels, cfg->res, cfg->res, cfg->preset, gan_loss_name(o->loss), B, t->target,
           (double)t->target * o->n_critic / t->per_epoch, nn_params_count(&g->m.gp, 1), nn_params_count(&g->m.dp, 1),
           t2i_get_threads());
    return 0;
}

/* n_critic D updates, then one G update and the EMA. Under MPI every rank loads the labels of
 * the whole global batch and draws its noise, then trains on its rows [lo, hi). */
static int gan_tr_step(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    const gan_train_opts *o = &g->o;
    int B = o->batch, zd = g->cfg.z_dim, cs = gan_cond_size(&g->cfg);
    int lo = t->size > 1 ? t->lo : 0, b = t->size > 1 ? t->hi - t->lo : B;
    float *x = g->x + (size_t)lo * g->item, *z = g->z + (size_t)lo * zd;
    float *c = cs ? g->c + (size_t)lo * cs : NULL, *cw = cs ? g->cw + (size_t)lo * cs : NULL;
    for (int k = 0; k < o->n_critic; k++) {
        /* the diversity of the data is measured on the first batch, decoded whole on every rank */
        int part = g->L.part_hi;
        if (g->real_div < 0) g->L.part_hi = 0;
        int got = t2i_loader_next(&g->L, g->x, g->labels, g->caps, NULL);
        if (got == 0) got = t2i_loader_next(&g->L, g->x, g->labels, g->caps, NULL);
        g->L.part_hi = part;
        if (got < 0) return t2i_fail_err(), T2I_STEP_FAILED;
        if (g->real_div < 0) g->real_div = diversity(g->x, B < 32 ? B : 32, g->item);
        if (g->tt.n) {
            for (int i = 0; i < B; i++) {
                const float *e = g->caps[i] ? gan_text_lookup(&g->tt, g->caps[i]) : NULL;
                T2I_ASSERT(e); /* every caption was embedded up front */
                memcpy(g->c + (size_t)i * cs, e, (size_t)cs * sizeof(float));
            }
        } else if (cs) {
            gan_onehot(g->c, g->labels, B, cs);
        }
        if (cs && o->mismatch > 0) gan_mismatched_conds(g->cw, g->c, B, cs);
        t2i_rng_fill_normal(&t->rng, g->z, (size_t)B * zd, 0.0f, 1.0f);
        gan_d_step(&g->m, &g->od, &g->arena, o, x, z, c, cw, b, &g->stats);
    }
    t2i_rng_fill_normal(&t->rng, g->z, (size_t)B * zd, 0.0f, 1.0f);
    gan_g_step(&g->m, &g->og, &g->arena, o, z, c, b, &g->stats);
    if (o->ema > 0 && t->step >= o->ema_start) nn_ema_update(&g->m.ep, &g->m.gp, o->ema);
    else nn_params_copy_values(&g->m.ep, &g->m.gp);
    if (t->size > 1) {
        /* the global batch's losses: the mean of the ranks' means over equal slices */
        gan_step_stats *s = &g->stats;
        double v[4] = {s->loss_d, s->loss_g, s->d_real, s->d_fake};
        t2i_dist_mean(v, 4);
        s->loss_d = (float)v[0], s->loss_g = (float)v[1], s->d_real = (float)v[2], s->d_fake = (float)v[3];
    }
    if (t2i_trainer_nonfinite(t, "D", g->stats.loss_d) || t2i_trainer_nonfinite(t, "G", g->stats.loss_g))
        return T2I_STEP_NONFINITE;
    return T2I_STEP_OK;
}

static int gan_tr_metrics(void *self, t2i_trainer *t, char *buf, size_t n) {
    gan_trainer *g = self;
    const gan_step_stats *s = &g->stats;
    double dt = t->step_seconds;
    return snprintf(buf, n,
                    "{\"step\":%ld,\"epoch\":%.3f,\"loss_d\":%.5f,\"loss_g\":%.5f,\"d_real\":%.4f,\"d_fake\":%.4f,"
                    "\"step_ms\":%.2f,\"images_per_s\":%.1f}",
                    t->step, (double)g->L.epoch + (double)g->L.pos / g->ds.n, s->loss_d, s->loss_g, s->d_real,
                    s->d_fake, dt * 1e3, g->o.batch * (g->o.n_critic + 1) / dt);
}

static void gan_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    gan_trainer *g = self;
    const gan_step_stats *s = &g->stats;
    (void)t;
    if (last) snprintf(buf, n, "D %.3f G %.3f", s->loss_d, s->loss_g);
    else snprintf(buf, n, "D %.3f G %.3f D(x) %.2f D(G(z)) %.2f", s->loss_d, s->loss_g, s->d_real, s->d_fake);
}

/* A grid of the EMA generator on the fixed inputs, and its diversity against the data's. */
static int gan_tr_sample(void *self, t2i_trainer *t) {
    gan_trainer *g = self;
    const gan_config *cfg = &g->cfg;
    nn_arena_reset(&g->arena);
    nn_tape te;
    memset(&te, 0, sizeof te);
    float *imgs = gan_g_forward(&g->m, &g->m.ema, &te, &g->arena, g->fz, g->fc, g->NF, 0);
    char *p = t2i_trainer_sample_path(t), *pl = t2i_trainer_latest_path(t);
    if (t2i_save_grid(p, imgs, g->NF, cfg->channels, cfg->res, cfg->res, 8) != 0 ||
        t2i_save_grid(pl, imgs, g->NF, cfg->channels, cfg->res, cfg->res, 8) != 0)
        t2i_fail_err();
    free(p), free(pl);
    double div = diversity(imgs, 32, g->item);
    char line[256];
    snprintf(line, sizeof line, "{\"step\":%ld,\"sample_diversity\":%.4f,\"real_diversity\":%.4f}", t->step, div,
             g->real_div);
    t2i_run_metrics(&t->run, line);
    if (g->real_div > 0 && div < 0.25 * g->real_div && t->step >= 1000)
        fprintf(stderr,
                "t2i: warning: step %ld: samples are much less diverse than the data (mean distance %.2f vs %.2f): "
                "possible mode collapse\n",
                t->step, div, g->real_div);
    return 0;
}

static void gan_tr_sync(void *self) {
    gan_trainer *g = self;
    g->loader_epoch = g->L.epoch, g->loader_pos = g->L.pos, g->opt_g_step = g->og.step, g->opt_d_step = g->od.step;
}

static int gan_tr_save(void *self, const char *path, const char *state_json) {
    gan_trainer *g = self;
    return gan_save(&g->m, path, state_json, 1, 0);
}

static void gan_tr_finish(void *self, t2i_trainer *t) {
    (void)self;
    printf("gan train: %ld steps in %.1f s; checkpoint %s, samples in %s\n", t->step - t->start_step, t->elapsed,
           t->ckpt_path, t->samples_dir);
}

static void gan_tr_release(void *self) {
    gan_trainer *g = self;
    nn_arena_free(&g->arena);
    t2i_free(g->x);
    free(g->z), free(g->c), free(g->cw), free(g->labels), free(g->fz), free(g->fc), free(g->caps);
    t2i_loader_free(&g->L);
    gan_text_table_free(&g->tt);
    gan_model_free(&g->m);
    t2i_dataset_free(&g->ds);
}

static const t2i_trainer_ops gan_ops = {
    .check_flags = gan_tr_check_flags,
    .load = gan_tr_load,
    .check_state = gan_tr_check_state,
    .setup = gan_tr_setup,
    .config = gan_tr_config,
    .start = gan_tr_start,
    .step = gan_tr_step,
    .metrics = gan_tr_metrics,
    .progress = gan_tr_progress,
    .sample = gan_tr_sample,
    .sync = gan_tr_sync,
    .save = gan_tr_save,
    .finish = gan_tr_finish,
    .release = gan_tr_release,
};

int gan_cmd_train(int argc, char **argv) {
    /* defaults: the toolkit's Fashion-MNIST recipe */
    gan_trainer g = {.data = "fashion-mnist", .arch = "dcgan", .loss = "ns", .dnorm = "batch", .init = "pytorch",
                     .cond = "auto", .augment = "none", .z_dim = 100, .g_width = 32, .d_width = 32, .batch = 64, .n_critic = 1,
                     .lr_g = 2e-4f, .lr_d = 2e-4f, .beta1 = 0.5f, .beta2 = 0.999f, .smooth = 1.0f, .ema = 0.999f,
                     .ema_start = 1000};
    nn_arena_init(&g.arena);
    t2i_trainer t;
    t2i_trainer_init(&t, &gan_ops, &g, "gan");
    t.out = "runs/gan", t.seed_arg = 1, t.sample_every = 500, t.ckpt_every = 1000, t.log_every = 50;
    t.every_max = 1000000000, t.steps_max = 1000000000;
    t.samples = "samples";
    gan_train_opts *o = &g.o;
    nn_field sf[] = {NN_F_LONG("step", t.step),          NN_F_LONG("target", t.target),
                     NN_F_RNG("rng", t.rng),             NN_F_LONG("loader_epoch", g.loader_epoch),
                     NN_F_INT("loader_pos", g.loader_pos), NN_F_LONG("opt_g_step", g.opt_g_step),
                     NN_F_LONG("opt_d_step", g.opt_d_step)};
    nn_field of[] = {NN_F_STR("data", o->data),
                     NN_F_STR("loss", g.loss_name),
                     NN_F_FLOAT_IN("lr_g", o->lr_g, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("lr_d", o->lr_d, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("beta1", o->beta1, 0, NN_BETA1_MAX),
                     NN_F_FLOAT_IN("beta2", o->beta2, 0, NN_BETA2_MAX),
                     NN_F_INT_IN("n_critic", o->n_critic, 1, 20),
                     NN_F_FLOAT_IN("label_smooth", o->smooth, 0.5, 1),
                     NN_F_FLOAT_IN("ema", o->ema, 0, 0.99999),
                     NN_F_LONG_IN("ema_start", o->ema_start, -1e15, 1e15),
                     NN_F_FLOAT_IN("mismatch", o->mismatch, 0, 10),
                     NN_F_INT_IN("batch", o->batch, 2, 4096),
                     NN_F_BOOL("flip", o->flip),
                     NN_F_BOOL("cond_classes", o->cond_classes),
                     NN_F_SEED("seed", o->seed),
                     NN_F_STR_DEF("augment", g.aug_name),
                     NN_F_INT_DEF_IN("clusters", o->clusters, 0, 0, 1000)};
    t.state = sf, t.nstate = NN_NFIELDS(sf), t.opts = of, t.nopts = NN_NFIELDS(of);
    t2i_flag flags[] = {
        {"--data", T2I_STR, &g.data, "fashion-mnist, fashion-captions, or a folder (images, class folders)"},
        {"--arch", T2I_STR, &g.arch, "b1 (bench/README.md B1 exactly) or dcgan"},
        {"--res", T2I_INT, &g.res, "resolution 28, 32, 64 or 128 (0: the data's own, else 64)"},
        {"--channels", T2I_INT, &g.channels, "1 or 3 (0: the data's own)"},
        {"--z-dim", T2I_INT, &g.z_dim, "noise dimension"},
        {"--g-width", T2I_INT, &g.g_width, "G base width"},
        {"--d-width", T2I_INT, &g.d_width, "D base width"},
        {"--depth", T2I_INT, &g.depth, "extra 3x3 convolutions per stage"},
        {"--cond", T2I_STR, &g.cond, "none (the data's labels go unused: it counts as unlabelled), class (condition on "
                                     "the data's class labels) or auto (class if labelled)"},
        {"--clusters", T2I_INT, &g.clusters, "unlabelled data: condition on K equal-sized k-means clusters of the "
                                             "images (0: an unconditional GAN; default 10 for a dcgan with 100 images "
                                             "per cluster or more)"},
        {"--text-encoder", T2I_STR, &g.text_enc, "CLIP checkpoint: condition on the captions' text embeddings"},
        {"--vocab", T2I_STR, &g.vocab, "BPE vocabulary for the text encoder (if it has none of its own)"},
        {"--loss", T2I_STR, &g.loss, "ns (non-saturating), hinge or ls (least squares)"},
        {"--sn", T2I_BOOL, &g.sn, "spectral normalisation in D"},
        {"--mbstd", T2I_INT, &g.mbstd, "minibatch-stddev channel in D over groups of N images, then a 3x3 conv (0: none)"},
        {"--augment", T2I_STR, &g.augment, "augment every image D sees, real and generated, differentiably: none or a "
                                           "comma list of color, translation, cutout (DiffAugment)"},
        {"--d-norm", T2I_STR, &g.dnorm, "batch or none (normalisation in D)"},
        {"--init", T2I_STR, &g.init, "pytorch (default inits), normal (N(0, 0.02), DCGAN), or a gan checkpoint to "
                                     "fine-tune from (its weights and architecture, fresh optimizers)"},
        {"--lr-g", T2I_FLOAT, &g.lr_g, "G learning rate (Adam)"},
        {"--lr-d", T2I_FLOAT, &g.lr_d, "D learning rate (Adam)"},
        {"--beta1", T2I_FLOAT, &g.beta1, "Adam beta1"},
        {"--beta2", T2I_FLOAT, &g.beta2, "Adam beta2"},
        {"--n-critic", T2I_INT, &g.n_critic, "D updates per G update"},
        {"--label-smooth", T2I_FLOAT, &g.smooth, "real label for D (one-sided smoothing, ns loss; 1 = off)"},
        {"--ema", T2I_FLOAT, &g.ema, "EMA decay of G's weights for sampling (0 = off)"},
        {"--ema-start", T2I_LONG, &g.ema_start, "step at which the EMA starts averaging (copies G before)"},
        {"--mismatch", T2I_FLOAT, &g.mismatch, "weight of mismatched-condition negatives for D"},
        {"--batch", T2I_INT, &g.batch, "batch size"},
        {"--flip", T2I_BOOL, &g.flip, "random horizontal flips"},
        {"--steps", T2I_LONG, &t.steps, "training steps (G updates; 0: 12000 unless --epochs)"},
        {"--epochs", T2I_FLOAT, &t.epochs, "training length in epochs (instead of --steps)"},
        {"--sample-every", T2I_INT, &t.sample_every, "write a sample grid every N steps"},
        T2I_TRAIN_FLAGS(t),
    };
    t2i_cmd cmd = {"t2i gan train", "Train a GAN (DCGAN family) on images.", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "The defaults are the toolkit's Fashion-MNIST recipe: a DCGAN 32 wide in G and D,\n"
                   "conditioned on the classes when the data has them (--cond auto), EMA of G from step\n"
                   "1000, 12000 steps (8-33 min on 2 cores, by CPU; FID in bench/RESULTS.md). Fashion-MNIST is\n"
                   "read from Debian's dataset-fashion-mnist. Without labels (or with --cond none) the\n"
                   "recipe conditions on 10 equal-sized k-means clusters of the images instead\n"
                   "(--clusters; FID in bench/RESULTS.md). With --resume, the architecture and training\n"
                   "options come from the checkpoint; --steps/--epochs may extend the run."};
    return t2i_trainer_main(&t, &cmd, argc, argv);
}
