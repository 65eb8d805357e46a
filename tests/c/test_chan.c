/* test_chan.c -- unit tests for csrc/runtime/np_chan.{h,c}: the cross-process
 * message channel behind ProcessPool.
 *
 * Two kinds of tests: threads of one process on the two endpoints of a
 * channel (ThreadSanitizer sees those), and forked child processes (the real
 * thing: round trips, ordering, sizes, deaths).  Each test runs in its own
 * forked process already (test.h); a test that forks more reaps every child
 * it forks, and the children _exit (they inherit the test's allocations, so
 * LeakSanitizer would report those). */
#include "test.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "np_chan.h"

#define MS ((int64_t)1000000)

/* ---- payloads that check themselves ---------------------------------------- */

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

/* Bytes that depend on (seed, length, index): a reordered, truncated or
 * shifted message fails check_payload. */
static void
fill_payload(unsigned char *p, size_t len, uint64_t seed)
{
    uint64_t s = mix(seed ^ (len * UINT64_C(0x9e3779b97f4a7c15)));
    for (size_t i = 0; i < len; i++) {
        if ((i & 7) == 0) {
            s = mix(s + i);
        }
        p[i] = (unsigned char)(s >> (8 * (i & 7)));
    }
}

static int
check_payload(const unsigned char *p, size_t len, uint64_t seed)
{
    uint64_t s = mix(seed ^ (len * UINT64_C(0x9e3779b97f4a7c15)));
    for (size_t i = 0; i < len; i++) {
        if ((i & 7) == 0) {
            s = mix(s + i);
        }
        if (p[i] != (unsigned char)(s >> (8 * (i & 7)))) {
            return 0;
        }
    }
    return 1;
}

/* A message whose first 8 bytes are its seed, the rest derived from it
 * (lengths < 8 carry only a prefix of the seed). */
static void
make_msg(unsigned char *p, size_t len, uint64_t seed)
{
    unsigned char hdr[8];
    memcpy(hdr, &seed, 8);
    memcpy(p, hdr, len < 8 ? len : 8);
    if (len > 8) {
        fill_payload(p + 8, len - 8, seed);
    }
}

static int
msg_ok(const unsigned char *p, size_t len, uint64_t seed)
{
    unsigned char hdr[8];
    memcpy(hdr, &seed, 8);
    if (len == 0) {
        return 1;   /* (p may be NULL) */
    }
    if (memcmp(p, hdr, len < 8 ? len : 8) != 0) {
        return 0;
    }
    return len <= 8 || check_payload(p + 8, len - 8, seed);
}

/* Send a made-up message; NP_* code. */
static int
send_msg(np_chan *ch, size_t len, uint64_t seed, int64_t deadline)
{
    unsigned char *p = malloc(len ? len : 1);
    if (p == NULL) {
        abort();
    }
    make_msg(p, len, seed);
    int r;
    do {
        r = np_chan_send(ch, p, len, deadline);
    } while (r == NP_EINTR);
    free(p);
    return r;
}

/* Receive one message into *out (malloc'd); NP_* code. */
static int
recv_msg(np_chan *ch, unsigned char **out, size_t *len, int64_t deadline)
{
    void *buf = NULL;
    int r;
    do {
        r = np_chan_recv(ch, &buf, len, deadline);
    } while (r == NP_EINTR);
    if (r != NP_OK) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    return r;
}

/* Receive one message and check it against (len, seed); 1 if it matched. */
static int
recv_check(np_chan *ch, size_t want_len, uint64_t seed)
{
    unsigned char *p;
    size_t len = 0;
    int r = recv_msg(ch, &p, &len, np_deadline_after(30));
    EXPECT_EQ(r, NP_OK);
    EXPECT_UEQ(len, want_len);
    int ok = r == NP_OK && len == want_len && msg_ok(p, len, seed);
    EXPECT_TRUE(ok);
    free(p);
    return ok;
}

/* ---- helpers: pairs, children ------------------------------------------------- */

/* Both endpoints in this process.  The parent's watch is the life pipe,
 * held open by the child endpoint, so only np_chan_close ends it. */
static void
make_pair(np_chan **parent, np_chan **child, size_t ring, int flags)
{
    *parent = *child = NULL;
    ASSERT_EQ(np_chan_create(parent, ring, flags), NP_OK);
    int fds[NP_CHAN_NFDS];
    np_chan_child_fds(*parent, fds);
    ASSERT_EQ(np_chan_attach(child, fds), NP_OK);
    ASSERT_EQ(np_chan_child_started(*parent, 0), NP_OK);
}

typedef void (*child_fn)(np_chan *ch, void *arg);

/* Other channels a forked child inherited and must forget (its siblings'):
 * the rule np_chan_forget documents. */
static np_chan **fork_siblings;
static int fork_nsiblings;

/* Fork a child that attaches to ch from the fds it inherited, forgets the
 * parent's copy, runs fn and exits 0 if no EXPECT failed in it.  Then the
 * parent closes its copies and watches the child.  Returns the pid. */
static pid_t
fork_child(np_chan *ch, child_fn fn, void *arg)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        abort();
    }
    if (pid == 0) {
        int fds[NP_CHAN_NFDS];
        np_chan *mine = NULL;
        np_chan_child_fds(ch, fds);
        int r = np_chan_attach(&mine, fds);
        EXPECT_EQ(r, NP_OK);
        np_chan_forget(ch);   /* the parent's endpoint, inherited */
        for (int i = 0; i < fork_nsiblings; i++) {
            if (fork_siblings[i] != ch) {
                np_chan_forget(fork_siblings[i]);
            }
        }
        if (r == NP_OK) {
            fn(mine, arg);
            np_chan_close(mine);
        }
        fflush(stdout);
        _exit(TEST_FAILED() ? 1 : 0);
    }
    EXPECT_EQ(np_chan_child_started(ch, pid), NP_OK);
    return pid;
}

#define EXPECT_EXITED_OK(status)                                   \
    do {                                                           \
        int st_ = (status);                                        \
        EXPECT_TRUE(st_ != -1 && WIFEXITED(st_));                  \
        EXPECT_EQ(st_ != -1 && WIFEXITED(st_) ? WEXITSTATUS(st_) : -1, 0); \
    } while (0)

/* Wait until thread tid sleeps in ppoll (what a channel wait sleeps in). */
static int
wait_in_ppoll(pid_t tid, double secs)
{
    return test_wait_in_syscall(tid, SYS_ppoll, secs);
}

/* ---- one process, one thread --------------------------------------------------- */

TEST(chan_create_and_attach) {
    np_chan *p, *c;
    make_pair(&p, &c, 5000, 0);
    RETURN_IF_FAILED();
    ASSERT_UEQ(np_chan_ring_size(p), 8192);   /* rounded up to 2^k */
    ASSERT_UEQ(np_chan_ring_size(c), 8192);
    /* Both directions, sizes 0..64, all fitting in the ring. */
    for (size_t len = 0; len <= 64; len++) {
        ASSERT_EQ(send_msg(p, len, len, 0), NP_OK);
        ASSERT_EQ(send_msg(c, len, 1000 + len, 0), NP_OK);
        ASSERT_TRUE(recv_check(c, len, len));
        ASSERT_TRUE(recv_check(p, len, 1000 + len));
    }
    /* Nobody ever slept, so nobody rang: no system call per message. */
    np_chan_stats st;
    np_chan_get_stats(p, &st);
    EXPECT_UEQ(st.sent, 65);
    EXPECT_UEQ(st.received, 65);
    EXPECT_UEQ(st.wakes, 0);
    EXPECT_UEQ(st.sleeps, 0);
    EXPECT_EQ(np_chan_peer_status(p), NP_CHAN_PEER_ALIVE);
    EXPECT_EQ(np_chan_peer_status(c), NP_CHAN_PEER_ALIVE);
    np_chan_close(c);
    EXPECT_EQ(np_chan_peer_status(p), NP_CHAN_PEER_CLOSED);
    np_chan_close(p);

    /* The default size, and a tiny request rounded up to the minimum. */
    ASSERT_EQ(np_chan_create(&p, 0, 0), NP_OK);
    EXPECT_UEQ(np_chan_ring_size(p), NP_CHAN_RING_DEFAULT);
    np_chan_close(p);
    ASSERT_EQ(np_chan_create(&p, 1, NP_CHAN_NO_PIDFD), NP_OK);
    EXPECT_UEQ(np_chan_ring_size(p), 4096);
    np_chan_close(p);
}

TEST(chan_attach_rejects_non_channels) {
    np_chan *p, *c = NULL;
    ASSERT_EQ(np_chan_create(&p, 4096, 0), NP_OK);
    int fds[NP_CHAN_NFDS];
    np_chan_child_fds(p, fds);
    /* An eventfd where the memfd belongs: fstat says size 0. */
    int saved = fds[NP_CHAN_FD_MEM];
    fds[NP_CHAN_FD_MEM] = fds[NP_CHAN_FD_BELL0];
    EXPECT_EQ(np_chan_attach(&c, fds), NP_ESYS);
    /* A file of the right size that is not a channel. */
    int junk = memfd_create("junk", MFD_CLOEXEC);
    ASSERT_GE(junk, 0);
    ASSERT_EQ(ftruncate(junk, 4096 + 2 * 4096), 0);
    fds[NP_CHAN_FD_MEM] = junk;
    EXPECT_EQ(np_chan_attach(&c, fds), NP_ESYS);
    EXPECT_EQ(errno, EINVAL);
    close(junk);
    /* A bad fd among the bells. */
    fds[NP_CHAN_FD_MEM] = saved;
    fds[NP_CHAN_FD_BELL2] = 999;
    EXPECT_EQ(np_chan_attach(&c, fds), NP_ESYS);
    EXPECT_EQ(errno, EBADF);
    EXPECT_PTR_EQ(c, NULL);
    np_chan_close(p);
}

TEST(chan_sendv_pieces) {
    np_chan *p, *c;
    make_pair(&p, &c, 4096, 0);
    RETURN_IF_FAILED();
    static unsigned char big[10000];
    fill_payload(big, sizeof big, 7);
    /* Pieces of every kind, empty ones included, a total longer than the
     * ring (so it streams; one thread: alternate non-blocking calls). */
    struct iovec iov[5] = {
        {big, 3}, {NULL, 0}, {big + 3, 5000}, {big + 5003, 0},
        {big + 5003, sizeof big - 5003},
    };
    unsigned char *out = malloc(sizeof big);
    ASSERT_PTR_NE(out, NULL);
    size_t size = 0;
    int rs = NP_ETIMEDOUT, rr = NP_ETIMEDOUT, rounds = 0, got_size = 0;
    while (rs != NP_OK || rr != NP_OK) {
        ASSERT_LT(rounds++, 100);
        if (rs != NP_OK) {
            rs = np_chan_sendv(p, iov, 5, 0);
            ASSERT_TRUE(rs == NP_OK || rs == NP_ETIMEDOUT);
            EXPECT_EQ(np_chan_send_pending(p), rs != NP_OK);
        }
        if (!got_size) {
            rr = np_chan_recv_size(c, &size, 0);
            if (rr == NP_OK) {
                got_size = 1;
                ASSERT_UEQ(size, sizeof big);
                rr = NP_ETIMEDOUT;
            }
        }
        if (got_size && rr != NP_OK) {
            rr = np_chan_recv_data(c, out, 0);
            ASSERT_TRUE(rr == NP_OK || rr == NP_ETIMEDOUT);
        }
    }
    EXPECT_GT(rounds, 2);   /* it did stream */
    EXPECT_EQ(memcmp(out, big, sizeof big), 0);
    free(out);
    np_chan_close(c);
    np_chan_close(p);
}

/* np_chan_sent_pos / np_chan_peer_read_pos: a message counts as read only
 * once the peer has consumed all of it (ProcessPool tells from them whether
 * a dead worker had read its task). */
TEST(chan_read_positions) {
    np_chan *p, *c;
    make_pair(&p, &c, 4096, 0);
    RETURN_IF_FAILED();
    EXPECT_UEQ(np_chan_peer_read_pos(p), np_chan_sent_pos(p));
    ASSERT_EQ(send_msg(p, 100, 1, 0), NP_OK);
    uint64_t end1 = np_chan_sent_pos(p);
    ASSERT_EQ(send_msg(p, 1000, 2, 0), NP_OK);
    uint64_t end2 = np_chan_sent_pos(p);
    EXPECT_GT(end1, np_chan_peer_read_pos(p));
    EXPECT_GT(end2, end1 + 1000 - 1);
    /* The size alone (the header) does not count as reading it. */
    size_t size = 0;
    ASSERT_EQ(np_chan_recv_size(c, &size, 0), NP_OK);
    EXPECT_GT(end1, np_chan_peer_read_pos(p));
    unsigned char buf[1000];
    ASSERT_EQ(np_chan_recv_data(c, buf, 0), NP_OK);
    EXPECT_UEQ(np_chan_peer_read_pos(p), end1);
    EXPECT_TRUE(recv_check(c, 1000, 2));
    EXPECT_UEQ(np_chan_peer_read_pos(p), end2);
    /* A message longer than the ring, read part-way. */
    static unsigned char big[10000];
    ASSERT_EQ(np_chan_send(p, big, sizeof big, 0), NP_ETIMEDOUT);
    ASSERT_EQ(np_chan_recv_size(c, &size, 0), NP_OK);
    ASSERT_UEQ(size, sizeof big);
    static unsigned char out[10000];
    EXPECT_EQ(np_chan_recv_data(c, out, 0), NP_ETIMEDOUT);
    uint64_t mid = np_chan_peer_read_pos(p);
    EXPECT_GT(mid, end2);
    int r = NP_ETIMEDOUT, rr = NP_ETIMEDOUT, rounds = 0;
    while (r != NP_OK || rr != NP_OK) {
        ASSERT_LT(rounds++, 100);
        if (r != NP_OK) {
            r = np_chan_send(p, big, sizeof big, 0);
        }
        if (rr != NP_OK) {
            rr = np_chan_recv_data(c, out, 0);
        }
        if (r != NP_OK) {
            EXPECT_GT(np_chan_sent_pos(p) + sizeof big, np_chan_peer_read_pos(p));
        }
    }
    EXPECT_UEQ(np_chan_peer_read_pos(p), np_chan_sent_pos(p));
    np_chan_close(c);
    np_chan_close(p);
}

TEST(chan_full_ring_timeout_and_discard) {
    np_chan *p, *c;
    make_pair(&p, &c, 4096, 0);
    RETURN_IF_FAILED();
    np_chan_set_spin(p, 0);
    /* Fill the ring: 4096 = 8 messages of 504 + 8 header bytes. */
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(send_msg(p, 504, (uint64_t)i, 0), NP_OK);
    }
    /* A fitting message goes in whole or not at all: not started. */
    int64_t t0 = np_monotonic_ns();
    EXPECT_EQ(send_msg(p, 10, 99, t0 + 30 * MS), NP_ETIMEDOUT);
    EXPECT_GE(np_monotonic_ns() - t0, 30 * MS);
    EXPECT_EQ(np_chan_send_pending(p), 0);
    EXPECT_EQ(send_msg(p, 10, 99, 0), NP_ETIMEDOUT);   /* past deadline */
    /* Discard one, read the next into a caller's buffer. */
    size_t size;
    ASSERT_EQ(np_chan_recv_size(c, &size, 0), NP_OK);
    ASSERT_EQ(np_chan_recv_size(c, &size, 0), NP_OK);   /* same again */
    EXPECT_UEQ(size, 504);
    ASSERT_EQ(np_chan_recv_data(c, NULL, 0), NP_OK);
    ASSERT_TRUE(recv_check(c, 504, 1));
    /* Room again: a different message may go now. */
    EXPECT_EQ(send_msg(p, 11, 100, 0), NP_OK);
    for (int i = 2; i < 8; i++) {
        ASSERT_TRUE(recv_check(c, 504, (uint64_t)i));
    }
    ASSERT_TRUE(recv_check(c, 11, 100));
    /* Empty ring: a receive with a deadline times out. */
    np_chan_set_spin(c, 0);
    t0 = np_monotonic_ns();
    EXPECT_EQ(np_chan_recv_size(c, &size, t0 + 30 * MS), NP_ETIMEDOUT);
    int64_t took = np_monotonic_ns() - t0;
    EXPECT_GE(took, 30 * MS);
    EXPECT_LT(took, 1000 * MS);
    EXPECT_EQ(np_chan_recv_size(c, &size, 0), NP_ETIMEDOUT);
    np_chan_close(c);
    np_chan_close(p);
}

TEST(chan_orderly_close) {
    np_chan *p, *c;
    make_pair(&p, &c, 4096, 0);
    RETURN_IF_FAILED();
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(send_msg(c, 100, (uint64_t)i, 0), NP_OK);
    }
    np_chan_close(c);
    /* What was sent before the close is still delivered, then ECLOSED. */
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(recv_check(p, 100, (uint64_t)i));
    }
    size_t size;
    EXPECT_EQ(np_chan_recv_size(p, &size, NP_FOREVER), NP_ECLOSED);
    EXPECT_EQ(send_msg(p, 1, 1, NP_FOREVER), NP_ECLOSED);
    EXPECT_EQ(np_chan_peer_status(p), NP_CHAN_PEER_CLOSED);
    np_chan_close(p);
}

/* ---- two threads ------------------------------------------------------------- */

typedef struct {
    np_chan *ch;
    long n;
    size_t max_len;
    uint64_t seed;
    _Atomic pid_t tid;
    _Atomic int result;
    _Atomic int done;
} peer_arg;

/* Echo every message back until the peer closes. */
static void *
echo_thread(void *arg)
{
    peer_arg *a = arg;
    atomic_store(&a->tid, test_gettid());
    for (;;) {
        unsigned char *m;
        size_t len;
        int r = recv_msg(a->ch, &m, &len, NP_FOREVER);
        if (r != NP_OK) {
            atomic_store(&a->result, r);
            break;
        }
        do {
            r = np_chan_send(a->ch, m, len, NP_FOREVER);
        } while (r == NP_EINTR);
        free(m);
        if (r != NP_OK) {
            atomic_store(&a->result, r);
            break;
        }
    }
    atomic_store(&a->done, 1);
    return NULL;
}

/* Send n messages of random lengths in [0, max_len] with seeds seed + i. */
static void *
sender_thread(void *arg)
{
    peer_arg *a = arg;
    atomic_store(&a->tid, test_gettid());
    uint64_t rnd = a->seed;
    int r = NP_OK;
    for (long i = 0; i < a->n && r == NP_OK; i++) {
        rnd = mix(rnd + 1);
        r = send_msg(a->ch, (size_t)(rnd % (a->max_len + 1)), a->seed + (uint64_t)i,
                     NP_FOREVER);
    }
    atomic_store(&a->result, r);
    atomic_store(&a->done, 1);
    return NULL;
}

/* Receive what sender_thread sends; EXPECTs on mismatch. */
static void *
receiver_thread(void *arg)
{
    peer_arg *a = arg;
    atomic_store(&a->tid, test_gettid());
    uint64_t rnd = a->seed;
    long i;
    for (i = 0; i < a->n; i++) {
        rnd = mix(rnd + 1);
        if (!recv_check(a->ch, (size_t)(rnd % (a->max_len + 1)),
                        a->seed + (uint64_t)i)) {
            break;
        }
    }
    atomic_store(&a->result, i == a->n ? NP_OK : -100);
    atomic_store(&a->done, 1);
    return NULL;
}

static void
pingpong_threads(int64_t spin)
{
    np_chan *p, *c;
    make_pair(&p, &c, 0, 0);
    RETURN_IF_FAILED();
    np_chan_set_spin(p, spin);
    np_chan_set_spin(c, spin);
    static peer_arg a;
    memset(&a, 0, sizeof a);
    a.ch = c;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, echo_thread, &a), 0);
    /* Sleeping each time costs ~40 us per hop on a small VM: fewer. */
    long n = test_scaled(spin ? 20000 : 5000, 500);
    int64_t t0 = np_monotonic_ns();
    for (long i = 0; i < n; i++) {
        ASSERT_EQ(send_msg(p, 64, (uint64_t)i, NP_FOREVER), NP_OK);
        ASSERT_TRUE(recv_check(p, 64, (uint64_t)i));
    }
    TEST_LOG("spin %lld: %.2f us/round trip", (long long)spin,
             (double)(np_monotonic_ns() - t0) / 1e3 / (double)n);
    np_chan_close(p);   /* the echo thread sees ECLOSED */
    pthread_join(th, NULL);
    EXPECT_EQ(atomic_load(&a.result), NP_ECLOSED);
    np_chan_close(c);
}

TEST(chan_threads_pingpong_spin) { pingpong_threads(NP_CHAN_SPIN_DEFAULT_NS); }
TEST(chan_threads_pingpong_nospin) { pingpong_threads(0); }

/* A small ring and messages up to 3x its size: wrap-around, streaming, and
 * both sides sleeping on full / empty rings, in both directions at once
 * (four threads, two per endpoint). */
TEST(chan_threads_stream_duplex) {
    np_chan *p, *c;
    make_pair(&p, &c, 4096, 0);
    RETURN_IF_FAILED();
    static peer_arg a[4];
    memset(a, 0, sizeof a);
    long n = test_scaled(20000, 1000);
    for (int i = 0; i < 4; i++) {
        a[i].n = n;
        a[i].max_len = 3 * 4096 + 5;
        a[i].seed = i < 2 ? 11 : 22;
    }
    a[0].ch = p;   /* parent writes ring 0, child reads */
    a[1].ch = c;
    a[2].ch = c;   /* child writes ring 1, parent reads */
    a[3].ch = p;
    /* Sleep at once now and then, so the doorbell path gets exercised. */
    np_chan_set_spin(p, 2000);
    np_chan_set_spin(c, 0);
    pthread_t th[4];
    ASSERT_EQ(pthread_create(&th[0], NULL, sender_thread, &a[0]), 0);
    ASSERT_EQ(pthread_create(&th[1], NULL, receiver_thread, &a[1]), 0);
    ASSERT_EQ(pthread_create(&th[2], NULL, sender_thread, &a[2]), 0);
    ASSERT_EQ(pthread_create(&th[3], NULL, receiver_thread, &a[3]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(atomic_load(&a[i].result), NP_OK);
    }
    np_chan_stats sp, sc;
    np_chan_get_stats(p, &sp);
    np_chan_get_stats(c, &sc);
    EXPECT_UEQ(sp.sent, (uint64_t)n);
    EXPECT_UEQ(sp.received, (uint64_t)n);
    EXPECT_UEQ(sc.sent, (uint64_t)n);
    EXPECT_UEQ(sc.received, (uint64_t)n);
    TEST_LOG("parent wakes %llu sleeps %llu, child wakes %llu sleeps %llu",
             (unsigned long long)sp.wakes, (unsigned long long)sp.sleeps,
             (unsigned long long)sc.wakes, (unsigned long long)sc.sleeps);
    np_chan_close(c);
    np_chan_close(p);
}

/* A reader sleeping in ppoll is woken by a message, by a close, and burns
 * no CPU while it sleeps. */
static int64_t
thread_cpu_ns(pthread_t th)
{
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &cid) != 0 || clock_gettime(cid, &ts) != 0) {
        return -1;
    }
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct {
    np_chan *ch;
    int64_t deadline;
    _Atomic pid_t tid;
    _Atomic int result;
    _Atomic int done;
    size_t size;
} waiter_arg;

static void *
recv_size_thread(void *arg)
{
    waiter_arg *w = arg;
    atomic_store(&w->tid, test_gettid());
    atomic_store(&w->result, np_chan_recv_size(w->ch, &w->size, w->deadline));
    atomic_store(&w->done, 1);
    return NULL;
}

static void *
send_big_thread(void *arg)
{
    waiter_arg *w = arg;
    atomic_store(&w->tid, test_gettid());
    atomic_store(&w->result, send_msg(w->ch, w->size, 5, w->deadline));
    atomic_store(&w->done, 1);
    return NULL;
}

TEST(chan_sleeping_reader_woken_no_cpu) {
    np_chan *p, *c;
    make_pair(&p, &c, 0, 0);
    RETURN_IF_FAILED();
    static waiter_arg w;
    memset(&w, 0, sizeof w);
    w.ch = p;
    w.deadline = NP_FOREVER;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, recv_size_thread, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(wait_in_ppoll(atomic_load(&w.tid), 5));
    int64_t cpu0 = thread_cpu_ns(th);
    test_sleep_ms(200);
    int64_t cpu = thread_cpu_ns(th) - cpu0;
    EXPECT_LT(cpu, 20 * MS);   /* parked, not spinning */
    EXPECT_EQ(atomic_load(&w.done), 0);
    ASSERT_EQ(send_msg(c, 42, 1, 0), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.done), 5));
    pthread_join(th, NULL);
    EXPECT_EQ(atomic_load(&w.result), NP_OK);
    EXPECT_UEQ(w.size, 42);
    ASSERT_TRUE(recv_check(p, 42, 1));
    np_chan_stats st;
    np_chan_get_stats(c, &st);
    EXPECT_UEQ(st.wakes, 1);   /* one message to a sleeper: one ring */

    /* Woken by the peer's close. */
    memset(&w, 0, sizeof w);
    w.ch = p;
    w.deadline = NP_FOREVER;
    ASSERT_EQ(pthread_create(&th, NULL, recv_size_thread, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(wait_in_ppoll(atomic_load(&w.tid), 5));
    np_chan_close(c);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.done), 5));
    pthread_join(th, NULL);
    EXPECT_EQ(atomic_load(&w.result), NP_ECLOSED);
    np_chan_close(p);
}

/* ---- signals ------------------------------------------------------------------ */

static void *
wait_any_thread(void *arg)
{
    waiter_arg *w = arg;
    atomic_store(&w->tid, test_gettid());
    unsigned char ready[1];
    atomic_store(&w->result, np_chan_wait_any(&w->ch, 1, -1, ready, w->deadline));
    atomic_store(&w->done, 1);
    return NULL;
}

/* Start fn in a thread, wait until it sleeps in ppoll, signal it: the call
 * returns NP_EINTR (not before the handler ran). */
static void
expect_eintr(void *(*fn)(void *), waiter_arg *w)
{
    atomic_store(&test_sigusr1_count, 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, fn, w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w->tid) != 0, 5));
    ASSERT_TRUE(wait_in_ppoll(atomic_load(&w->tid), 5));
    ASSERT_EQ(pthread_kill(th, SIGUSR1), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w->done), 5));
    pthread_join(th, NULL);
    EXPECT_EQ(atomic_load(&w->result), NP_EINTR);
    EXPECT_EQ(atomic_load(&test_sigusr1_count), 1);
}

TEST(chan_eintr) {
    test_install_sigusr1();
    np_chan *p, *c;
    make_pair(&p, &c, 4096, 0);
    RETURN_IF_FAILED();
    np_chan_set_spin(p, 0);
    static waiter_arg w;

    /* A receive. */
    memset(&w, 0, sizeof w);
    w.ch = p;
    w.deadline = NP_FOREVER;
    expect_eintr(recv_size_thread, &w);
    RETURN_IF_FAILED();
    /* ... which works afterwards. */
    ASSERT_EQ(send_msg(c, 3, 3, 0), NP_OK);
    ASSERT_TRUE(recv_check(p, 3, 3));

    /* A wait on many channels. */
    memset(&w, 0, sizeof w);
    w.ch = p;
    w.deadline = NP_FOREVER;
    expect_eintr(wait_any_thread, &w);
    RETURN_IF_FAILED();

    /* A send streaming a message 3x the ring: interrupted part-way, and
     * resumed by calling again (send_msg does), then read whole. */
    memset(&w, 0, sizeof w);
    w.ch = p;
    w.deadline = NP_FOREVER;
    w.size = 3 * 4096;
    atomic_store(&test_sigusr1_count, 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, send_big_thread, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(wait_in_ppoll(atomic_load(&w.tid), 5));
    ASSERT_EQ(pthread_kill(th, SIGUSR1), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&test_sigusr1_count) == 1, 5));
    ASSERT_TRUE(recv_check(c, 3 * 4096, 5));
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.done), 5));
    pthread_join(th, NULL);
    EXPECT_EQ(atomic_load(&w.result), NP_OK);
    np_chan_close(c);
    np_chan_close(p);
}

/* ---- forked children ------------------------------------------------------------ */

static void
child_echo(np_chan *ch, void *arg)
{
    (void)arg;
    for (;;) {
        unsigned char *m;
        size_t len;
        int r = recv_msg(ch, &m, &len, NP_FOREVER);
        if (r == NP_ECLOSED) {
            return;
        }
        EXPECT_EQ(r, NP_OK);
        if (r != NP_OK) {
            return;
        }
        r = np_chan_send(ch, m, len, NP_FOREVER);
        free(m);
        EXPECT_EQ(r, NP_OK);
    }
}

TEST(chan_fork_roundtrips) {
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, 0, 0), NP_OK);
    pid_t pid = fork_child(p, child_echo, NULL);
    long n = test_scaled(20000, 1000);
    int64_t t0 = np_monotonic_ns();
    for (long i = 0; i < n; i++) {
        ASSERT_EQ(send_msg(p, 64, (uint64_t)i, NP_FOREVER), NP_OK);
        if (!recv_check(p, 64, (uint64_t)i)) {
            break;
        }
    }
    TEST_LOG("%.2f us/round trip", (double)(np_monotonic_ns() - t0) / 1e3 / (double)n);
    np_chan_close(p);
    EXPECT_EXITED_OK(test_reap(pid, 10));
}

/* The child sends n messages (seed = index, random lengths < 200) and then
 * receives n and checks them. */
static void
child_stream(np_chan *ch, void *arg)
{
    long n = *(long *)arg;
    uint64_t rnd = 1;
    for (long i = 0; i < n; i++) {
        rnd = mix(rnd + 1);
        if (send_msg(ch, (size_t)(rnd % 200), (uint64_t)i, NP_FOREVER) != NP_OK) {
            EXPECT_TRUE(0);
            return;
        }
    }
    rnd = 2;
    for (long i = 0; i < n; i++) {
        rnd = mix(rnd + 1);
        if (!recv_check(ch, (size_t)(rnd % 200), (uint64_t)i)) {
            return;
        }
    }
}

TEST(chan_fork_order_100k) {
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, 64 * 1024, 0), NP_OK);
    static long n;
    n = test_scaled(100000, 5000);
    pid_t pid = fork_child(p, child_stream, &n);
    /* Child -> parent: every message, in order, intact. */
    uint64_t rnd = 1;
    long i;
    for (i = 0; i < n; i++) {
        rnd = mix(rnd + 1);
        if (!recv_check(p, (size_t)(rnd % 200), (uint64_t)i)) {
            break;
        }
    }
    EXPECT_EQ(i, n);
    /* Parent -> child. */
    rnd = 2;
    for (i = 0; i < n; i++) {
        rnd = mix(rnd + 1);
        ASSERT_EQ(send_msg(p, (size_t)(rnd % 200), (uint64_t)i, NP_FOREVER), NP_OK);
    }
    EXPECT_EXITED_OK(test_reap(pid, 30));
    np_chan_close(p);
}

TEST(chan_fork_sizes) {
    const size_t cap = 16384;
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, cap, 0), NP_OK);
    pid_t pid = fork_child(p, child_echo, NULL);
    size_t sizes[] = {
        0, 1, 7, 8, 9,
        cap - 9, cap - 8, cap - 7,     /* the frame exactly fills the ring */
        cap - 1, cap, cap + 1, 2 * cap + 3,
        (size_t)5 << 20, ((size_t)5 << 20) + 1,
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ASSERT_EQ(send_msg(p, sizes[i], 100 + i, NP_FOREVER), NP_OK);
        if (!recv_check(p, sizes[i], 100 + i)) {
            FAIL("size %zu", sizes[i]);
        }
    }
    /* Random sizes up to 4 ring lengths, one at a time (the echo reads a
     * whole message before it answers, so a streaming one cannot jam). */
    uint64_t rnd = 9;
    for (int i = 0; i < 100; i++) {
        rnd = mix(rnd + 1);
        size_t len = (size_t)(rnd % (4 * cap));
        ASSERT_EQ(send_msg(p, len, rnd, NP_FOREVER), NP_OK);
        ASSERT_TRUE(recv_check(p, len, rnd));
    }
    /* Batches of small random sizes in flight at once: the frames of a
     * batch fit in the ring together, so neither side blocks writing. */
    for (int round = 0; round < 200; round++) {
        size_t len[8], used = 0;
        uint64_t seed[8];
        int nb;
        for (nb = 0; nb < 8; nb++) {
            rnd = mix(rnd + 1);
            len[nb] = (size_t)(rnd % 1000);
            seed[nb] = rnd;
            used += 8 + ((len[nb] + 7) & ~(size_t)7);
            if (used > cap) {
                break;
            }
            ASSERT_EQ(send_msg(p, len[nb], seed[nb], 0), NP_OK);
        }
        for (int k = 0; k < nb; k++) {
            ASSERT_TRUE(recv_check(p, len[k], seed[k]));
        }
    }
    np_chan_close(p);
    EXPECT_EXITED_OK(test_reap(pid, 30));
}

/* ---- deaths ------------------------------------------------------------------------- */

enum { DIE_EXIT, DIE_SIGKILL, DIE_SEGFAULT };

/* Send one message, wait a little, then die the given way without closing. */
static void
child_die(np_chan *ch, void *arg)
{
    int how = *(int *)arg;
    EXPECT_EQ(send_msg(ch, 10, 77, NP_FOREVER), NP_OK);
    test_sleep_ms(50);
    fflush(stdout);
    switch (how) {
    case DIE_EXIT:
        _exit(0);
    case DIE_SIGKILL:
        raise(SIGKILL);
        break;
    case DIE_SEGFAULT: {
        /* The default action, not a sanitizer's report; and no core. */
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        break;
    }
    }
    _exit(9);
}

static void
expect_child_death_seen(int how, int flags)
{
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, 4096, flags), NP_OK);
    np_chan_set_spin(p, 0);
    static int h;
    h = how;
    pid_t pid = fork_child(p, child_die, &h);
    /* The message sent before dying arrives; then the death, promptly,
     * while we sleep with no deadline. */
    ASSERT_TRUE(recv_check(p, 10, 77));
    size_t size;
    int64_t t0 = np_monotonic_ns();
    EXPECT_EQ(np_chan_recv_size(p, &size, NP_FOREVER), NP_ECLOSED);
    int64_t took = np_monotonic_ns() - t0;
    EXPECT_LT(took, 2000 * MS);
    TEST_LOG("death seen after %.1f ms (child slept 50 ms)", (double)took / 1e6);
    EXPECT_EQ(np_chan_peer_status(p), NP_CHAN_PEER_DEAD);
    EXPECT_EQ(send_msg(p, 1, 1, NP_FOREVER), NP_ECLOSED);
    int status = test_reap(pid, 10);
    if (how == DIE_EXIT) {
        EXPECT_EXITED_OK(status);
    }
    else {
        EXPECT_TRUE(status != -1 && WIFSIGNALED(status));
        EXPECT_EQ(WTERMSIG(status), how == DIE_SIGKILL ? SIGKILL : SIGSEGV);
    }
    np_chan_close(p);
}

TEST(chan_child_exit_seen) { expect_child_death_seen(DIE_EXIT, 0); }
TEST(chan_child_sigkill_seen) { expect_child_death_seen(DIE_SIGKILL, 0); }
TEST(chan_child_segfault_seen) { expect_child_death_seen(DIE_SEGFAULT, 0); }
TEST(chan_child_exit_seen_pipes) { expect_child_death_seen(DIE_EXIT, NP_CHAN_NO_PIDFD); }
TEST(chan_child_sigkill_seen_pipes) {
    expect_child_death_seen(DIE_SIGKILL, NP_CHAN_NO_PIDFD);
}

/* The child reads nothing and is killed while we are blocked writing into
 * its full ring. */
static void
child_sleep_forever(np_chan *ch, void *arg)
{
    (void)ch;
    (void)arg;
    for (;;) {
        pause();
    }
}

TEST(chan_writer_blocked_sees_death) {
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, 4096, 0), NP_OK);
    pid_t pid = fork_child(p, child_sleep_forever, NULL);
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(send_msg(p, 504, (uint64_t)i, 0), NP_OK);
    }
    EXPECT_EQ(send_msg(p, 1, 1, np_monotonic_ns() + 20 * MS), NP_ETIMEDOUT);
    int64_t t0 = np_monotonic_ns();
    /* A streaming message waits for room when the reader dies. */
    kill(pid, SIGKILL);
    EXPECT_EQ(send_msg(p, 100000, 1, NP_FOREVER), NP_ECLOSED);
    EXPECT_LT(np_monotonic_ns() - t0, 2000 * MS);
    int status = test_reap(pid, 10);
    EXPECT_TRUE(status != -1 && WIFSIGNALED(status));
    np_chan_close(p);
}

/* The parent of the channel dies; its child must notice.  The test process
 * is a subreaper so it can reap the orphaned grandchild. */
static void
grandchild_wait_parent(np_chan *ch, void *arg)
{
    (void)arg;
    np_chan_set_spin(ch, 0);
    size_t size;
    int64_t t0 = np_monotonic_ns();
    int r = np_chan_recv_size(ch, &size, np_monotonic_ns() + 10000 * MS);
    EXPECT_EQ(r, NP_ECLOSED);
    EXPECT_EQ(np_chan_peer_status(ch), NP_CHAN_PEER_DEAD);
    EXPECT_LT(np_monotonic_ns() - t0, 5000 * MS);
    EXPECT_EQ(send_msg(ch, 1, 1, NP_FOREVER), NP_ECLOSED);
}

static void
expect_parent_death_seen(int flags, int how)
{
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int gc_pipe[2];
    ASSERT_EQ(pipe(gc_pipe), 0);
    fflush(stdout);
    pid_t mid = fork();
    ASSERT_GE(mid, 0);
    if (mid == 0) {
        close(gc_pipe[0]);
        np_chan *p;
        if (np_chan_create(&p, 4096, flags) != NP_OK) {
            _exit(2);
        }
        pid_t gc = fork_child(p, grandchild_wait_parent, NULL);
        if (write(gc_pipe[1], &gc, sizeof gc) != sizeof gc) {
            _exit(3);
        }
        test_sleep_ms(50);   /* let it sleep in ppoll */
        if (how == DIE_SIGKILL) {
            raise(SIGKILL);
        }
        _exit(0);   /* without np_chan_close */
    }
    close(gc_pipe[1]);
    pid_t gc = -1;
    ASSERT_EQ(read(gc_pipe[0], &gc, sizeof gc), (ssize_t)sizeof gc);
    close(gc_pipe[0]);
    int st = test_reap(mid, 10);
    EXPECT_TRUE(st != -1);
    int gst = test_reap(gc, 10);   /* ours now, as the subreaper */
    EXPECT_EXITED_OK(gst);
}

TEST(chan_parent_exit_seen) { expect_parent_death_seen(0, DIE_EXIT); }
TEST(chan_parent_sigkill_seen) { expect_parent_death_seen(0, DIE_SIGKILL); }
TEST(chan_parent_exit_seen_pipes) {
    expect_parent_death_seen(NP_CHAN_NO_PIDFD, DIE_EXIT);
}
TEST(chan_parent_sigkill_seen_pipes) {
    expect_parent_death_seen(NP_CHAN_NO_PIDFD, DIE_SIGKILL);
}

/* child_started after the child is gone and reaped: the pidfd cannot be
 * had; the pipe says it is gone. */
static void
child_nothing(np_chan *ch, void *arg)
{
    (void)ch;
    (void)arg;
}

TEST(chan_child_started_late) {
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, 4096, 0), NP_OK);
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int fds[NP_CHAN_NFDS];
        np_chan *mine;
        np_chan_child_fds(p, fds);
        if (np_chan_attach(&mine, fds) != NP_OK) {
            _exit(1);
        }
        np_chan_forget(p);
        child_nothing(mine, NULL);
        _exit(0);   /* without closing */
    }
    EXPECT_EXITED_OK(test_reap(pid, 10));
    EXPECT_EQ(np_chan_child_started(p, pid), NP_ECLOSED);
    size_t size;
    EXPECT_EQ(np_chan_recv_size(p, &size, NP_FOREVER), NP_ECLOSED);
    np_chan_close(p);
}

/* The reader has taken part of a long message when the writer dies: the
 * rest never comes, and the read says so instead of waiting forever. */
static void
child_send_huge(np_chan *ch, void *arg)
{
    (void)arg;
    /* Stream the start of a 1 MiB message, give up part-way, then hang. */
    EXPECT_EQ(send_msg(ch, 1 << 20, 3, np_monotonic_ns() + 5 * MS), NP_ETIMEDOUT);
    EXPECT_EQ(np_chan_send_pending(ch), 1);
    for (;;) {
        pause();
    }
}

TEST(chan_reader_mid_message_sees_death) {
    np_chan *p;
    ASSERT_EQ(np_chan_create(&p, 4096, 0), NP_OK);
    np_chan_set_spin(p, 0);
    pid_t pid = fork_child(p, child_send_huge, NULL);
    size_t size;
    ASSERT_EQ(np_chan_recv_size(p, &size, np_deadline_after(10)), NP_OK);
    ASSERT_UEQ(size, 1 << 20);
    unsigned char *buf = malloc(size);
    ASSERT_PTR_NE(buf, NULL);
    /* Let the writer give up (its ring is full: we are not reading), take
     * what is in the ring, then kill the writer while we wait for more. */
    test_sleep_ms(50);
    EXPECT_EQ(np_chan_recv_data(p, buf, np_monotonic_ns() + 20 * MS), NP_ETIMEDOUT);
    kill(pid, SIGKILL);
    int64_t t0 = np_monotonic_ns();
    EXPECT_EQ(np_chan_recv_data(p, buf, NP_FOREVER), NP_ECLOSED);
    EXPECT_LT(np_monotonic_ns() - t0, 2000 * MS);
    free(buf);
    int status = test_reap(pid, 10);
    EXPECT_TRUE(status != -1 && WIFSIGNALED(status));
    np_chan_close(p);
}

/* Nothing is left behind: no fd, no mapping, on either side. */
static int
count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            n++;
        }
    }
    return n;
}

static int
count_chan_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) {
        return 0;
    }
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, "nativepool-chan") != NULL;
    }
    fclose(f);
    return n;
}

static void
child_check_clean(np_chan *ch, void *arg)
{
    int base = *(int *)arg;
    /* Attached: our fds are 4 bells, the parent watch, the life pipe. */
    EXPECT_EQ(count_fds(), base + 6);
    EXPECT_EQ(count_chan_maps(), 1);
    EXPECT_EQ(send_msg(ch, 5, 5, NP_FOREVER), NP_OK);
}

TEST(chan_no_leftovers) {
    int base = count_fds();
    ASSERT_EQ(count_chan_maps(), 0);
    for (int flags = 0; flags <= NP_CHAN_NO_PIDFD; flags += NP_CHAN_NO_PIDFD) {
        np_chan *p, *c;
        make_pair(&p, &c, 4096, flags);
        RETURN_IF_FAILED();
        EXPECT_EQ(count_chan_maps(), 2);
        np_chan_close(c);
        np_chan_close(p);
        EXPECT_EQ(count_fds(), base);
        EXPECT_EQ(count_chan_maps(), 0);

        ASSERT_EQ(np_chan_create(&p, 4096, flags), NP_OK);
        static int b;
        b = base;
        pid_t pid = fork_child(p, child_check_clean, &b);
        ASSERT_TRUE(recv_check(p, 5, 5));
        /* Parent after child_started: 4 bells and the watch fd, plus with
         * pipes the write end of the child's parent-watch pipe. */
        EXPECT_EQ(count_fds(), base + 5 + (flags ? 1 : 0));
        EXPECT_EXITED_OK(test_reap(pid, 10));
        np_chan_close(p);
        EXPECT_EQ(count_fds(), base);
        EXPECT_EQ(count_chan_maps(), 0);
    }
}

/* ---- many channels --------------------------------------------------------------- */

/* Child k: wait k * 15 ms, send its number, wait for "go on", send it
 * again; child 2 then dies instead of answering the second time. */
static void
child_numbered(np_chan *ch, void *arg)
{
    int k = *(int *)arg;
    test_sleep_ms(15.0 * k);
    EXPECT_EQ(send_msg(ch, 8, (uint64_t)k, NP_FOREVER), NP_OK);
    unsigned char *m;
    size_t len;
    if (recv_msg(ch, &m, &len, NP_FOREVER) != NP_OK) {
        EXPECT_TRUE(0);
        return;
    }
    free(m);
    if (k == 2) {
        _exit(0);
    }
    EXPECT_EQ(send_msg(ch, 100 + (size_t)k, (uint64_t)(10 + k), NP_FOREVER), NP_OK);
    /* Wait for the close. */
    EXPECT_EQ(recv_msg(ch, &m, &len, NP_FOREVER), NP_ECLOSED);
}

TEST(chan_wait_any_4_children) {
    enum { N = 4 };
    np_chan *ch[N];
    pid_t pid[N];
    static int ks[N];
    for (int k = 0; k < N; k++) {
        ASSERT_EQ(np_chan_create(&ch[k], 4096, 0), NP_OK);
    }
    /* Every child forgets its siblings' channels, inherited by fork. */
    fork_siblings = ch;
    fork_nsiblings = N;
    for (int k = 0; k < N; k++) {
        ks[k] = k;
        pid[k] = fork_child(ch[k], child_numbered, &ks[k]);
    }
    fork_nsiblings = 0;
    for (int k = 0; k < N; k++) {
        np_chan_set_spin(ch[k], k == 0 ? 20000 : 0);
    }
    int bell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ASSERT_GE(bell, 0);
    unsigned char ready[N + 1];
    int got[N] = {0}, phase2[N] = {0}, closed[N] = {0};
    int order[N], norder = 0;
    int64_t deadline = np_monotonic_ns() + 20000 * MS;
    int events = 0;
    while (events < 2 * N) {
        /* A collector drops a channel once its peer is gone (it would be
         * ready forever). */
        np_chan *set[N];
        int idx[N], ns = 0;
        for (int k = 0; k < N; k++) {
            if (!closed[k]) {
                idx[ns] = k;
                set[ns++] = ch[k];
            }
        }
        int r = np_chan_wait_any(set, (size_t)ns, bell, ready, deadline);
        ASSERT_GT(r, 0);
        ASSERT_EQ(ready[ns], 0);
        int seen = 0;
        for (int j = 0; j < ns; j++) {
            int k = idx[j];
            if (!ready[j]) {
                continue;
            }
            seen++;
            unsigned char *m;
            size_t len;
            int rr = recv_msg(ch[k], &m, &len, 0);
            if (rr == NP_ECLOSED) {
                ASSERT_EQ(k, 2);
                ASSERT_EQ(closed[k], 0);
                EXPECT_EQ(np_chan_peer_status(ch[k]), NP_CHAN_PEER_DEAD);
                closed[k] = 1;
                events++;
                continue;
            }
            ASSERT_EQ(rr, NP_OK);
            if (!got[k]) {
                EXPECT_TRUE(len == 8 && msg_ok(m, len, (uint64_t)k));
                got[k] = 1;
                order[norder++] = k;
                EXPECT_EQ(send_msg(ch[k], 1, 0, NP_FOREVER), NP_OK);
            }
            else {
                EXPECT_TRUE(len == 100 + (size_t)k && msg_ok(m, len, (uint64_t)(10 + k)));
                phase2[k] = 1;
            }
            free(m);
            events++;
        }
        EXPECT_EQ(seen, r);
    }
    /* Staggered starts: normally heard in the order they spoke (only
     * logged: a loaded machine may reorder them). */
    TEST_LOG("heard in order %d %d %d %d", order[0], order[1], order[2], order[3]);
    for (int k = 0; k < N; k++) {
        EXPECT_EQ(got[k], 1);
        EXPECT_EQ(phase2[k], k != 2);
        EXPECT_EQ(closed[k], k == 2);
    }
    /* The extra fd wakes the collector, with nothing else ready. */
    uint64_t one = 1;
    ASSERT_EQ(write(bell, &one, sizeof one), (ssize_t)sizeof one);
    np_chan *live[3] = {ch[0], ch[1], ch[3]};
    int r = np_chan_wait_any(live, 3, bell, ready, np_monotonic_ns() + 5000 * MS);
    EXPECT_EQ(r, 1);
    EXPECT_EQ(ready[3], 1);
    EXPECT_EQ(ready[0] + ready[1] + ready[2], 0);
    /* Nothing at all: a deadline. */
    ASSERT_EQ(read(bell, &one, sizeof one), (ssize_t)sizeof one);
    int64_t t0 = np_monotonic_ns();
    EXPECT_EQ(np_chan_wait_any(live, 3, bell, ready, t0 + 30 * MS), NP_ETIMEDOUT);
    EXPECT_GE(np_monotonic_ns() - t0, 30 * MS);
    close(bell);
    for (int k = 0; k < N; k++) {
        np_chan_close(ch[k]);
    }
    for (int k = 0; k < N; k++) {
        EXPECT_EXITED_OK(test_reap(pid[k], 10));
    }
}

static const test_case TESTS[] = {
    TEST_ENTRY(chan_create_and_attach),
    TEST_ENTRY(chan_attach_rejects_non_channels),
    TEST_ENTRY(chan_sendv_pieces),
    TEST_ENTRY(chan_read_positions),
    TEST_ENTRY(chan_full_ring_timeout_and_discard),
    TEST_ENTRY(chan_orderly_close),
    TEST_ENTRY(chan_threads_pingpong_spin),
    TEST_ENTRY(chan_threads_pingpong_nospin),
    TEST_ENTRY(chan_threads_stream_duplex),
    TEST_ENTRY(chan_sleeping_reader_woken_no_cpu),
    TEST_ENTRY(chan_eintr),
    TEST_ENTRY(chan_fork_roundtrips),
    TEST_ENTRY(chan_fork_order_100k),
    TEST_ENTRY(chan_fork_sizes),
    TEST_ENTRY(chan_child_exit_seen),
    TEST_ENTRY(chan_child_sigkill_seen),
    TEST_ENTRY(chan_child_segfault_seen),
    TEST_ENTRY(chan_child_exit_seen_pipes),
    TEST_ENTRY(chan_child_sigkill_seen_pipes),
    TEST_ENTRY(chan_writer_blocked_sees_death),
    TEST_ENTRY(chan_parent_exit_seen),
    TEST_ENTRY(chan_parent_sigkill_seen),
    TEST_ENTRY(chan_parent_exit_seen_pipes),
    TEST_ENTRY(chan_parent_sigkill_seen_pipes),
    TEST_ENTRY(chan_child_started_late),
    TEST_ENTRY(chan_reader_mid_message_sees_death),
    TEST_ENTRY(chan_no_leftovers),
    TEST_ENTRY(chan_wait_any_4_children),
};

int
main(int argc, char **argv)
{
    return TEST_MAIN(argc, argv, TESTS);
}
