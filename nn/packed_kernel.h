/* packed_kernel.h - the register tile of packed.c, included twice: compiled for AVX2 + FMA
 * (under #pragma GCC target) and for the baseline, with PK_FN naming each copy.
 *
 * out rows [0, mr) x columns [0, nc) of one tile = (accumulate ? out : 0) + bias + a . panel,
 * a (mr <= PK_MR rows, stride lda, K columns), panel (K, PK_NR) k-major. The PK_MR x PK_NR
 * sums live in twelve 8-float vectors over the whole K loop; rows beyond mr repeat row 0
 * and are dropped. */
static void PK_FN(tile)(float *restrict out, size_t ldo, const float *restrict a, size_t lda,
                        const float *restrict panel, int K, int mr, int nc, const float *restrict bias,
                        int accumulate) {
    const float *a0 = a, *a1 = mr > 1 ? a + lda : a, *a2 = mr > 2 ? a + 2 * lda : a, *a3 = mr > 3 ? a + 3 * lda : a;
    pk_v8 c00 = {0}, c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    pk_v8 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    for (int k = 0; k < K; k++) {
        const float *p = panel + (size_t)k * PK_NR;
        pk_v8 b0, b1, b2;
        memcpy(&b0, p, sizeof b0), memcpy(&b1, p + 8, sizeof b1), memcpy(&b2, p + 16, sizeof b2);
        float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
        c00 += x0 * b0, c01 += x0 * b1, c02 += x0 * b2;
        c10 += x1 * b0, c11 += x1 * b1, c12 += x1 * b2;
        c20 += x2 * b0, c21 += x2 * b1, c22 += x2 * b2;
        c30 += x3 * b0, c31 += x3 * b1, c32 += x3 * b2;
    }
    float t[PK_MR][PK_NR];
    memcpy(t[0], &c00, 32), memcpy(t[0] + 8, &c01, 32), memcpy(t[0] + 16, &c02, 32);
    memcpy(t[1], &c10, 32), memcpy(t[1] + 8, &c11, 32), memcpy(t[1] + 16, &c12, 32);
    memcpy(t[2], &c20, 32), memcpy(t[2] + 8, &c21, 32), memcpy(t[2] + 16, &c22, 32);
    memcpy(t[3], &c30, 32), memcpy(t[3] + 8, &c31, 32), memcpy(t[3] + 16, &c32, 32);
    for (int r = 0; r < mr; r++) {
        float *o = out + r * ldo;
        for (int j = 0; j < nc; j++) o[j] = (accumulate ? o[j] : 0.0f) + (bias ? bias[j] : 0.0f) + t[r][j];
    }
}

static void PK_FN(gemm)(float *out, const float *in, const nn_packed *p, const float *bias, int M, int accumulate) {
    int nrb = (M + PK_MR - 1) / PK_MR;
    long items = (long)p->np * nrb;
    /* items in panel-major order: a thread's contiguous share walks few panels, each
     * staying in cache for all its row blocks */
#pragma omp parallel for schedule(static) if ((double)M * p->N * p->K >= 1e6)
    for (long it = 0; it < items; it++) {
        int pi = (int)(it / nrb), r0 = (int)(it % nrb) * PK_MR, j0 = pi * PK_NR;
        PK_FN(tile)(out + (size_t)r0 * p->N + j0, (size_t)p->N, in + (size_t)r0 * p->K, (size_t)p->K,
                    p->w + (size_t)pi * p->K * PK_NR, p->K, T2I_MIN(PK_MR, M - r0), T2I_MIN(PK_NR, p->N - j0),
                    bias ? bias + j0 : NULL, accumulate);
    }
}
