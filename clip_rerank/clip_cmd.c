/* clip_cmd.c - `t2i clip ...`: embed, classify, zeroshot and rerank with any CLIP the
 * loader understands (t2i checkpoints, OpenAI-named or Hugging Face safetensors), plus the
 * dispatch to train (clip_train.c) and tokenize (cmd_tokenize.c).
 *
 *   t2i clip embed --ckpt W [--vocab F] [--images FILES...] [--texts TEXTS...] --out F.safetensors
 *       L2-normalised image_features (N, D) and text_features (M, D), in input order.
 *   t2i clip classify IMAGE... --ckpt W --labels "a dog" "a cat" [--templates default|FILE]
 *       softmax(exp(logit_scale) * cosine) over the labels, highest first. --templates
 *       ensembles prompts as the CLIP paper: each label's normalised text embeddings over
 *       the templates ("a photo of a {}." ...) are averaged, then renormalised.
 *   t2i clip zeroshot --ckpt W --data fashion-captions[:test] | fashion-mnist[:test] | DIR
 *       top-1 / top-5 accuracy (a tie with the right class is a miss; no top-5 for 5
 *       classes or fewer). FC32: over the 80 "a {colour} {class}" captions, with the
 *       eight held-out pairs reported separately (and class-only / colour-only accuracy).
 *       Fashion-MNIST: 10 classes, prompt --prompts (default "a photo of a {}"), gray
 *       replicated to RGB and resized as any image. DIR: class folders (prompted names) or
 *       a caption folder (its distinct captions are the classes).
 *   t2i clip rerank --ckpt W --prompt TEXT IMAGES... [--top K] [--json] [--grid F]
 *       images (files, or folders of them) ranked by CLIP score = 100 x cosine similarity
 *       (DALL-E's reranking convention; --json also gives the raw cosine); the top K are
 *       printed in rank order and, with --grid, written as one PNG grid in that order.
 * Exit status: 0; 1 on bad input (unreadable image, bad checkpoint, a text that is not UTF-8
 * or is blank, a label given twice, a template without {}) with one "t2i: ..." line; 2 on
 * usage errors (a missing --ckpt among them).
 */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "base.h"
#include "clip.h"
#include "data.h"
#include "fc32.h"
#include "image.h"
#include "safetensors.h"

/* ------------------------------------------------------------- helpers ---- */

/* A usage error (exit 2) when --ckpt is missing: checked before any work. */
static int need_ckpt(const char *ckpt) {
    if (ckpt) return 0;
    t2i_fail("--ckpt is required (a t2i CLIP checkpoint, or OpenAI / Hugging Face CLIP safetensors)");
    return 2;
}

static clip_model *open_model(const char *ckpt, const char *vocab) {
    clip_model *m = clip_load(ckpt, vocab);
    if (!m) t2i_fail_err();
    return m;
}

int clip_score_images(clip_model *m, const char *caption, const float *imgs, int n, int C, int H, int W,
                      float *scores) {
    int D = m->cfg.embed_dim;
    float *t = t2i_malloc((size_t)D * sizeof(float)), *f = t2i_malloc((size_t)n * D * sizeof(float));
    int rc = clip_embed_texts(m, &caption, 1, t);
    if (rc == 0) rc = clip_embed_images(m, imgs, n, C, H, W, f);
    if (rc == 0) clip_cosine(f, n, t, 1, D, scores);
    free(t), free(f);
    return rc;
}

/* Top-1 / top-5 hits of row i of sim (n, K) for the right column label[i]: the number of
 * other columns scoring at least as high must be 0 / under 5. */
static void rank_hits(const float *sim, int n, int K, const int *label, int *top1, int *top5, int *pred) {
    for (int i = 0; i < n; i++) {
        const float *r = sim + (size_t)i * K;
        float mine = r[label[i]];
        int better = 0, best = 0;
        for (int k = 0; k < K; k++) {
            better += k != label[i] && !(r[k] < mine); /* a tie (or NaN) is a miss: no credit for not deciding */
            if (r[k] > r[best]) best = k;
        }
        top1[i] = better == 0;
        top5[i] = better < 5;
        if (pred) pred[i] = best;
    }
}

/* The template with every "{}" replaced by name (heap string). */
static char *fill_template(const char *tmpl, const char *name) {
    size_t n = 0, nl = strlen(name);
    for (const char *h = strstr(tmpl, "{}"); h; h = strstr(h + 2, "{}")) n++;
    char *out = t2i_malloc(strlen(tmpl) + n * nl + 1), *o = out;
    for (const char *t = tmpl; *t;) {
        if (t[0] == '{' && t[1] == '}') memcpy(o, name, nl), o += nl, t += 2;
        else *o++ = *t++;
    }
    *o = 0;
    return out;
}

/* Texts given on the command line (flag names them in messages): each valid UTF-8
 * without control characters, not blank, and, with distinct, not given twice (two equal
 * labels split one probability). -1 with the error set. */
static int check_texts(const char *flag, const char *const *v, int n, int distinct) {
    for (int i = 0; i < n; i++) {
        char who[64];
        snprintf(who, sizeof who, n > 1 ? "%s item %d" : "%s", flag, i + 1);
        size_t at;
        const char *why = t2i_text_problem(v[i], &at);
        if (why == T2I_TEXT_EMPTY) return t2i_error_set("%s: empty text", who);
        if (why) return t2i_error_set("%s: %s (byte %zu)", who, why, at);
        for (int k = 0; distinct && k < i; k++)
            if (strcmp(v[k], v[i]) == 0) return t2i_error_set("%s: '%s' is given twice", flag, v[i]);
    }
    return 0;
}

/* Text embeddings of K classes: each class's prompt(s) from templates with "{}". With
 * several templates the normalised embeddings are averaged and renormalised. */
static int class_embeddings(clip_model *m, const char *const *names, int K, const char *const *tmpl, int n_tmpl,
                            float *out) {
    int D = m->cfg.embed_dim;
    float *e = t2i_malloc((size_t)n_tmpl * D * sizeof(float));
    const char **texts = t2i_malloc((size_t)n_tmpl * sizeof(char *));
    int rc = 0;
    for (int k = 0; k < K && rc == 0; k++) {
        for (int t = 0; t < n_tmpl; t++) texts[t] = fill_template(tmpl[t], names[k]);
        rc = clip_embed_texts(m, texts, n_tmpl, e);
        for (int t = 0; t < n_tmpl; t++) free((char *)texts[t]);
        if (rc) break;
        float *o = out + (size_t)k * D;
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int t = 0; t < n_tmpl; t++) s += e[(size_t)t * D + d];
            o[d] = (float)(s / n_tmpl);
        }
        clip_normalize_rows(o, 1, D);
    }
    free(e);
    free(texts);
    return rc;
}

static int is_image_name(const char *n) {
    const char *dot = strrchr(n, '.');
    if (!dot) return 0;
    char e[8] = {0};
    for (int i = 0; i < 7 && dot[1 + i]; i++) e[i] = (char)tolower((unsigned char)dot[1 + i]);
    const char *ok[] = {"png", "jpg", "jpeg", "bmp", "gif", "tga", "ppm", "webp"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(e, ok[i]) == 0) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Expands the arguments: files as given, folders to their image files (sorted, not
 * recursive). Returns the count; *out holds heap strings. -1 on a missing path. */
static int expand_images(const char *const *args, int n, char ***out) {
    int cap = n + 16, cnt = 0;
    char **v = t2i_malloc((size_t)cap * sizeof(char *));
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(args[i], &sb) != 0) {
            for (int k = 0; k < cnt; k++) free(v[k]);
            free(v);
            return t2i_error_set("%s: no such file or folder", args[i]);
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (cnt == cap) v = t2i_realloc(v, (size_t)(cap *= 2) * sizeof(char *));
            v[cnt++] = t2i_strdup(args[i]);
            continue;
        }
        DIR *d = opendir(args[i]);
        if (!d) {
            for (int k = 0; k < cnt; k++) free(v[k]);
            free(v);
            return t2i_error_set("%s: cannot open folder", args[i]);
        }
        int first = cnt;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.' || !is_image_name(e->d_name)) continue;
            if (cnt == cap) v = t2i_realloc(v, (size_t)(cap *= 2) * sizeof(char *));
            v[cnt++] = t2i_asprintf("%s/%s", args[i], e->d_name);
        }
        closedir(d);
        qsort(v + first, (size_t)(cnt - first), sizeof(char *), cmp_str);
    }
    *out = v;
    return cnt;
}

static void free_strs(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* A JSON string; bytes that are not UTF-8 (file names may hold any) become U+FFFD, so
 * the output stays valid JSON. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t rest = strlen((const char *)p), ok = t2i_utf8_invalid_at(p, rest);
        for (size_t i = 0; i < ok; i++) {
            if (p[i] == '"' || p[i] == '\\') fprintf(f, "\\%c", p[i]);
            else if (p[i] < 0x20) fprintf(f, "\\u%04x", p[i]);
            else fputc(p[i], f);
        }
        p += ok;
        if (*p) fputs("\\ufffd", f), p++;
    }
    fputc('"', f);
}

/* ------------------------------------------------------------------ embed ---- */

static int cmd_embed(int argc, char **argv) {
    const char *ckpt = NULL, *vocab = NULL, *out = NULL;
    t2i_strs images = {0}, texts = {0};
    int threads = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "CLIP weights (t2i checkpoint, OpenAI or Hugging Face safetensors)"},
        {"--vocab", T2I_STR, &vocab, "BPE vocabulary (merges .txt/.txt.gz or vocab.json); t2i checkpoints carry theirs"},
        {"--images", T2I_STRS, &images, "image files"},
        {"--texts", T2I_STRS, &texts, "texts"},
        {"--out", T2I_STR, &out, "output safetensors (image_features, text_features)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i clip embed", "L2-normalised CLIP embeddings of images and texts, in input order.",
                   "--ckpt W --out F [--images FILES...] [--texts TEXTS...]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "Writes image_features (N, D) and text_features (M, D) as float32; metadata\n"
                   "\"config\" holds the model configuration."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("clip embed: unexpected argument '%s' (images go after --images)", cmd.pos[0]), 2;
    if (!out) return t2i_fail("clip embed: --out is required"), 2;
    if (images.n == 0 && texts.n == 0) return t2i_fail("clip embed: nothing to embed (give --images and/or --texts)"), 2;
    if (t2i_check_output_file("--out", out, NULL) != 0) return 2;
    if (need_ckpt(ckpt)) return 2;
    t2i_set_threads(threads);
    clip_model *m = open_model(ckpt, vocab);
    if (!m) return 1;
    int D = m->cfg.embed_dim, rc = 0;
    float *fi = t2i_malloc((size_t)(images.n ? images.n : 1) * D * sizeof(float));
    float *ft = t2i_malloc((size_t)(texts.n ? texts.n : 1) * D * sizeof(float));
    if (images.n && clip_embed_files(m, images.v, images.n, fi) != 0) rc = t2i_fail_err();
    if (!rc && texts.n && clip_embed_texts(m, texts.v, texts.n, ft) != 0) rc = t2i_fail_err();
    if (!rc) {
        st_writer *w = st_writer_new();
        char *cj = clip_config_to_json(&m->cfg);
        st_writer_meta(w, "config", cj);
        st_writer_meta(w, "ckpt", ckpt);
        free(cj);
        if (images.n) st_writer_add_f32(w, "image_features", ST_F32, 2, (int64_t[]){images.n, D}, fi);
        if (texts.n) st_writer_add_f32(w, "text_features", ST_F32, 2, (int64_t[]){texts.n, D}, ft);
        if (st_writer_save(w, out) != 0) rc = t2i_fail_err();
        else printf("clip embed: %d image and %d text embeddings of size %d -> %s\n", images.n, texts.n, D, out);
        st_writer_free(w);
    }
    free(fi), free(ft);
    clip_free(m);
    return rc;
}

/* --------------------------------------------------------------- classify ---- */

static const char *const default_templates[] = {
    "a photo of a {}.",  "a picture of a {}.",       "an image of a {}.",    "a close-up photo of a {}.",
    "a photo of the {}.", "a blurry photo of a {}.", "a drawing of a {}.",  "a product photo of a {}.",
};

/* Reads templates from a file: one per line, each with at least one {}, blank lines
 * skipped. -1 with "PATH:LINE: problem". */
static int read_templates(const char *path, char ***out) {
    size_t len = 0;
    char *text = t2i_read_file(path, &len, 1 << 20);
    if (!text) return -1;
    size_t bad = t2i_utf8_invalid_at(text, len);
    int n = 0, cap = 16, line = 0, rc = 0;
    char **v = t2i_malloc((size_t)cap * sizeof(char *));
    for (char *s = text, *next; s && rc == 0; s = next) {
        next = strchr(s, '\n');
        if (next) *next++ = 0;
        line++;
        if (bad < len && (size_t)(s - text) + strlen(s) >= bad) {
            rc = t2i_error_set("%s:%d: not valid UTF-8 (byte %zu of the file)", path, line, bad);
            break;
        }
        s[strcspn(s, "\r")] = 0;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) continue;
        if (!strstr(s, "{}")) {
            rc = t2i_error_set("%s:%d: template has no {} for the label", path, line);
            break;
        }
        if (n == cap) v = t2i_realloc(v, (size_t)(cap *= 2) * sizeof(char *));
        v[n++] = t2i_strdup(s);
    }
    free(text);
    if (rc == 0 && n == 0) rc = t2i_error_set("%s: no templates", path);
    if (rc != 0) {
        free_strs(v, n);
        return -1;
    }
    *out = v;
    return n;
}

typedef struct {
    float p;
    int k;
} prob_idx;

static int cmp_prob(const void *a, const void *b) {
    const prob_idx *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : x->k - y->k;
}

static int cmd_classify(int argc, char **argv) {
    const char *ckpt = NULL, *vocab = NULL, *templates = NULL;
    t2i_strs labels = {0};
    int threads = 0, json = 0, tta_flip = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "CLIP weights"},
        {"--tta-flip", T2I_BOOL, &tta_flip, "also embed each image mirrored and average the two (twice the work)"},
        {"--vocab", T2I_STR, &vocab, "BPE vocabulary (t2i checkpoints carry theirs)"},
        {"--labels", T2I_STRS, &labels, "candidate labels (at least 2)"},
        {"--templates", T2I_STR, &templates, "prompt ensembling: 'default' (8 built-in templates) or a file, one per line with {}"},
        {"--json", T2I_BOOL, &json, "print one JSON object per image"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i clip classify", "Zero-shot classification of images among text labels.",
                   "IMAGE... --ckpt W --labels L1 L2 ... [--templates default|FILE]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Prints each label's probability softmax(exp(logit_scale) * cosine), highest first."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos == 0) return t2i_fail("clip classify: no image given"), 2;
    if (labels.n < 2) return t2i_fail("clip classify: give at least two --labels"), 2;
    if (need_ckpt(ckpt)) return 2;
    if (check_texts("--labels", labels.v, labels.n, 1) != 0) return t2i_fail_err();
    t2i_set_threads(threads);
    char **tv = NULL;
    int nt = 1, own_t = 0;
    const char *plain[1] = {"{}"};
    const char *const *tmpl = plain;
    if (templates && strcmp(templates, "default") == 0) {
        tmpl = default_templates;
        nt = (int)(sizeof default_templates / sizeof default_templates[0]);
    } else if (templates) {
        nt = read_templates(templates, &tv);
        if (nt < 0) return t2i_fail_err();
        tmpl = (const char *const *)tv;
        own_t = 1;
    }
    clip_model *m = open_model(ckpt, vocab);
    int rc = m ? 0 : 1;
    if (m) clip_set_tta_flip(m, tta_flip);
    int D = m ? m->cfg.embed_dim : 0, K = labels.n, N = cmd.npos;
    float *te = NULL, *ie = NULL, *sim = NULL;
    if (!rc) {
        te = t2i_malloc((size_t)K * D * sizeof(float));
        ie = t2i_malloc((size_t)N * D * sizeof(float));
        sim = t2i_malloc((size_t)N * K * sizeof(float));
        if (class_embeddings(m, labels.v, K, tmpl, nt, te) != 0 || clip_embed_files(m, cmd.pos, N, ie) != 0)
            rc = t2i_fail_err();
    }
    if (!rc) {
        clip_cosine(ie, N, te, K, D, sim);
        float s = clip_logit_scale_exp(m);
        prob_idx *pi = t2i_malloc((size_t)K * sizeof *pi);
        for (int i = 0; i < N; i++) {
            float *r = sim + (size_t)i * K, mx = -INFINITY;
            for (int k = 0; k < K; k++) mx = fmaxf(mx, s * r[k]);
            double z = 0;
            for (int k = 0; k < K; k++) z += exp(s * r[k] - mx);
            for (int k = 0; k < K; k++) pi[k] = (prob_idx){(float)(exp(s * r[k] - mx) / z), k};
            qsort(pi, (size_t)K, sizeof *pi, cmp_prob);
            if (json) {
                printf("{\"image\":");
                json_str(stdout, cmd.pos[i]);
                printf(",\"labels\":[");
                for (int k = 0; k < K; k++) {
                    printf("%s{\"label\":", k ? "," : "");
                    json_str(stdout, labels.v[pi[k].k]);
                    printf(",\"prob\":%.6f,\"cosine\":%.6f}", pi[k].p, r[pi[k].k]);
                }
                printf("]}\n");
            } else {
                printf("%s%s\n", i ? "\n" : "", cmd.pos[i]);
                for (int k = 0; k < K; k++) printf("  %6.2f%%  %s\n", 100.0 * pi[k].p, labels.v[pi[k].k]);
            }
        }
        free(pi);
    }
    free(te), free(ie), free(sim);
    if (own_t) free_strs(tv, nt);
    clip_free(m);
    return rc;
}

/* --------------------------------------------------------------- zeroshot ---- */

/* The 80 pairs' text embeddings (K, D): canonical captions, or the templates' ensemble. */
static int fc32_text_embeddings(clip_model *m, int ensemble, float *te) {
    int K = FC32_N_CANONICAL, D = m->cfg.embed_dim, T = ensemble ? FC32_N_TEMPLATES : 1;
    char *buf = t2i_malloc((size_t)K * T * FC32_CAPTION_MAX);
    const char **caps = t2i_malloc((size_t)K * T * sizeof(char *));
    for (int k = 0; k < K; k++)
        for (int t = 0; t < T; t++) {
            char *c = buf + ((size_t)k * T + t) * FC32_CAPTION_MAX;
            fc32_caption(c, FC32_CAPTION_MAX, k / FC32_N_CLASSES, k % FC32_N_CLASSES, t);
            caps[(size_t)k * T + t] = c;
        }
    float *e = t2i_malloc((size_t)K * T * D * sizeof(float));
    int rc = clip_embed_texts(m, caps, K * T, e);
    for (int k = 0; rc == 0 && k < K; k++) {
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += e[((size_t)k * T + t) * D + d];
            te[(size_t)k * D + d] = (float)(s / T);
        }
        clip_normalize_rows(te + (size_t)k * D, 1, D);
    }
    free(e), free(caps), free(buf);
    return rc;
}

int clip_eval_fc32(clip_model *m, const t2i_dataset *ds, int n, int ensemble, clip_fc32_eval *ev) {
    return clip_eval_fc32_models(&m, 1, ds, n, ensemble, ev);
}

/* sim (n, K) += the cosine similarities of the first n items of ds to the 80 pairs in m. */
static int fc32_add_sims(clip_model *m, const t2i_dataset *ds, int n, int ensemble, float *sim) {
    int R = m->cfg.image_resolution, D = m->cfg.embed_dim, K = FC32_N_CANONICAL;
    if (ds->C != 3 || ds->H != R || ds->W != R)
        return t2i_error_set("%s: images are %dx%dx%d, the model wants 3x%dx%d", ds->source, ds->C, ds->H, ds->W, R, R);
    float *te = t2i_malloc((size_t)K * D * sizeof(float));
    if (fc32_text_embeddings(m, ensemble, te) != 0) {
        free(te);
        return -1;
    }
    const int chunk = 256;
    size_t item = (size_t)3 * R * R;
    float *x = t2i_malloc_aligned((size_t)chunk * item * sizeof(float));
    float *ie = t2i_malloc((size_t)n * D * sizeof(float));
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int b = T2I_MIN(chunk, n - i0);
        for (int i = 0; i < b; i++) {
            t2i_dataset_get(ds, i0 + i, x + i * item);
            clip_normalize_m11(x + i * item, x + i * item, R);
        }
        clip_embed_pixels(m, x, b, ie + (size_t)i0 * D);
    }
    clip_cosine_add(ie, n, te, K, D, sim);
    free(te), t2i_free(x), free(ie);
    return 0;
}

int clip_eval_fc32_models(clip_model *const *ms, int nm, const t2i_dataset *ds, int n, int ensemble,
                          clip_fc32_eval *ev) {
    memset(ev, 0, sizeof *ev);
    const int K = FC32_N_CANONICAL;
    if (n <= 0 || n > ds->n) n = ds->n;
    int *label = t2i_malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        int colour, cls;
        if (fc32_item(ds, i, &colour, &cls) != 0) {
            free(label);
            return t2i_error_set("%s: item %d has no FC32 caption", ds->source, i);
        }
        label[i] = colour * FC32_N_CLASSES + cls;
    }
    /* an ensemble's similarity: the sum over its models (the same ranking as their mean) */
    float *sim = t2i_calloc((size_t)n * K, sizeof(float));
    for (int k = 0; k < nm; k++)
        if (fc32_add_sims(ms[k], ds, n, ensemble, sim) != 0) {
            free(label), free(sim);
            return -1;
        }
    int *t1 = t2i_malloc((size_t)n * sizeof(int)), *t5 = t2i_malloc((size_t)n * sizeof(int));
    int *pred = t2i_malloc((size_t)n * sizeof(int));
    rank_hits(sim, n, K, label, t1, t5, pred);
    long h1 = 0, h5 = 0, a1 = 0, a5 = 0, ca = 0, co = 0;
    for (int i = 0; i < n; i++) {
        int colour = label[i] / FC32_N_CLASSES, cls = label[i] % FC32_N_CLASSES;
        a1 += t1[i], a5 += t5[i];
        ca += pred[i] % FC32_N_CLASSES == cls;
        co += pred[i] / FC32_N_CLASSES == colour;
        if (fc32_is_held_out(colour, cls)) ev->n_held++, h1 += t1[i], h5 += t5[i];
    }
    ev->n = n;
    ev->top1 = (double)a1 / n, ev->top5 = (double)a5 / n;
    ev->class_acc = (double)ca / n, ev->colour_acc = (double)co / n;
    ev->held_top1 = ev->n_held ? (double)h1 / ev->n_held : 0, ev->held_top5 = ev->n_held ? (double)h5 / ev->n_held : 0;
    free(label), free(sim), free(t1), free(t5), free(pred);
    return 0;
}

/* Classifies a labelled dataset among K prompts; prints and fills top1/top5. */
static int eval_labelled(clip_model *m, const t2i_dataset *ds, const char *const *names, int K, const char *tmpl, int n,
                         double *top1, double *top5) {
    int R = m->cfg.image_resolution, D = m->cfg.embed_dim;
    float *te = t2i_malloc((size_t)K * D * sizeof(float));
    const char *const t[1] = {tmpl};
    if (class_embeddings(m, names, K, t, 1, te) != 0) {
        free(te);
        return -1;
    }
    const int chunk = 256;
    size_t item = (size_t)3 * R * R;
    float *x = t2i_malloc_aligned((size_t)chunk * item * sizeof(float));
    float *ie = t2i_malloc((size_t)n * D * sizeof(float));
    int rc = 0;
    for (int i0 = 0; i0 < n && rc == 0; i0 += chunk) {
        int b = T2I_MIN(chunk, n - i0);
        for (int i = 0; i < b && rc == 0; i++) {
            if (t2i_dataset_get(ds, i0 + i, x + i * item) != 0) rc = -1;
            clip_normalize_m11(x + i * item, x + i * item, R);
        }
        if (rc == 0) clip_embed_pixels(m, x, b, ie + (size_t)i0 * D);
    }
    if (rc == 0) {
        float *sim = t2i_malloc((size_t)n * K * sizeof(float));
        clip_cosine(ie, n, te, K, D, sim);
        int *t1 = t2i_malloc((size_t)n * sizeof(int)), *t5 = t2i_malloc((size_t)n * sizeof(int));
        rank_hits(sim, n, K, ds->labels, t1, t5, NULL);
        long a1 = 0, a5 = 0;
        for (int i = 0; i < n; i++) a1 += t1[i], a5 += t5[i];
        *top1 = (double)a1 / n, *top5 = (double)a5 / n;
        free(sim), free(t1), free(t5);
    }
    free(te), t2i_free(x), free(ie);
    return rc;
}

/* A caption folder as a classification set: its distinct captions are the classes. */
static void captions_as_labels(t2i_dataset *ds) {
    ds->labels = t2i_malloc((size_t)ds->n * sizeof(int));
    ds->class_names = t2i_malloc((size_t)ds->n * sizeof(char *));
    ds->n_classes = 0;
    for (int i = 0; i < ds->n; i++) {
        int k = 0;
        while (k < ds->n_classes && strcmp(ds->class_names[k], ds->captions[i]) != 0) k++;
        if (k == ds->n_classes) ds->class_names[ds->n_classes++] = t2i_strdup(ds->captions[i]);
        ds->labels[i] = k;
    }
}

static int cmd_zeroshot(int argc, char **argv) {
    const char *ckpt = NULL, *vocab = NULL, *data = "fashion-captions:test", *prompts = "a photo of a {}";
    int threads = 0, n = 0, json = 0, ensemble = 0, tta_flip = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "CLIP weights; several separated by commas: an ensemble (fashion-captions)"},
        {"--tta-flip", T2I_BOOL, &tta_flip, "also embed each image mirrored and average the two (twice the work)"},
        {"--vocab", T2I_STR, &vocab, "BPE vocabulary (t2i checkpoints carry theirs)"},
        {"--ensemble", T2I_BOOL, &ensemble, "fashion-captions: each pair's embedding averaged over FC32's 8 caption templates"},
        {"--data", T2I_STR, &data, "fashion-captions[:test], fashion-mnist[:test], or a folder (class folders or captions)"},
        {"--prompts", T2I_STR, &prompts, "prompt template for class names ({} = the name; not used for captions)"},
        {"--n", T2I_INT, &n, "evaluate only the first N items (0 = all)"},
        {"--json", T2I_BOOL, &json, "also print the figures as one JSON line"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i clip zeroshot", "Zero-shot top-1 / top-5 accuracy of a CLIP on a labelled dataset.",
                   "--ckpt W [--data SPEC] [--prompts TEMPLATE]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "fashion-captions: every test item against the 80 \"a {colour} {class}\" captions; the\n"
                   "eight colour/class pairs held out of FC32's train split are also reported alone.\n"
                   "With --ensemble each pair is instead the renormalised mean of its captions in the\n"
                   "8 templates FC32 draws from (\"a photo of a red sneaker\", ...), as the CLIP paper\n"
                   "ensembles prompts; the plain captions remain the default.\n"
                   "fashion-mnist: the 10 class names in --prompts (gray images replicated to RGB)."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("clip zeroshot: unexpected argument '%s'", cmd.pos[0]), 2;
    if (n < 0) return t2i_fail("--n must be >= 0"), 2;
    if (need_ckpt(ckpt)) return 2;
    if (check_texts("--prompts", &prompts, 1, 0) != 0) return t2i_fail_err();
    if (!strstr(prompts, "{}")) return t2i_fail("--prompts: '%s' has no {} for the class name", prompts), 2;
    t2i_set_threads(threads);
    /* --ckpt A,B,...: an ensemble (FC32 only) */
    clip_model *ms[8];
    int nm = clip_load_list(ckpt, vocab, 8, ms);
    if (nm < 0) return nm == -2 ? (t2i_fail("--ckpt: %s", t2i_error_msg()), 2) : t2i_fail_err();
    for (int k = 0; k < nm; k++) clip_set_tta_flip(ms[k], tta_flip);
    clip_model *m = ms[0];
    int R = m->cfg.image_resolution, rc = 0;
    char spec[1100];
    int fc32 = strncmp(data, "fashion-captions", 16) == 0, fm = strncmp(data, "fashion-mnist", 13) == 0;
    snprintf(spec, sizeof spec, "%s%s", data, (fc32 || fm) && !strchr(data, ':') ? ":test" : "");
    t2i_dataset ds;
    if (t2i_dataset_open(&ds, spec, 3, R, R) != 0) {
        for (int k = 0; k < nm; k++) clip_free(ms[k]);
        return t2i_fail_err();
    }
    if (!fc32 && nm > 1) {
        rc = t2i_fail("clip zeroshot: an ensemble (--ckpt A,B) is for fashion-captions only");
    } else if (fc32) {
        clip_fc32_eval ev;
        if (clip_eval_fc32_models(ms, nm, &ds, n, ensemble, &ev) != 0) rc = t2i_fail_err();
        else {
            printf("zero-shot %s: %d images, 80 colour x class %s: top-1 %.2f%%, top-5 %.2f%%\n", spec, ev.n,
                   ensemble ? "pairs (8 templates ensembled)" : "captions", 100 * ev.top1, 100 * ev.top5);
            if (ev.n_held > 0)
                printf("  held-out pairs (%d images): top-1 %.2f%%, top-5 %.2f%%\n", ev.n_held, 100 * ev.held_top1,
                       100 * ev.held_top5);
            else /* the train split never shows them */
                printf("  held-out pairs: none among these images\n");
            printf("  class of the top-1 caption right: %.2f%%; colour right: %.2f%%\n", 100 * ev.class_acc,
                   100 * ev.colour_acc);
            if (json) {
                char held[96] = "\"held_top1\":null,\"held_top5\":null"; /* no held-out images: no accuracy */
                if (ev.n_held > 0)
                    snprintf(held, sizeof held, "\"held_top1\":%.4f,\"held_top5\":%.4f", ev.held_top1, ev.held_top5);
                printf("{\"data\":\"%s\",\"ensemble\":%s,\"n\":%d,\"top1\":%.4f,\"top5\":%.4f,\"held_n\":%d,%s,"
                       "\"class_acc\":%.4f,\"colour_acc\":%.4f}\n",
                       spec, ensemble ? "true" : "false", ev.n, ev.top1, ev.top5, ev.n_held, held, ev.class_acc,
                       ev.colour_acc);
            }
        }
    } else {
        if (!ds.labels && ds.captions) captions_as_labels(&ds);
        if (!ds.labels || ds.n_classes < 2) {
            rc = t2i_fail("%s: needs labels (class folders with at least 2 classes, or captions)", ds.source);
        } else {
            int use = n > 0 && n < ds.n ? n : ds.n;
            double top1, top5;
            int captions = ds.captions && !fm;
            if (eval_labelled(m, &ds, (const char *const *)ds.class_names, ds.n_classes, captions ? "{}" : prompts, use,
                              &top1, &top5) != 0)
                rc = t2i_fail_err();
            else {
                /* with 5 classes or fewer every item is in the top 5: not a figure */
                int has5 = ds.n_classes > 5;
                char t5[48] = "", j5[32] = "null";
                if (has5) snprintf(t5, sizeof t5, ", top-5 %.2f%%", 100 * top5), snprintf(j5, sizeof j5, "%.4f", top5);
                printf("zero-shot %s: %d images, %d classes (%s): top-1 %.2f%%%s\n", spec, use, ds.n_classes,
                       captions ? "captions" : prompts, 100 * top1, t5);
                if (json) {
                    printf("{\"data\":");
                    json_str(stdout, spec);
                    printf(",\"n\":%d,\"classes\":%d,\"top1\":%.4f,\"top5\":%s}\n", use, ds.n_classes, top1, j5);
                }
            }
        }
    }
    t2i_dataset_free(&ds);
    for (int k = 0; k < nm; k++) clip_free(ms[k]);
    return rc;
}

/* ----------------------------------------------------------------- rerank ---- */

typedef struct {
    float s;
    int i;
} score_idx;

static int cmp_score(const void *a, const void *b) {
    const score_idx *x = a, *y = b;
    return x->s < y->s ? 1 : x->s > y->s ? -1 : x->i - y->i;
}

static int cmd_rerank(int argc, char **argv) {
    const char *ckpt = NULL, *vocab = NULL, *prompt = NULL, *grid = NULL;
    int top = 32, json = 0, threads = 0, cell = 0, tta_flip = 0;
    t2i_flag flags[] = {
        {"--ckpt", T2I_STR, &ckpt, "CLIP weights; several separated by commas: an ensemble (mean cosine)"},
        {"--tta-flip", T2I_BOOL, &tta_flip, "also embed each image mirrored and average the two (twice the work)"},
        {"--vocab", T2I_STR, &vocab, "BPE vocabulary (t2i checkpoints carry theirs)"},
        {"--prompt", T2I_STR, &prompt, "the caption to rank against"},
        {"--top", T2I_INT, &top, "how many to print / put in the grid"},
        {"--json", T2I_BOOL, &json, "print a JSON array (rank, path, score, cosine)"},
        {"--grid", T2I_STR, &grid, "write the top images as one PNG grid, in rank order"},
        {"--grid-cell", T2I_INT, &cell, "grid cell size in pixels (0 = the first image's shorter side, at most 256)"},
        {"--threads", T2I_INT, &threads, "threads (0 = all cores)"},
    };
    t2i_cmd cmd = {"t2i clip rerank", "Rank images by CLIP similarity to a caption.",
                   "--ckpt W --prompt TEXT IMAGES... [--top K] [--json] [--grid F]", flags,
                   (int)(sizeof flags / sizeof flags[0]),
                   "Score = 100 x cosine similarity of the normalised embeddings (DALL-E's CLIP\n"
                   "ranking); with --ckpt A,B the mean over the CLIPs, as t2i generate ranks with\n"
                   "an ensemble. Arguments may be image files or folders of images."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (!prompt) return t2i_fail("clip rerank: --prompt is required"), 2;
    if (cmd.npos == 0) return t2i_fail("clip rerank: no images given"), 2;
    if (t2i_check_range_i("--top", top, 1, 1 << 20) || t2i_check_range_i("--grid-cell", cell, 0, 4096)) return 2;
    if (need_ckpt(ckpt)) return 2;
    if (check_texts("--prompt", &prompt, 1, 0) != 0) return t2i_fail_err();
    if (grid && t2i_check_output_file("--grid", grid, ".png") != 0) return 2;
    t2i_set_threads(threads);
    char **files = NULL;
    int n = expand_images(cmd.pos, cmd.npos, &files);
    if (n < 0) return t2i_fail_err();
    if (n == 0) {
        free(files);
        return t2i_fail("clip rerank: no image files (png, jpg, jpeg, bmp, gif, tga, ppm, webp) in %s%s", cmd.pos[0],
                        cmd.npos > 1 ? " and the other arguments" : "");
    }
    /* --ckpt A,B,...: an ensemble, each image's cosine the mean of the CLIPs' */
    clip_model *ms[8];
    int nm = clip_load_list(ckpt, vocab, 8, ms), rc = 0;
    if (nm < 0) {
        free_strs(files, n);
        return nm == -2 ? (t2i_fail("--ckpt: %s", t2i_error_msg()), 2) : t2i_fail_err();
    }
    float *cos = t2i_calloc((size_t)n, sizeof(float));
    for (int e = 0; e < nm && !rc; e++) {
        int D = ms[e]->cfg.embed_dim;
        clip_set_tta_flip(ms[e], tta_flip);
        float *t = t2i_malloc((size_t)D * sizeof(float)), *f = t2i_malloc((size_t)n * D * sizeof(float));
        if (clip_embed_texts(ms[e], &prompt, 1, t) != 0 ||
            clip_embed_files(ms[e], (const char *const *)files, n, f) != 0)
            rc = t2i_fail_err();
        else clip_cosine_add(f, n, t, 1, D, cos);
        free(t), free(f);
    }
    for (int e = 0; e < nm; e++) clip_free(ms[e]);
    for (int i = 0; !rc && nm > 1 && i < n; i++) cos[i] /= (float)nm;
    score_idx *si = t2i_malloc((size_t)n * sizeof *si);
    int k = T2I_MIN(top, n);
    if (!rc) {
        for (int i = 0; i < n; i++) si[i] = (score_idx){cos[i], i};
        qsort(si, (size_t)n, sizeof *si, cmp_score);
        if (json) {
            printf("[");
            for (int r = 0; r < k; r++) {
                printf("%s{\"rank\":%d,\"path\":", r ? "," : "", r + 1);
                json_str(stdout, files[si[r].i]);
                printf(",\"score\":%.4f,\"cosine\":%.6f}", 100.0 * si[r].s, si[r].s);
            }
            printf("]\n");
        } else {
            for (int r = 0; r < k; r++) printf("%4d  %8.4f  %s\n", r + 1, 100.0 * si[r].s, files[si[r].i]);
        }
    }
    if (!rc && grid) {
        /* cells: each image resized + centre cropped to a square, in rank order */
        t2i_image first;
        if (t2i_image_load(&first, files[si[0].i], 3) != 0) rc = t2i_fail_err();
        int S = cell;
        if (!rc && S == 0) S = T2I_MIN(256, T2I_MIN(first.w, first.h));
        if (!rc) t2i_image_free(&first);
        float *cells = rc ? NULL : t2i_malloc((size_t)k * 3 * S * S * sizeof(float));
        for (int r = 0; r < k && !rc; r++) {
            t2i_image img, sq;
            if (t2i_image_load(&img, files[si[r].i], 3) != 0) {
                rc = t2i_fail_err();
                break;
            }
            t2i_image_resize_crop(&sq, &img, S, T2I_RESIZE_BICUBIC);
            t2i_image_to_chw(cells + (size_t)r * 3 * S * S, &sq);
            t2i_image_free(&img), t2i_image_free(&sq);
        }
        int nrow = (int)ceil(sqrt((double)k));
        if (!rc && t2i_save_grid(grid, cells, k, 3, S, S, nrow) != 0) rc = t2i_fail_err();
        if (!rc && !json) printf("grid of the top %d -> %s\n", k, grid);
        free(cells);
    }
    free(si), free(cos);
    free_strs(files, n);
    return rc;
}

/* --------------------------------------------------------------- dispatch ---- */

int clip_cmd(int argc, char **argv) {
    static const t2i_subcmd subs[] = {
        {"train", clip_cmd_train, "train a CLIP contrastively (default: the small FC32 model)"},
        {"tokenize", clip_cmd_tokenize, "print CLIP BPE token ids of texts"},
        {"embed", cmd_embed, "normalised image / text embeddings to a safetensors file"},
        {"classify", cmd_classify, "zero-shot classification of images among labels"},
        {"zeroshot", cmd_zeroshot, "zero-shot accuracy on FC32, Fashion-MNIST or a folder"},
        {"rerank", cmd_rerank, "rank images by similarity to a caption"},
    };
    return t2i_dispatch("t2i clip", "CLIP: training, embeddings, zero-shot classification, reranking.", subs,
                        (int)(sizeof subs / sizeof subs[0]), argc, argv);
}
