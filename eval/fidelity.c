/* fidelity.c - `t2i eval fidelity`: does a generated image show what its caption says?
 *
 *     t2i eval fidelity OUT/                 (scores.json of t2i generate: file, caption, rank)
 *     t2i eval fidelity SAMPLES/             (images + metadata.jsonl: file_name, text)
 *     t2i eval fidelity fashion-captions:test  (the real images: the judge's ceiling)
 *
 * For FC32-style captions ("a red sneaker", see data/fc32.h) the judge decides the class and
 * the colour of each image and compares them with the caption:
 *   - brightness b = per-pixel max over R, G, B (every palette colour has a component of
 *     1, so on a real image b is exactly the gray Fashion-MNIST item);
 *   - class: the toolkit's Fashion-MNIST classifier (eval/classifier.h) on a 28x28 view of
 *     b. A 32x32 canvas holds the 28x28 item at an offset of 0..4 pixels; --crop window
 *     (default) takes the 28x28 window with the largest brightness sum, --crop resize
 *     scales 32 -> 28 (bicubic). Other sizes are first resized to 32x32; 28x28 is used as
 *     it is;
 *   - colour: the mean RGB of the foreground (pixels with b above --threshold), divided
 *     by its largest component, matched to the nearest palette colour (Euclidean).
 * It prints the share of images whose class and colour both match the caption, class
 * only and colour only - overall, for the eight held-out (colour, class) pairs (never in
 * the train split) and for the others; --json prints one JSON object instead.
 * On the real FC32 test split the judge scores as high as the classifier's accuracy for
 * class and ~100% for colour: that is the ceiling a generator can reach (see --help).
 *
 * Failures: exit 2 on bad flags; exit 1 with a message naming the file for an unreadable
 * scores.json/metadata, image or classifier, or when no caption names an FC32 colour and
 * class (captions that do not are counted as skipped).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "data.h"
#include "fc32.h"
#include "classifier.h"
#include "fidelity.h"
#include "image.h"


enum { CROP_WINDOW, CROP_RESIZE };

typedef struct {
    int n;
    float *gray;   /* (n, 28, 28) in [-1, 1]: the classifier's input */
    int *colour;   /* judged colour (-1: no foreground) */
    int *want_colour, *want_class;
} judged;

/* One image (3, H, W) in [-1, 1] -> gray28 (28 x 28 in [-1, 1]) and its colour. */
static int judge_image(float *gray28, const float *img, int H, int W, int crop, float threshold) {
    float *rgb32 = NULL;
    const float *x = img;
    if (!((H == 32 && W == 32) || (H == 28 && W == 28))) {
        rgb32 = t2i_malloc(3 * 32 * 32 * sizeof(float));
        t2i_resize_chw(rgb32, img, 3, H, W, 32, 32, T2I_RESIZE_BICUBIC);
        x = rgb32, H = W = 32;
    }
    size_t S = (size_t)H * W;
    float b[32 * 32];
    double sum[3] = {0, 0, 0};
    long nfg = 0;
    for (size_t i = 0; i < S; i++) {
        float r = 0.5f * (x[i] + 1), g = 0.5f * (x[S + i] + 1), bl = 0.5f * (x[2 * S + i] + 1);
        r = r < 0 ? 0 : r > 1 ? 1 : r, g = g < 0 ? 0 : g > 1 ? 1 : g, bl = bl < 0 ? 0 : bl > 1 ? 1 : bl;
        float m = r > g ? r : g;
        m = m > bl ? m : bl;
        b[i] = m;
        if (m > threshold) sum[0] += r, sum[1] += g, sum[2] += bl, nfg++;
    }
    if (H == 28) {
        for (size_t i = 0; i < S; i++) gray28[i] = 2 * b[i] - 1;
    } else if (crop == CROP_RESIZE) {
        float t[28 * 28];
        t2i_resize_chw(t, b, 1, 32, 32, 28, 28, T2I_RESIZE_BICUBIC);
        for (int i = 0; i < 28 * 28; i++) gray28[i] = 2 * t[i] - 1;
    } else {
        /* the window with the largest sum; ties to the smallest offset (dy, then dx) */
        double best = -1;
        int bx = 0, by = 0;
        for (int dy = 0; dy <= 4; dy++)
            for (int dx = 0; dx <= 4; dx++) {
                double s = 0;
                for (int y = 0; y < 28; y++)
                    for (int xx = 0; xx < 28; xx++) s += b[(y + dy) * 32 + xx + dx];
                if (s > best + 1e-9) best = s, bx = dx, by = dy;
            }
        for (int y = 0; y < 28; y++)
            for (int xx = 0; xx < 28; xx++) gray28[y * 28 + xx] = 2 * b[(y + by) * 32 + xx + bx] - 1;
    }
    free(rgb32);
    if (nfg == 0) return -1;
    double mx = fmax(sum[0], fmax(sum[1], sum[2]));
    if (mx <= 0) return -1;
    int best = -1;
    double bd = INFINITY;
    for (int k = 0; k < FC32_N_COLOURS; k++) {
        double d = 0;
        for (int c = 0; c < 3; c++) {
            double e = sum[c] / mx - fc32_palette[k][c];
            d += e * e;
        }
        if (d < bd) bd = d, best = k;
    }
    return best;
}

static void judged_add(judged *j, int *cap, const float *img, int H, int W, int crop, float thr, int colour, int cls) {
    if (j->n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        j->gray = t2i_realloc(j->gray, (size_t)*cap * 784 * sizeof(float));
        j->colour = t2i_realloc(j->colour, (size_t)*cap * sizeof(int));
        j->want_colour = t2i_realloc(j->want_colour, (size_t)*cap * sizeof(int));
        j->want_class = t2i_realloc(j->want_class, (size_t)*cap * sizeof(int));
    }
    j->colour[j->n] = judge_image(j->gray + (size_t)j->n * 784, img, H, W, crop, thr);
    j->want_colour[j->n] = colour, j->want_class[j->n] = cls;
    j->n++;
}

/* Reads scores.json (an array of {file, caption, rank}) in dir. */
static int read_scores(judged *j, int *cap, const char *dir, const char *path, int top, int crop, float thr,
                       int *skipped) {
    size_t len;
    char *text = t2i_read_file(path, &len, (size_t)256 << 20);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return t2i_error_set("%s: not a JSON array of results", path);
    }
    int rc = 0, idx = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "file"), *c = cJSON_GetObjectItemCaseSensitive(e, "caption");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "rank");
        if (!cJSON_IsString(f) || !cJSON_IsString(c)) {
            rc = t2i_error_set("%s: entry %d lacks a \"file\" or \"caption\" string", path, idx);
            break;
        }
        if (r && !(cJSON_IsNumber(r) && r->valuedouble >= 0 && r->valuedouble == floor(r->valuedouble))) {
            rc = t2i_error_set("%s: entry %d: \"rank\" is not a non-negative integer", path, idx);
            break;
        }
        size_t cl = strlen(c->valuestring);
        if (t2i_utf8_invalid_at(c->valuestring, cl) < cl) {
            rc = t2i_error_set("%s: entry %d: the caption is not valid UTF-8", path, idx);
            break;
        }
        idx++;
        if (top > 0 && cJSON_IsNumber(r) && r->valuedouble >= top) continue;
        int colour, cls;
        if (fc32_parse_caption(c->valuestring, &colour, &cls) != 0) {
            (*skipped)++;
            continue;
        }
        char *p = t2i_asprintf("%s/%s", dir, f->valuestring);
        t2i_image im;
        if (t2i_image_load(&im, p, 3) != 0) {
            free(p);
            rc = -1;
            break;
        }
        free(p);
        float *x = t2i_malloc((size_t)3 * im.w * im.h * sizeof(float));
        t2i_image_to_chw(x, &im);
        judged_add(j, cap, x, im.h, im.w, crop, thr, colour, cls);
        free(x);
        t2i_image_free(&im);
    }
    cJSON_Delete(root);
    return rc;
}

/* A caption folder (metadata.jsonl/csv) or a dataset spec such as fashion-captions:test. */
static int read_dataset(judged *j, int *cap, const char *spec, int limit, int crop, float thr, int *skipped) {
    t2i_dataset ds;
    if (t2i_dataset_open(&ds, spec, 3, 0, 0) != 0) return -1;
    if (!ds.captions) {
        t2i_dataset_free(&ds);
        return t2i_error_set("%s: no captions (expected scores.json or metadata.jsonl/csv)", spec);
    }
    int n = limit > 0 && limit < ds.n ? limit : ds.n, rc = 0;
    float *x = t2i_malloc((size_t)3 * ds.H * ds.W * sizeof(float));
    for (int i = 0; i < n && !rc; i++) {
        int colour, cls;
        if (fc32_parse_caption(ds.captions[i], &colour, &cls) != 0) {
            (*skipped)++;
            continue;
        }
        if (t2i_dataset_get(&ds, i, x) != 0) rc = -1;
        else judged_add(j, cap, x, ds.H, ds.W, crop, thr, colour, cls);
    }
    free(x);
    t2i_dataset_free(&ds);
    return rc;
}

typedef struct {
    int n, both, cls, colour;
} tally;

static void tally_json(cJSON *o, const char *key, const tally *t) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "n", t->n);
    cJSON_AddNumberToObject(e, "both", t->n ? (double)t->both / t->n : 0);
    cJSON_AddNumberToObject(e, "class", t->n ? (double)t->cls / t->n : 0);
    cJSON_AddNumberToObject(e, "colour", t->n ? (double)t->colour / t->n : 0);
    cJSON_AddItemToObject(o, key, e);
}

static void tally_print(const char *label, const tally *t) {
    if (!t->n) {
        printf("  %-16s      0 images\n", label);
        return;
    }
    printf("  %-16s %6d images   class+colour %5.1f%%   class %5.1f%%   colour %5.1f%%\n", label, t->n,
           100.0 * t->both / t->n, 100.0 * t->cls / t->n, 100.0 * t->colour / t->n);
}

int eval_cmd_fidelity(int argc, char **argv) {
    const char *clsp = NULL, *crop_s = "window";
    int json = 0, top = 0, limit = 0, threads = 0;
    float threshold = 0.3f;
    t2i_flag flags[] = {
        {"--classifier", T2I_STR, &clsp, "Fashion-MNIST classifier (default $T2I_CLASSIFIER or the shipped one)"},
        {"--crop", T2I_STR, &crop_s, "32x32 -> 28x28 for the classifier: window (largest-sum 28x28) or resize"},
        {"--threshold", T2I_FLOAT, &threshold, "foreground brightness (0..1) for the colour"},
        {"--top", T2I_INT, &top, "scores.json: only results with rank < N (0 = all; 1 = the best of each caption)"},
        {"--limit", T2I_INT, &limit, "folders/datasets: only the first N images (0 = all)"},
        {"--json", T2I_BOOL, &json, "print one JSON object"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i eval fidelity", "Share of images whose class and colour match their FC32 caption.",
                   "DIR|fashion-captions:test [options]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "DIR holds scores.json (t2i generate) or images with metadata.jsonl/csv (t2i dalle\n"
                   "sample, t2i data). On fashion-captions:test (real images) the figures are the judge's\n"
                   "ceiling: class = the classifier's accuracy on FC32 items, colour ~100%."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos != 1) return t2i_fail("eval fidelity: expected one folder or dataset (see --help)"), 2;
    int crop = strcmp(crop_s, "window") == 0 ? CROP_WINDOW : strcmp(crop_s, "resize") == 0 ? CROP_RESIZE : -1;
    if (crop < 0) return t2i_fail("--crop must be window or resize, got '%s'", crop_s), 2;
    if (t2i_check_range_f("--threshold", threshold, 0, 0.99) || t2i_check_range_i("--top", top, 0, 1 << 30) ||
        t2i_check_range_i("--limit", limit, 0, 1 << 30))
        return 2;
    t2i_set_threads(threads);
    const char *dir = cmd.pos[0];

    judged j;
    memset(&j, 0, sizeof j);
    int cap = 0, skipped = 0, rc = 1;
    char *sp = t2i_asprintf("%s/scores.json", dir);
    int from_scores = t2i_is_dir(dir) && t2i_path_exists(sp);
    int r = from_scores ? read_scores(&j, &cap, dir, sp, top, crop, threshold, &skipped)
                        : read_dataset(&j, &cap, dir, limit, crop, threshold, &skipped);
    free(sp);
    cls_model cm;
    int have_cls = 0;
    float *logits = NULL;
    if (r != 0) {
        t2i_fail_err();
        goto done;
    }
    if (j.n == 0) {
        t2i_fail("%s: no image has a caption naming one FC32 colour and class (%d skipped)", dir, skipped);
        goto done;
    }
    const char *cpath = clsp ? clsp : cls_default_path();
    if (cls_load(&cm, cpath) != 0) {
        t2i_fail("%s (train one with `t2i classify train` and pass --classifier)", t2i_error_msg());
        goto done;
    }
    have_cls = 1;
    logits = t2i_malloc((size_t)j.n * cm.n_classes * sizeof(float));
    cls_infer(&cm, j.gray, j.n, NULL, logits);
    tally all = {0}, held = {0}, seen = {0};
    for (int i = 0; i < j.n; i++) {
        const float *lg = logits + (size_t)i * cm.n_classes;
        int pc = 0;
        for (int k = 1; k < cm.n_classes; k++)
            if (lg[k] > lg[pc]) pc = k;
        int ok_cls = pc == j.want_class[i], ok_col = j.colour[i] == j.want_colour[i];
        tally *t = fc32_is_held_out(j.want_colour[i], j.want_class[i]) ? &held : &seen;
        for (int k = 0; k < 2; k++) {
            tally *u = k ? &all : t;
            u->n++, u->cls += ok_cls, u->colour += ok_col, u->both += ok_cls && ok_col;
        }
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "eval", "fidelity");
        cJSON_AddStringToObject(o, "input", dir);
        cJSON_AddStringToObject(o, "classifier", cpath);
        cJSON_AddStringToObject(o, "crop", crop_s);
        cJSON_AddNumberToObject(o, "skipped", skipped);
        tally_json(o, "all", &all);
        tally_json(o, "held_out", &held);
        tally_json(o, "seen", &seen);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("fidelity of %s (classifier %s, crop %s, threshold %.2f)%s\n", dir, cpath, crop_s, (double)threshold,
               from_scores && top ? "" : "");
        if (from_scores && top) printf("  results with rank < %d only\n", top);
        tally_print("all", &all);
        tally_print("held-out pairs", &held);
        tally_print("seen pairs", &seen);
        if (skipped) printf("  %d images skipped: their caption names no single FC32 colour and class\n", skipped);
    }
    rc = 0;
done:
    free(logits);
    if (have_cls) cls_free(&cm);
    free(j.gray), free(j.colour), free(j.want_colour), free(j.want_class);
    return rc;
}
