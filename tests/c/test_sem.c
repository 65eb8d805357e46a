/* test_sem.c -- unit tests for csrc/runtime/np_sem.{h,c}: the counting
 * semaphore word behind Lock, Semaphore, BoundedSemaphore and Event.
 *
 * Threads and the semaphores they block on live in static storage (each test
 * runs in its own forked process), so a test that fails half-way never
 * leaves a thread pointing into a dead stack frame. */
#include "test.h"

#include <pthread.h>

#include "np_sem.h"

/* Set the value and wake every sleeper if it is non-zero: the pattern the
 * binding's Event uses around np_sem_wake_all. */
static void
store_value(np_sem *s, uint32_t v)
{
    atomic_store(&s->value, v);
    if (v != 0) {
        np_sem_wake_all(s);
    }
}

#define MS ((int64_t)1000000)

/* ---- signals: a handler installed WITHOUT SA_RESTART --------------------- */

static _Atomic int sig_count;          /* handler runs, any thread */
static _Atomic pid_t sig_last_tid;     /* thread the handler last ran in */

static void
on_sigusr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&sig_count, 1);
    atomic_store(&sig_last_tid, test_gettid());
}

static void
install_sigusr1(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART: blocking calls must see EINTR */
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        abort();
    }
    atomic_store(&sig_count, 0);
    atomic_store(&sig_last_tid, 0);
}

/* ---- small helpers -------------------------------------------------------- */

/* The scheduler state letter of thread tid ('S' sleeping, 'R' running...),
 * or '?' if /proc cannot tell. */
static char
thread_state(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return '?';
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');   /* the comm field may contain spaces */
    if (p == NULL || p[1] != ' ' || p[2] == '\0') {
        return '?';
    }
    return p[2];
}

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

static int64_t
self_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- a waiter thread: one np_sem_take or np_sem_wait_nonzero ------------- */

enum { OP_TAKE, OP_WAIT_NONZERO, OP_WAIT_CHANGE };

typedef struct {
    np_sem *s;
    int op;
    int64_t deadline;
    int flags;
    uint32_t seen;               /* OP_WAIT_CHANGE */
    _Atomic pid_t tid;
    _Atomic int returned;
    _Atomic int result;
    _Atomic int slept;           /* -1 until np_sem_take set it */
    _Atomic int64_t t_call;      /* monotonic ns right before the call */
    _Atomic int64_t t_return;    /* ... and right after */
    _Atomic int64_t cpu_call;    /* this thread's CPU time before the call */
    pthread_t th;
    int started;
} waiter;

static void *
waiter_main(void *arg)
{
    waiter *w = arg;
    atomic_store(&w->cpu_call, self_cpu_ns());
    atomic_store(&w->tid, test_gettid());
    int slept = -1;
    atomic_store(&w->t_call, np_monotonic_ns());
    int r = w->op == OP_TAKE
                ? np_sem_take(w->s, w->deadline, w->flags, &slept)
            : w->op == OP_WAIT_NONZERO
                ? np_sem_wait_nonzero(w->s, w->deadline, w->flags)
                : np_sem_wait_change(w->s, w->seen, w->deadline, w->flags);
    atomic_store(&w->t_return, np_monotonic_ns());
    atomic_store(&w->slept, slept);
    atomic_store(&w->result, r);
    atomic_store(&w->returned, 1);
    return NULL;
}

/* Start a waiter; 1 when it runs (its tid is known). */
static int
waiter_start(waiter *w, np_sem *s, int op, int64_t deadline, int flags)
{
    memset(w, 0, sizeof *w);
    w->s = s;
    w->op = op;
    w->deadline = deadline;
    w->flags = flags;
    atomic_store(&w->slept, -1);
    atomic_store(&w->result, 12345);
    if (pthread_create(&w->th, NULL, waiter_main, w) != 0) {
        return 0;
    }
    w->started = 1;
    return WAIT_FOR(atomic_load(&w->tid) != 0, 5);
}

/* Start a np_sem_wait_change(s, seen, ...) waiter. */
static int
waiter_start_change(waiter *w, np_sem *s, uint32_t seen, int64_t deadline,
                    int flags)
{
    memset(w, 0, sizeof *w);
    w->s = s;
    w->op = OP_WAIT_CHANGE;
    w->seen = seen;
    w->deadline = deadline;
    w->flags = flags;
    atomic_store(&w->slept, -1);
    atomic_store(&w->result, 12345);
    if (pthread_create(&w->th, NULL, waiter_main, w) != 0) {
        return 0;
    }
    w->started = 1;
    return WAIT_FOR(atomic_load(&w->tid) != 0, 5);
}

/* 1 once the waiter sleeps in the kernel. */
static int
waiter_parked(waiter *w)
{
    return test_wait_in_futex(atomic_load(&w->tid), 5);
}

static void
waiter_join(waiter *w)
{
    if (w->started) {
        pthread_join(w->th, NULL);
        w->started = 0;
    }
}

/* Make sure every waiter of `ws` can finish (so a failed test does not hang
 * in join), then join them all. */
static void
waiters_rescue_join(np_sem *s, waiter *ws, int n)
{
    int64_t deadline = test_now_ns() + 5000 * MS;
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            left += ws[i].started && !atomic_load(&ws[i].returned);
        }
        if (left == 0 || test_now_ns() > deadline) {
            break;
        }
        np_sem_give(s, (uint32_t)left, 0, 1);
        test_sleep_ms(1);
    }
    for (int i = 0; i < n; i++) {
        waiter_join(&ws[i]);
    }
}

static int
count_returned(waiter *ws, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) {
        c += atomic_load(&ws[i].returned);
    }
    return c;
}

/* ---- trytake / fast path -------------------------------------------------- */

TEST(init_and_trytake_0_1_n)
{
    np_sem s0 = NP_SEM_INIT(0);
    ASSERT_UEQ(np_sem_value(&s0), 0);
    ASSERT_UEQ(np_sem_sleepers(&s0), 0);
    ASSERT_EQ(np_sem_trytake(&s0), 0);
    ASSERT_EQ(np_sem_trytake(&s0), 0);
    ASSERT_UEQ(np_sem_value(&s0), 0);   /* never goes "negative" */

    np_sem s1 = NP_SEM_INIT(1);
    ASSERT_EQ(np_sem_trytake(&s1), 1);
    ASSERT_UEQ(np_sem_value(&s1), 0);
    ASSERT_EQ(np_sem_trytake(&s1), 0);
    ASSERT_UEQ(np_sem_value(&s1), 0);

    np_sem sn = NP_SEM_INIT(5);
    for (int i = 5; i > 0; i--) {
        ASSERT_UEQ(np_sem_value(&sn), (uint32_t)i);
        ASSERT_EQ(np_sem_trytake(&sn), 1);
    }
    ASSERT_EQ(np_sem_trytake(&sn), 0);
    ASSERT_UEQ(np_sem_value(&sn), 0);

    np_sem smax = NP_SEM_INIT(UINT32_MAX);
    ASSERT_EQ(np_sem_trytake(&smax), 1);
    ASSERT_UEQ(np_sem_value(&smax), UINT32_MAX - 1);
    ASSERT_UEQ(np_sem_sleepers(&smax), 0);
}

TEST(take_fast_path_sets_slept_0)
{
    np_sem s = NP_SEM_INIT(4);
    int slept = 42;
    ASSERT_EQ(np_sem_take(&s, NP_FOREVER, 0, &slept), NP_OK);
    ASSERT_EQ(slept, 0);
    slept = 42;
    ASSERT_EQ(np_sem_take(&s, NP_FOREVER, NP_SEM_NOSPIN | NP_SEM_INTERRUPTIBLE,
                          &slept), NP_OK);
    ASSERT_EQ(slept, 0);
    /* An available unit is taken even when the deadline is already past. */
    slept = 42;
    ASSERT_EQ(np_sem_take(&s, 0, 0, &slept), NP_OK);
    ASSERT_EQ(slept, 0);
    ASSERT_EQ(np_sem_take(&s, np_deadline_after(-1), 0, NULL), NP_OK);
    ASSERT_UEQ(np_sem_value(&s), 0);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);

    /* wait_nonzero does not consume. */
    np_sem e = NP_SEM_INIT(1);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(np_sem_wait_nonzero(&e, NP_FOREVER, 0), NP_OK);
        ASSERT_EQ(np_sem_wait_nonzero(&e, 0, NP_SEM_NOSPIN), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&e), 1);
    ASSERT_UEQ(np_sem_sleepers(&e), 0);
}

/* ---- blocking take ----------------------------------------------------------- */

TEST(take_blocks_until_give)
{
    static np_sem s = NP_SEM_INIT(0);
    static waiter w;
    for (int flags = 0; flags <= NP_SEM_NOSPIN; flags += NP_SEM_NOSPIN) {
        ASSERT_TRUE(waiter_start(&w, &s, OP_TAKE, NP_FOREVER, flags));
        EXPECT_TRUE(waiter_parked(&w));
        char st = thread_state(atomic_load(&w.tid));
        EXPECT_TRUE(st == 'S' || st == '?');
        EXPECT_UEQ(np_sem_sleepers(&s), 1);
        test_sleep_ms(50);
        EXPECT_EQ(atomic_load(&w.returned), 0);
        EXPECT_TRUE(waiter_parked(&w));
        EXPECT_UEQ(np_sem_value(&s), 0);

        int64_t t_give = np_monotonic_ns();
        EXPECT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
        EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
        waiters_rescue_join(&s, &w, 1);
        ASSERT_EQ(atomic_load(&w.result), NP_OK);
        ASSERT_EQ(atomic_load(&w.slept), 1);
        ASSERT_GE(atomic_load(&w.t_return), t_give);
        ASSERT_GE(atomic_load(&w.t_return) - atomic_load(&w.t_call), 50 * MS);
        ASSERT_UEQ(np_sem_value(&s), 0);      /* the waiter took the unit */
        ASSERT_UEQ(np_sem_sleepers(&s), 0);
    }
}

/* slept is 1 whenever the fast path failed, even if the unit came during the
 * spin: measured over many hand-offs where the giver waits for the taker. */
TEST(take_slept_1_when_it_had_to_wait)
{
    static np_sem s = NP_SEM_INIT(0);
    static waiter w;
    ASSERT_TRUE(waiter_start(&w, &s, OP_TAKE, np_deadline_after(30), 0));
    /* Give as soon as the thread is inside the call (possibly spinning). */
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.t_call) != 0, 5));
    EXPECT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
    waiters_rescue_join(&s, &w, 1);
    ASSERT_EQ(atomic_load(&w.result), NP_OK);
    /* Either the fast path won the race (slept 0) or it waited (1). */
    int sl = atomic_load(&w.slept);
    ASSERT_TRUE(sl == 0 || sl == 1);
    /* A timed-out take waited too. */
    int slept = 42;
    ASSERT_EQ(np_sem_take(&s, np_deadline_after(0.001), 0, &slept),
              NP_ETIMEDOUT);
    ASSERT_EQ(slept, 1);
    slept = 42;
    ASSERT_EQ(np_sem_take(&s, np_deadline_after(0.001), NP_SEM_NOSPIN, &slept),
              NP_ETIMEDOUT);
    ASSERT_EQ(slept, 1);
}

/* ---- timeouts ------------------------------------------------------------------ */

TEST(take_times_out_never_early)
{
    const int flag_sets[] = {0, NP_SEM_NOSPIN, NP_SEM_INTERRUPTIBLE,
                             NP_SEM_NOSPIN | NP_SEM_INTERRUPTIBLE};
    np_sem s = NP_SEM_INIT(0);
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        for (int op = OP_TAKE; op <= OP_WAIT_NONZERO; op++) {
            int64_t t0 = np_monotonic_ns();
            int64_t deadline = np_deadline_after(0.03);
            int slept = 42;
            int r = op == OP_TAKE
                        ? np_sem_take(&s, deadline, flag_sets[i], &slept)
                        : np_sem_wait_nonzero(&s, deadline, flag_sets[i]);
            int64_t t1 = np_monotonic_ns();
            ASSERT_EQ(r, NP_ETIMEDOUT);
            ASSERT_GE(t1, deadline);             /* never early */
            ASSERT_GE(t1 - t0, 30 * MS);
            ASSERT_LT(t1 - t0, 2000 * MS);
            if (op == OP_TAKE) {
                ASSERT_EQ(slept, 1);
            }
            ASSERT_UEQ(np_sem_value(&s), 0);
            ASSERT_UEQ(np_sem_sleepers(&s), 0);
        }
    }
}

TEST(take_past_deadline_returns_promptly)
{
    np_sem s = NP_SEM_INIT(0);
    const int64_t deadlines[] = {0, -1, INT64_MIN, 1};
    for (int flags = 0; flags <= 3; flags++) {
        for (size_t i = 0; i < 5; i++) {
            int64_t d = i < 4 ? deadlines[i] : np_deadline_after(0);
            int64_t t0 = np_monotonic_ns();
            ASSERT_EQ(np_sem_take(&s, d, flags, NULL), NP_ETIMEDOUT);
            ASSERT_EQ(np_sem_wait_nonzero(&s, d, flags), NP_ETIMEDOUT);
            int64_t dt = np_monotonic_ns() - t0;
            /* no spin (its end is capped at the deadline), no park */
            ASSERT_LT(dt, 50 * MS);
        }
    }
    ASSERT_UEQ(np_sem_value(&s), 0);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* A waiter that times out must not swallow a unit or a wakeup meant for a
 * waiter that is still waiting. */
TEST(timed_out_waiter_does_not_lose_wakeup)
{
    static np_sem s = NP_SEM_INIT(0);
    static waiter w[2];
    ASSERT_TRUE(waiter_start(&w[0], &s, OP_TAKE, NP_FOREVER, 0));
    EXPECT_TRUE(waiter_parked(&w[0]));
    EXPECT_TRUE(waiter_start(&w[1], &s, OP_TAKE, np_deadline_after(0.05), 0));
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w[1].returned), 5));
    EXPECT_EQ(atomic_load(&w[1].result), NP_ETIMEDOUT);
    EXPECT_EQ(atomic_load(&w[0].returned), 0);
    EXPECT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w[0].returned), 5));
    waiters_rescue_join(&s, w, 2);
    ASSERT_EQ(atomic_load(&w[0].result), NP_OK);
    ASSERT_UEQ(np_sem_value(&s), 0);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* ---- signals ------------------------------------------------------------------- */

TEST(interruptible_wait_returns_eintr)
{
    install_sigusr1();
    static np_sem s = NP_SEM_INIT(0);
    static waiter w;
    struct { int op; int64_t deadline; int flags; } cases[] = {
        {OP_TAKE, NP_FOREVER, NP_SEM_INTERRUPTIBLE},
        {OP_TAKE, 0 /* 30 s */, NP_SEM_INTERRUPTIBLE},
        {OP_TAKE, NP_FOREVER, NP_SEM_INTERRUPTIBLE | NP_SEM_NOSPIN},
        {OP_WAIT_NONZERO, NP_FOREVER, NP_SEM_INTERRUPTIBLE},
        {OP_WAIT_NONZERO, 0, NP_SEM_INTERRUPTIBLE | NP_SEM_NOSPIN},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t d = cases[c].deadline ? cases[c].deadline : np_deadline_after(30);
        ASSERT_TRUE(waiter_start(&w, &s, cases[c].op, d, cases[c].flags));
        EXPECT_TRUE(waiter_parked(&w));
        /* A signal that lands before the waiter reaches the kernel is not
         * seen by the wait (see the report); the waiter is asleep now, but
         * keep sending so a bug shows as a failure, not a hang. */
        int64_t until = test_now_ns() + 5000 * MS;
        int kills = 0;
        while (!atomic_load(&w.returned) && test_now_ns() < until) {
            pthread_kill(w.th, SIGUSR1);
            kills++;
            WAIT_FOR(atomic_load(&w.returned), 0.05);
        }
        EXPECT_EQ(kills, 1);    /* the first one, sent while parked, did it */
        int returned = atomic_load(&w.returned);
        waiters_rescue_join(&s, &w, 1);
        ASSERT_TRUE(returned);
        ASSERT_EQ(atomic_load(&w.result), NP_EINTR);
        ASSERT_TRUE(WAIT_FOR(atomic_load(&sig_count) >= 1, 5));
        ASSERT_EQ(atomic_load(&sig_last_tid), atomic_load(&w.tid));
        if (cases[c].op == OP_TAKE) {
            ASSERT_EQ(atomic_load(&w.slept), 1);
        }
        ASSERT_UEQ(np_sem_value(&s), 0);     /* nothing taken or added */
        ASSERT_UEQ(np_sem_sleepers(&s), 0);
        atomic_store(&sig_count, 0);
    }
}

TEST(uninterruptible_wait_ignores_signals)
{
    install_sigusr1();
    static np_sem s = NP_SEM_INIT(0);
    static waiter w;
    for (int c = 0; c < 4; c++) {
        int op = c < 2 ? OP_TAKE : OP_WAIT_NONZERO;
        int flags = (c & 1) ? NP_SEM_NOSPIN : 0;
        int64_t d = c == 1 ? np_deadline_after(30) : NP_FOREVER;
        ASSERT_TRUE(waiter_start(&w, &s, op, d, flags));
        EXPECT_TRUE(waiter_parked(&w));
        int before = atomic_load(&sig_count);
        for (int i = 0; i < 3; i++) {
            pthread_kill(w.th, SIGUSR1);
            EXPECT_TRUE(WAIT_FOR(atomic_load(&sig_count) > before + i, 5));
            /* ... and it went back to sleep instead of returning */
            EXPECT_TRUE(waiter_parked(&w));
        }
        EXPECT_EQ(atomic_load(&sig_last_tid), atomic_load(&w.tid));
        EXPECT_EQ(atomic_load(&w.returned), 0);
        EXPECT_UEQ(np_sem_sleepers(&s), 1);
        if (op == OP_TAKE) {
            EXPECT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
        }
        else {
            store_value(&s, 1);
        }
        EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
        waiters_rescue_join(&s, &w, 1);
        ASSERT_EQ(atomic_load(&w.result), NP_OK);
        store_value(&s, 0);
        ASSERT_UEQ(np_sem_sleepers(&s), 0);
    }
}

/* ---- spinning and parking ------------------------------------------------------ */

/* NOSPIN parks at once: the delay from the call to `sleepers` becoming 1 is
 * at least NP_SEM_SPIN_NS with the spin (deterministically: the spin comes
 * first) and, at best over a few trials, well below it without. */
typedef struct {
    np_sem s;
    int flags;
    int trials;
    _Atomic int go;
    _Atomic int done;
    _Atomic int64_t t_call;
} park_probe;

static void *
park_probe_main(void *arg)
{
    park_probe *p = arg;
    for (int k = 1; k <= p->trials; k++) {
        while (atomic_load(&p->go) != k) {
        }
        int64_t deadline = np_deadline_after(10);
        atomic_store(&p->t_call, np_monotonic_ns());
        int r = np_sem_take(&p->s, deadline, p->flags, NULL);
        EXPECT_EQ(r, NP_OK);
        atomic_store(&p->done, k);
    }
    return NULL;
}

/* Minimum over trials of (sleepers seen 1) - (call started), in ns. */
static int64_t
min_park_delay(int flags, int trials)
{
    static park_probe p;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    p.trials = trials;
    pthread_t th;
    if (pthread_create(&th, NULL, park_probe_main, &p) != 0) {
        return -1;
    }
    int64_t best = INT64_MAX;
    for (int k = 1; k <= trials; k++) {
        atomic_store(&p.go, k);
        int64_t limit = np_monotonic_ns() + 5000 * MS;
        while (np_sem_sleepers(&p.s) == 0 && np_monotonic_ns() < limit) {
        }
        int64_t t1 = np_monotonic_ns();
        int64_t d = t1 - atomic_load(&p.t_call);
        if (atomic_load(&p.t_call) != 0 && d < best) {
            best = d;
        }
        np_sem_give(&p.s, 1, 0, 0);
        while (atomic_load(&p.done) != k && np_monotonic_ns() < limit) {
        }
        atomic_store(&p.t_call, 0);
    }
    pthread_join(th, NULL);
    return best;
}

TEST(nospin_parks_at_once)
{
    int64_t spin = min_park_delay(0, 10);
    /* One trial below NP_SEM_SPIN_NS proves that call did not spin; retry
     * a few batches so a noisy machine does not fail the test. */
    const int64_t limit = NP_TEST_TSAN ? NP_SEM_SPIN_NS : NP_SEM_SPIN_NS / 2;
    int64_t nospin = INT64_MAX;
    for (int batch = 0; batch < 5 && nospin >= limit; batch++) {
        int64_t d = min_park_delay(NP_SEM_NOSPIN, 100);
        ASSERT_GE(d, 0);
        nospin = d < nospin ? d : nospin;
    }
    TEST_LOG("min delay to park: spin %" PRId64 " ns, nospin %" PRId64 " ns",
             spin, nospin);
    ASSERT_GE(spin, NP_SEM_SPIN_NS);
    /* (TSan slows the few atomics before the park by microseconds.) */
    ASSERT_LT(nospin, limit);
}

/* An idle waiter parks: blocked 300 ms, it uses far less than 300 ms CPU. */
TEST(idle_waiter_does_not_burn_cpu)
{
    static np_sem s = NP_SEM_INIT(0);
    static waiter w;
    for (int op = OP_TAKE; op <= OP_WAIT_NONZERO; op++) {
        ASSERT_TRUE(waiter_start(&w, &s, op, NP_FOREVER, 0));
        int64_t t0 = test_now_ns();
        test_sleep_ms(300);
        int64_t cpu = thread_cpu_ns(w.th) - atomic_load(&w.cpu_call);
        int64_t wall = test_now_ns() - t0;
        EXPECT_EQ(atomic_load(&w.returned), 0);
        EXPECT_TRUE(waiter_parked(&w));
        if (op == OP_TAKE) {
            EXPECT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
        }
        else {
            store_value(&s, 1);
        }
        EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
        waiters_rescue_join(&s, &w, 1);
        store_value(&s, 0);
        TEST_LOG("op %d: %" PRId64 " us CPU in %" PRId64 " ms", op, cpu / 1000,
                 wall / MS);
        ASSERT_GE(wall, 300 * MS);
        ASSERT_GE(cpu, 0);
        ASSERT_LT(cpu, 50 * MS);
        ASSERT_EQ(atomic_load(&w.result), NP_OK);
    }
}

/* ---- give: max, overflow, wake counts ------------------------------------------ */

TEST(give_with_max_rejects_over_release)
{
    /* Lock: 1 = unlocked; releasing an unlocked lock fails. */
    np_sem lock = NP_SEM_INIT(1);
    ASSERT_EQ(np_sem_give(&lock, 1, 1, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&lock), 1);
    ASSERT_EQ(np_sem_trytake(&lock), 1);
    ASSERT_EQ(np_sem_give(&lock, 1, 1, 0), NP_OK);
    ASSERT_UEQ(np_sem_value(&lock), 1);
    ASSERT_EQ(np_sem_give(&lock, 1, 1, 1), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&lock), 1);

    /* BoundedSemaphore(3). */
    np_sem b = NP_SEM_INIT(3);
    ASSERT_EQ(np_sem_give(&b, 1, 3, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&b), 3);
    ASSERT_EQ(np_sem_trytake(&b), 1);
    ASSERT_EQ(np_sem_trytake(&b), 1);
    ASSERT_EQ(np_sem_give(&b, 3, 3, 0), NP_EAGAIN);   /* 1 + 3 > 3 */
    ASSERT_UEQ(np_sem_value(&b), 1);                  /* unchanged */
    ASSERT_EQ(np_sem_give(&b, 2, 3, 0), NP_OK);       /* exactly max */
    ASSERT_UEQ(np_sem_value(&b), 3);
    ASSERT_EQ(np_sem_give(&b, UINT32_MAX, 3, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&b), 3);

    /* max 0 means unbounded. */
    np_sem u = NP_SEM_INIT(0);
    ASSERT_EQ(np_sem_give(&u, 7, 0, 0), NP_OK);
    ASSERT_EQ(np_sem_give(&u, 1000000, 0, 0), NP_OK);
    ASSERT_UEQ(np_sem_value(&u), 1000007);
    ASSERT_UEQ(np_sem_sleepers(&u), 0);
}

TEST(give_rejects_uint32_overflow)
{
    np_sem s = NP_SEM_INIT(UINT32_MAX - 1);
    ASSERT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
    ASSERT_UEQ(np_sem_value(&s), UINT32_MAX);
    ASSERT_EQ(np_sem_give(&s, 1, 0, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&s), UINT32_MAX);
    ASSERT_EQ(np_sem_give(&s, UINT32_MAX, 0, 1), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&s), UINT32_MAX);

    np_sem t = NP_SEM_INIT(UINT32_MAX - 5);
    ASSERT_EQ(np_sem_give(&t, 10, 0, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&t), UINT32_MAX - 5);
    ASSERT_EQ(np_sem_give(&t, 6, UINT32_MAX, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&t), UINT32_MAX - 5);
    ASSERT_EQ(np_sem_give(&t, 5, UINT32_MAX, 0), NP_OK);
    ASSERT_UEQ(np_sem_value(&t), UINT32_MAX);

    np_sem one = NP_SEM_INIT(1);
    ASSERT_EQ(np_sem_give(&one, UINT32_MAX, 0, 0), NP_EAGAIN);
    ASSERT_UEQ(np_sem_value(&one), 1);

    /* n > INT32_MAX with nobody asleep, and with a sleeper (the wake count
     * is clamped to INT32_MAX). */
    np_sem z = NP_SEM_INIT(0);
    ASSERT_EQ(np_sem_give(&z, UINT32_MAX, 0, 0), NP_OK);
    ASSERT_UEQ(np_sem_value(&z), UINT32_MAX);

    static np_sem s2 = NP_SEM_INIT(0);
    static waiter w;
    ASSERT_TRUE(waiter_start(&w, &s2, OP_TAKE, NP_FOREVER, NP_SEM_NOSPIN));
    EXPECT_TRUE(waiter_parked(&w));
    EXPECT_EQ(np_sem_give(&s2, 0x80000001u, 0, 0), NP_OK);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
    waiters_rescue_join(&s2, &w, 1);
    ASSERT_EQ(atomic_load(&w.result), NP_OK);
    ASSERT_UEQ(np_sem_value(&s2), 0x80000000u);
    ASSERT_UEQ(np_sem_sleepers(&s2), 0);
}

enum { NW = 5 };

/* give(n) wakes n of the sleepers, each of which takes exactly one unit;
 * the others stay asleep. */
TEST(give_n_wakes_n_sleepers)
{
    static np_sem s = NP_SEM_INIT(0);
    static waiter w[NW];
    for (int i = 0; i < NW; i++) {
        ASSERT_TRUE(waiter_start(&w[i], &s, OP_TAKE, NP_FOREVER,
                                 i & 1 ? NP_SEM_NOSPIN : 0));
    }
    for (int i = 0; i < NW; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_UEQ(np_sem_sleepers(&s), NW);

    EXPECT_EQ(np_sem_give(&s, 2, 0, 0), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) >= 2, 5));
    test_sleep_ms(100);
    EXPECT_EQ(count_returned(w, NW), 2);
    EXPECT_UEQ(np_sem_value(&s), 0);
    EXPECT_TRUE(WAIT_FOR(np_sem_sleepers(&s) == NW - 2, 5));

    EXPECT_EQ(np_sem_give(&s, 1, 0, 0), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) >= 3, 5));
    test_sleep_ms(50);
    EXPECT_EQ(count_returned(w, NW), 3);
    EXPECT_UEQ(np_sem_value(&s), 0);

    /* More units than sleepers: the rest stays in the count. */
    EXPECT_EQ(np_sem_give(&s, NW, 0, 0), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) == NW, 5));
    waiters_rescue_join(&s, w, NW);
    for (int i = 0; i < NW; i++) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
        ASSERT_EQ(atomic_load(&w[i].slept), 1);
    }
    ASSERT_UEQ(np_sem_value(&s), 3);   /* NW + 3 given, NW taken */
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* wake_all wakes every sleeper; with fewer units than sleepers the losers go
 * back to sleep and nobody takes more than one unit. */
TEST(give_wake_all)
{
    static np_sem s = NP_SEM_INIT(0);
    static waiter w[NW];
    for (int i = 0; i < NW; i++) {
        ASSERT_TRUE(waiter_start(&w[i], &s, OP_TAKE, NP_FOREVER, 0));
    }
    for (int i = 0; i < NW; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_EQ(np_sem_give(&s, 1, 0, 1), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) >= 1, 5));
    test_sleep_ms(100);
    EXPECT_EQ(count_returned(w, NW), 1);
    EXPECT_UEQ(np_sem_value(&s), 0);
    EXPECT_TRUE(WAIT_FOR(np_sem_sleepers(&s) == NW - 1, 5));
    for (int i = 0; i < NW; i++) {
        if (!atomic_load(&w[i].returned)) {
            EXPECT_TRUE(waiter_parked(&w[i]));
        }
    }
    EXPECT_EQ(np_sem_give(&s, NW - 1, 0, 1), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) == NW, 5));
    waiters_rescue_join(&s, w, NW);
    for (int i = 0; i < NW; i++) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&s), 0);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);

    /* wake_all also releases every wait_nonzero waiter on one unit. */
    for (int i = 0; i < NW; i++) {
        ASSERT_TRUE(waiter_start(&w[i], &s, OP_WAIT_NONZERO, NP_FOREVER,
                                 NP_SEM_NOSPIN));
    }
    for (int i = 0; i < NW; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_EQ(np_sem_give(&s, 1, 0, 1), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) == NW, 5));
    waiters_rescue_join(&s, w, NW);
    ASSERT_UEQ(np_sem_value(&s), 1);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* ---- Event: wait_nonzero and store --------------------------------------------- */

TEST(event_store_1_wakes_all_without_consuming)
{
    static np_sem e = NP_SEM_INIT(0);
    static waiter w[NW];
    for (int i = 0; i < NW; i++) {
        ASSERT_TRUE(waiter_start(&w[i], &e, OP_WAIT_NONZERO,
                                 i == 0 ? np_deadline_after(30) : NP_FOREVER,
                                 i & 1 ? NP_SEM_NOSPIN : 0));
    }
    for (int i = 0; i < NW; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_UEQ(np_sem_sleepers(&e), NW);
    store_value(&e, 1);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) == NW, 5));
    waiters_rescue_join(&e, w, NW);
    for (int i = 0; i < NW; i++) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&e), 1);     /* not consumed */
    ASSERT_UEQ(np_sem_sleepers(&e), 0);
    ASSERT_EQ(np_sem_wait_nonzero(&e, 0, 0), NP_OK);
    ASSERT_EQ(np_sem_trytake(&e), 1);    /* still there */

    /* clear, then a wait times out */
    store_value(&e, 1);
    store_value(&e, 0);
    ASSERT_UEQ(np_sem_value(&e), 0);
    ASSERT_EQ(np_sem_wait_nonzero(&e, np_deadline_after(0.02), 0),
              NP_ETIMEDOUT);
    ASSERT_UEQ(np_sem_sleepers(&e), 0);
}

TEST(event_store_0_keeps_waiters_waiting)
{
    static np_sem e = NP_SEM_INIT(0);
    static waiter w[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(waiter_start(&w[i], &e, OP_WAIT_NONZERO, NP_FOREVER, 0));
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    store_value(&e, 0);   /* clear on a clear event: no wakeup */
    test_sleep_ms(100);
    EXPECT_EQ(count_returned(w, 3), 0);
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_UEQ(np_sem_sleepers(&e), 3);
    store_value(&e, 7);   /* any non-zero value sets */
    EXPECT_TRUE(WAIT_FOR(count_returned(w, 3) == 3, 5));
    waiters_rescue_join(&e, w, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&e), 7);
    ASSERT_UEQ(np_sem_sleepers(&e), 0);

    /* Once cleared again, new waiters wait. */
    store_value(&e, 0);
    ASSERT_TRUE(waiter_start(&w[0], &e, OP_WAIT_NONZERO, NP_FOREVER, 0));
    EXPECT_TRUE(waiter_parked(&w[0]));
    test_sleep_ms(30);
    EXPECT_EQ(atomic_load(&w[0].returned), 0);
    store_value(&e, 1);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w[0].returned), 5));
    waiters_rescue_join(&e, w, 1);
    ASSERT_EQ(atomic_load(&w[0].result), NP_OK);
}

/* ---- wait_change / wake_all: the binding's generation-count Event --------- */

/* The binding's Event word: bit 0 = set, the rest a set() generation. */
#define EV_FLAG 1u

static void
ev_set(np_sem *s)
{
    uint32_t v = atomic_load(&s->value);
    while (!(v & EV_FLAG) &&
           !atomic_compare_exchange_weak(&s->value, &v, (v + 2) | EV_FLAG)) {
    }
    np_sem_wake_all(s);
}

static void
ev_clear(np_sem *s)
{
    atomic_fetch_and(&s->value, ~EV_FLAG);
}

TEST(wait_change_basics)
{
    np_sem s = NP_SEM_INIT(4);
    /* Already different: returns at once, whatever the deadline. */
    ASSERT_EQ(np_sem_wait_change(&s, 5, 0, 0), NP_OK);
    ASSERT_EQ(np_sem_wait_change(&s, 0, NP_FOREVER, NP_SEM_NOSPIN), NP_OK);
    ASSERT_EQ(np_sem_wait_change(&s, UINT32_MAX, -1, 0), NP_OK);
    /* Same value: waits until the deadline, never early. */
    for (int flags = 0; flags <= 3; flags++) {
        int64_t t0 = np_monotonic_ns();
        int64_t d = np_deadline_after(0.02);
        ASSERT_EQ(np_sem_wait_change(&s, 4, d, flags), NP_ETIMEDOUT);
        ASSERT_GE(np_monotonic_ns(), d);
        ASSERT_GE(np_monotonic_ns() - t0, 20 * MS);
        ASSERT_EQ(np_sem_wait_change(&s, 4, 0, flags), NP_ETIMEDOUT);
    }
    ASSERT_UEQ(np_sem_value(&s), 4);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
    /* wake_all with nobody asleep is harmless. */
    np_sem_wake_all(&s);
    ASSERT_UEQ(np_sem_value(&s), 4);
}

/* set() then clear() at once: the waiters saw the generation change even
 * though the flag is clear again when they look. */
TEST(wait_change_sees_set_then_clear)
{
    static np_sem s = NP_SEM_INIT(4);
    static waiter w[NW];
    for (int i = 0; i < NW; i++) {
        ASSERT_TRUE(waiter_start_change(&w[i], &s, 4,
                                        i == 0 ? np_deadline_after(30)
                                               : NP_FOREVER,
                                        i & 1 ? NP_SEM_NOSPIN : 0));
    }
    for (int i = 0; i < NW; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_UEQ(np_sem_sleepers(&s), NW);
    ev_set(&s);
    ev_clear(&s);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, NW) == NW, 5));
    waiters_rescue_join(&s, w, NW);
    for (int i = 0; i < NW; i++) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&s), 6);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* A clear() (no change of the generation: the flag was already clear) and a
 * bare wake_all (no change at all) wake nobody for good: the waiters go back
 * to sleep.  Then a set() releases them. */
TEST(wait_change_ignores_clear_and_bare_wake)
{
    static np_sem s = NP_SEM_INIT(6);
    static waiter w[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(waiter_start_change(&w[i], &s, 6, NP_FOREVER,
                                        i & 1 ? NP_SEM_NOSPIN : 0));
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    ev_clear(&s);
    np_sem_wake_all(&s);
    test_sleep_ms(100);
    EXPECT_EQ(count_returned(w, 3), 0);
    EXPECT_TRUE(WAIT_FOR(np_sem_sleepers(&s) == 3, 5));
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    ev_set(&s);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, 3) == 3, 5));
    waiters_rescue_join(&s, w, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&s), 9);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* An Event wait that returns must see what the setter wrote before
 * store_value(1) (threading.Event semantics; the header promises acquire on
 * the take side).  `payload` is a plain int, so a missing acquire is a data
 * race that TSan reports.  The waiter announces itself and the setter sets
 * at once, so most waits end in the spin phase. */
typedef struct {
    np_sem ev;
    int rounds;
    int generation;           /* wait_change + ev_set/ev_clear, else store */
    int payload;              /* plain: published by the event */
    _Atomic int ready;
    _Atomic int ack;
    _Atomic int bad;
    _Atomic int stop;
} publish_state;

static void *
publish_waiter(void *arg)
{
    publish_state *p = arg;
    for (int i = 1; i <= p->rounds && !atomic_load(&p->stop); i++) {
        uint32_t seen = np_sem_value(&p->ev);
        atomic_store(&p->ready, i);
        int r = p->generation
                    ? np_sem_wait_change(&p->ev, seen, np_deadline_after(10), 0)
                    : np_sem_wait_nonzero(&p->ev, np_deadline_after(10), 0);
        if (r != NP_OK) {
            EXPECT_EQ(r, NP_OK);
            atomic_store(&p->stop, 1);
            break;
        }
        if (p->payload != i) {
            atomic_fetch_add(&p->bad, 1);
        }
        if (p->generation) {
            ev_clear(&p->ev);
        }
        else {
            store_value(&p->ev, 0);
        }
        atomic_store(&p->ack, i);
    }
    return NULL;
}

static void *
publish_setter(void *arg)
{
    publish_state *p = arg;
    for (int i = 1; i <= p->rounds && !atomic_load(&p->stop); i++) {
        int64_t limit = np_monotonic_ns() + 10000 * MS;
        while (atomic_load(&p->ready) != i && !atomic_load(&p->stop)) {
            if (np_monotonic_ns() > limit) {
                atomic_store(&p->stop, 1);
            }
        }
        p->payload = i;
        if (p->generation) {
            ev_set(&p->ev);
        }
        else {
            store_value(&p->ev, 1);
        }
        while (atomic_load(&p->ack) != i && !atomic_load(&p->stop)) {
            if (np_monotonic_ns() > limit) {
                atomic_store(&p->stop, 1);
            }
        }
    }
    return NULL;
}

static void
run_publish(int generation)
{
    static publish_state p;
    memset(&p, 0, sizeof p);
    p.generation = generation;
    p.rounds = (int)test_scaled(20000, 500);
    pthread_t a, b;
    ASSERT_EQ(pthread_create(&a, NULL, publish_waiter, &p), 0);
    ASSERT_EQ(pthread_create(&b, NULL, publish_setter, &p), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    ASSERT_EQ(atomic_load(&p.stop), 0);
    ASSERT_EQ(atomic_load(&p.ack), p.rounds);
    ASSERT_EQ(atomic_load(&p.bad), 0);
    ASSERT_UEQ(np_sem_sleepers(&p.ev), 0);
}

TEST(event_wait_publishes_writes_before_store)
{
    run_publish(0);
}

TEST(event_wait_change_publishes_writes_before_set)
{
    run_publish(1);
}

/* ---- sleepers bookkeeping ------------------------------------------------------ */

TEST(sleepers_return_to_zero)
{
    enum { N = 8 };
    static np_sem s = NP_SEM_INIT(0);
    static waiter w[N];
    /* Half time out, half are served. */
    for (int i = 0; i < N; i++) {
        ASSERT_TRUE(waiter_start(&w[i], &s, i < N / 2 ? OP_TAKE : OP_WAIT_NONZERO,
                                 i % 2 ? np_deadline_after(0.05) : NP_FOREVER,
                                 i % 4 >= 2 ? NP_SEM_NOSPIN : 0));
    }
    EXPECT_TRUE(WAIT_FOR(count_returned(w, N) == N / 2, 5));
    for (int i = 1; i < N; i += 2) {
        EXPECT_EQ(atomic_load(&w[i].result), NP_ETIMEDOUT);
    }
    for (int i = 0; i < N; i += 2) {
        EXPECT_TRUE(waiter_parked(&w[i]));
    }
    EXPECT_UEQ(np_sem_sleepers(&s), N / 2);
    /* 2 takers take 2 units; the third keeps the value non-zero for the
     * wait_nonzero waiters, which wake_all wakes too. */
    EXPECT_EQ(np_sem_give(&s, 3, 0, 1), NP_OK);
    EXPECT_TRUE(WAIT_FOR(count_returned(w, N) == N, 5));
    waiters_rescue_join(&s, w, N);
    for (int i = 0; i < N; i += 2) {
        ASSERT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_UEQ(np_sem_value(&s), 1);
    ASSERT_UEQ(np_sem_sleepers(&s), 0);
}

/* ---- stress: ping-pong (lost wakeups) ------------------------------------------ */

typedef struct {
    np_sem s1, s2;
    long rounds;
    int flags;
    _Atomic long progress;    /* rounds completed by A */
    _Atomic int done;         /* threads finished */
    _Atomic int stop;
    _Atomic long slept;       /* takes that did not hit the fast path */
} pingpong;

static void *
pingpong_a(void *arg)
{
    pingpong *p = arg;
    long slept = 0;
    for (long i = 0; i < p->rounds && !atomic_load(&p->stop); i++) {
        int r = np_sem_give(&p->s1, 1, 1, 0);
        if (r != NP_OK && !atomic_load(&p->stop)) {
            EXPECT_EQ(r, NP_OK);   /* value never exceeds 1 here */
        }
        int sl = 0;
        r = np_sem_take(&p->s2, NP_FOREVER, p->flags, &sl);
        EXPECT_EQ(r, NP_OK);
        slept += sl;
        atomic_store_explicit(&p->progress, i + 1, memory_order_relaxed);
    }
    atomic_fetch_add(&p->slept, slept);
    atomic_fetch_add(&p->done, 1);
    return NULL;
}

static void *
pingpong_b(void *arg)
{
    pingpong *p = arg;
    long slept = 0;
    for (long i = 0; i < p->rounds && !atomic_load(&p->stop); i++) {
        int sl = 0;
        int r = np_sem_take(&p->s1, NP_FOREVER, p->flags, &sl);
        EXPECT_EQ(r, NP_OK);
        slept += sl;
        if (atomic_load(&p->stop)) {
            break;
        }
        r = np_sem_give(&p->s2, 1, 1, 0);
        EXPECT_EQ(r, NP_OK);
    }
    atomic_fetch_add(&p->slept, slept);
    atomic_fetch_add(&p->done, 1);
    return NULL;
}

static void
run_pingpong(long rounds, int flags)
{
    static pingpong p;
    memset(&p, 0, sizeof p);
    p.rounds = rounds;
    p.flags = flags;
    pthread_t a, b;
    ASSERT_EQ(pthread_create(&a, NULL, pingpong_a, &p), 0);
    ASSERT_EQ(pthread_create(&b, NULL, pingpong_b, &p), 0);
    /* Watchdog: no progress for 3 s is a lost wakeup (the threads wait
     * forever), reported with the state, then the threads are released. */
    int64_t t0 = test_now_ns();
    long last = -1;
    int64_t last_change = test_now_ns();
    while (atomic_load(&p.done) < 2) {
        test_sleep_ms(10);
        long now = atomic_load(&p.progress);
        if (now != last) {
            last = now;
            last_change = test_now_ns();
        }
        else if (test_now_ns() - last_change > 3000 * MS) {
            test_fail_msg(__FILE__, __LINE__,
                          "ping-pong stalled at round %ld/%ld: s1 value %u "
                          "sleepers %u, s2 value %u sleepers %u",
                          now, rounds, np_sem_value(&p.s1),
                          np_sem_sleepers(&p.s1), np_sem_value(&p.s2),
                          np_sem_sleepers(&p.s2));
            atomic_store(&p.stop, 1);
            np_sem_give(&p.s1, 1000, 0, 1);
            np_sem_give(&p.s2, 1000, 0, 1);
            break;
        }
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    RETURN_IF_FAILED();
    TEST_LOG("%ld rounds (flags %d) in %.1f ms, %ld slow-path takes", rounds,
             flags, (double)(test_now_ns() - t0) / 1e6, atomic_load(&p.slept));
    ASSERT_EQ(atomic_load(&p.progress), rounds);
    ASSERT_UEQ(np_sem_value(&p.s1), 0);
    ASSERT_UEQ(np_sem_value(&p.s2), 0);
    ASSERT_UEQ(np_sem_sleepers(&p.s1), 0);
    ASSERT_UEQ(np_sem_sleepers(&p.s2), 0);
}

TEST(stress_ping_pong_spin)
{
    run_pingpong(test_scaled(100000, 2000), 0);
}

TEST(stress_ping_pong_nospin)
{
    run_pingpong(test_scaled(20000, 1000), NP_SEM_NOSPIN);
}

/* ---- stress: np_sem as a lock ------------------------------------------------- */

typedef struct {
    np_sem lock;
    long iters;
    long counter;               /* plain: protected by `lock` */
    _Atomic int inside;         /* relaxed only: must not add ordering */
    _Atomic int violations;
    _Atomic int errors;
} mutex_state;

typedef struct {
    mutex_state *m;
    int id;
} mutex_arg;

static void *
mutex_worker(void *arg)
{
    mutex_arg *a = arg;
    mutex_state *m = a->m;
    int flags = (a->id & 1) ? NP_SEM_NOSPIN : 0;
    for (long i = 0; i < m->iters; i++) {
        int r;
        switch (i % 8) {
        case 0:     /* trylock, else block */
            r = np_sem_trytake(&m->lock) ? NP_OK
                    : np_sem_take(&m->lock, NP_FOREVER, flags, NULL);
            break;
        case 1:     /* with a (generous) deadline */
            r = np_sem_take(&m->lock, np_deadline_after(30), flags, NULL);
            break;
        default:
            r = np_sem_take(&m->lock, NP_FOREVER, flags | NP_SEM_INTERRUPTIBLE,
                            NULL);
            break;
        }
        if (r != NP_OK) {
            atomic_fetch_add(&m->errors, 1);
            continue;
        }
        if (atomic_fetch_add_explicit(&m->inside, 1, memory_order_relaxed) != 0) {
            atomic_fetch_add_explicit(&m->violations, 1, memory_order_relaxed);
        }
        m->counter++;
        atomic_fetch_sub_explicit(&m->inside, 1, memory_order_relaxed);
        if (np_sem_give(&m->lock, 1, 1, 0) != NP_OK) {
            atomic_fetch_add(&m->errors, 1);
        }
    }
    return NULL;
}

TEST(stress_mutual_exclusion)
{
    enum { N = 6 };
    static mutex_state m = {.lock = NP_SEM_INIT(1)};
    static mutex_arg args[N];
    m.iters = test_scaled(60000, 2000);
    pthread_t th[N];
    int64_t t0 = test_now_ns();
    for (int i = 0; i < N; i++) {
        args[i].m = &m;
        args[i].id = i;
        ASSERT_EQ(pthread_create(&th[i], NULL, mutex_worker, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
    }
    TEST_LOG("%d x %ld lock/unlock in %.1f ms", N, m.iters,
             (double)(test_now_ns() - t0) / 1e6);
    ASSERT_EQ(atomic_load(&m.errors), 0);
    ASSERT_EQ(atomic_load(&m.violations), 0);
    ASSERT_EQ(m.counter, (long)N * m.iters);
    ASSERT_UEQ(np_sem_value(&m.lock), 1);
    ASSERT_UEQ(np_sem_sleepers(&m.lock), 0);
}

/* ---- stress: producers / consumers -------------------------------------------- */

enum { PRODUCERS = 3, CONSUMERS = 4 };

typedef struct {
    np_sem s;
    long per_producer;          /* units each producer gives */
    long total;
    _Atomic long given;
    _Atomic long claimed;       /* tickets: a consumer takes only with one */
    _Atomic long taken;
    _Atomic int errors;
    _Atomic int extra;          /* final takes that found a unit */
    _Atomic int consumers_done;
    _Atomic int stop;
} pc_state;

typedef struct {
    pc_state *p;
    int id;
} pc_arg;

static void *
producer_main(void *arg)
{
    pc_arg *a = arg;
    pc_state *p = a->p;
    long left = p->per_producer;
    unsigned i = (unsigned)a->id;
    while (left > 0) {
        uint32_t n = 1 + i % 4;
        if (n > left) {
            n = (uint32_t)left;
        }
        if (np_sem_give(&p->s, n, 0, i % 7 == 0) != NP_OK) {
            atomic_fetch_add(&p->errors, 1);
            break;
        }
        atomic_fetch_add(&p->given, n);
        left -= n;
        i++;
        if (i % 64 == 0) {
            sched_yield();
        }
    }
    return NULL;
}

static void *
consumer_main(void *arg)
{
    pc_arg *a = arg;
    pc_state *p = a->p;
    int flags = (a->id & 1) ? NP_SEM_NOSPIN : 0;
    /* Exactly `total` tickets exist, so every ticketed take must succeed; a
     * lost wakeup stalls it (the watchdog sees no progress), the deadline
     * only keeps a broken build from hanging. */
    while (atomic_fetch_add(&p->claimed, 1) < p->total) {
        int r = np_sem_take(&p->s, np_deadline_after(20), flags, NULL);
        if (r != NP_OK) {
            EXPECT_EQ(r, NP_OK);
            atomic_fetch_add(&p->errors, 1);
            break;
        }
        atomic_fetch_add_explicit(&p->taken, 1, memory_order_relaxed);
    }
    /* Final take, with a timeout, once every ticketed take is done (before
     * that it could steal a unit a ticket holder is owed): nothing may be
     * left over. */
    int64_t limit = np_monotonic_ns() + 30000 * MS;
    while (atomic_load(&p->taken) < p->total && !atomic_load(&p->errors) &&
           !atomic_load(&p->stop) && np_monotonic_ns() < limit) {
        test_sleep_ms(1);
    }
    if (np_sem_take(&p->s, np_deadline_after(0.02), flags, NULL) == NP_OK) {
        atomic_fetch_add(&p->extra, 1);
    }
    atomic_fetch_add(&p->consumers_done, 1);
    return NULL;
}

TEST(stress_producers_consumers)
{
    static pc_state p;
    static pc_arg pa[PRODUCERS], ca[CONSUMERS];
    p.per_producer = test_scaled(60000, 3000);
    p.total = p.per_producer * PRODUCERS;
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    int64_t t0 = test_now_ns();
    for (int i = 0; i < CONSUMERS; i++) {
        ca[i] = (pc_arg){&p, i};
        ASSERT_EQ(pthread_create(&ct[i], NULL, consumer_main, &ca[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (pc_arg){&p, i};
        ASSERT_EQ(pthread_create(&pt[i], NULL, producer_main, &pa[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(pt[i], NULL);
    }
    /* Watchdog on the consumers. */
    long last = -1;
    int64_t last_change = test_now_ns();
    while (atomic_load(&p.consumers_done) < CONSUMERS) {
        test_sleep_ms(10);
        long now = atomic_load(&p.taken);
        if (now != last) {
            last = now;
            last_change = test_now_ns();
        }
        else if (now < p.total && test_now_ns() - last_change > 3000 * MS) {
            test_fail_msg(__FILE__, __LINE__,
                          "consumers stalled: taken %ld of %ld, value %u, "
                          "sleepers %u", now, p.total, np_sem_value(&p.s),
                          np_sem_sleepers(&p.s));
            atomic_store(&p.stop, 1);
            np_sem_give(&p.s, CONSUMERS * 2, 0, 1);
            break;
        }
    }
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(ct[i], NULL);
    }
    RETURN_IF_FAILED();
    TEST_LOG("%ld units through %d producers / %d consumers in %.1f ms",
             p.total, PRODUCERS, CONSUMERS,
             (double)(test_now_ns() - t0) / 1e6);
    ASSERT_EQ(atomic_load(&p.errors), 0);
    ASSERT_EQ(atomic_load(&p.given), p.total);
    ASSERT_EQ(atomic_load(&p.taken), p.total);
    ASSERT_EQ(atomic_load(&p.extra), 0);
    ASSERT_UEQ(np_sem_value(&p.s), 0);
    ASSERT_UEQ(np_sem_sleepers(&p.s), 0);
}

static const test_case TESTS[] = {
    TEST_ENTRY(init_and_trytake_0_1_n),
    TEST_ENTRY(take_fast_path_sets_slept_0),
    TEST_ENTRY(take_blocks_until_give),
    TEST_ENTRY(take_slept_1_when_it_had_to_wait),
    TEST_ENTRY(take_times_out_never_early),
    TEST_ENTRY(take_past_deadline_returns_promptly),
    TEST_ENTRY(timed_out_waiter_does_not_lose_wakeup),
    TEST_ENTRY(interruptible_wait_returns_eintr),
    TEST_ENTRY(uninterruptible_wait_ignores_signals),
    TEST_ENTRY(nospin_parks_at_once),
    TEST_ENTRY(idle_waiter_does_not_burn_cpu),
    TEST_ENTRY(give_with_max_rejects_over_release),
    TEST_ENTRY(give_rejects_uint32_overflow),
    TEST_ENTRY(give_n_wakes_n_sleepers),
    TEST_ENTRY(give_wake_all),
    TEST_ENTRY(event_store_1_wakes_all_without_consuming),
    TEST_ENTRY(event_store_0_keeps_waiters_waiting),
    TEST_ENTRY(wait_change_basics),
    TEST_ENTRY(wait_change_sees_set_then_clear),
    TEST_ENTRY(wait_change_ignores_clear_and_bare_wake),
    TEST_ENTRY(event_wait_publishes_writes_before_store),
    TEST_ENTRY(event_wait_change_publishes_writes_before_set),
    TEST_ENTRY(sleepers_return_to_zero),
    TEST_ENTRY(stress_ping_pong_spin),
    TEST_ENTRY(stress_ping_pong_nospin),
    TEST_ENTRY(stress_mutual_exclusion),
    TEST_ENTRY(stress_producers_consumers),
};

int
main(int argc, char **argv)
{
    return TEST_MAIN(argc, argv, TESTS);
}
