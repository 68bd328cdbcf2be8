/* server_state.h - private to serve/: the state that the job table and worker (jobs.c),
 * the HTTP routes (routes.c) and the command (server.c) share.
 *
 * Every piece of shared state (jobs, queue, counters) is under one mutex with one
 * condition variable, broadcast on every change: a job's progress, its end, a new job,
 * shutdown. Jobs are reference-counted: a handler that waits on a job (a generation, an
 * event stream) holds a reference, so evicting it from the table of recent jobs (the
 * last SERVE_KEEP_JOBS finished ones are kept) never frees memory in use.
 */
#ifndef T2I_SERVE_STATE_H
#define T2I_SERVE_STATE_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "image.h"
#include "pipeline.h"
#include "request.h"

enum { SERVE_KEEP_JOBS = 32 };

typedef enum { JOB_GEN, JOB_RERANK, JOB_CLASSIFY } job_kind;
typedef enum { JS_QUEUED, JS_RUNNING, JS_DONE, JS_FAILED, JS_CANCELLED } job_state;
extern const char *const serve_state_names[5]; /* by job_state: "queued", ... */


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

/* Metrics: requests by route (routes.c's route_names) and status (its status_codes), and
 * the generation time histogram's bounds in seconds (serve_hist_bounds). */
enum { SERVE_N_ROUTES = 12, SERVE_N_STATUS = 11, SERVE_N_HIST = 10 };
extern const double serve_hist_bounds[SERVE_N_HIST];

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
    model_info models[5 + GEN_MAX_CLIPS]; /* dalle, vq, gan, upscale, and each CLIP */
    int nmodels;
    int out_res, up_res;      /* generated size; after upscaling (0 = no upscaler) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *jobs;
    long next_id;
    int queued;               /* jobs waiting */
    int stopping;
    int inflight;             /* requests begun and not yet completed (answers being sent) */
    /* metrics */
    unsigned long requests[SERVE_N_ROUTES][SERVE_N_STATUS];
    unsigned long jobs_ended[5], images_generated;
    unsigned long hist[SERVE_N_HIST + 1];
    double hist_sum;
    unsigned long hist_count;
} server;

/* The one server of the process (server.c), every field under mu but the configuration. */
extern server serve_g;


/* ---- jobs.c: the table, the queue, the worker, the job's JSON ---- */
void serve_job_free(job *j);
void serve_job_unref(job *j);        /* under the lock; frees an unreferenced job out of the table */
void serve_table_remove(job *j);     /* under the lock */
void serve_table_evict(void);        /* under the lock: keeps the newest SERVE_KEEP_JOBS finished jobs */
job *serve_job_find(const char *name); /* under the lock; listed jobs only */
/* Adds j to the queue (the caller keeps one reference). 0; -1 when the queue is full; -2
 * when the server is stopping. */
int serve_job_enqueue(job *j);
void *serve_worker(void *arg);       /* the worker thread: runs queued jobs in order until stopping */
void serve_add_warnings(cJSON *o, const job *j);
/* The job object of the API (under the lock); with_data adds the results when done. */
cJSON *serve_job_json(const job *j, int with_data);
/* "data": a done generation's images, best first, each with its score, source, seed and
 * candidate, and its PNG as "b64_json" (b64) or as a "url" under /v1/files/. Under the lock. */
void serve_add_results(cJSON *o, const job *j, int b64);

/* ---- routes.c: libmicrohttpd's access handler and its end-of-request callback ---- */
enum MHD_Result serve_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                             const char *version, const char *upload, size_t *upload_size, void **con_cls);
void serve_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);

/* ---- conns.c: the connection watchdog (cuts off clients whose headers take over --timeout) ---- */
void serve_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code); /* MHD_OPTION_NOTIFY_CONNECTION */
void serve_conn_mark(struct MHD_Connection *c, int in_request); /* 1: headers in; 0: request ended */
void serve_conn_watch_start(double timeout);
void serve_conn_watch_stop(void);
unsigned long serve_conn_cut_total(void); /* connections cut off so far */

#endif
