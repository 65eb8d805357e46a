/* np_chan.c -- the cross-process message channel: messages and waits.
 * See np_chan.h; setting up and tearing down is in np_chan_setup.c. */
#include "np_chan_impl.h"

/* ---- small helpers --------------------------------------------------------- */

void
npch_close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static inline uint64_t
pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

void
npch_ring_bell(int fd)
{
    uint64_t one = 1;
    /* Cannot fail short of EBADF (a bug) or a counter at 2^64-2. */
    if (write(fd, &one, sizeof one) < 0) {
    }
}

static void
drain_bell(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0) {   /* EAGAIN: nothing rung */
    }
}

/* Copy n bytes between buf and the ring at position pos, wrapping around
 * the end of the data area. */
static void
ring_copy(np_chan *ch, unsigned char *data, uint64_t pos, void *buf,
          uint64_t n, int into_ring)
{
    uint64_t off = pos & ch->mask, first = ch->cap - off;
    unsigned char *b = buf;
    if (first > n) {
        first = n;
    }
    if (into_ring) {
        memcpy(data + off, b, first);
        memcpy(data, b + first, n - first);   /* n > 0: b is not NULL */
    }
    else {
        memcpy(b, data + off, first);
        memcpy(b + first, data, n - first);
    }
}

int
npch_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* The peer is gone: closed if its flag says so, else dead.  Sticky. */
void
npch_mark_gone(np_chan *ch)
{
    int alive = NP_CHAN_PEER_ALIVE;
    /* acquire: pairs with np_chan_close's store, so everything the peer
     * published before closing is visible once we see the flag. */
    int closed = atomic_load_explicit(&ch->shm->closed[1 - ch->side],
                                      memory_order_acquire);
    atomic_compare_exchange_strong(&ch->peer_state, &alive,
                                   closed ? NP_CHAN_PEER_CLOSED
                                          : NP_CHAN_PEER_DEAD);
}

/* "The peer will never read or write again": its closed flag, or a death
 * seen earlier on the watch fd. */
int
npch_peer_gone(np_chan *ch)
{
    if (atomic_load_explicit(&ch->peer_state, memory_order_relaxed) !=
        NP_CHAN_PEER_ALIVE) {
        return 1;
    }
    if (atomic_load_explicit(&ch->shm->closed[1 - ch->side],
                             memory_order_acquire)) {
        npch_mark_gone(ch);
        return 1;
    }
    return 0;
}

int
npch_watch_fired(short revents)
{
    /* A pidfd reports POLLIN when the process ends; a pipe whose last
     * writer closed reports POLLHUP (nobody ever writes into it). */
    return (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* ppoll until the deadline; the timeout is relative, so recompute it. */
static int
poll_until(struct pollfd *fds, nfds_t n, int64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != NP_FOREVER) {
        int64_t rel = deadline_ns - np_monotonic_ns();
        if (rel < 0) {
            rel = 0;
        }
        ts.tv_sec = (time_t)(rel / 1000000000);
        ts.tv_nsec = (long)(rel % 1000000000);
        tsp = &ts;
    }
    return ppoll(fds, n, tsp, NULL);
}

/* ---- waiting --------------------------------------------------------------- */

enum { WAIT_DATA, WAIT_SPACE };

/* The condition a waiter waits for, read fresh from the segment.  seq_cst
 * loads (plain loads on x86): in wait_ring they are the second half of the
 * Dekker pair "store my flag, load your index"; they are also acquire, so
 * the bytes before head (or the reader's done with them before tail) are
 * visible. */
static int
ready_now(np_chan *ch, int kind, uint64_t need)
{
    if (kind == WAIT_DATA) {
        return atomic_load(&ch->rx.r.ctl->head) != ch->rx.pos;
    }
    uint64_t tail = atomic_load(&ch->tx.r.ctl->tail);
    return ch->cap - (ch->tx.head - tail) >= need;
}

/* Poll until one of chans is ready (kind, need), for at most the spin
 * budget of chans[0] and never past the deadline.  1 if one is. */
static int
spin_until_ready(np_chan *const *chans, size_t n, int kind, uint64_t need,
                 int64_t deadline_ns)
{
    int64_t spin = atomic_load_explicit(&chans[0]->spin_ns, memory_order_relaxed);
    if (spin <= 0) {
        return 0;
    }
    int64_t end = np_monotonic_ns() + spin;
    if (end > deadline_ns) {
        end = deadline_ns;
    }
    for (unsigned i = 1;; i++) {
        for (size_t j = 0; j < n; j++) {
            if (ready_now(chans[j], kind, need)) {
                return 1;
            }
        }
        np_cpu_relax();
        /* Now and then read the clock and yield, so that a peer sharing our
         * CPU runs now rather than after our whole spin (as np_sem does). */
        if ((i & 63) == 0) {
            if (np_monotonic_ns() >= end) {
                return 0;
            }
            sched_yield();
        }
    }
}

/*
 * Wait until ready_now(kind, need), for the reader of ch->rx (WAIT_DATA) or
 * the writer of ch->tx (WAIT_SPACE).  Returns NP_OK when the condition holds
 * (the caller re-reads the ring), else NP_ECLOSED, NP_ETIMEDOUT or NP_EINTR.
 * *spun: spin at most once per wait: a waiter woken without its condition
 * (a stale ring) is in no hurry.  The callers reset it after progress, so
 * each chunk of a long message gets its spin.
 */
static int
wait_ring(np_chan *ch, int kind, uint64_t need, int64_t deadline_ns, int *spun)
{
    if (!*spun) {
        *spun = 1;
        if (spin_until_ready(&ch, 1, kind, need, deadline_ns)) {
            return NP_OK;
        }
    }
    ring_view *rv = kind == WAIT_DATA ? &ch->rx.r : &ch->tx.r;
    _Atomic uint32_t *flag = kind == WAIT_DATA ? &rv->ctl->reader_sleeping
                                               : &rv->ctl->writer_sleeping;
    counter *sleeps = kind == WAIT_DATA ? &ch->rx.sleeps : &ch->tx.sleeps;
    for (;;) {
        /* The peer's closed flag (or death) is checked before the ring, so
         * that what it published before closing is seen, then reported. */
        if (npch_peer_gone(ch)) {
            return ready_now(ch, kind, need) ? NP_OK : NP_ECLOSED;
        }
        if (deadline_ns != NP_FOREVER && np_monotonic_ns() >= deadline_ns) {
            return ready_now(ch, kind, need) ? NP_OK : NP_ETIMEDOUT;
        }
        /* Announce, re-check, sleep.  Our seq_cst store of the flag and
         * load of the index pair with the peer's seq_cst store of the index
         * and load of the flag: one of us sees the other's store (np_sem.h
         * has the argument).  No standalone fences: TSan cannot model them. */
        if (kind == WAIT_SPACE) {
            atomic_store_explicit(&rv->ctl->writer_need, need,
                                  memory_order_relaxed);
        }
        atomic_store(flag, 1);
        if (ready_now(ch, kind, need)) {
            atomic_store_explicit(flag, 0, memory_order_relaxed);
            return NP_OK;
        }
        if (atomic_load(&ch->shm->closed[1 - ch->side])) {
            atomic_store_explicit(flag, 0, memory_order_relaxed);
            continue;   /* npch_peer_gone() reports it, after a last look */
        }
        struct pollfd fds[2] = {
            {rv->sleep_bell, POLLIN, 0},
            {ch->watch_fd, POLLIN, 0},   /* -1: ignored by ppoll */
        };
        count(sleeps);
        int rc = poll_until(fds, 2, deadline_ns);
        int err = rc < 0 ? errno : 0;
        /* Whoever rang cleared the flag already; after a timeout, a signal
         * or a death we clear it ourselves.  A ring that raced with this
         * leaves a count in the eventfd: one spurious wakeup later. */
        atomic_store_explicit(flag, 0, memory_order_relaxed);
        if (rc > 0 && fds[0].revents) {
            drain_bell(rv->sleep_bell);
        }
        if (rc > 0 && npch_watch_fired(fds[1].revents)) {
            npch_mark_gone(ch);
        }
        if (ready_now(ch, kind, need)) {
            return NP_OK;
        }
        if (rc < 0) {
            if (err == EINTR) {
                return NP_EINTR;
            }
            abort();   /* EFAULT/EINVAL/ENOMEM: nothing sane to do */
        }
    }
}

/* Called right after a seq_cst store of head: wake the reader if it
 * announced that it sleeps.  The exchange clears the flag, so the rest of a
 * burst rings nothing. */
static void
wake_reader(np_chan *ch)
{
    ring_ctl *c = ch->tx.r.ctl;
    if (atomic_load(&c->reader_sleeping) &&
        atomic_exchange(&c->reader_sleeping, 0)) {
        npch_ring_bell(ch->tx.r.peer_bell);
        count(&ch->tx.wakes);
    }
}

/* Called right after a seq_cst store of tail: wake the writer if it sleeps
 * and now has the room it asked for.  If not yet, a later consume will (an
 * empty ring satisfies any need <= cap). */
static void
wake_writer(np_chan *ch)
{
    ring_ctl *c = ch->rx.r.ctl;
    if (!atomic_load(&c->writer_sleeping)) {
        return;
    }
    /* The flag's seq_cst store came after the need's: we see that need. */
    uint64_t need = atomic_load_explicit(&c->writer_need, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&c->head, memory_order_relaxed);
    if (ch->cap - (head - ch->rx.published) >= need &&
        atomic_exchange(&c->writer_sleeping, 0)) {
        npch_ring_bell(ch->rx.r.peer_bell);
        count(&ch->rx.wakes);
    }
}

/* ---- sending --------------------------------------------------------------- */

/* Copy bytes [from, from + n) of the framed message into the ring at
 * tx.head.  Padding is skipped, not written: the reader skips it too. */
static void
tx_copy(np_chan *ch, const struct iovec *iov, int iovcnt, uint64_t from,
        uint64_t n)
{
    unsigned char *data = ch->tx.r.data;
    uint64_t end = from + n, base = ch->tx.head - from;   /* ring pos of 0 */
    if (from < FRAME_HDR) {
        uint64_t hdr = ch->tx.len;
        uint64_t k = (end < FRAME_HDR ? end : FRAME_HDR) - from;
        ring_copy(ch, data, base + from, (unsigned char *)&hdr + from, k, 1);
    }
    uint64_t seg = FRAME_HDR;   /* frame offset of iov[i] */
    for (int i = 0; i < iovcnt && seg < end; i++) {
        uint64_t len = iov[i].iov_len, lo = seg, hi = seg + len;
        if (lo < from) {
            lo = from;
        }
        if (hi > end) {
            hi = end;
        }
        if (lo < hi) {
            ring_copy(ch, data, base + lo,
                      (unsigned char *)iov[i].iov_base + (lo - seg), hi - lo, 1);
        }
        seg += len;
    }
}

int
np_chan_sendv(np_chan *ch, const struct iovec *iov, int iovcnt,
              int64_t deadline_ns)
{
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > MAX_MSG - total) {
            return NP_ENOMEM;   /* no ring could carry it */
        }
        total += iov[i].iov_len;
    }
    if (!ch->tx.active) {
        ch->tx.active = 1;
        ch->tx.len = total;
        ch->tx.frame = FRAME_HDR + pad8(total);
        ch->tx.done = 0;
    }
    else if (ch->tx.len != total) {
        abort();   /* resumed with other data: the stream would be corrupt */
    }
    if (npch_peer_gone(ch)) {
        if (ch->tx.done == 0) {
            ch->tx.active = 0;
        }
        return NP_ECLOSED;
    }
    int spun = 0;
    for (;;) {
        uint64_t left = ch->tx.frame - ch->tx.done;
        /* A message that fits goes in whole, so the reader wakes once for
         * it; a longer one streams, CHUNK (or a quarter ring) at a time. */
        uint64_t need, step = ch->cap / 4 < CHUNK ? ch->cap / 4 : CHUNK;
        if (ch->tx.done == 0 && ch->tx.frame <= ch->cap) {
            need = step = ch->tx.frame;
        }
        else {
            need = left < step ? left : step;
        }
        uint64_t room = ch->cap - (ch->tx.head - ch->tx.tail_cache);
        if (room < need) {
            ch->tx.tail_cache = atomic_load_explicit(&ch->tx.r.ctl->tail,
                                                     memory_order_acquire);
            room = ch->cap - (ch->tx.head - ch->tx.tail_cache);
        }
        if (room >= need) {
            uint64_t n = room < left ? room : left;
            if (n > step) {
                n = step;
            }
            tx_copy(ch, iov, iovcnt, ch->tx.done, n);
            ch->tx.head += n;
            ch->tx.done += n;
            /* seq_cst (so also release: the bytes are visible before the
             * new head): the store half of the wakeup protocol. */
            atomic_store(&ch->tx.r.ctl->head, ch->tx.head);
            wake_reader(ch);
            if (ch->tx.done == ch->tx.frame) {
                ch->tx.active = 0;
                count(&ch->tx.sent);
                return NP_OK;
            }
            spun = 0;   /* progress: the next wait is a new one, spin again */
            continue;
        }
        int r = wait_ring(ch, WAIT_SPACE, need, deadline_ns, &spun);
        if (r != NP_OK) {
            if (ch->tx.done == 0) {
                ch->tx.active = 0;   /* nothing went out: not started */
            }
            return r;
        }
    }
}

int
np_chan_send_pending(const np_chan *ch)
{
    return ch->tx.active;
}

/* ---- receiving ------------------------------------------------------------- */

int
np_chan_recv_size(np_chan *ch, size_t *size, int64_t deadline_ns)
{
    if (ch->rx.active) {
        *size = (size_t)ch->rx.len;
        return NP_OK;
    }
    int spun = 0;
    for (;;) {
        if (ch->rx.head_cache == ch->rx.pos) {
            ch->rx.head_cache = atomic_load_explicit(&ch->rx.r.ctl->head,
                                                     memory_order_acquire);
        }
        uint64_t avail = ch->rx.head_cache - ch->rx.pos;
        if (avail > 0 && avail < FRAME_HDR) {
            /* Headers go out whole, so only a scribbled segment (a crashing
             * peer's wild store) gets here: trust nothing further. */
            atomic_store(&ch->peer_state, NP_CHAN_PEER_DEAD);
            return NP_ECLOSED;
        }
        if (avail >= FRAME_HDR) {
            uint64_t len;
            ring_copy(ch, ch->rx.r.data, ch->rx.pos, &len, sizeof len, 0);
            if (len > MAX_MSG || avail > ch->cap) {   /* scribbled, as above */
                atomic_store(&ch->peer_state, NP_CHAN_PEER_DEAD);
                return NP_ECLOSED;
            }
            /* The header is consumed locally; the tail is published with
             * the payload, one store per message. */
            ch->rx.pos += FRAME_HDR;
            ch->rx.active = 1;
            ch->rx.len = len;
            ch->rx.frame = FRAME_HDR + pad8(len);
            ch->rx.done = FRAME_HDR;
            *size = (size_t)len;
            return NP_OK;
        }
        int r = wait_ring(ch, WAIT_DATA, 0, deadline_ns, &spun);
        if (r != NP_OK) {
            return r;
        }
    }
}

int
np_chan_recv_data(np_chan *ch, void *buf, int64_t deadline_ns)
{
    if (!ch->rx.active) {
        abort();   /* np_chan_recv_size did not start a message */
    }
    int spun = 0;
    for (;;) {
        uint64_t left = ch->rx.frame - ch->rx.done;
        if (ch->rx.head_cache - ch->rx.pos < left) {
            ch->rx.head_cache = atomic_load_explicit(&ch->rx.r.ctl->head,
                                                     memory_order_acquire);
        }
        uint64_t avail = ch->rx.head_cache - ch->rx.pos;
        uint64_t n = avail < left ? avail : left;
        if (n > CHUNK) {
            n = CHUNK;   /* publish as we go: the writer refills behind us */
        }
        if (n > 0) {
            /* Payload bytes in [done, done + n), frame offsets. */
            uint64_t lo = ch->rx.done, hi = lo + n, pay_end = FRAME_HDR + ch->rx.len;
            if (hi > pay_end) {
                hi = pay_end;
            }
            if (buf != NULL && lo < hi) {
                ring_copy(ch, ch->rx.r.data, ch->rx.pos,
                          (unsigned char *)buf + (lo - FRAME_HDR), hi - lo, 0);
            }
            ch->rx.pos += n;
            ch->rx.done += n;
        }
        if (ch->rx.pos != ch->rx.published) {
            /* seq_cst, so also release: we are done reading the bytes
             * before tail, the writer may overwrite them. */
            ch->rx.published = ch->rx.pos;
            atomic_store(&ch->rx.r.ctl->tail, ch->rx.pos);
            wake_writer(ch);
        }
        if (ch->rx.done == ch->rx.frame) {
            ch->rx.active = 0;
            count(&ch->rx.received);
            return NP_OK;
        }
        if (n > 0) {
            spun = 0;
            continue;
        }
        int r = wait_ring(ch, WAIT_DATA, 0, deadline_ns, &spun);
        if (r != NP_OK) {
            return r;
        }
    }
}

int
np_chan_recv(np_chan *ch, void **buf, size_t *size, int64_t deadline_ns)
{
    int r = np_chan_recv_size(ch, size, deadline_ns);
    if (r != NP_OK) {
        return r;
    }
    if (*buf == NULL && *size > 0) {
        *buf = malloc(*size);
        if (*buf == NULL) {
            return NP_ENOMEM;
        }
    }
    return np_chan_recv_data(ch, *buf, deadline_ns);
}

/* ---- many channels ---------------------------------------------------------- */

static int
any_ready(np_chan *const *chans, size_t n, unsigned char *ready)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        ready[i] = (unsigned char)(ready_now(chans[i], WAIT_DATA, 0) ||
                                   npch_peer_gone(chans[i]));
        k += ready[i];
    }
    return k;
}

int
np_chan_wait_any(np_chan *const *chans, size_t n, int extra_fd,
                 unsigned char *ready, int64_t deadline_ns)
{
    if (extra_fd >= 0) {
        ready[n] = 0;
    }
    int k = any_ready(chans, n, ready);
    if (k > 0) {
        return k;
    }
    if (n > 0 && spin_until_ready(chans, n, WAIT_DATA, 0, deadline_ns)) {
        return any_ready(chans, n, ready);
    }
    struct pollfd stack_fds[65], *fds = stack_fds;
    size_t nfds = 2 * n + (extra_fd >= 0);
    if (nfds > sizeof stack_fds / sizeof stack_fds[0]) {
        fds = malloc(nfds * sizeof *fds);
        if (fds == NULL) {
            return NP_ENOMEM;
        }
    }
    int result;
    for (;;) {
        if (deadline_ns != NP_FOREVER && np_monotonic_ns() >= deadline_ns) {
            k = any_ready(chans, n, ready);
            result = k > 0 ? k : NP_ETIMEDOUT;
            break;
        }
        /* Announce on every ring, then re-check every ring (wait_ring's
         * protocol, n times). */
        for (size_t i = 0; i < n; i++) {
            atomic_store(&chans[i]->rx.r.ctl->reader_sleeping, 1);
        }
        k = any_ready(chans, n, ready);
        int rc = 0, err = 0;
        if (k == 0) {
            for (size_t i = 0; i < n; i++) {
                fds[2 * i] = (struct pollfd){chans[i]->rx.r.sleep_bell, POLLIN, 0};
                fds[2 * i + 1] = (struct pollfd){chans[i]->watch_fd, POLLIN, 0};
                count(&chans[i]->rx.sleeps);
            }
            if (extra_fd >= 0) {
                fds[2 * n] = (struct pollfd){extra_fd, POLLIN, 0};
            }
            rc = poll_until(fds, (nfds_t)nfds, deadline_ns);
            err = rc < 0 ? errno : 0;
        }
        for (size_t i = 0; i < n; i++) {
            atomic_store_explicit(&chans[i]->rx.r.ctl->reader_sleeping, 0,
                                  memory_order_relaxed);
        }
        if (rc > 0) {
            for (size_t i = 0; i < n; i++) {
                if (fds[2 * i].revents) {
                    drain_bell(chans[i]->rx.r.sleep_bell);
                }
                if (npch_watch_fired(fds[2 * i + 1].revents)) {
                    npch_mark_gone(chans[i]);
                }
            }
        }
        k = any_ready(chans, n, ready);
        if (rc > 0 && extra_fd >= 0 && fds[2 * n].revents) {
            ready[n] = 1;
            k++;
        }
        if (k > 0) {
            result = k;
            break;
        }
        if (rc < 0) {
            if (err != EINTR) {
                abort();
            }
            result = NP_EINTR;
            break;
        }
    }
    if (fds != stack_fds) {
        free(fds);
    }
    return result;
}

