/* transformer.c - pre-LN transformer stack; see transformer.h.
 *
 * Backward of one block, with dout the gradient of its output:
 *   dres1  = dout                                   (residual)
 *   dh     = dout W_cproj        ; dW_cproj += dout^T act(fch), db += sum dout
 *   dfch   = act'(fch) * dh
 *   dln2   = dfch W_fc           ; dW_fc += dfch^T ln2
 *   dres1 += LN2'(dln2)
 *   datty  = dres1 W_out         ; dW_out += dres1^T atty
 *   dqkv   = attention'(datty)
 *   dln1   = dqkv W_in           ; dW_in += dqkv^T ln1
 *   dx     = dres1 + LN1'(dln1)
 */
#include "transformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "optim.h"

void nn_tf_init(nn_transformer *tf, nn_params *ps, const char *prefix, const nn_tf_config *cfg) {
    T2I_ASSERT(cfg->n_layer > 0 && cfg->width > 0 && cfg->n_head > 0 && cfg->mlp_ratio > 0);
    T2I_ASSERTF(cfg->width % cfg->n_head == 0, "width %d not divisible by %d heads", cfg->width, cfg->n_head);
    tf->cfg = *cfg;
    tf->ps = ps;
    tf->packed = NULL;
    tf->packed_forward = 0;
    tf->idx = t2i_calloc((size_t)cfg->n_layer, sizeof *tf->idx);
    int C = cfg->width, Hd = cfg->mlp_ratio * C;
    char name[NN_NAME_MAX];
    for (int l = 0; l < cfg->n_layer; l++) {
        int *ix = tf->idx[l];
#define REG(slot, suffix, nd, ...)                                                          \
    snprintf(name, sizeof name, "%s.resblocks.%d.%s", prefix, l, suffix);                   \
    ix[slot] = nn_params_add(ps, name, nd, (int[]){__VA_ARGS__}, NN_TRAIN);
        REG(NN_TF_LN1W, "ln_1.weight", 1, C);
        REG(NN_TF_LN1B, "ln_1.bias", 1, C);
        REG(NN_TF_QKVW, "attn.in_proj_weight", 2, 3 * C, C);
        REG(NN_TF_QKVB, "attn.in_proj_bias", 1, 3 * C);
        REG(NN_TF_PROJW, "attn.out_proj.weight", 2, C, C);
        REG(NN_TF_PROJB, "attn.out_proj.bias", 1, C);
        REG(NN_TF_LN2W, "ln_2.weight", 1, C);
        REG(NN_TF_LN2B, "ln_2.bias", 1, C);
        REG(NN_TF_FCW, "mlp.c_fc.weight", 2, Hd, C);
        REG(NN_TF_FCB, "mlp.c_fc.bias", 1, Hd);
        REG(NN_TF_FCPW, "mlp.c_proj.weight", 2, C, Hd);
        REG(NN_TF_FCPB, "mlp.c_proj.bias", 1, C);
#undef REG
        /* AdamW: no decay on biases and LayerNorm gains */
        ps->p[ix[NN_TF_LN1W]].no_decay = ps->p[ix[NN_TF_LN1B]].no_decay = 1;
        ps->p[ix[NN_TF_LN2W]].no_decay = ps->p[ix[NN_TF_LN2B]].no_decay = 1;
        ps->p[ix[NN_TF_QKVB]].no_decay = ps->p[ix[NN_TF_PROJB]].no_decay = 1;
        ps->p[ix[NN_TF_FCB]].no_decay = ps->p[ix[NN_TF_FCPB]].no_decay = 1;
    }
}

void nn_tf_free(nn_transformer *tf) {
    nn_tf_unpack(tf);
    free(tf->idx);
    tf->idx = NULL;
}

void nn_tf_init_params(nn_transformer *tf, t2i_rng *rng, nn_tf_init_kind kind) {
    const nn_tf_config *c = &tf->cfg;
    int C = c->width, Hd = c->mlp_ratio * C;
    float s_in = 0.02f, s_out = 0.02f, s_fc = 0.02f, s_proj = 0.02f;
    if (kind == NN_TF_INIT_CLIP) {
        s_in = 1.0f / sqrtf((float)C);
        s_out = s_proj = s_in / sqrtf(2.0f * c->n_layer);
        s_fc = 1.0f / sqrtf(2.0f * C);
    }
    for (int l = 0; l < c->n_layer; l++) {
        int *ix = tf->idx[l];
        nn_params *ps = tf->ps;
        nn_init_const(nn_params_val(ps, ix[NN_TF_LN1W]), (size_t)C, 1.0f);
        nn_init_const(nn_params_val(ps, ix[NN_TF_LN1B]), (size_t)C, 0.0f);
        nn_init_const(nn_params_val(ps, ix[NN_TF_LN2W]), (size_t)C, 1.0f);
        nn_init_const(nn_params_val(ps, ix[NN_TF_LN2B]), (size_t)C, 0.0f);
        nn_init_normal(nn_params_val(ps, ix[NN_TF_QKVW]), (size_t)3 * C * C, 0.0f, s_in, rng);
        nn_init_const(nn_params_val(ps, ix[NN_TF_QKVB]), (size_t)3 * C, 0.0f);
        nn_init_normal(nn_params_val(ps, ix[NN_TF_PROJW]), (size_t)C * C, 0.0f, s_out, rng);
        nn_init_const(nn_params_val(ps, ix[NN_TF_PROJB]), (size_t)C, 0.0f);
        nn_init_normal(nn_params_val(ps, ix[NN_TF_FCW]), (size_t)Hd * C, 0.0f, s_fc, rng);
        nn_init_const(nn_params_val(ps, ix[NN_TF_FCB]), (size_t)Hd, 0.0f);
        nn_init_normal(nn_params_val(ps, ix[NN_TF_FCPW]), (size_t)C * Hd, 0.0f, s_proj, rng);
        nn_init_const(nn_params_val(ps, ix[NN_TF_FCPB]), (size_t)C, 0.0f);
    }
}

#define P(l, k) nn_params_val(tf->ps, tf->idx[l][k])
#define G(l, k) nn_params_grad(tf->ps, tf->idx[l][k])

enum { PK_QKV, PK_PROJ, PK_FC, PK_FCP, PK_N };
static void cached_linear(float *out, const float *in, const nn_packed *pk, const float *w, const float *b, size_t N,
                          int IN, int OUT, int accumulate);

static float **ptrs(nn_arena *a, int n) { return nn_arena_bytes(a, (size_t)n * sizeof(float *)); }

float *nn_tf_forward(nn_transformer *tf, nn_tf_tape *tp, nn_arena *a, const float *x, int B, int T) {
    const nn_tf_config *c = &tf->cfg;
    int C = c->width, Hd = c->mlp_ratio * C, NH = c->n_head, L = c->n_layer;
    size_t N = (size_t)B * T;
    if (tp) {
        tp->B = B, tp->T = T;
        tp->x = ptrs(a, L), tp->ln1 = ptrs(a, L), tp->ln1_mean = ptrs(a, L), tp->ln1_rstd = ptrs(a, L);
        tp->qkv = ptrs(a, L), tp->att = ptrs(a, L), tp->atty = ptrs(a, L), tp->res1 = ptrs(a, L);
        tp->ln2 = ptrs(a, L), tp->ln2_mean = ptrs(a, L), tp->ln2_rstd = ptrs(a, L);
        tp->fch = ptrs(a, L), tp->fch_act = ptrs(a, L);
    }
    /* inference: two residual buffers (the input x is never written), per-layer scratch
     * rewound after each layer; out may reuse cur's buffer since res1 holds all it needs */
    float *ping = NULL, *pong = NULL;
    if (!tp) {
        ping = nn_arena_floats(a, N * C);
        pong = nn_arena_floats(a, N * C);
    }
    const float *cur = x;
    for (int l = 0; l < L; l++) {
        size_t mark = nn_arena_mark(a);
        float *ln1 = nn_arena_floats(a, N * C), *m1 = nn_arena_floats(a, N), *r1 = nn_arena_floats(a, N);
        float *qkv = nn_arena_floats(a, N * 3 * C), *att = nn_arena_floats(a, (size_t)B * NH * T * T);
        float *atty = nn_arena_floats(a, N * C);
        float *res1 = tp ? nn_arena_floats(a, N * C) : (cur == ping ? pong : ping);
        float *ln2 = nn_arena_floats(a, N * C), *m2 = nn_arena_floats(a, N), *r2 = nn_arena_floats(a, N);
        float *fch = nn_arena_floats(a, N * Hd), *fca = nn_arena_floats(a, N * Hd);
        float *out = tp ? nn_arena_floats(a, N * C) : (res1 == ping ? pong : ping);
        nn_layernorm_forward(ln1, m1, r1, cur, P(l, NN_TF_LN1W), P(l, NN_TF_LN1B), N, C, c->ln_eps);
        /* the packed copies (nn_tf_pack_forward) in inference, else the parameters */
        const nn_packed *pk = !tp && tf->packed_forward && tf->packed ? tf->packed + (size_t)l * PK_N : NULL;
#define PKF(k) (pk ? &pk[k] : NULL)
        cached_linear(qkv, ln1, PKF(PK_QKV), P(l, NN_TF_QKVW), P(l, NN_TF_QKVB), N, C, 3 * C, 0);
        nn_attention_forward(atty, att, NULL, qkv, B, T, C, NH, c->causal);
        /* res1 = cur + atty W^T + b: start from cur, the product accumulates */
        if (res1 != cur) memcpy(res1, cur, N * C * sizeof(float));
        cached_linear(res1, atty, PKF(PK_PROJ), P(l, NN_TF_PROJW), P(l, NN_TF_PROJB), N, C, C, 1);
        nn_layernorm_forward(ln2, m2, r2, res1, P(l, NN_TF_LN2W), P(l, NN_TF_LN2B), N, C, c->ln_eps);
        cached_linear(fch, ln2, PKF(PK_FC), P(l, NN_TF_FCW), P(l, NN_TF_FCB), N, C, Hd, 0);
        nn_act_forward(fca, fch, N * Hd, c->act, 0.0f);
        memcpy(out, res1, N * C * sizeof(float));
        cached_linear(out, fca, PKF(PK_FCP), P(l, NN_TF_FCPW), P(l, NN_TF_FCPB), N, Hd, C, 1);
#undef PKF
        if (tp) {
            tp->x[l] = (float *)cur, tp->ln1[l] = ln1, tp->ln1_mean[l] = m1, tp->ln1_rstd[l] = r1;
            tp->qkv[l] = qkv, tp->att[l] = att, tp->atty[l] = atty, tp->res1[l] = res1;
            tp->ln2[l] = ln2, tp->ln2_mean[l] = m2, tp->ln2_rstd[l] = r2, tp->fch[l] = fch, tp->fch_act[l] = fca;
        } else {
            nn_arena_rewind(a, mark);
        }
        cur = out;
    }
    if (tp) tp->out = (float *)cur;
    return (float *)cur;
}

float *nn_tf_backward(nn_transformer *tf, nn_tf_tape *tp, nn_arena *a, const float *dout) {
    const nn_tf_config *c = &tf->cfg;
    int C = c->width, Hd = c->mlp_ratio * C, NH = c->n_head, L = c->n_layer, B = tp->B, T = tp->T;
    size_t N = (size_t)B * T;
    float *scratch = nn_arena_floats(a, nn_attention_scratch(B, T, C, NH));
    float *dres1 = nn_arena_floats(a, N * C);
    float *dA = nn_arena_floats(a, N * C), *dB = nn_arena_floats(a, N * C); /* dx ping-pong */
    float *dfch = nn_arena_floats(a, N * Hd), *dln = nn_arena_floats(a, N * C);
    float *datty = nn_arena_floats(a, N * C), *dqkv = nn_arena_floats(a, N * 3 * C);
    const float *dcur = dout;
    for (int l = L - 1; l >= 0; l--) {
        float *dx = dcur == dA ? dB : dA;
        memcpy(dres1, dcur, N * C * sizeof(float));
        /* MLP branch */
        memset(dfch, 0, N * Hd * sizeof(float));
        nn_linear_backward(dfch, G(l, NN_TF_FCPW), G(l, NN_TF_FCPB), dcur, tp->fch_act[l], P(l, NN_TF_FCPW), N, Hd, C);
        nn_act_backward(dfch, dfch, tp->fch[l], N * Hd, c->act, 0.0f);
        memset(dln, 0, N * C * sizeof(float));
        nn_linear_backward(dln, G(l, NN_TF_FCW), G(l, NN_TF_FCB), dfch, tp->ln2[l], P(l, NN_TF_FCW), N, C, Hd);
        nn_layernorm_backward(dres1, G(l, NN_TF_LN2W), G(l, NN_TF_LN2B), dln, tp->res1[l], P(l, NN_TF_LN2W),
                              tp->ln2_mean[l], tp->ln2_rstd[l], N, C);
        /* attention branch */
        memset(datty, 0, N * C * sizeof(float));
        nn_linear_backward(datty, G(l, NN_TF_PROJW), G(l, NN_TF_PROJB), dres1, tp->atty[l], P(l, NN_TF_PROJW), N, C, C);
        memset(dqkv, 0, N * 3 * C * sizeof(float));
        nn_attention_backward(dqkv, scratch, datty, tp->qkv[l], tp->att[l], B, T, C, NH);
        memset(dln, 0, N * C * sizeof(float));
        nn_linear_backward(dln, G(l, NN_TF_QKVW), G(l, NN_TF_QKVB), dqkv, tp->ln1[l], P(l, NN_TF_QKVW), N, C, 3 * C);
        memcpy(dx, dres1, N * C * sizeof(float));
        nn_layernorm_backward(dx, G(l, NN_TF_LN1W), G(l, NN_TF_LN1B), dln, tp->x[l], P(l, NN_TF_LN1W),
                              tp->ln1_mean[l], tp->ln1_rstd[l], N, C);
        dcur = dx;
    }
    return (float *)dcur;
}

void nn_tf_cache_init(nn_tf_cache *cc, const nn_transformer *tf, int B, int Tmax) {
    const nn_tf_config *c = &tf->cfg;
    int hs = c->width / c->n_head;
    cc->n_layer = c->n_layer;
    cc->layer = t2i_calloc((size_t)c->n_layer, sizeof(nn_kv_cache));
    size_t per = (size_t)B * c->n_head * Tmax * hs;
    cc->mem = t2i_malloc_aligned(2 * per * c->n_layer * sizeof(float));
    for (int l = 0; l < c->n_layer; l++) {
        nn_kv_cache *k = &cc->layer[l];
        k->B = B, k->NH = c->n_head, k->Tmax = Tmax, k->hs = hs, k->len = 0;
        k->k = cc->mem + 2 * per * l;
        k->v = k->k + per;
    }
}

void nn_tf_cache_reset(nn_tf_cache *cc) {
    for (int l = 0; l < cc->n_layer; l++) cc->layer[l].len = 0;
}

void nn_tf_cache_fan_out(nn_tf_cache *dst, const nn_tf_cache *src, const int *from) {
    T2I_ASSERT(dst->n_layer == src->n_layer);
    for (int l = 0; l < dst->n_layer; l++) {
        nn_kv_cache *d = &dst->layer[l];
        const nn_kv_cache *s = &src->layer[l];
        T2I_ASSERT(d->NH == s->NH && d->hs == s->hs && s->len <= d->Tmax);
        size_t n = (size_t)s->len * s->hs;
        for (int b = 0; b < d->B; b++) {
            T2I_ASSERT(from[b] >= 0 && from[b] < s->B);
            for (int h = 0; h < d->NH; h++) {
                size_t di = ((size_t)b * d->NH + h) * d->Tmax * d->hs, si = ((size_t)from[b] * s->NH + h) * s->Tmax * s->hs;
                memcpy(d->k + di, s->k + si, n * sizeof(float));
                memcpy(d->v + di, s->v + si, n * sizeof(float));
            }
        }
        d->len = s->len;
    }
}

void nn_tf_cache_free(nn_tf_cache *cc) {
    free(cc->layer);
    t2i_free(cc->mem);
    memset(cc, 0, sizeof *cc);
}

void nn_tf_pack(nn_transformer *tf) {
    const nn_tf_config *c = &tf->cfg;
    int C = c->width, Hd = c->mlp_ratio * C;
    nn_tf_unpack(tf);
    tf->packed = t2i_calloc((size_t)c->n_layer * PK_N, sizeof(nn_packed));
    for (int l = 0; l < c->n_layer; l++) {
        nn_packed *p = tf->packed + (size_t)l * PK_N;
        nn_pack_weights(&p[PK_QKV], P(l, NN_TF_QKVW), 3 * C, C);
        nn_pack_weights(&p[PK_PROJ], P(l, NN_TF_PROJW), C, C);
        nn_pack_weights(&p[PK_FC], P(l, NN_TF_FCW), Hd, C);
        nn_pack_weights(&p[PK_FCP], P(l, NN_TF_FCPW), C, Hd);
    }
}

void nn_tf_pack_forward(nn_transformer *tf) {
    nn_tf_pack(tf);
    tf->packed_forward = 1;
}

void nn_tf_unpack(nn_transformer *tf) {
    tf->packed_forward = 0;
    if (!tf->packed) return;
    for (int i = 0; i < tf->cfg.n_layer * PK_N; i++) nn_packed_free(&tf->packed[i]);
    free(tf->packed);
    tf->packed = NULL;
}

/* out (N, OUT) = [out +] in (N, IN) w^T + b: by the packed copy pk when there is one. */
static void cached_linear(float *out, const float *in, const nn_packed *pk, const float *w, const float *b, size_t N,
                          int IN, int OUT, int accumulate) {
    if (pk) nn_packed_gemm(out, in, pk, b, (int)N, accumulate);
    else if (!accumulate) nn_linear_forward(out, in, w, b, N, IN, OUT);
    else {
        nn_add_bias_rows(out, b, N, OUT);
        nn_gemm(0, 1, (int)N, OUT, IN, 1.0f, in, IN, w, IN, 1.0f, out, OUT);
    }
}

float *nn_tf_forward_cached(nn_transformer *tf, nn_tf_cache *cc, nn_arena *a, const float *x, int Tn) {
    const nn_tf_config *c = &tf->cfg;
    T2I_ASSERTF(c->causal, "the key/value cache needs a causal stack");
    int C = c->width, Hd = c->mlp_ratio * C, L = c->n_layer, B = cc->layer[0].B;
    size_t N = (size_t)B * Tn;
    float *ping = nn_arena_floats(a, N * C), *pong = nn_arena_floats(a, N * C);
    const float *cur = x;
    for (int l = 0; l < L; l++) {
        size_t mark = nn_arena_mark(a);
        nn_kv_cache *kv = &cc->layer[l];
        float *ln = nn_arena_floats(a, N * C), *qkv = nn_arena_floats(a, N * 3 * C), *atty = nn_arena_floats(a, N * C);
        float *fch = nn_arena_floats(a, N * Hd);
        float *sc = nn_arena_floats(a, nn_attention_cached_scratch(B, Tn, kv->Tmax, c->n_head));
        float *res1 = cur == ping ? pong : ping;
        const nn_packed *pk = tf->packed ? tf->packed + (size_t)l * PK_N : NULL;
#define PKD(k) (pk ? &pk[k] : NULL)
        float *out = res1 == ping ? pong : ping; /* may be cur's buffer: res1 holds what is needed */
        nn_layernorm_forward(ln, NULL, NULL, cur, P(l, NN_TF_LN1W), P(l, NN_TF_LN1B), N, C, c->ln_eps);
        cached_linear(qkv, ln, PKD(PK_QKV), P(l, NN_TF_QKVW), P(l, NN_TF_QKVB), N, C, 3 * C, 0);
        nn_attention_cached_forward(atty, sc, kv, qkv, Tn);
        memcpy(res1, cur, N * C * sizeof(float));
        cached_linear(res1, atty, PKD(PK_PROJ), P(l, NN_TF_PROJW), P(l, NN_TF_PROJB), N, C, C, 1);
        nn_layernorm_forward(ln, NULL, NULL, res1, P(l, NN_TF_LN2W), P(l, NN_TF_LN2B), N, C, c->ln_eps);
        cached_linear(fch, ln, PKD(PK_FC), P(l, NN_TF_FCW), P(l, NN_TF_FCB), N, C, Hd, 0);
        nn_act_forward(fch, fch, N * Hd, c->act, 0.0f);
        memcpy(out, res1, N * C * sizeof(float));
        cached_linear(out, fch, PKD(PK_FCP), P(l, NN_TF_FCPW), P(l, NN_TF_FCPB), N, Hd, C, 1);
#undef PKD
        nn_arena_rewind(a, mark);
        cur = out;
    }
    return (float *)cur;
}

double nn_tf_flops(const nn_tf_config *c, int T) {
    double C = c->width, Hd = (double)c->mlp_ratio * c->width;
    double per_pos = 2.0 * (3 * C * C + C * C + 2 * C * Hd);
    double attn = 2.0 * 2.0 * T * C; /* QK^T and PV per position (full attention) */
    return c->n_layer * T * (per_pos + attn);
}
