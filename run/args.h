/* args.h - flag parsing for t2i subcommands, in the llama2.c manner: a table of flags with
 * their defaults (the variables' initial values), a usage message that lists every flag
 * and its default, and refusal - not clamping - of bad values.
 *
 *     int steps = 1000; float lr = 2e-4f; const char *out = "runs/gan";
 *     t2i_flag flags[] = {
 *         {"--steps", T2I_INT, &steps, "training steps"},
 *         {"--lr", T2I_FLOAT, &lr, "learning rate"},
 *         {"--out", T2I_STR, &out, "run folder"},
 *     };
 *     t2i_cmd cmd = {"t2i gan train", "Train a GAN.", "[options]", flags, 3};
 *     int rc = t2i_parse(&cmd, argc, argv);   // argv[0] is the subcommand name
 *     if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
 *
 * Positional arguments are collected in cmd.pos / cmd.npos. T2I_STRS flags take every
 * following argument up to the next one that starts with "--" (for --labels a b c); given
 * again, such a flag adds to its list (--data a --data b is --data a b).
 * "--flag=value" is accepted too. Errors print "t2i: ..." on stderr.
 *
 * cmd.pos and the T2I_STRS arrays belong to args.c, not to the command: t2i_dispatch frees
 * them when the command it called returns, so a command frees neither, on any of its exits.
 * Code that calls t2i_parse outside a dispatched command (a test) frees them with
 * t2i_parse_release().
 */
#ifndef T2I_ARGS_H
#define T2I_ARGS_H

#include <stdio.h>

/* A flag named --threads (T2I_INT) is checked to lie in 0 (all cores) .. T2I_MAX_THREADS. */
#define T2I_MAX_THREADS 1024

typedef enum { T2I_INT, T2I_LONG, T2I_FLOAT, T2I_STR, T2I_BOOL, T2I_STRS } t2i_flag_type;

typedef struct {
    const char **v;  /* the strings (pointers into argv) */
    int n;
} t2i_strs;

typedef struct {
    const char *name;   /* "--seed" */
    t2i_flag_type type;
    void *dst;          /* int*, long*, float*, const char**, int* (bool), t2i_strs* */
    const char *help;
} t2i_flag;

typedef struct {
    const char *name;    /* "t2i gan train" */
    const char *summary; /* one line */
    const char *usage;   /* after the name: "[options] IMAGE..." */
    const t2i_flag *flags;
    int nflags;
    const char *details; /* optional paragraph printed after the flags */
    /* filled by t2i_parse */
    const char **pos;
    int npos;
    unsigned long seen;  /* bit i set when flags[i] was given (first 64 flags) */
} t2i_cmd;

enum { T2I_PARSE_OK = 0, T2I_PARSE_HELP = 1, T2I_PARSE_ERROR = -1 };

int t2i_parse(t2i_cmd *cmd, int argc, char **argv);
/* Frees every array t2i_parse has made (cmd.pos, T2I_STRS values); they are invalid after. */
void t2i_parse_release(void);
/* How many arrays t2i_parse has made and not freed yet (for tests). */
int t2i_parse_held(void);
void t2i_usage(const t2i_cmd *cmd, FILE *f);
/* Was the flag given on the command line? */
int t2i_flag_given(const t2i_cmd *cmd, const char *name);

/* Prints "t2i: <message>" on stderr and returns exit code 1 (for `return t2i_fail(...)`). */
int t2i_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "t2i: " + t2i_error_msg() and returns 1. */
int t2i_fail_err(void);

/* Validation helpers: return 0 when fine, else print "t2i: --name must be ..." and return -1. */
int t2i_check_range_i(const char *name, long v, long lo, long hi);
int t2i_check_range_f(const char *name, double v, double lo, double hi);
/* An output file named by `what` (a flag, or "OUT"), checked before the work that makes it:
 * its folder exists, it is not a folder or device, and with ext (".png") it ends so. */
int t2i_check_output_file(const char *what, const char *path, const char *ext);

/* Subcommand dispatch: finds argv[1] among names and calls it with argc-1, argv+1, then frees
 * the arrays t2i_parse made during the call. */
typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} t2i_subcmd;
int t2i_dispatch(const char *prog, const char *summary, const t2i_subcmd *subs, int nsubs, int argc,
                 char **argv);

#endif
