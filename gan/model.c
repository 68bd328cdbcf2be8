/* model.c - GAN configuration, network construction, D head, checkpoints; see gan.h.
 *
 * D head (h the trunk features of one image, c its condition):
 *   logit = h.w + b + h.(c P^T)            P (F, cond) as an nn.Linear(cond, F, bias=False)
 * backward: dh = dl (w + c P^T), dw += dl h, db += dl, dP += (dl h)^T c, dc += (dl h) P.
 * With spectral norm the head vector is used as w / ||w|| (its exact largest singular
 * value); the gradient is (g - <g, w_n> w_n) / ||w||.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "gan.h"
#include "words.h"
#include "optim.h"

int gan_cond_size(const gan_config *c) { return c->n_classes > 0 ? c->n_classes : c->cond_dim; }

void gan_config_default(gan_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->preset, "dcgan");
    c->res = 28;
    c->channels = 1;
    c->z_dim = 100;
    c->g_width = 64;
    c->d_width = 64;
    c->depth = 0;
    c->d_norm = GAN_NORM_BN;
    c->init_normal = 0;
}

void gan_config_b1(gan_config *c) {
    gan_config_default(c);
    strcpy(c->preset, "b1");
}

static const char *const gan_presets[] = {"b1", "dcgan", NULL};
static const char *const gan_dnorms[] = {"batch", "none", NULL};      /* gan_dnorm */
static const char *const gan_inits[] = {"pytorch", "normal0.02", NULL}; /* init_normal */

/* gan_config's fields in the order of its JSON. The caption group (text_encoder, text_vocab,
 * text_probe: CAPTION_FIELDS, last) is written only for a caption GAN, so it defaults when
 * absent; so do d_sn, d_norm and init, which the reader has always let default. */
#define CAPTION_FIELDS 3
#define CONFIG_FIELDS(c)                                                                                   \
    nn_field cf[] = {NN_F_STR_OF("preset", (c)->preset, gan_presets),                                      \
                     NN_F_INT_IN("res", (c)->res, 28, 128),                                                \
                     NN_F_INT_IN("channels", (c)->channels, 1, 3),                                         \
                     NN_F_INT_IN("z_dim", (c)->z_dim, 1, 4096),                                            \
                     NN_F_INT_IN("g_width", (c)->g_width, 4, 1024),                                        \
                     NN_F_INT_IN("d_width", (c)->d_width, 4, 1024),                                        \
                     NN_F_INT_IN("depth", (c)->depth, 0, 4),                                               \
                     NN_F_INT_IN("n_classes", (c)->n_classes, 0, 10000),                                   \
                     NN_F_INT_IN("cond_dim", (c)->cond_dim, 0, 4096),                                      \
                     NN_F_BOOL_DEF("d_sn", (c)->d_sn, 0),                                                  \
                     NN_F_INT_DEF_IN("d_mbstd", (c)->d_mbstd, 0, 0, 64),                                   \
                     NN_F_ENUM_DEF("d_norm", (c)->d_norm, gan_dnorms, GAN_NORM_BN),                        \
                     NN_F_ENUM_DEF("init", (c)->init_normal, gan_inits, 0),                                \
                     NN_F_STR_DEF("text_encoder", (c)->text_encoder),                                      \
                     NN_F_STR_DEF("text_vocab", (c)->text_vocab),                                          \
                     NN_F_FLOATS_DEF("text_probe", (c)->text_probe, (c)->n_probe)}

/* The checks across fields (the table has checked each field alone). */
static int config_check_across(const gan_config *c) {
    if (strcmp(c->preset, "b1") == 0 && (c->res != 28 || c->channels != 1 || c->g_width != 64 || c->d_width != 64 ||
                                         c->depth != 0 || c->z_dim != 100))
        return t2i_error_set("preset b1 is fixed at 1x28x28, z 100, widths 64 (use --arch dcgan to change sizes)");
    if (c->res != 28 && c->res != 32 && c->res != 64 && c->res != 128)
        return t2i_error_set("resolution %d is not supported (28, 32, 64 or 128)", c->res);
    if (c->channels != 1 && c->channels != 3) return t2i_error_set("channels must be 1 or 3, got %d", c->channels);
    if (c->n_classes > 0 && c->cond_dim > 0) return t2i_error_set("a GAN is conditioned on classes or on a vector, not both");
    return 0;
}

int gan_config_check(const gan_config *c) {
    gan_config k = *c;
    CONFIG_FIELDS(&k);
    if (nn_fields_check(cf, NN_NFIELDS(cf), "GAN config") != 0) return -1;
    return config_check_across(c);
}

char *gan_config_to_json(const gan_config *c) {
    gan_config k = *c;
    CONFIG_FIELDS(&k);
    int caption = c->cond_dim > 0 && c->text_encoder[0];
    size_t n = NN_NFIELDS(cf) - (caption ? 0 : CAPTION_FIELDS);
    if (!c->d_mbstd) { /* absent means 0: configs without it stay as they were written */
        size_t i = 0;
        while (strcmp(cf[i].key, "d_mbstd") != 0) i++;
        memmove(&cf[i], &cf[i + 1], (n - i - 1) * sizeof cf[0]);
        n--;
    }
    return nn_fields_to_json(cf, n);
}

int gan_config_from_json(gan_config *c, const char *json) {
    gan_config_default(c);
    CONFIG_FIELDS(c);
    if (nn_fields_from_json(json, cf, NN_NFIELDS(cf), "GAN config", 0) != 0) return -1;
    double norm = 0;
    for (int i = 0; i < c->n_probe; i++) norm += (double)c->text_probe[i] * c->text_probe[i];
    if (c->n_probe && norm == 0) return t2i_error_set("GAN config: 'text_probe' is all zeros");
    /* the probe embedding is how a caption GAN knows its text encoder: a short one would
     * switch that check off */
    if (c->text_encoder[0] && c->cond_dim > 0 && c->n_probe != c->cond_dim)
        return t2i_error_set("GAN config: 'text_probe' has %d values, the text condition 'cond_dim' %d", c->n_probe,
                             c->cond_dim);
    return config_check_across(c);
}

/* ---- networks ---- */

static int start_res(int res) { return res == 28 ? 7 : 4; }
static int n_stages(int res) {
    int s = 0;
    for (int r = start_res(res); r < res; r *= 2) s++;
    return s;
}

static void g_norm(nn_seq *s, int cond) {
    if (cond) nn_seq_cbn(s, cond);
    else nn_seq_bn(s);
}

static void build_g(nn_seq *g, nn_params *ps, const gan_config *c) {
    int cond = gan_cond_size(c);
    int S = n_stages(c->res), r0 = start_res(c->res);
    int ch = c->g_width << S; /* channels at the start resolution */
    if (ch > 16 * c->g_width) ch = 16 * c->g_width;
    nn_seq_init(g, ps, "g", c->z_dim + cond, 1, 1);
    nn_seq_linear(g, ch * r0 * r0, 1);
    g_norm(g, cond);
    nn_seq_act(g, NN_ACT_RELU, 0);
    nn_seq_reshape(g, ch, r0, r0);
    for (int st = 0; st < S; st++) {
        int last = st == S - 1;
        int och = last ? c->channels : ch / 2;
        if (och < c->g_width && !last) och = c->g_width;
        nn_seq_convt(g, och, 4, 2, 1, 0, 1);
        if (last) {
            nn_seq_act(g, NN_ACT_TANH, 0);
            break;
        }
        g_norm(g, cond);
        nn_seq_act(g, NN_ACT_RELU, 0);
        for (int k = 0; k < c->depth; k++) {
            nn_seq_conv(g, och, 3, 1, 1, 1);
            g_norm(g, cond);
            nn_seq_act(g, NN_ACT_RELU, 0);
        }
        ch = och;
    }
}

/* The minibatch-stddev tail of D: the trunk's output plus one channel, through a 3x3 conv
 * back to the trunk's width (StyleGAN's placement: D's last layers see the statistic). */
static void build_dmb(nn_seq *s, nn_params *ps, const gan_config *c, const nn_seq *d) {
    nn_seq_init(s, ps, "d.mb", d->C + 1, d->H, d->W);
    s->sn_next = c->d_sn;
    nn_seq_conv(s, d->C, 3, 1, 1, 1);
    nn_seq_act(s, NN_ACT_LEAKY_RELU, 0.2f);
}

static void build_d(nn_seq *d, nn_params *ps, const gan_config *c) {
    int S = n_stages(c->res);
    nn_seq_init(d, ps, "d", c->channels, c->res, c->res);
    int ch = c->d_width;
    for (int st = 0; st < S; st++) {
        d->sn_next = c->d_sn;
        nn_seq_conv(d, ch, 4, 2, 1, 1);
        if (st > 0 && c->d_norm == GAN_NORM_BN) nn_seq_bn(d);
        nn_seq_act(d, NN_ACT_LEAKY_RELU, 0.2f);
        for (int k = 0; k < c->depth; k++) {
            d->sn_next = c->d_sn;
            nn_seq_conv(d, ch, 3, 1, 1, 1);
            if (c->d_norm == GAN_NORM_BN) nn_seq_bn(d);
            nn_seq_act(d, NN_ACT_LEAKY_RELU, 0.2f);
        }
        if (st < S - 1 && ch < 8 * c->d_width) ch *= 2;
    }
}

void gan_model_build(gan_model *m, const gan_config *cfg, t2i_rng *rng) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    nn_params_init(&m->gp);
    nn_params_init(&m->dp);
    nn_params_init(&m->ep);
    build_g(&m->g, &m->gp, cfg);
    build_g(&m->ema, &m->ep, cfg);
    build_d(&m->d, &m->dp, cfg);
    if (cfg->d_mbstd) build_dmb(&m->dmb, &m->dp, cfg, &m->d);
    m->feat = (int)nn_seq_out_size(&m->d);
    m->head_w = nn_params_add(&m->dp, "d.head.weight", 2, (int[]){1, m->feat}, NN_TRAIN);
    m->head_b = nn_params_add(&m->dp, "d.head.bias", 1, (int[]){1}, NN_TRAIN);
    int cond = gan_cond_size(cfg);
    m->head_proj = cond > 0 ? nn_params_add(&m->dp, "d.head.proj.weight", 2, (int[]){m->feat, cond}, NN_TRAIN) : -1;
    nn_params_alloc(&m->gp);
    nn_params_alloc(&m->dp);
    nn_params_alloc(&m->ep);
    nn_init_kind ik = cfg->init_normal ? NN_INIT_NORMAL002 : NN_INIT_PYTORCH;
    nn_seq_init_params(&m->g, rng, ik);
    nn_seq_init_params(&m->d, rng, ik);
    if (cfg->d_mbstd) nn_seq_init_params(&m->dmb, rng, ik);
    if (ik == NN_INIT_PYTORCH) {
        nn_init_pytorch_uniform(nn_params_val(&m->dp, m->head_w), (size_t)m->feat, m->feat, rng);
        nn_init_pytorch_uniform(nn_params_val(&m->dp, m->head_b), 1, m->feat, rng);
    } else {
        nn_init_normal(nn_params_val(&m->dp, m->head_w), (size_t)m->feat, 0.0f, 0.02f, rng);
    }
    if (m->head_proj >= 0)
        nn_init_normal(nn_params_val(&m->dp, m->head_proj), (size_t)m->feat * cond, 0.0f, 0.02f, rng);
    nn_params_copy_values(&m->ep, &m->gp);
}

void gan_model_free(gan_model *m) {
    nn_params_free(&m->gp);
    nn_params_free(&m->dp);
    nn_params_free(&m->ep);
    free(m->caption_words);
    m->caption_words = NULL;
}

void gan_onehot(float *c, const int *labels, int N, int n_classes) {
    memset(c, 0, (size_t)N * n_classes * sizeof(float));
    for (int i = 0; i < N; i++) {
        T2I_ASSERT(labels[i] >= 0 && labels[i] < n_classes);
        c[(size_t)i * n_classes + labels[i]] = 1.0f;
    }
}

/* Head vector actually used: w, or w / ||w|| with spectral norm. */
static const float *head_vector(gan_model *m, nn_arena *a, float *norm_out) {
    const float *w = nn_params_val(&m->dp, m->head_w);
    *norm_out = 1.0f;
    if (!m->cfg.d_sn) return w;
    double s = 0.0;
    for (int f = 0; f < m->feat; f++) s += (double)w[f] * w[f];
    float nrm = (float)fmax(sqrt(s), 1e-12);
    float *wn = nn_arena_floats(a, (size_t)m->feat);
    for (int f = 0; f < m->feat; f++) wn[f] = w[f] / nrm;
    *norm_out = nrm;
    return wn;
}

float *gan_d_forward(gan_model *m, gan_d_tape *t, nn_arena *a, const float *x, const float *c, int N, int training,
                     float **feat_out) {
    float *h = nn_seq_forward(&m->d, &t->trunk, a, x, N, training);
    if (m->cfg.d_mbstd) {
        const nn_seq *d = &m->d;
        int S = d->H * d->W, G = N < m->cfg.d_mbstd ? N : m->cfg.d_mbstd;
        T2I_ASSERTF(N % G == 0, "D: %d images are not groups of %d for the minibatch stddev", N, G);
        float *hs = nn_arena_floats(a, (size_t)N * (d->C + 1) * S);
        t->mb_in = h;
        t->mb_sd = nn_arena_floats(a, (size_t)(N / G) * d->C * S);
        nn_mbstd_forward(hs, t->mb_sd, h, N, d->C, S, G);
        h = nn_seq_forward(&m->dmb, &t->mb, a, hs, N, training);
    }
    float nrm;
    const float *w = head_vector(m, a, &nrm);
    float b = nn_params_val(&m->dp, m->head_b)[0];
    float *logits = nn_arena_floats(a, (size_t)N);
    int F = m->feat, cond = gan_cond_size(&m->cfg);
    float *proj = NULL;
    if (m->head_proj >= 0) {
        T2I_ASSERTF(c, "conditional D needs a condition");
        proj = nn_arena_floats(a, (size_t)N * F);
        nn_linear_forward(proj, c, nn_params_val(&m->dp, m->head_proj), NULL, (size_t)N, cond, F);
    }
    for (int n = 0; n < N; n++) {
        const float *hn = h + (size_t)n * F;
        double s = b;
        for (int f = 0; f < F; f++) s += hn[f] * (w[f] + (proj ? proj[(size_t)n * F + f] : 0.0f));
        logits[n] = (float)s;
    }
    if (feat_out) *feat_out = h;
    return logits;
}

float *gan_d_backward(gan_model *m, gan_d_tape *t, nn_arena *a, const float *x_unused, const float *c,
                      const float *feat, const float *dlogits, float *dc, int N, int need_dx) {
    (void)x_unused;
    int F = m->feat, cond = gan_cond_size(&m->cfg), frozen = m->d.frozen;
    float nrm;
    const float *w = head_vector(m, a, &nrm);
    float *proj = NULL;
    if (m->head_proj >= 0) {
        proj = nn_arena_floats(a, (size_t)N * F);
        nn_linear_forward(proj, c, nn_params_val(&m->dp, m->head_proj), NULL, (size_t)N, cond, F);
    }
    float *dh = nn_arena_floats(a, (size_t)N * F);
    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++)
            dh[(size_t)n * F + f] = dlogits[n] * (w[f] + (proj ? proj[(size_t)n * F + f] : 0.0f));
    if (!frozen) {
        float *dw = nn_params_grad(&m->dp, m->head_w);
        float *g = nn_arena_zeros(a, (size_t)F);
        double db = 0.0;
        for (int n = 0; n < N; n++) {
            db += dlogits[n];
            for (int f = 0; f < F; f++) g[f] += dlogits[n] * feat[(size_t)n * F + f];
        }
        nn_params_grad(&m->dp, m->head_b)[0] += (float)db;
        if (m->cfg.d_sn) {
            double dot = 0.0;
            for (int f = 0; f < F; f++) dot += (double)g[f] * w[f];
            for (int f = 0; f < F; f++) dw[f] += (g[f] - (float)dot * w[f]) / nrm;
        } else {
            for (int f = 0; f < F; f++) dw[f] += g[f];
        }
    }
    if (m->head_proj >= 0 && (!frozen || dc)) {
        float *dproj = nn_arena_floats(a, (size_t)N * F);
        for (int n = 0; n < N; n++)
            for (int f = 0; f < F; f++) dproj[(size_t)n * F + f] = dlogits[n] * feat[(size_t)n * F + f];
        nn_linear_backward(dc, frozen ? NULL : nn_params_grad(&m->dp, m->head_proj), NULL, dproj, c,
                           nn_params_val(&m->dp, m->head_proj), (size_t)N, cond, F);
    }
    if (m->cfg.d_mbstd) {
        const nn_seq *d = &m->d;
        int S = d->H * d->W, G = N < m->cfg.d_mbstd ? N : m->cfg.d_mbstd;
        m->dmb.frozen = frozen;
        float *dhs = nn_seq_backward(&m->dmb, &t->mb, a, dh, 1);
        m->dmb.frozen = 0;
        dh = nn_arena_zeros(a, (size_t)N * d->C * S);
        nn_mbstd_backward(dh, dhs, t->mb_in, t->mb_sd, N, d->C, S, G);
    }
    return nn_seq_backward(&m->d, &t->trunk, a, dh, need_dx);
}

float *gan_g_forward(gan_model *m, nn_seq *g, nn_tape *t, nn_arena *a, const float *z, const float *c, int N,
                     int training) {
    int cond = gan_cond_size(&m->cfg), zd = m->cfg.z_dim;
    const float *in = z;
    if (cond > 0) {
        T2I_ASSERTF(c, "conditional G needs a condition");
        float *zc = nn_arena_floats(a, (size_t)N * (zd + cond));
        for (int n = 0; n < N; n++) {
            memcpy(zc + (size_t)n * (zd + cond), z + (size_t)n * zd, (size_t)zd * sizeof(float));
            memcpy(zc + (size_t)n * (zd + cond) + zd, c + (size_t)n * cond, (size_t)cond * sizeof(float));
        }
        in = zc;
        t->cond = c;
    }
    return nn_seq_forward(g, t, a, in, N, training);
}

const float *gan_g_infer(gan_model *m, const nn_seq *g, nn_infer *ws, const float *z, const float *c, int N) {
    int cond = gan_cond_size(&m->cfg), zd = m->cfg.z_dim;
    float *in = nn_infer_input(ws, g, N, 1, 1);
    T2I_ASSERTF(cond == 0 || c, "conditional G needs a condition");
    for (int n = 0; n < N; n++) {
        memcpy(in + (size_t)n * (zd + cond), z + (size_t)n * zd, (size_t)zd * sizeof(float));
        if (cond) memcpy(in + (size_t)n * (zd + cond) + zd, c + (size_t)n * cond, (size_t)cond * sizeof(float));
    }
    return nn_infer_run(ws, g, in, cond ? c : NULL, N, 1, 1);
}

/* ---- checkpoints ---- */

int gan_save(const gan_model *m, const char *path, const char *state_json, int with_optimizer, int bf16) {
    gan_model *mm = (gan_model *)m;
    nn_ckpt_part parts[3] = {
        {&mm->gp, "", with_optimizer, 0},
        {&mm->dp, "", with_optimizer, 0},
        {&mm->ep, "ema.", 0, 0},
    };
    char *cfg = gan_config_to_json(&m->cfg);
    const char *wk = T2I_WORDS_META_KEY, *wv = m->caption_words;
    nn_ckpt_meta meta = {"gan", cfg, state_json, &wk, &wv, wv ? 1 : 0, bf16 ? ST_BF16 : ST_F32};
    int rc = nn_ckpt_save(path, parts, 3, &meta);
    free(cfg);
    return rc;
}

int gan_load(gan_model *m, const char *path, int with_optimizer, char **state_json) {
    st_file f;
    if (nn_ckpt_open(&f, path, "gan") != 0) return -1;
    gan_config cfg;
    const char *cj = st_meta(&f, "config");
    if (!cj || gan_config_from_json(&cfg, cj) != 0) {
        if (!cj) t2i_error_set("GAN config missing from the metadata");
        t2i_error_prefix("%s", path);
        st_close(&f);
        return -1;
    }
    t2i_rng r;
    t2i_rng_seed(&r, 0);
    gan_model_build(m, &cfg, &r);
    int rc;
    if (!st_find(&f, "d.head.weight") && !st_find(&f, "ema.g.0.weight")) {
        if (with_optimizer) {
            st_close(&f);
            gan_model_free(m);
            return t2i_error_set("%s: an inference copy (no discriminator); training needs the full checkpoint", path);
        }
        nn_ckpt_part part = {&m->gp, "", 0, 0};
        rc = nn_ckpt_load_parts(&f, &part, 1);
        if (rc == 0) nn_params_copy_values(&m->ep, &m->gp);
        m->inference_only = 1;
    } else {
        nn_ckpt_part parts[3] = {
            {&m->gp, "", with_optimizer, 0},
            {&m->dp, "", with_optimizer, 0},
            {&m->ep, "ema.", 0, 0},
        };
        rc = nn_ckpt_load_parts(&f, parts, 3);
    }
    const char *cw = st_meta(&f, T2I_WORDS_META_KEY);
    if (rc == 0 && cw) m->caption_words = t2i_strdup(cw);
    if (rc == 0 && state_json) {
        const char *s = st_meta(&f, "state");
        *state_json = s ? t2i_strdup(s) : NULL;
    }
    st_close(&f);
    if (rc != 0) gan_model_free(m);
    return rc;
}
