/* sr_upscale.c - tiled, memory-bounded inference of SR generators, and `t2i sr upscale`.
 *
 * Each tile runs through the core's inference interpreter (nn/infer.h) with its fast
 * kernels: a few reusable buffers instead of every layer's output, convolutions on bands
 * of output rows per thread (3x3 by Winograd F(2x2, 3x3), others by im2col of the band,
 * the last 64 -> 3 layer by a direct AVX2 + FMA kernel when the CPU has one), each
 * convolution + PixelShuffle fused. For a tile of T + 2*overlap LR pixels the largest
 * buffer is width * (scale * (T + 2 * overlap))^2 floats (115 MB for b4 x4 with T = 128
 * and overlap 20), planned once per tile size and reused for every tile.
 *
 * Tiles: the LR image is cut into tile x tile cores; each core is run with up to
 * `overlap` real neighbouring pixels on each side (fewer at the image border, where the
 * network's own zero padding applies, as in the untiled run), and only the core's
 * output is kept (centre crop, no blending). With overlap >= sr_receptive_radius the
 * kept pixels never see the tile's artificial edges, so tiled == untiled up to the
 * rounding of differently blocked GEMMs.
 */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "image.h"
#include "infer.h"
#include "progress.h"
#include "sr.h"

static inline uint8_t to_u8(float x) {
    float v = (x + 1.0f) * 127.5f;
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

/* One row of tiles (input rows ty .. ty+tile-1). Input from floats (3, h, w) or 8-bit
 * (h, w, 3); output to floats (3, h*s, w*s) or 8-bit rows of w*s*3 bytes, where row r of
 * the output lands at row r - row0 of yf/yu (row0 = 0: the whole image; row0 = ty*s: a
 * band buffer). */
static void run_tile_row(const nn_seq *g, nn_infer *ws, int s, const float *xf, const uint8_t *xu, int h, int w, int ty,
                         int tile, int overlap, float *yf, uint8_t *yu, int row0, t2i_progress *prog, long *done) {
    size_t oplane = (size_t)h * s * w * s;
    for (int tx = 0; tx < w; tx += tile) {
        int th = T2I_MIN(tile, h - ty), tw = T2I_MIN(tile, w - tx);
        int y0 = T2I_MAX(0, ty - overlap), y1 = T2I_MIN(h, ty + th + overlap);
        int x0 = T2I_MAX(0, tx - overlap), x1 = T2I_MIN(w, tx + tw + overlap);
        int ih = y1 - y0, iw = x1 - x0;
        float *in = nn_infer_input(ws, g, 1, ih, iw);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < ih; y++)
                for (int x = 0; x < iw; x++)
                    in[((size_t)c * ih + y) * iw + x] =
                        xf ? xf[((size_t)c * h + y0 + y) * w + x0 + x]
                           : (float)xu[(((size_t)(y0 + y)) * w + x0 + x) * 3 + c] / 127.5f - 1.0f;
        const float *out = nn_infer_run(ws, g, in, NULL, 1, ih, iw);
        int OW = iw * s, oy = (ty - y0) * s, ox = (tx - x0) * s;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < th * s; y++) {
                const float *src = out + ((size_t)c * ih * s + oy + y) * OW + ox;
                size_t drow = (size_t)(ty * s + y - row0) * w * s + (size_t)tx * s;
                if (yf)
                    memcpy(yf + c * oplane + drow, src, (size_t)tw * s * sizeof(float));
                else
                    for (int x = 0; x < tw * s; x++) yu[(drow + x) * 3 + c] = to_u8(src[x]);
            }
        ++*done;
        if (prog) t2i_progress_update(prog, *done, "tile %dx%d", iw, ih);
    }
}

/* The whole image into yf (floats) or yu (8-bit), in the workspace ws. */
static void run_tiles_in(const nn_seq *g, nn_infer *ws, int s, const float *xf, const uint8_t *xu, int h, int w,
                         float *yf, uint8_t *yu, int tile, int overlap) {
    if (tile <= 0) tile = T2I_MAX(h, w);
    if (overlap < 0) overlap = sr_receptive_radius(g);
    long done = 0;
    for (int ty = 0; ty < h; ty += tile) run_tile_row(g, ws, s, xf, xu, h, w, ty, tile, overlap, yf, yu, 0, NULL, &done);
}

/* The same in a workspace of its own. */
static void run_tiles(const nn_seq *g, int s, const float *xf, const uint8_t *xu, int h, int w, float *yf, uint8_t *yu,
                      int tile, int overlap) {
    nn_infer ws;
    nn_infer_init(&ws, NN_INFER_FAST);
    run_tiles_in(g, &ws, s, xf, xu, h, w, yf, yu, tile, overlap);
    nn_infer_free(&ws);
}

void sr_upscale_image(const nn_seq *g, int scale, const float *x, int h, int w, float *y, int tile, int overlap) {
    T2I_ASSERT(g && x && y && h > 0 && w > 0 && (scale == 2 || scale == 4));
    run_tiles(g, scale, x, NULL, h, w, y, NULL, tile, overlap);
}

/* Images up to this many LR pixels are run one per thread (each thread its own workspace,
 * planned for one thread); larger ones one after the other, each with every thread on its
 * bands. A 32x32 image is a single band, so banding cannot use a second thread: on the
 * AVX-512 EPYC `t2i sr upscale` of one took 0.3 s at 2 threads and 0.1 s at one (the extra
 * thread only contends in the small GEMMs), and `t2i generate --upscale` of 32 of them
 * went from 14.8-15.4 s to 8.1-9.5 s with one image per thread. */
#define SR_BATCH_PARALLEL_PIXELS (128 * 128)

static void upscale_one(const sr_model *m, nn_infer *ws, const float *x, int h, int w, float *y) {
    size_t out = (size_t)3 * h * w * m->cfg.scale * m->cfg.scale;
    run_tiles_in(&m->ema, ws, m->cfg.scale, x, NULL, h, w, y, NULL, SR_TILE_DEFAULT, -1);
    for (size_t k = 0; k < out; k++) y[k] = y[k] < -1.0f ? -1.0f : y[k] > 1.0f ? 1.0f : y[k];
}

void sr_upscale_batch(const sr_model *m, const float *x, int N, int h, int w, float *y) {
    int s = m->cfg.scale;
    size_t in = (size_t)3 * h * w, out = in * s * s;
    int nt = T2I_MIN(t2i_get_threads(), N);
    if ((size_t)h * w > SR_BATCH_PARALLEL_PIXELS) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        if (nt > 1) omp_set_num_threads(1); /* this thread's workspace plans for one thread */
#endif
        nn_infer ws;
        nn_infer_init(&ws, NN_INFER_FAST);
#pragma omp for schedule(dynamic, 1)
        for (int n = 0; n < N; n++) upscale_one(m, &ws, x + n * in, h, w, y + n * out);
        nn_infer_free(&ws);
    }
}

void sr_upscale_u8(const sr_model *m, const t2i_image *in, t2i_image *out, int tile, int overlap) {
    T2I_ASSERT(in->c == 3);
    int s = m->cfg.scale;
    t2i_image_alloc(out, in->w * s, in->h * s, 3);
    run_tiles(&m->ema, s, NULL, in->px, in->h, in->w, NULL, out->px, tile, overlap);
}

int sr_upscale_png(const sr_model *m, const t2i_image *in, const char *path, int tile, int overlap, int progress) {
    T2I_ASSERT(in->c == 3);
    int s = m->cfg.scale, h = in->h, w = in->w;
    if (tile <= 0) tile = T2I_MAX(h, w);
    if (overlap < 0) overlap = sr_receptive_radius(&m->ema);
    t2i_png_writer *pw = t2i_png_writer_open(path, w * s, h * s, 3);
    if (!pw) return -1;
    /* one row of tiles at a time: output memory is tile * s rows, not the image */
    uint8_t *band = t2i_malloc((size_t)T2I_MIN(tile, h) * s * w * s * 3);
    nn_infer ws;
    nn_infer_init(&ws, NN_INFER_FAST);
    t2i_progress prog;
    long done = 0, ntiles = (long)((w + tile - 1) / tile) * ((h + tile - 1) / tile);
    if (progress) t2i_progress_start(&prog, "upscale", 0, ntiles);
    int rc = 0;
    for (int ty = 0; ty < h && rc == 0; ty += tile) {
        run_tile_row(&m->ema, &ws, s, NULL, in->px, h, w, ty, tile, overlap, NULL, band, ty * s, progress ? &prog : NULL,
                     &done);
        rc = t2i_png_writer_rows(pw, band, T2I_MIN(tile, h - ty) * s);
    }
    if (progress) t2i_progress_end(&prog, done, NULL);
    nn_infer_free(&ws);
    free(band);
    if (rc != 0) {
        t2i_png_writer_close(pw, 0);
        return -1;
    }
    return t2i_png_writer_close(pw, 1);
}

int sr_cmd_upscale(int argc, char **argv) {
    const char *ckpt = NULL;
    int tile = SR_TILE_DEFAULT, overlap = -1, threads = 0, quiet = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "SR checkpoint (a run's checkpoint.safetensors or l1.safetensors)"},
        {"--tile", T2I_INT, &tile, "tile size in input pixels (0 = the whole image at once)"},
        {"--overlap", T2I_INT, &overlap, "input pixels of context around each tile (-1 = the receptive radius: exact)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--quiet", T2I_BOOL, &quiet, "no progress line"},
    };
    t2i_cmd cmd = {"t2i sr upscale",
                   "Upscale an image with a trained SR model (its EMA weights).",
                   "--ckpt C [options] IN OUT.png",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Any image size: the input is processed in tiles of --tile pixels, each with --overlap\n"
                   "pixels of context, so memory stays bounded; with the default overlap the result equals\n"
                   "the untiled one. Gray or alpha inputs are converted to RGB (alpha composited on black)."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!ckpt) return t2i_fail("sr upscale: --ckpt is required"), 2;
    if (cmd.npos != 2) return t2i_fail("sr upscale: expected IN and OUT, got %d arguments", cmd.npos), 2;
    if (t2i_check_range_i("--tile", tile, 0, 4096) || t2i_check_range_i("--overlap", overlap, -1, 256) ||
        t2i_check_output_file("OUT", cmd.pos[1], ".png") != 0)
        return 2;
    t2i_set_threads(threads);
    sr_model m;
    if (sr_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    int radius = sr_receptive_radius(&m.ema);
    if (overlap >= 0 && overlap < radius && tile > 0)
        fprintf(stderr, "t2i: note: --overlap %d is below the receptive radius %d: tile seams may differ slightly\n",
                overlap, radius);
    t2i_image in;
    if (t2i_image_load(&in, cmd.pos[0], 3) != 0) {
        sr_model_free(&m);
        return t2i_fail_err();
    }
    if ((double)in.w * in.h * m.cfg.scale * m.cfg.scale > (double)T2I_IMAGE_MAX_PIXELS) {
        t2i_fail("%s: %dx%d upscaled x%d would be %dx%d, more pixels than a PNG t2i writes (%d)", cmd.pos[0], in.w, in.h,
                 m.cfg.scale, in.w * m.cfg.scale, in.h * m.cfg.scale, (int)T2I_IMAGE_MAX_PIXELS);
        t2i_image_free(&in);
        sr_model_free(&m);
        return 1;
    }
    double t0 = t2i_now();
    int rc = sr_upscale_png(&m, &in, cmd.pos[1], tile, overlap, !quiet);
    double dt = t2i_now() - t0;
    if (rc != 0)
        t2i_fail_err();
    else if (!quiet)
        printf("sr upscale: %s %dx%d -> %s %dx%d (x%d) in %.1f s, peak RSS %.0f MB\n", cmd.pos[0], in.w, in.h,
               cmd.pos[1], in.w * m.cfg.scale, in.h * m.cfg.scale, m.cfg.scale, dt, t2i_peak_rss_mb());
    t2i_image_free(&in);
    sr_model_free(&m);
    return rc ? 1 : 0;
}
