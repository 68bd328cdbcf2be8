/* bench_b4.c - `t2i bench b4`: bench/README.md B4, super-resolution x4 (SRResNet-lite:
 * width 64, 8 residual blocks, two PixelShuffle stages; gan/sr/sr.h preset "b4").
 *
 *   infer_ms           upscale one 128x128 image to 512x512 (one tile: the whole image,
 *                      through the inference path of `t2i sr upscale`)
 *   train_ms_per_step  batch 16 of 32x32 LR / 128x128 HR crops, L1 loss, Adam lr 1e-4
 *                      (zero grad + forward + backward + update)
 *   gflops             achieved GFLOP/s over both (multiply-adds counted as 2 flops;
 *                      backward counted as twice the forward)
 * Inputs are random in [-1, 1]; weights PyTorch-default initialised. The last line is one
 * JSON object. bench/torch_b4.py measures the same with PyTorch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "sr.h"
#include "optim.h"

int bench_b4(int argc, char **argv);

typedef struct {
    sr_model m;
    nn_optim opt;
    nn_arena arena;
    float *lr, *hr, *x, *y;
    int B;
} b4_ctx;

static void b4_infer(void *p) {
    b4_ctx *c = p;
    sr_upscale_image(&c->m.ema, 4, c->x, 128, 128, c->y, 0, -1);
}

static void b4_train(void *p) {
    b4_ctx *c = p;
    sr_l1_step(&c->m, &c->opt, &c->arena, c->lr, c->hr, c->B, 1e-4f);
}

int bench_b4(int argc, char **argv) {
    int threads = 0, reps = 5, warmup = 2;
    t2i_flag flags[] = {
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--reps", T2I_INT, &reps, "timed repetitions (median reported)"},
        {"--warmup", T2I_INT, &warmup, "untimed repetitions first"},
    };
    t2i_cmd cmd = {"t2i bench b4",
                   "B4: SR x4 (SRResNet-lite) inference 128->512 and training step (batch 16, L1, Adam).", "[options]",
                   flags, (int)(sizeof flags / sizeof flags[0])};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 1000) || t2i_check_range_i("--warmup", warmup, 0, 100)) return 2;
    t2i_set_threads(threads);
    int nt = t2i_get_threads();

    b4_ctx c;
    memset(&c, 0, sizeof c);
    sr_config cfg;
    sr_config_b4(&cfg, 4);
    cfg.crop = 128; /* B4's training crops: 32x32 LR, 128x128 HR (the preset trains on 96) */
    t2i_rng r;
    t2i_rng_seed(&r, 4);
    sr_model_build(&c.m, &cfg, &r);
    c.B = 16;
    c.opt = nn_adam(1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f);
    nn_arena_init(&c.arena);
    size_t nl = (size_t)c.B * 3 * 32 * 32, nh = nl * 16;
    c.lr = t2i_malloc_aligned(nl * sizeof(float));
    c.hr = t2i_malloc_aligned(nh * sizeof(float));
    c.x = t2i_malloc_aligned((size_t)3 * 128 * 128 * sizeof(float));
    c.y = t2i_malloc_aligned((size_t)3 * 512 * 512 * sizeof(float));
    t2i_rng_fill_uniform(&r, c.lr, nl, -1, 1);
    t2i_rng_fill_uniform(&r, c.hr, nh, -1, 1);
    t2i_rng_fill_uniform(&r, c.x, (size_t)3 * 128 * 128, -1, 1);

    /* g is built for 32x32 inputs; the cost is proportional to the LR pixel count */
    T2I_ASSERTF(c.m.g.in_H == 32 && c.m.g.in_W == 32, "B4: G built for %dx%d, not 32x32", c.m.g.in_H, c.m.g.in_W);
    double fwd32 = nn_seq_flops(&c.m.g);
    double infer_flop = fwd32 * 16.0, train_flop = 3.0 * fwd32 * c.B;
    printf("b4: G %zu parameters, %.2f GFLOP per 128x128 -> 512x512 forward, %d threads\n", nn_params_count(&c.m.gp, 1),
           infer_flop * 1e-9, nt);
    double t_inf = bench_time(b4_infer, &c, warmup, reps);
    printf("infer 128x128 -> 512x512: %.1f ms (%.1f GFLOP/s)\n", t_inf * 1e3, infer_flop / t_inf * 1e-9);
    double t_tr = bench_time(b4_train, &c, warmup, reps);
    printf("train step, batch 16 (32x32 -> 128x128), L1, Adam: %.1f ms (%.1f GFLOP/s)\n", t_tr * 1e3,
           train_flop / t_tr * 1e-9);
    double gf = (infer_flop + train_flop) / (t_inf + t_tr) * 1e-9;
    printf("{\"bench\":\"b4\",\"threads\":%d,\"peak_rss_mb\":%.1f,\"gflops\":%.1f,\"infer_ms\":%.2f,"
           "\"train_ms_per_step\":%.2f,\"infer_gflops\":%.1f,\"train_gflops\":%.1f}\n",
           nt, t2i_peak_rss_mb(), gf, t_inf * 1e3, t_tr * 1e3, infer_flop / t_inf * 1e-9, train_flop / t_tr * 1e-9);
    nn_arena_free(&c.arena);
    t2i_free(c.lr), t2i_free(c.hr), t2i_free(c.x), t2i_free(c.y);
    sr_model_free(&c.m);
    return 0;
}
