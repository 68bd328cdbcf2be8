/* ckpt.c - checkpoints; see ckpt.h. */
#include "ckpt.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ops.h"

static void tensor_shape(const nn_param *p, int64_t *shape) {
    for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
}

int nn_ckpt_save(const char *path, const nn_ckpt_part *parts, int nparts, const nn_ckpt_meta *meta) {
    st_writer *w = st_writer_new();
    st_writer_meta(w, "format", "t2i");
    st_writer_meta(w, "model", meta->model);
    st_writer_meta(w, "config", meta->config ? meta->config : "{}");
    if (meta->state) st_writer_meta(w, "state", meta->state);
    for (int i = 0; i < meta->n_extra; i++) st_writer_meta(w, meta->extra_keys[i], meta->extra_vals[i]);
    char name[NN_NAME_MAX + 32];
    int64_t shape[NN_MAX_DIMS];
    for (int k = 0; k < nparts; k++) {
        const nn_params *ps = parts[k].ps;
        for (int i = 0; i < ps->n; i++) {
            const nn_param *p = &ps->p[i];
            tensor_shape(p, shape);
            snprintf(name, sizeof name, "%s%s", parts[k].prefix, p->name);
            /* buffers (BatchNorm statistics, SN vectors) stay F32 whatever the dtype */
            st_writer_add_f32(w, name, p->trainable ? meta->dtype : ST_F32, p->ndim, shape, ps->data + p->offset);
        }
        if (parts[k].moments && ps->m) {
            for (int i = 0; i < ps->n; i++) {
                const nn_param *p = &ps->p[i];
                if (!p->trainable) continue;
                tensor_shape(p, shape);
                snprintf(name, sizeof name, "opt_m.%s%s", parts[k].prefix, p->name);
                st_writer_add_f32(w, name, ST_F32, p->ndim, shape, ps->m + p->offset);
                snprintf(name, sizeof name, "opt_v.%s%s", parts[k].prefix, p->name);
                st_writer_add_f32(w, name, ST_F32, p->ndim, shape, ps->v + p->offset);
            }
        }
    }
    int rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

int nn_ckpt_open(st_file *f, const char *path, const char *model) {
    if (st_open(f, path) != 0) return -1;
    const char *fmt = st_meta(f, "format"), *m = st_meta(f, "model");
    if (!fmt || strcmp(fmt, "t2i") != 0 || !m) {
        st_close(f);
        return t2i_error_set("%s: not a t2i checkpoint (no \"format\": \"t2i\" / \"model\" in its metadata)", path);
    }
    if (model && strcmp(m, model) != 0) {
        t2i_error_set("%s: is a '%s' checkpoint, expected '%s'", path, m, model); /* before m is unmapped */
        st_close(f);
        return -1;
    }
    return 0;
}

/* Loads one tensor and checks its values: NaN or infinity anywhere (a diverged or damaged
 * run) would only show later as black images or a "perfect" score; Adam's second moments
 * (min_value 0) are never negative. */
static int load_one(const st_file *f, const char *name, const nn_param *p, float *dst, float min_value) {
    int64_t shape[NN_MAX_DIMS];
    tensor_shape(p, shape);
    if (st_load_f32(f, name, dst, p->ndim, shape) != 0) return -1;
    size_t i = t2i_first_nonfinite(dst, p->numel);
    if (i < p->numel)
        return t2i_error_set("%s: tensor '%s' holds %s at element %zu", f->path, name,
                             isnan(dst[i]) ? "NaN" : "an infinity", i);
    for (i = 0; i < p->numel; i++)
        if (dst[i] < min_value)
            return t2i_error_set("%s: tensor '%s' holds a negative second moment at element %zu", f->path, name, i);
    return 0;
}

int nn_ckpt_load_parts(const st_file *f, nn_ckpt_part *parts, int nparts) {
    char name[NN_NAME_MAX + 32];
    for (int k = 0; k < nparts; k++) {
        nn_params *ps = parts[k].ps;
        for (int i = 0; i < ps->n; i++) {
            const nn_param *p = &ps->p[i];
            snprintf(name, sizeof name, "%s%s", parts[k].prefix, p->name);
            if (load_one(f, name, p, ps->data + p->offset, -FLT_MAX) != 0) return -1;
        }
        if (parts[k].moments) {
            nn_params_moments(ps);
            for (int i = 0; i < ps->n; i++) {
                const nn_param *p = &ps->p[i];
                if (!p->trainable) continue;
                snprintf(name, sizeof name, "opt_m.%s%s", parts[k].prefix, p->name);
                if (load_one(f, name, p, ps->m + p->offset, -FLT_MAX) != 0) return -1;
                snprintf(name, sizeof name, "opt_v.%s%s", parts[k].prefix, p->name);
                if (load_one(f, name, p, ps->v + p->offset, 0.0f) != 0) return -1;
            }
        }
    }
    return 0;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int nn_ckpt_check_unused(const st_file *f, const nn_ckpt_part *parts, int nparts) {
    size_t cap = 0, n = 0;
    for (int k = 0; k < nparts; k++) cap += 3 * (size_t)parts[k].ps->n;
    char **want = t2i_malloc((cap + 1) * sizeof(char *));
    for (int k = 0; k < nparts; k++)
        for (int i = 0; i < parts[k].ps->n; i++) {
            const char *pre = parts[k].prefix, *pn = parts[k].ps->p[i].name;
            want[n++] = t2i_asprintf("%s%s", pre, pn);
            want[n++] = t2i_asprintf("opt_m.%s%s", pre, pn);
            want[n++] = t2i_asprintf("opt_v.%s%s", pre, pn);
        }
    qsort(want, n, sizeof *want, cmp_cstr);
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const char *key = f->t[i].name;
        if (!bsearch(&key, want, n, sizeof *want, cmp_cstr))
            rc = t2i_error_set("%s: tensor '%s' is not part of the model its config describes: the file and its "
                               "config disagree", f->path, key);
    }
    for (size_t i = 0; i < n; i++) free(want[i]);
    free(want);
    return rc;
}

void nn_rng_to_json(const t2i_rng *r, char *buf, size_t n) {
    uint32_t gbits;
    memcpy(&gbits, &r->gauss, 4);
    snprintf(buf, n, "[\"%016" PRIx64 "\",\"%016" PRIx64 "\",\"%016" PRIx64 "\",\"%016" PRIx64 "\",\"%d\",\"%08" PRIx32 "\"]",
             r->s[0], r->s[1], r->s[2], r->s[3], r->has_gauss, gbits);
}

int nn_rng_from_json(t2i_rng *r, const char *json) {
    cJSON *a = cJSON_Parse(json);
    if (!a || !cJSON_IsArray(a) || cJSON_GetArraySize(a) != 6) {
        cJSON_Delete(a);
        return t2i_error_set("RNG state is not an array of 6 strings");
    }
    for (int i = 0; i < 6; i++) {
        cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(e)) {
            cJSON_Delete(a);
            return t2i_error_set("RNG state entry %d is not a string", i);
        }
        char *end;
        unsigned long long v = strtoull(e->valuestring, &end, 16);
        if (*end) {
            cJSON_Delete(a);
            return t2i_error_set("RNG state entry %d is not hexadecimal", i);
        }
        if (i < 4) r->s[i] = v;
        else if (i == 4) r->has_gauss = (int)v;
        else {
            uint32_t bits = (uint32_t)v;
            memcpy(&r->gauss, &bits, 4);
        }
    }
    cJSON_Delete(a);
    /* what nn_rng_to_json writes: a flag (read back as hex, so "17" would become 23) and a
     * finite cached value */
    if (r->has_gauss != 0 && r->has_gauss != 1) return t2i_error_set("RNG state entry 4 is not 0 or 1");
    if (!isfinite(r->gauss)) return t2i_error_set("RNG state entry 5 is not a finite float");
    return 0;
}

char *nn_json_take(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = t2i_strdup(s ? s : "null");
    cJSON_free(s);
    return r;
}

/* ---- training state tables ---- */

double nn_float_json(float f) {
    for (int prec = 6; prec < 9; prec++) {
        char b[32];
        snprintf(b, sizeof b, "%.*g", prec, (double)f);
        double d = strtod(b, NULL);
        if ((float)d == f) return d;
    }
    return f;
}

static int field_check(const nn_field *f, const char *what, int nonneg);

static cJSON *fields_to_json(const nn_field *f, int n) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        const void *p = f[i].p;
        switch (f[i].type) {
        case NN_FIELD_LONG: cJSON_AddNumberToObject(o, f[i].key, (double)*(const long *)p); break;
        case NN_FIELD_INT: cJSON_AddNumberToObject(o, f[i].key, *(const int *)p); break;
        case NN_FIELD_FLOAT: cJSON_AddNumberToObject(o, f[i].key, nn_float_json(*(const float *)p)); break;
        case NN_FIELD_BOOL: cJSON_AddBoolToObject(o, f[i].key, *(const int *)p != 0); break;
        case NN_FIELD_SEED: {
            char b[32];
            snprintf(b, sizeof b, "%" PRIu64, *(const uint64_t *)p);
            cJSON_AddStringToObject(o, f[i].key, b);
            break;
        }
        case NN_FIELD_STR: cJSON_AddStringToObject(o, f[i].key, (const char *)p); break;
        case NN_FIELD_RNG: {
            char b[256];
            nn_rng_to_json((const t2i_rng *)p, b, sizeof b);
            cJSON_AddItemToObject(o, f[i].key, cJSON_Parse(b));
            break;
        }
        case NN_FIELD_ENUM:
            T2I_ASSERTF(field_check(&f[i], "", 0) == 0, "%s", t2i_error_msg());
            cJSON_AddStringToObject(o, f[i].key, f[i].names[*(const int *)p]);
            break;
        case NN_FIELD_ACT: cJSON_AddStringToObject(o, f[i].key, nn_act_name(*(const nn_act *)p)); break;
        case NN_FIELD_FLOATS:
            cJSON_AddItemToObject(o, f[i].key, cJSON_CreateFloatArray((const float *)p, *f[i].count));
            break;
        }
    }
    return o;
}

static int name_index(const char *const *names, const char *s) {
    for (int k = 0; names[k]; k++)
        if (strcmp(names[k], s) == 0) return k;
    return -1;
}

/* "a, b or c" for messages */
static void names_list(const char *const *names, char *buf, size_t n) {
    buf[0] = 0;
    for (int k = 0; names[k]; k++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", k == 0 ? "" : names[k + 1] ? ", " : " or ", names[k]);
    }
}

/* One field's value against its declaration: a range, a name in the list, an array size. */
static int field_check(const nn_field *f, const char *what, int nonneg) {
    char list[256];
    switch (f->type) {
    case NN_FIELD_ENUM: {
        int v = *(const int *)f->p, k = 0;
        while (f->names[k]) k++;
        if (v < 0 || v >= k) return t2i_error_set("%s: '%s' = %d names no value", what, f->key, v);
        return 0;
    }
    case NN_FIELD_ACT: {
        int v = *(const int *)f->p;
        if (v < 0 || v > NN_ACT_SIGMOID) return t2i_error_set("%s: '%s' = %d is not an activation", what, f->key, v);
        return 0;
    }
    case NN_FIELD_STR:
        if (f->names && name_index(f->names, (const char *)f->p) < 0) {
            char shown[96]; /* the value came from a file: one line, escaped, bounded */
            names_list(f->names, list, sizeof list);
            return t2i_error_set("%s: '%s' is '%s', not %s", what, f->key,
                                 t2i_text_show((const char *)f->p, 64, shown, sizeof shown), list);
        }
        return 0;
    case NN_FIELD_FLOATS: {
        int c = *f->count;
        if (c < 0 || (size_t)c > f->cap)
            return t2i_error_set("%s: '%s' has %d values, at most %zu fit", what, f->key, c, f->cap);
        size_t i = t2i_first_nonfinite((const float *)f->p, (size_t)c);
        if (i < (size_t)c) return t2i_error_set("%s: '%s'[%zu] is not a finite number", what, f->key, i);
        return 0;
    }
    case NN_FIELD_LONG:
    case NN_FIELD_INT:
    case NN_FIELD_FLOAT: break;
    default: return 0;
    }
    if (!(f->has_range || nonneg)) return 0;
    double x = f->type == NN_FIELD_LONG  ? (double)*(const long *)f->p
               : f->type == NN_FIELD_INT ? (double)*(const int *)f->p
                                         : (double)*(const float *)f->p;
    if (!f->has_range) {
        if (!(x >= 0)) return t2i_error_set("%s: '%s' = %g is negative", what, f->key, x);
        return 0;
    }
    /* a float field is compared with its range rounded to float, as it was stored */
    int fl = f->type == NN_FIELD_FLOAT;
    double lo = fl ? (double)(float)f->lo : f->lo, hi = fl ? (double)(float)f->hi : f->hi;
    if (!(x >= lo && x <= hi)) return t2i_error_set("%s: '%s' = %g is outside [%g, %g]", what, f->key, x, f->lo, f->hi);
    return 0;
}

/* The absent field's default; 0 when it has none. */
static int field_default(const nn_field *f) {
    if (!f->has_def) return 0;
    switch (f->type) {
    case NN_FIELD_INT:
    case NN_FIELD_BOOL:
    case NN_FIELD_ENUM: *(int *)f->p = (int)f->def; return 1;
    case NN_FIELD_FLOAT: *(float *)f->p = (float)f->def; return 1;
    case NN_FIELD_STR: ((char *)f->p)[0] = 0; return 1;
    case NN_FIELD_FLOATS: *f->count = 0; return 1;
    default: return 0;
    }
}

/* Reads one present field; 0, or -1 with the type it should have had in *want. Longs and
 * ints must be whole numbers within their type (a damaged file must not wrap). */
static int field_read(const nn_field *f, const cJSON *v, const char **want) {
    void *p = f->p;
    switch (f->type) {
    case NN_FIELD_LONG:
    case NN_FIELD_INT: {
        double lim = f->type == NN_FIELD_INT ? 2147483647.0 : 9007199254740992.0;
        *want = "an integer";
        /* the range first: converting a double outside long long is undefined */
        if (!(cJSON_IsNumber(v) && v->valuedouble >= -lim && v->valuedouble <= lim &&
              v->valuedouble == (double)(long long)v->valuedouble))
            return -1;
        if (f->type == NN_FIELD_LONG) *(long *)p = (long)v->valuedouble;
        else *(int *)p = (int)v->valuedouble;
        return 0;
    }
    case NN_FIELD_FLOAT:
        *want = "a number";
        if (!cJSON_IsNumber(v)) return -1;
        *want = "a number within float range"; /* 1e39 would be read as inf and written as null */
        if (!isfinite((float)v->valuedouble)) return -1;
        *(float *)p = (float)v->valuedouble;
        return 0;
    case NN_FIELD_BOOL:
        *want = "true or false";
        if (!cJSON_IsBool(v)) return -1;
        *(int *)p = cJSON_IsTrue(v);
        return 0;
    case NN_FIELD_SEED: {
        char *end = NULL;
        *want = "a seed (a decimal string)";
        if (!(cJSON_IsString(v) && v->valuestring[0] >= '0' && v->valuestring[0] <= '9')) return -1;
        *(uint64_t *)p = strtoull(v->valuestring, &end, 10);
        return *end == 0 ? 0 : -1;
    }
    case NN_FIELD_STR:
        *want = "a string that fits its buffer";
        if (!(cJSON_IsString(v) && strlen(v->valuestring) < f->cap)) return -1;
        strcpy((char *)p, v->valuestring);
        return 0;
    case NN_FIELD_RNG: {
        char *s = cJSON_PrintUnformatted(v);
        int ok = s && nn_rng_from_json((t2i_rng *)p, s) == 0;
        cJSON_free(s);
        *want = "an RNG state";
        return ok ? 0 : -1;
    }
    case NN_FIELD_ENUM:
    case NN_FIELD_ACT: {
        int k = !cJSON_IsString(v) ? -1 : f->type == NN_FIELD_ENUM ? name_index(f->names, v->valuestring)
                                                                    : nn_act_parse(v->valuestring);
        *want = f->type == NN_FIELD_ENUM ? "one of its names" : "an activation's name";
        if (k < 0) return -1;
        *(int *)p = k;
        return 0;
    }
    case NN_FIELD_FLOATS: {
        *want = "an array of numbers that fits";
        if (!cJSON_IsArray(v) || (size_t)cJSON_GetArraySize(v) > f->cap) return -1;
        int k = 0;
        for (const cJSON *x = v->child; x; x = x->next, k++) {
            if (!cJSON_IsNumber(x)) return -1;
            ((float *)p)[k] = (float)x->valuedouble;
        }
        *f->count = k;
        return 0;
    }
    }
    return -1;
}

/* With nonneg, numbers must not be negative (state counters); keep_absent: see
 * nn_fields_from_json. */
static int fields_from_json(const cJSON *o, const nn_field *f, int n, const char *what, int nonneg, int keep_absent) {
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f[i].key);
        const char *want = "";
        if (!v) {
            if (keep_absent || field_default(&f[i])) continue;
            return t2i_error_set("%s: '%s' missing", what, f[i].key);
        }
        if (field_read(&f[i], v, &want) != 0) return t2i_error_set("%s: '%s' is not %s", what, f[i].key, want);
        if (field_check(&f[i], what, nonneg) != 0) return -1;
    }
    return 0;
}

int nn_fields_check(const nn_field *f, int n, const char *what) {
    for (int i = 0; i < n; i++)
        if (field_check(&f[i], what, 0) != 0) return -1;
    return 0;
}

int nn_fields_from_json(const char *json, const nn_field *f, int n, const char *what, int keep_absent) {
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    int rc = cJSON_IsObject(j) ? fields_from_json(j, f, n, what, 0, keep_absent)
                               : t2i_error_set("%s is not a JSON object", what);
    cJSON_Delete(j);
    return rc;
}

char *nn_fields_to_json(const nn_field *f, int n) { return nn_json_take(fields_to_json(f, n)); }

char *nn_state_to_json(const nn_field *state, int nstate, const nn_field *opts, int nopts) {
    cJSON *j = fields_to_json(state, nstate);
    cJSON_AddItemToObject(j, "train", fields_to_json(opts, nopts));
    return nn_json_take(j);
}

int nn_state_from_json(const char *json, const nn_field *state, int nstate, const nn_field *opts, int nopts) {
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    int rc;
    if (!cJSON_IsObject(j)) rc = t2i_error_set("training state is not a JSON object");
    else if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "train")))
        rc = t2i_error_set("training state: no training options");
    else {
        rc = fields_from_json(j, state, nstate, "training state", 1, 0);
        if (rc == 0)
            rc = fields_from_json(cJSON_GetObjectItemCaseSensitive(j, "train"), opts, nopts, "training state", 0, 0);
    }
    cJSON_Delete(j);
    return rc;
}
