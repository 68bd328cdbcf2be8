/* test_data.c - the Fashion-MNIST readers (IDX files, Fashion-MNIST) and FC32
 * (data/fashion_mnist.c, data/fc32.c), and the caption checks of base.h. The folder
 * readers are tested in test_data_folders.c, the loader in test_loader.c.
 *
 * Reference values: tests/data/fc32_ref.json, written by tests/ref/gen_fc32_ref.py, which
 * reads Fashion-MNIST with Python's gzip module and rebuilds FC32 items from fc32.h's
 * definition (its own xoshiro/SplitMix code, exact fractions for the pixels) for 41 items
 * of each split. IDX files are written byte by byte here.
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

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
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
    tu_put_be32(img, 0x803);
    tu_put_be32(img + 4, 3);
    tu_put_be32(img + 8, 2);
    tu_put_be32(img + 12, 4);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 8; j++) img[16 + i * 8 + j] = (uint8_t)(10 * i + j);
    char *ri = t2i_asprintf("%s/img-idx3-ubyte", dir), *rl = t2i_asprintf("%s/lab-idx1-ubyte", dir);
    char *gi = t2i_asprintf("%s/img-idx3-ubyte.gz", dir), *gl = t2i_asprintf("%s/lab-idx1-ubyte.gz", dir);
    tu_write_bytes(ri, img, sizeof img);
    tu_write_bytes(rl, lab, sizeof lab);
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
    tu_assert_error_contains(rl);
    tu_assert_error_contains("0x00000803");
    /* truncated pixels, raw and gzip */
    char *ti = t2i_asprintf("%s/trunc-idx3-ubyte", dir), *tg = t2i_asprintf("%s/trunc-idx3-ubyte.gz", dir);
    tu_write_bytes(ti, img, sizeof img - 5);
    write_gz(tg, img, sizeof img - 5);
    assert_int_equal(t2i_dataset_idx(&ds, ti, NULL), -1);
    tu_assert_error_contains(ti);
    tu_assert_error_contains("truncated");
    assert_int_equal(t2i_dataset_idx(&ds, tg, rl), -1);
    tu_assert_error_contains(tg);
    tu_assert_error_contains("truncated");
    /* a gzip stream cut short */
    FILE *f = fopen(gi, "rb");
    uint8_t gzb[256];
    size_t gn = fread(gzb, 1, sizeof gzb, f);
    fclose(f);
    char *cut = t2i_asprintf("%s/cut-idx3-ubyte.gz", dir);
    tu_write_bytes(cut, gzb, gn - 12);
    assert_int_equal(t2i_dataset_idx(&ds, cut, NULL), -1);
    tu_assert_error_contains(cut);
    /* label count mismatch */
    lab[7] = 2;
    tu_write_bytes(rl, lab, 10);
    assert_int_equal(t2i_dataset_idx(&ds, ri, rl), -1);
    tu_assert_error_contains(rl);
    /* missing file */
    char *missing = t2i_asprintf("%s/nope.gz", dir);
    assert_int_equal(t2i_dataset_idx(&ds, missing, NULL), -1);
    tu_assert_error_contains(missing);
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
        assert_int_equal(ds.n, tu_jint(r, "n"));
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
        assert_int_equal(s0, tu_jint(r, "pixel_sum_item0"));
        assert_int_equal(s1, tu_jint(r, "pixel_sum_last"));
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
    tu_assert_error_contains("valid");

    /* a missing folder says how to install it */
    const char *old = getenv("T2I_FASHION_MNIST_DIR");
    char *saved = old ? t2i_strdup(old) : NULL;
    setenv("T2I_FASHION_MNIST_DIR", "/nonexistent/fmnist", 1);
    assert_int_equal(t2i_dataset_fashion_mnist(&ds, "train"), -1);
    tu_assert_error_contains("/nonexistent/fmnist");
    tu_assert_error_contains("apt-get install dataset-fashion-mnist");
    assert_int_equal(fc32_open(&ds, "test", FC32_DEFAULT_SEED), -1);
    tu_assert_error_contains("apt-get install dataset-fashion-mnist");
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
    assert_int_equal(tu_jint(ref, "seed"), FC32_DEFAULT_SEED);
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
            int i = tu_jint(it, "index"), colour, cls;
            assert_int_equal(ds.labels[i], tu_jint(it, "class"));
            assert_string_equal(ds.captions[i], cJSON_GetObjectItemCaseSensitive(it, "caption")->valuestring);
            assert_int_equal(fc32_item(&ds, i, &colour, &cls), 0);
            assert_int_equal(colour, tu_jint(it, "colour"));
            assert_int_equal(cls, tu_jint(it, "class"));
            fc32_draws d = fc32_draw(FC32_DEFAULT_SEED, s == 0, i, cls);
            assert_int_equal(d.colour, tu_jint(it, "colour"));
            assert_int_equal(d.dx, tu_jint(it, "dx"));
            assert_int_equal(d.dy, tu_jint(it, "dy"));
            assert_int_equal(d.tmpl, tu_jint(it, "tmpl"));
            const uint8_t *px = ds.mem + (size_t)i * 3072;
            long sum = 0, wsum = 0;
            for (int j = 0; j < 3072; j++) {
                sum += px[j];
                wsum += (long)px[j] * (j % 251 + 1);
            }
            assert_int_equal(sum, tu_jint(it, "sum"));
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
    tu_assert_error_contains("val");
    assert_int_equal(t2i_dataset_open(&te2, "fashion-captions:test:x1", 0, 0, 0), -1);
    tu_assert_error_contains("seed");
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
        cmocka_unit_test(test_idx_raw_and_gz),
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_fc32_reference),
        cmocka_unit_test(test_fc32_splits),
        cmocka_unit_test(test_fc32_captions),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int s = 0; s < 2; s++) t2i_dataset_free(&g_fm[s]);
    return rc;
}
