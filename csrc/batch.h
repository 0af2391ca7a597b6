#ifndef FN_BATCH_H
#define FN_BATCH_H
#include <stdint.h>

/* A training batch gathered from the dataset: dst row r = src row idx[r], r < n, rows of row_bytes bytes (any item
 * type: it is a copy). Rows are split among threads, one per FN_GATHER_GRAIN bytes (16 KB; fn_threads_for):
 * shuffled rows come from anywhere in a dataset far larger than the caches, so one thread waits on memory for each,
 * and a batch of MNIST images (128 x 3136 bytes) took 130-150 us on one thread here.
 * Reference: numpy.take(src, idx, axis=0); tests: tests/test_kernels.py test_gather_rows*. */
int fn_gather_rows(void *dst, const void *src, const int64_t *idx, int64_t n, int64_t row_bytes, int n_threads);

#endif
