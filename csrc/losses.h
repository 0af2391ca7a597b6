#ifndef FN_LOSSES_H
#define FN_LOSSES_H
#include <stdint.h>

/* The elementwise losses (Keras's mean_squared_error, mean_absolute_error and binary_crossentropy from logits):
 * a sample's loss is the mean over its C outputs, times its weight.
 *   out, targets, probs, dout [N, C]; loss [N]; w [N] per-sample weights, or NULL for all ones
 * kind FN_LOSS_SQUARED:      loss[i] = w[i] * mean_j (out - t)^2          dout = scale * w[i] * 2 (out - t) / C
 * kind FN_LOSS_ABSOLUTE:     loss[i] = w[i] * mean_j |out - t|            dout = scale * w[i] * sign(out - t) / C
 * kind FN_LOSS_SIGMOID_XENT: out holds logits z; probs = sigmoid(z);
 *                            loss[i] = w[i] * mean_j (max(z, 0) - z t + log(1 + exp(-|z|)))
 *                                                                         dout = scale * w[i] * (probs - t) / C
 * (scale = 1/N for the batch mean). probs is written by the sigmoid kind only and may be NULL otherwise; the
 * forward accumulates each row in double. sign(0) = 0, as TensorFlow's and PyTorch's.
 * Reference: tests/reference.py pointwise_loss_forward, pointwise_loss_backward; tests: tests/test_kernels.py
 * test_pointwise_loss*. */
enum { FN_LOSS_SQUARED = 0, FN_LOSS_ABSOLUTE = 1, FN_LOSS_SIGMOID_XENT = 2 };

int fn_pointwise_loss_forward(int kind, float *loss, float *probs, const float *out, const float *targets,
                              const float *w, int64_t N, int64_t C, int n_threads);
int fn_pointwise_loss_backward(int kind, float *dout, const float *out, const float *probs, const float *targets,
                               const float *w, int64_t N, int64_t C, float scale, int n_threads);

#endif
