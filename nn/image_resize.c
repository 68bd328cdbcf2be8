/* image_resize.c - PIL-compatible resizing of 8-bit images and float planes, centre crops
 * (image.h).
 *
 *   - Resizing as Pillow 9's ImagingResample: a separable convolution, horizontal pass
 *     then vertical pass. For output pixel i the filter is centred at
 *     (i + 0.5) * scale (scale = in / out), its support is widened by max(scale, 1), and
 *     its taps are normalised to sum to one. Bilinear is the triangle, bicubic Keys'
 *     cubic with a = -0.5. The 8-bit path converts taps to fixed point with 22 fraction
 *     bits and rounds and clips to 0..255 after each pass, as Pillow does, so results
 *     are normally identical to PIL.Image.resize. Images with alpha (2 or 4 channels)
 *     are premultiplied before filtering and un-premultiplied after, as Pillow does for
 *     LA/RGBA. The float path (t2i_resize_chw) accumulates in double and stores float
 *     between the passes, as Pillow's mode "F". Nearest picks source pixel
 *     floor((i + 0.5) * scale), the position summed as Pillow sums it.
 *   - Crops with torchvision's rounding.
 *
 * Usage: every function that fills a t2i_image allocates its pixels; release them with
 * t2i_image_free. dst must not be src. Nothing here can fail: contracts (sizes, channel
 * counts) are asserted.
 */
#include "image.h"

#include "base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Resampling                                                                            */

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's: leaves headroom for the negative lobes */

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* For each output index: the first input index used, how many, and their weights. */
typedef struct {
    int ksize;
    int *first, *count; /* (out) */
    double *w;          /* (out, ksize) */
    int32_t *wi;        /* (out, ksize): w in fixed point, for the 8-bit path */
} taps;

static void taps_build(taps *t, int in, int out, t2i_resize_filter f) {
    T2I_ASSERT(f == T2I_RESIZE_BILINEAR || f == T2I_RESIZE_BICUBIC);
    double (*fn)(double) = f == T2I_RESIZE_BICUBIC ? filter_bicubic : filter_bilinear;
    double support0 = f == T2I_RESIZE_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in / out;
    double fscale = scale < 1.0 ? 1.0 : scale; /* widen the filter when shrinking */
    double support = support0 * fscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    size_t n = (size_t)out * (size_t)t->ksize;
    t->first = t2i_malloc(sizeof(int) * (size_t)out);
    t->count = t2i_malloc(sizeof(int) * (size_t)out);
    t->w = t2i_calloc(n, sizeof(double));
    t->wi = t2i_calloc(n, sizeof(int32_t));
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        /* truncation toward zero of the rounded ends, as Pillow (then clamped) */
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int cnt = hi - lo;
        double *w = t->w + (size_t)i * (size_t)t->ksize;
        double sum = 0.0;
        for (int k = 0; k < cnt; k++) {
            w[k] = fn((k + lo - center + 0.5) / fscale);
            sum += w[k];
        }
        if (sum != 0.0)
            for (int k = 0; k < cnt; k++) w[k] /= sum;
        int32_t *wi = t->wi + (size_t)i * (size_t)t->ksize;
        for (int k = 0; k < cnt; k++) {
            double v = w[k] * (double)(1 << PRECISION_BITS);
            wi[k] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        t->first[i] = lo;
        t->count[i] = cnt;
    }
}

static void taps_free(taps *t) {
    free(t->first);
    free(t->count);
    free(t->w);
    free(t->wi);
}

static inline uint8_t clip_fixed(int32_t v) {
    if (v < 0) return 0;
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Horizontal 8-bit pass over rows [y0, y0 + rows) of src into dst (w_out wide). */
static void hpass_u8(uint8_t *dst, const uint8_t *src, int w_in, int c, int y0, int rows,
                     int w_out, const taps *t) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *srow = src + (size_t)(y0 + y) * (size_t)w_in * (size_t)c;
        uint8_t *drow = dst + (size_t)y * (size_t)w_out * (size_t)c;
        for (int x = 0; x < w_out; x++) {
            const int32_t *k = t->wi + (size_t)x * (size_t)t->ksize;
            const uint8_t *s = srow + (size_t)t->first[x] * (size_t)c;
            int cnt = t->count[x];
            for (int ch = 0; ch < c; ch++) {
                int32_t acc = 1 << (PRECISION_BITS - 1);
                for (int j = 0; j < cnt; j++) acc += (int32_t)s[(size_t)j * (size_t)c + (size_t)ch] * k[j];
                drow[(size_t)x * (size_t)c + (size_t)ch] = clip_fixed(acc);
            }
        }
    }
}

/* Vertical 8-bit pass; first[] of t is relative to row y0 of src. */
static void vpass_u8(uint8_t *dst, const uint8_t *src, int w, int c, int y0, int h_out,
                     const taps *t) {
    size_t stride = (size_t)w * (size_t)c;
    for (int y = 0; y < h_out; y++) {
        const int32_t *k = t->wi + (size_t)y * (size_t)t->ksize;
        const uint8_t *s = src + (size_t)(t->first[y] - y0) * stride;
        int cnt = t->count[y];
        uint8_t *drow = dst + (size_t)y * stride;
        for (size_t i = 0; i < stride; i++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int j = 0; j < cnt; j++) acc += (int32_t)s[(size_t)j * stride + i] * k[j];
            drow[i] = clip_fixed(acc);
        }
    }
}

/* Pillow's nearest: source index floor((i + 0.5) * in / out), with the position
 * accumulated by repeated addition as Pillow's affine scaler does - the rounding error
 * of the sum decides exact ties (64 -> 7 picks 31, not 32, for i = 3), and matching it
 * makes the output identical (checked for all sizes 1..129 -> 1..129). */
static int *nearest_index(int in, int out) {
    int *idx = t2i_malloc(sizeof(int) * (size_t)out);
    double scale = (double)in / out, pos = scale * 0.5;
    for (int i = 0; i < out; i++, pos += scale) {
        int s = (int)pos;
        idx[i] = s < in ? s : in - 1;
    }
    return idx;
}

/* Pillow resizes LA/RGBA premultiplied (RGBa): colour times alpha with rounding... */
static void premultiply(uint8_t *px, size_t n, int c) {
    for (size_t i = 0; i < n; i++, px += c) {
        unsigned a = px[c - 1];
        for (int ch = 0; ch < c - 1; ch++) px[ch] = t2i_mul_alpha(px[ch], a);
    }
}

/* ... and back by truncating division, clipped (opaque and empty pixels unchanged). */
static void unpremultiply(uint8_t *px, size_t n, int c) {
    for (size_t i = 0; i < n; i++, px += c) {
        unsigned a = px[c - 1];
        if (a == 0 || a == 255) continue;
        for (int ch = 0; ch < c - 1; ch++) {
            unsigned v = 255u * px[ch] / a;
            px[ch] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

void t2i_image_resize(t2i_image *dst, const t2i_image *src, int w, int h, t2i_resize_filter f) {
    T2I_ASSERT(dst && src && src->px && dst != src && w > 0 && h > 0);
    int c = src->c;
    t2i_image_alloc(dst, w, h, c);
    if (w == src->w && h == src->h) {
        memcpy(dst->px, src->px, (size_t)w * (size_t)h * (size_t)c);
        return;
    }
    if (f == T2I_RESIZE_NEAREST) {
        int *xi = nearest_index(src->w, w), *yi = nearest_index(src->h, h);
        for (int y = 0; y < h; y++) {
            const uint8_t *srow = src->px + (size_t)yi[y] * (size_t)src->w * (size_t)c;
            uint8_t *drow = dst->px + (size_t)y * (size_t)w * (size_t)c;
            for (int x = 0; x < w; x++) memcpy(drow + (size_t)x * c, srow + (size_t)xi[x] * c, (size_t)c);
        }
        free(xi);
        free(yi);
        return;
    }
    const uint8_t *in = src->px;
    uint8_t *premul = NULL;
    if (c == 2 || c == 4) {
        size_t bytes = (size_t)src->w * (size_t)src->h * (size_t)c;
        premul = t2i_malloc(bytes);
        memcpy(premul, src->px, bytes);
        premultiply(premul, (size_t)src->w * (size_t)src->h, c);
        in = premul;
    }
    taps th, tv;
    taps_build(&tv, src->h, h, f);
    if (w != src->w) {
        /* only the rows that the vertical pass reads */
        int y0 = tv.first[0], y1 = tv.first[h - 1] + tv.count[h - 1];
        taps_build(&th, src->w, w, f);
        uint8_t *tmp = t2i_malloc((size_t)w * (size_t)(y1 - y0) * (size_t)c);
        hpass_u8(tmp, in, src->w, c, y0, y1 - y0, w, &th);
        if (h != src->h)
            vpass_u8(dst->px, tmp, w, c, y0, h, &tv);
        else
            memcpy(dst->px, tmp, (size_t)w * (size_t)h * (size_t)c);
        free(tmp);
        taps_free(&th);
    } else {
        vpass_u8(dst->px, in, w, c, 0, h, &tv);
    }
    taps_free(&tv);
    free(premul);
    if (c == 2 || c == 4) unpremultiply(dst->px, (size_t)w * (size_t)h, c);
}

void t2i_resize_chw(float *dst, const float *src, int C, int H, int W, int h, int w,
                    t2i_resize_filter f) {
    T2I_ASSERT(dst && src && C > 0 && H > 0 && W > 0 && h > 0 && w > 0);
    size_t in_plane = (size_t)H * (size_t)W, out_plane = (size_t)h * (size_t)w;
    if (h == H && w == W) {
        memcpy(dst, src, sizeof(float) * in_plane * (size_t)C);
        return;
    }
    if (f == T2I_RESIZE_NEAREST) {
        int *xi = nearest_index(W, w), *yi = nearest_index(H, h);
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    dst[ch * out_plane + (size_t)y * w + x] = src[ch * in_plane + (size_t)yi[y] * W + xi[x]];
        free(xi);
        free(yi);
        return;
    }
    /* Pillow's "F" mode: double accumulation, float storage between the passes. */
    taps th, tv;
    taps_build(&th, W, w, f);
    taps_build(&tv, H, h, f);
    float *tmp = t2i_malloc(sizeof(float) * (size_t)H * (size_t)w);
    for (int ch = 0; ch < C; ch++) {
        const float *s = src + ch * in_plane;
        float *d = dst + ch * out_plane;
        const float *rows = s;
        if (w != W) {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < w; x++) {
                    const double *k = th.w + (size_t)x * (size_t)th.ksize;
                    const float *sp = s + (size_t)y * W + th.first[x];
                    double acc = 0.0;
                    for (int j = 0; j < th.count[x]; j++) acc += sp[j] * k[j];
                    tmp[(size_t)y * w + x] = (float)acc;
                }
            rows = tmp;
        }
        if (h != H) {
            for (int y = 0; y < h; y++) {
                const double *k = tv.w + (size_t)y * (size_t)tv.ksize;
                const float *sp = rows + (size_t)tv.first[y] * w;
                for (int x = 0; x < w; x++) {
                    double acc = 0.0;
                    for (int j = 0; j < tv.count[y]; j++) acc += sp[(size_t)j * w + x] * k[j];
                    d[(size_t)y * w + x] = (float)acc;
                }
            }
        } else {
            memcpy(d, rows, sizeof(float) * out_plane);
        }
    }
    free(tmp);
    taps_free(&th);
    taps_free(&tv);
}

/* ------------------------------------------------------------------------------------ */
/* Crops and grids                                                                       */

/* Offset of a crop of size `want` from a side of size `have`, as torchvision's
 * center_crop: round(d / 2) with Python's half-to-even rounding when the image is
 * larger; when it is smaller torchvision pads (left pad = (want - have) // 2). */
static int crop_offset(int have, int want) {
    if (have >= want) {
        int d = have - want, k = d / 2;
        return (d % 2 == 0 || k % 2 == 0) ? k : k + 1;
    }
    return -((want - have) / 2);
}

void t2i_image_center_crop(t2i_image *dst, const t2i_image *src, int w, int h) {
    T2I_ASSERT(dst && src && src->px && dst != src && w > 0 && h > 0);
    int c = src->c;
    t2i_image_alloc(dst, w, h, c); /* zeroed: the padding when the crop is larger */
    int ox = crop_offset(src->w, w), oy = crop_offset(src->h, h);
    int x0 = ox < 0 ? -ox : 0, x1 = T2I_MIN(w, src->w - ox);
    for (int y = 0; y < h; y++) {
        int sy = y + oy;
        if (sy < 0 || sy >= src->h || x1 <= x0) continue;
        memcpy(dst->px + ((size_t)y * w + x0) * c,
               src->px + ((size_t)sy * src->w + (size_t)(x0 + ox)) * c, (size_t)(x1 - x0) * c);
    }
}

void t2i_image_resize_crop(t2i_image *dst, const t2i_image *src, int size, t2i_resize_filter f) {
    T2I_ASSERT(dst && src && src->px && size > 0);
    /* torchvision Resize(int): short side = size, long = int(size * long / short) */
    int W = src->w, H = src->h, nw, nh;
    if (W <= H) {
        nw = size;
        nh = (int)((double)((long long)size * H) / W);
    } else {
        nh = size;
        nw = (int)((double)((long long)size * W) / H);
    }
    t2i_image mid;
    t2i_image_resize(&mid, src, nw, nh, f);
    t2i_image_center_crop(dst, &mid, size, size);
    t2i_image_free(&mid);
}
