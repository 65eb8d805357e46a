/* procpool.h -- _nativepool._ProcCore, the C half of nativepool.ProcessPool:
 * what procpool.c (tasks, sending, submit, the object), procpool_workers.c
 * (workers coming and going, shutdown) and procpool_collect.c (the
 * collector) share.
 *
 *   ProcessPool (Python) --> _Manager (Python) --> _ProcCore (C)
 *                             starts, reaps and      pending tasks, one slot
 *                             kills processes;       per worker (its channel
 *                             runs the collector     and the task it runs),
 *                             thread's loop          the collector's wait
 *
 * A task is a future whose call is the pickled (fn, args, kwargs), built by
 * the Python side.  It goes to a worker's channel (np_chan) as
 * [8-byte id][pickle]; the worker answers [id][status][pickle] (see
 * _procworker.py).  Each worker has at most one task in flight, so a
 * worker's death, a timeout or a cancel always knows which task it hit,
 * and a long task never holds up a queued one that another worker could run.
 * Large pickle buffers travel beside the message, in memfds (_shared.py):
 * the core owns a task's (proc_task.fds) and closes them once the worker
 * has answered or is gone; the collector opens a result's as its reply
 * arrives.
 *
 * Who sends: a submit that finds an idle worker sends at once (with the
 * GIL; a message that fits in the ring never blocks, a longer one streams
 * with the GIL released); otherwise the task waits in the pending FIFO and
 * the collector sends it when a worker answers (without the GIL).  A slot
 * is claimed (slot->running set) under core->mutex, so exactly one thread
 * sends a given task; slot->send_lock covers the tail of a send, during
 * which the worker may already have answered and the collector may be
 * sending the next task to the same channel.
 *
 * The collector (core._collect(), on a thread the Python side starts) is
 * the only reader of every channel.  It waits in np_chan_wait_any over the
 * live workers plus an eventfd (rung when workers come and go, on shutdown),
 * without the GIL.  A reply completes its future without the GIL too: the
 * reply bytes stay in the future (as a C API task's outcome, np_native.h)
 * and are unpickled by whoever first reads the result with the GIL, so the
 * collector takes the GIL only for stdlib waiters and done callbacks
 * (np_future_finish_native), exactly like a native task's worker.
 *
 * What needs Python (reaping a dead worker, killing an overdue one, an
 * initializer that failed) returns from _collect() as an event tuple; the
 * manager acts and calls _collect() again.
 *
 * A worker's death (core._slot_gone) fails the task it was running, unless
 * the channel shows that the worker had not read all of it (it never ran):
 * then the task goes back to the head of the pending FIFO, its future still
 * RUNNING, for the next worker.  _slot_gone takes slot->send_lock first, so
 * no send is inside the channel it closes, and bumps slot->gen, so a send
 * claimed before the death never reaches the slot's next worker.
 *
 * Releases: the collector drops the core's reference to a finished future
 * onto the reclaim stack (it lacks the GIL); once it has been idle for a
 * millisecond it takes the GIL and drains the stack, so a task's objects
 * go soon after it is done even if no pool call follows (the stdlib frees
 * its work item at once).  The reply's reader drops the pickled call.
 *
 * Workers that die before reading anything of the task sent to them,
 * 3 in a row, break the pool (procpool_workers.c: STARTUP_DEATHS): the
 * unguarded-main-module script would otherwise respawn them forever.
 *
 * In a fork child (core._forked) the copies of the parent's running and
 * pending futures fail with BrokenProcessPool and submit raises it; the
 * locks a parent thread may have held are reset, and the channels
 * forgotten, never closed.  A fork made by our own spawn hook (the "fork"
 * start method) is a worker: it leaves the futures alone.
 *
 * Python objects are never built, and Python code never runs, under
 * core->mutex or a send_lock; neither is held while waiting for the GIL.
 *
 * Lock order: slot->send_lock, then core->mutex, then nothing.
 * slot->send_lock is taken without the GIL (or with it, by a submit's
 * trylock: the holder never needs the GIL while it holds it).
 */
#ifndef NP_PROCPOOL_H
#define NP_PROCPOOL_H

#include "np_native.h"

#include "np_chan.h"

/* Reply statuses: _procworker.py.  ST_STARTED: the worker has begun the
 * task (sent only for a task whose id carries TASK_TIMED): its timeout
 * starts now. */
enum { ST_OK = 0, ST_ERROR = 1, ST_RETIRED = 2, ST_INIT_FAILED = 3, ST_STARTED = 4 };
#define TASK_TIMED ((uint64_t)1 << 63)
#define REPLY_HEADER 9
#define BAD_MESSAGE (-1000)   /* a reply shorter than its header */

enum { SLOT_FREE = 0, SLOT_LIVE, SLOT_STOPPING, SLOT_GONE };
/* Why a worker was (to be) killed: KILL_NONE, not by the pool. */
enum { KILL_NONE = 0, KILL_TIMEOUT, KILL_CANCEL, KILL_PROTOCOL, KILL_TERMINATE };

/* A process task, the capi.arg of its future's np_ncall. */
typedef struct {
    PyObject *payload;       /* bytes, the pickled call (kept: a requeued
                              * task is sent again) */
    PyObject *loads;         /* the core's loads (strong) */
    uint64_t id;
    int64_t timeout_ns;      /* 0: none */
    uint8_t status;          /* of the reply */
    char *reply;             /* malloc'd reply (pickle part after header) */
    size_t reply_len;
    char *msg;               /* the whole malloc'd message */
    int *fds;                /* the task's shared-memory buffers (memfds the
                              * worker opens through /proc): owned, closed
                              * once the worker is done with them */
    int nfds;
    int requeued;            /* its worker died before reading it: back in
                              * the pending list, its future RUNNING */
} proc_task;

typedef struct {
    np_chan *ch;             /* parent end, owned by chanobj */
    PyObject *chanobj;       /* the _Channel (GIL) */
    np_mutex send_lock;
    np_future *running;      /* strong; the one task sent and not answered */
    int64_t deadline;        /* of running: NP_FOREVER if none, or not
                              * started yet (ST_STARTED) */
    long pid;
    int state;
    int kill_reason;         /* why the manager was asked to kill it */
    int64_t left;            /* tasks before it retires; -1 unlimited */
    /* send_lock and core->mutex both held to write, either to read: */
    uint64_t gen;            /* bumped when its worker is gone: a send
                              * claimed before then must not happen */
    /* send_lock held: */
    uint64_t sent_id;        /* the last task sent whole (UINT64_MAX: none) */
    uint64_t sent_end;       /* where it ends in the channel's stream */
} proc_slot;

typedef struct {
    PyObject_HEAD
    np_state *st;
    np_mutex mutex;          /* everything below but the constants */
    proc_slot *slots;
    int nslots;              /* max_workers */
    int nlive;               /* LIVE or STOPPING */
    int nspawning;           /* spawn hooks in progress */
    np_future *head, *tail;  /* pending FIFO (task.base.next), strong refs */
    Py_ssize_t npending;
    uint64_t next_id;
    uint64_t completed;
    int startup_deaths;      /* workers in a row that died before reading
                              * anything of the task sent to them */
    /* The future the collector is completing (it has left its slot, and
     * is not done yet), and the collector's thread: a fork child fails it
     * too.  Written by the collector alone, read only in a fork child. */
    np_future *finishing;
    unsigned long finishing_thread;
    _Atomic int forked;      /* this is a fork child's copy of the pool */
    int closed;              /* shutdown: no new tasks */
    int collecting;          /* a thread is inside _collect */
    _Atomic int changed;     /* the set of live slots changed */
    int control_fd;          /* eventfd: wakes the collector */
    int64_t max_tasks;       /* per worker, -1 unlimited */
    PyObject *broken;        /* message (str) once broken, or NULL */
    PyObject *broken_cause;  /* or NULL */
    PyObject *spawn;         /* callable: start one worker (it calls _attach) */
    PyObject *broken_cls;    /* BrokenProcessPool */
    PyObject *loads;         /* loads(memoryview) -> the reply's object */
} proc_core;

#define CORE(op) ((proc_core *)(op))

/* procpool.c, for the collector.  The task of a process future. */
proc_task *np_proc_future_task(np_future *f);
/* Close the task's shared buffers: the worker has answered or is gone (the
 * thread that holds the core's reference to the task's future). */
void np_proc_task_close_fds(proc_task *t);
/* Close fds (skipping -1s) and free the PyMem_Raw array. */
void np_proc_close_fds(int *fds, int n);
/* Drop a reference the core held, from a thread that may lack the GIL. */
void np_proc_drop_ref(np_state *st, np_future *f, np_worker_ctx *ctx);
/* Tell slot s's worker to exit once it has read what came before. */
void np_proc_send_stop(proc_slot *s);
/* Feed slot s from the pending list until it runs something or the list is
 * empty (no core->mutex held; ctx says whether we hold the GIL). */
void np_proc_feed_slot(proc_core *c, proc_slot *s, np_worker_ctx *ctx);

/* The pending list links futures through task.base.next (an np_task *). */
static inline np_future *
next_future(np_future *f)
{
    np_task *t = f->task.base.next;
    return t ? NP_TASK_FUTURE(t) : NULL;
}

/* procpool.c: call the spawn hook (a new reference or NULL).  While it
 * runs, this thread is starting a worker: a fork it makes (the "fork"
 * start method) is one of our workers, not a user's child. */
PyObject *np_proc_call_spawn(proc_core *c);
int np_proc_in_spawn(void);

/* procpool.c, for procpool_workers.c. */
void np_proc_ring_control(proc_core *c);   /* wake the collector */
PyObject *np_proc_broken_exception(proc_core *c);
int np_proc_check_open(proc_core *c);
int np_proc_unlink_pending(proc_core *c, PyObject *f, int requeued_only);

/* procpool_workers.c: the manager's methods of the core. */
enum { ABANDON_CANCEL, ABANDON_FAIL, ABANDON_ALL };
void np_proc_abandon_pending(proc_core *c, int how);
/* core->mutex held: unlink the whole pending list and return it (its
 * references go to the caller). */
np_future *np_proc_take_pending(proc_core *c);
/* Fail every future of a list np_proc_take_pending returned with exc
 * (borrowed), or leave one alone that is done already (cancelled: waiters
 * told); drops the list's references.  GIL held, no lock. */
void np_proc_fail_list(proc_core *c, np_future *list, PyObject *exc);
PyObject *np_proc_attach(PyObject *op, PyObject *args);
PyObject *np_proc_slot_gone(PyObject *op, PyObject *args);
PyObject *np_proc_replace(PyObject *op, PyObject *ignored);
PyObject *np_proc_cancel_running(PyObject *op, PyObject *fut);
PyObject *np_proc_shutdown(PyObject *op, PyObject *args);
PyObject *np_proc_terminate(PyObject *op, PyObject *ignored);
PyObject *np_proc_set_broken(PyObject *op, PyObject *args);
PyObject *np_proc_forked(PyObject *op, PyObject *msg);
PyObject *np_proc_core_check_open(PyObject *op, PyObject *ignored);

/* procpool_collect.c: core._collect() */
PyObject *np_proc_collect(PyObject *op, PyObject *ignored);

#endif /* NP_PROCPOOL_H */
