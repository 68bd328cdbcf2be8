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

/* Training state in checkpoint metadata, described once as a table of fields (a key, a
 * type, where the value lives) and written and read by the same table:
 *     {"step":120, ..., "rng":[...], "train":{"lr":0.0003, ..., "seed":"1"}}
 * the fields of the state at the top, the training options under "train". Floats are
 * written with the fewest digits that read back to the same float; seeds (u64) as decimal
 * strings, exact where JSON numbers would round. Reading requires every field: a missing
 * or mistyped one (or a string longer than its buffer) is the error "training state:
 * 'key' missing or bad", except that a field declared with a default (NN_F_*_DEF, for
 * options added after checkpoints were written) that is absent takes its default. Numbers
 * at the top (step counters, loader positions) must not be negative; a field declared with
 * a range (NN_F_*_IN: lo <= value <= hi) outside it is the error "training state: 'key' =
 * v is outside [lo, hi]", so a damaged or hand-edited checkpoint cannot resume with a batch
 * of 0 or a negative learning rate. Checks that need the data (loader position <= items)
 * stay with the caller. */
typedef enum { NN_FIELD_LONG, NN_FIELD_INT, NN_FIELD_FLOAT, NN_FIELD_BOOL, NN_FIELD_SEED, NN_FIELD_STR, NN_FIELD_RNG } nn_field_type;
typedef struct {
    const char *key;
    nn_field_type type;
    void *p;
    size_t cap; /* NN_FIELD_STR: the buffer's size */
    int has_def;
    double def; /* the value of an absent field when has_def */
    int has_range;
    double lo, hi; /* the allowed values when has_range (numbers) */
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
#define NN_NFIELDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

char *nn_state_to_json(const nn_field *state, int nstate, const nn_field *opts, int nopts);
/* The fields alone as a JSON object's text (a run's config.json shows the options). */
char *nn_fields_to_json(const nn_field *f, int n);
int nn_state_from_json(const char *json, const nn_field *state, int nstate, const nn_field *opts, int nopts);
/* f as a JSON number with the fewest significant digits that read back as f. */
double nn_float_json(float f);

#endif
