/* tmpfile.c - the temporary files of atomic writes: those in progress, removed when a
 * signal ends the process, and those a dead writer left behind (declared in base.h).
 *
 * An atomic write (t2i_write_parts_atomic, the streaming PNG writer) fills PATH.tmp.<pid>
 * and renames it over PATH. Two ways it can stay behind:
 *   - the process is ended by SIGINT, SIGTERM or SIGHUP mid-write. Each write records its
 *     temp path in a table of slots (lock-free, so that any thread may write); the handler
 *     that t2i_tmp_cleanup_on_signals installs unlinks every recorded path - unlink is
 *     async-signal-safe, nothing else is done there - and re-raises the signal with its
 *     default action, so the parent sees the usual "killed by SIGINT" (shell status 130,
 *     143 for SIGTERM, 129 for SIGHUP).
 *   - the process is killed (-9, a crash, a power cut). No handler runs; the next write of
 *     PATH removes PATH.tmp.<pid> when no process <pid> exists (kill(pid, 0) fails with
 *     ESRCH). A live process's temp file is never touched (EPERM counts as alive); a
 *     recycled PID keeps a stale file alive until that process ends, which is harmless:
 *     the name is not ours to write.
 * A folder is read once per process (the first write into it lists the stale files found
 * there); later writes consult that list, so writing 70,000 images into one folder does
 * not read it 70,000 times.
 */
#include "base.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- in-progress temp files ---- */

/* Enough for every thread of a parallel writer (cmd_data writes with a few threads); a
 * write that finds no free slot goes on unrecorded. */
#define TMP_SLOTS 64
static const char *_Atomic tmp_slots[TMP_SLOTS];

void t2i_tmp_track(const char *tmp) {
    for (int i = 0; i < TMP_SLOTS; i++) {
        const char *none = NULL;
        if (atomic_compare_exchange_strong(&tmp_slots[i], &none, tmp)) return;
    }
}

void t2i_tmp_untrack(const char *tmp) {
    for (int i = 0; i < TMP_SLOTS; i++) {
        const char *want = tmp;
        if (atomic_compare_exchange_strong(&tmp_slots[i], &want, NULL)) return;
    }
}

void t2i_tmp_unlink_tracked(void) {
    for (int i = 0; i < TMP_SLOTS; i++) {
        const char *p = atomic_load(&tmp_slots[i]);
        if (p) unlink(p);
    }
}

/* The race of several writer threads with the handler: while one thread's handler unlinks
 * the tracked files, another thread may create a new one, which the process's death then
 * leaves behind (`t2i data`'s 8 writers left one in half the SIGTERMs). So a file is
 * created inside a window (t2i_tmp_create_begin / _end, counted in `creating`), and the
 * handler first sets `ending` - after which no thread enters the window: it blocks for the
 * little time the process has left - then waits for the threads already inside (bounded,
 * not counting its own thread's) before it unlinks. Both are sequentially consistent
 * atomics: either the handler sees a writer's count, or the writer sees `ending`. */
static atomic_int creating, ending;
static _Thread_local int creating_here;

void t2i_tmp_create_begin(const char *tmp) {
    atomic_fetch_add(&creating, 1);
    if (atomic_load(&ending)) {
        atomic_fetch_sub(&creating, 1);
        for (;;) pause(); /* the process is ending by a signal */
    }
    creating_here++;
    t2i_tmp_track(tmp);
}

void t2i_tmp_create_end(void) {
    creating_here--;
    atomic_fetch_sub(&creating, 1);
}

void t2i_tmp_end_process(void) {
    atomic_store(&ending, 1);
    const struct timespec ms = {0, 1000000};
    for (int i = 0; i < 2000 && atomic_load(&creating) > creating_here; i++) nanosleep(&ms, NULL);
    t2i_tmp_unlink_tracked();
}

static void on_ending_signal(int sig) {
    t2i_tmp_end_process();
    signal(sig, SIG_DFL);
    raise(sig); /* delivered when the handler returns: the process ends as the signal says */
}

void t2i_tmp_cleanup_on_signals(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa;
        /* a signal the parent ignores (nohup, a background job) stays ignored */
        if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_ending_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- temp files of dead writers ---- */

static pthread_mutex_t stale_lock = PTHREAD_MUTEX_INITIALIZER;
static char **seen_dirs, **stale; /* folders listed; "dir/name.tmp.<pid>" of dead writers found there */
static int nseen, nstale;

/* The writer's pid when name ends in ".tmp.<digits>", else 0. */
static long tmp_writer(const char *name) {
    const char *t = strstr(name, ".tmp."), *next;
    if (!t) return 0;
    while ((next = strstr(t + 1, ".tmp."))) t = next;
    t += 5;
    long pid = 0;
    if (!*t) return 0;
    for (; *t; t++) {
        if (*t < '0' || *t > '9' || pid > 99999999) return 0;
        pid = pid * 10 + (*t - '0');
    }
    return pid;
}

static int writer_is_dead(long pid) {
    return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* dir/name, without doubling the slash of "/" */
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    return t2i_asprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

static void list_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return; /* a missing or unreadable folder: the write itself reports it */
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!writer_is_dead(tmp_writer(e->d_name))) continue;
        stale = t2i_realloc(stale, (size_t)(nstale + 1) * sizeof *stale);
        stale[nstale++] = join(dir, e->d_name);
    }
    closedir(d);
    seen_dirs = t2i_realloc(seen_dirs, (size_t)(nseen + 1) * sizeof *seen_dirs);
    seen_dirs[nseen++] = t2i_strdup(dir);
}

void t2i_tmp_remove_stale(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? t2i_strdup(".") : t2i_asprintf("%.*s", slash == path ? 1 : (int)(slash - path), path);
    char *name = t2i_asprintf("%s.tmp.", slash ? slash + 1 : path), *prefix = join(dir, name);
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&stale_lock);
    int seen = 0;
    for (int i = 0; i < nseen && !seen; i++) seen = strcmp(seen_dirs[i], dir) == 0;
    if (!seen) list_stale(dir);
    for (int i = 0; i < nstale; i++) {
        const char *p = stale[i];
        if (strncmp(p, prefix, plen) != 0 || strchr(p + plen, '.')) continue; /* another file's */
        if (writer_is_dead(tmp_writer(p))) unlink(p);
        free(stale[i]);
        stale[i--] = stale[--nstale];
    }
    pthread_mutex_unlock(&stale_lock);
    free(prefix), free(name), free(dir);
}
