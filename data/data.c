/* data.c - datasets (IDX / Fashion-MNIST, image folders, class folders, caption folders,
 * FC32) and the batch loader; see data.h for the API and fc32.h for fashion-captions.
 *
 * Details beyond data.h:
 *   - IDX files are read through zlib's gzread, which reads gzip and raw files alike. Only
 *     unsigned-byte IDX files are accepted: magic 0x00000803 (images, 3 dims) and
 *     0x00000801 (labels, 1 dim); dims are big-endian uint32. A short file gives
 *     "PATH: truncated ...".
 *   - Fashion-MNIST: $T2I_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist, files
 *     {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (or the same names without .gz).
 *   - Image folders are walked recursively; names starting with '.' are skipped, and so
 *     is grid.png (the overview every t2i sampling command writes beside its images, which
 *     would otherwise count as one more sample); image files are recognised by extension
 *     (.png .jpg .jpeg .bmp .gif .tga .ppm .pgm, any case); paths are sorted bytewise so
 *     the item order never depends on the file system.
 *     Every file's header is checked with t2i_image_info when the folder is opened.
 *   - Class folders: every sub-folder is a class, even an empty one (so that a partial
 *     export keeps the label numbering); at least one image overall is required.
 *   - Caption folders keep the metadata's order. metadata.jsonl: one JSON object per line
 *     with string fields "file_name" (relative to the folder) and "text"; blank lines are
 *     skipped. metadata.csv: RFC 4180 (quoted fields, "" for a quote, newlines inside
 *     quotes, CRLF or LF), a header line naming the file_name and text columns.
 *   - C/H/W of 0: in-memory sets keep their shape; folders use C = 3 and the first image's
 *     size (one of H, W given: square). An in-memory set opened at another shape is
 *     converted once when opened (channels by t2i_image_convert: gray -> RGB replicates,
 *     RGB -> gray is PIL's luma; sizes by the same bicubic resize + centre crop as folders).
 *   - Resizing to (H, W): H == W uses t2i_image_resize_crop (shorter side to H,
 *     torchvision rounding, centre crop); otherwise the image is scaled to cover H x W
 *     (rounded sizes) and centre cropped.
 *   - The loader decodes on-disk items in parallel (OpenMP, one item per iteration);
 *     in-memory items are copied on the calling thread. Labels of a set without labels
 *     come out as -1, captions as NULL. With drop_last, a set smaller than the batch gives
 *     no batches at all (every call returns 0).
 *   - Loader augmentation of the item at (epoch e, position p) draws from
 *     split(split(split(root, AUG_STREAM), e), p), root = seed(seed): first the crop offsets
 *     (x then y, each below(2 * crop_pad + 1)) when crop_pad > 0, then the flip bit
 *     (below(2)) when flip is on, then when erase > 0 uniform() < erase decides random
 *     erasing, and an erased item draws its area fraction uniform(0.02, 0.33), the log of
 *     its aspect uniform(log 0.3, log 3.3) (height / width), then y and x (below the free
 *     room + 1). Padding and erasing are black (-1). Crop, flip, erase come in torchvision's
 *     order (RandomCrop, RandomHorizontalFlip, RandomErasing with its default scale and
 *     ratio; sizes too large for the image are clamped to it instead of redrawn).
 *   - t2i_dataset_open: the names fashion-mnist[:SPLIT] and fashion-captions[:SPLIT[:SEED]]
 *     win over folders of the same name (write ./fashion-mnist for the folder).
 *
 * Failures: every opener returns -1 after t2i_error_set("PATH: problem") - or
 * "PATH:LINE: problem" for a metadata line - and leaves the dataset zeroed (safe to free).
 * t2i_dataset_get and t2i_loader_next return -1 with the decoder's message naming the
 * image. Shape or index misuse (item out of range, batch <= 0) trips T2I_ASSERT.
 */
#include "data.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "base.h"
#include "fc32.h"
#include "image.h"

#define FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define WALK_MAX_DEPTH 32
#define METADATA_MAX_BYTES ((size_t)1 << 31)
#define AUG_STREAM 0x6175676d656e7421ull /* "augment!": far from any epoch number */

/* ---------------------------------------------------------------- small helpers ---- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void sl_push(strlist *l, char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = t2i_realloc(l->v, l->cap * sizeof(char *));
    }
    l->v[l->n++] = s;
}

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    return t2i_asprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

static int is_image_name(const char *name) {
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm"};
    if (strcmp(name, "grid.png") == 0) return 0; /* the overview t2i writes beside its samples */
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0) return 1;
    return 0;
}

void t2i_dataset_free(t2i_dataset *ds) {
    if (!ds) return;
    free(ds->mem);
    if (ds->files)
        for (int i = 0; i < ds->n; i++) free(ds->files[i]);
    free(ds->files);
    free(ds->labels);
    if (ds->captions)
        for (int i = 0; i < ds->n; i++) free(ds->captions[i]);
    free(ds->captions);
    if (ds->class_names)
        for (int k = 0; k < ds->n_classes; k++) free(ds->class_names[k]);
    free(ds->class_names);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------------ IDX ---- */

/* Reads up to n bytes; returns the count, or -1 with the error set on a zlib error. */
static long long gz_read_all(gzFile f, void *dst, size_t n, const char *path) {
    size_t got = 0;
    while (got < n) {
        size_t chunk = T2I_MIN(n - got, (size_t)1 << 30);
        int r = gzread(f, (uint8_t *)dst + got, (unsigned)chunk);
        if (r < 0) {
            int errnum = 0;
            const char *msg = gzerror(f, &errnum);
            return t2i_error_set("%s: %s", path, errnum == Z_ERRNO ? strerror(errno) : msg);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* Reads an unsigned-byte IDX file with `ndims` dimensions into *data (malloc'ed). */
static int idx_read(const char *path, int ndims, uint8_t **data, uint32_t *dims) {
    *data = NULL;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return t2i_error_set("%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    uint8_t hdr[4 + 4 * 3];
    size_t hlen = 4 + 4 * (size_t)ndims;
    long long r = gz_read_all(f, hdr, 4, path);
    if (r < 0) goto fail;
    if (r < 4 || hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != ndims) {
        if (r < 4) memset(hdr + r, 0, 4 - (size_t)r);
        t2i_error_set("%s: not an unsigned-byte IDX file with %d dimension%s (magic "
                      "0x%02x%02x%02x%02x, expected 0x0000080%d)",
                      path, ndims, ndims > 1 ? "s" : "", hdr[0], hdr[1], hdr[2], hdr[3], ndims);
        goto fail;
    }
    r = gz_read_all(f, hdr + 4, hlen - 4, path);
    if (r < 0) goto fail;
    if ((size_t)r < hlen - 4) {
        t2i_error_set("%s: truncated IDX header (%lld of %zu bytes)", path, r + 4, hlen);
        goto fail;
    }
    size_t total = 1;
    for (int d = 0; d < ndims; d++) {
        const uint8_t *p = hdr + 4 + 4 * d;
        dims[d] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (dims[d] == 0 || dims[d] > INT_MAX) {
            t2i_error_set("%s: dimension %d is %u", path, d, dims[d]);
            goto fail;
        }
        if (total > ((size_t)1 << 40) / dims[d]) {
            t2i_error_set("%s: implausible dimensions (more than 2^40 bytes)", path);
            goto fail;
        }
        total *= dims[d];
    }
    *data = t2i_malloc(total);
    r = gz_read_all(f, *data, total, path);
    if (r < 0) goto fail;
    if ((size_t)r < total) {
        t2i_error_set("%s: truncated (%lld of %zu data bytes)", path, r, total);
        goto fail;
    }
    gzclose(f);
    return 0;
fail:
    free(*data);
    *data = NULL;
    gzclose(f);
    return -1;
}

int t2i_dataset_idx(t2i_dataset *ds, const char *images_path, const char *labels_path) {
    memset(ds, 0, sizeof *ds);
    uint32_t dims[3] = {0}, ldims[1] = {0};
    uint8_t *px = NULL, *lab = NULL;
    if (idx_read(images_path, 3, &px, dims) != 0) return -1;
    if (labels_path) {
        if (idx_read(labels_path, 1, &lab, ldims) != 0) {
            free(px);
            return -1;
        }
        if (ldims[0] != dims[0]) {
            free(px);
            free(lab);
            return t2i_error_set("%s: %u labels for %u images in %s", labels_path, ldims[0], dims[0],
                                 images_path);
        }
    }
    ds->n = (int)dims[0];
    ds->C = 1;
    ds->H = (int)dims[1];
    ds->W = (int)dims[2];
    ds->mem = px;
    if (lab) {
        ds->labels = t2i_malloc((size_t)ds->n * sizeof(int));
        int maxl = 0;
        for (int i = 0; i < ds->n; i++) {
            ds->labels[i] = lab[i];
            maxl = T2I_MAX(maxl, (int)lab[i]);
        }
        ds->n_classes = maxl + 1;
        free(lab);
    }
    ds->source = t2i_strdup(images_path);
    return 0;
}

/* dir/name, or dir/name without ".gz" when only the uncompressed file is there. */
static char *fm_file(const char *dir, const char *name) {
    char *p = t2i_asprintf("%s/%s.gz", dir, name);
    if (t2i_path_exists(p)) return p;
    char *raw = t2i_asprintf("%s/%s", dir, name);
    if (t2i_path_exists(raw)) {
        free(p);
        return raw;
    }
    free(raw);
    return p; /* missing: the error will name the .gz file */
}

int t2i_dataset_fashion_mnist(t2i_dataset *ds, const char *split) {
    memset(ds, 0, sizeof *ds);
    const char *pre;
    if (strcmp(split, "train") == 0)
        pre = "train";
    else if (strcmp(split, "test") == 0)
        pre = "t10k";
    else
        return t2i_error_set("fashion-mnist: unknown split '%s' (train or test)", split);
    const char *env = getenv("T2I_FASHION_MNIST_DIR");
    const char *dir = env && *env ? env : FASHION_MNIST_DEFAULT_DIR;
    if (!t2i_is_dir(dir))
        return t2i_error_set("%s: Fashion-MNIST not found (apt-get install dataset-fashion-mnist, "
                             "or set T2I_FASHION_MNIST_DIR)",
                             dir);
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", pre);
    char *img = fm_file(dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", pre);
    char *lab = fm_file(dir, name);
    int rc = t2i_dataset_idx(ds, img, lab);
    if (rc == 0 && (ds->H != 28 || ds->W != 28 || ds->n_classes > FC32_N_CLASSES)) {
        t2i_error_set("%s: not Fashion-MNIST (%dx%d items, %d classes)", img, ds->H, ds->W, ds->n_classes);
        t2i_dataset_free(ds);
        rc = -1;
    }
    free(img);
    free(lab);
    if (rc != 0) return -1;
    ds->n_classes = FC32_N_CLASSES;
    ds->class_names = t2i_calloc(FC32_N_CLASSES, sizeof(char *));
    for (int k = 0; k < FC32_N_CLASSES; k++) ds->class_names[k] = t2i_strdup(fc32_class_names[k]);
    free(ds->source);
    ds->source = t2i_asprintf("fashion-mnist:%s", split);
    return 0;
}

/* ------------------------------------------------------ shapes and conversions ---- */

/* Resize + centre crop of src to W x H (see the header block); dst allocated. */
static void fit_size(t2i_image *dst, const t2i_image *src, int H, int W) {
    if (H == W) {
        t2i_image_resize_crop(dst, src, H, T2I_RESIZE_BICUBIC);
        return;
    }
    double s = T2I_MAX((double)W / src->w, (double)H / src->h);
    int nw = T2I_MAX(W, (int)(src->w * s + 0.5));
    int nh = T2I_MAX(H, (int)(src->h * s + 0.5));
    t2i_image tmp = {0};
    t2i_image_resize(&tmp, src, nw, nh, T2I_RESIZE_BICUBIC);
    t2i_image_center_crop(dst, &tmp, W, H);
    t2i_image_free(&tmp);
}

/* Brings an 8-bit image to (C, H, W) floats in [-1, 1]. */
static void image_to_item(float *dst, const t2i_image *img, int C, int H, int W) {
    t2i_image chan = {0}, sized = {0};
    const t2i_image *cur = img;
    if (cur->c != C) {
        t2i_image_convert(&chan, cur, C);
        cur = &chan;
    }
    if (cur->w != W || cur->h != H) {
        fit_size(&sized, cur, H, W);
        cur = &sized;
    }
    T2I_ASSERT(cur->w == W && cur->h == H && cur->c == C);
    t2i_image_to_chw(dst, cur);
    if (chan.px) t2i_image_free(&chan);
    if (sized.px) t2i_image_free(&sized);
}

/* Converts an in-memory set to (C, H, W) once (see the header block). */
static void convert_mem(t2i_dataset *ds, int C, int H, int W) {
    if (C == 0) C = ds->C;
    if (H == 0 && W == 0)
        H = ds->H, W = ds->W;
    else if (H == 0)
        H = W;
    else if (W == 0)
        W = H;
    T2I_ASSERTF(C == 1 || C == 3, "C = %d", C);
    if (C == ds->C && H == ds->H && W == ds->W) return;
    size_t in_sz = (size_t)ds->H * ds->W * ds->C, out_sz = (size_t)H * W * C;
    uint8_t *out = t2i_malloc((size_t)ds->n * out_sz);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < ds->n; i++) {
        t2i_image src = {ds->W, ds->H, ds->C, ds->mem + (size_t)i * in_sz};
        t2i_image chan = {0}, sized = {0};
        const t2i_image *cur = &src;
        if (cur->c != C) {
            t2i_image_convert(&chan, cur, C);
            cur = &chan;
        }
        if (cur->w != W || cur->h != H) {
            fit_size(&sized, cur, H, W);
            cur = &sized;
        }
        memcpy(out + (size_t)i * out_sz, cur->px, out_sz);
        if (chan.px) t2i_image_free(&chan);
        if (sized.px) t2i_image_free(&sized);
    }
    free(ds->mem);
    ds->mem = out;
    ds->C = C;
    ds->H = H;
    ds->W = W;
}

int t2i_dataset_get(const t2i_dataset *ds, int i, float *dst) {
    T2I_ASSERTF(i >= 0 && i < ds->n, "item %d of %d", i, ds->n);
    if (ds->mem) {
        const t2i_image img = {ds->W, ds->H, ds->C, ds->mem + (size_t)i * ds->H * ds->W * ds->C};
        t2i_image_to_chw(dst, &img);
        return 0;
    }
    T2I_ASSERT(ds->files);
    t2i_image img = {0};
    if (t2i_image_load(&img, ds->files[i], ds->C) != 0) return -1;
    image_to_item(dst, &img, ds->C, ds->H, ds->W);
    t2i_image_free(&img);
    return 0;
}

/* --------------------------------------------------------------------- folders ---- */

/* Appends the image files under dir (recursively) to out. */
static int walk(const char *dir, strlist *out, int depth) {
    if (depth > WALK_MAX_DEPTH) return t2i_error_set("%s: folders nested too deeply", dir);
    DIR *d = opendir(dir);
    if (!d) return t2i_error_set("%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p); /* a dangling symlink: not an image we could read anyway */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk(p, out, depth + 1);
            free(p);
        } else if (S_ISREG(st.st_mode) && is_image_name(e->d_name)) {
            sl_push(out, p);
        } else {
            free(p);
        }
    }
    closedir(d);
    return rc;
}

/* Counts image files and sub-folders directly in dir; fills subdirs (sorted names). */
static int scan_top(const char *dir, int *n_images, strlist *subdirs) {
    *n_images = 0;
    DIR *d = opendir(dir);
    if (!d) return t2i_error_set("%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                sl_push(subdirs, t2i_strdup(e->d_name));
            else if (S_ISREG(st.st_mode) && is_image_name(e->d_name))
                (*n_images)++;
        }
        free(p);
    }
    closedir(d);
    if (subdirs->n) qsort(subdirs->v, subdirs->n, sizeof(char *), cmp_str);
    return 0;
}

static int check_dir(const char *dir) {
    if (!t2i_path_exists(dir)) return t2i_error_set("%s: folder not found", dir);
    if (!t2i_is_dir(dir)) return t2i_error_set("%s: not a folder", dir);
    return 0;
}

/* Validates every file's header; returns the first image's size in *w0, *h0. */
static int check_images(char **files, int n, int *w0, int *h0) {
    for (int i = 0; i < n; i++) {
        int w, h, c;
        if (t2i_image_info(files[i], &w, &h, &c) != 0) {
            if (!strstr(t2i_error_msg(), files[i])) t2i_error_prefix("%s", files[i]);
            return -1;
        }
        if (i == 0) *w0 = w, *h0 = h;
    }
    return 0;
}

/* Fills the shape of a folder dataset from the request (see the header block). */
static int set_folder_shape(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    if (C != 0 && C != 1 && C != 3) return t2i_error_set("%s: channels must be 1 or 3, got %d", dir, C);
    if (H < 0 || W < 0) return t2i_error_set("%s: bad size %dx%d", dir, W, H);
    int w0 = 0, h0 = 0;
    if (check_images(ds->files, ds->n, &w0, &h0) != 0) return -1;
    ds->C = C ? C : 3;
    if (H == 0 && W == 0)
        H = h0, W = w0;
    else if (H == 0)
        H = W;
    else if (W == 0)
        W = H;
    ds->H = H;
    ds->W = W;
    return 0;
}

static void take_files(t2i_dataset *ds, strlist *l) {
    ds->n = (int)l->n;
    ds->files = l->v;
    memset(l, 0, sizeof *l);
}

int t2i_dataset_image_folder(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir) != 0) return -1;
    strlist l = {0};
    if (walk(dir, &l, 0) != 0) {
        sl_free(&l);
        return -1;
    }
    if (l.n == 0) {
        sl_free(&l);
        return t2i_error_set("%s: no images found", dir);
    }
    if (l.n > INT_MAX) {
        sl_free(&l);
        return t2i_error_set("%s: too many images (%zu)", dir, l.n);
    }
    qsort(l.v, l.n, sizeof(char *), cmp_str);
    take_files(ds, &l);
    ds->source = t2i_strdup(dir);
    if (set_folder_shape(ds, dir, C, H, W) != 0) {
        t2i_dataset_free(ds);
        return -1;
    }
    return 0;
}

int t2i_dataset_class_folders(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir) != 0) return -1;
    strlist subs = {0}, all = {0};
    int n_top = 0, rc = -1;
    size_t *first = NULL;
    if (scan_top(dir, &n_top, &subs) != 0) goto done;
    if (subs.n == 0) {
        t2i_error_set("%s: no class sub-folders found", dir);
        goto done;
    }
    first = t2i_malloc((subs.n + 1) * sizeof(size_t));
    for (size_t k = 0; k < subs.n; k++) {
        char *sd = path_join(dir, subs.v[k]);
        size_t before = all.n;
        first[k] = before;
        int wrc = walk(sd, &all, 1);
        free(sd);
        if (wrc != 0) goto done;
        if (all.n > before) qsort(all.v + before, all.n - before, sizeof(char *), cmp_str);
    }
    first[subs.n] = all.n;
    if (all.n == 0) {
        t2i_error_set("%s: no images found", dir);
        goto done;
    }
    if (all.n > INT_MAX) {
        t2i_error_set("%s: too many images (%zu)", dir, all.n);
        goto done;
    }
    take_files(ds, &all);
    ds->labels = t2i_malloc((size_t)ds->n * sizeof(int));
    for (size_t k = 0; k < subs.n; k++)
        for (size_t i = first[k]; i < first[k + 1]; i++) ds->labels[i] = (int)k;
    ds->n_classes = (int)subs.n;
    ds->class_names = subs.v;
    memset(&subs, 0, sizeof subs);
    ds->source = t2i_strdup(dir);
    rc = set_folder_shape(ds, dir, C, H, W);
    if (rc != 0) t2i_dataset_free(ds);
done:
    free(first);
    sl_free(&subs);
    sl_free(&all);
    return rc;
}

/* ------------------------------------------------------------ caption folders ---- */

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

/* Checks one (file_name, text) entry and appends it. `where` is "PATH:LINE". */
static int add_entry(const char *dir, const char *where, const char *file, const char *text, strlist *files,
                     strlist *caps) {
    if (!file || !*file) return t2i_error_set("%s: empty file_name", where);
    if (!text || is_blank(text, strlen(text))) return t2i_error_set("%s: empty caption", where);
    size_t bad = t2i_utf8_invalid_at(text, strlen(text));
    if (text[bad]) return t2i_error_set("%s: caption is not valid UTF-8 (byte %zu)", where, bad);
    char *p = path_join(dir, file);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
        t2i_error_set("%s: file_name '%s' %s (%s)", where, file, stat(p, &st) != 0 ? "not found" : "is not a file",
                      p);
        free(p);
        return -1;
    }
    sl_push(files, p);
    sl_push(caps, t2i_strdup(text));
    return 0;
}

static int parse_jsonl(const char *dir, const char *path, const char *buf, size_t len, strlist *files,
                       strlist *caps) {
    size_t pos = 0, cap = 0;
    int line = 0, rc = 0;
    char *copy = NULL; /* the line, NUL-terminated, so that cJSON can reject trailing text */
    while (pos < len && rc == 0) {
        line++;
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (is_blank(s, n)) continue;
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, line);
        if (n + 1 > cap) {
            cap = n + 1;
            copy = t2i_realloc(copy, cap);
        }
        memcpy(copy, s, n);
        copy[n] = 0;
        cJSON *o = cJSON_ParseWithOpts(copy, NULL, 1);
        if (!o) {
            rc = t2i_error_set("%s: not valid JSON", where);
        } else if (!cJSON_IsObject(o)) {
            rc = t2i_error_set("%s: expected a JSON object", where);
        } else {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file_name");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
            if (!cJSON_IsString(f))
                rc = t2i_error_set("%s: missing \"file_name\" string", where);
            else if (!cJSON_IsString(t))
                rc = t2i_error_set("%s: missing \"text\" string", where);
            else
                rc = add_entry(dir, where, f->valuestring, t->valuestring, files, caps);
        }
        cJSON_Delete(o);
    }
    free(copy);
    return rc;
}

/* One RFC 4180 record starting at *pos: fields appended to out, *line advanced past it.
 * Returns 1 for a record, 0 at the end of the input, -1 on a malformed record. */
static int csv_record(const char *buf, size_t len, size_t *pos, int *line, strlist *out, char *field,
                      const char *path) {
    size_t p = *pos;
    if (p >= len) return 0;
    int start_line = *line;
    for (;;) {
        size_t n = 0;
        if (p < len && buf[p] == '"') {
            p++;
            for (;;) {
                if (p >= len) return t2i_error_set("%s:%d: unterminated quoted field", path, start_line);
                if (buf[p] == '"') {
                    if (p + 1 < len && buf[p + 1] == '"') {
                        field[n++] = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (buf[p] == '\n') (*line)++;
                field[n++] = buf[p++];
            }
            if (p < len && buf[p] != ',' && buf[p] != '\n' &&
                !(buf[p] == '\r' && (p + 1 == len || buf[p + 1] == '\n')))
                return t2i_error_set("%s:%d: unexpected character after a closing quote", path, *line);
        } else {
            while (p < len && buf[p] != ',' && buf[p] != '\n' &&
                   !(buf[p] == '\r' && (p + 1 == len || buf[p + 1] == '\n')))
                field[n++] = buf[p++];
        }
        field[n] = 0;
        sl_push(out, t2i_strdup(field));
        if (p < len && buf[p] == ',') {
            p++;
            continue;
        }
        if (p < len && buf[p] == '\r') p++;
        if (p < len && buf[p] == '\n') p++;
        (*line)++;
        break;
    }
    *pos = p;
    return 1;
}

static int parse_csv(const char *dir, const char *path, const char *buf, size_t len, strlist *files,
                     strlist *caps) {
    size_t pos = 0;
    int line = 1, rc = 0;
    strlist rec = {0};
    int fcol = -1, tcol = -1, ncol = 0;
    char *field = t2i_malloc(len + 1); /* any field fits */
    /* header: the first non-blank record */
    for (;;) {
        int here = line;
        int r = csv_record(buf, len, &pos, &line, &rec, field, path);
        if (r < 0) goto fail;
        if (r == 0) {
            rc = t2i_error_set("%s: empty (expected a header line with file_name and text)", path);
            goto done;
        }
        if (rec.n == 1 && rec.v[0][0] == 0) {
            sl_free(&rec);
            continue;
        }
        ncol = (int)rec.n;
        for (int k = 0; k < ncol; k++) {
            if (strcmp(rec.v[k], "file_name") == 0 && fcol < 0) fcol = k;
            if (strcmp(rec.v[k], "text") == 0 && tcol < 0) tcol = k;
        }
        sl_free(&rec);
        if (fcol < 0 || tcol < 0) {
            rc = t2i_error_set("%s:%d: the header needs file_name and text columns", path, here);
            goto done;
        }
        break;
    }
    for (;;) {
        int here = line;
        int r = csv_record(buf, len, &pos, &line, &rec, field, path);
        if (r < 0) goto fail;
        if (r == 0) break;
        if (rec.n == 1 && rec.v[0][0] == 0) {
            sl_free(&rec);
            continue;
        }
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, here);
        if ((int)rec.n != ncol) {
            rc = t2i_error_set("%s: %zu fields, the header has %d", where, rec.n, ncol);
            goto done;
        }
        if (add_entry(dir, where, rec.v[fcol], rec.v[tcol], files, caps) != 0) goto fail;
        sl_free(&rec);
    }
    goto done;
fail:
    rc = -1;
done:
    free(field);
    sl_free(&rec);
    return rc;
}

int t2i_dataset_captions(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir) != 0) return -1;
    char *jl = path_join(dir, "metadata.jsonl"), *csv = path_join(dir, "metadata.csv");
    int is_json = t2i_path_exists(jl);
    const char *path = is_json ? jl : csv;
    strlist files = {0}, caps = {0};
    int rc = -1;
    size_t len = 0;
    char *buf = NULL;
    if (!is_json && !t2i_path_exists(csv)) {
        t2i_error_set("%s: no metadata.jsonl or metadata.csv", dir);
        goto done;
    }
    buf = t2i_read_file(path, &len, METADATA_MAX_BYTES);
    if (!buf) goto done;
    /* a UTF-8 byte-order mark, as spreadsheet programs write */
    size_t skip = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    rc = is_json ? parse_jsonl(dir, path, buf + skip, len - skip, &files, &caps)
                 : parse_csv(dir, path, buf + skip, len - skip, &files, &caps);
    if (rc != 0) goto done;
    if (files.n == 0) {
        rc = t2i_error_set("%s: no images found", dir);
        goto done;
    }
    if (files.n > INT_MAX) {
        rc = t2i_error_set("%s: too many entries", path);
        goto done;
    }
    take_files(ds, &files);
    ds->captions = caps.v;
    memset(&caps, 0, sizeof caps);
    ds->source = t2i_strdup(dir);
    rc = set_folder_shape(ds, dir, C, H, W);
    if (rc != 0) t2i_dataset_free(ds);
done:
    free(buf);
    free(jl);
    free(csv);
    sl_free(&files);
    sl_free(&caps);
    return rc;
}

/* ------------------------------------------------------------------------ open ---- */

/* "NAME", "NAME:rest" -> rest (or "" when absent); NULL when spec is not NAME. */
static const char *named(const char *spec, const char *name) {
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0) return NULL;
    if (spec[n] == 0) return spec + n;
    if (spec[n] == ':') return spec + n + 1;
    return NULL;
}

static int open_fashion_captions(t2i_dataset *ds, const char *spec, const char *rest) {
    char split[16] = "train";
    uint64_t seed = FC32_DEFAULT_SEED;
    const char *colon = strchr(rest, ':');
    size_t slen = colon ? (size_t)(colon - rest) : strlen(rest);
    if (slen >= sizeof split) return t2i_error_set("%s: unknown split (train or test)", spec);
    if (slen) {
        memcpy(split, rest, slen);
        split[slen] = 0;
    }
    if (colon) {
        char *end = NULL;
        errno = 0;
        unsigned long long s = strtoull(colon + 1, &end, 10);
        if (errno || !colon[1] || *end || colon[1] == '-')
            return t2i_error_set("%s: bad seed '%s' (expected fashion-captions:SPLIT:SEED)", spec, colon + 1);
        seed = s;
    }
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
        return t2i_error_set("%s: unknown split '%s' (train or test)", spec, split);
    return fc32_open(ds, split, seed);
}

int t2i_dataset_open(t2i_dataset *ds, const char *spec, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (C != 0 && C != 1 && C != 3) return t2i_error_set("%s: channels must be 1 or 3, got %d", spec, C);
    if (H < 0 || W < 0) return t2i_error_set("%s: bad size %dx%d", spec, W, H);
    const char *rest;
    if ((rest = named(spec, "fashion-mnist")) != NULL) {
        if (t2i_dataset_fashion_mnist(ds, *rest ? rest : "train") != 0) return -1;
        convert_mem(ds, C, H, W);
        return 0;
    }
    if ((rest = named(spec, "fashion-captions")) != NULL) {
        if (open_fashion_captions(ds, spec, rest) != 0) return -1;
        convert_mem(ds, C, H, W);
        return 0;
    }
    if (!t2i_path_exists(spec))
        return t2i_error_set("%s: no such folder or dataset (expected fashion-mnist[:train|:test], "
                             "fashion-captions[:train|:test] or a folder)",
                             spec);
    if (check_dir(spec) != 0) return -1;
    char *jl = path_join(spec, "metadata.jsonl"), *csv = path_join(spec, "metadata.csv");
    int has_meta = t2i_path_exists(jl) || t2i_path_exists(csv);
    free(jl);
    free(csv);
    if (has_meta) return t2i_dataset_captions(ds, spec, C, H, W);
    int n_top = 0;
    strlist subs = {0};
    if (scan_top(spec, &n_top, &subs) != 0) return -1;
    int classes = n_top == 0 && subs.n > 0;
    sl_free(&subs);
    return classes ? t2i_dataset_class_folders(ds, spec, C, H, W)
                   : t2i_dataset_image_folder(ds, spec, C, H, W);
}

/* ---------------------------------------------------------------------- loader ---- */

static void loader_order(t2i_loader *L) {
    int n = L->ds->n;
    for (int i = 0; i < n; i++) L->order[i] = i;
    if (L->shuffle) {
        t2i_rng root;
        t2i_rng_seed(&root, L->seed);
        t2i_rng r = t2i_rng_split(&root, (uint64_t)L->epoch);
        t2i_rng_shuffle(&r, L->order, (size_t)n);
    }
}

void t2i_loader_init(t2i_loader *L, const t2i_dataset *ds, int batch, int shuffle, uint64_t seed) {
    T2I_ASSERT(ds && ds->n > 0 && batch > 0);
    memset(L, 0, sizeof *L);
    L->ds = ds;
    L->batch = batch;
    L->shuffle = shuffle;
    L->seed = seed;
    L->order = t2i_malloc((size_t)ds->n * sizeof(int));
    loader_order(L);
}

int t2i_loader_seek(t2i_loader *L, long epoch, int pos) {
    if (epoch < 0 || pos < 0 || pos > L->ds->n)
        return t2i_error_set("training state: loader position (epoch %ld, item %d) is outside the %d items of %s",
                             epoch, pos, L->ds->n, L->ds->source ? L->ds->source : "the data");
    L->epoch = epoch;
    L->pos = pos;
    loader_order(L);
    return 0;
}

void t2i_loader_free(t2i_loader *L) {
    free(L->order);
    memset(L, 0, sizeof *L);
}

/* Row y of a plane becomes row sy shifted by ox (out[x] = in[x + ox]), black outside. */
static void shift_row(float *dst, const float *src, int W, int ox) {
    int a = ox < 0 ? -ox : ox;
    if (a >= W) {
        for (int x = 0; x < W; x++) dst[x] = -1.0f;
        return;
    }
    if (ox >= 0) {
        memmove(dst, src + ox, (size_t)(W - ox) * sizeof(float));
        for (int x = W - ox; x < W; x++) dst[x] = -1.0f;
    } else {
        memmove(dst + a, src, (size_t)(W - a) * sizeof(float));
        for (int x = 0; x < a; x++) dst[x] = -1.0f;
    }
}

/* In place: out(y, x) = in(y + oy, x + ox), black (-1) outside. Rows are visited in the
 * order that reads each source row before it is overwritten. */
static void shift_plane(float *p, int H, int W, int ox, int oy) {
    for (int k = 0; k < H; k++) {
        int y = oy >= 0 ? k : H - 1 - k;
        int sy = y + oy;
        float *dst = p + (size_t)y * W;
        if (sy < 0 || sy >= H) {
            for (int x = 0; x < W; x++) dst[x] = -1.0f;
        } else {
            shift_row(dst, p + (size_t)sy * W, W, ox);
        }
    }
}

static void augment(const t2i_loader *L, float *x, int pos) {
    const t2i_dataset *ds = L->ds;
    t2i_rng root;
    t2i_rng_seed(&root, L->seed);
    t2i_rng a = t2i_rng_split(&root, AUG_STREAM);
    t2i_rng e = t2i_rng_split(&a, (uint64_t)L->epoch);
    t2i_rng r = t2i_rng_split(&e, (uint64_t)pos);
    size_t plane = (size_t)ds->H * ds->W;
    if (L->crop_pad > 0) {
        int ox = (int)t2i_rng_below(&r, 2 * (uint64_t)L->crop_pad + 1) - L->crop_pad;
        int oy = (int)t2i_rng_below(&r, 2 * (uint64_t)L->crop_pad + 1) - L->crop_pad;
        if (ox || oy)
            for (int c = 0; c < ds->C; c++) shift_plane(x + c * plane, ds->H, ds->W, ox, oy);
    }
    if (L->flip && t2i_rng_below(&r, 2)) {
        for (int c = 0; c < ds->C; c++)
            for (int y = 0; y < ds->H; y++) {
                float *row = x + c * plane + (size_t)y * ds->W;
                for (int i = 0, j = ds->W - 1; i < j; i++, j--) {
                    float t = row[i];
                    row[i] = row[j];
                    row[j] = t;
                }
            }
    }
    if (L->erase > 0 && t2i_rng_uniform(&r) < L->erase) {
        float area = (0.02f + 0.31f * t2i_rng_uniform(&r)) * (float)plane;
        float aspect = expf(logf(0.3f) + (logf(3.3f) - logf(0.3f)) * t2i_rng_uniform(&r));
        int h = T2I_MIN(T2I_MAX((int)lroundf(sqrtf(area * aspect)), 1), ds->H);
        int w = T2I_MIN(T2I_MAX((int)lroundf(sqrtf(area / aspect)), 1), ds->W);
        int y0 = (int)t2i_rng_below(&r, (uint64_t)(ds->H - h + 1));
        int x0 = (int)t2i_rng_below(&r, (uint64_t)(ds->W - w + 1));
        for (int c = 0; c < ds->C; c++)
            for (int y = y0; y < y0 + h; y++) {
                float *row = x + c * plane + (size_t)y * ds->W + x0;
                for (int i = 0; i < w; i++) row[i] = -1.0f;
            }
    }
}

int t2i_loader_next(t2i_loader *L, float *x, int *labels, const char **captions, int *idx) {
    const t2i_dataset *ds = L->ds;
    int left = ds->n - L->pos;
    if (left <= 0 || (L->drop_last && left < L->batch)) {
        L->epoch++;
        L->pos = 0;
        loader_order(L);
        return 0;
    }
    int m = T2I_MIN(L->batch, left);
    size_t item = (size_t)ds->C * ds->H * ds->W;
    int fail = -1;
    char msg[1024] = "";
    /* Each item writes only its own slice of x; the first failing item (by position)
     * reports, so the message does not depend on the thread count either. In-memory items
     * are only copied: threads would cost more than they save. */
#pragma omp parallel for schedule(dynamic, 1) if (m > 1 && !ds->mem)
    for (int b = 0; b < m; b++) {
        float *dst = x + (size_t)b * item;
        if (t2i_dataset_get(ds, L->order[L->pos + b], dst) != 0) {
#pragma omp critical(t2i_loader_error)
            {
                if (fail < 0 || b < fail) {
                    fail = b;
                    snprintf(msg, sizeof msg, "%s", t2i_error_msg());
                }
            }
            continue;
        }
        if (L->flip || L->crop_pad > 0 || L->erase > 0) augment(L, dst, L->pos + b);
    }
    if (fail >= 0) return t2i_error_set("%s", msg);
    for (int b = 0; b < m; b++) {
        int i = L->order[L->pos + b];
        if (labels) labels[b] = ds->labels ? ds->labels[i] : -1;
        if (captions) captions[b] = ds->captions ? ds->captions[i] : NULL;
        if (idx) idx[b] = i;
    }
    L->pos += m;
    return m;
}
