/* ops_augment.c - the discriminator-side ops of small-data GAN training (ops.h):
 * minibatch standard deviation and differentiable augmentation.
 *
 * Minibatch stddev (Karras et al., progressive GANs / StyleGAN): items in groups of G
 * consecutive ones; per group and per feature k = (c, s) the standard deviation over the
 * group, sd_k = sqrt(var_k + 1e-8) with the biased variance; the group's statistic
 * m = mean_k sd_k becomes one more channel, constant over the S positions, of each of
 * the group's items. A generator that collapses gives batches with a small m, which D
 * can see. Backward (x_j the group's values of one feature, mu their mean):
 *   d var / d x_j = 2 (x_j - mu) / G   (the mean's own derivative sums to zero)
 *   d m / d x_jk  = (x_jk - mu_k) / (G sd_k C S)
 *   dx_jk += dout_jk + (sum over the group's items and positions of dout[., C, .]) dm/dx_jk.
 *
 * Augmentation (DiffAugment, Zhao et al. 2020): per item, in this order
 *   colour:      y = x + b;  y = (y - mean_c y) s + mean_c y  (saturation, per pixel over
 *                channels; nothing for one channel);  y = (y - mean y) k + mean y
 *                (contrast, mean over the whole item)
 *   translation: y(h, w) = x(h - ty, w - tx), 0 outside the image
 *   cutout:      a box of the item set to 0.
 * Every step is affine in x, so backward is the transposed linear map and needs no saved
 * activations: with g = the translation's adjoint applied to (cutout mask * dout),
 *   dx = s k g + (1 - k) mean(g) + (1 - s) k mean_c(g)
 * (contrast adjoint: k g + (1 - k) mean g; saturation adjoint: s g' + (1 - s) mean_c g').
 */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "base.h"
#include "ops_internal.h"

#define MBSTD_EPS 1e-8f

void nn_mbstd_forward(float *out, float *sd, const float *inp, int N, int C, int S, int G) {
    T2I_ASSERTF(G > 0 && N % G == 0, "minibatch stddev: batch %d is not a multiple of the group %d", N, G);
    size_t K = (size_t)C * S;
    int NG = N / G;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < NG; g++) {
        const float *x = inp + (size_t)g * G * K;
        float *sdg = sd + (size_t)g * K;
        double m = 0.0;
        for (size_t k = 0; k < K; k++) {
            double mu = 0.0, v = 0.0;
            for (int j = 0; j < G; j++) mu += x[j * K + k];
            mu /= G;
            for (int j = 0; j < G; j++) {
                double e = x[j * K + k] - mu;
                v += e * e;
            }
            sdg[k] = sqrtf((float)(v / G) + MBSTD_EPS);
            m += sdg[k];
        }
        float mf = (float)(m / K);
        for (int j = 0; j < G; j++) {
            float *o = out + ((size_t)g * G + j) * (K + S);
            memcpy(o, x + j * K, K * sizeof(float));
            for (int s = 0; s < S; s++) o[K + s] = mf;
        }
    }
}

void nn_mbstd_backward(float *dinp, const float *dout, const float *inp, const float *sd, int N, int C, int S, int G) {
    size_t K = (size_t)C * S;
    int NG = N / G;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < NG; g++) {
        const float *x = inp + (size_t)g * G * K, *sdg = sd + (size_t)g * K;
        double dm = 0.0;
        for (int j = 0; j < G; j++)
            for (int s = 0; s < S; s++) dm += dout[((size_t)g * G + j) * (K + S) + K + s];
        float f = (float)(dm / ((double)G * K));
        for (size_t k = 0; k < K; k++) {
            float mu = 0.0f;
            for (int j = 0; j < G; j++) mu += x[j * K + k];
            mu /= G;
            for (int j = 0; j < G; j++)
                dinp[((size_t)g * G + j) * K + k] +=
                    dout[((size_t)g * G + j) * (K + S) + k] + f * (x[j * K + k] - mu) / sdg[k];
        }
    }
}

void nn_augment_draw(nn_aug_item *p, int N, int H, int W, int policy, t2i_rng *rng) {
    int sx = (int)(W * 0.125f + 0.5f), sy = (int)(H * 0.125f + 0.5f);
    int cw = (int)(W * 0.5f + 0.5f), ch = (int)(H * 0.5f + 0.5f);
    for (int n = 0; n < N; n++) {
        nn_aug_item *q = &p[n];
        memset(q, 0, sizeof *q);
        q->sat = q->contrast = 1.0f;
        if (policy & NN_AUG_COLOR) {
            q->bright = t2i_rng_uniform(rng) - 0.5f;
            q->sat = 2.0f * t2i_rng_uniform(rng);
            q->contrast = t2i_rng_uniform(rng) + 0.5f;
        }
        if (policy & NN_AUG_TRANSLATION) {
            q->tx = (int)t2i_rng_below(rng, (uint64_t)(2 * sx + 1)) - sx;
            q->ty = (int)t2i_rng_below(rng, (uint64_t)(2 * sy + 1)) - sy;
        }
        if (policy & NN_AUG_CUTOUT) {
            /* the box's centre anywhere in the image (DiffAugment's offsets), clipped */
            q->cx = (int)t2i_rng_below(rng, (uint64_t)(W + 1 - cw % 2)) - cw / 2;
            q->cy = (int)t2i_rng_below(rng, (uint64_t)(H + 1 - ch % 2)) - ch / 2;
            q->cw = cw, q->ch = ch;
        }
    }
}

static int cut(const nn_aug_item *q, int h, int w) {
    return q->cw > 0 && w >= q->cx && w < q->cx + q->cw && h >= q->cy && h < q->cy + q->ch;
}

void nn_augment_forward(float *out, const float *inp, const nn_aug_item *p, int N, int C, int H, int W) {
    size_t S = (size_t)H * W, K = (size_t)C * S;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const nn_aug_item *q = &p[n];
        const float *x = inp + n * K;
        float *o = out + n * K;
        /* colour into o; the mean of y after brightness and saturation is mean(x) + b,
         * since saturation keeps every pixel's channel mean */
        double mean = 0.0;
        for (size_t k = 0; k < K; k++) mean += x[k];
        float mall = (float)(mean / K) + q->bright;
        for (size_t s = 0; s < S; s++) {
            float mc = 0.0f;
            for (int c = 0; c < C; c++) mc += x[c * S + s];
            mc = mc / C + q->bright;
            for (int c = 0; c < C; c++) {
                float y = x[c * S + s] + q->bright;
                y = (y - mc) * q->sat + mc;
                o[c * S + s] = (y - mall) * q->contrast + mall;
            }
        }
        /* translation and cutout in place: walk rows away from the shift so that no
         * source is overwritten before it is read */
        int hs = q->ty > 0 ? -1 : 1, ws = q->tx > 0 ? -1 : 1;
        for (int c = 0; c < C; c++) {
            float *oc = o + c * S;
            for (int i = 0; i < H; i++) {
                int h = hs > 0 ? i : H - 1 - i;
                for (int jj = 0; jj < W; jj++) {
                    int w = ws > 0 ? jj : W - 1 - jj;
                    int h0 = h - q->ty, w0 = w - q->tx;
                    float v = h0 >= 0 && h0 < H && w0 >= 0 && w0 < W ? oc[(size_t)h0 * W + w0] : 0.0f;
                    oc[(size_t)h * W + w] = cut(q, h, w) ? 0.0f : v;
                }
            }
        }
    }
}

void nn_augment_backward(float *dinp, const float *dout, const nn_aug_item *p, int N, int C, int H, int W) {
    size_t S = (size_t)H * W, K = (size_t)C * S;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const nn_aug_item *q = &p[n];
        const float *d = dout + n * K;
        float *dx = dinp + n * K;
        /* g(h, w) = mask * dout at (h + ty, w + tx), the adjoint of translation then cutout */
#define AUG_G(c, h, w)                                                                                          \
    ((h) + q->ty >= 0 && (h) + q->ty < H && (w) + q->tx >= 0 && (w) + q->tx < W && !cut(q, (h) + q->ty, (w) + q->tx) \
         ? d[(c) * S + (size_t)((h) + q->ty) * W + (w) + q->tx]                                                 \
         : 0.0f)
        double sum = 0.0;
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) sum += AUG_G(c, h, w);
        float mg = (float)(sum / K), k = q->contrast, s = q->sat;
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                float mc = 0.0f;
                for (int c = 0; c < C; c++) mc += AUG_G(c, h, w);
                mc /= C;
                for (int c = 0; c < C; c++)
                    dx[c * S + (size_t)h * W + w] += s * k * AUG_G(c, h, w) + (1.0f - k) * mg + (1.0f - s) * k * mc;
            }
#undef AUG_G
    }
}
