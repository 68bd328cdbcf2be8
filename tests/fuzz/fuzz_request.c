/* fuzz_request.c - libFuzzer target for the JSON bodies of `t2i serve` (serve/request.c).
 *
 * The first byte picks the parser (generation, job, rerank, classify), the rest is the
 * body. Checked with __builtin_trap: a refused body gives one line of error (non-empty,
 * no newline) and nothing to free; an accepted one satisfies every documented range: a
 * prompt of valid text within SERVE_MAX_PROMPT bytes, n and candidates in range, sampling
 * options that dalle_sample_check accepts, an image prompt with exactly one mode (none
 * without an image), 1..max_images images, 2..SERVE_MAX_LABELS labels
 * of valid text. Base64: decoding what was encoded gives the bytes back.
 * Build and run: tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "request.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static void check_text(const char *s) {
    size_t at;
    check(s && strlen(s) <= SERVE_MAX_PROMPT && t2i_text_problem(s, &at) == NULL);
}

static void check_err(const char *err) {
    check(err[0] != 0 && strchr(err, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int which = data[0] & 3;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    serve_limits lim = {.max_candidates = 2048, .max_images = 8};
    dalle_sample_defaults(&lim.sample);
    char err[512] = "";
    if (which <= 1) {
        serve_gen_req q;
        if (serve_parse_gen(body, len, &lim, which, &q, err, sizeof err) == 0) {
            check_text(q.prompt);
            check(q.n >= 1 && q.n <= SERVE_MAX_N && q.candidates >= 1 && q.candidates <= lim.max_candidates);
            check(q.seed <= (1ULL << 53) && q.upscale >= -1 && q.upscale <= 1);
            /* the variation probability needs the prompt codes, which only the pipeline has */
            dalle_sample_opts so = q.sample;
            so.keep_prob = 0.0f;
            check(dalle_sample_check(&so, 1 << 20) == 0 && q.sample.keep_prob >= 0.0f && q.sample.keep_prob < 1.0f);
            check((q.size_w == 0) == (q.size_h == 0));
            /* an image prompt has exactly one mode, and no mode comes without an image */
            int lines = q.keep_rows != 0.0f || q.keep_cols != 0.0f;
            check((q.image.data != NULL) == (lines + (q.mask.data != NULL) + q.variations == 1));
            check(q.image.data != NULL || (!lines && !q.mask.data && !q.variations));
            serve_gen_req_free(&q);
        } else {
            check_err(err);
        }
    } else if (which == 2) {
        serve_rerank_req q;
        if (serve_parse_rerank(body, len, &lim, &q, err, sizeof err) == 0) {
            check_text(q.prompt);
            check(q.n >= 1 && q.n <= lim.max_images);
            for (int i = 0; i < q.n; i++) check(q.images[i].data != NULL);
            serve_rerank_req_free(&q);
        } else {
            check_err(err);
        }
    } else {
        serve_classify_req q;
        if (serve_parse_classify(body, len, &q, err, sizeof err) == 0) {
            check(q.n >= 2 && q.n <= SERVE_MAX_LABELS && q.image.data != NULL);
            for (int i = 0; i < q.n; i++) check_text(q.labels[i]);
            serve_classify_req_free(&q);
        } else {
            check_err(err);
        }
    }
    /* base64 round trip of the raw input */
    char *b = serve_base64_encode(data, size);
    uint8_t *back;
    size_t n;
    check(serve_base64_decode(b, strlen(b), &back, &n) == 0 && n == size && memcmp(back, data, size) == 0);
    free(back), free(b);
    return 0;
}
