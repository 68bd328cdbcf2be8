/* tokenizer.h - the CLIP byte-level BPE tokenizer, reproducing openai/CLIP's
 * simple_tokenizer.py exactly (with ftfy.fix_text taken as the identity), plus a BPE
 * trainer for the toolkit's own small vocabularies.
 *
 * Text -> ids, step by step (what Python does, and where the C version gets it):
 *   1. html.unescape twice: the HTML5 named references (legacy names without ';' and
 *      longest-prefix matching included) and numeric ones with Python's replacements
 *      (tables generated from Python by gen_html_entities.py into html_entities.c);
 *   2. strip, collapse runs of Python-whitespace (str.isspace: category Zs or bidi class
 *      B/S/WS, from utf8proc) to one space, strip;
 *   3. str.lower(): utf8proc's simple lowercase mapping, plus the two full mappings Python
 *      applies: U+0130 -> "i" U+0307, and U+03A3 -> final sigma U+03C2 in the Final_Sigma
 *      context (Cased / Case_Ignorable as Python sees them);
 *   4. pre-tokenize as the regex module does with
 *        <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      under IGNORECASE (so "'S" and "'ſ" are contractions; U+0345, whose case variants are
 *      letters, is matched by no alternative and dropped, as regex drops it);
 *   5. each piece's UTF-8 bytes become byte symbols (bytes_to_unicode order), the last one
 *      with "</w>", and are merged by BPE rank (lowest rank first, every occurrence of a
 *      pair left to right, then the next rank). A piece that is exactly "<|startoftext|>"
 *      or "<|endoftext|>" gives the special id.
 *
 * Vocabularies:
 *   - merges files (OpenAI's bpe_simple_vocab_16e6.txt.gz, gzip or plain): ids = 256 byte
 *     symbols in bytes_to_unicode order, the same with "</w>", one per merge line, then
 *     <|startoftext|>, <|endoftext|>. A first line containing "#version" is a header.
 *     OpenAI's file (first line mentions bpe_simple_vocab_16e6) uses its first 48894
 *     merges (vocab 49408); other files use all their merges: vocab = 512 + merges + 2.
 *     When two merges yield the same string, the string's id is the later one (Python's
 *     dict semantics); the earlier id is never produced by encode.
 *   - a Hugging Face pair: vocab.json (token -> id) with merges.txt beside it; ids, SOT and
 *     EOT come from vocab.json (vocab size = largest id + 1).
 *   - learned: clip_tok_train() returns a merges text in the same format, which
 *     clip_tok_from_merges() loads (a model can keep the text in its checkpoint metadata).
 *
 * Usage:
 *     clip_tok *tok = clip_tok_load("bpe_simple_vocab_16e6.txt.gz", -1);
 *     if (!tok) { fprintf(stderr, "%s\n", t2i_error_msg()); ... }
 *     int32_t ctx[CLIP_TOK_CONTEXT];
 *     int truncated = clip_tok_tokenize(tok, text, strlen(text), ctx, CLIP_TOK_CONTEXT);
 *     clip_tok_free(tok);
 *
 * Failures return -1 (or NULL) after t2i_error_set(): invalid UTF-8 input ("invalid UTF-8
 * at byte N", N counted from 0), text over CLIP_TOK_MAX_TEXT bytes, a missing or corrupt
 * vocabulary file (the message names the file), an id out of range in decode.
 *
 * Threads: a clip_tok is read-only after loading except for its word cache, which a mutex
 * guards; any number of threads may encode with the same clip_tok at once.
 * Cost: linear in the text for cleaning and pre-tokenizing; BPE is O(w log w) per word of
 * w bytes (a heap of pairs), so one 10 MB word works too. Words up to 64 bytes are cached
 * (at most 32768 of them; the cache is emptied when full).
 */
#ifndef CLIP_TOKENIZER_H
#define CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define CLIP_TOK_CONTEXT 77                 /* CLIP's context length */
#define CLIP_TOK_OPENAI_MERGES 48894        /* merges CLIP uses from its 262144-line file */
#define CLIP_TOK_MAX_TEXT ((size_t)16 << 20) /* longest text accepted by encode (bytes) */

typedef struct clip_tok clip_tok;

/* Loads a vocabulary from a merges file (.txt or .txt.gz; gzip is detected by content),
 * from a Hugging Face vocab.json (path ending in ".json"; merges.txt must be beside it) or
 * from a t2i CLIP checkpoint (".safetensors": its learned merges, metadata "vocab").
 * n_merges: merges to use; -1 = automatic (48894 for OpenAI's file, else all). */
clip_tok *clip_tok_load(const char *path, long n_merges);
/* Builds a tokenizer from a merges text in memory (header line optional). name is used in
 * error messages (e.g. "checkpoint metadata"). n_merges: -1 = all. */
clip_tok *clip_tok_from_merges(const char *text, size_t len, long n_merges, const char *name);
void clip_tok_free(clip_tok *tok);

size_t clip_tok_vocab_size(const clip_tok *tok);
int32_t clip_tok_sot(const clip_tok *tok);
int32_t clip_tok_eot(const clip_tok *tok);
/* The merges in use (for a learned vocabulary: what to store in a checkpoint). */
size_t clip_tok_n_merges(const clip_tok *tok);

/* Token ids of text (len bytes of UTF-8, no SOT/EOT). *ids is a t2i_malloc'd array (free
 * with t2i_free; may be NULL when *n_ids is 0). Returns 0, or -1 with the error set. */
int clip_tok_encode(clip_tok *tok, const char *text, size_t len, int32_t **ids, size_t *n_ids);
/* clip.tokenize(text, context_length=context, truncate=True): out[context] = SOT, ids,
 * EOT, zeros; when SOT + ids + EOT is longer than context, the first context tokens are
 * kept and the last is replaced by EOT. Returns 0, 1 when truncated, -1 on error.
 * context >= 2. Only the first context - 1 ids are computed (later text is validated). */
int clip_tok_tokenize(clip_tok *tok, const char *text, size_t len, int32_t *out, size_t context);
/* openai's decode: the tokens' strings joined, mapped back to bytes, decoded as UTF-8 with
 * errors='replace' (one U+FFFD per maximal invalid subsequence), then "</w>" -> " ".
 * Returns a t2i_malloc'd NUL-terminated string (*out_len its length, may be NULL), or
 * NULL with the error set when an id is out of range. */
char *clip_tok_decode(const clip_tok *tok, const int32_t *ids, size_t n, size_t *out_len);

/* The text the pre-tokenizer sees: steps 1-3 (unescape twice, whitespace, lower), as
 * UTF-8 (t2i_malloc'd, NUL-terminated). NULL with the error set on invalid UTF-8. */
char *clip_tok_clean(const char *text, size_t len, size_t *out_len);
/* Splits text (cleaned first) into pre-tokens; calls fn(piece, piece_len, ctx) for each
 * UTF-8 piece in order; stops early when fn returns non-zero. Returns 0 or -1. */
int clip_tok_pretokenize(const char *text, size_t len,
                         int (*fn)(const char *piece, size_t piece_len, void *ctx), void *ctx);

/* Learns a byte-level BPE vocabulary from n texts (lens may be NULL for NUL-terminated
 * texts): texts are cleaned and pre-tokenized as above (special-token pieces skipped),
 * then the most frequent adjacent pair (counted over all words with their frequencies)
 * is merged, repeatedly, until the vocabulary reaches vocab_size = 512 + merges + 2 or no
 * pair occurs twice. Ties: the pair whose left, then right, symbol id is smallest (ids in
 * creation order, bytes in bytes_to_unicode order), so the result depends only on the
 * multiset of texts. Returns the merges text ("#version: 0.2" header, one "a b" line per
 * merge; t2i_malloc'd, NUL-terminated, *out_len may be NULL), or NULL with the error set
 * (invalid UTF-8 in a text, vocab_size < 514). */
char *clip_tok_train(const char *const *texts, const size_t *lens, size_t n, size_t vocab_size,
                     size_t *out_len);

/* utf8proc's Unicode version (the Python reference's is in clip_tok_tables_python). */
const char *clip_tok_unicode_version(void);

/* The `t2i clip tokenize` command (cmd_tokenize.c); argv[0] is the subcommand's name. */
int clip_cmd_tokenize(int argc, char **argv);

/* ---- internal: tables generated from Python into html_entities.c ---- */
typedef struct {
    const char *name;  /* "amp;", "amp", "NotEqualTilde;" ... */
    uint32_t cp[2];    /* value: one or two code points (cp[1] == 0 for one) */
} clip_tok_entity;
extern const char clip_tok_tables_python[];
extern const clip_tok_entity clip_tok_html5[];
extern const size_t clip_tok_html5_count;
extern const uint32_t clip_tok_charref_fix[][2];
extern const size_t clip_tok_charref_fix_count;
extern const uint32_t clip_tok_charref_drop[][2];
extern const size_t clip_tok_charref_drop_count;
extern const uint32_t clip_tok_sigma_ignorable_extra[][2];
extern const size_t clip_tok_sigma_ignorable_extra_count;
extern const uint32_t clip_tok_sigma_cased_extra[][2];
extern const size_t clip_tok_sigma_cased_extra_count;

#endif
