/* The AVX-512 intrinsics csrc/gemm_avx512bf16.c uses, written out lane by lane with GCC's generic vectors, so the
 * native bfloat16 micro-kernel can be built and tested on a CPU without AVX512_BF16 (tests/test_native_bf16.py).
 * _mm512_dpbf16_ps follows the Intel SDM's VDPBF16PS pseudocode: per float32 lane i,
 *     dst[i] = src[i] + a.bf16[2i+1] * b.bf16[2i+1];  dst[i] += a.bf16[2i] * b.bf16[2i]
 * each product exact in float32, each addition rounded to nearest even, denormal inputs and outputs flushed to
 * zero (DAZ, FTZ). Test code only: never part of the installed library. */
#ifndef FN_NATIVE_BF16_EMULATION_H
#define FN_NATIVE_BF16_EMULATION_H
#include <stdint.h>
#include <string.h>

typedef float __m512 __attribute__((vector_size(64)));
typedef short __m512bh __attribute__((vector_size(64)));

static inline __m512 _mm512_setzero_ps(void) { return (__m512){0}; }
static inline __m512 _mm512_set1_ps(float x) {
    __m512 v;
    for (int i = 0; i < 16; i++) v[i] = x;
    return v;
}
static inline __m512 _mm512_loadu_ps(const void *p) {
    __m512 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void _mm512_storeu_ps(void *p, __m512 v) { memcpy(p, &v, sizeof v); }
static inline __m512 _mm512_add_ps(__m512 x, __m512 y) { return x + y; }

static inline float fn_emu_flush(float x) { /* DAZ / FTZ: a denormal counts as a zero of its sign */
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    memcpy(&x, &u, 4);
    return x;
}
static inline float fn_emu_bf16(short h) {
    const uint32_t u = (uint32_t)(uint16_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return fn_emu_flush(x);
}
static inline __m512 _mm512_dpbf16_ps(__m512 src, __m512bh a, __m512bh b) {
    for (int i = 0; i < 16; i++) {
        float s = fn_emu_flush(src[i]);
        s = fn_emu_flush(s + fn_emu_bf16(a[2 * i + 1]) * fn_emu_bf16(b[2 * i + 1]));
        src[i] = fn_emu_flush(s + fn_emu_bf16(a[2 * i]) * fn_emu_bf16(b[2 * i]));
    }
    return src;
}
#endif
