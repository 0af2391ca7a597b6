/* The im2col convolution's tiles and scratch (conv2d.c), shared with its tap path on AMX (conv2d_taps.c): both
 * carve the same workspace (fn_conv2d_workspace), so the layout lives here once. Private to those two files. */
#ifndef FN_CONV2D_TILES_H
#define FN_CONV2D_TILES_H

#include "internal.h"

#define FN_CONV_ROWS 96          /* output positions per forward / backward-data tile */
#define FN_CONV_FILTER_COLS (1 << 18) /* floats of im2col buffer per thread in backward-filter */

static inline int64_t kcols(const fn_conv2d_shape *s) { return s->KH * s->KW * s->C; }

/* Per-thread scratch of the forward and backward-data passes: one im2col tile and its product (or, in the direct
 * data gradient on a bfloat16 path, one row of dy as slots; on the tap path, the converted image). */
static inline int64_t tile_slot(const fn_conv2d_shape *s) {
    const int64_t tile = fn_round_up(FN_CONV_ROWS * kcols(s) + FN_WS_PAD, 16);
    return fn_max64(tile, fn_round_up(s->OW * s->OC + FN_WS_PAD, 16)) +
           fn_round_up(FN_CONV_ROWS * s->OC + FN_WS_PAD, 16);
}

static inline int64_t filter_rows(const fn_conv2d_shape *s) {
    return fn_max64(1, fn_min64(s->OH * s->OW, FN_CONV_FILTER_COLS / kcols(s)));
}

static inline int64_t partial_size(const fn_conv2d_shape *s) { return fn_round_up(kcols(s) * s->OC + s->OC, 16); }

static inline int64_t filter_chunks(const fn_conv2d_shape *s) { return fn_filter_chunks(s->N, partial_size(s)); }

static inline int64_t filter_slot(const fn_conv2d_shape *s) {
    const int64_t rows = filter_rows(s);
    return fn_round_up(rows * kcols(s) + fn_gemm_packed_b_size(rows, s->OC) + 2 * FN_WS_PAD, 16);
}

/* Threads that take part in the filter gradient's chunks: each needs a scratch slot. */
static inline int filter_threads(const fn_conv2d_shape *s, int n_threads) {
    return (int)fn_min64(n_threads, filter_chunks(s));
}

/* Output positions per forward tile: FN_CONV_ROWS; with pooling, whole pairs of output rows (2 * OW <=
 * FN_CONV_ROWS, fn_conv2d_forward_maxpool_fits); on the tap path, whole output rows. A product's rows never depend
 * on the tiling (fn_ukernel_fn). */
static inline int64_t forward_tile_rows(const fn_conv2d_shape *s, int pooled, int taps) {
    if (pooled) return 2 * s->OW * (FN_CONV_ROWS / (2 * s->OW));
    return taps ? s->OW * (FN_CONV_ROWS / s->OW) : FN_CONV_ROWS;
}

/* dw (K x OC) and db (may be NULL) as the filter chunks' partials summed in order (conv2d.c). */
void fn_conv2d_sum_chunks(float *dw, float *db, const float *partials, const fn_conv2d_shape *s, int n_threads);
/* w[0:nw] and b[0:nb] (b may be NULL) = the sum of nch partials (psize floats apart, each w's values then b's), in
 * the partials' order: bit-identical for any n_threads. */
void fn_sum_partials(float *w, int64_t nw, float *b, int64_t nb, const float *partials, int64_t nch, int64_t psize,
                     int n_threads);

/* The tap path (conv2d_taps.c): on a micro-kernel with taps (AMX), a stride-1 convolution of 32-channel images read
 * straight from the image, without im2col, bit for bit im2col's products in the forward. */
int fn_conv2d_taps_fit(const fn_ukernel *uk, const fn_conv2d_shape *s);
void fn_conv2d_taps_image(float *restrict pix, const float *restrict xn, const fn_conv2d_shape *s);
void fn_conv2d_taps_rows(const fn_ukernel *uk, float *restrict prod, const float *restrict pix, const float *bp,
                         const fn_conv2d_shape *s, int64_t oh0, int64_t oh1);
int fn_conv2d_taps_data_fit(const fn_ukernel *uk, const fn_conv2d_shape *s);
void fn_conv2d_taps_backward_data(float *dx, const float *dy, const float *w, const float *relu_x,
                                  const fn_conv2d_shape *s, const fn_ukernel *uk, float *ws, int n_threads);
int fn_conv2d_taps_filter_fit(const fn_ukernel *uk, const fn_conv2d_shape *s);
void fn_conv2d_taps_backward_filter(float *dw, float *db, const float *dy, const float *x, const fn_conv2d_shape *s,
                                    const fn_ukernel *uk, float *ws, int n_threads);

#endif
