/* A GEMM as a job for the threads of a parallel region: its workspace, how C is split into tiles and the tiles
 * dealt out, what is packed before the tiles run (B's panels, op(A)'s panels or bfloat16 slots) and what at use,
 * the few-rows path's K blocks side by side, and fn_gemm itself. The loops of one tile are gemm.c's. */
#include "fastnet.h"
#include "internal.h"

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
    return fn_ceil_div(K, fn_gemm_kc(K)) * fn_ceil_div(M, uk->mr) * fn_gemm_a_panel_stride(uk, K);
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
 * may pack a panel once per tile. A transposed B too, where the kernel has its 8 x 8 transposer (B_AT_USE_T): the
 * dx products, against packing up front (5 rounds): the MLP's 128 x 512 x 512 1.014x faster at 1 thread and 1.029x
 * at 2, the CNN's 128 x 4608 x 128 1.011x and 1.015x; an MLP training step 0.988x the time at 2 threads, 0.995x at
 * 1, a CNN step 0.992x at 2 (the dense backward's pack phase and barrier gone). */
static int packs_at_use(const fn_gemm_job *j, int trans_b, int n_threads) {
    const fn_ukernel *uk = j->uk;
    if ((trans_b && !uk->pack_bt) || uk->bf16 != FN_BF16_NONE || uk->nr > FN_AT_USE_NR || j->K <= FN_SHALLOW_K ||
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
    const int64_t lda = j->lda, stride = fn_gemm_a_panel_stride(uk, j->K);
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

void fn_gemm_job_tile(const fn_gemm_job *j, int64_t t, int64_t *m0, int64_t *m1, int64_t *j0, int64_t *j1) {
    tile_bounds(j, t, m0, m1, j0, j1);
    fn_gemm_job_rows(j, *m0, *m1, *j0, *j1);
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
        fn_gemm_job_rows(j, m0, last_m1, j0, j1);
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
