/* request.c - parsing and validation of `t2i serve`'s JSON bodies (see request.h). */
#include "request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static int fail(char *err, size_t cap, const char *fmt, ...) T2I_PRINTF(3, 4);
static int fail(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* The body as a JSON object, or NULL with the error. */
static cJSON *parse_object(const char *body, size_t len, char *err, size_t cap) {
    if (len == 0) return fail(err, cap, "the request body is empty; send a JSON object"), NULL;
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) return fail(err, cap, "the request body is not valid JSON"), NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return fail(err, cap, "the request body must be a JSON object"), NULL;
    }
    return j;
}

/* Shows a JSON value in a message (at most ~40 bytes). */
static void show_value(const cJSON *v, char *out, size_t cap) {
    if (cJSON_IsString(v)) {
        char s[64];
        snprintf(out, cap, "\"%s\"", t2i_text_show(v->valuestring, 32, s, sizeof s));
    } else if (cJSON_IsNumber(v)) {
        snprintf(out, cap, "%.17g", v->valuedouble);
    } else {
        snprintf(out, cap, "%s", cJSON_IsBool(v) ? (cJSON_IsTrue(v) ? "true" : "false")
                                 : cJSON_IsNull(v) ? "null" : cJSON_IsArray(v) ? "an array" : "an object");
    }
}

/* Integer field in [lo, hi] (absent: *out unchanged). */
static int get_int(const cJSON *j, const char *name, long long lo, long long hi, long long *out, char *err,
                   size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!v) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) {
        char s[80];
        show_value(v, s, sizeof s);
        return fail(err, cap, "%s: must be an integer from %lld to %lld, not %s", name, lo, hi, s);
    }
    *out = (long long)d;
    return 0;
}

static int get_num(const cJSON *j, const char *name, double lo, double hi, float *out, char *err, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!v) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi)) {
        char s[80];
        show_value(v, s, sizeof s);
        return fail(err, cap, "%s: must be a number from %g to %g, not %s", name, lo, hi, s);
    }
    *out = (float)d;
    return 0;
}

/* A text field: a string of 1..max bytes, valid UTF-8, no control characters. */
static int check_text(const char *what, const char *s, size_t max, char *err, size_t cap) {
    size_t n = strlen(s), at;
    if (n > max) return fail(err, cap, "%s: %zu bytes, at most %zu", what, n, max);
    const char *why = t2i_text_problem(s, &at);
    if (why == T2I_TEXT_EMPTY) return fail(err, cap, "%s: is empty", what);
    if (why) return fail(err, cap, "%s: %s (byte %zu)", what, why, at);
    return 0;
}

static int get_text(const cJSON *j, const char *name, int required, const char **out, char *err, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!v) return required ? fail(err, cap, "%s: missing (a string is required)", name) : 0;
    if (!cJSON_IsString(v)) {
        char s[80];
        show_value(v, s, sizeof s);
        return fail(err, cap, "%s: must be a string, not %s", name, s);
    }
    *out = v->valuestring;
    return 0;
}

void serve_gen_req_free(serve_gen_req *q) {
    free(q->prompt);
    free(q->image.data), free(q->mask.data);
    memset(q, 0, sizeof *q);
}

static int get_blob(const cJSON *v, const char *what, serve_blob *b, char *err, size_t cap);

/* The image-prompt fields of a generation (see request.h). */
static int get_image_prompt(const cJSON *j, serve_gen_req *q, char *err, size_t cap) {
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image"), *mask = cJSON_GetObjectItemCaseSensitive(j, "mask");
    const cJSON *var = cJSON_GetObjectItemCaseSensitive(j, "variations");
    long long passes = q->sample.passes = 2;
    q->sample.keep_prob = 0.5f;
    if (get_num(j, "keep_rows", 0, 4096, &q->keep_rows, err, cap) || get_num(j, "keep_cols", 0, 4096, &q->keep_cols, err, cap) ||
        get_int(j, "passes", 0, 100, &passes, err, cap) ||
        get_num(j, "variation_keep", 1e-6, 1 - 1e-6, &q->sample.keep_prob, err, cap))
        return -1;
    q->sample.passes = (int)passes;
    if (var && !cJSON_IsBool(var) && !cJSON_IsNull(var)) {
        char s[80];
        show_value(var, s, sizeof s);
        return fail(err, cap, "variations: must be true or false, not %s", s);
    }
    q->variations = var && cJSON_IsTrue(var);
    int lines = q->keep_rows != 0.0f || q->keep_cols != 0.0f, have_mask = mask && !cJSON_IsNull(mask);
    int have_img = img && !cJSON_IsNull(img);
    if (!have_img) {
        if (lines || have_mask || q->variations)
            return fail(err, cap, "%s: needs \"image\"", q->variations ? "variations" : have_mask ? "mask" : "keep_rows");
        q->sample.passes = 0, q->sample.keep_prob = 0.0f;
        return 0;
    }
    if (lines + have_mask + q->variations != 1)
        return fail(err, cap, "image: give exactly one of keep_rows/keep_cols, mask and variations");
    if (get_blob(img, "image", &q->image, err, cap)) return -1;
    if (have_mask && get_blob(mask, "mask", &q->mask, err, cap)) return -1;
    if (!have_mask) q->sample.passes = 0;
    if (!q->variations) q->sample.keep_prob = 0.0f;
    return 0;
}

int serve_parse_gen(const char *body, size_t len, const serve_limits *lim, int for_job, serve_gen_req *q, char *err,
                    size_t cap) {
    memset(q, 0, sizeof *q);
    cJSON *j = parse_object(body, len, err, cap);
    if (!j) return -1;
    int rc = -1;
    const char *prompt = NULL, *gen = NULL, *size = NULL, *fmt = NULL;
    long long n = for_job ? 32 : 1, cand = 512, seed = 1, top_k = lim->sample.top_k;
    if (cand > lim->max_candidates) cand = lim->max_candidates;
    q->sample = lim->sample;
    q->upscale = -1;
    if (get_text(j, "prompt", 1, &prompt, err, cap) || check_text("prompt", prompt, SERVE_MAX_PROMPT, err, cap))
        goto done;
    if (get_int(j, "candidates", 1, lim->max_candidates, &cand, err, cap) ||
        get_int(j, "n", 1, SERVE_MAX_N, &n, err, cap) || get_int(j, "seed", 0, 1LL << 53, &seed, err, cap) ||
        get_int(j, "top_k", 0, 1 << 20, &top_k, err, cap) ||
        get_num(j, "temperature", 1e-3, 100, &q->sample.temperature, err, cap) ||
        get_num(j, "top_p", 1e-6, 1, &q->sample.top_p, err, cap) ||
        get_num(j, "cfg", 0, 100, &q->sample.cfg, err, cap))
        goto done;
    q->sample.top_k = (int)top_k;
    if (dalle_sample_check(&q->sample, 1 << 20) != 0) {
        fail(err, cap, "%s", t2i_error_msg());
        goto done;
    }
    if (get_text(j, "generator", 0, &gen, err, cap)) goto done;
    if (!gen || strcmp(gen, "auto") == 0) q->generator = SERVE_GEN_AUTO;
    else if (strcmp(gen, "dalle") == 0) q->generator = SERVE_GEN_DALLE;
    else if (strcmp(gen, "gan") == 0) q->generator = SERVE_GEN_GAN;
    else if (strcmp(gen, "both") == 0) q->generator = SERVE_GEN_BOTH;
    else {
        char s[64];
        fail(err, cap, "generator: must be \"auto\", \"dalle\", \"gan\" or \"both\", not \"%s\"",
             t2i_text_show(gen, 32, s, sizeof s));
        goto done;
    }
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(j, "upscale");
    if (up && !cJSON_IsBool(up) && !cJSON_IsNull(up)) {
        char s[80];
        show_value(up, s, sizeof s);
        fail(err, cap, "upscale: must be true or false, not %s", s);
        goto done;
    }
    if (up && cJSON_IsBool(up)) q->upscale = cJSON_IsTrue(up);
    if (get_text(j, "size", 0, &size, err, cap)) goto done;
    if (size) {
        int w = 0, h = 0, used = 0;
        if (sscanf(size, "%5dx%5d%n", &w, &h, &used) != 2 || (size_t)used != strlen(size) || w < 1 || h < 1) {
            char s[64];
            fail(err, cap, "size: must be \"WIDTHxHEIGHT\" such as \"32x32\", not \"%s\"",
                 t2i_text_show(size, 32, s, sizeof s));
            goto done;
        }
        q->size_w = w, q->size_h = h;
    }
    if (get_text(j, "response_format", 0, &fmt, err, cap)) goto done;
    if (fmt && strcmp(fmt, "url") != 0 && strcmp(fmt, "b64_json") != 0) {
        char s[64];
        fail(err, cap, "response_format: must be \"b64_json\" or \"url\", not \"%s\"", t2i_text_show(fmt, 32, s, sizeof s));
        goto done;
    }
    q->response_url = fmt && strcmp(fmt, "url") == 0;
    if (get_image_prompt(j, q, err, cap) != 0) {
        free(q->image.data), free(q->mask.data);
        q->image.data = q->mask.data = NULL;
        goto done;
    }
    q->n = (int)n, q->candidates = (int)cand, q->seed = (uint64_t)seed;
    q->prompt = t2i_strdup(prompt);
    rc = 0;
done:
    cJSON_Delete(j);
    return rc;
}

/* A base64 image field; what names it in messages ("images[3]"). */
static int get_blob(const cJSON *v, const char *what, serve_blob *b, char *err, size_t cap) {
    if (!cJSON_IsString(v)) {
        char s[80];
        show_value(v, s, sizeof s);
        return fail(err, cap, "%s: must be a base64 string (PNG or JPEG), not %s", what, s);
    }
    if (!*v->valuestring) return fail(err, cap, "%s: is empty", what);
    if (serve_base64_decode(v->valuestring, strlen(v->valuestring), &b->data, &b->len) != 0)
        return fail(err, cap, "%s: is not valid base64", what);
    return 0;
}

void serve_rerank_req_free(serve_rerank_req *q) {
    free(q->prompt);
    for (int i = 0; i < q->n; i++) free(q->images[i].data);
    free(q->images);
    memset(q, 0, sizeof *q);
}

int serve_parse_rerank(const char *body, size_t len, const serve_limits *lim, serve_rerank_req *q, char *err,
                       size_t cap) {
    memset(q, 0, sizeof *q);
    cJSON *j = parse_object(body, len, err, cap);
    if (!j) return -1;
    int rc = -1;
    const char *prompt = NULL;
    if (get_text(j, "prompt", 1, &prompt, err, cap) || check_text("prompt", prompt, SERVE_MAX_PROMPT, err, cap))
        goto done;
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(j, "images");
    if (!imgs) {
        fail(err, cap, "images: missing (an array of base64 images is required)");
        goto done;
    }
    int n = cJSON_IsArray(imgs) ? cJSON_GetArraySize(imgs) : -1;
    if (n < 1 || n > lim->max_images) {
        fail(err, cap, "images: must be an array of 1 to %d base64 images%s", lim->max_images,
             n < 0 ? "" : n == 0 ? ", not empty" : ", not more");
        goto done;
    }
    q->images = t2i_calloc((size_t)n, sizeof *q->images);
    const cJSON *v;
    cJSON_ArrayForEach(v, imgs) {
        char what[32];
        snprintf(what, sizeof what, "images[%d]", q->n);
        if (get_blob(v, what, &q->images[q->n], err, cap) != 0) goto done;
        q->n++;
    }
    q->prompt = t2i_strdup(prompt);
    rc = 0;
done:
    cJSON_Delete(j);
    if (rc) serve_rerank_req_free(q);
    return rc;
}

void serve_classify_req_free(serve_classify_req *q) {
    free(q->image.data);
    for (int i = 0; i < q->n; i++) free(q->labels[i]);
    free(q->labels);
    memset(q, 0, sizeof *q);
}

int serve_parse_classify(const char *body, size_t len, serve_classify_req *q, char *err, size_t cap) {
    memset(q, 0, sizeof *q);
    cJSON *j = parse_object(body, len, err, cap);
    if (!j) return -1;
    int rc = -1;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(j, "labels");
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image");
    if (!img) {
        fail(err, cap, "image: missing (a base64 PNG or JPEG is required)");
        goto done;
    }
    if (!labels) {
        fail(err, cap, "labels: missing (an array of at least 2 strings is required)");
        goto done;
    }
    int n = cJSON_IsArray(labels) ? cJSON_GetArraySize(labels) : -1;
    if (n < 2 || n > SERVE_MAX_LABELS) {
        fail(err, cap, "labels: must be an array of 2 to %d strings", SERVE_MAX_LABELS);
        goto done;
    }
    q->labels = t2i_calloc((size_t)n, sizeof(char *));
    const cJSON *v;
    cJSON_ArrayForEach(v, labels) {
        char what[32];
        snprintf(what, sizeof what, "labels[%d]", q->n);
        if (!cJSON_IsString(v)) {
            char s[80];
            show_value(v, s, sizeof s);
            fail(err, cap, "%s: must be a string, not %s", what, s);
            goto done;
        }
        if (check_text(what, v->valuestring, SERVE_MAX_PROMPT, err, cap) != 0) goto done;
        q->labels[q->n++] = t2i_strdup(v->valuestring);
    }
    if (get_blob(img, "image", &q->image, err, cap) != 0) goto done;
    rc = 0;
done:
    cJSON_Delete(j);
    if (rc) serve_classify_req_free(q);
    return rc;
}

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int serve_base64_decode(const char *s, size_t n, uint8_t **out, size_t *len) {
    *out = NULL, *len = 0;
    if (n > 5 && memcmp(s, "data:", 5) == 0) { /* a data URL as a browser's FileReader gives it */
        const char *comma = memchr(s, ',', n);
        if (!comma || comma - s < 12 || memcmp(comma - 7, ";base64", 7) != 0) return -1;
        n -= (size_t)(comma + 1 - s);
        s = comma + 1;
    }
    while (n > 0 && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    uint8_t *o = t2i_malloc(n / 4 * 3 + 3);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(o);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    *out = o, *len = k;
    return 0;
}

char *serve_base64_encode(const uint8_t *data, size_t len) {
    char *o = t2i_malloc((len + 2) / 3 * 4 + 1), *p = o;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len) v |= data[i + 2];
        *p++ = b64[v >> 18 & 63];
        *p++ = b64[v >> 12 & 63];
        *p++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
        *p++ = i + 2 < len ? b64[v & 63] : '=';
    }
    *p = 0;
    return o;
}
