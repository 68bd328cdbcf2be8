/* test_loader.c - the batch loader (data/loader.c): order, seeking, augmentation, random
 * erasing. Loader batches are compared with the items they claim to be and with the
 * transforms they may have had.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base.h"
#include "data.h"
#include "fc32.h"
#include "image.h"
#include "testutil.h"

/* ----------------------------------------------------------------- loader ---- */

/* n items of C x H x W; every byte of item i encodes i and the position, so an item can
 * be recognised (and its transform found) from its pixels. */
static void make_mem_dataset(t2i_dataset *ds, int n, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->C = C;
    ds->H = H;
    ds->W = W;
    size_t item = (size_t)C * H * W;
    ds->mem = t2i_malloc((size_t)n * item);
    ds->labels = t2i_malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % 7;
        for (size_t j = 0; j < item; j++) ds->mem[i * item + j] = (uint8_t)(1 + (i * 37 + j * 11) % 250);
    }
    ds->n_classes = 7;
}

/* Runs one epoch from the loader's current position; records idx in order (n) and x. */
static int run_epoch(t2i_loader *L, int *order, float *xs, int *sizes, int *nb) {
    int total = 0, b = 0, got;
    size_t item = (size_t)L->ds->C * L->ds->H * L->ds->W;
    float *x = t2i_malloc((size_t)L->batch * item * sizeof(float));
    int *idx = t2i_malloc((size_t)L->batch * sizeof(int));
    int *lab = t2i_malloc((size_t)L->batch * sizeof(int));
    while ((got = t2i_loader_next(L, x, lab, NULL, idx)) > 0) {
        for (int k = 0; k < got; k++) {
            assert_int_equal(lab[k], L->ds->labels ? L->ds->labels[idx[k]] : -1);
            if (order) order[total + k] = idx[k];
        }
        if (xs) memcpy(xs + (size_t)total * item, x, (size_t)got * item * sizeof(float));
        if (sizes) sizes[b] = got;
        total += got;
        b++;
    }
    assert_int_equal(got, 0);
    if (nb) *nb = b;
    free(x);
    free(idx);
    free(lab);
    return total;
}

static void test_loader_order(void **state) {
    (void)state;
    t2i_dataset ds;
    make_mem_dataset(&ds, 103, 1, 3, 3);
    int o0[103], o1[103], o2[103], sizes[20], nb;
    float *xs = t2i_malloc(103 * 9 * sizeof(float));

    t2i_loader L;
    t2i_loader_init(&L, &ds, 10, 1, 42);
    assert_int_equal(run_epoch(&L, o0, xs, sizes, &nb), 103);
    assert_int_equal(nb, 11);
    for (int b = 0; b < 10; b++) assert_int_equal(sizes[b], 10);
    assert_int_equal(sizes[10], 3);
    assert_int_equal(L.epoch, 1);
    int seen[103] = {0};
    for (int k = 0; k < 103; k++) {
        seen[o0[k]]++;
        /* the batch holds the item it claims */
        for (int j = 0; j < 9; j++)
            assert_float_equal(xs[k * 9 + j], ds.mem[o0[k] * 9 + j] / 127.5f - 1, 1e-6);
    }
    for (int i = 0; i < 103; i++) assert_int_equal(seen[i], 1);
    int identity = 1;
    for (int k = 0; k < 103; k++) identity &= o0[k] == k;
    assert_false(identity);

    /* epoch 1: every index once again, in another order */
    assert_int_equal(run_epoch(&L, o1, NULL, NULL, NULL), 103);
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < 103; k++) seen[o1[k]]++;
    for (int i = 0; i < 103; i++) assert_int_equal(seen[i], 1);
    assert_memory_not_equal(o0, o1, sizeof o0);
    t2i_loader_free(&L);

    /* the same seed repeats the orders; another seed does not */
    t2i_loader_init(&L, &ds, 10, 1, 42);
    assert_int_equal(run_epoch(&L, o2, NULL, NULL, NULL), 103);
    assert_memory_equal(o0, o2, sizeof o0);
    assert_int_equal(run_epoch(&L, o2, NULL, NULL, NULL), 103);
    assert_memory_equal(o1, o2, sizeof o1);
    t2i_loader_free(&L);
    t2i_loader_init(&L, &ds, 10, 1, 43);
    run_epoch(&L, o2, NULL, NULL, NULL);
    assert_memory_not_equal(o0, o2, sizeof o0);
    t2i_loader_free(&L);

    /* no shuffle: identity; drop_last: only full batches */
    t2i_loader_init(&L, &ds, 10, 0, 42);
    L.drop_last = 1;
    assert_int_equal(run_epoch(&L, o2, NULL, sizes, &nb), 100);
    assert_int_equal(nb, 10);
    for (int k = 0; k < 100; k++) assert_int_equal(o2[k], k);
    t2i_loader_free(&L);
    free(xs);
    t2i_dataset_free(&ds);
}

static void test_loader_seek(void **state) {
    (void)state;
    t2i_dataset ds;
    make_mem_dataset(&ds, 57, 3, 4, 5);
    size_t item = 3 * 4 * 5;
    t2i_loader A, B;
    t2i_loader_init(&A, &ds, 8, 1, 7);
    A.flip = 1;
    A.crop_pad = 1;
    /* A: epoch 0 whole, then epoch 1 from the start */
    run_epoch(&A, NULL, NULL, NULL, NULL);
    float *xa = t2i_malloc(57 * item * sizeof(float)), *xb = t2i_malloc(57 * item * sizeof(float));
    int oa[57], ob[57];
    assert_int_equal(run_epoch(&A, oa, xa, NULL, NULL), 57);
    /* B: jumps straight to (epoch 1, pos 21) as a resumed run would; its batches are not
     * aligned with A's, and the items must come out the same all the same */
    t2i_loader_init(&B, &ds, 8, 1, 7);
    B.flip = 1;
    B.crop_pad = 1;
    /* positions outside the data (a damaged checkpoint) are refused and change nothing */
    assert_int_equal(t2i_loader_seek(&B, 1, 58), -1);
    assert_non_null(strstr(t2i_error_msg(), "item 58) is outside the 57 items"));
    assert_int_equal(t2i_loader_seek(&B, 1, -1), -1);
    assert_int_equal(t2i_loader_seek(&B, -1, 0), -1);
    assert_int_equal(B.epoch, 0);
    assert_int_equal(t2i_loader_seek(&B, 1, 21), 0);
    assert_int_equal(run_epoch(&B, ob, xb, NULL, NULL), 57 - 21);
    assert_memory_equal(oa + 21, ob, (57 - 21) * sizeof(int));
    assert_memory_equal(xa + 21 * item, xb, (57 - 21) * item * sizeof(float));
    assert_int_equal(B.epoch, 2);
    /* and both go on identically */
    assert_int_equal(run_epoch(&A, oa, xa, NULL, NULL), 57);
    assert_int_equal(run_epoch(&B, ob, xb, NULL, NULL), 57);
    assert_memory_equal(oa, ob, sizeof oa);
    assert_memory_equal(xa, xb, 57 * item * sizeof(float));
    t2i_loader_free(&A);
    t2i_loader_free(&B);
    free(xa);
    free(xb);
    t2i_dataset_free(&ds);
}

/* Does x equal item `src` (u8 HWC... here CHW mem) cropped at (ox, oy) after padding and
 * then flipped? Built directly from the definition: out(y, x) = padded(y + oy, x + ox). */
static int matches(const float *x, const uint8_t *src, int C, int H, int W, int pad, int oy, int ox,
                   int flip) {
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                int sx = flip ? W - 1 - xx : xx; /* flip after crop */
                int py = y + oy - pad, px = sx + ox - pad;
                float want = py < 0 || py >= H || px < 0 || px >= W
                                 ? -1.0f
                                 : src[(size_t)c * H * W + py * W + px] / 127.5f - 1.0f;
                if (fabsf(x[(size_t)c * H * W + y * W + xx] - want) > 1e-6f) return 0;
            }
    return 1;
}

static void test_loader_augment(void **state) {
    (void)state;
    const int n = 64, C = 3, H = 6, W = 7, pad = 2;
    t2i_dataset ds;
    make_mem_dataset(&ds, n, C, H, W);
    /* make_mem_dataset writes bytes in mem order, which this dataset reads as HWC; build
     * the CHW view the matcher uses */
    size_t item = (size_t)C * H * W;
    uint8_t *chw = t2i_malloc(n * item);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++)
                chw[i * item + (size_t)c * H * W + p] = ds.mem[i * item + (size_t)p * C + c];

    /* the same items as PNG files, so that the loader decodes them in parallel */
    char *dir = tu_tmpdir();
    for (int i = 0; i < n; i++) {
        char *p = t2i_asprintf("%s/%03d.png", dir, i);
        assert_int_equal(t2i_image_save_png(p, ds.mem + i * item, W, H, C), 0);
        free(p);
    }
    t2i_dataset files;
    if (t2i_dataset_image_folder(&files, dir, C, H, W) != 0) fail_msg("%s", t2i_error_msg());
    assert_int_equal(files.n, n);

    float *x1 = t2i_malloc(n * item * sizeof(float)), *x2 = t2i_malloc(n * item * sizeof(float));
    int o1[64], o2[64];
    int threads = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run == 0 ? 1 : 2);
        t2i_loader L;
        t2i_loader_init(&L, &files, 16, 1, 2024);
        L.flip = 1;
        L.crop_pad = pad;
        assert_int_equal(t2i_loader_seek(&L, 3, 0), 0);
        assert_int_equal(run_epoch(&L, run == 0 ? o1 : o2, run == 0 ? x1 : x2, NULL, NULL), n);
        t2i_loader_free(&L);
    }
    omp_set_num_threads(threads);
    /* the thread count changes nothing */
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(x1, x2, n * item * sizeof(float));
    /* and the in-memory path (no threads) gives the same batches as the files */
    t2i_loader M;
    t2i_loader_init(&M, &ds, 16, 1, 2024);
    M.flip = 1;
    M.crop_pad = pad;
    assert_int_equal(t2i_loader_seek(&M, 3, 0), 0);
    assert_int_equal(run_epoch(&M, o2, x2, NULL, NULL), n);
    t2i_loader_free(&M);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(x1, x2, n * item * sizeof(float));
    t2i_dataset_free(&files);
    tu_rmtree(dir);
    free(dir);

    /* every item is its source under one of the allowed transforms; both flips and
     * several offsets occur */
    int flips = 0, offsets[5][5] = {{0}}, plain = 0;
    for (int k = 0; k < n; k++) {
        int found = 0;
        for (int f = 0; f < 2 && !found; f++)
            for (int oy = 0; oy <= 2 * pad && !found; oy++)
                for (int ox = 0; ox <= 2 * pad && !found; ox++)
                    if (matches(x1 + k * item, chw + (size_t)o1[k] * item, C, H, W, pad, oy, ox, f)) {
                        found = 1;
                        flips += f;
                        offsets[oy][ox]++;
                        plain += !f && oy == pad && ox == pad;
                    }
        if (!found) fail_msg("batch item %d (source %d) is no allowed transform of its source", k, o1[k]);
    }
    assert_true(flips > 10 && flips < n - 10);
    int distinct = 0;
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++) distinct += offsets[y][x] > 0;
    assert_true(distinct >= 10);
    assert_true(plain < n / 4);

    /* another epoch draws other augmentations for the same items */
    t2i_loader L;
    t2i_loader_init(&L, &ds, 16, 0, 2024);
    L.flip = 1;
    L.crop_pad = pad;
    run_epoch(&L, NULL, x1, NULL, NULL);
    run_epoch(&L, NULL, x2, NULL, NULL);
    assert_memory_not_equal(x1, x2, n * item * sizeof(float));
    t2i_loader_free(&L);
    free(x1);
    free(x2);
    free(chw);
    t2i_dataset_free(&ds);
}

/* Random erasing: its draws come after crop and flip, so an erasing loader gives the
 * batches of one without erasing except for one black rectangle per erased item, of 2-33%
 * of the area (rounding aside) and of varied shapes; erase = p erases about p of them. */
static void test_loader_erase(void **state) {
    (void)state;
    const int n = 200, C = 3, H = 20, W = 20;
    t2i_dataset ds;
    make_mem_dataset(&ds, n, C, H, W); /* values 1..250: never black */
    size_t item = (size_t)C * H * W, plane = (size_t)H * W;
    float *xa = t2i_malloc(n * item * sizeof(float)), *xb = t2i_malloc(n * item * sizeof(float));
    for (int crop = 0; crop < 2; crop++) {
        float p = crop ? 0.5f : 1.0f;
        t2i_loader A, B;
        t2i_loader_init(&A, &ds, 32, 1, 99);
        t2i_loader_init(&B, &ds, 32, 1, 99);
        A.flip = B.flip = crop, A.crop_pad = B.crop_pad = crop ? 2 : 0;
        B.erase = p;
        assert_int_equal(run_epoch(&A, NULL, xa, NULL, NULL), n);
        assert_int_equal(run_epoch(&B, NULL, xb, NULL, NULL), n);
        int erased = 0, tall = 0, wide = 0;
        for (int k = 0; k < n; k++) {
            const float *a = xa + k * item, *b = xb + k * item;
            int y0 = H, y1 = -1, x0 = W, x1 = -1;
            for (size_t i = 0; i < item; i++) {
                if (a[i] == b[i]) continue;
                assert_true(b[i] == -1.0f);
                int y = (int)(i % plane) / W, x = (int)(i % plane) % W;
                y0 = T2I_MIN(y0, y), y1 = T2I_MAX(y1, y), x0 = T2I_MIN(x0, x), x1 = T2I_MAX(x1, x);
            }
            if (y1 < 0) continue;
            erased++;
            int h = y1 - y0 + 1, w = x1 - x0 + 1;
            for (int c = 0; c < C; c++) /* one solid rectangle in every channel */
                for (int y = y0; y <= y1; y++)
                    for (int x = x0; x <= x1; x++) assert_true(b[(size_t)c * plane + y * W + x] == -1.0f);
            assert_true(h * w <= 0.33 * H * W + H + W);
            if (!crop) assert_true(h * w >= 0.02 * H * W - 1 - 2 * sqrt(0.02 * H * W * 3.3));
            tall += h > 2 * w, wide += w > 2 * h;
        }
        if (!crop) assert_int_equal(erased, n);
        else assert_true(erased > n / 4 && erased < 3 * n / 4);
        assert_true(tall > 0 && wide > 0);
        t2i_loader_free(&A);
        t2i_loader_free(&B);
    }
    free(xa);
    free(xb);
    t2i_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader_order),
        cmocka_unit_test(test_loader_seek),
        cmocka_unit_test(test_loader_augment),
        cmocka_unit_test(test_loader_erase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
