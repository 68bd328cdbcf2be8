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

static int cmd_train(int argc, char **argv) {
    const char *out = "runs/classifier";
    int epochs = 8, batch = 128, threads = 0;
    long seed = 1;
    float lr = 2e-3f, wd = 0.05f;
    t2i_flag flags[] = {
        {"--epochs", T2I_INT, &epochs, "training epochs over Fashion-MNIST train"},
        {"--batch", T2I_INT, &batch, "batch size"},
        {"--lr", T2I_FLOAT, &lr, "peak learning rate (AdamW, warmup + cosine)"},
        {"--wd", T2I_FLOAT, &wd, "weight decay"},
        {"--seed", T2I_LONG, &seed, "random seed"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "run folder (checkpoint.safetensors is the classifier)"},
    };
    t2i_cmd cmd = {"t2i classify train", "Train the Fashion-MNIST classifier used for FID/KID and fidelity.",
                   "[options]", flags, (int)(sizeof flags / sizeof flags[0])};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--epochs", epochs, 1, 1000) || t2i_check_range_i("--batch", batch, 2, 8192) ||
        t2i_check_range_f("--lr", lr, 1e-6, 1))
        return 2;
    t2i_set_threads(threads);
    t2i_dataset tr, te;
    if (t2i_dataset_fashion_mnist(&tr, "train") != 0) return t2i_fail_err();
    if (t2i_dataset_fashion_mnist(&te, "test") != 0) return t2i_dataset_free(&tr), t2i_fail_err();
    t2i_run run;
    if (t2i_run_open(&run, out) != 0) return t2i_fail_err();
    char *cfg = t2i_asprintf("{\"epochs\":%d,\"batch\":%d,\"lr\":%g,\"wd\":%g,\"seed\":%ld}", epochs, batch, lr, wd, seed);
    t2i_run_write_config(&run, cfg);
    free(cfg);
    t2i_rng rng;
    t2i_rng_seed(&rng, (uint64_t)seed);
    cls_model m;
    cls_build(&m, 10, &rng);
    t2i_loader L;
    t2i_loader_init(&L, &tr, batch, 1, (uint64_t)seed);
    L.drop_last = 1;
    L.crop_pad = 2;
    long per_epoch = tr.n / batch, total = per_epoch * epochs;
    nn_optim opt = nn_adamw(lr, 0.9f, 0.999f, 1e-8f, wd);
    nn_schedule sch = nn_schedule_cosine(lr, per_epoch / 2, total, lr * 0.01f);
    float *x = t2i_malloc_aligned((size_t)batch * 784 * sizeof(float));
    int *y = t2i_malloc((size_t)batch * sizeof(int));
    nn_arena a;
    nn_arena_init(&a);
    t2i_progress p;
    t2i_progress_start(&p, "classify", 0, total);
    int rc = 0;
    for (long step = 0; step < total; step++) {
        int got = t2i_loader_next(&L, x, y, NULL, NULL);
        if (got == 0) got = t2i_loader_next(&L, x, y, NULL, NULL);
        if (got < 0) {
            rc = t2i_fail_err();
            break;
        }
        nn_arena_reset(&a);
        nn_params_zero_grad(&m.ps);
        nn_tape t, th;
        memset(&t, 0, sizeof t), memset(&th, 0, sizeof th);
        th.rng = &rng;
        float *f = nn_seq_forward(&m.trunk, &t, &a, x, got, 1);
        float *lg = nn_seq_forward(&m.head, &th, &a, f, got, 1);
        float *dl = nn_arena_zeros(&a, (size_t)got * 10);
        float loss = nn_cross_entropy(dl, lg, y, NULL, (size_t)got, 10, -100, 1.0f);
        float *df = nn_seq_backward(&m.head, &th, &a, dl, 1);
        nn_seq_backward(&m.trunk, &t, &a, df, 0);
        nn_optim_step(&opt, &m.ps, nn_schedule_lr(&sch, step));
        if (!isfinite(loss)) {
            rc = t2i_fail("step %ld: loss is not finite; stopping", step);
            break;
        }
        if ((step + 1) % 50 == 0) {
            char line[160];
            snprintf(line, sizeof line, "{\"step\":%ld,\"loss\":%.5f,\"lr\":%.6g}", step + 1, loss, nn_schedule_lr(&sch, step));
            t2i_run_metrics(&run, line);
        }
        t2i_progress_update(&p, step + 1, "loss %.4f", loss);
        if ((step + 1) % per_epoch == 0 || step + 1 == total) {
            double acc;
            if (accuracy(&m, &te, &acc) != 0) {
                rc = t2i_fail_err();
                break;
            }
            char line[160];
            snprintf(line, sizeof line, "{\"epoch\":%ld,\"test_accuracy\":%.4f}", (step + 1) / per_epoch, acc);
            t2i_run_metrics(&run, line);
            fprintf(stderr, "\nepoch %ld: test accuracy %.2f%%\n", (step + 1) / per_epoch, 100 * acc);
            /* the weights after each epoch (saved atomically), so an interrupted run keeps a usable classifier */
            char *ep = t2i_run_path(&run, "checkpoint.safetensors");
            int src = cls_save(&m, ep, NULL);
            free(ep);
            if (src != 0) {
                rc = t2i_fail_err();
                break;
            }
        }
    }
    if (rc == 0) {
        t2i_progress_end(&p, total, NULL);
        char *path = t2i_run_path(&run, "checkpoint.safetensors");
        double acc;
        accuracy(&m, &te, &acc);
        if (cls_save(&m, path, NULL) != 0) rc = t2i_fail_err();
        else printf("classify train: test accuracy %.2f%%; classifier saved to %s\n", 100 * acc, path);
        free(path);
    }
    nn_arena_free(&a);
    free(x), free(y);
    t2i_loader_free(&L);
    cls_free(&m);
    t2i_dataset_free(&tr), t2i_dataset_free(&te);
    t2i_run_close(&run);
    return rc;
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
