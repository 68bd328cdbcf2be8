/* gan_source.h - a caption-conditioned GAN as a candidate source for `t2i generate`.
 *
 * The GAN embeds the caption with the text encoder it was trained with (recorded in its
 * config; a relative path is also looked up under the source tree, where the shipped
 * models live) and checks the encoder by re-embedding the probe caption stored at training
 * time: a different encoder is an error, not silently wrong images. Candidate i of a seed
 * uses noise stream i, so any kept image can be regenerated alone.
 */
#ifndef T2I_GAN_SOURCE_H
#define T2I_GAN_SOURCE_H

#include "generate.h"

/* text_encoder/vocab override the recorded ones when non-NULL. */
int gen_source_gan(gen_source **out, const char *gan_path, const char *text_encoder, const char *vocab, int batch);

#endif
