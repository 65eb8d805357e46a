/* mapiter.c -- ThreadPool.map's result iterator and map() itself: reading
 * the inputs into the job's slots (mapjob.c), and handing the results back
 * in order.
 */
#include "mapjob.h"

#include <stdlib.h>

/* ---- the iterator ------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    map_job *job;
    PyObject *pool;             /* keeps the pool, so its workers, alive */
    PyObject *iters;            /* buffersize mode, until exhausted */
    int64_t deadline;
    Py_ssize_t buffersize;      /* 0: eager */
    uint64_t consumed;
    int64_t mark_ns;            /* when the consumer last had to wait */
    uint64_t mark_consumed;     /* results returned by then */
    int64_t interval_ns;        /* average time between results, or 0 */
    int busy;
} map_iter;

/*
 * Batched wake-ups (native maps).  Waking a sleeping consumer costs both sides a few
 * microseconds (more on a VM, where the wake is an inter-processor
 * interrupt), and on a machine with as many workers as cores the woken
 * consumer also pushes a worker off its core.  When results come faster
 * than BATCH_FAST_NS apart (tiny native tasks), one wake per result would
 * eat a large part of the machine, so the consumer instead asks to be woken
 * by the completion of a later slot: enough of them to cover
 * BATCH_LATENCY_NS at the current pace, and never sleeps longer than that.
 * A result can thus reach the caller up to BATCH_LATENCY_NS after it is
 * ready; slower maps (I/O, heavy calls) keep waking on the exact slot.
 */
#define BATCH_FAST_NS 50000
#define BATCH_LATENCY_NS 1000000
#define BATCH_MAX_SLOTS 1024

/* Which slot's completion should wake a consumer that needs slot i, and
 * until when to sleep at most. */
static uint64_t
wake_target(map_iter *it, uint64_t i, int64_t *deadline)
{
    map_job *job = it->job;
    *deadline = it->deadline;
    /* Native jobs only: Python runners hold the GIL the consumer needs, and
     * there the exact wake-up measured better. */
    if (!job->native) {
        return i;
    }
    /* The pace: results returned per wall time between two waits (a clock
     * read per wait, not per result). */
    int64_t now = np_monotonic_ns();
    uint64_t n = i - it->mark_consumed;
    if (it->mark_ns != 0 && n > 0) {
        int64_t d = (now - it->mark_ns) / (int64_t)n;
        it->interval_ns = it->interval_ns ? (it->interval_ns * 3 + d) / 4 : d;
    }
    it->mark_ns = now;
    it->mark_consumed = i;
    if (it->interval_ns <= 0 || it->interval_ns >= BATCH_FAST_NS) {
        return i;
    }
    uint64_t ahead = atomic_load_explicit(&job->published, memory_order_relaxed) - 1 - i;
    uint64_t k = BATCH_LATENCY_NS / (uint64_t)it->interval_ns;
    k = k < ahead ? k : ahead;
    k = k < BATCH_MAX_SLOTS ? k : BATCH_MAX_SLOTS;
    /* Slots finish out of order: if that one is already done, nobody
     * will wake us for it; wait for i itself. */
    if (k == 0 || atomic_load(&slot_at(job, i + k)->state) >= SLOT_OK) {
        return i;
    }
    int64_t d = now + BATCH_LATENCY_NS;
    if (d < *deadline) {
        *deadline = d;
    }
    return i + k;
}

/* Next zipped input: a new reference, or NULL with or without an error. */
static PyObject *
next_args(PyObject *iters, int star)
{
    Py_ssize_t n = PyTuple_GET_SIZE(iters);
    if (!star) {
        return PyIter_Next(PyTuple_GET_ITEM(iters, 0));
    }
    PyObject *args = PyTuple_New(n);
    if (args == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PyIter_Next(PyTuple_GET_ITEM(iters, k));
        if (item == NULL) {
            Py_DECREF(args);
            return NULL;
        }
        PyTuple_SET_ITEM(args, k, item);
    }
    return args;
}

/* Fill a slot with an input (args: a new reference, taken).  A native job
 * converts it into a call now; an input that does not fit fails the slot
 * with the conversion error instead. */
static void
fill_slot(map_job *job, map_slot *slot, PyObject *args)
{
    slot->value = NULL;
    slot->call = NULL;
    if (!job->native) {
        slot->args = args;
        return;
    }
    slot->args = NULL;
    if (job->star) {
        slot->call = np_ncall_new(job->fn, &PyTuple_GET_ITEM(args, 0),
                                  PyTuple_GET_SIZE(args), NULL);
    }
    else {
        slot->call = np_ncall_new(job->fn, &args, 1, NULL);
    }
    if (slot->call == NULL) {
        slot->value = np_fetch_exception();
    }
    Py_DECREF(args);
}

/* Stop the job (the stdlib's `finally: cancel remaining futures`). */
static void
iter_finish(map_iter *it)
{
    Py_CLEAR(it->iters);
    if (it->job != NULL) {
        map_job *job = it->job;
        it->job = NULL;
        atomic_store(&job->stopped, 1);
        np_mapjob_decref(job);
    }
}

/* buffersize mode: publish one more input into the ring. 1 published,
 * 0 input exhausted, -1 error. */
static int
publish_next(map_iter *it)
{
    map_job *job = it->job;
    PyObject *args = next_args(it->iters, job->star);
    if (args == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
        Py_CLEAR(it->iters);
        return 0;
    }
    if (np_core_check_open(job->core) < 0) {
        Py_DECREF(args);
        return -1;
    }
    uint64_t p = atomic_load_explicit(&job->published, memory_order_relaxed);
    map_slot *slot = slot_at(job, p);
    fill_slot(job, slot, args);
    atomic_store_explicit(&slot->state, SLOT_QUEUED, memory_order_relaxed);
    np_mutex_lock(&job->lock);
    atomic_store_explicit(&job->published, p + 1, memory_order_release);
    np_mutex_unlock(&job->lock);
    return np_mapjob_add_runners(job) < 0 ? -1 : 1;
}

static PyObject *
iter_next(PyObject *op)
{
    map_iter *it = (map_iter *)op;
    map_job *job = it->job;
    if (job == NULL) {
        return NULL;
    }
    if (it->busy) {
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    it->busy = 1;
    PyObject *value = NULL;
    np_state *st = job->core->st;

    if (it->iters != NULL && publish_next(it) < 0) {
        goto fail;
    }
    if (it->consumed == atomic_load_explicit(&job->published, memory_order_relaxed)) {
        iter_finish(it);
        it->busy = 0;
        return NULL;
    }
    uint64_t i = it->consumed;
    map_slot *slot = slot_at(job, i);
    uint32_t s;
    while ((s = atomic_load(&slot->state)) < SLOT_OK) {
        int64_t deadline;
        uint64_t target = wake_target(it, i, &deadline);
        atomic_store(&job->waiting_for, target + 1);
        uint32_t ev = atomic_load(&job->event);
        /* Re-check after announcing (pairs with complete_slot): a slot
         * done before the announcement will wake nobody. */
        if ((s = atomic_load(&slot->state)) >= SLOT_OK ||
            atomic_load(&slot_at(job, target)->state) >= SLOT_OK) {
            atomic_store(&job->waiting_for, 0);
            continue;
        }
        int r = np_wait_word(&job->event, ev, deadline);
        atomic_store(&job->waiting_for, 0);
        if (r < 0) {
            goto fail;     /* Ctrl-C: the stdlib generator stops too */
        }
        if (r == 0 && atomic_load(&slot->state) < SLOT_OK &&
            np_monotonic_ns() >= it->deadline) {
            PyErr_SetNone(st->TimeoutError);
            goto fail;
        }
    }
    value = slot->value;
    slot->value = NULL;
    if (slot->call != NULL) {
        /* A native call ran: its outcome becomes the value now. */
        if (s == SLOT_OK) {
            value = np_ncall_outcome(slot->call);
            if (value == NULL) {
                value = np_fetch_exception();
                s = SLOT_FAILED;
            }
        }
        np_ncall_free(slot->call);
        slot->call = NULL;
    }
    atomic_store_explicit(&slot->state, SLOT_EMPTY, memory_order_relaxed);
    it->consumed++;
    if (s == SLOT_OK) {
        it->busy = 0;
        return value;
    }
    if (s == SLOT_FAILED) {
        if (PyErr_GivenExceptionMatches(value, PyExc_StopIteration)) {
            /* From tp_iternext StopIteration would silently end the
             * iteration; the stdlib's generator turns it into
             * RuntimeError (PEP 479), and so do we. */
            PyErr_SetString(PyExc_RuntimeError, "generator raised StopIteration");
            PyObject *err = np_fetch_exception();
            Py_INCREF(value);
            PyException_SetContext(err, value);   /* steals one reference */
            PyException_SetCause(err, value);     /* and the other */
            np_raise_exception(err);
            Py_DECREF(err);
            value = NULL;
        }
        else {
            np_raise_exception(value);
            Py_DECREF(value);
        }
    }
    else {
        PyErr_SetNone(st->CancelledError);
    }
fail:
    iter_finish(it);
    it->busy = 0;
    return NULL;
}

static PyObject *
iter_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    map_iter *it = (map_iter *)op;
    if (it->busy) {
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    iter_finish(it);
    Py_RETURN_NONE;
}

static int
iter_traverse(PyObject *op, visitproc visit, void *arg)
{
    map_iter *it = (map_iter *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(it->pool);
    Py_VISIT(it->iters);
    return 0;
}

static int
iter_clear(PyObject *op)
{
    map_iter *it = (map_iter *)op;
    iter_finish(it);
    Py_CLEAR(it->pool);
    return 0;
}

static void
iter_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    iter_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef iter_methods[] = {
    {"close", iter_close, METH_NOARGS,
     "close($self, /)\n--\n\nStop: calls not yet started are cancelled."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot iter_slots[] = {
    {Py_tp_doc, "The results of ThreadPool.map(), in order."},
    {Py_tp_dealloc, iter_dealloc},
    {Py_tp_traverse, iter_traverse},
    {Py_tp_clear, iter_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, iter_next},
    {Py_tp_methods, iter_methods},
    {0, NULL},
};

static PyType_Spec iter_spec = {
    .name = "nativepool._nativepool.MapIterator",
    .basicsize = sizeof(map_iter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = iter_slots,
};

int
np_mapiter_type_init(PyObject *module, np_state *st)
{
    st->mapiter_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &iter_spec, NULL);
    return st->mapiter_type == NULL ? -1 : 0;
}

/* ---- map() ------------------------------------------------------------- */

static int
parse_map_kwargs(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 PyObject **timeout, Py_ssize_t *buffersize)
{
    *timeout = Py_None;
    *buffersize = 0;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *bs = Py_None;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        PyObject *v = args[nargs + k];
        if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0) {
            *timeout = v;
        }
        else if (PyUnicode_CompareWithASCIIString(name, "chunksize") == 0) {
            /* Ignored by thread pools, as in the stdlib. */
        }
        else if (PyUnicode_CompareWithASCIIString(name, "buffersize") == 0) {
            bs = v;
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "map() got an unexpected keyword argument '%U'", name);
            return -1;
        }
    }
    if (bs != Py_None) {
        if (!PyLong_Check(bs)) {
            PyErr_SetString(PyExc_TypeError, "buffersize must be an integer or None");
            return -1;
        }
        *buffersize = PyLong_AsSsize_t(bs);
        if (*buffersize == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (*buffersize < 1) {
            PyErr_SetString(PyExc_ValueError, "buffersize must be None or > 0");
            return -1;
        }
        if ((size_t)*buffersize > ((size_t)1 << 40)) {
            PyErr_SetString(PyExc_OverflowError, "buffersize is too large");
            return -1;
        }
    }
    return 0;
}

/* Eager mode: read every input now, as the stdlib's list of submits does.
 * If an input raises part-way, what was read still runs (the stdlib had
 * submitted it) and map() raises.  Returns 0, or -1 with an exception (the
 * job then holds what was read). */
static int
read_all(map_job *job, PyObject *iters)
{
    uint64_t cap = 0;
    for (;;) {
        PyObject *args = next_args(iters, job->star);
        if (args == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        uint64_t n = atomic_load_explicit(&job->published, memory_order_relaxed);
        if (n == cap) {
            uint64_t ncap = cap ? cap * 2 : 64;
            map_slot *ns = PyMem_Realloc(job->slots, ncap * sizeof(map_slot));
            if (ns == NULL) {
                Py_DECREF(args);
                PyErr_NoMemory();
                return -1;
            }
            job->slots = ns;
            cap = ncap;
        }
        map_slot *slot = &job->slots[n];
        fill_slot(job, slot, args);
        atomic_init(&slot->state, SLOT_QUEUED);
        /* No runner exists yet: add_runners' lock publishes these. */
        atomic_store_explicit(&job->published, n + 1, memory_order_relaxed);
    }
}

/* Eager native map over a list or tuple (a snapshot: items is a tuple): its size
 * is known, so the slots are allocated once and published as they are
 * filled, and runners start on the first items while the rest are still
 * being converted (for a native map, converting 20,000 inputs is a few ms
 * the workers would otherwise sit idle).  0, or -1 with an exception if no
 * runner could be started (what was published still runs). */
static int
read_sequence(map_job *job, PyObject *items)
{
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (n == 0) {
        return 0;
    }
    job->slots = PyMem_Malloc((size_t)n * sizeof(map_slot));
    if (job->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        Py_INCREF(item);
        map_slot *slot = &job->slots[i];
        fill_slot(job, slot, item);
        atomic_init(&slot->state, SLOT_QUEUED);
        /* Publish the first items at once, then in batches of 256 (each
         * publication takes the job lock and may add a runner). */
        if ((size_t)i + 1 == job->max_runners || (i & 255) == 255 || i + 1 == n) {
            np_mutex_lock(&job->lock);
            atomic_store_explicit(&job->published, (uint64_t)i + 1,
                                  memory_order_release);
            np_mutex_unlock(&job->lock);
            if (np_mapjob_add_runners(job) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

PyObject *
np_map(PyObject *pool, np_core *core, PyObject *const *args, Py_ssize_t nargs,
       PyObject *kwnames)
{
    np_state *st = core->st;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "map() missing 1 required positional argument: 'fn'");
        return NULL;
    }
    PyObject *fn = args[0], *timeout;
    Py_ssize_t buffersize;
    if (parse_map_kwargs(args, nargs, kwnames, &timeout, &buffersize) < 0) {
        return NULL;
    }
    np_reclaim_drain(st);
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError,
                     "map() argument 'fn' must be callable, not %.200s",
                     Py_TYPE(fn)->tp_name);
        return NULL;
    }
    int64_t deadline;
    if (np_parse_timeout(st, timeout, &deadline) < 0) {
        return NULL;
    }
    if (np_core_check_open(core) < 0) {
        return NULL;
    }
    Py_ssize_t niter = nargs - 1;
    PyObject *iters = PyTuple_New(niter);
    if (iters == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < niter; k++) {
        PyObject *itk = PyObject_GetIter(args[k + 1]);
        if (itk == NULL) {
            Py_DECREF(iters);
            return NULL;
        }
        PyTuple_SET_ITEM(iters, k, itk);
    }

    map_job *job = PyMem_Calloc(1, sizeof(map_job));
    map_iter *it = job ? PyObject_GC_New(map_iter, st->mapiter_type) : NULL;
    if (it == NULL) {
        PyMem_Free(job);
        Py_DECREF(iters);
        return PyErr_NoMemory();
    }
    atomic_init(&job->refs, 1);
    Py_INCREF(fn);
    job->fn = fn;
    job->star = niter != 1;
    job->native = np_is_native(st, fn);
    job->mask = UINT64_MAX;
    job->max_runners = (size_t)core->max_workers;
    Py_INCREF(core);
    job->core = core;
    it->job = job;
    Py_INCREF(pool);
    it->pool = pool;
    it->iters = NULL;
    it->deadline = deadline;
    it->buffersize = buffersize;
    it->consumed = 0;
    it->mark_ns = 0;
    it->mark_consumed = 0;
    it->interval_ns = 0;
    it->busy = 0;
    PyObject_GC_Track((PyObject *)it);

    if (niter == 0) {        /* zip() of nothing: no calls */
        Py_DECREF(iters);
        return (PyObject *)it;
    }
    if (buffersize == 0 && niter == 1 && job->native &&
        (PyList_CheckExact(args[1]) || PyTuple_CheckExact(args[1]))) {
        PyObject *items = PySequence_Tuple(args[1]);
        Py_DECREF(iters);
        int r = items ? read_sequence(job, items) : -1;
        Py_XDECREF(items);
        if (r < 0) {
            Py_DECREF(it);
            return NULL;
        }
        return (PyObject *)it;
    }
    if (buffersize == 0) {
        int r = read_all(job, iters);
        Py_DECREF(iters);
        if (r < 0) {
            PyObject *exc = np_fetch_exception();
            (void)np_mapjob_add_runners(job);   /* what was read still runs */
            PyErr_Clear();
            it->job = NULL;            /* but nobody will read it */
            np_mapjob_decref(job);
            Py_DECREF(it);
            np_raise_exception(exc);
            Py_DECREF(exc);
            return NULL;
        }
        if (np_mapjob_add_runners(job) < 0) {
            Py_DECREF(it);
            return NULL;
        }
        return (PyObject *)it;
    }
    uint64_t cap = 2;
    while (cap < (uint64_t)buffersize + 1) {
        cap *= 2;
    }
    job->slots = PyMem_Calloc(cap, sizeof(map_slot));
    if (job->slots == NULL) {
        Py_DECREF(iters);
        Py_DECREF(it);
        return PyErr_NoMemory();
    }
    job->mask = cap - 1;
    it->iters = iters;
    for (Py_ssize_t k = 0; k < buffersize && it->iters != NULL; k++) {
        if (publish_next(it) < 0) {
            Py_DECREF(it);
            return NULL;
        }
    }
    return (PyObject *)it;
}
