/* rank.c - CLIP reranking of the candidates of every source (gen_rank_caption in
 * generate.h): the caption is embedded once, each batch of candidates is embedded and
 * scored by cosine similarity, and only the best `top` images are kept as it goes (ties:
 * source order, then candidate index).
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "generate.h"
#include "progress.h"

void gen_ranked_free(gen_ranked *r) {
    for (int i = 0; i < r->n; i++) free(r->images[i]);
    free(r->images), free(r->res), free(r->C), free(r->H), free(r->W);
    memset(r, 0, sizeof *r);
}

int gen_rank_caption(clip_model *clip, gen_source *const *src, int nsrc, const char *caption, const gen_opts *o,
                     gen_ranked *r) {
    T2I_ASSERT(nsrc > 0 && o->candidates > 0 && o->top > 0);
    memset(r, 0, sizeof *r);
    int D = clip_embed_dim(clip);
    for (int s = 0; s < nsrc; s++)
        if (src[s]->clip_dim > 0 && clip_check_embed_dim(clip, src[s]->clip_dim, src[s]->name) != 0) return -1;
    float *temb = t2i_malloc((size_t)D * sizeof(float));
    if (clip_embed_texts(clip, &caption, 1, temb) != 0) {
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
    for (int s = 0; s < nsrc && !rc; s++) {
        gen_source *g = src[s];
        int bs = g->batch > 0 ? g->batch : 32;
        size_t isz = (size_t)g->C * g->H * g->W;
        float *imgs = t2i_malloc((size_t)bs * isz * sizeof(float));
        float *feats = t2i_malloc((size_t)bs * D * sizeof(float)), *scores = t2i_malloc((size_t)bs * sizeof(float));
        for (long first = 0; first < o->candidates && !rc; first += bs) {
            int n = o->candidates - first < bs ? (int)(o->candidates - first) : bs;
            double t0 = t2i_now();
            if (g->generate(g, caption, g->clip_dim ? temb : NULL, o->seed, first, n, imgs) != 0) {
                rc = t2i_error_prefix("%s source", g->name);
                break;
            }
            double t1 = t2i_now();
            if (clip_embed_images(clip, imgs, n, g->C, g->H, g->W, feats) != 0) {
                rc = -1;
                break;
            }
            clip_cosine(feats, n, temb, 1, D, scores);
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
    if (!o->quiet && !rc) t2i_progress_end(&prog, (long)nsrc * o->candidates, "best %.4f", r->n ? (double)r->res[0].score : 0.0);
    free(temb);
    if (rc) gen_ranked_free(r);
    return rc;
}
