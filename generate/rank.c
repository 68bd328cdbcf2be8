/* rank.c - CLIP reranking of the candidates of every source (gen_rank_caption in
 * generate.h): the caption is embedded once, each batch of candidates is embedded and
 * scored by cosine similarity, and only the best `top` images are kept as it goes (ties:
 * source order, then candidate index).
 *
 * Under MPI (`mpirun -np N t2i generate`, run/dist.h) the batches are dealt out: batch b
 * of the run (counted over the sources in order) is made by rank b % N, with exactly the
 * candidates and batch composition a single process gives it, so every image and score is
 * the single process's. Each rank keeps its own best `top`; the ranks then gather those
 * (N x top rows of score, source, candidate, shape and pixels) and merge them with the same
 * order and tie rule, so every rank ends with the single process's results.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "dist.h"
#include "generate.h"
#include "progress.h"

void gen_ranked_free(gen_ranked *r) {
    for (int i = 0; i < r->n; i++) free(r->images[i]);
    free(r->images), free(r->res), free(r->C), free(r->H), free(r->W);
    memset(r, 0, sizeof *r);
}

/* The ranks' kept results merged into the best r->n of all, on every rank (see the top).
 * A row: score, source, candidate, C, H, W, then the pixels (padded to the largest image). */
enum { ROW_HEAD = 6 };
static void merge_ranks(gen_source *const *src, int nsrc, int cap, gen_ranked *r) {
    int nranks = t2i_dist_size();
    size_t isz = 0;
    for (int s = 0; s < nsrc; s++) isz = T2I_MAX(isz, (size_t)src[s]->C * src[s]->H * src[s]->W);
    size_t width = ROW_HEAD + isz;
    float *cnt = t2i_malloc((size_t)nranks * sizeof(float)), mine_n = (float)r->n;
    int *ones = t2i_malloc((size_t)nranks * sizeof(int)), *counts = t2i_malloc((size_t)nranks * sizeof(int));
    for (int k = 0; k < nranks; k++) ones[k] = 1;
    t2i_dist_gather(&mine_n, ones, 1, cnt);
    long total = 0;
    for (int k = 0; k < nranks; k++) counts[k] = (int)cnt[k], total += counts[k];
    float *mine = t2i_calloc((size_t)r->n * width + 1, sizeof(float));
    for (int i = 0; i < r->n; i++) {
        float *row = mine + (size_t)i * width;
        T2I_ASSERTF(r->res[i].candidate < (1L << 24), "candidate %ld", r->res[i].candidate);
        row[0] = r->res[i].score, row[1] = (float)r->res[i].source, row[2] = (float)r->res[i].candidate;
        row[3] = (float)r->C[i], row[4] = (float)r->H[i], row[5] = (float)r->W[i];
        memcpy(row + ROW_HEAD, r->images[i], (size_t)r->C[i] * r->H[i] * r->W[i] * sizeof(float));
    }
    float *all = t2i_malloc(((size_t)total * width + 1) * sizeof(float));
    t2i_dist_gather(mine, counts, width, all);
    double tg = r->seconds_generate, ts = r->seconds_score; /* this rank's own */
    gen_ranked_free(r);
    r->seconds_generate = tg, r->seconds_score = ts;
    /* the best cap rows by score, then source, then candidate: the single process's order */
    int *order = t2i_malloc((size_t)(total + 1) * sizeof(int));
    int n = 0;
    for (long k = 0; k < total; k++) {
        const float *a = all + (size_t)k * width;
        int pos = n;
        while (pos > 0) {
            const float *b = all + (size_t)order[pos - 1] * width;
            int before = a[0] > b[0] || (a[0] == b[0] && (a[1] < b[1] || (a[1] == b[1] && a[2] < b[2])));
            if (!before) break;
            if (pos < cap) order[pos] = order[pos - 1];
            pos--;
        }
        if (pos < cap) order[pos] = (int)k, n = T2I_MIN(n + 1, cap);
    }
    r->res = t2i_calloc((size_t)cap, sizeof *r->res);
    r->images = t2i_calloc((size_t)cap, sizeof *r->images);
    r->C = t2i_calloc((size_t)cap, sizeof(int)), r->H = t2i_calloc((size_t)cap, sizeof(int));
    r->W = t2i_calloc((size_t)cap, sizeof(int));
    for (int i = 0; i < n; i++) {
        const float *row = all + (size_t)order[i] * width;
        int s = (int)row[1];
        r->res[i] = (gen_result){s, (long)row[2], row[0], src[s]->name};
        r->C[i] = (int)row[3], r->H[i] = (int)row[4], r->W[i] = (int)row[5];
        size_t sz = (size_t)r->C[i] * r->H[i] * r->W[i];
        r->images[i] = t2i_malloc(sz * sizeof(float));
        memcpy(r->images[i], row + ROW_HEAD, sz * sizeof(float));
    }
    r->n = n;
    free(cnt), free(ones), free(counts), free(mine), free(all), free(order);
}

int gen_rank_caption(clip_model *clip, gen_source *const *src, int nsrc, const char *caption, const gen_opts *o,
                     gen_ranked *r) {
    T2I_ASSERT(nsrc > 0 && o->candidates > 0 && o->top > 0);
    memset(r, 0, sizeof *r);
    int D = clip_embed_dim(clip);
    for (int s = 0; s < nsrc; s++)
        if (src[s]->clip_dim > 0 && clip_check_embed_dim(clip, src[s]->clip_dim, src[s]->name) != 0) return -1;
    /* the caption in every CLIP of the ensemble: the first's (temb), then the others' */
    const int nm = 1 + o->n_more_clips;
    clip_model *const *more = o->more_clips;
    int Dmax = D;
    for (int k = 1; k < nm; k++) Dmax = T2I_MAX(Dmax, clip_embed_dim(more[k - 1]));
    float *temb = t2i_malloc((size_t)nm * Dmax * sizeof(float));
    for (int k = 0; k < nm; k++)
        if (clip_embed_texts(k ? more[k - 1] : clip, &caption, 1, temb + (size_t)k * Dmax) != 0) {
            free(temb);
            return -1;
        }
    int cap = o->top;
    r->res = t2i_calloc((size_t)cap, sizeof *r->res);
    r->images = t2i_calloc((size_t)cap, sizeof *r->images);
    r->C = t2i_calloc((size_t)cap, sizeof(int)), r->H = t2i_calloc((size_t)cap, sizeof(int));
    r->W = t2i_calloc((size_t)cap, sizeof(int));
    t2i_progress prog;
    if (!o->quiet) t2i_progress_start(&prog, "generate", 0, (long)nsrc * o->candidates);
    int rc = 0;
    int nranks = t2i_dist_size(), me = t2i_dist_rank();
    long batch_no = 0; /* over all sources: batch b is rank b % nranks's */
    for (int s = 0; s < nsrc && !rc; s++) {
        gen_source *g = src[s];
        int bs = g->batch > 0 ? g->batch : 32;
        size_t isz = (size_t)g->C * g->H * g->W;
        float *imgs = t2i_malloc((size_t)bs * isz * sizeof(float));
        float *feats = t2i_malloc((size_t)bs * Dmax * sizeof(float)), *scores = t2i_malloc((size_t)bs * sizeof(float));
        for (long first = 0; first < o->candidates && !rc; first += bs) {
            int n = o->candidates - first < bs ? (int)(o->candidates - first) : bs;
            if (batch_no++ % nranks != me) continue;
            double t0 = t2i_now();
            if (g->generate(g, caption, g->clip_dim ? temb : NULL, o->seed, first, n, imgs) != 0) {
                rc = t2i_error_prefix("%s source", g->name);
                break;
            }
            double t1 = t2i_now();
            memset(scores, 0, (size_t)n * sizeof(float));
            for (int k = 0; k < nm && !rc; k++) {
                clip_model *m = k ? more[k - 1] : clip;
                if (clip_embed_images(m, imgs, n, g->C, g->H, g->W, feats) != 0) rc = -1;
                else clip_cosine_add(feats, n, temb + (size_t)k * Dmax, 1, clip_embed_dim(m), scores);
            }
            if (rc) break;
            for (int i = 0; nm > 1 && i < n; i++) scores[i] /= (float)nm;
            r->seconds_generate += t1 - t0;
            r->seconds_score += t2i_now() - t1;
            for (int i = 0; i < n; i++) {
                float sc = scores[i];
                if (r->n == cap && !(sc > r->res[cap - 1].score)) continue;
                /* insert after every result with a score >= sc (earlier candidates win ties) */
                int pos = r->n < cap ? r->n : cap - 1;
                if (r->n == cap) free(r->images[cap - 1]);
                float *keep = t2i_malloc(isz * sizeof(float));
                while (pos > 0 && r->res[pos - 1].score < sc) {
                    r->res[pos] = r->res[pos - 1];
                    r->images[pos] = r->images[pos - 1];
                    r->C[pos] = r->C[pos - 1], r->H[pos] = r->H[pos - 1], r->W[pos] = r->W[pos - 1];
                    pos--;
                }
                r->res[pos] = (gen_result){s, first + i, sc, g->name};
                memcpy(keep, imgs + (size_t)i * isz, isz * sizeof(float));
                r->images[pos] = keep;
                r->C[pos] = g->C, r->H[pos] = g->H, r->W[pos] = g->W;
                if (r->n < cap) r->n++;
            }
            if (!o->quiet)
                t2i_progress_update(&prog, (long)s * o->candidates + first + n, "best %.4f",
                                    r->n ? (double)r->res[0].score : 0.0);
            if (o->progress && o->progress(o->progress_arg, (long)s * o->candidates + first + n,
                                           (long)nsrc * o->candidates) != 0) {
                rc = t2i_error_set("cancelled");
                break;
            }
        }
        free(imgs), free(feats), free(scores);
    }
    if (nranks > 1) {
        /* every rank takes part in the same collectives, failed or not */
        if (t2i_dist_any(rc != 0)) {
            if (!rc) rc = t2i_error_set("another rank failed");
        } else {
            merge_ranks(src, nsrc, cap, r);
        }
    }
    if (!o->quiet && !rc) t2i_progress_end(&prog, (long)nsrc * o->candidates, "best %.4f", r->n ? (double)r->res[0].score : 0.0);
    free(temb);
    if (rc) gen_ranked_free(r);
    return rc;
}
