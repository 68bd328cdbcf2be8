/* winograd_tx.h - the Winograd F(2x2, 3x3) transforms, included twice by winograd.c:
 * once compiled for AVX2 + FMA (under #pragma GCC target) and once for the baseline, with
 * WINO_FN(name) giving each copy its own names. Plain loops over the tiles of a row,
 * written so that gcc vectorises them (contiguous planes in and out). */
/* Row i of d B for the tiles of a tile row, from the even (e) and odd (o) columns of the
 * padded input row: columns q[2t .. 2t+3] = e[t], o[t], e[t+1], o[t+1]. */
static void WINO_FN(row_tx)(float *restrict f0, float *restrict f1, float *restrict f2, float *restrict f3,
                            const float *restrict e, const float *restrict o, int tc) {
    for (int t = 0; t < tc; t++) {
        f0[t] = e[t] - e[t + 1], f1[t] = o[t] + e[t + 1];
        f2[t] = e[t + 1] - o[t], f3[t] = o[t] - o[t + 1];
    }
}

/* Column j of B^T (d B): planes j, 4 + j, 8 + j, 12 + j from rows 0..3 of d B. */
static void WINO_FN(col_tx)(float *restrict v0, float *restrict v1, float *restrict v2, float *restrict v3,
                            const float *restrict p0, const float *restrict p1, const float *restrict p2,
                            const float *restrict p3, int tc) {
    for (int t = 0; t < tc; t++) {
        v0[t] = p0[t] - p2[t], v1[t] = p1[t] + p2[t];
        v2[t] = p2[t] - p1[t], v3[t] = p1[t] - p3[t];
    }
}

static void WINO_FN(input_rows)(float *V, const float *x, int C, int H, int W, int r0,
                                                             int tr, int tc, size_t T, float *rows) {
    size_t plane = (size_t)H * W, xs = (size_t)C * T; /* xs: stride between the 16 planes */
    int n1 = tc + 1;
    /* rows: for each of the patch's 4 input rows, its even and odd columns of the padded
     * row q (q[k] = x[k - 1], zero outside): ev[t] = q[2t], od[t] = q[2t + 1], t <= tc */
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * plane;
        for (int ty = 0; ty < tr; ty++) {
            const float *ev[4], *od[4];
            for (int i = 0; i < 4; i++) {
                float *pe = rows + (size_t)(2 * i) * n1, *po = pe + n1;
                int iy = r0 + 2 * ty - 1 + i;
                if (iy < 0 || iy >= H) {
                    memset(pe, 0, (size_t)2 * n1 * sizeof(float));
                } else {
                    const float *src = xc + (size_t)iy * W;
                    pe[0] = 0.0f;
                    for (int t = 1; t < n1; t++) pe[t] = 2 * t - 1 < W ? src[2 * t - 1] : 0.0f;
                    for (int t = 0; t < n1; t++) po[t] = 2 * t < W ? src[2 * t] : 0.0f;
                }
                ev[i] = pe, od[i] = po;
            }
            float *f = rows + (size_t)8 * n1; /* (4 rows, 4 columns, tc) */
            for (int i = 0; i < 4; i++)
                WINO_FN(row_tx)(f + (size_t)(4 * i) * tc, f + (size_t)(4 * i + 1) * tc, f + (size_t)(4 * i + 2) * tc,
                                f + (size_t)(4 * i + 3) * tc, ev[i], od[i], tc);
            float *v = V + (size_t)c * T + (size_t)ty * tc;
            for (int j = 0; j < 4; j++)
                WINO_FN(col_tx)(v + (size_t)j * xs, v + (size_t)(4 + j) * xs, v + (size_t)(8 + j) * xs,
                                v + (size_t)(12 + j) * xs, f + (size_t)j * tc, f + (size_t)(4 + j) * tc,
                                f + (size_t)(8 + j) * tc, f + (size_t)(12 + j) * tc, tc);
        }
    }
}

/* Y = A^T M A plus the bias, for tiles [0, n) of a tile row into rows y0 (and y1). */
static inline void WINO_FN(output_tiles)(float *restrict y0, float *restrict y1,
                                                               const float *restrict m, size_t ms, int n,
                                                               float bv) {
    for (int tx = 0; tx < n; tx++) {
        float s0[4], s1[4];
        for (int j = 0; j < 4; j++) {
            float m0 = m[(size_t)j * ms + tx], m1 = m[(size_t)(4 + j) * ms + tx];
            float m2 = m[(size_t)(8 + j) * ms + tx], m3 = m[(size_t)(12 + j) * ms + tx];
            s0[j] = m0 + m1 + m2, s1[j] = m1 - m2 - m3;
        }
        y0[2 * tx] = s0[0] + s0[1] + s0[2] + bv;
        y0[2 * tx + 1] = s0[1] - s0[2] - s0[3] + bv;
        if (y1) {
            y1[2 * tx] = s1[0] + s1[1] + s1[2] + bv;
            y1[2 * tx + 1] = s1[1] - s1[2] - s1[3] + bv;
        }
    }
}

static void WINO_FN(output_rows)(float *out, size_t ostride, const float *M, int OC,
                                                              int W, int nr, int tr, int tc, size_t T,
                                                              const float *b) {
    size_t ms = (size_t)OC * T;
    int full = W / 2; /* tiles whose two columns are both inside the image */
    for (int o = 0; o < OC; o++) {
        float bv = b ? b[o] : 0.0f;
        for (int ty = 0; ty < tr; ty++) {
            const float *m = M + (size_t)o * T + (size_t)ty * tc;
            float *y0 = out + (size_t)o * ostride + (size_t)(2 * ty) * W;
            float *y1 = 2 * ty + 1 < nr ? y0 + W : NULL;
            if (y1)
                WINO_FN(output_tiles)(y0, y1, m, ms, full, bv);
            else
                WINO_FN(output_tiles)(y0, NULL, m, ms, full, bv);
            if (full < tc) { /* odd W: the last tile's left column only */
                float two0[2], two1[2];
                WINO_FN(output_tiles)(two0, two1, m + full, ms, 1, bv);
                y0[2 * full] = two0[0];
                if (y1) y1[2 * full] = two1[0];
            }
        }
    }
}

