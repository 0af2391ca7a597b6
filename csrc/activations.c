#include <math.h>
#include <string.h>

#include "fastnet.h"
#include "internal.h"

/* The elementwise activations, by name: codes past FN_ACT_TANH are this file's alone (no caller names them; the
 * Cython layer and the plan's program find them by name, fn_activation_code), so an activation is added here and
 * nowhere else in C. alpha: a parametric activation's parameter (unused by the others). */
static const char *const NAMES[] = {"linear", "relu", "sigmoid", "tanh", "leaky_relu"};
enum { ACT_LEAKY_RELU = FN_ACT_TANH + 1 };
enum { N_ACTS = sizeof NAMES / sizeof NAMES[0] };

int fn_activation_code(const char *name) {
    for (int a = 0; a < N_ACTS; a++)
        if (!strcmp(name, NAMES[a])) return a;
    return -1;
}

const char *fn_activation_name(int act) { return act >= 0 && act < N_ACTS ? NAMES[act] : NULL; }

static int valid_act(int act) { return act >= 0 && act < N_ACTS; }

FN_VECTOR_CLONES static void act_forward_block(float *y, const float *x, int64_t n, int act, float alpha) {
    switch (act) {
    case FN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case ACT_LEAKY_RELU: /* alpha >= 0 (the layer checks): y > 0 exactly where x > 0, which the backward reads */
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case FN_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case FN_ACT_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    default:
        for (int64_t i = 0; i < n; i++) y[i] = x[i];
    }
}

/* dL/dx from dy and the forward's output y. */
FN_VECTOR_CLONES static void act_backward_block(float *dx, const float *dy, const float *restrict y, int64_t n, int act,
                                                float alpha) {
    switch (act) {
    case FN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : alpha * dy[i];
        break;
    case FN_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case FN_ACT_TANH:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    default:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i];
    }
}

int fn_activation_forward(float *y, const float *x, int64_t n, int act, float alpha, int n_threads) {
    if (!valid_act(act)) return FN_EINVAL;
    const int64_t cost = act == FN_ACT_SIGMOID || act == FN_ACT_TANH ? FN_COST_EXP : 1;
    FN_FOR_BLOCKS_OF(n * cost, n, i0, len, act_forward_block(y + i0, x + i0, len, act, alpha))
    return FN_OK;
}

int fn_activation_backward(float *dx, const float *dy, const float *y, int64_t n, int act, float alpha,
                           int n_threads) {
    if (!valid_act(act)) return FN_EINVAL;
    FN_FOR_BLOCKS(n, i0, len, act_backward_block(dx + i0, dy + i0, y + i0, len, act, alpha))
    return FN_OK;
}

int fn_softmax_forward(float *y, const float *x, int64_t N, int64_t C, int n_threads) {
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * C * FN_COST_EXP), r, N, {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float m = xr[0], sum = 0.0f;
        for (int64_t j = 1; j < C; j++) m = xr[j] > m ? xr[j] : m;
        for (int64_t j = 0; j < C; j++) sum += (yr[j] = expf(xr[j] - m));
        for (int64_t j = 0; j < C; j++) yr[j] /= sum;
    });
    return FN_OK;
}

int fn_softmax_backward(float *dx, const float *dy, const float *y, int64_t N, int64_t C, int n_threads) {
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(N * C), r, N, {
        const float *dyr = dy + r * C, *yr = y + r * C;
        float dot = 0.0f;
        for (int64_t j = 0; j < C; j++) dot += dyr[j] * yr[j];
        for (int64_t j = 0; j < C; j++) dx[r * C + j] = yr[j] * (dyr[j] - dot);
    });
    return FN_OK;
}

FN_VECTOR_CLONES void fn_post_rows(float *y, int64_t ldy, const float *t, int64_t ldt, int64_t r0, int64_t rows,
                                   int64_t c0, int64_t cols, const fn_post_ops *p) {
    const float *bias = p->bias ? p->bias + c0 : NULL;
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * ldy;
        const float *tr = t + r * ldt;
        if (p->act == FN_ACT_RELU && bias) {
            for (int64_t j = 0; j < cols; j++) yr[j] = fn_post_value(tr[j], bias[j], 1);
        } else if (p->act == FN_ACT_RELU) {
            for (int64_t j = 0; j < cols; j++) yr[j] = tr[j] > 0.0f ? tr[j] : 0.0f;
        } else if (bias) {
            for (int64_t j = 0; j < cols; j++) yr[j] = tr[j] + bias[j];
        } else if (yr != tr) {
            for (int64_t j = 0; j < cols; j++) yr[j] = tr[j];
        }
    }
    if (p->rate > 0.0f)
        fn_dropout_rows(y, ldy, rows, cols, p->first + (uint64_t)(r0 * p->ld + c0), p->ld, p->rate, p->key);
}

int fn_bias_act_forward(float *y, const float *b, int64_t R, int64_t C, int act, int n_threads) {
    if (act != FN_ACT_LINEAR && act != FN_ACT_RELU) return FN_EINVAL;
    const fn_post_ops p = {b, act, 0.0f, 0, 0, C};
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(R * C), r, R, fn_post_rows(y + r * C, C, y + r * C, C, r, 1, 0, C, &p));
    return FN_OK;
}

FN_VECTOR_CLONES static int64_t count_nonfinite(const float *restrict x, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

int64_t fn_first_nonfinite(const float *x, int64_t n, int n_threads) {
    const int64_t nb = fn_ceil_div(n, FN_BLOCK);
    int64_t first = nb; /* the first block holding a bad value; nb: none */
    const int nt = FN_ELEMENT_THREADS(n);
    if (nt == 1) /* no region (internal.h's FN_PARALLEL): any bad value, and the scan below starts at 0 */
        first = nb && count_nonfinite(x, n) ? 0 : nb;
    else {
        #pragma omp parallel for schedule(static) num_threads(nt) reduction(min : first)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t i0 = b * FN_BLOCK;
            if (count_nonfinite(x + i0, fn_min64(FN_BLOCK, n - i0)) && b < first) first = b;
        }
    }
    for (int64_t i = first * FN_BLOCK; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}
