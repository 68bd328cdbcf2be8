/* fuzz_tokenizer.c - libFuzzer target for the BPE tokenizer (text/): any bytes, any length.
 *
 * The vocabulary is the one CLIP ships (clip_rerank/vocab/bpe_simple_vocab_16e6.txt.gz in
 * the source tree), loaded once. Each input goes through clip_tok_clean (HTML unescaping,
 * whitespace, lowercase), clip_tok_encode, clip_tok_tokenize with CLIP's context of 77 and
 * a short one, and the ids found are decoded back with clip_tok_decode. Checked with
 * __builtin_trap: invalid UTF-8 is refused by all three with one line of error and only
 * then; every id is below the vocabulary size and never SOT or EOT (those come only from
 * the literal "<|startoftext|>"/"<|endoftext|>" pieces); a context holds SOT, the first
 * ids, EOT and zeros; decode returns a NUL-terminated string of the length it reports.
 * Build and run: tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "tokenizer.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static clip_tok *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    tok = clip_tok_load(T2I_SOURCE_DIR "/clip_rerank/vocab/bpe_simple_vocab_16e6.txt.gz", -1);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", t2i_error_msg());
        exit(1);
    }
    return 0;
}

/* Does text hold the literal special token s? (Then SOT/EOT ids may appear.) */
static int has_special(const char *text, size_t n) {
    static const char lt[] = "<|";
    for (size_t i = 0; i + 1 < n; i++)
        if (text[i] == lt[0] && text[i + 1] == lt[1]) return 1;
    return 0;
}

static void check_refused(void) {
    check(strstr(t2i_error_msg(), "UTF-8") != NULL);
    check(strchr(t2i_error_msg(), '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    int valid = t2i_utf8_invalid_at(data, size) == size;
    size_t vocab = clip_tok_vocab_size(tok);
    int32_t sot = clip_tok_sot(tok), eot = clip_tok_eot(tok);

    size_t clean_len = 0;
    char *clean = clip_tok_clean(text, size, &clean_len);
    check((clean != NULL) == valid);
    if (!clean) check_refused();
    else check(clean[clean_len] == 0 && t2i_utf8_invalid_at(clean, clean_len) == clean_len);
    /* "<|" may also appear only after unescaping (&lt;|) */
    int special = clean && has_special(clean, clean_len);
    t2i_free(clean);

    int32_t *ids = NULL;
    size_t n = 0;
    int rc = clip_tok_encode(tok, text, size, &ids, &n);
    check((rc == 0) == valid);
    if (rc != 0) {
        check_refused();
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        check(ids[i] >= 0 && (size_t)ids[i] < vocab);
        check(special || (ids[i] != sot && ids[i] != eot));
    }
    size_t out_len = 0;
    char *back = clip_tok_decode(tok, ids, n, &out_len);
    check(back != NULL && strlen(back) <= out_len && back[out_len] == 0);
    t2i_free(back);

    static const size_t contexts[] = {CLIP_TOK_CONTEXT, 3};
    for (int k = 0; k < 2; k++) {
        size_t ctx = contexts[k];
        int32_t out[CLIP_TOK_CONTEXT];
        int t = clip_tok_tokenize(tok, text, size, out, ctx);
        check(t == (n + 2 > ctx));
        check(out[0] == sot);
        size_t kept = n + 2 > ctx ? ctx - 2 : n;
        for (size_t i = 0; i < kept; i++) check(out[1 + i] == ids[i]);
        check(out[1 + kept] == eot);
        for (size_t i = kept + 2; i < ctx; i++) check(out[i] == 0);
    }
    t2i_free(ids);
    return 0;
}
