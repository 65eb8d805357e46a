/*
 * np_pool.h -- the worker pool: a FIFO of intrusive tasks and the threads
 * that run them.  Plain C11 + pthreads; no Python.h.
 *
 * The pool does not create threads itself: it asks its owner through the
 * spawn hook, and the new thread calls np_pool_work().  This is what lets the
 * Python binding run workers as real threading.Thread objects (names,
 * threading.enumerate, current_thread, thread-locals) while the C tests use
 * bare pthreads.  The idle hooks let the binding drop the GIL only when a
 * worker is about to block, so a worker runs queued tasks back to back.
 *
 * Life of a worker thread:
 *
 *         spawn hook            np_pool_work()
 *   (reserved) -------> thread ----------------> RUN <-----------+
 *                                                 | queue empty  | task queued
 *                                                 v              |  (woken)
 *                                     idle_begin, IDLE (parked) -+
 *                                                 | closed and queue empty
 *                                                 v
 *                                               return
 *
 * Ownership: a task belongs to the pool from a successful np_pool_submit
 * until the worker calls task->release after task->run, or the pool hands it
 * back from np_pool_close / np_pool_take_orphans.
 */
#ifndef NP_POOL_H
#define NP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "np_sync.h"

typedef struct np_task np_task;
typedef struct np_pool np_pool;

struct np_task {
    np_task *next;                               /* pool-private link */
    /* Run the task.  It must not free the task: the worker still refers to
     * it (a fork at this moment must find it intact). */
    void (*run)(np_task *task, void *worker_arg);
    /* Called by the worker after run, without pool locks held; the task's
     * memory may be freed here.  NULL: nothing to do. */
    void (*release)(np_task *task, void *worker_arg);
};

typedef struct np_pool_hooks {
    /* Start one worker thread that calls np_pool_work(pool, arg).  Called
     * from np_pool_submit, without any pool lock held.  Return 0, or a
     * negative value if no thread could be started.  A hook that cannot
     * always tell may report a failure for a thread that did start (Python's
     * Thread.start() raises if a signal handler raises while it waits for
     * its new thread): the pool counts that thread when it comes into
     * np_pool_work.  Until then np_pool_join does not wait for it, so such
     * an owner must keep the pool alive while the thread lives (the Python
     * binding's threads hold the pool's owner). */
    int (*spawn)(np_pool *pool, void *ctx);
    /* Called by a worker, with no pool lock held, just before it blocks for
     * lack of work, and just after it wakes up to run a task.  Either may be
     * NULL. */
    void (*idle_begin)(void *worker_arg);
    void (*idle_end)(void *worker_arg);
    void *ctx;
} np_pool_hooks;

typedef struct np_pool_stats {
    size_t threads;      /* started or being started, not yet returned */
    size_t idle;         /* parked in np_pool_work */
    size_t queued;       /* submitted, not yet taken by a worker */
    uint64_t submitted;  /* accepted by np_pool_submit, ever */
    uint64_t started;    /* handed to task->run, ever */
    int closed;
} np_pool_stats;

/* A pool that runs at most max_workers threads (>= 1).  NULL if out of
 * memory.  hooks is copied. */
np_pool *np_pool_new(size_t max_workers, const np_pool_hooks *hooks);

/* Queue a task, waking one idle worker if there is one, else asking for one
 * more thread if fewer than max_workers exist.  Returns
 *   NP_OK       queued; some worker will run it
 *   NP_ECLOSED  the pool is closed; the task was not queued
 *   < 0         (the spawn hook's error) no thread exists or is starting to
 *               run the task, so it was taken back out: not queued.  Any
 *               other queued task (whose submitter got NP_OK while our
 *               reserved thread still counted) is stranded the same way and
 *               becomes an orphan: see np_pool_take_orphans.
 * A spawn failure while other workers exist is not an error: they will run
 * the task. */
int np_pool_submit(np_pool *pool, np_task *task);

/* Stop accepting tasks and wake every idle worker; workers return from
 * np_pool_work once the queue is empty.  If take_queued is non-zero the
 * queued tasks are removed and returned (a FIFO list linked by ->next, which
 * the caller now owns), so workers return as soon as their current task is
 * done.  Otherwise returns NULL and the queue is drained by the workers.
 * May be called more than once. */
np_task *np_pool_close(np_pool *pool, int take_queued);

/* The worker loop, called once by each thread the spawn hook started.
 * Returns when the pool is closed and its queue empty. */
void np_pool_work(np_pool *pool, void *worker_arg);

/* Block (not interruptibly) until every worker has returned from
 * np_pool_work.  The pool must be closed. */
void np_pool_join(np_pool *pool);

void np_pool_get_stats(np_pool *pool, np_pool_stats *out);

/* Free a closed pool whose workers have all returned. */
void np_pool_free(np_pool *pool);

/*
 * Fork.  The runtime registers pthread_atfork handlers for every live pool:
 * before fork() they take each pool's lock so the child sees a consistent
 * pool; in the child, a pool has no threads, its locks are new, and the tasks
 * that were queued or running in the parent are set aside as orphans (they
 * belong to the parent: running them again in the child would repeat their
 * side effects).  The pool stays open and spawns new workers on demand.
 * Exception: if the forking thread is itself one of the pool's workers (a
 * task, or a hook, called fork), it stays a worker in the child and keeps
 * its task, so the child's pool has that one thread.
 *
 * np_pool_take_orphans returns those tasks (a list linked by ->next, which the
 * caller now owns and must fail or release; tasks that were running are
 * included, and never had their run function finish in this process), and
 * the tasks stranded by a spawn failure (see np_pool_submit), or NULL.
 */
np_task *np_pool_take_orphans(np_pool *pool);

#endif /* NP_POOL_H */
