/* cmd_data.c - `t2i data`: writes the built-in datasets to disk as folders that
 * t2i_dataset_open (and Hugging Face's imagefolder loader) read back.
 *
 *   t2i data fashion-captions --split train|test --out DIR [--seed N] [--limit N]
 *       DIR/00000.png ... (32x32 RGB) and DIR/metadata.jsonl, one line per image:
 *       {"file_name":"00000.png","text":"a red sneaker","colour":"red","class":"sneaker"}
 *   t2i data fashion-mnist --split train|test --out DIR [--limit N]
 *       class folders DIR/0_t-shirt/00000.png ... DIR/9_ankle_boot/...; the digit prefix
 *       keeps Fashion-MNIST's label order when the folder names are sorted.
 *
 * Items are the first N of the split (--limit 0 = all); file numbers are item indices.
 * Returns 0 on success, 1 after printing "t2i: <problem>" (missing Fashion-MNIST, a write
 * failure), 2 on bad flags.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "commands.h"
#include "data.h"
#include "fc32.h"
#include "image.h"
#include "progress.h"

#define WRITE_CHUNK 256 /* images written between progress updates */
/* Each PNG is written atomically with fsync: the loop waits on the disk more than it
 * computes, so it runs more threads than cores. */
#define WRITE_THREADS 8

/* Usage errors (exit 2) in the flags both exports share: 0 or the exit code. */
static int check_common(const t2i_cmd *cmd, const char *split, const char *out, int limit) {
    if (cmd->npos > 0) return t2i_fail("%s: unexpected argument '%s' (see --help)", cmd->name, cmd->pos[0]), 2;
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
        return t2i_fail("%s: --split must be train or test, got '%s'", cmd->name, split), 2;
    if (!out || !*out) return t2i_fail("%s: --out DIR is required", cmd->name), 2;
    if (limit < 0) return t2i_fail("%s: --limit must be >= 0, got %d", cmd->name, limit), 2;
    return 0;
}

/* Writes item i of ds as PNG to paths[i - first] for i in [first, first + n). */
static int write_pngs(const t2i_dataset *ds, char **paths, int first, int n) {
    int fail = -1;
    char msg[1024] = "";
    size_t item = (size_t)ds->H * ds->W * ds->C;
#pragma omp parallel for schedule(dynamic, 8) num_threads(WRITE_THREADS)
    for (int k = 0; k < n; k++) {
        if (t2i_image_save_png(paths[k], ds->mem + (size_t)(first + k) * item, ds->W, ds->H, ds->C) != 0) {
#pragma omp critical(cmd_data_error)
            {
                if (fail < 0 || k < fail) {
                    fail = k;
                    snprintf(msg, sizeof msg, "%s", t2i_error_msg());
                }
            }
        }
    }
    return fail >= 0 ? t2i_error_set("%s", msg) : 0;
}

/* Writes the first n items, naming item i by name_of(i); progress on stderr. */
static int write_items(const t2i_dataset *ds, int n, const char *label,
                       char *(*name_of)(const char *, int, const t2i_dataset *), const char *out) {
    t2i_progress pg;
    t2i_progress_start(&pg, label, 0, n);
    char **paths = t2i_calloc(WRITE_CHUNK, sizeof(char *));
    int rc = 0;
    for (int first = 0; first < n && rc == 0; first += WRITE_CHUNK) {
        int m = T2I_MIN(WRITE_CHUNK, n - first);
        for (int k = 0; k < m; k++) paths[k] = name_of(out, first + k, ds);
        rc = write_pngs(ds, paths, first, m);
        for (int k = 0; k < m; k++) free(paths[k]);
        if (rc == 0) t2i_progress_update(&pg, first + m, NULL);
    }
    free(paths);
    if (rc == 0) t2i_progress_end(&pg, n, NULL);
    return rc;
}

static char *fc32_png_name(const char *out, int i, const t2i_dataset *ds) {
    (void)ds;
    return t2i_asprintf("%s/%05d.png", out, i);
}

/* "9_ankle_boot": label prefix, spaces as underscores */
static char *class_dir_name(int k, const char *name) {
    char *s = t2i_asprintf("%d_%s", k, name);
    for (char *p = s; *p; p++)
        if (*p == ' ') *p = '_';
    return s;
}

static char *fm_png_name(const char *out, int i, const t2i_dataset *ds) {
    int k = ds->labels[i];
    char *cls = class_dir_name(k, ds->class_names[k]);
    char *p = t2i_asprintf("%s/%s/%05d.png", out, cls, i);
    free(cls);
    return p;
}

static int data_fashion_captions(int argc, char **argv) {
    const char *split = "train"; /* train (60000, held-out pairs absent) or test (10000) */
    const char *out = NULL;      /* output folder */
    long seed = FC32_DEFAULT_SEED;
    int limit = 0;    /* 0 = the whole split */
    int captions = 0; /* print the canonical captions instead */
    const t2i_flag flags[] = {
        {"--captions", T2I_BOOL, &captions, "print the 80 canonical captions \"a {colour} {class}\" and exit"},
        {"--split", T2I_STR, &split, "train or test"},
        {"--out", T2I_STR, &out, "output folder (created if needed)"},
        {"--seed", T2I_LONG, &seed, "seed of the colours, offsets and caption templates"},
        {"--limit", T2I_INT, &limit, "write only the first N items (0 = all)"},
    };
    t2i_cmd cmd = {"t2i data fashion-captions",
                   "Write fashion-captions (FC32: coloured Fashion-MNIST with captions) as an imagefolder.",
                   "--out DIR [options] | --captions",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Writes DIR/NNNNN.png (32x32 RGB) and DIR/metadata.jsonl with file_name, text,\n"
                   "colour and class per line. The train split never contains the eight held-out\n"
                   "pairs (purple sandal, orange dress, cyan bag, yellow coat, green ankle boot,\n"
                   "blue pullover, red shirt, white trousers); the test split does.\n"
                   "Needs Fashion-MNIST: apt-get install dataset-fashion-mnist.",
                   NULL,
                   0,
                   0};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc == T2I_PARSE_OK && captions) {
        /* the captions fidelity and zero-shot evaluation use, in fc32.c's order */
        if (cmd.npos != 0) return t2i_fail("%s --captions takes no arguments", cmd.name);
        for (int i = 0; i < FC32_N_CANONICAL; i++) printf("%s\n", fc32_canonical_captions[i]);
        return fflush(stdout) == 0 ? 0 : t2i_fail("%s: cannot write the captions", cmd.name);
    }
    int rc = prc == T2I_PARSE_OK ? check_common(&cmd, split, out, limit) : (prc == T2I_PARSE_HELP ? 0 : 2);
    if (rc == 0 && prc == T2I_PARSE_OK && seed < 0) rc = (t2i_fail("%s: --seed must be >= 0", cmd.name), 2);
    if (rc != 0 || prc != T2I_PARSE_OK) return rc;

    t2i_dataset ds;
    if (fc32_open(&ds, split, (uint64_t)seed) != 0) return t2i_fail_err();
    int n = limit > 0 ? T2I_MIN(limit, ds.n) : ds.n;
    if (t2i_mkdirs(out) != 0 || write_items(&ds, n, "fashion-captions", fc32_png_name, out) != 0) {
        t2i_dataset_free(&ds);
        return t2i_fail_err();
    }
    /* metadata.jsonl, built with cJSON so that every caption is escaped properly */
    size_t cap = (size_t)n * 128 + 1, len = 0;
    char *meta = t2i_malloc(cap);
    for (int i = 0; i < n; i++) {
        int colour, cls;
        T2I_ASSERT(fc32_item(&ds, i, &colour, &cls) == 0 && cls == ds.labels[i]);
        char file[32];
        snprintf(file, sizeof file, "%05d.png", i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file_name", file);
        cJSON_AddStringToObject(o, "text", ds.captions[i]);
        cJSON_AddStringToObject(o, "colour", fc32_colour_names[colour]);
        cJSON_AddStringToObject(o, "class", fc32_class_names[cls]);
        char *line = cJSON_PrintUnformatted(o);
        T2I_ASSERT(line);
        t2i_text_append_line(&meta, &len, &cap, line);
        cJSON_free(line);
        cJSON_Delete(o);
    }
    char *mpath = t2i_asprintf("%s/metadata.jsonl", out);
    rc = t2i_write_file_atomic(mpath, meta, len) != 0 ? t2i_fail_err() : 0;
    if (rc == 0) printf("wrote %d images and %s (%s)\n", n, mpath, ds.source);
    free(mpath);
    free(meta);
    t2i_dataset_free(&ds);
    return rc;
}

static int data_fashion_mnist(int argc, char **argv) {
    const char *split = "train";
    const char *out = NULL;
    int limit = 0;
    const t2i_flag flags[] = {
        {"--split", T2I_STR, &split, "train or test"},
        {"--out", T2I_STR, &out, "output folder (created if needed)"},
        {"--limit", T2I_INT, &limit, "write only the first N items (0 = all)"},
    };
    t2i_cmd cmd = {"t2i data fashion-mnist",
                   "Write Fashion-MNIST as class folders (28x28 gray PNGs).",
                   "--out DIR [options]",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Writes DIR/0_t-shirt/NNNNN.png ... DIR/9_ankle_boot/NNNNN.png (NNNNN = item\n"
                   "index); the digit prefixes keep the label order when folder names are sorted.\n"
                   "Needs Fashion-MNIST: apt-get install dataset-fashion-mnist.",
                   NULL,
                   0,
                   0};
    int prc = t2i_parse(&cmd, argc, argv);
    int rc = prc == T2I_PARSE_OK ? check_common(&cmd, split, out, limit) : (prc == T2I_PARSE_HELP ? 0 : 2);
    if (rc != 0 || prc != T2I_PARSE_OK) return rc;

    t2i_dataset ds;
    if (t2i_dataset_fashion_mnist(&ds, split) != 0) return t2i_fail_err();
    int n = limit > 0 ? T2I_MIN(limit, ds.n) : ds.n;
    rc = t2i_mkdirs(out);
    for (int k = 0; k < ds.n_classes && rc == 0; k++) {
        char *cls = class_dir_name(k, ds.class_names[k]);
        char *d = t2i_asprintf("%s/%s", out, cls);
        rc = t2i_mkdirs(d);
        free(d);
        free(cls);
    }
    if (rc == 0) rc = write_items(&ds, n, "fashion-mnist", fm_png_name, out);
    if (rc == 0)
        printf("wrote %d images in %d class folders under %s (%s)\n", n, ds.n_classes, out, ds.source);
    t2i_dataset_free(&ds);
    return rc != 0 ? t2i_fail_err() : 0;
}

int cmd_data(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"fashion-captions", data_fashion_captions,
         "coloured Fashion-MNIST with captions (FC32) as an imagefolder"},
        {"fashion-mnist", data_fashion_mnist, "Fashion-MNIST as class folders of PNGs"},
    };
    return t2i_dispatch("t2i data", "Write datasets to disk.", subs, (int)(sizeof subs / sizeof subs[0]),
                        argc, argv);
}
