/*
 * np_sem.h -- a counting semaphore word with spin-then-park waits: the one
 * primitive behind nativepool's Lock, Semaphore, BoundedSemaphore and Event.
 *
 * Plain C11 + futexes; no Python.h.
 *
 *   value     the count (Lock: 1 = unlocked; Event: 1 = set)
 *   sleepers  threads inside the futex wait, or about to enter it
 *
 * No lost wakeup: a waiter increments `sleepers` and then re-reads `value`
 * before sleeping on it; a releaser changes `value` and then reads
 * `sleepers`.  All four accesses are seq_cst, so one of the two sides sees
 * the other's write: either the waiter sees the new value and does not
 * sleep, or the releaser sees the sleeper and wakes it (and the futex
 * itself refuses to sleep if `value` changed in between).
 *
 * Spinning: before parking, a waiter polls `value` for a bounded time
 * (NP_SEM_SPIN_NS).  A hand-off between two running threads then costs no
 * futex sleep/wake pair, which is what dominates a ping-pong on a small
 * machine.  The spin is bounded and only happens on a wait that is about
 * to block; an idle thread parks in the kernel and burns nothing.  Callers
 * spin only with the GIL released.
 */
#ifndef NP_SEM_H
#define NP_SEM_H

#include <stdatomic.h>
#include <stdint.h>

#include "np_sync.h"

/* How long a blocking wait polls before it parks. */
#define NP_SEM_SPIN_NS 20000

typedef struct {
    _Atomic uint32_t value;
    _Atomic uint32_t sleepers;
} np_sem;

#define NP_SEM_INIT(v) {(v), 0}

/* Take one unit if available without waiting.  1 taken, 0 not. */
static inline int
np_sem_trytake(np_sem *s)
{
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    while (v > 0) {
        /* acquire: pairs with the releaser's increment, so what the last
         * holder wrote before release is visible to us. */
        if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            return 1;
        }
    }
    return 0;
}

/* Flags for the blocking calls. */
#define NP_SEM_INTERRUPTIBLE 1   /* return NP_EINTR when a signal handler ran */
#define NP_SEM_NOSPIN        2   /* park at once */
/* Spin, then return NP_EAGAIN instead of parking.  A caller that must look
 * at signals between the two (a signal handled while we spin does not
 * interrupt the later futex wait) calls again with NP_SEM_NOSPIN. */
#define NP_SEM_SPIN_ONLY     4

/* Take one unit, waiting until the deadline.  Returns NP_OK, NP_ETIMEDOUT
 * or (interruptible) NP_EINTR.  If `slept` is not NULL it is set to 1 when
 * the call had to wait at all (the binding's contention statistics). */
int np_sem_take(np_sem *s, int64_t deadline_ns, int flags, int *slept);

/* Wait until value != seen, without taking anything.  An Event keeps a
 * generation count in its word, so "changed" means "set() happened since
 * I looked", even if clear() followed at once. */
int np_sem_wait_change(np_sem *s, uint32_t seen, int64_t deadline_ns, int flags);

/* Wait until value != 0 without taking anything. */
static inline int
np_sem_wait_nonzero(np_sem *s, int64_t deadline_ns, int flags)
{
    return np_sem_wait_change(s, 0, deadline_ns, flags);
}

/* Wake every sleeper, after changing value yourself with a seq_cst
 * operation (the store half of the protocol above). */
void np_sem_wake_all(np_sem *s);

/* Add n units, waking up to n sleepers (all of them when wake_all).  With
 * max != 0, fail with NP_EAGAIN instead if value would exceed max (a
 * BoundedSemaphore's over-release, a Lock released while unlocked). */
int np_sem_give(np_sem *s, uint32_t n, uint32_t max, int wake_all);

static inline uint32_t
np_sem_value(np_sem *s)
{
    return atomic_load_explicit(&s->value, memory_order_acquire);
}

static inline uint32_t
np_sem_sleepers(np_sem *s)
{
    return atomic_load_explicit(&s->sleepers, memory_order_relaxed);
}

#endif /* NP_SEM_H */
