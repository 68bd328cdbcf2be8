/* ckpt.c - checkpoints; see ckpt.h. */
#include "ckpt.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
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

static int load_one(const st_file *f, const char *name, const nn_param *p, float *dst) {
    int64_t shape[NN_MAX_DIMS];
    tensor_shape(p, shape);
    return st_load_f32(f, name, dst, p->ndim, shape);
}

int nn_ckpt_load_parts(const st_file *f, nn_ckpt_part *parts, int nparts) {
    char name[NN_NAME_MAX + 32];
    for (int k = 0; k < nparts; k++) {
        nn_params *ps = parts[k].ps;
        for (int i = 0; i < ps->n; i++) {
            const nn_param *p = &ps->p[i];
            snprintf(name, sizeof name, "%s%s", parts[k].prefix, p->name);
            if (load_one(f, name, p, ps->data + p->offset) != 0) return -1;
        }
        if (parts[k].moments) {
            nn_params_moments(ps);
            for (int i = 0; i < ps->n; i++) {
                const nn_param *p = &ps->p[i];
                if (!p->trainable) continue;
                snprintf(name, sizeof name, "opt_m.%s%s", parts[k].prefix, p->name);
                if (load_one(f, name, p, ps->m + p->offset) != 0) return -1;
                snprintf(name, sizeof name, "opt_v.%s%s", parts[k].prefix, p->name);
                if (load_one(f, name, p, ps->v + p->offset) != 0) return -1;
            }
        }
    }
    return 0;
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
