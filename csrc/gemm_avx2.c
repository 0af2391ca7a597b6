/* AVX2+FMA micro-kernel: 6 rows x 16 columns, 12 ymm accumulators (16 registers in all), A broadcast in place. */
#include "internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

#define FN_STEP(A)                                                                                   \
    {                                                                                                \
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);                          \
        __m256 ai;                                                                                   \
        ai = _mm256_broadcast_ss(&A(0)), c0a = _mm256_fmadd_ps(ai, b0, c0a), c0b = _mm256_fmadd_ps(ai, b1, c0b); \
        ai = _mm256_broadcast_ss(&A(1)), c1a = _mm256_fmadd_ps(ai, b0, c1a), c1b = _mm256_fmadd_ps(ai, b1, c1b); \
        ai = _mm256_broadcast_ss(&A(2)), c2a = _mm256_fmadd_ps(ai, b0, c2a), c2b = _mm256_fmadd_ps(ai, b1, c2b); \
        ai = _mm256_broadcast_ss(&A(3)), c3a = _mm256_fmadd_ps(ai, b0, c3a), c3b = _mm256_fmadd_ps(ai, b1, c3b); \
        ai = _mm256_broadcast_ss(&A(4)), c4a = _mm256_fmadd_ps(ai, b0, c4a), c4b = _mm256_fmadd_ps(ai, b1, c4b); \
        ai = _mm256_broadcast_ss(&A(5)), c5a = _mm256_fmadd_ps(ai, b0, c5a), c5b = _mm256_fmadd_ps(ai, b1, c5b); \
        b += 16;                                                                                     \
    }

__attribute__((target("avx2,fma"))) static void ukernel_avx2_6x16(
    int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b, float *restrict c,
    int64_t ldc, int accumulate) {
    /* C's 6 x 16 tile (two lines a row, unaligned) into L1 while the K loop runs: its loads at the end missed to L2
     * or L3 on every K block after the first (2048^3, one thread: 0.94x OpenBLAS without, 0.97x with) */
    for (int i = 0; i < 6; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0), _mm_prefetch((const char *)(c + i * ldc + 15), _MM_HINT_T0);
    __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a,
           c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
    if (cs_a == 1) {
        const float *r0 = a, *r1 = a + rs_a, *r2 = a + 2 * rs_a, *r3 = a + 3 * rs_a, *r4 = a + 4 * rs_a,
                    *r5 = a + 5 * rs_a;
#define FN_ROWS(i) r##i[k]
        for (int64_t k = 0; k < kc; k++) FN_STEP(FN_ROWS)
#undef FN_ROWS
    } else {
#define FN_COLS(i) a[i]
        for (int64_t k = 0; k < kc; k++, a += cs_a) FN_STEP(FN_COLS)
#undef FN_COLS
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
#undef FN_STEP

static const fn_ukernel ukernels[2] = {{6, 16, ukernel_avx2_6x16, "avx2", FN_BF16_NONE, 0, NULL, NULL, NULL},
                                       {6, 16, ukernel_avx2_6x16, "avx2+bf16", FN_BF16_ROUNDED, 0, NULL, NULL,
                                        NULL}};
const fn_ukernel *fn_ukernel_avx2(int bf16) { return &ukernels[bf16 != 0]; }
#else
const fn_ukernel *fn_ukernel_avx2(int bf16) { (void)bf16; return NULL; }
#endif
