#include <math.h>

#include "fastnet.h"
#include "internal.h"

/* Each update is one pass over a block; FN_FOR_BLOCKS spreads the blocks over the threads. */

FN_VECTOR_CLONES static void sgd_block(float *restrict p, float *restrict v, const float *restrict g, int64_t n,
                                       float lr, float momentum, int nesterov) {
    if (!v) {
        for (int64_t i = 0; i < n; i++) p[i] -= lr * g[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float vi = momentum * v[i] - lr * g[i];
        v[i] = vi;
        p[i] += nesterov ? momentum * vi - lr * g[i] : vi;
    }
}

FN_VECTOR_CLONES static void rmsprop_block(float *restrict p, float *restrict a, const float *restrict g, int64_t n,
                                           float lr, float rho, float eps) {
    for (int64_t i = 0; i < n; i++) {
        const float ai = rho * a[i] + (1.0f - rho) * g[i] * g[i];
        a[i] = ai;
        p[i] -= lr * g[i] / (sqrtf(ai) + eps);
    }
}

FN_VECTOR_CLONES static void adadelta_block(float *restrict p, float *restrict a, float *restrict d,
                                            const float *restrict g, int64_t n, float lr, float rho, float eps) {
    for (int64_t i = 0; i < n; i++) {
        const float ai = rho * a[i] + (1.0f - rho) * g[i] * g[i];
        const float u = g[i] * sqrtf(d[i] + eps) / sqrtf(ai + eps);
        a[i] = ai;
        p[i] -= lr * u;
        d[i] = rho * d[i] + (1.0f - rho) * u * u;
    }
}

FN_VECTOR_CLONES static void adam_block(float *restrict p, float *restrict m, float *restrict v,
                                        const float *restrict g, int64_t n, float lr_t, float beta1, float beta2,
                                        float eps) {
    for (int64_t i = 0; i < n; i++) {
        const float mi = beta1 * m[i] + (1.0f - beta1) * g[i];
        const float vi = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr_t * mi / (sqrtf(vi) + eps);
    }
}

int fn_sgd_update(float *p, float *v, const float *g, int64_t n, float lr, float momentum, int nesterov,
                  int n_threads) {
    FN_FOR_BLOCKS(n, i0, len, sgd_block(p + i0, v ? v + i0 : NULL, g + i0, len, lr, momentum, nesterov))
    return FN_OK;
}

int fn_rmsprop_update(float *p, float *a, const float *g, int64_t n, float lr, float rho, float eps, int n_threads) {
    FN_FOR_BLOCKS(n, i0, len, rmsprop_block(p + i0, a + i0, g + i0, len, lr, rho, eps))
    return FN_OK;
}

int fn_adadelta_update(float *p, float *a, float *d, const float *g, int64_t n, float lr, float rho, float eps,
                       int n_threads) {
    FN_FOR_BLOCKS(n, i0, len, adadelta_block(p + i0, a + i0, d + i0, g + i0, len, lr, rho, eps))
    return FN_OK;
}

int fn_adam_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                   float eps, int64_t t, int n_threads) {
    if (t < 1) return FN_EINVAL;
    const float lr_t = (float)(lr * sqrt(1.0 - pow(beta2, (double)t)) / (1.0 - pow(beta1, (double)t)));
    FN_FOR_BLOCKS(n, i0, len, adam_block(p + i0, m + i0, v + i0, g + i0, len, lr_t, beta1, beta2, eps))
    return FN_OK;
}
