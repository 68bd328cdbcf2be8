/* image_quality.c - PSNR and SSIM of 8-bit RGB images (definitions in image_quality.h).
 *
 * They work on 8-bit images, i.e. on what a user would save. SSIM: separable Gaussian
 * (11 taps, sigma 1.5, normalised to sum 1) over the valid region only (no padding), in
 * double.
 */
#include <math.h>
#include <stdlib.h>

#include "base.h"
#include "image_quality.h"

double t2i_psnr_rgb(const uint8_t *a, const uint8_t *b, int h, int w, int border) {
    T2I_ASSERT(h > 2 * border && w > 2 * border);
    double se = 0.0;
    for (int y = border; y < h - border; y++)
        for (int x = border; x < w - border; x++)
            for (int c = 0; c < 3; c++) {
                size_t k = ((size_t)y * w + x) * 3 + c;
                double d = (double)a[k] - (double)b[k];
                se += d * d;
            }
    double mse = se / (3.0 * (h - 2 * border) * (w - 2 * border));
    return mse == 0.0 ? INFINITY : 10.0 * log10(255.0 * 255.0 / mse);
}

/* Y of the cropped region, (h - 2b) x (w - 2b), in 16..235. */
static double *luma(const uint8_t *rgb, int h, int w, int border) {
    int H = h - 2 * border, W = w - 2 * border;
    double *y = t2i_malloc((size_t)H * W * sizeof(double));
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            const uint8_t *p = rgb + ((size_t)(i + border) * w + j + border) * 3;
            y[(size_t)i * W + j] = 16.0 + (65.481 * p[0] + 128.553 * p[1] + 24.966 * p[2]) / 255.0;
        }
    return y;
}

double t2i_psnr_y(const uint8_t *a, const uint8_t *b, int h, int w, int border) {
    T2I_ASSERT(h > 2 * border && w > 2 * border);
    double *ya = luma(a, h, w, border), *yb = luma(b, h, w, border);
    size_t n = (size_t)(h - 2 * border) * (w - 2 * border);
    double se = 0.0;
    for (size_t i = 0; i < n; i++) se += (ya[i] - yb[i]) * (ya[i] - yb[i]);
    free(ya), free(yb);
    double mse = se / (double)n;
    return mse == 0.0 ? INFINITY : 10.0 * log10(255.0 * 255.0 / mse);
}

/* Valid separable filtering of src (H, W) with the 11-tap kernel: dst (H-10, W-10). */
static void gauss_valid(double *dst, double *tmp, const double *src, int H, int W, const double *g) {
    int OW = W - 10, OH = H - 10;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < OW; j++) {
            double s = 0.0;
            for (int k = 0; k < 11; k++) s += g[k] * src[(size_t)i * W + j + k];
            tmp[(size_t)i * OW + j] = s;
        }
    for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++) {
            double s = 0.0;
            for (int k = 0; k < 11; k++) s += g[k] * tmp[(size_t)(i + k) * OW + j];
            dst[(size_t)i * OW + j] = s;
        }
}

double t2i_ssim_y(const uint8_t *a, const uint8_t *b, int h, int w, int border) {
    int H = h - 2 * border, W = w - 2 * border;
    if (H < 11 || W < 11) return NAN;
    double g[11], gs = 0.0;
    for (int k = 0; k < 11; k++) gs += g[k] = exp(-(double)((k - 5) * (k - 5)) / (2.0 * 1.5 * 1.5));
    for (int k = 0; k < 11; k++) g[k] /= gs;
    double *ya = luma(a, h, w, border), *yb = luma(b, h, w, border);
    size_t n = (size_t)H * W, on = (size_t)(H - 10) * (W - 10);
    double *prod = t2i_malloc(n * sizeof(double)), *tmp = t2i_malloc((size_t)H * (W - 10) * sizeof(double));
    double *mu1 = t2i_malloc(on * sizeof(double)), *mu2 = t2i_malloc(on * sizeof(double));
    double *s11 = t2i_malloc(on * sizeof(double)), *s22 = t2i_malloc(on * sizeof(double));
    double *s12 = t2i_malloc(on * sizeof(double));
    gauss_valid(mu1, tmp, ya, H, W, g);
    gauss_valid(mu2, tmp, yb, H, W, g);
    for (size_t i = 0; i < n; i++) prod[i] = ya[i] * ya[i];
    gauss_valid(s11, tmp, prod, H, W, g);
    for (size_t i = 0; i < n; i++) prod[i] = yb[i] * yb[i];
    gauss_valid(s22, tmp, prod, H, W, g);
    for (size_t i = 0; i < n; i++) prod[i] = ya[i] * yb[i];
    gauss_valid(s12, tmp, prod, H, W, g);
    const double C1 = (0.01 * 255) * (0.01 * 255), C2 = (0.03 * 255) * (0.03 * 255);
    double sum = 0.0;
    for (size_t i = 0; i < on; i++) {
        double m1 = mu1[i], m2 = mu2[i];
        double v1 = s11[i] - m1 * m1, v2 = s22[i] - m2 * m2, cv = s12[i] - m1 * m2;
        sum += ((2 * m1 * m2 + C1) * (2 * cv + C2)) / ((m1 * m1 + m2 * m2 + C1) * (v1 + v2 + C2));
    }
    free(ya), free(yb), free(prod), free(tmp), free(mu1), free(mu2), free(s11), free(s22), free(s12);
    return sum / (double)on;
}
