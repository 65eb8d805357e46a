/* np_pool.c -- the worker pool.  See np_pool.h for the contract.
 *
 * One pthread mutex per pool guards everything in struct np_pool and the
 * idle/woken/current fields of its workers.  It is only ever held for a few
 * pointer moves: never across a hook, a task's run or release, or a spawn.
 * (The binding's hooks take the GIL; holding our lock there would deadlock
 * against a thread that holds the GIL and is submitting.)
 *
 * Lock order: registry_lock, then pool->lock (only the fork handlers take
 * both).
 */
#define _GNU_SOURCE
#include "np_pool.h"

#include <pthread.h>
#include <stdlib.h>

/* An idle worker parks on its own condition variable, so a submit wakes
 * exactly the worker it chose (the most recently idle one: its cache is
 * warm) and never signals a thread that is not waiting.  `woken` is the
 * predicate, set under the pool lock by whoever pops the worker from the idle
 * stack; a spurious wakeup finds it still 0 and waits again. */
typedef struct np_worker {
    struct np_worker *next_idle;
    struct np_worker *prev_all, *next_all;  /* every worker inside np_pool_work */
    pthread_cond_t cond;
    pthread_t thread;
    int woken;
    /* The task inside run(), for the fork handlers; it stays valid until
     * release, which comes after current is cleared. */
    np_task *_Atomic current;
} np_worker;

struct np_pool {
    pthread_mutex_t lock;
    pthread_cond_t joined;        /* broadcast when threads drops to 0 */
    np_task *head, *tail;         /* FIFO queue */
    size_t queued;
    size_t max_workers;
    size_t threads;               /* started or reserved, not yet returned */
    size_t spawning;              /* of those, reserved and not yet come in */
    size_t idle;
    np_worker *idle_top;          /* LIFO stack of parked workers */
    np_worker *all;
    np_task *orphans;             /* see np_pool_take_orphans */
    int closed;
    uint64_t submitted, started;
    np_pool_hooks hooks;
    np_pool *reg_prev, *reg_next; /* registry of live pools, for fork */
};

/* ---- pthread wrappers: impossible errors abort (libuv's rule) ---------- */

static void
lock_pool(np_pool *p)
{
    if (pthread_mutex_lock(&p->lock) != 0) {
        abort();
    }
}

static void
unlock_pool(np_pool *p)
{
    if (pthread_mutex_unlock(&p->lock) != 0) {
        abort();
    }
}

static void
cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    if (pthread_cond_wait(c, m) != 0) {
        abort();
    }
}

static void
cond_signal(pthread_cond_t *c)
{
    if (pthread_cond_signal(c) != 0) {
        abort();
    }
}

/* ---- the registry of live pools, and fork ----------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static np_pool *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Before fork: hold every pool lock, so that no pool is caught half-way
 * through a queue operation in the child. */
static void
atfork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (np_pool *p = registry; p != NULL; p = p->reg_next) {
        lock_pool(p);
    }
}

static void
atfork_parent(void)
{
    for (np_pool *p = registry; p != NULL; p = p->reg_next) {
        unlock_pool(p);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void
append_list(np_task **list, np_task *head)
{
    while (*list != NULL) {
        list = &(*list)->next;
    }
    *list = head;
}

/* In the child only the forking thread exists.  Every other worker is gone,
 * so its running task becomes an orphan, and so does every queued task: they
 * were the parent's work.  If the forking thread is itself one of this
 * pool's workers (a task called fork), it stays a worker and keeps its
 * task. */
static void
atfork_child(void)
{
    pthread_t self = pthread_self();
    for (np_pool *p = registry; p != NULL; p = p->reg_next) {
        np_worker *keep = NULL;
        int keep_idle = 0;
        for (np_worker *w = p->all; w != NULL; w = w->next_all) {
            np_task *cur = atomic_load_explicit(&w->current, memory_order_relaxed);
            if (pthread_equal(w->thread, self)) {
                keep = w;
            }
            else if (cur != NULL) {
                cur->next = NULL;
                append_list(&p->orphans, cur);
            }
        }
        /* The forking worker may be on the idle stack (a fork from its
         * idle_begin hook): it must stay there, or nothing wakes it. */
        for (np_worker *w = p->idle_top; w != NULL; w = w->next_idle) {
            if (w == keep) {
                keep_idle = 1;
            }
        }
        append_list(&p->orphans, p->head);
        p->head = p->tail = NULL;
        p->queued = 0;
        p->idle_top = NULL;
        p->idle = 0;
        p->all = keep;
        p->threads = keep != NULL;
        p->spawning = 0;          /* the parent's spawns start no thread here */
        if (keep != NULL) {
            keep->prev_all = keep->next_all = NULL;
            if (keep_idle) {
                keep->next_idle = NULL;
                p->idle_top = keep;
                p->idle = 1;
            }
        }
        /* Waiters on `joined` were threads of the parent. */
        pthread_cond_init(&p->joined, NULL);
        unlock_pool(p);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void
register_atfork(void)
{
    if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0) {
        abort();
    }
}

/* ---- the pool ---------------------------------------------------------- */

np_pool *
np_pool_new(size_t max_workers, const np_pool_hooks *hooks)
{
    if (max_workers == 0 || hooks == NULL || hooks->spawn == NULL) {
        return NULL;
    }
    if (pthread_once(&atfork_once, register_atfork) != 0) {
        abort();
    }
    np_pool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->joined, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    p->max_workers = max_workers;
    p->hooks = *hooks;

    pthread_mutex_lock(&registry_lock);
    p->reg_next = registry;
    if (registry != NULL) {
        registry->reg_prev = p;
    }
    registry = p;
    pthread_mutex_unlock(&registry_lock);
    return p;
}

void
np_pool_free(np_pool *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    if (p->reg_prev != NULL) {
        p->reg_prev->reg_next = p->reg_next;
    }
    else {
        registry = p->reg_next;
    }
    if (p->reg_next != NULL) {
        p->reg_next->reg_prev = p->reg_prev;
    }
    pthread_mutex_unlock(&registry_lock);
    /* Callers guarantee closed, no threads, queue and orphans taken. */
    pthread_cond_destroy(&p->joined);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Remove one task from the queue (the rare spawn-failure path). */
static int
unlink_queued(np_pool *p, np_task *task)
{
    np_task **link = &p->head, *prev = NULL;
    while (*link != NULL && *link != task) {
        prev = *link;
        link = &(*link)->next;
    }
    if (*link == NULL) {
        return 0;
    }
    *link = task->next;
    if (p->tail == task) {
        p->tail = prev;
    }
    p->queued--;
    return 1;
}

int
np_pool_submit(np_pool *p, np_task *task)
{
    int spawn = 0;
    task->next = NULL;
    lock_pool(p);
    if (p->closed) {
        unlock_pool(p);
        return NP_ECLOSED;
    }
    if (p->tail != NULL) {
        p->tail->next = task;
    }
    else {
        p->head = task;
    }
    p->tail = task;
    p->queued++;
    p->submitted++;
    /* Wake a worker only if one is parked (and then exactly one); else grow
     * the pool.  A busy worker will find the task when its current one ends,
     * so neither is needed when all workers are busy at max_workers. */
    if (p->idle_top != NULL) {
        np_worker *w = p->idle_top;
        p->idle_top = w->next_idle;
        p->idle--;
        w->woken = 1;
        cond_signal(&w->cond);
    }
    else if (p->threads < p->max_workers) {
        p->threads++;             /* reserved until the thread returns */
        p->spawning++;            /* until the thread comes in */
        spawn = 1;
    }
    unlock_pool(p);
    if (!spawn) {
        return NP_OK;
    }

    int r = p->hooks.spawn(p, p->hooks.ctx);
    if (r >= 0) {
        return NP_OK;
    }
    lock_pool(p);
    if (p->spawning > 0) {
        /* Give up a reservation that no thread has come in on. */
        p->spawning--;
        p->threads--;
    }
    /* Else a thread already came in on it: the hook failed after starting
     * it (see np_pool_hooks.spawn), and it is counted and will run the
     * task.  (Reservations are interchangeable: if the thread we started
     * comes in later, it finds none left and counts itself.) */
    if (p->threads > 0) {
        /* Others will run it; the pool is merely smaller than asked. */
        unlock_pool(p);
        return NP_OK;
    }
    /* Nobody can ever run what is queued.  Take our task back; any other
     * queued task (whose submitter returned NP_OK while our reservation still
     * counted) becomes an orphan for the owner to fail. */
    if (!unlink_queued(p, task)) {
        /* Already gone: a close(take_queued) took it, or a worker that has
         * since exited ran it.  Either way it is not ours to fail. */
        pthread_cond_broadcast(&p->joined);
        unlock_pool(p);
        return NP_OK;
    }
    p->submitted--;
    append_list(&p->orphans, p->head);
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->joined);
    unlock_pool(p);
    return r;
}

np_task *
np_pool_close(np_pool *p, int take_queued)
{
    np_task *taken = NULL;
    lock_pool(p);
    p->closed = 1;
    if (take_queued) {
        taken = p->head;
        p->head = p->tail = NULL;
        p->queued = 0;
    }
    while (p->idle_top != NULL) {
        np_worker *w = p->idle_top;
        p->idle_top = w->next_idle;
        w->woken = 1;
        cond_signal(&w->cond);
    }
    p->idle = 0;
    unlock_pool(p);
    return taken;
}

np_task *
np_pool_take_orphans(np_pool *p)
{
    lock_pool(p);
    np_task *o = p->orphans;
    p->orphans = NULL;
    unlock_pool(p);
    return o;
}

void
np_pool_work(np_pool *p, void *arg)
{
    np_worker w = {0};
    np_task *prev = NULL;     /* finished, not yet released */
    int parked_hooks = 0;     /* idle_begin called, idle_end not yet */
    /* Copied now: once we leave the thread count, the owner may free p. */
    void (*idle_end)(void *) = p->hooks.idle_end;

    if (pthread_cond_init(&w.cond, NULL) != 0) {
        abort();
    }
    w.thread = pthread_self();

    lock_pool(p);
    /* Come in on a spawn's reservation; with none left, our spawn hook
     * reported a failure after starting us and gave ours up: count
     * ourselves, so that the count stays the threads that will return. */
    if (p->spawning > 0) {
        p->spawning--;
    }
    else {
        p->threads++;
    }
    w.next_all = p->all;
    if (p->all != NULL) {
        p->all->prev_all = &w;
    }
    p->all = &w;

    for (;;) {
        /* Lock held here, and we are not on the idle stack. */
        if (p->head != NULL) {
            np_task *t = p->head;
            p->head = t->next;
            if (p->head == NULL) {
                p->tail = NULL;
            }
            p->queued--;
            p->started++;
            atomic_store_explicit(&w.current, t, memory_order_relaxed);
            unlock_pool(p);
            if (prev != NULL && prev->release != NULL) {
                prev->release(prev, arg);
            }
            if (parked_hooks) {
                if (p->hooks.idle_end != NULL) {
                    p->hooks.idle_end(arg);
                }
                parked_hooks = 0;
            }
            t->run(t, arg);
            /* Done: a fork from now on must not orphan it.  Atomic because
             * the fork handlers read it while we may be outside the lock. */
            atomic_store_explicit(&w.current, NULL, memory_order_relaxed);
            prev = t;
            lock_pool(p);
            continue;
        }
        if (prev != NULL) {
            /* Release outside the lock (it may run arbitrary code, even
             * submit), then look at the queue again. */
            unlock_pool(p);
            if (prev->release != NULL) {
                prev->release(prev, arg);
            }
            prev = NULL;
            lock_pool(p);
            continue;
        }
        if (p->closed) {
            break;
        }
        /* Nothing to do: go on the idle stack *before* dropping the lock for
         * idle_begin, so a submit in that window wakes us instead of
         * starting a new thread; `woken` remembers it. */
        w.woken = 0;
        w.next_idle = p->idle_top;
        p->idle_top = &w;
        p->idle++;
        if (!parked_hooks) {
            unlock_pool(p);
            if (p->hooks.idle_begin != NULL) {
                p->hooks.idle_begin(arg);
            }
            parked_hooks = 1;
            lock_pool(p);
        }
        while (!w.woken) {
            cond_wait(&w.cond, &p->lock);
        }
        /* Whoever set woken also popped us from the idle stack. */
    }

    if (w.prev_all != NULL) {
        w.prev_all->next_all = w.next_all;
    }
    else if (p->all == &w) {
        p->all = w.next_all;
    }
    if (w.next_all != NULL) {
        w.next_all->prev_all = w.prev_all;
    }
    p->threads--;
    if (p->threads == 0) {
        pthread_cond_broadcast(&p->joined);
    }
    unlock_pool(p);
    /* p may be freed from here on. */
    pthread_cond_destroy(&w.cond);
    if (parked_hooks && idle_end != NULL) {
        idle_end(arg);   /* return in the state we were called in */
    }
}

void
np_pool_join(np_pool *p)
{
    lock_pool(p);
    while (p->threads > 0) {
        cond_wait(&p->joined, &p->lock);
    }
    unlock_pool(p);
}

void
np_pool_get_stats(np_pool *p, np_pool_stats *out)
{
    lock_pool(p);
    out->threads = p->threads;
    out->idle = p->idle;
    out->queued = p->queued;
    out->submitted = p->submitted;
    out->started = p->started;
    out->closed = p->closed;
    unlock_pool(p);
}
