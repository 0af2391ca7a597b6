#ifndef FN_DENSE_H
#define FN_DENSE_H
#include <stdint.h>

/* Fully connected layer, Keras layout.
 *   x [N, I], w [I, O], b [O] (may be NULL), y [N, O]
 * forward:  y = act(x w + b), act in {FN_ACT_LINEAR, FN_ACT_RELU} (bias and activation fused)
 * backward: dx = dy w^T [N, I] (skipped when dx is NULL), dw = x^T dy [I, O], db = sum_n dy [O]
 *           (dy is the gradient at the pre-activation output: apply the activation's backward first).
 *           All outputs are overwritten.
 * isa: the GEMM path (fn_gemm).
 * Reference: tests/reference.py dense_forward, dense_backward, bias_backward; tests: tests/test_kernels.py
 * test_dense_forward, test_dense_backward, test_bias_backward. */
/* The forward (rate 0), or the forward then inverted dropout at rate on y (0 < rate < 1): the values of
 * fn_dropout_forward(y, keep, y, N * O, rate, seed, stream, first) after the forward, without the mask (training a
 * Dense + ReLU + Dropout; fn_dropout_relu_backward is its backward). */
int fn_dense_forward_dropout(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t I,
                             int64_t O, int act, float rate, uint64_t seed, uint64_t stream, uint64_t first, int isa,
                             int precision,
                             float *ws, int n_threads);
/* The forward with w packed beforehand by fn_gemm_pack(wp, w, O, 0, I, O, isa, precision, ...): many batches, one
 * packing. */
int fn_dense_forward_prepacked(float *y, const float *x, const float *wp, const float *b, int64_t N, int64_t I,
                               int64_t O, int act, int isa, int precision, float *ws, int n_threads);
int fn_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                      int64_t N, int64_t I, int64_t O, int isa, int precision, float *ws, int n_threads);
int64_t fn_dense_workspace(int64_t N, int64_t I, int64_t O, int isa, int precision);

/* db[C] = sum over rows of dy[R, C], summed row by row in order (deterministic for any n_threads). */
int fn_bias_backward(float *db, const float *dy, int64_t R, int64_t C, int n_threads);

#endif
