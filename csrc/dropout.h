#ifndef FN_DROPOUT_H
#define FN_DROPOUT_H
#include <stdint.h>

/* Inverted dropout over n floats: y = x * keep / (1 - rate), keep [n] (uint8, 1 = kept).
 * keep[i] = (u(seed, stream, first + i) >= rate) with u a counter-based uniform in [0, 1): a hash of
 * (seed, stream, element), so the mask never depends on the thread count. Callers key stream by
 * (training step, layer); elements are counted modulo 2^32 within a stream. first is the stream position of
 * x[0]: a data-parallel rank holding rows r.. of a batch passes r * (elements per row) and draws the mask that
 * one process draws for those rows. backward: dx = dy * keep / (1 - rate). y may alias x, dx may alias dy.
 * Reference: tests/reference.py dropout_forward, dropout_backward (given the mask); tests: tests/test_kernels.py
 * test_dropout*, test_random_uniform_statistics. */
int fn_dropout_forward(float *y, uint8_t *keep, const float *x, int64_t n, float rate, uint64_t seed,
                       uint64_t stream, uint64_t first, int n_threads);
int fn_dropout_backward(float *dx, const float *dy, const uint8_t *keep, int64_t n, float rate, int n_threads);
/* The backward of a ReLU then dropout at `rate` from their output y alone (no mask): dx = y > 0 ? dy / (1 - rate)
 * : 0, bit for bit fn_dropout_backward then the ReLU's backward (the dense forward that fuses both leaves no mask).
 * dx may alias dy. Tests: tests/test_kernels.py test_dense_forward_with_dropout*. */
int fn_dropout_relu_backward(float *dx, const float *dy, const float *y, int64_t n, float rate, int n_threads);

/* The uniform numbers behind the masks: u[i] = u(seed, stream, first + i), i in [0, n). */
int fn_random_uniform(float *u, int64_t n, uint64_t seed, uint64_t stream, uint64_t first, int n_threads);

#endif
