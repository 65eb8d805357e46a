/* np_chan_impl.h -- what np_chan.c (messages, waits) and np_chan_setup.c
 * (creating, attaching, closing) share: the layout of the shared segment,
 * the endpoint struct and a few helpers.  Private to csrc/runtime. */
#ifndef NP_CHAN_IMPL_H
#define NP_CHAN_IMPL_H
#define _GNU_SOURCE
#include "np_chan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434   /* the same number on every architecture */
#endif

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
               "ring indices are 64-bit atomics shared between processes");

/*
 * The shared segment (one memfd):
 *
 *   [0, 4096)                  chan_shm: identity, closed flags, ring_ctl x2
 *   [4096, 4096 + cap)         ring 0 data: parent -> child
 *   [4096 + cap, 4096 + 2cap)  ring 1 data: child -> parent
 *
 * A ring is a byte stream with free-running 64-bit positions: `head` counts
 * the bytes ever written, `tail` the bytes ever consumed, so head - tail is
 * the fill level (no wrap-around ambiguity in 2^64 bytes) and pos & (cap-1)
 * the offset in the data area.  A message is framed as
 *
 *   [8-byte length][payload][0-7 bytes of padding to a multiple of 8]
 *
 * so every header starts 8-aligned and never straddles the end of the data
 * area (cap is a power of two >= 4096).  The writer publishes a header
 * together with its payload (or, for a message longer than the ring, with a
 * first chunk), so head - tail > 0 at a message boundary means a whole
 * header is there.
 *
 * Each side writes one cache line per message and only reads the other's:
 * head and reader_sleeping on the writer's line (the writer reads the flag
 * after every publish; the reader writes it only to sleep), tail,
 * writer_sleeping and writer_need on the reader's.  128-byte spacing keeps
 * the adjacent-line prefetcher from pairing them.
 */
#define CHAN_MAGIC   UINT64_C(0x6e706368616e3031)   /* "npchan01" */
#define CHAN_VERSION 1u
#define HDR_BYTES    4096u
#define LINE         128
#define FRAME_HDR    8u
#define MIN_RING     ((uint64_t)4096)
#define MAX_RING     ((uint64_t)1 << 30)
#define MAX_MSG      (UINT64_MAX >> 2)   /* keeps frame arithmetic exact */
/* A long message is copied and published in steps of at most CHUNK bytes,
 * so the reader copies one step out while the writer copies the next in
 * (two CPUs, two memcpy in parallel), and the writer resumes once CHUNK
 * bytes are free rather than waiting for the ring to drain. */
#ifndef NP_CHAN_CHUNK
#define NP_CHAN_CHUNK (64 * 1024)
#endif
#define CHUNK        ((uint64_t)NP_CHAN_CHUNK)
#define SIDE_PARENT  0
#define SIDE_CHILD   1

typedef struct {
    _Alignas(LINE) _Atomic uint64_t head;     /* written by the writer */
    _Atomic uint32_t reader_sleeping;          /* set by the reader to sleep,
                                                * cleared by whoever rings */
    _Alignas(LINE) _Atomic uint64_t tail;     /* written by the reader */
    _Atomic uint32_t writer_sleeping;
    _Atomic uint64_t writer_need;             /* free bytes the sleeping
                                                * writer waits for */
} ring_ctl;

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_bytes;
    uint64_t ring_size;
    _Atomic uint32_t closed[2];               /* by side: np_chan_close ran */
    ring_ctl ring[2];
} chan_shm;

_Static_assert(sizeof(chan_shm) <= HDR_BYTES, "header page overflow");

/* One direction as seen from this endpoint. */
typedef struct {
    ring_ctl *ctl;
    unsigned char *data;
    int sleep_bell;     /* this endpoint sleeps on it (data or space) */
    int peer_bell;      /* this endpoint rings it to wake the peer */
} ring_view;

/* Counters written by one thread, read by any: relaxed atomics. */
typedef _Atomic uint64_t counter;

static inline void
count(counter *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

struct np_chan {
    chan_shm *shm;
    size_t map_len;
    uint64_t cap, mask;
    int side;
    int flags;
    int bells[4];
    int watch_fd;               /* readable once the peer is gone; -1: none */
    int keep_fd;                /* a pipe end held only to signal our death */
    /* Parent only, until np_chan_child_started: the child's copies. */
    int child_mem, child_parent_fd, child_life_w;
    int life_r;                 /* parent: read end of the child's life pipe */
    _Atomic int64_t spin_ns;
    _Atomic int peer_state;     /* NP_CHAN_PEER_*, sticky once not ALIVE */

    /* The writer thread's state (its own cache line). */
    struct {
        _Alignas(64) ring_view r;
        uint64_t head;          /* == r.ctl->head: we are its only writer */
        uint64_t tail_cache;    /* last tail we loaded */
        int active;             /* a message is part-way through */
        uint64_t len, frame, done;
        counter sent, wakes, sleeps;
    } tx;
    /* The reader thread's state. */
    struct {
        _Alignas(64) ring_view r;
        uint64_t pos;           /* consumed locally (>= the published tail) */
        uint64_t published;     /* last tail we stored */
        uint64_t head_cache;
        int active;
        uint64_t len, frame, done;
        counter received, wakes, sleeps;
    } rx;
};


/* Helpers defined in np_chan.c. */
void npch_close_fd(int *fd);
void npch_ring_bell(int fd);
int npch_pidfd_open(pid_t pid);
void npch_mark_gone(np_chan *ch);
int npch_peer_gone(np_chan *ch);
int npch_watch_fired(short revents);

#endif /* NP_CHAN_IMPL_H */
