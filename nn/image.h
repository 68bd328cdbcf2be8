/* image.h - image files, conversions, resizing, grids (image.c: files and channel
 * conversions; image_resize.c: resizing and crops; image_grid.c: tensors and grids).
 *
 * Reading: PNG through libpng (gray, gray+alpha, RGB, RGBA, palette, 1/2/4/8/16-bit,
 * interlaced), JPEG through libjpeg-turbo (baseline, progressive, gray, CMYK; pixels as
 * PIL's), BMP, GIF, TGA and PNM through stb_image. Writing: PNG
 * through stb_image_write, atomically (temporary file, rename), with the written size
 * checked. A file that is missing, corrupt, truncated, or has more pixels than
 * T2I_IMAGE_MAX_PIXELS gives -1 and an error naming the file and the problem.
 *
 * In memory an image file is 8-bit interleaved (H, W, C) (t2i_image); tensors are float
 * NCHW in [-1, 1] (see base.h). Resizing follows PIL (Pillow 9): separable filters whose
 * support is widened by the scale factor when downsampling (antialias), evaluated around
 * pixel centres, with PIL's bicubic a = -0.5 and its rounding, so results match
 * PIL.Image.resize(..., BICUBIC / BILINEAR) to within 1/255.
 */
#ifndef T2I_IMAGE_H
#define T2I_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifndef T2I_IMAGE_MAX_PIXELS /* the fuzz build sets a smaller one (CMakeLists.txt) */
#define T2I_IMAGE_MAX_PIXELS ((size_t)1 << 28) /* 268 Mpixel: refuses decompression bombs */
#endif
/* GIF's own, lower: stb_image keeps an RGBA frame, its history and the background for the
 * whole logical screen (9 bytes a pixel), so a 37-byte GIF within 2^28 asks for 2 GB. */
#define T2I_GIF_MAX_PIXELS ((size_t)1 << 24) /* 16.8 Mpixel, 151 MB to decode */

typedef struct {
    int w, h, c;   /* c is 1, 2, 3 or 4 */
    uint8_t *px;   /* h * w * c bytes, interleaved rows */
} t2i_image;

/* Loads any supported file. want_c: 0 keeps the file's channels, 1 gray, 3 RGB, 4 RGBA
 * (gray is replicated, alpha dropped - composited on black - or added as opaque). */
int t2i_image_load(t2i_image *img, const char *path, int want_c);
/* Same from memory; name is used in error messages. */
int t2i_image_load_mem(t2i_image *img, const void *data, size_t len, const char *name, int want_c);
/* Reads only width, height and channels (fast; for checking folders). */
int t2i_image_info(const char *path, int *w, int *h, int *c);
/* The exact bytes t2i_image_save_png writes, in memory (*out: heap, free()); name is used
 * in error messages. 0, or -1 with the error set (too large, encoder failure). */
int t2i_image_encode_png(uint8_t **out, size_t *len, const uint8_t *px, int w, int h, int c, const char *name);
/* Encodes (t2i_image_encode_png) and writes atomically. */
int t2i_image_save_png(const char *path, const uint8_t *px, int w, int h, int c);
/* A PNG written row by row (libpng), for images too large to hold: memory is one row
 * band plus zlib's state. The file appears (atomically, as path) only when
 * t2i_png_writer_close is called with commit = 1 after all h rows; otherwise nothing is
 * left behind. open returns NULL with the error set; rows/close return 0 or -1. */
typedef struct t2i_png_writer t2i_png_writer;
t2i_png_writer *t2i_png_writer_open(const char *path, int w, int h, int c);
/* n rows of w * c bytes each, top to bottom. */
int t2i_png_writer_rows(t2i_png_writer *pw, const uint8_t *rows, int n);
int t2i_png_writer_close(t2i_png_writer *pw, int commit);
/* Channel conversion with the loaders' rules (want_c 0 copies; 1..4 converts): gray
 * replicated; alpha added as opaque, or dropped by compositing on black
 * (v * a / 255 rounded); RGB -> gray is PIL's convert("L") luma. dst is allocated. */
void t2i_image_convert(t2i_image *dst, const t2i_image *src, int want_c);
void t2i_image_free(t2i_image *img);
/* An empty image of the given size (zeroed). */
void t2i_image_alloc(t2i_image *img, int w, int h, int c);
/* Premultiplication, shared by compositing on black and resizing with alpha:
 * round(v * a / 255); v * a / 255 is never exactly k + 0.5, so this is plain rounding. */
static inline uint8_t t2i_mul_alpha(unsigned v, unsigned a) { return (uint8_t)((v * a + 127u) / 255u); }

/* u8 HWC <-> float CHW in [-1, 1] (x = u/127.5 - 1; back with rounding and clamping). */
void t2i_image_to_chw(float *dst, const t2i_image *img);
void t2i_chw_to_u8(uint8_t *dst, const float *src, int C, int H, int W);

typedef enum { T2I_RESIZE_NEAREST, T2I_RESIZE_BILINEAR, T2I_RESIZE_BICUBIC } t2i_resize_filter;
/* PIL-compatible resize of an 8-bit image (antialiased when downscaling). */
void t2i_image_resize(t2i_image *dst, const t2i_image *src, int w, int h, t2i_resize_filter f);
/* The same filters on float planes: src (C, H, W) -> dst (C, h, w), no rounding or
 * clamping (used for bicubic downsampling of training crops). */
void t2i_resize_chw(float *dst, const float *src, int C, int H, int W, int h, int w,
                    t2i_resize_filter f);
/* Centre crop to w x h (PIL/torchvision rounding: left = round((W - w) / 2)). */
void t2i_image_center_crop(t2i_image *dst, const t2i_image *src, int w, int h);
/* Resize so that the shorter side is `size` (torchvision Resize(int) rounding), then
 * centre crop to size x size. */
void t2i_image_resize_crop(t2i_image *dst, const t2i_image *src, int size, t2i_resize_filter f);

/* A grid of n images (C, H, W) floats in [-1, 1], nrow per row, pad pixels of pad_value
 * (u8) between and around them, as torchvision.utils.make_grid. Returns 8-bit image. */
void t2i_make_grid(t2i_image *grid, const float *imgs, int n, int C, int H, int W, int nrow, int pad,
                   uint8_t pad_value);
/* Convenience: make_grid + save_png. */
int t2i_save_grid(const char *path, const float *imgs, int n, int C, int H, int W, int nrow);

#endif
