/* kmeans.h - balanced k-means: n points in K clusters of equal size.
 *
 * Used to give unlabelled images pseudo-classes (gan train --cond clusters): a GAN
 * conditioned on equal-sized clusters, sampled with every cluster in equal shares, draws
 * each part of the data in its true proportion, which an unconditional GAN does not
 * (its samples pile onto a few modes).
 *
 * Algorithm: k-means++ seeding (each next centre drawn with probability proportional to
 * the squared distance to the nearest centre so far), then rounds of a balanced
 * assignment and a centre update. The assignment gives cluster k exactly n / K points
 * (the first n % K clusters one more): all (point, cluster) pairs in order of distance,
 * each point taken by the first cluster in that order that still has room (a greedy
 * answer to the transport problem, not its optimum). The rounds stop when no point moves.
 * Everything is a function of the points and the generator: the same for any thread count.
 */
#ifndef T2I_KMEANS_H
#define T2I_KMEANS_H

#include <stddef.h>

#include "rng.h"

/* X (n, d) row-major points; K in 1..n. Writes assign (n) in 0..K-1 and, when centres is
 * non-NULL, the centres (K, d). Returns the number of rounds run. Aborts on a bad size
 * (a contract), allocates its own scratch. */
int nn_kmeans_balanced(int *assign, float *centres, const float *X, size_t n, int d, int K, int max_rounds,
                       t2i_rng *rng);

#endif
