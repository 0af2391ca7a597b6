/* GEMM's packing: op(B) into K-blocks of NR-wide panels, op(A) into a micro-kernel's panels or slots (float32,
 * rounded bfloat16, or bfloat16 pairs along K), each in the orientation its source has so the copies vectorize.
 * gemm.c's tile loop and jobs call these; the formats are described in internal.h. */
#include <string.h>

#include "fastnet.h"
#include "internal.h"

FN_VECTOR_CLONES void fn_round_bf16_array(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = fn_round_bf16(x[i]);
}

int64_t fn_gemm_kc(int64_t K) {
    const int64_t blocks = fn_max64(1, fn_ceil_div(K, FN_KC_MAX));
    return fn_round_up(fn_ceil_div(K, blocks), 8);
}

int64_t fn_gemm_packed_b_size(int64_t K, int64_t N) { return K * fn_round_up(N, FN_NR_MAX) + FN_WS_PAD; }

int fn_gemm_b_is_packed(const fn_ukernel *uk, int trans_b, int64_t N, int64_t ldb) {
    return uk->bf16 == FN_BF16_NONE && !trans_b && N == uk->nr && ldb == uk->nr; /* bfloat16 operands are rounded as packed */
}

#define FN_PACK_PAIR_ROWS 16 /* pair rows of a transposed B panel packed per block */

/* One B panel as bfloat16 pairs: slot (p, j) holds rows k0 + 2p and k0 + 2p + 1 of column j0 + j, zero past K and
 * past N. Rows of b are contiguous along j (trans_b = 0: the loop over j vectorizes), columns along k (trans_b). */
FN_VECTOR_CLONES static void pack_b_pairs(float *restrict dst, const float *restrict b, int64_t ldb, int trans_b,
                                          int64_t k0, int64_t kcb, int64_t j0, int64_t jn, int nr) {
    const int64_t pairs = (kcb + 1) / 2, odd = kcb % 2;
    if (!trans_b) {
        for (int64_t p = 0; p < pairs; p++) {
            float *restrict d = dst + p * nr;
            const float *lo = b + (k0 + 2 * p) * ldb + j0, *hi = lo + ldb;
            if (odd && p == pairs - 1)
                for (int64_t j = 0; j < jn; j++) d[j] = fn_bf16_pair(lo[j], 0.0f);
            else
                for (int64_t j = 0; j < jn; j++) d[j] = fn_bf16_pair(lo[j], hi[j]);
            for (int64_t j = jn; j < nr; j++) d[j] = 0.0f;
        }
        return;
    }
    /* Blocks of FN_PACK_PAIR_ROWS pair rows: the block of the panel (2 KB) stays in L1 while nr columns fill it
     * (down a whole K block one column at a time, each pair went to another line of a 32 KB panel: 1.6 ns per
     * element on a 512 x 784 W^T, against 0.5-0.8 so, one thread, 2-core EPYC). */
    const int64_t whole = kcb / 2; /* pairs with both halves inside the block */
    for (int64_t p0 = 0; p0 < pairs; p0 += FN_PACK_PAIR_ROWS) {
        const int64_t p1 = fn_min64(pairs, p0 + FN_PACK_PAIR_ROWS), pw = fn_min64(p1, whole);
        for (int64_t j = 0; j < nr; j++) {
            const float *col = b + (j0 + j) * ldb + k0;
            if (j >= jn) {
                for (int64_t p = p0; p < p1; p++) dst[p * nr + j] = 0.0f;
                continue;
            }
            for (int64_t p = p0; p < pw; p++) dst[p * nr + j] = fn_bf16_pair(col[2 * p], col[2 * p + 1]);
            if (pw < p1) dst[pw * nr + j] = fn_bf16_pair(col[2 * pw], 0.0f); /* an odd K's last pair */
        }
    }
}

/* `panels` whole panels of a row-major B's K block (kcb rows of src, ldb apart) into dst, panels kcb * nr floats
 * apart, row by row: each row's floats for the panels read as one run, its 16 or 32 a panel copied by moves of a
 * size the compiler knows. Panel by panel, each row of B was a 64-byte read 2 KB past the last (the MLP's 784 x 512
 * weights), by a memcpy of a run-time size that called into libc (6.8 % of an MLP training step under perf, 2
 * threads). All of a thread's panels a row, its stores went to as many panels kcb * nr floats apart: 32 KB where kcb
 * is 512, one L1 set for all, and the 128 x 512 x 512 forward ran 6 % slower. FN_COPY_GROUP panels a row (2 to 8
 * measured alike): the MLP's forward products 1.02-1.03x at 1 and 2 threads; at 1 thread 0.95x and 0.98x OpenBLAS
 * before, 0.97x and 1.00x after (2-core EPYC, AVX2). */
#define FN_COPY_GROUP 4
FN_VECTOR_CLONES static void copy_panels(float *restrict dst, const float *restrict src, int64_t ldb, int64_t kcb,
                                         int64_t panels, int nr) {
    for (int64_t k = 0; k < kcb; k++, src += ldb, dst += nr) {
        if (nr == 16)
            for (int64_t q = 0; q < panels; q++) memcpy(dst + q * kcb * 16, src + q * 16, sizeof(float) * 16);
        else if (nr == 32)
            for (int64_t q = 0; q < panels; q++) memcpy(dst + q * kcb * 32, src + q * 32, sizeof(float) * 32);
        else
            for (int64_t q = 0; q < panels; q++) memcpy(dst + q * kcb * nr, src + q * nr, sizeof(float) * nr);
    }
}

void fn_gemm_pack_b_panels(float *restrict dst, const float *restrict b, int64_t ldb, int64_t kcb, int64_t jn,
                           int nr) {
    const int64_t whole = jn / nr;
    if (whole) copy_panels(dst, b, ldb, kcb, whole, nr);
    if (jn == whole * nr) return;
    dst += whole * kcb * nr, b += whole * nr, jn -= whole * nr;
    memset(dst, 0, sizeof(float) * kcb * nr);
    for (int64_t k = 0; k < kcb; k++) memcpy(dst + k * nr, b + k * ldb, sizeof(float) * jn);
}

void fn_gemm_pack_bt_panels(const fn_ukernel *uk, float *restrict dst, const float *restrict b, int64_t ldb,
                            int64_t kcb, int64_t jn) {
    const int nr = uk->nr;
    for (int64_t j0 = 0; j0 < jn; j0 += nr, dst += kcb * nr, b += nr * ldb) {
        const int64_t n = fn_min64(nr, jn - j0);
        if (n < nr) memset(dst, 0, sizeof(float) * kcb * nr);
        /* whole 8 x 8 blocks in registers where the kernel has a transposer, the rest element by element */
        const int64_t k8 = uk->pack_bt && uk->bf16 == FN_BF16_NONE && n == nr ? kcb / 8 * 8 : 0;
        if (k8) uk->pack_bt(dst, b, ldb, k8, nr);
        for (int64_t j = 0; j < n; j++)
            for (int64_t k = k8; k < kcb; k++) dst[k * nr + j] = b[j * ldb + k];
    }
}

void fn_gemm_pack_b(const fn_ukernel *uk, float *restrict bp, const float *restrict b, int64_t ldb,
                    int trans_b, int64_t K, int64_t N, int64_t q0, int64_t q1) {
    const int nr = uk->nr;
    const int64_t npad = fn_round_up(N, nr), kc = fn_gemm_kc(K);
    for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = fn_min64(kc, K - pc);
        int64_t q = q0;
        if (!trans_b && uk->bf16 == FN_BF16_NONE) { /* the whole panels row by row (copy_panels), then the rest */
            for (const int64_t whole = fn_min64(q1, N / nr); q < whole;) {
                const int64_t end = fn_min64(whole, q + FN_COPY_GROUP);
                copy_panels(bp + pc * npad + q * kcb * nr, b + pc * ldb + q * nr, ldb, kcb, end - q, nr);
                q = end;
            }
        }
        for (; q < q1; q++) {
            float *dst = bp + pc * npad + q * kcb * nr;
            const int64_t j0 = q * nr, jn = fn_min64(nr, N - j0);
            if (uk->bf16 == FN_BF16_PAIRS) {
                pack_b_pairs(dst, b, ldb, trans_b, pc, kcb, j0, jn, nr);
                continue;
            }
            if (!trans_b) fn_gemm_pack_b_panels(dst, b + pc * ldb + j0, ldb, kcb, jn, nr);
            else fn_gemm_pack_bt_panels(uk, dst, b + j0 * ldb + pc, ldb, kcb, jn);
            if (uk->bf16 == FN_BF16_ROUNDED) fn_round_bf16_array(dst, kcb * nr);
        }
    }
}

/* n consecutive elements of k (times alpha) as slots of format fmt: ceil(n/2) pairs, the last one's high half zero
 * when n is odd; n rounded floats; or n floats. One row of a row-major A panel, or of im2col's columns. */
static inline void row_slots(int fmt, float *restrict dst, const float *restrict src, int64_t n, float alpha) {
    if (fmt == FN_BF16_PAIRS) {
        for (int64_t t = 0; t < n / 2; t++) dst[t] = fn_bf16_pair(alpha * src[2 * t], alpha * src[2 * t + 1]);
        if (n % 2) dst[n / 2] = fn_bf16_pair(alpha * src[n - 1], 0.0f);
    } else if (fmt == FN_BF16_ROUNDED) {
        for (int64_t t = 0; t < n; t++) dst[t] = fn_round_bf16(alpha * src[t]);
    } else if (alpha == 1.0f) {
        memcpy(dst, src, sizeof(float) * n);
    } else {
        for (int64_t t = 0; t < n; t++) dst[t] = alpha * src[t];
    }
}

/* Slot (i, t) of an A panel from the source's elements x = alpha*a(i, 2t), y = alpha*a(i, 2t + 1) (pairs) or
 * x = alpha*a(i, t): a pair, x rounded to bfloat16, or x itself. */
static inline float a_slot(int fmt, float x, float y) {
    return fmt == FN_BF16_PAIRS ? fn_bf16_pair(x, y) : fmt == FN_BF16_ROUNDED ? fn_round_bf16(x) : x;
}

/* The k-major panel of a transposed source (rs == 1: row i's elements are contiguous across i): slot (i, t) at
 * dst[t*mr + i]. Inlined with mr and fmt constants, so the loop over a full panel's rows vectorizes. */
static inline void pack_a_kmajor(float *restrict dst, const float *restrict a, int64_t cs, int64_t rows, int64_t kc,
                                 float alpha, const int fmt, const int mr) {
    const int step = fmt == FN_BF16_PAIRS ? 2 : 1;
    const int64_t whole = kc / step; /* slots whose elements all lie inside kc */
    for (int64_t t = 0; t < whole; t++) {
        float *restrict d = dst + t * mr;
        const float *restrict lo = a + step * t * cs, *restrict hi = lo + cs;
        if (rows == mr) {
            for (int i = 0; i < mr; i++) d[i] = a_slot(fmt, alpha * lo[i], step == 2 ? alpha * hi[i] : 0.0f);
        } else {
            for (int i = 0; i < mr; i++)
                d[i] = i < rows ? a_slot(fmt, alpha * lo[i], step == 2 ? alpha * hi[i] : 0.0f) : 0.0f;
        }
    }
    if (whole * step < kc) /* an odd K's last pair */
        for (int i = 0; i < mr; i++) dst[whole * mr + i] = i < rows ? a_slot(fmt, alpha * a[(kc - 1) * cs + i], 0.0f) : 0.0f;
}

/* Slots per block of a transposition into rows (pack_a_rows_of_kmajor, copy_slot_rows): a block is made k-major,
 * contiguous over the rows (vectorized), in an L1 buffer, then written out row by row. Writing the panel's mr row
 * streams one slot at a time ran at 2.8 ns per element on the MLP's dW operand (2-core EPYC). */
#define FN_TRANSPOSE_SLOTS 16

/* Rows i < rows of dst (slot (i, t) at dst[i*len + t0 + t]) from the k-major block buf (slot (i, t) at
 * buf[t*FN_MR_MAX + i]), tb slots each. Bits moved as they are (a pair is not a number). */
static inline __attribute__((always_inline)) void rows_of_block(float *restrict dst, int64_t len, int64_t t0,
                                                                const float *restrict buf, int64_t rows, int64_t tb) {
    for (int64_t i = 0; i < rows; i++) {
        uint32_t *restrict d = (uint32_t *)(dst + i * len + t0);
        const uint32_t *restrict b = (const uint32_t *)buf + i;
        for (int64_t t = 0; t < tb; t++) d[t] = b[t * FN_MR_MAX];
    }
}

/* Rows of a transposed source's slots (rows <= FN_MR_MAX): slot (i, t) at dst[i*ld + t], t < ceil(kc/step), from
 * a's contiguous k-rows (a[k*cs + i]) through blocks of FN_TRANSPOSE_SLOTS slots; rows up to mr below them zero.
 * The row panel of a rows_only micro-kernel (ld = its slots per row), or a block of op(A)'s slots converted once
 * per GEMM. Inlined into pack_a's and a_slots_block's clones. */
static inline __attribute__((always_inline)) void pack_a_rows_of_kmajor(float *restrict dst, int64_t ld,
                                                                        const float *restrict a, int64_t cs,
                                                                        int64_t rows, int64_t kc, float alpha,
                                                                        int fmt, int mr) {
    const int step = fmt == FN_BF16_PAIRS ? 2 : 1;
    const int64_t len = fn_ceil_div(kc, step);
    float buf[FN_TRANSPOSE_SLOTS * FN_MR_MAX] __attribute__((aligned(64)));
    for (int64_t i = rows; i < mr; i++) memset(dst + i * ld, 0, sizeof(float) * len); /* rows below the edge */
    for (int64_t t0 = 0; t0 < len; t0 += FN_TRANSPOSE_SLOTS) {
        const int64_t tb = fn_min64(FN_TRANSPOSE_SLOTS, len - t0);
        for (int64_t t = 0; t < tb; t++) {
            const float *restrict lo = a + step * (t0 + t) * cs, *restrict hi = lo + cs;
            float *restrict b = buf + t * FN_MR_MAX;
            if (step == 2 && step * (t0 + t) + 1 < kc)
                for (int64_t i = 0; i < rows; i++) b[i] = a_slot(fmt, alpha * lo[i], alpha * hi[i]);
            else
                for (int64_t i = 0; i < rows; i++) b[i] = a_slot(fmt, alpha * lo[i], 0.0f);
        }
        rows_of_block(dst, ld, t0, buf, rows, tb);
    }
}

/* Used for edge rows, alpha != 1 and bfloat16 operands. The panel keeps the source's orientation, so every loop
 * reads and writes contiguously and vectorizes: a row-major source (cs == 1) gives row-major panel rows (the
 * micro-kernel's row streams), a transposed one (rs == 1) a k-major panel, or rows for a rows_only kernel. */
FN_VECTOR_CLONES static void pack_a(int mr, int fmt, int rows_only, float *restrict dst, const float *restrict a,
                                    int64_t rs, int64_t cs, int64_t rows, int64_t kc, float alpha, int64_t *prs,
                                    int64_t *pcs) {
    const int64_t len = fmt == FN_BF16_PAIRS ? (kc + 1) / 2 : kc; /* slots per row */
    if (cs == 1) { /* slot (i, t) at dst[i*len + t] */
        for (int64_t i = 0; i < mr; i++) {
            if (i < rows) row_slots(fmt, dst + i * len, a + i * rs, kc, alpha);
            else memset(dst + i * len, 0, sizeof(float) * len);
        }
        *prs = len, *pcs = 1;
        return;
    }
    if (rows_only) {
        pack_a_rows_of_kmajor(dst, len, a, cs, rows, kc, alpha, fmt, mr);
        *prs = len, *pcs = 1;
        return;
    }
    /* rs == 1 (the GEMM's A never has both strides above 1). One instance per micro-kernel shape and format. */
#define FN_PACK_KMAJOR(MR)                                                                                    \
    (fmt == FN_BF16_PAIRS     ? pack_a_kmajor(dst, a, cs, rows, kc, alpha, FN_BF16_PAIRS, MR)                 \
     : fmt == FN_BF16_ROUNDED ? pack_a_kmajor(dst, a, cs, rows, kc, alpha, FN_BF16_ROUNDED, MR)               \
                              : pack_a_kmajor(dst, a, cs, rows, kc, alpha, FN_BF16_NONE, MR))
    if (mr == 8) FN_PACK_KMAJOR(8);
    else if (mr == 6) FN_PACK_KMAJOR(6);
    else FN_PACK_KMAJOR(4);
#undef FN_PACK_KMAJOR
    *prs = 1, *pcs = mr;
}

void fn_gemm_pack_a(const fn_ukernel *uk, float *restrict dst, const float *restrict a, int64_t rs, int64_t cs,
                    int64_t rows, int64_t kc, float alpha, int64_t *prs, int64_t *pcs) {
    pack_a(uk->mr, uk->bf16, uk->rows_only, dst, a, rs, cs, rows, kc, alpha, prs, pcs);
}

/* Rows [i0, i1) of op(A) (times alpha), slots [t0, t1) (t0 * step even), into the row-major slot matrix dst: slot
 * (i, t) at dst[i*ld + t]. The same slots, bit for bit, as pack_a makes of those elements (a_slot, row_slots). */
FN_VECTOR_CLONES void fn_gemm_a_slots_block(int fmt, float *restrict dst, int64_t ld, const float *restrict a,
                                              int64_t rs, int64_t cs, int64_t K, int64_t i0, int64_t i1, int64_t t0,
                                              int64_t t1, float alpha) {
    const int step = fmt == FN_BF16_PAIRS ? 2 : 1;
    const int64_t k0 = step * t0, kn = fn_min64(K, step * t1) - k0;
    if (cs == 1) {
        for (int64_t i = i0; i < i1; i++) row_slots(fmt, dst + i * ld + t0, a + i * rs + k0, kn, alpha);
        return;
    }
    for (int64_t r = i0; r < i1; r += FN_MR_MAX) { /* rs == 1 */
        const int64_t rows = fn_min64(FN_MR_MAX, i1 - r);
        if (fmt == FN_BF16_PAIRS)
            pack_a_rows_of_kmajor(dst + r * ld + t0, ld, a + r + k0 * cs, cs, rows, kn, alpha, FN_BF16_PAIRS, rows);
        else
            pack_a_rows_of_kmajor(dst + r * ld + t0, ld, a + r + k0 * cs, cs, rows, kn, alpha, FN_BF16_ROUNDED, rows);
    }
}

/* An edge of rows of an A already in slots (fn_gemm_tile_slots), or a transposed one for a rows_only kernel: len
 * slots of each of rows rows copied bit for bit (no arithmetic: under DAZ a pair whose high half is zero reads as a
 * denormal float), zero rows below, laid out as fn_gemm_pack_a lays it out. */
FN_VECTOR_CLONES void fn_gemm_copy_slot_rows(int mr, int rows_only, float *restrict dst, const float *restrict a,
                                               int64_t rs, int64_t cs, int64_t rows, int64_t len, int64_t *prs,
                                               int64_t *pcs) {
    memset(dst, 0, sizeof(float) * mr * len);
    if (cs == 1) {
        for (int64_t i = 0; i < rows; i++) memcpy(dst + i * len, a + i * rs, sizeof(float) * len);
        *prs = len, *pcs = 1;
    } else if (rows_only) { /* rs == 1: the k-rows of a are the blocks, as they are */
        for (int64_t t0 = 0; t0 < len; t0 += FN_TRANSPOSE_SLOTS) {
            const int64_t tb = fn_min64(FN_TRANSPOSE_SLOTS, len - t0);
            float buf[FN_TRANSPOSE_SLOTS * FN_MR_MAX] __attribute__((aligned(64)));
            for (int64_t t = 0; t < tb; t++) memcpy(buf + t * FN_MR_MAX, a + (t0 + t) * cs, sizeof(float) * rows);
            rows_of_block(dst, len, t0, buf, rows, tb);
        }
        *prs = len, *pcs = 1;
    } else {
        for (int64_t t = 0; t < len; t++) memcpy(dst + t * mr, a + t * cs, sizeof(float) * rows); /* rs == 1 */
        *prs = 1, *pcs = mr;
    }
}

FN_VECTOR_CLONES void fn_gemm_slots(int fmt, float *restrict dst, const float *restrict src, int64_t n) {
    row_slots(fmt, dst, src, n, 1.0f);
}

FN_VECTOR_CLONES void fn_gemm_slots_interleave(float *dst, const float *lo, const float *hi, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fn_bf16_pair(lo[i], hi ? hi[i] : 0.0f);
}

