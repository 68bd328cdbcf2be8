/* seq.h - sequential networks of core layers (the GAN's G and D, the Fashion-MNIST
 * classifier, the super-resolution and VQ convolution stacks).
 *
 * An nn_seq is a list of layers built once; each layer registers its parameters in an
 * nn_params under PyTorch nn.Sequential-style names ("<prefix>.<index>.weight"), so a
 * network is saved and loaded by name. Shapes are tracked per item (C, H, W); a Linear
 * layer flattens its input. Residual blocks are written as res_begin ... res_end (the
 * input of res_begin is added to the output of the layer before res_end, optionally
 * scaled); blocks may nest.
 *
 *     nn_seq g; nn_seq_init(&g, &ps, "g", 100, 1, 1);
 *     nn_seq_linear(&g, 256 * 7 * 7, 1); nn_seq_bn(&g); nn_seq_act(&g, NN_ACT_RELU, 0);
 *     nn_seq_reshape(&g, 256, 7, 7);
 *     nn_seq_convt(&g, 128, 4, 2, 1, 0, 1); ...
 *     nn_params_alloc(&ps); nn_seq_init_params(&g, &rng, NN_INIT_PYTORCH);
 *     nn_tape t; float *y = nn_seq_forward(&g, &t, &arena, x, N, 1);
 *     float *dx = nn_seq_backward(&g, &t, &arena, dy, 1);
 *
 * Memory: ReLU/LeakyReLU after a layer whose output no backward reads run in place, and
 * the backward pass reuses a small pool of gradient buffers (seq.c, "memory of a training
 * pass"); values are the same as with a buffer per activation and per gradient.
 *
 * The forward pass records what backward needs in an nn_tape (pointers into the arena),
 * so a network can run several forward passes before their backward passes (D on real
 * and on fake images, each with its own BatchNorm statistics, as PyTorch does).
 * nn_seq_backward adds parameter gradients into ps->grad unless seq->frozen is set (then
 * only the input gradient is computed: "D's weights need no gradient" in the G step).
 *
 * Conditioning: a conditional BatchNorm layer (nn_seq_cbn) normalises without affine
 * terms and applies a per-item gain and bias computed from a conditioning vector
 * (gamma = 1 + c Wg^T, beta = c Wb^T), which covers class conditioning (c one-hot or a
 * learned class embedding) and text conditioning (c a text embedding) alike. The vector
 * is passed as nn_tape.cond (N, cond_dim); its gradient goes to nn_tape.dcond if set.
 *
 * Spectral normalisation (seq->sn_next before adding a conv/linear) divides the weight by
 * its largest singular value, estimated by one power iteration per training forward with
 * persistent vectors u and v (buffers "<name>.weight_u" / "weight_v", as
 * torch.nn.utils.spectral_norm keeps them); the gradient treats u and v as constants:
 * dW = (G - <G, W/sigma> u v^T) / sigma with G the gradient of the normalised weight.
 */
#ifndef T2I_SEQ_H
#define T2I_SEQ_H

#include "ops.h"
#include "params.h"
#include "rng.h"

#define NN_SEQ_MAX 96

typedef enum {
    NN_L_LINEAR, NN_L_CONV, NN_L_CONVT, NN_L_BN, NN_L_CBN, NN_L_GN, NN_L_ACT, NN_L_RESHAPE,
    NN_L_PIXEL_SHUFFLE, NN_L_UPSAMPLE, NN_L_AVGPOOL, NN_L_DROPOUT, NN_L_RES_BEGIN, NN_L_RES_END
} nn_layer_kind;

typedef enum { NN_INIT_PYTORCH, NN_INIT_NORMAL002 } nn_init_kind;

typedef struct {
    nn_layer_kind kind;
    int C, H, W;          /* input shape per item */
    int OC, OH, OW;       /* output shape per item */
    int k, stride, pad, out_pad;
    int groups;           /* GroupNorm */
    int factor;           /* upsample / pixel shuffle / pool */
    nn_act act;
    float slope;          /* LeakyReLU */
    float p;              /* dropout */
    float eps, momentum;  /* norms */
    float res_scale;      /* RES_END: out = skip + res_scale * branch */
    int res_begin;        /* RES_END: index of its RES_BEGIN */
    int bias, sn, cond_dim;
    /* parameter indices (-1 if absent) */
    int iw, ib, iu, iv, irm, irv, icw, icb;
} nn_layer;

typedef struct {
    nn_layer L[NN_SEQ_MAX];
    int n;
    nn_params *ps;
    char prefix[64];
    int C, H, W;          /* shape after the last layer (the output) */
    int in_C, in_H, in_W; /* input shape */
    int frozen;           /* backward computes input gradients only */
    int sn_next;          /* spectral-normalise the next linear/conv/convT */
    int stack[16], depth; /* open residual blocks */
} nn_seq;

/* What one forward pass leaves for its backward pass. */
typedef struct {
    int N, training;
    const float *cond;    /* (N, cond_dim) for CBN layers, or NULL */
    float *dcond;         /* gradient of cond (added), or NULL */
    t2i_rng *rng;         /* for dropout */
    const float *in[NN_SEQ_MAX];  /* each layer's input */
    float *out[NN_SEQ_MAX];       /* each layer's output */
    float *aux[NN_SEQ_MAX];       /* mean/rstd, masks, normalised x, SN weights */
    float *aux2[NN_SEQ_MAX];
    float *aux3[NN_SEQ_MAX];
    float sigma[NN_SEQ_MAX];      /* spectral norm of each SN layer's weight */
    int keep_all;                 /* no in-place activation, a new buffer per gradient
                                   * (the plain reference the memory plan is tested against) */
} nn_tape;

void nn_seq_init(nn_seq *s, nn_params *ps, const char *prefix, int C, int H, int W);
/* Each adder returns the layer's index. */
int nn_seq_linear(nn_seq *s, int out, int bias);
int nn_seq_conv(nn_seq *s, int oc, int k, int stride, int pad, int bias);
int nn_seq_convt(nn_seq *s, int oc, int k, int stride, int pad, int out_pad, int bias);
int nn_seq_bn(nn_seq *s);                 /* BatchNorm (eps 1e-5, momentum 0.1), affine */
int nn_seq_cbn(nn_seq *s, int cond_dim);  /* conditional BatchNorm */
int nn_seq_gn(nn_seq *s, int groups);     /* GroupNorm (eps 1e-5), affine */
int nn_seq_act(nn_seq *s, nn_act act, float slope);
int nn_seq_reshape(nn_seq *s, int C, int H, int W);
int nn_seq_pixel_shuffle(nn_seq *s, int r);
int nn_seq_upsample(nn_seq *s, int factor);
int nn_seq_avgpool(nn_seq *s, int k);     /* stride k */
int nn_seq_dropout(nn_seq *s, float p);
int nn_seq_res_begin(nn_seq *s);
int nn_seq_res_end(nn_seq *s, float scale);

/* Initialise every parameter (after nn_params_alloc): weights and biases as PyTorch's
 * defaults or N(0, 0.02) (biases 0, norm gains N(1, 0.02) as DCGAN), norms gain 1 /
 * bias 0, running var 1, spectral-norm u ~ N(0,1) normalised. */
void nn_seq_init_params(nn_seq *s, t2i_rng *rng, nn_init_kind kind);
/* Output floats per item. */
size_t nn_seq_out_size(const nn_seq *s);
/* Forward pass of N items; returns the output (in the arena). tape->cond/dcond/rng must
 * be set by the caller before the call if the network uses them (zero the tape first). */
float *nn_seq_forward(nn_seq *s, nn_tape *t, nn_arena *a, const float *x, int N, int training);
/* Backward pass; returns dL/dx (in the arena) when need_dx, else NULL. */
float *nn_seq_backward(nn_seq *s, nn_tape *t, nn_arena *a, const float *dy, int need_dx);
/* The same with a loss that also reads inner outputs: dout[i] (NULL, or NULL entries for
 * none) is added to the gradient of layer i's output (tape->out[i], N x its output size)
 * before layer i's backward - a feature-matching loss on a discriminator's activations.
 * Read features from activation layers: a layer followed by an in-place ReLU/LeakyReLU
 * (see Memory above) has the activated values in tape->out[i]. */
float *nn_seq_backward_ex(nn_seq *s, nn_tape *t, nn_arena *a, const float *dy, int need_dx,
                          const float *const *dout);
/* The weight of spectral-normalised layer i as an evaluation forward uses it: W / sigma
 * into wn (OC x in-features), u and v unchanged. Returns sigma. */
float nn_seq_sn_weight_eval(const nn_seq *s, int i, float *wn);
/* Multiply-add count of one forward pass per item (for GFLOP/s figures). */
double nn_seq_flops(const nn_seq *s);
/* One-line-per-layer description, for logs and --help of presets. */
void nn_seq_describe(const nn_seq *s, char *buf, size_t n);

#endif
