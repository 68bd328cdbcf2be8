/* sr_cmd.c - `t2i sr`: the super-resolution subcommands (train, upscale, eval, compare).
 * sr_cmd is what cli/main.c registers; each subcommand prints its own --help. */
#include "args.h"
#include "sr.h"

int sr_cmd(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", sr_cmd_train, "train an SR model (L1 pre-training, optional GAN fine-tuning)"},
        {"upscale", sr_cmd_upscale, "upscale an image of any size (tiled, bounded memory)"},
        {"eval", sr_cmd_eval, "PSNR / SSIM of a model and of bicubic on the held-out photos"},
        {"compare", sr_cmd_compare, "side-by-side crops: bicubic | models | original"},
    };
    return t2i_dispatch("t2i sr", "Super-resolution x2 / x4 (SRResNet, ESRGAN-style fine-tuning).", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
