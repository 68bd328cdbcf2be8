/* fuzz_image.c - libFuzzer target for t2i's image decoder (nn/image.c).
 *
 * Each input is a whole image file given to t2i_image_load_mem, the function t2i_image_load
 * calls after reading the file: the format is chosen from the magic bytes (PNG through
 * libpng, JPEG through libjpeg-turbo, WebP through libwebp, BMP, GIF, PNM, TGA through
 * stb_image; the libraries are not instrumented, nn/image.c's checks around them are), the
 * pixel limit T2I_IMAGE_MAX_PIXELS is checked before any pixel buffer exists. The last byte picks want_c (0-4), so the channel
 * conversions run on decoded pixels too.
 *
 * Invariants checked with __builtin_trap: a refused file leaves the image zeroed and one
 * line "fuzz: ..." as the error; an accepted one has 1-4 channels, a size within the limit
 * and every pixel readable (ASan sees a short buffer); converting it to every other
 * channel count keeps its size. Build and run: tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static volatile unsigned sink; /* keeps the reads of every pixel */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int want_c = size ? data[size - 1] % 5 : 0;
    t2i_image img;
    if (t2i_image_load_mem(&img, data, size, "fuzz", want_c) != 0) {
        const char *msg = t2i_error_msg();
        check(img.px == NULL && img.w == 0 && img.h == 0 && img.c == 0);
        check(strncmp(msg, "fuzz: ", 6) == 0 && strchr(msg, '\n') == NULL);
        return 0;
    }
    check(img.w > 0 && img.h > 0 && (size_t)img.w * (size_t)img.h <= T2I_IMAGE_MAX_PIXELS);
    check(img.c >= 1 && img.c <= 4 && (want_c == 0 || img.c == want_c));
    size_t n = (size_t)img.w * (size_t)img.h * (size_t)img.c;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) sum += img.px[i];
    /* the conversions, on images small enough to keep the fuzzer fast */
    if ((size_t)img.w * (size_t)img.h <= ((size_t)1 << 16)) {
        for (int c = 1; c <= 4; c++) {
            t2i_image out;
            t2i_image_convert(&out, &img, c);
            check(out.w == img.w && out.h == img.h && out.c == c);
            t2i_image_free(&out);
        }
    }
    sink = sum;
    t2i_image_free(&img);
    return 0;
}
