/* dalle_cmd.c - `t2i dalle train|sample`, and the VQ decoding helpers they share.
 *
 *     t2i dalle sample --ckpt runs/dalle/checkpoint.safetensors --prompt "a red sneaker" \
 *         --n 16 --top-k 64 --cfg 3 --seed 7 --out out/red_sneaker
 * writes out/red_sneaker/sample_0000.png ... (numbered by candidate index), grid.png and
 * metadata.jsonl ({"file_name", "text", "seed", "candidate"} per image: the caption-folder
 * layout that `t2i eval fidelity` and the dataset loaders read). Candidate i of a seed is
 * the same image whatever --n and --batch are: `--first i --n 1` regenerates it alone.
 * The VQ decoder defaults to the checkpoint the training codes came from (recorded in the
 * DALL-E checkpoint).
 *
 * Failures: bad flags exit 2; an unreadable checkpoint, a VQ checkpoint whose codebook
 * or grid does not fit, an empty prompt, or a failed write exit 1 with the message.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "dalle.h"
#include "image.h"
#include "progress.h"

int dalle_vq_load(vq_model *vq, const char *path, const dalle_config *c) {
    if (vq_load(vq, path, 0, NULL) != 0) return -1;
    if (vq_n_codes(vq) != c->codebook || vq_grid(vq) != c->image_side) {
        int k = vq_n_codes(vq), g = vq_grid(vq);
        vq_model_free(vq);
        return t2i_error_set("%s: the VQ checkpoint has %d codes on a %dx%d grid; the DALL-E model uses %d codes on "
                             "a %dx%d grid",
                             path, k, g, g, c->codebook, c->image_side, c->image_side);
    }
    return 0;
}

void dalle_decode(vq_model *vq, nn_arena *a, const int32_t *codes, int n, float *images) {
    vq_decode(vq, a, codes, n, images);
    size_t total = (size_t)n * vq->cfg.channels * vq->cfg.res * vq->cfg.res;
    for (size_t i = 0; i < total; i++) images[i] = images[i] < -1.0f ? -1.0f : images[i] > 1.0f ? 1.0f : images[i];
}

int dalle_write_pngs(const char *dir, const char *prefix, const float *images, int n, long first, int C, int H, int W) {
    uint8_t *px = t2i_malloc((size_t)H * W * C);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        t2i_chw_to_u8(px, images + (size_t)i * C * H * W, C, H, W);
        char *p = t2i_asprintf("%s/%s%04ld.png", dir, prefix, first + i);
        rc = t2i_image_save_png(p, px, W, H, C);
        free(p);
    }
    free(px);
    return rc;
}

enum { DALLE_GRID_MAX = 256 }; /* candidates shown in grid.png */

int dalle_cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = NULL, *vq_path = NULL, *out = NULL;
    int n = 16, batch = 32, threads = 0, top_k = 0, nocache = 0;
    long seed = 1, first = 0;
    float temperature = 1.0f, top_p = 1.0f, cfg_scale = 3.0f; /* guidance 3: best caption fidelity in bench/RESULTS.md */
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "DALL-E checkpoint (required)"},
        {"--prompt", T2I_STR, &prompt, "the caption (required)"},
        {"--vq", T2I_STR, &vq_path, "VQ checkpoint for decoding (default: the one the model was trained on)"},
        {"--n", T2I_INT, &n, "number of candidates"},
        {"--first", T2I_LONG, &first, "index of the first candidate (regenerate candidate i: --first i --n 1)"},
        {"--batch", T2I_INT, &batch, "candidates decoded together"},
        {"--temperature", T2I_FLOAT, &temperature, "softmax temperature"},
        {"--top-k", T2I_INT, &top_k, "keep the k most likely codes (0 = all)"},
        {"--top-p", T2I_FLOAT, &top_p, "nucleus: smallest set of codes with this probability mass (1 = all)"},
        {"--cfg", T2I_FLOAT, &cfg_scale, "classifier-free guidance scale s: u + s (c - u) (1 = off)"},
        {"--seed", T2I_LONG, &seed, "random seed (candidate i draws from stream i)"},
        {"--no-cache", T2I_BOOL, &nocache, "full forward over the prefix at every step (slow; for checking)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
        {"--out", T2I_STR, &out, "output folder (required)"},
    };
    t2i_cmd cmd = {"t2i dalle sample", "Generate images for a caption with the image-token transformer.", "[options]",
                   flags, (int)(sizeof flags / sizeof flags[0]),
                   "Writes OUT/sample_NNNN.png (NNNN = candidate index), OUT/metadata.jsonl and OUT/grid.png\n"
                   "(the first 256 candidates at most)."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("dalle sample: unexpected argument '%s'", cmd.pos[0]), 2;
    if (!ckpt || !prompt || !out) return t2i_fail("dalle sample: --ckpt, --prompt and --out are required"), 2;
    if (t2i_check_range_i("--n", n, 1, 1000000) || t2i_check_range_i("--batch", batch, 1, 4096) ||
        t2i_check_range_i("--first", first, 0, 1L << 40))
        return 2;
    dalle_sample_opts so;
    dalle_sample_defaults(&so);
    so.temperature = temperature, so.top_k = top_k, so.top_p = top_p, so.cfg = cfg_scale, so.cached = !nocache;
    t2i_set_threads(threads);

    dalle_model m;
    if (dalle_load(&m, ckpt, 0, NULL) != 0) return t2i_fail_err();
    if (dalle_sample_check(&so, m.cfg.codebook) != 0) {
        dalle_free(&m);
        return t2i_fail_err(), 2;
    }
    int rc = 1, TL = m.cfg.text_len, IL = dalle_image_len(&m.cfg);
    int32_t *text = t2i_malloc((size_t)TL * sizeof(int32_t));
    if (dalle_encode_text_warn(&m, prompt, text) < 0) {
        t2i_fail("--prompt: %s", t2i_error_msg());
        free(text);
        dalle_free(&m);
        return 1;
    }
    if (!vq_path) vq_path = m.vq_path;
    if (!vq_path) {
        t2i_fail("%s records no VQ checkpoint; pass --vq", ckpt);
        free(text);
        dalle_free(&m);
        return 2;
    }
    vq_model vq;
    char *vq_res = t2i_resolve_path(vq_path); /* a recorded path may be relative to the source tree */
    int vrc = dalle_vq_load(&vq, vq_res, &m.cfg);
    free(vq_res);
    if (vrc != 0) {
        t2i_fail_err();
        free(text);
        dalle_free(&m);
        return 1;
    }
    int C = vq.cfg.channels, R = vq.cfg.res;
    size_t isz = (size_t)C * R * R;
    /* images are written batch by batch; only the grid's first ng stay in memory */
    int ng = n < DALLE_GRID_MAX ? n : DALLE_GRID_MAX;
    float *grid = t2i_malloc((size_t)ng * isz * sizeof(float));
    float *imgs = t2i_malloc((size_t)batch * isz * sizeof(float));
    int32_t *codes = t2i_malloc((size_t)batch * IL * sizeof(int32_t));
    nn_arena a;
    nn_arena_init(&a);
    char *meta = NULL; /* metadata.jsonl, built whole then written atomically */
    if (t2i_mkdirs(out) != 0) {
        t2i_fail_err();
        goto done;
    }
    double dt = 0;
    t2i_progress pr;
    if (n > batch) t2i_progress_start(&pr, "dalle sample", 0, n);
    for (int i = 0; i < n; i += batch) {
        int k = n - i < batch ? n - i : batch;
        double ts = t2i_now();
        nn_arena_reset(&a);
        dalle_sample(&m, &a, text, k, (uint64_t)seed, first + i, &so, codes);
        nn_arena_reset(&a);
        dalle_decode(&vq, &a, codes, k, imgs);
        dt += t2i_now() - ts;
        if (dalle_write_pngs(out, "sample_", imgs, k, first + i, C, R, R) != 0) {
            t2i_fail_err();
            goto done;
        }
        if (i < ng) memcpy(grid + (size_t)i * isz, imgs, (size_t)(ng - i < k ? ng - i : k) * isz * sizeof(float));
        if (n > batch) t2i_progress_update(&pr, i + k, NULL);
    }
    if (n > batch) t2i_progress_end(&pr, n, NULL);
    char *gp = t2i_asprintf("%s/grid.png", out);
    int nrow = 1;
    while (nrow * nrow < ng) nrow++;
    int grc = t2i_save_grid(gp, grid, ng, C, R, R, nrow);
    free(gp);
    if (grc != 0) {
        t2i_fail_err();
        goto done;
    }
    /* metadata.jsonl is written atomically like the images: a signal or a full disk never
     * leaves it cut short, and an older one stays whole until the new one is complete */
    size_t len = 0, cap = 0;
    for (int i = 0; i < n; i++) {
        cJSON *j = cJSON_CreateObject();
        char fn[64];
        snprintf(fn, sizeof fn, "sample_%04ld.png", first + i);
        cJSON_AddStringToObject(j, "file_name", fn);
        cJSON_AddStringToObject(j, "text", prompt);
        cJSON_AddNumberToObject(j, "seed", (double)seed);
        cJSON_AddNumberToObject(j, "candidate", (double)(first + i));
        char *s = cJSON_PrintUnformatted(j);
        T2I_ASSERT(s);
        t2i_text_append_line(&meta, &len, &cap, s);
        cJSON_free(s);
        cJSON_Delete(j);
    }
    char *mp = t2i_asprintf("%s/metadata.jsonl", out);
    int mrc = t2i_write_file_atomic(mp, meta, len);
    free(mp);
    if (mrc != 0) {
        t2i_fail_err();
        goto done;
    }
    printf("dalle sample: %d images in %.2f s (%s) -> %s/sample_%04ld.png .. and grid.png\n", n, dt,
           so.cached ? "cached" : "uncached", out, first);
    rc = 0;
done:
    free(meta);
    nn_arena_free(&a);
    free(grid), free(imgs), free(codes), free(text);
    vq_model_free(&vq);
    dalle_free(&m);
    return rc;
}

int dalle_cmd(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", dalle_cmd_train, "train the image-token transformer on VQ codes"},
        {"sample", dalle_cmd_sample, "generate images for a caption"},
    };
    return t2i_dispatch("t2i dalle", "The DALL-E-style image-token transformer.", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
