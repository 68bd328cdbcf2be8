/* fid.c - FID and KID (see fid.h) and `t2i eval fid`. */
#include "fid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "classifier.h"
#include "data.h"
#include "gan.h"
#include "rng.h"

/* LAPACK (bundled in OpenBLAS): symmetric eigendecomposition. */
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
            const int *lwork, int *info);

static void mean_cov(const float *x, int n, int d, double *mu, double *cov) {
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += x[(size_t)i * d + j];
        mu[j] = s / n;
    }
    double *xc = t2i_malloc((size_t)n * d * sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) xc[(size_t)i * d + j] = x[(size_t)i * d + j] - mu[j];
#pragma omp parallel for schedule(dynamic, 4)
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += xc[(size_t)i * d + a] * xc[(size_t)i * d + b];
            cov[(size_t)a * d + b] = cov[(size_t)b * d + a] = s / (n - 1);
        }
    free(xc);
}

/* Eigen-decomposition of a symmetric d x d matrix (in place: a becomes the eigenvectors,
 * column-major, i.e. row i of the row-major array is eigenvector i). */
static int eigh(double *a, double *w, int d) {
    int lwork = -1, info = 0;
    double q;
    dsyev_("V", "U", &d, a, &d, w, &q, &lwork, &info);
    lwork = (int)q;
    double *work = t2i_malloc((size_t)lwork * sizeof(double));
    dsyev_("V", "U", &d, a, &d, w, work, &lwork, &info);
    free(work);
    if (info != 0) return t2i_error_set("FID: eigendecomposition failed (LAPACK info %d)", info);
    return 0;
}

double fid_features(const float *fa, int na, const float *fb, int nb, int d) {
    T2I_ASSERT(na >= 2 && nb >= 2);
    double *mu1 = t2i_malloc((size_t)d * sizeof(double)), *mu2 = t2i_malloc((size_t)d * sizeof(double));
    double *s1 = t2i_malloc((size_t)d * d * sizeof(double)), *s2 = t2i_malloc((size_t)d * d * sizeof(double));
    mean_cov(fa, na, d, mu1, s1);
    mean_cov(fb, nb, d, mu2, s2);
    double tr1 = 0, tr2 = 0, dmu = 0;
    for (int j = 0; j < d; j++) {
        tr1 += s1[(size_t)j * d + j], tr2 += s2[(size_t)j * d + j];
        dmu += (mu1[j] - mu2[j]) * (mu1[j] - mu2[j]);
    }
    /* s1^(1/2) = V diag(sqrt(w)) V^T */
    double *v = t2i_malloc((size_t)d * d * sizeof(double)), *w = t2i_malloc((size_t)d * sizeof(double));
    memcpy(v, s1, (size_t)d * d * sizeof(double));
    double result = -1;
    if (eigh(v, w, d) == 0) {
        double *h = t2i_calloc((size_t)d * d, sizeof(double));
        for (int k = 0; k < d; k++) {
            double sw = sqrt(w[k] > 0 ? w[k] : 0);
            const double *e = v + (size_t)k * d; /* eigenvector k */
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) h[(size_t)i * d + j] += sw * e[i] * e[j];
        }
        /* m = h s2 h */
        double *t = t2i_calloc((size_t)d * d, sizeof(double)), *m = t2i_calloc((size_t)d * d, sizeof(double));
        for (int i = 0; i < d; i++)
            for (int k = 0; k < d; k++)
                for (int j = 0; j < d; j++) t[(size_t)i * d + j] += h[(size_t)i * d + k] * s2[(size_t)k * d + j];
        for (int i = 0; i < d; i++)
            for (int k = 0; k < d; k++)
                for (int j = 0; j < d; j++) m[(size_t)i * d + j] += t[(size_t)i * d + k] * h[(size_t)k * d + j];
        if (eigh(m, w, d) == 0) {
            double trs = 0;
            for (int k = 0; k < d; k++) trs += sqrt(w[k] > 0 ? w[k] : 0);
            result = dmu + tr1 + tr2 - 2 * trs;
        }
        free(h), free(t), free(m);
    }
    free(mu1), free(mu2), free(s1), free(s2), free(v), free(w);
    return result;
}

static double kern(const float *x, const float *y, int d) {
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)x[k] * y[k];
    double b = s / d + 1.0;
    return b * b * b;
}

void kid_features(const float *fa, int na, const float *fb, int nb, int d, int subsets, int subset_size,
                  uint64_t seed, double *mean, double *std) {
    int m = subset_size;
    if (m > na) m = na;
    if (m > nb) m = nb;
    T2I_ASSERT(m >= 2 && subsets >= 1);
    double *vals = t2i_malloc((size_t)subsets * sizeof(double));
    int *ia = t2i_malloc((size_t)na * sizeof(int)), *ib = t2i_malloc((size_t)nb * sizeof(int));
    t2i_rng r;
    t2i_rng_seed(&r, seed);
    for (int s = 0; s < subsets; s++) {
        for (int i = 0; i < na; i++) ia[i] = i;
        for (int i = 0; i < nb; i++) ib[i] = i;
        t2i_rng_shuffle(&r, ia, (size_t)na);
        t2i_rng_shuffle(&r, ib, (size_t)nb);
        double kxx = 0, kyy = 0, kxy = 0;
#pragma omp parallel for reduction(+ : kxx, kyy, kxy) schedule(dynamic, 8)
        for (int i = 0; i < m; i++) {
            const float *xi = fa + (size_t)ia[i] * d, *yi = fb + (size_t)ib[i] * d;
            for (int j = 0; j < m; j++) {
                const float *xj = fa + (size_t)ia[j] * d, *yj = fb + (size_t)ib[j] * d;
                if (i != j) {
                    kxx += kern(xi, xj, d);
                    kyy += kern(yi, yj, d);
                }
                kxy += kern(xi, yj, d);
            }
        }
        vals[s] = (kxx + kyy) / ((double)m * (m - 1)) - 2 * kxy / ((double)m * m);
    }
    double mu = 0, var = 0;
    for (int s = 0; s < subsets; s++) mu += vals[s];
    mu /= subsets;
    for (int s = 0; s < subsets; s++) var += (vals[s] - mu) * (vals[s] - mu);
    *mean = mu;
    *std = subsets > 1 ? sqrt(var / (subsets - 1)) : 0;
    free(vals), free(ia), free(ib);
}

/* Loads n images of a dataset as 1x28x28 floats. */
static float *load_images(const t2i_dataset *ds, int n) {
    float *x = t2i_malloc((size_t)n * 784 * sizeof(float));
    int fail = 0;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++)
        if (!fail && t2i_dataset_get(ds, i, x + (size_t)i * 784) != 0) fail = 1;
    if (fail) {
        free(x);
        return NULL;
    }
    return x;
}

static float *sample_gan(const char *ckpt, int n, uint64_t seed) {
    gan_model m;
    if (gan_load(&m, ckpt, 0, NULL) != 0) return NULL;
    if (m.cfg.channels != 1 || m.cfg.res != 28 || m.cfg.cond_dim > 0) {
        t2i_error_set("%s: FID here needs an unconditional or class-conditional 1x28x28 GAN", ckpt);
        gan_model_free(&m);
        return NULL;
    }
    int zd = m.cfg.z_dim, cs = gan_cond_size(&m.cfg);
    float *x = t2i_malloc((size_t)n * 784 * sizeof(float));
    float *z = t2i_malloc((size_t)256 * zd * sizeof(float));
    float *c = cs ? t2i_malloc((size_t)256 * cs * sizeof(float)) : NULL;
    int lab[256];
    t2i_rng r;
    t2i_rng_seed(&r, seed);
    nn_arena a;
    nn_arena_init(&a);
    for (int i = 0; i < n; i += 256) {
        int k = n - i < 256 ? n - i : 256;
        t2i_rng_fill_normal(&r, z, (size_t)k * zd, 0.0f, 1.0f);
        if (cs) {
            for (int j = 0; j < k; j++) lab[j] = (i + j) % cs; /* classes in equal shares */
            gan_onehot(c, lab, k, cs);
        }
        nn_arena_reset(&a);
        nn_tape t;
        memset(&t, 0, sizeof t);
        float *y = gan_g_forward(&m, &m.ema, &t, &a, z, c, k, 0);
        memcpy(x + (size_t)i * 784, y, (size_t)k * 784 * sizeof(float));
    }
    nn_arena_free(&a);
    free(z), free(c);
    gan_model_free(&m);
    return x;
}

static const char *const fm_names[10] = {"t-shirt", "trousers", "pullover", "dress", "coat",
                                          "sandal",  "shirt",    "sneaker",  "bag",   "ankle boot"};

int eval_cmd_fid(int argc, char **argv) {
    const char *real = "fashion-mnist:test", *fake = NULL, *gan = NULL, *clsp = NULL;
    int n = 10000, json = 0, threads = 0, subsets = 10, subset_size = 1000;
    long seed = 1;
    t2i_flag flags[] = {
        {"--fake", T2I_STR, &fake, "folder of generated images (PNG/JPEG, brought to 1x28x28; grid.png skipped)"},
        {"--gan", T2I_STR, &gan, "or: a GAN checkpoint to sample --n images from (EMA weights)"},
        {"--n", T2I_INT, &n, "images per set (at most the folder's / the real set's size)"},
        {"--real", T2I_STR, &real, "reference images: fashion-mnist[:test|:train] or a folder"},
        {"--classifier", T2I_STR, &clsp, "feature extractor (default: $T2I_CLASSIFIER or the shipped one)"},
        {"--kid-subsets", T2I_INT, &subsets, "KID subsets"},
        {"--kid-size", T2I_INT, &subset_size, "KID subset size"},
        {"--seed", T2I_LONG, &seed, "seed for sampling and KID subsets"},
        {"--json", T2I_BOOL, &json, "print one JSON object"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i eval fid", "FID and KID of generated images against real ones, and their class histogram.",
                   "--fake DIR | --gan CKPT [options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "Features: the penultimate layer (128-d) of the toolkit's Fashion-MNIST classifier\n"
                   "(t2i classify train), not Inception-v3; figures compare runs measured here."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!fake == !gan) return t2i_fail("eval fid: give exactly one of --fake DIR or --gan CKPT"), 2;
    if (t2i_check_range_i("--n", n, 2, 10000000) || t2i_check_range_i("--kid-subsets", subsets, 1, 1000) ||
        t2i_check_range_i("--kid-size", subset_size, 2, 100000))
        return 2;
    t2i_set_threads(threads);
    cls_model cm;
    if (cls_load(&cm, clsp ? clsp : cls_default_path()) != 0) {
        t2i_fail("%s (train one with: t2i classify train)", t2i_error_msg());
        return 1;
    }
    int rc = 1;
    t2i_dataset rd, fd;
    memset(&fd, 0, sizeof fd);
    float *xr = NULL, *xf = NULL;
    if (t2i_dataset_open(&rd, real, 1, 28, 28) != 0) {
        t2i_fail_err();
        cls_free(&cm);
        return 1;
    }
    int nr = rd.n < n ? rd.n : n, nf = n;
    if (fake) {
        if (t2i_dataset_open(&fd, fake, 1, 28, 28) != 0) {
            t2i_fail_err();
            goto out;
        }
        nf = fd.n < n ? fd.n : n;
        if (nf < 2) {
            t2i_fail("%s: need at least 2 images", fake);
            goto out;
        }
        xf = load_images(&fd, nf);
    } else {
        xf = sample_gan(gan, nf, (uint64_t)seed);
    }
    if (!xf || !(xr = load_images(&rd, nr))) {
        t2i_fail_err();
        goto out;
    }
    float *fr = t2i_malloc((size_t)nr * CLS_FEATURES * sizeof(float)), *ff = t2i_malloc((size_t)nf * CLS_FEATURES * sizeof(float));
    float *lg = t2i_malloc((size_t)nf * cm.n_classes * sizeof(float));
    cls_infer(&cm, xr, nr, fr, NULL);
    cls_infer(&cm, xf, nf, ff, lg);
    double fid = fid_features(fr, nr, ff, nf, CLS_FEATURES);
    double kid_m, kid_s;
    kid_features(fr, nr, ff, nf, CLS_FEATURES, subsets, subset_size, (uint64_t)seed, &kid_m, &kid_s);
    int hist[1000] = {0};
    for (int i = 0; i < nf; i++) {
        const float *l = lg + (size_t)i * cm.n_classes;
        int b = 0;
        for (int k = 1; k < cm.n_classes; k++)
            if (l[k] > l[b]) b = k;
        hist[b]++;
    }
    if (fid < 0) {
        t2i_fail_err();
    } else if (json) {
        printf("{\"fid\":%.4f,\"kid\":%.6f,\"kid_std\":%.6f,\"n_real\":%d,\"n_fake\":%d,\"class_share\":[", fid, kid_m,
               kid_s, nr, nf);
        for (int k = 0; k < cm.n_classes; k++) printf("%s%.4f", k ? "," : "", (double)hist[k] / nf);
        printf("]}\n");
        rc = 0;
    } else {
        printf("FID %.3f   KID %.5f +- %.5f   (%d real from %s, %d generated from %s; classifier features)\n", fid,
               kid_m, kid_s, nr, rd.source, nf, fake ? fake : gan);
        printf("class histogram of generated images:\n");
        for (int k = 0; k < cm.n_classes; k++)
            printf("  %-11s %5.1f%%\n", cm.n_classes == 10 ? fm_names[k] : "", 100.0 * hist[k] / nf);
        rc = 0;
    }
    free(fr), free(ff), free(lg);
out:
    free(xr), free(xf);
    t2i_dataset_free(&rd);
    if (fake) t2i_dataset_free(&fd);
    cls_free(&cm);
    return rc;
}
