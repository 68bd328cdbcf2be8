/* rng.c - xoshiro256** with SplitMix64 seeding; see rng.h. */
#include "rng.h"

#include <math.h>

#include "base.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void t2i_rng_seed(t2i_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_gauss = 0;
    r->gauss = 0.0f;
}

t2i_rng t2i_rng_split(const t2i_rng *r, uint64_t stream) {
    /* Hash the parent's state with the stream id; SplitMix64 decorrelates neighbours. */
    uint64_t x = r->s[0] ^ rotl(r->s[1], 17) ^ rotl(r->s[2], 31) ^ rotl(r->s[3], 47);
    x ^= splitmix64(&(uint64_t){stream + 0x632be59bd9b4e019ull});
    t2i_rng c;
    t2i_rng_seed(&c, x);
    return c;
}

uint64_t t2i_rng_u64(t2i_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float t2i_rng_uniform(t2i_rng *r) { return (float)(t2i_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

uint64_t t2i_rng_below(t2i_rng *r, uint64_t n) {
    T2I_ASSERT(n > 0);
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = t2i_rng_u64(r);
    } while (x >= limit);
    return x % n;
}

float t2i_rng_normal(t2i_rng *r) {
    if (r->has_gauss) {
        r->has_gauss = 0;
        return r->gauss;
    }
    /* Box-Muller in double; u1 in (0, 1] so log is finite. */
    double u1 = ((t2i_rng_u64(r) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double u2 = (t2i_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    double rad = sqrt(-2.0 * log(u1));
    double th = 2.0 * M_PI * u2;
    r->gauss = (float)(rad * sin(th));
    r->has_gauss = 1;
    return (float)(rad * cos(th));
}

void t2i_rng_fill_normal(t2i_rng *r, float *x, size_t n, float mean, float std) {
    for (size_t i = 0; i < n; i++) x[i] = mean + std * t2i_rng_normal(r);
}

void t2i_rng_fill_uniform(t2i_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * t2i_rng_uniform(r);
}

void t2i_rng_shuffle(t2i_rng *r, int *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)t2i_rng_below(r, i);
        int t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
