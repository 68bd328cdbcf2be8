/* vq_cmd.c - `t2i vq train|encode|decode|eval`: the VQ image tokenizer's commands.
 *
 *   t2i vq train  --data fashion-captions|DIR --preset b5 --steps N --out RUN [--resume]
 *       Run folder: config.json, metrics.jsonl (loss, recon, commit, psnr, perplexity,
 *       codes used, ...), checkpoint.safetensors (weights, codebook + EMA buffers, Adam
 *       moments, training state: step, RNG, loader position, optimizer step) and
 *       recon/step_NNNNNN.png grids (rows of originals over their reconstructions).
 *       --resume continues bit-identically (same thread count); Ctrl-C saves and exits
 *       130; a NaN/Inf loss stops with an error, keeping the last checkpoint.
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
#include <cjson/cJSON.h>
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

typedef struct {
    float lr, beta1, beta2;
    int batch;
    long restart_every;
    float restart_threshold;
    long limit;
    int log_every, sample_every, ckpt_every; /* kept on --resume unless given again */
    uint64_t seed;
    char data[512];
} train_opts;

typedef struct {
    long step, target;
    t2i_rng rng;          /* restarts */
    long loader_epoch;
    int loader_pos;
    long opt_step;
} train_state;

/* The state and options as checkpoint metadata (nn_state_to_json). */
#define STATE_FIELDS(s)                                                                                  \
    nn_field sf[] = {NN_F_LONG("step", (s)->step),          NN_F_LONG("target", (s)->target),             \
                     NN_F_RNG("rng", (s)->rng),             NN_F_LONG("loader_epoch", (s)->loader_epoch), \
                     NN_F_INT("loader_pos", (s)->loader_pos), NN_F_LONG("opt_step", (s)->opt_step)}
#define OPTS_FIELDS(o)                                                                                   \
    nn_field of[] = {NN_F_STR("data", (o)->data),                                                        \
                     NN_F_FLOAT_IN("lr", (o)->lr, NN_LR_MIN, NN_LR_MAX),                                 \
                     NN_F_FLOAT_IN("beta1", (o)->beta1, 0, NN_BETA1_MAX),                                \
                     NN_F_FLOAT_IN("beta2", (o)->beta2, 0, NN_BETA2_MAX),                                \
                     NN_F_INT_IN("batch", (o)->batch, 1, 4096),                                          \
                     NN_F_LONG_IN("restart_every", (o)->restart_every, 0, 1L << 30),                     \
                     NN_F_FLOAT_IN("restart_threshold", (o)->restart_threshold, 0, 1e6),                 \
                     NN_F_LONG_IN("limit", (o)->limit, 0, 1L << 30),                                     \
                     NN_F_INT_IN("log_every", (o)->log_every, 1, 1 << 30),                               \
                     NN_F_INT_IN("sample_every", (o)->sample_every, 1, 1 << 30),                         \
                     NN_F_INT_IN("ckpt_every", (o)->ckpt_every, 1, 1 << 30),                             \
                     NN_F_SEED("seed", (o)->seed)}

static char *opts_to_json(train_opts *o) {
    OPTS_FIELDS(o);
    return nn_fields_to_json(of, NN_NFIELDS(of));
}

static char *state_to_json(train_state *s, train_opts *o) {
    STATE_FIELDS(s);
    OPTS_FIELDS(o);
    return nn_state_to_json(sf, NN_NFIELDS(sf), of, NN_NFIELDS(of));
}

static int state_from_json(train_state *s, train_opts *o, const char *json) {
    STATE_FIELDS(s);
    OPTS_FIELDS(o);
    return nn_state_from_json(json, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of));
}

static int save_ckpt(const vq_model *m, const char *path, train_state *st, train_opts *o) {
    char *sj = state_to_json(st, o);
    int rc = vq_save(m, path, sj, 1);
    free(sj);
    return rc;
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

static int cmd_train(int argc, char **argv) {
    const char *data = "fashion-captions", *preset = "b5", *out = "runs/vq";
    int width1 = 64, width2 = 128, res_hidden = 128, n_res = 2, code_dim = 64, n_codes = 512, res = 32, channels = 3;
    int batch = 64, threads = 0, resume = 0, sample_every = 500, ckpt_every = 500, log_every = 50;
    long steps = 0, seed = 1, restart_every = 20, limit = 0;
    float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.999f, beta = 0.25f, decay = 0.99f, restart_threshold = 1.0f;
    t2i_flag flags[] = {
        {"--data", T2I_STR, &data, "fashion-captions[:train|:test] or an image folder"},
        {"--preset", T2I_STR, &preset, "b5 (bench/README.md B5 exactly) or custom (the size flags below)"},
        {"--res", T2I_INT, &res, "custom: image side (multiple of 4; codes are res/4 per side)"},
        {"--channels", T2I_INT, &channels, "custom: image channels (1 or 3)"},
        {"--width1", T2I_INT, &width1, "custom: channels of the first convolution"},
        {"--width2", T2I_INT, &width2, "custom: channels after downsampling"},
        {"--res-hidden", T2I_INT, &res_hidden, "custom: inner channels of the residual blocks"},
        {"--n-res", T2I_INT, &n_res, "custom: residual blocks in the encoder and in the decoder"},
        {"--code-dim", T2I_INT, &code_dim, "custom: code vector size D"},
        {"--codes", T2I_INT, &n_codes, "custom: codebook size K"},
        {"--beta", T2I_FLOAT, &beta, "custom: commitment weight"},
        {"--decay", T2I_FLOAT, &decay, "custom: EMA decay of the codebook"},
        {"--lr", T2I_FLOAT, &lr, "learning rate (Adam)"},
        {"--beta1", T2I_FLOAT, &beta1, "Adam beta1"},
        {"--beta2", T2I_FLOAT, &beta2, "Adam beta2"},
        {"--batch", T2I_INT, &batch, "batch size"},
        {"--steps", T2I_LONG, &steps, "training steps (0: 5 epochs)"},
        {"--restart-every", T2I_LONG, &restart_every, "restart dead codes every N steps (0: never)"},
        {"--restart-threshold", T2I_FLOAT, &restart_threshold, "a code is dead when its EMA count per batch is below this"},
        {"--limit", T2I_LONG, &limit, "use only the first N items of the data (0: all)"},
        {"--sample-every", T2I_INT, &sample_every, "write a reconstruction grid every N steps"},
        {"--ckpt-every", T2I_INT, &ckpt_every, "save a checkpoint every N steps"},
        {"--log-every", T2I_INT, &log_every, "append to metrics.jsonl every N steps"},
        {"--seed", T2I_LONG, &seed, "random seed"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "run folder"},
        {"--resume", T2I_BOOL, &resume, "continue the run in --out from its checkpoint"},
    };
    t2i_cmd cmd = {"t2i vq train", "Train the VQ image tokenizer (VQ-VAE with an EMA codebook).", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "The first step initialises the codebook from encoder outputs of the first batch.\n"
                   "With --resume the model and training options come from the checkpoint; --steps\n"
                   "may extend the run."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("vq train: unexpected argument '%s'", cmd.pos[0]), 2;
    if (t2i_check_range_i("--sample-every", sample_every, 1, 1L << 30) ||
        t2i_check_range_i("--ckpt-every", ckpt_every, 1, 1L << 30) ||
        t2i_check_range_i("--log-every", log_every, 1, 1L << 30) || t2i_check_range_i("--steps", steps, 0, 1L << 40))
        return 2;
    t2i_set_threads(threads);

    train_opts o;
    memset(&o, 0, sizeof o);
    train_state st;
    memset(&st, 0, sizeof st);
    vq_config cfg;
    vq_model m;
    int built = 0, rc = 1;
    char *ckpt_path = t2i_asprintf("%s/checkpoint.safetensors", out);
    t2i_dataset ds;
    memset(&ds, 0, sizeof ds);

    if (resume) {
        if (!t2i_path_exists(ckpt_path)) {
            t2i_fail("%s: no checkpoint to resume from", ckpt_path);
            goto out;
        }
        char *sj = NULL;
        if (vq_load(&m, ckpt_path, 1, &sj) != 0) {
            t2i_fail_err();
            goto out;
        }
        built = 1;
        if (!sj || state_from_json(&st, &o, sj) != 0) {
            if (!sj) t2i_error_set("no training state");
            t2i_fail("%s: %s", ckpt_path, t2i_error_msg());
            free(sj);
            goto out;
        }
        free(sj);
        cfg = m.cfg;
        if (t2i_flag_given(&cmd, "--log-every")) o.log_every = log_every;
        if (t2i_flag_given(&cmd, "--sample-every")) o.sample_every = sample_every;
        if (t2i_flag_given(&cmd, "--ckpt-every")) o.ckpt_every = ckpt_every;
    } else {
        if (t2i_path_exists(ckpt_path)) {
            t2i_fail("%s already holds a run (%s); pass --resume to continue it or choose another --out", out, ckpt_path);
            goto out;
        }
        if (t2i_check_range_f("--lr", lr, NN_LR_MIN, NN_LR_MAX) ||
            t2i_check_range_f("--beta1", beta1, 0, NN_BETA1_MAX) ||
            t2i_check_range_f("--beta2", beta2, 0, NN_BETA2_MAX) || t2i_check_range_i("--batch", batch, 1, 4096) ||
            t2i_check_range_i("--restart-every", restart_every, 0, 1L << 30) ||
            t2i_check_range_f("--restart-threshold", restart_threshold, 0, 1e6) ||
            t2i_check_range_i("--limit", limit, 0, 1L << 30)) {
            rc = 2;
            goto out;
        }
        if (strcmp(preset, "b5") == 0) {
            vq_config_b5(&cfg);
            static const char *const sized[] = {"--res", "--channels", "--width1", "--width2", "--res-hidden",
                                                "--n-res", "--code-dim", "--codes", "--beta", "--decay"};
            for (size_t i = 0; i < sizeof sized / sizeof sized[0]; i++)
                if (t2i_flag_given(&cmd, sized[i])) {
                    t2i_fail("--preset b5 is fixed (%s not allowed); use --preset custom", sized[i]);
                    rc = 2;
                    goto out;
                }
        } else if (strcmp(preset, "custom") == 0) {
            vq_config_b5(&cfg);
            strcpy(cfg.preset, "custom");
            cfg.res = res, cfg.channels = channels, cfg.width1 = width1, cfg.width2 = width2;
            cfg.res_hidden = res_hidden, cfg.n_res = n_res, cfg.code_dim = code_dim, cfg.n_codes = n_codes;
            cfg.beta = beta, cfg.decay = decay;
        } else {
            t2i_fail("--preset must be b5 or custom, got '%s'", preset);
            rc = 2;
            goto out;
        }
        if (vq_config_check(&cfg) != 0) {
            t2i_fail_err();
            rc = 2;
            goto out;
        }
        if (strlen(data) >= sizeof o.data) {
            t2i_fail("--data: path too long");
            rc = 2;
            goto out;
        }
        strcpy(o.data, data);
        o.lr = lr, o.beta1 = beta1, o.beta2 = beta2, o.batch = batch, o.restart_every = restart_every;
        o.restart_threshold = restart_threshold, o.limit = limit, o.seed = (uint64_t)seed;
        o.log_every = log_every, o.sample_every = sample_every, o.ckpt_every = ckpt_every;
    }

    if (open_data(&ds, o.data, &cfg, o.limit) != 0) {
        t2i_fail_err();
        goto out;
    }
    if (ds.n < o.batch) {
        t2i_fail("%s: %d images, fewer than one batch of %d", ds.source ? ds.source : o.data, ds.n, o.batch);
        goto out;
    }
    if (!resume) {
        t2i_rng_seed(&st.rng, o.seed);
        t2i_rng init_rng = t2i_rng_split(&st.rng, 1);
        vq_model_build(&m, &cfg, &init_rng);
        built = 1;
    }
    long per_epoch = ds.n / o.batch;
    if (!t2i_flag_given(&cmd, "--steps") || steps == 0) steps = resume && st.target > 0 ? st.target : 5 * per_epoch;
    if (steps < st.step) {
        t2i_fail("--steps %ld is before the checkpoint's step %ld", steps, st.step);
        goto out;
    }
    st.target = steps;

    t2i_run run;
    if (t2i_run_open(&run, out) != 0) {
        t2i_fail_err();
        goto out;
    }
    char *recon_dir = t2i_run_path(&run, "recon");
    if (t2i_mkdirs(recon_dir) != 0) {
        t2i_fail_err();
        free(recon_dir);
        t2i_run_close(&run);
        goto out;
    }
    if (!resume) {
        char *cj = vq_config_to_json(&cfg), *oj = opts_to_json(&o);
        char *full = t2i_asprintf("{\"model\":%s,\"train\":%s,\"steps\":%ld,\"threads\":%d}", cj, oj, steps,
                                  t2i_get_threads());
        int wrc = t2i_run_write_config(&run, full);
        free(cj), free(oj), free(full);
        if (wrc != 0) {
            t2i_fail_err();
            free(recon_dir);
            t2i_run_close(&run);
            goto out;
        }
    }

    t2i_loader L;
    t2i_loader_init(&L, &ds, o.batch, 1, o.seed);
    L.drop_last = 1;
    if (resume && t2i_loader_seek(&L, st.loader_epoch, st.loader_pos) != 0) {
        t2i_fail("%s: %s", ckpt_path, t2i_error_msg());
        t2i_loader_free(&L);
        t2i_run_close(&run);
        goto out;
    }
    nn_optim opt = nn_adam(o.lr, o.beta1, o.beta2, 1e-8f, 0.0f);
    opt.step = st.opt_step;

    int B = o.batch;
    size_t item = (size_t)cfg.channels * cfg.res * cfg.res;
    float *x = t2i_malloc_aligned((size_t)B * item * sizeof(float));
    /* fixed images for the reconstruction grids: the first 32 items */
    int nfix = ds.n < 32 ? ds.n : 32;
    float *xfix = t2i_malloc((size_t)nfix * item * sizeof(float));
    for (int i = 0; i < nfix; i++)
        if (t2i_dataset_get(&ds, i, xfix + (size_t)i * item) != 0) {
            t2i_fail_err();
            t2i_free(x), free(xfix), free(recon_dir);
            t2i_loader_free(&L);
            t2i_run_close(&run);
            goto out;
        }
    nn_arena arena;
    nn_arena_init(&arena);

    printf("vq train: %s, %d images %dx%dx%d, preset %s, codebook %d x %d, grid %dx%d, batch %d, steps %ld (%.2f "
           "epochs), %zu parameters, %d threads\n",
           ds.source ? ds.source : o.data, ds.n, cfg.channels, cfg.res, cfg.res, cfg.preset, cfg.n_codes, cfg.code_dim,
           m.grid, m.grid, B, steps, (double)steps / per_epoch, nn_params_count(&m.ps, 1), t2i_get_threads());
    fflush(stdout);
    t2i_install_sigint();
    t2i_progress prog;
    t2i_progress_start(&prog, "vq", st.step, steps);
    double t_start = t2i_now();
    vq_stats s;
    memset(&s, 0, sizeof s);
    int restarted = 0;
    rc = 0;
    while (st.step < steps) {
        double t0 = t2i_now();
        int got = t2i_loader_next(&L, x, NULL, NULL, NULL);
        if (got == 0) got = t2i_loader_next(&L, x, NULL, NULL, NULL);
        if (got < 0) {
            t2i_fail_err();
            rc = 1;
            break;
        }
        int restart = st.step == 0                                                   ? VQ_RESTART_ALL
                      : o.restart_every > 0 && st.step % o.restart_every == 0 ? VQ_RESTART_DEAD
                                                                                     : VQ_RESTART_NONE;
        vq_train_step(&m, &opt, &arena, x, B, restart, o.restart_threshold, &st.rng, &s);
        restarted += s.restarted;
        st.step++;
        double dt = t2i_now() - t0;
        if (!isfinite(s.loss)) {
            t2i_fail("step %ld: loss is %s; stopping (the last checkpoint, if any, is %s; try a lower --lr)", st.step,
                     isnan(s.loss) ? "NaN" : "Inf", ckpt_path);
            rc = 1;
            break;
        }
        /* PSNR of [0, 1] images from the MSE of [-1, 1] ones: 10 log10(1 / (mse / 4)) */
        float psnr = (float)(10.0 * log10(4.0 / fmax(s.recon, 1e-12)));
        int last = st.step == steps;
        if (st.step % o.log_every == 0 || last) {
            char line[640];
            snprintf(line, sizeof line,
                     "{\"step\":%ld,\"epoch\":%.3f,\"loss\":%.6f,\"recon\":%.6f,\"commit\":%.6f,\"psnr\":%.3f,"
                     "\"perplexity\":%.2f,\"codes_used\":%d,\"codes_alive\":%d,\"restarted\":%d,\"step_ms\":%.1f,"
                     "\"images_per_s\":%.1f}",
                     st.step, (double)L.epoch + (double)L.pos / ds.n, s.loss, s.recon, s.commit, psnr, s.perplexity,
                     s.codes_used, count_alive(&m, o.restart_threshold), restarted, dt * 1e3, B / dt);
            t2i_run_metrics(&run, line);
            restarted = 0;
        }
        t2i_progress_update(&prog, st.step, "loss %.4f recon %.4f (%.1f dB) ppl %.0f codes %d", s.loss, s.recon, psnr,
                            s.perplexity, s.codes_used);
        if (st.step % o.sample_every == 0 || last) {
            char *p = t2i_asprintf("%s/step_%06ld.png", recon_dir, st.step);
            char *pl = t2i_asprintf("%s/latest.png", recon_dir);
            nn_arena_reset(&arena);
            if (save_recon_grid(p, &m, &arena, xfix, nfix) != 0 || save_recon_grid(pl, &m, &arena, xfix, nfix) != 0)
                t2i_fail_err();
            free(p), free(pl);
        }
        if (st.step % o.ckpt_every == 0 || last || t2i_interrupted) {
            st.loader_epoch = L.epoch, st.loader_pos = L.pos, st.opt_step = opt.step;
            if (save_ckpt(&m, ckpt_path, &st, &o) != 0) {
                t2i_fail_err();
                rc = 1;
                break;
            }
        }
        if (t2i_interrupted) {
            t2i_progress_end(&prog, st.step, "interrupted");
            fprintf(stderr, "t2i: interrupted at step %ld; checkpoint saved to %s (continue with --resume)\n", st.step,
                    ckpt_path);
            rc = 130;
            break;
        }
    }
    if (rc == 0) {
        t2i_progress_end(&prog, st.step, "loss %.4f recon %.4f ppl %.0f", s.loss, s.recon, s.perplexity);
        printf("vq train: %ld steps in %.1f s; checkpoint %s, reconstructions in %s\n", st.step - prog.start_done,
               t2i_now() - t_start, ckpt_path, recon_dir);
    }
    nn_arena_free(&arena);
    t2i_free(x), free(xfix), free(recon_dir);
    t2i_loader_free(&L);
    t2i_run_close(&run);
out:
    if (built) vq_model_free(&m);
    t2i_dataset_free(&ds);
    free(ckpt_path);
    return rc;
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
            rc = 130;
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
            rc = 130;
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
