/* bench_b3.c - `t2i bench b3`: CLIP ViT-B/32 inference (bench/README.md B3) at
 * random weights (OpenAI's initialisation): ms per image for a batch of 32 224x224 images
 * (the rerank case) and ms for one caption, peak RSS and GFLOP/s of the image batch
 * against the sgemm peak measured here. bench/torch_b3.py runs the same in PyTorch.
 *
 * The caption is --caption-tokens long (start + words + end, default 16, a typical
 * caption); the text tower computes only up to its end token (clip.h), which is exact for
 * a causal tower. The full-context (77 position) time is printed too, for comparison
 * with implementations that always run the whole context.
 *
 * --text-weights bf16 (the default) rounds every weight to bf16 before packing, as the
 * model is when loaded from a bf16 checkpoint (t2i ships its models as bf16): the text
 * tower's packed copy then keeps its matrices as bf16 (nn/packed.c) and a caption reads
 * half the bytes; the arithmetic is f32 as with f32 weights. --text-weights f32 keeps the
 * f32 initialisation (f32 panels, the storage PyTorch's twin reads). The JSON names which.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "clip.h"

typedef struct {
    clip_model *m;
    float *images, *feat;
    int32_t *tokens;
    int n;
} b3_ctx;

static void run_images(void *p) {
    b3_ctx *c = p;
    nn_arena_reset(&c->m->arena);
    clip_image_forward(c->m, NULL, &c->m->arena, c->images, c->n, c->feat);
}

static void run_text(void *p) {
    b3_ctx *c = p;
    nn_arena_reset(&c->m->arena);
    clip_text_forward(c->m, NULL, &c->m->arena, c->tokens, 1, c->feat);
}

int bench_b3(int argc, char **argv) {
    int threads = 0, reps = 5, batch = 32, cap_tokens = 16;
    const char *text_weights = "bf16";
    t2i_flag flags[] = {
        {"--threads", T2I_INT, &threads, "threads (0 = OpenMP default)"},
        {"--reps", T2I_INT, &reps, "timed repetitions (median reported)"},
        {"--batch", T2I_INT, &batch, "images per batch"},
        {"--caption-tokens", T2I_INT, &cap_tokens, "caption length in tokens, start and end included (2..77)"},
        {"--text-weights", T2I_STR, &text_weights,
         "bf16 (weights rounded to bf16 as in a bf16 checkpoint; the text tower packs them as bf16) or f32"},
    };
    t2i_cmd cmd = {"t2i bench b3", "CLIP ViT-B/32 inference: ms per image (batch 32) and per caption.", "[options]",
                   flags, (int)(sizeof flags / sizeof flags[0])};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (t2i_check_range_i("--reps", reps, 1, 1000) || t2i_check_range_i("--batch", batch, 1, 1024) ||
        t2i_check_range_i("--caption-tokens", cap_tokens, 2, 77))
        return 2;
    int bf16 = !strcmp(text_weights, "bf16");
    if (!bf16 && strcmp(text_weights, "f32") != 0) {
        fprintf(stderr, "t2i bench b3: --text-weights must be bf16 or f32, not '%s'\n", text_weights);
        return 2;
    }
    t2i_set_threads(threads);
    int nt = t2i_get_threads();

    double peak = bench_sgemm_gflops(1024, reps);
    printf("sgemm 1024^3: %.1f GFLOP/s (%d threads)\n", peak, nt);

    clip_config cfg;
    clip_config_vit_b32(&cfg);
    clip_model *m = t2i_calloc(1, sizeof *m);
    clip_model_build(m, &cfg);
    t2i_rng r;
    t2i_rng_seed(&r, 42);
    clip_model_init(m, &r);
    if (bf16) {
        float *v = m->ps.data; /* the whole value block: padding between tensors is zero */
        for (size_t i = 0; i < m->ps.total; i++) v[i] = t2i_bf16_to_f32(t2i_f32_to_bf16(v[i]));
    }
    clip_text_pack(m); /* as clip_load does for every model loaded for inference */
    printf("ViT-B/32: %zu parameters\n", nn_params_count(&m->ps, 1));

    b3_ctx c = {m, NULL, NULL, NULL, batch};
    size_t R = (size_t)cfg.image_resolution;
    c.images = t2i_malloc_aligned((size_t)batch * 3 * R * R * sizeof(float));
    t2i_rng_fill_normal(&r, c.images, (size_t)batch * 3 * R * R, 0.0f, 1.0f);
    c.feat = t2i_malloc((size_t)batch * cfg.embed_dim * sizeof(float));
    c.tokens = t2i_calloc((size_t)cfg.context_length, sizeof(int32_t));
    c.tokens[0] = 49406;
    for (int t = 1; t < cap_tokens - 1; t++) c.tokens[t] = 256 + (int)t2i_rng_below(&r, 40000);
    c.tokens[cap_tokens - 1] = 49407;

    double t_img = bench_time(run_images, &c, 1, reps);
    double t_txt = bench_time(run_text, &c, 2, reps * 4);
    /* the whole context: end token at position 76 */
    int32_t *full = t2i_calloc((size_t)cfg.context_length, sizeof(int32_t));
    memcpy(full, c.tokens, (size_t)cfg.context_length * sizeof(int32_t));
    full[cap_tokens - 1] = 320;
    full[cfg.context_length - 1] = 49407;
    int32_t *keep = c.tokens;
    c.tokens = full;
    double t_full = bench_time(run_text, &c, 1, reps * 2);
    c.tokens = keep;

    double img_flop = clip_image_flops(&cfg) * batch;
    double gflops = img_flop / t_img * 1e-9;
    printf("images: batch %d 224x224: %.1f ms per batch, %.2f ms per image, %.1f GFLOP/s (%.0f%% of sgemm)\n", batch,
           t_img * 1e3, t_img * 1e3 / batch, gflops, 100.0 * gflops / peak);
    printf("caption: %d tokens, %s weights: %.2f ms (full 77-token context: %.2f ms)\n", cap_tokens, text_weights,
           t_txt * 1e3, t_full * 1e3);
    printf("{\"bench\":\"b3\",\"threads\":%d,\"peak_rss_mb\":%.1f,\"gflops\":%.1f,\"ms_per_image\":%.3f,"
           "\"ms_per_caption\":%.3f,\"caption_tokens\":%d,\"ms_per_caption_ctx77\":%.3f,\"sgemm_gflops\":%.1f,"
           "\"text_weights\":\"%s\"}\n",
           nt, t2i_peak_rss_mb(), gflops, t_img * 1e3 / batch, t_txt * 1e3, cap_tokens, t_full * 1e3, peak, text_weights);
    t2i_free(c.images);
    free(c.feat), free(c.tokens), free(full);
    clip_free(m);
    return 0;
}
