/* sr_data.c - the photos of super-resolution (sr.h): listing a folder's images in a fixed
 * order (sr_list_images), and the low-resolution input made from a photo (sr_make_lr:
 * bicubic downscaling, then quantised to 8 bits as a saved image would be). Shared by
 * `sr train`, `sr eval` and `sr compare`.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

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
           !strcmp(ext, "ppm") || !strcmp(ext, "webp");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A growing list of heap strings. */
typedef struct {
    int n, cap;
    char **v;
} strlist;

static void strlist_add(strlist *l, char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = t2i_realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = s;
}

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The folders entered so far (device and inode), so that a symbolic link back up the tree
 * is entered once, not forever. */
typedef struct {
    int n, cap;
    dev_t *dev;
    ino_t *ino;
} dirset;

static int dirset_enter(dirset *d, const struct stat *st) {
    for (int i = 0; i < d->n; i++)
        if (d->dev[i] == st->st_dev && d->ino[i] == st->st_ino) return 0;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->dev = t2i_realloc(d->dev, (size_t)d->cap * sizeof *d->dev);
        d->ino = t2i_realloc(d->ino, (size_t)d->cap * sizeof *d->ino);
    }
    d->dev[d->n] = st->st_dev, d->ino[d->n] = st->st_ino, d->n++;
    return 1;
}

/* The image files under dir (recursively; names starting with '.' skipped) into out,
 * unsorted. A sub-folder or entry that cannot be read is skipped with a note. */
static void walk(strlist *out, const char *dir, dirset *seen, int depth) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "t2i: note: %s: cannot open folder (%s); skipped\n", dir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *path = t2i_asprintf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) {
            fprintf(stderr, "t2i: note: %s: %s; skipped\n", path, strerror(errno));
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (depth < 64 && dirset_enter(seen, &st)) walk(out, path, seen, depth + 1);
            free(path);
        } else if (S_ISREG(st.st_mode) && has_image_ext(e->d_name)) {
            strlist_add(out, path);
        } else {
            free(path);
        }
    }
    closedir(d);
}

/* One source's image files, sorted bytewise: a folder (recursive) or a single file. */
static int list_root(strlist *out, const char *root) {
    struct stat st;
    if (stat(root, &st) != 0) return t2i_error_set("%s: cannot open folder: %s", root, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        if (!has_image_ext(root)) return t2i_error_set("%s: not an image file (png, jpg, jpeg, bmp, ppm, webp)", root);
        strlist_add(out, t2i_strdup(root));
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) return t2i_error_set("%s: not a folder or a file", root);
    DIR *d = opendir(root);
    if (!d) return t2i_error_set("%s: cannot open folder: %s", root, strerror(errno));
    closedir(d);
    dirset seen = {0};
    dirset_enter(&seen, &st);
    walk(out, root, &seen, 0);
    free(seen.dev), free(seen.ino);
    if (out->n == 0) return t2i_error_set("%s: no image files (png, jpg, jpeg, bmp, ppm, webp)", root);
    qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return 0;
}

/* A Debian package's image files as `dpkg -L NAME` lists them (regular files, or links
 * to them, with an image extension), sorted bytewise. */
static int list_package(strlist *out, const char *name) {
    for (const char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '+' || *c == '-' || *c == '.'))
            return t2i_error_set("--package '%s': not a Debian package name", name);
    if (!name[0]) return t2i_error_set("--package: empty package name");
    char *cmd = t2i_asprintf("dpkg -L '%s' 2>/dev/null", name);
    FILE *f = popen(cmd, "r");
    free(cmd);
    if (!f) return t2i_error_set("--package %s: cannot run dpkg: %s", name, strerror(errno));
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n) continue;
        lines++;
        struct stat st;
        const char *base = strrchr(line, '/');
        if (line[0] != '/' || !has_image_ext(base ? base + 1 : line) || stat(line, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        strlist_add(out, t2i_strdup(line));
    }
    int rc = pclose(f);
    if (rc != 0 || lines == 0)
        return t2i_error_set("--package %s: not an installed Debian package (dpkg -L failed)", name);
    if (out->n == 0) return t2i_error_set("--package %s: the package has no image files (png, jpg, jpeg, bmp, ppm, webp)", name);
    qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return 0;
}

/* Splits a colon-separated list into out (empty parts skipped). */
static void split_colons(strlist *out, const char *spec) {
    if (!spec) return;
    const char *p = spec;
    while (*p) {
        const char *q = strchr(p, ':');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n) {
            char *s = t2i_malloc(n + 1);
            memcpy(s, p, n), s[n] = 0;
            strlist_add(out, s);
        }
        p += n + (q ? 1 : 0);
    }
}

/* Adds one source's sorted files to fl: held out all (hold) or by the i % 6 rule (rule);
 * a file already listed (the same real path) is not added again, but a held-out source
 * holds it out. */
static void add_source(sr_filelist *fl, int *cap, char ***real, strlist *files, int hold, int rule) {
    for (int i = 0; i < files->n; i++) {
        char *rp = realpath(files->v[i], NULL);
        if (!rp) rp = t2i_strdup(files->v[i]);
        int dup = -1;
        for (int k = 0; k < fl->n && dup < 0; k++)
            if (strcmp((*real)[k], rp) == 0) dup = k;
        if (dup >= 0) {
            if (hold) fl->heldout[dup] = 1;
            free(rp);
            continue;
        }
        if (fl->n == *cap) {
            *cap = *cap ? 2 * *cap : 16;
            fl->files = t2i_realloc(fl->files, (size_t)*cap * sizeof *fl->files);
            fl->heldout = t2i_realloc(fl->heldout, (size_t)*cap * sizeof *fl->heldout);
            *real = t2i_realloc(*real, (size_t)*cap * sizeof **real);
        }
        fl->files[fl->n] = files->v[i];
        files->v[i] = NULL;
        fl->heldout[fl->n] = hold || (rule && i % SR_HOLDOUT_EVERY == SR_HOLDOUT_EVERY - 1);
        (*real)[fl->n] = rp;
        fl->n++;
    }
}

int sr_list_sources(sr_filelist *fl, const sr_sources *src) {
    memset(fl, 0, sizeof *fl);
    const char *specs[4] = {src->data, src->packages, src->holdout_packages, src->holdout_dirs};
    strlist parts[4] = {{0}};
    for (int k = 0; k < 4; k++) split_colons(&parts[k], specs[k]);
    int with_holdout = parts[2].n + parts[3].n > 0, cap = 0, rc = 0;
    char **real = NULL;
    for (int k = 0; k < 4 && rc == 0; k++)
        for (int j = 0; j < parts[k].n && rc == 0; j++) {
            strlist files = {0};
            const char *name = parts[k].v[j];
            rc = k == 0 || k == 3 ? list_root(&files, name) : list_package(&files, name);
            if (rc == 0) add_source(fl, &cap, &real, &files, k >= 2, !with_holdout);
            strlist_free(&files);
        }
    for (int i = 0; i < fl->n; i++) free(real[i]);
    free(real);
    for (int k = 0; k < 4; k++) strlist_free(&parts[k]);
    if (rc == 0 && fl->n == 0) rc = t2i_error_set("no image files: give --data or --package");
    if (rc != 0) sr_filelist_free(fl);
    return rc;
}

int sr_list_images(sr_filelist *fl, const char *dir) {
    sr_sources src = {.data = dir};
    return sr_list_sources(fl, &src);
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

/* (3, H, W) -> (3, H/s, W/s): the mean of each s x s block (area / box downscaling). */
static void downscale_area(float *lr, const float *hr, int H, int W, int s) {
    int h = H / s, w = W / s;
    float inv = 1.0f / (float)(s * s);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float sum = 0.0f;
                for (int dy = 0; dy < s; dy++)
                    for (int dx = 0; dx < s; dx++) sum += hr[((size_t)c * H + (size_t)(y * s + dy)) * W + x * s + dx];
                lr[((size_t)c * h + y) * w + x] = sum * inv;
            }
}

/* Separable Gaussian blur of (3, H, W) with standard deviation sigma (pixels), radius
 * ceil(3 sigma), the border pixel repeated outside the image. out must not be in. */
static void gaussian_blur(float *out, const float *in, float *tmp, int H, int W, float sigma) {
    int r = (int)ceilf(3.0f * sigma);
    if (r < 1) r = 1;
    if (r > 8) r = 8;
    float k[17], sum = 0.0f;
    for (int i = -r; i <= r; i++) sum += k[i + r] = expf(-(float)(i * i) / (2.0f * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    for (int c = 0; c < 3; c++) {
        const float *p = in + (size_t)c * H * W;
        float *t = tmp + (size_t)c * H * W, *o = out + (size_t)c * H * W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float v = 0.0f;
                for (int i = -r; i <= r; i++) v += k[i + r] * p[(size_t)y * W + T2I_MIN(W - 1, T2I_MAX(0, x + i))];
                t[(size_t)y * W + x] = v;
            }
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float v = 0.0f;
                for (int i = -r; i <= r; i++) v += k[i + r] * t[(size_t)T2I_MIN(H - 1, T2I_MAX(0, y + i)) * W + x];
                o[(size_t)y * W + x] = v;
            }
    }
}

sr_degrade_kind sr_make_lr_degraded(float *lr, const float *hr, int H, int W, int scale, sr_degrade mode, t2i_rng *rng) {
    if (mode == SR_DEGRADE_BICUBIC) {
        sr_make_lr(lr, hr, H, W, scale);
        return SR_LR_BICUBIC;
    }
    T2I_ASSERT(H % scale == 0 && W % scale == 0);
    size_t n = (size_t)3 * (H / scale) * (W / scale);
    float u = t2i_rng_uniform(rng);
    sr_degrade_kind kind = u < 0.55f ? SR_LR_BICUBIC : u < 0.70f ? SR_LR_BILINEAR : u < 0.85f ? SR_LR_AREA : SR_LR_BLUR_BICUBIC;
    if (kind == SR_LR_BICUBIC) {
        t2i_resize_chw(lr, hr, 3, H, W, H / scale, W / scale, T2I_RESIZE_BICUBIC);
    } else if (kind == SR_LR_BILINEAR) {
        t2i_resize_chw(lr, hr, 3, H, W, H / scale, W / scale, T2I_RESIZE_BILINEAR);
    } else if (kind == SR_LR_AREA) {
        downscale_area(lr, hr, H, W, scale);
    } else {
        float sigma = 0.05f + 0.95f * t2i_rng_uniform(rng); /* 0.05 .. 1 HR pixels */
        float *b = t2i_malloc((size_t)2 * 3 * H * W * sizeof(float));
        gaussian_blur(b, hr, b + (size_t)3 * H * W, H, W, sigma);
        t2i_resize_chw(lr, b, 3, H, W, H / scale, W / scale, T2I_RESIZE_BICUBIC);
        free(b);
    }
    sr_quantize(lr, n);
    return kind;
}

int sr_degrade_parse(const char *name, sr_degrade *mode) {
    if (strcmp(name, "bicubic") == 0) *mode = SR_DEGRADE_BICUBIC;
    else if (strcmp(name, "mix") == 0) *mode = SR_DEGRADE_MIX;
    else return t2i_error_set("--degrade must be bicubic or mix, got '%s'", name);
    return 0;
}
