/* sr_model.c - super-resolution configuration, generator and discriminator construction,
 * receptive radius, checkpoints; see sr.h.
 *
 * Checkpoints (nn/ckpt.h, model "sr") carry the metadata key "contents": "training"
 * (G and D with their Adam moments, the EMA under "ema.", and the training state) or
 * "inference" (the EMA under "ema." only - what upscaling needs, a third of the size).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "optim.h"
#include "sr.h"

void sr_config_b4(sr_config *c, int scale) {
    memset(c, 0, sizeof *c);
    strcpy(c->preset, "b4");
    c->scale = scale;
    c->width = 64;
    c->blocks = 8;
    c->crop = scale == 4 ? 96 : 64;
    c->d_width = 64;
    c->d_sn = 0;
}

static const char *const sr_presets[] = {"b4", "custom", NULL};

/* sr_config's fields in the order of its JSON; d_sn defaults to off when absent. */
#define CONFIG_FIELDS(c)                                                       \
    nn_field cf[] = {NN_F_STR_OF("preset", (c)->preset, sr_presets),           \
                     NN_F_INT_IN("scale", (c)->scale, 2, 4),                   \
                     NN_F_INT_IN("width", (c)->width, 4, 512),                 \
                     NN_F_INT_IN("blocks", (c)->blocks, 0, 16),                \
                     NN_F_INT_IN("crop", (c)->crop, 32, 1024),                 \
                     NN_F_INT_IN("d_width", (c)->d_width, 4, 512),             \
                     NN_F_BOOL_DEF("d_sn", (c)->d_sn, 0)}

/* The checks across fields (the table has checked each field alone). */
static int config_check_across(const sr_config *c) {
    if (c->scale != 2 && c->scale != 4) return t2i_error_set("scale must be 2 or 4, got %d", c->scale);
    if (strcmp(c->preset, "b4") == 0 && (c->width != 64 || c->blocks != 8))
        return t2i_error_set("preset b4 is fixed at width 64 and 8 blocks (use --preset custom to change them)");
    if (c->crop % 16 != 0) return t2i_error_set("crop must be a multiple of 16 in 32..1024, got %d", c->crop);
    return 0;
}

int sr_config_check(const sr_config *c) {
    sr_config k = *c;
    CONFIG_FIELDS(&k);
    if (nn_fields_check(cf, NN_NFIELDS(cf), "SR config") != 0) return -1;
    return config_check_across(c);
}

char *sr_config_to_json(const sr_config *c) {
    sr_config k = *c;
    CONFIG_FIELDS(&k);
    return nn_fields_to_json(cf, NN_NFIELDS(cf));
}

int sr_config_from_json(sr_config *c, const char *json) {
    memset(c, 0, sizeof *c);
    CONFIG_FIELDS(c);
    if (nn_fields_from_json(json, cf, NN_NFIELDS(cf), "SR config", 0) != 0) return -1;
    return config_check_across(c);
}

/* ---- networks ---- */

void sr_build_g(nn_seq *g, nn_params *ps, const sr_config *c, int h, int w) {
    int W = c->width;
    nn_seq_init(g, ps, "g", 3, h, w);
    nn_seq_conv(g, W, 3, 1, 1, 1);
    nn_seq_act(g, NN_ACT_RELU, 0);
    nn_seq_res_begin(g); /* global skip */
    for (int b = 0; b < c->blocks; b++) {
        nn_seq_res_begin(g);
        nn_seq_conv(g, W, 3, 1, 1, 1);
        nn_seq_act(g, NN_ACT_RELU, 0);
        nn_seq_conv(g, W, 3, 1, 1, 1);
        nn_seq_res_end(g, 1.0f);
    }
    nn_seq_conv(g, W, 3, 1, 1, 1);
    nn_seq_res_end(g, 1.0f);
    for (int s = c->scale; s > 1; s /= 2) {
        nn_seq_conv(g, 4 * W, 3, 1, 1, 1);
        nn_seq_pixel_shuffle(g, 2);
        nn_seq_act(g, NN_ACT_RELU, 0);
    }
    nn_seq_conv(g, 3, 3, 1, 1, 1);
}

static void build_d(nn_seq *d, nn_params *ps, const sr_config *c) {
    int D = c->d_width;
    nn_seq_init(d, ps, "d", 3, c->crop, c->crop);
    d->sn_next = c->d_sn;
    nn_seq_conv(d, D, 3, 1, 1, 1);
    nn_seq_act(d, NN_ACT_LEAKY_RELU, 0.2f);
    const int ch[4] = {D, 2 * D, 4 * D, 4 * D};
    for (int i = 0; i < 4; i++) {
        d->sn_next = c->d_sn;
        nn_seq_conv(d, ch[i], 4, 2, 1, 1);
        nn_seq_act(d, NN_ACT_LEAKY_RELU, 0.2f);
    }
    d->sn_next = c->d_sn;
    nn_seq_conv(d, 1, 3, 1, 1, 1);
}

/* D's convolutions: Kaiming-normal, std = gain / sqrt(fan_in) with the LeakyReLU(0.2) gain
 * sqrt(2 / (1 + 0.2^2)) (1 for the logit layer), biases 0. PyTorch's default init shrinks
 * the signal by about sqrt(3) per layer, which leaves a 6-layer D without normalisation
 * nearly blind to its input (equal logits for real and fake) for hundreds of steps. */
static void init_d_kaiming(nn_seq *d, t2i_rng *rng) {
    for (int i = 0; i < d->n; i++) {
        const nn_layer *l = &d->L[i];
        if (l->kind != NN_L_CONV) continue;
        int fan_in = l->C * l->k * l->k;
        double gain = i == d->n - 1 ? 1.0 : sqrt(2.0 / (1.0 + 0.2 * 0.2));
        nn_init_normal(nn_params_val(d->ps, l->iw), d->ps->p[l->iw].numel, 0.0f, (float)(gain / sqrt((double)fan_in)),
                       rng);
        nn_init_const(nn_params_val(d->ps, l->ib), (size_t)l->OC, 0.0f);
    }
}

void sr_model_build(sr_model *m, const sr_config *cfg, t2i_rng *rng) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    int lr = cfg->crop / cfg->scale;
    nn_params_init(&m->gp);
    nn_params_init(&m->dp);
    nn_params_init(&m->ep);
    sr_build_g(&m->g, &m->gp, cfg, lr, lr);
    sr_build_g(&m->ema, &m->ep, cfg, lr, lr);
    build_d(&m->d, &m->dp, cfg);
    nn_params_alloc(&m->gp);
    nn_params_alloc(&m->dp);
    nn_params_alloc(&m->ep);
    nn_seq_init_params(&m->g, rng, NN_INIT_PYTORCH);
    nn_seq_init_params(&m->d, rng, NN_INIT_PYTORCH);
    init_d_kaiming(&m->d, rng);
    nn_params_copy_values(&m->ep, &m->gp);
    m->has_training = 1;
}

/* Interpolating initialisation (see sr.h). Carrier channels 0..2 hold relu(+x), 3..5
 * relu(-x), so x = c[0:3] - c[3:6] survives every ReLU. Bilinear x2 with half-pixel
 * centres puts output row 2p + i at LR row p - 1/4 (i = 0) or p + 1/4 (i = 1): weights
 * (1/4, 3/4, 0) or (0, 3/4, 1/4) over rows p-1, p, p+1; columns likewise. */
void sr_init_interp(sr_model *m) {
    nn_seq *g = &m->g;
    nn_params *ps = &m->gp;
    T2I_ASSERTF(m->cfg.width >= 6, "interpolating init needs width >= 6");
    static const float v[2][3] = {{0.25f, 0.75f, 0.0f}, {0.0f, 0.75f, 0.25f}};
    int first = -1, last = -1;
    for (int i = 0; i < g->n; i++)
        if (g->L[i].kind == NN_L_CONV) {
            if (first < 0) first = i;
            last = i;
        }
    for (int i = 0; i < g->n; i++) {
        const nn_layer *l = &g->L[i];
        if (l->kind != NN_L_CONV) continue;
        float *w = nn_params_val(ps, l->iw), *b = nn_params_val(ps, l->ib);
        int C = l->C, OC = l->OC;
        size_t row = (size_t)C * 9;
#define W_AT(oc, c, dy, dx) w[(size_t)(oc)*row + (size_t)(c)*9 + (dy)*3 + (dx)]
        if (i == first) {
            memset(w, 0, 6 * row * sizeof(float));
            for (int k = 0; k < 3; k++) W_AT(k, k, 1, 1) = 1.0f, W_AT(3 + k, k, 1, 1) = -1.0f;
            memset(b, 0, 6 * sizeof(float));
        } else if (i == last) {
            memset(w, 0, (size_t)OC * row * sizeof(float));
            for (int k = 0; k < 3; k++) W_AT(k, k, 1, 1) = 1.0f, W_AT(k, 3 + k, 1, 1) = -1.0f;
            memset(b, 0, (size_t)OC * sizeof(float));
        } else if (i + 1 < g->n && g->L[i + 1].kind == NN_L_RES_END) {
            memset(w, 0, (size_t)OC * row * sizeof(float)); /* residual branch starts as zero */
            memset(b, 0, (size_t)OC * sizeof(float));
        } else if (i + 1 < g->n && g->L[i + 1].kind == NN_L_PIXEL_SHUFFLE) {
            T2I_ASSERT(g->L[i + 1].factor == 2);
            for (int c = 0; c < 6; c++)
                for (int q = 0; q < 4; q++) {
                    int oc = c * 4 + q, si = q / 2, sj = q % 2;
                    memset(&W_AT(oc, 0, 0, 0), 0, row * sizeof(float));
                    for (int dy = 0; dy < 3; dy++)
                        for (int dx = 0; dx < 3; dx++) W_AT(oc, c, dy, dx) = v[si][dy] * v[sj][dx];
                    b[oc] = 0.0f;
                }
        }
#undef W_AT
    }
    nn_params_copy_values(&m->ep, &m->gp);
}

void sr_model_free(sr_model *m) {
    nn_params_free(&m->gp);
    nn_params_free(&m->dp);
    nn_params_free(&m->ep);
}

/* Walk back from the output: a k x k stride-1 convolution adds (k-1)/2 pixels of its own
 * resolution; PixelShuffle(r) maps a radius of q output pixels to ceil(q / r) input
 * pixels (positions y +- q fall in input cells floor((y +- q) / r), at most ceil(q / r)
 * cells from floor(y / r)). Elementwise layers and skips add nothing. */
int sr_receptive_radius(const nn_seq *g) {
    int r = 0;
    for (int i = g->n - 1; i >= 0; i--) {
        const nn_layer *l = &g->L[i];
        if (l->kind == NN_L_CONV) {
            T2I_ASSERTF(l->stride == 1, "tiled upscaling needs stride-1 convolutions");
            r += (l->k - 1) / 2;
        } else if (l->kind == NN_L_PIXEL_SHUFFLE) {
            r = (r + l->factor - 1) / l->factor;
        }
    }
    return r;
}

/* ---- checkpoints ---- */

int sr_save(const sr_model *m, const char *path, const char *state_json, int with_training) {
    T2I_ASSERTF(!with_training || m->has_training, "no training weights to save");
    sr_model *mm = (sr_model *)m;
    if (with_training) { /* a resumable file always holds both optimizers' moments */
        nn_params_moments(&mm->gp);
        nn_params_moments(&mm->dp);
    }
    nn_ckpt_part parts[3] = {
        {&mm->gp, "", 1, 0},
        {&mm->dp, "", 1, 0},
        {&mm->ep, "ema.", 0, 0},
    };
    char *cfg = sr_config_to_json(&m->cfg);
    const char *keys[1] = {"contents"}, *vals[1] = {with_training ? "training" : "inference"};
    nn_ckpt_meta meta = {"sr", cfg, with_training ? state_json : NULL, keys, vals, 1, ST_F32};
    int rc = with_training ? nn_ckpt_save(path, parts, 3, &meta) : nn_ckpt_save(path, parts + 2, 1, &meta);
    free(cfg);
    return rc;
}

int sr_load(sr_model *m, const char *path, int with_training, char **state_json) {
    st_file f;
    if (nn_ckpt_open(&f, path, "sr") != 0) return -1;
    sr_config cfg;
    const char *cj = st_meta(&f, "config");
    if (!cj || sr_config_from_json(&cfg, cj) != 0) {
        if (!cj)
            t2i_error_set("%s: no SR config in the checkpoint", path);
        else
            t2i_error_prefix("%s", path);
        st_close(&f);
        return -1;
    }
    const char *contents = st_meta(&f, "contents");
    int training = contents && strcmp(contents, "training") == 0;
    if (with_training && !training) {
        st_close(&f);
        return t2i_error_set("%s: an inference-only SR checkpoint (EMA weights); training needs the run's "
                             "checkpoint.safetensors",
                             path);
    }
    t2i_rng r;
    t2i_rng_seed(&r, 0);
    sr_model_build(m, &cfg, &r);
    nn_ckpt_part parts[3] = {
        {&m->gp, "", with_training, 0},
        {&m->dp, "", with_training, 0},
        {&m->ep, "ema.", 0, 0},
    };
    int rc = training ? nn_ckpt_load_parts(&f, parts, 3) : nn_ckpt_load_parts(&f, parts + 2, 1);
    if (rc == 0 && !training) {
        nn_params_copy_values(&m->gp, &m->ep);
        m->has_training = 0;
    }
    if (rc == 0 && state_json) {
        const char *s = st_meta(&f, "state");
        *state_json = s ? t2i_strdup(s) : NULL;
    }
    st_close(&f);
    if (rc != 0) sr_model_free(m);
    return rc;
}
