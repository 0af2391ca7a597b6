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

/* Algorithm of the conv kernels, an argument of each: FN_CONV_AUTO picks Winograd F(4x4, 3x3) for 3x3 stride-1
 * kernels with at least 16 input and output channels and float32 operands, direct convolution for kernels of at
 * most 32 taps (KH * KW * C) with a multiple of 8 output channels (up to 256) on the float32 FMA paths (AVX2,
 * AVX-512), and im2col + GEMM elsewhere; FN_CONV_WINOGRAD uses Winograd for every 3x3 stride-1 kernel (padding at
 * most 2), FN_CONV_DIRECT the direct kernels wherever the shape and path allow; FN_CONV_IM2COL always im2col (on
 * AMX, its stride-1 32-channel form reads the image without im2col: conv2d_taps.c). fn_conv2d_resolve_algo is the
 * one place that decides: the algorithm a call with `algo` runs for this shape, path and precision,
 * FN_CONV_IM2COL, FN_CONV_WINOGRAD or FN_CONV_DIRECT (whose data gradient and pooled forward are im2col's, with the
 * same results). Every kernel below takes algo, the GEMM path isa and the operands' precision (fn_gemm).
 * Reference: tests/reference.py conv2d_forward, conv2d_backward_data, conv2d_backward_filter; tests:
 * tests/test_kernels.py test_conv2d_*, tests/test_determinism.py. */
enum { FN_CONV_AUTO = 0, FN_CONV_IM2COL = 1, FN_CONV_WINOGRAD = 2, FN_CONV_DIRECT = 3 };
int fn_conv2d_resolve_algo(const fn_conv2d_shape *s, int algo, int isa, int precision);

/* What a forward makes from its weights before using them (Winograd's transformed, packed filters), kept from one
 * call to the next: made again only when the weights differ from the copy kept beside it, so any change is seen
 * (a training step, set_weights, a write in place). An inference program keeps one per convolution; a training
 * forward passes none (its weights change every step). mem: fn_conv2d_memo_size floats, zeroed or as the last
 * call left them. */
typedef struct fn_weights_memo {
    float *mem;
    int made;  /* mem holds the weights and what was made from them */
} fn_weights_memo;
/* Floats of mem for a forward of this shape and algorithm (0: the algorithm makes nothing worth keeping). */
int64_t fn_conv2d_memo_size(const fn_conv2d_shape *s, int algo, int isa, int precision);

/* y = act(conv(x, w) + b), act in {FN_ACT_LINEAR, FN_ACT_RELU}, bias and activation fused. memo: NULL, or what
 * the last call kept (fn_weights_memo). */
int fn_conv2d_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                      int act, int algo, int isa, int precision, fn_weights_memo *memo, float *ws, int n_threads);
/* The forward with a ReLU, followed by a 2x2 max-pool of stride 2 (no padding), in one pass: the pooled
 * y [N, OH/2, OW/2, OC] and argmax [N, OH/2, OW/2, OC] exactly as fn_maxpool2d_forward would give them from the
 * stored convolution, which is never written. Even OH and OW, and for an im2col shape 2 * OW <= 96 (its tiles are
 * whole pairs of output rows) (fn_conv2d_forward_maxpool_fits); FN_EUNSUPPORTED elsewhere. */
int fn_conv2d_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                              const fn_conv2d_shape *s, int algo, int isa, int precision, fn_weights_memo *memo,
                              float *ws, int n_threads);
int fn_conv2d_forward_maxpool_fits(const fn_conv2d_shape *s, int algo, int isa, int precision);
/* dx [N, H, W, C] = gradient of the input (overwritten). relu_x [N, H, W, C] (may be NULL): when the input
 * came out of a ReLU, its output; dx is then zeroed where relu_x <= 0 (the ReLU's backward, fused). */
int fn_conv2d_backward_data(float *dx, const float *dy, const float *w, const float *relu_x, const fn_conv2d_shape *s,
                            int algo, int isa, int precision, float *ws, int n_threads);
/* dw [KH, KW, C, OC] and db [OC] (may be NULL), overwritten. Images are summed in a fixed number of chunks,
 * fixed by the shape alone, then the chunks in order: bit-identical for any n_threads. */
int fn_conv2d_backward_filter(float *dw, float *db, const float *dy, const float *x, const fn_conv2d_shape *s,
                              int algo, int isa, int precision, float *ws, int n_threads);

/* The whole backward in one call: dw, and db (may be NULL), as fn_conv2d_backward_filter gives them, and dx (may be
 * NULL: no input gradient, as for a network's first layer) as fn_conv2d_backward_data does, masked by relu_x (may
 * be NULL). dy is dL/d(conv + bias) [N, OH, OW, OC]; or, with argmax not NULL, the gradient of
 * fn_conv2d_forward_maxpool's output: dy [N, OH/2, OW/2, OC], with the forward's argmax and pooled output (the
 * ReLU's backward passes where pooled > 0). Winograd computes both gradients from one transform of dy on the
 * forward's tiles, and reads the pooled gradient in place; im2col runs the two kernels above (after the pool's
 * backward into the workspace). Workspace: fn_conv2d_backward_workspace floats. */
int fn_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const int32_t *argmax, const float *pooled,
                       const float *x, const float *w, const float *relu_x, const fn_conv2d_shape *s, int algo,
                       int isa, int precision, float *ws, int n_threads);
int64_t fn_conv2d_backward_workspace(const fn_conv2d_shape *s, int pooled, int algo, int isa, int precision,
                                     int n_threads);

/* Floats of workspace that any of the three conv kernels needs for this shape with algo (sized for the
 * algorithm it resolves to, not both). */
int64_t fn_conv2d_workspace(const fn_conv2d_shape *s, int algo, int isa, int precision, int n_threads);

#endif
