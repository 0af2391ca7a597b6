#include <string.h>

#include "fastnet.h"
#include "internal.h"

#define FN_GOLDEN 0x9e3779b97f4a7c15ULL

/* splitmix64's finalizer: a bijective 64-bit mix with full avalanche (used once per call for the key). */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t stream_key(uint64_t seed, uint64_t stream) { return mix64(seed ^ mix64(stream + FN_GOLDEN)); }

/* A bijective 32-bit mix with low bias (Wellons' lowbias32); 32-bit multiplies vectorize on every x86 path. */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    return x ^ (x >> 16);
}

/* Element i of the stream: two keyed rounds of the mix, top 24 bits -> a float in [0, 1), exactly. */
static inline float uniform_at(uint64_t key, uint32_t i) {
    const uint32_t h = mix32(mix32(i ^ (uint32_t)key) + (uint32_t)(key >> 32));
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

FN_VECTOR_CLONES static void uniform_block(float *restrict u, int64_t i0, int64_t n, uint64_t key) {
    for (int64_t i = 0; i < n; i++) u[i] = uniform_at(key, (uint32_t)(i0 + i));
}

/* v where keep is nonzero, else +0.0f, bit for bit as `keep ? v : 0.0f`, as a bit mask: a select GCC leaves as a
 * branch (AVX2 builds did, ~7 ns per element on random masks) vectorizes as an AND. A dropped element is exactly 0
 * even where x or dy is inf or NaN. */
static inline float kept(uint8_t keep, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= (uint32_t)0 - (uint32_t)(keep != 0);
    memcpy(&v, &u, sizeof v);
    return v;
}

FN_VECTOR_CLONES static void dropout_block(float *y, uint8_t *restrict keep, const float *x,
                                           int64_t i0, int64_t n, float rate, float scale, uint64_t key) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t k = uniform_at(key, (uint32_t)(i0 + i)) >= rate;
        keep[i] = k;
        y[i] = kept(k, x[i] * scale);
    }
}

FN_VECTOR_CLONES static void dropout_backward_block(float *dx, const float *dy,
                                                    const uint8_t *restrict keep, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) dx[i] = kept(keep[i], dy[i] * scale);
}

int fn_random_uniform(float *u, int64_t n, uint64_t seed, uint64_t stream, uint64_t first, int n_threads) {
    const uint64_t key = stream_key(seed, stream);
    FN_FOR_BLOCKS(n, i0, len, uniform_block(u + i0, (int64_t)first + i0, len, key))
    return FN_OK;
}

int fn_dropout_forward(float *y, uint8_t *keep, const float *x, int64_t n, float rate, uint64_t seed,
                       uint64_t stream, uint64_t first, int n_threads) {
    if (!(rate >= 0.0f && rate < 1.0f)) return FN_EINVAL;
    const uint64_t key = stream_key(seed, stream);
    const float scale = 1.0f / (1.0f - rate);
    FN_FOR_BLOCKS(n, i0, len, dropout_block(y + i0, keep + i0, x + i0, (int64_t)first + i0, len, rate, scale, key))
    return FN_OK;
}

int fn_dropout_backward(float *dx, const float *dy, const uint8_t *keep, int64_t n, float rate, int n_threads) {
    if (!(rate >= 0.0f && rate < 1.0f)) return FN_EINVAL;
    const float scale = 1.0f / (1.0f - rate);
    FN_FOR_BLOCKS(n, i0, len, dropout_backward_block(dx + i0, dy + i0, keep + i0, len, scale))
    return FN_OK;
}

uint64_t fn_dropout_key(uint64_t seed, uint64_t stream) { return stream_key(seed, stream); }

FN_VECTOR_CLONES void fn_dropout_rows(float *y, int64_t ldy, int64_t rows, int64_t cols, uint64_t i0, int64_t ld,
                                      float rate, uint64_t key) {
    const float scale = 1.0f / (1.0f - rate);
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * ldy;
        const uint64_t ir = i0 + (uint64_t)(r * ld);
        for (int64_t c = 0; c < cols; c++) yr[c] = kept(uniform_at(key, (uint32_t)(ir + c)) >= rate, yr[c] * scale);
    }
}

/* y > 0 holds exactly where the ReLU passed x and the mask kept it: y = kept(keep, relu(x) * scale), and a positive
 * float times scale >= 1 stays positive. So this is, bit for bit, fn_dropout_backward then the ReLU's backward. */
FN_VECTOR_CLONES static void dropout_relu_backward_block(float *dx, const float *dy, const float *restrict y,
                                                         int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) dx[i] = kept(y[i] > 0.0f, dy[i] * scale); /* a select: AVX2 left a branch */
}

int fn_dropout_relu_backward(float *dx, const float *dy, const float *y, int64_t n, float rate, int n_threads) {
    if (!(rate >= 0.0f && rate < 1.0f)) return FN_EINVAL;
    const float scale = 1.0f / (1.0f - rate);
    FN_FOR_BLOCKS(n, i0, len, dropout_relu_backward_block(dx + i0, dy + i0, y + i0, len, scale))
    return FN_OK;
}
