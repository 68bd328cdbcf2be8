/* test_infer.c - the inference interpreter (nn/infer.h) against nn_seq_forward in
 * evaluation mode.
 *
 *   exact        every layer kind (Linear, Conv2d with and without spectral norm, a strided
 *                one, ConvTranspose2d, BatchNorm, conditional BatchNorm, GroupNorm, all nine
 *                activations, reshape, PixelShuffle, upsampling, average pooling, dropout,
 *                nested residual blocks with a scale), batch 3: the exact kernels give the
 *                same bits as nn_seq_forward, in place or not
 *   fast         the same networks with the fast kernels: within 2e-5 of the output's
 *                largest magnitude (Winograd's transforms and FMA round differently: the
 *                differences seen are a few 1e-7), with and without AVX2; each banded
 *                kernel is exercised and reported (nn_infer.ran)
 *   residual     a deep stack of nested residual blocks runs in at most NN_INFER_SLOTS
 *                buffers, far less memory than nn_seq_forward's arena, with the same bits
 *   reuse        a second call of the same size allocates nothing; another size re-plans;
 *                the input buffer and several networks on one workspace; a network
 *                rebuilt at the same address is re-planned
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "infer.h"
#include "seq.h"
#include "testutil.h"

#define COND 5

/* Every parameter random; running variances positive. */
static void randomise(nn_params *ps, t2i_rng *r) {
    for (int i = 0; i < ps->n; i++) {
        float *v = nn_params_val(ps, i);
        t2i_rng_fill_normal(r, v, ps->p[i].numel, 0.0f, 0.3f);
        if (strstr(ps->p[i].name, "running_var"))
            for (size_t k = 0; k < ps->p[i].numel; k++) v[k] = 0.5f + fabsf(v[k]);
    }
}

/* A generator-like network from a vector: every layer kind once at least. */
static void build_gen(nn_seq *s, nn_params *ps) {
    nn_seq_init(s, ps, "gen", 12, 1, 1);
    s->sn_next = 1;
    nn_seq_linear(s, 8 * 4 * 4, 1);
    nn_seq_bn(s);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_reshape(s, 8, 4, 4);
    nn_seq_convt(s, 6, 4, 2, 1, 0, 1);
    nn_seq_cbn(s, COND);
    nn_seq_act(s, NN_ACT_LEAKY_RELU, 0.2f);
    nn_seq_conv(s, 6, 3, 1, 1, 1);
    nn_seq_gn(s, 2);
    nn_seq_act(s, NN_ACT_SILU, 0);
    nn_seq_upsample(s, 2);
    s->sn_next = 1;
    nn_seq_conv(s, 8, 3, 1, 1, 0);
    nn_seq_avgpool(s, 2);
    nn_seq_dropout(s, 0.3f);
    nn_seq_res_begin(s);
    nn_seq_act(s, NN_ACT_GELU_ERF, 0);
    nn_seq_conv(s, 8, 1, 1, 0, 1);
    nn_seq_res_begin(s);
    nn_seq_act(s, NN_ACT_TANH, 0);
    nn_seq_conv(s, 8, 5, 1, 2, 1);
    nn_seq_res_end(s, 0.5f);
    nn_seq_act(s, NN_ACT_GELU_TANH, 0);
    nn_seq_res_end(s, 1.0f);
    nn_seq_conv(s, 12, 3, 1, 1, 1);
    nn_seq_pixel_shuffle(s, 2);
    nn_seq_act(s, NN_ACT_QUICK_GELU, 0);
    nn_seq_conv(s, 3, 3, 1, 1, 1);
    nn_seq_act(s, NN_ACT_SIGMOID, 0);
    nn_seq_conv(s, 4, 4, 2, 1, 1);
    nn_seq_act(s, NN_ACT_NONE, 0);
}

/* A convolution stack from an image, whose first layers read the caller's input (not in
 * place) and whose residual block starts at the input. */
static void build_conv(nn_seq *s, nn_params *ps) {
    nn_seq_init(s, ps, "conv", 3, 9, 10);
    nn_seq_res_begin(s);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, 3, 3, 1, 1, 1);
    nn_seq_res_end(s, 1.0f);
    nn_seq_conv(s, 16, 3, 1, 1, 1);
    nn_seq_pixel_shuffle(s, 2);
    nn_seq_conv(s, 8, 1, 1, 0, 1);
    nn_seq_act(s, NN_ACT_RELU, 0);
    nn_seq_conv(s, 3, 3, 1, 1, 1);
}

typedef struct {
    nn_params ps;
    nn_seq s;
    float *x, *cond;
    int N;
    size_t nx, ny;
} net;

static void net_make(net *n, void (*build)(nn_seq *, nn_params *), int N, uint64_t seed) {
    nn_params_init(&n->ps);
    build(&n->s, &n->ps);
    nn_params_alloc(&n->ps);
    t2i_rng r;
    t2i_rng_seed(&r, seed);
    randomise(&n->ps, &r);
    n->N = N;
    n->nx = (size_t)N * n->s.in_C * n->s.in_H * n->s.in_W;
    n->ny = (size_t)N * nn_seq_out_size(&n->s);
    n->x = tu_randn(&r, n->nx, 1.0f);
    n->cond = tu_randn(&r, (size_t)N * COND, 1.0f);
}

static void net_free(net *n) {
    nn_params_free(&n->ps);
    free(n->x), free(n->cond);
}

/* nn_seq_forward in evaluation mode into y (ny floats). */
static void reference(net *n, float *y) {
    nn_arena a;
    nn_arena_init(&a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    t.cond = n->cond;
    const float *r = nn_seq_forward(&n->s, &t, &a, n->x, n->N, 0);
    memcpy(y, r, n->ny * sizeof(float));
    nn_arena_free(&a);
}

static void test_exact(void **state) {
    (void)state;
    void (*builds[])(nn_seq *, nn_params *) = {build_gen, build_conv};
    for (int b = 0; b < 2; b++) {
        net n;
        net_make(&n, builds[b], 3, 7 + b);
        float *want = t2i_malloc(n.ny * sizeof(float));
        reference(&n, want);
        nn_infer w;
        nn_infer_init(&w, NN_INFER_EXACT);
        const float *y = nn_infer_run(&w, &n.s, n.x, n.cond, n.N, n.s.in_H, n.s.in_W);
        char ran[64];
        nn_infer_describe_ran(&w, ran, sizeof ran);
        printf("%s exact: %zu outputs, kernels: %s, max |infer - forward| %.3g\n", n.s.prefix, n.ny, ran,
               tu_max_abs_diff(y, want, n.ny, NULL));
        assert_memory_equal(y, want, n.ny * sizeof(float));
        assert_int_equal(w.ran, NN_INFER_RAN_GEMM);
        nn_infer_free(&w);
        net_free(&n), free(want);
    }
}

static void check_fast(net *n, unsigned want_ran) {
    float *want = t2i_malloc(n->ny * sizeof(float));
    reference(n, want);
    double scale = 0.0;
    for (size_t i = 0; i < n->ny; i++) scale = fmax(scale, fabs(want[i]));
    nn_infer w;
    nn_infer_init(&w, NN_INFER_FAST);
    const float *y = nn_infer_run(&w, &n->s, n->x, n->cond, n->N, n->s.in_H, n->s.in_W);
    char ran[64];
    nn_infer_describe_ran(&w, ran, sizeof ran);
    double d = tu_max_abs_diff(y, want, n->ny, NULL);
    printf("%s fast%s: kernels: %s; max |infer - forward| %.3g of %.3g\n", n->s.prefix,
           t2i_cpu_avx2_fma() ? "" : " (no AVX2)", ran, d, scale);
    assert_true(d <= 2e-5 * scale);
    assert_true(scale > 0.1);
    assert_int_equal(w.ran & want_ran, want_ran);
    nn_infer_free(&w);
    free(want);
}

static void test_fast(void **state) {
    (void)state;
    for (int avx = 1; avx >= 0; avx--) {
        if (!avx) setenv("T2I_NO_AVX2", "1", 1);
        unsigned direct = t2i_cpu_avx2_fma() ? NN_INFER_RAN_DIRECT : 0;
        net n;
        net_make(&n, build_gen, 3, 17);
        /* the strided conv and the ConvTranspose2d take the exact GEMM */
        check_fast(&n, NN_INFER_RAN_GEMM | NN_INFER_RAN_WINOGRAD | NN_INFER_RAN_BANDED | direct);
        net_free(&n);
        net_make(&n, build_conv, 2, 18);
        check_fast(&n, NN_INFER_RAN_WINOGRAD | NN_INFER_RAN_BANDED | direct);
        net_free(&n);
        unsetenv("T2I_NO_AVX2");
    }
}

/* 12 residual blocks, every other one holding a nested block, at 32 x 32. */
static void build_deep(nn_seq *s, nn_params *ps) {
    nn_seq_init(s, ps, "deep", 3, 32, 32);
    nn_seq_conv(s, 16, 3, 1, 1, 1);
    for (int b = 0; b < 12; b++) {
        nn_seq_res_begin(s);
        nn_seq_conv(s, 16, 3, 1, 1, 1);
        nn_seq_act(s, NN_ACT_RELU, 0);
        if (b % 2 == 0) {
            nn_seq_res_begin(s);
            nn_seq_conv(s, 16, 1, 1, 0, 1);
            nn_seq_res_end(s, 0.3f);
        }
        nn_seq_conv(s, 16, 3, 1, 1, 1);
        nn_seq_res_end(s, 0.5f);
    }
    nn_seq_conv(s, 3, 3, 1, 1, 1);
}

static size_t workspace_bytes(const nn_infer *w) {
    size_t b = w->cap.scratch + w->cap.wt + w->in_cap;
    for (int i = 0; i < NN_INFER_SLOTS; i++) b += w->cap.slot[i];
    for (int t = 0; t < NN_INFER_MAX_THREADS; t++) b += w->cap.tscratch[t] + w->cap.band[t];
    return b * sizeof(float);
}

static void test_residual(void **state) {
    (void)state;
    net n;
    net_make(&n, build_deep, 2, 29);
    nn_arena a;
    nn_arena_init(&a);
    nn_tape t;
    memset(&t, 0, sizeof t);
    const float *want = nn_seq_forward(&n.s, &t, &a, n.x, n.N, 0);
    size_t forward_bytes = nn_arena_in_use(&a);
    nn_infer w;
    nn_infer_init(&w, NN_INFER_EXACT);
    const float *y = nn_infer_run(&w, &n.s, n.x, NULL, n.N, 32, 32);
    assert_memory_equal(y, want, n.ny * sizeof(float));
    int used = 0;
    for (int i = 0; i < NN_INFER_SLOTS; i++) used += w.cap.slot[i] > 0;
    printf("deep: %d layers, %d buffers; workspace %.2f MB, nn_seq_forward's arena %.2f MB\n", n.s.n, used,
           workspace_bytes(&w) / 1e6, forward_bytes / 1e6);
    assert_true(used <= 3); /* the activation, a block's skip, a nested block's skip */
    assert_true(workspace_bytes(&w) * 3 < forward_bytes);
    nn_infer_free(&w);
    nn_arena_free(&a);
    net_free(&n);
}

/* nn_infer_run_in: the same values as nn_infer_run, every buffer from the arena (the
 * workspace allocates nothing, the arena grows by the plan's size at most), and a later
 * nn_infer_run on the same workspace uses its own buffers again. */
static void test_run_in_arena(void **state) {
    (void)state;
    net n;
    net_make(&n, build_deep, 2, 31);
    for (int k = 0; k < 2; k++) {
        nn_infer own, w;
        nn_infer_init(&own, k ? NN_INFER_FAST : NN_INFER_EXACT);
        nn_infer_init(&w, own.kernels);
        float *want = t2i_malloc(n.ny * sizeof(float));
        memcpy(want, nn_infer_run(&own, &n.s, n.x, NULL, n.N, 32, 32), n.ny * sizeof(float));
        nn_arena a;
        nn_arena_init(&a);
        nn_arena_reserve(&a, 64);
        size_t mark = nn_arena_mark(&a);
        const float *y = nn_infer_run_in(&w, &a, &n.s, n.x, NULL, n.N, 32, 32);
        assert_memory_equal(y, want, n.ny * sizeof(float));
        size_t planned = nn_infer_plan_floats(&w) * sizeof(float);
        printf("%s in an arena: %.2f MB taken, plan %.2f MB, workspace allocations %ld\n",
               nn_infer_kernels_name(w.kernels), nn_arena_in_use(&a) / 1e6, planned / 1e6, w.allocs);
        assert_int_equal(w.allocs, 0);
        assert_true(nn_arena_in_use(&a) >= planned / 2 && nn_arena_in_use(&a) <= planned + 64 * 20);
        nn_arena_rewind(&a, mark);
        assert_int_equal(nn_arena_in_use(&a), 0);
        /* the arena's memory rewritten: an own-buffer run must not read or return it */
        memset(nn_arena_floats(&a, planned / sizeof(float)), 0xff, planned);
        y = nn_infer_run(&w, &n.s, n.x, NULL, n.N, 32, 32);
        assert_true(w.allocs > 0);
        const char *yb = (const char *)y, *lo = a.blk[0].mem;
        assert_true(yb < lo || yb >= lo + a.blk[0].cap);
        assert_memory_equal(y, want, n.ny * sizeof(float));
        nn_arena_free(&a);
        free(want);
        nn_infer_free(&own), nn_infer_free(&w);
    }
    net_free(&n);
}

static void test_reuse(void **state) {
    (void)state;
    net g, c;
    net_make(&g, build_gen, 4, 41);
    net_make(&c, build_conv, 1, 42);
    float *want = t2i_malloc(g.ny * sizeof(float));
    reference(&g, want);
    for (int k = 0; k < 2; k++) {
        nn_infer w;
        nn_infer_init(&w, k ? NN_INFER_FAST : NN_INFER_EXACT);
        float *x = nn_infer_input(&w, &g.s, g.N, 1, 1);
        memcpy(x, g.x, g.nx * sizeof(float));
        const float *y = nn_infer_run(&w, &g.s, x, g.cond, g.N, 1, 1);
        if (!k) assert_memory_equal(y, want, g.ny * sizeof(float));
        long allocs = w.allocs;
        assert_true(allocs > 0);
        for (int rep = 0; rep < 3; rep++) {
            y = nn_infer_run(&w, &g.s, x, g.cond, g.N, 1, 1);
            if (!k) assert_memory_equal(y, want, g.ny * sizeof(float));
        }
        assert_int_equal(w.allocs, allocs); /* the same size: nothing allocated */
        /* the first two items alone (a smaller batch: re-planned) give their share of the
         * batch of 4 (in evaluation mode every layer works per item) */
        y = nn_infer_run(&w, &g.s, x, g.cond, 2, 1, 1);
        tu_assert_close("batch of 2", y, want, g.ny / 2, k ? 2e-5f : 1e-6f, 1e-4f);
        /* another network on the same workspace, at another size than it was built for */
        int C, OH, OW;
        nn_infer_out_shape(&c.s, 12, 7, &C, &OH, &OW);
        assert_int_equal(C, 3), assert_int_equal(OH, 24), assert_int_equal(OW, 14);
        t2i_rng r;
        t2i_rng_seed(&r, 43);
        float *xc = tu_randn(&r, (size_t)3 * 12 * 7, 1.0f);
        nn_infer_run(&w, &c.s, xc, NULL, 1, 12, 7);
        long after = w.allocs;
        nn_infer_run(&w, &c.s, xc, NULL, 1, 12, 7);
        assert_int_equal(w.allocs, after);
        printf("%s: %ld allocations for the first call, %ld after all\n", nn_infer_kernels_name(w.kernels), allocs,
               w.allocs);
        free(xc);
        nn_infer_free(&w);
    }
    free(want);
    net_free(&g), net_free(&c);
    /* a network rebuilt at the same address re-plans (its layer list differs) */
    nn_infer w;
    nn_infer_init(&w, NN_INFER_EXACT);
    void (*builds[])(nn_seq *, nn_params *) = {build_conv, build_deep};
    net n;
    for (int b = 0; b < 2; b++) {
        net_make(&n, builds[b], 1, 50 + b);
        float *y0 = t2i_malloc(n.ny * sizeof(float));
        reference(&n, y0);
        assert_memory_equal(nn_infer_run(&w, &n.s, n.x, NULL, 1, n.s.in_H, n.s.in_W), y0, n.ny * sizeof(float));
        free(y0);
        net_free(&n);
    }
    nn_infer_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_exact), cmocka_unit_test(test_fast),
                                       cmocka_unit_test(test_residual), cmocka_unit_test(test_reuse),
                                       cmocka_unit_test(test_run_in_arena)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
