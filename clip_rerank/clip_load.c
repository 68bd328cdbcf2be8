/* clip_load.c - loading CLIP weights in three layouts, saving t2i checkpoints, the
 * tokenizer attachment and text embedding; see clip.h.
 *
 * Detection (clip_load_ex), in this order:
 *   1. metadata "format": "t2i" -> a t2i checkpoint; "model" must be "clip". Config from the
 *      "config" JSON, tensors under OpenAI names, BPE merges in metadata "vocab".
 *   2. a tensor "visual.conv1.weight" -> OpenAI's state_dict names. The configuration is
 *      inferred from shapes as openai/CLIP's build_model does (widths, patch size,
 *      resolution = patch * sqrt(positions - 1), layers = number of resblocks, context,
 *      vocabulary, embed_dim = text_projection's columns); head counts come from a
 *      "config" JSON in the metadata (vision_heads, transformer_heads) when present,
 *      else width / 64 as build_model (a tower narrower than 64 is then an error).
 *   3. a tensor "vision_model.embeddings.patch_embedding.weight" -> Hugging Face
 *      CLIPModel names. q/k/v projections are stacked into in_proj (rows q | k | v), and
 *      visual_projection.weight / text_projection.weight (D, W) are transposed into
 *      proj / text_projection (W, D). config.json beside the file, when present, gives
 *      num_attention_heads, hidden_act and layer_norm_eps per tower (text_config,
 *      vision_config); otherwise width / 64 heads (HF's defaults for the base models;
 *      an error below 64) and quick_gelu.
 * Every tensor the model needs is then read with its shape checked: a missing tensor or
 * a wrong shape gives "FILE: tensor 'NAME': expected shape [..], found [..]" (HF names
 * in HF files). A tensor the model does not read is an error too (the file and its config
 * disagree), except optimizer moments, HF's position_ids and OpenAI's three integer
 * entries; so are NaN or infinite weights and a logit_scale whose exp overflows.
 */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "clip.h"
#include "safetensors.h"

/* -------------------------------------------------------------- helpers ---- */

/* The tensor or an error naming it; checks the number of dimensions. */
static const st_tensor *need(const st_file *f, const char *name, int ndim) {
    const st_tensor *t = st_find(f, name);
    if (!t) {
        t2i_error_set("%s: missing tensor '%s'", f->path, name);
        return NULL;
    }
    if (t->ndim != ndim) {
        t2i_error_set("%s: tensor '%s': expected %d dimensions, found %d", f->path, name, ndim, t->ndim);
        return NULL;
    }
    return t;
}

/* Number of blocks: 1 + the largest N among names "<prefix>N.". */
static int count_blocks(const st_file *f, const char *prefix) {
    size_t pl = strlen(prefix);
    int mx = -1;
    for (int i = 0; i < f->n; i++) {
        const char *s = f->t[i].name;
        if (strncmp(s, prefix, pl) != 0) continue;
        char *end;
        long v = strtol(s + pl, &end, 10);
        if (end != s + pl && *end == '.' && v >= 0 && v < 100000 && v > mx) mx = (int)v;
    }
    return mx + 1;
}

/* build_model's rule: width / 64 heads (0 for a narrower tower, which then needs its count given). */
static int heads_for(int width) { return width / 64; }

static int check_heads(const clip_config *c, const char *path, const char *how) {
    int w = c->vision_heads < 1 ? c->vision_width : c->transformer_width;
    if (c->vision_heads < 1 || c->transformer_heads < 1)
        return t2i_error_set("%s: cannot infer the attention heads of the %d-wide %s tower (width / 64 is 0); %s", path, w,
                             c->vision_heads < 1 ? "vision" : "text", how);
    return 0;
}

static int mlp_ratio_of(const st_file *f, const char *name, int width, int *ratio) {
    const st_tensor *t = need(f, name, 2);
    if (!t) return -1;
    if (t->shape[0] % width || t->shape[0] / width < 1 || t->shape[0] / width > 64)
        return t2i_error_set("%s: tensor '%s' has %lld rows, not a multiple of the width %d", f->path, name,
                             (long long)t->shape[0], width);
    *ratio = (int)(t->shape[0] / width);
    return 0;
}

/* ------------------------------------------------------- OpenAI layout ---- */

static int infer_openai(const st_file *f, clip_config *c) {
    const st_tensor *t;
    clip_config_default(c);
    if (!(t = need(f, "visual.conv1.weight", 4))) return -1;
    c->vision_width = (int)t->shape[0];
    c->vision_patch_size = (int)t->shape[3];
    if (t->shape[1] != 3 || t->shape[2] != t->shape[3])
        return t2i_error_set("%s: tensor 'visual.conv1.weight' has shape [%lld, %lld, %lld, %lld], expected [W, 3, P, P]",
                             f->path, (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2],
                             (long long)t->shape[3]);
    if (!(t = need(f, "visual.positional_embedding", 2))) return -1;
    int g = (int)lround(sqrt((double)(t->shape[0] - 1)));
    c->image_resolution = g * c->vision_patch_size;
    if (!(t = need(f, "text_projection", 2))) return -1;
    c->embed_dim = (int)t->shape[1];
    if (!(t = need(f, "positional_embedding", 2))) return -1;
    c->context_length = (int)t->shape[0];
    if (!(t = need(f, "token_embedding.weight", 2))) return -1;
    c->vocab_size = (int)t->shape[0];
    if (!(t = need(f, "ln_final.weight", 1))) return -1;
    c->transformer_width = (int)t->shape[0];
    c->vision_layers = count_blocks(f, "visual.transformer.resblocks.");
    c->transformer_layers = count_blocks(f, "transformer.resblocks.");
    if (c->vision_layers < 1) return t2i_error_set("%s: no visual.transformer.resblocks.* tensors", f->path);
    if (c->transformer_layers < 1) return t2i_error_set("%s: no transformer.resblocks.* tensors", f->path);
    if (mlp_ratio_of(f, "visual.transformer.resblocks.0.mlp.c_fc.weight", c->vision_width, &c->mlp_ratio)) return -1;
    c->vision_heads = heads_for(c->vision_width);
    c->transformer_heads = heads_for(c->transformer_width);
    c->act = NN_ACT_QUICK_GELU;
    /* head counts are not in the shapes: take them from a config in the metadata */
    const char *cj = st_meta(f, "config");
    if (cj) {
        clip_config k = *c;
        if (clip_config_from_json(&k, cj) != 0) return t2i_error_prefix("%s: metadata", f->path);
        c->vision_heads = k.vision_heads, c->transformer_heads = k.transformer_heads;
        c->act = k.act, c->ln_eps = k.ln_eps;
    }
    if (check_heads(c, f->path, "give vision_heads and transformer_heads in a metadata \"config\" "
                                "(convert_openai.py --vision-heads N --text-heads N)"))
        return -1;
    if (clip_config_check(c) != 0) return t2i_error_prefix("%s", f->path);
    return 0;
}

/* st_load_f32, with the expected shape also named when the tensor is missing. */
static int load_named(const st_file *f, const char *name, float *dst, int ndim, const int64_t *shape) {
    if (!st_find(f, name)) {
        char want[160];
        size_t o = (size_t)snprintf(want, sizeof want, "[");
        for (int d = 0; d < ndim && o < sizeof want; d++)
            o += (size_t)snprintf(want + o, sizeof want - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (o < sizeof want) snprintf(want + o, sizeof want - o, "]");
        return t2i_error_set("%s: missing tensor '%s' (expected shape %s)", f->path, name, want);
    }
    return st_load_f32(f, name, dst, ndim, shape);
}

static int load_openai(clip_model *m, const st_file *f) {
    int64_t shape[NN_MAX_DIMS];
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (load_named(f, p->name, m->ps.data + p->offset, p->ndim, shape) != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------- Hugging Face ---- */

/* Reads the tower's settings from HF's config.json ({"text_config": {...},
 * "vision_config": {...}}; older files also have *_config_dict). */
static void hf_tower(const cJSON *root, const char *tower, int *heads, char *act, size_t act_cap, float *eps) {
    char key[64];
    const char *suffix[] = {"", "_dict"};
    for (int s = 0; s < 2; s++) {
        snprintf(key, sizeof key, "%s_config%s", tower, suffix[s]);
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, key);
        if (!cJSON_IsObject(tc)) continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tc, "num_attention_heads");
        if (cJSON_IsNumber(v) && *heads == 0) *heads = v->valueint;
        v = cJSON_GetObjectItemCaseSensitive(tc, "hidden_act");
        if (cJSON_IsString(v) && !act[0]) snprintf(act, act_cap, "%s", v->valuestring);
        v = cJSON_GetObjectItemCaseSensitive(tc, "layer_norm_eps");
        if (cJSON_IsNumber(v) && *eps == 0) *eps = (float)v->valuedouble;
    }
}

static int hf_act(const char *file, const char *name, nn_act *act) {
    if (!name[0] || strcmp(name, "quick_gelu") == 0) *act = NN_ACT_QUICK_GELU;
    else if (strcmp(name, "gelu") == 0) *act = NN_ACT_GELU_ERF;
    else if (strcmp(name, "gelu_new") == 0 || strcmp(name, "gelu_pytorch_tanh") == 0) *act = NN_ACT_GELU_TANH;
    else return t2i_error_set("%s: unsupported hidden_act '%s' (quick_gelu, gelu, gelu_new)", file, name);
    return 0;
}

static int infer_hf(const st_file *f, const char *path, clip_config *c) {
    const st_tensor *t;
    clip_config_default(c);
    if (!(t = need(f, "vision_model.embeddings.patch_embedding.weight", 4))) return -1;
    c->vision_width = (int)t->shape[0];
    c->vision_patch_size = (int)t->shape[3];
    if (!(t = need(f, "vision_model.embeddings.position_embedding.weight", 2))) return -1;
    int g = (int)lround(sqrt((double)(t->shape[0] - 1)));
    c->image_resolution = g * c->vision_patch_size;
    if (!(t = need(f, "text_projection.weight", 2))) return -1;
    c->embed_dim = (int)t->shape[0];
    if (!(t = need(f, "text_model.embeddings.position_embedding.weight", 2))) return -1;
    c->context_length = (int)t->shape[0];
    c->transformer_width = (int)t->shape[1];
    if (!(t = need(f, "text_model.embeddings.token_embedding.weight", 2))) return -1;
    c->vocab_size = (int)t->shape[0];
    c->vision_layers = count_blocks(f, "vision_model.encoder.layers.");
    c->transformer_layers = count_blocks(f, "text_model.encoder.layers.");
    if (c->vision_layers < 1) return t2i_error_set("%s: no vision_model.encoder.layers.* tensors", f->path);
    if (c->transformer_layers < 1) return t2i_error_set("%s: no text_model.encoder.layers.* tensors", f->path);
    if (mlp_ratio_of(f, "vision_model.encoder.layers.0.mlp.fc1.weight", c->vision_width, &c->mlp_ratio)) return -1;
    int vh = 0, th = 0;
    char vact[32] = "", tact[32] = "";
    float veps = 0, teps = 0;
    char *dup = t2i_strdup(path);
    char *cfg_path = t2i_asprintf("%s/config.json", dirname(dup));
    free(dup);
    if (t2i_path_exists(cfg_path)) {
        char *text = t2i_read_file(cfg_path, NULL, 16 << 20);
        if (!text) {
            free(cfg_path);
            return -1;
        }
        cJSON *root = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            t2i_error_set("%s: not a JSON object", cfg_path);
            free(cfg_path);
            return -1;
        }
        hf_tower(root, "vision", &vh, vact, sizeof vact, &veps);
        hf_tower(root, "text", &th, tact, sizeof tact, &teps);
        cJSON_Delete(root);
    }
    c->vision_heads = vh > 0 ? vh : heads_for(c->vision_width);
    c->transformer_heads = th > 0 ? th : heads_for(c->transformer_width);
    if (check_heads(c, path, "give num_attention_heads in a config.json beside the weights")) {
        free(cfg_path);
        return -1;
    }
    nn_act va = NN_ACT_QUICK_GELU, ta = NN_ACT_QUICK_GELU;
    int rc = hf_act(cfg_path, vact, &va) || hf_act(cfg_path, tact, &ta) ? -1 : 0;
    if (rc == 0 && va != ta)
        rc = t2i_error_set("%s: the towers use different activations (%s, %s); not supported", cfg_path, vact, tact);
    if (rc == 0 && veps != teps && veps > 0 && teps > 0)
        rc = t2i_error_set("%s: the towers use different layer_norm_eps; not supported", cfg_path);
    free(cfg_path);
    if (rc) return -1;
    c->act = va;
    if (veps > 0) c->ln_eps = veps;
    else if (teps > 0) c->ln_eps = teps;
    if (clip_config_check(c) != 0) return t2i_error_prefix("%s", f->path);
    return 0;
}

enum { HF_COPY, HF_TRANSPOSE, HF_QKV };

/* HF name of an OpenAI-named parameter, and how it is stored. */
static void hf_name(const char *oa, char *out, size_t cap, int *kind) {
    static const struct {
        const char *oa, *hf;
        int kind;
    } fixed[] = {
        {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", HF_COPY},
        {"visual.class_embedding", "vision_model.embeddings.class_embedding", HF_COPY},
        {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", HF_COPY},
        {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight", HF_COPY},
        {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias", HF_COPY},
        {"visual.ln_post.weight", "vision_model.post_layernorm.weight", HF_COPY},
        {"visual.ln_post.bias", "vision_model.post_layernorm.bias", HF_COPY},
        {"visual.proj", "visual_projection.weight", HF_TRANSPOSE},
        {"token_embedding.weight", "text_model.embeddings.token_embedding.weight", HF_COPY},
        {"positional_embedding", "text_model.embeddings.position_embedding.weight", HF_COPY},
        {"ln_final.weight", "text_model.final_layer_norm.weight", HF_COPY},
        {"ln_final.bias", "text_model.final_layer_norm.bias", HF_COPY},
        {"text_projection", "text_projection.weight", HF_TRANSPOSE},
        {"logit_scale", "logit_scale", HF_COPY},
    };
    static const struct {
        const char *oa, *hf;
        int kind;
    } block[] = {
        {"ln_1.", "layer_norm1.", HF_COPY},
        {"ln_2.", "layer_norm2.", HF_COPY},
        {"attn.in_proj_weight", "self_attn.%s_proj.weight", HF_QKV},
        {"attn.in_proj_bias", "self_attn.%s_proj.bias", HF_QKV},
        {"attn.out_proj.", "self_attn.out_proj.", HF_COPY},
        {"mlp.c_fc.", "mlp.fc1.", HF_COPY},
        {"mlp.c_proj.", "mlp.fc2.", HF_COPY},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp(oa, fixed[i].oa) == 0) {
            snprintf(out, cap, "%s", fixed[i].hf);
            *kind = fixed[i].kind;
            return;
        }
    const char *tower = strncmp(oa, "visual.", 7) == 0 ? "vision_model" : "text_model";
    const char *r = strstr(oa, "resblocks.");
    T2I_ASSERTF(r, "no Hugging Face name for %s", oa);
    int layer = atoi(r + 10);
    const char *rest = strchr(r + 10, '.') + 1;
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++) {
        size_t n = strlen(block[i].oa);
        if (strncmp(rest, block[i].oa, n) != 0) continue;
        /* HF_QKV keeps a "%s" for q/k/v, filled by the caller */
        snprintf(out, cap, "%s.encoder.layers.%d.%s%s", tower, layer, block[i].hf, rest + n);
        *kind = block[i].kind;
        return;
    }
    T2I_ASSERTF(0, "no Hugging Face name for %s", oa);
}

static int load_hf(clip_model *m, const st_file *f) {
    char pat[256], name[300];
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        float *dst = m->ps.data + p->offset;
        int kind;
        hf_name(p->name, pat, sizeof pat, &kind);
        if (kind == HF_COPY) {
            int64_t shape[NN_MAX_DIMS];
            for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
            if (load_named(f, pat, dst, p->ndim, shape) != 0) return -1;
        } else if (kind == HF_TRANSPOSE) {
            int rows = p->shape[0], cols = p->shape[1]; /* ours (W, D); the file's (D, W) */
            int64_t shape[2] = {cols, rows};
            float *tmp = t2i_malloc(p->numel * sizeof(float));
            int rc = load_named(f, pat, tmp, 2, shape);
            if (rc == 0)
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++) dst[(size_t)r * cols + c] = tmp[(size_t)c * rows + r];
            free(tmp);
            if (rc) return -1;
        } else {
            /* in_proj_weight (3C, C) / in_proj_bias (3C) from q, k, v (C, C) / (C) */
            const char *qkv[3] = {"q", "k", "v"};
            int C = p->shape[0] / 3;
            size_t part = p->numel / 3;
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, pat, qkv[k]);
                int64_t shape[2] = {C, C};
                if (load_named(f, name, dst + k * part, p->ndim, shape) != 0) return -1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------- after loading: checks ---- */

enum { LAYOUT_OPENAI, LAYOUT_HF };

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* For OpenAI and HF files (t2i files: nn_ckpt_check_unused), a tensor the model did not
 * read means the file is not the model its shapes describe: an error, not silently
 * ignored. Allowed besides the model's tensors: the three integers some OpenAI state_dicts
 * carry (build_model drops them), HF's position_ids buffers. */
static int check_all_used(const clip_model *m, const st_file *f, int layout) {
    static const char *const extra[] = {"input_resolution", "context_length", "vocab_size",
                                        "vision_model.embeddings.position_ids", "text_model.embeddings.position_ids"};
    int cap = 3 * m->ps.n + 8, n = 0;
    char **want = t2i_malloc((size_t)cap * sizeof(char *));
    for (int i = 0; i < m->ps.n; i++) {
        const char *pn = m->ps.p[i].name;
        if (layout == LAYOUT_HF) {
            char pat[256];
            int kind;
            hf_name(pn, pat, sizeof pat, &kind);
            if (kind == HF_QKV)
                for (int k = 0; k < 3; k++) want[n++] = t2i_asprintf(pat, k == 0 ? "q" : k == 1 ? "k" : "v");
            else want[n++] = t2i_strdup(pat);
        } else {
            want[n++] = t2i_strdup(pn);
        }
    }
    for (int i = layout == LAYOUT_OPENAI ? 0 : 3; i < (layout == LAYOUT_OPENAI ? 3 : 5); i++)
        want[n++] = t2i_strdup(extra[i]);
    qsort(want, (size_t)n, sizeof *want, cmp_cstr);
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const char *key = f->t[i].name;
        if (!bsearch(&key, want, (size_t)n, sizeof *want, cmp_cstr))
            rc = t2i_error_set("%s: tensor '%s' is not part of the CLIP model the file describes (%d+%d layers, "
                               "widths %d/%d): the file and its configuration disagree",
                               f->path, key, m->cfg.vision_layers, m->cfg.transformer_layers, m->cfg.vision_width,
                               m->cfg.transformer_width);
    }
    for (int i = 0; i < n; i++) free(want[i]);
    free(want);
    return rc;
}

/* A logit scale whose exp overflows turns every probability into NaN. */
static int check_logit_scale(const clip_model *m, const char *path) {
    float ls = m->ps.data[m->ps.p[m->logit_scale].offset];
    if (!isfinite(expf(ls)))
        return t2i_error_set("%s: logit_scale %g is too large (exp overflows; OpenAI's models stay at ln 100 = 4.6)",
                             path, (double)ls);
    return 0;
}

/* OpenAI and Hugging Face files: NaN or infinite weights give NaN embeddings and scores that
 * look like results (t2i files are checked as they load, nn_ckpt_load_parts), and then the
 * logit scale. */
static int check_finite(const clip_model *m, const char *path) {
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        const float *x = m->ps.data + p->offset;
        size_t k = t2i_first_nonfinite(x, p->numel);
        if (k < p->numel)
            return t2i_error_set("%s: tensor '%s' holds %s at element %zu", path, p->name,
                                 isnan(x[k]) ? "NaN" : "an infinity", k);
    }
    return check_logit_scale(m, path);
}

/* ------------------------------------------------------------ t2i files ---- */

int clip_save(const clip_model *m, const char *path, const char *state_json, int with_optimizer, int bf16) {
    nn_ckpt_part part = {(nn_params *)&m->ps, "", with_optimizer, 0};
    char *cfg = clip_config_to_json(&m->cfg);
    const char *keys[1] = {"vocab"}, *vals[1] = {m->vocab};
    nn_ckpt_meta meta = {"clip", cfg, state_json, keys, vals, m->vocab ? 1 : 0, bf16 ? ST_BF16 : ST_F32};
    int rc = nn_ckpt_save(path, &part, 1, &meta);
    free(cfg);
    return rc;
}

static int load_t2i(clip_model *m, const st_file *f, const char *path, int with_optimizer, char **state_json) {
    const char *cj = st_meta(f, "config");
    clip_config cfg;
    clip_config_default(&cfg);
    if (!cj) return t2i_error_set("%s: a t2i CLIP checkpoint without its \"config\" metadata", path);
    if (clip_config_from_json(&cfg, cj) != 0 || clip_config_check(&cfg) != 0) return t2i_error_prefix("%s", path);
    clip_model_build(m, &cfg);
    nn_ckpt_part part = {&m->ps, "", with_optimizer, 0};
    if (nn_ckpt_load_parts(f, &part, 1) != 0 || nn_ckpt_check_unused(f, &part, 1) != 0 ||
        check_logit_scale(m, path) != 0) { /* values already checked finite as they loaded */
        clip_model_free(m);
        return -1;
    }
    const char *v = st_meta(f, "vocab");
    if (v) {
        m->vocab = t2i_strdup(v);
        clip_tok *tok = clip_tok_from_merges(v, strlen(v), -1, "checkpoint metadata 'vocab'");
        if (!tok) t2i_error_prefix("%s", path);
        if (!tok || clip_set_tokenizer(m, tok, path) != 0) { /* the second names the path itself */
            clip_model_free(m);
            return -1;
        }
    }
    if (state_json) {
        const char *s = st_meta(f, "state");
        *state_json = s ? t2i_strdup(s) : NULL;
    }
    m->path = t2i_strdup(path);
    return 0;
}

int clip_load_ckpt(clip_model *m, const char *path, int with_optimizer, char **state_json) {
    st_file f;
    if (nn_ckpt_open(&f, path, "clip") != 0) return -1;
    int rc = load_t2i(m, &f, path, with_optimizer, state_json);
    st_close(&f);
    return rc;
}

int clip_set_tokenizer(clip_model *m, clip_tok *tok, const char *what) {
    size_t v = clip_tok_vocab_size(tok);
    if (v != (size_t)m->cfg.vocab_size) { /* a smaller one would run, with every merged token's id wrong */
        clip_tok_free(tok);
        return t2i_error_set("%s: the vocabulary has %zu tokens but the model's token embedding has %d: they belong to "
                             "different models", what, v, m->cfg.vocab_size);
    }
    if (m->tok) clip_tok_free(m->tok);
    m->tok = tok;
    return 0;
}

/* A file beside path (heap string). */
static char *beside(const char *path, const char *name) {
    char *dup = t2i_strdup(path);
    char *r = t2i_asprintf("%s/%s", dirname(dup), name);
    free(dup);
    return r;
}

clip_model *clip_load_ex(const char *path, const char *vocab, int allow_no_vocab) {
    st_file f;
    if (st_open(&f, path) != 0) return NULL;
    clip_model *m = t2i_calloc(1, sizeof *m);
    const char *fmt = st_meta(&f, "format");
    int rc, is_hf = 0;
    if (fmt && strcmp(fmt, "t2i") == 0) {
        const char *model = st_meta(&f, "model");
        if (!model || strcmp(model, "clip") != 0) {
            t2i_error_set("%s: is a '%s' checkpoint, not a CLIP model", path, model ? model : "?");
            st_close(&f);
            free(m);
            return NULL;
        }
        rc = load_t2i(m, &f, path, 0, NULL);
        st_close(&f);
        if (rc) {
            free(m);
            return NULL;
        }
    } else {
        clip_config cfg;
        if (st_find(&f, "visual.conv1.weight")) {
            rc = infer_openai(&f, &cfg);
        } else if (st_find(&f, "vision_model.embeddings.patch_embedding.weight")) {
            is_hf = 1;
            rc = infer_hf(&f, path, &cfg);
        } else {
            rc = t2i_error_set("%s: not a CLIP checkpoint (neither 'visual.conv1.weight' (OpenAI names) nor "
                               "'vision_model.embeddings.patch_embedding.weight' (Hugging Face names) nor t2i "
                               "metadata)",
                               path);
        }
        if (rc == 0) {
            clip_model_build(m, &cfg);
            rc = is_hf ? load_hf(m, &f) : load_openai(m, &f);
            if (rc == 0) rc = check_all_used(m, &f, is_hf ? LAYOUT_HF : LAYOUT_OPENAI);
            if (rc == 0) rc = check_finite(m, path);
            if (rc) clip_model_free(m);
        }
        st_close(&f);
        if (rc) {
            free(m);
            return NULL;
        }
        m->path = t2i_strdup(path);
    }
    /* the vocabulary: explicit, the checkpoint's own, files beside the weights, env */
    const char *env = getenv("T2I_CLIP_VOCAB");
    char *cand[2] = {beside(path, "vocab.json"), beside(path, "bpe_simple_vocab_16e6.txt.gz")};
    const char *use = vocab;
    if (!use && !m->tok) {
        for (int i = 0; i < 2 && !use; i++)
            if (t2i_path_exists(cand[i])) use = cand[i];
        if (!use && env && *env) use = env;
    }
    rc = 0;
    if (use) {
        clip_tok *tok = clip_tok_load(use, -1);
        rc = !tok || clip_set_tokenizer(m, tok, use) != 0 ? -1 : 0;
    } else if (!m->tok && !allow_no_vocab) {
        rc = t2i_error_set("%s: no tokenizer vocabulary; pass --vocab (bpe_simple_vocab_16e6.txt.gz, or a "
                           "Hugging Face vocab.json with merges.txt beside it) or set T2I_CLIP_VOCAB",
                           path);
    }
    free(cand[0]);
    free(cand[1]);
    if (rc) {
        clip_free(m);
        return NULL;
    }
    clip_text_pack(m); /* loaded for inference */
    return m;
}

clip_model *clip_load(const char *path, const char *vocab) { return clip_load_ex(path, vocab, 0); }

int clip_load_list(const char *list, const char *vocab, int max, clip_model **ms) {
    int n = 0;
    char *buf = t2i_strdup(list), *save = NULL;
    for (char *f = strtok_r(buf, ",", &save); f; f = strtok_r(NULL, ",", &save)) n++;
    free(buf);
    if (n == 0) return t2i_error_set("no CLIP file in '%s'", list), -2;
    if (n > max) return t2i_error_set("at most %d CLIPs in an ensemble ('%s')", max, list), -2;
    buf = t2i_strdup(list), save = NULL;
    int k = 0;
    for (char *f = strtok_r(buf, ",", &save); f; f = strtok_r(NULL, ",", &save), k++)
        if (!(ms[k] = clip_load(f, vocab))) {
            while (k > 0) clip_free(ms[--k]);
            free(buf);
            return -1;
        }
    free(buf);
    return n;
}

void clip_free(clip_model *m) {
    if (!m) return;
    clip_model_free(m);
    free(m);
}

/* ---------------------------------------------------------------- text ---- */

int clip_tokenize(clip_model *m, const char *const *texts, int n, int32_t *tokens) {
    if (!m->tok)
        return t2i_error_set("%s: no tokenizer vocabulary; pass --vocab", m->path ? m->path : "CLIP model");
    size_t ctx = (size_t)m->cfg.context_length;
    for (int i = 0; i < n; i++)
        if (clip_tok_tokenize(m->tok, texts[i], strlen(texts[i]), tokens + (size_t)i * ctx, ctx) < 0)
            return n > 1 ? t2i_error_prefix("text %d", i + 1) : -1;
    return 0;
}

int clip_embed_texts(clip_model *m, const char *const *texts, int n, float *out) {
    int32_t *tok = t2i_malloc((size_t)n * m->cfg.context_length * sizeof(int32_t));
    int rc = clip_tokenize(m, texts, n, tok);
    if (rc == 0) rc = clip_embed_tokens(m, tok, n, out);
    free(tok);
    return rc;
}
