/* AVX512_BF16 micro-kernel: 8 rows x 32 columns, 16 zmm accumulators, VDPBF16PS on bfloat16 pairs.
 *
 * The operands come packed as pairs along K (fn_gemm_pack_b, fn_gemm_pack_a with FN_BF16_PAIRS): one 32-bit word
 * holds elements k = 2p (low half) and 2p + 1 (high half), both rounded to bfloat16, the high half zero past an
 * odd K. A is a panel of such words, word (p, i) at a[p*8 + i]; B a panel with word (p, j) at b[p*32 + j]. One
 * VDPBF16PS per (row, 16 columns) adds both products of a pair to the float32 accumulator: per lane,
 * acc += a_hi*b_hi, then acc += a_lo*b_lo (Intel SDM order, each product exact, round to nearest even, denormals
 * flushed). The portable bfloat16 path adds the same exact products one k at a time, so the two paths agree to
 * float32 summation error, not bit for bit; each is bit-identical for any thread count.
 *
 * tests/test_native_bf16.py also builds this file against tests/native_bf16_emulation.h (the intrinsics below
 * written out per lane), so its packing and indexing are tested on CPUs without AVX512_BF16. */
#include "internal.h"

#if defined(FN_EMULATE_AVX512BF16)
#include "native_bf16_emulation.h"
#define FN_TARGET_AVX512BF16
#define FN_HAVE_AVX512BF16 1
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) ? __clang_major__ >= 9 : __GNUC__ >= 10)
#include <immintrin.h>
#define FN_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bf16")))
#define FN_HAVE_AVX512BF16 1
#endif

#ifdef FN_HAVE_AVX512BF16
#include "gemm_avx512_8x32.h"

/* One pair step: two B vectors (32 columns x 2 k), then each row's A slot broadcast into two VDPBF16PS. A(i) is
 * row i's slot. */
#define FN_STEP(A)                                                                                           \
    {                                                                                                        \
        const __m512bh b0 = (__m512bh)_mm512_loadu_ps(b), b1 = (__m512bh)_mm512_loadu_ps(b + 16);           \
        __m512bh ai;                                                                                         \
        ai = (__m512bh)_mm512_set1_ps(A(0)), c0a = _mm512_dpbf16_ps(c0a, ai, b0), c0b = _mm512_dpbf16_ps(c0b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(1)), c1a = _mm512_dpbf16_ps(c1a, ai, b0), c1b = _mm512_dpbf16_ps(c1b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(2)), c2a = _mm512_dpbf16_ps(c2a, ai, b0), c2b = _mm512_dpbf16_ps(c2b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(3)), c3a = _mm512_dpbf16_ps(c3a, ai, b0), c3b = _mm512_dpbf16_ps(c3b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(4)), c4a = _mm512_dpbf16_ps(c4a, ai, b0), c4b = _mm512_dpbf16_ps(c4b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(5)), c5a = _mm512_dpbf16_ps(c5a, ai, b0), c5b = _mm512_dpbf16_ps(c5b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(6)), c6a = _mm512_dpbf16_ps(c6a, ai, b0), c6b = _mm512_dpbf16_ps(c6b, ai, b1); \
        ai = (__m512bh)_mm512_set1_ps(A(7)), c7a = _mm512_dpbf16_ps(c7a, ai, b0), c7b = _mm512_dpbf16_ps(c7b, ai, b1); \
        b += 32;                                                                                             \
    }

FN_TARGET_AVX512BF16 static void ukernel_avx512bf16_8x32(int64_t kc, const float *restrict a, int64_t rs_a,
                                                        int64_t cs_a, const float *restrict b, float *restrict c,
                                                        int64_t ldc, int accumulate) {
    FN_UKERNEL_8X32((kc + 1) / 2)
}
#undef FN_STEP

static const fn_ukernel ukernel = {8, 32, ukernel_avx512bf16_8x32, "avx512_bf16", FN_BF16_PAIRS, 0, NULL, NULL, NULL};
const fn_ukernel *fn_ukernel_avx512bf16(void) { return &ukernel; }
#else
const fn_ukernel *fn_ukernel_avx512bf16(void) { return NULL; }
#endif
