/* future.c -- nativepool.Future: concurrent.futures.Future with a C core.
 *
 * FutureBase is a C heap type; python/nativepool/_future.py makes
 * `class Future(FutureBase, concurrent.futures.Future)`, so isinstance()
 * holds and whatever we do not define (repr, __class_getitem__) is the
 * stdlib's.  The stdlib helpers wait() and as_completed() reach into
 * _condition, _state and _waiters: we serve those as properties over the C
 * state, and every transition takes the same lock _condition takes, so a
 * waiter installed by wait() is never missed (see np_module.h).
 *
 * The stdlib allocates a threading.Condition (an RLock and a deque) per
 * future.  Ours costs one object; _condition is a small proxy made on
 * demand (future_cond.c).
 */
#include "np_module.h"

#include <stddef.h>


/* ---- completion -------------------------------------------------------- */

/* Tell one stdlib waiter: waiter.<meth>(f).  A failure is unraisable, as
 * nothing can report it. */
static void
notify_waiter(np_future *f, PyObject *w, PyObject *meth)
{
    PyObject *r = PyObject_CallMethodOneArg(w, meth, (PyObject *)f);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)f);
    }
    Py_XDECREF(r);
}

/* Lock held: take the stdlib waiters to tell into n, so they are told after
 * the lock is released (waiter.add_result runs Python, which must not run
 * under our lock).  Counting stays exact: the snapshot is taken in the same
 * critical section as the transition, so a waiter installed before it is
 * in the snapshot and saw the future not done, and one installed after it
 * sees the done state and is not in it.  Raw memory, so nothing here can
 * start a garbage collection; if even that fails, tell them now, under the
 * lock, as the stdlib does. */
static void
take_waiters(np_future *f, PyObject *meth, np_done_notice *n)
{
    Py_ssize_t count = f->waiters ? PyList_GET_SIZE(f->waiters) : 0;
    if (count == 0) {
        return;
    }
    PyObject **items = n->inline_;
    if (count > (Py_ssize_t)(sizeof(n->inline_) / sizeof(n->inline_[0]))) {
        items = PyMem_RawMalloc((size_t)count * sizeof(PyObject *));
        if (items == NULL) {
            for (Py_ssize_t i = 0; i < count; i++) {
                PyObject *w = PyList_GET_ITEM(f->waiters, i);
                Py_INCREF(w);
                notify_waiter(f, w, meth);
                Py_DECREF(w);
            }
            return;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        items[i] = PyList_GET_ITEM(f->waiters, i);
        Py_INCREF(items[i]);
    }
    n->meth = meth;
    n->waiters = items;
    n->nwaiters = count;
}

/* Move from state `from` to a done state.  Lock held.  Returns 0 and fills
 * *n with what np_future_deliver must do once the lock is released (the
 * waiters to tell, the callbacks to run); or -1 if the state is no longer
 * `from`, with *n untouched.
 *
 * Under the lock the state can change behind our back in one way only: a
 * worker's lock-free PENDING -> RUNNING (np_future_set_running).  So a
 * transition out of PENDING must be a CAS, or cancel() could overwrite
 * RUNNING and report a running call as cancelled.  Callers that see -1
 * look at the state again. */
int
np_future_become_done(np_future *f, uint32_t from, uint32_t newstate,
                      PyObject *waiter_meth, np_done_notice *n)
{
    /* seq_cst CAS: clears NPF_SLEEPERS and tells us whether anyone
     * announced sleeping before this point; later arrivals see the done
     * state and do not sleep. */
    uint32_t old = atomic_load(&f->state);
    do {
        if (NPF_STATE(old) != from) {
            return -1;
        }
    } while (!atomic_compare_exchange_weak(&f->state, &old, newstate));
    if (waiter_meth != NULL) {
        take_waiters(f, waiter_meth, n);
    }
    if (old & NPF_SLEEPERS) {
        np_futex_wake(&f->state, INT32_MAX);
    }
    n->cbs = f->callbacks;
    f->callbacks = NULL;
    return 0;
}

/* Drop what a notice holds without telling anyone (GIL held). */
static void
notice_clear_waiters(np_done_notice *n)
{
    for (Py_ssize_t i = 0; i < n->nwaiters; i++) {
        Py_DECREF(n->waiters[i]);
    }
    if (n->waiters != NULL && n->waiters != n->inline_) {
        PyMem_RawFree(n->waiters);
    }
    n->waiters = NULL;
    n->nwaiters = 0;
}

/* PENDING or RUNNING -> FINISHED with an outcome (references stolen).
 * Lock held.  Returns 0 (and the notice), or -1 with *state set to the
 * done state the future was already in; the outcome is then untouched. */
static int
become_finished(np_state *st, np_future *f, PyObject *result, PyObject *exc,
                np_done_notice *n, uint32_t *state)
{
    PyObject *meth = exc ? st->str_add_exception : st->str_add_result;
    for (;;) {
        uint32_t s = NPF_STATE(atomic_load(&f->state));
        if (s != NPF_PENDING && s != NPF_RUNNING) {
            *state = s;
            return -1;
        }
        f->result = result;
        f->exception = exc;
        if (np_future_become_done(f, s, NPF_FINISHED, meth, n) == 0) {
            return 0;
        }
        f->result = f->exception = NULL;   /* PENDING became RUNNING */
    }
}

/* Run done callbacks as concurrent.futures does: each gets the future, and a
 * failing one is logged on "concurrent.futures", never raised. */
static void
call_callback(np_state *st, np_future *f, PyObject *cb)
{
    PyObject *r = PyObject_CallOneArg(cb, (PyObject *)f);
    if (r != NULL) {
        Py_DECREF(r);
        return;
    }
    PyObject *exc = np_fetch_exception();
    np_log_exc(st->cf_logger, "error", "exception calling callback for %r",
               (PyObject *)f, exc);
    Py_XDECREF(exc);
}

void
np_future_deliver(np_state *st, np_future *f, np_done_notice *n)
{
    for (Py_ssize_t i = 0; i < n->nwaiters; i++) {
        notify_waiter(f, n->waiters[i], n->meth);
    }
    notice_clear_waiters(n);
    PyObject *cbs = n->cbs;
    n->cbs = NULL;
    if (cbs == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cbs); i++) {
        call_callback(st, f, PyList_GET_ITEM(cbs, i));
    }
    Py_DECREF(cbs);
}

static void
finish(np_state *st, np_future *f, PyObject *result, PyObject *exc)
{
    np_done_notice n = NP_DONE_NOTICE_INIT;
    uint32_t s;
    np_rlock_lock(&f->lock);
    if (become_finished(st, f, result, exc, &n, &s) < 0) {
        /* Only reachable through a race with set_result from Python on a
         * future that is also a pool task; the first outcome wins. */
        np_rlock_unlock(&f->lock);
        Py_XDECREF(result);
        Py_XDECREF(exc);
        return;
    }
    np_rlock_unlock(&f->lock);
    np_future_deliver(st, f, &n);
}

void
np_future_finish_result(np_state *st, np_future *f, PyObject *result)
{
    finish(st, f, result, NULL);
}

void
np_future_finish_exception(np_state *st, np_future *f, PyObject *exc)
{
    if (exc == NULL) {
        exc = np_fetch_exception();
    }
    else {
        Py_INCREF(exc);
    }
    finish(st, f, NULL, exc);
}

int
np_future_set_running(np_state *st, np_future *f)
{
    if (np_future_try_start(f)) {
        return 1;
    }
    np_done_notice n = NP_DONE_NOTICE_INIT;
    np_rlock_lock(&f->lock);
    uint32_t s = NPF_STATE(atomic_load(&f->state));
    if (s == NPF_CANCELLED &&
        np_future_become_done(f, NPF_CANCELLED, NPF_CANCELLED_NOTIFIED,
                              st->str_add_cancelled, &n) == 0) {
        np_rlock_unlock(&f->lock);
        Py_CLEAR(n.cbs);   /* cancel() already ran them */
        np_future_deliver(st, f, &n);
        return 0;
    }
    np_rlock_unlock(&f->lock);
    PyObject *r = PyObject_CallMethod(st->cf_logger, "critical", "snO",
                                      "Future %s in unexpected state: %s",
                                      (Py_ssize_t)(uintptr_t)f,
                                      st->state_names[s]);
    Py_XDECREF(r);
    PyErr_Clear();
    PyErr_SetString(PyExc_RuntimeError, "Future in unexpected state");
    return -1;
}

void
np_future_cancel_and_notify(np_state *st, np_future *f)
{
    np_done_notice n = NP_DONE_NOTICE_INIT;
    np_rlock_lock(&f->lock);
    uint32_t s = NPF_STATE(atomic_load(&f->state));
    /* A queued task is never RUNNING, so the CAS cannot lose here; a
     * future in any other state is left alone. */
    if ((s == NPF_PENDING || s == NPF_CANCELLED) &&
        np_future_become_done(f, s, NPF_CANCELLED_NOTIFIED, st->str_add_cancelled,
                              &n) == 0) {
        np_rlock_unlock(&f->lock);
        if (s == NPF_CANCELLED) {
            Py_CLEAR(n.cbs);   /* cancel() already ran them */
        }
        np_future_deliver(st, f, &n);
        return;
    }
    np_rlock_unlock(&f->lock);
}

/* ---- allocation -------------------------------------------------------- */

np_future *
np_future_new(np_state *st)
{
    PyTypeObject *tp = st->future_type;
    if (tp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "nativepool is not initialised");
        return NULL;
    }
    return (np_future *)tp->tp_alloc(tp, 0);   /* zeroed: PENDING */
}

static int
future_traverse(PyObject *op, visitproc visit, void *arg)
{
    np_future *f = NP_FUTURE(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(f->result);
    Py_VISIT(f->exception);
    Py_VISIT(f->callbacks);
    Py_VISIT(f->waiters);
    Py_VISIT(f->fn);
    Py_VISIT(f->args);
    Py_VISIT(f->kwnames);
    return 0;
}

static int
future_clear(PyObject *op)
{
    np_future *f = NP_FUTURE(op);
    Py_CLEAR(f->result);
    Py_CLEAR(f->exception);
    Py_CLEAR(f->callbacks);
    Py_CLEAR(f->waiters);
    Py_CLEAR(f->fn);
    Py_CLEAR(f->args);
    Py_CLEAR(f->kwnames);
    if (f->ncall != NULL) {
        /* Unreachable, so no worker holds it: the call is not running. */
        np_ncall *c = f->ncall;
        f->ncall = NULL;
        np_ncall_free(c);
    }
    return 0;
}

/* An exception nobody looked at is logged when the future goes away, so an
 * error in a worker never vanishes (asyncio does the same). */
static void
future_finalize(PyObject *op)
{
    np_future *f = NP_FUTURE(op);
    if (f->ncall != NULL && !f->retrieved && np_ncall_failed(f->ncall) &&
        NPF_STATE(atomic_load(&f->state)) == NPF_FINISHED) {
        PyObject *saved = np_fetch_exception();
        np_future_settle(f);
        if (saved != NULL) {
            np_raise_exception(saved);
            Py_DECREF(saved);
        }
    }
    if (f->exception == NULL || f->retrieved) {
        return;
    }
    np_state *st = np_state_from_type(Py_TYPE(op));
    if (st == NULL || !st->log_unretrieved || st->np_logger == NULL) {
        return;
    }
    PyObject *saved = np_fetch_exception();
    PyObject *exc = f->exception;
    Py_INCREF(exc);
    np_log_exc(st->np_logger, "error",
               "Future exception was never retrieved: %r", exc, exc);
    Py_DECREF(exc);
    if (saved != NULL) {
        np_raise_exception(saved);
        Py_DECREF(saved);
    }
}

static void
future_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return;   /* resurrected */
    }
    future_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static int
future_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Future() takes no arguments");
        return -1;
    }
    (void)op;
    return 0;
}

/* ---- the public methods ------------------------------------------------ */

static np_state *
fstate(PyObject *op)
{
    return np_state_from_type(Py_TYPE(op));
}

static PyObject *
future_cancel(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_future *f = NP_FUTURE(op);
    np_state *st = fstate(op);
    np_done_notice n = NP_DONE_NOTICE_INIT;
    np_rlock_lock(&f->lock);
    /* As in the stdlib, cancel() wakes result() callers but tells the
     * stdlib waiters nothing: set_running_or_notify_cancel() does that. */
    while (np_future_become_done(f, NPF_PENDING, NPF_CANCELLED, NULL, &n) < 0) {
        uint32_t s = NPF_STATE(atomic_load(&f->state));
        if (s == NPF_RUNNING || s == NPF_FINISHED) {
            np_rlock_unlock(&f->lock);
            Py_RETURN_FALSE;
        }
        if (s == NPF_CANCELLED || s == NPF_CANCELLED_NOTIFIED) {
            np_rlock_unlock(&f->lock);
            Py_RETURN_TRUE;
        }
    }
    np_rlock_unlock(&f->lock);
    np_future_drop_unrun_call(f);
    np_future_deliver(st, f, &n);
    Py_RETURN_TRUE;
}

static PyObject *
future_cancelled(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    uint32_t s = NPF_STATE(atomic_load(&NP_FUTURE(op)->state));
    return PyBool_FromLong(s == NPF_CANCELLED || s == NPF_CANCELLED_NOTIFIED);
}

static PyObject *
future_running(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    uint32_t s = NPF_STATE(atomic_load(&NP_FUTURE(op)->state));
    return PyBool_FromLong(s == NPF_RUNNING);
}

static PyObject *
future_done(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(NPF_IS_DONE(atomic_load(&NP_FUTURE(op)->state)));
}

/* Parse the single parameter `name` of method `fname`, passed by position
 * or keyword (the stdlib's methods are plain Python functions, so callers
 * may spell either).  An optional one left out stays *out. 0 or -1. */
static int
one_arg(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
        const char *fname, const char *name, int required, PyObject **out)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes %s1 argument (%zd given)",
                     fname, required ? "exactly " : "at most ", nargs + nkw);
        return -1;
    }
    if (nkw == 1 &&
        PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), name) != 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s() got an unexpected keyword argument '%U'", fname,
                     PyTuple_GET_ITEM(kwnames, 0));
        return -1;
    }
    if (nargs + nkw == 1) {
        *out = args[0];
    }
    else if (required) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing 1 required positional argument: '%s'",
                     fname, name);
        return -1;
    }
    return 0;
}

/* Wait for result()/exception(): 1 done, 0 timed out, -1 error. */
static int
wait_done(np_state *st, np_future *f, PyObject *timeout)
{
    int64_t deadline;
    if (np_parse_timeout(st, timeout, &deadline) < 0) {
        return -1;
    }
    /* A worker converting this future's outcome (an unpickler that asks
     * for it) would wait for itself. */
    if (np_future_converting_here(f)) {
        return -1;
    }
    return np_future_wait(f, deadline);
}

static PyObject *
future_result(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    np_future *f = NP_FUTURE(op);
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (NPF_STATE(s) == NPF_FINISHED && f->ncall == NULL &&
        f->exception == NULL && nargs <= 1) {
        /* The common case: done, no exception; skip argument parsing. */
        PyObject *res = f->result ? f->result : Py_None;
        Py_INCREF(res);
        return res;
    }
    np_state *st = fstate(op);
    PyObject *timeout;
    timeout = Py_None;
    if (one_arg(args, nargs, kwnames, "result", "timeout", 0, &timeout) < 0) {
        return NULL;
    }
    int r = NPF_IS_DONE(s) ? 1 : wait_done(st, f, timeout);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        PyErr_SetNone(st->TimeoutError);
        return NULL;
    }
    s = NPF_STATE(atomic_load_explicit(&f->state, memory_order_acquire));
    if (s != NPF_FINISHED) {
        PyErr_SetNone(st->CancelledError);
        return NULL;
    }
    if (np_future_materialize(f) < 0) {
        return NULL;
    }
    if (f->exception != NULL) {
        f->retrieved = 1;
        np_raise_exception(f->exception);
        return NULL;
    }
    PyObject *res = f->result ? f->result : Py_None;
    Py_INCREF(res);
    return res;
}

static PyObject *
future_exception(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    np_future *f = NP_FUTURE(op);
    np_state *st = fstate(op);
    PyObject *timeout;
    timeout = Py_None;
    if (one_arg(args, nargs, kwnames, "exception", "timeout", 0, &timeout) < 0) {
        return NULL;
    }
    /* A done future ignores its timeout, as the stdlib's does. */
    int r = NPF_IS_DONE(atomic_load(&f->state)) ? 1 : wait_done(st, f, timeout);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        PyErr_SetNone(st->TimeoutError);
        return NULL;
    }
    uint32_t s = NPF_STATE(atomic_load_explicit(&f->state, memory_order_acquire));
    if (s != NPF_FINISHED) {
        PyErr_SetNone(st->CancelledError);
        return NULL;
    }
    if (np_future_materialize(f) < 0) {
        return NULL;
    }
    f->retrieved = 1;
    PyObject *exc = f->exception ? f->exception : Py_None;
    Py_INCREF(exc);
    return exc;
}

static PyObject *
future_add_done_callback(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    np_future *f = NP_FUTURE(op);
    PyObject *fn;
    if (one_arg(args, nargs, kwnames, "add_done_callback", "fn", 1, &fn) < 0) {
        return NULL;
    }
    /* The list is made before the lock is taken: an allocation can collect
     * garbage, which runs finalizers, which must not run under our lock.
     * (Appending only resizes raw memory.)  If we skip making it, the list
     * existed or the future was done; only the done transition clears it,
     * so a future not done under the lock has a list, ours or its own. */
    PyObject *fresh = NULL;
    if (f->callbacks == NULL && !NPF_IS_DONE(atomic_load(&f->state))) {
        fresh = PyList_New(0);
        if (fresh == NULL) {
            return NULL;
        }
    }
    np_rlock_lock(&f->lock);
    int done = NPF_IS_DONE(atomic_load(&f->state));
    int r = 0;
    if (!done) {
        if (f->callbacks == NULL) {
            f->callbacks = fresh;
            fresh = NULL;
        }
        r = PyList_Append(f->callbacks, fn);
    }
    np_rlock_unlock(&f->lock);
    Py_XDECREF(fresh);
    if (!done) {
        if (r < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    call_callback(fstate(op), f, fn);
    Py_RETURN_NONE;
}

static PyObject *
future_set_running_or_notify_cancel(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    int r = np_future_set_running(fstate(op), NP_FUTURE(op));
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

/* set_result/set_exception from Python: InvalidStateError on a done
 * future, as concurrent.futures does since 3.8. */
static PyObject *
set_outcome(PyObject *op, PyObject *result, PyObject *exc)
{
    np_future *f = NP_FUTURE(op);
    np_state *st = fstate(op);
    np_done_notice n = NP_DONE_NOTICE_INIT;
    uint32_t s;
    Py_XINCREF(result);
    Py_XINCREF(exc);
    np_rlock_lock(&f->lock);
    if (become_finished(st, f, result, exc, &n, &s) < 0) {
        np_rlock_unlock(&f->lock);
        Py_XDECREF(result);
        Py_XDECREF(exc);
        PyErr_Format(st->InvalidStateError, "%U: %R", st->state_names[s], op);
        return NULL;
    }
    np_rlock_unlock(&f->lock);
    np_future_deliver(st, f, &n);
    Py_RETURN_NONE;
}

static PyObject *
future_set_result(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    PyObject *result;
    if (one_arg(args, nargs, kwnames, "set_result", "result", 1, &result) < 0) {
        return NULL;
    }
    return set_outcome(op, result, NULL);
}

static PyObject *
future_set_exception(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    PyObject *exc;
    if (one_arg(args, nargs, kwnames, "set_exception", "exception", 1, &exc) < 0) {
        return NULL;
    }
    return set_outcome(op, NULL, exc);
}

/* ---- what the stdlib helpers reach into --------------------------------- */

static PyObject *
get_state(PyObject *op, void *Py_UNUSED(closure))
{
    np_state *st = fstate(op);
    PyObject *name = st->state_names[NPF_STATE(atomic_load(&NP_FUTURE(op)->state))];
    Py_INCREF(name);
    return name;
}

static PyObject *
get_waiters(PyObject *op, void *Py_UNUSED(closure))
{
    np_future *f = NP_FUTURE(op);
    /* Installed under the lock (the stdlib only touches _waiters while it
     * holds _condition, and so does our completion path), made before it:
     * an allocation can run finalizers, which must not run under it. */
    PyObject *fresh = NULL;
    if (f->waiters == NULL) {
        fresh = PyList_New(0);
        if (fresh == NULL) {
            return NULL;
        }
    }
    np_rlock_lock(&f->lock);
    if (f->waiters == NULL) {
        f->waiters = fresh;
        fresh = NULL;
    }
    PyObject *w = f->waiters;
    Py_INCREF(w);
    np_rlock_unlock(&f->lock);
    Py_XDECREF(fresh);
    return w;
}

static PyObject *
get_condition(PyObject *op, void *Py_UNUSED(closure))
{
    return np_future_condition_new(fstate(op), op);
}

/* _result and _exception, as the stdlib's attributes read: None until the
 * future has finished. */
static PyObject *
finished_field(np_future *f, PyObject *field)
{
    if (NPF_STATE(atomic_load(&f->state)) != NPF_FINISHED || field == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(field);
    return field;
}

static PyObject *
get_result(PyObject *op, void *Py_UNUSED(closure))
{
    if (np_future_materialize(NP_FUTURE(op)) < 0) {
        return NULL;
    }
    return finished_field(NP_FUTURE(op), NP_FUTURE(op)->result);
}

static PyObject *
get_exception(PyObject *op, void *Py_UNUSED(closure))
{
    if (np_future_materialize(NP_FUTURE(op)) < 0) {
        return NULL;
    }
    return finished_field(NP_FUTURE(op), NP_FUTURE(op)->exception);
}

static PyObject *
get_done_callbacks(PyObject *op, void *Py_UNUSED(closure))
{
    np_future *f = NP_FUTURE(op);
    /* A copy, allocated outside the lock (see add_done_callback) at the
     * size last seen, filled under it if the size still matches. */
    for (;;) {
        Py_ssize_t n = f->callbacks ? PyList_GET_SIZE(f->callbacks) : 0;
        PyObject *r = PyList_New(n);
        if (r == NULL) {
            return NULL;
        }
        np_rlock_lock(&f->lock);
        Py_ssize_t now = f->callbacks ? PyList_GET_SIZE(f->callbacks) : 0;
        if (now == n) {
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *cb = PyList_GET_ITEM(f->callbacks, i);
                Py_INCREF(cb);
                PyList_SET_ITEM(r, i, cb);
            }
            np_rlock_unlock(&f->lock);
            return r;
        }
        np_rlock_unlock(&f->lock);
        Py_DECREF(r);
    }
}

static PyMethodDef future_methods[] = {
    {"cancel", future_cancel, METH_NOARGS,
     "cancel($self, /)\n--\n\nCancel the future if possible.\n\n"
     "Returns True if the future was cancelled, False otherwise. A future\n"
     "cannot be cancelled if it is running or has already completed."},
    {"cancelled", future_cancelled, METH_NOARGS,
     "cancelled($self, /)\n--\n\nReturn True if the future was cancelled."},
    {"running", future_running, METH_NOARGS,
     "running($self, /)\n--\n\nReturn True if the future is currently executing."},
    {"done", future_done, METH_NOARGS,
     "done($self, /)\n--\n\nReturn True if the future was cancelled or finished executing."},
    {"result", (PyCFunction)(void (*)(void))future_result,
     METH_FASTCALL | METH_KEYWORDS,
     "result($self, /, timeout=None)\n--\n\n"
     "Return the result of the call that the future represents.\n\n"
     "Waits up to timeout seconds (forever if None); raises\n"
     "CancelledError if the future was cancelled, TimeoutError if it did\n"
     "not finish in time, or the exception the call raised."},
    {"exception", (PyCFunction)(void (*)(void))future_exception,
     METH_FASTCALL | METH_KEYWORDS,
     "exception($self, /, timeout=None)\n--\n\n"
     "Return the exception raised by the call that the future represents,\n"
     "or None if it completed without raising."},
    {"add_done_callback", (PyCFunction)(void (*)(void))future_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS,
     "add_done_callback($self, /, fn)\n--\n\n"
     "Attach a callable called with the future when it is cancelled or\n"
     "finishes (at once if it already has). Exceptions it raises are logged."},
    {"set_running_or_notify_cancel", future_set_running_or_notify_cancel,
     METH_NOARGS,
     "set_running_or_notify_cancel($self, /)\n--\n\n"
     "Mark the future as running or process any cancel notifications.\n\n"
     "For executor implementations. Returns False if the future was\n"
     "cancelled, True if it is now running."},
    {"set_result", (PyCFunction)(void (*)(void))future_set_result,
     METH_FASTCALL | METH_KEYWORDS,
     "set_result($self, /, result)\n--\n\nSet the return value of the work "
     "associated with the future.\n\nFor executor implementations and tests."},
    {"set_exception", (PyCFunction)(void (*)(void))future_set_exception,
     METH_FASTCALL | METH_KEYWORDS,
     "set_exception($self, /, exception)\n--\n\nSet the result of the future "
     "as being the given exception.\n\nFor executor implementations and tests."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef future_getset[] = {
    {"_state", get_state, NULL, "the state name, as concurrent.futures spells it", NULL},
    {"_condition", get_condition, NULL, "a Condition-like view of the future's lock", NULL},
    {"_waiters", get_waiters, NULL, "the stdlib waiters (concurrent.futures.wait)", NULL},
    {"_result", get_result, NULL, NULL, NULL},
    {"_exception", get_exception, NULL, NULL, NULL},
    {"_done_callbacks", get_done_callbacks, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot future_slots[] = {
    {Py_tp_doc, "FutureBase()\n--\n\nThe C core of nativepool.Future."},
    {Py_tp_init, future_init},
    {Py_tp_dealloc, future_dealloc},
    {Py_tp_finalize, future_finalize},
    {Py_tp_traverse, future_traverse},
    {Py_tp_clear, future_clear},
    {Py_tp_methods, future_methods},
    {Py_tp_getset, future_getset},
    {0, NULL},
};

static PyType_Spec future_spec = {
    .name = "nativepool._nativepool.FutureBase",
    .basicsize = sizeof(np_future),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = future_slots,
};

int
np_future_types_init(PyObject *module, np_state *st)
{
    st->future_base_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &future_spec, NULL);
    if (st->future_base_type == NULL) {
        return -1;
    }
    if (np_future_condition_type_init(module, st) < 0) {
        return -1;
    }
    return np_module_add(module, "FutureBase", (PyObject *)st->future_base_type);
}
