/* fuzz_prompts.c - libFuzzer target for `--prompts` files (text/prompts.c).
 *
 * Each input is a whole prompts file given to t2i_prompts_parse, which t2i_prompts_read
 * (and so `t2i generate --prompts`) calls on the file's bytes. Checked with
 * __builtin_trap: a refused file gives one line of error naming the input, and nothing to
 * free; an accepted one gives at least one caption, each one non-empty, without
 * surrounding whitespace, not a comment, and valid text (t2i_text_problem finds nothing),
 * and as many captions as the input has lines that are neither blank nor comments.
 * Build and run: tests/fuzz/README.md.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "prompts.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

/* Lines of data that hold something other than whitespace and do not start with '#'. */
static int count_captions(const uint8_t *data, size_t size) {
    int count = 0;
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && data[j] != '\n') j++;
        size_t a = i;
        while (a < j && isspace(data[a])) a++;
        if (a < j && data[a] != '#') count++;
        i = j + 1;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = t2i_malloc(size + 1); /* as t2i_read_file gives it: NUL-terminated */
    memcpy(text, data, size);
    text[size] = 0;
    char **caps = NULL;
    int n = 0;
    int rc = t2i_prompts_parse(text, size, "fuzz", &caps, &n);
    free(text);
    if (rc != 0) {
        check(caps == NULL && n == 0);
        check(strncmp(t2i_error_msg(), "fuzz:", 5) == 0 && strchr(t2i_error_msg(), '\n') == NULL);
        return 0;
    }
    check(n >= 1 && n == count_captions(data, size));
    for (int i = 0; i < n; i++) {
        size_t l = strlen(caps[i]), at;
        check(l > 0 && caps[i][0] != '#');
        check(!isspace((unsigned char)caps[i][0]) && !isspace((unsigned char)caps[i][l - 1]));
        check(t2i_text_problem(caps[i], &at) == NULL);
        free(caps[i]);
    }
    free(caps);
    return 0;
}
