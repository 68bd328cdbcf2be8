/* gan.h - GANs of the DCGAN family: configuration, networks, training and sampling.
 *
 * A gan_model holds G (noise [+ condition] -> image in [-1, 1]) and D (image -> trunk
 * features -> one logit), each an nn_seq over its own parameter store, plus an EMA copy
 * of G used for sampling. Architectures:
 *   preset "b1"     exactly B1 of bench/README.md (1x28x28, PyTorch init);
 *   preset "dcgan"  DCGAN by resolution (28, 32, 64, 128), width and depth: G doubles the
 *                   resolution per ConvTranspose2d(k4, s2, p1) stage, D halves it per
 *                   Conv2d(k4, s2, p1); depth adds 3x3 convolutions per stage.
 * Conditioning (class labels or any vector such as a caption's text embedding) enters G
 * through conditional BatchNorm and by concatenation to the noise, and D through a
 * projection head: logit = w.h + b + (c P).h, with h the trunk features and c the
 * condition (one-hot class, or the vector) - the projection discriminator of Miyato &
 * Koyama. Mismatched-condition negatives (text GANs) are a training option. For data
 * without labels D may end in a minibatch-stddev channel and a 3x3 conv (d_mbstd, as in
 * Karras et al.'s progressive GANs), and training may augment D's inputs (gan_train_opts
 * augment, DiffAugment).
 */
#ifndef T2I_GAN_H
#define T2I_GAN_H

#include "infer.h"
#include "params.h"
#include "rng.h"
#include "optim.h"
#include "seq.h"

typedef enum { GAN_LOSS_NS, GAN_LOSS_HINGE, GAN_LOSS_LS } gan_loss;
typedef enum { GAN_NORM_BN, GAN_NORM_NONE } gan_dnorm;

typedef struct {
    char preset[16];     /* "b1" or "dcgan" */
    int res, channels;   /* image resolution and channels */
    int z_dim;
    int g_width, d_width;/* base widths (channels at the highest resolution) */
    int depth;           /* extra 3x3 convs per stage (dcgan) */
    int n_classes;       /* > 0: class-conditional (condition = one-hot) */
    int cond_dim;        /* > 0: conditioned on a vector of this size (e.g. a text embedding) */
    int d_sn;            /* spectral norm in D */
    int d_mbstd;         /* > 0: minibatch-stddev channel over groups of this many images, then
                          * a 3x3 conv, at the end of D's trunk (0: none) */
    gan_dnorm d_norm;
    int init_normal;     /* N(0, 0.02) init (DCGAN) instead of PyTorch's defaults */
    /* caption conditioning (cond_dim > 0): the frozen CLIP whose text embeddings are the
     * condition, its vocabulary (or ""), and the embedding of GAN_TEXT_PROBE under it, so
     * that sampling can verify the same encoder is used */
    char text_encoder[512];
    char text_vocab[512];
    int n_probe;
    float text_probe[1024];
} gan_config;

typedef struct {
    gan_config cfg;
    nn_params gp, dp, ep;  /* G, D, EMA-of-G parameter stores */
    nn_seq g, d, ema;      /* ema has the same layers as g over ep */
    nn_seq dmb;            /* with d_mbstd: the conv after the stddev channel ("d.mb." in dp) */
    int head_w, head_b, head_proj; /* D head parameters in dp (head_proj -1 if unconditional) */
    int feat;              /* D trunk feature size */
    int inference_only;    /* loaded from a shipped copy without D (see gan_load) */
    char *caption_words;   /* caption GANs: the training captions' word set (words.h; metadata
                            * "caption_words"), or NULL */
} gan_model;

/* Condition size seen by the networks: n_classes (one-hot) or cond_dim, or 0. */
int gan_cond_size(const gan_config *c);
void gan_config_default(gan_config *c);
void gan_config_b1(gan_config *c);
/* Validates (resolution supported, sizes positive); returns -1 with a message. */
int gan_config_check(const gan_config *c);
/* JSON text (caller frees) and back. */
char *gan_config_to_json(const gan_config *c);
int gan_config_from_json(gan_config *c, const char *json);

/* Builds and allocates G, D and EMA for cfg; init draws from rng. */
void gan_model_build(gan_model *m, const gan_config *cfg, t2i_rng *rng);
void gan_model_free(gan_model *m);

/* What one D forward leaves for its backward: the trunk's tape and, with d_mbstd, the
 * stddev layer's input and deviations and the last conv's tape. Zero it before use. */
typedef struct {
    nn_tape trunk, mb;
    const float *mb_in;
    float *mb_sd;
} gan_d_tape;

/* D on N images x with condition c (N, cond size) or NULL: logits (N) in the arena. */
float *gan_d_forward(gan_model *m, gan_d_tape *t, nn_arena *a, const float *x, const float *c, int N, int training,
                     float **feat_out);
/* Backward of gan_d_forward given dlogits (N): returns dL/dx when need_dx. Adds into D's
 * gradients unless m->d.frozen. dc (N, cond) receives the condition's gradient if set. */
float *gan_d_backward(gan_model *m, gan_d_tape *t, nn_arena *a, const float *x_unused, const float *c,
                      const float *feat, const float *dlogits, float *dc, int N, int need_dx);
/* G (or the EMA copy) on noise z (N, z_dim) and condition c: images (N, C, R, R). */
float *gan_g_forward(gan_model *m, nn_seq *g, nn_tape *t, nn_arena *a, const float *z, const float *c, int N,
                     int training);
/* The same in evaluation mode through an inference workspace (nn/infer.h): no activations
 * kept, buffers reused across calls. With NN_INFER_EXACT kernels the images equal
 * gan_g_forward's (training 0) bit for bit. Returns images (N, C, R, R) in ws, valid until
 * its next use. */
const float *gan_g_infer(gan_model *m, const nn_seq *g, nn_infer *ws, const float *z, const float *c, int N);

/* Condition rows for class labels: one-hot (N, n_classes). */
void gan_onehot(float *c, const int *labels, int N, int n_classes);

/* Checkpoints (model "gan"). state_json may be NULL. */
int gan_save(const gan_model *m, const char *path, const char *state_json, int with_optimizer, int bf16);
/* Loads config + weights (and moments when with_optimizer). m must be unbuilt.
 * Also reads inference copies made by `t2i ckpt convert --drop g. d. --rename ema.=`
 * (only the EMA generator, under G's names): G and EMA then both hold it, D is absent
 * and m->inference_only is set (sampling works, training refuses). */
int gan_load(gan_model *m, const char *path, int with_optimizer, char **state_json);

/* Training options (saved in checkpoints so --resume continues with the same ones). */
typedef struct {
    gan_loss loss;
    float lr_g, lr_d, beta1, beta2;
    int n_critic;
    float smooth;      /* one-sided label smoothing: real target (1 = off), NS loss only */
    float ema;         /* EMA decay, 0 = off */
    long ema_start;
    float mismatch;    /* weight of mismatched-condition negatives */
    int batch;
    int flip;
    uint64_t seed;
    char data[512];
    int cond_classes;  /* condition on the dataset's labels */
    int clusters;      /* > 0: those labels are this many balanced k-means clusters of the images
                        * (t2i_dataset_cluster), not the data's own (0: the data's own) */
    int augment;       /* NN_AUG_* bits: augmentation of every image D sees, real or generated
                        * (0: none) */
    t2i_rng *aug_rng;  /* its draws (the trainer's generator; not saved with the options) */
} gan_train_opts;

/* The augmentation policy from a comma list of color, translation, cutout (or "none");
 * -1 if a name is unknown. gan_augment_name writes it back (canonical order). */
int gan_augment_parse(const char *s);
void gan_augment_name(int policy, char *buf, size_t n);


typedef struct {
    float loss_d, loss_g;
    float d_real, d_fake;   /* mean sigmoid of D's logits on real and generated images */
} gan_step_stats;

const char *gan_loss_name(gan_loss l);
int gan_loss_parse(const char *s, gan_loss *l);
/* Loss of logits l (N) against the real (kind 0: target o->smooth for ns), fake (1) or
 * generator (2) objective; adds scale * dloss/dl into dl when non-NULL; returns the mean. */
float gan_objective(gan_loss loss, int kind, const float *l, float *dl, int N, float smooth, float scale);
/* The mismatched conditions of a batch for D: item i gets item (i + 1) % B's condition.
 * Over the global batch, so that a data-parallel rank's slice pairs as one process's would. */
void gan_mismatched_conds(float *cw, const float *c, int B, int cs);
/* One D update on real images x with fresh noise z (B, z_dim), condition c (B, cond) and
 * mismatched condition cw (gan_mismatched_conds; used when o->mismatch > 0); fills loss_d,
 * d_real, d_fake. */
void gan_d_step(gan_model *m, nn_optim *od, nn_arena *a, const gan_train_opts *o, const float *x, const float *z,
                const float *c, const float *cw, int B, gan_step_stats *st);
/* One G update with noise z through a frozen D; fills loss_g. */
void gan_g_step(gan_model *m, nn_optim *og, nn_arena *a, const gan_train_opts *o, const float *z, const float *c,
                int B, gan_step_stats *st);

/* Commands. */
int gan_cmd(int argc, char **argv);
int gan_cmd_train(int argc, char **argv);
int gan_cmd_sample(int argc, char **argv);

#endif
