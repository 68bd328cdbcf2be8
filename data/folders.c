/* folders.c - datasets from folders (data.h): image folders, class folders, caption
 * folders (metadata.jsonl / metadata.csv), and the choice between them for
 * t2i_dataset_open.
 *
 *   - Image folders are walked recursively; names starting with '.' are skipped, and so
 *     is grid.png (the overview every t2i sampling command writes beside its images, which
 *     would otherwise count as one more sample); image files are recognised by extension
 *     (.png .jpg .jpeg .bmp .gif .tga .ppm .pgm .webp, any case); paths are sorted bytewise so
 *     the item order never depends on the file system.
 *     Every file's header is checked with t2i_image_info when the folder is opened.
 *   - Class folders: every sub-folder is a class, even an empty one (so that a partial
 *     export keeps the label numbering); at least one image overall is required.
 *   - Caption folders keep the metadata's order. metadata.jsonl: one JSON object per line
 *     with string fields "file_name" (relative to the folder) and "text"; blank lines are
 *     skipped. metadata.csv: RFC 4180 (quoted fields, "" for a quote, newlines inside
 *     quotes, CRLF or LF), a header line naming the file_name and text columns.
 *     Refused, naming the line: a NUL byte in the file, a \u0000 escape in a file_name or
 *     text value, and a file_name outside the folder as written (absolute, or with a ".."
 *     component); symbolic links inside the folder are followed wherever they point.
 *   - Folders use C = 3 and the first image's size when C/H/W are 0 (one of H, W given:
 *     square); items are resized as data.c says.
 *
 * Failures: every opener returns -1 after t2i_error_set("PATH: problem") - or
 * "PATH:LINE: problem" for a metadata line - and leaves the dataset zeroed (safe to free).
 */
#include "data.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base.h"
#include "data_internal.h"
#include "image.h"

#define WALK_MAX_DEPTH 32
#define METADATA_MAX_BYTES ((size_t)1 << 31)

/* ---------------------------------------------------------------- small helpers ---- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void sl_push(strlist *l, char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = t2i_realloc(l->v, l->cap * sizeof(char *));
    }
    l->v[l->n++] = s;
}

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    return t2i_asprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

static int is_image_name(const char *name) {
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".webp"};
    if (strcmp(name, "grid.png") == 0) return 0; /* the overview t2i writes beside its samples */
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0) return 1;
    return 0;
}

/* --------------------------------------------------------------------- folders ---- */

/* Appends the image files under dir (recursively) to out. */
static int walk(const char *dir, strlist *out, int depth) {
    if (depth > WALK_MAX_DEPTH) return t2i_error_set("%s: folders nested too deeply", dir);
    DIR *d = opendir(dir);
    if (!d) return t2i_error_set("%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p); /* a dangling symlink: not an image we could read anyway */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk(p, out, depth + 1);
            free(p);
        } else if (S_ISREG(st.st_mode) && is_image_name(e->d_name)) {
            sl_push(out, p);
        } else {
            free(p);
        }
    }
    closedir(d);
    return rc;
}

/* Counts image files and sub-folders directly in dir; fills subdirs (sorted names). */
static int scan_top(const char *dir, int *n_images, strlist *subdirs) {
    *n_images = 0;
    DIR *d = opendir(dir);
    if (!d) return t2i_error_set("%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                sl_push(subdirs, t2i_strdup(e->d_name));
            else if (S_ISREG(st.st_mode) && is_image_name(e->d_name))
                (*n_images)++;
        }
        free(p);
    }
    closedir(d);
    if (subdirs->n) qsort(subdirs->v, subdirs->n, sizeof(char *), cmp_str);
    return 0;
}

static int check_dir(const char *dir) {
    if (!t2i_path_exists(dir)) return t2i_error_set("%s: folder not found", dir);
    if (!t2i_is_dir(dir)) return t2i_error_set("%s: not a folder", dir);
    return 0;
}

/* Validates every file's header; returns the first image's size in *w0, *h0. */
static int check_images(char **files, int n, int *w0, int *h0) {
    for (int i = 0; i < n; i++) {
        int w, h, c;
        if (t2i_image_info(files[i], &w, &h, &c) != 0) {
            if (!strstr(t2i_error_msg(), files[i])) t2i_error_prefix("%s", files[i]);
            return -1;
        }
        if (i == 0) *w0 = w, *h0 = h;
    }
    return 0;
}

/* Fills the shape of a folder dataset from the request (see the header block). */
static int set_folder_shape(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    if (C != 0 && C != 1 && C != 3) return t2i_error_set("%s: channels must be 1 or 3, got %d", dir, C);
    if (H < 0 || W < 0) return t2i_error_set("%s: bad size %dx%d", dir, W, H);
    int w0 = 0, h0 = 0;
    if (check_images(ds->files, ds->n, &w0, &h0) != 0) return -1;
    ds->C = C ? C : 3;
    if (H == 0 && W == 0)
        H = h0, W = w0;
    else if (H == 0)
        H = W;
    else if (W == 0)
        W = H;
    ds->H = H;
    ds->W = W;
    return 0;
}

static void take_files(t2i_dataset *ds, strlist *l) {
    ds->n = (int)l->n;
    ds->files = l->v;
    memset(l, 0, sizeof *l);
}

int t2i_dataset_image_folder(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir) != 0) return -1;
    strlist l = {0};
    if (walk(dir, &l, 0) != 0) {
        sl_free(&l);
        return -1;
    }
    if (l.n == 0) {
        sl_free(&l);
        return t2i_error_set("%s: no images found", dir);
    }
    if (l.n > INT_MAX) {
        sl_free(&l);
        return t2i_error_set("%s: too many images (%zu)", dir, l.n);
    }
    qsort(l.v, l.n, sizeof(char *), cmp_str);
    take_files(ds, &l);
    ds->source = t2i_strdup(dir);
    if (set_folder_shape(ds, dir, C, H, W) != 0) {
        t2i_dataset_free(ds);
        return -1;
    }
    return 0;
}

int t2i_dataset_class_folders(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir) != 0) return -1;
    strlist subs = {0}, all = {0};
    int n_top = 0, rc = -1;
    size_t *first = NULL;
    if (scan_top(dir, &n_top, &subs) != 0) goto done;
    if (subs.n == 0) {
        t2i_error_set("%s: no class sub-folders found", dir);
        goto done;
    }
    first = t2i_malloc((subs.n + 1) * sizeof(size_t));
    for (size_t k = 0; k < subs.n; k++) {
        char *sd = path_join(dir, subs.v[k]);
        size_t before = all.n;
        first[k] = before;
        int wrc = walk(sd, &all, 1);
        free(sd);
        if (wrc != 0) goto done;
        if (all.n > before) qsort(all.v + before, all.n - before, sizeof(char *), cmp_str);
    }
    first[subs.n] = all.n;
    if (all.n == 0) {
        t2i_error_set("%s: no images found", dir);
        goto done;
    }
    if (all.n > INT_MAX) {
        t2i_error_set("%s: too many images (%zu)", dir, all.n);
        goto done;
    }
    take_files(ds, &all);
    ds->labels = t2i_malloc((size_t)ds->n * sizeof(int));
    for (size_t k = 0; k < subs.n; k++)
        for (size_t i = first[k]; i < first[k + 1]; i++) ds->labels[i] = (int)k;
    ds->n_classes = (int)subs.n;
    ds->class_names = subs.v;
    memset(&subs, 0, sizeof subs);
    ds->source = t2i_strdup(dir);
    rc = set_folder_shape(ds, dir, C, H, W);
    if (rc != 0) t2i_dataset_free(ds);
done:
    free(first);
    sl_free(&subs);
    sl_free(&all);
    return rc;
}

/* ------------------------------------------------------------ caption folders ---- */

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

/* Does file_name reach outside the data folder as written: an absolute path, or a ".."
 * component (refused even when it comes back in, "img/../a.png": the rule stays simple to
 * state). Symbolic links inside the folder are followed wherever they point: whoever made
 * the folder made them, while the metadata may come from someone else (a downloaded set). */
static int leaves_folder(const char *file) {
    if (file[0] == '/') return 1;
    for (const char *s = file; *s;) {
        size_t n = strcspn(s, "/");
        if (n == 2 && s[0] == '.' && s[1] == '.') return 1;
        s += n;
        if (*s) s++;
    }
    return 0;
}

/* Checks one (file_name, text) entry and appends it. `where` is "PATH:LINE". */
static int add_entry(const char *dir, const char *where, const char *file, const char *text, strlist *files,
                     strlist *caps) {
    if (!file || !*file) return t2i_error_set("%s: empty file_name", where);
    if (leaves_folder(file)) {
        char shown[256];
        return t2i_error_set("%s: file_name '%s' is outside the data folder (absolute paths and '..' are refused; "
                             "symbolic links inside the folder are followed)",
                             where, t2i_text_show(file, 200, shown, sizeof shown));
    }
    if (!text || is_blank(text, strlen(text))) return t2i_error_set("%s: empty caption", where);
    size_t bad = t2i_utf8_invalid_at(text, strlen(text));
    if (text[bad]) return t2i_error_set("%s: caption is not valid UTF-8 (byte %zu)", where, bad);
    char *p = path_join(dir, file);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
        char shown[256], shown_p[512]; /* the name as data: control bytes shown escaped, one line */
        t2i_error_set("%s: file_name '%s' %s (%s)", where, t2i_text_show(file, 200, shown, sizeof shown),
                      stat(p, &st) != 0 ? "not found" : "is not a file", t2i_text_show(p, 400, shown_p, sizeof shown_p));
        free(p);
        return -1;
    }
    sl_push(files, p);
    sl_push(caps, t2i_strdup(text));
    return 0;
}

/* Does the value of member k (0-based, in text order) of the JSON object in line hold a
 * \u0000 escape? cJSON decodes one into a NUL byte that silently ends its valuestring, so
 * the line's text is the only place to see it. The line is valid JSON (cJSON parsed it), so
 * strings, escapes and nesting need no further checks here. */
static int member_has_nul(const char *line, int k) {
    int depth = 0, member = 0, in_str = 0;
    for (const char *s = line; *s; s++) {
        if (in_str) {
            if (*s == '\\') {
                if (depth == 1 && member == k && strncmp(s + 1, "u0000", 5) == 0) return 1;
                s++; /* the escaped character: \" does not end the string */
            } else if (*s == '"') {
                in_str = 0;
            }
        } else if (*s == '"') {
            in_str = 1;
        } else if (*s == '{' || *s == '[') {
            depth++;
        } else if (*s == '}' || *s == ']') {
            depth--;
        } else if (*s == ',' && depth == 1) {
            member++;
        }
    }
    return 0;
}

/* Position of member m among o's members (cJSON keeps the text's order). */
static int member_index(const cJSON *o, const cJSON *m) {
    int k = 0;
    for (const cJSON *c = o->child; c && c != m; c = c->next) k++;
    return k;
}

static int parse_jsonl(const char *dir, const char *path, const char *buf, size_t len, strlist *files,
                       strlist *caps) {
    size_t pos = 0, cap = 0;
    int line = 0, rc = 0;
    char *copy = NULL; /* the line, NUL-terminated, so that cJSON can reject trailing text */
    while (pos < len && rc == 0) {
        line++;
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (is_blank(s, n)) continue;
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, line);
        if (n + 1 > cap) {
            cap = n + 1;
            copy = t2i_realloc(copy, cap);
        }
        memcpy(copy, s, n);
        copy[n] = 0;
        cJSON *o = cJSON_ParseWithOpts(copy, NULL, 1);
        if (!o) {
            rc = t2i_error_set("%s: not valid JSON", where);
        } else if (!cJSON_IsObject(o)) {
            rc = t2i_error_set("%s: expected a JSON object", where);
        } else {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file_name");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
            if (!cJSON_IsString(f))
                rc = t2i_error_set("%s: missing \"file_name\" string", where);
            else if (!cJSON_IsString(t))
                rc = t2i_error_set("%s: missing \"text\" string", where);
            else if (member_has_nul(copy, member_index(o, f)))
                rc = t2i_error_set("%s: file_name holds a NUL character (\\u0000)", where);
            else if (member_has_nul(copy, member_index(o, t)))
                rc = t2i_error_set("%s: caption holds a NUL character (\\u0000)", where);
            else
                rc = add_entry(dir, where, f->valuestring, t->valuestring, files, caps);
        }
        cJSON_Delete(o);
    }
    free(copy);
    return rc;
}

/* One RFC 4180 record starting at *pos: fields appended to out, *line advanced past it.
 * Returns 1 for a record, 0 at the end of the input, -1 on a malformed record. */
static int csv_record(const char *buf, size_t len, size_t *pos, int *line, strlist *out, char *field,
                      const char *path) {
    size_t p = *pos;
    if (p >= len) return 0;
    int start_line = *line;
    for (;;) {
        size_t n = 0;
        if (p < len && buf[p] == '"') {
            p++;
            for (;;) {
                if (p >= len) return t2i_error_set("%s:%d: unterminated quoted field", path, start_line);
                if (buf[p] == '"') {
                    if (p + 1 < len && buf[p + 1] == '"') {
                        field[n++] = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (buf[p] == '\n') (*line)++;
                field[n++] = buf[p++];
            }
            if (p < len && buf[p] != ',' && buf[p] != '\n' &&
                !(buf[p] == '\r' && (p + 1 == len || buf[p + 1] == '\n')))
                return t2i_error_set("%s:%d: unexpected character after a closing quote", path, *line);
        } else {
            while (p < len && buf[p] != ',' && buf[p] != '\n' &&
                   !(buf[p] == '\r' && (p + 1 == len || buf[p + 1] == '\n')))
                field[n++] = buf[p++];
        }
        field[n] = 0;
        sl_push(out, t2i_strdup(field));
        if (p < len && buf[p] == ',') {
            p++;
            continue;
        }
        if (p < len && buf[p] == '\r') p++;
        if (p < len && buf[p] == '\n') p++;
        (*line)++;
        break;
    }
    *pos = p;
    return 1;
}

static int parse_csv(const char *dir, const char *path, const char *buf, size_t len, strlist *files,
                     strlist *caps) {
    size_t pos = 0;
    int line = 1, rc = 0;
    strlist rec = {0};
    int fcol = -1, tcol = -1, ncol = 0;
    char *field = t2i_malloc(len + 1); /* any field fits */
    /* header: the first non-blank record */
    for (;;) {
        int here = line;
        int r = csv_record(buf, len, &pos, &line, &rec, field, path);
        if (r < 0) goto fail;
        if (r == 0) {
            rc = t2i_error_set("%s: empty (expected a header line with file_name and text)", path);
            goto done;
        }
        if (rec.n == 1 && rec.v[0][0] == 0) {
            sl_free(&rec);
            continue;
        }
        ncol = (int)rec.n;
        for (int k = 0; k < ncol; k++) {
            if (strcmp(rec.v[k], "file_name") == 0 && fcol < 0) fcol = k;
            if (strcmp(rec.v[k], "text") == 0 && tcol < 0) tcol = k;
        }
        sl_free(&rec);
        if (fcol < 0 || tcol < 0) {
            rc = t2i_error_set("%s:%d: the header needs file_name and text columns", path, here);
            goto done;
        }
        break;
    }
    for (;;) {
        int here = line;
        int r = csv_record(buf, len, &pos, &line, &rec, field, path);
        if (r < 0) goto fail;
        if (r == 0) break;
        if (rec.n == 1 && rec.v[0][0] == 0) {
            sl_free(&rec);
            continue;
        }
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, here);
        if ((int)rec.n != ncol) {
            rc = t2i_error_set("%s: %zu fields, the header has %d", where, rec.n, ncol);
            goto done;
        }
        if (add_entry(dir, where, rec.v[fcol], rec.v[tcol], files, caps) != 0) goto fail;
        sl_free(&rec);
    }
    goto done;
fail:
    rc = -1;
done:
    free(field);
    sl_free(&rec);
    return rc;
}

/* A NUL byte anywhere in the metadata: JSON forbids one raw in a string, and a CSV field
 * holding one would be cut at it (so would a JSON line: cJSON stops reading there). */
static int refuse_nul(const char *path, const char *buf, size_t len) {
    const char *nul = memchr(buf, 0, len);
    if (!nul) return 0;
    int line = 1;
    for (const char *s = buf; s < nul; s++) line += *s == '\n';
    return t2i_error_set("%s:%d: NUL byte (a caption or file name cannot hold one)", path, line);
}

/* A metadata file's bytes, parsed as metadata.jsonl (is_json) or metadata.csv. */
static int parse_metadata(const char *dir, const char *path, const char *buf, size_t len, int is_json,
                          strlist *files, strlist *caps) {
    /* a UTF-8 byte-order mark, as spreadsheet programs write */
    size_t skip = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    if (refuse_nul(path, buf + skip, len - skip) != 0) return -1;
    return is_json ? parse_jsonl(dir, path, buf + skip, len - skip, files, caps)
                   : parse_csv(dir, path, buf + skip, len - skip, files, caps);
}

int data_parse_metadata(const char *dir, const char *path, const char *buf, size_t len, int is_json,
                        char ***files, char ***caps, size_t *n) {
    strlist f = {0}, c = {0};
    if (parse_metadata(dir, path, buf, len, is_json, &f, &c) != 0) {
        sl_free(&f);
        sl_free(&c);
        return -1;
    }
    *files = f.v, *caps = c.v, *n = f.n;
    return 0;
}

int t2i_dataset_captions(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir) != 0) return -1;
    char *jl = path_join(dir, "metadata.jsonl"), *csv = path_join(dir, "metadata.csv");
    int is_json = t2i_path_exists(jl);
    const char *path = is_json ? jl : csv;
    strlist files = {0}, caps = {0};
    int rc = -1;
    size_t len = 0;
    char *buf = NULL;
    if (!is_json && !t2i_path_exists(csv)) {
        t2i_error_set("%s: no metadata.jsonl or metadata.csv", dir);
        goto done;
    }
    buf = t2i_read_file(path, &len, METADATA_MAX_BYTES);
    if (!buf) goto done;
    rc = parse_metadata(dir, path, buf, len, is_json, &files, &caps);
    if (rc != 0) goto done;
    if (files.n == 0) {
        rc = t2i_error_set("%s: no images found", dir);
        goto done;
    }
    if (files.n > INT_MAX) {
        rc = t2i_error_set("%s: too many entries", path);
        goto done;
    }
    take_files(ds, &files);
    ds->captions = caps.v;
    memset(&caps, 0, sizeof caps);
    ds->source = t2i_strdup(dir);
    rc = set_folder_shape(ds, dir, C, H, W);
    if (rc != 0) t2i_dataset_free(ds);
done:
    free(buf);
    free(jl);
    free(csv);
    sl_free(&files);
    sl_free(&caps);
    return rc;
}

/* ------------------------------------------------------------- which layout ---- */

int data_open_folder(t2i_dataset *ds, const char *dir, int C, int H, int W) {
    if (check_dir(dir) != 0) return -1;
    char *jl = path_join(dir, "metadata.jsonl"), *csv = path_join(dir, "metadata.csv");
    int has_meta = t2i_path_exists(jl) || t2i_path_exists(csv);
    free(jl);
    free(csv);
    if (has_meta) return t2i_dataset_captions(ds, dir, C, H, W);
    int n_top = 0;
    strlist subs = {0};
    if (scan_top(dir, &n_top, &subs) != 0) return -1;
    int classes = n_top == 0 && subs.n > 0;
    sl_free(&subs);
    return classes ? t2i_dataset_class_folders(ds, dir, C, H, W)
                   : t2i_dataset_image_folder(ds, dir, C, H, W);
}
