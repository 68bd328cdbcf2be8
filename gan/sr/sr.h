/* sr.h - super-resolution of the SRResNet / SRGAN / ESRGAN family: networks, training,
 * tiled upscaling, PSNR/SSIM evaluation, and the `t2i sr` command.
 *
 * Generator (images in [-1, 1], NCHW), preset "b4" = bench/README.md B4 exactly:
 *   Conv3x3(3, W) -> ReLU -> [global skip]
 *     blocks x [Conv3x3(W, W) -> ReLU -> Conv3x3(W, W), + skip]   (no normalisation)
 *     Conv3x3(W, W) + global skip
 *   stages x [Conv3x3(W, 4W) -> PixelShuffle(2) -> ReLU]          (2 stages for x4, 1 for x2)
 *   Conv3x3(W, 3)
 * with W = 64 and 8 blocks for b4 (926,723 parameters at x4); preset "custom" takes any
 * width and block count. PyTorch's default initialisation. The network is an nn_seq
 * (residual blocks through res_begin / res_end), parameters "g.<layer>.weight/bias".
 *
 * Discriminator (GAN fine-tuning only): a patch discriminator on HR crops of the
 * training size P (a multiple of 16): Conv3x3(3, D) -> LReLU(0.2), then four
 * Conv4x4 s2 p1 (D, D, 2D, 4D, 4D channels) each -> LReLU(0.2), then Conv3x3(4D, 1):
 * a (P/16 x P/16) map of logits, each patch counted as one sample; spectral norm optional.
 * Kaiming-normal init (LeakyReLU gain; biases 0), so that D sees its input from the start.
 *
 * Data (`t2i sr train --data DIR`): the image files under DIR (png, jpg, jpeg, bmp, ppm,
 * webp; recursive), sorted by path (byte order); several --data folders and Debian
 * packages (--package NAME: its files by `dpkg -L`) may be given (sr_sources below).
 * HELD-OUT RULE: with --holdout-package / --holdout, every image of those is held out and
 * nothing else; without, the files at 0-based sorted index i (within each source) with
 * i % 6 == 5 are held out - never trained on - and are what `t2i sr eval` and the
 * training's validation use; the others are trained on. For
 * /usr/share/backgrounds/mate/nature (12 photos, Debian package mate-backgrounds) the
 * held-out photos are GreenMeadow.jpg and YellowFlower.jpg. Photos are decoded once and
 * kept in memory at full size; each training item is a random HR crop (P x P, position
 * uniform over all crop positions of all photos) with a random flip / transpose (the 8
 * symmetries of the square), drawn from the run's explicit RNG; with --focus K (default
 * 4) one of K such crops is kept, with probability proportional to its bicubic error, so
 * that steps are not spent on the photos' large out-of-focus areas. The LR input is the crop downscaled
 * by bicubic with antialias (t2i_resize_chw, = Pillow's BICUBIC) and rounded to 8-bit
 * levels, like a saved image; --degrade mix varies the downscaling per crop
 * (sr_make_lr_degraded). Validation crops that bicubic reproduces exactly (flat areas:
 * infinite PSNR) are left out of the validation mean.
 *
 * Training: G starts as bilinear upsampling (sr_init_interp; --init pytorch for the
 * default init); phase 1 (--steps) minimises L1(G(lr), hr) with Adam (default lr 3e-4,
 * 100 warm-up steps, cosine decay to 1e-6); phase 2 (--gan-steps)
 * starts G from the phase-1 EMA weights with fresh Adam moments and minimises
 *   l1_weight * L1 + adv_weight * L_adv(G) + fm_weight * FM
 * (FM: feature matching of D's activations, sr_step.c; --fm-weight, 0 by default); with
 * --d-warmup N the first N steps of phase 2 train D alone against the starting G, and with
 * --d-steps K G is updated on every K-th step after them (D on every step)
 * against the patch D, with the relativistic average loss of ESRGAN ("ragan") or the
 * non-saturating one ("ns"). An EMA of G's weights (decay warmed up as
 * min(decay, (1 + t) / (10 + t)) at update t) is what eval and upscale use. See
 * sr_train.c for the run folder and resume rules.
 *
 * Relativistic average loss on patch logits r (real, n of them) and f (fake, n):
 *   D:  L = ( BCE(r - mean(f), 1) + BCE(f - mean(r), 0) ) / 2
 *   G:  L = ( BCE(r - mean(f), 0) + BCE(f - mean(r), 1) ) / 2
 * with BCE the mean binary cross-entropy with logits.
 *
 * Upscaling is tiled so that memory is bounded whatever the image size: the LR image is
 * cut into tiles of `tile` x `tile` pixels, each run with a margin of `overlap` pixels of
 * real neighbouring input on every side, and only the tile's own output is kept. With
 * overlap >= the generator's receptive radius (sr_receptive_radius: 20 LR pixels for b4:
 * 1 + 16 + 1 + 1 convolutions at LR resolution plus 1 from the HR stages) the result
 * equals the untiled one up to float rounding. Convolutions inside a tile run on bands
 * of rows, so scratch stays small too.
 *
 * Failure: functions that read files return -1 (or NULL) after t2i_error_set with a
 * one-line message naming the file and the problem; contract violations assert.
 */
#ifndef T2I_SR_H
#define T2I_SR_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "seq.h"

/* Held-out rule (see above): sorted index i is held out when i % SR_HOLDOUT_EVERY == SR_HOLDOUT_EVERY - 1. */
#define SR_HOLDOUT_EVERY 6

typedef enum { SR_GAN_RAGAN, SR_GAN_NS } sr_gan_loss;

typedef struct {
    char preset[16]; /* "b4" or "custom" */
    int scale;       /* 2 or 4 */
    int width;       /* generator channels (64 for b4) */
    int blocks;      /* residual blocks (8 for b4) */
    int crop;        /* HR training crop P (D is built for P x P inputs) */
    int d_width;     /* discriminator base channels */
    int d_sn;        /* spectral norm in D */
} sr_config;

typedef struct {
    sr_config cfg;
    nn_params gp, dp, ep; /* G, D, EMA-of-G parameter stores */
    nn_seq g, d, ema;     /* g and ema: input (3, P/scale, P/scale); d: (3, P, P) */
    int has_training;     /* G/D weights present (a training checkpoint), not only the EMA */
} sr_model;

/* b4 at the given scale, training crop 96 (x4) / 64 (x2), D width 64 without SN. */
void sr_config_b4(sr_config *c, int scale);
int sr_config_check(const sr_config *c);     /* -1 with a message on bad values */
char *sr_config_to_json(const sr_config *c); /* caller frees */
int sr_config_from_json(sr_config *c, const char *json);

/* Builds the generator for LR inputs (3, h, w) over ps (prefix "g"). */
void sr_build_g(nn_seq *g, nn_params *ps, const sr_config *c, int h, int w);
/* Builds and allocates G, D and the EMA; initialises from rng (EMA = G). */
void sr_model_build(sr_model *m, const sr_config *cfg, t2i_rng *rng);
void sr_model_free(sr_model *m);
/* Interpolating initialisation of G (training option --init interp; b4 benchmarks use
 * PyTorch's defaults): channels 0..5 of the trunk carry relu(+x) and relu(-x) of the LR
 * input; the convolution ending each residual branch (and the trunk's last one) starts at
 * zero, so every skip is an identity; each upsampling convolution maps carrier c to its
 * four sub-pixel channels with bilinear x2 weights (3x3 taps) and the last convolution
 * reads x back from the carriers. Other channels keep their random initialisation (the
 * layers that read them start at zero weights for the carriers' outputs). G then starts
 * as bilinear upsampling (twice x2) instead of noise, which is what makes short CPU
 * trainings reach useful quality (bilinear-initialised upsampling, as FCN's). EMA = G. */
void sr_init_interp(sr_model *m);

/* Receptive radius of a generator in LR pixels: output pixels of a tile that lie at
 * least this far from its inner edges equal the untiled result. */
int sr_receptive_radius(const nn_seq *g);

/* Checkpoints (model "sr"). with_training: G, D, EMA and Adam moments + state_json
 * (resumable); otherwise the EMA weights only (an inference checkpoint). */
int sr_save(const sr_model *m, const char *path, const char *state_json, int with_training);
/* Loads a checkpoint of either kind into an unbuilt m; with_training requires a training
 * checkpoint (and loads moments). state_json (may be NULL) receives the state, if any. */
int sr_load(sr_model *m, const char *path, int with_training, char **state_json);

/* ---- upscaling (sr_upscale.c) ---- */
/* Default tile core size in LR pixels. */
#define SR_TILE_DEFAULT 128

/* One LR image x (3, h, w) in [-1, 1] through generator g (G or the EMA; any input size
 * it was built for is ignored) into y (3, h*s, w*s). tile <= 0: the whole image as one
 * tile; overlap < 0: sr_receptive_radius(g) (exact). Output is not clamped. */
void sr_upscale_image(const nn_seq *g, int scale, const float *x, int h, int w, float *y, int tile, int overlap);
/* The API for `t2i generate --upscale`: N images (N, 3, h, w) in [-1, 1] through the EMA
 * generator of a loaded model into y (N, 3, h*s, w*s), clamped to [-1, 1]; default tiles.
 * Load the model with sr_load(&m, path, 0, NULL); the scale is m.cfg.scale. */
void sr_upscale_batch(const sr_model *m, const float *x, int N, int h, int w, float *y);
/* An 8-bit RGB image through the EMA generator into out (allocated, 8-bit RGB, rounded as
 * t2i_chw_to_u8); the input is converted tile by tile, so only 8-bit copies of the whole
 * image exist. */
void sr_upscale_u8(const sr_model *m, const t2i_image *in, t2i_image *out, int tile, int overlap);
/* The same pixels straight into a PNG file, one row of tiles at a time (`t2i sr upscale`):
 * besides the input, memory is the tile workspace and one band of tile * scale output rows,
 * whatever the image size. The file appears only when complete. Returns 0 or -1 with the
 * error set. */
int sr_upscale_png(const sr_model *m, const t2i_image *in, const char *path, int tile, int overlap, int progress);

/* ---- data (sr_train.c) ---- */
typedef struct {
    int n;        /* all image files found */
    char **files; /* sorted paths */
    int *heldout; /* per file: 1 if held out by the rule */
} sr_filelist;
/* Where photos come from; each field a colon-separated list (NULL or "" for none).
 *   data: folders (walked recursively, sorted bytewise; symbolic links to folders are
 *         entered once; an unreadable sub-folder is skipped with a note) or image files;
 *   packages: Debian packages, each expanded to its image files by `dpkg -L NAME`;
 *   holdout_packages / holdout_dirs: sources whose every image is held out (validation,
 *         `sr eval`) and never trained on, even when another source lists it too.
 * Files are listed source by source (data, packages, held-out packages, held-out
 * folders), each source sorted; a file listed twice (same real path) counts once. Without
 * held-out sources the old rule holds within each source: its sorted index i is held out
 * when i % 6 == 5 (so one folder gives the old list exactly). Image files: png, jpg,
 * jpeg, bmp, ppm, webp (by extension, any case). */
typedef struct {
    const char *data, *packages, *holdout_packages, *holdout_dirs;
} sr_sources;
/* -1 with a message naming the source when one is missing, unreadable or has no images. */
int sr_list_sources(sr_filelist *fl, const sr_sources *src);
/* sr_list_sources of the one folder dir (recursive). */
int sr_list_images(sr_filelist *fl, const char *dir);
void sr_filelist_free(sr_filelist *fl);

/* HR crop -> LR input: bicubic antialiased downscaling by scale, rounded to 8-bit levels.
 * hr (3, H, W) -> lr (3, H/s, W/s). */
void sr_make_lr(float *lr, const float *hr, int H, int W, int scale);
/* Rounds x (n) to the 256 levels of an 8-bit image, in [-1, 1]. */
void sr_quantize(float *x, size_t n);
/* Training degradations (--degrade): bicubic = sr_make_lr only (the eval degradation, no
 * RNG draw); mix = per crop, one draw u from the run's RNG picks
 *   u < 0.55 bicubic antialiased | < 0.70 bilinear antialiased (Pillow's BILINEAR) |
 *   < 0.85 area (mean of each s x s block) | else a Gaussian blur of sigma ~ U(0.05, 1)
 *   HR pixels (a second draw; radius ceil(3 sigma), border repeated) then bicubic,
 * always rounded to 8 bits. Deterministic given the RNG state, so resumable exactly. */
typedef enum { SR_DEGRADE_BICUBIC, SR_DEGRADE_MIX } sr_degrade;
typedef enum { SR_LR_BICUBIC, SR_LR_BILINEAR, SR_LR_AREA, SR_LR_BLUR_BICUBIC } sr_degrade_kind;
/* hr (3, H, W) -> lr (3, H/s, W/s); returns the kind used. */
sr_degrade_kind sr_make_lr_degraded(float *lr, const float *hr, int H, int W, int scale, sr_degrade mode, t2i_rng *rng);
/* "bicubic" / "mix" -> mode; -1 with a message otherwise. */
int sr_degrade_parse(const char *name, sr_degrade *mode);

/* ---- training steps (sr_step.c) ---- */
typedef struct {
    float loss_l1, loss_g_adv, loss_d;
    float loss_fm;        /* fm_weight * FM (0 without feature matching) */
    float d_real, d_fake; /* mean sigmoid of D's patch logits */
} sr_step_stats;

/* Relativistic average GAN loss (formula above) of real logits lr (n) and fake lf (n):
 * returns the loss; adds scale * dL/dlr into dr and scale * dL/dlf into df when non-NULL.
 * for_g selects the generator's objective. */
float sr_ragan_loss(const float *lr, const float *lf, int n, float *dr, float *df, int for_g, float scale);

/* Feature matching of D's activations (sr_step.c: FM) between the passes tr (real) and
 * tf (fake) of D: returns weight * FM; when dout is non-NULL, dout[i] gets weight * dFM/df
 * at each activation layer i (in a) and NULL elsewhere (NN_SEQ_MAX entries). */
float sr_feature_match(const nn_seq *d, const nn_tape *tr, const nn_tape *tf, nn_arena *a, float weight,
                       const float **dout);
/* One phase-1 step: L1(G(lr), hr) on B items, Adam step with learning rate lr_now.
 * Returns the loss. */
float sr_l1_step(sr_model *m, nn_optim *og, nn_arena *a, const float *lr, const float *hr, int B, float lr_now);
/* One phase-2 step: G update (L1 + adversarial + feature matching, D frozen) unless
 * !update_g (D's warm-up), then D update on the same (detached) output. */
void sr_gan_step(sr_model *m, nn_optim *og, nn_optim *od, nn_arena *a, sr_gan_loss loss, float l1_weight,
                 float adv_weight, float fm_weight, int update_g, const float *lr, const float *hr, int B,
                 sr_step_stats *st);

/* ---- commands ---- */
int sr_cmd_train(int argc, char **argv);   /* sr_train.c */
int sr_cmd_upscale(int argc, char **argv); /* sr_upscale.c */

#endif
