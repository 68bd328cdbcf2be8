/* ckpt.h - model checkpoints: parameter stores, optimizer moments and training state in
 * one safetensors file.
 *
 * A checkpoint holds one or more parameter stores ("parts"); every tensor is saved under
 * part-prefix + its registered name (e.g. "ema." + "g.0.weight"), the optimizer moments
 * (when requested) under "opt_m." / "opt_v." + that name. Metadata (string values):
 *   "format"  "t2i"
 *   "model"   the model type ("gan", "clip", "dalle", "vq", "sr", "classifier")
 *   "config"  the model's configuration as JSON (enough to rebuild the network)
 *   "state"   training state as JSON (step, RNG words, loader position, optimizer steps)
 *   plus any extra pairs the caller adds (a BPE vocabulary, ...).
 * Files are written atomically (temporary file, fsync, rename): an interrupted save
 * leaves the previous checkpoint intact.
 *
 * Loading checks every tensor of every part: a missing tensor or a shape that differs
 * is an error naming the file, the tensor and both shapes - which is what a checkpoint
 * of another architecture produces; so are NaN or infinite values and negative Adam
 * second moments (a damaged or diverged run). Values stored as F16/BF16 are widened.
 */
#ifndef T2I_CKPT_H
#define T2I_CKPT_H

#include "params.h"
#include "rng.h"
#include "safetensors.h"

typedef struct {
    nn_params *ps;
    const char *prefix;  /* "" for none */
    int moments;         /* also save/load ps->m and ps->v */
    int buffers_only;    /* load: skip trainable tensors (unused: 0) */
} nn_ckpt_part;

typedef struct {
    const char *model;
    const char *config;  /* JSON text */
    const char *state;   /* JSON text or NULL */
    const char **extra_keys, **extra_vals;
    int n_extra;
    st_dtype dtype;      /* storage type of parameter values: ST_F32, ST_F16 or ST_BF16
                          * (moments are always F32) */
} nn_ckpt_meta;

int nn_ckpt_save(const char *path, const nn_ckpt_part *parts, int nparts, const nn_ckpt_meta *meta);

/* The JSON text of j (unformatted, malloc'd: free()) and j deleted: how configs and
 * training states become checkpoint metadata. */
struct cJSON;
char *nn_json_take(struct cJSON *j);

/* Opens a checkpoint and checks that it is a t2i file of the expected model type
 * (model may be NULL to accept any). The caller reads "config" with st_meta, builds the
 * networks, then calls nn_ckpt_load_parts. */
int nn_ckpt_open(st_file *f, const char *path, const char *model);
int nn_ckpt_load_parts(const st_file *f, nn_ckpt_part *parts, int nparts);
/* For loaders that read a whole file: -1 naming the first tensor that is neither a part's
 * parameter nor its optimizer moment (more layers than the config says, another model's
 * tensor), which nn_ckpt_load_parts alone would silently ignore. */
int nn_ckpt_check_unused(const st_file *f, const nn_ckpt_part *parts, int nparts);

/* RNG state <-> JSON text: an array of six hex strings (four state words, the cached-
 * Gaussian flag and its float bits), exact where JSON numbers would round. */
void nn_rng_to_json(const t2i_rng *r, char *buf, size_t n);
int nn_rng_from_json(t2i_rng *r, const char *json);

/* Training state and model configs in checkpoint metadata, each described once as a table
 * of fields (a key, a type, where the value lives) and written, read and checked by the
 * same table:
 *     state  {"step":120, ..., "rng":[...], "train":{"lr":0.0003, ..., "seed":"1"}}
 *     config {"preset":"dcgan","res":32, ..., "d_norm":"batch"}
 * the fields in the table's order. Floats are written with the fewest digits that read back
 * to the same float (a float array: each value's exact double, as cJSON_CreateFloatArray);
 * seeds (u64) as decimal strings, exact where JSON numbers would round; enums by name
 * (NN_FIELD_ENUM: a NULL-terminated list of the names of 0, 1, ...; NN_FIELD_ACT: an nn_act
 * by nn_act_name, read by nn_act_parse). Reading requires every field: a missing one is the
 * error "<what>: 'key' missing", a mistyped one (a fraction where an int belongs, a string
 * longer than its buffer, a name not in the list) "<what>: 'key' is not <the type>"; a
 * field declared with a default (NN_F_*_DEF: options added after checkpoints were written,
 * the parts of a config written only for some models) that is absent takes its default. A field declared with a range (NN_F_*_IN:
 * lo <= value <= hi) outside it is the error "<what>: 'key' = v is outside [lo, hi]", so a
 * damaged or hand-edited checkpoint cannot resume with a batch of 0 or build a network of
 * width 0; state numbers at the top (step counters, loader positions) must not be negative.
 * Checks across fields (a width divisible by the heads, loader position <= items) stay
 * with the caller. <what> is "training state" for states and names the model for configs
 * ("GAN config"); loaders prefix the file. */
typedef enum {
    NN_FIELD_LONG, NN_FIELD_INT, NN_FIELD_FLOAT, NN_FIELD_BOOL, NN_FIELD_SEED, NN_FIELD_STR, NN_FIELD_RNG,
    NN_FIELD_ENUM, NN_FIELD_ACT, NN_FIELD_FLOATS
} nn_field_type;
typedef struct {
    const char *key;
    nn_field_type type;
    void *p;       /* LONG: long, INT/BOOL/ENUM: int, ACT: nn_act, FLOAT: float, SEED: uint64_t, STR: char[cap],
                    * RNG: t2i_rng, FLOATS: float[cap] */
    size_t cap;    /* NN_FIELD_STR: the buffer's size; NN_FIELD_FLOATS: the most values */
    int has_def;
    double def;    /* the value of an absent field when has_def (STR: "", FLOATS: none, ENUM: an index) */
    int has_range;
    double lo, hi; /* the allowed values when has_range (numbers) */
    const char *const *names; /* ENUM: the names of 0, 1, ...; STR: the allowed values (NULL: any); NULL-terminated */
    int *count;    /* NN_FIELD_FLOATS: how many values p holds */
} nn_field;
#define NN_F_LONG(k, x) {k, NN_FIELD_LONG, &(x), 0}
#define NN_F_INT(k, x) {k, NN_FIELD_INT, &(x), 0}
#define NN_F_FLOAT(k, x) {k, NN_FIELD_FLOAT, &(x), 0}
#define NN_F_BOOL(k, x) {k, NN_FIELD_BOOL, &(x), 0} /* an int */
#define NN_F_SEED(k, x) {k, NN_FIELD_SEED, &(x), 0} /* a uint64_t */
#define NN_F_STR(k, buf) {k, NN_FIELD_STR, (buf), sizeof(buf)}
#define NN_F_RNG(k, x) {k, NN_FIELD_RNG, &(x), 0}
#define NN_F_INT_DEF(k, x, d) {k, NN_FIELD_INT, &(x), 0, 1, (d)}
#define NN_F_BOOL_DEF(k, x, d) {k, NN_FIELD_BOOL, &(x), 0, 1, (d)}
#define NN_F_LONG_IN(k, x, lo, hi) {k, NN_FIELD_LONG, &(x), 0, 0, 0, 1, (lo), (hi)}
#define NN_F_INT_IN(k, x, lo, hi) {k, NN_FIELD_INT, &(x), 0, 0, 0, 1, (lo), (hi)}
#define NN_F_FLOAT_IN(k, x, lo, hi) {k, NN_FIELD_FLOAT, &(x), 0, 0, 0, 1, (lo), (hi)}
#define NN_F_INT_DEF_IN(k, x, d, lo, hi) {k, NN_FIELD_INT, &(x), 0, 1, (d), 1, (lo), (hi)}
#define NN_F_FLOAT_DEF_IN(k, x, d, lo, hi) {k, NN_FIELD_FLOAT, &(x), 0, 1, (d), 1, (lo), (hi)}
/* a string that must be one of list (a model's preset) */
#define NN_F_STR_OF(k, buf, list) {k, NN_FIELD_STR, (buf), sizeof(buf), .names = (list)}
/* a string that may be absent (then "") */
#define NN_F_STR_DEF(k, buf) {k, NN_FIELD_STR, (buf), sizeof(buf), 1}
/* an int (or a small enum type) written as list[value]; absent: list[d] */
#define NN_F_ENUM_DEF(k, x, list, d) {k, NN_FIELD_ENUM, &(x), 0, 1, (d), .names = (list)}
#define NN_F_ACT(k, x) {k, NN_FIELD_ACT, &(x), 0}
/* up to NN_NFIELDS(arr) finite floats, n of them; absent: none */
#define NN_F_FLOATS_DEF(k, arr, n) {k, NN_FIELD_FLOATS, (arr), NN_NFIELDS(arr), 1, .count = &(n)}
#define NN_NFIELDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

char *nn_state_to_json(const nn_field *state, int nstate, const nn_field *opts, int nopts);
/* The fields alone as a JSON object's text (a run's config.json shows the options; a
 * model's config). */
char *nn_fields_to_json(const nn_field *f, int n);
int nn_state_from_json(const char *json, const nn_field *state, int nstate, const nn_field *opts, int nopts);
/* Reads a JSON object's text into the fields (errors begin with what). keep_absent: an
 * absent field keeps the value it has, whatever its default (configs whose missing keys a
 * caller fills in: CLIP's metadata in other tools' files). */
int nn_fields_from_json(const char *json, const nn_field *f, int n, const char *what, int keep_absent);
/* The values the fields point to against their declarations (ranges, names, array sizes):
 * what a config built from flags is checked with before a network is built from it. */
int nn_fields_check(const nn_field *f, int n, const char *what);
/* f as a JSON number with the fewest significant digits that read back as f. */
double nn_float_json(float f);

#endif
