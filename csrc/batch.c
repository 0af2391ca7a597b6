#include <string.h>

#include "fastnet.h"
#include "internal.h"

#define FN_GATHER_GRAIN (16 * 1024)

int fn_gather_rows(void *dst, const void *src, const int64_t *idx, int64_t n, int64_t row_bytes, int n_threads) {
    const int nt = (int)fn_min64(n_threads, fn_max64(1, n * row_bytes / FN_GATHER_GRAIN));
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < n; r++)
        memcpy((char *)dst + r * row_bytes, (const char *)src + idx[r] * row_bytes, (size_t)row_bytes);
    return FN_OK;
}
