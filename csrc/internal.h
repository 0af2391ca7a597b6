/* Private helpers shared by the kernel files; not part of the C API. */
#ifndef FN_INTERNAL_H
#define FN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "conv2d.h"

#ifdef _OPENMP
#include <omp.h>
static inline int fn_thread_id(void) { return omp_get_thread_num(); }
static inline int fn_team_size(void) { return omp_get_num_threads(); }
#else
static inline int fn_thread_id(void) { return 0; }
static inline int fn_team_size(void) { return 1; }
#endif

/* Elementwise loops are compiled for AVX-512, AVX2 and the baseline, picked at load time (GCC ifuncs). The
 * OpenMP body is outlined into a function of its own, so the clones go on a block helper it calls. GCC 12
 * knows the x86-64-v3/v4 level names; elsewhere the baseline build is used. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__)
#define FN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FN_VECTOR_CLONES
#endif

/* Flush denormals to zero inside kernels (and restore the caller's mode): a decaying optimizer slot or
 * activation must not slow training down by orders of magnitude. */
#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
static inline unsigned fn_ftz_enter(void) {
    const unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ | DAZ */
    return old;
}
static inline void fn_ftz_leave(unsigned old) { _mm_setcsr(old); }
#else
static inline unsigned fn_ftz_enter(void) { return 0; }
static inline void fn_ftz_leave(unsigned old) { (void)old; }
#endif

static inline int64_t fn_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fn_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t fn_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t fn_round_up(int64_t a, int64_t b) { return fn_ceil_div(a, b) * b; }

/* How many of the caller's n_threads a parallel region takes: no more than its work keeps busy, a grain each.
 * A region pays for every thread it wakes and meets at its barrier: about a microsecond on a bare many-core
 * machine, far more on the virtual ones measured (on a 16-core Xeon VM, a 128 x 10 x 512 GEMM took 35 us at 16
 * threads, a 128 x 10 dense forward 26 us). A grain is some 5-20 us of one core's work, so a region of less than
 * that runs on the calling thread alone and wakes none. Results never depend on the thread count (reductions
 * are fixed chunks in a fixed order: fastnet.h), so this changes no bit.
 * FN_GRAIN_ELEMENTS: elements of an elementwise or row kernel, each a pass of a few loads, stores and
 * multiply-adds (0.2-0.7 ns per element on one core of the 2-core EPYC; PyTorch's parallel_for takes the same
 * 32 K); an element that costs an exp, log or tanh counts as FN_COST_EXP elements (5-37 ns there).
 * FN_GRAIN_MACS: multiply-adds of a GEMM (0.5 MFLOP). */
#define FN_GRAIN_ELEMENTS ((int64_t)1 << 15)
#define FN_COST_EXP 32
#define FN_GRAIN_MACS ((int64_t)1 << 18)
static inline int fn_threads_for(int64_t work, int64_t grain, int n_threads) {
    return (int)fn_max64(1, fn_min64(n_threads, fn_ceil_div(work, grain)));
}
/* The threads of an elementwise or row kernel over `elements`, in a function with an n_threads argument. */
#define FN_ELEMENT_THREADS(elements) fn_threads_for((elements), FN_GRAIN_ELEMENTS, n_threads)

/* Parallel regions that cost nothing when they run on one thread. libgomp builds a team even for one thread:
 * 0.4 us a region on the 2-core EPYC (first_nonfinite of one float took 0.47 us a call through a region, 0.09
 * without), and one image through a network, or a small model's training step, runs a dozen regions that
 * fn_threads_for keeps to one thread. Those run here on the calling thread with no OpenMP call; an orphaned
 * `omp for` inside then runs whole on that thread (OpenMP's rule outside a region). The same code runs either
 * way, so no bit changes.
 *   FN_PARALLEL(nt, call): `#pragma omp parallel num_threads(nt)` over call (each thread runs it).
 *   FN_PARALLEL_FOR(nt, i, n, body...): for (int64_t i = 0; i < n; i++) { body }, statically split over nt. */
#define FN_PARALLEL(nt, ...)                                                                        \
    do {                                                                                            \
        const int fn_nt_ = (nt);                                                                    \
        if (fn_nt_ > 1) {                                                                           \
            _Pragma("omp parallel num_threads(fn_nt_)") { __VA_ARGS__; }                            \
        } else {                                                                                    \
            __VA_ARGS__;                                                                            \
        }                                                                                           \
    } while (0)
#define FN_PARALLEL_FOR(nt, i, n, ...)                                                              \
    do {                                                                                            \
        const int fn_nt_ = (nt);                                                                    \
        const int64_t fn_n_ = (n);                                                                  \
        if (fn_nt_ > 1) {                                                                           \
            _Pragma("omp parallel for schedule(static) num_threads(fn_nt_)")                        \
            for (int64_t i = 0; i < fn_n_; i++) { __VA_ARGS__; }                                    \
        } else {                                                                                    \
            for (int64_t i = 0; i < fn_n_; i++) { __VA_ARGS__; }                                    \
        }                                                                                           \
    } while (0)

/* A barrier for the threads of one parallel region without a system call: libgomp's wakes its waiters with a
 * futex call whether or not one sleeps (0.15 us; one image through the MLP passed three). It spins, then yields
 * the core, so a thread waiting on a descheduled one (more threads than cores) gives its time slice back. The
 * region's threads share one, declared before the region as FN_BARRIER; outside a region it returns at once. */
typedef struct {
    int arrived, round;
} fn_barrier;
#define FN_BARRIER {0, 0}
void fn_barrier_wait(fn_barrier *b);

/* Elementwise kernels split their n elements into blocks of this many, one block per loop iteration, on the
 * threads (the caller's n_threads at most) that `work` elements' worth of grains keeps busy. */
#define FN_BLOCK 8192
#define FN_FOR_BLOCKS_OF(work, n, i0, len, body)                                                    \
    {                                                                                               \
        FN_PARALLEL_FOR(FN_ELEMENT_THREADS(work), blk_, fn_ceil_div((n), FN_BLOCK),                 \
                        const int64_t i0 = blk_ * FN_BLOCK, len = fn_min64(FN_BLOCK, (n) - i0);     \
                        const unsigned csr_ = fn_ftz_enter(); body; fn_ftz_leave(csr_));           \
    }
#define FN_FOR_BLOCKS(n, i0, len, body) FN_FOR_BLOCKS_OF(n, n, i0, len, body)

/* Workspace carving: every slice is 64-byte aligned; FN_WS_PAD floats of slack per slice. */
#define FN_WS_PAD 16
static inline float *fn_align64(float *p) {
    uintptr_t u = (uintptr_t)p;
    return (float *)((u + 63u) & ~(uintptr_t)63u);
}

/* Register-blocked micro-kernel: C[0:mr, 0:nr] (=|+=) A[0:mr, 0:kc] . Bp[kc x nr].
 * float32 operands (bf16 == FN_BF16_NONE or FN_BF16_ROUNDED): A's element (i, k) at a[i*rs_a + k*cs_a], with
 * rs_a == 1 or cs_a == 1 (a row-major or a transposed operand read in place, or a k-major panel), and Bp is a
 * packed panel, element (k, j) at b[k*nr + j]. Pairs (FN_BF16_PAIRS): B is a packed panel of bfloat16 pairs along
 * K, slot (p, j) at b[p*nr + j], and A a panel of pairs made by fn_gemm_pack_a, slot (i, p) at a[i*rs_a + p*cs_a]
 * with rs_a == 1 or cs_a == 1 as above; the kernel reads ceil(kc/2) slots per row and column.
 * The product is always summed from zero and then stored or added, so an edge tile computed through a
 * temporary buffer rounds exactly like a full tile (results never depend on the tiling). */
typedef void (*fn_ukernel_fn)(int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
                              const float *restrict b, float *restrict c, int64_t ldc, int accumulate);
typedef struct {
    int mr, nr;
    fn_ukernel_fn kernel;
    const char *name;
    int bf16; /* how its operands are packed: FN_BF16_NONE, FN_BF16_ROUNDED or FN_BF16_PAIRS */
    int rows_only; /* 1: A must come as rows (cs_a == 1; the AMX kernel's tile loads), never k-major */
    /* NULL, or called by a thread before and after a run of its kernel calls (fn_ukernel_enter, fn_ukernel_leave;
     * the GEMM's tile loop does): the AMX kernel configures its tiles there once, not per call. Only float32
     * kernels (which have none) are called outside it: the Winograd products, the direct data gradient. */
    void (*enter)(void);
    void (*leave)(void);
    /* NULL, or (AMX) a 32 x 32 block of a convolution over 32-channel pixels without im2col, between enter and
     * leave: acc = sum over taps t of A_t . B_t, row r of A_t the pixel's 16 pair slots at a + (r + off[t]) * 16,
     * B_t the 16 pair rows at b + t * 16 * 32 (conv2d.c, direct_rows). */
    void (*taps)(float *restrict acc, const float *restrict a, const int64_t *restrict off, int ntaps,
                 const float *restrict b);
    /* NULL, or a float32 panel of a transposed B in 8 x 8 register transposes: dst[k * nr + j] = b[j * ldb + k]
     * for j < nr and k < kc, kc a multiple of 8 (fn_gemm_pack_b does the rest). */
    void (*pack_bt)(float *restrict dst, const float *restrict b, int64_t ldb, int64_t kc, int nr);
    int fma; /* 1: its float32 products are FMAs summed from zero in K order (what the direct convolutions match) */
    /* NULL, or mr whole rows of a row-major A as a k-major panel: dst[t * mr + i] = a[i * lda + t] for t < kc, the
     * kernel then reading it with rs_a = 1, cs_a = mr; dst has room for 8 floats past mr * kc. */
    void (*pack_ak)(float *restrict dst, const float *restrict a, int64_t lda, int64_t kc);
    /* NULL, or the float32 kernel for rows < mr rows of A read in place (as kernel reads mr): the same FMAs in the
     * same order for each element, so an edge of rows gives what the full kernel on a zero-padded panel gives. */
    void (*edge)(int rows, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b,
                 float *restrict c, int64_t ldc, int accumulate);
    /* NULL, or rows <= FN_ROWS_MAX rows of A by B read in place, row by row, the sums kept in acc (rows x n, zeroed
     * by the caller): each element the FMAs of edge, in the same order. A product of fewer than mr rows reads each
     * element of B once: packing B would copy all of it for that one use (one image through the MLP packed
     * 2.7 MB of weights), and reading it a panel at a time reads 64 bytes of every row of B. */
    void (*rows)(int rows, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a, const float *restrict b,
                 int64_t ldb, int64_t n, float *restrict acc);
    /* NULL, or edge on two whole B panels at once (b, b2: C's 2 * nr columns from c), for rows <= FN_EDGE_PAIR_ROWS:
     * each element edge's FMAs, in the same order. */
    void (*edge_pair)(int rows, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
                      const float *restrict b, const float *restrict b2, float *restrict c, int64_t ldc,
                      int accumulate);
} fn_ukernel;
#define FN_EDGE_PAIR_ROWS 2
/* The AVX2 ones (gemm_avx2.c), for the AVX2 and AVX-512 float32 kernels (the same FMAs in the same order for every
 * element); built where they are. */
void fn_gemm_pack_bt_avx2(float *restrict dst, const float *restrict b, int64_t ldb, int64_t kc, int nr);
void fn_gemm_rows_avx2(int rows, int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
                       const float *restrict b, int64_t ldb, int64_t n, float *restrict acc);
static inline void fn_ukernel_enter(const fn_ukernel *uk) {
    if (uk->enter) uk->enter();
}
static inline void fn_ukernel_leave(const fn_ukernel *uk) {
    if (uk->leave) uk->leave();
}
/* Operand formats of a micro-kernel. NONE: float32. ROUNDED (the portable bfloat16 path): float32 slots, each
 * value rounded to bfloat16 as it is packed. PAIRS (the native path): each 32-bit slot holds two consecutive k of
 * one row (A) or column (B) as bfloat16, k = 2p in the low half and 2p + 1 in the high half (zero past K): half
 * the slots of a float32 panel, laid out like it otherwise. A pair is a bit pattern, not a number: it is only ever
 * moved (under DAZ, 1.0f * a pair whose high half is zero would read as a denormal and flush to zero). */
enum { FN_BF16_NONE = 0, FN_BF16_ROUNDED = 1, FN_BF16_PAIRS = 2 };

/* x rounded to the nearest bfloat16 (ties to even), kept in a float: the low 16 bits zero. NaN stays NaN
 * (quieted), infinities stay, and finite values past bfloat16's largest round to infinity, as a conversion
 * instruction does. */
static inline float fn_round_bf16(float x) {
    union { float f; uint32_t u; } v = {x};
    const uint32_t nan = (v.u & 0x7fffffffu) > 0x7f800000u; /* branch-free, so loops of it vectorize */
    v.u = (nan ? v.u | 0x00400000u : v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
    return v.f;
}
/* fn_round_bf16 over n floats in place (gemm.c). */
void fn_round_bf16_array(float *x, int64_t n);
/* lo and hi rounded to bfloat16 and packed into one 32-bit slot (lo in the low half), returned as a float's bits. */
static inline float fn_bf16_pair(float lo, float hi) {
    union { float f; uint32_t u; } l = {fn_round_bf16(lo)}, h = {fn_round_bf16(hi)}, v;
    v.u = (l.u >> 16) | h.u;
    return v.f;
}

/* Largest micro-tile of any ISA path; workspace queries use these so they never depend on the ISA. */
#define FN_MR_MAX 32
#define FN_ROWS_MAX 5 /* fn_ukernel's rows: at most this many rows (the AVX2 kernel's mr - 1) */
#define FN_NR_MAX 32
#define FN_KC_MAX 512 /* K is cut into equal blocks of at most this many (a multiple of 8) */
/* Floats of an A micro-panel buffer (on the stack of the tile loops): mr x kc slots at most. Only the AMX kernel has
 * mr > 8, and it takes pairs (kc/2 slots per row), so half of FN_KC_MAX * FN_MR_MAX is enough. */
#define FN_PANEL_FLOATS (FN_KC_MAX * FN_MR_MAX / 2)
_Static_assert(FN_KC_MAX * 8 <= FN_PANEL_FLOATS, "a float32 panel of 8 rows must fit");

/* The micro-kernel of an FN_ISA_* path for its operands' precision: with FN_BFLOAT16, VDPBF16PS on
 * FN_ISA_AVX512_BF16, TDPBF16PS on FN_ISA_AMX_BF16, the portable (ROUNDED) one elsewhere. */
const fn_ukernel *fn_gemm_ukernel(int isa, int precision);
const fn_ukernel *fn_ukernel_avx512(int bf16); /* NULL when the compiler cannot build it */
const fn_ukernel *fn_ukernel_avx2(int bf16);
const fn_ukernel *fn_ukernel_avx512bf16(void); /* the PAIRS kernel; NULL when the compiler cannot build it */
const fn_ukernel *fn_ukernel_amx(void);        /* the AMX PAIRS kernel (32x32); NULL likewise */
int fn_amx_permitted(void);                    /* 1 once Linux has granted this process AMX's tile data */

/* The K-block length used for a product of depth K (a function of K alone). */
int64_t fn_gemm_kc(int64_t K);
/* Rows of op(A) per cache block of a float32 tile (a multiple of mr, from this CPU's L2: only the order of work). */
int64_t fn_gemm_mc(int mr, int64_t kc);
/* 1 when op(B) is already laid out as its own packing (one NR-wide panel, untransposed): use B as bp. */
int fn_gemm_b_is_packed(const fn_ukernel *uk, int trans_b, int64_t N, int64_t ldb);

#define FN_SHALLOW_K 32 /* K blocks this shallow pack a row-major A per micro-panel (uk->pack_ak) */
#define FN_AT_USE_NR 16 /* the widest B panel packed at use (fn_gemm_job's b_at_use): AVX-512's 32 not measured */
/* Floats from one k-major micro-panel of a packed op(A) to the next (fn_gemm_job's ap): room past each panel for
 * pack_ak's overhanging stores, so panels packed by different threads never share a float. */
static inline int64_t fn_gemm_a_panel_stride(const fn_ukernel *uk, int64_t K) { return fn_gemm_kc(K) * uk->mr + 8; }

/* Pack all of op(B) (K x N) into K-blocks of NR-wide panels. Panels [q0, q1) only (for parallel packing). */
void fn_gemm_pack_b(const fn_ukernel *uk, float *restrict bp, const float *restrict b, int64_t ldb,
                    int trans_b, int64_t K, int64_t N, int64_t q0, int64_t q1);
/* Panels of a row-major float32 B: kcb rows of b (ldb apart) by its first jn columns, into ceil(jn / nr) panels
 * (kcb x nr, the last zero-padded) kcb * nr floats apart from dst: a panel of fn_gemm_pack_b, or those a tile packs
 * as it first uses them (fn_gemm_job's b_at_use). */
void fn_gemm_pack_b_panels(float *restrict dst, const float *restrict b, int64_t ldb, int64_t kcb, int64_t jn,
                           int nr);
/* Panels of a transposed float32 B (stored N x K, ldb apart): its first jn rows from b by kcb columns, into
 * ceil(jn / nr) panels laid out as fn_gemm_pack_b_panels lays them (the last zero-padded). */
void fn_gemm_pack_bt_panels(const fn_ukernel *uk, float *restrict dst, const float *restrict b, int64_t ldb,
                            int64_t kcb, int64_t jn);

/* A micro-panel of op(A) in the micro-kernel's format: rows x kc of a (element (i, k) at a[i*rs + k*cs]) times
 * alpha, zero-padded to mr rows (and to a whole pair), rounded to bfloat16 on a bfloat16 path. dst holds
 * FN_PANEL_FLOATS floats; the kernel then reads it with rs_a = *prs, cs_a = *pcs (in slots). */
void fn_gemm_pack_a(const fn_ukernel *uk, float *restrict dst, const float *restrict a, int64_t rs, int64_t cs,
                    int64_t rows, int64_t kc, float alpha, int64_t *prs, int64_t *pcs);
/* Rows [i0, i1) of op(A) (element (i, k) at a[i*rs + k*cs], times alpha), slots [t0, t1), into the row-major slot
 * matrix dst (slot (i, t) at dst[i*ld + t]) of format fmt: a GEMM job's op(A) converted once (gemm_pack.c). */
void fn_gemm_a_slots_block(int fmt, float *restrict dst, int64_t ld, const float *restrict a, int64_t rs, int64_t cs,
                           int64_t K, int64_t i0, int64_t i1, int64_t t0, int64_t t1, float alpha);
/* An edge of rows (< mr) of an A already in slots, len slots each, copied bit for bit into dst with zero rows below,
 * laid out as fn_gemm_pack_a lays it out; the kernel then reads it with rs_a = *prs, cs_a = *pcs. */
void fn_gemm_copy_slot_rows(int mr, int rows_only, float *restrict dst, const float *restrict a, int64_t rs,
                            int64_t cs, int64_t rows, int64_t len, int64_t *prs, int64_t *pcs);

/* op(A) converted ahead of the GEMM into the micro-kernel's slots (fmt = uk->bf16), for callers that make A
 * anyway (im2col) and so save the per-panel conversion: fn_gemm_slots writes n consecutive elements of k as
 * ceil(n/2) pairs (the last one's high half zero when n is odd), n rounded floats, or n floats;
 * fn_gemm_slots_interleave writes the pairs of two rows lo, hi (elements k and k + 1 of n columns; hi NULL: zero).
 * fn_gemm_tile_slots then multiplies such an A read in place: slot (i, t) at a[i*lda + t] (trans_a = 0) or
 * a[t*lda + i] (trans_a = 1), where t = k, or k / 2 for pairs. K may be odd: its last pair is half zero. */
void fn_gemm_slots(int fmt, float *restrict dst, const float *restrict src, int64_t n);
void fn_gemm_slots_interleave(float *dst, const float *lo, const float *hi, int64_t n);
void fn_gemm_tile_slots(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N, int64_t K,
                        const float *a, int64_t lda, int trans_a, const float *bp, float beta, float *c, int64_t ldc);

/* Single-threaded C = alpha op(A) op(B_packed) + beta C, rows [m0, m1) and NR-panels [q0, q1) of C only. */
void fn_gemm_tile(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N,
                  int64_t K, float alpha, const float *a, int64_t lda, int trans_a, const float *bp,
                  float beta, float *c, int64_t ldc);

/* A GEMM as items any thread of a parallel region runs, so a kernel runs several GEMMs (and its own work) in one
 * region: fn_gemm_job_init plans C = alpha op(A) op(B) + beta C on ws (fn_gemm_job_workspace floats of its own:
 * fn_gemm_workspace's, less where op(A) is transposed);
 * fn_gemm_job_init_prepacked on a B packed by fn_gemm_pack (ws: fn_gemm_prepacked_workspace floats, or NULL).
 * Every pack item (B's panels, op(A)'s bfloat16 slot blocks) must finish before any tile item starts; a tile item
 * computes rows [m0, m1) and columns [j0, j1) of C, final when it returns. fn_gemm is one job in one region. */
typedef struct {
    const fn_ukernel *uk;
    int trans_a, trans_b;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *bp, *C;
    int64_t mpanels, mtiles, npanels, nq, ntiles_n; /* the tiling: micro-panels of rows into mtiles row blocks, B's
                                                      * panels in groups of nq (ntiles_n groups) */
    int64_t b_packs;                           /* B panels to pack (0: B is used as it is, or prepacked) */
    int b_rows;                                /* B read in place, row by row, by uk->rows (bp NULL) */
    int b_at_use;                              /* B's panels packed by the tiles as they use them (bp unused) */
    int64_t kblocks;                           /* b_rows: > 1 when the K blocks' sums are made side by side */
    float *partials;                           /* ... into kblocks x M x N floats, then summed in K order */
    float *a_slots;                            /* op(A) converted once, row-major (NULL: per tile) */
    int64_t a_len, a_nblk_t, a_blocks;
    float *ap;                                 /* float32 op(A) packed once into k-major panels (NULL: in place) */
    int64_t a_panels;                          /* ... its pack items, one per whole micro-panel of rows */
} fn_gemm_job;
int64_t fn_gemm_job_workspace(int trans_a, int64_t M, int64_t N, int64_t K, int isa, int precision);
void fn_gemm_job_init(fn_gemm_job *j, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                      int isa, int precision, float *ws, int n_threads);
void fn_gemm_job_init_prepacked(fn_gemm_job *j, int trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                                const float *A, int64_t lda, const float *bp, float beta, float *C, int64_t ldc,
                                int isa, int precision, float *ws, int n_threads);
int64_t fn_gemm_job_packs(const fn_gemm_job *j);
void fn_gemm_job_pack(const fn_gemm_job *j, int64_t item);
void fn_gemm_job_pack_b(const fn_gemm_job *j, int64_t q0, int64_t q1); /* B's pack items [q0, q1) at once */
int64_t fn_gemm_job_tiles(const fn_gemm_job *j);
void fn_gemm_job_tile(const fn_gemm_job *j, int64_t t, int64_t *m0, int64_t *m1, int64_t *j0, int64_t *j1);
/* C[m0:m1, j0:j1] of a job, rows and columns on micro-panel bounds: one tile, or a thread's column of them (gemm.c). */
void fn_gemm_job_rows(const fn_gemm_job *j, int64_t m0, int64_t m1, int64_t j0, int64_t j1);
/* The threads a GEMM of this shape takes (n_threads at most). */
int fn_gemm_threads(int64_t M, int64_t N, int64_t K, int trans_b, float alpha, int isa, int precision, int n_threads);
/* The epilogue of every output writer, as oneDNN's post-ops, and the one place its arithmetic is written: bias
 * (per column; may be NULL), then the activation (FN_ACT_LINEAR or FN_ACT_RELU), then inverted dropout at rate (0:
 * none) with the mask stream key, the output's element (r, c) being element first + r * ld + c of the stream (the
 * values fn_dropout_forward would give). Writers: the GEMM's tiles (a dense forward applies it to each finished
 * tile, in place of passes over C after the GEMM), the im2col and tap convolutions' tiles (conv2d.c), and
 * fn_bias_act_forward, through fn_post_rows; Winograd's output tiles and the fused 2x2 max-pools, which compute
 * their outputs a value at a time, through fn_post_value. */
typedef struct {
    const float *bias;
    int act;
    float rate;
    uint64_t key, first;
    int64_t ld;
} fn_post_ops;
/* Rows [r0, r0 + rows) and columns [c0, c0 + cols) of an output: y (row stride ldy) = post(t) (row stride ldt; t
 * may be y itself: in place). */
void fn_post_rows(float *y, int64_t ldy, const float *t, int64_t ldt, int64_t r0, int64_t rows, int64_t c0,
                  int64_t cols, const fn_post_ops *p);
/* One output value: v + bias, then the ReLU where relu. (Adding a bias of 0.0f turns -0.0f into 0.0f, which the
 * ReLU does anyway: fn_post_rows adds no bias it is not given.) */
static inline float fn_post_value(float v, float bias, int relu) {
    v += bias;
    return relu ? (v > 0.0f ? v : 0.0f) : v;
}
/* Every pack item, a barrier, then every tile, in the calling parallel region; e (may be NULL) applied to each tile
 * as it is finished. Ends on a barrier: when it returns, every thread's tiles are done. bar: the region's. */
void fn_gemm_job_run(const fn_gemm_job *j, const fn_post_ops *e, fn_barrier *bar);
/* A dense forward's threads (of n_threads), its epilogue (bias, act, then inverted dropout at rate, 0: none, keyed
 * by (seed, stream) from element first: fn_dense_forward_dropout's), and its product, y = x w (w, or wp: w packed
 * by fn_gemm_pack), as a GEMM job for the threads it returns. */
int fn_dense_threads(int64_t N, int64_t I, int64_t O, int isa, int precision, int n_threads);
fn_post_ops fn_dense_post(const float *b, int64_t O, int act, float rate, uint64_t seed, uint64_t stream,
                          uint64_t first);
int fn_dense_job(fn_gemm_job *j, float *y, const float *x, const float *w, const float *wp, int64_t N, int64_t I,
                 int64_t O, int isa, int precision, float *ws, int n_threads);

/* Dropout's mask stream (dropout.c): fn_dropout_key(seed, stream) is the key fn_dropout_forward draws with;
 * fn_dropout_rows applies inverted dropout at rate to rows x cols of y in place (row stride ldy), element (r, c)
 * drawn as element i0 + r * ld + c of the stream: the values of fn_dropout_forward, without the mask. */
uint64_t fn_dropout_key(uint64_t seed, uint64_t stream);
void fn_dropout_rows(float *y, int64_t ldy, int64_t rows, int64_t cols, uint64_t i0, int64_t ld, float rate,
                     uint64_t key);


/* Chunks of images whose filter gradients are summed separately, then in order (both convolution algorithms):
 * at most 64, and no more than fit FN_FILTER_PARTIALS_MAX floats of partial sums of partial_floats each. A function
 * of the shape alone, never of the thread count, so the sum is bit-identical for any n_threads; only
 * min(n_threads, chunks) threads then need per-thread scratch. */
#define FN_FILTER_CHUNKS_MAX 64
#define FN_FILTER_PARTIALS_MAX ((int64_t)1 << 24)
static inline int64_t fn_filter_chunks(int64_t N, int64_t partial_floats) {
    const int64_t by_memory = fn_max64(1, FN_FILTER_PARTIALS_MAX / partial_floats);
    return fn_max64(1, fn_min64(fn_min64(N, FN_FILTER_CHUNKS_MAX), by_memory));
}

/* Direct convolutions of few taps (conv2d_direct.c): KH * KW * C <= 32, OC a multiple of 8 up to 256.
 * fn_conv2d_direct_fits: the shape (what FN_CONV_DIRECT and 'auto' take); fn_conv2d_direct_runs: and the GEMM path
 * (float32 FMAs), else im2col runs. Same contracts as fn_conv2d_forward and fn_conv2d_backward_filter; the filter
 * gradient's workspace is the im2col one's partials. */
int fn_conv2d_direct_fits(const fn_conv2d_shape *s);
int fn_conv2d_direct_runs(const fn_ukernel *uk, const fn_conv2d_shape *s);
void fn_conv2d_direct_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                              int act, int n_threads);
void fn_conv2d_direct_backward_filter(float *dw, float *db, const float *dy, const float *x,
                                      const fn_conv2d_shape *s, float *ws, int n_threads);

/* Winograd F(4x4, 3x3) convolutions (conv2d_winograd.c, conv2d_winograd_backward.c): 3x3 kernels, stride 1,
 * padding at most 2. Same contracts as the fn_conv2d_* kernels, which call them. */
int fn_conv2d_winograd_fits(const fn_conv2d_shape *s);
int64_t fn_conv2d_winograd_workspace(const fn_conv2d_shape *s, int n_threads);
int64_t fn_conv2d_winograd_memo_size(const fn_conv2d_shape *s);
void fn_conv2d_winograd_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                                int act, const fn_ukernel *uk, fn_weights_memo *memo, float *ws, int n_threads);
void fn_conv2d_winograd_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                                        const fn_conv2d_shape *s, const fn_ukernel *uk, fn_weights_memo *memo,
                                        float *ws, int n_threads);
/* dL/d(conv + bias) as a backward reads it: dy [N, OH, OW, OC] itself (argmax NULL), or the gradient of
 * fn_conv2d_forward_maxpool's output, dy [N, OH/2, OW/2, OC], routed to its argmax where its output pooled > 0. */
typedef struct {
    const float *dy;
    const int32_t *argmax;
    const float *pooled;
} fn_conv2d_grad;
/* fn_conv2d_backward on Winograd's tiles: dx (may be NULL; masked by relu_x, may be NULL) and dw, db (dw NULL:
 * neither; db may be NULL) in one pass over dy, x may be NULL without dw, w without dx. */
void fn_conv2d_winograd_backward(float *dx, float *dw, float *db, const fn_conv2d_grad *g, const float *x,
                                 const float *w, const float *relu_x, const fn_conv2d_shape *s, const fn_ukernel *uk,
                                 float *ws, int n_threads);

#endif
