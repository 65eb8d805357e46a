/* np_sync.c -- futex wait/wake, clocks and the futex mutex. See np_sync.h. */
#define _GNU_SOURCE
#include "np_sync.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int64_t
np_monotonic_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        abort();   /* cannot fail with a valid clock id */
    }
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
np_deadline_after(double seconds)
{
    int64_t now = np_monotonic_ns();
    if (!(seconds > 0)) {           /* negative, zero or NaN */
        return now;
    }
    /* 9.2e18 ns is about 292 years: anything beyond is "forever". */
    if (seconds >= (double)(INT64_MAX - now) / 1e9) {
        return NP_FOREVER;
    }
    return now + (int64_t)(seconds * 1e9);
}

int
np_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != NP_FOREVER) {
        if (deadline_ns <= np_monotonic_ns()) {
            return NP_ETIMEDOUT;
        }
        ts.tv_sec = (time_t)(deadline_ns / 1000000000);
        ts.tv_nsec = (long)(deadline_ns % 1000000000);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a
     * caller that retries after EINTR does not stretch its timeout.  The
     * _Atomic uint32_t has the same representation as uint32_t on Linux. */
    long r = syscall(SYS_futex, (uint32_t *)addr,
                     FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp,
                     NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == 0) {
        return NP_OK;
    }
    switch (errno) {
    case EAGAIN:
        return NP_EAGAIN;
    case ETIMEDOUT:
        return NP_ETIMEDOUT;
    case EINTR:
        return NP_EINTR;
    default:
        abort();   /* EFAULT/EINVAL: a bug in the caller, not a runtime state */
    }
}

void
np_futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n,
            NULL, NULL, 0);
}

int
np_mutex_lock_until(np_mutex *m, int64_t deadline_ns, int interruptible)
{
    uint32_t c = 0;
    if (atomic_compare_exchange_strong_explicit(&m->word, &c, 1,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        return NP_OK;
    }
    /* Contended: mark the word 2 ("maybe sleepers") before sleeping, so the
     * owner's unlock knows to wake us.  Once we have set 2 we must keep
     * taking the lock with 2, since we cannot know whether others sleep. */
    if (c != 2) {
        c = atomic_exchange_explicit(&m->word, 2, memory_order_acquire);
    }
    while (c != 0) {
        int r = np_futex_wait(&m->word, 2, deadline_ns);
        if (r == NP_ETIMEDOUT || (r == NP_EINTR && interruptible)) {
            return r;
        }
        c = atomic_exchange_explicit(&m->word, 2, memory_order_acquire);
    }
    return NP_OK;
}
