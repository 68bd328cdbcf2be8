/* safetensors_write.c - writer (atomic, streaming) for safetensors files; see
 * safetensors.h for the API and the format.
 *
 * st_writer_* keep a copy of each tensor; st_writer_save streams the header and
 * the tensors into PATH.tmp.<pid>, fsyncs, renames over PATH and fsyncs the folder, so no
 * second in-memory copy of the file is made. On failure the temporary file is removed and
 * the old PATH is untouched. The header is compact JSON (metadata first, then tensors in
 * insertion order with consecutive data_offsets), strings escaped as Python's
 * json.dumps(ensure_ascii=False) does, padded with spaces to a multiple of 8 bytes so the
 * data block starts 8-byte aligned. Programming errors (duplicate names, bad shapes, an
 * unsupported conversion) are T2I_ASSERT failures.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

/* --------------------------------------------------------------------- writing ---- */

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    uint8_t *bytes;
} st_wtensor;

struct st_writer {
    st_wtensor *t;
    int n, cap;
    char **keys, **vals;
    int n_meta, cap_meta;
};

st_writer *st_writer_new(void) { return t2i_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].bytes);
    }
    for (int i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->vals[i]);
    }
    free(w->t);
    free(w->keys);
    free(w->vals);
    free(w);
}

int st_writer_has(const st_writer *w, const char *name) {
    T2I_ASSERT(w != NULL && name != NULL);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return 1;
    return 0;
}

static st_wtensor *writer_slot(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                               size_t *numel) {
    T2I_ASSERT(w != NULL && name != NULL);
    T2I_ASSERTF((unsigned)dtype < ST_NDTYPES, "dtype %d", (int)dtype);
    T2I_ASSERTF(ndim >= 0 && ndim <= ST_MAX_DIMS, "tensor '%s': ndim %d", name, ndim);
    T2I_ASSERTF(strcmp(name, "__metadata__") != 0, "'__metadata__' is reserved");
    T2I_ASSERTF(!st_writer_has(w, name), "tensor '%s' added twice", name);
    size_t ne = 1;
    for (int i = 0; i < ndim; i++) {
        T2I_ASSERTF(shape[i] >= 0, "tensor '%s': dimension %d is %" PRId64, name, i, shape[i]);
        T2I_ASSERTF(shape[i] == 0 || (uint64_t)shape[i] <= SIZE_MAX / 8 / (ne ? ne : 1),
                    "tensor '%s': shape too large", name);
        ne *= (size_t)shape[i];
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t = t2i_realloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    st_wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = t2i_strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = ne * st_dtype_size(dtype);
    t->bytes = t2i_malloc(t->nbytes ? t->nbytes : 1);
    *numel = ne;
    return t;
}

void st_writer_add_f32(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                       const float *data) {
    T2I_ASSERTF(dtype == ST_F32 || dtype == ST_F16 || dtype == ST_BF16, "tensor '%s': cannot store floats as %s",
                name ? name : "?", (unsigned)dtype < ST_NDTYPES ? st_dtype_name(dtype) : "?");
    size_t n;
    st_wtensor *t = writer_slot(w, name, dtype, ndim, shape, &n);
    T2I_ASSERT(data != NULL || n == 0);
    uint8_t *o = t->bytes;
    if (dtype == ST_F32) {
        for (size_t i = 0; i < n; i++) {
            uint32_t x;
            memcpy(&x, &data[i], 4);
            o[4 * i] = (uint8_t)x, o[4 * i + 1] = (uint8_t)(x >> 8);
            o[4 * i + 2] = (uint8_t)(x >> 16), o[4 * i + 3] = (uint8_t)(x >> 24);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dtype == ST_F16 ? t2i_f32_to_f16(data[i]) : t2i_f32_to_bf16(data[i]);
            o[2 * i] = (uint8_t)h, o[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
}

void st_writer_add_raw(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                       const void *data) {
    size_t n;
    st_wtensor *t = writer_slot(w, name, dtype, ndim, shape, &n);
    T2I_ASSERT(data != NULL || n == 0);
    if (t->nbytes) memcpy(t->bytes, data, t->nbytes);
}

void st_writer_meta(st_writer *w, const char *key, const char *value) {
    T2I_ASSERT(w != NULL && key != NULL && value != NULL);
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->keys[i], key) == 0) { /* a later value replaces the earlier one */
            free(w->vals[i]);
            w->vals[i] = t2i_strdup(value);
            return;
        }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->keys = t2i_realloc(w->keys, (size_t)w->cap_meta * sizeof(char *));
        w->vals = t2i_realloc(w->vals, (size_t)w->cap_meta * sizeof(char *));
    }
    w->keys[w->n_meta] = t2i_strdup(key);
    w->vals[w->n_meta] = t2i_strdup(value);
    w->n_meta++;
}

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
        b->s = t2i_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* JSON string literal, escaped like Python's json.dumps(ensure_ascii=False), so files match
 * the reference writer byte for byte. */
static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static int utf8_ok(const char *s) {
    size_t n = strlen(s);
    return t2i_utf8_invalid_at(s, n) == n;
}

/* The 8-byte length prefix followed by the padded header, in one buffer; total file size
 * in *file_len. Returns -1 (error set, naming `what`) on strings that are not UTF-8. */
static int build_header(const st_writer *w, const char *what, sbuf *b, size_t *file_len) {
    char num[64];
    memset(b, 0, sizeof *b);
    for (int i = 0; i < w->n; i++)
        if (!utf8_ok(w->t[i].name)) return t2i_error_set("%s: tensor name is not valid UTF-8", what);
    for (int i = 0; i < w->n_meta; i++)
        if (!utf8_ok(w->keys[i]) || !utf8_ok(w->vals[i]))
            return t2i_error_set("%s: metadata key or value is not valid UTF-8", what);
    sb_put(b, "\0\0\0\0\0\0\0\0", 8);
    sb_str(b, "{");
    if (w->n_meta) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json(b, w->keys[i]);
            sb_str(b, ":");
            sb_json(b, w->vals[i]);
        }
        sb_str(b, "}");
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        if (i || w->n_meta) sb_str(b, ",");
        sb_json(b, t->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, st_dtype_name(t->dtype));
        sb_str(b, "\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            snprintf(num, sizeof num, "%s%" PRId64, k ? "," : "", t->shape[k]);
            sb_str(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        sb_str(b, num);
        off += t->nbytes;
    }
    sb_str(b, "}");
    while ((b->len - 8) % 8) sb_str(b, " ");
    uint64_t hlen = b->len - 8;
    for (int k = 0; k < 8; k++) b->s[k] = (char)(uint8_t)(hlen >> (8 * k));
    *file_len = b->len + off;
    return 0;
}

int st_writer_to_mem(st_writer *w, uint8_t **out, size_t *len) {
    T2I_ASSERT(w != NULL && out != NULL && len != NULL);
    sbuf b;
    size_t total;
    *out = NULL;
    *len = 0;
    if (build_header(w, "st_writer", &b, &total) != 0) {
        free(b.s);
        return -1;
    }
    uint8_t *m = t2i_malloc(total);
    memcpy(m, b.s, b.len);
    size_t o = b.len;
    for (int i = 0; i < w->n; i++) {
        if (w->t[i].nbytes) memcpy(m + o, w->t[i].bytes, w->t[i].nbytes);
        o += w->t[i].nbytes;
    }
    free(b.s);
    *out = m;
    *len = total;
    return 0;
}

int st_writer_save(st_writer *w, const char *path) {
    T2I_ASSERT(w != NULL && path != NULL);
    sbuf b;
    size_t total;
    if (build_header(w, path, &b, &total) != 0) {
        free(b.s);
        return -1;
    }
    const void **parts = t2i_malloc(((size_t)w->n + 1) * sizeof *parts);
    size_t *lens = t2i_malloc(((size_t)w->n + 1) * sizeof *lens);
    parts[0] = b.s, lens[0] = b.len;
    for (int i = 0; i < w->n; i++) parts[i + 1] = w->t[i].bytes, lens[i + 1] = w->t[i].nbytes;
    int rc = t2i_write_parts_atomic(path, parts, lens, w->n + 1);
    free(parts), free(lens);
    free(b.s);
    return rc;
}
