/* args.c - see args.h. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base.h"

int t2i_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("t2i: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int t2i_fail_err(void) { return t2i_fail("%s", t2i_error_msg()); }

static void print_default(const t2i_flag *f, FILE *out) {
    switch (f->type) {
    case T2I_INT: fprintf(out, " (default %d)", *(int *)f->dst); break;
    case T2I_LONG: fprintf(out, " (default %ld)", *(long *)f->dst); break;
    case T2I_FLOAT: fprintf(out, " (default %g)", *(float *)f->dst); break;
    case T2I_STR: {
        const char *s = *(const char **)f->dst;
        if (s) fprintf(out, " (default %s)", s);
        break;
    }
    case T2I_BOOL: break;
    case T2I_STRS: break;
    }
}

static const char *type_hint(t2i_flag_type t) {
    switch (t) {
    case T2I_INT:
    case T2I_LONG: return " N";
    case T2I_FLOAT: return " X";
    case T2I_STR: return " S";
    case T2I_STRS: return " S...";
    case T2I_BOOL: return "";
    }
    return "";
}

void t2i_usage(const t2i_cmd *cmd, FILE *out) {
    fprintf(out, "usage: %s %s\n%s\n", cmd->name, cmd->usage ? cmd->usage : "[options]",
            cmd->summary ? cmd->summary : "");
    if (cmd->nflags) fprintf(out, "\noptions:\n");
    for (int i = 0; i < cmd->nflags; i++) {
        const t2i_flag *f = &cmd->flags[i];
        char left[64];
        snprintf(left, sizeof left, "%s%s", f->name, type_hint(f->type));
        fprintf(out, "  %-24s %s", left, f->help ? f->help : "");
        print_default(f, out);
        fputc('\n', out);
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this message");
    if (cmd->details) fprintf(out, "\n%s\n", cmd->details);
}

static int parse_value(const t2i_cmd *cmd, const t2i_flag *f, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case T2I_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end || x < -2147483647L || x > 2147483647L)
            return t2i_fail("%s: %s expects an integer, got '%s'", cmd->name, f->name, v), -1;
        /* every command's --threads means the same: 0 = all cores, else a count */
        if (strcmp(f->name, "--threads") == 0 && (x < 0 || x > T2I_MAX_THREADS))
            return t2i_fail("%s: --threads must be 0 (all cores) to %d, got %ld", cmd->name, T2I_MAX_THREADS, x), -1;
        *(int *)f->dst = (int)x;
        return 0;
    }
    case T2I_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end)
            return t2i_fail("%s: %s expects an integer, got '%s'", cmd->name, f->name, v), -1;
        *(long *)f->dst = x;
        return 0;
    }
    case T2I_FLOAT: {
        float x = strtof(v, &end);
        if (errno || !*v || *end || !isfinite(x))
            return t2i_fail("%s: %s expects a number, got '%s'", cmd->name, f->name, v), -1;
        *(float *)f->dst = x;
        return 0;
    }
    case T2I_STR:
        /* an empty path or text is never meant: say so here, not as ": cannot open" later */
        if (!*v) return t2i_fail("%s: %s was given an empty value", cmd->name, f->name), -1;
        *(const char **)f->dst = v;
        return 0;
    default: return -1;
    }
}

/* The arrays t2i_parse makes, newest first. Each command's live until t2i_dispatch gets the
 * command's return: one place frees them, whichever of its many exits a command takes. */
typedef struct parse_block {
    struct parse_block *next;
    const char *v[];
} parse_block;
static parse_block *parsed;

static const char **parse_array(int argc) {
    parse_block *b = t2i_calloc(1, sizeof *b + ((size_t)argc + 1) * sizeof(char *));
    b->next = parsed;
    parsed = b;
    return b->v;
}

/* Frees the arrays made since `mark` was the newest (a dispatcher's command may dispatch again). */
static void release_to(const parse_block *mark) {
    while (parsed && parsed != mark) {
        parse_block *b = parsed;
        parsed = b->next;
        free(b);
    }
}

void t2i_parse_release(void) { release_to(NULL); }

int t2i_parse_held(void) {
    int n = 0;
    for (const parse_block *b = parsed; b; b = b->next) n++;
    return n;
}

int t2i_parse(t2i_cmd *cmd, int argc, char **argv) {
    cmd->pos = parse_array(argc);
    cmd->npos = 0;
    cmd->seen = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int is_opt = !only_pos && a[0] == '-' && a[1] != 0 && !(a[1] >= '0' && a[1] <= '9') && a[1] != '.';
        if (!is_opt) {
            cmd->pos[cmd->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (a[1] != '-' && strcmp(a, "-h") != 0) {
            t2i_fail("%s: unknown option '%s' (options start with --; see --help)", cmd->name, a);
            return T2I_PARSE_ERROR;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            t2i_usage(cmd, stdout);
            return T2I_PARSE_HELP;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        int found = -1;
        for (int k = 0; k < cmd->nflags; k++)
            if (strlen(cmd->flags[k].name) == nlen && strncmp(cmd->flags[k].name, a, nlen) == 0) found = k;
        if (found < 0) {
            t2i_fail("%s: unknown option '%.*s' (see --help)", cmd->name, (int)nlen, a);
            return T2I_PARSE_ERROR;
        }
        const t2i_flag *f = &cmd->flags[found];
        int again = found < 64 && ((cmd->seen >> found) & 1);
        if (found < 64) cmd->seen |= 1ul << found;
        if (f->type == T2I_BOOL) {
            if (eq) {
                if (strcmp(eq + 1, "1") == 0 || strcmp(eq + 1, "true") == 0) *(int *)f->dst = 1;
                else if (strcmp(eq + 1, "0") == 0 || strcmp(eq + 1, "false") == 0) *(int *)f->dst = 0;
                else {
                    t2i_fail("%s: %s expects true or false, got '%s'", cmd->name, f->name, eq + 1);
                    return T2I_PARSE_ERROR;
                }
            } else {
                *(int *)f->dst = 1;
            }
            continue;
        }
        if (f->type == T2I_STRS) {
            t2i_strs *s = f->dst;
            if (!again) { /* given again: the values add to the list (the array holds argc of them) */
                s->v = parse_array(argc);
                s->n = 0;
            }
            if (eq) s->v[s->n++] = eq + 1;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) s->v[s->n++] = argv[++i];
            if (s->n == 0) {
                t2i_fail("%s: %s expects at least one value", cmd->name, f->name);
                return T2I_PARSE_ERROR;
            }
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                t2i_fail("%s: %s expects a value", cmd->name, f->name);
                return T2I_PARSE_ERROR;
            }
            v = argv[++i];
        }
        if (parse_value(cmd, f, v) != 0) return T2I_PARSE_ERROR;
    }
    return T2I_PARSE_OK;
}

int t2i_flag_given(const t2i_cmd *cmd, const char *name) {
    for (int k = 0; k < cmd->nflags && k < 64; k++)
        if (strcmp(cmd->flags[k].name, name) == 0) return (cmd->seen >> k) & 1;
    return 0;
}

int t2i_check_output_file(const char *what, const char *path, const char *ext) {
    size_t n = strlen(path), e = ext ? strlen(ext) : 0;
    if (ext && (n <= e || strcasecmp(path + n - e, ext) != 0)) {
        t2i_fail("%s: '%s' must end in %s (the format written)", what, path, ext);
        return -1;
    }
    char *dir = t2i_strdup(path), *slash = strrchr(dir, '/');
    if (slash) slash == dir ? (void)(slash[1] = 0) : (void)(*slash = 0);
    int ok = !slash || t2i_is_dir(dir);
    if (!ok) t2i_fail("%s: the folder %s of '%s' does not exist", what, dir, path);
    free(dir);
    if (!ok) return -1;
    char *target = NULL, *tmp = t2i_atomic_tmp(path, &target);
    int rc = tmp ? 0 : -1;
    if (rc) t2i_fail("%s: %s", what, t2i_error_msg());
    free(target), free(tmp);
    return rc;
}

int t2i_check_range_i(const char *name, long v, long lo, long hi) {
    if (v < lo || v > hi) {
        t2i_fail("%s must be between %ld and %ld, got %ld", name, lo, hi, v);
        return -1;
    }
    return 0;
}

int t2i_check_range_f(const char *name, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi)) {
        t2i_fail("%s must be between %g and %g, got %g", name, lo, hi, v);
        return -1;
    }
    return 0;
}

int t2i_dispatch(const char *prog, const char *summary, const t2i_subcmd *subs, int nsubs, int argc,
                 char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "usage: %s COMMAND [options]\n%s\n\ncommands:\n", prog, summary);
        for (int i = 0; i < nsubs; i++) fprintf(out, "  %-12s %s\n", subs[i].name, subs[i].summary);
        fprintf(out, "\nRun '%s COMMAND --help' for a command's options.\n", prog);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < nsubs; i++)
        if (strcmp(argv[1], subs[i].name) == 0) {
            const parse_block *mark = parsed;
            int rc = subs[i].fn(argc - 1, argv + 1);
            release_to(mark);
            return rc;
        }
    t2i_fail("unknown command '%s' (see %s --help)", argv[1], prog);
    return 2;
}
