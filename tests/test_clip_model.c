/* test_clip_model.c - CLIP training maths and robustness.
 *
 *   - gradients of the symmetric InfoNCE loss w.r.t. every parameter of both towers and
 *     the logit scale, by central differences on a tiny model (LayerNorm/bias terms
 *     perturbed so that none is trivially zero), plain and multi-positive (pairs with
 *     equal captions as positives of each other; its loss value against a direct
 *     double-precision evaluation);
 *   - PyTorch: tests/ref/gen_clip_ref.py trains a tiny CLIP (its own OpenAI-architecture
 *     module, checked there against openai's golden outputs) for 3 AdamW steps; here the
 *     same initial weights and batch give the same step-1 gradients, the same three losses
 *     (1e-4 relative) and in-batch accuracies, and the same final weights (1e-4; the
 *     attention key biases, whose gradient is rounding noise, within 6e-3);
 *   - the convolutional stem (BatchNorm, ReLU): the same three PyTorch steps (its gradients,
 *     losses, final weights and BatchNorm running statistics), then the trained model's
 *     image features in inference (running statistics, PyTorch's eval()) against PyTorch's,
 *     and unlike those of a training pass. (Its layers have their own finite-difference checks in
 *     test_grad.c; on the composed tower, float32 central differences are too noisy to
 *     judge: they drifted from 5.4e-3 to 4.3e-3 over steps 3e-2..4e-4 for one weight whose
 *     gradient, 2.8248e-3, PyTorch's float64 autograd of the same weights and batch
 *     reproduces to all printed digits);
 *   - test-time flipping: an image and its mirror image embed alike, as the normalised sum
 *     of their plain embeddings;
 *   - changing the image resolution: the grid position embeddings resampled as PyTorch's
 *     bilinear interpolate (hand-computed values), every other weight kept, training works;
 *   - t2i checkpoints: save/load round trip (f32 exact, bf16 to bf16 rounding) with the
 *     learned vocabulary travelling in the metadata;
 *   - bad inputs: a weights file missing a tensor or with a wrong shape (OpenAI and Hugging
 *     Face names) -> one-line error naming the file, the tensor and both shapes; a file
 *     that is no CLIP; a t2i checkpoint of another model; invalid UTF-8 in a caption; a
 *     10 MB caption (truncated to the context, same features as its start); a text over
 *     the tokenizer's limit (clean error); an embedding size that does not fit.
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
#include "optim.h"
#include "safetensors.h"
#include "testutil.h"

static void tiny_config(clip_config *c) {
    clip_config_default(c);
    c->embed_dim = 8;
    c->image_resolution = 8, c->vision_patch_size = 4;
    c->vision_width = 8, c->vision_layers = 2, c->vision_heads = 2;
    c->context_length = 6, c->vocab_size = 16;
    c->transformer_width = 8, c->transformer_layers = 2, c->transformer_heads = 2;
}

static void perturb(clip_model *m, t2i_rng *r) {
    for (int i = 0; i < m->ps.n; i++) {
        const char *n = m->ps.p[i].name;
        if (strstr(n, "bias") || strstr(n, "ln_"))
            for (size_t k = 0; k < m->ps.p[i].numel; k++) nn_params_val(&m->ps, i)[k] += 0.2f * t2i_rng_normal(r);
    }
}

/* m built from cfg, initialised and perturbed from r seeded with seed (r goes on from there). */
static void tiny_model(clip_model *m, const clip_config *cfg, t2i_rng *r, uint64_t seed) {
    clip_model_build(m, cfg);
    t2i_rng_seed(r, seed);
    clip_model_init(m, r);
    perturb(m, r);
}

/* ------------------------------------------------------------- gradcheck ---- */

typedef struct {
    clip_model *m;
    nn_arena *a;
    float *images;
    int32_t *tokens;
    int N;
    const int *group;
    float loss, dloss;
    float **dx; /* per parameter gradient buffers of the checker */
} gc_ctx;

static void gc_fwd(void *p) {
    gc_ctx *c = p;
    clip_model *m = c->m;
    int D = m->cfg.embed_dim;
    nn_arena_reset(c->a);
    float *fi = nn_arena_floats(c->a, (size_t)c->N * D), *ft = nn_arena_floats(c->a, (size_t)c->N * D);
    /* with tapes: the training forward (a stem's BatchNorm on the batch statistics) */
    clip_vis_tape vt;
    clip_txt_tape tt;
    clip_image_forward(m, &vt, c->a, c->images, c->N, fi);
    clip_text_forward(m, &tt, c->a, c->tokens, c->N, ft);
    c->loss = clip_contrastive_loss(NULL, NULL, NULL, NULL, c->a, fi, ft, c->group, c->N, D,
                                    *nn_params_val(&m->ps, m->logit_scale));
}

static void gc_bwd(void *p) {
    gc_ctx *c = p;
    clip_model *m = c->m;
    clip_train_grads(m, c->a, c->images, c->tokens, c->group, c->N, NULL);
    for (int i = 0; i < m->ps.n; i++) {
        const float *g = nn_params_grad(&m->ps, i);
        for (size_t k = 0; k < m->ps.p[i].numel; k++) c->dx[i][k] += c->dloss * g[k];
    }
}

static void make_tokens(int32_t *tok, int N, int ctx, int V, t2i_rng *r) {
    memset(tok, 0, (size_t)N * ctx * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        int e = 2 + i % (ctx - 2);
        tok[i * ctx] = V - 2;
        for (int t = 1; t < e; t++) tok[i * ctx + t] = 1 + (int)t2i_rng_below(r, (uint64_t)V - 3);
        tok[i * ctx + e] = V - 1;
    }
}

static void test_gradcheck(void **state) {
    (void)state;
    clip_config cfg;
    tiny_config(&cfg);
    float h = 1e-2f;
    clip_model m;
    t2i_rng r;
    tiny_model(&m, &cfg, &r, 5);
    /* embeddings at O(1) scale: with OpenAI's 0.02 / 0.01 a step h = 1e-2 would not be small
     * and ln_final would amplify the text tower's tiny outputs into curvature */
    t2i_rng_fill_normal(&r, nn_params_val(&m.ps, m.tok_emb), m.ps.p[m.tok_emb].numel, 0.0f, 0.5f);
    t2i_rng_fill_normal(&r, nn_params_val(&m.ps, m.tpos), m.ps.p[m.tpos].numel, 0.0f, 0.5f);
    *nn_params_val(&m.ps, m.logit_scale) = 1.5f;
    int N = 4, R = cfg.image_resolution;
    nn_arena a;
    nn_arena_init(&a);
    gc_ctx c = {&m, &a, tu_randn(&r, (size_t)N * 3 * R * R, 1.0f), t2i_malloc((size_t)N * cfg.context_length * 4), N};
    make_tokens(c.tokens, N, cfg.context_length, cfg.vocab_size, &r);
    tu_var *vars = t2i_calloc((size_t)m.ps.n, sizeof *vars);
    c.dx = t2i_calloc((size_t)m.ps.n, sizeof(float *));
    for (int i = 0; i < m.ps.n; i++) {
        c.dx[i] = tu_zeros(m.ps.p[i].numel);
        vars[i] = (tu_var){m.ps.p[i].name, nn_params_val(&m.ps, i), c.dx[i], m.ps.p[i].numel};
    }
    /* a wrong term is off by O(gradient); typical gradients here are 1e-2..1 */
    int fails = tu_gradcheck("clip InfoNCE", &c, gc_fwd, gc_bwd, vars, m.ps.n, &c.loss, &c.dloss, 1, h, 2e-4f, 2e-2f);
    assert_int_equal(fails, 0);
    /* the logit scale's gradient is not trivially zero */
    assert_true(fabsf(c.dx[m.logit_scale][0]) > 1e-3f);
    /* multi-positive: pairs 0 and 2 share a caption */
    static const int group[4] = {0, 1, 0, 3};
    c.group = group;
    for (int i = 0; i < m.ps.n; i++) memset(c.dx[i], 0, m.ps.p[i].numel * sizeof(float));
    fails = tu_gradcheck("clip multi-positive InfoNCE", &c, gc_fwd, gc_bwd, vars, m.ps.n, &c.loss, &c.dloss, 1, h,
                         2e-4f, 2e-2f);
    assert_int_equal(fails, 0);
    for (int i = 0; i < m.ps.n; i++) free(c.dx[i]);
    free(c.dx), free(vars), free(c.images), free(c.tokens);
    nn_arena_free(&a);
    clip_model_free(&m);
}

/* The loss value against a direct double-precision evaluation of
 *   L = 1/2N sum_i [ sum_{j in P(i)} -log softmax_row_i(j) / |P(i)|
 *                  + sum_{j in P(i)} -log softmax_col_i(j) / |P(i)| ],
 * with groups that make P(i) = {i} (must equal the plain loss bit for bit) and with
 * duplicates (must differ from the plain loss by more than rounding). */
static double ref_multi_positive(const float *img, const float *txt, const int *g, int N, int D, float s) {
    double *l = t2i_malloc((size_t)N * N * sizeof(double)), loss = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double dot = 0, ni = 0, nj = 0;
            for (int k = 0; k < D; k++) {
                dot += (double)img[i * D + k] * txt[j * D + k];
                ni += (double)img[i * D + k] * img[i * D + k], nj += (double)txt[j * D + k] * txt[j * D + k];
            }
            l[i * N + j] = exp(s) * dot / sqrt(ni * nj);
        }
    for (int dir = 0; dir < 2; dir++)
        for (int i = 0; i < N; i++) {
            double z = 0;
            int np = 0;
            for (int j = 0; j < N; j++) z += exp(dir ? l[j * N + i] : l[i * N + j]), np += g[j] == g[i];
            for (int j = 0; j < N; j++)
                if (g[j] == g[i]) loss += (log(z) - (dir ? l[j * N + i] : l[i * N + j])) / np;
        }
    free(l);
    return loss / (2.0 * N);
}

static void test_multi_positive_loss(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 11);
    int N = 6, D = 5;
    float *img = tu_randn(&r, (size_t)N * D, 1.0f), *txt = tu_randn(&r, (size_t)N * D, 1.0f), s = 2.0f;
    nn_arena a;
    nn_arena_init(&a);
    static const int distinct[6] = {5, 4, 3, 2, 1, 0}, dups[6] = {7, 1, 7, 2, 1, 7};
    float plain = clip_contrastive_loss(NULL, NULL, NULL, NULL, &a, img, txt, NULL, N, D, s);
    float same = clip_contrastive_loss(NULL, NULL, NULL, NULL, &a, img, txt, distinct, N, D, s);
    float multi = clip_contrastive_loss(NULL, NULL, NULL, NULL, &a, img, txt, dups, N, D, s);
    double ref_plain = ref_multi_positive(img, txt, distinct, N, D, s), ref = ref_multi_positive(img, txt, dups, N, D, s);
    print_message("  plain %.6f (ref %.6f), duplicates %.6f (ref %.6f)\n", plain, ref_plain, multi, ref);
    assert_true(plain == same);
    assert_true(fabs(plain - ref_plain) < 1e-5 * ref_plain);
    assert_true(fabs(multi - ref) < 1e-5 * ref);
    assert_true(fabs(multi - plain) > 1e-2);
    /* accuracy counts an argmax on any positive: identical features in one group -> 1 */
    float *same_img = t2i_malloc((size_t)N * D * sizeof(float)), acc = 0;
    for (int i = 0; i < N; i++) memcpy(same_img + i * D, img + (dups[i] == 7 ? 0 : dups[i]) * D, (size_t)D * sizeof(float));
    clip_contrastive_loss(NULL, NULL, NULL, &acc, &a, same_img, same_img, dups, N, D, 4.0f);
    assert_true(acc == 1.0f);
    free(img), free(txt), free(same_img);
    nn_arena_free(&a);
}

/* ------------------------------------------------------------- PyTorch ---- */

static void load_prefixed(clip_model *m, const st_file *f, const char *prefix) {
    char name[400];
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        if (st_load_f32(f, name, nn_params_val(&m->ps, i), p->ndim, shape) != 0) fail_msg("%s", t2i_error_msg());
    }
}

static void compare_prefixed(clip_model *m, const st_file *f, const char *prefix, int grads, float atol, float rtol) {
    char name[400];
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        if (grads && !p->trainable) continue; /* BatchNorm running statistics */
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        float *want = tu_st_read_f32(f, name, NULL);
        const float *got = grads ? nn_params_grad(&m->ps, i) : nn_params_val(&m->ps, i);
        size_t w = p->numel / 3;
        if (!grads && strstr(p->name, "attn.in_proj_bias")) {
            /* The key bias adds q.b_k to every score of a query, which softmax ignores: its
             * gradient is 0 in exact arithmetic and rounding noise in both implementations,
             * which Adam scales to steps of up to lr (1e-3) in either direction. Queries and
             * values are compared as the rest; the key part only within 3 steps of 2 lr. */
            tu_assert_close(name, got, want, w, atol, rtol);
            tu_assert_close(name, got + 2 * w, want + 2 * w, w, atol, rtol);
            tu_assert_close(name, got + w, want + w, w, 6e-3f, 0.0f);
        } else {
            tu_assert_close(name, got, want, p->numel, atol, rtol);
        }
        free(want);
    }
}

/* A config as a t2i checkpoint holds it: read over zeros, then checked (absent keys keep the
 * value they have, so a missing size shows as 0 and act as "none"). */
static int read_clip_config(const char *json) {
    clip_config c;
    memset(&c, 0, sizeof c);
    if (clip_config_from_json(&c, json) != 0) return -1;
    return clip_config_check(&c);
}

/* config -> JSON -> config is exact and writes the JSON back unchanged; every field refuses
 * a damaged value by name; an absent key keeps the caller's value. */
static void test_config_table(void **state) {
    (void)state;
    clip_config c, d;
    tiny_config(&c);
    c.act = NN_ACT_GELU_ERF, c.ln_eps = 1e-6f;
    char *j = clip_config_to_json(&c);
    memset(&d, 0, sizeof d);
    assert_int_equal(clip_config_from_json(&d, j), 0);
    assert_memory_equal(&c, &d, sizeof c);
    char *j2 = clip_config_to_json(&d);
    assert_string_equal(j2, j);
    assert_non_null(strstr(j, "\"mlp_ratio\":4,\"act\":\"gelu\",\"ln_eps\":1e-06,\"vision_stem\":0,\"vision_stem_extra\":0}"));
    /* absent: the files of before the stem (and of before its extra convolutions) */
    tu_config_refusals(j, read_clip_config, "act vision_stem vision_stem_extra");
    assert_int_equal(clip_config_from_json(&d, "{\"vision_heads\":1}"), 0);
    assert_int_equal(d.vision_heads, 1);
    assert_int_equal(d.vision_width, c.vision_width);
    assert_int_equal(clip_config_from_json(&d, "{\"vision_heads\":0}"), -1);
    assert_non_null(strstr(t2i_error_msg(), "CLIP config: 'vision_heads' = 0 is outside [1, 1024]"));
    free(j), free(j2);
}

/* The reference run under prefix pre ("" or "stem."), its config in metadata key cfg_key. */
static void torch_training(const char *pre, const char *cfg_key) {
    char *path = tu_path("data/clip_ref.safetensors"), key[200];
    st_file f;
    assert_int_equal(st_open(&f, path), 0);
    clip_config cfg;
    clip_config_default(&cfg);
    assert_int_equal(clip_config_from_json(&cfg, st_meta(&f, cfg_key)), 0);
    assert_int_equal(clip_config_check(&cfg), 0);
    assert_int_equal(cfg.vision_layers, 2);
    assert_int_equal(cfg.transformer_heads, 2);
    clip_model m;
    clip_model_build(&m, &cfg);
    snprintf(key, sizeof key, "%sinit.", pre);
    load_prefixed(&m, &f, key);
    size_t n;
    snprintf(key, sizeof key, "%simages", pre);
    float *images = tu_st_read_f32(&f, key, &n);
    snprintf(key, sizeof key, "%stokens", pre);
    const st_tensor *tt = st_find(&f, key);
    assert_non_null(tt);
    int N = (int)tt->shape[0];
    assert_int_equal(tt->shape[1], cfg.context_length);
    int32_t *tokens = t2i_malloc(tt->numel * sizeof(int32_t));
    assert_int_equal(st_read_i32(&f, tt, tokens, tt->numel), 0);
    snprintf(key, sizeof key, "%slosses", pre);
    float *losses = tu_st_read_f32(&f, key, NULL);
    snprintf(key, sizeof key, "%saccs", pre);
    float *accs = tu_st_read_f32(&f, key, NULL);
    nn_optim opt = nn_adamw(1e-3f, 0.9f, 0.98f, 1e-6f, 0.2f);
    nn_arena a;
    nn_arena_init(&a);
    for (int step = 0; step < 3; step++) {
        float acc;
        float loss = clip_train_grads(&m, &a, images, tokens, NULL, N, &acc);
        print_message("  %sstep %d: loss %.6f (torch %.6f), accuracy %.3f (torch %.3f)\n", pre, step + 1, loss,
                      losses[step], acc, accs[step]);
        assert_true(fabsf(loss - losses[step]) <= 1e-4f * fabsf(losses[step]));
        assert_true(fabsf(acc - accs[step]) < 1e-6f);
        if (step == 0) {
            snprintf(key, sizeof key, "%sgrad.", pre);
            compare_prefixed(&m, &f, key, 1, 1e-5f, 1e-3f);
        }
        nn_optim_step(&opt, &m.ps, 1e-3f);
        clip_clamp_logit_scale(&m);
    }
    snprintf(key, sizeof key, "%sfinal.", pre);
    compare_prefixed(&m, &f, key, 0, 1e-4f, 0.0f); /* with a stem: the running statistics too */
    /* and training moved the weights well beyond that tolerance */
    snprintf(key, sizeof key, "%sinit.visual.proj", pre);
    float *w0 = tu_st_read_f32(&f, key, &n);
    assert_true(tu_max_abs_diff(w0, nn_params_val(&m.ps, m.proj), n, NULL) > 1e-3f);
    if (cfg.vision_stem > 0) {
        /* inference (no tape) normalises by the running statistics, as PyTorch's eval() */
        snprintf(key, sizeof key, "%seval_image_features", pre);
        float *want = tu_st_read_f32(&f, key, &n), *got = tu_zeros(n);
        assert_int_equal((int)n, N * cfg.embed_dim);
        clip_image_forward(&m, NULL, &a, images, N, got);
        tu_assert_close("eval-mode image features", got, want, n, 1e-4f, 1e-3f);
        /* and they are not the training-mode features (batch statistics) */
        clip_vis_tape vt;
        float *train = tu_zeros(n);
        clip_image_forward(&m, &vt, &a, images, N, train);
        assert_true(tu_max_abs_diff(train, want, n, NULL) > 1e-2f);
        free(want), free(got), free(train);
    }
    free(w0), free(images), free(tokens), free(losses), free(accs), free(path);
    nn_arena_free(&a);
    clip_model_free(&m);
    st_close(&f);
}

static void test_torch_training(void **state) {
    (void)state;
    torch_training("", "config");
}

/* The convolutional stem (BatchNorm in training mode, then eval mode) against PyTorch. */
static void test_torch_training_stem(void **state) {
    (void)state;
    torch_training("stem.", "stem_config");
}

/* ------------------------------------------------------- test-time flipping ---- */

/* dst = src (n, 3, R, R) with every row reversed. */
static void mirror(float *dst, const float *src, int n, int R) {
    for (int r = 0; r < n * 3 * R; r++)
        for (int j = 0; j < R; j++) dst[r * R + j] = src[r * R + R - 1 - j];
}

/* With clip_set_tta_flip an image and its mirror image get the same embedding (to rounding),
 * which is normalise(e(x) + e(mirror x)) of the plain embeddings, while those two differ;
 * 40 images, so that the second batch of CLIP_EMBED_BATCH is a partial one; with and
 * without the convolutional stem. */
static void test_tta_flip(void **state) {
    (void)state;
    for (int stem = 0; stem <= 1; stem++) {
        clip_config cfg;
        tiny_config(&cfg);
        if (stem) cfg.vision_stem = 4;
        clip_model m;
        t2i_rng r;
        tiny_model(&m, &cfg, &r, 11);
        const int n = 40, R = cfg.image_resolution, D = cfg.embed_dim;
        size_t px = (size_t)n * 3 * R * R;
        float *x = malloc(px * sizeof(float)), *xm = malloc(px * sizeof(float));
        for (size_t k = 0; k < px; k++) x[k] = 2.0f * t2i_rng_uniform(&r) - 1.0f;
        mirror(xm, x, n, R);
        float *e = malloc((size_t)n * D * sizeof(float)), *em = malloc((size_t)n * D * sizeof(float));
        float *t = malloc((size_t)n * D * sizeof(float)), *tm = malloc((size_t)n * D * sizeof(float));
        assert_int_equal(clip_embed_pixels(&m, x, n, e), 0);
        assert_int_equal(clip_embed_pixels(&m, xm, n, em), 0);
        clip_set_tta_flip(&m, 1);
        assert_int_equal(clip_embed_pixels(&m, x, n, t), 0);
        assert_int_equal(clip_embed_pixels(&m, xm, n, tm), 0);
        double plain = 0.0;
        for (int i = 0; i < n; i++) {
            double nrm = 0.0;
            for (int d = 0; d < D; d++) {
                double v = (double)e[i * D + d] + em[i * D + d];
                nrm += v * v;
            }
            for (int d = 0; d < D; d++) {
                int k = i * D + d;
                assert_float_equal(t[k], ((double)e[k] + em[k]) / sqrt(nrm), 2e-6);
                assert_float_equal(t[k], tm[k], 2e-6);
                plain = fmax(plain, fabs(e[k] - em[k]));
            }
        }
        assert_true(plain > 1e-2); /* the model itself is not mirror-symmetric */
        free(x), free(xm), free(e), free(em), free(t), free(tm);
        clip_model_free(&m);
    }
}

/* ---------------------------------------------------------- checkpoints ---- */

static const char *const corpus[] = {"a red dress", "a photo of a blue sneaker", "an orange bag",
                                     "a green coat in green", "a white shirt", "a red sneaker"};

/* A tiny model with a learned vocabulary (the vocabulary decides vocab_size). */
static void tiny_with_vocab(clip_model *m, int seed) {
    char *merges = clip_tok_train(corpus, NULL, 6, 540, NULL);
    assert_non_null(merges);
    clip_tok *tok = clip_tok_from_merges(merges, strlen(merges), -1, "test");
    assert_non_null(tok);
    clip_config cfg;
    tiny_config(&cfg);
    cfg.context_length = 8;
    cfg.vocab_size = (int)clip_tok_vocab_size(tok);
    t2i_rng r;
    tiny_model(m, &cfg, &r, (uint64_t)seed);
    m->vocab = merges;
    assert_int_equal(clip_set_tokenizer(m, tok, "test"), 0);
}

static void test_checkpoint_roundtrip(void **state) {
    (void)state;
    clip_model m;
    tiny_with_vocab(&m, 3);
    char *dir = tu_tmpdir();
    char *p32 = t2i_asprintf("%s/c32.safetensors", dir), *p16 = t2i_asprintf("%s/c16.safetensors", dir);
    assert_int_equal(clip_save(&m, p32, "{\"step\":7}", 0, 0), 0);
    assert_int_equal(clip_save(&m, p16, NULL, 0, 1), 0);
    clip_model *l = clip_load(p32, NULL); /* vocabulary from the metadata */
    if (!l) fail_msg("%s", t2i_error_msg());
    assert_int_equal(l->ps.total, m.ps.total);
    assert_memory_equal(l->ps.data, m.ps.data, m.ps.total * sizeof(float));
    /* a loaded model is packed for inference: the same features as the packed original */
    assert_int_equal(l->txt.packed_forward, 1);
    float e1[16], e2[16], e0[16];
    assert_int_equal(clip_embed_texts(&m, corpus, 2, e0), 0);
    clip_text_pack(&m);
    assert_int_equal(clip_embed_texts(&m, corpus, 2, e1), 0);
    nn_tf_unpack(&m.txt);
    assert_int_equal(clip_embed_texts(l, corpus, 2, e2), 0);
    assert_memory_equal(e1, e2, sizeof e1);
    tu_assert_close("packed text features", e1, e0, 16, 1e-5f, 1e-4f);
    clip_free(l);
    l = clip_load(p16, NULL);
    assert_non_null(l);
    for (size_t i = 0; i < m.ps.total; i++)
        assert_true(l->ps.data[i] == t2i_bf16_to_f32(t2i_f32_to_bf16(m.ps.data[i])));
    clip_free(l);
    /* resume path: state comes back */
    clip_model r;
    char *sj = NULL;
    assert_int_equal(clip_load_ckpt(&r, p32, 0, &sj), 0);
    assert_string_equal(sj, "{\"step\":7}");
    free(sj);
    clip_model_free(&r);
    free(p32), free(p16);
    tu_rmtree(dir);
    free(dir);
    clip_model_free(&m);
}

/* ------------------------------------------------------ resolution change ---- */

/* PyTorch's F.interpolate(bilinear, align_corners=False) of [[0, 1], [2, 3]] to 4x4 is
 * x' + 2y' with x', y' in (0, .25, .75, 1), and of a 4x4 ramp x + 4y to 2x2 the means of
 * the 2x2 blocks' centres; a second channel (negated) must stay independent. */
static void test_resample_grid(void **state) {
    (void)state;
    float src[8] = {0, -0, 1, -1, 2, -2, 3, -3}, up[32], ramp[32], down[8];
    const float c[4] = {0, 0.25f, 0.75f, 1};
    clip_resample_grid(src, 2, up, 4, 2);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            assert_float_equal(up[(y * 4 + x) * 2], c[x] + 2 * c[y], 1e-6);
            assert_float_equal(up[(y * 4 + x) * 2 + 1], -(c[x] + 2 * c[y]), 1e-6);
        }
    for (int i = 0; i < 16; i++) ramp[2 * i] = (float)i, ramp[2 * i + 1] = -(float)i;
    clip_resample_grid(ramp, 4, down, 2, 2);
    const float want[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    for (int i = 0; i < 4; i++) {
        assert_float_equal(down[2 * i], want[i], 1e-6);
        assert_float_equal(down[2 * i + 1], -want[i], 1e-6);
    }
    clip_resample_grid(ramp, 4, up, 4, 2); /* same size: a copy */
    assert_memory_equal(up, ramp, sizeof ramp);
}

/* clip_model_set_resolution: 8x8 (2x2 patches of 4) -> 16x16 (4x4); every other weight is
 * kept, the class position too, the grid positions are the bilinear resampling; texts embed
 * as before; the model trains at the new size; a size that is no multiple of the patch is
 * refused and leaves the model as it was. */
static void test_set_resolution(void **state) {
    (void)state;
    clip_model m;
    tiny_with_vocab(&m, 5);
    int W = m.cfg.vision_width;
    size_t total = m.ps.total;
    float *before = malloc(total * sizeof(float));
    memcpy(before, m.ps.data, total * sizeof(float));
    float vpos0[5 * 8];
    size_t *off0 = malloc((size_t)m.ps.n * sizeof(size_t));
    for (int i = 0; i < m.ps.n; i++) off0[i] = m.ps.p[i].offset;
    assert_int_equal(m.ps.p[m.vpos].numel, sizeof vpos0 / sizeof vpos0[0]);
    memcpy(vpos0, nn_params_val(&m.ps, m.vpos), sizeof vpos0);
    float t0[16], t1[16];
    assert_int_equal(clip_embed_texts(&m, corpus, 2, t0), 0);

    assert_int_equal(clip_model_set_resolution(&m, 10), -1);
    assert_non_null(strstr(t2i_error_msg(), "patch size 4"));
    assert_int_equal(m.cfg.image_resolution, 8);
    assert_memory_equal(m.ps.data, before, total * sizeof(float));

    assert_int_equal(clip_model_set_resolution(&m, 16), 0);
    assert_int_equal(m.cfg.image_resolution, 16);
    assert_int_equal(m.ps.p[m.vpos].shape[0], 17);
    for (int i = 0; i < m.ps.n; i++) {
        if (i == m.vpos) continue;
        assert_memory_equal(nn_params_val(&m.ps, i), before + off0[i], m.ps.p[i].numel * sizeof(float));
    }
    const float *vp = nn_params_val(&m.ps, m.vpos);
    assert_memory_equal(vp, vpos0, (size_t)W * sizeof(float));
    const float wt[4][2] = {{1, 0}, {0.75f, 0.25f}, {0.25f, 0.75f}, {0, 1}};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int k = 0; k < W; k++) {
                float e = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) e += wt[y][a] * wt[x][b] * vpos0[(1 + a * 2 + b) * W + k];
                assert_float_equal(vp[(1 + y * 4 + x) * W + k], e, 1e-6);
            }
    assert_int_equal(clip_embed_texts(&m, corpus, 2, t1), 0);
    assert_memory_equal(t0, t1, sizeof t0);

    /* a training step at 16x16 reaches the resampled positions */
    enum { N = 3 };
    float img[N * 3 * 16 * 16];
    int32_t tok[N * 8];
    t2i_rng r;
    t2i_rng_seed(&r, 9);
    for (size_t i = 0; i < sizeof img / sizeof img[0]; i++) img[i] = t2i_rng_normal(&r);
    make_tokens(tok, N, 8, m.cfg.vocab_size, &r);
    nn_arena a;
    nn_arena_init(&a);
    nn_params_ensure_grad(&m.ps);
    nn_params_zero_grad(&m.ps);
    float loss = clip_train_grads(&m, &a, img, tok, NULL, N, NULL);
    assert_true(isfinite(loss));
    const float *g = nn_params_grad(&m.ps, m.vpos);
    int nz = 0;
    for (int i = W; i < 17 * W; i++) nz += g[i] != 0;
    assert_true(nz > 8 * W);
    nn_arena_free(&a);
    free(before), free(off0);
    clip_model_free(&m);
}

/* ----------------------------------------------------------- bad inputs ---- */

/* Writes m's tensors under OpenAI names, skipping `skip`, giving `bad` an extra column and
 * adding a 1-element tensor `extra`. */
static void write_openai(const clip_model *m, const char *path, const char *skip, const char *bad, const char *extra) {
    st_writer *w = st_writer_new();
    for (int i = 0; i < m->ps.n; i++) {
        const nn_param *p = &m->ps.p[i];
        if (skip && strcmp(p->name, skip) == 0) continue;
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        const float *data = m->ps.data + p->offset;
        float *wide = NULL;
        if (bad && strcmp(p->name, bad) == 0) {
            shape[p->ndim - 1] += 1;
            wide = t2i_calloc(p->numel * 2 + 2, sizeof(float));
            data = wide;
        }
        st_writer_add_f32(w, p->name, ST_F32, p->ndim, shape, data);
        free(wide);
    }
    if (extra) st_writer_add_f32(w, extra, ST_F32, 1, (const int64_t[]){1}, m->ps.data);
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"vision_heads\": %d, \"transformer_heads\": %d}", m->cfg.vision_heads,
             m->cfg.transformer_heads);
    st_writer_meta(w, "config", cfg);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
}

static void expect_load_error(const char *path, const char *const *needles, int n) {
    clip_model *m = clip_load_ex(path, NULL, 1);
    assert_null(m);
    const char *msg = t2i_error_msg();
    print_message("  -> %s\n", msg);
    assert_null(strchr(msg, '\n'));
    assert_non_null(strstr(msg, path));
    for (int i = 0; i < n; i++)
        if (!strstr(msg, needles[i])) fail_msg("error '%s' does not mention '%s'", msg, needles[i]);
}

static void test_bad_weights(void **state) {
    (void)state;
    clip_config cfg;
    tiny_config(&cfg);
    clip_model m;
    clip_model_build(&m, &cfg);
    t2i_rng r;
    t2i_rng_seed(&r, 9);
    clip_model_init(&m, &r);
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/w.safetensors", dir);

    write_openai(&m, p, NULL, NULL, NULL);
    clip_model *ok = clip_load_ex(p, NULL, 1);
    if (!ok) fail_msg("%s", t2i_error_msg());
    assert_memory_equal(ok->ps.data, m.ps.data, m.ps.total * sizeof(float));
    clip_free(ok);

    write_openai(&m, p, "transformer.resblocks.1.mlp.c_fc.bias", NULL, NULL);
    expect_load_error(p, (const char *[]){"transformer.resblocks.1.mlp.c_fc.bias", "missing", "[32]"}, 3);
    write_openai(&m, p, NULL, "visual.transformer.resblocks.0.attn.out_proj.weight", NULL);
    expect_load_error(p, (const char *[]){"visual.transformer.resblocks.0.attn.out_proj.weight", "[8, 8]", "[8, 9]"}, 3);
    write_openai(&m, p, NULL, "text_projection", NULL); /* embed_dim inferred 9; visual.proj then mismatches */
    expect_load_error(p, (const char *[]){"visual.proj", "[8, 9]", "[8, 8]"}, 3);
    write_openai(&m, p, "ln_final.weight", NULL, NULL);
    expect_load_error(p, (const char *[]){"ln_final.weight", "missing"}, 2);
    /* a tensor the model does not read (from another model, or a block beyond a config's layer count) */
    write_openai(&m, p, NULL, NULL, "visual.attnpool.c_proj.weight");
    expect_load_error(p, (const char *[]){"'visual.attnpool.c_proj.weight' is not part of", "disagree"}, 2);
    write_openai(&m, p, NULL, NULL, "vocab_size"); /* OpenAI's integer entries are dropped, as build_model does */
    ok = clip_load_ex(p, NULL, 1);
    if (!ok) fail_msg("%s", t2i_error_msg());
    clip_free(ok);
    /* NaN weights, and a logit scale whose exp overflows */
    float *ln = nn_params_val(&m.ps, m.ln_final_w), keep = ln[3];
    ln[3] = NAN;
    write_openai(&m, p, NULL, NULL, NULL);
    expect_load_error(p, (const char *[]){"tensor 'ln_final.weight' holds NaN at element 3"}, 1);
    ln[3] = keep;
    float *ls = nn_params_val(&m.ps, m.logit_scale), keep_ls = *ls;
    *ls = 200;
    write_openai(&m, p, NULL, NULL, NULL);
    expect_load_error(p, (const char *[]){"logit_scale 200 is too large"}, 1);
    *ls = keep_ls;

    /* Hugging Face layout with a wrong q_proj shape names the HF tensor */
    st_writer *w = st_writer_new();
    float z[64 * 64] = {0};
    st_writer_add_f32(w, "vision_model.embeddings.patch_embedding.weight", ST_F32, 4, (int64_t[]){8, 3, 4, 4}, z);
    st_writer_add_f32(w, "vision_model.embeddings.position_embedding.weight", ST_F32, 2, (int64_t[]){5, 8}, z);
    st_writer_add_f32(w, "vision_model.embeddings.class_embedding", ST_F32, 1, (int64_t[]){8}, z);
    st_writer_add_f32(w, "text_projection.weight", ST_F32, 2, (int64_t[]){8, 8}, z);
    st_writer_add_f32(w, "text_model.embeddings.position_embedding.weight", ST_F32, 2, (int64_t[]){6, 8}, z);
    st_writer_add_f32(w, "text_model.embeddings.token_embedding.weight", ST_F32, 2, (int64_t[]){16, 8}, z);
    st_writer_add_f32(w, "vision_model.encoder.layers.0.mlp.fc1.weight", ST_F32, 2, (int64_t[]){32, 8}, z);
    st_writer_add_f32(w, "text_model.encoder.layers.0.mlp.fc1.weight", ST_F32, 2, (int64_t[]){32, 8}, z);
    st_writer_add_f32(w, "vision_model.pre_layrnorm.weight", ST_F32, 1, (int64_t[]){8}, z);
    st_writer_add_f32(w, "vision_model.pre_layrnorm.bias", ST_F32, 1, (int64_t[]){8}, z);
    st_writer_add_f32(w, "vision_model.encoder.layers.0.layer_norm1.weight", ST_F32, 1, (int64_t[]){8}, z);
    st_writer_add_f32(w, "vision_model.encoder.layers.0.layer_norm1.bias", ST_F32, 1, (int64_t[]){8}, z);
    st_writer_add_f32(w, "vision_model.encoder.layers.0.self_attn.q_proj.weight", ST_F32, 2, (int64_t[]){8, 7}, z);
    assert_int_equal(st_writer_save(w, p), 0);
    st_writer_free(w);
    expect_load_error(p, (const char *[]){"8-wide vision tower", "num_attention_heads"}, 2); /* 8 / 64 = 0 heads */
    char *cj = t2i_asprintf("%s/config.json", dir);
    const char *heads = "{\"vision_config\": {\"num_attention_heads\": 2}, \"text_config\": {\"num_attention_heads\": 2}}";
    assert_int_equal(t2i_write_file_atomic(cj, heads, strlen(heads)), 0);
    expect_load_error(p, (const char *[]){"vision_model.encoder.layers.0.self_attn.q_proj.weight", "[8, 8]", "[8, 7]"}, 3);
    remove(cj);
    free(cj);

    /* not CLIP at all; a t2i checkpoint of another model; not a safetensors file */
    w = st_writer_new();
    st_writer_add_f32(w, "fc.weight", ST_F32, 2, (int64_t[]){2, 2}, z);
    assert_int_equal(st_writer_save(w, p), 0);
    st_writer_free(w);
    expect_load_error(p, (const char *[]){"not a CLIP checkpoint"}, 1);
    w = st_writer_new();
    st_writer_meta(w, "format", "t2i");
    st_writer_meta(w, "model", "gan");
    st_writer_add_f32(w, "fc.weight", ST_F32, 2, (int64_t[]){2, 2}, z);
    assert_int_equal(st_writer_save(w, p), 0);
    st_writer_free(w);
    expect_load_error(p, (const char *[]){"'gan'"}, 1);
    assert_int_equal(t2i_write_file_atomic(p, "garbage!", 8), 0);
    expect_load_error(p, NULL, 0);
    /* OpenAI names but no vocabulary anywhere, when one is required */
    write_openai(&m, p, NULL, NULL, NULL);
    char *old = getenv("T2I_CLIP_VOCAB") ? t2i_strdup(getenv("T2I_CLIP_VOCAB")) : NULL;
    unsetenv("T2I_CLIP_VOCAB");
    assert_null(clip_load(p, NULL));
    assert_non_null(strstr(t2i_error_msg(), "--vocab"));
    if (old) setenv("T2I_CLIP_VOCAB", old, 1);
    free(old);

    free(p);
    tu_rmtree(dir);
    free(dir);
    clip_model_free(&m);
}

static void test_bad_captions(void **state) {
    (void)state;
    clip_model m;
    tiny_with_vocab(&m, 4);
    int D = m.cfg.embed_dim;
    float e[3 * 8], e2[8];
    const char *bad[2] = {"a red dress", "a \xff\xfe dress"};
    assert_int_equal(clip_embed_texts(&m, bad, 2, e), -1);
    print_message("  -> %s\n", t2i_error_msg());
    assert_non_null(strstr(t2i_error_msg(), "UTF-8"));
    assert_non_null(strstr(t2i_error_msg(), "text 2"));

    /* 10 MB: truncated to the context; its features are those of its first words */
    size_t big = 10u << 20;
    char *s = t2i_malloc(big + 1);
    const char *unit = "a red dress ";
    for (size_t i = 0; i < big; i++) s[i] = unit[i % strlen(unit)];
    s[big] = 0;
    const char *one[1] = {s};
    double t0 = t2i_now();
    assert_int_equal(clip_embed_texts(&m, one, 1, e), 0);
    print_message("  10 MB caption embedded in %.2f s\n", t2i_now() - t0);
    /* the context (8) holds SOT + 6 ids + EOT: "a red dress a red dress" */
    const char *start[1] = {"a red dress a red dress"};
    assert_int_equal(clip_embed_texts(&m, start, 1, e2), 0);
    assert_memory_equal(e, e2, (size_t)D * sizeof(float));
    /* one 10 MB word */
    memset(s, 'x', big);
    assert_int_equal(clip_embed_texts(&m, one, 1, e), 0);
    for (int k = 0; k < D; k++) assert_true(isfinite(e[k]));
    free(s);
    /* over the tokenizer's limit: a clean error, not a crash */
    size_t huge = CLIP_TOK_MAX_TEXT + 16;
    s = t2i_malloc(huge + 1);
    memset(s, 'a', huge);
    s[huge] = 0;
    one[0] = s;
    int rc = clip_embed_texts(&m, one, 1, e);
    print_message("  %zu-byte caption -> %s\n", huge, rc ? t2i_error_msg() : "ok");
    if (rc) assert_null(strchr(t2i_error_msg(), '\n'));
    free(s);
    /* empty caption: SOT EOT only */
    const char *empty[1] = {""};
    assert_int_equal(clip_embed_texts(&m, empty, 1, e), 0);
    /* a token id beyond the vocabulary */
    int32_t tok[8] = {0, 5, 99999, 0, 0, 0, 0, 0};
    assert_int_equal(clip_embed_tokens(&m, tok, 1, e), -1);
    /* embedding-size check for callers */
    assert_int_equal(clip_check_embed_dim(&m, D, "generate"), 0);
    assert_int_equal(clip_check_embed_dim(&m, 512, "generate"), -1);
    print_message("  -> %s\n", t2i_error_msg());
    assert_non_null(strstr(t2i_error_msg(), "512"));
    assert_non_null(strstr(t2i_error_msg(), "8"));
    clip_model_free(&m);
}

int main(void) {
    /* tiny tensors: thread start-up would cost more than the work (and much more on a
     * loaded machine, where OpenMP barriers wait for descheduled threads) */
    t2i_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck),     cmocka_unit_test(test_multi_positive_loss),
        cmocka_unit_test(test_torch_training),     cmocka_unit_test(test_config_table),
        cmocka_unit_test(test_checkpoint_roundtrip), cmocka_unit_test(test_bad_weights),
        cmocka_unit_test(test_bad_captions), cmocka_unit_test(test_resample_grid),
        cmocka_unit_test(test_set_resolution), cmocka_unit_test(test_torch_training_stem),
        cmocka_unit_test(test_tta_flip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
