/* ops_ref.c - naive references; see ops_ref.h. */
#include "ops_ref.h"

#include <math.h>
#include <stdlib.h>

#include "base.h"

void nn_ref_linear_forward(float *out, const float *inp, const float *w, const float *b, size_t N,
                           int IN, int OUT) {
    for (size_t i = 0; i < N; i++)
        for (int o = 0; o < OUT; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < IN; k++) s += (double)inp[i * IN + k] * w[(size_t)o * IN + k];
            out[i * OUT + o] = (float)s;
        }
}

void nn_ref_conv2d_forward(float *out, const float *inp, const float *w, const float *b, const nn_conv *s) {
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += (double)inp[(((size_t)n * s->C + c) * s->H + ih) * s->W + iw] *
                                       w[(((size_t)oc * s->C + c) * s->KH + kh) * s->KW + kw];
                            }
                    out[(((size_t)n * s->OC + oc) * s->OH + oh) * s->OW + ow] = (float)acc;
                }
}

void nn_ref_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const nn_conv *s) {
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    float g = dout[(((size_t)n * s->OC + oc) * s->OH + oh) * s->OW + ow];
                    if (db) db[oc] += g;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                size_t xi = (((size_t)n * s->C + c) * s->H + ih) * s->W + iw;
                                size_t wi = (((size_t)oc * s->C + c) * s->KH + kh) * s->KW + kw;
                                if (dw) dw[wi] += g * inp[xi];
                                if (dinp) dinp[xi] += g * w[wi];
                            }
                }
}

/* Transposed convolution as a scatter: every input pixel adds w * x into a K x K window. */
void nn_ref_conv_transpose2d_forward(float *out, const float *inp, const float *w, const float *b,
                                     const nn_conv *s) {
    size_t total = (size_t)s->N * s->OC * s->OH * s->OW;
    double *acc = calloc(total, sizeof(double));
    T2I_ASSERT(acc);
    for (int n = 0; n < s->N; n++)
        for (int c = 0; c < s->C; c++)
            for (int ih = 0; ih < s->H; ih++)
                for (int iw = 0; iw < s->W; iw++) {
                    double x = inp[(((size_t)n * s->C + c) * s->H + ih) * s->W + iw];
                    for (int oc = 0; oc < s->OC; oc++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int oh = ih * s->stride - s->pad + kh, ow = iw * s->stride - s->pad + kw;
                                if (oh < 0 || oh >= s->OH || ow < 0 || ow >= s->OW) continue;
                                acc[(((size_t)n * s->OC + oc) * s->OH + oh) * s->OW + ow] +=
                                    x * w[(((size_t)c * s->OC + oc) * s->KH + kh) * s->KW + kw];
                            }
                }
    for (size_t i = 0; i < total; i++) {
        int oc = (int)((i / ((size_t)s->OH * s->OW)) % s->OC);
        out[i] = (float)(acc[i] + (b ? b[oc] : 0.0));
    }
    free(acc);
}

void nn_ref_attention_forward(float *out, const float *qkv, int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    double *p = malloc((size_t)T * sizeof(double));
    T2I_ASSERT(p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                int n = causal ? t + 1 : T;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < n; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
                    double d = 0.0;
                    for (int e = 0; e < hs; e++) d += (double)q[e] * k[e];
                    p[j] = d / sqrt((double)hs);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j < n; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                for (int e = 0; e < hs; e++) {
                    double o = 0.0;
                    for (int j = 0; j < n; j++) o += p[j] / sum * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + e];
                    out[((size_t)b * T + t) * C + h * hs + e] = (float)o;
                }
            }
    free(p);
}
