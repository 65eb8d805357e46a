/* npqueue.h -- what queue.c (the types) and queue_core.c (the locking,
 * waiting, buffer and put/get machinery) share.  See queue.c for the
 * design notes on the structures below. */
#ifndef NP_QUEUE_H
#define NP_QUEUE_H

#include "np_module.h"


#include "structmember.h"

#include "pythread.h"

#include <math.h>
#include <sched.h>
#include <time.h>

enum { QK_FIFO, QK_LIFO, QK_PRIO, QK_SIMPLE };

#define QUEUE_MINCAP 16
#define QUEUE_SHRINK_MIN 1024   /* never shrink below this */

/* A condition variable made of an np_sem word, for one kind of waiter
 * (getters, putters, joiners).  `waiting` and `signaled` are guarded by the
 * queue's mutex; ev.value only moves under it too.
 *
 *   waiter (mutex held, predicate false):
 *       waiting++; seen = ev.value; unlock;
 *       np_sem_wait_change_blocking(&ev, seen, deadline)   GIL released:
 *           spins, then parks; Ctrl-C in the main thread raises
 *       lock; waiting--; consume one signal if any; re-check the predicate
 *   waker (mutex held):
 *       if fewer wakes are outstanding than min(waiting, what is available):
 *       signaled = that minimum; bump ev.value; after unlocking, futex-wake
 *       that many, and only if np_sem counts a parked sleeper.
 *
 * No lost wakeup: `seen` is read under the mutex, so a waker that makes the
 * predicate true after it bumps ev.value past `seen`, and a waiter that has
 * not slept yet sees the change (np_sem's spin, its sleepers count and the
 * futex re-check: np_sem.h).  Every unlock re-establishes "outstanding wakes
 * >= min(waiting, available)", so a woken waiter that leaves without taking
 * (timeout, Ctrl-C, a failing __lt__) hands its wake on when it unlocks.  A
 * waker with nobody waiting pays one comparison. */
typedef struct {
    np_sem ev;
    Py_ssize_t waiting;
    Py_ssize_t signaled;
} q_waitq;

/* The queue.
 *
 *   items    strong references, a power-of-two array of `cap` slots:
 *            Queue, LifoQueue, SimpleQueue: a ring [head, head+count);
 *            FIFO pops at head, LIFO at the tail.
 *            PriorityQueue: heapq's binary heap (head stays 0), with heapq's
 *            comparisons in heapq's order, so ties come out exactly as from
 *            queue.PriorityQueue.
 *   mutex    guards everything.  Held for a few loads and stores only: never
 *            across a DECREF, a Python allocation or any Python code (a
 *            finalizer could re-enter the queue) -- except PriorityQueue's
 *            comparisons, below.  It is taken and the buffer changed only
 *            by threads attached to the interpreter (holding the GIL); a
 *            thread that must wait for it waits detached and retries once
 *            it is free, never holding it across a GIL (re)acquisition.  So
 *            a holder never waits for the GIL, and the GC's traverse (run
 *            with the GIL or with the world stopped) reads the buffer
 *            without the mutex and always sees a whole one.  (A
 *            PriorityQueue holder may detach inside __lt__, but only while
 *            the heap is whole.)
 *   count, unfinished, shutdown, maxsize: written under the mutex, atomic
 *            so qsize()/empty()/full()/repr read them without it.
 *
 * PriorityQueue compares items with `<`, which runs Python code that may
 * release the GIL, raise, or re-enter the queue.  The mutex is held across
 * the comparisons (a thread that wants it meanwhile waits with the GIL
 * released), but the heap is only modified after all comparisons of an
 * operation succeeded: Python code always sees a valid heap, and a failing
 * __lt__ leaves the queue exactly as it was (the stdlib may drop an item
 * then).  Re-entering the same queue from __lt__ on the same thread
 * raises RuntimeError instead of deadlocking (cmp_owner). */
typedef struct {
    PyObject_HEAD
    np_mutex mutex;
    int kind;
    PyObject **items;
    Py_ssize_t cap;
    Py_ssize_t head;
    Py_ssize_t idle_gets;              /* see npq_buf_maybe_shrink */
    _Atomic Py_ssize_t count;
    _Atomic Py_ssize_t maxsize;        /* 0: unbounded */
    _Atomic Py_ssize_t unfinished;
    _Atomic int shutdown;
    _Atomic unsigned long cmp_owner;   /* thread comparing items, or 0 */
    q_waitq getters, putters, joiners;
    np_state *st;
    PyObject *maxsize_obj;             /* what the caller passed, or NULL */
    PyObject *dict;
    PyObject *weakreflist;
} npqueue;

#define Q(op) ((npqueue *)(op))
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

/* Release the mutex.  Queue, LifoQueue and SimpleQueue holders only ever
 * keep it for a few stores, so their waiters poll instead of parking (below)
 * and a release store is a whole unlock: one atomic read-modify-write per
 * operation instead of two.  PriorityQueue holders may run __lt__ for as
 * long as it likes, so there waiters park and unlock is np_mutex's. */
static inline void
q_release(npqueue *q)
{
    if (q->kind == QK_PRIO) {
        np_mutex_unlock(&q->mutex);
    }
    else {
        np_mutex_unlock_nowake(&q->mutex);
    }
}

/* The slow halves, in queue_core.c. */
int npq_lock_slow(npqueue *q);
void npq_unlock_wake(npqueue *q);
int npq_wait(npqueue *q, q_waitq *w, int64_t deadline);

/* 0 locked, -1 with an exception (PriorityQueue re-entered from __lt__). */
static inline int
q_lock(npqueue *q)
{
    return np_mutex_trylock(&q->mutex) ? 0 : npq_lock_slow(q);
}

/* How many sleepers to wake so that outstanding wakes cover
 * min(waiting, available); bumps the word if any.  Mutex held. */
static inline Py_ssize_t
wq_signal(q_waitq *w, Py_ssize_t available)
{
    if (w->waiting == w->signaled) {
        return 0;          /* nobody waits, or everyone is already woken */
    }
    Py_ssize_t want = w->waiting < available ? w->waiting : available;
    if (want <= w->signaled) {
        return 0;
    }
    Py_ssize_t n = want - w->signaled;
    w->signaled = want;
    /* seq_cst: the store half of np_sem's pair with the sleepers count. */
    atomic_fetch_add(&w->ev.value, 1);
    return n;
}

static inline Py_ssize_t
wq_broadcast(q_waitq *w)
{
    return wq_signal(w, PY_SSIZE_T_MAX);
}

/* After unlocking: wake n of the parked sleepers, if any are parked. */
static inline void
wq_wake(q_waitq *w, Py_ssize_t n)
{
    if (n > 0 && np_sem_sleepers(&w->ev) != 0) {
        np_futex_wake(&w->ev.value, n > INT32_MAX ? INT32_MAX : (int)n);
    }
}

/* Unlock, first making sure that waiters that can now proceed are woken.
 * With nobody waiting (the common case) that is four loads. */
static inline void
q_unlock(npqueue *q)
{
    if (q->getters.waiting == q->getters.signaled &&
        q->putters.waiting == q->putters.signaled) {
        q_release(q);
    }
    else {
        npq_unlock_wake(q);
    }
}

int npq_buf_reserve(npqueue *q);
void npq_buf_maybe_shrink(npqueue *q);

/* Append to the ring (FIFO, LIFO, SimpleQueue).  Room was reserved. */
static inline void
ring_push(npqueue *q, PyObject *item)
{
    Py_ssize_t count = LOAD(q->count);
    q->items[(q->head + count) & (q->cap - 1)] = item;
    STORE(q->count, count + 1);
}

/* Take from the ring; count > 0. */
static inline PyObject *
ring_pop(npqueue *q)
{
    Py_ssize_t count = LOAD(q->count);
    PyObject *item;
    if (q->kind == QK_LIFO) {
        item = q->items[(q->head + count - 1) & (q->cap - 1)];
    }
    else {
        item = q->items[q->head];
        q->head = (q->head + 1) & (q->cap - 1);
    }
    STORE(q->count, count - 1);
    return item;
}

/* Errors decided under the mutex, raised after it is released. */
enum { QE_OK, QE_RAISED, QE_NOMEM, QE_EMPTY, QE_FULL, QE_SHUTDOWN,
       QE_NEGATIVE, QE_OVERFLOW };

/* The (block, timeout) pair, read before locking: it may run Python code.
 * A negative timeout or one too large is an error only where the stdlib's
 * comparisons would find it, so it is recorded, not raised. */
typedef struct {
    int block;
    int negative;
    int overflow;
    int64_t deadline;
} q_timeout;

void npq_raise(npqueue *q, int err);
int npq_parse_block_timeout(npqueue *q, PyObject *block_obj, PyObject *timeout_obj, q_timeout *t);
int npq_put(npqueue *q, PyObject *item, PyObject *block_obj, PyObject *timeout_obj);
PyObject *npq_get(npqueue *q, q_timeout *t);

#endif /* NP_QUEUE_H */
