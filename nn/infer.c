/* infer.c - the inference interpreter of nn_seq networks; see infer.h.
 *
 * A call plans (plan(): shapes, buffers and kernels of every step, buffer sizes) only when
 * the network, batch, input size, thread count or CPU path differs from the last plan;
 * then grows the buffers to the plan (the only allocations) and runs the steps.
 *
 * Banded convolutions (NN_INFER_FAST): for a stride-1 k x k convolution with "same"
 * padding, output rows of one image are cut into bands; bands run in parallel, one per
 * thread, each with its own scratch and single-threaded GEMMs (Winograd for 3x3, else
 * im2col of the band's rows + one GEMM), so a band's working set stays in the core's cache
 * instead of streaming through memory as one whole-image GEMM's would. The biased result
 * (the im2col GEMM accumulates onto the bias, beta 1) goes straight into the output rows,
 * or into a band buffer that a fused PixelShuffle then scatters. Scratch per band and
 * thread is bounded (measured on the SR generator B4 at 2 threads: 1M floats for Winograd
 * ran 572 ms, 512K 824 ms, 2M 583 ms; 512K best for im2col, 875 vs 957 ms at 1M).
 */
#include "infer.h"

#include <stdio.h>
#include <string.h>

#include "base.h"
#include "ops.h"

#ifdef _OPENMP
#include <omp.h>
static int thread_num(void) { return omp_get_thread_num(); }
#else
static int thread_num(void) { return 0; }
#endif

#define WINO_BAND_FLOATS ((size_t)1 << 20)
#define GEMM_BAND_FLOATS ((size_t)1 << 19)
#define DIRECT_MAX_OC 4 /* convolutions with at most this many outputs skip im2col + GEMM */
#define DIRECT_X 16     /* pixels per register block of the direct convolution (two v8) */
#define DIRECT_ROWS 8   /* output rows per band of the direct convolution */
/* Elementwise loops smaller than this (floats) stay serial: thread start-up and barriers
 * cost more than they save on small tiles, and far more when the cores are oversubscribed. */
#define OMP_MIN ((size_t)1 << 16)
/* The direct kernel is compiled for AVX2 + FMA and chosen at run time; other CPUs use the
 * GEMM path (the portable build has no AVX, and 8-register blocks spill on SSE). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_DIRECT 1
#else
#define HAVE_DIRECT 0
#endif

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

void nn_infer_init(nn_infer *w, nn_infer_kernels kernels) {
    memset(w, 0, sizeof *w);
    w->kernels = kernels;
}

void nn_infer_free(nn_infer *w) {
    for (int i = 0; i < NN_INFER_SLOTS; i++) t2i_free(w->own.slot[i]);
    for (int t = 0; t < NN_INFER_MAX_THREADS; t++) t2i_free(w->own.tscratch[t]), t2i_free(w->own.band[t]);
    t2i_free(w->in), t2i_free(w->own.scratch), t2i_free(w->own.wt);
    nn_infer_kernels k = w->kernels;
    nn_infer_init(w, k);
}

static float *grow(nn_infer *w, float **p, size_t *cap, size_t n) {
    if (*cap < n) {
        t2i_free(*p);
        *p = t2i_malloc_aligned(n * sizeof(float));
        *cap = n;
        w->allocs++;
    }
    return *p;
}

float *nn_infer_input(nn_infer *w, const nn_seq *s, int N, int H, int W) {
    return grow(w, &w->in, &w->in_cap, (size_t)N * s->in_C * H * W);
}

const char *nn_infer_kernels_name(nn_infer_kernels k) { return k == NN_INFER_FAST ? "fast" : "exact"; }

void nn_infer_describe_ran(const nn_infer *w, char *buf, size_t n) {
    static const char *names[] = {"gemm", "winograd", "banded-gemm", "direct-avx2"};
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < 4; i++)
        if (w->ran & (1u << i) && used < n)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? " " : "", names[i]);
    if (!used) snprintf(buf, n, "none");
}

/* ------------------------------------------------------------------ shapes */

/* Output shape of layer l for an input (C, H, W) per item. */
static void layer_out(const nn_layer *l, int C, int H, int W, int *OC, int *OH, int *OW) {
    *OC = C, *OH = H, *OW = W;
    switch (l->kind) {
    case NN_L_LINEAR:
        T2I_ASSERTF((size_t)C * H * W == (size_t)l->C, "Linear: input %dx%dx%d, the layer takes %d features", C, H, W,
                    l->C);
        *OC = l->OC, *OH = *OW = 1;
        return;
    case NN_L_RESHAPE:
        T2I_ASSERTF((size_t)C * H * W == (size_t)l->C * l->H * l->W, "reshape of %dx%dx%d built for %dx%dx%d", C, H, W,
                    l->C, l->H, l->W);
        *OC = l->OC, *OH = l->OH, *OW = l->OW;
        return;
    default:
        break;
    }
    T2I_ASSERTF(C == l->C, "layer of kind %d: %d input channels, built for %d", (int)l->kind, C, l->C);
    switch (l->kind) {
    case NN_L_CONV: {
        nn_conv c = nn_conv2d_shape(1, C, H, W, l->OC, l->k, l->stride, l->pad);
        *OC = l->OC, *OH = c.OH, *OW = c.OW;
        break;
    }
    case NN_L_CONVT: {
        nn_conv c = nn_conv_transpose2d_shape(1, C, H, W, l->OC, l->k, l->stride, l->pad, l->out_pad);
        *OC = l->OC, *OH = c.OH, *OW = c.OW;
        break;
    }
    case NN_L_PIXEL_SHUFFLE:
        *OC = C / (l->factor * l->factor), *OH = H * l->factor, *OW = W * l->factor;
        break;
    case NN_L_UPSAMPLE:
        *OH = H * l->factor, *OW = W * l->factor;
        break;
    case NN_L_AVGPOOL:
        T2I_ASSERT(H >= l->factor && W >= l->factor);
        *OH = (H - l->factor) / l->factor + 1, *OW = (W - l->factor) / l->factor + 1;
        break;
    default:
        break;
    }
}

void nn_infer_out_shape(const nn_seq *s, int H, int W, int *C, int *OH, int *OW) {
    int c = s->in_C, h = H, w = W;
    for (int i = 0; i < s->n; i++) layer_out(&s->L[i], c, h, w, &c, &h, &w);
    *C = c, *OH = h, *OW = w;
}

/* ------------------------------------------------------------------ banded convolutions */

/* How a banded convolution of one (C, H, W) image splits: rows per band, bands, threads,
 * and floats of scratch and band buffer per thread and of rearranged weights. */
typedef struct {
    int rows, nb, nt;
    size_t scratch, band, wt;
} band_geom;

static band_geom band_geometry(int kernel, int C, int H, int W, int OC, int k, int r, int threads) {
    band_geom g;
    memset(&g, 0, sizeof g);
    if (kernel == NN_INFER_RAN_DIRECT) {
        g.rows = T2I_MIN(H, DIRECT_ROWS);
        int PW = (W + DIRECT_X - 1) / DIRECT_X * DIRECT_X + k - 1;
        g.scratch = (size_t)C * (g.rows + k - 1) * PW;
        g.wt = (size_t)C * k * k * DIRECT_MAX_OC;
    } else {
        int wino = kernel == NN_INFER_RAN_WINOGRAD, ckk = C * k * k;
        /* scratch per output row: Winograd's grows by the same amount for every pair of rows */
        size_t per_row = wino ? (nn_winograd_scratch(C, OC, W, 2) - nn_winograd_scratch(C, OC, W, 0)) / 2
                              : (size_t)ckk * W;
        if (r > 1) per_row += (size_t)OC * W;
        int rows = (int)((wino ? WINO_BAND_FLOATS : GEMM_BAND_FLOATS) / per_row);
        if (wino) rows &= ~1;
        if (rows < 2) rows = 2;
        if (rows > H) rows = H;
        g.rows = rows;
        g.scratch = wino ? nn_winograd_scratch(C, OC, W, rows) : (size_t)ckk * rows * W;
        g.band = r > 1 ? (size_t)OC * rows * W : 0;
        g.wt = wino ? (size_t)16 * OC * C : 0;
    }
    g.nb = (H + g.rows - 1) / g.rows;
    g.nt = T2I_MIN(threads, g.nb);
    return g;
}

/* A stride-1 "same" convolution with at most DIRECT_MAX_OC outputs (an image's last layer,
 * 64 -> 3), computed directly: as a GEMM its 3-row weight matrix would leave the kernel
 * mostly idle while im2col writes C*k*k floats per pixel. Output rows [r0, r0 + nr):
 * their input rows with a zero halo are copied into pad (C, nr + k - 1, PW), PW a multiple
 * of DIRECT_X plus the halo; each block of DIRECT_X pixels keeps its DIRECT_MAX_OC x
 * DIRECT_X sums in registers over all C*k*k taps. w4 holds the weights as
 * (C, k, k, DIRECT_MAX_OC), zero beyond OC. out (OC, H, W). */
#if HAVE_DIRECT
typedef float v8 __attribute__((vector_size(32)));
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) static void
conv_rows_direct(float *out, float *pad, const float *in, int C, int H, int W, const float *w4, const float *b, int OC,
                 int k, int r0, int nr) {
    enum { X = DIRECT_X, O = DIRECT_MAX_OC };
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
            /* 4 outputs x 16 pixels in eight 8-float registers */
            v8 a0 = (v8){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < k; kh++) {
                    const float *src = pad + ((size_t)c * PH + y + kh) * PW + x0;
                    const float *wq = w4 + ((size_t)(c * k + kh) * k) * O;
                    for (int kw = 0; kw < k; kw++, wq += O) {
                        v8 s0, s1;
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

/* Output rows [r0, r0 + nr) of one image by Winograd or im2col + GEMM, shuffled by r into
 * out (OC / r^2, H*r, W*r) when r > 1, else into out (OC, H, W) directly. */
static void conv_band(float *out, float *scratch, float *band, const float *in, int C, int H, int W, const float *wk,
                      const float *b, int OC, int k, int r, int wino, int r0, int nr) {
    size_t n = (size_t)nr * W, plane = (size_t)H * W;
    float *y = r > 1 ? band : out + (size_t)r0 * W;
    size_t ldy = r > 1 ? n : plane;
    if (wino) {
        nn_winograd_rows(y, ldy, in, C, H, W, wk, b, OC, r0, nr, scratch);
    } else {
        int ckk = C * k * k;
        nn_conv s = nn_conv2d_shape(1, C, H, W, OC, k, 1, (k - 1) / 2);
        nn_im2col_rows(scratch, in, &s, r0, r0 + nr);
        for (int oc = 0; oc < OC; oc++) {
            float bv = b ? b[oc] : 0.0f, *yr = y + oc * ldy;
            for (size_t i = 0; i < n; i++) yr[i] = bv;
        }
        /* inside the parallel region OpenBLAS runs on the calling thread */
        nn_gemm_serial(0, 0, OC, (int)n, ckk, 1.0f, wk, ckk, scratch, (int)n, 1.0f, y, (int)ldy);
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

/* N images x (C, H, W) -> out (N, OC, H, W), or shuffled by st->shuffle, in bands. kwt is
 * the workspace for the weights in the kernel's layout. */
static void conv_banded(nn_infer *ws, const nn_infer_step *st, float *out, const float *in, const float *w,
                        const float *b, const nn_layer *l, int N, float *kwt) {
    int C = st->C, H = st->H, W = st->W, OC = l->OC, k = l->k, r = st->shuffle;
    band_geom g = band_geometry(st->kernel, C, H, W, OC, k, r, ws->threads);
    size_t isz = (size_t)C * H * W, osz = (size_t)OC * H * W;
#if HAVE_DIRECT
    if (st->kernel == NN_INFER_RAN_DIRECT) {
        size_t nw = (size_t)C * k * k * DIRECT_MAX_OC;
        memset(kwt, 0, nw * sizeof(float));
        for (int o = 0; o < OC; o++)
            for (int j = 0; j < C * k * k; j++) kwt[(size_t)j * DIRECT_MAX_OC + o] = w[(size_t)o * C * k * k + j];
        for (int n = 0; n < N; n++) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(g.nt) if (g.nt > 1)
            for (int bi = 0; bi < g.nb; bi++)
                conv_rows_direct(out + n * osz, ws->buf.tscratch[thread_num()], in + n * isz, C, H, W, kwt, b, OC, k,
                                 bi * g.rows, T2I_MIN(g.rows, H - bi * g.rows));
        }
        return;
    }
#endif
    int wino = st->kernel == NN_INFER_RAN_WINOGRAD;
    const float *wk = w;
    if (wino) {
        nn_winograd_weights(kwt, w, OC, C);
        wk = kwt;
    }
    for (int n = 0; n < N; n++) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(g.nt) if (g.nt > 1)
        for (int bi = 0; bi < g.nb; bi++) {
            int t = thread_num(), r0 = bi * g.rows;
            conv_band(out + n * osz, ws->buf.tscratch[t], ws->buf.band[t], in + n * isz, C, H, W, wk, b, OC, k, r, wino, r0,
                      T2I_MIN(g.rows, H - r0));
        }
    }
}

/* ------------------------------------------------------------------ planning */

/* The kernel of convolution l in a plan. */
static int conv_kernel(const nn_infer *w, const nn_layer *l, int r) {
    if (w->kernels != NN_INFER_FAST || l->stride != 1 || l->k % 2 == 0 || l->pad != (l->k - 1) / 2)
        return NN_INFER_RAN_GEMM;
    if (HAVE_DIRECT && l->OC <= DIRECT_MAX_OC && r == 1 && w->avx2) return NN_INFER_RAN_DIRECT;
    return l->k == 3 ? NN_INFER_RAN_WINOGRAD : NN_INFER_RAN_BANDED;
}

/* Buffers while planning: sizes so far and references. */
typedef struct {
    size_t cap[NN_INFER_SLOTS];
    int ref[NN_INFER_SLOTS];
} slots;

/* A free buffer of at least n floats: the smallest free one that fits, else the largest
 * free one, grown - so the few large buffers are reused rather than multiplied. */
static int slot_get(slots *sl, size_t n) {
    int fit = -1, big = -1;
    for (int i = 0; i < NN_INFER_SLOTS; i++) {
        if (sl->ref[i]) continue;
        if (sl->cap[i] >= n && (fit < 0 || sl->cap[i] < sl->cap[fit])) fit = i;
        if (big < 0 || sl->cap[i] > sl->cap[big]) big = i;
    }
    T2I_ASSERTF(big >= 0, "inference: more than %d live buffers (residual blocks nested too deeply)", NN_INFER_SLOTS);
    int s = fit >= 0 ? fit : big;
    if (sl->cap[s] < n) sl->cap[s] = n;
    sl->ref[s] = 1;
    return s;
}

static void slot_release(slots *sl, int s) {
    if (s >= 0) {
        T2I_ASSERT(sl->ref[s] > 0);
        sl->ref[s]--;
    }
}

/* FNV-1a over the layer list (shapes, kinds, parameter indices). */
static uint64_t layers_hash(const nn_seq *s) {
    const unsigned char *p = (const unsigned char *)s->L;
    size_t n = (size_t)s->n * sizeof(nn_layer);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (uint64_t)s->in_C;
}

static int elementwise(nn_layer_kind k) {
    return k == NN_L_ACT || k == NN_L_BN || k == NN_L_CBN || k == NN_L_GN || k == NN_L_RES_END;
}

void nn_infer_plan(nn_infer *w, const nn_seq *s, int N, int H, int W) {
    T2I_ASSERTF(s->depth == 0, "network %s has an open residual block", s->prefix);
    T2I_ASSERT(N > 0 && H > 0 && W > 0);
    w->seq = s, w->seq_hash = layers_hash(s), w->N = N, w->H = H, w->W = W, w->plan_kernels = w->kernels;
    w->threads = T2I_MIN(t2i_get_threads(), NN_INFER_MAX_THREADS);
    w->avx2 = t2i_cpu_avx2_fma();
    slots sl;
    memset(&sl, 0, sizeof sl);
    for (int i = 0; i < NN_INFER_SLOTS; i++) sl.cap[i] = w->cap.slot[i];
    size_t scratch = 0, wt = 0, tscratch[NN_INFER_MAX_THREADS] = {0}, band[NN_INFER_MAX_THREADS] = {0};
    int stack[16], sp = 0, cur = -1, C = s->in_C;
    w->nstep = 0;
    for (int i = 0; i < s->n; i++) {
        const nn_layer *l = &s->L[i];
        nn_infer_step *st = &w->step[w->nstep];
        memset(st, 0, sizeof *st);
        st->layer = i, st->C = C, st->H = H, st->W = W, st->shuffle = 1, st->skip = -1;
        layer_out(l, C, H, W, &st->OC, &st->OH, &st->OW);
        size_t nout = (size_t)N * st->OC * st->OH * st->OW;
        C = st->OC, H = st->OH, W = st->OW;
        if (l->kind == NN_L_RESHAPE || l->kind == NN_L_DROPOUT) continue;
        if (l->kind == NN_L_RES_BEGIN) {
            T2I_ASSERT(sp < 16);
            stack[sp++] = cur;
            if (cur >= 0) sl.ref[cur]++;
            continue;
        }
        size_t wsn = l->sn ? round16((size_t)l->OC * (l->kind == NN_L_LINEAR ? l->C : l->C * l->k * l->k)) : 0;
        st->in = cur;
        if (l->kind == NN_L_RES_END) {
            T2I_ASSERT(sp > 0);
            st->skip = stack[--sp];
        }
        if (elementwise(l->kind) && cur >= 0 && sl.ref[cur] == 1) {
            st->out = cur;
        } else {
            st->out = slot_get(&sl, nout);
            slot_release(&sl, cur);
        }
        if (l->kind == NN_L_RES_END) slot_release(&sl, st->skip);
        cur = st->out;
        switch (l->kind) {
        case NN_L_LINEAR:
            wt = T2I_MAX(wt, wsn);
            break;
        case NN_L_CONV: {
            int r = i + 1 < s->n && s->L[i + 1].kind == NN_L_PIXEL_SHUFFLE ? s->L[i + 1].factor : 1;
            st->kernel = conv_kernel(w, l, r);
            if (st->kernel == NN_INFER_RAN_GEMM) {
                nn_conv c = nn_conv2d_shape(N, st->C, st->H, st->W, l->OC, l->k, l->stride, l->pad);
                scratch = T2I_MAX(scratch, nn_conv2d_forward_scratch(&c));
                wt = T2I_MAX(wt, wsn);
                break;
            }
            if (st->kernel == NN_INFER_RAN_DIRECT) r = 1;
            band_geom g = band_geometry(st->kernel, st->C, st->H, st->W, l->OC, l->k, r, w->threads);
            for (int t = 0; t < g.nt; t++) {
                tscratch[t] = T2I_MAX(tscratch[t], g.scratch);
                band[t] = T2I_MAX(band[t], g.band);
            }
            wt = T2I_MAX(wt, wsn + g.wt);
            if (r > 1) { /* the shuffle is done here */
                st->shuffle = r;
                i++;
                layer_out(&s->L[i], C, H, W, &C, &H, &W);
            }
            break;
        }
        case NN_L_CONVT: {
            st->kernel = NN_INFER_RAN_GEMM;
            nn_conv c = nn_conv_transpose2d_shape(N, st->C, st->H, st->W, l->OC, l->k, l->stride, l->pad, l->out_pad);
            scratch = T2I_MAX(scratch, nn_conv_transpose2d_forward_scratch(&c));
            break;
        }
        case NN_L_CBN:
            scratch = T2I_MAX(scratch, 2 * round16((size_t)N * l->C));
            break;
        case NN_L_GN:
            scratch = T2I_MAX(scratch, 2 * round16((size_t)N * l->groups));
            break;
        default:
            break;
        }
        w->nstep++;
    }
    T2I_ASSERT(sp == 0);
    w->out = cur;
    nn_infer_sizes *nd = &w->need;
    memset(nd, 0, sizeof *nd);
    for (int i = 0; i < NN_INFER_SLOTS; i++) nd->slot[i] = sl.cap[i];
    nd->scratch = scratch, nd->wt = wt;
    for (int t = 0; t < w->threads; t++) nd->tscratch[t] = tscratch[t], nd->band[t] = band[t];
    w->planned = 1;
}

size_t nn_infer_plan_floats(const nn_infer *w) {
    const nn_infer_sizes *nd = &w->need;
    size_t n = round16(nd->scratch) + round16(nd->wt);
    for (int i = 0; i < NN_INFER_SLOTS; i++) n += round16(nd->slot[i]);
    for (int t = 0; t < NN_INFER_MAX_THREADS; t++) n += round16(nd->tscratch[t]) + round16(nd->band[t]);
    return n;
}

/* The call's buffers: the workspace's own, grown to the plan (allocating only when it grew). */
static void bind_own(nn_infer *w) {
    const nn_infer_sizes *nd = &w->need;
    for (int i = 0; i < NN_INFER_SLOTS; i++) grow(w, &w->own.slot[i], &w->cap.slot[i], nd->slot[i]);
    grow(w, &w->own.scratch, &w->cap.scratch, nd->scratch);
    grow(w, &w->own.wt, &w->cap.wt, nd->wt);
    for (int t = 0; t < w->threads; t++) {
        grow(w, &w->own.tscratch[t], &w->cap.tscratch[t], nd->tscratch[t]);
        grow(w, &w->own.band[t], &w->cap.band[t], nd->band[t]);
    }
    w->buf = w->own;
}

/* The call's buffers carved from an arena (none for a size of zero). */
static void bind_arena(nn_infer *w, nn_arena *a) {
    const nn_infer_sizes *nd = &w->need;
    memset(&w->buf, 0, sizeof w->buf);
    for (int i = 0; i < NN_INFER_SLOTS; i++)
        if (nd->slot[i]) w->buf.slot[i] = nn_arena_floats(a, nd->slot[i]);
    if (nd->scratch) w->buf.scratch = nn_arena_floats(a, nd->scratch);
    if (nd->wt) w->buf.wt = nn_arena_floats(a, nd->wt);
    for (int t = 0; t < w->threads; t++) {
        if (nd->tscratch[t]) w->buf.tscratch[t] = nn_arena_floats(a, nd->tscratch[t]);
        if (nd->band[t]) w->buf.band[t] = nn_arena_floats(a, nd->band[t]);
    }
}

/* ------------------------------------------------------------------ running */

/* Plans again when the network, its size, the kernels, the threads or the CPU path changed. */
static void plan_if_stale(nn_infer *w, const nn_seq *s, int N, int H, int W) {
    if (!w->planned || w->seq != s || w->seq_hash != layers_hash(s) || w->plan_kernels != w->kernels || w->N != N || w->H != H || w->W != W ||
        w->threads != T2I_MIN(t2i_get_threads(), NN_INFER_MAX_THREADS) || w->avx2 != t2i_cpu_avx2_fma())
        nn_infer_plan(w, s, N, H, W);
}

static const float *run(nn_infer *w, const nn_seq *s, const float *x, const float *cond, int N);

const float *nn_infer_run(nn_infer *w, const nn_seq *s, const float *x, const float *cond, int N, int H, int W) {
    plan_if_stale(w, s, N, H, W);
    bind_own(w);
    return run(w, s, x, cond, N);
}

const float *nn_infer_run_in(nn_infer *w, nn_arena *a, const nn_seq *s, const float *x, const float *cond, int N,
                             int H, int W) {
    plan_if_stale(w, s, N, H, W);
    bind_arena(w, a);
    return run(w, s, x, cond, N);
}

/* One call over the planned steps, in the bound buffers w->buf. */
static const float *run(nn_infer *w, const nn_seq *s, const float *x, const float *cond, int N) {
    nn_params *ps = s->ps;
    w->ran = 0;
    for (int si = 0; si < w->nstep; si++) {
        const nn_infer_step *st = &w->step[si];
        const nn_layer *l = &s->L[st->layer];
        const float *in = st->in < 0 ? x : w->buf.slot[st->in];
        float *y = w->buf.slot[st->out];
        int C = st->C, S = st->H * st->W;
        size_t no = (size_t)N * st->OC * st->OH * st->OW;
        const float *wgt = l->iw >= 0 ? nn_params_val(ps, l->iw) : NULL;
        const float *b = l->ib >= 0 ? nn_params_val(ps, l->ib) : NULL;
        float *kwt = w->buf.wt;
        if (l->sn) {
            nn_seq_sn_weight_eval(s, st->layer, w->buf.wt);
            wgt = w->buf.wt;
            kwt = w->buf.wt + round16((size_t)l->OC * (l->kind == NN_L_LINEAR ? l->C : l->C * l->k * l->k));
        }
        switch (l->kind) {
        case NN_L_LINEAR:
            nn_linear_forward(y, in, wgt, b, (size_t)N, l->C, l->OC);
            break;
        case NN_L_CONV:
            if (st->kernel == NN_INFER_RAN_GEMM) {
                nn_conv c = nn_conv2d_shape(N, C, st->H, st->W, l->OC, l->k, l->stride, l->pad);
                nn_conv2d_forward(y, w->buf.scratch, in, wgt, b, &c);
            } else {
                conv_banded(w, st, y, in, wgt, b, l, N, kwt);
            }
            w->ran |= (unsigned)st->kernel;
            break;
        case NN_L_CONVT: {
            nn_conv c = nn_conv_transpose2d_shape(N, C, st->H, st->W, l->OC, l->k, l->stride, l->pad, l->out_pad);
            nn_conv_transpose2d_forward(y, w->buf.scratch, in, wgt, b, &c);
            w->ran |= NN_INFER_RAN_GEMM;
            break;
        }
        case NN_L_BN:
            nn_batchnorm_forward(y, NULL, NULL, in, wgt, b, nn_params_val(ps, l->irm), nn_params_val(ps, l->irv), N, C,
                                 S, l->eps, l->momentum, 0);
            break;
        case NN_L_CBN: {
            T2I_ASSERTF(cond, "network %s: conditional BatchNorm needs a condition", s->prefix);
            nn_batchnorm_forward(y, NULL, NULL, in, NULL, NULL, nn_params_val(ps, l->irm), nn_params_val(ps, l->irv), N,
                                 C, S, l->eps, l->momentum, 0);
            /* per item: gamma = 1 + c Wg^T, beta = c Wb^T; y = xhat * gamma + beta (as nn_seq_forward) */
            float *gam = w->buf.scratch, *bet = w->buf.scratch + round16((size_t)N * C);
            nn_linear_forward(gam, cond, nn_params_val(ps, l->icw), NULL, (size_t)N, l->cond_dim, C);
            nn_linear_forward(bet, cond, nn_params_val(ps, l->icb), NULL, (size_t)N, l->cond_dim, C);
#pragma omp parallel for collapse(2) schedule(static)
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    float g = 1.0f + gam[(size_t)n * C + c], bb = bet[(size_t)n * C + c];
                    float *p = y + ((size_t)n * C + c) * S;
                    for (int k = 0; k < S; k++) p[k] = p[k] * g + bb;
                }
            break;
        }
        case NN_L_GN:
            nn_groupnorm_forward(y, w->buf.scratch, w->buf.scratch + round16((size_t)N * l->groups), in, wgt, b, N, C, S,
                                 l->groups, l->eps);
            break;
        case NN_L_ACT:
            nn_act_forward(y, in, no, l->act, l->slope);
            break;
        case NN_L_PIXEL_SHUFFLE:
            nn_pixel_shuffle_forward(y, in, N, st->OC, st->H, st->W, l->factor);
            break;
        case NN_L_UPSAMPLE:
            nn_upsample_nearest_forward(y, in, N, C, st->H, st->W, l->factor);
            break;
        case NN_L_AVGPOOL:
            nn_avgpool2d_forward(y, in, N, C, st->H, st->W, l->factor, l->factor);
            break;
        case NN_L_RES_END: {
            const float *skip = st->skip < 0 ? x : w->buf.slot[st->skip];
            float sc = l->res_scale;
#pragma omp parallel for simd schedule(static) if (no >= OMP_MIN)
            for (size_t k = 0; k < no; k++) y[k] = skip[k] + sc * in[k];
            break;
        }
        default:
            T2I_ASSERTF(0, "inference: layer kind %d has no step", (int)l->kind);
        }
    }
    return w->out < 0 ? x : w->buf.slot[w->out];
}
