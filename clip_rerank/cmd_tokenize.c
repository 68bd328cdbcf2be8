/* cmd_tokenize.c - `t2i clip tokenize`: prints CLIP token ids of texts (tokenizer.h).
 *
 *     t2i clip tokenize --vocab bpe_simple_vocab_16e6.txt.gz "a photo of a cat"
 *     49406 320 1125 539 320 2368 49407
 *
 * One line per TEXT: <|startoftext|>, the ids, <|endoftext|>, space-separated (or a JSON
 * array with --json). With --context N the line is what a model receives: exactly N ids,
 * zero padded, truncated with <|endoftext|> last when too long (a note on stderr then).
 * The vocabulary (--vocab, else $T2I_CLIP_VOCAB) is a merges file (.txt/.txt.gz), a
 * Hugging Face vocab.json with merges.txt beside it, or a t2i CLIP checkpoint (its learned
 * vocabulary); OpenAI's is not bundled.
 *
 * Exit status: 0; 1 when the vocabulary cannot be loaded or a text is not valid UTF-8
 * ("t2i: ..." on stderr; the other texts are still printed); 2 on usage errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "tokenizer.h"

static void print_ids(const int32_t *ids, size_t n, int json) {
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? (json ? "," : " ") : "", ids[i]);
    if (json) putchar(']');
    putchar('\n');
}

int clip_cmd_tokenize(int argc, char **argv) {
    const char *vocab = getenv("T2I_CLIP_VOCAB"); /* merges file or vocab.json */
    int json = 0;                                 /* JSON arrays instead of plain lines */
    int context = 0;                              /* 0: no padding; else clip.tokenize's length */
    t2i_flag flags[] = {
        {"--vocab", T2I_STR, &vocab, "merges file (.txt, .txt.gz), vocab.json or a t2i CLIP checkpoint; default $T2I_CLIP_VOCAB"},
        {"--json", T2I_BOOL, &json, "print a JSON array per text"},
        {"--context", T2I_INT, &context, "print exactly N ids (zero padded, truncated); 0 = SOT ids EOT"},
    };
    t2i_cmd cmd = {
        .name = "t2i clip tokenize",
        .summary = "Print the CLIP token ids of each TEXT, one line per text.",
        .usage = "[options] TEXT...",
        .flags = flags,
        .nflags = (int)(sizeof flags / sizeof flags[0]),
        .details = "CLIP's context is 77 (--context 77 gives the rows clip.tokenize makes).\n"
                   "Exit status: 0; 1 when the vocabulary cannot be loaded or a text is not valid\n"
                   "UTF-8; 2 on usage errors.",
    };
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    int status = 2;
    clip_tok *tok = NULL;
    if (cmd.npos == 0) {
        t2i_fail("%s: no TEXT given (see --help)", cmd.name);
        goto done;
    }
    if (context != 0 && t2i_check_range_i("--context", context, 2, 1 << 20) != 0) goto done;
    if (!vocab || !*vocab) {
        t2i_fail("%s: no vocabulary: pass --vocab FILE (e.g. bpe_simple_vocab_16e6.txt.gz or a "
                 "vocab.json) or set T2I_CLIP_VOCAB; none is bundled", cmd.name);
        goto done;
    }
    status = 1;
    tok = clip_tok_load(vocab, -1);
    if (!tok) {
        t2i_fail_err();
        goto done;
    }
    status = 0;
    int32_t *row = context ? t2i_malloc((size_t)context * sizeof(int32_t)) : NULL;
    for (int i = 0; i < cmd.npos; i++) {
        const char *text = cmd.pos[i];
        fflush(stdout); /* keep stdout and stderr lines in text order */
        if (context) {
            int tr = clip_tok_tokenize(tok, text, strlen(text), row, (size_t)context);
            if (tr < 0) {
                status = t2i_fail("text %d: %s", i + 1, t2i_error_msg());
                continue;
            }
            print_ids(row, (size_t)context, json);
            if (tr) {
                fflush(stdout);
                fprintf(stderr, "t2i: note: text %d truncated to %d tokens\n", i + 1, context);
            }
            continue;
        }
        int32_t *ids;
        size_t n;
        if (clip_tok_encode(tok, text, strlen(text), &ids, &n) < 0) {
            status = t2i_fail("text %d: %s", i + 1, t2i_error_msg());
            continue;
        }
        int32_t *full = t2i_malloc((n + 2) * sizeof(int32_t));
        full[0] = clip_tok_sot(tok);
        if (n) memcpy(full + 1, ids, n * sizeof(int32_t));
        full[n + 1] = clip_tok_eot(tok);
        print_ids(full, n + 2, json);
        t2i_free(full);
        t2i_free(ids);
    }
    t2i_free(row);
    if (fflush(stdout) != 0) status = t2i_fail("cannot write to standard output");
done:
    clip_tok_free(tok);
    return status;
}
