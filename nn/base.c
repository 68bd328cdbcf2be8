/* base.c - see base.h. */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Provided by OpenBLAS; declared here to avoid depending on its extension header. */
void openblas_set_num_threads(int num_threads);

static _Thread_local char g_err[1024];

void t2i_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
    fprintf(stderr, "t2i: internal error at %s:%d: %s", file, line, expr);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(" (", stderr);
        vfprintf(stderr, fmt, ap);
        fputs(")", stderr);
        va_end(ap);
    }
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

int t2i_error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return -1;
}

int t2i_error_prefix(const char *fmt, ...) {
    char pre[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof g_err - 3) n = sizeof g_err - 3;
    memcpy(g_err, pre, n);
    g_err[n] = ':';
    g_err[n + 1] = ' ';
    size_t rest = sizeof g_err - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(g_err + n + 2, old, m);
    g_err[n + 2 + m] = 0;
    return -1;
}

const char *t2i_error_msg(void) { return g_err[0] ? g_err : "unknown error"; }
void t2i_error_clear(void) { g_err[0] = 0; }

static T2I_NORETURN void oom(size_t n) {
    fprintf(stderr, "t2i: out of memory allocating %zu bytes (%.1f MiB)\n", n, n / 1048576.0);
    exit(2);
}

void *t2i_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *t2i_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *t2i_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

void *t2i_malloc_aligned(size_t n) {
    void *p = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) oom(n);
    return p;
}

void t2i_free(void *p) { free(p); }

char *t2i_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = t2i_malloc(n);
    memcpy(d, s, n);
    return d;
}

char *t2i_asprintf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    T2I_ASSERT(n >= 0);
    char *s = t2i_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

double t2i_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double t2i_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

void t2i_set_threads(int n) {
    if (n <= 0) return;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

t2i_cpu_level t2i_cpu_best(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    /* AVX-512 here means the F, VL, BW and DQ subsets (Skylake-X, Zen 4 and later) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return T2I_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return T2I_CPU_AVX2;
#endif
    return T2I_CPU_BASELINE;
}

t2i_cpu_level t2i_cpu_path(void) {
    t2i_cpu_level l = t2i_cpu_best();
    const char *e = getenv("T2I_NO_AVX2");
    if (e && *e && strcmp(e, "0") != 0) return T2I_CPU_BASELINE;
    e = getenv("T2I_CPU");
    if (e && *e) {
        t2i_cpu_level cap = !strcmp(e, "baseline") ? T2I_CPU_BASELINE : !strcmp(e, "avx2") ? T2I_CPU_AVX2
                                                                                          : T2I_CPU_AVX512;
        if (cap == T2I_CPU_AVX512 && strcmp(e, "avx512") != 0) {
            static int warned; /* a typo must not pass unnoticed, nor stop the run */
            if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
                fprintf(stderr, "t2i: T2I_CPU=%s is not one of baseline, avx2, avx512; ignored\n", e);
        }
        if (cap < l) l = cap;
    }
    return l;
}

const char *t2i_cpu_name(t2i_cpu_level l) {
    return l == T2I_CPU_AVX512 ? "avx512" : l == T2I_CPU_AVX2 ? "avx2" : "baseline";
}

int t2i_cpu_avx2_fma(void) { return t2i_cpu_path() >= T2I_CPU_AVX2; }

int t2i_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int t2i_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

char *t2i_read_file(const char *path, size_t *len, size_t max_bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        t2i_error_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        t2i_error_set("%s: not a regular file", path);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    if (max_bytes && n > max_bytes) {
        fclose(f);
        t2i_error_set("%s: file is %zu bytes, more than the limit of %zu", path, n, max_bytes);
        return NULL;
    }
    char *buf = t2i_malloc(n + 1);
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        t2i_error_set("%s: read failed (%zu of %zu bytes)", path, got, n);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int fsync_dir_of(const char *path) {
    char *copy = t2i_strdup(path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse fsync on folders */
        close(fd);
    }
    free(copy);
    return 0;
}

char *t2i_atomic_tmp(const char *path, char **target) {
    struct stat st;
    char *t = NULL;
    if (lstat(path, &st) != 0) {
        st.st_mode = S_IFREG; /* a new file; a missing folder or no permission is reported by the write */
    } else if (S_ISLNK(st.st_mode)) {
        t = realpath(path, NULL);
        if (!t) {
            t2i_error_set("%s: a symbolic link to a missing file or folder (%s)", path, strerror(errno));
            return NULL;
        }
        if (stat(t, &st) != 0) st.st_mode = S_IFREG; /* resolved, then removed: write it anew */
    }
    if (!S_ISREG(st.st_mode)) {
        t2i_error_set("%s: exists and is not a regular file (%s); give a file path", path,
                      S_ISDIR(st.st_mode) ? "a folder" : "a device, pipe or socket");
        free(t);
        return NULL;
    }
    *target = t ? t : t2i_strdup(path);
    t2i_tmp_remove_stale(*target);
    return t2i_asprintf("%s.tmp.%ld", *target, (long)getpid());
}

void t2i_tmp_discard(const char *tmp) {
    unlink(tmp);
    t2i_tmp_untrack(tmp);
}

static int write_all(int fd, const char *p, size_t left) {
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        left -= (size_t)w;
    }
    return 0;
}

int t2i_write_parts_atomic(const char *path, const void *const *parts, const size_t *lens, int n) {
    char *target = NULL, *tmp = t2i_atomic_tmp(path, &target);
    if (!tmp) return -1;
    t2i_tmp_create_begin(tmp);
    int rc = -1, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    t2i_tmp_create_end();
    if (fd < 0) {
        t2i_error_set("%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        t2i_tmp_untrack(tmp);
        goto out;
    }
    int ok = 1;
    for (int i = 0; ok && i < n; i++) ok = write_all(fd, parts[i], lens[i]) == 0;
    if (!ok) t2i_error_set("%s: write failed: %s", path, strerror(errno));
    else if (fsync(fd) != 0) t2i_error_set("%s: fsync failed: %s", path, strerror(errno));
    else rc = 0;
    /* close can report delayed write errors (NFS): check it too */
    if (close(fd) != 0 && rc == 0) rc = t2i_error_set("%s: close failed: %s", path, strerror(errno));
    if (rc == 0) rc = t2i_commit_file(tmp, target);
    else t2i_tmp_discard(tmp);
out:
    free(tmp);
    free(target);
    return rc;
}

void t2i_text_append_line(char **buf, size_t *len, size_t *cap, const char *line) {
    size_t l = strlen(line);
    if (*len + l + 1 > *cap) {
        *cap = 2 * *cap + l + 1;
        *buf = t2i_realloc(*buf, *cap);
    }
    memcpy(*buf + *len, line, l);
    *len += l;
    (*buf)[(*len)++] = '\n';
}

int t2i_write_file_atomic(const char *path, const void *data, size_t len) {
    return t2i_write_parts_atomic(path, &data, &len, 1);
}

int t2i_commit_file(const char *tmp, const char *path) {
    if (rename(tmp, path) != 0) {
        t2i_error_set("%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        t2i_tmp_discard(tmp);
        return -1;
    }
    t2i_tmp_untrack(tmp);
    return fsync_dir_of(path);
}

size_t t2i_utf8_invalid_at(const void *text, size_t len) {
    const uint8_t *s = text;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n > len - i - 1) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

const char T2I_TEXT_EMPTY[] = "empty";

const char *t2i_text_problem(const char *s, size_t *at) {
    size_t n = strlen(s), bad = t2i_utf8_invalid_at(s, n), blank = 1;
    *at = bad;
    if (bad < n) return "not valid UTF-8";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
            *at = i;
            return "a control character";
        }
        blank &= c == ' ' || c == '\t' || c == '\n' || c == '\r';
    }
    *at = 0;
    return blank ? T2I_TEXT_EMPTY : NULL;
}

char *t2i_text_show(const char *s, size_t max, char *out, size_t cap) {
    size_t n = strlen(s), o = 0, i = 0;
    for (; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        int ok = k <= n - i && t2i_utf8_invalid_at(s + i, k) == k;
        if (ok && i + k > max) break; /* a character the cut would split */
        if (ok && (c >= 0x80 || (c >= 0x20 && c != 0x7f))) {
            if (o + k + 4 > cap) break;
            memcpy(out + o, s + i, k);
            o += k;
            i += k - 1;
        } else {
            if (o + 4 + 4 > cap) break;
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        }
    }
    if (i < n) memcpy(out + o, "...", 3), o += 3;
    out[o] = 0;
    return out;
}

size_t t2i_first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

char *t2i_resolve_path(const char *p) {
    if (!p || !*p) return NULL;
    if (p[0] == '/' || t2i_path_exists(p)) return t2i_strdup(p);
    char *q = t2i_asprintf("%s/%s", T2I_SOURCE_DIR, p);
    if (t2i_path_exists(q)) return q;
    free(q);
    return t2i_strdup(p);
}

int t2i_mkdirs(const char *path) {
    char *p = t2i_strdup(path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                t2i_error_set("%s: cannot create folder: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            p[i] = c;
        }
    }
    free(p);
    if (!t2i_is_dir(path)) return t2i_error_set("%s: exists and is not a folder", path);
    return 0;
}

int t2i_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int t2i_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* IEEE half: 1 sign, 5 exponent, 10 mantissa bits. */
uint16_t t2i_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf / nan */
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow to inf */
    if (e <= 0) {
        /* subnormal half (or zero): shift the implicit-one mantissa into place, RNE */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++; /* may carry into exponent: correct */
    return (uint16_t)half;
}

float t2i_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (man == 0) {
            x = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t t2i_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

float t2i_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
