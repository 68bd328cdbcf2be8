/* conv_gather.c - Conv2d by gathered tiles (conv_gather.h): the forward pass (below),
 * backward-data (stride 1: the forward of dY by the turned kernel; larger strides: by
 * phases) and the weight gradient (taps as the tiles' rows), each in its section.
 *
 * Forward:
 *   y_n (OC, P) = W (OC, Kd) col(x_n) (Kd, P),   Kd = C*KH*KW taps, P = OH*OW
 * computed as its transpose, pixels by channels: a tile is mr output pixels (any, even of
 * two images) by nr channels, summed over the Kd taps. Pixel r's tap (c, kh, kw) is
 * pad[base_r + off[k]], pad being a zero-padded copy of the input's rows, base_r the
 * pixel's top-left corner there and off[k] = c*PH*PW + kh*PW + kw the same for every
 * pixel: the tile broadcasts it straight from there (conv_tile.c: gathered tiles), where
 * the im2col road first copies KH*KW values per input value into a matrix. The weights are
 * packed once per call into panels of nr channels (Kd rows of nr). A tile's sums are
 * written transposed into NCHW with the bias (nn_gather_kernel.put: on avx512 a channel's
 * pixels of the tile as one vector, per run of pixels within one image).
 *
 * Blocks: G whole images when their padded copy is small, else bands of output rows of
 * one image, so that the padded copy (pad_block_floats) stays in L2 while its tiles read
 * it. Each thread takes whole blocks with its own padded copy; no result depends on the
 * thread count. */
#include "conv_gather.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "base.h"
#include "conv_tile.h"

#define PAD_BLOCK_FLOATS ((size_t)64 << 10) /* a block's padded input: 256 KiB */

void nn_conv_pad_rows(float *d, const float *src, int H, int W, int pad, int ih0, int prows) {
    const int PW = W + 2 * pad;
    for (int r = 0; r < prows; r++, d += PW) {
        int ih = ih0 + r;
        if (ih < 0 || ih >= H) {
            memset(d, 0, (size_t)PW * sizeof(float));
            continue;
        }
        for (int j = 0; j < pad; j++) d[j] = 0.0f, d[pad + W + j] = 0.0f;
        memcpy(d + pad, src + (size_t)ih * W, (size_t)W * sizeof(float));
    }
}

static size_t pad_block_floats = PAD_BLOCK_FLOATS;

void nn_conv_gather_set_block_floats(size_t floats) { pad_block_floats = floats ? floats : PAD_BLOCK_FLOATS; }

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

typedef struct {
    int Kd, P, PW, PH;   /* taps, pixels per image, the padded copy's row length and rows per image/band */
    int G, rb, bpi;      /* G images per block, or (G == 1) bands of rb output rows, bpi per image */
    int groups;          /* image groups */
    size_t img;          /* floats of one image's (or band's) padded copy: C*PH*PW */
} gather_plan;

/* Of the group sizes up to G, the one whose groups spread over nt workers leaves the
 * busiest with the fewest images (the largest such): 64 images at most 5 a group on 2
 * threads take groups of 4 (8 each, 32 images) rather than 5 (7 and 6: 35 and 29). */
static int balanced_group(int N, int G, int nt) {
    int best = G, load = INT_MAX;
    for (int g = G; g >= 1 && 2 * g >= G; g--) {
        int l = ((N + g - 1) / g + nt - 1) / nt * g;
        if (l < load) best = g, load = l;
    }
    return best;
}

static gather_plan plan_for(const nn_conv *s, int nt) {
    gather_plan g;
    g.Kd = s->C * s->KH * s->KW;
    g.P = s->OH * s->OW;
    g.PW = s->W + 2 * s->pad;
    size_t whole = (size_t)s->C * ((size_t)(s->OH - 1) * s->stride + s->KH) * g.PW;
    if (whole <= pad_block_floats) {
        g.G = (int)T2I_MIN((size_t)s->N, pad_block_floats / whole);
        g.G = balanced_group(s->N, T2I_MIN(g.G, (s->N + nt - 1) / nt), nt); /* groups for every thread */
        g.rb = s->OH, g.bpi = 1;
    } else {
        size_t row = (size_t)s->C * s->stride * g.PW; /* each further output row */
        size_t first = (size_t)s->C * s->KH * g.PW;
        g.G = 1;
        g.rb = first >= pad_block_floats ? 1 : (int)T2I_MIN((size_t)s->OH, 1 + (pad_block_floats - first) / row);
        g.bpi = (s->OH + g.rb - 1) / g.rb;
    }
    g.PH = (g.rb - 1) * s->stride + s->KH;
    g.img = (size_t)s->C * g.PH * g.PW;
    g.groups = (s->N + g.G - 1) / g.G;
    return g;
}

int nn_conv_gather_serves(const nn_conv *s) {
    const nn_gather_kernel *gk = nn_gather_kernel_get();
    /* enough channels to fill most of a panel, and enough taps per tile to pay for its
     * transposed write */
    return s->OC >= gk->nr / 2 && s->C * s->KH * s->KW >= 64;
}

/* ------------------------------------------------------------------ padding classes
 *
 * Output rows at the top and bottom edges read some kernel rows from the zero padding:
 * with a 3x3 kernel on 8 x 8 (b5_res3) 1 in 12 of all taps, with k4 s2 from 14 x 14 to
 * 7 x 7 (b1_d2) 1 in 14. The tiles skip them: a block's pixels are taken class by class,
 * a class being the output rows whose kernel rows inside the input are the same, and a
 * class's tiles run over those taps only (tile_sel, on the packed panel's rows of those
 * taps). A pixel's terms are its full sum's, in the same order, less products with
 * padding zeros: the same sums, but for the sign of a sum that is exactly zero. Columns
 * are not split so: a class of the pixels at a left or right edge has no two of them
 * consecutive in the output, and its tiles (and those of the corners, a pixel per image)
 * cost more in writes and partial tiles than the taps they skip (measured 10-35% slower
 * on B4's and B5's layers). When a block holds so few pixels that the classes' partial
 * tiles outweigh the skipped taps, the rows stay one class (class_split). */

/* Kernel rows of output row oh that fall inside the input: [*lo, *hi). */
static void taps_inside(int oh, const nn_conv *s, int *lo, int *hi) {
    *lo = T2I_MIN(s->KH, T2I_MAX(0, s->pad - oh * s->stride));
    *hi = T2I_MAX(*lo, T2I_MIN(s->KH, s->H + s->pad - oh * s->stride));
}

/* Distinct ranges of output rows, in order (equal ranges are neighbours: both ends only
 * fall as oh grows); cls[oh] gets each row's class, lo/hi the ranges (NULL: only
 * counted). One class of all taps when !split. */
static int row_classes(const nn_conv *s, int split, int *cls, int *lo, int *hi) {
    int n = 0, plo = -1, phi = -1;
    for (int oh = 0; oh < s->OH; oh++) {
        int l = 0, h = s->KH;
        if (split) taps_inside(oh, s, &l, &h);
        if (l != plo || h != phi) {
            if (lo) lo[n] = l, hi[n] = h;
            n++, plo = l, phi = h;
        }
        if (cls) cls[oh] = n - 1;
    }
    return n;
}

/* Whether splitting the rows pays for blocks of G images of rb rows (mr-row tiles): the
 * taps of the tiles with the classes against those without. */
static int class_split(const nn_conv *s, int G, int rb, int mr) {
    const int kw = s->C * s->KW; /* taps per kernel row */
    long whole = 0, split = 0;
    for (int oh0 = 0; oh0 < s->OH; oh0 += rb) {
        int oh1 = T2I_MIN(s->OH, oh0 + rb);
        whole += ((long)G * (oh1 - oh0) * s->OW + mr - 1) / mr * s->KH * kw;
        for (int oh = oh0; oh < oh1;) { /* a run of rows of one range */
            int lo, hi, l2, h2, e = oh + 1;
            taps_inside(oh, s, &lo, &hi);
            while (e < oh1 && (taps_inside(e, s, &l2, &h2), l2 == lo && h2 == hi)) e++;
            split += ((long)G * (e - oh) * s->OW + mr - 1) / mr * (hi - lo) * kw;
            oh = e;
        }
    }
    return split < whole;
}

typedef struct {
    int ncls;
    int *start;           /* class c's output rows: start[c] .. start[c+1]-1 */
    int *kc, *toff, *tbk; /* class c's taps: kc[c] of them, offsets toff[c*Kd + i], panel rows tbk[c*Kd + i] */
} pad_classes;

static size_t class_ints(const nn_conv *s) {
    size_t ncls = (size_t)row_classes(s, 1, NULL, NULL, NULL);
    return 3 * (size_t)s->OH + (ncls + 1) + ncls + 2 * ncls * s->C * s->KH * s->KW;
}

/* Builds the classes in ints (class_ints of them); taps at off[k], panel rows k*nr. */
static pad_classes build_classes(int *ints, const nn_conv *s, int split, const int *off, int nr) {
    pad_classes pc;
    const int Kd = s->C * s->KH * s->KW;
    int *rcls = ints, *lo = rcls + s->OH, *hi = lo + s->OH;
    pc.ncls = row_classes(s, split, rcls, lo, hi);
    pc.start = hi + s->OH, pc.kc = pc.start + pc.ncls + 1;
    pc.toff = pc.kc + pc.ncls, pc.tbk = pc.toff + (size_t)pc.ncls * Kd;
    for (int oh = 0, c = -1; oh <= s->OH; oh++)
        if (oh == s->OH || rcls[oh] != c) pc.start[++c] = oh;
    for (int c = 0; c < pc.ncls; c++) {
        int n = 0;
        for (int k = 0; k < Kd; k++) {
            int kh = k % (s->KH * s->KW) / s->KW;
            if (kh >= lo[c] && kh < hi[c]) pc.toff[(size_t)c * Kd + n] = off[k], pc.tbk[(size_t)c * Kd + n++] = k * nr;
        }
        pc.kc[c] = n;
    }
    return pc;
}

/* Shared: the packed weights, the offset table and the padding classes; then per slot the
 * padded copy and a tile. */
static size_t shared_floats(const nn_conv *s, const gather_plan *g, int nr) {
    return round_up(round_up((size_t)s->OC, (size_t)nr) * g->Kd + (size_t)g->Kd + class_ints(s), 16);
}

static size_t slot_floats(const gather_plan *g) {
    return round_up((size_t)g->G * g->img + (size_t)NN_TILE_MAX_MR * NN_TILE_MAX_NR, 16);
}

size_t nn_conv_gather_scratch(const nn_conv *s, int nslots) {
    gather_plan g = plan_for(s, 1); /* one thread has the largest blocks */
    return shared_floats(s, &g, NN_TILE_MAX_NR) + (size_t)nslots * slot_floats(&g);
}

/* The padded copy of images n0 .. n0+images-1, input rows from ih0 on (PH rows each). */
static void fill_padded(float *pad, const float *x, const nn_conv *s, int PW, int PH, size_t img, int n0, int images,
                        int ih0, int prows) {
    T2I_ASSERT(PW == s->W + 2 * s->pad);
    const size_t hw = (size_t)s->H * s->W;
    for (int i = 0; i < images; i++)
        for (int c = 0; c < s->C; c++) {
            const float *src = x + ((size_t)(n0 + i) * s->C + c) * hw;
            float *plane = pad + (size_t)i * img + (size_t)c * PH * PW;
            nn_conv_pad_rows(plane, src, s->H, s->W, s->pad, ih0, prows);
        }
}

/* out (+)= conv s of inp. flip: s is the adjoint of a stride-1 conv whose weights w are
 * (s->C, s->OC, KH, KW), so the weights of s are w's, channels exchanged and the kernel
 * turned by half a turn (see nn_conv_gather_backward_data). */
static void gather_run(float *out, float *scratch, const float *inp, const float *w, const float *b,
                       const nn_conv *s, int add, int nt, int flip) {
    const nn_gather_kernel *gk = nn_gather_kernel_get();
    const int mr = gk->mr, nr = gk->nr;
    gather_plan g = plan_for(s, nt);
    const int Kd = g.Kd, P = g.P, OC = s->OC, np = (OC + nr - 1) / nr;
    float *Bp = scratch; /* np panels of (Kd, nr) */
    int *off = (int *)(scratch + round_up((size_t)OC, (size_t)nr) * Kd);
    float *slots = scratch + shared_floats(s, &g, nr);
    const size_t per = slot_floats(&g);
    const int T = g.groups * g.bpi;
    pad_classes pc;
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int j = 0; j < np; j++) {
            int n = T2I_MIN(nr, OC - j * nr);
            float *d = Bp + (size_t)j * Kd * nr;
            const float *src = w + (size_t)j * nr * Kd;
            const int kk = s->KH * s->KW;
            for (int k = 0; k < Kd; k++, d += nr) {
                int r = 0;
                if (flip) /* w[c][j*nr + r][kk - 1 - t] for tap k = (c, t) */
                    for (const float *f = w + ((size_t)(k / kk) * OC + j * nr) * kk + kk - 1 - k % kk; r < n; r++)
                        d[r] = f[(size_t)r * kk];
                else
                    for (; r < n; r++) d[r] = src[(size_t)r * Kd + k];
                for (; r < nr; r++) d[r] = 0.0f;
            }
        }
#pragma omp for schedule(static)
        for (int k = 0; k < Kd; k++) {
            int c = k / (s->KH * s->KW), t = k % (s->KH * s->KW);
            off[k] = (c * g.PH + t / s->KW) * g.PW + t % s->KW;
        }
#pragma omp single
        pc = build_classes(off + Kd, s, class_split(s, g.G, g.rb, mr), off, nr);
        float *pad = slots + (size_t)t2i_thread_id() * per, *ct = pad + (size_t)g.G * g.img;
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            int n0 = t / g.bpi * g.G, images = T2I_MIN(g.G, s->N - n0);
            int oh0 = t % g.bpi * g.rb, oh1 = T2I_MIN(s->OH, oh0 + g.rb), rows = oh1 - oh0;
            fill_padded(pad, inp, s, g.PW, g.PH, g.img, n0, images, oh0 * s->stride - s->pad,
                        (rows - 1) * s->stride + s->KH);
            for (int cl = 0; cl < pc.ncls; cl++) {
                /* the class's rows in the band: r0 .. r1-1 of its first rows, the pixels of
                 * each image consecutive in out */
                int r0 = T2I_MAX(oh0, pc.start[cl]), r1 = T2I_MIN(oh1, pc.start[cl + 1]);
                if (r0 >= r1) continue;
                const int cnt = (r1 - r0) * s->OW, total = images * cnt, kc = pc.kc[cl];
                const int *toff = pc.toff + (size_t)cl * Kd, *tbk = pc.tbk + (size_t)cl * Kd;
                const float *pix0 = pad + (size_t)(r0 - oh0) * s->stride * g.PW; /* the class's first pixel */
                float *out0 = out + (size_t)n0 * OC * P + (size_t)r0 * s->OW;
                /* the next pixel: image ci, row oh and column ow of the class, cx = oh*OW + ow */
                for (int c0 = 0, ci = 0, cx = 0, oh = 0, ow = 0; c0 < total; c0 += mr) {
                    const float *a[NN_TILE_MAX_MR];
                    float *o[NN_TILE_MAX_MR + 1], *oj[NN_TILE_MAX_MR + 1]; /* where run e's row 0 would go */
                    int ra[NN_TILE_MAX_MR + 1], runs = 0; /* rows ra[e] .. ra[e+1]-1: run e, in one image */
                    int m = T2I_MIN(mr, total - c0);
                    for (int r = 0; r < m; r++) {
                        a[r] = pix0 + (size_t)ci * g.img + (size_t)oh * s->stride * g.PW + (size_t)ow * s->stride;
                        if (r == 0 || cx == 0)
                            ra[runs] = r, o[runs++] = out0 + (ptrdiff_t)((size_t)ci * OC * P + (size_t)cx) - r;
                        cx++;
                        if (++ow == s->OW) ow = 0, oh++;
                        if (cx == cnt) cx = oh = ow = 0, ci++;
                    }
                    for (int r = m; r < mr; r++) a[r] = a[m - 1];
                    ra[runs] = m;
                    for (int j = 0; j < np; j++) {
                        if (kc == Kd) gk->tile(Kd, a, off, Bp + (size_t)j * Kd * nr, ct);
                        else gk->tile_sel(kc, a, toff, tbk, Bp + (size_t)j * Kd * nr, ct);
                        for (int e = 0; e < runs; e++) oj[e] = o[e] + (size_t)j * nr * P;
                        gk->put(ct, runs, ra, oj, T2I_MIN(nr, OC - j * nr), P, 1, b ? b + j * nr : NULL, add);
                    }
                }
            }
        }
    }
}

void nn_conv_gather_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                            const nn_conv *s, int add, int nt) {
    gather_run(out, scratch, inp, w, b, s, add, nt, 0);
}

/* ------------------------------------------------------------------ forward by row tiles
 *
 * A stride-1 conv with few taps (a first layer: 27 taps of 3 channels) would pay the
 * gathered tiles' transposed write for every 27 terms of a sum. Turned round
 * (conv_tile.h: nn_row_kernel), a tile is mr output channels by nr consecutive output
 * pixels of one row: tap k of those pixels is the nr floats at pad + off[k] from the
 * first pixel's corner (off[k] = (c*PH + kh)*PW + kw), loaded as they are, and the tile's
 * rows are the output's own rows in NCHW, stored straight from the registers. The weights
 * are packed once per call into panels of mr channels. Blocks: bands of output rows of one
 * image (the whole image when its padded copy fits pad_block_floats), each thread its own
 * padded copy. The sums are the im2col road's (k in order from 0, then the bias): the same
 * bits. */

typedef struct {
    int PW, PH, rb, bpi; /* padded row length and rows per band; bands of rb output rows, bpi per image */
    size_t img;          /* floats of a band's padded copy: C*PH*PW */
} rows_plan;

static rows_plan rows_plan_for(const nn_conv *s) {
    rows_plan p;
    p.PW = s->W + 2 * s->pad;
    size_t row = (size_t)s->C * p.PW; /* each further output row */
    long fit = (long)T2I_MIN((size_t)s->OH + s->KH, pad_block_floats / row) - (s->KH - 1); /* rows of a band */
    p.rb = (int)T2I_MAX(1, T2I_MIN((long)s->OH, fit));
    p.bpi = (s->OH + p.rb - 1) / p.rb;
    p.PH = p.rb + s->KH - 1;
    p.img = (size_t)s->C * p.PH * p.PW;
    return p;
}

int nn_conv_rows_serves(const nn_conv *s) {
    const nn_row_kernel *rk = nn_row_kernel_get();
    /* stride 1; the taps the gathered forward leaves; channels for a panel; rows of half a
     * tile at least (a narrower row would leave most lanes idle) */
    return s->stride == 1 && s->C * s->KH * s->KW < 64 && s->OC >= rk->mr && 2 * s->OW >= rk->nr &&
           !(s->KH == 1 && s->KW == 1 && s->pad == 0);
}

static size_t rows_shared_floats(const nn_conv *s) {
    size_t Kd = (size_t)s->C * s->KH * s->KW;
    return round_up(((size_t)s->OC + NN_TILE_MAX_MR) * Kd + Kd, 16); /* panels of mr | 4, 6 or 8 */
}

static size_t rows_slot_floats(const rows_plan *p) { return round_up(p->img + NN_TILE_MAX_NR, 16); }

size_t nn_conv_rows_scratch(const nn_conv *s, int nslots) {
    rows_plan p = rows_plan_for(s);
    return rows_shared_floats(s) + (size_t)nslots * rows_slot_floats(&p);
}

void nn_conv_rows_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                          const nn_conv *s, int add, int nt) {
    const nn_row_kernel *rk = nn_row_kernel_get();
    const int mr = rk->mr, nr = rk->nr, OC = s->OC, Kd = s->C * s->KH * s->KW, mp = (OC + mr - 1) / mr;
    const rows_plan p = rows_plan_for(s);
    const size_t P = (size_t)s->OH * s->OW, per = rows_slot_floats(&p);
    float *Ap = scratch; /* mp panels of (Kd, mr) */
    int *off = (int *)(scratch + ((size_t)OC + NN_TILE_MAX_MR) * Kd);
    float *slots = scratch + rows_shared_floats(s);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int i = 0; i < mp; i++) {
            int m = T2I_MIN(mr, OC - i * mr);
            float *d = Ap + (size_t)i * Kd * mr;
            for (int k = 0; k < Kd; k++, d += mr)
                for (int r = 0; r < mr; r++) d[r] = r < m ? w[(size_t)(i * mr + r) * Kd + k] : 0.0f;
        }
#pragma omp for schedule(static)
        for (int k = 0; k < Kd; k++) {
            int c = k / (s->KH * s->KW), t = k % (s->KH * s->KW);
            off[k] = (c * p.PH + t / s->KW) * p.PW + t % s->KW;
        }
        float *pad = slots + (size_t)t2i_thread_id() * per;
#pragma omp for schedule(static)
        for (int t = 0; t < s->N * p.bpi; t++) {
            int n = t / p.bpi, oh0 = t % p.bpi * p.rb, rows = T2I_MIN(p.rb, s->OH - oh0);
            fill_padded(pad, inp, s, p.PW, p.PH, p.img, n, 1, oh0 - s->pad, p.PH);
            memset(pad + p.img, 0, NN_TILE_MAX_NR * sizeof(float)); /* read by a last panel's idle lanes */
            for (int oh = 0; oh < rows; oh++)
                for (int ow0 = 0; ow0 < s->OW; ow0 += nr) {
                    const float *x = pad + (size_t)oh * p.PW + ow0;
                    float *o = out + (size_t)n * OC * P + (size_t)(oh0 + oh) * s->OW + ow0;
                    for (int i = 0; i < mp; i++)
                        rk->tile(Kd, Ap + (size_t)i * Kd * mr, x, off, o + (size_t)i * mr * P, P,
                                 T2I_MIN(mr, OC - i * mr), T2I_MIN(nr, s->OW - ow0), b ? b + i * mr : NULL, add);
                }
        }
    }
}

/* Backward-data of a stride-1 conv s is a conv of dY: dx[c][ih][iw] = sum over oc, kh, kw of
 * dy[oc][ih + pad - kh][iw + pad - kw] w[oc][c][kh][kw]; with kh' = KH-1-kh it is the
 * stride-1 conv (OC -> C) of dY padded by KH-1-pad with weights w'[c][oc][kh'][kw'] =
 * w[oc][c][KH-1-kh'][KW-1-kw'], whose output is H x W again. */
static nn_conv adjoint_s1(const nn_conv *s) {
    nn_conv a = {s->N, s->OC, s->OH, s->OW, s->C, s->H, s->W, s->KH, s->KW, 1, s->KH - 1 - s->pad};
    return a;
}

int nn_conv_gather_serves_data(const nn_conv *s) {
    if (s->stride != 1 || s->KH != s->KW || s->pad > s->KH - 1) return 0;
    nn_conv a = adjoint_s1(s);
    return nn_conv_gather_serves(&a);
}

size_t nn_conv_gather_data_scratch(const nn_conv *s, int nslots) {
    nn_conv a = adjoint_s1(s);
    return nn_conv_gather_scratch(&a, nslots);
}

void nn_conv_gather_backward_data(float *dinp, float *scratch, const float *dout, const float *w, const nn_conv *s,
                                  int nt) {
    nn_conv a = adjoint_s1(s);
    gather_run(dinp, scratch, dout, w, NULL, &a, 1, nt, 1);
}

/* ------------------------------------------------------------------ strided backward-data
 *
 * At stride S, dx[c][ih][iw] takes the taps kh with ih + pad - kh a multiple of S, from
 * dY row oh = (ih + pad - kh) / S. The input pixels split into S x S phases (ih mod S,
 * iw mod S); in phase (ph, pw) the taps are kh = kh0 + S*i (kh0 = (ph + pad) mod S) and
 * oh = a + qh - i for pixel row ih = ph + S*a (qh = (ph + pad) div S): a stride-1
 * convolution of dY by a kernel of about K/S x K/S taps. Each phase runs as gathered tiles
 * over dY padded by M on every side (sdata_margin: rows outside dY read zeros), its taps at
 * offsets oc*PH*PW - i*PW - j from the pixel's (a + qh, b + qw); the weights of each
 * phase packed in panels of nr input channels. Whole images per block only. */

typedef struct {
    int M, PW, PH, G, groups;
    size_t img; /* floats of one image's padded dY */
} sdata_plan;

static void phase_taps(const nn_conv *s, int ph, int *kh0, int *n, int *q);

/* The margin of zeros around dY that the phases read: phase row ph reads dY rows
 * a + q - i for its pixel rows a < ceil((H - ph) / S) and taps i < n. */
static int sdata_margin(const nn_conv *s) {
    int M = 0;
    for (int ph = 0; ph < s->stride; ph++) {
        int k0, n, q;
        phase_taps(s, ph, &k0, &n, &q);
        if (n == 0) continue;
        int ah = (s->H - ph + s->stride - 1) / s->stride, aw = (s->W - ph + s->stride - 1) / s->stride;
        M = T2I_MAX(M, T2I_MAX(n - 1 - q, T2I_MAX(ah - 1 + q - (s->OH - 1), aw - 1 + q - (s->OW - 1))));
    }
    return M;
}

static sdata_plan sdata_plan_for(const nn_conv *s, int nt) {
    sdata_plan p;
    p.M = sdata_margin(s);
    p.PW = s->OW + 2 * p.M, p.PH = s->OH + 2 * p.M;
    p.img = (size_t)s->OC * p.PH * p.PW;
    p.G = p.img <= pad_block_floats ? (int)T2I_MIN((size_t)s->N, pad_block_floats / p.img) : 1;
    p.G = balanced_group(s->N, T2I_MIN(p.G, (s->N + nt - 1) / nt), nt);
    p.groups = (s->N + p.G - 1) / p.G;
    return p;
}

int nn_conv_gather_serves_sdata(const nn_conv *s) {
    const int S = s->stride;
    if (S < 2 || s->KH != s->KW || s->KH < S || 2 * s->C < nn_gather_kernel_get()->nr ||
        s->OC * s->KH * s->KW < 64 * S * S)
        return 0;
    sdata_plan p = sdata_plan_for(s, 1);
    return p.img <= pad_block_floats; /* whole images only */
}

size_t nn_conv_gather_sdata_scratch(const nn_conv *s, int nslots) {
    sdata_plan p = sdata_plan_for(s, 1);
    size_t taps = (size_t)s->OC * s->KH * s->KW, nr = NN_TILE_MAX_NR;
    size_t shared = round_up(round_up((size_t)s->C, nr) * taps + taps + 16 * (size_t)s->stride * s->stride, 16);
    return shared + (size_t)nslots * round_up((size_t)p.G * p.img + 2 * (size_t)NN_TILE_MAX_MR * nr, 16);
}

/* The taps of phase row ph: first kh0, count n, row shift q. */
static void phase_taps(const nn_conv *s, int ph, int *kh0, int *n, int *q) {
    *kh0 = (ph + s->pad) % s->stride;
    *n = *kh0 < s->KH ? (s->KH - *kh0 + s->stride - 1) / s->stride : 0;
    *q = (ph + s->pad) / s->stride;
}

/* Phase row ph of a group of images, both column phases at once (stride 2, W even: both
 * on the grid of W/2 columns): for each tile of pixels, the tile of phase (ph, 0) and that
 * of (ph, 1) (its pixels one column of dY further by qw1 - qw0), added interleaved. The
 * same tiles and sums as phase by phase. */
static void sdata_pair(float *dinp, const float *pad, float *ct0, float *ct1, const float *bp0, const int *po0,
                       const float *bp1, const int *po1, int kd0, int kd1, const nn_conv *s, const sdata_plan *p,
                       const nn_gather_kernel *gk, int n0, int images, int ph, int qh, int qw0, int qw1) {
    const int mr = gk->mr, nr = gk->nr, S = 2, C = s->C, np = (C + nr - 1) / nr;
    const int Ah = (s->H - ph + S - 1) / S, Aw = s->W / S, per_img = Ah * Aw, ncols = images * per_img;
    const size_t HW = (size_t)s->H * s->W;
    for (int c0 = 0; c0 < ncols; c0 += mr) {
        const float *a0[NN_TILE_MAX_MR], *a1[NN_TILE_MAX_MR];
        float *o[NN_TILE_MAX_MR + 1], *oj[NN_TILE_MAX_MR + 1]; /* run e's row 0 in dinp, phase (ph, 0) */
        int ra[NN_TILE_MAX_MR + 1], runs = 0; /* rows ra[e] .. ra[e+1]-1: run e, in one pixel row */
        int m = T2I_MIN(mr, ncols - c0);
        for (int r = 0; r < mr; r++) {
            int q = c0 + T2I_MIN(r, m - 1), g = q / per_img, l = q % per_img, ya = l / Aw, xb = l % Aw;
            a0[r] = pad + (size_t)g * p->img + (size_t)(ya + qh + p->M) * p->PW + xb + qw0 + p->M;
            a1[r] = a0[r] + (qw1 - qw0);
            if (r < m && (r == 0 || xb == 0))
                ra[runs] = r,
                o[runs++] = dinp + (ptrdiff_t)((size_t)(n0 + g) * C * HW + (size_t)(ph + S * ya) * s->W + S * xb) - S * r;
        }
        ra[runs] = m;
        for (int jp = 0; jp < np; jp++) {
            gk->tile(kd0, a0, po0, bp0 + (size_t)jp * kd0 * nr, ct0);
            gk->tile(kd1, a1, po1, bp1 + (size_t)jp * kd1 * nr, ct1);
            for (int e = 0; e < runs; e++) oj[e] = o[e] + (size_t)jp * nr * HW;
            gk->put2(ct0, ct1, runs, ra, oj, T2I_MIN(nr, C - jp * nr), HW);
        }
    }
}

void nn_conv_gather_backward_sdata(float *dinp, float *scratch, const float *dout, const float *w, const nn_conv *s,
                                   int nt) {
    const nn_gather_kernel *gk = nn_gather_kernel_get();
    const int mr = gk->mr, nr = gk->nr, S = s->stride, K = s->KH, C = s->C, OC = s->OC, np = (C + nr - 1) / nr;
    sdata_plan p = sdata_plan_for(s, nt);
    const size_t HW = (size_t)s->H * s->W, taps = (size_t)OC * K * K;
    float *Bp = scratch; /* per phase: np panels of (its taps, nr) */
    int *off = (int *)(scratch + round_up((size_t)C, (size_t)nr) * taps);
    float *slots = scratch + round_up(round_up((size_t)C, (size_t)nr) * taps + taps + 16 * (size_t)S * S, 16);
    const size_t per = round_up((size_t)p.G * p.img + 2 * (size_t)NN_TILE_MAX_MR * NN_TILE_MAX_NR, 16);
    const nn_conv f = {s->N, OC, s->OH, s->OW, 0, 0, 0, K, K, 1, p.M}; /* dY as an input padded by M */
#pragma omp parallel num_threads(nt)
    {
#pragma omp single
        { /* phases in order (ph, pw); each one's taps (oc, i, j) */
            size_t at = 0;
            for (int ph = 0; ph < S; ph++)
                for (int pw = 0; pw < S; pw++) {
                    int kh0, nh, qh, kw0, nw, qw;
                    phase_taps(s, ph, &kh0, &nh, &qh), phase_taps(s, pw, &kw0, &nw, &qw);
                    int kd = OC * nh * nw;
                    for (int k = 0; k < kd; k++) {
                        int oc = k / (nh * nw), i = k / nw % nh, j = k % nw;
                        off[at + k] = (oc * p.PH - i) * p.PW - j;
                        for (int jp = 0; jp < np; jp++)
                            for (int r = 0; r < nr; r++) {
                                int c = jp * nr + r;
                                Bp[(at * np + (size_t)jp * kd + k) * nr + r] =
                                    c < C ? w[(((size_t)oc * C + c) * K + kh0 + S * i) * K + kw0 + S * j] : 0.0f;
                            }
                    }
                    at += (size_t)kd;
                }
        }
        float *pad = slots + (size_t)t2i_thread_id() * per, *ct = pad + (size_t)p.G * p.img;
        float *ct1 = ct + NN_TILE_MAX_MR * NN_TILE_MAX_NR;
#pragma omp for schedule(static)
        for (int t = 0; t < p.groups; t++) {
            int n0 = t * p.G, images = T2I_MIN(p.G, s->N - n0);
            fill_padded(pad, dout, &f, p.PW, p.PH, p.img, n0, images, -p.M, p.PH);
            size_t at = 0;
            for (int ph = 0; ph < S; ph++)
                for (int pw = 0; pw < S; pw++) {
                    int kh0, nh, qh, kw0, nw, qw;
                    phase_taps(s, ph, &kh0, &nh, &qh), phase_taps(s, pw, &kw0, &nw, &qw);
                    int kd = OC * nh * nw, Ah = (s->H - ph + S - 1) / S, Aw = (s->W - pw + S - 1) / S;
                    int per_img = Ah * Aw, ncols = images * per_img;
                    const float *bp = Bp + at * np * nr;
                    const int *po = off + at;
                    at += (size_t)kd;
                    if (kd == 0) continue;
                    int kw1, nw1, qw1;
                    phase_taps(s, 1, &kw1, &nw1, &qw1);
                    if (S == 2 && pw == 0 && s->W % (2 * mr) == 0 && nw1 > 0) {
                        /* both column phases on one grid of rows of whole tiles: their tiles
                         * side by side, added interleaved (put2: one vector per channel where
                         * put adds two). Rows of 7 (b1_d2) measured no faster so: their tiles
                         * straddle rows, and the pair reads twice the panels per tile */
                        const int kd1 = OC * nh * nw1;
                        sdata_pair(dinp, pad, ct, ct1, bp, po, Bp + at * np * nr, off + at, kd, kd1, s, &p, gk, n0,
                                   images, ph, qh, qw, qw1);
                        at += (size_t)kd1;
                        break;
                    }
                    for (int c0 = 0; c0 < ncols; c0 += mr) {
                        const float *a[NN_TILE_MAX_MR];
                        float *o[NN_TILE_MAX_MR + 1]; /* run e's channel 0 in dinp, as if it began at row 0 */
                        int ra[NN_TILE_MAX_MR + 1], runs = 0; /* rows ra[e] .. ra[e+1]-1: run e, in one pixel row */
                        int m = T2I_MIN(mr, ncols - c0);
                        for (int r = 0; r < mr; r++) {
                            int q = c0 + T2I_MIN(r, m - 1), g = q / per_img, l = q % per_img;
                            int ya = l / Aw, xb = l % Aw;
                            a[r] = pad + (size_t)g * p.img + (size_t)(ya + qh + p.M) * p.PW + xb + qw + p.M;
                            if (r < m && (r == 0 || xb == 0)) /* the phase's pixels of a row are S apart */
                                ra[runs] = r, o[runs++] = dinp +
                                                          (ptrdiff_t)((size_t)(n0 + g) * C * HW +
                                                                      (size_t)(ph + S * ya) * s->W + pw + S * xb) -
                                                          S * r;
                        }
                        ra[runs] = m;
                        for (int jp = 0; jp < np; jp++) {
                            float *oj[NN_TILE_MAX_MR + 1];
                            gk->tile(kd, a, po, bp + (size_t)jp * kd * nr, ct);
                            for (int e = 0; e < runs; e++) oj[e] = o[e] + (size_t)jp * nr * HW;
                            gk->put(ct, runs, ra, oj, T2I_MIN(nr, C - jp * nr), HW, S, NULL, 1);
                        }
                    }
                }
        }
    }
}

/* ------------------------------------------------------------------ weight gradient
 *
 * dW (OC, Kd) += dY (OC, cols) col(x)^T (cols, Kd), by blocks of columns: tiles of mr taps
 * by nr channels summed over all the block's pixels, tap r read at pad[tapoff_r + pixoff[k]]
 * (the gathered kernel with the roles of its offsets exchanged: the rows are taps, the sum
 * runs over pixels), dY packed transposed in panels of nr channels (16 x 16 transposes on
 * avx512). No im2col, so a block holds only its padded input (a 1x1 conv's whole images:
 * none, the input is read in place) and packed dY, and can be long: each tile's sum runs over
 * many pixels before it is added into dW (blocks of the im2col road are 4 to 8 times
 * shorter for these shapes). The blocks are summed in WSPLIT fixed chunks, each into its
 * own copy of dW (a tile's columns are written as rows of dW), the copies then added in
 * chunk order: no dependence on the thread count. */

#define WSPLIT 8

typedef struct {
    int G, rb, bpi, T; /* G images per block, or (G == 1) bands of rb rows, bpi per image; T blocks */
} wplan;

/* Floats of a block of the given images and output rows: padded input, packed dY, offsets. */
static size_t wblock_floats(const nn_conv *s, int images, int rows, int nr) {
    size_t pad = (size_t)s->C * ((size_t)(rows - 1) * s->stride + s->KH) * (s->W + 2 * s->pad);
    size_t cols = (size_t)images * rows * s->OW;
    return round_up((size_t)images * pad, 16) + round_up((size_t)s->OC, (size_t)nr) * cols + cols + 16;
}

static wplan wplan_for(const nn_conv *s, int nr) {
    wplan p;
    size_t budget = 4 * pad_block_floats, one = wblock_floats(s, 1, s->OH, nr); /* 1 MiB, as an im2col block */
    if (one <= budget) {
        p.G = (int)T2I_MIN((size_t)s->N, budget / one);
        p.G = balanced_group(s->N, T2I_MIN(p.G, (s->N + WSPLIT - 1) / WSPLIT), WSPLIT); /* a block per chunk at least */
        p.rb = s->OH, p.bpi = 1;
    } else {
        p.G = 1, p.rb = s->OH;
        while (p.rb > 1 && wblock_floats(s, 1, p.rb, nr) > budget) p.rb = (p.rb + 1) / 2;
        p.bpi = (s->OH + p.rb - 1) / p.rb;
    }
    p.T = (s->N + p.G - 1) / p.G * p.bpi;
    return p;
}

int nn_conv_gather_serves_weight(const nn_conv *s) {
    /* ops_conv.c takes few taps or few channels by dot products; the tiles here want a
     * panel of channels mostly filled */
    const int Kd = s->C * s->KH * s->KW;
    return Kd > 64 && 2 * s->OC >= nn_gather_kernel_get()->nr;
}

size_t nn_conv_gather_weight_scratch(const nn_conv *s, int nslots) {
    const int nr = NN_TILE_MAX_NR;
    wplan p = wplan_for(s, nr);
    size_t slot = round_up(wblock_floats(s, p.G, p.rb, nr) + (size_t)NN_TILE_MAX_MR * nr, 16);
    return round_up((size_t)WSPLIT * s->OC * s->C * s->KH * s->KW, 16) + (size_t)nslots * slot;
}

/* acc (OC, Kd) += the block of images n0 .. n0+images-1, output rows [oh0, oh1) (= when
 * first). */
static void wblock(float *acc, float *buf, float *ct, const float *inp, const float *dout, const nn_conv *s,
                   const nn_gather_kernel *gk, int n0, int images, int oh0, int oh1, int first) {
    const int mr = gk->mr, nr = gk->nr, OC = s->OC, np = (OC + nr - 1) / nr, kk = s->KH * s->KW;
    const int Kd = s->C * kk, rows = oh1 - oh0, per_img = rows * s->OW, cols = images * per_img;
    const int PW = s->W + 2 * s->pad, PH = (rows - 1) * s->stride + s->KH;
    const size_t img = (size_t)s->C * PH * PW, P = (size_t)s->OH * s->OW;
    float *Ypk = buf + round_up((size_t)images * img, 16);
    int *pixoff = (int *)(Ypk + (size_t)np * nr * cols);
    const float *pad = buf;
    if (s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0 && rows == s->OH)
        pad = inp + (size_t)n0 * img; /* whole images of a 1x1 conv: the input is its own padded copy */
    else
        fill_padded(buf, inp, s, PW, PH, img, n0, images, oh0 * s->stride - s->pad, PH);
    for (int c = 0; c < cols; c++) {
        int g = c / per_img, l = c % per_img;
        pixoff[c] = (int)((size_t)g * img) + l / s->OW * s->stride * PW + l % s->OW * s->stride;
    }
    const nn_transpose_fn transpose = nn_transpose_get();
    for (int j = 0; j < np; j++) {
        float *d = Ypk + (size_t)j * nr * cols;
        int n = T2I_MIN(nr, OC - j * nr);
        if (n < nr) memset(d, 0, (size_t)nr * cols * sizeof(float)); /* the panel's channels past OC */
        for (int g = 0; g < images; g++)
            transpose(d + (size_t)g * per_img * nr, (size_t)nr,
                      dout + ((size_t)(n0 + g) * OC + j * nr) * P + (size_t)oh0 * s->OW, P, n, per_img);
    }
    for (int i0 = 0; i0 < Kd; i0 += mr) {
        const float *a[NN_TILE_MAX_MR];
        int m = T2I_MIN(mr, Kd - i0);
        for (int r = 0; r < mr; r++) {
            int k = i0 + T2I_MIN(r, m - 1), c = k / kk, t = k % kk;
            a[r] = pad + ((size_t)c * PH + t / s->KW) * PW + t % s->KW;
        }
        for (int j = 0; j < np; j++) {
            int n = T2I_MIN(nr, OC - j * nr);
            gk->tile(cols, a, pixoff, Ypk + (size_t)j * nr * cols, ct);
            /* the tile's column jj: m taps of channel j*nr + jj (a first block's -0 becomes
             * +0, which the chunks' sum makes of it anyway) */
            int ra[2] = {0, m};
            float *o = acc + (size_t)j * nr * Kd + i0;
            gk->put(ct, 1, ra, &o, n, (size_t)Kd, 1, NULL, !first);
        }
    }
}

void nn_conv_gather_backward_weight(float *dw, float *scratch, const float *dout, const float *inp, const nn_conv *s,
                                    int nt) {
    const nn_gather_kernel *gk = nn_gather_kernel_get();
    wplan p = wplan_for(s, gk->nr);
    const size_t Kd = (size_t)s->C * s->KH * s->KW, nw = Kd * s->OC;
    float *part = scratch, *slots = scratch + round_up((size_t)WSPLIT * nw, 16);
    const size_t per = round_up(wblock_floats(s, p.G, p.rb, gk->nr) + (size_t)gk->mr * gk->nr, 16);
#pragma omp parallel num_threads(nt)
    {
        float *buf = slots + (size_t)t2i_thread_id() * per, *ct = buf + per - (size_t)gk->mr * gk->nr;
#pragma omp for schedule(static)
        for (int chunk = 0; chunk < WSPLIT; chunk++) {
            float *acc = part + (size_t)chunk * nw;
            int t0 = chunk * p.T / WSPLIT, t1 = (chunk + 1) * p.T / WSPLIT;
            if (t0 == t1) memset(acc, 0, nw * sizeof(float));
            for (int t = t0; t < t1; t++) {
                int n0 = t / p.bpi * p.G, oh0 = t % p.bpi * p.rb;
                wblock(acc, buf, ct, inp, dout, s, gk, n0, T2I_MIN(p.G, s->N - n0), oh0, T2I_MIN(s->OH, oh0 + p.rb),
                       t == t0);
            }
        }
#pragma omp for schedule(static)
        for (size_t e = 0; e < nw; e++) {
            float v = 0.0f;
            for (int chunk = 0; chunk < WSPLIT; chunk++) v += part[(size_t)chunk * nw + e];
            dw[e] += v;
        }
    }
}
