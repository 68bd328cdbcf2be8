/* test_clip_golden.c - CLIP against golden files made with openai's own code
 * (tests/data/clip_golden from tests/ref/gen_clip_golden.py, README there) and preprocessing
 * against PIL/torchvision.
 *
 *   - OpenAI-named weights: configuration inferred from the shapes + heads from metadata;
 *     image/text features, logits both ways, normalised features and exp(logit_scale)
 *     within the README's tolerance (|d| <= 1e-4 or |d| <= 1e-4 |expected|); every
 *     intermediate (conv1, ln_pre, blocks, ln_post, text embedding, blocks, ln_final) as
 *     well, the text ones over the positions the EOT-truncated pass computes;
 *   - the batched inference path (no tape) gives the same normalised features;
 *   - the same weights renamed to Hugging Face CLIPModel names (written here, q/k/v split,
 *     projections transposed) with a config.json giving the heads: identical features;
 *     without config.json (width / 64 heads) the features change;
 *   - the tokenizer + model: clip_tokenize of captions.txt equals the golden tokens;
 *   - preprocessing: golden pixels_u8 -> the golden normalised images; a 300x200 photo-like
 *     image -> PIL bicubic resize + centre crop + normalise (tests/ref/gen_clip_ref.py) at
 *     R = 64 and 37, within 1e-6 (exact 8-bit pixels; 1/255/std if one pixel differs by 1).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "clip.h"
#include "image.h"
#include "safetensors.h"
#include "testutil.h"

static char *golden(const char *name) {
    char *rel = t2i_asprintf("data/clip_golden/%s", name);
    char *p = tu_path(rel);
    free(rel);
    return p;
}

static float *read_tensor(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", f->path, name);
    float *x = t2i_malloc(t->numel * sizeof(float));
    assert_int_equal(st_read_f32(f, t, x, t->numel), 0);
    if (n) *n = t->numel;
    return x;
}

/* The README's rule: an element passes if |d| <= 1e-4 or |d| <= 1e-4 |expected|. */
static void golden_close(const char *what, const float *got, const float *want, size_t n) {
    size_t bad = 0, worst = 0;
    double wd = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= 1e-4 || d <= 1e-4 * fabs(want[i]))) bad++;
        if (d > wd || isnan(d)) wd = d, worst = i;
    }
    print_message("  %-28s max |diff| %.2e%s\n", what, wd, bad ? "  FAIL" : "");
    if (bad) fail_msg("%s: %zu of %zu elements off (worst %zu: %g vs %g)", what, bad, n, worst, got[worst], want[worst]);
}

typedef struct {
    clip_model *m;
    st_file inp, exp, mid;
    float *images;
    int32_t *tokens;
    int N, D;
} golden_ctx;

static int setup(void **state) {
    golden_ctx *g = t2i_calloc(1, sizeof *g);
    char *w = golden("weights.safetensors"), *vocab = tu_clip_merges();
    g->m = clip_load(w, vocab);
    if (!g->m) fail_msg("%s", t2i_error_msg());
    free(w), free(vocab);
    char *p = golden("inputs.safetensors");
    assert_int_equal(st_open(&g->inp, p), 0);
    free(p);
    p = golden("expected.safetensors");
    assert_int_equal(st_open(&g->exp, p), 0);
    free(p);
    p = golden("intermediates.safetensors");
    assert_int_equal(st_open(&g->mid, p), 0);
    free(p);
    size_t n;
    g->images = read_tensor(&g->inp, "images", &n);
    g->N = 4;
    g->D = g->m->cfg.embed_dim;
    const st_tensor *t = st_find(&g->inp, "tokens");
    assert_non_null(t);
    g->tokens = t2i_malloc(t->numel * sizeof(int32_t));
    assert_int_equal(st_read_i32(&g->inp, t, g->tokens, t->numel), 0);
    *state = g;
    return 0;
}

static int teardown(void **state) {
    golden_ctx *g = *state;
    if (!g) return 0; /* setup failed before it finished */
    clip_free(g->m);
    st_close(&g->inp), st_close(&g->exp), st_close(&g->mid);
    free(g->images), free(g->tokens), free(g);
    return 0;
}

static void test_config(void **state) {
    golden_ctx *g = *state;
    const clip_config *c = &g->m->cfg;
    assert_int_equal(c->embed_dim, 32);
    assert_int_equal(c->image_resolution, 32);
    assert_int_equal(c->vision_patch_size, 8);
    assert_int_equal(c->vision_width, 64);
    assert_int_equal(c->vision_layers, 2);
    assert_int_equal(c->vision_heads, 4); /* from the metadata; width / 64 would say 1 */
    assert_int_equal(c->context_length, 77);
    assert_int_equal(c->vocab_size, 49408);
    assert_int_equal(c->transformer_width, 8);
    assert_int_equal(c->transformer_layers, 2);
    assert_int_equal(c->transformer_heads, 2);
    assert_int_equal(c->act, NN_ACT_QUICK_GELU);
}

static void test_forward(void **state) {
    golden_ctx *g = *state;
    clip_model *m = g->m;
    int N = g->N, D = g->D, Wv = m->cfg.vision_width, Wt = m->cfg.transformer_width, ctx = m->cfg.context_length;
    nn_arena a;
    nn_arena_init(&a);
    clip_vis_tape vt;
    clip_txt_tape tt;
    float *fi = t2i_malloc((size_t)N * D * sizeof(float)), *ft = t2i_malloc((size_t)N * D * sizeof(float));
    clip_image_forward(m, &vt, &a, g->images, N, fi);
    clip_text_forward(m, &tt, &a, g->tokens, N, ft);

    /* intermediates, vision */
    float *x = read_tensor(&g->mid, "visual.conv1_out", NULL); /* (N, W, 4, 4) */
    float *c1 = t2i_malloc((size_t)N * Wv * 16 * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int w = 0; w < Wv; w++)
            for (int p = 0; p < 16; p++) c1[((size_t)n * Wv + w) * 16 + p] = vt.conv1_out[((size_t)n * 16 + p) * Wv + w];
    golden_close("visual.conv1_out", c1, x, (size_t)N * Wv * 16);
    free(x), free(c1);
    x = read_tensor(&g->mid, "visual.ln_pre_out", NULL);
    golden_close("visual.ln_pre_out", vt.ln_pre, x, (size_t)N * 17 * Wv);
    free(x);
    x = read_tensor(&g->mid, "visual.block0_out", NULL);
    golden_close("visual.block0_out", vt.tf.x[1], x, (size_t)N * 17 * Wv);
    free(x);
    x = read_tensor(&g->mid, "visual.block1_out", NULL);
    golden_close("visual.block1_out", vt.tf.out, x, (size_t)N * 17 * Wv);
    free(x);
    x = read_tensor(&g->mid, "visual.ln_post_out", NULL);
    golden_close("visual.ln_post_out", vt.ln_post, x, (size_t)N * Wv);
    free(x);

    /* intermediates, text: the pass stops at the longest EOT; compare those positions */
    int T = tt.T;
    int maxeot = 0;
    for (int i = 0; i < N; i++) {
        int e = 0;
        for (int t = 0; t < ctx; t++)
            if (g->tokens[i * ctx + t] == 49407) e = t;
        if (e > maxeot) maxeot = e;
        assert_int_equal(tt.eot[i], e);
    }
    assert_int_equal(T, maxeot + 1);
    assert_true(T < ctx);
    print_message("  text pass over %d of %d positions\n", T, ctx);
    const char *names[3] = {"text.embed_out", "text.block0_out", "text.block1_out"};
    const float *mine[3] = {tt.emb, tt.tf.x[1], tt.tf.out};
    float *sub = t2i_malloc((size_t)N * T * Wt * sizeof(float));
    for (int k = 0; k < 3; k++) {
        x = read_tensor(&g->mid, names[k], NULL);
        for (int i = 0; i < N; i++) memcpy(sub + (size_t)i * T * Wt, x + (size_t)i * ctx * Wt, (size_t)T * Wt * sizeof(float));
        golden_close(names[k], mine[k], sub, (size_t)N * T * Wt);
        free(x);
    }
    /* ln_final on every computed position */
    float *lnf = t2i_malloc((size_t)N * T * Wt * sizeof(float));
    nn_layernorm_forward(lnf, NULL, NULL, tt.tf.out, nn_params_val(&m->ps, m->ln_final_w),
                         nn_params_val(&m->ps, m->ln_final_b), (size_t)N * T, Wt, m->cfg.ln_eps);
    x = read_tensor(&g->mid, "text.ln_final_out", NULL);
    for (int i = 0; i < N; i++) memcpy(sub + (size_t)i * T * Wt, x + (size_t)i * ctx * Wt, (size_t)T * Wt * sizeof(float));
    golden_close("text.ln_final_out", lnf, sub, (size_t)N * T * Wt);
    free(x), free(lnf), free(sub);

    /* outputs */
    x = read_tensor(&g->exp, "image_features", NULL);
    golden_close("image_features", fi, x, (size_t)N * D);
    free(x);
    x = read_tensor(&g->exp, "text_features", NULL);
    golden_close("text_features", ft, x, (size_t)N * D);
    free(x);
    clip_normalize_rows(fi, N, D);
    clip_normalize_rows(ft, N, D);
    x = read_tensor(&g->exp, "image_features_normalized", NULL);
    golden_close("image_features_normalized", fi, x, (size_t)N * D);
    free(x);
    x = read_tensor(&g->exp, "text_features_normalized", NULL);
    golden_close("text_features_normalized", ft, x, (size_t)N * D);
    free(x);
    float s = clip_logit_scale_exp(m);
    x = read_tensor(&g->exp, "logit_scale_exp", NULL);
    golden_close("logit_scale_exp", &s, x, 1);
    free(x);
    float lpi[16], lpt[16];
    clip_cosine(fi, N, ft, N, D, lpi);
    for (int i = 0; i < 16; i++) lpi[i] *= s;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) lpt[j * N + i] = lpi[i * N + j];
    x = read_tensor(&g->exp, "logits_per_image", NULL);
    golden_close("logits_per_image", lpi, x, 16);
    free(x);
    x = read_tensor(&g->exp, "logits_per_text", NULL);
    golden_close("logits_per_text", lpt, x, 16);
    free(x);

    /* the inference path (no tape, batched helpers) */
    float *ei = t2i_malloc((size_t)N * D * sizeof(float)), *et = t2i_malloc((size_t)N * D * sizeof(float));
    assert_int_equal(clip_embed_pixels(m, g->images, N, ei), 0);
    assert_int_equal(clip_embed_tokens(m, g->tokens, N, et), 0);
    golden_close("embed_pixels (inference)", ei, fi, (size_t)N * D);
    golden_close("embed_tokens (inference)", et, ft, (size_t)N * D);
    /* one caption alone runs a shorter pass: same features */
    assert_int_equal(clip_embed_tokens(m, g->tokens, 1, et), 0);
    golden_close("embed_tokens (caption 1 alone)", et, ft, (size_t)D);
    free(ei), free(et), free(fi), free(ft);
    nn_arena_free(&a);
}

static void test_tokens(void **state) {
    golden_ctx *g = *state;
    char *p = golden("captions.txt");
    char *text = t2i_read_file(p, NULL, 0);
    assert_non_null(text);
    free(p);
    const char *caps[4];
    int n = 0;
    for (char *s = strtok(text, "\n"); s && n < 4; s = strtok(NULL, "\n")) caps[n++] = s;
    assert_int_equal(n, 4);
    int ctx = g->m->cfg.context_length;
    int32_t *tok = t2i_malloc((size_t)4 * ctx * sizeof(int32_t));
    assert_int_equal(clip_tokenize(g->m, caps, 4, tok), 0);
    for (int i = 0; i < 4 * ctx; i++)
        if (tok[i] != g->tokens[i]) fail_msg("caption %d position %d: %d vs %d", i / ctx, i % ctx, tok[i], g->tokens[i]);
    /* and the text tower on our own tokens: the golden features */
    float *ft = t2i_malloc((size_t)4 * g->D * sizeof(float));
    assert_int_equal(clip_embed_texts(g->m, caps, 4, ft), 0);
    float *x = read_tensor(&g->exp, "text_features_normalized", NULL);
    golden_close("embed_texts(captions.txt)", ft, x, (size_t)4 * g->D);
    free(x), free(ft), free(tok), free(text);
}

/* ---- the same weights under Hugging Face names ---- */

static void put(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data) {
    st_writer_add_f32(w, name, ST_F32, ndim, shape, data);
}

/* Renames every golden tensor by hand (independently of clip_load.c's table). */
static void write_hf(const char *path, const st_file *src) {
    st_writer *w = st_writer_new();
    st_writer_meta(w, "format", "pt");
    char name[256];
    for (int i = 0; i < src->n; i++) {
        const st_tensor *t = &src->t[i];
        float *x = t2i_malloc((t->numel ? t->numel : 1) * sizeof(float));
        assert_int_equal(st_read_f32(src, t, x, t->numel), 0);
        const char *s = t->name;
        int64_t shape[4];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        const char *tower = strncmp(s, "visual.", 7) == 0 ? "vision_model" : "text_model";
        const char *rb = strstr(s, "resblocks.");
        if (rb) {
            int l = atoi(rb + 10);
            const char *rest = strchr(rb + 10, '.') + 1;
            char pre[96];
            snprintf(pre, sizeof pre, "%s.encoder.layers.%d.", tower, l);
            if (strcmp(rest, "attn.in_proj_weight") == 0 || strcmp(rest, "attn.in_proj_bias") == 0) {
                int isw = rest[13] == 'w';
                int64_t C = t->shape[0] / 3;
                int64_t sh[2] = {C, isw ? t->shape[1] : 0};
                size_t part = t->numel / 3;
                const char *qkv = "qkv";
                for (int k = 0; k < 3; k++) {
                    snprintf(name, sizeof name, "%sself_attn.%c_proj.%s", pre, qkv[k], isw ? "weight" : "bias");
                    put(w, name, isw ? 2 : 1, sh, x + k * part);
                }
            } else {
                static const char *map[][2] = {{"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."},
                                               {"attn.out_proj.", "self_attn.out_proj."}, {"mlp.c_fc.", "mlp.fc1."},
                                               {"mlp.c_proj.", "mlp.fc2."}};
                int done = 0;
                for (int k = 0; k < 5 && !done; k++) {
                    size_t n = strlen(map[k][0]);
                    if (strncmp(rest, map[k][0], n) == 0) {
                        snprintf(name, sizeof name, "%s%s%s", pre, map[k][1], rest + n);
                        put(w, name, t->ndim, shape, x);
                        done = 1;
                    }
                }
                assert_true(done);
            }
        } else if (strcmp(s, "visual.proj") == 0 || strcmp(s, "text_projection") == 0) {
            int64_t r = t->shape[0], c = t->shape[1], sh[2] = {c, r};
            float *tr = t2i_malloc(t->numel * sizeof(float));
            for (int64_t i2 = 0; i2 < r; i2++)
                for (int64_t j = 0; j < c; j++) tr[j * r + i2] = x[i2 * c + j];
            put(w, s[0] == 'v' ? "visual_projection.weight" : "text_projection.weight", 2, sh, tr);
            free(tr);
        } else {
            static const char *map[][2] = {
                {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
                {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
                {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
                {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"},
                {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"},
                {"visual.ln_post.weight", "vision_model.post_layernorm.weight"},
                {"visual.ln_post.bias", "vision_model.post_layernorm.bias"},
                {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
                {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
                {"ln_final.weight", "text_model.final_layer_norm.weight"},
                {"ln_final.bias", "text_model.final_layer_norm.bias"},
                {"logit_scale", "logit_scale"},
            };
            int done = 0;
            for (size_t k = 0; k < sizeof map / sizeof map[0] && !done; k++)
                if (strcmp(s, map[k][0]) == 0) {
                    put(w, map[k][1], t->ndim, shape, x);
                    done = 1;
                }
            if (!done) fail_msg("unmapped golden tensor %s", s);
        }
        free(x);
    }
    /* HF checkpoints of that era carry position_ids buffers: must be ignored */
    float ids[77];
    for (int i = 0; i < 77; i++) ids[i] = (float)i;
    put(w, "text_model.embeddings.position_ids", 2, (int64_t[]){1, 77}, ids);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
}

static void test_hf_names(void **state) {
    golden_ctx *g = *state;
    int N = g->N, D = g->D;
    char *dir = tu_tmpdir();
    char *wp = golden("weights.safetensors");
    st_file src;
    assert_int_equal(st_open(&src, wp), 0);
    char *hp = t2i_asprintf("%s/model.safetensors", dir), *cp = t2i_asprintf("%s/config.json", dir);
    write_hf(hp, &src);
    st_close(&src);
    const char *cfg = "{\"architectures\": [\"CLIPModel\"], \"projection_dim\": 32,"
                      " \"text_config\": {\"hidden_size\": 8, \"num_attention_heads\": 2, \"hidden_act\": \"quick_gelu\","
                      " \"layer_norm_eps\": 1e-05},"
                      " \"vision_config\": {\"hidden_size\": 64, \"num_attention_heads\": 4, \"hidden_act\": \"quick_gelu\"}}";
    assert_int_equal(t2i_write_file_atomic(cp, cfg, strlen(cfg)), 0);
    float *ref_i = t2i_malloc((size_t)N * D * sizeof(float)), *ref_t = t2i_malloc((size_t)N * D * sizeof(float));
    float *hi = t2i_malloc((size_t)N * D * sizeof(float)), *ht = t2i_malloc((size_t)N * D * sizeof(float));
    assert_int_equal(clip_embed_pixels(g->m, g->images, N, ref_i), 0);
    assert_int_equal(clip_embed_tokens(g->m, g->tokens, N, ref_t), 0);

    clip_model *h = clip_load_ex(hp, NULL, 1);
    if (!h) fail_msg("%s", t2i_error_msg());
    assert_int_equal(h->cfg.vision_heads, 4);
    assert_int_equal(h->cfg.transformer_heads, 2);
    assert_int_equal(h->cfg.embed_dim, 32);
    assert_int_equal(h->cfg.vision_layers, 2);
    assert_int_equal(h->cfg.transformer_layers, 2);
    /* every parameter identical to the OpenAI-named load */
    assert_int_equal(h->ps.total, g->m->ps.total);
    for (int i = 0; i < h->ps.n; i++)
        if (memcmp(nn_params_val(&h->ps, i), nn_params_val(&g->m->ps, i), h->ps.p[i].numel * sizeof(float)))
            fail_msg("Hugging Face load differs in %s", h->ps.p[i].name);
    assert_int_equal(clip_embed_pixels(h, g->images, N, hi), 0);
    assert_int_equal(clip_embed_tokens(h, g->tokens, N, ht), 0);
    assert_memory_equal(hi, ref_i, (size_t)N * D * sizeof(float));
    assert_memory_equal(ht, ref_t, (size_t)N * D * sizeof(float));
    /* no tokenizer: embedding text by string is a clear error */
    const char *cap = "a photo of a cat";
    assert_int_equal(clip_embed_texts(h, &cap, 1, ht), -1);
    assert_non_null(strstr(t2i_error_msg(), "vocab"));
    clip_free(h);

    /* without config.json, build_model's width / 64 gives the 8-wide text tower no head: an
     * error that says where the count goes, not a guess that would change the features */
    remove(cp);
    h = clip_load_ex(hp, NULL, 1);
    assert_null(h);
    if (!strstr(t2i_error_msg(), "cannot infer the attention heads of the 8-wide text tower")) fail_msg("%s", t2i_error_msg());
    assert_non_null(strstr(t2i_error_msg(), "num_attention_heads in a config.json"));

    /* gelu from config.json is honoured (features change too) */
    const char *cfg2 = "{\"text_config\": {\"num_attention_heads\": 2, \"hidden_act\": \"gelu\"},"
                       " \"vision_config\": {\"num_attention_heads\": 4, \"hidden_act\": \"gelu\"}}";
    assert_int_equal(t2i_write_file_atomic(cp, cfg2, strlen(cfg2)), 0);
    h = clip_load_ex(hp, NULL, 1);
    assert_non_null(h);
    assert_int_equal(h->cfg.act, NN_ACT_GELU_ERF);
    clip_free(h);

    free(ref_i), free(ref_t), free(hi), free(ht), free(hp), free(cp), free(wp);
    tu_rmtree(dir);
    free(dir);
}

/* ---- preprocessing ---- */

static void test_preprocess_golden(void **state) {
    golden_ctx *g = *state;
    const st_tensor *t = st_find(&g->inp, "pixels_u8");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_U8);
    size_t n = 32 * 32 * 3;
    float *pre = t2i_malloc(3 * n * sizeof(float) * 4);
    for (int i = 0; i < 4; i++) {
        t2i_image img = {32, 32, 3, (uint8_t *)t->data + i * n};
        clip_preprocess_u8(pre + i * n, &img, 32);
    }
    golden_close("preprocess(pixels_u8)", pre, g->images, 4 * n);
    /* the [-1, 1] float path: u8 -> float -> quantised back -> same */
    float *m11 = t2i_malloc(n * sizeof(float)), *pre2 = t2i_malloc(n * sizeof(float));
    t2i_image img0 = {32, 32, 3, (uint8_t *)t->data};
    t2i_image_to_chw(m11, &img0);
    clip_preprocess_f32(pre2, m11, 3, 32, 32, 32);
    assert_memory_equal(pre2, pre, n * sizeof(float));
    clip_normalize_m11(pre2, m11, 32);
    tu_assert_close("normalize_m11", pre2, pre, n, 1e-5f, 0);
    free(pre), free(m11), free(pre2);
}

static void test_preprocess_photo(void **state) {
    (void)state;
    char *rp = tu_path("data/clip_ref.safetensors"), *ip = tu_path("data/img/clip_src_300x200.png");
    st_file f;
    assert_int_equal(st_open(&f, rp), 0);
    t2i_image img;
    assert_int_equal(t2i_image_load(&img, ip, 3), 0);
    int sizes[2] = {64, 37};
    for (int k = 0; k < 2; k++) {
        int R = sizes[k];
        char name[32];
        snprintf(name, sizeof name, "pre_%d", R);
        size_t n;
        float *want = read_tensor(&f, name, &n);
        assert_int_equal(n, (size_t)3 * R * R);
        float *got = t2i_malloc(n * sizeof(float));
        clip_preprocess_u8(got, &img, R);
        size_t exact = 0;
        float worst = 0;
        for (size_t i = 0; i < n; i++) {
            float d = fabsf(got[i] - want[i]);
            exact += d <= 1e-6f;
            if (d > worst) worst = d;
        }
        print_message("  300x200 -> %d: %.2f%% within 1e-6, max diff %.3g\n", R, 100.0 * exact / n, worst);
        /* Pillow-exact resize: identical values, except a rare 1/255 rounding step */
        assert_true(worst <= 1.0f / 255.0f / 0.26f + 1e-6f);
        assert_true(exact >= n * 999 / 1000);
        /* float path from [-1, 1] at another size: same as the u8 path */
        float *m11 = t2i_malloc((size_t)3 * img.w * img.h * sizeof(float)), *got2 = t2i_malloc(n * sizeof(float));
        t2i_image_to_chw(m11, &img);
        clip_preprocess_f32(got2, m11, 3, img.h, img.w, R);
        assert_memory_equal(got2, got, n * sizeof(float));
        free(m11), free(got2), free(want), free(got);
    }
    t2i_image_free(&img);
    st_close(&f);
    free(rp), free(ip);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),       cmocka_unit_test(test_forward),
        cmocka_unit_test(test_tokens),       cmocka_unit_test(test_hf_names),
        cmocka_unit_test(test_preprocess_golden),
    };
    const struct CMUnitTest solo[] = {cmocka_unit_test(test_preprocess_photo)};
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc | cmocka_run_group_tests(solo, NULL, NULL);
}
