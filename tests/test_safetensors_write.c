/* test_safetensors_write.c - the safetensors writer (nn/safetensors_write.c) and the
 * training-state and model-config tables written with it (nn/ckpt.h).
 *
 * Reference data: tests/data/st_ref.safetensors (see test_safetensors.c). The tests check
 * that:
 *   - our F32 -> F16/BF16 conversion gives torch's bits (ties to even, subnormals,
 *     overflow, inf; NaN stays NaN - torch's BF16 NaN is 0xffff, ours keeps the payload);
 *   - the writer rebuilds the reference file byte for byte from its tensors and metadata;
 *   - round trips through a real file, scalars, empty tensors, unaligned data;
 *   - a failed save (missing folder, write error mid-file, rename onto a folder) keeps the
 *     old file and leaves no temporary file.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "base.h"
#include "ckpt.h"
#include "ops.h"
#include "rng.h"
#include "safetensors.h"
#include "testutil.h"

static uint8_t *file_bytes(const char *path, size_t *len) {
    char *s = t2i_read_file(path, len, 0);
    assert_non_null(s);
    return (uint8_t *)s;
}

/* Our F32 -> F16/BF16 conversion through the writer gives torch's bits. */
static void test_conversion_matches_torch(void **state) {
    (void)state;
    char *path = tu_path("data/st_ref.safetensors");
    st_file ref;
    assert_int_equal(st_open(&ref, path), 0);
    size_t n;
    float *src = tu_st_read_f32(&ref, "src", &n);
    assert_true(n > 70);
    st_writer *w = st_writer_new();
    int64_t shape[1] = {(int64_t)n};
    st_writer_add_f32(w, "h", ST_F16, 1, shape, src);
    st_writer_add_f32(w, "b", ST_BF16, 1, shape, src);
    st_writer_add_f32(w, "f", ST_F32, 1, shape, src);
    uint8_t *mem;
    size_t len;
    assert_int_equal(st_writer_to_mem(w, &mem, &len), 0);
    st_file ours;
    assert_int_equal(st_parse(&ours, mem, len, "mem"), 0);
    const st_tensor *th = st_find(&ref, "src_f16"), *tb = st_find(&ref, "src_bf16");
    const st_tensor *oh = st_find(&ours, "h"), *ob = st_find(&ours, "b"), *of = st_find(&ours, "f");
    int nan_seen = 0, inf_seen = 0, sub_seen = 0, tie_seen = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t a, b;
        memcpy(&a, oh->data + 2 * i, 2);
        memcpy(&b, th->data + 2 * i, 2);
        if (a != b) fail_msg("F16 of %a (%08x): ours %04x, torch %04x", (double)src[i], tu_f32_bits(src[i]), a, b);
        memcpy(&a, ob->data + 2 * i, 2);
        memcpy(&b, tb->data + 2 * i, 2);
        if (isnan(src[i])) {
            /* torch writes 0xffff for every NaN; any NaN pattern is acceptable */
            assert_true((a & 0x7f80) == 0x7f80 && (a & 0x7f) != 0);
            nan_seen++;
        } else if (a != b) {
            fail_msg("BF16 of %a (%08x): ours %04x, torch %04x", (double)src[i], tu_f32_bits(src[i]), a, b);
        }
        if (isinf(src[i])) inf_seen++;
        if (src[i] != 0 && fabsf(src[i]) < 6.1e-5f) sub_seen++;
        if (src[i] == 1.0f + 0x1p-11f || src[i] == 1.0f + 0x1p-8f) tie_seen++;
    }
    /* the reference really contains the hard cases */
    assert_true(nan_seen >= 2 && inf_seen >= 2 && sub_seen >= 8 && tie_seen >= 2);
    assert_memory_equal(of->data, st_find(&ref, "src")->data, n * 4);
    st_close(&ours);
    free(mem);
    st_writer_free(w);
    free(src);
    st_close(&ref);
    free(path);
}

/* The writer rebuilds the torch-script file byte for byte (header format, escaping,
 * padding, offsets, order). */
static void test_writer_matches_reference_bytes(void **state) {
    (void)state;
    char *path = tu_path("data/st_ref.safetensors");
    size_t flen;
    char *file = t2i_read_file(path, &flen, 1 << 20);
    assert_non_null(file);
    st_file ref;
    assert_int_equal(st_parse(&ref, file, flen, path), 0);
    st_writer *w = st_writer_new();
    for (int i = 0; i < ref.n_meta; i++) st_writer_meta(w, ref.meta_keys[i], ref.meta_vals[i]);
    for (int i = 0; i < ref.n; i++)
        st_writer_add_raw(w, ref.t[i].name, ref.t[i].dtype, ref.t[i].ndim, ref.t[i].shape, ref.t[i].data);
    uint8_t *mem;
    size_t len;
    assert_int_equal(st_writer_to_mem(w, &mem, &len), 0);
    assert_int_equal(len, flen);
    assert_memory_equal(mem, file, len);
    free(mem);
    st_writer_free(w);
    st_close(&ref);
    free(file);
    free(path);
}

static void test_round_trip_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *path = t2i_asprintf("%s/model.safetensors", dir);
    t2i_rng rng;
    t2i_rng_seed(&rng, 7);
    float a[6 * 5], b[7], half_exact[9] = {0, -0.0f, 1, -2, 0.5f, 65504, 0x1p-24f, -0x1p-14f, 1.5f};
    t2i_rng_fill_normal(&rng, a, 30, 0, 3);
    t2i_rng_fill_normal(&rng, b, 7, 0, 1e-3f);
    float scalar = -7.25f;
    st_writer *w = st_writer_new();
    st_writer_meta(w, "config", "{\"dim\": 64}");
    st_writer_meta(w, "step", "1");
    st_writer_meta(w, "step", "200"); /* replaces */
    st_writer_add_f32(w, "layer.w", ST_F32, 2, (const int64_t[]){6, 5}, a);
    st_writer_add_f32(w, "layer.b", ST_BF16, 1, (const int64_t[]){7}, b);
    st_writer_add_f32(w, "exact16", ST_F16, 1, (const int64_t[]){9}, half_exact);
    st_writer_add_f32(w, "scalar", ST_F32, 0, NULL, &scalar);
    st_writer_add_f32(w, "none", ST_F32, 3, (const int64_t[]){2, 0, 4}, NULL);
    const uint8_t u8[3] = {1, 200, 0};
    st_writer_add_raw(w, "u8", ST_U8, 1, (const int64_t[]){3}, u8);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
    assert_int_equal(tu_count_tmp(dir), 0);

    st_file f;
    assert_int_equal(st_open(&f, path), 0);
    assert_int_equal(f.n, 6);
    assert_string_equal(f.t[1].name, "layer.b"); /* insertion order kept */
    assert_int_equal(f.n_meta, 2);
    assert_string_equal(st_meta(&f, "step"), "200");
    assert_string_equal(st_meta(&f, "config"), "{\"dim\": 64}");
    /* data block starts 8-byte aligned; tensors are packed */
    assert_int_equal((size_t)(f.data - (const uint8_t *)f.map) % 8, 0);
    assert_int_equal(f.t[0].begin, 0);
    assert_int_equal(f.t[1].begin, 120);
    assert_int_equal(f.data_len, 120 + 14 + 18 + 4 + 0 + 3);
    float got[30];
    assert_int_equal(st_load_f32(&f, "layer.w", got, 2, (const int64_t[]){6, 5}), 0);
    assert_memory_equal(got, a, sizeof a);
    assert_int_equal(st_load_f32(&f, "layer.b", got, 1, (const int64_t[]){7}), 0);
    for (int i = 0; i < 7; i++) {
        assert_true(got[i] == t2i_bf16_to_f32(t2i_f32_to_bf16(b[i])));
        assert_true(fabsf(got[i] - b[i]) <= fabsf(b[i]) * 0x1p-8f);
    }
    assert_int_equal(st_load_f32(&f, "exact16", got, 1, (const int64_t[]){9}), 0);
    for (int i = 0; i < 9; i++) assert_true(tu_f32_bits(got[i]) == tu_f32_bits(half_exact[i]));
    assert_int_equal(st_load_f32(&f, "scalar", got, 0, NULL), 0);
    assert_true(got[0] == -7.25f);
    assert_int_equal(st_find(&f, "none")->numel, 0);
    int32_t iv[3];
    assert_int_equal(st_read_i32(&f, st_find(&f, "u8"), iv, 3), 0);
    assert_true(iv[0] == 1 && iv[1] == 200 && iv[2] == 0);
    st_close(&f);

    /* overwriting an existing file works too */
    w = st_writer_new();
    st_writer_add_f32(w, "x", ST_F32, 1, (const int64_t[]){1}, &scalar);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
    assert_int_equal(st_open(&f, path), 0);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.n_meta, 0);
    st_close(&f);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* Training state tables: every type round-trips exactly (floats, u64 seeds beyond 2^53,
 * RNG streams mid-Gaussian-pair), and damaged states are refused by name: negative
 * counters, options outside their declared ranges. */
static void test_state_fields(void **state) {
    (void)state;
    struct {
        long step;
        int pos, flag;
        float lr;
        uint64_t seed;
        char data[16];
        t2i_rng rng;
    } a = {123456789012L, 7, 1, 3e-4f, 18446744073709551557ull, "fc:train", {{0}}}, b;
    t2i_rng_seed(&a.rng, 99);
    (void)t2i_rng_normal(&a.rng); /* leaves the second Gaussian of the pair cached */
    memset(&b, 0, sizeof b);
#define FIELDS(x)                                                                                    \
    nn_field sf[] = {NN_F_LONG("step", (x).step), NN_F_INT("pos", (x).pos), NN_F_RNG("rng", (x).rng)}; \
    nn_field of[] = {NN_F_FLOAT("lr", (x).lr), NN_F_BOOL("flag", (x).flag), NN_F_SEED("seed", (x).seed), \
                     NN_F_STR("data", (x).data)}
    char *js;
    {
        FIELDS(a);
        js = nn_state_to_json(sf, NN_NFIELDS(sf), of, NN_NFIELDS(of));
    }
    /* not assert_non_null: gcc must see js is not NULL below, and cmocka's failure
     * does not return as far as gcc knows (the UBSan build warns otherwise) */
    T2I_ASSERT(js != NULL);
    assert_non_null(strstr(js, "\"lr\":0.0003,"));  /* the shortest decimal, not 0.000300000014 */
    assert_non_null(strstr(js, "\"seed\":\"18446744073709551557\""));
    {
        FIELDS(b);
        assert_int_equal(nn_state_from_json(js, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)), 0);
        assert_int_equal(b.step, a.step);
        assert_int_equal(b.pos, a.pos);
        assert_int_equal(b.flag, 1);
        assert_true(b.lr == a.lr);
        assert_true(b.seed == a.seed);
        assert_string_equal(b.data, a.data);
        assert_true(t2i_rng_normal(&b.rng) == t2i_rng_normal(&a.rng)); /* the cached Gaussian */
        assert_true(t2i_rng_u64(&b.rng) == t2i_rng_u64(&a.rng));
        /* damaged states: a missing key, a fraction where an int belongs, a negative counter,
         * a string too long for its buffer, a bad seed, no options, not JSON */
        const char *bad[][2] = {
            {"\"step\":123456789012,", "'step'"},
            {"\"pos\":7", "\"pos\":2.5"},
            {"\"pos\":7", "\"pos\":-7"},
            {"\"data\":\"fc:train\"", "\"data\":\"0123456789abcdef\""},
            {"\"seed\":\"18446744073709551557\"", "\"seed\":\"12x\""},
            {"\"flag\":true", "\"flag\":1"},
        };
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            char *p = strstr(js, bad[k][0]);
            assert_non_null(p);
            const char *rep = k == 0 ? "" : bad[k][1];
            char *d = t2i_asprintf("%.*s%s%s", (int)(p - js), js, rep, p + strlen(bad[k][0]));
            assert_int_equal(nn_state_from_json(d, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)), -1);
            assert_non_null(strstr(t2i_error_msg(), "training state"));
            free(d);
        }
        /* found by fuzz_ckpt_json: an RNG flag other than 0/1 (written back in decimal, read in
         * hex) and a cached Gaussian that is not finite */
        t2i_rng r;
        assert_int_equal(nn_rng_from_json(&r, "[\"1\",\"2\",\"3\",\"4\",\"1\",\"3f800000\"]"), 0);
        assert_int_equal(nn_rng_from_json(&r, "[\"1\",\"2\",\"3\",\"4\",\"11\",\"3f800000\"]"), -1);
        assert_string_equal(t2i_error_msg(), "RNG state entry 4 is not 0 or 1");
        assert_int_equal(nn_rng_from_json(&r, "[\"1\",\"2\",\"3\",\"4\",\"1\",\"7fc00000\"]"), -1);
        assert_string_equal(t2i_error_msg(), "RNG state entry 5 is not a finite float");
        /* a field added later, with a default: absent -> the default; present -> read;
         * present but mistyped -> still an error */
        int added = 5, added_flag = 1;
        nn_field of2[] = {NN_F_FLOAT("lr", b.lr), NN_F_INT_DEF("added", added, 2), NN_F_BOOL_DEF("added_flag", added_flag, 0)};
        assert_int_equal(nn_state_from_json(js, sf, NN_NFIELDS(sf), of2, NN_NFIELDS(of2)), 0);
        assert_int_equal(added, 2);
        assert_int_equal(added_flag, 0);
        char *with = t2i_asprintf("%.*s,\"added\":7,\"added_flag\":true}}", (int)(strlen(js) - 2), js);
        assert_int_equal(nn_state_from_json(with, sf, NN_NFIELDS(sf), of2, NN_NFIELDS(of2)), 0);
        assert_int_equal(added, 7);
        assert_int_equal(added_flag, 1);
        free(with);
        with = t2i_asprintf("%.*s,\"added\":\"x\"}}", (int)(strlen(js) - 2), js);
        assert_int_equal(nn_state_from_json(with, sf, NN_NFIELDS(sf), of2, NN_NFIELDS(of2)), -1);
        free(with);
        /* declared ranges: the ends are inside, beyond them is an error naming the key and
         * the range; an absent field with a default takes it */
        float lr = 0;
        nn_field of3[] = {NN_F_FLOAT_IN("lr", lr, 1e-4, 1e-3), NN_F_INT_DEF_IN("added", added, 2, 1, 4)};
        assert_int_equal(nn_state_from_json(js, sf, NN_NFIELDS(sf), of3, NN_NFIELDS(of3)), 0);
        assert_true(lr == 3e-4f);
        assert_int_equal(added, 2);
        const char *ranged[][2] = {{"4", NULL}, {"1", NULL}, {"5", "'added' = 5 is outside [1, 4]"},
                                   {"0", "'added' = 0 is outside [1, 4]"}, {"-3", "'added' = -3 is outside [1, 4]"}};
        for (size_t k = 0; k < sizeof ranged / sizeof ranged[0]; k++) {
            with = t2i_asprintf("%.*s,\"added\":%s}}", (int)(strlen(js) - 2), js, ranged[k][0]);
            int rc = nn_state_from_json(with, sf, NN_NFIELDS(sf), of3, NN_NFIELDS(of3));
            if (ranged[k][1]) {
                assert_int_equal(rc, -1);
                assert_non_null(strstr(t2i_error_msg(), ranged[k][1]));
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(added, atoi(ranged[k][0]));
            }
            free(with);
        }
        nn_field of4[] = {NN_F_FLOAT_IN("lr", lr, 1e-2, 1)};
        assert_int_equal(nn_state_from_json(js, sf, NN_NFIELDS(sf), of4, NN_NFIELDS(of4)), -1);
        assert_non_null(strstr(t2i_error_msg(), "'lr' = 0.0003 is outside [0.01, 1]"));
        assert_int_equal(nn_state_from_json("{\"step\":1}", sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)), -1);
        assert_int_equal(nn_state_from_json("not json", sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)), -1);
        assert_int_equal(nn_state_from_json(NULL, sf, NN_NFIELDS(sf), of, NN_NFIELDS(of)), -1);
    }
#undef FIELDS
    free(js);
}

static const char *const cfg_presets[] = {"small", "large", NULL};
static const char *const cfg_norms[] = {"batch", "none", "layer", NULL};
typedef struct {
    char preset[8], path[16];
    int width, norm, n;
    nn_act act;
    float eps, probe[3];
} cfg_t;
#define CFG_FIELDS(c)                                                                              \
    nn_field cf[] = {NN_F_STR_OF("preset", (c).preset, cfg_presets), NN_F_INT_IN("width", (c).width, 1, 64), \
                     NN_F_ENUM_DEF("norm", (c).norm, cfg_norms, 1),   NN_F_ACT("act", (c).act),               \
                     NN_F_FLOAT_IN("eps", (c).eps, 0, 1),              NN_F_STR_DEF("path", (c).path),         \
                     NN_F_FLOATS_DEF("probe", (c).probe, (c).n)}

static void test_config_fields(void **state) {
    (void)state;
    cfg_t a = {"large", "a/b.txt", 48, 2, 3, NN_ACT_QUICK_GELU, 1e-5f, {0.1f, -2.5f, 1.0f / 3}}, b;
    char *js;
    {
        CFG_FIELDS(a);
        assert_int_equal(nn_fields_check(cf, NN_NFIELDS(cf), "test config"), 0);
        js = nn_fields_to_json(cf, NN_NFIELDS(cf));
    }
    assert_string_equal(js, "{\"preset\":\"large\",\"width\":48,\"norm\":\"layer\",\"act\":\"quick_gelu\",\"eps\":1e-05,"
                            "\"path\":\"a/b.txt\",\"probe\":[0.10000000149011612,-2.5,0.3333333432674408]}");
    memset(&b, 0, sizeof b);
    CFG_FIELDS(b);
    assert_int_equal(nn_fields_from_json(js, cf, NN_NFIELDS(cf), "test config", 0), 0);
    assert_memory_equal(&a, &b, sizeof a);
    /* absent optional fields take their defaults */
    assert_int_equal(nn_fields_from_json("{\"preset\":\"small\",\"width\":1,\"act\":\"relu\",\"eps\":0}", cf,
                                         NN_NFIELDS(cf), "test config", 0),
                     0);
    assert_int_equal(b.norm, 1);
    assert_string_equal(b.path, "");
    assert_int_equal(b.n, 0);
    /* keep_absent: only the keys present change */
    b.width = 7;
    assert_int_equal(nn_fields_from_json("{\"eps\":0.5}", cf, NN_NFIELDS(cf), "test config", 1), 0);
    assert_int_equal(b.width, 7);
    assert_true(b.eps == 0.5f);
    const char *bad[][3] = {
        {"\"width\":48,", "", "test config: 'width' missing"},
        {"\"width\":48", "\"width\":48.5", "'width' is not an integer"},
        {"\"width\":48", "\"width\":65", "'width' = 65 is outside [1, 64]"},
        {"\"width\":48", "\"width\":\"48\"", "'width' is not an integer"},
        /* found by fuzz_ckpt_json: outside long long, the whole-number test itself was undefined */
        {"\"width\":48", "\"width\":-9.0072e+22", "'width' is not an integer"},
        {"\"width\":48", "\"width\":1e300", "'width' is not an integer"},
        {"\"preset\":\"large\"", "\"preset\":\"huge\"", "'preset' is 'huge', not small or large"},
        /* found by fuzz_ckpt_json: the value is shown escaped, so the message stays one line */
        {"\"preset\":\"large\"", "\"preset\":\"a\\nb\"", "'preset' is 'a\\x0ab', not small or large"},
        {"\"preset\":\"large\",", "", "'preset' missing"},
        {"\"norm\":\"layer\"", "\"norm\":\"group\"", "'norm' is not one of its names"},
        {"\"act\":\"quick_gelu\"", "\"act\":\"swish\"", "'act' is not an activation's name"},
        {"\"act\":\"quick_gelu\",", "", "'act' missing"},
        {"\"eps\":1e-05", "\"eps\":-1", "'eps' = -1 is outside [0, 1]"},
        {"\"eps\":1e-05", "\"eps\":true", "'eps' is not a number"},
        /* found by fuzz_ckpt_json: a float field of no range took inf, then wrote it as null */
        {"\"eps\":1e-05", "\"eps\":-1e45", "'eps' is not a number within float range"},
        {"\"path\":\"a/b.txt\"", "\"path\":\"0123456789abcdef\"", "'path' is not a string that fits its buffer"},
        {"0.3333333432674408]", "0.3333333432674408,4]", "'probe' is not an array of numbers that fits"},
        {"-2.5", "\"x\"", "'probe' is not an array of numbers"},
        {"-2.5", "1e300", "'probe'[1] is not a finite number"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char *p = strstr(js, bad[k][0]);
        assert_non_null(p);
        char *d = t2i_asprintf("%.*s%s%s", (int)(p - js), js, bad[k][1], p + strlen(bad[k][0]));
        assert_int_equal(nn_fields_from_json(d, cf, NN_NFIELDS(cf), "test config", 0), -1);
        if (!strstr(t2i_error_msg(), bad[k][2])) fail_msg("%s: got \"%s\", want \"%s\"", d, t2i_error_msg(), bad[k][2]);
        free(d);
    }
    assert_int_equal(nn_fields_from_json("[1]", cf, NN_NFIELDS(cf), "test config", 0), -1);
    assert_string_equal(t2i_error_msg(), "test config is not a JSON object");
    /* the same declarations on values in memory */
    b = a, b.width = 0;
    assert_int_equal(nn_fields_check(cf, NN_NFIELDS(cf), "test config"), -1);
    assert_non_null(strstr(t2i_error_msg(), "'width' = 0 is outside [1, 64]"));
    b = a, b.norm = 3;
    assert_int_equal(nn_fields_check(cf, NN_NFIELDS(cf), "test config"), -1);
    assert_non_null(strstr(t2i_error_msg(), "'norm' = 3 names no value"));
    b = a, b.act = (nn_act)99;
    assert_int_equal(nn_fields_check(cf, NN_NFIELDS(cf), "test config"), -1);
    assert_non_null(strstr(t2i_error_msg(), "'act' = 99 is not an activation"));
    b = a, strcpy(b.preset, "tiny");
    assert_int_equal(nn_fields_check(cf, NN_NFIELDS(cf), "test config"), -1);
    assert_non_null(strstr(t2i_error_msg(), "'preset' is 'tiny', not small or large"));
    b = a, b.n = 4;
    assert_int_equal(nn_fields_check(cf, NN_NFIELDS(cf), "test config"), -1);
    assert_non_null(strstr(t2i_error_msg(), "'probe' has 4 values, at most 3 fit"));
    free(js);
}
#undef CFG_FIELDS

static void test_failed_save_keeps_old_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    char *path = t2i_asprintf("%s/ck.safetensors", dir);
    float small[4] = {1, 2, 3, 4};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "w", ST_F32, 1, (const int64_t[]){4}, small);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
    size_t old_len;
    uint8_t *old = file_bytes(path, &old_len);

    /* 1. the folder does not exist */
    char *missing = t2i_asprintf("%s/no/such/dir/ck.safetensors", dir);
    w = st_writer_new();
    st_writer_add_f32(w, "w", ST_F32, 1, (const int64_t[]){4}, small);
    assert_int_equal(st_writer_save(w, missing), -1);
    assert_non_null(strstr(t2i_error_msg(), missing));
    assert_non_null(strstr(t2i_error_msg(), "cannot create"));
    st_writer_free(w);
    free(missing);

    /* 2. a write fails half-way (file size limit -> EFBIG): the old file survives */
    size_t nbig = 1 << 16;
    float *big = t2i_calloc(nbig, sizeof(float));
    w = st_writer_new();
    st_writer_add_f32(w, "w", ST_F32, 1, (const int64_t[]){(int64_t)nbig}, big);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = 4096;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = st_writer_save(w, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, oldsig);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(t2i_error_msg(), "write failed"));
    assert_non_null(strstr(t2i_error_msg(), path));

    /* 3. strings that are not UTF-8 are refused before anything is written */
    st_writer_meta(w, "bad", "\xff\xfe");
    assert_int_equal(st_writer_save(w, path), -1);
    assert_non_null(strstr(t2i_error_msg(), "UTF-8"));
    uint8_t *m;
    size_t ml;
    assert_int_equal(st_writer_to_mem(w, &m, &ml), -1);
    assert_null(m);
    st_writer_free(w);
    free(big);
    size_t now_len;
    uint8_t *now = file_bytes(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);

    /* 4. the target is a folder: refused before anything is written (a rename would fail) */
    char *sub = t2i_asprintf("%s/folder.safetensors", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    w = st_writer_new();
    st_writer_add_f32(w, "w", ST_F32, 1, (const int64_t[]){4}, small);
    assert_int_equal(st_writer_save(w, sub), -1);
    assert_non_null(strstr(t2i_error_msg(), "is not a regular file (a folder)"));
    assert_true(t2i_is_dir(sub));

    /* 5. a read-only folder (root ignores permissions: skipped then) */
    if (geteuid() != 0) {
        char *ro = t2i_asprintf("%s/ro", dir);
        char *rop = t2i_asprintf("%s/ro/ck.safetensors", dir);
        assert_int_equal(mkdir(ro, 0755), 0);
        assert_int_equal(t2i_write_file_atomic(rop, old, old_len), 0);
        assert_int_equal(chmod(ro, 0555), 0);
        assert_int_equal(st_writer_save(w, rop), -1);
        assert_int_equal(tu_count_tmp(ro), 0);
        assert_int_equal(chmod(ro, 0755), 0);
        size_t l2;
        uint8_t *again = file_bytes(rop, &l2);
        assert_memory_equal(again, old, old_len);
        free(again);
        free(ro);
        free(rop);
    }
    /* 6. a pipe is refused, not replaced; a symbolic link is written through and stays a link */
    char *fifo = t2i_asprintf("%s/pipe.safetensors", dir), *link = t2i_asprintf("%s/link.safetensors", dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(st_writer_save(w, fifo), -1);
    assert_non_null(strstr(t2i_error_msg(), "not a regular file (a device, pipe or socket)"));
    struct stat sb;
    assert_int_equal(lstat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    char *target = t2i_asprintf("%s/target.safetensors", dir);
    assert_int_equal(t2i_write_file_atomic(target, "x", 1), 0);
    assert_int_equal(symlink("target.safetensors", link), 0);
    assert_int_equal(st_writer_save(w, link), 0);
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    st_file fl;
    assert_int_equal(st_open(&fl, target), 0);
    assert_int_equal(st_find(&fl, "w")->numel, 4);
    st_close(&fl);
    assert_int_equal(unlink(link), 0);
    assert_int_equal(symlink("missing/x.safetensors", link), 0);
    assert_int_equal(st_writer_save(w, link), -1);
    assert_non_null(strstr(t2i_error_msg(), "symbolic link to a missing file"));
    unlink(link), unlink(fifo), unlink(target);
    free(fifo), free(link), free(target);
    st_writer_free(w);
    free(sub);

    assert_int_equal(tu_count_tmp(dir), 0);
    st_file f;
    assert_int_equal(st_open(&f, path), 0); /* still the old, valid file */
    assert_int_equal(st_find(&f, "w")->numel, 4);
    st_close(&f);
    free(old);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversion_matches_torch),
        cmocka_unit_test(test_writer_matches_reference_bytes),
        cmocka_unit_test(test_round_trip_file),
        cmocka_unit_test(test_failed_save_keeps_old_file),
        cmocka_unit_test(test_state_fields),
        cmocka_unit_test(test_config_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
