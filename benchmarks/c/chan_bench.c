/*
 * chan_bench.c -- pipes vs the shared-memory ring (np_chan) between a parent
 * and a forked child, the measurement behind the ProcessPool channel choice.
 *
 *   (a) rtt      round trip of a 64-byte message (send, child echoes, recv)
 *   (b) stream   64-byte messages one way, the child reading as fast as it
 *                can, one ack at the end
 *   (c) reqresp  request/response with many in flight, as a pool does it: a
 *                submitter thread sends N requests, a collector thread takes
 *                the N responses, the child answers each request
 *   (d) big      one 64 MiB message one way (into a buffer the child
 *                touched beforehand), 1-byte ack
 *
 * Designs:
 *   pipe  two pipes with length-prefixed frames: one writev per message, the
 *         reader reads into a 256 KiB buffer and parses frames out of it (a
 *         long payload is read straight into its destination).  Pipe
 *         capacity set to the ring size, for a like-for-like buffer.
 *   shm   np_chan: memfd rings + eventfd doorbells (np_chan.h).
 * each with the waiting side spinning for 0, 20 or 50 us before it sleeps
 * (for pipes "spinning" is retrying the non-blocking read/write).
 *
 * Every cell is the median of R runs (default 5), runs interleaved across
 * designs.  "cpu" is the CPU time of both processes (all threads) divided
 * by the messages: what the spinning costs.
 *
 *   make -C benchmarks/c run            full run
 *   ./chan_bench -q                     quick (sizes / 5)
 *   ./chan_bench -r 9 -t rtt,reqresp    more runs, some tests
 *   ./chan_bench -s 1024 -t big         1 MiB rings and pipes
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "np_chan.h"

static size_t RING = (size_t)256 * 1024;   /* -s KiB */
#define SMALL 64

enum { PIPE, SHM };
static const char *design_name[] = {"pipe", "shm"};

/* ---- the two transports behind one interface -------------------------------- */

typedef struct {
    int design;
    int64_t spin_ns;
    np_chan *ch;
    int rfd, wfd;
    unsigned char *rbuf;
    size_t rbeg, rend;
} ep_t;

#define RBUF (256 * 1024)

static void
die(const char *what)
{
    perror(what);
    exit(2);
}

/* Wait for fd to be ready after EAGAIN: retry at once while within the spin
 * budget (measured from *t0, set on the first EAGAIN of an operation), then
 * poll. */
static void
pipe_wait(ep_t *e, int fd, short events, int64_t *t0)
{
    if (e->spin_ns > 0) {
        int64_t now = np_monotonic_ns();
        if (*t0 == 0) {
            *t0 = now;
        }
        if (now - *t0 < e->spin_ns) {
            return;   /* retry the syscall: a pipe's "spin" */
        }
    }
    struct pollfd p = {fd, events, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

static void
pipe_write_all(ep_t *e, struct iovec *iov, int n)
{
    int64_t t0 = 0;
    while (n > 0) {
        ssize_t w = writev(e->wfd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN) {
                pipe_wait(e, e->wfd, POLLOUT, &t0);
                continue;
            }
            die("writev");
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static void
ep_send(ep_t *e, const void *buf, size_t len)
{
    if (e->design == SHM) {
        if (np_chan_send(e->ch, buf, len, NP_FOREVER) != NP_OK) {
            fprintf(stderr, "np_chan_send failed\n");
            exit(2);
        }
        return;
    }
    uint64_t hdr = len;
    struct iovec iov[2] = {{&hdr, 8}, {(void *)buf, len}};
    pipe_write_all(e, iov, len ? 2 : 1);
}

/* Pipe: make at least `want` bytes available in rbuf. */
static void
pipe_fill(ep_t *e, size_t want)
{
    if (e->rend - e->rbeg >= want) {
        return;
    }
    memmove(e->rbuf, e->rbuf + e->rbeg, e->rend - e->rbeg);
    e->rend -= e->rbeg;
    e->rbeg = 0;
    int64_t t0 = 0;
    while (e->rend < want) {
        ssize_t r = read(e->rfd, e->rbuf + e->rend, RBUF - e->rend);
        if (r > 0) {
            e->rend += (size_t)r;
        }
        else if (r == 0) {
            fprintf(stderr, "pipe: EOF\n");
            exit(2);
        }
        else if (errno == EAGAIN) {
            pipe_wait(e, e->rfd, POLLIN, &t0);
        }
        else if (errno != EINTR) {
            die("read");
        }
    }
}

/* Receive one message into buf (cap bytes at least); its length. */
static size_t
ep_recv(ep_t *e, void *buf, size_t cap)
{
    size_t len;
    if (e->design == SHM) {
        if (np_chan_recv_size(e->ch, &len, NP_FOREVER) != NP_OK || len > cap ||
            np_chan_recv_data(e->ch, buf, NP_FOREVER) != NP_OK) {
            fprintf(stderr, "np_chan_recv failed\n");
            exit(2);
        }
        return len;
    }
    pipe_fill(e, 8);
    uint64_t hdr;
    memcpy(&hdr, e->rbuf + e->rbeg, 8);
    e->rbeg += 8;
    len = (size_t)hdr;
    if (len > cap) {
        fprintf(stderr, "message too long\n");
        exit(2);
    }
    size_t have = e->rend - e->rbeg;
    if (len <= RBUF) {
        pipe_fill(e, len);
        memcpy(buf, e->rbuf + e->rbeg, len);
        e->rbeg += len;
        return len;
    }
    /* Long: what is buffered, then straight into buf. */
    memcpy(buf, e->rbuf + e->rbeg, have);
    e->rbeg = e->rend = 0;
    size_t got = have;
    int64_t t0 = 0;
    while (got < len) {
        ssize_t r = read(e->rfd, (char *)buf + got, len - got);
        if (r > 0) {
            got += (size_t)r;
        }
        else if (r < 0 && errno == EAGAIN) {
            pipe_wait(e, e->rfd, POLLIN, &t0);
        }
        else if (r == 0 || errno != EINTR) {
            die("read");
        }
    }
    return len;
}

/* A transport between this process and a child to be forked. */
typedef struct {
    int design;
    int64_t spin_ns;
    np_chan *ch;
    int p2c[2], c2p[2];
} link_t;

static void
link_open(link_t *l, int design, int64_t spin_ns)
{
    memset(l, 0, sizeof *l);
    l->design = design;
    l->spin_ns = spin_ns;
    if (design == SHM) {
        if (np_chan_create(&l->ch, RING, 0) != NP_OK) {
            die("np_chan_create");
        }
        return;
    }
    if (pipe2(l->p2c, O_NONBLOCK | O_CLOEXEC) || pipe2(l->c2p, O_NONBLOCK | O_CLOEXEC)) {
        die("pipe2");
    }
    for (int i = 0; i < 2; i++) {
        fcntl(l->p2c[i], F_SETPIPE_SZ, (int)RING);
        fcntl(l->c2p[i], F_SETPIPE_SZ, (int)RING);
    }
}

static void
ep_init(ep_t *e, link_t *l, int child)
{
    memset(e, 0, sizeof *e);
    e->design = l->design;
    e->spin_ns = l->spin_ns;
    e->rbuf = malloc(RBUF);
    if (e->design == SHM) {
        if (child) {
            int fds[NP_CHAN_NFDS];
            np_chan_child_fds(l->ch, fds);
            if (np_chan_attach(&e->ch, fds) != NP_OK) {
                die("np_chan_attach");
            }
            np_chan_forget(l->ch);
        }
        else {
            e->ch = l->ch;
        }
        np_chan_set_spin(e->ch, e->spin_ns);
        return;
    }
    if (child) {
        close(l->p2c[1]);
        close(l->c2p[0]);
        e->rfd = l->p2c[0];
        e->wfd = l->c2p[1];
    }
    else {
        close(l->p2c[0]);
        close(l->c2p[1]);
        e->rfd = l->c2p[0];
        e->wfd = l->p2c[1];
    }
}

static void
ep_close(ep_t *e)
{
    if (e->design == SHM) {
        np_chan_close(e->ch);
    }
    else {
        close(e->rfd);
        close(e->wfd);
    }
    free(e->rbuf);
}

/* ---- the tests -------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *unit;
    long n;             /* messages per run */
    void (*parent)(ep_t *e, long n);
    void (*child)(ep_t *e, long n);
    void (*child_setup)(void);   /* before "ready", untimed */
} bench_t;

static unsigned char small_buf[SMALL];

static void
rtt_parent(ep_t *e, long n)
{
    unsigned char in[SMALL];
    for (long i = 0; i < n; i++) {
        small_buf[0] = (unsigned char)i;
        ep_send(e, small_buf, SMALL);
        if (ep_recv(e, in, sizeof in) != SMALL || in[0] != (unsigned char)i) {
            fprintf(stderr, "rtt: bad echo\n");
            exit(2);
        }
    }
}

static void
echo_child(ep_t *e, long n)
{
    unsigned char in[SMALL];
    for (long i = 0; i < n; i++) {
        size_t len = ep_recv(e, in, sizeof in);
        ep_send(e, in, len);
    }
}

static void
stream_parent(ep_t *e, long n)
{
    for (long i = 0; i < n; i++) {
        ep_send(e, small_buf, SMALL);
    }
    unsigned char ack[8];
    ep_recv(e, ack, sizeof ack);
}

static void
stream_child(ep_t *e, long n)
{
    unsigned char in[SMALL];
    for (long i = 0; i < n; i++) {
        ep_recv(e, in, sizeof in);
    }
    ep_send(e, "k", 1);
}

typedef struct {
    ep_t *e;
    long n;
} submit_arg;

static void *
submitter(void *arg)
{
    submit_arg *a = arg;
    for (long i = 0; i < a->n; i++) {
        ep_send(a->e, small_buf, SMALL);
    }
    return NULL;
}

static void
reqresp_parent(ep_t *e, long n)
{
    pthread_t th;
    submit_arg a = {e, n};
    if (pthread_create(&th, NULL, submitter, &a) != 0) {
        die("pthread_create");
    }
    unsigned char in[SMALL];
    for (long i = 0; i < n; i++) {
        ep_recv(e, in, sizeof in);
    }
    pthread_join(th, NULL);
}

#define BIG ((size_t)64 << 20)
static unsigned char *big_buf;

static void
big_parent(ep_t *e, long n)
{
    unsigned char ack[8];
    for (long i = 0; i < n; i++) {
        ep_send(e, big_buf, BIG);
        ep_recv(e, ack, sizeof ack);
    }
}

static unsigned char *big_dst;

static void
big_child_setup(void)
{
    big_dst = malloc(BIG);
    memset(big_dst, 1, BIG);   /* fault it in: measure the channel, not mmap */
}

static void
big_child(ep_t *e, long n)
{
    for (long i = 0; i < n; i++) {
        ep_recv(e, big_dst, BIG);
        ep_send(e, "k", 1);
    }
    free(big_dst);
}

static int64_t
tv_ns(struct timeval tv)
{
    return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

/* One run: fork the child, time the parent's part; ns and CPU ns. */
static void
run_once(const bench_t *b, int design, int64_t spin, long n, double *wall_ns,
         double *cpu_ns)
{
    link_t l;
    link_open(&l, design, spin);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        die("fork");
    }
    if (pid == 0) {
        ep_t e;
        ep_init(&e, &l, 1);
        if (b->child_setup != NULL) {
            b->child_setup();
        }
        /* Ready: the parent starts its clock, and subtracts the CPU time
         * we spent so far (setup) from our total. */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        int64_t setup_cpu = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime);
        ep_send(&e, &setup_cpu, sizeof setup_cpu);
        b->child(&e, n);
        ep_close(&e);
        _exit(0);
    }
    ep_t e;
    ep_init(&e, &l, 0);
    if (design == SHM) {
        np_chan_child_started(e.ch, pid);
    }
    int64_t child_setup_cpu;
    ep_recv(&e, &child_setup_cpu, sizeof child_setup_cpu);
    struct rusage r0, r1, rc;
    getrusage(RUSAGE_SELF, &r0);
    int64_t t0 = np_monotonic_ns();
    b->parent(&e, n);
    int64_t t1 = np_monotonic_ns();
    getrusage(RUSAGE_SELF, &r1);
    int status;
    if (wait4(pid, &status, 0, &rc) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed\n");
        exit(2);
    }
    ep_close(&e);
    int64_t cpu = tv_ns(r1.ru_utime) - tv_ns(r0.ru_utime) + tv_ns(r1.ru_stime) -
                  tv_ns(r0.ru_stime) + tv_ns(rc.ru_utime) + tv_ns(rc.ru_stime) -
                  child_setup_cpu;
    *wall_ns = (double)(t1 - t0);
    *cpu_ns = (double)cpu;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
main(int argc, char **argv)
{
    int runs = 5, quick = 0;
    const char *only = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "qr:t:s:")) != -1) {
        switch (opt) {
        case 'q':
            quick = 1;
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 't':
            only = optarg;
            break;
        case 's':
            RING = (size_t)atol(optarg) * 1024;
            break;
        default:
            fprintf(stderr, "usage: %s [-q] [-r runs] [-s ring_KiB] "
                    "[-t rtt,stream,reqresp,big]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 99) {
        runs = 5;
    }
    big_buf = malloc(BIG);
    memset(big_buf, 7, BIG);
    const bench_t benches[] = {
        {"rtt", "us/round trip", 20000, rtt_parent, echo_child, NULL},
        {"stream", "us/message", 1000000, stream_parent, stream_child, NULL},
        {"reqresp", "us/request", 200000, reqresp_parent, echo_child, NULL},
        {"big", "ms/64 MiB", 3, big_parent, big_child, big_child_setup},
    };
    const int64_t spins[] = {0, 20000, 50000};
    const int nb = sizeof benches / sizeof benches[0], ns = 3;
    printf("chan_bench: ring/pipe buffer %zu KiB, %d runs per cell (median), %ld CPUs%s\n",
           RING / 1024, runs, sysconf(_SC_NPROCESSORS_ONLN), quick ? ", QUICK" : "");
    for (int bi = 0; bi < nb; bi++) {
        const bench_t *b = &benches[bi];
        if (only != NULL && strstr(only, b->name) == NULL) {
            continue;
        }
        printf("\n(%c) %s, %s\n", 'a' + bi, b->name, b->unit);
        printf("  %-6s %-9s %12s %10s %10s %12s\n", "design", "spin", "median",
               "min", "max", "cpu/msg us");
        double wall[2][3][99], cpu[2][3][99];
        for (int r = 0; r < runs; r++) {
            for (int si = 0; si < ns; si++) {
                for (int d = 0; d < 2; d++) {
                    long n = b->n;
                    /* Without spinning, every hop sleeps: fewer messages. */
                    if (spins[si] == 0 && (bi == 0 || bi == 2)) {
                        n /= 4;
                    }
                    if (quick) {
                        n = n / 5 > 1 ? n / 5 : 1;
                    }
                    double w, c;
                    run_once(b, d, spins[si], n, &w, &c);
                    double per = (bi == 3 ? 1e6 : 1e3) * (double)n;   /* ms, us */
                    wall[d][si][r] = w / per;
                    cpu[d][si][r] = c / (double)n / 1e3;
                }
            }
        }
        for (int si = 0; si < ns; si++) {
            for (int d = 0; d < 2; d++) {
                char spin[32];
                snprintf(spin, sizeof spin, "%lld us", (long long)(spins[si] / 1000));
                double mn = wall[d][si][0], mx = mn;
                for (int r = 1; r < runs; r++) {
                    mn = wall[d][si][r] < mn ? wall[d][si][r] : mn;
                    mx = wall[d][si][r] > mx ? wall[d][si][r] : mx;
                }
                printf("  %-6s %-9s %12.3f %10.3f %10.3f %12.3f\n", design_name[d],
                       spin, median(wall[d][si], runs), mn, mx,
                       bi == 3 ? median(cpu[d][si], runs) / 1e3 : median(cpu[d][si], runs));
            }
        }
        if (bi == 3) {
            printf("  (big: cpu column in ms per message)\n");
        }
        fflush(stdout);
    }
    free(big_buf);
    return 0;
}
