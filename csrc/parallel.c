/* The threads' runtime beside OpenMP: the barrier the kernels' parallel regions share (fn_barrier, internal.h),
 * and what the Python layer asks of OpenMP. */
#include <sched.h>

#include "fastnet.h"
#include "internal.h"

/* Pauses (some 60-140 cycles each) before a waiting thread yields its core, each turn. Spinning longer costs the
 * oversubscribed: set_num_threads(4) on 2 cores took 1,750 us to predict one image with the MLP at 20,000 (a
 * waiter spun while the thread it waited for had no core), 89 us at 300, 129 us with libgomp's barriers; two
 * processes of two threads on 2 cores, 50-61 us at 300, 2,400-2,800 us with libgomp's. */
#define FN_BARRIER_SPINS 300
#if defined(__x86_64__) || defined(__SSE2__)
#define fn_pause() _mm_pause()
#else
#define fn_pause() ((void)0)
#endif

void fn_barrier_wait(fn_barrier *b) {
#ifdef _OPENMP
    const int n = omp_get_num_threads();
    if (n == 1) return;
    const int round = __atomic_load_n(&b->round, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == n) { /* the last: open the next round */
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->round, round + 1, __ATOMIC_RELEASE);
        return;
    }
    for (int spins = 0; __atomic_load_n(&b->round, __ATOMIC_ACQUIRE) == round; spins++) {
        if (spins < FN_BARRIER_SPINS) fn_pause();
        else sched_yield();
    }
#else
    (void)b;
#endif
}

int fn_have_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fn_omp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
