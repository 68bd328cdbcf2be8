/* fuzz_ckpt_json.c - libFuzzer target for the JSON a checkpoint's metadata carries: the
 * training state and the model configs (nn/ckpt.c nn_state_from_json and
 * nn_fields_from_json, and each model's config reader on top of them).
 *
 * The first byte of an input picks the reader, the rest is the JSON text (made
 * NUL-terminated, as st_meta hands it over):
 *   0  nn_state_from_json with a trainer's tables (the GAN trainer's: longs, an RNG, an
 *      int, strings, ranged floats, bools, a seed)
 *   1  nn_fields_from_json with a table holding every field type, defaults and ranges
 *   2  gan_config_from_json   3  sr_config_from_json   4  dalle_config_from_json
 *   5  vq_config_from_json    6  clip_config_from_json + clip_config_check
 * A refused text must leave one line of error; an accepted one must survive a round trip:
 * written back to JSON, read again and written again, the two texts are identical (what
 * resuming from a checkpoint relies on). Violations stop with __builtin_trap.
 * Build and run: tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ckpt.h"
#include "clip.h"
#include "dalle.h"
#include "gan.h"
#include "optim.h"
#include "sr.h"
#include "vq.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static void check_error(void) {
    check(strchr(t2i_error_msg(), '\n') == NULL && t2i_error_msg()[0] != 0);
}

/* Text -> values -> text -> values -> text: both texts the same. */
static void same_text(char *a, char *b) {
    check(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
}

/* ---- 0: a trainer's state (gan/train.c's tables) ---- */
typedef struct {
    long step, target, epoch, opt_g, opt_d, ema_start;
    int pos, n_critic, batch, flip, cond;
    t2i_rng rng;
    char data[4096], loss[32];
    float lr_g, lr_d, beta1, beta2, smooth, ema, mismatch;
    uint64_t seed;
} state_vals;

#define STATE_TABLES(s)                                                                                    \
    nn_field sf[] = {NN_F_LONG("step", (s)->step),       NN_F_LONG("target", (s)->target),                 \
                     NN_F_RNG("rng", (s)->rng),          NN_F_LONG("loader_epoch", (s)->epoch),            \
                     NN_F_INT("loader_pos", (s)->pos),   NN_F_LONG("opt_g_step", (s)->opt_g),              \
                     NN_F_LONG("opt_d_step", (s)->opt_d)};                                                 \
    nn_field of[] = {NN_F_STR("data", (s)->data),                                                          \
                     NN_F_STR("loss", (s)->loss),                                                          \
                     NN_F_FLOAT_IN("lr_g", (s)->lr_g, NN_LR_MIN, NN_LR_MAX),                               \
                     NN_F_FLOAT_IN("lr_d", (s)->lr_d, NN_LR_MIN, NN_LR_MAX),                               \
                     NN_F_FLOAT_IN("beta1", (s)->beta1, 0, NN_BETA1_MAX),                                  \
                     NN_F_FLOAT_IN("beta2", (s)->beta2, 0, NN_BETA2_MAX),                                  \
                     NN_F_INT_IN("n_critic", (s)->n_critic, 1, 20),                                        \
                     NN_F_FLOAT_IN("label_smooth", (s)->smooth, 0.5, 1),                                   \
                     NN_F_FLOAT_IN("ema", (s)->ema, 0, 0.99999),                                           \
                     NN_F_LONG_IN("ema_start", (s)->ema_start, -1e15, 1e15),                               \
                     NN_F_FLOAT_IN("mismatch", (s)->mismatch, 0, 10),                                      \
                     NN_F_INT_IN("batch", (s)->batch, 2, 4096),                                            \
                     NN_F_BOOL("flip", (s)->flip),                                                         \
                     NN_F_BOOL("cond_classes", (s)->cond),                                                 \
                     NN_F_SEED("seed", (s)->seed)}

static char *state_read_write(const char *json) {
    state_vals s;
    memset(&s, 0, sizeof s);
    STATE_TABLES(&s);
    if (nn_state_from_json(json, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)) != 0) return NULL;
    return nn_state_to_json(sf, NN_NFIELDS(sf), of, NN_NFIELDS(of));
}

/* ---- 1: every field type ---- */
static const char *const kinds[] = {"none", "some", "all", NULL};
typedef struct {
    long l;
    int i, idef, irange, b, bdef, e, n;
    nn_act act;
    float f, frange, fdef, v[8];
    uint64_t seed;
    t2i_rng rng;
    char s[16], sdef[8], sof[8];
} every_vals;

#define EVERY_TABLE(x)                                                                                     \
    nn_field t[] = {NN_F_LONG("l", (x)->l),                NN_F_INT("i", (x)->i),                          \
                    NN_F_INT_DEF("idef", (x)->idef, 7),    NN_F_INT_IN("irange", (x)->irange, -3, 1000),   \
                    NN_F_BOOL("b", (x)->b),                NN_F_BOOL_DEF("bdef", (x)->bdef, 1),            \
                    NN_F_ENUM_DEF("e", (x)->e, kinds, 1),  NN_F_ACT("act", (x)->act),                      \
                    NN_F_FLOAT("f", (x)->f),               NN_F_FLOAT_IN("frange", (x)->frange, 1e-6, 2),  \
                    NN_F_FLOAT_DEF_IN("fdef", (x)->fdef, 0.5, 0, 1),                                       \
                    NN_F_FLOATS_DEF("v", (x)->v, (x)->n),  NN_F_SEED("seed", (x)->seed),                   \
                    NN_F_RNG("rng", (x)->rng),             NN_F_STR("s", (x)->s),                          \
                    NN_F_STR_DEF("sdef", (x)->sdef),       NN_F_STR_OF("sof", (x)->sof, kinds)}

static char *every_read_write(const char *json) {
    every_vals x;
    memset(&x, 0, sizeof x);
    EVERY_TABLE(&x);
    if (nn_fields_from_json(json, t, NN_NFIELDS(t), "fuzz config", 0) != 0) return NULL;
    check(nn_fields_check(t, NN_NFIELDS(t), "fuzz config") == 0);
    return nn_fields_to_json(t, NN_NFIELDS(t));
}

/* ---- 2-6: the models' config readers ---- */
static char *gan_read_write(const char *json) {
    gan_config c;
    if (gan_config_from_json(&c, json) != 0) return NULL;
    check(gan_config_check(&c) == 0);
    return gan_config_to_json(&c);
}

static char *sr_read_write(const char *json) {
    sr_config c;
    if (sr_config_from_json(&c, json) != 0) return NULL;
    check(sr_config_check(&c) == 0);
    return sr_config_to_json(&c);
}

static char *dalle_read_write(const char *json) {
    dalle_config c;
    if (dalle_config_from_json(&c, json) != 0) return NULL;
    check(dalle_config_check(&c) == 0);
    return dalle_config_to_json(&c);
}

static char *vq_read_write(const char *json) {
    vq_config c;
    if (vq_config_from_json(&c, json) != 0) return NULL;
    check(vq_config_check(&c) == 0);
    return vq_config_to_json(&c);
}

static char *clip_read_write(const char *json) {
    clip_config c; /* as the loaders do: defaults, then the file's keys, then the checks */
    clip_config_default(&c);
    if (clip_config_from_json(&c, json) != 0 || clip_config_check(&c) != 0) return NULL;
    return clip_config_to_json(&c);
}

static char *(*const readers[])(const char *) = {state_read_write, every_read_write, gan_read_write, sr_read_write,
                                                 dalle_read_write, vq_read_write,    clip_read_write};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t nreaders = sizeof readers / sizeof readers[0];
    char *(*rw)(const char *) = readers[data[0] % nreaders];
    char *json = t2i_malloc(size); /* size - 1 bytes of text and a NUL */
    memcpy(json, data + 1, size - 1);
    json[size - 1] = 0;
    char *once = rw(json);
    free(json);
    if (!once) {
        check_error();
        return 0;
    }
    char *twice = rw(once);
    same_text(once, twice);
    return 0;
}
