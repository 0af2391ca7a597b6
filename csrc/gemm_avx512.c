/* AVX-512 micro-kernel: 8 rows x 32 columns, 16 zmm accumulators, A broadcast in place.
 *
 * tests/test_emulated_avx512.py also builds this file against SIMDe (FN_EMULATE_AVX512: its portable AVX-512, on
 * AVX2 + FMA), so the kernel is tested, bit for bit against the AVX2 kernel (the same FMAs in the same order), on
 * CPUs without AVX-512. */
#include "internal.h"

#if defined(FN_EMULATE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define FN_TARGET_AVX512
#define FN_HAVE_AVX512 1
#define FN_PACK_BT NULL /* SIMDe runs anywhere; the AVX2 transposer and rows kernel may not be built */
#define FN_ROWS NULL
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define FN_TARGET_AVX512 __attribute__((target("avx512f")))
#define FN_HAVE_AVX512 1
#define FN_PACK_BT fn_gemm_pack_bt_avx2
#define FN_ROWS fn_gemm_rows_avx2
#endif

#ifdef FN_HAVE_AVX512
#include "gemm_avx512_8x32.h"

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

FN_TARGET_AVX512 static void ukernel_avx512_8x32(
    int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b, float *restrict c,
    int64_t ldc, int accumulate) {
    FN_UKERNEL_8X32(kc)
}
#undef FN_STEP

static const fn_ukernel ukernels[2] = {
    {8, 32, ukernel_avx512_8x32, "avx512", FN_BF16_NONE, 0, NULL, NULL, NULL, FN_PACK_BT, 1, NULL, NULL, FN_ROWS},
    {8, 32, ukernel_avx512_8x32, "avx512+bf16", FN_BF16_ROUNDED, 0, NULL, NULL, NULL}};
const fn_ukernel *fn_ukernel_avx512(int bf16) { return &ukernels[bf16 != 0]; }
#else
const fn_ukernel *fn_ukernel_avx512(int bf16) { (void)bf16; return NULL; }
#endif
