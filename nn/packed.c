/* packed.c - products with a weight matrix packed once, for the few-row GEMMs of
 * autoregressive decoding.
 *
 * Each decode step of a transformer multiplies a handful of rows (one per candidate) by
 * every weight matrix. A BLAS GEMM re-packs the weight operand into its panel layout at
 * every call, and with 32 rows that copy is a third of the step (perf, B2 sampling:
 * sgemm_incopy/itcopy 34% of the samples beside the kernel's 44%). Here the weights are
 * packed once per sampling run: W (N, K) becomes ceil(N / PK_NR) panels, each (K, PK_NR)
 * with the panel's PK_NR output columns contiguous for every k (zero beyond N). A tile of
 * PK_MR rows x PK_NR columns keeps its sums in registers over all K; threads take
 * contiguous runs of (panel, row block) tiles.
 *
 * The sums run over k in order, so results differ from cblas_sgemm's by float rounding. */
#include <string.h>

#include "base.h"
#include "ops.h"

#define PK_MR 4
#define PK_NR 24
typedef float pk_v8 __attribute__((vector_size(32)));

#define PK_FN(name) pk_##name##_base
#include "packed_kernel.h"
#undef PK_FN
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PK_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#define PK_FN(name) pk_##name##_avx2
#include "packed_kernel.h"
#undef PK_FN
#pragma GCC pop_options
#else
#define PK_AVX2 0
#endif

void nn_pack_weights(nn_packed *p, const float *w, int N, int K) {
    T2I_ASSERT(N > 0 && K > 0);
    p->N = N, p->K = K, p->np = (N + PK_NR - 1) / PK_NR;
    p->w = t2i_malloc_aligned((size_t)p->np * K * PK_NR * sizeof(float));
    for (int pi = 0; pi < p->np; pi++) {
        float *dst = p->w + (size_t)pi * K * PK_NR;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < PK_NR; j++) {
                int n = pi * PK_NR + j;
                dst[(size_t)k * PK_NR + j] = n < N ? w[(size_t)n * K + k] : 0.0f;
            }
    }
}

void nn_packed_free(nn_packed *p) {
    if (!p) return;
    t2i_free(p->w);
    memset(p, 0, sizeof *p);
}

void nn_packed_gemm(float *out, const float *in, const nn_packed *p, const float *bias, int M, int accumulate) {
    if (M <= 0) return;
#if PK_AVX2
    if (t2i_cpu_avx2_fma()) {
        pk_gemm_avx2(out, in, p, bias, M, accumulate);
        return;
    }
#endif
    pk_gemm_base(out, in, p, bias, M, accumulate);
}
