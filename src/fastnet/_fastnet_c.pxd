# Declarations of the C kernel API (csrc/fastnet.h); the one place Cython learns them.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

# numpy's C headers, included first by _kernels.pyx, bring <complex.h>, whose macro I would rewrite the dense
# kernels' parameter I (input features) in csrc/dense.h.
cdef extern from *:
    """
    #undef I
    """

cdef extern from "fastnet.h" nogil:
    enum:
        FN_OK
        FN_EINVAL
        FN_EUNSUPPORTED
        FN_ACT_LINEAR
        FN_ACT_RELU
        FN_ACT_SIGMOID
        FN_ACT_TANH
        FN_ISA_GENERIC
        FN_ISA_AVX2
        FN_ISA_AVX512
        FN_ISA_AVX512_BF16
        FN_ISA_AMX_BF16
        FN_FLOAT32
        FN_BFLOAT16
        FN_CONV_AUTO
        FN_CONV_IM2COL
        FN_CONV_WINOGRAD
        FN_CONV_DIRECT
        FN_LOSS_SQUARED
        FN_LOSS_ABSOLUTE
        FN_LOSS_SIGMOID_XENT

    int fn_have_openmp()
    int fn_omp_max_threads()

    int fn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int isa, int precision, float *ws,
                int n_threads)
    int64_t fn_gemm_workspace(int64_t M, int64_t N, int64_t K, int isa, int precision)
    int64_t fn_gemm_prepacked_workspace(int64_t M, int64_t K, int isa, int precision)
    int64_t fn_gemm_packed_b_size(int64_t K, int64_t N)
    int fn_gemm_pack(float *bp, const float *B, int64_t ldb, int trans_b, int64_t K, int64_t N, int isa, int precision,
                     int n_threads)
    int64_t fn_gemm_tiles(int trans_b, int64_t M, int64_t N, int64_t K, int isa, int precision, int n_threads,
                          int64_t *bounds)
    int fn_gemm_cpu_max_isa()

    int fn_dense_forward_dropout(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t I,
                                 int64_t O, int act, float rate, uint64_t seed, uint64_t stream, uint64_t first,
                                 int isa, int precision, float *ws, int n_threads)
    int fn_dense_forward_prepacked(float *y, const float *x, const float *wp, const float *b, int64_t N,
                                   int64_t I, int64_t O, int act, int isa, int precision, float *ws, int n_threads)
    int fn_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int64_t N, int64_t I, int64_t O, int isa, int precision, float *ws, int n_threads)
    int64_t fn_dense_workspace(int64_t N, int64_t I, int64_t O, int isa, int precision)
    int fn_bias_backward(float *db, const float *dy, int64_t R, int64_t C, int n_threads)

    ctypedef struct fn_conv2d_shape:
        int64_t N, H, W, C, OC, KH, KW, SH, SW, PT, PL, OH, OW
    int fn_conv2d_resolve_algo(const fn_conv2d_shape *s, int algo, int isa, int precision)
    ctypedef struct fn_weights_memo:
        float *mem
        int made
    int64_t fn_conv2d_memo_size(const fn_conv2d_shape *s, int algo, int isa, int precision)
    int fn_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                          const fn_conv2d_shape *s, int act, int algo, int isa, int precision, fn_weights_memo *memo,
                          float *ws, int n_threads)
    int fn_conv2d_forward_maxpool(float *y, int32_t *argmax, const float *x, const float *w, const float *b,
                                  const fn_conv2d_shape *s, int algo, int isa, int precision, fn_weights_memo *memo,
                                  float *ws, int n_threads)
    int fn_conv2d_forward_maxpool_fits(const fn_conv2d_shape *s, int algo, int isa, int precision)
    int fn_conv2d_backward_data(float *dx, const float *dy, const float *w, const float *relu_x,
                                const fn_conv2d_shape *s, int algo, int isa, int precision, float *ws, int n_threads)
    int fn_conv2d_backward_filter(float *dw, float *db, const float *dy, const float *x,
                                  const fn_conv2d_shape *s, int algo, int isa, int precision, float *ws, int n_threads)
    int fn_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const int32_t *argmax,
                           const float *pooled, const float *x, const float *w, const float *relu_x,
                           const fn_conv2d_shape *s, int algo, int isa, int precision, float *ws, int n_threads)
    int64_t fn_conv2d_backward_workspace(const fn_conv2d_shape *s, int pooled, int algo, int isa, int precision,
                                         int n_threads)
    int64_t fn_conv2d_workspace(const fn_conv2d_shape *s, int algo, int isa, int precision, int n_threads)

    int fn_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t N, int64_t H, int64_t W,
                             int64_t C, int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT,
                             int64_t PL, int64_t OH, int64_t OW, int n_threads)
    int fn_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, const float *y, int64_t N,
                              int64_t H, int64_t W, int64_t C, int64_t PH, int64_t PW, int64_t SH, int64_t SW,
                              int64_t PT, int64_t PL, int64_t OH, int64_t OW, int n_threads)

    int fn_activation_forward(float *y, const float *x, int64_t n, int act, float alpha, int n_threads)
    int fn_activation_backward(float *dx, const float *dy, const float *y, int64_t n, int act, float alpha,
                               int n_threads)
    int fn_activation_code(const char *name)
    const char *fn_activation_name(int act)
    int fn_softmax_forward(float *y, const float *x, int64_t N, int64_t C, int n_threads)
    int fn_softmax_backward(float *dx, const float *dy, const float *y, int64_t N, int64_t C, int n_threads)
    int64_t fn_first_nonfinite(const float *x, int64_t n, int n_threads)
    int fn_bias_act_forward(float *y, const float *b, int64_t R, int64_t C, int act, int n_threads)

    int fn_softmax_xent_forward(float *probs, float *loss, const float *logits, const float *targets,
                                int64_t N, int64_t C, int n_threads)
    int fn_softmax_xent_backward(float *dlogits, const float *probs, const float *targets, int64_t N,
                                 int64_t C, float scale, int n_threads)
    int fn_pointwise_loss_forward(int kind, float *loss, float *probs, const float *out, const float *targets,
                                  const float *w, int64_t N, int64_t C, int n_threads)
    int fn_pointwise_loss_backward(int kind, float *dout, const float *out, const float *probs,
                                   const float *targets, const float *w, int64_t N, int64_t C, float scale,
                                   int n_threads)

    int fn_dropout_forward(float *y, uint8_t *keep, const float *x, int64_t n, float rate, uint64_t seed,
                           uint64_t stream, uint64_t first, int n_threads)
    int fn_dropout_backward(float *dx, const float *dy, const uint8_t *keep, int64_t n, float rate,
                            int n_threads)
    int fn_dropout_relu_backward(float *dx, const float *dy, const float *y, int64_t n, float rate, int n_threads)
    int fn_random_uniform(float *u, int64_t n, uint64_t seed, uint64_t stream, uint64_t first,
                          int n_threads)

    int fn_sgd_update(float *p, float *v, const float *g, int64_t n, float lr, float momentum, int nesterov,
                      int n_threads)
    int fn_rmsprop_update(float *p, float *a, const float *g, int64_t n, float lr, float rho, float eps,
                          int n_threads)
    int fn_adadelta_update(float *p, float *a, float *d, const float *g, int64_t n, float lr, float rho,
                           float eps, int n_threads)
    int fn_adam_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1,
                       float beta2, float eps, int64_t t, int n_threads)
    int fn_gather_rows(void *dst, const void *src, const int64_t *idx, int64_t n, int64_t row_bytes, int n_threads)

    # The plan run by C (csrc/program.h).
    enum:
        FN_OP_DENSE
        FN_OP_CONV2D
        FN_OP_CONV2D_MAXPOOL
        FN_OP_MAXPOOL2D
        FN_OP_ACTIVATION
        FN_OP_DROPOUT
        FN_OP_TO_CHANNELS_FIRST
        FN_OP_IDENTITY
        FN_POST_NONE
        FN_POST_SOFTMAX
        FN_LOSS_SOFTMAX_XENT
        FN_UPDATE_SGD
        FN_UPDATE_RMSPROP
        FN_UPDATE_ADADELTA
        FN_UPDATE_ADAM

    ctypedef struct fn_op:
        int kind
        int64_t in_row, out_row
        int isa, precision, algo, act, post
        float alpha
        int64_t channels
        int relu_backward, masks_relu_input, dropout
        float rate
        uint64_t seed, layer
        fn_conv2d_shape conv
        int64_t pool[6]
        const float *w
        const float *b
        float *dw
        float *db
        const float *packed
        fn_weights_memo memo
        float *y
        float *post_y
        int32_t *argmax
        uint8_t *keep
        float *dz
        float *dx
        const float *x
        const float *out

    ctypedef struct fn_run:
        int64_t n
        int training
        uint64_t model_id, step, row0
        float *ws
        int n_threads

    ctypedef struct fn_loss:
        int kind
        int64_t classes
        float *probs
        float *loss
        float *dout

    ctypedef struct fn_update:
        int kind
        float *p
        float *s0
        float *s1
        const float *g
        int64_t size
        float lr, h0, h1, h2
        int64_t t
        int64_t *counters[2]

    const float *fn_program_forward(fn_op *ops, int lo, int hi, const float *x, const fn_run *run, int *status)
    int fn_program_predict(fn_op *ops, int n_ops, const float *x, const fn_run *run, int post, float *out)
    const float *fn_program_backward(fn_op *ops, int lo, int hi, const float *dy, const fn_run *run, int *status)
    int fn_program_loss_forward(const fn_loss *l, const float *out, const float *targets, const float *weights,
                                const fn_run *run)
    int fn_program_loss_backward(const fn_loss *l, const float *out, const float *targets, const float *weights,
                                 int64_t batch, const fn_run *run)
    int fn_program_update(const fn_update *u, int n_threads)
    int fn_program_train_step(fn_op *ops, int n_ops, const fn_loss *l, const fn_update *u, const float *x,
                              const float *targets, const float *weights, const fn_run *run, int *finite)
    int64_t fn_program_workspace(const fn_op *ops, int n_ops, int64_t capacity, int n_threads, int training)
    uint64_t fn_key64(const uint64_t *parts, int n_parts)
    uint64_t fn_splitmix64(uint64_t z)
