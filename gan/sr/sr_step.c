/* sr_step.c - the training steps of super-resolution (sr.h): phase 1 (L1) and phase 2
 * (L1 + relativistic patch GAN), used by `t2i sr train` (sr_train.c).
 *
 * Steps (B items, P x P HR crops, LR P/s x P/s):
 *   L1:  loss = mean |G(lr) - hr|; Adam on G.
 *   GAN: G update: fake = G(lr); D (frozen, no power iteration) on hr and on fake;
 *        loss = l1_weight * L1(fake, hr) + adv_weight * L_G(D(hr), D(fake))
 *               + fm_weight * FM(fake, hr); Adam on G.
 *        D update: D on [hr; fake] as one batch of 2B (D has no normalisation, so this
 *        equals two calls), loss = L_D, Adam on D. fake is the output computed before
 *        G's update (detached), as ESRGAN/BasicSR do. In D's warm-up (update_g 0) G is
 *        only run, and D alone learns to tell its outputs from the photos.
 *   Relativistic average loss derivative (a_i = r_i - mean f, b_j = f_j - mean r, n
 *   patches each, t_r/t_f the targets 1/0 for D and 0/1 for G):
 *     ga_i = (sigmoid(a_i) - t_r) / 2n,  gb_j = (sigmoid(b_j) - t_f) / 2n
 *     dL/dr_k = ga_k - sum_j gb_j / n,   dL/df_k = gb_k - sum_i ga_i / n.
 *   Feature matching (pix2pixHD's, on paired images): with r_l and f_l the outputs of D's
 *   l-th activation layer (L of them, n_l values each) for hr and for fake,
 *     FM = (1/L) sum_l mean |f_l - r_l|,   dFM/df_l = sign(f_l - r_l) / (L n_l)
 *   (0 where equal); r_l is a constant (the real pass is not differentiated), and the
 *   f_l terms enter D's backward pass at those layers (nn_seq_backward_ex).
 *
 */
#include <math.h>
#include <string.h>

#include "base.h"
#include "dist.h"
#include "ops.h"
#include "optim.h"
#include "sr.h"

static double softplus(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }
static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

float sr_ragan_loss(const float *lr, const float *lf, int n, float *dr, float *df, int for_g, float scale) {
    double mr = 0.0, mf = 0.0;
    for (int i = 0; i < n; i++) mr += lr[i], mf += lf[i];
    mr /= n, mf /= n;
    /* data-parallel (run/dist.h): the means, the loss and the mean-terms of the gradient are
     * the global batch's (means of the ranks' means over equal slices); each rank's gradient
     * keeps the local 1/n, which is the rank count times its share, as every rank's is */
    int ranks = t2i_dist_broken("ragan") ? 1 : t2i_dist_size(); /* the test switch: per-rank means (wrong) */
    if (ranks > 1) {
        double m2[2] = {mr, mf};
        t2i_dist_mean(m2, 2);
        mr = m2[0], mf = m2[1];
    }
    double tr = for_g ? 0.0 : 1.0, tf = for_g ? 1.0 : 0.0;
    double loss = 0.0, sga = 0.0, sgb = 0.0;
    for (int i = 0; i < n; i++) {
        double a = lr[i] - mf, b = lf[i] - mr;
        /* BCE(z, 1) = softplus(-z), BCE(z, 0) = softplus(z) */
        loss += tr > 0.5 ? softplus(-a) : softplus(a);
        loss += tf > 0.5 ? softplus(-b) : softplus(b);
        sga += (sigmoid(a) - tr) / (2.0 * n);
        sgb += (sigmoid(b) - tf) / (2.0 * n);
    }
    if (ranks > 1) {
        double v[3] = {loss, sga, sgb};
        t2i_dist_mean(v, 3);
        loss = v[0], sga = v[1], sgb = v[2];
    }
    for (int k = 0; k < n; k++) {
        if (dr) dr[k] += (float)(scale * ((sigmoid(lr[k] - mf) - tr) / (2.0 * n) - sgb / n));
        if (df) df[k] += (float)(scale * ((sigmoid(lf[k] - mr) - tf) / (2.0 * n) - sga / n));
    }
    return (float)(loss / (2.0 * n));
}

float sr_l1_step(sr_model *m, nn_optim *og, nn_arena *a, const float *lr, const float *hr, int B, float lr_now) {
    nn_arena_reset(a);
    nn_params_zero_grad(&m->gp);
    nn_tape t;
    memset(&t, 0, sizeof t);
    float *y = nn_seq_forward(&m->g, &t, a, lr, B, 1);
    size_t n = (size_t)B * nn_seq_out_size(&m->g);
    float *dy = nn_arena_zeros(a, n);
    float loss = nn_l1(dy, y, hr, n, 1.0f);
    nn_seq_backward(&m->g, &t, a, dy, 0);
    nn_optim_step(og, &m->gp, lr_now);
    return loss;
}

float sr_feature_match(const nn_seq *d, const nn_tape *tr, const nn_tape *tf, nn_arena *a, float weight,
                       const float **dout) {
    int L = 0;
    for (int i = 0; i < d->n; i++) L += d->L[i].kind == NN_L_ACT;
    double loss = 0.0;
    for (int i = 0; i < d->n; i++) {
        const nn_layer *l = &d->L[i];
        if (dout) dout[i] = NULL;
        if (l->kind != NN_L_ACT) continue;
        size_t n = (size_t)tf->N * l->OC * l->OH * l->OW;
        const float *r = tr->out[i], *f = tf->out[i];
        float *g = dout ? nn_arena_floats(a, n) : NULL;
        float step = weight / (float)((double)L * n);
        double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
        for (size_t k = 0; k < n; k++) {
            float e = f[k] - r[k];
            sum += fabsf(e);
            if (g) g[k] = e > 0 ? step : e < 0 ? -step : 0.0f;
        }
        loss += sum / ((double)L * n);
        if (dout) dout[i] = g;
    }
    return (float)(weight * loss);
}

static float mean_sigmoid(const float *l, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += sigmoid(l[i]);
    return (float)(s / n);
}

/* The G half of a phase-2 step, from G's output fake (taped in tg): D frozen on hr and
 * fake, the adversarial, feature-matching and L1 terms, G's backward pass and Adam step. */
static void g_update(sr_model *m, nn_optim *og, nn_arena *a, sr_gan_loss loss, float l1_weight, float adv_weight,
                     float fm_weight, nn_tape *tg, float *fake, const float *hr, int B, sr_step_stats *st) {
    size_t n = (size_t)B * nn_seq_out_size(&m->g);
    int P = B * (int)nn_seq_out_size(&m->d); /* patch logits per batch */
    nn_tape tr, tf;
    memset(&tr, 0, sizeof tr), memset(&tf, 0, sizeof tf);
    nn_params_zero_grad(&m->gp);
    m->d.frozen = 1;
    float *lreal = nn_seq_forward(&m->d, &tr, a, hr, B, 0);
    float *lfake = nn_seq_forward(&m->d, &tf, a, fake, B, 0);
    float *dlf = nn_arena_zeros(a, (size_t)P);
    if (loss == SR_GAN_RAGAN)
        st->loss_g_adv = sr_ragan_loss(lreal, lfake, P, NULL, dlf, 1, adv_weight);
    else
        st->loss_g_adv = nn_bce_logits_const(dlf, lfake, 1.0f, (size_t)P, adv_weight);
    const float *dfeat[NN_SEQ_MAX] = {0};
    st->loss_fm = fm_weight > 0 ? sr_feature_match(&m->d, &tr, &tf, a, fm_weight, dfeat) : 0.0f;
    float *dfake = nn_seq_backward_ex(&m->d, &tf, a, dlf, 1, dfeat);
    m->d.frozen = 0;
    st->loss_l1 = nn_l1(dfake, fake, hr, n, l1_weight);
    nn_seq_backward(&m->g, tg, a, dfake, 0);
    nn_optim_step(og, &m->gp, og->lr);
}

void sr_gan_step(sr_model *m, nn_optim *og, nn_optim *od, nn_arena *a, sr_gan_loss loss, float l1_weight,
                 float adv_weight, float fm_weight, int update_g, const float *lr, const float *hr, int B,
                 sr_step_stats *st) {
    nn_arena_reset(a);
    size_t n = (size_t)B * nn_seq_out_size(&m->g);
    int P = B * (int)nn_seq_out_size(&m->d); /* patch logits per batch */
    nn_tape tg;
    memset(&tg, 0, sizeof tg);
    float *fake = nn_seq_forward(&m->g, &tg, a, lr, B, update_g);
    if (update_g) {
        g_update(m, og, a, loss, l1_weight, adv_weight, fm_weight, &tg, fake, hr, B, st);
    } else { /* D's warm-up: G's output only, its L1 for the log */
        st->loss_l1 = nn_l1(nn_arena_floats(a, n), fake, hr, n, l1_weight);
        st->loss_g_adv = st->loss_fm = 0.0f;
    }
    /* ---- D update on [hr; fake] ---- */
    nn_params_zero_grad(&m->dp);
    float *both = nn_arena_floats(a, 2 * n);
    memcpy(both, hr, n * sizeof(float));
    memcpy(both + n, fake, n * sizeof(float));
    nn_tape td;
    memset(&td, 0, sizeof td);
    float *l2 = nn_seq_forward(&m->d, &td, a, both, 2 * B, 1);
    float *dl = nn_arena_zeros(a, (size_t)2 * P);
    if (loss == SR_GAN_RAGAN) {
        st->loss_d = sr_ragan_loss(l2, l2 + P, P, dl, dl + P, 0, 1.0f);
    } else {
        st->loss_d = nn_bce_logits_const(dl, l2, 1.0f, (size_t)P, 1.0f);
        st->loss_d += nn_bce_logits_const(dl + P, l2 + P, 0.0f, (size_t)P, 1.0f);
    }
    nn_seq_backward(&m->d, &td, a, dl, 0);
    nn_optim_step(od, &m->dp, od->lr);
    st->d_real = mean_sigmoid(l2, P);
    st->d_fake = mean_sigmoid(l2 + P, P);
}
