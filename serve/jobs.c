/* jobs.c - `t2i serve`'s job table, its bounded queue, the worker thread that runs every
 * model call in order, and a job's JSON (see server_state.h for the locking rules).
 */
#include "server_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

const char *const serve_state_names[5] = {"queued", "running", "done", "failed", "cancelled"};
const double serve_hist_bounds[SERVE_N_HIST] = {0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600};

void serve_job_free(job *j) {
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
void serve_job_unref(job *j) {
    if (--j->refs == 0 && !j->in_table) serve_job_free(j);
}

void serve_table_remove(job *j) {
    for (job **p = &serve_g.jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            j->in_table = 0;
            return;
        }
}

/* Keeps the newest SERVE_KEEP_JOBS finished jobs (queued and running ones always stay). */
void serve_table_evict(void) {
    int kept = 0;
    for (job *j = serve_g.jobs, *next; j; j = next) {
        next = j->next;
        if (j->state <= JS_RUNNING || !j->listed) continue;
        if (++kept > SERVE_KEEP_JOBS) {
            serve_table_remove(j);
            if (j->refs == 0) serve_job_free(j);
        }
    }
}

job *serve_job_find(const char *name) {
    for (job *j = serve_g.jobs; j; j = j->next)
        if (j->listed && strcmp(j->name, name) == 0) return j;
    return NULL;
}

/* Adds j to the queue (the caller keeps one reference). 0; -1 when the queue is full; -2
 * when the server is stopping. */
int serve_job_enqueue(job *j) {
    pthread_mutex_lock(&serve_g.mu);
    if (serve_g.queued >= serve_g.queue_cap || serve_g.stopping) {
        int rc = serve_g.stopping ? -2 : -1;
        pthread_mutex_unlock(&serve_g.mu);
        return rc;
    }
    j->id = ++serve_g.next_id;
    snprintf(j->name, sizeof j->name, "job-%ld", j->id);
    j->created = time(NULL);
    j->state = JS_QUEUED;
    j->refs = 1;
    j->in_table = 1;
    j->next = serve_g.jobs;
    serve_g.jobs = j;
    serve_g.queued++;
    pthread_cond_broadcast(&serve_g.cv);
    pthread_mutex_unlock(&serve_g.mu);
    return 0;
}

/* ---------------------------------------------------------------- worker ---- */

static int on_progress(void *arg, long done, long total) {
    job *j = arg;
    pthread_mutex_lock(&serve_g.mu);
    j->done = done, j->total = total;
    j->seq++;
    int stop = j->cancel || serve_g.stopping;
    pthread_cond_broadcast(&serve_g.cv);
    pthread_mutex_unlock(&serve_g.mu);
    return stop;
}

/* Runs a generation; fills the results (PNG bytes) or the error. */
static int run_gen(job *j) {
    gen_call k;
    gen_call_defaults(serve_g.pl, &k);
    k.use_dalle = j->use_dalle, k.use_gan = j->use_gan;
    k.candidates = j->gen.candidates, k.top = j->gen.n, k.seed = j->gen.seed;
    k.sample = j->gen.sample;
    k.upscale = j->upscale;
    k.quiet = 1;
    k.progress = on_progress, k.progress_arg = j;
    k.stop = &j->stop;
    k.image = j->prompt_img, k.keep = j->prompt_keep;
    gen_ranked r;
    if (gen_pipeline_run(serve_g.pl, j->gen.prompt, &k, &r) != 0) return -1;
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
    pthread_mutex_lock(&serve_g.mu);
    j->png = png, j->png_len = len, j->res = res, j->n = n;
    pthread_mutex_unlock(&serve_g.mu);
    return rc;
}

/* Each image's cosine similarity to the prompt, the mean over the CLIPs of an ensemble
 * (as generation ranks its candidates: generate.h, gen_opts). */
static int run_rerank(job *j) {
    const gen_pipeline *pl = serve_g.pl;
    int n = j->nimg, nm = 1 + pl->n_clip_more, rc = 0;
    float *cos = t2i_calloc((size_t)n, sizeof(float));
    const char *p = j->rr.prompt;
    for (int k = 0; k < nm && rc == 0; k++) {
        clip_model *m = k ? pl->clip_more[k - 1] : pl->clip;
        int D = clip_embed_dim(m);
        float *t = t2i_malloc((size_t)D * sizeof(float)), *f = t2i_malloc((size_t)n * D * sizeof(float));
        rc = clip_embed_texts(m, &p, 1, t);
        if (rc == 0) {
            clip_embed_u8(m, j->imgs, n, f);
            clip_cosine_add(f, n, t, 1, D, cos);
        }
        free(t), free(f);
    }
    for (int i = 0; nm > 1 && i < n; i++) cos[i] /= (float)nm;
    pthread_mutex_lock(&serve_g.mu);
    if (rc == 0) j->scores = cos, j->n = n;
    else free(cos);
    pthread_mutex_unlock(&serve_g.mu);
    return rc;
}

static int run_classify(job *j) {
    float *prob = t2i_malloc((size_t)j->cl.n * sizeof(float));
    int rc = clip_zeroshot_probs(serve_g.pl->clip, &j->imgs[0], (const char *const *)j->cl.labels, j->cl.n, prob, NULL);
    pthread_mutex_lock(&serve_g.mu);
    if (rc == 0) j->scores = prob, j->n = j->cl.n;
    else free(prob);
    pthread_mutex_unlock(&serve_g.mu);
    return rc;
}

void *serve_worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&serve_g.mu);
    for (;;) {
        job *next = NULL;
        while (!serve_g.stopping) {
            for (job *j = serve_g.jobs; j; j = j->next)
                if (j->state == JS_QUEUED) next = j; /* the oldest: the table is newest first */
            if (next) break;
            pthread_cond_wait(&serve_g.cv, &serve_g.mu);
        }
        if (serve_g.stopping) break;
        serve_g.queued--;
        next->refs++;
        if (next->cancel) {
            next->state = JS_CANCELLED;
            next->seq++;
            serve_g.jobs_ended[JS_CANCELLED]++;
            pthread_cond_broadcast(&serve_g.cv);
            serve_job_unref(next);
            continue;
        }
        next->state = JS_RUNNING;
        next->seq++;
        pthread_cond_broadcast(&serve_g.cv);
        pthread_mutex_unlock(&serve_g.mu);
        double t0 = t2i_now();
        int rc = next->kind == JOB_GEN ? run_gen(next) : next->kind == JOB_RERANK ? run_rerank(next) : run_classify(next);
        double dt = t2i_now() - t0;
        char *err = rc ? t2i_strdup(t2i_error_msg()) : NULL;
        pthread_mutex_lock(&serve_g.mu);
        next->seconds = dt;
        if (rc == 0) {
            next->state = JS_DONE;
            if (next->kind == JOB_GEN) {
                serve_g.images_generated += (unsigned long)next->n;
                int b = 0;
                while (b < SERVE_N_HIST && dt > serve_hist_bounds[b]) b++;
                serve_g.hist[b]++;
                serve_g.hist_sum += dt;
                serve_g.hist_count++;
            }
        } else if (next->cancel || serve_g.stopping || strcmp(err, "cancelled") == 0) {
            next->state = JS_CANCELLED;
        } else {
            next->state = JS_FAILED;
            next->error = err;
            err = NULL;
        }
        free(err);
        serve_g.jobs_ended[next->state]++;
        next->seq++;
        serve_table_evict();
        pthread_cond_broadcast(&serve_g.cv);
        serve_job_unref(next);
    }
    /* shutdown: whatever still waits is cancelled */
    for (job *j = serve_g.jobs; j; j = j->next)
        if (j->state == JS_QUEUED) j->state = JS_CANCELLED, j->seq++;
    serve_g.queued = 0;
    pthread_cond_broadcast(&serve_g.cv);
    pthread_mutex_unlock(&serve_g.mu);
    return NULL;
}

/* ------------------------------------------------------------------ JSON ---- */

/* "warnings": one string per line of j->warnings (an empty array when none); a line is
 * at most about 1.5 kB (gen_unknown_words bounds it). */
void serve_add_warnings(cJSON *o, const job *j) {
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    for (const char *line = j->warnings, *e; line && *line; line = e + 1) {
        e = strchr(line, '\n');
        char one[2048];
        snprintf(one, sizeof one, "%.*s", (int)(e - line), line);
        cJSON_AddItemToArray(w, cJSON_CreateString(one));
    }
}

/* The job object of the API (under the lock); with_data adds the results when done. */
cJSON *serve_job_json(const job *j, int with_data) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->name);
    cJSON_AddStringToObject(o, "state", serve_state_names[j->state]);
    cJSON_AddStringToObject(o, "prompt", j->gen.prompt ? j->gen.prompt : "");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "done", (double)j->done);
    cJSON_AddNumberToObject(p, "total", (double)(j->total ? j->total : (long)j->gen.candidates * (j->use_dalle + j->use_gan)));
    serve_add_warnings(o, j);
    cJSON_AddNumberToObject(o, "n", j->gen.n);
    cJSON_AddNumberToObject(o, "candidates", j->gen.candidates);
    cJSON_AddNumberToObject(o, "seed", (double)j->gen.seed);
    if (j->state == JS_FAILED) cJSON_AddStringToObject(o, "error", j->error ? j->error : "failed");
    if (with_data && j->state == JS_DONE) serve_add_results(o, j, 0);
    return o;
}

void serve_add_results(cJSON *o, const job *j, int b64) {
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < j->n; i++) {
        cJSON *e = cJSON_CreateObject();
        if (b64) {
            char *b = serve_base64_encode(j->png[i], j->png_len[i]);
            cJSON_AddStringToObject(e, "b64_json", b);
            free(b);
        } else {
            char url[64];
            snprintf(url, sizeof url, "/v1/files/%s/%d.png", j->name, i);
            cJSON_AddStringToObject(e, "url", url);
        }
        cJSON_AddNumberToObject(e, "score", j->res[i].score);
        cJSON_AddStringToObject(e, "source", j->res[i].source_name);
        cJSON_AddNumberToObject(e, "seed", (double)j->gen.seed);
        cJSON_AddNumberToObject(e, "candidate", (double)j->res[i].candidate);
        cJSON_AddItemToArray(d, e);
    }
}
