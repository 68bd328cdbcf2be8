/* progress.c - see progress.h. */
#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

volatile sig_atomic_t t2i_interrupted = 0;

static void on_sigint(int sig) {
    if (t2i_interrupted) {
        t2i_tmp_end_process();
        signal(sig, SIG_DFL);
        raise(sig);
    }
    t2i_interrupted = sig;
}

void t2i_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* What a killed run may have left half-written: the temp files of config.json and of the
 * trainer's checkpoint (run/trainer.c) whose writer is gone. Other files (samples) go on
 * their next write. */
static void remove_stale_tmp(const t2i_run *r) {
    static const char *const run_files[] = {"config.json", "checkpoint.safetensors"};
    for (size_t i = 0; i < sizeof run_files / sizeof run_files[0]; i++) {
        char *p = t2i_run_path(r, run_files[i]);
        t2i_tmp_remove_stale(p);
        free(p);
    }
}

void t2i_progress_start(t2i_progress *p, const char *label, long done, long total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->start_done = done;
    p->t0 = p->last = t2i_now();
    p->tty = isatty(fileno(stderr));
    const char *env = getenv("T2I_PROGRESS_SECONDS");
    p->interval = env ? atof(env) : 10.0;
    if (p->interval < 0) p->interval = 0;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

static void draw(t2i_progress *p, long done, const char *extra, int final) {
    double now = t2i_now();
    double el = now - p->t0;
    double rate = el > 0 ? (done - p->start_done) / el : 0;
    char eta[32] = "", elapsed[32];
    fmt_duration(elapsed, sizeof elapsed, el);
    if (p->total > 0 && rate > 0 && !final) {
        char d[24];
        fmt_duration(d, sizeof d, (p->total - done) / rate);
        snprintf(eta, sizeof eta, "  ETA %s", d);
    }
    char line[512];
    if (p->total > 0)
        snprintf(line, sizeof line, "%s %ld/%ld%s%s  %.1f it/s  %s%s", p->label, done, p->total,
                 extra && *extra ? "  " : "", extra ? extra : "", rate, elapsed, eta);
    else
        snprintf(line, sizeof line, "%s %ld%s%s  %.1f it/s  %s", p->label, done,
                 extra && *extra ? "  " : "", extra ? extra : "", rate, elapsed);
    if (p->tty) fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
    p->last = now;
    p->drawn = 1;
}

void t2i_progress_update(t2i_progress *p, long done, const char *fmt, ...) {
    double now = t2i_now();
    double wait = p->tty ? 0.1 : p->interval;
    if (p->drawn && now - p->last < wait) return;
    if (!p->drawn && !p->tty && now - p->t0 < T2I_MIN(wait, 2.0)) return;
    char extra[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    draw(p, done, extra, 0);
}

void t2i_progress_end(t2i_progress *p, long done, const char *fmt, ...) {
    char extra[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    draw(p, done, extra, 1);
}

/* flock on an open file of path: fd, or -1 with t2i_error_set (dir names the folder in
 * the message). A holder removes the file when it ends (t2i_run_close); if that happened
 * between our open and our flock, the lock we got is on a file no longer in the folder, so
 * we open the new one and try again. */
static int lock_path(const char *path, const char *dir) {
    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return t2i_error_set("%s: cannot create the run's lock file: %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char pid[24] = {0};
            ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : 0;
            close(fd);
            if (e != EWOULDBLOCK) return t2i_error_set("%s: cannot lock: %s", path, strerror(e));
            pid[n > 0 ? strcspn(pid, "\n") : 0] = 0;
            return t2i_error_set("%s: in use by another run (PID %s); wait for it to end or choose another folder",
                                 dir, *pid ? pid : "unknown");
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev && held.st_ino == now.st_ino)
            return fd;
        close(fd);
    }
}

int t2i_run_lock(t2i_run *r, const char *dir) {
    char *p = t2i_asprintf("%s/.lock", dir);
    int fd = lock_path(p, dir);
    free(p);
    if (fd < 0) return -1;
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    /* the PID only serves the message of a run that finds the folder taken: the lock holds
     * without it, so a failed write is not an error */
    (void)(ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) == n);
    if (!r->dir) r->dir = t2i_strdup(dir);
    r->locked = 1;
    r->lock_fd = fd;
    return 0;
}

int t2i_run_open(t2i_run *r, const char *dir) {
    if (t2i_mkdirs(dir) != 0 || (!r->locked && t2i_run_lock(r, dir) != 0)) return -1;
    if (!r->dir) r->dir = t2i_strdup(dir);
    char *mp = t2i_run_path(r, "metrics.jsonl");
    r->metrics = fopen(mp, "a");
    if (!r->metrics) {
        t2i_error_set("%s: cannot open for appending", mp);
        free(mp);
        return -1;
    }
    free(mp);
    remove_stale_tmp(r);
    return 0;
}

int t2i_run_write_config(t2i_run *r, const char *json) {
    char *p = t2i_run_path(r, "config.json");
    size_t n = strlen(json);
    char *buf = t2i_malloc(n + 2);
    memcpy(buf, json, n);
    buf[n] = '\n';
    int rc = t2i_write_file_atomic(p, buf, n + 1);
    free(buf);
    free(p);
    return rc;
}

void t2i_run_metrics(t2i_run *r, const char *json_line) {
    if (!r->metrics) return;
    fputs(json_line, r->metrics);
    fputc('\n', r->metrics);
    fflush(r->metrics);
}

char *t2i_run_path(const t2i_run *r, const char *name) { return t2i_asprintf("%s/%s", r->dir, name); }

void t2i_run_close(t2i_run *r) {
    if (r->metrics) fclose(r->metrics);
    if (r->locked) {
        /* removed while still held, so no other run can have taken this file's lock */
        char *p = t2i_run_path(r, ".lock");
        unlink(p);
        free(p);
        close(r->lock_fd);
    }
    free(r->dir);
    memset(r, 0, sizeof *r);
}
