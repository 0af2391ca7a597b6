/* 2-D convolution: Winograd F(4x4, 3x3) for 3x3 stride-1 kernels with enough channels (conv2d_winograd.c),
 * elsewhere lowered to GEMM over small im2col tiles that stay in each thread's cache; on AMX, stride-1
 * convolutions of 32-channel images read the image without im2col (the tap path, conv2d_taps.c). */
#include <string.h>

#include "fastnet.h"
#include "internal.h"
#include "conv2d_tiles.h"

/* The one place the algorithm is decided. Below 16 channels the 36 GEMMs of a Winograd block are too thin to beat
 * im2col. 'auto' never picks Winograd for bfloat16 operands: its transforms amplify the operands' rounding about
 * tenfold (on the CNN's second layer, 2.4 % rms error against im2col's 0.23 %, the rounding itself), while
 * im2col's operands are x, w and dy themselves; FN_CONV_WINOGRAD still forces it. A kernel of few taps (the first
 * layer, C = 1) runs direct (conv2d_direct.c) beside the float32 FMA paths, which give the same bits. */
int fn_conv2d_resolve_algo(const fn_conv2d_shape *s, int algo, int isa, int precision) {
    if (algo == FN_CONV_IM2COL) return FN_CONV_IM2COL;
    const int auto_winograd = algo == FN_CONV_AUTO && precision == FN_FLOAT32 && s->C >= 16 && s->OC >= 16;
    if (fn_conv2d_winograd_fits(s) && (algo == FN_CONV_WINOGRAD || auto_winograd)) return FN_CONV_WINOGRAD;
    const int direct = (algo == FN_CONV_AUTO || algo == FN_CONV_DIRECT) && fn_conv2d_direct_fits(s) &&
                       fn_conv2d_direct_runs(fn_gemm_ukernel(isa, precision), s);
    return direct ? FN_CONV_DIRECT : FN_CONV_IM2COL;
}

/* How im2col hands A to the GEMM: the micro-kernel's slots (fn_gemm_slots) straight from im2col on a bfloat16
 * path, which saves converting each A panel again; pairs along (kh, kw, c) need C even, so no pair spans two taps.
 * FN_BF16_NONE: float32 columns (the float32 path, and pairs with C odd, which fn_gemm_tile then packs). */
static int im2col_slots(const fn_ukernel *uk, const fn_conv2d_shape *s) {
    return uk->bf16 == FN_BF16_ROUNDED || (uk->bf16 == FN_BF16_PAIRS && s->C % 2 == 0) ? uk->bf16 : FN_BF16_NONE;
}

/* Rows of im2col for the output positions [r0, r1) of one image xn [H, W, C]: row r holds the receptive
 * field of position r in (kh, kw, c) order, zero where it falls into padding, as slots of format fmt (a row is
 * kcols / 2 pairs with FN_BF16_PAIRS, kcols floats otherwise). */
static void im2col_rows(float *restrict cols, const float *restrict xn, const fn_conv2d_shape *s, int64_t r0,
                        int64_t r1, int fmt) {
    const int64_t step = fmt == FN_BF16_PAIRS ? 2 : 1, C = s->C;
    const int64_t span = s->KW * C; /* one kernel row's taps are adjacent in NHWC: KW*C floats */
    for (int64_t r = r0; r < r1; r++) {
        const int64_t oh = r / s->OW, ow = r % s->OW, iw0 = ow * s->SW - s->PL;
        const int inside_w = iw0 >= 0 && iw0 + s->KW <= s->W;
        float *dst = cols + (r - r0) * (kcols(s) / step);
        for (int64_t kh = 0; kh < s->KH; kh++, dst += span / step) {
            const int64_t ih = oh * s->SH - s->PT + kh;
            if (ih < 0 || ih >= s->H) {
                memset(dst, 0, sizeof(float) * (span / step));
            } else if (inside_w) {
                fn_gemm_slots(fmt, dst, xn + (ih * s->W + iw0) * C, span);
            } else {
                for (int64_t kw = 0; kw < s->KW; kw++) {
                    const int64_t iw = iw0 + kw;
                    if (iw >= 0 && iw < s->W) fn_gemm_slots(fmt, dst + kw * C / step, xn + (ih * s->W + iw) * C, C);
                    else memset(dst + kw * C / step, 0, sizeof(float) * (C / step));
                }
            }
        }
    }
}

/* The adjoint of im2col_rows: adds each row's values back onto the input positions they came from. */
static void col2im_rows_add(float *restrict dxn, const float *restrict cols, const fn_conv2d_shape *s,
                            int64_t r0, int64_t r1) {
    const int64_t C = s->C;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t oh = r / s->OW, ow = r % s->OW;
        const float *src = cols + (r - r0) * kcols(s);
        for (int64_t kh = 0; kh < s->KH; kh++) {
            const int64_t ih = oh * s->SH - s->PT + kh;
            for (int64_t kw = 0; kw < s->KW; kw++, src += C) {
                const int64_t iw = ow * s->SW - s->PL + kw;
                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                float *dst = dxn + (ih * s->W + iw) * C;
                for (int64_t c = 0; c < C; c++) dst[c] += src[c];
            }
        }
    }
}

/* The 2x2 max-pool (stride 2) of relu(t + bias) for the output rows [oh0, oh0 + 2 * pairs) of image n, whose
 * products t hold OW * OC floats per output row: y and argmax [N, OH/2, OW/2, OC] exactly as fn_post_rows and then
 * fn_maxpool2d_forward give them (the window's first maximum in row-major order; argmax its offset in the image). */
FN_VECTOR_CLONES static void bias_relu_pool(float *restrict y, int32_t *restrict arg, const float *restrict t,
                                            const float *restrict bias, const fn_conv2d_shape *s, int64_t n,
                                            int64_t oh0, int64_t pairs) {
    const int64_t OW = s->OW, OC = s->OC, PH = s->OH / 2, PW = OW / 2;
    for (int64_t j = 0; j < pairs; j++)
        for (int64_t pw = 0; pw < PW; pw++) {
            const float *s0 = t + (2 * j * OW + 2 * pw) * OC, *s1 = s0 + OC, *s2 = s0 + OW * OC, *s3 = s2 + OC;
            const int32_t off0 = (int32_t)(((oh0 + 2 * j) * OW + 2 * pw) * OC), off1 = off0 + (int32_t)OC;
            const int32_t off2 = off0 + (int32_t)(OW * OC), off3 = off2 + (int32_t)OC;
            float *yo = y + ((n * PH + oh0 / 2 + j) * PW + pw) * OC;
            int32_t *ao = arg + ((n * PH + oh0 / 2 + j) * PW + pw) * OC;
            for (int64_t o = 0; o < OC; o++) { /* strict >: the first maximum wins ties */
                const float bo = bias ? bias[o] : 0.0f; /* relu(x + 0.0f) is relu(x), bit for bit */
                const float v0 = fn_post_value(s0[o], bo, 1), v1 = fn_post_value(s1[o], bo, 1);
                const float v2 = fn_post_value(s2[o], bo, 1), v3 = fn_post_value(s3[o], bo, 1);
                float best = v0;
                int32_t at = off0 + (int32_t)o;
                at = v1 > best ? off1 + (int32_t)o : at, best = v1 > best ? v1 : best;
                at = v2 > best ? off2 + (int32_t)o : at, best = v2 > best ? v2 : best;
                at = v3 > best ? off3 + (int32_t)o : at, best = v3 > best ? v3 : best;
                yo[o] = best, ao[o] = at;
            }
        }
}

int64_t fn_conv2d_workspace(const fn_conv2d_shape *s, int algo, int isa, int precision, int n_threads) {
    if (fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD) return fn_conv2d_winograd_workspace(s,
        n_threads);
    const int64_t K = kcols(s);
    const int64_t fwd = fn_max64(fn_gemm_packed_b_size(K, s->OC), fn_gemm_packed_b_size(s->OC, K)) +
                        n_threads * tile_slot(s);
    const int64_t filt = filter_chunks(s) * partial_size(s) + filter_threads(s, n_threads) * filter_slot(s);
    return fn_max64(fwd, filt) + 2 * FN_WS_PAD;
}

/* The im2col forward: y = act(conv + bias), or with argmax its ReLU'd 2x2 max-pool (act is then FN_ACT_RELU). */
static void im2col_forward(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                           const fn_conv2d_shape *s, int act, const fn_ukernel *uk, float *ws, int n_threads) {
    const int64_t K = kcols(s), P = s->OH * s->OW, npanels = fn_ceil_div(s->OC, uk->nr);
    const int taps = fn_conv2d_taps_fit(uk, s);
    const int64_t rows = forward_tile_rows(s, argmax != NULL, taps), tiles_per_image = fn_ceil_div(P, rows);
    const int fmt = im2col_slots(uk, s);
    const int direct_b = fn_gemm_b_is_packed(uk, 0, s->OC, s->OC);
    float *bp = direct_b ? (float *)w : fn_align64(ws);
    float *slots = fn_align64(fn_align64(ws) + fn_gemm_packed_b_size(K, s->OC));
    const fn_post_ops post = {b, act, 0.0f, 0, 0, s->OC};

    #pragma omp parallel num_threads(n_threads)
    {
        float *cols = slots + fn_thread_id() * tile_slot(s);
        float *prod = cols + fn_round_up(FN_CONV_ROWS * K + FN_WS_PAD, 16); /* the tile's product, in cache */
        int64_t converted = -1; /* the image in cols on the tap path */
        if (!direct_b) {
            #pragma omp for schedule(static)
            for (int64_t q = 0; q < npanels; q++) fn_gemm_pack_b(uk, bp, w, s->OC, 0, K, s->OC, q, q + 1);
        }
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < s->N * tiles_per_image; t++) {
            const int64_t n = t / tiles_per_image, r0 = (t % tiles_per_image) * rows;
            const int64_t r1 = fn_min64(P, r0 + rows);
            const float *xn = x + n * s->H * s->W * s->C;
            if (taps) { /* the image is converted once per thread, whole */
                if (converted != n) fn_conv2d_taps_image(cols, xn, s), converted = n;
                fn_conv2d_taps_rows(uk, prod, cols, bp, s, r0 / s->OW, r1 / s->OW);
            } else {
                im2col_rows(cols, xn, s, r0, r1, fmt);
                if (fmt == FN_BF16_NONE) /* float32 columns: fn_gemm_tile packs A itself where it must */
                    fn_gemm_tile(uk, 0, r1 - r0, 0, npanels, s->OC, K, 1.0f, cols, K, 0, bp, 0.0f, prod, s->OC);
                else
                    fn_gemm_tile_slots(uk, 0, r1 - r0, 0, npanels, s->OC, K, cols, fmt == FN_BF16_PAIRS ? K / 2 : K, 0,
                                       bp, 0.0f, prod, s->OC);
            }
            if (argmax)
                bias_relu_pool(y, argmax, prod, b, s, n, r0 / s->OW, (r1 - r0) / (2 * s->OW));
            else
                fn_post_rows(y + (n * P + r0) * s->OC, s->OC, prod, s->OC, 0, r1 - r0, 0, s->OC, &post);
        }
    }
}

int64_t fn_conv2d_memo_size(const fn_conv2d_shape *s, int algo, int isa, int precision) {
    return fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD ? fn_conv2d_winograd_memo_size(s) : 0;
}

int fn_conv2d_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                      int act, int algo, int isa, int precision, fn_weights_memo *memo, float *ws, int n_threads) {
    if (act != FN_ACT_LINEAR && act != FN_ACT_RELU) return FN_EINVAL;
    const fn_ukernel *uk = fn_gemm_ukernel(isa, precision);
    const int resolved = fn_conv2d_resolve_algo(s, algo, isa, precision);
    if (resolved == FN_CONV_WINOGRAD)
        fn_conv2d_winograd_forward(y, x, w, b, s, act, uk, memo, ws, n_threads);
    else if (resolved == FN_CONV_DIRECT)
        fn_conv2d_direct_forward(y, x, w, b, s, act, n_threads);
    else
        im2col_forward(y, NULL, x, w, b, s, act, uk, ws, n_threads);
    return FN_OK;
}

int fn_conv2d_forward_maxpool_fits(const fn_conv2d_shape *s, int algo, int isa, int precision) {
    const int winograd = fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD;
    return s->OH % 2 == 0 && s->OW % 2 == 0 && s->OH * s->OW * s->OC < INT32_MAX &&
           (winograd || 2 * s->OW <= FN_CONV_ROWS);
}

int fn_conv2d_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                              const fn_conv2d_shape *s, int algo, int isa, int precision, fn_weights_memo *memo,
                              float *ws, int n_threads) {
    if (!fn_conv2d_forward_maxpool_fits(s, algo, isa, precision)) return FN_EUNSUPPORTED;
    const fn_ukernel *uk = fn_gemm_ukernel(isa, precision);
    if (fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD)
        fn_conv2d_winograd_forward_maxpool(y, argmax, x, w, b, s, uk, memo, ws, n_threads);
    else
        im2col_forward(y, argmax, x, w, b, s, FN_ACT_RELU, uk, ws, n_threads);
    return FN_OK;
}

FN_VECTOR_CLONES static void add_rows(float *restrict acc, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] += x[i];
}

FN_VECTOR_CLONES static void relu_mask(float *restrict dx, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dx[i] : 0.0f;
}

/* Backward data without im2col: for each output row and kernel tap (kh, kw), dy's row (OW x OC) times the
 * tap's W^T (OC x C) is added straight onto the input row it came from (stride SW*C). Needs C a multiple of
 * NR and OC within one K block; other shapes take the im2col path below. Every element of dx is summed in the
 * fixed order (oh, kh, kw). */
static int direct_backward_data(const fn_ukernel *uk, const fn_conv2d_shape *s) {
    return s->C % uk->nr == 0 && s->OC <= FN_KC_MAX;
}

/* On a bfloat16 path each row of dy is converted to the micro-kernel's slots once (into row_slots, OW * OC
 * floats), not once per tap, and every tap's product reads it in place (fn_gemm_tile_slots: the same arithmetic
 * per element). */
static void backward_data_image_direct(const fn_ukernel *uk, float *restrict dxn, const float *restrict dyn,
                                       const float *restrict bp, const fn_conv2d_shape *s, float *restrict row_slots) {
    const int mr = uk->mr, nr = uk->nr, fmt = uk->bf16;
    const int64_t C = s->C, OC = s->OC, npanels = C / nr, ldc = s->SW * C;
    const int64_t sl = fmt == FN_BF16_PAIRS ? fn_ceil_div(OC, 2) : OC; /* slots per row of dy */
    float tmp[FN_MR_MAX * FN_NR_MAX] __attribute__((aligned(64)));
    float panel[FN_PANEL_FLOATS] __attribute__((aligned(64)));
    for (int64_t oh = 0; oh < s->OH; oh++) {
        const float *dyr = dyn + oh * s->OW * OC;
        if (fmt != FN_BF16_NONE)
            for (int64_t ow = 0; ow < s->OW; ow++) fn_gemm_slots(fmt, row_slots + ow * sl, dyr + ow * OC, OC);
        for (int64_t kh = 0; kh < s->KH; kh++) {
            const int64_t ih = oh * s->SH - s->PT + kh;
            if (ih < 0 || ih >= s->H) continue;
            for (int64_t kw = 0; kw < s->KW; kw++) {
                /* Output columns whose input column ow*SW - PL + kw lies inside the image. */
                const int64_t lo = s->PL - kw, ow0 = lo > 0 ? fn_ceil_div(lo, s->SW) : 0;
                const int64_t ow1 = fn_min64(s->OW, fn_ceil_div(s->W + s->PL - kw, s->SW));
                const float *btap = bp + (kh * s->KW + kw) * OC * C;
                if (fmt != FN_BF16_NONE) {
                    if (ow1 > ow0)
                        fn_gemm_tile_slots(uk, 0, ow1 - ow0, 0, npanels, C, OC, row_slots + ow0 * sl, sl, 0, btap, 1.0f,
                                           dxn + (ih * s->W + ow0 * s->SW - s->PL + kw) * C, ldc);
                    continue;
                }
                for (int64_t ow = ow0; ow < ow1; ow += mr) {
                    const int64_t rows = fn_min64(mr, ow1 - ow);
                    const float *a = dyr + ow * OC;
                    float *c = dxn + (ih * s->W + ow * s->SW - s->PL + kw) * C;
                    const int in_place = rows == mr;
                    int64_t prs = 0, pcs = 0;
                    if (!in_place) /* an edge of rows: a zero-padded copy */
                        fn_gemm_pack_a(uk, panel, a, OC, 1, rows, OC, 1.0f, &prs, &pcs);
                    for (int64_t q = 0; q < npanels; q++) {
                        const float *bq = btap + q * OC * nr;
                        if (in_place) {
                            uk->kernel(OC, a, OC, 1, bq, c + q * nr, ldc, 1);
                            continue;
                        }
                        uk->kernel(OC, panel, prs, pcs, bq, tmp, nr, 0);
                        for (int64_t i = 0; i < rows; i++)
                            for (int j = 0; j < nr; j++) c[i * ldc + q * nr + j] += tmp[i * nr + j];
                    }
                }
            }
        }
    }
}

int fn_conv2d_backward_data(float *dx, const float *dy, const float *w, const float *relu_x, const fn_conv2d_shape *s,
                            int algo, int isa, int precision, float *ws, int n_threads) {
    const fn_ukernel *uk = fn_gemm_ukernel(isa, precision);
    if (fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD) {
        const fn_conv2d_grad g = {dy, NULL, NULL};
        fn_conv2d_winograd_backward(dx, NULL, NULL, &g, NULL, w, relu_x, s, uk, ws, n_threads);
        return FN_OK;
    }
    if (fn_conv2d_taps_data_fit(uk, s)) { /* AMX, 32 channels each way */
        fn_conv2d_taps_backward_data(dx, dy, w, relu_x, s, uk, ws, n_threads);
        return FN_OK;
    }
    const int64_t K = kcols(s), P = s->OH * s->OW, npanels = fn_ceil_div(K, uk->nr);
    const int64_t image = s->H * s->W * s->C, taps = s->KH * s->KW;
    const int direct = direct_backward_data(uk, s);
    float *bp = fn_align64(ws);
    float *slots = fn_align64(bp + fn_gemm_packed_b_size(s->OC, K));

    #pragma omp parallel num_threads(n_threads)
    {
        float *dcols = slots + fn_thread_id() * tile_slot(s);
        if (direct) { /* one packed W^T (OC x C) per tap */
            const int64_t tap_panels = s->C / uk->nr;
            #pragma omp for schedule(static)
            for (int64_t t = 0; t < taps; t++)
                fn_gemm_pack_b(uk, bp + t * s->OC * s->C, w + t * s->C * s->OC, s->OC, 1, s->OC, s->C, 0, tap_panels);
        } else {
            #pragma omp for schedule(static)
            for (int64_t q = 0; q < npanels; q++) fn_gemm_pack_b(uk, bp, w, s->OC, 1, s->OC, K, q, q + 1);
        }
        /* One image per iteration: receptive fields overlap, so the owner of dx[n] does all its adds. */
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < s->N; n++) {
            float *dxn = dx + n * image;
            memset(dxn, 0, sizeof(float) * image);
            if (direct) {
                const unsigned csr = fn_ftz_enter();
                backward_data_image_direct(uk, dxn, dy + n * P * s->OC, bp, s, dcols);
                fn_ftz_leave(csr);
            } else {
                for (int64_t r0 = 0; r0 < P; r0 += FN_CONV_ROWS) {
                    const int64_t r1 = fn_min64(P, r0 + FN_CONV_ROWS);
                    fn_gemm_tile(uk, 0, r1 - r0, 0, npanels, K, s->OC, 1.0f, dy + (n * P + r0) * s->OC, s->OC, 0,
                                 bp, 0.0f, dcols, K);
                    col2im_rows_add(dxn, dcols, s, r0, r1);
                }
            }
            if (relu_x) relu_mask(dxn, relu_x + n * image, image); /* while dx[n] is still in cache */
        }
    }
    return FN_OK;
}

/* dw (K x OC) and db (may be NULL) as the chunks' partials summed in order. */
void fn_conv2d_sum_chunks(float *dw, float *db, const float *partials, const fn_conv2d_shape *s, int n_threads) {
    fn_sum_partials(dw, kcols(s) * s->OC, db, s->OC, partials, filter_chunks(s), partial_size(s), n_threads);
}

#define FN_SUM_BLOCK 512 /* elements a thread sums across all partials at a time: a vector loop per partial */

void fn_sum_partials(float *w, int64_t nw, float *b, int64_t nb, const float *partials, int64_t nch, int64_t psize,
                     int n_threads) {
    /* Blocks of elements, each summed partial by partial (the order of every element's sum: partial 0, 1, ...).
     * Element by element across the partials, the loop was a strided scalar one: 3 % of a Winograd backward. */
    const int64_t n = nw + nb, blocks = fn_ceil_div(n, FN_SUM_BLOCK);
    #pragma omp parallel for schedule(static) num_threads(FN_ELEMENT_THREADS(n * nch))
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t i0 = blk * FN_SUM_BLOCK, len = fn_min64(FN_SUM_BLOCK, n - i0);
        float acc[FN_SUM_BLOCK];
        memcpy(acc, partials + i0, sizeof(float) * len);
        for (int64_t ch = 1; ch < nch; ch++) add_rows(acc, partials + ch * psize + i0, len);
        for (int64_t i = 0; i < len; i++) {
            if (i0 + i < nw) w[i0 + i] = acc[i];
            else if (b) b[i0 + i - nw] = acc[i];
        }
    }
}

int fn_conv2d_backward_filter(float *dw, float *db, const float *dy, const float *x, const fn_conv2d_shape *s,
                              int algo, int isa, int precision, float *ws, int n_threads) {
    const fn_ukernel *uk = fn_gemm_ukernel(isa, precision);
    if (fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD) {
        const fn_conv2d_grad g = {dy, NULL, NULL};
        fn_conv2d_winograd_backward(NULL, dw, db, &g, x, NULL, NULL, s, uk, ws, n_threads);
        return FN_OK;
    }
    if (fn_conv2d_taps_filter_fit(uk, s)) { /* AMX, 32 channels */
        fn_conv2d_taps_backward_filter(dw, db, dy, x, s, uk, ws, n_threads);
        return FN_OK;
    }
    if (fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_DIRECT) {
        fn_conv2d_direct_backward_filter(dw, db, dy, x, s, ws, n_threads);
        return FN_OK;
    }
    const int64_t K = kcols(s), P = s->OH * s->OW, OC = s->OC, npanels = fn_ceil_div(OC, uk->nr);
    const int64_t nch = filter_chunks(s), rows = filter_rows(s), psize = partial_size(s);
    float *partials = fn_align64(ws);
    float *slots = fn_align64(partials + nch * psize);

    #pragma omp parallel num_threads(filter_threads(s, n_threads))
    {
        float *cols = slots + fn_thread_id() * filter_slot(s);
        float *bp = fn_align64(cols + rows * K);
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < nch; c++) {
            float *pw = partials + c * psize, *pb = pw + K * OC;
            const int64_t n0 = c * s->N / nch, n1 = (c + 1) * s->N / nch;
            int first = 1;
            memset(pb, 0, sizeof(float) * OC);
            for (int64_t n = n0; n < n1; n++) {
                for (int64_t r0 = 0; r0 < P; r0 += rows) {
                    const int64_t r1 = fn_min64(P, r0 + rows);
                    const float *dyt = dy + (n * P + r0) * OC;
                    im2col_rows(cols, x + n * s->H * s->W * s->C, s, r0, r1,
                                uk->bf16 == FN_BF16_ROUNDED ? FN_BF16_ROUNDED : FN_BF16_NONE);
                    if (uk->bf16 == FN_BF16_PAIRS) /* pairs of positions, in place: slot row t from rows 2t, 2t+1 */
                        for (int64_t t = 0; t < fn_ceil_div(r1 - r0, 2); t++)
                            fn_gemm_slots_interleave(cols + t * K, cols + 2 * t * K,
                                                     2 * t + 1 < r1 - r0 ? cols + (2 * t + 1) * K : NULL, K);
                    const float *bt = dyt;
                    if (!fn_gemm_b_is_packed(uk, 0, OC, OC)) {
                        fn_gemm_pack_b(uk, bp, dyt, OC, 0, r1 - r0, OC, 0, npanels);
                        bt = bp;
                    }
                    fn_gemm_tile_slots(uk, 0, K, 0, npanels, OC, r1 - r0, cols, K, 1, bt, first ? 0.0f : 1.0f, pw, OC);
                    for (int64_t r = 0; r < r1 - r0; r++)
                        for (int64_t o = 0; o < OC; o++) pb[o] += dyt[r * OC + o];
                    first = 0;
                }
            }
            if (first) memset(pw, 0, sizeof(float) * K * OC);
        }
    }
    fn_conv2d_sum_chunks(dw, db, partials, s, n_threads);
    return FN_OK;
}

int64_t fn_conv2d_backward_workspace(const fn_conv2d_shape *s, int pooled, int algo, int isa, int precision,
                                     int n_threads) {
    const int64_t conv = fn_conv2d_workspace(s, algo, isa, precision, n_threads);
    if (!pooled || fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD) return conv;
    return conv + s->N * s->OH * s->OW * s->OC + FN_WS_PAD;
}

int fn_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const int32_t *argmax, const float *pooled,
                       const float *x, const float *w, const float *relu_x, const fn_conv2d_shape *s, int algo,
                       int isa, int precision, float *ws, int n_threads) {
    if (fn_conv2d_resolve_algo(s, algo, isa, precision) == FN_CONV_WINOGRAD) {
        const fn_conv2d_grad g = {dy, argmax, pooled};
        fn_conv2d_winograd_backward(dx, dw, db, &g, x, w, relu_x, s, fn_gemm_ukernel(isa, precision), ws, n_threads);
        return FN_OK;
    }
    const float *dz = dy;
    if (argmax) { /* the pool's backward into the workspace, past what the convolution's kernels use */
        float *buf = fn_align64(ws + fn_conv2d_workspace(s, algo, isa, precision, n_threads));
        fn_maxpool2d_backward(buf, dy, argmax, pooled, s->N, s->OH, s->OW, s->OC, 2, 2, 2, 2, 0, 0, s->OH / 2,
                              s->OW / 2, n_threads);
        dz = buf;
    }
    int st = fn_conv2d_backward_filter(dw, db, dz, x, s, algo, isa, precision, ws, n_threads);
    if (st == FN_OK && dx) st = fn_conv2d_backward_data(dx, dz, w, relu_x, s, algo, isa, precision, ws, n_threads);
    return st;
}
