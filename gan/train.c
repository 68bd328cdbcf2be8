/* train.c - `t2i gan train`: the GAN training loop.
 *
 * One step = n_critic D updates, then one G update:
 *   D: x real batch; z ~ N(0, 1); fake = G(z) (no G gradient); D runs separately on real
 *      and on fake images (each with its own BatchNorm statistics, as two PyTorch calls);
 *      loss = L_real(D(x)) + L_fake(D(fake)) [+ w * L_fake(D(x, wrong condition))]; Adam.
 *   G: fresh z'; loss = L_gen(D(G(z'))) with D frozen (input gradients only); Adam.
 *   EMA: ema = decay * ema + (1 - decay) * G after every G update (from --ema-start).
 * Losses on logits l: non-saturating (BCE; real target 1 or the smoothed value), hinge
 * (relu(1 - l), relu(1 + l), -l) and least squares (0.5 (l-1)^2, 0.5 l^2, 0.5 (l-1)^2).
 *
 * The run folder (--out) holds config.json, metrics.jsonl, checkpoint.safetensors (G, D,
 * EMA, Adam moments and the training state: step, RNG, data position), and samples/ with a
 * fixed-noise grid every --sample-every steps. --resume continues from the checkpoint:
 * with the same thread count the weights are bit-identical to an uninterrupted run.
 * Ctrl-C saves a checkpoint and exits with status 130; a NaN/Inf loss stops with an
 * error (the last checkpoint is kept); collapsing sample diversity prints a warning.
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "data.h"
#include "gan.h"
#include "image.h"
#include "optim.h"
#include "progress.h"
#include "text_cond.h"

#define GAN_DEFAULT_STEPS 12000 /* the Fashion-MNIST recipe: 12.8 epochs at batch 64 */

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

typedef struct {
    long step, target;  /* steps done, steps planned */
    t2i_rng rng;
    long loader_epoch;
    int loader_pos;
    long opt_g_step, opt_d_step;
} train_state;

/* The state and options as checkpoint metadata (nn_state_to_json); loss as its name. */
#define STATE_FIELDS(s)                                                                                    \
    nn_field sf[] = {NN_F_LONG("step", (s)->step),          NN_F_LONG("target", (s)->target),               \
                     NN_F_RNG("rng", (s)->rng),             NN_F_LONG("loader_epoch", (s)->loader_epoch),   \
                     NN_F_INT("loader_pos", (s)->loader_pos), NN_F_LONG("opt_g_step", (s)->opt_g_step),     \
                     NN_F_LONG("opt_d_step", (s)->opt_d_step)}
#define OPTS_FIELDS(o, loss)                                                                               \
    nn_field of[] = {NN_F_STR("data", (o)->data),           NN_F_STR("loss", loss),                        \
                     NN_F_FLOAT_IN("lr_g", (o)->lr_g, NN_LR_MIN, NN_LR_MAX),                               \
                     NN_F_FLOAT_IN("lr_d", (o)->lr_d, NN_LR_MIN, NN_LR_MAX),                               \
                     NN_F_FLOAT_IN("beta1", (o)->beta1, 0, NN_BETA1_MAX),                                  \
                     NN_F_FLOAT_IN("beta2", (o)->beta2, 0, NN_BETA2_MAX),                                  \
                     NN_F_INT_IN("n_critic", (o)->n_critic, 1, 20),                                        \
                     NN_F_FLOAT_IN("label_smooth", (o)->smooth, 0.5, 1),                                   \
                     NN_F_FLOAT_IN("ema", (o)->ema, 0, 0.99999),                                           \
                     NN_F_LONG_IN("ema_start", (o)->ema_start, -1e15, 1e15),                               \
                     NN_F_FLOAT_IN("mismatch", (o)->mismatch, 0, 10),                                      \
                     NN_F_INT_IN("batch", (o)->batch, 2, 4096),                                            \
                     NN_F_BOOL("flip", (o)->flip),          NN_F_BOOL("cond_classes", (o)->cond_classes),  \
                     NN_F_SEED("seed", (o)->seed)}

static char *opts_to_json(gan_train_opts *o) {
    char loss[16];
    snprintf(loss, sizeof loss, "%s", gan_loss_name(o->loss));
    OPTS_FIELDS(o, loss);
    return nn_fields_to_json(of, NN_NFIELDS(of));
}

static char *state_to_json(train_state *s, gan_train_opts *o) {
    char loss[16];
    snprintf(loss, sizeof loss, "%s", gan_loss_name(o->loss));
    STATE_FIELDS(s);
    OPTS_FIELDS(o, loss);
    return nn_state_to_json(sf, NN_NFIELDS(sf), of, NN_NFIELDS(of));
}

static int state_from_json(train_state *s, gan_train_opts *o, const char *json) {
    char loss[16];
    STATE_FIELDS(s);
    OPTS_FIELDS(o, loss);
    if (nn_state_from_json(json, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)) != 0) return -1;
    if (gan_loss_parse(loss, &o->loss) != 0) return t2i_error_set("training state: bad 'loss'");
    return 0;
}

static int save_ckpt(const gan_model *m, const char *path, train_state *st, gan_train_opts *o) {
    char *sj = state_to_json(st, o);
    int rc = gan_save(m, path, sj, 1, 0);
    free(sj);
    return rc;
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

int gan_cmd_train(int argc, char **argv) {
    /* defaults: the toolkit's Fashion-MNIST recipe */
    const char *data = "fashion-mnist", *arch = "dcgan", *out = "runs/gan", *loss = "ns", *dnorm = "batch",
               *init = "pytorch", *cond = "auto", *text_enc = NULL, *vocab = NULL;
    int res = 0, channels = 0, z_dim = 100, g_width = 32, d_width = 32, depth = 0, sn = 0, batch = 64;
    int n_critic = 1, threads = 0, resume = 0, flip = 0, sample_every = 500, ckpt_every = 1000, log_every = 50;
    long steps = 0, seed = 1; /* steps 0: 12000, or --epochs */
    float epochs = 0, lr_g = 2e-4f, lr_d = 2e-4f, beta1 = 0.5f, beta2 = 0.999f, smooth = 1.0f, ema = 0.999f,
          mismatch = 0.0f;
    long ema_start = 1000;
    t2i_flag flags[] = {
        {"--data", T2I_STR, &data, "fashion-mnist, fashion-captions, or a folder (images, class folders)"},
        {"--arch", T2I_STR, &arch, "b1 (bench/README.md B1 exactly) or dcgan"},
        {"--res", T2I_INT, &res, "resolution 28, 32, 64 or 128 (0: the data's own, else 64)"},
        {"--channels", T2I_INT, &channels, "1 or 3 (0: the data's own)"},
        {"--z-dim", T2I_INT, &z_dim, "noise dimension"},
        {"--g-width", T2I_INT, &g_width, "G base width"},
        {"--d-width", T2I_INT, &d_width, "D base width"},
        {"--depth", T2I_INT, &depth, "extra 3x3 convolutions per stage"},
        {"--cond", T2I_STR, &cond, "none, class (condition on the data's class labels) or auto (class if labelled)"},
        {"--text-encoder", T2I_STR, &text_enc, "CLIP checkpoint: condition on the captions' text embeddings"},
        {"--vocab", T2I_STR, &vocab, "BPE vocabulary for the text encoder (if it has none of its own)"},
        {"--loss", T2I_STR, &loss, "ns (non-saturating), hinge or ls (least squares)"},
        {"--sn", T2I_BOOL, &sn, "spectral normalisation in D"},
        {"--d-norm", T2I_STR, &dnorm, "batch or none (normalisation in D)"},
        {"--init", T2I_STR, &init, "pytorch (default inits) or normal (N(0, 0.02), DCGAN)"},
        {"--lr-g", T2I_FLOAT, &lr_g, "G learning rate (Adam)"},
        {"--lr-d", T2I_FLOAT, &lr_d, "D learning rate (Adam)"},
        {"--beta1", T2I_FLOAT, &beta1, "Adam beta1"},
        {"--beta2", T2I_FLOAT, &beta2, "Adam beta2"},
        {"--n-critic", T2I_INT, &n_critic, "D updates per G update"},
        {"--label-smooth", T2I_FLOAT, &smooth, "real label for D (one-sided smoothing, ns loss; 1 = off)"},
        {"--ema", T2I_FLOAT, &ema, "EMA decay of G's weights for sampling (0 = off)"},
        {"--ema-start", T2I_LONG, &ema_start, "step at which the EMA starts averaging (copies G before)"},
        {"--mismatch", T2I_FLOAT, &mismatch, "weight of mismatched-condition negatives for D"},
        {"--batch", T2I_INT, &batch, "batch size"},
        {"--flip", T2I_BOOL, &flip, "random horizontal flips"},
        {"--steps", T2I_LONG, &steps, "training steps (G updates; 0: 12000 unless --epochs)"},
        {"--epochs", T2I_FLOAT, &epochs, "training length in epochs (instead of --steps)"},
        {"--sample-every", T2I_INT, &sample_every, "write a sample grid every N steps"},
        {"--ckpt-every", T2I_INT, &ckpt_every, "save a checkpoint every N steps"},
        {"--log-every", T2I_INT, &log_every, "append to metrics.jsonl every N steps"},
        {"--seed", T2I_LONG, &seed, "random seed"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "run folder"},
        {"--resume", T2I_BOOL, &resume, "continue the run in --out from its checkpoint"},
    };
    t2i_cmd cmd = {"t2i gan train", "Train a GAN (DCGAN family) on images.", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "The defaults are the toolkit's Fashion-MNIST recipe: a DCGAN 32 wide in G and D,\n"
                   "conditioned on the classes when the data has them (--cond auto), EMA of G from step\n"
                   "1000, 12000 steps (33 min on 2 cores; FID in bench/RESULTS.md). Fashion-MNIST is\n"
                   "read from Debian's dataset-fashion-mnist. With --resume, the architecture and\n"
                   "training options come from the checkpoint; --steps/--epochs may extend the run."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("gan train: unexpected argument '%s'", cmd.pos[0]), 2;
    /* the flags alone, before any data loads (the config check repeats the sizes' bounds) */
    if (t2i_check_range_i("--sample-every", sample_every, 1, 1000000000) ||
        t2i_check_range_i("--ckpt-every", ckpt_every, 1, 1000000000) ||
        t2i_check_range_i("--log-every", log_every, 1, 1000000000) ||
        t2i_check_range_i("--steps", steps, 0, 1000000000) || t2i_check_range_f("--epochs", epochs, 0, 1e6) ||
        t2i_check_range_i("--ema-start", ema_start, 0, 1000000000) || t2i_check_range_i("--seed", seed, 0, LONG_MAX) ||
        t2i_check_range_i("--z-dim", z_dim, 1, 4096) || t2i_check_range_i("--g-width", g_width, 4, 1024) ||
        t2i_check_range_i("--d-width", d_width, 4, 1024) || t2i_check_range_i("--depth", depth, 0, 4))
        return 2;
    if (res != 0 && res != 28 && res != 32 && res != 64 && res != 128)
        return t2i_fail("--res must be 28, 32, 64 or 128 (0: the data's own), got %d", res), 2;
    if (channels != 0 && channels != 1 && channels != 3)
        return t2i_fail("--channels must be 1 or 3 (0: the data's own), got %d", channels), 2;
    t2i_set_threads(threads);

    gan_train_opts o = {0};
    gan_config cfg;
    train_state st;
    memset(&st, 0, sizeof st);
    gan_model m;
    gan_text_table tt; /* caption -> condition, for text-conditioned GANs */
    memset(&tt, 0, sizeof tt);
    char *ckpt_path = t2i_asprintf("%s/checkpoint.safetensors", out);
    int rc = 1;

    if (resume) {
        if (!t2i_path_exists(ckpt_path)) return t2i_fail("%s: no checkpoint to resume from", ckpt_path), free(ckpt_path), 1;
        char *sj = NULL;
        if (gan_load(&m, ckpt_path, 1, &sj) != 0) return t2i_fail_err(), free(ckpt_path), 1;
        if (!sj || state_from_json(&st, &o, sj) != 0) {
            gan_model_free(&m);
            t2i_fail("%s: %s", ckpt_path, sj ? t2i_error_msg() : "no training state in its metadata");
            free(sj);
            free(ckpt_path);
            return 1;
        }
        free(sj);
        cfg = m.cfg;
    } else {
        if (t2i_path_exists(ckpt_path)) {
            t2i_fail("%s already holds a run (%s); pass --resume to continue it or choose another --out", out, ckpt_path);
            free(ckpt_path);
            return 1;
        }
        if (gan_loss_parse(loss, &o.loss)) return t2i_fail("--loss must be ns, hinge or ls, got '%s'", loss), free(ckpt_path), 2;
        if (t2i_check_range_f("--lr-g", lr_g, NN_LR_MIN, NN_LR_MAX) ||
            t2i_check_range_f("--lr-d", lr_d, NN_LR_MIN, NN_LR_MAX) ||
            t2i_check_range_f("--beta1", beta1, 0, NN_BETA1_MAX) ||
            t2i_check_range_f("--beta2", beta2, 0, NN_BETA2_MAX) ||
            t2i_check_range_i("--n-critic", n_critic, 1, 20) || t2i_check_range_f("--label-smooth", smooth, 0.5, 1) ||
            t2i_check_range_f("--ema", ema, 0, 0.99999) || t2i_check_range_f("--mismatch", mismatch, 0, 10) ||
            t2i_check_range_i("--batch", batch, 2, 4096)) {
            free(ckpt_path);
            return 2;
        }
        o.lr_g = lr_g, o.lr_d = lr_d, o.beta1 = beta1, o.beta2 = beta2, o.n_critic = n_critic, o.smooth = smooth;
        o.ema = ema, o.ema_start = ema_start, o.mismatch = mismatch, o.batch = batch, o.flip = flip;
        o.seed = (uint64_t)seed;
        if (strcmp(cond, "class") == 0) o.cond_classes = 1;
        else if (strcmp(cond, "auto") == 0) o.cond_classes = -1; /* decided once the data is open */
        else if (strcmp(cond, "none") != 0)
            return t2i_fail("--cond must be none, class or auto, got '%s'", cond), free(ckpt_path), 2;
        if (strlen(data) >= sizeof o.data) return t2i_fail("--data: path too long"), free(ckpt_path), 2;
        strcpy(o.data, data);
    }

    /* data: its native shape decides resolution/channels unless given */
    t2i_dataset ds;
    int want_res = resume ? cfg.res : res, want_c = resume ? cfg.channels : channels;
    if (strcmp(arch, "b1") == 0 && !resume) want_res = 28, want_c = 1;
    if (t2i_dataset_open(&ds, o.data, want_c, want_res, want_res) != 0) {
        t2i_fail_err();
        free(ckpt_path);
        if (resume) gan_model_free(&m);
        return 1;
    }
    if (ds.n < o.batch) {
        t2i_fail("%s: %d images, fewer than one batch of %d", ds.source, ds.n, o.batch);
        if (resume) goto out_model;
        goto out_ds;
    }

    if (!resume) {
        if (strcmp(arch, "b1") == 0) gan_config_b1(&cfg);
        else if (strcmp(arch, "dcgan") == 0) gan_config_default(&cfg);
        else {
            t2i_fail("--arch must be b1 or dcgan, got '%s'", arch);
            goto out_ds;
        }
        if (strcmp(arch, "dcgan") == 0) {
            cfg.res = ds.H;
            if (!res && ds.H != 28 && ds.H != 32 && ds.H != 64 && ds.H != 128) {
                t2i_fail("%s: its first image is %dx%d, not a size the GAN has; pass --res 28, 32, 64 or 128 to "
                         "resize them", ds.source, ds.W, ds.H);
                goto out_ds;
            }
            cfg.channels = ds.C;
            cfg.z_dim = z_dim, cfg.g_width = g_width, cfg.d_width = d_width, cfg.depth = depth;
            cfg.d_sn = sn;
            cfg.init_normal = strcmp(init, "normal") == 0;
            if (strcmp(init, "normal") && strcmp(init, "pytorch")) {
                t2i_fail("--init must be pytorch or normal, got '%s'", init);
                goto out_ds;
            }
            if (strcmp(dnorm, "none") == 0) cfg.d_norm = GAN_NORM_NONE;
            else if (strcmp(dnorm, "batch") != 0) {
                t2i_fail("--d-norm must be batch or none, got '%s'", dnorm);
                goto out_ds;
            }
        } else if (sn || strcmp(dnorm, "batch") || depth) {
            t2i_fail("--arch b1 is fixed (no --sn, --d-norm or --depth); use --arch dcgan");
            goto out_ds;
        }
        if (o.cond_classes < 0) /* auto: the data's classes, unless B1 or a text encoder decides */
            o.cond_classes = strcmp(arch, "dcgan") == 0 && !text_enc && ds.labels && ds.n_classes >= 2;
        if (o.cond_classes) {
            if (!ds.labels || ds.n_classes < 2) {
                t2i_fail("%s: --cond class needs labelled data (class folders or fashion-mnist)", ds.source);
                goto out_ds;
            }
            cfg.n_classes = ds.n_classes;
        }
        if (text_enc) {
            if (o.cond_classes) {
                t2i_fail("--text-encoder and --cond class exclude each other");
                goto out_ds;
            }
            if (strlen(text_enc) >= sizeof cfg.text_encoder || (vocab && strlen(vocab) >= sizeof cfg.text_vocab)) {
                t2i_fail("--text-encoder/--vocab: path too long");
                goto out_ds;
            }
            strcpy(cfg.text_encoder, text_enc);
            strcpy(cfg.text_vocab, vocab ? vocab : "");
        }
        if (gan_config_check(&cfg) != 0) {
            t2i_fail_err();
            goto out_ds;
        }
        t2i_rng_seed(&st.rng, o.seed);
        if (cfg.text_encoder[0]) {
            /* the condition size comes from the encoder; the probe pins its identity */
            clip_model *clip = gan_text_encoder_load(cfg.text_encoder, cfg.text_vocab);
            if (!clip) {
                t2i_fail_err();
                goto out_ds;
            }
            cfg.cond_dim = clip_embed_dim(clip);
            cfg.n_probe = cfg.cond_dim <= 1024 ? cfg.cond_dim : 0;
            const char *probe = GAN_TEXT_PROBE;
            int prc2 = cfg.n_probe ? clip_embed_texts(clip, &probe, 1, cfg.text_probe) : 0;
            clip_free(clip);
            if (prc2 != 0 || gan_config_check(&cfg) != 0) {
                t2i_fail_err();
                goto out_ds;
            }
            if (!t2i_flag_given(&cmd, "--mismatch")) o.mismatch = 1.0f; /* matching-aware D by default */
        }
        t2i_rng init_rng = t2i_rng_split(&st.rng, 1);
        gan_model_build(&m, &cfg, &init_rng);
    }
    if (cfg.text_encoder[0]) {
        if (!ds.captions) {
            t2i_fail("%s: --text-encoder needs captioned data (fashion-captions, or a folder with metadata.jsonl)",
                     ds.source);
            goto out_model;
        }
        clip_model *clip = gan_text_encoder_load(cfg.text_encoder, cfg.text_vocab);
        if (!clip) {
            t2i_fail_err();
            goto out_model;
        }
        int trc = clip_check_embed_dim(clip, cfg.cond_dim, "gan train --text-encoder");
        if (trc == 0) trc = gan_text_table_build(&tt, clip, ds.captions, ds.n);
        clip_free(clip);
        if (trc != 0) {
            t2i_fail_err();
            goto out_model;
        }
        printf("gan train: conditioned on %d distinct captions embedded by %s (%d-d)\n", tt.n, cfg.text_encoder, tt.dim);
    }
    if (ds.C != cfg.channels || ds.H != cfg.res) {
        t2i_fail("%s: images are %dx%dx%d, the model expects %dx%dx%d", ds.source, ds.C, ds.H, ds.W, cfg.channels,
                 cfg.res, cfg.res);
        goto out_model;
    }

    long per_epoch = ds.n / o.batch;
    if (epochs > 0) steps = (long)ceil(epochs * per_epoch / o.n_critic);
    if (steps <= 0) steps = resume && st.target > 0 ? st.target : GAN_DEFAULT_STEPS;
    st.target = steps;
    if (steps < st.step) {
        t2i_fail("--steps %ld is before the checkpoint's step %ld", steps, st.step);
        goto out_model;
    }

    t2i_run run;
    if (t2i_run_open(&run, out) != 0) {
        t2i_fail_err();
        goto out_model;
    }
    char *samples_dir = t2i_run_path(&run, "samples");
    if (t2i_mkdirs(samples_dir) != 0) {
        t2i_fail_err();
        free(samples_dir);
        t2i_run_close(&run);
        goto out_model;
    }
    {
        char *cj = gan_config_to_json(&cfg), *oj = opts_to_json(&o);
        char *full = t2i_asprintf("{\"model\":%s,\"train\":%s,\"steps\":%ld,\"threads\":%d}", cj, oj, steps,
                                  t2i_get_threads());
        if (!resume) t2i_run_write_config(&run, full);
        free(cj), free(oj), free(full);
    }

    t2i_loader L;
    t2i_loader_init(&L, &ds, o.batch, 1, o.seed);
    L.drop_last = 1;
    L.flip = o.flip;
    if (resume && t2i_loader_seek(&L, st.loader_epoch, st.loader_pos) != 0) {
        t2i_fail("%s: %s", ckpt_path, t2i_error_msg());
        t2i_loader_free(&L);
        free(samples_dir);
        t2i_run_close(&run);
        goto out_model;
    }

    nn_optim og = nn_adam(o.lr_g, o.beta1, o.beta2, 1e-8f, 0.0f);
    nn_optim od = nn_adam(o.lr_d, o.beta1, o.beta2, 1e-8f, 0.0f);
    og.step = st.opt_g_step, od.step = st.opt_d_step;

    int B = o.batch, zd = cfg.z_dim, cs = gan_cond_size(&cfg);
    size_t item = (size_t)cfg.channels * cfg.res * cfg.res;
    float *x = t2i_malloc_aligned((size_t)B * item * sizeof(float));
    float *z = t2i_malloc((size_t)B * zd * sizeof(float));
    float *c = cs ? t2i_malloc((size_t)B * cs * sizeof(float)) : NULL;
    float *cw = cs ? t2i_malloc((size_t)B * cs * sizeof(float)) : NULL;
    int *labels = t2i_malloc((size_t)B * sizeof(int));
    /* 8 samples per row; a class-conditional model gets a row per class (up to 32) */
    const int NF = 8 * (!cfg.text_encoder[0] && cfg.n_classes > 8 ? T2I_MIN(cfg.n_classes, 32) : 8);
    float *fz = t2i_malloc((size_t)NF * zd * sizeof(float));
    float *fc = cs ? t2i_malloc((size_t)NF * cs * sizeof(float)) : NULL;
    fixed_inputs(&m, o.seed, fz, fc, NF, cfg.text_encoder[0] ? &tt : NULL);
    const char **caps = t2i_malloc((size_t)B * sizeof(char *));
    nn_arena arena;
    nn_arena_init(&arena);
    double real_div = -1.0;

    printf("gan train: %s, %d images %dx%dx%d, arch %s, %s loss, batch %d, steps %ld (%.2f epochs), G %zu / D %zu "
           "parameters, %d threads\n",
           ds.source, ds.n, cfg.channels, cfg.res, cfg.res, cfg.preset, gan_loss_name(o.loss), B, steps,
           (double)steps * o.n_critic / per_epoch, nn_params_count(&m.gp, 1), nn_params_count(&m.dp, 1),
           t2i_get_threads());
    fflush(stdout);
    t2i_install_sigint();
    t2i_progress prog;
    t2i_progress_start(&prog, "gan", st.step, steps);
    double t_last = t2i_now();
    float loss_d = 0, loss_g = 0, dreal = 0, dfake = 0;
    gan_step_stats stats;
    rc = 0;
    while (st.step < steps) {
        double t0 = t2i_now();
        /* ---- D updates ---- */
        for (int k = 0; k < o.n_critic; k++) {
            int got = t2i_loader_next(&L, x, labels, caps, NULL);
            if (got == 0) got = t2i_loader_next(&L, x, labels, caps, NULL);
            if (got < 0) {
                t2i_fail_err();
                rc = 1;
                goto done;
            }
            if (real_div < 0) real_div = diversity(x, B < 32 ? B : 32, item);
            if (tt.n) {
                for (int i = 0; i < B; i++) {
                    const float *e = caps[i] ? gan_text_lookup(&tt, caps[i]) : NULL;
                    T2I_ASSERT(e); /* every caption was embedded up front */
                    memcpy(c + (size_t)i * cs, e, (size_t)cs * sizeof(float));
                }
            } else if (cs) {
                gan_onehot(c, labels, B, cs);
            }
            t2i_rng_fill_normal(&st.rng, z, (size_t)B * zd, 0.0f, 1.0f);
            gan_d_step(&m, &od, &arena, &o, x, z, c, cw, B, &stats);
        }
        /* ---- G update ---- */
        t2i_rng_fill_normal(&st.rng, z, (size_t)B * zd, 0.0f, 1.0f);
        gan_g_step(&m, &og, &arena, &o, z, c, B, &stats);
        loss_d = stats.loss_d, loss_g = stats.loss_g, dreal = stats.d_real, dfake = stats.d_fake;
        if (o.ema > 0 && st.step >= o.ema_start) nn_ema_update(&m.ep, &m.gp, o.ema);
        else nn_params_copy_values(&m.ep, &m.gp);
        st.step++;
        double dt = t2i_now() - t0;

        if (!isfinite(loss_d) || !isfinite(loss_g)) {
            t2i_fail("step %ld: %s loss is %s; stopping (the last checkpoint, if any, is %s; try a lower learning rate)",
                     st.step, isfinite(loss_d) ? "G" : "D", isnan(isfinite(loss_d) ? loss_g : loss_d) ? "NaN" : "Inf",
                     ckpt_path);
            rc = 1;
            goto done;
        }
        if (st.step % log_every == 0 || st.step == steps) {
            char line[512];
            snprintf(line, sizeof line,
                     "{\"step\":%ld,\"epoch\":%.3f,\"loss_d\":%.5f,\"loss_g\":%.5f,\"d_real\":%.4f,\"d_fake\":%.4f,"
                     "\"step_ms\":%.2f,\"images_per_s\":%.1f}",
                     st.step, (double)L.epoch + (double)L.pos / ds.n, loss_d, loss_g, dreal, dfake, dt * 1e3,
                     B * (o.n_critic + 1) / dt);
            t2i_run_metrics(&run, line);
        }
        t2i_progress_update(&prog, st.step, "D %.3f G %.3f D(x) %.2f D(G(z)) %.2f", loss_d, loss_g, dreal, dfake);

        int last = st.step == steps;
        if (st.step % sample_every == 0 || last) {
            nn_arena_reset(&arena);
            nn_tape te;
            memset(&te, 0, sizeof te);
            float *imgs = gan_g_forward(&m, &m.ema, &te, &arena, fz, fc, NF, 0);
            char *p = t2i_asprintf("%s/step_%06ld.png", samples_dir, st.step);
            char *pl = t2i_asprintf("%s/latest.png", samples_dir);
            if (t2i_save_grid(p, imgs, NF, cfg.channels, cfg.res, cfg.res, 8) != 0 ||
                t2i_save_grid(pl, imgs, NF, cfg.channels, cfg.res, cfg.res, 8) != 0)
                t2i_fail_err();
            free(p), free(pl);
            double div = diversity(imgs, 32, item);
            char line[256];
            snprintf(line, sizeof line, "{\"step\":%ld,\"sample_diversity\":%.4f,\"real_diversity\":%.4f}", st.step,
                     div, real_div);
            t2i_run_metrics(&run, line);
            if (real_div > 0 && div < 0.25 * real_div && st.step >= 1000)
                fprintf(stderr,
                        "t2i: warning: step %ld: samples are much less diverse than the data (mean distance %.2f vs "
                        "%.2f): possible mode collapse\n",
                        st.step, div, real_div);
        }
        if (st.step % ckpt_every == 0 || last || t2i_interrupted) {
            st.loader_epoch = L.epoch, st.loader_pos = L.pos, st.opt_g_step = og.step, st.opt_d_step = od.step;
            if (save_ckpt(&m, ckpt_path, &st, &o) != 0) {
                t2i_fail_err();
                rc = 1;
                goto done;
            }
        }
        if (t2i_interrupted) {
            t2i_progress_end(&prog, st.step, "interrupted");
            fprintf(stderr, "t2i: interrupted at step %ld; checkpoint saved to %s (continue with --resume)\n", st.step,
                    ckpt_path);
            rc = 130;
            goto done;
        }
    }
    t2i_progress_end(&prog, st.step, "D %.3f G %.3f", loss_d, loss_g);
    printf("gan train: %ld steps in %.1f s; checkpoint %s, samples in %s\n", st.step - prog.start_done,
           t2i_now() - t_last, ckpt_path, samples_dir);
done:
    nn_arena_free(&arena);
    free(x), free(z), free(c), free(cw), free(labels), free(fz), free(fc), free(caps);
    t2i_loader_free(&L);
    free(samples_dir);
    t2i_run_close(&run);
out_model:
    gan_text_table_free(&tt);
    gan_model_free(&m);
out_ds:
    t2i_dataset_free(&ds);
    free(ckpt_path);
    return rc;
}
