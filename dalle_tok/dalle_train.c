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
 * AdamW moments, vocabulary, the training state: step, RNG, epoch/position, optimizer
 * step, options) and samples/ (a grid of fixed prompts every --sample-every steps when
 * the codes' VQ checkpoint is readable: one row per prompt). --resume continues
 * bit-identically with the same thread count. Ctrl-C saves and exits with status 130; a
 * NaN/Inf loss stops with an error, keeping the last checkpoint.
 *
 * Failures: bad flags exit 2; unreadable data, a codes file whose grid or codes do not
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
#include "fc32.h"
#include "image.h"
#include "optim.h"
#include "progress.h"
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

/* ---- options and state ---- */

typedef struct {
    char codes[1024];
    float lr, min_lr, beta1, beta2, wd, clip, text_weight, cond_drop;
    long warmup;
    int batch;
    uint64_t seed;
} train_opts;

typedef struct {
    long step, target;
    t2i_rng rng;
    long epoch;
    int pos;
    long opt_step;
} train_state;

/* The state and options as checkpoint metadata (nn_state_to_json). */
#define STATE_FIELDS(s)                                                                                  \
    nn_field sf[] = {NN_F_LONG("step", (s)->step), NN_F_LONG("target", (s)->target), NN_F_RNG("rng", (s)->rng), \
                     NN_F_LONG("epoch", (s)->epoch), NN_F_INT("pos", (s)->pos), NN_F_LONG("opt_step", (s)->opt_step)}
#define OPTS_FIELDS(o)                                                                                   \
    nn_field of[] = {NN_F_STR("codes", (o)->codes),                                                      \
                     NN_F_FLOAT_IN("lr", (o)->lr, NN_LR_MIN, NN_LR_MAX),                                 \
                     NN_F_FLOAT_IN("min_lr", (o)->min_lr, 0, 1),                                         \
                     NN_F_FLOAT_IN("beta1", (o)->beta1, 0, NN_BETA1_MAX),                                \
                     NN_F_FLOAT_IN("beta2", (o)->beta2, 0, NN_BETA2_MAX),                                \
                     NN_F_FLOAT_IN("weight_decay", (o)->wd, 0, 10),                                      \
                     NN_F_FLOAT_IN("clip", (o)->clip, 0, 1e6),                                           \
                     NN_F_FLOAT_IN("text_weight", (o)->text_weight, 0, 1),                               \
                     NN_F_FLOAT_IN("cond_drop", (o)->cond_drop, 0, 1),                                   \
                     NN_F_LONG_IN("warmup", (o)->warmup, 0, 1000000000),                                 \
                     NN_F_INT_IN("batch", (o)->batch, 1, 65536),                                         \
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
    if (nn_state_from_json(json, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)) != 0) return -1;
    /* the counters are not negative and the options are within a new run's ranges (the
     * tables above); the position may pass the end of the data (the epoch then wraps) */
    if (s->target < s->step) return t2i_error_set("training state: step %ld is past the target %ld", s->step, s->target);
    return 0;
}

/* ---- data ---- */

typedef struct {
    int n;
    int32_t *text;   /* (n, text_len) */
    int32_t *image;  /* (n, image_len) joint ids */
    int *order;      /* (n) this epoch's order */
    long order_epoch;
} train_data;

static void data_order(train_data *d, long epoch, uint64_t seed) {
    for (int i = 0; i < d->n; i++) d->order[i] = i;
    t2i_rng root, r;
    t2i_rng_seed(&root, seed ^ 0x64616c6c65ull); /* "dalle": apart from the run RNG's seed */
    r = t2i_rng_split(&root, (uint64_t)epoch);
    t2i_rng_shuffle(&r, d->order, (size_t)d->n);
    d->order_epoch = epoch;
}

/* Fills tokens (B, T) with the next batch; the caption of each is dropped with p_drop. */
static void next_batch(train_data *d, const dalle_model *m, train_state *st, const train_opts *o, int32_t *tokens,
                       const int32_t *null_text) {
    const dalle_config *c = &m->cfg;
    int TL = c->text_len, IL = dalle_image_len(c), T = TL + IL;
    for (int b = 0; b < o->batch; b++) {
        if (st->pos >= d->n) st->epoch++, st->pos = 0;
        if (d->order_epoch != st->epoch) data_order(d, st->epoch, o->seed);
        int i = d->order[st->pos++];
        int drop = o->cond_drop > 0 && t2i_rng_uniform(&st->rng) < o->cond_drop;
        int32_t *row = tokens + (size_t)b * T;
        memcpy(row, drop ? null_text : d->text + (size_t)i * TL, (size_t)TL * sizeof(int32_t));
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

int dalle_cmd_train(int argc, char **argv) {
    const char *codes_path = NULL, *preset = "custom", *out = "runs/dalle", *act = "gelu";
    int width = 256, layers = 6, heads = 8, text_len = 16, text_vocab = 1024, codebook = 0, batch = 32;
    int threads = 0, resume = 0, sample_every = 1000, ckpt_every = 1000, log_every = 50;
    long steps = 0, seed = 1, warmup = 500;
    float lr = 3e-4f, min_lr = 3e-5f, beta1 = 0.9f, beta2 = 0.95f, wd = 0.01f, clip = 1.0f, text_weight = 0.125f,
          cond_drop = 0.15f, epochs = 0;
    t2i_flag flags[] = {
        {"--codes", T2I_STR, &codes_path, "codes file of `t2i vq encode` (required for a new run)"},
        {"--preset", T2I_STR, &preset, "b2 (bench/README.md B2 exactly) or custom (the sizes below)"},
        {"--width", T2I_INT, &width, "model width (custom)"},
        {"--layers", T2I_INT, &layers, "transformer layers (custom)"},
        {"--heads", T2I_INT, &heads, "attention heads (custom)"},
        {"--text-len", T2I_INT, &text_len, "text positions, start token included (custom)"},
        {"--text-vocab", T2I_INT, &text_vocab, "text ids: BPE vocabulary + text-len pad ids (custom)"},
        {"--codebook", T2I_INT, &codebook, "image codes (custom; 0 = the VQ checkpoint's, else 512)"},
        {"--act", T2I_STR, &act, "MLP activation (custom): gelu (exact), gelu_tanh, quick_gelu"},
        {"--batch", T2I_INT, &batch, "batch size"},
        {"--steps", T2I_LONG, &steps, "training steps (default: 10 epochs)"},
        {"--epochs", T2I_FLOAT, &epochs, "training length in epochs (instead of --steps)"},
        {"--lr", T2I_FLOAT, &lr, "peak learning rate (AdamW)"},
        {"--min-lr", T2I_FLOAT, &min_lr, "learning rate at the end of the cosine decay"},
        {"--warmup", T2I_LONG, &warmup, "linear warmup steps"},
        {"--beta1", T2I_FLOAT, &beta1, "AdamW beta1"},
        {"--beta2", T2I_FLOAT, &beta2, "AdamW beta2"},
        {"--wd", T2I_FLOAT, &wd, "AdamW weight decay (Linear weights only)"},
        {"--clip", T2I_FLOAT, &clip, "gradient clipping: max global L2 norm (0 = off)"},
        {"--text-weight", T2I_FLOAT, &text_weight, "weight of the text loss (image: 1 - this; DALL-E 1/8)"},
        {"--cond-drop", T2I_FLOAT, &cond_drop, "probability of replacing a caption by the unconditional text"},
        {"--sample-every", T2I_INT, &sample_every, "write a sample grid every N steps (0 = only at the end)"},
        {"--ckpt-every", T2I_INT, &ckpt_every, "save a checkpoint every N steps"},
        {"--log-every", T2I_INT, &log_every, "append to metrics.jsonl every N steps"},
        {"--seed", T2I_LONG, &seed, "random seed"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "run folder"},
        {"--resume", T2I_BOOL, &resume, "continue the run in --out from its checkpoint"},
    };
    t2i_cmd cmd = {"t2i dalle train", "Train the DALL-E-style image-token transformer on VQ codes.", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "The captions come from the dataset named in the codes file. With --resume the model and\n"
                   "options come from the checkpoint; --steps/--epochs may extend the run."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("dalle train: unexpected argument '%s'", cmd.pos[0]), 2;
    if (t2i_check_range_i("--sample-every", sample_every, 0, 1000000000) ||
        t2i_check_range_i("--ckpt-every", ckpt_every, 1, 1000000000) ||
        t2i_check_range_i("--log-every", log_every, 1, 1000000000) || t2i_check_range_f("--epochs", epochs, 0, 1e6) ||
        t2i_check_range_i("--steps", steps, 0, 1000000000000L))
        return 2;
    t2i_set_threads(threads);

    train_opts o;
    memset(&o, 0, sizeof o);
    train_state st;
    memset(&st, 0, sizeof st);
    dalle_model m;
    memset(&m, 0, sizeof m);
    char *ckpt_path = t2i_asprintf("%s/checkpoint.safetensors", out);
    int rc = 1, have_model = 0;
    dalle_codes cd;
    memset(&cd, 0, sizeof cd);
    t2i_dataset ds;
    memset(&ds, 0, sizeof ds);
    const char **caps = NULL;
    train_data d;
    memset(&d, 0, sizeof d);
    vq_model vq;
    int have_vq = 0;
    t2i_run run;
    memset(&run, 0, sizeof run);
    char *samples_dir = NULL;
    nn_arena arena;
    nn_arena_init(&arena);
    int32_t *tokens = NULL, *null_text = NULL;

    if (resume) {
        if (!t2i_path_exists(ckpt_path)) {
            t2i_fail("%s: no checkpoint to resume from", ckpt_path);
            goto done;
        }
        char *sj = NULL;
        if (dalle_load(&m, ckpt_path, 1, &sj) != 0) {
            t2i_fail_err();
            goto done;
        }
        have_model = 1;
        if (!sj || state_from_json(&st, &o, sj) != 0) {
            t2i_fail("%s: %s", ckpt_path, sj ? t2i_error_msg() : "no training state");
            free(sj);
            goto done;
        }
        free(sj);
        char *given = codes_path ? realpath(codes_path, NULL) : NULL;
        if (codes_path && strcmp(given ? given : codes_path, o.codes) != 0)
            fprintf(stderr, "t2i: warning: --codes ignored with --resume; the run uses %s\n", o.codes);
        free(given);
    } else {
        if (t2i_path_exists(ckpt_path)) {
            t2i_fail("%s already holds a run (%s); pass --resume to continue it or choose another --out", out, ckpt_path);
            goto done;
        }
        if (!codes_path) {
            t2i_fail("dalle train: --codes is required (make one with `t2i vq encode`)");
            rc = 2;
            goto done;
        }
        if (t2i_check_range_f("--lr", lr, NN_LR_MIN, NN_LR_MAX) || t2i_check_range_f("--min-lr", min_lr, 0, lr) ||
            t2i_check_range_f("--beta1", beta1, 0, NN_BETA1_MAX) ||
            t2i_check_range_f("--beta2", beta2, 0, NN_BETA2_MAX) ||
            t2i_check_range_f("--wd", wd, 0, 10) || t2i_check_range_f("--clip", clip, 0, 1e6) ||
            t2i_check_range_f("--text-weight", text_weight, 0, 1) ||
            t2i_check_range_f("--cond-drop", cond_drop, 0, 1) ||
            t2i_check_range_i("--batch", batch, 1, 65536) || t2i_check_range_i("--warmup", warmup, 0, 1000000000)) {
            rc = 2;
            goto done;
        }
        /* recorded absolute, so that --resume works from any working folder */
        char *abs = realpath(codes_path, NULL);
        const char *keep = abs ? abs : codes_path; /* missing: the load below says so */
        if (strlen(keep) >= sizeof o.codes) {
            t2i_fail("--codes: path too long");
            free(abs);
            rc = 2;
            goto done;
        }
        strcpy(o.codes, keep);
        free(abs);
        o.lr = lr, o.min_lr = min_lr, o.beta1 = beta1, o.beta2 = beta2, o.wd = wd, o.clip = clip;
        o.text_weight = text_weight, o.cond_drop = cond_drop, o.warmup = warmup, o.batch = batch;
        o.seed = (uint64_t)seed;
    }

    /* data */
    if (dalle_codes_load(&cd, o.codes) != 0 || load_captions(&cd, o.codes, &ds, &caps) != 0) {
        if (resume) t2i_fail("%s (the codes file the checkpoint names)", t2i_error_msg());
        else t2i_fail_err();
        goto done;
    }
    if (cd.vq && !t2i_path_exists(cd.vq)) {
        fprintf(stderr, "t2i: warning: the codes' VQ checkpoint %s is missing: no sample grids\n", cd.vq);
    } else if (cd.vq) {
        if (vq_load(&vq, cd.vq, 0, NULL) == 0) {
            have_vq = 1;
        } else {
            fprintf(stderr, "t2i: warning: %s; no sample grids\n", t2i_error_msg());
        }
    }

    if (!resume) {
        dalle_config cfg;
        if (strcmp(preset, "b2") == 0) {
            dalle_config_b2(&cfg);
            static const char *const fixed[] = {"--width", "--layers", "--heads", "--text-len", "--text-vocab",
                                                "--codebook", "--act"};
            for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
                if (t2i_flag_given(&cmd, fixed[i])) {
                    t2i_fail("--preset b2 is fixed; %s needs --preset custom", fixed[i]);
                    rc = 2;
                    goto done;
                }
        } else if (strcmp(preset, "custom") == 0) {
            memset(&cfg, 0, sizeof cfg);
            strcpy(cfg.preset, "custom");
            cfg.text_len = text_len, cfg.text_vocab = text_vocab, cfg.image_side = cd.side;
            cfg.codebook = codebook > 0 ? codebook : have_vq ? vq_n_codes(&vq) : 512;
            cfg.width = width, cfg.n_layer = layers, cfg.n_head = heads, cfg.mlp_ratio = 4;
            int a = nn_act_parse(act);
            if (a < 0) {
                t2i_fail("--act: unknown activation '%s'", act);
                rc = 2;
                goto done;
            }
            cfg.act = (nn_act)a;
            cfg.ln_eps = 1e-5f;
        } else {
            t2i_fail("--preset must be b2 or custom, got '%s'", preset);
            rc = 2;
            goto done;
        }
        if (dalle_config_check(&cfg) != 0) {
            t2i_fail_err();
            rc = 2;
            goto done;
        }
        t2i_rng_seed(&st.rng, o.seed);
        t2i_rng init_rng = t2i_rng_split(&st.rng, 1);
        dalle_build(&m, &cfg);
        have_model = 1;
        dalle_init(&m, &init_rng);
        /* the text vocabulary, learned from this run's captions */
        double t0 = t2i_now();
        size_t vlen = 0;
        char *merges = clip_tok_train(caps, NULL, (size_t)cd.n, (size_t)dalle_pad_id(&cfg, 0), &vlen);
        if (!merges || dalle_set_vocab(&m, merges, vlen) != 0) {
            t2i_free(merges);
            t2i_fail("%s: learning the text vocabulary: %s", o.codes, t2i_error_msg());
            goto done;
        }
        t2i_free(merges);
        printf("dalle train: text vocabulary of %zu BPE ids learned from %d captions in %.1f s\n",
               clip_tok_vocab_size(m.tok), cd.n, t2i_now() - t0);
        if (cd.vq) m.vq_path = t2i_strdup(cd.vq);
    }
    const dalle_config *cfg = &m.cfg;
    int TL = cfg->text_len, IL = dalle_image_len(cfg), T = TL + IL;
    if (cd.side != cfg->image_side) {
        t2i_fail("%s: codes are %dx%d grids, the model expects %dx%d", o.codes, cd.side, cd.side, cfg->image_side,
                 cfg->image_side);
        goto done;
    }
    if (have_vq && (vq_n_codes(&vq) != cfg->codebook || vq_grid(&vq) != cfg->image_side)) {
        fprintf(stderr, "t2i: warning: the VQ checkpoint %s (%d codes, grid %d) does not fit the model (%d codes, grid %d): "
                        "no sample grids\n",
                cd.vq, vq_n_codes(&vq), vq_grid(&vq), cfg->codebook, cfg->image_side);
        vq_model_free(&vq);
        have_vq = 0;
    }
    d.n = cd.n;
    d.text = t2i_malloc((size_t)cd.n * TL * sizeof(int32_t));
    d.image = t2i_malloc((size_t)cd.n * IL * sizeof(int32_t));
    d.order = t2i_malloc((size_t)cd.n * sizeof(int));
    d.order_epoch = -1;
    {
        int truncated = 0, longest = 0;
        for (int i = 0; i < cd.n; i++) {
            int nt = 0;
            int r = dalle_encode_text(&m, caps[i], d.text + (size_t)i * TL, &nt);
            if (r < 0) {
                char shown[160];
                t2i_fail("%s: caption of item %d (\"%s\"): %s", cd.source, cd.index[i],
                         t2i_text_show(caps[i], 80, shown, sizeof shown), t2i_error_msg());
                goto done;
            }
            truncated += r;
            longest = nt > longest ? nt : longest;
        }
        if (truncated)
            fprintf(stderr, "t2i: warning: %d of %d captions have more than %d tokens (longest %d) and were truncated\n",
                    truncated, cd.n, TL - 1, longest);
        for (size_t i = 0; i < (size_t)cd.n * IL; i++) {
            if (cd.codes[i] >= cfg->codebook) {
                t2i_fail("%s: code %d at row %zu is outside the model's codebook of %d", o.codes, cd.codes[i], i / IL,
                         cfg->codebook);
                goto done;
            }
            d.image[i] = cfg->text_vocab + cd.codes[i];
        }
    }
    if (cd.n < o.batch) fprintf(stderr, "t2i: warning: %d items, fewer than one batch of %d\n", cd.n, o.batch);

    long per_epoch = (cd.n + o.batch - 1) / o.batch;
    if (epochs > 0) steps = (long)ceil(epochs * per_epoch);
    if (steps <= 0) steps = resume && st.target > 0 ? st.target : 10 * per_epoch;
    if (steps < st.step) {
        t2i_fail("--steps %ld is before the checkpoint's step %ld", steps, st.step);
        goto done;
    }
    /* the cosine runs over the planned length (extending a run stretches it) */
    nn_schedule sched = nn_schedule_cosine(o.lr, o.warmup, steps, o.min_lr);
    st.target = steps;

    if (t2i_run_open(&run, out) != 0) {
        t2i_fail_err();
        goto done;
    }
    samples_dir = t2i_run_path(&run, "samples");
    if (t2i_mkdirs(samples_dir) != 0) {
        t2i_fail_err();
        goto done;
    }
    if (!resume) {
        char *cj = dalle_config_to_json(cfg);
        char *os = opts_to_json(&o);
        cJSON *src = cJSON_CreateString(cd.source); /* a path: escaped by cJSON */
        char *srcs = cJSON_PrintUnformatted(src);
        char *full = t2i_asprintf("{\"model\":%s,\"train\":%s,\"steps\":%ld,\"threads\":%d,\"items\":%d,\"source\":%s}",
                                  cj, os, steps, t2i_get_threads(), cd.n, srcs);
        cJSON_free(srcs);
        cJSON_Delete(src);
        t2i_run_write_config(&run, full);
        free(cj), free(full), free(os);
    }

    char prompts[8][FC32_CAPTION_MAX * 4];
    int nprompts = sample_prompts(&cd, caps, prompts);
    nn_optim opt = nn_adamw(o.lr, o.beta1, o.beta2, 1e-8f, o.wd);
    opt.step = st.opt_step;
    nn_params_moments(&m.ps);
    tokens = t2i_malloc((size_t)o.batch * T * sizeof(int32_t));
    null_text = t2i_malloc((size_t)TL * sizeof(int32_t));
    dalle_null_text(&m, null_text);

    printf("dalle train: %s (%s), %d items, model %s (width %d, %d layers, %d heads, text %d x %d, image %d x %d), "
           "%zu parameters, batch %d, steps %ld (%.2f epochs), %d threads\n",
           o.codes, cd.source, cd.n, cfg->preset, cfg->width, cfg->n_layer, cfg->n_head, cfg->text_len, cfg->text_vocab,
           IL, cfg->codebook, nn_params_count(&m.ps, 1), o.batch, steps, (double)steps / per_epoch, t2i_get_threads());
    fflush(stdout);
    t2i_install_sigint();
    t2i_progress prog;
    t2i_progress_start(&prog, "dalle", st.step, steps);
    double t_start = t2i_now();
    dalle_loss L = {0, 0, 0};
    rc = 0;
    while (st.step < steps) {
        double t0 = t2i_now();
        next_batch(&d, &m, &st, &o, tokens, null_text);
        nn_arena_reset(&arena);
        dalle_train_grads(&m, &arena, tokens, o.batch, o.text_weight, &L);
        if (!isfinite(L.loss)) {
            t2i_fail("step %ld: the loss is %s; stopping (the last checkpoint, if any, is %s; try a lower --lr)",
                     st.step + 1, isnan(L.loss) ? "NaN" : "Inf", ckpt_path);
            rc = 1;
            goto done;
        }
        float gnorm = o.clip > 0 ? nn_clip_grad_norm(&m.ps, o.clip) : nn_grad_norm(&m.ps);
        float lr_now = nn_schedule_lr(&sched, st.step);
        nn_optim_step(&opt, &m.ps, lr_now);
        st.step++;
        double dt = t2i_now() - t0;
        if (st.step % log_every == 0 || st.step == steps) {
            char line[512];
            snprintf(line, sizeof line,
                     "{\"step\":%ld,\"epoch\":%.3f,\"loss\":%.5f,\"loss_text\":%.5f,\"loss_image\":%.5f,\"lr\":%.3g,"
                     "\"grad_norm\":%.4f,\"step_ms\":%.2f}",
                     st.step, (double)st.epoch + (double)st.pos / d.n, L.loss, L.loss_text, L.loss_image, lr_now, gnorm,
                     dt * 1e3);
            t2i_run_metrics(&run, line);
        }
        t2i_progress_update(&prog, st.step, "loss %.4f text %.3f image %.3f lr %.2g", L.loss, L.loss_text, L.loss_image,
                            lr_now);
        int last = st.step == steps;
        if (have_vq && nprompts > 0 && ((sample_every > 0 && st.step % sample_every == 0) || last)) {
            const int per = 8;
            dalle_sample_opts so;
            dalle_sample_defaults(&so);
            int32_t *txt = t2i_malloc((size_t)TL * sizeof(int32_t));
            int32_t *sc = t2i_malloc((size_t)nprompts * per * IL * sizeof(int32_t));
            for (int k = 0; k < nprompts; k++) {
                if (dalle_encode_text(&m, prompts[k], txt, NULL) != 0) {
                    /* a prompt the vocabulary cannot encode: a blank row in the grid, not a crash */
                    memset(sc + (size_t)k * per * IL, 0, (size_t)per * IL * sizeof(int32_t));
                    continue;
                }
                nn_arena_reset(&arena);
                dalle_sample(&m, &arena, txt, per, o.seed, 0, &so, sc + (size_t)k * per * IL);
            }
            nn_arena_reset(&arena);
            size_t isz = (size_t)vq.cfg.channels * vq.cfg.res * vq.cfg.res;
            float *imgs = t2i_malloc((size_t)nprompts * per * isz * sizeof(float));
            dalle_decode(&vq, &arena, sc, nprompts * per, imgs);
            char *p = t2i_asprintf("%s/step_%06ld.png", samples_dir, st.step);
            char *pl = t2i_asprintf("%s/latest.png", samples_dir);
            if (t2i_save_grid(p, imgs, nprompts * per, vq.cfg.channels, vq.cfg.res, vq.cfg.res, per) != 0 ||
                t2i_save_grid(pl, imgs, nprompts * per, vq.cfg.channels, vq.cfg.res, vq.cfg.res, per) != 0)
                t2i_fail_err();
            free(p), free(pl), free(imgs), free(sc), free(txt);
        }
        if (st.step % ckpt_every == 0 || last || t2i_interrupted) {
            st.opt_step = opt.step;
            char *sj = state_to_json(&st, &o);
            int src = dalle_save(&m, ckpt_path, sj, 1);
            free(sj);
            if (src != 0) {
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
    t2i_progress_end(&prog, st.step, "loss %.4f text %.3f image %.3f", L.loss, L.loss_text, L.loss_image);
    printf("dalle train: %ld steps in %.1f s; checkpoint %s%s%s\n", st.step - prog.start_done, t2i_now() - t_start,
           ckpt_path, have_vq ? ", samples in " : "", have_vq ? samples_dir : "");
done:
    free(tokens), free(null_text);
    nn_arena_free(&arena);
    free(d.text), free(d.image), free(d.order);
    free(caps);
    t2i_dataset_free(&ds);
    dalle_codes_free(&cd);
    if (have_vq) vq_model_free(&vq);
    if (have_model) dalle_free(&m);
    if (run.dir) t2i_run_close(&run);
    free(samples_dir);
    free(ckpt_path);
    return rc;
}
