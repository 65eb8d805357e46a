/* waiting.c -- the one blocking helper every wait goes through, timeouts,
 * and the futures' recursive lock.
 *
 * The pattern (CPython's _PyMutex_LockTimed): try the fast path with the GIL
 * held; only then release the GIL and sleep; on EINTR retake the GIL and run
 * the signal handlers (so Ctrl-C raises KeyboardInterrupt in the main
 * thread), then sleep again until the same absolute deadline.
 */
#include "np_module.h"

#include <math.h>
#include <pthread.h>

int
np_parse_timeout(np_state *st, PyObject *timeout, int64_t *deadline_ns)
{
    if (timeout == NULL || timeout == Py_None) {
        *deadline_ns = NP_FOREVER;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError,
                         "timeout must be a number or None, not %.200s",
                         Py_TYPE(timeout)->tp_name);
        }
        return -1;
    }
    if (t > st->timeout_max) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return -1;
    }
    *deadline_ns = np_deadline_after(t);   /* <= 0 and NaN: now */
    return 0;
}

int
np_wait_word(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = np_futex_wait(word, expected, deadline_ns);
    Py_END_ALLOW_THREADS
    switch (r) {
    case NP_ETIMEDOUT:
        return 0;
    case NP_EINTR:
        /* Only the main thread runs handlers; elsewhere this is a no-op. */
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        return 1;
    default:
        return 1;
    }
}

/* Never wait for the GIL while holding one of our locks: a thread that
 * did would stall whoever holds the GIL and needs the lock (a worker
 * without the GIL must be able to take it and let go), and a fork in
 * between (the forking thread holds the GIL) would leave the lock held
 * forever in the child.  So the GIL is released while m is busy, we wait
 * for m to come free, let it go, and take it for real only with the GIL in
 * hand (a trylock).  Someone may take it in between: then we wait again.
 * No fairness is promised; every section under these locks is short. */
void
np_mutex_lock_blocking(np_mutex *m)
{
    while (!np_mutex_trylock(m)) {
        Py_BEGIN_ALLOW_THREADS
        np_mutex_lock(m);
        np_mutex_unlock(m);
        Py_END_ALLOW_THREADS
    }
}

/* ---- the recursive lock ------------------------------------------------ */

static unsigned long
self_id(void)
{
    return (unsigned long)pthread_self();
}

static inline void
take_ownership(np_rlock *l, unsigned long me)
{
    atomic_store_explicit(&l->owner, me, memory_order_relaxed);
    l->count = 1;
}

void
np_rlock_lock(np_rlock *l)
{
    unsigned long me = self_id();
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) == me) {
        l->count++;
        return;
    }
    /* Whoever holds it may need the GIL to finish (Python code inside
     * `with f._condition:`), so never sleep with the GIL. */
    np_mutex_lock_blocking(&l->mutex);
    take_ownership(l, me);
}

/* A worker without the GIL: block plainly.  Whoever holds the lock either
 * runs without the GIL too, or holds the GIL and can finish (nobody sleeps
 * on this lock while holding the GIL: see np_rlock_lock). */
void
np_rlock_lock_nogil(np_rlock *l)
{
    unsigned long me = self_id();
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) == me) {
        l->count++;
        return;
    }
    np_mutex_lock(&l->mutex);
    take_ownership(l, me);
}

int
np_rlock_lock_until(np_rlock *l, int64_t deadline_ns)
{
    unsigned long me = self_id();
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) == me) {
        l->count++;
        return 1;
    }
    /* As np_mutex_lock_blocking: the mutex is only taken with the GIL. */
    while (!np_mutex_trylock(&l->mutex)) {
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = np_mutex_lock_until(&l->mutex, deadline_ns, 1);
        if (r == NP_OK) {
            np_mutex_unlock(&l->mutex);
        }
        Py_END_ALLOW_THREADS
        if (r == NP_OK) {
            continue;
        }
        if (r == NP_ETIMEDOUT) {
            return 0;
        }
        if (PyErr_CheckSignals() < 0) {   /* NP_EINTR */
            return -1;
        }
    }
    take_ownership(l, me);
    return 1;
}

int
np_rlock_unlock(np_rlock *l)
{
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) != self_id()) {
        return -1;
    }
    if (--l->count == 0) {
        atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
        np_mutex_unlock(&l->mutex);
    }
    return 0;
}

void
np_rlock_after_fork(np_rlock *l)
{
    atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
    l->count = 0;
    np_mutex_reinit(&l->mutex);
}

int
np_rlock_is_owned(np_rlock *l)
{
    return atomic_load_explicit(&l->owner, memory_order_relaxed) == self_id();
}

/* ---- waiting for a future ---------------------------------------------- */

int
np_future_wait(np_future *f, int64_t deadline_ns)
{
    for (;;) {
        uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
        if (NPF_IS_DONE(s)) {
            return 1;
        }
        if (deadline_ns != NP_FOREVER && np_monotonic_ns() >= deadline_ns) {
            return 0;
        }
        if (!(s & NPF_SLEEPERS)) {
            /* Announce ourselves in the word we sleep on: the finisher's
             * exchange then sees the bit and wakes us.  If the CAS fails the
             * state moved; look again. */
            if (!atomic_compare_exchange_strong(&f->state, &s,
                                                s | NPF_SLEEPERS)) {
                continue;
            }
            s |= NPF_SLEEPERS;
        }
        int r = np_wait_word(&f->state, s, deadline_ns);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            return NPF_IS_DONE(atomic_load(&f->state)) ? 1 : 0;
        }
    }
}

/* ---- tasks the pool gives back ----------------------------------------- */

void
np_abandon_tasks(np_task *list, PyObject *exc)
{
    while (list != NULL) {
        np_task *next = list->next;
        np_pytask *t = (np_pytask *)list;
        t->abandon(t, exc);
        if (list->release != NULL) {
            list->release(list, NULL);
        }
        list = next;
    }
}

/* ---- synchronization objects: blocking, arguments, statistics ----------- */

static void
stats_waited(np_stats *s, int64_t ns)
{
    if (s == NULL) {
        return;
    }
    uint64_t w = ns > 0 ? (uint64_t)ns : 0;
    atomic_fetch_add_explicit(&s->contended, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->wait_total_ns, w, memory_order_relaxed);
    uint64_t m = atomic_load_explicit(&s->wait_max_ns, memory_order_relaxed);
    while (w > m && !atomic_compare_exchange_weak_explicit(
                        &s->wait_max_ns, &m, w, memory_order_relaxed,
                        memory_order_relaxed)) {
    }
}

/* The slow path shared by takes and Event waits: the GIL is released
 * around the spin and the park; EINTR runs the signal handlers and goes
 * back to waiting for the same deadline.
 *
 * Between the spin and the park we take the GIL back once to run pending
 * signal handlers: a Ctrl-C whose handler ran while we were spinning (not
 * in the futex wait) would otherwise not interrupt the park, and an
 * untimed wait would sit out the KeyboardInterrupt.  Retaking the GIL
 * there costs nothing we would not pay anyway: returning needs it. */
static int
sem_block(np_sem *s, uint32_t seen, int64_t deadline_ns, int take, np_stats *stats)
{
    int64_t t0 = stats ? np_monotonic_ns() : 0;
    int flags = NP_SEM_INTERRUPTIBLE | NP_SEM_SPIN_ONLY;
    for (;;) {
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = take ? np_sem_take(s, deadline_ns, flags, NULL)
                 : np_sem_wait_change(s, seen, deadline_ns, flags);
        Py_END_ALLOW_THREADS
        if (r == NP_EAGAIN) {        /* the spin did not do: park now */
            flags = NP_SEM_INTERRUPTIBLE | NP_SEM_NOSPIN;
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        }
        if (r == NP_OK) {
            if (stats != NULL) {
                stats_waited(stats, np_monotonic_ns() - t0);
            }
            return 1;
        }
        if (r == NP_ETIMEDOUT) {
            if (stats != NULL) {
                stats_waited(stats, np_monotonic_ns() - t0);
            }
            return 0;
        }
        if (PyErr_CheckSignals() < 0) {      /* NP_EINTR */
            return -1;
        }
    }
}

int
np_sem_take_blocking(np_sem *s, int64_t deadline_ns, np_stats *stats)
{
    if (np_sem_trytake(s)) {
        return 1;
    }
    if (deadline_ns != NP_FOREVER && deadline_ns <= np_monotonic_ns()) {
        return 0;     /* non-blocking, or no time left: no spin, no park */
    }
    return sem_block(s, 0, deadline_ns, 1, stats);
}

void
np_sem_take_uninterruptible(np_sem *s, np_stats *stats)
{
    if (np_sem_trytake(s)) {
        return;
    }
    int64_t t0 = stats ? np_monotonic_ns() : 0;
    Py_BEGIN_ALLOW_THREADS
    /* Not NP_SEM_INTERRUPTIBLE: EINTR goes back to waiting; the signal
     * stays pending for the caller to deliver once the unit is taken. */
    (void)np_sem_take(s, NP_FOREVER, 0, NULL);
    Py_END_ALLOW_THREADS
    if (stats != NULL) {
        stats_waited(stats, np_monotonic_ns() - t0);
    }
}

int
np_sem_wait_change_blocking(np_sem *s, uint32_t seen, int64_t deadline_ns)
{
    if (np_sem_value(s) != seen) {
        return 1;
    }
    if (deadline_ns != NP_FOREVER && deadline_ns <= np_monotonic_ns()) {
        return 0;
    }
    return sem_block(s, seen, deadline_ns, 0, NULL);
}

int
np_parse_lock_acquire(np_state *st, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, int64_t *deadline_ns)
{
    PyObject *blocking_obj = NULL, *timeout_obj = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "acquire() takes at most 2 arguments (%zd given)", nargs);
        return -1;
    }
    if (nargs > 0) {
        blocking_obj = args[0];
    }
    if (nargs > 1) {
        timeout_obj = args[1];
    }
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        PyObject **slot;
        if (PyUnicode_CompareWithASCIIString(name, "blocking") == 0) {
            slot = &blocking_obj;
        }
        else if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0) {
            slot = &timeout_obj;
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "acquire() got an unexpected keyword argument '%U'", name);
            return -1;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "acquire() got multiple values for argument '%U'", name);
            return -1;
        }
        *slot = args[nargs + k];
    }
    int blocking = 1;
    if (blocking_obj != NULL && (blocking = PyObject_IsTrue(blocking_obj)) < 0) {
        return -1;
    }
    double timeout = -1;
    if (timeout_obj != NULL) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (isnan(timeout)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    if (!blocking && timeout != -1) {
        PyErr_SetString(PyExc_ValueError,
                        "can't specify a timeout for a non-blocking call");
        return -1;
    }
    if (timeout < 0 && timeout != -1) {
#if PY_VERSION_HEX >= 0x030D0000
        PyErr_SetString(PyExc_ValueError,
                        "timeout value must be a non-negative number");
#else
        PyErr_SetString(PyExc_ValueError, "timeout value must be positive");
#endif
        return -1;
    }
    if (timeout > st->timeout_max) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return -1;
    }
    if (!blocking) {
        *deadline_ns = np_monotonic_ns();
    }
    else if (timeout == -1) {
        *deadline_ns = NP_FOREVER;
    }
    else {
        *deadline_ns = np_deadline_after(timeout);
    }
    return 0;
}

PyObject *
np_stats_dict(np_stats *s)
{
    return Py_BuildValue(
        "{sKsKsdsd}", "acquisitions",
        (unsigned long long)atomic_load(&s->acquisitions), "contended",
        (unsigned long long)atomic_load(&s->contended), "wait_total",
        (double)atomic_load(&s->wait_total_ns) / 1e9, "wait_max",
        (double)atomic_load(&s->wait_max_ns) / 1e9);
}

void
np_stats_reset(np_stats *s)
{
    atomic_store(&s->acquisitions, 0);
    atomic_store(&s->contended, 0);
    atomic_store(&s->wait_total_ns, 0);
    atomic_store(&s->wait_max_ns, 0);
}
