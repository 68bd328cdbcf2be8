/* cmd_eval.c - `t2i eval`: quality measurements (FID/KID, caption fidelity). */
#include "args.h"
#include "commands.h"
#include "fid.h"
#include "fidelity.h"

int cmd_eval(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"fid", eval_cmd_fid, "FID/KID and class histogram of generated Fashion-MNIST-like images"},
        {"fidelity", eval_cmd_fidelity, "do generated images show the captioned class and colour?"},
    };
    return t2i_dispatch("t2i eval", "Quality measurements.", subs, (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
