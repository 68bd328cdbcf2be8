/* conv_rows.c - the row tiles of the convolutions (conv_tile.h: nn_row_kernel) and the
 * transposed copies (nn_transpose_fn), one per CPU path (base.h: t2i_cpu_path), chosen at
 * run time as conv_tile.c's kernels are; that file states the tile conventions. */
#include <string.h>

#include "conv_tile.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define TILE_X86 1
#else
#define TILE_X86 0
#endif

/* ------------------------------------------------------------------ row tiles
 *
 * The gathered tiles turned round (conv_tile.h: nn_row_kernel): the columns are nr
 * consecutive floats of a padded input read at x + off[k] (output pixels along a row, at
 * stride 1), the rows mr output channels broadcast from a packed panel of weights. A
 * channel's pixels are consecutive in NCHW, so the tile goes straight from the registers
 * into its rows (under a mask for a short last panel): no transposed write. The sum runs
 * over k in order from 0 (one fused multiply-add per term on the AVX paths), then the bias
 * is added, as in the im2col road's tiles. Same shapes: avx512 8 x 32, avx2 6 x 16,
 * baseline 4 x 8. */

static void rows_base(int kc, const float *restrict A, const float *x, const int *off, float *out, size_t ldo, int m,
                      int n, const float *bias, int add) {
    float c[4][8];
    memset(c, 0, sizeof c);
    for (int k = 0; k < kc; k++, A += 4) {
        const float *b = x + off[k];
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) c[r][j] += A[r] * b[j];
    }
    for (int r = 0; r < m; r++) {
        float *o = out + (size_t)r * ldo, bv = bias ? bias[r] : 0.0f;
        for (int j = 0; j < n; j++) o[j] = add ? o[j] + c[r][j] : c[r][j] + bv;
    }
}

#if TILE_X86
__attribute__((target("avx2,fma"))) static void rows_avx2(int kc, const float *restrict A, const float *x,
                                                          const int *off, float *out, size_t ldo, int m, int n,
                                                          const float *bias, int add) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define ROW(r)                                                                                                         \
    a = _mm256_broadcast_ss(A + r);                                                                                    \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                                                                         \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);
    for (int k = 0; k < kc; k++, A += 6) {
        const float *b = x + off[k];
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), a;
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
    }
#undef ROW
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
#define PUT(r)                                                                                                         \
    if (r < m) {                                                                                                       \
        float *o = out + (size_t)r * ldo;                                                                              \
        __m256 v0 = c##r##0, v1 = c##r##1;                                                                             \
        if (add) {                                                                                                     \
            v0 = _mm256_add_ps(_mm256_maskload_ps(o, m0), v0);                                                         \
            v1 = _mm256_add_ps(_mm256_maskload_ps(o + 8, m1), v1);                                                     \
        } else {                                                                                                       \
            __m256 bv = _mm256_set1_ps(bias ? bias[r] : 0.0f);                                                         \
            v0 = _mm256_add_ps(v0, bv), v1 = _mm256_add_ps(v1, bv);                                                    \
        }                                                                                                              \
        _mm256_maskstore_ps(o, m0, v0);                                                                                \
        _mm256_maskstore_ps(o + 8, m1, v1);                                                                            \
    }
    PUT(0) PUT(1) PUT(2) PUT(3) PUT(4) PUT(5)
#undef PUT
}

__attribute__((target("avx512f"))) static void rows_avx512(int kc, const float *restrict A, const float *x,
                                                           const int *off, float *out, size_t ldo, int m, int n,
                                                           const float *bias, int add) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
#define ROW(r)                                                                                                         \
    a = _mm512_set1_ps(A[r]);                                                                                          \
    c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                                                                         \
    c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);
    for (int k = 0; k < kc; k++, A += 8) {
        const float *b = x + off[k];
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), a;
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
    }
#undef ROW
    const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
    const __mmask16 m1 = (__mmask16)(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
#define PUT(r)                                                                                                         \
    if (r < m) {                                                                                                       \
        float *o = out + (size_t)r * ldo;                                                                              \
        __m512 v0 = c##r##0, v1 = c##r##1;                                                                             \
        if (add) {                                                                                                     \
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), v0);                                                      \
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), v1);                                                 \
        } else {                                                                                                       \
            __m512 bv = _mm512_set1_ps(bias ? bias[r] : 0.0f);                                                         \
            v0 = _mm512_add_ps(v0, bv), v1 = _mm512_add_ps(v1, bv);                                                    \
        }                                                                                                              \
        _mm512_mask_storeu_ps(o, m0, v0);                                                                              \
        _mm512_mask_storeu_ps(o + 16, m1, v1);                                                                         \
    }
    PUT(0) PUT(1) PUT(2) PUT(3) PUT(4) PUT(5) PUT(6) PUT(7)
#undef PUT
}
#endif

static const nn_row_kernel row_kernels[] = {
    {4, 8, T2I_CPU_BASELINE, rows_base},
#if TILE_X86
    {6, 16, T2I_CPU_AVX2, rows_avx2},
    {8, 32, T2I_CPU_AVX512, rows_avx512},
#endif
};

const nn_row_kernel *nn_row_kernel_get(void) { return NN_KERNEL_FOR_PATH(row_kernels, nn_row_kernel); }

/* ------------------------------------------------------------------ transposed copies
 *
 * conv_tile.h: nn_transpose_fn. avx512 takes blocks of 16 x 16 (rows read, columns
 * written under masks at the edges) and transposes them in registers: pairs of rows
 * interleaved, then groups of four, then 128-bit lanes, 64 shuffles per block. The other
 * paths copy one value at a time. Copies only: the same values on every path. */

static void transpose_base(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

#if TILE_X86
__attribute__((target("avx512f"))) static void transpose_avx512(float *dst, size_t ldd, const float *src,
                                                                size_t lds, int rows, int cols) {
    for (int r0 = 0; r0 < rows; r0 += 16) {
        const int nrow = T2I_MIN(16, rows - r0);
        const __mmask16 wm = (__mmask16)(nrow >= 16 ? 0xFFFF : (1u << nrow) - 1);
        for (int c0 = 0; c0 < cols; c0 += 16) {
            const int ncol = T2I_MIN(16, cols - c0);
            const __mmask16 rm = (__mmask16)(ncol >= 16 ? 0xFFFF : (1u << ncol) - 1);
            __m512 R[16], t[16], u[16];
            for (int r = 0; r < 16; r++)
                R[r] = r < nrow ? _mm512_maskz_loadu_ps(rm, src + (size_t)(r0 + r) * lds + c0) : _mm512_setzero_ps();
            for (int r = 0; r < 16; r += 2)
                t[r] = _mm512_unpacklo_ps(R[r], R[r + 1]), t[r + 1] = _mm512_unpackhi_ps(R[r], R[r + 1]);
            /* u[g + q]: in 128-bit lane L, rows g .. g+3 of column 4L + q */
            for (int g = 0; g < 16; g += 4) {
                u[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
                u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
                u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
                u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
            }
            float *d = dst + (size_t)c0 * ldd + r0;
            for (int q = 0; q < 4; q++) {
                __m512 a = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88), b = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
                __m512 c = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
                __m512 e = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
                const int col[4] = {q, 8 + q, 4 + q, 12 + q};
                const __m512 v[4] = {_mm512_shuffle_f32x4(a, c, 0x88), _mm512_shuffle_f32x4(a, c, 0xDD),
                                     _mm512_shuffle_f32x4(b, e, 0x88), _mm512_shuffle_f32x4(b, e, 0xDD)};
                for (int i = 0; i < 4; i++)
                    if (col[i] < ncol) _mm512_mask_storeu_ps(d + (size_t)col[i] * ldd, wm, v[i]);
            }
        }
    }
}
#endif

nn_transpose_fn nn_transpose_get(void) {
#if TILE_X86
    if (t2i_cpu_path() >= T2I_CPU_AVX512) return transpose_avx512;
#endif
    return transpose_base;
}
