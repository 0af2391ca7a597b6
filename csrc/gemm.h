#ifndef FN_GEMM_H
#define FN_GEMM_H
#include <stdint.h>

/* C[M,N] = alpha * op(A) * op(B) + beta * C, row-major.
 *   op(A) is M x K: A is [M, lda] (trans_a = 0) or [K, lda] (trans_a = 1)
 *   op(B) is K x N: B is [K, ldb] (trans_b = 0) or [N, ldb] (trans_b = 1)
 *   C is [M, ldc]. With beta == 0, C is never read (it may hold NaN).
 * Packed panels + a register-blocked micro-kernel: isa is FN_ISA_AVX512 (8x32), FN_ISA_AVX2 (6x16, FMA) or
 * FN_ISA_GENERIC (4x16 portable C), or FN_ISA_AVX512_BF16 / FN_ISA_AMX_BF16 (FN_ISA_AVX512, with an 8x32
 * VDPBF16PS / 32x32 AMX kernel for FN_BFLOAT16 products), and must be at most fn_gemm_cpu_max_isa().
 * Every element of C is owned by one thread and summed in a fixed order: bit-identical for any n_threads.
 * Reference: tests/reference.py gemm; tests: tests/test_kernels.py test_gemm*, tests/test_determinism.py. */
int fn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int isa, int precision,
            float *ws,
            int n_threads);
int64_t fn_gemm_workspace(int64_t M, int64_t N, int64_t K, int isa, int precision);

/* For many products with the same B (inference: the weights of every batch): fn_gemm_pack packs op(B) (K x N)
 * into bp, fn_gemm_packed_b_size(K, N) floats, for one ISA path; fn_gemm_prepacked then multiplies without
 * packing again, with the same results as fn_gemm. A packing is only valid for the ISA path it was made for. */
int fn_gemm_pack(float *bp, const float *B, int64_t ldb, int trans_b, int64_t K, int64_t N, int isa, int precision,
                 int n_threads);
int fn_gemm_prepacked(int trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *bp, float beta, float *C, int64_t ldc, int isa, int precision, float *ws,
                      int n_threads);
/* fn_gemm_prepacked's workspace (bfloat16 operands: op(A) converted once; else none). */
int64_t fn_gemm_prepacked_workspace(int64_t M, int64_t K, int isa, int precision);

int64_t fn_gemm_packed_b_size(int64_t K, int64_t N);

/* How fn_gemm splits C (M x N, depth K) among n_threads: returns the number of tiles and, where bounds is not NULL,
 * writes tile t's rows [m0, m1) and columns [j0, j1) at bounds[4t .. 4t+3], in the order the threads' static
 * schedule takes them (contiguous runs, one per thread). A product of a few rows whose threads add K blocks side by
 * side (B read in place) still reports its tiles of columns. For tests of the split; no work is done. */
int64_t fn_gemm_tiles(int trans_b, int64_t M, int64_t N, int64_t K, int isa, int precision, int n_threads,
                      int64_t *bounds);

/* The best FN_ISA_* path this CPU and this build support. */
int fn_gemm_cpu_max_isa(void);

#endif
