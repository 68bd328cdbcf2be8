/* optim.c - optimizers, clipping, schedules, EMA, initialisation; see optim.h. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "base.h"

nn_optim nn_sgd(float lr, float momentum, float weight_decay) {
    nn_optim o = {NN_OPT_SGD, lr, 0.0f, 0.0f, 0.0f, momentum, weight_decay, 0};
    return o;
}

nn_optim nn_adam(float lr, float beta1, float beta2, float eps, float weight_decay) {
    nn_optim o = {NN_OPT_ADAM, lr, beta1, beta2, eps, 0.0f, weight_decay, 0};
    return o;
}

nn_optim nn_adamw(float lr, float beta1, float beta2, float eps, float weight_decay) {
    nn_optim o = {NN_OPT_ADAMW, lr, beta1, beta2, eps, 0.0f, weight_decay, 0};
    return o;
}

/* torch's Adam: denom = sqrt(v) / sqrt(bc2) + eps; p -= (lr / bc1) * m / denom. restrict
 * lets the compiler vectorise (the four arrays never overlap). */
static void adam_update(float *restrict w, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                        float b1, float b2, float eps, float step_size, float sbc2, float decay, float l2) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - step_size * mi / (sqrtf(vi) / sbc2 + eps);
    }
}

void nn_optim_step(nn_optim *o, nn_params *ps, float lr) {
    nn_params_moments(ps); /* allocated once, then reused */
    nn_params_ensure_grad(ps);
    nn_params_sync_grad(ps);
    o->step++;
    double bc1 = 1.0 - pow(o->beta1, (double)o->step);
    double bc2 = 1.0 - pow(o->beta2, (double)o->step);
    for (int k = 0; k < ps->n; k++) {
        const nn_param *p = &ps->p[k];
        if (!p->trainable) continue;
        float *w = ps->data + p->offset, *g = ps->grad + p->offset;
        float *m = ps->m + p->offset, *v = ps->v + p->offset;
        size_t n = p->numel;
        float wd = o->weight_decay;
        switch (o->kind) {
        case NN_OPT_SGD: {
            int first = o->step == 1;
#pragma omp parallel for schedule(static) if (n > 16384)
            for (size_t i = 0; i < n; i++) {
                float gi = g[i] + wd * w[i];
                if (o->momentum != 0.0f) {
                    m[i] = first ? gi : o->momentum * m[i] + gi;
                    gi = m[i];
                }
                w[i] -= lr * gi;
            }
            break;
        }
        case NN_OPT_ADAM:
        case NN_OPT_ADAMW: {
            int decoupled = o->kind == NN_OPT_ADAMW;
            float step_size = (float)(lr / bc1);
            float decay = decoupled && !p->no_decay ? 1.0f - lr * wd : 1.0f;
            adam_update(w, g, m, v, n, o->beta1, o->beta2, o->eps, step_size, (float)sqrt(bc2), decay,
                        decoupled ? 0.0f : wd);
            break;
        }
        }
    }
}

float nn_grad_norm(nn_params *ps) {
    double s = 0.0;
    if (!ps->grad) return 0.0f;
    nn_params_sync_grad(ps);
    for (int k = 0; k < ps->n; k++) {
        const nn_param *p = &ps->p[k];
        if (!p->trainable) continue;
        const float *g = ps->grad + p->offset;
        for (size_t i = 0; i < p->numel; i++) s += (double)g[i] * g[i];
    }
    return (float)sqrt(s);
}

float nn_clip_grad_norm(nn_params *ps, float max_norm) {
    nn_params_ensure_grad(ps);
    nn_params_sync_grad(ps);
    float norm = nn_grad_norm(ps);
    float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f) {
        for (int k = 0; k < ps->n; k++) {
            const nn_param *p = &ps->p[k];
            if (!p->trainable) continue;
            float *g = ps->grad + p->offset;
            for (size_t i = 0; i < p->numel; i++) g[i] *= coef;
        }
    }
    return norm;
}

nn_schedule nn_schedule_constant(float lr) {
    nn_schedule s = {0, lr, 0, 0, lr};
    return s;
}

nn_schedule nn_schedule_cosine(float lr, long warmup, long total, float min_lr) {
    T2I_ASSERT(warmup >= 0 && total > 0);
    nn_schedule s = {1, lr, warmup, total, min_lr};
    return s;
}

float nn_schedule_lr(const nn_schedule *s, long step) {
    if (s->kind == 0) return s->base_lr;
    /* linear warmup from base/warmup at step 0 to base at step warmup-1 */
    if (step < s->warmup) return s->base_lr * (float)(step + 1) / (float)s->warmup;
    long decay_steps = s->total - s->warmup;
    if (decay_steps <= 0 || step >= s->total) return s->min_lr;
    double progress = (double)(step - s->warmup) / (double)decay_steps;
    double c = 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(s->min_lr + (s->base_lr - s->min_lr) * c);
}

void nn_ema_update(nn_params *ema, const nn_params *model, float decay) {
    T2I_ASSERT(ema->n == model->n && ema->total == model->total);
    for (int k = 0; k < model->n; k++) {
        const nn_param *p = &model->p[k];
        float *e = ema->data + p->offset;
        const float *w = model->data + p->offset;
        if (!p->trainable) {
            memcpy(e, w, p->numel * sizeof(float));
            continue;
        }
        for (size_t i = 0; i < p->numel; i++) e[i] = decay * e[i] + (1.0f - decay) * w[i];
    }
}

void nn_init_pytorch_uniform(float *w, size_t n, int fan_in, t2i_rng *rng) {
    T2I_ASSERT(fan_in > 0);
    float bound = 1.0f / sqrtf((float)fan_in);
    t2i_rng_fill_uniform(rng, w, n, -bound, bound);
}

void nn_init_normal(float *w, size_t n, float mean, float std, t2i_rng *rng) {
    t2i_rng_fill_normal(rng, w, n, mean, std);
}

void nn_init_const(float *w, size_t n, float value) {
    for (size_t i = 0; i < n; i++) w[i] = value;
}
