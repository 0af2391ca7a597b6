/* The AVX-512 intrinsics csrc/gemm_avx512bf16.c uses, written out lane by lane with GCC's generic vectors, and the
 * AMX tile instructions csrc/gemm_amx.c uses, so both native bfloat16 micro-kernels can be built and tested on a CPU
 * without AVX512_BF16 or AMX (tests/test_native_bf16.py).
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

/* AMX: eight tiles of up to 16 rows x 64 bytes per thread, shaped by the last _tile_loadconfig (palette 1: colsb
 * at bytes 16 + 2t, rows at byte 48 + t). _tile_dpbf16ps follows the SDM's TDPBF16PS pseudocode: per row m and
 * column n of the destination, the products of even k and of odd k over the instruction's pairs are summed into two
 * temporaries from zero (each product exact, each addition rounded to nearest even, DAZ/FTZ), and then
 *     dst[m][n] += (even + odd). */
static __thread struct {
    int rows, colsb;
    unsigned char data[16][64];
} fn_emu_tiles[8];

static inline void _tile_loadconfig(const void *config) {
    const unsigned char *c = (const unsigned char *)config;
    for (int t = 0; t < 8; t++) {
        fn_emu_tiles[t].colsb = c[16 + 2 * t] | c[17 + 2 * t] << 8;
        fn_emu_tiles[t].rows = c[48 + t];
        memset(fn_emu_tiles[t].data, 0, sizeof fn_emu_tiles[t].data); /* LDTILECFG zeroes the tiles */
    }
}
static inline void _tile_release(void) { memset(fn_emu_tiles, 0, sizeof fn_emu_tiles); }
#define _tile_zero(t) memset(fn_emu_tiles[t].data, 0, sizeof fn_emu_tiles[t].data)
#define _tile_loadd(t, base, stride) fn_emu_tile_loadd(t, base, stride)
#define _tile_stored(t, base, stride) fn_emu_tile_stored(t, base, stride)
#define _tile_dpbf16ps(d, a, b) fn_emu_tile_dpbf16ps(d, a, b)
static inline void fn_emu_tile_loadd(int t, const void *base, long stride) {
    memset(fn_emu_tiles[t].data, 0, sizeof fn_emu_tiles[t].data);
    for (int r = 0; r < fn_emu_tiles[t].rows; r++)
        memcpy(fn_emu_tiles[t].data[r], (const char *)base + r * stride, fn_emu_tiles[t].colsb);
}
static inline void fn_emu_tile_stored(int t, void *base, long stride) {
    for (int r = 0; r < fn_emu_tiles[t].rows; r++)
        memcpy((char *)base + r * stride, fn_emu_tiles[t].data[r], fn_emu_tiles[t].colsb);
}
static inline short fn_emu_half(int t, int row, int index) {
    short h;
    memcpy(&h, fn_emu_tiles[t].data[row] + 2 * index, 2);
    return h;
}
static inline void fn_emu_tile_dpbf16ps(int d, int a, int b) {
    for (int m = 0; m < fn_emu_tiles[d].rows; m++)
        for (int n = 0; n < fn_emu_tiles[d].colsb / 4; n++) {
            float even = 0.0f, odd = 0.0f, acc;
            for (int k = 0; k < fn_emu_tiles[a].colsb / 4; k++) {
                even = fn_emu_flush(even + fn_emu_bf16(fn_emu_half(a, m, 2 * k)) * fn_emu_bf16(fn_emu_half(b, k, 2 * n)));
                odd = fn_emu_flush(odd + fn_emu_bf16(fn_emu_half(a, m, 2 * k + 1)) *
                                             fn_emu_bf16(fn_emu_half(b, k, 2 * n + 1)));
            }
            memcpy(&acc, fn_emu_tiles[d].data[m] + 4 * n, 4);
            acc = fn_emu_flush(fn_emu_flush(acc) + fn_emu_flush(even + odd));
            memcpy(fn_emu_tiles[d].data[m] + 4 * n, &acc, 4);
        }
}
#endif
