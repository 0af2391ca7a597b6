/* AMX-BF16 micro-kernel: 32 rows x 32 columns in four 16x16 float32 tiles, TDPBF16PS on bfloat16 pairs.
 *
 * Why a second bfloat16 kernel: on Intel's Xeons the VDPBF16PS kernel does not beat float32 FMAs (a probe on a
 * 16-core Xeon with AMX, 2026-11-29: 0.55-0.72x the float32 kernel's GFLOP/s, one thread and sixteen); their
 * bfloat16 engine is AMX (TDPBF16PS: a 16x16 block times 16 pairs of k per instruction).
 *
 * The operands are the VDPBF16PS kernel's (fn_gemm_pack_b, fn_gemm_pack_a with FN_BF16_PAIRS): B a panel of 32-bit
 * pair slots, slot (p, j) at b[p*32 + j], which is exactly two B tiles of 16 pairs x 16 columns (row stride 128
 * bytes); A row-major pair slots, slot (i, p) at a[i*rs_a + p] (this kernel has `rows_only`: fn_gemm_pack_a and
 * the in-place readers give it rows), so an A tile is 16 rows x 16 pairs read with stride 4*rs_a. One step over 16
 * pairs: two A tiles, two B tiles, four TDPBF16PS; a last step of fewer pairs reads zero-padded copies of them. The
 * product is summed from zero and then stored (straight from the tiles) or added to C, as the other kernels do.
 *
 * Cost per call: the tiles are configured once per run of calls on a thread (fn_ukernel enter: LDTILECFG; leave:
 * TILERELEASE, so a thread never keeps tile state past the kernel that used it), not per call. A call is then
 * four TILEZERO, 4 loads and 4 TDPBF16PS per 16 pairs, and four tile stores: the MLP's dW products (K = 128, 4
 * steps) and the convolutions' (K = 9 to 288) are short, so a per-call LDTILECFG, TILERELEASE and a reconfiguration
 * for the tail of each K block (392 = 12 steps and 4 pairs on the MLP's first layer) weighed on every call.
 *
 * Rounding: per TDPBF16PS (Intel SDM), each row's products of even k and of odd k are summed separately from zero
 * over the instruction's 16 pairs (each product exact, round to nearest even, denormals flushed), then their sum is
 * added to the accumulator. So its last bits differ from VDPBF16PS's order and from the portable path; it is
 * bit-identical for any thread count.
 *
 * Linux hands a process AMX's tile state only after arch_prctl(ARCH_REQ_XCOMP_PERM): fn_amx_permitted asks once.
 * tests/test_native_bf16.py also builds this file against tests/native_bf16_emulation.h, which writes the tile
 * instructions out after the SDM's pseudocode, so its packing and indexing are tested on any CPU. */
#include <string.h>

#include "internal.h"

#if defined(FN_EMULATE_AVX512BF16)
#include "native_bf16_emulation.h"
#define FN_TARGET_AMX
#define FN_HAVE_AMX 1
#elif defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && \
    (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FN_TARGET_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))
#define FN_HAVE_AMX 1
#endif

#ifdef FN_HAVE_AMX
/* LDTILECFG's 64-byte operand (palette 1). Tiles 0-3: the accumulators (16 rows x 16 floats); 4-5: A (16 rows x
 * 16 pair slots); 6-7: B (16 pair rows x 16 slots). Every step has this shape: a last step of fewer pairs reads
 * zero-padded copies, so the tiles are configured once per run of calls (enter), not per call. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

FN_TARGET_AMX static void enter(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
}

FN_TARGET_AMX static void leave(void) { _tile_release(); }

/* One step over 16 pairs: A's rows from a (row stride rs_a slots), B's 16 pair rows from b (row stride 32). */
#define FN_AMX_STEP(a, rs_a, b)                                                               \
    {                                                                                         \
        _tile_loadd(4, (a), 4 * (rs_a));                                                      \
        _tile_loadd(5, (a) + 16 * (rs_a), 4 * (rs_a));                                        \
        _tile_loadd(6, (b), 128);                                                             \
        _tile_loadd(7, (b) + 16, 128);                                                        \
        _tile_dpbf16ps(0, 4, 6);                                                              \
        _tile_dpbf16ps(1, 4, 7);                                                              \
        _tile_dpbf16ps(2, 5, 6);                                                              \
        _tile_dpbf16ps(3, 5, 7);                                                              \
    }

/* The four accumulator tiles: zeroed, and stored as 32 rows x 32 floats at dst (row stride ld floats). */
FN_TARGET_AMX static inline void zero_acc(void) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

FN_TARGET_AMX static inline void store_acc(float *dst, int64_t ld) {
    _tile_stored(0, dst, 4 * ld);
    _tile_stored(1, dst + 16, 4 * ld);
    _tile_stored(2, dst + 16 * ld, 4 * ld);
    _tile_stored(3, dst + 16 * ld + 16, 4 * ld);
}

/* The last `tail` (< 16) pairs as one whole step: A's 32 rows and B's rows copied into zeroed 16-pair buffers. The
 * zero pairs add +0 products to sums that start from +0, which changes no bit of them. */
FN_TARGET_AMX static void tail_step(int64_t tail, const float *restrict a, int64_t rs_a, const float *restrict b) {
    float ta[32 * 16] __attribute__((aligned(64))), tb[16 * 32] __attribute__((aligned(64)));
    memset(ta, 0, sizeof ta);
    memset(tb + tail * 32, 0, sizeof(float) * (16 - tail) * 32);
    for (int i = 0; i < 32; i++) memcpy(ta + i * 16, a + i * rs_a, sizeof(float) * tail);
    memcpy(tb, b, sizeof(float) * tail * 32);
    FN_AMX_STEP(ta, 16, tb)
}

FN_TARGET_AMX static void ukernel_amx_32x32(int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
                                            const float *restrict b, float *restrict c, int64_t ldc, int accumulate) {
    (void)cs_a; /* 1: rows_only */
    const int64_t pairs = (kc + 1) / 2, whole = pairs / 16 * 16;
    zero_acc();
    for (int64_t s = 0; s < whole; s += 16) FN_AMX_STEP(a + s, rs_a, b + s * 32)
    if (whole < pairs) tail_step(pairs - whole, a + whole, rs_a, b + whole * 32);
    if (!accumulate) {
        store_acc(c, ldc);
        return;
    }
    float acc[32 * 32] __attribute__((aligned(64)));
    store_acc(acc, 32); /* summed from zero, then added */
    for (int i = 0; i < 32; i++) {
        float *restrict ci = c + i * ldc;
        const float *restrict ai = acc + i * 32;
        for (int j = 0; j < 32; j++) ci[j] += ai[j];
    }
}
/* The tap path's step (fn_ukernel.taps): acc[32 x 32] = sum over taps t of A_t . B_t, A_t's row r the
 * 16 pair slots at a + (r + off[t]) * 16 (a pixel's 32 channels), B_t the 16 pair rows at b + t * 16 * 32. One
 * TDPBF16PS step per tap, in order, as the micro-kernel steps through an im2col row of (kh, kw, c) pairs: for 32
 * channels the two sum the same products in the same order, bit for bit. */
FN_TARGET_AMX static void taps_32x32(float *restrict acc, const float *restrict a, const int64_t *restrict off,
                                     int ntaps, const float *restrict b) {
    zero_acc();
    for (int t = 0; t < ntaps; t++) FN_AMX_STEP(a + off[t] * 16, 16, b + t * 16 * 32)
    store_acc(acc, 32);
}
#undef FN_AMX_STEP

static const fn_ukernel ukernel = {32, 32, ukernel_amx_32x32, "amx_bf16", FN_BF16_PAIRS, 1, enter, leave, taps_32x32};
const fn_ukernel *fn_ukernel_amx(void) { return &ukernel; }

int fn_amx_permitted(void) {
#if defined(FN_EMULATE_AVX512BF16)
    return 1;
#else
    static int permitted = -1; /* the request is per process and idempotent; asking twice is harmless */
    if (permitted < 0)
        permitted = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
    return permitted;
#endif
}
#else
const fn_ukernel *fn_ukernel_amx(void) { return NULL; }
int fn_amx_permitted(void) { return 0; }
#endif
