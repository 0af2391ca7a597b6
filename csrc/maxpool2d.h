#ifndef FN_MAXPOOL2D_H
#define FN_MAXPOOL2D_H
#include <stdint.h>

/* Max pooling over NHWC activations.
 *   x [N, H, W, C], y [N, OH, OW, C], argmax [N, OH, OW, C] (int32: offset (ih*W + iw)*C + c inside image n)
 *   window PH x PW, strides SH, SW, PT/PL padded rows/columns on top/left (padding never wins).
 * Ties go to the first maximum in row-major window order. Every window must overlap the image.
 * Reference: tests/reference.py maxpool2d_forward, maxpool2d_backward; tests: tests/test_kernels.py test_maxpool*.
 * backward takes the forward's geometry and argmax; when the windows tile the image exactly (stride = window,
 * no padding, nothing left over) it writes dx in one pass instead of zeroing and scattering.
 * backward: dx [N, H, W, C] is overwritten: zero, then dy scattered through argmax (overlapping windows add).
 *   y [N, OH, OW, C] (may be NULL): the forward output; when given, only outputs with y > 0 pass their
 *   gradient. That is the backward of a ReLU applied before the pooling, fused: the winning input is y. */
int fn_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                         int64_t OW, int n_threads);
int fn_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, const float *y, int64_t N, int64_t H,
                          int64_t W, int64_t C, int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                          int64_t OH, int64_t OW, int n_threads);

#endif
