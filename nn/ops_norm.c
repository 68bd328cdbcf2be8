/* ops_norm.c - BatchNorm, LayerNorm and GroupNorm, forward and backward (ops.h).
 *
 * Backward derivation:
 * BatchNorm (per channel, M = N*S values, xhat = (x - mean) * rstd):
 *   dx = rstd / M * (M * g - sum(g) - xhat * sum(g * xhat)),  g = dy * gamma.
 * LayerNorm and GroupNorm use the same formula over their own groups.
 *
 * Synchronised BatchNorm (a data-parallel step, collective.h): each process holds a slice
 * of the batch. Forward: the per-channel sums and the item count are summed over the
 * processes, then the sums of squared deviations from that global mean; so mean and
 * variance are the global batch's. Backward: every process backpropagates its own loss,
 * which is N times its rows' share of the global mean loss (it averages over B/N items),
 * so all its dy are N * dL/dy. The formula above is linear in dy and needs only the global
 * sum(g), sum(g * xhat) and M, so with those summed over the processes each process gets
 * N * dL/dx for its rows, consistent with its parameter gradients (its rows' local sums,
 * N times their share), and the final gradient average (sum / N) makes both exact.
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "collective.h"

/* ------------------------------------------------------------------ BatchNorm */

/* Synchronised BatchNorm (see the top). It allocates its few doubles per channel: the
 * collective sum it waits for costs far more. */
static void bn_forward_sync(const nn_collective *cc, float *out, float *mean, float *rstd, const float *inp,
                            const float *gamma, const float *beta, float *running_mean, float *running_var, int N,
                            int C, int S, float eps, float momentum) {
    double *sum = t2i_malloc((size_t)(2 * C + 1) * sizeof(double)), *ss = sum + C + 1;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) s += x[i];
        }
        sum[c] = s;
    }
    sum[C] = (double)N * S;
    cc->sum_doubles(cc->ctx, sum, (size_t)C + 1);
    double M = sum[C];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double m = sum[c] / M, q = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) {
                double d = x[i] - m;
                q += d * d;
            }
        }
        ss[c] = q;
    }
    cc->sum_doubles(cc->ctx, ss, (size_t)C);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double m = sum[c] / M, var = ss[c] / M;
        float mu = (float)m, rs = (float)(1.0 / sqrt(var + eps));
        if (mean) mean[c] = mu;
        if (rstd) rstd[c] = rs;
        if (running_mean && running_var) {
            double unbiased = M > 1 ? ss[c] / (M - 1) : var;
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)m;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
        }
        float scale = (gamma ? gamma[c] : 1.0f) * rs, shift = (beta ? beta[c] : 0.0f) - mu * scale;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            float *y = out + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) y[i] = x[i] * scale + shift;
        }
    }
    free(sum);
}

static void bn_backward_sync(const nn_collective *cc, float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *gamma, const float *mean, const float *rstd, int N, int C,
                             int S) {
    double *sdy = t2i_malloc((size_t)(2 * C + 1) * sizeof(double)), *sdyx = sdy + C;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double a = 0.0, b = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) {
                a += dy[i];
                b += dy[i] * (x[i] - mean[c]) * rstd[c];
            }
        }
        sdy[c] = a, sdyx[c] = b;
        /* the parameters' gradients: this slice's sums (averaged over the processes later) */
        if (dgamma) dgamma[c] += (float)b;
        if (dbeta) dbeta[c] += (float)a;
    }
    sdy[2 * C] = (double)N * S;
    cc->sum_doubles(cc->ctx, sdy, (size_t)(2 * C + 1));
    double M = sdy[2 * C];
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            float a = (gamma ? gamma[c] : 1.0f) * rstd[c], mu = mean[c], rs = rstd[c];
            float mdy = (float)(sdy[c] / M), mdyx = (float)(sdyx[c] / M);
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + c) * S;
                const float *dy = dout + ((size_t)n * C + c) * S;
                float *dx = dinp + ((size_t)n * C + c) * S;
                for (int i = 0; i < S; i++) dx[i] += a * (dy[i] - mdy - (x[i] - mu) * rs * mdyx);
            }
        }
    }
    free(sdy);
}

static const nn_collective *bn_sync(void) {
    const nn_collective *cc = nn_collective_get();
    return cc && cc->size > 1 && !cc->no_bn_sync ? cc : NULL;
}

/* BatchNorm1d on (N, C) (S == 1): channels are columns, so threads take blocks of
 * columns and walk the rows, reading memory in order (the generic path would stride by C). */
#define BN_COLS 256
static void bn1d_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                               const float *beta, float *running_mean, float *running_var, int N, int C,
                               float eps, float momentum) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += BN_COLS) {
        int c1 = T2I_MIN(C, c0 + BN_COLS);
        double s[BN_COLS], ss[BN_COLS];
        for (int c = c0; c < c1; c++) s[c - c0] = ss[c - c0] = 0.0;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) s[c - c0] += inp[(size_t)n * C + c];
        for (int c = c0; c < c1; c++) s[c - c0] /= N;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                double d = inp[(size_t)n * C + c] - s[c - c0];
                ss[c - c0] += d * d;
            }
        for (int c = c0; c < c1; c++) {
            double m = s[c - c0], var = ss[c - c0] / N;
            mean[c] = (float)m;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            if (running_mean && running_var) {
                double unbiased = N > 1 ? ss[c - c0] / (N - 1) : var;
                running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)m;
                running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
            }
        }
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                float sc = (gamma ? gamma[c] : 1.0f) * rstd[c];
                out[(size_t)n * C + c] = (inp[(size_t)n * C + c] - mean[c]) * sc + (beta ? beta[c] : 0.0f);
            }
    }
}

static void bn1d_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                          const float *gamma, const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += BN_COLS) {
        int c1 = T2I_MIN(C, c0 + BN_COLS);
        double sdy[BN_COLS], sdyx[BN_COLS];
        for (int c = c0; c < c1; c++) sdy[c - c0] = sdyx[c - c0] = 0.0;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                float dy = dout[(size_t)n * C + c];
                sdy[c - c0] += dy;
                sdyx[c - c0] += dy * (inp[(size_t)n * C + c] - mean[c]) * rstd[c];
            }
        for (int c = c0; c < c1; c++) {
            if (dgamma) dgamma[c] += (float)sdyx[c - c0];
            if (dbeta) dbeta[c] += (float)sdy[c - c0];
        }
        if (!dinp) continue;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                float a = (gamma ? gamma[c] : 1.0f) * rstd[c];
                float mdy = (float)(sdy[c - c0] / N), mdyx = (float)(sdyx[c - c0] / N);
                size_t i = (size_t)n * C + c;
                dinp[i] += a * (dout[i] - mdy - (inp[i] - mean[c]) * rstd[c] * mdyx);
            }
    }
}

void nn_batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, float *running_mean, float *running_var, int N, int C,
                          int S, float eps, float momentum, int training) {
    const nn_collective *cc = training ? bn_sync() : NULL;
    if (cc) {
        bn_forward_sync(cc, out, mean, rstd, inp, gamma, beta, running_mean, running_var, N, C, S, eps, momentum);
        return;
    }
    if (S == 1 && training && mean && rstd) {
        bn1d_forward_train(out, mean, rstd, inp, gamma, beta, running_mean, running_var, N, C, eps, momentum);
        return;
    }
    size_t M = (size_t)N * S;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mu, rs;
        if (training) {
            double sum = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + c) * S;
                for (int i = 0; i < S; i++) sum += x[i];
            }
            double m = sum / (double)M;
            double ss = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + c) * S;
                for (int i = 0; i < S; i++) {
                    double d = x[i] - m;
                    ss += d * d;
                }
            }
            double var = ss / (double)M;
            mu = (float)m;
            rs = (float)(1.0 / sqrt(var + eps));
            if (mean) mean[c] = mu;
            if (rstd) rstd[c] = rs;
            if (running_mean && running_var) {
                double unbiased = M > 1 ? ss / (double)(M - 1) : var;
                running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)m;
                running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
            }
        } else {
            mu = running_mean[c];
            rs = 1.0f / sqrtf(running_var[c] + eps);
        }
        float g = gamma ? gamma[c] : 1.0f, bb = beta ? beta[c] : 0.0f;
        float scale = g * rs, shift = bb - mu * scale;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            float *y = out + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) y[i] = x[i] * scale + shift;
        }
    }
}

void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int S) {
    const nn_collective *cc = bn_sync();
    if (cc) {
        bn_backward_sync(cc, dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, N, C, S);
        return;
    }
    if (S == 1) {
        bn1d_backward(dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, N, C);
        return;
    }
    size_t M = (size_t)N * S;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mu = mean[c], rs = rstd[c], g = gamma ? gamma[c] : 1.0f;
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) {
                sdy += dy[i];
                sdyx += dy[i] * (x[i] - mu) * rs;
            }
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (!dinp) continue;
        float a = g * rs;
        float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            float *dx = dinp + ((size_t)n * C + c) * S;
            for (int i = 0; i < S; i++) dx[i] += a * (dy[i] - mdy - (x[i] - mu) * rs * mdyx);
        }
    }
}

/* ------------------------------------------------------------------ LayerNorm */

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, size_t N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float *y = out + i * C;
        float m = 0.0f;
        for (int j = 0; j < C; j++) m += x[j];
        m /= C;
        float v = 0.0f;
        for (int j = 0; j < C; j++) {
            float d = x[j] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int j = 0; j < C; j++) y[j] = (x[j] - m) * s * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = s;
    }
}

void nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t N, int C) {
    /* dw/db are reductions over rows: split columns across threads; dinp rows are independent */
    if (dw || db) {
#pragma omp parallel for schedule(static)
        for (int j = 0; j < C; j++) {
            double sw = 0.0, sb = 0.0;
            for (size_t i = 0; i < N; i++) {
                float dy = dout[i * C + j];
                sw += dy * (inp[i * C + j] - mean[i]) * rstd[i];
                sb += dy;
            }
            if (dw) dw[j] += (float)sw;
            if (db) db[j] += (float)sb;
        }
    }
    if (!dinp) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C, *dy = dout + i * C;
        float *dx = dinp + i * C;
        float m = mean[i], s = rstd[i];
        float sg = 0.0f, sgx = 0.0f;
        for (int j = 0; j < C; j++) {
            float g = dy[j] * (w ? w[j] : 1.0f);
            sg += g;
            sgx += g * (x[j] - m) * s;
        }
        sg /= C;
        sgx /= C;
        for (int j = 0; j < C; j++) {
            float g = dy[j] * (w ? w[j] : 1.0f);
            dx[j] += s * (g - sg - (x[j] - m) * s * sgx);
        }
    }
}

/* ------------------------------------------------------------------ GroupNorm */

void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int N, int C, int S, int G, float eps) {
    T2I_ASSERTF(C % G == 0, "GroupNorm: %d channels not divisible by %d groups", C, G);
    int cg = C / G;
    size_t M = (size_t)cg * S;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *x = inp + ((size_t)n * C + (size_t)g * cg) * S;
            float *y = out + ((size_t)n * C + (size_t)g * cg) * S;
            double sum = 0.0;
            for (size_t i = 0; i < M; i++) sum += x[i];
            double m = sum / M, ss = 0.0;
            for (size_t i = 0; i < M; i++) ss += (x[i] - m) * (x[i] - m);
            float mu = (float)m, rs = (float)(1.0 / sqrt(ss / M + eps));
            if (mean) mean[n * G + g] = mu;
            if (rstd) rstd[n * G + g] = rs;
            for (int c = 0; c < cg; c++) {
                int ch = g * cg + c;
                float sc = (gamma ? gamma[ch] : 1.0f) * rs, sh = (beta ? beta[ch] : 0.0f) - mu * sc;
                for (int i = 0; i < S; i++) y[(size_t)c * S + i] = x[(size_t)c * S + i] * sc + sh;
            }
        }
}

void nn_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int S, int G) {
    int cg = C / G;
    if (dgamma || dbeta) {
#pragma omp parallel for schedule(static)
        for (int ch = 0; ch < C; ch++) {
            int g = ch / cg;
            double sw = 0.0, sb = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + ((size_t)n * C + ch) * S, *dy = dout + ((size_t)n * C + ch) * S;
                float mu = mean[n * G + g], rs = rstd[n * G + g];
                for (int i = 0; i < S; i++) {
                    sw += dy[i] * (x[i] - mu) * rs;
                    sb += dy[i];
                }
            }
            if (dgamma) dgamma[ch] += (float)sw;
            if (dbeta) dbeta[ch] += (float)sb;
        }
    }
    if (!dinp) return;
    size_t M = (size_t)cg * S;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            float mu = mean[n * G + g], rs = rstd[n * G + g];
            double sg = 0.0, sgx = 0.0;
            for (int c = 0; c < cg; c++) {
                int ch = g * cg + c;
                float ga = gamma ? gamma[ch] : 1.0f;
                const float *x = inp + ((size_t)n * C + ch) * S, *dy = dout + ((size_t)n * C + ch) * S;
                for (int i = 0; i < S; i++) {
                    float gg = dy[i] * ga;
                    sg += gg;
                    sgx += gg * (x[i] - mu) * rs;
                }
            }
            float msg = (float)(sg / M), msgx = (float)(sgx / M);
            for (int c = 0; c < cg; c++) {
                int ch = g * cg + c;
                float ga = gamma ? gamma[ch] : 1.0f;
                const float *x = inp + ((size_t)n * C + ch) * S, *dy = dout + ((size_t)n * C + ch) * S;
                float *dx = dinp + ((size_t)n * C + ch) * S;
                for (int i = 0; i < S; i++) dx[i] += rs * (dy[i] * ga - msg - (x[i] - mu) * rs * msgx);
            }
        }
}
