/* sr_data.c - the photos of super-resolution (sr.h): listing a folder's images in a fixed
 * order (sr_list_images), and the low-resolution input made from a photo (sr_make_lr:
 * bicubic downscaling, then quantised to 8 bits as a saved image would be). Shared by
 * `sr train`, `sr eval` and `sr compare`.
 */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image.h"
#include "sr.h"

/* ---------------------------------------------------------------- file lists */

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    char ext[8] = {0};
    size_t n = strlen(dot + 1);
    if (n == 0 || n >= sizeof ext) return 0;
    for (size_t i = 0; i < n && i < sizeof ext - 1; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg") || !strcmp(ext, "bmp") ||
           !strcmp(ext, "ppm");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int sr_list_images(sr_filelist *fl, const char *dir) {
    memset(fl, 0, sizeof *fl);
    DIR *d = opendir(dir);
    if (!d) return t2i_error_set("%s: cannot open folder", dir);
    int cap = 0;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
        char *path = t2i_asprintf("%s/%s", dir, e->d_name);
        if (t2i_is_dir(path)) {
            free(path);
            continue;
        }
        free(path);
        if (fl->n == cap) {
            cap = cap ? 2 * cap : 16;
            names = t2i_realloc(names, (size_t)cap * sizeof *names);
        }
        names[fl->n++] = t2i_strdup(e->d_name);
    }
    closedir(d);
    if (fl->n == 0) {
        free(names);
        return t2i_error_set("%s: no image files (png, jpg, jpeg, bmp, ppm)", dir);
    }
    qsort(names, (size_t)fl->n, sizeof *names, cmp_str);
    fl->files = t2i_malloc((size_t)fl->n * sizeof *fl->files);
    fl->heldout = t2i_malloc((size_t)fl->n * sizeof *fl->heldout);
    for (int i = 0; i < fl->n; i++) {
        fl->files[i] = t2i_asprintf("%s/%s", dir, names[i]);
        fl->heldout[i] = i % SR_HOLDOUT_EVERY == SR_HOLDOUT_EVERY - 1;
        free(names[i]);
    }
    free(names);
    return 0;
}

void sr_filelist_free(sr_filelist *fl) {
    for (int i = 0; i < fl->n; i++) free(fl->files[i]);
    free(fl->files);
    free(fl->heldout);
    memset(fl, 0, sizeof *fl);
}

/* ---------------------------------------------------------------- LR synthesis */

void sr_quantize(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = (x[i] + 1.0f) * 127.5f;
        float u = !(v > 0.0f) ? 0.0f : v >= 255.0f ? 255.0f : floorf(v + 0.5f);
        x[i] = u / 127.5f - 1.0f;
    }
}

void sr_make_lr(float *lr, const float *hr, int H, int W, int scale) {
    T2I_ASSERT(H % scale == 0 && W % scale == 0);
    t2i_resize_chw(lr, hr, 3, H, W, H / scale, W / scale, T2I_RESIZE_BICUBIC);
    sr_quantize(lr, (size_t)3 * (H / scale) * (W / scale));
}
