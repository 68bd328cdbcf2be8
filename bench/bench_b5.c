/* bench_b5.c - `t2i bench b5`: the VQ image tokenizer of bench/README.md B5.
 *
 * Model: dalle_tok/vq.h preset "b5" (3x32x32 -> 8x8 codes, codebook 512 x 64, PyTorch init).
 * Train: one step = zero grad + encoder forward + nearest-code search + decoder forward +
 *   MSE + backward through decoder, straight-through and encoder + Adam (lr 3e-4) + EMA
 *   codebook update, at batch 64 (--batch). The codebook is first initialised from the
 *   data (one untimed step with a restart of every code), then steps are timed without
 *   restarts. Unit: ms per step (median of --reps after a warm-up step).
 * Encode: vq_encode of 1024 images (internally in chunks of 64), evaluation mode.
 *   Unit: images/s.
 * Inputs are random FC32-like images (a black canvas with a coloured textured blob),
 * drawn with a fixed seed. gflops is the training step's (forward multiply-adds x 2 x 3
 * for forward + backward) plus the distance GEMM, over the median time.
 * bench/torch_b5.py is the PyTorch twin (same sizes, same JSON fields + "impl").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "vq.h"
#include "optim.h"
#include "rng.h"

typedef struct {
    vq_model *m;
    nn_optim *opt;
    nn_arena *arena;
    const float *x;
    int batch, n_enc;
    int32_t *codes;
    t2i_rng rng;
} b5_ctx;

static void train_step(void *p) {
    b5_ctx *c = p;
    vq_stats st;
    vq_train_step(c->m, c->opt, c->arena, c->x, c->batch, VQ_RESTART_NONE, 0.0f, &c->rng, &st);
}

static void encode(void *p) {
    b5_ctx *c = p;
    nn_arena_reset(c->arena);
    vq_encode(c->m, c->arena, c->x, c->n_enc, c->codes);
}

/* A black 32x32 canvas with an elliptic blob of noisy gray times a palette colour, in
 * [-1, 1], like FC32 items. */
static void fake_images(float *x, int n, t2i_rng *r) {
    static const float pal[8][3] = {{1, 1, 1}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {.5f, 0, .5f}, {1, .5f, 0}, {0, 1, 1}};
    for (int i = 0; i < n; i++) {
        float cy = 10 + 12 * t2i_rng_uniform(r), cx = 10 + 12 * t2i_rng_uniform(r);
        float ry = 5 + 7 * t2i_rng_uniform(r), rx = 5 + 7 * t2i_rng_uniform(r), base = 0.3f + 0.7f * t2i_rng_uniform(r);
        const float *col = pal[t2i_rng_below(r, 8)];
        for (int y = 0; y < 32; y++)
            for (int xx = 0; xx < 32; xx++) {
                float dy = (y - cy) / ry, dx = (xx - cx) / rx;
                float g = dy * dy + dx * dx <= 1.0f ? base + 0.2f * t2i_rng_normal(r) : 0.0f;
                g = g < 0 ? 0 : g > 1 ? 1 : g;
                for (int ch = 0; ch < 3; ch++) x[(((size_t)i * 3 + ch) * 32 + y) * 32 + xx] = 2.0f * g * col[ch] - 1.0f;
            }
    }
}

int bench_b5(int argc, char **argv) {
    int threads = 0, reps = 5, batch = 64, n_enc = 1024;
    t2i_flag flags[] = {
        {"--threads", T2I_INT, &threads, "threads (0 = OpenMP default)"},
        {"--reps", T2I_INT, &reps, "timed repetitions (median reported)"},
        {"--batch", T2I_INT, &batch, "training batch (B5: 64)"},
        {"--encode-n", T2I_INT, &n_enc, "images encoded per timed repetition"},
    };
    t2i_cmd cmd = {"t2i bench b5", "B5: VQ tokenizer training step (batch 64) and encode throughput.", "[options]",
                   flags, (int)(sizeof flags / sizeof flags[0])};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 1000) || t2i_check_range_i("--batch", batch, 1, 4096) ||
        t2i_check_range_i("--encode-n", n_enc, 1, 1 << 20))
        return 2;
    t2i_set_threads(threads);
    int nt = t2i_get_threads();

    vq_config cfg;
    vq_config_b5(&cfg);
    t2i_rng r;
    t2i_rng_seed(&r, 42);
    vq_model m;
    vq_model_build(&m, &cfg, &r);
    int nx = batch > n_enc ? batch : n_enc;
    float *x = t2i_malloc_aligned((size_t)nx * 3 * 32 * 32 * sizeof(float));
    fake_images(x, nx, &r);
    nn_optim opt = nn_adam(3e-4f, 0.9f, 0.999f, 1e-8f, 0.0f);
    nn_arena arena;
    nn_arena_init(&arena);
    b5_ctx c = {&m, &opt, &arena, x, batch, n_enc, t2i_malloc((size_t)nx * 64 * sizeof(int32_t)), r};
    vq_stats st;
    vq_train_step(&m, &opt, &arena, x, batch, VQ_RESTART_ALL, 0.0f, &c.rng, &st); /* codebook from data */
    printf("b5: VQ tokenizer, %zu parameters, codebook %d x %d, %d threads\n", nn_params_count(&m.ps, 1),
           cfg.n_codes, cfg.code_dim, nt);

    double t_train = bench_time(train_step, &c, 1, reps);
    double f_img = vq_flops_per_image(&m);
    double train_flop = 3.0 * f_img * batch;
    printf("train step (batch %d): %.1f ms (%.1f GFLOP/s, %.0f images/s)\n", batch, t_train * 1e3,
           train_flop / t_train * 1e-9, batch / t_train);
    double t_enc = bench_time(encode, &c, 1, reps);
    double enc_flop = (nn_seq_flops(&m.enc) + 2.0 * 64 * cfg.n_codes * cfg.code_dim) * n_enc;
    printf("encode %d images: %.1f ms (%.0f images/s, %.1f GFLOP/s)\n", n_enc, t_enc * 1e3, n_enc / t_enc,
           enc_flop / t_enc * 1e-9);
    printf("{\"bench\":\"b5\",\"threads\":%d,\"peak_rss_mb\":%.1f,\"gflops\":%.1f,\"train_ms_per_step\":%.2f,"
           "\"encode_images_per_s\":%.1f}\n",
           nt, t2i_peak_rss_mb(), train_flop / t_train * 1e-9, t_train * 1e3, n_enc / t_enc);
    nn_arena_free(&arena);
    t2i_free(x);
    free(c.codes);
    vq_model_free(&m);
    return 0;
}
