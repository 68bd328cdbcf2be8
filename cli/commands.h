/* commands.h - the t2i subcommands; each lives with its module and takes (argc, argv)
 * with argv[0] the subcommand's own name. */
#ifndef T2I_COMMANDS_H
#define T2I_COMMANDS_H

int cmd_ckpt(int argc, char **argv);   /* cli/cmd_ckpt.c: inspect safetensors files */
int cmd_data(int argc, char **argv);   /* cli/cmd_data.c: write datasets to disk */
int cmd_eval(int argc, char **argv);   /* cli/cmd_eval.c: quality measurements */
int cmd_bench(int argc, char **argv);  /* bench/bench.c: benchmarks B1-B5 and the core */

#endif
