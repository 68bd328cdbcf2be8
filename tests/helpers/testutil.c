/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"

const char *tu_source_dir(void) {
    const char *s = getenv("T2I_SOURCE_DIR");
    return s ? s : T2I_SOURCE_DIR; /* compile-time default: the source tree */
}

char *tu_path(const char *rel) { return t2i_asprintf("%s/tests/%s", tu_source_dir(), rel); }
char *tu_clip_merges(void) { return t2i_asprintf("%s/clip_rerank/vocab/bpe_simple_vocab_16e6.txt.gz", tu_source_dir()); }

char *tu_tmpdir(void) {
    char tmpl[] = "/tmp/t2i-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return t2i_strdup(d);
}

void tu_rmtree(const char *dir) {
    char *cmd = t2i_asprintf("rm -rf '%s'", dir);
    int rc = system(cmd);
    (void)rc;
    free(cmd);
}

int tu_count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

void tu_write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

void tu_put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int tu_contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

int tu_jint(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valueint;
}

const char *tu_jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

float *tu_st_read_f32(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", f->path, name);
    float *x = t2i_malloc((t->numel ? t->numel : 1) * sizeof(float));
    assert_int_equal(st_read_f32(f, t, x, t->numel), 0);
    if (n) *n = t->numel;
    return x;
}

uint32_t tu_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

float *tu_randn(t2i_rng *r, size_t n, float std) {
    float *x = t2i_malloc(n * sizeof(float));
    t2i_rng_fill_normal(r, x, n, 0.0f, std);
    return x;
}

float *tu_zeros(size_t n) { return t2i_calloc(n ? n : 1, sizeof(float)); }

static double loss_of(const float *out, const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

int tu_gradcheck(const char *what, void *ctx, tu_fn fwd, tu_fn bwd, tu_var *vars, int nvars,
                 const float *out, float *dout, size_t nout, float h, float atol, float rtol) {
    t2i_rng rng;
    t2i_rng_seed(&rng, 12345);
    float *r = tu_randn(&rng, nout, 1.0f);
    fwd(ctx);
    memcpy(dout, r, nout * sizeof(float));
    for (int v = 0; v < nvars; v++) memset(vars[v].dx, 0, vars[v].n * sizeof(float));
    bwd(ctx);
    int fails = 0;
    for (int v = 0; v < nvars; v++) {
        tu_var *var = &vars[v];
        size_t count = var->n <= 256 ? var->n : 256;
        double worst_excess = 0.0, worst_a = 0.0, worst_n = 0.0;
        size_t worst_i = 0;
        int vfails = 0;
        for (size_t k = 0; k < count; k++) {
            size_t i = var->n <= 256 ? k : (size_t)t2i_rng_below(&rng, var->n);
            float x0 = var->x[i];
            var->x[i] = x0 + h;
            fwd(ctx);
            double lp = loss_of(out, r, nout);
            var->x[i] = x0 - h;
            fwd(ctx);
            double lm = loss_of(out, r, nout);
            var->x[i] = x0;
            double num = (lp - lm) / (2.0 * h);
            double ana = var->dx[i];
            double excess = fabs(ana - num) - (atol + rtol * fabs(num));
            if (!(excess <= 0)) vfails++;
            if (k == 0 || excess > worst_excess || isnan(excess)) {
                worst_excess = excess;
                worst_a = ana;
                worst_n = num;
                worst_i = i;
            }
        }
        if (vfails)
            fprintf(stderr, "gradcheck %s d%s: %d/%zu elements fail; worst [%zu] analytic %.6g numeric %.6g\n",
                    what, var->name, vfails, count, worst_i, worst_a, worst_n);
        fails += vfails;
    }
    fwd(ctx); /* leave outputs consistent with unperturbed inputs */
    free(r);
    return fails;
}

float tu_max_abs_diff(const float *a, const float *b, size_t n, size_t *where) {
    float m = 0.0f;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || isnan(d)) {
            m = isnan(d) ? INFINITY : d;
            w = i;
        }
    }
    if (where) *where = w;
    return m;
}

void tu_assert_close(const char *what, const float *a, const float *b, size_t n, float atol, float rtol) {
    size_t bad = 0, first = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= atol + rtol * fabs(b[i]))) {
            if (!bad) first = i;
            bad++;
        }
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    }
    if (bad) {
        fprintf(stderr, "%s: %zu/%zu elements differ (first [%zu]: got %.7g want %.7g; max abs diff %.3g)\n",
                what, bad, n, first, a[first], b[first], worst);
    }
    assert_int_equal(bad, 0);
}

static int is_optional(const char *optional, const char *key) {
    size_t n = strlen(key);
    for (const char *p = optional; p && (p = strstr(p, key)) != NULL; p += n)
        if ((p == optional || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return 1;
    return 0;
}

/* read(json of o) must fail naming key; how says what was done to it */
static void expect_refusal(cJSON *o, const char *key, tu_config_reader read, const char *how) {
    char *js = cJSON_PrintUnformatted(o);
    char *quoted = t2i_asprintf("'%s'", key);
    int rc = read(js);
    if (rc != -1 || !strstr(t2i_error_msg(), quoted))
        fail_msg("config with '%s' %s: rc %d, message \"%s\" (json %s)", key, how, rc, rc ? t2i_error_msg() : "", js);
    free(quoted);
    cJSON_free(js);
}

void tu_config_refusals(const char *json, tu_config_reader read, const char *optional) {
    cJSON *good = cJSON_Parse(json);
    assert_non_null(good);
    assert_int_equal(read(json), 0);
    int n = cJSON_GetArraySize(good);
    for (int i = 0; i < n; i++) {
        const char *key = cJSON_GetArrayItem(good, i)->string;
        cJSON *o = cJSON_Duplicate(good, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(o, key);
        if (is_optional(optional, key)) {
            char *js = cJSON_PrintUnformatted(o);
            assert_int_equal(read(js), 0);
            cJSON_free(js);
        } else {
            expect_refusal(o, key, read, "removed");
        }
        cJSON_Delete(o);
        o = cJSON_Duplicate(good, 1);
        int str = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, key));
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, str ? cJSON_CreateNumber(7) : cJSON_CreateString("x"));
        expect_refusal(o, key, read, "of another type");
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, cJSON_CreateNumber(-1e9));
        expect_refusal(o, key, read, "= -1e9");
        cJSON_Delete(o);
    }
    cJSON_Delete(good);
}
