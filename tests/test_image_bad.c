/* test_image_bad.c - damaged, mislabelled and oversized image files (nn/image.c,
 * nn/image_decode.c) are refused with -1 and one line naming the file and the problem,
 * never a crash, and the image is left cleared; split from test_image.c, which checks the
 * files that decode.
 *
 *   - empty and mislabelled files; PNGs with bad CRCs, chunks or deflate streams; PNG and
 *     JPEG headers beyond the pixel limit, through the loader and the info reader (damaged
 *     WebPs are in test_image.c's test_webp);
 *   - JPEGs through libjpeg-turbo: a truncated baseline or progressive file, garbage
 *     entropy-coded data, a bad Huffman code, arithmetic coding and more than 256
 *     progressive scans, each with libjpeg's reason;
 *   - the inputs the image fuzzer found (tests/fuzz/corpus/image/regress_*), each refused
 *     by the loader and the info reader, while valid files of the same formats still load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <zlib.h>

#include "base.h"
#include "image.h"
#include "testutil.h"


static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the first chunk of the given type (its length field). */
static size_t find_chunk(const uint8_t *png, size_t len, const char *type) {
    size_t off = 8;
    while (off + 12 <= len) {
        if (!memcmp(png + off + 4, type, 4)) return off;
        off += 12 + get_be32(png + off);
    }
    fail_msg("chunk %s not found", type);
    return 0;
}

static void fix_crc(uint8_t *png, size_t chunk) {
    uint32_t n = get_be32(png + chunk);
    tu_put_be32(png + chunk + 8 + n, (uint32_t)crc32(0, png + chunk + 4, n + 4));
}

/* Loads path (both loaders and the info reader where meaningful) and checks the failure. */
static void expect_fail(const char *path, const char *what, int info_fails) {
    t2i_image img;
    img.px = (uint8_t *)1; /* must be cleared */
    t2i_error_clear();
    int rc = t2i_image_load(&img, path, 3);
    const char *msg = t2i_error_msg();
    if (rc != -1 || !strstr(msg, path) || !strstr(msg, what))
        fail_msg("%s: rc %d, message \"%s\", expected it to name the file and say \"%s\"", path, rc,
                 msg, what);
    assert_null(img.px);
    int w, h, c;
    if (info_fails) {
        t2i_error_clear();
        assert_int_equal(t2i_image_info(path, &w, &h, &c), -1);
        assert_non_null(strstr(t2i_error_msg(), path));
    }
}

static void test_bad_files(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *src = tu_path("data/img/png_rgb8.png");
    size_t len;
    uint8_t *png = (uint8_t *)t2i_read_file(src, &len, 0);
    assert_non_null(png);
    uint8_t *buf = t2i_malloc(len + 64);
    char *p;

    p = t2i_asprintf("%s/missing.png", dir);
    t2i_error_clear();
    t2i_image img;
    assert_int_equal(t2i_image_load(&img, p, 3), -1);
    char *want = t2i_asprintf("%s: cannot open: No such file or directory", p);
    assert_string_equal(t2i_error_msg(), want);
    assert_int_equal(t2i_image_info(p, &img.w, &img.h, &img.c), -1);
    free(want);
    free(p);

    p = t2i_asprintf("%s/empty.png", dir);
    tu_write_bytes(p, "", 0);
    expect_fail(p, "empty", 1);
    free(p);

    p = t2i_asprintf("%s/text.png", dir);
    const char *text = "This is not a PNG file, whatever its name says.\n";
    tu_write_bytes(p, text, strlen(text));
    expect_fail(p, "not a supported image", 1);
    free(p);

    p = t2i_asprintf("%s/trunc_half.png", dir);
    tu_write_bytes(p, png, len / 2);
    expect_fail(p, "corrupt PNG (", 0); /* the header is intact: info succeeds */
    free(p);

    p = t2i_asprintf("%s/trunc_header.png", dir);
    tu_write_bytes(p, png, 20);
    expect_fail(p, "corrupt PNG (", 1);
    free(p);

    p = t2i_asprintf("%s/magic_only.png", dir);
    tu_write_bytes(p, png, 8);
    expect_fail(p, "corrupt PNG (", 1);
    free(p);

    size_t idat = find_chunk(png, len, "IDAT"), ihdr = find_chunk(png, len, "IHDR");
    uint32_t idat_len = get_be32(png + idat);

    p = t2i_asprintf("%s/idat_crc.png", dir);
    memcpy(buf, png, len);
    buf[idat + 8 + idat_len] ^= 0x01; /* CRC of IDAT */
    tu_write_bytes(p, buf, len);
    expect_fail(p, "corrupt PNG (", 0);
    free(p);

    p = t2i_asprintf("%s/ihdr_crc.png", dir);
    memcpy(buf, png, len);
    buf[ihdr + 8 + 13] ^= 0x80;
    tu_write_bytes(p, buf, len);
    expect_fail(p, "corrupt PNG (", 1);
    free(p);

    p = t2i_asprintf("%s/idat_garbage.png", dir);
    memcpy(buf, png, len);
    for (uint32_t i = idat_len / 3; i < idat_len / 3 + 40; i++) buf[idat + 8 + i] = (uint8_t)(0xA5 ^ i);
    fix_crc(buf, idat); /* a valid chunk holding a broken deflate stream */
    tu_write_bytes(p, buf, len);
    expect_fail(p, "corrupt PNG (", 0);
    free(p);

    p = t2i_asprintf("%s/no_iend.png", dir);
    tu_write_bytes(p, png, len - 12);
    expect_fail(p, "corrupt PNG (", 0);
    free(p);

    /* headers claiming huge sizes (valid CRC): refused before any allocation */
    const uint32_t dims[3][2] = {{100000, 100000}, {65536, 4097}, {0x7fffffffu, 1}};
    for (int k = 0; k < 3; k++) {
        p = t2i_asprintf("%s/huge%d.png", dir, k);
        memcpy(buf, png, len);
        tu_put_be32(buf + ihdr + 8, dims[k][0]);
        tu_put_be32(buf + ihdr + 12, dims[k][1]);
        fix_crc(buf, ihdr);
        tu_write_bytes(p, buf, len);
        /* the first two pass libpng's own limits and hit ours */
        expect_fail(p, k < 2 ? "more than the limit" : "corrupt PNG (", 1);
        free(p);
    }

    /* a JPEG whose frame header claims 65500 x 65500 */
    char *jp = tu_path("data/img/jpeg_rgb420.jpg");
    size_t jlen;
    uint8_t *jpg = (uint8_t *)t2i_read_file(jp, &jlen, 0);
    assert_non_null(jpg);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < jlen; i++)
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {
            sof = i;
            break;
        }
    assert_true(sof > 0);
    jpg[sof + 5] = jpg[sof + 7] = 0xFF; /* height and width, big-endian, after length and precision */
    jpg[sof + 6] = jpg[sof + 8] = 0xDC;
    p = t2i_asprintf("%s/huge.jpg", dir);
    tu_write_bytes(p, jpg, jlen);
    expect_fail(p, "more than the limit", 1);
    free(p);
    /* a truncated JPEG: libjpeg would fill the missing rows with grey; refused, wherever
     * the cut is (in the entropy-coded data, or just the EOI marker missing). The header
     * is intact, so t2i_image_info (header only) succeeds. */
    free(jpg);
    jpg = (uint8_t *)t2i_read_file(jp, &jlen, 0);
    p = t2i_asprintf("%s/trunc.jpg", dir);
    size_t cuts[] = {jlen / 2, jlen - 2};
    for (int k = 0; k < 2; k++) {
        tu_write_bytes(p, jpg, cuts[k]);
        expect_fail(p, "corrupt JPEG (Premature end of JPEG file)", 0);
        int iw, ih, ic;
        assert_int_equal(t2i_image_info(p, &iw, &ih, &ic), 0);
        assert_true(iw == 64 && ih == 48 && ic == 3);
    }
    free(p);
    p = t2i_asprintf("%s/jpeg_header_only.jpg", dir);
    tu_write_bytes(p, jpg, 4);
    expect_fail(p, "corrupt JPEG (", 1);
    free(p);
    free(jpg);
    free(jp);

    free(buf);
    free(png);
    free(src);
    tu_rmtree(dir);
    free(dir);
}

/* A progressive 8x8 gray JPEG of `scans` scans: a DC scan, then the same AC scan again and
 * again (a first scan at full precision may repeat without libjpeg's progression warning).
 * One Huffman code of one bit each (DC difference 0, end of band), so every pixel is 128.
 * dc_data: the DC scan's byte of entropy-coded data, 0x7F (code "0", then padding). */
static size_t progressive_jpeg(uint8_t *out, int scans, uint8_t dc_data) {
    static const uint8_t head[] = {
        0xFF, 0xD8,                                                 /* SOI */
        0xFF, 0xC2, 0x00, 0x0B, 8, 0x00, 8, 0x00, 8, 1, 1, 0x11, 0, /* SOF2: 8x8, 1 component */
        0xFF, 0xC4, 0x00, 0x14, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, /* DHT DC: "0" -> 0 */
        0xFF, 0xC4, 0x00, 0x14, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, /* DHT AC: "0" -> EOB */
    };
    static const uint8_t dc[] = {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 0, 0x00, 0x7F};  /* SOS + one bit */
    static const uint8_t ac[] = {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 1, 63, 0x00, 0x7F}; /* bands 1-63 */
    size_t n = 0;
    memcpy(out + n, head, sizeof head), n += sizeof head;
    out[n++] = 0xFF, out[n++] = 0xDB, out[n++] = 0x00, out[n++] = 0x43, out[n++] = 0; /* DQT: all 1 */
    memset(out + n, 1, 64), n += 64;
    memcpy(out + n, dc, sizeof dc), n += sizeof dc;
    out[n - 1] = dc_data;
    for (int i = 1; i < scans; i++) memcpy(out + n, ac, sizeof ac), n += sizeof ac;
    out[n++] = 0xFF, out[n++] = 0xD9;
    return n;
}

/* Damaged JPEGs of the fuzz corpus are refused with libjpeg's reason (the header of each is
 * intact, so t2i_image_info accepts them); the scan limit holds at exactly JPEG_MAX_SCANS. */
static void test_jpeg_damaged(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"seed_jpeg_truncated", "corrupt JPEG (Premature end of JPEG file)"},
        {"seed_jpeg_progressive_truncated", "corrupt JPEG (Premature end of JPEG file)"},
        {"seed_jpeg_corrupt_entropy", "corrupt JPEG (Corrupt JPEG data: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = t2i_asprintf("%s/tests/fuzz/corpus/image/%s", T2I_SOURCE_DIR, cases[i][0]);
        expect_fail(p, cases[i][1], 0);
        int w, h, c;
        assert_int_equal(t2i_image_info(p, &w, &h, &c), 0);
        assert_true(w == 64 && h == 48 && c == 3);
        free(p);
    }
    uint8_t buf[4096];
    t2i_image img;
    size_t n = progressive_jpeg(buf, 256, 0x7F);
    if (t2i_image_load_mem(&img, buf, n, "scans256.jpg", 0) != 0) fail_msg("%s", t2i_error_msg());
    assert_true(img.w == 8 && img.h == 8 && img.c == 1);
    for (int i = 0; i < 64; i++) assert_int_equal(img.px[i], 128);
    t2i_image_free(&img);
    n = progressive_jpeg(buf, 257, 0x7F);
    assert_int_equal(t2i_image_load_mem(&img, buf, n, "scans257.jpg", 0), -1);
    assert_string_equal(t2i_error_msg(), "scans257.jpg: corrupt JPEG (more than 256 progressive scans)");
    assert_null(img.px);
    /* the same file cut inside its third scan, and with a bad Huffman code in the first */
    n = progressive_jpeg(buf, 3, 0x7F);
    assert_int_equal(t2i_image_load_mem(&img, buf, n - 4, "cut.jpg", 0), -1);
    assert_string_equal(t2i_error_msg(), "cut.jpg: corrupt JPEG (Premature end of JPEG file)");
    n = progressive_jpeg(buf, 3, 0x7F);
    buf[3] = 0xCA; /* SOF10: progressive with arithmetic coding */
    assert_int_equal(t2i_image_load_mem(&img, buf, n, "arith.jpg", 0), -1);
    assert_string_equal(t2i_error_msg(), "arith.jpg: unsupported JPEG (arithmetic coding)");
    n = progressive_jpeg(buf, 3, 0x80); /* "1...": no such code; libjpeg reads on into the marker */
    assert_int_equal(t2i_image_load_mem(&img, buf, n, "bad.jpg", 0), -1);
    assert_string_equal(t2i_error_msg(), "bad.jpg: corrupt JPEG (Corrupt JPEG data: premature end of data segment)");
}

/* Inputs the fuzzer found (tests/fuzz/corpus/image/regress_*): each must be refused with
 * its message by both the loader and t2i_image_info, and a valid PNM still load. */
static void test_fuzz_regressions(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"regress_pnm_number_overflow", "corrupt PNM (a header number over 16777216)"}, /* stb: int overflow */
        {"regress_pnm_truncated_huge", "truncated PNM (52 bytes, its header needs"},    /* stb: uninitialised pixels */
        {"regress_jpeg_dht_overflow", "corrupt JPEG (Bogus Huffman table definition)"}, /* stb: wrote past its tables */
        {"regress_jpeg_dht_after_fill", "not a supported image ("}, /* JPEG after 0xFF fill bytes: stb took it */
        {"regress_tga_truncated_rle", "truncated TGA (20 bytes, its header needs"}, /* stb: decoded zeros */
        {"regress_tga_truncated_header", "truncated TGA (17 bytes, its header needs 18)"}, /* 118 MB from 17 */
        /* a 14406x14679 screen (211 Mpixel, within the general limit): stb would take 2 GB */
        {"regress_gif_screen_2gb", "image is 14406x14679, more than the GIF limit of 16777216 pixels"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = t2i_asprintf("%s/tests/fuzz/corpus/image/%s", T2I_SOURCE_DIR, cases[i][0]);
        expect_fail(p, cases[i][1], !strstr(cases[i][1], "TGA")); /* a TGA's header alone is fine */
        free(p);
    }
    static const char ppm[] = "P6 2 1 65535 \x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c";
    t2i_image img;
    assert_int_equal(t2i_image_load_mem(&img, ppm, sizeof ppm - 1, "ok.ppm", 0), 0);
    assert_true(img.w == 2 && img.h == 1 && img.c == 3);
    t2i_image_free(&img);
    assert_int_equal(t2i_image_load_mem(&img, ppm, sizeof ppm - 2, "cut.ppm", 0), -1);
    assert_string_equal(t2i_error_msg(), "cut.ppm: truncated PNM (24 bytes, its header needs 25)");
    char *tga = t2i_asprintf("%s/tests/fuzz/corpus/image/seed_tga_rgb", T2I_SOURCE_DIR);
    assert_int_equal(t2i_image_load(&img, tga, 0), 0);
    assert_true(img.w == 2 && img.h == 2 && img.c == 3);
    t2i_image_free(&img);
    free(tga);
    char *gif = t2i_asprintf("%s/tests/fuzz/corpus/image/seed_gif_2x2", T2I_SOURCE_DIR); /* a GIF within it */
    assert_int_equal(t2i_image_load(&img, gif, 0), 0);
    assert_true(img.w == 2 && img.h == 2);
    t2i_image_free(&img);
    free(gif);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_jpeg_damaged),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
