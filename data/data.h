/* data.h - datasets and the batch loader.
 *
 * Files: data.c (what every dataset shares), fashion_mnist.c (IDX, Fashion-MNIST),
 * folders.c (image, class and caption folders), fc32.c (fashion-captions, built on
 * Fashion-MNIST), open.c (t2i_dataset_open, which knows all of them), loader.c.
 *
 * A t2i_dataset is a list of items, each an image of a fixed output shape (C, H, W) with
 * optional class label and caption. Sources:
 *   - IDX files (gzip or raw), e.g. Fashion-MNIST from Debian's dataset-fashion-mnist
 *     (/usr/share/datasets/fashion-mnist, override with T2I_FASHION_MNIST_DIR); held in
 *     memory as 8-bit pixels;
 *   - an image folder (recursive; .png .jpg .jpeg .bmp .gif .tga .ppm .pgm .webp), decoded on demand
 *     and brought to (H, W) by resizing the shorter side (bicubic, antialiased) and centre
 *     cropping;
 *   - class folders: one sub-folder per class (sorted names give labels 0..K-1);
 *   - caption folders in the Hugging Face imagefolder layout: images plus metadata.jsonl
 *     (one {"file_name": ..., "text": ...} per line) or metadata.csv (file_name,text);
 *   - fashion-captions (FC32, see fc32.h), generated in memory from Fashion-MNIST.
 * Every opener returns -1 with a message naming the file/folder on bad input: a missing
 * folder, no images, an unreadable image, a malformed metadata line, an empty caption.
 *
 * The loader shuffles (seeded), batches, decodes items in parallel (OpenMP) and applies
 * optional random horizontal flip and random crop (pad then crop, as CIFAR augmentation).
 * Its position (epoch, index, RNG) is plain data saved in checkpoints, so a resumed run
 * sees the same batches as an uninterrupted one.
 */
#ifndef T2I_DATA_H
#define T2I_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
    int n;                 /* number of items */
    int C, H, W;           /* every item is delivered as (C, H, W) floats in [-1, 1] */
    uint8_t *mem;          /* in-memory items, n * H * W * C bytes (HWC), or NULL */
    char **files;          /* on-disk items (n paths), or NULL */
    int *labels;           /* n labels, or NULL */
    char **captions;       /* n UTF-8 captions, or NULL */
    int n_classes;
    char **class_names;    /* n_classes names, or NULL */
    char *source;          /* "fashion-mnist:train", a folder path, ... (for messages) */
} t2i_dataset;

/* Fashion-MNIST's classes, label order: t-shirt, trousers, pullover, dress, coat, sandal,
 * shirt, sneaker, bag, ankle boot. */
#define T2I_FASHION_MNIST_CLASSES 10
extern const char *const t2i_fashion_mnist_class_names[T2I_FASHION_MNIST_CLASSES];

/* Reads an IDX image file (ubyte, 3 dims) and optional label file (1 dim). */
int t2i_dataset_idx(t2i_dataset *ds, const char *images_path, const char *labels_path);
/* split: "train" or "test". Class names are Fashion-MNIST's ten. */
int t2i_dataset_fashion_mnist(t2i_dataset *ds, const char *split);
int t2i_dataset_image_folder(t2i_dataset *ds, const char *dir, int C, int H, int W);
int t2i_dataset_class_folders(t2i_dataset *ds, const char *dir, int C, int H, int W);
int t2i_dataset_captions(t2i_dataset *ds, const char *dir, int C, int H, int W);
/* Opens by name: "fashion-mnist[:train|:test]", "fashion-captions[:train|:test]" (FC32),
 * or a folder (metadata.jsonl/csv -> captions; only sub-folders of images -> classes;
 * otherwise an image folder). C/H/W of 0 take the source's native shape where it has one. */
int t2i_dataset_open(t2i_dataset *ds, const char *spec, int C, int H, int W);
/* Item i as (C, H, W) floats in [-1, 1]. Thread-safe. Returns -1 on a decode error. */
int t2i_dataset_get(const t2i_dataset *ds, int i, float *dst);
/* Replaces the labels (if any) by K pseudo-classes of equal size (within one): balanced
 * k-means (nn/kmeans.h) on the images average-pooled to a side of 14-27 pixels, seeded by
 * seed; the same for any thread count. The class names go. Returns -1 with a message on
 * an unreadable image or K outside 2..n. */
int t2i_dataset_cluster(t2i_dataset *ds, int K, uint64_t seed);
void t2i_dataset_free(t2i_dataset *ds);

typedef struct {
    const t2i_dataset *ds;
    int batch;
    int shuffle, drop_last;
    int flip;              /* random horizontal flip with p = 0.5 */
    int crop_pad;          /* random crop after zero-padding this many pixels (0 = off) */
    float erase;           /* random erasing: with this probability one black rectangle (0 = off) */
    uint64_t seed;
    /* Data-parallel runs (run/dist.h): only the batch rows [part_lo, part_hi) are decoded into
     * x (their usual places; the other rows of x are left as they were); labels, captions and
     * idx still cover the whole batch, and the position advances by the whole batch, so each
     * rank sees its slice of the one global sequence. part_hi 0: every row. */
    int part_lo, part_hi;
    /* Position: (epoch, pos) is all a checkpoint needs. The order of epoch e is a shuffle
     * drawn from t2i_rng_split(seed, e); the augmentation of the item at (e, pos) from a
     * stream derived from (seed, e, pos). Nothing depends on the thread count. */
    long epoch;
    int pos;               /* next index into order */
    int *order;            /* n indices of the current epoch */
} t2i_loader;

void t2i_loader_init(t2i_loader *L, const t2i_dataset *ds, int batch, int shuffle, uint64_t seed);
/* Fills x (batch, C, H, W) and, when non-NULL, labels (batch), captions (batch pointers
 * into the dataset) and idx (batch item indices). Returns the number of items (less than
 * batch only at the end of an epoch without drop_last), 0 at the end of an epoch (the next
 * call starts a new one), or -1 on a decode error. */
int t2i_loader_next(t2i_loader *L, float *x, int *labels, const char **captions, int *idx);
/* Moves to a saved position (recomputes that epoch's order). A position outside the data
 * (negative, or past its last item: a damaged checkpoint, or a dataset that shrank since)
 * is an error, -1, and leaves the loader where it was. */
int t2i_loader_seek(t2i_loader *L, long epoch, int pos);
void t2i_loader_free(t2i_loader *L);

#endif
