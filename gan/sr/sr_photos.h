/* sr_photos.h - the photos of `t2i sr train` (sr_photos.c), private to gan/sr/: the
 * decoded training photos, the crops of a training item, and the fixed validation crops. */
#ifndef T2I_SR_PHOTOS_H
#define T2I_SR_PHOTOS_H

#include <stdint.h>

#include "image.h"
#include "rng.h"
#include "sr.h"

typedef struct {
    int n;
    t2i_image *img;      /* 8-bit RGB, full size */
    uint64_t *positions; /* crop positions per photo: (w - P + 1) * (h - P + 1) */
    uint64_t total;
} photo_set;

void sr_photos_free(photo_set *ps);
/* Loads the files with heldout[i] == want_heldout; photos smaller than P are skipped. */
int sr_photos_load(photo_set *ps, const sr_filelist *fl, const char *dir, int want_heldout, int P, int verbose);
void sr_training_item(float *hr, float *lr, const photo_set *ps, int P, int s, int focus, sr_degrade degrade,
                      float *cand, t2i_rng *rng);

#define VAL_SIZE 256

typedef struct {
    int n, size, scale;
    float *hr, *lr; /* (n, 3, S, S), (n, 3, S/s, S/s) */
    float *bic;     /* bicubic upscaled LR (n, 3, S, S) */
    double psnr_bicubic;
} val_set;

void sr_val_build(val_set *v, const photo_set *ps, int scale);
void sr_val_free(val_set *v);
/* Mean PSNR of the EMA on the validation crops; writes a sample grid when a path is given. */
double sr_val_run(const sr_model *m, const val_set *v, const char *sample_path, const char *latest_path);

#endif
