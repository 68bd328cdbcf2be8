/* server.c - `t2i serve` (see serve.h): flags, the job table, the worker thread, the HTTP
 * routes and the metrics.
 *
 * Every piece of shared state (jobs, queue, counters) is under one mutex with one
 * condition variable, broadcast on every change: a job's progress, its end, a new job,
 * shutdown. Jobs are reference-counted: a handler that waits on a job (a generation, an
 * event stream) holds a reference, so evicting it from the table of recent jobs (the
 * last SERVE_KEEP_JOBS finished ones are kept) never frees memory in use.
 */
#include "serve.h"
#include "page.h"
#include "known_words.h"
#include "pipeline.h"
#include "prompt.h"
#include "request.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "args.h"
#include "base.h"
#include "image.h"
#include "safetensors.h"

enum { SERVE_KEEP_JOBS = 32 };

typedef enum { JOB_GEN, JOB_RERANK, JOB_CLASSIFY } job_kind;
typedef enum { JS_QUEUED, JS_RUNNING, JS_DONE, JS_FAILED, JS_CANCELLED } job_state;
static const char *const state_names[] = {"queued", "running", "done", "failed", "cancelled"};

typedef struct job job;
struct job {
    job *next;                /* the table, newest first */
    job_kind kind;
    int listed;               /* generations: in GET /v1/jobs; rerank/classify: hidden */
    int in_table, refs;
    long id;
    char name[32];            /* "job-N" */
    job_state state;
    time_t created;
    long done, total;         /* progress */
    unsigned seq;             /* bumped on each progress and at the end */
    int cancel;
    atomic_int stop;          /* = cancel, read by the sampler without the lock */
    char *error;              /* failed: why */
    char *warnings;           /* generations: lines of gen_unknown_words, each ending in '\n' */
    serve_gen_req gen;
    int use_dalle, use_gan, upscale;
    float *prompt_img;        /* generations with an image prompt: the image (C, R, R) and */
    uint8_t *prompt_keep;     /* its kept cells (g, g; NULL for variations) */
    /* rerank / classify: decoded images, labels */
    serve_rerank_req rr;
    serve_classify_req cl;
    t2i_image *imgs;
    int nimg;
    /* results */
    int n;
    uint8_t **png;
    size_t *png_len;
    gen_result *res;
    float *scores;            /* rerank: cosine per image; classify: probability per label */
    double seconds;
};

/* Prometheus: requests by endpoint and status */
static const char *const route_names[] = {"/",          "/health",           "/metrics",       "/v1/models",
                                          "/v1/images/generations", "/v1/jobs", "/v1/jobs/{id}",
                                          "/v1/jobs/{id}/events", "/v1/files", "/v1/rerank", "/v1/classify",
                                          "other"};
enum { N_ROUTES = sizeof route_names / sizeof route_names[0] };
static const int status_codes[] = {200, 202, 400, 401, 404, 405, 408, 413, 429, 500, 503};
enum { N_STATUS = sizeof status_codes / sizeof status_codes[0] };
static const double hist_bounds[] = {0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600};
enum { N_HIST = sizeof hist_bounds / sizeof hist_bounds[0] };

typedef struct {
    const char *id, *kind, *file;
    size_t parameters;
    int resolution;
} model_info;

typedef struct {
    gen_pipeline *pl;
    serve_limits lim;
    int queue_cap;
    size_t max_body;
    int timeout;
    const char *api_key;
    model_info models[6];
    int nmodels;
    int out_res, up_res;      /* generated size; after upscaling (0 = no upscaler) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *jobs;
    long next_id;
    int queued;               /* jobs waiting */
    int stopping;
    /* metrics */
    unsigned long requests[N_ROUTES][N_STATUS];
    unsigned long jobs_ended[5], images_generated;
    unsigned long hist[N_HIST + 1];
    double hist_sum;
    unsigned long hist_count;
} server;

static server S;

/* ------------------------------------------------------------------ jobs ---- */

static void job_free(job *j) {
    serve_gen_req_free(&j->gen);
    serve_rerank_req_free(&j->rr);
    serve_classify_req_free(&j->cl);
    for (int i = 0; i < j->nimg; i++) t2i_image_free(&j->imgs[i]);
    free(j->imgs);
    for (int i = 0; i < j->n && j->png; i++) free(j->png[i]);
    free(j->png), free(j->png_len), free(j->res), free(j->scores), free(j->error);
    free(j->prompt_img), free(j->prompt_keep);
    free(j->warnings);
    free(j);
}

/* Under the lock. */
static void job_unref(job *j) {
    if (--j->refs == 0 && !j->in_table) job_free(j);
}

static void table_remove(job *j) {
    for (job **p = &S.jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            j->in_table = 0;
            return;
        }
}

/* Keeps the newest SERVE_KEEP_JOBS finished jobs (queued and running ones always stay). */
static void table_evict(void) {
    int kept = 0;
    for (job *j = S.jobs, *next; j; j = next) {
        next = j->next;
        if (j->state <= JS_RUNNING || !j->listed) continue;
        if (++kept > SERVE_KEEP_JOBS) {
            table_remove(j);
            if (j->refs == 0) job_free(j);
        }
    }
}

static job *job_find(const char *name) {
    for (job *j = S.jobs; j; j = j->next)
        if (j->listed && strcmp(j->name, name) == 0) return j;
    return NULL;
}

/* Adds j to the queue (the caller keeps one reference). 0, or -1 when the queue is full. */
static int job_enqueue(job *j) {
    pthread_mutex_lock(&S.mu);
    if (S.queued >= S.queue_cap || S.stopping) {
        pthread_mutex_unlock(&S.mu);
        return -1;
    }
    j->id = ++S.next_id;
    snprintf(j->name, sizeof j->name, "job-%ld", j->id);
    j->created = time(NULL);
    j->state = JS_QUEUED;
    j->refs = 1;
    j->in_table = 1;
    j->next = S.jobs;
    S.jobs = j;
    S.queued++;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    return 0;
}

/* ---------------------------------------------------------------- worker ---- */

static int on_progress(void *arg, long done, long total) {
    job *j = arg;
    pthread_mutex_lock(&S.mu);
    j->done = done, j->total = total;
    j->seq++;
    int stop = j->cancel || S.stopping;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    return stop;
}

/* Runs a generation; fills the results (PNG bytes) or the error. */
static int run_gen(job *j) {
    gen_call k;
    gen_call_defaults(S.pl, &k);
    k.use_dalle = j->use_dalle, k.use_gan = j->use_gan;
    k.candidates = j->gen.candidates, k.top = j->gen.n, k.seed = j->gen.seed;
    k.sample = j->gen.sample;
    k.upscale = j->upscale;
    k.quiet = 1;
    k.progress = on_progress, k.progress_arg = j;
    k.stop = &j->stop;
    k.image = j->prompt_img, k.keep = j->prompt_keep;
    gen_ranked r;
    if (gen_pipeline_run(S.pl, j->gen.prompt, &k, &r) != 0) return -1;
    int n = r.n, rc = 0;
    uint8_t **png = t2i_calloc((size_t)n, sizeof *png);
    size_t *len = t2i_calloc((size_t)n, sizeof *len);
    for (int i = 0; i < n && !rc; i++) {
        uint8_t *px = t2i_malloc((size_t)r.C[i] * r.H[i] * r.W[i]);
        t2i_chw_to_u8(px, r.images[i], r.C[i], r.H[i], r.W[i]);
        char name[48];
        snprintf(name, sizeof name, "%s/%d.png", j->name, i);
        rc = t2i_image_encode_png(&png[i], &len[i], px, r.W[i], r.H[i], r.C[i], name);
        free(px);
    }
    gen_result *res = t2i_malloc((size_t)n * sizeof *res);
    memcpy(res, r.res, (size_t)n * sizeof *res);
    gen_ranked_free(&r);
    pthread_mutex_lock(&S.mu);
    j->png = png, j->png_len = len, j->res = res, j->n = n;
    pthread_mutex_unlock(&S.mu);
    return rc;
}

static int run_rerank(job *j) {
    clip_model *m = S.pl->clip;
    int D = clip_embed_dim(m), n = j->nimg;
    float *t = t2i_malloc((size_t)D * sizeof(float)), *f = t2i_malloc((size_t)n * D * sizeof(float));
    float *cos = t2i_malloc((size_t)n * sizeof(float));
    const char *p = j->rr.prompt;
    int rc = clip_embed_texts(m, &p, 1, t);
    if (rc == 0) {
        clip_embed_u8(m, j->imgs, n, f);
        clip_cosine(f, n, t, 1, D, cos);
    }
    free(t), free(f);
    pthread_mutex_lock(&S.mu);
    if (rc == 0) j->scores = cos, j->n = n;
    else free(cos);
    pthread_mutex_unlock(&S.mu);
    return rc;
}

static int run_classify(job *j) {
    float *prob = t2i_malloc((size_t)j->cl.n * sizeof(float));
    int rc = clip_zeroshot_probs(S.pl->clip, &j->imgs[0], (const char *const *)j->cl.labels, j->cl.n, prob, NULL);
    pthread_mutex_lock(&S.mu);
    if (rc == 0) j->scores = prob, j->n = j->cl.n;
    else free(prob);
    pthread_mutex_unlock(&S.mu);
    return rc;
}

static void *worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&S.mu);
    for (;;) {
        job *next = NULL;
        while (!S.stopping) {
            for (job *j = S.jobs; j; j = j->next)
                if (j->state == JS_QUEUED) next = j; /* the oldest: the table is newest first */
            if (next) break;
            pthread_cond_wait(&S.cv, &S.mu);
        }
        if (S.stopping) break;
        S.queued--;
        next->refs++;
        if (next->cancel) {
            next->state = JS_CANCELLED;
            next->seq++;
            S.jobs_ended[JS_CANCELLED]++;
            pthread_cond_broadcast(&S.cv);
            job_unref(next);
            continue;
        }
        next->state = JS_RUNNING;
        next->seq++;
        pthread_cond_broadcast(&S.cv);
        pthread_mutex_unlock(&S.mu);
        double t0 = t2i_now();
        int rc = next->kind == JOB_GEN ? run_gen(next) : next->kind == JOB_RERANK ? run_rerank(next) : run_classify(next);
        double dt = t2i_now() - t0;
        char *err = rc ? t2i_strdup(t2i_error_msg()) : NULL;
        pthread_mutex_lock(&S.mu);
        next->seconds = dt;
        if (rc == 0) {
            next->state = JS_DONE;
            if (next->kind == JOB_GEN) {
                S.images_generated += (unsigned long)next->n;
                int b = 0;
                while (b < N_HIST && dt > hist_bounds[b]) b++;
                S.hist[b]++;
                S.hist_sum += dt;
                S.hist_count++;
            }
        } else if (next->cancel || S.stopping || strcmp(err, "cancelled") == 0) {
            next->state = JS_CANCELLED;
        } else {
            next->state = JS_FAILED;
            next->error = err;
            err = NULL;
        }
        free(err);
        S.jobs_ended[next->state]++;
        next->seq++;
        table_evict();
        pthread_cond_broadcast(&S.cv);
        job_unref(next);
    }
    /* shutdown: whatever still waits is cancelled */
    for (job *j = S.jobs; j; j = j->next)
        if (j->state == JS_QUEUED) j->state = JS_CANCELLED, j->seq++;
    S.queued = 0;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

/* ------------------------------------------------------------------ JSON ---- */

/* "warnings": one string per line of j->warnings (an empty array when none); a line is
 * at most about 1.5 kB (gen_unknown_words bounds it). */
static void add_warnings(cJSON *o, const job *j) {
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    for (const char *line = j->warnings, *e; line && *line; line = e + 1) {
        e = strchr(line, '\n');
        char one[2048];
        snprintf(one, sizeof one, "%.*s", (int)(e - line), line);
        cJSON_AddItemToArray(w, cJSON_CreateString(one));
    }
}

/* The job object of the API (under the lock); with_data adds the results when done. */
static cJSON *job_json(const job *j, int with_data) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->name);
    cJSON_AddStringToObject(o, "state", state_names[j->state]);
    cJSON_AddStringToObject(o, "prompt", j->gen.prompt ? j->gen.prompt : "");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "done", (double)j->done);
    cJSON_AddNumberToObject(p, "total", (double)(j->total ? j->total : (long)j->gen.candidates * (j->use_dalle + j->use_gan)));
    add_warnings(o, j);
    cJSON_AddNumberToObject(o, "n", j->gen.n);
    cJSON_AddNumberToObject(o, "candidates", j->gen.candidates);
    cJSON_AddNumberToObject(o, "seed", (double)j->gen.seed);
    if (j->state == JS_FAILED) cJSON_AddStringToObject(o, "error", j->error ? j->error : "failed");
    if (with_data && j->state == JS_DONE) {
        cJSON *d = cJSON_AddArrayToObject(o, "data");
        for (int i = 0; i < j->n; i++) {
            cJSON *e = cJSON_CreateObject();
            char url[64];
            snprintf(url, sizeof url, "/v1/files/%s/%d.png", j->name, i);
            cJSON_AddStringToObject(e, "url", url);
            cJSON_AddNumberToObject(e, "score", j->res[i].score);
            cJSON_AddStringToObject(e, "source", j->res[i].source_name);
            cJSON_AddNumberToObject(e, "seed", (double)j->gen.seed);
            cJSON_AddNumberToObject(e, "candidate", (double)j->res[i].candidate);
            cJSON_AddItemToArray(d, e);
        }
    }
    return o;
}

/* ------------------------------------------------------------------ HTTP ---- */

typedef struct {
    char *body;
    size_t len;
    int too_big;
    double start;
    int route;
} conn;

static void count(int route, int status) {
    int s = 0;
    while (s < N_STATUS && status_codes[s] != status) s++;
    if (s == N_STATUS) return;
    pthread_mutex_lock(&S.mu);
    S.requests[route][s]++;
    pthread_mutex_unlock(&S.mu);
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

static enum MHD_Result send_json(struct MHD_Connection *c, int route, int status, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = strlen(s);
    char *buf = t2i_malloc(n + 2);
    memcpy(buf, s, n);
    buf[n] = '\n';
    cJSON_free(s);
    return send_buf(c, route, status, "application/json", buf, n + 1, MHD_RESPMEM_MUST_FREE, NULL);
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
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = strlen(s);
    char *buf = t2i_malloc(n + 2);
    memcpy(buf, s, n);
    buf[n] = '\n';
    cJSON_free(s);
    return send_buf(c, route, status, "application/json", buf, n + 1, MHD_RESPMEM_MUST_FREE, allow);
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int auth_ok(struct MHD_Connection *c) {
    if (!S.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(S.api_key);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)(h[i < a ? i : 0] ^ S.api_key[i]);
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
    pthread_mutex_lock(&S.mu);
    S.requests[R_METRICS][0]++; /* this request, counted before it is answered */
    OUT("# HELP t2i_requests_total HTTP requests answered, by endpoint and status.\n"
        "# TYPE t2i_requests_total counter\n");
    for (int r = 0; r < N_ROUTES; r++)
        for (int s = 0; s < N_STATUS; s++)
            if (S.requests[r][s])
                OUT("t2i_requests_total{endpoint=\"%s\",status=\"%d\"} %lu\n", route_names[r], status_codes[s],
                    S.requests[r][s]);
    int running = 0;
    for (job *j = S.jobs; j; j = j->next) running += j->state == JS_RUNNING;
    OUT("# HELP t2i_queue_depth Jobs waiting for the worker.\n# TYPE t2i_queue_depth gauge\nt2i_queue_depth %d\n",
        S.queued);
    OUT("# HELP t2i_jobs_running Jobs being run.\n# TYPE t2i_jobs_running gauge\nt2i_jobs_running %d\n", running);
    OUT("# HELP t2i_jobs_total Jobs ended, by final state.\n# TYPE t2i_jobs_total counter\n");
    for (int s = JS_DONE; s <= JS_CANCELLED; s++)
        OUT("t2i_jobs_total{state=\"%s\"} %lu\n", state_names[s], S.jobs_ended[s]);
    OUT("# HELP t2i_images_generated_total Images returned by generations.\n"
        "# TYPE t2i_images_generated_total counter\nt2i_images_generated_total %lu\n", S.images_generated);
    OUT("# HELP t2i_generation_seconds Time of a generation job on the worker.\n"
        "# TYPE t2i_generation_seconds histogram\n");
    unsigned long cum = 0;
    for (int i = 0; i < N_HIST; i++) {
        cum += S.hist[i];
        OUT("t2i_generation_seconds_bucket{le=\"%g\"} %lu\n", hist_bounds[i], cum);
    }
    OUT("t2i_generation_seconds_bucket{le=\"+Inf\"} %lu\n", S.hist_count);
    OUT("t2i_generation_seconds_sum %.6f\nt2i_generation_seconds_count %lu\n", S.hist_sum, S.hist_count);
    pthread_mutex_unlock(&S.mu);
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
    for (int i = 0; i < S.nmodels; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", S.models[i].id);
        cJSON_AddStringToObject(e, "object", "model");
        cJSON_AddStringToObject(e, "kind", S.models[i].kind);
        cJSON_AddStringToObject(e, "file", S.models[i].file);
        cJSON_AddNumberToObject(e, "parameters", (double)S.models[i].parameters);
        cJSON_AddNumberToObject(e, "resolution", S.models[i].resolution);
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
    if (!j->use_dalle || j->use_gan || gen_pipeline_prompt_shape(S.pl, &C, &R, &g) != 0) {
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
    if (serve_parse_gen(cn->body, cn->len, &S.lim, for_job, &j->gen, err, sizeof err) != 0) {
        free(j);
        *ret = send_error(c, route, 400, NULL, "%s", err);
        return NULL;
    }
    serve_gen_req *q = &j->gen;
    const char *why = NULL;
    int have_d = S.pl->dalle_index >= 0, have_g = S.pl->gan_index >= 0;
    switch (q->generator) {
    case SERVE_GEN_AUTO: j->use_dalle = have_d, j->use_gan = have_g; break;
    case SERVE_GEN_DALLE: j->use_dalle = 1, why = have_d ? NULL : "dalle"; break;
    case SERVE_GEN_GAN: j->use_gan = 1, why = have_g ? NULL : "gan"; break;
    case SERVE_GEN_BOTH: j->use_dalle = j->use_gan = 1, why = !have_d ? "dalle" : !have_g ? "gan" : NULL; break;
    }
    j->upscale = q->upscale < 0 ? S.pl->have_sr : q->upscale;
    int nsrc = j->use_dalle + j->use_gan;
    int res = j->upscale && S.up_res ? S.up_res : S.out_res;
    if (why) {
        *ret = send_error(c, route, 400, NULL, "generator: the %s model is not loaded (start the server with --%s "
                                               "or --generator both)", why, why);
    } else if (j->upscale && !S.pl->have_sr) {
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
        if (j->use_dalle) used[nused++] = S.pl->src[S.pl->dalle_index];
        if (j->use_gan) used[nused++] = S.pl->src[S.pl->gan_index];
        char msg[8192];
        if (gen_unknown_words(used, nused, q->prompt, msg, sizeof msg) > 0) j->warnings = t2i_strdup(msg);
        return j;
    }
    job_free(j);
    return NULL;
}

/* Waits (under the lock) until j has ended or the server stops. */
static void wait_end(job *j) {
    while (j->state <= JS_RUNNING && !S.stopping) pthread_cond_wait(&S.cv, &S.mu);
}

static enum MHD_Result do_generations(struct MHD_Connection *c, const conn *cn) {
    enum MHD_Result ret;
    job *j = gen_job(c, R_GEN, cn, 0, &ret);
    if (!j) return ret;
    j->kind = JOB_GEN, j->listed = 1;
    if (job_enqueue(j) != 0) {
        job_free(j);
        return send_error(c, R_GEN, 429, NULL, "the queue is full (%d jobs waiting); try again later", S.queue_cap);
    }
    pthread_mutex_lock(&S.mu);
    wait_end(j);
    int state = j->state;
    cJSON *o = NULL;
    char *err = NULL;
    if (state == JS_DONE) {
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "created", (double)j->created);
        cJSON *d = cJSON_AddArrayToObject(o, "data");
        for (int i = 0; i < j->n; i++) {
            cJSON *e = cJSON_CreateObject();
            if (j->gen.response_url) {
                char url[64];
                snprintf(url, sizeof url, "/v1/files/%s/%d.png", j->name, i);
                cJSON_AddStringToObject(e, "url", url);
            } else {
                char *b = serve_base64_encode(j->png[i], j->png_len[i]);
                cJSON_AddStringToObject(e, "b64_json", b);
                free(b);
            }
            cJSON_AddNumberToObject(e, "score", j->res[i].score);
            cJSON_AddStringToObject(e, "source", j->res[i].source_name);
            cJSON_AddNumberToObject(e, "seed", (double)j->gen.seed);
            cJSON_AddNumberToObject(e, "candidate", (double)j->res[i].candidate);
            cJSON_AddItemToArray(d, e);
        }
        cJSON_AddStringToObject(o, "id", j->name);
        add_warnings(o, j);
    } else if (state == JS_FAILED) {
        err = t2i_strdup(j->error ? j->error : "failed");
    }
    job_unref(j);
    pthread_mutex_unlock(&S.mu);
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
    job *j = gen_job(c, R_JOBS, cn, 1, &ret);
    if (!j) return ret;
    j->kind = JOB_GEN, j->listed = 1;
    if (job_enqueue(j) != 0) {
        job_free(j);
        return send_error(c, R_JOBS, 429, NULL, "the queue is full (%d jobs waiting); try again later", S.queue_cap);
    }
    pthread_mutex_lock(&S.mu);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->name);
    cJSON_AddStringToObject(o, "state", "queued");
    job_unref(j);
    pthread_mutex_unlock(&S.mu);
    return send_json(c, R_JOBS, 202, o);
}

static enum MHD_Result do_job_list(struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    pthread_mutex_lock(&S.mu);
    for (job *j = S.jobs; j; j = j->next)
        if (j->listed) cJSON_AddItemToArray(d, job_json(j, 0));
    pthread_mutex_unlock(&S.mu);
    return send_json(c, R_JOBS, 200, o);
}

static enum MHD_Result do_job(struct MHD_Connection *c, const char *method, const char *id) {
    pthread_mutex_lock(&S.mu);
    job *j = job_find(id);
    if (!j) {
        pthread_mutex_unlock(&S.mu);
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
            S.queued--;
            S.jobs_ended[JS_CANCELLED]++;
            table_evict();
            pthread_cond_broadcast(&S.cv);
        } else {
            /* running: the progress callback stops it after the current batch */
            j->refs++;
            while (j->state == JS_RUNNING && !S.stopping) pthread_cond_wait(&S.cv, &S.mu);
            cJSON *o = job_json(j, 1);
            job_unref(j);
            pthread_mutex_unlock(&S.mu);
            return send_json(c, R_JOB, 200, o);
        }
    }
    cJSON *o = job_json(j, 1);
    pthread_mutex_unlock(&S.mu);
    return send_json(c, R_JOB, 200, o);
}

static enum MHD_Result do_file(struct MHD_Connection *c, const char *id, int rank) {
    pthread_mutex_lock(&S.mu);
    job *j = job_find(id);
    if (!j || j->state != JS_DONE || rank >= j->n) {
        pthread_mutex_unlock(&S.mu);
        return send_error(c, R_FILES, 404, NULL, "no such file (a job's files are kept while it is among the last %d)",
                          SERVE_KEEP_JOBS);
    }
    size_t n = j->png_len[rank];
    void *b = t2i_malloc(n);
    memcpy(b, j->png[rank], n);
    pthread_mutex_unlock(&S.mu);
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
        pthread_mutex_lock(&S.mu);
        while (e->j->seq == e->seq && e->j->state <= JS_RUNNING && !S.stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&S.cv, &S.mu, &ts);
        }
        e->seq = e->j->seq;
        if (e->j->state > JS_RUNNING) {
            cJSON *o = job_json(e->j, 1);
            char *s = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            e->pending = t2i_asprintf("event: %s\ndata: %s\n\n", state_names[e->j->state], s);
            cJSON_free(s);
            e->ended = 1;
        } else if (S.stopping) {
            e->pending = t2i_strdup("event: cancelled\ndata: {\"error\":\"the server is stopping\"}\n\n");
            e->ended = 1;
        } else {
            long total = e->j->total ? e->j->total : (long)e->j->gen.candidates * (e->j->use_dalle + e->j->use_gan);
            e->pending = t2i_asprintf("event: progress\ndata: {\"done\":%ld,\"total\":%ld}\n\n", e->j->done, total);
        }
        pthread_mutex_unlock(&S.mu);
        e->len = strlen(e->pending);
    }
    size_t k = e->len - e->off < max ? e->len - e->off : max;
    memcpy(buf, e->pending + e->off, k);
    e->off += k;
    return (ssize_t)k;
}

static void sse_free(void *cls) {
    sse *e = cls;
    pthread_mutex_lock(&S.mu);
    job_unref(e->j);
    pthread_mutex_unlock(&S.mu);
    free(e->pending);
    free(e);
}

static enum MHD_Result do_events(struct MHD_Connection *c, const char *id) {
    pthread_mutex_lock(&S.mu);
    job *j = job_find(id);
    if (!j) {
        pthread_mutex_unlock(&S.mu);
        char s[64];
        return send_error(c, R_EVENTS, 404, NULL, "no job '%s'", t2i_text_show(id, 40, s, sizeof s));
    }
    j->refs++;
    sse *e = t2i_calloc(1, sizeof *e);
    e->j = j;
    e->seq = j->seq - 1; /* the first read reports the current progress (or the end) at once */
    pthread_mutex_unlock(&S.mu);
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
    if (job_enqueue(j) != 0) {
        job_free(j);
        *ret = send_error(c, route, 429, NULL, "the queue is full (%d jobs waiting); try again later", S.queue_cap);
        return -1;
    }
    pthread_mutex_lock(&S.mu);
    wait_end(j);
    table_remove(j);
    int state = j->state;
    char *err = state == JS_FAILED ? t2i_strdup(j->error ? j->error : "failed") : NULL;
    pthread_mutex_unlock(&S.mu);
    if (state == JS_DONE) return 0;
    if (err) *ret = send_error(c, route, 400, NULL, "%s", err);
    else *ret = send_error(c, route, 503, NULL, "the server is stopping");
    free(err);
    pthread_mutex_lock(&S.mu);
    job_unref(j);
    pthread_mutex_unlock(&S.mu);
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

static enum MHD_Result do_rerank(struct MHD_Connection *c, const conn *cn) {
    job *j = t2i_calloc(1, sizeof *j);
    char err[512];
    enum MHD_Result ret;
    if (serve_parse_rerank(cn->body, cn->len, &S.lim, &j->rr, err, sizeof err) != 0) {
        free(j);
        return send_error(c, R_RERANK, 400, NULL, "%s", err);
    }
    j->imgs = t2i_calloc((size_t)j->rr.n, sizeof *j->imgs);
    if (decode_images(c, R_RERANK, j->rr.images, j->rr.n, "images", j->imgs, &ret) != 0) {
        job_free(j);
        return ret;
    }
    j->nimg = j->rr.n;
    j->kind = JOB_RERANK;
    if (run_clip_job(c, R_RERANK, j, &ret) != 0) return ret;
    val_idx *v = t2i_malloc((size_t)j->n * sizeof *v);
    for (int i = 0; i < j->n; i++) v[i] = (val_idx){j->scores[i], i};
    qsort(v, (size_t)j->n, sizeof *v, cmp_val);
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < j->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", v[i].i);
        cJSON_AddNumberToObject(e, "score", v[i].v);
        cJSON_AddItemToArray(d, e);
    }
    free(v);
    pthread_mutex_lock(&S.mu);
    job_unref(j);
    pthread_mutex_unlock(&S.mu);
    return send_json(c, R_RERANK, 200, o);
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
        job_free(j);
        return ret;
    }
    j->nimg = 1;
    j->kind = JOB_CLASSIFY;
    if (run_clip_job(c, R_CLASSIFY, j, &ret) != 0) return ret;
    val_idx *v = t2i_malloc((size_t)j->n * sizeof *v);
    for (int i = 0; i < j->n; i++) v[i] = (val_idx){j->scores[i], i};
    qsort(v, (size_t)j->n, sizeof *v, cmp_val);
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < j->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "label", j->cl.labels[v[i].i]);
        cJSON_AddNumberToObject(e, "probability", v[i].v);
        cJSON_AddItemToArray(d, e);
    }
    free(v);
    pthread_mutex_lock(&S.mu);
    job_unref(j);
    pthread_mutex_unlock(&S.mu);
    return send_json(c, R_CLASSIFY, 200, o);
}

/* ---- the access handler ---- */

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
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
        if (cl && strtoull(cl, NULL, 10) > S.max_body)
            return send_error(c, route, 413, NULL, "the body has %s bytes, more than --max-body %zu", cl, S.max_body);
        return MHD_YES;
    }
    if (*upload_size) {
        if (t2i_now() - cn->start > S.timeout) return send_error(c, route, 408, NULL, "the request body came too slowly");
        if (!cn->too_big && cn->len + *upload_size > S.max_body) {
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
    if (cn->too_big) return send_error(c, route, 413, NULL, "the body is larger than --max-body %zu bytes", S.max_body);
    int post = strcmp(method, "POST") == 0;
    switch (route) {
    case R_PAGE:
        return send_buf(c, route, 200, "text/html; charset=utf-8", (void *)serve_page_html, serve_page_html_len,
                        MHD_RESPMEM_PERSISTENT, NULL);
    case R_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        pthread_mutex_lock(&S.mu);
        cJSON_AddNumberToObject(o, "queue", S.queued);
        pthread_mutex_unlock(&S.mu);
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

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn *cn = *con_cls;
    if (cn) free(cn->body), free(cn);
    *con_cls = NULL;
}

/* ------------------------------------------------------------- the command ---- */

static size_t file_parameters(const char *path) {
    st_file f;
    if (!path || st_open(&f, path) != 0) return 0;
    size_t n = 0;
    for (int i = 0; i < f.n; i++)
        if (strncmp(f.t[i].name, "opt_", 4) != 0) n += f.t[i].numel;
    st_close(&f);
    return n;
}

static void add_model(const char *id, const char *kind, const char *file, int res) {
    if (!file) return;
    S.models[S.nmodels++] = (model_info){id, kind, file, file_parameters(file), res};
}

int serve_cmd(int argc, char **argv) {
    const char *host = "127.0.0.1", *models = NULL, *clip_path = NULL, *clip_vocab = NULL, *dalle_path = NULL,
               *vq_path = NULL, *gan_path = NULL, *upscale = NULL, *generator = "auto", *api_key = NULL;
    int port = 8080, threads = 0, queue = 16, max_candidates = 2048, batch = 64, timeout = 10, max_images = 64;
    long max_body = 16L << 20;
    t2i_flag flags[] = {
        {"--host", T2I_STR, &host, "address to listen on (an IPv4 address)"},
        {"--port", T2I_INT, &port, "port (0 = a free one, printed at start)"},
        {"--models", T2I_STR, &models, "folder of the default models (default $T2I_MODELS, else samples/models)"},
        {"--clip", T2I_STR, &clip_path, "CLIP checkpoint (rerank, classify, generation ranking)"},
        {"--clip-vocab", T2I_STR, &clip_vocab, "BPE vocabulary for a CLIP file without one (e.g. OpenAI's)"},
        {"--dalle", T2I_STR, &dalle_path, "DALL-E checkpoint"},
        {"--vq", T2I_STR, &vq_path, "VQ checkpoint (default: the DALL-E file's, else the shipped one)"},
        {"--gan", T2I_STR, &gan_path, "caption-conditioned GAN checkpoint"},
        {"--generator", T2I_STR, &generator, "models to load: dalle, gan, both, or auto (as t2i generate)"},
        {"--upscale", T2I_STR, &upscale, "super-resolution checkpoint: kept images are upscaled by default"},
        {"--threads", T2I_INT, &threads, "threads of the model work (0 = all cores)"},
        {"--batch", T2I_INT, &batch, "candidates generated together"},
        {"--queue", T2I_INT, &queue, "jobs that may wait (more get 429)"},
        {"--max-candidates", T2I_INT, &max_candidates, "largest \"candidates\" of a request"},
        {"--max-images", T2I_INT, &max_images, "largest number of images of a rerank"},
        {"--max-body", T2I_LONG, &max_body, "largest request body in bytes (more gets 413)"},
        {"--timeout", T2I_INT, &timeout, "seconds a client may take to send a request"},
        {"--api-key", T2I_STR, &api_key, "require Authorization: Bearer KEY on /v1/ (default $T2I_API_KEY)"},
    };
    t2i_cmd cmd = {"t2i serve", "Serve generation, reranking and zero-shot classification over HTTP.",
                   "[--host H] [--port P] [--models DIR] [--clip F] [--dalle F] [--gan F] [--upscale F] [options]",
                   flags, (int)(sizeof flags / sizeof flags[0]),
                   "Loads the models once, then answers on http://HOST:PORT: POST /v1/images/generations\n"
                   "(OpenAI-style), /v1/jobs (progress as server-sent events), /v1/rerank, /v1/classify,\n"
                   "GET /v1/models, /health, /metrics and the page at /. One worker runs the model calls\n"
                   "in order. Ctrl-C or SIGTERM stops it (exit 0). Prints `t2i serve: listening on URL`."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("serve: unexpected argument '%s'", cmd.pos[0]), 2;
    if (t2i_check_range_i("--port", port, 0, 65535) || t2i_check_range_i("--queue", queue, 1, 100000) ||
        t2i_check_range_i("--max-candidates", max_candidates, 1, 1000000) ||
        t2i_check_range_i("--batch", batch, 1, 4096) || t2i_check_range_i("--timeout", timeout, 1, 3600) ||
        t2i_check_range_i("--max-images", max_images, 1, 4096) ||
        t2i_check_range_i("--max-body", max_body, 1024, 1L << 30))
        return 2;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return t2i_fail("serve: --host must be an IPv4 address such as 127.0.0.1, not '%s'", host), 2;
    if (!api_key) {
        const char *e = getenv("T2I_API_KEY");
        if (e && *e) api_key = e;
    }
    if (api_key && !*api_key) return t2i_fail("serve: --api-key is empty"), 2;
    t2i_set_threads(threads);

    gen_pipeline_cfg pc;
    gen_pipeline_cfg_defaults(&pc);
    pc.models_dir = models, pc.clip_path = clip_path, pc.clip_vocab = clip_vocab, pc.dalle_path = dalle_path;
    pc.vq_path = vq_path, pc.gan_path = gan_path, pc.upscale_path = upscale, pc.generator = generator;
    pc.batch = batch;
    fprintf(stderr, "t2i serve: loading models\n");
    gen_pipeline *pl = gen_pipeline_load(&pc);
    if (!pl) return t2i_fail("serve: %s", t2i_error_msg()), 1;

    memset(&S, 0, sizeof S);
    S.pl = pl;
    S.lim = (serve_limits){max_candidates, max_images, pl->sample};
    S.queue_cap = queue, S.max_body = (size_t)max_body, S.timeout = timeout, S.api_key = api_key;
    S.out_res = pl->nsrc ? pl->src[0]->H : 0;
    S.up_res = pl->have_sr ? S.out_res * pl->sr.cfg.scale : 0;
    if (pl->dalle_index >= 0) {
        add_model("dalle", "dalle", pl->dalle_file, pl->src[pl->dalle_index]->H);
        add_model("vq", "vq", pl->vq_file, pl->src[pl->dalle_index]->H);
    }
    if (pl->gan_index >= 0) add_model("gan", "gan", pl->gan_file, pl->src[pl->gan_index]->H);
    add_model("clip", "clip", pl->clip_file, clip_resolution(pl->clip));
    if (pl->have_sr) add_model("upscale", "upscale", pl->upscale_file, S.up_res);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cv, NULL);

    /* every thread started from here on inherits the blocked signals; main takes them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t wt;
    pthread_create(&wt, NULL, worker, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
        handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)timeout, MHD_OPTION_CONNECTION_LIMIT, 128u, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
        MHD_OPTION_END);
    int rc = 0;
    if (!d) {
        rc = t2i_fail("serve: cannot listen on %s:%d (%s)", host, port, errno ? strerror(errno) : "port in use?");
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
        struct sockaddr_in bound;
        socklen_t bl = sizeof bound;
        int real_port = port;
        if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &bl) == 0) real_port = ntohs(bound.sin_port);
        printf("t2i serve: listening on http://%s:%d\n", host, real_port);
        fflush(stdout);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "t2i serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        MHD_quiesce_daemon(d);
    }
    pthread_mutex_lock(&S.mu);
    S.stopping = 1;
    for (job *j = S.jobs; j; j = j->next) j->cancel = 1, atomic_store(&j->stop, 1);
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    pthread_join(wt, NULL);
    if (d) MHD_stop_daemon(d);
    for (job *j = S.jobs, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    S.jobs = NULL;
    pthread_mutex_destroy(&S.mu);
    pthread_cond_destroy(&S.cv);
    gen_pipeline_free(pl);
    return rc ? 1 : 0;
}
