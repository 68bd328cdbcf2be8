/* clip_score.c - CLIP on decoded images in memory, for callers that hold no files (the
 * server's /v1/rerank and /v1/classify): embeddings of 8-bit images and zero-shot label
 * probabilities, computed as `t2i clip rerank` and `t2i clip classify` compute them
 * (clip_preprocess_u8, cosine similarity, softmax(exp(logit_scale) * cosine)).
 */
#include <math.h>
#include <stdlib.h>

#include "base.h"
#include "clip.h"

void clip_embed_u8(clip_model *m, const t2i_image *imgs, int n, float *out) {
    int R = m->cfg.image_resolution, D = m->cfg.embed_dim;
    size_t item = (size_t)3 * R * R;
    float *px = t2i_malloc_aligned((size_t)CLIP_EMBED_BATCH * item * sizeof(float));
    for (int i0 = 0; i0 < n; i0 += CLIP_EMBED_BATCH) {
        int b = T2I_MIN(CLIP_EMBED_BATCH, n - i0);
        for (int i = 0; i < b; i++) clip_preprocess_u8(px + (size_t)i * item, &imgs[i0 + i], R);
        clip_embed_pixels(m, px, b, out + (size_t)i0 * D);
    }
    t2i_free(px);
}

int clip_zeroshot_probs(clip_model *m, const t2i_image *img, const char *const *labels, int K, float *prob,
                        float *cosine) {
    int D = m->cfg.embed_dim;
    float *te = t2i_malloc((size_t)K * D * sizeof(float)), *ie = t2i_malloc((size_t)D * sizeof(float));
    float *cs = t2i_malloc((size_t)K * sizeof(float));
    int rc = clip_embed_texts(m, labels, K, te);
    if (rc == 0) {
        clip_embed_u8(m, img, 1, ie);
        clip_cosine(ie, 1, te, K, D, cs);
        float s = clip_logit_scale_exp(m), mx = -INFINITY;
        for (int k = 0; k < K; k++) mx = fmaxf(mx, s * cs[k]);
        double z = 0;
        for (int k = 0; k < K; k++) z += exp(s * cs[k] - mx);
        for (int k = 0; k < K; k++) {
            prob[k] = (float)(exp(s * cs[k] - mx) / z);
            if (cosine) cosine[k] = cs[k];
        }
    }
    free(te), free(ie), free(cs);
    return rc;
}
