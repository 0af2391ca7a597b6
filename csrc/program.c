/* The plan run by C (program.h): each op kind's forward and backward, and the runs that chain them. Every kernel
 * here is one fastnet already had; what this file adds is that they run one after another without returning. */
#include "fastnet.h"
#include "internal.h"
#include "program.h"

uint64_t fn_splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t fn_key64(const uint64_t *parts, int n_parts) {
    uint64_t h = 0;
    for (int i = 0; i < n_parts; i++) h = fn_splitmix64(fn_splitmix64(h ^ parts[i]) ^ 1u);
    return h;
}

/* The stream of op's dropout mask at this run's step. */
static uint64_t dropout_stream(const fn_op *op, const fn_run *run) {
    const uint64_t parts[3] = {run->model_id, run->step, op->layer};
    return fn_key64(parts, 3);
}

/* ---- activations after a kernel (and an activation op's) ---- */

static int post_forward(const fn_op *op, float *y, const float *x, int64_t n, int nt) {
    if (op->post == FN_POST_SOFTMAX)
        return fn_softmax_forward(y, x, n * op->out_row / op->channels, op->channels, nt);
    return fn_activation_forward(y, x, n * op->out_row, op->post, op->alpha, nt);
}

static int post_backward(const fn_op *op, float *dz, const float *dy, const float *y, int64_t n, int nt) {
    if (op->post == FN_POST_SOFTMAX)
        return fn_softmax_backward(dz, dy, y, n * op->out_row / op->channels, op->channels, nt);
    return fn_activation_backward(dz, dy, y, n * op->out_row, op->post, op->alpha, nt);
}

/* dL/d(a dense or conv kernel's output) from dy = dL/d(the op's output): through `post`, the ReLU it applied, or
 * the ReLU and the Dropout's mask (read off y: a dropped or non-positive output passes nothing). */
static const float *kernel_gradient(const fn_op *op, const float *dy, const fn_run *run, int *st) {
    const int64_t n = run->n, size = n * op->out_row;
    if (op->relu_backward && op->dropout) {
        *st = fn_dropout_relu_backward(op->dz, dy, op->y, size, op->rate, run->n_threads);
    } else if (op->relu_backward) {
        *st = fn_activation_backward(op->dz, dy, op->y, size, FN_ACT_RELU, 0.0f, run->n_threads);
    } else if (op->post != FN_POST_NONE) {
        *st = post_backward(op, op->dz, dy, op->post_y, n, run->n_threads);
    } else {
        return dy;
    }
    return op->dz;
}

/* The output after `post`, if the op has one. */
static const float *then_post(fn_op *op, const fn_run *run, int *st) {
    if (op->post == FN_POST_NONE) return op->y;
    *st = post_forward(op, op->post_y, op->y, run->n, run->n_threads);
    return op->post_y;
}

/* What an inference forward keeps from the op's weights between runs (a training run's change every step). */
static fn_weights_memo *memo(fn_op *op, const fn_run *run) {
    return run->training || !op->memo.mem ? NULL : &op->memo;
}

static fn_conv2d_shape conv_shape(const fn_op *op, int64_t n) {
    fn_conv2d_shape s = op->conv;
    s.N = n;
    return s;
}

/* ---- one function each way per op kind ---- */

/* Dense ops run one after another in one parallel region (fn_program_forward): op i and the dense ops after it
 * that run on more than one thread each, every one but the last handing its y to the next (no `post` after it).
 * One image through the MLP forked its threads once per layer: 1.1 of its 24 us (2 threads). Returns the end,
 * and the team size (the most threads an op takes). */
static int dense_run_end(const fn_op *ops, int i, int hi, const fn_run *run, int *team) {
    *team = 1;
    int j = i;
    for (; j < hi && ops[j].kind == FN_OP_DENSE && (j == i || ops[j - 1].post == FN_POST_NONE); j++) {
        const fn_op *op = &ops[j];
        const int nt = fn_dense_threads(run->n, op->in_row, op->out_row, op->isa, op->precision, run->n_threads);
        if (j > i && nt < 2) break;
        *team = nt > *team ? nt : *team;
    }
    return j;
}

/* Op's product as a GEMM job, and its epilogue (bias, its ReLU and, training, its Dropout): fn_dense_forward_dropout's,
 * or fn_dense_forward_prepacked's on the weights packed for inference. */
static void dense_job(fn_gemm_job *j, fn_post_ops *e, const fn_op *op, const float *x, const fn_run *run) {
    const int64_t O = op->out_row;
    const int drop = run->training && op->dropout;
    *e = fn_dense_post(op->b, O, op->act, drop ? op->rate : 0.0f, op->seed, drop ? dropout_stream(op, run) : 0,
                       drop ? run->row0 * O : 0);
    fn_dense_job(j, op->y, x, op->w, !run->training ? op->packed : NULL, run->n, op->in_row, O, op->isa,
                 op->precision, run->ws, run->n_threads);
}

/* Dense ops [i, *end) (dense_run_end's) one after another in one region: each thread makes the same job, and each
 * job ends on a barrier, so the next reads a finished output and may reuse the workspace. */
static const float *dense_forward(fn_op *ops, int i, int hi, int *end, const float *x, const fn_run *run, int *st) {
    int team;
    const int j = *end = dense_run_end(ops, i, hi, run, &team);
    for (int k = i; k < j; k++) ops[k].x = k == i ? x : ops[k - 1].y, ops[k].out = ops[k].y;
    fn_barrier bar = FN_BARRIER;
    FN_PARALLEL(team, for (int k = i; k < j; k++) {
        fn_gemm_job job;
        fn_post_ops e;
        dense_job(&job, &e, &ops[k], ops[k].x, run);
        fn_gemm_job_run(&job, &e, &bar);
    });
    *st = FN_OK;
    return ops[j - 1].out = then_post(&ops[j - 1], run, st);
}

static const float *dense_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    const float *dz = kernel_gradient(op, dy, run, st);
    if (*st) return NULL;
    *st = fn_dense_backward(op->dx, op->dw, op->db, dz, op->x, op->w, run->n, op->in_row, op->out_row, op->isa,
                            op->precision, run->ws, run->n_threads);
    return op->dx;
}

static const float *conv_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    const fn_conv2d_shape s = conv_shape(op, run->n);
    *st = fn_conv2d_forward(op->y, x, op->w, op->b, &s, op->act, op->algo, op->isa, op->precision, memo(op, run),
                            run->ws, run->n_threads);
    return *st ? NULL : then_post(op, run, st);
}

static const float *conv_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    const fn_conv2d_shape s = conv_shape(op, run->n);
    const float *dz = kernel_gradient(op, dy, run, st);
    if (*st) return NULL;
    *st = fn_conv2d_backward(op->dx, op->dw, op->db, dz, NULL, NULL, op->x, op->w,
                             op->masks_relu_input ? op->x : NULL, &s, op->algo, op->isa, op->precision, run->ws,
                             run->n_threads);
    return op->dx;
}

static const float *conv_pool_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    const fn_conv2d_shape s = conv_shape(op, run->n);
    *st = fn_conv2d_forward_maxpool(op->y, op->argmax, x, op->w, op->b, &s, op->algo, op->isa, op->precision,
                                    memo(op, run), run->ws, run->n_threads);
    return op->y;
}

static const float *conv_pool_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    const fn_conv2d_shape s = conv_shape(op, run->n);
    *st = fn_conv2d_backward(op->dx, op->dw, op->db, dy, op->argmax, op->y, op->x, op->w,
                             op->masks_relu_input ? op->x : NULL, &s, op->algo, op->isa, op->precision, run->ws,
                             run->n_threads);
    return op->dx;
}

static const float *pool_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    const fn_conv2d_shape *g = &op->conv;
    const int64_t *p = op->pool;
    *st = fn_maxpool2d_forward(op->y, op->argmax, x, run->n, g->H, g->W, g->C, p[0], p[1], p[2], p[3], p[4], p[5],
                               g->OH, g->OW, run->n_threads);
    return op->y;
}

static const float *pool_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    const fn_conv2d_shape *g = &op->conv;
    const int64_t *p = op->pool;
    *st = fn_maxpool2d_backward(op->dx, dy, op->argmax, op->masks_relu_input ? op->y : NULL, run->n, g->H, g->W,
                                g->C, p[0], p[1], p[2], p[3], p[4], p[5], g->OH, g->OW, run->n_threads);
    return op->dx;
}

static const float *activation_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    *st = post_forward(op, op->y, x, run->n, run->n_threads);
    return op->y;
}

static const float *activation_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    *st = post_backward(op, op->dx, dy, op->y, run->n, run->n_threads);
    return op->dx;
}

/* A dropout op is the identity at inference, and with rate 0. */
static int dropout_drops(const fn_op *op, const fn_run *run) { return run->training && op->rate != 0.0f; }

static const float *dropout_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    if (!dropout_drops(op, run)) return x;
    const int64_t row = op->out_row;
    *st = fn_dropout_forward(op->y, op->keep, x, run->n * row, op->rate, op->seed, dropout_stream(op, run),
                             run->row0 * row, run->n_threads);
    return op->y;
}

static const float *dropout_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    if (!dropout_drops(op, run)) return dy;
    *st = fn_dropout_backward(op->dx, dy, op->keep, run->n * op->out_row, op->rate, run->n_threads);
    return op->dx;
}

/* (H, W, C) rows to (C, H, W) rows, and back: a transpose of each sample's (H*W) x C matrix. */
static void transpose_rows(float *dst, const float *src, int64_t n, int64_t rows, int64_t cols, int n_threads) {
    FN_PARALLEL_FOR(FN_ELEMENT_THREADS(n * rows * cols), i, n, {
        const float *s = src + i * rows * cols;
        float *d = dst + i * rows * cols;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) d[c * rows + r] = s[r * cols + c];
    });
}

static const float *to_channels_first_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    const fn_conv2d_shape *g = &op->conv;
    transpose_rows(op->y, x, run->n, g->H * g->W, g->C, run->n_threads);
    *st = FN_OK;
    return op->y;
}

static const float *to_channels_first_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    const fn_conv2d_shape *g = &op->conv;
    transpose_rows(op->dx, dy, run->n, g->C, g->H * g->W, run->n_threads);
    *st = FN_OK;
    return op->dx;
}

static const float *identity_forward(fn_op *op, const float *x, const fn_run *run, int *st) {
    (void)op, (void)run, (void)st;
    return x;
}

static const float *identity_backward(fn_op *op, const float *dy, const fn_run *run, int *st) {
    (void)op, (void)run, (void)st;
    return dy;
}

typedef const float *(*op_pass)(fn_op *op, const float *in, const fn_run *run, int *st);
/* The forward of ops[i] and of the ops after it (before hi) that it runs with; their end in *end. */
typedef const float *(*ops_pass)(fn_op *ops, int i, int hi, int *end, const float *in, const fn_run *run, int *st);
static const struct {
    op_pass forward, backward;
    ops_pass forward_with_next;  /* instead of forward: the op runs with the ops after it */
    int data_gradient_always;    /* the backward runs for the first op too: it writes weight gradients */
} OPS[FN_OP_KINDS] = {
    [FN_OP_DENSE] = {NULL, dense_backward, dense_forward, 1},
    [FN_OP_CONV2D] = {conv_forward, conv_backward, NULL, 1},
    [FN_OP_CONV2D_MAXPOOL] = {conv_pool_forward, conv_pool_backward, NULL, 1},
    [FN_OP_MAXPOOL2D] = {pool_forward, pool_backward, NULL, 0},
    [FN_OP_ACTIVATION] = {activation_forward, activation_backward, NULL, 0},
    [FN_OP_DROPOUT] = {dropout_forward, dropout_backward, NULL, 0},
    [FN_OP_TO_CHANNELS_FIRST] = {to_channels_first_forward, to_channels_first_backward, NULL, 0},
    [FN_OP_IDENTITY] = {identity_forward, identity_backward, NULL, 0},
};

/* ---- runs ---- */

const float *fn_program_forward(fn_op *ops, int lo, int hi, const float *x, const fn_run *run, int *status) {
    *status = FN_OK;
    for (int i = lo, j; i < hi; i = j) {
        fn_op *op = &ops[i];
        if (OPS[op->kind].forward_with_next) {
            x = OPS[op->kind].forward_with_next(ops, i, hi, &j, x, run, status);
        } else {
            j = i + 1;
            op->x = x;
            x = op->out = OPS[op->kind].forward(op, x, run, status);
        }
        if (*status) return NULL;
    }
    return x;
}

int fn_program_predict(fn_op *ops, int n_ops, const float *x, const fn_run *run, int post, float *out) {
    int st;
    const float *y = fn_program_forward(ops, 0, n_ops, x, run, &st);
    if (st) return st;
    const fn_op *last = &ops[n_ops - 1];
    if (post == FN_POST_NONE) {
        memcpy(out, y, (size_t)(run->n * last->out_row) * sizeof(float));
        return FN_OK;
    }
    const fn_op final = {.post = post, .out_row = last->out_row, .channels = last->out_row};
    return post_forward(&final, out, y, run->n, run->n_threads);
}

const float *fn_program_backward(fn_op *ops, int lo, int hi, const float *dy, const fn_run *run, int *status) {
    *status = FN_OK;
    for (int i = hi - 1; i >= lo; i--) {
        fn_op *op = &ops[i];
        if (i == 0 && !OPS[op->kind].data_gradient_always) return NULL;  /* nothing to pass back, no weights */
        dy = OPS[op->kind].backward(op, dy, run, status);
        if (*status) return NULL;
    }
    return dy;
}

int fn_program_loss_forward(const fn_loss *l, const float *out, const float *targets, const float *weights,
                            const fn_run *run) {
    if (l->kind == FN_LOSS_SOFTMAX_XENT)  /* sample weights are folded into the targets (fastnet.losses) */
        return fn_softmax_xent_forward(l->probs, l->loss, out, targets, run->n, l->classes, run->n_threads);
    return fn_pointwise_loss_forward(l->kind, l->loss, l->probs, out, targets, weights, run->n, l->classes,
                                     run->n_threads);
}

int fn_program_loss_backward(const fn_loss *l, const float *out, const float *targets, const float *weights,
                             int64_t batch, const fn_run *run) {
    const float scale = 1.0f / (float)batch;
    if (l->kind == FN_LOSS_SOFTMAX_XENT)
        return fn_softmax_xent_backward(l->dout, l->probs, targets, run->n, l->classes, scale, run->n_threads);
    return fn_pointwise_loss_backward(l->kind, l->dout, out, l->probs, targets, weights, run->n, l->classes, scale,
                                      run->n_threads);
}

int fn_program_update(const fn_update *u, int n_threads) {
    int st = FN_OK;
    if (u->size > 0) {
        switch (u->kind) {
        case FN_UPDATE_SGD:
            st = fn_sgd_update(u->p, u->s0, u->g, u->size, u->lr, u->h0, u->h1 != 0.0f, n_threads);
            break;
        case FN_UPDATE_RMSPROP:
            st = fn_rmsprop_update(u->p, u->s0, u->g, u->size, u->lr, u->h0, u->h1, n_threads);
            break;
        case FN_UPDATE_ADADELTA:
            st = fn_adadelta_update(u->p, u->s0, u->s1, u->g, u->size, u->lr, u->h0, u->h1, n_threads);
            break;
        case FN_UPDATE_ADAM:
            st = fn_adam_update(u->p, u->s0, u->s1, u->g, u->size, u->lr, u->h0, u->h1, u->h2, u->t, n_threads);
            break;
        default:
            return FN_EINVAL;
        }
    }
    if (st == FN_OK)
        for (int i = 0; i < 2; i++)
            if (u->counters[i]) *u->counters[i] += 1;
    return st;
}

int fn_program_train_step(fn_op *ops, int n_ops, const fn_loss *l, const fn_update *u, const float *x,
                          const float *targets, const float *weights, const fn_run *run, int *finite) {
    int st;
    *finite = 0;
    const float *out = fn_program_forward(ops, 0, n_ops, x, run, &st);
    if (st) return st;
    if ((st = fn_program_loss_forward(l, out, targets, weights, run))) return st;
    if (fn_first_nonfinite(l->loss, run->n, run->n_threads) >= 0) return FN_OK;  /* no update: weights kept */
    *finite = 1;
    if ((st = fn_program_loss_backward(l, out, targets, weights, run->n, run))) return st;
    fn_program_backward(ops, 0, n_ops, l->dout, run, &st);
    if (st) return st;
    return fn_program_update(u, run->n_threads);
}

int64_t fn_program_workspace(const fn_op *ops, int n_ops, int64_t capacity, int n_threads, int training) {
    int64_t most = 0;
    for (int i = 0; i < n_ops; i++) {
        const fn_op *op = &ops[i];
        int64_t need = 0;
        fn_conv2d_shape s = conv_shape(op, capacity);
        switch (op->kind) {
        case FN_OP_DENSE: /* the forward's GEMM (room for its weights' panels, and for its rows' bfloat16 slots
                           * when the weights come prepacked), and the backward's two */
            need = training ? fn_dense_workspace(capacity, op->in_row, op->out_row, op->isa, op->precision)
                            : fn_gemm_workspace(capacity, op->out_row, op->in_row, op->isa, op->precision);
            break;
        case FN_OP_CONV2D:
        case FN_OP_CONV2D_MAXPOOL:
            need = fn_conv2d_workspace(&s, op->algo, op->isa, op->precision, n_threads);
            if (training)
                need = fn_max64(need, fn_conv2d_backward_workspace(&s, op->kind == FN_OP_CONV2D_MAXPOOL, op->algo,
                                                                   op->isa, op->precision, n_threads));
            break;
        default:
            break;
        }
        most = fn_max64(most, need);
    }
    return most;
}
