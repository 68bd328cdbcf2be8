/* bench.c - `t2i bench NAME`: the benchmarks of bench/README.md and the core's. */
#include "args.h"
#include "bench.h"

int cmd_bench(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"core", bench_core, "sgemm peak; conv/convT/attention fwd+bwd at B1/B2 sizes"},
        {"b1", bench_b1, "B1: DCGAN-28 training step (batch 64)"},
        {"b2", bench_b2, "B2: DALL-E transformer train step and cached sampling"},
        {"b3", bench_b3, "B3: CLIP ViT-B/32 inference (ms per image at batch 32, ms per caption)"},
        {"b4", bench_b4, "B4: super-resolution train step and upscale throughput"},
        {"b5", bench_b5, "B5: VQ tokenizer train step and encode throughput"},
        {"infer", bench_infer, "exact vs fast inference kernels on the shipped GAN, VQ and SR models"},
    };
    return t2i_dispatch("t2i bench", "Benchmarks; each prints readable lines, then one JSON line.", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
