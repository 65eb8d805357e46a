/* queue.c -- nativepool.Queue, LifoQueue, PriorityQueue and SimpleQueue.
 *
 * queue.Queue is Python on top of one lock and three Conditions: a put/get
 * pair runs some forty lines of Python, and every wait allocates a lock.
 * Here a put or get that need not wait is one CAS to take a mutex, a few
 * loads and stores, and one exchange to release it.  The semantics are
 * those of Python 3.13's queue module on every supported version,
 * shutdown() included.
 *
 * The machinery (locking, waiting, buffer, put/get) is in queue_core.c;
 * the structures are in npqueue.h.
 *
 * Not supported: subclasses that override _init/_qsize/_put/_get (the
 * stdlib's hooks for other queue organizations; ours are C and never call
 * them), the stdlib's internal attributes (mutex, not_empty, not_full,
 * all_tasks_done, queue), and routing put_nowait/get_nowait through an
 * overridden put/get.  Subclassing to add methods or state works.
 */
#include "npqueue.h"

/* ---- arguments ------------------------------------------------------------ */

/* FASTCALL arguments by position or name into vals (NULL when absent). */
static int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames, const char *const *names, int n, int required,
           PyObject **vals)
{
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d arguments (%zd given)", fname, n, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        vals[i] = args[i];
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int which = -1;
        for (int j = 0; j < n; j++) {
            if (PyUnicode_CompareWithASCIIString(name, names[j]) == 0) {
                which = j;
            }
        }
        if (which < 0 || vals[which] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got %s argument '%U'", fname,
                         which < 0 ? "an unexpected keyword" : "multiple values for",
                         name);
            return -1;
        }
        vals[which] = args[nargs + k];
    }
    for (int j = 0; j < required; j++) {
        if (vals[j] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'",
                         fname, names[j]);
            return -1;
        }
    }
    return 0;
}

static const char *const put_names[] = {"item", "block", "timeout"};
static const char *const get_names[] = {"block", "timeout"};

/* ---- Queue, LifoQueue, PriorityQueue: methods ------------------------------ */

static PyObject *
queue_put(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    npqueue *q = Q(op);
    /* Fast path: put(item) with room, nobody to compare against. */
    if (nargs == 1 && kwnames == NULL && q->kind != QK_PRIO &&
        np_mutex_trylock(&q->mutex)) {
        Py_ssize_t count = LOAD(q->count), maxsize = LOAD(q->maxsize);
        if (!LOAD(q->shutdown) && count < q->cap && (maxsize <= 0 || count < maxsize)) {
            Py_INCREF(args[0]);
            ring_push(q, args[0]);
            STORE(q->unfinished, LOAD(q->unfinished) + 1);
            q_unlock(q);
            Py_RETURN_NONE;
        }
        q_release(q);
    }
    PyObject *vals[3] = {NULL, NULL, NULL};
    if (parse_args("put", args, nargs, kwnames, put_names, 3, 1, vals) < 0 ||
        npq_put(q, vals[0], vals[1], vals[2]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
queue_put_nowait(PyObject *op, PyObject *item)
{
    if (npq_put(Q(op), item, Py_False, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* get() with nothing to wait for and nothing to compare: mutex, pop, unlock.
 * NULL (no exception) when the slow path must run. */
static inline PyObject *
get_fast(npqueue *q)
{
    if (q->kind == QK_PRIO || !np_mutex_trylock(&q->mutex)) {
        return NULL;
    }
    PyObject *item = NULL;
    if (LOAD(q->count) > 0) {
        item = ring_pop(q);
        npq_buf_maybe_shrink(q);
        q_unlock(q);
    }
    else {
        q_release(q);
    }
    return item;
}

static PyObject *
queue_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    npqueue *q = Q(op);
    PyObject *item;
    if (nargs == 0 && kwnames == NULL && (item = get_fast(q)) != NULL) {
        return item;
    }
    PyObject *vals[2] = {NULL, NULL};
    q_timeout t;
    if (parse_args("get", args, nargs, kwnames, get_names, 2, 0, vals) < 0 ||
        npq_parse_block_timeout(q, vals[0], vals[1], &t) < 0) {
        return NULL;
    }
    return npq_get(q, &t);
}

static PyObject *
queue_get_nowait(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    npqueue *q = Q(op);
    PyObject *item = get_fast(q);
    if (item != NULL) {
        return item;
    }
    q_timeout t = {0, 0, 0, 0};
    return npq_get(q, &t);
}

static PyObject *
queue_qsize(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(LOAD(Q(op)->count));
}

static PyObject *
queue_empty(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(LOAD(Q(op)->count) == 0);
}

static PyObject *
queue_full(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t maxsize = LOAD(Q(op)->maxsize);
    return PyBool_FromLong(maxsize > 0 && LOAD(Q(op)->count) >= maxsize);
}

static PyObject *
queue_task_done(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    npqueue *q = Q(op);
    if (q_lock(q) < 0) {
        return NULL;
    }
    Py_ssize_t unfinished = LOAD(q->unfinished) - 1;
    if (unfinished < 0) {
        q_release(q);
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
        return NULL;
    }
    STORE(q->unfinished, unfinished);
    Py_ssize_t j = unfinished == 0 ? wq_broadcast(&q->joiners) : 0;
    q_unlock(q);
    wq_wake(&q->joiners, j);
    Py_RETURN_NONE;
}

static PyObject *
queue_join(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    npqueue *q = Q(op);
    if (q_lock(q) < 0) {
        return NULL;
    }
    int r = 1;
    while (LOAD(q->unfinished) > 0 && r >= 0) {
        r = npq_wait(q, &q->joiners, NP_FOREVER);
    }
    q_unlock(q);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
queue_shutdown(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    static const char *const names[] = {"immediate"};
    npqueue *q = Q(op);
    PyObject *imm_obj = NULL;
    int immediate = 0;
    if (parse_args("shutdown", args, nargs, kwnames, names, 1, 0, &imm_obj) < 0 ||
        (imm_obj != NULL && (immediate = PyObject_IsTrue(imm_obj)) < 0) ||
        q_lock(q) < 0) {
        return NULL;
    }
    /* With immediate, take the whole buffer now and release the items once
     * the mutex is free (their finalizers may run Python code). */
    PyObject **items = NULL;
    Py_ssize_t cap = 0, head = 0, n = 0;
    STORE(q->shutdown, 1);
    Py_ssize_t j = 0;
    if (immediate) {
        items = q->items;
        cap = q->cap;
        head = q->head;
        n = LOAD(q->count);
        q->items = NULL;
        q->cap = q->head = 0;
        STORE(q->count, 0);
        Py_ssize_t unfinished = LOAD(q->unfinished);
        STORE(q->unfinished, unfinished > n ? unfinished - n : 0);
        j = wq_broadcast(&q->joiners);
    }
    /* Every getter must re-check for ShutDown, every putter raise it. */
    Py_ssize_t g = wq_broadcast(&q->getters), p = wq_broadcast(&q->putters);
    q_release(q);
    wq_wake(&q->getters, g);
    wq_wake(&q->putters, p);
    wq_wake(&q->joiners, j);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(items[(head + i) & (cap - 1)]);
    }
    PyMem_RawFree(items);
    Py_RETURN_NONE;
}

/* ---- SimpleQueue: methods ---------------------------------------------------- */

static PyObject *
simple_put(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    npqueue *q = Q(op);
    PyObject *item;
    if (nargs == 1 && kwnames == NULL) {
        item = args[0];
    }
    else {
        /* block and timeout are accepted for compatibility with Queue.put
         * and ignored: a SimpleQueue is never full. */
        PyObject *vals[3] = {NULL, NULL, NULL};
        if (parse_args("put", args, nargs, kwnames, put_names, 3, 1, vals) < 0) {
            return NULL;
        }
        item = vals[0];
    }
    if (q_lock(q) < 0) {
        return NULL;
    }
    if (npq_buf_reserve(q) < 0) {
        q_release(q);
        return PyErr_NoMemory();
    }
    Py_INCREF(item);
    ring_push(q, item);
    q_unlock(q);
    Py_RETURN_NONE;
}

static PyObject *
simple_put_nowait(PyObject *op, PyObject *item)
{
    return simple_put(op, &item, 1, NULL);
}

static PyObject *
simple_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    npqueue *q = Q(op);
    PyObject *item;
    if (nargs == 0 && kwnames == NULL && (item = get_fast(q)) != NULL) {
        return item;
    }
    PyObject *vals[2] = {NULL, NULL};
    q_timeout t;
    if (parse_args("get", args, nargs, kwnames, get_names, 2, 0, vals) < 0 ||
        npq_parse_block_timeout(q, vals[0], vals[1], &t) < 0) {
        return NULL;
    }
    if (t.block && t.negative) {   /* _queue checks before looking */
        npq_raise(q, QE_NEGATIVE);
        return NULL;
    }
    return npq_get(q, &t);
}

/* ---- construction, GC, repr -------------------------------------------------- */

static PyObject *
q_new(PyTypeObject *tp, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    np_state *st = np_state_from_type(tp);
    if (st == NULL) {
        PyErr_SetString(PyExc_TypeError, "nativepool queue type without its module");
        return NULL;
    }
    npqueue *q = (npqueue *)tp->tp_alloc(tp, 0);
    if (q == NULL) {
        return NULL;
    }
    q->st = st;
    q->kind = PyType_IsSubtype(tp, st->priorityqueue_type) ? QK_PRIO
            : PyType_IsSubtype(tp, st->lifoqueue_type)     ? QK_LIFO
            : PyType_IsSubtype(tp, st->simplequeue_type)   ? QK_SIMPLE
                                                           : QK_FIFO;
    return (PyObject *)q;
}

/* maxsize as the stdlib compares it: count >= maxsize means full, so a
 * float bound is its ceiling; <= 0, NaN and infinity mean unbounded. */
static int
effective_maxsize(PyObject *obj, Py_ssize_t *out)
{
    if (PyFloat_Check(obj)) {
        double d = PyFloat_AS_DOUBLE(obj);
        *out = !(d > 0) || isinf(d) ? 0
             : d >= (double)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                          : (Py_ssize_t)ceil(d);
        return 0;
    }
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) {
        PyErr_Format(PyExc_TypeError, "maxsize must be a number, not %.200s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = overflow > 0 || v > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
         : overflow < 0 || v < 0              ? 0
                                              : (Py_ssize_t)v;
    return 0;
}

/* Set the bound (the constructor, or `q.maxsize = n` as the stdlib allows:
 * a larger bound frees blocked putters at once, a smaller one makes puts
 * wait until gets bring the size below it). */
static int
set_maxsize(npqueue *q, PyObject *maxsize_obj)
{
    Py_ssize_t maxsize = 0;
    if (maxsize_obj != NULL && effective_maxsize(maxsize_obj, &maxsize) < 0) {
        return -1;
    }
    if (q_lock(q) < 0) {
        return -1;
    }
    /* Swapped under the mutex (free-threaded builds may race two
     * setters, or a setter and the getter), released after it. */
    PyObject *old = q->maxsize_obj;
    Py_XINCREF(maxsize_obj);
    q->maxsize_obj = maxsize_obj;
    STORE(q->maxsize, maxsize);
    q_unlock(q);
    Py_XDECREF(old);
    return 0;
}

static int
queue_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"maxsize", NULL};
    PyObject *maxsize_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kws, &maxsize_obj)) {
        return -1;
    }
    return set_maxsize(Q(op), maxsize_obj);
}

static int
simple_init(PyObject *Py_UNUSED(op), PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "SimpleQueue() takes no arguments");
        return -1;
    }
    return 0;
}

static int
q_traverse(PyObject *op, visitproc visit, void *arg)
{
    npqueue *q = Q(op);
    Py_VISIT(Py_TYPE(op));
    /* No lock: the array is only changed by threads attached to the
     * interpreter, never half-way when Python code can run (see above). */
    Py_ssize_t n = LOAD(q->count);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_VISIT(q->items[(q->head + i) & (q->cap - 1)]);
    }
    Py_VISIT(q->maxsize_obj);
    Py_VISIT(q->dict);
    return 0;
}

static int
q_clear(PyObject *op)
{
    npqueue *q = Q(op);
    /* Unreachable, so nobody else uses it: take the buffer, then drop the
     * references (their finalizers may look at the queue: it is empty). */
    PyObject **items = q->items;
    Py_ssize_t n = LOAD(q->count), head = q->head, cap = q->cap;
    q->items = NULL;
    q->cap = q->head = 0;
    STORE(q->count, 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(items[(head + i) & (cap - 1)]);
    }
    PyMem_RawFree(items);
    Py_CLEAR(q->maxsize_obj);
    Py_CLEAR(q->dict);
    return 0;
}

static void
q_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (Q(op)->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    (void)q_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
queue_repr(PyObject *op)
{
    /* The queue module defines no repr: object's shape, "<queue.Queue
     * object at 0x...>", with our fields before "at" (as _thread.RLock's). */
    npqueue *q = Q(op);
    PyObject *name = np_type_display_name(Py_TYPE(op));
    if (name == NULL) {
        return NULL;
    }
    PyObject *r = q->kind == QK_SIMPLE
        ? PyUnicode_FromFormat("<%U object size=%zd at %p>", name, LOAD(q->count), op)
        : PyUnicode_FromFormat("<%U object maxsize=%zd size=%zd%s at %p>", name,
                               LOAD(q->maxsize), LOAD(q->count),
                               LOAD(q->shutdown) ? " shutdown=True" : "", op);
    Py_DECREF(name);
    return r;
}

static PyObject *
queue_get_maxsize(PyObject *op, void *Py_UNUSED(closure))
{
    npqueue *q = Q(op);
    if (q_lock(q) < 0) {
        return NULL;
    }
    PyObject *obj = q->maxsize_obj;
    Py_XINCREF(obj);
    Py_ssize_t maxsize = LOAD(q->maxsize);
    q_release(q);
    return obj != NULL ? obj : PyLong_FromSsize_t(maxsize);
}

static int
queue_set_maxsize(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete maxsize");
        return -1;
    }
    return set_maxsize(Q(op), value);
}

static PyObject *
queue_get_unfinished(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(LOAD(Q(op)->unfinished));
}

static PyObject *
queue_get_is_shutdown(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(LOAD(Q(op)->shutdown));
}

/* ---- type specs ---------------------------------------------------------------- */

#define PUT_DOC                                                               \
    "put($self, /, item, block=True, timeout=None)\n--\n\n"                   \
    "Put an item into the queue, waiting up to timeout seconds for a free\n" \
    "slot (forever if None) if block is true; raise Full if there is none,\n" \
    "ShutDown if the queue is shut down."
#define GET_DOC                                                               \
    "get($self, /, block=True, timeout=None)\n--\n\n"                         \
    "Remove and return an item, waiting up to timeout seconds (forever if\n"  \
    "None) if block is true; raise Empty if there is none, ShutDown once a\n" \
    "shut-down queue is empty."
#define GENERIC_ALIAS                                                         \
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS,               \
     "See PEP 585"}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_FASTCALL | METH_KEYWORDS,
     PUT_DOC},
    {"put_nowait", queue_put_nowait, METH_O,
     "put_nowait($self, item, /)\n--\n\nput(item, block=False)."},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_FASTCALL | METH_KEYWORDS,
     GET_DOC},
    {"get_nowait", queue_get_nowait, METH_NOARGS,
     "get_nowait($self, /)\n--\n\nget(block=False)."},
    {"qsize", queue_qsize, METH_NOARGS,
     "qsize($self, /)\n--\n\nThe approximate size of the queue."},
    {"empty", queue_empty, METH_NOARGS,
     "empty($self, /)\n--\n\nWhether the queue is empty (a snapshot)."},
    {"full", queue_full, METH_NOARGS,
     "full($self, /)\n--\n\nWhether the queue is full (a snapshot)."},
    {"task_done", queue_task_done, METH_NOARGS,
     "task_done($self, /)\n--\n\n"
     "Mark a task fetched with get() as complete; ValueError if called\n"
     "more times than items were put."},
    {"join", queue_join, METH_NOARGS,
     "join($self, /)\n--\n\n"
     "Block until every item put has been marked done with task_done()."},
    {"shutdown", (PyCFunction)(void (*)(void))queue_shutdown,
     METH_FASTCALL | METH_KEYWORDS,
     "shutdown($self, /, immediate=False)\n--\n\n"
     "Shut the queue down: put() raises ShutDown, get() too once the queue\n"
     "is empty, at once if immediate (which drops the remaining items and\n"
     "marks them done). Blocked callers are woken."},
    GENERIC_ALIAS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"maxsize", queue_get_maxsize, queue_set_maxsize,
     "the bound: full when qsize() >= maxsize > 0", NULL},
    {"unfinished_tasks", queue_get_unfinished, NULL,
     "items put and not yet marked done", NULL},
    {"is_shutdown", queue_get_is_shutdown, NULL, "whether shutdown() was called", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef queue_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(npqueue, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(npqueue, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot queue_slots[] = {
    {Py_tp_doc, "Queue(maxsize=0)\n--\n\n"
                "queue.Queue's drop-in, in C: a FIFO queue, unbounded if\n"
                "maxsize <= 0. Waits release the GIL and are interrupted by\n"
                "Ctrl-C."},
    {Py_tp_new, q_new},
    {Py_tp_init, queue_init},
    {Py_tp_dealloc, q_dealloc},
    {Py_tp_traverse, q_traverse},
    {Py_tp_clear, q_clear},
    {Py_tp_repr, queue_repr},
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {Py_tp_members, queue_members},
    {0, NULL},
};

#define QUEUE_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC)

static PyType_Spec queue_spec = {
    .name = "nativepool.Queue",
    .basicsize = sizeof(npqueue),
    .flags = QUEUE_FLAGS,
    .slots = queue_slots,
};

static PyType_Slot lifo_slots[] = {
    {Py_tp_doc, "LifoQueue(maxsize=0)\n--\n\n"
                "queue.LifoQueue's drop-in: the last item put is got first."},
    {Py_tp_traverse, q_traverse},
    {Py_tp_clear, q_clear},
    {0, NULL},
};

static PyType_Spec lifo_spec = {
    .name = "nativepool.LifoQueue",
    .basicsize = sizeof(npqueue),
    .flags = QUEUE_FLAGS,
    .slots = lifo_slots,
};

static PyType_Slot prio_slots[] = {
    {Py_tp_doc, "PriorityQueue(maxsize=0)\n--\n\n"
                "queue.PriorityQueue's drop-in: the smallest item (by <, in\n"
                "heapq's order) is got first. If a comparison raises, the\n"
                "exception propagates and the queue is left unchanged."},
    {Py_tp_traverse, q_traverse},
    {Py_tp_clear, q_clear},
    {0, NULL},
};

static PyType_Spec prio_spec = {
    .name = "nativepool.PriorityQueue",
    .basicsize = sizeof(npqueue),
    .flags = QUEUE_FLAGS,
    .slots = prio_slots,
};

static PyMethodDef simple_methods[] = {
    {"put", (PyCFunction)(void (*)(void))simple_put, METH_FASTCALL | METH_KEYWORDS,
     "put($self, /, item, block=True, timeout=None)\n--\n\n"
     "Put an item into the queue; never blocks (block and timeout are\n"
     "ignored, as in queue.SimpleQueue)."},
    {"put_nowait", simple_put_nowait, METH_O,
     "put_nowait($self, item, /)\n--\n\nput(item, block=False)."},
    {"get", (PyCFunction)(void (*)(void))simple_get, METH_FASTCALL | METH_KEYWORDS,
     "get($self, /, block=True, timeout=None)\n--\n\n"
     "Remove and return an item, waiting up to timeout seconds (forever if\n"
     "None) if block is true; raise Empty if there is none."},
    {"get_nowait", queue_get_nowait, METH_NOARGS,
     "get_nowait($self, /)\n--\n\nget(block=False)."},
    {"qsize", queue_qsize, METH_NOARGS,
     "qsize($self, /)\n--\n\nThe approximate size of the queue."},
    {"empty", queue_empty, METH_NOARGS,
     "empty($self, /)\n--\n\nWhether the queue is empty (a snapshot)."},
    GENERIC_ALIAS,
    {NULL, NULL, 0, NULL},
};

static PyMemberDef simple_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(npqueue, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot simple_slots[] = {
    {Py_tp_doc, "SimpleQueue()\n--\n\n"
                "queue.SimpleQueue's drop-in, in C: an unbounded FIFO queue\n"
                "without task tracking."},
    {Py_tp_new, q_new},
    {Py_tp_init, simple_init},
    {Py_tp_dealloc, q_dealloc},
    {Py_tp_traverse, q_traverse},
    {Py_tp_clear, q_clear},
    {Py_tp_repr, queue_repr},
    {Py_tp_methods, simple_methods},
    {Py_tp_members, simple_members},
    {0, NULL},
};

static PyType_Spec simple_spec = {
    .name = "nativepool.SimpleQueue",
    .basicsize = sizeof(npqueue),
    .flags = QUEUE_FLAGS,
    .slots = simple_slots,
};

static int
add_type(PyObject *module, PyTypeObject **slot, PyType_Spec *spec,
         PyTypeObject *base, const char *name)
{
    /* 3.9 wants the bases as a tuple. */
    PyObject *bases = base ? PyTuple_Pack(1, (PyObject *)base) : NULL;
    if (base != NULL && bases == NULL) {
        return -1;
    }
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, bases);
    Py_XDECREF(bases);
    if (*slot == NULL) {
        return -1;
    }
    return np_module_add(module, name, (PyObject *)*slot);
}

int
np_queue_types_init(PyObject *module, np_state *st)
{
    if ((st->Empty = np_import_attr("queue", "Empty")) == NULL ||
        (st->Full = np_import_attr("queue", "Full")) == NULL) {
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    st->ShutDown = np_import_attr("queue", "ShutDown");
#else
    st->ShutDown = PyErr_NewExceptionWithDoc(
        "nativepool.ShutDown", "Raised when put/get with shut-down queue.", NULL, NULL);
#endif
    if (st->ShutDown == NULL ||
        np_module_add(module, "ShutDown", st->ShutDown) < 0) {
        return -1;
    }
    if (add_type(module, &st->queue_type, &queue_spec, NULL, "Queue") < 0 ||
        add_type(module, &st->lifoqueue_type, &lifo_spec, st->queue_type,
                 "LifoQueue") < 0 ||
        add_type(module, &st->priorityqueue_type, &prio_spec, st->queue_type,
                 "PriorityQueue") < 0 ||
        add_type(module, &st->simplequeue_type, &simple_spec, NULL,
                 "SimpleQueue") < 0) {
        return -1;
    }
    return 0;
}
