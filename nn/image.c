/* image.c - image files (decoding, encoding, the streaming PNG writer) and channel
 * conversions; the JPEG and WebP decoders are in image_decode.c, resizing and crops in
 * image_resize.c, tensors and grids in image_grid.c.
 *
 * What it implements (declared in image.h):
 *   - Decoding. The format is chosen from the first bytes, never from the file name:
 *     PNG goes through libpng (every colour type, bit depths 1-16, Adam7 interlacing,
 *     palette and tRNS transparency); WebP ("RIFF" <size> "WEBP") through libwebp (lossy
 *     and lossless, still images only; alpha kept as a 4th channel like PNG's); JPEG (SOI marker FF D8 first) through
 *     libjpeg-turbo with its default settings (the ISLOW IDCT and fancy upsampling, as
 *     PIL), so pixels match PIL's exactly: gray stays gray, YCbCr and RGB give RGB, CMYK
 *     and YCCK are converted to RGB as PIL does; every libjpeg warning about damaged or
 *     missing data is an error (a truncated file is refused, not filled with grey);
 *     arithmetic coding and more than JPEG_MAX_SCANS progressive scans are refused. Anything else is offered to
 *     stb_image, compiled with BMP, GIF, TGA and PNM only (its JPEG decoder was not
 *     robust against corrupt data; PSD, PIC and HDR are not formats of photo folders).
 *     16-bit samples are reduced to 8 bits with rounding,
 *     v8 = (v16 * 255 + 32767) / 65535. Dimensions are checked against
 *     T2I_IMAGE_MAX_PIXELS before any pixel buffer is allocated.
 *   - Channel conversion (t2i_image_convert, and want_c of the loaders):
 *       gray -> RGB replicates; anything -> RGBA / gray+alpha adds an opaque alpha;
 *       dropping alpha composites the image on black, i.e. premultiplies:
 *       v' = round(v * a / 255) - a transparent pixel becomes black, not its hidden colour;
 *       RGB -> gray is PIL's convert("L"), ITU-R 601-2 luma in 16-bit fixed point:
 *       L = (R * 19595 + G * 38470 + B * 7471 + 32768) >> 16 (checked against Pillow 9.4
 *       on all 2^24 colours). RGBA -> gray composites first, then takes the luma.
 *   - Encoding: PNG through stb_image_write into memory (its deflate replaced by
 *     zlib's), then t2i_write_file_atomic, then the size on disk is checked.
 *
 * Usage: every function that fills a t2i_image (load, convert, resize, crops, grid)
 * allocates its pixels; release them with t2i_image_free. dst must not be src. want_c
 * may also be 2 (gray+alpha). JPEG EXIF orientation is ignored, as PIL does without
 * ImageOps.exif_transpose.
 *
 * Failure: the loaders, t2i_image_info and the savers return 0 on success and -1 after
 * t2i_error_set("<path>: <problem>") on a missing, unreadable, corrupt, truncated or
 * oversized file; they never abort on bad data. Everything else only asserts its
 * contract (sizes, channel counts) and cannot fail.
 *
 * Thread safety: decoding keeps all state on the stack or in its own libpng and libjpeg
 * structs; stb_image's failure reason is thread-local in the packaged version (2.27).
 */
#include "image.h"
#include "image_codec.h"

#include "base.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>
#include <zlib.h>

/* stb is compiled here, privately (static functions), so other files may include it
 * too; its code is not ours to make -Wextra clean. Its PNG decoder is compiled but
 * never reached (PNG files go to libpng); leaving it out would leave static
 * declarations without definitions. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_JPEG /* libjpeg-turbo decodes JPEG */
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#include <stb_image.h>
/* stb_image 2.27 declares this but defines it under another name;
 * a static declaration without a definition is a warning, so define it. */
STBIDEF void stbi_set_unpremultiply_on_load_thread(int flag) { stbi__unpremultiply_on_load_thread(flag); }

static unsigned char *zlib_compress_for_stb(unsigned char *data, int data_len, int *out_len,
                                            int quality);
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBIW_ZLIB_COMPRESS zlib_compress_for_stb
#include <stb_image_write.h>
#pragma GCC diagnostic pop

/* Files larger than this are refused before reading (a PNG of the pixel limit, RGBA,
 * would still compress far below it). */
#define IMAGE_MAX_FILE_BYTES ((size_t)1 << 31)

/* ------------------------------------------------------------------------------------ */
/* Channel conversion                                                                    */

static inline uint8_t luma601(unsigned r, unsigned g, unsigned b) {
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 32768u) >> 16);
}

/* Converts n pixels of cin channels into cout channels (both 1..4). */
static void convert_pixels(uint8_t *dst, int cout, const uint8_t *src, int cin, size_t n) {
    for (size_t i = 0; i < n; i++, src += cin, dst += cout) {
        unsigned r, g, b, a;
        switch (cin) {
        case 1: r = g = b = src[0]; a = 255; break;
        case 2: r = g = b = src[0]; a = src[1]; break;
        case 3: r = src[0]; g = src[1]; b = src[2]; a = 255; break;
        default: r = src[0]; g = src[1]; b = src[2]; a = src[3]; break;
        }
        int gray_in = cin <= 2;
        if (cout == 2 || cout == 4) { /* alpha kept as it is */
            if (cout == 2) {
                dst[0] = gray_in ? (uint8_t)r : luma601(r, g, b);
                dst[1] = (uint8_t)a;
            } else {
                dst[0] = (uint8_t)r;
                dst[1] = (uint8_t)g;
                dst[2] = (uint8_t)b;
                dst[3] = (uint8_t)a;
            }
            continue;
        }
        if (a != 255) { /* alpha dropped: composite on black */
            r = t2i_mul_alpha(r, a);
            g = t2i_mul_alpha(g, a);
            b = t2i_mul_alpha(b, a);
        }
        if (cout == 1) {
            dst[0] = gray_in ? (uint8_t)r : luma601(r, g, b);
        } else {
            dst[0] = (uint8_t)r;
            dst[1] = (uint8_t)g;
            dst[2] = (uint8_t)b;
        }
    }
}

void t2i_image_convert(t2i_image *dst, const t2i_image *src, int want_c) {
    T2I_ASSERT(src && src->px && src->c >= 1 && src->c <= 4);
    T2I_ASSERT(want_c >= 0 && want_c <= 4);
    int c = want_c ? want_c : src->c;
    t2i_image out;
    t2i_image_alloc(&out, src->w, src->h, c);
    size_t n = (size_t)src->w * (size_t)src->h;
    if (c == src->c)
        memcpy(out.px, src->px, n * (size_t)c);
    else
        convert_pixels(out.px, c, src->px, src->c, n);
    *dst = out;
}

/* Takes ownership of px (w * h * c bytes, malloc'ed) and fills img with want_c channels. */
void image_finish(t2i_image *img, uint8_t *px, int w, int h, int c, int want_c) {
    t2i_image raw = {w, h, c, px};
    if (want_c == 0 || want_c == c) {
        *img = raw;
        return;
    }
    t2i_image_convert(img, &raw, want_c);
    free(px);
}

/* fmt: the sniffed format (GIF has a limit of its own), or NULL. */
int image_check_pixels(const char *name, const char *fmt, long long w, long long h) {
    if (w <= 0 || h <= 0) return t2i_error_set("%s: image has no pixels (%lldx%lld)", name, w, h);
    int gif = fmt && strcmp(fmt, "GIF") == 0;
    size_t limit = gif && T2I_GIF_MAX_PIXELS < T2I_IMAGE_MAX_PIXELS ? T2I_GIF_MAX_PIXELS : T2I_IMAGE_MAX_PIXELS;
    if ((unsigned long long)w * (unsigned long long)h > limit)
        return t2i_error_set("%s: image is %lldx%lld, more than the %slimit of %zu pixels", name, w, h,
                             gif ? "GIF " : "", limit);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* PNG through libpng                                                                    */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* Where libpng reads from (memory or a FILE) and where its error message goes. The
 * decoder's allocations live here too: the function calling setjmp never modifies its
 * own locals afterwards, so nothing is left indeterminate by longjmp. */
typedef struct {
    const uint8_t *mem;
    size_t len, pos;
    FILE *f;
    char msg[256];
    int too_big; /* the message is complete already (pixel limit), not libpng's */
    uint8_t *px;
    png_bytep *rows;
} png_src;

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (s->f) {
        if (fread(out, 1, n, s->f) != n) png_error(png, "file is truncated");
        return;
    }
    if (n > s->len - s->pos) png_error(png, "file is truncated");
    memcpy(out, s->mem + s->pos, n);
    s->pos += n;
}

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* warnings (bad ancillary chunks, gamma) do not stop decoding */
}

/* Reads the header and sets up the expansions: palette -> RGB, gray < 8 bits -> 8,
 * tRNS -> alpha, interlace passes merged. 16-bit samples stay 16-bit (reduced by us,
 * with our rounding). Returns channels and bit depth of the rows libpng will deliver. */
static void png_setup(png_structp png, png_infop info, png_src *s, const char *name,
                      int *w, int *h, int *c, int *depth) {
    png_read_info(png, info);
    png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
    if (image_check_pixels(name, "PNG", pw, ph) != 0) {
        s->too_big = 1;
        png_longjmp(png, 1);
    }
    png_set_expand(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    *w = (int)pw;
    *h = (int)ph;
    *c = png_get_channels(png, info);
    *depth = png_get_bit_depth(png, info);
}

/* Decodes into s->px (8-bit, *c channels). Returns 0, or 1 after a libpng error. */
static int png_decode(png_structp png, png_infop info, png_src *s, const char *name, int *w,
                      int *h, int *c) {
    if (setjmp(png_jmpbuf(png))) return 1;
    int depth;
    png_setup(png, info, s, name, w, h, c, &depth);
    size_t rowbytes = png_get_rowbytes(png, info);
    T2I_ASSERT(rowbytes == (size_t)*w * (size_t)*c * (size_t)(depth / 8));
    s->px = t2i_malloc(rowbytes * (size_t)*h);
    s->rows = t2i_malloc(sizeof(png_bytep) * (size_t)*h);
    for (int y = 0; y < *h; y++) s->rows[y] = s->px + (size_t)y * rowbytes;
    png_read_image(png, s->rows);
    png_read_end(png, NULL); /* checks the CRCs of the chunks after the pixels */
    if (depth == 16) {       /* big-endian 16-bit samples, reduced in place */
        size_t n = (size_t)*w * (size_t)*h * (size_t)*c;
        for (size_t i = 0; i < n; i++) {
            unsigned v = (unsigned)s->px[2 * i] << 8 | s->px[2 * i + 1];
            s->px[i] = (uint8_t)((v * 255u + 32767u) / 65535u);
        }
    }
    return 0;
}

static png_structp png_new_reader(png_src *s, png_infop *info) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, s, png_error_cb, png_warning_cb);
    if (!png) return NULL;
    *info = png_create_info_struct(png);
    if (!*info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return NULL;
    }
    png_set_read_fn(png, s, png_read_cb);
    return png;
}

static int png_fail(png_src *s, const char *name) {
    if (s->too_big) return -1; /* image_check_pixels set the message */
    return t2i_error_set("%s: corrupt PNG (%s)", name, s->msg[0] ? s->msg : "unknown libpng error");
}

static int load_png_mem(t2i_image *img, const uint8_t *data, size_t len, const char *name,
                        int want_c) {
    png_src s;
    memset(&s, 0, sizeof s);
    s.mem = data;
    s.len = len;
    png_infop info = NULL;
    png_structp png = png_new_reader(&s, &info);
    if (!png) return t2i_error_set("%s: cannot initialise libpng", name);
    int w = 0, h = 0, c = 0;
    int bad = png_decode(png, info, &s, name, &w, &h, &c);
    png_destroy_read_struct(&png, &info, NULL);
    free(s.rows);
    if (bad) {
        free(s.px);
        return png_fail(&s, name);
    }
    image_finish(img, s.px, w, h, c, want_c);
    return 0;
}

static int png_header(png_structp png, png_infop info, png_src *s, const char *name, int *w,
                      int *h, int *c) {
    if (setjmp(png_jmpbuf(png))) return 1;
    int depth;
    png_setup(png, info, s, name, w, h, c, &depth);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Loading                                                                               */

/* Names the format stb_image is given from its magic bytes, for messages (stb_image
 * itself tries every decoder in turn, so its failure reason for a damaged file is often
 * "unknown image type"). NULL when the bytes match nothing that has a signature (TGA has
 * none). */
static const char *sniff_format(const uint8_t *p, size_t n) {
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "BMP";
    if (n >= 4 && !memcmp(p, "GIF8", 4)) return "GIF";
    if (n >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '6')) return "PNM";
    return NULL;
}

static uint32_t le32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* stb_image reads past the end of an uncompressed BMP as zeros: check its length first.
 * Rows are padded to 4 bytes; the pixels start at the header's offset (bytes 10-13). */
static int check_bmp_length(const uint8_t *p, size_t n, const char *name) {
    if (n < 30 || le32(p + 14) < 40) return 0; /* an old OS/2 header: left to stb_image */
    uint32_t comp = n >= 34 ? le32(p + 30) : 0, off = le32(p + 10);
    int32_t w = (int32_t)le32(p + 18), h = (int32_t)le32(p + 22);
    int bpp = p[28] | p[29] << 8;
    if ((comp != 0 && comp != 3) || w <= 0 || bpp <= 0 || bpp > 32) return 0; /* RLE: stb_image checks */
    uint64_t rows = h < 0 ? (uint64_t)-(int64_t)h : (uint64_t)h;
    uint64_t need = off + (((uint64_t)w * (uint64_t)bpp + 31) / 32 * 4) * rows;
    if (need > n) return t2i_error_set("%s: truncated BMP (%zu bytes, its header needs %llu)", name, n,
                                       (unsigned long long)need);
    return 0;
}

/* stb_image 2.27 reads the numbers of a PNM header into an int without a bound, so a
 * long run of digits overflows it (undefined behaviour) before its own size checks; and
 * it ignores a short read of the pixels, returning uninitialised memory for a truncated
 * file. The header (P5/P6, whitespace and '#' comments, width, height, maxval, one more
 * byte) is scanned here as stb scans it: a number over 2^24 (stb's largest dimension;
 * maxval stops at 65535) is refused, and so is a file of total bytes too short for the
 * pixels the header announces. p holds the first n bytes of the file (all of it, or a
 * prefix): *done says whether the header ended inside them (else nothing was checked
 * beyond the numbers seen). */
#define PNM_MAX_NUMBER (1LL << 24)
static int check_pnm_header(const uint8_t *p, size_t n, size_t total, const char *name, int *done) {
    size_t i = 2;
    long long v[3] = {0, 0, 0};
    *done = 0;
    for (int k = 0; k < 3; k++) {
        for (;;) { /* whitespace, then a comment to the end of its line */
            while (i < n && p[i] && strchr(" \t\n\v\f\r", p[i])) i++;
            if (i >= n || p[i] != '#') break;
            while (i < n && p[i] != '\n' && p[i] != '\r') i++;
        }
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            if ((v[k] = v[k] * 10 + (p[i] - '0')) > PNM_MAX_NUMBER)
                return t2i_error_set("%s: corrupt PNM (a header number over %lld)", name, PNM_MAX_NUMBER);
    }
    if (i >= n) return 0;
    *done = 1;
    unsigned long long need = (unsigned long long)(i + 1) + (unsigned long long)v[0] * (unsigned long long)v[1] *
                                                                (p[1] == '6' ? 3u : 1u) * (v[2] > 255 ? 2u : 1u);
    if (need > total)
        return t2i_error_set("%s: truncated PNM (%zu bytes, its header needs %llu)", name, total, need);
    return 0;
}

/* stb_image reads past the end of a TGA as zeros too, so a 20-byte file could announce
 * 40 Mpixels of run-length data and decode to a black image (the fuzzer's slowest
 * inputs). TGA has no signature: this applies to what stb accepted and no other format
 * claimed. The pixels start after the 18-byte header, the image id and the colour map; a
 * raw image needs w * h pixels, a run-length one at least a packet byte and a pixel per
 * 128 pixels. */
static int check_tga_length(const uint8_t *p, size_t n, const char *name) {
    if (n < 18) /* stb reads the missing header bytes as zeros too */
        return t2i_error_set("%s: truncated TGA (%zu bytes, its header needs 18)", name, n);
    int type = p[2], rle = type >= 9;
    uint64_t cmap = p[1] ? (uint64_t)(p[5] | p[6] << 8) * ((p[7] + 7u) / 8u) : 0;
    uint64_t px = (uint64_t)(p[12] | p[13] << 8) * (uint64_t)(p[14] | p[15] << 8), bytes = (p[16] + 7u) / 8u;
    uint64_t need = 18 + p[0] + cmap + (rle ? (px + 127) / 128 * (1 + bytes) : px * bytes);
    if (need > n) return t2i_error_set("%s: truncated TGA (%zu bytes, its header needs %llu)", name, n,
                                       (unsigned long long)need);
    return 0;
}

static int stb_fail(const char *name, const char *fmt) {
    if (!fmt)
        return t2i_error_set("%s: not a supported image (%s; t2i reads PNG, JPEG, WebP, BMP, GIF, PNM and TGA)", name,
                             stbi_failure_reason());
    return t2i_error_set("%s: corrupt %s (%s)", name, fmt, stbi_failure_reason());
}

int t2i_image_load_mem(t2i_image *img, const void *data, size_t len, const char *name,
                       int want_c) {
    T2I_ASSERT(img && name && (data || len == 0));
    T2I_ASSERT(want_c >= 0 && want_c <= 4);
    memset(img, 0, sizeof *img);
    if (len == 0) return t2i_error_set("%s: empty file", name);
    if (len >= 8 && memcmp(data, png_magic, 8) == 0) return load_png_mem(img, data, len, name, want_c);
    if (image_is_webp(data, len)) return image_load_webp_mem(img, data, len, name, want_c);
    if (image_is_jpeg(data, len)) {
        uint8_t *px;
        int w, h, c;
        if (image_jpeg_decode(data, len, NULL, name, 1, &px, &w, &h, &c) != 0) return -1;
        image_finish(img, px, w, h, c, want_c);
        return 0;
    }
    if (len > INT_MAX) return t2i_error_set("%s: file too large for the image decoder", name);
    const char *fmt = sniff_format(data, len);
    int w, h, c, done;
    if (fmt && strcmp(fmt, "PNM") == 0 && check_pnm_header(data, len, len, name, &done) != 0) return -1;
    if (!stbi_info_from_memory(data, (int)len, &w, &h, &c)) return stb_fail(name, fmt);
    if (image_check_pixels(name, fmt, w, h) != 0) return -1;
    if (fmt && strcmp(fmt, "BMP") == 0 && check_bmp_length(data, len, name) != 0) return -1;
    if (!fmt && check_tga_length(data, len, name) != 0) return -1;
    uint8_t *px = stbi_load_from_memory(data, (int)len, &w, &h, &c, 0);
    if (!px) return stb_fail(name, fmt ? fmt : "image");
    if (c < 1 || c > 4) {
        stbi_image_free(px);
        return t2i_error_set("%s: unsupported channel count %d", name, c);
    }
    image_finish(img, px, w, h, c, want_c); /* stb allocates with malloc: free() is right */
    return 0;
}

int t2i_image_load(t2i_image *img, const char *path, int want_c) {
    T2I_ASSERT(img && path);
    memset(img, 0, sizeof *img);
    size_t len = 0;
    char *data = t2i_read_file(path, &len, IMAGE_MAX_FILE_BYTES);
    if (!data) return -1;
    int rc = t2i_image_load_mem(img, data, len, path, want_c);
    free(data);
    return rc;
}

int t2i_image_info(const char *path, int *w, int *h, int *c) {
    T2I_ASSERT(path && w && h && c);
    FILE *f = fopen(path, "rb");
    if (!f) return t2i_error_set("%s: cannot open: %s", path, strerror(errno));
    uint8_t head[4096]; /* PNG's signature; a PNM header is checked before stb reads it */
    size_t got = fread(head, 1, sizeof head, f);
    if (got == 0) {
        fclose(f);
        return t2i_error_set("%s: empty file", path);
    }
    int rc = 0;
    const char *fmt = sniff_format(head, got);
    struct stat st;
    if (fmt && strcmp(fmt, "PNM") == 0 && fstat(fileno(f), &st) == 0) {
        int done;
        if (check_pnm_header(head, got, (size_t)st.st_size, path, &done) != 0)
            rc = -1;
        else if (!done && got == sizeof head)
            rc = t2i_error_set("%s: PNM header longer than %zu bytes", path, sizeof head);
        if (rc != 0) {
            fclose(f);
            return rc;
        }
    }
    if (got >= 8 && memcmp(head, png_magic, 8) == 0) {
        png_src s;
        memset(&s, 0, sizeof s);
        s.f = f;
        png_infop info = NULL;
        png_structp png = png_new_reader(&s, &info);
        if (!png) {
            fclose(f);
            return t2i_error_set("%s: cannot initialise libpng", path);
        }
        png_set_sig_bytes(png, 8);
        fseek(f, 8, SEEK_SET);
        int bad = png_header(png, info, &s, path, w, h, c);
        png_destroy_read_struct(&png, &info, NULL);
        if (bad) rc = png_fail(&s, path);
    } else if (image_is_webp(head, got)) { /* the header is within the first bytes (VP8X / VP8 / VP8L chunk) */
        rc = image_webp_header(head, got, path, w, h, c);
    } else if (image_is_jpeg(head, got)) { /* the header only: the pixels are not read */
        rewind(f);
        rc = image_jpeg_decode(NULL, 0, f, path, 0, NULL, w, h, c);
    } else {
        rewind(f);
        if (!stbi_info_from_file(f, w, h, c))
            rc = stb_fail(path, fmt);
        else
            rc = image_check_pixels(path, fmt, *w, *h);
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Saving                                                                                */

/* stb_image_write's own deflate is simple and weak; zlib is linked anyway. stb frees the
 * result with free(), so it is allocated with malloc. */
static unsigned char *zlib_compress_for_stb(unsigned char *data, int data_len, int *out_len,
                                            int quality) {
    uLongf n = compressBound((uLong)data_len);
    unsigned char *out = malloc(n);
    if (!out) return NULL;
    int level = quality < 0 ? Z_DEFAULT_COMPRESSION : (quality > 9 ? 9 : quality);
    if (compress2(out, &n, data, (uLong)data_len, level) != Z_OK || n > INT_MAX) {
        free(out);
        return NULL;
    }
    *out_len = (int)n;
    return out;
}

typedef struct {
    uint8_t *buf;
    size_t len;
} mem_sink;

static void sink_write(void *ctx, void *data, int size) {
    mem_sink *m = ctx;
    m->buf = t2i_realloc(m->buf, m->len + (size_t)size);
    memcpy(m->buf + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

int t2i_image_encode_png(uint8_t **out, size_t *len, const uint8_t *px, int w, int h, int c, const char *name) {
    T2I_ASSERT(out && len && px && w > 0 && h > 0 && c >= 1 && c <= 4);
    *out = NULL, *len = 0;
    if ((size_t)w * (size_t)c > INT_MAX / 2 || (size_t)w * (size_t)h > T2I_IMAGE_MAX_PIXELS)
        return t2i_error_set("%s: image %dx%d too large to encode", name, w, h);
    mem_sink m = {NULL, 0};
    if (!stbi_write_png_to_func(sink_write, &m, w, h, c, px, w * c) || m.len == 0) {
        free(m.buf);
        return t2i_error_set("%s: PNG encoding failed", name);
    }
    *out = m.buf, *len = m.len;
    return 0;
}

int t2i_image_save_png(const char *path, const uint8_t *px, int w, int h, int c) {
    T2I_ASSERT(path && px && w > 0 && h > 0 && c >= 1 && c <= 4);
    uint8_t *buf;
    size_t len;
    if (t2i_image_encode_png(&buf, &len, px, w, h, c, path) != 0) return -1;
    int rc = t2i_write_file_atomic(path, buf, len);
    if (rc == 0) { /* stb never reports write errors; check that the file is whole */
        struct stat st;
        if (stat(path, &st) != 0)
            rc = t2i_error_set("%s: missing after writing: %s", path, strerror(errno));
        else if ((size_t)st.st_size != len)
            rc = t2i_error_set("%s: written %lld bytes, expected %zu", path, (long long)st.st_size, len);
    }
    free(buf);
    return rc;
}

/* ---- streaming PNG writer ---- */

struct t2i_png_writer {
    char *path, *target, *tmp; /* target: path, or the file a symbolic link at path names */
    FILE *f;
    png_structp png;
    png_infop info;
    int w, h, c, rows;
    int err; /* errno when libpng gave up (its "Write Error" does not say why: a full disk?) */
    char msg[200];
};

static void png_write_error_cb(png_structp png, png_const_charp msg) {
    t2i_png_writer *pw = png_get_error_ptr(png);
    pw->err = errno;
    snprintf(pw->msg, sizeof pw->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_write_warning_cb(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_writer_discard(t2i_png_writer *pw) {
    if (pw->png) png_destroy_write_struct(&pw->png, &pw->info);
    if (pw->f) fclose(pw->f);
    if (pw->tmp) t2i_tmp_discard(pw->tmp);
    free(pw->path), free(pw->target), free(pw->tmp), free(pw);
}

/* setjmp lives in these small functions, which touch no locals after a longjmp. */
static int png_writer_header(t2i_png_writer *pw) {
    if (setjmp(png_jmpbuf(pw->png))) return -1;
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    png_init_io(pw->png, pw->f);
    png_set_IHDR(pw->png, pw->info, (png_uint_32)pw->w, (png_uint_32)pw->h, 8, types[pw->c], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(pw->png, pw->info);
    return 0;
}

static int png_writer_put(t2i_png_writer *pw, const uint8_t *rows, int n) {
    if (setjmp(png_jmpbuf(pw->png))) return -1;
    for (int i = 0; i < n; i++) png_write_row(pw->png, (png_const_bytep)(rows + (size_t)i * pw->w * pw->c));
    return 0;
}

static int png_writer_end(t2i_png_writer *pw) {
    if (setjmp(png_jmpbuf(pw->png))) return -1;
    png_write_end(pw->png, NULL);
    return 0;
}

t2i_png_writer *t2i_png_writer_open(const char *path, int w, int h, int c) {
    T2I_ASSERT(path && w > 0 && h > 0 && c >= 1 && c <= 4);
    if ((size_t)w * (size_t)h > T2I_IMAGE_MAX_PIXELS) {
        t2i_error_set("%s: image %dx%d too large to encode", path, w, h);
        return NULL;
    }
    t2i_png_writer *pw = t2i_calloc(1, sizeof *pw);
    pw->tmp = t2i_atomic_tmp(path, &pw->target);
    if (!pw->tmp) {
        png_writer_discard(pw);
        return NULL;
    }
    pw->path = t2i_strdup(path);
    pw->w = w, pw->h = h, pw->c = c;
    t2i_tmp_create_begin(pw->tmp);
    pw->f = fopen(pw->tmp, "wb");
    t2i_tmp_create_end();
    if (!pw->f) {
        t2i_error_set("%s: cannot create temporary file %s: %s", path, pw->tmp, strerror(errno));
        t2i_tmp_untrack(pw->tmp);
        free(pw->tmp), pw->tmp = NULL; /* nothing to remove */
        png_writer_discard(pw);
        return NULL;
    }
    pw->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, pw, png_write_error_cb, png_write_warning_cb);
    if (pw->png) pw->info = png_create_info_struct(pw->png);
    if (!pw->png || !pw->info || png_writer_header(pw) != 0) {
        t2i_error_set("%s: PNG encoding failed%s%s", path, pw->msg[0] ? ": " : "", pw->msg);
        png_writer_discard(pw);
        return NULL;
    }
    return pw;
}

int t2i_png_writer_rows(t2i_png_writer *pw, const uint8_t *rows, int n) {
    T2I_ASSERT(pw && rows && n >= 0);
    if (pw->rows + n > pw->h) return t2i_error_set("%s: %d rows written to a %d-row image", pw->path, pw->rows + n, pw->h);
    if (png_writer_put(pw, rows, n) != 0 || ferror(pw->f)) {
        const char *why = ferror(pw->f) ? strerror(pw->err ? pw->err : errno) : pw->msg;
        return t2i_error_set("%s: write failed%s%s", pw->path, why[0] ? ": " : "", why);
    }
    pw->rows += n;
    return 0;
}

int t2i_png_writer_close(t2i_png_writer *pw, int commit) {
    if (!pw) return -1;
    int rc = 0;
    if (commit) {
        if (pw->rows != pw->h) rc = t2i_error_set("%s: %d of %d rows written", pw->path, pw->rows, pw->h);
        else if (png_writer_end(pw) != 0)
            rc = t2i_error_set("%s: PNG encoding failed%s%s", pw->path, pw->msg[0] ? ": " : "", pw->msg);
        else if (fflush(pw->f) != 0 || fsync(fileno(pw->f)) != 0)
            rc = t2i_error_set("%s: write failed: %s", pw->tmp, strerror(errno));
        else {
            int bad = fclose(pw->f) != 0;
            pw->f = NULL;
            if (bad) rc = t2i_error_set("%s: write failed: %s", pw->tmp, strerror(errno));
            else {
                rc = t2i_commit_file(pw->tmp, pw->target);
                free(pw->tmp), pw->tmp = NULL; /* renamed, or already removed */
            }
        }
    }
    png_writer_discard(pw);
    return commit ? rc : 0;
}

void t2i_image_free(t2i_image *img) {
    if (!img) return;
    free(img->px);
    memset(img, 0, sizeof *img);
}

void t2i_image_alloc(t2i_image *img, int w, int h, int c) {
    T2I_ASSERT(img && w > 0 && h > 0 && c >= 1 && c <= 4);
    img->w = w;
    img->h = h;
    img->c = c;
    img->px = t2i_calloc((size_t)w * (size_t)h, (size_t)c);
}
