/* transformer.h - a stack of pre-LayerNorm residual attention blocks (CLIP's text and
 * vision towers, the DALL-E-style image-token transformer).
 *
 * Block l on the residual stream x (B, T, C):
 *   x = x + out_proj(attention(in_proj(ln_1(x))))        heads NH, causal or full
 *   x = x + c_proj(act(c_fc(ln_2(x))))                  hidden = mlp_ratio * C
 * act is QuickGELU (OpenAI CLIP) or exact GELU (B2) or any nn_act. Parameter names follow
 * OpenAI's CLIP state_dict so its checkpoints load by name:
 *   <prefix>.resblocks.<l>.ln_1.{weight,bias}            (C)
 *   <prefix>.resblocks.<l>.attn.in_proj_weight          (3C, C)  rows q | k | v
 *   <prefix>.resblocks.<l>.attn.in_proj_bias            (3C)
 *   <prefix>.resblocks.<l>.attn.out_proj.{weight,bias}  (C, C), (C)
 *   <prefix>.resblocks.<l>.ln_2.{weight,bias}           (C)
 *   <prefix>.resblocks.<l>.mlp.c_fc.{weight,bias}       (hidden, C), (hidden)
 *   <prefix>.resblocks.<l>.mlp.c_proj.{weight,bias}     (C, hidden), (C)
 *
 * nn_tf_forward keeps every activation that backward needs in a tape (arena memory); with
 * tape == NULL it runs inference only and reuses one layer's worth of scratch. The cached
 * form runs new positions against a key/value cache (incremental decoding).
 */
#ifndef T2I_TRANSFORMER_H
#define T2I_TRANSFORMER_H

#include "ops.h"
#include "params.h"
#include "rng.h"

typedef struct {
    int n_layer, width, n_head, mlp_ratio;
    nn_act act;
    int causal;
    float ln_eps;
} nn_tf_config;

enum { NN_TF_LN1W, NN_TF_LN1B, NN_TF_QKVW, NN_TF_QKVB, NN_TF_PROJW, NN_TF_PROJB, NN_TF_LN2W, NN_TF_LN2B,
       NN_TF_FCW, NN_TF_FCB, NN_TF_FCPW, NN_TF_FCPB, NN_TF_NPARAM };

typedef struct {
    nn_tf_config cfg;
    nn_params *ps;
    int (*idx)[NN_TF_NPARAM];  /* per layer: parameter indices in ps */
    nn_packed *packed;         /* NULL, or per layer qkv, proj, fc, fc-proj packed (nn_tf_pack) */
    int packed_forward;        /* nn_tf_forward without a tape uses them too (nn_tf_pack_forward) */
} nn_transformer;

/* Per-call activations (arena pointers), one set per layer. */
typedef struct {
    int B, T;
    float **x;      /* block input (B, T, C) */
    float **ln1, **ln1_mean, **ln1_rstd;
    float **qkv, **att, **atty;
    float **res1;   /* x + attention branch */
    float **ln2, **ln2_mean, **ln2_rstd;
    float **fch, **fch_act;
    float *out;     /* last block's output */
} nn_tf_tape;

typedef enum { NN_TF_INIT_GPT, NN_TF_INIT_CLIP } nn_tf_init_kind;

void nn_tf_init(nn_transformer *tf, nn_params *ps, const char *prefix, const nn_tf_config *cfg);
void nn_tf_free(nn_transformer *tf);
/* GPT: every weight N(0, 0.02), biases 0, LayerNorm (1, 0). CLIP: OpenAI's
 * initialize_parameters (in_proj std C^-0.5, out_proj and c_proj C^-0.5 (2L)^-0.5,
 * c_fc (2C)^-0.5, biases 0). */
void nn_tf_init_params(nn_transformer *tf, t2i_rng *rng, nn_tf_init_kind kind);
/* x (B, T, C) -> output (B, T, C) in the arena. tape may be NULL (inference). */
float *nn_tf_forward(nn_transformer *tf, nn_tf_tape *tape, nn_arena *a, const float *x, int B, int T);
/* Returns dL/dx (B, T, C) in the arena; adds into the stack's parameter gradients. */
float *nn_tf_backward(nn_transformer *tf, nn_tf_tape *tape, nn_arena *a, const float *dout);

/* Packs every layer's weight matrices (nn_packed) for the few-row products of decoding,
 * which nn_tf_forward_cached then uses; nn_tf_unpack (also nn_tf_free) drops them. A
 * sampler packs at its start and unpacks at its end: the packed copy does not follow
 * later changes to the weights. */
void nn_tf_pack(nn_transformer *tf);
void nn_tf_unpack(nn_transformer *tf);
/* Packs as nn_tf_pack, and nn_tf_forward without a tape (inference) then multiplies by the
 * packed copies too: for a stack that serves many few-row inference passes, such as
 * CLIP's text tower on one caption (16 rows), where a BLAS GEMM spends most of its time
 * re-packing the weights at every call. Costs a second copy of the weight matrices (half
 * their size when their values are bf16, nn_pack_weights); results differ from the BLAS
 * products by float rounding. */
void nn_tf_pack_forward(nn_transformer *tf);

/* Key/value cache for all layers. */
typedef struct {
    int n_layer;
    nn_kv_cache *layer;
    float *mem;
} nn_tf_cache;
void nn_tf_cache_init(nn_tf_cache *c, const nn_transformer *tf, int B, int Tmax);
void nn_tf_cache_reset(nn_tf_cache *c);
/* Copies the filled positions of src's row from[b] into dst's row b for every row of dst
 * (same stack, dst->Tmax >= src's length) and sets dst's length to src's: a prefix shared
 * by many sequences is run once and fanned out. */
void nn_tf_cache_fan_out(nn_tf_cache *dst, const nn_tf_cache *src, const int *from);
void nn_tf_cache_free(nn_tf_cache *c);
/* Runs Tn new positions x (B, Tn, C) that follow the cache's filled length; returns their
 * outputs (B, Tn, C) in the arena and extends the cache. The stack must be causal. Uses
 * the packed weights when the stack has them. */
float *nn_tf_forward_cached(nn_transformer *tf, nn_tf_cache *c, nn_arena *a, const float *x, int Tn);

/* Multiply-adds x2 of one forward over T positions (per sequence). */
double nn_tf_flops(const nn_tf_config *cfg, int T);

#endif
