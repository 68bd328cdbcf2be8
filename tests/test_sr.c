/* test_sr.c - super-resolution (gan/sr/sr.h) against independent references.
 *
 *   metrics        PSNR (RGB, Y) and SSIM (Y) against numpy implementations
 *                  (tests/ref/gen_sr_ref.py), borders 0 and 3
 *   b4_shape       the B4 generator's parameter count (from PyTorch), output shapes
 *                  for x4 and x2, and its receptive radius (20 LR pixels, derived by hand
 *                  in sr.h)
 *   torch_model    a reduced generator of the same family (width 8, 2 blocks, x4) from
 *                  shared initial weights: forward output (training path and the tiled
 *                  inference path), first gradients, 3 Adam L1 steps (losses within 1e-4
 *                  relative, final weights within 1e-4) against PyTorch
 *   tiled          tiled upscaling with the default overlap equals an untiled
 *                  nn_seq_forward within 1/255 (in fact ~1e-5); a too-small overlap does not
 *   ragan          the relativistic average loss and its gradients against PyTorch, and
 *                  its gradients by central finite differences
 *   interp_init    the interpolating init maps a constant image to itself and a smooth
 *                  image close to bilinear upsampling
 *   ckpt           training and inference checkpoints round-trip; wrong files are refused
 *                  with a one-line error naming the file
 *   sources        photo lists (sr_list_sources): recursive, sorted, hidden names and
 *                  non-images skipped, a symbolic-link loop entered once, the i % 6 rule
 *                  per source, --holdout folders held out even when another source lists
 *                  them, a Debian package's files through dpkg -L, one-line errors
 *   degrade        --degrade: bicubic is sr_make_lr and draws nothing; mix is reproducible
 *                  from the seed, uses every kind, keeps bicubic >= 50%, and its area /
 *                  blurred LRs differ from bicubic's; area is the block mean
 */
#include <math.h>
#include <setjmp.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "image_quality.h"
#include "sr.h"
#include "sr_eval.h"
#include "image.h"
#include "safetensors.h"
#include "testutil.h"
#include "torchref.h"

static int setup(void **state) {
    (void)state;
    return tu_ref_open("data/sr_ref.safetensors");
}

static double ref1(const char *name) {
    float *v = tu_ref_read(name, NULL);
    double r = v[0];
    free(v);
    return r;
}

/* ---------------------------------------------------------------- metrics */

static void test_metrics(void **state) {
    (void)state;
    const st_tensor *ta = st_find(&tu_ref, "metric.a");
    assert_non_null(ta);
    int H = (int)ta->shape[0], W = (int)ta->shape[1];
    size_t n;
    float *fa = tu_ref_read("metric.a", &n), *fb = tu_ref_read("metric.b", NULL);
    uint8_t *a = t2i_malloc(n), *b = t2i_malloc(n);
    for (size_t i = 0; i < n; i++) a[i] = (uint8_t)fa[i], b[i] = (uint8_t)fb[i];
    for (int k = 0; k <= 3; k += 3) {
        char name[64];
        snprintf(name, sizeof name, "metric.b%d.psnr_rgb", k);
        double p = t2i_psnr_rgb(a, b, H, W, k), pr = ref1(name);
        snprintf(name, sizeof name, "metric.b%d.psnr_y", k);
        double py = t2i_psnr_y(a, b, H, W, k), pyr = ref1(name);
        snprintf(name, sizeof name, "metric.b%d.ssim_y", k);
        double s = t2i_ssim_y(a, b, H, W, k), sref = ref1(name);
        printf("border %d: PSNR %.5f (ref %.5f)  PSNR-Y %.5f (ref %.5f)  SSIM-Y %.6f (ref %.6f)\n", k, p, pr, py, pyr,
               s, sref);
        assert_true(fabs(p - pr) < 1e-4);
        assert_true(fabs(py - pyr) < 1e-4);
        assert_true(fabs(s - sref) < 1e-5);
        assert_true(s > 0.1 && s < 0.99); /* the reference pair is neither equal nor unrelated */
    }
    assert_true(isinf(t2i_psnr_rgb(a, a, H, W, 3)));
    assert_true(fabs(t2i_ssim_y(a, a, H, W, 3) - 1.0) < 1e-12);
    free(fa), free(fb), free(a), free(b);
}

/* ---------------------------------------------------------------- B4 */

static void test_b4_shape(void **state) {
    (void)state;
    for (int s = 2; s <= 4; s += 2) {
        sr_config c;
        sr_config_b4(&c, s);
        assert_int_equal(sr_config_check(&c), 0);
        nn_params ps;
        nn_params_init(&ps);
        nn_seq g;
        sr_build_g(&g, &ps, &c, 5, 7);
        size_t count = nn_params_count(&ps, 1);
        /* PyTorch counts the x4 model; x2 lacks one Conv3x3(64, 256) with bias */
        size_t want = (size_t)ref1("b4.params") - (s == 2 ? 64 * 256 * 9 + 256 : 0);
        printf("b4 x%d: %zu parameters (reference %zu), output %dx%dx%d, radius %d\n", s, count, want, g.C, g.H, g.W,
               sr_receptive_radius(&g));
        assert_int_equal(count, want);
        assert_int_equal(g.C, 3);
        assert_int_equal(g.H, 5 * s);
        assert_int_equal(g.W, 7 * s);
        assert_int_equal(sr_receptive_radius(&g), 20);
        nn_params_free(&ps);
    }
    sr_config c;
    sr_config_b4(&c, 4);
    c.width = 32;
    assert_int_equal(sr_config_check(&c), -1); /* b4 is fixed */
    strcpy(c.preset, "custom");
    assert_int_equal(sr_config_check(&c), 0);
    c.scale = 3;
    assert_int_equal(sr_config_check(&c), -1);
}

/* ---------------------------------------------------------------- PyTorch model comparison */

static void load_named(nn_params *ps, const char *prefix) {
    char name[160];
    for (int i = 0; i < ps->n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, ps->p[i].name);
        size_t n;
        float *v = tu_ref_read(name, &n);
        assert_int_equal(n, ps->p[i].numel);
        memcpy(nn_params_val(ps, i), v, n * sizeof(float));
        free(v);
    }
}

/* A custom-size generator over its own store (the reduced model of the reference). */
static void small_model(sr_model *m, int h, int w) {
    memset(m, 0, sizeof *m);
    sr_config_b4(&m->cfg, 4);
    strcpy(m->cfg.preset, "custom");
    m->cfg.width = 8, m->cfg.blocks = 2;
    nn_params_init(&m->gp);
    sr_build_g(&m->g, &m->gp, &m->cfg, h, w);
    nn_params_alloc(&m->gp);
    load_named(&m->gp, "model.init.");
}

static int read_sr_config(const char *json) {
    sr_config c;
    return sr_config_from_json(&c, json);
}

/* config -> JSON -> config is exact and writes the JSON back unchanged; every field refuses
 * a damaged value by name (d_sn, which defaults to off, may be absent). */
static void test_config_table(void **state) {
    (void)state;
    sr_config c, d;
    sr_config_b4(&c, 2);
    strcpy(c.preset, "custom");
    c.width = 24, c.blocks = 3, c.crop = 48, c.d_sn = 1;
    char *j = sr_config_to_json(&c);
    assert_string_equal(j, "{\"preset\":\"custom\",\"scale\":2,\"width\":24,\"blocks\":3,\"crop\":48,\"d_width\":64,"
                           "\"d_sn\":true}");
    assert_int_equal(sr_config_from_json(&d, j), 0);
    assert_memory_equal(&c, &d, sizeof c);
    char *j2 = sr_config_to_json(&d);
    assert_string_equal(j2, j);
    tu_config_refusals(j, read_sr_config, "d_sn");
    c.d_width = 600;
    assert_int_equal(sr_config_check(&c), -1);
    assert_non_null(strstr(t2i_error_msg(), "'d_width' = 600 is outside [4, 512]"));
    free(j), free(j2);
}

static void test_torch_model(void **state) {
    (void)state;
    size_t nl, nh, ny;
    float *lr = tu_ref_read("model.lr", &nl), *hr = tu_ref_read("model.hr", &nh), *y0 = tu_ref_read("model.y0", &ny);
    float *losses = tu_ref_read("model.loss", NULL);
    sr_model m;
    small_model(&m, 6, 7);
    assert_int_equal(sr_receptive_radius(&m.g), 8);
    nn_arena a;
    nn_arena_init(&a);
    /* forward: training path */
    nn_tape t;
    memset(&t, 0, sizeof t);
    float *y = nn_seq_forward(&m.g, &t, &a, lr, 2, 1);
    tu_assert_close("forward (nn_seq)", y, y0, ny, 1e-5f, 1e-4f);
    /* forward: inference path, whole image and tiles of 3 with the exact overlap */
    size_t item_in = nl / 2, item_out = ny / 2;
    float *yi = t2i_malloc(ny * sizeof(float));
    for (int n = 0; n < 2; n++) sr_upscale_image(&m.g, 4, lr + n * item_in, 6, 7, yi + n * item_out, 0, -1);
    tu_assert_close("forward (inference)", yi, y0, ny, 1e-5f, 1e-4f);
    for (int n = 0; n < 2; n++) sr_upscale_image(&m.g, 4, lr + n * item_in, 6, 7, yi + n * item_out, 3, -1);
    tu_assert_close("forward (tiled inference)", yi, y0, ny, 1e-5f, 1e-4f);
    /* without the AVX2 kernels (direct last layer, Winograd transforms): the same */
    setenv("T2I_NO_AVX2", "1", 1);
    for (int n = 0; n < 2; n++) sr_upscale_image(&m.g, 4, lr + n * item_in, 6, 7, yi + n * item_out, 0, -1);
    unsetenv("T2I_NO_AVX2");
    tu_assert_close("forward (inference, no AVX2)", yi, y0, ny, 1e-5f, 1e-4f);
    /* first gradients */
    nn_params_zero_grad(&m.gp);
    float *dy = nn_arena_zeros(&a, ny);
    nn_l1(dy, y, hr, ny, 1.0f);
    nn_seq_backward(&m.g, &t, &a, dy, 0);
    char name[160];
    for (int i = 0; i < m.gp.n; i++) {
        snprintf(name, sizeof name, "model.grad0.%s", m.gp.p[i].name);
        float *g = tu_ref_read(name, NULL);
        tu_assert_close(name, nn_params_grad(&m.gp, i), g, m.gp.p[i].numel, 1e-6f, 1e-3f);
        free(g);
    }
    /* three Adam steps */
    nn_optim opt = nn_adam(1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    for (int s = 0; s < 3; s++) {
        float l = sr_l1_step(&m, &opt, &a, lr, hr, 2, 1e-3f);
        printf("step %d: L1 %.7f (PyTorch %.7f)\n", s + 1, l, losses[s]);
        assert_true(fabsf(l - losses[s]) <= 1e-4f * fabsf(losses[s]));
    }
    double worst = 0.0, moved = 0.0;
    for (int i = 0; i < m.gp.n; i++) {
        snprintf(name, sizeof name, "model.final.%s", m.gp.p[i].name);
        size_t n;
        float *w = tu_ref_read(name, &n);
        snprintf(name, sizeof name, "model.init.%s", m.gp.p[i].name);
        float *w0 = tu_ref_read(name, NULL);
        const float *c = nn_params_val(&m.gp, i);
        for (size_t k = 0; k < n; k++) {
            worst = fmax(worst, fabs(c[k] - w[k]));
            moved = fmax(moved, fabs(w[k] - w0[k]));
        }
        free(w), free(w0);
    }
    printf("final weights: max |C - PyTorch| %.3g (largest change in 3 steps %.3g)\n", worst, moved);
    assert_true(worst <= 1e-4);
    assert_true(moved > 2e-3); /* the steps did move the weights well beyond the tolerance */
    nn_arena_free(&a);
    nn_params_free(&m.gp);
    free(lr), free(hr), free(y0), free(yi), free(losses);
}

/* ---------------------------------------------------------------- tiled == untiled */

static void test_tiled(void **state) {
    (void)state;
    sr_config c;
    sr_config_b4(&c, 4);
    strcpy(c.preset, "custom");
    c.width = 16; /* b4's depth (radius 20) at a quarter of its width, to stay fast */
    const int h = 45, w = 38;
    nn_params ps;
    nn_params_init(&ps);
    nn_seq g;
    sr_build_g(&g, &ps, &c, h, w);
    nn_params_alloc(&ps);
    t2i_rng r;
    t2i_rng_seed(&r, 77);
    nn_seq_init_params(&g, &r, NN_INIT_PYTORCH);
    int radius = sr_receptive_radius(&g);
    assert_int_equal(radius, 20);
    size_t nin = (size_t)3 * h * w, nout = nin * 16;
    float *x = t2i_malloc(nin * sizeof(float));
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                x[((size_t)ch * h + y) * w + xx] =
                    0.6f * sinf(0.3f * xx + ch) * cosf(0.21f * y) + 0.2f * t2i_rng_normal(&r);
    nn_arena a;
    nn_arena_init(&a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    const float *ref_y = nn_seq_forward(&g, &t, &a, x, 1, 0);
    double scale = 0.0;
    for (size_t i = 0; i < nout; i++) scale = fmax(scale, fabs(ref_y[i]));
    float *y = t2i_malloc(nout * sizeof(float));
    struct {
        int tile, overlap;
        double bound;
    } cases[] = {
        {0, -1, 1e-4}, {16, -1, 1.0 / 255}, {13, 20, 1.0 / 255}, {16, 30, 1.0 / 255}, {16, 6, -1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sr_upscale_image(&g, 4, x, h, w, y, cases[k].tile, cases[k].overlap);
        double d = tu_max_abs_diff(y, ref_y, nout, NULL) / 2.0; /* in [0, 1] units */
        printf("tile %d overlap %d: max |tiled - untiled| = %.3g (output range %.3g)\n", cases[k].tile,
               cases[k].overlap, d, scale);
        if (cases[k].bound > 0)
            assert_true(d <= cases[k].bound);
        else
            assert_true(d > 1e-5); /* below the receptive radius: seams, 1000x the rounding */
    }
    assert_true(scale > 0.05);
    nn_arena_free(&a);
    nn_params_free(&ps);
    free(x), free(y);
}

/* ---------------------------------------------------------------- relativistic loss */

typedef struct {
    float *r, *f;
    int n, for_g;
} ragan_ctx;

static double ragan_value(ragan_ctx *c) { return sr_ragan_loss(c->r, c->f, c->n, NULL, NULL, c->for_g, 1.0f); }

static void test_ragan(void **state) {
    (void)state;
    size_t n;
    float *r = tu_ref_read("ragan.r", &n), *f = tu_ref_read("ragan.f", NULL);
    for (int who = 0; who < 2; who++) {
        const char *w = who ? "g" : "d";
        char name[64];
        float *dr = tu_zeros(n), *df = tu_zeros(n);
        float loss = sr_ragan_loss(r, f, (int)n, dr, df, who, 1.0f);
        snprintf(name, sizeof name, "ragan.%s.loss", w);
        double want = ref1(name);
        printf("RaGAN %s loss %.7f (PyTorch %.7f)\n", w, loss, want);
        assert_true(fabs(loss - want) < 1e-5);
        snprintf(name, sizeof name, "ragan.%s.dr", w);
        float *g = tu_ref_read(name, NULL);
        tu_assert_close(name, dr, g, n, 1e-6f, 1e-4f);
        free(g);
        snprintf(name, sizeof name, "ragan.%s.df", w);
        g = tu_ref_read(name, NULL);
        tu_assert_close(name, df, g, n, 1e-6f, 1e-4f);
        free(g);
        /* central finite differences, and the scale argument (gradients add scaled) */
        ragan_ctx c = {r, f, (int)n, who};
        float *dr2 = tu_zeros(n), *df2 = tu_zeros(n);
        memcpy(dr2, dr, n * sizeof(float));
        sr_ragan_loss(r, f, (int)n, dr2, df2, who, 0.5f);
        const float h = 1e-2f;
        for (size_t i = 0; i < n; i++) {
            for (int which = 0; which < 2; which++) {
                float *v = which ? f : r;
                float keep = v[i];
                v[i] = keep + h;
                double lp = ragan_value(&c);
                v[i] = keep - h;
                double lm = ragan_value(&c);
                v[i] = keep;
                double num = (lp - lm) / (2.0 * h), ana = which ? df[i] : dr[i];
                assert_true(fabs(num - ana) <= 2e-4 + 1e-2 * fabs(num));
            }
            assert_true(fabsf(dr2[i] - 1.5f * dr[i]) <= 1e-6f);
            assert_true(fabsf(df2[i] - 0.5f * df[i]) <= 1e-6f);
        }
        free(dr), free(df), free(dr2), free(df2);
    }
    free(r), free(f);
}

/* ---------------------------------------------------------------- feature matching */

/* FM of a small D (16 x 16 crops, width 4): its value against the mean absolute
 * differences of every activation's outputs recomputed here, and its gradient with
 * respect to the fake image (through D's backward pass, nn_seq_backward_ex) against
 * central differences at 48 pixels; weight 0 leaves nothing. */
static double fm_value(sr_model *m, nn_arena *a, const float *hr, const float *x, int B, float w) {
    nn_arena_reset(a);
    nn_tape tr, tf;
    memset(&tr, 0, sizeof tr), memset(&tf, 0, sizeof tf);
    nn_seq_forward(&m->d, &tr, a, hr, B, 0);
    nn_seq_forward(&m->d, &tf, a, x, B, 0);
    return sr_feature_match(&m->d, &tr, &tf, a, w, NULL);
}

static void test_feature_match(void **state) {
    (void)state;
    sr_config c;
    sr_config_b4(&c, 4);
    strcpy(c.preset, "custom");
    c.width = 8, c.blocks = 1, c.crop = 16, c.d_width = 4;
    t2i_rng r;
    t2i_rng_seed(&r, 21);
    sr_model m;
    sr_model_build(&m, &c, &r);
    const int B = 2;
    size_t n = (size_t)B * 3 * 16 * 16;
    float *hr = tu_randn(&r, n, 0.5f), *x = tu_randn(&r, n, 0.5f);
    nn_arena a;
    nn_arena_init(&a);
    const float w = 0.7f;
    /* the value, recomputed layer by layer */
    nn_tape tr, tf;
    memset(&tr, 0, sizeof tr), memset(&tf, 0, sizeof tf);
    nn_seq_forward(&m.d, &tr, &a, hr, B, 0);
    nn_seq_forward(&m.d, &tf, &a, x, B, 0);
    double want = 0;
    int L = 0;
    for (int i = 0; i < m.d.n; i++) {
        if (m.d.L[i].kind != NN_L_ACT) continue;
        size_t k = (size_t)B * m.d.L[i].OC * m.d.L[i].OH * m.d.L[i].OW;
        double s = 0;
        for (size_t j = 0; j < k; j++) s += fabs((double)tf.out[i][j] - tr.out[i][j]);
        want += s / k, L++;
    }
    assert_int_equal(L, 5); /* the first conv's and the four strided ones' LeakyReLUs */
    want = w * want / L;
    const float *dout[NN_SEQ_MAX];
    float got = sr_feature_match(&m.d, &tr, &tf, &a, w, dout);
    printf("feature matching %.7f (recomputed %.7f)\n", got, want);
    assert_true(fabs(got - want) <= 1e-6 * (1 + want));
    /* the gradient with respect to the fake image */
    m.d.frozen = 1;
    float *zero = tu_zeros((size_t)B * nn_seq_out_size(&m.d));
    float *dx = nn_seq_backward_ex(&m.d, &tf, &a, zero, 1, dout);
    float *g = tu_zeros(n);
    memcpy(g, dx, n * sizeof(float));
    const float h = 1e-3f;
    for (int t = 0; t < 48; t++) {
        size_t i = (size_t)t * 61 % n;
        float keep = x[i];
        x[i] = keep + h;
        double lp = fm_value(&m, &a, hr, x, B, w);
        x[i] = keep - h;
        double lm = fm_value(&m, &a, hr, x, B, w);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        if (fabs(num - g[i]) > 2e-4 + 3e-2 * fabs(num)) printf("pixel %zu: analytic %g numeric %g\n", i, g[i], num);
        assert_true(fabs(num - g[i]) <= 2e-4 + 3e-2 * fabs(num));
    }
    assert_true(fm_value(&m, &a, hr, x, B, 0.0f) == 0.0);
    free(zero), free(g), free(hr), free(x);
    nn_arena_free(&a);
    sr_model_free(&m);
}

/* ---------------------------------------------------------------- interpolating init */

static void test_interp_init(void **state) {
    (void)state;
    sr_config c;
    sr_config_b4(&c, 4);
    strcpy(c.preset, "custom");
    c.width = 16, c.blocks = 2, c.crop = 64;
    t2i_rng r;
    t2i_rng_seed(&r, 3);
    sr_model m;
    sr_model_build(&m, &c, &r);
    sr_init_interp(&m);
    const int h = 20, w = 24;
    size_t nin = (size_t)3 * h * w, nout = nin * 16;
    float *x = t2i_malloc(nin * sizeof(float)), *y = t2i_malloc(nout * sizeof(float));
    float *bl = t2i_malloc(nout * sizeof(float));
    for (size_t i = 0; i < nin; i++) x[i] = i < nin / 3 ? -0.3f : i < 2 * nin / 3 ? 0.5f : 0.9f;
    sr_upscale_image(&m.ema, 4, x, h, w, y, 0, -1);
    /* a constant image stays constant away from the zero-padded border */
    for (int ch = 0; ch < 3; ch++)
        for (int yy = 4; yy < 4 * h - 4; yy++)
            for (int xx = 4; xx < 4 * w - 4; xx++)
                assert_true(fabsf(y[((size_t)ch * 4 * h + yy) * 4 * w + xx] - x[(size_t)ch * h * w]) < 1e-5f);
    /* a smooth image: within 1/255 of bilinear x4 in the interior */
    for (int ch = 0; ch < 3; ch++)
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < w; xx++)
                x[((size_t)ch * h + yy) * w + xx] = 0.8f * sinf(0.2f * xx + ch) * cosf(0.15f * yy);
    sr_upscale_image(&m.ema, 4, x, h, w, y, 0, -1);
    t2i_resize_chw(bl, x, 3, h, w, 4 * h, 4 * w, T2I_RESIZE_BILINEAR);
    double worst = 0.0;
    for (int ch = 0; ch < 3; ch++)
        for (int yy = 8; yy < 4 * h - 8; yy++)
            for (int xx = 8; xx < 4 * w - 8; xx++) {
                size_t k = ((size_t)ch * 4 * h + yy) * 4 * w + xx;
                worst = fmax(worst, fabs(y[k] - bl[k]) / 2.0);
            }
    printf("interp init vs bilinear x4: max difference %.4f (in [0, 1])\n", worst);
    assert_true(worst < 1.0 / 255);
    /* the batch API: (2, 3, h, w) -> (2, 3, 4h, 4w), each item as the single-image call, clamped */
    float *x2 = t2i_malloc(2 * nin * sizeof(float)), *y2 = t2i_malloc(2 * nout * sizeof(float));
    for (size_t i = 0; i < nin; i++) x2[i] = x[i], x2[nin + i] = 1.4f * x[nin - 1 - i]; /* goes beyond [-1, 1] */
    sr_upscale_batch(&m, x2, 2, h, w, y2);
    for (int n = 0; n < 2; n++) {
        sr_upscale_image(&m.ema, 4, x2 + n * nin, h, w, y, 0, -1);
        for (size_t k = 0; k < nout; k++) {
            float want = y[k] < -1.0f ? -1.0f : y[k] > 1.0f ? 1.0f : y[k];
            assert_true(fabsf(y2[n * nout + k] - want) < 1e-6f);
        }
    }
    free(x2), free(y2);
    free(x), free(y), free(bl);
    sr_model_free(&m);
}

/* ---------------------------------------------------------------- checkpoints */

static void test_ckpt(void **state) {
    (void)state;
    sr_config c;
    sr_config_b4(&c, 2);
    strcpy(c.preset, "custom");
    c.width = 8, c.blocks = 1, c.crop = 32, c.d_width = 8, c.d_sn = 1;
    t2i_rng r;
    t2i_rng_seed(&r, 5);
    sr_model m;
    sr_model_build(&m, &c, &r);
    for (int i = 0; i < m.ep.n; i++) /* EMA differs from G */
        t2i_rng_fill_normal(&r, nn_params_val(&m.ep, i), m.ep.p[i].numel, 0.0f, 1.0f);
    char *dir = tu_tmpdir();
    char *full = t2i_asprintf("%s/full.safetensors", dir), *inf = t2i_asprintf("%s/inf.safetensors", dir);
    assert_int_equal(sr_save(&m, full, "{\"step\":3}", 1), 0);
    assert_int_equal(sr_save(&m, inf, NULL, 0), 0);
    sr_model a, b;
    char *st = NULL;
    assert_int_equal(sr_load(&a, full, 1, &st), 0);
    assert_non_null(st);
    assert_string_equal(st, "{\"step\":3}");
    free(st);
    assert_int_equal(a.cfg.d_sn, 1);
    assert_int_equal(a.cfg.width, 8);
    assert_memory_equal(a.gp.data, m.gp.data, m.gp.total * sizeof(float));
    assert_memory_equal(a.dp.data, m.dp.data, m.dp.total * sizeof(float));
    assert_memory_equal(a.ep.data, m.ep.data, m.ep.total * sizeof(float));
    assert_int_equal(sr_load(&b, inf, 0, NULL), 0);
    assert_memory_equal(b.ep.data, m.ep.data, m.ep.total * sizeof(float));
    assert_int_equal(b.has_training, 0);
    sr_model_free(&a), sr_model_free(&b);
    /* an inference checkpoint cannot be trained from; other files are refused */
    assert_int_equal(sr_load(&a, inf, 1, NULL), -1);
    assert_non_null(strstr(t2i_error_msg(), inf));
    char *other = tu_path("data/st_ref.safetensors");
    assert_int_equal(sr_load(&a, other, 0, NULL), -1);
    printf("non-SR file: %s\n", t2i_error_msg());
    assert_non_null(strstr(t2i_error_msg(), other));
    assert_null(strchr(t2i_error_msg(), '\n'));
    char *missing = t2i_asprintf("%s/missing.safetensors", dir);
    assert_int_equal(sr_load(&a, missing, 0, NULL), -1);
    assert_non_null(strstr(t2i_error_msg(), missing));
    sr_model_free(&m);
    tu_rmtree(dir);
    free(dir), free(full), free(inf), free(other), free(missing);
}

/* `t2i sr upscale` streams rows of tiles into the PNG: the file holds exactly the pixels
 * of the in-memory path, for tiles that do and do not divide the image. */

static void touch(const char *dir, const char *name) {
    char *p = t2i_asprintf("%s/%s", dir, name);
    tu_write_bytes(p, "x", 1);
    free(p);
}

static void test_sources(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *a = t2i_asprintf("%s/a", dir), *sub = t2i_asprintf("%s/a/sub", dir), *h = t2i_asprintf("%s/h", dir);
    assert_int_equal(t2i_mkdirs(sub), 0);
    assert_int_equal(t2i_mkdirs(h), 0);
    /* 13 images in a (two in sub), a hidden one, a text file, a loop back to a */
    const char *names[] = {"p00.png", "p01.jpg", "p02.JPEG", "p03.bmp", "p04.ppm", "p05.webp", "p06.png",
                           "p07.png", "p08.png", "p09.png", "p10.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) touch(a, names[i]);
    touch(sub, "q1.png"), touch(sub, "q2.webp"), touch(a, ".hidden.png"), touch(a, "notes.txt");
    char *loop = t2i_asprintf("%s/loop", sub);
    assert_int_equal(symlink(a, loop), 0);
    touch(h, "z.png");
    sr_filelist fl;
    sr_sources src = {.data = a};
    assert_int_equal(sr_list_sources(&fl, &src), 0);
    assert_int_equal(fl.n, 13); /* the loop adds nothing: a is entered once */
    char *want = t2i_asprintf("%s/p05.webp", a);
    assert_string_equal(fl.files[5], want);
    free(want);
    want = t2i_asprintf("%s/sub/q2.webp", a);
    assert_string_equal(fl.files[12], want); /* "p..." < "sub/...": sorted by whole path */
    free(want);
    for (int i = 0; i < fl.n; i++)
        if (fl.heldout[i] != (i == 5 || i == 11)) fail_msg("%s: heldout %d", fl.files[i], fl.heldout[i]);
    sr_filelist_free(&fl);
    /* two sources: the rule per source (h's single file is index 0: trained on) */
    char *both = t2i_asprintf("%s:%s", a, h);
    src.data = both;
    assert_int_equal(sr_list_sources(&fl, &src), 0);
    assert_int_equal(fl.n, 14);
    assert_int_equal(fl.heldout[13], 0);
    sr_filelist_free(&fl);
    /* --holdout sub: its files held out although a lists them too, nothing else held out
     * (without the loop, through which sub would reach all of a) */
    assert_int_equal(unlink(loop), 0);
    src.data = a, src.holdout_dirs = sub;
    assert_int_equal(sr_list_sources(&fl, &src), 0);
    assert_int_equal(fl.n, 13);
    int held = 0;
    for (int i = 0; i < fl.n; i++) {
        held += fl.heldout[i];
        if (fl.heldout[i] != tu_contains(fl.files[i], "/sub/")) fail_msg("%s: heldout %d", fl.files[i], fl.heldout[i]);
    }
    assert_int_equal(held, 2);
    sr_filelist_free(&fl);
    /* errors name the source */
    char *nope = t2i_asprintf("%s/nope", dir);
    sr_sources bad = {.data = nope};
    assert_int_equal(sr_list_sources(&fl, &bad), -1);
    tu_assert_error_contains("nope: cannot open folder");
    sr_sources badpkg = {.packages = "no-such-package-t2i"};
    assert_int_equal(sr_list_sources(&fl, &badpkg), -1);
    tu_assert_error_contains("--package no-such-package-t2i: not an installed Debian package");
    sr_sources quote = {.packages = "x'; rm -rf /"};
    assert_int_equal(sr_list_sources(&fl, &quote), -1);
    tu_assert_error_contains("not a Debian package name");
    /* a package (setup.sh installs mate-backgrounds): its images under /usr/share/backgrounds/mate,
     * GreenMeadow.jpg among them; held out whole */
    sr_sources pkg = {.holdout_packages = "mate-backgrounds"};
    assert_int_equal(sr_list_sources(&fl, &pkg), 0);
    assert_true(fl.n >= 12);
    int meadow = 0;
    for (int i = 0; i < fl.n; i++) {
        assert_true(strncmp(fl.files[i], "/usr/share/backgrounds/mate/", 28) == 0);
        assert_int_equal(fl.heldout[i], 1);
        meadow += strcmp(fl.files[i], "/usr/share/backgrounds/mate/nature/GreenMeadow.jpg") == 0;
        if (i) assert_true(strcmp(fl.files[i - 1], fl.files[i]) < 0);
    }
    assert_int_equal(meadow, 1);
    sr_filelist_free(&fl);
    free(nope), free(both), free(loop), free(a), free(sub), free(h);
    tu_rmtree(dir);
    free(dir);
}

static void test_degrade(void **state) {
    (void)state;
    enum { P = 32, S = 4, L = P / S };
    size_t hn = (size_t)3 * P * P, ln = (size_t)3 * L * L;
    t2i_rng r;
    t2i_rng_seed(&r, 7);
    float *hr = tu_randn(&r, hn, 0.4f), *a = t2i_malloc(ln * sizeof(float)), *b = t2i_malloc(ln * sizeof(float));
    /* bicubic: sr_make_lr bit for bit, and no draw */
    t2i_rng r1, r2;
    t2i_rng_seed(&r1, 3), t2i_rng_seed(&r2, 3);
    sr_make_lr(a, hr, P, P, S);
    assert_int_equal(sr_make_lr_degraded(b, hr, P, P, S, SR_DEGRADE_BICUBIC, &r1), SR_LR_BICUBIC);
    assert_memory_equal(a, b, ln * sizeof(float));
    assert_true(t2i_rng_uniform(&r1) == t2i_rng_uniform(&r2));
    /* mix: the same seed gives the same kinds and pixels; every kind appears; bicubic most */
    int count[4] = {0}, differ[4] = {0};
    t2i_rng_seed(&r1, 11), t2i_rng_seed(&r2, 11);
    for (int k = 0; k < 400; k++) {
        sr_degrade_kind k1 = sr_make_lr_degraded(a, hr, P, P, S, SR_DEGRADE_MIX, &r1);
        sr_degrade_kind k2 = sr_make_lr_degraded(b, hr, P, P, S, SR_DEGRADE_MIX, &r2);
        assert_int_equal(k1, k2);
        assert_memory_equal(a, b, ln * sizeof(float));
        count[k1]++;
        sr_make_lr(b, hr, P, P, S);
        differ[k1] += memcmp(a, b, ln * sizeof(float)) != 0;
    }
    for (int k = 0; k < 4; k++) assert_true(count[k] > 20);
    assert_true(count[SR_LR_BICUBIC] >= 180 && count[SR_LR_BICUBIC] <= 260); /* 55% of 400, +-4 sigma */
    assert_int_equal(differ[SR_LR_BICUBIC], 0);
    assert_int_equal(differ[SR_LR_AREA], count[SR_LR_AREA]);
    assert_int_equal(differ[SR_LR_BILINEAR], count[SR_LR_BILINEAR]);
    /* a blur of sigma near 0.05 changes no 8-bit level; most do */
    assert_true(differ[SR_LR_BLUR_BICUBIC] > count[SR_LR_BLUR_BICUBIC] / 2);
    /* area: each LR pixel is the rounded mean of its 4 x 4 block */
    for (;;) {
        if (sr_make_lr_degraded(a, hr, P, P, S, SR_DEGRADE_MIX, &r1) == SR_LR_AREA) break;
    }
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < L; y++)
            for (int x = 0; x < L; x++) {
                double m = 0.0;
                for (int dy = 0; dy < S; dy++)
                    for (int dx = 0; dx < S; dx++) m += hr[((size_t)c * P + y * S + dy) * P + x * S + dx];
                m /= S * S;
                float q = (float)m;
                sr_quantize(&q, 1);
                assert_true(fabsf(a[((size_t)c * L + y) * L + x] - q) < 1e-6f);
            }
    sr_degrade d;
    assert_int_equal(sr_degrade_parse("mix", &d), 0);
    assert_int_equal(d, SR_DEGRADE_MIX);
    assert_int_equal(sr_degrade_parse("gauss", &d), -1);
    tu_assert_error_contains("--degrade must be bicubic or mix, got 'gauss'");
    free(hr), free(a), free(b);
}

static void test_upscale_png(void **state) {
    (void)state;
    sr_config c;
    sr_config_b4(&c, 2);
    strcpy(c.preset, "custom");
    c.width = 8, c.blocks = 1, c.crop = 32, c.d_width = 8;
    t2i_rng r;
    t2i_rng_seed(&r, 9);
    sr_model m;
    sr_model_build(&m, &c, &r);
    for (int i = 0; i < m.ep.n; i++) t2i_rng_fill_normal(&r, nn_params_val(&m.ep, i), m.ep.p[i].numel, 0.0f, 0.2f);
    t2i_image in;
    t2i_image_alloc(&in, 23, 17, 3);
    for (size_t i = 0; i < (size_t)23 * 17 * 3; i++) in.px[i] = (uint8_t)t2i_rng_below(&r, 256);
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/up.png", dir);
    const int tiles[] = {0, 5, 8, 17};
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++) {
        t2i_image want, got;
        sr_upscale_u8(&m, &in, &want, tiles[k], -1);
        assert_int_equal(sr_upscale_png(&m, &in, p, tiles[k], -1, 0), 0);
        if (t2i_image_load(&got, p, 3) != 0) fail_msg("%s", t2i_error_msg());
        assert_int_equal(got.w, 46);
        assert_int_equal(got.h, 34);
        assert_memory_equal(got.px, want.px, (size_t)46 * 34 * 3);
        t2i_image_free(&want), t2i_image_free(&got);
    }
    /* an unwritable destination: an error naming it */
    char *bad = t2i_asprintf("%s/no/such/up.png", dir);
    assert_int_equal(sr_upscale_png(&m, &in, bad, 8, -1, 0), -1);
    assert_non_null(strstr(t2i_error_msg(), bad));
    tu_rmtree(dir);
    free(dir), free(p), free(bad);
    t2i_image_free(&in);
    sr_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics), cmocka_unit_test(test_b4_shape), cmocka_unit_test(test_config_table), cmocka_unit_test(test_torch_model),
        cmocka_unit_test(test_tiled),   cmocka_unit_test(test_ragan),    cmocka_unit_test(test_feature_match),
        cmocka_unit_test(test_interp_init),
        cmocka_unit_test(test_ckpt),    cmocka_unit_test(test_upscale_png), cmocka_unit_test(test_sources),
        cmocka_unit_test(test_degrade),
    };
    return cmocka_run_group_tests(tests, setup, tu_ref_teardown);
}
