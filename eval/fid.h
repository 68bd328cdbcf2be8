/* fid.h - Frechet distance and kernel inception distance between two feature sets.
 *
 * FID = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), with unbiased covariances
 * (N - 1, as numpy.cov); tr (S_a S_b)^(1/2) = sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2))), the
 * symmetric form, computed in double with LAPACK's dsyev.
 * KID = unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
 * averaged over random subsets (Binkowski et al.); reported as mean and standard deviation.
 * The features are the t2i classifier's penultimate activations (eval/classifier.h), not
 * Inception's: the figures compare runs measured by this toolkit, not published FIDs.
 */
#ifndef T2I_FID_H
#define T2I_FID_H

#include <stdint.h>

/* a (na, d), b (nb, d); na, nb >= 2. Returns -1 on a LAPACK failure (error set). */
double fid_features(const float *a, int na, const float *b, int nb, int d);
void kid_features(const float *a, int na, const float *b, int nb, int d, int subsets, int subset_size,
                  uint64_t seed, double *mean, double *std);

int eval_cmd_fid(int argc, char **argv);

#endif
