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
}

int dalle_sample_check(const dalle_sample_opts *o, int codebook) {
    if (!(o->temperature > 0.0f && o->temperature <= 100.0f))
        return t2i_error_set("--temperature must be in (0, 100], got %g", (double)o->temperature);
    if (o->top_k < 0 || o->top_k > codebook)
        return t2i_error_set("--top-k must be in 0..%d (the codebook size; 0 = off), got %d", codebook, o->top_k);
    if (!(o->top_p > 0.0f && o->top_p <= 1.0f)) return t2i_error_set("--top-p must be in (0, 1], got %g", (double)o->top_p);
    if (!(o->cfg >= 0.0f && o->cfg <= 100.0f)) return t2i_error_set("--cfg must be in [0, 100], got %g", (double)o->cfg);
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

void dalle_sample(dalle_model *m, nn_arena *a, const int32_t *text, int n, uint64_t seed, long first,
                  const dalle_sample_opts *o, int32_t *codes) {
    const dalle_config *c = &m->cfg;
    T2I_ASSERT(n > 0 && first >= 0);
    int C = c->width, K = c->codebook, TL = c->text_len, IL = dalle_image_len(c), T = TL + IL, TV = c->text_vocab;
    int guided = o->cfg != 1.0f;
    int B = guided ? 2 * n : n;
    int32_t *tok = nn_arena_bytes(a, (size_t)B * T * sizeof(int32_t)); /* (B, T) */
    int32_t *null_text = nn_arena_bytes(a, (size_t)TL * sizeof(int32_t));
    dalle_null_text(m, null_text);
    for (int b = 0; b < B; b++) memcpy(tok + (size_t)b * T, b < n ? text : null_text, (size_t)TL * sizeof(int32_t));
    t2i_rng root, *rng = nn_arena_bytes(a, (size_t)n * sizeof(t2i_rng));
    t2i_rng_seed(&root, seed);
    for (int i = 0; i < n; i++) rng[i] = t2i_rng_split(&root, (uint64_t)(first + i));
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

    for (int j = 0; j < IL; j++) {
        if (o->stop && atomic_load_explicit(o->stop, memory_order_relaxed)) break;
        size_t mark = nn_arena_mark(a);
        int t = TL + j; /* positions 0..t-1 are known; the next code goes to position t */
        if (o->cached) {
            if (j == 0) {
                /* every candidate shares the caption (and every unguided row the null
                 * caption): run the text once per distinct row, then fan its keys and
                 * values out to all B rows */
                int U = guided ? 2 : 1, *from = nn_arena_bytes(a, (size_t)B * sizeof(int));
                for (int b = 0; b < B; b++) from[b] = b < n ? 0 : 1;
                float *xu = nn_arena_floats(a, (size_t)U * TL * C);
                for (int u = 0; u < U; u++) dalle_embed(m, xu + (size_t)u * TL * C, tok + (size_t)(u ? n : 0) * T, 1, TL, 0);
                nn_tf_cache pre;
                nn_tf_cache_init(&pre, &m->tf, U, TL);
                float *h = nn_tf_forward_cached(&m->tf, &pre, a, xu, TL);
                nn_tf_cache_fan_out(&cache, &pre, from);
                nn_tf_cache_free(&pre);
                for (int b = 0; b < B; b++)
                    memcpy(hlast + (size_t)b * C, h + ((size_t)from[b] * TL + TL - 1) * C, (size_t)C * sizeof(float));
            } else {
                float *x = nn_arena_floats(a, (size_t)B * C);
                for (int b = 0; b < B; b++) step_tok[b] = tok[(size_t)b * T + t - 1];
                dalle_embed(m, x, step_tok, B, 1, t - 1);
                float *h = nn_tf_forward_cached(&m->tf, &cache, a, x, 1);
                memcpy(hlast, h, (size_t)B * C * sizeof(float));
            }
        } else {
            int32_t *pre = nn_arena_bytes(a, (size_t)B * t * sizeof(int32_t));
            for (int b = 0; b < B; b++) memcpy(pre + (size_t)b * t, tok + (size_t)b * T, (size_t)t * sizeof(int32_t));
            float *x = nn_arena_floats(a, (size_t)B * t * C);
            dalle_embed(m, x, pre, B, t, 0);
            float *h = nn_tf_forward(&m->tf, NULL, a, x, B, t);
            for (int b = 0; b < B; b++)
                memcpy(hlast + (size_t)b * C, h + ((size_t)b * t + t - 1) * C, (size_t)C * sizeof(float));
        }
        nn_arena_rewind(a, mark);
        image_logits(m, a, o->cached ? &head : NULL, hlast, B, logits);
        if (guided) dalle_cfg_mix(mixed, logits, logits + (size_t)n * K, (size_t)n * K, o->cfg);
        else memcpy(mixed, logits, (size_t)n * K * sizeof(float));
        /* threads only when there is enough work to pay for waking them */
#pragma omp parallel for schedule(static) if ((long)n * K >= 16384)
        for (int i = 0; i < n; i++) {
            float *p = probs + (size_t)i * K;
            dalle_filter_probs(p, mixed + (size_t)i * K, K, o->temperature, o->top_k, o->top_p, work + (size_t)i * 2 * K);
            int code = dalle_draw(p, K, t2i_rng_uniform(&rng[i]));
            codes[(size_t)i * IL + j] = code;
        }
        for (int b = 0; b < B; b++) tok[(size_t)b * T + t] = TV + codes[(size_t)(b % n) * IL + j];
    }
    if (o->cached) nn_tf_cache_free(&cache), nn_tf_unpack(&m->tf), nn_packed_free(&head);
}
