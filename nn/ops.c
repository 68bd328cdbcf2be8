/* ops.c - the GEMM wrappers, Linear, Embedding, activations and dropout; see ops.h for the
 * conventions (shapes, accumulation, scratch). The other layers are in ops_conv.c
 * (convolutions), ops_norm.c (BatchNorm, LayerNorm, GroupNorm), ops_shape.c (adds,
 * concat, pixel shuffle, upsampling, pooling), ops_attention.c (softmax, attention) and
 * ops_loss.c (losses).
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "base.h"
#include "fastmath.h"
#include "ops_internal.h"

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

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* The GELU/sigmoid family's forward over a range, compiled three times: for AVX-512
 * (sixteen lanes), AVX2 (eight lanes) and the baseline, without FMA contraction, so all
 * copies give the same bits; the CPU path picks one (T2I_CPU caps it). Elements
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
/* sixteen lanes; AVX-512F has FMA, so contraction is turned off to keep the bits */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,prefer-vector-width=512")
#pragma GCC optimize("fp-contract=off")
ACT_SMOOTH(act_smooth_avx512)
#pragma GCC pop_options
#else
#define act_smooth_avx2 act_smooth_base
#define act_smooth_avx512 act_smooth_base
#endif

typedef void (*act_fwd_fn)(float *, const float *, size_t, nn_act);
/* The copy for the CPU path (base.h: t2i_cpu_path). */
static act_fwd_fn act_smooth_for_path(void) {
    t2i_cpu_level l = t2i_cpu_path();
    return l >= T2I_CPU_AVX512 ? act_smooth_avx512 : l >= T2I_CPU_AVX2 ? act_smooth_avx2 : act_smooth_base;
}

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
        act_fwd_fn fn = act_smooth_for_path();
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
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,prefer-vector-width=512")
#pragma GCC optimize("fp-contract=off")
ACT_SMOOTH_BWD(act_smooth_bwd_avx512)
#pragma GCC pop_options
#else
#define act_smooth_bwd_avx2 act_smooth_bwd_base
#define act_smooth_bwd_avx512 act_smooth_bwd_base
#endif

typedef void (*act_bwd_fn)(float *, const float *, const float *, size_t, nn_act, int);
static act_bwd_fn act_smooth_bwd_for_path(void) {
    t2i_cpu_level l = t2i_cpu_path();
    return l >= T2I_CPU_AVX512 ? act_smooth_bwd_avx512 : l >= T2I_CPU_AVX2 ? act_smooth_bwd_avx2 : act_smooth_bwd_base;
}

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
        act_bwd_fn fn = act_smooth_bwd_for_path();
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
