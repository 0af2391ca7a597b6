#include "fastnet.h"
#include "internal.h"

int64_t fn_dense_workspace(int64_t N, int64_t I, int64_t O, int isa, int n_threads) {
    int64_t ws = fn_gemm_workspace(N, O, I, isa, n_threads);
    ws = fn_max64(ws, fn_gemm_workspace(N, I, O, isa, n_threads));
    return fn_max64(ws, fn_gemm_workspace(I, O, N, isa, n_threads));
}

int fn_dense_forward(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t I,
                     int64_t O, int act, int isa, float *ws, int n_threads) {
    if (act != FN_ACT_LINEAR && act != FN_ACT_RELU) return FN_EINVAL;
    fn_gemm(0, 0, N, O, I, 1.0f, x, I, w, O, 0.0f, y, O, isa, ws, n_threads);
    if (b || act != FN_ACT_LINEAR) fn_bias_act_forward(y, b, N, O, act, n_threads);
    return FN_OK;
}

int fn_dense_forward_prepacked(float *y, const float *x, const float *wp, const float *b, int64_t N, int64_t I,
                               int64_t O, int act, int isa, float *ws, int n_threads) {
    if (act != FN_ACT_LINEAR && act != FN_ACT_RELU) return FN_EINVAL;
    fn_gemm_prepacked(0, N, O, I, 1.0f, x, I, wp, 0.0f, y, O, isa, ws, n_threads);
    if (b || act != FN_ACT_LINEAR) fn_bias_act_forward(y, b, N, O, act, n_threads);
    return FN_OK;
}

int64_t fn_dense_forward_prepacked_workspace(int64_t N, int64_t I, int isa) {
    return fn_gemm_prepacked_workspace(N, I, isa);
}

int fn_bias_backward(float *db, const float *dy, int64_t R, int64_t C, int n_threads) {
    /* Columns are split in blocks of 16: each thread owns whole columns and sums rows in order. */
    const int64_t nblocks = fn_ceil_div(C, 16);
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        const int64_t j0 = blk * 16, j1 = fn_min64(C, j0 + 16);
        for (int64_t j = j0; j < j1; j++) db[j] = 0.0f;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = j0; j < j1; j++) db[j] += dy[r * C + j];
    }
    return FN_OK;
}

int fn_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                      int64_t N, int64_t I, int64_t O, int isa, float *ws, int n_threads) {
    if (dx) fn_gemm(0, 1, N, I, O, 1.0f, dy, O, w, O, 0.0f, dx, I, isa, ws, n_threads);
    fn_gemm(1, 0, I, O, N, 1.0f, x, I, dy, O, 0.0f, dw, O, isa, ws, n_threads);
    if (db) fn_bias_backward(db, dy, N, O, n_threads);
    return FN_OK;
}
