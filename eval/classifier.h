/* classifier.h - the toolkit's Fashion-MNIST classifier: a small CNN whose penultimate
 * features are the feature space of `t2i eval fid` (FID and KID) and whose predictions
 * give the class histogram of generated images and the class part of caption fidelity.
 *
 * Network (input 1x28x28 in [-1, 1]):
 *   [Conv3x3(1,32) BN ReLU Conv3x3(32,32) BN ReLU AvgPool2]      28 -> 14
 *   [Conv3x3(32,64) BN ReLU Conv3x3(64,64) BN ReLU AvgPool2]     14 -> 7
 *   Linear(3136, 128) BN ReLU  = the 128-d features               Dropout(0.3) Linear(128, 10)
 * Trained by `t2i classify train` (AdamW, warmup + cosine, random 2-pixel shifts); stored
 * as a checkpoint of model type "classifier".
 */
#ifndef T2I_CLASSIFIER_H
#define T2I_CLASSIFIER_H

#include "params.h"
#include "seq.h"

#define CLS_FEATURES 128

typedef struct {
    nn_params ps;
    nn_seq trunk;   /* image -> 128 features */
    nn_seq head;    /* features -> 10 logits */
    int n_classes;
} cls_model;

void cls_build(cls_model *m, int n_classes, t2i_rng *rng);
void cls_free(cls_model *m);
int cls_load(cls_model *m, const char *path);
int cls_save(cls_model *m, const char *path, const char *state_json);
/* Features (N, 128) and/or logits (N, n_classes) of N images (1x28x28 in [-1, 1]), in
 * evaluation mode; either output may be NULL. Processes in chunks; allocates nothing
 * per call beyond its arena. */
void cls_infer(cls_model *m, const float *x, int N, float *feats, float *logits);
/* The classifier path used when none is given: $T2I_CLASSIFIER, else the shipped
 * samples/models/fmnist_classifier.safetensors next to the t2i binary's source tree. */
const char *cls_default_path(void);

int cls_cmd(int argc, char **argv);

#endif
