/* AVX-512 micro-kernel: 8 rows x 32 columns, 16 zmm accumulators, A broadcast from the packed panel. */
#include "internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

__attribute__((target("avx512f"))) static void ukernel_avx512_8x32(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c, int64_t ldc,
    int accumulate) {
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a,
           c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define FN_ROW(i)                                          \
    {                                                      \
        const __m512 ai = _mm512_set1_ps(a[i]);            \
        c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);        \
        c##i##b = _mm512_fmadd_ps(ai, b1, c##i##b);        \
    }
        FN_ROW(0) FN_ROW(1) FN_ROW(2) FN_ROW(3) FN_ROW(4) FN_ROW(5) FN_ROW(6) FN_ROW(7)
#undef FN_ROW
        a += 8;
        b += 32;
    }
#define FN_STORE(i)                                                                               \
    {                                                                                             \
        float *ci = c + (i) * ldc;                                                                \
        if (accumulate) {                                                                         \
            c##i##a = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##a);                                \
            c##i##b = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##b);                           \
        }                                                                                         \
        _mm512_storeu_ps(ci, c##i##a);                                                            \
        _mm512_storeu_ps(ci + 16, c##i##b);                                                       \
    }
    FN_STORE(0) FN_STORE(1) FN_STORE(2) FN_STORE(3) FN_STORE(4) FN_STORE(5) FN_STORE(6) FN_STORE(7)
#undef FN_STORE
}

static const fn_ukernel ukernel = {8, 32, ukernel_avx512_8x32, "avx512"};
const fn_ukernel *fn_ukernel_avx512(void) { return &ukernel; }
#else
const fn_ukernel *fn_ukernel_avx512(void) { return NULL; }
#endif
