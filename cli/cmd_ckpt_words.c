/* cmd_ckpt_words.c - `t2i ckpt words`: stamp the word set of a dataset's captions into a
 * caption-conditioned checkpoint made before trainers stored it.
 *
 *     t2i ckpt words samples/models/dalle.safetensors --data fashion-captions:train
 *     t2i ckpt words gan.safetensors --data captions/ --out gan_words.safetensors
 *
 * The set (text/words.h) goes to the metadata entry "caption_words" (replaced in place
 * when present, else appended); every other metadata entry keeps its key, value and order,
 * and every tensor keeps its name, dtype, shape and bytes, written in the order of its
 * data, so the data block is byte-identical. The file is rewritten atomically (temporary
 * file, fsync, rename), in place unless --out is given. `t2i generate` then warns when a
 * caption holds words outside the set (generate/known_words.h).
 *
 * Failures: bad flags exit 2; a file that is not a t2i DALL-E or caption GAN checkpoint,
 * data without captions, or a failed write exit 1 with a message naming the file.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base.h"
#include "ckpt.h"
#include "commands.h"
#include "data.h"
#include "safetensors.h"
#include "words.h"

/* 0 when f is a model that generates from captions, else -1 with the error set. */
static int check_caption_model(const st_file *f) {
    const char *model = st_meta(f, "model");
    if (model && strcmp(model, "dalle") == 0) return 0;
    if (!model || strcmp(model, "gan") != 0)
        return t2i_error_set("%s: a %s checkpoint; caption words belong to the models that generate from captions "
                             "(dalle, a gan trained with --text-encoder)", f->path, model ? model : "non-t2i");
    cJSON *c = cJSON_Parse(st_meta(f, "config") ? st_meta(f, "config") : "");
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(c, "text_encoder");
    int ok = cJSON_IsString(enc) && enc->valuestring[0];
    cJSON_Delete(c);
    return ok ? 0 : t2i_error_set("%s: a GAN without a text encoder (not trained on captions)", f->path);
}

static const st_file *by_begin_file;
static int cmp_begin(const void *a, const void *b) {
    size_t x = by_begin_file->t[*(const int *)a].begin, y = by_begin_file->t[*(const int *)b].begin;
    return (x > y) - (x < y);
}

int ckpt_words(int argc, char **argv) {
    const char *data = NULL, *out = NULL;
    t2i_flag flags[] = {
        {"--data", T2I_STR, &data, "the training captions: fashion-captions[:train|:test] or a folder with "
                                   "metadata.jsonl/csv (required)"},
        {"--out", T2I_STR, &out, "write the stamped copy here (default: rewrite FILE in place)"},
    };
    t2i_cmd cmd = {"t2i ckpt words", "Store the word set of a dataset's captions in a DALL-E or caption-GAN checkpoint.",
                   "FILE --data DATA [--out F]", flags, (int)(sizeof flags / sizeof flags[0]),
                   "For checkpoints made before trainers stored it (metadata 'caption_words'): `t2i generate`\n"
                   "then says which words of a caption the model never saw. Tensors and the other metadata\n"
                   "stay byte-identical; the file is replaced atomically."};
    int rc = t2i_parse(&cmd, argc, argv);
    if (rc != T2I_PARSE_OK) return rc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos != 1) return t2i_fail("ckpt words: expected one FILE"), 2;
    if (!data) return t2i_fail("ckpt words: --data DATA is required"), 2;
    const char *path = cmd.pos[0];
    if (!out) out = path;
    st_file f;
    if (st_open(&f, path) != 0) return t2i_fail_err();
    if (check_caption_model(&f) != 0) {
        st_close(&f);
        return t2i_fail_err();
    }
    t2i_dataset ds;
    if (t2i_dataset_open(&ds, data, 0, 0, 0) != 0) {
        st_close(&f);
        return t2i_fail_err();
    }
    if (!ds.captions) {
        rc = t2i_fail("%s: no captions (fashion-captions, or a folder with metadata.jsonl/csv)", ds.source);
        t2i_dataset_free(&ds);
        st_close(&f);
        return rc;
    }
    char *words = t2i_words_of_texts((const char *const *)ds.captions, (size_t)ds.n);
    if (!words) {
        rc = t2i_fail("%s: the captions' word set is over %zu MB, too large to store", ds.source,
                      T2I_WORDS_META_MAX >> 20);
        t2i_dataset_free(&ds);
        st_close(&f);
        return rc;
    }
    st_writer *w = st_writer_new();
    int replaced = 0;
    for (int i = 0; i < f.n_meta; i++) {
        int ours = strcmp(f.meta_keys[i], T2I_WORDS_META_KEY) == 0;
        st_writer_meta(w, f.meta_keys[i], ours ? words : f.meta_vals[i]);
        replaced |= ours;
    }
    if (!replaced) st_writer_meta(w, T2I_WORDS_META_KEY, words);
    int *order = t2i_malloc((size_t)(f.n ? f.n : 1) * sizeof(int));
    for (int i = 0; i < f.n; i++) order[i] = i;
    by_begin_file = &f;
    qsort(order, (size_t)f.n, sizeof(int), cmp_begin);
    for (int i = 0; i < f.n; i++) {
        const st_tensor *t = &f.t[order[i]];
        st_writer_add_raw(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    size_t nwords = *words ? 1 : 0;
    for (const char *p = words; *p; p++) nwords += *p == ' ';
    rc = st_writer_save(w, out) != 0 ? t2i_fail_err() : 0;
    if (rc == 0)
        printf("ckpt words: %zu words of %d captions (%s) %s %s\n", nwords, ds.n, ds.source,
               replaced ? "replace the set in" : "stored in", out);
    free(order), free(words);
    st_writer_free(w);
    t2i_dataset_free(&ds);
    st_close(&f);
    return rc;
}
