/* optim.h - optimizers, gradient clipping, learning-rate schedules, weight EMA, init.
 *
 * Optimizers follow PyTorch's update rules exactly (torch.optim, default flags), so a few
 * steps can be compared with PyTorch bit-for-bit up to float rounding:
 *   SGD   : g += wd*p;  buf = momentum*buf + g (buf = g at step 1);  p -= lr*buf
 *   Adam  : g += wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *           p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   AdamW : p *= 1 - lr*wd (skipped for params flagged no_decay), then Adam without wd.
 * They update trainable tensors of an nn_params only; moments live in ps->m / ps->v.
 * In a data-parallel step they first average the gradients over the processes
 * (nn_params_sync_grad, collective.h).
 */
#ifndef T2I_OPTIM_H
#define T2I_OPTIM_H

#include "params.h"
#include "rng.h"

typedef enum { NN_OPT_SGD, NN_OPT_ADAM, NN_OPT_ADAMW } nn_opt_kind;

typedef struct {
    nn_opt_kind kind;
    float lr;
    float beta1, beta2, eps; /* Adam/AdamW */
    float momentum;          /* SGD */
    float weight_decay;
    long step;               /* number of updates done; saved in checkpoints */
} nn_optim;

/* The accepted learning rates and Adam betas: every trainer's command line checks them, and
 * its saved training state is checked against the same bounds on --resume (NN_F_FLOAT_IN). */
#define NN_LR_MIN 1e-7
#define NN_LR_MAX 1.0
#define NN_BETA1_MAX 0.9999
#define NN_BETA2_MAX 0.99999

nn_optim nn_sgd(float lr, float momentum, float weight_decay);
nn_optim nn_adam(float lr, float beta1, float beta2, float eps, float weight_decay);
nn_optim nn_adamw(float lr, float beta1, float beta2, float eps, float weight_decay);
/* One update of every trainable tensor with learning rate lr (from a schedule). */
void nn_optim_step(nn_optim *o, nn_params *ps, float lr);

/* Scales gradients so that their global L2 norm is at most max_norm; returns the norm
 * before clipping (PyTorch's clip_grad_norm_, which adds 1e-6 to the divisor). */
float nn_clip_grad_norm(nn_params *ps, float max_norm);
/* Global L2 norm of trainable gradients (after nn_params_sync_grad in a data-parallel step). */
float nn_grad_norm(nn_params *ps);

/* Learning-rate schedules (step counts from 0). */
typedef struct {
    int kind;          /* 0 constant, 1 linear warmup then cosine decay */
    float base_lr;
    long warmup;       /* warmup steps */
    long total;        /* total steps, for cosine */
    float min_lr;      /* floor of the cosine */
} nn_schedule;
nn_schedule nn_schedule_constant(float lr);
nn_schedule nn_schedule_cosine(float lr, long warmup, long total, float min_lr);
float nn_schedule_lr(const nn_schedule *s, long step);

/* Exponential moving average of weights: ema = decay*ema + (1-decay)*model over all
 * tensors (buffers are copied, not averaged, so BatchNorm statistics stay coherent). */
void nn_ema_update(nn_params *ema, const nn_params *model, float decay);

/* Initialisations (PyTorch defaults). fan_in is in*KH*KW (for ConvTranspose2d weights
 * (C, OC, K, K), PyTorch uses OC*K*K, which the caller passes). */
/* kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) - Linear/Conv weights and biases. */
void nn_init_pytorch_uniform(float *w, size_t n, int fan_in, t2i_rng *rng);
void nn_init_normal(float *w, size_t n, float mean, float std, t2i_rng *rng);
void nn_init_const(float *w, size_t n, float value);

#endif
