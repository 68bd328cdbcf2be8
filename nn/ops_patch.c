/* ops_patch.c - patch embedding (a Conv2d with stride = kernel = P, no bias, output as a
 * sequence of patch vectors); see ops.h for the shapes and conventions.
 *
 * Backward derivation. With X the (N*G, K) matrix of patches (K = C*P*P, the weight's
 * (c, ky, kx) order) and W (OC, K), the forward is Y = X W^T, so
 *   dW += dY^T X      (OC, K)
 *   dX  = dY W        (N*G, K)
 * and because the patches tile the image without overlap, every input pixel lies in
 * exactly one row of X: dinp gets the row of dX back at its patch's position (plus what
 * it held: gradients add). Each row is one patch, so rows written in parallel touch
 * disjoint pixels.
 */
#include <string.h>

#include "base.h"
#include "ops.h"

static void check_shape(int N, int C, int H, int W, int P, int OC) {
    T2I_ASSERT(N > 0 && C > 0 && P > 0 && OC > 0);
    T2I_ASSERTF(H >= P && W >= P && H % P == 0 && W % P == 0, "patch embedding: %dx%d image, patch %d", H, W, P);
}

size_t nn_patch_embed_scratch(int N, int C, int H, int W, int P) {
    return (size_t)N * (H / P) * (W / P) * C * P * P;
}

void nn_patch_embed_forward(float *out, float *patches, const float *inp, const float *w, int N, int C, int H, int W,
                            int P, int OC) {
    check_shape(N, C, H, W, P, OC);
    int gw = W / P, G = (H / P) * gw, K = C * P * P;
    size_t NG = (size_t)N * G;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)NG; r++) {
        int n = (int)(r / G), p = (int)(r % G), gy = p / gw, gx = p % gw;
        float *dst = patches + (size_t)r * K;
        for (int ch = 0; ch < C; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(dst + (ch * P + ky) * P,
                       inp + (((size_t)n * C + ch) * H + (size_t)gy * P + ky) * W + (size_t)gx * P,
                       (size_t)P * sizeof(float));
    }
    nn_gemm(0, 1, (int)NG, OC, K, 1.0f, patches, K, w, K, 0.0f, out, OC);
}

void nn_patch_embed_backward(float *dinp, float *dw, float *scratch, const float *dout, const float *patches,
                             const float *w, int N, int C, int H, int W, int P, int OC) {
    check_shape(N, C, H, W, P, OC);
    int gw = W / P, G = (H / P) * gw, K = C * P * P;
    size_t NG = (size_t)N * G;
    if (dw) nn_gemm(1, 0, OC, K, (int)NG, 1.0f, dout, OC, patches, K, 1.0f, dw, K);
    if (!dinp) return;
    nn_gemm(0, 0, (int)NG, K, OC, 1.0f, dout, OC, w, K, 0.0f, scratch, K);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)NG; r++) {
        int n = (int)(r / G), p = (int)(r % G), gy = p / gw, gx = p % gw;
        const float *src = scratch + (size_t)r * K;
        for (int ch = 0; ch < C; ch++)
            for (int ky = 0; ky < P; ky++) {
                float *d = dinp + (((size_t)n * C + ch) * H + (size_t)gy * P + ky) * W + (size_t)gx * P;
                const float *s = src + (ch * P + ky) * P;
                for (int kx = 0; kx < P; kx++) d[kx] += s[kx];
            }
    }
}
