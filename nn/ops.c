/* ops.c - layer kernels; see ops.h for the conventions (shapes, accumulation, scratch).
 *
 * Convolutions use im2col over a GROUP of images at once: the columns of G images sit
 * side by side in one (C*KH*KW, G*OH*OW) matrix, so one large cblas_sgemm replaces G
 * small ones (small GEMMs leave OpenBLAS's threads idle). The group size is chosen so the
 * scratch stays under a budget (nn_set_conv_scratch_budget). The GEMM result is (OC, G*OH*OW) and
 * is transposed back to NCHW while the bias is added.
 *
 * Backward derivations (y = conv(x, w) written as Y = W * col(X)):
 *   dW += dY * col(X)^T,  dcol = W^T * dY,  dX += col2im(dcol),  db += sum over N,H,W of dY.
 * ConvTranspose2d is the adjoint of Conv2d: y = col2im(W^T * X) with W (C, OC*K*K), so
 *   dX = W * col(dY),  dW += X * col(dY)^T.
 * BatchNorm (per channel, M = N*S values, xhat = (x - mean) * rstd):
 *   dx = rstd / M * (M * g - sum(g) - xhat * sum(g * xhat)),  g = dy * gamma.
 * LayerNorm and GroupNorm use the same formula over their own groups.
 * Attention per (batch, head): S = q k^T / sqrt(hs) (+ causal mask), P = softmax(S),
 *   O = P v;  dP = dO v^T,  dS = P * (dP - rowsum(dP * P)) / sqrt(hs) (folded into dq, dk),
 *   dq = dS k,  dk = dS^T q,  dv = P^T dO.
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "base.h"
#include "fastmath.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Inside a parallel region: the calling thread's contiguous share [lo, hi) of n items. */
static void thread_share(size_t n, size_t *lo, size_t *hi) {
#ifdef _OPENMP
    size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
#else
    size_t nt = 1, t = 0;
#endif
    *lo = n * t / nt, *hi = n * (t + 1) / nt;
}

/* Elementwise loops below this size run on one thread: forking costs more. */
#define PAR_MIN 16384

/* Floats of im2col scratch a convolution may use (48 MiB by default); larger batches are
 * processed in groups. Tests lower it to exercise the grouping. */
static size_t conv_budget = (size_t)12 << 20;

void nn_set_conv_scratch_budget(size_t floats) { conv_budget = floats ? floats : (size_t)12 << 20; }

/* ------------------------------------------------------------------ GEMM */

void nn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        /* cblas would still scale C by beta; do it explicitly for clarity */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

/* OpenBLAS's OpenMP build runs single-threaded when called inside a parallel region
 * (it checks omp_in_parallel), so the same call serves; the separate name documents
 * the intent at call sites. */
void nn_gemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    nn_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ------------------------------------------------------------------ Linear */

void nn_linear_forward(float *out, const float *inp, const float *w, const float *b, size_t N, int IN,
                       int OUT) {
    T2I_ASSERT(N <= 0x7fffffff);
    float beta = 0.0f;
    if (b) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < N; i++) memcpy(out + i * OUT, b, (size_t)OUT * sizeof(float));
        beta = 1.0f;
    }
    nn_gemm(0, 1, (int)N, OUT, IN, 1.0f, inp, IN, w, IN, beta, out, OUT);
}

/* db[j] += sum_i dout[i, j]. Threads take blocks of columns (no two write the same j)
 * and walk the rows, so memory is read in order rather than with stride OUT. */
static void add_colsum(float *db, const float *dout, size_t N, int OUT) {
    enum { COLS = 512 };
#pragma omp parallel for schedule(static) if (N * OUT > PAR_MIN)
    for (int j0 = 0; j0 < OUT; j0 += COLS) {
        int j1 = T2I_MIN(OUT, j0 + COLS);
        double acc[COLS];
        for (int j = j0; j < j1; j++) acc[j - j0] = 0.0;
        for (size_t i = 0; i < N; i++) {
            const float *row = dout + i * OUT;
            for (int j = j0; j < j1; j++) acc[j - j0] += row[j];
        }
        for (int j = j0; j < j1; j++) db[j] += (float)acc[j - j0];
    }
}

void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, size_t N, int IN, int OUT) {
    T2I_ASSERT(N <= 0x7fffffff);
    if (dinp) nn_gemm(0, 0, (int)N, IN, OUT, 1.0f, dout, OUT, w, IN, 1.0f, dinp, IN);
    if (dw) nn_gemm(1, 0, OUT, IN, (int)N, 1.0f, dout, OUT, inp, IN, 1.0f, dw, IN);
    if (db) add_colsum(db, dout, N, OUT);
}

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

/* ------------------------------------------------------------------ BatchNorm */

/* BatchNorm1d on (N, C) (S == 1): channels are columns, so threads take blocks of
 * columns and walk the rows, reading memory in order (the generic path would stride by C). */
#define BN_COLS 256
static void bn1d_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                               const float *beta, float *running_mean, float *running_var, int N, int C,
                               float eps, float momentum) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += BN_COLS) {
        int c1 = T2I_MIN(C, c0 + BN_COLS);
        double s[BN_COLS], ss[BN_COLS];
        for (int c = c0; c < c1; c++) s[c - c0] = ss[c - c0] = 0.0;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) s[c - c0] += inp[(size_t)n * C + c];
        for (int c = c0; c < c1; c++) s[c - c0] /= N;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                double d = inp[(size_t)n * C + c] - s[c - c0];
                ss[c - c0] += d * d;
            }
        for (int c = c0; c < c1; c++) {
            double m = s[c - c0], var = ss[c - c0] / N;
            mean[c] = (float)m;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            if (running_mean && running_var) {
                double unbiased = N > 1 ? ss[c - c0] / (N - 1) : var;
                running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)m;
                running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
            }
        }
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                float sc = (gamma ? gamma[c] : 1.0f) * rstd[c];
                out[(size_t)n * C + c] = (inp[(size_t)n * C + c] - mean[c]) * sc + (beta ? beta[c] : 0.0f);
            }
    }
}

static void bn1d_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                          const float *gamma, const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += BN_COLS) {
        int c1 = T2I_MIN(C, c0 + BN_COLS);
        double sdy[BN_COLS], sdyx[BN_COLS];
        for (int c = c0; c < c1; c++) sdy[c - c0] = sdyx[c - c0] = 0.0;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                float dy = dout[(size_t)n * C + c];
                sdy[c - c0] += dy;
                sdyx[c - c0] += dy * (inp[(size_t)n * C + c] - mean[c]) * rstd[c];
            }
        for (int c = c0; c < c1; c++) {
            if (dgamma) dgamma[c] += (float)sdyx[c - c0];
            if (dbeta) dbeta[c] += (float)sdy[c - c0];
        }
        if (!dinp) continue;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                float a = (gamma ? gamma[c] : 1.0f) * rstd[c];
                float mdy = (float)(sdy[c - c0] / N), mdyx = (float)(sdyx[c - c0] / N);
                size_t i = (size_t)n * C + c;
                dinp[i] += a * (dout[i] - mdy - (inp[i] - mean[c]) * rstd[c] * mdyx);
            }
    }
}

void nn_batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, float *running_mean, float *running_var, int N, int C,
                          int S, float eps, float momentum, int training) {
    if (S == 1 && training && mean && rstd) {
        bn1d_forward_train(out, mean, rstd, inp, gamma, beta, running_mean, running_var, N, C, eps, momentum);
        return;
    }
    size_t M = (size_t)N * S;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mu, rs;
        if (training) {
            double sum = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + c) * S;
                for (int i = 0; i < S; i++) sum += x[i];
            }
            double m = sum / (double)M;
            double ss = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + c) * S;
                for (int i = 0; i < S; i++) {
                    double d = x[i] - m;
                    ss += d * d;
                }
            }
            double var = ss / (double)M;
            mu = (float)m;
            rs = (float)(1.0 / sqrt(var + eps));
            if (mean) mean[c] = mu;
            if (rstd) rstd[c] = rs;
            if (running_mean && running_var) {
                double unbiased = M > 1 ? ss / (double)(M - 1) : var;
                running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)m;
                running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
            }
        } else {
            mu = running_mean[c];
            rs = 1.0f / sqrtf(running_var[c] + eps);
        }
        float g = gamma ? gamma[c] : 1.0f, bb = beta ? beta[c] : 0.0f;
        float scale = g * rs, shift = bb - mu * scale;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            float *y = out + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) y[i] = x[i] * scale + shift;
        }
    }
}

void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int S) {
    if (S == 1) {
        bn1d_backward(dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, N, C);
        return;
    }
    size_t M = (size_t)N * S;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mu = mean[c], rs = rstd[c], g = gamma ? gamma[c] : 1.0f;
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) {
                sdy += dy[i];
                sdyx += dy[i] * (x[i] - mu) * rs;
            }
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (!dinp) continue;
        float a = g * rs;
        float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            float *dx = dinp + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) dx[i] += a * (dy[i] - mdy - (x[i] - mu) * rs * mdyx);
        }
    }
}

/* ------------------------------------------------------------------ LayerNorm */

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, size_t N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float *y = out + i * C;
        float m = 0.0f;
        for (int j = 0; j < C; j++) m += x[j];
        m /= C;
        float v = 0.0f;
        for (int j = 0; j < C; j++) {
            float d = x[j] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int j = 0; j < C; j++) y[j] = (x[j] - m) * s * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = s;
    }
}

void nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t N, int C) {
    /* dw/db are reductions over rows: split columns across threads; dinp rows are independent */
    if (dw || db) {
#pragma omp parallel for schedule(static)
        for (int j = 0; j < C; j++) {
            double sw = 0.0, sb = 0.0;
            for (size_t i = 0; i < N; i++) {
                float dy = dout[i * C + j];
                sw += dy * (inp[i * C + j] - mean[i]) * rstd[i];
                sb += dy;
            }
            if (dw) dw[j] += (float)sw;
            if (db) db[j] += (float)sb;
        }
    }
    if (!dinp) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C, *dy = dout + i * C;
        float *dx = dinp + i * C;
        float m = mean[i], s = rstd[i];
        float sg = 0.0f, sgx = 0.0f;
        for (int j = 0; j < C; j++) {
            float g = dy[j] * (w ? w[j] : 1.0f);
            sg += g;
            sgx += g * (x[j] - m) * s;
        }
        sg /= C;
        sgx /= C;
        for (int j = 0; j < C; j++) {
            float g = dy[j] * (w ? w[j] : 1.0f);
            dx[j] += s * (g - sg - (x[j] - m) * s * sgx);
        }
    }
}

/* ------------------------------------------------------------------ GroupNorm */

void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int N, int C, int S, int G, float eps) {
    T2I_ASSERTF(C % G == 0, "GroupNorm: %d channels not divisible by %d groups", C, G);
    int cg = C / G;
    size_t M = (size_t)cg * S;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *x = inp + ((size_t)n * C + (size_t)g * cg) * S;
            float *y = out + ((size_t)n * C + (size_t)g * cg) * S;
            double sum = 0.0;
            for (size_t i = 0; i < M; i++) sum += x[i];
            double m = sum / M, ss = 0.0;
            for (size_t i = 0; i < M; i++) ss += (x[i] - m) * (x[i] - m);
            float mu = (float)m, rs = (float)(1.0 / sqrt(ss / M + eps));
            if (mean) mean[n * G + g] = mu;
            if (rstd) rstd[n * G + g] = rs;
            for (int c = 0; c < cg; c++) {
                int ch = g * cg + c;
                float sc = (gamma ? gamma[ch] : 1.0f) * rs, sh = (beta ? beta[ch] : 0.0f) - mu * sc;
                for (int i = 0; i < S; i++) y[(size_t)c * S + i] = x[(size_t)c * S + i] * sc + sh;
            }
        }
}

void nn_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int S, int G) {
    int cg = C / G;
    if (dgamma || dbeta) {
#pragma omp parallel for schedule(static)
        for (int ch = 0; ch < C; ch++) {
            int g = ch / cg;
            double sw = 0.0, sb = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + ch) * S, *dy = dout + ((size_t)n * C + ch) * S;
                float mu = mean[n * G + g], rs = rstd[n * G + g];
                for (int i = 0; i < S; i++) {
                    sw += dy[i] * (x[i] - mu) * rs;
                    sb += dy[i];
                }
            }
            if (dgamma) dgamma[ch] += (float)sw;
            if (dbeta) dbeta[ch] += (float)sb;
        }
    }
    if (!dinp) return;
    size_t M = (size_t)cg * S;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            float mu = mean[n * G + g], rs = rstd[n * G + g];
            double sg = 0.0, sgx = 0.0;
            for (int c = 0; c < cg; c++) {
                int ch = g * cg + c;
                float ga = gamma ? gamma[ch] : 1.0f;
                const float *x = inp + ((size_t)n * C + ch) * S, *dy = dout + ((size_t)n * C + ch) * S;
                for (int i = 0; i < S; i++) {
                    float gg = dy[i] * ga;
                    sg += gg;
                    sgx += gg * (x[i] - mu) * rs;
                }
            }
            float msg = (float)(sg / M), msgx = (float)(sgx / M);
            for (int c = 0; c < cg; c++) {
                int ch = g * cg + c;
                float ga = gamma ? gamma[ch] : 1.0f;
                const float *x = inp + ((size_t)n * C + ch) * S, *dy = dout + ((size_t)n * C + ch) * S;
                float *dx = dinp + ((size_t)n * C + ch) * S;
                for (int i = 0; i < S; i++) dx[i] += rs * (dy[i] * ga - msg - (x[i] - mu) * rs * msgx);
            }
        }
}

/* ------------------------------------------------------------------ Embedding */

void nn_embedding_forward(float *out, const int *ids, const float *w, size_t N, int V, int C) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        T2I_ASSERTF(ids[i] >= 0 && ids[i] < V, "embedding id %d outside [0, %d)", ids[i], V);
        memcpy(out + i * C, w + (size_t)ids[i] * C, (size_t)C * sizeof(float));
    }
}

void nn_embedding_backward(float *dw, const float *dout, const int *ids, size_t N, int V, int C) {
    /* rows may repeat, so threads split the columns, not the rows */
#pragma omp parallel
    {
        size_t lo, hi;
        thread_share((size_t)C, &lo, &hi);
        int j0 = (int)lo, j1 = (int)hi;
        for (size_t i = 0; i < N; i++) {
            T2I_ASSERT(ids[i] >= 0 && ids[i] < V);
            float *d = dw + (size_t)ids[i] * C;
            const float *g = dout + i * C;
            for (int j = j0; j < j1; j++) d[j] += g[j];
        }
    }
}

/* ------------------------------------------------------------------ activations */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + t2i_expf(-x)); }

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* The GELU/sigmoid family's forward over a range, compiled twice: for AVX2 (eight lanes;
 * no FMA contraction, so both copies give the same bits) and for the baseline. Elements
 * are independent, also in place (out == inp): ACT_SIMD vectorises without alias checks. */
#define ACT_SIMD _Pragma("omp simd")
#define ACT_SMOOTH(NAME)                                                                                  \
    static void NAME(float *out, const float *inp, size_t n, nn_act act) {                                \
        switch (act) {                                                                                    \
        case NN_ACT_GELU_TANH:                                                                            \
            ACT_SIMD for (size_t i = 0; i < n; i++) {                                                     \
                float x = inp[i];                                                                         \
                out[i] = 0.5f * x * (1.0f + t2i_tanhf(GELU_K * (x + 0.044715f * x * x * x)));             \
            }                                                                                             \
            break;                                                                                        \
        case NN_ACT_GELU_ERF:                                                                             \
            ACT_SIMD for (size_t i = 0; i < n; i++) {                                                     \
                float x = inp[i];                                                                         \
                out[i] = 0.5f * x * (1.0f + t2i_erff(x * 0.70710678118654752f));                          \
            }                                                                                             \
            break;                                                                                        \
        case NN_ACT_QUICK_GELU:                                                                           \
            ACT_SIMD for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(1.702f * inp[i]);          \
            break;                                                                                        \
        default: /* NN_ACT_SILU */                                                                        \
            ACT_SIMD for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(inp[i]);                   \
            break;                                                                                        \
        }                                                                                                 \
    }
ACT_SMOOTH(act_smooth_base)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2")
ACT_SMOOTH(act_smooth_avx2)
#pragma GCC pop_options
#else
#define act_smooth_avx2 act_smooth_base
#endif

void nn_act_forward(float *out, const float *inp, size_t n, nn_act act, float slope) {
    switch (act) {
    case NN_ACT_NONE:
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        break;
    case NN_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
        break;
    case NN_ACT_LEAKY_RELU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
        break;
    case NN_ACT_GELU_TANH:
    case NN_ACT_GELU_ERF:
    case NN_ACT_QUICK_GELU:
    case NN_ACT_SILU: {
        void (*fn)(float *, const float *, size_t, nn_act) = t2i_cpu_avx2_fma() ? act_smooth_avx2 : act_smooth_base;
#pragma omp parallel if (n > PAR_MIN)
        {
            size_t lo, hi;
            thread_share(n, &lo, &hi);
            fn(out + lo, inp + lo, hi - lo, act);
        }
        break;
    }
    case NN_ACT_TANH:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = t2i_tanhf(inp[i]);
        break;
    case NN_ACT_SIGMOID:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = sigmoidf(inp[i]);
        break;
    }
}

/* dinp (+)= dout * act'(x). EXPR computes the product from x = inp[i], d = dout[i]; the
 * in-place (dinp == dout) and accumulating forms are separate loops so both vectorise. */
#define ACT_BWD(EXPR)                                                                      \
    do {                                                                                   \
        if (dinp == dout) {                                                                \
            _Pragma("omp parallel for simd schedule(static) if (n > PAR_MIN)")             \
            for (size_t i = 0; i < n; i++) {                                               \
                float x = inp[i], d = dout[i];                                             \
                dinp[i] = (EXPR);                                                          \
            }                                                                              \
        } else {                                                                           \
            _Pragma("omp parallel for simd schedule(static) if (n > PAR_MIN)")             \
            for (size_t i = 0; i < n; i++) {                                               \
                float x = inp[i], d = dout[i];                                             \
                dinp[i] += (EXPR);                                                         \
            }                                                                              \
        }                                                                                  \
    } while (0)

static inline float gelu_tanh_grad(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x);
    float t = t2i_tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

static inline float gelu_erf_grad(float x) {
    float cdf = 0.5f * (1.0f + t2i_erff(x * 0.70710678118654752f));
    return cdf + x * 0.3989422804014327f * t2i_expf(-0.5f * x * x);
}

static inline float quick_gelu_grad(float x) {
    float s = sigmoidf(1.702f * x);
    return s + 1.702f * x * s * (1.0f - s);
}

static inline float silu_grad(float x) {
    float s = sigmoidf(x);
    return s + x * s * (1.0f - s);
}

/* The smooth activations' backward over a range (dinp = or += grad(x) dout; the same
 * element may be read and written when dinp == dout), compiled like ACT_SMOOTH. */
#define ACT_SMOOTH_BWD(NAME)                                                                               \
    static void NAME(float *dinp, const float *dout, const float *inp, size_t n, nn_act act, int add) {    \
        switch (act) {                                                                                     \
        case NN_ACT_GELU_TANH:                                                                             \
            if (add) ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] += gelu_tanh_grad(inp[i]) * dout[i];  \
            else ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] = gelu_tanh_grad(inp[i]) * dout[i];       \
            break;                                                                                         \
        case NN_ACT_GELU_ERF:                                                                              \
            if (add) ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] += gelu_erf_grad(inp[i]) * dout[i];   \
            else ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] = gelu_erf_grad(inp[i]) * dout[i];        \
            break;                                                                                         \
        case NN_ACT_QUICK_GELU:                                                                            \
            if (add) ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] += quick_gelu_grad(inp[i]) * dout[i]; \
            else ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] = quick_gelu_grad(inp[i]) * dout[i];      \
            break;                                                                                         \
        default: /* NN_ACT_SILU */                                                                         \
            if (add) ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] += silu_grad(inp[i]) * dout[i];       \
            else ACT_SIMD for (size_t i = 0; i < n; i++) dinp[i] = silu_grad(inp[i]) * dout[i];            \
            break;                                                                                         \
        }                                                                                                  \
    }
ACT_SMOOTH_BWD(act_smooth_bwd_base)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2")
ACT_SMOOTH_BWD(act_smooth_bwd_avx2)
#pragma GCC pop_options
#else
#define act_smooth_bwd_avx2 act_smooth_bwd_base
#endif

void nn_act_backward(float *dinp, const float *dout, const float *inp, size_t n, nn_act act,
                     float slope) {
    switch (act) {
    case NN_ACT_NONE:
        if (dinp != dout)
            for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        break;
    case NN_ACT_RELU: ACT_BWD(x > 0.0f ? d : 0.0f); break;
    case NN_ACT_LEAKY_RELU: ACT_BWD(x > 0.0f ? d : slope * d); break;
    case NN_ACT_GELU_TANH:
    case NN_ACT_GELU_ERF:
    case NN_ACT_QUICK_GELU:
    case NN_ACT_SILU: {
        void (*fn)(float *, const float *, const float *, size_t, nn_act, int) =
            t2i_cpu_avx2_fma() ? act_smooth_bwd_avx2 : act_smooth_bwd_base;
        int add = dinp != dout;
#pragma omp parallel if (n > PAR_MIN)
        {
            size_t lo, hi;
            thread_share(n, &lo, &hi);
            fn(dinp + lo, dout + lo, inp + lo, hi - lo, act, add);
        }
        break;
    }
    case NN_ACT_TANH: {
        ACT_BWD((1.0f - t2i_tanhf(x) * t2i_tanhf(x)) * d);
        break;
    }
    case NN_ACT_SIGMOID: ACT_BWD(sigmoidf(x) * (1.0f - sigmoidf(x)) * d); break;
    }
}
#undef ACT_BWD

static const char *const act_names[] = {"none", "relu", "leaky_relu", "gelu_tanh", "gelu",
                                        "quick_gelu", "silu", "tanh", "sigmoid"};

const char *nn_act_name(nn_act act) {
    T2I_ASSERT((int)act >= 0 && (int)act < (int)(sizeof act_names / sizeof act_names[0]));
    return act_names[act];
}

int nn_act_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof act_names / sizeof act_names[0]); i++)
        if (strcmp(name, act_names[i]) == 0) return i;
    if (strcmp(name, "gelu_erf") == 0) return NN_ACT_GELU_ERF;
    return -1;
}

/* ------------------------------------------------------------------ dropout */

void nn_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p, t2i_rng *rng) {
    T2I_ASSERT(p >= 0.0f && p < 1.0f);
    if (p == 0.0f) {
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        if (mask)
            for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float m = t2i_rng_uniform(rng) >= p ? keep : 0.0f;
        mask[i] = m;
        out[i] = inp[i] * m;
    }
}

void nn_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * mask[i];
}

/* ------------------------------------------------------------------ structural */

void nn_add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void nn_add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void nn_add_bias_rows(float *y, const float *b, size_t N, int C) {
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN)
    for (size_t i = 0; i < N; i++)
        for (int j = 0; j < C; j++) y[i * C + j] += b[j];
}

void nn_concat_forward(float *out, const float *a, const float *b, int N, int Ca, int Cb, int S) {
    size_t sa = (size_t)Ca * S, sb = (size_t)Cb * S;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        memcpy(out + n * (sa + sb), a + n * sa, sa * sizeof(float));
        memcpy(out + n * (sa + sb) + sa, b + n * sb, sb * sizeof(float));
    }
}

void nn_concat_backward(float *da, float *db, const float *dout, int N, int Ca, int Cb, int S) {
    size_t sa = (size_t)Ca * S, sb = (size_t)Cb * S;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *d = dout + n * (sa + sb);
        if (da)
            for (size_t i = 0; i < sa; i++) da[n * sa + i] += d[i];
        if (db)
            for (size_t i = 0; i < sb; i++) db[n * sb + i] += d[sa + i];
    }
}

void nn_pixel_shuffle_forward(float *out, const float *inp, int N, int C, int H, int W, int r) {
    int OH = H * r, OW = W * r;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++) {
                    const float *src = inp + (((size_t)n * C + c) * r * r + (size_t)i * r + j) * H * W;
                    float *dst = out + ((size_t)n * C + c) * OH * OW;
                    for (int h = 0; h < H; h++)
                        for (int w = 0; w < W; w++) dst[(size_t)(h * r + i) * OW + w * r + j] = src[(size_t)h * W + w];
                }
}

void nn_pixel_shuffle_backward(float *dinp, const float *dout, int N, int C, int H, int W, int r) {
    int OH = H * r, OW = W * r;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++) {
                    float *dst = dinp + (((size_t)n * C + c) * r * r + (size_t)i * r + j) * H * W;
                    const float *src = dout + ((size_t)n * C + c) * OH * OW;
                    for (int h = 0; h < H; h++)
                        for (int w = 0; w < W; w++) dst[(size_t)h * W + w] += src[(size_t)(h * r + i) * OW + w * r + j];
                }
}

void nn_upsample_nearest_forward(float *out, const float *inp, int N, int C, int H, int W, int f) {
    int OH = H * f, OW = W * f;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)N * C; p++) {
        const float *src = inp + p * H * W;
        float *dst = out + p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) dst[(size_t)oh * OW + ow] = src[(size_t)(oh / f) * W + ow / f];
    }
}

void nn_upsample_nearest_backward(float *dinp, const float *dout, int N, int C, int H, int W, int f) {
    int OH = H * f, OW = W * f;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)N * C; p++) {
        float *dst = dinp + p * H * W;
        const float *src = dout + p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) dst[(size_t)(oh / f) * W + ow / f] += src[(size_t)oh * OW + ow];
    }
}

void nn_avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int k, int stride) {
    int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)N * C; p++) {
        const float *src = inp + p * H * W;
        float *dst = out + p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float s = 0.0f;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) s += src[(size_t)(oh * stride + i) * W + ow * stride + j];
                dst[(size_t)oh * OW + ow] = s * inv;
            }
    }
}

void nn_avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int k,
                           int stride) {
    int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)N * C; p++) {
        float *dst = dinp + p * H * W;
        const float *src = dout + p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float g = src[(size_t)oh * OW + ow] * inv;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) dst[(size_t)(oh * stride + i) * W + ow * stride + j] += g;
            }
    }
}

/* ------------------------------------------------------------------ softmax */

static void softmax_row(float *y, const float *x, int C) {
    float mx = -INFINITY;
    for (int j = 0; j < C; j++) mx = x[j] > mx ? x[j] : mx;
    float s = 0.0f;
    for (int j = 0; j < C; j++) {
        y[j] = t2i_expf(x[j] - mx);
        s += y[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < C; j++) y[j] *= inv;
}

void nn_softmax_forward(float *out, const float *inp, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) softmax_row(out + i * C, inp + i * C, C);
}

void nn_softmax_backward(float *dinp, const float *dout, const float *out, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *y = out + i * C, *dy = dout + i * C;
        float dot = 0.0f;
        for (int j = 0; j < C; j++) dot += y[j] * dy[j];
        for (int j = 0; j < C; j++) dinp[i * C + j] += y[j] * (dy[j] - dot);
    }
}

/* ------------------------------------------------------------------ attention */

size_t nn_attention_scratch(int B, int T, int C, int NH) { return (size_t)B * NH * T * T; }

void nn_attention_forward(float *out, float *att, float *scratch, const float *qkv, int B, int T,
                          int C, int NH, int causal) {
    T2I_ASSERTF(C % NH == 0, "attention: width %d not divisible by %d heads", C, NH);
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    (void)scratch;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *a = att + ((size_t)b * NH + h) * T * T;
            nn_gemm_serial(0, 1, T, T, hs, scale, q, C3, k, C3, 0.0f, a, T);
            for (int t = 0; t < T; t++) {
                float *row = a + (size_t)t * T;
                int n = causal ? t + 1 : T;
                softmax_row(row, row, n);
                for (int j = n; j < T; j++) row[j] = 0.0f;
            }
            float *o = out + (size_t)b * T * C + (size_t)h * hs;
            nn_gemm_serial(0, 0, T, hs, T, 1.0f, a, T, v, C3, 0.0f, o, C);
        }
}

void nn_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (size_t)b * T * C3 + (size_t)h * hs;
            float *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + bh * T * T;
            const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
            float *dA = scratch + bh * T * T;
            /* dv += P^T dO ;  dP = dO v^T */
            nn_gemm_serial(1, 0, T, hs, T, 1.0f, a, T, dO, C, 1.0f, dv, C3);
            nn_gemm_serial(0, 1, T, T, hs, 1.0f, dO, C, v, C3, 0.0f, dA, T);
            /* dS = P * (dP - rowsum(dP * P)); masked entries have P = 0 and stay 0 */
            for (int t = 0; t < T; t++) {
                const float *p = a + (size_t)t * T;
                float *d = dA + (size_t)t * T;
                float dot = 0.0f;
                for (int j = 0; j < T; j++) dot += p[j] * d[j];
                for (int j = 0; j < T; j++) d[j] = p[j] * (d[j] - dot);
            }
            nn_gemm_serial(0, 0, T, hs, T, scale, dA, T, k, C3, 1.0f, dq, C3);
            nn_gemm_serial(1, 0, T, hs, T, scale, dA, T, q, C3, 1.0f, dk, C3);
        }
}

size_t nn_attention_cached_scratch(int B, int Tn, int Tmax, int NH) { return (size_t)B * NH * Tn * Tmax; }

/* nn_attention_cached_forward: from this many new positions on, GEMMs; fewer take loops. */
#define CACHED_GEMM_MIN_TN 4

/* One query q (hs) against n cached keys K (n, hs) and values V (n, hs): scores a (n),
 * softmax, o (hs) = a V. hs a multiple of 8: eight-float vectors (GCC's vector extension),
 * compiled twice, for AVX2 + FMA (chosen at run time) and for the baseline. */
typedef float att_v8 __attribute__((vector_size(32)));
#define ATT_HSUM(v) (((v)[0] + (v)[4]) + ((v)[1] + (v)[5])) + (((v)[2] + (v)[6]) + ((v)[3] + (v)[7]))
#define ATT_LOAD(dst, src) memcpy(&(dst), (src), sizeof(att_v8))
/* Four keys at a time and 32 output floats at a time, so that the sums form independent
 * chains instead of waiting on one accumulator. */
#define ATTEND_ROW(NAME)                                                                                          \
    static void NAME(float *restrict o, float *restrict a, const float *restrict q, const float *restrict K,      \
                     const float *restrict V, int n, int hs, float scale) {                                       \
        int j = 0;                                                                                                \
        for (; j + 4 <= n; j += 4) {                                                                              \
            const float *k0 = K + (size_t)j * hs, *k1 = k0 + hs, *k2 = k1 + hs, *k3 = k2 + hs;                    \
            att_v8 s0 = {0}, s1 = s0, s2 = s0, s3 = s0, x, y;                                                     \
            for (int d = 0; d < hs; d += 8) {                                                                     \
                ATT_LOAD(x, q + d);                                                                               \
                ATT_LOAD(y, k0 + d), s0 += x * y;                                                                 \
                ATT_LOAD(y, k1 + d), s1 += x * y;                                                                 \
                ATT_LOAD(y, k2 + d), s2 += x * y;                                                                 \
                ATT_LOAD(y, k3 + d), s3 += x * y;                                                                 \
            }                                                                                                     \
            a[j] = scale * (ATT_HSUM(s0)), a[j + 1] = scale * (ATT_HSUM(s1));                                     \
            a[j + 2] = scale * (ATT_HSUM(s2)), a[j + 3] = scale * (ATT_HSUM(s3));                                 \
        }                                                                                                         \
        for (; j < n; j++) {                                                                                      \
            att_v8 s0 = {0}, x, y;                                                                                \
            for (int d = 0; d < hs; d += 8) ATT_LOAD(x, q + d), ATT_LOAD(y, K + (size_t)j * hs + d), s0 += x * y; \
            a[j] = scale * (ATT_HSUM(s0));                                                                        \
        }                                                                                                         \
        softmax_row(a, a, n);                                                                                     \
        int d = 0;                                                                                                \
        for (; d + 32 <= hs; d += 32) {                                                                           \
            att_v8 o0 = {0}, o1 = o0, o2 = o0, o3 = o0, v;                                                        \
            for (int i = 0; i < n; i++) {                                                                         \
                const float *vi = V + (size_t)i * hs + d;                                                         \
                float w = a[i];                                                                                   \
                ATT_LOAD(v, vi), o0 += w * v;                                                                     \
                ATT_LOAD(v, vi + 8), o1 += w * v;                                                                 \
                ATT_LOAD(v, vi + 16), o2 += w * v;                                                                \
                ATT_LOAD(v, vi + 24), o3 += w * v;                                                                \
            }                                                                                                     \
            memcpy(o + d, &o0, 32), memcpy(o + d + 8, &o1, 32), memcpy(o + d + 16, &o2, 32);                      \
            memcpy(o + d + 24, &o3, 32);                                                                          \
        }                                                                                                         \
        for (; d < hs; d += 8) {                                                                                  \
            att_v8 o0 = {0}, v;                                                                                   \
            for (int i = 0; i < n; i++) ATT_LOAD(v, V + (size_t)i * hs + d), o0 += a[i] * v;                      \
            memcpy(o + d, &o0, 32);                                                                               \
        }                                                                                                         \
    }
ATTEND_ROW(attend_row_base)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")
ATTEND_ROW(attend_row_avx2)
#pragma GCC pop_options
#else
#define attend_row_avx2 attend_row_base
#endif

void nn_attention_cached_forward(float *out, float *scratch, nn_kv_cache *cache, const float *qkv,
                                 int Tn) {
    int B = cache->B, NH = cache->NH, hs = cache->hs, Tmax = cache->Tmax;
    int C = NH * hs, C3 = 3 * C, L = cache->len;
    T2I_ASSERTF(L + Tn <= Tmax, "kv cache overflow: %d + %d > %d", L, Tn, Tmax);
    float scale = 1.0f / sqrtf((float)hs);
    int avx2 = t2i_cpu_avx2_fma();
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            float *K = cache->k + bh * Tmax * hs, *V = cache->v + bh * Tmax * hs;
            for (int t = 0; t < Tn; t++) {
                const float *src = qkv + ((size_t)b * Tn + t) * C3 + (size_t)h * hs;
                memcpy(K + (size_t)(L + t) * hs, src + C, (size_t)hs * sizeof(float));
                memcpy(V + (size_t)(L + t) * hs, src + 2 * C, (size_t)hs * sizeof(float));
            }
            int Tk = L + Tn;
            const float *q = qkv + (size_t)b * Tn * C3 + (size_t)h * hs;
            float *a = scratch + bh * Tn * Tmax;
            float *o = out + (size_t)b * Tn * C + (size_t)h * hs;
            if (Tn < CACHED_GEMM_MIN_TN) {
                /* a decode step: plain loops (a BLAS call per row and head would re-pack K
                 * and V each time, a quarter of a B2 sampling step) */
                for (int t = 0; t < Tn; t++) {
                    const float *qt = q + (size_t)t * C3;
                    float *at = a + (size_t)t * Tk, *ot = o + (size_t)t * C;
                    int n = L + t + 1;
                    if (hs % 8 == 0 && avx2) attend_row_avx2(ot, at, qt, K, V, n, hs, scale);
                    else if (hs % 8 == 0) attend_row_base(ot, at, qt, K, V, n, hs, scale);
                    else {
                        for (int j = 0; j < n; j++) {
                            float dot = 0.0f;
                            for (int d = 0; d < hs; d++) dot += qt[d] * K[(size_t)j * hs + d];
                            at[j] = scale * dot;
                        }
                        softmax_row(at, at, n);
                        for (int d = 0; d < hs; d++) ot[d] = 0.0f;
                        for (int j = 0; j < n; j++)
                            for (int d = 0; d < hs; d++) ot[d] += at[j] * V[(size_t)j * hs + d];
                    }
                }
                continue;
            }
            nn_gemm_serial(0, 1, Tn, Tk, hs, scale, q, C3, K, hs, 0.0f, a, Tk);
            for (int t = 0; t < Tn; t++) softmax_row(a + (size_t)t * Tk, a + (size_t)t * Tk, L + t + 1);
            for (int t = 0; t < Tn; t++)
                for (int j = L + t + 1; j < Tk; j++) a[(size_t)t * Tk + j] = 0.0f;
            nn_gemm_serial(0, 0, Tn, hs, Tk, 1.0f, a, Tk, V, hs, 0.0f, o, C);
        }
    cache->len = L + Tn;
}

/* ------------------------------------------------------------------ losses */

static inline float bce_term(float x, float t) {
    /* max(x,0) - x t + log(1 + exp(-|x|)): stable for any x */
    return (x > 0.0f ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x)));
}

float nn_bce_logits(float *dinp, const float *logits, const float *targets, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += bce_term(logits[i], targets[i]);
        if (dinp) dinp[i] += scale * (sigmoidf(logits[i]) - targets[i]) / (float)n;
    }
    return (float)(s / n);
}

float nn_bce_logits_const(float *dinp, const float *logits, float target, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += bce_term(logits[i], target);
        if (dinp) dinp[i] += scale * (sigmoidf(logits[i]) - target) / (float)n;
    }
    return (float)(s / n);
}

float nn_cross_entropy(float *dinp, const float *logits, const int *targets, const float *weights,
                       size_t N, int V, int ignore_index, float scale) {
    size_t count = 0;
    for (size_t i = 0; i < N; i++) count += targets[i] != ignore_index;
    if (!weights && count == 0) return 0.0f;
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < N; i++) {
        int t = targets[i];
        if (t == ignore_index) continue;
        T2I_ASSERTF(t >= 0 && t < V, "cross-entropy target %d outside [0, %d)", t, V);
        const float *x = logits + i * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double s = 0.0;
        for (int j = 0; j < V; j++) s += exp((double)(x[j] - mx));
        double lse = mx + log(s);
        double w = weights ? weights[i] : 1.0 / (double)count;
        total += w * (lse - x[t]);
        if (dinp) {
            float *d = dinp + i * V;
            float ws = (float)(w * scale);
            for (int j = 0; j < V; j++) d[j] += ws * (float)exp((double)x[j] - lse);
            d[t] -= ws;
        }
    }
    return (float)total;
}

float nn_mse(float *dinp, const float *x, const float *y, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = x[i] - y[i];
        s += (double)d * d;
        if (dinp) dinp[i] += scale * 2.0f * d / (float)n;
    }
    return (float)(s / n);
}

float nn_l1(float *dinp, const float *x, const float *y, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = x[i] - y[i];
        s += fabs(d);
        if (dinp) dinp[i] += scale * (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f)) / (float)n;
    }
    return (float)(s / n);
}
