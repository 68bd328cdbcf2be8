/* packed.c - products with a weight matrix packed once, for the few-row GEMMs of
 * autoregressive decoding and of one caption through CLIP's text tower.
 *
 * Each decode step of a transformer multiplies a handful of rows (one per candidate) by
 * every weight matrix. A BLAS GEMM re-packs the weight operand into its panel layout at
 * every call, and with 32 rows that copy is a third of the step (perf, B2 sampling:
 * sgemm_incopy/itcopy 34% of the samples beside the kernel's 44%). Here the weights are
 * packed once per sampling run: W (N, K) becomes ceil(N / PK_NR) panels, each (K, PK_NR)
 * with the panel's PK_NR output columns contiguous for every k (zero beyond N). A tile of
 * rows x columns keeps its sums in registers over all K (packed_kernel.h); threads take
 * contiguous runs of (panel, row block) tiles.
 *
 * With so few rows the products read every weight once from memory for a few
 * multiply-adds each, so the bytes of the weights bound them (a 16-token caption through
 * CLIP ViT-B/32's text tower: 151 MB of f32 weights). A matrix whose every value is
 * exactly a bf16 (models loaded from the bf16 checkpoints t2i ships) is packed as bf16,
 * one whose every value is a finite f16 (OpenAI's fp16 CLIP weights, converted to
 * safetensors as f16 or f32) as f16: half the bytes, and each panel row is widened to f32
 * in registers (exactly: a bf16 is the top half of an f32, an f16 a subset of the f32
 * values). The multiply-adds are those of the f32 copy, and so are the results, bit for
 * bit. bf16 is tried first (a value both bf16 and f16 widens the same either way).
 *
 * CPU paths (t2i_cpu_path()): AVX-512 tiles of 8 rows x 48 columns (a panel), AVX2 + FMA
 * 4 x 24 (half a panel at a time), the baseline 4 x 12. The sums run over k in order, so results differ
 * from cblas_sgemm's by float rounding; the AVX2 and AVX-512 copies give the same bits. */
#include <string.h>

#include "base.h"
#include "ops.h"

#define PK_NR 48
typedef float pk_v4 __attribute__((vector_size(16)));
typedef uint16_t pk_h4 __attribute__((vector_size(8)));
typedef uint32_t pk_u4 __attribute__((vector_size(16)));
typedef float pk_v8 __attribute__((vector_size(32)));
typedef float pk_v16 __attribute__((vector_size(64)));

#define PK_LOAD_F32(v, p) memcpy(&(v), (p), sizeof(v))
/* A bf16 h is the f32 whose bits are h << 16. The generic form for the baseline; the x86
 * copies widen with one zero-extending load and a shift (intrinsics: the generic form of
 * 16 lanes is split into 256-bit halves by gcc's default tuning). */
#define PK_LOAD_BF16_4(v, p)                                 \
    do {                                                     \
        pk_h4 h_;                                            \
        memcpy(&h_, (p), sizeof h_);                         \
        pk_u4 u_ = __builtin_convertvector(h_, pk_u4) << 16; \
        memcpy(&(v), &u_, sizeof u_);                        \
    } while (0)
/* A finite f16's magnitude bits shifted to an f32's mantissa position give the f32 of
 * that value times 2^-112 (normal or subnormal), which a multiply by 2^112 makes exact;
 * the sign bit moves to the top. The x86 copies use the conversion instruction (F16C). */
#define PK_LOAD_F16_4(v, p)                                                        \
    do {                                                                           \
        pk_h4 h_;                                                                  \
        memcpy(&h_, (p), sizeof h_);                                               \
        pk_u4 u_ = __builtin_convertvector(h_, pk_u4);                             \
        pk_u4 m_ = (u_ & 0x7fffu) << 13, s_ = (u_ & 0x8000u) << 16;                \
        pk_v4 f_;                                                                  \
        memcpy(&f_, &m_, sizeof f_);                                               \
        f_ *= 0x1p112f;                                                            \
        memcpy(&m_, &f_, sizeof m_);                                               \
        m_ |= s_;                                                                  \
        memcpy(&(v), &m_, sizeof m_);                                              \
    } while (0)
#define PK_LOAD_F16_AVX2(v, p) ((v) = (pk_v8)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p))))
#define PK_LOAD_F16_AVX512(v, p) ((v) = (pk_v16)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p))))
#define PK_LOAD_BF16_AVX2(v, p) \
    ((v) = (pk_v8)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define PK_LOAD_BF16_AVX512(v, p) \
    ((v) = (pk_v16)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))

/* The copies: path x panel type. The baseline's vectors are SSE's width, so that its 12
 * sums and the panel row fit the 16 registers. */
#define PK_V pk_v4
#define PK_VL 4
#define PK_TMR 4
#define PK_ELEM float
#define PK_LOAD PK_LOAD_F32
#define PK_FN(name) pk_##name##_base
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#define PK_ELEM uint16_t
#define PK_LOAD PK_LOAD_BF16_4
#define PK_FN(name) pk_##name##_base16
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#define PK_ELEM uint16_t
#define PK_LOAD PK_LOAD_F16_4
#define PK_FN(name) pk_##name##_base_f16
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PK_X86 1
#include <immintrin.h>
#undef PK_V
#undef PK_VL
#define PK_V pk_v8
#define PK_VL 8
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#define PK_ELEM float
#define PK_LOAD PK_LOAD_F32
#define PK_FN(name) pk_##name##_avx2
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#define PK_ELEM uint16_t
#define PK_LOAD PK_LOAD_BF16_AVX2
#define PK_FN(name) pk_##name##_avx2_16
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#pragma GCC target("avx2,fma,f16c")
#define PK_ELEM uint16_t
#define PK_LOAD PK_LOAD_F16_AVX2
#define PK_FN(name) pk_##name##_avx2_f16
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#pragma GCC pop_options
#undef PK_V
#undef PK_VL
#undef PK_TMR
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#define PK_V pk_v16
#define PK_VL 16
#define PK_TMR 8
#define PK_ELEM float
#define PK_LOAD PK_LOAD_F32
#define PK_FN(name) pk_##name##_avx512
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#define PK_ELEM uint16_t
#define PK_LOAD PK_LOAD_BF16_AVX512
#define PK_FN(name) pk_##name##_avx512_16
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#define PK_ELEM uint16_t
#define PK_LOAD PK_LOAD_F16_AVX512
#define PK_FN(name) pk_##name##_avx512_f16
#include "packed_kernel.h"
#undef PK_FN
#undef PK_ELEM
#undef PK_LOAD
#pragma GCC pop_options
#else
#define PK_X86 0
#endif

/* The narrowest exact storage of w (n): bf16 when the low 16 bits of every f32 are zero,
 * f16 when every value is finite and survives the round trip through f16, else f32. */
static nn_pk_dtype exact_dtype(const float *w, size_t n) {
    int bf16 = 1, f16 = 1;
    for (size_t i = 0; i < n && (bf16 || f16); i++) {
        uint32_t u, back;
        memcpy(&u, &w[i], sizeof u);
        if (u & 0xffffu) bf16 = 0;
        if (f16) {
            float r = t2i_f16_to_f32(t2i_f32_to_f16(w[i]));
            memcpy(&back, &r, sizeof back);
            if (back != u || (u & 0x7f800000u) == 0x7f800000u) f16 = 0;
        }
    }
    return bf16 ? NN_PK_BF16 : f16 ? NN_PK_F16 : NN_PK_F32;
}

void nn_pack_weights(nn_packed *p, const float *w, int N, int K) {
    T2I_ASSERT(N > 0 && K > 0);
    p->N = N, p->K = K, p->np = (N + PK_NR - 1) / PK_NR;
    size_t n = (size_t)p->np * K * PK_NR;
    p->dtype = exact_dtype(w, (size_t)N * K);
    int half = p->dtype != NN_PK_F32;
    p->w = half ? NULL : t2i_malloc_aligned(n * sizeof(float));
    p->w16 = half ? t2i_malloc_aligned(n * sizeof(uint16_t)) : NULL;
    for (int pi = 0; pi < p->np; pi++) {
        size_t base = (size_t)pi * K * PK_NR;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < PK_NR; j++) {
                int col = pi * PK_NR + j;
                float v = col < N ? w[(size_t)col * K + k] : 0.0f;
                size_t at = base + (size_t)k * PK_NR + j;
                if (p->dtype == NN_PK_BF16) {
                    uint32_t u;
                    memcpy(&u, &v, sizeof u);
                    p->w16[at] = (uint16_t)(u >> 16);
                } else if (p->dtype == NN_PK_F16) {
                    p->w16[at] = t2i_f32_to_f16(v);
                } else {
                    p->w[at] = v;
                }
            }
    }
}

void nn_packed_free(nn_packed *p) {
    if (!p) return;
    t2i_free(p->w);
    t2i_free(p->w16);
    memset(p, 0, sizeof *p);
}

void nn_packed_gemm(float *out, const float *in, const nn_packed *p, const float *bias, int M, int accumulate) {
    if (M <= 0) return;
#if PK_X86
    t2i_cpu_level l = t2i_cpu_path();
    if (l >= T2I_CPU_AVX512) {
        if (p->dtype == NN_PK_BF16) pk_gemm_avx512_16(out, in, p, p->w16, bias, M, accumulate);
        else if (p->dtype == NN_PK_F16) pk_gemm_avx512_f16(out, in, p, p->w16, bias, M, accumulate);
        else pk_gemm_avx512(out, in, p, p->w, bias, M, accumulate);
        return;
    }
    if (l >= T2I_CPU_AVX2 && (p->dtype != NN_PK_F16 || __builtin_cpu_supports("f16c"))) {
        if (p->dtype == NN_PK_BF16) pk_gemm_avx2_16(out, in, p, p->w16, bias, M, accumulate);
        else if (p->dtype == NN_PK_F16) pk_gemm_avx2_f16(out, in, p, p->w16, bias, M, accumulate);
        else pk_gemm_avx2(out, in, p, p->w, bias, M, accumulate);
        return;
    }
#endif
    if (p->dtype == NN_PK_BF16) pk_gemm_base16(out, in, p, p->w16, bias, M, accumulate);
    else if (p->dtype == NN_PK_F16) pk_gemm_base_f16(out, in, p, p->w16, bias, M, accumulate);
    else pk_gemm_base(out, in, p, p->w, bias, M, accumulate);
}
