/* prompts.h - files of captions, one per line (`t2i generate --prompts FILE`).
 *
 * Blank lines and lines starting with '#' (after the surrounding whitespace, which is
 * trimmed) are skipped. The whole file is checked before any caption is used: a NUL byte,
 * a line that is not UTF-8 or holds a control character is the error "NAME:LINE: problem"
 * (LINE from 1); a file without captions is "NAME: no captions ...".
 *
 * Both functions return 0 with *out a malloc'd array of *n malloc'd NUL-terminated
 * captions (n >= 1; free each, then the array), or -1 with the error set and nothing
 * allocated.
 */
#ifndef T2I_PROMPTS_H
#define T2I_PROMPTS_H

#include <stddef.h>

/* Reads the file at path (at most 64 MiB). */
int t2i_prompts_read(const char *path, char ***out, int *n);
/* The captions of len bytes of text; text[len] must be 0. The text is overwritten (lines
 * are cut in place); name is what messages call it. */
int t2i_prompts_parse(char *text, size_t len, const char *name, char ***out, int *n);

#endif
