#ifndef FN_ACTIVATIONS_H
#define FN_ACTIVATIONS_H
#include <stdint.h>

/* Elementwise activations over n floats: y = act(x); act in FN_ACT_{LINEAR,RELU,SIGMOID,TANH}.
 * backward takes the forward OUTPUT y (all four derivatives are functions of it): dx = dy * act'(y).
 * y may alias x and dx may alias dy.
 * Reference: tests/reference.py activation_forward/_backward, softmax_forward/_backward, bias_backward;
 * tests: tests/test_kernels.py test_activations, test_softmax, test_bias_act_and_bias_backward, test_first_nonfinite. */
int fn_activation_forward(float *y, const float *x, int64_t n, int act, float alpha, int n_threads);
int fn_activation_backward(float *dx, const float *dy, const float *y, int64_t n, int act, float alpha,
                           int n_threads);
/* An activation's code by its Keras name (-1: none), and back (NULL past the last): every elementwise activation
 * the kernels above have, FN_ACT_* and those only activations.c names. */
int fn_activation_code(const char *name);
const char *fn_activation_name(int act);

/* Row-wise softmax: x, y [N, C]; backward: dx = y * (dy - sum_j dy_j y_j), dx [N, C]. */
int fn_softmax_forward(float *y, const float *x, int64_t N, int64_t C, int n_threads);
int fn_softmax_backward(float *dx, const float *dy, const float *y, int64_t N, int64_t C, int n_threads);

/* Index of the first NaN or inf among n floats, or -1 when all are finite. */
int64_t fn_first_nonfinite(const float *x, int64_t n, int n_threads);

/* Bias and activation on rows: y [R, C] = act(y + b[C]) in place; b may be NULL. */
int fn_bias_act_forward(float *y, const float *b, int64_t R, int64_t C, int act, int n_threads);

#endif
