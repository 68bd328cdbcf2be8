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
        }
    }
    return o;
}

/* Longs and ints must be whole numbers within their type (a damaged state must not wrap);
 * with nonneg, numbers must not be negative; fields with a range must be inside it. */
static int fields_from_json(const cJSON *o, const nn_field *f, int n, int nonneg) {
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f[i].key);
        void *p = f[i].p;
        int ok = 0;
        if (!v && f[i].has_def && (f[i].type == NN_FIELD_INT || f[i].type == NN_FIELD_BOOL)) {
            *(int *)p = (int)f[i].def;
            continue;
        }
        switch (f[i].type) {
        case NN_FIELD_LONG:
        case NN_FIELD_INT: {
            double lim = f[i].type == NN_FIELD_INT ? 2147483647.0 : 9007199254740992.0;
            ok = cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble && v->valuedouble >= -lim &&
                 v->valuedouble <= lim;
            if (ok && f[i].type == NN_FIELD_LONG) *(long *)p = (long)v->valuedouble;
            else if (ok) *(int *)p = (int)v->valuedouble;
            break;
        }
        case NN_FIELD_FLOAT:
            ok = cJSON_IsNumber(v);
            if (ok) *(float *)p = (float)v->valuedouble;
            break;
        case NN_FIELD_BOOL:
            ok = cJSON_IsBool(v);
            if (ok) *(int *)p = cJSON_IsTrue(v);
            break;
        case NN_FIELD_SEED: {
            char *end = NULL;
            ok = cJSON_IsString(v) && v->valuestring[0] >= '0' && v->valuestring[0] <= '9';
            if (ok) *(uint64_t *)p = strtoull(v->valuestring, &end, 10), ok = *end == 0;
            break;
        }
        case NN_FIELD_STR:
            ok = cJSON_IsString(v) && strlen(v->valuestring) < f[i].cap;
            if (ok) strcpy((char *)p, v->valuestring);
            break;
        case NN_FIELD_RNG: {
            char *s = v ? cJSON_PrintUnformatted(v) : NULL;
            ok = s && nn_rng_from_json((t2i_rng *)p, s) == 0;
            cJSON_free(s);
            break;
        }
        }
        if (!ok) return t2i_error_set("training state: '%s' missing or bad", f[i].key);
        int num = f[i].type == NN_FIELD_LONG || f[i].type == NN_FIELD_INT || f[i].type == NN_FIELD_FLOAT;
        if (!num || !(f[i].has_range || nonneg)) continue;
        double x = f[i].type == NN_FIELD_LONG  ? (double)*(long *)p
                   : f[i].type == NN_FIELD_INT ? (double)*(int *)p
                                               : (double)*(float *)p;
        if (!f[i].has_range) {
            if (!(x >= 0)) return t2i_error_set("training state: '%s' = %g is negative", f[i].key, x);
            continue;
        }
        /* a float field is compared with its range rounded to float, as it was stored */
        int fl = f[i].type == NN_FIELD_FLOAT;
        double lo = fl ? (double)(float)f[i].lo : f[i].lo, hi = fl ? (double)(float)f[i].hi : f[i].hi;
        if (!(x >= lo && x <= hi))
            return t2i_error_set("training state: '%s' = %g is outside [%g, %g]", f[i].key, x, f[i].lo, f[i].hi);
    }
    return 0;
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
        rc = fields_from_json(j, state, nstate, 1);
        if (rc == 0) rc = fields_from_json(cJSON_GetObjectItemCaseSensitive(j, "train"), opts, nopts, 0);
    }
    cJSON_Delete(j);
    return rc;
}
