/* ops_attention.c - softmax and multi-head attention, full and KV-cached (ops.h).
 *
 * Backward derivation:
 * Attention per (batch, head): S = q k^T / sqrt(hs) (+ causal mask), P = softmax(S),
 *   O = P v;  dP = dO v^T,  dS = P * (dP - rowsum(dP * P)) / sqrt(hs) (folded into dq, dk),
 *   dq = dS k,  dk = dS^T q,  dv = P^T dO.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "base.h"
#include "fastmath.h"

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
