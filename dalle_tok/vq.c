/* vq.c - the VQ-VAE tokenizer: configuration, networks, quantizer, training step,
 * encoding/decoding and checkpoints; see vq.h.
 *
 * Gradient of the loss L = MSE(dec(q), x) + beta/n sum (z - sg(q))^2 with respect to the
 * encoder output z, n = N*D*g*g: the forward pass uses q = e_idx(z), whose derivative is
 * zero almost everywhere; the straight-through estimator replaces dq/dz by the identity,
 * so dL/dz = dL/dq + 2 beta (z - q) / n, where dL/dq is the decoder's input gradient.
 * The codebook is not a trainable tensor: vq_ema_update moves it after each step.
 *
 * Determinism: the quantizer's loops either write disjoint rows in parallel (distances,
 * argmin) or run serially (EMA sums, restarts), so results do not depend on the thread
 * count beyond what the GEMMs do.
 *
 * Data-parallel training (run/dist.h): each rank encodes its slice of the global batch. A
 * restart draws its rows from the encodings of the whole global batch (gathered from the
 * ranks, in rank order, which is the single process's row order), and the EMA update and
 * the code statistics use counts and sums over the global batch, so every rank keeps the
 * same codebook and it moves as in one process.
 */
#include "vq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "dist.h"
#include "safetensors.h"

/* GEMM distance blocks are at most this many floats (4 MB), whatever the batch. */
#define VQ_DIST_BLOCK_FLOATS ((size_t)1 << 20)
/* Images per forward pass inside vq_encode / vq_decode (bounds the arena). */
#define VQ_INFER_CHUNK 64

/* ------------------------------------------------------------------ config ---- */

void vq_config_b5(vq_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->preset, "b5");
    c->channels = 3;
    c->res = 32;
    c->width1 = 64;
    c->width2 = 128;
    c->res_hidden = 128;
    c->n_res = 2;
    c->code_dim = 64;
    c->n_codes = 512;
    c->beta = 0.25f;
    c->decay = 0.99f;
    c->eps = 1e-5f;
}

static const char *const vq_presets[] = {"b5", "custom", NULL};

/* vq_config's fields in the order of its JSON; grid (the code grid's side, res / 4) is
 * written for readers of the file and checked on reading. */
#define CONFIG_FIELDS(c, grid)                                                           \
    nn_field cf[] = {NN_F_STR_OF("preset", (c)->preset, vq_presets),                     \
                     NN_F_INT_IN("channels", (c)->channels, 1, 3),                       \
                     NN_F_INT_IN("res", (c)->res, 8, 256),                               \
                     NN_F_INT_IN("width1", (c)->width1, 1, 1024),                        \
                     NN_F_INT_IN("width2", (c)->width2, 1, 1024),                        \
                     NN_F_INT_IN("res_hidden", (c)->res_hidden, 1, 1024),                \
                     NN_F_INT_IN("n_res", (c)->n_res, 0, 8),                             \
                     NN_F_INT_IN("code_dim", (c)->code_dim, 1, 1024),                    \
                     NN_F_INT_IN("n_codes", (c)->n_codes, 2, 65536),                     \
                     NN_F_INT("grid", grid),                                             \
                     NN_F_FLOAT_IN("beta", (c)->beta, 0, 10),                            \
                     NN_F_FLOAT("decay", (c)->decay),                                    \
                     NN_F_FLOAT_IN("eps", (c)->eps, 0, 1)}

/* The checks across fields and of open intervals (the table has checked each field). */
static int config_check_across(const vq_config *c) {
    if (strcmp(c->preset, "b5") == 0) {
        vq_config b;
        vq_config_b5(&b);
        if (c->channels != b.channels || c->res != b.res || c->width1 != b.width1 || c->width2 != b.width2 ||
            c->res_hidden != b.res_hidden || c->n_res != b.n_res || c->code_dim != b.code_dim ||
            c->n_codes != b.n_codes || c->beta != b.beta || c->decay != b.decay)
            return t2i_error_set("preset b5 is fixed (3x32x32, widths 64/128, codebook 512 x 64, beta 0.25, "
                                 "decay 0.99); use --preset custom to change sizes");
    }
    if (c->channels != 1 && c->channels != 3) return t2i_error_set("channels must be 1 or 3, got %d", c->channels);
    if (c->res % 4 != 0) return t2i_error_set("resolution %d: must be a multiple of 4 in 8..256", c->res);
    if (!(c->decay > 0.0f && c->decay < 1.0f)) return t2i_error_set("VQ config: 'decay' = %g is outside (0, 1)", c->decay);
    if (!(c->eps > 0.0f)) return t2i_error_set("VQ config: 'eps' = %g is outside (0, 1]", c->eps);
    return 0;
}

int vq_config_check(const vq_config *c) {
    vq_config k = *c;
    int grid = c->res / 4;
    CONFIG_FIELDS(&k, grid);
    if (nn_fields_check(cf, NN_NFIELDS(cf), "VQ config") != 0) return -1;
    return config_check_across(c);
}

char *vq_config_to_json(const vq_config *c) {
    vq_config k = *c;
    int grid = c->res / 4;
    CONFIG_FIELDS(&k, grid);
    return nn_fields_to_json(cf, NN_NFIELDS(cf));
}

int vq_config_from_json(vq_config *c, const char *json) {
    memset(c, 0, sizeof *c);
    int grid = 0;
    CONFIG_FIELDS(c, grid);
    if (nn_fields_from_json(json, cf, NN_NFIELDS(cf), "VQ config", 0) != 0) return -1;
    if (grid != c->res / 4) return t2i_error_set("VQ config: 'grid' = %d is not res / 4 = %d", grid, c->res / 4);
    return config_check_across(c);
}

/* ---------------------------------------------------------------- networks ---- */

/* x + Conv1x1(ReLU(Conv3x3(ReLU(x)))) */
static void res_block(nn_seq *s, int hidden) {
    int c = s->C;
    nn_seq_res_begin(s);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, hidden, 3, 1, 1, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, c, 1, 1, 0, 1);
    nn_seq_res_end(s, 1.0f);
}

static void build_encoder(nn_seq *s, nn_params *ps, const vq_config *c) {
    nn_seq_init(s, ps, "enc", c->channels, c->res, c->res);
    nn_seq_conv(s, c->width1, 3, 1, 1, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, c->width2, 4, 2, 1, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, c->width2, 4, 2, 1, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    for (int i = 0; i < c->n_res; i++) res_block(s, c->res_hidden);
    nn_seq_conv(s, c->code_dim, 1, 1, 0, 1);
}

static void build_decoder(nn_seq *s, nn_params *ps, const vq_config *c) {
    nn_seq_init(s, ps, "dec", c->code_dim, c->res / 4, c->res / 4);
    nn_seq_conv(s, c->width2, 3, 1, 1, 1);
    for (int i = 0; i < c->n_res; i++) res_block(s, c->res_hidden);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_convt(s, c->width2, 4, 2, 1, 0, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_convt(s, c->width1, 4, 2, 1, 0, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, c->channels, 3, 1, 1, 1);
}

void vq_model_build(vq_model *m, const vq_config *cfg, t2i_rng *rng) {
    T2I_ASSERTF(vq_config_check(cfg) == 0, "bad VQ config: %s", t2i_error_msg());
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->grid = cfg->res / 4;
    nn_params_init(&m->ps);
    build_encoder(&m->enc, &m->ps, cfg);
    build_decoder(&m->dec, &m->ps, cfg);
    int K = cfg->n_codes, D = cfg->code_dim;
    m->i_codebook = nn_params_add(&m->ps, "vq.codebook", 2, (int[]){K, D}, NN_BUFFER);
    m->i_count = nn_params_add(&m->ps, "vq.ema_count", 1, (int[]){K}, NN_BUFFER);
    m->i_sum = nn_params_add(&m->ps, "vq.ema_sum", 2, (int[]){K, D}, NN_BUFFER);
    T2I_ASSERT(m->enc.C == D && m->enc.H == m->grid && m->enc.W == m->grid);
    T2I_ASSERT(m->dec.C == cfg->channels && m->dec.H == cfg->res && m->dec.W == cfg->res);
    nn_params_alloc(&m->ps);
    nn_seq_init_params(&m->enc, rng, NN_INIT_PYTORCH);
    nn_seq_init_params(&m->dec, rng, NN_INIT_PYTORCH);
    t2i_rng_fill_uniform(rng, nn_params_val(&m->ps, m->i_codebook), (size_t)K * D, -1.0f / K, 1.0f / K);
}

void vq_model_free(vq_model *m) {
    nn_params_free(&m->ps);
    nn_infer_free(&m->enc_ws);
    nn_infer_free(&m->dec_ws);
}

double vq_flops_per_image(const vq_model *m) {
    double s = (double)m->grid * m->grid;
    return nn_seq_flops(&m->enc) + nn_seq_flops(&m->dec) + 2.0 * s * m->cfg.n_codes * m->cfg.code_dim;
}

/* ------------------------------------------------------------ arena sizing ----
 * The arena chains overflow blocks (where rewinds are no-ops) when a pass needs more than
 * was reserved, and then keeps the inflated high-water mark. Reserving an upper bound
 * before the first pass keeps peak memory at what a pass really uses. */

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Bytes one forward (and backward) pass of s over N items takes from an arena, at most:
 * every layer's output (and input gradient) plus the largest convolution scratch. */
static size_t seq_arena_bytes(const nn_seq *s, int N, int backward) {
    size_t total = 0, scratch = 0;
    for (int i = 0; i < s->n; i++) {
        const nn_layer *l = &s->L[i];
        size_t in = (size_t)N * l->C * l->H * l->W * sizeof(float), out = (size_t)N * l->OC * l->OH * l->OW * sizeof(float);
        total += round64(out) + (backward ? round64(in) : 0);
        size_t sc = 0;
        if (l->kind == NN_L_CONV) {
            nn_conv c = nn_conv2d_shape(N, l->C, l->H, l->W, l->OC, l->k, l->stride, l->pad);
            sc = nn_conv2d_scratch(&c);
        } else if (l->kind == NN_L_CONVT) {
            nn_conv c = nn_conv_transpose2d_shape(N, l->C, l->H, l->W, l->OC, l->k, l->stride, l->pad, l->out_pad);
            sc = nn_conv_transpose2d_scratch(&c);
        }
        if (sc * sizeof(float) > scratch) scratch = sc * sizeof(float);
    }
    return total + round64(scratch);
}

/* A training step: both networks' activations and gradients, the code search, the loss. */
static size_t train_arena_bytes(const vq_model *m, int N) {
    const vq_config *c = &m->cfg;
    int D = c->code_dim, K = c->n_codes;
    size_t M = (size_t)N * m->grid * m->grid, nz = M * D * sizeof(float);
    size_t nx = (size_t)N * c->channels * c->res * c->res * sizeof(float);
    size_t b = seq_arena_bytes(&m->enc, N, 1) + seq_arena_bytes(&m->dec, N, 1);
    b += 5 * round64(nz) + 2 * round64(M * sizeof(int32_t)) + round64(vq_nearest_scratch(M, K) * sizeof(float));
    b += round64(nx) + 2 * round64((size_t)K * sizeof(float)) + round64((size_t)K * D * sizeof(float));
    return b + 4096;
}

/* One chunk of vq_encode or vq_decode: the inference plan's buffers (nn_infer_run_in
 * carves them from the arena) and the code rows beside them. Plans both workspaces for
 * the chunk's size, which allocates nothing. */
static size_t infer_arena_bytes(vq_model *m, int N) {
    const vq_config *c = &m->cfg;
    int n = N < VQ_INFER_CHUNK ? N : VQ_INFER_CHUNK;
    size_t M = (size_t)n * m->grid * m->grid, nz = round64(M * c->code_dim * sizeof(float));
    nn_infer_plan(&m->enc_ws, &m->enc, n, c->res, c->res);
    nn_infer_plan(&m->dec_ws, &m->dec, n, m->grid, m->grid);
    size_t enc = nn_infer_plan_floats(&m->enc_ws) * sizeof(float) + nz +
                 round64(vq_nearest_scratch(M, c->n_codes) * sizeof(float));
    size_t dec = nn_infer_plan_floats(&m->dec_ws) * sizeof(float) + 2 * nz;
    return (enc > dec ? enc : dec) + 4096;
}

/* Reserves what a pass takes when the arena is empty and smaller (a training arena is
 * larger than any inference chunk's need, so inference after training adds nothing). */
static void arena_fit(vq_model *m, nn_arena *a, int N, int training) {
    if (nn_arena_in_use(a) != 0) return;
    size_t need = training ? train_arena_bytes(m, N) : infer_arena_bytes(m, N);
    if (nn_arena_capacity(a) < need) nn_arena_reserve(a, need);
}

/* --------------------------------------------------------------- quantizer ---- */

void vq_nchw_to_rows(float *rows, const float *x, int N, int D, int S) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            const float *src = x + ((size_t)n * D + d) * S;
            float *dst = rows + (size_t)n * S * D + d;
            for (int s = 0; s < S; s++) dst[(size_t)s * D] = src[s];
        }
}

void vq_rows_to_nchw(float *x, const float *rows, int N, int D, int S) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            float *dst = x + ((size_t)n * D + d) * S;
            const float *src = rows + (size_t)n * S * D + d;
            for (int s = 0; s < S; s++) dst[s] = src[(size_t)s * D];
        }
}

static size_t dist_rows(size_t M, int K) {
    size_t r = VQ_DIST_BLOCK_FLOATS / (size_t)K;
    if (r < 1) r = 1;
    return r < M ? r : M;
}

size_t vq_nearest_scratch(size_t M, int K) { return dist_rows(M, K) * (size_t)K + (size_t)K; }

void vq_nearest(int32_t *idx, float *mind, float *scratch, const float *z, const float *codebook, size_t M, int K,
                int D) {
    float *e2 = scratch, *dist = scratch + K;
    for (int k = 0; k < K; k++) {
        const float *e = codebook + (size_t)k * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += e[d] * e[d];
        e2[k] = s;
    }
    size_t rows = dist_rows(M, K);
    for (size_t i0 = 0; i0 < M; i0 += rows) {
        int m = (int)(M - i0 < rows ? M - i0 : rows);
        /* dist = -2 z e^T: the only O(M K D) part, one GEMM */
        nn_gemm(0, 1, m, K, D, -2.0f, z + i0 * D, D, codebook, D, 0.0f, dist, K);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < m; r++) {
            const float *zi = z + (i0 + r) * D;
            float z2 = 0.0f;
            for (int d = 0; d < D; d++) z2 += zi[d] * zi[d];
            const float *dr = dist + (size_t)r * K;
            float best = INFINITY;
            int bk = 0;
            for (int k = 0; k < K; k++) {
                float v = z2 + dr[k] + e2[k];
                if (v < best) best = v, bk = k; /* strict: the lowest index wins ties */
            }
            idx[i0 + r] = bk;
            if (mind) mind[i0 + r] = best;
        }
    }
}

void vq_ema_update(float *codebook, float *ema_count, float *ema_sum, float *batch_count, float *batch_sum,
                   const float *z, const int32_t *idx, size_t M, int K, int D, float decay, float eps) {
    memset(batch_count, 0, (size_t)K * sizeof(float));
    memset(batch_sum, 0, (size_t)K * D * sizeof(float));
    for (size_t i = 0; i < M; i++) {
        int k = idx[i];
        T2I_ASSERT(k >= 0 && k < K);
        batch_count[k] += 1.0f;
        float *s = batch_sum + (size_t)k * D;
        const float *zi = z + i * D;
        for (int d = 0; d < D; d++) s[d] += zi[d];
    }
    if (t2i_dist_size() > 1 && !t2i_dist_broken("codebook")) {
        t2i_dist_sum_floats(batch_count, (size_t)K);
        t2i_dist_sum_floats(batch_sum, (size_t)K * D);
    }
    float a = 1.0f - decay;
    double total = 0.0;
    for (int k = 0; k < K; k++) {
        ema_count[k] = decay * ema_count[k] + a * batch_count[k];
        total += ema_count[k];
        float *es = ema_sum + (size_t)k * D;
        const float *bs = batch_sum + (size_t)k * D;
        for (int d = 0; d < D; d++) es[d] = decay * es[d] + a * bs[d];
    }
    /* Laplace smoothing keeps codes with a (near) zero count from dividing by zero while
     * preserving the total count N */
    float n = (float)total;
    for (int k = 0; k < K; k++) {
        float smoothed = (ema_count[k] + eps) / (n + K * eps) * n;
        const float *es = ema_sum + (size_t)k * D;
        float *e = codebook + (size_t)k * D;
        for (int d = 0; d < D; d++) e[d] = es[d] / smoothed;
    }
}

int vq_restart_codes(float *codebook, float *ema_count, float *ema_sum, int K, int D, const float *z, size_t M,
                     float threshold, t2i_rng *rng, int *perm) {
    size_t taken = 0;
    int n = 0;
    for (int k = 0; k < K; k++) {
        if (!(ema_count[k] < threshold)) continue;
        size_t row;
        if (taken < M) {
            /* partial Fisher-Yates: distinct rows while there are rows left */
            if (taken == 0)
                for (size_t i = 0; i < M; i++) perm[i] = (int)i;
            size_t j = taken + (size_t)t2i_rng_below(rng, M - taken);
            int t = perm[taken];
            perm[taken] = perm[j];
            perm[j] = t;
            row = (size_t)perm[taken++];
        } else {
            row = (size_t)t2i_rng_below(rng, M);
        }
        memcpy(codebook + (size_t)k * D, z + row * D, (size_t)D * sizeof(float));
        memcpy(ema_sum + (size_t)k * D, z + row * D, (size_t)D * sizeof(float));
        ema_count[k] = 1.0f;
        n++;
    }
    return n;
}

float vq_perplexity(const float *counts, int K, int *used) {
    double total = 0.0;
    int u = 0;
    for (int k = 0; k < K; k++) {
        total += counts[k];
        u += counts[k] > 0.0f;
    }
    if (used) *used = u;
    if (total <= 0.0) return 0.0f;
    double h = 0.0;
    for (int k = 0; k < K; k++)
        if (counts[k] > 0.0f) {
            double p = counts[k] / total;
            h -= p * log(p);
        }
    return (float)exp(h);
}

/* ---------------------------------------------------------------- training ---- */

void vq_loss_backward(vq_model *m, nn_arena *a, const float *x, int N, int restart, float threshold, t2i_rng *rng,
                      vq_stats *st, vq_pass *pass) {
    const vq_config *c = &m->cfg;
    int D = c->code_dim, K = c->n_codes, S = m->grid * m->grid;
    size_t M = (size_t)N * S, nz = M * D, nx = (size_t)N * c->channels * c->res * c->res;
    float *cb = nn_params_val(&m->ps, m->i_codebook);
    nn_tape te, td;
    memset(&te, 0, sizeof te);
    memset(&td, 0, sizeof td);

    float *z = nn_seq_forward(&m->enc, &te, a, x, N, 1);
    float *zr = nn_arena_floats(a, nz);
    vq_nchw_to_rows(zr, z, N, D, S);
    memset(st, 0, sizeof *st);
    if (restart != VQ_RESTART_NONE && !m->decoder_only) {
        T2I_ASSERT(rng);
        /* rows from the global batch: every rank draws the same ones */
        const float *zall = zr;
        size_t Mall = M;
        int ranks = t2i_dist_size();
        if (ranks > 1 && !t2i_dist_broken("codebook")) {
            int *counts = nn_arena_bytes(a, (size_t)ranks * sizeof(int));
            for (int r = 0; r < ranks; r++) counts[r] = (int)M;
            Mall = M * (size_t)ranks;
            float *g = nn_arena_floats(a, Mall * D);
            t2i_dist_gather(zr, counts, (size_t)D, g);
            zall = g;
        }
        int *perm = nn_arena_bytes(a, Mall * sizeof(int));
        st->restarted = vq_restart_codes(cb, nn_params_val(&m->ps, m->i_count), nn_params_val(&m->ps, m->i_sum), K, D,
                                         zall, Mall, restart == VQ_RESTART_ALL ? INFINITY : threshold, rng, perm);
    }
    int32_t *idx = nn_arena_bytes(a, M * sizeof(int32_t));
    size_t mark = nn_arena_mark(a);
    vq_nearest(idx, NULL, nn_arena_floats(a, vq_nearest_scratch(M, K)), zr, cb, M, K, D);
    nn_arena_rewind(a, mark);
    float *qr = nn_arena_floats(a, nz), *q = nn_arena_floats(a, nz);
    for (size_t i = 0; i < M; i++) memcpy(qr + i * D, cb + (size_t)idx[i] * D, (size_t)D * sizeof(float));
    vq_rows_to_nchw(q, qr, N, D, S);

    float *xr = nn_seq_forward(&m->dec, &td, a, q, N, 1);
    float *dxr = nn_arena_zeros(a, nx);
    st->recon = nn_mse(dxr, xr, x, nx, 1.0f);
    int enc = !m->decoder_only;
    float *dq = nn_seq_backward(&m->dec, &td, a, dxr, enc);
    /* straight-through: the decoder's input gradient goes to z unchanged */
    float *dz = enc ? nn_arena_floats(a, nz) : NULL;
    float coef = 2.0f * c->beta / (float)nz;
    double cs = 0.0;
    for (size_t i = 0; i < nz; i++) {
        float d = z[i] - q[i];
        cs += (double)d * d;
        if (enc) dz[i] = dq[i] + coef * d;
    }
    st->commit = (float)(c->beta * (cs / (double)nz));
    st->loss = st->recon + st->commit;
    if (enc) nn_seq_backward(&m->enc, &te, a, dz, 0);

    float *counts = nn_arena_zeros(a, (size_t)K);
    for (size_t i = 0; i < M; i++) counts[idx[i]] += 1.0f;
    if (t2i_dist_size() > 1) {
        /* the global batch's losses (means over equal slices) and code counts */
        double l[2] = {st->recon, st->commit};
        t2i_dist_mean(l, 2);
        st->recon = (float)l[0], st->commit = (float)l[1];
        st->loss = st->recon + st->commit;
        t2i_dist_sum_floats(counts, (size_t)K);
    }
    st->perplexity = vq_perplexity(counts, K, &st->codes_used);
    if (pass) {
        pass->z = z, pass->zr = zr, pass->q = q, pass->idx = idx, pass->xr = xr, pass->dz = dz;
    }
}

void vq_train_step(vq_model *m, nn_optim *opt, nn_arena *a, const float *x, int N, int restart, float threshold,
                   t2i_rng *rng, vq_stats *st) {
    nn_arena_reset(a);
    arena_fit(m, a, N, 1);
    nn_params_zero_grad(&m->ps);
    vq_pass p;
    vq_loss_backward(m, a, x, N, restart, threshold, rng, st, &p);
    nn_optim_step(opt, &m->ps, opt->lr);
    if (m->decoder_only) return;
    int D = m->cfg.code_dim, K = m->cfg.n_codes;
    size_t M = (size_t)N * m->grid * m->grid;
    float *bc = nn_arena_floats(a, (size_t)K), *bs = nn_arena_floats(a, (size_t)K * D);
    vq_ema_update(nn_params_val(&m->ps, m->i_codebook), nn_params_val(&m->ps, m->i_count),
                  nn_params_val(&m->ps, m->i_sum), bc, bs, p.zr, p.idx, M, K, D, m->cfg.decay, m->cfg.eps);
}

/* --------------------------------------------------------------- inference ---- */

void vq_encode(vq_model *m, nn_arena *a, const float *x, int N, int32_t *codes) {
    const vq_config *c = &m->cfg;
    int D = c->code_dim, K = c->n_codes, S = m->grid * m->grid;
    size_t item = (size_t)c->channels * c->res * c->res;
    const float *cb = nn_params_val(&m->ps, m->i_codebook);
    arena_fit(m, a, N, 0);
    for (int n0 = 0; n0 < N; n0 += VQ_INFER_CHUNK) {
        int n = N - n0 < VQ_INFER_CHUNK ? N - n0 : VQ_INFER_CHUNK;
        size_t mark = nn_arena_mark(a), M = (size_t)n * S;
        const float *z = nn_infer_run_in(&m->enc_ws, a, &m->enc, x + (size_t)n0 * item, NULL, n, c->res, c->res);
        float *zr = nn_arena_floats(a, M * D);
        vq_nchw_to_rows(zr, z, n, D, S);
        vq_nearest(codes + (size_t)n0 * S, NULL, nn_arena_floats(a, vq_nearest_scratch(M, K)), zr, cb, M, K, D);
        nn_arena_rewind(a, mark);
    }
}

void vq_decode(vq_model *m, nn_arena *a, const int32_t *codes, int N, float *out) {
    const vq_config *c = &m->cfg;
    int D = c->code_dim, K = c->n_codes, S = m->grid * m->grid;
    size_t item = (size_t)c->channels * c->res * c->res;
    const float *cb = nn_params_val(&m->ps, m->i_codebook);
    arena_fit(m, a, N, 0);
    for (int n0 = 0; n0 < N; n0 += VQ_INFER_CHUNK) {
        int n = N - n0 < VQ_INFER_CHUNK ? N - n0 : VQ_INFER_CHUNK;
        size_t mark = nn_arena_mark(a), M = (size_t)n * S;
        float *qr = nn_arena_floats(a, M * D), *q = nn_arena_floats(a, M * D);
        const int32_t *cn = codes + (size_t)n0 * S;
        for (size_t i = 0; i < M; i++) {
            T2I_ASSERTF(cn[i] >= 0 && cn[i] < K, "code %d out of range [0, %d)", (int)cn[i], K);
            memcpy(qr + i * D, cb + (size_t)cn[i] * D, (size_t)D * sizeof(float));
        }
        vq_rows_to_nchw(q, qr, n, D, S);
        const float *y = nn_infer_run_in(&m->dec_ws, a, &m->dec, q, NULL, n, m->grid, m->grid);
        memcpy(out + (size_t)n0 * item, y, (size_t)n * item * sizeof(float));
        nn_arena_rewind(a, mark);
    }
}

/* ------------------------------------------------------------- checkpoints ---- */

int vq_save(const vq_model *m, const char *path, const char *state_json, int with_optimizer) {
    vq_model *mm = (vq_model *)m;
    nn_ckpt_part part = {&mm->ps, "", with_optimizer, 0};
    char *cfg = vq_config_to_json(&m->cfg);
    nn_ckpt_meta meta = {"vq", cfg, state_json, NULL, NULL, 0, ST_F32};
    int rc = nn_ckpt_save(path, &part, 1, &meta);
    free(cfg);
    return rc;
}

int vq_load(vq_model *m, const char *path, int with_optimizer, char **state_json) {
    if (state_json) *state_json = NULL;
    st_file f;
    if (nn_ckpt_open(&f, path, "vq") != 0) return -1;
    vq_config cfg;
    const char *cj = st_meta(&f, "config");
    if (!cj || vq_config_from_json(&cfg, cj) != 0) {
        if (!cj) t2i_error_set("no config in the metadata");
        t2i_error_prefix("%s", path);
        st_close(&f);
        return -1;
    }
    t2i_rng r;
    t2i_rng_seed(&r, 0);
    vq_model_build(m, &cfg, &r);
    nn_ckpt_part part = {&m->ps, "", with_optimizer, 0};
    int rc = nn_ckpt_load_parts(&f, &part, 1);
    if (rc == 0) rc = nn_ckpt_check_unused(&f, &part, 1);
    if (rc == 0 && state_json) {
        const char *s = st_meta(&f, "state");
        *state_json = s ? t2i_strdup(s) : NULL;
    }
    st_close(&f);
    if (rc != 0) vq_model_free(m);
    return rc;
}

/* ------------------------------------------------------------- codes files ---- */

static int read_i32_vec(const st_file *f, const char *path, const char *name, int n, int32_t **dst, int required) {
    const st_tensor *t = st_find(f, name);
    *dst = NULL;
    if (!t) return required ? t2i_error_set("%s: no tensor '%s' (not a file from `t2i vq encode`)", path, name) : 0;
    if (t->ndim != 1 || t->shape[0] != n)
        return t2i_error_set("%s: tensor '%s' should have shape [%d]", path, name, n);
    *dst = t2i_malloc((size_t)n * sizeof(int32_t) + 1);
    return st_read_i32(f, t, *dst, (size_t)n);
}

int vq_codes_load(vq_codes *c, const char *path) {
    memset(c, 0, sizeof *c);
    st_file f;
    if (st_open(&f, path) != 0) return -1;
    int rc = 0;
    const st_tensor *t = st_find(&f, "codes");
    const char *nc = st_meta(&f, "n_codes");
    if (!t) rc = t2i_error_set("%s: no tensor 'codes' (not a file from `t2i vq encode`)", path);
    else if (t->ndim != 3 || t->shape[1] != t->shape[2] || t->shape[1] < 1 || t->shape[0] > (1 << 30))
        rc = t2i_error_set("%s: tensor 'codes' should have shape [N, g, g]", path);
    else if (!nc || atoi(nc) < 2)
        rc = t2i_error_set("%s: metadata 'n_codes' missing or invalid", path);
    if (!rc) {
        c->n = (int)t->shape[0], c->grid = (int)t->shape[1], c->n_codes = atoi(nc);
        size_t total = (size_t)c->n * c->grid * c->grid;
        c->codes = t2i_malloc(total * sizeof(int32_t) + 1);
        rc = st_read_i32(&f, t, c->codes, total);
        for (size_t i = 0; i < total && !rc; i++)
            if (c->codes[i] < 0 || c->codes[i] >= c->n_codes)
                rc = t2i_error_set("%s: item %zu has code %d, outside the codebook [0, %d)", path,
                                   i / ((size_t)c->grid * c->grid), (int)c->codes[i], c->n_codes);
    }
    if (!rc) rc = read_i32_vec(&f, path, "index", c->n, &c->index, 1);
    if (!rc) rc = read_i32_vec(&f, path, "labels", c->n, &c->labels, 0);
    if (!rc) {
        const char *s = st_meta(&f, "source"), *v = st_meta(&f, "vq"), *cf = st_meta(&f, "config");
        c->source = t2i_strdup(s ? s : "");
        c->vq = t2i_strdup(v ? v : "");
        c->config = t2i_strdup(cf ? cf : "{}");
    }
    st_close(&f);
    if (rc) vq_codes_free(c);
    return rc;
}

void vq_codes_free(vq_codes *c) {
    free(c->codes), free(c->index), free(c->labels), free(c->source), free(c->vq), free(c->config);
    memset(c, 0, sizeof *c);
}
