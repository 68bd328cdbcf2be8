/* bench_b1.c - `t2i bench b1`: the B1 DCGAN-28 training step of bench/README.md
 * (gan preset "b1": D update on 64 real + 64 fake, then G update through a frozen D),
 * timed after warm-up; median ms/step, images/s (real images consumed per second),
 * peak RSS and nominal GFLOP/s (step = 4 G forwards + 8 D forwards per image, counting a
 * backward as two forwards). bench/torch_b1.py is the PyTorch twin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "gan.h"

typedef struct {
    gan_model *m;
    nn_optim *og, *od;
    nn_arena *a;
    gan_train_opts *o;
    float *x, *z;
    t2i_rng *r;
} b1_ctx;

static void b1_step(void *p) {
    b1_ctx *c = p;
    gan_step_stats st;
    t2i_rng_fill_normal(c->r, c->z, 64 * 100, 0.0f, 1.0f);
    gan_d_step(c->m, c->od, c->a, c->o, c->x, c->z, NULL, NULL, 64, &st);
    t2i_rng_fill_normal(c->r, c->z, 64 * 100, 0.0f, 1.0f);
    gan_g_step(c->m, c->og, c->a, c->o, c->z, NULL, 64, &st);
}

int bench_b1(int argc, char **argv) {
    int threads = 0, reps = 20;
    t2i_flag flags[] = {
        {"--threads", T2I_INT, &threads, "threads (0 = OpenMP default)"},
        {"--reps", T2I_INT, &reps, "timed steps (median reported)"},
    };
    t2i_cmd cmd = {"t2i bench b1", "B1: DCGAN-28 training step, batch 64.", "[options]", flags, 2};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 10000)) return 2;
    t2i_set_threads(threads);
    int nt = t2i_get_threads();
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    gan_config cfg;
    gan_config_b1(&cfg);
    gan_model m;
    gan_model_build(&m, &cfg, &r);
    gan_train_opts o;
    memset(&o, 0, sizeof o);
    o.loss = GAN_LOSS_NS, o.smooth = 1.0f;
    nn_optim og = nn_adam(2e-4f, 0.5f, 0.999f, 1e-8f, 0), od = nn_adam(2e-4f, 0.5f, 0.999f, 1e-8f, 0);
    nn_arena a;
    nn_arena_init(&a);
    float *x = t2i_malloc_aligned(64 * 784 * sizeof(float)), *z = t2i_malloc(64 * 100 * sizeof(float));
    t2i_rng_fill_uniform(&r, x, 64 * 784, -1, 1);
    b1_ctx c = {&m, &og, &od, &a, &o, x, z, &r};
    double s = bench_time(b1_step, &c, 3, reps);
    double gf = nn_seq_flops(&m.g), df = nn_seq_flops(&m.d) + 2.0 * m.feat;
    double flops = 64 * (4 * gf + 8 * df);
    double ms = s * 1e3;
    printf("B1 t2i: %.1f ms/step, %.0f images/s, %.1f GFLOP/s (%d threads; %.2f GFLOP per step)\n", ms, 64 / s,
           flops / s * 1e-9, nt, flops * 1e-9);
    printf("{\"bench\":\"b1\",\"threads\":%d,\"peak_rss_mb\":%.1f,\"gflops\":%.1f,\"ms_per_step\":%.2f,"
           "\"images_per_s\":%.1f}\n",
           nt, t2i_peak_rss_mb(), flops / s * 1e-9, ms, 64 / s);
    free(x), free(z);
    nn_arena_free(&a);
    gan_model_free(&m);
    return 0;
}
