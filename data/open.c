/* open.c - t2i_dataset_open (data.h): a dataset by name or folder. It knows every reader
 * and FC32, which is built on them; no reader knows it.
 *
 *   - t2i_dataset_open: the names fashion-mnist[:SPLIT] and fashion-captions[:SPLIT[:SEED]]
 *     win over folders of the same name (write ./fashion-mnist for the folder).
 *   - An in-memory set (Fashion-MNIST, FC32) opened at another shape is converted once
 *     (data_convert_mem, data.c); a folder is opened by folders.c.
 */
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "data_internal.h"
#include "fc32.h"

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
        data_convert_mem(ds, C, H, W);
        return 0;
    }
    if ((rest = named(spec, "fashion-captions")) != NULL) {
        if (open_fashion_captions(ds, spec, rest) != 0) return -1;
        data_convert_mem(ds, C, H, W);
        return 0;
    }
    if (!t2i_path_exists(spec))
        return t2i_error_set("%s: no such folder or dataset (expected fashion-mnist[:train|:test], "
                             "fashion-captions[:train|:test] or a folder)",
                             spec);
    return data_open_folder(ds, spec, C, H, W);
}
