/* test_data.c - datasets (IDX, Fashion-MNIST, FC32, image/class/caption folders) and the
 * batch loader (data/data.h, data/fc32.h).
 *
 * Reference values: tests/data/fc32_ref.json, written by tests/ref/gen_fc32_ref.py, which
 * reads Fashion-MNIST with Python's gzip module and rebuilds FC32 items from fc32.h's
 * definition (its own xoshiro/SplitMix code, exact fractions for the pixels) for 41 items
 * of each split. Everything else is checked against values built here by hand: IDX files
 * written byte by byte, striped PNGs whose centre crop has a known colour, loader batches
 * compared with the items they claim to be and with the transforms they may have had.
 *
 * Needs Debian's dataset-fashion-mnist (CI installs it): the Fashion-MNIST tests fail,
 * not skip, when it is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base.h"
#include "data.h"
#include "fc32.h"
#include "image.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers ---- */

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

#define assert_error_contains(needle)                                                                        \
    do {                                                                                                     \
        if (!contains(t2i_error_msg(), (needle)))                                                            \
            fail_msg("error '%s' lacks '%s'", t2i_error_msg(), (needle));                                    \
    } while (0)

/* A w x h image whose columns are a for x < w/8, c for x >= 7w/8, b between (all
 * channels the same value) - or rows when `rows` is set. A centre crop of it, resized
 * by up to 4x, sees only b even with the bicubic filter's widened support. */
static void save_stripes(const char *path, int w, int h, int c, uint8_t a, uint8_t b, uint8_t cc, int rows) {
    uint8_t *px = t2i_malloc((size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int t = rows ? y : x, n = rows ? h : w;
            uint8_t v = t < n / 8 ? a : t >= 7 * n / 8 ? cc : b;
            for (int k = 0; k < c; k++) px[((size_t)y * w + x) * c + k] = v;
        }
    assert_int_equal(t2i_image_save_png(path, px, w, h, c), 0);
    free(px);
}

static void save_solid(const char *path, int w, int h, int c, const uint8_t *rgb) {
    uint8_t *px = t2i_malloc((size_t)w * h * c);
    for (size_t i = 0; i < (size_t)w * h; i++)
        for (int k = 0; k < c; k++) px[i * c + k] = rgb[k];
    assert_int_equal(t2i_image_save_png(path, px, w, h, c), 0);
    free(px);
}

/* Every value of an item within tol of v/127.5 - 1 (u8 v). */
static void assert_all_near(const float *x, size_t n, int v, float tol) {
    float want = (float)v / 127.5f - 1.0f;
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i] - want) > tol) fail_msg("value %zu is %g, want %g (u8 %d)", i, x[i], want, v);
}

static cJSON *load_ref(void) {
    char *p = tu_path("data/fc32_ref.json");
    size_t len;
    char *txt = t2i_read_file(p, &len, 0);
    if (!txt) fail_msg("%s", t2i_error_msg());
    cJSON *j = cJSON_Parse(txt);
    assert_non_null(j);
    free(txt);
    free(p);
    return j;
}

static int jint(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valueint;
}

/* Fashion-MNIST is decoded once per split and shared by the tests (each decode of the
 * train split costs about half a second). */
static t2i_dataset g_fm[2];
static int g_fm_loaded[2];

static const t2i_dataset *fm_split(int test) {
    if (!g_fm_loaded[test]) {
        if (t2i_dataset_fashion_mnist(&g_fm[test], test ? "test" : "train") != 0)
            fail_msg("%s", t2i_error_msg());
        g_fm_loaded[test] = 1;
    }
    return &g_fm[test];
}

/* --------------------------------------------------------------------- IDX ---- */

static void test_idx_raw_and_gz(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    /* 3 images of 2 x 4, pixel j of image i = 10 * i + j; labels 2, 0, 1 */
    uint8_t img[16 + 24], lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1};
    put_be32(img, 0x803);
    put_be32(img + 4, 3);
    put_be32(img + 8, 2);
    put_be32(img + 12, 4);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 8; j++) img[16 + i * 8 + j] = (uint8_t)(10 * i + j);
    char *ri = t2i_asprintf("%s/img-idx3-ubyte", dir), *rl = t2i_asprintf("%s/lab-idx1-ubyte", dir);
    char *gi = t2i_asprintf("%s/img-idx3-ubyte.gz", dir), *gl = t2i_asprintf("%s/lab-idx1-ubyte.gz", dir);
    write_bytes(ri, img, sizeof img);
    write_bytes(rl, lab, sizeof lab);
    write_gz(gi, img, sizeof img);
    write_gz(gl, lab, sizeof lab);
    const char *pairs[2][2] = {{ri, rl}, {gi, gl}};
    for (int t = 0; t < 2; t++) {
        t2i_dataset ds;
        if (t2i_dataset_idx(&ds, pairs[t][0], pairs[t][1]) != 0) fail_msg("%s", t2i_error_msg());
        assert_int_equal(ds.n, 3);
        assert_int_equal(ds.C, 1);
        assert_int_equal(ds.H, 2);
        assert_int_equal(ds.W, 4);
        assert_memory_equal(ds.mem, img + 16, 24);
        assert_int_equal(ds.labels[0], 2);
        assert_int_equal(ds.labels[1], 0);
        assert_int_equal(ds.labels[2], 1);
        assert_int_equal(ds.n_classes, 3);
        float x[8];
        assert_int_equal(t2i_dataset_get(&ds, 2, x), 0);
        for (int j = 0; j < 8; j++) assert_float_equal(x[j], (20 + j) / 127.5f - 1.0f, 1e-6);
        t2i_dataset_free(&ds);
    }
    /* images without labels */
    t2i_dataset ds;
    assert_int_equal(t2i_dataset_idx(&ds, gi, NULL), 0);
    assert_null(ds.labels);
    t2i_dataset_free(&ds);

    /* wrong magic: a label file given as images */
    assert_int_equal(t2i_dataset_idx(&ds, rl, NULL), -1);
    assert_error_contains(rl);
    assert_error_contains("0x00000803");
    /* truncated pixels, raw and gzip */
    char *ti = t2i_asprintf("%s/trunc-idx3-ubyte", dir), *tg = t2i_asprintf("%s/trunc-idx3-ubyte.gz", dir);
    write_bytes(ti, img, sizeof img - 5);
    write_gz(tg, img, sizeof img - 5);
    assert_int_equal(t2i_dataset_idx(&ds, ti, NULL), -1);
    assert_error_contains(ti);
    assert_error_contains("truncated");
    assert_int_equal(t2i_dataset_idx(&ds, tg, rl), -1);
    assert_error_contains(tg);
    assert_error_contains("truncated");
    /* a gzip stream cut short */
    FILE *f = fopen(gi, "rb");
    uint8_t gzb[256];
    size_t gn = fread(gzb, 1, sizeof gzb, f);
    fclose(f);
    char *cut = t2i_asprintf("%s/cut-idx3-ubyte.gz", dir);
    write_bytes(cut, gzb, gn - 12);
    assert_int_equal(t2i_dataset_idx(&ds, cut, NULL), -1);
    assert_error_contains(cut);
    /* label count mismatch */
    lab[7] = 2;
    write_bytes(rl, lab, 10);
    assert_int_equal(t2i_dataset_idx(&ds, ri, rl), -1);
    assert_error_contains(rl);
    /* missing file */
    char *missing = t2i_asprintf("%s/nope.gz", dir);
    assert_int_equal(t2i_dataset_idx(&ds, missing, NULL), -1);
    assert_error_contains(missing);
    free(missing);
    free(cut);
    free(ti);
    free(tg);
    free(ri);
    free(rl);
    free(gi);
    free(gl);
    tu_rmtree(dir);
    free(dir);
}

/* ----------------------------------------------------------- Fashion-MNIST ---- */

static void test_fashion_mnist(void **state) {
    (void)state;
    cJSON *ref = load_ref();
    const char *splits[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(ref, splits[s]);
        const t2i_dataset ds = *fm_split(s);
        assert_int_equal(ds.n, s == 0 ? 60000 : 10000);
        assert_int_equal(ds.n, jint(r, "n"));
        assert_int_equal(ds.C, 1);
        assert_int_equal(ds.H, 28);
        assert_int_equal(ds.W, 28);
        assert_int_equal(ds.n_classes, 10);
        assert_string_equal(ds.class_names[0], "t-shirt");
        assert_string_equal(ds.class_names[9], "ankle boot");
        int hist[10] = {0};
        for (int i = 0; i < ds.n; i++) {
            assert_in_range(ds.labels[i], 0, 9);
            hist[ds.labels[i]]++;
        }
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "hist");
        for (int k = 0; k < 10; k++) {
            assert_int_equal(hist[k], cJSON_GetArrayItem(h, k)->valueint);
            if (s == 0) assert_int_equal(hist[k], 6000);
        }
        const cJSON *fl = cJSON_GetObjectItemCaseSensitive(r, "first_labels");
        for (int k = 0; k < 10; k++) assert_int_equal(ds.labels[k], cJSON_GetArrayItem(fl, k)->valueint);
        if (s == 0) assert_int_equal(ds.labels[0], 9); /* the first train item is an ankle boot */
        long s0 = 0, s1 = 0;
        for (int j = 0; j < 784; j++) {
            s0 += ds.mem[j];
            s1 += ds.mem[(size_t)(ds.n - 1) * 784 + j];
        }
        assert_int_equal(s0, jint(r, "pixel_sum_item0"));
        assert_int_equal(s1, jint(r, "pixel_sum_last"));
        assert_string_equal(ds.source, s == 0 ? "fashion-mnist:train" : "fashion-mnist:test");
    }
    cJSON_Delete(ref);

    /* opening by name, converted to 3 x 32 x 32 */
    t2i_dataset ds;
    if (t2i_dataset_open(&ds, "fashion-mnist:test", 3, 32, 32) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.C, 3);
    assert_int_equal(ds.H, 32);
    assert_int_equal(ds.W, 32);
    float *x = t2i_malloc(3 * 32 * 32 * sizeof(float));
    assert_int_equal(t2i_dataset_get(&ds, 0, x), 0);
    float mx = -1;
    for (int j = 0; j < 1024; j++) {
        assert_float_equal(x[j], x[1024 + j], 0); /* gray replicated */
        assert_float_equal(x[j], x[2048 + j], 0);
        mx = fmaxf(mx, x[j]);
    }
    assert_true(mx > 0.5f); /* not blank */
    free(x);
    t2i_dataset_free(&ds);

    assert_int_equal(t2i_dataset_open(&ds, "fashion-mnist:valid", 0, 0, 0), -1);
    assert_error_contains("valid");

    /* a missing folder says how to install it */
    const char *old = getenv("T2I_FASHION_MNIST_DIR");
    char *saved = old ? t2i_strdup(old) : NULL;
    setenv("T2I_FASHION_MNIST_DIR", "/nonexistent/fmnist", 1);
    assert_int_equal(t2i_dataset_fashion_mnist(&ds, "train"), -1);
    assert_error_contains("/nonexistent/fmnist");
    assert_error_contains("apt-get install dataset-fashion-mnist");
    assert_int_equal(fc32_open(&ds, "test", FC32_DEFAULT_SEED), -1);
    assert_error_contains("apt-get install dataset-fashion-mnist");
    if (saved)
        setenv("T2I_FASHION_MNIST_DIR", saved, 1);
    else
        unsetenv("T2I_FASHION_MNIST_DIR");
    free(saved);
}

/* ------------------------------------------------------------------- FC32 ---- */

static void test_fc32_reference(void **state) {
    (void)state;
    cJSON *ref = load_ref();
    assert_int_equal(jint(ref, "seed"), FC32_DEFAULT_SEED);
    const char *splits[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        t2i_dataset ds;
        /* fc32_open itself is used in test_fc32_splits */
        if (fc32_from_mnist(&ds, fm_split(s), s == 0, FC32_DEFAULT_SEED) != 0)
            fail_msg("%s", t2i_error_msg());
        assert_int_equal(ds.n, s == 0 ? 60000 : 10000);
        assert_int_equal(ds.C, 3);
        assert_int_equal(ds.H, 32);
        assert_int_equal(ds.W, 32);
        const cJSON *items =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, splits[s]), "items");
        assert_true(cJSON_GetArraySize(items) >= 41);
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            int i = jint(it, "index"), colour, cls;
            assert_int_equal(ds.labels[i], jint(it, "class"));
            assert_string_equal(ds.captions[i], cJSON_GetObjectItemCaseSensitive(it, "caption")->valuestring);
            assert_int_equal(fc32_item(&ds, i, &colour, &cls), 0);
            assert_int_equal(colour, jint(it, "colour"));
            assert_int_equal(cls, jint(it, "class"));
            fc32_draws d = fc32_draw(FC32_DEFAULT_SEED, s == 0, i, cls);
            assert_int_equal(d.colour, jint(it, "colour"));
            assert_int_equal(d.dx, jint(it, "dx"));
            assert_int_equal(d.dy, jint(it, "dy"));
            assert_int_equal(d.tmpl, jint(it, "tmpl"));
            const uint8_t *px = ds.mem + (size_t)i * 3072;
            long sum = 0, wsum = 0;
            for (int j = 0; j < 3072; j++) {
                sum += px[j];
                wsum += (long)px[j] * (j % 251 + 1);
            }
            assert_int_equal(sum, jint(it, "sum"));
            assert_int_equal(wsum, (long)cJSON_GetObjectItemCaseSensitive(it, "wsum")->valuedouble);
        }
        t2i_dataset_free(&ds);
    }
    cJSON_Delete(ref);
}

/* Every item equals the independent rendering of its Fashion-MNIST source at its drawn
 * colour and offset; returns the (colour, class) histogram. */
static void check_fc32_split(const t2i_dataset *ds, const t2i_dataset *fm, int train, int counts[8][10],
                             int tmpl_counts[FC32_N_TEMPLATES]) {
    assert_int_equal(ds->n, fm->n);
    /* want[c][g][ch]: g * colour rounded half up, from the float palette; a product within
     * 1e-4 of a half (the floats are within 1e-7 of the exact thousandths) goes up */
    static uint8_t want[8][256][3];
    for (int c = 0; c < 8; c++)
        for (int g = 0; g < 256; g++)
            for (int ch = 0; ch < 3; ch++) {
                double v = g * (double)fc32_palette[c][ch];
                double w = fabs(v - floor(v) - 0.5) < 1e-4 ? floor(v) + 1 : floor(v + 0.5);
                want[c][g][ch] = (uint8_t)w;
            }
    for (int i = 0; i < ds->n; i++) {
        int cls = fm->labels[i];
        assert_int_equal(ds->labels[i], cls);
        fc32_draws d = fc32_draw(FC32_DEFAULT_SEED, train, i, cls);
        assert_in_range(d.colour, 0, 7);
        assert_in_range(d.dx, 0, 4);
        assert_in_range(d.dy, 0, 4);
        int pc, pk;
        assert_int_equal(fc32_parse_caption(ds->captions[i], &pc, &pk), 0);
        assert_int_equal(pc, d.colour);
        assert_int_equal(pk, cls);
        counts[d.colour][cls]++;
        tmpl_counts[d.tmpl]++;
        const uint8_t *px = ds->mem + (size_t)i * 3072, *g = fm->mem + (size_t)i * 784;
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                int in = y >= d.dy && y < d.dy + 28 && x >= d.dx && x < d.dx + 28;
                const uint8_t *w = want[d.colour][in ? g[(y - d.dy) * 28 + (x - d.dx)] : 0];
                const uint8_t *got = px + (y * 32 + x) * 3;
                if (got[0] != w[0] || got[1] != w[1] || got[2] != w[2])
                    fail_msg("item %d pixel (%d,%d) = (%d,%d,%d), want (%d,%d,%d)", i, y, x, got[0], got[1],
                             got[2], w[0], w[1], w[2]);
            }
    }
}

static void test_fc32_splits(void **state) {
    (void)state;
    t2i_dataset tr, tr2, te;
    const t2i_dataset *fm_tr = fm_split(0), *fm_te = fm_split(1);
    if (fc32_open(&tr, "train", FC32_DEFAULT_SEED) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(fc32_from_mnist(&tr2, fm_tr, 1, FC32_DEFAULT_SEED), 0);
    assert_int_equal(fc32_open(&te, "test", FC32_DEFAULT_SEED), 0);
    assert_string_equal(tr.source, "fashion-captions:train");
    assert_int_equal(tr.n_classes, 10);
    assert_string_equal(tr.class_names[5], "sandal");

    /* deterministic: two builds give identical bytes and captions */
    assert_memory_equal(tr.mem, tr2.mem, (size_t)tr.n * 3072);
    for (int i = 0; i < tr.n; i++) assert_string_equal(tr.captions[i], tr2.captions[i]);
    t2i_dataset_free(&tr2);

    int ctr[8][10] = {{0}}, cte[8][10] = {{0}}, ttr[FC32_N_TEMPLATES] = {0}, tte[FC32_N_TEMPLATES] = {0};
    check_fc32_split(&tr, fm_tr, 1, ctr, ttr);
    check_fc32_split(&te, fm_te, 0, cte, tte);
    int held = 0;
    for (int c = 0; c < 8; c++)
        for (int k = 0; k < 10; k++) {
            if (fc32_is_held_out(c, k)) {
                held++;
                assert_int_equal(ctr[c][k], 0); /* never in train */
                assert_true(cte[c][k] >= 60);   /* ~125 expected in test */
            } else {
                /* uniform over the allowed colours: 6000/7 (or 6000/8) +- 5 sigma */
                double expect = k == 0 || k == 7 ? 750.0 : 6000.0 / 7.0;
                if (fabs(ctr[c][k] - expect) > 5 * sqrt(expect))
                    fail_msg("train (%d, %d): %d items", c, k, ctr[c][k]);
            }
        }
    assert_int_equal(held, 8);
    for (int t = 0; t < FC32_N_TEMPLATES; t++) {
        assert_true(ttr[t] > 6000);
        assert_true(tte[t] > 1000);
    }
    /* the items really are placed at several offsets, not always the same one */
    int seen_off[5][5] = {{0}};
    for (int i = 0; i < 2000; i++) {
        fc32_draws d = fc32_draw(FC32_DEFAULT_SEED, 0, i, fm_te->labels[i]);
        seen_off[d.dy][d.dx] = 1;
    }
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++) assert_true(seen_off[y][x]);

    /* another seed gives other colours */
    t2i_dataset te2;
    assert_int_equal(fc32_from_mnist(&te2, fm_te, 0, 99), 0);
    int same = 0;
    for (int i = 0; i < te.n; i++) same += strcmp(te.captions[i], te2.captions[i]) == 0;
    assert_true(same < te.n / 4);
    assert_string_equal(te2.source, "fashion-captions:test:99");
    t2i_dataset_free(&te2);

    /* open by name: the seed in the spec, and bad specs */
    assert_int_equal(t2i_dataset_open(&te2, "fashion-captions:test:99", 0, 0, 0), 0);
    assert_string_equal(te2.source, "fashion-captions:test:99");
    t2i_dataset_free(&te2);
    assert_int_equal(t2i_dataset_open(&te2, "fashion-captions:val", 0, 0, 0), -1);
    assert_error_contains("val");
    assert_int_equal(t2i_dataset_open(&te2, "fashion-captions:test:x1", 0, 0, 0), -1);
    assert_error_contains("seed");
    /* converted to gray 16 x 16 on open */
    assert_int_equal(t2i_dataset_open(&te2, "fashion-captions:test", 1, 16, 16), 0);
    assert_int_equal(te2.C, 1);
    assert_int_equal(te2.H, 16);
    assert_int_equal(te2.n, 10000);
    t2i_dataset_free(&te2);

    t2i_dataset_free(&tr);
    t2i_dataset_free(&te);
}

static void test_fc32_captions(void **state) {
    (void)state;
    char buf[FC32_CAPTION_MAX];
    fc32_caption(buf, sizeof buf, 6, 3, 0);
    assert_string_equal(buf, "an orange dress");
    fc32_caption(buf, sizeof buf, 1, 7, 0);
    assert_string_equal(buf, "a red sneaker");
    fc32_caption(buf, sizeof buf, 1, 7, 1);
    assert_string_equal(buf, "a photo of a red sneaker");
    fc32_caption(buf, sizeof buf, 1, 7, 2);
    assert_string_equal(buf, "red sneaker");
    fc32_caption(buf, sizeof buf, 1, 7, 3);
    assert_string_equal(buf, "a sneaker in red");
    fc32_caption(buf, sizeof buf, 1, 9, 3);
    assert_string_equal(buf, "an ankle boot in red");
    fc32_caption(buf, sizeof buf, 6, 9, 5);
    assert_string_equal(buf, "an image of an orange ankle boot");

    /* 80 distinct canonical captions, each the template-0 caption, each parsing back */
    for (int k = 0; k < FC32_N_CANONICAL; k++) {
        fc32_caption(buf, sizeof buf, k / 10, k % 10, 0);
        assert_string_equal(fc32_canonical_captions[k], buf);
        for (int j = 0; j < k; j++) assert_string_not_equal(fc32_canonical_captions[j], buf);
        for (int t = 0; t < FC32_N_TEMPLATES; t++) {
            int n = fc32_caption(buf, sizeof buf, k / 10, k % 10, t);
            assert_true(n > 0 && n < FC32_CAPTION_MAX);
            assert_null(strstr(buf, "a orange"));
            assert_null(strstr(buf, "a ankle"));
            int c = -1, cls = -1;
            assert_int_equal(fc32_parse_caption(buf, &c, &cls), 0);
            assert_int_equal(c, k / 10);
            assert_int_equal(cls, k % 10);
        }
    }
    assert_string_equal(fc32_canonical_captions[1 * 10 + 7], "a red sneaker");
    assert_string_equal(fc32_canonical_captions[6 * 10 + 9], "an orange ankle boot");

    int c, k;
    assert_int_equal(fc32_parse_caption("A Red T-Shirt", &c, &k), 0);
    assert_int_equal(c, 1);
    assert_int_equal(k, 0);
    assert_int_equal(fc32_parse_caption("red shirt", &c, &k), 0);
    assert_int_equal(k, 6);
    assert_int_equal(fc32_parse_caption("ankle boot, cyan", &c, &k), 0);
    assert_int_equal(c, 7);
    assert_int_equal(k, 9);
    assert_int_equal(fc32_parse_caption("a t-shirt", &c, &k), -1);          /* no colour */
    assert_int_equal(fc32_parse_caption("a red and blue bag", &c, &k), -1); /* two colours */
    assert_int_equal(fc32_parse_caption("a red bag and a coat", &c, &k), -1);
    assert_int_equal(fc32_parse_caption("an orangey dress", &c, &k), -1);
    assert_int_equal(fc32_parse_caption("a red boot", &c, &k), -1);
    assert_int_equal(fc32_parse_caption("", &c, &k), -1);

    /* the eight held-out pairs, and nothing else */
    static const int pairs[8][2] = {{5, 5}, {6, 3}, {7, 8}, {4, 4}, {2, 9}, {3, 2}, {1, 6}, {0, 1}};
    int n = 0;
    for (int a = 0; a < 8; a++)
        for (int b = 0; b < 10; b++) n += fc32_is_held_out(a, b);
    assert_int_equal(n, 8);
    for (int p = 0; p < 8; p++) assert_true(fc32_is_held_out(pairs[p][0], pairs[p][1]));
    assert_string_equal(fc32_colour_names[5], "purple");
    assert_string_equal(fc32_class_names[5], "sandal");
    assert_float_equal(fc32_palette[3][1], 0.35f, 0);
    assert_float_equal(fc32_palette[6][1], 0.55f, 0);
}

/* ---------------------------------------------------------------- folders ---- */

static void test_image_folder(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *p;
    uint8_t grey[3] = {77, 77, 77};
    /* 80 x 20: the centre crop of the resized image is all the middle stripe (150) */
    save_stripes(p = t2i_asprintf("%s/a.png", dir), 80, 20, 3, 10, 150, 240, 0), free(p);
    assert_int_equal(t2i_mkdirs(p = t2i_asprintf("%s/sub/deeper", dir)), 0), free(p);
    save_solid(p = t2i_asprintf("%s/sub/b.PNG", dir), 16, 16, 1, grey), free(p);
    /* 20 x 80 (tall): rows striped, same centre */
    save_stripes(p = t2i_asprintf("%s/sub/deeper/c.png", dir), 20, 80, 3, 10, 150, 240, 1), free(p);
    write_text(p = t2i_asprintf("%s/notes.txt", dir), "not an image"), free(p);
    write_text(p = t2i_asprintf("%s/.hidden.png", dir), "ignored"), free(p);
    save_solid(p = t2i_asprintf("%s/sub/grid.png", dir), 16, 16, 1, grey), free(p); /* a samples overview */

    t2i_dataset ds;
    if (t2i_dataset_image_folder(&ds, dir, 3, 8, 8) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.C, 3);
    assert_int_equal(ds.H, 8);
    assert_int_equal(ds.W, 8);
    assert_null(ds.labels);
    assert_null(ds.captions);
    assert_true(contains(ds.files[0], "/a.png"));
    assert_true(contains(ds.files[1], "/sub/b.PNG"));
    assert_true(contains(ds.files[2], "/sub/deeper/c.png"));
    float x[3 * 16 * 16];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t2i_dataset_get(&ds, i, x), 0);
        assert_all_near(x, 3 * 64, i == 1 ? 77 : 150, 1.5f / 127.5f);
    }
    t2i_dataset_free(&ds);

    /* gray output (C = 1); non-square target 16 x 8 (W x H): still inside the middle stripe */
    assert_int_equal(t2i_dataset_image_folder(&ds, dir, 1, 8, 16), 0);
    assert_int_equal(ds.C, 1);
    assert_int_equal(ds.H, 8);
    assert_int_equal(ds.W, 16);
    assert_int_equal(t2i_dataset_get(&ds, 0, x), 0);
    assert_all_near(x, 8 * 16, 150, 1.5f / 127.5f);
    t2i_dataset_free(&ds);

    /* shape from the first image when not given; auto-detection by t2i_dataset_open */
    assert_int_equal(t2i_dataset_open(&ds, dir, 0, 0, 0), 0);
    assert_int_equal(ds.C, 3);
    assert_int_equal(ds.H, 20);
    assert_int_equal(ds.W, 80);
    assert_null(ds.labels);
    float *big = t2i_malloc(3 * 20 * 80 * sizeof(float));
    assert_int_equal(t2i_dataset_get(&ds, 0, big), 0); /* native size: the stripes themselves */
    assert_float_equal(big[0], 10 / 127.5f - 1, 1e-6);
    assert_float_equal(big[40], 150 / 127.5f - 1, 1e-6);
    assert_float_equal(big[79], 240 / 127.5f - 1, 1e-6);

    /* an image that becomes unreadable after opening: the decode error names it */
    char *a = t2i_asprintf("%s/a.png", dir);
    write_text(a, "\x89PNG garbage");
    assert_int_equal(t2i_dataset_get(&ds, 0, big), -1);
    assert_error_contains(a);
    free(big);
    t2i_loader L;
    t2i_loader_init(&L, &ds, 3, 0, 1);
    float *bx = t2i_malloc((size_t)3 * ds.C * ds.H * ds.W * sizeof(float));
    assert_int_equal(t2i_loader_next(&L, bx, NULL, NULL, NULL), -1);
    assert_error_contains(a);
    free(bx);
    t2i_loader_free(&L);
    t2i_dataset_free(&ds);

    /* ... and opening checks every header up front */
    assert_int_equal(t2i_dataset_image_folder(&ds, dir, 3, 8, 8), -1);
    assert_error_contains(a);
    assert_null(strchr(t2i_error_msg(), '\n'));
    free(a);

    /* empty and missing folders */
    char *empty = t2i_asprintf("%s/empty", dir);
    assert_int_equal(t2i_mkdirs(empty), 0);
    write_text(p = t2i_asprintf("%s/readme.txt", empty), "x"), free(p);
    assert_int_equal(t2i_dataset_image_folder(&ds, empty, 3, 8, 8), -1);
    char *want = t2i_asprintf("%s: no images found", empty);
    assert_string_equal(t2i_error_msg(), want);
    free(want);
    assert_int_equal(t2i_dataset_open(&ds, empty, 3, 8, 8), -1);
    assert_error_contains("no images found");
    char *missing = t2i_asprintf("%s/missing", dir);
    assert_int_equal(t2i_dataset_image_folder(&ds, missing, 3, 8, 8), -1);
    assert_error_contains(missing);
    assert_int_equal(t2i_dataset_open(&ds, missing, 3, 8, 8), -1);
    assert_error_contains(missing);
    assert_int_equal(t2i_dataset_image_folder(&ds, dir, 2, 8, 8), -1); /* C must be 1 or 3 */
    free(missing);
    free(empty);
    tu_rmtree(dir);
    free(dir);
}

static void test_class_folders(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *p;
    const char *classes[3] = {"cat", "dog", "ant"};
    uint8_t v[3][3] = {{200, 20, 20}, {20, 200, 20}, {20, 20, 200}};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(t2i_mkdirs(p = t2i_asprintf("%s/%s/nested", dir, classes[k])), 0), free(p);
        /* cat: 2 images, dog: 1 + 1 nested, ant: 1 nested; mixed sizes */
        save_solid(p = t2i_asprintf("%s/%s/x%d.png", dir, classes[k], k), 12 + 4 * k, 9, 3, v[k]), free(p);
        if (k < 2)
            save_solid(p = t2i_asprintf("%s/%s/nested/y.png", dir, classes[k]), 30, 50, 3, v[k]), free(p);
    }
    remove(p = t2i_asprintf("%s/ant/x2.png", dir)), free(p);
    save_solid(p = t2i_asprintf("%s/ant/nested/z.png", dir), 7, 7, 3, v[2]), free(p);
    assert_int_equal(t2i_mkdirs(p = t2i_asprintf("%s/empty_class", dir)), 0), free(p);

    t2i_dataset ds;
    if (t2i_dataset_open(&ds, dir, 3, 6, 6) != 0) fail_msg("%s", t2i_error_msg());
    assert_non_null(ds.labels);
    assert_null(ds.captions);
    assert_int_equal(ds.n_classes, 4);
    assert_string_equal(ds.class_names[0], "ant");
    assert_string_equal(ds.class_names[1], "cat");
    assert_string_equal(ds.class_names[2], "dog");
    assert_string_equal(ds.class_names[3], "empty_class");
    assert_int_equal(ds.n, 5);
    const int want_labels[5] = {0, 1, 1, 2, 2};
    const int colour_of_label[3] = {2, 0, 1};
    float x[3 * 36];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ds.labels[i], want_labels[i]);
        assert_int_equal(t2i_dataset_get(&ds, i, x), 0);
        const uint8_t *c = v[colour_of_label[ds.labels[i]]];
        for (int ch = 0; ch < 3; ch++) assert_all_near(x + ch * 36, 36, c[ch], 1.5f / 127.5f);
    }
    t2i_dataset_free(&ds);

    /* a stray image at the top makes it a plain image folder */
    save_solid(p = t2i_asprintf("%s/top.png", dir), 5, 5, 3, v[0]), free(p);
    assert_int_equal(t2i_dataset_open(&ds, dir, 3, 6, 6), 0);
    assert_null(ds.labels);
    assert_int_equal(ds.n, 6);
    t2i_dataset_free(&ds);
    /* but asking for classes explicitly still works (the top image is not in a class) */
    assert_int_equal(t2i_dataset_class_folders(&ds, dir, 3, 6, 6), 0);
    assert_int_equal(ds.n, 5);
    t2i_dataset_free(&ds);

    /* no class folders */
    char *flat = t2i_asprintf("%s/cat/nested", dir);
    assert_int_equal(t2i_dataset_class_folders(&ds, flat, 3, 6, 6), -1);
    assert_error_contains(flat);
    free(flat);
    tu_rmtree(dir);
    free(dir);
}

static void test_caption_folders(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *p;
    uint8_t red[3] = {220, 30, 30}, blue[3] = {30, 30, 220};
    assert_int_equal(t2i_mkdirs(p = t2i_asprintf("%s/img", dir)), 0), free(p);
    save_solid(p = t2i_asprintf("%s/img/1.png", dir), 40, 30, 3, red), free(p);
    save_solid(p = t2i_asprintf("%s/img/2.png", dir), 16, 16, 1, blue), free(p);
    save_solid(p = t2i_asprintf("%s/3.png", dir), 64, 128, 3, blue), free(p);

    /* jsonl: metadata order, escapes and UTF-8, a blank line, extra fields ignored */
    char *jl = t2i_asprintf("%s/metadata.jsonl", dir);
    write_text(jl, "{\"file_name\": \"img/1.png\", \"text\": \"a red \\\"thing\\\"\", \"colour\": \"red\"}\n"
                   "\n"
                   "{\"file_name\": \"3.png\", \"text\": \"caf\\u00e9 bleu\"}\r\n"
                   "{\"text\": \"gray\", \"file_name\": \"img/2.png\"}");
    t2i_dataset ds;
    if (t2i_dataset_open(&ds, dir, 3, 8, 8) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(ds.n, 3);
    assert_non_null(ds.captions);
    assert_null(ds.labels);
    assert_string_equal(ds.captions[0], "a red \"thing\"");
    assert_string_equal(ds.captions[1], "caf\xc3\xa9 bleu");
    assert_string_equal(ds.captions[2], "gray");
    float x[3 * 64];
    assert_int_equal(t2i_dataset_get(&ds, 1, x), 0);
    assert_all_near(x, 64, 30, 1.5f / 127.5f);
    assert_all_near(x + 128, 64, 220, 1.5f / 127.5f);
    assert_int_equal(t2i_dataset_get(&ds, 2, x), 0); /* gray PNG: blue's first channel, replicated */
    assert_all_near(x, 3 * 64, 30, 1.5f / 127.5f);
    t2i_dataset_free(&ds);

    /* error cases, each naming the file and line */
    struct {
        const char *text, *want;
    } bad[] = {
        {"{\"file_name\": \"3.png\", \"text\": \"ok\"}\n{\"file_name\": \"3.png\", \"text\": }\n",
         "metadata.jsonl:2: "},
        {"{\"file_name\": \"3.png\", \"text\": \"ok\"}\n\n[1, 2]\n",
         "metadata.jsonl:3: expected a JSON object"},
        {"{\"file_name\": \"3.png\", \"text\": \"ok\"} trailing\n", "metadata.jsonl:1: not valid JSON"},
        {"{\"text\": \"no file\"}\n", "metadata.jsonl:1: missing \"file_name\""},
        {"{\"file_name\": \"3.png\"}\n", "metadata.jsonl:1: missing \"text\""},
        {"{\"file_name\": \"3.png\", \"text\": \"ok\"}\n{\"file_name\": \"gone.png\", \"text\": \"x\"}\n",
         "metadata.jsonl:2: file_name 'gone.png' not found"},
        {"{\"file_name\": \"3.png\", \"text\": \"  \"}\n", "metadata.jsonl:1: empty caption"},
        {"{\"file_name\": \"3.png\", \"text\": \"a \xff b\"}\n", "metadata.jsonl:1: caption is not valid UTF-8 (byte 2)"},
        {"{\"file_name\": \".\", \"text\": \"x\"}\n", "metadata.jsonl:1: file_name '.' is not a file"},
        {"\n\n", ": no images found"},
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        write_text(jl, bad[t].text);
        assert_int_equal(t2i_dataset_captions(&ds, dir, 3, 8, 8), -1);
        assert_error_contains(bad[t].want);
        assert_error_contains(dir);
        assert_null(strchr(t2i_error_msg(), '\n'));
    }
    /* an unreadable image listed in the metadata is reported when opening */
    write_text(p = t2i_asprintf("%s/broken.png", dir), "\x89PNG\r\n\x1a\n truncated"), free(p);
    write_text(jl, "{\"file_name\": \"broken.png\", \"text\": \"x\"}\n");
    assert_int_equal(t2i_dataset_captions(&ds, dir, 3, 8, 8), -1);
    assert_error_contains("broken.png");
    remove(jl);

    /* csv: RFC 4180 quoting, CRLF, a newline inside quotes, columns in any order */
    char *csv = t2i_asprintf("%s/metadata.csv", dir);
    write_text(csv, "\xEF\xBB\xBFid,text,file_name\r\n"
                    "1,\"red, bright\",img/1.png\r\n"
                    "2,\"say \"\"blue\"\"\nsecond line\",3.png\r\n"
                    "\r\n"
                    "3,plain,img/2.png");
    if (t2i_dataset_open(&ds, dir, 1, 4, 4) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.C, 1);
    assert_string_equal(ds.captions[0], "red, bright");
    assert_string_equal(ds.captions[1], "say \"blue\"\nsecond line");
    assert_string_equal(ds.captions[2], "plain");
    assert_true(contains(ds.files[1], "/3.png"));
    t2i_dataset_free(&ds);

    struct {
        const char *text, *want;
    } badcsv[] = {
        {"file_name,caption\n3.png,x\n", "metadata.csv:1: the header needs file_name and text"},
        {"file_name,text\n3.png,\"open\n", "metadata.csv:2: unterminated"},
        {"file_name,text\n3.png,ok\n3.png,\"a\"b\n", "metadata.csv:3: unexpected character"},
        {"file_name,text\n3.png,ok\n\n3.png\n", "metadata.csv:4: 1 fields"},
        {"file_name,text\n3.png,ok\nnope.png,x\n", "metadata.csv:3: file_name 'nope.png' not found"},
        {"file_name,text\n3.png,\n", "metadata.csv:2: empty caption"},
        {"file_name,text\n", ": no images found"},
    };
    for (size_t t = 0; t < sizeof badcsv / sizeof badcsv[0]; t++) {
        write_text(csv, badcsv[t].text);
        assert_int_equal(t2i_dataset_open(&ds, dir, 3, 8, 8), -1);
        assert_error_contains(badcsv[t].want);
        assert_error_contains(dir);
    }
    free(csv);
    free(jl);
    tu_rmtree(dir);
    free(dir);
}

/* ----------------------------------------------------------------- loader ---- */

/* n items of C x H x W; every byte of item i encodes i and the position, so an item can
 * be recognised (and its transform found) from its pixels. */
static void make_mem_dataset(t2i_dataset *ds, int n, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->C = C;
    ds->H = H;
    ds->W = W;
    size_t item = (size_t)C * H * W;
    ds->mem = t2i_malloc((size_t)n * item);
    ds->labels = t2i_malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % 7;
        for (size_t j = 0; j < item; j++) ds->mem[i * item + j] = (uint8_t)(1 + (i * 37 + j * 11) % 250);
    }
    ds->n_classes = 7;
}

/* Runs one epoch from the loader's current position; records idx in order (n) and x. */
static int run_epoch(t2i_loader *L, int *order, float *xs, int *sizes, int *nb) {
    int total = 0, b = 0, got;
    size_t item = (size_t)L->ds->C * L->ds->H * L->ds->W;
    float *x = t2i_malloc((size_t)L->batch * item * sizeof(float));
    int *idx = t2i_malloc((size_t)L->batch * sizeof(int));
    int *lab = t2i_malloc((size_t)L->batch * sizeof(int));
    while ((got = t2i_loader_next(L, x, lab, NULL, idx)) > 0) {
        for (int k = 0; k < got; k++) {
            assert_int_equal(lab[k], L->ds->labels ? L->ds->labels[idx[k]] : -1);
            if (order) order[total + k] = idx[k];
        }
        if (xs) memcpy(xs + (size_t)total * item, x, (size_t)got * item * sizeof(float));
        if (sizes) sizes[b] = got;
        total += got;
        b++;
    }
    assert_int_equal(got, 0);
    if (nb) *nb = b;
    free(x);
    free(idx);
    free(lab);
    return total;
}

static void test_loader_order(void **state) {
    (void)state;
    t2i_dataset ds;
    make_mem_dataset(&ds, 103, 1, 3, 3);
    int o0[103], o1[103], o2[103], sizes[20], nb;
    float *xs = t2i_malloc(103 * 9 * sizeof(float));

    t2i_loader L;
    t2i_loader_init(&L, &ds, 10, 1, 42);
    assert_int_equal(run_epoch(&L, o0, xs, sizes, &nb), 103);
    assert_int_equal(nb, 11);
    for (int b = 0; b < 10; b++) assert_int_equal(sizes[b], 10);
    assert_int_equal(sizes[10], 3);
    assert_int_equal(L.epoch, 1);
    int seen[103] = {0};
    for (int k = 0; k < 103; k++) {
        seen[o0[k]]++;
        /* the batch holds the item it claims */
        for (int j = 0; j < 9; j++)
            assert_float_equal(xs[k * 9 + j], ds.mem[o0[k] * 9 + j] / 127.5f - 1, 1e-6);
    }
    for (int i = 0; i < 103; i++) assert_int_equal(seen[i], 1);
    int identity = 1;
    for (int k = 0; k < 103; k++) identity &= o0[k] == k;
    assert_false(identity);

    /* epoch 1: every index once again, in another order */
    assert_int_equal(run_epoch(&L, o1, NULL, NULL, NULL), 103);
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < 103; k++) seen[o1[k]]++;
    for (int i = 0; i < 103; i++) assert_int_equal(seen[i], 1);
    assert_memory_not_equal(o0, o1, sizeof o0);
    t2i_loader_free(&L);

    /* the same seed repeats the orders; another seed does not */
    t2i_loader_init(&L, &ds, 10, 1, 42);
    assert_int_equal(run_epoch(&L, o2, NULL, NULL, NULL), 103);
    assert_memory_equal(o0, o2, sizeof o0);
    assert_int_equal(run_epoch(&L, o2, NULL, NULL, NULL), 103);
    assert_memory_equal(o1, o2, sizeof o1);
    t2i_loader_free(&L);
    t2i_loader_init(&L, &ds, 10, 1, 43);
    run_epoch(&L, o2, NULL, NULL, NULL);
    assert_memory_not_equal(o0, o2, sizeof o0);
    t2i_loader_free(&L);

    /* no shuffle: identity; drop_last: only full batches */
    t2i_loader_init(&L, &ds, 10, 0, 42);
    L.drop_last = 1;
    assert_int_equal(run_epoch(&L, o2, NULL, sizes, &nb), 100);
    assert_int_equal(nb, 10);
    for (int k = 0; k < 100; k++) assert_int_equal(o2[k], k);
    t2i_loader_free(&L);
    free(xs);
    t2i_dataset_free(&ds);
}

static void test_loader_seek(void **state) {
    (void)state;
    t2i_dataset ds;
    make_mem_dataset(&ds, 57, 3, 4, 5);
    size_t item = 3 * 4 * 5;
    t2i_loader A, B;
    t2i_loader_init(&A, &ds, 8, 1, 7);
    A.flip = 1;
    A.crop_pad = 1;
    /* A: epoch 0 whole, then epoch 1 from the start */
    run_epoch(&A, NULL, NULL, NULL, NULL);
    float *xa = t2i_malloc(57 * item * sizeof(float)), *xb = t2i_malloc(57 * item * sizeof(float));
    int oa[57], ob[57];
    assert_int_equal(run_epoch(&A, oa, xa, NULL, NULL), 57);
    /* B: jumps straight to (epoch 1, pos 21) as a resumed run would; its batches are not
     * aligned with A's, and the items must come out the same all the same */
    t2i_loader_init(&B, &ds, 8, 1, 7);
    B.flip = 1;
    B.crop_pad = 1;
    /* positions outside the data (a damaged checkpoint) are refused and change nothing */
    assert_int_equal(t2i_loader_seek(&B, 1, 58), -1);
    assert_non_null(strstr(t2i_error_msg(), "item 58) is outside the 57 items"));
    assert_int_equal(t2i_loader_seek(&B, 1, -1), -1);
    assert_int_equal(t2i_loader_seek(&B, -1, 0), -1);
    assert_int_equal(B.epoch, 0);
    assert_int_equal(t2i_loader_seek(&B, 1, 21), 0);
    assert_int_equal(run_epoch(&B, ob, xb, NULL, NULL), 57 - 21);
    assert_memory_equal(oa + 21, ob, (57 - 21) * sizeof(int));
    assert_memory_equal(xa + 21 * item, xb, (57 - 21) * item * sizeof(float));
    assert_int_equal(B.epoch, 2);
    /* and both go on identically */
    assert_int_equal(run_epoch(&A, oa, xa, NULL, NULL), 57);
    assert_int_equal(run_epoch(&B, ob, xb, NULL, NULL), 57);
    assert_memory_equal(oa, ob, sizeof oa);
    assert_memory_equal(xa, xb, 57 * item * sizeof(float));
    t2i_loader_free(&A);
    t2i_loader_free(&B);
    free(xa);
    free(xb);
    t2i_dataset_free(&ds);
}

/* Does x equal item `src` (u8 HWC... here CHW mem) cropped at (ox, oy) after padding and
 * then flipped? Built directly from the definition: out(y, x) = padded(y + oy, x + ox). */
static int matches(const float *x, const uint8_t *src, int C, int H, int W, int pad, int oy, int ox,
                   int flip) {
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                int sx = flip ? W - 1 - xx : xx; /* flip after crop */
                int py = y + oy - pad, px = sx + ox - pad;
                float want = py < 0 || py >= H || px < 0 || px >= W
                                 ? -1.0f
                                 : src[(size_t)c * H * W + py * W + px] / 127.5f - 1.0f;
                if (fabsf(x[(size_t)c * H * W + y * W + xx] - want) > 1e-6f) return 0;
            }
    return 1;
}

static void test_loader_augment(void **state) {
    (void)state;
    const int n = 64, C = 3, H = 6, W = 7, pad = 2;
    t2i_dataset ds;
    make_mem_dataset(&ds, n, C, H, W);
    /* make_mem_dataset writes bytes in mem order, which this dataset reads as HWC; build
     * the CHW view the matcher uses */
    size_t item = (size_t)C * H * W;
    uint8_t *chw = t2i_malloc(n * item);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++)
                chw[i * item + (size_t)c * H * W + p] = ds.mem[i * item + (size_t)p * C + c];

    /* the same items as PNG files, so that the loader decodes them in parallel */
    char *dir = tu_tmpdir();
    for (int i = 0; i < n; i++) {
        char *p = t2i_asprintf("%s/%03d.png", dir, i);
        assert_int_equal(t2i_image_save_png(p, ds.mem + i * item, W, H, C), 0);
        free(p);
    }
    t2i_dataset files;
    if (t2i_dataset_image_folder(&files, dir, C, H, W) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(files.n, n);

    float *x1 = t2i_malloc(n * item * sizeof(float)), *x2 = t2i_malloc(n * item * sizeof(float));
    int o1[64], o2[64];
    int threads = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run == 0 ? 1 : 2);
        t2i_loader L;
        t2i_loader_init(&L, &files, 16, 1, 2024);
        L.flip = 1;
        L.crop_pad = pad;
        assert_int_equal(t2i_loader_seek(&L, 3, 0), 0);
        assert_int_equal(run_epoch(&L, run == 0 ? o1 : o2, run == 0 ? x1 : x2, NULL, NULL), n);
        t2i_loader_free(&L);
    }
    omp_set_num_threads(threads);
    /* the thread count changes nothing */
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(x1, x2, n * item * sizeof(float));
    /* and the in-memory path (no threads) gives the same batches as the files */
    t2i_loader M;
    t2i_loader_init(&M, &ds, 16, 1, 2024);
    M.flip = 1;
    M.crop_pad = pad;
    assert_int_equal(t2i_loader_seek(&M, 3, 0), 0);
    assert_int_equal(run_epoch(&M, o2, x2, NULL, NULL), n);
    t2i_loader_free(&M);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(x1, x2, n * item * sizeof(float));
    t2i_dataset_free(&files);
    tu_rmtree(dir);
    free(dir);

    /* every item is its source under one of the allowed transforms; both flips and
     * several offsets occur */
    int flips = 0, offsets[5][5] = {{0}}, plain = 0;
    for (int k = 0; k < n; k++) {
        int found = 0;
        for (int f = 0; f < 2 && !found; f++)
            for (int oy = 0; oy <= 2 * pad && !found; oy++)
                for (int ox = 0; ox <= 2 * pad && !found; ox++)
                    if (matches(x1 + k * item, chw + (size_t)o1[k] * item, C, H, W, pad, oy, ox, f)) {
                        found = 1;
                        flips += f;
                        offsets[oy][ox]++;
                        plain += !f && oy == pad && ox == pad;
                    }
        if (!found) fail_msg("batch item %d (source %d) is no allowed transform of its source", k, o1[k]);
    }
    assert_true(flips > 10 && flips < n - 10);
    int distinct = 0;
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++) distinct += offsets[y][x] > 0;
    assert_true(distinct >= 10);
    assert_true(plain < n / 4);

    /* another epoch draws other augmentations for the same items */
    t2i_loader L;
    t2i_loader_init(&L, &ds, 16, 0, 2024);
    L.flip = 1;
    L.crop_pad = pad;
    run_epoch(&L, NULL, x1, NULL, NULL);
    run_epoch(&L, NULL, x2, NULL, NULL);
    assert_memory_not_equal(x1, x2, n * item * sizeof(float));
    t2i_loader_free(&L);
    free(x1);
    free(x2);
    free(chw);
    t2i_dataset_free(&ds);
}

/* Random erasing: its draws come after crop and flip, so an erasing loader gives the
 * batches of one without erasing except for one black rectangle per erased item, of 2-33%
 * of the area (rounding aside) and of varied shapes; erase = p erases about p of them. */
static void test_loader_erase(void **state) {
    (void)state;
    const int n = 200, C = 3, H = 20, W = 20;
    t2i_dataset ds;
    make_mem_dataset(&ds, n, C, H, W); /* values 1..250: never black */
    size_t item = (size_t)C * H * W, plane = (size_t)H * W;
    float *xa = t2i_malloc(n * item * sizeof(float)), *xb = t2i_malloc(n * item * sizeof(float));
    for (int crop = 0; crop < 2; crop++) {
        float p = crop ? 0.5f : 1.0f;
        t2i_loader A, B;
        t2i_loader_init(&A, &ds, 32, 1, 99);
        t2i_loader_init(&B, &ds, 32, 1, 99);
        A.flip = B.flip = crop, A.crop_pad = B.crop_pad = crop ? 2 : 0;
        B.erase = p;
        assert_int_equal(run_epoch(&A, NULL, xa, NULL, NULL), n);
        assert_int_equal(run_epoch(&B, NULL, xb, NULL, NULL), n);
        int erased = 0, tall = 0, wide = 0;
        for (int k = 0; k < n; k++) {
            const float *a = xa + k * item, *b = xb + k * item;
            int y0 = H, y1 = -1, x0 = W, x1 = -1;
            for (size_t i = 0; i < item; i++) {
                if (a[i] == b[i]) continue;
                assert_true(b[i] == -1.0f);
                int y = (int)(i % plane) / W, x = (int)(i % plane) % W;
                y0 = T2I_MIN(y0, y), y1 = T2I_MAX(y1, y), x0 = T2I_MIN(x0, x), x1 = T2I_MAX(x1, x);
            }
            if (y1 < 0) continue;
            erased++;
            int h = y1 - y0 + 1, w = x1 - x0 + 1;
            for (int c = 0; c < C; c++) /* one solid rectangle in every channel */
                for (int y = y0; y <= y1; y++)
                    for (int x = x0; x <= x1; x++) assert_true(b[(size_t)c * plane + y * W + x] == -1.0f);
            assert_true(h * w <= 0.33 * H * W + H + W);
            if (!crop) assert_true(h * w >= 0.02 * H * W - 1 - 2 * sqrt(0.02 * H * W * 3.3));
            tall += h > 2 * w, wide += w > 2 * h;
        }
        if (!crop) assert_int_equal(erased, n);
        else assert_true(erased > n / 4 && erased < 3 * n / 4);
        assert_true(tall > 0 && wide > 0);
        t2i_loader_free(&A);
        t2i_loader_free(&B);
    }
    free(xa);
    free(xb);
    t2i_dataset_free(&ds);
}

/* Caption checks and the one-line form of a caption in messages. */
static void test_text_problem_and_show(void **state) {
    (void)state;
    size_t at = 99;
    assert_null(t2i_text_problem("a red shirt\twith\r\nlines", &at));
    assert_string_equal(t2i_text_problem("a red\x01 shirt", &at), "a control character");
    assert_int_equal(at, 5);
    assert_string_equal(t2i_text_problem("caf\xc3", &at), "not valid UTF-8");
    assert_int_equal(at, 3);
    assert_ptr_equal(t2i_text_problem(" \t\n", &at), T2I_TEXT_EMPTY);
    assert_string_equal(T2I_TEXT_EMPTY, "empty");
    assert_string_equal(t2i_text_problem("\x7f", &at), "a control character");
    char out[64];
    assert_string_equal(t2i_text_show("a red\x01 shirt\n", 80, out, sizeof out), "a red\\x01 shirt\\x0a");
    /* valid multi-byte characters are kept, a stray byte is escaped */
    assert_string_equal(t2i_text_show("caf\xc3\xa9 \xff!", 80, out, sizeof out), "caf\xc3\xa9 \\xff!");
    /* a cut keeps whole characters and says so */
    assert_string_equal(t2i_text_show("abcdef", 4, out, sizeof out), "abcd...");
    assert_string_equal(t2i_text_show("ab\xe2\x82\xac", 4, out, sizeof out), "ab...");
    assert_string_equal(t2i_text_show("abcd", 4, out, sizeof out), "abcd");
    /* the buffer bounds the result even when every byte is escaped */
    char small[16];
    assert_string_equal(t2i_text_show("\x01\x02\x03\x04", 80, small, sizeof small), "\\x01\\x02\\x03...");
    assert_true(strlen(small) < sizeof small);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_problem_and_show),
        cmocka_unit_test(test_idx_raw_and_gz), cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_fc32_reference), cmocka_unit_test(test_fc32_splits),
        cmocka_unit_test(test_fc32_captions),  cmocka_unit_test(test_image_folder),
        cmocka_unit_test(test_class_folders),  cmocka_unit_test(test_caption_folders),
        cmocka_unit_test(test_loader_order),   cmocka_unit_test(test_loader_seek),
        cmocka_unit_test(test_loader_augment), cmocka_unit_test(test_loader_erase),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int s = 0; s < 2; s++) t2i_dataset_free(&g_fm[s]);
    return rc;
}
