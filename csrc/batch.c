#include <string.h>

#include "fastnet.h"
#include "internal.h"

#define FN_GATHER_GRAIN (16 * 1024)

int fn_gather_rows(void *dst, const void *src, const int64_t *idx, int64_t n, int64_t row_bytes, int n_threads) {
    FN_PARALLEL_FOR(fn_threads_for(n * row_bytes, FN_GATHER_GRAIN, n_threads), r, n,
                    memcpy((char *)dst + r * row_bytes, (const char *)src + idx[r] * row_bytes, (size_t)row_bytes));
    return FN_OK;
}
