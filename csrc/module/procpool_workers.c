/* procpool_workers.c -- _nativepool._ProcCore: the workers come and go
 * (attach, death, requeue, replacement, cancel_running) and the pool's own
 * life (shutdown, terminate, broken, forked).  Called by the manager with
 * the GIL held.  The design: procpool.h.
 */
#include "procpool.h"

#include <pthread.h>
#include <unistd.h>

/* Workers that die before they take a task, STARTUP_DEATHS of them in a
 * row, break the pool: such a worker never reached its loop, and its
 * replacement will not either.  The usual cause is a script without the
 * main guard, which each spawn or forkserver worker runs again on import
 * (multiprocessing refuses the pool it starts there, and the worker dies
 * with a traceback); a pool that replaced them forever would print
 * tracebacks forever and never finish a task. */
#define STARTUP_DEATHS 3
#define STARTUP_MESSAGE \
    "3 worker processes in a row died while starting, before they could " \
    "run a task: the process pool is not usable anymore.  With the " \
    "'spawn' and 'forkserver' start methods every worker imports the main " \
    "module: a script that creates a ProcessPool and submits to it at its " \
    "top level must do so under if __name__ == \"__main__\": (see \"Safe " \
    "importing of main module\" in the multiprocessing documentation)"

static void close_core(proc_core *c, int how, int terminate);

/* The pool cannot go on: message (and cause, or NULL) for every later
 * submit and every pending task, which fail with BrokenProcessPool; running
 * tasks finish, then the workers stop.  The first reason stands.  0 or -1. */
static int
break_pool(proc_core *c, const char *message, PyObject *cause)
{
    if (c->broken == NULL) {
        PyObject *msg = PyUnicode_FromString(message);
        if (msg == NULL) {
            return -1;
        }
        c->broken = msg;
        c->broken_cause = cause ? Py_NewRef(cause) : NULL;
    }
    close_core(c, ABANDON_FAIL, 0);
    return 0;
}

/* core._attach(channel, pid) -> slot index: a started worker joins. */
PyObject *
np_proc_attach(PyObject *op, PyObject *args)
{
    proc_core *c = CORE(op);
    PyObject *chanobj;
    long pid;
    if (!PyArg_ParseTuple(args, "Ol:_attach", &chanobj, &pid)) {
        return NULL;
    }
    np_chan *ch = np_channel_chan(c->st, chanobj);
    if (ch == NULL) {
        return NULL;
    }
    np_mutex_lock(&c->mutex);
    proc_slot *s = NULL;
    int i;
    for (i = 0; i < c->nslots; i++) {
        if (c->slots[i].state == SLOT_FREE) {
            s = &c->slots[i];
            break;
        }
    }
    if (s != NULL) {
        s->ch = ch;
        s->chanobj = Py_NewRef(chanobj);
        s->pid = pid;
        s->running = NULL;
        s->kill_reason = KILL_NONE;
        s->sent_id = UINT64_MAX;   /* no task sent yet */
        s->left = c->max_tasks;
        s->state = SLOT_LIVE;
        c->nlive++;
    }
    np_mutex_unlock(&c->mutex);
    if (s == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no free worker slot");
        return NULL;
    }
    atomic_store(&c->changed, 1);
    np_proc_ring_control(c);
    np_proc_feed_slot(c, s, NULL);   /* tasks may wait already; they buffer in the ring */
    return PyLong_FromLong(i);
}

static proc_slot *
slot_arg(proc_core *c, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0 || i >= c->nslots) {
        PyErr_SetString(PyExc_IndexError, "no such worker slot");
        return NULL;
    }
    return &c->slots[i];
}

static PyObject *
cancelled_running_error(proc_core *c)
{
    return PyObject_CallFunction(c->st->CancelledError, "s",
                                 "the task was cancelled while running; "
                                 "its worker process was killed");
}

/* Fail f, a task the core has let go of (its reference is the caller's,
 * dropped here), with err (stolen; NULL: the current exception), its
 * shared buffers closed.  GIL held. */
static void
fail_task(proc_core *c, np_future *f, PyObject *err)
{
    np_proc_task_close_fds(np_proc_future_task(f));
    np_future_finish_exception(c->st, f, err);
    Py_XDECREF(err);
    Py_DECREF(f);
}

/* core->mutex held: put f back at the head of the pending list (it takes
 * over the caller's reference); its future stays RUNNING. */
static void
requeue(proc_core *c, np_future *f)
{
    np_proc_future_task(f)->requeued = 1;
    f->task.base.next = c->head ? &c->head->task.base : NULL;
    c->head = f;
    if (c->tail == NULL) {
        c->tail = f;
    }
    c->npending++;
}

/* core._slot_gone(slot, exc) -> bool: the worker of slot has ended (the
 * manager reaped it).  Its running task fails with exc, or TimeoutError /
 * CancelledError if the pool killed it for that; or, if the worker died
 * before it had read the whole task, the task goes back to the head of the
 * pending list: it never ran, so another worker runs it.  The slot's
 * channel is closed.  The manager then calls _replace(). */
PyObject *
np_proc_slot_gone(PyObject *op, PyObject *args)
{
    proc_core *c = CORE(op);
    PyObject *slotarg, *exc;
    if (!PyArg_ParseTuple(args, "OO:_slot_gone", &slotarg, &exc)) {
        return NULL;
    }
    proc_slot *s = slot_arg(c, slotarg);
    if (s == NULL) {
        return NULL;
    }
    if (s->state == SLOT_FREE) {
        PyErr_SetString(PyExc_ValueError, "slot is not in use");
        return NULL;
    }
    /* A send in progress (streaming without the GIL) must end before the
     * channel goes: it does soon, the worker being gone.  A send that has
     * not begun sees the new generation and does nothing.  The whole
     * critical section runs with the GIL released: it needs no Python, and
     * taking the GIL back while holding send_lock would wait for the GIL
     * under one of our locks. */
    int broken = c->broken != NULL;
    int startup_broken = 0;
    np_future *f;
    int reason;
    PyObject *chanobj;
    Py_BEGIN_ALLOW_THREADS
    np_mutex_lock(&s->send_lock);
    np_mutex_lock(&c->mutex);
    f = s->running;
    reason = s->kill_reason;
    uint64_t read = np_chan_peer_read_pos(s->ch);
    if (f != NULL && reason == KILL_NONE && !broken) {
        if (read == 0) {
            /* It died before reading a byte of its first task: it never
             * got as far as its loop (see STARTUP_DEATHS). */
            startup_broken = ++c->startup_deaths >= STARTUP_DEATHS;
        }
        if (s->sent_id != np_proc_future_task(f)->id || read < s->sent_end) {
            /* Never sent whole, or not read whole: fn never started. */
            requeue(c, f);
            f = NULL;
        }
    }
    if (read > 0) {
        c->startup_deaths = 0;   /* this one did take a task */
    }
    s->running = NULL;
    s->state = SLOT_FREE;
    s->gen++;
    c->nlive--;
    chanobj = s->chanobj;
    s->chanobj = NULL;
    s->ch = NULL;
    np_mutex_unlock(&c->mutex);
    np_mutex_unlock(&s->send_lock);
    Py_END_ALLOW_THREADS
    atomic_store(&c->changed, 1);
    PyObject *r = chanobj ? PyObject_CallMethod(chanobj, "close", NULL) : NULL;
    if (r == NULL) {
        PyErr_Clear();   /* nobody else uses it: cannot fail */
    }
    Py_XDECREF(r);
    Py_XDECREF(chanobj);
    if (f != NULL) {
        PyObject *err;
        if (reason == KILL_TIMEOUT) {
            err = PyObject_CallFunction(
                c->st->TimeoutError, "s",
                "the task did not finish within its timeout; "
                "its worker process was killed");
        }
        else if (reason == KILL_CANCEL) {
            err = cancelled_running_error(c);
        }
        else if (broken && reason == KILL_NONE) {
            err = np_proc_broken_exception(c);   /* e.g. its initializer failed */
        }
        else {
            err = Py_NewRef(exc);
        }
        fail_task(c, f, err);   /* and the slot's reference */
    }
    if (startup_broken && break_pool(c, STARTUP_MESSAGE, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* core._replace() -> bool: start a worker (the spawn hook) if tasks wait
 * and there is room, as after a worker's death or retirement; after
 * shutdown(wait=False) too, since queued tasks must still run.  The start
 * counts in nspawning meanwhile, as a submit's does, so that the two never
 * start workers for the same room. */
PyObject *
np_proc_replace(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    proc_core *c = CORE(op);
    np_mutex_lock(&c->mutex);
    int go = c->broken == NULL && c->head != NULL &&
             c->nlive + c->nspawning < c->nslots;
    if (go) {
        c->nspawning++;
    }
    np_mutex_unlock(&c->mutex);
    if (!go) {
        Py_RETURN_FALSE;
    }
    PyObject *r = np_proc_call_spawn(c);
    np_mutex_lock(&c->mutex);
    c->nspawning--;
    np_mutex_unlock(&c->mutex);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_TRUE;
}

/* core._cancel_running(future) -> pid, True or None: ask that the worker
 * running future be killed (pid: the manager kills it; its death fails the
 * future with CancelledError); True: it was a requeued task waiting for a
 * worker, failed here with CancelledError; None: not a running task of
 * this pool. */
PyObject *
np_proc_cancel_running(PyObject *op, PyObject *fut)
{
    proc_core *c = CORE(op);
    long pid = -1;
    int requeued = 0;
    np_mutex_lock(&c->mutex);
    for (int i = 0; i < c->nslots; i++) {
        proc_slot *s = &c->slots[i];
        if (s->state != SLOT_FREE && (PyObject *)s->running == fut) {
            if (s->kill_reason == KILL_NONE) {
                s->kill_reason = KILL_CANCEL;
            }
            pid = s->pid;
            break;
        }
    }
    if (pid < 0) {
        /* Only a requeued task is RUNNING in the list. */
        requeued = np_proc_unlink_pending(c, fut, 1);
    }
    np_mutex_unlock(&c->mutex);
    if (requeued) {
        fail_task(c, (np_future *)fut, cancelled_running_error(c));   /* and the list's reference */
        Py_RETURN_TRUE;
    }
    if (pid < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(pid);
}

/* Give back the pending futures.  ABANDON_CANCEL (shutdown(cancel_futures)):
 * cancel them, waiters told, as a queued task the pool gives back, but
 * leave requeued tasks (RUNNING: their worker died before reading them) to
 * run.  ABANDON_FAIL (broken): fail every one with the pool's
 * BrokenProcessPool.  ABANDON_ALL (dealloc: no worker will run anything):
 * cancel them, and fail requeued ones.  GIL held. */
void
np_proc_abandon_pending(proc_core *c, int how)
{
    np_future *give = NULL, *give_tail = NULL;
    np_mutex_lock(&c->mutex);
    np_future *p = c->head;
    c->head = c->tail = NULL;
    c->npending = 0;
    while (p != NULL) {
        np_future *next = next_future(p);
        p->task.base.next = NULL;
        np_future **head = &give, **tail = &give_tail;
        if (how == ABANDON_CANCEL && np_proc_future_task(p)->requeued) {
            head = &c->head;
            tail = &c->tail;
            c->npending++;
        }
        if (*tail != NULL) {
            (*tail)->task.base.next = &p->task.base;
        }
        else {
            *head = p;
        }
        *tail = p;
        p = next;
    }
    np_mutex_unlock(&c->mutex);
    for (np_future *f = give; f != NULL;) {
        np_future *next = next_future(f);
        f->task.base.next = NULL;
        np_proc_task_close_fds(np_proc_future_task(f));
        if (how == ABANDON_FAIL || np_proc_future_task(f)->requeued) {
            if (np_proc_future_task(f)->requeued ||
                np_future_set_running(c->st, f) > 0) {
                PyObject *exc = c->broken != NULL
                    ? np_proc_broken_exception(c)
                    : PyObject_CallFunction(c->broken_cls, "s",
                                            "the pool was closed before a "
                                            "worker could run this task");
                np_future_finish_exception(c->st, f, exc);   /* NULL: the error */
                Py_XDECREF(exc);
            }
            else {
                PyErr_Clear();   /* cancelled meanwhile (or logged by set_running) */
            }
        }
        else {
            np_future_cancel_and_notify(c->st, f);
        }
        Py_DECREF(f);
        f = next;
    }
}

np_future *
np_proc_take_pending(proc_core *c)
{
    np_future *list = c->head;
    c->head = c->tail = NULL;
    c->npending = 0;
    return list;
}

void
np_proc_fail_list(proc_core *c, np_future *list, PyObject *exc)
{
    while (list != NULL) {
        np_future *f = list;
        list = next_future(f);
        f->task.base.next = NULL;
        np_proc_task_close_fds(np_proc_future_task(f));
        /* A requeued task is RUNNING already; a pending one starts (or, if
         * cancelled meanwhile, its waiters are told) before it fails. */
        if (np_proc_future_task(f)->requeued || np_future_set_running(c->st, f) > 0) {
            np_future_finish_exception(c->st, f, exc);
        }
        else {
            PyErr_Clear();   /* cancelled (or logged by set_running) */
        }
        Py_DECREF(f);
    }
}

/* No new tasks; give the pending ones back (how: as
 * np_proc_abandon_pending, or -1 to leave them to run); with terminate,
 * every live worker is about to be signalled, so its task fails even if it
 * was unread.  The collector, woken, stops the workers once they are idle. */
static void
close_core(proc_core *c, int how, int terminate)
{
    np_mutex_lock(&c->mutex);
    c->closed = 1;
    for (int i = 0; terminate && i < c->nslots; i++) {
        proc_slot *s = &c->slots[i];
        if (s->state != SLOT_FREE && s->kill_reason == KILL_NONE) {
            s->kill_reason = KILL_TERMINATE;
        }
    }
    np_mutex_unlock(&c->mutex);
    if (how >= 0) {
        np_proc_abandon_pending(c, how);
    }
    np_proc_ring_control(c);
}

/* core._shutdown(cancel_futures): no new tasks; optionally cancel what is
 * pending.  The collector then stops the workers once the rest is done. */
PyObject *
np_proc_shutdown(PyObject *op, PyObject *args)
{
    proc_core *c = CORE(op);
    int cancel = 0;
    if (!PyArg_ParseTuple(args, "|p:_shutdown", &cancel)) {
        return NULL;
    }
    close_core(c, cancel ? ABANDON_CANCEL : -1, 0);
    Py_RETURN_NONE;
}

/* core._terminate(): terminate_workers() / kill_workers() are about to
 * signal every worker.  Their tasks fail even if unread (not requeued), and
 * so do requeued tasks still waiting for a worker. */
PyObject *
np_proc_terminate(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    close_core(CORE(op), ABANDON_ALL, 1);
    Py_RETURN_NONE;
}

/* core._set_broken(message, cause=None): the pool cannot go on (a worker's
 * initializer failed).  Pending futures fail with BrokenProcessPool. */
PyObject *
np_proc_set_broken(PyObject *op, PyObject *args)
{
    proc_core *c = CORE(op);
    PyObject *msg, *cause = Py_None;
    if (!PyArg_ParseTuple(args, "U|O:_set_broken", &msg, &cause)) {
        return NULL;
    }
    if (c->broken == NULL) {
        c->broken = Py_NewRef(msg);
        c->broken_cause = cause == Py_None ? NULL : Py_NewRef(cause);
    }
    close_core(c, ABANDON_FAIL, 0);   /* workers stop once their tasks are done */
    Py_RETURN_NONE;
}

/* In a fork child: fail f, a copy of one of the parent's tasks (the core's
 * reference, dropped here), unless it is done.  A parent thread may have
 * held its lock at the fork (the collector completing it, a thread in
 * wait()/as_completed()); that thread does not exist here: the lock is
 * reset, never waited for. */
static void
fail_in_child(proc_core *c, np_future *f)
{
    if (!np_rlock_is_owned(&f->lock)) {
        np_future_after_fork(f);
    }
    f->task.base.next = NULL;
    proc_task *t = np_proc_future_task(f);   /* NULL: its result was read */
    if (t != NULL) {
        np_proc_task_close_fds(t);   /* our copies */
    }
    uint32_t state = NPF_STATE(atomic_load(&f->state));
    /* PENDING starts first; CANCELLED only has its waiters told; a done
     * future (the collector finished it just before the fork) stays. */
    if (state == NPF_RUNNING ||
        ((state == NPF_PENDING || state == NPF_CANCELLED) &&
         np_future_set_running(c->st, f) > 0)) {
        PyObject *exc = np_proc_broken_exception(c);
        np_future_finish_exception(c->st, f, exc);   /* NULL: that error */
        Py_XDECREF(exc);
    }
    PyErr_Clear();   /* cancelled: waiters told, or nothing to do */
    Py_DECREF(f);
}

/* core._forked(message): in a child of os.fork(): this copy of the pool
 * belongs to the parent, whose workers run its tasks and read its
 * channels.  Submit raises BrokenProcessPool(message) from now on, and the
 * copies of the parent's running and pending futures fail with it (as a
 * ThreadPool's fail with BrokenThreadPool), their callbacks run here.
 *
 * Parent threads that held our locks at the fork (the collector, a sender
 * streaming a task, a thread completing a future) are gone: the core's
 * mutex and the slots' send locks are reset, never waited for.  The
 * channels are forgotten, not closed: closing marks the shared segment,
 * which would tell the parent's workers that their parent is gone.
 *
 * A fork made while this thread starts one of our workers (the "fork"
 * start method) is that worker: it runs no code of the parent's, so its
 * copies of the futures are left alone (leaked, as the parent owns them). */
PyObject *
np_proc_forked(PyObject *op, PyObject *msg)
{
    proc_core *c = CORE(op);
    if (!PyUnicode_Check(msg)) {
        PyErr_SetString(PyExc_TypeError, "_forked(message): a str");
        return NULL;
    }
    atomic_store(&c->forked, 1);
    np_mutex_reinit(&c->mutex);
    c->closed = 1;
    c->collecting = 0;
    Py_XSETREF(c->broken, Py_NewRef(msg));
    Py_CLEAR(c->broken_cause);
    /* What the parent's tasks were: the pending list, each slot's running
     * task, and the one the collector was completing, unless this thread
     * is the collector (forking from a done callback): it goes on with it. */
    np_future *orphans = np_proc_take_pending(c);
    np_future *tail = orphans;
    while (tail != NULL && next_future(tail) != NULL) {
        tail = next_future(tail);
    }
    np_future *finishing = c->finishing;
    c->finishing = NULL;
    if (finishing != NULL && c->finishing_thread == (unsigned long)pthread_self()) {
        finishing = NULL;
    }
    PyObject **chans = PyMem_Calloc((size_t)c->nslots + 1, sizeof *chans);
    int nchans = 0;
    for (int i = 0; i < c->nslots; i++) {
        proc_slot *s = &c->slots[i];
        np_mutex_reinit(&s->send_lock);
        if (s->running != NULL) {
            np_future *f = s->running;
            s->running = NULL;
            f->task.base.next = NULL;
            if (tail != NULL) {
                tail->task.base.next = &f->task.base;
            }
            else {
                orphans = f;
            }
            tail = f;
        }
        if (s->chanobj != NULL && chans != NULL) {
            chans[nchans++] = s->chanobj;   /* the slot's reference */
        }
        else {
            /* No memory for the list: leak it (never close it here). */
        }
        s->chanobj = NULL;
        s->ch = NULL;
        s->state = SLOT_FREE;
        s->gen++;
    }
    c->nlive = c->nspawning = 0;
    for (int i = 0; i < nchans; i++) {
        PyObject *r = PyObject_CallMethod(chans[i], "_forget", NULL);
        if (r == NULL) {
            PyErr_Clear();   /* a _Channel: cannot fail */
        }
        else {
            Py_DECREF(r);
            Py_DECREF(chans[i]);   /* forgotten: its dealloc leaves the segment be */
        }
    }
    PyMem_Free(chans);
    if (np_proc_in_spawn()) {
        Py_RETURN_NONE;   /* one of our workers: leave the parent's futures be */
    }
    if (finishing != NULL) {
        fail_in_child(c, finishing);
    }
    while (orphans != NULL) {
        np_future *f = orphans;
        orphans = next_future(f);
        fail_in_child(c, f);
    }
    Py_RETURN_NONE;
}

/* core._check_open(): raise what submit would for a closed/broken pool. */
PyObject *
np_proc_core_check_open(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (np_proc_check_open(CORE(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}
