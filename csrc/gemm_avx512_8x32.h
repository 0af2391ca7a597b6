/* The body both 8x32 AVX-512 micro-kernels share (gemm_avx512.c: float32 FMAs; gemm_avx512bf16.c: VDPBF16PS on
 * pairs). Include after the intrinsics; the kernel defines FN_STEP(A) first: one step over A's slot A(i) of each
 * row i (a float, or a pair of bfloat16), into the accumulators c0a, c0b ... c7a, c7b, advancing b.
 * FN_UKERNEL_8X32(steps) then runs `steps` steps with A read as eight row streams (cs_a == 1) or as contiguous
 * columns (rs_a == 1), and stores to (or adds onto) rows 0-7 of c, row stride ldc. */
#ifndef FN_GEMM_AVX512_8X32_H
#define FN_GEMM_AVX512_8X32_H

#define FN_ROWS8(i) r##i[k]
#define FN_COLS8(i) a[i]
#define FN_STORE_ROW(i)                                                                           \
    {                                                                                             \
        float *ci = c + (i) * ldc;                                                                \
        if (accumulate) {                                                                         \
            c##i##a = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##a);                                \
            c##i##b = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##b);                           \
        }                                                                                         \
        _mm512_storeu_ps(ci, c##i##a);                                                            \
        _mm512_storeu_ps(ci + 16, c##i##b);                                                       \
    }
#define FN_UKERNEL_8X32(steps)                                                                                  \
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a,         \
           c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;   \
    if (cs_a == 1) { /* eight row streams */                                                                    \
        const float *r0 = a, *r1 = a + rs_a, *r2 = a + 2 * rs_a, *r3 = a + 3 * rs_a, *r4 = a + 4 * rs_a,        \
                    *r5 = a + 5 * rs_a, *r6 = a + 6 * rs_a, *r7 = a + 7 * rs_a;                                 \
        for (int64_t k = 0; k < (steps); k++) FN_STEP(FN_ROWS8)                                                 \
    } else { /* rs_a == 1: the slots of all eight rows at step k are contiguous */                              \
        for (int64_t k = 0; k < (steps); k++, a += cs_a) FN_STEP(FN_COLS8)                                      \
    }                                                                                                           \
    FN_STORE_ROW(0) FN_STORE_ROW(1) FN_STORE_ROW(2) FN_STORE_ROW(3) FN_STORE_ROW(4) FN_STORE_ROW(5)             \
    FN_STORE_ROW(6) FN_STORE_ROW(7)

#endif
