/* test_tokenizer.c - the CLIP tokenizer (text/tokenizer.h).
 *
 * Reference values:
 *   - tests/data/clip_golden/tokens.jsonl: 30 strings tokenized by openai/CLIP's own
 *     simple_tokenizer.py (ids, tokens77, decoded; tests/ref/gen_clip_golden.py);
 *   - tests/data/tokens_extra.jsonl: 212 strings (entities, whitespace, casing, scripts,
 *     emoji, long words, truncation...) and 46 decode cases, from tests/ref/gen_tokens_ref.py,
 *     an independent Python implementation (html.unescape, str.lower, the regex module);
 *   - hand-worked BPE training examples (counts and tie-breaks computed in the comments).
 * Plus: invalid UTF-8 positions, missing/corrupt vocabulary files, a Hugging Face
 * vocab.json + merges.txt pair written here from the OpenAI merges (same ids; a permuted
 * pair gives the permuted ids), the learned-vocabulary round trip, several threads
 * encoding at once, and a 10 MB caption.
 *
 * The merges file is the copy in clip_rerank/vocab/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base.h"
#include "testutil.h"
#include "tokenizer.h"

static clip_tok *g_tok;  /* OpenAI's vocabulary, loaded once */

/* ------------------------------------------------------------------ helpers ---- */

typedef struct {
    cJSON **items;
    size_t n;
} jsonl;

static jsonl read_jsonl(const char *path) {
    size_t len = 0;
    char *text = t2i_read_file(path, &len, 0);
    if (!text) fail_msg("%s", t2i_error_msg());
    jsonl j = {0};
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        j.items = t2i_realloc(j.items, (j.n + 1) * sizeof(cJSON *));
        j.items[j.n++] = o;
    }
    t2i_free(text);
    return j;
}

static void free_jsonl(jsonl *j) {
    for (size_t i = 0; i < j->n; i++) cJSON_Delete(j->items[i]);
    t2i_free(j->items);
}

static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = t2i_malloc((*n + 1) * sizeof(int32_t));
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)cJSON_GetArrayItem(arr, (int)i)->valuedouble;
    return ids;
}

static void assert_ids(const char *what, const int32_t *got, size_t ngot, const int32_t *want, size_t nwant) {
    if (ngot != nwant || (nwant && memcmp(got, want, nwant * sizeof(int32_t)) != 0)) {
        size_t i = 0;
        while (i < ngot && i < nwant && got[i] == want[i]) i++;
        fail_msg("%s: %zu ids, expected %zu; first difference at %zu: got %d, want %d", what, ngot, nwant, i,
                 i < ngot ? got[i] : -1, i < nwant ? want[i] : -1);
    }
}

/* Checks one "text"/"ids"/"tokens77"/"truncated"/"decoded" record with tok. */
static void check_record(clip_tok *tok, const cJSON *o, int check_decode) {
    const char *text = tu_jstr(o, "text");
    size_t nwant, n77;
    int32_t *want = json_ids(cJSON_GetObjectItem(o, "ids"), &nwant);
    int32_t *want77 = json_ids(cJSON_GetObjectItem(o, "tokens77"), &n77);
    assert_int_equal(n77, CLIP_TOK_CONTEXT);
    int32_t *ids;
    size_t n;
    if (clip_tok_encode(tok, text, strlen(text), &ids, &n) != 0) fail_msg("%s: %s", text, t2i_error_msg());
    assert_ids(text, ids, n, want, nwant);
    int32_t ctx[CLIP_TOK_CONTEXT];
    int tr = clip_tok_tokenize(tok, text, strlen(text), ctx, CLIP_TOK_CONTEXT);
    assert_int_equal(tr, cJSON_IsTrue(cJSON_GetObjectItem(o, "truncated")));
    assert_ids(text, ctx, CLIP_TOK_CONTEXT, want77, CLIP_TOK_CONTEXT);
    if (check_decode) {
        char *dec = clip_tok_decode(tok, ids, n, NULL);
        assert_non_null(dec);
        assert_string_equal(dec, tu_jstr(o, "decoded"));
        t2i_free(dec);
    }
    t2i_free(ids);
    t2i_free(want);
    t2i_free(want77);
}

static char *merges_path(void) { return tu_clip_merges(); }

static char *read_gz_all(const char *path, size_t *len) {
    gzFile f = gzopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 22, n = 0;
    char *p = t2i_malloc(cap);
    int got;
    while ((got = gzread(f, p + n, (unsigned)(cap - n - 1))) > 0) {
        n += (size_t)got;
        if (cap - n < 2) p = t2i_realloc(p, cap *= 2);
    }
    gzclose(f);
    p[n] = 0;
    *len = n;
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------ golden ---- */

static void test_golden_openai(void **state) {
    (void)state;
    char *path = tu_path("data/clip_golden/tokens.jsonl");
    jsonl j = read_jsonl(path);
    assert_int_equal(j.n, 30);
    for (size_t i = 0; i < j.n; i++) check_record(g_tok, j.items[i], 1);
    free_jsonl(&j);
    t2i_free(path);
    assert_int_equal(clip_tok_vocab_size(g_tok), 49408);
    assert_int_equal(clip_tok_sot(g_tok), 49406);
    assert_int_equal(clip_tok_eot(g_tok), 49407);
    assert_int_equal(clip_tok_n_merges(g_tok), CLIP_TOK_OPENAI_MERGES);
}

static void test_extra_reference(void **state) {
    (void)state;
    char *path = tu_path("data/tokens_extra.jsonl");
    jsonl j = read_jsonl(path);
    size_t n_enc = 0, n_dec = 0, n_trunc = 0;
    for (size_t i = 0; i < j.n; i++) {
        const cJSON *o = j.items[i];
        if (strcmp(tu_jstr(o, "kind"), "encode") == 0) {
            const char *text = tu_jstr(o, "text");
            size_t clen;
            char *clean = clip_tok_clean(text, strlen(text), &clen);
            assert_non_null(clean);
            if (strcmp(clean, tu_jstr(o, "clean")) != 0) fail_msg("clean(%s) = '%s', want '%s'", text, clean, tu_jstr(o, "clean"));
            t2i_free(clean);
            check_record(g_tok, o, 1);
            n_enc++;
            n_trunc += cJSON_IsTrue(cJSON_GetObjectItem(o, "truncated"));
        } else {
            size_t n;
            int32_t *ids = json_ids(cJSON_GetObjectItem(o, "ids"), &n);
            char *dec = clip_tok_decode(g_tok, ids, n, NULL);
            assert_non_null(dec);
            assert_string_equal(dec, tu_jstr(o, "decoded"));
            t2i_free(dec);
            t2i_free(ids);
            n_dec++;
        }
    }
    assert_true(n_enc >= 150);
    assert_true(n_dec >= 40);
    assert_true(n_trunc >= 5);
    free_jsonl(&j);
    t2i_free(path);
}

/* A few facts checked directly (they are also in the reference file), so that a failure
 * names the behaviour. */
static void test_specific_behaviours(void **state) {
    (void)state;
    struct {
        const char *in, *clean;
    } cases[] = {
        {"&amp;amp;", "&"},                 /* unescaped twice */
        {"&amp;amp;amp;", "&amp;"},         /* ... but not three times */
        {"&notit;", "\xc2\xacit;"},         /* legacy name, longest prefix */
        {"&#128;&#129;", "\xe2\x82\xac\xc2\x81"}, /* cp1252 fix-up; 0x81 kept as is */
        {"a&#1;b", "ab"},                   /* dropped code point */
        {"&#0;", "\xef\xbf\xbd"},
        {"\xc4\xb0", "i\xcc\x87"},          /* U+0130 -> i + U+0307 */
        {"\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82"}, /* ΟΔΟΣ -> οδος (final) */
        {"\xce\x91\xce\xa3.\xce\x91", "\xce\xb1\xcf\x83.\xce\xb1"}, /* '.' is case-ignorable: σ */
        {" a\xe3\x80\x80\x1c b\xc2\xa0 ", "a b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *c = clip_tok_clean(cases[i].in, strlen(cases[i].in), NULL);
        assert_non_null(c);
        assert_string_equal(c, cases[i].clean);
        t2i_free(c);
    }
    /* "<|startoftext|>" typed in a caption is the special token; "'S" is a contraction */
    int32_t *ids;
    size_t n;
    assert_int_equal(clip_tok_encode(g_tok, "<|startoftext|>", 15, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 49406);
    t2i_free(ids);
    /* U+0345 matches no alternative of the pattern: dropped */
    int32_t *ids2;
    size_t n2;
    assert_int_equal(clip_tok_encode(g_tok, "a\xcd\x85" "b", 4, &ids, &n), 0);
    assert_int_equal(clip_tok_encode(g_tok, "a b", 3, &ids2, &n2), 0);
    assert_ids("a U+0345 b", ids, n, ids2, n2);
    t2i_free(ids);
    t2i_free(ids2);
    /* empty and all-space texts: SOT EOT */
    int32_t ctx[CLIP_TOK_CONTEXT];
    assert_int_equal(clip_tok_tokenize(g_tok, " \t ", 3, ctx, CLIP_TOK_CONTEXT), 0);
    assert_int_equal(ctx[0], 49406);
    assert_int_equal(ctx[1], 49407);
    assert_int_equal(ctx[2], 0);
    /* other context lengths: "a photo of a cat" = 320 1125 539 320 2368 */
    int32_t c5[5], c7[7], c2[2];
    assert_int_equal(clip_tok_tokenize(g_tok, "a photo of a cat", 16, c7, 7), 0);
    int32_t w7[7] = {49406, 320, 1125, 539, 320, 2368, 49407};
    assert_ids("context 7", c7, 7, w7, 7);
    assert_int_equal(clip_tok_tokenize(g_tok, "a photo of a cat", 16, c5, 5), 1);
    int32_t w5[5] = {49406, 320, 1125, 539, 49407};
    assert_ids("context 5", c5, 5, w5, 5);
    assert_int_equal(clip_tok_tokenize(g_tok, "a photo of a cat", 16, c2, 2), 1);
    assert_int_equal(c2[0], 49406);
    assert_int_equal(c2[1], 49407);
    assert_int_equal(clip_tok_tokenize(g_tok, "", 0, c2, 2), 0);
    printf("# unicode: utf8proc %s, reference tables from Python %s\n", clip_tok_unicode_version(),
           clip_tok_tables_python);
}

/* ------------------------------------------------------------------ errors ---- */

static void test_invalid_utf8(void **state) {
    (void)state;
    struct {
        const char *s;
        size_t len, at;
    } bad[] = {
        {"abc\xff", 4, 3},               /* invalid byte */
        {"\xe2\x82", 2, 0},              /* truncated sequence at the end */
        {"ok \xed\xa0\x80", 6, 3},       /* UTF-16 surrogate */
        {"\xc0\x80", 2, 0},              /* overlong NUL */
        {"\xf4\x90\x80\x80", 4, 0},      /* above U+10FFFF */
        {"\xc3\xa9\x80", 3, 2},          /* stray continuation byte after "é" */
        {"a\xe2\x82" "b", 4, 1},         /* sequence cut by an ASCII byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)1;
        size_t n = 99;
        assert_int_equal(clip_tok_encode(g_tok, bad[i].s, bad[i].len, &ids, &n), -1);
        assert_null(ids);
        assert_int_equal(n, 0);
        char want[64];
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad[i].at);
        assert_string_equal(t2i_error_msg(), want);
        int32_t ctx[CLIP_TOK_CONTEXT];
        assert_int_equal(clip_tok_tokenize(g_tok, bad[i].s, bad[i].len, ctx, CLIP_TOK_CONTEXT), -1);
        assert_null(clip_tok_clean(bad[i].s, bad[i].len, NULL));
    }
    /* invalid bytes after the 77th token are still reported by tokenize */
    char *long_bad = t2i_malloc(1000);
    for (int i = 0; i < 999; i++) long_bad[i] = (i % 2) ? ' ' : 'a';
    long_bad[998] = (char)0xff;
    int32_t ctx[CLIP_TOK_CONTEXT];
    assert_int_equal(clip_tok_tokenize(g_tok, long_bad, 999, ctx, CLIP_TOK_CONTEXT), -1);
    assert_string_equal(t2i_error_msg(), "invalid UTF-8 at byte 998");
    t2i_free(long_bad);
    /* decode of an id outside the vocabulary */
    int32_t bad_id[2] = {320, 49408};
    assert_null(clip_tok_decode(g_tok, bad_id, 2, NULL));
    assert_true(tu_contains(t2i_error_msg(), "49408"));
}

static void expect_load_error(const char *path, const char *fragment) {
    clip_tok *t = clip_tok_load(path, -1);
    if (t) fail_msg("%s loaded", path);
    const char *msg = t2i_error_msg();
    if (!tu_contains(msg, path)) fail_msg("message '%s' does not name %s", msg, path);
    if (fragment && !tu_contains(msg, fragment)) fail_msg("message '%s' lacks '%s'", msg, fragment);
}

static void test_bad_vocab_files(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *p_missing = t2i_asprintf("%s/nope.txt.gz", dir);
    expect_load_error(p_missing, "cannot open");

    /* the first 300 kB of the gzip file: truncated stream */
    char *src = merges_path();
    size_t glen;
    char *gz = t2i_read_file(src, &glen, 0);
    assert_non_null(gz);
    char *p_trunc = t2i_asprintf("%s/trunc.txt.gz", dir);
    write_file(p_trunc, gz, 300000);
    expect_load_error(p_trunc, NULL);
    /* a flipped byte in the middle of the compressed data */
    gz[glen / 2] ^= 0x5a;
    char *p_flip = t2i_asprintf("%s/flip.txt.gz", dir);
    write_file(p_flip, gz, glen);
    expect_load_error(p_flip, NULL);
    t2i_free(gz);

    char *p_words = t2i_asprintf("%s/words.txt", dir);
    write_file(p_words, "#version: 0.2\nh e\nthree symbols here\n", 37);
    expect_load_error(p_words, "line 3");
    char *p_short = t2i_asprintf("%s/short.txt", dir);
    const char *short_text = "\"bpe_simple_vocab_16e6.txt#version: 0.2\ni n\nt h\n";
    write_file(p_short, short_text, strlen(short_text));
    expect_load_error(p_short, "48894");
    char *p_sym = t2i_asprintf("%s/sym.txt", dir);
    const char *sym_text = "#version: 0.2\nh \xe2\x82\xac\n";  /* U+20AC is not a byte symbol */
    write_file(p_sym, sym_text, strlen(sym_text));
    expect_load_error(p_sym, "line 2");
    char *p_json = t2i_asprintf("%s/vocab.json", dir);
    write_file(p_json, "{\"a\": 1,", 8);
    expect_load_error(p_json, NULL);
    write_file(p_json, "{\"a\": 0}", 8);
    expect_load_error(p_json, NULL);  /* no byte tokens */

    t2i_free(p_missing);
    t2i_free(p_trunc);
    t2i_free(p_flip);
    t2i_free(p_words);
    t2i_free(p_short);
    t2i_free(p_sym);
    t2i_free(p_json);
    t2i_free(src);
    tu_rmtree(dir);
    t2i_free(dir);
}

/* ------------------------------------------------------------------ other sources ---- */

/* bytes_to_unicode as documented: printable bytes stand for themselves, the others map to
 * U+0100 upwards in byte order; the vocabulary lists printable ones first. */
static void byte_tables(int order[256], uint32_t cp[256]) {
    int pos = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        int pr = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        cp[b] = pr ? (uint32_t)b : (uint32_t)(256 + extra++);
        if (pr) order[pos++] = b;
    }
    for (int b = 0; b < 256; b++)
        if (cp[b] >= 256) order[pos++] = b;
}

static void put_utf8(char **p, uint32_t c) {
    if (c < 0x80) {
        *(*p)++ = (char)c;
    } else {
        *(*p)++ = (char)(0xC0 | (c >> 6));
        *(*p)++ = (char)(0x80 | (c & 0x3F));
    }
}

/* vocab.json for OpenAI's vocabulary; perm maps openai id -> written id. */
static void write_hf_pair(const char *dir, const char *merges_text, size_t merges_len, int reverse) {
    int order[256];
    uint32_t cp[256];
    byte_tables(order, cp);
    cJSON *v = cJSON_CreateObject();
    const int V = 49408;
    char tokbuf[256];
    int id = 0;
#define ADD(str) cJSON_AddNumberToObject(v, (str), reverse ? V - 1 - id : id), id++
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 256; k++) {
            char *p = tokbuf;
            put_utf8(&p, cp[order[k]]);
            if (w) memcpy(p, "</w>", 4), p += 4;
            *p = 0;
            ADD(tokbuf);
        }
    /* merges: line 2.. of the file, "a b" -> "ab" */
    const char *s = memchr(merges_text, '\n', merges_len) + 1;
    for (int k = 0; k < CLIP_TOK_OPENAI_MERGES; k++) {
        const char *e = memchr(s, '\n', merges_len - (size_t)(s - merges_text));
        const char *sp = memchr(s, ' ', (size_t)(e - s));
        size_t la = (size_t)(sp - s), lb = (size_t)(e - sp - 1);
        memcpy(tokbuf, s, la);
        memcpy(tokbuf + la, sp + 1, lb);
        tokbuf[la + lb] = 0;
        ADD(tokbuf);
        s = e + 1;
    }
    ADD("<|startoftext|>");
    ADD("<|endoftext|>");
#undef ADD
    assert_int_equal(id, V);
    char *json = cJSON_PrintUnformatted(v);
    char *p = t2i_asprintf("%s/vocab.json", dir);
    write_file(p, json, strlen(json));
    t2i_free(p);
    cJSON_free(json);
    cJSON_Delete(v);
    /* merges.txt: HF's header, then the merges */
    const char *body = memchr(merges_text, '\n', merges_len) + 1;
    const char *end = body;
    for (int k = 0; k < CLIP_TOK_OPENAI_MERGES; k++) end = memchr(end, '\n', merges_len - (size_t)(end - merges_text)) + 1;
    p = t2i_asprintf("%s/merges.txt", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs("#version: 0.2\n", f);
    assert_int_equal(fwrite(body, 1, (size_t)(end - body), f), (size_t)(end - body));
    fclose(f);
    t2i_free(p);
}

static void test_hf_pair_and_plain_merges(void **state) {
    (void)state;
    char *src = merges_path();
    size_t mlen;
    char *mtext = read_gz_all(src, &mlen);
    char *dir = tu_tmpdir();
    char *gpath = tu_path("data/clip_golden/tokens.jsonl");
    jsonl golden = read_jsonl(gpath);
    char *xpath = tu_path("data/tokens_extra.jsonl");
    jsonl extra = read_jsonl(xpath);

    /* same ids */
    write_hf_pair(dir, mtext, mlen, 0);
    char *vj = t2i_asprintf("%s/vocab.json", dir);
    clip_tok *hf = clip_tok_load(vj, -1);
    if (!hf) fail_msg("%s", t2i_error_msg());
    assert_int_equal(clip_tok_vocab_size(hf), 49408);
    assert_int_equal(clip_tok_sot(hf), 49406);
    for (size_t i = 0; i < golden.n; i++) check_record(hf, golden.items[i], 1);
    for (size_t i = 0; i < extra.n; i++)
        if (strcmp(tu_jstr(extra.items[i], "kind"), "encode") == 0) check_record(hf, extra.items[i], 1);
    clip_tok_free(hf);

    /* reversed ids: every id becomes 49407 - id */
    write_hf_pair(dir, mtext, mlen, 1);
    hf = clip_tok_load(vj, -1);
    if (!hf) fail_msg("%s", t2i_error_msg());
    assert_int_equal(clip_tok_sot(hf), 1);
    assert_int_equal(clip_tok_eot(hf), 0);
    for (size_t i = 0; i < extra.n; i++) {
        const cJSON *o = extra.items[i];
        if (strcmp(tu_jstr(o, "kind"), "encode") != 0) continue;
        const char *text = tu_jstr(o, "text");
        size_t nwant, n;
        int32_t *want = json_ids(cJSON_GetObjectItem(o, "ids"), &nwant), *ids;
        for (size_t k = 0; k < nwant; k++) want[k] = 49407 - want[k];
        assert_int_equal(clip_tok_encode(hf, text, strlen(text), &ids, &n), 0);
        assert_ids(text, ids, n, want, nwant);
        char *dec = clip_tok_decode(hf, ids, n, NULL);
        assert_string_equal(dec, tu_jstr(o, "decoded"));
        t2i_free(dec);
        t2i_free(ids);
        t2i_free(want);
    }
    clip_tok_free(hf);

    /* vocab.json without merges.txt: the error names merges.txt */
    char *mt = t2i_asprintf("%s/merges.txt", dir);
    assert_int_equal(remove(mt), 0);
    assert_null(clip_tok_load(vj, -1));
    assert_true(tu_contains(t2i_error_msg(), mt));

    /* the same merges uncompressed (.txt), and from memory with an explicit count */
    char *plain = t2i_asprintf("%s/bpe.txt", dir);
    write_file(plain, mtext, mlen);
    clip_tok *pt = clip_tok_load(plain, -1);
    assert_non_null(pt);
    assert_int_equal(clip_tok_vocab_size(pt), 49408);
    clip_tok *mem = clip_tok_from_merges(mtext, mlen, CLIP_TOK_OPENAI_MERGES, "memory");
    assert_non_null(mem);
    for (size_t i = 0; i < golden.n; i++) {
        check_record(pt, golden.items[i], 1);
        check_record(mem, golden.items[i], 1);
    }
    clip_tok_free(pt);
    clip_tok_free(mem);
    /* fewer merges: a smaller vocabulary whose special ids follow the merges */
    mem = clip_tok_from_merges(mtext, mlen, 1000, "memory");
    assert_non_null(mem);
    assert_int_equal(clip_tok_vocab_size(mem), 512 + 1000 + 2);
    assert_int_equal(clip_tok_eot(mem), 1513);
    int32_t *ids;
    size_t n;
    assert_int_equal(clip_tok_encode(mem, "a photo of a cat", 16, &ids, &n), 0);
    for (size_t k = 0; k < n; k++) assert_true(ids[k] < 1512);
    char *dec = clip_tok_decode(mem, ids, n, NULL);
    assert_string_equal(dec, "a photo of a cat ");
    t2i_free(dec);
    t2i_free(ids);
    clip_tok_free(mem);

    free_jsonl(&golden);
    free_jsonl(&extra);
    t2i_free(gpath);
    t2i_free(xpath);
    t2i_free(plain);
    t2i_free(mt);
    t2i_free(vj);
    t2i_free(mtext);
    t2i_free(src);
    tu_rmtree(dir);
    t2i_free(dir);
}

/* ------------------------------------------------------------------ training ---- */

static char *train_list(const char *const *texts, size_t n, size_t vocab) {
    char *m = clip_tok_train(texts, NULL, n, vocab, NULL);
    if (!m) fail_msg("%s", t2i_error_msg());
    return m;
}

static void test_train_hand_examples(void **state) {
    (void)state;
    /* words ab x3, cd x1: (a, b</w>) = 3 is the only pair seen twice */
    const char *t1[] = {"ab ab", "AB cd"};
    char *m = train_list(t1, 2, 1000);
    assert_string_equal(m, "#version: 0.2\na b</w>\n");
    t2i_free(m);
    /* a tie at count 2: the smaller left symbol ('a' before 'c' in byte order) */
    const char *t2[] = {"cd cd ab ab"};
    m = train_list(t2, 1, 1000);
    assert_string_equal(m, "#version: 0.2\na b</w>\nc d</w>\n");
    t2i_free(m);
    /* same left symbol: the smaller right symbol (a</w> before c</w>) */
    const char *t3[] = {"bc bc", "ba ba"};
    m = train_list(t3, 2, 1000);
    assert_string_equal(m, "#version: 0.2\nb a</w>\nb c</w>\n");
    t2i_free(m);
    /* the vocabulary size caps the merges: 515 = 512 + 2 + one merge */
    m = train_list(t3, 2, 515);
    assert_string_equal(m, "#version: 0.2\nb a</w>\n");
    t2i_free(m);
    /* overlapping pairs: "aaaa" x2 = a a a a</w>: (a,a) 4 times -> "aa a a</w>", leaving
     * (aa,a) 2 and (a,a</w>) 2: tie, 'a' (id 64) < "aa" (new) -> a a</w>; then aa aa</w> */
    const char *t4[] = {"aaaa AAAA"};
    m = train_list(t4, 1, 1000);
    assert_string_equal(m, "#version: 0.2\na a\na a</w>\naa aa</w>\n");
    t2i_free(m);
    /* cleaning happens first: entities and case fold into the same words */
    const char *t5[] = {"&lt;&lt; <<", "x"};
    m = train_list(t5, 2, 1000);
    assert_string_equal(m, "#version: 0.2\n< <</w>\n");
    t2i_free(m);
    /* and it loads: ids 512.. for the merges, then SOT, EOT */
    m = train_list(t4, 1, 1000);
    clip_tok *t = clip_tok_from_merges(m, strlen(m), -1, "learned");
    assert_non_null(t);
    assert_int_equal(clip_tok_vocab_size(t), 512 + 3 + 2);
    assert_int_equal(clip_tok_sot(t), 515);
    int32_t *ids;
    size_t n;
    assert_int_equal(clip_tok_encode(t, "aaaa aa", 7, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 514);  /* aa aa</w> */
    /* "aa": a a</w> -> merge 1 (a a</w>) gives "aa</w>" = id 513 */
    assert_int_equal(ids[1], 513);
    t2i_free(ids);
    t2i_free(m);
    clip_tok_free(t);
    /* errors */
    assert_null(clip_tok_train(t1, NULL, 2, 513, NULL));
    const char *bad[] = {"fine", "bad \xff"};
    assert_null(clip_tok_train(bad, NULL, 2, 1000, NULL));
    assert_string_equal(t2i_error_msg(), "text 1: invalid UTF-8 at byte 4");
}

static void test_train_round_trip(void **state) {
    (void)state;
    char *path = tu_path("data/tokens_extra.jsonl");
    jsonl j = read_jsonl(path);
    const char **texts = t2i_malloc(j.n * sizeof(char *));
    const cJSON **recs = t2i_malloc(j.n * sizeof(cJSON *));
    size_t n = 0;
    for (size_t i = 0; i < j.n; i++)
        if (strcmp(tu_jstr(j.items[i], "kind"), "encode") == 0) recs[n] = j.items[i], texts[n++] = tu_jstr(j.items[i], "text");
    size_t len1, len2;
    char *m1 = clip_tok_train(texts, NULL, n, 700, &len1);
    assert_non_null(m1);
    /* deterministic, and independent of the order of the texts */
    for (size_t i = 0; i < n / 2; i++) {
        const char *x = texts[i];
        texts[i] = texts[n - 1 - i];
        texts[n - 1 - i] = x;
    }
    char *m2 = clip_tok_train(texts, NULL, n, 700, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(m1, m2, len1);
    clip_tok *t = clip_tok_from_merges(m1, len1, -1, "learned");
    assert_non_null(t);
    assert_int_equal(clip_tok_vocab_size(t), 512 + clip_tok_n_merges(t) + 2);
    assert_int_equal(clip_tok_vocab_size(t), 700);
    /* encode -> decode gives the pre-tokens of the cleaned text (what Python's decode
     * gives with any vocabulary), and the learned merges shorten the sequences */
    size_t total_ids = 0, total_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = recs[i];
        const char *text = tu_jstr(o, "text");
        int32_t *ids;
        size_t k;
        assert_int_equal(clip_tok_encode(t, text, strlen(text), &ids, &k), 0);
        for (size_t q = 0; q < k; q++) assert_true(ids[q] >= 0 && (size_t)ids[q] < 700);
        char *dec = clip_tok_decode(t, ids, k, NULL);
        if (strcmp(dec, tu_jstr(o, "decoded")) != 0) fail_msg("round trip of '%s': '%s'", text, dec);
        total_ids += k;
        total_bytes += strlen(tu_jstr(o, "clean"));
        t2i_free(dec);
        t2i_free(ids);
    }
    assert_true(total_ids * 2 < total_bytes);
    clip_tok_free(t);
    /* a target the corpus cannot reach: training stops when no pair occurs twice */
    char *m3 = clip_tok_train(texts, NULL, n, 100000, NULL);
    t = clip_tok_from_merges(m3, strlen(m3), -1, "learned");
    assert_non_null(t);
    assert_true(clip_tok_vocab_size(t) > 700 && clip_tok_vocab_size(t) < 100000);
    assert_memory_equal(m3, m1, len1);  /* the first merges are the same */
    clip_tok_free(t);
    t2i_free(m3);
    t2i_free(m1);
    t2i_free(m2);
    t2i_free(texts);
    t2i_free(recs);
    free_jsonl(&j);
    t2i_free(path);
}

/* ------------------------------------------------------------------ threads, size ---- */

typedef struct {
    jsonl *j;
    int fails;
} thread_arg;

static void *encode_all(void *varg) {
    thread_arg *a = varg;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < a->j->n; i++) {
            const cJSON *o = a->j->items[i];
            if (strcmp(tu_jstr(o, "kind"), "encode") != 0) continue;
            const char *text = tu_jstr(o, "text");
            size_t nwant, n;
            int32_t *want = json_ids(cJSON_GetObjectItem(o, "ids"), &nwant), *ids;
            if (clip_tok_encode(g_tok, text, strlen(text), &ids, &n) != 0 || n != nwant ||
                (n && memcmp(ids, want, n * sizeof(int32_t)) != 0))
                a->fails++;
            t2i_free(ids);
            t2i_free(want);
        }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    char *path = tu_path("data/tokens_extra.jsonl");
    jsonl j = read_jsonl(path);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){&j, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_all, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].fails, 0);
    }
    free_jsonl(&j);
    t2i_free(path);
}

static void test_ten_megabytes(void **state) {
    (void)state;
    /* 10 MB of captions: the ids are those of one sentence, repeated */
    const char *sent = "A small green bird sitting on a branch, digital art &amp; caf\xc3\xa9 #42! ";
    size_t sl = strlen(sent), reps = (10u << 20) / sl;
    char *big = t2i_malloc(reps * sl + 1);
    for (size_t r = 0; r < reps; r++) memcpy(big + r * sl, sent, sl);
    int32_t *one, *ids;
    size_t n1, n;
    assert_int_equal(clip_tok_encode(g_tok, sent, sl, &one, &n1), 0);
    double t0 = t2i_now();
    assert_int_equal(clip_tok_encode(g_tok, big, reps * sl, &ids, &n), 0);
    double dt = t2i_now() - t0;
    assert_int_equal(n, reps * n1);
    for (size_t r = 0; r < reps; r++)
        if (memcmp(ids + r * n1, one, n1 * sizeof(int32_t)) != 0) fail_msg("repeat %zu differs", r);
    printf("# 10 MB caption (%zu bytes, %zu ids): %.2f s\n", reps * sl, n, dt);
    /* tokenize stops after the context but still validates everything */
    int32_t ctx[CLIP_TOK_CONTEXT];
    t0 = t2i_now();
    assert_int_equal(clip_tok_tokenize(g_tok, big, reps * sl, ctx, CLIP_TOK_CONTEXT), 1);
    printf("# tokenize of it: %.2f s\n", t2i_now() - t0);
    assert_int_equal(ctx[76], 49407);
    assert_memory_equal(ctx + 1, ids, 75 * sizeof(int32_t));
    t2i_free(ids);
    t2i_free(one);

    /* one 1 MB word: BPE is n log n, the bytes come back */
    size_t wl = 1u << 20;
    for (size_t i = 0; i < wl; i++) big[i] = "abcab"[i % 5];
    t0 = t2i_now();
    assert_int_equal(clip_tok_encode(g_tok, big, wl, &ids, &n), 0);
    printf("# one %zu-byte word: %zu ids, %.2f s\n", wl, n, t2i_now() - t0);
    char *dec = clip_tok_decode(g_tok, ids, n, NULL);
    assert_int_equal(strlen(dec), wl + 1);
    assert_memory_equal(dec, big, wl);
    t2i_free(dec);
    t2i_free(ids);
    t2i_free(big);

    /* over the limit: refused with a message */
    size_t over = CLIP_TOK_MAX_TEXT + 1;
    char *huge = t2i_malloc(over);
    memset(huge, 'a', over);
    assert_int_equal(clip_tok_encode(g_tok, huge, over, &ids, &n), -1);
    assert_true(tu_contains(t2i_error_msg(), "limit"));
    t2i_free(huge);
}

static int setup(void **state) {
    (void)state;
    char *p = merges_path();
    double t0 = t2i_now();
    g_tok = clip_tok_load(p, -1);
    if (!g_tok) {
        fprintf(stderr, "%s\n", t2i_error_msg());
        t2i_free(p);
        return -1;
    }
    printf("# loaded %s in %.3f s\n", p, t2i_now() - t0);
    t2i_free(p);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    clip_tok_free(g_tok);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_openai),
        cmocka_unit_test(test_extra_reference),
        cmocka_unit_test(test_specific_behaviours),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_bad_vocab_files),
        cmocka_unit_test(test_hf_pair_and_plain_merges),
        cmocka_unit_test(test_train_hand_examples),
        cmocka_unit_test(test_train_round_trip),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_ten_megabytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
