#ifndef FN_CONV2D_H
#define FN_CONV2D_H
#include <stdint.h>

/* Geometry of a 2-D convolution (NHWC activations, Keras kernel layout):
 *   x [N, H, W, C], w [KH, KW, C, OC], b [OC] (may be NULL), y [N, OH, OW, OC]
 *   strides SH, SW; PT, PL zero rows/columns padded on top/left (bottom/right follow from OH, OW).
 *   OH = (H + PT + PB - KH) / SH + 1 and likewise OW, for whatever bottom/right padding PB the caller chose. */
typedef struct {
    int64_t N, H, W, C, OC, KH, KW, SH, SW, PT, PL, OH, OW;
} fn_conv2d_shape;

/* y = act(conv(x, w) + b), act in {FN_ACT_LINEAR, FN_ACT_RELU}, bias and activation fused. Each of the three
 * kernels runs Winograd F(4x4, 3x3) or im2col + GEMM, as fn_conv2d_uses_winograd says (see below). */
int fn_conv2d_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                      int act, float *ws, int n_threads);
/* The forward with a ReLU, followed by a 2x2 max-pool of stride 2 (no padding), in one pass: the pooled
 * y [N, OH/2, OW/2, OC] and argmax [N, OH/2, OW/2, OC] exactly as fn_maxpool2d_forward would give them from the
 * stored convolution, which is never written. Winograd shapes with even OH and OW only
 * (fn_conv2d_forward_maxpool_fits); FN_EUNSUPPORTED elsewhere. */
int fn_conv2d_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                              const fn_conv2d_shape *s, float *ws, int n_threads);
int fn_conv2d_forward_maxpool_fits(const fn_conv2d_shape *s);
/* dx [N, H, W, C] = gradient of the input (overwritten). relu_x [N, H, W, C] (may be NULL): when the input
 * came out of a ReLU, its output; dx is then zeroed where relu_x <= 0 (the ReLU's backward, fused). */
int fn_conv2d_backward_data(float *dx, const float *dy, const float *w, const float *relu_x, const fn_conv2d_shape *s,
                            float *ws, int n_threads);
/* dw [KH, KW, C, OC] and db [OC] (may be NULL), overwritten. Images are summed in a fixed number of chunks,
 * fixed by the shape alone, then the chunks in order: bit-identical for any n_threads. */
int fn_conv2d_backward_filter(float *dw, float *db, const float *dy, const float *x, const fn_conv2d_shape *s,
                              float *ws, int n_threads);
/* Algorithm of the three conv kernels: FN_CONV_AUTO picks Winograd F(4x4, 3x3) for 3x3 stride-1 kernels with
 * at least 16 input and output channels and im2col + GEMM elsewhere; FN_CONV_WINOGRAD uses Winograd for every
 * 3x3 stride-1 kernel (padding at most 2); FN_CONV_IM2COL never does. Process-wide, like the GEMM ISA. */
enum { FN_CONV_AUTO = 0, FN_CONV_IM2COL = 1, FN_CONV_WINOGRAD = 2 };
int fn_conv2d_set_algo(int algo);
int fn_conv2d_algo(void);
/* 1 when the three kernels use Winograd for this shape under the current algorithm. */
int fn_conv2d_uses_winograd(const fn_conv2d_shape *s);

/* Floats of workspace that any of the three conv kernels needs for this shape. */
int64_t fn_conv2d_workspace(const fn_conv2d_shape *s, int n_threads);

#endif
