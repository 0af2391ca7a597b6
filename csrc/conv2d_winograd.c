/* Winograd F(2x2, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
 * each 2x2 block of outputs is computed from its 4x4 input patch with 16 multiplications per channel pair
 * instead of 36. 3x3 kernels, stride 1 only; conv2d.c decides when this path runs.
 *
 * With d a 4x4 input patch, g a 3x3 kernel and y the 2x2 outputs (one channel pair):
 *   y = A^T [(G g G^T) . (B^T d B)] A          (. is the elementwise product)
 * Summed over input channels, each of the 16 elementwise positions xi becomes one GEMM:
 *   M[xi] (tiles x OC) = V[xi] (tiles x C) . U[xi] (C x OC)
 * The filter gradient is the adjoint: dU[xi] (C x OC) = V[xi]^T . (A dy A^T)[xi], then dw = G^T dU G.
 * The backward-data pass is the forward engine run on dy with the kernel flipped and transposed.
 *
 * Tiles of 2x2 outputs are processed in blocks of FN_WINO_TILES: a block's transformed inputs and products
 * (16 x tiles x channels each) stay in the thread's cache between the transforms and the 16 GEMMs. The
 * transforms only add, subtract and halve, so they are exact up to rounding of the sums. */
#include <string.h>

#include "fastnet.h"
#include "internal.h"

/* 2x2 output tiles per block, multiples of every micro-kernel's MR (8, 6, 4). A forward-shaped block's
 * transformed inputs (16 x 24 x C floats) stay in L1/L2 between the transforms and the GEMMs; the filter
 * gradient's blocks are the depth of its GEMMs, which prefer them longer. */
#define FN_WINO_TILES 24
#define FN_WINO_GRAD_TILES 48

/* The per-tile code is inlined into each ISA clone of the block helpers (GCC inlines across target
 * attributes only when told to). */
#if defined(__GNUC__)
#define FN_TILE_FN static inline __attribute__((always_inline))
#else
#define FN_TILE_FN static inline
#endif

/* One forward-shaped pass: input [N, H, W, C] zero-padded by PT rows and PL columns before it, output
 * [N, OH, OW, OC], 3x3 kernel, stride 1. */
typedef struct {
    int64_t N, H, W, C, OH, OW, OC, PT, PL;
} wino_pass;

static int64_t tiles_h(const wino_pass *p) { return fn_ceil_div(p->OH, 2); }
static int64_t tiles_w(const wino_pass *p) { return fn_ceil_div(p->OW, 2); }
static int64_t tiles_per_image(const wino_pass *p) { return tiles_h(p) * tiles_w(p); }

static wino_pass forward_pass(const fn_conv2d_shape *s) {
    return (wino_pass){s->N, s->H, s->W, s->C, s->OH, s->OW, s->OC, s->PT, s->PL};
}

/* dx = conv(dy padded by 2 - PT, 2 - PL; w flipped): the same engine with the channel roles swapped. */
static wino_pass backward_data_pass(const fn_conv2d_shape *s) {
    return (wino_pass){s->N, s->OH, s->OW, s->OC, s->H, s->W, s->C, 2 - s->PT, 2 - s->PL};
}

/* ---- transforms (channel vectors: every loop runs over contiguous channels and vectorizes) ---- */

/* V[xi] = (B^T d B)[xi] for one tile into v[xi * C + c]. Row a of the 4x4 patch d starts at r[a]; its pixel
 * b is at r[a] + b * C. */
FN_TILE_FN void input_tile(float *restrict v, const float *const *r, int64_t C) {
    const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#if defined(__GNUC__)
#pragma GCC ivdep
#endif
    for (int64_t c = 0; c < C; c++) {
        float t[4][4]; /* rows: B^T d = (d0 - d2, d1 + d2, d2 - d1, d1 - d3) */
        for (int b = 0; b < 4; b++) {
            const float d0 = r0[b * C + c], d1 = r1[b * C + c], d2 = r2[b * C + c], d3 = r3[b * C + c];
            t[0][b] = d0 - d2;
            t[1][b] = d1 + d2;
            t[2][b] = d2 - d1;
            t[3][b] = d1 - d3;
        }
        for (int i = 0; i < 4; i++) { /* columns: (B^T d) B, the same combination */
            v[(4 * i + 0) * C + c] = t[i][0] - t[i][2];
            v[(4 * i + 1) * C + c] = t[i][1] + t[i][2];
            v[(4 * i + 2) * C + c] = t[i][2] - t[i][1];
            v[(4 * i + 3) * C + c] = t[i][1] - t[i][3];
        }
    }
}

/* The 2x2 outputs of one tile from its products m[xi * OC + o]: A^T m A, then the epilogue: bias (never
 * NULL: zeros when there is none), then ReLU (relu), or the ReLU mask of a fused backward (masked: output k
 * is kept where its mask value is > 0). Output row a starts at y[a], its pixel b at y[a] + b * OC; the mask
 * rows k[a] likewise. relu and masked are constants at every call: each variant is a straight vector loop. */
FN_TILE_FN void output_tile(float *const *y, const float *const *k, const float *restrict m, const float *restrict bias,
                            const int relu, const int masked, int64_t OC) {
    float *restrict y0 = y[0], *restrict y1 = y[1];
    const float *restrict k0 = k[0], *restrict k1 = k[1];
#if defined(__GNUC__)
#pragma GCC ivdep
#endif
    for (int64_t o = 0; o < OC; o++) {
        float a[4], b[4]; /* rows: A^T m = (m0 + m1 + m2, m1 - m2 - m3) */
        for (int j = 0; j < 4; j++) {
            const float m0 = m[j * OC + o], m1 = m[(4 + j) * OC + o], m2 = m[(8 + j) * OC + o],
                        m3 = m[(12 + j) * OC + o];
            a[j] = m0 + m1 + m2;
            b[j] = m1 - m2 - m3;
        }
        float r[4] = {a[0] + a[1] + a[2] + bias[o], a[1] - a[2] - a[3] + bias[o], /* columns, and the bias */
                      b[0] + b[1] + b[2] + bias[o], b[1] - b[2] - b[3] + bias[o]};
        if (relu)
            for (int i = 0; i < 4; i++) r[i] = r[i] > 0.0f ? r[i] : 0.0f;
        if (masked) {
            const float keep[4] = {k0[o], k0[OC + o], k1[o], k1[OC + o]};
            for (int i = 0; i < 4; i++) r[i] = keep[i] > 0.0f ? r[i] : 0.0f;
        }
        y0[o] = r[0], y0[OC + o] = r[1], y1[o] = r[2], y1[OC + o] = r[3];
    }
}

/* output_tile with bias and ReLU, then the 2x2 max-pool of the four outputs: y[o] is the maximum and arg[o]
 * its offset, off[k] + o for output k in row-major order, the first maximum winning ties (strict >), exactly
 * as fn_maxpool2d_forward picks it from the stored outputs. */
FN_TILE_FN void output_tile_pooled(float *restrict y, int32_t *restrict arg, const int32_t *off,
                                   const float *restrict m, const float *restrict bias, int64_t OC) {
    const int32_t off0 = off[0], off1 = off[1], off2 = off[2], off3 = off[3];
#if defined(__GNUC__)
#pragma GCC ivdep
#endif
    for (int64_t o = 0; o < OC; o++) {
        float a[4], b[4];
        for (int j = 0; j < 4; j++) {
            const float m0 = m[j * OC + o], m1 = m[(4 + j) * OC + o], m2 = m[(8 + j) * OC + o],
                        m3 = m[(12 + j) * OC + o];
            a[j] = m0 + m1 + m2;
            b[j] = m1 - m2 - m3;
        }
        float r[4] = {a[0] + a[1] + a[2] + bias[o], a[1] - a[2] - a[3] + bias[o],
                      b[0] + b[1] + b[2] + bias[o], b[1] - b[2] - b[3] + bias[o]};
        for (int i = 0; i < 4; i++) r[i] = r[i] > 0.0f ? r[i] : 0.0f;
        float best = r[0];
        int32_t at = off0 + (int32_t)o;
        at = r[1] > best ? off1 + (int32_t)o : at, best = r[1] > best ? r[1] : best;
        at = r[2] > best ? off2 + (int32_t)o : at, best = r[2] > best ? r[2] : best;
        at = r[3] > best ? off3 + (int32_t)o : at, best = r[3] > best ? r[3] : best;
        y[o] = best, arg[o] = at;
    }
}

/* (A g A^T)[xi] for one tile's 2x2 output gradients into e[xi * es + o], and their sum added to db; row a
 * of g starts at g[a], its pixel b at g[a] + b * OC. */
FN_TILE_FN void output_grad_tile(float *restrict e, int64_t es, float *restrict db, const float *const *g,
                                 int64_t OC) {
    const float *g0 = g[0], *g1 = g[1];
#if defined(__GNUC__)
#pragma GCC ivdep
#endif
    for (int64_t o = 0; o < OC; o++) {
        const float q[2][2] = {{g0[o], g0[OC + o]}, {g1[o], g1[OC + o]}};
        db[o] += (q[0][0] + q[0][1]) + (q[1][0] + q[1][1]);
        float t[4][2]; /* A g: rows g0, g0 + g1, g0 - g1, -g1 */
        for (int j = 0; j < 2; j++) {
            t[0][j] = q[0][j];
            t[1][j] = q[0][j] + q[1][j];
            t[2][j] = q[0][j] - q[1][j];
            t[3][j] = -q[1][j];
        }
        for (int i = 0; i < 4; i++) { /* (A g) A^T */
            e[(4 * i + 0) * es + o] = t[i][0];
            e[(4 * i + 1) * es + o] = t[i][0] + t[i][1];
            e[(4 * i + 2) * es + o] = t[i][0] - t[i][1];
            e[(4 * i + 3) * es + o] = -t[i][1];
        }
    }
}

/* u[xi][ci][co] = (G g G^T)[xi] for the kernel w [3, 3, C, OC]. flip = 0: ci = c, co = oc (forward).
 * flip = 1: ci = oc, co = c, kernel rotated by 180 degrees (the backward-data pass). */
static void filter_transform(float *restrict u, const float *restrict w, int64_t C, int64_t OC, int flip) {
    const int64_t CI = flip ? OC : C, CO = flip ? C : OC;
    for (int64_t ci = 0; ci < CI; ci++)
        for (int64_t co = 0; co < CO; co++) {
            float g[3][3], t[4][3];
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++)
                    g[kh][kw] = flip ? w[((2 - kh) * 3 + (2 - kw)) * C * OC + co * OC + ci]
                                     : w[(kh * 3 + kw) * C * OC + ci * OC + co];
            for (int j = 0; j < 3; j++) { /* G g */
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                float *ui = u + 4 * i * CI * CO + ci * CO + co;
                ui[0 * CI * CO] = t[i][0];
                ui[1 * CI * CO] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                ui[2 * CI * CO] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                ui[3 * CI * CO] = t[i][2];
            }
        }
}

/* dw[kh][kw][c][oc] = (G^T du G)[kh][kw] for du[xi][c][oc]; elements [e0, e1) of C*OC. */
static void filter_grad_transform(float *restrict dw, const float *restrict du, int64_t COC, int64_t e0,
                                  int64_t e1) {
    for (int64_t e = e0; e < e1; e++) {
        float t[3][4];
        for (int j = 0; j < 4; j++) { /* G^T du: rows du0 + (du1 + du2)/2, (du1 - du2)/2, (du1 + du2)/2 + du3 */
            const float a0 = du[j * COC + e], a1 = du[(4 + j) * COC + e], a2 = du[(8 + j) * COC + e],
                        a3 = du[(12 + j) * COC + e];
            t[0][j] = a0 + 0.5f * (a1 + a2);
            t[1][j] = 0.5f * (a1 - a2);
            t[2][j] = 0.5f * (a1 + a2) + a3;
        }
        for (int i = 0; i < 3; i++) { /* (G^T du) G */
            dw[(3 * i + 0) * COC + e] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
            dw[(3 * i + 1) * COC + e] = 0.5f * (t[i][1] - t[i][2]);
            dw[(3 * i + 2) * COC + e] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
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
    return (tile_pos){t / tpi, 2 * (r / tiles_w(p)), 2 * (r % tiles_w(p))};
}

/* Row pointers of tile q's 4x4 input patch: in place when it lies inside the image, else copied into patch
 * (16 * C floats) with zeros for the padding. */
FN_TILE_FN void patch_rows(const float **r, float *patch, const float *x, const wino_pass *p, tile_pos q, int64_t C) {
    const int64_t ih0 = q.oh - p->PT, iw0 = q.ow - p->PL;
    if (ih0 >= 0 && iw0 >= 0 && ih0 + 4 <= p->H && iw0 + 4 <= p->W) {
        for (int a = 0; a < 4; a++) r[a] = x + ((q.n * p->H + ih0 + a) * p->W + iw0) * C;
        return;
    }
    for (int a = 0; a < 4; a++) {
        r[a] = patch + 4 * a * C;
        for (int b = 0; b < 4; b++) {
            const int64_t ih = ih0 + a, iw = iw0 + b;
            float *dst = patch + (4 * a + b) * C;
            if (ih >= 0 && ih < p->H && iw >= 0 && iw < p->W) memcpy(dst, x + ((q.n * p->H + ih) * p->W + iw) * C, sizeof(float) * C);
            else memset(dst, 0, sizeof(float) * C);
        }
    }
}

/* 1 when all four outputs of the tile exist (not cut off by an odd OH or OW). */
FN_TILE_FN int tile_is_full(const wino_pass *p, tile_pos q) { return q.oh + 2 <= p->OH && q.ow + 2 <= p->OW; }

FN_TILE_FN int64_t pixel_offset(const wino_pass *p, tile_pos q, int a, int b) {
    return ((q.n * p->OH + q.oh + a) * p->OW + q.ow + b) * p->OC;
}

/* ---- blocks of tiles: one call per block, so the ISA clone is picked once per block. Each helper is
 * instantiated for 32 channels, the CNN's, so its tile loops have constant trip counts and offsets. ---- */

FN_TILE_FN void input_block_c(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0, int64_t tb,
                              int64_t C) {
    for (int64_t t = 0; t < tb; t++) {
        const float *r[4];
        patch_rows(r, patch, x, p, tile_at(p, t0 + t), C);
        input_tile(v + t * 16 * C, r, C);
    }
}

/* Transformed inputs of tiles [t0, t0 + tb) into v[t][xi][C]; patch: 16 * C floats of scratch. */
FN_VECTOR_CLONES static void input_block(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0,
                                         int64_t tb) {
    if (p->C == 32) input_block_c(v, patch, x, p, t0, tb, 32);
    else input_block_c(v, patch, x, p, t0, tb, p->C);
}

FN_TILE_FN void output_block_c(float *y, const float *mask, const float *m, const float *bias, int relu,
                               float *sink, const wino_pass *p, int64_t t0, int64_t tb, int64_t OC) {
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        const float *mt = m + t * 16 * OC;
        if (tile_is_full(p, q)) {
            float *yr[2] = {y + pixel_offset(p, q, 0, 0), y + pixel_offset(p, q, 1, 0)};
            const float *kr[2] = {yr[0], yr[1]};
            if (mask) {
                kr[0] = mask + pixel_offset(p, q, 0, 0), kr[1] = mask + pixel_offset(p, q, 1, 0);
                output_tile(yr, kr, mt, bias, 0, 1, OC);
            } else if (relu) {
                output_tile(yr, kr, mt, bias, 1, 0, OC);
            } else {
                output_tile(yr, kr, mt, bias, 0, 0, OC);
            }
            continue;
        }
        /* A tile cut off by the edge: all four outputs into the sink, then the ones that exist. */
        float *sr[2] = {sink, sink + 2 * OC};
        const float *kr[2] = {sink, sink + 2 * OC};
        if (relu) output_tile(sr, kr, mt, bias, 1, 0, OC);
        else output_tile(sr, kr, mt, bias, 0, 0, OC);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                if (q.oh + a >= p->OH || q.ow + b >= p->OW) continue;
                const int64_t off = pixel_offset(p, q, a, b);
                const float *src = sink + (2 * a + b) * OC;
                for (int64_t o = 0; o < OC; o++) y[off + o] = !mask || mask[off + o] > 0.0f ? src[o] : 0.0f;
            }
    }
}

/* Outputs of tiles [t0, t0 + tb) from their products m[t][xi][OC], with output_tile's epilogue (mask NULL:
 * none). sink: 4 * OC floats of scratch. */
FN_VECTOR_CLONES static void output_block(float *y, const float *mask, const float *m, const float *bias, int relu,
                                          float *sink, const wino_pass *p, int64_t t0, int64_t tb) {
    if (p->OC == 32) output_block_c(y, mask, m, bias, relu, sink, p, t0, tb, 32);
    else output_block_c(y, mask, m, bias, relu, sink, p, t0, tb, p->OC);
}

FN_TILE_FN void output_pooled_block_c(float *y, int32_t *arg, const float *m, const float *bias, const wino_pass *p,
                                      int64_t t0, int64_t tb, int64_t OC) {
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        const int64_t pooled = (q.n * tiles_h(p) + q.oh / 2) * tiles_w(p) + q.ow / 2; /* one window per tile */
        int32_t off[4]; /* the four outputs' offsets inside image n, as max-pool's argmax counts them */
        for (int k = 0; k < 4; k++) off[k] = (int32_t)(((q.oh + k / 2) * p->OW + q.ow + k % 2) * OC);
        output_tile_pooled(y + pooled * OC, arg + pooled * OC, off, m + t * 16 * OC, bias, OC);
    }
}

/* Pooled outputs of tiles [t0, t0 + tb) (all full: OH and OW even) from their products m[t][xi][OC]. */
FN_VECTOR_CLONES static void output_pooled_block(float *y, int32_t *arg, const float *m, const float *bias,
                                                 const wino_pass *p, int64_t t0, int64_t tb) {
    if (p->OC == 32) output_pooled_block_c(y, arg, m, bias, p, t0, tb, 32);
    else output_pooled_block_c(y, arg, m, bias, p, t0, tb, p->OC);
}

FN_TILE_FN void output_grad_block_c(float *e, float *db, float *patch, const float *dy, const wino_pass *p,
                                    int64_t t0, int64_t tb, int64_t OC) {
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        const float *g[2] = {dy + pixel_offset(p, q, 0, 0), dy + pixel_offset(p, q, 1, 0)};
        if (!tile_is_full(p, q)) { /* zeros for the outputs past the edge */
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    float *dst = patch + (2 * a + b) * OC;
                    if (q.oh + a < p->OH && q.ow + b < p->OW) memcpy(dst, dy + pixel_offset(p, q, a, b), sizeof(float) * OC);
                    else memset(dst, 0, sizeof(float) * OC);
                }
            g[0] = patch, g[1] = patch + 2 * OC;
        }
        output_grad_tile(e + t * OC, FN_WINO_GRAD_TILES * OC, db, g, OC);
    }
}

/* Transformed output gradients of tiles [t0, t0 + tb) into e[xi][t][OC], their sum added to db[OC]; patch:
 * 4 * OC floats of scratch. */
FN_VECTOR_CLONES static void output_grad_block(float *e, float *db, float *patch, const float *dy,
                                               const wino_pass *p, int64_t t0, int64_t tb) {
    if (p->OC == 32) output_grad_block_c(e, db, patch, dy, p, t0, tb, 32);
    else output_grad_block_c(e, db, patch, dy, p, t0, tb, p->OC);
}

/* ---- the products ---- */

/* c[0:rows, 0:N] = (or += with accumulate) op(a) . bp, bp packed for depth K. Whole micro-tiles and one K
 * block go straight to the micro-kernel (the 16 products of a block are small: fn_gemm_tile's set-up would
 * show); other shapes take fn_gemm_tile, which computes every element the same way. */
static void block_product(const fn_ukernel *uk, int64_t rows, int64_t N, int64_t K, const float *a, int64_t lda,
                          int trans_a, const float *bp, int accumulate, float *c, int64_t ldc) {
    const int mr = uk->mr, nr = uk->nr;
    if (rows % mr || N % nr || K > FN_KC_MAX) {
        fn_gemm_tile(uk, 0, rows, 0, fn_ceil_div(N, nr), N, K, 1.0f, a, lda, trans_a, bp, accumulate ? 1.0f : 0.0f,
                     c, ldc);
        return;
    }
    const int64_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1;
    for (int64_t q = 0; q < N / nr; q++)
        for (int64_t i = 0; i < rows; i += mr)
            uk->kernel(K, a + i * rs, rs, cs, bp + q * K * nr, c + i * ldc + q * nr, ldc, accumulate);
}

/* ---- workspace ---- */

static int64_t slot(int64_t n) { return fn_round_up(n + FN_WS_PAD, 16); }

static int64_t packed_filter_size(int64_t CI, int64_t CO) { return slot(fn_gemm_packed_b_size(CI, CO)); }

/* Per-thread scratch of a forward-shaped pass: transformed inputs and products of one block, a padded patch,
 * zeros (the bias when there is none), a sink for the outputs past the edge. */
static int64_t pass_thread_size(const wino_pass *p) {
    return slot(16 * FN_WINO_TILES * p->C) + slot(16 * FN_WINO_TILES * p->OC) + slot(16 * p->C) + slot(p->OC) +
           slot(4 * p->OC);
}

static int64_t pass_size(const wino_pass *p, int n_threads) {
    return slot(16 * p->C * p->OC) + 16 * packed_filter_size(p->C, p->OC) + n_threads * pass_thread_size(p);
}

/* Chunks of images whose filter gradients are summed separately, then in order: a function of N alone. */
static int64_t grad_chunks(const fn_conv2d_shape *s) { return fn_min64(s->N, 64); }
static int64_t grad_partial_size(const fn_conv2d_shape *s) { return slot(16 * s->C * s->OC + s->OC); }

static int64_t grad_thread_size(const fn_conv2d_shape *s) {
    return slot(16 * FN_WINO_GRAD_TILES * s->C) + slot(16 * FN_WINO_GRAD_TILES * s->OC) +
           slot(fn_gemm_packed_b_size(FN_WINO_GRAD_TILES, s->OC)) + slot(16 * s->C) + slot(4 * s->OC);
}

int64_t fn_conv2d_winograd_workspace(const fn_conv2d_shape *s, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    const wino_pass f = forward_pass(s), b = backward_data_pass(s);
    const int64_t grad = grad_chunks(s) * grad_partial_size(s) + n_threads * grad_thread_size(s);
    return fn_max64(fn_max64(pass_size(&f, n_threads), pass_size(&b, n_threads)), grad) + 2 * FN_WS_PAD;
}

/* ---- the forward-shaped engine (forward and backward data) ---- */

/* y = the pass's output (with bias and act, or masked by mask), or, with argmax, its ReLU'd 2x2 max-pool. */
static void run_pass(float *y, int32_t *argmax, const float *x, const float *w, int flip, const float *bias,
                     int act, const float *mask, const wino_pass *p, float *ws, int n_threads) {
    const fn_ukernel *uk = fn_gemm_ukernel();
    const int64_t C = p->C, OC = p->OC, npanels = fn_ceil_div(OC, uk->nr), psize = packed_filter_size(C, OC);
    const int64_t ntiles = p->N * tiles_per_image(p), nblocks = fn_ceil_div(ntiles, FN_WINO_TILES);
    float *u = fn_align64(ws), *up = u + slot(16 * C * OC), *slots = up + 16 * psize;
    filter_transform(u, w, flip ? OC : C, flip ? C : OC, flip);

    #pragma omp parallel num_threads(n_threads)
    {
        float *v = slots + fn_thread_id() * pass_thread_size(p);
        float *m = v + slot(16 * FN_WINO_TILES * C), *patch = m + slot(16 * FN_WINO_TILES * OC);
        float *zeros = patch + slot(16 * C), *sink = zeros + slot(OC);
        memset(zeros, 0, sizeof(float) * OC);
        #pragma omp for schedule(static)
        for (int64_t xi = 0; xi < 16; xi++) fn_gemm_pack_b(uk, up + xi * psize, u + xi * C * OC, OC, 0, C, OC, 0, npanels);
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t t0 = blk * FN_WINO_TILES, tb = fn_min64(FN_WINO_TILES, ntiles - t0);
            const unsigned csr = fn_ftz_enter();
            input_block(v, patch, x, p, t0, tb);
            /* M[xi] = V[xi] U[xi]: rows of V[xi] and M[xi] are 16 * C and 16 * OC apart */
            for (int64_t xi = 0; xi < 16; xi++)
                block_product(uk, tb, OC, C, v + xi * C, 16 * C, 0, up + xi * psize, 0, m + xi * OC, 16 * OC);
            if (argmax) output_pooled_block(y, argmax, m, bias ? bias : zeros, p, t0, tb);
            else output_block(y, mask, m, bias ? bias : zeros, act == FN_ACT_RELU, sink, p, t0, tb);
            fn_ftz_leave(csr);
        }
    }
}

void fn_conv2d_winograd_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                                int act, float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    run_pass(y, NULL, x, w, 0, b, act, NULL, &p, ws, n_threads);
}

void fn_conv2d_winograd_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                                        const fn_conv2d_shape *s, float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    run_pass(y, argmax, x, w, 0, b, FN_ACT_RELU, NULL, &p, ws, n_threads);
}

void fn_conv2d_winograd_backward_data(float *dx, const float *dy, const float *w, const float *relu_x,
                                      const fn_conv2d_shape *s, float *ws, int n_threads) {
    const wino_pass p = backward_data_pass(s);
    run_pass(dx, NULL, dy, w, 1, NULL, FN_ACT_LINEAR, relu_x, &p, ws, n_threads);
}

/* ---- filter gradient ---- */

void fn_conv2d_winograd_backward_filter(float *dw, float *db, const float *dy, const float *x,
                                        const fn_conv2d_shape *s, float *ws, int n_threads) {
    const fn_ukernel *uk = fn_gemm_ukernel();
    const wino_pass p = forward_pass(s);
    const int64_t C = s->C, OC = s->OC, COC = C * OC, npanels = fn_ceil_div(OC, uk->nr);
    const int64_t tpi = tiles_per_image(&p), nch = grad_chunks(s), psize = grad_partial_size(s);
    const int direct_b = fn_gemm_b_is_packed(uk, 0, OC, OC);
    float *partials = fn_align64(ws), *slots = partials + nch * psize;

    #pragma omp parallel num_threads(n_threads)
    {
        float *v = slots + fn_thread_id() * grad_thread_size(s);
        float *e = v + slot(16 * FN_WINO_GRAD_TILES * C), *ep = e + slot(16 * FN_WINO_GRAD_TILES * OC);
        float *patch = ep + slot(fn_gemm_packed_b_size(FN_WINO_GRAD_TILES, OC)), *gpatch = patch + slot(16 * C);
        #pragma omp for schedule(static)
        for (int64_t ch = 0; ch < nch; ch++) {
            float *du = partials + ch * psize, *pb = du + 16 * COC;
            const int64_t n0 = ch * s->N / nch, n1 = (ch + 1) * s->N / nch, t1 = n1 * tpi;
            const unsigned csr = fn_ftz_enter();
            memset(pb, 0, sizeof(float) * OC);
            for (int64_t t0 = n0 * tpi; t0 < t1; t0 += FN_WINO_GRAD_TILES) {
                const int64_t tb = fn_min64(FN_WINO_GRAD_TILES, t1 - t0);
                input_block(v, patch, x, &p, t0, tb);
                output_grad_block(e, pb, gpatch, dy, &p, t0, tb);
                /* dU[xi] += V[xi]^T E[xi]: V[xi]^T is read in place (column t of it is 16 * C floats on) */
                for (int64_t xi = 0; xi < 16; xi++) {
                    const float *bq = e + xi * FN_WINO_GRAD_TILES * OC;
                    if (!direct_b) {
                        fn_gemm_pack_b(uk, ep, bq, OC, 0, tb, OC, 0, npanels);
                        bq = ep;
                    }
                    block_product(uk, C, OC, tb, v + xi * C, 16 * C, 1, bq, t0 > n0 * tpi, du + xi * COC, OC);
                }
            }
            fn_ftz_leave(csr);
        }
        /* Fixed-order sum of the chunks into chunk 0; each thread owns a range of elements. */
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < 16 * COC + OC; i++) {
            float sum = partials[i];
            for (int64_t ch = 1; ch < nch; ch++) sum += partials[ch * psize + i];
            partials[i] = sum;
        }
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < fn_ceil_div(COC, 64); blk++)
            filter_grad_transform(dw, partials, COC, blk * 64, fn_min64(COC, blk * 64 + 64));
    }
    if (db) memcpy(db, partials + 16 * COC, sizeof(float) * OC);
}
