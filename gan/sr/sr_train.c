/* sr_train.c - SR training data, the L1 and GAN steps, and `t2i sr train`.
 *
 * Data: see sr.h (held-out rule, crops, LR synthesis). One RNG draw picks the crop
 * uniformly among all crop positions of all training photos (so large photos are seen
 * in proportion to their area), a second picks one of the 8 symmetries of the square.
 *
 * Steps (B items, P x P HR crops, LR P/s x P/s):
 *   L1:  loss = mean |G(lr) - hr|; Adam on G.
 *   GAN: G update: fake = G(lr); D (frozen, no power iteration) on hr and on fake;
 *        loss = l1_weight * L1(fake, hr) + adv_weight * L_G(D(hr), D(fake)); Adam on G.
 *        D update: D on [hr; fake] as one batch of 2B (D has no normalisation, so this
 *        equals two calls), loss = L_D, Adam on D. fake is the output computed before
 *        G's update (detached), as ESRGAN/BasicSR do.
 *   Relativistic average loss derivative (a_i = r_i - mean f, b_j = f_j - mean r, n
 *   patches each, t_r/t_f the targets 1/0 for D and 0/1 for G):
 *     ga_i = (sigmoid(a_i) - t_r) / 2n,  gb_j = (sigmoid(b_j) - t_f) / 2n
 *     dL/dr_k = ga_k - sum_j gb_j / n,   dL/df_k = gb_k - sum_i ga_i / n.
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

#define SR_DEFAULT_DATA "/usr/share/backgrounds/mate/nature"

/* ---------------------------------------------------------------- losses and steps */

static double softplus(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }
static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

float sr_ragan_loss(const float *lr, const float *lf, int n, float *dr, float *df, int for_g, float scale) {
    double mr = 0.0, mf = 0.0;
    for (int i = 0; i < n; i++) mr += lr[i], mf += lf[i];
    mr /= n, mf /= n;
    /* data-parallel (run/dist.h): the means, the loss and the mean-terms of the gradient are
     * the global batch's (means of the ranks' means over equal slices); each rank's gradient
     * keeps the local 1/n, which is the rank count times its share, as every rank's is */
    int ranks = t2i_dist_size();
    if (ranks > 1) {
        double m2[2] = {mr, mf};
        t2i_dist_mean(m2, 2);
        mr = m2[0], mf = m2[1];
    }
    double tr = for_g ? 0.0 : 1.0, tf = for_g ? 1.0 : 0.0;
    double loss = 0.0, sga = 0.0, sgb = 0.0;
    for (int i = 0; i < n; i++) {
        double a = lr[i] - mf, b = lf[i] - mr;
        /* BCE(z, 1) = softplus(-z), BCE(z, 0) = softplus(z) */
        loss += tr > 0.5 ? softplus(-a) : softplus(a);
        loss += tf > 0.5 ? softplus(-b) : softplus(b);
        sga += (sigmoid(a) - tr) / (2.0 * n);
        sgb += (sigmoid(b) - tf) / (2.0 * n);
    }
    if (ranks > 1) {
        double v[3] = {loss, sga, sgb};
        t2i_dist_mean(v, 3);
        loss = v[0], sga = v[1], sgb = v[2];
    }
    for (int k = 0; k < n; k++) {
        if (dr) dr[k] += (float)(scale * ((sigmoid(lr[k] - mf) - tr) / (2.0 * n) - sgb / n));
        if (df) df[k] += (float)(scale * ((sigmoid(lf[k] - mr) - tf) / (2.0 * n) - sga / n));
    }
    return (float)(loss / (2.0 * n));
}

float sr_l1_step(sr_model *m, nn_optim *og, nn_arena *a, const float *lr, const float *hr, int B, float lr_now) {
    nn_arena_reset(a);
    nn_params_zero_grad(&m->gp);
    nn_tape t;
    memset(&t, 0, sizeof t);
    float *y = nn_seq_forward(&m->g, &t, a, lr, B, 1);
    size_t n = (size_t)B * nn_seq_out_size(&m->g);
    float *dy = nn_arena_zeros(a, n);
    float loss = nn_l1(dy, y, hr, n, 1.0f);
    nn_seq_backward(&m->g, &t, a, dy, 0);
    nn_optim_step(og, &m->gp, lr_now);
    return loss;
}

static float mean_sigmoid(const float *l, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += sigmoid(l[i]);
    return (float)(s / n);
}

void sr_gan_step(sr_model *m, nn_optim *og, nn_optim *od, nn_arena *a, sr_gan_loss loss, float l1_weight,
                 float adv_weight, const float *lr, const float *hr, int B, sr_step_stats *st) {
    nn_arena_reset(a);
    size_t item = nn_seq_out_size(&m->g), n = (size_t)B * item;
    int P = B * (int)nn_seq_out_size(&m->d); /* patch logits per batch */
    /* ---- G update ---- */
    nn_params_zero_grad(&m->gp);
    nn_tape tg, tr, tf;
    memset(&tg, 0, sizeof tg), memset(&tr, 0, sizeof tr), memset(&tf, 0, sizeof tf);
    float *fake = nn_seq_forward(&m->g, &tg, a, lr, B, 1);
    m->d.frozen = 1;
    float *lreal = nn_seq_forward(&m->d, &tr, a, hr, B, 0);
    float *lfake = nn_seq_forward(&m->d, &tf, a, fake, B, 0);
    float *dlf = nn_arena_zeros(a, (size_t)P);
    if (loss == SR_GAN_RAGAN)
        st->loss_g_adv = sr_ragan_loss(lreal, lfake, P, NULL, dlf, 1, adv_weight);
    else
        st->loss_g_adv = nn_bce_logits_const(dlf, lfake, 1.0f, (size_t)P, adv_weight);
    float *dfake = nn_seq_backward(&m->d, &tf, a, dlf, 1);
    m->d.frozen = 0;
    st->loss_l1 = nn_l1(dfake, fake, hr, n, l1_weight);
    nn_seq_backward(&m->g, &tg, a, dfake, 0);
    nn_optim_step(og, &m->gp, og->lr);
    /* ---- D update on [hr; fake] ---- */
    nn_params_zero_grad(&m->dp);
    float *both = nn_arena_floats(a, 2 * n);
    memcpy(both, hr, n * sizeof(float));
    memcpy(both + n, fake, n * sizeof(float));
    nn_tape td;
    memset(&td, 0, sizeof td);
    float *l2 = nn_seq_forward(&m->d, &td, a, both, 2 * B, 1);
    float *dl = nn_arena_zeros(a, (size_t)2 * P);
    if (loss == SR_GAN_RAGAN) {
        st->loss_d = sr_ragan_loss(l2, l2 + P, P, dl, dl + P, 0, 1.0f);
    } else {
        st->loss_d = nn_bce_logits_const(dl, l2, 1.0f, (size_t)P, 1.0f);
        st->loss_d += nn_bce_logits_const(dl + P, l2 + P, 0.0f, (size_t)P, 1.0f);
    }
    nn_seq_backward(&m->d, &td, a, dl, 0);
    nn_optim_step(od, &m->dp, od->lr);
    st->d_real = mean_sigmoid(l2, P);
    st->d_fake = mean_sigmoid(l2 + P, P);
}

/* ---------------------------------------------------------------- training photos */

typedef struct {
    int n;
    t2i_image *img;      /* 8-bit RGB, full size */
    uint64_t *positions; /* crop positions per photo: (w - P + 1) * (h - P + 1) */
    uint64_t total;
} photo_set;

static void photos_free(photo_set *ps) {
    for (int i = 0; i < ps->n; i++) t2i_image_free(&ps->img[i]);
    free(ps->img);
    free(ps->positions);
    memset(ps, 0, sizeof *ps);
}

/* Loads the files with heldout[i] == want_heldout; photos smaller than P are skipped
 * with a note. Returns -1 on a decode error or when no photo is usable. */
static int photos_load(photo_set *ps, const sr_filelist *fl, const char *dir, int want_heldout, int P, int verbose) {
    memset(ps, 0, sizeof *ps);
    int skipped = 0, first_skipped = -1;
    ps->img = t2i_calloc((size_t)fl->n, sizeof *ps->img);
    ps->positions = t2i_calloc((size_t)fl->n, sizeof *ps->positions);
    for (int i = 0; i < fl->n; i++) {
        if (fl->heldout[i] != want_heldout) continue;
        t2i_image im;
        if (t2i_image_load(&im, fl->files[i], 3) != 0) {
            photos_free(ps);
            return -1;
        }
        if (im.w < P || im.h < P) {
            if (!skipped++) first_skipped = i;
            t2i_image_free(&im);
            continue;
        }
        ps->img[ps->n] = im;
        ps->positions[ps->n] = (uint64_t)(im.w - P + 1) * (uint64_t)(im.h - P + 1);
        ps->total += ps->positions[ps->n];
        ps->n++;
    }
    if (ps->n == 0) {
        photos_free(ps);
        return t2i_error_set("%s: no %s images of at least %dx%d pixels", dir, want_heldout ? "held-out" : "training",
                             P, P);
    }
    if (skipped && verbose)
        fprintf(stderr, "t2i: note: %d image%s smaller than the %dx%d crop skipped (first: %s)\n", skipped,
                skipped > 1 ? "s" : "", P, P, fl->files[first_skipped]);
    return 0;
}

/* One random HR crop (3, P, P) in [-1, 1] with a random symmetry of the square. */
static void random_crop(float *dst, const photo_set *ps, int P, t2i_rng *rng) {
    uint64_t k = t2i_rng_below(rng, ps->total);
    int i = 0;
    while (k >= ps->positions[i]) k -= ps->positions[i++];
    const t2i_image *im = &ps->img[i];
    int nx = im->w - P + 1;
    int x0 = (int)(k % (uint64_t)nx), y0 = (int)(k / (uint64_t)nx);
    int sym = (int)t2i_rng_below(rng, 8);
    int tr = sym & 1, fh = sym & 2, fv = sym & 4;
    size_t plane = (size_t)P * P;
    for (int y = 0; y < P; y++)
        for (int x = 0; x < P; x++) {
            int sy = tr ? x : y, sx = tr ? y : x;
            if (fh) sx = P - 1 - sx;
            if (fv) sy = P - 1 - sy;
            const uint8_t *px = im->px + ((size_t)(y0 + sy) * im->w + (size_t)(x0 + sx)) * 3;
            for (int c = 0; c < 3; c++) dst[c * plane + (size_t)y * P + x] = (float)px[c] / 127.5f - 1.0f;
        }
}

/* Mean |hr - bicubic(lr)| of one item: how much a model can gain on it over bicubic. */
static double bicubic_error(const float *hr, const float *lr, float *up, int P, int s) {
    t2i_resize_chw(up, lr, 3, P / s, P / s, P, P, T2I_RESIZE_BICUBIC);
    double e = 0.0;
    size_t n = (size_t)3 * P * P;
    for (size_t i = 0; i < n; i++) e += fabs(hr[i] - up[i]);
    return e / (double)n;
}

/* One training item (hr, lr). focus <= 1: a uniform random crop. focus = K > 1: K
 * candidate crops, one kept with probability proportional to its bicubic error (the
 * smooth, out-of-focus parts of photos teach little; this spends steps on detail).
 * cand: scratch for K candidates (K * 3 * P * P + K * 3 * (P/s)^2 + 3 * P * P floats). */
static void training_item(float *hr, float *lr, const photo_set *ps, int P, int s, int focus, sr_degrade degrade,
                          float *cand, t2i_rng *rng) {
    size_t hs = (size_t)3 * P * P, ls = hs / (s * s);
    if (focus <= 1) {
        random_crop(hr, ps, P, rng);
        sr_make_lr_degraded(lr, hr, P, P, s, degrade, rng);
        return;
    }
    float *ch = cand, *cl = cand + focus * hs, *up = cl + focus * ls;
    double e[64], tot = 0.0;
    for (int k = 0; k < focus; k++) {
        random_crop(ch + k * hs, ps, P, rng);
        sr_make_lr_degraded(cl + k * ls, ch + k * hs, P, P, s, degrade, rng);
        e[k] = bicubic_error(ch + k * hs, cl + k * ls, up, P, s) + 1e-6;
        tot += e[k];
    }
    double u = t2i_rng_uniform(rng) * tot;
    int pick = 0;
    while (pick < focus - 1 && u >= e[pick]) u -= e[pick++];
    memcpy(hr, ch + pick * hs, hs * sizeof(float));
    memcpy(lr, cl + pick * ls, ls * sizeof(float));
}

/* ---------------------------------------------------------------- validation */

#define VAL_SIZE 256

typedef struct {
    int n, size, scale;
    float *hr, *lr; /* (n, 3, S, S), (n, 3, S/s, S/s) */
    float *bic;     /* bicubic upscaled LR (n, 3, S, S) */
    double psnr_bicubic;
} val_set;

/* PSNR (RGB, border = scale) of float images via 8-bit rounding, as saved images. */
static double psnr_float(const float *a, const float *b, int S, int border, uint8_t *ua, uint8_t *ub) {
    t2i_chw_to_u8(ua, a, 3, S, S);
    t2i_chw_to_u8(ub, b, 3, S, S);
    return t2i_psnr_rgb(ua, ub, S, S, border);
}

/* Three fixed crops per photo (centre and the two quarter points of the diagonal). */
static void val_build(val_set *v, const photo_set *ps, int scale) {
    memset(v, 0, sizeof *v);
    int S = VAL_SIZE;
    for (int i = 0; i < ps->n; i++) S = T2I_MIN(S, T2I_MIN(ps->img[i].w, ps->img[i].h));
    S -= S % 16;
    v->size = S, v->scale = scale, v->n = 3 * ps->n;
    size_t hs = (size_t)3 * S * S, ls = hs / (scale * scale);
    v->hr = t2i_malloc(v->n * hs * sizeof(float));
    v->lr = t2i_malloc(v->n * ls * sizeof(float));
    v->bic = t2i_malloc(v->n * hs * sizeof(float));
    uint8_t *ua = t2i_malloc(hs), *ub = t2i_malloc(hs);
    double sum = 0.0;
    int kept = 0, flat = 0;
    for (int j = 0; j < 3 * ps->n; j++) {
        int k = kept;
        const t2i_image *im = &ps->img[j / 3];
        int q = j % 3; /* centre, upper-left quarter, lower-right quarter */
        double fx = q == 0 ? 0.5 : q == 1 ? 0.25 : 0.75;
        int x0 = (int)(fx * (im->w - S)), y0 = (int)(fx * (im->h - S));
        float *hr = v->hr + k * hs;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    hr[(size_t)c * S * S + (size_t)y * S + x] =
                        (float)im->px[((size_t)(y0 + y) * im->w + x0 + x) * 3 + c] / 127.5f - 1.0f;
        sr_make_lr(v->lr + k * ls, hr, S, S, scale);
        t2i_resize_chw(v->bic + k * hs, v->lr + k * ls, 3, S / scale, S / scale, S, S, T2I_RESIZE_BICUBIC);
        double p = psnr_float(v->bic + k * hs, hr, S, scale, ua, ub);
        /* a flat crop that bicubic reproduces exactly has an infinite PSNR, which would make
         * the mean infinite: such crops are left out (the last one stays if all are) */
        if (isinf(p) && !(j == 3 * ps->n - 1 && kept == 0)) {
            flat++;
            continue;
        }
        sum += p;
        kept++;
    }
    v->n = kept;
    v->psnr_bicubic = sum / v->n;
    if (flat) printf("sr train: %d validation crop%s left out: bicubic reproduces them exactly\n", flat, flat > 1 ? "s" : "");
    free(ua), free(ub);
}

static void val_free(val_set *v) {
    free(v->hr), free(v->lr), free(v->bic);
    memset(v, 0, sizeof *v);
}

/* Mean PSNR of the EMA on the validation crops; writes a sample grid when path given. */
static double val_run(const sr_model *m, const val_set *v, const char *sample_path, const char *latest_path) {
    int S = v->size, s = v->scale;
    size_t hs = (size_t)3 * S * S, ls = hs / (s * s);
    float *out = t2i_malloc(v->n * hs * sizeof(float));
    uint8_t *ua = t2i_malloc(hs), *ub = t2i_malloc(hs);
    double sum = 0.0;
    for (int k = 0; k < v->n; k++) {
        sr_upscale_image(&m->ema, s, v->lr + k * ls, S / s, S / s, out + k * hs, 0, 0);
        sum += psnr_float(out + k * hs, v->hr + k * hs, S, s, ua, ub);
    }
    if (sample_path) {
        int rows = T2I_MIN(2, v->n);
        float *grid = t2i_malloc((size_t)rows * 3 * hs * sizeof(float));
        for (int r = 0; r < rows; r++) {
            memcpy(grid + (size_t)(3 * r) * hs, v->bic + r * hs, hs * sizeof(float));
            memcpy(grid + (size_t)(3 * r + 1) * hs, out + r * hs, hs * sizeof(float));
            memcpy(grid + (size_t)(3 * r + 2) * hs, v->hr + r * hs, hs * sizeof(float));
        }
        if (t2i_save_grid(sample_path, grid, 3 * rows, 3, S, S, 3) != 0 ||
            t2i_save_grid(latest_path, grid, 3 * rows, 3, S, S, 3) != 0)
            fprintf(stderr, "t2i: warning: %s\n", t2i_error_msg());
        free(grid);
    }
    free(out), free(ua), free(ub);
    return sum / v->n;
}

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
    sr_gan_loss gan_loss;
} sr_train_opts;

/* The command's own part of the run (t2i_trainer holds the common one). */
typedef struct {
    /* flags (a new run's; with --resume only the lengths) */
    t2i_strs data, packages, holdout_packages, holdout_dirs;
    const char *preset, *gan_loss, *init, *init_from, *degrade;
    int focus, scale, width, blocks, crop, batch, d_width, d_sn;
    long steps, gan_steps, warmup;
    float lr, lr_min, lr_gan, lr_d, beta1, beta2, l1_weight, adv_weight, ema;
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
    int nopts_base; /* the options written when the data options are the defaults (old runs' table) */
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
        t2i_check_range_f("--adv-weight", g->adv_weight, 0, 1000) || t2i_check_range_i("--batch", g->batch, 1, 1024) ||
        t2i_check_range_i("--focus", g->focus, 1, 64) || t2i_check_range_i("--warmup", g->warmup, 0, 100000000) ||
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
    /* the old runs' options table unless a data option differs from its default */
    if (!o->packages[0] && !o->holdout_packages[0] && !o->holdout_dirs[0] && o->degrade == SR_DEGRADE_BICUBIC &&
        !strchr(o->data, ':'))
        t->nopts = g->nopts_base;
    sr_sources src = {o->data, o->packages, o->holdout_packages, o->holdout_dirs};
    const char *label = o->data[0] && t->nopts == g->nopts_base ? o->data : "--data/--package";
    double t0 = t2i_now();
    if (sr_list_sources(&g->fl, &src) != 0) return t2i_fail_err();
    if (t->resume && (rc = check_same_files(g, t)) != 0) return rc;
    if (photos_load(&g->train, &g->fl, label, 0, P, 1) != 0) return t2i_fail_err();
    for (int i = 0; i < g->fl.n; i++) g->nheld += g->fl.heldout[i];
    g->val_from_train = g->nheld == 0;
    /* a held-out photo that cannot be read must not silently turn validation into training data */
    if (!g->val_from_train && photos_load(&g->held, &g->fl, label, 1, 32, 0) != 0) return t2i_fail_err();
    if (t->nopts != g->nopts_base) {
        size_t px = 0;
        for (int i = 0; i < g->train.n; i++) px += (size_t)g->train.img[i].w * g->train.img[i].h;
        for (int i = 0; i < g->held.n; i++) px += (size_t)g->held.img[i].w * g->held.img[i].h;
        printf("sr train: %d files listed, %d training + %d held-out photos decoded (%.1f Mpixel) in %.1f s\n", g->fl.n,
               g->train.n, g->held.n, px / 1e6, t2i_now() - t0);
    }
    val_build(&g->val, g->val_from_train ? &g->train : &g->held, g->m.cfg.scale);
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
    g->last_val = val_run(&g->m, &g->val, sp, lp);
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
        training_item(g->hr + (size_t)b * 3 * P * P, g->lrb + (size_t)b * 3 * lp * lp, &g->train, P, s, o->focus,
                      (sr_degrade)o->degrade, g->cand, &t->rng);
    int lo = t->size > 1 ? t->lo : 0, nb = t->size > 1 ? t->hi - t->lo : B;
    const float *hr = g->hr + (size_t)lo * 3 * P * P, *lrb = g->lrb + (size_t)lo * 3 * lp * lp;
    g->lr_now = g->phase == 1 ? nn_schedule_lr(&g->sched, t->step) : o->lr_gan;
    if (g->phase == 1) g->stats.loss_l1 = sr_l1_step(m, &g->og, &g->arena, lrb, hr, nb, g->lr_now);
    else sr_gan_step(m, &g->og, &g->od, &g->arena, o->gan_loss, o->l1_weight, o->adv_weight, lrb, hr, nb, &g->stats);
    if (t->size > 1) {
        sr_step_stats *st = &g->stats;
        double v[5] = {st->loss_l1, st->loss_g_adv, st->loss_d, st->d_real, st->d_fake};
        t2i_dist_mean(v, 5);
        st->loss_l1 = (float)v[0], st->loss_g_adv = (float)v[1], st->loss_d = (float)v[2];
        st->d_real = (float)v[3], st->d_fake = (float)v[4];
    }
    float decay = o->ema;
    float warm = (float)(1.0 + g->ema_t) / (float)(10.0 + g->ema_t);
    if (warm < decay) decay = warm;
    nn_ema_update(&m->ep, &m->gp, decay);
    g->ema_t++;
    if (t2i_trainer_nonfinite(t, "L1", g->stats.loss_l1) ||
        (g->phase == 2 && (t2i_trainer_nonfinite(t, "D", g->stats.loss_d) ||
                           t2i_trainer_nonfinite(t, "adversarial", g->stats.loss_g_adv))))
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
                    "{\"step\":%ld,\"phase\":2,\"loss_l1\":%.6f,\"loss_g_adv\":%.5f,\"loss_d\":%.5f,\"d_real\":%.4f,"
                    "\"d_fake\":%.4f,\"step_ms\":%.1f}",
                    t->step, s->loss_l1, s->loss_g_adv, s->loss_d, s->d_real, s->d_fake, ms);
}

static void sr_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    sr_trainer *g = self;
    const sr_step_stats *s = &g->stats;
    (void)t;
    if (last) snprintf(buf, n, "val %.2f dB (bicubic %.2f)", g->last_val, g->val.psnr_bicubic);
    else if (g->phase == 1)
        snprintf(buf, n, "L1 %.4f  val %.2f dB (bicubic %.2f)", s->loss_l1, g->last_val, g->val.psnr_bicubic);
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
    val_free(&g->val);
    photos_free(&g->train), photos_free(&g->held);
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
                    .beta2 = 0.999f, .l1_weight = 1.0f, .adv_weight = 5e-3f, .ema = 0.999f};
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
                     /* written only when a data option is not its default (t.nopts cut to
                      * nopts_base), so a one-folder bicubic run keeps the old files */
                     NN_F_STR_DEF("packages", o->packages),
                     NN_F_STR_DEF("holdout_packages", o->holdout_packages),
                     NN_F_STR_DEF("holdout_dirs", o->holdout_dirs),
                     NN_F_ENUM_DEF("degrade", o->degrade, degrade_names, 0)};
    g.nopts_base = NN_NFIELDS(of) - 4;
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
