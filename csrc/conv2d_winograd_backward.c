/* Winograd F(4x4, 3x3) convolution, the backward: the forward's adjoint on the forward's tiles, both gradients
 * from one transform of each tile's output gradient (conv2d_winograd.h has the maths). Threads take fixed chunks of
 * images: their dx, and a partial filter gradient summed with the others in order. */
#include "fastnet.h"
#include "conv2d_tiles.h"
#include "conv2d_winograd.h"

/* o = B d, the adjoint of bt6: o[a] = sum over i of B^T[i][a] d[i] */
FN_TILE_FN void b6(float *o, const float *d) {
    o[0] = 4.0f * d[0];
    o[1] = 4.0f * (d[2] - d[1] + d[5]) + 2.0f * (d[4] - d[3]);
    o[2] = -5.0f * d[0] - 4.0f * (d[1] + d[2]) - (d[3] + d[4]);
    o[3] = (d[1] - d[2]) + 2.0f * (d[3] - d[4]) - 5.0f * d[5];
    o[4] = d[0] + d[1] + d[2] + d[3] + d[4];
    o[5] = d[5];
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

/* Tile q's pooled gradients, pooled outputs and argmaxes into the cache FN_POOL_AHEAD tiles before
 * pooled_grad_patch reads them: read tile by tile, two pooled rows a tile, they came from L3 or memory and the loads
 * waited (half of the output-gradient transform's samples under perf). conv2's pooled backward, batch 128, AVX2:
 * 0.93x the time at 1 and 2 threads (1 tile ahead 0.98x, 2 0.94-0.98x, 8 0.92-0.95x). */
#define FN_POOL_AHEAD 4
FN_TILE_FN void prefetch_pooled(const fn_conv2d_grad *g, const wino_pass *p, tile_pos q, int64_t OC) {
    const int64_t PH = p->OH / 2, PW = p->OW / 2, pw = q.ow / 2, n = fn_min64(2, PW - pw) * OC;
    for (int wa = 0; wa < WM / 2 && q.oh / 2 + wa < PH && n > 0; wa++) {
        const int64_t at = ((q.n * PH + q.oh / 2 + wa) * PW + pw) * OC;
        prefetch_run(g->dy + at, n), prefetch_run(g->pooled + at, n), prefetch_run(g->argmax + at, n);
    }
}

/* Tile q's output gradients (an unpooled source), into the cache as prefetch_pooled's: conv2's backward without
 * the pool, batch 128, AVX2: 0.93x the time at 1 thread, 0.92x at 2. */
FN_TILE_FN void prefetch_outputs(const float *dy, const wino_pass *p, tile_pos q, int64_t OC) {
    const int64_t n = (fn_min64(q.ow + WM, p->OW) - q.ow) * OC;
    for (int a = 0; a < WM && q.oh + a < p->OH; a++) prefetch_run(dy + pixel_offset(p, q, a, 0), n);
}

FN_TILE_FN void output_grad_block_c(float *e, float *db, float *patch, const fn_conv2d_grad *g, const wino_pass *p,
                                    int64_t t0, int64_t tb, int64_t OC, int64_t nr) {
    const int64_t panels = fn_ceil_div(OC, nr), tiles = p->N * tiles_per_image(p);
    for (int64_t t = 0; t < tb; t++) {
        const tile_pos q = tile_at(p, t0 + t);
        if (t0 + t + FN_POOL_AHEAD < tiles) {
            const tile_pos next = tile_at(p, t0 + t + FN_POOL_AHEAD);
            if (g->argmax) prefetch_pooled(g, p, next, OC);
            else prefetch_outputs(g->dy, p, next, OC);
        }
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

/* Chunks of images whose gradients one thread computes: dx of its images, and a partial filter gradient (summed
 * with the others in order). A function of N alone. Each chunk's dU is transformed back to a 3x3 gradient before
 * it is stored, so a partial is 9 * C * OC + OC. */
static int64_t grad_partial_size(const fn_conv2d_shape *s) { return slot(9 * s->C * s->OC + s->OC); }
static int64_t grad_chunks(const fn_conv2d_shape *s) { return fn_filter_chunks(s->N, grad_partial_size(s)); }
/* Threads that take part in the chunks, each with its own scratch (36 * C * OC floats of dU among it). */
static int grad_threads(const fn_conv2d_shape *s, int n_threads) { return (int)fn_min64(n_threads, grad_chunks(s)); }

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
int64_t fn_wino_grad_size(const fn_conv2d_shape *s, int n_threads) {
    return grad_chunks(s) * grad_partial_size(s) + WX * packed_ut_size(s) +
           grad_threads(s, n_threads) * grad_thread_size(s);
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
            for (int64_t c = 0; c < C; c++) fn_wino_filter_transform(u, w, c, C, OC);
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
                if (dw) fn_wino_input_block(v, patch, x, &p, t0, tb);
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
                        fn_wino_block_product(uk, C, OC, tb, v + xi * C, WX * C, 1, bq, t0 > n0 * tpi,
                                              du + xi * COC, OC, 1, tmp);
                    }
                    for (int64_t q = 0; dx && q < epanels; q++) /* dV[xi] = E[xi] U[xi]^T, panel by panel, over V[xi]
                                                                 * (read above for the last time) */
                        fn_wino_block_product(uk, tb, C, fn_min64(ew, OC - q * ew), ex + q * tb * ew, ew, 0,
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

