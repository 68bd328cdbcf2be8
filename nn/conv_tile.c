/* conv_tile.c - the register-tile kernels of the convolutions (ops_conv.c), one per CPU
 * path (base.h: t2i_cpu_path), all computing the same thing:
 *
 *   C (mr x nr, row-major) = (acc ? C : 0) + sum over k < kc of  A[k*mr + r] * B[k*ldb + j]
 *
 * A is a packed panel (lda 0: for each k, mr values, one per row of C) or mr rows read in
 * place (lda > 0: A[r*lda + k]; the rows must exist); B holds nr columns of kc
 * rows, rows ldb floats apart (ldb = nr for a packed panel, or the width of an im2col
 * block read in place). C is a scratch tile of the caller's (acc lets it be summed over
 * blocks of k that fit in L1); the caller adds it where it belongs. Each path
 * keeps the whole tile in registers through the k loop and reads each B row once:
 *   avx512  8 x 32: 16 zmm accumulators, 2 loads and 8 broadcasts per k;
 *   avx2    6 x 16: 12 ymm accumulators, 2 loads and 6 broadcasts per k;
 *   baseline 4 x 8: plain loops (SSE2 after gcc's vectoriser).
 * The sums run over k in order with one fused multiply-add per term on the AVX paths, so
 * the paths differ from one another by rounding alone. */
#include <string.h>

#include "conv_tile.h"

static void tile_base(int kc, const float *restrict A, size_t lda, const float *restrict B, size_t ldb,
                      float *restrict C, int acc) {
    float c[4][8];
    if (acc) memcpy(c, C, sizeof c);
    else memset(c, 0, sizeof c);
    size_t rs = lda ? lda : 1, ks = lda ? 1 : 4; /* A[r*rs + k*ks] */
    for (int k = 0; k < kc; k++, A += ks, B += ldb)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) c[r][j] += A[r * rs] * B[j];
    memcpy(C, c, sizeof c);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define TILE_X86 1

__attribute__((target("avx2,fma"))) static void tile_avx2(int kc, const float *restrict A, size_t lda,
                                                          const float *restrict B, size_t ldb, float *restrict C,
                                                          int acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    if (acc) {
#define LOAD(r) c##r##0 = _mm256_loadu_ps(C + r * 16), c##r##1 = _mm256_loadu_ps(C + r * 16 + 8);
        LOAD(0) LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5)
#undef LOAD
    }
#define ROW(r, at)                                                                                                     \
    a = _mm256_broadcast_ss(at);                                                                                       \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                                                                         \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);
    if (!lda) {
        for (int k = 0; k < kc; k++, A += 6, B += ldb) {
            __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8), a;
            ROW(0, A) ROW(1, A + 1) ROW(2, A + 2) ROW(3, A + 3) ROW(4, A + 4) ROW(5, A + 5)
        }
    } else {
        const float *a0 = A, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda, *a4 = a3 + lda, *a5 = a4 + lda;
        for (int k = 0; k < kc; k++, B += ldb) {
            __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8), a;
            ROW(0, a0 + k) ROW(1, a1 + k) ROW(2, a2 + k) ROW(3, a3 + k) ROW(4, a4 + k) ROW(5, a5 + k)
        }
    }
#undef ROW
#define STORE(r) _mm256_storeu_ps(C + r * 16, c##r##0), _mm256_storeu_ps(C + r * 16 + 8, c##r##1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
#undef STORE
}

__attribute__((target("avx512f"))) static void tile_avx512(int kc, const float *restrict A, size_t lda,
                                                           const float *restrict B, size_t ldb, float *restrict C,
                                                           int acc) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    if (acc) {
#define LOAD(r) c##r##0 = _mm512_loadu_ps(C + r * 32), c##r##1 = _mm512_loadu_ps(C + r * 32 + 16);
        LOAD(0) LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5) LOAD(6) LOAD(7)
#undef LOAD
    }
#define ROW(r, at)                                                                                                     \
    a = _mm512_set1_ps(at);                                                                                            \
    c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                                                                         \
    c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);
    if (!lda) {
        for (int k = 0; k < kc; k++, A += 8, B += ldb) {
            __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16), a;
            ROW(0, A[0]) ROW(1, A[1]) ROW(2, A[2]) ROW(3, A[3]) ROW(4, A[4]) ROW(5, A[5]) ROW(6, A[6]) ROW(7, A[7])
        }
    } else {
        const float *a0 = A, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda, *a4 = a3 + lda, *a5 = a4 + lda,
                    *a6 = a5 + lda, *a7 = a6 + lda;
        for (int k = 0; k < kc; k++, B += ldb) {
            __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16), a;
            ROW(0, a0[k]) ROW(1, a1[k]) ROW(2, a2[k]) ROW(3, a3[k]) ROW(4, a4[k]) ROW(5, a5[k]) ROW(6, a6[k])
            ROW(7, a7[k])
        }
    }
#undef ROW
#define STORE(r) _mm512_storeu_ps(C + r * 32, c##r##0), _mm512_storeu_ps(C + r * 32 + 16, c##r##1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7)
#undef STORE
}
#else
#define TILE_X86 0
#endif

static const nn_tile_kernel kernels[] = {
    {4, 8, T2I_CPU_BASELINE, tile_base},
#if TILE_X86
    {6, 16, T2I_CPU_AVX2, tile_avx2},
    {8, 32, T2I_CPU_AVX512, tile_avx512},
#endif
};

const nn_tile_kernel *nn_tile_kernel_get(void) {
    t2i_cpu_level l = t2i_cpu_path();
    const nn_tile_kernel *best = &kernels[0];
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i].level <= l) best = &kernels[i];
    return best;
}
