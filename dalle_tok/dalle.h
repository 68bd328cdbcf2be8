/* dalle.h - the DALL-E-style image-token transformer: a decoder-only, pre-LayerNorm
 * transformer over [text tokens, image tokens] that learns p(image codes | caption), where
 * the image codes come from the VQ tokenizer (vq.h).
 *
 * Sequence (T = text_len + image_len positions, joint ids):
 *   positions 0..text_len-1        text ids in [0, text_vocab)
 *   positions text_len..T-1        image codes, as joint ids text_vocab + code
 * Network: x_t = E_text[id] (text positions) or E_image[code] (image positions) + P[t]
 *   -> transformer (nn/transformer.h, causal, GELU) -> ln_f -> head: logits (T, V) over the
 *   joint vocabulary V = text_vocab + codebook (untied, with bias).
 * Preset "b2" is bench/README.md B2 exactly: text 16 x vocab 1024, image 64 (8x8)
 * x codebook 512, width 256, 6 layers, 8 heads, exact GELU, MLP 4x, LayerNorm eps 1e-5,
 * head Linear(256, 1536) with bias; init N(0, 0.02) for every weight and embedding, zero
 * biases, LayerNorms (1, 0).
 *
 * Parameter names: text_emb.weight (text_vocab, C), image_emb.weight (codebook, C),
 * pos_emb.weight (T, C), transformer.resblocks.<l>.* (transformer.h), ln_f.{weight,bias},
 * head.{weight,bias} (V, C), (V). AdamW decays the Linear weights only (attention, MLP,
 * head), not biases, LayerNorms or embeddings (as minGPT).
 *
 * Text layout (the caption's BPE ids from text/tokenizer.h with a vocabulary learned
 * from the training captions, stored in the checkpoint metadata "vocab"):
 *   out[0]     = SOT (the tokenizer's <|startoftext|>): a constant first token, so the
 *                first caption token is predicted too (DALL-E's prepended BOS);
 *   out[1..n]  = the caption's ids (n <= text_len - 1; longer captions are truncated);
 *   out[i]     = pad_base + i for i > n: per-position pad tokens (DALL-E), where
 *                pad_base = text_vocab - text_len, so the top text_len text ids are pads
 *                (pad_base + 0 is reserved and never used). No EOT: the pads mark the end.
 * The BPE vocabulary (512 + merges + 2 ids) must fit below pad_base. The unconditional
 * ("null") text, used by caption dropout in training and classifier-free guidance in
 * sampling, is SOT followed by pads only.
 *
 * Loss (dalle_train_grads): cross-entropy of the logits at positions 0..T-2 against the
 * tokens at 1..T-1, over the joint vocabulary (no masking), combined as
 *   text_weight * mean(text targets) + (1 - text_weight) * mean(image targets)
 * (DALL-E: text_weight 1/8; the text targets are positions 1..text_len-1, the image
 * targets text_len..T-1). text_weight < 0 gives the plain mean over all T-1 targets
 * (bench/README.md B2).
 *
 * Sampling (dalle_sample): the text is run once (prefill of the key/value cache), then
 * one image token at a time; at each step the image-code logits only (the head rows
 * text_vocab..V-1) are mixed for classifier-free guidance (u + s (c - u), the conditional
 * and unconditional sequences run as one batch of 2n), divided by the temperature,
 * filtered by top-k then top-p, and one code is drawn with one uniform from the
 * candidate's own stream: candidate i uses t2i_rng_split(seed root, i), so any candidate
 * can be regenerated alone (first = i, n = 1). The uncached path (full forward over the
 * growing prefix) gives the same codes and exists for testing and the benchmark.
 *
 * Prompted sampling (completion, inpainting, variations): with opts.keep, a kept position
 * gets opts.prompt's code instead of a drawn one and is fed to the network like a drawn
 * code (teacher forcing: the cache holds it, so every later position is conditioned on
 * it); the leading run of kept positions is run together with the text. A candidate
 * still draws its one uniform at every position, kept or not, so a sampled position uses
 * the same uniform whatever is kept, and keeping nothing gives exactly the unprompted
 * codes. Raster order cannot look ahead: a sampled position is drawn without seeing the
 * kept codes after it. opts.passes > 0 then refines: each pass visits, in raster order,
 * every sampled position j followed by some kept position and makes one Metropolis-
 * Hastings step on p(x_j | every other code): propose x' from the same filtered
 * distribution p(x_j | x_<j) that drew it, accept with probability
 *   min(1, prod_{t>j} p(x_t | x_<t, x_j = x') / p(x_t | x_<t, x_j = x)),
 * p being the guided logits over the temperature (unfiltered, so a kept code never has
 * probability 0). The ratio of this independent proposal to its target leaves exactly
 * the likelihood of what follows, so the chain's stationary law is the filtered
 * conditional of x_j given all others. Each step is one full forward over the B
 * sequences (positions before j could come from a cache; not done); the candidate draws
 * two uniforms per step (proposal, acceptance) after its raster draws, so refinement
 * keeps candidate i independent of the batch. With no kept position after a sampled one
 * (all sampled, or a kept prefix: completion) there is nothing to refine.
 *
 * Failures: dalle_load / dalle_set_vocab / dalle_encode_text return -1 with the error set
 * (missing or corrupt checkpoint, other model type, a vocabulary that does not fit,
 * invalid UTF-8, an empty caption). Shape misuse trips T2I_ASSERT.
 */
#ifndef T2I_DALLE_H
#define T2I_DALLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "transformer.h"
#include "vq.h"

typedef struct {
    char preset[16];         /* "b2" or "custom" */
    int text_len, text_vocab;
    int image_side;          /* image grid side: image_len = side * side */
    int codebook;
    int width, n_layer, n_head, mlp_ratio;
    nn_act act;
    float ln_eps;
} dalle_config;

void dalle_config_b2(dalle_config *c);
/* -1 with a message naming the bad field ("b2" must be B2 exactly). */
int dalle_config_check(const dalle_config *c);
char *dalle_config_to_json(const dalle_config *c);           /* heap string */
int dalle_config_from_json(dalle_config *c, const char *json);
static inline int dalle_image_len(const dalle_config *c) { return c->image_side * c->image_side; }
static inline int dalle_seq_len(const dalle_config *c) { return c->text_len + c->image_side * c->image_side; }
static inline int dalle_vocab(const dalle_config *c) { return c->text_vocab + c->codebook; }
static inline int dalle_pad_id(const dalle_config *c, int pos) { return c->text_vocab - c->text_len + pos; }
/* Forward FLOPs (2 x multiply-adds) of one sequence of T positions, head included. */
double dalle_flops(const dalle_config *c, int T);

typedef struct {
    dalle_config cfg;
    nn_params ps;
    nn_transformer tf;
    int text_emb, image_emb, pos_emb, lnf_w, lnf_b, head_w, head_b;  /* indices into ps */
    clip_tok *tok;    /* the text tokenizer, or NULL until a vocabulary is set */
    char *vocab;      /* its merges text (saved in the checkpoint), or NULL */
    int32_t sot;      /* the tokenizer's start-of-text id */
    char *vq_path;    /* the VQ checkpoint of the training codes (metadata "vq"), or NULL */
    char *caption_words; /* the training captions' word set (words.h; metadata "caption_words"), or NULL */
} dalle_model;

/* Registers and allocates every tensor (zeros); dalle_init draws the B2 initialisation. */
void dalle_build(dalle_model *m, const dalle_config *cfg);
void dalle_init(dalle_model *m, t2i_rng *rng);
void dalle_free(dalle_model *m);
/* Builds the tokenizer from a merges text (clip_tok_train's output) and checks that its
 * ids fit below the pad ids. */
int dalle_set_vocab(dalle_model *m, const char *merges, size_t len);
/* Checkpoint (model "dalle"): parameters (+ Adam moments), config, vocab, vq, state. */
int dalle_save(const dalle_model *m, const char *path, const char *state_json, int with_optimizer);
/* m must be unbuilt. *state_json (may be NULL) gets the training state or NULL. */
int dalle_load(dalle_model *m, const char *path, int with_optimizer, char **state_json);

/* ---- text ---- */
/* out (text_len) <- the text layout above. Returns 0, 1 when the caption had more than
 * text_len - 1 tokens (kept the first ones; *n_tokens, if non-NULL, gets the full count),
 * or -1 (no vocabulary, invalid UTF-8, a caption without any token). */
int dalle_encode_text(dalle_model *m, const char *caption, int32_t *out, int *n_tokens);
/* Same, printing "t2i: warning: ..." on stderr when the caption is truncated. */
int dalle_encode_text_warn(dalle_model *m, const char *caption, int32_t *out);
/* out (text_len) <- SOT + pads: the unconditional text. */
void dalle_null_text(const dalle_model *m, int32_t *out);

/* ---- training ---- */
typedef struct {
    float loss;        /* the optimised (weighted) loss */
    float loss_text;   /* mean cross-entropy of the text targets */
    float loss_image;  /* mean cross-entropy of the image targets */
} dalle_loss;

/* tokens (B, T) joint ids. Zeroes the gradients, runs forward and backward (gradients in
 * m->ps.grad), fills *out. text_weight in [0, 1], or < 0 for the plain mean. */
void dalle_train_grads(dalle_model *m, nn_arena *a, const int32_t *tokens, int B, float text_weight,
                       dalle_loss *out);
/* x (B, Tn, C) <- embeddings of tokens (B, Tn) at positions t0..t0+Tn-1 (token plus
 * position embedding). */
void dalle_embed(dalle_model *m, float *x, const int32_t *tokens, int B, int Tn, int t0);
/* Inference forward: logits (B, T, V) into the arena (tests, evaluation). */
float *dalle_logits(dalle_model *m, nn_arena *a, const int32_t *tokens, int B, int T);

/* ---- sampling ---- */
typedef struct {
    float temperature;  /* > 0 */
    int top_k;          /* keep the k most likely codes (0 = all) */
    float top_p;        /* then the smallest set with this much mass (1 = all) */
    float cfg;          /* guidance scale s: logits u + s (c - u); 1 = conditional only */
    int cached;         /* 1: key/value cache; 0: full forward over the prefix each step */
    /* non-NULL: dalle_sample stops before its next code once *stop is non-zero (another
     * thread cancels a server job within one step); the codes are then incomplete */
    const atomic_int *stop;
    /* Image prompt (see "Prompted sampling" above): keep (image_len, raster order) marks
     * the positions whose code is given, prompt (image_len) holds the codes (only kept
     * entries are read). NULL keep: every position is sampled (the unprompted sampler). */
    const int32_t *prompt;
    const uint8_t *keep;
    int passes;         /* refinement passes over sampled positions that precede a kept one */
    /* variations: > 0 (with prompt) makes every position that keep does not fix take the
     * prompt's code with this probability, decided per candidate by a second uniform
     * drawn after the position's usual one; the others are drawn as usual, conditioned on
     * everything before them, kept or drawn. No refinement in this mode. */
    float keep_prob;
} dalle_sample_opts;

void dalle_sample_defaults(dalle_sample_opts *o);
/* -1 with a message for out-of-range options. */
int dalle_sample_check(const dalle_sample_opts *o, int codebook);
/* probs (V) <- logits (V) / temperature, top-k (ties to the lower index), softmax, top-p
 * (keep the most probable codes while the mass before them is below top_p), renormalised;
 * filtered codes get 0. work: 2 V ints of scratch. */
void dalle_filter_probs(float *probs, const float *logits, int V, float temperature, int top_k, float top_p,
                        int *work);
/* The first code whose cumulative probability exceeds u * total (u in [0, 1)). */
int dalle_draw(const float *probs, int V, float u);
/* out (n) <- u + s (c - u). */
void dalle_cfg_mix(float *out, const float *cond, const float *uncond, size_t n, float s);

/* Samples candidates first .. first+n-1 of `seed` for one text (text_len ids):
 * codes (n, image_len) in [0, codebook). Scratch from the arena (reset by the caller). */
void dalle_sample(dalle_model *m, nn_arena *a, const int32_t *text, int n, uint64_t seed, long first,
                  const dalle_sample_opts *o, int32_t *codes);

/* ---- data and decoding (dalle_train.c, dalle_cmd.c) ---- */
/* A codes file of `t2i vq encode`: tensors codes (n, side, side) int32 and index (n)
 * int32 (items of the source dataset), metadata "source" (a data spec) and "vq" (the VQ
 * checkpoint). */
typedef struct {
    int n, side;
    int32_t *codes;   /* (n, side, side) */
    int32_t *index;   /* (n) */
    char *source;     /* heap strings */
    char *vq;
} dalle_codes;
/* -1 with the error set (missing tensors or metadata, bad shapes, negative codes). */
int dalle_codes_load(dalle_codes *c, const char *path);
void dalle_codes_free(dalle_codes *c);
/* Loads a VQ checkpoint and checks that it matches the model (codebook size and grid):
 * -1 with a message naming both sizes otherwise. */
int dalle_vq_load(vq_model *vq, const char *path, const dalle_config *c);
/* codes (n, image_len) -> images (n, C, R, R) clamped to [-1, 1]. */
void dalle_decode(vq_model *vq, nn_arena *a, const int32_t *codes, int n, float *images);
/* Writes images (n, C, H, W) as DIR/<prefix>NNNN.png (numbered from first) and returns 0,
 * or -1 with the error set. */
int dalle_write_pngs(const char *dir, const char *prefix, const float *images, int n, long first, int C, int H, int W);

/* ---- commands (dalle_cmd.c, dalle_train.c, generate.c, fidelity.c) ---- */
int dalle_cmd(int argc, char **argv);          /* t2i dalle train|sample */
int dalle_cmd_train(int argc, char **argv);
int dalle_cmd_sample(int argc, char **argv);

#endif
