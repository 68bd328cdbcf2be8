/* vq_cmd.c - `t2i vq train|encode|decode|eval`: the VQ image tokenizer's commands.
 *
 *   t2i vq train  --data fashion-captions|DIR --preset b5 --steps N --out RUN [--resume]
 *       Run folder: config.json, metrics.jsonl (loss, recon, commit, psnr, perplexity,
 *       codes used, ...), checkpoint.safetensors (weights, codebook + EMA buffers, Adam
 *       moments, training state: step, RNG, loader position, optimizer step) and
 *       recon/step_NNNNNN.png grids (rows of originals over their reconstructions).
 *       --resume continues bit-identically (same thread count); Ctrl-C saves and exits
 *       130; a NaN/Inf loss stops with an error, keeping the last checkpoint.
 *       --init CKPT fine-tunes: a new run (fresh Adam) from CKPT's weights, codebook and
 *       EMA statistics, its architecture (size flags must agree), and without the first
 *       step's restart of every code (which would throw the codebook away).
 *   t2i vq encode --ckpt C --data SPEC --out codes.safetensors
 *       Tensors "codes" (N, g, g) int32 and "index" (N) int32 (item index in the source;
 *       "labels" (N) int32 too when the source has class labels); metadata "format"
 *       ("t2i-codes"), "source" (the data spec), "vq" (the checkpoint path), "config" (the
 *       VQ config JSON), "n_codes", "grid".
 *   t2i vq decode --ckpt C --codes F [--first i --n k] --out DIR
 *       One PNG per item (named by its source index) and grid.png.
 *   t2i vq eval   --ckpt C --data SPEC
 *       Reconstruction PSNR on [0, 1] RGB (reconstructions clamped), over all pixels of the
 *       set and averaged per image; codebook usage: perplexity of the code frequencies and
 *       the number of codes used. Last line is JSON.
 * Every command returns 0, 1 on a runtime error (one "t2i: ..." line naming the file and
 * the problem), 2 on bad flags, 130 when interrupted.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "data.h"
#include "image.h"
#include "optim.h"
#include "progress.h"
#include "trainer.h"
#include "safetensors.h"
#include "vq.h"

/* ----------------------------------------------------------------- helpers ---- */

/* Opens a dataset at the model's input shape, optionally keeping only its first `limit`
 * items. */
static int open_data(t2i_dataset *ds, const char *spec, const vq_config *c, long limit) {
    if (t2i_dataset_open(ds, spec, c->channels, c->res, c->res) != 0) return -1;
    if (ds->C != c->channels || ds->H != c->res || ds->W != c->res) {
        t2i_error_set("%s: images are %dx%dx%d, the VQ model expects %dx%dx%d", spec, ds->C, ds->H, ds->W,
                      c->channels, c->res, c->res);
        t2i_dataset_free(ds);
        return -1;
    }
    if (limit > 0 && limit < ds->n) {
        for (int i = (int)limit; i < ds->n; i++) {
            if (ds->files) free(ds->files[i]);
            if (ds->captions) free(ds->captions[i]);
        }
        ds->n = (int)limit;
    }
    if (ds->n <= 0) {
        t2i_error_set("%s: no images", spec);
        t2i_dataset_free(ds);
        return -1;
    }
    return 0;
}

/* Grid of n images: rows of `cols` originals, each followed by the row of their
 * reconstructions. */
static int save_recon_grid(const char *path, vq_model *m, nn_arena *a, const float *x, int n) {
    const vq_config *c = &m->cfg;
    size_t item = (size_t)c->channels * c->res * c->res;
    int S = m->grid * m->grid, cols = n < 8 ? n : 8;
    int32_t *codes = t2i_malloc((size_t)n * S * sizeof(int32_t));
    float *xr = t2i_malloc((size_t)n * item * sizeof(float));
    float *g = t2i_malloc((size_t)2 * n * item * sizeof(float));
    vq_encode(m, a, x, n, codes);
    vq_decode(m, a, codes, n, xr);
    int k = 0;
    for (int r0 = 0; r0 < n; r0 += cols) {
        int w = n - r0 < cols ? n - r0 : cols;
        memcpy(g + (size_t)k * item, x + (size_t)r0 * item, (size_t)w * item * sizeof(float));
        k += w;
        memcpy(g + (size_t)k * item, xr + (size_t)r0 * item, (size_t)w * item * sizeof(float));
        k += w;
    }
    int rc = t2i_save_grid(path, g, k, c->channels, c->res, c->res, cols);
    free(codes), free(xr), free(g);
    return rc;
}

static int count_alive(const vq_model *m, float threshold) {
    const float *cnt = ((vq_model *)m)->ps.data + m->ps.p[m->i_count].offset;
    int n = 0;
    for (int k = 0; k < m->cfg.n_codes; k++) n += cnt[k] >= threshold;
    return n;
}

/* ------------------------------------------------------------------- train ---- */

typedef struct {
    float lr, min_lr, beta1, beta2; /* min_lr < 0: the lr throughout; else a cosine from lr to it over the run */
    int batch;
    int decoder_only; /* train the decoder alone (the codes of every image stay) */
    long restart_every;
    float restart_threshold;
    long limit;
    int log_every, sample_every, ckpt_every; /* kept on --resume unless given again */
    char data[512];
} train_opts;

/* The command's own part of the run (t2i_trainer holds the common one). */
typedef struct {
    /* flags of a new run */
    const char *data, *preset, *init;
    int decoder_only;
    int width1, width2, res_hidden, n_res, code_dim, n_codes, res, channels, batch;
    long restart_every, limit;
    float lr, min_lr, beta1, beta2, beta, decay, restart_threshold;
    /* options and state saved in the checkpoint, besides the trainer's (its RNG draws the restarts) */
    train_opts o;
    long loader_epoch, opt_step;
    int loader_pos;
    /* model, data, optimizer and buffers */
    vq_config cfg;
    vq_model m;
    int built;
    t2i_dataset ds;
    t2i_loader L;
    nn_optim opt;
    nn_schedule sched;
    nn_arena arena;
    float *x, *xfix; /* a batch; fixed images for the reconstruction grids */
    int nfix, restarted;
    vq_stats s;
} vq_trainer;

static int vq_tr_load(void *self, const char *path, char **state_json) {
    vq_trainer *v = self;
    if (vq_load(&v->m, path, 1, state_json) != 0) return -1;
    v->built = 1;
    v->cfg = v->m.cfg;
    return 0;
}

static int vq_tr_check_flags(void *self, t2i_trainer *t) {
    vq_trainer *v = self;
    if (t->resume && v->init) return t2i_fail("vq train: --init starts a new run; --resume continues the one in --out"), 2;
    if (!t->resume && v->decoder_only && !v->init)
        return t2i_fail("vq train: --decoder-only fine-tunes the decoder of a trained VQ: give it with --init"), 2;
    if (t->resume && t2i_flag_given(t->cmd, "--decoder-only"))
        return t2i_fail("vq train: --decoder-only is an option of a new run (--resume keeps the run's)"), 2;
    return 0;
}

/* --init: the model (weights, codebook and its EMA statistics) and its configuration from
 * a checkpoint; a size flag that asks for another architecture is refused. */
static int init_model(vq_trainer *v, t2i_trainer *t) {
    if (vq_load(&v->m, v->init, 0, NULL) != 0) return t2i_fail_err();
    v->built = 1;
    v->cfg = v->m.cfg;
    const vq_config *c = &v->cfg;
    struct {
        const char *flag;
        int want, have;
    } ints[] = {{"--res", v->res, c->res},           {"--channels", v->channels, c->channels},
                {"--width1", v->width1, c->width1},  {"--width2", v->width2, c->width2},
                {"--res-hidden", v->res_hidden, c->res_hidden}, {"--n-res", v->n_res, c->n_res},
                {"--code-dim", v->code_dim, c->code_dim}, {"--codes", v->n_codes, c->n_codes}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (t2i_flag_given(t->cmd, ints[i].flag) && ints[i].want != ints[i].have)
            return t2i_fail("vq train: %s %d does not match %s (%d); the architecture comes from --init", ints[i].flag,
                            ints[i].want, v->init, ints[i].have), 2;
    if ((t2i_flag_given(t->cmd, "--beta") && v->beta != c->beta) || (t2i_flag_given(t->cmd, "--decay") && v->decay != c->decay))
        return t2i_fail("vq train: --beta and --decay are part of %s's configuration (%g, %g)", v->init, (double)c->beta,
                        (double)c->decay), 2;
    if (t2i_flag_given(t->cmd, "--preset") && strcmp(v->preset, c->preset) != 0)
        return t2i_fail("vq train: --preset %s does not match %s (%s)", v->preset, v->init, c->preset), 2;
    printf("vq train: starting from %s (weights, codebook); a fresh optimizer, no initial restart of the codes\n", v->init);
    return 0;
}

/* A new run's options and configuration from the flags. */
static int new_run(vq_trainer *v, t2i_trainer *t) {
    if (t2i_check_range_f("--lr", v->lr, NN_LR_MIN, NN_LR_MAX) || t2i_check_range_f("--beta1", v->beta1, 0, NN_BETA1_MAX) ||
        (v->min_lr != -1 && t2i_check_range_f("--min-lr", v->min_lr, 0, v->lr)) ||
        t2i_check_range_f("--beta2", v->beta2, 0, NN_BETA2_MAX) || t2i_check_range_i("--batch", v->batch, 1, 4096) ||
        t2i_check_range_i("--restart-every", v->restart_every, 0, 1L << 30) ||
        t2i_check_range_f("--restart-threshold", v->restart_threshold, 0, 1e6) ||
        t2i_check_range_i("--limit", v->limit, 0, 1L << 30))
        return 2;
    vq_config *cfg = &v->cfg;
    int rc;
    if (v->init) {
        if ((rc = init_model(v, t)) != 0) return rc;
    } else if (strcmp(v->preset, "b5") == 0) {
        vq_config_b5(cfg);
        static const char *const sized[] = {"--res", "--channels", "--width1", "--width2", "--res-hidden",
                                            "--n-res", "--code-dim", "--codes", "--beta", "--decay"};
        for (size_t i = 0; i < sizeof sized / sizeof sized[0]; i++)
            if (t2i_flag_given(t->cmd, sized[i]))
                return t2i_fail("--preset b5 is fixed (%s not allowed); use --preset custom", sized[i]), 2;
    } else if (strcmp(v->preset, "custom") == 0) {
        vq_config_b5(cfg);
        strcpy(cfg->preset, "custom");
        cfg->res = v->res, cfg->channels = v->channels, cfg->width1 = v->width1, cfg->width2 = v->width2;
        cfg->res_hidden = v->res_hidden, cfg->n_res = v->n_res, cfg->code_dim = v->code_dim, cfg->n_codes = v->n_codes;
        cfg->beta = v->beta, cfg->decay = v->decay;
    } else {
        return t2i_fail("--preset must be b5 or custom, got '%s'", v->preset), 2;
    }
    if (vq_config_check(cfg) != 0) return t2i_fail_err(), 2;
    train_opts *o = &v->o;
    if (strlen(v->data) >= sizeof o->data) return t2i_fail("--data: path too long"), 2;
    strcpy(o->data, v->data);
    o->lr = v->lr, o->min_lr = v->min_lr, o->beta1 = v->beta1, o->beta2 = v->beta2, o->batch = v->batch, o->restart_every = v->restart_every;
    o->restart_threshold = v->restart_threshold, o->limit = v->limit, o->decoder_only = v->decoder_only;
    return 0;
}

static int vq_tr_setup(void *self, t2i_trainer *t) {
    vq_trainer *v = self;
    train_opts *o = &v->o;
    int rc;
    if (!t->resume && (rc = new_run(v, t)) != 0) return rc;
    /* the cadences are options of the run: a new run's flags, or the checkpoint's unless given again */
    if (!t->resume || t2i_flag_given(t->cmd, "--log-every")) o->log_every = t->log_every;
    if (!t->resume || t2i_flag_given(t->cmd, "--sample-every")) o->sample_every = t->sample_every;
    if (!t->resume || t2i_flag_given(t->cmd, "--ckpt-every")) o->ckpt_every = t->ckpt_every;
    t->log_every = o->log_every, t->sample_every = o->sample_every, t->ckpt_every = o->ckpt_every;
    if (open_data(&v->ds, o->data, &v->cfg, o->limit) != 0) return t2i_fail_err();
    if (v->ds.n < o->batch)
        return t2i_fail("%s: %d images, fewer than one batch of %d", v->ds.source ? v->ds.source : o->data, v->ds.n,
                        o->batch);
    if (!t->resume && !v->init) {
        t2i_rng init_rng = t2i_rng_split(&t->rng, 1);
        vq_model_build(&v->m, &v->cfg, &init_rng);
        v->built = 1;
    }
    if ((rc = t2i_trainer_split(t, "--batch", o->batch)) != 0) return rc;
    t->per_epoch = v->ds.n / o->batch;
    t->default_steps = 5 * t->per_epoch;
    return 0;
}

static char *vq_tr_config(void *self, t2i_trainer *t) {
    vq_trainer *v = self;
    char *tail = t2i_trainer_init_tail(v->init);
    char *full = t2i_trainer_config(t, vq_config_to_json(&v->cfg), t->target, NULL, tail);
    free(tail);
    return full;
}

static int vq_tr_start(void *self, t2i_trainer *t) {
    vq_trainer *v = self;
    const vq_config *cfg = &v->cfg;
    t2i_loader_init(&v->L, &v->ds, v->o.batch, 1, t->seed);
    v->L.drop_last = 1;
    if (t->size > 1) v->L.part_lo = t->lo, v->L.part_hi = t->hi; /* decode this rank's rows only */
    if (t->resume && t2i_loader_seek(&v->L, v->loader_epoch, v->loader_pos) != 0)
        return t2i_fail("%s: %s", t->ckpt_path, t2i_error_msg());
    v->opt = nn_adam(v->o.lr, v->o.beta1, v->o.beta2, 1e-8f, 0.0f);
    v->opt.step = v->opt_step;
    v->m.decoder_only = v->o.decoder_only;
    /* the cosine runs over the planned length (extending a run stretches it) */
    v->sched = v->o.min_lr < 0 ? nn_schedule_constant(v->o.lr) : nn_schedule_cosine(v->o.lr, 0, t->target, v->o.min_lr);
    int B = v->o.batch;
    size_t item = (size_t)cfg->channels * cfg->res * cfg->res;
    v->x = t2i_malloc_aligned((size_t)B * item * sizeof(float));
    /* fixed images for the reconstruction grids: the first 32 items */
    v->nfix = v->ds.n < 32 ? v->ds.n : 32;
    v->xfix = t2i_malloc((size_t)v->nfix * item * sizeof(float));
    for (int i = 0; i < v->nfix; i++)
        if (t2i_dataset_get(&v->ds, i, v->xfix + (size_t)i * item) != 0) return t2i_fail_err();
    printf("vq train: %s, %d images %dx%dx%d, preset %s, codebook %d x %d, grid %dx%d, batch %d, steps %ld (%.2f "
           "epochs), %zu parameters, %d threads\n",
           v->ds.source ? v->ds.source : v->o.data, v->ds.n, cfg->channels, cfg->res, cfg->res, cfg->preset,
           cfg->n_codes, cfg->code_dim, v->m.grid, v->m.grid, B, t->target, (double)t->target / t->per_epoch,
           nn_params_count(&v->m.ps, 1), t2i_get_threads());
    return 0;
}

static int vq_tr_step(void *self, t2i_trainer *t) {
    vq_trainer *v = self;
    int got = t2i_loader_next(&v->L, v->x, NULL, NULL, NULL);
    if (got == 0) got = t2i_loader_next(&v->L, v->x, NULL, NULL, NULL);
    if (got < 0) return t2i_fail_err(), T2I_STEP_FAILED;
    /* a new model's first step draws its codebook from data; a fine-tuned one keeps its own */
    int restart = v->o.decoder_only                                               ? VQ_RESTART_NONE
                  : t->step == 0 && !v->init                                       ? VQ_RESTART_ALL
                  : v->o.restart_every > 0 && t->step % v->o.restart_every == 0 ? VQ_RESTART_DEAD
                                                                                 : VQ_RESTART_NONE;
    /* under MPI: this rank's rows of the global batch (restarts draw from all of them, vq.c) */
    int lo = t->size > 1 ? t->lo : 0, b = t->size > 1 ? t->hi - t->lo : v->o.batch;
    size_t item = (size_t)v->cfg.channels * v->cfg.res * v->cfg.res;
    v->opt.lr = nn_schedule_lr(&v->sched, t->step);
    vq_train_step(&v->m, &v->opt, &v->arena, v->x + (size_t)lo * item, b, restart, v->o.restart_threshold, &t->rng,
                  &v->s);
    v->restarted += v->s.restarted;
    return t2i_trainer_nonfinite(t, "", v->s.loss) ? T2I_STEP_NONFINITE : T2I_STEP_OK;
}

/* PSNR of [0, 1] images from the MSE of [-1, 1] ones: 10 log10(1 / (mse / 4)) */
static float psnr(const vq_stats *s) { return (float)(10.0 * log10(4.0 / fmax(s->recon, 1e-12))); }

static int vq_tr_metrics(void *self, t2i_trainer *t, char *buf, size_t n) {
    vq_trainer *v = self;
    const vq_stats *s = &v->s;
    double dt = t->step_seconds;
    int len = snprintf(buf, n,
                       "{\"step\":%ld,\"epoch\":%.3f,\"loss\":%.6f,\"recon\":%.6f,\"commit\":%.6f,\"psnr\":%.3f,\"lr\":%.3g,"
                       "\"perplexity\":%.2f,\"codes_used\":%d,\"codes_alive\":%d,\"restarted\":%d,\"step_ms\":%.1f,"
                       "\"images_per_s\":%.1f}",
                       t->step, (double)v->L.epoch + (double)v->L.pos / v->ds.n, s->loss, s->recon, s->commit, psnr(s),
                       (double)v->opt.lr, s->perplexity, s->codes_used, count_alive(&v->m, v->o.restart_threshold), v->restarted,
                       dt * 1e3, v->o.batch / dt);
    v->restarted = 0;
    return len;
}

static void vq_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    const vq_stats *s = &((vq_trainer *)self)->s;
    (void)t;
    if (last) snprintf(buf, n, "loss %.4f recon %.4f ppl %.0f", s->loss, s->recon, s->perplexity);
    else
        snprintf(buf, n, "loss %.4f recon %.4f (%.1f dB) ppl %.0f codes %d", s->loss, s->recon, psnr(s), s->perplexity,
                 s->codes_used);
}

static int vq_tr_sample(void *self, t2i_trainer *t) {
    vq_trainer *v = self;
    char *p = t2i_trainer_sample_path(t), *pl = t2i_trainer_latest_path(t);
    nn_arena_reset(&v->arena);
    if (save_recon_grid(p, &v->m, &v->arena, v->xfix, v->nfix) != 0 ||
        save_recon_grid(pl, &v->m, &v->arena, v->xfix, v->nfix) != 0)
        t2i_fail_err();
    free(p), free(pl);
    return 0;
}

static void vq_tr_sync(void *self) {
    vq_trainer *v = self;
    v->loader_epoch = v->L.epoch, v->loader_pos = v->L.pos, v->opt_step = v->opt.step;
}

static int vq_tr_save(void *self, const char *path, const char *state_json) {
    return vq_save(&((vq_trainer *)self)->m, path, state_json, 1);
}

static void vq_tr_finish(void *self, t2i_trainer *t) {
    (void)self;
    printf("vq train: %ld steps in %.1f s; checkpoint %s, reconstructions in %s\n", t->step - t->start_step,
           t->elapsed, t->ckpt_path, t->samples_dir);
}

static void vq_tr_release(void *self) {
    vq_trainer *v = self;
    nn_arena_free(&v->arena);
    t2i_free(v->x), free(v->xfix);
    t2i_loader_free(&v->L);
    if (v->built) vq_model_free(&v->m);
    t2i_dataset_free(&v->ds);
}

static const t2i_trainer_ops vq_ops = {
    .check_flags = vq_tr_check_flags,
    .load = vq_tr_load,
    .setup = vq_tr_setup,
    .config = vq_tr_config,
    .start = vq_tr_start,
    .step = vq_tr_step,
    .metrics = vq_tr_metrics,
    .progress = vq_tr_progress,
    .sample = vq_tr_sample,
    .sync = vq_tr_sync,
    .save = vq_tr_save,
    .finish = vq_tr_finish,
    .release = vq_tr_release,
};

static int cmd_train(int argc, char **argv) {
    vq_trainer v = {.data = "fashion-captions", .preset = "b5", .width1 = 64, .width2 = 128, .res_hidden = 128,
                    .n_res = 2, .code_dim = 64, .n_codes = 512, .res = 32, .channels = 3, .batch = 64,
                    .restart_every = 20, .lr = 3e-4f, .min_lr = -1, .beta1 = 0.9f, .beta2 = 0.999f, .beta = 0.25f, .decay = 0.99f,
                    .restart_threshold = 1.0f};
    nn_arena_init(&v.arena);
    t2i_trainer t;
    t2i_trainer_init(&t, &vq_ops, &v, "vq");
    t.out = "runs/vq", t.seed_arg = 1, t.sample_every = 500, t.ckpt_every = 500, t.log_every = 50;
    t.every_max = 1L << 30, t.steps_max = 1L << 40;
    t.samples = "recon";
    train_opts *o = &v.o;
    nn_field sf[] = {NN_F_LONG("step", t.step),          NN_F_LONG("target", t.target),
                     NN_F_RNG("rng", t.rng),             NN_F_LONG("loader_epoch", v.loader_epoch),
                     NN_F_INT("loader_pos", v.loader_pos), NN_F_LONG("opt_step", v.opt_step)};
    nn_field of[] = {NN_F_STR("data", o->data),
                     NN_F_FLOAT_IN("lr", o->lr, NN_LR_MIN, NN_LR_MAX),
                     NN_F_FLOAT_DEF_IN("min_lr", o->min_lr, -1, -1, NN_LR_MAX),
                     NN_F_FLOAT_IN("beta1", o->beta1, 0, NN_BETA1_MAX),
                     NN_F_FLOAT_IN("beta2", o->beta2, 0, NN_BETA2_MAX),
                     NN_F_INT_IN("batch", o->batch, 1, 4096),
                     NN_F_BOOL_DEF("decoder_only", o->decoder_only, 0),
                     NN_F_LONG_IN("restart_every", o->restart_every, 0, 1L << 30),
                     NN_F_FLOAT_IN("restart_threshold", o->restart_threshold, 0, 1e6),
                     NN_F_LONG_IN("limit", o->limit, 0, 1L << 30),
                     NN_F_INT_IN("log_every", o->log_every, 1, 1 << 30),
                     NN_F_INT_IN("sample_every", o->sample_every, 1, 1 << 30),
                     NN_F_INT_IN("ckpt_every", o->ckpt_every, 1, 1 << 30),
                     NN_F_SEED("seed", t.seed)};
    t.state = sf, t.nstate = NN_NFIELDS(sf), t.opts = of, t.nopts = NN_NFIELDS(of);
    t2i_flag flags[] = {
        {"--data", T2I_STR, &v.data, "fashion-captions[:train|:test] or an image folder"},
        {"--preset", T2I_STR, &v.preset, "b5 (bench/README.md B5 exactly) or custom (the size flags below)"},
        {"--init", T2I_STR, &v.init, "start from this VQ checkpoint's weights and codebook (fine-tuning; architecture "
                                     "from it, fresh optimizer)"},
        {"--decoder-only", T2I_BOOL, &v.decoder_only, "with --init: train the decoder alone (encoder and codebook "
                                                      "stay, so every image keeps its codes)"},
        {"--res", T2I_INT, &v.res, "custom: image side (multiple of 4; codes are res/4 per side)"},
        {"--channels", T2I_INT, &v.channels, "custom: image channels (1 or 3)"},
        {"--width1", T2I_INT, &v.width1, "custom: channels of the first convolution"},
        {"--width2", T2I_INT, &v.width2, "custom: channels after downsampling"},
        {"--res-hidden", T2I_INT, &v.res_hidden, "custom: inner channels of the residual blocks"},
        {"--n-res", T2I_INT, &v.n_res, "custom: residual blocks in the encoder and in the decoder"},
        {"--code-dim", T2I_INT, &v.code_dim, "custom: code vector size D"},
        {"--codes", T2I_INT, &v.n_codes, "custom: codebook size K"},
        {"--beta", T2I_FLOAT, &v.beta, "custom: commitment weight"},
        {"--decay", T2I_FLOAT, &v.decay, "custom: EMA decay of the codebook"},
        {"--lr", T2I_FLOAT, &v.lr, "learning rate (Adam)"},
        {"--min-lr", T2I_FLOAT, &v.min_lr, "decay the learning rate along a cosine to this over --steps (-1: no decay)"},
        {"--beta1", T2I_FLOAT, &v.beta1, "Adam beta1"},
        {"--beta2", T2I_FLOAT, &v.beta2, "Adam beta2"},
        {"--batch", T2I_INT, &v.batch, "batch size"},
        {"--steps", T2I_LONG, &t.steps, "training steps (0: 5 epochs)"},
        {"--restart-every", T2I_LONG, &v.restart_every, "restart dead codes every N steps (0: never)"},
        {"--restart-threshold", T2I_FLOAT, &v.restart_threshold, "a code is dead when its EMA count per batch is below this"},
        {"--limit", T2I_LONG, &v.limit, "use only the first N items of the data (0: all)"},
        {"--sample-every", T2I_INT, &t.sample_every, "write a reconstruction grid every N steps"},
        T2I_TRAIN_FLAGS(t),
    };
    t2i_cmd cmd = {"t2i vq train", "Train the VQ image tokenizer (VQ-VAE with an EMA codebook).", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "The first step initialises the codebook from encoder outputs of the first batch.\n"
                   "With --resume the model and training options come from the checkpoint; --steps\n"
                   "may extend the run."};
    return t2i_trainer_main(&t, &cmd, argc, argv);
}

/* ------------------------------------------------------------------ encode ---- */

static int cmd_encode(int argc, char **argv) {
    const char *ckpt = NULL, *data = "fashion-captions:train", *out = NULL;
    int batch = 256, threads = 0;
    long limit = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "VQ checkpoint (required)"},
        {"--data", T2I_STR, &data, "fashion-captions[:train|:test] or an image folder"},
        {"--out", T2I_STR, &out, "output .safetensors file (required)"},
        {"--batch", T2I_INT, &batch, "images per forward pass"},
        {"--limit", T2I_LONG, &limit, "encode only the first N items (0: all)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i vq encode", "Encode a dataset to VQ codes once (for the transformer's trainer).",
                   "--ckpt FILE --out FILE [options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "Writes tensors codes (N, g, g) int32, index (N) int32 (item index in the source)\n"
                   "and labels (N) int32 when the source has classes; metadata source, vq, config."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("vq encode: unexpected argument '%s'", cmd.pos[0]), 2;
    if (!ckpt) return t2i_fail("vq encode: --ckpt is required"), 2;
    if (!out) return t2i_fail("vq encode: --out is required"), 2;
    if (t2i_check_output_file("--out", out, NULL) != 0) return 2;
    if (t2i_check_range_i("--batch", batch, 1, 65536) || t2i_check_range_i("--limit", limit, 0, 1L << 30)) return 2;
    t2i_set_threads(threads);

    vq_model m;
    if (vq_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    t2i_dataset ds;
    if (open_data(&ds, data, &m.cfg, limit) != 0) {
        vq_model_free(&m);
        return t2i_fail_err();
    }
    int S = m.grid * m.grid, N = ds.n;
    size_t item = (size_t)m.cfg.channels * m.cfg.res * m.cfg.res;
    int32_t *codes = t2i_malloc((size_t)N * S * sizeof(int32_t));
    int32_t *index = t2i_malloc((size_t)N * sizeof(int32_t));
    int32_t *labels = ds.labels ? t2i_malloc((size_t)N * sizeof(int32_t)) : NULL;
    int *idx = t2i_malloc((size_t)batch * sizeof(int));
    int *lab = t2i_malloc((size_t)batch * sizeof(int));
    float *x = t2i_malloc_aligned((size_t)batch * item * sizeof(float));
    t2i_loader L;
    t2i_loader_init(&L, &ds, batch, 0, 0);
    nn_arena a;
    nn_arena_init(&a);
    t2i_install_sigint();
    t2i_progress prog;
    t2i_progress_start(&prog, "encode", 0, N);
    double t0 = t2i_now(), t_enc = 0.0;
    int done = 0, rc = 0;
    while (done < N) {
        int got = t2i_loader_next(&L, x, lab, NULL, idx);
        if (got <= 0) {
            if (got < 0) rc = t2i_fail_err();
            else rc = t2i_fail("%s: the loader ended after %d of %d items", data, done, N);
            break;
        }
        double te = t2i_now();
        nn_arena_reset(&a);
        vq_encode(&m, &a, x, got, codes + (size_t)done * S);
        t_enc += t2i_now() - te;
        for (int i = 0; i < got; i++) {
            index[done + i] = idx[i];
            if (labels) labels[done + i] = lab[i];
        }
        done += got;
        t2i_progress_update(&prog, done, NULL);
        if (t2i_interrupted) {
            rc = 128 + (int)t2i_interrupted;
            fprintf(stderr, "t2i: interrupted; nothing written\n");
            break;
        }
    }
    double total = t2i_now() - t0;
    if (rc == 0) {
        t2i_progress_end(&prog, done, NULL);
        st_writer *w = st_writer_new();
        st_writer_meta(w, "format", "t2i-codes");
        st_writer_meta(w, "source", data);
        st_writer_meta(w, "vq", ckpt);
        char *cj = vq_config_to_json(&m.cfg);
        st_writer_meta(w, "config", cj);
        char num[32];
        snprintf(num, sizeof num, "%d", m.cfg.n_codes);
        st_writer_meta(w, "n_codes", num);
        snprintf(num, sizeof num, "%d", m.grid);
        st_writer_meta(w, "grid", num);
        st_writer_add_raw(w, "codes", ST_I32, 3, (int64_t[]){N, m.grid, m.grid}, codes);
        st_writer_add_raw(w, "index", ST_I32, 1, (int64_t[]){N}, index);
        if (labels) st_writer_add_raw(w, "labels", ST_I32, 1, (int64_t[]){N}, labels);
        if (st_writer_save(w, out) != 0) rc = t2i_fail_err();
        st_writer_free(w);
        free(cj);
        if (rc == 0)
            printf("vq encode: %d images -> %s (%dx%d codes of %d); encoder %.0f images/s, total %.0f images/s, "
                   "%d threads\n",
                   N, out, m.grid, m.grid, m.cfg.n_codes, N / fmax(t_enc, 1e-9), N / fmax(total, 1e-9),
                   t2i_get_threads());
    }
    nn_arena_free(&a);
    t2i_loader_free(&L);
    free(codes), free(index), free(labels), free(idx), free(lab), t2i_free(x);
    t2i_dataset_free(&ds);
    vq_model_free(&m);
    return rc;
}

/* ------------------------------------------------------------------ decode ---- */

static int cmd_decode(int argc, char **argv) {
    const char *ckpt = NULL, *codes_path = NULL, *out = "vq_decoded";
    long first = 0, n = 64;
    int nrow = 8, threads = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "VQ checkpoint (required)"},
        {"--codes", T2I_STR, &codes_path, "codes file from `t2i vq encode` (required)"},
        {"--first", T2I_LONG, &first, "first item to decode"},
        {"--n", T2I_LONG, &n, "number of items (capped at the end of the file)"},
        {"--nrow", T2I_INT, &nrow, "images per grid row"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "output folder"},
    };
    t2i_cmd cmd = {"t2i vq decode", "Decode VQ codes back to images (PNGs and grid.png).",
                   "--ckpt FILE --codes FILE [options]", flags, (int)(sizeof flags / sizeof flags[0])};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("vq decode: unexpected argument '%s'", cmd.pos[0]), 2;
    if (!ckpt || !codes_path) return t2i_fail("vq decode: --ckpt and --codes are required"), 2;
    if (t2i_check_range_i("--first", first, 0, 1L << 40) || t2i_check_range_i("--n", n, 1, 1L << 30) ||
        t2i_check_range_i("--nrow", nrow, 1, 1024))
        return 2;
    t2i_set_threads(threads);

    vq_model m;
    if (vq_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    vq_codes cf;
    if (vq_codes_load(&cf, codes_path) != 0) {
        vq_model_free(&m);
        return t2i_fail_err();
    }
    int rc = 0, g = m.grid, S = g * g;
    float *imgs = NULL;
    if (cf.grid != g || cf.n_codes != m.cfg.n_codes) {
        rc = t2i_fail("%s: %dx%d codes of %d, the VQ model %s has %dx%d of %d", codes_path, cf.grid, cf.grid, cf.n_codes,
                      ckpt, g, g, m.cfg.n_codes);
        goto done;
    }
    if (first >= cf.n) {
        rc = t2i_fail("%s: --first %ld is past the last item (%d items)", codes_path, first, cf.n);
        goto done;
    }
    if (n > cf.n - first) n = cf.n - first;
    size_t item = (size_t)m.cfg.channels * m.cfg.res * m.cfg.res;
    imgs = t2i_malloc((size_t)n * item * sizeof(float));
    nn_arena a;
    nn_arena_init(&a);
    vq_decode(&m, &a, cf.codes + (size_t)first * S, (int)n, imgs);
    nn_arena_free(&a);
    if (t2i_mkdirs(out) != 0) {
        rc = t2i_fail_err();
        goto done;
    }
    uint8_t *px = t2i_malloc(item);
    for (long i = 0; i < n && rc == 0; i++) {
        long id = cf.index[first + i];
        t2i_chw_to_u8(px, imgs + (size_t)i * item, m.cfg.channels, m.cfg.res, m.cfg.res);
        char *p = t2i_asprintf("%s/%05ld.png", out, id);
        if (t2i_image_save_png(p, px, m.cfg.res, m.cfg.res, m.cfg.channels) != 0) rc = t2i_fail_err();
        free(p);
    }
    free(px);
    if (rc == 0) {
        char *p = t2i_asprintf("%s/grid.png", out);
        if (t2i_save_grid(p, imgs, (int)n, m.cfg.channels, m.cfg.res, m.cfg.res, nrow) != 0) rc = t2i_fail_err();
        free(p);
    }
    if (rc == 0) printf("vq decode: %ld images (items %ld..%ld) -> %s\n", n, first, first + n - 1, out);
done:
    free(imgs);
    vq_codes_free(&cf);
    vq_model_free(&m);
    return rc;
}

/* -------------------------------------------------------------------- eval ---- */

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = "fashion-captions:test";
    int batch = 256, threads = 0;
    long limit = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "VQ checkpoint (required)"},
        {"--data", T2I_STR, &data, "fashion-captions[:train|:test] or an image folder"},
        {"--limit", T2I_LONG, &limit, "evaluate only the first N items (0: all)"},
        {"--batch", T2I_INT, &batch, "images per forward pass"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i vq eval", "Reconstruction PSNR and codebook usage of a VQ tokenizer on a dataset.",
                   "--ckpt FILE [options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "PSNR is on [0, 1] images (reconstructions clamped), RGB, over all pixels of the set\n"
                   "(psnr) and averaged per image (psnr_per_image). Perplexity is exp of the entropy of\n"
                   "the code frequencies over the set."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("vq eval: unexpected argument '%s'", cmd.pos[0]), 2;
    if (!ckpt) return t2i_fail("vq eval: --ckpt is required"), 2;
    if (t2i_check_range_i("--batch", batch, 1, 65536) || t2i_check_range_i("--limit", limit, 0, 1L << 30)) return 2;
    t2i_set_threads(threads);

    vq_model m;
    if (vq_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    t2i_dataset ds;
    if (open_data(&ds, data, &m.cfg, limit) != 0) {
        vq_model_free(&m);
        return t2i_fail_err();
    }
    int S = m.grid * m.grid, K = m.cfg.n_codes, N = ds.n;
    size_t item = (size_t)m.cfg.channels * m.cfg.res * m.cfg.res;
    float *x = t2i_malloc_aligned((size_t)batch * item * sizeof(float));
    float *xr = t2i_malloc_aligned((size_t)batch * item * sizeof(float));
    int32_t *codes = t2i_malloc((size_t)batch * S * sizeof(int32_t));
    float *counts = t2i_calloc((size_t)K, sizeof(float));
    t2i_loader L;
    t2i_loader_init(&L, &ds, batch, 0, 0);
    nn_arena a;
    nn_arena_init(&a);
    t2i_install_sigint();
    t2i_progress prog;
    t2i_progress_start(&prog, "eval", 0, N);
    double se_total = 0.0, psnr_sum = 0.0;
    int done = 0, rc = 0;
    while (done < N) {
        int got = t2i_loader_next(&L, x, NULL, NULL, NULL);
        if (got <= 0) {
            rc = got < 0 ? t2i_fail_err() : t2i_fail("%s: the loader ended after %d of %d items", data, done, N);
            break;
        }
        nn_arena_reset(&a);
        vq_encode(&m, &a, x, got, codes);
        vq_decode(&m, &a, codes, got, xr);
        for (size_t i = 0; i < (size_t)got * S; i++) counts[codes[i]] += 1.0f;
        for (int b = 0; b < got; b++) {
            double se = 0.0;
            const float *xo = x + (size_t)b * item, *xb = xr + (size_t)b * item;
            for (size_t k = 0; k < item; k++) {
                double u = 0.5 * (xo[k] + 1.0), v = 0.5 * (xb[k] + 1.0);
                v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
                se += (u - v) * (u - v);
            }
            se_total += se;
            psnr_sum += 10.0 * log10(1.0 / fmax(se / item, 1e-10));
        }
        done += got;
        t2i_progress_update(&prog, done, NULL);
        if (t2i_interrupted) {
            rc = 128 + (int)t2i_interrupted;
            fprintf(stderr, "t2i: interrupted\n");
            break;
        }
    }
    if (rc == 0) {
        t2i_progress_end(&prog, done, NULL);
        int used;
        float ppl = vq_perplexity(counts, K, &used);
        double psnr = 10.0 * log10(1.0 / fmax(se_total / ((double)N * item), 1e-10));
        printf("vq eval: %s, %d images: PSNR %.2f dB (per-image mean %.2f dB); codebook perplexity %.1f, %d of %d "
               "codes used\n",
               data, N, psnr, psnr_sum / N, ppl, used, K);
        printf("{\"eval\":\"vq\",\"images\":%d,\"psnr\":%.3f,\"psnr_per_image\":%.3f,\"perplexity\":%.2f,"
               "\"codes_used\":%d,\"n_codes\":%d}\n",
               N, psnr, psnr_sum / N, ppl, used, K);
    }
    nn_arena_free(&a);
    t2i_loader_free(&L);
    t2i_free(x), t2i_free(xr), free(codes), free(counts);
    t2i_dataset_free(&ds);
    vq_model_free(&m);
    return rc;
}

int vq_cmd(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", cmd_train, "train the tokenizer (VQ-VAE, EMA codebook) on images"},
        {"encode", cmd_encode, "encode a dataset to a codes file"},
        {"decode", cmd_decode, "decode a codes file to PNGs"},
        {"eval", cmd_eval, "reconstruction PSNR and codebook usage"},
    };
    return t2i_dispatch("t2i vq", "The VQ image tokenizer of the DALL-E-style path (32x32 images <-> 8x8 codes).",
                        subs, (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
