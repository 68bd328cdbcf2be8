/* known_words.h - which words of a caption a generating model never saw in training.
 *
 * Trainers of caption-conditioned models (dalle train, gan train --text-encoder) store the
 * sorted word set of their training captions in the checkpoint's metadata
 * (T2I_WORDS_META_KEY, "caption_words"; `t2i ckpt words` stamps older files). A source
 * loads it (gen_known_words_attach); for each caption, gen_unknown_words says per source
 * which words it never saw - in caption order, each once - so that `t2i generate` and the
 * server can warn before the images silently ignore them. Generation runs anyway.
 *
 * Words are split and folded as text/words.h defines. A few function words that carry no
 * picture of their own (articles, "of", "with", "in", "and", ...: GEN_FUNCTION_WORDS) are
 * not reported: captions of the shipped models never hold them, and naming them in every
 * warning would bury the words that matter. Content words are never hidden.
 *
 * A checkpoint without the entry (made before it existed): no check, no warning.
 *
 * Failures: gen_known_words_attach returns -1 with the error set when the file cannot be
 * opened or its entry is not a word list (a damaged or hand-edited file).
 */
#ifndef T2I_KNOWN_WORDS_H
#define T2I_KNOWN_WORDS_H

#include <stddef.h>

#include "generate.h"
#include "words.h"

/* Reads the word set of the checkpoint at path into s->known_words (NULL when the file
 * records none). */
int gen_known_words_attach(gen_source *s, const char *path);

/* 1 for the words never reported (see above). */
int gen_is_function_word(const char *word);

/* The words of caption that known lacks (function words aside), in caption order, each
 * once, as a malloc'd array of malloc'd strings (t2i_words_free); returns the count. */
int gen_unknown_words_of(const t2i_wordset *known, const char *caption, char ***out);

/* For each source with a word set that lacks words of caption, one line (ending in '\n')
 * into msg (cap bytes, always NUL-terminated; lines that do not fit are dropped whole):
 *   "a girl with a yellow flower": the dalle model never saw the words girl, flower in its
 *   training captions; its images will not show them
 * At most 12 words are named per line ("... and 3 more"), each cut at 40 bytes, the
 * caption at 200: a line stays under 1.5 kB. Returns the number of such sources (0: msg is ""). */
int gen_unknown_words(gen_source *const *src, int nsrc, const char *caption, char *msg, size_t cap);
/* The lines of gen_unknown_words on stderr, each as "t2i: warning: LINE" (`t2i generate`). */
void gen_warn_unknown_words(gen_source *const *src, int nsrc, const char *caption);

#endif
