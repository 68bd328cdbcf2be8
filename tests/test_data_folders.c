/* test_data_folders.c - datasets from folders (data/folders.c): image folders, class
 * folders, caption folders (metadata.jsonl / metadata.csv), and t2i_dataset_open's choice
 * between them. Checked against values built here by hand: striped PNGs whose centre crop
 * has a known colour, solid images, metadata files with every kind of mistake.
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
#include <unistd.h>
#include <zlib.h>

#include "base.h"
#include "data.h"
#include "fc32.h"
#include "image.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers ---- */

static void write_text(const char *path, const char *text) { tu_write_bytes(path, text, strlen(text)); }

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
    assert_true(tu_contains(ds.files[0], "/a.png"));
    assert_true(tu_contains(ds.files[1], "/sub/b.PNG"));
    assert_true(tu_contains(ds.files[2], "/sub/deeper/c.png"));
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
    tu_assert_error_contains(a);
    free(big);
    t2i_loader L;
    t2i_loader_init(&L, &ds, 3, 0, 1);
    float *bx = t2i_malloc((size_t)3 * ds.C * ds.H * ds.W * sizeof(float));
    assert_int_equal(t2i_loader_next(&L, bx, NULL, NULL, NULL), -1);
    tu_assert_error_contains(a);
    free(bx);
    t2i_loader_free(&L);
    t2i_dataset_free(&ds);

    /* ... and opening checks every header up front */
    assert_int_equal(t2i_dataset_image_folder(&ds, dir, 3, 8, 8), -1);
    tu_assert_error_contains(a);
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
    tu_assert_error_contains("no images found");
    char *missing = t2i_asprintf("%s/missing", dir);
    assert_int_equal(t2i_dataset_image_folder(&ds, missing, 3, 8, 8), -1);
    tu_assert_error_contains(missing);
    assert_int_equal(t2i_dataset_open(&ds, missing, 3, 8, 8), -1);
    tu_assert_error_contains(missing);
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
    tu_assert_error_contains(flat);
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
        tu_assert_error_contains(bad[t].want);
        tu_assert_error_contains(dir);
        assert_null(strchr(t2i_error_msg(), '\n'));
    }
    /* an unreadable image listed in the metadata is reported when opening */
    write_text(p = t2i_asprintf("%s/broken.png", dir), "\x89PNG\r\n\x1a\n truncated"), free(p);
    write_text(jl, "{\"file_name\": \"broken.png\", \"text\": \"x\"}\n");
    assert_int_equal(t2i_dataset_captions(&ds, dir, 3, 8, 8), -1);
    tu_assert_error_contains("broken.png");
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
    assert_true(tu_contains(ds.files[1], "/3.png"));
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
        tu_assert_error_contains(badcsv[t].want);
        tu_assert_error_contains(dir);
    }
    free(csv);
    free(jl);
    tu_rmtree(dir);
    free(dir);
}

/* What a metadata line must not smuggle in: a NUL (cut the caption or the file name short
 * without a word before), or a file_name that reaches outside the data folder. */
/* raw NUL bytes: after a complete JSON object (cJSON stopped there), inside CSV fields */
#define JL_RAW_NUL                                                                                             \
    "{\"file_name\": \"img/1.png\", \"text\": \"ok\"}\n\n{\"file_name\": \"img/1.png\", \"text\": \"ok\"}\0 junk\n"
#define CSV_RAW_NUL1 "file_name,text\nimg/1.png,a\0b\n"
#define CSV_RAW_NUL2 "file_name,text\nimg/1.png,ok\n\"img/1.png\0\",x\n"
typedef struct {
    const char *text;
    size_t n; /* 0: strlen(text) */
    const char *want;
} refusal;

/* Each text written to path (the metadata of dir) must be refused: one line naming path and want. */
static void expect_refusals(const char *dir, const char *path, const refusal *cases, size_t n) {
    t2i_dataset ds;
    for (size_t t = 0; t < n; t++) {
        tu_write_bytes(path, cases[t].text, cases[t].n ? cases[t].n : strlen(cases[t].text));
        if (t2i_dataset_captions(&ds, dir, 3, 8, 8) == 0) fail_msg("%s: case %zu accepted", path, t);
        tu_assert_error_contains(cases[t].want);
        tu_assert_error_contains(path);
        assert_null(strchr(t2i_error_msg(), '\n'));
    }
    remove(path);
}

static void test_caption_refusals(void **state) {
    (void)state;
    char *top = tu_tmpdir(), *p;
    char *dir = t2i_asprintf("%s/data", top);
    uint8_t red[3] = {220, 30, 30};
    assert_int_equal(t2i_mkdirs(p = t2i_asprintf("%s/img", dir)), 0), free(p);
    save_solid(p = t2i_asprintf("%s/img/1.png", dir), 8, 8, 3, red), free(p);
    save_solid(p = t2i_asprintf("%s/out.png", top), 8, 8, 3, red), free(p);
    char *jl = t2i_asprintf("%s/metadata.jsonl", dir), *csv = t2i_asprintf("%s/metadata.csv", dir);
    char *abs = t2i_asprintf("{\"file_name\": \"%s/out.png\", \"text\": \"x\"}\n", top);
    const char ok[] = "{\"file_name\": \"img/1.png\", \"text\": \"ok\"}\n";
    refusal bad[] = {
        {"{\"file_name\": \"img/1.png\", \"text\": \"a\\u0000b\"}\n", 0, "metadata.jsonl:1: caption holds a NUL"},
        {"{\"file_name\": \"img/1.png\", \"text\": \"ok\"}\n{\"text\": \"\\u0000\", \"file_name\": \"img/1.png\"}\n", 0,
         "metadata.jsonl:2: caption holds a NUL"},
        /* the member after a nested object and an escaped quote is still the one checked */
        {"{\"m\": {\"x\": [\"\\\"}\"]}, \"file_name\": \"img/1.png\", \"text\": \"o\\u0000k\"}\n", 0,
         "metadata.jsonl:1: caption holds a NUL"},
        {"{\"file_name\": \"img/1.png\\u0000.txt\", \"text\": \"x\"}\n", 0, "metadata.jsonl:1: file_name holds a NUL"},
        {JL_RAW_NUL, sizeof JL_RAW_NUL - 1, "metadata.jsonl:3: NUL byte"},
        {"{\"file_name\": \"../out.png\", \"text\": \"x\"}\n", 0,
         "metadata.jsonl:1: file_name '../out.png' is outside"},
        {"{\"file_name\": \"img/../../out.png\", \"text\": \"x\"}\n", 0,
         "metadata.jsonl:1: file_name 'img/../../out.png' is outside"},
        {"{\"file_name\": \"img/../img/1.png\", \"text\": \"x\"}\n", 0,
         "metadata.jsonl:1: file_name 'img/../img/1.png' is outside"},
        {"{\"file_name\": \"img/..\", \"text\": \"x\"}\n", 0, "is outside the data folder"},
        {abs, 0, "metadata.jsonl:1: file_name '/"},
        /* a missing file's name is shown escaped, on the message's one line */
        {"{\"file_name\": \"img/no\\nsuch\\u001b.png\", \"text\": \"x\"}\n", 0,
         "metadata.jsonl:1: file_name 'img/no\\x0asuch\\x1b.png' not found ("},
    };
    expect_refusals(dir, jl, bad, sizeof bad / sizeof bad[0]);
    refusal badcsv[] = {
        {CSV_RAW_NUL1, sizeof CSV_RAW_NUL1 - 1, "metadata.csv:2: NUL byte"},
        {CSV_RAW_NUL2, sizeof CSV_RAW_NUL2 - 1, "metadata.csv:3: NUL byte"},
        {"file_name,text\n../out.png,x\n", 0, "metadata.csv:2: file_name '../out.png' is outside"},
    };
    expect_refusals(dir, csv, badcsv, sizeof badcsv / sizeof badcsv[0]);

    /* still accepted: an escaped backslash before u0000 (no NUL), a NUL in a field t2i does
     * not read, "./", and symbolic links inside the folder - also ones that point out of it,
     * since whoever made the folder made the link */
    char *lnk = t2i_asprintf("%s/link.png", dir), *lnkdir = t2i_asprintf("%s/up", dir);
    assert_int_equal(symlink("../out.png", lnk), 0);
    assert_int_equal(symlink("..", lnkdir), 0);
    t2i_dataset ds;
    write_text(jl, "{\"file_name\": \"img/1.png\", \"text\": \"a\\\\u0000b\"}\n"
                   "{\"note\": \"\\u0000\", \"file_name\": \"./img/1.png\", \"text\": \"two\"}\n"
                   "{\"file_name\": \"link.png\", \"text\": \"three\"}\n"
                   "{\"file_name\": \"up/out.png\", \"text\": \"four\"}\n");
    if (t2i_dataset_captions(&ds, dir, 3, 8, 8) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(ds.n, 4);
    assert_string_equal(ds.captions[0], "a\\u0000b");
    assert_string_equal(ds.captions[1], "two");
    t2i_dataset_free(&ds);
    tu_write_bytes(jl, ok, strlen(ok));
    assert_int_equal(t2i_dataset_captions(&ds, dir, 3, 8, 8), 0);
    t2i_dataset_free(&ds);
    free(lnk), free(lnkdir), free(abs), free(jl), free(csv);
    tu_rmtree(top);
    free(top), free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_folder),
        cmocka_unit_test(test_class_folders),
        cmocka_unit_test(test_caption_folders),
        cmocka_unit_test(test_caption_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
