/* native_task.c -- native calls as pool tasks, the reclaim stack, and the
 * C API capsule (include/nativepool.h).
 *
 * A native task is a future whose call is C (np_ncall).  Its worker:
 *
 *   drops the GIL if it held it (np_worker_drop_gil)
 *   PENDING -> RUNNING with a CAS                        no GIL
 *   runs the kernel                                      no GIL
 *   RUNNING -> FINISHED under the future's lock          GIL only if stdlib
 *                                                        waiters are attached
 *   runs done callbacks                                  GIL only if any
 *   release: the queue's reference to the future         pushed on the reclaim
 *                                                        stack, dropped later
 *
 * The last step is why the reclaim stack exists: Py_DECREF needs the GIL,
 * and the future (with its pinned buffers) must not be freed by a thread
 * that lacks it.  Whoever holds the GIL next drains the stack: the next
 * submit or map on any pool, a join, a worker that takes the GIL for
 * callbacks, and any worker that runs out of work (it takes the GIL once
 * before parking).  Draining converts the outcome of a future nobody read
 * yet (np_future_settle), which frees its call: so soon after the task is
 * done, its buffers are unpinned and its arguments let go, as the stdlib
 * lets go of a finished work item.  result() converts it itself if it
 * comes first (np_future_materialize).
 */
#include "np_native.h"

#include <stddef.h>

#include "nativepool.h"

/* ---- the reclaim stack ------------------------------------------------------ */

void
np_reclaim_push(np_state *st, np_pytask *t)
{
    /* A Treiber stack that is only ever popped whole (exchange with NULL),
     * so there is no ABA problem.  Release: the task's last writes (its
     * outcome) happen before the drainer reads it. */
    np_pytask *head = atomic_load_explicit(&st->reclaim, memory_order_relaxed);
    do {
        t->base.next = (np_task *)head;
    } while (!atomic_compare_exchange_weak_explicit(
        &st->reclaim, &head, t, memory_order_release, memory_order_relaxed));
}

void
np_reclaim_drain(np_state *st)
{
    if (atomic_load_explicit(&st->reclaim, memory_order_relaxed) == NULL) {
        return;
    }
    np_pytask *t = atomic_exchange_explicit(&st->reclaim, NULL,
                                            memory_order_acquire);
    while (t != NULL) {
        np_pytask *next = (np_pytask *)t->base.next;
        t->base.release(&t->base, NULL);   /* may run Python (finalizers) */
        t = next;
    }
}

/* ---- the future as a native task ------------------------------------------ */

static void
native_task_run(np_task *t, void *worker)
{
    np_future *f = NP_TASK_FUTURE(t);
    np_state *st = f->core->st;
    np_worker_drop_gil(worker);
    if (np_future_set_running_nogil(st, f, worker)) {
        np_ncall_run(f->ncall);
        np_future_finish_native(st, f, worker);
    }
}

static void
native_task_release(np_task *t, void *worker)
{
    np_future *f = NP_TASK_FUTURE(t);
    if (!np_worker_has_gil(worker)) {
        np_state *st = f->core->st;
        f->core = NULL;
        np_reclaim_push(st, &f->task);   /* f belongs to the stack now */
        return;
    }
    f->core = NULL;
    /* Done with the task: convert its outcome if nobody has, which frees
     * the call (unpins its buffers, drops the function), as the stdlib's
     * worker drops a finished work item. */
    np_future_settle(f);
    Py_DECREF(f);   /* the queue's reference */
}

/* Queue a prepared call as a future.  Takes c (freed on failure). */
static PyObject *
submit_call(np_core *core, np_ncall *c)
{
    np_future *f = np_future_new(core->st);
    if (f == NULL) {
        np_ncall_free(c);
        return NULL;
    }
    f->ncall = c;
    f->core = core;
    f->task.base.run = native_task_run;
    f->task.base.release = native_task_release;
    f->task.abandon = np_future_task_abandon;   /* also unpins */
    f->task.after_fork = np_future_task_after_fork;
    Py_INCREF(f);   /* the queue's reference, dropped by release */
    int r = np_core_submit(core, &f->task);
    if (r != 0) {
        if (r < 0) {
            f->core = NULL;
            Py_DECREF(f);   /* the queue's: not queued */
        }
        Py_DECREF(f);   /* ours (not queued: frees the call) */
        return NULL;
    }
    return (PyObject *)f;
}

PyObject *
np_native_submit(np_core *core, PyObject *fn, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames)
{
    /* Refuse before converting (and pinning) anything. */
    if (np_core_check_open(core) < 0) {
        return NULL;
    }
    np_ncall *c = np_ncall_new(fn, args, nargs, kwnames);
    if (c == NULL) {
        return NULL;
    }
    return submit_call(core, c);
}

/* ---- the C API ----------------------------------------------------------------- */

/* A C API task's kernel: the call is the np_ncall around k. */
static void
capi_kernel(np_kcall *k)
{
    np_ncall *c = (np_ncall *)k;
    c->capi.run(c->capi.arg);
    if (c->capi.result == NULL && c->capi.cleanup != NULL) {
        /* Nothing will need arg again: let the extension free it now, on
         * the worker, rather than when someone with the GIL comes by. */
        c->capi.cleaned = 1;
        c->capi.cleanup(c->capi.arg);
    }
}

static np_core *
capi_pool_core(PyObject *pool)
{
    np_state *st = pool ? np_state_from_type(Py_TYPE(pool)) : NULL;
    if (st == NULL || !PyObject_TypeCheck(pool, st->pool_type)) {
        PyErr_Format(PyExc_TypeError,
                     "nativepool C API: expected a nativepool.ThreadPool, not %.100s",
                     pool ? Py_TYPE(pool)->tp_name : "NULL");
        return NULL;
    }
    return np_pool_core(pool);
}

static PyObject *
capi_submit_task(PyObject *pool, const NativePool_Task *task)
{
    if (task == NULL || task->run == NULL) {
        if (task != NULL && task->cleanup != NULL) {
            task->cleanup(task->arg);
        }
        PyErr_SetString(PyExc_ValueError,
                        "nativepool C API: the task's run function is NULL");
        return NULL;
    }
    np_core *core = capi_pool_core(pool);
    np_ncall *c = core ? np_ncall_alloc(0) : NULL;
    if (c == NULL) {
        if (task->cleanup != NULL) {
            task->cleanup(task->arg);
        }
        return NULL;
    }
    c->kernel = capi_kernel;
    c->capi.run = task->run;
    c->capi.result = task->result;
    c->capi.cleanup = task->cleanup;
    c->capi.arg = task->arg;
    return submit_call(core, c);   /* on failure, freeing c runs cleanup */
}

static PyObject *
capi_submit(PyObject *pool, void (*run)(void *), void *arg,
            void (*cleanup)(void *))
{
    NativePool_Task task = {run, arg, NULL, cleanup};
    return capi_submit_task(pool, &task);
}

static int
capi_is_thread_pool(PyObject *obj)
{
    np_state *st = obj ? np_state_from_type(Py_TYPE(obj)) : NULL;
    return st != NULL && PyObject_TypeCheck(obj, st->pool_type);
}

static const NativePool_CAPI CAPI = {
    .version = NATIVEPOOL_CAPI_VERSION,
    .size = sizeof(NativePool_CAPI),
    .Submit = capi_submit,
    .SubmitTask = capi_submit_task,
    .IsThreadPool = capi_is_thread_pool,
};

int
np_capi_init(PyObject *module, np_state *Py_UNUSED(st))
{
    PyObject *capsule =
        PyCapsule_New((void *)&CAPI, NATIVEPOOL_CAPSULE_NAME, NULL);
    if (capsule == NULL) {
        return -1;
    }
    int r = np_module_add(module, "_C_API", capsule);
    Py_DECREF(capsule);
    return r;
}
