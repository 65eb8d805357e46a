/* np_chan_setup.c -- creating, attaching, forgetting and closing a
 * channel (np_chan.h). */
#include "np_chan_impl.h"

/* ---- setting up and tearing down ------------------------------------------ */

static np_chan *
chan_alloc(void)
{
    size_t size = (sizeof(np_chan) + 63) & ~(size_t)63;
    np_chan *ch = aligned_alloc(64, size);
    if (ch == NULL) {
        return NULL;
    }
    memset(ch, 0, size);
    ch->shm = NULL;
    for (int i = 0; i < 4; i++) {
        ch->bells[i] = -1;
    }
    ch->watch_fd = ch->keep_fd = -1;
    ch->child_mem = ch->child_parent_fd = ch->child_life_w = -1;
    ch->life_r = -1;
    atomic_init(&ch->spin_ns, NP_CHAN_SPIN_DEFAULT_NS);
    atomic_init(&ch->peer_state, NP_CHAN_PEER_ALIVE);
    return ch;
}

/* Point the two views at the segment and load the current positions (a
 * child may attach after the parent has sent a few tasks). */
static void
chan_setup(np_chan *ch, chan_shm *shm, size_t map_len, uint64_t cap, int side)
{
    ch->shm = shm;
    ch->map_len = map_len;
    ch->cap = cap;
    ch->mask = cap - 1;
    ch->side = side;
    unsigned char *base = (unsigned char *)shm + HDR_BYTES;
    int me = side, peer = 1 - side;
    /* Ring r's data bell is bells[2r] (its reader sleeps on it), its space
     * bell bells[2r + 1] (its writer sleeps on it).  We write ring `me`. */
    ch->tx.r = (ring_view){&shm->ring[me], base + (uint64_t)me * cap,
                           ch->bells[2 * me + 1], ch->bells[2 * me]};
    ch->rx.r = (ring_view){&shm->ring[peer], base + (uint64_t)peer * cap,
                           ch->bells[2 * peer], ch->bells[2 * peer + 1]};
    ch->tx.head = atomic_load(&shm->ring[me].head);
    ch->tx.tail_cache = atomic_load(&shm->ring[me].tail);
    ch->rx.pos = ch->rx.published = atomic_load(&shm->ring[peer].tail);
    ch->rx.head_cache = atomic_load(&shm->ring[peer].head);
}

int
np_chan_create(np_chan **out, size_t ring_size, int flags)
{
    uint64_t cap = MIN_RING;
    uint64_t want = ring_size ? (uint64_t)ring_size : NP_CHAN_RING_DEFAULT;
    while (cap < want && cap < MAX_RING) {
        cap <<= 1;
    }
    np_chan *ch = chan_alloc();
    if (ch == NULL) {
        return NP_ENOMEM;
    }
    ch->side = SIDE_PARENT;
    ch->flags = flags;
    size_t len = HDR_BYTES + 2 * cap;
    void *map = MAP_FAILED;
    int mem = memfd_create("nativepool-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mem < 0 || ftruncate(mem, (off_t)len) != 0) {
        goto fail;
    }
    /* Seal the size: a peer that shrank the file would make our next
     * access to the ring a SIGBUS. */
    (void)fcntl(mem, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
               mem, 0);
    if (map == MAP_FAILED) {
        goto fail;
    }
    ch->child_mem = mem;
    mem = -1;
    for (int i = 0; i < 4; i++) {
        ch->bells[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ch->bells[i] < 0) {
            goto fail;
        }
    }
    /* How the child will watch us: a pidfd of this process, or a pipe we
     * keep the write end of. */
    int p[2];
    if (!(flags & NP_CHAN_NO_PIDFD)) {
        ch->child_parent_fd = npch_pidfd_open(getpid());
    }
    if (ch->child_parent_fd < 0) {
        if (pipe2(p, O_CLOEXEC) != 0) {
            goto fail;
        }
        ch->child_parent_fd = p[0];
        ch->keep_fd = p[1];
    }
    /* How we may watch the child if no pidfd of it can be had. */
    if (pipe2(p, O_CLOEXEC) != 0) {
        goto fail;
    }
    ch->life_r = p[0];   /* watched from np_chan_child_started on */
    ch->child_life_w = p[1];
    chan_shm *shm = map;
    shm->magic = CHAN_MAGIC;
    shm->version = CHAN_VERSION;
    shm->hdr_bytes = HDR_BYTES;
    shm->ring_size = cap;
    chan_setup(ch, shm, len, cap, SIDE_PARENT);
    *out = ch;
    return NP_OK;
fail:
    {
        int saved = errno;
        if (mem >= 0) {
            close(mem);
        }
        if (map != MAP_FAILED) {
            ch->shm = map;
            ch->map_len = len;
        }
        np_chan_forget(ch);
        errno = saved;
        return NP_ESYS;
    }
}

void
np_chan_child_fds(const np_chan *ch, int fds[NP_CHAN_NFDS])
{
    fds[NP_CHAN_FD_MEM] = ch->child_mem;
    for (int i = 0; i < 4; i++) {
        fds[NP_CHAN_FD_BELL0 + i] = ch->bells[i];
    }
    fds[NP_CHAN_FD_PARENT] = ch->child_parent_fd;
    fds[NP_CHAN_FD_LIFE] = ch->child_life_w;
}

int
np_chan_child_started(np_chan *ch, pid_t pid)
{
    /* Ours to close now; the child's copies keep the objects alive.  Above
     * all the life pipe's write end: while we hold it, its EOF cannot come. */
    npch_close_fd(&ch->child_mem);
    npch_close_fd(&ch->child_parent_fd);
    npch_close_fd(&ch->child_life_w);
    if (pid > 0 && !(ch->flags & NP_CHAN_NO_PIDFD)) {
        int fd = npch_pidfd_open(pid);
        if (fd >= 0) {
            ch->watch_fd = fd;
            npch_close_fd(&ch->life_r);
            return NP_OK;
        }
        if (errno == ESRCH) {
            /* Already reaped: gone, whatever the pipe says. */
            ch->watch_fd = ch->life_r;
            ch->life_r = -1;
            npch_mark_gone(ch);
            return NP_ECLOSED;
        }
    }
    ch->watch_fd = ch->life_r;
    ch->life_r = -1;
    return NP_OK;
}

static int
dup_fd(int fd)
{
    return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

int
np_chan_attach(np_chan **out, const int fds[NP_CHAN_NFDS])
{
    struct stat st;
    if (fstat(fds[NP_CHAN_FD_MEM], &st) != 0) {
        return NP_ESYS;
    }
    if (st.st_size < (off_t)HDR_BYTES) {
        errno = EINVAL;
        return NP_ESYS;
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_POPULATE, fds[NP_CHAN_FD_MEM], 0);
    if (map == MAP_FAILED) {
        return NP_ESYS;
    }
    chan_shm *shm = map;
    uint64_t cap = shm->ring_size;
    if (shm->magic != CHAN_MAGIC || shm->version != CHAN_VERSION ||
        shm->hdr_bytes != HDR_BYTES || cap < MIN_RING || cap > MAX_RING ||
        (cap & (cap - 1)) != 0 || len != HDR_BYTES + 2 * cap) {
        munmap(map, len);
        errno = EINVAL;
        return NP_ESYS;
    }
    np_chan *ch = chan_alloc();
    if (ch == NULL) {
        munmap(map, len);
        return NP_ENOMEM;
    }
    ch->shm = shm;
    ch->map_len = len;
    ch->side = SIDE_CHILD;
    for (int i = 0; i < 4; i++) {
        if ((ch->bells[i] = dup_fd(fds[NP_CHAN_FD_BELL0 + i])) < 0) {
            goto fail;
        }
    }
    /* -1 is accepted for these two (no watch: only np_chan_close is seen). */
    if ((fds[NP_CHAN_FD_PARENT] >= 0 &&
         (ch->watch_fd = dup_fd(fds[NP_CHAN_FD_PARENT])) < 0) ||
        (fds[NP_CHAN_FD_LIFE] >= 0 &&
         (ch->keep_fd = dup_fd(fds[NP_CHAN_FD_LIFE])) < 0)) {
        goto fail;
    }
    chan_setup(ch, shm, len, cap, SIDE_CHILD);
    *out = ch;
    return NP_OK;
fail:
    {
        int saved = errno;
        np_chan_forget(ch);
        errno = saved;
        return NP_ESYS;
    }
}

void
np_chan_forget(np_chan *ch)
{
    if (ch == NULL) {
        return;
    }
    for (int i = 0; i < 4; i++) {
        npch_close_fd(&ch->bells[i]);
    }
    npch_close_fd(&ch->watch_fd);
    npch_close_fd(&ch->keep_fd);
    npch_close_fd(&ch->child_mem);
    npch_close_fd(&ch->child_parent_fd);
    npch_close_fd(&ch->child_life_w);
    npch_close_fd(&ch->life_r);
    if (ch->shm != NULL) {
        munmap(ch->shm, ch->map_len);
    }
    free(ch);
}

void
np_chan_close(np_chan *ch)
{
    if (ch == NULL) {
        return;
    }
    /* seq_cst store, then ring both bells the peer may sleep on, whatever
     * its flags say: closing is rare, and a peer that announced nothing
     * re-checks the flag before it sleeps. */
    atomic_store(&ch->shm->closed[ch->side], 1);
    npch_ring_bell(ch->tx.r.peer_bell);
    npch_ring_bell(ch->rx.r.peer_bell);
    np_chan_forget(ch);
}

void
np_chan_set_spin(np_chan *ch, int64_t spin_ns)
{
    atomic_store_explicit(&ch->spin_ns, spin_ns < 0 ? 0 : spin_ns,
                          memory_order_relaxed);
}

size_t
np_chan_ring_size(const np_chan *ch)
{
    return (size_t)ch->cap;
}

uint64_t
np_chan_sent_pos(const np_chan *ch)
{
    return ch->tx.head;
}

uint64_t
np_chan_peer_read_pos(const np_chan *ch)
{
    return atomic_load_explicit(&ch->tx.r.ctl->tail, memory_order_acquire);
}

int
np_chan_peer_status(np_chan *ch)
{
    if (!npch_peer_gone(ch) && ch->watch_fd >= 0) {
        struct pollfd p = {ch->watch_fd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0 && npch_watch_fired(p.revents)) {
            npch_mark_gone(ch);
        }
    }
    return atomic_load(&ch->peer_state);
}

void
np_chan_get_stats(const np_chan *ch, np_chan_stats *out)
{
    out->sent = atomic_load_explicit(&ch->tx.sent, memory_order_relaxed);
    out->received = atomic_load_explicit(&ch->rx.received, memory_order_relaxed);
    out->wakes = atomic_load_explicit(&ch->tx.wakes, memory_order_relaxed) +
                 atomic_load_explicit(&ch->rx.wakes, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&ch->tx.sleeps, memory_order_relaxed) +
                  atomic_load_explicit(&ch->rx.sleeps, memory_order_relaxed);
}
