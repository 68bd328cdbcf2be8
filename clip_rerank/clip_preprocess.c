/* clip_preprocess.c - OpenAI CLIP's image transform and the image embedding helpers; see
 * clip.h.
 *
 * The transform is torchvision's Compose([Resize(R, BICUBIC), CenterCrop(R), ToTensor(),
 * Normalize(mean, std)]) on a PIL RGB image: the shorter side becomes R (the longer
 * int(R * long / short)) with Pillow's antialiased bicubic on 8-bit pixels
 * (t2i_image_resize_crop reproduces it), the centre R x R is cut (left = round((w - R) / 2)),
 * then x / 255 and (x - mean) / std in float32, the same operations in the same order as
 * torch, so the values agree to the last bit when the pixels do.
 *
 * Float images in [-1, 1] (generated candidates) are first rounded to 8 bits as a PNG
 * writer would, so a candidate scores the same in memory as after saving it.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "clip.h"
#include "image.h"

const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static void normalize_u8(float *dst, const t2i_image *img) {
    T2I_ASSERT(img->c == 3 && img->w == img->h);
    int R = img->w;
    size_t plane = (size_t)R * R;
    for (int ch = 0; ch < 3; ch++)
        for (size_t i = 0; i < plane; i++) {
            float x = (float)img->px[i * 3 + ch] / 255.0f;
            dst[(size_t)ch * plane + i] = (x - clip_mean[ch]) / clip_std[ch];
        }
}

void clip_preprocess_u8(float *dst, const t2i_image *img, int R) {
    t2i_image rgb = {0}, sized = {0};
    const t2i_image *cur = img;
    if (img->c != 3) {
        t2i_image_convert(&rgb, img, 3);
        cur = &rgb;
    }
    t2i_image_resize_crop(&sized, cur, R, T2I_RESIZE_BICUBIC);
    normalize_u8(dst, &sized);
    t2i_image_free(&sized);
    if (rgb.px) t2i_image_free(&rgb);
}

void clip_preprocess_f32(float *dst, const float *src, int C, int H, int W, int R) {
    T2I_ASSERT(C == 1 || C == 3);
    t2i_image img;
    t2i_image_alloc(&img, W, H, C);
    t2i_chw_to_u8(img.px, src, C, H, W);
    clip_preprocess_u8(dst, &img, R);
    t2i_image_free(&img);
}

void clip_normalize_m11(float *dst, const float *src, int R) {
    size_t plane = (size_t)R * R;
    for (int ch = 0; ch < 3; ch++)
        for (size_t i = 0; i < plane; i++) {
            float x = (src[(size_t)ch * plane + i] + 1.0f) * 0.5f;
            dst[(size_t)ch * plane + i] = (x - clip_mean[ch]) / clip_std[ch];
        }
}

int clip_embed_images(clip_model *m, const float *imgs, int n, int C, int H, int W, float *out) {
    T2I_ASSERT(C == 1 || C == 3);
    int R = m->cfg.image_resolution, D = m->cfg.embed_dim;
    size_t item = (size_t)3 * R * R, in_item = (size_t)C * H * W;
    float *px = t2i_malloc_aligned((size_t)CLIP_EMBED_BATCH * item * sizeof(float));
    for (int i0 = 0; i0 < n; i0 += CLIP_EMBED_BATCH) {
        int b = T2I_MIN(CLIP_EMBED_BATCH, n - i0);
#pragma omp parallel for schedule(dynamic)
        for (int i = 0; i < b; i++) clip_preprocess_f32(px + (size_t)i * item, imgs + (size_t)(i0 + i) * in_item, C, H, W, R);
        clip_embed_pixels(m, px, b, out + (size_t)i0 * D);
    }
    t2i_free(px);
    return 0;
}

int clip_embed_files(clip_model *m, const char *const *paths, int n, float *out) {
    int R = m->cfg.image_resolution, D = m->cfg.embed_dim;
    size_t item = (size_t)3 * R * R;
    float *px = t2i_malloc_aligned((size_t)CLIP_EMBED_BATCH * item * sizeof(float));
    int rc = 0;
    for (int i0 = 0; i0 < n && rc == 0; i0 += CLIP_EMBED_BATCH) {
        int b = T2I_MIN(CLIP_EMBED_BATCH, n - i0), bad = -1;
        /* decode in parallel; error messages are per thread, so a failure is reported by
         * decoding that file again on this thread */
#pragma omp parallel for schedule(dynamic)
        for (int i = 0; i < b; i++) {
            t2i_image img;
            if (t2i_image_load(&img, paths[i0 + i], 3) != 0) {
#pragma omp critical(clip_bad_file)
                if (bad < 0 || i < bad) bad = i;
                continue;
            }
            clip_preprocess_u8(px + (size_t)i * item, &img, R);
            t2i_image_free(&img);
        }
        if (bad >= 0) {
            t2i_image img;
            if (t2i_image_load(&img, paths[i0 + bad], 3) == 0) {
                t2i_image_free(&img);
                t2i_error_set("%s: could not be read", paths[i0 + bad]);
            }
            rc = -1;
            break;
        }
        clip_embed_pixels(m, px, b, out + (size_t)i0 * D);
    }
    t2i_free(px);
    return rc;
}
