/* progress.h - progress lines for long work, run folders, and Ctrl-C handling.
 *
 * t2i_progress prints "label  step 120/5000  loss 0.693  38.1 it/s  ETA 2m08s". On a
 * terminal it redraws one line (at most 10 times a second); otherwise (a log file, CI) it
 * prints a plain line every T2I_PROGRESS_SECONDS seconds (default 10) and at the end.
 *
 * A run folder holds config.json (written once, atomically), metrics.jsonl (one JSON
 * object per line, flushed per line) and the checkpoints. One process at a time works in
 * it: it holds an exclusive flock on DIR/.lock (the file holds its PID) from before the
 * first read of the folder until t2i_run_close, which removes the file. The kernel drops
 * the lock when the process dies, so a run killed with kill -9 leaves at most a stale
 * .lock that the next run takes over.
 *
 * t2i_install_sigint makes Ctrl-C (SIGINT) and SIGTERM set t2i_interrupted to the signal's
 * number instead of ending the process, so a training loop can save a checkpoint and exit
 * with 128 + that number (130, 143); a second one removes the temporary file of a write in
 * progress and ends the process at once.
 */
#ifndef T2I_PROGRESS_H
#define T2I_PROGRESS_H

#include <signal.h>
#include <stdio.h>

typedef struct {
    const char *label;
    long total;        /* 0 if unknown */
    long start_done;   /* items already done when started (a resumed run) */
    double t0, last;
    int tty;
    double interval;   /* seconds between plain lines */
    int drawn;
} t2i_progress;

void t2i_progress_start(t2i_progress *p, const char *label, long done, long total);
/* extra: printf-style text appended to the line ("loss 0.693"); may be NULL. */
void t2i_progress_update(t2i_progress *p, long done, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void t2i_progress_end(t2i_progress *p, long done, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Run folders. Opening one removes what a killed run left half-written of config.json and
 * checkpoint.safetensors: their temporary files (PATH.tmp.<pid>) whose process is gone. */
typedef struct {
    char *dir;
    FILE *metrics;     /* metrics.jsonl, opened for append */
    int locked;        /* lock_fd holds dir/.lock */
    int lock_fd;
} t2i_run;

/* Takes the lock of the existing folder dir into r (zeroed first). Another process holding
 * it: "DIR: in use by another run (PID N); wait for it to end or choose another folder".
 * Returns 0, or -1 with t2i_error_set. */
int t2i_run_lock(t2i_run *r, const char *dir);
/* Creates dir if needed, takes its lock unless r already holds it, and opens metrics.jsonl
 * for appending. r: zeroed, or as t2i_run_lock left it. */
int t2i_run_open(t2i_run *r, const char *dir);
/* Writes config.json atomically. */
int t2i_run_write_config(t2i_run *r, const char *json);
/* Appends one JSON object (a complete line without the newline). */
void t2i_run_metrics(t2i_run *r, const char *json_line);
/* Heap string dir/name. */
char *t2i_run_path(const t2i_run *r, const char *name);
/* Closes metrics.jsonl, removes dir/.lock and releases the lock. */
void t2i_run_close(t2i_run *r);

extern volatile sig_atomic_t t2i_interrupted;
void t2i_install_sigint(void);

#endif
