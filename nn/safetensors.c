/* safetensors.c - reader (mmap + full validation) for safetensors files, and the dtype
 * table; the writer is in safetensors_write.c. API and format: see safetensors.h.
 *
 * Reading: st_open maps the file, st_parse takes a caller's buffer (which must outlive the
 * st_file, since tensors point into it). Both validate the whole header before returning
 * and return 0, or -1 with a one-line error "NAME: problem" (t2i_error_msg) after freeing
 * everything, leaving *f zeroed; st_close on a zeroed, failed or closed st_file is a no-op.
 * Checks, in order: length >= 8; header length within the file and <= 100 MB; header free of
 * NUL bytes and valid UTF-8; valid JSON followed only by whitespace; a JSON object; every
 * entry an object with a string "dtype" of a known type, an array "shape" of at most
 * ST_MAX_DIMS non-negative integers whose element count and byte size fit in size_t, and
 * "data_offsets" of two non-negative integers with begin <= end <= data block size and
 * end - begin == numel * dtype size; a known field given twice is refused (cJSON keeps
 * duplicates, and which one wins would be arbitrary); unknown fields are ignored; no
 * duplicate tensor names; the non-empty tensors tiling the data block exactly (no overlap,
 * no hole, no trailing bytes: the spec's rule, which the reference reader enforces); no
 * escaped NUL (\u0000) in the header; "__metadata__", if present, an object of string
 * values with distinct keys.
 * Tensor data may be unaligned: values are copied out with memcpy.
 *
 * Assumes a little-endian host for the F32 fast path; other dtypes are decoded byte-wise.
 * A mapped file truncated by another process while open raises SIGBUS: not guarded.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* larger headers are refused as absurd */
#define ST_MAX_EXACT 9007199254740992.0             /* 2^53: JSON numbers above are inexact */

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_NDTYPES] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},   [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},     [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_U16] = {"U16", 2},   [ST_U32] = {"U32", 4},
    [ST_U64] = {"U64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d) {
    T2I_ASSERTF((unsigned)d < ST_NDTYPES, "dtype %d", (int)d);
    return dtype_info[d].name;
}

size_t st_dtype_size(st_dtype d) {
    T2I_ASSERTF((unsigned)d < ST_NDTYPES, "dtype %d", (int)d);
    return dtype_info[d].size;
}

int st_dtype_parse(const char *s) {
    if (!s) return -1;
    for (int d = 0; d < ST_NDTYPES; d++)
        if (strcmp(s, dtype_info[d].name) == 0) return d;
    return -1;
}

/* ---------------------------------------------------------------- small helpers ---- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* Names and dtype strings come from untrusted files: messages show them escaped (one line
 * whatever they contain) and truncated. */
static const char *show(const char *s, char *buf, size_t cap) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (o + 8 >= cap) {
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (*p < 0x20 || *p == 0x7f) o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
        else buf[o++] = (char)*p;
    }
    buf[o] = 0;
    return buf;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* A JSON number that is a non-negative integer, exactly representable. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_EXACT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* --------------------------------------------------------------------- reading ---- */

static void free_partial(st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->t);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

void st_close(st_file *f) {
    if (f) free_partial(f);
}

static int parse_entry(st_file *f, const char *name, const cJSON *e, st_tensor *t) {
    char nb[96], sb[200];
    const char *path = f->path;
    if (!cJSON_IsObject(e))
        return t2i_error_set("%s: entry '%s' is not an object", path, show(name, nb, sizeof nb));
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dt
                             : strcmp(c->string, "shape") == 0        ? &shape
                             : strcmp(c->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot) continue; /* unknown fields are tolerated, as other readers do */
        if (*slot)
            return t2i_error_set("%s: tensor '%s': duplicate key \"%s\"", path, show(name, nb, sizeof nb),
                                 c->string);
        *slot = c;
    }
    if (!cJSON_IsString(dt))
        return t2i_error_set("%s: tensor '%s': missing or non-string \"dtype\"", path,
                             show(name, nb, sizeof nb));
    int d = st_dtype_parse(dt->valuestring);
    if (d < 0)
        return t2i_error_set("%s: tensor '%s': unknown dtype '%s'", path, show(name, nb, sizeof nb),
                             show(dt->valuestring, sb, sizeof sb));
    t->dtype = (st_dtype)d;

    if (!cJSON_IsArray(shape))
        return t2i_error_set("%s: tensor '%s': missing or non-array \"shape\"", path,
                             show(name, nb, sizeof nb));
    int ndim = 0;
    int has_zero = 0;
    for (const cJSON *c = shape->child; c; c = c->next, ndim++) {
        if (ndim == ST_MAX_DIMS)
            return t2i_error_set("%s: tensor '%s': shape has more than %d dimensions", path,
                                 show(name, nb, sizeof nb), ST_MAX_DIMS);
        uint64_t v;
        if (!json_uint(c, &v)) {
            const char *why = !cJSON_IsNumber(c)       ? "is not a number"
                              : c->valuedouble < 0     ? "is negative"
                              : c->valuedouble > ST_MAX_EXACT ? "is too large"
                                                       : "is not an integer";
            return t2i_error_set("%s: tensor '%s': shape dimension %d %s", path, show(name, nb, sizeof nb),
                                 ndim, why);
        }
        t->shape[ndim] = (int64_t)v;
        if (v == 0) has_zero = 1;
    }
    t->ndim = ndim;
    /* With a zero dimension the product is 0 whatever the others are; otherwise guard
     * every multiplication, including the final one by the element size. */
    size_t numel = 1;
    if (has_zero) {
        numel = 0;
    } else {
        for (int i = 0; i < ndim; i++) {
            uint64_t v = (uint64_t)t->shape[i];
            if (v > SIZE_MAX / numel) {
                fmt_shape(sb, sizeof sb, ndim, t->shape);
                return t2i_error_set("%s: tensor '%s': shape %s is too large", path,
                                     show(name, nb, sizeof nb), sb);
            }
            numel *= (size_t)v;
        }
    }
    size_t esize = dtype_info[d].size;
    if (numel > SIZE_MAX / esize) {
        fmt_shape(sb, sizeof sb, ndim, t->shape);
        return t2i_error_set("%s: tensor '%s': shape %s is too large", path, show(name, nb, sizeof nb), sb);
    }
    t->numel = numel;

    uint64_t b = 0, en = 0;
    if (!cJSON_IsArray(offs) || !offs->child || !offs->child->next || offs->child->next->next ||
        !cJSON_IsNumber(offs->child) || !cJSON_IsNumber(offs->child->next))
        return t2i_error_set("%s: tensor '%s': \"data_offsets\" must be an array of two integers", path,
                             show(name, nb, sizeof nb));
    double db = offs->child->valuedouble, de = offs->child->next->valuedouble;
    if (!(db >= 0) || !(de >= 0) || db != floor(db) || de != floor(de))
        return t2i_error_set("%s: tensor '%s': \"data_offsets\" must be non-negative integers", path,
                             show(name, nb, sizeof nb));
    if (db > de)
        return t2i_error_set("%s: tensor '%s': data_offsets begin %.0f > end %.0f", path,
                             show(name, nb, sizeof nb), db, de);
    if (!json_uint(offs->child->next, &en) || en > f->data_len)
        return t2i_error_set("%s: tensor '%s': data_offsets end %.0f is beyond the data block (%zu bytes)",
                             path, show(name, nb, sizeof nb), de, f->data_len);
    json_uint(offs->child, &b); /* b <= en, so it is exact too */
    if (en - b != numel * esize) {
        fmt_shape(sb, sizeof sb, ndim, t->shape);
        return t2i_error_set("%s: tensor '%s': data_offsets span %" PRIu64 " bytes but %s x %s needs %zu",
                             path, show(name, nb, sizeof nb), en - b, dtype_info[d].name, sb, numel * esize);
    }
    t->begin = (size_t)b;
    t->end = (size_t)en;
    t->data = f->data + b;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int parse_metadata(st_file *f, const cJSON *m) {
    char nb[96];
    if (!cJSON_IsObject(m)) return t2i_error_set("%s: \"__metadata__\" is not an object", f->path);
    int n = 0;
    for (const cJSON *c = m->child; c; c = c->next) n++;
    f->meta_keys = t2i_calloc((size_t)n, sizeof(char *));
    f->meta_vals = t2i_calloc((size_t)n, sizeof(char *));
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return t2i_error_set("%s: \"__metadata__\" value of '%s' is not a string", f->path,
                                 show(c->string, nb, sizeof nb));
        f->meta_keys[f->n_meta] = t2i_strdup(c->string);
        f->meta_vals[f->n_meta] = t2i_strdup(c->valuestring);
        f->n_meta++;
    }
    /* duplicate keys, by sorting a copy of the key list (a header may hold millions) */
    int rc = 0;
    if (n > 1) {
        char **sorted = t2i_malloc((size_t)n * sizeof(char *));
        memcpy(sorted, f->meta_keys, (size_t)n * sizeof(char *));
        qsort(sorted, (size_t)n, sizeof(char *), cmp_str);
        for (int i = 1; i < n && rc == 0; i++)
            if (strcmp(sorted[i - 1], sorted[i]) == 0)
                rc = t2i_error_set("%s: \"__metadata__\" has duplicate key '%s'", f->path,
                                   show(sorted[i], nb, sizeof nb));
        free(sorted);
    }
    return rc;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_range(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Duplicate names, then the byte ranges: sorted, the non-empty tensors must tile the data
 * block exactly (no overlap, no hole, nothing after the last), as the reference reader asks. */
static int check_tensor_set(st_file *f) {
    char nb[96], nb2[96];
    const st_tensor **idx = t2i_malloc(((size_t)f->n + 1) * sizeof *idx);
    int rc = 0;
    for (int i = 0; i < f->n; i++) idx[i] = &f->t[i];
    qsort(idx, (size_t)f->n, sizeof *idx, cmp_name);
    for (int i = 1; i < f->n && rc == 0; i++)
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0)
            rc = t2i_error_set("%s: duplicate tensor name '%s'", f->path, show(idx[i]->name, nb, sizeof nb));
    qsort(idx, (size_t)f->n, sizeof *idx, cmp_range);
    /* Empty tensors occupy no bytes: they may sit anywhere. */
    const st_tensor *prev = NULL;
    size_t at = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const st_tensor *t = idx[i];
        if (t->begin == t->end) continue;
        if (t->begin < at)
            rc = t2i_error_set("%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", f->path,
                               show(prev->name, nb, sizeof nb), prev->begin, prev->end,
                               show(t->name, nb2, sizeof nb2), t->begin, t->end);
        else if (t->begin > at)
            rc = t2i_error_set("%s: data bytes [%zu, %zu) before tensor '%s' belong to no tensor", f->path, at,
                               t->begin, show(t->name, nb, sizeof nb));
        prev = t;
        at = t->end;
    }
    if (rc == 0 && at != f->data_len)
        rc = t2i_error_set("%s: %zu bytes after the last tensor's data belong to no tensor", f->path,
                           f->data_len - at);
    free(idx);
    return rc;
}

static int parse_json(st_file *f, cJSON *root) {
    if (!cJSON_IsObject(root)) return t2i_error_set("%s: header JSON is not an object", f->path);
    int count = 0, seen_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) count++;
    f->t = t2i_calloc((size_t)count, sizeof(st_tensor));
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (seen_meta++) return t2i_error_set("%s: \"__metadata__\" appears twice", f->path);
            if (parse_metadata(f, c) != 0) return -1;
            continue;
        }
        st_tensor *t = &f->t[f->n];
        if (parse_entry(f, c->string, c, t) != 0) return -1;
        t->name = t2i_strdup(c->string);
        f->n++;
    }
    return check_tensor_set(f);
}

/* Offset of a JSON escape \u0000 in the header (cJSON would cut a name or value there), or
 * len. A backslash is an escape when an odd run of backslashes ends at it. */
static size_t escaped_nul_at(const char *h, size_t len) {
    for (size_t i = 0; i + 6 <= len; i++) {
        if (h[i] != '\\' || (h[i + 1] != 'u' && h[i + 1] != 'U') || memcmp(h + i + 2, "0000", 4) != 0) continue;
        size_t run = 0;
        while (run < i && h[i - 1 - run] == '\\') run++;
        if (run % 2 == 0) return i;
    }
    return len;
}

static int parse_buffer(st_file *f, const uint8_t *buf, size_t len) {
    const char *path = f->path;
    if (len < 8)
        return t2i_error_set("%s: file too short for a safetensors header (%zu bytes, need at least 8)",
                             path, len);
    uint64_t hlen = rd64(buf);
    if (hlen > len - 8)
        return t2i_error_set("%s: header length %" PRIu64 " is beyond the end of the file (%zu bytes)",
                             path, hlen, len);
    if (hlen > ST_MAX_HEADER)
        return t2i_error_set("%s: header length %" PRIu64 " is absurd (over 100 MB)", path, hlen);
    const uint8_t *h = buf + 8;
    const uint8_t *nul = memchr(h, 0, (size_t)hlen);
    if (nul) return t2i_error_set("%s: header contains a NUL byte at offset %zu", path, (size_t)(nul - buf));
    size_t esc = escaped_nul_at((const char *)h, (size_t)hlen);
    if (esc < hlen)
        return t2i_error_set("%s: header escapes a NUL character (\\u0000) at byte offset %zu", path, esc + 8);
    size_t bad = t2i_utf8_invalid_at(h, (size_t)hlen);
    if (bad < hlen)
        return t2i_error_set("%s: header is not valid UTF-8 (byte offset %zu)", path, bad + 8);
    f->data = h + hlen;
    f->data_len = len - 8 - (size_t)hlen;

    /* cJSON wants a NUL-terminated string; the mapped header is not. */
    char *text = t2i_malloc((size_t)hlen + 1);
    memcpy(text, h, (size_t)hlen);
    text[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    int rc;
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        rc = t2i_error_set("%s: header is not valid JSON (error near byte %zu)", path, at + 8);
    } else {
        end += strspn(end, " \t\r\n");
        if (*end)
            rc = t2i_error_set("%s: header has trailing data after the JSON (byte %zu)", path,
                               (size_t)(end - text) + 8);
        else
            rc = parse_json(f, root);
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

int st_parse(st_file *f, const void *buf, size_t len, const char *name) {
    T2I_ASSERT(f != NULL);
    memset(f, 0, sizeof *f);
    f->path = t2i_strdup(name ? name : "<memory>");
    if (parse_buffer(f, len ? buf : (const uint8_t *)"", len) != 0) {
        free_partial(f);
        return -1;
    }
    return 0;
}

int st_open(st_file *f, const char *path) {
    T2I_ASSERT(f != NULL && path != NULL);
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return t2i_error_set("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return t2i_error_set("%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return t2i_error_set("%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    f->path = t2i_strdup(path);
    if (len >= 8) { /* mmap refuses length 0; shorter files fail in parse_buffer anyway */
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free_partial(f);
            return t2i_error_set("%s: cannot map: %s", path, strerror(e));
        }
        f->map = m;
        f->map_len = len;
    }
    close(fd);
    if (parse_buffer(f, f->map ? f->map : (const void *)"", len) != 0) {
        free_partial(f);
        return -1;
    }
    return 0;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* FP8 formats (OCP spec). E4M3 is the "fn" variant: no infinities, S.1111.111 is NaN. */
static float f8_e4m3_to_f32(uint8_t v) {
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float r;
    if (exp == 0xf && man == 7) r = NAN;
    else if (exp == 0) r = ldexpf((float)man, -9);
    else r = ldexpf((float)(8 + man), exp - 10);
    return sign ? -r : r;
}

/* E5M2 is the top byte of an IEEE half. */
static float f8_e5m2_to_f32(uint8_t v) { return t2i_f16_to_f32((uint16_t)(v << 8)); }

int st_read_f32(const st_file *f, const st_tensor *t, float *dst, size_t n) {
    char nb[96];
    if (n != t->numel)
        return t2i_error_set("%s: tensor '%s' has %zu elements, caller expects %zu", f->path,
                             show(t->name, nb, sizeof nb), t->numel, n);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (n) memcpy(dst, p, n * 4);
#else
        for (size_t i = 0; i < n; i++) {
            uint32_t x = rd32(p + 4 * i);
            memcpy(&dst[i], &x, 4);
        }
#endif
        break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) dst[i] = t2i_f16_to_f32(rd16(p + 2 * i));
        break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = t2i_bf16_to_f32(rd16(p + 2 * i));
        break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t x = rd64(p + 8 * i);
            double d;
            memcpy(&d, &x, 8);
            dst[i] = (float)d;
        }
        break;
    case ST_I64:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int64_t)rd64(p + 8 * i);
        break;
    case ST_I32:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int32_t)rd32(p + 4 * i);
        break;
    case ST_I16:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int16_t)rd16(p + 2 * i);
        break;
    case ST_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
        break;
    case ST_U8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
        break;
    case ST_BOOL:
        for (size_t i = 0; i < n; i++) dst[i] = p[i] ? 1.0f : 0.0f;
        break;
    case ST_U16:
        for (size_t i = 0; i < n; i++) dst[i] = (float)rd16(p + 2 * i);
        break;
    case ST_U32:
        for (size_t i = 0; i < n; i++) dst[i] = (float)rd32(p + 4 * i);
        break;
    case ST_U64:
        for (size_t i = 0; i < n; i++) dst[i] = (float)rd64(p + 8 * i);
        break;
    case ST_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = f8_e4m3_to_f32(p[i]);
        break;
    case ST_F8_E5M2:
        for (size_t i = 0; i < n; i++) dst[i] = f8_e5m2_to_f32(p[i]);
        break;
    default: T2I_ASSERTF(0, "dtype %d", (int)t->dtype);
    }
    return 0;
}

int st_load_f32(const st_file *f, const char *name, float *dst, int ndim, const int64_t *shape) {
    char nb[96], want[200], got[200];
    const st_tensor *t = st_find(f, name);
    if (!t) return t2i_error_set("%s: missing tensor '%s'", f->path, show(name, nb, sizeof nb));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        fmt_shape(want, sizeof want, ndim, shape);
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        return t2i_error_set("%s: tensor '%s': expected shape %s, found %s", f->path, show(name, nb, sizeof nb),
                             want, got);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
        return t2i_error_set("%s: tensor '%s' is %s, expected floating point (F32, F16, BF16 or F64)", f->path,
                             show(name, nb, sizeof nb), dtype_info[t->dtype].name);
    return st_read_f32(f, t, dst, t->numel);
}

int st_read_i32(const st_file *f, const st_tensor *t, int32_t *dst, size_t n) {
    char nb[96];
    if (n != t->numel)
        return t2i_error_set("%s: tensor '%s' has %zu elements, caller expects %zu", f->path,
                             show(t->name, nb, sizeof nb), t->numel, n);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        switch (t->dtype) {
        case ST_I64: v = (int64_t)rd64(p + 8 * i); break;
        case ST_I32: v = (int32_t)rd32(p + 4 * i); break;
        case ST_I16: v = (int16_t)rd16(p + 2 * i); break;
        case ST_I8: v = (int8_t)p[i]; break;
        case ST_U8: v = p[i]; break;
        case ST_BOOL: v = p[i] != 0; break;
        case ST_U16: v = rd16(p + 2 * i); break;
        case ST_U32: v = rd32(p + 4 * i); break;
        case ST_U64: {
            uint64_t u = rd64(p + 8 * i);
            v = u > INT32_MAX ? INT64_MAX : (int64_t)u;
            break;
        }
        default:
            return t2i_error_set("%s: tensor '%s' has dtype %s, expected an integer dtype", f->path,
                                 show(t->name, nb, sizeof nb), dtype_info[t->dtype].name);
        }
        if (v < INT32_MIN || v > INT32_MAX)
            return t2i_error_set("%s: tensor '%s': value at index %zu does not fit in int32", f->path,
                                 show(t->name, nb, sizeof nb), i);
        dst[i] = (int32_t)v;
    }
    return 0;
}
