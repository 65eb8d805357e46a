/* mapjob.h -- ThreadPool.map's job (mapjob.c: slots, runner tasks) and
 * its iterator and construction (mapiter.c).  See mapjob.c for the design.
 */
#ifndef NP_MAPJOB_H
#define NP_MAPJOB_H

#include "np_module.h"

enum {
    SLOT_EMPTY = 0,
    SLOT_QUEUED,      /* published, not claimed */
    SLOT_RUNNING,     /* claimed by a runner */
    SLOT_OK,          /* value is the result */
    SLOT_FAILED,      /* value is the exception */
    SLOT_CANCELLED,   /* never ran: shutdown(cancel_futures=True) */
};

typedef struct {
    PyObject *args;             /* the item, or a tuple when star */
    PyObject *value;            /* result or exception once done; a native
                                   slot: the conversion error, if any */
    np_ncall *call;             /* a native slot's call, until read */
    _Atomic uint32_t state;
} map_slot;

typedef struct map_job {
    _Atomic Py_ssize_t refs;    /* the iterator + one per runner task */
    /* Claims are lock-free (a CAS on `claimed` below `published`); the lock
     * serialises what must be atomic with "is there work left": a runner
     * deciding to exit (runners--) against the consumer publishing and
     * deciding whether to add a runner.  Otherwise a runner could leave
     * just as an item arrives, and the item would never run.
     * Runners and the consumer take it holding the GIL, so nothing done
     * under it may need the GIL or run Python code: no decref of an item
     * (its __del__ may let the GIL go and another taker then waits on the
     * lock with the GIL: a deadlock).  Items are claimed under it and
     * released after it (np_mapjob_drop). */
    np_mutex lock;
    PyObject *fn;
    int star;                   /* several iterables: fn(*args) */
    int native;                 /* fn is a NativeFunction */
    map_slot *slots;
    uint64_t mask;              /* ring index mask; UINT64_MAX: flat array */
    _Atomic uint64_t published; /* items made available; consumer writes,
                                   under the lock, release (slot filled) */
    _Atomic uint64_t claimed;   /* items taken by runners */
    size_t runners;             /* runner tasks queued or running; lock */
    size_t max_runners;
    _Atomic int stopped;        /* the consumer gave up: claim nothing more */
    _Atomic int orphaned;       /* nobody will read the results (the iterator
                                   finished or was dropped unstarted): a
                                   Python runner drops each result at once */
    np_core *core;
    /* The consumer sleeps on `event` after storing the index it waits for,
     * plus one, in `waiting_for`.  A runner that completes exactly that item
     * clears waiting_for and bumps event; so a fast map wakes the consumer
     * once per sleep, not once per item. */
    _Atomic uint32_t event;
    _Atomic uint64_t waiting_for;
} map_job;

static inline map_slot *
slot_at(map_job *job, uint64_t i)
{
    return &job->slots[i & job->mask];
}

/* Drop a reference to the job; the last one frees it (GIL held). */
void np_mapjob_decref(map_job *job);

/* Claim every published item nobody claimed: 1 and the range [*from, *to),
 * or 0 if there was none.  Only atomics: fine under the job lock. */
int np_mapjob_claim_rest(map_job *job, uint64_t *from, uint64_t *to);

/* Complete the claimed items [from, to) as cancelled (exc NULL) or failed
 * with exc (borrowed), and release their inputs.  Each slot is completed
 * before its input is released, so an input's __del__ that reads the map
 * finds its own item done (the first dropped item ends the iteration).
 * Job lock NOT held.  Needs the GIL unless exc is NULL in a native job
 * (whose slots hold no Python input). */
void np_mapjob_drop(map_job *job, uint64_t from, uint64_t to, PyObject *exc);

/* After publishing: add runners while there is more unclaimed work than
 * runners to do it, up to max_workers.  0, or -1 with an exception. */
int np_mapjob_add_runners(map_job *job);

#endif /* NP_MAPJOB_H */
