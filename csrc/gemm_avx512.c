/* AVX-512 micro-kernel: 8 rows x 32 columns, 16 zmm accumulators, A broadcast in place. */
#include "internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include "gemm_avx512_store.h"

/* One k step: two B vectors, then each row's A element broadcast into two FMAs. A(i) is row i's element. */
#define FN_STEP(A)                                                                                   \
    {                                                                                                \
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);                         \
        __m512 ai;                                                                                   \
        ai = _mm512_set1_ps(A(0)), c0a = _mm512_fmadd_ps(ai, b0, c0a), c0b = _mm512_fmadd_ps(ai, b1, c0b); \
        ai = _mm512_set1_ps(A(1)), c1a = _mm512_fmadd_ps(ai, b0, c1a), c1b = _mm512_fmadd_ps(ai, b1, c1b); \
        ai = _mm512_set1_ps(A(2)), c2a = _mm512_fmadd_ps(ai, b0, c2a), c2b = _mm512_fmadd_ps(ai, b1, c2b); \
        ai = _mm512_set1_ps(A(3)), c3a = _mm512_fmadd_ps(ai, b0, c3a), c3b = _mm512_fmadd_ps(ai, b1, c3b); \
        ai = _mm512_set1_ps(A(4)), c4a = _mm512_fmadd_ps(ai, b0, c4a), c4b = _mm512_fmadd_ps(ai, b1, c4b); \
        ai = _mm512_set1_ps(A(5)), c5a = _mm512_fmadd_ps(ai, b0, c5a), c5b = _mm512_fmadd_ps(ai, b1, c5b); \
        ai = _mm512_set1_ps(A(6)), c6a = _mm512_fmadd_ps(ai, b0, c6a), c6b = _mm512_fmadd_ps(ai, b1, c6b); \
        ai = _mm512_set1_ps(A(7)), c7a = _mm512_fmadd_ps(ai, b0, c7a), c7b = _mm512_fmadd_ps(ai, b1, c7b); \
        b += 32;                                                                                     \
    }

__attribute__((target("avx512f"))) static void ukernel_avx512_8x32(
    int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b, float *restrict c,
    int64_t ldc, int accumulate) {
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a,
           c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    if (cs_a == 1) { /* row-major A: eight row streams */
        const float *r0 = a, *r1 = a + rs_a, *r2 = a + 2 * rs_a, *r3 = a + 3 * rs_a, *r4 = a + 4 * rs_a,
                    *r5 = a + 5 * rs_a, *r6 = a + 6 * rs_a, *r7 = a + 7 * rs_a;
#define FN_ROWS(i) r##i[k]
        for (int64_t k = 0; k < kc; k++) FN_STEP(FN_ROWS)
#undef FN_ROWS
    } else { /* rs_a == 1: the column of A at step k is contiguous */
#define FN_COLS(i) a[i]
        for (int64_t k = 0; k < kc; k++, a += cs_a) FN_STEP(FN_COLS)
#undef FN_COLS
    }
    FN_STORE_8X32
}
#undef FN_STEP

static const fn_ukernel ukernels[2] = {{8, 32, ukernel_avx512_8x32, "avx512", FN_BF16_NONE},
                                       {8, 32, ukernel_avx512_8x32, "avx512+bf16", FN_BF16_ROUNDED}};
const fn_ukernel *fn_ukernel_avx512(int bf16) { return &ukernels[bf16 != 0]; }
#else
const fn_ukernel *fn_ukernel_avx512(int bf16) { (void)bf16; return NULL; }
#endif
