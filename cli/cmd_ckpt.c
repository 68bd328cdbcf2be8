/* cmd_ckpt.c - `t2i ckpt`: inspect, convert and average checkpoints (safetensors files).
 *
 *     t2i ckpt info [--json] [--full] FILE...
 *
 * For each FILE, prints one line per tensor (name, dtype, shape, bytes), the totals
 * (tensors, parameters, bytes) and the metadata: a value that parses as a JSON object
 * (the model "config") is shown compactly, long values are cut at 200 characters unless
 * --full, and control characters are escaped so every entry stays on one line.
 * --json prints one JSON object per file on one line instead (values never cut).
 *
 *     t2i ckpt convert IN OUT [--dtype bf16] [--drop P...] [--rename OLD=NEW...] ...
 *     t2i ckpt average IN1 IN2 [IN...] --out F
 *     t2i ckpt words FILE --data DATA           (cmd_ckpt_words.c)
 *
 * convert writes a smaller copy for shipping; average writes the element-wise mean of
 * checkpoints of one model (same tensors and metadata), e.g. fine-tunes of one start.
 *
 * info returns 0 when every file is valid; a malformed or unreadable file prints
 * "t2i: FILE: <problem>" on stderr, the other files are still listed, and the exit
 * status is 1. Usage errors exit with 2.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "commands.h"
#include "safetensors.h"

#define META_SHOW_MAX 200 /* characters of a metadata value shown without --full */

static void human_bytes(char *buf, size_t cap, size_t n) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    if (u == 0) snprintf(buf, cap, "%zu B", n);
    else snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

/* Writes s (at most max bytes of it, cut on a UTF-8 boundary) with control characters
 * escaped; returns 1 when it was cut. */
static int print_escaped(FILE *out, const char *s, size_t max) {
    size_t n = strlen(s), cut = n;
    if (n > max) {
        cut = max;
        while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80) cut--;
    }
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
        else fputc(c, out);
    }
    return cut < n;
}

static void shape_str(char *buf, size_t cap, const st_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static void print_table(const st_file *f, int full) {
    size_t params = 0, bytes = 0;
    int wname = 4, wshape = 5;
    char sh[200], hb[32];
    for (int i = 0; i < f->n; i++) {
        int l = (int)strlen(f->t[i].name);
        if (l > wname) wname = l;
        shape_str(sh, sizeof sh, &f->t[i]);
        l = (int)strlen(sh);
        if (l > wshape) wshape = l;
        params += f->t[i].numel;
        bytes += f->t[i].end - f->t[i].begin;
    }
    if (wname > 60) wname = 60;
    printf("%s\n", f->path);
    printf("  %-*s  %-7s  %-*s  %12s\n", wname, "name", "dtype", wshape, "shape", "bytes");
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        shape_str(sh, sizeof sh, t);
        fputs("  ", stdout);
        print_escaped(stdout, t->name, (size_t)-1);
        int pad = wname - (int)strlen(t->name);
        printf("%*s  %-7s  %-*s  %12zu\n", pad > 0 ? pad : 0, "", st_dtype_name(t->dtype), wshape, sh,
               t->end - t->begin);
    }
    human_bytes(hb, sizeof hb, bytes);
    printf("  total: %d tensors, %zu parameters, %zu bytes (%s); header %zu bytes\n", f->n, params, bytes, hb,
           f->map_len - f->data_len - 8);
    printf("metadata: %d %s\n", f->n_meta, f->n_meta == 1 ? "key" : "keys");
    for (int i = 0; i < f->n_meta; i++) {
        const char *v = f->meta_vals[i];
        cJSON *j = cJSON_Parse(v);
        char *compact = cJSON_IsObject(j) ? cJSON_PrintUnformatted(j) : NULL;
        const char *shown = compact ? compact : v;
        fputs("  ", stdout);
        print_escaped(stdout, f->meta_keys[i], (size_t)-1);
        fputs(": ", stdout);
        if (print_escaped(stdout, shown, full ? (size_t)-1 : META_SHOW_MAX))
            printf(" ... (%zu characters; --full shows all)", strlen(shown));
        fputc('\n', stdout);
        free(compact);
        cJSON_Delete(j);
    }
}

static int print_json(const st_file *f) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", f->path);
    cJSON_AddNumberToObject(o, "header_bytes", (double)(f->map_len - f->data_len - 8));
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    size_t params = 0, bytes = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", t->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int k = 0; k < t->ndim; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[k]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)t->begin));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)t->end));
        cJSON_AddNumberToObject(e, "bytes", (double)(t->end - t->begin));
        cJSON_AddItemToArray(ts, e);
        params += t->numel;
        bytes += t->end - t->begin;
    }
    cJSON_AddNumberToObject(o, "n_tensors", f->n);
    cJSON_AddNumberToObject(o, "parameters", (double)params);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON *m = cJSON_AddObjectToObject(o, "metadata");
    for (int i = 0; i < f->n_meta; i++) cJSON_AddStringToObject(m, f->meta_keys[i], f->meta_vals[i]);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return t2i_fail("%s: out of memory formatting JSON", f->path);
    puts(s);
    free(s);
    return 0;
}

static int ckpt_info(int argc, char **argv) {
    int json = 0;  /* one JSON object per file instead of the table */
    int full = 0;  /* do not cut long metadata values */
    t2i_flag flags[] = {
        {"--json", T2I_BOOL, &json, "print one JSON object per file (one line each) instead of a table"},
        {"--full", T2I_BOOL, &full, "show long metadata values in full"},
    };
    t2i_cmd cmd = {
        .name = "t2i ckpt info",
        .summary = "List the tensors (name, dtype, shape, bytes), totals and metadata of safetensors files.",
        .usage = "[options] FILE...",
        .flags = flags,
        .nflags = (int)(sizeof flags / sizeof flags[0]),
        .details = "Exit status: 0 when every file is valid, 1 when one is malformed or unreadable\n"
                   "(\"t2i: FILE: problem\" on stderr), 2 on usage errors.",
    };
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos == 0) return t2i_fail("%s: no FILE given (see --help)", cmd.name), 2;
    int status = 0;
    for (int i = 0; i < cmd.npos; i++) {
        st_file f;
        fflush(stdout); /* keep stdout and stderr lines in file order */
        if (st_open(&f, cmd.pos[i]) != 0) {
            status = t2i_fail_err();
            continue;
        }
        if (json) {
            if (print_json(&f) != 0) status = 1;
        } else {
            if (i > 0) putchar('\n');
            print_table(&f, full);
        }
        st_close(&f);
    }
    if (fflush(stdout) != 0) return t2i_fail("cannot write to standard output");
    return status;
}

/* Does name start with any of the prefixes? */
static int has_prefix(const char *name, const t2i_strs *p) {
    for (int i = 0; i < p->n; i++)
        if (strncmp(name, p->v[i], strlen(p->v[i])) == 0) return 1;
    return 0;
}

/* Optimizer moments (opt_m.*, opt_v.*): dropped by convert unless asked, never averaged (so
 * one input of an average may have them and another not). */
static int is_opt_moment(const char *name) {
    return strncmp(name, "opt_m.", 6) == 0 || strncmp(name, "opt_v.", 6) == 0;
}

/* Index of the first finite value that would round to infinity stored as dtype, or n. The
 * limits are halfway between each type's largest value and the next power of two (f16:
 * 65504 and 65536; bf16: (2 - 2^-7) 2^127 and 2^128). */
static size_t first_out_of_range(const float *x, size_t n, st_dtype dtype) {
    double lim = dtype == ST_F16 ? 65520.0 : dtype == ST_BF16 ? ldexp(2.0 - 1.0 / 256, 127) : INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs(x[i]) >= lim) return i;
    return n;
}

/* `t2i ckpt convert`: a smaller copy for shipping or inference - optimizer moments and the
 * training state dropped, parameters stored as bf16/f16, prefixes dropped or renamed. */
static int ckpt_convert(int argc, char **argv) {
    const char *dtype = "bf16";
    int keep_opt = 0, keep_state = 0;
    t2i_strs drop = {0}, rename = {0}, keep32 = {0}, meta = {0};
    t2i_flag flags[] = {
        {"--dtype", T2I_STR, &dtype, "storage type of float tensors: f32, f16 or bf16"},
        {"--drop", T2I_STRS, &drop, "leave out tensors whose names start with these prefixes"},
        {"--rename", T2I_STRS, &rename, "OLD=NEW: replace a leading name prefix (e.g. ema.=)"},
        {"--keep-f32", T2I_STRS, &keep32, "keep tensors whose names contain these strings in f32"},
        {"--keep-optimizer", T2I_BOOL, &keep_opt, "keep the optimizer moments (opt_m.*, opt_v.*)"},
        {"--keep-state", T2I_BOOL, &keep_state, "keep the training state metadata (step, RNG, data position)"},
        {"--meta", T2I_STRS, &meta, "KEY=VALUE: set a metadata entry (e.g. vq=samples/models/vq.safetensors)"},
    };
    t2i_cmd cmd = {"t2i ckpt convert", "Write a converted copy of a checkpoint (for shipping or inference).",
                   "IN OUT [options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "Running statistics (BatchNorm running_mean/var) always stay f32. Paths recorded in\n"
                   "metadata (a DALL-E file's vq) may be relative to the source tree: shipped models\n"
                   "point at each other with --meta vq=samples/models/vq.safetensors."};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos != 2) return t2i_fail("ckpt convert: expected IN and OUT"), 2;
    st_dtype to = ST_F32;
    if (strcmp(dtype, "bf16") == 0) to = ST_BF16;
    else if (strcmp(dtype, "f16") == 0) to = ST_F16;
    else if (strcmp(dtype, "f32") != 0) return t2i_fail("--dtype must be f32, f16 or bf16, got '%s'", dtype), 2;
    for (int i = 0; i < rename.n; i++)
        if (!strchr(rename.v[i], '=')) return t2i_fail("--rename expects OLD=NEW, got '%s'", rename.v[i]), 2;
    for (int i = 0; i < meta.n; i++) {
        const char *eq = strchr(meta.v[i], '=');
        if (!eq || eq == meta.v[i]) return t2i_fail("--meta expects KEY=VALUE, got '%s'", meta.v[i]), 2;
        if (strncmp(meta.v[i], "format=", 7) == 0 || strncmp(meta.v[i], "model=", 6) == 0)
            return t2i_fail("--meta cannot change '%.*s'", (int)(eq - meta.v[i]), meta.v[i]), 2;
        for (int k = 0; k < i; k++)
            if (strncmp(meta.v[k], meta.v[i], (size_t)(eq - meta.v[i]) + 1) == 0)
                return t2i_fail("--meta gives '%.*s' twice", (int)(eq - meta.v[i]), meta.v[i]), 2;
    }
    st_file f;
    if (st_open(&f, cmd.pos[0]) != 0) return t2i_fail_err();
    st_writer *w = st_writer_new();
    for (int i = 0; i < f.n_meta; i++) {
        int replaced = 0;
        for (int k = 0; k < meta.n; k++) {
            size_t kl = strlen(f.meta_keys[i]);
            replaced |= strncmp(meta.v[k], f.meta_keys[i], kl) == 0 && meta.v[k][kl] == '=';
        }
        if (!replaced && (keep_state || strcmp(f.meta_keys[i], "state") != 0))
            st_writer_meta(w, f.meta_keys[i], f.meta_vals[i]);
    }
    for (int k = 0; k < meta.n; k++) {
        const char *eq = strchr(meta.v[k], '=');
        char *key = t2i_asprintf("%.*s", (int)(eq - meta.v[k]), meta.v[k]);
        st_writer_meta(w, key, eq + 1);
        free(key);
    }
    int own_from = 0; /* --meta converted_from=... (a file converted again keeps its origin) */
    for (int k = 0; k < meta.n; k++) own_from |= strncmp(meta.v[k], "converted_from=", 15) == 0;
    if (!own_from) st_writer_meta(w, "converted_from", cmd.pos[0]);
    int kept = 0;
    rc = 0;
    for (int i = 0; i < f.n && rc == 0; i++) {
        const st_tensor *t = &f.t[i];
        if (has_prefix(t->name, &drop)) continue;
        if (!keep_opt && is_opt_moment(t->name)) continue;
        char *name = NULL;
        for (int r = 0; r < rename.n && !name; r++) {
            const char *eq = strchr(rename.v[r], '=');
            size_t ol = (size_t)(eq - rename.v[r]);
            if (strncmp(t->name, rename.v[r], ol) == 0) name = t2i_asprintf("%s%s", eq + 1, t->name + ol);
        }
        if (!name) name = t2i_strdup(t->name);
        int is_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16;
        int stay32 = strstr(t->name, "running_") != NULL;
        for (int k = 0; k < keep32.n; k++) stay32 |= strstr(t->name, keep32.v[k]) != NULL;
        if (!*name || st_writer_has(w, name)) {
            rc = *name ? t2i_fail("%s: two tensors would be written as '%s' (the second is '%s'): check --rename",
                                  cmd.pos[0], name, t->name)
                       : t2i_fail("%s: --rename gives tensor '%s' an empty name", cmd.pos[0], t->name);
        } else if (is_float) {
            float *buf = t2i_malloc((t->numel ? t->numel : 1) * sizeof(float));
            st_dtype as = stay32 ? ST_F32 : to;
            size_t bad = 0;
            if (st_read_f32(&f, t, buf, t->numel) != 0) rc = t2i_fail_err();
            else if ((bad = first_out_of_range(buf, t->numel, as)) < t->numel)
                rc = t2i_fail("%s: tensor '%s' holds %g, beyond the %s range: use --dtype f32 or --keep-f32 %s",
                              cmd.pos[0], t->name, (double)buf[bad], st_dtype_name(as), t->name);
            else st_writer_add_f32(w, name, as, t->ndim, t->shape, buf);
            free(buf);
        } else {
            st_writer_add_raw(w, name, t->dtype, t->ndim, t->shape, t->data);
        }
        free(name);
        kept++;
    }
    if (rc == 0 && st_writer_save(w, cmd.pos[1]) != 0) rc = t2i_fail_err();
    if (rc == 0) printf("ckpt convert: %d of %d tensors written to %s (%s)\n", kept, f.n, cmd.pos[1], dtype);
    st_writer_free(w);
    st_close(&f);
    return rc;
}

/* Metadata that describes one file's history rather than the model: not compared when
 * averaging, and not carried into the average. */
static int is_history_meta(const char *key) {
    return strcmp(key, "state") == 0 || strcmp(key, "converted_from") == 0 || strcmp(key, "averaged_from") == 0;
}

static int same_shape(const st_tensor *a, const st_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

static int is_float_dtype(st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F64; }

/* Is file g the same model as file f: the same tensors (names, shapes, float or not; the
 * optimizer moments aside) and the same metadata apart from history? 0, or -1 with the
 * error set, naming g. */
static int check_same_model(const st_file *f, const st_file *g) {
    char sa[200], sb[200];
    for (int i = 0; i < f->n_meta; i++) {
        const char *key = f->meta_keys[i], *v = st_meta(g, key);
        if (is_history_meta(key)) continue;
        if (!v)
            return t2i_error_set("%s: metadata '%s' missing (%s has it): not the same model", g->path, key, f->path);
        if (strcmp(v, f->meta_vals[i]) != 0)
            return t2i_error_set("%s: metadata '%s' differs from %s's: not the same model", g->path, key, f->path);
    }
    for (int i = 0; i < g->n_meta; i++)
        if (!is_history_meta(g->meta_keys[i]) && !st_meta(f, g->meta_keys[i]))
            return t2i_error_set("%s: metadata '%s' that %s lacks: not the same model", g->path, g->meta_keys[i],
                                 f->path);
    for (int i = 0; i < f->n; i++) {
        const st_tensor *a = &f->t[i], *b = st_find(g, a->name);
        if (is_opt_moment(a->name)) continue;
        if (!b) return t2i_error_set("%s: tensor '%s' missing (%s has it)", g->path, a->name, f->path);
        if (!same_shape(a, b)) {
            shape_str(sa, sizeof sa, a), shape_str(sb, sizeof sb, b);
            return t2i_error_set("%s: tensor '%s' is %s, %s in %s", g->path, a->name, sb, sa, f->path);
        }
        int fa = is_float_dtype(a->dtype), fb = is_float_dtype(b->dtype);
        if (fa != fb || (!fa && (a->dtype != b->dtype || memcmp(a->data, b->data, a->end - a->begin) != 0)))
            return t2i_error_set("%s: tensor '%s' (%s) differs from %s's (%s): only floating-point tensors are "
                                 "averaged",
                                 g->path, a->name, st_dtype_name(b->dtype), f->path, st_dtype_name(a->dtype));
    }
    for (int i = 0; i < g->n; i++)
        if (!is_opt_moment(g->t[i].name) && !st_find(f, g->t[i].name))
            return t2i_error_set("%s: tensor '%s' that %s lacks", g->path, g->t[i].name, f->path);
    return 0;
}

/* `t2i ckpt average`: the element-wise mean of several checkpoints of one model, e.g.
 * fine-tunes from a common start ("model soups", Wortsman et al. 2022). */
static int ckpt_average(int argc, char **argv) {
    const char *out = NULL;
    t2i_flag flags[] = {
        {"--out", T2I_STR, &out, "output safetensors file (float32)"},
    };
    t2i_cmd cmd = {"t2i ckpt average", "Average the weights of checkpoints of the same model.",
                   "IN1 IN2 [IN...] --out F", flags, (int)(sizeof flags / sizeof flags[0]),
                   "Every input must hold the same tensors (names and shapes) and the same metadata\n"
                   "(model, config, vocabulary, ...). Floating-point tensors are averaged in double\n"
                   "precision and written as f32; other tensors must be equal in every input and are\n"
                   "copied; a NaN or infinity in any input is refused. Optimizer moments and the\n"
                   "training state are left out: the result is for inference, `ckpt convert`, or a\n"
                   "new run with `clip train --init`. The metadata entry averaged_from lists the\n"
                   "inputs; --out may not be one of them. Averaging pays off for fine-tunes of one\n"
                   "checkpoint (\"model soups\"); runs from different initialisations usually do not\n"
                   "average into a working model."};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos < 2 || !out) return t2i_fail("ckpt average: expected two or more inputs and --out F"), 2;
    int n = cmd.npos, opened = 0;
    struct stat so, si;
    int out_exists = stat(out, &so) == 0;
    for (int k = 0; out_exists && k < n; k++)
        if (stat(cmd.pos[k], &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            return t2i_fail("%s: --out is one of the inputs: write the average to a new file", out);
    st_file *f = t2i_calloc((size_t)n, sizeof *f);
    rc = 0;
    for (; opened < n && rc == 0; opened++)
        if (st_open(&f[opened], cmd.pos[opened]) != 0) rc = t2i_fail_err();
        else if (opened > 0 && check_same_model(&f[0], &f[opened]) != 0) rc = t2i_fail_err();
    st_writer *w = st_writer_new();
    int averaged = 0;
    if (rc == 0) {
        cJSON *from = cJSON_CreateArray();
        for (int k = 0; k < n; k++) cJSON_AddItemToArray(from, cJSON_CreateString(cmd.pos[k]));
        for (int i = 0; i < f[0].n_meta; i++)
            if (!is_history_meta(f[0].meta_keys[i])) st_writer_meta(w, f[0].meta_keys[i], f[0].meta_vals[i]);
        char *js = nn_json_take(from);
        st_writer_meta(w, "averaged_from", js);
        free(js);
    }
    for (int i = 0; rc == 0 && i < f[0].n; i++) {
        const st_tensor *t = &f[0].t[i];
        if (is_opt_moment(t->name)) continue;
        if (!is_float_dtype(t->dtype)) {
            st_writer_add_raw(w, t->name, t->dtype, t->ndim, t->shape, t->data);
            continue;
        }
        size_t m = t->numel ? t->numel : 1;
        float *x = t2i_malloc(m * sizeof *x);
        double *acc = t2i_calloc(m, sizeof *acc);
        for (int k = 0; k < n && rc == 0; k++) {
            size_t bad = 0;
            if (st_read_f32(&f[k], st_find(&f[k], t->name), x, t->numel) != 0) rc = t2i_fail_err();
            else if ((bad = t2i_first_nonfinite(x, t->numel)) < t->numel)
                rc = t2i_fail("%s: tensor '%s' holds %g at element %zu: a diverged run is not averaged", f[k].path,
                              t->name, (double)x[bad], bad);
            for (size_t j = 0; j < t->numel && rc == 0; j++) acc[j] += x[j];
        }
        for (size_t j = 0; j < t->numel; j++) x[j] = (float)(acc[j] / n);
        if (rc == 0) st_writer_add_f32(w, t->name, ST_F32, t->ndim, t->shape, x), averaged++;
        free(acc);
        free(x);
    }
    if (rc == 0 && st_writer_save(w, out) != 0) rc = t2i_fail_err();
    if (rc == 0)
        printf("ckpt average: %d tensors averaged over %d checkpoints -> %s (optimizer moments and training "
               "state left out)\n",
               averaged, n, out);
    st_writer_free(w);
    for (int k = 0; k < opened; k++) st_close(&f[k]);
    free(f);
    return rc;
}

int cmd_ckpt(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"info", ckpt_info, "list tensors (name, dtype, shape, bytes), totals and metadata"},
        {"convert", ckpt_convert, "write a smaller copy: bf16/f16, no optimizer state, prefixes dropped/renamed"},
        {"average", ckpt_average, "average the weights of checkpoints of one model (fine-tunes of one start)"},
        {"words", ckpt_words, "store the word set of a dataset's captions (for generate's unknown-word warnings)"},
    };
    return t2i_dispatch("t2i ckpt", "Inspect, convert and average checkpoints (safetensors files).", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
