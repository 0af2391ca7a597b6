/* Winograd F(4x4, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
 * each 4x4 block of outputs is computed from its 6x6 input patch with 36 multiplications per channel pair
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
#include <string.h>

#include "fastnet.h"
#include "internal.h"
#include "conv2d_tiles.h"

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

/* o = B d, the adjoint of bt6: o[a] = sum over i of B^T[i][a] d[i] */
FN_TILE_FN void b6(float *o, const float *d) {
    o[0] = 4.0f * d[0];
    o[1] = 4.0f * (d[2] - d[1] + d[5]) + 2.0f * (d[4] - d[3]);
    o[2] = -5.0f * d[0] - 4.0f * (d[1] + d[2]) - (d[3] + d[4]);
    o[3] = (d[1] - d[2]) + 2.0f * (d[3] - d[4]) - 5.0f * d[5];
    o[4] = d[0] + d[1] + d[2] + d[3] + d[4];
    o[5] = d[5];
}

/* o = A^T m */
FN_TILE_FN void at6(float *o, const float *m) {
    const float s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + 2.0f * d34;
    o[2] = s12 + 4.0f * s34;
    o[3] = d12 + 8.0f * d34 + m[5];
}

/* e = A g (6 from 4) */
FN_TILE_FN void a4(float *e, const float *g) {
    const float s02 = g[0] + g[2], s13 = g[1] + g[3], t02 = g[0] + 4.0f * g[2], t13 = 2.0f * g[1] + 8.0f * g[3];
    e[0] = g[0];
    e[1] = s02 + s13;
    e[2] = s02 - s13;
    e[3] = t02 + t13;
    e[4] = t02 - t13;
    e[5] = g[3];
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

/* The 4x4 outputs of one tile from its products m[xi * OC + o]: A^T m A plus the bias (never NULL: zeros when
 * there is none), then ReLU (relu: a constant at every call, so each variant is a straight vector loop). Output
 * row a starts at y[a], its pixel b at y[a] + b * OC. */
FN_TILE_FN void output_tile(float *const *y, const float *restrict m, const float *restrict bias, const int relu,
                            int64_t OC) {
    FN_IVDEP
    for (int64_t o = 0; o < OC; o++) {
        float s[WM][WA]; /* A^T m: column j of m transformed into column j of s */
        FN_UNROLL
        for (int j = 0; j < WA; j++) {
            float col[WA], out[WM];
            FN_UNROLL
            for (int i = 0; i < WA; i++) col[i] = m[(WA * i + j) * OC + o];
            at6(out, col);
            FN_UNROLL
            for (int i = 0; i < WM; i++) s[i][j] = out[i];
        }
        FN_UNROLL
        for (int i = 0; i < WM; i++) { /* (A^T m) A, then the epilogue */
            float out[WM];
            at6(out, s[i]);
            FN_UNROLL
            for (int j = 0; j < WM; j++) {
                float v = out[j] + bias[o];
                if (relu) v = v > 0.0f ? v : 0.0f;
                y[i][j * OC + o] = v;
            }
        }
    }
}

/* (A g A^T)[xi] for n channels of one tile's 4x4 output gradients into e[xi * es + o], zeros for o in [n, width),
 * and their sum added to db; row a of g starts at g[a], its pixel b at g[a] + b * stride. */
FN_TILE_FN void output_grad_tile(float *restrict e, int64_t es, float *restrict db, const float *const *g, int64_t n,
                                 int64_t width, int64_t stride) {
    for (int64_t o = n; o < width; o++)
        for (int xi = 0; xi < WX; xi++) e[xi * es + o] = 0.0f;
    FN_IVDEP
    for (int64_t o = 0; o < n; o++) {
        float t[WA][WM], sum = 0.0f; /* A g: column b of g transformed into column b of t */
        FN_UNROLL
        for (int b = 0; b < WM; b++) {
            float col[WM], out[WA];
            FN_UNROLL
            for (int a = 0; a < WM; a++) col[a] = g[a][b * stride + o], sum += col[a];
            a4(out, col);
            FN_UNROLL
            for (int a = 0; a < WA; a++) t[a][b] = out[a];
        }
        db[o] += sum;
        FN_UNROLL
        for (int i = 0; i < WA; i++) { /* (A g) A^T */
            float out[WA];
            a4(out, t[i]);
            FN_UNROLL
            for (int j = 0; j < WA; j++) e[(WA * i + j) * es + o] = out[j];
        }
    }
}

/* The gradient of one tile's 6x6 input patch, B dV B^T, from dv[xi * ds + c] into p[(WA * a + b) * C + c]. */
FN_TILE_FN void patch_grad_tile(float *restrict p, const float *restrict dv, int64_t ds, int64_t C) {
    FN_IVDEP
    for (int64_t c = 0; c < C; c++) {
        float t[WA][WA]; /* dV B^T: each row of dV transformed */
        FN_UNROLL
        for (int i = 0; i < WA; i++) {
            float row[WA];
            FN_UNROLL
            for (int j = 0; j < WA; j++) row[j] = dv[(WA * i + j) * ds + c];
            b6(t[i], row);
        }
        FN_UNROLL
        for (int b = 0; b < WA; b++) { /* B (dV B^T): each column */
            float col[WA], out[WA];
            FN_UNROLL
            for (int i = 0; i < WA; i++) col[i] = t[i][b];
            b6(out, col);
            FN_UNROLL
            for (int a = 0; a < WA; a++) p[(WA * a + b) * C + c] = out[a];
        }
    }
}

/* e = G g (6 from 3) */
FN_TILE_FN void g3(float *e, const float *g) {
    const float s02 = g[0] + g[2];
    e[0] = 0.25f * g[0];
    e[1] = -(s02 + g[1]) * (1.0f / 6);
    e[2] = (g[1] - s02) * (1.0f / 6);
    e[3] = g[0] * (1.0f / 24) + g[1] * (1.0f / 12) + g[2] * (1.0f / 6);
    e[4] = g[0] * (1.0f / 24) - g[1] * (1.0f / 12) + g[2] * (1.0f / 6);
    e[5] = g[2];
}

/* u[xi][c][oc] = (G g G^T)[xi] for input channel c of the kernel w [3, 3, C, OC], a vector loop over oc. Run by all
 * threads, one input channel each at a time: done by one thread ahead of the parallel region, with the constants
 * of G in a table, it was a scalar loop that held the other threads waiting (2 % of a backward on one thread). */
FN_VECTOR_CLONES static void filter_transform(float *restrict u, const float *restrict w, int64_t c, int64_t C,
                                              int64_t OC) {
    FN_IVDEP
    for (int64_t co = 0; co < OC; co++) {
        float t[WA][3]; /* G g: column kw of g transformed into column kw of t */
        FN_UNROLL
        for (int kw = 0; kw < 3; kw++) {
            float col[3], out[WA];
            FN_UNROLL
            for (int kh = 0; kh < 3; kh++) col[kh] = w[(kh * 3 + kw) * C * OC + c * OC + co];
            g3(out, col);
            FN_UNROLL
            for (int i = 0; i < WA; i++) t[i][kw] = out[i];
        }
        FN_UNROLL
        for (int i = 0; i < WA; i++) { /* (G g) G^T */
            float out[WA];
            g3(out, t[i]);
            FN_UNROLL
            for (int j = 0; j < WA; j++) u[(WA * i + j) * C * OC + c * OC + co] = out[j];
        }
    }
}

/* o = G^T d (3 from 6) */
FN_TILE_FN void gt6(float *o, const float *d) {
    const float s12 = d[1] + d[2], s34 = d[3] + d[4];
    o[0] = 0.25f * d[0] - s12 * (1.0f / 6) + s34 * (1.0f / 24);
    o[1] = (d[2] - d[1]) * (1.0f / 6) + (d[3] - d[4]) * (1.0f / 12);
    o[2] = (s34 - s12) * (1.0f / 6) + d[5];
}

/* dw[kh][kw][c][oc] = (G^T du G)[kh][kw] for du[xi][c][oc], all C*OC elements (contiguous: vectorizes). */
FN_VECTOR_CLONES static void filter_grad_transform(float *restrict dw, const float *restrict du, int64_t COC) {
    FN_IVDEP
    for (int64_t e = 0; e < COC; e++) {
        float t[3][WA]; /* G^T du: column j of du transformed into column j of t */
        FN_UNROLL
        for (int j = 0; j < WA; j++) {
            float col[WA], out[3];
            FN_UNROLL
            for (int k = 0; k < WA; k++) col[k] = du[(WA * k + j) * COC + e];
            gt6(out, col);
            FN_UNROLL
            for (int i = 0; i < 3; i++) t[i][j] = out[i];
        }
        FN_UNROLL
        for (int i = 0; i < 3; i++) { /* (G^T du) G */
            float out[3];
            gt6(out, t[i]);
            FN_UNROLL
            for (int j = 0; j < 3; j++) dw[(3 * i + j) * COC + e] = out[j];
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
            if (ih >= 0 && ih < p->H && iw >= 0 && iw < p->W) memcpy(dst, x + ((q.n * p->H + ih) * p->W + iw) * C, sizeof(float) * C);
            else memset(dst, 0, sizeof(float) * C);
        }
    }
}

/* 1 when all 16 outputs of the tile exist (not cut off by OH or OW). */
FN_TILE_FN int tile_is_full(const wino_pass *p, tile_pos q) { return q.oh + WM <= p->OH && q.ow + WM <= p->OW; }

FN_TILE_FN int64_t pixel_offset(const wino_pass *p, tile_pos q, int a, int b) {
    return ((q.n * p->OH + q.oh + a) * p->OW + q.ow + b) * p->OC;
}

/* ---- blocks of tiles: one call per block, so the ISA clone is picked once per block. Each helper is
 * instantiated for 32 channels, the CNN's, so its tile loops have constant trip counts and offsets. ---- */

FN_TILE_FN void input_block_c(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0, int64_t tb,
                              int64_t C) {
    for (int64_t t = 0; t < tb; t++) {
        const float *r[WA];
        patch_rows(r, patch, x, p, tile_at(p, t0 + t), C);
        input_tile(v + t * WX * C, r, C);
    }
}

/* Transformed inputs of tiles [t0, t0 + tb) into v[t][xi][C]; patch: 36 * C floats of scratch. */
FN_VECTOR_CLONES static void input_block(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0,
                                         int64_t tb) {
    if (p->C == 32) input_block_c(v, patch, x, p, t0, tb, 32);
    else input_block_c(v, patch, x, p, t0, tb, p->C);
}

FN_TILE_FN void output_block_c(float *y, const float *m, const float *bias, int relu, float *sink, const wino_pass *p,
                               int64_t t0, int64_t tb, int64_t OC) {
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        const float *mt = m + t * WX * OC;
        const int full = tile_is_full(p, q);
        float *yr[WM]; /* a tile cut off by the edge: all 16 outputs into the sink, then the ones that exist */
        for (int a = 0; a < WM; a++) yr[a] = full ? y + pixel_offset(p, q, a, 0) : sink + WM * a * OC;
        if (relu) output_tile(yr, mt, bias, 1, OC);
        else output_tile(yr, mt, bias, 0, OC);
        if (full) continue;
        for (int a = 0; a < WM; a++)
            for (int b = 0; b < WM; b++)
                if (q.oh + a < p->OH && q.ow + b < p->OW)
                    memcpy(y + pixel_offset(p, q, a, b), sink + (WM * a + b) * OC, sizeof(float) * OC);
    }
}

/* Outputs of tiles [t0, t0 + tb) from their products m[t][xi][OC], with output_tile's epilogue. sink: 16 * OC
 * floats of scratch. */
FN_VECTOR_CLONES static void output_block(float *y, const float *m, const float *bias, int relu, float *sink,
                                          const wino_pass *p, int64_t t0, int64_t tb) {
    if (p->OC == 32) output_block_c(y, m, bias, relu, sink, p, t0, tb, 32);
    else output_block_c(y, m, bias, relu, sink, p, t0, tb, p->OC);
}

FN_TILE_FN void output_pooled_block_c(float *y, int32_t *arg, const float *m, const float *bias, float *sink,
                                      const wino_pass *p, int64_t t0, int64_t tb, int64_t OC) {
    const int64_t PH = p->OH / 2, PW = p->OW / 2;
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        float *sr[WM];
        for (int a = 0; a < WM; a++) sr[a] = sink + WM * a * OC;
        output_tile(sr, m + t * WX * OC, bias, 1, OC);
        /* The tile's 2x2 windows, each as fn_maxpool2d_forward picks it: the maximum, and the offset inside
         * image n of the first output (row-major) that holds it. */
        for (int wa = 0; wa < WM / 2; wa++)
            for (int wb = 0; wb < WM / 2; wb++) {
                const int64_t ph = q.oh / 2 + wa, pw = q.ow / 2 + wb;
                if (ph >= PH || pw >= PW) continue;
                const float *s0 = sink + (WM * 2 * wa + 2 * wb) * OC, *s1 = s0 + OC, *s2 = s0 + WM * OC,
                            *s3 = s2 + OC;
                const int32_t off0 = (int32_t)((2 * ph * p->OW + 2 * pw) * OC), off1 = off0 + (int32_t)OC;
                const int32_t off2 = off0 + (int32_t)(p->OW * OC), off3 = off2 + (int32_t)OC;
                float *yo = y + ((q.n * PH + ph) * PW + pw) * OC;
                int32_t *ao = arg + ((q.n * PH + ph) * PW + pw) * OC;
                FN_IVDEP
                for (int64_t o = 0; o < OC; o++) {
                    float best = s0[o];
                    int32_t at = off0 + (int32_t)o;
                    at = s1[o] > best ? off1 + (int32_t)o : at, best = s1[o] > best ? s1[o] : best;
                    at = s2[o] > best ? off2 + (int32_t)o : at, best = s2[o] > best ? s2[o] : best;
                    at = s3[o] > best ? off3 + (int32_t)o : at, best = s3[o] > best ? s3[o] : best;
                    yo[o] = best, ao[o] = at;
                }
            }
    }
}

/* The ReLU'd outputs of tiles [t0, t0 + tb), 2x2 max-pooled (OH and OW even), from their products m[t][xi][OC];
 * sink: 16 * OC floats of scratch. */
FN_VECTOR_CLONES static void output_pooled_block(float *y, int32_t *arg, const float *m, const float *bias,
                                                 float *sink, const wino_pass *p, int64_t t0, int64_t tb) {
    if (p->OC == 32) output_pooled_block_c(y, arg, m, bias, sink, p, t0, tb, 32);
    else output_pooled_block_c(y, arg, m, bias, sink, p, t0, tb, p->OC);
}

/* Tile q's 4x4 output gradients from a pooled source (fn_conv2d_grad): zero but at each 2x2 window's argmax,
 * which gets the window's gradient where the pool's output is positive (the ReLU before the pool passes it). Each
 * of a window's four outputs compares the argmax with its own offset: a vector loop over channels, no scatter. */
FN_TILE_FN void pooled_grad_patch(float *restrict patch, const fn_conv2d_grad *g, const wino_pass *p, tile_pos q,
                                  int64_t OC) {
    const int64_t PH = p->OH / 2, PW = p->OW / 2;
    const int32_t oc = (int32_t)OC, row = (int32_t)(p->OW * OC);
    for (int wa = 0; wa < WM / 2; wa++)
        for (int wb = 0; wb < WM / 2; wb++) {
            const int64_t ph = q.oh / 2 + wa, pw = q.ow / 2 + wb;
            float *restrict p00 = patch + (WM * 2 * wa + 2 * wb) * OC, *restrict p01 = p00 + OC;
            float *restrict p10 = p00 + WM * OC, *restrict p11 = p10 + OC;
            if (ph >= PH || pw >= PW) { /* outputs no window pooled (an odd last row or column) */
                memset(p00, 0, sizeof(float) * 2 * OC), memset(p10, 0, sizeof(float) * 2 * OC);
                continue;
            }
            const int64_t at = ((q.n * PH + ph) * PW + pw) * OC;
            const float *restrict d = g->dy + at, *restrict y = g->pooled + at;
            const int32_t *restrict arg = g->argmax + at;
            const int32_t first = (int32_t)(2 * ph) * row + (int32_t)(2 * pw) * oc;
            FN_IVDEP
            for (int32_t o = 0; o < oc; o++) {
                const float v = y[o] > 0.0f ? d[o] : 0.0f;
                const int32_t k = arg[o] - first - o;
                p00[o] = k == 0 ? v : 0.0f, p01[o] = k == oc ? v : 0.0f;
                p10[o] = k == row ? v : 0.0f, p11[o] = k == row + oc ? v : 0.0f;
            }
        }
}

FN_TILE_FN void output_grad_block_c(float *e, float *db, float *patch, const fn_conv2d_grad *g, const wino_pass *p,
                                    int64_t t0, int64_t tb, int64_t OC, int64_t nr) {
    const int64_t panels = fn_ceil_div(OC, nr);
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        const float *rows[WM];
        for (int a = 0; a < WM; a++) rows[a] = patch + WM * a * OC;
        if (g->argmax) {
            pooled_grad_patch(patch, g, p, q, OC);
        } else if (tile_is_full(p, q)) {
            for (int a = 0; a < WM; a++) rows[a] = g->dy + pixel_offset(p, q, a, 0);
        } else { /* zeros for the outputs past the edge */
            for (int a = 0; a < WM; a++)
                for (int b = 0; b < WM; b++) {
                    float *dst = patch + (WM * a + b) * OC;
                    if (q.oh + a < p->OH && q.ow + b < p->OW)
                        memcpy(dst, g->dy + pixel_offset(p, q, a, b), sizeof(float) * OC);
                    else
                        memset(dst, 0, sizeof(float) * OC);
                }
        }
        for (int64_t q = 0; q < panels; q++) {
            const float *qrows[WM];
            for (int a = 0; a < WM; a++) qrows[a] = rows[a] + q * nr;
            output_grad_tile(e + (q * tb + t) * nr, tb * panels * nr, db + q * nr, qrows, fn_min64(nr, OC - q * nr), nr,
                             OC);
        }
    }
}

/* Transformed output gradients of tiles [t0, t0 + tb) into e[xi][q][t][nr] (E[xi]'s panels of nr channels, zero
 * past OC: packed as the micro-kernel's B of depth tb, so the filter products read it in place), their sum added to
 * db[OC]; patch: 16 * OC floats of scratch. */
FN_VECTOR_CLONES static void output_grad_block(float *e, float *db, float *patch, const fn_conv2d_grad *g,
                                               const wino_pass *p, int64_t t0, int64_t tb, int64_t nr) {
    if (p->OC == 32 && nr == 16) output_grad_block_c(e, db, patch, g, p, t0, tb, 32, 16);
    else if (p->OC == 32 && nr == 32) output_grad_block_c(e, db, patch, g, p, t0, tb, 32, 32);
    else output_grad_block_c(e, db, patch, g, p, t0, tb, p->OC, nr);
}

FN_TILE_FN void patch_grad_block_c(float *dx, const float *relu_x, float *patch, const float *dv, const wino_pass *p,
                                   int64_t t0, int64_t tb, int64_t C) {
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        patch_grad_tile(patch, dv + t * WX * C, C, C);
        const int64_t ih0 = q.oh - p->PT, iw0 = q.ow - p->PL;
        for (int a = 0; a < WA; a++) {
            const int64_t ih = ih0 + a;
            if (ih < 0 || ih >= p->H) continue; /* the padding's gradient goes nowhere */
            const int64_t b0 = iw0 < 0 ? -iw0 : 0, b1 = iw0 + WA > p->W ? p->W - iw0 : WA;
            const int64_t at = ((q.n * p->H + ih) * p->W + iw0) * C;
            float *restrict d = dx + at;
            const float *restrict src = patch + WA * a * C;
            if (relu_x) { /* each contribution masked: the masked sum, without a pass over dx after it */
                const float *restrict r = relu_x + at;
                FN_IVDEP
                for (int64_t k = b0 * C; k < b1 * C; k++) d[k] += r[k] > 0.0f ? src[k] : 0.0f;
            } else {
                FN_IVDEP
                for (int64_t k = b0 * C; k < b1 * C; k++) d[k] += src[k];
            }
        }
    }
}

/* dx += the input-patch gradients of tiles [t0, t0 + tb) from their dV, dv[t][xi][C], zero where relu_x (may be
 * NULL) is not positive; patch: 36 * C floats. */
FN_VECTOR_CLONES static void patch_grad_block(float *dx, const float *relu_x, float *patch, const float *dv,
                                              const wino_pass *p, int64_t t0, int64_t tb) {
    if (p->C == 32) patch_grad_block_c(dx, relu_x, patch, dv, p, t0, tb, 32);
    else patch_grad_block_c(dx, relu_x, patch, dv, p, t0, tb, p->C);
}

/* ---- the products ---- */

/* c[0:rows, 0:N] = (or += with accumulate) op(a) . bp, bp packed for depth K. Whole micro-tiles and one K
 * block go straight to the micro-kernel (the 36 products of a block are small: fn_gemm_tile's set-up would
 * show); other shapes take fn_gemm_tile, which computes every element the same way. over_read: the mr - rows % mr
 * rows of op(a) past its last may be read (they lie in the caller's buffer), so a last partial micro-tile runs on
 * them in place into tmp (mr x nr floats), its extra rows dropped; it was packed first (the filter products' 32
 * rows are 5 micro-tiles of 6 and 2 rows: 5 % of the CNN's backward went to packing and set-up). */
static void block_product(const fn_ukernel *uk, int64_t rows, int64_t N, int64_t K, const float *a, int64_t lda,
                          int trans_a, const float *bp, int accumulate, float *c, int64_t ldc, int over_read,
                          float *tmp) {
    const int mr = uk->mr, nr = uk->nr;
    if ((rows % mr && !over_read) || N % nr || K > FN_KC_MAX || uk->bf16) { /* fn_gemm_tile rounds A's bfloat16 panels */
        fn_gemm_tile(uk, 0, rows, 0, fn_ceil_div(N, nr), N, K, 1.0f, a, lda, trans_a, bp, accumulate ? 1.0f : 0.0f,
                     c, ldc);
        return;
    }
    const int64_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1, full = rows - rows % mr;
    for (int64_t q = 0; q < N / nr; q++) {
        for (int64_t i = 0; i < full; i += mr)
            uk->kernel(K, a + i * rs, rs, cs, bp + q * K * nr, c + i * ldc + q * nr, ldc, accumulate);
        if (full == rows) continue;
        uk->kernel(K, a + full * rs, rs, cs, bp + q * K * nr, tmp, nr, 0);
        for (int64_t r = 0; r < rows - full; r++) {
            float *restrict cr = c + (full + r) * ldc + q * nr;
            for (int j = 0; j < nr; j++) cr[j] = accumulate ? cr[j] + tmp[r * nr + j] : tmp[r * nr + j];
        }
    }
}

/* ---- workspace ---- */

static int64_t slot(int64_t n) { return fn_round_up(n + FN_WS_PAD, 16); }

static int64_t packed_filter_size(int64_t CI, int64_t CO) { return slot(fn_gemm_packed_b_size(CI, CO)); }

/* Per-thread scratch of a forward-shaped pass: transformed inputs and products of one block, a padded patch,
 * zeros (the bias when there is none), a sink for the outputs past the edge (or to be pooled). */
static int64_t pass_thread_size(const wino_pass *p) {
    return slot(WX * FN_WINO_TILES * p->C) + slot(WX * FN_WINO_TILES * p->OC) + slot(WX * p->C) + slot(p->OC) +
           slot(WM * WM * p->OC);
}

static int64_t pass_size(const wino_pass *p, int n_threads) {
    return slot(WX * p->C * p->OC) + WX * packed_filter_size(p->C, p->OC) + n_threads * pass_thread_size(p);
}

/* Chunks of images whose gradients one thread computes: dx of its images, and a partial filter gradient (summed
 * with the others in order). A function of N alone. Each chunk's dU is transformed back to a 3x3 gradient before
 * it is stored, so a partial is 9 * C * OC + OC. */
static int64_t grad_partial_size(const fn_conv2d_shape *s) { return slot(9 * s->C * s->OC + s->OC); }
static int64_t grad_chunks(const fn_conv2d_shape *s) { return fn_filter_chunks(s->N, grad_partial_size(s)); }
/* Threads that take part in the chunks, each with its own scratch (36 * C * OC floats of dU among it). */
static int grad_threads(const fn_conv2d_shape *s, int n_threads) { return (int)fn_min64(n_threads, grad_chunks(s)); }

int fn_conv2d_winograd_fits(const fn_conv2d_shape *s) {
    return s->KH == 3 && s->KW == 3 && s->SH == 1 && s->SW == 1 && s->PT <= 2 && s->PL <= 2;
}

/* Per thread: a block's V (then dV), E (its channels padded to a whole panel) and E packed (bfloat16 operands), a
 * patch, the 4x4 output gradients of a tile, dU. */
static int64_t grad_thread_size(const fn_conv2d_shape *s) {
    return slot(WX * FN_WINO_GRAD_TILES * s->C) + slot(WX * FN_WINO_GRAD_TILES * fn_round_up(s->OC, FN_NR_MAX)) +
           slot(fn_gemm_packed_b_size(FN_WINO_GRAD_TILES, s->OC)) + slot(WX * s->C) + slot(WM * WM * s->OC) +
           slot(WX * s->C * s->OC);
}

/* U[xi]^T packed for dV's products: one packing per panel of E's channels (a K block of the product each), the
 * panels at least 16 channels wide. */
static int64_t packed_ut_size(const fn_conv2d_shape *s) {
    return packed_filter_size(s->OC, s->C) + fn_ceil_div(s->OC, 16) * 64;
}

/* Shared by the backward's threads: the partials and U^T packed (for dV); U itself, needed only until it is packed,
 * lies in the threads' scratch, which is used only after that (a thread's dU alone is as large). */
static int64_t grad_size(const fn_conv2d_shape *s, int n_threads) {
    return grad_chunks(s) * grad_partial_size(s) + WX * packed_ut_size(s) +
           grad_threads(s, n_threads) * grad_thread_size(s);
}

int64_t fn_conv2d_winograd_workspace(const fn_conv2d_shape *s, int n_threads) {
    const wino_pass f = forward_pass(s);
    return fn_max64(pass_size(&f, n_threads), grad_size(s, n_threads)) + 2 * FN_WS_PAD;
}

/* ---- the forward ---- */

/* y = the convolution (with bias and act), or, with argmax, its ReLU'd 2x2 max-pool. */
static void run_pass(float *y, int32_t *argmax, const float *x, const float *w, const float *bias, int act,
                     const wino_pass *p, const fn_ukernel *uk, float *ws, int n_threads) {
    const int64_t C = p->C, OC = p->OC, npanels = fn_ceil_div(OC, uk->nr), psize = packed_filter_size(C, OC);
    const int64_t ntiles = p->N * tiles_per_image(p), nblocks = fn_ceil_div(ntiles, FN_WINO_TILES);
    float *u = fn_align64(ws), *up = u + slot(WX * C * OC), *slots = up + WX * psize;

    #pragma omp parallel num_threads(n_threads)
    {
        float *v = slots + fn_thread_id() * pass_thread_size(p);
        float *m = v + slot(WX * FN_WINO_TILES * C), *patch = m + slot(WX * FN_WINO_TILES * OC);
        float *zeros = patch + slot(WX * C), *sink = zeros + slot(OC);
        memset(zeros, 0, sizeof(float) * OC);
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++) filter_transform(u, w, c, C, OC);
        #pragma omp for schedule(static)
        for (int64_t xi = 0; xi < WX; xi++) fn_gemm_pack_b(uk, up + xi * psize, u + xi * C * OC, OC, 0, C, OC, 0, npanels);
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t t0 = blk * FN_WINO_TILES, tb = fn_min64(FN_WINO_TILES, ntiles - t0);
            const unsigned csr = fn_ftz_enter();
            input_block(v, patch, x, p, t0, tb);
            /* M[xi] = V[xi] U[xi]: rows of V[xi] and M[xi] are 36 * C and 36 * OC apart */
            for (int64_t xi = 0; xi < WX; xi++)
                block_product(uk, tb, OC, C, v + xi * C, WX * C, 0, up + xi * psize, 0, m + xi * OC, WX * OC, 0, NULL);
            if (argmax) output_pooled_block(y, argmax, m, bias ? bias : zeros, sink, p, t0, tb);
            else output_block(y, m, bias ? bias : zeros, act == FN_ACT_RELU, sink, p, t0, tb);
            fn_ftz_leave(csr);
        }
    }
}

void fn_conv2d_winograd_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                                int act, const fn_ukernel *uk, float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    run_pass(y, NULL, x, w, b, act, &p, uk, ws, n_threads);
}

void fn_conv2d_winograd_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                                        const fn_conv2d_shape *s, const fn_ukernel *uk, float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    run_pass(y, argmax, x, w, b, FN_ACT_RELU, &p, uk, ws, n_threads);
}

/* ---- the backward ---- */

void fn_conv2d_winograd_backward(float *dx, float *dw, float *db, const fn_conv2d_grad *g, const float *x,
                                 const float *w, const float *relu_x, const fn_conv2d_shape *s, const fn_ukernel *uk,
                                 float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    const int64_t C = s->C, OC = s->OC, COC = C * OC;
    /* E's panels: nr channels, so E is the filter products' packed B as it is written; bfloat16 operands take it
     * whole (one panel, row-major) and pack it. Each panel is one K block of dV's products, U^T packed per panel. */
    const int64_t ew = uk->bf16 ? OC : uk->nr, epanels = fn_ceil_div(OC, ew), epad = epanels * ew;
    const int64_t tpi = tiles_per_image(&p), nch = grad_chunks(s), psize = grad_partial_size(s);
    const int64_t usize = packed_ut_size(s), upanel = slot(fn_gemm_packed_b_size(ew, C)), image = s->H * s->W * C;
    float *partials = fn_align64(ws), *ut = partials + nch * psize, *slots = ut + WX * usize, *u = slots;

    #pragma omp parallel num_threads(grad_threads(s, n_threads))
    {
        float *v = slots + fn_thread_id() * grad_thread_size(s);
        float *e = v + slot(WX * FN_WINO_GRAD_TILES * C);
        float *ep = e + slot(WX * FN_WINO_GRAD_TILES * fn_round_up(OC, FN_NR_MAX));
        float *patch = ep + slot(fn_gemm_packed_b_size(FN_WINO_GRAD_TILES, OC)), *gpatch = patch + slot(WX * C);
        float *du = gpatch + slot(WM * WM * OC);
        float tmp[FN_MR_MAX * FN_NR_MAX] __attribute__((aligned(64)));
        if (dx) { /* U[xi]^T (OC x C) packed as the B of dV's products */
            #pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) filter_transform(u, w, c, C, OC);
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < WX * epanels; i++) { /* panel q of E: rows q * ew .. of U^T (columns of U) */
                const int64_t xi = i / epanels, q = i % epanels;
                fn_gemm_pack_b(uk, ut + xi * usize + q * upanel, u + xi * COC + q * ew, OC, 1,
                               fn_min64(ew, OC - q * ew), C, 0, fn_ceil_div(C, uk->nr));
            }
        }
        #pragma omp for schedule(static)
        for (int64_t ch = 0; ch < nch; ch++) {
            float *pw = partials + ch * psize, *pb = pw + 9 * COC;
            const int64_t n0 = ch * s->N / nch, n1 = (ch + 1) * s->N / nch, t1 = n1 * tpi;
            const unsigned csr = fn_ftz_enter();
            memset(pb, 0, sizeof(float) * OC);
            if (dx) memset(dx + n0 * image, 0, sizeof(float) * (n1 - n0) * image); /* the chunk's images: all ours */
            for (int64_t t0 = n0 * tpi; t0 < t1; t0 += FN_WINO_GRAD_TILES) {
                const int64_t tb = fn_min64(FN_WINO_GRAD_TILES, t1 - t0);
                if (dw) input_block(v, patch, x, &p, t0, tb);
                output_grad_block(e, pb, gpatch, g, &p, t0, tb, ew);
                for (int64_t xi = 0; xi < WX; xi++) {
                    const float *ex = e + xi * tb * epad;
                    if (dw) { /* dU[xi] += V[xi]^T E[xi]: V[xi]^T read in place (column t is 36 * C floats on) */
                        const float *bq = ex;
                        if (uk->bf16) {
                            fn_gemm_pack_b(uk, ep, ex, OC, 0, tb, OC, 0, fn_ceil_div(OC, uk->nr));
                            bq = ep;
                        }
                        /* rows past C of V[xi]^T: channels of V[xi + 1], or, after the last position of the block's
                         * last tile, the buffer's padding (mr - 1 < FN_WS_PAD floats) */
                        block_product(uk, C, OC, tb, v + xi * C, WX * C, 1, bq, t0 > n0 * tpi, du + xi * COC, OC, 1,
                                      tmp);
                    }
                    for (int64_t q = 0; dx && q < epanels; q++) /* dV[xi] = E[xi] U[xi]^T, panel by panel, over V[xi]
                                                                 * (read above for the last time) */
                        block_product(uk, tb, C, fn_min64(ew, OC - q * ew), ex + q * tb * ew, ew, 0,
                                      ut + xi * usize + q * upanel, q > 0, v + xi * C, WX * C, 0, NULL);
                }
                if (dx) patch_grad_block(dx, relu_x, patch, v, &p, t0, tb);
            }
            if (dw) filter_grad_transform(pw, du, COC); /* the chunk's gradient, 3x3 again */
            fn_ftz_leave(csr);
        }
    }
    if (dw) fn_sum_partials(dw, 9 * COC, db, OC, partials, nch, psize, n_threads);
}
