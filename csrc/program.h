/* A compiled plan run by C: the kernel calls of a model's forward, loss, backward and update, with their operands
 * fixed once when the plan is built, run in one call without Python between them.
 *
 * A program is an array of ops, one per plan step (fastnet/plan.py says which layers a step covers and what it
 * fuses). Each op owns the arrays it writes (its output, saved state and data gradient: the plan's buffers, sized
 * for a batch capacity; a batch of n rows uses the first n of each) and points at the weights and gradient slices
 * it reads and writes. Only the batch's input, targets and row count come with each run. The forward passes each
 * op's output to the next; the backward passes each op's data gradient to the op before it.
 *
 * The Cython layer (src/fastnet/_kernels_program.pxi) builds the ops and checks them once: every pointer and size
 * here is trusted. Results are those of the same kernels called one by one, bit for bit.
 * Reference: the plan's layers in tests/reference.py; tests: tests/test_plan.py, tests/test_training_step.py. */
#ifndef FN_PROGRAM_H
#define FN_PROGRAM_H
#include <stdint.h>

#include "conv2d.h"

/* What an op does, forward and backward (fastnet.plan's step classes, one each). */
enum {
    FN_OP_DENSE = 0,          /* x @ w + b, its fused ReLU (and a Dropout after it while training), then `post` */
    FN_OP_CONV2D = 1,         /* conv(x, w) + b, its fused ReLU, then `post` */
    FN_OP_CONV2D_MAXPOOL = 2, /* a 2x2 max-pool of relu(conv(x, w) + b), the convolution never stored */
    FN_OP_MAXPOOL2D = 3,
    FN_OP_ACTIVATION = 4,     /* `post` on its own */
    FN_OP_DROPOUT = 5,        /* training only; the identity at inference */
    FN_OP_TO_CHANNELS_FIRST = 6, /* Flatten of channels_first images: (H, W, C) rows copied in (C, H, W) order */
    FN_OP_IDENTITY = 7,       /* a view: Flatten in (H, W, C) order, Activation('linear'), a softmax the loss takes */
    FN_OP_KINDS = 8
};

/* An activation after a kernel, or an activation op's: FN_ACT_* of fastnet.h, or a softmax over the last axis. */
enum { FN_POST_NONE = -1, FN_POST_SOFTMAX = 16 };

typedef struct fn_op {
    int kind;
    int64_t in_row, out_row;  /* floats per sample: the op's input and output */
    int isa, precision;       /* the products' ISA path and their operands' precision (FN_FLOAT32, FN_BFLOAT16) */
    int algo;                 /* the convolution algorithm (FN_CONV_*) */
    int act;                  /* what a dense or conv kernel applies itself: FN_ACT_LINEAR or FN_ACT_RELU */
    int post;                 /* applied after it, or an activation op's: FN_POST_NONE, FN_POST_SOFTMAX or an
                               * activation's code (fn_activation_code) */
    float alpha;              /* a parametric activation's parameter */
    int64_t channels;         /* the last axis `post` (softmax) works along */
    int relu_backward;        /* the backward applies its own ReLU's backward (from y) */
    int masks_relu_input;     /* the backward masks its data gradient where its input is not positive */
    int dropout;              /* dense: drops out its output while training (the next layer, a Dropout) */
    float rate;               /* dropout rate (a dense op's Dropout, or a dropout op) */
    uint64_t seed, layer;     /* a dropout mask's key: the seed and the Dropout layer's index */
    fn_conv2d_shape conv;     /* conv ops: the geometry (N is the run's rows); maxpool: N H W C, OH OW */
    int64_t pool[6];          /* maxpool: PH PW SH SW PT PL */
    const float *w, *b;       /* weights (b may be NULL) */
    float *dw, *db;           /* their gradients, in the model's arena */
    const float *packed;      /* dense: w packed once for inference (fn_gemm_pack), else NULL */
    fn_weights_memo memo;     /* conv ops: what inference runs keep from w (mem NULL: nothing) */
    float *y;                 /* the kernel's output */
    float *post_y;            /* `post`'s output, when there is one */
    int32_t *argmax;          /* pooling ops */
    uint8_t *keep;            /* dropout op: the mask */
    float *dz;                /* the gradient before the kernel's backward (after the activations'), or NULL */
    float *dx;                /* the data gradient, or NULL (the first op) */
    /* Run state, written by the forward for the backward: */
    const float *x;           /* this batch's input */
    const float *out;         /* this batch's output (y, post_y, or x for a view) */
} fn_op;

/* What changes from one run to the next. */
typedef struct fn_run {
    int64_t n;                /* the batch's rows, at most the capacity the ops' arrays were made for */
    int training;             /* dropout on, and state saved for a backward */
    uint64_t model_id, step;  /* with an op's seed and layer: the key of its dropout mask at this step */
    uint64_t row0;            /* the global batch row of this run's first row (data-parallel ranks) */
    float *ws;                /* scratch of fn_program_workspace floats */
    int n_threads;
} fn_run;

/* The loss, computed from the program's output. */
enum { FN_LOSS_SOFTMAX_XENT = 16 };  /* besides FN_LOSS_SQUARED, _ABSOLUTE and _SIGMOID_XENT (losses.h) */
typedef struct fn_loss {
    int kind;
    int64_t classes;
    float *probs, *loss, *dout;  /* [capacity, classes], [capacity], [capacity, classes] */
} fn_loss;

/* The optimizer's update of the whole parameter arena, and the counters it advances. */
enum { FN_UPDATE_SGD = 0, FN_UPDATE_RMSPROP = 1, FN_UPDATE_ADADELTA = 2, FN_UPDATE_ADAM = 3 };
typedef struct fn_update {
    int kind;
    float *p, *s0, *s1;       /* parameters and the optimizer's slots (s1 NULL when it has one, s0 NULL for none) */
    const float *g;
    int64_t size;
    float lr, h0, h1, h2;     /* sgd: momentum, nesterov; rmsprop/adadelta: rho, eps; adam: beta1, beta2, eps */
    int64_t t;                /* adam: the step number, from 1 */
    int64_t *counters[2];     /* advanced by one once the update has run (the model's step, the iterations) */
} fn_update;

/* The forward of ops [lo, hi) on x (rows of ops[lo].in_row floats); returns ops[hi-1]'s output. */
const float *fn_program_forward(fn_op *ops, int lo, int hi, const float *x, const fn_run *run, int *status);
/* Inference: the forward of every op on x, then `post` (FN_POST_NONE, FN_POST_SOFTMAX or FN_ACT_SIGMOID: the final
 * activation a loss takes over, which no op runs) from the last op's output (flat rows) into out [n, out_row]. */
int fn_program_predict(fn_op *ops, int n_ops, const float *x, const fn_run *run, int post, float *out);
/* The backward of ops [hi-1 .. lo] from dy = dL/d(ops[hi-1]'s output); returns ops[lo]'s data gradient (NULL when
 * ops[lo] has none). The ops' weight gradients are overwritten. */
const float *fn_program_backward(fn_op *ops, int lo, int hi, const float *dy, const fn_run *run, int *status);
/* Per-sample losses of the output rows, and dL/d(output) of the mean over `batch` samples (the run's rows, or the
 * global batch a data-parallel rank holds a share of). targets: [n, classes]; weights: [n] or NULL. */
int fn_program_loss_forward(const fn_loss *l, const float *out, const float *targets, const float *weights,
                            const fn_run *run);
int fn_program_loss_backward(const fn_loss *l, const float *out, const float *targets, const float *weights,
                             int64_t batch, const fn_run *run);
int fn_program_update(const fn_update *u, int n_threads);
/* One training step: forward, loss, backward and, when every per-sample loss is finite, the update. *finite
 * says which; the loss array holds the per-sample losses either way. */
int fn_program_train_step(fn_op *ops, int n_ops, const fn_loss *l, const fn_update *u, const float *x,
                          const float *targets, const float *weights, const fn_run *run, int *finite);
/* Scratch floats a run of ops [0, n_ops) needs at `capacity` rows and n_threads threads: forwards alone, or
 * (training) backwards too, whose filter and weight gradients pack operands as deep as the batch. */
int64_t fn_program_workspace(const fn_op *ops, int n_ops, int64_t capacity, int n_threads, int training);
/* The 64-bit key of a tuple of integers below 2^64 (each part one chunk of fastnet._kernels.key64). */
uint64_t fn_key64(const uint64_t *parts, int n_parts);
uint64_t fn_splitmix64(uint64_t z);

#endif
