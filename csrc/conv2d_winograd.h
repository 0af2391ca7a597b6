/* Winograd F(4x4, 3x3) convolution: what its forward (conv2d_winograd.c) and its backward
 * (conv2d_winograd_backward.c) share. Private to those two files.
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): each 4x4 block of outputs is computed
 * from its 6x6 input patch with 36 multiplications per channel pair
 * instead of 144. 3x3 kernels, stride 1 only; conv2d.c decides when this path runs.
 *
 * With d a 6x6 input patch, g a 3x3 kernel and y the 4x4 outputs (one channel pair):
 *   y = A^T [(G g G^T) . (B^T d B)] A          (. is the elementwise product)
 * Summed over input channels, each of the 36 elementwise positions xi becomes one GEMM:
 *   M[xi] (tiles x OC) = V[xi] (tiles x C) . U[xi] (C x OC)
 * The backward is the adjoint of the same map, on the forward's tiles: with E[xi] = (A dy A^T)[xi] (tiles x OC),
 *   dU[xi] (C x OC) = V[xi]^T . E[xi], then dw = G^T dU G              (the filter gradient)
 *   dV[xi] (tiles x C) = E[xi] . U[xi]^T, then each tile's patch of dx += B dV B^T   (the data gradient)
 * so both gradients share one transform of dy (and of x), and the data gradient takes the forward's tiles (36 per
 * 24x24 output) rather than a forward pass over dy padded by 2 (49 per 26x26 input: the old engine's way).
 *
 *   B^T = | 4  0 -5  0  1  0 |   G = |  1/4    0     0  |   A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |       | -1/6 -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |       | -1/6  1/6  -1/6 |         | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |       | 1/24 1/12   1/6 |         | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |       | 1/24 -1/12  1/6 |
 *         | 0  4  0 -5  0  1 |       |   0    0     1  |
 *
 * Tiles of 4x4 outputs are processed in blocks: a block's transformed inputs and products (36 x tiles x
 * channels each) stay in the thread's cache between the transforms and the 36 GEMMs. The transforms' rounding
 * makes results differ from a direct convolution by a few units in the 6th significant digit (the tests bound
 * it against the float64 reference). */
#ifndef FN_CONV2D_WINOGRAD_H
#define FN_CONV2D_WINOGRAD_H

#include <string.h>

#include "internal.h"

#define WM 4  /* outputs per tile side */
#define WA 6  /* input patch side: WM + 3 - 1 */
#define WX 36 /* elementwise positions: WA * WA */

/* Tiles per block (a multiple of every micro-kernel's MR: 8, 6, 4). A forward block keeps its transformed inputs and
 * products (36 x 24 x C floats each) in L2 between the transforms and the GEMMs, picked by timing 16-96 on the CNN's
 * second layer. A backward block is the depth of its filter products and the rows of its data products: 24, timed
 * 12-72 on the AVX2 path (72, the old filter-gradient-only choice, ran about 7 % slower in the joint backward). */
#define FN_WINO_TILES 24
#define FN_WINO_GRAD_TILES 24

/* The per-tile code is inlined into each ISA clone of the block helpers (GCC inlines across target
 * attributes only when told to). */
#if defined(__GNUC__)
#define FN_TILE_FN static inline __attribute__((always_inline))
#define FN_IVDEP _Pragma("GCC ivdep")
#define FN_UNROLL _Pragma("GCC unroll 8")
#else
#define FN_UNROLL
#define FN_TILE_FN static inline
#define FN_IVDEP
#endif
/* FN_UNROLL: the fixed-size loops inside a tile transform are unrolled first, so the channel loop around
 * them is innermost and vectorizes. */

/* One forward-shaped pass: input [N, H, W, C] zero-padded by PT rows and PL columns before it, output
 * [N, OH, OW, OC], 3x3 kernel, stride 1. */
typedef struct {
    int64_t N, H, W, C, OH, OW, OC, PT, PL;
} wino_pass;

static int64_t tiles_h(const wino_pass *p) { return fn_ceil_div(p->OH, WM); }
static int64_t tiles_w(const wino_pass *p) { return fn_ceil_div(p->OW, WM); }
static int64_t tiles_per_image(const wino_pass *p) { return tiles_h(p) * tiles_w(p); }

static wino_pass forward_pass(const fn_conv2d_shape *s) {
    return (wino_pass){s->N, s->H, s->W, s->C, s->OH, s->OW, s->OC, s->PT, s->PL};
}

/* ---- the 1-D transforms, on 6 (or 4) values a stride apart ---- */

/* t = B^T d */
FN_TILE_FN void bt6(float *t, const float *d) {
    const float d42 = d[4] - d[2], d31 = d[3] - d[1];
    t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    t[1] = (d[3] + d[4]) - 4.0f * (d[1] + d[2]);
    t[2] = (d[4] - d[3]) + 4.0f * (d[1] - d[2]);
    t[3] = d42 + 2.0f * d31;
    t[4] = d42 - 2.0f * d31;
    t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

/* ---- transforms of one tile (channel vectors: every loop runs over contiguous channels and vectorizes) ---- */

/* V[xi] = (B^T d B)[xi] for one tile into v[xi * C + c]. Row a of the 6x6 patch d starts at r[a]; its pixel
 * b is at r[a] + b * C. */
FN_TILE_FN void input_tile(float *restrict v, const float *const *r, int64_t C) {
    FN_IVDEP
    for (int64_t c = 0; c < C; c++) {
        float t[WA][WA]; /* t = B^T d: column b of d transformed into column b of t */
        FN_UNROLL
        for (int b = 0; b < WA; b++) {
            float col[WA], out[WA];
            FN_UNROLL
            for (int a = 0; a < WA; a++) col[a] = r[a][b * C + c];
            bt6(out, col);
            FN_UNROLL
            for (int a = 0; a < WA; a++) t[a][b] = out[a];
        }
        FN_UNROLL
        for (int i = 0; i < WA; i++) { /* (B^T d) B: each row of t transformed the same way */
            float out[WA];
            bt6(out, t[i]);
            FN_UNROLL
            for (int j = 0; j < WA; j++) v[(WA * i + j) * C + c] = out[j];
        }
    }
}

/* ---- tiles ---- */

/* Where tile t (an index over the whole batch) lies: image n, top-left output (oh, ow). */
typedef struct {
    int64_t n, oh, ow;
} tile_pos;

FN_TILE_FN tile_pos tile_at(const wino_pass *p, int64_t t) {
    const int64_t tpi = tiles_per_image(p), r = t % tpi;
    return (tile_pos){t / tpi, WM * (r / tiles_w(p)), WM * (r % tiles_w(p))};
}

/* Row pointers of tile q's 6x6 input patch: in place when it lies inside the image, else copied into patch
 * (36 * C floats) with zeros for the padding. */
FN_TILE_FN void patch_rows(const float **r, float *patch, const float *x, const wino_pass *p, tile_pos q, int64_t C) {
    const int64_t ih0 = q.oh - p->PT, iw0 = q.ow - p->PL;
    if (ih0 >= 0 && iw0 >= 0 && ih0 + WA <= p->H && iw0 + WA <= p->W) {
        for (int a = 0; a < WA; a++) r[a] = x + ((q.n * p->H + ih0 + a) * p->W + iw0) * C;
        return;
    }
    for (int a = 0; a < WA; a++) {
        r[a] = patch + WA * a * C;
        for (int b = 0; b < WA; b++) {
            const int64_t ih = ih0 + a, iw = iw0 + b;
            float *dst = patch + (WA * a + b) * C;
            if (ih >= 0 && ih < p->H && iw >= 0 && iw < p->W)
                memcpy(dst, x + ((q.n * p->H + ih) * p->W + iw) * C, sizeof(float) * C);
            else memset(dst, 0, sizeof(float) * C);
        }
    }
}

/* n 4-byte elements from p into the cache, a line (16 of them) at a time. */
FN_TILE_FN void prefetch_run(const void *p, int64_t n) {
    for (int64_t o = 0; o < n; o += 16) __builtin_prefetch((const float *)p + o);
}

/* The rows of tile q's input patch that lie in the image, into the cache ahead of their use (see input_block_c). */
FN_TILE_FN void prefetch_patch(const float *x, const wino_pass *p, tile_pos q, int64_t C) {
    const int64_t ih0 = q.oh - p->PT, iw0 = q.ow - p->PL, b0 = fn_max64(iw0, 0), b1 = fn_min64(iw0 + WA, p->W);
    for (int64_t ih = fn_max64(ih0, 0); ih < fn_min64(ih0 + WA, p->H); ih++) {
        const float *row = x + ((q.n * p->H + ih) * p->W + b0) * C;
        prefetch_run(row, (b1 - b0) * C);
    }
}

/* 1 when all 16 outputs of the tile exist (not cut off by OH or OW). */
FN_TILE_FN int tile_is_full(const wino_pass *p, tile_pos q) { return q.oh + WM <= p->OH && q.ow + WM <= p->OW; }

FN_TILE_FN int64_t pixel_offset(const wino_pass *p, tile_pos q, int a, int b) {
    return ((q.n * p->OH + q.oh + a) * p->OW + q.ow + b) * p->OC;
}

/* Workspace slices: 64-byte multiples with FN_WS_PAD floats of slack. */
static inline int64_t slot(int64_t n) { return fn_round_up(n + FN_WS_PAD, 16); }

static inline int64_t packed_filter_size(int64_t CI, int64_t CO) { return slot(fn_gemm_packed_b_size(CI, CO)); }

/* ---- shared by both passes (conv2d_winograd.c) ---- */

/* u[xi][c][oc] = (G g G^T)[xi] for input channel c of the kernel w [3, 3, C, OC]. */
void fn_wino_filter_transform(float *restrict u, const float *restrict w, int64_t c, int64_t C, int64_t OC);
void fn_wino_filter_transform_to(float *restrict u, int64_t xs, int64_t cs, int64_t nr, int64_t ps,
                                 const float *restrict w, int64_t c, int64_t C, int64_t OC);
/* Transformed inputs of tiles [t0, t0 + tb) into v[t][xi][C]; patch: 36 * C floats of scratch. */
void fn_wino_input_block(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0, int64_t tb);
/* c[0:rows, 0:N] = (or += with accumulate) op(a) . bp, bp packed for depth K; over_read: rows of op(a) past its
 * last may be read, so a partial micro-tile runs in place into tmp (mr x nr floats) where the kernel has no edge
 * kernel. */
void fn_wino_block_product(const fn_ukernel *uk, int64_t rows, int64_t N, int64_t K, const float *a, int64_t lda,
                           int trans_a, const float *bp, int accumulate, float *c, int64_t ldc, int over_read,
                           float *tmp);
/* The backward's workspace (conv2d_winograd_backward.c). */
int64_t fn_wino_grad_size(const fn_conv2d_shape *s, int n_threads);

#endif
