/* fuzz_metadata.c - libFuzzer target for caption folders' metadata (data/folders.c):
 * metadata.jsonl lines and metadata.csv records.
 *
 * A folder is made once in $TMPDIR (removed at exit) with a few images and a sub-folder
 * for the entries to name: a.png, b.jpg, sub/c.png, and the folder empty/. Each input is
 * parsed twice through data_parse_metadata, the function t2i_dataset_captions calls on
 * the file's bytes: as metadata.jsonl, then as metadata.csv. Checked with
 * __builtin_trap: a refused input gives an error starting with the metadata file's path,
 * and nothing to free; an accepted one gives entries whose path is the folder joined
 * with a name, naming a regular file, and whose caption is valid UTF-8 and not blank.
 * Build and run: tests/fuzz/README.md.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "data_internal.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static char dir[256];
static const char *const files[] = {"a.png", "b.jpg", "sub/c.png"};

static void remove_dir(void) {
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/sub", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/empty", dir);
    rmdir(p);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/t2i-fuzz-metadata-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz_metadata: mkdtemp");
        exit(1);
    }
    atexit(remove_dir);
    char p[512];
    snprintf(p, sizeof p, "%s/sub", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/empty", dir);
    mkdir(p, 0700);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        FILE *f = fopen(p, "wb"); /* the parsers only check that the file exists */
        if (!f || fputs("x", f) == EOF || fclose(f) != 0) {
            perror(p);
            exit(1);
        }
    }
    return 0;
}

static void parse(const uint8_t *data, size_t size, int is_json) {
    char path[512];
    snprintf(path, sizeof path, "%s/metadata.%s", dir, is_json ? "jsonl" : "csv");
    char **paths = NULL, **caps = NULL;
    size_t n = 0;
    /* a fresh heap copy of exactly size bytes, so ASan catches a read past the end */
    char *buf = t2i_malloc(size ? size : 1);
    memcpy(buf, data, size);
    int rc = data_parse_metadata(dir, path, buf, size, is_json, &paths, &caps, &n);
    free(buf);
    if (rc != 0) {
        check(paths == NULL && caps == NULL && n == 0);
        check(strncmp(t2i_error_msg(), path, strlen(path)) == 0);
        return;
    }
    size_t dl = strlen(dir);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        check(strncmp(paths[i], dir, dl) == 0 && paths[i][dl] == '/');
        check(stat(paths[i], &st) == 0 && S_ISREG(st.st_mode));
        size_t l = strlen(caps[i]), k = 0;
        check(t2i_utf8_invalid_at(caps[i], l) == l);
        while (k < l && isspace((unsigned char)caps[i][k])) k++;
        check(k < l);
        free(paths[i]);
        free(caps[i]);
    }
    free(paths);
    free(caps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse(data, size, 1);
    parse(data, size, 0);
    return 0;
}
