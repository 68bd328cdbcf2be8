/* ops_loss.c - the losses: BCE with logits, cross-entropy, MSE, L1 (ops.h). */
#include "ops.h"

#include <math.h>

#include "base.h"
#include "ops_internal.h"

/* ------------------------------------------------------------------ losses */

static inline float bce_term(float x, float t) {
    /* max(x,0) - x t + log(1 + exp(-|x|)): stable for any x */
    return (x > 0.0f ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x)));
}

float nn_bce_logits(float *dinp, const float *logits, const float *targets, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += bce_term(logits[i], targets[i]);
        if (dinp) dinp[i] += scale * (sigmoidf(logits[i]) - targets[i]) / (float)n;
    }
    return (float)(s / n);
}

float nn_bce_logits_const(float *dinp, const float *logits, float target, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += bce_term(logits[i], target);
        if (dinp) dinp[i] += scale * (sigmoidf(logits[i]) - target) / (float)n;
    }
    return (float)(s / n);
}

float nn_cross_entropy(float *dinp, const float *logits, const int *targets, const float *weights,
                       size_t N, int V, int ignore_index, float scale) {
    size_t count = 0;
    for (size_t i = 0; i < N; i++) count += targets[i] != ignore_index;
    if (!weights && count == 0) return 0.0f;
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < N; i++) {
        int t = targets[i];
        if (t == ignore_index) continue;
        T2I_ASSERTF(t >= 0 && t < V, "cross-entropy target %d outside [0, %d)", t, V);
        const float *x = logits + i * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double s = 0.0;
        for (int j = 0; j < V; j++) s += exp((double)(x[j] - mx));
        double lse = mx + log(s);
        double w = weights ? weights[i] : 1.0 / (double)count;
        total += w * (lse - x[t]);
        if (dinp) {
            float *d = dinp + i * V;
            float ws = (float)(w * scale);
            for (int j = 0; j < V; j++) d[j] += ws * (float)exp((double)x[j] - lse);
            d[t] -= ws;
        }
    }
    return (float)total;
}

float nn_mse(float *dinp, const float *x, const float *y, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = x[i] - y[i];
        s += (double)d * d;
        if (dinp) dinp[i] += scale * 2.0f * d / (float)n;
    }
    return (float)(s / n);
}

float nn_l1(float *dinp, const float *x, const float *y, size_t n, float scale) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = x[i] - y[i];
        s += fabs(d);
        if (dinp) dinp[i] += scale * (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f)) / (float)n;
    }
    return (float)(s / n);
}
