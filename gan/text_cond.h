/* text_cond.h - caption conditioning for GANs: the condition of an image is the CLIP text
 * embedding (L2-normalised) of its caption, from a frozen CLIP text tower.
 *
 * A table embeds every distinct caption of a dataset once (FC32's 60000 items have a few
 * hundred distinct captions), so training looks conditions up instead of running the text
 * tower per batch. The GAN's config records the text encoder's path and the embedding of
 * a probe caption, so sampling can check that the same encoder is used again.
 */
#ifndef T2I_GAN_TEXT_COND_H
#define T2I_GAN_TEXT_COND_H

#include "clip.h"

#define GAN_TEXT_PROBE "a red sneaker"

typedef struct {
    int n, dim;
    char **caps;   /* sorted distinct captions */
    float *emb;    /* (n, dim) */
} gan_text_table;

/* Embeds the distinct captions among caps[0..n_items). Returns -1 with the error set. */
int gan_text_table_build(gan_text_table *t, clip_model *clip, char *const *caps, int n_items);
/* The embedding of a caption in the table, or NULL. */
const float *gan_text_lookup(const gan_text_table *t, const char *caption);
void gan_text_table_free(gan_text_table *t);

/* Loads a GAN's frozen text encoder: the CLIP checkpoint and (optional) vocabulary paths as
 * recorded in its config or given by the user, resolved with t2i_resolve_path (shipped
 * models record paths relative to the source tree). NULL with the error set. */
clip_model *gan_text_encoder_load(const char *encoder, const char *vocab);

#endif
