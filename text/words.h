/* words.h - the words of a caption, and sets of them: what a caption-conditioned model saw
 * in training, so that `t2i generate` can say which words of a new caption it never saw.
 *
 * Words are defined once, here: the text is case-folded (ASCII and Unicode, utf8proc's
 * full case folding, then NFC) and a word is a maximal run of letters (Unicode L*),
 * digits and other numbers (N*) with the combining marks (M*) that follow them;
 * apostrophes (' and U+2019, stored as ') inside a word belong to it ("girl's"), at its
 * ends they separate. Everything else - spaces, punctuation, symbols, invalid UTF-8 -
 * separates words.
 *
 *     "A Girl's YELLOW-flower, 2 roses!"  ->  a, girl's, yellow, flower, 2, roses
 *
 * A word set is sorted (strcmp order) and unique. It is stored in checkpoint metadata as
 * its words joined by single spaces ("caption_words", T2I_WORDS_META_KEY), the training
 * captions' words:
 *
 *     t2i_wordset s;
 *     t2i_wordset_init(&s);
 *     for (i...) t2i_wordset_add_text(&s, captions[i]);
 *     t2i_wordset_finish(&s);                  // sort, drop duplicates
 *     char *meta = t2i_wordset_join(&s);       // "a black blue coat ..."
 *     ...
 *     t2i_wordset_parse(&k, meta);             // and back
 *     if (!t2i_wordset_has(&k, "girl")) ...
 *     t2i_wordset_free(&s);
 *
 * Failures: t2i_wordset_parse returns -1 with the error set when the text is not a
 * space-separated list of words as t2i_words_split would make them (so a hand-edited or
 * damaged entry is refused rather than read as a different set).
 */
#ifndef T2I_WORDS_H
#define T2I_WORDS_H

#include <stddef.h>

#define T2I_WORDS_META_KEY "caption_words"

/* The words of text in order (repeats kept) as a malloc'd array of malloc'd strings;
 * returns the count (the array is NULL when 0). Free with t2i_words_free. */
int t2i_words_split(const char *text, char ***words);
void t2i_words_free(char **words, int n);

typedef struct t2i_wordset {
    char **w;        /* n words; sorted and unique after t2i_wordset_finish */
    size_t n, cap;
} t2i_wordset;

void t2i_wordset_init(t2i_wordset *s);
/* Adds the words of text (call t2i_wordset_finish before looking anything up). */
void t2i_wordset_add_text(t2i_wordset *s, const char *text);
void t2i_wordset_finish(t2i_wordset *s);
/* 1 when word (already split and folded) is in the finished set. */
int t2i_wordset_has(const t2i_wordset *s, const char *word);
/* The words joined by single spaces, malloc'd ("" for an empty set). */
char *t2i_wordset_join(const t2i_wordset *s);
/* Reads a joined set (any order; duplicates dropped) into s, which it initialises; what
 * names the text in an error ("FILE: metadata 'caption_words'"). */
int t2i_wordset_parse(t2i_wordset *s, const char *joined, const char *what);
void t2i_wordset_free(t2i_wordset *s);

/* The joined word set of n texts (what trainers store), malloc'd; NULL when it would be
 * longer than T2I_WORDS_META_MAX bytes (safetensors headers are limited to 100 MB; a set
 * that large is a corpus, not a caption vocabulary, and is not stored). */
#define T2I_WORDS_META_MAX ((size_t)16 << 20)
char *t2i_words_of_texts(const char *const *texts, size_t n);

#endif
