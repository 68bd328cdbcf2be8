/* prompts.c - files of captions, one per line (prompts.h). */
#include "prompts.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

int t2i_prompts_parse(char *text, size_t len, const char *name, char ***out, int *n) {
    const char *nul = memchr(text, 0, len);
    int cap = 16, k = 0, lineno = 0, rc = 0;
    char **v = t2i_malloc((size_t)cap * sizeof(char *));
    for (char *line = text, *next; line && line < text + len && rc == 0; line = next) {
        next = memchr(line, '\n', (size_t)(text + len - line));
        if (next) *next++ = 0;
        lineno++;
        size_t l = strlen(line), at;
        const char *why = t2i_text_problem(line, &at);
        if (nul && nul >= line && nul <= line + l) {
            rc = t2i_error_set("%s:%d: a NUL byte (not a text file?)", name, lineno);
        } else if (why && why != T2I_TEXT_EMPTY) {
            rc = t2i_error_set("%s:%d: %s (byte %zu of the line)", name, lineno, why, at);
        } else {
            while (isspace((unsigned char)*line)) line++, l--;
            while (l > 0 && isspace((unsigned char)line[l - 1])) line[--l] = 0;
            if (l == 0 || line[0] == '#') continue;
            if (k == cap) v = t2i_realloc(v, (size_t)(cap *= 2) * sizeof(char *));
            v[k++] = t2i_strdup(line);
        }
    }
    if (rc == 0 && k == 0) rc = t2i_error_set("%s: no captions (one per line; '#' starts a comment)", name);
    if (rc != 0) {
        for (int i = 0; i < k; i++) free(v[i]);
        free(v);
        return -1;
    }
    *out = v, *n = k;
    return 0;
}

int t2i_prompts_read(const char *path, char ***out, int *n) {
    size_t len;
    char *text = t2i_read_file(path, &len, (size_t)64 << 20);
    if (!text) return -1;
    int rc = t2i_prompts_parse(text, len, path, out, n);
    free(text);
    return rc;
}
