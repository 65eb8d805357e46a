/*
 * np_chan.h -- a duplex message channel between two processes: the task and
 * result pipe of one ProcessPool worker.  Plain C11 + Linux; no Python.h.
 *
 * One channel = one memfd holding two byte rings (parent -> child, child ->
 * parent), four eventfd doorbells and one "peer watch" fd per side.  Every
 * resource is a file descriptor, so a worker started with spawn or
 * forkserver (not only fork) receives the channel as a list of fds and maps
 * it with np_chan_attach.
 *
 *     parent                         memfd                          child
 *   np_chan_create ---- ring 0: tasks   (parent writes) ----> np_chan_attach
 *                  <--- ring 1: results (child writes)  -----
 *   sleeps in ppoll on                            sleeps in ppoll on
 *     [its doorbell, pidfd of the child]            [its doorbell, pidfd of
 *                                                    the parent]
 *
 * Messages are byte strings of any length (0 .. 2^63), delivered whole and in
 * order.  One that does not fit in the ring streams through it: the writer
 * copies in chunks as the reader frees space, and the reader assembles them
 * into a buffer it owns (np_chan_recv_size, then np_chan_recv_data), so the
 * binding can read straight into a bytes object's storage.
 *
 * Threads: per direction, one writer thread and one reader thread at a time
 * (the reader of ring 1 and the writer of ring 0 on the parent side may be
 * different threads, and may run at the same time).  The binding serializes
 * anything more.  Rings are bounded: if both sides block writing into full
 * rings and neither reads, they wait forever (as with pipes), so the parent
 * reads results in a thread other than the one that may block sending tasks,
 * or sends with deadlines.
 *
 * Waking (the "sleepers flag" rule of np_sem.h, across processes): a waiter
 * spins for a bounded time (np_chan_set_spin), then stores its `sleeping`
 * flag in the shared ring header, re-checks its condition and only then
 * sleeps in ppoll.  The other side publishes (head or tail), then reads the
 * flag, and rings the doorbell (one eventfd write) only if the flag was set,
 * clearing it as it does so, so a burst of messages costs one wakeup.  Both
 * pairs of accesses are separated by seq_cst fences, so either the waiter
 * sees the new data or the publisher sees the flag.  While both sides are
 * awake, a message costs two memcpy and no system call.
 *
 * Peer gone: each side polls, together with its doorbell, an fd that becomes
 * readable when the other process ends, however it ends (exit, SIGKILL, a
 * segfault, the OOM killer): a pidfd (Linux 5.3+), or where pidfd_open is
 * missing or forbidden (old kernels, some seccomp profiles) the read end of a
 * pipe whose write end only the other process holds, which reads EOF when it
 * dies.  A waiting call then returns NP_ECLOSED instead of hanging.  An
 * orderly np_chan_close sets a flag in the segment and rings both of the
 * peer's doorbells, with the same result.  Messages already in the ring are
 * still delivered first.
 */
#ifndef NP_CHAN_H
#define NP_CHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "np_sync.h"

/* A system call failed (errno says which: EMFILE, ENOMEM, EINVAL for fds
 * that are not a channel...).  Only from np_chan_create and np_chan_attach. */
#ifndef NP_ESYS
#define NP_ESYS (-16)
#endif

typedef struct np_chan np_chan;

/* Bytes per ring (each direction), a power of two.  np_chan_create rounds
 * other sizes up; 4 KiB .. 1 GiB. */
#define NP_CHAN_RING_DEFAULT ((size_t)256 * 1024)

/* How long a wait polls the ring before it sleeps in ppoll.  On the 2-vCPU
 * development VM a hop that sleeps costs 35-90 us of wall time and ~25 us of
 * CPU; one the spin catches costs well under 1 us of either (see
 * benchmarks/c/README.md).  The spin yields the CPU every 64 polls. */
#define NP_CHAN_SPIN_DEFAULT_NS 50000

/* np_chan_create flags */
#define NP_CHAN_NO_PIDFD 1   /* watch the peer through pipes even where
                              * pidfd_open works (tests; odd sandboxes) */

/* The fds the child needs, in this order (see np_chan_child_fds). */
enum {
    NP_CHAN_FD_MEM = 0,    /* memfd: header page + ring 0 + ring 1 */
    NP_CHAN_FD_BELL0,      /* eventfd: ring 0 has data (child reader sleeps) */
    NP_CHAN_FD_BELL1,      /* eventfd: ring 0 has space (parent writer) */
    NP_CHAN_FD_BELL2,      /* eventfd: ring 1 has data (parent reader) */
    NP_CHAN_FD_BELL3,      /* eventfd: ring 1 has space (child writer) */
    NP_CHAN_FD_PARENT,     /* readable once the parent is gone: a pidfd of
                            * the parent, or a pipe's read end */
    NP_CHAN_FD_LIFE,       /* the write end of a pipe the parent watches for
                            * EOF when no pidfd of the child can be had; the
                            * child keeps it open and never writes */
    NP_CHAN_NFDS
};

/* ---- setting up ---------------------------------------------------------- */

/* Parent side: create a channel with rings of ring_size bytes each (0 for the
 * default).  Returns NP_OK, NP_ENOMEM or NP_ESYS (errno set). */
int np_chan_create(np_chan **out, size_t ring_size, int flags);

/* Parent side: the fds to hand to the child, in NP_CHAN_FD_* order.  They
 * stay owned by the channel (O_CLOEXEC) until np_chan_child_started; pass
 * them to the child by inheritance, pass_fds, or SCM_RIGHTS. */
void np_chan_child_fds(const np_chan *ch, int fds[NP_CHAN_NFDS]);

/* Parent side, once the child holds its copies of the fds (they were
 * inherited, or sent: fds in flight in a unix socket are safe): close the
 * parent's copies of the child's fds and start watching the child.  With a
 * pid > 0, watch it through pidfd_open(pid) when possible (for a child of
 * ours this cannot race with pid reuse: a zombie keeps its pid); otherwise
 * through the EOF of the NP_CHAN_FD_LIFE pipe.  Call it once, before any
 * thread waits on the channel (until then a death goes unnoticed).  Returns
 * NP_OK, or NP_ECLOSED if the child is already gone (ESRCH). */
int np_chan_child_started(np_chan *ch, pid_t pid);

/* Child side: map the channel from the fds the parent handed over.  The fds
 * are duplicated: the caller still owns (and should close) its copies.
 * fds[NP_CHAN_FD_PARENT] and fds[NP_CHAN_FD_LIFE] may be -1 (then only an
 * np_chan_close of the parent is noticed, not its death).
 * Returns NP_OK, NP_ENOMEM, or NP_ESYS (errno EINVAL if fds[MEM] is not a
 * channel of this build). */
int np_chan_attach(np_chan **out, const int fds[NP_CHAN_NFDS]);

/* Either side: mark the channel closed (the peer's waits return NP_ECLOSED
 * once it has read what was sent), wake the peer, unmap and free. */
void np_chan_close(np_chan *ch);

/* In a child created by fork(): release this process's inherited copy of a
 * channel (close its fds, unmap) without telling the peer anything.  A fork
 * child must do this for every channel it inherited except through its own
 * attach: it would otherwise hold, for instance, the write end of a
 * sibling's parent-watch pipe and keep that sibling from seeing the parent
 * die.  (Attach first, then forget: forget closes the inherited fds.) */
void np_chan_forget(np_chan *ch);

/* Spin budget of this endpoint's waits, in ns (0: sleep at once). */
void np_chan_set_spin(np_chan *ch, int64_t spin_ns);

size_t np_chan_ring_size(const np_chan *ch);

/* How far the peer has read what this endpoint sent.  np_chan_sent_pos:
 * the position in this endpoint's outgoing stream after everything sent so
 * far (the writing thread, or whoever holds the caller's send lock, reads
 * it).  np_chan_peer_read_pos: how much of that stream the peer has
 * consumed; it reaches the end of a message only once the peer has read
 * all of it.  So a message whose end (np_chan_sent_pos right after its
 * send) is beyond np_chan_peer_read_pos was not wholly received: if the
 * peer is dead, it never was.  (A peer that scribbled over the segment
 * before dying may leave any value.) */
uint64_t np_chan_sent_pos(const np_chan *ch);
uint64_t np_chan_peer_read_pos(const np_chan *ch);

/* ---- messages -------------------------------------------------------------
 *
 * Every blocking call takes an absolute CLOCK_MONOTONIC deadline (np_deadline
 * style, NP_FOREVER for none; a deadline in the past means "do not wait") and
 * returns one of
 *   NP_OK         done
 *   NP_ETIMEDOUT  the deadline passed
 *   NP_EINTR      a signal handler ran while it slept (run the handlers, call
 *                 again with the same arguments)
 *   NP_ECLOSED    the peer closed the channel or its process is gone; for a
 *                 reader, only once everything it sent has been read
 * A call that fails part-way through a message keeps its progress: call it
 * again with the same arguments to continue.
 */

/* Send one message made of iovcnt pieces.  The message is complete when this
 * returns NP_OK.  A message that fits in the ring goes in whole or not at
 * all; a longer one streams, so after NP_ETIMEDOUT or NP_EINTR part of it
 * may be in the ring already: then np_chan_send_pending() is 1 and the caller
 * must call again with the same pieces (same total length; another total
 * aborts, the stream would be corrupt) before sending anything else.  NP_ECLOSED: the peer will never read it.  NP_ENOMEM: longer
 * than 2^62 bytes.  A send into a ring with room succeeds even if the peer
 * has just died: the following receive reports it. */
int np_chan_sendv(np_chan *ch, const struct iovec *iov, int iovcnt,
                  int64_t deadline_ns);

static inline int
np_chan_send(np_chan *ch, const void *buf, size_t len, int64_t deadline_ns)
{
    struct iovec iov = {(void *)buf, len};
    return np_chan_sendv(ch, &iov, 1, deadline_ns);
}

/* 1 if a message was started and not finished (an interrupted sendv). */
int np_chan_send_pending(const np_chan *ch);

/* Wait for the next message and store its length in *size.  Calling it again
 * before the message is read gives the same length.  Then read the message
 * with np_chan_recv_data. */
int np_chan_recv_size(np_chan *ch, size_t *size, int64_t deadline_ns);

/* Read the message whose size np_chan_recv_size gave into buf (at least that
 * many bytes), waiting for the rest of a long message as it streams in.
 * buf == NULL discards the message.  After NP_ETIMEDOUT / NP_EINTR, call
 * again with the same buf (the bytes already copied stay there).  Calling it
 * with no message started by np_chan_recv_size is a bug: abort(). */
int np_chan_recv_data(np_chan *ch, void *buf, int64_t deadline_ns);

/* Both steps, into a malloc'd buffer (*buf = NULL for an empty message).
 * NP_ENOMEM leaves the message unread.  After NP_ETIMEDOUT / NP_EINTR
 * part-way, *buf holds the partial buffer: pass it back unchanged. */
int np_chan_recv(np_chan *ch, void **buf, size_t *size, int64_t deadline_ns);

/* ---- waiting on many channels -------------------------------------------
 *
 * One collector thread serving every worker: wait until at least one of
 * chans[0..n-1] is readable (bytes to read, or the peer gone: its next
 * receive returns data or NP_ECLOSED), and set ready[i] to 1 for those, 0 for
 * the others.  If extra_fd >= 0 it is polled too (an eventfd the binding rings
 * to wake the collector for shutdown or a new worker), and ready[n] says
 * whether it is readable; ready then has n + 1 entries.  extra_fd is not
 * read.  Returns the number of ready entries (> 0), NP_ETIMEDOUT, NP_EINTR
 * or NP_ENOMEM (only for n > 32).  The caller must be the reader of every
 * channel in chans.  The spin budget is chans[0]'s.  The sleep costs O(n)
 * (the flags of every channel, 2n pollfds): fine for tens of workers. */
int np_chan_wait_any(np_chan *const *chans, size_t n, int extra_fd,
                     unsigned char *ready, int64_t deadline_ns);

/* ---- state ---------------------------------------------------------------- */

#define NP_CHAN_PEER_ALIVE  0
#define NP_CHAN_PEER_CLOSED 1   /* it called np_chan_close */
#define NP_CHAN_PEER_DEAD   2   /* its process ended without closing */

/* What is known of the peer right now (polls the watch fd: a system call). */
int np_chan_peer_status(np_chan *ch);

typedef struct np_chan_stats {
    uint64_t sent, received;  /* messages */
    uint64_t wakes;           /* doorbells this endpoint rang */
    uint64_t sleeps;          /* ppoll calls this endpoint made */
} np_chan_stats;

/* Counters of this endpoint (relaxed: they may lag behind calls that other
 * threads are making). */
void np_chan_get_stats(const np_chan *ch, np_chan_stats *out);

#endif /* NP_CHAN_H */
