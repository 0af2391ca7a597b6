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

/* rows (6 or 8) rows of 8 floats, ld apart, transposed in registers (rows past `rows` zero): column c stored as 8
 * floats at d + c * stride, in increasing c, so with stride 6 each store's lanes 6 and 7 are the next one's 0 and 1
 * (the last store's two extra floats land past the block: the caller has room). */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void transpose8(
    float *d, int64_t stride, const float *src, int64_t ld, const int rows) {
    const __m256 z = _mm256_setzero_ps();
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld), r2 = _mm256_loadu_ps(src + 2 * ld),
                 r3 = _mm256_loadu_ps(src + 3 * ld), r4 = _mm256_loadu_ps(src + 4 * ld),
                 r5 = _mm256_loadu_ps(src + 5 * ld), r6 = rows > 6 ? _mm256_loadu_ps(src + 6 * ld) : z,
                 r7 = rows > 7 ? _mm256_loadu_ps(src + 7 * ld) : z;
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(d + stride, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(d + 2 * stride, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(d + 3 * stride, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(d + 4 * stride, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(d + 5 * stride, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(d + 6 * stride, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(d + 7 * stride, _mm256_permute2f128_ps(s3, s7, 0x31));
}

/* A transposed B's panel, 8 x 8 blocks at a time: down a whole K block one element at a time, every store of the
 * scalar loop went to another line of the panel (128 x 512 x 512 products with a transposed B spent 11 % of their
 * time packing; 0.91x OpenBLAS at one thread). */
__attribute__((target("avx2"))) void fn_gemm_pack_bt_avx2(float *restrict dst, const float *restrict b, int64_t ldb,
                                                           int64_t kc, int nr) {
    for (int64_t k0 = 0; k0 < kc; k0 += 8)
        for (int j0 = 0; j0 < nr; j0 += 8) transpose8(dst + k0 * nr + j0, nr, b + j0 * ldb + k0, ldb, 8);
}

/* 6 rows of a row-major A as a k-major panel, 8 values of k at a time. For shallow products only (tile_loop): read
 * in place, six rows of a few values each ran the kernel at 58 GFLOP/s on 128 x 512 x 10 (one thread), packed at
 * 90. */
__attribute__((target("avx2"))) static void pack_ak(float *restrict dst, const float *restrict a, int64_t lda,
                                                     int64_t kc) {
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8) transpose8(dst + k0 * 6, 6, a + k0, lda, 6);
    for (; k0 < kc; k0++)
        for (int i = 0; i < 6; i++) dst[k0 * 6 + i] = a[i * lda + k0];
}

/* R < 6 rows x 16 columns, A read in place: what the 6x16 kernel gives those rows, without packing them into a
 * zero-padded panel and computing 6. A 128-row product is 21 micro-panels and 2 rows: the full kernel on the
 * padded panel spent 6 rows' work (and a pack of A per B panel) on those 2, 3 % of the product. Inlined with R
 * constant. The sums are named registers, not arrays: from arrays GCC kept rows 1 to R - 1 in registers but also
 * stored them to the stack at every k, 6 stores an iteration for 4 rows (conv2's Winograd backward, whose filter
 * products end in two 4-row edges: 0.988x the time with named registers, one thread). */
#define FN_EDGE_FMA(i, lo, hi, b0, b1) /* row i's sums lo##i, hi##i (16 columns) += its element of A * (b0, b1) */ \
    if (R > i) {                                                                                                  \
        const __m256 ai = _mm256_broadcast_ss(a + i * rs_a);                                                      \
        lo##i = _mm256_fmadd_ps(ai, b0, lo##i), hi##i = _mm256_fmadd_ps(ai, b1, hi##i);                           \
    }
#define FN_EDGE_STORE(i, lo, hi, col) /* row i's sums into C's 16 columns from col */                             \
    if (R > i) {                                                                                                  \
        float *ci = c + i * ldc + (col);                                                                          \
        if (accumulate)                                                                                           \
            lo##i = _mm256_add_ps(_mm256_loadu_ps(ci), lo##i),                                                     \
            hi##i = _mm256_add_ps(_mm256_loadu_ps(ci + 8), hi##i);                                                \
        _mm256_storeu_ps(ci, lo##i), _mm256_storeu_ps(ci + 8, hi##i);                                             \
    }
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void edge_rows(
    const int R, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b,
    float *restrict c, int64_t ldc, int accumulate) {
    __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0,
           lo4 = lo0, hi4 = lo0;
    for (int64_t k = 0; k < kc; k++, a += cs_a, b += 16) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        FN_EDGE_FMA(0, lo, hi, b0, b1) FN_EDGE_FMA(1, lo, hi, b0, b1) FN_EDGE_FMA(2, lo, hi, b0, b1)
        FN_EDGE_FMA(3, lo, hi, b0, b1) FN_EDGE_FMA(4, lo, hi, b0, b1)
    }
    FN_EDGE_STORE(0, lo, hi, 0) FN_EDGE_STORE(1, lo, hi, 0) FN_EDGE_STORE(2, lo, hi, 0) FN_EDGE_STORE(3, lo, hi, 0)
    FN_EDGE_STORE(4, lo, hi, 0)
}

__attribute__((target("avx2,fma"))) static void ukernel_avx2_edge(int rows, int64_t kc, const float *restrict a,
                                                                  int64_t rs_a, int64_t cs_a, const float *restrict b,
                                                                  float *restrict c, int64_t ldc, int accumulate) {
    switch (rows) {
    case 1: edge_rows(1, kc, a, rs_a, cs_a, b, c, ldc, accumulate); break;
    case 2: edge_rows(2, kc, a, rs_a, cs_a, b, c, ldc, accumulate); break;
    case 3: edge_rows(3, kc, a, rs_a, cs_a, b, c, ldc, accumulate); break;
    case 4: edge_rows(4, kc, a, rs_a, cs_a, b, c, ldc, accumulate); break;
    default: edge_rows(5, kc, a, rs_a, cs_a, b, c, ldc, accumulate); break;
    }
}

/* edge_rows on two B panels side by side (b and b2; C's 32 columns from c), for R <= 2 rows: each element the same
 * FMAs in the same order. On one panel a 2-row edge is 4 chains of FMAs, each waiting out the last one's latency
 * (4 cycles on Zen): 4 FMAs in the time the 6-row kernel issues 8. On two panels, 8 chains (3 rows would be 12
 * sums, 4 B vectors and a broadcast: GCC spilled 3 sums to the stack at every k). */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void edge_pair_rows(
    const int R, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b,
    const float *restrict b2, float *restrict c, int64_t ldc, int accumulate) {
    __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, pl0 = lo0, ph0 = lo0, pl1 = lo0, ph1 = lo0;
    for (int64_t k = 0; k < kc; k++, a += cs_a, b += 16, b2 += 16) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), d0 = _mm256_loadu_ps(b2),
               d1 = _mm256_loadu_ps(b2 + 8);
        /* in registers: GCC made each FMA load its B vector (10 loads a k for 8 FMAs); under perf the 2-row edge
         * of 128 x 512 x 784 took 2.2 % of its time so, 1.6-1.7 % after, 1.4 % at the full kernel's rate */
        __asm__("" : "+x"(b0), "+x"(b1), "+x"(d0), "+x"(d1));
        FN_EDGE_FMA(0, lo, hi, b0, b1) FN_EDGE_FMA(1, lo, hi, b0, b1)
        FN_EDGE_FMA(0, pl, ph, d0, d1) FN_EDGE_FMA(1, pl, ph, d0, d1)
    }
    FN_EDGE_STORE(0, lo, hi, 0) FN_EDGE_STORE(1, lo, hi, 0) FN_EDGE_STORE(0, pl, ph, 16) FN_EDGE_STORE(1, pl, ph, 16)
}
#undef FN_EDGE_FMA
#undef FN_EDGE_STORE

__attribute__((target("avx2,fma"))) static void ukernel_avx2_edge_pair(int rows, int64_t kc, const float *restrict a,
                                                                       int64_t rs_a, int64_t cs_a,
                                                                       const float *restrict b,
                                                                       const float *restrict b2, float *restrict c,
                                                                       int64_t ldc, int accumulate) {
    if (rows == 1) edge_pair_rows(1, kc, a, rs_a, cs_a, b, b2, c, ldc, accumulate);
    else edge_pair_rows(2, kc, a, rs_a, cs_a, b, b2, c, ldc, accumulate);
}

/* acc[i * n + j] += sum over k < kc of a[i * rs_a + k * cs_a] * b[k * ldb + j], for R < 6 rows: one FMA per k in
 * K order (acc from zero: what edge_rows gives each element), B streamed row by row in place. U rows of B meet
 * each vector of sums between its load and its store (OpenBLAS's gemv takes four columns a pass too): one at a
 * time, the sums' loads and stores bound the loop. See fn_ukernel's rows. */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void rows_axpy(
    const int R, const int U, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
    const float *restrict b, int64_t ldb, int64_t n, float *restrict acc) {
    const int64_t nv = n / 8 * 8;
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - nv)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    int64_t k = 0;
    for (; k + U <= kc; k += U, b += U * ldb) {
        __m256 x[5][4];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < U; t++) x[i][t] = _mm256_broadcast_ss(a + i * rs_a + (k + t) * cs_a);
        for (int64_t j = 0; j < n; j += 8) {
            const int full = j < nv;
            __m256 bv[4];
            for (int t = 0; t < U; t++)
                bv[t] = full ? _mm256_loadu_ps(b + t * ldb + j) : _mm256_maskload_ps(b + t * ldb + j, tail);
            for (int i = 0; i < R; i++) {
                float *ci = acc + i * n + j;
                __m256 s = full ? _mm256_loadu_ps(ci) : _mm256_maskload_ps(ci, tail);
                for (int t = 0; t < U; t++) s = _mm256_fmadd_ps(x[i][t], bv[t], s);
                if (full) _mm256_storeu_ps(ci, s);
                else _mm256_maskstore_ps(ci, tail, s);
            }
        }
    }
    for (; k < kc; k++, b += ldb)
        for (int i = 0; i < R; i++) {
            const __m256 x = _mm256_broadcast_ss(a + i * rs_a + k * cs_a);
            float *ci = acc + i * n;
            for (int64_t j = 0; j < nv; j += 8)
                _mm256_storeu_ps(ci + j, _mm256_fmadd_ps(x, _mm256_loadu_ps(b + j), _mm256_loadu_ps(ci + j)));
            if (nv < n)
                _mm256_maskstore_ps(ci + nv, tail, _mm256_fmadd_ps(x, _mm256_maskload_ps(b + nv, tail),
                                                                   _mm256_maskload_ps(ci + nv, tail)));
        }
}

/* rows_axpy for n <= 16 columns (a classifier's outputs): the sums stay in registers over all of K. Through
 * acc, each pass of U rows waited on the store and reload of the sums (a masked one for the last n % 8, which
 * does not forward): the MLP's 512 x 10 output layer took 1.2 us at batch 1, now 0.7 (its 512 FMAs in order,
 * near their latency). The same FMAs in the same order as rows_axpy. The sums are named registers, as in
 * edge_rows: from an array GCC also stored them to the stack at every k, 10 stores an iteration for 5 rows
 * (5 x 512 x 10: 26 GFLOP/s, 34.5 in registers). */
#define FN_NARROW_FMA(i)                                                                                          \
    if (R > i) {                                                                                                  \
        const __m256 x = _mm256_broadcast_ss(a + i * rs_a);                                                       \
        s##i##0 = _mm256_fmadd_ps(x, b0, s##i##0);                                                                \
        if (V > 1) s##i##1 = _mm256_fmadd_ps(x, b1, s##i##1);                                                     \
    }
#define FN_NARROW_IO(i, OP)                                                                                       \
    if (R > i) {                                                                                                  \
        OP(s##i##0, acc + i * n, m0);                                                                             \
        if (V > 1) OP(s##i##1, acc + i * n + 8, m1);                                                              \
    }
#define FN_NARROW_LOAD(s, p, m) s = _mm256_maskload_ps(p, m)
#define FN_NARROW_STORE(s, p, m) _mm256_maskstore_ps(p, m, s)
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void rows_narrow(
    const int R, const int V, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
    const float *restrict b, int64_t ldb, int64_t n, float *restrict acc) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane),
                  m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n - 8), lane);
    __m256 s00, s01, s10, s11, s20, s21, s30, s31, s40, s41;
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = _mm256_setzero_ps();
    FN_NARROW_IO(0, FN_NARROW_LOAD) FN_NARROW_IO(1, FN_NARROW_LOAD) FN_NARROW_IO(2, FN_NARROW_LOAD)
    FN_NARROW_IO(3, FN_NARROW_LOAD) FN_NARROW_IO(4, FN_NARROW_LOAD)
    for (int64_t k = 0; k < kc; k++, a += cs_a, b += ldb) {
        const __m256 b0 = _mm256_maskload_ps(b, m0), b1 = V > 1 ? _mm256_maskload_ps(b + 8, m1) : b0;
        FN_NARROW_FMA(0) FN_NARROW_FMA(1) FN_NARROW_FMA(2) FN_NARROW_FMA(3) FN_NARROW_FMA(4)
    }
    FN_NARROW_IO(0, FN_NARROW_STORE) FN_NARROW_IO(1, FN_NARROW_STORE) FN_NARROW_IO(2, FN_NARROW_STORE)
    FN_NARROW_IO(3, FN_NARROW_STORE) FN_NARROW_IO(4, FN_NARROW_STORE)
}
#undef FN_NARROW_FMA
#undef FN_NARROW_IO
#undef FN_NARROW_LOAD
#undef FN_NARROW_STORE

/* R rows (a constant): rows_narrow with one or two vectors of columns, else rows_axpy, U rows of B a pass. */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void rows_any(
    const int R, const int U, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
    const float *restrict b, int64_t ldb, int64_t n, float *restrict acc) {
    if (n <= 8) rows_narrow(R, 1, kc, a, rs_a, cs_a, b, ldb, n, acc);
    else if (n <= 16) rows_narrow(R, 2, kc, a, rs_a, cs_a, b, ldb, n, acc);
    else rows_axpy(R, U, kc, a, rs_a, cs_a, b, ldb, n, acc);
}

__attribute__((target("avx2,fma"))) void fn_gemm_rows_avx2(int rows, int64_t kc, const float *restrict a,
                                                           int64_t rs_a, int64_t cs_a, const float *restrict b,
                                                           int64_t ldb, int64_t n, float *restrict acc) {
    switch (rows) { /* U rows of B a pass, as many as the registers hold beside R rows' U broadcasts */
    case 1: rows_any(1, 4, kc, a, rs_a, cs_a, b, ldb, n, acc); break;
    case 2: rows_any(2, 4, kc, a, rs_a, cs_a, b, ldb, n, acc); break;
    case 3: rows_any(3, 3, kc, a, rs_a, cs_a, b, ldb, n, acc); break;
    case 4: rows_any(4, 2, kc, a, rs_a, cs_a, b, ldb, n, acc); break;
    default: rows_any(5, 2, kc, a, rs_a, cs_a, b, ldb, n, acc); break;
    }
}

static const fn_ukernel ukernels[2] = {{6, 16, ukernel_avx2_6x16, "avx2", FN_BF16_NONE, 0, NULL, NULL, NULL,
                                        fn_gemm_pack_bt_avx2, 1, pack_ak, ukernel_avx2_edge, fn_gemm_rows_avx2,
                                        ukernel_avx2_edge_pair},
                                       {6, 16, ukernel_avx2_6x16, "avx2+bf16", FN_BF16_ROUNDED, 0, NULL, NULL,
                                        NULL}};
const fn_ukernel *fn_ukernel_avx2(int bf16) { return &ukernels[bf16 != 0]; }
#else
const fn_ukernel *fn_ukernel_avx2(int bf16) { (void)bf16; return NULL; }
#endif
