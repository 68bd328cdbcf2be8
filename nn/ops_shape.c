/* ops_shape.c - elementwise adds and the layers that only move values: concat, pixel
 * shuffle, nearest upsampling, average pooling (ops.h).
 */
#include "ops.h"

#include <string.h>

#include "base.h"
#include "conv_tile.h"
#include "ops_internal.h"

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

void nn_transpose_batched(float *out, const float *inp, int N, int R, int C) {
    nn_transpose_fn tr = nn_transpose_get(); /* the convolutions' transposed copy, per CPU path */
    size_t S = (size_t)R * C;
#pragma omp parallel for schedule(static) if (N * S > PAR_MIN)
    for (int n = 0; n < N; n++) tr(out + n * S, (size_t)R, inp + n * S, (size_t)C, R, C);
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
