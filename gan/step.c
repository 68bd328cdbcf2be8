/* step.c - one D update and one G update of GAN training (used by `t2i gan train`, the
 * B1 benchmark and the PyTorch step-comparison test). See train.c for the schedule. */
#include <math.h>
#include <string.h>

#include "base.h"
#include "gan.h"

const char *gan_loss_name(gan_loss l) { return l == GAN_LOSS_NS ? "ns" : l == GAN_LOSS_HINGE ? "hinge" : "ls"; }

int gan_loss_parse(const char *s, gan_loss *l) {
    if (strcmp(s, "ns") == 0) *l = GAN_LOSS_NS;
    else if (strcmp(s, "hinge") == 0) *l = GAN_LOSS_HINGE;
    else if (strcmp(s, "ls") == 0) *l = GAN_LOSS_LS;
    else return -1;
    return 0;
}

float gan_objective(gan_loss loss, int kind, const float *l, float *dl, int N, float smooth, float scale) {
    switch (loss) {
    case GAN_LOSS_NS:
        return nn_bce_logits_const(dl, l, kind == 1 ? 0.0f : (kind == 0 ? smooth : 1.0f), (size_t)N, scale);
    case GAN_LOSS_HINGE: {
        double s = 0.0;
        for (int i = 0; i < N; i++) {
            if (kind == 2) {
                s -= l[i];
                if (dl) dl[i] -= scale / N;
            } else {
                float m = kind == 0 ? 1.0f - l[i] : 1.0f + l[i];
                if (m > 0) {
                    s += m;
                    if (dl) dl[i] += (kind == 0 ? -scale : scale) / N;
                }
            }
        }
        return (float)(s / N);
    }
    case GAN_LOSS_LS: {
        float target = kind == 1 ? 0.0f : 1.0f;
        double s = 0.0;
        for (int i = 0; i < N; i++) {
            float d = l[i] - target;
            s += 0.5 * d * d;
            if (dl) dl[i] += scale * d / N;
        }
        return (float)(s / N);
    }
    }
    return 0.0f;
}

static const char *const aug_names[] = {"color", "translation", "cutout"}; /* NN_AUG_* bit order */

int gan_augment_parse(const char *s) {
    if (strcmp(s, "none") == 0 || !s[0]) return 0;
    int policy = 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        int bit = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(aug_names[i]) == len && strncmp(p, aug_names[i], len) == 0) bit = i;
        if (bit < 0) return -1;
        policy |= 1 << bit;
        p += len;
        if (*p == ',') p++;
    }
    return policy;
}

void gan_augment_name(int policy, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < 3; i++)
        if (policy & (1 << i)) k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%s%s", k ? "," : "", aug_names[i]);
    if (!policy) snprintf(buf, n, "none");
}

/* D's view of images x (N, C, H, W): x itself, or an augmented copy whose draws go to *p
 * (for the backward pass) when p is set. */
static const float *augmented(const gan_model *m, nn_arena *a, const gan_train_opts *o, const float *x, int N,
                              nn_aug_item **p) {
    if (!o->augment) return x;
    const gan_config *c = &m->cfg;
    nn_aug_item *q = nn_arena_bytes(a, sizeof(nn_aug_item) * (size_t)N);
    nn_augment_draw(q, N, c->res, c->res, o->augment, o->aug_rng);
    float *y = nn_arena_floats(a, (size_t)N * c->channels * c->res * c->res);
    nn_augment_forward(y, x, q, N, c->channels, c->res, c->res);
    if (p) *p = q;
    return y;
}

static float mean_sigmoid(const float *l, int N) {
    double s = 0.0;
    for (int i = 0; i < N; i++) s += 1.0 / (1.0 + exp(-l[i]));
    return (float)(s / N);
}

void gan_mismatched_conds(float *cw, const float *c, int B, int cs) {
    for (int i = 0; i < B; i++) memcpy(cw + (size_t)i * cs, c + (size_t)((i + 1) % B) * cs, (size_t)cs * sizeof(float));
}

void gan_d_step(gan_model *m, nn_optim *od, nn_arena *a, const gan_train_opts *o, const float *x, const float *z,
                const float *c, const float *cw, int B, gan_step_stats *st) {
    int cs = gan_cond_size(&m->cfg);
    nn_arena_reset(a);
    nn_params_zero_grad(&m->dp);
    nn_tape tg;
    gan_d_tape tr, tf, tw;
    memset(&tg, 0, sizeof tg), memset(&tr, 0, sizeof tr), memset(&tf, 0, sizeof tf), memset(&tw, 0, sizeof tw);
    float *fake = gan_g_forward(m, &m->g, &tg, a, z, c, B, 1);
    float *fr, *ff, *fw;
    const float *xa = augmented(m, a, o, x, B, NULL), *fa = augmented(m, a, o, fake, B, NULL);
    float *lr = gan_d_forward(m, &tr, a, xa, c, B, 1, &fr);
    float *lf = gan_d_forward(m, &tf, a, fa, c, B, 1, &ff);
    float *dl = nn_arena_zeros(a, (size_t)B);
    float loss = gan_objective(o->loss, 0, lr, dl, B, o->smooth, 1.0f);
    gan_d_backward(m, &tr, a, x, c, fr, dl, NULL, B, 0);
    dl = nn_arena_zeros(a, (size_t)B);
    loss += gan_objective(o->loss, 1, lf, dl, B, 1.0f, 1.0f);
    gan_d_backward(m, &tf, a, fake, c, ff, dl, NULL, B, 0);
    if (cs && o->mismatch > 0) {
        /* real images paired with the next item's condition (cw, gan_mismatched_conds) count as fake */
        float *lw = gan_d_forward(m, &tw, a, xa, cw, B, 1, &fw);
        dl = nn_arena_zeros(a, (size_t)B);
        loss += o->mismatch * gan_objective(o->loss, 1, lw, dl, B, 1.0f, o->mismatch);
        gan_d_backward(m, &tw, a, x, cw, fw, dl, NULL, B, 0);
    }
    st->loss_d = loss;
    st->d_real = mean_sigmoid(lr, B);
    st->d_fake = mean_sigmoid(lf, B);
    nn_optim_step(od, &m->dp, od->lr);
}

void gan_g_step(gan_model *m, nn_optim *og, nn_arena *a, const gan_train_opts *o, const float *z, const float *c,
                int B, gan_step_stats *st) {
    nn_arena_reset(a);
    nn_params_zero_grad(&m->gp);
    nn_tape tg;
    gan_d_tape td;
    memset(&tg, 0, sizeof tg), memset(&td, 0, sizeof td);
    float *fake = gan_g_forward(m, &m->g, &tg, a, z, c, B, 1);
    float *fd;
    nn_aug_item *aug = NULL;
    const float *fa = augmented(m, a, o, fake, B, &aug);
    float *lf = gan_d_forward(m, &td, a, fa, c, B, 1, &fd);
    float *dl = nn_arena_zeros(a, (size_t)B);
    st->loss_g = gan_objective(o->loss, 2, lf, dl, B, 1.0f, 1.0f);
    m->d.frozen = 1; /* D's weights get no gradient in the G step */
    float *dimg = gan_d_backward(m, &td, a, fake, c, fd, dl, NULL, B, 1);
    m->d.frozen = 0;
    if (aug) {
        const gan_config *g = &m->cfg;
        float *df = nn_arena_zeros(a, (size_t)B * g->channels * g->res * g->res);
        nn_augment_backward(df, dimg, aug, B, g->channels, g->res, g->res);
        dimg = df;
    }
    nn_seq_backward(&m->g, &tg, a, dimg, 0);
    nn_optim_step(og, &m->gp, og->lr);
}
