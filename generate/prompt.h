/* prompt.h - the image prompts of `t2i generate` (--image with --keep-rows/--keep-cols
 * or --mask, and --variations): the image as the VQ's input, and which cells of the VQ's
 * token grid keep the image's code.
 *
 *     float img[3 * 32 * 32];
 *     int w, h;
 *     if (gen_prompt_image("shoe.png", 3, 32, img, &w, &h) != 0) die(t2i_error_msg());
 *     uint8_t keep[8 * 8];
 *     gen_prompt_keep_lines(0.5f, 0.0f, 8, keep);         // the top half of the rows
 *     gen_prompt_mask("mask.png", w, h, 8, keep);          // or: a mask of the same size
 *
 * Geometry: the image is resized so that its shorter side is the VQ's input side R
 * (bicubic, antialiased), then its centre R x R is cut (as CLIP's preprocessing); an
 * image smaller than R x R is refused (the prompt would be an upscaled blur). The mask
 * must have the image's own size; its central square (the same crop, before resizing) is
 * split into g x g cells by pixel centres, and a cell is redrawn when the mask COVERS it:
 * when at least half of its pixels are white (gray >= 128). A mask drawn on the cell
 * boundaries redraws exactly its cells; a thin stroke across a cell does not.
 *
 * Failures: -1 with the error set, naming the file or the flag (unreadable or too small
 * image, a mask of another size, a keep count out of range).
 */
#ifndef T2I_PROMPT_H
#define T2I_PROMPT_H

#include <stddef.h>
#include <stdint.h>

/* out (C, R, R) in [-1, 1]; *w, *h get the file's size. */
int gen_prompt_image(const char *path, int C, int R, float *out, int *w, int *h);
/* keep (g, g) <- 1 in the first `rows` token rows and the first `cols` token columns
 * (their union); a value in (0, 1) is a fraction of g (rounded to the nearest count),
 * a value >= 1 a whole count <= g, 0 none. */
int gen_prompt_keep_lines(float rows, float cols, int g, uint8_t *keep);
/* keep (g, g) <- 0 where the mask (w x h, white = redraw) covers the cell, else 1. */
int gen_prompt_mask(const char *path, int w, int h, int g, uint8_t *keep);
/* The same from file bytes in memory (t2i serve); name is what messages call them. */
int gen_prompt_image_mem(const void *data, size_t len, const char *name, int C, int R, float *out, int *w, int *h);
int gen_prompt_mask_mem(const void *data, size_t len, const char *name, int w, int h, int g, uint8_t *keep);

#endif
