/* test_args.c - run/args.c: what t2i_parse fills in, and that the arrays it makes (cmd.pos,
 * T2I_STRS values) are freed by t2i_dispatch on every exit of the command it called, while a
 * command that dispatches again keeps its own until it returns. The sanitizer build
 * (tests/sanitize.sh, in CI) adds LeakSanitizer and use-after-free checks to the counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "args.h"

static int n_flag;
static int b_flag;
static t2i_strs names;

static const t2i_flag flags[] = {
    {"--n", T2I_INT, &n_flag, "a number"},
    {"--b", T2I_BOOL, &b_flag, "a switch"},
    {"--names", T2I_STRS, &names, "several values"},
};

static t2i_cmd make_cmd(void) {
    t2i_cmd cmd = {"t2i test", "A test command.", "[options] X...", flags, 3, NULL, NULL, 0, 0};
    n_flag = 0, b_flag = 0, names = (t2i_strs){0};
    return cmd;
}

static int parse(t2i_cmd *cmd, int argc, const char **argv) { return t2i_parse(cmd, argc, (char **)argv); }

static void test_parse_values(void **state) {
    (void)state;
    t2i_cmd cmd = make_cmd();
    const char *argv[] = {"run", "a", "--n", "3", "-1", "--names=p", "q", "r", "--b", "--", "--n", "x"};
    assert_int_equal(parse(&cmd, 12, argv), T2I_PARSE_OK);
    assert_int_equal(n_flag, 3);
    assert_int_equal(b_flag, 1);
    assert_int_equal(names.n, 3);
    assert_string_equal(names.v[0], "p");
    assert_string_equal(names.v[2], "r");
    /* "-1" is a value, not an option; after "--" everything is positional */
    assert_int_equal(cmd.npos, 4);
    assert_string_equal(cmd.pos[0], "a");
    assert_string_equal(cmd.pos[1], "-1");
    assert_string_equal(cmd.pos[2], "--n");
    assert_string_equal(cmd.pos[3], "x");
    assert_true(t2i_flag_given(&cmd, "--names"));
    assert_int_equal(t2i_parse_held(), 2); /* cmd.pos and names.v */
    t2i_parse_release();
    assert_int_equal(t2i_parse_held(), 0);

    const char *bad[][3] = {{"run", "--names", "--n"}, {"run", "--n", "x"}, {"run", "--m", "1"}, {"run", "-n", "1"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        cmd = make_cmd();
        assert_int_equal(parse(&cmd, 3, bad[k]), T2I_PARSE_ERROR);
    }
    t2i_parse_release();
}

/* Commands for t2i_dispatch, each leaving by a different exit after parsing. */
static int cmd_ok(int argc, char **argv) {
    t2i_cmd cmd = make_cmd();
    if (t2i_parse(&cmd, argc, argv) != T2I_PARSE_OK) return 2;
    return cmd.npos == 2 && names.n == 2 && strcmp(names.v[0], "a") == 0 ? 0 : 1;
}

static int cmd_early(int argc, char **argv) {
    t2i_cmd cmd = make_cmd();
    if (t2i_parse(&cmd, argc, argv) != T2I_PARSE_OK) return 2;
    if (cmd.npos) return t2i_fail("test: unexpected argument '%s'", cmd.pos[0]), 2;
    return 0;
}

static const t2i_subcmd inner_subs[] = {{"ok", cmd_ok, "parses"}};

static int cmd_nested(int argc, char **argv) {
    t2i_cmd cmd = make_cmd();
    if (t2i_parse(&cmd, argc, argv) != T2I_PARSE_OK || cmd.npos != 1) return 2;
    const char *inner[] = {"inner", "ok", "p", "q", "--names", "a", "b"};
    int rc = t2i_dispatch("t2i inner", "", inner_subs, 1, 7, (char **)inner);
    /* the inner dispatch freed only what its command made: ours is intact */
    return rc == 0 && t2i_parse_held() == 1 && cmd.npos == 1 && strcmp(cmd.pos[0], "mine") == 0 ? 0 : 1;
}

static void test_dispatch_frees(void **state) {
    (void)state;
    static const t2i_subcmd subs[] = {{"ok", cmd_ok, ""}, {"early", cmd_early, ""}, {"nested", cmd_nested, ""}};
    struct {
        int argc;
        const char *argv[10];
        int rc;
    } runs[] = {
        {9, {"t2i", "ok", "x", "--names", "a", "--names", "b", "--", "y"}, 0}, /* --names twice: a and b */
        {4, {"t2i", "early", "x", "y"}, 2},
        {3, {"t2i", "early", "--n"}, 2}, /* a parse error */
        {3, {"t2i", "nested", "mine"}, 0},
    };
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        assert_int_equal(t2i_dispatch("t2i", "", subs, 3, runs[k].argc, (char **)runs[k].argv), runs[k].rc);
        assert_int_equal(t2i_parse_held(), 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_dispatch_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
