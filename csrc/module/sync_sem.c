/* sync_sem.c -- nativepool.Semaphore, BoundedSemaphore and Event.
 *
 * threading builds these in Python from a Condition (a lock, a deque of
 * per-wait locks): a Semaphore acquire/release pair runs a dozen Python
 * lines.  Here each is one np_sem word: acquire is a CAS, release a CAS
 * plus a wake only if someone sleeps, Event.wait a load.
 */
#include "np_module.h"

#include "structmember.h"

typedef struct {
    PyObject_HEAD
    np_sem sem;
    np_stats stats;
    PyObject *weakreflist;
    uint32_t bound;            /* BoundedSemaphore: the initial value */
    int bounded;
} np_semobj;

/* The event's word: bit 0 is the flag, the rest counts set() calls.  A
 * waiter sleeps until the word changes from what it saw; since only set()
 * changes a clear word, waking means "set() happened", even if clear()
 * came right after -- threading.Event's waiters return True then too. */
#define EVENT_FLAG 1u

typedef struct {
    PyObject_HEAD
    np_sem sem;
    PyObject *weakreflist;
} np_eventobj;

#define SEM(op) ((np_semobj *)(op))
#define EVENT(op) ((np_eventobj *)(op))

static void
obj_dealloc(PyObject *op, PyObject *weakreflist)
{
    PyTypeObject *tp = Py_TYPE(op);
    if (weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* ---- Semaphore, BoundedSemaphore ------------------------------------------ */

static int
sem_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"value", NULL};
    PyObject *value_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Semaphore", kws, &value_obj)) {
        return -1;
    }
    long long value = 1;
    if (value_obj != NULL) {
        value = PyLong_AsLongLong(value_obj);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
        return -1;
    }
    if (value > (long long)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "semaphore value is too large");
        return -1;
    }
    np_semobj *s = SEM(op);
    atomic_store(&s->sem.value, (uint32_t)value);
    np_state *st = np_state_from_type(Py_TYPE(op));
    s->bounded = PyObject_TypeCheck(op, st->bsemaphore_type);
    s->bound = (uint32_t)value;
    return 0;
}

static void
sem_dealloc(PyObject *op)
{
    obj_dealloc(op, SEM(op)->weakreflist);
}

/* acquire(blocking=True, timeout=None), with threading.Semaphore's rules. */
static PyObject *
sem_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    np_semobj *s = SEM(op);
    if (nargs == 0 && kwnames == NULL && np_sem_trytake(&s->sem)) {
        np_stats_acquired(&s->stats, 0);
        Py_RETURN_TRUE;
    }
    static const char *const names[] = {"blocking", "timeout"};
    PyObject *vals[2] = {NULL, NULL};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "acquire() takes at most 2 arguments (%zd given)", nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        vals[i] = args[i];
    }
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int which = -1;
        for (int j = 0; j < 2; j++) {
            if (PyUnicode_CompareWithASCIIString(name, names[j]) == 0) {
                which = j;
            }
        }
        if (which < 0 || vals[which] != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got %s argument '%U'",
                         which < 0 ? "an unexpected keyword" : "multiple values for",
                         name);
            return NULL;
        }
        vals[which] = args[nargs + k];
    }
    int blocking = 1;
    if (vals[0] != NULL && (blocking = PyObject_IsTrue(vals[0])) < 0) {
        return NULL;
    }
    PyObject *timeout = vals[1] ? vals[1] : Py_None;
    if (!blocking && timeout != Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "can't specify timeout for non-blocking acquire");
        return NULL;
    }
    int64_t deadline = np_monotonic_ns();
    if (blocking &&
        np_parse_timeout(np_state_from_type(Py_TYPE(op)), timeout, &deadline) < 0) {
        return NULL;
    }
    int r = np_sem_take_blocking(&s->sem, deadline, &s->stats);
    if (r < 0) {
        return NULL;
    }
    if (r) {
        np_stats_acquired(&s->stats, 0);
    }
    return PyBool_FromLong(r);
}

static PyObject *
sem_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return sem_acquire(op, NULL, 0, NULL);
}

static PyObject *
sem_release(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    np_semobj *s = SEM(op);
    Py_ssize_t n = 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "release() takes at most 1 argument");
        return NULL;
    }
    if (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "n")) {
        PyErr_Format(PyExc_TypeError, "release() got an unexpected keyword argument '%U'",
                     PyTuple_GET_ITEM(kwnames, 0));
        return NULL;
    }
    if (nargs + nkw == 1) {
        n = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "n must be one or more");
        return NULL;
    }
    /* np_sem_give's max of 0 means "no bound": a BoundedSemaphore(0) can
     * never be released, so it fails before asking. */
    if ((size_t)n > UINT32_MAX || (s->bounded && s->bound == 0) ||
        np_sem_give(&s->sem, (uint32_t)n, s->bounded ? s->bound : 0, 0) != NP_OK) {
        if (s->bounded) {
            PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
        }
        else {
            PyErr_SetString(PyExc_OverflowError, "semaphore value is too large");
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
sem_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(n))
{
    return sem_release(op, NULL, 0, NULL);
}

static PyObject *
sem_get_value(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(np_sem_value(&SEM(op)->sem));
}

static PyObject *
sem_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return np_stats_dict(&SEM(op)->stats);
}

static PyObject *
sem_reset_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_stats_reset(&SEM(op)->stats);
    Py_RETURN_NONE;
}

static PyObject *
sem_repr(PyObject *op)
{
    /* threading's shape (3.11+): "<threading.Semaphore at 0x...: value=3>",
     * "<threading.BoundedSemaphore at 0x...: value=2/3>". */
    np_semobj *s = SEM(op);
    PyObject *name = np_type_display_name(Py_TYPE(op));
    if (name == NULL) {
        return NULL;
    }
    PyObject *r = s->bounded
        ? PyUnicode_FromFormat("<%U at %p: value=%u/%u>", name, op,
                               np_sem_value(&s->sem), s->bound)
        : PyUnicode_FromFormat("<%U at %p: value=%u>", name, op, np_sem_value(&s->sem));
    Py_DECREF(name);
    return r;
}

static PyMethodDef sem_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sem_acquire,
     METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, /, blocking=True, timeout=None)\n--\n\n"
     "Take one unit, waiting up to timeout seconds (forever if None);\n"
     "return whether it was taken."},
    {"release", (PyCFunction)(void (*)(void))sem_release,
     METH_FASTCALL | METH_KEYWORDS,
     "release($self, /, n=1)\n--\n\nGive back n units, waking up to n waiters."},
    {"__enter__", sem_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sem_exit, METH_FASTCALL, NULL},
    {"stats", sem_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "Contention statistics: a dict of acquisitions, contended (how many\n"
     "had to wait), wait_total and wait_max (seconds)."},
    {"reset_stats", sem_reset_stats, METH_NOARGS,
     "reset_stats($self, /)\n--\n\nZero the contention statistics."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sem_getset[] = {
    {"_value", sem_get_value, NULL, "the current count", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef sem_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(np_semobj, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot sem_slots[] = {
    {Py_tp_doc, "Semaphore(value=1)\n--\n\n"
                "threading.Semaphore's drop-in, in C, with contention statistics."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, sem_init},
    {Py_tp_dealloc, sem_dealloc},
    {Py_tp_repr, sem_repr},
    {Py_tp_methods, sem_methods},
    {Py_tp_getset, sem_getset},
    {Py_tp_members, sem_members},
    {0, NULL},
};

static PyType_Spec sem_spec = {
    .name = "nativepool.Semaphore",
    .basicsize = sizeof(np_semobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = sem_slots,
};

static PyType_Slot bsem_slots[] = {
    {Py_tp_doc, "BoundedSemaphore(value=1)\n--\n\n"
                "A Semaphore that raises ValueError when released more often\n"
                "than acquired (above its initial value)."},
    {0, NULL},
};

static PyType_Spec bsem_spec = {
    .name = "nativepool.BoundedSemaphore",
    .basicsize = sizeof(np_semobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = bsem_slots,
};

/* ---- Event ------------------------------------------------------------- */

static PyObject *
event_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Event() takes no arguments");
        return NULL;
    }
    return tp->tp_alloc(tp, 0);    /* zeroed: clear */
}

static void
event_dealloc(PyObject *op)
{
    obj_dealloc(op, EVENT(op)->weakreflist);
}

static PyObject *
event_is_set(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(np_sem_value(&EVENT(op)->sem) & EVENT_FLAG);
}

static PyObject *
event_isSet(PyObject *op, PyObject *Py_UNUSED(ignored))
{
#if PY_VERSION_HEX >= 0x030A0000
    if (PyErr_WarnEx(PyExc_DeprecationWarning,
                     "isSet() is deprecated, use is_set() instead", 1) < 0) {
        return NULL;
    }
#endif
    return event_is_set(op, NULL);
}

static PyObject *
event_set(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_sem *s = &EVENT(op)->sem;
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    do {
        if (v & EVENT_FLAG) {
            Py_RETURN_NONE;     /* already set: nobody waits */
        }
        /* seq_cst CAS: the store half of np_sem's no-lost-wakeup pair. */
    } while (!atomic_compare_exchange_weak(&s->value, &v, (v + 2) | EVENT_FLAG));
    np_sem_wake_all(s);
    Py_RETURN_NONE;
}

static PyObject *
event_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    /* Keeps the count: sleepers wait for a set(), which a clear() is not. */
    atomic_fetch_and(&EVENT(op)->sem.value, ~EVENT_FLAG);
    Py_RETURN_NONE;
}

static PyObject *
event_wait(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    np_eventobj *e = EVENT(op);
    uint32_t seen = np_sem_value(&e->sem);
    if (seen & EVENT_FLAG) {
        Py_RETURN_TRUE;
    }
    PyObject *timeout = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 ||
        (nkw == 1 &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout"))) {
        PyErr_SetString(PyExc_TypeError, "wait() takes one optional argument, timeout");
        return NULL;
    }
    if (nargs + nkw == 1) {
        timeout = args[0];
    }
    int64_t deadline;
    if (np_parse_timeout(np_state_from_type(Py_TYPE(op)), timeout, &deadline) < 0) {
        return NULL;
    }
    int r = np_sem_wait_change_blocking(&e->sem, seen, deadline);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
event_at_fork_reinit(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    /* Keep the flag (threading.Event keeps it too); drop the parent's
     * sleepers. */
    atomic_store(&EVENT(op)->sem.sleepers, 0);
    Py_RETURN_NONE;
}

static PyObject *
event_repr(PyObject *op)
{
    /* threading's shape (3.11+): "<threading.Event at 0x...: unset>". */
    PyObject *name = np_type_display_name(Py_TYPE(op));
    if (name == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat(
        "<%U at %p: %s>", name, op,
        np_sem_value(&EVENT(op)->sem) & EVENT_FLAG ? "set" : "unset");
    Py_DECREF(name);
    return r;
}

static PyMethodDef event_methods[] = {
    {"is_set", event_is_set, METH_NOARGS,
     "is_set($self, /)\n--\n\nReturn True if and only if the flag is set."},
    {"isSet", event_isSet, METH_NOARGS, "Deprecated alias of is_set()."},
    {"set", event_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag, waking every waiter."},
    {"clear", event_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nReset the flag."},
    {"wait", (PyCFunction)(void (*)(void))event_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait($self, /, timeout=None)\n--\n\n"
     "Block until the flag is set or timeout seconds pass; return the flag."},
    {"_at_fork_reinit", event_at_fork_reinit, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef event_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(np_eventobj, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot event_slots[] = {
    {Py_tp_doc, "Event()\n--\n\nthreading.Event's drop-in, in C."},
    {Py_tp_new, event_new},
    {Py_tp_dealloc, event_dealloc},
    {Py_tp_repr, event_repr},
    {Py_tp_methods, event_methods},
    {Py_tp_members, event_members},
    {0, NULL},
};

static PyType_Spec event_spec = {
    .name = "nativepool.Event",
    .basicsize = sizeof(np_eventobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = event_slots,
};

int
np_semaphore_types_init(PyObject *module, np_state *st)
{
    st->semaphore_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &sem_spec, NULL);
    if (st->semaphore_type == NULL ||
        np_module_add(module, "Semaphore", (PyObject *)st->semaphore_type) < 0) {
        return -1;
    }
    /* 3.9 wants a tuple of bases, not a bare type. */
    PyObject *bases = PyTuple_Pack(1, (PyObject *)st->semaphore_type);
    if (bases == NULL) {
        return -1;
    }
    st->bsemaphore_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &bsem_spec, bases);
    Py_DECREF(bases);
    if (st->bsemaphore_type == NULL ||
        np_module_add(module, "BoundedSemaphore", (PyObject *)st->bsemaphore_type) < 0) {
        return -1;
    }
    st->event_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &event_spec, NULL);
    if (st->event_type == NULL ||
        np_module_add(module, "Event", (PyObject *)st->event_type) < 0) {
        return -1;
    }
    return 0;
}
