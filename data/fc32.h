/* fc32.h - "fashion-captions" (FC32): coloured Fashion-MNIST items with captions, for
 * text-to-image experiments that test composition (colour x class) on 2-core CPUs.
 *
 * Each Fashion-MNIST item (28x28 gray g in [0, 1]) is placed at a random offset (dx, dy),
 * each in 0..4, on a black 32x32 RGB canvas; a canvas pixel is g * colour, stored as u8
 * round(g * 255 * colour) computed exactly: (u8 * P + 500) / 1000 with the palette in
 * integer thousandths (fc32_palette_milli). The caption names the colour and the class in
 * one of FC32_N_TEMPLATES templates ("a red sneaker", "a photo of a red sneaker", "an
 * orange dress", "an ankle boot in red", ...).
 *
 * Composition hold-out: the train split (from Fashion-MNIST train, 60000 items) never
 * contains the eight (colour, class) pairs of fc32_is_held_out (purple sandal, orange
 * dress, cyan bag, yellow coat, green ankle boot, blue pullover, red shirt, white
 * trousers); its colours are uniform over the 7 others of each class (8 for t-shirt and
 * sneaker). The test split (from Fashion-MNIST test, 10000 items) draws colours uniformly
 * over all 8, so it contains them.
 *
 * Reproducibility: item i's draws come from t2i_rng_split(&root, i), root seeded with the
 * dataset seed (FC32_DEFAULT_SEED unless given), in this order: the colour (rejection
 * sampling of t2i_rng_below(8) in the train split until not held out), dx = below(5),
 * dy = below(5), template = below(FC32_N_TEMPLATES). fc32_draw does exactly this.
 *
 * Usage:
 *     t2i_dataset ds;
 *     if (fc32_open(&ds, "train", FC32_DEFAULT_SEED) != 0) die(t2i_error_msg());
 *     // ds: C=3, H=W=32, mem (HWC u8), labels = class, captions, class_names
 *     int colour, cls;
 *     fc32_item(&ds, i, &colour, &cls);     // from the item's caption
 * t2i_dataset_open(ds, "fashion-captions[:train|:test][:SEED]", ...) calls fc32_open.
 *
 * Failures: fc32_open returns -1 with the error set (Fashion-MNIST missing or corrupt, bad
 * split name); fc32_parse_caption and fc32_item return -1 when a caption does not name
 * exactly one palette colour and one class.
 */
#ifndef T2I_FC32_H
#define T2I_FC32_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"

#define FC32_SIZE 32      /* canvas side */
#define FC32_ITEM 28      /* Fashion-MNIST side */
#define FC32_MAX_OFFSET 4 /* dx, dy in 0..FC32_MAX_OFFSET */
#define FC32_N_COLOURS 8
#define FC32_N_CLASSES T2I_FASHION_MNIST_CLASSES /* Fashion-MNIST's classes */
#define FC32_N_TEMPLATES 8
#define FC32_N_CANONICAL (FC32_N_COLOURS * FC32_N_CLASSES)
#define FC32_DEFAULT_SEED 1234
#define FC32_CAPTION_MAX 64 /* every caption fits in this many bytes with its NUL */

/* white, red, green, blue, yellow, purple, orange, cyan */
extern const char *const fc32_colour_names[FC32_N_COLOURS];
/* RGB in [0, 1] (exactly fc32_palette_milli / 1000) */
extern const float fc32_palette[FC32_N_COLOURS][3];
extern const int fc32_palette_milli[FC32_N_COLOURS][3];
/* t-shirt, trousers, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot:
 * t2i_fashion_mnist_class_names (data.h) */
extern const char *const *const fc32_class_names;
/* "a {colour} {class}" with the right article ("an orange dress"), index colour * 10 +
 * class: the zero-shot prompts. Equal to fc32_caption(colour, class, 0). */
extern const char *const fc32_canonical_captions[FC32_N_CANONICAL];

/* 1 when (colour, class) is one of the eight pairs never seen in the train split. */
int fc32_is_held_out(int colour, int cls);
/* Writes the caption of template tmpl (0..FC32_N_TEMPLATES-1) into buf (cap bytes, at
 * least FC32_CAPTION_MAX for no truncation); returns its length. */
int fc32_caption(char *buf, size_t cap, int colour, int cls, int tmpl);
/* Finds the palette colour and the class named in a caption (case-insensitive, whole
 * words; "t-shirt" is not "shirt"). Returns 0, or -1 unless exactly one colour and one
 * class are named. colour/cls may be NULL. */
int fc32_parse_caption(const char *caption, int *colour, int *cls);

/* The draws of item `index` (see the header block). train selects the hold-out rule. */
typedef struct {
    int colour, dx, dy, tmpl;
} fc32_draws;
fc32_draws fc32_draw(uint64_t seed, int train, int index, int cls);
/* Renders one item: src 28x28 u8 gray -> dst 32x32x3 u8 HWC. */
void fc32_render(uint8_t *dst, const uint8_t *src, int colour, int dx, int dy);

/* Builds the split ("train" or "test") from Fashion-MNIST (see data.h for its location). */
int fc32_open(t2i_dataset *ds, const char *split, uint64_t seed);
/* Same from an already loaded Fashion-MNIST split (C=1, 28x28, labels 0..9). */
int fc32_from_mnist(t2i_dataset *ds, const t2i_dataset *fm, int train, uint64_t seed);
/* Colour and class of item i of an FC32 dataset, parsed from its caption. */
int fc32_item(const t2i_dataset *ds, int i, int *colour, int *cls);

#endif
