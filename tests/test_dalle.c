/* test_dalle.c - the DALL-E-style image-token transformer (dalle_tok/dalle.h).
 *
 * test_steps_match_pytorch: three AdamW steps of a reduced model (text 4 x 520, image 2x2
 * x 16, width 16, 2 layers) from the initial weights and tokens in
 * tests/data/dalle_ref.safetensors (tests/ref/gen_dalle_ref.py, an independent PyTorch
 * implementation): the weighted loss, its text and image parts and the plain mean must
 * agree within 1e-4 relative at every step, every weight within 1e-4 after the steps.
 * test_loss_structure: with a zero head every logit is equal, so every loss is log V (a
 * sum instead of a mean would be 4x or more that); with text_weight 1 nothing reaches the
 * image embeddings or the last text position (which predicts the first image token), with
 * text_weight 0 nothing reaches the last position of the sequence.
 * test_text_layout: SOT, caption ids, per-position pads; the unconditional text;
 * truncation (return value and the warning on stderr); the empty-prompt error; a
 * vocabulary that does not fit below the pads.
 * test_filter_*: temperature, top-k (ties to the lower index), top-p and the draw on
 * hand-made distributions; top-k against a full sort on random logits.
 * test_cfg: the mixing formula, and end to end: with scale 0 every caption gives the
 * unconditional model's codes, equal to sampling the null text without guidance.
 * test_cached_equals_uncached, test_candidate_alone: the same codes with and without the
 * key/value cache, and candidate i alone equals candidate i of a batch.
 * test_prompted: image-prompted sampling (kept codes) against a slow reference written
 * from the spec (no cache, full forward per position); nothing kept = unprompted, all
 * kept = the prompt. test_refine_conditional: the refinement passes draw a sampled code
 * from its exact conditional given the kept codes before and after it (enumerated).
 * test_checkpoint_roundtrip, test_config: save/load and configuration checks.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base.h"
#include "dalle.h"
#include "safetensors.h"
#include "testutil.h"

static void ref_config(dalle_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->preset, "custom");
    c->text_len = 4, c->text_vocab = 520, c->image_side = 2, c->codebook = 16;
    c->width = 16, c->n_layer = 2, c->n_head = 2, c->mlp_ratio = 4;
    c->act = NN_ACT_GELU_ERF, c->ln_eps = 1e-5f;
}

static void load_prefix(const st_file *f, nn_params *ps, const char *prefix) {
    char name[256];
    for (int i = 0; i < ps->n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, ps->p[i].name);
        const st_tensor *t = st_find(f, name);
        if (!t) fail_msg("reference file lacks %s", name);
        assert_int_equal(st_read_f32(f, t, nn_params_val(ps, i), ps->p[i].numel), 0);
    }
}

static void assert_rel(const char *what, float got, float want, float rtol) {
    if (!(fabsf(got - want) <= rtol * fabsf(want))) fail_msg("%s: got %.7g want %.7g", what, got, want);
}

static void test_steps_match_pytorch(void **state) {
    (void)state;
    char *path = tu_path("data/dalle_ref.safetensors");
    st_file f;
    assert_int_equal(st_open(&f, path), 0);
    dalle_config cfg;
    ref_config(&cfg);
    assert_int_equal(dalle_config_check(&cfg), 0);
    dalle_model m;
    dalle_build(&m, &cfg);
    load_prefix(&f, &m.ps, "init.");
    int B = 3, T = dalle_seq_len(&cfg);
    int32_t tok[3 * 8];
    const st_tensor *tt = st_find(&f, "tokens");
    assert_non_null(tt);
    assert_int_equal(st_read_i32(&f, tt, tok, (size_t)B * T), 0);
    float ref[12];
    assert_int_equal(st_load_f32(&f, "losses", ref, 1, (int64_t[]){12}), 0);
    nn_optim opt = nn_adamw(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f);
    nn_params_moments(&m.ps);
    nn_arena a;
    nn_arena_init(&a);
    for (int s = 0; s < 3; s++) {
        dalle_loss plain, L;
        nn_arena_reset(&a);
        dalle_train_grads(&m, &a, tok, B, -1.0f, &plain);
        nn_arena_reset(&a);
        dalle_train_grads(&m, &a, tok, B, 0.125f, &L);
        char what[64];
        snprintf(what, sizeof what, "step %d loss", s);
        assert_rel(what, L.loss, ref[4 * s], 1e-4f);
        snprintf(what, sizeof what, "step %d text loss", s);
        assert_rel(what, L.loss_text, ref[4 * s + 1], 1e-4f);
        snprintf(what, sizeof what, "step %d image loss", s);
        assert_rel(what, L.loss_image, ref[4 * s + 2], 1e-4f);
        snprintf(what, sizeof what, "step %d plain mean", s);
        assert_rel(what, plain.loss, ref[4 * s + 3], 1e-4f);
        nn_optim_step(&opt, &m.ps, 1e-2f);
    }
    char name[256];
    for (int i = 0; i < m.ps.n; i++) {
        snprintf(name, sizeof name, "final.%s", m.ps.p[i].name);
        const st_tensor *t = st_find(&f, name);
        assert_non_null(t);
        float *want = malloc(m.ps.p[i].numel * sizeof(float));
        assert_int_equal(st_read_f32(&f, t, want, m.ps.p[i].numel), 0);
        tu_assert_close(name, nn_params_val(&m.ps, i), want, m.ps.p[i].numel, 1e-4f, 1e-4f);
        free(want);
    }
    nn_arena_free(&a);
    dalle_free(&m);
    st_close(&f);
    free(path);
}

static double max_abs(const float *x, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(x[i]));
    return mx;
}

static void random_tokens(const dalle_config *c, int B, int32_t *tok, t2i_rng *r) {
    int T = dalle_seq_len(c);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tok[b * T + t] = t < c->text_len ? (int)t2i_rng_below(r, (uint64_t)c->text_vocab)
                                             : c->text_vocab + (int)t2i_rng_below(r, (uint64_t)c->codebook);
}

static void test_loss_structure(void **state) {
    (void)state;
    dalle_config cfg;
    ref_config(&cfg);
    dalle_model m;
    dalle_build(&m, &cfg);
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    dalle_init(&m, &r);
    int B = 2, T = dalle_seq_len(&cfg), C = cfg.width, TL = cfg.text_len;
    int32_t tok[2 * 8];
    random_tokens(&cfg, B, tok, &r);
    nn_arena a;
    nn_arena_init(&a);
    /* zero head: uniform predictions, every mean cross-entropy is log V */
    float *hw = nn_params_val(&m.ps, m.head_w);
    float *saved = malloc(m.ps.p[m.head_w].numel * sizeof(float));
    memcpy(saved, hw, m.ps.p[m.head_w].numel * sizeof(float));
    memset(hw, 0, m.ps.p[m.head_w].numel * sizeof(float));
    dalle_loss L;
    dalle_train_grads(&m, &a, tok, B, 0.125f, &L);
    float logv = logf((float)dalle_vocab(&cfg));
    assert_rel("uniform loss", L.loss, logv, 1e-5f);
    assert_rel("uniform text loss", L.loss_text, logv, 1e-5f);
    assert_rel("uniform image loss", L.loss_image, logv, 1e-5f);
    nn_arena_reset(&a);
    dalle_train_grads(&m, &a, tok, B, -1.0f, &L);
    assert_rel("uniform plain loss", L.loss, logv, 1e-5f);
    memcpy(hw, saved, m.ps.p[m.head_w].numel * sizeof(float));
    free(saved);

    /* text only: no gradient reaches image embeddings or position TL-1's prediction */
    nn_arena_reset(&a);
    dalle_train_grads(&m, &a, tok, B, 1.0f, &L);
    assert_true(max_abs(nn_params_grad(&m.ps, m.image_emb), m.ps.p[m.image_emb].numel) == 0.0);
    const float *dpos = nn_params_grad(&m.ps, m.pos_emb);
    for (int t = TL - 1; t < T; t++) assert_true(max_abs(dpos + (size_t)t * C, (size_t)C) == 0.0);
    assert_true(max_abs(dpos + (size_t)(TL - 2) * C, (size_t)C) > 0.0);
    assert_true(max_abs(nn_params_grad(&m.ps, m.text_emb), m.ps.p[m.text_emb].numel) > 0.0);
    /* image only: the last position predicts nothing, the text positions feed image targets */
    nn_arena_reset(&a);
    dalle_train_grads(&m, &a, tok, B, 0.0f, &L);
    assert_true(max_abs(dpos + (size_t)(T - 1) * C, (size_t)C) == 0.0);
    assert_true(max_abs(dpos + (size_t)(T - 2) * C, (size_t)C) > 0.0);
    assert_true(max_abs(dpos, (size_t)C) > 0.0);
    assert_true(max_abs(nn_params_grad(&m.ps, m.image_emb), m.ps.p[m.image_emb].numel) > 0.0);
    nn_arena_free(&a);
    dalle_free(&m);
}

static const char *const train_caps[] = {
    "a red sneaker", "a blue bag", "a photo of a red dress", "an orange dress", "a green ankle boot in the snow",
    "a red sneaker", "a blue sneaker", "a photo of a blue bag", "a white t-shirt", "an ankle boot in red",
};

static char *tiny_vocab(size_t *len, size_t vocab) {
    char *v = clip_tok_train(train_caps, NULL, sizeof train_caps / sizeof train_caps[0], vocab, len);
    assert_non_null(v);
    return v;
}

/* Runs fn with stderr sent to a file; returns what it printed (heap). */
static char *capture_stderr(int (*fn)(void *), void *ctx, int *ret) {
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/err.txt", dir);
    fflush(stderr);
    int saved = dup(fileno(stderr));
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    dup2(fileno(f), fileno(stderr));
    *ret = fn(ctx);
    fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);
    fclose(f);
    size_t n;
    char *text = t2i_read_file(p, &n, 0);
    tu_rmtree(dir);
    free(dir), free(p);
    return text;
}

typedef struct {
    dalle_model *m;
    const char *caption;
    int32_t *out;
} enc_ctx;
static int enc_warn(void *p) {
    enc_ctx *c = p;
    return dalle_encode_text_warn(c->m, c->caption, c->out);
}

static void test_text_layout(void **state) {
    (void)state;
    dalle_config cfg;
    ref_config(&cfg);
    cfg.text_len = 6, cfg.text_vocab = 600;
    dalle_model m;
    dalle_build(&m, &cfg);
    size_t len;
    char *v = tiny_vocab(&len, 560);
    assert_int_equal(dalle_set_vocab(&m, v, len), 0);
    int pad_base = 600 - 6;
    int32_t out[6];
    int n = 0;
    assert_int_equal(dalle_encode_text(&m, "a red sneaker", out, &n), 0);
    int32_t *ids;
    size_t nid;
    assert_int_equal(clip_tok_encode(m.tok, "a red sneaker", 13, &ids, &nid), 0);
    assert_int_equal(nid, 3); /* "a", "red", "sneaker" are merged words of the training captions */
    assert_int_equal(n, 3);
    assert_int_equal(out[0], clip_tok_sot(m.tok));
    for (size_t i = 0; i < nid; i++) assert_int_equal(out[1 + i], ids[i]);
    t2i_free(ids);
    assert_int_equal(out[4], pad_base + 4);
    assert_int_equal(out[5], pad_base + 5);
    for (int i = 0; i < 4; i++) assert_true(out[i] < pad_base);
    dalle_null_text(&m, out);
    assert_int_equal(out[0], clip_tok_sot(m.tok));
    for (int i = 1; i < 6; i++) assert_int_equal(out[i], pad_base + i);

    /* truncation: 7 words, 5 slots after SOT */
    const char *lng = "a red sneaker a blue bag in the snow";
    assert_int_equal(dalle_encode_text(&m, lng, out, &n), 1);
    assert_true(n > 5);
    assert_int_equal(clip_tok_encode(m.tok, lng, strlen(lng), &ids, &nid), 0);
    for (int i = 0; i < 5; i++) assert_int_equal(out[1 + i], ids[i]);
    t2i_free(ids);
    enc_ctx ec = {&m, lng, out};
    int ret = 0;
    char *err = capture_stderr(enc_warn, &ec, &ret);
    assert_int_equal(ret, 1);
    assert_non_null(strstr(err, "warning"));
    assert_non_null(strstr(err, "first 5"));
    free(err);
    ec.caption = "a red sneaker";
    err = capture_stderr(enc_warn, &ec, &ret);
    assert_int_equal(ret, 0);
    assert_int_equal(strlen(err), 0);
    free(err);

    /* empty prompts are errors */
    assert_int_equal(dalle_encode_text(&m, "", out, NULL), -1);
    assert_non_null(strstr(t2i_error_msg(), "empty"));
    assert_int_equal(dalle_encode_text(&m, "  \t ", out, NULL), -1);
    dalle_free(&m);

    /* a vocabulary of 560 ids does not fit below the pads of a 520-id text vocabulary */
    ref_config(&cfg);
    dalle_build(&m, &cfg);
    assert_int_equal(dalle_set_vocab(&m, v, len), -1);
    assert_non_null(strstr(t2i_error_msg(), "516"));
    dalle_free(&m);
    t2i_free(v);
}

static void test_filter_hand_made(void **state) {
    (void)state;
    float p4[4] = {0.1f, 0.4f, 0.2f, 0.3f}, lg[4], probs[4];
    int work[8];
    for (int i = 0; i < 4; i++) lg[i] = logf(p4[i]) + 1.5f; /* a shift must not matter */
    dalle_filter_probs(probs, lg, 4, 1.0f, 0, 1.0f, work);
    for (int i = 0; i < 4; i++) assert_float_equal(probs[i], p4[i], 1e-6);
    dalle_filter_probs(probs, lg, 4, 1.0f, 2, 1.0f, work);
    float want_k2[4] = {0, 4.0f / 7, 0, 3.0f / 7};
    for (int i = 0; i < 4; i++) assert_float_equal(probs[i], want_k2[i], 1e-6);
    /* top-p 0.6: 0.4 (mass before 0) and 0.3 (before 0.4) kept; 0.2 has 0.7 before it */
    dalle_filter_probs(probs, lg, 4, 1.0f, 0, 0.6f, work);
    for (int i = 0; i < 4; i++) assert_float_equal(probs[i], want_k2[i], 1e-6);
    dalle_filter_probs(probs, lg, 4, 1.0f, 0, 0.3f, work);
    assert_float_equal(probs[1], 1.0f, 1e-6);
    assert_float_equal(probs[0] + probs[2] + probs[3], 0.0f, 0);
    /* top-k 3 then top-p 0.8 of the renormalised 4/9, 3/9, 2/9: mass before 2/9 is 7/9 < 0.8 */
    dalle_filter_probs(probs, lg, 4, 1.0f, 3, 0.8f, work);
    float want_k3[4] = {0, 4.0f / 9, 2.0f / 9, 3.0f / 9};
    for (int i = 0; i < 4; i++) assert_float_equal(probs[i], want_k3[i], 1e-6);
    /* temperature 2: p^(1/2), renormalised */
    dalle_filter_probs(probs, lg, 4, 2.0f, 0, 1.0f, work);
    double s = 0;
    for (int i = 0; i < 4; i++) s += sqrt(p4[i]);
    for (int i = 0; i < 4; i++) assert_float_equal(probs[i], sqrt(p4[i]) / s, 1e-6);
    /* ties go to the lower index */
    float tie[4] = {1, 1, 1, 0};
    dalle_filter_probs(probs, tie, 4, 1.0f, 2, 1.0f, work);
    assert_float_equal(probs[0], 0.5f, 1e-6);
    assert_float_equal(probs[1], 0.5f, 1e-6);
    assert_float_equal(probs[2], 0.0f, 0);
    /* the draw walks codes in index order */
    float d[4] = {0, 0.5f, 0, 0.5f};
    assert_int_equal(dalle_draw(d, 4, 0.0f), 1);
    assert_int_equal(dalle_draw(d, 4, 0.49f), 1);
    assert_int_equal(dalle_draw(d, 4, 0.5f), 3);
    assert_int_equal(dalle_draw(d, 4, 0.9999f), 3);
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_filter_random(void **state) {
    (void)state;
    t2i_rng r;
    t2i_rng_seed(&r, 5);
    enum { V = 257 };
    float lg[V], sorted[V], probs[V];
    int work[2 * V];
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < V; i++) lg[i] = 3.0f * t2i_rng_normal(&r);
        memcpy(sorted, lg, sizeof lg);
        qsort(sorted, V, sizeof(float), cmp_desc);
        int k = 1 + (int)t2i_rng_below(&r, V - 1);
        dalle_filter_probs(probs, lg, V, 1.0f, k, 1.0f, work);
        int kept = 0;
        double sum = 0, z = 0;
        for (int i = 0; i < V; i++) {
            kept += probs[i] > 0;
            sum += probs[i];
            if (probs[i] > 0) assert_true(lg[i] >= sorted[k - 1]);
            else assert_true(lg[i] <= sorted[k - 1]);
        }
        assert_int_equal(kept, k);
        assert_float_equal(sum, 1.0, 1e-5);
        for (int i = 0; i < k; i++) z += exp(sorted[i] - sorted[0]);
        for (int i = 0; i < V; i++)
            if (probs[i] > 0) assert_float_equal(probs[i], exp(lg[i] - sorted[0]) / z, 1e-5);
        /* top-p: the kept set is a prefix of the sorted order whose mass before its last
         * member is below p and which reaches p */
        float p = 0.05f + 0.9f * t2i_rng_uniform(&r);
        dalle_filter_probs(probs, lg, V, 1.0f, 0, p, work);
        double all = 0;
        for (int i = 0; i < V; i++) all += exp(sorted[i] - sorted[0]);
        double cum = 0;
        int n = 0;
        while (cum < p) cum += exp(sorted[n++] - sorted[0]) / all;
        kept = 0;
        for (int i = 0; i < V; i++) kept += probs[i] > 0;
        assert_int_equal(kept, n);
    }
}

static void tiny_model_side(dalle_model *m, float head_gain, int side) {
    dalle_config cfg;
    ref_config(&cfg);
    cfg.text_len = 5, cfg.text_vocab = 600, cfg.image_side = side, cfg.codebook = 12;
    dalle_build(m, &cfg);
    t2i_rng r;
    t2i_rng_seed(&r, 9);
    dalle_init(m, &r);
    /* larger weights than the init so that the distributions depend on the prefix */
    for (size_t i = 0; i < m->ps.total; i++) m->ps.data[i] *= 20.0f;
    float *hw = nn_params_val(&m->ps, m->head_w);
    for (size_t i = 0; i < m->ps.p[m->head_w].numel; i++) hw[i] *= head_gain;
    float *lw = nn_params_val(&m->ps, m->lnf_w);
    for (int i = 0; i < cfg.width; i++) lw[i] = 1.0f;
    for (int l = 0; l < cfg.n_layer; l++) {
        nn_init_const(nn_params_val(&m->ps, m->tf.idx[l][NN_TF_LN1W]), (size_t)cfg.width, 1.0f);
        nn_init_const(nn_params_val(&m->ps, m->tf.idx[l][NN_TF_LN2W]), (size_t)cfg.width, 1.0f);
    }
    size_t len;
    char *v = tiny_vocab(&len, 560);
    assert_int_equal(dalle_set_vocab(m, v, len), 0);
    t2i_free(v);
}

static void tiny_model(dalle_model *m, float head_gain) { tiny_model_side(m, head_gain, 3); }

static void test_cached_equals_uncached(void **state) {
    (void)state;
    dalle_model m;
    tiny_model(&m, 1.0f);
    int n = 5, IL = dalle_image_len(&m.cfg);
    int32_t text[5], a_codes[5 * 9], b_codes[5 * 9];
    assert_int_equal(dalle_encode_text(&m, "a blue bag", text, NULL), 0);
    nn_arena a;
    nn_arena_init(&a);
    dalle_sample_opts o;
    dalle_sample_defaults(&o);
    float cfgs[] = {1.0f, 2.5f};
    int ks[] = {0, 6};
    float ps[] = {1.0f, 0.9f};
    for (int v = 0; v < 2; v++) {
        o.cfg = cfgs[v], o.top_k = ks[v], o.top_p = ps[v], o.temperature = v ? 0.8f : 1.0f;
        o.cached = 1;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, n, 42, 0, &o, a_codes);
        o.cached = 0;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, n, 42, 0, &o, b_codes);
        assert_memory_equal(a_codes, b_codes, sizeof a_codes);
        int distinct = 0;
        for (int i = 0; i < n * IL; i++) {
            assert_true(a_codes[i] >= 0 && a_codes[i] < m.cfg.codebook);
            distinct += a_codes[i] != a_codes[0];
        }
        assert_true(distinct > 0);
    }
    /* another seed gives other codes */
    o.cached = 1;
    nn_arena_reset(&a);
    dalle_sample(&m, &a, text, n, 43, 0, &o, b_codes);
    assert_memory_not_equal(a_codes, b_codes, sizeof a_codes);
    nn_arena_free(&a);
    dalle_free(&m);
}

static void test_candidate_alone(void **state) {
    (void)state;
    dalle_model m;
    tiny_model(&m, 1.0f);
    int n = 6, IL = dalle_image_len(&m.cfg);
    int32_t text[5], batch[6 * 9], one[9];
    assert_int_equal(dalle_encode_text(&m, "a red sneaker", text, NULL), 0);
    nn_arena a;
    nn_arena_init(&a);
    dalle_sample_opts o;
    dalle_sample_defaults(&o);
    o.cfg = 3.0f, o.top_k = 8;
    dalle_sample(&m, &a, text, n, 7, 0, &o, batch);
    for (int i = 0; i < n; i++) {
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, 1, 7, i, &o, one);
        assert_memory_equal(one, batch + (size_t)i * IL, sizeof one);
    }
    /* a batch starting at 2 holds candidates 2.. */
    nn_arena_reset(&a);
    dalle_sample(&m, &a, text, 3, 7, 2, &o, batch + 0);
    nn_arena_reset(&a);
    int32_t full[6 * 9];
    dalle_sample(&m, &a, text, n, 7, 0, &o, full);
    assert_memory_equal(batch, full + 2 * IL, 3 * IL * sizeof(int32_t));
    nn_arena_free(&a);
    dalle_free(&m);
}

/* The sampling spec of dalle.h written the slow way, one candidate at a time: at every
 * position the full forward over the prefix through the public dalle_logits (no cache,
 * no fan-out, the full head), guided, filtered and drawn with the candidate's stream; a
 * kept position takes the prompt's code and spends its uniform. */
static void ref_prompted(dalle_model *m, const int32_t *text, int n, uint64_t seed, const dalle_sample_opts *o,
                         int32_t *codes) {
    const dalle_config *c = &m->cfg;
    int K = c->codebook, TL = c->text_len, IL = dalle_image_len(c), T = TL + IL, TV = c->text_vocab, V = dalle_vocab(c);
    int guided = o->cfg != 1.0f, B = guided ? 2 : 1;
    nn_arena a;
    nn_arena_init(&a);
    int32_t *tok = t2i_malloc((size_t)B * T * sizeof(int32_t)), *pre = t2i_malloc((size_t)B * T * sizeof(int32_t));
    float mixed[64], probs[64];
    int work[128];
    assert_true(K <= 64);
    t2i_rng root;
    t2i_rng_seed(&root, seed);
    for (int i = 0; i < n; i++) {
        t2i_rng r = t2i_rng_split(&root, (uint64_t)i);
        memcpy(tok, text, (size_t)TL * sizeof(int32_t));
        if (guided) dalle_null_text(m, tok + T);
        for (int j = 0; j < IL; j++) {
            float u = t2i_rng_uniform(&r);
            int t = TL + j, code;
            if (o->keep && o->keep[j]) {
                code = o->prompt[j];
            } else {
                for (int b = 0; b < B; b++) memcpy(pre + (size_t)b * t, tok + (size_t)b * T, (size_t)t * sizeof(int32_t));
                nn_arena_reset(&a);
                float *lg = dalle_logits(m, &a, pre, B, t);
                const float *cond = lg + ((size_t)t - 1) * V + TV;
                if (guided) dalle_cfg_mix(mixed, cond, lg + ((size_t)2 * t - 1) * V + TV, (size_t)K, o->cfg);
                else memcpy(mixed, cond, (size_t)K * sizeof(float));
                dalle_filter_probs(probs, mixed, K, o->temperature, o->top_k, o->top_p, work);
                code = dalle_draw(probs, K, u);
            }
            codes[(size_t)i * IL + j] = code;
            for (int b = 0; b < B; b++) tok[(size_t)b * T + t] = TV + code;
        }
    }
    free(tok), free(pre);
    nn_arena_free(&a);
}

/* Completion and inpainting: kept codes are the prompt's bit for bit; the cached sampler
 * equals the slow reference above; candidate i alone equals candidate i of a batch (also
 * after refinement); keeping nothing is the unprompted sampler, keeping everything
 * returns the prompt. */
static void test_prompted(void **state) {
    (void)state;
    dalle_model m;
    tiny_model(&m, 1.0f);
    enum { N = 6, IL = 9 };
    assert_int_equal(dalle_image_len(&m.cfg), IL);
    int32_t text[5], got[N * IL], ref[N * IL], one[IL], plain[N * IL];
    assert_int_equal(dalle_encode_text(&m, "a red sneaker", text, NULL), 0);
    int32_t prompt[IL] = {3, 11, 0, 7, 5, 9, 1, 4, 2};
    uint8_t keeps[3][IL] = {{1, 1, 1, 0, 0, 0, 0, 0, 0},  /* the top row: completion */
                            {1, 0, 1, 0, 1, 1, 0, 0, 1},  /* scattered, last kept */
                            {0, 0, 0, 1, 0, 0, 0, 0, 0}}; /* one kept, later */
    nn_arena a;
    nn_arena_init(&a);
    dalle_sample_opts o;
    dalle_sample_defaults(&o);
    float cfgs[] = {1.0f, 3.0f, 2.0f};
    for (int v = 0; v < 3; v++) {
        o.cfg = cfgs[v], o.top_k = v == 2 ? 6 : 0, o.top_p = v == 2 ? 0.9f : 1.0f;
        o.prompt = prompt, o.keep = keeps[v], o.passes = 0, o.cached = 1;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, N, 11, 0, &o, got);
        ref_prompted(&m, text, N, 11, &o, ref);
        assert_memory_equal(got, ref, sizeof got);
        o.cached = 0;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, N, 11, 0, &o, ref);
        assert_memory_equal(got, ref, sizeof got);
        int differ = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < IL; j++) {
                if (keeps[v][j]) assert_int_equal(got[i * IL + j], prompt[j]);
                else differ |= got[i * IL + j] != got[j];
            }
        assert_true(differ); /* the sampled positions vary between candidates */
        /* the same sampled positions draw with the same uniforms: a kept prefix changes
         * what follows (the model sees it) */
        o.keep = NULL, o.cached = 1;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, N, 11, 0, &o, plain);
        assert_memory_not_equal(got, plain, sizeof got);
        /* refinement: candidate 4 alone equals candidate 4 of the batch; kept codes stay */
        o.keep = keeps[v], o.passes = 2;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, N, 11, 0, &o, got);
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, 1, 11, 4, &o, one);
        assert_memory_equal(one, got + 4 * IL, sizeof one);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < IL; j++)
                if (keeps[v][j]) assert_int_equal(got[i * IL + j], prompt[j]);
    }
    /* nothing kept, with or without passes: exactly the unprompted codes */
    uint8_t none[IL] = {0}, all[IL];
    memset(all, 1, sizeof all);
    o.cfg = 3.0f, o.top_k = 0, o.top_p = 1.0f, o.keep = NULL, o.passes = 0;
    nn_arena_reset(&a);
    dalle_sample(&m, &a, text, N, 5, 0, &o, plain);
    o.keep = none, o.prompt = prompt, o.passes = 3;
    nn_arena_reset(&a);
    dalle_sample(&m, &a, text, N, 5, 0, &o, got);
    assert_memory_equal(got, plain, sizeof got);
    /* variations: each position keeps the prompt's code with probability keep_prob,
     * per candidate; the cache and the batch do not matter */
    {
        enum { NV = 40 };
        int32_t *va = t2i_malloc(NV * IL * sizeof(int32_t)), *vb = t2i_malloc(NV * IL * sizeof(int32_t));
        o.keep = NULL, o.passes = 0, o.keep_prob = 0.5f, o.cached = 1;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, NV, 5, 0, &o, va);
        o.cached = 0;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, NV, 5, 0, &o, vb);
        assert_memory_equal(va, vb, NV * IL * sizeof(int32_t));
        o.cached = 1;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, 1, 5, 17, &o, one);
        assert_memory_equal(one, va + 17 * IL, sizeof one);
        int same = 0;
        for (int i = 0; i < NV * IL; i++) same += va[i] == prompt[i % IL];
        double share = (double)same / (NV * IL);
        assert_true(share > 0.4 && share < 0.8);
        o.keep_prob = 1.0f;
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, NV, 5, 0, &o, va);
        for (int i = 0; i < NV * IL; i++) assert_int_equal(va[i], prompt[i % IL]);
        o.keep_prob = 0.0f;
        free(va), free(vb);
    }
    /* everything kept: the prompt itself */
    o.keep = all;
    nn_arena_reset(&a);
    dalle_sample(&m, &a, text, N, 5, 0, &o, got);
    for (int i = 0; i < N; i++) assert_memory_equal(got + i * IL, prompt, sizeof prompt);
    nn_arena_free(&a);
    dalle_free(&m);
}

/* Refinement samples the conditional of a sampled code given every other code. Grid
 * 2x2, codes 0, 2 and 3 kept, code 1 sampled: its exact conditional is
 *   p(x1 | x0, x2, x3) ~ p(x1 | x0) p(x2 | x0, x1) p(x3 | x0, x1, x2),
 * enumerated with dalle_logits over the 12 values. Over many candidates, raster order
 * alone draws x1 from p(x1 | x0), far from it; after the passes the frequencies match it. */
static void test_refine_conditional(void **state) {
    (void)state;
    dalle_model m;
    tiny_model_side(&m, 1.0f, 2);
    const dalle_config *c = &m.cfg;
    enum { K = 12, IL = 4, N = 3000 };
    int TL = c->text_len, T = TL + IL, TV = c->text_vocab, V = dalle_vocab(c);
    int32_t text[5], prompt[IL] = {4, 0, 9, 2};
    uint8_t keep[IL] = {1, 0, 1, 1};
    assert_int_equal(dalle_encode_text(&m, "a blue bag", text, NULL), 0);
    nn_arena a;
    nn_arena_init(&a);
    int32_t tok[K * 9];
    for (int x = 0; x < K; x++) {
        memcpy(tok + x * T, text, (size_t)TL * sizeof(int32_t));
        for (int j = 0; j < IL; j++) tok[x * T + TL + j] = TV + (j == 1 ? x : prompt[j]);
    }
    float *lg = dalle_logits(&m, &a, tok, K, T);
    double exact[K], total = 0.0;
    for (int x = 0; x < K; x++) {
        double lp = 0.0;
        for (int j = 1; j < IL; j++) {
            const float *row = lg + ((size_t)x * T + TL + j - 1) * V + TV;
            double mx = -1e30, sum = 0.0;
            for (int k = 0; k < K; k++) mx = row[k] > mx ? row[k] : mx;
            for (int k = 0; k < K; k++) sum += exp(row[k] - mx);
            int code = tok[x * T + TL + j] - TV;
            lp += row[code] - mx - log(sum);
        }
        exact[x] = exp(lp);
        total += exact[x];
    }
    for (int x = 0; x < K; x++) exact[x] /= total;
    int32_t *codes = t2i_malloc((size_t)N * IL * sizeof(int32_t));
    dalle_sample_opts o;
    dalle_sample_defaults(&o);
    o.prompt = prompt, o.keep = keep;
    double tv[2];
    int passes[2] = {0, 8};
    for (int v = 0; v < 2; v++) {
        o.passes = passes[v];
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, N, 3, 0, &o, codes);
        double freq[K] = {0};
        for (int i = 0; i < N; i++) freq[codes[(size_t)i * IL + 1]] += 1.0 / N;
        tv[v] = 0.0;
        for (int x = 0; x < K; x++) tv[v] += 0.5 * fabs(freq[x] - exact[x]);
    }
    print_message("refine: total variation to the exact conditional %.3f raster, %.3f after 8 passes\n", tv[0], tv[1]);
    assert_true(tv[0] > 0.15);
    assert_true(tv[1] < 0.05);
    free(codes);
    nn_arena_free(&a);
    dalle_free(&m);
}

static void test_cfg(void **state) {
    (void)state;
    float c[3] = {1, 2, -1}, u[3] = {0.5f, 3, -1}, out[3];
    dalle_cfg_mix(out, c, u, 3, 3.0f);
    assert_float_equal(out[0], 2.0f, 1e-6);  /* 0.5 + 3 * 0.5 */
    assert_float_equal(out[1], 0.0f, 1e-6);  /* 3 + 3 * (-1) */
    assert_float_equal(out[2], -1.0f, 1e-6);
    dalle_cfg_mix(out, c, u, 3, 0.0f);
    assert_memory_equal(out, u, sizeof u);
    /* scale 0 is the unconditional model whatever the caption */
    dalle_model m;
    tiny_model(&m, 1.0f);
    int32_t t1[5], t2[5], tn[5], c1[4 * 9], c2[4 * 9], cn[4 * 9], cc[4 * 9];
    assert_int_equal(dalle_encode_text(&m, "a red sneaker", t1, NULL), 0);
    assert_int_equal(dalle_encode_text(&m, "a blue bag", t2, NULL), 0);
    dalle_null_text(&m, tn);
    nn_arena a;
    nn_arena_init(&a);
    dalle_sample_opts o;
    dalle_sample_defaults(&o);
    o.cfg = 0.0f;
    dalle_sample(&m, &a, t1, 4, 5, 0, &o, c1);
    nn_arena_reset(&a);
    dalle_sample(&m, &a, t2, 4, 5, 0, &o, c2);
    o.cfg = 1.0f;
    nn_arena_reset(&a);
    dalle_sample(&m, &a, tn, 4, 5, 0, &o, cn);
    nn_arena_reset(&a);
    dalle_sample(&m, &a, t1, 4, 5, 0, &o, cc);
    assert_memory_equal(c1, cn, sizeof c1);
    assert_memory_equal(c2, cn, sizeof c1);
    assert_memory_not_equal(cc, cn, sizeof c1); /* the caption matters without guidance */
    nn_arena_free(&a);
    dalle_free(&m);
}

static void test_checkpoint_roundtrip(void **state) {
    (void)state;
    dalle_model m, m2;
    tiny_model(&m, 1.0f);
    m.vq_path = t2i_strdup("some/vq.safetensors");
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/d.safetensors", dir);
    assert_int_equal(dalle_save(&m, p, "{\"step\":3}", 0), 0);
    char *sj = NULL;
    assert_int_equal(dalle_load(&m2, p, 0, &sj), 0);
    assert_string_equal(sj, "{\"step\":3}");
    free(sj);
    assert_string_equal(m2.vq_path, "some/vq.safetensors");
    assert_memory_equal(&m.cfg, &m2.cfg, sizeof m.cfg);
    assert_memory_equal(m.ps.data, m2.ps.data, m.ps.total * sizeof(float));
    int32_t a1[5], a2[5];
    assert_int_equal(dalle_encode_text(&m, "a blue bag", a1, NULL), 0);
    assert_int_equal(dalle_encode_text(&m2, "a blue bag", a2, NULL), 0);
    assert_memory_equal(a1, a2, sizeof a1);
    dalle_free(&m2);
    /* not a DALL-E checkpoint */
    char *q = tu_path("data/dalle_ref.safetensors");
    assert_int_equal(dalle_load(&m2, q, 0, NULL), -1);
    assert_non_null(strstr(t2i_error_msg(), "dalle_ref.safetensors"));
    free(q);
    tu_rmtree(dir);
    free(dir), free(p);
    dalle_free(&m);
}

static void test_config(void **state) {
    (void)state;
    dalle_config c, d;
    dalle_config_b2(&c);
    assert_int_equal(dalle_config_check(&c), 0);
    assert_int_equal(dalle_seq_len(&c), 80);
    assert_int_equal(dalle_vocab(&c), 1536);
    char *j = dalle_config_to_json(&c);
    assert_int_equal(dalle_config_from_json(&d, j), 0);
    assert_memory_equal(&c, &d, sizeof c);
    free(j);
    dalle_model m;
    dalle_build(&m, &c);
    /* B2: embeddings 1024+512+80 rows, 6 x (12 C^2 + 13 C), ln_f, head 1536 x 256 + 1536 */
    assert_int_equal(nn_params_count(&m.ps, 1), 5547520);
    dalle_free(&m);
    c.width = 128;
    assert_int_equal(dalle_config_check(&c), -1);
    strcpy(c.preset, "custom");
    assert_int_equal(dalle_config_check(&c), 0);
    c.n_head = 3;
    assert_int_equal(dalle_config_check(&c), -1);
    assert_int_equal(dalle_config_from_json(&d, "{\"preset\":\"b2\"}"), -1);
}

static int read_dalle_config(const char *json) {
    dalle_config c;
    return dalle_config_from_json(&c, json);
}

/* config -> JSON -> config is exact and writes the JSON back unchanged; every field refuses
 * a missing, mistyped or out-of-range value by name. */
static void test_config_table(void **state) {
    (void)state;
    dalle_config c, d;
    ref_config(&c);
    c.act = NN_ACT_QUICK_GELU, c.ln_eps = 1e-6f;
    char *j = dalle_config_to_json(&c);
    assert_string_equal(j, "{\"preset\":\"custom\",\"text_len\":4,\"text_vocab\":520,\"image_side\":2,\"codebook\":16,"
                           "\"width\":16,\"n_layer\":2,\"n_head\":2,\"mlp_ratio\":4,\"act\":\"quick_gelu\",\"ln_eps\":1e-06}");
    assert_int_equal(dalle_config_from_json(&d, j), 0);
    assert_memory_equal(&c, &d, sizeof c);
    char *j2 = dalle_config_to_json(&d);
    assert_string_equal(j2, j);
    tu_config_refusals(j, read_dalle_config, NULL);
    /* "gelu_erf" is read as gelu (the name PyTorch's scripts use) */
    assert_int_equal(dalle_config_from_json(&d, "{\"preset\":\"custom\",\"text_len\":4,\"text_vocab\":520,\"image_side\":2,"
                                                "\"codebook\":16,\"width\":16,\"n_layer\":2,\"n_head\":2,\"mlp_ratio\":4,"
                                                "\"act\":\"gelu_erf\",\"ln_eps\":1e-06}"),
                     0);
    assert_int_equal(d.act, NN_ACT_GELU_ERF);
    free(j), free(j2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_match_pytorch), cmocka_unit_test(test_loss_structure),
        cmocka_unit_test(test_text_layout),         cmocka_unit_test(test_filter_hand_made),
        cmocka_unit_test(test_filter_random),       cmocka_unit_test(test_cfg),
        cmocka_unit_test(test_cached_equals_uncached), cmocka_unit_test(test_candidate_alone),
        cmocka_unit_test(test_prompted),            cmocka_unit_test(test_refine_conditional),
        cmocka_unit_test(test_checkpoint_roundtrip), cmocka_unit_test(test_config), cmocka_unit_test(test_config_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
