/*
 * np_module.h -- what the binding layer's files share: module state, the
 * future object, the task types the pool runs, and the blocking helpers.
 *
 * GIL rules for this layer (it owns every GIL transition):
 *   - Every function here is called with the GIL held unless its comment
 *     says otherwise.
 *   - Anything that may block releases the GIL around the blocking part and,
 *     in the main thread, turns EINTR into Python signal handling (Ctrl-C).
 *   - No C lock of ours is held while Python code runs, except a future's
 *     own lock while the stdlib waiter protocol runs (add_result & co.),
 *     exactly as concurrent.futures holds the future's Condition there.
 */
#ifndef NP_MODULE_H
#define NP_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdatomic.h>
#include <stdint.h>

#include "np_pool.h"
#include "np_sem.h"
#include "np_sync.h"

/* Py_NewRef arrived in 3.10. */
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
np_newref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) np_newref((PyObject *)(o))
#endif

/* ---- module state ------------------------------------------------------ */

typedef struct np_state {
    PyTypeObject *future_base_type;  /* _nativepool.FutureBase (C layout) */
    PyTypeObject *future_type;       /* nativepool.Future, set by _setup */
    PyTypeObject *condition_type;    /* the object behind Future._condition */
    PyTypeObject *core_type;         /* _nativepool.PoolCore */
    PyTypeObject *pool_type;         /* _nativepool.ThreadPoolBase */
    PyTypeObject *mapiter_type;      /* _nativepool.MapIterator */
    PyTypeObject *lock_type, *rlock_type, *semaphore_type, *bsemaphore_type;
    PyTypeObject *event_type, *atomicint_type;
    PyTypeObject *cond_type, *barrier_type;   /* sync_cond.c, sync_barrier.c */
    PyTypeObject *queue_type, *lifoqueue_type;             /* queue.c */
    PyTypeObject *priorityqueue_type, *simplequeue_type;
    PyTypeObject *nativefn_type;                           /* native.c */
    PyTypeObject *channel_type;                            /* channel.c */
    PyTypeObject *proccore_type;                           /* procpool.c */
    PyObject *Empty, *Full, *ShutDown;   /* queue.Empty, queue.Full, queue.ShutDown
                                            (ours on Pythons before 3.13) */
    PyObject *BrokenBarrierError;        /* threading.BrokenBarrierError */

    /* The stdlib's exception classes: we raise exactly those. */
    PyObject *CancelledError;
    PyObject *TimeoutError;
    PyObject *InvalidStateError;
    PyObject *BrokenThreadPool;

    PyObject *cf_logger;             /* logging.getLogger("concurrent.futures") */
    PyObject *np_logger;             /* logging.getLogger("nativepool") */
    PyObject *spawn_thread;          /* python/nativepool: start a worker thread */
    PyObject *state_names[5];        /* 'PENDING', ... as concurrent.futures spells them */

    PyObject *str_add_result, *str_add_exception, *str_add_cancelled;
    PyObject *str_join;

    /* Tasks a worker finished without the GIL whose release (dropping the
     * queue's reference, freeing what needs the GIL) waits for someone who
     * holds it: a lock-free stack linked by task.base.next (native_task.c). */
    _Atomic(struct np_pytask *) reclaim;

    /* This interpreter's live Locks and RLocks and its lock-order hook
     * (sync_lock.c): counted, since a lock may outlive the module object. */
    struct np_lockreg *locks;

    double timeout_max;              /* threading.TIMEOUT_MAX */
    int log_unretrieved;             /* log exceptions nobody retrieved */
    int interpreter_exiting;         /* set by the atexit hook */
} np_state;

extern PyModuleDef np_moduledef;

/* The module state for an object whose type is one of ours or a subclass
 * (a Python subclass has no module of its own: walk the MRO). */
np_state *np_state_from_type(PyTypeObject *tp);

/* logger.<level>(msg[, arg], exc_info=exc): never raises (a failure to log
 * is reported as unraisable); the error indicator must be clear. */
void np_log_exc(PyObject *logger, const char *level, const char *msg,
                PyObject *arg, PyObject *exc);

/* module.name (a new reference), importing module; NULL with an exception. */
PyObject *np_import_attr(const char *module, const char *name);

/* "module.qualname" of a type, as threading's reprs spell a class (a
 * subclass shows its own name); a new reference, or NULL with an exception. */
PyObject *np_type_display_name(PyTypeObject *tp);

/* PyModule_AddObjectRef for 3.9: add obj (borrowed) as module.name. */
int np_module_add(PyObject *module, const char *name, PyObject *obj);

/* ---- exceptions across versions -----------------------------------------
 * 3.12 deprecated PyErr_Fetch; these give one spelling for all versions. */

/* Take the raised exception (a new reference, normalized, its traceback
 * attached as __traceback__) and clear the error indicator. */
static inline PyObject *
np_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise exc (borrowed) with its own traceback, as `raise exc` would; a
 * class is instantiated; anything else is the TypeError `raise` gives. */
static inline void
np_raise_exception(PyObject *exc)
{
    if (PyExceptionInstance_Check(exc)) {
#if PY_VERSION_HEX >= 0x030C0000
        Py_INCREF(exc);
        PyErr_SetRaisedException(exc);
#else
        PyObject *tb = PyException_GetTraceback(exc);   /* new ref or NULL */
        Py_INCREF(Py_TYPE(exc));
        Py_INCREF(exc);
        PyErr_Restore((PyObject *)Py_TYPE(exc), exc, tb);
#endif
    }
    else if (PyExceptionClass_Check(exc)) {
        PyErr_SetNone(exc);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must derive from BaseException");
    }
}

/* ---- tasks ------------------------------------------------------------- */

/* Every task the binding queues starts with this.  abandon() is called, with
 * the GIL, instead of run() when the pool gives the task back: exc NULL means
 * cancelled (shutdown(cancel_futures=True)), else fail it with exc.  The
 * caller calls release() afterwards.  after_fork() (or NULL) is called
 * first for a task orphaned by os.fork(): a lock of the task's that a
 * parent's thread held at the fork belongs to nobody in the child, and
 * must be made free before abandon() takes it. */
typedef struct np_pytask {
    np_task base;
    void (*abandon)(struct np_pytask *task, PyObject *exc);
    void (*after_fork)(struct np_pytask *task);
} np_pytask;

/* Abandon and release every task of a list returned by the runtime. */
void np_abandon_tasks(np_task *list, PyObject *exc);

/* A thread of ours that runs without the GIL most of the time (a pool
 * worker, a ProcessPool collector): tstate is non-NULL exactly while it runs
 * without the GIL (saved by PyEval_SaveThread).  Only its own thread
 * touches it.  The np_worker_* functions take a pointer to one. */
typedef struct {
    PyThreadState *tstate;
    struct np_state *st;     /* a pool worker's module state, or NULL */
} np_worker_ctx;

/* The GIL on a pool worker (threadpool.c).  A worker holds the GIL lazily:
 * a Python task takes it (and keeps it for the next Python task), a native
 * task drops it, and parking drops it.  `worker` is the worker_arg the
 * runtime passes to run/release; NULL means "not a worker, GIL held". */
void np_worker_hold_gil(void *worker);
void np_worker_drop_gil(void *worker);
int np_worker_has_gil(void *worker);

/* Reclaim (native_task.c).  A task's release() called on a worker that does
 * not hold the GIL pushes the task here (no GIL needed); np_reclaim_drain,
 * with the GIL, calls release(task, NULL) for each.  Drained on submit, on
 * map, when a pool is joined, and whenever a worker takes the GIL anyway. */
void np_reclaim_push(np_state *st, struct np_pytask *task);
void np_reclaim_drain(np_state *st);
/* Anything to drain?  A hint (relaxed; no GIL needed). */
static inline int
np_reclaim_pending(np_state *st)
{
    return st != NULL &&
           atomic_load_explicit(&st->reclaim, memory_order_relaxed) != NULL;
}

/* ---- futures ----------------------------------------------------------- */

/* The state word of a future: one of the five states of
 * concurrent.futures, plus a bit that says "someone sleeps on this word".
 *
 *      PENDING --set_running--> RUNNING --set_result/exception--> FINISHED
 *         |  \______________________set_result/exception_________/^
 *         | cancel()
 *         v
 *      CANCELLED --set_running_or_notify_cancel--> CANCELLED_AND_NOTIFIED
 *         (stdlib waiters are told only at that second step, as in the
 *          stdlib; our own shutdown(cancel_futures=True) does both)
 *
 * Transitions happen under the future's lock (so they are atomic with the
 * stdlib's wait()/as_completed(), which hold _condition while they look at
 * _state and install a waiter).  Reads need no lock.  Sleepers set
 * NPF_SLEEPERS with a CAS and futex-wait on the word; a transition to a done
 * state exchanges the word and wakes them if the bit was set. */
enum {
    NPF_PENDING = 0,
    NPF_RUNNING = 1,
    NPF_CANCELLED = 2,
    NPF_CANCELLED_NOTIFIED = 3,
    NPF_FINISHED = 4,
    NPF_STATE_MASK = 7,
    NPF_SLEEPERS = 8,
    NPF_CONVERTING = 16,   /* FINISHED: a thread converts the C outcome */
};

#define NPF_STATE(word) ((word) & NPF_STATE_MASK)
#define NPF_IS_DONE(word) (NPF_STATE(word) >= NPF_CANCELLED)

/* A recursive lock, as threading.Condition() uses an RLock: the stdlib
 * waiter protocol and user code may take _condition and then call a future
 * method that takes it again. */
typedef struct {
    np_mutex mutex;
    _Atomic unsigned long owner;     /* pthread_self() of the owner, or 0 */
    unsigned long count;             /* only touched by the owner */
} np_rlock;

typedef struct np_future {
    PyObject_HEAD
    np_pytask task;                  /* when the future is its own pool task */
    _Atomic uint32_t state;
    np_rlock lock;
    uint8_t retrieved;               /* result()/exception() saw the exception */
    PyObject *result;
    PyObject *exception;
    PyObject *callbacks;             /* list, or NULL */
    PyObject *waiters;               /* stdlib waiters (list), or NULL */
    /* the call, for a future that is a task; cleared once it ran */
    PyObject *fn;
    PyObject *args;                  /* positional then keyword values */
    PyObject *kwnames;               /* tuple or NULL */
    Py_ssize_t nargs;
    struct np_core *core;            /* borrowed while queued/running */
    /* A native task's call (native.c): arguments in C, pinned buffers, and
     * once run, its C outcome.  Converted into result/exception, and freed,
     * the first time someone with the GIL looks (np_future_materialize). */
    struct np_ncall *ncall;
    /* The thread converting ncall's outcome (np_future_materialize or a
     * finishing worker), or 0: a call from inside the conversion on that
     * thread (an unpickler asking for the result) is an error, not a
     * deadlock or a second conversion. */
    _Atomic unsigned long converting;
    long converting_pid;             /* the process that set NPF_CONVERTING */
} np_future;

#define NP_FUTURE(op) ((np_future *)(op))

/* The future whose np_task is t (a future that is its own pool task). */
#define NP_TASK_FUTURE(t) \
    ((np_future *)((char *)(t) - offsetof(np_future, task)))

/* abandon() of a future task, Python or native (threadpool.c): cancel
 * (exc NULL) or fail it, drop its call; GIL held. */
void np_future_task_abandon(np_pytask *t, PyObject *exc);
/* after_fork() of a future task: np_future_after_fork. */
void np_future_task_after_fork(np_pytask *t);

int np_future_types_init(PyObject *module, np_state *st);
/* Future._condition (future_cond.c). */
int np_future_condition_type_init(PyObject *module, np_state *st);
PyObject *np_future_condition_new(np_state *st, PyObject *future);

/* A new pending future of the registered nativepool.Future class. */
np_future *np_future_new(np_state *st);

/* PENDING -> RUNNING without the lock (nobody installing a stdlib waiter
 * cares about PENDING vs RUNNING: both are "not done"); needs no GIL.
 * 1 if this call made it RUNNING, 0 if it was not PENDING. */
static inline int
np_future_try_start(np_future *f)
{
    uint32_t s = atomic_load(&f->state);
    while (NPF_STATE(s) == NPF_PENDING) {
        if (atomic_compare_exchange_weak(&f->state, &s,
                                         NPF_RUNNING | (s & NPF_SLEEPERS))) {
            return 1;
        }
    }
    return 0;
}

/* PENDING -> RUNNING; for a cancelled future, CANCELLED ->
 * CANCELLED_AND_NOTIFIED with waiters told.  Returns 1, 0 (cancelled) or -1
 * with an exception (unexpected state). */
int np_future_set_running(np_state *st, np_future *f);

/* Finish with a result (steals the reference) or with the current
 * exception (fetched here, traceback attached).  Runs the waiters and the
 * done callbacks.  Never fails: problems in callbacks are logged. */
void np_future_finish_result(np_state *st, np_future *f, PyObject *result);
void np_future_finish_exception(np_state *st, np_future *f, PyObject *exc);
/* Cancel and notify in one step (a queued future the pool gives back). */
void np_future_cancel_and_notify(np_state *st, np_future *f);

/* ---- blocking ---------------------------------------------------------- */

/* Parse a Python timeout the way threading.Condition.wait does: None is
 * forever; a number <= 0 (or NaN) means "do not block"; too large is
 * OverflowError.  Returns 0 and sets *deadline_ns, or -1 with an exception. */
int np_parse_timeout(np_state *st, PyObject *timeout, int64_t *deadline_ns);

/* Wait, GIL released, until *word != expected or the deadline.  Returns 1 if
 * woken or the value changed, 0 on timeout, -1 with an exception if a signal
 * handler raised (Ctrl-C).  Callers loop on their own predicate. */
int np_wait_word(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns);

/* Take m, releasing the GIL only if it must wait (its holder may need the
 * GIL to let go).  GIL held on entry and return. */
void np_mutex_lock_blocking(np_mutex *m);

/* The future's recursive lock.  _lock blocks with the GIL released if it
 * must, and never fails; _lock_until is the interruptible form for
 * Python's _condition.acquire: 1 acquired, 0 timed out, -1 exception. */
void np_rlock_lock(np_rlock *l);
int np_rlock_lock_until(np_rlock *l, int64_t deadline_ns);
int np_rlock_unlock(np_rlock *l);   /* -1 (no exception set) if not owner */
int np_rlock_is_owned(np_rlock *l);
/* In a fork child: the lock's owner may be a thread that is gone; make it
 * free again.  Only for a lock nothing in the child can be inside. */
void np_rlock_after_fork(np_rlock *l);

/* Wait until the future is done.  1 done, 0 timeout, -1 exception. */
int np_future_wait(np_future *f, int64_t deadline_ns);

/* Native tasks complete without the GIL (future.c).  Both are called on a
 * worker, GIL not held; they take it (np_worker_hold_gil) only if stdlib
 * waiters or done callbacks are attached, and drop it again before
 * returning.  set_running: 1 running, 0 cancelled (waiters told). */
int np_future_set_running_nogil(np_state *st, np_future *f, void *worker);
void np_future_finish_native(np_state *st, np_future *f, void *worker);
/* With the GIL: turn a finished native call's C outcome into result or
 * exception and free the call, once.  A conversion that fails (no memory
 * for a huge result, a C API result function or an unpickler that raises)
 * becomes the future's exception.  Fails (-1, RuntimeError) only when
 * called from inside that conversion, on the thread running it (an
 * unpickler that asks the future for its own result). */
int np_future_materialize(np_future *f);
/* A finished native future: convert its outcome now if nobody has (so its
 * buffers are unpinned and its arguments dropped, as the stdlib's task
 * lets go of them once done); any error is kept as the outcome.  GIL. */
void np_future_settle(np_future *f);
/* 1, with a RuntimeError set, if this thread is converting f's outcome
 * right now (so waiting for f here would wait for ourselves); else 0. */
int np_future_converting_here(np_future *f);
/* In a fork child, before failing an orphaned future: its lock may belong
 * to a thread that no longer exists. */
void np_future_after_fork(np_future *f);
/* The lock without touching the GIL (a worker that does not hold it). */
void np_rlock_lock_nogil(np_rlock *l);
/* A cancelled native future: free its call (unpin buffers).  GIL held. */
void np_future_drop_unrun_call(np_future *f);

/* future.c's transition machinery, for future_native.c.
 *
 * A transition happens under the future's lock, but what it sets off runs
 * Python (the stdlib waiters' add_result, the done callbacks), which must
 * not run under our lock.  So the transition fills a notice, and the caller
 * delivers it once the lock is released:
 *
 *     np_done_notice n = NP_DONE_NOTICE_INIT;
 *     lock; np_future_become_done(f, from, to, meth, &n); unlock;
 *     np_future_deliver(st, f, &n);              (GIL)
 *
 * become_done: move from state `from` to `newstate`, wake sleepers, take
 * the callbacks and, if waiter_meth is not NULL, the stdlib waiters to tell
 * with it (which needs the GIL; pass NULL without it, having seen that
 * there are no waiters).  0, or -1 if the state is not `from`. */
typedef struct {
    PyObject *meth;             /* borrowed: add_result, ...  */
    PyObject **waiters;         /* nwaiters strong references */
    Py_ssize_t nwaiters;
    PyObject *cbs;              /* the done callbacks (a list), or NULL */
    PyObject *inline_[4];       /* room for the common few waiters */
} np_done_notice;
#define NP_DONE_NOTICE_INIT {NULL, NULL, 0, NULL, {NULL}}

int np_future_become_done(np_future *f, uint32_t from, uint32_t newstate,
                          PyObject *waiter_meth, np_done_notice *n);
void np_future_deliver(np_state *st, np_future *f, np_done_notice *n);

/* ---- synchronization objects --------------------------------------------- */

/* Contention statistics, kept on every lock object.  The uncontended path
 * pays one counter update; the rest is recorded only when a thread had to
 * wait, so it is always on. */
typedef struct {
    _Atomic uint64_t acquisitions;
    _Atomic uint64_t contended;
    _Atomic uint64_t wait_total_ns;
    _Atomic uint64_t wait_max_ns;
} np_stats;

/* One more acquisition; `exclusive` when the caller holds the lock alone
 * (Lock, RLock), so a plain load+store cannot lose a count. */
static inline void
np_stats_acquired(np_stats *s, int exclusive)
{
    if (exclusive) {
        atomic_store_explicit(&s->acquisitions,
            atomic_load_explicit(&s->acquisitions, memory_order_relaxed) + 1,
            memory_order_relaxed);
    }
    else {
        atomic_fetch_add_explicit(&s->acquisitions, 1, memory_order_relaxed);
    }
}

PyObject *np_stats_dict(np_stats *s);
void np_stats_reset(np_stats *s);

/* Take one unit of s, with the GIL released while waiting, until the
 * deadline; records contention and wait time (stats may be NULL; the
 * acquisition itself is counted by the caller).  Returns 1 taken, 0 timed
 * out, -1 with an exception (a signal handler raised: Ctrl-C). */
int np_sem_take_blocking(np_sem *s, int64_t deadline_ns, np_stats *stats);

/* Take one unit, waiting as long as it takes, GIL released; signals do not
 * interrupt it (they stay pending).  For taking a lock back after a wait:
 * the stdlib's finally that a Ctrl-C cannot skip. */
void np_sem_take_uninterruptible(np_sem *s, np_stats *stats);

/* Wait until s's value differs from seen (an Event), GIL released: 1,
 * 0 timed out, -1 exception. */
int np_sem_wait_change_blocking(np_sem *s, uint32_t seen, int64_t deadline_ns);

/* The arguments of threading.Lock.acquire(blocking=True, timeout=-1), with
 * its errors.  Sets *deadline_ns (now, for a non-blocking call).  0 or -1. */
int np_parse_lock_acquire(np_state *st, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, int64_t *deadline_ns);

int np_lock_types_init(PyObject *module, np_state *st);
/* debug.dump_locks and debug.check_lock_order (sync_lock.c). */
PyObject *np_held_locks(PyObject *module, PyObject *ignored);
PyObject *np_set_lock_hook(PyObject *module, PyObject *hook);
/* The lock registry's part of module init/traverse/clear/free. */
int np_locks_init(np_state *st);
int np_locks_traverse(np_state *st, visitproc visit, void *arg);
void np_locks_clear(np_state *st);     /* drops the hook */
void np_locks_free(np_state *st);      /* and the state's reference */

/* Condition's fast path over our own Lock/RLock (sync_lock.c). */
enum { NP_FASTLOCK_LOCK = 1, NP_FASTLOCK_RLOCK = 2 };
int np_fastlock_kind(np_state *st, PyObject *lock);    /* 0: not ours */
int np_fastlock_owned(PyObject *lock, int kind);
int np_fastlock_acquire(PyObject *lock, int kind);
int np_fastlock_release(PyObject *lock, int kind);
int np_fastlock_save(PyObject *lock, int kind, unsigned long state[2]);
void np_fastlock_restore(PyObject *lock, int kind, const unsigned long state[2]);
int np_semaphore_types_init(PyObject *module, np_state *st);
int np_atomicint_type_init(PyObject *module, np_state *st);
int np_condition_types_init(PyObject *module, np_state *st);   /* Condition */
int np_barrier_type_init(PyObject *module, np_state *st);      /* Barrier */
int np_queue_types_init(PyObject *module, np_state *st);       /* the Queue family */
int np_channel_type_init(PyObject *module, np_state *st);      /* _Channel */
/* The open endpoint of a _Channel object (borrowed: the object owns it), or
 * NULL with TypeError/ValueError. */
struct np_chan *np_channel_chan(np_state *st, PyObject *obj);
int np_procpool_type_init(PyObject *module, np_state *st);     /* _ProcCore */

/* ---- the pool ---------------------------------------------------------- */

typedef struct np_core {
    PyObject_HEAD
    np_pool *pool;
    np_state *st;
    PyObject *initializer;           /* or NULL */
    PyObject *initargs;              /* iterable, unpacked per worker */
    PyObject *threads;               /* list of threading.Thread */
    PyObject *prefix;                /* thread name prefix (str) */
    PyObject *broken;                /* message (str) once broken, or NULL */
    PyObject *weakreflist;
    Py_ssize_t max_workers;
    /* The next worker's index (in its name): threads started so far; a
     * start that fails gives its index back if no later one is taken. */
    _Atomic Py_ssize_t spawned;
    int shutdown;
    _Atomic int spawn_warned;        /* logged a thread that failed to start */
    _Atomic int cancel_all;          /* shutdown(cancel_futures=True) seen */
} np_core;

int np_pool_types_init(PyObject *module, np_state *st);
int np_mapiter_type_init(PyObject *module, np_state *st);

/* Queue a task on the core's pool, raising the stdlib's error if the pool
 * is shut down or broken.  0 queued, -1 exception (task not queued), 1
 * queued and an exception to propagate all the same (KeyboardInterrupt
 * while a worker was being started: the task is the pool's now and runs). */
int np_core_submit(np_core *core, np_pytask *task);

/* A ThreadPoolBase's core (borrowed), or NULL with RuntimeError if
 * __init__ was not called.  pool must be a ThreadPoolBase. */
np_core *np_pool_core(PyObject *pool);

/* The raise-if-closed checks of submit(), alone: 0 open, -1 exception. */
int np_core_check_open(np_core *core);
/* The stdlib's RuntimeError for a submit to a pool that is shut down, or
 * after the interpreter began to exit (every pool type): 0 or -1. */
int np_check_not_shut_down(np_state *st, int shutdown);

/* ---- native tasks (native.c, native_task.c) -------------------------------- */

typedef struct np_ncall np_ncall;

int np_native_types_init(PyObject *module, np_state *st);
/* Is fn a NativeFunction? */
int np_is_native(np_state *st, PyObject *fn);
/* Convert fn's arguments to C values and pin its buffers: a call ready to
 * run anywhere without the GIL.  NULL with TypeError/ValueError/OverflowError
 * if an argument does not fit fn's signature. */
np_ncall *np_ncall_new(PyObject *fn, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames);
/* Run it: no GIL needed (and none taken). */
void np_ncall_run(np_ncall *c);
/* With the GIL, after the run: the result (a new reference), or NULL with the
 * call's exception raised. */
PyObject *np_ncall_outcome(np_ncall *c);
/* 1 if the call failed (its outcome is an exception), before conversion. */
int np_ncall_failed(np_ncall *c);
/* With the GIL: unpin, drop references, free.  NULL is fine. */
void np_ncall_free(np_ncall *c);
/* ThreadPool.submit(native_fn, ...). */
PyObject *np_native_submit(np_core *core, PyObject *fn, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames);
/* The C API capsule (csrc/include/nativepool.h), added to the module. */
int np_capi_init(PyObject *module, np_state *st);

/* pool.map(): builds and returns a MapIterator (mapiter.c: it does not
 * keep pool alive; with buffersize it holds it weakly). */
PyObject *np_map(PyObject *pool, np_core *core, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames);

#endif /* NP_MODULE_H */
