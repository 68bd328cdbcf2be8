/* fc32.c - the fashion-captions dataset (FC32); see fc32.h for the definition of an item,
 * the hold-out rule and the order of the random draws. */
#include "fc32.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base.h"
#include "rng.h"

const char *const fc32_colour_names[FC32_N_COLOURS] = {
    "white", "red", "green", "blue", "yellow", "purple", "orange", "cyan",
};

/* Integer thousandths so that round(g * 255 * colour) is computed exactly. */
const int fc32_palette_milli[FC32_N_COLOURS][3] = {
    {1000, 1000, 1000}, {1000, 150, 150}, {150, 1000, 150}, {200, 350, 1000},
    {1000, 1000, 150},  {700, 250, 1000}, {1000, 550, 100}, {150, 1000, 1000},
};

const float fc32_palette[FC32_N_COLOURS][3] = {
    {1.0f, 1.0f, 1.0f},  {1.0f, 0.15f, 0.15f}, {0.15f, 1.0f, 0.15f}, {0.2f, 0.35f, 1.0f},
    {1.0f, 1.0f, 0.15f}, {0.7f, 0.25f, 1.0f},  {1.0f, 0.55f, 0.1f},  {0.15f, 1.0f, 1.0f},
};

const char *const *const fc32_class_names = t2i_fashion_mnist_class_names;

/* Written out (not built at run time) so that the table is constant data; a test checks it
 * against fc32_caption(colour, class, 0). */
#define FC32_ROW(art, col)                                                                                   \
    art " " col " t-shirt", art " " col " trousers", art " " col " pullover", art " " col " dress",          \
        art " " col " coat", art " " col " sandal", art " " col " shirt", art " " col " sneaker",            \
        art " " col " bag", art " " col " ankle boot"
const char *const fc32_canonical_captions[FC32_N_CANONICAL] = {
    FC32_ROW("a", "white"),  FC32_ROW("a", "red"),    FC32_ROW("a", "green"),   FC32_ROW("a", "blue"),
    FC32_ROW("a", "yellow"), FC32_ROW("a", "purple"), FC32_ROW("an", "orange"), FC32_ROW("a", "cyan"),
};
#undef FC32_ROW

/* colour index of each class's held-out pair, -1 for none */
static const int held_out_colour[FC32_N_CLASSES] = {
    -1, /* t-shirt */
    0,  /* white trousers */
    3,  /* blue pullover */
    6,  /* orange dress */
    4,  /* yellow coat */
    5,  /* purple sandal */
    1,  /* red shirt */
    -1, /* sneaker */
    7,  /* cyan bag */
    2,  /* green ankle boot */
};

int fc32_is_held_out(int colour, int cls) {
    T2I_ASSERT(colour >= 0 && colour < FC32_N_COLOURS && cls >= 0 && cls < FC32_N_CLASSES);
    return held_out_colour[cls] == colour;
}

/* Every word that starts a noun phrase here begins with its sound's letter. */
static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

int fc32_caption(char *buf, size_t cap, int colour, int cls, int tmpl) {
    T2I_ASSERT(colour >= 0 && colour < FC32_N_COLOURS && cls >= 0 && cls < FC32_N_CLASSES);
    const char *c = fc32_colour_names[colour], *k = fc32_class_names[cls];
    const char *ac = article(c);
    switch (tmpl) {
    case 0: return snprintf(buf, cap, "%s %s %s", ac, c, k);
    case 1: return snprintf(buf, cap, "a photo of %s %s %s", ac, c, k);
    case 2: return snprintf(buf, cap, "%s %s", c, k);
    case 3: return snprintf(buf, cap, "%s %s in %s", article(k), k, c);
    case 4: return snprintf(buf, cap, "a picture of %s %s %s", ac, c, k);
    case 5: return snprintf(buf, cap, "an image of %s %s %s", ac, c, k);
    case 6: return snprintf(buf, cap, "%s %s %s on a black background", ac, c, k);
    case 7: return snprintf(buf, cap, "a product photo of %s %s %s", ac, c, k);
    default: T2I_ASSERTF(0, "template %d out of range", tmpl);
    }
    return -1;
}

static int is_word_char(char ch) { return isalnum((unsigned char)ch) || ch == '-'; }

/* Does `phrase` occur in s as whole words (case-insensitive)? */
static int has_phrase(const char *s, const char *phrase) {
    size_t n = strlen(phrase);
    for (const char *p = s; *p; p++) {
        if (p != s && is_word_char(p[-1])) continue;
        if (strncasecmp(p, phrase, n) == 0 && !is_word_char(p[n])) return 1;
    }
    return 0;
}

int fc32_parse_caption(const char *caption, int *colour, int *cls) {
    if (!caption) return -1;
    int nc = 0, nk = 0, c = -1, k = -1;
    for (int i = 0; i < FC32_N_COLOURS; i++)
        if (has_phrase(caption, fc32_colour_names[i])) nc++, c = i;
    for (int i = 0; i < FC32_N_CLASSES; i++)
        if (has_phrase(caption, fc32_class_names[i])) nk++, k = i;
    if (nc != 1 || nk != 1) return -1;
    if (colour) *colour = c;
    if (cls) *cls = k;
    return 0;
}

fc32_draws fc32_draw(uint64_t seed, int train, int index, int cls) {
    T2I_ASSERT(index >= 0 && cls >= 0 && cls < FC32_N_CLASSES);
    t2i_rng root;
    t2i_rng_seed(&root, seed);
    t2i_rng r = t2i_rng_split(&root, (uint64_t)index);
    fc32_draws d;
    /* Rejection keeps the train colours uniform over the allowed ones of each class. */
    do {
        d.colour = (int)t2i_rng_below(&r, FC32_N_COLOURS);
    } while (train && fc32_is_held_out(d.colour, cls));
    d.dx = (int)t2i_rng_below(&r, FC32_MAX_OFFSET + 1);
    d.dy = (int)t2i_rng_below(&r, FC32_MAX_OFFSET + 1);
    d.tmpl = (int)t2i_rng_below(&r, FC32_N_TEMPLATES);
    return d;
}

/* lut[g * 3 + ch] = round(g/255 * 255 * p/1000) = floor((g * p + 500) / 1000): exact, halves
 * rounded up. */
static void colour_lut(uint8_t lut[256 * 3], int colour) {
    const int *p = fc32_palette_milli[colour];
    for (int g = 0; g < 256; g++)
        for (int ch = 0; ch < 3; ch++) lut[g * 3 + ch] = (uint8_t)((g * p[ch] + 500) / 1000);
}

static void render_lut(uint8_t *dst, const uint8_t *src, const uint8_t *lut, int dx, int dy) {
    memset(dst, 0, (size_t)FC32_SIZE * FC32_SIZE * 3);
    for (int y = 0; y < FC32_ITEM; y++) {
        uint8_t *row = dst + ((size_t)(y + dy) * FC32_SIZE + (size_t)dx) * 3;
        for (int x = 0; x < FC32_ITEM; x++) memcpy(row + x * 3, lut + src[y * FC32_ITEM + x] * 3, 3);
    }
}

void fc32_render(uint8_t *dst, const uint8_t *src, int colour, int dx, int dy) {
    T2I_ASSERT(colour >= 0 && colour < FC32_N_COLOURS);
    T2I_ASSERT(dx >= 0 && dx <= FC32_MAX_OFFSET && dy >= 0 && dy <= FC32_MAX_OFFSET);
    uint8_t lut[256 * 3];
    colour_lut(lut, colour);
    render_lut(dst, src, lut, dx, dy);
}

int fc32_from_mnist(t2i_dataset *ds, const t2i_dataset *fm, int train, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    if (!fm->mem || fm->C != 1 || fm->H != FC32_ITEM || fm->W != FC32_ITEM || !fm->labels)
        return t2i_error_set("%s: not Fashion-MNIST (need 28x28 gray items with labels)",
                             fm->source ? fm->source : "dataset");
    for (int i = 0; i < fm->n; i++)
        if (fm->labels[i] < 0 || fm->labels[i] >= FC32_N_CLASSES)
            return t2i_error_set("%s: item %d has label %d, outside 0..9",
                                 fm->source ? fm->source : "dataset", i, fm->labels[i]);
    const size_t item = (size_t)FC32_SIZE * FC32_SIZE * 3;
    ds->n = fm->n;
    ds->C = 3;
    ds->H = ds->W = FC32_SIZE;
    ds->mem = t2i_malloc((size_t)ds->n * item);
    ds->labels = t2i_malloc((size_t)ds->n * sizeof(int));
    ds->captions = t2i_calloc((size_t)ds->n, sizeof(char *));
    ds->n_classes = FC32_N_CLASSES;
    ds->class_names = t2i_calloc(FC32_N_CLASSES, sizeof(char *));
    for (int k = 0; k < FC32_N_CLASSES; k++) ds->class_names[k] = t2i_strdup(fc32_class_names[k]);
    ds->source = seed == FC32_DEFAULT_SEED ? t2i_asprintf("fashion-captions:%s", train ? "train" : "test")
                                           : t2i_asprintf("fashion-captions:%s:%llu",
                                                          train ? "train" : "test", (unsigned long long)seed);
    const size_t src_item = (size_t)FC32_ITEM * FC32_ITEM;
    uint8_t luts[FC32_N_COLOURS][256 * 3];
    for (int c = 0; c < FC32_N_COLOURS; c++) colour_lut(luts[c], c);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < ds->n; i++) {
        int cls = fm->labels[i];
        fc32_draws d = fc32_draw(seed, train, i, cls);
        T2I_ASSERT(d.dx <= FC32_MAX_OFFSET && d.dy <= FC32_MAX_OFFSET);
        render_lut(ds->mem + (size_t)i * item, fm->mem + (size_t)i * src_item, luts[d.colour], d.dx, d.dy);
        char buf[FC32_CAPTION_MAX];
        fc32_caption(buf, sizeof buf, d.colour, cls, d.tmpl);
        ds->labels[i] = cls;
        ds->captions[i] = t2i_strdup(buf);
    }
    return 0;
}

int fc32_open(t2i_dataset *ds, const char *split, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    int train;
    if (strcmp(split, "train") == 0)
        train = 1;
    else if (strcmp(split, "test") == 0)
        train = 0;
    else
        return t2i_error_set("fashion-captions: unknown split '%s' (train or test)", split);
    t2i_dataset fm;
    if (t2i_dataset_fashion_mnist(&fm, split) != 0) return -1;
    int rc = fc32_from_mnist(ds, &fm, train, seed);
    t2i_dataset_free(&fm);
    return rc;
}

int fc32_item(const t2i_dataset *ds, int i, int *colour, int *cls) {
    T2I_ASSERT(i >= 0 && i < ds->n);
    if (!ds->captions) return -1;
    return fc32_parse_caption(ds->captions[i], colour, cls);
}
