#ifndef FN_SOFTMAX_XENT_H
#define FN_SOFTMAX_XENT_H
#include <stdint.h>

/* Softmax fused with categorical cross-entropy, computed from the logits (stable for any magnitude).
 *   logits, targets, probs, dlogits [N, C]; loss [N]
 * forward:  probs = softmax(logits), loss[i] = -sum_j targets[i,j] * log_softmax(logits)[i,j]
 * backward: dlogits = scale * (probs * sum_j targets[i,j] - targets)   (scale = 1/N for the batch mean)
 * Reference: tests/reference.py softmax_xent_forward, softmax_xent_backward; tests: tests/test_kernels.py
 * test_softmax_xent*. */
int fn_softmax_xent_forward(float *probs, float *loss, const float *logits, const float *targets, int64_t N,
                            int64_t C, int n_threads);
int fn_softmax_xent_backward(float *dlogits, const float *probs, const float *targets, int64_t N, int64_t C,
                             float scale, int n_threads);

#endif
