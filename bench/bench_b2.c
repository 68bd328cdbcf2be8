/* bench_b2.c - `t2i bench b2`: the B2 image-token transformer of bench/README.md
 * (dalle preset "b2": 16 text + 64 image tokens, width 256, 6 layers, 8 heads).
 *
 *   train   batch 32 of random sequences, plain mean cross-entropy of the 79 next-token
 *           targets, AdamW lr 3e-4 betas (0.9, 0.999) eps 1e-8 weight decay 0.01; one step =
 *           zero grad + forward + backward + update; median ms per step.
 *   sample  one caption of 16 random text tokens, 32 candidates decoded together, 64 image
 *           tokens each, image-code logits / temperature 1, top 64 kept, softmax, one draw;
 *           with the key/value cache (prefill 16, then 63 one-token steps) and without
 *           (full forward over the growing prefix at every step); ms for all 32.
 * GFLOP/s is the training step's: 3 forward passes' worth (a backward counted as two)
 * over the 32 x 80 positions (nn_tf_flops plus the head), divided by its time.
 * bench/torch_b2.py is the PyTorch twin (same sizes and JSON fields, "impl":"pytorch").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "dalle.h"

int bench_b2(int argc, char **argv);

typedef struct {
    dalle_model *m;
    nn_optim *opt;
    nn_arena *a;
    int32_t *tokens;
    int B;
    const int32_t *text;
    dalle_sample_opts *so;
    int32_t *codes;
} b2_ctx;

static void b2_train(void *p) {
    b2_ctx *c = p;
    nn_arena_reset(c->a);
    dalle_loss L;
    dalle_train_grads(c->m, c->a, c->tokens, c->B, -1.0f, &L);
    nn_optim_step(c->opt, &c->m->ps, c->opt->lr);
}

static void b2_sample(void *p) {
    b2_ctx *c = p;
    nn_arena_reset(c->a);
    dalle_sample(c->m, c->a, c->text, 32, 1, 0, c->so, c->codes);
}

int bench_b2(int argc, char **argv) {
    int threads = 0, reps = 5, sample_reps = 3, nocache_reps = 1;
    t2i_flag flags[] = {
        {"--threads", T2I_INT, &threads, "threads (0 = OpenMP default)"},
        {"--reps", T2I_INT, &reps, "timed training steps (median reported)"},
        {"--sample-reps", T2I_INT, &sample_reps, "timed cached sampling runs"},
        {"--nocache-reps", T2I_INT, &nocache_reps, "timed uncached sampling runs (0 = skip; each takes long)"},
    };
    t2i_cmd cmd = {"t2i bench b2", "B2: image-token transformer training step and sampling.", "[options]", flags,
                   (int)(sizeof flags / sizeof flags[0])};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 10000) || t2i_check_range_i("--sample-reps", sample_reps, 1, 1000) ||
        t2i_check_range_i("--nocache-reps", nocache_reps, 0, 1000))
        return 2;
    t2i_set_threads(threads);
    int nt = t2i_get_threads();
    dalle_config cfg;
    dalle_config_b2(&cfg);
    dalle_model m;
    dalle_build(&m, &cfg);
    t2i_rng r;
    t2i_rng_seed(&r, 1);
    dalle_init(&m, &r);
    int B = 32, T = dalle_seq_len(&cfg), TL = cfg.text_len;
    int32_t *tokens = t2i_malloc((size_t)B * T * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tokens[b * T + t] = t < TL ? (int)t2i_rng_below(&r, (uint64_t)cfg.text_vocab)
                                       : cfg.text_vocab + (int)t2i_rng_below(&r, (uint64_t)cfg.codebook);
    nn_optim opt = nn_adamw(3e-4f, 0.9f, 0.999f, 1e-8f, 0.01f);
    nn_params_moments(&m.ps);
    nn_arena a;
    nn_arena_init(&a);
    dalle_sample_opts so;
    dalle_sample_defaults(&so);
    so.top_k = 64;
    int32_t *codes = t2i_malloc((size_t)32 * dalle_image_len(&cfg) * sizeof(int32_t));
    b2_ctx c = {&m, &opt, &a, tokens, B, tokens, &so, codes};

    double st = bench_time(b2_train, &c, 1, reps);
    double flops = 3.0 * B * dalle_flops(&cfg, T);
    printf("B2 t2i train: %.1f ms/step, %.1f GFLOP/s (%d threads; %.1f GFLOP per step)\n", st * 1e3, flops / st * 1e-9,
           nt, flops * 1e-9);
    fflush(stdout);
    so.cached = 1;
    double sc = bench_time(b2_sample, &c, 1, sample_reps);
    printf("B2 t2i sample 32 x 64 tokens, cached: %.1f ms\n", sc * 1e3);
    fflush(stdout);
    double sn = -1;
    if (nocache_reps > 0) {
        so.cached = 0;
        sn = bench_time(b2_sample, &c, 0, nocache_reps);
        printf("B2 t2i sample 32 x 64 tokens, uncached: %.1f ms\n", sn * 1e3);
    }
    printf("{\"bench\":\"b2\",\"threads\":%d,\"peak_rss_mb\":%.1f,\"gflops\":%.1f,\"train_ms_per_step\":%.2f,"
           "\"sample_cached_ms\":%.1f,\"sample_nocache_ms\":%.1f}\n",
           nt, t2i_peak_rss_mb(), flops / st * 1e-9, st * 1e3, sc * 1e3, sn > 0 ? sn * 1e3 : -1.0);
    free(tokens), free(codes);
    nn_arena_free(&a);
    dalle_free(&m);
    return 0;
}
