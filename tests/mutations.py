"""Break fastnet on purpose, one way at a time, and see which tests fail: a test earns its place by failing.

    python tests/mutations.py                 # every mutation (rebuilds the extension for each C one)
    python tests/mutations.py dense_db tanh   # some
    python tests/mutations.py --fast          # without the slow tests (real-data training, peak memory)
    python tests/mutations.py --list

Each mutation is one textual change to a source file (a dropped term, a zeroed gradient, a wrong constant, a
thread-dependent reduction). The script applies it, rebuilds in place (pip install --no-build-isolation -e, with
a build folder of its own), runs the test suite (FASTNET_DATA must be set for the real-data tests), records the
tests that failed, and restores the file. A mutation no test catches is reported as SURVIVED. Not collected by
pytest (the file name does not start with test_).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (file, original text, broken text, what it breaks)
MUTATIONS = {
    "dense_db": ("csrc/dense.c", "else bias_columns(db, dy, N, O, (t - tx - tw) * 16,", "else if (0) bias_columns(db, dy, N, O, (t - tx - tw) * 16,",
                 "dense backward: the bias gradient is never written"),
    "conv_im2col_db": ("csrc/conv2d.c", "for (int64_t o = 0; o < OC; o++) pb[o] += dyt[r * OC + o];",
                       "for (int64_t o = 0; o < OC; o++) pb[o] += 0.0f * dyt[r * OC + o];",
                       "im2col filter gradient: the bias gradient is zero"),
    "conv_relu_mask": ("csrc/conv2d.c", "if (relu_x) relu_mask(dxn, relu_x + n * image, image);", "",
                       "im2col data gradient: the previous ReLU's mask is not applied"),
    "avx512_kernel_column": ("csrc/gemm_avx512.c", "c7b = _mm512_fmadd_ps(ai, b1, c7b);", "c7b = _mm512_fmadd_ps(ai, b0, c7b);",
                             "AVX-512 GEMM kernel: the last row's second 16 columns take the first 16's B"),
    "gemm_edge_rows": ("csrc/gemm_avx2.c", "lo##i = _mm256_fmadd_ps(ai, b0, lo##i), hi##i = _mm256_fmadd_ps(ai, b1, hi##i);",
                       "lo##i = _mm256_fmadd_ps(ai, b0, lo##i), hi##i = _mm256_fmadd_ps(ai, b0, hi##i);",
                       "GEMM (AVX2): the kernel for an edge of rows multiplies columns 8-15 by B's columns 0-7"),
    "gemm_edge_panel_packed": ("csrc/gemm.c", "if (apk && ib == mr) /* packed: whole panels only (pack_a_panel) */",
                               "if (apk) /* packed: whole panels only (pack_a_panel) */",
                               "GEMM (AVX2): an edge of rows read from the packed panels, where none was packed"),
    "winograd_edge_rows": ("csrc/conv2d_winograd.c", "uk->edge(ib, K, a + i * rs, rs, cs, bq, c + i * ldc + q * nr, ldc, accumulate);",
                           "uk->edge(ib, K, a + full * rs, rs, cs, bq, c + i * ldc + q * nr, ldc, accumulate);",
                           "Winograd products: every edge of rows past the whole micro-tiles reads the first edge's rows"),
    "gemm_register_transpose": ("csrc/gemm_avx2.c", "_mm256_storeu_ps(d + 5 * stride, _mm256_permute2f128_ps(s1, s5, 0x31));",
                                "_mm256_storeu_ps(d + 5 * stride, _mm256_permute2f128_ps(s2, s6, 0x31));",
                                "GEMM (AVX2): the register transpose that packs a transposed B or a shallow A puts a wrong row"),
    "direct_tap_order": ("csrc/conv2d_direct.c", "((rl) ? (k) / 3 * (rl) + (k) % 3 : (k))",
                         "((rl) ? (k) % 3 * (rl) + (k) / 3 : (k))",
                         "direct convolution (3x3, one channel): the kernel's taps read transposed"),
    "direct_bias_odd_pixels": ("csrc/conv2d_direct.c", "_mm256_add_ps(_mm256_loadu_ps(pb + o), _mm256_add_ps(even, odd))",
                               "_mm256_add_ps(_mm256_loadu_ps(pb + o), even)",
                               "direct filter gradient: the bias gradient drops every second pixel"),
    "direct_relu": ("csrc/conv2d_direct.c", "_mm256_cmp_ps(acc, _mm256_setzero_ps(), _CMP_GT_OQ)",
                    "_mm256_cmp_ps(acc, _mm256_setzero_ps(), _CMP_LT_OQ)", "direct convolution: ReLU keeps the negatives"),
    "filter_last_chunk": ("csrc/conv2d.c", "for (int64_t ch = 1; ch < nch; ch++) add_rows(",
                          "for (int64_t ch = 1; ch < nch - 1; ch++) add_rows(",
                          "filter gradients (every algorithm): the last chunk of images is dropped"),
    "winograd_patch_adjoint": ("csrc/conv2d_winograd_backward.c", "    o[5] = d[5];\n}", "    o[5] = d[4];\n}",
                               "Winograd data gradient: a wrong coefficient in the patch transform B dV B^T"),
    "winograd_dx_not_zeroed": ("csrc/conv2d_winograd_backward.c", "if (dx) memset(dx + n0 * image,", "if (0) memset(dx + n0 * image,",
                               "Winograd data gradient: the patches are added onto whatever dx held"),
    "winograd_dx_relu_mask": ("csrc/conv2d_winograd_backward.c", "d[k] += r[k] > 0.0f ? src[k] : 0.0f;", "d[k] += src[k];",
                              "Winograd data gradient: the previous ReLU's mask is not applied"),
    "winograd_pool_window": ("csrc/conv2d_winograd_backward.c", "p10[o] = k == row ? v : 0.0f, p11[o] = k == row + oc ? v : 0.0f;",
                             "p11[o] = k == row ? v : 0.0f, p10[o] = k == row + oc ? v : 0.0f;",
                             "fused conv + pool backward: the pooled gradient goes to the wrong output of its window"),
    "winograd_thread_chunks": ("csrc/conv2d_winograd_backward.c", "nch = grad_chunks(s), psize",
                               "nch = fn_min64(grad_chunks(s), n_threads + 1), psize",
                               "Winograd filter gradient: the chunks depend on the thread count (not deterministic)"),
    "xent_tsum": ("csrc/softmax_xent.c", "dlogits[r * C + j] = scale * (p[j] * tsum - t[j]);",
                  "dlogits[r * C + j] = scale * (p[j] - t[j] * tsum * 0.5f);", "softmax cross-entropy backward: a wrong term"),
    "mae_sign": ("csrc/losses.c", "d[j] = o[j] > t[j] ? s : (o[j] < t[j] ? -s : 0.0f);",
                 "d[j] = o[j] > t[j] ? s : -s;", "mean absolute error backward: sign(0) is -1"),
    "pointwise_weight": ("csrc/losses.c", "const float s = scale * (w ? w[r] : 1.0f) / (float)C;",
                         "const float s = scale / (float)C;", "elementwise losses' backward: the sample weights are ignored"),
    "bce_mean": ("csrc/losses.c", "loss[r] = (float)(sum / (double)C * (w ? w[r] : 1.0f));",
                 "loss[r] = (float)(sum * (w ? w[r] : 1.0f));", "elementwise losses: a sample's loss is the sum over outputs"),
    "keras_path_numbering": ("src/fastnet/keras_format.py", "(f\"_{used[base]}\" if used[base] else \"\")",
                             "(f\"_{used[base] + 1}\" if used[base] else \"\")",
                             "Keras weights files: repeated layer classes numbered from _2"),
    "keras_flatten_order": ("src/fastnet/keras_format.py", 'return "channels_last" if layer.reorders else "channels_first"',
                            'return "channels_first"', "a .keras file's Flatten after channels_first layers: the wrong order"),
    "key64_chunks": ("src/fastnet/_kernels_elementwise.pxi", "        h = fn_splitmix64(h ^ chunks)\n",
                     "        h = fn_splitmix64(h)\n", "dropout keys: a part's chunk count is not hashed"),
    "program_key64_chunks": ("csrc/program.c", "h = fn_splitmix64(fn_splitmix64(h ^ parts[i]) ^ 1u);",
                             "h = fn_splitmix64(h ^ parts[i]);",
                             "the program's dropout keys: a part's chunk count is not hashed (not key64's keys)"),
    "key64_truncates": ("src/fastnet/_kernels_elementwise.pxi", "            part >>= 64\n", "            part = 0\n",
                        "dropout keys: a part past 64 bits is hashed as its truncation"),
    "check_partial_overlap": ("src/fastnet/_kernels.pyx", "if not (alo < bhi and blo < ahi):",
                              "if not (alo == blo):", "kernel arguments: an output that partly overlaps an input passes"),
    "check_byte_order": ("src/fastnet/_kernels.pyx", "cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_ISNOTSWAPPED(arr)",
                         "cnp.PyArray_TYPE(arr) == typenum", "kernel arguments: big-endian arrays pass as native"),
    "gemm_a_once_alpha": ("csrc/gemm_job.c", "fn_min64(j->a_len, t0 + FN_A_SLOT_BLOCK), j->alpha);",
                          "fn_min64(j->a_len, t0 + FN_A_SLOT_BLOCK), 1.0f);",
                          "bfloat16 GEMM, op(A) converted once: alpha is not applied"),
    "gemm_a_once_rows": ("csrc/gemm_job.c", "fn_min64(j->M, i0 + FN_MR_MAX), t0,", "fn_min64(j->M, i0 + FN_MR_MAX - 1), t0,",
                         "bfloat16 GEMM, op(A) converted once: the last row of each block is left unconverted"),
    "gemm_a_once_transposed": ("csrc/gemm_pack.c", "pack_a_rows_of_kmajor(dst + r * ld + t0, ld, a + r + k0 * cs, cs, rows, kn, alpha, FN_BF16_PAIRS, rows);",
                               "pack_a_rows_of_kmajor(dst + r * ld + t0, ld, a + r + k0, cs, rows, kn, alpha, FN_BF16_PAIRS, rows);",
                               "bfloat16 GEMM, op(A) converted once: a transposed A's slot blocks read from the wrong k"),
    "gather_rows_offset": ("csrc/batch.c", "(const char *)src + idx[r] * row_bytes", "(const char *)src + r * row_bytes",
                           "a batch's rows: copied in order instead of by the shuffled row numbers"),
    "gather_rows_check": ("src/fastnet/_kernels_elementwise.pxi", "if pi[r] < 0 or pi[r] >= rows:", "if pi[r] < 0:",
                          "a batch's rows: a row number past the data is not rejected"),
    "dense_epilogue_bias_offset": ("csrc/activations.c", "const float *bias = p->bias ? p->bias + c0 : NULL;",
                                   "const float *bias = p->bias;",
                                   "the epilogue: each tile adds the bias from its output's first column, not its own"),
    "winograd_epilogue_relu": ("csrc/conv2d_winograd.c", "fn_post_value(out[j], bias[o], relu)",
                               "fn_post_value(out[j], bias[o], 0)", "Winograd's output tiles forget the fused ReLU"),
    "dense_backward_db_blocks": ("csrc/dense.c", "nb = db ? fn_ceil_div(O, 16) : 0", "nb = db ? O / 16 : 0",
                                 "dense backward: the bias gradient's last, partial block of columns is not summed"),
    "dense_backward_shared_ws": ("csrc/dense.c", "ws + dw_workspace(N, I, O, isa, precision), nt);",
                                 "ws, nt);", "dense backward: both GEMMs pack into the same workspace at once"),
    "threads_no_grain": ("csrc/internal.h", "fn_min64(n_threads, fn_ceil_div(work, grain))",
                         "fn_min64(n_threads, fn_ceil_div(work, 1))", "every parallel region takes all its threads"),
    "threads_elementwise": ("csrc/internal.h", "FN_PARALLEL_FOR(FN_ELEMENT_THREADS(work), blk_,", "FN_PARALLEL_FOR(n_threads, blk_,",
                            "elementwise kernels take all their threads, whatever their size"),
    "threads_gemm": ("csrc/gemm_job.c", "    return fn_threads_for(M * N * K, FN_GRAIN_MACS, n_threads);\n}",
                     "    return n_threads;\n}", "a GEMM takes all its threads, whatever its size"),
    "dense_dropout_tile_offset": ("csrc/activations.c", "p->first + (uint64_t)(r0 * p->ld + c0)",
                                  "p->first + (uint64_t)(r0 * p->ld)",
                                  "dense forward with dropout: every tile of a row block draws the mask of its first"),
    "dropout_relu_backward_scale": ("csrc/dropout.c", "dx[i] = kept(y[i] > 0.0f, dy[i] * scale);", "dx[i] = kept(y[i] > 0.0f, dy[i]);",
                                    "the fused ReLU + dropout backward forgets the 1 / (1 - rate) scale"),
    "plan_dropout_at_inference": ("csrc/program.c", "const int drop = run->training && op->dropout;",
                                  "const int drop = op->dropout;", "a Dense + ReLU + Dropout step drops out at inference"),
    "dense_dropout_with_packed": ("src/fastnet/_kernels_dense.pxi", "        if packed is not None:\n            raise ValueError(\"dense: dropout",
                                  "        if False:\n            raise ValueError(\"dense: dropout",
                                  "dense forward: dropout with packed weights passes (the packed path ignores it)"),
    "bf16_pack_b": ("csrc/gemm_pack.c", "            if (uk->bf16 == FN_BF16_ROUNDED) fn_round_bf16_array(dst, kcb * nr);", "",
                    "bfloat16 products: the packed B operand is not rounded"),
    "bf16_panel_a": ("csrc/gemm_pack.c", "for (int64_t t = 0; t < n; t++) dst[t] = fn_round_bf16(alpha * src[t]);",
                     "for (int64_t t = 0; t < n; t++) dst[t] = alpha * src[t];",
                     "bfloat16 products: a row-major A operand is not rounded"),
    "bf16_panel_a_kmajor": ("csrc/gemm_pack.c", "fmt == FN_BF16_ROUNDED ? fn_round_bf16(x) : x;", "x;",
                            "bfloat16 products: a transposed A operand is not rounded"),
    "bf16_im2col_slots": ("csrc/conv2d.c", "fn_gemm_slots(fmt, dst, xn + (ih * s->W + iw0) * C, span);",
                          "fn_gemm_slots(FN_BF16_NONE, dst, xn + (ih * s->W + iw0) * C, span);",
                          "bfloat16 im2col: the columns are copied as float32, not in the kernel's format"),
    "native_b_halves": ("csrc/gemm_pack.c", "d[j] = fn_bf16_pair(lo[j], hi[j]);", "d[j] = fn_bf16_pair(hi[j], lo[j]);",
                        "native bfloat16 path: B's pairs packed with their halves swapped"),
    "native_b_odd_k": ("csrc/gemm_pack.c", "dst[pw * nr + j] = fn_bf16_pair(col[2 * pw], 0.0f);",
                       "dst[pw * nr + j] = fn_bf16_pair(col[2 * pw], col[2 * pw + 1]);",
                       "native bfloat16 path: an odd K block's last B pair reads the next row instead of zero"),
    "native_a_alpha": ("csrc/gemm_pack.c", "fn_bf16_pair(alpha * src[2 * t], alpha * src[2 * t + 1])",
                       "fn_bf16_pair(src[2 * t], alpha * src[2 * t + 1])",
                       "native bfloat16 path: A's pairs lose alpha on even k"),
    "native_kernel_last_pair": ("csrc/gemm_avx512bf16.c", "FN_UKERNEL_8X32((kc + 1) / 2)", "FN_UKERNEL_8X32(kc / 2)",
                                "native micro-kernel: an odd K's last pair is skipped"),
    "native_interleave_halves": ("csrc/gemm_pack.c", "dst[i] = fn_bf16_pair(lo[i], hi ? hi[i] : 0.0f);",
                                 "dst[i] = fn_bf16_pair(hi ? hi[i] : 0.0f, lo[i]);",
                                 "native path, im2col filter gradient: the position pairs' halves swapped"),
    "im2col_pairs_odd_c": ("csrc/conv2d.c", "(uk->bf16 == FN_BF16_PAIRS && s->C % 2 == 0)", "uk->bf16 == FN_BF16_PAIRS",
                           "native path, im2col: pairs made across taps when C is odd"),
    "slot_edge_arithmetic": ("csrc/gemm_pack.c", "for (int64_t t = 0; t < len; t++) memcpy(dst + t * mr, a + t * cs, sizeof(float) * rows); /* rs == 1 */",
                             "for (int64_t t = 0; t < len; t++) for (int64_t i = 0; i < rows; i++) dst[t * mr + i] = a[t * cs + i] + 0.0f;",
                             "A slots copied through float arithmetic (DAZ flushes a pair with a zero high half)"),
    "native_direct_slots": ("csrc/conv2d.c", "if (fmt != FN_BF16_NONE) {\n                    if (ow1 > ow0)",
                            "if (fmt == FN_BF16_ROUNDED) {\n                    if (ow1 > ow0)",
                            "direct convolution data gradient: dy handed to the native kernel as float32"),
    "amx_tail_padding": ("csrc/gemm_amx.c", "    memset(ta, 0, sizeof ta);\n    memset(tb + tail * 32, 0, sizeof(float) * (16 - tail) * 32);\n",
                         "", "AMX kernel: the last step of fewer than 16 pairs reads its copies past the tail unzeroed"),
    "amx_tail_rows": ("csrc/gemm_amx.c", "memcpy(ta + i * 16, a + i * rs_a, sizeof(float) * tail);",
                      "memcpy(ta + i * 16, a + i * 16, sizeof(float) * tail);",
                      "AMX kernel: the last step's copy of A takes the wrong row stride"),
    "amx_store_stride": ("csrc/gemm_amx.c", "    _tile_stored(2, dst + 16 * ld, 4 * ld);", "    _tile_stored(2, dst + 16 * 32, 4 * ld);",
                         "AMX kernel: the lower-left accumulator is stored at a buffer's offset, not C's"),
    "rows_fma_order": ("csrc/gemm_avx2.c", "for (int t = 0; t < U; t++) s = _mm256_fmadd_ps(x[i][t], bv[t], s);",
                       "for (int t = U - 1; t >= 0; t--) s = _mm256_fmadd_ps(x[i][t], bv[t], s);",
                       "a few rows read B in place: each pass sums its rows of B in reverse order"),
    "rows_tail_lanes": ("csrc/gemm_avx2.c", "    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - nv)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));\n    int64_t k = 0;",
                        "    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - nv) - 1), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));\n    int64_t k = 0;",
                        "a few rows read B in place: the last column of a ragged tail is dropped"),
    "rows_narrow_last_column": ("csrc/gemm_avx2.c", "_mm256_cmpgt_epi32(_mm256_set1_epi32((int)n - 8), lane)",
                                "_mm256_cmpgt_epi32(_mm256_set1_epi32((int)n - 9), lane)",
                                "a few rows by at most 16 columns: the last column's sums are never written"),
    "gemm_tiles_fixed_rows": ("csrc/gemm_job.c", "*m0 = mb * j->mpanels / j->mtiles * mr, *m1 = fn_min64(j->M, (mb + 1) * j->mpanels / j->mtiles * mr);",
                              "*m0 = mb * fn_round_up(fn_ceil_div(j->M, j->mtiles), 24), *m1 = fn_min64(j->M, *m0 + fn_round_up(fn_ceil_div(j->M, j->mtiles), 24));",
                              "a GEMM's row blocks a fixed multiple of 24 rows, the last one short"),
    "gemm_a_pack_k_block": ("csrc/gemm_job.c", "float *dst = j->ap + (pc / kc * j->mpanels + p) * stride;",
                            "float *dst = j->ap + p * stride;",
                            "GEMM (AVX2): op(A) packed once writes every K block over the first"),
    "gemm_a_pack_no_overhang_room": ("csrc/internal.h", "return fn_gemm_kc(K) * uk->mr + 8; }",
                                     "return fn_gemm_kc(K) * uk->mr; }",
                                     "GEMM (AVX2): packed A's panels without room for pack_ak's overhanging stores"),
    "gemm_pack_b_panel_group": ("csrc/gemm_pack.c",
                                "for (int64_t q = 0; q < panels; q++) memcpy(dst + q * kcb * 16, src + q * 16, sizeof(float) * 16);",
                                "for (int64_t q = 0; q < panels; q++) memcpy(dst + q * kcb * 16, src, sizeof(float) * 16);",
                                "GEMM: B's whole 16-wide panels, packed a row at a time across a group, all copy the group's first"),
    "gemm_b_at_use_k_block": ("csrc/gemm.c", "fn_gemm_pack_b_panels(bpanel, b + pc * ldb + q * nr, ldb, kcb,",
                              "fn_gemm_pack_b_panels(bpanel, b + q * nr, ldb, kcb,",
                              "GEMM: a B panel packed at use holds the first K block's rows in every K block"),
    "gemm_bt_at_use_panel": ("csrc/gemm_pack.c", "for (int64_t j0 = 0; j0 < jn; j0 += nr, dst += kcb * nr, b += nr * ldb) {",
                             "for (int64_t j0 = 0; j0 < jn; j0 += nr, dst += kcb * nr) {",
                             "GEMM: the second of two panels of a transposed B packed at use copies the first"),
    "gemm_bt_at_use_k_block": ("csrc/gemm.c", "fn_gemm_pack_bt_panels(uk, bpanel, b + q * nr * ldb + pc, ldb, kcb, cols);",
                               "fn_gemm_pack_bt_panels(uk, bpanel, b + q * nr * ldb, ldb, kcb, cols);",
                               "GEMM: a transposed B's panel packed at use holds the first K block in every K block"),
    "gemm_edge_pair_panel": ("csrc/gemm.c", "rs, cs, bq, bq + kcb * nr,", "rs, cs, bq, bq,",
                             "GEMM: an edge of rows on two panels at once reads the first panel for both"),
    "gemm_run_tile_column": ("csrc/gemm_job.c", "fn_gemm_job_rows(j, m0, last_m1, j0, j1);",
                             "fn_gemm_job_rows(j, m0, m1, j0, j1);",
                             "GEMM: a thread's column of tiles runs only its first tile's rows"),
    "gemm_pack_b_group_end": ("csrc/gemm_pack.c", "                q = end;", "                q += FN_COPY_GROUP;",
                              "GEMM: B's last, partial panel skipped where a group of whole panels ends past them"),
    "onnx_flatten_order": ("src/fastnet/onnx_format.py", 'g.to_layout("nchw" if layer.reorders else "nhwc", layer.name)',
                           'g.to_layout("nhwc", layer.name)', "ONNX export: every Flatten reads (H, W, C) order"),
    "onnx_pads_even": ("src/fastnet/onnx_format.py", "        end.append(total - before)", "        end.append(before)",
                       "ONNX export: 'same' padding as much after as before (uneven totals cut short)"),
    "onnx_import_conv_kernel": ("src/fastnet/onnx_import.py", "weights = [np.ascontiguousarray(w.transpose(2, 3, 1, 0))]",
                                "weights = [np.ascontiguousarray(w.transpose(3, 2, 1, 0))]",
                                "ONNX import: a convolution's kernel rows and columns swapped"),
    "onnx_import_flatten_order": ("src/fastnet/onnx_import.py", '        r.add_layer(Flatten, node, {"data_format": "channels_first"})',
                                  "        r.add_layer(Flatten, node, {})",
                                  "ONNX import: a channels_first model's (H, W, C) flatten read in (C, H, W) order"),
    "onnx_import_bias_axis": ("src/fastnet/onnx_import.py", 'axis = {"flat": 1, "nchw": 1, "nhwc": 3}.get(r.layout)',
                              'axis = {"flat": 1, "nchw": 1, "nhwc": 1}.get(r.layout)',
                              "ONNX import: a bias added to NHWC images taken along the wrong axis"),
    "onnx_import_external_escape": ("src/fastnet/onnx_import.py", 'any(p in ("", ".", "..") for p in parts)', "False",
                                    "ONNX import: external data may name any path"),
    "onnx_import_dims_trusted": ("src/fastnet/onnx_import.py", "        if len(data) != count * dtype.itemsize:",
                                 "        if False:", "ONNX import: a tensor's dims trusted over the bytes that hold it"),
    "winograd_memo_never_remade": ("csrc/conv2d_winograd.c",
                                   "transform = !memo->made || memcmp(memo->mem, w, bytes) != 0;",
                                   "transform = !memo->made;",
                                   "inference keeps Winograd's transformed filters after the weights changed"),
    "winograd_memo_part_compared": ("csrc/conv2d_winograd.c", "memcmp(memo->mem, w, bytes)",
                                    "memcmp(memo->mem, w, bytes / 2)",
                                    "inference compares half the weights before using the filters it kept"),
    "program_dense_run_past_post": ("csrc/program.c", "(j == i || ops[j - 1].post == FN_POST_NONE)", "(1)",
                                    "dense ops in one region: an op after an activation reads the product under it"),
    "program_dense_run_input": ("csrc/program.c", "ops[k].x = k == i ? x : ops[k - 1].y", "ops[k].x = x",
                                "dense ops in one region: each reads the run's input"),
    "model_calls_unlocked": ("src/fastnet/models.py", "        with self._lock:\n", "        if True:\n",
                             "two threads run one model's plan at once"),
    "barrier_not_waited": ("csrc/parallel.c", "    if (n == 1) return;\n    const int round", "    if (n >= 1) return;\n    const int round",
                           "a GEMM job's barrier lets every thread through at once"),
    "program_predict_final": ("csrc/program.c", ".out_row = last->out_row, .channels = last->out_row}",
                              ".out_row = last->out_row, .channels = 1}",
                              "predict's final softmax taken over each number alone (all ones)"),
    "one_thread_region_body": ("csrc/internal.h", "        } else {                                                                                    \\\n            for (int64_t i = 0; i < fn_n_; i++) { __VA_ARGS__; }                                    \\",
                               "        } else {                                                                                    \\\n            for (int64_t i = 1; i < fn_n_; i++) { __VA_ARGS__; }                                    \\",
                               "a parallel loop run on one thread skips its first iteration"),
    "leaky_relu_backward_slope": ("csrc/activations.c", "dx[i] = y[i] > 0.0f ? dy[i] : alpha * dy[i];",
                                  "dx[i] = y[i] > 0.0f ? dy[i] : dy[i];",
                                  "LeakyReLU's backward passes the whole gradient where the input was negative"),
    "program_conv_relu_input": ("csrc/program.c", "    *st = fn_conv2d_backward(op->dx, op->dw, op->db, dz, NULL, NULL, op->x, op->w,\n"
                                "                             op->masks_relu_input ? op->x : NULL,",
                                "    *st = fn_conv2d_backward(op->dx, op->dw, op->db, dz, NULL, NULL, op->x, op->w,\n"
                                "                             NULL,",
                                "the program: a convolution forgets the ReLU backward of the step before it"),
    "program_pool_relu_output": ("csrc/program.c", "op->masks_relu_input ? op->y : NULL, run->n, g->H",
                                 "NULL, run->n, g->H", "the program: a max-pool forgets the ReLU backward before it"),
    "program_flatten_back": ("csrc/program.c", "transpose_rows(op->dx, dy, run->n, g->C, g->H * g->W, run->n_threads);",
                             "transpose_rows(op->dx, dy, run->n, g->H * g->W, g->C, run->n_threads);",
                             "the program: a channels_first Flatten's gradient goes back in the wrong order"),
    "program_nan_updates": ("csrc/program.c", "if (fn_first_nonfinite(l->loss, run->n, run->n_threads) >= 0) return FN_OK;",
                            "if (fn_first_nonfinite(l->loss, run->n, run->n_threads) > run->n) return FN_OK;",
                            "the program: a step whose loss is NaN still updates the weights"),
    "program_post_backward": ("csrc/program.c", "        *st = post_backward(op, op->dz, dy, op->post_y, n, run->n_threads);",
                              "        return dy;", "the program: a dense or conv step skips its sigmoid/tanh/softmax's backward"),
    "amx_tile_loop_enter": ("csrc/gemm.c", "    fn_ukernel_enter(uk);\n    for (int64_t pc = 0;", "    for (int64_t pc = 0;",
                            "GEMM tiles: kernel calls outside enter/leave (tiles unconfigured)"),
    "im2col_pool_ties": ("csrc/conv2d.c", "at = v3 > best ? off3 + (int32_t)o : at", "at = v3 >= best ? off3 + (int32_t)o : at",
                         "im2col convolution with pooling: the last maximum of a window wins ties"),
    "im2col_pool_off": ("csrc/conv2d.c", "(winograd || 2 * s->OW <= FN_CONV_ROWS);", "winograd;",
                        "im2col convolutions never pool in their kernel (the plan keeps a separate pooling step)"),
    "im2col_pool_width": ("csrc/conv2d.c", "(winograd || 2 * s->OW <= FN_CONV_ROWS);", "(winograd || 2 * s->OW <= 4 * FN_CONV_ROWS);",
                          "im2col convolutions claim to pool outputs wider than their tiles"),
    "im2col_pool_rows": ("csrc/conv2d_tiles.h", "if (pooled) return 2 * s->OW * (FN_CONV_ROWS / (2 * s->OW));",
                         "if (pooled) return FN_CONV_ROWS;",
                         "im2col convolution with pooling: tiles that cut pairs of output rows"),
    "taps_offsets": ("csrc/conv2d_taps.c", "off[kh * s->KW + kw] = kh * Wp + kw;", "off[kh * s->KW + kw] = kh * s->OW + kw;",
                           "tap path (AMX): a tap reads its row at the output's width, not the padded image's"),
    "taps_padding": ("csrc/conv2d_taps.c", "pix + ((ih + s->PT) * Wp + s->PL) * 16", "pix + (ih * Wp + s->PL) * 16",
                       "tap path (AMX): the image is converted without its top padding"),
    "taps_data_flip": ("csrc/conv2d_taps.c", "w + ((s->KH - 1 - kh) * s->KW + (s->KW - 1 - kw)) * C * OC + o;",
                       "w + (kh * s->KW + kw) * C * OC + o;", "tap path (AMX) data gradient: the kernel is not flipped"),
    "taps_data_mask": ("csrc/conv2d_taps.c", "store_masked(dx + at, prod, relu_x ? relu_x + at : NULL, (r1 - r0) * s->C);",
                       "store_masked(dx + at, prod, NULL, (r1 - r0) * s->C);",
                       "tap path (AMX) data gradient: the previous ReLU's mask is not applied"),
    "taps_filter_parity": ("csrc/conv2d_taps.c", "const float *a = xp + (off % 2) * 32 * L + off / 2;",
                           "const float *a = xp + off / 2;",
                           "tap path (AMX) filter gradient: an odd tap shift reads pairs that start on the wrong pixel"),
    "taps_filter_garbage": ("csrc/conv2d_taps.c", "row[h] = oh < s->OH && ow < OW ? dyn + (oh * OW + ow) * OC : zeros;",
                            "row[h] = oh < s->OH && ow < OW ? dyn + (oh * OW + ow) * OC : dyn;",
                            "tap path (AMX) filter gradient: wide positions past the output row count dy"),
    "amx_tile_pairing": ("csrc/gemm_amx.c", "        _tile_dpbf16ps(3, 5, 7);", "        _tile_dpbf16ps(3, 5, 6);",
                         "AMX kernel: the lower-right accumulator multiplies the wrong B tile"),
    "amx_kmajor_slots": ("csrc/gemm_pack.c", "    } else if (rows_only) { /* rs == 1: the k-rows of a are the blocks, as they are */",
                         "    } else if (0) {",
                         "AMX kernel: transposed A slots (filter gradient) handed over k-major"),
    "amx_kmajor_pack": ("csrc/gemm_pack.c", "    if (rows_only) {\n        pack_a_rows_of_kmajor", "    if (0) {\n        pack_a_rows_of_kmajor",
                        "AMX kernel: a transposed A (dense weight gradient) packed k-major"),
    "bf16_ties_up": ("csrc/internal.h", "v.u + 0x7fffu + ((v.u >> 16) & 1u)", "v.u + 0x8000u",
                     "bfloat16 rounding: ties away from zero instead of to even"),
    "bf16_winograd_auto": ("csrc/conv2d.c", "algo == FN_CONV_AUTO && precision == FN_FLOAT32 && s->C >= 16",
                           "algo == FN_CONV_AUTO && s->C >= 16",
                           "bfloat16 convolutions: 'auto' takes Winograd, whose transforms amplify the rounding"),
    "direct_on_any_path": ("csrc/conv2d.c", " &&\n                       fn_conv2d_direct_runs(fn_gemm_ukernel(isa, precision), s);", ";",
                           "the direct convolution also runs for bfloat16 operands and on the portable path"),
    "bf16_plan_precision": ("src/fastnet/_kernels_program.pxi", "op.isa, op.precision = _isa_code(isa), _precision_code(precision)",
                            "op.isa, op.precision = _isa_code(isa), _precision_code(None)",
                            "the plan runs a mixed layer's products in float32"),
    "dropout_drop_by_multiply": ("csrc/dropout.c", "y[i] = kept(k, x[i] * scale);", "y[i] = x[i] * scale * (float)k;",
                                 "dropout forward: a dropped inf or NaN input leaves NaN, not 0"),
    "dropout_scale": ("csrc/dropout.c", "dx[i] = kept(keep[i], dy[i] * scale);", "dx[i] = kept(keep[i], dy[i]);",
                      "dropout backward: the 1/(1 - rate) scale is dropped"),
    "tanh": ("csrc/activations.c", "dx[i] = dy[i] * (1.0f - y[i] * y[i]);", "dx[i] = dy[i] * (1.0f - y[i]);",
             "tanh backward: a wrong derivative"),
    "adadelta_d": ("csrc/optim.c", "d[i] = rho * d[i] + (1.0f - rho) * u * u;", "d[i] = rho * d[i];",
                   "Adadelta: the delta accumulator never grows"),
    "rmsprop_rho": ("csrc/optim.c", "const float ai = rho * a[i] + (1.0f - rho) * g[i] * g[i];\n        a[i] = ai;\n        p[i]",
                    "const float ai = (1.0f - rho) * a[i] + rho * g[i] * g[i];\n        a[i] = ai;\n        p[i]",
                    "RMSprop: rho and 1 - rho swapped"),
    "pool_relu_mask": ("csrc/conv2d_winograd_backward.c", "const float v = y[o] > 0.0f ? d[o] : 0.0f;", "const float v = d[o];",
                       "conv + ReLU + pool backward (Winograd): the ReLU's backward is skipped"),
    "pool_relu_mask_im2col": ("csrc/conv2d.c", "fn_maxpool2d_backward(buf, dy, argmax, pooled,",
                              "fn_maxpool2d_backward(buf, dy, argmax, NULL,",
                              "conv + ReLU + pool backward (im2col): the ReLU's backward is skipped"),
    "dropout_same_mask": ("csrc/program.c", "const uint64_t parts[3] = {run->model_id, run->step, op->layer};",
                          "const uint64_t parts[3] = {run->model_id, 0, op->layer};",
                          "dropout: the same mask at every step"),
    "shuffle_by_loop_epoch": ("src/fastnet/training.py", "_seed.generator(model.seed, model.model_id, 1, model.epochs_trained)",
                              "_seed.generator(model.seed, model.model_id, 1, epoch)",
                              "shuffling keyed by the fit call's loop index (every call repeats epoch 0's order)"),
    "buffers_kept": ("src/fastnet/plan.py", "            self._views.clear()\n            self._arrays.clear()",
                     "            self._views.clear()\n            self._kept = getattr(self, '_kept', []) + [self._arrays]\n"
                     "            self._arrays = {}", "plan buffers: old batch sizes are never released"),
    "empty_dims_reach_c": ("src/fastnet/_kernels.pyx", "    if a.size == 0:\n", "    if False:\n",
                           "kernel boundary: arrays with an empty dimension reach C"),
    "overlap_unchecked": ("src/fastnet/_kernels.pyx", '    items = [(name, a) for name, a in arrays if a is not None]',
                          '    items = []', "kernel boundary: optimizer and dropout arrays may overlap"),
    "fused_any_activation": ("src/fastnet/_kernels.pyx", "    if code not in (FN_ACT_LINEAR, FN_ACT_RELU):",
                             "    if False:", "dense/conv kernels accept activations they cannot fuse (C: EINVAL)"),
    "strides_unchecked": ("src/fastnet/_check.py", "        value = integer(value, name, 1, INT_MAX, where, allow_float=True)",
                          "        value = int(value)", "layers: an int stride, kernel or pool size is not range-checked"),
    "step_counted_in_python": ("src/fastnet/training.py",
                               "                           (model._step, opt._iterations))\n"
                               "        plan.train_step(xb, yb, wb, opt.current_lr(), opt.kernel_hyper(), opt.iterations + 1, model.model_id,\n"
                               "                        model.step)\n",
                               "                           (opt._iterations,))\n"
                               "        plan.train_step(xb, yb, wb, opt.current_lr(), opt.kernel_hyper(), opt.iterations + 1, model.model_id,\n"
                               "                        model.step)\n"
                               "        model._step[0] += 1\n",
                               "the step count advances after the training step's C call, in Python"),
    "dropout_key_packed": ("csrc/program.c", "return fn_key64(parts, 3);",
                           "return (run->model_id << 48) ^ (run->step << 12) ^ op->layer;",
                           "dropout keys packed into bit fields (overflow at 65,536 models)"),
    "partial_file_kept": ("src/fastnet/_io.py", "            os.unlink(tmp)", "            pass",
                          "a failed save leaves its partial file behind"),
    "h5_external_storage": ("src/fastnet/_untrusted.py", "        if plist.get_external_count():",
                            "        if False:", "model files: an HDF5 dataset stored in other files is read"),
    "h5_external_links": ("src/fastnet/_untrusted.py", "            if kind != h5l.TYPE_HARD:",
                          "            if kind == h5l.TYPE_SOFT:", "model files: HDF5 external links are followed"),
    "h5_storage_in_file": ("src/fastnet/_untrusted.py", "if offset is None or dsid.get_storage_size() != nbytes or",
                           "if offset is None and dsid.get_storage_size() != nbytes and",
                           "model files: an HDF5 dataset's declared size is not checked against its storage"),
    "weights_fit_file": ("src/fastnet/_untrusted.py", "    if count > available:", "    if count > available << 40:",
                         "model files: an architecture larger than its file is built"),
    "json_depth": ("src/fastnet/_untrusted.py", "        if depth > MAX_JSON_DEPTH:", "        if False:",
                   "model files: JSON of any depth goes to the parser"),
    "npz_unknown_member": ("src/fastnet/saving.py", "        if name != NPZ_JSON and (match is None or",
                           "        if False and (match is None or", "model files: unknown .npz members are ignored"),
    "stale_partial_locked": ("src/fastnet/_io.py", "            if _try_lock(fd):", "            if True:",
                             "atomic writes: a partial file a living save holds is removed"),
    "stale_partials_kept": ("src/fastnet/_io.py", "    remove_stale_partials(path)\n", "",
                            "atomic writes: killed saves' partial files are never removed"),
    "partial_mode": ("src/fastnet/_io.py", "os.O_EXCL | getattr(os, \"O_CLOEXEC\", 0), 0o666)",
                     "os.O_EXCL | getattr(os, \"O_CLOEXEC\", 0), 0o600)", "atomic writes: new files ignore the umask"),
    "csv_log_at_begin": ("src/fastnet/callbacks.py", "            _io.check_writable(self.filename, \"CSVLogger\")\n"
                         "            self._write()\n", "            pass\n", "CSVLogger: the log is first written after an epoch"),
    "metric_acc_renamed": ("src/fastnet/metrics.py", "self.keys = (name, \"acc\") if name == \"accuracy\" else (name,)",
                           "self.keys = (\"accuracy\", \"acc\") if name in (\"accuracy\", \"acc\") else (name,)",
                           "metrics: 'acc' is logged as 'accuracy'"),
    "threads_at_import": ("src/fastnet/_kernels.pyx", "n = _num_threads if _num_threads > 0 else fn_omp_max_threads()",
                          "n = _num_threads if _num_threads > 0 else os.cpu_count()",
                          "threads: OpenMP's per-call maximum is ignored"),
}


def build(env):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "-e", ".",
                    "-Ceditable.rebuild=false", "-Cbuild-dir=build/mutations"], cwd=ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL)


def failed_tests(env, fast, tests):
    select = ["-m", "not slow", "-k", "not peak_memory"] if fast else []
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rf",
                             *select, *tests], cwd=ROOT, capture_output=True, text=True, env=env)
    failed = sorted(set(re.findall(r"^FAILED (\S+?)(?:\[| |$)", result.stdout, re.M)))
    if result.returncode not in (0, 1):  # a signal (negative) or pytest's own error: the run itself broke
        failed.append(f"(the test run ended with status {result.returncode}: "
                      f"{(result.stdout + result.stderr).strip().splitlines()[-1:] or 'no output'})")
    return failed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", choices=[[]] + list(MUTATIONS))
    p.add_argument("--list", action="store_true")
    p.add_argument("--fast", action="store_true", help="leave out the slow tests")
    p.add_argument("--tests", nargs="+", default=["tests"], help="test files to run (default: all)")
    args = p.parse_args()
    if args.list:
        for name, (path, _, _, what) in MUTATIONS.items():
            print(f"{name:24s} {path:28s} {what}")
        return 0
    env = dict(os.environ)
    survived = []
    for name in args.names or list(MUTATIONS):
        path, old, new, what = MUTATIONS[name]
        full = os.path.join(ROOT, path)
        with open(full) as f:
            original = f.read()
        if original.count(old) != 1:
            print(f"{name}: the text to break is not in {path} exactly once; update the mutation", flush=True)
            survived.append(name)
            continue
        try:
            with open(full, "w") as f:
                f.write(original.replace(old, new))
            build(env)
            failed = failed_tests(env, args.fast, args.tests)
        finally:
            with open(full, "w") as f:
                f.write(original)
        print(f"{name} ({what}): " + (f"caught by {len(failed)} test(s): {', '.join(failed)}" if failed else "SURVIVED"),
              flush=True)
        if not failed:
            survived.append(name)
    build(env)  # the unbroken sources again
    print("survived: " + (", ".join(survived) if survived else "none"))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
