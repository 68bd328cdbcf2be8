/* ops_conv.c - Conv2d and ConvTranspose2d (ops.h) by blocks of im2col and register tiles.
 *
 * Written as matrix products (Kd = C*KH*KW taps, P = OH*OW output positions per image):
 *   forward          Y_n (OC, P)  = W (OC, Kd) col(X_n) (Kd, P) + b
 *   backward-data    dX_n        += col2im(W^T dY_n)
 *   backward-weights dW (OC, Kd) += sum over n of dY_n col(X_n)^T,   db += sum over n, P of dY
 * ConvTranspose2d is the adjoint of a Conv2d (see its section below) and runs on the same
 * three passes. How the products are blocked, threaded and tiled is described above
 * nn_conv2d_forward; the tile kernels, one per CPU path, are conv_tile.c's. Two shapes take
 * other roads: a 1x1 convolution of stride 1 without padding multiplies NCHW in place
 * (products_per_image; its weight gradient by dot products on the input's planes, or
 * with more than 64 channels by conv_gather.c's tiles reading the input in place), and a
 * weight gradient with a short side (few taps or few channels) runs as dot products over
 * output positions (conv2d_backward_weight_dot). A forward pass with enough taps and
 * channels runs without im2col, by tiles that read the taps from a padded copy of the
 * input through an offset table (conv_gather.c; the same sums less products with padding
 * zeros, so the same values but for the sign of an exact zero), and so
 * does a stride-1 forward pass with few taps (a first layer), by tiles of channels by
 * consecutive pixels (conv_gather.c: row tiles; also the same bits).
 */
#include "ops.h"

#include <string.h>

#include "base.h"
#include "conv_gather.h"
#include "conv_tile.h"

/* ------------------------------------------------------------------ im2col / col2im */

/* Output columns ow whose tap iw = ow*stride - pad + kw falls inside [0, W): [*lo, *hi). */
static inline void tap_range(int W, int OW, int stride, int pad, int kw, int *lo, int *hi) {
    int a = pad - kw; /* need ow*stride >= a */
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = W - 1 + pad - kw; /* need ow*stride <= b */
    int h = b < 0 ? 0 : b / stride + 1;
    if (h > OW) h = OW;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* Columns of one image channel for output rows [oh0, oh1): rows (c, kh, kw) for c fixed,
 * each row ld floats apart, column index (oh - oh0)*OW + ow. Out-of-image taps read 0.
 * The valid span of each row is computed once, so the inner loops carry no bounds tests
 * (stride 1 is a memcpy). */
static void im2col_channel(float *col, size_t ld, const float *img, int H, int W, int KH, int KW,
                           int stride, int pad, int oh0, int oh1, int OW) {
    for (int kh = 0; kh < KH; kh++) {
        for (int kw = 0; kw < KW; kw++) {
            float *row = col + (size_t)(kh * KW + kw) * ld;
            int lo, hi;
            tap_range(W, OW, stride, pad, kw, &lo, &hi);
            for (int oh = oh0; oh < oh1; oh++) {
                int ih = oh * stride - pad + kh;
                float *dst = row + (size_t)(oh - oh0) * OW;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *src = img + (size_t)ih * W;
                int off = kw - pad; /* iw = ow*stride + off; >= 0 for ow >= lo */
                for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (stride == 1) {
                    if (hi > lo) memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof(float));
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * stride + off];
                }
                for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

/* Adjoint of im2col_channel: img += scatter(col), for output rows [oh0, oh1). */
static void col2im_channel(float *img, const float *col, size_t ld, int H, int W, int KH, int KW,
                           int stride, int pad, int oh0, int oh1, int OW) {
    for (int kh = 0; kh < KH; kh++) {
        for (int kw = 0; kw < KW; kw++) {
            const float *row = col + (size_t)(kh * KW + kw) * ld;
            int lo, hi;
            tap_range(W, OW, stride, pad, kw, &lo, &hi);
            for (int oh = oh0; oh < oh1; oh++) {
                int ih = oh * stride - pad + kh;
                if (ih < 0 || ih >= H) continue;
                const float *src = row + (size_t)(oh - oh0) * OW;
                float *dst = img + (size_t)ih * W;
                int off = kw - pad;
                if (stride == 1) {
                    for (int ow = lo; ow < hi; ow++) dst[ow + off] += src[ow];
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow * stride + off] += src[ow];
                }
            }
        }
    }
}

void nn_im2col_rows(float *col, const float *x, const nn_conv *s, int oh0, int oh1) {
    T2I_ASSERT(0 <= oh0 && oh0 <= oh1 && oh1 <= s->OH);
    size_t ld = (size_t)(oh1 - oh0) * s->OW, kk = (size_t)s->KH * s->KW;
    for (int c = 0; c < s->C; c++)
        im2col_channel(col + (size_t)c * kk * ld, ld, x + (size_t)c * s->H * s->W, s->H, s->W, s->KH, s->KW,
                       s->stride, s->pad, oh0, oh1, s->OW);
}

/* Per-channel sums of dy (N, C, S) added into db, in double. One running sum would be a
 * chain of dependent additions (4 cycles a float); eight sums, lane l taking the elements
 * i = l mod 8 of each plane, are independent and vectorise, and being in double they round
 * to the same float as the single sum but for a last-bit tie. The same code is compiled
 * per CPU path (same order of additions, so the same bits on every path). */
#define CHANNEL_SUMS(name)                                                                                 \
    static void name(float *db, const float *dy, int N, int C, size_t S) {                                 \
        _Pragma("omp parallel for schedule(static)") for (int c = 0; c < C; c++) {                         \
            double lane[8] = {0};                                                                          \
            for (int n = 0; n < N; n++) {                                                                  \
                const float *p = dy + ((size_t)n * C + c) * S;                                             \
                size_t i = 0;                                                                              \
                for (; i + 8 <= S; i += 8)                                                                 \
                    for (int l = 0; l < 8; l++) lane[l] += p[i + l];                                       \
                for (int l = 0; i < S; i++, l++) lane[l] += p[i];                                          \
            }                                                                                              \
            db[c] += (float)(((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))); \
        }                                                                                                  \
    }
CHANNEL_SUMS(channel_sums_base)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2")
CHANNEL_SUMS(channel_sums_avx2)
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,prefer-vector-width=512")
CHANNEL_SUMS(channel_sums_avx512)
#pragma GCC pop_options
#else
#define channel_sums_avx2 channel_sums_base
#define channel_sums_avx512 channel_sums_base
#endif

static void add_channel_sums(float *db, const float *dy, int N, int C, size_t S) {
    t2i_cpu_level l = t2i_cpu_path();
    (l >= T2I_CPU_AVX512 ? channel_sums_avx512 : l >= T2I_CPU_AVX2 ? channel_sums_avx2 : channel_sums_base)(db, dy, N, C, S);
}

/* ------------------------------------------------------------------ Conv2d */

nn_conv nn_conv2d_shape(int N, int C, int H, int W, int OC, int K, int stride, int pad) {
    T2I_ASSERT(N > 0 && C > 0 && H > 0 && W > 0 && OC > 0 && K > 0 && stride > 0 && pad >= 0);
    nn_conv s = {N, C, H, W, OC, 0, 0, K, K, stride, pad};
    s.OH = (H + 2 * pad - K) / stride + 1;
    s.OW = (W + 2 * pad - K) / stride + 1;
    T2I_ASSERTF(s.OH > 0 && s.OW > 0, "conv %dx%d kernel %d pad %d gives empty output", H, W, K, pad);
    return s;
}

nn_conv nn_conv_transpose2d_shape(int N, int C, int H, int W, int OC, int K, int stride, int pad,
                                  int out_pad) {
    T2I_ASSERT(N > 0 && C > 0 && H > 0 && W > 0 && OC > 0 && K > 0 && stride > 0 && pad >= 0);
    T2I_ASSERT(out_pad >= 0 && out_pad < stride);
    nn_conv s = {N, C, H, W, OC, 0, 0, K, K, stride, pad};
    s.OH = (H - 1) * stride - 2 * pad + K + out_pad;
    s.OW = (W - 1) * stride - 2 * pad + K + out_pad;
    T2I_ASSERT(s.OH > 0 && s.OW > 0);
    return s;
}

/* Conv2d runs by blocks and register tiles (conv_tile.h) rather than one large GEMM:
 *   y_n (OC, P) = W (OC, Kd) col_n (Kd, P)           Kd = C*KH*KW, P = OH*OW
 * A block is a set of output columns small enough that its im2col (Kd, cols) stays in L2:
 * G whole images side by side when an image is small, else a band of output rows of one
 * image. Each thread takes whole blocks with its own slot of scratch; the weights are
 * packed once per call into panels of mr rows (shared, read-only). Every tile is
 * computed over the whole Kd in registers and written once, straight into NCHW (bias
 * added on the way): no large im2col matrix, no transposed copy of the output.
 * Backward-data computes a block of dcol = W^T dY in tiles into the slot, then col2im adds
 * it into dX; a thread owns whole images there, so no two threads add into one pixel.
 * Backward-weights accumulates dW += dY col^T in fixed chunks of blocks (CONV_WSPLIT). No
 * result depends on the thread count. */

#define CONV_BLOCK_FLOATS ((size_t)256 << 10) /* an im2col block: 1 MiB (the tiles stream it in L1-sized parts) */
static size_t conv_block_floats = CONV_BLOCK_FLOATS;

void nn_set_conv_block_floats(size_t floats) {
    conv_block_floats = floats ? floats : CONV_BLOCK_FLOATS;
    nn_conv_gather_set_block_floats(floats);
}

/* Scratch slots: the thread count when convolution scratch was first sized; a later
 * rise in threads leaves convolutions at that many (never past their scratch). */
static int conv_slots_n;
static int conv_slots(void) {
    int n = __atomic_load_n(&conv_slots_n, __ATOMIC_ACQUIRE);
    if (n > 0) return n;
    int want = T2I_MAX(1, t2i_get_threads()), expect = 0;
    __atomic_compare_exchange_n(&conv_slots_n, &expect, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&conv_slots_n, __ATOMIC_ACQUIRE);
}

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

typedef struct {
    int Kd, P, G, rb, bpi; /* G images per block, or (G == 1) bands of rb rows, bpi bands per image */
    int cols, groups;      /* most columns of a block; image groups (G images, or 1 image of bpi bands) */
} conv_plan;

static conv_plan conv_plan_for(const nn_conv *s, int nt) {
    conv_plan b;
    b.Kd = s->C * s->KH * s->KW;
    b.P = s->OH * s->OW;
    /* at least 4 tile widths (unless tests ask for less): a block of few columns loses much
     * to its last, partial tile */
    size_t cap = T2I_MAX(conv_block_floats / (size_t)b.Kd, T2I_MIN((size_t)4 * NN_TILE_MAX_NR, conv_block_floats));
    if ((size_t)b.P <= cap) {
        b.G = (int)T2I_MIN((size_t)s->N, cap / (size_t)b.P);
        b.G = T2I_MIN(b.G, (s->N + nt - 1) / nt); /* enough groups for every thread */
        b.rb = s->OH, b.bpi = 1;
        b.cols = b.G * b.P;
    } else {
        b.G = 1;
        b.rb = (int)T2I_MIN((size_t)s->OH, T2I_MAX((size_t)1, cap / (size_t)s->OW));
        b.bpi = (s->OH + b.rb - 1) / b.rb;
        b.cols = b.rb * s->OW;
    }
    b.groups = (s->N + b.G - 1) / b.G;
    return b;
}

/* The tiles of one column panel, kept over the blocks of k (at the end of a slot). */
static size_t conv_tiles_floats(const nn_conv *s, const conv_plan *b) {
    return ((size_t)T2I_MAX(s->OC, b->Kd) + NN_TILE_MAX_MR) * NN_TILE_MAX_NR;
}

/* The three passes lay out their scratch alike: a part shared by the call's threads,
 * then one slot per thread (its blocks, packed panels, and the tiles at its end). */
typedef enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_WEIGHT } conv_pass;

/* Backward-weights sums its blocks in this many fixed chunks, each into its own copy of
 * dW, and adds the copies in chunk order: the same bits for any thread count. */
#define CONV_WSPLIT 8

/* The zero-padded rows of one input channel that a block's im2col reads (block_im2col),
 * with the slack its vector loads may read past them. */
static size_t conv_plane_floats(const nn_conv *s, const conv_plan *b) {
    return (size_t)((b->rb - 1) * s->stride + s->KH) * (size_t)(s->W + 2 * s->pad) + NN_IM2COL_SLACK;
}

/* Floats of one thread's slot for a pass, on any path (blocks of b's width). The padded
 * plane (block_im2col, block_col2im) sits just before the tiles. */
static size_t conv_slot_floats(const nn_conv *s, const conv_plan *b, conv_pass pass) {
    size_t cp = (size_t)b->cols + NN_TILE_MAX_NR, Kd = (size_t)b->Kd, OC = (size_t)s->OC;
    size_t n = conv_plane_floats(s, b);
    if (pass == PASS_FWD) n += Kd * cp; /* im2col */
    else if (pass == PASS_BWD_DATA) n += (OC + Kd) * cp; /* dY rows, dcol */
    else /* im2col and dY rows (each with a tile of rows to spare), the packed side */
        n += (Kd + OC + 2 * NN_TILE_MAX_MR) * cp + (T2I_MAX(OC, Kd) + NN_TILE_MAX_NR) * (size_t)b->cols;
    return round_up(n + conv_tiles_floats(s, b), 16);
}

/* The shared part: the packed weights (forward, backward-data) or the chunks' copies of
 * dW (backward-weights). */
static size_t conv_shared_floats(const nn_conv *s, const conv_plan *b, conv_pass pass) {
    if (pass == PASS_BWD_WEIGHT) return round_up((size_t)CONV_WSPLIT * s->OC * (b->Kd + 1), 16); /* + db */
    return round_up(((size_t)s->OC + NN_TILE_MAX_NR) * ((size_t)b->Kd + NN_TILE_MAX_NR), 16);
}

/* One thread has the widest blocks, so the sizes at one thread fit any count. */
static size_t conv_pass_floats(const nn_conv *s, conv_pass pass) {
    conv_plan b = conv_plan_for(s, 1);
    size_t n = conv_shared_floats(s, &b, pass) + (size_t)conv_slots() * conv_slot_floats(s, &b, pass);
    if (pass == PASS_FWD && nn_conv_rows_serves(s)) n = T2I_MAX(n, nn_conv_rows_scratch(s, conv_slots()));
    if (pass == PASS_FWD) return T2I_MAX(n, nn_conv_gather_scratch(s, conv_slots()));
    if (pass == PASS_BWD_DATA && nn_conv_gather_serves_data(s))
        return T2I_MAX(n, nn_conv_gather_data_scratch(s, conv_slots()));
    if (pass == PASS_BWD_DATA && nn_conv_gather_serves_sdata(s))
        return T2I_MAX(n, nn_conv_gather_sdata_scratch(s, conv_slots()));
    if (pass == PASS_BWD_WEIGHT && nn_conv_gather_serves_weight(s))
        return T2I_MAX(n, nn_conv_gather_weight_scratch(s, conv_slots()));
    return n;
}

size_t nn_conv2d_scratch(const nn_conv *s) {
    size_t f = conv_pass_floats(s, PASS_FWD), d = conv_pass_floats(s, PASS_BWD_DATA);
    return T2I_MAX(f, T2I_MAX(d, conv_pass_floats(s, PASS_BWD_WEIGHT)));
}

size_t nn_conv2d_forward_scratch(const nn_conv *s) { return conv_pass_floats(s, PASS_FWD); }

const char *nn_conv_path(void) { return t2i_cpu_name(nn_tile_kernel_get()->level); }

/* The block of group g, band r: first image n0, first column p0 within it, ncols columns,
 * images count (G mode) and the band's output rows. */
typedef struct {
    int n0, images, oh0, oh1, p0, ncols;
} conv_block;

static conv_block block_at(const nn_conv *s, const conv_plan *b, int g, int r) {
    conv_block k;
    k.n0 = g * b->G;
    k.images = T2I_MIN(b->G, s->N - k.n0);
    k.oh0 = r * b->rb;
    k.oh1 = T2I_MIN(s->OH, k.oh0 + b->rb);
    k.p0 = k.oh0 * s->OW;
    k.ncols = b->G > 1 || b->bpi == 1 ? k.images * b->P : (k.oh1 - k.oh0) * s->OW;
    return k;
}

/* im2col of a block into col (Kd, ld); columns [ncols, ld) are zeroed (read by edge tiles).
 * Each channel's rows are first copied with their zero padding into plane
 * (conv_plane_floats), so that the copies of im2col (nn_im2col_fn) are whole vectors
 * with no bounds to test: the planes are small, and per-row bounds logic and short
 * memcpy calls cost more than the copying. */
static void block_im2col(float *col, size_t ld, float *plane, const float *x, const nn_conv *s, const conv_plan *b,
                         const conv_block *k) {
    const nn_im2col_fn copy = nn_im2col_get();
    const size_t kk = (size_t)s->KH * s->KW, hw = (size_t)s->H * s->W;
    const int PW = s->W + 2 * s->pad, rows = k->oh1 - k->oh0, prows = (rows - 1) * s->stride + s->KH;
    const int ih0 = k->oh0 * s->stride - s->pad; /* input row of the plane's first row */
    for (int g = 0; g < k->images; g++)
        for (int c = 0; c < s->C; c++) {
            const float *img = x + ((size_t)(k->n0 + g) * s->C + c) * hw;
            nn_conv_pad_rows(plane, img, s->H, s->W, s->pad, ih0, prows);
            copy(col + (size_t)c * kk * ld + (size_t)g * b->P, ld, plane, PW, s->KH, s->KW, s->stride, rows, s->OW);
        }
    if ((size_t)k->ncols < ld)
        for (int i = 0; i < b->Kd; i++) memset(col + i * ld + k->ncols, 0, (ld - k->ncols) * sizeof(float));
}

/* dinp += col2im of a block's dcol (Kd, ld). A block of whole images goes channel by
 * channel through the padded plane: its taps are added there first (nn_col2im_fn, whole
 * vectors, no bounds to test), then its inner pixels into dinp, so a pixel's taps are
 * summed before they reach dinp. A band of rows adds straight into dinp (col2im_channel):
 * its plane would repeat the rows it shares with the next band. */
static void block_col2im(float *dinp, float *plane, const float *dcol, size_t ld, const nn_conv *s,
                         const conv_plan *b, const conv_block *k) {
    const nn_col2im_fn scatter = nn_col2im_get();
    const size_t kk = (size_t)s->KH * s->KW, hw = (size_t)s->H * s->W;
    const int PW = s->W + 2 * s->pad, rows = k->oh1 - k->oh0, prows = (rows - 1) * s->stride + s->KH;
    const int ih0 = k->oh0 * s->stride - s->pad; /* input row of the plane's first row */
    const int r0 = T2I_MAX(0, -ih0), r1 = T2I_MIN(prows, s->H - ih0); /* plane rows inside the image */
    for (int g = 0; g < k->images; g++)
        for (int c = 0; c < s->C; c++) {
            float *img = dinp + ((size_t)(k->n0 + g) * s->C + c) * hw;
            const float *dc = dcol + (size_t)c * kk * ld + (size_t)g * b->P;
            if (b->bpi > 1) {
                col2im_channel(img, dc, ld, s->H, s->W, s->KH, s->KW, s->stride, s->pad, k->oh0, k->oh1, s->OW);
                continue;
            }
            memset(plane, 0, (size_t)prows * PW * sizeof(float));
            scatter(plane, dc, ld, PW, s->KH, s->KW, s->stride, rows, s->OW);
            for (int r = r0; r < r1; r++) {
                const float *src = plane + (size_t)r * PW + s->pad;
                float *dst = img + (size_t)(ih0 + r) * s->W;
                for (int iw = 0; iw < s->W; iw++) dst[iw] += src[iw];
            }
        }
}

/* dY of a block as rows (OC, ld), columns past ncols zeroed. */
static void block_gather_dy(float *m, size_t ld, const float *dy, const nn_conv *s, const conv_plan *b,
                            const conv_block *k) {
    size_t P = (size_t)b->P;
    for (int oc = 0; oc < s->OC; oc++) {
        float *row = m + oc * ld;
        for (int g = 0; g < k->images; g++)
            memcpy(row + g * P, dy + ((size_t)(k->n0 + g) * s->OC + oc) * P + k->p0,
                   (size_t)(k->ncols / k->images) * sizeof(float));
        memset(row + k->ncols, 0, (ld - k->ncols) * sizeof(float));
    }
}

/* Panel of mr rows: dst[k*mr + r] = src[r*ld + k] for r < m (zero rows up to mr), k < kc.
 * k outermost: mr read streams, one sequential write stream. */
static void pack_rows(float *restrict dst, const float *restrict src, size_t ld, int m, int kc, int mr) {
    for (int k = 0; k < kc; k++, dst += mr) {
        int r = 0;
        for (; r < m; r++) dst[r] = src[(size_t)r * ld + k];
        for (; r < mr; r++) dst[r] = 0.0f;
    }
}

/* Panel of nr columns: dst[k*nr + j] = src[k*ld + j] for j < n (zero up to nr), k < kc. */
static void pack_cols(float *restrict dst, const float *restrict src, size_t ld, int kc, int n, int nr) {
    for (int k = 0; k < kc; k++) {
        memcpy(dst + (size_t)k * nr, src + (size_t)k * ld, (size_t)n * sizeof(float));
        for (int j = n; j < nr; j++) dst[(size_t)k * nr + j] = 0.0f;
    }
}

/* k is taken CONV_KC rows at a time, so the part of B that the mp tiles share stays in L1. */
#define CONV_KC 256

/* Tiles i < mp of one column panel: ct[i] (mr x nr) = rows i*mr .. of A times B (kc rows,
 * ldb apart). A is packed panels (lda 0: panel i holds kc rows of mr) or rows lda apart. */
static void panel_product(const nn_tile_kernel *tk, int mp, int kc, const float *A, size_t lda, const float *B,
                          size_t ldb, float *ct) {
    const int mr = tk->mr, nr = tk->nr;
    for (int k0 = 0; k0 < kc; k0 += CONV_KC) {
        int kb = T2I_MIN(CONV_KC, kc - k0);
        for (int i = 0; i < mp; i++) {
            const float *a = lda ? A + (size_t)i * mr * lda + k0 : A + ((size_t)i * kc + k0) * mr;
            tk->tile(kb, a, lda, B + (size_t)k0 * ldb, ldb, ct + (size_t)i * mr * nr, k0 > 0);
        }
    }
}

static int conv_threads(void) { return T2I_MAX(1, T2I_MIN(t2i_get_threads(), conv_slots())); }

/* A 1x1 convolution of stride 1 without padding is a product per image on NCHW as it is:
 * out_n (M, P) = (add ? out_n : bias) + A (M, K) in_n (K, P), A packed in panels of mr rows.
 * The tiles read in_n in place (rows P apart); only a last partial panel of an image is
 * copied (zero-padded to nr columns) into the thread's slot. No im2col, no col2im. Up to
 * CONV_KC rows of in_n (what the mp tiles of a panel share stays in L1) the tiles are row
 * tiles (conv_tile.h: nn_row_kernel, the same sums), stored straight into out_n. */
static int conv_is_1x1(const nn_conv *s) { return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0; }

static void products_per_image(float *out, const float *in, const float *Ap, const float *bias, int add, int N,
                               int M, int K, int P, const nn_tile_kernel *tk, float *slots, size_t per, size_t ct_at,
                               int nt) {
    const int mr = tk->mr, nr = tk->nr, mp = (M + mr - 1) / mr, panels = (P + nr - 1) / nr;
    const nn_row_kernel *rk = nn_row_kernel_get();
    T2I_ASSERT(rk->mr == mr && rk->nr == nr); /* the same panels */
#pragma omp parallel num_threads(nt)
    {
        float *buf = slots + (size_t)t2i_thread_id() * per, *ct = buf + ct_at;
        int *rows_in = (int *)(buf + (size_t)K * nr), *rows_buf = rows_in + K; /* row k of in_n, of buf */
        for (int k = 0; k < K; k++) rows_in[k] = k * P, rows_buf[k] = k * nr;
#pragma omp for schedule(static)
        for (int t = 0; t < N * panels; t++) {
            int n = t / panels, c0 = t % panels * nr, w = T2I_MIN(nr, P - c0);
            const float *B = in + (size_t)n * K * P + c0;
            size_t ldb = (size_t)P;
            if (w < nr) {
                pack_cols(buf, B, (size_t)P, K, w, nr);
                B = buf, ldb = (size_t)nr;
            }
            if (K <= CONV_KC) {
                for (int i = 0; i < mp; i++)
                    rk->tile(K, Ap + (size_t)i * K * mr, B, w < nr ? rows_buf : rows_in,
                             out + ((size_t)n * M + i * mr) * P + c0, (size_t)P, T2I_MIN(mr, M - i * mr), w,
                             bias ? bias + i * mr : NULL, add);
                continue;
            }
            panel_product(tk, mp, K, Ap, 0, B, ldb, ct);
            for (int m = 0; m < M; m++) {
                float *dst = out + ((size_t)n * M + m) * P + c0;
                const float *src = ct + (size_t)m * nr;
                if (add)
                    for (int j = 0; j < w; j++) dst[j] += src[j];
                else
                    for (int j = 0; j < w; j++) dst[j] = src[j] + (bias ? bias[m] : 0.0f);
            }
        }
    }
}

/* out = conv(inp, w) + b, or out += conv(inp, w) when add (b is then NULL). */
static void conv2d_forward_run(float *out, float *scratch, const float *inp, const float *w, const float *b,
                               const nn_conv *s, int add) {
    const nn_tile_kernel *tk = nn_tile_kernel_get();
    const int mr = tk->mr, nr = tk->nr, nt = conv_threads();
    if (!conv_is_1x1(s) && nn_conv_gather_serves(s)) {
        nn_conv_gather_forward(out, scratch, inp, w, b, s, add, nt);
        return;
    }
    if (nn_conv_rows_serves(s)) {
        nn_conv_rows_forward(out, scratch, inp, w, b, s, add, nt);
        return;
    }
    conv_plan pl = conv_plan_for(s, nt);
    const int Kd = pl.Kd, P = pl.P, mp = (s->OC + mr - 1) / mr, direct = conv_is_1x1(s);
    float *Ap = scratch; /* mp panels of (Kd, mr) */
    float *slots = scratch + conv_shared_floats(s, &pl, PASS_FWD);
    size_t per = conv_slot_floats(s, &pl, PASS_FWD), ct_at = per - conv_tiles_floats(s, &pl);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int i = 0; i < mp; i++)
            pack_rows(Ap + (size_t)i * Kd * mr, w + (size_t)i * mr * Kd, (size_t)Kd, T2I_MIN(mr, s->OC - i * mr), Kd,
                      mr);
        float *col = slots + (size_t)t2i_thread_id() * per, *ct = col + ct_at;
        float *plane = ct - conv_plane_floats(s, &pl);
#pragma omp for schedule(static)
        for (int t = 0; t < (direct ? 0 : pl.groups * pl.bpi); t++) {
            conv_block k = block_at(s, &pl, t / pl.bpi, t % pl.bpi);
            size_t kld = round_up((size_t)k.ncols, (size_t)nr);
            block_im2col(col, kld, plane, inp, s, &pl, &k);
            for (int c0 = 0; c0 < k.ncols; c0 += nr) {
                int n = T2I_MIN(nr, k.ncols - c0);
                panel_product(tk, mp, Kd, Ap, 0, col + c0, kld, ct);
                /* columns c0 .. c0+n of the block, in runs within one image */
                for (int c = c0; c < c0 + n;) {
                    int q = k.p0 + c, img = k.n0 + q / P, p = q % P, run = T2I_MIN(c0 + n - c, P - p);
                    for (int oc = 0; oc < s->OC; oc++) {
                        float bv = b ? b[oc] : 0.0f, *dst = out + ((size_t)img * s->OC + oc) * P + p;
                        const float *src = ct + (size_t)oc * nr + (c - c0); /* tile oc/mr, row oc%mr */
                        if (add)
                            for (int j = 0; j < run; j++) dst[j] += src[j];
                        else
                            for (int j = 0; j < run; j++) dst[j] = src[j] + bv;
                    }
                    c += run;
                }
            }
        }
    }
    if (direct) products_per_image(out, inp, Ap, b, add, s->N, s->OC, Kd, P, tk, slots, per, ct_at, nt);
}

void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                       const nn_conv *s) {
    conv2d_forward_run(out, scratch, inp, w, b, s, 0);
}

/* dinp += col2im(W^T dY), by image groups (a thread owns its images' pixels). */
static void conv2d_backward_data(float *dinp, float *scratch, const float *dout, const float *w, const nn_conv *s,
                                 const nn_tile_kernel *tk, int nt) {
    const int mr = tk->mr, nr = tk->nr;
    if (!conv_is_1x1(s) && nn_conv_gather_serves_data(s)) {
        nn_conv_gather_backward_data(dinp, scratch, dout, w, s, nt);
        return;
    }
    if (nn_conv_gather_serves_sdata(s)) {
        nn_conv_gather_backward_sdata(dinp, scratch, dout, w, s, nt);
        return;
    }
    conv_plan pl = conv_plan_for(s, nt);
    const int Kd = pl.Kd, mp = (Kd + mr - 1) / mr, direct = conv_is_1x1(s);
    float *Ap = scratch; /* mp panels of (OC, mr): W^T */
    float *slots = scratch + conv_shared_floats(s, &pl, PASS_BWD_DATA);
    size_t per = conv_slot_floats(s, &pl, PASS_BWD_DATA), ct_at = per - conv_tiles_floats(s, &pl);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int i = 0; i < mp; i++)
            pack_cols(Ap + (size_t)i * s->OC * mr, w + (size_t)i * mr, (size_t)Kd, s->OC, T2I_MIN(mr, Kd - i * mr), mr);
        float *dyb = slots + (size_t)t2i_thread_id() * per, *ct = dyb + ct_at;
        float *plane = ct - conv_plane_floats(s, &pl);
#pragma omp for schedule(static)
        for (int g = 0; g < (direct ? 0 : pl.groups); g++)
            for (int r = 0; r < pl.bpi; r++) {
                conv_block k = block_at(s, &pl, g, r);
                size_t kld = round_up((size_t)k.ncols, (size_t)nr);
                float *dcol = dyb + (size_t)s->OC * kld;
                block_gather_dy(dyb, kld, dout, s, &pl, &k);
                for (int c0 = 0; c0 < k.ncols; c0 += nr) {
                    int n = T2I_MIN(nr, k.ncols - c0);
                    panel_product(tk, mp, s->OC, Ap, 0, dyb + c0, kld, ct);
                    for (int row = 0; row < Kd; row++)
                        memcpy(dcol + (size_t)row * kld + c0, ct + (size_t)row * nr, (size_t)n * sizeof(float));
                }
                block_col2im(dinp, plane, dcol, kld, s, &pl, &k);
            }
    }
    if (direct) products_per_image(dinp, dout, Ap, NULL, 1, s->N, Kd, s->OC, pl.P, tk, slots, per, ct_at, nt);
}

/* dw += dY col^T, summed in CONV_WSPLIT fixed chunks of blocks (each into its own copy,
 * the copies then added in order: no dependence on the thread count).
 * The product of a block is (OC, cols) x (cols, Kd), the columns being the sum index. One
 * side is read in place as the tiles' rows (lda = its row length), the other packed into
 * panels of nr rows: the tiles are (taps x channels), so the large im2col side needs no
 * packing, unless there are so few channels (OC < nr/2: an output layer of 3) that a panel
 * of them would be mostly padding; then the tiles are (channels x taps). */
static void conv2d_backward_weight(float *dw, float *scratch, const float *dout, const float *inp, const nn_conv *s,
                                   const nn_tile_kernel *tk, int nt) {
    const int mr = tk->mr, nr = tk->nr;
    conv_plan pl = conv_plan_for(s, CONV_WSPLIT); /* blocks that do not depend on nt */
    const int Kd = pl.Kd, OC = s->OC, taps_rows = 2 * OC >= nr;
    const int M = taps_rows ? Kd : OC, Nn = taps_rows ? OC : Kd, mp = (M + mr - 1) / mr, np = (Nn + nr - 1) / nr;
    const int T = pl.groups * pl.bpi;
    float *part = scratch; /* CONV_WSPLIT copies of (M, Nn): dW, or dW^T for taps_rows */
    float *slots = scratch + conv_shared_floats(s, &pl, PASS_BWD_WEIGHT);
    size_t per = conv_slot_floats(s, &pl, PASS_BWD_WEIGHT), ct_at = per - conv_tiles_floats(s, &pl);
    size_t nw = (size_t)OC * Kd, cp = (size_t)pl.cols + NN_TILE_MAX_NR;
    /* a slot: col (Kd + mr rows), dY rows (OC + mr), the packed side, the tiles */
    size_t o_dy = (size_t)(Kd + NN_TILE_MAX_MR) * cp, o_pk = o_dy + (size_t)(OC + NN_TILE_MAX_MR) * cp;
#pragma omp parallel num_threads(nt)
    {
        float *col = slots + (size_t)t2i_thread_id() * per;
        float *dyb = col + o_dy, *Ypk = col + o_pk, *ct = col + ct_at, *plane = ct - conv_plane_floats(s, &pl);
#pragma omp for schedule(static)
        for (int chunk = 0; chunk < CONV_WSPLIT; chunk++) {
            float *acc = part + (size_t)chunk * nw;
            memset(acc, 0, nw * sizeof(float));
            for (int t = chunk * T / CONV_WSPLIT; t < (chunk + 1) * T / CONV_WSPLIT; t++) {
                conv_block k = block_at(s, &pl, t / pl.bpi, t % pl.bpi);
                size_t kld = (size_t)k.ncols;
                int kc = k.ncols;
                block_im2col(col, kld, plane, inp, s, &pl, &k);
                block_gather_dy(dyb, kld, dout, s, &pl, &k);
                float *X = taps_rows ? col : dyb;
                const float *Y = taps_rows ? dyb : col;
                memset(X + (size_t)M * kld, 0, (size_t)mr * kld * sizeof(float)); /* rows a last tile reads */
                for (int j = 0; j < np; j++)
                    pack_rows(Ypk + (size_t)j * nr * kc, Y + (size_t)j * nr * kld, kld, T2I_MIN(nr, Nn - j * nr), kc,
                              nr);
                for (int j = 0; j < np; j++) {
                    int n = T2I_MIN(nr, Nn - j * nr);
                    panel_product(tk, mp, kc, X, kld, Ypk + (size_t)j * nr * kc, (size_t)nr, ct);
                    for (int row = 0; row < M; row++) {
                        const float *src = ct + (size_t)row * nr;
                        float *d = acc + (size_t)row * Nn + j * nr;
                        for (int jj = 0; jj < n; jj++) d[jj] += src[jj];
                    }
                }
            }
        }
#pragma omp for schedule(static)
        for (size_t e = 0; e < nw; e++) {
            size_t at = taps_rows ? e % Kd * OC + e / Kd : e; /* dW (OC, Kd) from dW^T (Kd, OC) */
            float v = 0.0f;
            for (int chunk = 0; chunk < CONV_WSPLIT; chunk++) v += part[(size_t)chunk * nw + at];
            dw[e] += v;
        }
    }
}

/* dw += dY col^T and db += the sums of dY, as dot products over output positions
 * (nn_dot_kernel), for a weight gradient with a short side: a first layer's few taps
 * (Kd = C*KH*KW of 9 to 48) or an output layer's few channels. The tiles would pad that
 * side to a panel and pack or transpose the long one; here dY is read in place (one
 * segment per image of the block) against the rows of the block's im2col, and only ra x rb
 * sums leave the registers per pair of row blocks. db comes from one more tap row of ones:
 * dY is read once for both (a separate pass over it for db costs as much as the product).
 * Same chunks, copies and order of the sum as the tiles: no dependence on the thread
 * count. */
static void conv2d_backward_weight_dot(float *dw, float *db, float *scratch, const float *dout, const float *inp,
                                       const nn_conv *s, const nn_dot_kernel *dk, int nt) {
    conv_plan pl = conv_plan_for(s, CONV_WSPLIT);
    const int Kd = pl.Kd, OC = s->OC, T = pl.groups * pl.bpi, ra = dk->ra, rb = dk->rb;
    const int direct = conv_is_1x1(s); /* the im2col rows are the input's planes */
    const int Kt = Kd + (db != NULL); /* tap rows, with the row of ones */
    const size_t P = (size_t)pl.P, nw = (size_t)OC * Kt;
    /* the orientation that pads less: channels as the ra side, or taps */
    size_t pad_c = round_up((size_t)OC, (size_t)ra) * round_up((size_t)Kt, (size_t)rb);
    size_t pad_t = round_up((size_t)Kt, (size_t)ra) * round_up((size_t)OC, (size_t)rb);
    const int taps_a = pad_t < pad_c, MA = taps_a ? Kt : OC, MB = taps_a ? OC : Kt;
    float *part = scratch; /* CONV_WSPLIT copies of (OC, Kt): dW, and db as its last column */
    float *slots = scratch + conv_shared_floats(s, &pl, PASS_BWD_WEIGHT);
    size_t per = conv_slot_floats(s, &pl, PASS_BWD_WEIGHT);
#pragma omp parallel num_threads(nt)
    {
        float *col = slots + (size_t)t2i_thread_id() * per;
        float *plane = col + per - conv_tiles_floats(s, &pl) - conv_plane_floats(s, &pl);
#pragma omp for schedule(static)
        for (int chunk = 0; chunk < CONV_WSPLIT; chunk++) {
            float *acc = part + (size_t)chunk * nw;
            memset(acc, 0, nw * sizeof(float));
            for (int t = chunk * T / CONV_WSPLIT; t < (chunk + 1) * T / CONV_WSPLIT; t++) {
                conv_block k = block_at(s, &pl, t / pl.bpi, t % pl.bpi);
                size_t kld = (size_t)k.ncols;
                const float *dy0 = dout + (size_t)k.n0 * OC * P + k.p0; /* channel oc at + oc*P */
                const float *x0 = col;
                size_t xrow = kld, ximg = P; /* the im2col rows: between rows, between images */
                if (direct) {
                    x0 = inp + (size_t)k.n0 * Kd * P + k.p0, xrow = P, ximg = (size_t)Kd * P;
                } else {
                    block_im2col(col, kld, plane, inp, s, &pl, &k);
                    for (size_t i = (size_t)Kd * kld; i < (size_t)Kt * kld; i++) col[i] = 1.0f;
                }
                const float *rows[2] = {taps_a ? x0 : dy0, taps_a ? dy0 : x0};
                const size_t rstep[2] = {taps_a ? xrow : P, taps_a ? P : xrow};         /* between rows */
                const size_t sstep[2] = {taps_a ? ximg : OC * P, taps_a ? OC * P : ximg}; /* between images */
                for (int i0 = 0; i0 < MA; i0 += ra)
                    for (int j0 = 0; j0 < MB; j0 += rb) {
                        const float *ap[8], *bp[8];
                        float S[64];
                        for (int i = 0; i < ra; i++) ap[i] = rows[0] + (size_t)T2I_MIN(i0 + i, MA - 1) * rstep[0];
                        for (int j = 0; j < rb; j++) bp[j] = rows[1] + (size_t)T2I_MIN(j0 + j, MB - 1) * rstep[1];
                        dk->dot(k.images, k.ncols / k.images, ap, sstep[0], bp, sstep[1], S);
                        for (int i = 0; i < T2I_MIN(ra, MA - i0); i++)
                            for (int j = 0; j < T2I_MIN(rb, MB - j0); j++) {
                                size_t a = (size_t)(i0 + i), b = (size_t)(j0 + j);
                                acc[taps_a ? b * Kt + a : a * Kt + b] += S[i * rb + j];
                            }
                    }
            }
        }
#pragma omp for schedule(static)
        for (size_t e = 0; e < nw; e++) {
            float v = 0.0f;
            for (int chunk = 0; chunk < CONV_WSPLIT; chunk++) v += part[(size_t)chunk * nw + e];
            size_t oc = e / (size_t)Kt, tap = e % (size_t)Kt;
            if (tap < (size_t)Kd) dw[oc * Kd + tap] += v;
            else db[oc] += v;
        }
    }
}

/* dw += dY col^T, db += the sums of dY (either may be NULL): a weight gradient with a
 * short side (few taps, few channels) by dot products, the rest by tiles. */
static void conv2d_weight_grad(float *dw, float *db, float *scratch, const float *dout, const float *inp,
                               const nn_conv *s, int nt) {
    if (dw && conv_is_1x1(s) && !nn_conv_gather_serves_weight(s)) { /* in place: no row of ones, so db apart */
        if (db) add_channel_sums(db, dout, s->N, s->OC, (size_t)s->OH * s->OW);
        conv2d_backward_weight_dot(dw, NULL, scratch, dout, inp, s, nn_dot_kernel_get(), nt);
        return;
    }
    if (dw && (s->C * s->KH * s->KW <= 64 || s->OC < 8)) {
        conv2d_backward_weight_dot(dw, db, scratch, dout, inp, s, nn_dot_kernel_get(), nt);
        return;
    }
    if (db) add_channel_sums(db, dout, s->N, s->OC, (size_t)s->OH * s->OW);
    if (dw && nn_conv_gather_serves_weight(s)) nn_conv_gather_backward_weight(dw, scratch, dout, inp, s, nt);
    else if (dw) conv2d_backward_weight(dw, scratch, dout, inp, s, nn_tile_kernel_get(), nt);
}

void nn_conv2d_backward(float *dinp, float *dw, float *db, float *scratch, const float *dout,
                        const float *inp, const float *w, const nn_conv *s) {
    const nn_tile_kernel *tk = nn_tile_kernel_get();
    int nt = conv_threads();
    conv2d_weight_grad(dw, db, scratch, dout, inp, s, nt);
    if (dinp) conv2d_backward_data(dinp, scratch, dout, w, s, tk, nt);
}

/* ------------------------------------------------------------------ ConvTranspose2d */

/* ConvTranspose2d (C -> OC, H -> OH) is the adjoint of the Conv2d (OC -> C, OH -> H) with the
 * same kernel, stride and padding, whose weight layout (C, OC, KH, KW) is the transpose's
 * own. So its forward pass is that Conv2d's backward-data (into an output that starts as
 * the bias), its backward-data that Conv2d's forward pass, and its weight gradient that
 * Conv2d's with the roles of input and output gradient exchanged. (OH + 2 pad - K) / stride
 * + 1 = H holds for any out_pad < stride, so the adjoint's shape is exact. */
static nn_conv convt_adjoint(const nn_conv *s) {
    nn_conv a = {s->N, s->OC, s->OH, s->OW, s->C, s->H, s->W, s->KH, s->KW, s->stride, s->pad};
    return a;
}

size_t nn_conv_transpose2d_scratch(const nn_conv *s) {
    nn_conv a = convt_adjoint(s);
    return nn_conv2d_scratch(&a);
}

size_t nn_conv_transpose2d_forward_scratch(const nn_conv *s) {
    nn_conv a = convt_adjoint(s);
    return conv_pass_floats(&a, PASS_BWD_DATA);
}

void nn_conv_transpose2d_forward(float *out, float *scratch, const float *inp, const float *w,
                                 const float *b, const nn_conv *s) {
    nn_conv a = convt_adjoint(s);
    size_t ohw = (size_t)s->OH * s->OW;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < s->N; i++)
        for (int c = 0; c < s->OC; c++) {
            float *o = out + ((size_t)i * s->OC + c) * ohw, bv = b ? b[c] : 0.0f;
            for (size_t k = 0; k < ohw; k++) o[k] = bv;
        }
    conv2d_backward_data(out, scratch, inp, w, &a, nn_tile_kernel_get(), conv_threads());
}

void nn_conv_transpose2d_backward(float *dinp, float *dw, float *db, float *scratch,
                                  const float *dout, const float *inp, const float *w,
                                  const nn_conv *s) {
    nn_conv a = convt_adjoint(s);
    if (db) add_channel_sums(db, dout, s->N, s->OC, (size_t)s->OH * s->OW);
    conv2d_weight_grad(dw, NULL, scratch, inp, dout, &a, conv_threads());
    if (dinp) conv2d_forward_run(dinp, scratch, dout, w, NULL, &a, 1);
}
