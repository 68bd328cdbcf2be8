/* data.c - what every dataset shares (data.h): freeing, bringing items to the requested
 * (C, H, W), and t2i_dataset_get. The readers are in fashion_mnist.c and folders.c,
 * fashion-captions in fc32.c, opening by name in open.c, the loader in loader.c.
 *
 * Details beyond data.h:
 *   - C/H/W of 0: in-memory sets keep their shape; folders use C = 3 and the first image's
 *     size (one of H, W given: square). An in-memory set opened at another shape is
 *     converted once when opened (channels by t2i_image_convert: gray -> RGB replicates,
 *     RGB -> gray is PIL's luma; sizes by the same bicubic resize + centre crop as folders).
 *   - Resizing to (H, W): H == W uses t2i_image_resize_crop (shorter side to H,
 *     torchvision rounding, centre crop); otherwise the image is scaled to cover H x W
 *     (rounded sizes) and centre cropped.
 *
 * Failures: every opener returns -1 after t2i_error_set("PATH: problem") - or
 * "PATH:LINE: problem" for a metadata line - and leaves the dataset zeroed (safe to free).
 * t2i_dataset_get and t2i_loader_next return -1 with the decoder's message naming the
 * image. Shape or index misuse (item out of range, batch <= 0) trips T2I_ASSERT.
 */
#include "data.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "data_internal.h"
#include "image.h"

void t2i_dataset_free(t2i_dataset *ds) {
    if (!ds) return;
    free(ds->mem);
    if (ds->files)
        for (int i = 0; i < ds->n; i++) free(ds->files[i]);
    free(ds->files);
    free(ds->labels);
    if (ds->captions)
        for (int i = 0; i < ds->n; i++) free(ds->captions[i]);
    free(ds->captions);
    if (ds->class_names)
        for (int k = 0; k < ds->n_classes; k++) free(ds->class_names[k]);
    free(ds->class_names);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------ shapes and conversions ---- */

/* Resize + centre crop of src to W x H (see the header block); dst allocated. */
static void fit_size(t2i_image *dst, const t2i_image *src, int H, int W) {
    if (H == W) {
        t2i_image_resize_crop(dst, src, H, T2I_RESIZE_BICUBIC);
        return;
    }
    double s = T2I_MAX((double)W / src->w, (double)H / src->h);
    int nw = T2I_MAX(W, (int)(src->w * s + 0.5));
    int nh = T2I_MAX(H, (int)(src->h * s + 0.5));
    t2i_image tmp = {0};
    t2i_image_resize(&tmp, src, nw, nh, T2I_RESIZE_BICUBIC);
    t2i_image_center_crop(dst, &tmp, W, H);
    t2i_image_free(&tmp);
}

/* Brings an 8-bit image to (C, H, W) floats in [-1, 1]. */
static void image_to_item(float *dst, const t2i_image *img, int C, int H, int W) {
    t2i_image chan = {0}, sized = {0};
    const t2i_image *cur = img;
    if (cur->c != C) {
        t2i_image_convert(&chan, cur, C);
        cur = &chan;
    }
    if (cur->w != W || cur->h != H) {
        fit_size(&sized, cur, H, W);
        cur = &sized;
    }
    T2I_ASSERT(cur->w == W && cur->h == H && cur->c == C);
    t2i_image_to_chw(dst, cur);
    if (chan.px) t2i_image_free(&chan);
    if (sized.px) t2i_image_free(&sized);
}

/* Converts an in-memory set to (C, H, W) once (see the header block). */
void data_convert_mem(t2i_dataset *ds, int C, int H, int W) {
    if (C == 0) C = ds->C;
    if (H == 0 && W == 0)
        H = ds->H, W = ds->W;
    else if (H == 0)
        H = W;
    else if (W == 0)
        W = H;
    T2I_ASSERTF(C == 1 || C == 3, "C = %d", C);
    if (C == ds->C && H == ds->H && W == ds->W) return;
    size_t in_sz = (size_t)ds->H * ds->W * ds->C, out_sz = (size_t)H * W * C;
    uint8_t *out = t2i_malloc((size_t)ds->n * out_sz);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < ds->n; i++) {
        t2i_image src = {ds->W, ds->H, ds->C, ds->mem + (size_t)i * in_sz};
        t2i_image chan = {0}, sized = {0};
        const t2i_image *cur = &src;
        if (cur->c != C) {
            t2i_image_convert(&chan, cur, C);
            cur = &chan;
        }
        if (cur->w != W || cur->h != H) {
            fit_size(&sized, cur, H, W);
            cur = &sized;
        }
        memcpy(out + (size_t)i * out_sz, cur->px, out_sz);
        if (chan.px) t2i_image_free(&chan);
        if (sized.px) t2i_image_free(&sized);
    }
    free(ds->mem);
    ds->mem = out;
    ds->C = C;
    ds->H = H;
    ds->W = W;
}

int t2i_dataset_get(const t2i_dataset *ds, int i, float *dst) {
    T2I_ASSERTF(i >= 0 && i < ds->n, "item %d of %d", i, ds->n);
    if (ds->mem) {
        const t2i_image img = {ds->W, ds->H, ds->C, ds->mem + (size_t)i * ds->H * ds->W * ds->C};
        t2i_image_to_chw(dst, &img);
        return 0;
    }
    T2I_ASSERT(ds->files);
    t2i_image img = {0};
    if (t2i_image_load(&img, ds->files[i], ds->C) != 0) return -1;
    image_to_item(dst, &img, ds->C, ds->H, ds->W);
    t2i_image_free(&img);
    return 0;
}
