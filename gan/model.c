/* model.c - GAN configuration, network construction, D head, checkpoints; see gan.h.
 *
 * D head (h the trunk features of one image, c its condition):
 *   logit = h.w + b + h.(c P^T)            P (F, cond) as an nn.Linear(cond, F, bias=False)
 * backward: dh = dl (w + c P^T), dw += dl h, db += dl, dP += (dl h)^T c, dc += (dl h) P.
 * With spectral norm the head vector is used as w / ||w|| (its exact largest singular
 * value); the gradient is (g - <g, w_n> w_n) / ||w||.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "gan.h"
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

int gan_config_check(const gan_config *c) {
    if (strcmp(c->preset, "b1") != 0 && strcmp(c->preset, "dcgan") != 0)
        return t2i_error_set("unknown GAN preset '%s' (b1 or dcgan)", c->preset);
    if (strcmp(c->preset, "b1") == 0 && (c->res != 28 || c->channels != 1 || c->g_width != 64 || c->d_width != 64 ||
                                         c->depth != 0 || c->z_dim != 100))
        return t2i_error_set("preset b1 is fixed at 1x28x28, z 100, widths 64 (use --arch dcgan to change sizes)");
    if (c->res != 28 && c->res != 32 && c->res != 64 && c->res != 128)
        return t2i_error_set("resolution %d is not supported (28, 32, 64 or 128)", c->res);
    if (c->channels != 1 && c->channels != 3) return t2i_error_set("channels must be 1 or 3, got %d", c->channels);
    if (c->z_dim < 1 || c->z_dim > 4096) return t2i_error_set("z dimension %d out of range 1..4096", c->z_dim);
    if (c->g_width < 4 || c->g_width > 1024 || c->d_width < 4 || c->d_width > 1024)
        return t2i_error_set("widths must be in 4..1024");
    if (c->depth < 0 || c->depth > 4) return t2i_error_set("depth must be in 0..4");
    if (c->n_classes < 0 || c->n_classes > 10000 || c->cond_dim < 0 || c->cond_dim > 4096)
        return t2i_error_set("bad conditioning sizes");
    if (c->n_classes > 0 && c->cond_dim > 0) return t2i_error_set("a GAN is conditioned on classes or on a vector, not both");
    return 0;
}

char *gan_config_to_json(const gan_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "preset", c->preset);
    cJSON_AddNumberToObject(o, "res", c->res);
    cJSON_AddNumberToObject(o, "channels", c->channels);
    cJSON_AddNumberToObject(o, "z_dim", c->z_dim);
    cJSON_AddNumberToObject(o, "g_width", c->g_width);
    cJSON_AddNumberToObject(o, "d_width", c->d_width);
    cJSON_AddNumberToObject(o, "depth", c->depth);
    cJSON_AddNumberToObject(o, "n_classes", c->n_classes);
    cJSON_AddNumberToObject(o, "cond_dim", c->cond_dim);
    cJSON_AddBoolToObject(o, "d_sn", c->d_sn);
    cJSON_AddStringToObject(o, "d_norm", c->d_norm == GAN_NORM_BN ? "batch" : "none");
    cJSON_AddStringToObject(o, "init", c->init_normal ? "normal0.02" : "pytorch");
    if (c->cond_dim > 0 && c->text_encoder[0]) {
        cJSON_AddStringToObject(o, "text_encoder", c->text_encoder);
        cJSON_AddStringToObject(o, "text_vocab", c->text_vocab);
        cJSON_AddItemToObject(o, "text_probe", cJSON_CreateFloatArray(c->text_probe, c->n_probe));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *r = t2i_strdup(s);
    cJSON_free(s);
    return r;
}

static int get_int(const cJSON *o, const char *key, int *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return t2i_error_set("config: '%s' missing or not a number", key);
    *dst = v->valueint;
    return 0;
}

int gan_config_from_json(gan_config *c, const char *json) {
    gan_config_default(c);
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return t2i_error_set("config is not a JSON object");
    }
    int rc = 0;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "preset");
    if (!cJSON_IsString(p) || strlen(p->valuestring) >= sizeof c->preset) rc = t2i_error_set("config: bad 'preset'");
    else strcpy(c->preset, p->valuestring);
    if (!rc) rc = get_int(o, "res", &c->res);
    if (!rc) rc = get_int(o, "channels", &c->channels);
    if (!rc) rc = get_int(o, "z_dim", &c->z_dim);
    if (!rc) rc = get_int(o, "g_width", &c->g_width);
    if (!rc) rc = get_int(o, "d_width", &c->d_width);
    if (!rc) rc = get_int(o, "depth", &c->depth);
    if (!rc) rc = get_int(o, "n_classes", &c->n_classes);
    if (!rc) rc = get_int(o, "cond_dim", &c->cond_dim);
    if (!rc) {
        c->d_sn = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "d_sn"));
        const cJSON *dn = cJSON_GetObjectItemCaseSensitive(o, "d_norm");
        c->d_norm = cJSON_IsString(dn) && strcmp(dn->valuestring, "none") == 0 ? GAN_NORM_NONE : GAN_NORM_BN;
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "init");
        c->init_normal = cJSON_IsString(in) && strcmp(in->valuestring, "normal0.02") == 0;
        const cJSON *te = cJSON_GetObjectItemCaseSensitive(o, "text_encoder");
        const cJSON *tv = cJSON_GetObjectItemCaseSensitive(o, "text_vocab");
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(o, "text_probe");
        if (cJSON_IsString(te) && strlen(te->valuestring) < sizeof c->text_encoder) strcpy(c->text_encoder, te->valuestring);
        if (cJSON_IsString(tv) && strlen(tv->valuestring) < sizeof c->text_vocab) strcpy(c->text_vocab, tv->valuestring);
        if (cJSON_IsArray(tp) && cJSON_GetArraySize(tp) <= 1024) {
            c->n_probe = cJSON_GetArraySize(tp);
            double norm = 0;
            for (int i = 0; i < c->n_probe && !rc; i++) {
                const cJSON *x = cJSON_GetArrayItem(tp, i);
                if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) rc = t2i_error_set("text_probe[%d] is not a number", i);
                else c->text_probe[i] = (float)x->valuedouble, norm += x->valuedouble * x->valuedouble;
            }
            if (!rc && c->n_probe && norm == 0) rc = t2i_error_set("text_probe is all zeros");
        } else if (tp) {
            rc = t2i_error_set("text_probe is not an array of at most 1024 numbers");
        }
        /* the probe embedding is how a caption GAN knows its text encoder: a short one would
         * switch that check off */
        if (!rc && c->text_encoder[0] && c->cond_dim > 0 && c->n_probe != c->cond_dim)
            rc = t2i_error_set("text_probe has %d values, the text condition %d", c->n_probe, c->cond_dim);
    }
    cJSON_Delete(o);
    if (!rc) rc = gan_config_check(c);
    return rc;
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

float *gan_d_forward(gan_model *m, nn_tape *t, nn_arena *a, const float *x, const float *c, int N, int training,
                     float **feat_out) {
    float *h = nn_seq_forward(&m->d, t, a, x, N, training);
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

float *gan_d_backward(gan_model *m, nn_tape *t, nn_arena *a, const float *x_unused, const float *c,
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
    return nn_seq_backward(&m->d, t, a, dh, need_dx);
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
    nn_ckpt_meta meta = {"gan", cfg, state_json, NULL, NULL, 0, bf16 ? ST_BF16 : ST_F32};
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
        t2i_error_prefix("%s: bad GAN config", path);
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
    if (rc == 0 && state_json) {
        const char *s = st_meta(&f, "state");
        *state_json = s ? t2i_strdup(s) : NULL;
    }
    st_close(&f);
    if (rc != 0) gan_model_free(m);
    return rc;
}
