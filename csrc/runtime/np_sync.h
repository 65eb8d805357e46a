/*
 * np_sync.h -- the waiting primitives everything else in nativepool is built on.
 *
 * Plain C11 + Linux futexes; no Python.h (see ../../DESIGN notes in README).
 *
 * Why futexes and not pthread condition variables: a futex wait returns EINTR
 * when a signal handler runs in the waiting thread, which is what lets the
 * binding layer turn Ctrl-C into KeyboardInterrupt promptly (CPython's own
 * lock does the same with sem_clockwait).  pthread_cond_wait restarts silently
 * after a signal, so a main thread blocked in it could not be interrupted.
 *
 * The futex rule that makes lost wakeups impossible: a waiter passes the value
 * it saw; the kernel re-checks the word under its own bucket lock and refuses
 * to sleep if the word changed.  So a waker must change the word *before*
 * waking, and a waiter must re-check its condition after every return.
 */
#ifndef NP_SYNC_H
#define NP_SYNC_H

#include <stdatomic.h>
#include <stdint.h>

/* Return codes shared by the runtime (negative, errno-like, never raise). */
#define NP_OK          0
#define NP_EAGAIN     (-1)   /* the word did not hold the expected value */
#define NP_ETIMEDOUT  (-2)   /* the deadline passed */
#define NP_EINTR      (-3)   /* a signal handler ran in this thread */
#define NP_ECLOSED    (-4)   /* the object no longer accepts work */
#define NP_ENOMEM     (-5)

/* A deadline is an absolute CLOCK_MONOTONIC time in nanoseconds;
 * NP_FOREVER means no deadline. */
#define NP_FOREVER    INT64_MAX

int64_t np_monotonic_ns(void);

/* Convert a relative timeout in seconds to a deadline.  Negative or NaN
 * seconds mean "now" (callers decide what a negative timeout means before
 * calling); values too large for int64 nanoseconds give NP_FOREVER. */
int64_t np_deadline_after(double seconds);

/* Sleep while *addr == expected, until woken, the deadline passes or a signal
 * handler runs.  Returns NP_OK (woken, or spurious: re-check), NP_EAGAIN,
 * NP_ETIMEDOUT or NP_EINTR. */
int np_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns);

/* Wake up to n threads sleeping on addr (n = INT32_MAX for all). */
void np_futex_wake(_Atomic uint32_t *addr, int n);

/* One pause of a spin-wait loop: tells the CPU we are spinning (cheaper for
 * the sibling hyperthread, and no memory-order mis-speculation on exit). */
static inline void
np_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * np_mutex: a 32-bit futex mutex (Drepper, "Futexes Are Tricky", mutex 2).
 *
 *     0  unlocked
 *     1  locked, nobody sleeping
 *     2  locked, maybe somebody sleeping: unlock must wake
 *
 * Uncontended lock and unlock are one atomic instruction each and never enter
 * the kernel.  Not recursive, no owner tracking: callers that need those build
 * them on top.
 */
typedef struct {
    _Atomic uint32_t word;
} np_mutex;

#define NP_MUTEX_INIT {0}

static inline int
np_mutex_trylock(np_mutex *m)
{
    uint32_t expected = 0;
    /* acquire: everything the previous owner wrote before unlocking is
     * visible to us once we own the lock. */
    return atomic_compare_exchange_strong_explicit(
        &m->word, &expected, 1, memory_order_acquire, memory_order_relaxed);
}

/* Block until locked, the deadline passes (NP_ETIMEDOUT) or, when
 * interruptible is non-zero, a signal handler runs (NP_EINTR). */
int np_mutex_lock_until(np_mutex *m, int64_t deadline_ns, int interruptible);

/* Block until locked.  Signals do not interrupt it. */
static inline void
np_mutex_lock(np_mutex *m)
{
    if (!np_mutex_trylock(m)) {
        (void)np_mutex_lock_until(m, NP_FOREVER, 0);
    }
}

static inline void
np_mutex_unlock(np_mutex *m)
{
    /* release: publish our writes to the next owner.  If the word was 2,
     * someone may be asleep in the kernel and must be woken. */
    if (atomic_exchange_explicit(&m->word, 0, memory_order_release) == 2) {
        np_futex_wake(&m->word, 1);
    }
}

/* Release m for a holder whose waiters never park (they poll with
 * np_cpu_relax and sleeps instead): a release store is the whole unlock,
 * one atomic read-modify-write per critical section instead of two.  Only
 * for a mutex that no one ever waits on with np_mutex_lock. */
static inline void
np_mutex_unlock_nowake(np_mutex *m)
{
    atomic_store_explicit(&m->word, 0, memory_order_release);
}

/* In a fork child only: whoever held m in the parent does not exist here.
 * Make it unlocked again, waking nobody (nobody sleeps on it in the child,
 * whose only thread is the one that forked). */
static inline void
np_mutex_reinit(np_mutex *m)
{
    atomic_store_explicit(&m->word, 0, memory_order_relaxed);
}

static inline int
np_mutex_is_locked(np_mutex *m)
{
    return atomic_load_explicit(&m->word, memory_order_relaxed) != 0;
}

#endif /* NP_SYNC_H */
