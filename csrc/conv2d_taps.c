/* The tap path (AMX): convolutions without im2col.
 * A stride-1 convolution of 32-channel pixels whose taps fit one K block (KH * KW * 32 <= FN_KC_MAX), on a kernel
 * with taps (fn_ukernel): the image is converted once into bfloat16 pairs, zero-padded to Hp x Wp pixels (16 slots
 * each), in the thread's im2col buffer. Output position (oh, ow) is then "wide" position p = oh * Wp + ow, and tap
 * (kh, kw) reads pixel p + kh * Wp + kw: 32 consecutive wide positions are one A tile pair at a pixel stride, so each
 * tap is one tile step straight from the image (positions with ow >= OW are computed and dropped). Bit for bit
 * im2col's products on the same kernel (taps_32x32). */
#include <string.h>

#include "fastnet.h"
#include "internal.h"
#include "conv2d_tiles.h"

#define FN_TAPS_MAX (FN_KC_MAX / 32)

static int64_t padded_w(const fn_conv2d_shape *s) { return s->OW + s->KW - 1; }
static int64_t padded_h(const fn_conv2d_shape *s) { return s->OH + s->KH - 1; }
/* Pixels of the converted image: the last tile reads up to 29 + KW past it. */
static int64_t taps_pixels(const fn_conv2d_shape *s) { return padded_h(s) * padded_w(s) + 32 + s->KW; }

int fn_conv2d_taps_fit(const fn_ukernel *uk, const fn_conv2d_shape *s) {
    return uk->taps && s->C == 32 && s->OC % 32 == 0 && s->SH == 1 && s->SW == 1 && kcols(s) <= FN_KC_MAX &&
           s->OW <= FN_CONV_ROWS && padded_w(s) >= s->W + s->PL && padded_h(s) >= s->H + s->PT &&
           taps_pixels(s) * 16 <= FN_CONV_ROWS * kcols(s); /* fits the im2col buffer it replaces */
}

/* Image xn [H, W, 32] as 16 pair slots per pixel of the zero-padded Hp x Wp image. */
void fn_conv2d_taps_image(float *restrict pix, const float *restrict xn, const fn_conv2d_shape *s) {
    const int64_t Wp = padded_w(s);
    memset(pix, 0, sizeof(float) * 16 * taps_pixels(s));
    for (int64_t ih = 0; ih < s->H; ih++)
        fn_gemm_slots(FN_BF16_PAIRS, pix + ((ih + s->PT) * Wp + s->PL) * 16, xn + ih * s->W * 32, s->W * 32);
}

/* The products of output rows [oh0, oh1) into prod (OW * OC floats per row), from the converted image. */
void fn_conv2d_taps_rows(const fn_ukernel *uk, float *restrict prod, const float *restrict pix, const float *bp,
                         const fn_conv2d_shape *s, int64_t oh0, int64_t oh1) {
    const int64_t Wp = padded_w(s), OW = s->OW, OC = s->OC, K = kcols(s), end = oh1 * Wp;
    int64_t off[FN_TAPS_MAX];
    for (int64_t kh = 0; kh < s->KH; kh++)
        for (int64_t kw = 0; kw < s->KW; kw++) off[kh * s->KW + kw] = kh * Wp + kw;
    float acc[32 * 32] __attribute__((aligned(64)));
    fn_ukernel_enter(uk);
    for (int64_t p0 = oh0 * Wp; p0 < end; p0 += 32)
        for (int64_t q = 0; q < OC / 32; q++) {
            uk->taps(acc, pix + p0 * 16, off, (int)(s->KH * s->KW), bp + q * K * 32); /* panel q of the packed w */
            for (int64_t p = p0; p < fn_min64(end, p0 + 32); p++) {
                const int64_t oh = p / Wp, ow = p % Wp;
                if (ow < OW) /* a real output position */
                    memcpy(prod + ((oh - oh0) * OW + ow) * OC + q * 32, acc + (p - p0) * 32, sizeof(float) * 32);
            }
        }
    fn_ukernel_leave(uk);
}

/* The data gradient as a forward pass (the tap path's): dx is the stride-1 convolution of dy, zero-padded by
 * KH - 1 - PT rows and KW - 1 - PL columns before, with the kernel flipped and transposed,
 * w'[kh][kw][o][c] = w[KH-1-kh][KW-1-kw][c][o]. */
static fn_conv2d_shape data_pass(const fn_conv2d_shape *s) {
    const fn_conv2d_shape d = {s->N, s->OH, s->OW, s->OC, s->C, s->KH, s->KW, 1, 1, s->KH - 1 - s->PT,
                               s->KW - 1 - s->PL, s->H, s->W};
    return d;
}

/* C == OC keeps the pass inside the forward's workspace (the same K, the same tile buffers). */
int fn_conv2d_taps_data_fit(const fn_ukernel *uk, const fn_conv2d_shape *s) {
    const fn_conv2d_shape d = data_pass(s);
    return s->C == s->OC && s->SH == 1 && s->SW == 1 && s->PT < s->KH && s->PL < s->KW &&
           fn_conv2d_taps_fit(uk, &d);
}

/* w' (K x C, k = (kh, kw, o)) packed as fn_gemm_pack_b packs a B of pairs, for C a multiple of 32 and K within one
 * K block: panel q at bp + q * K * 32, slot (p, j) = the pair of w'[2p][32q + j] and w'[2p + 1][32q + j], which
 * are w[...][c][o] and w[...][c][o + 1] (OC even). */
static void pack_flipped_pairs(float *restrict bp, const float *restrict w, const fn_conv2d_shape *s, int64_t q0,
                               int64_t q1) {
    const int64_t C = s->C, OC = s->OC, K = kcols(s);
    for (int64_t q = q0; q < q1; q++)
        for (int64_t p = 0; p < K / 2; p++) {
            const int64_t tap = 2 * p / OC, o = 2 * p % OC, kh = tap / s->KW, kw = tap % s->KW;
            const float *wt = w + ((s->KH - 1 - kh) * s->KW + (s->KW - 1 - kw)) * C * OC + o;
            for (int64_t j = 0; j < 32; j++)
                bp[q * K * 32 + p * 32 + j] = fn_bf16_pair(wt[(32 * q + j) * OC], wt[(32 * q + j) * OC + 1]);
        }
}

/* dst = src where relu_x > 0 (or everywhere without relu_x), else 0: the previous ReLU's backward, fused. */
FN_VECTOR_CLONES static void store_masked(float *restrict dst, const float *restrict src, const float *restrict relu_x,
                                          int64_t n) {
    if (!relu_x) {
        memcpy(dst, src, sizeof(float) * n);
        return;
    }
    for (int64_t i = 0; i < n; i++) dst[i] = relu_x[i] > 0.0f ? src[i] : 0.0f;
}

/* The data gradient on the tap path: the flipped pass over dy, whole dx rows per tile. */
void fn_conv2d_taps_backward_data(float *dx, const float *dy, const float *w, const float *relu_x,
                                  const fn_conv2d_shape *s, const fn_ukernel *uk, float *ws, int n_threads) {
    const fn_conv2d_shape d = data_pass(s);
    const int64_t P = d.OH * d.OW, rows = forward_tile_rows(&d, 0, 1), tiles_per_image = fn_ceil_div(P, rows);
    float *bp = fn_align64(ws);
    float *slots = fn_align64(bp + fn_gemm_packed_b_size(kcols(s), s->OC));

    #pragma omp parallel num_threads(n_threads)
    {
        float *pix = slots + fn_thread_id() * tile_slot(s);
        float *prod = pix + fn_round_up(FN_CONV_ROWS * kcols(s) + FN_WS_PAD, 16);
        int64_t converted = -1;
        #pragma omp for schedule(static)
        for (int64_t q = 0; q < s->C / 32; q++) pack_flipped_pairs(bp, w, s, q, q + 1);
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < d.N * tiles_per_image; t++) {
            const int64_t n = t / tiles_per_image, r0 = (t % tiles_per_image) * rows, r1 = fn_min64(P, r0 + rows);
            if (converted != n) fn_conv2d_taps_image(pix, dy + n * d.H * d.W * d.C, &d), converted = n;
            fn_conv2d_taps_rows(uk, prod, pix, bp, &d, r0 / d.OW, r1 / d.OW);
            const int64_t at = (n * P + r0) * s->C;
            store_masked(dx + at, prod, relu_x ? relu_x + at : NULL, (r1 - r0) * s->C);
        }
    }
}

/* The filter gradient on the tap path: tap t's dW_t (C x OC) = X_t^T . DY over an image's wide positions p, X_t's
 * row c the channel c of pixels p + off_t. Per image, both operands are made as pairs along positions once: XP, each
 * channel's padded pixels paired from an even pixel (XP[0]) and from an odd one (XP[1]), so any tap's shift starts
 * on a pair; DYP, dy's wide rows (zero where ow >= OW) paired, one panel of 32 filters per 32 slots of a pair row.
 * Each (tap, panel) is then one micro-kernel call over all of the image's positions, added to the chunk's dW. The
 * wide positions past a row's end multiply real pixels by dy's zeros: an infinite or NaN pixel there reaches the
 * gradient as NaN (its loss is NaN already: the forward multiplied it). */
static int64_t taps_filter_blocks(const fn_conv2d_shape *s) { return fn_ceil_div(s->OH * padded_w(s), 32); }
static int64_t taps_filter_len(const fn_conv2d_shape *s) { /* pair slots per XP row */
    return 16 * taps_filter_blocks(s) + ((s->KH - 1) * padded_w(s) + s->KW) / 2 + 1;
}
static int64_t taps_filter_floats(const fn_conv2d_shape *s) {
    return 2 * 32 * taps_filter_len(s) + 16 * taps_filter_blocks(s) * s->OC + s->OC;
}

int fn_conv2d_taps_filter_fit(const fn_ukernel *uk, const fn_conv2d_shape *s) {
    return fn_conv2d_taps_fit(uk, s) && taps_filter_floats(s) + 2 * FN_WS_PAD <= filter_slot(s);
}

/* XP[e] of image xn: slot (c, j) = the pair of padded pixels 2j + e and 2j + 1 + e, channel c, in blocks of 16
 * pairs made pixel-major (contiguous over c) and written out row by row. */
static void taps_filter_x(float *restrict xp, const float *restrict xn, const fn_conv2d_shape *s) {
    const int64_t Wp = padded_w(s), Hp = padded_h(s), L = taps_filter_len(s);
    float buf[16 * 32] __attribute__((aligned(64)));
    for (int e = 0; e < 2; e++)
        for (int64_t j0 = 0; j0 < L; j0 += 16) {
            const int64_t jb = fn_min64(16, L - j0);
            for (int64_t j = 0; j < jb; j++) {
                const float *px[2];
                for (int h = 0; h < 2; h++) {
                    const int64_t q = 2 * (j0 + j) + e + h, ih = q / Wp - s->PT, iw = q % Wp - s->PL;
                    px[h] = q < Hp * Wp && ih >= 0 && ih < s->H && iw >= 0 && iw < s->W ? xn + (ih * s->W + iw) * 32
                                                                                          : NULL;
                }
                if (px[0]) fn_gemm_slots_interleave(buf + j * 32, px[0], px[1], 32);
                else if (px[1]) for (int c = 0; c < 32; c++) buf[j * 32 + c] = fn_bf16_pair(0.0f, px[1][c]);
                else memset(buf + j * 32, 0, sizeof(float) * 32);
            }
            for (int c = 0; c < 32; c++)
                for (int64_t j = 0; j < jb; j++) xp[(e * 32 + c) * L + j0 + j] = buf[j * 32 + c];
        }
}

/* DYP of image dyn: panel q's pair row j (32 slots) = dy's wide positions 2j and 2j + 1, filters 32q on. */
static void taps_filter_dy(float *restrict dyp, const float *restrict dyn, const float *restrict zeros,
                           const fn_conv2d_shape *s) {
    const int64_t Wp = padded_w(s), OW = s->OW, OC = s->OC, pairs = 16 * taps_filter_blocks(s);
    for (int64_t j = 0; j < pairs; j++) {
        const float *row[2];
        for (int h = 0; h < 2; h++) {
            const int64_t p = 2 * j + h, oh = p / Wp, ow = p % Wp;
            row[h] = oh < s->OH && ow < OW ? dyn + (oh * OW + ow) * OC : zeros;
        }
        for (int64_t q = 0; q < OC / 32; q++)
            fn_gemm_slots_interleave(dyp + (q * pairs + j) * 32, row[0] + q * 32, row[1] + q * 32, 32);
    }
}

void fn_conv2d_taps_backward_filter(float *dw, float *db, const float *dy, const float *x, const fn_conv2d_shape *s,
                                    const fn_ukernel *uk, float *ws, int n_threads) {
    const int64_t K = kcols(s), P = s->OH * s->OW, OC = s->OC, nch = filter_chunks(s), psize = partial_size(s);
    const int64_t Wp = padded_w(s), L = taps_filter_len(s), pairs = 16 * taps_filter_blocks(s);
    float *partials = fn_align64(ws); /* the im2col path's chunks and partials, so the same sums */
    float *slots = fn_align64(partials + nch * psize);

    #pragma omp parallel num_threads(filter_threads(s, n_threads))
    {
        float *xp = fn_align64(slots + fn_thread_id() * filter_slot(s));
        float *dyp = xp + 2 * 32 * L, *zeros = dyp + pairs * OC;
        memset(zeros, 0, sizeof(float) * OC);
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < nch; c++) {
            float *pw = partials + c * psize, *pb = pw + K * OC;
            const int64_t n0 = c * s->N / nch, n1 = (c + 1) * s->N / nch;
            memset(pw, 0, sizeof(float) * (K * OC + OC));
            for (int64_t n = n0; n < n1; n++) {
                const float *dyn = dy + n * P * OC;
                taps_filter_x(xp, x + n * s->H * s->W * 32, s);
                taps_filter_dy(dyp, dyn, zeros, s);
                fn_ukernel_enter(uk);
                for (int64_t kh = 0; kh < s->KH; kh++)
                    for (int64_t kw = 0; kw < s->KW; kw++) {
                        const int64_t off = kh * Wp + kw, t = kh * s->KW + kw;
                        const float *a = xp + (off % 2) * 32 * L + off / 2;
                        for (int64_t q = 0; q < OC / 32; q++) /* summed from zero, then added to the chunk's */
                            uk->kernel(2 * pairs, a, L, 1, dyp + q * pairs * 32, pw + t * 32 * OC + q * 32, OC, 1);
                    }
                fn_ukernel_leave(uk);
                for (int64_t r = 0; r < P; r++) /* db in im2col's order */
                    for (int64_t o = 0; o < OC; o++) pb[o] += dyn[r * OC + o];
            }
        }
    }
    fn_conv2d_sum_chunks(dw, db, partials, s, n_threads);
}
