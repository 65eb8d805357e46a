/* procpool.c -- _nativepool._ProcCore, the C half of nativepool.ProcessPool:
 * its tasks, sending, submit, and the object.  The design, the locking and
 * the collector's place in it: procpool.h; the collector itself:
 * procpool_collect.c; workers coming and going, and shutdown:
 * procpool_workers.c.
 */
#include "procpool.h"

#include <errno.h>
#include <limits.h>
#include <sys/eventfd.h>
#include <unistd.h>


/* ---- the task -------------------------------------------------------------- */

/* The fds of a reply's shared buffers as a tuple (-1: lost), or None. */
static PyObject *
reply_fds(proc_task *t)
{
    if (t->fds == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *tup = PyTuple_New(t->nfds);
    for (int i = 0; tup != NULL && i < t->nfds; i++) {
        PyObject *v = PyLong_FromLong(t->fds[i]);
        if (v == NULL) {
            Py_CLEAR(tup);
            break;
        }
        PyTuple_SET_ITEM(tup, i, v);
    }
    return tup;
}

/* C API result function: unpickle the reply, with the GIL, once:
 * loads(memoryview, fds), fds those of its shared buffers (procpool_collect.c)
 * or None; they are closed once it returns. */
static PyObject *
task_result(void *arg)
{
    proc_task *t = arg;
    PyObject *view = PyMemoryView_FromMemory(t->reply ? t->reply : (char *)"",
                                             (Py_ssize_t)t->reply_len, PyBUF_READ);
    PyObject *fds = view ? reply_fds(t) : NULL;
    PyObject *v = NULL;
    if (fds != NULL) {
        v = PyObject_CallFunctionObjArgs(t->loads, view, fds, NULL);
    }
    Py_XDECREF(view);
    Py_XDECREF(fds);
    np_proc_task_close_fds(t);
    free(t->msg);
    t->msg = t->reply = NULL;
    /* The worker has answered: the task is never sent again, so its
     * pickled call goes now, not with the future. */
    Py_CLEAR(t->payload);
    if (v == NULL || t->status == ST_OK) {
        return v;
    }
    /* ERROR: the worker's exception, its remote traceback as __cause__. */
    np_raise_exception(v);
    Py_DECREF(v);
    return NULL;
}

void
np_proc_close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);   /* EINTR: Linux has closed it anyway */
        }
    }
    PyMem_RawFree(fds);
}

void
np_proc_task_close_fds(proc_task *t)
{
    int *fds = t->fds;
    int n = t->nfds;
    t->fds = NULL;
    t->nfds = 0;
    np_proc_close_fds(fds, n);
}

static void
task_cleanup(void *arg)
{
    proc_task *t = arg;
    np_proc_task_close_fds(t);
    Py_XDECREF(t->payload);
    Py_XDECREF(t->loads);
    free(t->msg);
    PyMem_Free(t);
}

proc_task *
np_proc_future_task(np_future *f)
{
    return f->ncall ? (proc_task *)f->ncall->capi.arg : NULL;
}

/* release() of a process future: the pending list's or the slot's
 * reference, dropped by a GIL holder (directly, or from the reclaim stack). */
static void
task_release(np_task *t, void *Py_UNUSED(worker))
{
    Py_DECREF(NP_TASK_FUTURE(t));
}

/* Drop a reference the core held, from a thread that may lack the GIL. */
void
np_proc_drop_ref(np_state *st, np_future *f, np_worker_ctx *ctx)
{
    if (np_worker_has_gil(ctx)) {
        Py_DECREF(f);
    }
    else {
        np_reclaim_push(st, &f->task);
    }
}

/* ---- sending ---------------------------------------------------------------- */

void
np_proc_ring_control(proc_core *c)
{
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(c->control_fd, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
}

/* send_lock held, the message sent whole: remember where it ends in the
 * channel's stream, to tell later whether the worker read it. */
static void
note_sent(proc_slot *s, uint64_t id)
{
    s->sent_id = id;
    s->sent_end = np_chan_sent_pos(s->ch);
}

/* Send f's task to the slot that f was claimed for in generation gen of
 * the slot (claim's value).  With the GIL (have_gil), a message that fits
 * in the ring is copied without releasing it; a longer one streams with
 * the GIL released.  A send can only fail because the worker is gone,
 * which its channel reports to the collector, and the death path then
 * fails or requeues f (core_slot_gone): nothing to do here.  Nor when the
 * slot's worker is gone already (another generation): its channel is
 * closed, and f was dealt with. */
static void
send_task(proc_slot *s, np_future *f, int have_gil, uint64_t gen)
{
    proc_task *t = np_proc_future_task(f);
    /* Our own reference: with the GIL released below, a result() elsewhere
     * may free t (the reply can come as soon as the last byte is out). */
    PyObject *payload = t->payload;
    if (have_gil) {
        Py_INCREF(payload);
    }
    unsigned char hdr[8];
    uint64_t id = t->id;
    uint64_t wire_id = id | (t->timeout_ns > 0 ? TASK_TIMED : 0);
    for (int i = 0; i < 8; i++) {
        hdr[i] = (unsigned char)(wire_id >> (8 * i));
    }
    struct iovec iov[2] = {
        {hdr, sizeof hdr},
        {PyBytes_AS_STRING(payload), (size_t)PyBytes_GET_SIZE(payload)},
    };
    size_t total = sizeof hdr + iov[1].iov_len;
    int r = NP_ETIMEDOUT;
    if (have_gil && np_mutex_trylock(&s->send_lock)) {
        if (s->gen != gen) {
            r = NP_ECLOSED;
        }
        else if (total <= np_chan_ring_size(s->ch) / 2) {
            r = np_chan_sendv(s->ch, iov, 2, 0);   /* fits: never waits */
            if (r == NP_OK) {
                note_sent(s, id);
            }
        }
        np_mutex_unlock(&s->send_lock);
    }
    if (r == NP_ETIMEDOUT) {
        PyThreadState *ts = have_gil ? PyEval_SaveThread() : NULL;
        np_mutex_lock(&s->send_lock);
        if (s->gen == gen) {
            do {
                /* EINTR: a signal; retry (the stream must not be left half
                 * sent).  The handler runs when the caller next checks. */
                r = np_chan_sendv(s->ch, iov, 2, NP_FOREVER);
            } while (r == NP_EINTR);
            if (r == NP_OK) {
                note_sent(s, id);
            }
        }
        np_mutex_unlock(&s->send_lock);
        if (ts != NULL) {
            PyEval_RestoreThread(ts);
        }
    }
    if (have_gil) {
        Py_DECREF(payload);
    }
}

void
np_proc_send_stop(proc_slot *s)
{
    np_mutex_lock(&s->send_lock);
    int r;
    do {
        r = np_chan_send(s->ch, "", 0, NP_FOREVER);
    } while (r == NP_EINTR);
    np_mutex_unlock(&s->send_lock);
}

/* core->mutex held: claim slot s for the task f (the caller's reference
 * moves to the slot).  Returns the slot's generation, for send_task.  A
 * task's timeout starts when the worker says it has started it (the
 * collector sets the deadline on ST_STARTED): a worker still starting up,
 * or still running its initializer, does not eat into it. */
static uint64_t
claim(proc_slot *s, np_future *f)
{
    s->running = f;
    s->deadline = NP_FOREVER;
    if (s->left > 0) {
        s->left--;
    }
    return s->gen;
}

/* core->mutex held: a live slot with nothing running that may take a task. */
static proc_slot *
idle_slot(proc_core *c)
{
    for (int i = 0; i < c->nslots; i++) {
        proc_slot *s = &c->slots[i];
        if (s->state == SLOT_LIVE && s->running == NULL && s->left != 0) {
            return s;
        }
    }
    return NULL;
}

/* core->mutex held: the first pending future, unlinked (ownership of the
 * list's reference to the caller), or NULL. */
static np_future *
pop_pending(proc_core *c)
{
    np_future *f = c->head;
    if (f != NULL) {
        c->head = next_future(f);
        if (c->head == NULL) {
            c->tail = NULL;
        }
        f->task.base.next = NULL;
        c->npending--;
    }
    return f;
}

/* Feed slot s from the pending list until it runs something or the list
 * is empty.  Called without core->mutex; ctx says whether we hold the GIL.
 * A future cancelled while pending is notified and dropped here. */
void
np_proc_feed_slot(proc_core *c, proc_slot *s, np_worker_ctx *ctx)
{
    for (;;) {
        np_mutex_lock(&c->mutex);
        np_future *f = NULL;
        uint64_t gen = 0;
        if (s->state == SLOT_LIVE && s->running == NULL && s->left != 0) {
            f = pop_pending(c);
            if (f != NULL) {
                gen = claim(s, f);
            }
        }
        np_mutex_unlock(&c->mutex);
        if (f == NULL) {
            return;
        }
        /* A requeued task (its worker died before reading it) is running
         * already, as far as its future is concerned. */
        if (np_proc_future_task(f)->requeued ||
            np_future_set_running_nogil(c->st, f, ctx)) {
            send_task(s, f, np_worker_has_gil(ctx), gen);
            return;
        }
        /* Cancelled while pending (waiters already told): unclaim. */
        np_mutex_lock(&c->mutex);
        s->running = NULL;
        if (s->left >= 0) {
            s->left++;
        }
        np_mutex_unlock(&c->mutex);
        np_proc_task_close_fds(np_proc_future_task(f));
        np_proc_drop_ref(c->st, f, ctx);
    }
}

/* ---- starting workers ----------------------------------------------------- */

static _Thread_local int in_spawn;

PyObject *
np_proc_call_spawn(proc_core *c)
{
    in_spawn++;
    PyObject *r = PyObject_CallNoArgs(c->spawn);
    in_spawn--;
    return r;
}

int
np_proc_in_spawn(void)
{
    return in_spawn > 0;
}

/* ---- submitting ----------------------------------------------------------------- */

/* core->mutex held: take f out of the pending list (the list's reference
 * goes to the caller).  0 if it is not there, or if requeued_only and it
 * is not a requeued task. */
int
np_proc_unlink_pending(proc_core *c, PyObject *f, int requeued_only)
{
    np_future *prev = NULL, *p = c->head;
    while (p != NULL && (PyObject *)p != f) {
        prev = p;
        p = next_future(p);
    }
    if (p == NULL || (requeued_only && !np_proc_future_task(p)->requeued)) {
        return 0;
    }
    np_task *next = p->task.base.next;
    if (prev != NULL) {
        prev->task.base.next = next;
    }
    else {
        c->head = next ? NP_TASK_FUTURE(next) : NULL;
    }
    if (c->tail == p) {
        c->tail = prev;
    }
    p->task.base.next = NULL;
    c->npending--;
    return 1;
}

/* The BrokenProcessPool a broken pool raises (a new reference), or NULL
 * with an exception. */
PyObject *
np_proc_broken_exception(proc_core *c)
{
    PyObject *exc = PyObject_CallOneArg(c->broken_cls, c->broken);
    if (exc != NULL && c->broken_cause != NULL) {
        PyException_SetCause(exc, Py_NewRef(c->broken_cause));
    }
    return exc;
}

int
np_proc_check_open(proc_core *c)
{
    if (c->broken != NULL) {
        PyObject *exc = np_proc_broken_exception(c);
        if (exc != NULL) {
            np_raise_exception(exc);
            Py_DECREF(exc);
        }
        return -1;
    }
    return np_check_not_shut_down(c->st, c->closed);
}

/* The fds argument of submit: a tuple of file descriptors, as a
 * PyMem_Raw array (NULL and 0 for None or ()).  -1 with an exception. */
static int
fds_arg(PyObject *obj, int **fds, int *n)
{
    *fds = NULL;
    *n = 0;
    if (obj == Py_None || (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 0)) {
        return 0;
    }
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) > 1024) {
        PyErr_SetString(PyExc_TypeError,
                        "fds must be a tuple of at most 1024 file descriptors");
        return -1;
    }
    Py_ssize_t len = PyTuple_GET_SIZE(obj);
    int *a = PyMem_RawMalloc((size_t)len * sizeof *a);
    if (a == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(PyTuple_GET_ITEM(obj, i), &overflow);
        if (v == -1 && PyErr_Occurred()) {
            PyMem_RawFree(a);
            return -1;
        }
        if (overflow || v < 0 || v > INT_MAX) {
            PyMem_RawFree(a);
            PyErr_SetString(PyExc_ValueError, "not a file descriptor");
            return -1;
        }
        a[i] = (int)v;
    }
    *fds = a;
    *n = (int)len;
    return 0;
}

/* A pending future for payload (a new reference), or NULL.  It takes over
 * fds (closed here on failure). */
static np_future *
new_task_future(proc_core *c, PyObject *payload, double timeout,
                int *fds, int nfds)
{
    np_future *f = np_future_new(c->st);
    np_ncall *call = f ? np_ncall_alloc(0) : NULL;
    proc_task *t = call ? PyMem_Calloc(1, sizeof *t) : NULL;
    if (t == NULL) {
        if (call != NULL) {
            np_ncall_free(call);
            PyErr_NoMemory();
        }
        Py_XDECREF(f);
        np_proc_close_fds(fds, nfds);
        return NULL;
    }
    t->fds = fds;
    t->nfds = nfds;
    t->payload = Py_NewRef(payload);
    t->loads = Py_NewRef(c->loads);
    t->timeout_ns = timeout > 0 ? (int64_t)(timeout * 1e9) : 0;
    if (timeout > 0 && t->timeout_ns <= 0) {
        t->timeout_ns = 1;
    }
    call->capi.result = task_result;
    call->capi.cleanup = task_cleanup;
    call->capi.arg = t;
    f->ncall = call;
    f->task.base.release = task_release;
    return f;
}

/* core.submit(payload, timeout=None, fds=None) -> Future.  fds: the
 * memfds of the payload's shared buffers, which the core takes over from
 * the moment the arguments are parsed: it closes them once the worker has
 * answered (or is gone), or right away if the task never starts. */
static PyObject *
core_submit(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"payload", "timeout", "fds", NULL};
    proc_core *c = CORE(op);
    PyObject *payload, *timeout_obj = Py_None, *fds_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|OO:submit", kws,
                                     &PyBytes_Type, &payload, &timeout_obj,
                                     &fds_obj)) {
        return NULL;
    }
    int *fds, nfds;
    if (fds_arg(fds_obj, &fds, &nfds) < 0) {
        return NULL;
    }
    double timeout = 0;
    if (timeout_obj != Py_None) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) {
            np_proc_close_fds(fds, nfds);
            return NULL;
        }
        if (!(timeout > 0) || timeout > 1e9) {
            PyErr_SetString(PyExc_ValueError,
                            "timeout must be a positive number of seconds");
            np_proc_close_fds(fds, nfds);
            return NULL;
        }
    }
    np_reclaim_drain(c->st);
    if (np_proc_check_open(c) < 0) {
        np_proc_close_fds(fds, nfds);
        return NULL;
    }
    np_future *f = new_task_future(c, payload, timeout, fds, nfds);
    if (f == NULL) {
        return NULL;
    }
    int spawn = 0;
    np_mutex_lock(&c->mutex);
    np_proc_future_task(f)->id = c->next_id++;
    proc_slot *s = idle_slot(c);
    uint64_t gen = 0;
    Py_INCREF(f);   /* the slot's or the list's */
    if (s != NULL) {
        gen = claim(s, f);
    }
    else {
        if (c->tail != NULL) {
            c->tail->task.base.next = &f->task.base;
        }
        else {
            c->head = f;
        }
        c->tail = f;
        c->npending++;
        /* No idle worker: start one if there is room, as the stdlib does. */
        if (c->nlive + c->nspawning < c->nslots) {
            c->nspawning++;
            spawn = 1;
        }
    }
    np_mutex_unlock(&c->mutex);
    if (s != NULL) {
        (void)np_future_try_start(f);   /* new: nobody else can see it */
        send_task(s, f, 1, gen);
        return (PyObject *)f;
    }
    if (spawn) {
        PyObject *r = np_proc_call_spawn(c);
        if (r != NULL) {
            np_mutex_lock(&c->mutex);
            c->nspawning--;
            np_mutex_unlock(&c->mutex);
            Py_DECREF(r);
            return (PyObject *)f;
        }
        PyObject *exc = np_fetch_exception();
        np_mutex_lock(&c->mutex);
        c->nspawning--;
        /* No worker, and no other start under way: nothing will ever run
         * what is pending.  Take our task back (submit raises, as the
         * stdlib's does when it cannot start its thread or a process), and
         * every other pending one, which fails with the same error: a
         * submit that gave up earlier, while our start was still under
         * way, left its task for the worker we did not get. */
        int alone = c->nlive == 0 && c->nspawning == 0;
        int found = 0;
        np_future *orphans = NULL;
        if (alone) {
            found = np_proc_unlink_pending(c, (PyObject *)f, 0);
            orphans = np_proc_take_pending(c);
        }
        np_mutex_unlock(&c->mutex);
        if (alone) {
            np_proc_fail_list(c, orphans, exc);
            if (found) {
                Py_DECREF(f);   /* the list's */
            }
            np_raise_exception(exc);
            Py_DECREF(exc);
            Py_DECREF(f);
            return NULL;
        }
        /* Other workers will run it; the spawn failure is logged. */
        np_log_exc(c->st->np_logger, "error",
                   "could not start a ProcessPool worker", NULL, exc);
        Py_XDECREF(exc);
    }
    return (PyObject *)f;
}

/* ---- the object -------------------------------------------------------------- */

static int
core_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"max_workers", "spawn", "broken_cls", "max_tasks",
                          "loads", NULL};
    proc_core *c = CORE(op);
    int nslots;
    PyObject *spawn, *broken_cls, *max_tasks = Py_None, *loads = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOO|OO:_ProcCore", kws,
                                     &nslots, &spawn, &broken_cls, &max_tasks,
                                     &loads)) {
        return -1;
    }
    if (c->slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ProcCore.__init__ called twice");
        return -1;
    }
    if (nslots <= 0 || nslots > 1024) {
        PyErr_SetString(PyExc_ValueError, "max_workers must be in 1..1024");
        return -1;
    }
    c->max_tasks = -1;
    if (max_tasks != Py_None) {
        long long m = PyLong_AsLongLong(max_tasks);
        if (m == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (m <= 0) {
            PyErr_SetString(PyExc_ValueError,
                            "max_tasks_per_child must be >= 1");
            return -1;
        }
        c->max_tasks = m;
    }
    c->loads = loads ? Py_NewRef(loads) : np_import_attr("pickle", "loads");
    if (c->loads == NULL) {
        return -1;
    }
    c->control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->control_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->slots = PyMem_Calloc((size_t)nslots, sizeof *c->slots);
    if (c->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < nslots; i++) {
        c->slots[i].send_lock = (np_mutex)NP_MUTEX_INIT;
    }
    c->nslots = nslots;
    c->st = np_state_from_type(Py_TYPE(op));
    c->mutex = (np_mutex)NP_MUTEX_INIT;
    c->spawn = Py_NewRef(spawn);
    c->broken_cls = Py_NewRef(broken_cls);
    return 0;
}

static PyObject *
core_new(PyTypeObject *tp, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw))
{
    proc_core *c = (proc_core *)tp->tp_alloc(tp, 0);
    if (c != NULL) {
        c->control_fd = -1;
    }
    return (PyObject *)c;
}

static int
core_traverse(PyObject *op, visitproc visit, void *arg)
{
    proc_core *c = CORE(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(c->spawn);
    Py_VISIT(c->broken_cls);
    Py_VISIT(c->broken_cause);
    return 0;
}

static int
core_clear(PyObject *op)
{
    proc_core *c = CORE(op);
    Py_CLEAR(c->spawn);
    Py_CLEAR(c->broken_cause);
    return 0;
}

static void
core_dealloc(PyObject *op)
{
    proc_core *c = CORE(op);
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    /* Nobody collects any more (the collector holds a reference while it
     * runs): what is still pending or running can never finish. */
    np_proc_abandon_pending(c, ABANDON_ALL);
    for (int i = 0; i < c->nslots; i++) {
        proc_slot *s = &c->slots[i];
        Py_CLEAR(s->running);
        Py_CLEAR(s->chanobj);   /* closes the channel: the worker exits */
    }
    PyMem_Free(c->slots);
    if (c->control_fd >= 0) {
        close(c->control_fd);
    }
    core_clear(op);
    Py_CLEAR(c->broken_cls);
    Py_CLEAR(c->broken);
    Py_CLEAR(c->loads);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* core._stats() -> dict.  The counters are copied under the mutex and the
 * dict is built after it: an allocation may run the GC, and a finalizer
 * that calls back into the pool (repr(pool), submit) takes the mutex. */
static PyObject *
core_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    proc_core *c = CORE(op);
    np_mutex_lock(&c->mutex);
    int running = 0;
    for (int i = 0; i < c->nslots; i++) {
        running += c->slots[i].running != NULL;
    }
    int nlive = c->nlive, nspawning = c->nspawning, closed = c->closed;
    Py_ssize_t npending = c->npending;
    unsigned long long submitted = c->next_id, completed = c->completed;
    np_mutex_unlock(&c->mutex);
    return Py_BuildValue("{sisisnsisKsKsi}", "workers", nlive, "spawning",
                         nspawning, "pending", npending, "running", running,
                         "submitted", submitted, "completed", completed,
                         "closed", closed);
}

/* core._slots() -> [(slot, pid, busy)] for the slots in use: copied under
 * the mutex into a C array, built into Python objects after it (see
 * core_stats). */
static PyObject *
core_slots(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    proc_core *c = CORE(op);
    struct { int slot; long pid; int busy; } *rows =
        PyMem_Malloc((size_t)c->nslots * sizeof *rows);
    if (rows == NULL) {
        return PyErr_NoMemory();
    }
    int n = 0;
    np_mutex_lock(&c->mutex);
    for (int i = 0; i < c->nslots; i++) {
        proc_slot *s = &c->slots[i];
        if (s->state != SLOT_FREE) {
            rows[n].slot = i;
            rows[n].pid = s->pid;
            rows[n].busy = s->running != NULL;
            n++;
        }
    }
    np_mutex_unlock(&c->mutex);
    PyObject *list = PyList_New(n);
    for (int i = 0; list != NULL && i < n; i++) {
        PyObject *t = Py_BuildValue("(ili)", rows[i].slot, rows[i].pid,
                                    rows[i].busy);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    PyMem_Free(rows);
    return list;
}

static PyObject *
core_get_broken(PyObject *op, void *Py_UNUSED(closure))
{
    proc_core *c = CORE(op);
    return Py_NewRef(c->broken ? c->broken : Py_False);
}

/* ---- a future's outcome after the fact (the Python side's hook) --------------- */

/* _ProcCore._settle(future, how), a classmethod (a future outlives its
 * pool), for _process.py: what becomes of a nativepool future's outcome
 * once nobody, or nobody else, will ask for it.  how:
 *   0  the interpreter is exiting (_process.py's exit hook, before module
 *      teardown): a failed reply nobody has read is unpickled and logged
 *      now, as future_finalize would log it, and the future marked as
 *      retrieved.  A finalizer run at module teardown can do neither: the
 *      unpickler and logging need modules that are gone by then.
 *   1  quiet: nobody is ever told of its exception, it is never logged
 *      (a map's futures, which the user never holds; a task stopped on
 *      the user's behalf).  Nothing is unpickled.
 *   2  quiet, and the future lets go of its result (or exception) now: a
 *      map's iterator has taken it, and the future may live on (the
 *      collector's reference waits on the reclaim stack for the next GIL
 *      holder), which must not keep the consumer's result alive.
 * The same checks as future_finalize: FINISHED first (acquire), then the
 * call, whose failed flag the collector set before finishing it. */
static PyObject *
core_settle(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_settle(future, how)");
        return NULL;
    }
    np_state *st = np_state_from_type((PyTypeObject *)cls);
    if (st == NULL || st->future_type == NULL ||
        !PyObject_TypeCheck(args[0], st->future_type)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "_settle: not a nativepool future");
        }
        return NULL;
    }
    long how = PyLong_AsLong(args[1]);
    if (how == -1 && PyErr_Occurred()) {
        return NULL;
    }
    np_future *f = NP_FUTURE(args[0]);
    int finished = NPF_STATE(atomic_load_explicit(&f->state, memory_order_acquire)) ==
                   NPF_FINISHED;
    if (how == 0) {
        if (!f->retrieved && finished && f->ncall != NULL &&
            np_ncall_failed(f->ncall)) {
            np_future_settle(f);
            f->retrieved = 1;
            PyObject *exc = f->exception;
            if (exc != NULL && st->log_unretrieved && st->np_logger != NULL) {
                Py_INCREF(exc);
                np_log_exc(st->np_logger, "error",
                           "Future exception was never retrieved: %r", exc, exc);
                Py_DECREF(exc);
            }
        }
        Py_RETURN_NONE;
    }
    if (how != 1 && how != 2) {
        PyErr_SetString(PyExc_ValueError, "_settle: how must be 0, 1 or 2");
        return NULL;
    }
    f->retrieved = 1;
    if (how == 2 && finished && f->ncall == NULL) {
        /* Taken out under the lock, released after it (a decref may run
         * any Python code). */
        np_rlock_lock(&f->lock);
        PyObject *res = f->result, *exc = f->exception;
        f->result = f->exception = NULL;
        np_rlock_unlock(&f->lock);
        Py_XDECREF(res);
        Py_XDECREF(exc);
    }
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"_settle", (PyCFunction)(void (*)(void))core_settle,
     METH_FASTCALL | METH_CLASS,
     "_settle($cls, future, how, /)\n--\n\n"
     "0: unpickle and log a failed reply nobody read (at exit); 1: never\n"
     "log the future's exception; 2: that, and let go of its outcome."},
    {"submit", (PyCFunction)(void (*)(void))core_submit,
     METH_VARARGS | METH_KEYWORDS,
     "submit($self, /, payload, timeout=None)\n--\n\nQueue a pickled call; a Future."},
    {"_attach", np_proc_attach, METH_VARARGS, "a started worker joins: its slot"},
    {"_slot_gone", np_proc_slot_gone, METH_VARARGS, "a worker was reaped"},
    {"_replace", np_proc_replace, METH_NOARGS,
     "start a worker if tasks wait and there is room"},
    {"_cancel_running", np_proc_cancel_running, METH_O,
     "mark the worker running a future for killing: its pid, or None"},
    {"_shutdown", np_proc_shutdown, METH_VARARGS, "no new tasks"},
    {"_terminate", np_proc_terminate, METH_NOARGS,
     "every worker is about to be signalled: fail what they run"},
    {"_set_broken", np_proc_set_broken, METH_VARARGS, "the pool cannot go on"},
    {"_forked", np_proc_forked, METH_O, "in a fork child: the parent's pool"},
    {"_check_open", np_proc_core_check_open, METH_NOARGS, "raise if submit would"},
    {"_collect", np_proc_collect, METH_NOARGS, "the collector: next event or None"},
    {"_stats", core_stats, METH_NOARGS, "counters (a dict)"},
    {"_slots", core_slots, METH_NOARGS, "[(slot, pid, busy)]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"broken", core_get_broken, NULL, "the broken message, or False", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot core_slots_def[] = {
    {Py_tp_doc, "The C half of a ProcessPool: tasks, worker slots, collector."},
    {Py_tp_new, core_new},
    {Py_tp_init, core_init},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, core_methods},
    {Py_tp_getset, core_getset},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "nativepool._nativepool._ProcCore",
    .basicsize = sizeof(proc_core),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots_def,
};

int
np_procpool_type_init(PyObject *module, np_state *st)
{
    st->proccore_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &core_spec, NULL);
    if (st->proccore_type == NULL) {
        return -1;
    }
    return np_module_add(module, "_ProcCore", (PyObject *)st->proccore_type);
}
