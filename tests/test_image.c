/* test_image.c - nn/image.c against PIL 9.4 (data from tests/ref/gen_image_ref.py, listed in
 * tests/data/img/index.json).
 *
 *   - every PNG encoding (gray 1/2/4/8/16, gray+alpha, tRNS keys, RGB 8/16, RGBA 8/16,
 *     palette 1/4/8-bit with tRNS, Adam7) decodes, for want_c 0/1/3/4, to exactly the bytes
 *     the script derived from PIL's decode (alpha dropped by compositing on black, which
 *     the script checked against PIL's RGBa premultiplication; gray = PIL's convert("L"));
 *   - JPEGs (gray, 4:2:0, 4:4:4, progressive, Adobe CMYK) decode to exactly PIL's pixels:
 *     both use libjpeg-turbo with its defaults (ISLOW IDCT, fancy upsampling), and CMYK
 *     goes through PIL's convert("RGB") formula. A different IDCT or chroma upsampling
 *     (stb_image's, before) is 1-3 levels off on most images, so JPEG_TOL = 0 catches it;
 *   - 8-bit resizes (bicubic, bilinear, nearest; up, down, mixed; gray, RGB, RGBA) match
 *     PIL.Image.resize within 1 level. Measured on all 21 cases (117633 values): max abs
 *     diff 0, 100% exact - the fixed-point arithmetic, premultiplied alpha and nearest's
 *     summed positions are Pillow's. The test requires max 1 and >= 99% exact;
 *   - float ("F" mode) resizes match within 1e-4 (measured: max abs diff 0, bit-exact);
 *   - the CLIP preprocessing (Resize(224, bicubic) + CenterCrop(224)) of 300x200 matches;
 *   - torchvision's centre-crop rounding (Python half-to-even) and padding;
 *   - corrupt, truncated, empty, mislabelled and oversized files: test_image_bad.c;
 *   - PNG save -> load round-trips exactly for 1..4 channels, atomically;
 *   - u8 <-> [-1, 1] conversions and the make_grid layout (torchvision's algorithm,
 *     re-implemented in the script).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <zlib.h>

#include "base.h"
#include "image.h"
#include "testutil.h"

#define JPEG_TOL 0 /* levels; see the header comment */

static cJSON *g_index;

static char *img_path(const char *name) {
    char *rel = t2i_asprintf("data/img/%s", name);
    char *p = tu_path(rel);
    free(rel);
    return p;
}

static cJSON *index_get(const char *key) {
    if (!g_index) {
        char *p = img_path("index.json");
        size_t n;
        char *text = t2i_read_file(p, &n, 0);
        if (!text) fail_msg("%s", t2i_error_msg());
        g_index = cJSON_Parse(text);
        free(text);
        free(p);
        assert_non_null(g_index);
    }
    cJSON *v = cJSON_GetObjectItemCaseSensitive(g_index, key);
    assert_non_null(v);
    return v;
}

/* Whole gzip file into memory; asserts the size. */
static uint8_t *read_gz(const char *name, size_t expect_len) {
    char *p = img_path(name);
    gzFile f = gzopen(p, "rb");
    assert_non_null(f);
    uint8_t *buf = t2i_malloc(expect_len + 1);
    int got = gzread(f, buf, (unsigned)expect_len + 1);
    gzclose(f);
    if (got != (int)expect_len) fail_msg("%s: %d bytes, expected %zu", p, got, expect_len);
    free(p);
    return buf;
}

static float *read_f32(const char *name, size_t n) {
    char *p = img_path(name);
    size_t len;
    char *raw = t2i_read_file(p, &len, 0);
    if (!raw) fail_msg("%s", t2i_error_msg());
    assert_int_equal(len, n * 4);
    float *x = t2i_malloc(n * sizeof(float));
    memcpy(x, raw, len); /* little-endian host assumed (x86-64, aarch64) */
    free(raw);
    free(p);
    return x;
}

static void load_ok(t2i_image *img, const char *name, int want_c) {
    char *p = img_path(name);
    if (t2i_image_load(img, p, want_c) != 0) fail_msg("%s", t2i_error_msg());
    free(p);
}

/* ---------------------------------------------------------------------------------- */

static void test_png_variants(void **state) {
    (void)state;
    const cJSON *e;
    int files = 0;
    cJSON_ArrayForEach(e, index_get("png")) {
        int w = tu_jint(e, "w"), h = tu_jint(e, "h"), c0 = tu_jint(e, "c");
        size_t np = (size_t)w * h;
        const int wants[4] = {0, 1, 3, 4};
        size_t total = np * (size_t)(c0 + 1 + 3 + 4);
        uint8_t *expect = read_gz(tu_jstr(e, "expect"), total);
        char *p = img_path(tu_jstr(e, "file"));
        size_t off = 0;
        for (int k = 0; k < 4; k++) {
            int c = wants[k] ? wants[k] : c0;
            t2i_image img;
            if (t2i_image_load(&img, p, wants[k]) != 0) fail_msg("%s", t2i_error_msg());
            assert_int_equal(img.w, w);
            assert_int_equal(img.h, h);
            assert_int_equal(img.c, c);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < np * c; i++)
                if (img.px[i] != expect[off + i] && bad++ == 0) first = i;
            if (bad)
                fail_msg("%s want_c=%d: %zu bytes differ, first at %zu (got %d, PIL %d)", p, wants[k],
                         bad, first, img.px[first], expect[off + first]);
            off += np * c;
            t2i_image_free(&img);
        }
        /* the header-only reader agrees */
        int iw, ih, ic;
        if (t2i_image_info(p, &iw, &ih, &ic) != 0) fail_msg("%s", t2i_error_msg());
        assert_int_equal(iw, w);
        assert_int_equal(ih, h);
        assert_int_equal(ic, c0);
        free(p);
        free(expect);
        files++;
    }
    assert_true(files >= 17);
}

static void test_load_mem(void **state) {
    (void)state;
    char *p = img_path("png_rgba8.png");
    size_t len;
    char *data = t2i_read_file(p, &len, 0);
    assert_non_null(data);
    t2i_image a, b;
    assert_int_equal(t2i_image_load_mem(&a, data, len, "mem.png", 3), 0);
    load_ok(&b, "png_rgba8.png", 3);
    assert_memory_equal(a.px, b.px, (size_t)a.w * a.h * 3);
    t2i_image_free(&a);
    t2i_image_free(&b);
    /* errors name the given name */
    assert_int_equal(t2i_image_load_mem(&a, data, len / 2, "half.png", 3), -1);
    assert_non_null(strstr(t2i_error_msg(), "half.png: corrupt PNG ("));
    assert_null(a.px);
    free(data);
    free(p);

    /* an uncompressed BMP, 3x2 at 24 bits: rows of 9 bytes padded to 12, pixels at 54 */
    uint8_t bmp[54 + 24] = {'B', 'M'};
    const uint32_t fields[][2] = {{2, sizeof bmp}, {10, 54}, {14, 40}, {18, 3}, {22, 2}, {34, 24}};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        for (int k = 0; k < 4; k++) bmp[fields[f][0] + k] = (uint8_t)(fields[f][1] >> (8 * k));
    bmp[26] = 1, bmp[28] = 24; /* planes, bits per pixel */
    for (int i = 0; i < 24; i++) bmp[54 + i] = (uint8_t)(10 * i);
    assert_int_equal(t2i_image_load_mem(&a, bmp, sizeof bmp, "ok.bmp", 3), 0);
    assert_int_equal(a.w, 3);
    assert_int_equal(a.h, 2);
    /* bottom-up rows of BGR: the top-left pixel is the second stored row's first (bytes 66-68) */
    assert_int_equal(a.px[2], 120);
    assert_int_equal(a.px[1], 130);
    assert_int_equal(a.px[0], 140);
    t2i_image_free(&a);
    /* stb_image would read the missing second row as zeros: refused instead */
    assert_int_equal(t2i_image_load_mem(&a, bmp, sizeof bmp - 12, "cut.bmp", 3), -1);
    assert_non_null(strstr(t2i_error_msg(), "cut.bmp: truncated BMP (66 bytes, its header needs 78)"));
    assert_null(a.px);
}

static void test_jpeg(void **state) {
    (void)state;
    const cJSON *e;
    cJSON_ArrayForEach(e, index_get("jpeg")) {
        int w = tu_jint(e, "w"), h = tu_jint(e, "h"), c = tu_jint(e, "c");
        size_t n = (size_t)w * h * c;
        uint8_t *expect = read_gz(tu_jstr(e, "expect"), n);
        t2i_image img;
        load_ok(&img, tu_jstr(e, "file"), 0);
        assert_int_equal(img.w, w);
        assert_int_equal(img.h, h);
        assert_int_equal(img.c, c);
        int maxd = 0;
        size_t exact = 0;
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)img.px[i] - (int)expect[i]);
            maxd = d > maxd ? d : maxd;
            exact += d == 0;
            sum += d;
        }
        print_message("  %-18s vs PIL: max diff %d, mean %.3f, exact %.1f%%\n", tu_jstr(e, "file"), maxd,
                      sum / n, 100.0 * exact / n);
        assert_true(maxd <= JPEG_TOL);
        int iw, ih, ic;
        char *p = img_path(tu_jstr(e, "file"));
        assert_int_equal(t2i_image_info(p, &iw, &ih, &ic), 0);
        assert_true(iw == w && ih == h && ic == c);
        free(p);
        t2i_image_free(&img);
        free(expect);
    }
}

/* WebP (libwebp): two lossless 5x3 files made with cwebp 1.2.4 (Debian package webp,
 * `cwebp -lossless [-exact]` from a PPM / PAM written by a few lines of Python) whose
 * pixels are R = 40x + 10, G = 60y + 5, B = (17xy + 3) % 256, A = 255 - 50x (the RGBA
 * one; -exact keeps the colour under partial alpha). Lossless, so exact. */
static void test_webp(void **state) {
    (void)state;
    for (int with_alpha = 0; with_alpha < 2; with_alpha++) {
        const char *name = with_alpha ? "webp_lossless_rgba_5x3.webp" : "webp_lossless_rgb_5x3.webp";
        t2i_image img;
        load_ok(&img, name, 0);
        assert_int_equal(img.w, 5);
        assert_int_equal(img.h, 3);
        assert_int_equal(img.c, with_alpha ? 4 : 3);
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 5; x++) {
                const uint8_t *px = img.px + ((size_t)y * 5 + x) * img.c;
                assert_int_equal(px[0], 40 * x + 10);
                assert_int_equal(px[1], 60 * y + 5);
                assert_int_equal(px[2], (17 * x * y + 3) % 256);
                if (with_alpha) assert_int_equal(px[3], 255 - 50 * x);
            }
        t2i_image_free(&img);
        /* to RGB: alpha composited on black, as for PNG */
        load_ok(&img, name, 3);
        assert_int_equal(img.c, 3);
        int x = 4, y = 2, a = with_alpha ? 255 - 50 * x : 255;
        assert_int_equal(img.px[((size_t)y * 5 + x) * 3], ((40 * x + 10) * a + 127) / 255);
        t2i_image_free(&img);
        int iw, ih, ic;
        char *p = img_path(name);
        assert_int_equal(t2i_image_info(p, &iw, &ih, &ic), 0);
        assert_true(iw == 5 && ih == 3 && ic == (with_alpha ? 4 : 3));
        /* truncated: every prefix fails with a message naming the file, never a crash */
        size_t len;
        char *data = t2i_read_file(p, &len, 0);
        assert_non_null(data);
        for (size_t n = 1; n < len; n++) {
            t2i_error_clear();
            assert_int_equal(t2i_image_load_mem(&img, data, n, "cut.webp", 3), -1);
            assert_non_null(strstr(t2i_error_msg(), "cut.webp: "));
        }
        t2i_error_clear();
        assert_int_equal(t2i_image_load_mem(&img, data, len - 10, "cut.webp", 3), -1);
        assert_non_null(strstr(t2i_error_msg(), "cut.webp: corrupt WebP"));
        free(data);
        free(p);
    }
}

static t2i_resize_filter filter_of(const char *name) {
    if (!strcmp(name, "bicubic")) return T2I_RESIZE_BICUBIC;
    if (!strcmp(name, "bilinear")) return T2I_RESIZE_BILINEAR;
    assert_string_equal(name, "nearest");
    return T2I_RESIZE_NEAREST;
}

/* Returns the max abs difference; adds to the exact and total counters. */
static int compare_u8(const t2i_image *a, const t2i_image *b, size_t *exact, size_t *total) {
    assert_int_equal(a->w, b->w);
    assert_int_equal(a->h, b->h);
    assert_int_equal(a->c, b->c);
    int maxd = 0;
    size_t n = (size_t)a->w * a->h * a->c;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a->px[i] - (int)b->px[i]);
        maxd = d > maxd ? d : maxd;
        *exact += d == 0;
    }
    *total += n;
    return maxd;
}

static void test_resize_u8(void **state) {
    (void)state;
    const cJSON *e;
    size_t exact = 0, total = 0;
    int worst = 0, cases = 0;
    cJSON_ArrayForEach(e, index_get("resize")) {
        t2i_image src, want, got;
        int c = tu_jint(e, "c");
        load_ok(&src, tu_jstr(e, "src"), c);
        load_ok(&want, tu_jstr(e, "out"), c);
        t2i_image_resize(&got, &src, tu_jint(e, "w"), tu_jint(e, "h"), filter_of(tu_jstr(e, "filter")));
        size_t ex0 = exact, tot0 = total;
        int d = compare_u8(&got, &want, &exact, &total);
        if (d > 0)
            print_message("  %s: max diff %d, %.2f%% exact\n", tu_jstr(e, "out"), d,
                          100.0 * (exact - ex0) / (total - tot0));
        if (d > 1) fail_msg("%s: max diff %d > 1", tu_jstr(e, "out"), d);
        worst = d > worst ? d : worst;
        cases++;
        t2i_image_free(&src);
        t2i_image_free(&want);
        t2i_image_free(&got);
    }
    print_message("  %d resize cases vs PIL: max abs diff %d, %.3f%% of %zu values exact\n", cases,
                  worst, 100.0 * exact / total, total);
    assert_true(cases >= 20);
    assert_true(exact >= total * 99 / 100); /* "exact on most pixels" */
}

static void test_resize_float(void **state) {
    (void)state;
    const cJSON *e;
    double worst = 0;
    int cases = 0;
    cJSON_ArrayForEach(e, index_get("fresize")) {
        int W = tu_jint(e, "W"), H = tu_jint(e, "H"), w = tu_jint(e, "w"), h = tu_jint(e, "h");
        float *src = read_f32(tu_jstr(e, "src"), (size_t)W * H);
        float *want = read_f32(tu_jstr(e, "out"), (size_t)w * h);
        /* two identical planes: checks the per-channel offsets too */
        float *src2 = t2i_malloc(sizeof(float) * 2 * W * H);
        memcpy(src2, src, sizeof(float) * W * H);
        memcpy(src2 + (size_t)W * H, src, sizeof(float) * W * H);
        float *got = t2i_malloc(sizeof(float) * 2 * w * h);
        t2i_resize_chw(got, src2, 2, H, W, h, w, filter_of(tu_jstr(e, "filter")));
        double maxd = 0;
        for (size_t i = 0; i < 2 * (size_t)w * h; i++) {
            double d = fabs((double)got[i] - want[i % ((size_t)w * h)]);
            maxd = d > maxd || isnan(d) ? d : maxd;
        }
        if (!(maxd <= 1e-4)) fail_msg("%s: max diff %g", tu_jstr(e, "out"), maxd);
        worst = maxd > worst ? maxd : worst;
        cases++;
        free(src);
        free(src2);
        free(want);
        free(got);
    }
    print_message("  %d float resize cases vs PIL mode F: max abs diff %.3g\n", cases, worst);
    assert_true(cases >= 7);
}

static void test_clip_preprocess(void **state) {
    (void)state;
    const cJSON *e = index_get("clip");
    t2i_image src, want, got;
    load_ok(&src, tu_jstr(e, "src"), 3);
    load_ok(&want, tu_jstr(e, "out"), 3);
    int size = tu_jint(e, "size");
    t2i_image_resize_crop(&got, &src, size, T2I_RESIZE_BICUBIC);
    size_t exact = 0, total = 0;
    int d = compare_u8(&got, &want, &exact, &total);
    print_message("  CLIP 300x200 -> %d: max diff %d, %.3f%% exact\n", size, d, 100.0 * exact / total);
    assert_true(d <= 1);
    t2i_image_free(&src);
    t2i_image_free(&want);
    t2i_image_free(&got);
}

static void test_center_crop(void **state) {
    (void)state;
    /* 7 x 5 image whose pixel value is 10 * y + x */
    t2i_image src, dst;
    t2i_image_alloc(&src, 7, 5, 1);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 7; x++) src.px[y * 7 + x] = (uint8_t)(10 * y + x + 1);
    /* W - w = 3: round(1.5) = 2; H - h = 1: round(0.5) = 0 (half to even) */
    t2i_image_center_crop(&dst, &src, 4, 4);
    assert_int_equal(dst.px[0], 10 * 0 + 2 + 1);
    assert_int_equal(dst.px[3 * 4 + 3], 10 * 3 + 5 + 1);
    t2i_image_free(&dst);
    /* W - w = 5: round(2.5) = 2; H - h = 3: round(1.5) = 2 */
    t2i_image_center_crop(&dst, &src, 2, 2);
    assert_int_equal(dst.px[0], 10 * 2 + 2 + 1);
    t2i_image_free(&dst);
    /* larger than the image: torchvision pads (w - W) // 2 = 1 left, (h - H) // 2 = 1 top */
    t2i_image_center_crop(&dst, &src, 10, 8);
    assert_int_equal(dst.px[0], 0);
    assert_int_equal(dst.px[1 * 10 + 1], 1);        /* src (0, 0) */
    assert_int_equal(dst.px[5 * 10 + 7], 10 * 4 + 6 + 1); /* src (6, 4) */
    assert_int_equal(dst.px[5 * 10 + 8], 0);
    assert_int_equal(dst.px[6 * 10 + 7], 0);
    t2i_image_free(&dst);
    /* resize_crop of a tall image: short side (width) becomes the size */
    t2i_image tall, out;
    t2i_image_alloc(&tall, 4, 9, 3);
    t2i_image_resize_crop(&out, &tall, 2, T2I_RESIZE_BILINEAR);
    assert_int_equal(out.w, 2);
    assert_int_equal(out.h, 2);
    t2i_image_free(&out);
    t2i_image_free(&tall);
    t2i_image_free(&src);
}

/* ---------------------------------------------------------------------------------- */

static void test_save_roundtrip(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    t2i_rng rng;
    t2i_rng_seed(&rng, 7);
    for (int c = 1; c <= 4; c++) {
        int w = 13 + c, h = 5 + 2 * c;
        t2i_image a, b;
        t2i_image_alloc(&a, w, h, c);
        for (size_t i = 0; i < (size_t)w * h * c; i++) a.px[i] = (uint8_t)t2i_rng_below(&rng, 256);
        a.px[0] = 0;
        a.px[1] = 255;
        char *p = t2i_asprintf("%s/rt%d.png", dir, c);
        if (t2i_image_save_png(p, a.px, w, h, c) != 0) fail_msg("%s", t2i_error_msg());
        if (t2i_image_load(&b, p, 0) != 0) fail_msg("%s", t2i_error_msg());
        assert_int_equal(b.w, w);
        assert_int_equal(b.h, h);
        assert_int_equal(b.c, c);
        assert_memory_equal(a.px, b.px, (size_t)w * h * c);
        t2i_image_free(&b);
        /* overwriting replaces the file */
        a.px[5] ^= 0xFF;
        assert_int_equal(t2i_image_save_png(p, a.px, w, h, c), 0);
        assert_int_equal(t2i_image_load(&b, p, 0), 0);
        assert_memory_equal(a.px, b.px, (size_t)w * h * c);
        t2i_image_free(&b);
        t2i_image_free(&a);
        free(p);
    }
    /* no temporary files left behind */
    DIR *d = opendir(dir);
    struct dirent *ent;
    int files = 0;
    while ((ent = readdir(d)))
        if (ent->d_name[0] != '.') {
            assert_null(strstr(ent->d_name, ".tmp"));
            files++;
        }
    closedir(d);
    assert_int_equal(files, 4);
    /* an unwritable destination fails with the path in the message */
    uint8_t px[3] = {1, 2, 3};
    char *bad = t2i_asprintf("%s/no/such/folder/x.png", dir);
    assert_int_equal(t2i_image_save_png(bad, px, 1, 1, 3), -1);
    assert_non_null(strstr(t2i_error_msg(), bad));
    free(bad);
    tu_rmtree(dir);
    free(dir);
}

/* The streaming writer: rows in uneven chunks read back exactly, for every channel count;
 * an incomplete image, extra rows or a discarded writer leave no file and no temp file. */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *ent;
    int n = 0;
    while ((ent = readdir(d)))
        if (ent->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void test_png_writer(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    t2i_rng rng;
    t2i_rng_seed(&rng, 11);
    for (int c = 1; c <= 4; c++) {
        int w = 37 + c, h = 29;
        size_t row = (size_t)w * c;
        uint8_t *px = t2i_malloc(row * h);
        for (size_t i = 0; i < row * h; i++) px[i] = (uint8_t)t2i_rng_below(&rng, 256);
        char *p = t2i_asprintf("%s/w%d.png", dir, c);
        t2i_png_writer *pw = t2i_png_writer_open(p, w, h, c);
        assert_non_null(pw);
        assert_false(t2i_path_exists(p)); /* not before it is complete */
        for (int y = 0, n = 1; y < h; y += n, n = n * 2 + 1) {
            n = T2I_MIN(n, h - y);
            assert_int_equal(t2i_png_writer_rows(pw, px + (size_t)y * row, n), 0);
        }
        assert_int_equal(t2i_png_writer_close(pw, 1), 0);
        t2i_image b;
        if (t2i_image_load(&b, p, 0) != 0) fail_msg("%s", t2i_error_msg());
        assert_int_equal(b.w, w);
        assert_int_equal(b.h, h);
        assert_int_equal(b.c, c);
        assert_memory_equal(b.px, px, row * h);
        t2i_image_free(&b);
        free(p), free(px);
    }
    assert_int_equal(count_entries(dir), 4);
    uint8_t rows[3 * 4 * 3] = {0};
    char *p = t2i_asprintf("%s/short.png", dir);
    t2i_png_writer *pw = t2i_png_writer_open(p, 4, 3, 3);
    assert_int_equal(t2i_png_writer_rows(pw, rows, 2), 0);
    assert_int_equal(t2i_png_writer_rows(pw, rows, 2), -1); /* 4 rows of a 3-row image */
    assert_non_null(strstr(t2i_error_msg(), "4 rows"));
    assert_int_equal(t2i_png_writer_close(pw, 1), -1); /* 2 of 3 rows */
    assert_non_null(strstr(t2i_error_msg(), "2 of 3 rows"));
    pw = t2i_png_writer_open(p, 4, 3, 3);
    assert_int_equal(t2i_png_writer_rows(pw, rows, 3), 0);
    assert_int_equal(t2i_png_writer_close(pw, 0), 0); /* discarded */
    assert_false(t2i_path_exists(p));
    assert_int_equal(count_entries(dir), 4); /* no temp files either */
    free(p);
    p = t2i_asprintf("%s/no/such/folder/x.png", dir);
    assert_null(t2i_png_writer_open(p, 4, 3, 3));
    assert_non_null(strstr(t2i_error_msg(), "no/such/folder"));
    free(p);
    tu_rmtree(dir);
    free(dir);
}

static void test_chw(void **state) {
    (void)state;
    t2i_image img;
    t2i_image_alloc(&img, 256, 1, 3);
    for (int i = 0; i < 256; i++) {
        img.px[3 * i] = (uint8_t)i;
        img.px[3 * i + 1] = (uint8_t)(255 - i);
        img.px[3 * i + 2] = 128;
    }
    float *x = t2i_malloc(sizeof(float) * 3 * 256);
    t2i_image_to_chw(x, &img);
    assert_true(x[0] == -1.0f && x[255] == 1.0f);        /* plane 0: R */
    assert_true(x[256] == 1.0f && x[511] == -1.0f);      /* plane 1: G */
    assert_float_equal(x[512], 128 / 127.5 - 1, 1e-7);    /* plane 2: B */
    uint8_t back[3 * 256];
    t2i_chw_to_u8(back, x, 3, 1, 256);
    assert_memory_equal(back, img.px, sizeof back);
    /* rounding, clamping, NaN */
    const float v[7] = {0.0f, NAN, 5.0f, -3.0f, -INFINITY, INFINITY, 1.0f / 255.0f};
    uint8_t u[7];
    t2i_chw_to_u8(u, v, 1, 1, 7);
    assert_int_equal(u[0], 128); /* 127.5 rounds up */
    assert_int_equal(u[1], 0);
    assert_int_equal(u[2], 255);
    assert_int_equal(u[3], 0);
    assert_int_equal(u[4], 0);
    assert_int_equal(u[5], 255);
    assert_int_equal(u[6], 128); /* 128.0 */
    free(x);
    t2i_image_free(&img);
}

static void test_grid(void **state) {
    (void)state;
    const cJSON *e = index_get("grid");
    int n = tu_jint(e, "n"), C = tu_jint(e, "C"), H = tu_jint(e, "H"), W = tu_jint(e, "W");
    int nrow = tu_jint(e, "nrow"), pad = tu_jint(e, "pad"), pv = tu_jint(e, "pad_value");
    int gw = tu_jint(e, "gw"), gh = tu_jint(e, "gh");
    /* the script's pixel values: (k * 37 + c * 11 + y * 5 + x * 3) % 256, as [-1, 1] */
    size_t per = (size_t)C * H * W;
    float *imgs = t2i_malloc(sizeof(float) * per * n);
    for (int k = 0; k < n; k++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    imgs[k * per + ((size_t)c * H + y) * W + x] =
                        (float)((k * 37 + c * 11 + y * 5 + x * 3) % 256) / 127.5f - 1.0f;
    t2i_image g;
    t2i_make_grid(&g, imgs, n, C, H, W, nrow, pad, (uint8_t)pv);
    /* 3 columns of (3 + 2), 2 rows of (4 + 2), plus the outer padding */
    assert_int_equal(g.w, 3 * (W + pad) + pad);
    assert_int_equal(g.h, 2 * (H + pad) + pad);
    assert_int_equal(g.w, gw);
    assert_int_equal(g.h, gh);
    assert_int_equal(g.px[0], pv);
    /* image 4 (row 1, column 1), channel 2, pixel (x 2, y 3) */
    size_t at = ((size_t)(pad + 1 * (H + pad) + 3) * g.w + pad + 1 * (W + pad) + 2) * C + 2;
    assert_int_equal(g.px[at], (4 * 37 + 2 * 11 + 3 * 5 + 2 * 3) % 256);
    char *gp = img_path(tu_jstr(e, "file"));
    size_t glen;
    uint8_t *want = (uint8_t *)t2i_read_file(gp, &glen, 0);
    assert_non_null(want);
    assert_int_equal(glen, (size_t)gw * gh * C);
    free(gp);
    assert_memory_equal(g.px, want, (size_t)gw * gh * C);
    free(want);
    t2i_image_free(&g);
    /* save_grid: padding 2 of value 0, loadable */
    char *dir = tu_tmpdir();
    char *p = t2i_asprintf("%s/grid.png", dir);
    assert_int_equal(t2i_save_grid(p, imgs, n, C, H, W, 2), 0);
    t2i_image l;
    assert_int_equal(t2i_image_load(&l, p, 0), 0);
    assert_int_equal(l.w, 2 * (W + 2) + 2);
    assert_int_equal(l.h, 3 * (H + 2) + 2);
    assert_int_equal(l.c, C);
    assert_int_equal(l.px[0], 0);
    assert_int_equal(l.px[(2 * l.w + 2) * C], 0); /* image 0, channel 0, pixel (0, 0) */
    assert_int_equal(l.px[(2 * l.w + 2 + W + 2) * C], 37); /* image 1 */
    t2i_image_free(&l);
    free(p);
    tu_rmtree(dir);
    free(dir);
    free(imgs);
}

static int teardown_all(void **state) {
    (void)state;
    cJSON_Delete(g_index);
    g_index = NULL;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_variants),  cmocka_unit_test(test_load_mem),
        cmocka_unit_test(test_jpeg),          cmocka_unit_test(test_webp),
        cmocka_unit_test(test_resize_u8),
        cmocka_unit_test(test_resize_float),  cmocka_unit_test(test_clip_preprocess),
        cmocka_unit_test(test_center_crop),   cmocka_unit_test(test_save_roundtrip),
        cmocka_unit_test(test_chw),           cmocka_unit_test(test_grid),
        cmocka_unit_test(test_png_writer),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
