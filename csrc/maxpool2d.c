#include <string.h>

#include "fastnet.h"
#include "internal.h"

/* One output row (n, oh): every window's channels in one vectorizable sweep (NHWC keeps them contiguous). */
FN_VECTOR_CLONES static void pool_row(float *restrict y, int32_t *restrict arg, const float *restrict xn, int64_t oh,
                                      int64_t H, int64_t W, int64_t C, int64_t PH, int64_t PW, int64_t SH,
                                      int64_t SW, int64_t PT, int64_t PL, int64_t OW) {
    const int64_t h0 = fn_max64(0, oh * SH - PT), h1 = fn_min64(H, oh * SH - PT + PH);
    for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t w0 = fn_max64(0, ow * SW - PL), w1 = fn_min64(W, ow * SW - PL + PW);
        float *yo = y + ow * C;
        int32_t *ao = arg + ow * C;
        const int32_t first = (int32_t)((h0 * W + w0) * C);
        for (int64_t c = 0; c < C; c++) {
            yo[c] = xn[first + c];
            ao[c] = first + (int32_t)c;
        }
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) {
                const int32_t off = (int32_t)((ih * W + iw) * C);
                const float *xo = xn + off;
                for (int64_t c = 0; c < C; c++) {
                    const int win = xo[c] > yo[c]; /* strict: the first maximum wins ties */
                    yo[c] = win ? xo[c] : yo[c];
                    ao[c] = win ? off + (int32_t)c : ao[c];
                }
            }
    }
}

int fn_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                         int64_t OW, int n_threads) {
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * H * W * C), r, N * OH,
                    pool_row(y + r * OW * C, argmax + r * OW * C, x + (r / OH) * H * W * C, r % OH, H, W, C, PH, PW,
                             SH, SW, PT, PL, OW));
    return FN_OK;
}

/* Windows that tile the image exactly (stride = window, no padding, nothing left over): every input belongs
 * to one window, so dx is written once, element by element, with no zeroing pass and no scatter. */
FN_VECTOR_CLONES static void unpool_row(float *restrict dx, const float *restrict dy, const int32_t *restrict arg,
                                        const float *restrict y, int64_t oh, int64_t W, int64_t C, int64_t PH,
                                        int64_t PW, int64_t OW) {
    for (int64_t ph = 0; ph < PH; ph++)
        for (int64_t ow = 0; ow < OW; ow++)
            for (int64_t pw = 0; pw < PW; pw++) {
                const int32_t off = (int32_t)((((oh * PH + ph) * W) + ow * PW + pw) * C);
                const float *g = dy + ow * C;
                const int32_t *a = arg + ow * C;
                const float *yo = y ? y + ow * C : NULL;
                float *d = dx + off;
                if (yo) {
                    for (int64_t c = 0; c < C; c++) d[c] = (a[c] == off + (int32_t)c && yo[c] > 0.0f) ? g[c] : 0.0f;
                } else {
                    for (int64_t c = 0; c < C; c++) d[c] = a[c] == off + (int32_t)c ? g[c] : 0.0f;
                }
            }
}

int fn_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, const float *y, int64_t N, int64_t H,
                          int64_t W, int64_t C, int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                          int64_t OH, int64_t OW, int n_threads) {
    const int64_t image = H * W * C, out = OH * OW * C;
    if (SH == PH && SW == PW && PT == 0 && PL == 0 && OH * PH == H && OW * PW == W) {
        FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * image), r, N * OH, {
            const int64_t n = r / OH;
            unpool_row(dx + n * image, dy + r * OW * C, argmax + r * OW * C, y ? y + r * OW * C : NULL, r % OH, W, C,
                       PH, PW, OW);
        });
        return FN_OK;
    }
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * image), n, N, {
        float *dxn = dx + n * image;
        const float *dyn = dy + n * out, *yn = y ? y + n * out : NULL;
        const int32_t *an = argmax + n * out;
        memset(dxn, 0, sizeof(float) * image);
        if (yn) {
            for (int64_t i = 0; i < out; i++)
                if (yn[i] > 0.0f) dxn[an[i]] += dyn[i];
        } else {
            for (int64_t i = 0; i < out; i++) dxn[an[i]] += dyn[i];
        }
    });
    return FN_OK;
}
