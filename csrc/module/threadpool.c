/* threadpool.c -- ThreadPoolBase (the C half of nativepool.ThreadPool) and
 * PoolCore, the part its worker threads share.
 *
 *   ThreadPool object ----strong----> PoolCore <----strong---- worker threads
 *   (user's handle)                   (np_pool, initializer,   (threading.Thread
 *                                      threads, broken state)   target=core._work)
 *
 * Workers hold the core, not the pool object, so a pool the user drops
 * without shutdown() is collected like the stdlib's: its dealloc closes the
 * core, the workers finish what is queued and exit, and the last one drops
 * the core.
 *
 * A worker holds the GIL lazily.  A Python task takes it and the worker
 * keeps it while Python tasks follow, running them back to back, so a burst
 * of submits does not bounce the GIL between threads per task.  A native
 * task (native_task.c) drops it and runs without it; parking drops it too.
 * So a worker that only runs native tasks never takes the GIL at all.
 */
#include "np_module.h"

#include <stddef.h>

#include "structmember.h"

/* ---- the future as a task ---------------------------------------------- */

static void
future_task_run(np_task *t, void *worker)
{
    np_future *f = NP_TASK_FUTURE(t);
    np_state *st = f->core->st;
    np_worker_hold_gil(worker);
    int r = np_future_set_running(st, f);
    if (r > 0) {
        PyObject *res = PyObject_Vectorcall(
            f->fn, f->args ? &PyTuple_GET_ITEM(f->args, 0) : NULL, f->nargs,
            f->kwnames);
        if (res != NULL) {
            np_future_finish_result(st, f, res);
        }
        else {
            np_future_finish_exception(st, f, NULL);
        }
    }
    else if (r < 0) {
        /* Someone completed the queued future by hand: set_running logged
         * it at CRITICAL, as the stdlib's does; the task is skipped. */
        PyErr_Clear();
    }
    /* Drop the call's references now, as the stdlib drops its work item. */
    Py_CLEAR(f->fn);
    Py_CLEAR(f->args);
    Py_CLEAR(f->kwnames);
}

static void
future_task_release(np_task *t, void *Py_UNUSED(worker))
{
    np_future *f = NP_TASK_FUTURE(t);
    f->core = NULL;
    Py_DECREF(f);   /* the queue's reference */
}

void
np_future_task_abandon(np_pytask *t, PyObject *exc)
{
    np_future *f = NP_TASK_FUTURE(t);
    np_state *st = f->core->st;
    /* A native call never ran: detach it before the transition (a callback
     * reading the outcome must not find it), unpin its buffers after. */
    np_ncall *c = f->ncall;
    f->ncall = NULL;
    if (exc == NULL) {
        np_future_cancel_and_notify(st, f);
    }
    else {
        np_future_finish_exception(st, f, exc);
    }
    Py_CLEAR(f->fn);
    Py_CLEAR(f->args);
    Py_CLEAR(f->kwnames);
    np_ncall_free(c);
}

void
np_future_task_after_fork(np_pytask *t)
{
    np_future_after_fork(NP_TASK_FUTURE(t));
}

/* ---- PoolCore ---------------------------------------------------------- */

typedef np_worker_ctx worker_ctx;   /* np_module.h */

void
np_worker_hold_gil(void *worker)
{
    worker_ctx *w = worker;
    if (w != NULL && w->tstate != NULL) {
        PyEval_RestoreThread(w->tstate);
        w->tstate = NULL;
    }
}

void
np_worker_drop_gil(void *worker)
{
    worker_ctx *w = worker;
    if (w != NULL && w->tstate == NULL) {
        w->tstate = PyEval_SaveThread();
    }
}

int
np_worker_has_gil(void *worker)
{
    return worker == NULL || ((worker_ctx *)worker)->tstate == NULL;
}

/* Parking: never sleep with the GIL.  Waking does not take it back: the
 * next task decides whether it needs it.
 *
 * Out of work for now (the runtime calls this before parking, with no lock
 * of ours held): if native tasks left releases for someone with the GIL,
 * be that someone first, so a finished task lets go of its function,
 * arguments and pinned buffers now, as the stdlib's worker does, and not at
 * the next submit. */
static void
worker_idle_begin(void *arg)
{
    worker_ctx *w = arg;
    if (np_reclaim_pending(w->st)) {
        np_worker_hold_gil(arg);
        np_reclaim_drain(w->st);
    }
    np_worker_drop_gil(arg);
}

/* The runtime asks for a thread: the GIL is held (we are inside submit).
 * The thread's index is taken in the same step that counts it: starting a
 * thread lets the GIL go, and a submit in another thread that starts one
 * meanwhile must get the next index, not this one (the stdlib's workers are
 * prefix_0 .. prefix_{max_workers-1}: its submit counts under a lock). */
static int
spawn_hook(np_pool *Py_UNUSED(pool), void *ctx)
{
    np_core *core = ctx;
    Py_ssize_t index = atomic_fetch_add(&core->spawned, 1);
    PyObject *t = NULL;
    PyObject *name = PyUnicode_FromFormat("%U_%zd", core->prefix, index);
    if (name != NULL) {
        t = PyObject_CallFunctionObjArgs(core->st->spawn_thread,
                                         (PyObject *)core, name, NULL);
        Py_DECREF(name);
    }
    if (t == NULL) {
        /* No thread: give the index back unless a later one is taken, so
         * the next thread gets it, as the stdlib's (it counts started
         * threads only). */
        Py_ssize_t next = index + 1;
        atomic_compare_exchange_strong(&core->spawned, &next, index);
        return -1;
    }
    int r = PyList_Append(core->threads, t);
    Py_DECREF(t);
    if (r < 0) {
        PyErr_Clear();   /* the thread runs; we only lose the join */
    }
    return 0;
}

static int
core_traverse(PyObject *op, visitproc visit, void *arg)
{
    np_core *c = (np_core *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(c->initializer);
    Py_VISIT(c->initargs);
    Py_VISIT(c->threads);
    Py_VISIT(c->prefix);
    Py_VISIT(c->broken);
    return 0;
}

static int
core_clear(PyObject *op)
{
    np_core *c = (np_core *)op;
    Py_CLEAR(c->initializer);
    Py_CLEAR(c->initargs);
    Py_CLEAR(c->threads);
    Py_CLEAR(c->prefix);
    Py_CLEAR(c->broken);
    return 0;
}

/* Close the runtime pool: no new tasks; with take, fail/cancel what is
 * queued.  exc NULL cancels. */
static void
core_close(np_core *c, int take, PyObject *exc)
{
    if (c->pool == NULL) {
        return;
    }
    np_task *queued = np_pool_close(c->pool, take);
    np_abandon_tasks(queued, exc);
}

static void
core_dealloc(PyObject *op)
{
    np_core *c = (np_core *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (c->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    if (c->pool != NULL) {
        /* Every worker holds a reference to us, so none is left; only
         * tasks (none) and orphans (after a fork) can remain. */
        core_close(c, 1, NULL);
        np_abandon_tasks(np_pool_take_orphans(c->pool), NULL);
        Py_BEGIN_ALLOW_THREADS
        np_pool_join(c->pool);
        Py_END_ALLOW_THREADS
        np_pool_free(c->pool);
        c->pool = NULL;
    }
    core_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
broken_error(np_core *c)
{
    return PyObject_CallOneArg(c->st->BrokenThreadPool, c->broken);
}

/* A worker's initializer failed: the stdlib's _initializer_failed(). */
static void
core_mark_broken(np_core *c)
{
    if (c->broken == NULL) {
        c->broken = PyUnicode_FromString(
            "A thread initializer failed, the thread pool is not usable anymore");
        if (c->broken == NULL) {
            PyErr_WriteUnraisable((PyObject *)c);
            return;
        }
    }
    PyObject *exc = broken_error(c);
    if (exc == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    core_close(c, 1, exc);
    Py_DECREF(exc);
}

/* core._work(): the body of every worker thread. */
static PyObject *
core_work(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_core *c = (np_core *)op;
    if (c->initializer != NULL) {
        /* initializer(*initargs), as the stdlib's worker: initargs may be
         * any iterable, unpacked by each worker, and failing to unpack it
         * is the initializer's failure. */
        PyObject *args = PySequence_Tuple(c->initargs);
        PyObject *r = args ? PyObject_Call(c->initializer, args, NULL) : NULL;
        Py_XDECREF(args);
        if (r == NULL) {
            /* As the stdlib: log it, break the pool, and stop this worker
             * (np_pool_work returns at once: the pool is closed, empty). */
            PyObject *exc = np_fetch_exception();
            np_log_exc(c->st->cf_logger, "critical", "Exception in initializer:",
                       NULL, exc);
            Py_XDECREF(exc);
            core_mark_broken(c);
        }
        Py_XDECREF(r);
    }
    worker_ctx ctx = {NULL, c->st};
    /* Returns once the pool is closed and drained (at once if broken). */
    np_pool_work(c->pool, &ctx);
    np_worker_hold_gil(&ctx);
    Py_RETURN_NONE;
}

/* core._close(cancel_futures=False): what shutdown() and the atexit hook do
 * before joining. */
static void
core_shutdown(np_core *c, int cancel_futures)
{
    c->shutdown = 1;
    if (cancel_futures) {
        atomic_store(&c->cancel_all, 1);
    }
    core_close(c, cancel_futures, NULL);
}

/* Join every worker thread (Python's join: interruptible by Ctrl-C). */
static int
core_join(np_core *c)
{
    for (Py_ssize_t i = 0; c->threads && i < PyList_GET_SIZE(c->threads); i++) {
        PyObject *t = PyList_GET_ITEM(c->threads, i);
        Py_INCREF(t);
        PyObject *r = PyObject_CallMethodNoArgs(t, c->st->str_join);
        Py_DECREF(t);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    /* Threads reserved but still starting are counted by the runtime. */
    Py_BEGIN_ALLOW_THREADS
    np_pool_join(c->pool);
    Py_END_ALLOW_THREADS
    /* What our native tasks left for someone with the GIL to release. */
    np_reclaim_drain(c->st);
    return 0;
}

static PyObject *
core_py_close(PyObject *op, PyObject *args)
{
    int cancel = 0;
    if (!PyArg_ParseTuple(args, "|p:_close", &cancel)) {
        return NULL;
    }
    core_shutdown((np_core *)op, cancel);
    Py_RETURN_NONE;
}

static PyObject *
core_py_join(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (core_join((np_core *)op) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* In a forked child: the parent's queued and running tasks cannot be
 * finished here; fail them instead of leaving their futures pending. */
static PyObject *
core_after_fork(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_core *c = (np_core *)op;
    np_task *orphans = np_pool_take_orphans(c->pool);
    /* A worker may have held an orphan's lock at the fork (finishing it):
     * that thread is gone, so free the lock before failing the task. */
    for (np_task *t = orphans; t != NULL; t = t->next) {
        np_pytask *pt = (np_pytask *)t;
        if (pt->after_fork != NULL) {
            pt->after_fork(pt);
        }
    }
    if (orphans != NULL) {
        PyObject *exc = PyObject_CallFunction(
            c->st->BrokenThreadPool, "s",
            "the worker thread running this task did not survive os.fork(); "
            "the task belongs to the parent process");
        if (exc == NULL) {
            return NULL;
        }
        np_abandon_tasks(orphans, exc);
        Py_DECREF(exc);
    }
    /* Thread objects of the parent are dead here. */
    if (PyList_SetSlice(c->threads, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
core_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_pool_stats s;
    np_pool_get_stats(((np_core *)op)->pool, &s);
    return Py_BuildValue("{snsnsnsKsKsi}", "threads", (Py_ssize_t)s.threads,
                         "idle", (Py_ssize_t)s.idle, "queued",
                         (Py_ssize_t)s.queued, "submitted",
                         (unsigned long long)s.submitted, "started",
                         (unsigned long long)s.started, "closed", s.closed);
}

static PyObject *
core_get_threads(PyObject *op, void *Py_UNUSED(closure))
{
    np_core *c = (np_core *)op;
    return PyList_GetSlice(c->threads, 0, PY_SSIZE_T_MAX);
}

static PyMethodDef core_methods[] = {
    {"_work", core_work, METH_NOARGS, "the worker thread body"},
    {"_close", core_py_close, METH_VARARGS, "stop accepting work"},
    {"_join", core_py_join, METH_NOARGS, "join every worker thread"},
    {"_after_fork", core_after_fork, METH_NOARGS, "reset in a forked child"},
    {"_stats", core_stats, METH_NOARGS, "runtime counters (a dict)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"threads", core_get_threads, NULL, "the worker threads (a new list)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef core_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(np_core, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, "The part of a ThreadPool its worker threads share."},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, core_methods},
    {Py_tp_getset, core_getset},
    {Py_tp_members, core_members},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "nativepool._nativepool.PoolCore",
    .basicsize = sizeof(np_core),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots,
};

/* ---- submitting --------------------------------------------------------- */

int
np_core_check_open(np_core *c)
{
    if (c->broken != NULL) {
        PyObject *exc = broken_error(c);
        if (exc != NULL) {
            np_raise_exception(exc);
            Py_DECREF(exc);
        }
        return -1;
    }
    return np_check_not_shut_down(c->st, c->shutdown);
}

int
np_check_not_shut_down(np_state *st, int shutdown)
{
    if (shutdown) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after shutdown");
        return -1;
    }
    if (st->interpreter_exiting) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after interpreter shutdown");
        return -1;
    }
    return 0;
}

int
np_core_submit(np_core *c, np_pytask *task)
{
    np_reclaim_drain(c->st);   /* one atomic load when there is nothing */
    if (np_core_check_open(c) < 0) {
        return -1;
    }
    int r = np_pool_submit(c->pool, &task->base);
    if (r == NP_OK) {
        if (!PyErr_Occurred()) {
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            /* Ctrl-C (or SystemExit) while Thread.start() waited for a
             * thread it had started: the task is queued and will run, but
             * the interrupt is the caller's, as the stdlib's submit raises
             * it after queuing its work item. */
            return 1;
        }
        /* A thread failed to start but others run the task: the pool is
         * just smaller.  Say so once per pool, do not fail the submit. */
        PyObject *exc = np_fetch_exception();
        if (!atomic_exchange(&c->spawn_warned, 1)) {
            np_log_exc(c->st->np_logger, "warning",
                       "could not start another worker thread", NULL, exc);
        }
        Py_XDECREF(exc);
        return 0;
    }
    if (r == NP_ECLOSED) {
        /* Closed between our check and the runtime's (shutdown in another
         * thread): report it as the check would have. */
        if (np_core_check_open(c) == 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "cannot schedule new futures after shutdown");
        }
        return -1;
    }
    /* No thread could be started and none exists: the task is back with us;
     * anything else stranded is failed with the same error. */
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_RuntimeError, "can't start new thread");
    }
    PyObject *exc = np_fetch_exception();
    np_abandon_tasks(np_pool_take_orphans(c->pool), exc);
    np_raise_exception(exc);
    Py_DECREF(exc);
    return -1;
}

/* ---- ThreadPoolBase ----------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    np_core *core;
} np_poolobj;

static np_core *
get_core(PyObject *op)
{
    np_core *c = ((np_poolobj *)op)->core;
    if (c == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "ThreadPool.__init__() was not called");
    }
    return c;
}

np_core *
np_pool_core(PyObject *pool)
{
    return get_core(pool);
}

/* __init__(max_workers, thread_name_prefix, initializer, initargs): the
 * Python subclass validates and fills in the stdlib defaults first (errors
 * here name the public class: users never see ThreadPoolBase). */
static int
pool_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"max_workers", "thread_name_prefix", "initializer",
                          "initargs", NULL};
    Py_ssize_t max_workers;
    PyObject *prefix, *initializer, *initargs;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "nUOO:ThreadPool", kws,
                                     &max_workers, &prefix, &initializer,
                                     &initargs)) {
        return -1;
    }
    if (max_workers <= 0) {
        PyErr_SetString(PyExc_ValueError, "max_workers must be greater than 0");
        return -1;
    }
    np_poolobj *self = (np_poolobj *)op;
    if (self->core != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ThreadPool is already initialised");
        return -1;
    }
    np_state *st = np_state_from_type(Py_TYPE(op));
    np_core *c = PyObject_GC_New(np_core, st->core_type);
    if (c == NULL) {
        return -1;
    }
    c->pool = NULL;
    c->st = st;
    c->initializer = initializer == Py_None ? NULL : initializer;
    Py_XINCREF(c->initializer);
    Py_INCREF(initargs);
    c->initargs = initargs;
    c->threads = PyList_New(0);
    Py_INCREF(prefix);
    c->prefix = prefix;
    c->broken = NULL;
    c->weakreflist = NULL;
    c->max_workers = max_workers;
    atomic_init(&c->spawned, 0);
    atomic_init(&c->spawn_warned, 0);
    c->shutdown = 0;
    atomic_init(&c->cancel_all, 0);
    PyObject_GC_Track((PyObject *)c);
    if (c->threads == NULL) {
        Py_DECREF(c);
        return -1;
    }
    np_pool_hooks hooks = {
        .spawn = spawn_hook,
        .idle_begin = worker_idle_begin,
        .idle_end = NULL,
        .ctx = c,
    };
    c->pool = np_pool_new((size_t)max_workers, &hooks);
    if (c->pool == NULL) {
        Py_DECREF(c);
        PyErr_NoMemory();
        return -1;
    }
    self->core = c;
    return 0;
}

static int
pool_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((np_poolobj *)op)->core);
    return 0;
}

static int
pool_clear(PyObject *op)
{
    Py_CLEAR(((np_poolobj *)op)->core);
    return 0;
}

static void
pool_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    np_poolobj *self = (np_poolobj *)op;
    PyObject_GC_UnTrack(op);
    /* Dropped without shutdown(): like the stdlib's weakref callback, let
     * the workers finish what is queued and exit. */
    if (self->core != NULL) {
        core_close(self->core, 0, NULL);
    }
    pool_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
pool_submit(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    np_core *c = get_core(op);
    if (c == NULL) {
        return NULL;
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "submit() missing 1 required positional argument: 'fn'");
        return NULL;
    }
    PyObject *fn = args[0];
    if (np_is_native(c->st, fn)) {
        return np_native_submit(c, fn, args + 1, nargs - 1, kwnames);
    }
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError,
                     "submit() argument 'fn' must be callable, not %.200s",
                     Py_TYPE(fn)->tp_name);
        return NULL;
    }
    np_future *f = np_future_new(c->st);
    if (f == NULL) {
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    Py_ssize_t ncall = nargs - 1 + nkw;
    if (ncall > 0) {
        f->args = PyTuple_New(ncall);
        if (f->args == NULL) {
            Py_DECREF(f);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < ncall; i++) {
            Py_INCREF(args[i + 1]);
            PyTuple_SET_ITEM(f->args, i, args[i + 1]);
        }
    }
    if (nkw > 0) {
        Py_INCREF(kwnames);
        f->kwnames = kwnames;
    }
    Py_INCREF(fn);
    f->fn = fn;
    f->nargs = nargs - 1;
    f->core = c;
    f->task.base.run = future_task_run;
    f->task.base.release = future_task_release;
    f->task.abandon = np_future_task_abandon;
    f->task.after_fork = np_future_task_after_fork;
    Py_INCREF(f);   /* the queue's reference, dropped by release */
    int r = np_core_submit(c, &f->task);
    if (r != 0) {
        if (r < 0) {
            f->core = NULL;
            Py_DECREF(f);   /* the queue's: not queued */
        }
        Py_DECREF(f);   /* ours */
        return NULL;
    }
    return (PyObject *)f;
}

static PyObject *
pool_map(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    np_core *c = get_core(op);
    if (c == NULL) {
        return NULL;
    }
    return np_map(op, c, args, nargs, kwnames);
}

static PyObject *
pool_shutdown(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"wait", "cancel_futures", NULL};
    int wait = 1, cancel = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p$p:shutdown", kws, &wait,
                                     &cancel)) {
        return NULL;
    }
    np_core *c = get_core(op);
    if (c == NULL) {
        return NULL;
    }
    core_shutdown(c, cancel);
    if (wait && core_join(c) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
pool_get_core(PyObject *op, void *Py_UNUSED(closure))
{
    np_core *c = get_core(op);
    Py_XINCREF(c);
    return (PyObject *)c;
}

static PyMethodDef pool_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))pool_submit,
     METH_FASTCALL | METH_KEYWORDS,
     "submit($self, fn, /, *args, **kwargs)\n--\n\n"
     "Submit fn(*args, **kwargs) to run on a worker thread.\n\n"
     "Returns a nativepool.Future for its outcome. Raises TypeError if fn\n"
     "is not callable, RuntimeError after shutdown, BrokenThreadPool if an\n"
     "initializer failed."},
    {"map", (PyCFunction)(void (*)(void))pool_map,
     METH_FASTCALL | METH_KEYWORDS,
     "map($self, fn, /, *iterables, timeout=None, chunksize=1, buffersize=None)\n"
     "--\n\n"
     "Return an iterator equivalent to map(fn, *iterables), computed on\n"
     "the pool's workers, in order.\n\n"
     "timeout bounds the whole iteration (from this call); chunksize is\n"
     "accepted and ignored, as by ThreadPoolExecutor; buffersize (as in\n"
     "Python 3.14) bounds how many calls are in flight, pulling the inputs\n"
     "lazily, so an infinite iterable works."},
    {"shutdown", (PyCFunction)(void (*)(void))pool_shutdown,
     METH_VARARGS | METH_KEYWORDS,
     "shutdown($self, /, wait=True, *, cancel_futures=False)\n--\n\n"
     "Stop accepting work; with wait, join the workers once queued work\n"
     "is done. cancel_futures cancels what has not started (and, unlike\n"
     "the stdlib, notifies concurrent.futures.wait() of it)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pool_getset[] = {
    {"_core", pool_get_core, NULL, "the shared worker state", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_doc, "The C core of nativepool.ThreadPool."},
    {Py_tp_init, pool_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_clear, pool_clear},
    {Py_tp_methods, pool_methods},
    {Py_tp_getset, pool_getset},
    {0, NULL},
};

static PyType_Spec pool_spec = {
    .name = "nativepool._nativepool.ThreadPoolBase",
    .basicsize = sizeof(np_poolobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = pool_slots,
};

int
np_pool_types_init(PyObject *module, np_state *st)
{
    st->core_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &core_spec, NULL);
    if (st->core_type == NULL) {
        return -1;
    }
    st->pool_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &pool_spec, NULL);
    if (st->pool_type == NULL) {
        return -1;
    }
    return np_module_add(module, "ThreadPoolBase", (PyObject *)st->pool_type);
}
