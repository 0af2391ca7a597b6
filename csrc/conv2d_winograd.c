/* Winograd F(4x4, 3x3) convolution, the forward (and the pieces the backward shares): each block of 24 tiles
 * transformed, multiplied by U[xi] for each of the 36 positions and transformed back, with the bias and ReLU, or
 * the ReLU and a 2x2 max-pool, on the way out. The transforms and the tiles: conv2d_winograd.h. */
#include "fastnet.h"
#include "conv2d_winograd.h"

/* o = A^T m */
FN_TILE_FN void at6(float *o, const float *m) {
    const float s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + 2.0f * d34;
    o[2] = s12 + 4.0f * s34;
    o[3] = d12 + 8.0f * d34 + m[5];
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
                y[i][j * OC + o] = fn_post_value(out[j], bias[o], relu); /* the one epilogue (internal.h) */
            }
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

/* The transformed filters of input channel c of the kernel w [3, 3, C, OC]: (G g G^T)[xi] of output channel co at
 * u[xi * xs + c * cs + (co / nr) * ps + co % nr], zero for co from OC up to a whole panel of nr. Laid out as
 * u[xi][c][co] (xs = C * OC, cs = OC, nr = OC, ps = 0), or straight into the GEMM's packed panels of U[xi]
 * (xs = the packed size, cs = nr, ps = C * nr: one K block of float32 panels, fn_gemm_pack_b's layout), which
 * spares the forward a pass that packed u: one image through the CNN's conv2 spent a third of its time
 * transforming and packing the filters. A vector loop over co within a panel. Run by all threads, one input
 * channel each at a time: done by one thread ahead of the parallel region, with the constants of G in a table,
 * it was a scalar loop that held the other threads waiting (2 % of a backward on one thread). */
FN_VECTOR_CLONES void fn_wino_filter_transform_to(float *restrict u, int64_t xs, int64_t cs, int64_t nr, int64_t ps,
                                                 const float *restrict w, int64_t c, int64_t C, int64_t OC) {
    for (int64_t q0 = 0; q0 < OC; q0 += nr) {
        float *restrict d = u + c * cs + q0 / nr * ps - q0; /* d[co]: output channel co of this panel */
        const int64_t q1 = q0 + nr < OC ? q0 + nr : OC;
        FN_IVDEP
        for (int64_t co = q0; co < q1; co++) {
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
                for (int j = 0; j < WA; j++) d[(WA * i + j) * xs + co] = out[j];
            }
        }
        for (int64_t xi = 0; xi < WX; xi++) /* a last panel's columns past OC */
            for (int64_t co = q1; co < q0 + nr && ps; co++) d[xi * xs + co] = 0.0f;
    }
}

void fn_wino_filter_transform(float *restrict u, const float *restrict w, int64_t c, int64_t C, int64_t OC) {
    fn_wino_filter_transform_to(u, C * OC, OC, OC, 0, w, c, C, OC);
}

/* ---- blocks of tiles: one call per block, so the ISA clone is picked once per block. Each helper is
 * instantiated for 32 channels, the CNN's, so its tile loops have constant trip counts and offsets. ---- */

/* Each tile's input patch is prefetched FN_PATCH_AHEAD tiles before its transform reads it: its rows came from L3
 * or memory (the CNN's conv2, 11 MB of input a batch), and the transform's first loads waited on them. conv2's
 * forward and backward (which transforms its input again for the filter gradient), batch 128, AVX2: 0.96x the time
 * at 1 thread, 0.97-0.98x at 2 (4 tiles ahead alike). */
#define FN_PATCH_AHEAD 2
FN_TILE_FN void input_block_c(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0, int64_t tb,
                              int64_t C) {
    const int64_t tiles = p->N * tiles_per_image(p);
    for (int64_t t = 0; t < tb; t++) {
        if (t0 + t + FN_PATCH_AHEAD < tiles) prefetch_patch(x, p, tile_at(p, t0 + t + FN_PATCH_AHEAD), C);
        const float *r[WA];
        patch_rows(r, patch, x, p, tile_at(p, t0 + t), C);
        input_tile(v + t * WX * C, r, C);
    }
}

/* Transformed inputs of tiles [t0, t0 + tb) into v[t][xi][C]; patch: 36 * C floats of scratch. */
FN_VECTOR_CLONES void fn_wino_input_block(float *v, float *patch, const float *x, const wino_pass *p, int64_t t0,
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

/* ---- the products ---- */

/* c[0:rows, 0:N] = (or += with accumulate) op(a) . bp, bp packed for depth K. Whole micro-tiles and one K
 * block go straight to the micro-kernel (the 36 products of a block are small: fn_gemm_tile's set-up would
 * show); other shapes take fn_gemm_tile, which computes every element the same way. The rows past the last whole
 * micro-tile take the edge kernel (the same FMAs, for those rows only): two 4-row edges where 2 rows are left over
 * past a whole micro-tile, each 8 chains of FMAs. The filter products' 32 rows ran as 5 micro-tiles of 6 and 6 rows
 * computed for the last 2 (into tmp, then added); as 4 micro-tiles and two 4-row edges, conv2's Winograd backward
 * took 0.980x the time (AVX2, one thread), 0.950x with the edge kernel's sums in registers (gemm_avx2.c). Without
 * an edge kernel, over_read: the mr - rows % mr rows of op(a) past its last may be read (they lie in the caller's
 * buffer), so a last partial micro-tile runs on them in place into tmp (mr x nr floats), its extra rows dropped. */
void fn_wino_block_product(const fn_ukernel *uk, int64_t rows, int64_t N, int64_t K, const float *a, int64_t lda,
                          int trans_a, const float *bp, int accumulate, float *c, int64_t ldc, int over_read,
                          float *tmp) {
    const int mr = uk->mr, nr = uk->nr;
    if ((rows % mr && !over_read && !uk->edge) || N % nr || K > FN_KC_MAX || uk->bf16) { /* fn_gemm_tile rounds
                                                                                            * A's bfloat16 panels */
        fn_gemm_tile(uk, 0, rows, 0, fn_ceil_div(N, nr), N, K, 1.0f, a, lda, trans_a, bp, accumulate ? 1.0f : 0.0f,
                     c, ldc);
        return;
    }
    const int64_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1, rest = rows % mr;
    const int64_t full = rows - rest - (uk->edge && rest == 2 && rows > mr ? mr : 0); /* rows the kernel takes */
    for (int64_t q = 0; q < N / nr; q++) {
        const float *bq = bp + q * K * nr;
        for (int64_t i = 0; i < full; i += mr)
            uk->kernel(K, a + i * rs, rs, cs, bq, c + i * ldc + q * nr, ldc, accumulate);
        if (full == rows) continue;
        if (uk->edge) {
            for (int64_t i = full; i < rows;) {
                const int ib = rows - i == mr + 2 ? 4 : (int)(rows - i);
                uk->edge(ib, K, a + i * rs, rs, cs, bq, c + i * ldc + q * nr, ldc, accumulate);
                i += ib;
            }
            continue;
        }
        uk->kernel(K, a + full * rs, rs, cs, bq, tmp, nr, 0);
        for (int64_t r = 0; r < rows - full; r++) {
            float *restrict cr = c + (full + r) * ldc + q * nr;
            for (int j = 0; j < nr; j++) cr[j] = accumulate ? cr[j] + tmp[r * nr + j] : tmp[r * nr + j];
        }
    }
}

/* ---- workspace ---- */

/* Per-thread scratch of a forward-shaped pass: transformed inputs and products of one block, a padded patch,
 * zeros (the bias when there is none), a sink for the outputs past the edge (or to be pooled). */
static int64_t pass_thread_size(const wino_pass *p) {
    return slot(WX * FN_WINO_TILES * p->C) + slot(WX * FN_WINO_TILES * p->OC) + slot(WX * p->C) + slot(p->OC) +
           slot(WM * WM * p->OC);
}

static int64_t pass_size(const wino_pass *p, int n_threads) {
    return slot(WX * p->C * p->OC) + WX * packed_filter_size(p->C, p->OC) + n_threads * pass_thread_size(p);
}

int fn_conv2d_winograd_fits(const fn_conv2d_shape *s) {
    return s->KH == 3 && s->KW == 3 && s->SH == 1 && s->SW == 1 && s->PT <= 2 && s->PL <= 2;
}

/* The memo: the weights (KH*KW*C*OC floats), then the packed transformed filters on a 64-byte boundary. */
int64_t fn_conv2d_winograd_memo_size(const fn_conv2d_shape *s) {
    return 9 * s->C * s->OC + WX * packed_filter_size(s->C, s->OC) + FN_WS_PAD;
}

int64_t fn_conv2d_winograd_workspace(const fn_conv2d_shape *s, int n_threads) {
    const wino_pass f = forward_pass(s);
    return fn_max64(pass_size(&f, n_threads), fn_wino_grad_size(s, n_threads)) + 2 * FN_WS_PAD;
}

/* ---- the forward ---- */

/* y = the convolution (with bias and act), or, with argmax, its ReLU'd 2x2 max-pool. */
static void run_pass(float *y, int32_t *argmax, const float *x, const float *w, const float *bias, int act,
                     const wino_pass *p, const fn_ukernel *uk, fn_weights_memo *memo, float *ws, int n_threads) {
    const int64_t C = p->C, OC = p->OC, npanels = fn_ceil_div(OC, uk->nr), psize = packed_filter_size(C, OC);
    /* Blocks of FN_WINO_TILES tiles, or fewer where that leaves a thread without one: one image (36 tiles of the
     * CNN's conv2) in blocks of 24 and 12 ran slower on two threads than on one. */
    const int64_t ntiles = p->N * tiles_per_image(p);
    const int64_t bt = fn_min64(FN_WINO_TILES, fn_ceil_div(ntiles, n_threads)), nblocks = fn_ceil_div(ntiles, bt);
    float *u = fn_align64(ws), *up = u + slot(WX * C * OC), *slots = up + WX * psize;
    /* The filters as the last inference call transformed them, while the weights are the same bits: one image
     * through the CNN spent 2.4 of conv2's 15 us (2 threads) transforming them, and its products then read
     * what the other core had written */
    int transform = 1;
    if (memo) {
        const size_t bytes = sizeof(float) * 9 * C * OC;
        up = fn_align64(memo->mem + 9 * C * OC);
        transform = !memo->made || memcmp(memo->mem, w, bytes) != 0;
        if (transform) memcpy(memo->mem, w, bytes), memo->made = 1;
    }

    #pragma omp parallel num_threads(n_threads)
    {
        float *v = slots + fn_thread_id() * pass_thread_size(p);
        float *m = v + slot(WX * FN_WINO_TILES * C), *patch = m + slot(WX * FN_WINO_TILES * OC);
        float *zeros = patch + slot(WX * C), *sink = zeros + slot(OC);
        memset(zeros, 0, sizeof(float) * OC);
        if (transform && !uk->bf16 && fn_gemm_kc(C) >= C) { /* float32 panels of one K block: transformed where
                                                               * they go */
            #pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++)
                fn_wino_filter_transform_to(up, psize, uk->nr, uk->nr, C * uk->nr, w, c, C, OC);
        } else if (transform) {
            #pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) fn_wino_filter_transform(u, w, c, C, OC);
            #pragma omp for schedule(static)
            for (int64_t xi = 0; xi < WX; xi++)
                fn_gemm_pack_b(uk, up + xi * psize, u + xi * C * OC, OC, 0, C, OC, 0, npanels);
        }
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t t0 = blk * bt, tb = fn_min64(bt, ntiles - t0);
            const unsigned csr = fn_ftz_enter();
            fn_wino_input_block(v, patch, x, p, t0, tb);
            /* M[xi] = V[xi] U[xi]: rows of V[xi] and M[xi] are 36 * C and 36 * OC apart */
            for (int64_t xi = 0; xi < WX; xi++)
                fn_wino_block_product(uk, tb, OC, C, v + xi * C, WX * C, 0, up + xi * psize, 0, m + xi * OC, WX * OC,
                                      0, NULL);
            if (argmax) output_pooled_block(y, argmax, m, bias ? bias : zeros, sink, p, t0, tb);
            else output_block(y, m, bias ? bias : zeros, act == FN_ACT_RELU, sink, p, t0, tb);
            fn_ftz_leave(csr);
        }
    }
}

void fn_conv2d_winograd_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                                int act, const fn_ukernel *uk, fn_weights_memo *memo, float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    run_pass(y, NULL, x, w, b, act, &p, uk, memo, ws, n_threads);
}

void fn_conv2d_winograd_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                                        const fn_conv2d_shape *s, const fn_ukernel *uk, fn_weights_memo *memo,
                                        float *ws, int n_threads) {
    const wino_pass p = forward_pass(s);
    run_pass(y, argmax, x, w, b, FN_ACT_RELU, &p, uk, memo, ws, n_threads);
}
