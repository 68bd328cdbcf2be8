/* test_gan.c - GAN training against PyTorch, and the GAN's own pieces.
 *
 * test_steps_match_pytorch: three full training steps (D update on real and fake, G
 * update through a frozen D, Adam) of a reduced DCGAN-28 (the B1 architecture at widths
 * 8/8) from the initial weights and inputs in tests/data/gan_ref.safetensors
 * (tests/ref/gen_gan_ref.py); losses must agree within 1e-4 relative and every weight,
 * bias and BatchNorm running statistic within 1e-5 + 1e-4 relative after the three steps
 * (they agree to ~1e-7). Adam's eps is 1e-4 here, not 1e-8: the biases just before a
 * BatchNorm have a gradient that is zero up to rounding, and with eps 1e-8 Adam turns that
 * rounding noise into full-size steps of arbitrary sign in both implementations.
 * test_objectives: the hinge and least-squares objectives' values and gradients on
 * hand-computed logits. test_projection_head: the projection discriminator's gradients
 * by finite differences. test_config_json: round trip and refusal of bad configs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "gan.h"
#include "safetensors.h"
#include "testutil.h"

static void load_into(const st_file *f, nn_params *ps, const char *prefix) {
    char name[256];
    for (int i = 0; i < ps->n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, ps->p[i].name);
        const st_tensor *t = st_find(f, name);
        if (!t) fail_msg("reference file lacks %s", name);
        assert_int_equal(st_read_f32(f, t, nn_params_val(ps, i), ps->p[i].numel), 0);
    }
}

static void compare(const st_file *f, nn_params *ps, const char *prefix) {
    char name[256];
    for (int i = 0; i < ps->n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, ps->p[i].name);
        const st_tensor *t = st_find(f, name);
        assert_non_null(t);
        float *ref = malloc(ps->p[i].numel * sizeof(float));
        assert_int_equal(st_read_f32(f, t, ref, ps->p[i].numel), 0);
        tu_assert_close(name, nn_params_val(ps, i), ref, ps->p[i].numel, 1e-5f, 1e-4f);
        free(ref);
    }
}

static void test_steps_match_pytorch(void **state) {
    (void)state;
    char *path = tu_path("data/gan_ref.safetensors");
    st_file f;
    assert_int_equal(st_open(&f, path), 0);
    gan_config cfg;
    gan_config_default(&cfg);
    cfg.z_dim = 16, cfg.g_width = 8, cfg.d_width = 8;
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    gan_model m;
    gan_model_build(&m, &cfg, &r);
    load_into(&f, &m.gp, "init.");
    load_into(&f, &m.dp, "init.");
    gan_train_opts o;
    memset(&o, 0, sizeof o);
    o.loss = GAN_LOSS_NS, o.smooth = 1.0f;
    nn_optim og = nn_adam(1e-3f, 0.5f, 0.999f, 1e-4f, 0), od = nn_adam(1e-3f, 0.5f, 0.999f, 1e-4f, 0);
    float x[8 * 784], zd[8 * 16], zg[8 * 16], losses[6];
    assert_int_equal(st_load_f32(&f, "x", x, 4, (int64_t[]){8, 1, 28, 28}), 0);
    assert_int_equal(st_load_f32(&f, "losses", losses, 1, (int64_t[]){6}), 0);
    nn_arena a;
    nn_arena_init(&a);
    for (int s = 0; s < 3; s++) {
        char nd[32], ng[32];
        snprintf(nd, sizeof nd, "z_d.%d", s);
        snprintf(ng, sizeof ng, "z_g.%d", s);
        assert_int_equal(st_load_f32(&f, nd, zd, 2, (int64_t[]){8, 16}), 0);
        assert_int_equal(st_load_f32(&f, ng, zg, 2, (int64_t[]){8, 16}), 0);
        gan_step_stats st;
        gan_d_step(&m, &od, &a, &o, x, zd, NULL, NULL, 8, &st);
        gan_g_step(&m, &og, &a, &o, zg, NULL, 8, &st);
        assert_float_equal(st.loss_d, losses[2 * s], 1e-4 * fabs(losses[2 * s]));
        assert_float_equal(st.loss_g, losses[2 * s + 1], 1e-4 * fabs(losses[2 * s + 1]));
    }
    compare(&f, &m.gp, "final.");
    compare(&f, &m.dp, "final.");
    nn_arena_free(&a);
    gan_model_free(&m);
    st_close(&f);
    free(path);
}

static void test_objectives(void **state) {
    (void)state;
    float l[3] = {-2.0f, 0.5f, 1.5f}, d[3] = {0};
    /* hinge real: relu(1 - l) = 3, 0.5, 0 -> mean 7/6; gradient -1/3 where 1 - l > 0 */
    assert_float_equal(gan_objective(GAN_LOSS_HINGE, 0, l, d, 3, 1, 1), 3.5 / 3, 1e-6);
    assert_float_equal(d[0], -1.0 / 3, 1e-6);
    assert_float_equal(d[2], 0.0, 0);
    /* hinge fake: relu(1 + l) = 0, 1.5, 2.5 -> 4/3 */
    memset(d, 0, sizeof d);
    assert_float_equal(gan_objective(GAN_LOSS_HINGE, 1, l, d, 3, 1, 1), 4.0 / 3, 1e-6);
    assert_float_equal(d[0], 0.0, 0);
    assert_float_equal(d[1], 1.0 / 3, 1e-6);
    /* hinge generator: -mean(l) = 0 */
    assert_float_equal(gan_objective(GAN_LOSS_HINGE, 2, l, NULL, 3, 1, 1), 0.0, 1e-6);
    /* least squares fake: 0.5 * mean(l^2) = 0.5 * (4 + 0.25 + 2.25) / 3 */
    memset(d, 0, sizeof d);
    assert_float_equal(gan_objective(GAN_LOSS_LS, 1, l, d, 3, 1, 1), 0.5 * 6.5 / 3, 1e-6);
    assert_float_equal(d[2], 1.5 / 3, 1e-6);
    /* non-saturating real with smoothing 0.9: BCE(l, 0.9) */
    double want = 0;
    for (int i = 0; i < 3; i++) want += log1p(exp(-fabs(l[i]))) + fmax(l[i], 0) - l[i] * 0.9;
    assert_float_equal(gan_objective(GAN_LOSS_NS, 0, l, NULL, 3, 0.9f, 1), want / 3, 1e-6);
}

typedef struct {
    gan_model *m;
    nn_arena *a;
    float *x, *c, *dc, *dx, *y, *dy;
    int N;
} head_ctx;

static void head_fwd(void *p) {
    head_ctx *h = p;
    nn_arena_reset(h->a);
    gan_d_tape t;
    memset(&t, 0, sizeof t);
    float *l = gan_d_forward(h->m, &t, h->a, h->x, h->c, h->N, 1, NULL);
    memcpy(h->y, l, (size_t)h->N * sizeof(float));
}

static void head_bwd(void *p) {
    head_ctx *h = p;
    nn_arena_reset(h->a);
    gan_d_tape t;
    memset(&t, 0, sizeof t);
    float *feat;
    gan_d_forward(h->m, &t, h->a, h->x, h->c, h->N, 1, &feat);
    float *dx = gan_d_backward(h->m, &t, h->a, h->x, h->c, feat, h->dy, h->dc, h->N, 1);
    for (int i = 0; i < h->N * 3 * 32 * 32; i++) h->dx[i] += dx[i];
}

static void check_d(int mbstd) {
    /* vector-conditioned D with spectral norm (no BatchNorm: its batch coupling and SN's
     * power iteration would both move between finite-difference evaluations) */
    gan_config cfg;
    gan_config_default(&cfg);
    cfg.res = 32, cfg.channels = 3, cfg.g_width = 4, cfg.d_width = 4, cfg.cond_dim = 5;
    cfg.d_norm = GAN_NORM_NONE, cfg.d_mbstd = mbstd;
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    gan_model m;
    gan_model_build(&m, &cfg, &r);
    nn_arena a;
    nn_arena_init(&a);
    int N = 3;
    head_ctx h = {&m, &a, NULL, NULL, NULL, NULL, NULL, NULL, N};
    h.x = tu_randn(&r, (size_t)N * 3 * 32 * 32, 1.0f);
    h.c = tu_randn(&r, (size_t)N * 5, 1.0f);
    h.dc = tu_zeros((size_t)N * 5);
    h.dx = tu_zeros((size_t)N * 3 * 32 * 32);
    h.y = tu_zeros(N), h.dy = tu_zeros(N);
    /* make the projection matter */
    t2i_rng_fill_normal(&r, nn_params_val(&m.dp, m.head_proj), (size_t)m.feat * 5, 0.0f, 0.3f);
    tu_var v[] = {
        {"c", h.c, h.dc, (size_t)N * 5},
        {"head.w", nn_params_val(&m.dp, m.head_w), nn_params_grad(&m.dp, m.head_w), (size_t)m.feat},
        {"head.proj", nn_params_val(&m.dp, m.head_proj), nn_params_grad(&m.dp, m.head_proj), (size_t)m.feat * 5},
        {"x", h.x, h.dx, (size_t)N * 3 * 32 * 32},
    };
    assert_int_equal(tu_gradcheck("projection D", &h, head_fwd, head_bwd, v, 4, h.y, h.dy, N, 1e-2f, 3e-3f, 3e-2f), 0);
    if (mbstd) {
        /* the x gradient above went through the stddev channel; the channel's effect: the
         * logit of an item changes when another item of its group does */
        assert_true(nn_params_find(&m.dp, "d.mb.0.weight") >= 0);
        head_fwd(&h);
        float l0 = h.y[0];
        for (int i = 3 * 32 * 32; i < 2 * 3 * 32 * 32; i++) h.x[i] *= 3.0f;
        head_fwd(&h);
        assert_true(fabsf(h.y[0] - l0) > 1e-4f);
    }
    free(h.x), free(h.c), free(h.dc), free(h.dx), free(h.y), free(h.dy);
    nn_arena_free(&a);
    gan_model_free(&m);
}

static void test_projection_head(void **state) {
    (void)state;
    check_d(0);
}

/* D with the minibatch-stddev tail (groups of 3 = the whole batch) */
static void test_mbstd_d(void **state) {
    (void)state;
    check_d(3);
}

static void test_config_json(void **state) {
    (void)state;
    gan_config c, d;
    gan_config_default(&c);
    c.res = 64, c.channels = 3, c.n_classes = 7, c.d_sn = 1, c.d_norm = GAN_NORM_NONE;
    char *j = gan_config_to_json(&c);
    assert_int_equal(gan_config_from_json(&d, j), 0);
    assert_int_equal(d.res, 64);
    assert_int_equal(d.n_classes, 7);
    assert_int_equal(d.d_sn, 1);
    assert_int_equal(d.d_norm, GAN_NORM_NONE);
    free(j);
    assert_int_equal(gan_config_from_json(&d, "[1,2]"), -1);
    assert_int_equal(gan_config_from_json(&d, "{\"preset\":\"dcgan\",\"res\":48}"), -1);
    c.res = 48;
    assert_int_equal(gan_config_check(&c), -1);
    assert_non_null(strstr(t2i_error_msg(), "48"));
    /* a caption GAN's probe embedding (how it recognises its text encoder) must be whole */
    gan_config t;
    gan_config_default(&t);
    t.cond_dim = 4, t.n_probe = 4;
    strcpy(t.text_encoder, "clip.safetensors");
    for (int i = 0; i < 4; i++) t.text_probe[i] = 0.5f;
    j = gan_config_to_json(&t);
    assert_int_equal(gan_config_from_json(&d, j), 0);
    assert_int_equal(d.n_probe, 4);
    free(j);
    t.n_probe = 2;
    j = gan_config_to_json(&t);
    assert_int_equal(gan_config_from_json(&d, j), -1);
    assert_non_null(strstr(t2i_error_msg(), "'text_probe' has 2 values, the text condition 'cond_dim' 4"));
    free(j);
}

static int read_gan_config(const char *json) {
    gan_config c;
    return gan_config_from_json(&c, json);
}

/* config -> JSON -> config is exact and writes the JSON back unchanged, for a class GAN and
 * a caption GAN (whose caption fields come last); every field of either refuses a damaged
 * value by name (the fields with defaults may be absent). */
static void test_config_table(void **state) {
    (void)state;
    gan_config c[2], d;
    gan_config_default(&c[0]);
    c[0].res = 64, c[0].channels = 3, c[0].n_classes = 7, c[0].d_sn = 1, c[0].d_norm = GAN_NORM_NONE;
    c[0].init_normal = 1, c[0].depth = 2, c[0].z_dim = 33;
    gan_config_default(&c[1]);
    c[1].cond_dim = 3, c[1].n_probe = 3;
    strcpy(c[1].text_encoder, "models/clip \"x\".safetensors"), strcpy(c[1].text_vocab, "v.txt");
    c[1].text_probe[0] = 0.1f, c[1].text_probe[1] = -1.0f / 3, c[1].text_probe[2] = 3e-8f;
    const char *want[2] = {"{\"preset\":\"dcgan\",\"res\":64,\"channels\":3,\"z_dim\":33,\"g_width\":64,\"d_width\":64,"
                           "\"depth\":2,\"n_classes\":7,\"cond_dim\":0,\"d_sn\":true,\"d_norm\":\"none\",\"init\":\"normal0.02\"}",
                           NULL};
    for (int k = 0; k < 2; k++) {
        char *j = gan_config_to_json(&c[k]);
        if (want[k]) assert_string_equal(j, want[k]);
        assert_int_equal(gan_config_from_json(&d, j), 0);
        assert_memory_equal(&d, &c[k], sizeof d);
        char *j2 = gan_config_to_json(&d);
        assert_string_equal(j2, j);
        tu_config_refusals(j, read_gan_config, "d_sn d_mbstd d_norm init text_encoder text_vocab");
        free(j), free(j2);
    }
    /* a config built from flags is checked by the same table */
    c[0].g_width = 2;
    assert_int_equal(gan_config_check(&c[0]), -1);
    assert_non_null(strstr(t2i_error_msg(), "'g_width' = 2 is outside [4, 1024]"));
    c[0].g_width = 64, c[0].d_norm = (gan_dnorm)5;
    assert_int_equal(gan_config_check(&c[0]), -1);
    assert_non_null(strstr(t2i_error_msg(), "'d_norm'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_match_pytorch),
        cmocka_unit_test(test_objectives),
        cmocka_unit_test(test_projection_head),
        cmocka_unit_test(test_mbstd_d),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_config_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
