/* Direct convolutions for kernels with few taps: KH * KW * C <= FN_DIRECT_TAPS, as a network's first layer on
 * one-channel images has (3x3 over one channel: 9). Lowered to GEMM, such a layer is a product of depth 9: the
 * micro-kernel stores after 9 steps, and im2col, the packing and the output's passes cost more than the
 * multiplications (on the CNN's first layer, AVX2, one thread: im2col 35 % of the forward, copies 22 % of the filter
 * gradient). Here each output pixel's channels are summed in registers over its taps, the bias and ReLU applied
 * before the one store; the filter gradient keeps each tap's sums for 8 channels in registers over runs of pixels.
 *
 * Each output sums its taps in (kh, kw, c) order from zero, as the GEMM path does, skipping the padding's (whose
 * products are zero); the filter gradient sums each chunk's pixels in order, the chunks then in order (fixed by
 * the shape), so every thread count gives the same bits. Float32 only (bfloat16 operands take im2col). */
#include <string.h>

#include "fastnet.h"
#include "internal.h"
#include "conv2d_tiles.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define FN_DIRECT_BUILT 1
#endif
#define FN_DIRECT_PIXELS 64 /* output pixels whose taps are gathered at a time (64 x 32 floats: 8 KB, in L1) */

#define FN_DIRECT_TAPS 32 /* taps (KH * KW * C) at most: beyond, a product deep enough for the GEMM to pay */
#define FN_DIRECT_OC 256  /* output channels at most */

int fn_conv2d_direct_fits(const fn_conv2d_shape *s) {
    return kcols(s) <= FN_DIRECT_TAPS && s->OC % 8 == 0 && s->OC <= FN_DIRECT_OC;
}

/* Only beside a GEMM kernel whose products are FMAs (AVX2, AVX-512): each output is then the GEMM path's sum of the
 * same FMAs in the same order, so the direct and the im2col kernels agree bit for bit (the fused conv + pool
 * kernel is im2col's, its unfused twin direct). Elsewhere (portable, bfloat16 operands) im2col runs. */
int fn_conv2d_direct_runs(const fn_ukernel *uk, const fn_conv2d_shape *s) {
#ifdef FN_DIRECT_BUILT
    return uk->fma && uk->bf16 == FN_BF16_NONE && fn_conv2d_direct_fits(s);
#else
    (void)uk, (void)s;
    return 0;
#endif
}

#if defined(FN_DIRECT_BUILT)

/* The taps of output pixels (oh, ow0 .. ow0 + np) of image xn [H, W, C], pixel p's in xs[p * K ..] in (kh, kw, c)
 * order, zero in the padding. */
static inline void gather(float *restrict xs, const float *restrict xn, const fn_conv2d_shape *s, int64_t oh,
                          int64_t ow0, int64_t np) {
    const int64_t K = kcols(s);
    for (int64_t p = 0; p < np; p++) {
        float *d = xs + p * K;
        for (int64_t kh = 0; kh < s->KH; kh++) {
            const int64_t ih = oh * s->SH - s->PT + kh;
            for (int64_t kw = 0; kw < s->KW; kw++) {
                const int64_t iw = (ow0 + p) * s->SW - s->PL + kw;
                const float *src = xn + (ih * s->W + iw) * s->C;
                const int inside = ih >= 0 && ih < s->H && iw >= 0 && iw < s->W;
                if (s->C == 1) /* one value (a copy loop here became a call to memmove per tap) */
                    *d++ = inside ? *src : 0.0f;
                else if (inside)
                    for (int64_t c = 0; c < s->C; c++) *d++ = src[c];
                else
                    for (int64_t c = 0; c < s->C; c++) *d++ = 0.0f;
            }
        }
    }
}

/* The epilogue of 8 outputs: the bias (b NULL: none), ReLU, store. */
__attribute__((target("avx2,fma"))) static inline void finish8(float *y, __m256 acc, const float *b, int relu) {
    if (b) acc = _mm256_add_ps(acc, _mm256_loadu_ps(b));
    if (relu) acc = _mm256_and_ps(acc, _mm256_cmp_ps(acc, _mm256_setzero_ps(), _CMP_GT_OQ)); /* NaN: 0, as max */
    _mm256_storeu_ps(y, acc);
}

/* The 3x3 one-channel stride-1 kernel (a first layer on grey images): the taps of pixel p are rows[kh][p + kw], the
 * image's rows around output row oh copied with their padding's zeros, KH * (np + 2) floats, instead of nine
 * gathered per pixel (the gather took half the forward). */
static inline int three_by_three(const fn_conv2d_shape *s) {
    return s->KH == 3 && s->KW == 3 && s->C == 1 && s->SW == 1;
}

static inline void padded_rows(float *restrict rows, const float *restrict xn, const fn_conv2d_shape *s, int64_t oh,
                               int64_t ow0, int64_t np) {
    const int64_t len = np + 2;
    for (int64_t kh = 0; kh < 3; kh++) {
        const int64_t ih = oh * s->SH - s->PT + kh, iw0 = ow0 - s->PL;
        float *d = rows + kh * len;
        for (int64_t j = 0; j < len; j++) {
            const int64_t iw = iw0 + j;
            d[j] = ih >= 0 && ih < s->H && iw >= 0 && iw < s->W ? xn[ih * s->W + iw] : 0.0f;
        }
    }
}

/* 16 channels [o, o + 16) of two pixels (taps at xa and xb, outputs at ya and yb): four chains of FMAs, each tap's
 * two weight vectors loaded once for both pixels (one pixel's 32 channels were four chains of K dependent FMAs:
 * latency-bound). Inlined with K constant where it is 9, so the tap loop unrolls. */
/* Where tap k of a pixel lies from its first: k in gathered taps (rl 0), kh * rl + kw in padded rows rl apart. */
#define FN_TAP(k, rl) ((rl) ? (k) / 3 * (rl) + (k) % 3 : (k))

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void two_pixels(
    float *ya, float *yb, const float *xa, const float *xb, const float *w, const float *b, int64_t OC, int64_t o,
    int relu, const int64_t K, const int width, const int64_t rl) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    for (int64_t k = 0; k < K; k++) {
        const __m256 w0 = _mm256_loadu_ps(w + k * OC + o), xak = _mm256_broadcast_ss(xa + FN_TAP(k, rl)),
                     xbk = _mm256_broadcast_ss(xb + FN_TAP(k, rl));
        a0 = _mm256_fmadd_ps(xak, w0, a0), b0 = _mm256_fmadd_ps(xbk, w0, b0);
        if (width == 16) {
            const __m256 w1 = _mm256_loadu_ps(w + k * OC + o + 8);
            a1 = _mm256_fmadd_ps(xak, w1, a1), b1 = _mm256_fmadd_ps(xbk, w1, b1);
        }
    }
    finish8(ya + o, a0, b ? b + o : NULL, relu), finish8(yb + o, b0, b ? b + o : NULL, relu);
    if (width == 16)
        finish8(ya + o + 8, a1, b ? b + o + 8 : NULL, relu), finish8(yb + o + 8, b1, b ? b + o + 8 : NULL, relu);
}

/* np pixels of an output row; pixel p's taps at xs + p * step (gathered: step K, rl 0; padded rows: step 1, rl
 * the rows' length). */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void pixels(
    float *yrow, const float *xs, int64_t np, const float *w, const float *b, int64_t OC, int relu, const int64_t K,
    const int64_t step, const int64_t rl) {
    for (int64_t p = 0; p < np; p += 2) {
        const int64_t q = p + 1 < np ? p + 1 : p; /* an odd last pixel computed twice, stored twice alike */
        float *ya = yrow + p * OC, *yb = yrow + q * OC;
        int64_t o = 0;
        for (; o + 16 <= OC; o += 16) two_pixels(ya, yb, xs + p * step, xs + q * step, w, b, OC, o, relu, K, 16, rl);
        for (; o < OC; o += 8) two_pixels(ya, yb, xs + p * step, xs + q * step, w, b, OC, o, relu, K, 8, rl);
    }
}

/* Output rows [r0, r1) of the batch (row r: image r / OH, output row r % OH), in runs of gathered pixels. */
__attribute__((target("avx2,fma"))) static void forward_rows(float *y, const float *x, const float *w, const float *b,
                                                             const fn_conv2d_shape *s, int relu, int64_t r0,
                                                             int64_t r1) {
    const int64_t K = kcols(s), OC = s->OC;
    float xs[FN_DIRECT_PIXELS * FN_DIRECT_TAPS];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / s->OH, oh = r % s->OH;
        for (int64_t ow0 = 0; ow0 < s->OW; ow0 += FN_DIRECT_PIXELS) {
            const int64_t np = fn_min64(FN_DIRECT_PIXELS, s->OW - ow0);
            float *yrow = y + ((n * s->OH + oh) * s->OW + ow0) * OC;
            const float *xn = x + n * s->H * s->W * s->C;
            if (three_by_three(s)) {
                padded_rows(xs, xn, s, oh, ow0, np);
                pixels(yrow, xs, np, w, b, OC, relu, 9, 1, np + 2);
            } else {
                gather(xs, xn, s, oh, ow0, np);
                pixels(yrow, xs, np, w, b, OC, relu, K, K, 0);
            }
        }
    }
}

void fn_conv2d_direct_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                              int act, int n_threads) {
    /* Threads by multiply-adds, at half a GEMM's grain: these run at about half its rate (the CNN's first layer,
     * one image: 195 K multiply-adds in 9.0 us on one core of the 2-core EPYC, 6.3 us on two), not by output
     * elements (which left that image on one thread). */
    const int64_t rows = s->N * s->OH;
    const int nt = fn_threads_for(rows * s->OW * s->OC * kcols(s), FN_GRAIN_MACS / 2, n_threads);
    FN_PARALLEL_FOR(nt, t, nt, {
        const unsigned csr = fn_ftz_enter();
        forward_rows(y, x, w, b, s, act == FN_ACT_RELU, rows * t / nt, rows * (t + 1) / nt);
        fn_ftz_leave(csr);
    });
}

/* A run of np pixels' contribution to 8 channels [o, o + 8) of the filter gradient: taps [k0, k0 + kn) summed in
 * registers (loaded from pw and stored back: each element's sum still runs pixel by pixel, in order). Inlined with
 * kn constant (9, or 12 for the blocks of a longer K), so the sums are registers, not an array in memory. */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void filter_taps(
    float *pw, const float *xs, const float *g, int64_t np, int64_t OC, int64_t o, int64_t k0, const int64_t kn,
    const int64_t step, const int64_t rl) {
    __m256 acc[12];
    for (int64_t k = 0; k < kn; k++) acc[k] = _mm256_loadu_ps(pw + (k0 + k) * OC + o);
    for (int64_t p = 0; p < np; p++) {
        const __m256 gp = _mm256_loadu_ps(g + p * OC + o);
        for (int64_t k = 0; k < kn; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(xs + p * step + FN_TAP(k0 + k, rl)), gp, acc[k]);
    }
    for (int64_t k = 0; k < kn; k++) _mm256_storeu_ps(pw + (k0 + k) * OC + o, acc[k]);
}

/* Images [n0, n1)'s filter gradient into pw (K x OC) and pb (OC), run of pixels by run: per block of 8 channels,
 * the bias's sum (two chains, even and odd pixels, added at the end of the run) and every tap's. */
__attribute__((target("avx2,fma"))) static void filter_chunk(float *pw, float *pb, const float *dy, const float *x,
                                                             const fn_conv2d_shape *s, int64_t n0, int64_t n1) {
    const int64_t K = kcols(s), OC = s->OC;
    float xs[FN_DIRECT_PIXELS * FN_DIRECT_TAPS];
    memset(pw, 0, sizeof(float) * K * OC), memset(pb, 0, sizeof(float) * OC);
    for (int64_t n = n0; n < n1; n++)
        for (int64_t oh = 0; oh < s->OH; oh++)
            for (int64_t ow0 = 0; ow0 < s->OW; ow0 += FN_DIRECT_PIXELS) {
                const int64_t np = fn_min64(FN_DIRECT_PIXELS, s->OW - ow0);
                const float *g = dy + ((n * s->OH + oh) * s->OW + ow0) * OC;
                const float *xn = x + n * s->H * s->W * s->C;
                const int fast = three_by_three(s);
                if (fast) padded_rows(xs, xn, s, oh, ow0, np);
                else gather(xs, xn, s, oh, ow0, np);
                for (int64_t o = 0; o < OC; o += 8) {
                    __m256 even = _mm256_setzero_ps(), odd = even;
                    int64_t p = 0;
                    for (; p + 2 <= np; p += 2)
                        even = _mm256_add_ps(even, _mm256_loadu_ps(g + p * OC + o)),
                        odd = _mm256_add_ps(odd, _mm256_loadu_ps(g + (p + 1) * OC + o));
                    if (p < np) even = _mm256_add_ps(even, _mm256_loadu_ps(g + p * OC + o));
                    _mm256_storeu_ps(pb + o, _mm256_add_ps(_mm256_loadu_ps(pb + o), _mm256_add_ps(even, odd)));
                    if (fast) {
                        filter_taps(pw, xs, g, np, OC, o, 0, 9, 1, np + 2);
                        continue;
                    }
                    int64_t k0 = 0;
                    for (; k0 + 12 <= K; k0 += 12) filter_taps(pw, xs, g, np, OC, o, k0, 12, K, 0);
                    for (; k0 < K; k0++) filter_taps(pw, xs, g, np, OC, o, k0, 1, K, 0);
                }
            }
}

void fn_conv2d_direct_backward_filter(float *dw, float *db, const float *dy, const float *x,
                                      const fn_conv2d_shape *s, float *ws, int n_threads) {
    const int64_t nch = filter_chunks(s), psize = partial_size(s), KOC = kcols(s) * s->OC;
    float *partials = fn_align64(ws);
    #pragma omp parallel for schedule(static) num_threads((int)fn_min64(n_threads, nch))
    for (int64_t ch = 0; ch < nch; ch++) {
        const unsigned csr = fn_ftz_enter();
        float *pw = partials + ch * psize;
        filter_chunk(pw, pw + KOC, dy, x, s, ch * s->N / nch, (ch + 1) * s->N / nch);
        fn_ftz_leave(csr);
    }
    fn_sum_partials(dw, KOC, db, s->OC, partials, nch, psize, n_threads);
}
#else
void fn_conv2d_direct_forward(float *y, const float *x, const float *w, const float *b, const fn_conv2d_shape *s,
                              int act, int n_threads) {
    (void)y, (void)x, (void)w, (void)b, (void)s, (void)act, (void)n_threads;
}
void fn_conv2d_direct_backward_filter(float *dw, float *db, const float *dy, const float *x,
                                      const fn_conv2d_shape *s, float *ws, int n_threads) {
    (void)dw, (void)db, (void)dy, (void)x, (void)s, (void)ws, (void)n_threads;
}
#endif
