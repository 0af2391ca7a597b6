/* GEMM: the one engine under every dense and convolution kernel.
 *
 * op(B) is packed once into K-blocks of NR-wide panels shared by all threads (or used as it is when it is already
 * one such panel, or packed panel by panel into L1 as a tile first uses it where the rows fit L2 and the threads
 * would pack no more so: packs_at_use; the packing is gemm_pack.c's); the float32 micro-kernels broadcast op(A)'s
 * elements, from k-major panels all threads pack once per GEMM (a row-major A on the AVX2 path, with several B
 * panels and B packed up front: packs_a), or in place, row-major or transposed (an edge of rows too, where the
 * kernel has an edge kernel); a shallow product's rows (K <= 32) are packed k-major per micro-panel, and an alpha's
 * per tile. bfloat16 operands are converted: op(A) once per GEMM by all threads where tiles share its rows, else by
 * each tile into an L1 panel. Tiles split C by rows and by panels, so 128-row matrices still give every thread work,
 * and are handed out column by column. */
#include <string.h>
#include <unistd.h>

#include "fastnet.h"
#include "internal.h"

/* ---- portable micro-kernel (4 x 16; the compiler vectorizes the inner loop at the baseline ISA) ---- */
static void ukernel_generic_4x16(int64_t kc, const float *restrict a, int64_t rs_a, int64_t cs_a,
                                 const float *restrict b, float *restrict c, int64_t ldc, int accumulate) {
    float acc[4][16];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < 4; i++) {
            const float ai = a[i * rs_a + k * cs_a];
            for (int j = 0; j < 16; j++) acc[i][j] += ai * b[k * 16 + j];
        }
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 16; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}
static const fn_ukernel ukernel_generic[2] = {
    {4, 16, ukernel_generic_4x16, "generic", FN_BF16_NONE, 0, NULL, NULL, NULL},
    {4, 16, ukernel_generic_4x16, "generic+bf16", FN_BF16_ROUNDED, 0, NULL, NULL, NULL}};

/* ---- the single place that maps an ISA path to its micro-kernel ---- */
int fn_gemm_cpu_max_isa(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    const int avx512 = fn_ukernel_avx512(0) && __builtin_cpu_supports("avx512f");
    if (avx512 && fn_ukernel_amx() && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("amx-bf16") &&
        fn_amx_permitted())
        return FN_ISA_AMX_BF16;
    if (avx512 && fn_ukernel_avx512bf16() && __builtin_cpu_supports("avx512bf16")) return FN_ISA_AVX512_BF16;
    if (avx512) return FN_ISA_AVX512;
    if (fn_ukernel_avx2(0) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FN_ISA_AVX2;
#endif
    return FN_ISA_GENERIC;
}

const fn_ukernel *fn_gemm_ukernel(int isa, int precision) {
    const int bf16 = precision == FN_BFLOAT16, base = isa;
    const fn_ukernel *uk = base == FN_ISA_AMX_BF16       ? (bf16 ? fn_ukernel_amx() : fn_ukernel_avx512(0))
                           : base == FN_ISA_AVX512_BF16 ? (bf16 ? fn_ukernel_avx512bf16() : fn_ukernel_avx512(0))
                           : base == FN_ISA_AVX512 ? fn_ukernel_avx512(bf16)
                           : base == FN_ISA_AVX2 ? fn_ukernel_avx2(bf16)
                                                 : NULL;
    return uk ? uk : &ukernel_generic[bf16];
}

#define FN_SHALLOW_K 32 /* K blocks this shallow pack a row-major A (uk->pack_ak) */

/* Rows of A per L2 block (a multiple of mr): half of this CPU's L2 (per core, read once) for mc x kc floats. */
static int64_t l2_bytes;
int64_t fn_gemm_mc(int mr, int64_t kc) {
    if (!l2_bytes) {
        long v = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        __atomic_store_n(&l2_bytes, v > 0 ? (int64_t)v : (int64_t)512 << 10, __ATOMIC_RELAXED);
    }
    const int64_t rows = __atomic_load_n(&l2_bytes, __ATOMIC_RELAXED) / 2 / ((int64_t)sizeof(float) * fn_max64(kc, 1));
    return fn_max64(mr, rows / mr * mr);
}

/* C[0:ib, 0:jn] (=|+=) the product a kernel left in tmp (rows nr apart), where the tile is cut by an edge. */
static inline void from_tmp(float *cp, int64_t ldc, const float *tmp, int nr, int64_t ib, int64_t jn, int accumulate) {
    for (int64_t r = 0; r < ib; r++)
        for (int64_t j = 0; j < jn; j++)
            cp[r * ldc + j] = accumulate ? cp[r * ldc + j] + tmp[r * nr + j] : tmp[r * nr + j];
}

/* One micro-tile: C[0:ib, 0:jn] (=|+=) A-panel . B-panel, through tmp where the tile is cut by an edge. */
static inline void micro_tile(const fn_ukernel *uk, int64_t kcb, const float *ap, int64_t prs, int64_t pcs,
                              const float *bq, float *cp, int64_t ldc, int64_t ib, int64_t jn, int accumulate,
                              float *tmp) {
    const int nr = uk->nr;
    if (ib == uk->mr && jn == nr) {
        uk->kernel(kcb, ap, prs, pcs, bq, cp, ldc, accumulate);
        return;
    }
    uk->kernel(kcb, ap, prs, pcs, bq, tmp, nr, 0);
    from_tmp(cp, ldc, tmp, nr, ib, jn, accumulate);
}

/* fn_gemm_tile and fn_gemm_tile_slots: with a_slots, op(A) is already in the micro-kernel's slots (alpha is 1). */
/* B read in place (b_rows, ldb), not from packed panels: a product of fewer than mr rows (uk->rows says why),
 * columns in chunks whose sums stay in L1. */
#define FN_ROWS_CHUNK 512
static void b_rows_tile(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t j0, int64_t j1, int64_t K,
                        const float *a, int64_t rs, int64_t cs, const float *b, int64_t ldb, float beta, float *c,
                        int64_t ldc) {
    float acc[FN_ROWS_MAX * FN_ROWS_CHUNK] __attribute__((aligned(64)));
    const int64_t kc = fn_gemm_kc(K), ib = m1 - m0;
    for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = fn_min64(kc, K - pc);
        const int accumulate = pc > 0 || beta != 0.0f;
        for (int64_t j = j0; j < j1; j += FN_ROWS_CHUNK) {
            const int64_t n = fn_min64(FN_ROWS_CHUNK, j1 - j);
            for (int64_t t = 0; t < ib * n; t++) acc[t] = 0.0f;
            uk->rows((int)ib, kcb, a + m0 * rs + pc * cs, rs, cs, b + pc * ldb + j, ldb, n, acc);
            from_tmp(c + m0 * ldc + j, ldc, acc, (int)n, ib, n, accumulate);
        }
    }
}

/* float32 op(A) packed once per GEMM (pack_a_panel): micro-panel p of K block b, k-major (element (i, k) at
 * [k * mr + i]), at ap + (b * mpanels + p) * a_panel_stride(uk, K). The stride leaves room past each panel for
 * pack_ak's overhanging stores (fn_ukernel), so panels packed by different threads never share a float. */
typedef struct {
    const float *ap;
    int64_t mpanels;
} a_packed;

static int64_t a_panel_stride(const fn_ukernel *uk, int64_t K) { return fn_gemm_kc(K) * uk->mr + 8; }

/* Where tile_loop reads op(B) from: its packed panels (bp); B itself, a few rows of A at a time (b_rows_tile); or
 * B's panels, each packed into L1 as the tile first uses it (fn_gemm_job's b_at_use). */
enum { B_PACKED, B_ROWS, B_AT_USE };
#define FN_AT_USE_NR 16 /* the widest panel packed at use: AVX-512's 32 columns were not measured */

static void tile_loop(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N, int64_t K,
                      float alpha, const float *a, int64_t lda, int trans_a, int a_slots, const float *bp, float beta,
                      float *c, int64_t ldc, int b_read, const float *b, int64_t ldb, const a_packed *apk) {
    const int mr = uk->mr, nr = uk->nr, step = uk->bf16 == FN_BF16_PAIRS ? 2 : 1;
    const int64_t npad = fn_round_up(N, nr), kc = fn_gemm_kc(K);
    const int64_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1;
    const int64_t j_begin = q0 * nr, j_end = fn_min64(q1 * nr, N);
    if (K == 0 || (beta != 0.0f && beta != 1.0f)) { /* C = beta*C first; the K loop then adds */
        for (int64_t i = m0; i < m1; i++)
            for (int64_t j = j_begin; j < j_end; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        beta = 1.0f;
    }
    float tmp[FN_MR_MAX * FN_NR_MAX] __attribute__((aligned(64)));
    float panel[FN_PANEL_FLOATS] __attribute__((aligned(64)));
    float bpanel[FN_KC_MAX * FN_AT_USE_NR] __attribute__((aligned(64)));
    const unsigned csr = fn_ftz_enter();
    if (b_read == B_ROWS) {
        b_rows_tile(uk, m0, m1, j_begin, j_end, K, a, rs, cs, b, ldb, beta, c, ldc);
        fn_ftz_leave(csr);
        return;
    }
    fn_ukernel_enter(uk);
    for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = fn_min64(kc, K - pc);
        const int accumulate = pc > 0 || beta != 0.0f;
        if (uk->bf16) {
            /* bfloat16 operands: each A micro-panel is rounded into `panel` once, then meets every B panel
             * (the loop order only spreads work: each element's arithmetic is the same either way). */
            for (int64_t i = m0; i < m1; i += mr) {
                const int64_t ib = fn_min64(mr, m1 - i);
                const float *ap = panel;
                int64_t prs = rs, pcs = cs;
                if (!a_slots) {
                    fn_gemm_pack_a(uk, panel, a + i * rs + pc * cs, rs, cs, ib, kcb, alpha, &prs, &pcs);
                } else if (ib == mr && (cs == 1 || !uk->rows_only)) { /* read in place; K blocks start at even
                                                                          * k, so at slot pc / step */
                    ap = a + i * rs + pc / step * cs;
                } else { /* an edge of rows (the slots copied with zero rows below), or rows for a rows_only kernel */
                    fn_gemm_copy_slot_rows(mr, uk->rows_only, panel, a + i * rs + pc / step * cs, rs, cs, ib,
                                           fn_ceil_div(kcb, step), &prs, &pcs);
                }
                for (int64_t q = q0; q < q1; q++)
                    micro_tile(uk, kcb, ap, prs, pcs, bp + pc * npad + q * kcb * nr, c + i * ldc + q * nr, ldc, ib,
                               fn_min64(nr, N - q * nr), accumulate, tmp);
            }
            continue;
        }
        if (uk->pack_ak && cs == 1 && alpha == 1.0f && kcb <= FN_SHALLOW_K) {
            /* A shallow product (the MLP's last layer's dx: depth 10): each micro-panel of a row-major A made
             * k-major once and run against every B panel of the tile (uk->pack_ak says what it buys); edge rows
             * take pack_a's row panel. */
            for (int64_t i = m0; i < m1; i += mr) {
                const int64_t ib = fn_min64(mr, m1 - i);
                int64_t prs = 1, pcs = mr;
                if (ib == mr) uk->pack_ak(panel, a + i * rs + pc, rs, kcb);
                else fn_gemm_pack_a(uk, panel, a + i * rs + pc, rs, cs, ib, kcb, alpha, &prs, &pcs);
                for (int64_t q = q0; q < q1; q++)
                    micro_tile(uk, kcb, panel, prs, pcs, bp + pc * npad + q * kcb * nr, c + i * ldc + q * nr, ldc, ib,
                               fn_min64(nr, N - q * nr), accumulate, tmp);
            }
            continue;
        }
        /* Rows in blocks of mc whose A (mc x kc, in place or packed) stays in L2 while every B panel of the tile meets
         * it; each B panel (kc x nr) stays in L1 while it meets the block's rows. Unblocked, a 2048-row tile
         * streamed all of A from L3 for every panel (2048^3 on the AVX2 path, two threads: 0.94x OpenBLAS before,
         * 0.97x after; one thread unchanged). Blocking only reorders the tiles: every element's sum is the same. */
        const int64_t mc = fn_gemm_mc(mr, kcb), astride = apk ? a_panel_stride(uk, K) : 0;
        /* this K block's packed panels (blocks and tiles start on micro-panels) */
        const float *ablock = apk ? apk->ap + (pc / kc * apk->mpanels + m0 / mr) * astride : NULL;
        for (int64_t ic = m0; ic < m1; ic += mc) {
            const int64_t ie = fn_min64(m1, ic + mc);
            for (int64_t q = q0; q < q1; q++) {
                const float *bq = bp + pc * npad + q * kcb * nr;
                const int64_t jn = fn_min64(nr, N - q * nr);
                if (b_read == B_AT_USE) {
                    fn_gemm_pack_b_panel(bpanel, b + pc * ldb + q * nr, ldb, kcb, jn, nr);
                    bq = bpanel;
                }
                for (int64_t i = ic, aoff = (ic - m0) / mr * astride; i < ie; i += mr, aoff += astride) {
                    const int64_t ib = fn_min64(mr, ie - i);
                    const float *ap = a + i * rs + pc * cs;
                    int64_t prs = rs, pcs = cs;
                    if (apk && ib == mr) /* packed: whole panels only (pack_a_panel) */
                        ap = ablock + aoff, prs = 1, pcs = mr;
                    if (ib < mr && uk->edge && alpha == 1.0f) { /* an edge of rows, in place */
                        float *cp = c + i * ldc + q * nr;
                        if (jn == nr) {
                            uk->edge((int)ib, kcb, ap, prs, pcs, bq, cp, ldc, accumulate);
                        } else {
                            uk->edge((int)ib, kcb, ap, prs, pcs, bq, tmp, nr, 0);
                            from_tmp(cp, ldc, tmp, nr, ib, jn, accumulate);
                        }
                        continue;
                    }
                    if (ib < mr || alpha != 1.0f) {
                        fn_gemm_pack_a(uk, panel, ap, rs, cs, ib, kcb, alpha, &prs, &pcs);
                        ap = panel;
                    }
                    micro_tile(uk, kcb, ap, prs, pcs, bq, c + i * ldc + q * nr, ldc, ib, jn, accumulate, tmp);
                }
            }
        }
    }
    fn_ukernel_leave(uk);
    fn_ftz_leave(csr);
}

void fn_gemm_tile(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N,
                  int64_t K, float alpha, const float *a, int64_t lda, int trans_a, const float *bp,
                  float beta, float *c, int64_t ldc) {
    tile_loop(uk, m0, m1, q0, q1, N, K, alpha, a, lda, trans_a, 0, bp, beta, c, ldc, B_PACKED, NULL, 0, NULL);
}

void fn_gemm_tile_slots(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N, int64_t K,
                        const float *a, int64_t lda, int trans_a, const float *bp, float beta, float *c, int64_t ldc) {
    tile_loop(uk, m0, m1, q0, q1, N, K, 1.0f, a, lda, trans_a, 1, bp, beta, c, ldc, B_PACKED, NULL, 0, NULL);
}

/* Slots per row of op(A) converted once (bfloat16 operands): ceil(K/2) pairs or K rounded floats. */
static int64_t a_slot_len(const fn_ukernel *uk, int64_t K) { return uk->bf16 == FN_BF16_PAIRS ? (K + 1) / 2 : K; }

/* Whether a float32 GEMM packs a row-major op(A) once (pack_a_panel), and the floats that takes. Read in place, A's
 * mr rows are mr streams the kernel broadcasts from; packed, one. On the 2-core EPYC (no performance counters in
 * its VM) the two ran alike in quiet spells, 129-130 GFLOP/s on a 128 x 392 block of A from L2 (one thread), and
 * 105 in place against 117 packed in its slow spells, which came and went for minutes (a busy sibling on the core,
 * I guess); packing that block cost 2-4 % of one pass over 32 panels. As BLAS libraries do, then, A is packed where
 * its rows meet several B panels and a deep K (a shallow K packs per micro-panel, tile_loop). In a slow spell:
 * the MLP's forward and dx products 1.17-1.21x at 1 thread, 0.98-1.15x at 2 (two runs), a training step 0.91x
 * (1 thread) and 0.94x (2).
 * Not a transposed A (its mr values per k already one run: the dW products ran 4-9 % slower packed), nor the
 * AVX-512 kernels (no k-major packer; not retuned blind). Where every thread reads all of A and the products are
 * small, the pack costs a pass across cores: 128 x 128 x 512 on 2 threads, the same A again and again, 0.73x.
 * Nor where B is not packed up front (packed at use, or prepacked: plan_a_once): such a product then has no pack
 * phase and no barrier. In place there, against packed (15 rounds, builds taking turns, one quiet hour of the same
 * EPYC): the CNN's 128 x 128 x 4608 dense forward 1.043x faster at 1 thread and 1.325x at 2, the MLP's first
 * forward 1.010x and 1.068x; the dense forward at 1 thread with a process streaming memory on the other core,
 * 1.12-1.15x (4 rounds); predicting 10,000 images on weights packed once, 0.975x the time (MLP) and 0.990x (CNN)
 * at 2 threads, 0.980x and 0.984x at 1 (5 rounds). No round of those went to packing by more than 7 %, but the
 * slow spells above did not come back to be measured. */
#define FN_A_PACK_MIN_PANELS 4
#define FN_A_PACK_FLOATS ((int64_t)1 << 22) /* op(A) up to 16 MB, B's own packing at 2048 x 2048 */
static int packs_a(const fn_ukernel *uk, int trans_a, int64_t M, int64_t N, int64_t K, float alpha) {
    return !trans_a && uk->pack_ak && uk->bf16 == FN_BF16_NONE && alpha == 1.0f && M >= uk->mr && K > FN_SHALLOW_K &&
           fn_ceil_div(N, uk->nr) >= FN_A_PACK_MIN_PANELS && M * K <= FN_A_PACK_FLOATS;
}
static int64_t a_packed_size(const fn_ukernel *uk, int64_t M, int64_t K) {
    return fn_ceil_div(K, fn_gemm_kc(K)) * fn_ceil_div(M, uk->mr) * a_panel_stride(uk, K);
}

/* Room for op(A) beside B's panels: its bfloat16 slots, or its float32 panels where packs_a may pack them, for M
 * rows or fewer (a plan sizes its workspace for its batch capacity and runs smaller batches in it): up to the rows
 * FN_A_PACK_FLOATS holds, since fewer rows than M may be packed where M rows are too many to be. */
static int64_t a_room(const fn_ukernel *uk, int trans_a, int64_t M, int64_t N, int64_t K) {
    if (uk->bf16) return M * a_slot_len(uk, K) + FN_WS_PAD;
    const int64_t rows = fn_min64(M, FN_A_PACK_FLOATS / fn_max64(K, 1));
    return packs_a(uk, trans_a, rows, N, K, 1.0f) ? a_packed_size(uk, rows, K) + FN_WS_PAD : 0;
}

/* N unknown: the prepacked path's callers size the room before they know it, so it is for any N. Only bfloat16
 * slots: with no B to pack, a float32 op(A) is read in place (plan_a_once). */
int64_t fn_gemm_prepacked_workspace(int64_t M, int64_t K, int isa, int precision) {
    const fn_ukernel *uk = fn_gemm_ukernel(isa, precision);
    return uk->bf16 ? a_room(uk, 0, M, FN_A_PACK_MIN_PANELS * uk->nr, K) : 0;
}

int64_t fn_gemm_job_workspace(int trans_a, int64_t M, int64_t N, int64_t K, int isa, int precision) {
    return fn_gemm_packed_b_size(K, N) + FN_WS_PAD + a_room(fn_gemm_ukernel(isa, precision), trans_a, M, N, K);
}

/* A row-major op(A) needs the room a transposed one does and more (a_room): the room for either. */
int64_t fn_gemm_workspace(int64_t M, int64_t N, int64_t K, int isa, int precision) {
    return fn_gemm_job_workspace(0, M, N, K, isa, precision);
}

/* How a GEMM splits C among threads: mtiles row blocks by groups of nq panels, at least 2 tiles per thread where
 * the shape allows. A row block is at least 24 rows (or one micro-panel where mr is larger), and the blocks share
 * the micro-panels of rows out evenly: blocks of a fixed 24 rows cut a 128-row product into 24 x 5 + 8, so one of
 * 2 threads took 72 rows and the other 56 (128 x 512 x 10, AVX2: 0.94x OpenBLAS). Blocks start on micro-panels, so
 * every row meets the same kernel whatever the tiling: tiling only spreads work (see fn_ukernel_fn). */
static void tiling(fn_gemm_job *j, int64_t M, int64_t N, int n_threads) {
    const fn_ukernel *uk = j->uk;
    const int64_t min_panels = fn_ceil_div(24, uk->mr); /* row micro-panels a block keeps at least */
    j->npanels = fn_ceil_div(N, uk->nr), j->mpanels = fn_ceil_div(M, uk->mr);
    j->mtiles = 1, j->nq = j->npanels;
    while (j->mtiles * fn_ceil_div(j->npanels, j->nq) < 2 * (int64_t)n_threads) {
        const int64_t rows = fn_ceil_div(j->mpanels, j->mtiles) * uk->mr, halves = j->mpanels / (2 * j->mtiles);
        if (j->nq > 1 && (j->nq * uk->nr >= rows || halves < min_panels)) j->nq = fn_ceil_div(j->nq, 2);
        else if (halves >= min_panels) j->mtiles *= 2;
        else break;
    }
    j->ntiles_n = fn_ceil_div(j->npanels, j->nq);
}

/* bfloat16 operands where several tiles share rows of op(A) and a tile meets few B panels (nq <= 2: many threads
 * for the shape) or op(A) is transposed: op(A) is converted into slots once, by all threads, in blocks of
 * FN_MR_MAX rows by FN_A_SLOT_BLOCK slots, and the tiles read them in place. Per tile, each micro-panel would be
 * converted into L1 and meet the tile's nq panels: on the MLP's GEMMs at 16 threads (nq = 1, 16-25 tiles per row
 * block) every row was converted 16-25 times. With many panels per tile (2 threads: nq = 8) the L1 panel wins: the
 * portable path's forward ran 20-50 % slower reading the converted rows from the shared buffer. A transposed op(A)
 * (dense dW's x^T) costs a transposition per conversion: once is cheaper there in every case measured. */
#define FN_A_SLOT_BLOCK 64

/* op(A)'s plan: float32 panels packed once only where the threads pack B's panels up front anyway (b_packs), so its
 * pack adds no barrier of its own (packs_a says where else it is not); bfloat16 slots converted once. */
static void plan_a_once(fn_gemm_job *j, float *slots) {
    j->a_slots = NULL, j->a_len = j->a_nblk_t = j->a_blocks = 0;
    j->ap = NULL, j->a_panels = 0;
    if (slots && j->b_packs && packs_a(j->uk, j->trans_a, j->M, j->N, j->K, j->alpha)) {
        j->ap = slots, j->a_panels = j->M / j->uk->mr; /* whole micro-panels: an edge of rows is read in place */
        return;
    }
    if (!j->uk->bf16 || j->ntiles_n < 2 || !slots || (!j->trans_a && j->nq > 2)) return;
    j->a_slots = slots, j->a_len = a_slot_len(j->uk, j->K);
    j->a_nblk_t = fn_ceil_div(j->a_len, FN_A_SLOT_BLOCK);
    j->a_blocks = fn_ceil_div(j->M, FN_MR_MAX) * j->a_nblk_t;
}

/* Whether a product reads B in place, a few rows at a time (fn_ukernel's rows), rather than packing it. A B already
 * in one panel's layout (fn_gemm_b_is_packed) is used as it is first. */
static int reads_b_in_place(const fn_ukernel *uk, int64_t M, int trans_b, float alpha) {
    return M <= FN_ROWS_MAX && uk->rows && !trans_b && alpha == 1.0f;
}

static void job_init(fn_gemm_job *j, int trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, float beta, float *C, int64_t ldc, int isa, int precision, int n_threads) {
    j->uk = fn_gemm_ukernel(isa, precision);
    j->trans_a = trans_a, j->M = M, j->N = N, j->K = K, j->alpha = alpha, j->A = A, j->lda = lda, j->beta = beta;
    j->C = C, j->ldc = ldc;
    j->B = NULL, j->bp = NULL, j->ldb = 0, j->trans_b = 0, j->b_packs = 0, j->b_rows = 0, j->kblocks = 1;
    j->partials = NULL, j->b_at_use = 0;
    tiling(j, M, N, n_threads);
}

/* B read in place: one tile of columns per thread, so each streams the longest runs of B's rows it can (two
 * 128-column tiles a thread read 512 of every 2,048 bytes twice; one image by the MLP ran 2 % slower that way). */
static void in_place_tiling(fn_gemm_job *j, int n_threads) {
    j->nq = fn_ceil_div(j->npanels, n_threads), j->ntiles_n = fn_ceil_div(j->npanels, j->nq);
}

/* Tiles [*t0, *t1): thread id's share of a static schedule over n threads (libgomp's split: the first tiles % n
 * threads take one tile more). */
static void static_share(int64_t tiles, int64_t n, int64_t id, int64_t *t0, int64_t *t1) {
    const int64_t share = tiles / n, extra = tiles % n;
    *t0 = id * share + fn_min64(id, extra), *t1 = *t0 + share + (id < extra);
}

/* Whether the tiles pack B's panels as they use them (B_AT_USE), not all threads up front: where each panel of a K
 * block meets the rows in one L2 block (M <= mc), fn_gemm_job_run then packs it once per thread that runs its column
 * group, into L1 just before the kernel reads it, and no thread waits for B at a barrier (nor for op(A), then read
 * in place: packs_a). Taken where no thread packs more panels so than the most one packs up front: where one
 * thread's tiles hold each column group, and where the threads share one panel (the MLP's output layer: 10 columns)
 * and each packs it rather than wait for one. The 128-row products, AVX2, 2 threads (against packing up front; 4-8
 * rounds, builds taking turns, medians of the rounds' ratios; op(A) still packed): the CNN's 128 x 128 x 4608 dense
 * forward 1.093x faster, the MLP's first forward 1.024x, its output layer 1.216x; one thread 1.00x (under perf the
 * copy took 3.5 % of the dense forward, up front 3.9 %). Tiles dealt otherwise (the dense backward's dynamic list)
 * may pack a panel once per tile. */
static int packs_at_use(const fn_gemm_job *j, int trans_b, int n_threads) {
    const fn_ukernel *uk = j->uk;
    if (trans_b || uk->bf16 != FN_BF16_NONE || uk->nr > FN_AT_USE_NR || j->K <= FN_SHALLOW_K ||
        j->M > fn_gemm_mc(uk->mr, fn_gemm_kc(j->K)))
        return 0;
    /* the most panels a thread packs at use (those of the column groups its tiles touch), against up front */
    int64_t most = 0;
    for (int64_t id = 0, t0, t1; id < n_threads; id++) {
        static_share(fn_gemm_job_tiles(j), n_threads, id, &t0, &t1);
        if (t0 < t1)
            most = fn_max64(most, fn_min64(j->npanels, (t1 - 1) / j->mtiles * j->nq + j->nq) - t0 / j->mtiles * j->nq);
    }
    return most <= fn_ceil_div(j->npanels, fn_min64(j->npanels, n_threads));
}

void fn_gemm_job_init(fn_gemm_job *j, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                      int isa, int precision, float *ws, int n_threads) {
    job_init(j, trans_a, M, N, K, alpha, A, lda, beta, C, ldc, isa, precision, n_threads);
    const int direct_b = fn_gemm_b_is_packed(j->uk, trans_b, N, ldb);
    j->B = B, j->ldb = ldb, j->trans_b = trans_b;
    j->bp = direct_b ? (float *)B : fn_align64(ws);
    j->b_packs = direct_b ? 0 : j->npanels;
    /* A few rows: B, read once, is read in place, not packed (fn_ukernel's rows). With several K blocks and
     * threads, the threads take K blocks (each thread streams whole rows of B) rather than columns, and their
     * sums are added in K order: what one thread adds, bit for bit. By columns, the CNN's 4608 x 128 dense layer
     * ran no faster on two threads than on one. */
    if (!direct_b && reads_b_in_place(j->uk, M, trans_b, alpha)) {
        j->b_rows = 1, j->bp = NULL, j->b_packs = 0;
        const int64_t kblocks = fn_ceil_div(K, fn_gemm_kc(K));
        if (n_threads > 1 && kblocks > 1 && ws && (beta == 0.0f || beta == 1.0f) &&
            kblocks * M * N <= fn_gemm_packed_b_size(K, N)) /* the room B's panels would take */
            j->kblocks = kblocks, j->partials = fn_align64(ws);
        in_place_tiling(j, n_threads);
    }
    if (!direct_b && !j->b_rows && packs_at_use(j, trans_b, n_threads)) j->b_at_use = 1, j->b_packs = 0;
    plan_a_once(j, fn_align64(fn_align64(ws) + fn_gemm_packed_b_size(K, N)));
}

int64_t fn_gemm_job_packs(const fn_gemm_job *j) {
    return j->M > 0 && j->N > 0 ? j->b_packs + j->a_blocks + j->a_panels : 0;
}

/* Micro-panel p of a row-major float32 op(A) (packs_a), every K block, into j->ap (a_packed's layout). Whole panels
 * only: the edge kernel reads an edge of rows in place. Copied element by element into a zero-padded panel, the 2
 * rows past a 128-row product's 21 panels took 0.7 % of its time under `perf`, and in place the CNN's 128 x 4608 x
 * 128 dense forward ran 1.011x faster (AVX2, one thread). */
static void pack_a_panel(const fn_gemm_job *j, int64_t p) {
    const fn_ukernel *uk = j->uk;
    const int64_t i = p * uk->mr, kc = fn_gemm_kc(j->K);
    const int64_t lda = j->lda, stride = a_panel_stride(uk, j->K);
    for (int64_t pc = 0; pc < j->K; pc += kc) {
        const int64_t kcb = fn_min64(kc, j->K - pc);
        float *dst = j->ap + (pc / kc * j->mpanels + p) * stride;
        const float *src = j->A + i * lda + pc;
        uk->pack_ak(dst, src, lda, kcb);
    }
}

void fn_gemm_job_pack_b(const fn_gemm_job *j, int64_t q0, int64_t q1) {
    fn_gemm_pack_b(j->uk, j->bp, j->B, j->ldb, j->trans_b, j->K, j->N, q0, q1);
}

void fn_gemm_job_pack(const fn_gemm_job *j, int64_t item) {
    if (item < j->b_packs) {
        fn_gemm_job_pack_b(j, item, item + 1);
        return;
    }
    if (j->a_panels) {
        pack_a_panel(j, item - j->b_packs);
        return;
    }
    const int64_t blk = item - j->b_packs, i0 = blk / j->a_nblk_t * FN_MR_MAX, t0 = blk % j->a_nblk_t * FN_A_SLOT_BLOCK;
    fn_gemm_a_slots_block(j->uk->bf16, j->a_slots, j->a_len, j->A, j->trans_a ? 1 : j->lda, j->trans_a ? j->lda : 1,
                          j->K, i0, fn_min64(j->M, i0 + FN_MR_MAX), t0,
                          fn_min64(j->a_len, t0 + FN_A_SLOT_BLOCK), j->alpha);
}

int64_t fn_gemm_job_tiles(const fn_gemm_job *j) { return j->M > 0 && j->N > 0 ? j->mtiles * j->ntiles_n : 0; }

/* Tile t's rows [m0, m1) and columns [j0, j1). Tiles in column-major order, so the static schedule hands a thread
 * whole columns of tiles: on 2 threads a 128-row product cut into row blocks of 72 and 56 gave one thread 72 of
 * every 128 rows (128 x 128 x 4608, AVX2: 1.33x one thread's speed). A thread's tiles then also share their B
 * panels, which it packed itself (or packs at use), and it runs each column of them as one (fn_gemm_job_run). */
static void tile_bounds(const fn_gemm_job *j, int64_t t, int64_t *m0, int64_t *m1, int64_t *j0, int64_t *j1) {
    const int64_t nb = t / j->mtiles, mb = t % j->mtiles, mr = j->uk->mr, nr = j->uk->nr;
    *m0 = mb * j->mpanels / j->mtiles * mr, *m1 = fn_min64(j->M, (mb + 1) * j->mpanels / j->mtiles * mr);
    *j0 = nb * j->nq * nr, *j1 = fn_min64(j->N, (nb + 1) * j->nq * nr);
}

int64_t fn_gemm_tiles(int trans_b, int64_t M, int64_t N, int64_t K, int isa, int precision, int n_threads,
                      int64_t *bounds) {
    if (M <= 0 || N <= 0) return 0;
    const int nt = fn_gemm_threads(M, N, K, trans_b, 1.0f, isa, precision, n_threads);
    fn_gemm_job j;
    job_init(&j, 0, M, N, K, 1.0f, NULL, K, 0.0f, NULL, N, isa, precision, nt);
    if (!fn_gemm_b_is_packed(j.uk, trans_b, N, trans_b ? K : N) && reads_b_in_place(j.uk, M, trans_b, 1.0f))
        in_place_tiling(&j, nt); /* as fn_gemm_job_init, for a contiguous B */
    const int64_t tiles = fn_gemm_job_tiles(&j);
    for (int64_t t = 0; bounds && t < tiles; t++)
        tile_bounds(&j, t, &bounds[4 * t], &bounds[4 * t + 1], &bounds[4 * t + 2], &bounds[4 * t + 3]);
    return tiles;
}

/* C[m0:m1, j0:j1], rows and columns on micro-panel bounds (one tile, or a column of a thread's tiles). */
static void rows_run(const fn_gemm_job *j, int64_t m0, int64_t m1, int64_t j0, int64_t j1) {
    const int64_t q0 = j0 / j->uk->nr, q1 = fn_ceil_div(j1, j->uk->nr);
    const a_packed apk = {j->ap, j->mpanels};
    const int b_read = j->b_rows ? B_ROWS : j->b_at_use ? B_AT_USE : B_PACKED;
    if (j->a_slots)
        tile_loop(j->uk, m0, m1, q0, q1, j->N, j->K, 1.0f, j->a_slots, j->a_len, 0, 1, j->bp, j->beta, j->C, j->ldc,
                  B_PACKED, NULL, 0, NULL);
    else
        tile_loop(j->uk, m0, m1, q0, q1, j->N, j->K, j->alpha, j->A, j->lda, j->trans_a, 0, j->bp, j->beta, j->C,
                  j->ldc, b_read, j->B, j->ldb, j->ap ? &apk : NULL);
}

void fn_gemm_job_tile(const fn_gemm_job *j, int64_t t, int64_t *m0, int64_t *m1, int64_t *j0, int64_t *j1) {
    tile_bounds(j, t, m0, m1, j0, j1);
    rows_run(j, *m0, *m1, *j0, *j1);
}

/* The epilogue on a finished tile of C (a tile's C is final: the values of passes over C after the GEMM). */
static void epilogue(const fn_gemm_job *j, const fn_post_ops *e, int64_t m0, int64_t m1, int64_t j0, int64_t j1) {
    float *c = j->C + m0 * j->ldc + j0;
    fn_post_rows(c, j->ldc, c, j->ldc, m0, m1 - m0, j0, j1 - j0, e);
}

/* A few rows by B in place, K blocks side by side (fn_gemm_job_init): each block's sums from zero, then per
 * column C = C (beta 1) + block 0 + block 1 + ..., left to right, as tile_loop adds them one block at a time. */
static void run_k_blocks(const fn_gemm_job *j, const fn_post_ops *e, fn_barrier *bar) {
    const int64_t M = j->M, N = j->N, kc = fn_gemm_kc(j->K), rs = j->trans_a ? 1 : j->lda, cs = j->trans_a ? j->lda : 1;
    #pragma omp for schedule(static) nowait
    for (int64_t b = 0; b < j->kblocks; b++) {
        float *part = j->partials + b * M * N;
        const int64_t pc = b * kc, kcb = fn_min64(kc, j->K - pc);
        const unsigned csr = fn_ftz_enter();
        for (int64_t t = 0; t < M * N; t++) part[t] = 0.0f;
        j->uk->rows((int)M, kcb, j->A + pc * cs, rs, cs, j->B + pc * j->ldb, j->ldb, N, part);
        fn_ftz_leave(csr);
    }
    fn_barrier_wait(bar);
    const int64_t nr = j->uk->nr;
    #pragma omp for schedule(static) nowait
    for (int64_t q = 0; q < j->npanels; q++) {
        const int64_t j0 = q * nr, j1 = fn_min64(N, j0 + nr);
        const unsigned csr = fn_ftz_enter();
        for (int64_t i = 0; i < M; i++)
            for (int64_t c = j0; c < j1; c++) {
                float *out = j->C + i * j->ldc + c;
                float v = j->beta != 0.0f ? *out + j->partials[i * N + c] : j->partials[i * N + c];
                for (int64_t b = 1; b < j->kblocks; b++) v += j->partials[(b * M + i) * N + c];
                *out = v;
            }
        fn_ftz_leave(csr);
        if (e) epilogue(j, e, 0, M, j0, j1);
    }
    fn_barrier_wait(bar);
}

void fn_gemm_job_run(const fn_gemm_job *j, const fn_post_ops *e, fn_barrier *bar) {
    if (j->kblocks > 1) {
        run_k_blocks(j, e, bar);
        return;
    }
    const int64_t packs = fn_gemm_job_packs(j), tiles = fn_gemm_job_tiles(j), bq = fn_min64(packs, j->b_packs);
    if (packs) {
        /* B's panels as the tiles take them (a thread packs the panels of its own columns), then op(A)'s, shared
         * out apart: in one list, one of 2 threads packed 27 of the MLP's 32 B panels and the other 5 and A. */
        const int64_t groups = fn_min64(bq, fn_team_size()); /* a thread's B panels in one call: fn_gemm_pack_b
                                                               * copies a row-major B's rows across them */
        #pragma omp for schedule(static) nowait
        for (int64_t g = 0; g < groups; g++) fn_gemm_job_pack_b(j, bq * g / groups, bq * (g + 1) / groups);
        #pragma omp for schedule(static) nowait
        for (int64_t q = bq; q < packs; q++) fn_gemm_job_pack(j, q);
        fn_barrier_wait(bar);
    }
    /* The thread's tiles, as a static schedule deals them (consecutive ones, in column-major order), a column group
     * at a time: its row blocks as one run over the K blocks, so each of the group's B panels is read (or packed at
     * use) once per K block, not once per tile. Tile by tile, the CNN's 128 x 128 x 4608 dense forward on 2
     * threads read each thread's 4 panels (1.2 MB, past L2) twice: 1.015x and 1.033x faster so (8 and 4 rounds,
     * AVX2), one thread and the MLP's products 0.99-1.01x. Each element's sums are the same. */
    int64_t t_begin, t_end;
    static_share(tiles, fn_team_size(), fn_thread_id(), &t_begin, &t_end);
    for (int64_t t = t_begin; t < t_end;) {
        const int64_t group_end = fn_min64(t_end, (t / j->mtiles + 1) * j->mtiles);
        int64_t m0, m1, j0, j1, last_m0, last_m1;
        tile_bounds(j, t, &m0, &m1, &j0, &j1);
        tile_bounds(j, group_end - 1, &last_m0, &last_m1, &j0, &j1);
        rows_run(j, m0, last_m1, j0, j1);
        if (e) epilogue(j, e, m0, last_m1, j0, j1);
        t = group_end;
    }
    fn_barrier_wait(bar);
}

int fn_gemm_threads(int64_t M, int64_t N, int64_t K, int trans_b, float alpha, int isa, int precision, int n_threads) {
    /* A few rows by B in place stream B from memory: one thread per FN_GRAIN_ELEMENTS of B's, not per grain of
     * multiply-adds (one image by the MLP's 512 x 512 kernel is half a grain of those, and 1 MB of B) */
    if (reads_b_in_place(fn_gemm_ukernel(isa, precision), M, trans_b, alpha))
        return fn_threads_for(K * N, FN_GRAIN_ELEMENTS, n_threads);
    return fn_threads_for(M * N * K, FN_GRAIN_MACS, n_threads);
}

int fn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int isa, int precision,
            float *ws,
            int n_threads) {
    if (M <= 0 || N <= 0) return FN_OK;
    const int nt = fn_gemm_threads(M, N, K, trans_b, alpha, isa, precision, n_threads);
    fn_gemm_job j;
    fn_gemm_job_init(&j, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, isa, precision, ws, nt);
    fn_barrier bar = FN_BARRIER;
    FN_PARALLEL(nt, fn_gemm_job_run(&j, NULL, &bar));
    return FN_OK;
}

int fn_gemm_pack(float *bp, const float *B, int64_t ldb, int trans_b, int64_t K, int64_t N, int isa, int precision,
                 int n_threads) {
    const fn_ukernel *uk = fn_gemm_ukernel(isa, precision);
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(K * N), q, fn_ceil_div(N, uk->nr),
                    fn_gemm_pack_b(uk, bp, B, ldb, trans_b, K, N, q, q + 1));
    return FN_OK;
}

void fn_gemm_job_init_prepacked(fn_gemm_job *j, int trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                                const float *A, int64_t lda, const float *bp, float beta, float *C, int64_t ldc,
                                int isa, int precision, float *ws, int n_threads) {
    job_init(j, trans_a, M, N, K, alpha, A, lda, beta, C, ldc, isa, precision, n_threads);
    j->bp = bp;
    plan_a_once(j, ws ? fn_align64(ws) : NULL);
}

int fn_gemm_prepacked(int trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *bp, float beta, float *C, int64_t ldc, int isa, int precision, float *ws,
                      int n_threads) {
    if (M <= 0 || N <= 0) return FN_OK;
    const int nt = fn_threads_for(M * N * K, FN_GRAIN_MACS, n_threads);
    fn_gemm_job j;
    fn_gemm_job_init_prepacked(&j, trans_a, M, N, K, alpha, A, lda, bp, beta, C, ldc, isa, precision, ws, nt);
    fn_barrier bar = FN_BARRIER;
    FN_PARALLEL(nt, fn_gemm_job_run(&j, NULL, &bar));
    return FN_OK;
}
