/* procpool_collect.c -- core._collect(): the ProcessPool's collector.
 *
 * The only reader of every worker channel.  It waits without the GIL in
 * np_chan_wait_any (the live workers plus the core's eventfd), completes
 * futures without the GIL (np_future_finish_native), hands each worker
 * that answered its next task, stops idle workers after shutdown, and
 * returns to the manager (procpool.h) when Python must act.
 */
#include "procpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

/* How long the collector stays idle before it drains the reclaim stack. */
#define IDLE_DRAIN_NS ((int64_t)1000000)   /* 1 ms */

/* What drain_slot found. */
enum { EV_NONE = 0, EV_GONE, EV_KILL, EV_INIT_FAILED };

static const char *const event_names[] = {NULL, "gone", "kill", "init_failed"};

/* The collector's view of the live slots, rebuilt when they change. */
typedef struct {
    np_chan **chans;
    int *idx;                 /* chans[j] is slot idx[j]'s */
    unsigned char *ready;     /* nchans + 1: the last is the eventfd */
    int nchans;
} watch_set;

static uint32_t
le32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
           (uint32_t)u[3] << 24;
}

/* A result whose large buffers are in shared memory (_shared.py) starts
 * with b"B", the worker's pid and n, then n times fd, size, read-only.
 * The header's length if it is one, 0 for a plain pickle (PROTO first),
 * -1 if it is malformed. */
enum { SHARED_HEAD = 9, SHARED_ENTRY = 13 };

static long
shared_header(const char *p, size_t len)
{
    if (len == 0 || p[0] != 'B') {
        return 0;
    }
    if (len < SHARED_HEAD) {
        return -1;
    }
    uint32_t n = le32(p + 5);
    if (n == 0 || n > 1024 || (len - SHARED_HEAD) / SHARED_ENTRY < n) {
        return -1;
    }
    return SHARED_HEAD + SHARED_ENTRY * (long)n;
}

/* Open a result's shared buffers (a valid header) through /proc/<worker
 * pid>/fd, before the worker hears from us again: it holds its fds until
 * it reads its next message, which we send after this.  They go to t->fds,
 * -1 for one that could not be opened (the worker was killed meanwhile),
 * which the loads function reports, as it does t->fds == NULL (no memory). */
static void
open_result_buffers(proc_task *t, const char *p)
{
    uint32_t pid = le32(p + 1), n = le32(p + 5);
    int *fds = PyMem_RawMalloc(n * sizeof *fds);
    for (uint32_t i = 0; fds != NULL && i < n; i++) {
        char path[64];
        int32_t fdnum = (int32_t)le32(p + SHARED_HEAD + SHARED_ENTRY * i);
        snprintf(path, sizeof path, "/proc/%u/fd/%d", (unsigned)pid, (int)fdnum);
        do {
            fds[i] = open(path, O_RDONLY | O_CLOEXEC);
        } while (fds[i] < 0 && errno == EINTR);
    }
    t->fds = fds;
    t->nfds = fds ? (int)n : 0;
}

/* One reply from slot s (msg malloc'd, len >= REPLY_HEADER; taken).
 * Completes its future and feeds the slot; or returns EV_INIT_FAILED (msg
 * kept in *init_msg for the manager) or EV_KILL (not the task we sent: the
 * stream cannot be trusted). */
static int
handle_reply(proc_core *c, proc_slot *s, char *msg, size_t len,
             np_worker_ctx *ctx, char **init_msg, size_t *init_len)
{
    uint64_t id = 0;
    for (int i = 0; i < 8; i++) {
        id |= (uint64_t)(unsigned char)msg[i] << (8 * i);
    }
    uint8_t status = (uint8_t)msg[8];
    if (status == ST_INIT_FAILED) {
        *init_msg = msg;
        *init_len = len;
        return EV_INIT_FAILED;
    }
    if (status == ST_RETIRED) {
        free(msg);
        return EV_NONE;   /* we send STOP ourselves; the worker only says so */
    }
    np_mutex_lock(&c->mutex);
    np_future *f = s->running;
    proc_task *t = f ? np_proc_future_task(f) : NULL;
    if (status == ST_STARTED && t != NULL && t->id == id && t->timeout_ns > 0 &&
        len == REPLY_HEADER) {
        s->deadline = np_monotonic_ns() + t->timeout_ns;   /* plan() sees it next */
        np_mutex_unlock(&c->mutex);
        free(msg);
        return EV_NONE;
    }
    long shared = shared_header(msg + REPLY_HEADER, len - REPLY_HEADER);
    if (t == NULL || t->id != id || status > ST_ERROR || shared < 0) {
        s->kill_reason = KILL_PROTOCOL;
        np_mutex_unlock(&c->mutex);
        free(msg);
        return EV_KILL;
    }
    s->running = NULL;
    c->completed++;
    c->startup_deaths = 0;
    c->finishing = f;   /* the core's reference, until np_proc_drop_ref */
    c->finishing_thread = (unsigned long)pthread_self();
    int stop = s->left == 0 || (c->closed && c->head == NULL);
    if (stop) {
        s->state = SLOT_STOPPING;
    }
    np_mutex_unlock(&c->mutex);
    /* The task's buffers (the worker has read or mapped them) are closed
     * once the future is finished: closing the last reference frees their
     * pages, which takes milliseconds for large ones. */
    int *task_fds = t->fds, task_nfds = t->nfds;
    t->fds = NULL;
    t->nfds = 0;
    if (shared > 0) {
        open_result_buffers(t, msg + REPLY_HEADER);
    }
    t->status = status;
    f->ncall->capi.failed = status == ST_ERROR;
    t->msg = msg;
    t->reply = msg + REPLY_HEADER;
    t->reply_len = len - REPLY_HEADER;
    if (stop) {
        np_proc_send_stop(s);
    }
    else {
        np_proc_feed_slot(c, s, ctx);   /* the worker gets its next task first */
    }
    np_future_finish_native(c->st, f, ctx);
    np_proc_close_fds(task_fds, task_nfds);
    c->finishing = NULL;   /* before the reference goes (a fork child reads it) */
    np_proc_drop_ref(c->st, f, ctx);
    return EV_NONE;
}

static int
slot_gone(proc_core *c, proc_slot *s)
{
    np_mutex_lock(&c->mutex);
    s->state = SLOT_GONE;
    np_mutex_unlock(&c->mutex);
    atomic_store(&c->changed, 1);
    return EV_GONE;
}

/* Read every message waiting on slot s's channel.  EV_NONE once it is
 * empty; EV_GONE when its worker has ended (everything it sent read);
 * EV_KILL for a message we cannot take (no memory for it, shorter than a
 * header): that worker must go. */
static int
drain_slot(proc_core *c, proc_slot *s, np_worker_ctx *ctx, char **init_msg,
           size_t *init_len)
{
    for (;;) {
        /* A done callback that forked, and we are its child: the channels
         * are the parent's (forgotten by _forked); read nothing more. */
        if (atomic_load_explicit(&c->forked, memory_order_relaxed)) {
            return EV_NONE;
        }
        size_t size;
        int r = np_chan_recv_size(s->ch, &size, 0);
        if (r == NP_ETIMEDOUT || r == NP_EINTR) {
            return EV_NONE;
        }
        if (r == NP_ECLOSED) {
            return slot_gone(c, s);
        }
        char *msg = r == NP_OK && size >= REPLY_HEADER ? malloc(size) : NULL;
        if (msg == NULL) {
            np_mutex_lock(&c->mutex);
            s->kill_reason = KILL_PROTOCOL;
            np_mutex_unlock(&c->mutex);
            return EV_KILL;
        }
        do {
            r = np_chan_recv_data(s->ch, msg, NP_FOREVER);
        } while (r == NP_EINTR);
        if (r != NP_OK) {   /* the worker ended part-way through it */
            free(msg);
            return slot_gone(c, s);
        }
        int ev = handle_reply(c, s, msg, size, ctx, init_msg, init_len);
        if (ev != EV_NONE) {
            return ev;
        }
    }
}

/* core->mutex held.  Rebuild w if the slots changed; stop idle workers
 * after shutdown; find an overdue task (EV_KILL, *slot) or the nearest
 * deadline.  *done: shut down, nothing pending, no worker left. */
static int
plan(proc_core *c, watch_set *w, int64_t *deadline, int *slot, int *done)
{
    if (atomic_exchange(&c->changed, 0)) {
        w->nchans = 0;
        for (int i = 0; i < c->nslots; i++) {
            if (c->slots[i].state == SLOT_LIVE ||
                c->slots[i].state == SLOT_STOPPING) {
                w->chans[w->nchans] = c->slots[i].ch;
                w->idx[w->nchans++] = i;
            }
        }
    }
    int64_t now = np_monotonic_ns();
    *deadline = NP_FOREVER;
    for (int j = 0; j < w->nchans; j++) {
        proc_slot *s = &c->slots[w->idx[j]];
        if (c->closed && c->head == NULL && s->state == SLOT_LIVE &&
            s->running == NULL) {
            s->state = SLOT_STOPPING;   /* shut down: nothing left for it */
            np_mutex_unlock(&c->mutex);
            np_proc_send_stop(s);
            np_mutex_lock(&c->mutex);
        }
        if (s->running != NULL && s->kill_reason == KILL_NONE) {
            if (s->deadline <= now) {
                s->kill_reason = KILL_TIMEOUT;
                *slot = w->idx[j];
                return EV_KILL;
            }
            if (s->deadline < *deadline) {
                *deadline = s->deadline;
            }
        }
    }
    *done = c->closed && c->head == NULL && c->nlive == 0 && c->nspawning == 0;
    return EV_NONE;
}

/* core._collect() -> event or None.  Waits (GIL released) and handles
 * replies until something needs the manager:
 *   ("gone", slot, pid)         the worker ended: reap it, then _slot_gone
 *   ("kill", slot, pid)         kill this worker (overdue, or it broke the
 *                               protocol); its death comes as "gone"
 *   ("init_failed", slot, pid, bytes)  its initializer raised
 * None: shut down and every worker stopped: the collector is done. */
PyObject *
np_proc_collect(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    proc_core *c = CORE(op);
    np_mutex_lock(&c->mutex);
    if (c->collecting) {
        np_mutex_unlock(&c->mutex);
        PyErr_SetString(PyExc_RuntimeError, "another thread is collecting");
        return NULL;
    }
    c->collecting = 1;
    np_mutex_unlock(&c->mutex);

    size_t n = (size_t)c->nslots;
    watch_set w = {PyMem_Calloc(n, sizeof(np_chan *)), PyMem_Calloc(n, sizeof(int)),
                   PyMem_Calloc(n + 1, 1), 0};
    PyObject *result = NULL;
    if (w.chans == NULL || w.idx == NULL || w.ready == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    np_worker_ctx ctx = {PyEval_SaveThread(), NULL};
    int ev = EV_NONE, slot = -1, done = 0, err = 0;
    char *init_msg = NULL;
    size_t init_len = 0;
    atomic_store(&c->changed, 1);
    while (ev == EV_NONE) {
        if (atomic_load_explicit(&c->forked, memory_order_relaxed)) {
            break;   /* a fork child's copy (see drain_slot): done, None */
        }
        int64_t deadline;
        np_mutex_lock(&c->mutex);
        ev = plan(c, &w, &deadline, &slot, &done);
        np_mutex_unlock(&c->mutex);
        if (ev != EV_NONE || done) {
            break;
        }
        /* Finished futures we let go of without the GIL wait on the
         * reclaim stack for a GIL holder (native_task.c); the next submit
         * drains it, but none may come.  Once we have been idle for
         * IDLE_DRAIN_NS we take the GIL and drain it ourselves, so that a
         * task's objects go soon after it is done, as in the stdlib.  A
         * steady flow of tasks never waits that long: it pays nothing. */
        int drain_due = 0;
        if (atomic_load_explicit(&c->st->reclaim, memory_order_relaxed) != NULL) {
            int64_t due = np_monotonic_ns() + IDLE_DRAIN_NS;
            if (due < deadline) {
                deadline = due;
                drain_due = 1;
            }
        }
        int r = np_chan_wait_any(w.chans, (size_t)w.nchans, c->control_fd,
                                 w.ready, deadline);
        if (r == NP_ETIMEDOUT && drain_due) {
            np_worker_hold_gil(&ctx);
            np_reclaim_drain(c->st);   /* may run finalizers: no lock held */
            np_worker_drop_gil(&ctx);
            continue;
        }
        if (r == NP_ETIMEDOUT || r == NP_EINTR) {
            continue;
        }
        if (r < 0) {
            err = r == NP_ENOMEM ? ENOMEM : errno;
            break;
        }
        if (w.ready[w.nchans]) {
            uint64_t v;
            while (read(c->control_fd, &v, sizeof v) < 0 && errno == EINTR) {
            }
        }
        for (int j = 0; j < w.nchans && ev == EV_NONE; j++) {
            if (w.ready[j] && !atomic_load_explicit(&c->forked, memory_order_relaxed)) {
                slot = w.idx[j];
                ev = drain_slot(c, &c->slots[slot], &ctx, &init_msg, &init_len);
            }
        }
    }
    np_worker_hold_gil(&ctx);
    np_reclaim_drain(c->st);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    }
    else if (ev == EV_NONE) {
        result = Py_NewRef(Py_None);
    }
    else if (init_msg != NULL) {
        PyObject *b = PyBytes_FromStringAndSize(
            init_msg + REPLY_HEADER, (Py_ssize_t)(init_len - REPLY_HEADER));
        free(init_msg);
        result = b ? Py_BuildValue("(silN)", event_names[ev], slot,
                                   c->slots[slot].pid, b)
                   : NULL;
    }
    else {
        result = Py_BuildValue("(sil)", event_names[ev], slot, c->slots[slot].pid);
    }
out:
    PyMem_Free(w.chans);
    PyMem_Free(w.idx);
    PyMem_Free(w.ready);
    np_mutex_lock(&c->mutex);
    c->collecting = 0;
    np_mutex_unlock(&c->mutex);
    return result;
}
