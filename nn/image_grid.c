/* image_grid.c - 8-bit images to and from float CHW tensors, and grids of tensors like
 * torchvision.utils.make_grid (except that 1-channel images stay 1-channel; torchvision
 * makes them RGB) (image.h).
 */
#include "image.h"

#include "base.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Tensors                                                                               */

void t2i_image_to_chw(float *dst, const t2i_image *img) {
    T2I_ASSERT(dst && img && img->px);
    size_t plane = (size_t)img->w * (size_t)img->h;
    for (int ch = 0; ch < img->c; ch++) {
        float *d = dst + (size_t)ch * plane;
        const uint8_t *s = img->px + ch;
        for (size_t i = 0; i < plane; i++) d[i] = (float)s[i * (size_t)img->c] / 127.5f - 1.0f;
    }
}

static inline uint8_t float_to_u8(float x) {
    float v = (x + 1.0f) * 127.5f;
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f); /* round half up */
}

void t2i_chw_to_u8(uint8_t *dst, const float *src, int C, int H, int W) {
    T2I_ASSERT(dst && src && C > 0 && H > 0 && W > 0);
    size_t plane = (size_t)H * (size_t)W;
    for (int ch = 0; ch < C; ch++) {
        const float *s = src + (size_t)ch * plane;
        for (size_t i = 0; i < plane; i++) dst[i * (size_t)C + (size_t)ch] = float_to_u8(s[i]);
    }
}

void t2i_make_grid(t2i_image *grid, const float *imgs, int n, int C, int H, int W, int nrow,
                   int pad, uint8_t pad_value) {
    T2I_ASSERT(grid && imgs && n > 0 && C >= 1 && C <= 4 && H > 0 && W > 0 && nrow > 0 && pad >= 0);
    int cols = T2I_MIN(nrow, n);
    int rows = (n + cols - 1) / cols;
    int cw = W + pad, ch = H + pad; /* cell pitch */
    int gw = cols * cw + pad, gh = rows * ch + pad;
    t2i_image_alloc(grid, gw, gh, C);
    memset(grid->px, pad_value, (size_t)gw * (size_t)gh * (size_t)C);
    uint8_t *tile = t2i_malloc((size_t)H * (size_t)W * (size_t)C);
    size_t per = (size_t)C * (size_t)H * (size_t)W;
    for (int k = 0; k < n; k++) {
        t2i_chw_to_u8(tile, imgs + (size_t)k * per, C, H, W);
        int gx = (k % cols) * cw + pad, gy = (k / cols) * ch + pad;
        for (int y = 0; y < H; y++)
            memcpy(grid->px + ((size_t)(gy + y) * gw + gx) * C, tile + (size_t)y * W * C, (size_t)W * C);
    }
    free(tile);
}

int t2i_save_grid(const char *path, const float *imgs, int n, int C, int H, int W, int nrow) {
    t2i_image g;
    t2i_make_grid(&g, imgs, n, C, H, W, nrow, 2, 0);
    int rc = t2i_image_save_png(path, g.px, g.w, g.h, g.c);
    t2i_image_free(&g);
    return rc;
}
