/* future_native.c -- how a native task's future changes state on a worker
 * that does not hold the GIL, and how its C outcome becomes Python.
 */
#include "np_native.h"

/* ---- native tasks: completion without the GIL -----------------------------
 *
 * A native task's worker does not hold the GIL.  Transitions take the
 * future's lock with np_rlock_lock_nogil; nobody ever sleeps on that lock
 * while holding the GIL (np_rlock_lock drops it first), so a worker that
 * holds the lock may take the GIL.  It does so only when Python must run:
 *   - stdlib waiters (concurrent.futures.wait/as_completed) must be told in
 *     the same critical section as the transition, or one installed in
 *     between would count the future twice: with waiters present, the GIL
 *     is taken while the lock is held;
 *   - done callbacks run after the lock is released, with the GIL.
 * `f->waiters` (and its size) and `f->callbacks` are only written under
 * the lock, so reading them under it without the GIL is race-free. */

/* Lock and GIL held, the call run: convert its outcome into result or
 * exception, once, and free the call.  Whatever the conversion gives (even
 * a MemoryError for a result too big to convert, or the exception of a C
 * API result function) is the future's outcome from then on. */
static void
take_outcome(np_future *f)
{
    np_ncall *c = f->ncall;
    f->ncall = NULL;
    f->result = np_ncall_outcome(c);
    if (f->result == NULL) {
        f->exception = np_fetch_exception();
    }
    np_ncall_free(c);
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

void
np_future_finish_native(np_state *st, np_future *f, void *worker)
{
    int took_gil = 0;
    PyObject *cbs = NULL;
    np_rlock_lock_nogil(&f->lock);
    /* RUNNING, unless someone called set_result()/set_exception() on the
     * running future by hand: then the first outcome stands, as in
     * finish().  Under the lock the state cannot leave RUNNING. */
    if (NPF_STATE(atomic_load(&f->state)) == NPF_RUNNING) {
        PyObject *meth = NULL;
        /* The stdlib adds and removes waiters only under _condition, our
         * lock, which we hold: the list's size is stable here. */
        if (f->waiters != NULL && PyList_GET_SIZE(f->waiters) > 0) {
            /* The GIL is needed anyway: convert the outcome now, so the
             * waiters hear add_result or add_exception exactly as for a
             * Python task.  (A conversion that fails, even for lack of
             * memory, fails the future.) */
            np_worker_hold_gil(worker);
            took_gil = 1;
            take_outcome(f);
            meth = f->exception ? st->str_add_exception : st->str_add_result;
        }
        if (np_future_become_done(f, NPF_RUNNING, NPF_FINISHED, meth, &cbs) < 0) {
            cbs = NULL;   /* not reachable: RUNNING is stable under the lock */
        }
    }
    np_rlock_unlock(&f->lock);
    if (cbs != NULL) {
        np_worker_hold_gil(worker);
        took_gil = 1;
        np_future_run_callbacks(st, f, cbs);
    }
    if (took_gil) {
        np_reclaim_drain(st);   /* we hold the GIL anyway */
        np_worker_drop_gil(worker);
    }
}

void
np_future_materialize(np_future *f)
{
    if (f->ncall == NULL) {
        return;
    }
    np_rlock_lock(&f->lock);
    /* Only a finished call has an outcome; a cancelled one never ran. */
    if (f->ncall != NULL &&
        NPF_STATE(atomic_load_explicit(&f->state, memory_order_acquire)) ==
            NPF_FINISHED &&
        f->result == NULL && f->exception == NULL) {
        take_outcome(f);
    }
    np_rlock_unlock(&f->lock);
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

