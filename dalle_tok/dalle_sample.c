/* dalle_sample.c - drawing image codes from the transformer (see dalle.h "Sampling").
 *
 * One call samples n candidates of one caption together. With guidance (cfg != 1) the
 * batch holds 2n sequences: rows 0..n-1 the caption, rows n..2n-1 the unconditional text
 * (SOT + pads); both halves are fed the same drawn codes, so row n+i is candidate i
 * without its caption. Only the image-code rows of the head are evaluated at each step
 * (K of the V logits), since text ids are never drawn.
 *
 * Cached path: the text runs once per distinct row (the caption, and the null caption when
 * guided) and its keys and values are fanned out to all rows' cache; then one position per
 * step, its products with weights packed once for the call (nn_tf_pack, nn_packed: a
 * BLAS GEMM would re-pack them at every step). Uncached path: a full inference forward
 * over the whole prefix (B, text_len + j) at step j - the same arithmetic on more rows, so
 * the codes agree with the cached path (the logits differ by float rounding only; a draw
 * could differ only if its uniform fell within ~1e-6 of a cumulative-probability
 * boundary).
 *
 * Image prompts (opts.keep, dalle.h "Prompted sampling"): kept codes are written into the
 * sequences first; the cached path runs the leading kept run with the text, and feeds
 * later kept codes like drawn ones without evaluating the head for them; refine() runs
 * the Metropolis-Hastings passes on full forwards of the finished sequences.
 *
 * Reproducibility: candidate first+i draws one uniform per image position from
 * t2i_rng_split(root(seed), first + i); nothing else is random, and each candidate's
 * filtering runs on its own scratch, so a candidate's codes do not depend on the batch it
 * was drawn in or on the thread count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "dalle.h"

void dalle_sample_defaults(dalle_sample_opts *o) {
    o->temperature = 1.0f;
    o->top_k = 0;
    o->top_p = 1.0f;
    o->cfg = 1.0f;
    o->cached = 1;
    o->stop = NULL;
    o->prompt = NULL;
    o->keep = NULL;
    o->passes = 0;
    o->keep_prob = 0.0f;
}

int dalle_sample_check(const dalle_sample_opts *o, int codebook) {
    if (!(o->temperature > 0.0f && o->temperature <= 100.0f))
        return t2i_error_set("--temperature must be in (0, 100], got %g", (double)o->temperature);
    if (o->top_k < 0 || o->top_k > codebook)
        return t2i_error_set("--top-k must be in 0..%d (the codebook size; 0 = off), got %d", codebook, o->top_k);
    if (!(o->top_p > 0.0f && o->top_p <= 1.0f)) return t2i_error_set("--top-p must be in (0, 1], got %g", (double)o->top_p);
    if (!(o->cfg >= 0.0f && o->cfg <= 100.0f)) return t2i_error_set("--cfg must be in [0, 100], got %g", (double)o->cfg);
    if (o->passes < 0 || o->passes > 100) return t2i_error_set("--passes must be in 0..100, got %d", o->passes);
    if (o->keep && !o->prompt) return t2i_error_set("a keep mask needs the prompt codes");
    if (!(o->keep_prob >= 0.0f && o->keep_prob <= 1.0f))
        return t2i_error_set("--variation-keep must be in [0, 1], got %g", (double)o->keep_prob);
    if (o->keep_prob > 0.0f && !o->prompt) return t2i_error_set("a keep probability needs the prompt codes");
    return 0;
}

/* Total order for "more likely first": larger value, then lower index. */
static inline int before(const float *v, int a, int b) { return v[a] > v[b] || (v[a] == v[b] && a < b); }

/* Rearranges idx[0..n) so that its first k entries are the k best under `before`. */
static void select_top(int *idx, int n, int k, const float *v) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        /* median of three as pivot, then Hoare-style partition */
        int mid = lo + (hi - lo) / 2;
        int a = idx[lo], b = idx[mid], c = idx[hi], p;
        if (before(v, a, b)) p = before(v, b, c) ? b : (before(v, a, c) ? c : a);
        else p = before(v, a, c) ? a : (before(v, b, c) ? c : b);
        int i = lo, j = hi;
        while (i <= j) {
            while (before(v, idx[i], p)) i++;
            while (before(v, p, idx[j])) j--;
            if (i <= j) {
                int t = idx[i];
                idx[i] = idx[j], idx[j] = t;
                i++, j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* Heap sort of idx[0..n) into `before` order. */
static void sift(int *idx, int root, int n, const float *v) {
    for (;;) {
        int child = 2 * root + 1;
        if (child >= n) return;
        /* max-heap of the "worst" end: the root is the element that sorts last */
        if (child + 1 < n && before(v, idx[child], idx[child + 1])) child++;
        if (!before(v, idx[root], idx[child])) return;
        int t = idx[root];
        idx[root] = idx[child], idx[child] = t;
        root = child;
    }
}
static void sort_best_first(int *idx, int n, const float *v) {
    for (int i = n / 2 - 1; i >= 0; i--) sift(idx, i, n, v);
    for (int end = n - 1; end > 0; end--) {
        int t = idx[0];
        idx[0] = idx[end], idx[end] = t;
        sift(idx, 0, end, v);
    }
}

void dalle_filter_probs(float *probs, const float *logits, int V, float temperature, int top_k, float top_p,
                        int *work) {
    int *idx = work, *kept = work + V;
    for (int j = 0; j < V; j++) probs[j] = logits[j] / temperature, idx[j] = j;
    int n = V;
    if (top_k > 0 && top_k < V) {
        select_top(idx, V, top_k, probs);
        n = top_k;
    }
    for (int j = 0; j < V; j++) kept[j] = 0;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        kept[idx[i]] = 1;
        mx = probs[idx[i]] > mx ? probs[idx[i]] : mx;
    }
    double sum = 0.0;
    for (int j = 0; j < V; j++) {
        probs[j] = kept[j] ? expf(probs[j] - mx) : 0.0f;
        sum += probs[j];
    }
    for (int j = 0; j < V; j++) probs[j] = (float)(probs[j] / sum);
    if (top_p < 1.0f) {
        sort_best_first(idx, n, probs);
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            int j = idx[i];
            if (cum < top_p) cum += probs[j];
            else probs[j] = 0.0f;
        }
        for (int j = 0; j < V; j++) probs[j] = (float)(probs[j] / cum);
    }
}

int dalle_draw(const float *probs, int V, float u) {
    double total = 0.0;
    for (int j = 0; j < V; j++) total += probs[j];
    double target = u * total, cum = 0.0;
    int last = 0;
    for (int j = 0; j < V; j++) {
        if (probs[j] <= 0.0f) continue;
        cum += probs[j];
        last = j;
        if (target < cum) return j;
    }
    return last;
}

void dalle_cfg_mix(float *out, const float *cond, const float *uncond, size_t n, float s) {
    for (size_t i = 0; i < n; i++) out[i] = uncond[i] + s * (cond[i] - uncond[i]);
}

/* logits (B, K) of the image codes from the last hidden states h (B, C); head: the
 * image-code rows of the head packed, or NULL. */
static void image_logits(dalle_model *m, nn_arena *a, const nn_packed *head, const float *h, int B, float *logits) {
    const dalle_config *c = &m->cfg;
    int C = c->width, K = c->codebook;
    size_t mark = nn_arena_mark(a);
    float *ln = nn_arena_floats(a, (size_t)B * C);
    nn_layernorm_forward(ln, NULL, NULL, h, nn_params_val(&m->ps, m->lnf_w), nn_params_val(&m->ps, m->lnf_b),
                         (size_t)B, C, c->ln_eps);
    const float *w = nn_params_val(&m->ps, m->head_w) + (size_t)c->text_vocab * C;
    const float *b = nn_params_val(&m->ps, m->head_b) + c->text_vocab;
    if (head) nn_packed_gemm(logits, ln, head, b, B, 0);
    else nn_linear_forward(logits, ln, w, b, (size_t)B, C, K);
    nn_arena_rewind(a, mark);
}

/* logits (B, IL, K) <- the image-code logits of every image position of the full
 * sequences tok (B, T): position t's row predicts the code at t + 1. */
static void seq_image_logits(dalle_model *m, nn_arena *a, const int32_t *tok, int B, float *logits) {
    const dalle_config *c = &m->cfg;
    int C = c->width, TL = c->text_len, IL = dalle_image_len(c), T = TL + IL;
    size_t mark = nn_arena_mark(a);
    float *x = nn_arena_floats(a, (size_t)B * T * C);
    dalle_embed(m, x, tok, B, T, 0);
    float *h = nn_tf_forward(&m->tf, NULL, a, x, B, T);
    float *hh = nn_arena_floats(a, (size_t)B * IL * C);
    for (int b = 0; b < B; b++)
        memcpy(hh + (size_t)b * IL * C, h + ((size_t)b * T + TL - 1) * C, (size_t)IL * C * sizeof(float));
    image_logits(m, a, NULL, hh, B * IL, logits);
    nn_arena_rewind(a, mark);
}

/* mix (n, IL, K) <- the guided image logits of the n candidates' current sequences. */
static void guided_logits(dalle_model *m, nn_arena *a, const int32_t *tok, int n, int guided, float s, float *mix) {
    size_t IK = (size_t)dalle_image_len(&m->cfg) * m->cfg.codebook;
    int B = guided ? 2 * n : n;
    size_t mark = nn_arena_mark(a);
    float *lg = guided ? nn_arena_floats(a, (size_t)B * IK) : mix;
    seq_image_logits(m, a, tok, B, lg);
    if (guided) dalle_cfg_mix(mix, lg, lg + (size_t)n * IK, (size_t)n * IK, s);
    nn_arena_rewind(a, mark);
}

/* log p(code) under softmax(logits / temperature) over K codes. */
static double log_prob(const float *logits, int K, float temperature, int code) {
    float mx = -INFINITY;
    for (int k = 0; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp((double)(logits[k] - mx) / temperature);
    return (double)(logits[code] - mx) / temperature - log(sum);
}

/* The refinement passes of "Prompted sampling" (dalle.h) over the finished raster codes:
 * tok (B, T) holds them (both halves when guided). */
static void refine(dalle_model *m, nn_arena *a, int32_t *tok, int n, int guided, t2i_rng *rng,
                   const dalle_sample_opts *o, int32_t *codes) {
    const dalle_config *c = &m->cfg;
    int K = c->codebook, TL = c->text_len, IL = dalle_image_len(c), T = TL + IL, TV = c->text_vocab;
    int B = guided ? 2 * n : n, last_kept = -1;
    for (int j = 0; j < IL; j++)
        if (o->keep[j]) last_kept = j;
    size_t IK = (size_t)IL * K;
    float *cur = nn_arena_floats(a, (size_t)n * IK), *prop = nn_arena_floats(a, (size_t)n * IK);
    float *probs = nn_arena_floats(a, (size_t)n * K);
    int *work = nn_arena_bytes(a, (size_t)n * 2 * K * sizeof(int));
    int32_t *ptok = nn_arena_bytes(a, (size_t)B * T * sizeof(int32_t)), *x = nn_arena_bytes(a, (size_t)n * sizeof(int32_t));
    int have_cur = 0;
    for (int pass = 0; pass < o->passes; pass++) {
        for (int j = 0; j < last_kept; j++) {
            if (o->keep[j]) continue;
            if (o->stop && atomic_load_explicit(o->stop, memory_order_relaxed)) return;
            if (!have_cur) guided_logits(m, a, tok, n, guided, o->cfg, cur), have_cur = 1;
            memcpy(ptok, tok, (size_t)B * T * sizeof(int32_t));
            for (int i = 0; i < n; i++) {
                float *p = probs + (size_t)i * K;
                dalle_filter_probs(p, cur + (size_t)i * IK + (size_t)j * K, K, o->temperature, o->top_k, o->top_p,
                                   work + (size_t)i * 2 * K);
                x[i] = dalle_draw(p, K, t2i_rng_uniform(&rng[i]));
                for (int b = i; b < B; b += n) ptok[(size_t)b * T + TL + j] = TV + x[i];
            }
            guided_logits(m, a, ptok, n, guided, o->cfg, prop);
            for (int i = 0; i < n; i++) {
                double delta = 0.0;
                const float *pc = cur + (size_t)i * IK, *pp = prop + (size_t)i * IK;
                for (int t = j + 1; t < IL; t++) {
                    int code = codes[(size_t)i * IL + t];
                    delta += log_prob(pp + (size_t)t * K, K, o->temperature, code) -
                             log_prob(pc + (size_t)t * K, K, o->temperature, code);
                }
                double u = t2i_rng_uniform(&rng[i]);
                if (x[i] == codes[(size_t)i * IL + j] || !(log(u) < delta)) continue;
                codes[(size_t)i * IL + j] = x[i];
                for (int b = i; b < B; b += n) tok[(size_t)b * T + TL + j] = TV + x[i];
                memcpy(cur + (size_t)i * IK, pp, IK * sizeof(float));
            }
        }
    }
}

void dalle_sample(dalle_model *m, nn_arena *a, const int32_t *text, int n, uint64_t seed, long first,
                  const dalle_sample_opts *o, int32_t *codes) {
    const dalle_config *c = &m->cfg;
    T2I_ASSERT(n > 0 && first >= 0);
    T2I_ASSERT(!o->keep || o->prompt);
    int C = c->width, K = c->codebook, TL = c->text_len, IL = dalle_image_len(c), T = TL + IL, TV = c->text_vocab;
    int guided = o->cfg != 1.0f;
    int B = guided ? 2 * n : n;
    int L0 = 0; /* the leading run of kept positions, run with the text */
    while (o->keep && L0 < IL && o->keep[L0]) L0++;
    int32_t *tok = nn_arena_bytes(a, (size_t)B * T * sizeof(int32_t)); /* (B, T) */
    int32_t *null_text = nn_arena_bytes(a, (size_t)TL * sizeof(int32_t));
    dalle_null_text(m, null_text);
    for (int b = 0; b < B; b++) memcpy(tok + (size_t)b * T, b < n ? text : null_text, (size_t)TL * sizeof(int32_t));
    if (o->keep) {
        for (int j = 0; j < IL; j++) {
            if (!o->keep[j]) continue;
            T2I_ASSERT(o->prompt[j] >= 0 && o->prompt[j] < K);
            for (int i = 0; i < n; i++) codes[(size_t)i * IL + j] = o->prompt[j];
            for (int b = 0; b < B; b++) tok[(size_t)b * T + TL + j] = TV + o->prompt[j];
        }
    }
    if (L0 == IL) return; /* everything given */
    t2i_rng root, *rng = nn_arena_bytes(a, (size_t)n * sizeof(t2i_rng));
    t2i_rng_seed(&root, seed);
    for (int i = 0; i < n; i++) rng[i] = t2i_rng_split(&root, (uint64_t)(first + i));
    for (int j = 0; j < L0; j++)
        for (int i = 0; i < n; i++) (void)t2i_rng_uniform(&rng[i]);
    float *logits = nn_arena_floats(a, (size_t)B * K), *mixed = nn_arena_floats(a, (size_t)n * K);
    float *probs = nn_arena_floats(a, (size_t)n * K);
    int *work = nn_arena_bytes(a, (size_t)n * 2 * K * sizeof(int));
    float *hlast = nn_arena_floats(a, (size_t)B * C);
    int32_t *step_tok = nn_arena_bytes(a, (size_t)B * sizeof(int32_t));
    nn_tf_cache cache;
    memset(&cache, 0, sizeof cache);
    nn_packed head = {0};
    if (o->cached) {
        /* decode steps multiply B rows by every weight: pack the weights once for them */
        nn_tf_cache_init(&cache, &m->tf, B, T - 1);
        nn_tf_pack(&m->tf);
        nn_pack_weights(&head, nn_params_val(&m->ps, m->head_w) + (size_t)TV * C, K, C);
    }

    int stopped = 0;
    for (int j = L0; j < IL; j++) {
        if (o->stop && atomic_load_explicit(o->stop, memory_order_relaxed)) {
            stopped = 1;
            break;
        }
        size_t mark = nn_arena_mark(a);
        int t = TL + j; /* positions 0..t-1 are known; the next code goes to position t */
        int kept = o->keep && o->keep[j];
        if (o->cached) {
            if (j == L0) {
                /* every candidate shares the caption and the kept prefix (and every
                 * unguided row the null caption): run them once per distinct row, then
                 * fan the keys and values out to all B rows */
                int U = guided ? 2 : 1, *from = nn_arena_bytes(a, (size_t)B * sizeof(int));
                for (int b = 0; b < B; b++) from[b] = b < n ? 0 : 1;
                float *xu = nn_arena_floats(a, (size_t)U * t * C);
                for (int u = 0; u < U; u++) dalle_embed(m, xu + (size_t)u * t * C, tok + (size_t)(u ? n : 0) * T, 1, t, 0);
                nn_tf_cache pre;
                nn_tf_cache_init(&pre, &m->tf, U, t);
                float *h = nn_tf_forward_cached(&m->tf, &pre, a, xu, t);
                nn_tf_cache_fan_out(&cache, &pre, from);
                nn_tf_cache_free(&pre);
                for (int b = 0; b < B; b++)
                    memcpy(hlast + (size_t)b * C, h + ((size_t)from[b] * t + t - 1) * C, (size_t)C * sizeof(float));
            } else {
                /* a kept position still feeds its predecessor: the cache holds every code */
                float *x = nn_arena_floats(a, (size_t)B * C);
                for (int b = 0; b < B; b++) step_tok[b] = tok[(size_t)b * T + t - 1];
                dalle_embed(m, x, step_tok, B, 1, t - 1);
                float *h = nn_tf_forward_cached(&m->tf, &cache, a, x, 1);
                memcpy(hlast, h, (size_t)B * C * sizeof(float));
            }
        } else if (!kept) {
            int32_t *pre = nn_arena_bytes(a, (size_t)B * t * sizeof(int32_t));
            for (int b = 0; b < B; b++) memcpy(pre + (size_t)b * t, tok + (size_t)b * T, (size_t)t * sizeof(int32_t));
            float *x = nn_arena_floats(a, (size_t)B * t * C);
            dalle_embed(m, x, pre, B, t, 0);
            float *h = nn_tf_forward(&m->tf, NULL, a, x, B, t);
            for (int b = 0; b < B; b++)
                memcpy(hlast + (size_t)b * C, h + ((size_t)b * t + t - 1) * C, (size_t)C * sizeof(float));
        }
        nn_arena_rewind(a, mark);
        if (kept) {
            for (int i = 0; i < n; i++) (void)t2i_rng_uniform(&rng[i]);
            continue; /* its code is in codes and tok already */
        }
        image_logits(m, a, o->cached ? &head : NULL, hlast, B, logits);
        if (guided) dalle_cfg_mix(mixed, logits, logits + (size_t)n * K, (size_t)n * K, o->cfg);
        else memcpy(mixed, logits, (size_t)n * K * sizeof(float));
        /* threads only when there is enough work to pay for waking them */
#pragma omp parallel for schedule(static) if ((long)n * K >= 16384)
        for (int i = 0; i < n; i++) {
            float *p = probs + (size_t)i * K;
            dalle_filter_probs(p, mixed + (size_t)i * K, K, o->temperature, o->top_k, o->top_p, work + (size_t)i * 2 * K);
            int code = dalle_draw(p, K, t2i_rng_uniform(&rng[i]));
            if (o->keep_prob > 0.0f && t2i_rng_uniform(&rng[i]) < o->keep_prob) code = o->prompt[j];
            codes[(size_t)i * IL + j] = code;
        }
        for (int b = 0; b < B; b++) tok[(size_t)b * T + t] = TV + codes[(size_t)(b % n) * IL + j];
    }
    if (o->cached) nn_tf_cache_free(&cache), nn_tf_unpack(&m->tf), nn_packed_free(&head);
    if (!stopped && o->keep && o->passes > 0 && o->keep_prob == 0.0f) refine(m, a, tok, n, guided, rng, o, codes);
}
