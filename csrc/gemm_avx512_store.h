/* The epilogue both 8x32 AVX-512 micro-kernels share (gemm_avx512.c, gemm_avx512bf16.c): the accumulators
 * c0a, c0b ... c7a, c7b stored to (or added onto) rows 0-7 of c (row stride ldc). Include after the intrinsics. */
#ifndef FN_GEMM_AVX512_STORE_H
#define FN_GEMM_AVX512_STORE_H

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
#define FN_STORE_8X32                                                                             \
    FN_STORE_ROW(0) FN_STORE_ROW(1) FN_STORE_ROW(2) FN_STORE_ROW(3) FN_STORE_ROW(4) FN_STORE_ROW(5) \
    FN_STORE_ROW(6) FN_STORE_ROW(7)

#endif
