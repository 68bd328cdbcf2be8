/* sr_upscale.c - tiled, memory-bounded inference of SR generators, and `t2i sr upscale`.
 *
 * Inference does not go through nn_seq_forward (which keeps every layer's output for a
 * backward pass); it walks the same layer list with a few reusable buffers:
 *   - a buffer is reference-counted: the running activation holds one reference, an open
 *     residual block (res_begin) another, so an activation that is also a skip input is
 *     never overwritten in place;
 *   - ReLU and the residual additions run in place when nothing else holds the buffer;
 *   - a convolution is computed on bands of output rows, the bands spread over the threads,
 *     each with its own scratch of SR_*_BAND_FLOATS (sized to stay in cache, and bounded
 *     whatever the tile) and a single-threaded GEMM: 3x3 ones by Winograd F(2x2, 3x3)
 *     (nn/winograd.c: 2.25x fewer multiplications), others by im2col of the band's rows;
 *     the last layer (64 -> 3) directly, with its sums in AVX2 registers, when the CPU
 *     has them;
 *   - a convolution followed by PixelShuffle writes its bands straight to the shuffled
 *     positions (no second full-size buffer).
 * For a tile of T + 2*overlap LR pixels the largest buffer is width * (scale * (T + 2 *
 * overlap))^2 floats (115 MB for b4 x4 with T = 128 and overlap 20), allocated once per
 * call and reused for every tile.
 *
 * Tiles: the LR image is cut into tile x tile cores; each core is run with up to
 * `overlap` real neighbouring pixels on each side (fewer at the image border, where the
 * network's own zero padding applies, as in the untiled run), and only the core's
 * output is kept (centre crop, no blending). With overlap >= sr_receptive_radius the
 * kept pixels never see the tile's artificial edges, so tiled == untiled up to the
 * rounding of differently blocked GEMMs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "image.h"
#include "ops.h"
#include "progress.h"
#include "sr.h"

#ifdef _OPENMP
#include <omp.h>
static int t2i_thread_num(void) { return omp_get_thread_num(); }
#else
static int t2i_thread_num(void) { return 0; }
#endif

#define SR_SLOTS 6
#define SR_MAX_THREADS 64
#define SR_DIRECT_MAX_OC 4 /* convolutions with at most this many outputs skip im2col + GEMM */
#define SR_DIRECT_X 16      /* pixels per register block of the direct convolution (two sr_v8) */
#define SR_DIRECT_ROWS 8    /* output rows per band of the direct convolution */
typedef float sr_v8 __attribute__((vector_size(32)));
/* The direct kernel is compiled for AVX2 + FMA and chosen at run time; other CPUs use the
 * GEMM path (the portable build has no AVX, and 8-register blocks spill on SSE). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SR_HAVE_DIRECT 1
#else
#define SR_HAVE_DIRECT 0
#endif
/* Scratch floats per band and thread (measured on B4, 2 threads: 1M floats for Winograd
 * ran 572 ms, 512K 824 ms, 2M 583 ms; 512K best for im2col, 875 vs 957 ms at 1M). */
#define SR_WINO_BAND_FLOATS ((size_t)1 << 20)
#define SR_GEMM_BAND_FLOATS ((size_t)1 << 19)
/* Copies smaller than this (floats) stay serial: thread start-up and barriers cost more
 * than they save on small tiles, and far more when the cores are oversubscribed. */
#define SR_OMP_MIN ((size_t)1 << 16)

typedef struct {
    float *p[SR_SLOTS];
    size_t cap[SR_SLOTS];
    int ref[SR_SLOTS];
    /* per thread: conv scratch and band output (before a pixel shuffle); the tile input; the
     * layer's weights rearranged for its kernel (Winograd U, or the direct kernel's w4) */
    float *band[SR_MAX_THREADS], *scratch[SR_MAX_THREADS], *in, *wt;
    size_t band_cap[SR_MAX_THREADS], scratch_cap[SR_MAX_THREADS], in_cap, wt_cap;
} sr_ws;

static float *grow(float **p, size_t *cap, size_t n) {
    if (*cap < n) {
        t2i_free(*p);
        *p = t2i_malloc_aligned(n * sizeof(float));
        *cap = n;
    }
    return *p;
}

/* A free buffer of at least n floats: the smallest free one that fits, else the largest
 * free one, grown - so the few large (HR) buffers are reused rather than multiplied. */
static int slot_get(sr_ws *ws, size_t n) {
    int fit = -1, big = -1;
    for (int i = 0; i < SR_SLOTS; i++) {
        if (ws->ref[i]) continue;
        if (ws->cap[i] >= n && (fit < 0 || ws->cap[i] < ws->cap[fit])) fit = i;
        if (big < 0 || ws->cap[i] > ws->cap[big]) big = i;
    }
    T2I_ASSERTF(big >= 0, "SR inference: more than %d live buffers (residual blocks nested too deeply)", SR_SLOTS);
    int s = fit >= 0 ? fit : big;
    grow(&ws->p[s], &ws->cap[s], n);
    ws->ref[s] = 1;
    return s;
}

static void slot_release(sr_ws *ws, int s) {
    if (s >= 0) {
        T2I_ASSERT(ws->ref[s] > 0);
        ws->ref[s]--;
    }
}

static void ws_free(sr_ws *ws) {
    for (int i = 0; i < SR_SLOTS; i++) t2i_free(ws->p[i]);
    for (int t = 0; t < SR_MAX_THREADS; t++) t2i_free(ws->band[t]), t2i_free(ws->scratch[t]);
    t2i_free(ws->in), t2i_free(ws->wt);
    memset(ws, 0, sizeof *ws);
}

/* A stride-1 "same" convolution with at most SR_DIRECT_MAX_OC outputs (the last layer:
 * 64 -> 3), computed directly: as a GEMM its 3-row weight matrix would leave the kernel
 * mostly idle while im2col writes C*k*k floats per pixel. Output rows [r0, r0 + nr):
 * their input rows with a zero halo are copied into pad (C, nr + k - 1, PW), PW a multiple
 * of SR_DIRECT_X plus the halo; each block of SR_DIRECT_X pixels keeps its
 * SR_DIRECT_MAX_OC x SR_DIRECT_X sums in registers over all C*k*k taps. w4 holds the
 * weights as (C, k, k, SR_DIRECT_MAX_OC), zero beyond OC. out (OC, H, W). */
#if SR_HAVE_DIRECT
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) static void
conv_rows_direct(float *out, float *pad, const float *in, int C, int H, int W, const float *w4, const float *b, int OC,
                 int k, int r0, int nr) {
    enum { X = SR_DIRECT_X, O = SR_DIRECT_MAX_OC };
    int p = (k - 1) / 2, PH = nr + k - 1, PW = (W + X - 1) / X * X + k - 1;
    size_t plane = (size_t)H * W;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < PH; y++) {
            float *drow = pad + ((size_t)c * PH + y) * PW;
            int sy = r0 - p + y;
            memset(drow, 0, (size_t)PW * sizeof(float));
            if (sy >= 0 && sy < H) memcpy(drow + p, in + c * plane + (size_t)sy * W, (size_t)W * sizeof(float));
        }
    for (int y = 0; y < nr; y++)
        for (int x0 = 0; x0 < W; x0 += X) {
            /* 4 outputs x 16 pixels in eight 8-float registers (two 4-float ones without AVX) */
            sr_v8 a0 = (sr_v8){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < k; kh++) {
                    const float *src = pad + ((size_t)c * PH + y + kh) * PW + x0;
                    const float *wq = w4 + ((size_t)(c * k + kh) * k) * O;
                    for (int kw = 0; kw < k; kw++, wq += O) {
                        sr_v8 s0, s1;
                        memcpy(&s0, src + kw, sizeof s0);
                        memcpy(&s1, src + kw + 8, sizeof s1);
                        a0 += wq[0] * s0, a1 += wq[0] * s1, a2 += wq[1] * s0, a3 += wq[1] * s1;
                        a4 += wq[2] * s0, a5 += wq[2] * s1, a6 += wq[3] * s0, a7 += wq[3] * s1;
                    }
                }
            float acc[O][X];
            memcpy(acc[0], &a0, 32), memcpy(acc[0] + 8, &a1, 32), memcpy(acc[1], &a2, 32), memcpy(acc[1] + 8, &a3, 32);
            memcpy(acc[2], &a4, 32), memcpy(acc[2] + 8, &a5, 32), memcpy(acc[3], &a6, 32), memcpy(acc[3] + 8, &a7, 32);
            int n = T2I_MIN(X, W - x0);
            for (int o = 0; o < OC; o++) {
                float bv = b ? b[o] : 0.0f, *dst = out + o * plane + (size_t)(r0 + y) * W + x0;
                for (int i = 0; i < n; i++) dst[i] = acc[o][i] + bv;
            }
        }
}
#endif

/* out = conv(in) for a stride-1 k x k convolution with "same" padding, in bands of rows;
 * in (C, H, W); out (OC, H, W), or (OC / r^2, H*r, W*r) shuffled when r > 1.
 * Bands run in parallel, one per thread, each with its own scratch and single-threaded
 * GEMMs (Winograd for 3x3, else im2col + one GEMM), so a band's working set stays in the
 * core's cache instead of streaming through memory as one whole-tile GEMM's would. The
 * biased result (the im2col GEMM accumulates onto the bias, beta 1) goes straight into the
 * output rows, or into a band buffer that the pixel shuffle then scatters. Layers with at
 * most SR_DIRECT_MAX_OC outputs take conv_rows_direct instead when the CPU has AVX2. */
static void conv_banded(sr_ws *ws, float *out, const float *in, int C, int H, int W, const float *w, const float *b,
                        int OC, int k, int r) {
#if SR_HAVE_DIRECT
    if (OC <= SR_DIRECT_MAX_OC && r == 1 && t2i_cpu_avx2_fma()) {
        int rows = T2I_MIN(H, SR_DIRECT_ROWS), nb = (H + rows - 1) / rows;
        int nt = T2I_MIN(T2I_MIN(t2i_get_threads(), SR_MAX_THREADS), nb);
        int PW = (W + SR_DIRECT_X - 1) / SR_DIRECT_X * SR_DIRECT_X + k - 1;
        size_t nw = (size_t)C * k * k * SR_DIRECT_MAX_OC;
        for (int t = 0; t < nt; t++) grow(&ws->scratch[t], &ws->scratch_cap[t], (size_t)C * (rows + k - 1) * PW);
        float *w4 = grow(&ws->wt, &ws->wt_cap, nw);
        memset(w4, 0, nw * sizeof(float));
        for (int o = 0; o < OC; o++)
            for (int j = 0; j < C * k * k; j++) w4[(size_t)j * SR_DIRECT_MAX_OC + o] = w[(size_t)o * C * k * k + j];
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
        for (int bi = 0; bi < nb; bi++)
            conv_rows_direct(out, ws->scratch[t2i_thread_num()], in, C, H, W, w4, b, OC, k, bi * rows,
                             T2I_MIN(rows, H - bi * rows));
        return;
    }
#endif
    int wino = k == 3;
    nn_conv s = nn_conv2d_shape(1, C, H, W, OC, k, 1, (k - 1) / 2);
    int ckk = C * k * k;
    /* scratch per output row: Winograd's grows by the same amount for every pair of rows */
    size_t per_row = wino ? (nn_winograd_scratch(C, OC, W, 2) - nn_winograd_scratch(C, OC, W, 0)) / 2
                          : (size_t)ckk * W;
    if (r > 1) per_row += (size_t)OC * W;
    size_t budget = wino ? SR_WINO_BAND_FLOATS : SR_GEMM_BAND_FLOATS;
    int rows = (int)(budget / per_row);
    if (wino) rows &= ~1;
    if (rows < 2) rows = 2;
    if (rows > H) rows = H;
    int nb = (H + rows - 1) / rows;
    int nt = T2I_MIN(t2i_get_threads(), SR_MAX_THREADS);
    if (nt > nb) nt = nb;
    for (int t = 0; t < nt; t++) {
        grow(&ws->scratch[t], &ws->scratch_cap[t], wino ? nn_winograd_scratch(C, OC, W, rows) : (size_t)ckk * rows * W);
        if (r > 1) grow(&ws->band[t], &ws->band_cap[t], (size_t)OC * rows * W);
    }
    float *U = NULL;
    if (wino) {
        U = grow(&ws->wt, &ws->wt_cap, (size_t)16 * OC * C);
        nn_winograd_weights(U, w, OC, C);
    }
    size_t plane = (size_t)H * W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int bi = 0; bi < nb; bi++) {
        int t = t2i_thread_num(), r0 = bi * rows, nr = T2I_MIN(rows, H - r0);
        size_t n = (size_t)nr * W;
        float *y = r > 1 ? ws->band[t] : out + (size_t)r0 * W;
        size_t ldy = r > 1 ? n : plane;
        if (wino) {
            nn_winograd_rows(y, ldy, in, C, H, W, U, b, OC, r0, nr, ws->scratch[t]);
        } else {
            float *col = ws->scratch[t];
            nn_im2col_rows(col, in, &s, r0, r0 + nr);
            for (int oc = 0; oc < OC; oc++) {
                float bv = b ? b[oc] : 0.0f, *yr = y + oc * ldy;
                for (size_t i = 0; i < n; i++) yr[i] = bv;
            }
            /* inside the parallel region OpenBLAS runs on the calling thread */
            nn_gemm_serial(0, 0, OC, (int)n, ckk, 1.0f, w, ckk, col, (int)n, 1.0f, y, (int)ldy);
        }
        if (r > 1) {
            /* PixelShuffle: out[c][(y*r + i)][x*r + j] = band[c*r*r + i*r + j][y][x] */
            int OW = W * r;
            size_t oplane = plane * r * r;
            for (int oc = 0; oc < OC; oc++) {
                int c = oc / (r * r), i = (oc / r) % r, j = oc % r;
                const float *src = y + (size_t)oc * n;
                float *dst = out + (size_t)c * oplane;
                for (int yy = 0; yy < nr; yy++) {
                    float *drow = dst + (size_t)((r0 + yy) * r + i) * OW + j;
                    const float *srow = src + (size_t)yy * W;
                    for (int x = 0; x < W; x++) drow[(size_t)x * r] = srow[x];
                }
            }
        }
    }
}

/* Runs generator g on x (3, h, w); returns the output (3, h*s, w*s), held in a slot of
 * ws that is released for the next call. */
static const float *infer(const nn_seq *g, sr_ws *ws, const float *x, int h, int w, int *out_slot) {
    const nn_params *ps = g->ps;
    int C = g->in_C, H = h, W = w;
    const float *cur = x;
    int cs = -1;
    int stack_slot[16];
    const float *stack_ptr[16];
    int sp = 0;
    for (int i = 0; i < g->n; i++) {
        const nn_layer *l = &g->L[i];
        size_t n = (size_t)C * H * W;
        switch (l->kind) {
        case NN_L_CONV: {
            T2I_ASSERTF(l->stride == 1 && l->pad == (l->k - 1) / 2 && l->k % 2 == 1 && !l->sn,
                        "SR inference supports stride-1 'same' convolutions only");
            int r = i + 1 < g->n && g->L[i + 1].kind == NN_L_PIXEL_SHUFFLE ? g->L[i + 1].factor : 1;
            int os = slot_get(ws, (size_t)l->OC * H * W);
            conv_banded(ws, ws->p[os], cur, C, H, W, nn_params_val((nn_params *)ps, l->iw),
                        l->ib >= 0 ? nn_params_val((nn_params *)ps, l->ib) : NULL, l->OC, l->k, r);
            slot_release(ws, cs);
            cs = os, cur = ws->p[os];
            C = l->OC / (r * r), H *= r, W *= r;
            if (r > 1) i++; /* the shuffle is done */
            break;
        }
        case NN_L_ACT:
            if (cs >= 0 && ws->ref[cs] == 1) {
                nn_act_forward(ws->p[cs], cur, n, l->act, l->slope);
            } else {
                int os = slot_get(ws, n);
                nn_act_forward(ws->p[os], cur, n, l->act, l->slope);
                slot_release(ws, cs);
                cs = os, cur = ws->p[os];
            }
            break;
        case NN_L_PIXEL_SHUFFLE: {
            int os = slot_get(ws, n);
            nn_pixel_shuffle_forward(ws->p[os], cur, 1, C / (l->factor * l->factor), H, W, l->factor);
            slot_release(ws, cs);
            cs = os, cur = ws->p[os];
            C /= l->factor * l->factor, H *= l->factor, W *= l->factor;
            break;
        }
        case NN_L_RES_BEGIN:
            T2I_ASSERT(sp < 16);
            stack_slot[sp] = cs, stack_ptr[sp] = cur, sp++;
            if (cs >= 0) ws->ref[cs]++;
            break;
        case NN_L_RES_END: {
            T2I_ASSERT(sp > 0);
            sp--;
            const float *skip = stack_ptr[sp];
            float sc = l->res_scale;
            float *y;
            if (cs >= 0 && ws->ref[cs] == 1) {
                y = ws->p[cs];
            } else {
                int os = slot_get(ws, n);
                y = ws->p[os];
                for (size_t k = 0; k < n; k++) y[k] = cur[k];
                slot_release(ws, cs);
                cs = os;
            }
#pragma omp parallel for simd schedule(static) if (n >= SR_OMP_MIN)
            for (size_t k = 0; k < n; k++) y[k] = skip[k] + sc * y[k];
            slot_release(ws, stack_slot[sp]);
            cur = y;
            break;
        }
        default:
            T2I_ASSERTF(0, "SR inference: layer kind %d is not supported", (int)l->kind);
        }
    }
    T2I_ASSERT(sp == 0 && cs >= 0);
    *out_slot = cs;
    return cur;
}

static inline uint8_t to_u8(float x) {
    float v = (x + 1.0f) * 127.5f;
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

/* One row of tiles (input rows ty .. ty+tile-1). Input from floats (3, h, w) or 8-bit
 * (h, w, 3); output to floats (3, h*s, w*s) or 8-bit rows of w*s*3 bytes, where row r of
 * the output lands at row r - row0 of yf/yu (row0 = 0: the whole image; row0 = ty*s: a
 * band buffer). */
static void run_tile_row(const nn_seq *g, sr_ws *ws, int s, const float *xf, const uint8_t *xu, int h, int w, int ty,
                         int tile, int overlap, float *yf, uint8_t *yu, int row0, t2i_progress *prog, long *done) {
    size_t oplane = (size_t)h * s * w * s;
    for (int tx = 0; tx < w; tx += tile) {
        int th = T2I_MIN(tile, h - ty), tw = T2I_MIN(tile, w - tx);
        int y0 = T2I_MAX(0, ty - overlap), y1 = T2I_MIN(h, ty + th + overlap);
        int x0 = T2I_MAX(0, tx - overlap), x1 = T2I_MIN(w, tx + tw + overlap);
        int ih = y1 - y0, iw = x1 - x0;
        float *in = grow(&ws->in, &ws->in_cap, (size_t)3 * ih * iw);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < ih; y++)
                for (int x = 0; x < iw; x++)
                    in[((size_t)c * ih + y) * iw + x] =
                        xf ? xf[((size_t)c * h + y0 + y) * w + x0 + x]
                           : (float)xu[(((size_t)(y0 + y)) * w + x0 + x) * 3 + c] / 127.5f - 1.0f;
        int slot;
        const float *out = infer(g, ws, in, ih, iw, &slot);
        int OW = iw * s, oy = (ty - y0) * s, ox = (tx - x0) * s;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < th * s; y++) {
                const float *src = out + ((size_t)c * ih * s + oy + y) * OW + ox;
                size_t drow = (size_t)(ty * s + y - row0) * w * s + (size_t)tx * s;
                if (yf)
                    memcpy(yf + c * oplane + drow, src, (size_t)tw * s * sizeof(float));
                else
                    for (int x = 0; x < tw * s; x++) yu[(drow + x) * 3 + c] = to_u8(src[x]);
            }
        slot_release(ws, slot);
        ++*done;
        if (prog) t2i_progress_update(prog, *done, "tile %dx%d", iw, ih);
    }
}

/* The whole image into yf (floats) or yu (8-bit). */
static void run_tiles(const nn_seq *g, int s, const float *xf, const uint8_t *xu, int h, int w, float *yf, uint8_t *yu,
                      int tile, int overlap) {
    if (tile <= 0) tile = T2I_MAX(h, w);
    if (overlap < 0) overlap = sr_receptive_radius(g);
    sr_ws ws;
    memset(&ws, 0, sizeof ws);
    long done = 0;
    for (int ty = 0; ty < h; ty += tile) run_tile_row(g, &ws, s, xf, xu, h, w, ty, tile, overlap, yf, yu, 0, NULL, &done);
    ws_free(&ws);
}

void sr_upscale_image(const nn_seq *g, int scale, const float *x, int h, int w, float *y, int tile, int overlap) {
    T2I_ASSERT(g && x && y && h > 0 && w > 0 && (scale == 2 || scale == 4));
    run_tiles(g, scale, x, NULL, h, w, y, NULL, tile, overlap);
}

void sr_upscale_batch(const sr_model *m, const float *x, int N, int h, int w, float *y) {
    int s = m->cfg.scale;
    size_t in = (size_t)3 * h * w, out = in * s * s;
    for (int n = 0; n < N; n++) {
        float *yn = y + n * out;
        sr_upscale_image(&m->ema, s, x + n * in, h, w, yn, SR_TILE_DEFAULT, -1);
        for (size_t k = 0; k < out; k++) yn[k] = yn[k] < -1.0f ? -1.0f : yn[k] > 1.0f ? 1.0f : yn[k];
    }
}

void sr_upscale_u8(const sr_model *m, const t2i_image *in, t2i_image *out, int tile, int overlap) {
    T2I_ASSERT(in->c == 3);
    int s = m->cfg.scale;
    t2i_image_alloc(out, in->w * s, in->h * s, 3);
    run_tiles(&m->ema, s, NULL, in->px, in->h, in->w, NULL, out->px, tile, overlap);
}

int sr_upscale_png(const sr_model *m, const t2i_image *in, const char *path, int tile, int overlap, int progress) {
    T2I_ASSERT(in->c == 3);
    int s = m->cfg.scale, h = in->h, w = in->w;
    if (tile <= 0) tile = T2I_MAX(h, w);
    if (overlap < 0) overlap = sr_receptive_radius(&m->ema);
    t2i_png_writer *pw = t2i_png_writer_open(path, w * s, h * s, 3);
    if (!pw) return -1;
    /* one row of tiles at a time: output memory is tile * s rows, not the image */
    uint8_t *band = t2i_malloc((size_t)T2I_MIN(tile, h) * s * w * s * 3);
    sr_ws ws;
    memset(&ws, 0, sizeof ws);
    t2i_progress prog;
    long done = 0, ntiles = (long)((w + tile - 1) / tile) * ((h + tile - 1) / tile);
    if (progress) t2i_progress_start(&prog, "upscale", 0, ntiles);
    int rc = 0;
    for (int ty = 0; ty < h && rc == 0; ty += tile) {
        run_tile_row(&m->ema, &ws, s, NULL, in->px, h, w, ty, tile, overlap, NULL, band, ty * s, progress ? &prog : NULL,
                     &done);
        rc = t2i_png_writer_rows(pw, band, T2I_MIN(tile, h - ty) * s);
    }
    if (progress) t2i_progress_end(&prog, done, NULL);
    ws_free(&ws);
    free(band);
    if (rc != 0) {
        t2i_png_writer_close(pw, 0);
        return -1;
    }
    return t2i_png_writer_close(pw, 1);
}

int sr_cmd_upscale(int argc, char **argv) {
    const char *ckpt = NULL;
    int tile = SR_TILE_DEFAULT, overlap = -1, threads = 0, quiet = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "SR checkpoint (a run's checkpoint.safetensors or l1.safetensors)"},
        {"--tile", T2I_INT, &tile, "tile size in input pixels (0 = the whole image at once)"},
        {"--overlap", T2I_INT, &overlap, "input pixels of context around each tile (-1 = the receptive radius: exact)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--quiet", T2I_BOOL, &quiet, "no progress line"},
    };
    t2i_cmd cmd = {"t2i sr upscale",
                   "Upscale an image with a trained SR model (its EMA weights).",
                   "--ckpt C [options] IN OUT.png",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Any image size: the input is processed in tiles of --tile pixels, each with --overlap\n"
                   "pixels of context, so memory stays bounded; with the default overlap the result equals\n"
                   "the untiled one. Gray or alpha inputs are converted to RGB (alpha composited on black)."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!ckpt) return t2i_fail("sr upscale: --ckpt is required"), 2;
    if (cmd.npos != 2) return t2i_fail("sr upscale: expected IN and OUT, got %d arguments", cmd.npos), 2;
    if (t2i_check_range_i("--tile", tile, 0, 4096) || t2i_check_range_i("--overlap", overlap, -1, 256) ||
        t2i_check_output_file("OUT", cmd.pos[1], ".png") != 0)
        return 2;
    t2i_set_threads(threads);
    sr_model m;
    if (sr_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    int radius = sr_receptive_radius(&m.ema);
    if (overlap >= 0 && overlap < radius && tile > 0)
        fprintf(stderr, "t2i: note: --overlap %d is below the receptive radius %d: tile seams may differ slightly\n",
                overlap, radius);
    t2i_image in;
    if (t2i_image_load(&in, cmd.pos[0], 3) != 0) {
        sr_model_free(&m);
        return t2i_fail_err();
    }
    if ((double)in.w * in.h * m.cfg.scale * m.cfg.scale > (double)T2I_IMAGE_MAX_PIXELS) {
        t2i_fail("%s: %dx%d upscaled x%d would be %dx%d, more pixels than a PNG t2i writes (%d)", cmd.pos[0], in.w, in.h,
                 m.cfg.scale, in.w * m.cfg.scale, in.h * m.cfg.scale, (int)T2I_IMAGE_MAX_PIXELS);
        t2i_image_free(&in);
        sr_model_free(&m);
        return 1;
    }
    double t0 = t2i_now();
    int rc = sr_upscale_png(&m, &in, cmd.pos[1], tile, overlap, !quiet);
    double dt = t2i_now() - t0;
    if (rc != 0)
        t2i_fail_err();
    else if (!quiet)
        printf("sr upscale: %s %dx%d -> %s %dx%d (x%d) in %.1f s, peak RSS %.0f MB\n", cmd.pos[0], in.w, in.h,
               cmd.pos[1], in.w * m.cfg.scale, in.h * m.cfg.scale, m.cfg.scale, dt, t2i_peak_rss_mb());
    t2i_image_free(&in);
    sr_model_free(&m);
    return rc ? 1 : 0;
}
