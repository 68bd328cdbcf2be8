/* cluster.c - pseudo-classes for unlabelled images: balanced k-means (nn/kmeans.h) on
 * average-pooled pixels. See t2i_dataset_cluster in data.h. */
#include <stdio.h>
#include <stdlib.h>

#include "base.h"
#include "data.h"
#include "kmeans.h"

#define CLUSTER_ROUNDS 30

int t2i_dataset_cluster(t2i_dataset *ds, int K, uint64_t seed) {
    if (K < 2 || K > ds->n) return t2i_error_set("%s: %d clusters of %d images", ds->source, K, ds->n);
    /* pool by 2 while the side stays at least 14: 28 -> 14, 32 -> 16, 64 -> 16 */
    int f = 1;
    while (ds->H / (2 * f) >= 14 && ds->H % (2 * f) == 0 && ds->W % (2 * f) == 0) f *= 2;
    int h = ds->H / f, w = ds->W / f, d = ds->C * h * w;
    size_t item = (size_t)ds->C * ds->H * ds->W;
    float *feat = t2i_malloc((size_t)ds->n * d * sizeof(float));
    int bad = -1;
#pragma omp parallel
    {
        float *img = t2i_malloc(item * sizeof(float));
#pragma omp for schedule(static)
        for (int i = 0; i < ds->n; i++) {
            if (t2i_dataset_get(ds, i, img) != 0) {
#pragma omp critical
                if (bad < 0 || i < bad) bad = i;
                continue;
            }
            float *o = feat + (size_t)i * d;
            for (int c = 0; c < ds->C; c++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) {
                        float s = 0.0f;
                        for (int u = 0; u < f; u++)
                            for (int v = 0; v < f; v++) s += img[((size_t)c * ds->H + y * f + u) * ds->W + x * f + v];
                        o[((size_t)c * h + y) * w + x] = s / (float)(f * f);
                    }
        }
        free(img);
    }
    if (bad >= 0) {
        free(feat);
        return t2i_error_set("%s: image %d could not be read for clustering", ds->source, bad);
    }
    int *lab = t2i_malloc((size_t)ds->n * sizeof(int));
    t2i_rng r;
    t2i_rng_seed(&r, seed ^ 0xc1a55e5ull);
    nn_kmeans_balanced(lab, NULL, feat, (size_t)ds->n, d, K, CLUSTER_ROUNDS, &r);
    free(feat);
    if (ds->class_names)
        for (int k = 0; k < ds->n_classes; k++) free(ds->class_names[k]);
    free(ds->class_names);
    free(ds->labels);
    ds->class_names = NULL;
    ds->labels = lab;
    ds->n_classes = K;
    return 0;
}
