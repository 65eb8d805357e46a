/* sync_cond.c -- nativepool.Condition.
 *
 * threading.Condition allocates a lock per wait() and keeps the waiters in
 * a deque.  Here each waiter is a struct on its own C stack, linked into a
 * FIFO under a small internal mutex, and sleeps on its own np_sem word
 * (spin, then park, GIL released).  notify(n) unlinks up to n waiters, marks them
 * and gives each word one unit, all under the mutex.  A waiter always takes
 * the mutex once more before it returns, so a notifier never touches a
 * waiter's stack after the waiter has left (the give's futex wake comes
 * first, under the mutex).  A waiter that times out and finds itself
 * already notified returns True: the notify is never lost.
 *
 * The user's lock can be any object with the stdlib lock protocol; like
 * threading.Condition we use its _release_save/_acquire_restore/_is_owned
 * when it has them (nativepool.RLock and threading.RLock do).  Over our own
 * Lock or RLock (exact types) we call their C functions directly instead
 * of their methods (np_fastlock_*).
 *
 * In a fork child the waiter list is the parent's: see "fork" below.
 */
#include "np_module.h"

#include "structmember.h"

#include <pthread.h>

/* ---- Condition ----------------------------------------------------------- */

struct np_condobj;

typedef struct cond_waiter {
    struct cond_waiter *next;
    np_sem sem;                  /* notify gives it one unit */
    int notified;                /* set under the mutex by notify */
    struct np_condobj *cond;     /* the Condition waited on (for fork) */
    struct cond_waiter *outer;   /* this thread's enclosing wait (my_waits) */
} cond_waiter;

typedef struct np_condobj {
    PyObject_HEAD
    PyObject *lock;
    PyObject *acquire, *release;             /* bound methods of lock */
    PyObject *release_save, *acquire_restore, *is_owned;   /* or NULL */
    int fast;                 /* NP_FASTLOCK_* when lock is ours: call C */
    /* The fork generation that mutex, head, tail and nwaiters belong to;
     * never use them without cond_sync_fork() first. */
    _Atomic uint32_t gen;
    np_mutex mutex;                          /* guards the waiter list */
    cond_waiter *head, *tail;
    Py_ssize_t nwaiters;
    PyObject *weakreflist;
} np_condobj;
/* `mutex` is only ever held for a few list moves and a futex wake, never
 * while waiting for the GIL; np_mutex_lock_blocking still releases the GIL
 * if it must sleep. */

#define COND(op) ((np_condobj *)(op))

/* ---- fork -----------------------------------------------------------------
 * A fork child has one thread: the one that called fork().  Every other
 * record in a Condition's waiter list lives on the stack of a thread that
 * does not exist there, and the child's new threads reuse those stacks
 * (glibc's stack cache): nothing in the child may follow, mark or give to
 * such a record.  Those waiters are simply gone (threading.Condition's
 * are never woken either).  The internal mutex may have been held by such
 * a thread too (mid-notify or mid-wait, without the GIL on a free-threaded
 * build): in the child nobody will ever unlock it.
 *
 * The fork generation.  `fork_generation` counts the forks between the
 * process that first loaded us and this one: the atfork child handler
 * adds one, before the child has a second thread.  Each Condition records
 * in `gen` the generation its list and mutex belong to (the one it was
 * made in, or last reset in).  Since the counter only grows down a chain
 * of forks, `gen` == fork_generation exactly when that state is this
 * process's own.  cond_sync_fork() compares them before every use of the
 * mutex or the list -- the whole cost in a process that never forked: a
 * relaxed load of the counter and an acquire load of `gen`, next to the
 * mutex word the caller touches next -- and an inherited Condition, on
 * its first use in the child, drops the parent's list and unlocks its
 * mutex (forget_parent, under fork_reset_lock: two threads of the child
 * may get there together).  Lazily, so a fork touches no Condition, and a
 * child that only execs touches none either.
 *
 * The one exception is the forking thread itself: it survives and can be
 * a waiter (a signal handler run inside wait(), or a foreign lock's
 * release() called from wait(), forked).  Each thread keeps its waits,
 * innermost first, on a thread-local stack (`my_waits`); the child
 * handler links exactly those records -- on the one stack that still
 * exists -- back into their Conditions, so a notify in the child wakes
 * them, as it wakes threading.Condition's.
 *
 * Interpreters: nothing here is a Python object.  The counter is per
 * process because a fork is; a record points at a Condition of whichever
 * interpreter its thread waits in, and the handler touches only C fields. */

static _Atomic uint32_t fork_generation;
static np_mutex fork_reset_lock = NP_MUTEX_INIT;
static _Thread_local cond_waiter *my_waits;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static int fork_hook_error;                  /* pthread_atfork's, if it failed */

/* An empty list and a free mutex.  Only where no live thread can be using
 * them: under fork_reset_lock on a Condition of an older generation (its
 * users are all gone), in the child handler, or in _at_fork_reinit. */
static void
forget_waiters(np_condobj *c)
{
    c->head = c->tail = NULL;
    c->nwaiters = 0;
    np_mutex_reinit(&c->mutex);
}

/* The atfork child handler.  Single-threaded: the threads the child
 * creates later see all of this (pthread_create orders it). */
static void
cond_fork_child(void)
{
    uint32_t now = atomic_load_explicit(&fork_generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&fork_generation, now, memory_order_relaxed);
    /* A thread that is gone may have held it, inside forget_parent. */
    np_mutex_reinit(&fork_reset_lock);
    /* Innermost first; prepending restores each Condition's FIFO order. */
    for (cond_waiter *w = my_waits; w != NULL; w = w->outer) {
        np_condobj *c = w->cond;
        if (atomic_load_explicit(&c->gen, memory_order_relaxed) != now) {
            forget_waiters(c);
            atomic_store_explicit(&c->gen, now, memory_order_relaxed);
        }
        if (w->notified) {
            /* Already off the list.  A notifier that is gone may have
             * marked it and not yet given: give (at most one unit).  The
             * unit cannot have been taken already: this thread leaves
             * my_waits with no Python code between the take and that. */
            (void)np_sem_give(&w->sem, 1, 1, 0);
            continue;
        }
        w->next = c->head;
        c->head = w;
        if (c->tail == NULL) {
            c->tail = w;
        }
        c->nwaiters++;
    }
}

static void
register_fork_hook(void)
{
    fork_hook_error = pthread_atfork(NULL, NULL, cond_fork_child);
}

/* The slow path of cond_sync_fork: a Condition of an older generation. */
static void
forget_parent(np_condobj *c, uint32_t now)
{
    /* Held for a few stores, never while waiting for the GIL. */
    np_mutex_lock(&fork_reset_lock);
    if (atomic_load_explicit(&c->gen, memory_order_relaxed) != now) {
        forget_waiters(c);
        /* release: pairs with cond_sync_fork's acquire, so a thread that
         * sees the new generation sees the empty list and free mutex. */
        atomic_store_explicit(&c->gen, now, memory_order_release);
    }
    np_mutex_unlock(&fork_reset_lock);
}

/* Before any use of c's mutex or list. */
static inline void
cond_sync_fork(np_condobj *c)
{
    /* Relaxed: in any one process the counter is written once, by the
     * child handler, before the process has a second thread. */
    uint32_t now = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (atomic_load_explicit(&c->gen, memory_order_acquire) != now) {
        forget_parent(c, now);
    }
}

static inline void
cond_lock(np_condobj *c)
{
    cond_sync_fork(c);
    np_mutex_lock_blocking(&c->mutex);
}

static int
cond_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"lock", NULL};
    PyObject *lock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Condition", kws, &lock)) {
        return -1;
    }
    np_condobj *c = COND(op);
    if (c->lock != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Condition is already initialised");
        return -1;
    }
    /* Its (empty) list belongs to this process. */
    atomic_store_explicit(&c->gen,
                          atomic_load_explicit(&fork_generation, memory_order_relaxed),
                          memory_order_relaxed);
    np_state *st = np_state_from_type(Py_TYPE(op));
    if (lock == Py_None) {
        lock = PyObject_CallNoArgs((PyObject *)st->rlock_type);
        if (lock == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(lock);
    }
    c->lock = lock;
    c->fast = np_fastlock_kind(st, lock);
    if ((c->acquire = PyObject_GetAttrString(lock, "acquire")) == NULL ||
        (c->release = PyObject_GetAttrString(lock, "release")) == NULL) {
        return -1;
    }
    /* Optional parts of the protocol, as threading.Condition probes them. */
    const char *names[3] = {"_release_save", "_acquire_restore", "_is_owned"};
    PyObject **slots[3] = {&c->release_save, &c->acquire_restore, &c->is_owned};
    for (int i = 0; i < 3; i++) {
        *slots[i] = PyObject_GetAttrString(lock, names[i]);
        if (*slots[i] == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return -1;
            }
            PyErr_Clear();
        }
    }
    return 0;
}

static int
cond_traverse(PyObject *op, visitproc visit, void *arg)
{
    np_condobj *c = COND(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(c->lock);
    Py_VISIT(c->acquire);
    Py_VISIT(c->release);
    Py_VISIT(c->release_save);
    Py_VISIT(c->acquire_restore);
    Py_VISIT(c->is_owned);
    return 0;
}

static int
cond_clear(PyObject *op)
{
    np_condobj *c = COND(op);
    Py_CLEAR(c->lock);
    Py_CLEAR(c->acquire);
    Py_CLEAR(c->release);
    Py_CLEAR(c->release_save);
    Py_CLEAR(c->acquire_restore);
    Py_CLEAR(c->is_owned);
    return 0;
}

static void
cond_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (COND(op)->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    cond_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static int
check_init(np_condobj *c)
{
    if (c->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Condition.__init__() was not called");
        return -1;
    }
    return 0;
}

/* 1 if the calling thread holds the lock, 0 if not, -1 error. */
static int
is_owned(np_condobj *c)
{
    if (c->fast) {
        return np_fastlock_owned(c->lock, c->fast);
    }
    if (c->is_owned != NULL) {
        PyObject *r = PyObject_CallNoArgs(c->is_owned);
        if (r == NULL) {
            return -1;
        }
        int b = PyObject_IsTrue(r);
        Py_DECREF(r);
        return b;
    }
    /* threading.Condition's fallback for a plain lock: if we can take it,
     * nobody (we) held it. */
    PyObject *r = PyObject_CallFunctionObjArgs(c->acquire, Py_False, NULL);
    if (r == NULL) {
        return -1;
    }
    int got = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (got > 0) {
        r = PyObject_CallNoArgs(c->release);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        return 0;
    }
    return got < 0 ? -1 : 1;
}

static PyObject *
cond_is_owned(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (check_init(COND(op)) < 0) {
        return NULL;
    }
    int r = is_owned(COND(op));
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static void
unlink_waiter(np_condobj *c, cond_waiter *w)
{
    cond_waiter **link = &c->head, *prev = NULL;
    while (*link != NULL && *link != w) {
        prev = *link;
        link = &(*link)->next;
    }
    if (*link == w) {
        *link = w->next;
        if (c->tail == w) {
            c->tail = prev;
        }
        c->nwaiters--;
    }
}

/* Take a lock that is not ours back after a wait: its _acquire_restore
 * (threading.RLock's is uninterruptible) or its acquire() (a plain lock's
 * is not: a signal handler that raises interrupts it).  What signal
 * handlers raise -- an exception that is not an Exception: KeyboardInterrupt,
 * SystemExit -- is kept in *pending (unless one is already there) and the
 * acquire retried, so that it propagates with the lock held.  Any other
 * error is the lock's own: -1 with it raised (the lock is not held). */
static int
restore_foreign(np_condobj *c, PyObject *saved, PyObject **pending)
{
    for (;;) {
        PyObject *res = c->acquire_restore
                            ? PyObject_CallOneArg(c->acquire_restore, saved)
                            : PyObject_CallNoArgs(c->acquire);
        if (res != NULL) {
            Py_DECREF(res);
            return 0;
        }
        PyObject *e = np_fetch_exception();
        if (e == NULL || PyErr_GivenExceptionMatches(e, PyExc_Exception)) {
            if (e != NULL) {
                np_raise_exception(e);
                Py_DECREF(e);
            }
            return -1;
        }
        if (*pending == NULL) {
            *pending = e;
        }
        else {
            Py_DECREF(e);
        }
    }
}

/* wait() with an absolute deadline: 1 notified, 0 timed out, -1 error.  The
 * lock is held again on return, whatever happened -- unless a lock that is
 * not ours fails to be taken back for a reason of its own (restore_foreign). */
static int
cond_wait_until(np_condobj *c, int64_t deadline)
{
    int owned = is_owned(c);
    if (owned <= 0) {
        if (owned == 0) {
            PyErr_SetString(PyExc_RuntimeError, "cannot wait on un-acquired lock");
        }
        return -1;
    }
    cond_waiter w = {NULL, NP_SEM_INIT(0), 0, c, NULL};
    cond_lock(c);
    if (c->tail != NULL) {
        c->tail->next = &w;
    }
    else {
        c->head = &w;
    }
    c->tail = &w;
    c->nwaiters++;
    np_mutex_unlock(&c->mutex);
    /* From here until we leave my_waits, Python code may run (the lock's
     * release, signal handlers in the wait) and fork: see "fork". */
    w.outer = my_waits;
    my_waits = &w;

    unsigned long fast_state[2] = {0, 0};
    PyObject *saved;
    if (c->fast) {
        saved = np_fastlock_save(c->lock, c->fast, fast_state) < 0 ? NULL : Py_None;
        Py_XINCREF(saved);
    }
    else {
        saved = c->release_save ? PyObject_CallNoArgs(c->release_save)
                                : PyObject_CallNoArgs(c->release);
    }
    if (saved == NULL) {
        cond_lock(c);
        unlink_waiter(c, &w);
        np_mutex_unlock(&c->mutex);
        my_waits = w.outer;
        return -1;
    }

    int r = np_sem_take_blocking(&w.sem, deadline, NULL);

    /* Synchronise with a notifier that may still be inside np_sem_give on
     * our stack; then decide, under the mutex, whether we were notified.
     * (After a fork from inside this wait the child handler has put w
     * back on the list: unlink_waiter still finds it.) */
    cond_lock(c);
    int notified = w.notified;
    if (!notified) {
        unlink_waiter(c, &w);
    }
    np_mutex_unlock(&c->mutex);
    my_waits = w.outer;

    /* Take the lock back even if we are raising (the stdlib's finally), and
     * so that a Ctrl-C cannot leave us without it: the with-block's exit
     * would then raise RuntimeError and mask the KeyboardInterrupt.  A
     * signal that arrives meanwhile is delivered once we hold the lock. */
    PyObject *exc = r < 0 ? np_fetch_exception() : NULL;
    int failed = 0;
    if (c->fast) {
        np_fastlock_restore(c->lock, c->fast, fast_state);
    }
    else {
        failed = restore_foreign(c, saved, &exc);
    }
    Py_DECREF(saved);
    if (failed) {
        Py_XDECREF(exc);
        return -1;
    }
    if (exc != NULL) {
        np_raise_exception(exc);
        Py_DECREF(exc);
        return -1;
    }
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    return notified;
}

/* threading.Condition.wait's timeout: None forever, <= 0 do not block. */
static int
parse_wait_timeout(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, Py_ssize_t first, const char *fname,
                   int64_t *deadline)
{
    PyObject *timeout = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs - first + nkw > 1 ||
        (nkw == 1 &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout"))) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most one timeout argument", fname);
        return -1;
    }
    if (nargs - first == 1) {
        timeout = args[first];
    }
    else if (nkw == 1) {
        timeout = args[nargs];
    }
    return np_parse_timeout(np_state_from_type(Py_TYPE(op)), timeout, deadline);
}

static PyObject *
cond_wait(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t deadline;
    if (check_init(COND(op)) < 0 ||
        parse_wait_timeout(op, args, nargs, kwnames, 0, "wait", &deadline) < 0) {
        return NULL;
    }
    int r = cond_wait_until(COND(op), deadline);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *
cond_wait_for(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    if (check_init(COND(op)) < 0) {
        return NULL;
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "wait_for() missing 1 required positional argument: 'predicate'");
        return NULL;
    }
    int64_t deadline;
    if (parse_wait_timeout(op, args, nargs, kwnames, 1, "wait_for", &deadline) < 0) {
        return NULL;
    }
    PyObject *predicate = args[0];
    /* As the stdlib's loop: a false predicate always gets one wait() (so a
     * zero timeout still checks that we hold the lock), then waits until
     * it is true or the time is up. */
    for (int waited = 0;; waited = 1) {
        PyObject *result = PyObject_CallNoArgs(predicate);
        if (result == NULL) {
            return NULL;
        }
        int truth = PyObject_IsTrue(result);
        if (truth != 0 || (waited && deadline != NP_FOREVER &&
                           np_monotonic_ns() >= deadline)) {
            if (truth < 0) {
                Py_CLEAR(result);
            }
            return result;
        }
        Py_DECREF(result);
        if (cond_wait_until(COND(op), deadline) < 0) {
            return NULL;
        }
    }
}

/* The checks notify() makes before anything else, as the stdlib orders
 * them.  0 go on, -1 error. */
static int
notify_check(np_condobj *c)
{
    if (check_init(c) < 0) {
        return -1;
    }
    int owned = is_owned(c);
    if (owned == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot notify on un-acquired lock");
    }
    return owned > 0 ? 0 : -1;
}

static PyObject *
notify_n(np_condobj *c, Py_ssize_t n)
{
    cond_lock(c);
    while (c->head != NULL && n > 0) {
        cond_waiter *w = c->head;
        c->head = w->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        c->nwaiters--;
        w->notified = 1;
        np_sem_give(&w->sem, 1, 0, 0);    /* w stays valid: we hold the mutex */
        n--;
    }
    np_mutex_unlock(&c->mutex);
    Py_RETURN_NONE;
}

static PyObject *
cond_notify(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t n = 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "n"))) {
        PyErr_SetString(PyExc_TypeError, "notify() takes at most one argument, n");
        return NULL;
    }
    if (notify_check(COND(op)) < 0) {
        return NULL;
    }
    /* With nobody waiting the stdlib never looks at n.  (A count that
     * cond_sync_fork has not reset yet in a fork child only means that we
     * look at n, as the stdlib does with the dead waiters in its deque;
     * notify_n syncs: n.__index__ may even fork.) */
    if (nargs + nkw == 1 && COND(op)->nwaiters > 0) {
        n = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return notify_n(COND(op), n);
}

static PyObject *
cond_notify_all(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (notify_check(COND(op)) < 0) {
        return NULL;
    }
    return notify_n(COND(op), PY_SSIZE_T_MAX);
}

static PyObject *
cond_notifyAll(PyObject *op, PyObject *Py_UNUSED(ignored))
{
#if PY_VERSION_HEX >= 0x030A0000
    if (PyErr_WarnEx(PyExc_DeprecationWarning,
                     "notifyAll() is deprecated, use notify_all() instead", 1) < 0) {
        return NULL;
    }
#endif
    return cond_notify_all(op, NULL);
}

/* acquire/release/__enter__/__exit__ delegate to the lock, as the stdlib's
 * Condition binds them. */
static PyObject *
cond_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (check_init(COND(op)) < 0) {
        return NULL;
    }
    return PyObject_Vectorcall(COND(op)->acquire, args, nargs, kwnames);
}

static PyObject *
cond_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_condobj *c = COND(op);
    if (check_init(c) < 0) {
        return NULL;
    }
    if (c->fast) {
        if (np_fastlock_release(c->lock, c->fast) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return PyObject_CallNoArgs(c->release);
}

static PyObject *
cond_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_condobj *c = COND(op);
    if (check_init(c) < 0) {
        return NULL;
    }
    if (c->fast) {
        if (np_fastlock_acquire(c->lock, c->fast) < 0) {
            return NULL;
        }
        Py_RETURN_TRUE;
    }
    return PyObject_CallMethod(c->lock, "__enter__", NULL);
}

static PyObject *
cond_exit(PyObject *op, PyObject *args)
{
    np_condobj *c = COND(op);
    if (check_init(c) < 0) {
        return NULL;
    }
    if (c->fast) {
        return cond_release(op, NULL);
    }
    PyObject *meth = PyObject_GetAttrString(COND(op)->lock, "__exit__");
    if (meth == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_Call(meth, args, NULL);
    Py_DECREF(meth);
    return r;
}

/* After fork, as threading.Condition: a fresh lock and no waiters at all
 * (as the stdlib's, this one drops the forking thread's own waits too).
 * Called single-threaded in a child, like the stdlib's. */
static PyObject *
cond_at_fork_reinit(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_condobj *c = COND(op);
    if (check_init(c) < 0) {
        return NULL;
    }
    forget_waiters(c);
    atomic_store_explicit(&c->gen,
                          atomic_load_explicit(&fork_generation, memory_order_relaxed),
                          memory_order_release);
    return PyObject_CallMethod(c->lock, "_at_fork_reinit", NULL);
}

static PyObject *
cond_repr(PyObject *op)
{
    np_condobj *c = COND(op);
    if (c->lock == NULL) {
        return PyUnicode_FromFormat("<nativepool.Condition (uninitialised) at %p>", op);
    }
    /* threading.Condition's, exactly: "<Condition(<lock>, nwaiters)>". */
    cond_sync_fork(c);
    return PyUnicode_FromFormat("<Condition(%S, %zd)>", c->lock, c->nwaiters);
}

static PyMethodDef cond_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))cond_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, /, *args, **kwargs)\n--\n\nAcquire the underlying lock."},
    {"release", cond_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease the underlying lock."},
    {"__enter__", cond_enter, METH_NOARGS, NULL},
    {"__exit__", cond_exit, METH_VARARGS, NULL},
    {"_is_owned", cond_is_owned, METH_NOARGS, NULL},
    {"_at_fork_reinit", cond_at_fork_reinit, METH_NOARGS, NULL},
    {"wait", (PyCFunction)(void (*)(void))cond_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait($self, /, timeout=None)\n--\n\n"
     "Release the lock, wait until notified or timeout seconds pass, take\n"
     "the lock back; return True unless it timed out."},
    {"wait_for", (PyCFunction)(void (*)(void))cond_wait_for,
     METH_FASTCALL | METH_KEYWORDS,
     "wait_for($self, predicate, /, timeout=None)\n--\n\n"
     "Wait until predicate() is true or the timeout passes; return its\n"
     "last value."},
    {"notify", (PyCFunction)(void (*)(void))cond_notify, METH_FASTCALL | METH_KEYWORDS,
     "notify($self, /, n=1)\n--\n\nWake up to n waiters, longest waiting first."},
    {"notify_all", cond_notify_all, METH_NOARGS,
     "notify_all($self, /)\n--\n\nWake every waiter."},
    {"notifyAll", cond_notifyAll, METH_NOARGS, "Deprecated alias of notify_all()."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef cond_members[] = {
    {"_lock", T_OBJECT, offsetof(np_condobj, lock), READONLY, "the underlying lock"},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(np_condobj, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot cond_slots[] = {
    {Py_tp_doc, "Condition(lock=None)\n--\n\n"
                "threading.Condition's drop-in, in C. The lock defaults to a\n"
                "nativepool.RLock; any lock with the stdlib protocol works."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, cond_init},
    {Py_tp_dealloc, cond_dealloc},
    {Py_tp_traverse, cond_traverse},
    {Py_tp_clear, cond_clear},
    {Py_tp_repr, cond_repr},
    {Py_tp_methods, cond_methods},
    {Py_tp_members, cond_members},
    {0, NULL},
};

static PyType_Spec cond_spec = {
    .name = "nativepool.Condition",
    .basicsize = sizeof(np_condobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = cond_slots,
};

int
np_condition_types_init(PyObject *module, np_state *st)
{
    (void)pthread_once(&fork_once, register_fork_hook);
    if (fork_hook_error != 0) {
        /* ENOMEM, its only error.  Without the hook a fork child would
         * walk the dead threads' stacks. */
        PyErr_NoMemory();
        return -1;
    }
    st->cond_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &cond_spec, NULL);
    if (st->cond_type == NULL ||
        np_module_add(module, "Condition", (PyObject *)st->cond_type) < 0) {
        return -1;
    }
    return 0;
}
