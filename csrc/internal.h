/* Private helpers shared by the kernel files; not part of the C API. */
#ifndef FN_INTERNAL_H
#define FN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
static inline int fn_thread_id(void) { return omp_get_thread_num(); }
#else
static inline int fn_thread_id(void) { return 0; }
#endif

static inline int64_t fn_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fn_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t fn_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t fn_round_up(int64_t a, int64_t b) { return fn_ceil_div(a, b) * b; }

/* Workspace carving: every slice is 64-byte aligned; FN_WS_PAD floats of slack per slice. */
#define FN_WS_PAD 16
static inline float *fn_align64(float *p) {
    uintptr_t u = (uintptr_t)p;
    return (float *)((u + 63u) & ~(uintptr_t)63u);
}

/* Register-blocked micro-kernel: C[0:mr, 0:nr] (=|+=) Ap[kc x mr] . Bp[kc x nr].
 * The product is always summed from zero and then stored or added, so an edge tile computed through a
 * temporary buffer rounds exactly like a full tile (results never depend on the tiling). */
typedef void (*fn_ukernel_fn)(int64_t kc, const float *restrict a, const float *restrict b,
                              float *restrict c, int64_t ldc, int accumulate);
typedef struct {
    int mr, nr;
    fn_ukernel_fn kernel;
    const char *name;
} fn_ukernel;

/* Largest micro-tile of any ISA path; workspace queries use these so they never depend on the ISA. */
#define FN_MR_MAX 8
#define FN_NR_MAX 32
#define FN_KC 256
#define FN_MC 128

const fn_ukernel *fn_gemm_ukernel(void);
const fn_ukernel *fn_ukernel_avx512(void); /* NULL when the compiler cannot build it */
const fn_ukernel *fn_ukernel_avx2(void);

/* Size in floats of a full packing of op(B) (K x N). */
int64_t fn_gemm_packed_b_size(int64_t K, int64_t N);
/* Size in floats of one thread's A-packing buffer. */
int64_t fn_gemm_packed_a_size(void);

/* Pack all of op(B) (K x N) into KC-blocks of NR-wide panels. Panels [q0, q1) only (for parallel packing). */
void fn_gemm_pack_b(const fn_ukernel *uk, float *restrict bp, const float *restrict b, int64_t ldb,
                    int trans_b, int64_t K, int64_t N, int64_t q0, int64_t q1);

/* Single-threaded C = alpha op(A) op(B_packed) + beta C, rows [m0, m1) and NR-panels [q0, q1) of C only.
 * ap is one packed-A buffer (fn_gemm_packed_a_size floats, 64-byte aligned). */
void fn_gemm_tile(const fn_ukernel *uk, int64_t m0, int64_t m1, int64_t q0, int64_t q1, int64_t N,
                  int64_t K, float alpha, const float *a, int64_t lda, int trans_a, const float *bp,
                  float beta, float *c, int64_t ldc, float *ap);

/* Apply bias (may be NULL) and an activation to rows x cols of y (row stride ldy), in place. */
void fn_bias_act_rows(float *y, int64_t ldy, const float *bias, int64_t rows, int64_t cols, int act);

#endif
