/*
 * test.h -- a tiny unit-test harness for the nativepool C runtime.
 *
 * Writing tests:
 *
 *     TEST(mutex_trylock) {
 *         np_mutex m = NP_MUTEX_INIT;
 *         ASSERT_TRUE(np_mutex_trylock(&m));
 *         ASSERT_EQ(np_mutex_is_locked(&m), 1);
 *     }
 *
 *     static const test_case TESTS[] = { TEST_ENTRY(mutex_trylock), ... };
 *     int main(int argc, char **argv) { return TEST_MAIN(argc, argv, TESTS); }
 *
 * ASSERT_* print both sides, the file and the line, mark the test failed and
 * return from the current function (so use them in the test body or in void
 * helpers).  EXPECT_* do the same but do not return: use them in worker
 * threads, hooks and anywhere a `return;` would be wrong.
 *
 * Running: each test runs in its own forked child process (the main process
 * never starts a thread, so this fork is single-threaded and sanitizer
 * friendly).  A test that crashes, aborts or hangs is reported as a failure
 * and the remaining tests still run.  Every program ends with the line
 *
 *     N passed, M failed
 *
 * and exits non-zero if M > 0.
 *
 * Command line / environment:
 *     prog [substring...]     run only tests whose name contains one of them
 *     NP_TEST_SKIP=a,b*       skip these tests (names or fnmatch patterns,
 *                             e.g. NP_TEST_SKIP='*fork*')
 *     NP_TEST_NOFORK=1        run tests in-process (for gdb; a crash ends all)
 *     NP_TEST_TIMEOUT=secs    per-test timeout (default 60)
 *     NP_TEST_SCALE=n         divide the size of the big loops by n (the
 *                             sanitizer builds compile in -DNP_TEST_SCALE=10)
 *     NP_TEST_VERBOSE=1       let tests print diagnostics
 */
#ifndef NP_TEST_H
#define NP_TEST_H

#define _GNU_SOURCE
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NP_TEST_SCALE
#define NP_TEST_SCALE 1
#endif

/* Which sanitizer, if any, this binary was built with. */
#if defined(__SANITIZE_THREAD__)
#define NP_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_TEST_TSAN 1
#endif
#endif
#ifndef NP_TEST_TSAN
#define NP_TEST_TSAN 0
#endif

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

#define TEST(name) static void name(void)
#define TEST_ENTRY(name) { #name, name }
#define TEST_MAIN(argc, argv, table) \
    test_main((argc), (argv), (table), sizeof(table) / sizeof((table)[0]))

/* Failures in the current test (any thread). */
static _Atomic int test_cur_failures;
static const char *test_cur_name = "";

static void
test_fail_msg(const char *file, int line, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&test_cur_failures, 1);
    fprintf(stdout, "  %s:%d: [%s] %s\n", file, line, test_cur_name, buf);
    fflush(stdout);
}

static inline int
test_verbose(void)
{
    const char *v = getenv("NP_TEST_VERBOSE");
    return v != NULL && *v != '\0' && *v != '0';
}

#define TEST_LOG(...)                      \
    do {                                   \
        if (test_verbose()) {              \
            fprintf(stdout, "    # ");     \
            fprintf(stdout, __VA_ARGS__);  \
            fprintf(stdout, "\n");         \
            fflush(stdout);                \
        }                                  \
    } while (0)

/* Comparisons are done on intmax_t / uintmax_t so both sides print. */
#define TEST_CMP_(ret, a, op, b)                                             \
    do {                                                                     \
        intmax_t test_a_ = (intmax_t)(a), test_b_ = (intmax_t)(b);           \
        if (!(test_a_ op test_b_)) {                                         \
            test_fail_msg(__FILE__, __LINE__,                                \
                          "expected %s %s %s, got %jd vs %jd", #a, #op, #b,  \
                          test_a_, test_b_);                                 \
            ret;                                                             \
        }                                                                    \
    } while (0)

#define TEST_UCMP_(ret, a, op, b)                                            \
    do {                                                                     \
        uintmax_t test_a_ = (uintmax_t)(a), test_b_ = (uintmax_t)(b);        \
        if (!(test_a_ op test_b_)) {                                         \
            test_fail_msg(__FILE__, __LINE__,                                \
                          "expected %s %s %s, got %ju vs %ju", #a, #op, #b,  \
                          test_a_, test_b_);                                 \
            ret;                                                             \
        }                                                                    \
    } while (0)

#define TEST_PTR_(ret, a, op, b)                                             \
    do {                                                                     \
        const void *test_a_ = (const void *)(a), *test_b_ = (const void *)(b); \
        if (!(test_a_ op test_b_)) {                                         \
            test_fail_msg(__FILE__, __LINE__,                                \
                          "expected %s %s %s, got %p vs %p", #a, #op, #b,    \
                          test_a_, test_b_);                                 \
            ret;                                                             \
        }                                                                    \
    } while (0)

#define TEST_BOOL_(ret, x, want)                                             \
    do {                                                                     \
        intmax_t test_x_ = (intmax_t)(x);                                    \
        if ((test_x_ != 0) != (want)) {                                      \
            test_fail_msg(__FILE__, __LINE__, "expected %s to be %s, got %jd", \
                          #x, (want) ? "true" : "false", test_x_);           \
            ret;                                                             \
        }                                                                    \
    } while (0)

#define TEST_RETURN_ return
#define TEST_NORETURN_ (void)0

#define ASSERT_EQ(a, b) TEST_CMP_(TEST_RETURN_, a, ==, b)
#define ASSERT_NE(a, b) TEST_CMP_(TEST_RETURN_, a, !=, b)
#define ASSERT_LT(a, b) TEST_CMP_(TEST_RETURN_, a, <, b)
#define ASSERT_LE(a, b) TEST_CMP_(TEST_RETURN_, a, <=, b)
#define ASSERT_GT(a, b) TEST_CMP_(TEST_RETURN_, a, >, b)
#define ASSERT_GE(a, b) TEST_CMP_(TEST_RETURN_, a, >=, b)
#define ASSERT_UEQ(a, b) TEST_UCMP_(TEST_RETURN_, a, ==, b)
#define ASSERT_PTR_EQ(a, b) TEST_PTR_(TEST_RETURN_, a, ==, b)
#define ASSERT_PTR_NE(a, b) TEST_PTR_(TEST_RETURN_, a, !=, b)
#define ASSERT_TRUE(x) TEST_BOOL_(TEST_RETURN_, x, 1)
#define ASSERT_FALSE(x) TEST_BOOL_(TEST_RETURN_, x, 0)

#define EXPECT_EQ(a, b) TEST_CMP_(TEST_NORETURN_, a, ==, b)
#define EXPECT_NE(a, b) TEST_CMP_(TEST_NORETURN_, a, !=, b)
#define EXPECT_LT(a, b) TEST_CMP_(TEST_NORETURN_, a, <, b)
#define EXPECT_LE(a, b) TEST_CMP_(TEST_NORETURN_, a, <=, b)
#define EXPECT_GT(a, b) TEST_CMP_(TEST_NORETURN_, a, >, b)
#define EXPECT_GE(a, b) TEST_CMP_(TEST_NORETURN_, a, >=, b)
#define EXPECT_UEQ(a, b) TEST_UCMP_(TEST_NORETURN_, a, ==, b)
#define EXPECT_PTR_EQ(a, b) TEST_PTR_(TEST_NORETURN_, a, ==, b)
#define EXPECT_TRUE(x) TEST_BOOL_(TEST_NORETURN_, x, 1)
#define EXPECT_FALSE(x) TEST_BOOL_(TEST_NORETURN_, x, 0)

#define FAIL(...) \
    do { test_fail_msg(__FILE__, __LINE__, __VA_ARGS__); return; } while (0)

/* True if the current test has failed so far (e.g. to stop after a helper
 * that used ASSERT_*). */
#define TEST_FAILED() (atomic_load(&test_cur_failures) != 0)
#define RETURN_IF_FAILED() do { if (TEST_FAILED()) return; } while (0)

/* ---- small utilities shared by the test programs ------------------------ */

static inline int64_t
test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void
test_sleep_ms(double ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Poll `cond` every ~1 ms for up to `secs` seconds; evaluates to its final
 * truth value. */
#define WAIT_FOR(cond, secs)                                                 \
    ({                                                                       \
        int64_t wf_deadline_ = test_now_ns() + (int64_t)((secs) * 1e9);      \
        int wf_ok_;                                                          \
        while (!(wf_ok_ = !!(cond)) && test_now_ns() < wf_deadline_) {       \
            test_sleep_ms(1);                                                \
        }                                                                    \
        wf_ok_;                                                              \
    })

static inline long
test_scale(void)
{
    const char *s = getenv("NP_TEST_SCALE");
    long v = (s != NULL) ? strtol(s, NULL, 10) : 0;
    return v > 0 ? v : NP_TEST_SCALE;
}

/* n divided by the scale, at least `min`. */
static inline long
test_scaled(long n, long min)
{
    long v = n / test_scale();
    return v < min ? min : v;
}

static inline pid_t
test_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* 1 if thread `tid` of this process is blocked in system call sysno, 0 if
 * not, -1 if /proc cannot tell. */
static inline int
test_thread_in_syscall(pid_t tid, long sysno)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    long nr = -2;
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || sscanf(buf, "%ld", &nr) != 1) {
        return -1;
    }
    /* "running" instead of a number: not in a system call */
    return nr == sysno;
}

static inline int
test_thread_in_futex(pid_t tid)
{
    return test_thread_in_syscall(tid, SYS_futex);
}

/* Wait (up to secs) until thread tid sleeps in system call sysno (SYS_futex,
 * SYS_ppoll...).  Returns 1 when it does; if /proc cannot tell, sleeps
 * 100 ms and returns 1 (best effort). */
static inline int
test_wait_in_syscall(pid_t tid, long sysno, double secs)
{
    int64_t deadline = test_now_ns() + (int64_t)(secs * 1e9);
    int stable = 0;
    for (;;) {
        int r = test_thread_in_syscall(tid, sysno);
        if (r < 0) {
            test_sleep_ms(100);
            return 1;
        }
        /* Require a few consecutive observations: a thread can pass through
         * a futex call on its way (e.g. inside a libc lock). */
        stable = r ? stable + 1 : 0;
        if (stable >= 3) {
            return 1;
        }
        if (test_now_ns() > deadline) {
            return 0;
        }
        test_sleep_ms(1);
    }
}

static inline int
test_wait_in_futex(pid_t tid, double secs)
{
    return test_wait_in_syscall(tid, SYS_futex, secs);
}

/* ---- the runner ---------------------------------------------------------- */

static int
test_selected(const char *name, int argc, char **argv)
{
    const char *skip = getenv("NP_TEST_SKIP");
    if (skip != NULL) {
        const char *p = skip;
        while (*p) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            char pat[256];
            if (len < sizeof pat) {
                memcpy(pat, p, len);
                pat[len] = '\0';
                if (fnmatch(pat, name, 0) == 0) {
                    return 0;
                }
            }
            if (!end) {
                break;
            }
            p = end + 1;
        }
    }
    if (argc <= 1) {
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strstr(name, argv[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

static void
test_alarm_handler(int sig)
{
    (void)sig;
    static const char msg[] = "  TIMEOUT: test did not finish in time\n";
    if (write(1, msg, sizeof msg - 1) < 0) {
    }
    _exit(3);
}

static double
test_timeout_secs(void)
{
    const char *s = getenv("NP_TEST_TIMEOUT");
    double v = s ? atof(s) : 0;
    return v > 0 ? v : 60.0;
}

/* Run one test in this process; 0 if it passed. */
static int
test_run_inline(const test_case *t)
{
    atomic_store(&test_cur_failures, 0);
    test_cur_name = t->name;
    t->fn();
    fflush(stdout);
    fflush(stderr);
    return atomic_load(&test_cur_failures) != 0;
}

/* The process group of the running test (its child and any process it
 * forked), killed as a whole on timeout, at the end of the test and if the
 * runner itself is interrupted: no straggler survives to hold stdout. */
static volatile sig_atomic_t test_child_pgid;

static void
test_runner_interrupted(int sig)
{
    if (test_child_pgid > 0) {
        kill(-(pid_t)test_child_pgid, SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Run one test in a forked child; 0 if it passed. */
static int
test_run_forked(const test_case *t)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int failed = test_run_inline(t);
        /* exit, not _exit: LeakSanitizer checks for leaks at exit (the
         * main process registers no atexit handlers of its own). */
        exit(failed ? 1 : 0);
    }
    setpgid(pid, pid);   /* also in the child: whichever runs first */
    test_child_pgid = pid;
    double timeout = test_timeout_secs();
    int64_t deadline = test_now_ns() + (int64_t)(timeout * 1e9);
    double nap = 0.05;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            perror("waitpid");
            return 1;
        }
        if (test_now_ns() > deadline) {
            printf("  TIMEOUT: [%s] did not finish in %.0f s; killing it\n",
                   t->name, timeout);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            test_child_pgid = 0;
            return 1;
        }
        test_sleep_ms(nap);
        if (nap < 5) {
            nap *= 2;
        }
    }
    kill(-pid, SIGKILL);   /* leftovers forked by the test, if any */
    test_child_pgid = 0;
    if (WIFSIGNALED(status)) {
        printf("  [%s] killed by signal %d (%s)\n", t->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
        return 1;
    }
    return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

static int
test_main(int argc, char **argv, const test_case *tests, size_t n)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *nf = getenv("NP_TEST_NOFORK");
    int nofork = nf != NULL && *nf != '\0' && *nf != '0';
    if (nofork) {
        signal(SIGALRM, test_alarm_handler);
    }
    else {
        signal(SIGINT, test_runner_interrupted);
        signal(SIGTERM, test_runner_interrupted);
        signal(SIGHUP, test_runner_interrupted);
    }
    int passed = 0, failed = 0, skipped = 0;
    int64_t t_all = test_now_ns();
    printf("== %s (scale 1/%ld%s)\n", argv[0], test_scale(),
           NP_TEST_TSAN ? ", tsan" : "");
    for (size_t i = 0; i < n; i++) {
        if (!test_selected(tests[i].name, argc, argv)) {
            skipped++;
            continue;
        }
        printf("[ RUN      ] %s\n", tests[i].name);
        int64_t t0 = test_now_ns();
        int bad;
        if (nofork) {
            alarm((unsigned)test_timeout_secs());
            bad = test_run_inline(&tests[i]);
            alarm(0);
        }
        else {
            bad = test_run_forked(&tests[i]);
        }
        double ms = (double)(test_now_ns() - t0) / 1e6;
        printf("[ %s ] %s (%.1f ms)\n", bad ? "  FAILED" : "      OK",
               tests[i].name, ms);
        if (bad) {
            failed++;
        }
        else {
            passed++;
        }
    }
    printf("-- %.2f s total, %d skipped\n",
           (double)(test_now_ns() - t_all) / 1e9, skipped);
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

/* ---- signals and child processes ----------------------------------------- */

/* SIGUSR1 deliveries, any thread, since test_install_sigusr1(). */
static _Atomic int test_sigusr1_count __attribute__((unused));

static inline void
test_on_sigusr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&test_sigusr1_count, 1);
}

/* Count SIGUSR1 with a handler installed without SA_RESTART, so that a
 * blocking call it interrupts returns EINTR; resets the count. */
static inline void
test_install_sigusr1(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = test_on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        abort();
    }
    atomic_store(&test_sigusr1_count, 0);
}

/* Wait up to secs for child pid to exit; one that does not is killed.
 * Returns its wait status, or -1 if waitpid failed. */
static inline int
test_reap(pid_t pid, double secs)
{
    int status = 0;
    int64_t deadline = test_now_ns() + (int64_t)(secs * 1e9);
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return status;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
        if (test_now_ns() > deadline) {
            printf("  child %d did not exit in %.0f s: killing it\n", (int)pid,
                   secs);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        test_sleep_ms(1);
    }
}

#endif /* NP_TEST_H */
