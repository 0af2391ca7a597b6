#include <math.h>

#include "fastnet.h"
#include "internal.h"

int fn_sgd_update(float *p, float *v, const float *g, int64_t n, float lr, float momentum, int nesterov,
                  int n_threads) {
    if (!v) { /* plain SGD: no velocity kept */
        #pragma omp parallel for schedule(static) num_threads(n_threads)
        for (int64_t i = 0; i < n; i++) p[i] -= lr * g[i];
        return FN_OK;
    }
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) {
        const float vi = momentum * v[i] - lr * g[i];
        v[i] = vi;
        p[i] += nesterov ? momentum * vi - lr * g[i] : vi;
    }
    return FN_OK;
}

int fn_rmsprop_update(float *p, float *a, const float *g, int64_t n, float lr, float rho, float eps, int n_threads) {
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) {
        const float ai = rho * a[i] + (1.0f - rho) * g[i] * g[i];
        a[i] = ai;
        p[i] -= lr * g[i] / (sqrtf(ai) + eps);
    }
    return FN_OK;
}

int fn_adadelta_update(float *p, float *a, float *d, const float *g, int64_t n, float lr, float rho, float eps,
                       int n_threads) {
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) {
        const float ai = rho * a[i] + (1.0f - rho) * g[i] * g[i];
        const float u = g[i] * sqrtf(d[i] + eps) / sqrtf(ai + eps);
        a[i] = ai;
        p[i] -= lr * u;
        d[i] = rho * d[i] + (1.0f - rho) * u * u;
    }
    return FN_OK;
}

int fn_adam_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                   float eps, int64_t t, int n_threads) {
    if (t < 1) return FN_EINVAL;
    const float lr_t = (float)(lr * sqrt(1.0 - pow(beta2, (double)t)) / (1.0 - pow(beta1, (double)t)));
    #pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; i++) {
        const float mi = beta1 * m[i] + (1.0f - beta1) * g[i];
        const float vi = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr_t * mi / (sqrtf(vi) + eps);
    }
    return FN_OK;
}
