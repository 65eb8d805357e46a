/* mapjob.c -- ThreadPool.map without a future per item.
 *
 * The stdlib's map() is a submit() per item plus a generator that calls
 * result() on each future in turn: a future, a work item, a Condition and a
 * queue round trip per element.  Here a map call is one job:
 *
 *   consumer (the caller's thread)              runners (pool tasks)
 *   ------------------------------              --------------------
 *   pulls inputs (eagerly, or lazily       -->  claim the next published
 *   with buffersize), publishes them            slot, call fn, store the
 *   into slots                                  outcome, wake the consumer
 *   reads slots in order, waits on the     <--  only if it sleeps on that
 *   job's event word when one is not done       very slot
 *
 * Only the consumer ever touches the user's iterators (as in the stdlib,
 * where they are advanced by map() and by the result generator), so a
 * generator as input is never advanced from two threads.
 *
 * Up to max_workers runner tasks serve one job; each claims items one at a
 * time, so slow (I/O-bound) calls spread over the workers exactly as
 * separate submits would, while fast calls run back to back on whichever
 * worker holds the GIL.
 *
 * Slots: in eager mode a flat array of every item; with buffersize a ring of
 * a power-of-two size > buffersize (the stdlib keeps at most buffersize + 1
 * calls in flight: it submits the next input before waiting for a result).
 *
 * A NativeFunction as fn makes a native job: the consumer converts each
 * input into a C call when it publishes it (np_ncall_new, with the GIL);
 * runners run calls without the GIL and store nothing Python in the slot;
 * the consumer turns each outcome into a result as it reads it.  An input
 * that does not fit fn's signature fails its own slot (as a Python fn's
 * TypeError would), in order.  A native runner's last reference to the job
 * is dropped through the reclaim stack (native_task.c) when its worker
 * does not hold the GIL.
 */
#include "mapjob.h"

#include <stdlib.h>

typedef struct {
    np_pytask task;
    map_job *job;
    int64_t current;            /* claimed item being run, or -1 */
} map_runner;


void
np_mapjob_decref(map_job *job)
{
    if (atomic_fetch_sub(&job->refs, 1) != 1) {
        return;
    }
    uint64_t n = job->mask == UINT64_MAX ? atomic_load(&job->published)
                                         : job->mask + 1;
    for (uint64_t i = 0; i < n; i++) {
        Py_XDECREF(job->slots[i].args);
        Py_XDECREF(job->slots[i].value);
        np_ncall_free(job->slots[i].call);
    }
    PyMem_Free(job->slots);
    Py_XDECREF(job->fn);
    Py_XDECREF((PyObject *)job->core);
    PyMem_Free(job);
}

/* Store an outcome and wake the consumer if it sleeps on this item. */
static void
complete_slot(map_job *job, uint64_t i, uint32_t state, PyObject *value)
{
    map_slot *slot = slot_at(job, i);
    slot->value = value;
    /* seq_cst store, then seq_cst load of waiting_for: paired with the
     * consumer's store of waiting_for then load of the state, one of the
     * two sees the other (no lost wakeup). */
    atomic_store(&slot->state, state);
    uint64_t want = i + 1;
    if (atomic_load(&job->waiting_for) == want &&
        atomic_compare_exchange_strong(&job->waiting_for, &want, 0)) {
        atomic_fetch_add(&job->event, 1);
        np_futex_wake(&job->event, 1);
    }
}

/* Claim the next published item: 1 and *i, or 0 if none is left. */
static int
claim(map_job *job, uint64_t *i)
{
    uint64_t c = atomic_load_explicit(&job->claimed, memory_order_relaxed);
    /* acquire on published: the slot's args were written before it. */
    while (c < atomic_load_explicit(&job->published, memory_order_acquire)) {
        if (atomic_compare_exchange_weak(&job->claimed, &c, c + 1)) {
            *i = c;
            return 1;
        }
    }
    return 0;
}

int
np_mapjob_claim_rest(map_job *job, uint64_t *from, uint64_t *to)
{
    uint64_t c = atomic_load(&job->claimed);
    for (;;) {
        /* acquire on published: the slots' inputs were written before it. */
        uint64_t p = atomic_load_explicit(&job->published, memory_order_acquire);
        if (c >= p) {
            return 0;
        }
        /* One CAS takes the whole range, so it is contiguous even while
         * other runners still claim. */
        if (atomic_compare_exchange_weak(&job->claimed, &c, p)) {
            *from = c;
            *to = p;
            return 1;
        }
    }
}

void
np_mapjob_drop(map_job *job, uint64_t from, uint64_t to, PyObject *exc)
{
    for (uint64_t i = from; i < to; i++) {
        map_slot *slot = slot_at(job, i);
        /* Detach the input before completing: once complete, the slot
         * belongs to the consumer (in ring mode it may refill it). */
        PyObject *args = slot->args;
        slot->args = NULL;
        if (slot->value != NULL) {
            /* A native input that failed to convert: keep its error. */
            complete_slot(job, i, SLOT_FAILED, slot->value);
        }
        else {
            Py_XINCREF(exc);
            complete_slot(job, i, exc ? SLOT_FAILED : SLOT_CANCELLED, exc);
        }
        Py_XDECREF(args);
    }
}

static int
cancelled_all(map_job *job)
{
    return atomic_load_explicit(&job->core->cancel_all, memory_order_relaxed);
}

/* ---- runners ----------------------------------------------------------- */

static void
runner_run(np_task *t, void *worker)
{
    map_runner *r = (map_runner *)t;
    map_job *job = r->job;
    if (job->native) {
        np_worker_drop_gil(worker);
    }
    else {
        np_worker_hold_gil(worker);
    }
    for (;;) {
        uint64_t i;
        int stop = atomic_load_explicit(&job->stopped, memory_order_relaxed) ||
                   cancelled_all(job);
        if (stop || !claim(job, &i)) {
            /* Leave, unless work arrived while we were deciding (the
             * publisher adds a runner only if it sees too few). */
            np_mutex_lock(&job->lock);
            if (!stop && atomic_load(&job->claimed) < atomic_load(&job->published)) {
                np_mutex_unlock(&job->lock);
                continue;
            }
            /* shutdown(cancel_futures=True): cancel what nobody claimed.
             * (If the consumer stopped, it cancels them itself.) */
            uint64_t from, to;
            int drop = stop && !atomic_load(&job->stopped) &&
                       np_mapjob_claim_rest(job, &from, &to);
            job->runners--;
            np_mutex_unlock(&job->lock);
            if (drop) {
                np_mapjob_drop(job, from, to, NULL);   /* inputs' __del__ */
            }
            return;
        }

        map_slot *slot = slot_at(job, i);
        if (job->native) {
            /* No GIL here: only C, and the slot's plain fields. */
            if (slot->call == NULL) {
                complete_slot(job, i, SLOT_FAILED, slot->value);
                continue;
            }
            atomic_store_explicit(&slot->state, SLOT_RUNNING, memory_order_relaxed);
            r->current = (int64_t)i;
            np_ncall_run(slot->call);
            r->current = -1;
            complete_slot(job, i, SLOT_OK, NULL);
            continue;
        }
        PyObject *args = slot->args;
        slot->args = NULL;
        atomic_store_explicit(&slot->state, SLOT_RUNNING, memory_order_relaxed);
        r->current = (int64_t)i;
        PyObject *res;
        if (job->star) {
            res = PyObject_Vectorcall(job->fn, &PyTuple_GET_ITEM(args, 0),
                                      PyTuple_GET_SIZE(args), NULL);
        }
        else {
            res = PyObject_Vectorcall(job->fn, &args, 1, NULL);
        }
        Py_DECREF(args);
        uint32_t state = SLOT_OK;
        if (res == NULL) {
            res = np_fetch_exception();
            state = SLOT_FAILED;
        }
        if (atomic_load(&job->orphaned)) {
            /* Nobody will read it: free it now, as the stdlib's future
             * goes with the dropped generator (one that lands just as
             * the iterator goes waits for the job's end). */
            Py_CLEAR(res);
        }
        complete_slot(job, i, state, res);
        r->current = -1;
    }
}

static void
runner_release(np_task *t, void *worker)
{
    map_runner *r = (map_runner *)t;
    if (!np_worker_has_gil(worker)) {
        /* A native runner: job_decref may free Python objects. */
        np_reclaim_push(r->job->core->st, &r->task);
        return;
    }
    np_mapjob_decref(r->job);
    PyMem_Free(r);
}

/* The pool gave the runner back (shutdown with cancel_futures, a broken
 * pool, or a fork): if it was the last one, nobody will run what is left. */
static void
runner_abandon(np_pytask *t, PyObject *exc)
{
    map_runner *r = (map_runner *)t;
    map_job *job = r->job;
    if (r->current >= 0) {
        /* Orphaned mid-call by fork: that call will never return here
         * (its input stays with the parent's thread, gone in the child). */
        Py_XINCREF(exc);
        complete_slot(job, (uint64_t)r->current, exc ? SLOT_FAILED : SLOT_CANCELLED,
                      exc);
        r->current = -1;
    }
    np_mutex_lock(&job->lock);
    job->runners--;
    uint64_t from, to;
    int drop = job->runners == 0 && !atomic_load(&job->stopped) &&
               np_mapjob_claim_rest(job, &from, &to);
    np_mutex_unlock(&job->lock);
    if (drop) {
        np_mapjob_drop(job, from, to, exc);   /* inputs' __del__: no lock */
    }
}

/* Orphaned by fork: a worker of the parent may have held the job's lock
 * (claiming or publishing items); it is nobody's in the child. */
static void
runner_after_fork(np_pytask *t)
{
    np_mutex_reinit(&((map_runner *)t)->job->lock);
}

/* Queue one more runner.  Job lock NOT held (submit may start a thread).
 * np_core_submit's result: 0, -1 (not queued), 1 (queued, but raise). */
static int
add_runner(map_job *job)
{
    map_runner *r = PyMem_Malloc(sizeof(*r));
    if (r == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->task.base.run = runner_run;
    r->task.base.release = runner_release;
    r->task.abandon = runner_abandon;
    r->task.after_fork = runner_after_fork;
    r->job = job;
    r->current = -1;
    atomic_fetch_add(&job->refs, 1);
    int q = np_core_submit(job->core, &r->task);
    if (q < 0) {
        atomic_fetch_sub(&job->refs, 1);
        PyMem_Free(r);
    }
    return q;
}

/* After publishing: add runners while there is more unclaimed work than
 * runners to do it, up to max_workers. */
int
np_mapjob_add_runners(map_job *job)
{
    for (;;) {
        np_mutex_lock(&job->lock);
        int need = atomic_load(&job->published) - atomic_load(&job->claimed) >
                       job->runners &&
                   job->runners < job->max_runners;
        if (need) {
            job->runners++;
        }
        np_mutex_unlock(&job->lock);
        if (!need) {
            return 0;
        }
        int q = add_runner(job);
        if (q != 0) {
            if (q < 0) {   /* not queued; else it runs, counted */
                np_mutex_lock(&job->lock);
                job->runners--;
                np_mutex_unlock(&job->lock);
            }
            return -1;
        }
    }
}

