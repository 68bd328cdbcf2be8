/* image_decode.c - JPEG through libjpeg-turbo and WebP through libwebp, for image.c
 * (image_codec.h; what each accepts and refuses is stated at the top of image.c). */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE */
#include <jerror.h>
#include <webp/decode.h>

#include "base.h"
#include "image_codec.h"

/* ------------------------------------------------------------------------------------ */
/* JPEG through libjpeg-turbo                                                            */

/* A progressive file may hold any number of scans, and each scan may revisit every block
 * of the image for a few bytes of input (one end-of-band run covers 32767 blocks), so a
 * small file could cost minutes. Encoders write about 10 (libjpeg's default script) and
 * rarely more than a few dozen; more than this many is refused. */
#define JPEG_MAX_SCANS 256

/* One decoder and what it allocated: the function calling setjmp modifies none of its own
 * locals afterwards, and everything to free after a longjmp is reachable from here. */
typedef struct {
    struct jpeg_error_mgr err; /* first: the callbacks find the rest from cinfo->err */
    struct jpeg_progress_mgr progress;
    struct jpeg_decompress_struct d;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX + 64];
    const char *name; /* for messages */
    int error_set;    /* t2i_error_set was called already (pixel limit, unsupported); msg unused */
    int w, h, c;   /* what the caller receives: c = 1 (gray) or 3 (RGB; CMYK converted) */
    int cmyk;      /* libjpeg delivers 4-channel Adobe CMYK rows into row */
    uint8_t *px;   /* (h, w, c) */
    uint8_t *row;
} jpeg_ctx;

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    jpeg_ctx *j = (jpeg_ctx *)(void *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, j->msg);
    longjmp(j->jmp, 1);
}

/* Warnings stop decoding: libjpeg goes on after damaged or missing data (filling what is
 * missing with grey, or a bad Huffman code with zeros), which would be a silently wrong
 * image. Only warnings that leave every pixel as the file encodes it are ignored: bytes
 * skipped between segments after a scan was complete, an unknown Adobe transform code or
 * JFIF version, a damaged ICC profile (not used). Trace messages (level >= 0) are dropped;
 * nothing is printed. */
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_ADOBE_XFORM:
    case JWRN_JFIF_MAJOR:
    case JWRN_BOGUS_ICC: return;
    default: (*cinfo->err->error_exit)(cinfo);
    }
}

static void jpeg_progress_cb(j_common_ptr cinfo) {
    jpeg_ctx *j = (jpeg_ctx *)(void *)cinfo->err;
    if (j->d.progressive_mode && j->d.input_scan_number > JPEG_MAX_SCANS) {
        snprintf(j->msg, sizeof j->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(j->jmp, 1);
    }
}

/* Refuses a file libjpeg could read, with a complete message. */
static _Noreturn void jpeg_unsupported(jpeg_ctx *j, const char *what) {
    t2i_error_set("%s: unsupported JPEG (%s)", j->name, what);
    j->error_set = 1;
    longjmp(j->jmp, 1);
}

/* Reads the header and chooses the output: gray stays gray, YCbCr and RGB give RGB,
 * CMYK and YCCK give CMYK rows that jpeg_cmyk_to_rgb converts. Arithmetic coding is
 * refused: libjpeg's arithmetic decoder reads zeros past the end of the data without a
 * warning, so a truncated file would decode to a silently wrong image (and a few bytes
 * could announce a whole image of them); browsers do not read such files either. */
static void jpeg_header(jpeg_ctx *j) {
    jpeg_read_header(&j->d, TRUE);
    if (j->d.arith_code) jpeg_unsupported(j, "arithmetic coding");
    switch (j->d.jpeg_color_space) {
    case JCS_GRAYSCALE: j->d.out_color_space = JCS_GRAYSCALE, j->c = 1; break;
    case JCS_YCbCr:
    case JCS_RGB: j->d.out_color_space = JCS_RGB, j->c = 3; break;
    case JCS_CMYK:
    case JCS_YCCK: j->d.out_color_space = JCS_CMYK, j->c = 3, j->cmyk = 1; break;
    default: jpeg_unsupported(j, j->d.num_components == 2 ? "colour space of 2 components" : "unknown colour space");
    }
    j->w = (int)j->d.image_width, j->h = (int)j->d.image_height;
}

/* CMYK as Adobe (Photoshop) writes it, inverted (255 = no ink), which PIL assumes for every
 * CMYK JPEG; then PIL's convert("RGB"): v = (255 - K) - round(C * (255 - K) / 255), with
 * its rounding of the product, (t + (t >> 8)) >> 8 for t = a * b + 128. */
static void jpeg_cmyk_to_rgb(uint8_t *dst, const uint8_t *src, int w) {
    for (int x = 0; x < w; x++, src += 4, dst += 3) {
        unsigned nk = src[3]; /* 255 - K, stored inverted */
        for (int k = 0; k < 3; k++) {
            unsigned t = (255u - src[k]) * nk + 128u;
            dst[k] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
        }
    }
}

static void jpeg_pixels(jpeg_ctx *j) {
    jpeg_start_decompress(&j->d);
    size_t stride = (size_t)j->w * (size_t)j->c;
    T2I_ASSERT((int)j->d.output_width == j->w && (int)j->d.output_height == j->h &&
               j->d.output_components == (j->cmyk ? 4 : j->c));
    j->px = t2i_malloc(stride * (size_t)j->h);
    if (j->cmyk) j->row = t2i_malloc((size_t)j->w * 4);
    while (j->d.output_scanline < j->d.output_height) {
        uint8_t *dst = j->px + (size_t)j->d.output_scanline * stride;
        JSAMPROW r = j->cmyk ? j->row : dst;
        if (jpeg_read_scanlines(&j->d, &r, 1) != 1) { /* only a suspending source returns 0 */
            snprintf(j->msg, sizeof j->msg, "decoder returned no row");
            longjmp(j->jmp, 1);
        }
        if (j->cmyk) jpeg_cmyk_to_rgb(dst, j->row, j->w);
    }
    jpeg_finish_decompress(&j->d); /* reads up to EOI: a file cut after its pixels is refused too */
}

/* setjmp lives here; the source is memory (data, len) or the file f. */
static int jpeg_run(jpeg_ctx *j, const uint8_t *data, size_t len, FILE *f, const char *name, int pixels) {
    if (setjmp(j->jmp)) return -1;
    jpeg_create_decompress(&j->d);
    j->d.progress = &j->progress;
    if (f)
        jpeg_stdio_src(&j->d, f);
    else
        jpeg_mem_src(&j->d, data, (unsigned long)len);
    jpeg_header(j);
    if (image_check_pixels(name, "JPEG", j->w, j->h) != 0) {
        j->error_set = 1;
        return -1;
    }
    if (pixels) jpeg_pixels(j);
    return 0;
}

/* Decodes (pixels = 1) or reads the header of a JPEG; on success the caller owns j->px. */
static int jpeg_decode(jpeg_ctx *j, const uint8_t *data, size_t len, FILE *f, const char *name, int pixels) {
    memset(j, 0, sizeof *j);
    j->name = name;
    j->d.err = jpeg_std_error(&j->err);
    j->err.error_exit = jpeg_error_exit_cb;
    j->err.emit_message = jpeg_emit_message_cb;
    j->progress.progress_monitor = jpeg_progress_cb;
    int bad = jpeg_run(j, data, len, f, name, pixels);
    jpeg_destroy_decompress(&j->d);
    free(j->row);
    j->row = NULL;
    if (!bad) return 0;
    free(j->px);
    j->px = NULL;
    if (j->error_set) return -1;
    return t2i_error_set("%s: corrupt JPEG (%s)", name, j->msg[0] ? j->msg : "unknown libjpeg error");
}

int image_is_jpeg(const uint8_t *p, size_t n) { return n >= 2 && p[0] == 0xFF && p[1] == 0xD8; }

/* ------------------------------------------------------------------------------------ */
/* WebP through libwebp                                                                  */

int image_is_webp(const uint8_t *p, size_t n) { return n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4); }

static const char *webp_status(VP8StatusCode st) {
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "file is truncated";
    default: return "unknown libwebp error";
    }
}

/* Width, height and channels (3, or 4 with alpha) from the header, the pixel limit
 * checked; animations are refused (only their first frame would be decodable). */
int image_webp_header(const uint8_t *data, size_t len, const char *name, int *w, int *h, int *c) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, len, &f);
    if (st != VP8_STATUS_OK) return t2i_error_set("%s: corrupt WebP (%s)", name, webp_status(st));
    if (f.has_animation) return t2i_error_set("%s: animated WebP is not supported", name);
    if (image_check_pixels(name, "WebP", f.width, f.height) != 0) return -1;
    *w = f.width, *h = f.height, *c = f.has_alpha ? 4 : 3;
    return 0;
}

int image_load_webp_mem(t2i_image *img, const uint8_t *data, size_t len, const char *name, int want_c) {
    int w = 0, h = 0, c = 0;
    if (image_webp_header(data, len, name, &w, &h, &c) != 0) return -1;
    size_t stride = (size_t)w * (size_t)c, size = stride * (size_t)h;
    uint8_t *px = t2i_malloc(size);
    uint8_t *ok = c == 4 ? WebPDecodeRGBAInto(data, len, px, size, (int)stride)
                         : WebPDecodeRGBInto(data, len, px, size, (int)stride);
    if (!ok) {
        free(px);
        /* the decoder says only "failed": a short file is the usual reason */
        WebPDecoderConfig cfg;
        VP8StatusCode st = VP8_STATUS_BITSTREAM_ERROR;
        if (WebPInitDecoderConfig(&cfg)) {
            cfg.options.use_threads = 0;
            st = WebPDecode(data, len, &cfg);
            WebPFreeDecBuffer(&cfg.output);
        }
        return t2i_error_set("%s: corrupt WebP (%s)", name, webp_status(st == VP8_STATUS_OK ? VP8_STATUS_BITSTREAM_ERROR : st));
    }
    image_finish(img, px, w, h, c, want_c);
    return 0;
}

int image_jpeg_decode(const uint8_t *data, size_t len, FILE *f, const char *name, int pixels, uint8_t **px, int *w,
                      int *h, int *c) {
    jpeg_ctx j;
    if (jpeg_decode(&j, data, len, f, name, pixels) != 0) return -1;
    if (px) *px = j.px;
    *w = j.w, *h = j.h, *c = j.c;
    return 0;
}
