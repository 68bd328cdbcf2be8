/* loader.c - the batch loader (data.h): shuffled order, parallel decoding, augmentation.
 *
 *   - The loader decodes on-disk items in parallel (OpenMP, one item per iteration);
 *     in-memory items are copied on the calling thread. Labels of a set without labels
 *     come out as -1, captions as NULL. With drop_last, a set smaller than the batch gives
 *     no batches at all (every call returns 0).
 *   - Loader augmentation of the item at (epoch e, position p) draws from
 *     split(split(split(root, AUG_STREAM), e), p), root = seed(seed): first the crop offsets
 *     (x then y, each below(2 * crop_pad + 1)) when crop_pad > 0, then the flip bit
 *     (below(2)) when flip is on, then when erase > 0 uniform() < erase decides random
 *     erasing, and an erased item draws its area fraction uniform(0.02, 0.33), the log of
 *     its aspect uniform(log 0.3, log 3.3) (height / width), then y and x (below the free
 *     room + 1). Padding and erasing are black (-1). Crop, flip, erase come in torchvision's
 *     order (RandomCrop, RandomHorizontalFlip, RandomErasing with its default scale and
 *     ratio; sizes too large for the image are clamped to it instead of redrawn).
 */
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

#define AUG_STREAM 0x6175676d656e7421ull /* "augment!": far from any epoch number */

/* ---------------------------------------------------------------------- loader ---- */

static void loader_order(t2i_loader *L) {
    int n = L->ds->n;
    for (int i = 0; i < n; i++) L->order[i] = i;
    if (L->shuffle) {
        t2i_rng root;
        t2i_rng_seed(&root, L->seed);
        t2i_rng r = t2i_rng_split(&root, (uint64_t)L->epoch);
        t2i_rng_shuffle(&r, L->order, (size_t)n);
    }
}

void t2i_loader_init(t2i_loader *L, const t2i_dataset *ds, int batch, int shuffle, uint64_t seed) {
    T2I_ASSERT(ds && ds->n > 0 && batch > 0);
    memset(L, 0, sizeof *L);
    L->ds = ds;
    L->batch = batch;
    L->shuffle = shuffle;
    L->seed = seed;
    L->order = t2i_malloc((size_t)ds->n * sizeof(int));
    loader_order(L);
}

int t2i_loader_seek(t2i_loader *L, long epoch, int pos) {
    if (epoch < 0 || pos < 0 || pos > L->ds->n)
        return t2i_error_set("training state: loader position (epoch %ld, item %d) is outside the %d items of %s",
                             epoch, pos, L->ds->n, L->ds->source ? L->ds->source : "the data");
    L->epoch = epoch;
    L->pos = pos;
    loader_order(L);
    return 0;
}

void t2i_loader_free(t2i_loader *L) {
    free(L->order);
    memset(L, 0, sizeof *L);
}

/* Row y of a plane becomes row sy shifted by ox (out[x] = in[x + ox]), black outside. */
static void shift_row(float *dst, const float *src, int W, int ox) {
    int a = ox < 0 ? -ox : ox;
    if (a >= W) {
        for (int x = 0; x < W; x++) dst[x] = -1.0f;
        return;
    }
    if (ox >= 0) {
        memmove(dst, src + ox, (size_t)(W - ox) * sizeof(float));
        for (int x = W - ox; x < W; x++) dst[x] = -1.0f;
    } else {
        memmove(dst + a, src, (size_t)(W - a) * sizeof(float));
        for (int x = 0; x < a; x++) dst[x] = -1.0f;
    }
}

/* In place: out(y, x) = in(y + oy, x + ox), black (-1) outside. Rows are visited in the
 * order that reads each source row before it is overwritten. */
static void shift_plane(float *p, int H, int W, int ox, int oy) {
    for (int k = 0; k < H; k++) {
        int y = oy >= 0 ? k : H - 1 - k;
        int sy = y + oy;
        float *dst = p + (size_t)y * W;
        if (sy < 0 || sy >= H) {
            for (int x = 0; x < W; x++) dst[x] = -1.0f;
        } else {
            shift_row(dst, p + (size_t)sy * W, W, ox);
        }
    }
}

static void augment(const t2i_loader *L, float *x, int pos) {
    const t2i_dataset *ds = L->ds;
    t2i_rng root;
    t2i_rng_seed(&root, L->seed);
    t2i_rng a = t2i_rng_split(&root, AUG_STREAM);
    t2i_rng e = t2i_rng_split(&a, (uint64_t)L->epoch);
    t2i_rng r = t2i_rng_split(&e, (uint64_t)pos);
    size_t plane = (size_t)ds->H * ds->W;
    if (L->crop_pad > 0) {
        int ox = (int)t2i_rng_below(&r, 2 * (uint64_t)L->crop_pad + 1) - L->crop_pad;
        int oy = (int)t2i_rng_below(&r, 2 * (uint64_t)L->crop_pad + 1) - L->crop_pad;
        if (ox || oy)
            for (int c = 0; c < ds->C; c++) shift_plane(x + c * plane, ds->H, ds->W, ox, oy);
    }
    if (L->flip && t2i_rng_below(&r, 2)) {
        for (int c = 0; c < ds->C; c++)
            for (int y = 0; y < ds->H; y++) {
                float *row = x + c * plane + (size_t)y * ds->W;
                for (int i = 0, j = ds->W - 1; i < j; i++, j--) {
                    float t = row[i];
                    row[i] = row[j];
                    row[j] = t;
                }
            }
    }
    if (L->erase > 0 && t2i_rng_uniform(&r) < L->erase) {
        float area = (0.02f + 0.31f * t2i_rng_uniform(&r)) * (float)plane;
        float aspect = expf(logf(0.3f) + (logf(3.3f) - logf(0.3f)) * t2i_rng_uniform(&r));
        int h = T2I_MIN(T2I_MAX((int)lroundf(sqrtf(area * aspect)), 1), ds->H);
        int w = T2I_MIN(T2I_MAX((int)lroundf(sqrtf(area / aspect)), 1), ds->W);
        int y0 = (int)t2i_rng_below(&r, (uint64_t)(ds->H - h + 1));
        int x0 = (int)t2i_rng_below(&r, (uint64_t)(ds->W - w + 1));
        for (int c = 0; c < ds->C; c++)
            for (int y = y0; y < y0 + h; y++) {
                float *row = x + c * plane + (size_t)y * ds->W + x0;
                for (int i = 0; i < w; i++) row[i] = -1.0f;
            }
    }
}

int t2i_loader_next(t2i_loader *L, float *x, int *labels, const char **captions, int *idx) {
    const t2i_dataset *ds = L->ds;
    int left = ds->n - L->pos;
    if (left <= 0 || (L->drop_last && left < L->batch)) {
        L->epoch++;
        L->pos = 0;
        loader_order(L);
        return 0;
    }
    int m = T2I_MIN(L->batch, left);
    size_t item = (size_t)ds->C * ds->H * ds->W;
    int fail = -1;
    char msg[1024] = "";
    /* Each item writes only its own slice of x; the first failing item (by position)
     * reports, so the message does not depend on the thread count either. In-memory items
     * are only copied: threads would cost more than they save. */
#pragma omp parallel for schedule(dynamic, 1) if (m > 1 && !ds->mem)
    for (int b = 0; b < m; b++) {
        if (L->part_hi > 0 && (b < L->part_lo || b >= L->part_hi)) continue;
        float *dst = x + (size_t)b * item;
        if (t2i_dataset_get(ds, L->order[L->pos + b], dst) != 0) {
#pragma omp critical(t2i_loader_error)
            {
                if (fail < 0 || b < fail) {
                    fail = b;
                    snprintf(msg, sizeof msg, "%s", t2i_error_msg());
                }
            }
            continue;
        }
        if (L->flip || L->crop_pad > 0 || L->erase > 0) augment(L, dst, L->pos + b);
    }
    if (fail >= 0) return t2i_error_set("%s", msg);
    for (int b = 0; b < m; b++) {
        int i = L->order[L->pos + b];
        if (labels) labels[b] = ds->labels ? ds->labels[i] : -1;
        if (captions) captions[b] = ds->captions ? ds->captions[i] : NULL;
        if (idx) idx[b] = i;
    }
    L->pos += m;
    return m;
}
