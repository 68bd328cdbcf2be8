/* kmeans.c - balanced k-means; see kmeans.h. */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "kmeans.h"

typedef struct {
    float dist;
    int point, cluster;
} km_pair;

/* Distance order; ties by point, then cluster, so that qsort's order is total. */
static int pair_cmp(const void *a, const void *b) {
    const km_pair *p = a, *q = b;
    if (p->dist != q->dist) return p->dist < q->dist ? -1 : 1;
    if (p->point != q->point) return p->point < q->point ? -1 : 1;
    return (p->cluster > q->cluster) - (p->cluster < q->cluster);
}

static float sqdist(const float *a, const float *b, int d) {
    float s = 0.0f;
    for (int j = 0; j < d; j++) {
        float e = a[j] - b[j];
        s += e * e;
    }
    return s;
}

/* k-means++ seeding: centre 0 uniformly, then each with probability ~ squared distance to
 * the nearest centre drawn so far. */
static void seed_centres(float *C, const float *X, size_t n, int d, int K, t2i_rng *rng) {
    float *near = t2i_malloc(n * sizeof(float));
    size_t first = (size_t)t2i_rng_below(rng, n);
    memcpy(C, X + first * d, (size_t)d * sizeof(float));
    for (size_t i = 0; i < n; i++) near[i] = sqdist(X + i * d, C, d);
    for (int k = 1; k < K; k++) {
        double total = 0.0;
        for (size_t i = 0; i < n; i++) total += near[i];
        size_t pick = n - 1;
        if (total > 0) {
            double u = t2i_rng_uniform(rng) * total, acc = 0.0;
            for (size_t i = 0; i < n; i++)
                if ((acc += near[i]) > u) {
                    pick = i;
                    break;
                }
        } else {
            pick = (size_t)t2i_rng_below(rng, n); /* every point sits on a centre */
        }
        float *ck = C + (size_t)k * d;
        memcpy(ck, X + pick * d, (size_t)d * sizeof(float));
#pragma omp parallel for schedule(static)
        for (long i = 0; i < (long)n; i++) {
            float e = sqdist(X + (size_t)i * d, ck, d);
            if (e < near[i]) near[i] = e;
        }
    }
    free(near);
}

int nn_kmeans_balanced(int *assign, float *centres, const float *X, size_t n, int d, int K, int max_rounds,
                       t2i_rng *rng) {
    T2I_ASSERTF(K >= 1 && (size_t)K <= n && d >= 1 && max_rounds >= 1, "kmeans: %d clusters of %zu points", K, n);
    float *C = t2i_malloc((size_t)K * d * sizeof(float));
    double *sum = t2i_malloc((size_t)K * d * sizeof(double));
    km_pair *pairs = t2i_malloc(n * K * sizeof(km_pair));
    int *room = t2i_malloc((size_t)K * sizeof(int));
    seed_centres(C, X, n, d, K, rng);
    for (size_t i = 0; i < n; i++) assign[i] = -1;
    int rounds = 0, moved = 1;
    while (rounds < max_rounds && moved) {
        rounds++;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < (long)n; i++)
            for (int k = 0; k < K; k++)
                pairs[(size_t)i * K + k] = (km_pair){sqdist(X + (size_t)i * d, C + (size_t)k * d, d), (int)i, k};
        qsort(pairs, n * K, sizeof(km_pair), pair_cmp);
        for (int k = 0; k < K; k++) room[k] = (int)(n / K) + ((size_t)k < n % K);
        /* the capacities sum to n, so every point finds a cluster with room */
        int *taken = t2i_calloc(n, sizeof(int));
        moved = 0;
        for (size_t p = 0; p < n * K; p++) {
            int i = pairs[p].point, k = pairs[p].cluster;
            if (taken[i] || !room[k]) continue;
            taken[i] = 1, room[k]--;
            if (assign[i] != k) moved = 1, assign[i] = k;
        }
        free(taken);
        memset(sum, 0, (size_t)K * d * sizeof(double));
        for (size_t i = 0; i < n; i++)
            for (int j = 0; j < d; j++) sum[(size_t)assign[i] * d + j] += X[i * d + j];
        for (int k = 0; k < K; k++) {
            int cnt = (int)(n / K) + ((size_t)k < n % K);
            for (int j = 0; j < d; j++) C[(size_t)k * d + j] = (float)(sum[(size_t)k * d + j] / cnt);
        }
    }
    if (centres) memcpy(centres, C, (size_t)K * d * sizeof(float));
    free(C), free(sum), free(pairs), free(room);
    return rounds;
}
