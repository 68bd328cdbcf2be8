/* sr_eval.h - evaluation commands of the super-resolution models (sr_eval.c). */
#ifndef T2I_SR_EVAL_H
#define T2I_SR_EVAL_H

int sr_cmd_eval(int argc, char **argv);    /* `t2i sr eval`: PSNR / SSIM against bicubic */
int sr_cmd_compare(int argc, char **argv); /* `t2i sr compare`: side-by-side crops */

#endif
