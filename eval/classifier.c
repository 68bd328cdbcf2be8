/* classifier.c - Fashion-MNIST classifier (see classifier.h) and `t2i classify`. */
#include "classifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "data.h"
#include "optim.h"
#include "progress.h"
#include "trainer.h"

void cls_build(cls_model *m, int n_classes, t2i_rng *rng) {
    memset(m, 0, sizeof *m);
    m->n_classes = n_classes;
    nn_params_init(&m->ps);
    nn_seq *t = &m->trunk;
    nn_seq_init(t, &m->ps, "trunk", 1, 28, 28);
    int widths[2] = {32, 64};
    for (int b = 0; b < 2; b++) {
        for (int k = 0; k < 2; k++) {
            nn_seq_conv(t, widths[b], 3, 1, 1, 0);
            nn_seq_bn(t);
            nn_seq_act(t, NN_ACT_RELU, 0);
        }
        nn_seq_avgpool(t, 2);
    }
    nn_seq_linear(t, CLS_FEATURES, 0);
    nn_seq_bn(t);
    nn_seq_act(t, NN_ACT_RELU, 0);
    nn_seq *h = &m->head;
    nn_seq_init(h, &m->ps, "head", CLS_FEATURES, 1, 1);
    nn_seq_dropout(h, 0.3f);
    nn_seq_linear(h, n_classes, 1);
    nn_params_alloc(&m->ps);
    nn_seq_init_params(t, rng, NN_INIT_PYTORCH);
    nn_seq_init_params(h, rng, NN_INIT_PYTORCH);
}

void cls_free(cls_model *m) { nn_params_free(&m->ps); }

/* The config: the classes and the feature size (the network is otherwise fixed). */
#define CONFIG_FIELDS(nc, nf)                                         \
    nn_field cf[] = {NN_F_INT_IN("n_classes", nc, 2, 1000),           \
                     NN_F_INT_IN("features", nf, CLS_FEATURES, CLS_FEATURES)}

int cls_save(cls_model *m, const char *path, const char *state_json) {
    nn_ckpt_part part = {&m->ps, "", state_json != NULL, 0};
    int nc = m->n_classes, nf = CLS_FEATURES;
    CONFIG_FIELDS(nc, nf);
    char *cfg = nn_fields_to_json(cf, NN_NFIELDS(cf));
    nn_ckpt_meta meta = {"classifier", cfg, state_json, NULL, NULL, 0, ST_F32};
    int rc = nn_ckpt_save(path, &part, 1, &meta);
    free(cfg);
    return rc;
}

int cls_load(cls_model *m, const char *path) {
    st_file f;
    if (nn_ckpt_open(&f, path, "classifier") != 0) return -1;
    const char *cfg = st_meta(&f, "config");
    int nc = 0, nf = 0;
    CONFIG_FIELDS(nc, nf);
    if (!cfg || nn_fields_from_json(cfg, cf, NN_NFIELDS(cf), "classifier config", 0) != 0) {
        if (!cfg) t2i_error_set("classifier config missing from the metadata");
        st_close(&f);
        return t2i_error_prefix("%s", path);
    }
    t2i_rng r;
    t2i_rng_seed(&r, 0);
    cls_build(m, nc, &r);
    nn_ckpt_part part = {&m->ps, "", 0, 0};
    int rc = nn_ckpt_load_parts(&f, &part, 1);
    st_close(&f);
    if (rc) cls_free(m);
    return rc;
}

const char *cls_default_path(void) {
    const char *e = getenv("T2I_CLASSIFIER");
    return e ? e : T2I_SOURCE_DIR "/samples/models/fmnist_classifier.safetensors";
}

void cls_infer(cls_model *m, const float *x, int N, float *feats, float *logits) {
    nn_arena a;
    nn_arena_init(&a);
    const int chunk = 500;
    for (int i = 0; i < N; i += chunk) {
        int k = N - i < chunk ? N - i : chunk;
        nn_arena_reset(&a);
        nn_tape t, th;
        memset(&t, 0, sizeof t), memset(&th, 0, sizeof th);
        float *f = nn_seq_forward(&m->trunk, &t, &a, x + (size_t)i * 784, k, 0);
        if (feats) memcpy(feats + (size_t)i * CLS_FEATURES, f, (size_t)k * CLS_FEATURES * sizeof(float));
        if (logits) {
            float *l = nn_seq_forward(&m->head, &th, &a, f, k, 0);
            memcpy(logits + (size_t)i * m->n_classes, l, (size_t)k * m->n_classes * sizeof(float));
        }
    }
    nn_arena_free(&a);
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Accuracy (top-1) of the classifier on a labelled dataset. */
static int accuracy(cls_model *m, const t2i_dataset *ds, double *acc) {
    float *x = t2i_malloc((size_t)ds->n * 784 * sizeof(float));
    for (int i = 0; i < ds->n; i++)
        if (t2i_dataset_get(ds, i, x + (size_t)i * 784) != 0) {
            free(x);
            return -1;
        }
    float *lg = t2i_malloc((size_t)ds->n * m->n_classes * sizeof(float));
    cls_infer(m, x, ds->n, NULL, lg);
    int ok = 0;
    for (int i = 0; i < ds->n; i++) ok += argmax(lg + (size_t)i * m->n_classes, m->n_classes) == ds->labels[i];
    *acc = (double)ok / ds->n;
    free(x), free(lg);
    return 0;
}

/* `t2i classify train`: its own part of the run (t2i_trainer holds the common one). */
typedef struct {
    int epochs, batch;
    float lr, wd;
    t2i_dataset tr, te;
    cls_model m;
    int built;
    t2i_loader L;
    nn_optim opt;
    nn_schedule sch;
    nn_arena a;
    float *x;
    int *y;
    float loss;
} cls_trainer;

static int cls_tr_check_flags(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    (void)t;
    if (t2i_check_range_i("--epochs", c->epochs, 1, 1000) || t2i_check_range_i("--batch", c->batch, 2, 8192) ||
        t2i_check_range_f("--lr", c->lr, 1e-6, 1))
        return 2;
    return 0;
}

static int cls_tr_setup(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    if (t2i_dataset_fashion_mnist(&c->tr, "train") != 0 || t2i_dataset_fashion_mnist(&c->te, "test") != 0)
        return t2i_fail_err();
    cls_build(&c->m, 10, &t->rng);
    c->built = 1;
    long per_epoch = c->tr.n / c->batch;
    t->target = per_epoch * c->epochs;
    /* a test evaluation and the weights after each epoch (an interrupted run keeps a usable classifier) */
    t->sample_every = t->ckpt_every = (int)per_epoch;
    t->per_epoch = per_epoch;
    return 0;
}

static char *cls_tr_config(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    return t2i_asprintf("{\"epochs\":%d,\"batch\":%d,\"lr\":%g,\"wd\":%g,\"seed\":%ld}", c->epochs, c->batch, c->lr,
                        c->wd, t->seed_arg);
}

static int cls_tr_start(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    t2i_loader_init(&c->L, &c->tr, c->batch, 1, t->seed);
    c->L.drop_last = 1;
    c->L.crop_pad = 2;
    c->opt = nn_adamw(c->lr, 0.9f, 0.999f, 1e-8f, c->wd);
    c->sch = nn_schedule_cosine(c->lr, t->per_epoch / 2, t->target, c->lr * 0.01f);
    c->x = t2i_malloc_aligned((size_t)c->batch * 784 * sizeof(float));
    c->y = t2i_malloc((size_t)c->batch * sizeof(int));
    return 0;
}

static int cls_tr_step(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    int got = t2i_loader_next(&c->L, c->x, c->y, NULL, NULL);
    if (got == 0) got = t2i_loader_next(&c->L, c->x, c->y, NULL, NULL);
    if (got < 0) return t2i_fail_err(), T2I_STEP_FAILED;
    cls_model *m = &c->m;
    nn_arena_reset(&c->a);
    nn_params_zero_grad(&m->ps);
    nn_tape tt, th;
    memset(&tt, 0, sizeof tt), memset(&th, 0, sizeof th);
    th.rng = &t->rng;
    float *f = nn_seq_forward(&m->trunk, &tt, &c->a, c->x, got, 1);
    float *lg = nn_seq_forward(&m->head, &th, &c->a, f, got, 1);
    float *dl = nn_arena_zeros(&c->a, (size_t)got * 10);
    c->loss = nn_cross_entropy(dl, lg, c->y, NULL, (size_t)got, 10, -100, 1.0f);
    float *df = nn_seq_backward(&m->head, &th, &c->a, dl, 1);
    nn_seq_backward(&m->trunk, &tt, &c->a, df, 0);
    nn_optim_step(&c->opt, &m->ps, nn_schedule_lr(&c->sch, t->step));
    return t2i_trainer_nonfinite(t, "", c->loss) ? T2I_STEP_NONFINITE : T2I_STEP_OK;
}

static int cls_tr_metrics(void *self, t2i_trainer *t, char *buf, size_t n) {
    cls_trainer *c = self;
    if (t->step % t->log_every) return 0; /* every 50 steps, not at the end */
    return snprintf(buf, n, "{\"step\":%ld,\"loss\":%.5f,\"lr\":%.6g}", t->step, c->loss,
                    nn_schedule_lr(&c->sch, t->step - 1));
}

static void cls_tr_progress(void *self, t2i_trainer *t, int last, char *buf, size_t n) {
    (void)t;
    if (!last) snprintf(buf, n, "loss %.4f", ((cls_trainer *)self)->loss);
}

static int cls_tr_sample(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    double acc;
    if (accuracy(&c->m, &c->te, &acc) != 0) return t2i_fail_err();
    long epoch = t->step / t->per_epoch;
    char line[160];
    snprintf(line, sizeof line, "{\"epoch\":%ld,\"test_accuracy\":%.4f}", epoch, acc);
    t2i_run_metrics(&t->run, line);
    fprintf(stderr, "\nepoch %ld: test accuracy %.2f%%\n", epoch, 100 * acc);
    return 0;
}

static int cls_tr_save(void *self, const char *path, const char *state_json) {
    (void)state_json; /* the weights alone: the classifier has no --resume */
    return cls_save(&((cls_trainer *)self)->m, path, NULL);
}

static void cls_tr_finish(void *self, t2i_trainer *t) {
    cls_trainer *c = self;
    double acc = 0;
    accuracy(&c->m, &c->te, &acc);
    printf("classify train: test accuracy %.2f%%; classifier saved to %s\n", 100 * acc, t->ckpt_path);
}

static void cls_tr_release(void *self) {
    cls_trainer *c = self;
    nn_arena_free(&c->a);
    t2i_free(c->x), free(c->y);
    t2i_loader_free(&c->L);
    if (c->built) cls_free(&c->m);
    t2i_dataset_free(&c->tr), t2i_dataset_free(&c->te);
}

static const t2i_trainer_ops cls_ops = {
    .check_flags = cls_tr_check_flags,
    .setup = cls_tr_setup,
    .config = cls_tr_config,
    .start = cls_tr_start,
    .step = cls_tr_step,
    .metrics = cls_tr_metrics,
    .progress = cls_tr_progress,
    .sample = cls_tr_sample,
    .save = cls_tr_save,
    .finish = cls_tr_finish,
    .release = cls_tr_release,
};

static int cmd_train(int argc, char **argv) {
    cls_trainer c = {.epochs = 8, .batch = 128, .lr = 2e-3f, .wd = 0.05f};
    nn_arena_init(&c.a);
    t2i_trainer t;
    t2i_trainer_init(&t, &cls_ops, &c, "classify");
    t.out = "runs/classifier", t.seed_arg = 1, t.log_every = 50;
    t2i_flag flags[] = {
        {"--epochs", T2I_INT, &c.epochs, "training epochs over Fashion-MNIST train"},
        {"--batch", T2I_INT, &c.batch, "batch size"},
        {"--lr", T2I_FLOAT, &c.lr, "peak learning rate (AdamW, warmup + cosine)"},
        {"--wd", T2I_FLOAT, &c.wd, "weight decay"},
        T2I_TRAIN_SEED(t),
        T2I_TRAIN_THREADS(t),
        {"--out", T2I_STR, &t.out, "run folder (checkpoint.safetensors is the classifier)"},
    };
    t2i_cmd cmd = {"t2i classify train", "Train the Fashion-MNIST classifier used for FID/KID and fidelity.",
                   "[options]", flags, (int)(sizeof flags / sizeof flags[0])};
    return t2i_trainer_main(&t, &cmd, argc, argv);
}

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = "fashion-mnist:test";
    int threads = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "classifier checkpoint (default: $T2I_CLASSIFIER or the shipped one)"},
        {"--data", T2I_STR, &data, "labelled data: fashion-mnist:test, or class folders"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i classify eval", "Top-1 accuracy of the classifier.", "[options]", flags, 3};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    t2i_set_threads(threads);
    cls_model m;
    if (cls_load(&m, ckpt ? ckpt : cls_default_path()) != 0) return t2i_fail_err();
    t2i_dataset ds;
    if (t2i_dataset_open(&ds, data, 1, 28, 28) != 0) return cls_free(&m), t2i_fail_err();
    int rc = 0;
    double acc;
    if (!ds.labels) rc = t2i_fail("%s: no labels", ds.source);
    else if (accuracy(&m, &ds, &acc) != 0) rc = t2i_fail_err();
    else printf("accuracy %.2f%% on %d images of %s\n", 100 * acc, ds.n, ds.source);
    t2i_dataset_free(&ds);
    cls_free(&m);
    return rc;
}

int cls_cmd(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", cmd_train, "train the Fashion-MNIST classifier (FID/KID features, fidelity judge)"},
        {"eval", cmd_eval, "test accuracy of a classifier"},
    };
    return t2i_dispatch("t2i classify", "The Fashion-MNIST classifier used by the evaluations.", subs, 2, argc, argv);
}
