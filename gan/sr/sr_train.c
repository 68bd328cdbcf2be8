/* sr_train.c - SR training data and `t2i sr train` (the steps are sr_step.c's).
 *
 * Data: see sr.h (held-out rule, crops, LR synthesis). One RNG draw picks the crop
 * uniformly among all crop positions of all training photos (so large photos are seen
 * in proportion to their area), a second picks one of the 8 symmetries of the square.
 *
 * Run folder (--out): config.json (with several sources, --package, a held-out source or
 * --degrade mix also "train_files" and "heldout_files", the exact lists, which --resume
 * requires unchanged; a one-folder bicubic run writes the old keys only), metrics.jsonl (training lines every --log-every steps;
 * validation lines with the EMA's PSNR and bicubic's on fixed held-out crops),
 * checkpoint.safetensors (G, D, EMA, both Adam states, RNG, step: resumable),
 * l1.safetensors (inference checkpoint of the EMA when phase 1 ends; with --steps 0 the
 * model phase 2 starts from, e.g. given by --init-from), samples/ (bicubic |
 * EMA output | original on two validation crops). --resume continues bit-identically
 * with the same thread count; --steps / --gan-steps given with --resume extend the run
 * (phase 1 only before phase 2 has started). Ctrl-C saves and exits 130; --stop-after N
 * saves and exits 0 after step N (a time-boxed run, and the resume test); a NaN or Inf
 * loss stops with an error and keeps the last checkpoint. --init CKPT (anything but the
 * scheme names interp and pytorch) fine-tunes: a new run with fresh optimizers whose
 * architecture and G, D and EMA weights come from CKPT (an inference checkpoint gives G
 * and the EMA, D starts fresh); size flags must agree; not with --init-from.
 *
 * Phase switch (at the first step of phase 2, so it happens identically after a resume):
 * G := EMA (the saved L1 model), G's Adam moments and step count restart from zero, and
 * the EMA's warm-up counter restarts so that the EMA follows the fine-tuned G.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "dist.h"
#include "image.h"
#include "ops.h"
#include "optim.h"
#include "progress.h"
#include "trainer.h"
#include "image_quality.h"
#include "sr.h"
#include "sr_photos.h"

#define SR_DEFAULT_DATA "/usr/share/backgrounds/mate/nature"

/* ---------------------------------------------------------------- the trainer */

typedef struct {
    char data[512];                                            /* --data roots, colon-separated */
    char packages[1024], holdout_packages[512], holdout_dirs[1024]; /* colon-separated; "" = none */
    int degrade;                                               /* sr_degrade */
    int batch;
    float lr, lr_min, lr_gan, lr_d, beta1, beta2;
    long warmup;
    int focus;
    float l1_weight, adv_weight, ema;
    float fm_weight; /* feature matching (0: none; written to the options only when set) */
    int d_warmup;    /* phase 2's first steps that train D alone (likewise) */
    int d_steps;     /* after them, D steps per G step (likewise; 1 = one each) */
    sr_gan_loss gan_loss;
} sr_train_opts;

/* The command's own part of the run (t2i_trainer holds the common one). */
typedef struct {
    /* flags (a new run's; with --resume only the lengths) */
    t2i_strs data, packages, holdout_packages, holdout_dirs;
    const char *preset, *gan_loss, *init, *init_from, *degrade;
    int focus, scale, width, blocks, crop, batch, d_width, d_sn;
    long steps, gan_steps, warmup;
    int d_warmup, d_steps;
    float lr, lr_min, lr_gan, lr_d, beta1, beta2, l1_weight, adv_weight, fm_weight, ema;
    /* options and state saved in the checkpoint, besides the trainer's */
    sr_train_opts o;
    char loss_name[8];
    long phase1, phase2; /* planned steps of each phase */
    long opt_g_step, opt_d_step, ema_t;
    /* model, data, optimizers and buffers */
    sr_model m;
    int have_model;
    sr_model src; /* --init CKPT's model until its weights are copied */
    int have_src;
    char *l1_path;
    sr_filelist fl;
    int nopts_base; /* the options written when the data options and --fm-weight are the defaults (old runs' table) */
    photo_set train, held;
    int nheld, val_from_train;
    val_set val;
    nn_optim og, od;
    nn_schedule sched;
    nn_arena arena;
    float *hr, *lrb, *cand;
    int phase;
    float lr_now;
    sr_step_stats stats;
    double last_val;
} sr_trainer;

static int sr_tr_load(void *self, const char *path, char **state_json) {
    sr_trainer *g = self;
    if (sr_load(&g->m, path, 1, state_json) != 0) return -1;
    g->have_model = 1;
    return 0;
}

static int sr_tr_check_state(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    (void)t;
    if (strcmp(g->loss_name, "ragan") != 0 && strcmp(g->loss_name, "ns") != 0)
        return t2i_error_set("training state: bad 'gan_loss'");
    g->o.gan_loss = strcmp(g->loss_name, "ns") == 0 ? SR_GAN_NS : SR_GAN_RAGAN;
    return 0;
}

/* --steps / --gan-steps given with --resume extend the run (phase 1 only before phase 2 starts). */
static int resumed_lengths(sr_trainer *g, t2i_trainer *t) {
    if (g->steps >= 0) {
        if (g->steps != g->phase1 && t->step > g->phase1)
            return t2i_fail("--steps: phase 2 has started at step %ld; phase 1 cannot change length", g->phase1);
        if (g->steps < t->step && g->steps != g->phase1)
            return t2i_fail("--steps %ld is before the checkpoint's step %ld", g->steps, t->step);
        g->phase1 = g->steps;
    }
    if (g->gan_steps >= 0) g->phase2 = g->gan_steps;
    if (g->phase1 + g->phase2 < t->step)
        return t2i_fail("--steps + --gan-steps (%ld) is before the checkpoint's step %ld", g->phase1 + g->phase2, t->step);
    return 0;
}

/* A new run's model and options from the flags. */
/* --init names a checkpoint to fine-tune from unless it is one of the initialisation
 * schemes of a new model. */
static int init_from_ckpt(const sr_trainer *g) { return strcmp(g->init, "interp") != 0 && strcmp(g->init, "pytorch") != 0; }

static int sr_tr_check_flags(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    if (t->resume && init_from_ckpt(g))
        return t2i_fail("sr train: --init CKPT starts a new run; --resume continues the one in --out"), 2;
    if (init_from_ckpt(g) && g->init_from)
        return t2i_fail("sr train: give --init CKPT (the whole model and its architecture) or --init-from, not both"), 2;
    return 0;
}

/* --init CKPT: the configuration of the checkpoint in *src (loaded); a size flag that asks
 * for another architecture is refused. */
static int init_config(sr_trainer *g, t2i_trainer *t, sr_config *cfg) {
    if (sr_load(&g->src, g->init, 0, NULL) != 0) return t2i_fail_err();
    g->have_src = 1;
    *cfg = g->src.cfg;
    struct {
        const char *flag;
        int want, have;
    } ints[] = {{"--scale", g->scale, cfg->scale}, {"--width", g->width, cfg->width}, {"--blocks", g->blocks, cfg->blocks},
                {"--crop", g->crop, cfg->crop},    {"--d-width", g->d_width, cfg->d_width}, {"--d-sn", g->d_sn, cfg->d_sn}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (t2i_flag_given(t->cmd, ints[i].flag) && ints[i].want != ints[i].have)
            return t2i_fail("sr train: %s %d does not match %s (%d); the architecture comes from --init", ints[i].flag,
                            ints[i].want, g->init, ints[i].have), 2;
    if (t2i_flag_given(t->cmd, "--preset") && strcmp(g->preset, cfg->preset) != 0)
        return t2i_fail("sr train: --preset %s does not match %s (%s)", g->preset, g->init, cfg->preset), 2;
    return 0;
}

/* Joins a repeatable flag's values (each possibly a colon-separated list) with ':'. */
static int join_flag(char *dst, size_t cap, const t2i_strs *v, const char *flag) {
    dst[0] = 0;
    size_t n = 0;
    for (int i = 0; i < v->n; i++) {
        size_t len = strlen(v->v[i]);
        if (n + len + 2 > cap) return t2i_fail("%s: the list is longer than %zu characters", flag, cap - 1), 2;
        if (n) dst[n++] = ':';
        memcpy(dst + n, v->v[i], len + 1);
        n += len;
    }
    return 0;
}

/* The data options of a new run from the flags; the default folder when no source is given. */
static int data_options(sr_trainer *g) {
    sr_train_opts *o = &g->o;
    int rc;
    if ((rc = join_flag(o->data, sizeof o->data, &g->data, "--data")) != 0 ||
        (rc = join_flag(o->packages, sizeof o->packages, &g->packages, "--package")) != 0 ||
        (rc = join_flag(o->holdout_packages, sizeof o->holdout_packages, &g->holdout_packages, "--holdout-package")) != 0 ||
        (rc = join_flag(o->holdout_dirs, sizeof o->holdout_dirs, &g->holdout_dirs, "--holdout")) != 0)
        return rc;
    if (!o->data[0] && !o->packages[0] && !o->holdout_packages[0] && !o->holdout_dirs[0])
        strcpy(o->data, SR_DEFAULT_DATA);
    sr_degrade d;
    if (sr_degrade_parse(g->degrade, &d) != 0) return t2i_fail_err(), 2;
    o->degrade = (int)d;
    return 0;
}

static int new_run(sr_trainer *g, t2i_trainer *t) {
    sr_config cfg;
    int from_ckpt = init_from_ckpt(g), rc;
    if (from_ckpt) {
        if ((rc = init_config(g, t, &cfg)) != 0) return rc;
    } else {
        sr_config_b4(&cfg, g->scale == 2 ? 2 : 4);
        cfg.scale = g->scale;
        if (strlen(g->preset) >= sizeof cfg.preset) return t2i_fail("--preset must be b4 or custom"), 2;
        strcpy(cfg.preset, g->preset);
        cfg.width = g->width, cfg.blocks = g->blocks, cfg.d_width = g->d_width, cfg.d_sn = g->d_sn;
        if (g->crop) cfg.crop = g->crop;
        if (sr_config_check(&cfg) != 0) return t2i_fail_err(), 2;
    }
    sr_train_opts *o = &g->o;
    if (strcmp(g->gan_loss, "ragan") == 0) o->gan_loss = SR_GAN_RAGAN;
    else if (strcmp(g->gan_loss, "ns") == 0) o->gan_loss = SR_GAN_NS;
    else return t2i_fail("--gan-loss must be ragan or ns, got '%s'", g->gan_loss), 2;
    snprintf(g->loss_name, sizeof g->loss_name, "%s", g->gan_loss);
    if (t2i_check_range_f("--lr", g->lr, NN_LR_MIN, NN_LR_MAX) ||
        t2i_check_range_f("--lr-gan", g->lr_gan, NN_LR_MIN, NN_LR_MAX) ||
        t2i_check_range_f("--lr-d", g->lr_d, NN_LR_MIN, NN_LR_MAX) ||
        t2i_check_range_f("--beta1", g->beta1, 0, NN_BETA1_MAX) ||
        t2i_check_range_f("--beta2", g->beta2, 0, NN_BETA2_MAX) || t2i_check_range_f("--ema", g->ema, 0, 0.99999) ||
        t2i_check_range_f("--l1-weight", g->l1_weight, 0, 1000) ||
        t2i_check_range_f("--adv-weight", g->adv_weight, 0, 1000) ||
        t2i_check_range_f("--fm-weight", g->fm_weight, 0, 1000) || t2i_check_range_i("--batch", g->batch, 1, 1024) ||
        t2i_check_range_i("--focus", g->focus, 1, 64) || t2i_check_range_i("--warmup", g->warmup, 0, 100000000) ||
        t2i_check_range_i("--d-warmup", g->d_warmup, 0, 100000000) ||
        t2i_check_range_i("--d-steps", g->d_steps, 1, 100) ||
        (g->lr_min >= 0 && t2i_check_range_f("--lr-min", g->lr_min, 0, g->lr)))
        return 2;
    if ((rc = data_options(g)) != 0) return rc;
    if (strcmp(g->init, "interp") == 0 && !g->init_from && cfg.width < 6)
        return t2i_fail("--init interp needs --width >= 6 (it carries the input in 6 channels), got %d; use --init "
                        "pytorch",
                        cfg.width),
               2;
    o->focus = g->focus, o->batch = g->batch, o->lr = g->lr, o->lr_min = g->lr_min, o->warmup = g->warmup;
    o->lr_gan = g->lr_gan, o->lr_d = g->lr_d;
    o->beta1 = g->beta1, o->beta2 = g->beta2, o->l1_weight = g->l1_weight, o->adv_weight = g->adv_weight, o->ema = g->ema;
    o->fm_weight = g->fm_weight, o->d_warmup = g->d_warmup, o->d_steps = g->d_steps;
    g->phase1 = g->steps >= 0 ? g->steps : 4000;
    g->phase2 = g->gan_steps >= 0 ? g->gan_steps : 0;
    if (g->phase1 + g->phase2 <= 0) return t2i_fail("nothing to train: --steps and --gan-steps are both 0"), 2;
    t2i_rng init_rng = t2i_rng_split(&t->rng, 1);
    sr_model_build(&g->m, &cfg, &init_rng);
    g->have_model = 1;
    if (from_ckpt) {
        /* G, D and EMA of a training checkpoint; an inference one has the EMA only (G
         * starts as it, D fresh) */
        int full = g->src.has_training;
        if (full) {
            nn_params_copy_values(&g->m.gp, &g->src.gp), nn_params_copy_values(&g->m.dp, &g->src.dp);
            nn_params_copy_values(&g->m.ep, &g->src.ep);
        } else {
            nn_params_copy_values(&g->m.gp, &g->src.ep), nn_params_copy_values(&g->m.ep, &g->src.ep);
        }
        sr_model_free(&g->src);
        g->have_src = 0;
        printf("sr train: starting from %s (%s); fresh optimizers\n", g->init, full ? "G, D and EMA" : "G = its EMA, a new D");
    } else if (g->init_from) {
        /* G and its EMA from another SR model (e.g. an L1 model to fine-tune with --steps 0) */
        sr_model src;
        if (sr_load(&src, g->init_from, 0, NULL) != 0) return t2i_fail_err();
        int fits = src.cfg.scale == cfg.scale && src.cfg.width == cfg.width && src.cfg.blocks == cfg.blocks;
        if (!fits)
            t2i_fail("%s: a x%d width-%d %d-block generator; this run is x%d width %d, %d blocks", g->init_from,
                     src.cfg.scale, src.cfg.width, src.cfg.blocks, cfg.scale, cfg.width, cfg.blocks);
        else nn_params_copy_values(&g->m.gp, &src.ep), nn_params_copy_values(&g->m.ep, &src.ep);
        sr_model_free(&src);
        if (!fits) return 1;
    } else if (strcmp(g->init, "interp") == 0) {
        sr_init_interp(&g->m);
    }
    return 0;
}

static int check_same_files(sr_trainer *g, t2i_trainer *t);

static int sr_tr_setup(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    int rc = t->resume ? resumed_lengths(g, t) : new_run(g, t);
    if (rc) return rc;
    if ((rc = t2i_trainer_split(t, "--batch", g->o.batch)) != 0) return rc;
    t->target = g->phase1 + g->phase2;
    t->phase_end = g->phase1;
    g->l1_path = t2i_asprintf("%s/l1.safetensors", t->out);
    /* data */
    int P = g->m.cfg.crop;
    const sr_train_opts *o = &g->o;
    /* the old runs' options table unless a data option (or the feature matching) differs
     * from its default */
    if (!o->packages[0] && !o->holdout_packages[0] && !o->holdout_dirs[0] && o->degrade == SR_DEGRADE_BICUBIC &&
        !strchr(o->data, ':') && o->fm_weight == 0.0f && o->d_warmup == 0 &&
        o->d_steps == 1)
        t->nopts = g->nopts_base;
    sr_sources src = {o->data, o->packages, o->holdout_packages, o->holdout_dirs};
    const char *label = o->data[0] && t->nopts == g->nopts_base ? o->data : "--data/--package";
    double t0 = t2i_now();
    if (sr_list_sources(&g->fl, &src) != 0) return t2i_fail_err();
    if (t->resume && (rc = check_same_files(g, t)) != 0) return rc;
    if (sr_photos_load(&g->train, &g->fl, label, 0, P, 1) != 0) return t2i_fail_err();
    for (int i = 0; i < g->fl.n; i++) g->nheld += g->fl.heldout[i];
    g->val_from_train = g->nheld == 0;
    /* a held-out photo that cannot be read must not silently turn validation into training data */
    if (!g->val_from_train && sr_photos_load(&g->held, &g->fl, label, 1, 32, 0) != 0) return t2i_fail_err();
    if (t->nopts != g->nopts_base) {
        size_t px = 0;
        for (int i = 0; i < g->train.n; i++) px += (size_t)g->train.img[i].w * g->train.img[i].h;
        for (int i = 0; i < g->held.n; i++) px += (size_t)g->held.img[i].w * g->held.img[i].h;
        printf("sr train: %d files listed, %d training + %d held-out photos decoded (%.1f Mpixel) in %.1f s\n", g->fl.n,
               g->train.n, g->held.n, px / 1e6, t2i_now() - t0);
    }
    sr_val_build(&g->val, g->val_from_train ? &g->train : &g->held, g->m.cfg.scale);
    return 0;
}

/* The file lists as config.json keys: ,"train_files":[...],"heldout_files":[...]. */
static char *file_lists_json(const sr_filelist *fl) {
    cJSON *o = cJSON_CreateObject();
    cJSON *tr = cJSON_AddArrayToObject(o, "train_files"), *ho = cJSON_AddArrayToObject(o, "heldout_files");
    for (int i = 0; i < fl->n; i++) cJSON_AddItemToArray(fl->heldout[i] ? ho : tr, cJSON_CreateString(fl->files[i]));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *out = t2i_asprintf(",%s", text + 1); /* without the object's braces */
    out[strlen(out) - 1] = 0;
    cJSON_free(text);
    return out;
}

/* --resume: the files listed now must be the ones the run's config.json recorded. */
static int check_same_files(sr_trainer *g, t2i_trainer *t) {
    if (t->nopts == g->nopts_base) return 0; /* one folder, the old runs: no list recorded */
    char *path = t2i_asprintf("%s/config.json", t->out);
    size_t len;
    char *text = t2i_read_file(path, &len, 0);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    int rc = 0;
    const char *keys[2] = {"train_files", "heldout_files"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        const cJSON *a = j ? cJSON_GetObjectItemCaseSensitive(j, keys[k]) : NULL;
        if (!cJSON_IsArray(a)) {
            rc = t2i_fail("%s: no '%s' list to check the data against", path, keys[k]);
            break;
        }
        int want = k == 1, i = 0;
        const cJSON *e = a->child;
        for (; i < g->fl.n && rc == 0; i++) {
            if (g->fl.heldout[i] != want) continue;
            if (!e || !cJSON_IsString(e) || strcmp(e->valuestring, g->fl.files[i]) != 0)
                rc = t2i_fail("sr train --resume: the %s files changed since the run started: %s %s (%s lists %s)",
                              want ? "held-out" : "training", e ? "found" : "new file", g->fl.files[i], path,
                              e && cJSON_IsString(e) ? e->valuestring : "fewer");
            else e = e->next;
        }
        if (rc == 0 && e)
            rc = t2i_fail("sr train --resume: the %s files changed since the run started: %s is no longer listed",
                          want ? "held-out" : "training", cJSON_IsString(e) ? e->valuestring : "?");
    }
    cJSON_Delete(j);
    free(path);
    return rc;
}

static char *sr_tr_config(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    char *lists = t->nopts != g->nopts_base ? file_lists_json(&g->fl) : t2i_strdup("");
    char *mid = t2i_asprintf(",\"gan_steps\":%ld%s", g->phase2, lists);
    char *c = t2i_trainer_config(t, sr_config_to_json(&g->m.cfg), g->phase1, mid, NULL);
    free(lists), free(mid);
    return c;
}

/* The validation PSNR of the EMA as a metrics line (and the sample grids when step > 0). */
static void validate(sr_trainer *g, t2i_trainer *t, int phase) {
    char *sp = t->step ? t2i_trainer_sample_path(t) : NULL, *lp = t->step ? t2i_trainer_latest_path(t) : NULL;
    g->last_val = sr_val_run(&g->m, &g->val, sp, lp);
    free(sp), free(lp);
    char line[256];
    snprintf(line, sizeof line, "{\"step\":%ld,\"phase\":%d,\"val_psnr\":%.4f,\"val_psnr_bicubic\":%.4f}", t->step,
             phase, g->last_val, g->val.psnr_bicubic);
    t2i_run_metrics(&t->run, line);
}

/* "DIR" for one folder, else the sources by kind (for the start line). */
static char *sources_desc(const sr_train_opts *o) {
    const char *names[4] = {"data ", "packages ", "held out: packages ", "held out: folders "};
    const char *vals[4] = {o->data, o->packages, o->holdout_packages, o->holdout_dirs};
    if (!vals[1][0] && !vals[2][0] && !vals[3][0]) return t2i_strdup(o->data);
    char *d = t2i_strdup("");
    for (int k = 0; k < 4; k++) {
        if (!vals[k][0]) continue;
        char *n = t2i_asprintf("%s%s%s%s", d, d[0] ? "; " : "", names[k], vals[k]);
        free(d);
        d = n;
    }
    return d;
}

static int sr_tr_start(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    const sr_config *cfg = &g->m.cfg;
    const sr_train_opts *o = &g->o;
    int P = cfg->crop, s = cfg->scale, B = o->batch, lp = P / s;
    nn_params_moments(&g->m.gp);
    nn_params_moments(&g->m.dp);
    g->og = nn_adam(t->step < g->phase1 ? o->lr : o->lr_gan, o->beta1, o->beta2, 1e-8f, 0.0f);
    g->od = nn_adam(o->lr_d, o->beta1, o->beta2, 1e-8f, 0.0f);
    g->og.step = g->opt_g_step, g->od.step = g->opt_d_step;
    g->sched = o->lr_min >= 0 && g->phase1 > 0 ? nn_schedule_cosine(o->lr, o->warmup, g->phase1, o->lr_min)
                                                : nn_schedule_constant(o->lr);
    g->hr = t2i_malloc_aligned((size_t)B * 3 * P * P * sizeof(float));
    g->lrb = t2i_malloc_aligned((size_t)B * 3 * lp * lp * sizeof(float));
    if (o->focus > 1) g->cand = t2i_malloc(((size_t)o->focus * 3 * (P * P + lp * lp) + (size_t)3 * P * P) * sizeof(float));
    char *desc = sources_desc(o);
    printf("sr train: %s, %d training photos, %d held out%s; %s x%d (width %d, %d blocks, G %zu / D %zu parameters), "
           "crop %d, batch %d, %ld L1 + %ld GAN steps, %d threads\n",
           desc, g->train.n, g->nheld, g->val_from_train ? " (validating on training photos)" : "", cfg->preset, s,
           cfg->width, cfg->blocks, nn_params_count(&g->m.gp, 1), nn_params_count(&g->m.dp, 1), P, B, g->phase1,
           g->phase2, t2i_get_threads());
    free(desc);
    printf("sr train: validation on %d crops of %dx%d: bicubic PSNR %.3f dB\n", g->val.n, g->val.size, g->val.size,
           g->val.psnr_bicubic);
    g->last_val = NAN;
    if (t->step == 0 && t->rank == 0) {
        validate(g, t, 1);
        printf("sr train: step 0 validation PSNR %.3f dB\n", g->last_val);
    }
    return 0;
}

/* Whether step t->step is one of phase 2's first d_warmup, which train D alone. */
static int d_warming(const sr_trainer *g, const t2i_trainer *t) {
    return g->phase == 2 && t->step - g->phase1 < g->o.d_warmup;
}

/* Whether step t->step trains D alone: D's warm-up, then all but the last of each d_steps
 * (with --d-steps K, G is updated on every K-th step after the warm-up, D on every step). */
static int d_only(const sr_trainer *g, const t2i_trainer *t) {
    if (g->phase != 2) return 0;
    long j = t->step - g->phase1 - g->o.d_warmup;
    return j < 0 || j % g->o.d_steps != g->o.d_steps - 1;
}

static int sr_tr_step(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    const sr_train_opts *o = &g->o;
    sr_model *m = &g->m;
    int P = m->cfg.crop, s = m->cfg.scale, B = o->batch, lp = P / s;
    g->phase = t->step < g->phase1 ? 1 : 2;
    if (g->phase == 2 && t->step == g->phase1) {
        /* phase switch: fine-tune the saved L1 model (EMA) with a fresh optimizer */
        nn_params_copy_values(&m->gp, &m->ep);
        memset(m->gp.m, 0, m->gp.total * sizeof(float));
        memset(m->gp.v, 0, m->gp.total * sizeof(float));
        g->og = nn_adam(o->lr_gan, o->beta1, o->beta2, 1e-8f, 0.0f);
        g->ema_t = 0;
        if (g->phase1 == 0 && t->rank == 0 && sr_save(m, g->l1_path, NULL, 0) != 0) /* the model phase 2 starts from */
            return t2i_fail_err(), T2I_STEP_FAILED;
    }
    /* every rank draws the whole global batch's crops (the single process's random sequence)
     * and trains on its rows [lo, hi) */
    for (int b = 0; b < B; b++)
        sr_training_item(g->hr + (size_t)b * 3 * P * P, g->lrb + (size_t)b * 3 * lp * lp, &g->train, P, s, o->focus,
                      (sr_degrade)o->degrade, g->cand, &t->rng);
    int lo = t->size > 1 ? t->lo : 0, nb = t->size > 1 ? t->hi - t->lo : B;
    const float *hr = g->hr + (size_t)lo * 3 * P * P, *lrb = g->lrb + (size_t)lo * 3 * lp * lp;
    g->lr_now = g->phase == 1 ? nn_schedule_lr(&g->sched, t->step) : o->lr_gan;
    if (g->phase == 1) g->stats.loss_l1 = sr_l1_step(m, &g->og, &g->arena, lrb, hr, nb, g->lr_now);
    else
        sr_gan_step(m, &g->og, &g->od, &g->arena, o->gan_loss, o->l1_weight, o->adv_weight, o->fm_weight,
                    !d_only(g, t), lrb, hr, nb, &g->stats);
    if (t->size > 1) {
        sr_step_stats *st = &g->stats;
        double v[6] = {st->loss_l1, st->loss_g_adv, st->loss_d, st->d_real, st->d_fake, st->loss_fm};
        t2i_dist_mean(v, 6);
        st->loss_l1 = (float)v[0], st->loss_g_adv = (float)v[1], st->loss_d = (float)v[2];
        st->d_real = (float)v[3], st->d_fake = (float)v[4], st->loss_fm = (float)v[5];
    }
    if (!d_only(g, t)) { /* in D's steps alone G is unchanged, and so is its EMA */
        float decay = o->ema;
        float warm = (float)(1.0 + g->ema_t) / (float)(10.0 + g->ema_t);
        if (warm < decay) decay = warm;
        nn_ema_update(&m->ep, &m->gp, decay);
        g->ema_t++;
    }
    if (t2i_trainer_nonfinite(t, "L1", g->stats.loss_l1) ||
        (g->phase == 2 && (t2i_trainer_nonfinite(t, "D", g->stats.loss_d) ||
                           t2i_trainer_nonfinite(t, "adversarial", g->stats.loss_g_adv) ||
                           t2i_trainer_nonfinite(t, "feature matching", g->stats.loss_fm))))
        return T2I_STEP_NONFINITE;
    return T2I_STEP_OK;
}

static int sr_tr_metrics(void *self, t2i_trainer *t, char *buf, size_t n) {
    sr_trainer *g = self;
    const sr_step_stats *s = &g->stats;
    double ms = t->step_seconds * 1e3;
    if (g->phase == 1)
        return snprintf(buf, n, "{\"step\":%ld,\"phase\":1,\"loss_l1\":%.6f,\"lr\":%.4g,\"step_ms\":%.1f}", t->step,
                        s->loss_l1, g->lr_now, ms);
    return snprintf(buf, n,
                    "{\"step\":%ld,\"phase\":2,\"loss_l1\":%.6f,\"loss_g_adv\":%.5f,\"loss_fm\":%.5f,\"loss_d\":%.5f,"
                    "\"d_real\":%.4f,\"d_fake\":%.4f,\"step_ms\":%.1f}",
                    t->step, s->loss_l1, s->loss_g_adv, s->loss_fm, s->loss_d, s->d_real, s->d_fake, ms);
}

static void sr_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    sr_trainer *g = self;
    const sr_step_stats *s = &g->stats;
    if (last) snprintf(buf, n, "val %.2f dB (bicubic %.2f)", g->last_val, g->val.psnr_bicubic);
    else if (g->phase == 1)
        snprintf(buf, n, "L1 %.4f  val %.2f dB (bicubic %.2f)", s->loss_l1, g->last_val, g->val.psnr_bicubic);
    else if (d_only(g, t))
        snprintf(buf, n, "%s: L1 %.4f D %.3f (real %.2f, G's %.2f)  val %.2f dB", d_warming(g, t) ? "D warm-up" : "D alone",
                 s->loss_l1, s->loss_d, s->d_real, s->d_fake, g->last_val);
    else if (g->o.fm_weight > 0)
        snprintf(buf, n, "L1 %.4f adv %.3f FM %.4f D %.3f  val %.2f dB", s->loss_l1, s->loss_g_adv, s->loss_fm,
                 s->loss_d, g->last_val);
    else snprintf(buf, n, "L1 %.4f adv %.3f D %.3f  val %.2f dB", s->loss_l1, s->loss_g_adv, s->loss_d, g->last_val);
}

/* At the end of phase 1 its model (the EMA) is saved as l1.safetensors; then validation. */
static int sr_tr_sample(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    if (t->step == g->phase1 && sr_save(&g->m, g->l1_path, NULL, 0) != 0) return t2i_fail_err();
    validate(g, t, g->phase);
    return 0;
}

static void sr_tr_sync(void *self) {
    sr_trainer *g = self;
    g->opt_g_step = g->og.step, g->opt_d_step = g->od.step;
}

static int sr_tr_save(void *self, const char *path, const char *state_json) {
    return sr_save(&((sr_trainer *)self)->m, path, state_json, 1);
}

static void sr_tr_finish(void *self, t2i_trainer *t) {
    sr_trainer *g = self;
    printf("sr train: %ld steps in %.1f s; validation PSNR %.3f dB (bicubic %.3f); checkpoint %s\n",
           t->step - t->start_step, t->elapsed, g->last_val, g->val.psnr_bicubic, t->ckpt_path);
}

static void sr_tr_release(void *self) {
    sr_trainer *g = self;
    nn_arena_free(&g->arena);
    t2i_free(g->hr), t2i_free(g->lrb), free(g->cand);
    sr_val_free(&g->val);
    sr_photos_free(&g->train), sr_photos_free(&g->held);
    sr_filelist_free(&g->fl);
    if (g->have_model) sr_model_free(&g->m);
    if (g->have_src) sr_model_free(&g->src);
    free(g->l1_path);
}

static const t2i_trainer_ops sr_ops = {
    .check_flags = sr_tr_check_flags,
    .load = sr_tr_load,
    .check_state = sr_tr_check_state,
    .setup = sr_tr_setup,
    .config = sr_tr_config,
    .start = sr_tr_start,
    .step = sr_tr_step,
    .metrics = sr_tr_metrics,
    .progress = sr_tr_progress,
    .sample = sr_tr_sample,
    .sync = sr_tr_sync,
    .save = sr_tr_save,
    .finish = sr_tr_finish,
    .release = sr_tr_release,
};

int sr_cmd_train(int argc, char **argv) {
    sr_trainer g = {.degrade = "bicubic", .preset = "b4", .gan_loss = "ragan", .init = "interp", .focus = 4,
                    .scale = 4, .width = 64, .blocks = 8, .batch = 16, .d_width = 64, .steps = -1, .gan_steps = -1,
                    .warmup = 100, .lr = 3e-4f, .lr_min = 1e-6f, .lr_gan = 1e-4f, .lr_d = 1e-4f, .beta1 = 0.9f,
                    .beta2 = 0.999f, .l1_weight = 1.0f, .adv_weight = 5e-3f, .fm_weight = 0.0f, .ema = 0.999f,
                    .d_steps = 1};
    nn_arena_init(&g.arena);
    t2i_trainer t;
    t2i_trainer_init(&t, &sr_ops, &g, "sr");
    t.out = "runs/sr", t.seed_arg = 1, t.sample_every = 200, t.ckpt_every = 200, t.log_every = 10;
    t.every_max = 1000000, t.stop_after_max = 100000000;
    t.samples = "samples";
    sr_train_opts *o = &g.o;
    static const char *const degrade_names[] = {"bicubic", "mix", NULL};
    nn_field sf[] = {NN_F_LONG("step", t.step),            NN_F_LONG("steps", g.phase1),
                     NN_F_LONG("gan_steps", g.phase2),     NN_F_RNG("rng", t.rng),
                     NN_F_LONG("opt_g_step", g.opt_g_step), NN_F_LONG("opt_d_step", g.opt_d_step),
                     NN_F_LONG("ema_t", g.ema_t)};
    nn_field of[] = {NN_F_STR("data", o->data),
                     NN_F_INT_IN("batch", o->batch, 1, 1024),
                     NN_F_FLOAT_IN("lr", o->lr, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("lr_min", o->lr_min, -1e9, 1),
                     NN_F_LONG_IN("warmup", o->warmup, 0, 100000000),
                     NN_F_INT_IN("focus", o->focus, 1, 64),
                     NN_F_FLOAT_IN("lr_gan", o->lr_gan, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("lr_d", o->lr_d, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_IN("beta1", o->beta1, 0, NN_BETA1_MAX),
                     NN_F_FLOAT_IN("beta2", o->beta2, 0, NN_BETA2_MAX),
                     NN_F_FLOAT_IN("l1_weight", o->l1_weight, 0, 1000),
                     NN_F_FLOAT_IN("adv_weight", o->adv_weight, 0, 1000),
                     NN_F_FLOAT_IN("ema", o->ema, 0, 0.99999),
                     NN_F_STR("gan_loss", g.loss_name),
                     NN_F_SEED("seed", t.seed),
                     /* written only when a data option or fm_weight is not its default (t.nopts
                      * cut to nopts_base), so a one-folder bicubic run keeps the old files */
                     NN_F_STR_DEF("packages", o->packages),
                     NN_F_STR_DEF("holdout_packages", o->holdout_packages),
                     NN_F_STR_DEF("holdout_dirs", o->holdout_dirs),
                     NN_F_ENUM_DEF("degrade", o->degrade, degrade_names, 0),
                     NN_F_FLOAT_DEF_IN("fm_weight", o->fm_weight, 0, 0, 1000),
                     NN_F_INT_DEF_IN("d_warmup", o->d_warmup, 0, 0, 100000000),
                     NN_F_INT_DEF_IN("d_steps", o->d_steps, 1, 1, 100)};
    g.nopts_base = NN_NFIELDS(of) - 7;
    t.state = sf, t.nstate = NN_NFIELDS(sf), t.opts = of, t.nopts = NN_NFIELDS(of);
    t2i_flag flags[] = {
        {"--data", T2I_STRS, &g.data,
         "folders of photos (recursive) or image files; repeat or separate with ':' (default " SR_DEFAULT_DATA ")"},
        {"--package", T2I_STRS, &g.packages, "Debian packages whose image files (dpkg -L) are photos; repeatable"},
        {"--holdout-package", T2I_STRS, &g.holdout_packages,
         "hold out every image of these packages (validation, sr eval); repeatable"},
        {"--holdout", T2I_STRS, &g.holdout_dirs, "hold out every image under these folders; repeatable"},
        {"--degrade", T2I_STR, &g.degrade,
         "LR synthesis: bicubic (antialiased, as eval) or mix (bicubic 55%, bilinear, area, blur + bicubic)"},
        {"--scale", T2I_INT, &g.scale, "upscaling factor, 2 or 4"},
        {"--preset", T2I_STR, &g.preset, "b4 (bench/README.md B4: width 64, 8 blocks) or custom"},
        {"--width", T2I_INT, &g.width, "generator width (custom preset)"},
        {"--blocks", T2I_INT, &g.blocks, "residual blocks (custom preset)"},
        {"--crop", T2I_INT, &g.crop, "HR crop size, a multiple of 16 (0: 96 for x4, 64 for x2)"},
        {"--batch", T2I_INT, &g.batch, "crops per step"},
        {"--focus", T2I_INT, &g.focus,
         "draw K crops per item, keep one with probability ~ its bicubic error (1 = uniform)"},
        {"--init", T2I_STR, &g.init, "interp (G starts as bilinear upsampling), pytorch (default init), or an sr "
                                     "checkpoint to fine-tune from (its weights and architecture, fresh optimizers)"},
        {"--init-from", T2I_STR, &g.init_from,
         "start G from this SR checkpoint's EMA (e.g. --steps 0 to GAN-tune an L1 model)"},
        {"--steps", T2I_LONG, &g.steps, "phase 1 (L1 pre-training) steps (-1: 4000; with --resume: as planned)"},
        {"--gan-steps", T2I_LONG, &g.gan_steps,
         "phase 2 (adversarial fine-tuning) steps (-1: 0; with --resume: as planned)"},
        {"--lr", T2I_FLOAT, &g.lr, "phase 1 learning rate (Adam)"},
        {"--lr-min", T2I_FLOAT, &g.lr_min, "phase 1: cosine decay to this rate at its end (-1: constant --lr)"},
        {"--warmup", T2I_LONG, &g.warmup, "phase 1: linear warm-up steps (with the cosine decay)"},
        {"--lr-gan", T2I_FLOAT, &g.lr_gan, "phase 2 G learning rate"},
        {"--lr-d", T2I_FLOAT, &g.lr_d, "phase 2 D learning rate"},
        {"--beta1", T2I_FLOAT, &g.beta1, "Adam beta1 (both phases, G and D)"},
        {"--beta2", T2I_FLOAT, &g.beta2, "Adam beta2"},
        {"--gan-loss", T2I_STR, &g.gan_loss, "ragan (relativistic average, ESRGAN) or ns (non-saturating)"},
        {"--l1-weight", T2I_FLOAT, &g.l1_weight, "phase 2 weight of the L1 loss"},
        {"--adv-weight", T2I_FLOAT, &g.adv_weight, "phase 2 weight of the adversarial loss"},
        {"--d-warmup", T2I_INT, &g.d_warmup,
         "phase 2 starts with this many steps that train D alone (G and its EMA unchanged)"},
        {"--d-steps", T2I_INT, &g.d_steps,
         "after the warm-up, G (and its EMA) is updated on every N-th step, D on each"},
        {"--fm-weight", T2I_FLOAT, &g.fm_weight,
         "phase 2 weight of feature matching: mean |D's activations on the output - on the photo| (0 = off)"},
        {"--d-width", T2I_INT, &g.d_width, "patch discriminator base width"},
        {"--d-sn", T2I_BOOL, &g.d_sn, "spectral normalisation in D"},
        {"--ema", T2I_FLOAT, &g.ema, "EMA decay of G's weights (eval/upscale use the EMA; 0 = copy)"},
        {"--val-every", T2I_INT, &t.sample_every, "validate (PSNR on held-out crops, sample grid) every N steps"},
        T2I_TRAIN_CKPT_EVERY(t),
        T2I_TRAIN_LOG_EVERY(t),
        {"--stop-after", T2I_LONG, &t.stop_after, "save and stop after this global step (0 = run to the end)"},
        T2I_TRAIN_SEED(t),
        T2I_TRAIN_THREADS(t),
        T2I_TRAIN_OUT(t),
        T2I_TRAIN_RESUME(t),
    };
    t2i_cmd cmd = {"t2i sr train",
                   "Train a super-resolution model (SRResNet, then optional ESRGAN-style GAN fine-tuning).",
                   "[options]",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Data: the images (png, jpg, jpeg, bmp, ppm, webp) under each --data folder (recursive)\n"
                   "and of each --package (`dpkg -L`), each source sorted by path. Without --holdout-package\n"
                   "or --holdout, the files at sorted index i with i % 6 == 5 of each source are HELD OUT\n"
                   "(never trained on; used for validation and `t2i sr eval`): for the default folder\n"
                   "(Debian's mate-backgrounds nature photos) GreenMeadow.jpg and YellowFlower.jpg. With\n"
                   "them, exactly their images are held out, e.g. held out by package:\n"
                   "  --package mate-backgrounds --package gnome-backgrounds --package ukui-wallpapers\n"
                   "  --holdout-package lomiri-wallpapers --holdout-package lomiri-wallpapers-20.04\n"
                   "config.json then lists train_files and heldout_files, and --resume refuses a changed\n"
                   "list. Images smaller than the crop are skipped with a note. Each step draws random HR\n"
                   "crops (uniform over positions, one of 8 flips/transposes); the LR input is the\n"
                   "bicubic-antialiased downscale rounded to 8 bits (--degrade mix: varied downscaling).\n"
                   "Phase 1 minimises L1; phase 2 starts from the phase-1 EMA and adds a relativistic patch\n"
                   "GAN loss. The run folder gets checkpoint.safetensors (resumable), l1.safetensors (the\n"
                   "phase-1 EMA model), metrics.jsonl, config.json and samples/ (bicubic | model | original)."};
    return t2i_trainer_main(&t, &cmd, argc, argv);
}
