/* winograd.c - 3x3 stride-1 "same" convolution by Winograd's F(2x2, 3x3) algorithm
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
 *
 * Each 2x2 block of output pixels ("tile") is computed from the 4x4 input patch around it:
 *   Y = A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A
 * with g_c the 3x3 kernel of input channel c and d_c the patch. The elementwise product
 * summed over c is, for each of the 16 positions xi of the 4x4 transformed patch, a matrix
 * product: M[xi] (OC, T) = U[xi] (OC, C) x V[xi] (C, T) over the T tiles. 16 GEMMs with
 * 16*OC*C*T multiply-adds replace the direct 36*OC*C*T: 2.25x fewer.
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * The transforms use only additions and halvings, so the result differs from the direct
 * convolution by float rounding alone (a few 1e-7 relative on unit-scale data).
 *
 * Used for inference only (the fast kernels of infer.c); training keeps im2col + GEMM. */
#include <string.h>

#include "base.h"
#include "ops.h"

void nn_winograd_weights(float *U, const float *w, int OC, int C) {
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++) {
            const float *g = w + ((size_t)o * C + c) * 9;
            float t[4][3]; /* G g */
            for (int j = 0; j < 3; j++) {
                float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                t[0][j] = g0;
                t[1][j] = 0.5f * (g0 + g1 + g2);
                t[2][j] = 0.5f * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                float a = t[i][0], b = t[i][1], cc = t[i][2];
                float u[4] = {a, 0.5f * (a + b + cc), 0.5f * (a - b + cc), cc};
                for (int j = 0; j < 4; j++) U[((size_t)(i * 4 + j) * OC + o) * C + c] = u[j];
            }
        }
}

size_t nn_winograd_scratch(int C, int OC, int W, int nr) {
    size_t T = (size_t)((nr + 1) / 2) * ((W + 1) / 2);
    return 16 * T * ((size_t)C + OC) + 8 * ((size_t)W / 2 + 2) + 16 * ((size_t)W / 2 + 1);
}

/* The transforms, twice: for AVX2 + FMA (chosen at run time when the CPU has them; the
 * portable build targets SSE2 only) and for the baseline. */
#define WINO_FN(name) name##_base
#include "winograd_tx.h"
#undef WINO_FN
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WINO_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define WINO_FN(name) name##_avx2
#include "winograd_tx.h"
#undef WINO_FN
#pragma GCC pop_options
#else
#define WINO_AVX2 0
#endif

typedef void (*wino_in_fn)(float *, const float *, int, int, int, int, int, int, size_t, float *);
typedef void (*wino_out_fn)(float *, size_t, const float *, int, int, int, int, int, size_t, const float *);

void nn_winograd_rows(float *out, size_t ostride, const float *x, int C, int H, int W, const float *U, const float *b,
                      int OC, int r0, int nr, float *scratch) {
    T2I_ASSERT(r0 >= 0 && nr > 0 && r0 + nr <= H);
    int tr = (nr + 1) / 2, tc = (W + 1) / 2;
    size_t T = (size_t)tr * tc;
    float *V = scratch, *M = V + 16 * (size_t)C * T, *rows = M + 16 * (size_t)OC * T;
    wino_in_fn input_rows = input_rows_base;
    wino_out_fn output_rows = output_rows_base;
#if WINO_AVX2
    if (t2i_cpu_avx2_fma()) input_rows = input_rows_avx2, output_rows = output_rows_avx2;
#endif
    input_rows(V, x, C, H, W, r0, tr, tc, T, rows);
    for (int xi = 0; xi < 16; xi++)
        nn_gemm_serial(0, 0, OC, (int)T, C, 1.0f, U + (size_t)xi * OC * C, C, V + (size_t)xi * C * T, (int)T, 0.0f,
                       M + (size_t)xi * OC * T, (int)T);
    output_rows(out, ostride, M, OC, W, nr, tr, tc, T, b);
}
