/* sample.c - `t2i gan sample`: images from a trained GAN, a grid, a latent interpolation.
 *
 * Samples come from the EMA copy of G (unless --raw) in evaluation mode (BatchNorm uses
 * its running statistics). Sample i draws its noise from stream i of the seed, so any
 * single image can be regenerated alone: `--seed S --first i --n 1`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "gan.h"
#include "image.h"
#include "progress.h"

/* Noise of sample i: stream i of the seed. */
static void sample_noise(float *z, int zd, uint64_t seed, long i) {
    t2i_rng base, r;
    t2i_rng_seed(&base, seed);
    r = t2i_rng_split(&base, (uint64_t)i);
    t2i_rng_fill_normal(&r, z, (size_t)zd, 0.0f, 1.0f);
}

/* Runs G on n noise vectors in chunks of at most 256; writes images (n, C, R, R). */
static void generate(gan_model *m, nn_seq *g, const float *z, const float *c, int n, float *imgs) {
    nn_infer ws;
    nn_infer_init(&ws, NN_INFER_EXACT);
    int zd = m->cfg.z_dim, cs = gan_cond_size(&m->cfg);
    size_t item = (size_t)m->cfg.channels * m->cfg.res * m->cfg.res;
    for (int i = 0; i < n; i += 256) {
        int k = n - i < 256 ? n - i : 256;
        const float *y = gan_g_infer(m, g, &ws, z + (size_t)i * zd, c ? c + (size_t)i * cs : NULL, k);
        memcpy(imgs + (size_t)i * item, y, (size_t)k * item * sizeof(float));
    }
    nn_infer_free(&ws);
}

int gan_cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *out = "samples_gan";
    int n = 64, cls = -1, raw = 0, interp = 0, nrow = 8, threads = 0, grid_only = 0;
    long seed = 1, first = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "GAN checkpoint (required)"},
        {"--n", T2I_INT, &n, "number of images"},
        {"--class", T2I_INT, &cls, "class index for class-conditional models (-1: cycle through classes)"},
        {"--seed", T2I_LONG, &seed, "random seed"},
        {"--first", T2I_LONG, &first, "index of the first sample (to regenerate one image)"},
        {"--raw", T2I_BOOL, &raw, "sample from G itself, not its EMA copy"},
        {"--interp", T2I_BOOL, &interp, "also write interp.png: 8 rows of latent interpolations"},
        {"--nrow", T2I_INT, &nrow, "images per grid row"},
        {"--grid-only", T2I_BOOL, &grid_only, "write only grid.png, not one PNG per image"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "output folder"},
    };
    t2i_cmd cmd = {"t2i gan sample", "Sample images from a trained GAN.", "--ckpt FILE [options]", flags,
                   (int)(sizeof flags / sizeof flags[0])};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!ckpt) return t2i_fail("gan sample: --ckpt is required"), 2;
    if (t2i_check_range_i("--n", n, 1, 1000000) || t2i_check_range_i("--nrow", nrow, 1, 1024) ||
        t2i_check_range_i("--first", first, 0, 1L << 40) || t2i_check_range_i("--class", cls, -1, 1000000) ||
        t2i_check_range_i("--seed", seed, 0, 1L << 53))
        return 2;
    t2i_set_threads(threads);
    gan_model m;
    if (gan_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    const gan_config *cfg = &m.cfg;
    int rc = 1;
    int cs = gan_cond_size(cfg);
    if (cls >= 0 && cfg->n_classes == 0) {
        t2i_fail("%s: the model is not class-conditional (no --class)", ckpt);
        goto out;
    }
    if (cls >= cfg->n_classes && cfg->n_classes > 0) {
        t2i_fail("--class %d: the model has %d classes (0..%d)", cls, cfg->n_classes, cfg->n_classes - 1);
        goto out;
    }
    if (cfg->cond_dim > 0) {
        t2i_fail("%s: the model is conditioned on text; sample it with t2i generate --generator gan", ckpt);
        goto out;
    }
    if (t2i_mkdirs(out) != 0) {
        t2i_fail_err();
        goto out;
    }
    int zd = cfg->z_dim;
    size_t item = (size_t)cfg->channels * cfg->res * cfg->res;
    float *z = t2i_malloc((size_t)n * zd * sizeof(float));
    float *c = cs ? t2i_malloc((size_t)n * cs * sizeof(float)) : NULL;
    float *imgs = t2i_malloc((size_t)n * item * sizeof(float));
    int *lab = t2i_malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        sample_noise(z + (size_t)i * zd, zd, (uint64_t)seed, first + i);
        lab[i] = cls >= 0 ? cls : (cfg->n_classes ? (int)((first + i) % cfg->n_classes) : 0);
    }
    if (cs) gan_onehot(c, lab, n, cs);
    nn_seq *g = raw ? &m.g : &m.ema;
    generate(&m, g, z, c, n, imgs);
    rc = 0;
    if (!grid_only) {
        uint8_t *px = t2i_malloc(item);
        for (int i = 0; i < n && rc == 0; i++) {
            t2i_chw_to_u8(px, imgs + (size_t)i * item, cfg->channels, cfg->res, cfg->res);
            char *p = t2i_asprintf("%s/%06ld.png", out, first + i);
            if (t2i_image_save_png(p, px, cfg->res, cfg->res, cfg->channels) != 0) rc = t2i_fail_err();
            free(p);
        }
        free(px);
    }
    char *gp = t2i_asprintf("%s/grid.png", out);
    int ng = n < 1024 ? n : 1024;
    if (rc == 0 && t2i_save_grid(gp, imgs, ng, cfg->channels, cfg->res, cfg->res, nrow) != 0) rc = t2i_fail_err();
    if (rc == 0) printf("gan sample: %d images in %s%s, grid %s\n", n, out, grid_only ? " (grid only)" : "", gp);
    free(gp);
    if (rc == 0 && interp) {
        /* 8 rows: from z_a to z_b in 8 steps, spherical interpolation (the noise is Gaussian,
         * so interpolants keep a typical norm) */
        const int rows = 8, cols = 8;
        float *zi = t2i_malloc((size_t)rows * cols * zd * sizeof(float));
        float *ci = cs ? t2i_malloc((size_t)rows * cols * cs * sizeof(float)) : NULL;
        float *za = t2i_malloc((size_t)zd * sizeof(float)), *zb = t2i_malloc((size_t)zd * sizeof(float));
        int li[64];
        for (int r = 0; r < rows; r++) {
            sample_noise(za, zd, (uint64_t)seed + 1000003, 2 * r);
            sample_noise(zb, zd, (uint64_t)seed + 1000003, 2 * r + 1);
            double na = 0, nb = 0, dot = 0;
            for (int k = 0; k < zd; k++) na += za[k] * za[k], nb += zb[k] * zb[k], dot += za[k] * zb[k];
            double om = acos(fmax(-1.0, fmin(1.0, dot / sqrt(na * nb))));
            for (int j = 0; j < cols; j++) {
                double t = j / (double)(cols - 1);
                double wa = om > 1e-6 ? sin((1 - t) * om) / sin(om) : 1 - t, wb = om > 1e-6 ? sin(t * om) / sin(om) : t;
                for (int k = 0; k < zd; k++) zi[((size_t)r * cols + j) * zd + k] = (float)(wa * za[k] + wb * zb[k]);
                li[r * cols + j] = cls >= 0 ? cls : (cfg->n_classes ? r % cfg->n_classes : 0);
            }
        }
        if (cs) gan_onehot(ci, li, rows * cols, cs);
        float *ii = t2i_malloc((size_t)rows * cols * item * sizeof(float));
        generate(&m, g, zi, ci, rows * cols, ii);
        char *ip = t2i_asprintf("%s/interp.png", out);
        if (t2i_save_grid(ip, ii, rows * cols, cfg->channels, cfg->res, cfg->res, cols) != 0) rc = t2i_fail_err();
        else printf("gan sample: interpolation grid %s\n", ip);
        free(ip), free(ii), free(zi), free(ci), free(za), free(zb);
    }
    free(z), free(c), free(imgs), free(lab);
out:
    gan_model_free(&m);
    return rc;
}

int gan_cmd(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", gan_cmd_train, "train a GAN (Fashion-MNIST, image folders, class folders)"},
        {"sample", gan_cmd_sample, "sample images, a grid and a latent interpolation"},
    };
    return t2i_dispatch("t2i gan", "Generative adversarial networks (DCGAN family).", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
