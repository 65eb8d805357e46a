/* future_native.c -- how a native task's future changes state on a worker
 * that does not hold the GIL, and how its C outcome becomes Python.
 */
#include "np_native.h"

#include <pthread.h>
#include <unistd.h>

/* ---- native tasks: completion without the GIL -----------------------------
 *
 * A native task's worker does not hold the GIL.  Transitions take the
 * future's lock with np_rlock_lock_nogil, and the worker never waits for
 * the GIL while holding it (a thread that did would stall every GIL holder
 * that needs the lock, and a fork in between would leave the lock held
 * forever in the child).  The GIL is taken only when Python must run, and
 * always outside the lock:
 *   - stdlib waiters (concurrent.futures.wait/as_completed) must hear
 *     add_result or add_exception: the outcome is converted first, then
 *     the transition made and the waiters taken in one critical section
 *     (so none is counted twice), and told after it;
 *   - done callbacks run after the lock is released.
 * `f->waiters` (and its size) and `f->callbacks` are only written under
 * the lock, so reading them under it without the GIL is race-free. */

static unsigned long
self_thread(void)
{
    return (unsigned long)pthread_self();
}

/* GIL held, the call run: its outcome as a new reference, or NULL with the
 * exception in *exc.  Whatever the conversion gives (even a MemoryError
 * for a result too big to convert, or the exception of a C API result
 * function or of an unpickler) is the future's outcome from then on.
 * f->converting names this thread meanwhile (see wait_converting). */
static PyObject *
convert_outcome(np_future *f, np_ncall *c, PyObject **exc)
{
    atomic_store_explicit(&f->converting, self_thread(), memory_order_relaxed);
    PyObject *res = np_ncall_outcome(c);
    *exc = res != NULL ? NULL : np_fetch_exception();
    atomic_store_explicit(&f->converting, 0, memory_order_relaxed);
    return res;
}

int
np_future_converting_here(np_future *f)
{
    if (atomic_load_explicit(&f->converting, memory_order_relaxed) !=
        self_thread()) {
        return 0;
    }
    PyErr_SetString(PyExc_RuntimeError,
                    "the future's outcome was asked for while it is being "
                    "converted (unpickled) on this same thread");
    return 1;
}

int
np_future_set_running_nogil(np_state *st, np_future *f, void *worker)
{
    if (np_future_try_start(f)) {
        return 1;
    }
    /* Cancelled while queued (or completed by hand): rare, so simply take
     * the GIL and do what a Python task's worker does. */
    np_worker_hold_gil(worker);
    int r = np_future_set_running(st, f);
    if (r < 0) {
        PyErr_Clear();   /* logged at CRITICAL by set_running */
    }
    np_worker_drop_gil(worker);
    return r > 0;
}

/* A running future with stdlib waiters: they must hear add_result or
 * add_exception, so the outcome is converted first, with the GIL and under
 * no lock (nobody else touches a running future's call), then published
 * and the transition made under the lock; the notice is delivered after. */
static void
finish_telling_waiters(np_state *st, np_future *f, np_done_notice *n)
{
    np_ncall *c = f->ncall;
    PyObject *exc;
    PyObject *res = convert_outcome(f, c, &exc);
    np_rlock_lock(&f->lock);
    if (NPF_STATE(atomic_load(&f->state)) == NPF_RUNNING) {
        f->result = res;
        f->exception = exc;
        f->ncall = NULL;
        (void)np_future_become_done(f, NPF_RUNNING, NPF_FINISHED,
                                    exc ? st->str_add_exception
                                        : st->str_add_result, n);
        np_rlock_unlock(&f->lock);
        np_ncall_free(c);
        return;
    }
    /* set_result()/set_exception() by hand meanwhile: the first outcome
     * stands, as in finish(). */
    np_rlock_unlock(&f->lock);
    Py_XDECREF(res);
    Py_XDECREF(exc);
}

void
np_future_finish_native(np_state *st, np_future *f, void *worker)
{
    np_done_notice n = NP_DONE_NOTICE_INIT;
    int took_gil = 0;
    np_rlock_lock_nogil(&f->lock);
    /* RUNNING, unless someone called set_result()/set_exception() on the
     * running future by hand: then the first outcome stands.  The stdlib
     * adds and removes waiters only under _condition, our lock, which we
     * hold: the list's size is stable here. */
    if (NPF_STATE(atomic_load(&f->state)) != NPF_RUNNING) {
        np_rlock_unlock(&f->lock);
    }
    else if (f->waiters == NULL || PyList_GET_SIZE(f->waiters) == 0) {
        /* Nobody to tell which outcome: finish without the GIL; the outcome
         * is converted when someone first looks (np_future_materialize). */
        (void)np_future_become_done(f, NPF_RUNNING, NPF_FINISHED, NULL, &n);
        np_rlock_unlock(&f->lock);
    }
    else {
        /* Never wait for the GIL holding the lock: let it go first. */
        np_rlock_unlock(&f->lock);
        np_worker_hold_gil(worker);
        took_gil = 1;
        finish_telling_waiters(st, f, &n);
    }
    if (n.cbs != NULL || n.nwaiters > 0) {
        np_worker_hold_gil(worker);
        took_gil = 1;
        np_future_deliver(st, f, &n);
    }
    if (took_gil) {
        np_reclaim_drain(st);   /* we hold the GIL anyway */
        np_worker_drop_gil(worker);
    }
}

/* ---- converting a finished call's outcome -----------------------------------
 *
 * A native future that finished without the GIL keeps its C outcome in
 * f->ncall until someone with the GIL converts it.  The conversion may run
 * Python for as long as it likes (a ProcessPool reply is unpickled), so it
 * runs under no lock.  One thread claims it by setting NPF_CONVERTING in the
 * state word (a CAS; a FINISHED future's word changes no other way); anyone
 * else who needs the outcome meanwhile sleeps on the word, GIL released.
 * The converter publishes the outcome first, then clears ncall, then the
 * bit (waking the sleepers), so whoever sees ncall NULL sees the outcome.
 * The converting thread asking again (an unpickler that calls f.result())
 * gets a RuntimeError; a converter that did not survive os.fork() (its pid
 * is not ours) is taken over.
 */
int
np_future_materialize(np_future *f)
{
    for (;;) {
        np_ncall *c = f->ncall;
        uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
        /* Only a finished call has an outcome (a cancelled one never ran);
         * one set by hand on the running future stands. */
        if (c == NULL || NPF_STATE(s) != NPF_FINISHED ||
            f->result != NULL || f->exception != NULL) {
            return 0;
        }
        if (s & NPF_CONVERTING) {
            if (f->converting_pid == (long)getpid()) {
                if (np_future_converting_here(f)) {
                    return -1;
                }
                uint32_t want = s | NPF_SLEEPERS;
                if (want != s &&
                    !atomic_compare_exchange_strong(&f->state, &s, want)) {
                    continue;
                }
                if (np_wait_word(&f->state, want, NP_FOREVER) < 0) {
                    return -1;   /* Ctrl-C while another thread converts */
                }
                continue;
            }
            /* Claimed in the parent by a thread that is gone: ours now. */
        }
        else if (!atomic_compare_exchange_strong(&f->state, &s,
                                                 s | NPF_CONVERTING)) {
            continue;
        }
        f->converting_pid = (long)getpid();
        PyObject *exc;
        PyObject *res = convert_outcome(f, c, &exc);
        f->result = res;
        f->exception = exc;
        f->ncall = NULL;
        uint32_t old = atomic_fetch_and(&f->state,
                                        ~(uint32_t)(NPF_CONVERTING | NPF_SLEEPERS));
        if (old & NPF_SLEEPERS) {
            np_futex_wake(&f->state, INT32_MAX);
        }
        np_ncall_free(c);
        return 0;
    }
}

void
np_future_settle(np_future *f)
{
    if (f->ncall != NULL && np_future_materialize(f) < 0) {
        PyErr_Clear();   /* the converter itself: it will publish */
    }
}

void
np_future_after_fork(np_future *f)
{
    np_rlock_after_fork(&f->lock);
    atomic_store_explicit(&f->converting, 0, memory_order_relaxed);
}

/* A native future that will never run (cancelled): unpin its buffers now.
 * Not a ProcessPool task's call (no kernel): the pool may still be looking
 * at it without the GIL; it goes with the future. */
void
np_future_drop_unrun_call(np_future *f)
{
    if (f->ncall != NULL && f->ncall->kernel != NULL &&
        NPF_STATE(atomic_load(&f->state)) != NPF_FINISHED) {
        np_ncall *c = f->ncall;
        f->ncall = NULL;
        np_ncall_free(c);
    }
}

