/* routes.c - `t2i serve`'s HTTP side: the routes, request bodies, answers and errors, the
 * event streams, the CLIP endpoints and the metrics. Handlers run on libmicrohttpd's
 * connection threads: they parse, validate, enqueue and wait or answer; the model work is
 * the worker's (jobs.c).
 */
#include "server_state.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "known_words.h"
#include "page.h"
#include "prompt.h"

/* Prometheus: requests by endpoint and status */
static const char *const route_names[SERVE_N_ROUTES] = {
    "/", "/health", "/metrics", "/v1/models", "/v1/images/generations", "/v1/jobs", "/v1/jobs/{id}",
    "/v1/jobs/{id}/events", "/v1/files", "/v1/rerank", "/v1/classify", "other"};
static const int status_codes[SERVE_N_STATUS] = {200, 202, 400, 401, 404, 405, 408, 413, 429, 500, 503};

typedef struct {
    char *body;
    size_t len;
    int too_big;
    double start;
    int route;
} conn;

static void count(int route, int status) {
    int s = 0;
    while (s < SERVE_N_STATUS && status_codes[s] != status) s++;
    if (s == SERVE_N_STATUS) return;
    pthread_mutex_lock(&serve_g.mu);
    serve_g.requests[route][s]++;
    pthread_mutex_unlock(&serve_g.mu);
}

static enum MHD_Result send_buf(struct MHD_Connection *c, int route, int status, const char *type, void *buf,
                                size_t len, enum MHD_ResponseMemoryMode mode, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, mode);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count(route, status);
    return ret;
}

/* o (deleted) as one line of JSON; allow: the Allow header of a 405, else NULL. */
static enum MHD_Result send_json_allow(struct MHD_Connection *c, int route, int status, cJSON *o, const char *allow) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = strlen(s);
    char *buf = t2i_malloc(n + 2);
    memcpy(buf, s, n);
    buf[n] = '\n';
    cJSON_free(s);
    return send_buf(c, route, status, "application/json", buf, n + 1, MHD_RESPMEM_MUST_FREE, allow);
}

static enum MHD_Result send_json(struct MHD_Connection *c, int route, int status, cJSON *o) {
    return send_json_allow(c, route, status, o, NULL);
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "timeout";
    case 413: return "request_too_large";
    case 429: return "queue_full";
    case 503: return "unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static enum MHD_Result send_error(struct MHD_Connection *c, int route, int status, const char *allow,
                                  const char *fmt, ...) T2I_PRINTF(5, 6);
static enum MHD_Result send_error(struct MHD_Connection *c, int route, int status, const char *allow,
                                  const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", error_type(status));
    return send_json_allow(c, route, status, o, allow);
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int auth_ok(struct MHD_Connection *c) {
    if (!serve_g.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(serve_g.api_key);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)(h[i < a ? i : 0] ^ serve_g.api_key[i]);
    return diff == 0;
}

/* ---- routes ---- */

enum { R_PAGE, R_HEALTH, R_METRICS, R_MODELS, R_GEN, R_JOBS, R_JOB, R_EVENTS, R_FILES, R_RERANK, R_CLASSIFY,
       R_OTHER };

/* Route of a path; *id gets the job name of /v1/jobs/{id}[/events] and /v1/files/{id}/{rank}.png,
 * *rank the rank. */
static int route_of(const char *url, char *id, size_t cap, int *rank) {
    static const char *const fixed[] = {"/", "/health", "/metrics", "/v1/models", "/v1/images/generations",
                                        "/v1/jobs"};
    for (int i = 0; i < 6; i++)
        if (strcmp(url, fixed[i]) == 0) return i;
    if (strcmp(url, "/v1/rerank") == 0) return R_RERANK;
    if (strcmp(url, "/v1/classify") == 0) return R_CLASSIFY;
    if (strncmp(url, "/v1/jobs/", 9) == 0) {
        const char *s = url + 9, *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || n >= cap) return R_OTHER;
        memcpy(id, s, n), id[n] = 0;
        if (!slash) return R_JOB;
        return strcmp(slash, "/events") == 0 ? R_EVENTS : R_OTHER;
    }
    if (strncmp(url, "/v1/files/", 10) == 0) {
        const char *s = url + 10, *slash = strchr(s, '/');
        if (!slash || slash == s || (size_t)(slash - s) >= cap) return R_OTHER;
        memcpy(id, s, (size_t)(slash - s)), id[slash - s] = 0;
        int r = -1, used = 0;
        if (sscanf(slash + 1, "%6d.png%n", &r, &used) != 1 || slash[1 + used] != 0 || used == 0 || r < 0)
            return R_OTHER;
        *rank = r;
        return R_FILES;
    }
    return R_OTHER;
}

static const char *allowed(int route) {
    switch (route) {
    case R_GEN: case R_RERANK: case R_CLASSIFY: return "POST";
    case R_JOBS: return "GET, POST";
    case R_JOB: return "GET, DELETE";
    default: return "GET";
    }
}

/* Is method one of the comma-separated names in allow? */
static int method_ok(const char *allow, const char *method) {
    size_t n = strlen(method);
    for (const char *p = allow; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, method, n) == 0) return 1;
        p += k;
        while (*p == ',' || *p == ' ') p++;
    }
    return 0;
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

static enum MHD_Result do_metrics(struct MHD_Connection *c) {
    size_t cap = 16384, n = 0;
    char *b = t2i_malloc(cap);
#define OUT(...)                                                                                                    \
    do {                                                                                                            \
        int k_ = snprintf(b + n, cap - n, __VA_ARGS__);                                                             \
        if (k_ > 0 && (size_t)k_ >= cap - n) {                                                                      \
            cap = (cap + (size_t)k_) * 2;                                                                           \
            b = t2i_realloc(b, cap);                                                                                \
            k_ = snprintf(b + n, cap - n, __VA_ARGS__);                                                             \
        }                                                                                                           \
        if (k_ > 0) n += (size_t)k_;                                                                                \
    } while (0)
    pthread_mutex_lock(&serve_g.mu);
    serve_g.requests[R_METRICS][0]++; /* this request, counted before it is answered */
    OUT("# HELP t2i_requests_total HTTP requests answered, by endpoint and status.\n"
        "# TYPE t2i_requests_total counter\n");
    for (int r = 0; r < SERVE_N_ROUTES; r++)
        for (int s = 0; s < SERVE_N_STATUS; s++)
            if (serve_g.requests[r][s])
                OUT("t2i_requests_total{endpoint=\"%s\",status=\"%d\"} %lu\n", route_names[r], status_codes[s],
                    serve_g.requests[r][s]);
    int running = 0;
    for (job *j = serve_g.jobs; j; j = j->next) running += j->state == JS_RUNNING;
    OUT("# HELP t2i_queue_depth Jobs waiting for the worker.\n# TYPE t2i_queue_depth gauge\nt2i_queue_depth %d\n",
        serve_g.queued);
    OUT("# HELP t2i_jobs_running Jobs being run.\n# TYPE t2i_jobs_running gauge\nt2i_jobs_running %d\n", running);
    OUT("# HELP t2i_jobs_total Jobs ended, by final state.\n# TYPE t2i_jobs_total counter\n");
    for (int s = JS_DONE; s <= JS_CANCELLED; s++)
        OUT("t2i_jobs_total{state=\"%s\"} %lu\n", serve_state_names[s], serve_g.jobs_ended[s]);
    OUT("# HELP t2i_images_generated_total Images returned by generations.\n"
        "# TYPE t2i_images_generated_total counter\nt2i_images_generated_total %lu\n", serve_g.images_generated);
    OUT("# HELP t2i_generation_seconds Time of a generation job on the worker.\n"
        "# TYPE t2i_generation_seconds histogram\n");
    unsigned long cum = 0;
    for (int i = 0; i < SERVE_N_HIST; i++) {
        cum += serve_g.hist[i];
        OUT("t2i_generation_seconds_bucket{le=\"%g\"} %lu\n", serve_hist_bounds[i], cum);
    }
    OUT("t2i_generation_seconds_bucket{le=\"+Inf\"} %lu\n", serve_g.hist_count);
    OUT("t2i_generation_seconds_sum %.6f\nt2i_generation_seconds_count %lu\n", serve_g.hist_sum, serve_g.hist_count);
    pthread_mutex_unlock(&serve_g.mu);
    OUT("# HELP t2i_connections_cut_total Connections cut off for sending headers slower than --timeout.\n"
        "# TYPE t2i_connections_cut_total counter\nt2i_connections_cut_total %lu\n", serve_conn_cut_total());
    OUT("# HELP t2i_resident_memory_bytes Resident set size of the server.\n"
        "# TYPE t2i_resident_memory_bytes gauge\nt2i_resident_memory_bytes %ld\n", rss_bytes());
#undef OUT
    struct MHD_Response *r = MHD_create_response_from_buffer(n, b, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result do_models(struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < serve_g.nmodels; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", serve_g.models[i].id);
        cJSON_AddStringToObject(e, "object", "model");
        cJSON_AddStringToObject(e, "kind", serve_g.models[i].kind);
        cJSON_AddStringToObject(e, "file", serve_g.models[i].file);
        cJSON_AddNumberToObject(e, "parameters", (double)serve_g.models[i].parameters);
        cJSON_AddNumberToObject(e, "resolution", serve_g.models[i].resolution);
        cJSON_AddItemToArray(d, e);
    }
    return send_json(c, R_MODELS, 200, o);
}

/* Decodes a request's image prompt into j (the image at the VQ's input size, the kept
 * cells): 0, or -1 after answering 400. Image prompts use the transformer alone. */
static int image_prompt(job *j, struct MHD_Connection *c, int route, enum MHD_Result *ret) {
    serve_gen_req *q = &j->gen;
    int C, R, g, w, h;
    if (q->generator == SERVE_GEN_AUTO) j->use_gan = 0;
    if (!j->use_dalle || j->use_gan || gen_pipeline_prompt_shape(serve_g.pl, &C, &R, &g) != 0) {
        *ret = send_error(c, route, 400, NULL, "image: image prompts need the dalle generator alone");
        return -1;
    }
    j->prompt_img = t2i_malloc((size_t)C * R * R * sizeof(float));
    int rc = gen_prompt_image_mem(q->image.data, q->image.len, "image", C, R, j->prompt_img, &w, &h);
    if (rc == 0 && !q->variations) {
        j->prompt_keep = t2i_malloc((size_t)g * g);
        rc = q->mask.data ? gen_prompt_mask_mem(q->mask.data, q->mask.len, "mask", w, h, g, j->prompt_keep)
                          : gen_prompt_keep_lines(q->keep_rows, q->keep_cols, g, j->prompt_keep);
    }
    if (rc != 0) *ret = send_error(c, route, 400, NULL, "%s", t2i_error_msg());
    return rc;
}

/* A validated generation request as a job (not yet queued); NULL after answering 400. */
static job *gen_job(struct MHD_Connection *c, int route, const conn *cn, int for_job, enum MHD_Result *ret) {
    job *j = t2i_calloc(1, sizeof *j);
    char err[512];
    if (serve_parse_gen(cn->body, cn->len, &serve_g.lim, for_job, &j->gen, err, sizeof err) != 0) {
        free(j);
        *ret = send_error(c, route, 400, NULL, "%s", err);
        return NULL;
    }
    serve_gen_req *q = &j->gen;
    const char *why = NULL;
    int have_d = serve_g.pl->dalle_index >= 0, have_g = serve_g.pl->gan_index >= 0;
    switch (q->generator) {
    case SERVE_GEN_AUTO: j->use_dalle = have_d, j->use_gan = have_g; break;
    case SERVE_GEN_DALLE: j->use_dalle = 1, why = have_d ? NULL : "dalle"; break;
    case SERVE_GEN_GAN: j->use_gan = 1, why = have_g ? NULL : "gan"; break;
    case SERVE_GEN_BOTH: j->use_dalle = j->use_gan = 1, why = !have_d ? "dalle" : !have_g ? "gan" : NULL; break;
    }
    j->upscale = q->upscale < 0 ? serve_g.pl->have_sr : q->upscale;
    int nsrc = j->use_dalle + j->use_gan;
    int res = j->upscale && serve_g.up_res ? serve_g.up_res : serve_g.out_res;
    if (why) {
        *ret = send_error(c, route, 400, NULL, "generator: the %s model is not loaded (start the server with --%s "
                                               "or --generator both)", why, why);
    } else if (j->upscale && !serve_g.pl->have_sr) {
        *ret = send_error(c, route, 400, NULL, "upscale: no upscaler is loaded (start the server with --upscale FILE)");
    } else if ((long)q->n > (long)q->candidates * nsrc) {
        *ret = send_error(c, route, 400, NULL, "n: %d is more than the %ld candidates (candidates %d x %d generator%s)",
                          q->n, (long)q->candidates * nsrc, q->candidates, nsrc, nsrc > 1 ? "s" : "");
    } else if (q->size_w && (q->size_w != res || q->size_h != res)) {
        *ret = send_error(c, route, 400, NULL, "size: this server makes %dx%d images, not %dx%d", res, res, q->size_w,
                          q->size_h);
    } else if (q->image.data && image_prompt(j, c, route, ret) != 0) {
        /* answered */
    } else {
        /* words of the caption that a used model never saw: said in the answer, run anyway */
        gen_source *used[2];
        int nused = 0;
        if (j->use_dalle) used[nused++] = serve_g.pl->src[serve_g.pl->dalle_index];
        if (j->use_gan) used[nused++] = serve_g.pl->src[serve_g.pl->gan_index];
        char msg[8192];
        if (gen_unknown_words(used, nused, q->prompt, msg, sizeof msg) > 0) j->warnings = t2i_strdup(msg);
        return j;
    }
    serve_job_free(j);
    return NULL;
}

/* Waits (under the lock) until j has ended or the server stops. */
static void wait_end(job *j) {
    while (j->state <= JS_RUNNING && !serve_g.stopping) pthread_cond_wait(&serve_g.cv, &serve_g.mu);
}

/* Queues j (0), or frees it and answers: 429 when the queue is full, 503 when the server
 * is stopping (-1). */
static int enqueue_or_answer(struct MHD_Connection *c, int route, job *j, enum MHD_Result *ret) {
    int rc = serve_job_enqueue(j);
    if (rc == 0) return 0;
    serve_job_free(j);
    if (rc == -2) *ret = send_error(c, route, 503, NULL, "the server is stopping");
    else *ret = send_error(c, route, 429, NULL, "the queue is full (%d jobs waiting); try again later", serve_g.queue_cap);
    return -1;
}

/* A generation request validated and queued (the caller holds one reference), or NULL
 * after answering (400, 429). */
static job *submit_gen(struct MHD_Connection *c, int route, const conn *cn, int for_job, enum MHD_Result *ret) {
    job *j = gen_job(c, route, cn, for_job, ret);
    if (!j) return NULL;
    j->kind = JOB_GEN, j->listed = 1;
    if (enqueue_or_answer(c, route, j, ret) != 0) return NULL;
    return j;
}

static enum MHD_Result do_generations(struct MHD_Connection *c, const conn *cn) {
    enum MHD_Result ret;
    job *j = submit_gen(c, R_GEN, cn, 0, &ret);
    if (!j) return ret;
    pthread_mutex_lock(&serve_g.mu);
    wait_end(j);
    int state = j->state;
    cJSON *o = NULL;
    char *err = NULL;
    if (state == JS_DONE) {
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "created", (double)j->created);
        serve_add_results(o, j, !j->gen.response_url);
        cJSON_AddStringToObject(o, "id", j->name);
        serve_add_warnings(o, j);
    } else if (state == JS_FAILED) {
        err = t2i_strdup(j->error ? j->error : "failed");
    }
    serve_job_unref(j);
    pthread_mutex_unlock(&serve_g.mu);
    if (o) return send_json(c, R_GEN, 200, o);
    if (err) {
        ret = send_error(c, R_GEN, 400, NULL, "%s", err);
        free(err);
        return ret;
    }
    return send_error(c, R_GEN, 503, NULL, "the generation was cancelled");
}

static enum MHD_Result do_job_post(struct MHD_Connection *c, const conn *cn) {
    enum MHD_Result ret;
    job *j = submit_gen(c, R_JOBS, cn, 1, &ret);
    if (!j) return ret;
    pthread_mutex_lock(&serve_g.mu);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->name);
    cJSON_AddStringToObject(o, "state", "queued");
    serve_job_unref(j);
    pthread_mutex_unlock(&serve_g.mu);
    return send_json(c, R_JOBS, 202, o);
}

static enum MHD_Result do_job_list(struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    pthread_mutex_lock(&serve_g.mu);
    for (job *j = serve_g.jobs; j; j = j->next)
        if (j->listed) cJSON_AddItemToArray(d, serve_job_json(j, 0));
    pthread_mutex_unlock(&serve_g.mu);
    return send_json(c, R_JOBS, 200, o);
}

static enum MHD_Result do_job(struct MHD_Connection *c, const char *method, const char *id) {
    pthread_mutex_lock(&serve_g.mu);
    job *j = serve_job_find(id);
    if (!j) {
        pthread_mutex_unlock(&serve_g.mu);
        char s[64];
        return send_error(c, R_JOB, 404, NULL, "no job '%s' (the last %d jobs are kept)", t2i_text_show(id, 40, s, sizeof s),
                          SERVE_KEEP_JOBS);
    }
    if (strcmp(method, "DELETE") == 0 && j->state <= JS_RUNNING) {
        j->cancel = 1;
        atomic_store(&j->stop, 1);
        if (j->state == JS_QUEUED) { /* the worker skips it; say so now */
            j->state = JS_CANCELLED;
            j->seq++;
            serve_g.queued--;
            serve_g.jobs_ended[JS_CANCELLED]++;
            serve_table_evict();
            pthread_cond_broadcast(&serve_g.cv);
        } else {
            /* running: the progress callback stops it after the current batch */
            j->refs++;
            while (j->state == JS_RUNNING && !serve_g.stopping) pthread_cond_wait(&serve_g.cv, &serve_g.mu);
            cJSON *o = serve_job_json(j, 1);
            serve_job_unref(j);
            pthread_mutex_unlock(&serve_g.mu);
            return send_json(c, R_JOB, 200, o);
        }
    }
    cJSON *o = serve_job_json(j, 1);
    pthread_mutex_unlock(&serve_g.mu);
    return send_json(c, R_JOB, 200, o);
}

static enum MHD_Result do_file(struct MHD_Connection *c, const char *id, int rank) {
    pthread_mutex_lock(&serve_g.mu);
    job *j = serve_job_find(id);
    if (!j || j->state != JS_DONE || rank >= j->n) {
        pthread_mutex_unlock(&serve_g.mu);
        return send_error(c, R_FILES, 404, NULL, "no such file (a job's files are kept while it is among the last %d)",
                          SERVE_KEEP_JOBS);
    }
    size_t n = j->png_len[rank];
    void *b = t2i_malloc(n);
    memcpy(b, j->png[rank], n);
    pthread_mutex_unlock(&serve_g.mu);
    return send_buf(c, R_FILES, 200, "image/png", b, n, MHD_RESPMEM_MUST_FREE, NULL);
}

/* ---- server-sent events ---- */

typedef struct {
    job *j;
    unsigned seq;
    int ended;
    char *pending;
    size_t len, off;
} sse;

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    sse *e = cls;
    if (e->off == e->len) {
        free(e->pending);
        e->pending = NULL, e->len = e->off = 0;
        if (e->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&serve_g.mu);
        while (e->j->seq == e->seq && e->j->state <= JS_RUNNING && !serve_g.stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&serve_g.cv, &serve_g.mu, &ts);
        }
        e->seq = e->j->seq;
        if (e->j->state > JS_RUNNING) {
            cJSON *o = serve_job_json(e->j, 1);
            char *s = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            e->pending = t2i_asprintf("event: %s\ndata: %s\n\n", serve_state_names[e->j->state], s);
            cJSON_free(s);
            e->ended = 1;
        } else if (serve_g.stopping) {
            e->pending = t2i_strdup("event: cancelled\ndata: {\"error\":\"the server is stopping\"}\n\n");
            e->ended = 1;
        } else {
            long total = e->j->total ? e->j->total : (long)e->j->gen.candidates * (e->j->use_dalle + e->j->use_gan);
            e->pending = t2i_asprintf("event: progress\ndata: {\"done\":%ld,\"total\":%ld}\n\n", e->j->done, total);
        }
        pthread_mutex_unlock(&serve_g.mu);
        e->len = strlen(e->pending);
    }
    size_t k = e->len - e->off < max ? e->len - e->off : max;
    memcpy(buf, e->pending + e->off, k);
    e->off += k;
    return (ssize_t)k;
}

static void sse_free(void *cls) {
    sse *e = cls;
    pthread_mutex_lock(&serve_g.mu);
    serve_job_unref(e->j);
    pthread_mutex_unlock(&serve_g.mu);
    free(e->pending);
    free(e);
}

static enum MHD_Result do_events(struct MHD_Connection *c, const char *id) {
    pthread_mutex_lock(&serve_g.mu);
    job *j = serve_job_find(id);
    if (!j) {
        pthread_mutex_unlock(&serve_g.mu);
        char s[64];
        return send_error(c, R_EVENTS, 404, NULL, "no job '%s'", t2i_text_show(id, 40, s, sizeof s));
    }
    j->refs++;
    sse *e = t2i_calloc(1, sizeof *e);
    e->j = j;
    e->seq = j->seq - 1; /* the first read reports the current progress (or the end) at once */
    pthread_mutex_unlock(&serve_g.mu);
    /* a batch may take longer than --timeout: the stream itself is never idle-closed */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, e, sse_free);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    count(R_EVENTS, 200);
    return ret;
}

/* ---- CLIP endpoints ---- */

/* Decodes blobs into 8-bit RGB images; -1 after answering 400 (naming the image). */
static int decode_images(struct MHD_Connection *c, int route, const serve_blob *b, int n, const char *field,
                         t2i_image *out, enum MHD_Result *ret) {
    for (int i = 0; i < n; i++) {
        char name[32];
        if (n > 1 || strcmp(field, "image") != 0) snprintf(name, sizeof name, "%s[%d]", field, i);
        else snprintf(name, sizeof name, "%s", field);
        if (t2i_image_load_mem(&out[i], b[i].data, b[i].len, name, 3) != 0) {
            for (int k = 0; k < i; k++) t2i_image_free(&out[k]);
            *ret = send_error(c, route, 400, NULL, "%s", t2i_error_msg());
            return -1;
        }
    }
    return 0;
}

/* Runs a rerank/classify job on the worker and waits; 0 with j done, else answered. */
static int run_clip_job(struct MHD_Connection *c, int route, job *j, enum MHD_Result *ret) {
    if (enqueue_or_answer(c, route, j, ret) != 0) return -1;
    pthread_mutex_lock(&serve_g.mu);
    wait_end(j);
    serve_table_remove(j);
    int state = j->state;
    char *err = state == JS_FAILED ? t2i_strdup(j->error ? j->error : "failed") : NULL;
    pthread_mutex_unlock(&serve_g.mu);
    if (state == JS_DONE) return 0;
    if (err) *ret = send_error(c, route, 400, NULL, "%s", err);
    else *ret = send_error(c, route, 503, NULL, "the server is stopping");
    free(err);
    pthread_mutex_lock(&serve_g.mu);
    serve_job_unref(j);
    pthread_mutex_unlock(&serve_g.mu);
    return -1;
}

typedef struct {
    float v;
    int i;
} val_idx;

static int cmp_val(const void *a, const void *b) {
    const val_idx *x = a, *y = b;
    return x->v < y->v ? 1 : x->v > y->v ? -1 : x->i - y->i;
}

/* A finished CLIP job's scores with their indices, best first (malloc'd, j->n entries). */
static val_idx *by_score(const job *j) {
    val_idx *v = t2i_malloc((size_t)j->n * sizeof *v);
    for (int i = 0; i < j->n; i++) v[i] = (val_idx){j->scores[i], i};
    qsort(v, (size_t)j->n, sizeof *v, cmp_val);
    return v;
}

/* Releases the handler's reference to j and answers 200 with o. */
static enum MHD_Result answer_clip_job(struct MHD_Connection *c, int route, job *j, cJSON *o) {
    pthread_mutex_lock(&serve_g.mu);
    serve_job_unref(j);
    pthread_mutex_unlock(&serve_g.mu);
    return send_json(c, route, 200, o);
}

static enum MHD_Result do_rerank(struct MHD_Connection *c, const conn *cn) {
    job *j = t2i_calloc(1, sizeof *j);
    char err[512];
    enum MHD_Result ret;
    if (serve_parse_rerank(cn->body, cn->len, &serve_g.lim, &j->rr, err, sizeof err) != 0) {
        free(j);
        return send_error(c, R_RERANK, 400, NULL, "%s", err);
    }
    j->imgs = t2i_calloc((size_t)j->rr.n, sizeof *j->imgs);
    if (decode_images(c, R_RERANK, j->rr.images, j->rr.n, "images", j->imgs, &ret) != 0) {
        serve_job_free(j);
        return ret;
    }
    j->nimg = j->rr.n;
    j->kind = JOB_RERANK;
    if (run_clip_job(c, R_RERANK, j, &ret) != 0) return ret;
    val_idx *v = by_score(j);
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < j->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", v[i].i);
        cJSON_AddNumberToObject(e, "score", v[i].v);
        cJSON_AddItemToArray(d, e);
    }
    free(v);
    return answer_clip_job(c, R_RERANK, j, o);
}

static enum MHD_Result do_classify(struct MHD_Connection *c, const conn *cn) {
    job *j = t2i_calloc(1, sizeof *j);
    char err[512];
    enum MHD_Result ret;
    if (serve_parse_classify(cn->body, cn->len, &j->cl, err, sizeof err) != 0) {
        free(j);
        return send_error(c, R_CLASSIFY, 400, NULL, "%s", err);
    }
    j->imgs = t2i_calloc(1, sizeof *j->imgs);
    if (decode_images(c, R_CLASSIFY, &j->cl.image, 1, "image", j->imgs, &ret) != 0) {
        serve_job_free(j);
        return ret;
    }
    j->nimg = 1;
    j->kind = JOB_CLASSIFY;
    if (run_clip_job(c, R_CLASSIFY, j, &ret) != 0) return ret;
    val_idx *v = by_score(j);
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < j->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "label", j->cl.labels[v[i].i]);
        cJSON_AddNumberToObject(e, "probability", v[i].v);
        cJSON_AddItemToArray(d, e);
    }
    free(v);
    return answer_clip_job(c, R_CLASSIFY, j, o);
}

/* ---- the access handler ---- */

enum MHD_Result serve_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    char id[64] = "";
    int rank = 0;
    int route = route_of(url, id, sizeof id, &rank);
    conn *cn = *con_cls;
    if (!cn) {
        cn = t2i_calloc(1, sizeof *cn);
        cn->start = t2i_now();
        cn->route = route;
        *con_cls = cn;
        pthread_mutex_lock(&serve_g.mu);
        serve_g.inflight++;
        pthread_mutex_unlock(&serve_g.mu);
        serve_conn_mark(c, 1);
        /* answered before the body is read: unknown path, wrong method, no key, too large */
        if (route == R_OTHER) {
            char s[80];
            return send_error(c, route, 404, NULL, "no such endpoint: %s %s", method, t2i_text_show(url, 60, s, sizeof s));
        }
        const char *allow = allowed(route);
        if (!method_ok(allow, method))
            return send_error(c, route, 405, allow, "%s is not allowed on %s (allowed: %s)", method,
                              route_names[route], allow);
        if (strncmp(url, "/v1/", 4) == 0 && !auth_ok(c))
            return send_error(c, route, 401, NULL, "missing or wrong API key (send Authorization: Bearer KEY)");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > serve_g.max_body)
            return send_error(c, route, 413, NULL, "the body has %s bytes, more than --max-body %zu", cl, serve_g.max_body);
        return MHD_YES;
    }
    if (*upload_size) {
        if (t2i_now() - cn->start > serve_g.timeout) return send_error(c, route, 408, NULL, "the request body came too slowly");
        if (!cn->too_big && cn->len + *upload_size > serve_g.max_body) {
            cn->too_big = 1;
            free(cn->body);
            cn->body = NULL;
        }
        if (!cn->too_big) {
            cn->body = t2i_realloc(cn->body, cn->len + *upload_size + 1);
            memcpy(cn->body + cn->len, upload, *upload_size);
            cn->len += *upload_size;
            cn->body[cn->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->too_big) return send_error(c, route, 413, NULL, "the body is larger than --max-body %zu bytes", serve_g.max_body);
    int post = strcmp(method, "POST") == 0;
    switch (route) {
    case R_PAGE:
        return send_buf(c, route, 200, "text/html; charset=utf-8", (void *)serve_page_html, serve_page_html_len,
                        MHD_RESPMEM_PERSISTENT, NULL);
    case R_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        pthread_mutex_lock(&serve_g.mu);
        cJSON_AddNumberToObject(o, "queue", serve_g.queued);
        pthread_mutex_unlock(&serve_g.mu);
        return send_json(c, route, 200, o);
    }
    case R_METRICS: return do_metrics(c);
    case R_MODELS: return do_models(c);
    case R_GEN: return do_generations(c, cn);
    case R_JOBS: return post ? do_job_post(c, cn) : do_job_list(c);
    case R_JOB: return do_job(c, method, id);
    case R_EVENTS: return do_events(c, id);
    case R_FILES: return do_file(c, id, rank);
    case R_RERANK: return do_rerank(c, cn);
    case R_CLASSIFY: return do_classify(c, cn);
    default: return send_error(c, R_OTHER, 404, NULL, "no such endpoint");
    }
}

void serve_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)toe;
    serve_conn_mark(c, 0); /* the next request's headers are due within --timeout */
    conn *cn = *con_cls;
    if (cn) {
        free(cn->body), free(cn);
        pthread_mutex_lock(&serve_g.mu);
        serve_g.inflight--;
        pthread_cond_broadcast(&serve_g.cv);
        pthread_mutex_unlock(&serve_g.mu);
    }
    *con_cls = NULL;
}
