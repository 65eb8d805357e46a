/* np_sem.c -- the semaphore word.  See np_sem.h for the protocol. */
#include "np_sem.h"

#include <limits.h>
#include <sched.h>
#include <stddef.h>

/* Poll value until it differs from `seen`, for at most NP_SEM_SPIN_NS (and
 * never past the deadline).  1 if it changed. */
static int
spin_for_change(np_sem *s, uint32_t seen, int64_t deadline_ns)
{
    int64_t end = np_monotonic_ns() + NP_SEM_SPIN_NS;
    if (end > deadline_ns) {
        end = deadline_ns;
    }
    for (unsigned i = 1;; i++) {
        /* acquire: a wait that ends here must see what the waker wrote
         * before its change, as one that ends after parking does. */
        if (atomic_load_explicit(&s->value, memory_order_acquire) != seen) {
            return 1;
        }
        np_cpu_relax();
        /* Now and then: read the clock (~20 ns), and yield the CPU, so
         * that if the thread we wait for shares our core it runs now
         * instead of after our whole spin (sched_yield returns at once
         * when nothing else is runnable here). */
        if ((i & 63) == 0) {
            if (np_monotonic_ns() >= end) {
                return 0;
            }
            sched_yield();
        }
    }
}

/* Sleep while value == seen.  The sleepers count brackets the futex wait;
 * see np_sem.h for why that cannot lose a wakeup. */
static int
park(np_sem *s, uint32_t seen, int64_t deadline_ns)
{
    int r = NP_OK;
    atomic_fetch_add(&s->sleepers, 1);
    if (atomic_load(&s->value) == seen) {
        r = np_futex_wait(&s->value, seen, deadline_ns);
    }
    atomic_fetch_sub(&s->sleepers, 1);
    return r;
}

/* One waiting loop for "take a unit" (take: wait while value == 0, then
 * take one) and "wait for a change" (value != seen). */
static int
wait_loop(np_sem *s, uint32_t seen, int64_t deadline_ns, int flags, int take)
{
    int spin = !(flags & NP_SEM_NOSPIN);
    for (;;) {
        if (spin) {
            spin = 0;   /* once per call: after a wakeup we lost, park */
            if (spin_for_change(s, seen, deadline_ns) &&
                (!take || np_sem_trytake(s))) {
                return NP_OK;
            }
            if (flags & NP_SEM_SPIN_ONLY) {
                return NP_EAGAIN;
            }
            continue;
        }
        int r = park(s, seen, deadline_ns);
        if (take ? np_sem_trytake(s) : np_sem_value(s) != seen) {
            return NP_OK;
        }
        if (r == NP_ETIMEDOUT ||
            (deadline_ns != NP_FOREVER && np_monotonic_ns() >= deadline_ns)) {
            return NP_ETIMEDOUT;
        }
        if (r == NP_EINTR && (flags & NP_SEM_INTERRUPTIBLE)) {
            return NP_EINTR;
        }
    }
}

int
np_sem_take(np_sem *s, int64_t deadline_ns, int flags, int *slept)
{
    if (np_sem_trytake(s)) {
        if (slept != NULL) {
            *slept = 0;
        }
        return NP_OK;
    }
    if (slept != NULL) {
        *slept = 1;
    }
    return wait_loop(s, 0, deadline_ns, flags, 1);
}

int
np_sem_wait_change(np_sem *s, uint32_t seen, int64_t deadline_ns, int flags)
{
    if (np_sem_value(s) != seen) {
        return NP_OK;
    }
    return wait_loop(s, seen, deadline_ns, flags, 0);
}

void
np_sem_wake_all(np_sem *s)
{
    if (atomic_load(&s->sleepers) != 0) {
        np_futex_wake(&s->value, INT32_MAX);
    }
}

int
np_sem_give(np_sem *s, uint32_t n, uint32_t max, int wake_all)
{
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    do {
        if (v > UINT32_MAX - n || (max != 0 && v + n > max)) {
            return NP_EAGAIN;
        }
        /* seq_cst: the store half of the Dekker pair with park(). */
    } while (!atomic_compare_exchange_weak(&s->value, &v, v + n));
    if (atomic_load(&s->sleepers) != 0) {
        np_futex_wake(&s->value, wake_all || n > INT32_MAX ? INT32_MAX : (int)n);
    }
    return NP_OK;
}
