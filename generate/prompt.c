/* prompt.c - image prompts of `t2i generate` (see prompt.h): loading and cropping the
 * image, the kept rows and columns, the mask's covered cells.
 */
#include "prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image.h"

/* Takes img (freed here either way). */
static int prepare_image(t2i_image *img, const char *name, int R, float *out, int *w, int *h);
static int covered_cells(t2i_image *m, const char *name, int w, int h, int g, uint8_t *keep);

int gen_prompt_image(const char *path, int C, int R, float *out, int *w, int *h) {
    T2I_ASSERT(C == 1 || C == 3);
    t2i_image img;
    if (t2i_image_load(&img, path, C) != 0) return -1;
    return prepare_image(&img, path, R, out, w, h);
}

int gen_prompt_image_mem(const void *data, size_t len, const char *name, int C, int R, float *out, int *w, int *h) {
    T2I_ASSERT(C == 1 || C == 3);
    t2i_image img;
    if (t2i_image_load_mem(&img, data, len, name, C) != 0) return -1;
    return prepare_image(&img, name, R, out, w, h);
}

static int prepare_image(t2i_image *pimg, const char *path, int R, float *out, int *w, int *h) {
    t2i_image img = *pimg;
    *w = img.w, *h = img.h;
    if (img.w < R || img.h < R) {
        t2i_error_set("%s is %dx%d; the VQ needs at least %dx%d", path, img.w, img.h, R, R);
        t2i_image_free(&img);
        return -1;
    }
    t2i_image sq;
    t2i_image_resize_crop(&sq, &img, R, T2I_RESIZE_BICUBIC);
    t2i_image_to_chw(out, &sq);
    t2i_image_free(&sq), t2i_image_free(&img);
    return 0;
}

static int lines_of(const char *flag, float v, int g, int *n) {
    if (!(v >= 0.0f) || v > (float)g)
        return t2i_error_set("%s must be a count in 0..%d or a fraction in (0, 1), got %g", flag, g, (double)v);
    if (v > 0.0f && v < 1.0f) {
        *n = (int)lrintf(v * (float)g);
    } else {
        if (v != floorf(v)) return t2i_error_set("%s %g: a count of token rows must be whole (or a fraction below 1)", flag, (double)v);
        *n = (int)v;
    }
    return 0;
}

int gen_prompt_keep_lines(float rows, float cols, int g, uint8_t *keep) {
    int nr = 0, nc = 0;
    if (lines_of("--keep-rows", rows, g, &nr) != 0 || lines_of("--keep-cols", cols, g, &nc) != 0) return -1;
    for (int r = 0; r < g; r++)
        for (int c = 0; c < g; c++) keep[r * g + c] = r < nr || c < nc;
    return 0;
}

int gen_prompt_mask(const char *path, int w, int h, int g, uint8_t *keep) {
    t2i_image m;
    if (t2i_image_load(&m, path, 1) != 0) return -1;
    return covered_cells(&m, path, w, h, g, keep);
}

int gen_prompt_mask_mem(const void *data, size_t len, const char *name, int w, int h, int g, uint8_t *keep) {
    t2i_image m;
    if (t2i_image_load_mem(&m, data, len, name, 1) != 0) return -1;
    return covered_cells(&m, name, w, h, g, keep);
}

static int covered_cells(t2i_image *pm, const char *path, int w, int h, int g, uint8_t *keep) {
    t2i_image m = *pm;
    if (m.w != w || m.h != h) {
        t2i_error_set("%s is %dx%d but the image is %dx%d: the mask must have the image's size", path, m.w, m.h, w, h);
        t2i_image_free(&m);
        return -1;
    }
    int S = w < h ? w : h;
    t2i_image sq;
    t2i_image_center_crop(&sq, &m, S, S);
    long *white = t2i_calloc((size_t)g * g, sizeof(long)), *all = t2i_calloc((size_t)g * g, sizeof(long));
    for (int y = 0; y < S; y++) {
        int r = (int)(((double)y + 0.5) * g / S);
        for (int x = 0; x < S; x++) {
            int c = (int)(((double)x + 0.5) * g / S);
            all[r * g + c]++;
            white[r * g + c] += sq.px[(size_t)y * S + x] >= 128;
        }
    }
    for (int i = 0; i < g * g; i++) keep[i] = !(2 * white[i] >= all[i]);
    free(white), free(all);
    t2i_image_free(&sq), t2i_image_free(&m);
    return 0;
}
