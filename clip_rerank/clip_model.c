/* clip_model.c - CLIP's configuration, parameters, forward and backward of both towers,
 * the symmetric contrastive loss and the batched embedding helpers; see clip.h.
 *
 * Backward notes (adds into gradients, llm.c style):
 *   vision: feat = ln_post(h0) P   ->  dP += ln_post^T dfeat, dln_post = dfeat P^T;
 *           dh0 = LN'(dln_post) goes to position 0 of the transformer output only;
 *           demb = LN_pre'(transformer'(dh)); dclass += sum_n demb[n, 0];
 *           dpos[t] += sum_n demb[n, t]; dconv1 += demb[:, 1:]^T patches.
 *   text:   the same around the EOT rows; token_embedding rows get demb (rows may repeat).
 *   loss:   u = x/|x| has du -> dx = (du - u <u, du>) / |x|; logits = e^s u_i . v_j, so
 *           dL/ds = sum(dlogits * logits); with p = softmax over rows and q over columns,
 *           dlogits = (p - I) / 2N + (q - I) / 2N.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "clip.h"
#include "dist.h"
#include "optim.h"

/* ------------------------------------------------------------------ config ---- */

void clip_config_default(clip_config *c) {
    memset(c, 0, sizeof *c);
    c->embed_dim = 64;
    c->image_resolution = 32, c->vision_patch_size = 4;
    c->vision_width = 96, c->vision_layers = 4, c->vision_heads = 4;
    c->context_length = 16, c->vocab_size = 1024; /* replaced by the learned vocabulary's size */
    c->transformer_width = 96, c->transformer_layers = 3, c->transformer_heads = 4;
    c->mlp_ratio = 4;
    c->act = NN_ACT_QUICK_GELU;
    c->ln_eps = 1e-5f;
}

void clip_config_vit_b32(clip_config *c) {
    memset(c, 0, sizeof *c);
    c->embed_dim = 512;
    c->image_resolution = 224, c->vision_patch_size = 32;
    c->vision_width = 768, c->vision_layers = 12, c->vision_heads = 12;
    c->context_length = 77, c->vocab_size = 49408;
    c->transformer_width = 512, c->transformer_layers = 12, c->transformer_heads = 8;
    c->mlp_ratio = 4;
    c->act = NN_ACT_QUICK_GELU;
    c->ln_eps = 1e-5f;
}

/* clip_config's fields in the order of its JSON (OpenAI's build_model names, then act and
 * ln_eps). Reading keeps what the caller set for an absent key: files of other tools carry
 * only some of them (see clip_load.c). */
#define CONFIG_FIELDS(c)                                                                                \
    nn_field cf[] = {NN_F_INT_IN("embed_dim", (c)->embed_dim, 1, 1 << 14),                              \
                     NN_F_INT_IN("image_resolution", (c)->image_resolution, 1, 4096),                   \
                     NN_F_INT_IN("vision_layers", (c)->vision_layers, 1, 256),                          \
                     NN_F_INT_IN("vision_width", (c)->vision_width, 1, 1 << 14),                        \
                     NN_F_INT_IN("vision_patch_size", (c)->vision_patch_size, 1, 1024),                 \
                     NN_F_INT_IN("vision_heads", (c)->vision_heads, 1, 1024),                           \
                     NN_F_INT_IN("context_length", (c)->context_length, 2, 1 << 14),                    \
                     NN_F_INT_IN("vocab_size", (c)->vocab_size, 3, 1 << 24),                            \
                     NN_F_INT_IN("transformer_width", (c)->transformer_width, 1, 1 << 14),              \
                     NN_F_INT_IN("transformer_heads", (c)->transformer_heads, 1, 1024),                 \
                     NN_F_INT_IN("transformer_layers", (c)->transformer_layers, 1, 256),                \
                     NN_F_INT_IN("mlp_ratio", (c)->mlp_ratio, 1, 64),                                   \
                     NN_F_ACT("act", (c)->act),                                                         \
                     NN_F_FLOAT("ln_eps", (c)->ln_eps),                                                 \
                     NN_F_INT_IN("vision_stem", (c)->vision_stem, 0, 1 << 12),                          \
                     NN_F_INT_IN("vision_stem_extra", (c)->vision_stem_extra, 0, 16)}

int clip_config_check(const clip_config *c) {
    clip_config k = *c;
    CONFIG_FIELDS(&k);
    if (nn_fields_check(cf, NN_NFIELDS(cf), "CLIP config") != 0) return -1;
    if (c->image_resolution % c->vision_patch_size)
        return t2i_error_set("CLIP config: image_resolution %d is not a multiple of vision_patch_size %d",
                             c->image_resolution, c->vision_patch_size);
    if (c->vision_stem > 0 && (c->vision_patch_size & (c->vision_patch_size - 1)))
        return t2i_error_set("CLIP config: a convolutional stem needs a power-of-two vision_patch_size, not %d",
                             c->vision_patch_size);
    if (c->vision_stem_extra > 0 && c->vision_stem == 0)
        return t2i_error_set("CLIP config: vision_stem_extra %d without a convolutional stem (vision_stem 0)",
                             c->vision_stem_extra);
    if (c->vision_width % c->vision_heads)
        return t2i_error_set("CLIP config: vision_width %d is not divisible by vision_heads %d", c->vision_width,
                             c->vision_heads);
    if (c->transformer_width % c->transformer_heads)
        return t2i_error_set("CLIP config: transformer_width %d is not divisible by transformer_heads %d",
                             c->transformer_width, c->transformer_heads);
    if (!(c->ln_eps > 0 && c->ln_eps < 1)) return t2i_error_set("CLIP config: 'ln_eps' = %g is outside (0, 1)", c->ln_eps);
    return 0;
}

char *clip_config_to_json(const clip_config *c) {
    clip_config k = *c;
    CONFIG_FIELDS(&k);
    return nn_fields_to_json(cf, NN_NFIELDS(cf));
}

int clip_config_from_json(clip_config *c, const char *json) {
    CONFIG_FIELDS(c);
    return nn_fields_from_json(json, cf, NN_NFIELDS(cf), "CLIP config", 1);
}

static nn_tf_config vis_tf_config(const clip_config *c) {
    nn_tf_config t = {c->vision_layers, c->vision_width, c->vision_heads, c->mlp_ratio, c->act, 0, c->ln_eps};
    return t;
}

static nn_tf_config txt_tf_config(const clip_config *c) {
    nn_tf_config t = {c->transformer_layers, c->transformer_width, c->transformer_heads, c->mlp_ratio, c->act, 1,
                      c->ln_eps};
    return t;
}

/* The convolutional stem (clip.h): 3x3 stride 1 to C, log2(P) 3x3 stride 2 doubling the
 * channels up to W_v (each followed by vision_stem_extra 3x3 at stride 1), 1x1 to W_v;
 * BatchNorm + ReLU after each 3x3. Built on s over ps. */
static void build_stem(nn_seq *s, nn_params *ps, const clip_config *c) {
    int R = c->image_resolution, ch = c->vision_stem < c->vision_width ? c->vision_stem : c->vision_width;
    nn_seq_init(s, ps, "visual.stem", 3, R, R);
    nn_seq_conv(s, ch, 3, 1, 1, 0);
    nn_seq_bn(s);
    nn_seq_act(s, NN_ACT_RELU, 0);
    for (int p = c->vision_patch_size; p > 1; p /= 2) {
        ch = 2 * ch < c->vision_width ? 2 * ch : c->vision_width;
        for (int k = 0; k <= c->vision_stem_extra; k++) {
            nn_seq_conv(s, ch, 3, k ? 1 : 2, 1, 0);
            nn_seq_bn(s);
            nn_seq_act(s, NN_ACT_RELU, 0);
        }
    }
    nn_seq_conv(s, c->vision_width, 1, 1, 0, 1);
}

double clip_image_flops(const clip_config *c) {
    int g = c->image_resolution / c->vision_patch_size, G = g * g;
    nn_tf_config t = vis_tf_config(c);
    double K = 3.0 * c->vision_patch_size * c->vision_patch_size, embed = 2.0 * G * K * c->vision_width;
    if (c->vision_stem > 0) {
        nn_params ps;
        nn_params_init(&ps);
        nn_seq s;
        build_stem(&s, &ps, c);
        embed = 2.0 * nn_seq_flops(&s);
        nn_params_free(&ps);
    }
    return embed + nn_tf_flops(&t, G + 1) + 2.0 * c->vision_width * c->embed_dim;
}

double clip_text_flops(const clip_config *c, int t) {
    nn_tf_config tc = txt_tf_config(c);
    /* causal attention does half the score work of nn_tf_flops's full count; kept simple */
    return nn_tf_flops(&tc, t) + 2.0 * c->transformer_width * c->embed_dim;
}

/* ------------------------------------------------------------------ model ---- */

static int add(nn_params *ps, const char *name, int ndim, const int *shape) {
    return nn_params_add(ps, name, ndim, shape, NN_TRAIN);
}

void clip_model_build(clip_model *m, const clip_config *cfg) {
    T2I_ASSERTF(clip_config_check(cfg) == 0, "%s", t2i_error_msg());
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    nn_params *ps = &m->ps;
    nn_params_init(ps);
    int Wv = cfg->vision_width, P = cfg->vision_patch_size, g = cfg->image_resolution / P, D = cfg->embed_dim;
    int Wt = cfg->transformer_width;
    if (cfg->vision_stem > 0)
        build_stem(&m->stem, ps, cfg), m->conv1 = -1;
    else
        m->conv1 = add(ps, "visual.conv1.weight", 4, (int[]){Wv, 3, P, P});
    m->cls = add(ps, "visual.class_embedding", 1, (int[]){Wv});
    m->vpos = add(ps, "visual.positional_embedding", 2, (int[]){g * g + 1, Wv});
    m->ln_pre_w = add(ps, "visual.ln_pre.weight", 1, (int[]){Wv});
    m->ln_pre_b = add(ps, "visual.ln_pre.bias", 1, (int[]){Wv});
    nn_tf_config vc = vis_tf_config(cfg), tc = txt_tf_config(cfg);
    nn_tf_init(&m->vis, ps, "visual.transformer", &vc);
    m->ln_post_w = add(ps, "visual.ln_post.weight", 1, (int[]){Wv});
    m->ln_post_b = add(ps, "visual.ln_post.bias", 1, (int[]){Wv});
    m->proj = add(ps, "visual.proj", 2, (int[]){Wv, D});
    m->tok_emb = add(ps, "token_embedding.weight", 2, (int[]){cfg->vocab_size, Wt});
    m->tpos = add(ps, "positional_embedding", 2, (int[]){cfg->context_length, Wt});
    nn_tf_init(&m->txt, ps, "transformer", &tc);
    m->ln_final_w = add(ps, "ln_final.weight", 1, (int[]){Wt});
    m->ln_final_b = add(ps, "ln_final.bias", 1, (int[]){Wt});
    m->text_proj = add(ps, "text_projection", 2, (int[]){Wt, D});
    m->logit_scale = add(ps, "logit_scale", 0, NULL);
    nn_params_alloc(ps);
    clip_model_set_no_decay(m);
    nn_arena_init(&m->arena);
}

void clip_model_set_no_decay(clip_model *m) {
    int nd[] = {m->cls, m->vpos, m->ln_pre_w, m->ln_pre_b, m->ln_post_w, m->ln_post_b, m->tok_emb,
                m->tpos, m->ln_final_w, m->ln_final_b, m->logit_scale};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++) m->ps.p[nd[i]].no_decay = 1;
    /* the stem: BatchNorm marks its own; the 1x1 convolution's bias */
    if (m->conv1 < 0)
        for (int i = 0; i < m->stem.n; i++)
            if (m->stem.L[i].ib >= 0) m->ps.p[m->stem.L[i].ib].no_decay = 1;
}

#define VAL(m, i) nn_params_val(&(m)->ps, (m)->i)
#define GRAD(m, i) nn_params_grad(&(m)->ps, (m)->i)

void clip_model_init(clip_model *m, t2i_rng *rng) {
    const clip_config *c = &m->cfg;
    nn_params *ps = &m->ps;
    for (int i = 0; i < ps->n; i++) memset(nn_params_val(ps, i), 0, ps->p[i].numel * sizeof(float));
    int Wv = c->vision_width, Wt = c->transformer_width, P = c->vision_patch_size;
    float sv = 1.0f / sqrtf((float)Wv);
    if (m->conv1 >= 0)
        nn_init_pytorch_uniform(VAL(m, conv1), ps->p[m->conv1].numel, 3 * P * P, rng);
    else
        nn_seq_init_params(&m->stem, rng, NN_INIT_PYTORCH);
    nn_init_normal(VAL(m, cls), ps->p[m->cls].numel, 0.0f, sv, rng);
    nn_init_normal(VAL(m, vpos), ps->p[m->vpos].numel, 0.0f, sv, rng);
    nn_init_normal(VAL(m, proj), ps->p[m->proj].numel, 0.0f, sv, rng);
    nn_init_const(VAL(m, ln_pre_w), (size_t)Wv, 1.0f);
    nn_init_const(VAL(m, ln_post_w), (size_t)Wv, 1.0f);
    nn_tf_init_params(&m->vis, rng, NN_TF_INIT_CLIP);
    nn_init_normal(VAL(m, tok_emb), ps->p[m->tok_emb].numel, 0.0f, 0.02f, rng);
    nn_init_normal(VAL(m, tpos), ps->p[m->tpos].numel, 0.0f, 0.01f, rng);
    nn_tf_init_params(&m->txt, rng, NN_TF_INIT_CLIP);
    nn_init_const(VAL(m, ln_final_w), (size_t)Wt, 1.0f);
    nn_init_normal(VAL(m, text_proj), ps->p[m->text_proj].numel, 0.0f, 1.0f / sqrtf((float)Wt), rng);
    *VAL(m, logit_scale) = CLIP_LOGIT_SCALE_INIT;
}

void clip_text_pack(clip_model *m) { nn_tf_pack_forward(&m->txt); }

void clip_model_free(clip_model *m) {
    nn_tf_free(&m->vis);
    nn_tf_free(&m->txt);
    nn_params_free(&m->ps);
    nn_arena_free(&m->arena);
    if (m->tok) clip_tok_free(m->tok);
    free(m->vocab);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* Bilinear resampling of a (g0 x g0) grid of W-vectors to (g1 x g1), PyTorch's
 * F.interpolate(mode="bilinear", align_corners=False): output cell i samples the source
 * at (i + 0.5) * g0 / g1 - 0.5, clamped to the edge cells. */
void clip_resample_grid(const float *src, int g0, float *dst, int g1, int W) {
    float sc = (float)g0 / (float)g1;
    for (int oy = 0; oy < g1; oy++) {
        float fy = fmaxf(((float)oy + 0.5f) * sc - 0.5f, 0.0f);
        int y0 = (int)fy, y1 = y0 + (y0 < g0 - 1);
        float wy = fy - (float)y0;
        for (int ox = 0; ox < g1; ox++) {
            float fx = fmaxf(((float)ox + 0.5f) * sc - 0.5f, 0.0f);
            int x0 = (int)fx, x1 = x0 + (x0 < g0 - 1);
            float wx = fx - (float)x0;
            const float *a = src + ((size_t)y0 * g0 + x0) * W, *b = src + ((size_t)y0 * g0 + x1) * W;
            const float *c = src + ((size_t)y1 * g0 + x0) * W, *d = src + ((size_t)y1 * g0 + x1) * W;
            float *o = dst + ((size_t)oy * g1 + ox) * W;
            for (int k = 0; k < W; k++)
                o[k] = (1 - wy) * ((1 - wx) * a[k] + wx * b[k]) + wy * ((1 - wx) * c[k] + wx * d[k]);
        }
    }
}

int clip_model_set_resolution(clip_model *m, int res) {
    clip_config cfg = m->cfg;
    int P = cfg.vision_patch_size;
    if (res < P || res % P)
        return t2i_error_set("resolution %d is not a positive multiple of the patch size %d", res, P);
    cfg.image_resolution = res;
    if (clip_config_check(&cfg) != 0) return -1;
    clip_model n;
    clip_model_build(&n, &cfg);
    for (int i = 0; i < n.ps.n; i++) {
        if (i == n.vpos) continue;
        T2I_ASSERT(n.ps.p[i].numel == m->ps.p[i].numel);
        memcpy(nn_params_val(&n.ps, i), nn_params_val(&m->ps, i), n.ps.p[i].numel * sizeof(float));
    }
    int W = cfg.vision_width, g0 = m->cfg.image_resolution / P, g1 = res / P;
    const float *src = VAL(m, vpos);
    float *dst = VAL(&n, vpos);
    memcpy(dst, src, (size_t)W * sizeof(float)); /* the class token's position */
    clip_resample_grid(src + W, g0, dst + W, g1, W);
    n.tok = m->tok, n.vocab = m->vocab, n.path = m->path;
    m->tok = NULL, m->vocab = NULL, m->path = NULL;
    clip_model_free(m);
    *m = n;
    m->vis.ps = m->txt.ps = m->stem.ps = &m->ps; /* the towers index the store they were built on */
    return 0;
}

/* ------------------------------------------------------------------ vision ---- */

void clip_image_forward(clip_model *m, clip_vis_tape *tape, nn_arena *a, const float *images, int N, float *feat) {
    const clip_config *c = &m->cfg;
    int R = c->image_resolution, P = c->vision_patch_size, g = R / P, G = g * g, T = G + 1, K = 3 * P * P;
    int W = c->vision_width, D = c->embed_dim;
    size_t NG = (size_t)N * G, NT = (size_t)N * T;
    clip_vis_tape local;
    clip_vis_tape *tp = tape ? tape : &local;
    tp->N = N, tp->G = G, tp->T = T;

    float *patches = NULL, *pe = nn_arena_floats(a, NG * W);
    if (m->conv1 >= 0) {
        /* conv1 (W, 3, P, P), stride P, no bias: patches (N*G, K) in its weight order */
        patches = nn_arena_floats(a, NG * K);
        nn_patch_embed_forward(pe, patches, images, VAL(m, conv1), N, 3, R, R, P, W);
    } else {
        /* the stem's (N, W, g, g) map, read as tokens: pe[n, t, :] = map[n, :, t] */
        nn_tape local_stem;
        nn_tape *st = tape ? &tp->stem : &local_stem;
        memset(st, 0, sizeof *st);
        const float *map = nn_seq_forward(&m->stem, st, a, images, N, tape != NULL);
        nn_transpose_batched(pe, map, N, W, G);
    }
    float *emb = nn_arena_floats(a, NT * W);
    const float *cls = VAL(m, cls), *pos = VAL(m, vpos);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)NT; r++) {
        int n = (int)(r / T), t = (int)(r % T);
        const float *src = t == 0 ? cls : pe + ((size_t)n * G + t - 1) * W;
        const float *pp = pos + (size_t)t * W;
        float *dst = emb + (size_t)r * W;
        for (int k = 0; k < W; k++) dst[k] = src[k] + pp[k];
    }
    float *ln_pre = nn_arena_floats(a, NT * W);
    float *mu = tape ? nn_arena_floats(a, NT) : NULL, *rs = tape ? nn_arena_floats(a, NT) : NULL;
    nn_layernorm_forward(ln_pre, mu, rs, emb, VAL(m, ln_pre_w), VAL(m, ln_pre_b), NT, W, c->ln_eps);
    const float *out = nn_tf_forward(&m->vis, tape ? &tp->tf : NULL, a, ln_pre, N, T);
    float *cls_out = nn_arena_floats(a, (size_t)N * W);
    for (int n = 0; n < N; n++) memcpy(cls_out + (size_t)n * W, out + (size_t)n * T * W, (size_t)W * sizeof(float));
    float *lp = nn_arena_floats(a, (size_t)N * W);
    float *lm = tape ? nn_arena_floats(a, (size_t)N) : NULL, *lr = tape ? nn_arena_floats(a, (size_t)N) : NULL;
    nn_layernorm_forward(lp, lm, lr, cls_out, VAL(m, ln_post_w), VAL(m, ln_post_b), (size_t)N, W, c->ln_eps);
    nn_gemm(0, 0, N, D, W, 1.0f, lp, W, VAL(m, proj), D, 0.0f, feat, D);
    tp->patches = patches, tp->conv1_out = pe, tp->emb = emb;
    tp->ln_pre = ln_pre, tp->ln_pre_mean = mu, tp->ln_pre_rstd = rs;
    tp->cls_out = cls_out, tp->ln_post = lp, tp->ln_post_mean = lm, tp->ln_post_rstd = lr;
}

void clip_image_backward(clip_model *m, clip_vis_tape *tp, nn_arena *a, const float *dfeat) {
    const clip_config *c = &m->cfg;
    int N = tp->N, G = tp->G, T = tp->T, W = c->vision_width, D = c->embed_dim;
    int P = c->vision_patch_size;
    size_t NT = (size_t)N * T;
    float *dlp = nn_arena_floats(a, (size_t)N * W);
    nn_gemm(0, 1, N, W, D, 1.0f, dfeat, D, VAL(m, proj), D, 0.0f, dlp, W);
    nn_gemm(1, 0, W, D, N, 1.0f, tp->ln_post, W, dfeat, D, 1.0f, GRAD(m, proj), D);
    float *dcls = nn_arena_zeros(a, (size_t)N * W);
    nn_layernorm_backward(dcls, GRAD(m, ln_post_w), GRAD(m, ln_post_b), dlp, tp->cls_out, VAL(m, ln_post_w),
                          tp->ln_post_mean, tp->ln_post_rstd, (size_t)N, W);
    float *dout = nn_arena_zeros(a, NT * W);
    for (int n = 0; n < N; n++) memcpy(dout + (size_t)n * T * W, dcls + (size_t)n * W, (size_t)W * sizeof(float));
    const float *dln = nn_tf_backward(&m->vis, &tp->tf, a, dout);
    float *demb = nn_arena_zeros(a, NT * W);
    nn_layernorm_backward(demb, GRAD(m, ln_pre_w), GRAD(m, ln_pre_b), dln, tp->emb, VAL(m, ln_pre_w),
                          tp->ln_pre_mean, tp->ln_pre_rstd, NT, W);
    /* class token and positions: sums over the batch (each thread owns columns t) */
    float *gc = GRAD(m, cls), *gp = GRAD(m, vpos);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dp = gp + (size_t)t * W;
        for (int n = 0; n < N; n++) {
            const float *d = demb + ((size_t)n * T + t) * W;
            for (int k = 0; k < W; k++) dp[k] += d[k];
        }
    }
    for (int n = 0; n < N; n++) {
        const float *d = demb + (size_t)n * T * W;
        for (int k = 0; k < W; k++) gc[k] += d[k];
    }
    /* dconv1 (W, K) += dpe^T patches, dpe = demb rows 1..G of each image, gathered so that
     * one GEMM covers the batch; the images need no gradient */
    float *dpe = nn_arena_floats(a, (size_t)N * G * W);
    for (int n = 0; n < N; n++)
        memcpy(dpe + (size_t)n * G * W, demb + ((size_t)n * T + 1) * W, (size_t)G * W * sizeof(float));
    if (m->conv1 >= 0) {
        nn_patch_embed_backward(NULL, GRAD(m, conv1), NULL, dpe, tp->patches, VAL(m, conv1), N, 3,
                                c->image_resolution, c->image_resolution, P, W);
    } else {
        float *dmap = nn_arena_floats(a, (size_t)N * G * W);
        nn_transpose_batched(dmap, dpe, N, G, W);
        nn_seq_backward(&m->stem, &tp->stem, a, dmap, 0);
    }
}

/* -------------------------------------------------------------------- text ---- */

void clip_text_forward(clip_model *m, clip_txt_tape *tape, nn_arena *a, const int32_t *tokens, int M, float *feat) {
    const clip_config *c = &m->cfg;
    int ctx = c->context_length, W = c->transformer_width, D = c->embed_dim, V = c->vocab_size;
    clip_txt_tape local;
    clip_txt_tape *tp = tape ? tape : &local;
    int *eot = nn_arena_bytes(a, (size_t)M * sizeof(int));
    int T = 1;
    for (int i = 0; i < M; i++) {
        const int32_t *row = tokens + (size_t)i * ctx;
        int best = 0;
        for (int t = 1; t < ctx; t++)
            if (row[t] > row[best]) best = t; /* first maximum, as torch.argmax */
        eot[i] = best;
        if (best + 1 > T) T = best + 1;
    }
    size_t MT = (size_t)M * T;
    int *ids = nn_arena_bytes(a, MT * sizeof(int));
    for (int i = 0; i < M; i++)
        for (int t = 0; t < T; t++) {
            int32_t id = tokens[(size_t)i * ctx + t];
            T2I_ASSERTF(id >= 0 && id < V, "token id %d outside the vocabulary (%d)", (int)id, V);
            ids[(size_t)i * T + t] = id;
        }
    float *emb = nn_arena_floats(a, MT * W);
    nn_embedding_forward(emb, ids, VAL(m, tok_emb), MT, V, W);
    const float *pos = VAL(m, tpos);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)MT; r++) {
        float *dst = emb + (size_t)r * W;
        const float *pp = pos + (size_t)(r % T) * W;
        for (int k = 0; k < W; k++) dst[k] += pp[k];
    }
    const float *out = nn_tf_forward(&m->txt, tape ? &tp->tf : NULL, a, emb, M, T);
    float *ex = nn_arena_floats(a, (size_t)M * W);
    for (int i = 0; i < M; i++)
        memcpy(ex + (size_t)i * W, out + ((size_t)i * T + eot[i]) * W, (size_t)W * sizeof(float));
    float *ln = nn_arena_floats(a, (size_t)M * W);
    float *lm = tape ? nn_arena_floats(a, (size_t)M) : NULL, *lr = tape ? nn_arena_floats(a, (size_t)M) : NULL;
    nn_layernorm_forward(ln, lm, lr, ex, VAL(m, ln_final_w), VAL(m, ln_final_b), (size_t)M, W, c->ln_eps);
    nn_gemm(0, 0, M, D, W, 1.0f, ln, W, VAL(m, text_proj), D, 0.0f, feat, D);
    tp->M = M, tp->T = T, tp->ids = ids, tp->eot = eot, tp->emb = emb;
    tp->eot_x = ex, tp->ln = ln, tp->ln_mean = lm, tp->ln_rstd = lr;
}

void clip_text_backward(clip_model *m, clip_txt_tape *tp, nn_arena *a, const float *dfeat) {
    const clip_config *c = &m->cfg;
    int M = tp->M, T = tp->T, W = c->transformer_width, D = c->embed_dim;
    size_t MT = (size_t)M * T;
    float *dln = nn_arena_floats(a, (size_t)M * W);
    nn_gemm(0, 1, M, W, D, 1.0f, dfeat, D, VAL(m, text_proj), D, 0.0f, dln, W);
    nn_gemm(1, 0, W, D, M, 1.0f, tp->ln, W, dfeat, D, 1.0f, GRAD(m, text_proj), D);
    float *dex = nn_arena_zeros(a, (size_t)M * W);
    nn_layernorm_backward(dex, GRAD(m, ln_final_w), GRAD(m, ln_final_b), dln, tp->eot_x, VAL(m, ln_final_w),
                          tp->ln_mean, tp->ln_rstd, (size_t)M, W);
    float *dout = nn_arena_zeros(a, MT * W);
    for (int i = 0; i < M; i++)
        memcpy(dout + ((size_t)i * T + tp->eot[i]) * W, dex + (size_t)i * W, (size_t)W * sizeof(float));
    const float *demb = nn_tf_backward(&m->txt, &tp->tf, a, dout);
    nn_embedding_backward(GRAD(m, tok_emb), demb, tp->ids, MT, c->vocab_size, W);
    float *gp = GRAD(m, tpos);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dp = gp + (size_t)t * W;
        for (int i = 0; i < M; i++) {
            const float *d = demb + ((size_t)i * T + t) * W;
            for (int k = 0; k < W; k++) dp[k] += d[k];
        }
    }
}

/* -------------------------------------------------------------------- loss ---- */

void clip_normalize_rows(float *x, int n, int D) {
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * D;
        double s = 0.0;
        for (int k = 0; k < D; k++) s += (double)r[k] * r[k];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int k = 0; k < D; k++) r[k] *= inv;
    }
}

void clip_cosine(const float *img, int n_img, const float *txt, int n_txt, int D, float *out) {
    nn_gemm(0, 1, n_img, n_txt, D, 1.0f, img, D, txt, D, 0.0f, out, n_txt);
}

void clip_cosine_add(const float *img, int n_img, const float *txt, int n_txt, int D, float *out) {
    nn_gemm(0, 1, n_img, n_txt, D, 1.0f, img, D, txt, D, 1.0f, out, n_txt);
}

/* u = x / |x| (rows), norms kept for backward */
static void normalize_keep(float *u, float *norm, const float *x, int n, int D) {
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * D;
        double s = 0.0;
        for (int k = 0; k < D; k++) s += (double)r[k] * r[k];
        norm[i] = (float)sqrt(s);
        float inv = norm[i] > 0 ? 1.0f / norm[i] : 0.0f;
        for (int k = 0; k < D; k++) u[(size_t)i * D + k] = r[k] * inv;
    }
}

/* dx += (du - u <u, du>) / |x| */
static void normalize_backward(float *dx, const float *du, const float *u, const float *norm, int n, int D) {
    for (int i = 0; i < n; i++) {
        const float *g = du + (size_t)i * D, *v = u + (size_t)i * D;
        double dot = 0.0;
        for (int k = 0; k < D; k++) dot += (double)g[k] * v[k];
        float inv = norm[i] > 0 ? 1.0f / norm[i] : 0.0f;
        for (int k = 0; k < D; k++) dx[(size_t)i * D + k] += (g[k] - v[k] * (float)dot) * inv;
    }
}

float clip_contrastive_loss(float *dimg, float *dtxt, float *ds, float *acc, nn_arena *a, const float *img,
                            const float *txt, const int *group, int N, int D, float s) {
    float scale = expf(s);
    float *u = nn_arena_floats(a, (size_t)N * D), *v = nn_arena_floats(a, (size_t)N * D);
    float *nu = nn_arena_floats(a, (size_t)N), *nv = nn_arena_floats(a, (size_t)N);
    normalize_keep(u, nu, img, N, D);
    normalize_keep(v, nv, txt, N, D);
    float *lg = nn_arena_floats(a, (size_t)N * N);
    nn_gemm(0, 1, N, N, D, scale, u, D, v, D, 0.0f, lg, N);
    /* targets: row i (and column i: P is symmetric) is uniform over P(i) = {j : group[j] ==
     * group[i]}, just {i} without groups; np[i] = |P(i)| */
#define IS_POS(i, j) (group ? group[i] == group[j] : (i) == (j))
    int *np = nn_arena_bytes(a, (size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) {
        np[i] = 0;
        for (int j = 0; j < N; j++) np[i] += IS_POS(i, j);
    }
    /* row softmax p (image -> text) and column softmax q (text -> image), in double sums;
     * CE against the target rows / columns */
    float *p = nn_arena_floats(a, (size_t)N * N), *q = nn_arena_floats(a, (size_t)N * N);
    double loss_r = 0.0, loss_c = 0.0;
    int hit_r = 0, hit_c = 0;
    for (int i = 0; i < N; i++) {
        const float *row = lg + (size_t)i * N;
        float mx = row[0];
        int am = 0;
        for (int j = 1; j < N; j++)
            if (row[j] > mx) mx = row[j], am = j;
        double z = 0.0;
        for (int j = 0; j < N; j++) z += exp((double)row[j] - mx);
        double lse = mx + log(z);
        for (int j = 0; j < N; j++) {
            p[(size_t)i * N + j] = (float)(exp((double)row[j] - mx) / z);
            if (IS_POS(i, j)) loss_r += (lse - row[j]) / np[i];
        }
        hit_r += IS_POS(i, am);
    }
    for (int j = 0; j < N; j++) {
        float mx = lg[j];
        int am = 0;
        for (int i = 1; i < N; i++)
            if (lg[(size_t)i * N + j] > mx) mx = lg[(size_t)i * N + j], am = i;
        double z = 0.0;
        for (int i = 0; i < N; i++) z += exp((double)lg[(size_t)i * N + j] - mx);
        double lse = mx + log(z);
        for (int i = 0; i < N; i++) {
            q[(size_t)i * N + j] = (float)(exp((double)lg[(size_t)i * N + j] - mx) / z);
            if (IS_POS(i, j)) loss_c += (lse - lg[(size_t)i * N + j]) / np[j];
        }
        hit_c += IS_POS(am, j);
    }
    float loss = (float)(0.5 * (loss_r + loss_c) / N);
    if (acc) *acc = 0.5f * (float)(hit_r + hit_c) / (float)N;
    if (!dimg && !dtxt && !ds) return loss;
    /* dlogits (in p's storage) */
    float inv2n = 0.5f / (float)N;
    double dsum = 0.0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            size_t k = (size_t)i * N + j;
            float d = (p[k] + q[k] - (IS_POS(i, j) ? 2.0f / (float)np[i] : 0.0f)) * inv2n;
            p[k] = d;
            dsum += (double)d * lg[k];
        }
    if (ds) *ds += (float)dsum;
    float *du = nn_arena_floats(a, (size_t)N * D), *dv = nn_arena_floats(a, (size_t)N * D);
    nn_gemm(0, 0, N, D, N, scale, p, N, v, D, 0.0f, du, D);
    nn_gemm(1, 0, N, D, N, scale, p, N, u, D, 0.0f, dv, D);
    if (dimg) normalize_backward(dimg, du, u, nu, N, D);
    if (dtxt) normalize_backward(dtxt, dv, v, nv, N, D);
    return loss;
#undef IS_POS
}

float clip_train_grads(clip_model *m, nn_arena *a, const float *images, const int32_t *tokens, const int *group, int N,
                       float *acc) {
    return clip_train_grads_part(m, a, images, tokens, group, N, 0, N, acc);
}

/* Data-parallel (lo, hi not the whole batch): the ranks' embeddings are gathered in rank
 * order, which is the global batch's row order, and every rank computes the loss over the
 * global batch and its gradient with respect to all N x D embeddings. The rows [lo, hi) of
 * that gradient are exactly this rank's share of dL/d(its embeddings), so backpropagating
 * them gives this rank's share of the parameters' true gradient. The gradient average that
 * follows (collective.h) sums the ranks' gradients and divides by their count R, so each
 * rank hands in R times its share: its rows of dL/dembedding times R, and the whole dL/ds
 * (which every rank computed alike: R copies summed, divided by R, once). */
float clip_train_grads_part(clip_model *m, nn_arena *a, const float *images, const int32_t *tokens, const int *group,
                            int N, int lo, int hi, float *acc) {
    int D = m->cfg.embed_dim, n = hi - lo;
    T2I_ASSERT(0 <= lo && lo < hi && hi <= N);
    nn_arena_reset(a);
    nn_params_zero_grad(&m->ps);
    clip_vis_tape vt;
    clip_txt_tape tt;
    float *fi = nn_arena_floats(a, (size_t)n * D), *ft = nn_arena_floats(a, (size_t)n * D);
    clip_image_forward(m, &vt, a, images, n, fi);
    clip_text_forward(m, &tt, a, tokens, n, ft);
    float *dfi, *dft, ds = 0.0f, loss;
    if (n == N) {
        dfi = nn_arena_zeros(a, (size_t)N * D), dft = nn_arena_zeros(a, (size_t)N * D);
        loss = clip_contrastive_loss(dfi, dft, &ds, acc, a, fi, ft, group, N, D, *VAL(m, logit_scale));
    } else {
        int ranks = t2i_dist_size();
        T2I_ASSERTF(n * ranks == N, "clip: %d rows on each of %d ranks is not the batch of %d", n, ranks, N);
        int *counts = nn_arena_bytes(a, (size_t)ranks * sizeof(int));
        for (int r = 0; r < ranks; r++) counts[r] = n;
        float *gi = nn_arena_floats(a, (size_t)N * D), *gt = nn_arena_floats(a, (size_t)N * D);
        t2i_dist_gather(fi, counts, (size_t)D, gi);
        t2i_dist_gather(ft, counts, (size_t)D, gt);
        float *dgi = nn_arena_zeros(a, (size_t)N * D), *dgt = nn_arena_zeros(a, (size_t)N * D);
        loss = clip_contrastive_loss(dgi, dgt, &ds, acc, a, gi, gt, group, N, D, *VAL(m, logit_scale));
        dfi = dgi + (size_t)lo * D, dft = dgt + (size_t)lo * D;
        for (size_t k = 0; k < (size_t)n * D; k++) dfi[k] *= (float)ranks, dft[k] *= (float)ranks;
    }
    *GRAD(m, logit_scale) += ds;
    size_t mark = nn_arena_mark(a);
    clip_text_backward(m, &tt, a, dft);
    nn_arena_rewind(a, mark);
    clip_image_backward(m, &vt, a, dfi);
    return loss;
}

void clip_clamp_logit_scale(clip_model *m) {
    float *s = VAL(m, logit_scale);
    if (*s < 0.0f) *s = 0.0f;
    if (*s > CLIP_LOGIT_SCALE_MAX) *s = CLIP_LOGIT_SCALE_MAX;
}

/* -------------------------------------------------------------- embeddings ---- */

int clip_embed_dim(const clip_model *m) { return m->cfg.embed_dim; }
int clip_resolution(const clip_model *m) { return m->cfg.image_resolution; }
float clip_logit_scale_exp(const clip_model *m) {
    return expf(*nn_params_val((nn_params *)&m->ps, m->logit_scale));
}

int clip_check_embed_dim(const clip_model *m, int expected, const char *what) {
    if (m->cfg.embed_dim == expected) return 0;
    return t2i_error_set("%s: the CLIP checkpoint %s has embedding size %d, expected %d", what,
                         m->path ? m->path : "(in memory)", m->cfg.embed_dim, expected);
}

void clip_set_tta_flip(clip_model *m, int on) { m->tta_flip = on != 0; }

/* dst (b, 3, R, R) = src with every row reversed. */
static void mirror_rows(float *dst, const float *src, int b, int R) {
    for (size_t r = 0; r < (size_t)b * 3 * R; r++)
        for (int j = 0; j < R; j++) dst[r * R + j] = src[r * R + R - 1 - j];
}

int clip_embed_pixels(clip_model *m, const float *pixels, int n, float *out) {
    int R = m->cfg.image_resolution, D = m->cfg.embed_dim;
    size_t item = (size_t)3 * R * R;
    for (int i0 = 0; i0 < n; i0 += CLIP_EMBED_BATCH) {
        int b = T2I_MIN(CLIP_EMBED_BATCH, n - i0);
        float *o = out + (size_t)i0 * D;
        nn_arena_reset(&m->arena);
        if (m->tta_flip) {
            float *xm = nn_arena_floats(&m->arena, (size_t)b * item), *om = nn_arena_floats(&m->arena, (size_t)b * D);
            mirror_rows(xm, pixels + (size_t)i0 * item, b, R);
            clip_image_forward(m, NULL, &m->arena, xm, b, om);
            clip_normalize_rows(om, b, D);
            clip_image_forward(m, NULL, &m->arena, pixels + (size_t)i0 * item, b, o);
            clip_normalize_rows(o, b, D);
            for (size_t k = 0; k < (size_t)b * D; k++) o[k] += om[k];
        } else {
            clip_image_forward(m, NULL, &m->arena, pixels + (size_t)i0 * item, b, o);
        }
    }
    nn_arena_reset(&m->arena);
    clip_normalize_rows(out, n, D);
    return 0;
}

int clip_embed_tokens(clip_model *m, const int32_t *tokens, int n, float *out) {
    int ctx = m->cfg.context_length, D = m->cfg.embed_dim, V = m->cfg.vocab_size;
    for (size_t k = 0; k < (size_t)n * ctx; k++)
        if (tokens[k] < 0 || tokens[k] >= V)
            return t2i_error_set("token id %d of caption %zu is outside the model's vocabulary (%d)", (int)tokens[k],
                                 k / ctx, V);
    for (int i0 = 0; i0 < n; i0 += CLIP_EMBED_BATCH) {
        int b = T2I_MIN(CLIP_EMBED_BATCH, n - i0);
        nn_arena_reset(&m->arena);
        clip_text_forward(m, NULL, &m->arena, tokens + (size_t)i0 * ctx, b, out + (size_t)i0 * D);
    }
    nn_arena_reset(&m->arena);
    clip_normalize_rows(out, n, D);
    return 0;
}
