/* dalle_model.c - the image-token transformer: configuration, parameters, checkpoints,
 * text layout, and the training forward/backward (see dalle.h).
 *
 * Backward of the parts around the transformer stack (the stack's own is in
 * nn/transformer.c):
 *   logits = ln_f(h) W_head^T + b_head       dln = dlogits W_head, dW_head += dlogits^T ln
 *   h = stack(x)                             dx = stack'(dh)
 *   x[b,t] = E[id[b,t]] + P[t]               dE[id] += dx[b,t], dP[t] += sum_b dx[b,t]
 * Text and image positions use their own embedding table; an image id is a joint id
 * text_vocab + code and indexes E_image[code].
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "dalle.h"
#include "words.h"

void dalle_config_b2(dalle_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->preset, "b2");
    c->text_len = 16, c->text_vocab = 1024;
    c->image_side = 8, c->codebook = 512;
    c->width = 256, c->n_layer = 6, c->n_head = 8, c->mlp_ratio = 4;
    c->act = NN_ACT_GELU_ERF;
    c->ln_eps = 1e-5f;
}

static const char *const dalle_presets[] = {"b2", "custom", NULL};

/* dalle_config's fields in the order of its JSON. */
#define CONFIG_FIELDS(c)                                                                   \
    nn_field cf[] = {NN_F_STR_OF("preset", (c)->preset, dalle_presets),                    \
                     NN_F_INT_IN("text_len", (c)->text_len, 2, 256),                       \
                     NN_F_INT_IN("text_vocab", (c)->text_vocab, 2 + 514, 1 << 20),         \
                     NN_F_INT_IN("image_side", (c)->image_side, 1, 64),                    \
                     NN_F_INT_IN("codebook", (c)->codebook, 2, 1 << 20),                   \
                     NN_F_INT_IN("width", (c)->width, 1, 8192),                            \
                     NN_F_INT_IN("n_layer", (c)->n_layer, 1, 256),                         \
                     NN_F_INT_IN("n_head", (c)->n_head, 1, INT_MAX),                       \
                     NN_F_INT_IN("mlp_ratio", (c)->mlp_ratio, 1, INT_MAX),                 \
                     NN_F_ACT("act", (c)->act),                                            \
                     NN_F_FLOAT("ln_eps", (c)->ln_eps)}

/* The checks across fields (the table has checked each field alone). */
static int config_check_across(const dalle_config *c) {
    if (c->text_vocab < c->text_len + 514)
        return t2i_error_set("dalle config: text_vocab %d must hold a BPE vocabulary (at least 514 ids) plus %d pads",
                             c->text_vocab, c->text_len);
    if (c->width % c->n_head) return t2i_error_set("dalle config: width %d is not a multiple of %d heads", c->width, c->n_head);
    if (!(c->ln_eps > 0 && c->ln_eps < 1)) return t2i_error_set("dalle config: 'ln_eps' = %g is outside (0, 1)", c->ln_eps);
    if (strcmp(c->preset, "b2") == 0) {
        dalle_config b;
        dalle_config_b2(&b);
        if (memcmp(&b, c, sizeof b) != 0) return t2i_error_set("dalle config: preset b2 must have B2's sizes exactly");
    }
    return 0;
}

int dalle_config_check(const dalle_config *c) {
    dalle_config k = *c;
    CONFIG_FIELDS(&k);
    if (nn_fields_check(cf, NN_NFIELDS(cf), "dalle config") != 0) return -1;
    return config_check_across(c);
}

char *dalle_config_to_json(const dalle_config *c) {
    dalle_config k = *c;
    CONFIG_FIELDS(&k);
    return nn_fields_to_json(cf, NN_NFIELDS(cf));
}

int dalle_config_from_json(dalle_config *c, const char *json) {
    memset(c, 0, sizeof *c);
    CONFIG_FIELDS(c);
    if (nn_fields_from_json(json, cf, NN_NFIELDS(cf), "dalle config", 0) != 0) return -1;
    return config_check_across(c);
}

double dalle_flops(const dalle_config *c, int T) {
    nn_tf_config tc = {c->n_layer, c->width, c->n_head, c->mlp_ratio, c->act, 1, c->ln_eps};
    /* causal attention does half the QK^T/PV work of nn_tf_flops' full attention, but
     * the kernels compute full rows; count what is computed */
    return nn_tf_flops(&tc, T) + 2.0 * T * c->width * (double)dalle_vocab(c);
}

void dalle_build(dalle_model *m, const dalle_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    int C = cfg->width, T = dalle_seq_len(cfg), V = dalle_vocab(cfg);
    nn_params *ps = &m->ps;
    nn_params_init(ps);
    m->text_emb = nn_params_add(ps, "text_emb.weight", 2, (int[]){cfg->text_vocab, C}, NN_TRAIN);
    m->image_emb = nn_params_add(ps, "image_emb.weight", 2, (int[]){cfg->codebook, C}, NN_TRAIN);
    m->pos_emb = nn_params_add(ps, "pos_emb.weight", 2, (int[]){T, C}, NN_TRAIN);
    nn_tf_config tc = {cfg->n_layer, C, cfg->n_head, cfg->mlp_ratio, cfg->act, 1, cfg->ln_eps};
    nn_tf_init(&m->tf, ps, "transformer", &tc);
    m->lnf_w = nn_params_add(ps, "ln_f.weight", 1, (int[]){C}, NN_TRAIN);
    m->lnf_b = nn_params_add(ps, "ln_f.bias", 1, (int[]){C}, NN_TRAIN);
    m->head_w = nn_params_add(ps, "head.weight", 2, (int[]){V, C}, NN_TRAIN);
    m->head_b = nn_params_add(ps, "head.bias", 1, (int[]){V}, NN_TRAIN);
    int nd[] = {m->text_emb, m->image_emb, m->pos_emb, m->lnf_w, m->lnf_b, m->head_b};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++) ps->p[nd[i]].no_decay = 1;
    nn_params_alloc(ps);
    nn_init_const(nn_params_val(ps, m->lnf_w), (size_t)C, 1.0f);
}

void dalle_init(dalle_model *m, t2i_rng *rng) {
    const dalle_config *c = &m->cfg;
    nn_params *ps = &m->ps;
    int C = c->width, T = dalle_seq_len(c), V = dalle_vocab(c);
    nn_init_normal(nn_params_val(ps, m->text_emb), (size_t)c->text_vocab * C, 0.0f, 0.02f, rng);
    nn_init_normal(nn_params_val(ps, m->image_emb), (size_t)c->codebook * C, 0.0f, 0.02f, rng);
    nn_init_normal(nn_params_val(ps, m->pos_emb), (size_t)T * C, 0.0f, 0.02f, rng);
    nn_tf_init_params(&m->tf, rng, NN_TF_INIT_GPT);
    nn_init_const(nn_params_val(ps, m->lnf_w), (size_t)C, 1.0f);
    nn_init_const(nn_params_val(ps, m->lnf_b), (size_t)C, 0.0f);
    nn_init_normal(nn_params_val(ps, m->head_w), (size_t)V * C, 0.0f, 0.02f, rng);
    nn_init_const(nn_params_val(ps, m->head_b), (size_t)V, 0.0f);
}

void dalle_free(dalle_model *m) {
    nn_tf_free(&m->tf);
    nn_params_free(&m->ps);
    if (m->tok) clip_tok_free(m->tok);
    free(m->vocab);
    free(m->vq_path);
    free(m->caption_words);
    memset(m, 0, sizeof *m);
}

int dalle_set_vocab(dalle_model *m, const char *merges, size_t len) {
    clip_tok *tok = clip_tok_from_merges(merges, len, -1, "dalle vocabulary");
    if (!tok) return -1;
    size_t vs = clip_tok_vocab_size(tok);
    int pad_base = dalle_pad_id(&m->cfg, 0);
    if (vs > (size_t)pad_base) {
        clip_tok_free(tok);
        return t2i_error_set("dalle vocabulary: %zu BPE ids do not fit below the %d pad ids of a text vocabulary of %d "
                             "(at most %d BPE ids)",
                             vs, m->cfg.text_len, m->cfg.text_vocab, pad_base);
    }
    if (m->tok) clip_tok_free(m->tok);
    free(m->vocab);
    m->tok = tok;
    m->vocab = t2i_malloc(len + 1);
    memcpy(m->vocab, merges, len);
    m->vocab[len] = 0;
    m->sot = clip_tok_sot(tok);
    return 0;
}

int dalle_save(const dalle_model *m, const char *path, const char *state_json, int with_optimizer) {
    nn_ckpt_part part = {(nn_params *)&m->ps, "", with_optimizer, 0};
    char *cfg = dalle_config_to_json(&m->cfg);
    const char *keys[3], *vals[3];
    int ne = 0;
    if (m->vocab) keys[ne] = "vocab", vals[ne++] = m->vocab;
    if (m->vq_path) keys[ne] = "vq", vals[ne++] = m->vq_path;
    if (m->caption_words) keys[ne] = T2I_WORDS_META_KEY, vals[ne++] = m->caption_words;
    nn_ckpt_meta meta = {"dalle", cfg, state_json, keys, vals, ne, ST_F32};
    int rc = nn_ckpt_save(path, &part, 1, &meta);
    free(cfg);
    return rc;
}

int dalle_load(dalle_model *m, const char *path, int with_optimizer, char **state_json) {
    memset(m, 0, sizeof *m);
    if (state_json) *state_json = NULL;
    st_file f;
    if (nn_ckpt_open(&f, path, "dalle") != 0) return -1;
    dalle_config cfg;
    const char *cj = st_meta(&f, "config");
    if (!cj) t2i_error_set("no config in the metadata");
    if (!cj || dalle_config_from_json(&cfg, cj) != 0) {
        t2i_error_prefix("%s", path);
        st_close(&f);
        return -1;
    }
    dalle_build(m, &cfg);
    nn_ckpt_part part = {&m->ps, "", with_optimizer, 0};
    int rc = nn_ckpt_load_parts(&f, &part, 1);
    if (rc == 0) rc = nn_ckpt_check_unused(&f, &part, 1);
    const char *voc = st_meta(&f, "vocab");
    if (rc == 0 && (!voc || !*voc))
        rc = t2i_error_set("%s: the checkpoint has no text vocabulary (metadata 'vocab' %s)", path, voc ? "empty" : "missing");
    if (rc == 0 && dalle_set_vocab(m, voc, strlen(voc)) != 0) rc = t2i_error_prefix("%s", path);
    const char *vq = st_meta(&f, "vq");
    if (rc == 0 && vq && !*vq) rc = t2i_error_set("%s: metadata 'vq' (the VQ tokenizer it was trained with) is empty", path);
    if (rc == 0 && vq) m->vq_path = t2i_strdup(vq);
    const char *cw = st_meta(&f, T2I_WORDS_META_KEY);
    if (rc == 0 && cw) m->caption_words = t2i_strdup(cw);
    if (rc == 0 && state_json) {
        const char *s = st_meta(&f, "state");
        *state_json = s ? t2i_strdup(s) : NULL;
    }
    st_close(&f);
    if (rc != 0) dalle_free(m);
    return rc;
}

/* ---- text ---- */

int dalle_encode_text(dalle_model *m, const char *caption, int32_t *out, int *n_tokens) {
    const dalle_config *c = &m->cfg;
    if (!m->tok) return t2i_error_set("dalle: the model has no text vocabulary");
    size_t at;
    const char *why = t2i_text_problem(caption, &at);
    if (why && why != T2I_TEXT_EMPTY) return t2i_error_set("the caption holds %s at byte %zu", why, at);
    int32_t *ids = NULL;
    size_t n = 0;
    if (clip_tok_encode(m->tok, caption, strlen(caption), &ids, &n) != 0) return -1;
    if (n_tokens) *n_tokens = (int)n;
    if (n == 0) {
        t2i_free(ids);
        return t2i_error_set("empty caption: a prompt needs at least one word");
    }
    size_t keep = n < (size_t)(c->text_len - 1) ? n : (size_t)(c->text_len - 1);
    out[0] = m->sot;
    for (size_t i = 0; i < keep; i++) out[1 + i] = ids[i];
    for (int i = (int)keep + 1; i < c->text_len; i++) out[i] = dalle_pad_id(c, i);
    t2i_free(ids);
    return n > keep;
}

int dalle_encode_text_warn(dalle_model *m, const char *caption, int32_t *out) {
    int n = 0;
    int rc = dalle_encode_text(m, caption, out, &n);
    if (rc == 1) {
        char shown[128];
        fprintf(stderr, "t2i: warning: the caption \"%s\" has %d tokens; only the first %d are used\n",
                t2i_text_show(caption, 60, shown, sizeof shown), n, m->cfg.text_len - 1);
    }
    return rc;
}

void dalle_null_text(const dalle_model *m, int32_t *out) {
    out[0] = m->sot;
    for (int i = 1; i < m->cfg.text_len; i++) out[i] = dalle_pad_id(&m->cfg, i);
}

/* ---- forward / backward ---- */

void dalle_embed(dalle_model *m, float *x, const int32_t *tokens, int B, int Tn, int t0) {
    const dalle_config *c = &m->cfg;
    int C = c->width, TV = c->text_vocab;
    const float *te = nn_params_val(&m->ps, m->text_emb), *ie = nn_params_val(&m->ps, m->image_emb);
    const float *pe = nn_params_val(&m->ps, m->pos_emb);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tn; t++) {
            int pos = t0 + t, id = tokens[(size_t)b * Tn + t];
            const float *e;
            if (pos < c->text_len) {
                T2I_ASSERTF(id >= 0 && id < TV, "text id %d at position %d outside [0, %d)", id, pos, TV);
                e = te + (size_t)id * C;
            } else {
                T2I_ASSERTF(id >= TV && id < TV + c->codebook, "image id %d at position %d outside [%d, %d)", id, pos,
                            TV, TV + c->codebook);
                e = ie + (size_t)(id - TV) * C;
            }
            float *o = x + ((size_t)b * Tn + t) * C;
            const float *p = pe + (size_t)pos * C;
            for (int j = 0; j < C; j++) o[j] = e[j] + p[j];
        }
}

void dalle_train_grads(dalle_model *m, nn_arena *a, const int32_t *tokens, int B, float text_weight, dalle_loss *out) {
    const dalle_config *c = &m->cfg;
    int C = c->width, T = dalle_seq_len(c), V = dalle_vocab(c), TL = c->text_len;
    size_t N = (size_t)B * T;
    nn_params *ps = &m->ps;
    nn_params_zero_grad(ps);
    float *x = nn_arena_floats(a, N * C);
    dalle_embed(m, x, tokens, B, T, 0);
    nn_tf_tape tape;
    float *h = nn_tf_forward(&m->tf, &tape, a, x, B, T);
    float *ln = nn_arena_floats(a, N * C), *mean = nn_arena_floats(a, N), *rstd = nn_arena_floats(a, N);
    nn_layernorm_forward(ln, mean, rstd, h, nn_params_val(ps, m->lnf_w), nn_params_val(ps, m->lnf_b), N, C, c->ln_eps);
    float *logits = nn_arena_floats(a, N * V);
    nn_linear_forward(logits, ln, nn_params_val(ps, m->head_w), nn_params_val(ps, m->head_b), N, C, V);
    /* targets: position t predicts token t+1; the last position predicts nothing */
    int *tt = nn_arena_bytes(a, N * sizeof(int)), *ti = nn_arena_bytes(a, N * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int next = t + 1 < T ? tokens[i + 1] : -1;
            tt[i] = t + 1 < TL ? next : -1;
            ti[i] = t + 1 >= TL ? next : -1;
        }
    float *dlogits = nn_arena_zeros(a, N * V);
    float lt, li, loss;
    if (text_weight >= 0) {
        lt = nn_cross_entropy(dlogits, logits, tt, NULL, N, V, -1, text_weight);
        li = nn_cross_entropy(dlogits, logits, ti, NULL, N, V, -1, 1.0f - text_weight);
        loss = text_weight * lt + (1.0f - text_weight) * li;
    } else {
        /* plain mean over all T-1 targets: both parts weighted by their share */
        float wt = (float)(TL - 1) / (float)(T - 1);
        lt = nn_cross_entropy(dlogits, logits, tt, NULL, N, V, -1, wt);
        li = nn_cross_entropy(dlogits, logits, ti, NULL, N, V, -1, 1.0f - wt);
        loss = wt * lt + (1.0f - wt) * li;
    }
    if (out) out->loss = loss, out->loss_text = lt, out->loss_image = li;
    /* backward */
    float *dln = nn_arena_zeros(a, N * C);
    nn_linear_backward(dln, nn_params_grad(ps, m->head_w), nn_params_grad(ps, m->head_b), dlogits, ln,
                       nn_params_val(ps, m->head_w), N, C, V);
    float *dh = nn_arena_zeros(a, N * C);
    nn_layernorm_backward(dh, nn_params_grad(ps, m->lnf_w), nn_params_grad(ps, m->lnf_b), dln, h,
                          nn_params_val(ps, m->lnf_w), mean, rstd, N, C);
    float *dx = nn_tf_backward(&m->tf, &tape, a, dh);
    float *dte = nn_params_grad(ps, m->text_emb), *die = nn_params_grad(ps, m->image_emb);
    float *dpe = nn_params_grad(ps, m->pos_emb);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int id = tokens[i];
            float *de = t < TL ? dte + (size_t)id * C : die + (size_t)(id - c->text_vocab) * C;
            float *dp = dpe + (size_t)t * C;
            const float *g = dx + i * C;
            for (int j = 0; j < C; j++) de[j] += g[j], dp[j] += g[j];
        }
}

float *dalle_logits(dalle_model *m, nn_arena *a, const int32_t *tokens, int B, int T) {
    const dalle_config *c = &m->cfg;
    int C = c->width, V = dalle_vocab(c);
    size_t N = (size_t)B * T;
    float *x = nn_arena_floats(a, N * C);
    dalle_embed(m, x, tokens, B, T, 0);
    float *h = nn_tf_forward(&m->tf, NULL, a, x, B, T);
    float *ln = nn_arena_floats(a, N * C);
    nn_layernorm_forward(ln, NULL, NULL, h, nn_params_val(&m->ps, m->lnf_w), nn_params_val(&m->ps, m->lnf_b), N, C,
                         c->ln_eps);
    float *logits = nn_arena_floats(a, N * V);
    nn_linear_forward(logits, ln, nn_params_val(&m->ps, m->head_w), nn_params_val(&m->ps, m->head_b), N, C, V);
    return logits;
}
