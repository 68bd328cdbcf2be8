/* conv_tile.h - register-tile kernels for the convolutions (conv_tile.c; row tiles and
 * transposed copies in conv_rows.c), private to nn/.
 * C (mr x nr) = (acc ? C : 0) + A (packed, mr per k, when lda is 0; else rows lda apart) x B (nr columns, rows ldb apart) over kc terms. */
#ifndef T2I_CONV_TILE_H
#define T2I_CONV_TILE_H

#include <stddef.h>

#include "base.h"

/* The largest tile of any path (scratch tiles are sized by these). */
#define NN_TILE_MAX_MR 8
#define NN_TILE_MAX_NR 32

typedef struct {
    int mr, nr;
    t2i_cpu_level level;
    void (*tile)(int kc, const float *A, size_t lda, const float *B, size_t ldb, float *C, int acc);
} nn_tile_kernel;

/* The kernel of the current path (t2i_cpu_path()). */
const nn_tile_kernel *nn_tile_kernel_get(void);

/* Gathered tiles (an implicit im2col): C (mr x nr, row-major) = sum over k < kc of
 * a[r][off[k]] * B[k*nr + j]. Row r of A is read through its own base pointer a[r] and the
 * offset table off (the same for every row), so a tile's rows can be any output pixels of
 * a zero-padded input, each tap (c, kh, kw) an offset from the pixel's corner; B is a packed
 * panel of nr columns (kc rows of nr). The sum runs over k in order from 0, one fused
 * multiply-add per term on the AVX paths, as in nn_tile_kernel. */
typedef struct {
    int mr, nr;
    t2i_cpu_level level;
    void (*tile)(int kc, const float *const *a, const int *off, const float *B, float *C);
    /* The same with B's row k at B + bk[k] (a subset of a panel's rows, in order): the
     * taps of a tile whose pixels all leave the same taps in the padding, those skipped. */
    void (*tile_sel)(int kc, const float *const *a, const int *off, const int *bk, const float *B, float *C);
    /* A tile's rows written transposed, rows ds apart, in runs: rows ra[e] <= r < ra[e+1]
     * of run e < runs go to o[e] (where row 0 would go, which may lie before the run's
     * first address: only the run's own addresses are touched): for columns j < n,
     * o[e][j*cs + r*ds] = C[r*nr + j] + (bias ? bias[j] : 0), or += C[r*nr + j] when add
     * (bias unused). */
    void (*put)(const float *C, int runs, const int *ra, float *const *o, int n, size_t cs, int ds,
                const float *bias, int add);
    /* Two tiles of the same rows added interleaved, as put with ds 2 would add C0 at o[e]
     * and C1 at o[e] + 1 (the two column phases of a stride-2 backward-data):
     * o[e][j*cs + 2r] += C0[r*nr + j], o[e][j*cs + 2r + 1] += C1[r*nr + j]. */
    void (*put2)(const float *C0, const float *C1, int runs, const int *ra, float *const *o, int n, size_t cs);
} nn_gather_kernel;

/* The row of a kernel table for the current path (t2i_cpu_path()): the table's rows are
 * in ascending level from the baseline, and the last whose level the CPU has is taken.
 * NN_KERNEL_FOR_PATH(table, type) with table an array of a type with a `level` field. */
const void *nn_kernel_for_path(const void *table, size_t n, size_t size, size_t level_at);
#define NN_KERNEL_FOR_PATH(table, type)                                                                 \
    ((const type *)nn_kernel_for_path((table), sizeof(table) / sizeof((table)[0]), sizeof((table)[0]), \
                                      offsetof(type, level)))

/* The gathered kernel of the current path (t2i_cpu_path()). */
const nn_gather_kernel *nn_gather_kernel_get(void);

/* Row tiles (the gathered tiles turned round): for r < m, j < n,
 *   out[r*ldo + j] = sum over k < kc of A[k*mr + r] * x[off[k] + j]  + bias[r] (0 if NULL),
 * or out[r*ldo + j] += that sum when add (bias unused). A is a packed panel of mr rows (kc
 * rows of mr), x a padded input whose nr floats from x + off[k] are readable for every k
 * (also past n): a tile's columns are nr consecutive output pixels of one row at stride 1,
 * its rows output channels, and it is written straight into NCHW. The sum runs over k in
 * order from 0 (one fused multiply-add per term on the AVX paths), the bias added after. */
typedef struct {
    int mr, nr;
    t2i_cpu_level level;
    void (*tile)(int kc, const float *A, const float *x, const int *off, float *out, size_t ldo, int m, int n,
                 const float *bias, int add);
} nn_row_kernel;

/* The row kernel of the current path (t2i_cpu_path()). */
const nn_row_kernel *nn_row_kernel_get(void);

/* Dot-product blocks for a weight gradient with a short side (few taps or few channels):
 *   S[i*rb + j] = sum over g < nseg, p < len of  A[i][g*sa + p] * B[j][g*sb + p]
 * for i < ra, j < rb: ra rows of A and rb rows of B (pointers; a row may repeat), each of
 * nseg segments of len floats, the segments sa (sb) floats apart. The long index p runs in
 * vector lanes, so neither side is packed or transposed. */
typedef struct {
    int ra, rb;
    t2i_cpu_level level;
    void (*dot)(int nseg, int len, const float *const *A, size_t sa, const float *const *B, size_t sb, float *S);
} nn_dot_kernel;

/* The dot kernel of the current path (t2i_cpu_path()). */
const nn_dot_kernel *nn_dot_kernel_get(void);

/* im2col rows of one channel from its zero-padded plane: for each tap (kh, kw), row
 * col + (kh*KW + kw)*ld gets, for output rows oh < rows, the OW values
 * pad[(oh*stride + kh)*PW + kw + ow*stride] at columns oh*OW + ow. The copies are whole
 * vectors: pad must stay readable NN_IM2COL_SLACK floats past the last value read (the
 * extra lanes are never stored). */
#define NN_IM2COL_SLACK 64
typedef void (*nn_im2col_fn)(float *col, size_t ld, const float *pad, int PW, int KH, int KW, int stride, int rows,
                             int OW);

/* The copy of the current path (t2i_cpu_path()). */
nn_im2col_fn nn_im2col_get(void);

/* The adjoint of nn_im2col_fn: pad[(oh*stride + kh)*PW + kw + ow*stride] += the row values,
 * tap by tap in order (kh, kw), rows oh in order. Loads and stores stay inside the values
 * written (under masks), so pad needs no slack. */
typedef void (*nn_col2im_fn)(float *pad, const float *col, size_t ld, int PW, int KH, int KW, int stride, int rows,
                             int OW);

/* The scatter of the current path (t2i_cpu_path()). */
nn_col2im_fn nn_col2im_get(void);

/* A transposed copy: dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols (nothing
 * else written). */
typedef void (*nn_transpose_fn)(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols);

/* The copy of the current path (t2i_cpu_path()). */
nn_transpose_fn nn_transpose_get(void);

#endif
