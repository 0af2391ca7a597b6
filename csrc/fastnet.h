/* fastnet C kernels: the umbrella header.
 *
 * Conventions shared by every kernel (see each family's header for shapes):
 *  - float32, C-contiguous arrays, explicit int64_t sizes; inputs are const, outputs come first.
 *  - Activations use NHWC internally; Conv2D kernels use Keras's (KH, KW, C, OC) layout.
 *  - Backward kernels OVERWRITE their gradient outputs (no hidden +=, no zero-grad pass needed).
 *  - Kernels never allocate, print or exit. Scratch memory comes from a caller-owned workspace whose
 *    size in floats is returned by the matching fn_*_workspace() query.
 *  - Each kernel takes n_threads; results are bit-identical for any n_threads (reductions over the
 *    batch use a fixed chunking that does not depend on the thread count).
 *  - No kernel reads mutable global state: the instruction-set path (isa) and the convolution algorithm are
 *    arguments, chosen by the caller once per call (the Cython layer reads the user's settings under the GIL).
 *  - Arguments are trusted: the Cython layer validates them. A non-zero status means a bad enum.
 *  - Each family's header names its float64 reference (tests/reference.py, same names without fn_) and its
 *    tests. */
#ifndef FASTNET_H
#define FASTNET_H

#include <stdint.h>

enum { FN_OK = 0, FN_EINVAL = 1, FN_EUNSUPPORTED = 2 };

/* Activation codes used by the fused epilogues and the activation kernels. */
enum { FN_ACT_LINEAR = 0, FN_ACT_RELU = 1, FN_ACT_SIGMOID = 2, FN_ACT_TANH = 3 };

/* Instruction-set paths of the GEMM micro-kernel (fn_gemm_cpu_max_isa says which this CPU has). FN_ISA_AVX512_BF16
 * is FN_ISA_AVX512 whose bfloat16 products run natively on VDPBF16PS; FN_ISA_AMX_BF16 runs them on AMX tiles
 * (TDPBF16PS) instead. Their float32 products are FN_ISA_AVX512's. Every kernel with products takes the path
 * (isa) and, beside it, the precision of their operands. */
enum { FN_ISA_GENERIC = 0, FN_ISA_AVX2 = 1, FN_ISA_AVX512 = 2, FN_ISA_AVX512_BF16 = 3, FN_ISA_AMX_BF16 = 4 };

/* The precision of a kernel's product operands. FN_BFLOAT16 is Keras's mixed_bfloat16: each element of both GEMM
 * operands (after im2col or the Winograd transforms) is rounded to the nearest bfloat16, ties to even, as it is
 * packed; the products (exact in float32: 8-bit significands) are accumulated in float32 by the path's
 * micro-kernel: one k at a time with float32 FMAs (the portable path), or a pair of k per VDPBF16PS on
 * FN_ISA_AVX512_BF16 or 16 pairs per TDPBF16PS on FN_ISA_AMX_BF16 (the native paths: the same roundings of the
 * operands, the accumulation rounded in another order, so their last bits differ). Everything else (bias,
 * activations, transforms, reductions) stays float32. With FN_FLOAT32 every result is the float32 path's, bit for
 * bit. */
enum { FN_FLOAT32 = 0, FN_BFLOAT16 = 1 };

#include "gemm.h"
#include "dense.h"
#include "conv2d.h"
#include "maxpool2d.h"
#include "activations.h"
#include "softmax_xent.h"
#include "losses.h"
#include "dropout.h"
#include "optim.h"
#include "batch.h"
#include "program.h"

/* 1 when the library was built with OpenMP. */
int fn_have_openmp(void);
/* OpenMP's current maximum team size for the calling thread (omp_get_max_threads; 1 without OpenMP): what
 * OMP_NUM_THREADS and threadpoolctl's limits set. */
int fn_omp_max_threads(void);

#endif
