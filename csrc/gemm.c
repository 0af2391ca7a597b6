/* GEMM: the one engine under every dense and convolution kernel. This file holds the micro-kernel for an ISA path
 * and the loops of one tile (tile_loop); gemm_job.c splits a GEMM among threads, and gemm_pack.c packs.
 *
 * op(B) is packed once into K-blocks of NR-wide panels shared by all threads (or used as it is when it is already one
 * such panel, or packed panel by panel into L1 as a tile first uses it where the rows fit L2 and the threads would pack
 * no more so, a transposed B through the kernel's transposer: packs_at_use; the packing is gemm_pack.c's); the float32
 * micro-kernels broadcast op(A)'s elements, from k-major panels all threads pack once per GEMM (a row-major A on the
 * AVX2 path, with several B panels and B packed up front: packs_a), or in place, row-major or transposed (an edge of
 * rows too, where the kernel has an edge kernel, on two B panels at once where it has edge_pair); a shallow product's
 * rows (K <= 32) are packed k-major per micro-panel, and an alpha's per tile. bfloat16 operands are converted: op(A)
 * once per GEMM by all threads where tiles share its rows, else by each tile into an L1 panel. Tiles split C by rows
 * and by panels, so 128-row matrices still give every thread work, and are handed out column by column. */
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

/* float32 op(A) packed once per GEMM (gemm_job.c's pack_a_panel): micro-panel p of K block b, k-major (element
 * (i, k) at [k * mr + i]), at ap + (b * mpanels + p) * fn_gemm_a_panel_stride(uk, K). */
typedef struct {
    const float *ap;
    int64_t mpanels;
} a_packed;

/* Where tile_loop reads op(B) from: its packed panels (bp); B itself, a few rows of A at a time (b_rows_tile); or
 * B's panels, each packed into L1 as the tile first uses it (fn_gemm_job's b_at_use). */
enum { B_PACKED, B_ROWS, B_AT_USE, B_AT_USE_T /* ... of a transposed B */ };

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
    float bpanel[2 * FN_KC_MAX * FN_AT_USE_NR] __attribute__((aligned(64)));
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
        const int64_t mc = fn_gemm_mc(mr, kcb), astride = apk ? fn_gemm_a_panel_stride(uk, K) : 0;
        /* this K block's packed panels (blocks and tiles start on micro-panels) */
        const float *ablock = apk ? apk->ap + (pc / kc * apk->mpanels + m0 / mr) * astride : NULL;
        for (int64_t ic = m0; ic < m1; ic += mc) {
            const int64_t ie = fn_min64(m1, ic + mc), rest = (ie - ic) % mr;
            /* An edge of at most FN_EDGE_PAIR_ROWS rows meets two whole panels at a time (uk->edge_pair), and where
             * B is packed at use the two are packed together, before the rows above the edge run on each. The
             * 128-row products' 2-row edge, on AVX2 against one panel at a time (5-6 rounds, builds taking turns):
             * 1.011-1.014x faster (three runs) for the MLP's first forward at 1 thread, 1.006-1.023x at 2; the
             * CNN's dense forward 1.019-1.024x at 1 and 2; the MLP's 512-row dW 1.007-1.016x. Each panel packed
             * just before its own rows instead: 0.990x and 0.989x (the first forward, the CNN's dense). */
            const int pairs = rest && rest <= FN_EDGE_PAIR_ROWS && uk->edge_pair && alpha == 1.0f;
            for (int64_t q = q0, two = 0; q < q1; q += 1 + two) {
                two = pairs && q + 2 <= q1 && (q + 2) * nr <= N;
                const float *bq = bp + pc * npad + q * kcb * nr;
                const int64_t cols = fn_min64((1 + two) * nr, N - q * nr); /* the columns of this one or two */
                if (b_read == B_AT_USE) fn_gemm_pack_b_panels(bpanel, b + pc * ldb + q * nr, ldb, kcb, cols, nr);
                if (b_read == B_AT_USE_T) fn_gemm_pack_bt_panels(uk, bpanel, b + q * nr * ldb + pc, ldb, kcb, cols);
                if (b_read == B_AT_USE || b_read == B_AT_USE_T) bq = bpanel;
                const int64_t iend = two ? ie - rest : ie;
                if (two)
                    uk->edge_pair((int)rest, kcb, a + iend * rs + pc * cs, rs, cs, bq, bq + kcb * nr,
                                  c + iend * ldc + q * nr, ldc, accumulate);
                for (int64_t qp = q; qp <= q + two; qp++, bq += kcb * nr) {
                    const int64_t jn = fn_min64(nr, N - qp * nr);
                    for (int64_t i = ic, aoff = (ic - m0) / mr * astride; i < iend; i += mr, aoff += astride) {
                        const int64_t ib = fn_min64(mr, ie - i);
                        const float *ap = a + i * rs + pc * cs;
                        int64_t prs = rs, pcs = cs;
                        if (apk && ib == mr) /* packed: whole panels only (pack_a_panel) */
                            ap = ablock + aoff, prs = 1, pcs = mr;
                        float *cp = c + i * ldc + qp * nr;
                        if (ib < mr && uk->edge && alpha == 1.0f) { /* an edge of rows, in place */
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
                        micro_tile(uk, kcb, ap, prs, pcs, bq, cp, ldc, ib, jn, accumulate, tmp);
                    }
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

/* C[m0:m1, j0:j1], rows and columns on micro-panel bounds (one tile, or a column of a thread's tiles). */
void fn_gemm_job_rows(const fn_gemm_job *j, int64_t m0, int64_t m1, int64_t j0, int64_t j1) {
    const int64_t q0 = j0 / j->uk->nr, q1 = fn_ceil_div(j1, j->uk->nr);
    const a_packed apk = {j->ap, j->mpanels};
    const int b_read = j->b_rows ? B_ROWS : !j->b_at_use ? B_PACKED : j->trans_b ? B_AT_USE_T : B_AT_USE;
    if (j->a_slots)
        tile_loop(j->uk, m0, m1, q0, q1, j->N, j->K, 1.0f, j->a_slots, j->a_len, 0, 1, j->bp, j->beta, j->C, j->ldc,
                  B_PACKED, NULL, 0, NULL);
    else
        tile_loop(j->uk, m0, m1, q0, q1, j->N, j->K, j->alpha, j->A, j->lda, j->trans_a, 0, j->bp, j->beta, j->C,
                  j->ldc, b_read, j->B, j->ldb, j->ap ? &apk : NULL);
}
