/* test_words.c - caption words (text/words.c) and the unknown-word check of `t2i generate`
 * (generate/known_words.c).
 *
 * The tests check that:
 *   - splitting folds case (ASCII, Unicode full case folding: "Straße" -> "strasse", "ÉTÉ"
 *     -> "été", decomposed input composed to NFC), keeps apostrophes inside words (' and
 *     U+2019, stored as ') and drops them at the ends, treats letters and digits of any
 *     script as word characters and punctuation, symbols, emoji and invalid UTF-8 as
 *     separators;
 *   - a word set is sorted and unique, joins with single spaces and reads back; a joined
 *     text with a non-word, a double space or a capital letter is refused;
 *   - the check lists the unknown words in caption order, each once, without the function
 *     words (but with content words such as "without"), and nothing for a known caption;
 *   - gen_unknown_words writes one line per source that has a set and lacks words, none for
 *     a source without a set, and names the source and the words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "known_words.h"
#include "words.h"

/* The words of text joined by '|'. */
static char *split_joined(const char *text) {
    char **w;
    int n = t2i_words_split(text, &w);
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(w[i]) + 1;
    char *o = t2i_malloc(len);
    o[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(o, "|");
        strcat(o, w[i]);
    }
    t2i_words_free(w, n);
    return o;
}

static void expect_split(const char *text, const char *want) {
    char *got = split_joined(text);
    if (strcmp(got, want) != 0) print_error("split(\"%s\") = \"%s\", want \"%s\"\n", text, got, want);
    assert_string_equal(got, want);
    free(got);
}

static void test_split(void **state) {
    (void)state;
    expect_split("A Girl's YELLOW-flower, 2 roses!", "a|girl's|yellow|flower|2|roses");
    expect_split("", "");
    expect_split("  ,;!  ", "");
    expect_split("'quoted' words' end'", "quoted|words|end");
    expect_split("it\xe2\x80\x99s", "it's");                         /* U+2019 inside a word */
    expect_split("rock'n'roll 90's", "rock'n'roll|90's");
    expect_split("a '' b", "a|b");
    expect_split("Stra\xc3\x9f" "e", "strasse");                      /* ß folds to ss */
    expect_split("\xc3\x89T\xc3\x89 caf\xc3\xa9", "\xc3\xa9t\xc3\xa9|caf\xc3\xa9"); /* ÉTÉ café */
    expect_split("cafe\xcc\x81", "caf\xc3\xa9");                      /* e + combining acute -> é (NFC) */
    expect_split("\xce\x9a\xce\x91\xce\xa4", "\xce\xba\xce\xb1\xcf\x84"); /* ΚΑΤ -> κατ */
    expect_split("\xe7\x8c\xab\xe3\x81\xa8\xe7\x8a\xac", "\xe7\x8c\xab\xe3\x81\xa8\xe7\x8a\xac"); /* CJK: one run */
    expect_split("red\xf0\x9f\x8c\xb9rose", "red|rose");              /* an emoji separates */
    expect_split("red\xffrose \xc3", "red|rose");                     /* invalid bytes separate */
    expect_split("x\xc2\xb2 \xd9\xa3", "x\xc2\xb2|\xd9\xa3");         /* superscript two, Arabic-Indic 3 */
    expect_split("tab\there\nnew_line", "tab|here|new|line");
}

static void test_wordset(void **state) {
    (void)state;
    t2i_wordset s;
    t2i_wordset_init(&s);
    t2i_wordset_add_text(&s, "a Red sneaker");
    t2i_wordset_add_text(&s, "a red coat, a blue COAT");
    t2i_wordset_finish(&s);
    char *j = t2i_wordset_join(&s);
    assert_string_equal(j, "a blue coat red sneaker");
    assert_true(t2i_wordset_has(&s, "coat"));
    assert_false(t2i_wordset_has(&s, "Coat"));
    assert_false(t2i_wordset_has(&s, "boot"));
    t2i_wordset k;
    assert_int_equal(t2i_wordset_parse(&k, "sneaker red a coat blue red", "test"), 0);
    char *j2 = t2i_wordset_join(&k);
    assert_string_equal(j2, j);
    free(j2);
    t2i_wordset_free(&k);
    const char *bad[] = {"a  b", "a b ", " a", "Red", "t-shirt", "a,b", "x'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(t2i_wordset_parse(&k, bad[i], "F: metadata 'caption_words'"), -1);
        assert_non_null(strstr(t2i_error_msg(), "F: metadata 'caption_words'"));
        assert_int_equal(k.n, 0);
    }
    assert_int_equal(t2i_wordset_parse(&k, "", "test"), 0);
    assert_int_equal(k.n, 0);
    t2i_wordset_free(&k);
    free(j);
    t2i_wordset_free(&s);

    const char *caps[] = {"a photo of a red coat", "A RED coat", "a blue sneaker"};
    char *words = t2i_words_of_texts(caps, 3);
    assert_string_equal(words, "a blue coat of photo red sneaker");
    free(words);
}

static void expect_unknown(const t2i_wordset *known, const char *caption, const char *want) {
    char **w;
    int n = gen_unknown_words_of(known, caption, &w);
    char got[512] = "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(got, "|");
        strcat(got, w[i]);
    }
    t2i_words_free(w, n);
    if (strcmp(got, want) != 0) print_error("unknown(\"%s\") = \"%s\", want \"%s\"\n", caption, got, want);
    assert_string_equal(got, want);
}

static void test_unknown_words(void **state) {
    (void)state;
    t2i_wordset known;
    assert_int_equal(t2i_wordset_parse(&known, "a black blue coat in of photo red sneaker yellow", "test"), 0);
    expect_unknown(&known, "a red coat", "");
    expect_unknown(&known, "A Photo of a YELLOW coat", "");
    expect_unknown(&known, "a girl with a yellow flower in hand", "girl|flower|hand");
    expect_unknown(&known, "Hand, hand and a HAND with the girl", "hand|girl");
    expect_unknown(&known, "a coat without sleeves", "without|sleeves");
    expect_unknown(&known, "the", "");
    assert_true(gen_is_function_word("with"));
    assert_true(gen_is_function_word("a"));
    assert_false(gen_is_function_word("without"));
    assert_false(gen_is_function_word("red"));
    assert_false(gen_is_function_word("girl"));

    /* sources: dalle with the set, gan without one (an older checkpoint), a third with a
     * set that knows "girl" */
    t2i_wordset known2;
    assert_int_equal(t2i_wordset_parse(&known2, "a girl", "test"), 0);
    gen_source d = {.name = "dalle", .known_words = &known}, g = {.name = "gan"}, x = {.name = "other", .known_words = &known2};
    gen_source *src[3] = {&d, &g, &x};
    char msg[1024];
    assert_int_equal(gen_unknown_words(src, 3, "a girl with a yellow flower in hand", msg, sizeof msg), 2);
    assert_string_equal(msg,
                        "\"a girl with a yellow flower in hand\": the dalle model never saw the words girl, flower, hand "
                        "in its training captions; its images will not show them\n"
                        "\"a girl with a yellow flower in hand\": the other model never saw the words yellow, flower, "
                        "hand in its training captions; its images will not show them\n");
    assert_int_equal(gen_unknown_words(src, 2, "a red girl", msg, sizeof msg), 1);
    assert_string_equal(msg, "\"a red girl\": the dalle model never saw the word girl in its training captions; its "
                             "images will not show it\n");
    assert_int_equal(gen_unknown_words(src, 2, "a red coat", msg, sizeof msg), 0);
    assert_string_equal(msg, "");
    assert_int_equal(gen_unknown_words(src + 1, 1, "a girl", msg, sizeof msg), 0);
    /* many unknown words: a bounded line */
    char many[4000] = "";
    for (int i = 0; i < 300; i++) sprintf(many + strlen(many), "w%d ", i);
    assert_int_equal(gen_unknown_words(src, 1, many, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11 and 288 more"));
    assert_true(strlen(msg) < 1024 - 1);
    t2i_wordset_free(&known2);
    t2i_wordset_free(&known);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_wordset),
        cmocka_unit_test(test_unknown_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
