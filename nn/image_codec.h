/* image_codec.h - private to nn/: what image.c and image_decode.c (JPEG through
 * libjpeg-turbo, WebP through libwebp) share. */
#ifndef T2I_IMAGE_CODEC_H
#define T2I_IMAGE_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "image.h"

/* image.c: the pixel limit (one-line error naming the file), and filling img from px
 * (w * h * c bytes, malloc'ed; img takes ownership) with want_c channels. */
int image_check_pixels(const char *name, const char *fmt, long long w, long long h);
void image_finish(t2i_image *img, uint8_t *px, int w, int h, int c, int want_c);

/* image_decode.c. A JPEG from memory (data, len) or from f: its size and channels (1 gray,
 * 3 RGB) and, when pixels, *px (the caller frees). -1 with the error set. */
int image_is_jpeg(const uint8_t *p, size_t n);
int image_jpeg_decode(const uint8_t *data, size_t len, FILE *f, const char *name, int pixels, uint8_t **px, int *w,
                      int *h, int *c);
/* WebP: its header (size, 3 or 4 channels, the pixel limit checked), or the whole image. */
int image_is_webp(const uint8_t *p, size_t n);
int image_webp_header(const uint8_t *data, size_t len, const char *name, int *w, int *h, int *c);
int image_load_webp_mem(t2i_image *img, const uint8_t *data, size_t len, const char *name, int want_c);

#endif
