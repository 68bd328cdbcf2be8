/* fashion_mnist.c - IDX files and Fashion-MNIST (data.h), with Fashion-MNIST's class names.
 *
 *   - IDX files are read through zlib's gzread, which reads gzip and raw files alike. Only
 *     unsigned-byte IDX files are accepted: magic 0x00000803 (images, 3 dims) and
 *     0x00000801 (labels, 1 dim); dims are big-endian uint32. A short file gives
 *     "PATH: truncated ...".
 *   - Fashion-MNIST: $T2I_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist, files
 *     {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (or the same names without .gz).
 *
 * Failures: as every opener's (data.c): -1 after t2i_error_set("PATH: problem"), the
 * dataset left zeroed.
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base.h"

#define FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

const char *const t2i_fashion_mnist_class_names[T2I_FASHION_MNIST_CLASSES] = {
    "t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
};

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
    if (rc == 0 && (ds->H != 28 || ds->W != 28 || ds->n_classes > T2I_FASHION_MNIST_CLASSES)) {
        t2i_error_set("%s: not Fashion-MNIST (%dx%d items, %d classes)", img, ds->H, ds->W, ds->n_classes);
        t2i_dataset_free(ds);
        rc = -1;
    }
    free(img);
    free(lab);
    if (rc != 0) return -1;
    ds->n_classes = T2I_FASHION_MNIST_CLASSES;
    ds->class_names = t2i_calloc(T2I_FASHION_MNIST_CLASSES, sizeof(char *));
    for (int k = 0; k < T2I_FASHION_MNIST_CLASSES; k++) ds->class_names[k] = t2i_strdup(t2i_fashion_mnist_class_names[k]);
    free(ds->source);
    ds->source = t2i_asprintf("fashion-mnist:%s", split);
    return 0;
}
