#ifndef FN_OPTIM_H
#define FN_OPTIM_H
#include <stdint.h>

/* Fused optimizer steps over n parameters (the Keras 2 formulas; g is the gradient, slots start at zero).
 *   SGD:      v = momentum*v - lr*g;  p += v  (nesterov: p += momentum*v - lr*g). v may be NULL when momentum == 0 (plain SGD).
 *   RMSprop:  a = rho*a + (1-rho)*g^2;  p -= lr*g / (sqrt(a) + eps)
 *   Adadelta: a = rho*a + (1-rho)*g^2;  u = g*sqrt(d + eps)/sqrt(a + eps);  p -= lr*u;  d = rho*d + (1-rho)*u^2
 *   Adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps)
 *             (t counts steps from 1).
 * Reference: tests/reference.py sgd_update, rmsprop_update, adadelta_update, adam_update; tests:
 * tests/test_optimizers.py (one step and a trajectory), tests/test_training_step.py (through a model). */
int fn_sgd_update(float *p, float *v, const float *g, int64_t n, float lr, float momentum, int nesterov,
                  int n_threads);
int fn_rmsprop_update(float *p, float *a, const float *g, int64_t n, float lr, float rho, float eps, int n_threads);
int fn_adadelta_update(float *p, float *a, float *d, const float *g, int64_t n, float lr, float rho, float eps,
                       int n_threads);
int fn_adam_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                   float eps, int64_t t, int n_threads);

#endif
