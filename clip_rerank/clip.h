/* clip.h - OpenAI's CLIP (ViT image tower + causal text tower): model, loading of OpenAI,
 * Hugging Face and t2i checkpoints, preprocessing, the contrastive loss, training and the
 * `t2i clip` commands.
 *
 * Architecture (openai/CLIP model.py, ViT variant), widths W_v (vision), W_t (text):
 *   image (N, 3, R, R), normalised  -> patches (N*G, 3*P*P), G = (R/P)^2, in Conv2d weight
 *       order (c, ky, kx) -> x = patches conv1^T (conv1 (W_v, 3, P, P), no bias: a
 *       Conv2d with kernel = stride = P is exactly this GEMM)
 *       -> [class_embedding; x] + positional_embedding  (N, G+1, W_v) -> ln_pre
 *       -> transformer (full attention) -> ln_post on position 0 -> @ proj (W_v, D)
 *   tokens (M, context) -> token_embedding + positional_embedding -> transformer (causal)
 *       -> ln_final at the EOT position (argmax of the token ids, as OpenAI) -> @ text_projection
 *   logits = exp(logit_scale) * normalise(image) normalise(text)^T
 * proj and text_projection are used as x @ P (not transposed); every transformer block is
 * nn/transformer.h's (OpenAI parameter names, QuickGELU or GELU).
 *
 * Text speed-up: the text tower runs only positions 0..T_eff-1, T_eff = 1 + the largest EOT
 * position in the batch. With the causal mask a position never sees later ones, so the
 * EOT features are exactly those of a full-context pass, while a short caption costs
 * T_eff/context of it (8/77 for "a photo of a cat").
 *
 * Convolutional stem (vision_stem = C > 0, a t2i extension; OpenAI's files never have it):
 * the patch embedding conv1 is replaced by 3x3 convolutions, each followed by BatchNorm
 * and ReLU: one at stride 1 to C channels, then log2(P) at stride 2 doubling the channels
 * (capped at W_v), each of those followed by vision_stem_extra more at stride 1 with the
 * same channels (none by default; with some, a deeper VGG-like stem), then a 1x1 convolution
 * with bias to W_v; the (W_v, R/P, R/P) map it
 * gives is read as the same G = (R/P)^2 tokens, row-major, as the patches were ("Early
 * convolutions help transformers see better", Xiao et al. 2021). P must be a power of
 * two. Its parameters are "visual.stem.<i>.weight" etc. (nn/seq.h names, BatchNorm
 * running statistics as buffers). A forward with a tape (training) normalises by the
 * batch's statistics and updates the running ones; without one (inference) it uses the
 * running statistics, as PyTorch's train() / eval(). The stem's cost does not depend on
 * the token count, so a small grid (patch 8 at 32x32: 16 tokens) keeps the transformer
 * cheap while every pixel still passes through a learned local filter bank.
 *
 * Parameter names are OpenAI's state_dict keys (visual.conv1.weight, visual.proj,
 * transformer.resblocks.N.attn.in_proj_weight, text_projection, logit_scale, ...), so an
 * OpenAI file loads by name and t2i checkpoints (model "clip") carry the same names.
 *
 * Usage (inference, e.g. reranking):
 *     clip_model *m = clip_load("ViT-B-32.safetensors", "bpe_simple_vocab_16e6.txt.gz");
 *     if (!m) die(t2i_error_msg());
 *     float *t = malloc(D floats), *f = malloc(n * D floats);
 *     clip_embed_texts(m, &caption, 1, t);                 // L2-normalised
 *     clip_embed_images(m, imgs, n, 3, H, W, f);            // NCHW in [-1, 1], any size
 *     clip_cosine(f, n, t, 1, clip_embed_dim(m), scores);   // (n, 1)
 *     clip_free(m);
 *
 * Failures: loaders and embedders return NULL / -1 after t2i_error_set() with one line
 * naming the file and the problem (a missing tensor or a wrong shape names the tensor and
 * both shapes; a caption that is not UTF-8 says so; a checkpoint without a vocabulary asks
 * for --vocab). Shape mismatches between caller and model are T2I_ASSERT contracts.
 */
#ifndef T2I_CLIP_H
#define T2I_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "image.h"
#include "ops.h"
#include "params.h"
#include "rng.h"
#include "seq.h"
#include "tokenizer.h"
#include "transformer.h"

typedef struct {
    int embed_dim;                                    /* D: output of both towers */
    int image_resolution, vision_patch_size;          /* R, P (R % P == 0) */
    int vision_width, vision_layers, vision_heads;
    int context_length, vocab_size;
    int transformer_width, transformer_layers, transformer_heads;
    int mlp_ratio;                                    /* 4 in every CLIP */
    nn_act act;                                       /* NN_ACT_QUICK_GELU or NN_ACT_GELU_ERF */
    float ln_eps;                                     /* 1e-5 */
    int vision_stem;  /* 0: OpenAI's patch embedding (conv1); C > 0: a convolutional stem
                       * of base width C in its place (see "Convolutional stem" below) */
    int vision_stem_extra; /* stride-1 3x3 convolutions after each stride-2 one (0: none) */
} clip_config;

/* The toolkit's small model for FC32 (32x32 images, learned BPE vocabulary). */
void clip_config_default(clip_config *c);
/* OpenAI's ViT-B/32 (bench/README.md B3). */
void clip_config_vit_b32(clip_config *c);
/* Returns 0, or -1 with a message naming the bad field. */
int clip_config_check(const clip_config *c);
/* JSON with OpenAI's build_model names plus "act" and "ln_eps" (heap string). */
char *clip_config_to_json(const clip_config *c);
/* Reads the keys present into c (absent keys keep c's values); -1 with a message naming
 * the key on bad JSON, a mistyped key or a value outside its range. */
int clip_config_from_json(clip_config *c, const char *json);
/* Forward FLOPs (2 x multiply-adds) per image and per caption of t tokens. */
double clip_image_flops(const clip_config *c);
double clip_text_flops(const clip_config *c, int t);

typedef struct clip_model {
    clip_config cfg;
    nn_params ps;
    nn_transformer vis, txt;
    nn_seq stem;      /* the convolutional stem (cfg.vision_stem > 0), else unused */
    /* indices into ps (conv1 is -1 with a stem) */
    int conv1, cls, vpos, ln_pre_w, ln_pre_b, ln_post_w, ln_post_b, proj;
    int tok_emb, tpos, ln_final_w, ln_final_b, text_proj, logit_scale;
    clip_tok *tok;    /* tokenizer, or NULL until one is attached */
    char *vocab;      /* merges text of a learned vocabulary (saved in t2i checkpoints), or NULL */
    char *path;       /* file it came from (messages), or NULL */
    nn_arena arena;   /* scratch of the embedding functions */
    int tta_flip;     /* clip_embed_pixels also embeds each image mirrored (clip_set_tta_flip) */
} clip_model;

#define CLIP_LOGIT_SCALE_INIT 2.6592600f  /* log(1 / 0.07) */
#define CLIP_LOGIT_SCALE_MAX 4.6051702f   /* log(100): OpenAI's clamp */

/* Registers and allocates every tensor (zeros). clip_model_init draws OpenAI's
 * initialize_parameters (token N(0, 0.02), positions N(0, 0.01), class/positions/proj
 * N(0, W_v^-0.5), text_projection N(0, W_t^-0.5), blocks as nn_tf_init_params CLIP -
 * applied to the vision blocks too, where OpenAI leaves PyTorch's defaults -, conv1
 * PyTorch's uniform, LayerNorms (1, 0), logit_scale log(1/0.07)). */
void clip_model_build(clip_model *m, const clip_config *cfg);
void clip_model_init(clip_model *m, t2i_rng *rng);
/* Sets AdamW's no_decay on gains, biases, embeddings and the logit scale. */
void clip_model_set_no_decay(clip_model *m);
void clip_model_free(clip_model *m);
/* For inference: packs the text tower's weight matrices once (nn_tf_pack_forward), so a
 * caption's few rows stream each weight once instead of BLAS re-packing it at every
 * product (a caption is 1.4x faster at one thread on ViT-B/32; one more copy of the text
 * tower's matrices in memory, as bf16 when the model was loaded from a bf16 checkpoint:
 * half the bytes to store and to read, the same features). clip_load does it; a model about to be trained must not be
 * packed (the copy would not follow the updates). Features differ from the unpacked
 * pass's by float rounding. */
void clip_text_pack(clip_model *m);
/* Changes the image resolution (a multiple of the patch size) of a model, keeping every
 * weight: the patch grid's position embeddings are resampled bilinearly (the class token's
 * is kept), as ViTs are fine-tuned at a higher resolution than they were trained at.
 * 0, or -1 with a message; m is unchanged on error. */
int clip_model_set_resolution(clip_model *m, int res);
/* (g0 x g0, W) -> (g1 x g1, W), PyTorch's bilinear interpolate with align_corners=False. */
void clip_resample_grid(const float *src, int g0, float *dst, int g1, int W);

/* ---- forward / backward ----
 * Tapes hold the activations backward needs (arena memory); pass NULL for inference. */
typedef struct {
    int N, G, T;              /* images, patches per image, positions G + 1 */
    nn_tape stem;             /* the convolutional stem's (when the model has one) */
    float *patches;           /* (N*G, 3*P*P) */
    float *conv1_out;         /* (N*G, W) patch embeddings (row n*G + gy*(R/P) + gx) */
    float *emb;               /* (N, T, W) [class; conv1_out] + positions (ln_pre's input) */
    float *ln_pre, *ln_pre_mean, *ln_pre_rstd;
    nn_tf_tape tf;
    float *cls_out;           /* (N, W) position 0 of the transformer output */
    float *ln_post, *ln_post_mean, *ln_post_rstd;
} clip_vis_tape;

typedef struct {
    int M, T;                 /* captions, positions computed (T_eff) */
    int *ids;                 /* (M, T) */
    int *eot;                 /* (M) EOT positions */
    float *emb;               /* (M, T, W) */
    nn_tf_tape tf;
    float *eot_x;             /* (M, W) transformer output at the EOT positions */
    float *ln, *ln_mean, *ln_rstd;
} clip_txt_tape;

/* images (N, 3, R, R), normalised -> feat (N, D), not normalised. */
void clip_image_forward(clip_model *m, clip_vis_tape *tape, nn_arena *a, const float *images, int N, float *feat);
/* tokens (M, context) -> feat (M, D), not normalised. */
void clip_text_forward(clip_model *m, clip_txt_tape *tape, nn_arena *a, const int32_t *tokens, int M, float *feat);
/* Add parameter gradients for dL/dfeat (N, D) / (M, D). */
void clip_image_backward(clip_model *m, clip_vis_tape *tape, nn_arena *a, const float *dfeat);
void clip_text_backward(clip_model *m, clip_txt_tape *tape, nn_arena *a, const float *dfeat);

/* Symmetric InfoNCE on N pairs: logits = exp(s) norm(img) norm(txt)^T, loss =
 * (CE(logits, diag) + CE(logits^T, diag)) / 2. group (may be NULL): pairs with equal group
 * ids are positives of each other (multi-positive InfoNCE: the target of row i is uniform
 * over {j : group[j] == group[i]}, the same for columns), so that two items with the same
 * caption are not pushed apart; NULL is the plain diagonal. When dimg/dtxt/ds are
 * non-NULL, ADDs the gradients w.r.t. the unnormalised features and s. acc (may be NULL):
 * share of rows whose argmax is a positive, averaged over both directions. Scratch from the
 * arena. */
float clip_contrastive_loss(float *dimg, float *dtxt, float *ds, float *acc, nn_arena *a, const float *img,
                            const float *txt, const int *group, int N, int D, float s);
/* One training forward/backward on N pairs (group as above): zeroes gradients, fills them;
 * returns the loss. */
float clip_train_grads(clip_model *m, nn_arena *a, const float *images, const int32_t *tokens, const int *group, int N,
                       float *acc);
/* The same in a data-parallel step (run/dist.h): images and tokens are this rank's rows
 * [lo, hi) of a global batch of N pairs (group: all N); the loss is over the global batch
 * (embeddings gathered from every rank), its gradient flows into this rank's rows.
 * lo = 0, hi = N is clip_train_grads. */
float clip_train_grads_part(clip_model *m, nn_arena *a, const float *images, const int32_t *tokens, const int *group,
                            int N, int lo, int hi, float *acc);
/* OpenAI's clamp of the logit scale to [0, log 100] (after each optimizer step). */
void clip_clamp_logit_scale(clip_model *m);

/* ---- loading and saving ---- */
/* Any of: a t2i checkpoint (model "clip"; its vocabulary is in the metadata), OpenAI names
 * (config from the shapes as build_model; heads from a "config" JSON in the metadata if
 * present, else width / 64), Hugging Face CLIPModel names (config.json beside the file
 * gives heads and hidden_act). vocab: a merges file or vocab.json; NULL = the checkpoint's
 * own, else vocab.json or bpe_simple_vocab_16e6.txt.gz beside the weights, else
 * $T2I_CLIP_VOCAB. Returns NULL with the error set. A model without any vocabulary loads
 * (clip_embed_texts then fails saying so) when allow_no_vocab is set. */
clip_model *clip_load_ex(const char *path, const char *vocab, int allow_no_vocab);
clip_model *clip_load(const char *path, const char *vocab);
/* An ensemble: the CLIPs of list, files separated by commas, into ms (at most max).
 * Returns how many; -2 with the error set when the list names none or more than max
 * (nothing loaded), -1 when a file does not load (none kept). */
int clip_load_list(const char *list, const char *vocab, int max, clip_model **ms);
void clip_free(clip_model *m);
/* t2i checkpoint: tensors under OpenAI names, metadata model "clip", config, vocab,
 * optional state and Adam moments. */
int clip_save(const clip_model *m, const char *path, const char *state_json, int with_optimizer, int bf16);
/* Loads a t2i checkpoint into a fresh model (moments too when with_optimizer); *state_json
 * gets the "state" metadata (heap, or NULL). */
int clip_load_ckpt(clip_model *m, const char *path, int with_optimizer, char **state_json);
/* Attaches a tokenizer (takes ownership); checks its vocabulary fits the embedding. */
int clip_set_tokenizer(clip_model *m, clip_tok *tok, const char *what);

/* ---- preprocessing (clip_preprocess.c) ----
 * OpenAI's transform: Resize(R, bicubic) of the shorter side on the 8-bit image (Pillow's
 * filter) -> CenterCrop(R) -> /255 -> Normalize(mean, std). */
extern const float clip_mean[3], clip_std[3];
/* img: any 8-bit image (gray replicated, alpha dropped) -> dst (3, R, R). */
void clip_preprocess_u8(float *dst, const t2i_image *img, int R);
/* src (C, H, W) floats in [-1, 1] (C = 1 or 3) -> dst (3, R, R): quantised to 8 bits
 * first, as if saved as PNG, so that in-memory and on-disk candidates rank alike. */
void clip_preprocess_f32(float *dst, const float *src, int C, int H, int W, int R);
/* (3, R, R) in [-1, 1] already at the model size -> normalised without quantising (the
 * training path: x01 = (x + 1) / 2). */
void clip_normalize_m11(float *dst, const float *src, int R);

/* ---- embeddings for callers (t2i generate, the commands) ----
 * Outputs are L2-normalised rows (n, D). Work in batches of CLIP_EMBED_BATCH. */
#define CLIP_EMBED_BATCH 32
int clip_embed_dim(const clip_model *m);
int clip_resolution(const clip_model *m);
/* exp(logit_scale) */
float clip_logit_scale_exp(const clip_model *m);
/* -1 with "WHAT: the CLIP checkpoint PATH has embedding size d, expected e" if they differ. */
int clip_check_embed_dim(const clip_model *m, int expected, const char *what);
/* Tokenizes texts into (n, context) ids; -1 on invalid UTF-8 (the message says which text)
 * or without a tokenizer. Texts longer than the context are truncated as clip.tokenize. */
int clip_tokenize(clip_model *m, const char *const *texts, int n, int32_t *tokens);
int clip_embed_texts(clip_model *m, const char *const *texts, int n, float *out);
int clip_embed_tokens(clip_model *m, const int32_t *tokens, int n, float *out);
/* NCHW images in [-1, 1], any size, C = 1 or 3 (clip_preprocess_f32). */
int clip_embed_images(clip_model *m, const float *imgs, int n, int C, int H, int W, float *out);
/* Already preprocessed (n, 3, R, R). With test-time flipping on, an image's embedding is
 * the normalised sum of its own and its mirror image's normalised embeddings (so its
 * cosine to any text is proportional to the mean of theirs; twice the work). */
int clip_embed_pixels(clip_model *m, const float *pixels, int n, float *out);
/* Test-time flipping for every image embedding of m from now on (0 = off, the default). */
void clip_set_tta_flip(clip_model *m, int on);
/* Image files (PNG/JPEG...) through clip_preprocess_u8; -1 names an unreadable file. */
int clip_embed_files(clip_model *m, const char *const *paths, int n, float *out);
/* Decoded 8-bit images (any size and channels) through clip_preprocess_u8 (clip_score.c). */
void clip_embed_u8(clip_model *m, const t2i_image *imgs, int n, float *out);
/* Zero-shot: prob[k] = softmax_k(exp(logit_scale) * cosine(img, label k)), labels embedded
 * as they are (no template); cosine (may be NULL) gets the similarities. -1 when a label
 * cannot be tokenized. */
int clip_zeroshot_probs(clip_model *m, const t2i_image *img, const char *const *labels, int K, float *prob,
                        float *cosine);
/* out (n_img, n_txt) = img txt^T (cosine similarities of normalised rows). */
void clip_cosine(const float *img, int n_img, const float *txt, int n_txt, int D, float *out);
/* out += the same: an ensemble's summed similarities, a model at a time. */
void clip_cosine_add(const float *img, int n_img, const float *txt, int n_txt, int D, float *out);
/* L2-normalise rows in place. */
void clip_normalize_rows(float *x, int n, int D);

/* Cosine similarity of each image (NCHW in [-1, 1], any size) with one caption: what the
 * commands print x 100 (as DALL-E's reranking). -1 on a caption error. */
int clip_score_images(clip_model *m, const char *caption, const float *imgs, int n, int C, int H, int W,
                      float *scores);

/* ---- zero-shot evaluation on FC32 (clip_cmd.c) ----
 * ds: a fashion-captions split opened at the model's resolution (3, R, R); the first n
 * items (all if n <= 0) are classified among the 80 colour x class pairs, each pair's text
 * embedding being its caption "a {colour} {class}" or, with ensemble, the renormalised
 * mean of its captions in all FC32_N_TEMPLATES templates (the CLIP paper's ensembling). */
typedef struct {
    int n, n_held;                 /* items, of which held-out pairs */
    double top1, top5;             /* over the 80 colour x class captions */
    double held_top1, held_top5;   /* on the held-out pairs only */
    double class_acc, colour_acc;  /* the top-1 caption's class / colour is right */
} clip_fc32_eval;
int clip_eval_fc32(clip_model *m, const t2i_dataset *ds, int n, int ensemble, clip_fc32_eval *ev);
/* The same for an ensemble of nm CLIPs (of one image resolution): each item's similarity
 * to a pair is the sum (so the ranking of the mean) of the models' cosine similarities. */
int clip_eval_fc32_models(clip_model *const *ms, int nm, const t2i_dataset *ds, int n, int ensemble,
                          clip_fc32_eval *ev);

/* ---- commands (clip_cmd.c, clip_train.c) ---- */
int clip_cmd(int argc, char **argv);        /* t2i clip train|tokenize|embed|classify|zeroshot|rerank */
int clip_cmd_train(int argc, char **argv);

#endif
