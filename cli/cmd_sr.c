/* cmd_sr.c - `t2i sr`: the super-resolution subcommands. Training and upscaling live with
 * the model (gan/sr/), evaluation and side-by-side crops with the other measurements
 * (eval/sr_eval.c); each subcommand prints its own --help. */
#include "args.h"
#include "commands.h"
#include "sr.h"
#include "sr_eval.h"

int cmd_sr(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", sr_cmd_train, "train an SR model (L1 pre-training, optional GAN fine-tuning)"},
        {"upscale", sr_cmd_upscale, "upscale an image of any size (tiled, bounded memory)"},
        {"eval", sr_cmd_eval, "PSNR / SSIM of a model and of bicubic on the held-out photos"},
        {"compare", sr_cmd_compare, "side-by-side crops: bicubic | models | original"},
    };
    return t2i_dispatch("t2i sr", "Super-resolution x2 / x4 (SRResNet, ESRGAN-style fine-tuning).", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
