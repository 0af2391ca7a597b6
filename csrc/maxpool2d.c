#include <string.h>

#include "fastnet.h"
#include "internal.h"

int fn_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                         int64_t OW, int n_threads) {
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < N * OH; r++) {
        const int64_t n = r / OH, oh = r % OH;
        const float *xn = x + n * H * W * C;
        const int64_t h0 = fn_max64(0, oh * SH - PT), h1 = fn_min64(H, oh * SH - PT + PH);
        for (int64_t ow = 0; ow < OW; ow++) {
            const int64_t w0 = fn_max64(0, ow * SW - PL), w1 = fn_min64(W, ow * SW - PL + PW);
            float *yo = y + (r * OW + ow) * C;
            int32_t *ao = argmax + (r * OW + ow) * C;
            const int64_t first = (h0 * W + w0) * C;
            for (int64_t c = 0; c < C; c++) {
                yo[c] = xn[first + c];
                ao[c] = (int32_t)(first + c);
            }
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++) {
                    const int64_t off = (ih * W + iw) * C;
                    for (int64_t c = 0; c < C; c++)
                        if (xn[off + c] > yo[c]) { /* strict: the first maximum wins ties */
                            yo[c] = xn[off + c];
                            ao[c] = (int32_t)(off + c);
                        }
                }
        }
    }
    return FN_OK;
}

int fn_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int64_t N, int64_t H, int64_t W,
                          int64_t C, int64_t OH, int64_t OW, int n_threads) {
    const int64_t image = H * W * C, out = OH * OW * C;
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; n++) {
        float *dxn = dx + n * image;
        memset(dxn, 0, sizeof(float) * image);
        for (int64_t i = 0; i < out; i++) dxn[argmax[n * out + i]] += dy[n * out + i];
    }
    return FN_OK;
}
