/* safetensors.h - read and write safetensors files (checkpoints, reference data).
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON (an object mapping tensor
 * names to {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional
 * "__metadata__" object of string values), then the data block; offsets are relative to
 * the data block.
 *
 * st_open maps the file read-only (mmap) and validates everything before returning:
 * header length beyond the file, JSON that is not an object, entries that are not objects,
 * unknown dtype, negative or huge shapes, byte counts that do not match dtype x shape,
 * offsets outside the data block, overlapping tensors, non-string metadata values,
 * duplicate names. A failure returns -1 with a one-line error naming the file.
 * st_parse does the same on a caller's buffer (used by the fuzz target).
 *
 * Writing: st_writer collects tensors (converted to the requested dtype) and metadata,
 * then st_writer_save writes the file atomically (temporary file, fsync, rename). The
 * model's configuration is stored as a JSON string under the metadata key "config".
 */
#ifndef T2I_SAFETENSORS_H
#define T2I_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_U16, ST_U32, ST_U64, ST_F8_E4M3, ST_F8_E5M2, ST_NDTYPES
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t begin, end;        /* byte offsets into the data block */
    const uint8_t *data;      /* = file data block + begin */
} st_tensor;

typedef struct {
    char *path;               /* for messages */
    void *map;                /* mmap'd file (or NULL for st_parse) */
    size_t map_len;
    const uint8_t *data;      /* data block */
    size_t data_len;
    st_tensor *t;             /* tensors in header order */
    int n;
    char **meta_keys, **meta_vals; /* __metadata__ entries, in order */
    int n_meta;
} st_file;

const char *st_dtype_name(st_dtype d);  /* "F32", ... */
size_t st_dtype_size(st_dtype d);       /* bytes per element (1 for F8) */
int st_dtype_parse(const char *s);      /* -1 if unknown */

int st_open(st_file *f, const char *path);
int st_parse(st_file *f, const void *buf, size_t len, const char *name);
void st_close(st_file *f);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key); /* NULL if absent */

/* Copy a tensor into floats, converting F32/F16/BF16/F64 and integer types. n must equal
 * the tensor's element count; returns -1 (error names file and tensor) otherwise. */
int st_read_f32(const st_file *f, const st_tensor *t, float *dst, size_t n);
/* Find by name, check the shape (ndim, dims) and the dtype (floating point: a parameter
 * stored as integers is a damaged or foreign file) and read as floats. Error messages say
 * "FILE: tensor NAME: expected shape [a, b], found [c, d]", "... missing" or "... is I16". */
int st_load_f32(const st_file *f, const char *name, float *dst, int ndim, const int64_t *shape);
/* Integer read (I32/I64/U8/...) into int32. */
int st_read_i32(const st_file *f, const st_tensor *t, int32_t *dst, size_t n);

typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
/* Adds a tensor from floats, stored as dtype (ST_F32, ST_F16 or ST_BF16). Data is copied. */
void st_writer_add_f32(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                       const float *data);
/* Adds raw bytes already in the given dtype (any dtype). */
void st_writer_add_raw(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                       const void *data);
void st_writer_meta(st_writer *w, const char *key, const char *value);
/* 1 when a tensor of that name was added (adding it again is a programming error). */
int st_writer_has(const st_writer *w, const char *name);
/* Writes atomically; returns 0 or -1 with the error set. Tensors are written in the
 * order added; the header is padded with spaces to a multiple of 8 bytes. */
int st_writer_save(st_writer *w, const char *path);
/* Serialise to memory (for tests and fuzz seeds). Caller frees *out. */
int st_writer_to_mem(st_writer *w, uint8_t **out, size_t *len);
void st_writer_free(st_writer *w);

#endif
