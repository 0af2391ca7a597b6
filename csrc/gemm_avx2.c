/* AVX2+FMA micro-kernel: 6 rows x 16 columns, 12 ymm accumulators (16 registers in all). */
#include "internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static void ukernel_avx2_6x16(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c, int64_t ldc,
    int accumulate) {
    __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a,
           c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define FN_ROW(i)                                          \
    {                                                      \
        const __m256 ai = _mm256_broadcast_ss(a + (i));    \
        c##i##a = _mm256_fmadd_ps(ai, b0, c##i##a);        \
        c##i##b = _mm256_fmadd_ps(ai, b1, c##i##b);        \
    }
        FN_ROW(0) FN_ROW(1) FN_ROW(2) FN_ROW(3) FN_ROW(4) FN_ROW(5)
#undef FN_ROW
        a += 6;
        b += 16;
    }
#define FN_STORE(i)                                                                               \
    {                                                                                             \
        float *ci = c + (i) * ldc;                                                                \
        if (accumulate) {                                                                         \
            c##i##a = _mm256_add_ps(_mm256_loadu_ps(ci), c##i##a);                                \
            c##i##b = _mm256_add_ps(_mm256_loadu_ps(ci + 8), c##i##b);                            \
        }                                                                                         \
        _mm256_storeu_ps(ci, c##i##a);                                                            \
        _mm256_storeu_ps(ci + 8, c##i##b);                                                        \
    }
    FN_STORE(0) FN_STORE(1) FN_STORE(2) FN_STORE(3) FN_STORE(4) FN_STORE(5)
#undef FN_STORE
}

static const fn_ukernel ukernel = {6, 16, ukernel_avx2_6x16, "avx2"};
const fn_ukernel *fn_ukernel_avx2(void) { return &ukernel; }
#else
const fn_ukernel *fn_ukernel_avx2(void) { return NULL; }
#endif
