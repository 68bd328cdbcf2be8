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

const void *nn_kernel_for_path(const void *table, size_t n, size_t size, size_t level_at) {
    t2i_cpu_level l = t2i_cpu_path(), at;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(&at, (const char *)table + i * size + level_at, sizeof at);
        if (at <= l) best = i;
    }
    return (const char *)table + best * size;
}

static const nn_tile_kernel kernels[] = {
    {4, 8, T2I_CPU_BASELINE, tile_base},
#if TILE_X86
    {6, 16, T2I_CPU_AVX2, tile_avx2},
    {8, 32, T2I_CPU_AVX512, tile_avx512},
#endif
};

const nn_tile_kernel *nn_tile_kernel_get(void) { return NN_KERNEL_FOR_PATH(kernels, nn_tile_kernel); }

/* ------------------------------------------------------------------ gathered tiles
 *
 * The tiles above with A read through row pointers and an offset table (conv_tile.h:
 * nn_gather_kernel): each k costs one more scalar load (the offset), and each broadcast
 * reads a[r] + off[k]. Same shapes per path: avx512 8 x 32, avx2 6 x 16, baseline 4 x 8. */

/* Each kernel is written once with B's row k at B + k*nr, or (sel) at B + bk[k]: the
 * second form takes a subset of a packed panel's rows (the taps that are not padding). */
static inline void gather_base_impl(int kc, const float *const *a, const int *off, const int *bk,
                                    const float *restrict B, float *restrict C, int sel) {
    float c[4][8];
    memset(c, 0, sizeof c);
    for (int k = 0; k < kc; k++) {
        const float *b = sel ? B + bk[k] : B + (size_t)k * 8;
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) c[r][j] += a[r][off[k]] * b[j];
    }
    memcpy(C, c, sizeof c);
}

static void gather_base(int kc, const float *const *a, const int *off, const float *restrict B, float *restrict C) {
    gather_base_impl(kc, a, off, NULL, B, C, 0);
}

static void gather_sel_base(int kc, const float *const *a, const int *off, const int *bk, const float *restrict B,
                            float *restrict C) {
    gather_base_impl(kc, a, off, bk, B, C, 1);
}

#if TILE_X86
__attribute__((target("avx2,fma"), always_inline)) static inline void
gather_avx2_impl(int kc, const float *const *a, const int *off, const int *bk, const float *restrict B,
                 float *restrict C, int sel) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
#define ROW(r)                                                                                                         \
    x = _mm256_broadcast_ss(a##r + o);                                                                                 \
    c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                                                                         \
    c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);
    for (int k = 0; k < kc; k++) {
        int o = off[k];
        const float *b = sel ? B + bk[k] : B + (size_t)k * 16;
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
    }
#undef ROW
#define STORE(r) _mm256_storeu_ps(C + r * 16, c##r##0), _mm256_storeu_ps(C + r * 16 + 8, c##r##1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
#undef STORE
}

__attribute__((target("avx2,fma"))) static void gather_avx2(int kc, const float *const *a, const int *off,
                                                            const float *restrict B, float *restrict C) {
    gather_avx2_impl(kc, a, off, NULL, B, C, 0);
}

__attribute__((target("avx2,fma"))) static void gather_sel_avx2(int kc, const float *const *a, const int *off,
                                                                const int *bk, const float *restrict B,
                                                                float *restrict C) {
    gather_avx2_impl(kc, a, off, bk, B, C, 1);
}

__attribute__((target("avx512f"), always_inline)) static inline void
gather_avx512_impl(int kc, const float *const *a, const int *off, const int *bk, const float *restrict B,
                   float *restrict C, int sel) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
#define ROW(r)                                                                                                         \
    x = _mm512_set1_ps(a##r[o]);                                                                                       \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                                                                         \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);
    for (int k = 0; k < kc; k++) {
        int o = off[k];
        const float *b = sel ? B + bk[k] : B + (size_t)k * 32;
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), x;
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
    }
#undef ROW
#define STORE(r) _mm512_storeu_ps(C + r * 32, c##r##0), _mm512_storeu_ps(C + r * 32 + 16, c##r##1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7)
#undef STORE
}

__attribute__((target("avx512f"))) static void gather_avx512(int kc, const float *const *a, const int *off,
                                                             const float *restrict B, float *restrict C) {
    gather_avx512_impl(kc, a, off, NULL, B, C, 0);
}

__attribute__((target("avx512f"))) static void gather_sel_avx512(int kc, const float *const *a, const int *off,
                                                                 const int *bk, const float *restrict B,
                                                                 float *restrict C) {
    gather_avx512_impl(kc, a, off, bk, B, C, 1);
}
#endif

/* Transposed writes of a tile (conv_tile.h: nn_gather_kernel.put): a channel's values of
 * the tile's rows (pixels, or taps of the weight gradient) lie ds apart in the
 * destination, in runs. The baseline and avx2 paths write them one by one; avx512
 * transposes its 8 x 32 tile in registers, 16 channels at a time, and writes each
 * channel's values of a run as one vector under the mask of its rows (at ds 2 spread over
 * the even lanes of 16; a larger ds one by one). Copies and one addition per value: the
 * paths write the same values. */
static inline void put_scalar(const float *C, int nr, int runs, const int *ra, float *const *o, int n, size_t cs,
                              int ds, const float *bias, int add) {
    for (int e = 0; e < runs; e++)
        for (int j = 0; j < n; j++) {
            float *d = o[e] + (size_t)j * cs, bv = bias ? bias[j] : 0.0f;
            if (add)
                for (int r = ra[e]; r < ra[e + 1]; r++) d[(size_t)r * ds] += C[r * nr + j];
            else
                for (int r = ra[e]; r < ra[e + 1]; r++) d[(size_t)r * ds] = C[r * nr + j] + bv;
        }
}

static void put_base(const float *C, int runs, const int *ra, float *const *o, int n, size_t cs, int ds,
                     const float *bias, int add) {
    put_scalar(C, 8, runs, ra, o, n, cs, ds, bias, add);
}

/* put2 one tile after the other: the same additions. */
static inline void put2_scalar(const float *C0, const float *C1, int nr, int runs, const int *ra, float *const *o,
                               int n, size_t cs) {
    float *o1[NN_TILE_MAX_MR + 1];
    for (int e = 0; e < runs; e++) o1[e] = o[e] + 1;
    put_scalar(C0, nr, runs, ra, o, n, cs, 2, NULL, 1);
    put_scalar(C1, nr, runs, ra, o1, n, cs, 2, NULL, 1);
}

static void put2_base(const float *C0, const float *C1, int runs, const int *ra, float *const *o, int n, size_t cs) {
    put2_scalar(C0, C1, 8, runs, ra, o, n, cs);
}

#if TILE_X86
static void put_avx2(const float *C, int runs, const int *ra, float *const *o, int n, size_t cs, int ds,
                     const float *bias, int add) {
    put_scalar(C, 16, runs, ra, o, n, cs, ds, bias, add);
}

static void put2_avx2(const float *C0, const float *C1, int runs, const int *ra, float *const *o, int n, size_t cs) {
    put2_scalar(C0, C1, 16, runs, ra, o, n, cs);
}

/* The 8 x 16 block of columns 16h .. 16h+15 of an avx512 tile, transposed: v[ch] = the 8
 * rows of column 16h + ch (see put_avx512). */
__attribute__((target("avx512f,avx512vl,avx512dq"), always_inline)) static inline void
transpose_8x16(const float *C, int h, __m256 *v) {
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    __m512 R[8], t[8], u[8];
    for (int r = 0; r < 8; r++) R[r] = _mm512_loadu_ps(C + r * 32 + 16 * h);
    for (int r = 0; r < 8; r += 2)
        t[r] = _mm512_unpacklo_ps(R[r], R[r + 1]), t[r + 1] = _mm512_unpackhi_ps(R[r], R[r + 1]);
    for (int g = 0; g < 8; g += 4) {
        u[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        __m512 x0 = _mm512_permutex2var_ps(u[q], lo, u[4 + q]), x1 = _mm512_permutex2var_ps(u[q], hi, u[4 + q]);
        v[q] = _mm512_castps512_ps256(x0), v[4 + q] = _mm512_extractf32x8_ps(x0, 1);
        v[8 + q] = _mm512_castps512_ps256(x1), v[12 + q] = _mm512_extractf32x8_ps(x1, 1);
    }
}

/* Both tiles transposed, each column's 8 + 8 values interleaved into 16 consecutive
 * floats and added under the mask of the run's rows: one vector per column and run where
 * put at ds 2 adds two. */
__attribute__((target("avx512f,avx512vl,avx512dq"))) static void put2_avx512(const float *C0, const float *C1, int runs,
                                                                               const int *ra, float *const *o, int n,
                                                                               size_t cs) {
    const __m512i mix = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    __mmask16 lanes[NN_TILE_MAX_MR];
    for (int e = 0; e < runs; e++)
        lanes[e] = (__mmask16)(((1u << 2 * ra[e + 1]) - 1) & ~((1u << 2 * ra[e]) - 1));
    for (int h = 0; h < 2 && n > 16 * h; h++) {
        const int nh = T2I_MIN(16, n - 16 * h);
        __m256 v0[16], v1[16];
        transpose_8x16(C0, h, v0), transpose_8x16(C1, h, v1);
        for (int ch = 0; ch < nh; ch++) {
            __m512 w = _mm512_permutex2var_ps(_mm512_castps256_ps512(v0[ch]), mix, _mm512_castps256_ps512(v1[ch]));
            for (int e = 0; e < runs; e++) {
                float *d = o[e] + (size_t)(16 * h + ch) * cs;
                _mm512_mask_storeu_ps(d, lanes[e], _mm512_add_ps(_mm512_maskz_loadu_ps(lanes[e], d), w));
            }
        }
    }
}

__attribute__((target("avx512f,avx512vl,avx512dq"))) static void put_avx512(const float *C, int runs, const int *ra,
                                                                              float *const *o, int n, size_t cs,
                                                                              int ds, const float *bias, int add) {
    if (ds > 2) {
        put_scalar(C, 32, runs, ra, o, n, cs, ds, bias, add);
        return;
    }
    __mmask8 rows[NN_TILE_MAX_MR];
    __mmask16 even[NN_TILE_MAX_MR];
    for (int e = 0; e < runs; e++) {
        rows[e] = (__mmask8)(((1u << ra[e + 1]) - 1) & ~((1u << ra[e]) - 1));
        even[e] = (__mmask16)((((1u << 2 * ra[e + 1]) - 1) & ~((1u << 2 * ra[e]) - 1)) & 0x5555u);
    }
    const __m512i twice = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    /* after the first two steps, u[q] holds in its 128-bit lane L rows 0-3 of channel
     * 4L + q and u[4 + q] rows 4-7; the last step pairs those lanes: x0 = channels q and
     * 4 + q, x1 = channels 8 + q and 12 + q, rows 0-7 each */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int h = 0; h < 2 && n > 16 * h; h++) {
        const int nh = T2I_MIN(16, n - 16 * h);
        __m512 R[8], t[8], u[8];
        for (int r = 0; r < 8; r++) R[r] = _mm512_loadu_ps(C + r * 32 + 16 * h);
        if (!add) {
            __m512 bv = bias ? _mm512_maskz_loadu_ps((__mmask16)((1u << nh) - 1), bias + 16 * h) : _mm512_setzero_ps();
            for (int r = 0; r < 8; r++) R[r] = _mm512_add_ps(R[r], bv);
        }
        for (int r = 0; r < 8; r += 2)
            t[r] = _mm512_unpacklo_ps(R[r], R[r + 1]), t[r + 1] = _mm512_unpackhi_ps(R[r], R[r + 1]);
        for (int g = 0; g < 8; g += 4) {
            u[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
            u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
            u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
            u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
        }
        __m256 v[16];
        for (int q = 0; q < 4; q++) {
            __m512 x0 = _mm512_permutex2var_ps(u[q], lo, u[4 + q]), x1 = _mm512_permutex2var_ps(u[q], hi, u[4 + q]);
            v[q] = _mm512_castps512_ps256(x0), v[4 + q] = _mm512_extractf32x8_ps(x0, 1);
            v[8 + q] = _mm512_castps512_ps256(x1), v[12 + q] = _mm512_extractf32x8_ps(x1, 1);
        }
        for (int e = 0; e < runs; e++) {
            float *oh = o[e] + (size_t)16 * h * cs;
            for (int ch = 0; ch < nh; ch++) {
                float *d = oh + (size_t)ch * cs;
                if (ds == 1 && rows[e] == 0xFF) {
                    _mm256_storeu_ps(d, add ? _mm256_add_ps(_mm256_loadu_ps(d), v[ch]) : v[ch]);
                } else if (ds == 1) {
                    __m256 w = add ? _mm256_add_ps(_mm256_maskz_loadu_ps(rows[e], d), v[ch]) : v[ch];
                    _mm256_mask_storeu_ps(d, rows[e], w);
                } else {
                    __m512 w = _mm512_permutexvar_ps(twice, _mm512_castps256_ps512(v[ch]));
                    if (add) w = _mm512_add_ps(_mm512_maskz_loadu_ps(even[e], d), w);
                    _mm512_mask_storeu_ps(d, even[e], w);
                }
            }
        }
    }
}
#endif

static const nn_gather_kernel gather_kernels[] = {
    {4, 8, T2I_CPU_BASELINE, gather_base, gather_sel_base, put_base, put2_base},
#if TILE_X86
    {6, 16, T2I_CPU_AVX2, gather_avx2, gather_sel_avx2, put_avx2, put2_avx2},
    {8, 32, T2I_CPU_AVX512, gather_avx512, gather_sel_avx512, put_avx512, put2_avx512},
#endif
};

const nn_gather_kernel *nn_gather_kernel_get(void) { return NN_KERNEL_FOR_PATH(gather_kernels, nn_gather_kernel); }

/* ------------------------------------------------------------------ dot-product blocks
 *
 * S (ra x rb) = row-by-row dot products over segments (conv_tile.h: nn_dot_kernel). Each
 * pair keeps one vector of partial sums (lane l sums the positions p = l mod lanes of every
 * segment; a last partial vector is read under a mask), added across lanes at the end:
 *   avx512  4 x 6: 24 zmm sums, 4 + 6 loads per 24 fused multiply-adds;
 *   avx2    3 x 4: 12 ymm sums, 3 + 4 loads per 12;
 *   baseline 2 x 4: 8 lanes in plain loops (vectorised by gcc). */

static void dot_base(int nseg, int len, const float *const *A, size_t sa, const float *const *B, size_t sb,
                     float *S) {
    float c[2][4][8];
    memset(c, 0, sizeof c);
    for (int g = 0; g < nseg; g++) {
        const float *a[2], *b[4];
        for (int i = 0; i < 2; i++) a[i] = A[i] + (size_t)g * sa;
        for (int j = 0; j < 4; j++) b[j] = B[j] + (size_t)g * sb;
        int p = 0;
        for (; p + 8 <= len; p += 8)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 4; j++)
                    for (int l = 0; l < 8; l++) c[i][j][l] += a[i][p + l] * b[j][p + l];
        for (int l = 0; p + l < len; l++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 4; j++) c[i][j][l] += a[i][p + l] * b[j][p + l];
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            float s = 0.0f;
            for (int l = 0; l < 8; l++) s += c[i][j][l];
            S[i * 4 + j] = s;
        }
}

#if TILE_X86
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

__attribute__((target("avx2,fma"))) static void dot_avx2(int nseg, int len, const float *const *A, size_t sa,
                                                         const float *const *B, size_t sb, float *S) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    const int full = len & ~7;
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(len & 7), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#define COL(j, y) c0##j = _mm256_fmadd_ps(x0, y, c0##j), c1##j = _mm256_fmadd_ps(x1, y, c1##j), \
                  c2##j = _mm256_fmadd_ps(x2, y, c2##j);
    for (int g = 0; g < nseg; g++) {
        const float *a0 = A[0] + (size_t)g * sa, *a1 = A[1] + (size_t)g * sa, *a2 = A[2] + (size_t)g * sa;
        const float *b0 = B[0] + (size_t)g * sb, *b1 = B[1] + (size_t)g * sb, *b2 = B[2] + (size_t)g * sb,
                    *b3 = B[3] + (size_t)g * sb;
        for (int p = 0; p < full; p += 8) {
            __m256 x0 = _mm256_loadu_ps(a0 + p), x1 = _mm256_loadu_ps(a1 + p), x2 = _mm256_loadu_ps(a2 + p), y;
            y = _mm256_loadu_ps(b0 + p);
            COL(0, y) y = _mm256_loadu_ps(b1 + p);
            COL(1, y) y = _mm256_loadu_ps(b2 + p);
            COL(2, y) y = _mm256_loadu_ps(b3 + p);
            COL(3, y)
        }
        if (len & 7) {
            int p = full;
            __m256 x0 = _mm256_maskload_ps(a0 + p, tail), x1 = _mm256_maskload_ps(a1 + p, tail);
            __m256 x2 = _mm256_maskload_ps(a2 + p, tail), y;
            y = _mm256_maskload_ps(b0 + p, tail);
            COL(0, y) y = _mm256_maskload_ps(b1 + p, tail);
            COL(1, y) y = _mm256_maskload_ps(b2 + p, tail);
            COL(2, y) y = _mm256_maskload_ps(b3 + p, tail);
            COL(3, y)
        }
    }
#undef COL
#define OUT(i) S[i * 4] = hsum256(c##i##0), S[i * 4 + 1] = hsum256(c##i##1), S[i * 4 + 2] = hsum256(c##i##2), \
               S[i * 4 + 3] = hsum256(c##i##3);
    OUT(0) OUT(1) OUT(2)
#undef OUT
}

__attribute__((target("avx512f"))) static void dot_avx512(int nseg, int len, const float *const *A, size_t sa,
                                                          const float *const *B, size_t sb, float *S) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c04 = c00, c05 = c00;
    __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00, c15 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c24 = c00, c25 = c00;
    __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00, c34 = c00, c35 = c00;
    const int full = len & ~15;
    const __mmask16 tail = (__mmask16)((1u << (len & 15)) - 1);
#define COL(j, y) c0##j = _mm512_fmadd_ps(x0, y, c0##j), c1##j = _mm512_fmadd_ps(x1, y, c1##j), \
                  c2##j = _mm512_fmadd_ps(x2, y, c2##j), c3##j = _mm512_fmadd_ps(x3, y, c3##j);
#define STEP(LOAD)                                                                                   \
    {                                                                                                \
        __m512 x0 = LOAD(a0), x1 = LOAD(a1), x2 = LOAD(a2), x3 = LOAD(a3), y;                        \
        y = LOAD(b0);                                                                                \
        COL(0, y) y = LOAD(b1);                                                                      \
        COL(1, y) y = LOAD(b2);                                                                      \
        COL(2, y) y = LOAD(b3);                                                                      \
        COL(3, y) y = LOAD(b4);                                                                      \
        COL(4, y) y = LOAD(b5);                                                                      \
        COL(5, y)                                                                                    \
    }
#define FULL(r) _mm512_loadu_ps(r + p)
#define PART(r) _mm512_maskz_loadu_ps(tail, r + p)
    for (int g = 0; g < nseg; g++) {
        const float *a0 = A[0] + (size_t)g * sa, *a1 = A[1] + (size_t)g * sa, *a2 = A[2] + (size_t)g * sa,
                    *a3 = A[3] + (size_t)g * sa;
        const float *b0 = B[0] + (size_t)g * sb, *b1 = B[1] + (size_t)g * sb, *b2 = B[2] + (size_t)g * sb,
                    *b3 = B[3] + (size_t)g * sb, *b4 = B[4] + (size_t)g * sb, *b5 = B[5] + (size_t)g * sb;
        int p = 0;
        for (; p < full; p += 16) STEP(FULL)
        if (tail) STEP(PART)
    }
#undef FULL
#undef PART
#undef STEP
#undef COL
#define OUT(i)                                                                                                \
    S[i * 6] = _mm512_reduce_add_ps(c##i##0), S[i * 6 + 1] = _mm512_reduce_add_ps(c##i##1),                   \
    S[i * 6 + 2] = _mm512_reduce_add_ps(c##i##2), S[i * 6 + 3] = _mm512_reduce_add_ps(c##i##3),               \
    S[i * 6 + 4] = _mm512_reduce_add_ps(c##i##4), S[i * 6 + 5] = _mm512_reduce_add_ps(c##i##5);
    OUT(0) OUT(1) OUT(2) OUT(3)
#undef OUT
}
#endif

static const nn_dot_kernel dot_kernels[] = {
    {2, 4, T2I_CPU_BASELINE, dot_base},
#if TILE_X86
    {3, 4, T2I_CPU_AVX2, dot_avx2},
    {4, 6, T2I_CPU_AVX512, dot_avx512},
#endif
};

const nn_dot_kernel *nn_dot_kernel_get(void) { return NN_KERNEL_FOR_PATH(dot_kernels, nn_dot_kernel); }

/* ------------------------------------------------------------------ im2col from a padded plane
 *
 * Rows of OW values at stride 1 or 2 (conv_tile.h: nn_im2col_fn). The planes of the
 * benchmarks are small (OW of 7 to 32), so a row is one or two vectors: the AVX paths load
 * whole vectors (stride 2: two, of which the even lanes are kept) and store under a mask,
 * with no per-row bounds logic; the baseline copies. Copies only: every path gives the
 * same values. */

static void im2col_base(float *col, size_t ld, const float *pad, int PW, int KH, int KW, int stride, int rows,
                        int OW) {
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            float *row = col + (size_t)(kh * KW + kw) * ld;
            for (int oh = 0; oh < rows; oh++) {
                const float *src = pad + (size_t)(oh * stride + kh) * PW + kw;
                float *dst = row + (size_t)oh * OW;
                if (stride == 1) memcpy(dst, src, (size_t)OW * sizeof(float));
                else
                    for (int ow = 0; ow < OW; ow++) dst[ow] = src[ow * stride];
            }
        }
}

#if TILE_X86
__attribute__((target("avx2,fma"))) static void im2col_avx2(float *col, size_t ld, const float *pad, int PW, int KH,
                                                            int KW, int stride, int rows, int OW) {
    if (stride > 2) {
        im2col_base(col, ld, pad, PW, KH, KW, stride, rows, OW);
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            float *row = col + (size_t)(kh * KW + kw) * ld;
            for (int oh = 0; oh < rows; oh++) {
                const float *src = pad + (size_t)(oh * stride + kh) * PW + kw;
                float *dst = row + (size_t)oh * OW;
                for (int j = 0; j < OW; j += 8) {
                    __m256 v;
                    if (stride == 1) {
                        v = _mm256_loadu_ps(src + j);
                    } else { /* even lanes of 16: [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in order */
                        __m256 a = _mm256_loadu_ps(src + 2 * j), b = _mm256_loadu_ps(src + 2 * j + 8);
                        v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
                    }
                    if (OW - j >= 8) _mm256_storeu_ps(dst + j, v);
                    else _mm256_maskstore_ps(dst + j, _mm256_cmpgt_epi32(_mm256_set1_epi32(OW - j), lane), v);
                }
            }
        }
}

__attribute__((target("avx512f"))) static void im2col_avx512(float *col, size_t ld, const float *pad, int PW, int KH,
                                                             int KW, int stride, int rows, int OW) {
    if (stride > 2) {
        im2col_base(col, ld, pad, PW, KH, KW, stride, rows, OW);
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            float *row = col + (size_t)(kh * KW + kw) * ld;
            for (int oh = 0; oh < rows; oh++) {
                const float *src = pad + (size_t)(oh * stride + kh) * PW + kw;
                float *dst = row + (size_t)oh * OW;
                for (int j = 0; j < OW; j += 16) {
                    __m512 v = stride == 1 ? _mm512_loadu_ps(src + j)
                                           : _mm512_permutex2var_ps(_mm512_loadu_ps(src + 2 * j), even,
                                                                    _mm512_loadu_ps(src + 2 * j + 16));
                    _mm512_mask_storeu_ps(dst + j, OW - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (OW - j)) - 1),
                                          v);
                }
            }
        }
}
#endif

nn_im2col_fn nn_im2col_get(void) {
#if TILE_X86
    t2i_cpu_level l = t2i_cpu_path();
    if (l >= T2I_CPU_AVX512) return im2col_avx512;
    if (l >= T2I_CPU_AVX2) return im2col_avx2;
#endif
    return im2col_base;
}

/* ------------------------------------------------------------------ col2im into a padded plane
 *
 * The adjoint of the copies above (conv_tile.h: nn_col2im_fn). At stride 1 the KW taps of
 * one plane row are summed in registers (from 0.0, kw in order) and added to the row once:
 * taps added one by one into memory would store and reload overlapping vectors one float
 * apart, which stalls store-to-load forwarding. At stride 2 each tap is added in turn,
 * a vector's values spread over the even lanes of two (zeros in the odd ones, kept out of
 * memory by the masks). Every path adds in the same order, so the paths agree exactly. */

static void col2im_base(float *pad, const float *col, size_t ld, int PW, int KH, int KW, int stride, int rows,
                        int OW) {
    for (int kh = 0; kh < KH; kh++) {
        if (stride == 1) { /* a row's KW taps summed first, then added once (col2im_s1) */
            for (int oh = 0; oh < rows; oh++) {
                float *dst = pad + (size_t)(oh + kh) * PW;
                const float *src = col + (size_t)kh * KW * ld + (size_t)oh * OW;
                for (int q = 0; q < OW + KW - 1; q++) {
                    float acc = 0.0f;
                    for (int kw = 0; kw < KW; kw++)
                        if (q - kw >= 0 && q - kw < OW) acc += src[(size_t)kw * ld + q - kw];
                    dst[q] += acc;
                }
            }
            continue;
        }
        for (int kw = 0; kw < KW; kw++) {
            const float *row = col + (size_t)(kh * KW + kw) * ld;
            for (int oh = 0; oh < rows; oh++) {
                float *dst = pad + (size_t)(oh * stride + kh) * PW + kw;
                const float *src = row + (size_t)oh * OW;
                for (int ow = 0; ow < OW; ow++) dst[ow * stride] += src[ow];
            }
        }
    }
}

#if TILE_X86
__attribute__((target("avx2,fma"))) static void col2im_avx2(float *pad, const float *col, size_t ld, int PW, int KH,
                                                            int KW, int stride, int rows, int OW) {
    if (stride > 2) {
        col2im_base(pad, col, ld, PW, KH, KW, stride, rows, OW);
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 zero = _mm256_setzero_ps();
    if (stride == 1) {
        for (int kh = 0; kh < KH; kh++)
            for (int oh = 0; oh < rows; oh++) {
                float *dst = pad + (size_t)(oh + kh) * PW;
                const float *src = col + (size_t)kh * KW * ld + (size_t)oh * OW;
                for (int j = 0; j < OW + KW - 1; j += 8) {
                    __m256 acc = zero;
                    for (int kw = 0; kw < KW; kw++) { /* lanes l with 0 <= j + l - kw < OW */
                        __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(OW + kw - j), lane),
                                                     _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(kw - j - 1)));
                        acc = _mm256_add_ps(acc, _mm256_maskload_ps(src + (size_t)kw * ld + j - kw, m));
                    }
                    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(OW + KW - 1 - j), lane);
                    _mm256_maskstore_ps(dst + j, m, _mm256_add_ps(_mm256_maskload_ps(dst + j, m), acc));
                }
            }
        return;
    }
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            const float *row = col + (size_t)(kh * KW + kw) * ld;
            for (int oh = 0; oh < rows; oh++) {
                float *dst = pad + (size_t)(oh * stride + kh) * PW + kw;
                const float *src = row + (size_t)oh * OW;
                for (int j = 0; j < OW; j += 8) {
                    int n = T2I_MIN(8, OW - j);
                    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
                    __m256 v = _mm256_maskload_ps(src + j, m);
                    if (stride == 1) {
                        _mm256_maskstore_ps(dst + j, m, _mm256_add_ps(_mm256_maskload_ps(dst + j, m), v));
                    } else { /* [v0 0 v1 0 v2 0 v3 0], [v4 0 .. v7 0]; 2n - 1 lanes are written */
                        __m256 lo = _mm256_unpacklo_ps(v, zero), hi = _mm256_unpackhi_ps(v, zero);
                        __m256 e0 = _mm256_permute2f128_ps(lo, hi, 0x20), e1 = _mm256_permute2f128_ps(lo, hi, 0x31);
                        __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n - 1), lane);
                        __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n - 9), lane);
                        float *d = dst + 2 * j;
                        _mm256_maskstore_ps(d, m0, _mm256_add_ps(_mm256_maskload_ps(d, m0), e0));
                        _mm256_maskstore_ps(d + 8, m1, _mm256_add_ps(_mm256_maskload_ps(d + 8, m1), e1));
                    }
                }
            }
        }
}

__attribute__((target("avx512f"))) static void col2im_avx512(float *pad, const float *col, size_t ld, int PW, int KH,
                                                             int KW, int stride, int rows, int OW) {
    if (stride > 2) {
        col2im_base(pad, col, ld, PW, KH, KW, stride, rows, OW);
        return;
    }
    if (stride == 1) {
        for (int kh = 0; kh < KH; kh++)
            for (int oh = 0; oh < rows; oh++) {
                float *dst = pad + (size_t)(oh + kh) * PW;
                const float *src = col + (size_t)kh * KW * ld + (size_t)oh * OW;
                for (int j = 0; j < OW + KW - 1; j += 16) {
                    __m512 acc = _mm512_setzero_ps();
                    for (int kw = 0; kw < KW; kw++) { /* lanes l with 0 <= j + l - kw < OW */
                        int lo = T2I_MAX(0, kw - j), hi = T2I_MIN(16, OW + kw - j);
                        __mmask16 m = (__mmask16)(hi > lo ? ((1u << hi) - 1) & ~((1u << lo) - 1) : 0);
                        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, src + (size_t)kw * ld + j - kw));
                    }
                    int n = T2I_MIN(16, OW + KW - 1 - j);
                    __mmask16 m = (__mmask16)((1u << n) - 1);
                    _mm512_mask_storeu_ps(dst + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + j), acc));
                }
            }
        return;
    }
    const __m512i lo_idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi_idx = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            const float *row = col + (size_t)(kh * KW + kw) * ld;
            for (int oh = 0; oh < rows; oh++) {
                float *dst = pad + (size_t)(oh * stride + kh) * PW + kw;
                const float *src = row + (size_t)oh * OW;
                for (int j = 0; j < OW; j += 16) {
                    int n = T2I_MIN(16, OW - j);
                    __mmask16 m = (__mmask16)((1u << n) - 1);
                    __m512 v = _mm512_maskz_loadu_ps(m, src + j);
                    if (stride == 1) {
                        _mm512_mask_storeu_ps(dst + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + j), v));
                    } else { /* v's values at the even lanes of two vectors; lanes < 2n - 1 are written */
                        __m512 e0 = _mm512_maskz_permutexvar_ps(0x5555, lo_idx, v);
                        __m512 e1 = _mm512_maskz_permutexvar_ps(0x5555, hi_idx, v);
                        __mmask16 m0 = (__mmask16)(2 * n - 1 >= 16 ? 0xFFFF : (1u << (2 * n - 1)) - 1);
                        __mmask16 m1 = (__mmask16)(2 * n - 1 <= 16 ? 0 : (1u << (2 * n - 17)) - 1);
                        float *d = dst + 2 * j;
                        _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d), e0));
                        _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d + 16), e1));
                    }
                }
            }
        }
}
#endif

nn_col2im_fn nn_col2im_get(void) {
#if TILE_X86
    t2i_cpu_level l = t2i_cpu_path();
    if (l >= T2I_CPU_AVX512) return col2im_avx512;
    if (l >= T2I_CPU_AVX2) return col2im_avx2;
#endif
    return col2im_base;
}
