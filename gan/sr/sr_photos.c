/* sr_photos.c - the photos of `t2i sr train` (sr_photos.h): decoding the training
 * photos, drawing a training item's crops (uniform over all crop positions, one of the 8
 * symmetries, optionally focused on detail, LR by the run's degradation), and the fixed
 * held-out validation crops with their PSNR. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image_quality.h"
#include "sr_photos.h"

/* ---------------------------------------------------------------- training photos */

void sr_photos_free(photo_set *ps) {
    for (int i = 0; i < ps->n; i++) t2i_image_free(&ps->img[i]);
    free(ps->img);
    free(ps->positions);
    memset(ps, 0, sizeof *ps);
}

/* Loads the files with heldout[i] == want_heldout; photos smaller than P are skipped
 * with a note. Returns -1 on a decode error or when no photo is usable. */
int sr_photos_load(photo_set *ps, const sr_filelist *fl, const char *dir, int want_heldout, int P, int verbose) {
    memset(ps, 0, sizeof *ps);
    int skipped = 0, first_skipped = -1;
    ps->img = t2i_calloc((size_t)fl->n, sizeof *ps->img);
    ps->positions = t2i_calloc((size_t)fl->n, sizeof *ps->positions);
    for (int i = 0; i < fl->n; i++) {
        if (fl->heldout[i] != want_heldout) continue;
        t2i_image im;
        if (t2i_image_load(&im, fl->files[i], 3) != 0) {
            sr_photos_free(ps);
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
        sr_photos_free(ps);
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
void sr_training_item(float *hr, float *lr, const photo_set *ps, int P, int s, int focus, sr_degrade degrade,
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

/* PSNR (RGB, border = scale) of float images via 8-bit rounding, as saved images. */
static double psnr_float(const float *a, const float *b, int S, int border, uint8_t *ua, uint8_t *ub) {
    t2i_chw_to_u8(ua, a, 3, S, S);
    t2i_chw_to_u8(ub, b, 3, S, S);
    return t2i_psnr_rgb(ua, ub, S, S, border);
}

/* Three fixed crops per photo (centre and the two quarter points of the diagonal). */
void sr_val_build(val_set *v, const photo_set *ps, int scale) {
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

void sr_val_free(val_set *v) {
    free(v->hr), free(v->lr), free(v->bic);
    memset(v, 0, sizeof *v);
}

/* Mean PSNR of the EMA on the validation crops; writes a sample grid when path given. */
double sr_val_run(const sr_model *m, const val_set *v, const char *sample_path, const char *latest_path) {
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
