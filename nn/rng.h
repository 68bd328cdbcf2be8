/* rng.h - explicit, seedable, splittable random numbers.
 *
 * Every function that draws takes a t2i_rng* (no hidden global state). The generator is
 * xoshiro256** seeded through SplitMix64. t2i_rng_split derives an independent child stream
 * from a parent and a stream id without advancing the parent, so parallel workers (one per
 * image, per candidate, per thread chunk) draw reproducibly whatever the thread count.
 * The state is plain data: it is saved in checkpoints as 4 uint64 words (plus the cached
 * Gaussian) and restored bit-exactly.
 */
#ifndef T2I_RNG_H
#define T2I_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
    int has_gauss;   /* Box-Muller produces pairs; the second one is cached here */
    float gauss;
} t2i_rng;

void t2i_rng_seed(t2i_rng *r, uint64_t seed);
/* Child stream `stream` of r (r is not advanced). */
t2i_rng t2i_rng_split(const t2i_rng *r, uint64_t stream);
uint64_t t2i_rng_u64(t2i_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float t2i_rng_uniform(t2i_rng *r);
/* Uniform integer in [0, n), unbiased. n > 0. */
uint64_t t2i_rng_below(t2i_rng *r, uint64_t n);
/* Standard normal N(0, 1). */
float t2i_rng_normal(t2i_rng *r);
void t2i_rng_fill_normal(t2i_rng *r, float *x, size_t n, float mean, float std);
void t2i_rng_fill_uniform(t2i_rng *r, float *x, size_t n, float lo, float hi);
/* Fisher-Yates shuffle of an index array. */
void t2i_rng_shuffle(t2i_rng *r, int *idx, size_t n);

#endif
