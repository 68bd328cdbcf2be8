/* data_internal.h - what the files of data/ share beyond data.h (not for other folders). */
#ifndef T2I_DATA_INTERNAL_H
#define T2I_DATA_INTERNAL_H

#include "data.h"

/* Converts an in-memory set to (C, H, W) once; 0 keeps the set's own C, H or W
 * (data.c's header block). */
void data_convert_mem(t2i_dataset *ds, int C, int H, int W);
/* Opens an existing path by its layout: metadata.jsonl/csv -> captions; only sub-folders
 * of images -> class folders; otherwise an image folder (folders.c). */
int data_open_folder(t2i_dataset *ds, const char *dir, int C, int H, int W);
/* The entries of a caption folder's metadata: len bytes of metadata.jsonl (is_json) or
 * metadata.csv read from path, file names relative to dir (folders.c's header block). 0 with
 * *files (paths under dir) and *caps, malloc'd arrays of *n malloc'd strings, or -1 with
 * "PATH:LINE: problem" set and nothing allocated (how the fuzz target reaches the parsers). */
int data_parse_metadata(const char *dir, const char *path, const char *buf, size_t len, int is_json,
                        char ***files, char ***caps, size_t *n);

#endif
