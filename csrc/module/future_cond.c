/* future_cond.c -- Future._condition: a small proxy made on demand.
 *
 * Enough of threading.Condition for the stdlib helpers and for code that
 * imitates them: the lock part is the future's own lock; wait() waits for
 * the next state change; notify*() wake waiters to re-check.
 */
#include "np_module.h"

typedef struct {
    PyObject_HEAD
    PyObject *future;
} np_condition;

#define COND_FUTURE(op) NP_FUTURE(((np_condition *)(op))->future)

PyObject *
np_future_condition_new(np_state *st, PyObject *future)
{
    PyObject *c = PyType_GenericAlloc(st->condition_type, 0);
    if (c == NULL) {
        return NULL;
    }
    Py_INCREF(future);
    ((np_condition *)c)->future = future;
    return c;
}

static int
cond_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((np_condition *)op)->future);
    return 0;
}

static int
cond_clear(PyObject *op)
{
    Py_CLEAR(((np_condition *)op)->future);
    return 0;
}

static void
cond_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    cond_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
cond_acquire(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pd:acquire", kws,
                                     &blocking, &timeout)) {
        return NULL;
    }
    np_rlock *l = &COND_FUTURE(op)->lock;
    int64_t deadline = NP_FOREVER;
    if (!blocking) {
        deadline = np_monotonic_ns();
    }
    else if (timeout >= 0) {
        deadline = np_deadline_after(timeout);
    }
    int r = np_rlock_lock_until(l, deadline);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
cond_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (np_rlock_unlock(&COND_FUTURE(op)->lock) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
cond_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_rlock_lock(&COND_FUTURE(op)->lock);
    Py_RETURN_TRUE;
}

static PyObject *
cond_exit(PyObject *op, PyObject *Py_UNUSED(args))
{
    return cond_release(op, NULL);
}

static PyObject *
cond_is_owned(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(np_rlock_is_owned(&COND_FUTURE(op)->lock));
}

/* wait(timeout=None): release the lock fully, wait for the state word to
 * change (or a notify), take the lock back at its old depth. */
static PyObject *
cond_wait(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:wait", kws, &timeout)) {
        return NULL;
    }
    np_future *f = COND_FUTURE(op);
    np_state *st = np_state_from_type(Py_TYPE(f));
    if (!np_rlock_is_owned(&f->lock)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot wait on un-acquired lock");
        return NULL;
    }
    int64_t deadline;
    if (np_parse_timeout(st, timeout, &deadline) < 0) {
        return NULL;
    }
    uint32_t s = atomic_load(&f->state);
    unsigned long depth = f->lock.count;
    f->lock.count = 1;
    np_rlock_unlock(&f->lock);
    int r = 1;
    /* Announce, then sleep once: a failed CAS means the state changed,
     * which is itself the wakeup.  Like Condition.wait, callers re-check. */
    if ((s & NPF_SLEEPERS) ||
        atomic_compare_exchange_strong(&f->state, &s, s | NPF_SLEEPERS)) {
        r = np_wait_word(&f->state, s | NPF_SLEEPERS, deadline);
    }
    np_rlock_lock(&f->lock);
    f->lock.count = depth;
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r != 0);
}

static PyObject *
cond_notify_all(PyObject *op, PyObject *Py_UNUSED(args))
{
    np_future *f = COND_FUTURE(op);
    uint32_t s = atomic_fetch_and(&f->state, ~(uint32_t)NPF_SLEEPERS);
    if (s & NPF_SLEEPERS) {
        np_futex_wake(&f->state, INT32_MAX);
    }
    Py_RETURN_NONE;
}

static PyMethodDef cond_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))cond_acquire,
     METH_VARARGS | METH_KEYWORDS,
     "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"},
    {"release", cond_release, METH_NOARGS, "release($self, /)\n--\n\n"},
    {"__enter__", cond_enter, METH_NOARGS, NULL},
    {"__exit__", cond_exit, METH_VARARGS, NULL},
    {"_is_owned", cond_is_owned, METH_NOARGS, NULL},
    {"wait", (PyCFunction)(void (*)(void))cond_wait,
     METH_VARARGS | METH_KEYWORDS, "wait($self, /, timeout=None)\n--\n\n"},
    {"notify", cond_notify_all, METH_VARARGS, "notify($self, /, n=1)\n--\n\n"},
    {"notify_all", cond_notify_all, METH_NOARGS, "notify_all($self, /)\n--\n\n"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot cond_slots[] = {
    {Py_tp_doc, "The _condition of a nativepool.Future: its lock, as a "
                "threading.Condition."},
    {Py_tp_dealloc, cond_dealloc},
    {Py_tp_traverse, cond_traverse},
    {Py_tp_clear, cond_clear},
    {Py_tp_methods, cond_methods},
    {0, NULL},
};

static PyType_Spec cond_spec = {
    .name = "nativepool._nativepool.FutureCondition",
    .basicsize = sizeof(np_condition),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = cond_slots,
};

int
np_future_condition_type_init(PyObject *module, np_state *st)
{
    st->condition_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &cond_spec, NULL);
    return st->condition_type == NULL ? -1 : 0;
}
