/* packed_kernel.h - the register tile of packed.c, included once per CPU path and panel
 * type, with:
 *   PK_FN(name)   the copy's name          PK_V, PK_VL   its float vector type and lanes
 *   PK_TMR        rows of a tile           PK_ELEM       a panel entry: float or uint16_t (bf16)
 *   PK_LOAD(v, p) v = PK_VL panel entries from p, widened to float
 * A tile is PK_TMR rows x 3 * PK_VL columns (baseline 4 x 12, AVX2 4 x 24, AVX-512 8 x 48:
 * a whole panel).
 *
 * out rows [0, mr) x columns [0, nc) of one tile = (accumulate ? out : 0) + bias + a . panel,
 * a (mr <= PK_TMR rows, stride lda, K columns), panel (K, PK_NR) k-major, starting at the
 * tile's first column. The sums live in registers over the whole K loop, each one a chain
 * of multiply-adds over k in order, so every copy with fused multiply-adds gives the same
 * bits, whatever its width and its panel type; rows beyond mr repeat row 0 and are
 * dropped. */
static void PK_FN(tile)(float *restrict out, size_t ldo, const float *restrict a, size_t lda,
                        const PK_ELEM *restrict panel, int K, int mr, int nc, const float *restrict bias,
                        int accumulate) {
    const float *ar[PK_TMR];
    for (int r = 0; r < PK_TMR; r++) ar[r] = r < mr ? a + r * lda : a;
    PK_V c[PK_TMR][3];
    memset(c, 0, sizeof c);
    for (int k = 0; k < K; k++) {
        const PK_ELEM *p = panel + (size_t)k * PK_NR;
        PK_V b0, b1, b2;
        PK_LOAD(b0, p);
        PK_LOAD(b1, p + PK_VL);
        PK_LOAD(b2, p + 2 * PK_VL);
#pragma GCC unroll 8
        for (int r = 0; r < PK_TMR; r++) {
            float x = ar[r][k];
            c[r][0] += x * b0, c[r][1] += x * b1, c[r][2] += x * b2;
        }
    }
    float t[PK_TMR][3 * PK_VL];
    memcpy(t, c, sizeof t);
    for (int r = 0; r < mr; r++) {
        float *o = out + r * ldo;
        for (int j = 0; j < nc; j++) o[j] = (accumulate ? o[j] : 0.0f) + (bias ? bias[j] : 0.0f) + t[r][j];
    }
}

/* Items in panel-major order: a thread's contiguous share walks few panels, each staying
 * in cache for all its row blocks. A tile narrower than a panel runs the panel in parts. */
static void PK_FN(gemm)(float *out, const float *in, const nn_packed *p, const PK_ELEM *w, const float *bias, int M,
                        int accumulate) {
    int nrb = (M + PK_TMR - 1) / PK_TMR;
    long items = (long)p->np * nrb;
#pragma omp parallel for schedule(static) if ((double)M * p->N * p->K >= 1e6)
    for (long it = 0; it < items; it++) {
        int pi = (int)(it / nrb), r0 = (int)(it % nrb) * PK_TMR;
        for (int j0 = pi * PK_NR; j0 < T2I_MIN((pi + 1) * PK_NR, p->N); j0 += 3 * PK_VL)
            PK_FN(tile)(out + (size_t)r0 * p->N + j0, (size_t)p->N, in + (size_t)r0 * p->K, (size_t)p->K,
                        w + (size_t)pi * p->K * PK_NR + (j0 - pi * PK_NR), p->K, T2I_MIN(PK_TMR, M - r0),
                        T2I_MIN(3 * PK_VL, p->N - j0), bias ? bias + j0 : NULL, accumulate);
    }
}
