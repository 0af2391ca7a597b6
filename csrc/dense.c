#include "fastnet.h"
#include "internal.h"

/* The room of dw = x^T dy's job (its op(A) transposed: no room for packing it in float32). */
static int64_t dw_workspace(int64_t N, int64_t I, int64_t O, int isa, int precision) {
    return fn_gemm_job_workspace(1, I, O, N, isa, precision);
}

/* The backward runs its two GEMMs side by side (one parallel region), so each has a workspace of its own. */
int64_t fn_dense_workspace(int64_t N, int64_t I, int64_t O, int isa, int precision) {
    const int64_t forward = fn_gemm_workspace(N, O, I, isa, precision);
    return fn_max64(forward, fn_gemm_workspace(N, I, O, isa, precision) + dw_workspace(N, I, O, isa, precision));
}

int fn_dense_threads(int64_t N, int64_t I, int64_t O, int isa, int precision, int n_threads) {
    return fn_gemm_threads(N, O, I, 0, 1.0f, isa, precision, n_threads);
}

fn_post_ops fn_dense_post(const float *b, int64_t O, int act, float rate, uint64_t seed, uint64_t stream,
                          uint64_t first) {
    const fn_post_ops e = {b, act, rate, rate > 0.0f ? fn_dropout_key(seed, stream) : 0, first, O};
    return e;
}

int fn_dense_job(fn_gemm_job *j, float *y, const float *x, const float *w, const float *wp, int64_t N, int64_t I,
                 int64_t O, int isa, int precision, float *ws, int n_threads) {
    const int nt = fn_dense_threads(N, I, O, isa, precision, n_threads);
    if (wp) fn_gemm_job_init_prepacked(j, 0, N, O, I, 1.0f, x, I, wp, 0.0f, y, O, isa, precision, ws, nt);
    else fn_gemm_job_init(j, 0, 0, N, O, I, 1.0f, x, I, w, O, 0.0f, y, O, isa, precision, ws, nt);
    return nt;
}

/* y = act(x w + b), then dropout per e, on w or on wp (w packed by fn_gemm_pack): one GEMM job, the epilogue on
 * each finished tile. */
static int dense_forward(float *y, const float *x, const float *w, const float *wp, int64_t N, int64_t I, int64_t O,
                         const fn_post_ops *e, int isa, int precision, float *ws, int n_threads) {
    if ((e->act != FN_ACT_LINEAR && e->act != FN_ACT_RELU) || !(e->rate >= 0.0f && e->rate < 1.0f)) return FN_EINVAL;
    fn_gemm_job j;
    const int nt = fn_dense_job(&j, y, x, w, wp, N, I, O, isa, precision, ws, n_threads);
    fn_barrier bar = FN_BARRIER;
    FN_PARALLEL(nt, fn_gemm_job_run(&j, e, &bar));
    return FN_OK;
}

int fn_dense_forward_dropout(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t I,
                             int64_t O, int act, float rate, uint64_t seed, uint64_t stream, uint64_t first, int isa,
                             int precision,
                             float *ws, int n_threads) {
    const fn_post_ops e = fn_dense_post(b, O, act, rate, seed, stream, first);
    return dense_forward(y, x, w, NULL, N, I, O, &e, isa, precision, ws, n_threads);
}

int fn_dense_forward_prepacked(float *y, const float *x, const float *wp, const float *b, int64_t N, int64_t I,
                               int64_t O, int act, int isa, int precision, float *ws, int n_threads) {
    const fn_post_ops e = fn_dense_post(b, O, act, 0.0f, 0, 0, 0);
    return dense_forward(y, x, NULL, wp, N, I, O, &e, isa, precision, ws, n_threads);
}

/* Columns [j0, j1) of db (at most 16): each summed over the rows in order, in registers (summed in db itself,
 * which the compiler could not tell apart from dy, every row loaded and stored db). */
static void bias_columns(float *restrict db, const float *restrict dy, int64_t R, int64_t C, int64_t j0,
                         int64_t j1) {
    float acc[16] = {0};
    if (j1 - j0 == 16) {
        for (int64_t r = 0; r < R; r++)
            for (int j = 0; j < 16; j++) acc[j] += dy[r * C + j0 + j];
    } else {
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = j0; j < j1; j++) acc[j - j0] += dy[r * C + j];
    }
    for (int64_t j = j0; j < j1; j++) db[j] = acc[j - j0];
}

int fn_bias_backward(float *db, const float *dy, int64_t R, int64_t C, int n_threads) {
    /* Columns are split in blocks of 16: each thread owns whole columns and sums rows in order. */
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(R * C), blk, fn_ceil_div(C, 16),
                    bias_columns(db, dy, R, C, blk * 16, fn_min64(C, blk * 16 + 16)));
    return FN_OK;
}

/* dx = dy w^T, dw = x^T dy and db in one parallel region: both GEMMs' packing, then both GEMMs' tiles and db's
 * column blocks as one list of items (more items to share among many threads than either GEMM has alone). */
/* A thread's share of the backward's items: both GEMMs' packing, then their tiles and db's column sums. */
static void backward_items(const fn_gemm_job *jx, const fn_gemm_job *jw, float *db, const float *dy, int64_t N,
                           int64_t O, int64_t px, int64_t pw, int64_t tx, int64_t tw, int64_t nb, fn_barrier *bar) {
    if (px + pw) { /* dx's panels (W transposed) cost more than dw's (dy): dynamic, as below */
        #pragma omp for schedule(dynamic, 1) nowait
        for (int64_t q = 0; q < px + pw; q++) {
            if (q < px) fn_gemm_job_pack(jx, q);
            else fn_gemm_job_pack(jw, q - px);
        }
        fn_barrier_wait(bar);
    }
    /* Items of unequal cost (two GEMMs' tiles, db's column sums): taken one at a time by whichever thread is free,
     * since a static split of the list gave one thread the tiles and the other the sums. Which thread runs an item
     * changes none of its bits. */
    #pragma omp for schedule(dynamic, 1) nowait
    for (int64_t t = 0; t < tx + tw + nb; t++) {
        int64_t m0, m1, j0, j1;
        if (t < tx) fn_gemm_job_tile(jx, t, &m0, &m1, &j0, &j1);
        else if (t < tx + tw) fn_gemm_job_tile(jw, t - tx, &m0, &m1, &j0, &j1);
        else bias_columns(db, dy, N, O, (t - tx - tw) * 16, fn_min64(O, (t - tx - tw) * 16 + 16));
    }
}

int fn_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                      int64_t N, int64_t I, int64_t O, int isa, int precision, float *ws, int n_threads) {
    const int nt = fn_threads_for(N * I * O * (dx ? 2 : 1), FN_GRAIN_MACS, n_threads);
    fn_gemm_job jx, jw;
    fn_gemm_job_init(&jw, 1, 0, I, O, N, 1.0f, x, I, dy, O, 0.0f, dw, O, isa, precision, ws, nt);
    if (dx)
        fn_gemm_job_init(&jx, 0, 1, N, I, O, 1.0f, dy, O, w, O, 0.0f, dx, I, isa, precision,
                         ws + dw_workspace(N, I, O, isa, precision), nt);
    const int64_t px = dx ? fn_gemm_job_packs(&jx) : 0, pw = fn_gemm_job_packs(&jw);
    const int64_t tx = dx ? fn_gemm_job_tiles(&jx) : 0, tw = fn_gemm_job_tiles(&jw), nb = db ? fn_ceil_div(O, 16) : 0;
    fn_barrier bar = FN_BARRIER;
    FN_PARALLEL(nt, backward_items(&jx, &jw, db, dy, N, O, px, pw, tx, tw, nb, &bar));
    return FN_OK;
}
