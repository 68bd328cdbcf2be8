/* bench_infer.c - `t2i bench infer`: what the fast inference kernels (nn/infer.h,
 * NN_INFER_FAST: banded Winograd / im2col, direct AVX2) would change against the exact ones
 * (NN_INFER_EXACT, the training forward's arithmetic) on the shipped models:
 *
 *   gan   the caption GAN's EMA generator, a batch of --batch noise vectors with random
 *         unit conditions (what `t2i generate --generator gan` runs per batch)
 *   vq    the VQ decoder on --batch random code grids (what dalle sample / generate decode)
 *   sr    the SR generator on one 128x128 image (one tile; `t2i sr upscale` runs fast)
 *
 * For each: the median time of both (run alternately), the largest difference of the outputs (in [-1, 1]
 * units) and how many 8-bit pixel values of the saved images would change (as
 * t2i_chw_to_u8 rounds them). The GAN and the VQ decoder keep the exact kernels (their
 * outputs stay those of the training forward); this measures what switching would buy.
 * The last line is one JSON object.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "gan.h"
#include "image.h"
#include "infer.h"
#include "sr.h"
#include "vq.h"

typedef struct {
    const char *what;
    gan_model *gan;
    vq_model *vq;
    sr_model *sr;
    nn_infer ws[2]; /* exact, fast */
    int k;          /* the one being run */
    float *z, *c, *x, *y;
    int32_t *codes;
    int N;
    size_t ny;
    int C, H, W; /* output image */
} inf_ctx;

static void run(void *p) {
    inf_ctx *c = p;
    if (c->gan) {
        const float *y = gan_g_infer(c->gan, &c->gan->ema, &c->ws[c->k], c->z, c->c, c->N);
        memcpy(c->y, y, c->ny * sizeof(float));
    } else if (c->vq) {
        nn_arena a;
        nn_arena_init(&a);
        c->vq->dec_ws.kernels = c->ws[c->k].kernels;
        vq_decode(c->vq, &a, c->codes, c->N, c->y);
        nn_arena_free(&a);
    } else {
        const float *y = nn_infer_run(&c->ws[c->k], &c->sr->ema, c->x, NULL, 1, 128, 128);
        memcpy(c->y, y, c->ny * sizeof(float));
    }
}

typedef struct {
    double ms_exact, ms_fast, cpu_exact, cpu_fast, max_diff;
    long px_changed, px;
    char kernels[64];
} inf_result;

/* CPU seconds of the process (all threads): less disturbed than wall time by other
 * processes on a shared machine. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Exact and fast alternately (the machine's load then weighs on both alike); medians. */
static inf_result compare(inf_ctx *c, int warmup, int reps) {
    inf_result r;
    memset(&r, 0, sizeof r);
    float *ye = t2i_malloc(c->ny * sizeof(float));
    double *t[2], *u[2];
    for (int k = 0; k < 2; k++)
        t[k] = t2i_malloc((size_t)reps * sizeof(double)), u[k] = t2i_malloc((size_t)reps * sizeof(double));
    for (int k = 0; k < 2; k++) nn_infer_init(&c->ws[k], k ? NN_INFER_FAST : NN_INFER_EXACT);
    for (int i = -warmup; i < reps; i++)
        for (c->k = 0; c->k < 2; c->k++) {
            double t0 = t2i_now(), u0 = cpu_now();
            run(c);
            if (i >= 0) t[c->k][i] = t2i_now() - t0, u[c->k][i] = cpu_now() - u0;
            if (c->k == 0) memcpy(ye, c->y, c->ny * sizeof(float));
        }
    r.ms_exact = bench_median(t[0], reps) * 1e3;
    r.ms_fast = bench_median(t[1], reps) * 1e3;
    r.cpu_exact = bench_median(u[0], reps) * 1e3;
    r.cpu_fast = bench_median(u[1], reps) * 1e3;
    nn_infer_describe_ran(c->vq ? &c->vq->dec_ws : &c->ws[1], r.kernels, sizeof r.kernels);
    for (int k = 0; k < 2; k++) nn_infer_free(&c->ws[k]);
    for (int k = 0; k < 2; k++) free(t[k]), free(u[k]);
    size_t item = (size_t)c->C * c->H * c->W;
    uint8_t *a = t2i_malloc(item), *b = t2i_malloc(item);
    for (size_t i = 0; i < c->ny; i++) r.max_diff = fmax(r.max_diff, fabs((double)c->y[i] - ye[i]));
    for (size_t n = 0; n < c->ny / item; n++) {
        t2i_chw_to_u8(a, ye + n * item, c->C, c->H, c->W);
        t2i_chw_to_u8(b, c->y + n * item, c->C, c->H, c->W);
        for (size_t i = 0; i < item; i++) r.px_changed += a[i] != b[i];
        r.px += (long)item;
    }
    printf("%-4s exact %8.2f ms (cpu %8.2f)  fast %8.2f ms (cpu %8.2f; kernels: %s); max |fast - exact| %.3g, "
           "8-bit values changed %ld of %ld\n",
           c->what, r.ms_exact, r.cpu_exact, r.ms_fast, r.cpu_fast, r.kernels, r.max_diff, r.px_changed, r.px);
    free(ye), free(a), free(b);
    return r;
}

static void json_fields(const char *what, const inf_result *r) {
    printf(",\"%s_exact_ms\":%.2f,\"%s_fast_ms\":%.2f,\"%s_exact_cpu_ms\":%.2f,\"%s_fast_cpu_ms\":%.2f", what,
           r->ms_exact, what, r->ms_fast, what, r->cpu_exact, what, r->cpu_fast);
    printf(",\"%s_max_diff\":%.3g,\"%s_px_changed\":%ld", what, r->max_diff, what, r->px_changed);
}

int bench_infer(int argc, char **argv) {
    int threads = 0, reps = 5, warmup = 1, batch = 64;
    const char *dir = NULL;
    t2i_flag flags[] = {
        {"--models", T2I_STR, &dir,
         "folder of gan.safetensors, vq.safetensors, sr.safetensors (default samples/models)"},
        {"--batch", T2I_INT, &batch, "images per GAN / VQ call"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--reps", T2I_INT, &reps, "timed repetitions (median reported)"},
        {"--warmup", T2I_INT, &warmup, "untimed repetitions first"},
    };
    t2i_cmd cmd = {
        "t2i bench infer",
        "Exact vs fast inference kernels on the shipped GAN, VQ decoder and SR models: time and differences.",
        "[options]", flags, (int)(sizeof flags / sizeof flags[0])};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 1000) || t2i_check_range_i("--warmup", warmup, 0, 100) ||
        t2i_check_range_i("--batch", batch, 1, 4096))
        return 2;
    t2i_set_threads(threads);
    const char *env = getenv("T2I_MODELS");
    if (!dir) dir = env && *env ? env : T2I_SOURCE_DIR "/samples/models";
    char *pg = t2i_asprintf("%s/gan.safetensors", dir), *pv = t2i_asprintf("%s/vq.safetensors", dir);
    char *ps = t2i_asprintf("%s/sr.safetensors", dir);
    gan_model gan;
    vq_model vq;
    sr_model sr;
    rc = gan_load(&gan, pg, 0, NULL);
    if (rc == 0 && (rc = vq_load(&vq, pv, 0, NULL)) != 0) gan_model_free(&gan);
    if (rc == 0 && (rc = sr_load(&sr, ps, 0, NULL)) != 0) gan_model_free(&gan), vq_model_free(&vq);
    free(pg), free(pv), free(ps);
    if (rc != 0) return t2i_fail_err();
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    printf("infer: %d threads, AVX2+FMA %s\n", t2i_get_threads(), t2i_cpu_avx2_fma() ? "yes" : "no");

    inf_ctx g;
    memset(&g, 0, sizeof g);
    g.what = "gan", g.gan = &gan, g.N = batch;
    int zd = gan.cfg.z_dim, cd = gan_cond_size(&gan.cfg);
    g.C = gan.cfg.channels, g.H = g.W = gan.cfg.res;
    g.ny = (size_t)batch * g.C * g.H * g.W;
    g.z = t2i_malloc((size_t)batch * zd * sizeof(float));
    g.c = t2i_malloc((size_t)batch * T2I_MAX(cd, 1) * sizeof(float));
    g.y = t2i_malloc(g.ny * sizeof(float));
    t2i_rng_fill_normal(&r, g.z, (size_t)batch * zd, 0.0f, 1.0f);
    t2i_rng_fill_normal(&r, g.c, (size_t)batch * T2I_MAX(cd, 1), 0.0f, 1.0f);
    for (int n = 0; n < batch && cd > 0; n++) {
        double s = 0;
        for (int k = 0; k < cd; k++) s += g.c[(size_t)n * cd + k] * g.c[(size_t)n * cd + k];
        for (int k = 0; k < cd; k++) g.c[(size_t)n * cd + k] /= (float)sqrt(s);
    }
    inf_result rg = compare(&g, warmup, reps);

    inf_ctx v;
    memset(&v, 0, sizeof v);
    v.what = "vq", v.vq = &vq, v.N = batch;
    v.C = vq.cfg.channels, v.H = v.W = vq.cfg.res;
    v.ny = (size_t)batch * v.C * v.H * v.W;
    size_t nc = (size_t)batch * vq.grid * vq.grid;
    v.codes = t2i_malloc(nc * sizeof(int32_t));
    for (size_t i = 0; i < nc; i++) v.codes[i] = (int32_t)t2i_rng_below(&r, (uint64_t)vq.cfg.n_codes);
    v.y = t2i_malloc(v.ny * sizeof(float));
    inf_result rv = compare(&v, warmup, reps);

    inf_ctx s;
    memset(&s, 0, sizeof s);
    s.what = "sr", s.sr = &sr, s.N = 1;
    s.C = 3, s.H = s.W = 128 * sr.cfg.scale;
    s.ny = (size_t)3 * s.H * s.W;
    s.x = t2i_malloc((size_t)3 * 128 * 128 * sizeof(float));
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < 128; y++)
            for (int x = 0; x < 128; x++)
                s.x[((size_t)ch * 128 + y) * 128 + x] =
                    0.6f * sinf(0.2f * x + ch) * cosf(0.13f * y) + 0.1f * t2i_rng_normal(&r);
    s.y = t2i_malloc(s.ny * sizeof(float));
    inf_result rs = compare(&s, warmup, reps);

    printf("{\"bench\":\"infer\",\"threads\":%d,\"avx2\":%d,\"batch\":%d,\"peak_rss_mb\":%.1f", t2i_get_threads(),
           t2i_cpu_avx2_fma(), batch, t2i_peak_rss_mb());
    json_fields("gan", &rg);
    json_fields("vq", &rv);
    json_fields("sr", &rs);
    printf("}\n");
    free(g.z), free(g.c), free(g.y), free(v.codes), free(v.y), free(s.x), free(s.y);
    gan_model_free(&gan);
    vq_model_free(&vq);
    sr_model_free(&sr);
    return 0;
}
