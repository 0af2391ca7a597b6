#include <math.h>

#include "fastnet.h"
#include "internal.h"

int fn_softmax_xent_forward(float *probs, float *loss, const float *logits, const float *targets, int64_t N,
                            int64_t C, int n_threads) {
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * C * FN_COST_EXP), r, N, {
        const float *z = logits + r * C, *t = targets + r * C;
        float *p = probs + r * C;
        float m = z[0];
        for (int64_t j = 1; j < C; j++) m = z[j] > m ? z[j] : m;
        double sum = 0.0;
        for (int64_t j = 0; j < C; j++) sum += exp((double)z[j] - m);
        const double lse = log(sum);
        double l = 0.0;
        for (int64_t j = 0; j < C; j++) {
            const double logp = (double)z[j] - m - lse;
            p[j] = (float)exp(logp);
            if (t[j] != 0.0f) l -= t[j] * logp;
        }
        loss[r] = (float)l;
    });
    return FN_OK;
}

int fn_softmax_xent_backward(float *dlogits, const float *probs, const float *targets, int64_t N, int64_t C,
                             float scale, int n_threads) {
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * C), r, N, {
        const float *p = probs + r * C, *t = targets + r * C;
        float tsum = 0.0f;
        for (int64_t j = 0; j < C; j++) tsum += t[j];
        for (int64_t j = 0; j < C; j++) dlogits[r * C + j] = scale * (p[j] * tsum - t[j]);
    });
    return FN_OK;
}
