/* commands.h - the t2i subcommands defined in cli/ (the others live with their module);
 * each takes (argc, argv) with argv[0] the subcommand's own name. */
#ifndef T2I_COMMANDS_H
#define T2I_COMMANDS_H

int cmd_ckpt(int argc, char **argv);   /* cli/cmd_ckpt.c: inspect safetensors files */
int ckpt_words(int argc, char **argv); /* cli/cmd_ckpt_words.c: `ckpt words`, caption words into a checkpoint */
int cmd_data(int argc, char **argv);   /* cli/cmd_data.c: write datasets to disk */
int cmd_eval(int argc, char **argv);   /* cli/cmd_eval.c: quality measurements */
int cmd_sr(int argc, char **argv);     /* cli/cmd_sr.c: super-resolution (gan/sr/, eval/sr_eval.c) */

#endif
