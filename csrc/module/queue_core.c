/* queue_core.c -- the machinery under nativepool's queues: the mutex and
 * its slow path, the wait queues, the buffer (ring or heap) and the put/get
 * operations with the stdlib's checks.  The types and their methods are in
 * queue.c; the design notes are in npqueue.h, above the structures. */
#include "npqueue.h"

/* Wait for the mutex: a short spin, then, with the GIL released, until it
 * is free; then retry with the GIL (we never hold the mutex while waiting
 * for the GIL).  Detached, a PriorityQueue waiter parks: lock+unlock keeps
 * np_mutex's "maybe sleepers" state honest (the unlock wakes the next
 * sleeper if there is one).  Other kinds poll with a growing sleep: their
 * holder is busy for nanoseconds unless the OS preempted it, and with the
 * GIL the mutex is never contended at all (every holder holds the GIL). */
static void
q_lock_wait(npqueue *q)
{
    for (int i = 0; i < 64; i++) {
        np_cpu_relax();
        if (!np_mutex_is_locked(&q->mutex) && np_mutex_trylock(&q->mutex)) {
            return;
        }
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        if (q->kind == QK_PRIO) {
            np_mutex_lock(&q->mutex);
            np_mutex_unlock(&q->mutex);
        }
        else {
            for (long ns = 1000; np_mutex_is_locked(&q->mutex);) {
                struct timespec ts = {0, ns};
                sched_yield();
                if (np_mutex_is_locked(&q->mutex)) {
                    nanosleep(&ts, NULL);
                    ns = ns < 1000000 ? ns * 2 : ns;
                }
            }
        }
        Py_END_ALLOW_THREADS
        if (np_mutex_trylock(&q->mutex)) {
            return;
        }
    }
}

int
npq_lock_slow(npqueue *q)
{
    if (q->kind == QK_PRIO &&
        LOAD(q->cmp_owner) == PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "PriorityQueue used from an item comparison it is running");
        return -1;
    }
    q_lock_wait(q);
    return 0;
}

/* q_unlock's slow half: some waiter has not been woken yet. */
void
npq_unlock_wake(npqueue *q)
{
    Py_ssize_t count = LOAD(q->count), maxsize = LOAD(q->maxsize);
    Py_ssize_t g = wq_signal(&q->getters, count);
    Py_ssize_t p = 0;
    if (maxsize > 0 && count < maxsize) {
        p = wq_signal(&q->putters, maxsize - count);
    }
    q_release(q);
    wq_wake(&q->getters, g);
    wq_wake(&q->putters, p);
}

/* Mutex held: wait on w until woken or the deadline; returns with the mutex
 * held again.  1 woken, 0 timed out, -1 exception (Ctrl-C).  The caller
 * re-checks its predicate either way. */
int
npq_wait(npqueue *q, q_waitq *w, int64_t deadline)
{
    w->waiting++;
    uint32_t seen = atomic_load_explicit(&w->ev.value, memory_order_relaxed);
    q_release(q);
    int r = np_sem_wait_change_blocking(&w->ev, seen, deadline);
    /* Not q_lock: this thread cannot be inside one of our comparisons (it
     * was waiting), and an exception may be set. */
    if (!np_mutex_trylock(&q->mutex)) {
        q_lock_wait(q);
    }
    w->waiting--;
    if (w->signaled > 0) {
        w->signaled--;
    }
    return r;
}

/* ---- the buffer ------------------------------------------------------------ */

/* Reallocate to newcap slots (a power of two >= count), unwrapping the
 * ring.  Mutex held; raw allocator, no Python.  -1 on failure. */
static int
buf_resize(npqueue *q, Py_ssize_t newcap)
{
    Py_ssize_t count = LOAD(q->count);
    if ((size_t)newcap > PY_SSIZE_T_MAX / sizeof(PyObject *)) {
        return -1;
    }
    PyObject **n = PyMem_RawMalloc((size_t)newcap * sizeof(PyObject *));
    if (n == NULL) {
        return -1;
    }
    Py_ssize_t mask = q->cap - 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        n[i] = q->items[(q->head + i) & mask];
    }
    PyMem_RawFree(q->items);
    q->items = n;
    q->cap = newcap;
    q->head = 0;
    return 0;
}

/* Room for one more item.  Mutex held.  -1 out of memory. */
int
npq_buf_reserve(npqueue *q)
{
    if (LOAD(q->count) < q->cap) {
        return 0;
    }
    return buf_resize(q, q->cap ? q->cap * 2 : QUEUE_MINCAP);
}

/* Give back memory after a burst, but only once the buffer has stayed
 * mostly empty for as many gets as it has slots: a queue that fills and
 * drains in cycles (a producer ahead of its consumer) keeps its buffer
 * instead of regrowing it, page faults and copies, every cycle. */
void
npq_buf_maybe_shrink(npqueue *q)
{
    if (q->cap > QUEUE_SHRINK_MIN) {
        if (LOAD(q->count) >= q->cap / 8) {
            q->idle_gets = 0;
        }
        else if (++q->idle_gets > q->cap) {
            q->idle_gets = 0;
            (void)buf_resize(q, q->cap / 2);    /* failing to shrink is fine */
        }
    }
}

/* a < b.  Python code: callers set cmp_owner around it. */
static inline int
heap_lt(PyObject *a, PyObject *b)
{
    return PyObject_RichCompareBool(a, b, Py_LT);
}

/* heapq.heappush, comparisons first, then the moves.  Mutex held, room
 * reserved.  0, or -1 with __lt__'s exception and the heap unchanged. */
static int
heap_push(npqueue *q, PyObject *item)
{
    PyObject **a = q->items;
    Py_ssize_t n = LOAD(q->count), pos = n;
    STORE(q->cmp_owner, PyThread_get_thread_ident());
    while (pos > 0) {                       /* heapq._siftdown(heap, 0, n) */
        Py_ssize_t parent = (pos - 1) >> 1;
        int lt = heap_lt(item, a[parent]);
        if (lt < 0) {
            STORE(q->cmp_owner, 0);
            return -1;
        }
        if (!lt) {
            break;
        }
        pos = parent;
    }
    STORE(q->cmp_owner, 0);
    for (Py_ssize_t i = n; i > pos;) {
        Py_ssize_t parent = (i - 1) >> 1;
        a[i] = a[parent];
        i = parent;
    }
    a[pos] = item;
    STORE(q->count, n + 1);
    return 0;
}

/* heapq.heappop, comparisons first: the last item goes to the root and
 * sifts down along the path of smaller children to a leaf (_siftup), then
 * back up (_siftdown).  After the moves path[i] would hold what was at
 * path[i+1], so the upward comparisons can be made before moving anything.
 * Mutex held, count > 0.  The item, or NULL with the heap unchanged. */
static PyObject *
heap_pop(npqueue *q)
{
    PyObject **a = q->items;
    Py_ssize_t n = LOAD(q->count);
    PyObject *last = a[n - 1], *top = a[0];
    if (n == 1) {
        STORE(q->count, 0);
        return last;
    }
    Py_ssize_t end = n - 1, path[8 * sizeof(Py_ssize_t) + 1];
    int d = 0, k, lt = 0;
    path[0] = 0;
    STORE(q->cmp_owner, PyThread_get_thread_ident());
    for (Py_ssize_t child = 1; child < end; child = 2 * child + 1) {
        if (child + 1 < end) {
            if ((lt = heap_lt(a[child], a[child + 1])) < 0) {
                goto fail;
            }
            child += !lt;
        }
        path[++d] = child;
    }
    for (k = d; k > 0; k--) {
        if ((lt = heap_lt(last, a[path[k]])) < 0) {
            goto fail;
        }
        if (!lt) {
            break;
        }
    }
    STORE(q->cmp_owner, 0);
    for (int i = 0; i < k; i++) {
        a[path[i]] = a[path[i + 1]];
    }
    a[path[k]] = last;
    STORE(q->count, end);
    return top;
fail:
    STORE(q->cmp_owner, 0);
    return NULL;
}

/* ---- put, get -------------------------------------------------------------- */

void
npq_raise(npqueue *q, int err)
{
    switch (err) {
    case QE_NOMEM:
        PyErr_NoMemory();
        break;
    case QE_EMPTY:
        PyErr_SetNone(q->st->Empty);
        break;
    case QE_FULL:
        PyErr_SetNone(q->st->Full);
        break;
    case QE_SHUTDOWN:
        PyErr_SetNone(q->st->ShutDown);
        break;
    case QE_NEGATIVE:
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        break;
    case QE_OVERFLOW:
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        break;
    default:
        break;
    }
}

int
npq_parse_block_timeout(npqueue *q, PyObject *block_obj, PyObject *timeout_obj,
                    q_timeout *t)
{
    t->block = 1;
    t->negative = t->overflow = 0;
    t->deadline = NP_FOREVER;
    if (block_obj != NULL && (t->block = PyObject_IsTrue(block_obj)) < 0) {
        return -1;
    }
    if (!t->block) {
        t->deadline = np_monotonic_ns();
    }
    else if (timeout_obj != NULL && timeout_obj != Py_None) {
        double s = PyFloat_AsDouble(timeout_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        t->negative = s < 0;
        t->overflow = s > q->st->timeout_max;
        t->deadline = np_deadline_after(s);     /* NaN: now, as the stdlib */
    }
    return 0;
}

static int
q_put_locked(npqueue *q, PyObject *item, q_timeout *t)
{
    if (LOAD(q->shutdown)) {
        return QE_SHUTDOWN;
    }
    Py_ssize_t maxsize = LOAD(q->maxsize);
    if (maxsize > 0) {
        if (!t->block) {
            if (LOAD(q->count) >= maxsize) {
                return QE_FULL;
            }
        }
        else if (t->negative) {
            return QE_NEGATIVE;
        }
        while (LOAD(q->count) >= (maxsize = LOAD(q->maxsize)) && maxsize > 0) {
            if (t->deadline != NP_FOREVER && np_monotonic_ns() >= t->deadline) {
                return QE_FULL;
            }
            if (t->overflow) {
                return QE_OVERFLOW;
            }
            if (npq_wait(q, &q->putters, t->deadline) < 0) {
                return QE_RAISED;
            }
            if (LOAD(q->shutdown)) {
                return QE_SHUTDOWN;
            }
        }
    }
    if (npq_buf_reserve(q) < 0) {
        return QE_NOMEM;
    }
    if (q->kind == QK_PRIO) {
        if (heap_push(q, item) < 0) {
            return QE_RAISED;
        }
    }
    else {
        ring_push(q, item);
    }
    Py_INCREF(item);
    STORE(q->unfinished, LOAD(q->unfinished) + 1);
    return QE_OK;
}

int
npq_put(npqueue *q, PyObject *item, PyObject *block_obj, PyObject *timeout_obj)
{
    q_timeout t = {1, 0, 0, NP_FOREVER};
    /* The stdlib looks at block and timeout only for a bounded queue. */
    if (LOAD(q->maxsize) > 0 &&
        npq_parse_block_timeout(q, block_obj, timeout_obj, &t) < 0) {
        return -1;
    }
    if (q_lock(q) < 0) {
        return -1;
    }
    int err = q_put_locked(q, item, &t);
    q_unlock(q);
    npq_raise(q, err);
    return err == QE_OK ? 0 : -1;
}

static PyObject *
q_get_locked(npqueue *q, q_timeout *t, int *err)
{
    int simple = q->kind == QK_SIMPLE;
    if (LOAD(q->count) == 0) {
        if (!simple && LOAD(q->shutdown)) {
            *err = QE_SHUTDOWN;
            return NULL;
        }
        if (!t->block) {
            *err = QE_EMPTY;
            return NULL;
        }
    }
    if (t->block && t->negative) {
        *err = QE_NEGATIVE;
        return NULL;
    }
    while (LOAD(q->count) == 0) {
        if (t->deadline != NP_FOREVER && np_monotonic_ns() >= t->deadline) {
            *err = QE_EMPTY;
            return NULL;
        }
        if (t->overflow) {
            *err = QE_OVERFLOW;
            return NULL;
        }
        if (npq_wait(q, &q->getters, t->deadline) < 0) {
            *err = QE_RAISED;
            return NULL;
        }
        if (!simple && LOAD(q->shutdown) && LOAD(q->count) == 0) {
            *err = QE_SHUTDOWN;
            return NULL;
        }
    }
    PyObject *item;
    if (q->kind == QK_PRIO) {
        if ((item = heap_pop(q)) == NULL) {
            *err = QE_RAISED;
            return NULL;
        }
    }
    else {
        item = ring_pop(q);
    }
    npq_buf_maybe_shrink(q);
    return item;
}

PyObject *
npq_get(npqueue *q, q_timeout *t)
{
    int err = QE_OK;
    if (q_lock(q) < 0) {
        return NULL;
    }
    PyObject *item = q_get_locked(q, t, &err);
    q_unlock(q);
    npq_raise(q, err);
    return item;
}
