/* request.h - the JSON bodies of `t2i serve`'s POST endpoints, parsed and validated by pure
 * functions (text in, a struct or one line of error out: no I/O, no model), so that
 * tests/fuzz/fuzz_request.c can drive them with any bytes.
 *
 *     serve_gen_req q;
 *     char err[256];
 *     if (serve_parse_gen(body, len, &lim, 0, &q, err, sizeof err) != 0) answer 400 with err;
 *     ... q.prompt, q.n, q.candidates ...
 *     serve_gen_req_free(&q);
 *
 * Unknown fields are ignored (OpenAI clients send "model", "user", ...). Every known field
 * is type-checked (an integer must be a JSON number with no fraction), range-checked
 * against lim, and text must be valid UTF-8 without control characters. Errors name the
 * field: "n: must be an integer from 1 to 1000, not 2.5".
 * Returns 0, or -1 with the message in err (nothing to free on error).
 */
#ifndef T2I_SERVE_REQUEST_H
#define T2I_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"

enum {
    SERVE_MAX_PROMPT = 1000,  /* bytes of a prompt or label */
    SERVE_MAX_N = 1000,       /* images returned */
    SERVE_MAX_LABELS = 64,
};

typedef struct {
    int max_candidates;       /* --max-candidates */
    int max_images;           /* images of one rerank */
    dalle_sample_opts sample; /* the defaults of cfg, temperature, top_k, top_p */
} serve_limits;

typedef struct {
    uint8_t *data;            /* decoded bytes (heap) */
    size_t len;
} serve_blob;

typedef enum { SERVE_GEN_AUTO, SERVE_GEN_DALLE, SERVE_GEN_GAN, SERVE_GEN_BOTH } serve_generator;

typedef struct {
    char *prompt;             /* heap, valid text */
    int n;                    /* images returned */
    int candidates;           /* per source */
    serve_generator generator;
    uint64_t seed;            /* 0 .. 2^53 */
    dalle_sample_opts sample; /* checked by dalle_sample_check */
    int upscale;              /* -1 = not given (the server's default) */
    int size_w, size_h;       /* 0 = not given */
    int response_url;         /* response_format "url" (else b64_json) */
    /* image prompts (the transformer; as t2i generate --image/--mask/--variations):
     * "image" (base64 PNG/JPEG) with "keep_rows"/"keep_cols" (a count of token rows or a
     * fraction below 1), or "mask" (base64, white = redraw; "passes" refinement passes,
     * 2), or "variations": true ("variation_keep", 0.5). Exactly one mode with an image;
     * none of them without. The bytes are not yet known to be images. */
    serve_blob image, mask;   /* data NULL: not given */
    float keep_rows, keep_cols;
    int variations;
} serve_gen_req;

/* for_job: the default n is 32 (POST /v1/jobs), else 1 (OpenAI's /v1/images/generations). */
int serve_parse_gen(const char *body, size_t len, const serve_limits *lim, int for_job, serve_gen_req *q, char *err,
                    size_t cap);
void serve_gen_req_free(serve_gen_req *q);

typedef struct {
    char *prompt;
    serve_blob *images;       /* 1 .. lim->max_images, base64-decoded (not yet known to be images) */
    int n;
} serve_rerank_req;

int serve_parse_rerank(const char *body, size_t len, const serve_limits *lim, serve_rerank_req *q, char *err,
                       size_t cap);
void serve_rerank_req_free(serve_rerank_req *q);

typedef struct {
    serve_blob image;
    char **labels;            /* 2 .. SERVE_MAX_LABELS, valid text */
    int n;
} serve_classify_req;

int serve_parse_classify(const char *body, size_t len, serve_classify_req *q, char *err, size_t cap);
void serve_classify_req_free(serve_classify_req *q);

/* Standard base64 (padding optional, no whitespace), after an optional "data:...;base64,"
 * prefix. 0 with *out (heap, *len bytes; at least one byte is allocated), or -1. */
int serve_base64_decode(const char *s, size_t n, uint8_t **out, size_t *len);
/* Base64 of data (heap, NUL-terminated). */
char *serve_base64_encode(const uint8_t *data, size_t len);

#endif
