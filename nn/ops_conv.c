/* ops_conv.c - Conv2d and ConvTranspose2d through im2col and one GEMM (ops.h).
 *
 * They use im2col over a GROUP of images at once: the columns of G images sit
 * side by side in one (C*KH*KW, G*OH*OW) matrix, so one large cblas_sgemm replaces G
 * small ones (small GEMMs leave OpenBLAS's threads idle). The group size is chosen so the
 * scratch stays under a budget (nn_set_conv_scratch_budget). The GEMM result is (OC, G*OH*OW) and
 * is transposed back to NCHW while the bias is added.
 *
 * Backward derivations (y = conv(x, w) written as Y = W * col(X)):
 *   dW += dY * col(X)^T,  dcol = W^T * dY,  dX += col2im(dcol),  db += sum over N,H,W of dY.
 * ConvTranspose2d is the adjoint of Conv2d: y = col2im(W^T * X) with W (C, OC*K*K), so
 *   dX = W * col(dY),  dW += X * col(dY)^T.
 */
#include "ops.h"

#include <string.h>

#include "base.h"

/* Floats of im2col scratch a convolution may use (48 MiB by default); larger batches are
 * processed in groups. Tests lower it to exercise the grouping. */
static size_t conv_budget = (size_t)12 << 20;

void nn_set_conv_scratch_budget(size_t floats) { conv_budget = floats ? floats : (size_t)12 << 20; }

/* ------------------------------------------------------------------ im2col / col2im */

/* Output columns ow whose tap iw = ow*stride - pad + kw falls inside [0, W): [*lo, *hi). */
static inline void tap_range(int W, int OW, int stride, int pad, int kw, int *lo, int *hi) {
    int a = pad - kw; /* need ow*stride >= a */
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = W - 1 + pad - kw; /* need ow*stride <= b */
    int h = b < 0 ? 0 : b / stride + 1;
    if (h > OW) h = OW;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* Columns of one image channel for output rows [oh0, oh1): rows (c, kh, kw) for c fixed,
 * each row ld floats apart, column index (oh - oh0)*OW + ow. Out-of-image taps read 0.
 * The valid span of each row is computed once, so the inner loops carry no bounds tests
 * (stride 1 is a memcpy). */
static void im2col_channel(float *col, size_t ld, const float *img, int H, int W, int KH, int KW,
                           int stride, int pad, int oh0, int oh1, int OW) {
    for (int kh = 0; kh < KH; kh++) {
        for (int kw = 0; kw < KW; kw++) {
            float *row = col + (size_t)(kh * KW + kw) * ld;
            int lo, hi;
            tap_range(W, OW, stride, pad, kw, &lo, &hi);
            for (int oh = oh0; oh < oh1; oh++) {
                int ih = oh * stride - pad + kh;
                float *dst = row + (size_t)(oh - oh0) * OW;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *src = img + (size_t)ih * W;
                int off = kw - pad; /* iw = ow*stride + off; >= 0 for ow >= lo */
                for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (stride == 1) {
                    if (hi > lo) memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof(float));
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * stride + off];
                }
                for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

/* Adjoint of im2col_channel: img += scatter(col). */
static void col2im_channel(float *img, const float *col, size_t ld, int H, int W, int KH, int KW,
                           int stride, int pad, int OH, int OW) {
    for (int kh = 0; kh < KH; kh++) {
        for (int kw = 0; kw < KW; kw++) {
            const float *row = col + (size_t)(kh * KW + kw) * ld;
            int lo, hi;
            tap_range(W, OW, stride, pad, kw, &lo, &hi);
            for (int oh = 0; oh < OH; oh++) {
                int ih = oh * stride - pad + kh;
                if (ih < 0 || ih >= H) continue;
                const float *src = row + (size_t)oh * OW;
                float *dst = img + (size_t)ih * W;
                int off = kw - pad;
                if (stride == 1) {
                    for (int ow = lo; ow < hi; ow++) dst[ow + off] += src[ow];
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow * stride + off] += src[ow];
                }
            }
        }
    }
}

/* im2col of images [n0, n0+G) of x (N, C, H, W) into col (C*KH*KW, G*OH*OW). */
static void im2col_group(float *col, const float *x, int n0, int G, int C, int H, int W, int KH, int KW,
                         int stride, int pad, int OH, int OW) {
    size_t ohw = (size_t)OH * OW, ld = (size_t)G * ohw, kk = (size_t)KH * KW;
#pragma omp parallel for collapse(2) schedule(static)
    for (int g = 0; g < G; g++)
        for (int c = 0; c < C; c++)
            im2col_channel(col + (size_t)c * kk * ld + (size_t)g * ohw, ld,
                           x + ((size_t)(n0 + g) * C + c) * H * W, H, W, KH, KW, stride, pad, 0, OH, OW);
}

void nn_im2col_rows(float *col, const float *x, const nn_conv *s, int oh0, int oh1) {
    T2I_ASSERT(0 <= oh0 && oh0 <= oh1 && oh1 <= s->OH);
    size_t ld = (size_t)(oh1 - oh0) * s->OW, kk = (size_t)s->KH * s->KW;
    for (int c = 0; c < s->C; c++)
        im2col_channel(col + (size_t)c * kk * ld, ld, x + (size_t)c * s->H * s->W, s->H, s->W, s->KH, s->KW,
                       s->stride, s->pad, oh0, oh1, s->OW);
}

static void col2im_group(float *x, const float *col, int n0, int G, int C, int H, int W, int KH, int KW,
                         int stride, int pad, int OH, int OW) {
    size_t ohw = (size_t)OH * OW, ld = (size_t)G * ohw, kk = (size_t)KH * KW;
#pragma omp parallel for collapse(2) schedule(static)
    for (int g = 0; g < G; g++)
        for (int c = 0; c < C; c++)
            col2im_channel(x + ((size_t)(n0 + g) * C + c) * H * W, col + (size_t)c * kk * ld + (size_t)g * ohw,
                           ld, H, W, KH, KW, stride, pad, OH, OW);
}

/* (G, Cn, S) block of an NCHW tensor starting at image n0 -> (Cn, G*S) matrix. */
static void gather_cm(float *m, const float *x, int n0, int G, int Cn, size_t S) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < Cn; c++)
        for (int g = 0; g < G; g++)
            memcpy(m + ((size_t)c * G + g) * S, x + ((size_t)(n0 + g) * Cn + c) * S, S * sizeof(float));
}

/* (Cn, G*S) matrix -> NCHW block, y = m (+ bias) when add == 0, y += m when add == 1. */
static void scatter_cm(float *y, const float *m, const float *bias, int n0, int G, int Cn, size_t S,
                       int add) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int g = 0; g < G; g++)
        for (int c = 0; c < Cn; c++) {
            const float *src = m + ((size_t)c * G + g) * S;
            float *dst = y + ((size_t)(n0 + g) * Cn + c) * S;
            float b = bias ? bias[c] : 0.0f;
            if (add)
                for (size_t i = 0; i < S; i++) dst[i] += src[i];
            else
                for (size_t i = 0; i < S; i++) dst[i] = src[i] + b;
        }
}

/* Per-channel sums of dy (N, C, S) added into db. */
static void add_channel_sums(float *db, const float *dy, int N, int C, size_t S) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) {
            const float *p = dy + ((size_t)n * C + c) * S;
            for (size_t i = 0; i < S; i++) s += p[i];
        }
        db[c] += (float)s;
    }
}

/* ------------------------------------------------------------------ Conv2d */

nn_conv nn_conv2d_shape(int N, int C, int H, int W, int OC, int K, int stride, int pad) {
    T2I_ASSERT(N > 0 && C > 0 && H > 0 && W > 0 && OC > 0 && K > 0 && stride > 0 && pad >= 0);
    nn_conv s = {N, C, H, W, OC, 0, 0, K, K, stride, pad};
    s.OH = (H + 2 * pad - K) / stride + 1;
    s.OW = (W + 2 * pad - K) / stride + 1;
    T2I_ASSERTF(s.OH > 0 && s.OW > 0, "conv %dx%d kernel %d pad %d gives empty output", H, W, K, pad);
    return s;
}

nn_conv nn_conv_transpose2d_shape(int N, int C, int H, int W, int OC, int K, int stride, int pad,
                                  int out_pad) {
    T2I_ASSERT(N > 0 && C > 0 && H > 0 && W > 0 && OC > 0 && K > 0 && stride > 0 && pad >= 0);
    T2I_ASSERT(out_pad >= 0 && out_pad < stride);
    nn_conv s = {N, C, H, W, OC, 0, 0, K, K, stride, pad};
    s.OH = (H - 1) * stride - 2 * pad + K + out_pad;
    s.OW = (W - 1) * stride - 2 * pad + K + out_pad;
    T2I_ASSERT(s.OH > 0 && s.OW > 0);
    return s;
}

/* Images per GEMM group for a conv whose per-image scratch is `per` floats. */
static int group_size(int N, size_t per) {
    size_t g = per ? conv_budget / per : (size_t)N;
    if (g < 1) g = 1;
    if (g > (size_t)N) g = (size_t)N;
    return (int)g;
}

static size_t conv2d_per_image(const nn_conv *s) {
    size_t ohw = (size_t)s->OH * s->OW;
    return ((size_t)s->C * s->KH * s->KW + (size_t)s->OC) * ohw;
}

size_t nn_conv2d_scratch(const nn_conv *s) { return (size_t)group_size(s->N, conv2d_per_image(s)) * conv2d_per_image(s); }

void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                       const nn_conv *s) {
    int G = group_size(s->N, conv2d_per_image(s));
    size_t ohw = (size_t)s->OH * s->OW;
    int ckk = s->C * s->KH * s->KW;
    float *col = scratch;
    float *y = scratch + (size_t)ckk * G * ohw;
    for (int n0 = 0; n0 < s->N; n0 += G) {
        int g = T2I_MIN(G, s->N - n0);
        int cols = (int)(g * ohw);
        im2col_group(col, inp, n0, g, s->C, s->H, s->W, s->KH, s->KW, s->stride, s->pad, s->OH, s->OW);
        nn_gemm(0, 0, s->OC, cols, ckk, 1.0f, w, ckk, col, cols, 0.0f, y, cols);
        scatter_cm(out, y, b, n0, g, s->OC, ohw, 0);
    }
}

void nn_conv2d_backward(float *dinp, float *dw, float *db, float *scratch, const float *dout,
                        const float *inp, const float *w, const nn_conv *s) {
    int G = group_size(s->N, conv2d_per_image(s));
    size_t ohw = (size_t)s->OH * s->OW;
    int ckk = s->C * s->KH * s->KW;
    float *col = scratch;
    float *dy = scratch + (size_t)ckk * G * ohw;
    if (db) add_channel_sums(db, dout, s->N, s->OC, ohw);
    if (!dw && !dinp) return;
    for (int n0 = 0; n0 < s->N; n0 += G) {
        int g = T2I_MIN(G, s->N - n0);
        int cols = (int)(g * ohw);
        gather_cm(dy, dout, n0, g, s->OC, ohw);
        if (dw) {
            im2col_group(col, inp, n0, g, s->C, s->H, s->W, s->KH, s->KW, s->stride, s->pad, s->OH, s->OW);
            nn_gemm(0, 1, s->OC, ckk, cols, 1.0f, dy, cols, col, cols, 1.0f, dw, ckk);
        }
        if (dinp) {
            nn_gemm(1, 0, ckk, cols, s->OC, 1.0f, w, ckk, dy, cols, 0.0f, col, cols);
            col2im_group(dinp, col, n0, g, s->C, s->H, s->W, s->KH, s->KW, s->stride, s->pad, s->OH, s->OW);
        }
    }
}

/* ------------------------------------------------------------------ ConvTranspose2d */

static size_t convt_per_image(const nn_conv *s) {
    size_t hw = (size_t)s->H * s->W;
    return ((size_t)s->OC * s->KH * s->KW + (size_t)s->C) * hw;
}

size_t nn_conv_transpose2d_scratch(const nn_conv *s) {
    return (size_t)group_size(s->N, convt_per_image(s)) * convt_per_image(s);
}

void nn_conv_transpose2d_forward(float *out, float *scratch, const float *inp, const float *w,
                                 const float *b, const nn_conv *s) {
    int G = group_size(s->N, convt_per_image(s));
    size_t hw = (size_t)s->H * s->W, ohw = (size_t)s->OH * s->OW;
    int okk = s->OC * s->KH * s->KW;
    float *col = scratch;
    float *xm = scratch + (size_t)okk * G * hw;
    for (int n0 = 0; n0 < s->N; n0 += G) {
        int g = T2I_MIN(G, s->N - n0);
        int cols = (int)(g * hw);
        gather_cm(xm, inp, n0, g, s->C, hw);
        nn_gemm(1, 0, okk, cols, s->C, 1.0f, w, okk, xm, cols, 0.0f, col, cols);
        /* out starts as the bias, then col2im scatters the contributions */
#pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < g; i++)
            for (int c = 0; c < s->OC; c++) {
                float *o = out + ((size_t)(n0 + i) * s->OC + c) * ohw;
                float bv = b ? b[c] : 0.0f;
                for (size_t k = 0; k < ohw; k++) o[k] = bv;
            }
        /* the output plays the image, the input grid the columns */
        col2im_group(out, col, n0, g, s->OC, s->OH, s->OW, s->KH, s->KW, s->stride, s->pad, s->H, s->W);
    }
}

void nn_conv_transpose2d_backward(float *dinp, float *dw, float *db, float *scratch,
                                  const float *dout, const float *inp, const float *w,
                                  const nn_conv *s) {
    int G = group_size(s->N, convt_per_image(s));
    size_t hw = (size_t)s->H * s->W, ohw = (size_t)s->OH * s->OW;
    int okk = s->OC * s->KH * s->KW;
    float *col = scratch;
    float *xm = scratch + (size_t)okk * G * hw;
    if (db) add_channel_sums(db, dout, s->N, s->OC, ohw);
    if (!dw && !dinp) return;
    for (int n0 = 0; n0 < s->N; n0 += G) {
        int g = T2I_MIN(G, s->N - n0);
        int cols = (int)(g * hw);
        im2col_group(col, dout, n0, g, s->OC, s->OH, s->OW, s->KH, s->KW, s->stride, s->pad, s->H, s->W);
        if (dw) {
            gather_cm(xm, inp, n0, g, s->C, hw);
            nn_gemm(0, 1, s->C, okk, cols, 1.0f, xm, cols, col, cols, 1.0f, dw, okk);
        }
        if (dinp) {
            nn_gemm(0, 0, s->C, cols, okk, 1.0f, w, okk, col, cols, 0.0f, xm, cols);
            scatter_cm(dinp, xm, NULL, n0, g, s->C, hw, 1);
        }
    }
}
