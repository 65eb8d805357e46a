/* test_sync.c -- unit tests for csrc/runtime/np_sync.{h,c}:
 * np_mutex, np_futex_wait/wake, np_deadline_after, np_monotonic_ns. */
#include "test.h"

#include <float.h>
#include <math.h>
#include <pthread.h>

#include "np_sync.h"

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

/* ---- np_monotonic_ns / np_deadline_after --------------------------------- */

TEST(monotonic_clock_advances)
{
    int64_t a = np_monotonic_ns();
    ASSERT_GT(a, 0);
    int64_t prev = a;
    for (int i = 0; i < 100000; i++) {
        int64_t t = np_monotonic_ns();
        ASSERT_GE(t, prev);
        prev = t;
    }
    test_sleep_ms(10);
    int64_t b = np_monotonic_ns();
    ASSERT_GE(b - a, 10 * 1000000LL);
    /* Same clock as CLOCK_MONOTONIC. */
    int64_t c = test_now_ns();
    int64_t d = np_monotonic_ns();
    ASSERT_GE(d, c);
    ASSERT_LT(d - c, 1000000000LL);
}

/* deadline_after(s) called between two clock reads lo and hi must lie in
 * [lo + s, hi + s]. */
#define CHECK_DEADLINE_NOW(expr)                                  \
    do {                                                          \
        int64_t lo_ = np_monotonic_ns();                          \
        int64_t d_ = (expr);                                      \
        int64_t hi_ = np_monotonic_ns();                          \
        ASSERT_GE(d_, lo_);                                       \
        ASSERT_LE(d_, hi_);                                       \
    } while (0)

TEST(deadline_after_negative_zero_nan_mean_now)
{
    CHECK_DEADLINE_NOW(np_deadline_after(0.0));
    CHECK_DEADLINE_NOW(np_deadline_after(-0.0));
    CHECK_DEADLINE_NOW(np_deadline_after(-1.0));
    CHECK_DEADLINE_NOW(np_deadline_after(-1e300));
    CHECK_DEADLINE_NOW(np_deadline_after(-INFINITY));
    CHECK_DEADLINE_NOW(np_deadline_after(NAN));
    CHECK_DEADLINE_NOW(np_deadline_after(-NAN));
    CHECK_DEADLINE_NOW(np_deadline_after(-DBL_MIN));
}

TEST(deadline_after_finite)
{
    const double secs[] = {1e-9, 1e-6, 0.001, 0.5, 1.5, 3600.0, 86400.0 * 365,
                           1e9 /* ~31.7 years */};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        int64_t lo = np_monotonic_ns();
        int64_t d = np_deadline_after(secs[i]);
        int64_t hi = np_monotonic_ns();
        int64_t delta = (int64_t)(secs[i] * 1e9);
        ASSERT_NE(d, NP_FOREVER);
        /* allow 1 ns of rounding either way */
        ASSERT_GE(d, lo + delta - 1);
        ASSERT_LE(d, hi + delta + 1);
    }
    /* A denormal-small positive timeout is "now", not the past. */
    CHECK_DEADLINE_NOW(np_deadline_after(DBL_MIN));
    CHECK_DEADLINE_NOW(np_deadline_after(4.9e-324));
}

TEST(deadline_after_huge_is_forever)
{
    ASSERT_EQ(np_deadline_after(INFINITY), NP_FOREVER);
    ASSERT_EQ(np_deadline_after(DBL_MAX), NP_FOREVER);
    ASSERT_EQ(np_deadline_after(1e300), NP_FOREVER);
    ASSERT_EQ(np_deadline_after(1e19), NP_FOREVER);
    ASSERT_EQ(np_deadline_after(9.3e9), NP_FOREVER);   /* > 292 years */
    ASSERT_EQ(np_deadline_after((double)INT64_MAX), NP_FOREVER);
    ASSERT_EQ(np_deadline_after((double)INT64_MAX / 1e9), NP_FOREVER);
}

/* Right below the "forever" threshold the result must not wrap around
 * (UBSan in `make asan` also checks the addition for overflow). */
TEST(deadline_after_near_limit_does_not_overflow)
{
    for (int k = 0; k < 2000; k++) {
        int64_t now = np_monotonic_ns();
        double s = (double)(INT64_MAX - now) / 1e9;
        for (int j = 0; j <= k % 50; j++) {
            s = nextafter(s, 0);
        }
        int64_t d = np_deadline_after(s);
        ASSERT_GT(d, now);   /* NP_FOREVER or a huge finite deadline */
        if (d != NP_FOREVER) {
            ASSERT_GT(d, INT64_MAX / 2);
        }
    }
}

/* ---- np_futex_wait / np_futex_wake --------------------------------------- */

TEST(futex_wait_value_differs_returns_eagain)
{
    _Atomic uint32_t word = 5;
    int64_t t0 = test_now_ns();
    ASSERT_EQ(np_futex_wait(&word, 4, NP_FOREVER), NP_EAGAIN);
    ASSERT_EQ(np_futex_wait(&word, 0, np_deadline_after(10.0)), NP_EAGAIN);
    ASSERT_LT(test_now_ns() - t0, 1000000000LL);
}

TEST(futex_wait_times_out)
{
    _Atomic uint32_t word = 0;
    int64_t t0 = np_monotonic_ns();
    int64_t deadline = np_deadline_after(0.05);
    ASSERT_EQ(np_futex_wait(&word, 0, deadline), NP_ETIMEDOUT);
    int64_t t1 = np_monotonic_ns();
    ASSERT_GE(t1, deadline);             /* not early */
    ASSERT_GE(t1 - t0, 50 * 1000000LL);
    ASSERT_LT(t1 - t0, 5000 * 1000000LL);
}

TEST(futex_wait_past_deadline_returns_immediately)
{
    _Atomic uint32_t word = 0;
    int64_t t0 = np_monotonic_ns();
    ASSERT_EQ(np_futex_wait(&word, 0, np_deadline_after(0)), NP_ETIMEDOUT);
    ASSERT_EQ(np_futex_wait(&word, 0, np_deadline_after(-5)), NP_ETIMEDOUT);
    ASSERT_EQ(np_futex_wait(&word, 0, 0), NP_ETIMEDOUT);
    ASSERT_EQ(np_futex_wait(&word, 0, -1), NP_ETIMEDOUT);
    ASSERT_EQ(np_futex_wait(&word, 0, INT64_MIN), NP_ETIMEDOUT);
    ASSERT_LT(np_monotonic_ns() - t0, 1000000000LL);
}

typedef struct {
    _Atomic uint32_t *word;
    uint32_t expected;
    int64_t deadline;
    _Atomic pid_t tid;
    _Atomic int returned;
    _Atomic int result;
    _Atomic int wakeups;      /* NP_OK returns */
    int loop_until_changed;   /* re-wait while *word == expected */
} futex_waiter;

static void *
futex_waiter_main(void *arg)
{
    futex_waiter *w = arg;
    atomic_store(&w->tid, test_gettid());
    int r;
    for (;;) {
        r = np_futex_wait(w->word, w->expected, w->deadline);
        if (r == NP_OK) {
            atomic_fetch_add(&w->wakeups, 1);
        }
        if (!w->loop_until_changed || r == NP_ETIMEDOUT || r == NP_EINTR ||
            atomic_load(w->word) != w->expected) {
            break;
        }
    }
    atomic_store(&w->result, r);
    atomic_store(&w->returned, 1);
    return NULL;
}

TEST(futex_wake_wakes_a_sleeper)
{
    _Atomic uint32_t word = 0;
    futex_waiter w = {.word = &word, .expected = 0, .deadline = NP_FOREVER,
                      .loop_until_changed = 1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, futex_waiter_main, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(test_wait_in_futex(atomic_load(&w.tid), 5));
    ASSERT_EQ(atomic_load(&w.returned), 0);
    /* The futex rule: change the word, then wake. */
    atomic_store(&word, 1);
    np_futex_wake(&word, 1);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&w.result), NP_OK);
    ASSERT_GE(atomic_load(&w.wakeups), 1);
}

TEST(futex_wake_count_is_respected)
{
    enum { N = 3 };
    _Atomic uint32_t word = 7;
    futex_waiter w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].word = &word;
        w[i].expected = 7;
        w[i].deadline = np_deadline_after(30);
        w[i].loop_until_changed = 0;   /* return on the first wakeup */
        ASSERT_EQ(pthread_create(&th[i], NULL, futex_waiter_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_TRUE(WAIT_FOR(atomic_load(&w[i].tid) != 0, 5));
        ASSERT_TRUE(test_wait_in_futex(atomic_load(&w[i].tid), 5));
    }
    /* The word is unchanged, so only the wake can return them. */
    np_futex_wake(&word, 1);
    test_sleep_ms(100);
    int returned = 0;
    for (int i = 0; i < N; i++) {
        returned += atomic_load(&w[i].returned);
    }
    EXPECT_EQ(returned, 1);
    np_futex_wake(&word, INT32_MAX);
    for (int i = 0; i < N; i++) {
        EXPECT_TRUE(WAIT_FOR(atomic_load(&w[i].returned), 5));
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(atomic_load(&w[i].result), NP_OK);
    }
}

TEST(futex_wake_without_sleepers_is_harmless)
{
    _Atomic uint32_t word = 0;
    np_futex_wake(&word, 1);
    np_futex_wake(&word, INT32_MAX);
    ASSERT_EQ(atomic_load(&word), 0);
}

TEST(futex_wait_returns_eintr_on_signal)
{
    install_sigusr1();
    _Atomic uint32_t word = 0;
    futex_waiter w = {.word = &word, .expected = 0,
                      .deadline = np_deadline_after(30),
                      .loop_until_changed = 0};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, futex_waiter_main, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(test_wait_in_futex(atomic_load(&w.tid), 5));
    pthread_kill(th, SIGUSR1);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
    if (!atomic_load(&w.returned)) {
        atomic_store(&word, 1);
        np_futex_wake(&word, INT32_MAX);
    }
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&w.result), NP_EINTR);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&sig_count) >= 1, 5));
    ASSERT_EQ(atomic_load(&sig_last_tid), atomic_load(&w.tid));
}

/* ---- np_mutex: basics ------------------------------------------------------ */

TEST(mutex_static_init_is_unlocked)
{
    np_mutex m = NP_MUTEX_INIT;
    ASSERT_FALSE(np_mutex_is_locked(&m));
    np_mutex_lock(&m);
    ASSERT_TRUE(np_mutex_is_locked(&m));
    np_mutex_unlock(&m);
    ASSERT_FALSE(np_mutex_is_locked(&m));
    ASSERT_EQ(atomic_load(&m.word), 0);
}

typedef struct {
    np_mutex *m;
    _Atomic int result;
} try_arg;

static void *
trylock_main(void *arg)
{
    try_arg *a = arg;
    atomic_store(&a->result, np_mutex_trylock(a->m));
    return NULL;
}

TEST(mutex_trylock)
{
    np_mutex m = NP_MUTEX_INIT;
    ASSERT_TRUE(np_mutex_trylock(&m));
    ASSERT_TRUE(np_mutex_is_locked(&m));
    ASSERT_EQ(atomic_load(&m.word), 1);      /* uncontended: state 1 */
    ASSERT_FALSE(np_mutex_trylock(&m));      /* not recursive */
    ASSERT_TRUE(np_mutex_is_locked(&m));

    /* Another thread cannot take it either. */
    try_arg a = {.m = &m, .result = -1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, trylock_main, &a), 0);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&a.result), 0);

    np_mutex_unlock(&m);
    ASSERT_FALSE(np_mutex_is_locked(&m));
    atomic_store(&a.result, -1);
    ASSERT_EQ(pthread_create(&th, NULL, trylock_main, &a), 0);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&a.result), 1);    /* taken by the other thread */
    ASSERT_TRUE(np_mutex_is_locked(&m));
    np_mutex_unlock(&m);                     /* no owner tracking */

    /* A contended word (2) is locked too. */
    np_mutex_lock(&m);
    atomic_store(&m.word, 2);
    ASSERT_FALSE(np_mutex_trylock(&m));
    np_mutex_unlock(&m);
    ASSERT_EQ(atomic_load(&m.word), 0);
    ASSERT_TRUE(np_mutex_trylock(&m));
    np_mutex_unlock(&m);
}

TEST(mutex_lock_until_free_mutex_ignores_past_deadline)
{
    np_mutex m = NP_MUTEX_INIT;
    ASSERT_EQ(np_mutex_lock_until(&m, 0, 0), NP_OK);
    np_mutex_unlock(&m);
    ASSERT_EQ(np_mutex_lock_until(&m, np_deadline_after(-1), 1), NP_OK);
    ASSERT_TRUE(np_mutex_is_locked(&m));
    np_mutex_unlock(&m);
    ASSERT_EQ(np_mutex_lock_until(&m, NP_FOREVER, 1), NP_OK);
    np_mutex_unlock(&m);
}

TEST(mutex_lock_until_times_out)
{
    np_mutex m = NP_MUTEX_INIT;
    np_mutex_lock(&m);

    /* Already expired: returns at once. */
    int64_t t0 = np_monotonic_ns();
    ASSERT_EQ(np_mutex_lock_until(&m, np_deadline_after(0), 0), NP_ETIMEDOUT);
    ASSERT_EQ(np_mutex_lock_until(&m, np_deadline_after(-1), 1), NP_ETIMEDOUT);
    ASSERT_LT(np_monotonic_ns() - t0, 1000000000LL);

    /* 50 ms, non-interruptible and interruptible. */
    for (int intr = 0; intr <= 1; intr++) {
        t0 = np_monotonic_ns();
        int64_t deadline = np_deadline_after(0.05);
        ASSERT_EQ(np_mutex_lock_until(&m, deadline, intr), NP_ETIMEDOUT);
        int64_t t1 = np_monotonic_ns();
        ASSERT_GE(t1, deadline);
        ASSERT_GE(t1 - t0, 50 * 1000000LL);
        ASSERT_LT(t1 - t0, 5000 * 1000000LL);
        ASSERT_TRUE(np_mutex_is_locked(&m));   /* still ours */
    }

    /* Still a working mutex afterwards. */
    np_mutex_unlock(&m);
    ASSERT_FALSE(np_mutex_is_locked(&m));
    ASSERT_EQ(np_mutex_lock_until(&m, np_deadline_after(0.05), 0), NP_OK);
    np_mutex_unlock(&m);
    ASSERT_TRUE(np_mutex_trylock(&m));
    np_mutex_unlock(&m);
}

/* ---- np_mutex: waiter threads ----------------------------------------------- */

typedef struct {
    np_mutex *m;
    int64_t deadline;
    int interruptible;
    int use_plain_lock;      /* np_mutex_lock instead of lock_until */
    int unlock_after;        /* unlock if acquired */
    _Atomic pid_t tid;
    _Atomic int returned;
    _Atomic int result;
    _Atomic int signals_seen; /* handler runs in this thread while waiting */
} lock_waiter;

static _Thread_local int tls_sig_seen;

static void
on_sigusr1_tls(int sig)
{
    on_sigusr1(sig);
    tls_sig_seen++;
}

static void
install_sigusr1_tls(void)
{
    install_sigusr1();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1_tls;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
}

static void *
lock_waiter_main(void *arg)
{
    lock_waiter *w = arg;
    tls_sig_seen = 0;
    atomic_store(&w->tid, test_gettid());
    int r;
    if (w->use_plain_lock) {
        np_mutex_lock(w->m);
        r = NP_OK;
    }
    else {
        r = np_mutex_lock_until(w->m, w->deadline, w->interruptible);
    }
    atomic_store(&w->signals_seen, tls_sig_seen);
    if (r == NP_OK && w->unlock_after) {
        np_mutex_unlock(w->m);
    }
    atomic_store(&w->result, r);
    atomic_store(&w->returned, 1);
    return NULL;
}

TEST(mutex_interruptible_lock_returns_eintr)
{
    install_sigusr1_tls();
    np_mutex m = NP_MUTEX_INIT;
    np_mutex_lock(&m);
    lock_waiter w = {.m = &m, .deadline = NP_FOREVER, .interruptible = 1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, lock_waiter_main, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(test_wait_in_futex(atomic_load(&w.tid), 5));
    ASSERT_EQ(atomic_load(&m.word), 2);   /* the waiter announced itself */

    /* A signal sent before the waiter reached the kernel would be "lost" to
     * the wait (inherent to futexes); the waiter is asleep now, but keep
     * sending until it returns so a bug shows up as a failure, not a hang. */
    int64_t deadline = test_now_ns() + 5000000000LL;
    while (!atomic_load(&w.returned) && test_now_ns() < deadline) {
        pthread_kill(th, SIGUSR1);
        WAIT_FOR(atomic_load(&w.returned), 0.05);
    }
    int returned = atomic_load(&w.returned);
    if (!returned) {
        np_mutex_unlock(&m);   /* let it finish before failing */
        pthread_join(th, NULL);
        FAIL("interruptible waiter did not return on SIGUSR1");
    }
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&w.result), NP_EINTR);
    /* The handler ran in the waiting thread.  (Under TSan the user handler
     * is deferred until TSan's next interception point, which may come after
     * the wait has returned EINTR -- so only check it eventually.) */
    if (!NP_TEST_TSAN) {
        ASSERT_GE(atomic_load(&w.signals_seen), 1);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&sig_count) >= 1, 5));
    ASSERT_EQ(atomic_load(&sig_last_tid), atomic_load(&w.tid));
    /* It did not take the lock: we still own it. */
    ASSERT_TRUE(np_mutex_is_locked(&m));
    ASSERT_FALSE(np_mutex_trylock(&m));
    np_mutex_unlock(&m);
    ASSERT_TRUE(np_mutex_trylock(&m));
    np_mutex_unlock(&m);
}

TEST(mutex_interruptible_lock_with_deadline_returns_eintr)
{
    install_sigusr1_tls();
    np_mutex m = NP_MUTEX_INIT;
    np_mutex_lock(&m);
    lock_waiter w = {.m = &m, .deadline = np_deadline_after(30),
                     .interruptible = 1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, lock_waiter_main, &w), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
    ASSERT_TRUE(test_wait_in_futex(atomic_load(&w.tid), 5));
    int64_t deadline = test_now_ns() + 5000000000LL;
    while (!atomic_load(&w.returned) && test_now_ns() < deadline) {
        pthread_kill(th, SIGUSR1);
        WAIT_FOR(atomic_load(&w.returned), 0.05);
    }
    np_mutex_unlock(&m);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&w.result), NP_EINTR);
    ASSERT_FALSE(np_mutex_is_locked(&m));
}

TEST(mutex_uninterruptible_lock_ignores_signals)
{
    install_sigusr1_tls();
    for (int plain = 0; plain <= 1; plain++) {
        np_mutex m = NP_MUTEX_INIT;
        np_mutex_lock(&m);
        lock_waiter w = {.m = &m, .deadline = NP_FOREVER, .interruptible = 0,
                         .use_plain_lock = plain, .unlock_after = 1};
        pthread_t th;
        ASSERT_EQ(pthread_create(&th, NULL, lock_waiter_main, &w), 0);
        ASSERT_TRUE(WAIT_FOR(atomic_load(&w.tid) != 0, 5));
        ASSERT_TRUE(test_wait_in_futex(atomic_load(&w.tid), 5));
        int before = atomic_load(&sig_count);
        for (int i = 0; i < 5; i++) {
            pthread_kill(th, SIGUSR1);
            ASSERT_TRUE(WAIT_FOR(atomic_load(&sig_count) > before + i, 5));
            /* and it went back to sleep instead of returning */
            ASSERT_TRUE(test_wait_in_futex(atomic_load(&w.tid), 5));
        }
        EXPECT_EQ(atomic_load(&w.returned), 0);
        np_mutex_unlock(&m);
        EXPECT_TRUE(WAIT_FOR(atomic_load(&w.returned), 5));
        pthread_join(th, NULL);
        ASSERT_EQ(atomic_load(&w.result), NP_OK);
        ASSERT_EQ(atomic_load(&w.signals_seen), 5);
        ASSERT_FALSE(np_mutex_is_locked(&m));
    }
}

/* A waiter that times out must not swallow the wakeup meant for another
 * waiter: A waits forever, B with a short deadline; B times out; the owner's
 * unlock must still hand the lock to A. */
TEST(mutex_timed_out_waiter_does_not_lose_wakeup)
{
    np_mutex m = NP_MUTEX_INIT;
    np_mutex_lock(&m);
    lock_waiter a = {.m = &m, .deadline = NP_FOREVER, .unlock_after = 1};
    lock_waiter b = {.m = &m, .deadline = np_deadline_after(0.1)};
    pthread_t ta, tb;
    ASSERT_EQ(pthread_create(&ta, NULL, lock_waiter_main, &a), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&a.tid) != 0, 5));
    ASSERT_TRUE(test_wait_in_futex(atomic_load(&a.tid), 5));
    ASSERT_EQ(pthread_create(&tb, NULL, lock_waiter_main, &b), 0);
    pthread_join(tb, NULL);
    ASSERT_EQ(atomic_load(&b.result), NP_ETIMEDOUT);
    ASSERT_EQ(atomic_load(&a.returned), 0);
    np_mutex_unlock(&m);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&a.returned), 5));
    if (!atomic_load(&a.returned)) {
        /* a lost wakeup: rescue the thread so the test can end */
        np_futex_wake(&m.word, INT32_MAX);
    }
    pthread_join(ta, NULL);
    ASSERT_EQ(atomic_load(&a.result), NP_OK);
    ASSERT_FALSE(np_mutex_is_locked(&m));
}

/* Unlocking with sleepers wakes them one by one, and every one of them gets
 * the lock. */
TEST(mutex_unlock_hands_over_to_every_sleeper)
{
    enum { N = 6 };
    np_mutex m = NP_MUTEX_INIT;
    np_mutex_lock(&m);
    lock_waiter w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].m = &m;
        w[i].deadline = NP_FOREVER;
        w[i].use_plain_lock = i & 1;
        w[i].unlock_after = 1;
        ASSERT_EQ(pthread_create(&th[i], NULL, lock_waiter_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_TRUE(WAIT_FOR(atomic_load(&w[i].tid) != 0, 5));
        ASSERT_TRUE(test_wait_in_futex(atomic_load(&w[i].tid), 5));
    }
    ASSERT_EQ(atomic_load(&m.word), 2);
    np_mutex_unlock(&m);
    for (int i = 0; i < N; i++) {
        EXPECT_TRUE(WAIT_FOR(atomic_load(&w[i].returned), 10));
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(atomic_load(&w[i].result), NP_OK);
    }
    ASSERT_EQ(atomic_load(&m.word), 0);
}

/* ---- np_mutex: mutual exclusion under contention ---------------------------- */

enum { EXCL_THREADS = 8 };

typedef struct {
    np_mutex m;
    long counter;             /* plain, non-atomic: protected by m */
    _Atomic int inside;       /* threads in the critical section */
    _Atomic int violations;
    _Atomic int bad_returns;
    long iters;
    _Atomic int go;
} excl_shared;

typedef struct {
    excl_shared *s;
    int mode;
} excl_arg;

static void *
excl_main(void *arg)
{
    excl_arg *a = arg;
    excl_shared *s = a->s;
    while (!atomic_load(&s->go)) {
    }
    for (long i = 0; i < s->iters; i++) {
        int r = NP_OK;
        switch (a->mode % 4) {
        case 0:
            np_mutex_lock(&s->m);
            break;
        case 1:
            r = np_mutex_lock_until(&s->m, NP_FOREVER, 1);
            break;
        case 2:
            /* far deadline: takes the timed path through the kernel */
            r = np_mutex_lock_until(&s->m, np_monotonic_ns() + 60000000000LL, 0);
            break;
        case 3:
            while (!np_mutex_trylock(&s->m)) {
                sched_yield();
            }
            break;
        }
        if (r != NP_OK) {
            atomic_fetch_add(&s->bad_returns, 1);
            continue;
        }
        if (atomic_fetch_add_explicit(&s->inside, 1, memory_order_relaxed) != 0) {
            atomic_fetch_add(&s->violations, 1);
        }
        /* read-modify-write with a window for another thread to interleave */
        long c = s->counter;
        if ((i & 255) == 0) {
            sched_yield();
        }
        s->counter = c + 1;
        atomic_fetch_sub_explicit(&s->inside, 1, memory_order_relaxed);
        np_mutex_unlock(&s->m);
    }
    return NULL;
}

TEST(mutex_mutual_exclusion_8_threads)
{
    static excl_shared s;
    memset(&s, 0, sizeof s);
    s.iters = test_scaled(200000, 5000);
    excl_arg args[EXCL_THREADS];
    pthread_t th[EXCL_THREADS];
    for (int i = 0; i < EXCL_THREADS; i++) {
        args[i].s = &s;
        args[i].mode = i;
        ASSERT_EQ(pthread_create(&th[i], NULL, excl_main, &args[i]), 0);
    }
    atomic_store(&s.go, 1);
    for (int i = 0; i < EXCL_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    ASSERT_EQ(atomic_load(&s.bad_returns), 0);
    ASSERT_EQ(atomic_load(&s.violations), 0);
    ASSERT_EQ(s.counter, (long)EXCL_THREADS * s.iters);
    ASSERT_FALSE(np_mutex_is_locked(&s.m));
    ASSERT_EQ(atomic_load(&s.m.word), 0);
}

/* Same with 4 threads that hold the lock long enough that waiters really
 * sleep in the kernel (exercises the 2-state handoff much more often). */
static void *
excl_sleepy_main(void *arg)
{
    excl_arg *a = arg;
    excl_shared *s = a->s;
    while (!atomic_load(&s->go)) {
    }
    for (long i = 0; i < s->iters; i++) {
        if (a->mode & 1) {
            np_mutex_lock(&s->m);
        }
        else if (np_mutex_lock_until(&s->m, NP_FOREVER, 1) != NP_OK) {
            atomic_fetch_add(&s->bad_returns, 1);
            continue;
        }
        if (atomic_fetch_add(&s->inside, 1) != 0) {
            atomic_fetch_add(&s->violations, 1);
        }
        long c = s->counter;
        struct timespec ts = {0, 20000};   /* 20 us inside */
        nanosleep(&ts, NULL);
        s->counter = c + 1;
        atomic_fetch_sub(&s->inside, 1);
        np_mutex_unlock(&s->m);
    }
    return NULL;
}

TEST(mutex_mutual_exclusion_sleeping_waiters)
{
    enum { N = 4 };
    static excl_shared s;
    memset(&s, 0, sizeof s);
    s.iters = test_scaled(2000, 300);
    excl_arg args[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        args[i].s = &s;
        args[i].mode = i;
        ASSERT_EQ(pthread_create(&th[i], NULL, excl_sleepy_main, &args[i]), 0);
    }
    atomic_store(&s.go, 1);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
    }
    ASSERT_EQ(atomic_load(&s.bad_returns), 0);
    ASSERT_EQ(atomic_load(&s.violations), 0);
    ASSERT_EQ(s.counter, (long)N * s.iters);
    ASSERT_EQ(atomic_load(&s.m.word), 0);
}

/* Timed lockers mixed with plain lockers: every timed-out attempt is retried,
 * exclusion holds and nobody is left asleep. */
static void *
excl_timed_main(void *arg)
{
    excl_arg *a = arg;
    excl_shared *s = a->s;
    while (!atomic_load(&s->go)) {
    }
    for (long i = 0; i < s->iters; i++) {
        if (a->mode & 1) {
            np_mutex_lock(&s->m);
        }
        else {
            /* 0-50 us deadlines: many of them expire while asleep */
            while (np_mutex_lock_until(&s->m,
                                       np_monotonic_ns() + (i % 50) * 1000,
                                       0) != NP_OK) {
            }
        }
        if (atomic_fetch_add(&s->inside, 1) != 0) {
            atomic_fetch_add(&s->violations, 1);
        }
        long c = s->counter;
        if ((i & 63) == 0) {
            struct timespec ts = {0, 10000};
            nanosleep(&ts, NULL);
        }
        s->counter = c + 1;
        atomic_fetch_sub(&s->inside, 1);
        np_mutex_unlock(&s->m);
    }
    return NULL;
}

TEST(mutex_mutual_exclusion_with_timeouts)
{
    enum { N = 6 };
    static excl_shared s;
    memset(&s, 0, sizeof s);
    s.iters = test_scaled(50000, 3000);
    excl_arg args[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        args[i].s = &s;
        args[i].mode = i;
        ASSERT_EQ(pthread_create(&th[i], NULL, excl_timed_main, &args[i]), 0);
    }
    atomic_store(&s.go, 1);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
    }
    ASSERT_EQ(atomic_load(&s.violations), 0);
    ASSERT_EQ(s.counter, (long)N * s.iters);
    ASSERT_FALSE(np_mutex_is_locked(&s.m));
}

static const test_case TESTS[] = {
    TEST_ENTRY(monotonic_clock_advances),
    TEST_ENTRY(deadline_after_negative_zero_nan_mean_now),
    TEST_ENTRY(deadline_after_finite),
    TEST_ENTRY(deadline_after_huge_is_forever),
    TEST_ENTRY(deadline_after_near_limit_does_not_overflow),
    TEST_ENTRY(futex_wait_value_differs_returns_eagain),
    TEST_ENTRY(futex_wait_times_out),
    TEST_ENTRY(futex_wait_past_deadline_returns_immediately),
    TEST_ENTRY(futex_wake_wakes_a_sleeper),
    TEST_ENTRY(futex_wake_count_is_respected),
    TEST_ENTRY(futex_wake_without_sleepers_is_harmless),
    TEST_ENTRY(futex_wait_returns_eintr_on_signal),
    TEST_ENTRY(mutex_static_init_is_unlocked),
    TEST_ENTRY(mutex_trylock),
    TEST_ENTRY(mutex_lock_until_free_mutex_ignores_past_deadline),
    TEST_ENTRY(mutex_lock_until_times_out),
    TEST_ENTRY(mutex_interruptible_lock_returns_eintr),
    TEST_ENTRY(mutex_interruptible_lock_with_deadline_returns_eintr),
    TEST_ENTRY(mutex_uninterruptible_lock_ignores_signals),
    TEST_ENTRY(mutex_timed_out_waiter_does_not_lose_wakeup),
    TEST_ENTRY(mutex_unlock_hands_over_to_every_sleeper),
    TEST_ENTRY(mutex_mutual_exclusion_8_threads),
    TEST_ENTRY(mutex_mutual_exclusion_sleeping_waiters),
    TEST_ENTRY(mutex_mutual_exclusion_with_timeouts),
};

int
main(int argc, char **argv)
{
    return TEST_MAIN(argc, argv, TESTS);
}
