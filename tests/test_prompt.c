/* test_prompt.c - image prompts of `t2i generate` (generate/prompt.h, gen_call.image/keep
 * of generate/pipeline.h) on the shipped models.
 *
 * test_keep_lines: counts, fractions (rounded), the union of rows and columns, refusals.
 * test_mask_covers: "covers" = at least half of a cell's pixels white, on the image's
 * centre square: a cell-aligned square redraws exactly its cell, 8 of 16 pixels redraw,
 * 7 do not, white outside the crop counts nowhere; a mask of another size and an image
 * smaller than the VQ's input are refused naming the file.
 * test_pipeline_prompts: with the shipped transformer and VQ, the kept cells of every
 * result equal the image's reconstruction pixel for pixel (and the redrawn ones differ
 * somewhere); an all-black mask gives the reconstruction itself; an all-white mask (with
 * refinement passes) gives exactly the unprompted results of the same seed; variations
 * run and differ from the reconstruction; with blend the kept cells next to a redrawn one
 * move and those beyond the decoder's reach do not.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "image.h"
#include "pipeline.h"
#include "prompt.h"
#include "testutil.h"

static void test_keep_lines(void **state) {
    (void)state;
    uint8_t k[64];
    assert_int_equal(gen_prompt_keep_lines(0.5f, 0.0f, 8, k), 0);
    for (int i = 0; i < 64; i++) assert_int_equal(k[i], i / 8 < 4);
    assert_int_equal(gen_prompt_keep_lines(0.3f, 2.0f, 8, k), 0); /* 2.4 -> 2 rows; 2 columns */
    for (int i = 0; i < 64; i++) assert_int_equal(k[i], i / 8 < 2 || i % 8 < 2);
    assert_int_equal(gen_prompt_keep_lines(8.0f, 0.0f, 8, k), 0);
    for (int i = 0; i < 64; i++) assert_int_equal(k[i], 1);
    assert_int_equal(gen_prompt_keep_lines(9.0f, 0.0f, 8, k), -1);
    assert_non_null(strstr(t2i_error_msg(), "--keep-rows"));
    assert_int_equal(gen_prompt_keep_lines(0.0f, 1.5f, 8, k), -1);
    assert_non_null(strstr(t2i_error_msg(), "--keep-cols"));
    assert_int_equal(gen_prompt_keep_lines(-1.0f, 0.0f, 8, k), -1);
}

static char *save_gray(const char *dir, const char *name, const uint8_t *px, int w, int h) {
    char *p = t2i_asprintf("%s/%s", dir, name);
    assert_int_equal(t2i_image_save_png(p, px, w, h, 1), 0);
    return p;
}

static void test_mask_covers(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    enum { W = 40, H = 32 }; /* centre square: x 4..35 */
    uint8_t px[W * H], keep[64];
    /* cell (row 2, col 3) exactly: x 4+12..4+15, y 8..11; white left of the crop too */
    memset(px, 0, sizeof px);
    for (int y = 8; y < 12; y++)
        for (int x = 16; x < 20; x++) px[y * W + x] = 255;
    for (int y = 0; y < H; y++) px[y * W + 1] = 255;
    char *p = save_gray(dir, "m1.png", px, W, H);
    assert_int_equal(gen_prompt_mask(p, W, H, 8, keep), 0);
    for (int i = 0; i < 64; i++) assert_int_equal(keep[i], i != 2 * 8 + 3);
    free(p);
    /* 8 of cell (0, 0)'s 16 pixels redraw it; 7 of cell (0, 1)'s do not; gray 127 is black */
    memset(px, 0, sizeof px);
    for (int i = 0; i < 8; i++) px[(i / 4) * W + 4 + i % 4] = 200;
    for (int i = 0; i < 7; i++) px[(i / 4) * W + 8 + i % 4] = 128;
    for (int i = 0; i < 16; i++) px[(4 + i / 4) * W + 4 + i % 4] = 127;
    p = save_gray(dir, "m2.png", px, W, H);
    assert_int_equal(gen_prompt_mask(p, W, H, 8, keep), 0);
    for (int i = 0; i < 64; i++) assert_int_equal(keep[i], i != 0);
    /* another size */
    assert_int_equal(gen_prompt_mask(p, 32, 32, 8, keep), -1);
    assert_non_null(strstr(t2i_error_msg(), "m2.png"));
    assert_non_null(strstr(t2i_error_msg(), "40x32"));
    /* an image smaller than the VQ's input; a file that is no image */
    float img[3 * 32 * 32];
    int w, h;
    assert_int_equal(gen_prompt_image(p, 3, 48, img, &w, &h), -1);
    assert_non_null(strstr(t2i_error_msg(), "m2.png"));
    assert_non_null(strstr(t2i_error_msg(), "48x48"));
    assert_int_equal(gen_prompt_image(p, 3, 32, img, &w, &h), 0);
    assert_int_equal(w, W);
    free(p);
    p = t2i_asprintf("%s/no.png", dir);
    assert_int_equal(t2i_write_file_atomic(p, "not a png", 9), 0);
    assert_int_equal(gen_prompt_image(p, 3, 32, img, &w, &h), -1);
    assert_non_null(strstr(t2i_error_msg(), "no.png"));
    free(p);
    tu_rmtree(dir);
    free(dir);
}

static gen_pipeline *load_shipped(void) {
    gen_pipeline_cfg c;
    gen_pipeline_cfg_defaults(&c);
    c.generator = "dalle";
    c.batch = 4;
    gen_pipeline *p = gen_pipeline_load(&c);
    if (!p) fail_msg("loading the shipped models: %s", t2i_error_msg());
    return p;
}

static int blend_next; /* the next run's gen_call.blend */

static void run(gen_pipeline *p, const float *img, const uint8_t *keep, int passes, float keep_prob, gen_ranked *r) {
    gen_call k;
    gen_call_defaults(p, &k);
    k.blend = blend_next;
    k.candidates = 6, k.top = 6, k.seed = 7, k.quiet = 1, k.upscale = 0;
    k.image = img, k.keep = keep;
    k.sample.passes = passes, k.sample.keep_prob = keep_prob;
    if (gen_pipeline_run(p, "a red sneaker", &k, r) != 0) fail_msg("run: %s", t2i_error_msg());
    assert_int_equal(r->n, 6);
}

static void test_pipeline_prompts(void **state) {
    (void)state;
    gen_pipeline *p = load_shipped();
    int C, R, g;
    assert_int_equal(gen_pipeline_prompt_shape(p, &C, &R, &g), 0);
    assert_int_equal(R % g, 0);
    size_t isz = (size_t)C * R * R;
    int cell = R / g;
    /* a blue bag-like block on white */
    float *img = t2i_malloc(isz * sizeof(float)), *rec = t2i_malloc(isz * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int y = 0; y < R; y++)
            for (int x = 0; x < R; x++) {
                int in = y > 6 && y < 28 && x > 5 && x < 27;
                img[(size_t)c * R * R + y * R + x] = in ? (c == 2 ? 0.6f : -0.7f) : 1.0f;
            }
    assert_int_equal(gen_pipeline_reconstruct(p, img, rec, NULL), 0);
    uint8_t *keep = t2i_malloc((size_t)g * g);
    assert_int_equal(gen_prompt_keep_lines(0.5f, 0.0f, g, keep), 0);
    gen_ranked r;
    run(p, img, keep, 0, 0.0f, &r);
    int redrawn_differs = 0;
    for (int i = 0; i < r.n; i++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < R; y++)
                for (int x = 0; x < R; x++) {
                    size_t at = (size_t)c * R * R + (size_t)y * R + x;
                    if (keep[(y / cell) * g + x / cell]) {
                        if (r.images[i][at] != rec[at]) fail_msg("result %d: kept pixel (%d,%d,%d) differs", i, c, y, x);
                    } else {
                        redrawn_differs |= r.images[i][at] != rec[at];
                    }
                }
    assert_true(redrawn_differs);
    gen_ranked_free(&r);
    /* all black: the reconstruction itself */
    memset(keep, 1, (size_t)g * g);
    run(p, img, keep, 2, 0.0f, &r);
    for (int i = 0; i < r.n; i++) assert_memory_equal(r.images[i], rec, isz * sizeof(float));
    gen_ranked_free(&r);
    /* all white (with refinement passes): the unprompted results of the same seed */
    memset(keep, 0, (size_t)g * g);
    gen_ranked u;
    run(p, img, keep, 2, 0.0f, &r);
    run(p, NULL, NULL, 0, 0.0f, &u);
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(r.res[i].candidate, u.res[i].candidate);
        assert_memory_equal(r.images[i], u.images[i], isz * sizeof(float));
    }
    gen_ranked_free(&r);
    /* an image prompt without kept cells or a keep probability is refused */
    gen_call k;
    gen_call_defaults(p, &k);
    k.candidates = 2, k.top = 1, k.quiet = 1, k.image = img;
    assert_int_equal(gen_pipeline_run(p, "a red sneaker", &k, &r), -1);
    /* variations: neither the reconstruction nor the unprompted images */
    run(p, img, NULL, 0, 0.5f, &r);
    for (int i = 0; i < r.n; i++) {
        assert_memory_not_equal(r.images[i], rec, isz * sizeof(float));
        assert_memory_not_equal(r.images[i], u.images[i], isz * sizeof(float));
    }
    gen_ranked_free(&r);
    /* blend: only the bottom-right cell redrawn; the kept cells are decoded with it, so
     * the ones next to it move, while those five or more cells away (beyond the shipped
     * decoder's reach: a 3x3 conv and two residual 3x3 convs on the code grid, one cell
     * each, then two 4x4 stride-2 transposed convs, 0.75 cell) keep the reconstruction's
     * pixels (to rounding: the decoder runs on another batch); without blend every kept
     * pixel is the reconstruction's exactly */
    memset(keep, 1, (size_t)g * g);
    keep[g * g - 1] = 0;
    blend_next = 1;
    run(p, img, keep, 0, 0.0f, &r);
    blend_next = 0;
    int near_moved = 0;
    for (int i = 0; i < r.n; i++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < R; y++)
                for (int x = 0; x < R; x++) {
                    size_t at = (size_t)c * R * R + (size_t)y * R + x;
                    int cy = y / cell, cx = x / cell, far = cy < g - 5 || cx < g - 5;
                    if (far && fabsf(r.images[i][at] - rec[at]) > 1e-3f)
                        fail_msg("blend: result %d pixel (%d,%d,%d) five cells away moved by %g", i, c, y, x,
                                 (double)(r.images[i][at] - rec[at]));
                    if (!far && keep[cy * g + cx]) near_moved |= fabsf(r.images[i][at] - rec[at]) > 1e-2f;
                }
    assert_true(near_moved);
    gen_ranked_free(&r);
    /* and the pipeline forgets the prompt: an unprompted run is unprompted again */
    run(p, NULL, NULL, 0, 0.0f, &r);
    for (int i = 0; i < r.n; i++) assert_memory_equal(r.images[i], u.images[i], isz * sizeof(float));
    gen_ranked_free(&r);
    gen_ranked_free(&u);
    free(img), free(rec), free(keep);
    gen_pipeline_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_lines),
        cmocka_unit_test(test_mask_covers),
        cmocka_unit_test(test_pipeline_prompts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
