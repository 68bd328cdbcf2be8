/* main.c - the t2i command: one program, subcommands per module. */
#include <stdlib.h>

#include "args.h"
#include "base.h"
#include "bench.h"
#include "commands.h"
#include "clip.h"
#include "dalle.h"
#include "generate.h"
#include "serve.h"
#include "vq.h"
#include "classifier.h"
#include "gan.h"
#include "sr.h"

int main(int argc, char **argv) {
    t2i_tmp_cleanup_on_signals(); /* trainers replace it by a save-then-exit handler */
    const char *threads = getenv("T2I_THREADS");
    if (threads) t2i_set_threads(atoi(threads));
    static const t2i_subcmd subs[] = {
        {"ckpt", cmd_ckpt, "inspect checkpoints (safetensors files)"},
        {"data", cmd_data, "write datasets (fashion-captions) to disk"},
        {"gan", gan_cmd, "train and sample GANs"},
        {"clip", clip_cmd, "CLIP: train, tokenize, embed, classify, zeroshot, rerank"},
        {"vq", vq_cmd, "VQ image tokenizer: train, encode, decode, eval"},
        {"dalle", dalle_cmd, "DALL-E-style transformer over caption and image tokens: train, sample"},
        {"generate", generate_cmd, "captions -> candidates (DALL-E and/or GAN) -> CLIP rerank -> top images"},
        {"serve", serve_cmd, "HTTP server: generation (OpenAI-style), jobs, rerank, classify, a web page"},
        {"sr", cmd_sr, "super-resolution: train, upscale, eval, compare"},
        {"classify", cls_cmd, "the Fashion-MNIST classifier behind FID/KID and fidelity"},
        {"eval", cmd_eval, "quality measurements: FID/KID, caption fidelity"},
        {"bench", cmd_bench, "benchmarks: core, b1..b5"},
    };
    return t2i_dispatch("t2i", "t2i: text-to-image toolkit (GAN, DALL-E-style tokens, CLIP reranking, super-resolution)",
                        subs, (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
