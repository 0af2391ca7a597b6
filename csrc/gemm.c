/* GEMM: the one engine under every dense and convolution kernel.
 *
 * op(B) is packed once into K-blocks of NR-wide panels shared by all threads (or used as it is when it is
 * already one such panel); the micro-kernel reads op(A) in place, row-major or transposed, with broadcasts,
 * so A is never copied. Tiles split C by rows and by panels, so 128-row matrices still give every thread work. */
#include <string.h>

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
static const fn_ukernel ukernel_generic[2] = {{4, 16, ukernel_generic_4x16, "generic", 0},
                                              {4, 16, ukernel_generic_4x16, "generic+bf16", 1}};

/* ---- the single place that maps an ISA path to its micro-kernel ---- */
int fn_gemm_cpu_max_isa(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (fn_ukernel_avx512(0) && __builtin_cpu_supports("avx512f")) return FN_ISA_AVX512;
    if (fn_ukernel_avx2(0) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FN_ISA_AVX2;
#endif
    return FN_ISA_GENERIC;
}

const fn_ukernel *fn_gemm_ukernel(int isa) {
    const int bf16 = (isa & FN_PATH_BF16) != 0, base = isa & ~FN_PATH_BF16;
    const fn_ukernel *uk = base == FN_ISA_AVX512 ? fn_ukernel_avx512(bf16)
                           : base == FN_ISA_AVX2 ? fn_ukernel_avx2(bf16)
                                                 : NULL;
    return uk ? uk : &ukernel_generic[bf16];
}

FN_VECTOR_CLONES void fn_round_bf16_array(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = fn_round_bf16(x[i]);
}

/* ---- packing ---- */
int64_t fn_gemm_kc(int64_t K) {
    const int64_t blocks = fn_max64(1, fn_ceil_div(K, FN_KC_MAX));
    return fn_round_up(fn_ceil_div(K, blocks), 8);
}

int64_t fn_gemm_packed_b_size(int64_t K, int64_t N) { return K * fn_round_up(N, FN_NR_MAX) + FN_WS_PAD; }

int fn_gemm_b_is_packed(const fn_ukernel *uk, int trans_b, int64_t N, int64_t ldb) {
    return !uk->bf16 && !trans_b && N == uk->nr && ldb == uk->nr; /* bfloat16 operands are rounded as packed */
}

void fn_gemm_pack_b(const fn_ukernel *uk, float *restrict bp, const float *restrict b, int64_t ldb,
                    int trans_b, int64_t K, int64_t N, int64_t q0, int64_t q1) {
    const int nr = uk->nr;
    const int64_t npad = fn_round_up(N, nr), kc = fn_gemm_kc(K);
    for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = fn_min64(kc, K - pc);
        for (int64_t q = q0; q < q1; q++) {
            float *dst = bp + pc * npad + q * kcb * nr;
            const int64_t j0 = q * nr, jn = fn_min64(nr, N - j0);
            if (jn < nr) memset(dst, 0, sizeof(float) * kcb * nr);
            if (!trans_b) {
                for (int64_t k = 0; k < kcb; k++) memcpy(dst + k * nr, b + (pc + k) * ldb + j0, sizeof(float) * jn);
            } else {
                for (int64_t j = 0; j < jn; j++) {
                    const float *src = b + (j0 + j) * ldb + pc;
                    for (int64_t k = 0; k < kcb; k++) dst[k * nr + j] = src[k];
                }
            }
            if (uk->bf16) fn_round_bf16_array(dst, kcb * nr);
        }
    }
}

/* A micro-panel copied into a zero-padded (kc x mr) buffer, scaled (and rounded to bfloat16 on a bf16 path): for
 * edge rows, alpha != 1 and bfloat16 operands. */
static void copy_a_panel(float *restrict dst, int mr, const float *restrict a, int64_t rs, int64_t cs,
                         int64_t rows, int64_t kc, float alpha, int bf16) {
    memset(dst, 0, sizeof(float) * kc * mr);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t k = 0; k < kc; k++) dst[k * mr + i] = alpha * a[i * rs + k * cs];
    if (bf16) fn_round_bf16_array(dst, kc * mr);
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
    for (int64_t r = 0; r < ib; r++)
        for (int64_t j = 0; j < jn; j++) cp[r * ldc + j] = accumulate ? cp[r * ldc + j] + tmp[r * nr + j] : tmp[r * nr + j];
}

void fn_gemm_tile(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N,
                  int64_t K, float alpha, const float *a, int64_t lda, int trans_a, const float *bp,
                  float beta, float *c, int64_t ldc) {
    const int mr = uk->mr, nr = uk->nr;
    const int64_t npad = fn_round_up(N, nr), kc = fn_gemm_kc(K);
    const int64_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1;
    const int64_t j_begin = q0 * nr, j_end = fn_min64(q1 * nr, N);
    if (K == 0 || (beta != 0.0f && beta != 1.0f)) { /* C = beta*C first; the K loop then adds */
        for (int64_t i = m0; i < m1; i++)
            for (int64_t j = j_begin; j < j_end; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        beta = 1.0f;
    }
    float tmp[FN_MR_MAX * FN_NR_MAX] __attribute__((aligned(64)));
    float panel[FN_KC_MAX * FN_MR_MAX] __attribute__((aligned(64)));
    const unsigned csr = fn_ftz_enter();
    for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = fn_min64(kc, K - pc);
        const int accumulate = pc > 0 || beta != 0.0f;
        if (uk->bf16) {
            /* bfloat16 operands: each A micro-panel is rounded into `panel` once, then meets every B panel
             * (the loop order only spreads work: each element's arithmetic is the same either way). */
            for (int64_t i = m0; i < m1; i += mr) {
                const int64_t ib = fn_min64(mr, m1 - i);
                copy_a_panel(panel, mr, a + i * rs + pc * cs, rs, cs, ib, kcb, alpha, 1);
                for (int64_t q = q0; q < q1; q++)
                    micro_tile(uk, kcb, panel, 1, mr, bp + pc * npad + q * kcb * nr, c + i * ldc + q * nr, ldc, ib,
                               fn_min64(nr, N - q * nr), accumulate, tmp);
            }
            continue;
        }
        for (int64_t q = q0; q < q1; q++) {
            const float *bq = bp + pc * npad + q * kcb * nr;
            const int64_t jn = fn_min64(nr, N - q * nr);
            for (int64_t i = m0; i < m1; i += mr) {
                const int64_t ib = fn_min64(mr, m1 - i);
                const float *ap = a + i * rs + pc * cs;
                int64_t prs = rs, pcs = cs;
                if (ib < mr || alpha != 1.0f) {
                    copy_a_panel(panel, mr, ap, rs, cs, ib, kcb, alpha, 0);
                    ap = panel, prs = 1, pcs = mr;
                }
                micro_tile(uk, kcb, ap, prs, pcs, bq, c + i * ldc + q * nr, ldc, ib, jn, accumulate, tmp);
            }
        }
    }
    fn_ftz_leave(csr);
}

int64_t fn_gemm_workspace(int64_t M, int64_t N, int64_t K, int n_threads) {
    (void)M, (void)n_threads;
    return fn_gemm_packed_b_size(K, N) + FN_WS_PAD;
}

/* How fn_gemm splits C among threads: row blocks of mt rows (a multiple of 24) by groups of nq panels, at least
 * 2 tiles per thread where the shape allows. Tiling only spreads work: every tile computes its elements
 * identically (see fn_ukernel_fn). */
typedef struct {
    int64_t mt, nq, mtiles, ntiles_n, npanels;
} gemm_tiling;

static gemm_tiling tiling(const fn_ukernel *uk, int64_t M, int64_t N, int n_threads) {
    gemm_tiling t;
    t.npanels = fn_ceil_div(N, uk->nr);
    t.mt = fn_round_up(M, 24), t.nq = t.npanels;
    while (fn_ceil_div(M, t.mt) * fn_ceil_div(t.npanels, t.nq) < 2 * (int64_t)n_threads) {
        if (t.nq > 1 && (t.nq * uk->nr >= t.mt || t.mt <= 24)) t.nq = fn_ceil_div(t.nq, 2);
        else if (t.mt > 24) t.mt = fn_round_up(t.mt / 2, 24);
        else break;
    }
    t.mtiles = fn_ceil_div(M, t.mt), t.ntiles_n = fn_ceil_div(t.npanels, t.nq);
    return t;
}

static void run_tile(const fn_ukernel *uk, const gemm_tiling *g, int64_t t, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, int trans_a, const float *bp, float beta, float *C,
                     int64_t ldc) {
    const int64_t mb = t / g->ntiles_n, nb = t % g->ntiles_n;
    fn_gemm_tile(uk, mb * g->mt, fn_min64(M, (mb + 1) * g->mt), nb * g->nq, fn_min64(g->npanels, (nb + 1) * g->nq), N,
                 K, alpha, A, lda, trans_a, bp, beta, C, ldc);
}

int fn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int isa, float *ws,
            int n_threads) {
    if (M <= 0 || N <= 0) return FN_OK;
    const fn_ukernel *uk = fn_gemm_ukernel(isa);
    const gemm_tiling g = tiling(uk, M, N, n_threads);
    const int direct_b = fn_gemm_b_is_packed(uk, trans_b, N, ldb);
    float *bp = direct_b ? (float *)B : fn_align64(ws);

    #pragma omp parallel num_threads(n_threads)
    {
        if (!direct_b) {
            #pragma omp for schedule(static)
            for (int64_t q = 0; q < g.npanels; q++) fn_gemm_pack_b(uk, bp, B, ldb, trans_b, K, N, q, q + 1);
        }
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < g.mtiles * g.ntiles_n; t++)
            run_tile(uk, &g, t, M, N, K, alpha, A, lda, trans_a, bp, beta, C, ldc);
    }
    return FN_OK;
}

int fn_gemm_pack(float *bp, const float *B, int64_t ldb, int trans_b, int64_t K, int64_t N, int isa, int n_threads) {
    const fn_ukernel *uk = fn_gemm_ukernel(isa);
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t q = 0; q < fn_ceil_div(N, uk->nr); q++) fn_gemm_pack_b(uk, bp, B, ldb, trans_b, K, N, q, q + 1);
    return FN_OK;
}

int fn_gemm_prepacked(int trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *bp, float beta, float *C, int64_t ldc, int isa, int n_threads) {
    if (M <= 0 || N <= 0) return FN_OK;
    const fn_ukernel *uk = fn_gemm_ukernel(isa);
    const gemm_tiling g = tiling(uk, M, N, n_threads);
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t t = 0; t < g.mtiles * g.ntiles_n; t++)
        run_tile(uk, &g, t, M, N, K, alpha, A, lda, trans_a, bp, beta, C, ldc);
    return FN_OK;
}

int fn_gemm_naive(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++)
                s += (trans_a ? A[k * lda + i] : A[i * lda + k]) * (trans_b ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
        }
    return FN_OK;
}

FN_VECTOR_CLONES void fn_bias_act_rows(float *y, int64_t ldy, const float *bias, int64_t rows, int64_t cols, int act) {
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * ldy;
        if (bias)
            for (int64_t j = 0; j < cols; j++) yr[j] += bias[j];
        if (act == FN_ACT_RELU)
            for (int64_t j = 0; j < cols; j++) yr[j] = yr[j] > 0.0f ? yr[j] : 0.0f;
    }
}

int fn_have_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fn_omp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
