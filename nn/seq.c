/* seq.c - sequential networks; see seq.h. */
#include "seq.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "optim.h"

void nn_seq_init(nn_seq *s, nn_params *ps, const char *prefix, int C, int H, int W) {
    memset(s, 0, sizeof *s);
    s->ps = ps;
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    s->C = s->in_C = C;
    s->H = s->in_H = H;
    s->W = s->in_W = W;
}

static nn_layer *add_layer(nn_seq *s, nn_layer_kind kind) {
    T2I_ASSERTF(s->n < NN_SEQ_MAX, "network %s has more than %d layers", s->prefix, NN_SEQ_MAX);
    nn_layer *l = &s->L[s->n];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->C = l->OC = s->C;
    l->H = l->OH = s->H;
    l->W = l->OW = s->W;
    l->iw = l->ib = l->iu = l->iv = l->irm = l->irv = l->icw = l->icb = -1;
    return l;
}

static int finish(nn_seq *s, nn_layer *l) {
    s->C = l->OC;
    s->H = l->OH;
    s->W = l->OW;
    return s->n++;
}

static int reg(nn_seq *s, const char *what, int ndim, const int *shape, int trainable) {
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "%s.%d.%s", s->prefix, s->n, what);
    return nn_params_add(s->ps, name, ndim, shape, trainable);
}

/* Spectral-norm buffers for a weight viewed as (rows, cols). */
static void reg_sn(nn_seq *s, nn_layer *l, int rows, int cols) {
    l->sn = 1;
    l->iu = reg(s, "weight_u", 1, (int[]){rows}, NN_BUFFER);
    l->iv = reg(s, "weight_v", 1, (int[]){cols}, NN_BUFFER);
    s->sn_next = 0;
}

int nn_seq_linear(nn_seq *s, int out, int bias) {
    nn_layer *l = add_layer(s, NN_L_LINEAR);
    int in = s->C * s->H * s->W;
    l->C = in, l->H = l->W = 1;
    l->OC = out, l->OH = l->OW = 1;
    l->bias = bias;
    l->iw = reg(s, "weight", 2, (int[]){out, in}, NN_TRAIN);
    if (bias) l->ib = reg(s, "bias", 1, (int[]){out}, NN_TRAIN);
    if (s->sn_next) reg_sn(s, l, out, in);
    return finish(s, l);
}

int nn_seq_conv(nn_seq *s, int oc, int k, int stride, int pad, int bias) {
    nn_layer *l = add_layer(s, NN_L_CONV);
    nn_conv c = nn_conv2d_shape(1, s->C, s->H, s->W, oc, k, stride, pad);
    l->OC = oc, l->OH = c.OH, l->OW = c.OW;
    l->k = k, l->stride = stride, l->pad = pad, l->bias = bias;
    l->iw = reg(s, "weight", 4, (int[]){oc, s->C, k, k}, NN_TRAIN);
    if (bias) l->ib = reg(s, "bias", 1, (int[]){oc}, NN_TRAIN);
    if (s->sn_next) reg_sn(s, l, oc, s->C * k * k);
    return finish(s, l);
}

int nn_seq_convt(nn_seq *s, int oc, int k, int stride, int pad, int out_pad, int bias) {
    T2I_ASSERTF(!s->sn_next, "spectral norm on ConvTranspose2d is not supported");
    nn_layer *l = add_layer(s, NN_L_CONVT);
    nn_conv c = nn_conv_transpose2d_shape(1, s->C, s->H, s->W, oc, k, stride, pad, out_pad);
    l->OC = oc, l->OH = c.OH, l->OW = c.OW;
    l->k = k, l->stride = stride, l->pad = pad, l->out_pad = out_pad, l->bias = bias;
    l->iw = reg(s, "weight", 4, (int[]){s->C, oc, k, k}, NN_TRAIN);
    if (bias) l->ib = reg(s, "bias", 1, (int[]){oc}, NN_TRAIN);
    return finish(s, l);
}

int nn_seq_bn(nn_seq *s) {
    nn_layer *l = add_layer(s, NN_L_BN);
    l->eps = 1e-5f, l->momentum = 0.1f;
    l->iw = reg(s, "weight", 1, (int[]){s->C}, NN_TRAIN);
    l->ib = reg(s, "bias", 1, (int[]){s->C}, NN_TRAIN);
    l->irm = reg(s, "running_mean", 1, (int[]){s->C}, NN_BUFFER);
    l->irv = reg(s, "running_var", 1, (int[]){s->C}, NN_BUFFER);
    s->ps->p[l->iw].no_decay = s->ps->p[l->ib].no_decay = 1;
    return finish(s, l);
}

int nn_seq_cbn(nn_seq *s, int cond_dim) {
    T2I_ASSERT(cond_dim > 0);
    nn_layer *l = add_layer(s, NN_L_CBN);
    l->eps = 1e-5f, l->momentum = 0.1f, l->cond_dim = cond_dim;
    l->irm = reg(s, "running_mean", 1, (int[]){s->C}, NN_BUFFER);
    l->irv = reg(s, "running_var", 1, (int[]){s->C}, NN_BUFFER);
    l->icw = reg(s, "gain.weight", 2, (int[]){s->C, cond_dim}, NN_TRAIN);
    l->icb = reg(s, "bias.weight", 2, (int[]){s->C, cond_dim}, NN_TRAIN);
    return finish(s, l);
}

int nn_seq_gn(nn_seq *s, int groups) {
    T2I_ASSERTF(s->C % groups == 0, "GroupNorm: %d channels, %d groups", s->C, groups);
    nn_layer *l = add_layer(s, NN_L_GN);
    l->groups = groups, l->eps = 1e-5f;
    l->iw = reg(s, "weight", 1, (int[]){s->C}, NN_TRAIN);
    l->ib = reg(s, "bias", 1, (int[]){s->C}, NN_TRAIN);
    s->ps->p[l->iw].no_decay = s->ps->p[l->ib].no_decay = 1;
    return finish(s, l);
}

int nn_seq_act(nn_seq *s, nn_act act, float slope) {
    nn_layer *l = add_layer(s, NN_L_ACT);
    l->act = act, l->slope = slope;
    return finish(s, l);
}

int nn_seq_reshape(nn_seq *s, int C, int H, int W) {
    T2I_ASSERTF((size_t)C * H * W == (size_t)s->C * s->H * s->W, "reshape %dx%dx%d to %dx%dx%d", s->C, s->H,
                s->W, C, H, W);
    nn_layer *l = add_layer(s, NN_L_RESHAPE);
    l->OC = C, l->OH = H, l->OW = W;
    return finish(s, l);
}

int nn_seq_pixel_shuffle(nn_seq *s, int r) {
    T2I_ASSERT(s->C % (r * r) == 0);
    nn_layer *l = add_layer(s, NN_L_PIXEL_SHUFFLE);
    l->factor = r;
    l->OC = s->C / (r * r), l->OH = s->H * r, l->OW = s->W * r;
    return finish(s, l);
}

int nn_seq_upsample(nn_seq *s, int factor) {
    nn_layer *l = add_layer(s, NN_L_UPSAMPLE);
    l->factor = factor;
    l->OH = s->H * factor, l->OW = s->W * factor;
    return finish(s, l);
}

int nn_seq_avgpool(nn_seq *s, int k) {
    T2I_ASSERT(s->H >= k && s->W >= k);
    nn_layer *l = add_layer(s, NN_L_AVGPOOL);
    l->factor = k;
    l->OH = (s->H - k) / k + 1, l->OW = (s->W - k) / k + 1;
    return finish(s, l);
}

int nn_seq_dropout(nn_seq *s, float p) {
    T2I_ASSERT(p >= 0.0f && p < 1.0f);
    nn_layer *l = add_layer(s, NN_L_DROPOUT);
    l->p = p;
    return finish(s, l);
}

int nn_seq_res_begin(nn_seq *s) {
    T2I_ASSERT(s->depth < 16);
    nn_layer *l = add_layer(s, NN_L_RES_BEGIN);
    s->stack[s->depth++] = s->n;
    return finish(s, l);
}

int nn_seq_res_end(nn_seq *s, float scale) {
    T2I_ASSERTF(s->depth > 0, "res_end without res_begin");
    int b = s->stack[--s->depth];
    const nn_layer *lb = &s->L[b];
    T2I_ASSERTF(lb->C == s->C && lb->H == s->H && lb->W == s->W, "residual shapes differ: %dx%dx%d vs %dx%dx%d",
                lb->C, lb->H, lb->W, s->C, s->H, s->W);
    nn_layer *l = add_layer(s, NN_L_RES_END);
    l->res_begin = b;
    l->res_scale = scale;
    return finish(s, l);
}

static void unit_vector(float *v, int n, t2i_rng *rng) {
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        v[i] = t2i_rng_normal(rng);
        s += (double)v[i] * v[i];
    }
    float inv = (float)(1.0 / (sqrt(s) + 1e-12));
    for (int i = 0; i < n; i++) v[i] *= inv;
}

void nn_seq_init_params(nn_seq *s, t2i_rng *rng, nn_init_kind kind) {
    nn_params *ps = s->ps;
    for (int i = 0; i < s->n; i++) {
        nn_layer *l = &s->L[i];
        switch (l->kind) {
        case NN_L_LINEAR:
        case NN_L_CONV:
        case NN_L_CONVT: {
            const nn_param *pw = &ps->p[l->iw];
            int fan_in = l->kind == NN_L_LINEAR ? l->C
                         : l->kind == NN_L_CONV ? l->C * l->k * l->k
                                                 : l->OC * l->k * l->k; /* torch: weight.size(1) * k * k */
            if (kind == NN_INIT_PYTORCH) {
                nn_init_pytorch_uniform(nn_params_val(ps, l->iw), pw->numel, fan_in, rng);
                if (l->ib >= 0) nn_init_pytorch_uniform(nn_params_val(ps, l->ib), (size_t)l->OC, fan_in, rng);
            } else {
                nn_init_normal(nn_params_val(ps, l->iw), pw->numel, 0.0f, 0.02f, rng);
                if (l->ib >= 0) nn_init_const(nn_params_val(ps, l->ib), (size_t)l->OC, 0.0f);
            }
            if (l->sn) {
                unit_vector(nn_params_val(ps, l->iu), ps->p[l->iu].shape[0], rng);
                unit_vector(nn_params_val(ps, l->iv), ps->p[l->iv].shape[0], rng);
            }
            break;
        }
        case NN_L_BN:
        case NN_L_GN:
            if (kind == NN_INIT_NORMAL002) nn_init_normal(nn_params_val(ps, l->iw), (size_t)l->C, 1.0f, 0.02f, rng);
            else nn_init_const(nn_params_val(ps, l->iw), (size_t)l->C, 1.0f);
            nn_init_const(nn_params_val(ps, l->ib), (size_t)l->C, 0.0f);
            if (l->irm >= 0) nn_init_const(nn_params_val(ps, l->irm), (size_t)l->C, 0.0f);
            if (l->irv >= 0) nn_init_const(nn_params_val(ps, l->irv), (size_t)l->C, 1.0f);
            break;
        case NN_L_CBN:
            nn_init_const(nn_params_val(ps, l->irm), (size_t)l->C, 0.0f);
            nn_init_const(nn_params_val(ps, l->irv), (size_t)l->C, 1.0f);
            /* gains start at exactly 1 and biases at 0 for every condition */
            nn_init_const(nn_params_val(ps, l->icw), (size_t)l->C * l->cond_dim, 0.0f);
            nn_init_const(nn_params_val(ps, l->icb), (size_t)l->C * l->cond_dim, 0.0f);
            break;
        default: break;
        }
    }
}

size_t nn_seq_out_size(const nn_seq *s) { return (size_t)s->C * s->H * s->W; }

static size_t in_size(const nn_layer *l) { return (size_t)l->C * l->H * l->W; }
static size_t out_size(const nn_layer *l) { return (size_t)l->OC * l->OH * l->OW; }

/* ---- spectral norm ----
 * W viewed as (rows, cols). Training: v = normalize(W^T u), u = normalize(W v) (one power
 * iteration, updating the stored u and v); then sigma = u^T W v and wn = W / sigma. */
static float sn_weight(float *wn, float *u, float *v, const float *w, int rows, int cols, int update) {
    if (update) {
        double s = 0.0;
        for (int j = 0; j < cols; j++) v[j] = 0.0f;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) v[j] += w[(size_t)i * cols + j] * u[i];
        for (int j = 0; j < cols; j++) s += (double)v[j] * v[j];
        float inv = (float)(1.0 / fmax(sqrt(s), 1e-12));
        for (int j = 0; j < cols; j++) v[j] *= inv;
        s = 0.0;
        for (int i = 0; i < rows; i++) {
            double d = 0.0;
            for (int j = 0; j < cols; j++) d += (double)w[(size_t)i * cols + j] * v[j];
            u[i] = (float)d;
            s += d * d;
        }
        inv = (float)(1.0 / fmax(sqrt(s), 1e-12));
        for (int i = 0; i < rows; i++) u[i] *= inv;
    }
    double sigma = 0.0;
    for (int i = 0; i < rows; i++) {
        double d = 0.0;
        for (int j = 0; j < cols; j++) d += (double)w[(size_t)i * cols + j] * v[j];
        sigma += u[i] * d;
    }
    float inv = (float)(1.0 / sigma);
    size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++) wn[i] = w[i] * inv;
    return (float)sigma;
}

/* dW += (G - <G, wn> u v^T) / sigma */
static void sn_backward(float *dw, const float *g, const float *wn, const float *u, const float *v, float sigma,
                        int rows, int cols) {
    size_t n = (size_t)rows * cols;
    double dot = 0.0;
    for (size_t i = 0; i < n; i++) dot += (double)g[i] * wn[i];
    float inv = 1.0f / sigma, d = (float)dot;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) dw[(size_t)i * cols + j] += (g[(size_t)i * cols + j] - d * u[i] * v[j]) * inv;
}

static void weight_rows_cols(const nn_layer *l, int *rows, int *cols) {
    *rows = l->OC;
    *cols = l->kind == NN_L_LINEAR ? l->C : l->C * l->k * l->k;
}

float nn_seq_sn_weight_eval(const nn_seq *s, int i, float *wn) {
    const nn_layer *l = &s->L[i];
    T2I_ASSERT(l->sn);
    int rows, cols;
    weight_rows_cols(l, &rows, &cols);
    /* without an update sn_weight reads u and v only */
    return sn_weight(wn, nn_params_val(s->ps, l->iu), nn_params_val(s->ps, l->iv), nn_params_val(s->ps, l->iw), rows,
                     cols, 0);
}

/* ---- memory of a training pass --------------------------------------------------------
 * Forward: an activation whose forward input is a fresh buffer that no backward pass reads
 * (the output of a convolution, a linear layer, a norm, a pixel shuffle, an upsample, a
 * pool, a dropout or a residual sum) and whose backward can be computed from its output
 * (ReLU; LeakyReLU with slope >= 0: y > 0 exactly when x > 0) is computed in place. Its
 * backward then reads y where it read x, and the derivative is the same.
 * Backward: the gradient of a layer's output is dead once the layer's input gradient
 * exists, so gradients live in a small pool of arena buffers that are handed back and
 * reused (best fit), instead of one new buffer per layer; a residual block's skip holds
 * its buffer until the block's RES_BEGIN adds it. ReLU, LeakyReLU and RES_BEGIN update the
 * gradient in place when nothing else holds it. Peak memory of SRResNet's step at batch 16
 * drops by about half; every value is the same (tape.keep_all turns both off, and the
 * tests compare the two bit for bit). */
static int fresh_output(nn_layer_kind k) {
    return k == NN_L_LINEAR || k == NN_L_CONV || k == NN_L_CONVT || k == NN_L_BN || k == NN_L_CBN || k == NN_L_GN ||
           k == NN_L_PIXEL_SHUFFLE || k == NN_L_UPSAMPLE || k == NN_L_AVGPOOL || k == NN_L_RES_END;
}

static int act_in_place(const nn_seq *s, const nn_tape *t, int i) {
    const nn_layer *l = &s->L[i];
    if (t->keep_all || i == 0) return 0;
    if (!(l->act == NN_ACT_RELU || (l->act == NN_ACT_LEAKY_RELU && l->slope >= 0.0f))) return 0;
    const nn_layer *p = &s->L[i - 1];
    /* a dropout's output is fresh only when it made one (training with p > 0) */
    return fresh_output(p->kind) || (p->kind == NN_L_DROPOUT && t->aux[i - 1]);
}

#define GRAD_BUFS NN_SEQ_MAX

/* The gradient buffers of one backward pass; refs counts the holders (the gradient
 * flowing down, residual skips). Memory not from the pool (the caller's dy) is never
 * written. */
typedef struct {
    float *p[GRAD_BUFS];
    size_t cap[GRAD_BUFS];
    int refs[GRAD_BUFS];
    int n, off; /* off: allocate a new buffer for every request (tape.keep_all) */
} grad_pool;

static int pool_find(const grad_pool *g, const float *p) {
    for (int k = 0; k < g->n; k++)
        if (g->p[k] == p) return k;
    return -1;
}

static float *pool_get(grad_pool *g, nn_arena *a, size_t n) {
    int best = -1;
    for (int k = 0; k < g->n && !g->off; k++)
        if (!g->refs[k] && g->cap[k] >= n && (best < 0 || g->cap[k] < g->cap[best])) best = k;
    if (best < 0) {
        if (g->n == GRAD_BUFS || g->off) return nn_arena_zeros(a, n); /* not pooled: never reused */
        best = g->n++;
        g->p[best] = nn_arena_floats(a, n);
        g->cap[best] = n;
    }
    g->refs[best] = 1;
    memset(g->p[best], 0, n * sizeof(float));
    return g->p[best];
}

static void pool_hold(grad_pool *g, const float *p) {
    int k = pool_find(g, p);
    if (k >= 0) g->refs[k]++;
}

static void pool_release(grad_pool *g, const float *p) {
    int k = pool_find(g, p);
    if (k >= 0) {
        T2I_ASSERT(g->refs[k] > 0);
        g->refs[k]--;
    }
}

/* cur may be updated in place: a pooled buffer with no other holder (never with keep_all,
 * which pools nothing) */
static int pool_sole(const grad_pool *g, const float *p) {
    int k = pool_find(g, p);
    return k >= 0 && g->refs[k] == 1;
}

float *nn_seq_forward(nn_seq *s, nn_tape *t, nn_arena *a, const float *x, int N, int training) {
    T2I_ASSERTF(s->depth == 0, "network %s has an open residual block", s->prefix);
    nn_params *ps = s->ps;
    t->N = N;
    t->training = training;
    const float *cur = x;
    for (int i = 0; i < s->n; i++) {
        nn_layer *l = &s->L[i];
        size_t no = out_size(l) * N;
        t->in[i] = cur;
        t->aux[i] = t->aux2[i] = t->aux3[i] = NULL;
        float *y = NULL;
        switch (l->kind) {
        case NN_L_LINEAR:
        case NN_L_CONV: {
            const float *w = nn_params_val(ps, l->iw);
            const float *b = l->ib >= 0 ? nn_params_val(ps, l->ib) : NULL;
            if (l->sn) {
                int rows, cols;
                weight_rows_cols(l, &rows, &cols);
                float *wn = nn_arena_floats(a, (size_t)rows * cols);
                t->sigma[i] = sn_weight(wn, nn_params_val(ps, l->iu), nn_params_val(ps, l->iv), w, rows, cols, training);
                t->aux[i] = wn;
                w = wn;
            }
            y = nn_arena_floats(a, no);
            if (l->kind == NN_L_LINEAR) {
                nn_linear_forward(y, cur, w, b, (size_t)N, l->C, l->OC);
            } else {
                nn_conv c = nn_conv2d_shape(N, l->C, l->H, l->W, l->OC, l->k, l->stride, l->pad);
                size_t mark = nn_arena_mark(a);
                float *scratch = nn_arena_floats(a, nn_conv2d_forward_scratch(&c));
                nn_conv2d_forward(y, scratch, cur, w, b, &c);
                nn_arena_rewind(a, mark);
            }
            break;
        }
        case NN_L_CONVT: {
            y = nn_arena_floats(a, no);
            nn_conv c = nn_conv_transpose2d_shape(N, l->C, l->H, l->W, l->OC, l->k, l->stride, l->pad, l->out_pad);
            size_t mark = nn_arena_mark(a);
            float *scratch = nn_arena_floats(a, nn_conv_transpose2d_forward_scratch(&c));
            nn_conv_transpose2d_forward(y, scratch, cur, nn_params_val(ps, l->iw),
                                        l->ib >= 0 ? nn_params_val(ps, l->ib) : NULL, &c);
            nn_arena_rewind(a, mark);
            break;
        }
        case NN_L_BN:
        case NN_L_CBN: {
            int S = l->H * l->W;
            y = nn_arena_floats(a, no);
            t->aux[i] = nn_arena_floats(a, (size_t)l->C);  /* mean */
            t->aux2[i] = nn_arena_floats(a, (size_t)l->C); /* rstd */
            int cbn = l->kind == NN_L_CBN;
            nn_batchnorm_forward(y, t->aux[i], t->aux2[i], cur, cbn ? NULL : nn_params_val(ps, l->iw),
                                 cbn ? NULL : nn_params_val(ps, l->ib), nn_params_val(ps, l->irm),
                                 nn_params_val(ps, l->irv), N, l->C, S, l->eps, l->momentum, training);
            if (cbn) {
                T2I_ASSERTF(t->cond, "network %s: conditional BatchNorm needs tape.cond", s->prefix);
                /* per item: gamma = 1 + c Wg^T (aux3 keeps c Wg^T), beta = c Wb^T;
                 * y = xhat * gamma + beta */
                float *gam = nn_arena_floats(a, (size_t)N * l->C), *bet = nn_arena_floats(a, (size_t)N * l->C);
                nn_linear_forward(gam, t->cond, nn_params_val(ps, l->icw), NULL, (size_t)N, l->cond_dim, l->C);
                nn_linear_forward(bet, t->cond, nn_params_val(ps, l->icb), NULL, (size_t)N, l->cond_dim, l->C);
#pragma omp parallel for collapse(2) schedule(static)
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < l->C; c++) {
                        float g = 1.0f + gam[(size_t)n * l->C + c], bb = bet[(size_t)n * l->C + c];
                        float *p = y + ((size_t)n * l->C + c) * S;
                        for (int k = 0; k < S; k++) p[k] = p[k] * g + bb;
                    }
                t->aux3[i] = gam;
            }
            break;
        }
        case NN_L_GN: {
            int S = l->H * l->W;
            y = nn_arena_floats(a, no);
            t->aux[i] = nn_arena_floats(a, (size_t)N * l->groups);
            t->aux2[i] = nn_arena_floats(a, (size_t)N * l->groups);
            nn_groupnorm_forward(y, t->aux[i], t->aux2[i], cur, nn_params_val(ps, l->iw), nn_params_val(ps, l->ib), N,
                                 l->C, S, l->groups, l->eps);
            break;
        }
        case NN_L_ACT:
            y = act_in_place(s, t, i) ? (float *)cur : nn_arena_floats(a, no);
            nn_act_forward(y, cur, no, l->act, l->slope);
            break;
        case NN_L_RESHAPE:
        case NN_L_RES_BEGIN:
            y = (float *)cur;
            break;
        case NN_L_PIXEL_SHUFFLE:
            y = nn_arena_floats(a, no);
            nn_pixel_shuffle_forward(y, cur, N, l->OC, l->H, l->W, l->factor);
            break;
        case NN_L_UPSAMPLE:
            y = nn_arena_floats(a, no);
            nn_upsample_nearest_forward(y, cur, N, l->C, l->H, l->W, l->factor);
            break;
        case NN_L_AVGPOOL:
            y = nn_arena_floats(a, no);
            nn_avgpool2d_forward(y, cur, N, l->C, l->H, l->W, l->factor, l->factor);
            break;
        case NN_L_DROPOUT:
            if (!training || l->p == 0.0f) {
                y = (float *)cur;
            } else {
                T2I_ASSERTF(t->rng, "network %s: dropout needs tape.rng", s->prefix);
                y = nn_arena_floats(a, no);
                t->aux[i] = nn_arena_floats(a, no);
                nn_dropout_forward(y, t->aux[i], cur, no, l->p, t->rng);
            }
            break;
        case NN_L_RES_END: {
            const float *skip = t->in[l->res_begin];
            y = nn_arena_floats(a, no);
            float sc = l->res_scale;
#pragma omp parallel for simd schedule(static)
            for (size_t k = 0; k < no; k++) y[k] = skip[k] + sc * cur[k];
            break;
        }
        }
        t->out[i] = y;
        cur = y;
    }
    return (float *)cur;
}

float *nn_seq_backward(nn_seq *s, nn_tape *t, nn_arena *a, const float *dy, int need_dx) {
    return nn_seq_backward_ex(s, t, a, dy, need_dx, NULL);
}

float *nn_seq_backward_ex(nn_seq *s, nn_tape *t, nn_arena *a, const float *dy, int need_dx,
                          const float *const *dout) {
    nn_params *ps = s->ps;
    int N = t->N;
    const float *skipg[NN_SEQ_MAX] = {0};
    const float *cur = dy;
    int frozen = s->frozen;
    grad_pool gp;
    memset(&gp, 0, sizeof gp);
    gp.off = t->keep_all;
    for (int i = s->n - 1; i >= 0; i--) {
        nn_layer *l = &s->L[i];
        size_t ni = in_size(l) * N;
        int want = i > 0 || need_dx;
        const float *x = t->in[i];
        float *dx = NULL;
        if (dout && dout[i]) { /* the gradient of layer i's output gets dout[i] added */
            size_t no = out_size(l) * N;
            float *c2 = pool_sole(&gp, cur) ? (float *)cur : pool_get(&gp, a, no);
            nn_add_forward(c2, cur, dout[i], no);
            if (c2 != cur) pool_release(&gp, cur);
            cur = c2;
        }
        switch (l->kind) {
        case NN_L_LINEAR:
        case NN_L_CONV: {
            const float *w = l->sn ? t->aux[i] : nn_params_val(ps, l->iw);
            float *dw = frozen ? NULL : nn_params_grad(ps, l->iw);
            float *db = frozen || l->ib < 0 ? NULL : nn_params_grad(ps, l->ib);
            int rows, cols;
            weight_rows_cols(l, &rows, &cols);
            float *g = dw;
            if (l->sn && dw) g = nn_arena_zeros(a, (size_t)rows * cols);
            if (want) dx = pool_get(&gp, a, ni);
            if (l->kind == NN_L_LINEAR) {
                nn_linear_backward(dx, g, db, cur, x, w, (size_t)N, l->C, l->OC);
            } else {
                nn_conv c = nn_conv2d_shape(N, l->C, l->H, l->W, l->OC, l->k, l->stride, l->pad);
                size_t mark = nn_arena_mark(a);
                float *scratch = nn_arena_floats(a, nn_conv2d_scratch(&c));
                nn_conv2d_backward(dx, g, db, scratch, cur, x, w, &c);
                nn_arena_rewind(a, mark);
            }
            if (l->sn && dw)
                sn_backward(dw, g, w, nn_params_val(ps, l->iu), nn_params_val(ps, l->iv), t->sigma[i], rows, cols);
            break;
        }
        case NN_L_CONVT: {
            if (want) dx = pool_get(&gp, a, ni);
            nn_conv c = nn_conv_transpose2d_shape(N, l->C, l->H, l->W, l->OC, l->k, l->stride, l->pad, l->out_pad);
            size_t mark = nn_arena_mark(a);
            float *scratch = nn_arena_floats(a, nn_conv_transpose2d_scratch(&c));
            nn_conv_transpose2d_backward(dx, frozen ? NULL : nn_params_grad(ps, l->iw),
                                         frozen || l->ib < 0 ? NULL : nn_params_grad(ps, l->ib), scratch, cur, x,
                                         nn_params_val(ps, l->iw), &c);
            nn_arena_rewind(a, mark);
            break;
        }
        case NN_L_BN:
            T2I_ASSERTF(t->training, "network %s: backward through BatchNorm in eval mode", s->prefix);
            if (want) dx = pool_get(&gp, a, ni);
            nn_batchnorm_backward(dx, frozen ? NULL : nn_params_grad(ps, l->iw), frozen ? NULL : nn_params_grad(ps, l->ib),
                                  cur, x, nn_params_val(ps, l->iw), t->aux[i], t->aux2[i], N, l->C, l->H * l->W);
            break;
        case NN_L_CBN: {
            T2I_ASSERTF(t->training, "network %s: backward through BatchNorm in eval mode", s->prefix);
            int C = l->C, S = l->H * l->W;
            const float *mean = t->aux[i], *rstd = t->aux2[i], *gam = t->aux3[i];
            float *dgam = nn_arena_floats(a, (size_t)N * C), *dbet = nn_arena_floats(a, (size_t)N * C);
            float *dxhat = nn_arena_floats(a, ni);
#pragma omp parallel for collapse(2) schedule(static)
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    size_t off = ((size_t)n * C + c) * S;
                    float g = 1.0f + gam[(size_t)n * C + c];
                    double sg = 0.0, sb = 0.0;
                    for (int k = 0; k < S; k++) {
                        float xh = (x[off + k] - mean[c]) * rstd[c];
                        sg += cur[off + k] * xh;
                        sb += cur[off + k];
                        dxhat[off + k] = cur[off + k] * g;
                    }
                    dgam[(size_t)n * C + c] = (float)sg;
                    dbet[(size_t)n * C + c] = (float)sb;
                }
            if (want) {
                dx = pool_get(&gp, a, ni);
                nn_batchnorm_backward(dx, NULL, NULL, dxhat, x, NULL, mean, rstd, N, C, S);
            }
            nn_linear_backward(t->dcond, frozen ? NULL : nn_params_grad(ps, l->icw), NULL, dgam, t->cond,
                               nn_params_val(ps, l->icw), (size_t)N, l->cond_dim, C);
            nn_linear_backward(t->dcond, frozen ? NULL : nn_params_grad(ps, l->icb), NULL, dbet, t->cond,
                               nn_params_val(ps, l->icb), (size_t)N, l->cond_dim, C);
            break;
        }
        case NN_L_GN:
            if (want) dx = pool_get(&gp, a, ni);
            nn_groupnorm_backward(dx, frozen ? NULL : nn_params_grad(ps, l->iw), frozen ? NULL : nn_params_grad(ps, l->ib),
                                  cur, x, nn_params_val(ps, l->iw), t->aux[i], t->aux2[i], N, l->C, l->H * l->W,
                                  l->groups);
            break;
        case NN_L_ACT:
            if (want) {
                int inplace = pool_sole(&gp, cur) && (l->act == NN_ACT_RELU || l->act == NN_ACT_LEAKY_RELU);
                dx = inplace ? (float *)cur : pool_get(&gp, a, ni);
                nn_act_backward(dx, cur, x, ni, l->act, l->slope);
            }
            break;
        case NN_L_RESHAPE:
            dx = (float *)cur;
            break;
        case NN_L_PIXEL_SHUFFLE:
            if (want) {
                dx = pool_get(&gp, a, ni);
                nn_pixel_shuffle_backward(dx, cur, N, l->OC, l->H, l->W, l->factor);
            }
            break;
        case NN_L_UPSAMPLE:
            if (want) {
                dx = pool_get(&gp, a, ni);
                nn_upsample_nearest_backward(dx, cur, N, l->C, l->H, l->W, l->factor);
            }
            break;
        case NN_L_AVGPOOL:
            if (want) {
                dx = pool_get(&gp, a, ni);
                nn_avgpool2d_backward(dx, cur, N, l->C, l->H, l->W, l->factor, l->factor);
            }
            break;
        case NN_L_DROPOUT:
            if (!t->aux[i]) {
                dx = (float *)cur;
            } else if (want) {
                dx = pool_get(&gp, a, ni);
                nn_dropout_backward(dx, cur, t->aux[i], ni);
            }
            break;
        case NN_L_RES_END:
            skipg[l->res_begin] = cur;
            pool_hold(&gp, cur);
            if (l->res_scale == 1.0f) {
                dx = (float *)cur;
            } else {
                dx = pool_get(&gp, a, ni);
                for (size_t k = 0; k < ni; k++) dx[k] = l->res_scale * cur[k];
            }
            break;
        case NN_L_RES_BEGIN:
            T2I_ASSERT(skipg[i]);
            if (want) {
                dx = cur != skipg[i] && pool_sole(&gp, cur) ? (float *)cur : pool_get(&gp, a, ni);
                nn_add_forward(dx, cur, skipg[i], ni);
            }
            pool_release(&gp, skipg[i]);
            break;
        }
        if (dx != cur) pool_release(&gp, cur);
        cur = dx;
    }
    return need_dx ? (float *)cur : NULL;
}

double nn_seq_flops(const nn_seq *s) {
    double f = 0.0;
    for (int i = 0; i < s->n; i++) {
        const nn_layer *l = &s->L[i];
        if (l->kind == NN_L_LINEAR) f += 2.0 * l->C * l->OC;
        else if (l->kind == NN_L_CONV) f += 2.0 * l->OC * l->OH * l->OW * l->C * l->k * l->k;
        else if (l->kind == NN_L_CONVT) f += 2.0 * l->C * l->H * l->W * l->OC * l->k * l->k;
    }
    return f;
}

static const char *kind_name(nn_layer_kind k) {
    static const char *names[] = {"Linear", "Conv2d", "ConvTranspose2d", "BatchNorm", "CondBatchNorm",
                                  "GroupNorm", "Act", "Reshape", "PixelShuffle", "Upsample", "AvgPool",
                                  "Dropout", "ResBegin", "ResEnd"};
    return names[k];
}

void nn_seq_describe(const nn_seq *s, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < s->n && used < n; i++) {
        const nn_layer *l = &s->L[i];
        char extra[64] = "";
        if (l->kind == NN_L_CONV || l->kind == NN_L_CONVT)
            snprintf(extra, sizeof extra, " k%d s%d p%d%s", l->k, l->stride, l->pad, l->sn ? " SN" : "");
        else if (l->kind == NN_L_ACT)
            snprintf(extra, sizeof extra, " %s", nn_act_name(l->act));
        else if (l->kind == NN_L_LINEAR && l->sn)
            snprintf(extra, sizeof extra, " SN");
        int w = snprintf(buf + used, n - used, "  %s.%d %s%s: %dx%dx%d -> %dx%dx%d\n", s->prefix, i, kind_name(l->kind),
                         extra, l->C, l->H, l->W, l->OC, l->OH, l->OW);
        if (w < 0) break;
        used += (size_t)w;
    }
}
