#include "fastnet.h"
#include "internal.h"

#define FN_GOLDEN 0x9e3779b97f4a7c15ULL

/* splitmix64's finalizer: a bijective 64-bit mix with full avalanche. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t stream_key(uint64_t seed, uint64_t stream) { return mix64(seed ^ mix64(stream + FN_GOLDEN)); }

/* 24 random bits -> a float in [0, 1) with every value exactly representable. */
static inline float uniform_at(uint64_t key, uint64_t i) {
    return (float)(mix64(key + (i + 1) * FN_GOLDEN) >> 40) * (1.0f / 16777216.0f);
}

int fn_random_uniform(float *u, int64_t n, uint64_t seed, uint64_t stream, int n_threads) {
    const uint64_t key = stream_key(seed, stream);
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) u[i] = uniform_at(key, (uint64_t)i);
    return FN_OK;
}

int fn_dropout_forward(float *y, uint8_t *keep, const float *x, int64_t n, float rate, uint64_t seed,
                       uint64_t stream, int n_threads) {
    if (!(rate >= 0.0f && rate < 1.0f)) return FN_EINVAL;
    const uint64_t key = stream_key(seed, stream);
    const float scale = 1.0f / (1.0f - rate);
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) {
        const uint8_t k = uniform_at(key, (uint64_t)i) >= rate;
        keep[i] = k;
        y[i] = k ? x[i] * scale : 0.0f;
    }
    return FN_OK;
}

int fn_dropout_backward(float *dx, const float *dy, const uint8_t *keep, int64_t n, float rate, int n_threads) {
    if (!(rate >= 0.0f && rate < 1.0f)) return FN_EINVAL;
    const float scale = 1.0f / (1.0f - rate);
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) dx[i] = keep[i] ? dy[i] * scale : 0.0f;
    return FN_OK;
}
