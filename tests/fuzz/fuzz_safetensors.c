/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (nn/safetensors.c).
 *
 * Each input is a whole file: st_parse validates it; when it is accepted, every tensor is
 * decoded with st_read_f32 (and st_read_i32 for integer dtypes) into a buffer of exactly
 * its element count, looked up again by name, and the metadata is queried, so ASan/UBSan
 * see every byte the reader touches. Any accepted file must satisfy the invariants the
 * callers rely on, checked with __builtin_trap.
 *
 * Mutations that insert or delete header bytes leave the 8-byte length prefix stale, so
 * most mutants would die at "not valid JSON"/"trailing data". Each input is therefore also
 * tried a second time with the prefix rewritten to end the header at the last '}', which
 * keeps the fuzzer exploring the validation of entries, shapes, offsets and metadata.
 * Build and run: tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "safetensors.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static void run(const uint8_t *data, size_t size) {
    st_file f;
    if (st_parse(&f, data, size, "fuzz") != 0) {
        /* a rejected file leaves nothing to free, and one line naming the input */
        const char *msg = t2i_error_msg();
        check(f.t == NULL && f.path == NULL && f.n == 0);
        check(strncmp(msg, "fuzz: ", 6) == 0 && strchr(msg, '\n') == NULL);
        st_close(&f);
        return;
    }
    check(f.data_len <= size);
    for (int i = 0; i < f.n; i++) {
        const st_tensor *t = &f.t[i];
        check(t->begin <= t->end && t->end <= f.data_len);
        check(t->end - t->begin == t->numel * st_dtype_size(t->dtype));
        check(st_find(&f, t->name) == t);
        float *x = t2i_malloc((t->numel ? t->numel : 1) * sizeof(float));
        check(st_read_f32(&f, t, x, t->numel) == 0);
        check(st_read_f32(&f, t, x, t->numel + 1) == -1);
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64 &&
            t->dtype != ST_F8_E4M3 && t->dtype != ST_F8_E5M2) {
            int32_t *v = t2i_malloc((t->numel ? t->numel : 1) * sizeof(int32_t));
            (void)st_read_i32(&f, t, v, t->numel); /* may refuse values outside int32 */
            free(v);
        }
        if (t->ndim > 0) { /* a wrong shape is refused */
            int64_t shape[ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            shape[0]++;
            check(st_load_f32(&f, t->name, x, t->ndim, shape) == -1);
        }
        free(x);
    }
    for (int i = 0; i < f.n_meta; i++) check(st_meta(&f, f.meta_keys[i]) != NULL);
    st_close(&f);
    check(f.t == NULL && f.map == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run(data, size);
    if (size <= 8) return 0;
    const uint8_t *brace = NULL;
    for (size_t i = size; i > 8 && !brace; i--)
        if (data[i - 1] == '}') brace = &data[i - 1];
    if (!brace) return 0;
    uint64_t hlen = (uint64_t)(brace - data) - 7, old = 0;
    for (int k = 0; k < 8; k++) old |= (uint64_t)data[k] << (8 * k);
    if (hlen == old) return 0;
    /* a fresh heap copy, so ASan still catches reads past its end */
    uint8_t *copy = t2i_malloc(size);
    memcpy(copy, data, size);
    for (int k = 0; k < 8; k++) copy[k] = (uint8_t)(hlen >> (8 * k));
    run(copy, size);
    free(copy);
    return 0;
}
