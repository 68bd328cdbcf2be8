/* sr_eval.c - `t2i sr eval` and `t2i sr compare`.
 *
 * Metrics (nn/image_quality.h) work on 8-bit images, i.e. on what a user would save:
 * model outputs are rounded as t2i_chw_to_u8 does, bicubic baselines come from the 8-bit
 * resize (Pillow's Image.resize BICUBIC, which is what someone upscaling the LR file would
 * get). SSIM: separable Gaussian (11 taps, sigma 1.5, normalised to sum 1) over the valid
 * region only (no padding), in double.
 *
 * Evaluation protocol (`t2i sr eval`): for each selected photo (the held-out ones by
 * default), HR = its centre 1024 x 1024 pixels (--crop N; --crop 0: the whole photo),
 * trimmed on the right and bottom to a multiple of the scale; LR = sr_make_lr(HR) (bicubic antialiased, 8-bit);
 * SR = the model's EMA generator on LR, tiled (exact); bicubic = LR upscaled with
 * 8-bit bicubic. PSNR RGB, PSNR Y and SSIM Y with `scale` border pixels cropped. The
 * mean over photos is reported (per-photo lines, then one JSON line); a photo whose region
 * bicubic (or the model) reproduces exactly (a flat crop: infinite PSNR) is left out, with a note.
 *
 * `t2i sr compare` makes side-by-side crops: bicubic | each model | original for an HR
 * box of the photo. LR is made from the whole (trimmed) photo exactly as in eval, and
 * each model runs on the LR region around the box plus its receptive radius, so a panel
 * equals the same box of the whole-image result. Panel PSNRs (RGB, no border cropped:
 * the box is interior) are printed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "image.h"
#include "image_quality.h"
#include "sr.h"
#include "sr_eval.h"

/* ---------------------------------------------------------------- shared helpers */

/* HR = img trimmed to a multiple of s (right/bottom); LR = sr_make_lr(HR) as 8-bit. */
static void make_pair(const t2i_image *img, int s, t2i_image *hr, t2i_image *lr) {
    int W = img->w - img->w % s, H = img->h - img->h % s;
    t2i_image_alloc(hr, W, H, 3);
    for (int y = 0; y < H; y++) memcpy(hr->px + (size_t)y * W * 3, img->px + (size_t)y * img->w * 3, (size_t)W * 3);
    float *hf = t2i_malloc((size_t)3 * W * H * sizeof(float));
    float *lf = t2i_malloc((size_t)3 * (W / s) * (H / s) * sizeof(float));
    t2i_image_to_chw(hf, hr);
    sr_make_lr(lf, hf, H, W, s);
    t2i_image_alloc(lr, W / s, H / s, 3);
    t2i_chw_to_u8(lr->px, lf, 3, H / s, W / s);
    free(hf), free(lf);
}

/* ---------------------------------------------------------------- eval */

int sr_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *split = "heldout";
    t2i_strs data = {0}, packages = {0}, hold_packages = {0}, hold_dirs = {0};
    int scale = 0, crop = 1024, tile = 256, threads = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "SR checkpoint"},
        {"--data", T2I_STRS, &data,
         "folders of photos (recursive) or image files, repeatable or ':'-separated (default "
         "/usr/share/backgrounds/mate/nature; held-out rule: sorted index i % 6 == 5 per source)"},
        {"--package", T2I_STRS, &packages, "Debian packages whose image files (dpkg -L) are photos; repeatable"},
        {"--holdout-package", T2I_STRS, &hold_packages,
         "packages whose every image is held out (as sr train's flag: the held-out split)"},
        {"--holdout", T2I_STRS, &hold_dirs, "folders whose every image is held out"},
        {"--scale", T2I_INT, &scale, "expected scale of the model (0 = the model's)"},
        {"--split", T2I_STR, &split, "heldout, train or all"},
        {"--crop", T2I_INT, &crop, "evaluate the centre N x N HR pixels of each photo (0 = the whole photo; slower)"},
        {"--tile", T2I_INT, &tile, "tile size for the model (LR pixels; exact whatever the size)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i sr eval",
                   "PSNR (RGB and Y) and SSIM (Y) of an SR model and of bicubic upscaling.",
                   "--ckpt C [options]",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "For each photo: HR = the photo (trimmed to a multiple of the scale; --crop N: its centre\n"
                   "N x N crop), LR = HR downscaled with antialiased bicubic and rounded to 8 bits; the model\n"
                   "(its EMA weights) and 8-bit bicubic upscale LR; metrics against HR with `scale` border\n"
                   "pixels cropped: PSNR over RGB, PSNR over Y (BT.601: 16 + 65.481 R + 128.553 G + 24.966 B,\n"
                   "RGB in [0, 1]), SSIM on Y (Gaussian window 11, sigma 1.5). Default: the held-out photos\n"
                   "(GreenMeadow.jpg and YellowFlower.jpg of the default folder), their centre 1024 x 1024\n"
                   "pixels (LR 256 x 256 at x4: seconds); --crop 0 evaluates the whole photos (LR = the whole\n"
                   "photo at 1/4 resolution: about 2.6 times longer). A model held out by package:\n"
                   "  t2i sr eval --ckpt C --holdout-package lomiri-wallpapers --holdout-package lomiri-wallpapers-20.04\n"
                   "(give the same data flags as sr train for --split train/all). Images too small to\n"
                   "evaluate are skipped with a note; the same file listed twice counts once."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!ckpt) return t2i_fail("sr eval: --ckpt is required"), 2;
    if (cmd.npos) return t2i_fail("sr eval: unexpected argument '%s'", cmd.pos[0]), 2;
    int want = strcmp(split, "heldout") == 0 ? 1
               : strcmp(split, "train") == 0 ? 0
               : strcmp(split, "all") == 0   ? -1
                                             : -2;
    if (want == -2) return t2i_fail("--split must be heldout, train or all, got '%s'", split), 2;
    if (scale != 0 && scale != 2 && scale != 4) return t2i_fail("--scale must be 2 or 4, got %d", scale), 2;
    if (t2i_check_range_i("--crop", crop, 0, 1 << 16) || t2i_check_range_i("--tile", tile, 0, 4096)) return 2;
    t2i_set_threads(threads);

    sr_model m;
    if (sr_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    int s = m.cfg.scale, rc = 1;
    if (scale && scale != s) {
        t2i_fail("%s: the model upscales x%d, --scale asked for x%d", ckpt, s, scale);
        sr_model_free(&m);
        return 1;
    }
    /* the flags' values joined with ':' (sr_sources takes colon-separated lists) */
    t2i_strs *lists[4] = {&data, &packages, &hold_packages, &hold_dirs};
    char *joined[4];
    for (int k = 0; k < 4; k++) {
        joined[k] = t2i_strdup("");
        for (int i = 0; i < lists[k]->n; i++) {
            char *j = t2i_asprintf("%s%s%s", joined[k], i ? ":" : "", lists[k]->v[i]);
            free(joined[k]);
            joined[k] = j;
        }
    }
    const char *where = data.n == 1 && !packages.n && !hold_packages.n && !hold_dirs.n ? data.v[0] : "the photos";
    if (!data.n && !packages.n && !hold_packages.n && !hold_dirs.n) {
        free(joined[0]);
        joined[0] = t2i_strdup("/usr/share/backgrounds/mate/nature");
        where = joined[0];
    }
    sr_sources src = {joined[0], joined[1], joined[2], joined[3]};
    sr_filelist fl;
    int lrc = sr_list_sources(&fl, &src);
    if (lrc != 0) {
        for (int k = 0; k < 4; k++) free(joined[k]);
        sr_model_free(&m);
        return t2i_fail_err();
    }
    int count = 0;
    for (int i = 0; i < fl.n; i++) count += want < 0 || fl.heldout[i] == want;
    if (count == 0) {
        t2i_fail("%s: no %s images (%d files; held out are sorted indices 5, 11, ...: use --split all)", where, split,
                 fl.n);
        goto out;
    }
    double sum[6] = {0};
    int done = 0, small = 0, flat = 0;
    double t0 = t2i_now();
    printf("%-28s %9s  %8s %8s %7s   %8s %8s %7s\n", "image (HR size)", "", "PSNR", "PSNR-Y", "SSIM-Y", "PSNR",
           "PSNR-Y", "SSIM-Y");
    printf("%-28s %9s  %-25s   %-25s\n", "", "", "------------ model", "---------- bicubic");
    for (int i = 0; i < fl.n; i++) {
        if (!(want < 0 || fl.heldout[i] == want)) continue;
        t2i_image img, c, hr, lr, sr, bic;
        if (t2i_image_load(&img, fl.files[i], 3) != 0) {
            t2i_fail_err();
            goto out;
        }
        if (crop > 0 && (img.w > crop || img.h > crop)) {
            t2i_image_center_crop(&c, &img, T2I_MIN(crop, img.w), T2I_MIN(crop, img.h));
            t2i_image_free(&img);
            img = c;
        }
        if (img.w < 3 * s + 11 || img.h < 3 * s + 11) {
            fprintf(stderr, "t2i: note: %s: %dx%d is too small to evaluate at x%d; skipped\n", fl.files[i], img.w,
                    img.h, s);
            t2i_image_free(&img);
            small++;
            continue;
        }
        make_pair(&img, s, &hr, &lr);
        t2i_image_free(&img);
        sr_upscale_u8(&m, &lr, &sr, tile, -1);
        t2i_image_resize(&bic, &lr, hr.w, hr.h, T2I_RESIZE_BICUBIC);
        double v[6] = {t2i_psnr_rgb(sr.px, hr.px, hr.h, hr.w, s), t2i_psnr_y(sr.px, hr.px, hr.h, hr.w, s),
                       t2i_ssim_y(sr.px, hr.px, hr.h, hr.w, s),   t2i_psnr_rgb(bic.px, hr.px, hr.h, hr.w, s),
                       t2i_psnr_y(bic.px, hr.px, hr.h, hr.w, s),  t2i_ssim_y(bic.px, hr.px, hr.h, hr.w, s)};
        const char *base = strrchr(fl.files[i], '/');
        if (!isfinite(v[0]) || !isfinite(v[3])) {
            /* a flat region: bicubic (or the model) reproduces it exactly, its PSNR is
             * infinite and would make the means (and the JSON) meaningless */
            fprintf(stderr, "t2i: note: %s: %s reproduces the %dx%d region exactly (flat): left out of the means\n",
                    fl.files[i], isfinite(v[3]) ? "the model" : "bicubic", hr.w, hr.h);
            t2i_image_free(&hr), t2i_image_free(&lr), t2i_image_free(&sr), t2i_image_free(&bic);
            flat++;
            continue;
        }
        char label[64];
        snprintf(label, sizeof label, "%s (%dx%d)", base ? base + 1 : fl.files[i], hr.w, hr.h);
        printf("%-38s  %8.3f %8.3f %7.4f   %8.3f %8.3f %7.4f\n", label, v[0], v[1], v[2], v[3], v[4], v[5]);
        fflush(stdout);
        for (int k = 0; k < 6; k++) sum[k] += v[k];
        done++;
        t2i_image_free(&hr), t2i_image_free(&lr), t2i_image_free(&sr), t2i_image_free(&bic);
    }
    if (done == 0) {
        /* "the 2 held-out images are", "the 1 image is" (split all) */
        char what[64];
        int n = small + flat, all = strcmp(split, "all") == 0;
        snprintf(what, sizeof what, "the %d%s%s image%s", n, all ? "" : " ", all ? "" : split,
                 n == 1 ? " is" : "s are");
        if (flat)
            t2i_fail("%s: %s too small or flat (reproduced exactly by bicubic at x%d): nothing to compare", where,
                     what, s);
        else
            t2i_fail("%s: %s too small to evaluate at x%d", where, what, s);
        goto out;
    }
    for (int k = 0; k < 6; k++) sum[k] /= done;
    printf("%-38s  %8.3f %8.3f %7.4f   %8.3f %8.3f %7.4f\n", "mean", sum[0], sum[1], sum[2], sum[3], sum[4], sum[5]);
    printf("gain over bicubic: %+.3f dB (RGB), %+.3f dB (Y), %+.4f SSIM; %.1f s\n", sum[0] - sum[3], sum[1] - sum[4],
           sum[2] - sum[5], t2i_now() - t0);
    printf("{\"eval\":\"sr\",\"scale\":%d,\"images\":%d,\"split\":\"%s\",\"crop\":%d,\"psnr\":%.4f,\"psnr_y\":%.4f,"
           "\"ssim_y\":%.5f,\"bicubic_psnr\":%.4f,\"bicubic_psnr_y\":%.4f,\"bicubic_ssim_y\":%.5f}\n",
           s, done, split, crop, sum[0], sum[1], sum[2], sum[3], sum[4], sum[5]);
    rc = 0;
out:
    for (int k = 0; k < 4; k++) free(joined[k]);
    sr_filelist_free(&fl);
    sr_model_free(&m);
    return rc;
}

/* ---------------------------------------------------------------- compare */

/* Pastes src (w x h, RGB) into dst at (x0, y0), each pixel repeated zoom x zoom times. */
static void paste(t2i_image *dst, const t2i_image *src, int x0, int y0, int zoom) {
    for (int y = 0; y < src->h * zoom; y++)
        for (int x = 0; x < src->w * zoom; x++)
            memcpy(dst->px + ((size_t)(y0 + y) * dst->w + x0 + x) * 3,
                   src->px + ((size_t)(y / zoom) * src->w + x / zoom) * 3, 3);
}

/* Copy of the box (x0, y0, w, h) of src. */
static void crop_box(t2i_image *dst, const t2i_image *src, int x0, int y0, int w, int h) {
    t2i_image_alloc(dst, w, h, 3);
    for (int y = 0; y < h; y++)
        memcpy(dst->px + (size_t)y * w * 3, src->px + ((size_t)(y0 + y) * src->w + x0) * 3, (size_t)w * 3);
}

int sr_cmd_compare(int argc, char **argv) {
    t2i_strs ckpts = {0};
    const char *image = NULL, *out = NULL;
    int bx = -1, by = -1, size = 256, zoom = 1, threads = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STRS, &ckpts, "one or more SR checkpoints (same scale), one panel each"},
        {"--image", T2I_STR, &image, "the photo (HR)"},
        {"--x", T2I_INT, &bx, "left of the HR box (-1 = centred)"},
        {"--y", T2I_INT, &by, "top of the HR box (-1 = centred)"},
        {"--size", T2I_INT, &size, "HR box size"},
        {"--zoom", T2I_INT, &zoom, "enlarge panels by pixel repetition"},
        {"--out", T2I_STR, &out, "output PNG"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i sr compare",
                   "Side-by-side crops: bicubic | each model | original.",
                   "--image P --ckpt C... --out O [options]",
                   flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "LR is the whole photo downscaled as in `t2i sr eval`; every panel is the given HR box of the\n"
                   "corresponding whole-image result. Prints the PSNR (RGB) of each panel against the original.\n"
                   "Panels are separated by 8 white pixels."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!image || !out || ckpts.n == 0) return t2i_fail("sr compare: --image, --ckpt and --out are required"), 2;
    if (t2i_check_range_i("--size", size, 16, 4096) || t2i_check_range_i("--zoom", zoom, 1, 8)) return 2;
    t2i_set_threads(threads);
    int rc = 1, nm = ckpts.n;
    sr_model *models = t2i_calloc((size_t)nm, sizeof *models);
    int loaded = 0;
    t2i_image img = {0}, hr = {0}, lr = {0}, canvas = {0};
    for (; loaded < nm; loaded++)
        if (sr_load(&models[loaded], ckpts.v[loaded], 0, NULL) != 0) {
            t2i_fail_err();
            goto out;
        }
    int s = models[0].cfg.scale;
    for (int k = 1; k < nm; k++)
        if (models[k].cfg.scale != s) {
            t2i_fail("%s: upscales x%d, %s x%d; compare models of one scale", ckpts.v[k], models[k].cfg.scale,
                     ckpts.v[0], s);
            goto out;
        }
    if (t2i_image_load(&img, image, 3) != 0) {
        t2i_fail_err();
        goto out;
    }
    if (img.w < size || img.h < size) {
        t2i_fail("%s: %dx%d is smaller than the %d-pixel box", image, img.w, img.h, size);
        goto out;
    }
    make_pair(&img, s, &hr, &lr);
    size -= size % s;
    if (size > hr.w || size > hr.h) {
        t2i_fail("%s: the %d-pixel box does not fit in %dx%d", image, size, hr.w, hr.h);
        goto out;
    }
    if (bx < 0) bx = (hr.w - size) / 2;
    if (by < 0) by = (hr.h - size) / 2;
    bx -= bx % s, by -= by % s;
    if (bx + size > hr.w || by + size > hr.h) {
        t2i_fail("%s: box (%d, %d, %d) outside the %dx%d photo", image, bx, by, size, hr.w, hr.h);
        goto out;
    }
    int np = nm + 2, pw = size * zoom, gap = 8;
    t2i_image_alloc(&canvas, np * pw + (np - 1) * gap, pw, 3);
    memset(canvas.px, 255, (size_t)canvas.w * canvas.h * 3);
    t2i_image orig;
    crop_box(&orig, &hr, bx, by, size, size);
    /* LR region: the box plus a margin covering the widest receptive radius and bicubic's support */
    int margin = 4;
    for (int k = 0; k < nm; k++) margin = T2I_MAX(margin, sr_receptive_radius(&models[k].ema) + 1);
    int lx0 = T2I_MAX(0, bx / s - margin), ly0 = T2I_MAX(0, by / s - margin);
    int lx1 = T2I_MIN(lr.w, (bx + size) / s + margin), ly1 = T2I_MIN(lr.h, (by + size) / s + margin);
    t2i_image region, up, panel;
    crop_box(&region, &lr, lx0, ly0, lx1 - lx0, ly1 - ly0);
    int ox = bx - lx0 * s, oy = by - ly0 * s;
    printf("sr compare: %s box (%d, %d) %dx%d, x%d\n", image, bx, by, size, size, s);
    for (int p = 0; p < np - 1; p++) {
        if (p == 0) {
            /* bicubic of the whole LR image restricted to the region: the region keeps a
             * margin of >= 4 LR pixels inside the image, beyond bicubic's 2-pixel support */
            t2i_image_resize(&up, &region, region.w * s, region.h * s, T2I_RESIZE_BICUBIC);
        } else {
            sr_upscale_u8(&models[p - 1], &region, &up, 0, -1);
        }
        crop_box(&panel, &up, ox, oy, size, size);
        printf("  %-40s PSNR %.3f dB\n", p == 0 ? "bicubic" : ckpts.v[p - 1],
               t2i_psnr_rgb(panel.px, orig.px, size, size, 0));
        paste(&canvas, &panel, p * (pw + gap), 0, zoom);
        t2i_image_free(&panel), t2i_image_free(&up);
    }
    paste(&canvas, &orig, (np - 1) * (pw + gap), 0, zoom);
    printf("  %-40s (original)\n", image);
    t2i_image_free(&orig), t2i_image_free(&region);
    if (t2i_image_save_png(out, canvas.px, canvas.w, canvas.h, 3) != 0) {
        t2i_fail_err();
        goto out;
    }
    printf("sr compare: wrote %s (%dx%d): bicubic | %d model%s | original\n", out, canvas.w, canvas.h, nm,
           nm > 1 ? "s" : "");
    rc = 0;
out:
    for (int k = 0; k < loaded; k++) sr_model_free(&models[k]);
    free(models);
    t2i_image_free(&img), t2i_image_free(&hr), t2i_image_free(&lr), t2i_image_free(&canvas);
    return rc;
}
