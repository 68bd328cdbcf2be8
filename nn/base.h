/* base.h - contracts, errors, allocation, timing: the bottom of the t2i core.
 *
 * Conventions used by every file of the core (documented once, here):
 *   - Tensors are float32, row-major, images NCHW. Sizes and offsets are size_t.
 *   - Three kinds of failure:
 *       1. a broken internal contract (shape mismatch, NULL where forbidden):
 *          T2I_ASSERT aborts with file:line, in every build type;
 *       2. failed allocation: t2i_malloc and friends abort with the size requested;
 *       3. bad user data or I/O (a corrupt checkpoint, an unreadable PNG):
 *          the function returns a negative value (or NULL) after t2i_error_set()
 *          recorded a one-line message naming the file and the problem. Commands
 *          print t2i_error_msg() and exit non-zero.
 *   - The error message is per thread, so loaders that decode in parallel keep
 *     their own messages.
 */
#ifndef T2I_BASE_H
#define T2I_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define T2I_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define T2I_NORETURN __attribute__((noreturn))
#else
#define T2I_PRINTF(a, b)
#define T2I_NORETURN
#endif

T2I_NORETURN void t2i_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    T2I_PRINTF(4, 5);

/* Always-on contract check (kept in release builds, unlike assert()). */
#define T2I_ASSERT(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) t2i_assert_fail(__FILE__, __LINE__, #cond, NULL);                   \
    } while (0)
/* Same, with a formatted explanation. */
#define T2I_ASSERTF(cond, ...)                                                           \
    do {                                                                                 \
        if (!(cond)) t2i_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);            \
    } while (0)

/* Record the current thread's error message (printf-style) and return -1, so that
 * `return t2i_error_set("%s: truncated", path);` reads naturally. */
int t2i_error_set(const char *fmt, ...) T2I_PRINTF(1, 2);
/* Prefix the current message: "ctx: old message". Returns -1. */
int t2i_error_prefix(const char *fmt, ...) T2I_PRINTF(1, 2);
const char *t2i_error_msg(void);
void t2i_error_clear(void);

/* Allocation that never returns NULL: aborts naming the size on failure.
 * t2i_malloc_aligned returns 64-byte aligned memory, freed with t2i_free. */
void *t2i_malloc(size_t n);
void *t2i_calloc(size_t count, size_t size);
void *t2i_realloc(void *p, size_t n);
void *t2i_malloc_aligned(size_t n);
char *t2i_strdup(const char *s);
void t2i_free(void *p);

/* printf into a fresh heap string. */
char *t2i_asprintf(const char *fmt, ...) T2I_PRINTF(1, 2);

/* Monotonic wall clock in seconds. */
double t2i_now(void);
/* Peak resident set size of this process in MiB (from getrusage). */
double t2i_peak_rss_mb(void);

/* Threads: sets OpenMP's and OpenBLAS's thread count together (they share one pool in
 * the OpenMP build of OpenBLAS). n <= 0 keeps the default. */
void t2i_set_threads(int n);
int t2i_get_threads(void);
/* This thread's number in the current OpenMP team (0 outside one). */
int t2i_thread_id(void);
/* The code path of the hand-written kernels, chosen at run time: the best the CPU has
 * (x86-64 gcc builds; other builds run the baseline), capped by the environment variable
 * T2I_CPU=baseline|avx2|avx512 (to compare paths, or to fall back) and by T2I_NO_AVX2=1
 * (the older switch: baseline). Tests set T2I_CPU to run every path the CPU has. */
typedef enum { T2I_CPU_BASELINE = 0, T2I_CPU_AVX2 = 1, T2I_CPU_AVX512 = 2 } t2i_cpu_level;
t2i_cpu_level t2i_cpu_path(void);
/* The best path of the CPU itself, whatever the environment says. */
t2i_cpu_level t2i_cpu_best(void);
const char *t2i_cpu_name(t2i_cpu_level l); /* "baseline", "avx2", "avx512" */
/* 1 if hand-vectorised AVX2 + FMA kernels may run (t2i_cpu_path() >= T2I_CPU_AVX2). */
int t2i_cpu_avx2_fma(void);

/* Whole-file helpers. t2i_read_file returns a heap buffer (NUL-terminated, for text
 * convenience; *len excludes the NUL) or NULL with the error set. max_bytes guards
 * against reading huge files by mistake (0 = no limit). */
char *t2i_read_file(const char *path, size_t *len, size_t max_bytes);
/* Atomic write: writes path.tmp.<pid>, fsyncs, renames over path, fsyncs the folder.
 * Either the old file or the complete new one exists afterwards. A symbolic link at path
 * is written through (its target is replaced, the link stays); a folder, device, pipe or
 * socket at path is an error, never replaced. */
int t2i_write_file_atomic(const char *path, const void *data, size_t len);
/* Appends line and a newline to the growing heap text *buf (*len bytes used, *cap
 * allocated; start from NULL, 0, 0): how a JSON-lines file is built before one atomic
 * write. The text is not NUL-terminated. */
void t2i_text_append_line(char **buf, size_t *len, size_t *cap, const char *line);
/* The same for a file made of n buffers written in turn (no joined copy is made). */
int t2i_write_parts_atomic(const char *path, const void *const *parts, const size_t *lens, int n);
/* The first step of such a write: the temp file's path (heap) and in *target (heap) the
 * file it will replace (path, or a symbolic link's target); NULL with the error set when
 * path is not a file that may be replaced. Temp files of target left by dead writers are
 * removed (t2i_tmp_remove_stale). The caller creates tmp between t2i_tmp_create_begin and
 * t2i_tmp_create_end; t2i_commit_file and t2i_tmp_discard end the tracking. */
char *t2i_atomic_tmp(const char *path, char **target);
/* The last step of such a write for a temp file written (and fsynced) by the caller:
 * renames tmp over path and fsyncs the folder; on failure removes tmp. Either way tmp is
 * no longer tracked. */
int t2i_commit_file(const char *tmp, const char *path);
/* Gives up such a write: removes tmp and stops tracking it. */
void t2i_tmp_discard(const char *tmp);
/* Temporary files (tmpfile.c). In progress: t2i_tmp_track records tmp (the string must
 * live until t2i_tmp_untrack) so that t2i_tmp_unlink_tracked, which is async-signal-safe,
 * removes it. t2i_tmp_cleanup_on_signals makes SIGINT, SIGTERM and SIGHUP (unless ignored)
 * remove the tracked files, then end the process by that signal (shell status 130, 143,
 * 129); commands install it first thing. Left behind: t2i_tmp_remove_stale removes
 * path.tmp.<pid> files whose process no longer exists, never a live process's. */
void t2i_tmp_track(const char *tmp);
void t2i_tmp_untrack(const char *tmp);
void t2i_tmp_unlink_tracked(void);
/* Creating a temp file: t2i_tmp_create_begin tracks tmp and must be followed, right after
 * the open (whatever its result), by t2i_tmp_create_end. t2i_tmp_end_process, for signal
 * handlers that end the process (async-signal-safe): no thread creates a temp file any
 * more, those being created are waited for (at most 2 s), then every tracked file is
 * unlinked. Without it a writer thread could create a file after the unlinking. */
void t2i_tmp_create_begin(const char *tmp);
void t2i_tmp_create_end(void);
void t2i_tmp_end_process(void);
void t2i_tmp_cleanup_on_signals(void);
void t2i_tmp_remove_stale(const char *path);
/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code points
 * above U+10FFFF included), or len when the text is valid. */
size_t t2i_utf8_invalid_at(const void *text, size_t len);
/* What is wrong with a caption or prompt, or NULL: "not valid UTF-8" or "a control character"
 * (C0 other than tab/newline/return, DEL) at byte *at, or T2I_TEXT_EMPTY ("empty": blank),
 * which callers that accept blank text test for by pointer. */
extern const char T2I_TEXT_EMPTY[];
const char *t2i_text_problem(const char *s, size_t *at);
/* s for a one-line message, in out (size cap >= 16): at most max bytes of it, control
 * characters (tab and newline included) and bytes that are not UTF-8 as \xNN, a cut marked
 * "...". Returns out. */
char *t2i_text_show(const char *s, size_t max, char *out, size_t cap);
/* Index of the first NaN or infinity in x, or n. */
size_t t2i_first_nonfinite(const float *x, size_t n);
/* A path recorded in a checkpoint or given by the user: as given when it exists or is
 * absolute, else relative to the source tree (T2I_SOURCE_DIR) when that exists there (the
 * shipped models in samples/models/ refer to each other so), else as given. Heap string;
 * NULL for NULL or "". */
char *t2i_resolve_path(const char *p);
/* mkdir -p; returns 0 or -1 with the error set. */
int t2i_mkdirs(const char *path);
/* Returns 1 when path exists (any type). */
int t2i_path_exists(const char *path);
int t2i_is_dir(const char *path);

/* Half precision conversions (round to nearest even, as torch does). */
uint16_t t2i_f32_to_f16(float f);
float t2i_f16_to_f32(uint16_t h);
uint16_t t2i_f32_to_bf16(float f);
float t2i_bf16_to_f32(uint16_t h);

#define T2I_MIN(a, b) ((a) < (b) ? (a) : (b))
#define T2I_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
