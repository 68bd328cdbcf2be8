/* test_tmpfile.c - temporary files of atomic writes (nn/tmpfile.c): those a dead writer
 * left behind and those in progress when a signal ends the process.
 *
 * The tests check that:
 *   - writing PATH (t2i_write_file_atomic, the streaming PNG writer) removes
 *     PATH.tmp.<pid> of a process that no longer exists, and keeps a live process's, other
 *     files' temp files and names that only look alike;
 *   - a tracked temp file is removed by t2i_tmp_unlink_tracked, an untracked one is not;
 *   - SIGINT / SIGTERM in the middle of a PNG written row by row (t2i_tmp_cleanup_on_signals
 *     installed) end the process by that signal and leave no temp file and no output.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "base.h"
#include "image.h"
#include "testutil.h"

/* The pid of a process that has ended (a child reaped at once). */
static long dead_pid(void) {
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) _exit(0);
    assert_int_equal(waitpid(c, NULL, 0), c);
    return (long)c;
}

static char *touch(const char *dir, const char *fmt, long pid) {
    char *name = t2i_asprintf(fmt, pid), *p = t2i_asprintf("%s/%s", dir, name);
    tu_write_bytes(p, "half", 4);
    free(name);
    return p;
}

static void test_stale_tmp_of_dead_writer_removed(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    long dead = dead_pid(), live = (long)getppid();
    /* all made before the first write into dir: the folder is listed once per process */
    char *ck_dead = touch(dir, "ck.safetensors.tmp.%ld", dead);
    char *ck_live = touch(dir, "ck.safetensors.tmp.%ld", live);
    char *ck_alike = touch(dir, "ck.safetensors.tmp.%ldx", dead);
    char *other = touch(dir, "other.safetensors.tmp.%ld", dead);
    char *png_dead = touch(dir, "img.png.tmp.%ld", dead);
    char *ck = t2i_asprintf("%s/ck.safetensors", dir), *img = t2i_asprintf("%s/img.png", dir);

    assert_int_equal(t2i_write_file_atomic(ck, "new", 3), 0);
    assert_false(t2i_path_exists(ck_dead));
    assert_true(t2i_path_exists(ck_live));  /* its writer may still rename it */
    assert_true(t2i_path_exists(ck_alike)); /* not a temp file name of ours */
    assert_true(t2i_path_exists(other));    /* removed when other.safetensors is written */
    assert_true(t2i_path_exists(png_dead));

    t2i_png_writer *pw = t2i_png_writer_open(img, 2, 1, 1);
    assert_non_null(pw);
    assert_false(t2i_path_exists(png_dead));
    assert_int_equal(t2i_png_writer_rows(pw, (const uint8_t[]){0, 255}, 1), 0);
    assert_int_equal(t2i_png_writer_close(pw, 1), 0);
    assert_int_equal(tu_count_tmp(dir), 3);

    char *other_file = t2i_asprintf("%s/other.safetensors", dir);
    assert_int_equal(t2i_write_file_atomic(other_file, "x", 1), 0);
    assert_false(t2i_path_exists(other));
    assert_int_equal(tu_count_tmp(dir), 2);

    free(ck_dead), free(ck_live), free(ck_alike), free(other), free(png_dead), free(ck), free(img);
    free(other_file);
    tu_rmtree(dir);
    free(dir);
}

static void test_tracked_tmp_unlinked(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *a = touch(dir, "a.tmp.%ld", (long)getpid()), *b = touch(dir, "b.tmp.%ld", (long)getpid());
    t2i_tmp_track(a);
    t2i_tmp_track(b);
    t2i_tmp_untrack(b);
    t2i_tmp_unlink_tracked();
    assert_false(t2i_path_exists(a));
    assert_true(t2i_path_exists(b));
    t2i_tmp_untrack(a);
    free(a), free(b);
    tu_rmtree(dir);
    free(dir);
}

/* A child writes a PNG row by row and signals itself half-way. */
static void signal_mid_png(int sig) {
    char *dir = tu_tmpdir(), *out = t2i_asprintf("%s/out.png", dir);
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) {
        signal(sig, SIG_DFL); /* not inherited as ignored (a test run in the background) */
        t2i_tmp_cleanup_on_signals();
        t2i_png_writer *pw = t2i_png_writer_open(out, 64, 64, 3);
        uint8_t row[64 * 3] = {0};
        if (!pw || t2i_png_writer_rows(pw, row, 1) != 0 || tu_count_tmp(dir) != 1) _exit(3);
        raise(sig);
        _exit(4); /* not reached */
    }
    int st;
    assert_int_equal(waitpid(c, &st, 0), c);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), sig);
    assert_int_equal(tu_count_tmp(dir), 0);
    assert_false(t2i_path_exists(out));
    free(out);
    tu_rmtree(dir);
    free(dir);
}

static void test_signal_mid_write_leaves_nothing(void **state) {
    (void)state;
    signal_mid_png(SIGINT);
    signal_mid_png(SIGTERM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_tmp_of_dead_writer_removed),
        cmocka_unit_test(test_tracked_tmp_unlinked),
        cmocka_unit_test(test_signal_mid_write_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
