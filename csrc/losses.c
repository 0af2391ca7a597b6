#include <math.h>

#include "fastnet.h"
#include "internal.h"

/* log(1 + exp(-|z|)) + max(z, 0) - z t: the cross-entropy of sigmoid(z) against t, finite for any z. */
static inline double sigmoid_xent(double z, double t) {
    return (z > 0.0 ? z : 0.0) - z * t + log1p(exp(-fabs(z)));
}

static inline float sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    const float e = expf(z);
    return e / (1.0f + e);
}

int fn_pointwise_loss_forward(int kind, float *loss, float *probs, const float *out, const float *targets,
                              const float *w, int64_t N, int64_t C, int n_threads) {
    if (kind < FN_LOSS_SQUARED || kind > FN_LOSS_SIGMOID_XENT) return FN_EINVAL;
    const int64_t cost = kind == FN_LOSS_SIGMOID_XENT ? FN_COST_EXP : 1;
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * C * cost), r, N, {
        const float *o = out + r * C, *t = targets + r * C;
        double sum = 0.0;
        if (kind == FN_LOSS_SQUARED) {
            for (int64_t j = 0; j < C; j++) sum += ((double)o[j] - t[j]) * ((double)o[j] - t[j]);
        } else if (kind == FN_LOSS_ABSOLUTE) {
            for (int64_t j = 0; j < C; j++) sum += fabs((double)o[j] - t[j]);
        } else {
            for (int64_t j = 0; j < C; j++) {
                sum += sigmoid_xent(o[j], t[j]);
                probs[r * C + j] = sigmoid(o[j]);
            }
        }
        loss[r] = (float)(sum / (double)C * (w ? w[r] : 1.0f));
    });
    return FN_OK;
}

int fn_pointwise_loss_backward(int kind, float *dout, const float *out, const float *probs, const float *targets,
                               const float *w, int64_t N, int64_t C, float scale, int n_threads) {
    if (kind < FN_LOSS_SQUARED || kind > FN_LOSS_SIGMOID_XENT) return FN_EINVAL;
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * C), r, N, {
        const float *o = out + r * C, *t = targets + r * C;
        float *d = dout + r * C;
        const float s = scale * (w ? w[r] : 1.0f) / (float)C;
        if (kind == FN_LOSS_SQUARED) {
            for (int64_t j = 0; j < C; j++) d[j] = 2.0f * s * (o[j] - t[j]);
        } else if (kind == FN_LOSS_ABSOLUTE) {
            for (int64_t j = 0; j < C; j++) d[j] = o[j] > t[j] ? s : (o[j] < t[j] ? -s : 0.0f);
        } else {
            const float *p = probs + r * C;
            for (int64_t j = 0; j < C; j++) d[j] = s * (p[j] - t[j]);
        }
    });
    return FN_OK;
}
