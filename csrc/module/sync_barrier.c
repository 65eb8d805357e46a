/* sync_barrier.c -- nativepool.Barrier.
 *
 * threading.Barrier is Python on top of a Condition.  Here it is the
 * stdlib's state machine, verbatim, with its Condition replaced by a
 * recursive lock (held across the action, as the stdlib holds its
 * Condition, but taken interruptibly) and a generation word that every
 * state change bumps; waiters sleep until the generation moves.
 */
#include "np_module.h"

#include "structmember.h"

enum { FILLING = 0, DRAINING = 1, RESETTING = -1, BROKEN = -2 };

typedef struct {
    PyObject_HEAD
    np_rlock lock;
    np_sem gen;                  /* bumped by every notify_all */
    Py_ssize_t parties, count;
    int state;
    PyObject *action;            /* or NULL */
    PyObject *timeout;           /* default timeout, or None */
    PyObject *weakreflist;
} np_barrierobj;

#define BARRIER(op) ((np_barrierobj *)(op))

static void
barrier_notify_all(np_barrierobj *b)
{
    atomic_fetch_add(&b->gen.value, 1);    /* seq_cst: see np_sem.h */
    np_sem_wake_all(&b->gen);
}

/* The Condition wait of the stdlib's Barrier: lock held on entry and on
 * return.  1 woken, 0 timed out, -1 error (Ctrl-C). */
static int
barrier_wait_gen(np_barrierobj *b, int64_t deadline)
{
    uint32_t seen = np_sem_value(&b->gen);
    unsigned long depth = b->lock.count;
    b->lock.count = 1;
    np_rlock_unlock(&b->lock);
    int r = np_sem_wait_change_blocking(&b->gen, seen, deadline);
    np_rlock_lock(&b->lock);
    b->lock.count = depth;
    return r;
}

static int
barrier_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"parties", "action", "timeout", NULL};
    Py_ssize_t parties;
    PyObject *action = Py_None, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n|OO:Barrier", kws, &parties,
                                     &action, &timeout)) {
        return -1;
    }
    if (parties < 1) {
        PyErr_SetString(PyExc_ValueError, "parties must be > 0");
        return -1;
    }
    np_barrierobj *b = BARRIER(op);
    b->parties = parties;
    b->count = 0;
    b->state = FILLING;
    Py_XSETREF(b->action, action == Py_None ? NULL : (Py_INCREF(action), action));
    Py_INCREF(timeout);
    Py_XSETREF(b->timeout, timeout);
    return 0;
}

static int
barrier_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(BARRIER(op)->action);
    Py_VISIT(BARRIER(op)->timeout);
    return 0;
}

static int
barrier_clear(PyObject *op)
{
    Py_CLEAR(BARRIER(op)->action);
    Py_CLEAR(BARRIER(op)->timeout);
    return 0;
}

static void
barrier_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (BARRIER(op)->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    barrier_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static void
barrier_break(np_barrierobj *b)
{
    b->state = BROKEN;
    barrier_notify_all(b);
}

static PyObject *
broken_error(PyObject *op)
{
    PyErr_SetNone(np_state_from_type(Py_TYPE(op))->BrokenBarrierError);
    return NULL;
}

/* The stdlib's _exit(): the last thread out ends draining/resetting. */
static void
barrier_exit(np_barrierobj *b)
{
    if (b->count == 0 && (b->state == RESETTING || b->state == DRAINING)) {
        b->state = FILLING;
        barrier_notify_all(b);
    }
}

static PyObject *
barrier_wait(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    np_barrierobj *b = BARRIER(op);
    if (b->parties == 0) {
        PyErr_SetString(PyExc_RuntimeError, "Barrier.__init__() was not called");
        return NULL;
    }
    PyObject *timeout = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 ||
        (nkw == 1 &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout"))) {
        PyErr_SetString(PyExc_TypeError, "wait() takes at most one argument, timeout");
        return NULL;
    }
    if (nargs + nkw == 1) {
        timeout = args[0];
    }
    if (timeout == Py_None) {
        timeout = b->timeout;
    }
    int64_t deadline;
    if (np_parse_timeout(np_state_from_type(Py_TYPE(op)), timeout, &deadline) < 0) {
        return NULL;
    }

    /* Interruptible: a thread running the action holds this lock, and
     * Ctrl-C must still get through to a main thread queued behind it. */
    if (np_rlock_lock_until(&b->lock, NP_FOREVER) < 0) {
        return NULL;
    }
    /* Under the lock only the state machine runs, and the action (as the
     * stdlib runs it under its Condition).  BrokenBarrierError is raised,
     * and the action's result dropped, after unlocking: both may allocate
     * or run a finalizer, which may call back into this barrier. */
    enum { OK, RAISED, BROKEN_ERR } outcome = OK;
    /* _enter(): block while the barrier drains or resets. */
    while (b->state == RESETTING || b->state == DRAINING) {
        if (barrier_wait_gen(b, NP_FOREVER) < 0) {
            np_rlock_unlock(&b->lock);
            return NULL;
        }
    }
    if (b->state < 0) {
        np_rlock_unlock(&b->lock);
        return broken_error(op);
    }
    Py_ssize_t index = b->count++;
    PyObject *action_result = NULL;
    if (index + 1 == b->parties) {
        /* _release(): run the action (lock held, as the stdlib does). */
        if (b->action != NULL) {
            action_result = PyObject_CallNoArgs(b->action);
            if (action_result == NULL) {
                barrier_break(b);
                outcome = RAISED;
            }
        }
        if (outcome == OK) {
            b->state = DRAINING;
            barrier_notify_all(b);
        }
    }
    else {
        /* _wait(): until the state leaves FILLING, or time runs out. */
        while (b->state == FILLING) {
            int r = barrier_wait_gen(b, deadline);
            if (r < 0) {
                outcome = RAISED;    /* Ctrl-C: propagate, as the stdlib */
                break;
            }
            if (r == 0 && b->state == FILLING) {
                barrier_break(b);
                outcome = BROKEN_ERR;
                break;
            }
        }
        if (outcome == OK && b->state < 0) {
            outcome = BROKEN_ERR;
        }
    }
    b->count--;
    barrier_exit(b);
    np_rlock_unlock(&b->lock);
    if (action_result != NULL) {
        Py_DECREF(action_result);
    }
    if (outcome == BROKEN_ERR) {
        return broken_error(op);
    }
    return outcome == RAISED ? NULL : PyLong_FromSsize_t(index);
}

static PyObject *
barrier_reset(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_barrierobj *b = BARRIER(op);
    if (np_rlock_lock_until(&b->lock, NP_FOREVER) < 0) {
        return NULL;
    }
    if (b->count > 0) {
        if (b->state == FILLING || b->state == BROKEN) {
            b->state = RESETTING;    /* cleared by the last thread out */
        }
    }
    else {
        b->state = FILLING;
    }
    barrier_notify_all(b);
    np_rlock_unlock(&b->lock);
    Py_RETURN_NONE;
}

static PyObject *
barrier_abort(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_barrierobj *b = BARRIER(op);
    if (np_rlock_lock_until(&b->lock, NP_FOREVER) < 0) {
        return NULL;
    }
    barrier_break(b);
    np_rlock_unlock(&b->lock);
    Py_RETURN_NONE;
}

static PyObject *
barrier_get_parties(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(BARRIER(op)->parties);
}

static PyObject *
barrier_get_n_waiting(PyObject *op, void *Py_UNUSED(closure))
{
    np_barrierobj *b = BARRIER(op);
    return PyLong_FromSsize_t(b->state == FILLING ? b->count : 0);
}

static PyObject *
barrier_get_broken(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(BARRIER(op)->state == BROKEN);
}

static PyObject *
barrier_repr(PyObject *op)
{
    /* threading's shape (3.11+): "<threading.Barrier at 0x...: waiters=0/3>"
     * or "...: broken>". */
    np_barrierobj *b = BARRIER(op);
    PyObject *name = np_type_display_name(Py_TYPE(op));
    if (name == NULL) {
        return NULL;
    }
    PyObject *r = b->state == BROKEN
        ? PyUnicode_FromFormat("<%U at %p: broken>", name, op)
        : PyUnicode_FromFormat("<%U at %p: waiters=%zd/%zd>", name, op,
                               b->state == FILLING ? b->count : 0, b->parties);
    Py_DECREF(name);
    return r;
}

static PyMethodDef barrier_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))barrier_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait($self, /, timeout=None)\n--\n\n"
     "Wait until all parties have called wait(); return this thread's\n"
     "arrival index (0 to parties-1). BrokenBarrierError if the barrier is\n"
     "or becomes broken (timeout, abort, reset, a failing action)."},
    {"reset", barrier_reset, METH_NOARGS,
     "reset($self, /)\n--\n\nReturn to the empty state; waiters get "
     "BrokenBarrierError."},
    {"abort", barrier_abort, METH_NOARGS,
     "abort($self, /)\n--\n\nBreak the barrier: waiters, present and future, "
     "get BrokenBarrierError."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef barrier_getset[] = {
    {"parties", barrier_get_parties, NULL, "the number of threads to wait for", NULL},
    {"n_waiting", barrier_get_n_waiting, NULL, "the number of threads waiting", NULL},
    {"broken", barrier_get_broken, NULL, "whether the barrier is broken", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef barrier_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(np_barrierobj, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot barrier_slots[] = {
    {Py_tp_doc, "Barrier(parties, action=None, timeout=None)\n--\n\n"
                "threading.Barrier's drop-in, in C."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, barrier_init},
    {Py_tp_dealloc, barrier_dealloc},
    {Py_tp_traverse, barrier_traverse},
    {Py_tp_clear, barrier_clear},
    {Py_tp_repr, barrier_repr},
    {Py_tp_methods, barrier_methods},
    {Py_tp_getset, barrier_getset},
    {Py_tp_members, barrier_members},
    {0, NULL},
};

static PyType_Spec barrier_spec = {
    .name = "nativepool.Barrier",
    .basicsize = sizeof(np_barrierobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = barrier_slots,
};

int
np_barrier_type_init(PyObject *module, np_state *st)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        return -1;
    }
    st->BrokenBarrierError = PyObject_GetAttrString(threading, "BrokenBarrierError");
    Py_DECREF(threading);
    if (st->BrokenBarrierError == NULL ||
        np_module_add(module, "BrokenBarrierError", st->BrokenBarrierError) < 0) {
        return -1;
    }
    st->barrier_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &barrier_spec, NULL);
    if (st->barrier_type == NULL ||
        np_module_add(module, "Barrier", (PyObject *)st->barrier_type) < 0) {
        return -1;
    }
    return 0;
}
