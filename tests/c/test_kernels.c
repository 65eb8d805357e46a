/* test_kernels.c -- unit tests for csrc/kernels: the outcome helpers, sleep,
 * sum_squares, crc32/adler32, compress/decompress, read_file/read_into and
 * sha256.
 *
 * Expected values come from known test vectors (FIPS 180-4 / NIST for
 * SHA-256, the usual CRC-32 check value) or were computed once with CPython
 * 3.11's zlib and hashlib from the same generated data (gen_random and
 * gen_text below have Python twins, quoted next to them).
 *
 * Tests over 4 GiB of input run only with NP_TEST_BIG=1 (about 75 s in all;
 * the compress/decompress one needs 4 GiB of memory for its output; the
 * inputs are mostly untouched zero pages, which cost no memory). */
#include "test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <zlib.h>

#include "np_kernels.h"
#include "np_sync.h"

#define MS ((int64_t)1000000)

__extension__ typedef unsigned __int128 u128;

/* ---- helpers --------------------------------------------------------------- */

static void
call_init(np_kcall *c)
{
    memset(c, 0, sizeof *c);
}

static np_kbuf
kbuf(const void *p, size_t n)
{
    np_kbuf b;
    b.ptr = (void *)p;
    b.len = n;
    return b;
}

static void
call_clear(np_kcall *c)
{
    free(c->out);
    call_init(c);
}

#define ASSERT_STREQ(a, b)                                                   \
    do {                                                                     \
        const char *sa_ = (a), *sb_ = (b);                                   \
        if (strcmp(sa_, sb_) != 0) {                                         \
            FAIL("expected %s == %s:\n      \"%s\"\n   vs \"%s\"", #a, #b,   \
                 sa_, sb_);                                                  \
        }                                                                    \
    } while (0)

#define EXPECT_STREQ(a, b)                                                   \
    do {                                                                     \
        const char *sa_ = (a), *sb_ = (b);                                   \
        if (strcmp(sa_, sb_) != 0) {                                         \
            test_fail_msg(__FILE__, __LINE__, "expected %s == %s:\n"         \
                          "      \"%s\"\n   vs \"%s\"", #a, #b, sa_, sb_);   \
        }                                                                    \
    } while (0)

/* Status OK, else fail with the message. */
#define ASSERT_OK(c)                                                         \
    do {                                                                     \
        if ((c)->status != NP_K_OK) {                                        \
            FAIL("status %d code %d msg \"%s\"", (c)->status, (c)->code,     \
                 (c)->msg);                                                  \
        }                                                                    \
    } while (0)

static void
to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* sha256 of a buffer through the kernel, as hex. */
static void
sha256_hex(const void *p, size_t n, char out[65])
{
    np_kcall c;
    call_init(&c);
    c.arg[0].buf = kbuf(p, n);
    np_k_sha256(&c);
    to_hex(c.digest, 32, out);
}

/* Python twin:
 *     def gen_random(n, seed):
 *         x = seed & 0xffffffff; out = bytearray(n)
 *         for i in range(n):
 *             x = (x * 1664525 + 1013904223) & 0xffffffff
 *             out[i] = x >> 24
 *         return bytes(out) */
static unsigned char *
gen_random(size_t n, uint32_t seed)
{
    unsigned char *p = malloc(n > 0 ? n : 1);
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

/* Python twin:
 *     WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed "
 *             b"do eiusmod tempor "
 *     def gen_text(n):
 *         return bytes(WORDS[(i * 7 + (i >> 10)) % len(WORDS)]
 *                      for i in range(n)) */
static const char WORDS[] = "lorem ipsum dolor sit amet consectetur adipiscing "
                            "elit sed do eiusmod tempor ";

static unsigned char *
gen_text(size_t n)
{
    unsigned char *p = malloc(n > 0 ? n : 1);
    size_t L = sizeof WORDS - 1;
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)WORDS[(i * 7 + (i >> 10)) % L];
    }
    return p;
}

static int
big_enabled(void)
{
    const char *v = getenv("NP_TEST_BIG");
    return v != NULL && *v != '\0' && *v != '0';
}

/* ---- np_kfail ------------------------------------------------------------- */

TEST(kfail_sets_outcome)
{
    np_kcall c;
    call_init(&c);
    np_kfail(&c, NP_K_VALUE, 7, "bad %s %d", "thing", 42);
    ASSERT_EQ(c.status, NP_K_VALUE);
    ASSERT_EQ(c.code, 7);
    ASSERT_STREQ(c.msg, "bad thing 42");
    np_kfail(&c, NP_K_EINTR, EINTR, NULL);
    ASSERT_EQ(c.status, NP_K_EINTR);
    ASSERT_STREQ(c.msg, "");
    /* truncated, still NUL-terminated */
    char longs[400];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    np_kfail(&c, NP_K_ZLIB, -3, "%s", longs);
    ASSERT_EQ(strlen(c.msg), sizeof c.msg - 1);
    np_kfail_errno(&c, ENOENT);
    ASSERT_EQ(c.status, NP_K_ERRNO);
    ASSERT_EQ(c.code, ENOENT);
    ASSERT_STREQ(c.msg, "");
}

/* ---- sum_squares ---------------------------------------------------------- */

static u128
ret_u128(const np_kcall *c)
{
    return ((u128)c->ret.u128.hi << 64) | c->ret.u128.lo;
}

/* (n-1)n(2n-1)/6 exactly, or 0 (returns 0) if it does not fit 128 bits. */
static int
sumsq_formula(uint64_t n, u128 *out)
{
    if (n == 0) {
        *out = 0;
        return 1;
    }
    u128 a = (u128)n - 1, b = n, c = 2 * (u128)n - 1;
    if (a % 2 == 0) {
        a /= 2;
    }
    else {
        b /= 2;
    }
    if (a % 3 == 0) {
        a /= 3;
    }
    else if (b % 3 == 0) {
        b /= 3;
    }
    else {
        c /= 3;
    }
    u128 r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r)) {
        return 0;
    }
    *out = r;
    return 1;
}

static void
check_sumsq(int64_t n)
{
    np_kcall c;
    call_init(&c);
    c.arg[0].i64 = n;
    c.ret.u128.lo = c.ret.u128.hi = 0xdeadbeef;
    np_k_sum_squares(&c);
    ASSERT_OK(&c);
    u128 want = 0;
    if (n > 0) {
        ASSERT_TRUE(sumsq_formula((uint64_t)n, &want));
    }
    u128 got = ret_u128(&c);
    if (got != want) {
        FAIL("sum_squares(%" PRId64 "): hi %" PRIu64 " lo %" PRIu64
             ", want hi %" PRIu64 " lo %" PRIu64, n, (uint64_t)(got >> 64),
             (uint64_t)got, (uint64_t)(want >> 64), (uint64_t)want);
    }
}

TEST(sum_squares_small)
{
    static const struct { int64_t n; uint64_t want; } cases[] = {
        {0, 0}, {1, 0}, {2, 1}, {3, 5}, {10, 285}, {100, 328350},
        {-1, 0}, {-5, 0}, {INT64_MIN, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        np_kcall c;
        call_init(&c);
        c.arg[0].i64 = cases[i].n;
        c.ret.u128.lo = c.ret.u128.hi = 77;
        np_k_sum_squares(&c);
        ASSERT_OK(&c);
        ASSERT_UEQ(c.ret.u128.lo, cases[i].want);
        ASSERT_UEQ(c.ret.u128.hi, 0);
        check_sumsq(cases[i].n);
        RETURN_IF_FAILED();
    }
    check_sumsq(1000003);
}

/* 3037000500**2 > 2**63: the squares themselves need 128-bit products. */
TEST(sum_squares_3037000500)
{
    int64_t n = INT64_C(3037000500);
    np_kcall c;
    call_init(&c);
    c.arg[0].i64 = n;
    int64_t t0 = np_monotonic_ns();
    np_k_sum_squares(&c);
    int64_t dt = np_monotonic_ns() - t0;
    ASSERT_OK(&c);
    TEST_LOG("%" PRId64 " iterations: %.3f s, %.3f ns/iteration", n,
             (double)dt / 1e9, (double)dt / (double)n);
    u128 want;
    ASSERT_TRUE(sumsq_formula((uint64_t)n, &want));
    ASSERT_TRUE(ret_u128(&c) == want);
    /* the exact value, from Python: 0x1e2b7dddc20b33d3fc1bae56 */
    want = ((u128)0x1e2b7dddU << 64) | UINT64_C(0xc20b33d3fc1bae56);
    ASSERT_TRUE(ret_u128(&c) == want);
}

TEST(sum_squares_max_is_exact)
{
    /* f(max) fits 128 bits and f(max + 1) does not. */
    u128 v;
    ASSERT_TRUE(sumsq_formula((uint64_t)NP_SUM_SQUARES_MAX, &v));
    ASSERT_FALSE(sumsq_formula((uint64_t)NP_SUM_SQUARES_MAX + 1, &v));
    ASSERT_EQ(NP_SUM_SQUARES_MAX, INT64_C(10069012961345));
    /* the value at max, from Python: 0xffffffffffadf12a50f66bc02f7f8160 */
    ASSERT_TRUE(sumsq_formula((uint64_t)NP_SUM_SQUARES_MAX, &v));
    ASSERT_TRUE(v == (((u128)UINT64_C(0xffffffffffadf12a) << 64) |
                      UINT64_C(0x50f66bc02f7f8160)));
    /* (Running the kernel at n = max would take about 3 hours.) */
}

TEST(sum_squares_overflow)
{
    const int64_t bad[] = {NP_SUM_SQUARES_MAX + 1, INT64_C(1) << 50,
                           INT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        np_kcall c;
        call_init(&c);
        c.arg[0].i64 = bad[i];
        int64_t t0 = np_monotonic_ns();
        np_k_sum_squares(&c);
        ASSERT_LT(np_monotonic_ns() - t0, 100 * MS);   /* no loop at all */
        ASSERT_EQ(c.status, NP_K_OVERFLOW);
        ASSERT_STREQ(c.msg, "sum_squares(n): n must be at most "
                            "10069012961345 (the sum must fit in 128 bits)");
        ASSERT_PTR_EQ(c.out, NULL);
    }
}

/* The loop really runs: time grows with n (a folded closed formula would
 * take nanoseconds).  Logs ns/iteration with NP_TEST_VERBOSE=1. */
TEST(sum_squares_is_a_real_loop)
{
    int64_t n = 200000000 / test_scale();
    np_kcall c;
    call_init(&c);
    c.arg[0].i64 = n;
    int64_t t0 = np_monotonic_ns();
    np_k_sum_squares(&c);
    int64_t dt = np_monotonic_ns() - t0;
    ASSERT_OK(&c);
    TEST_LOG("n=%" PRId64 ": %.3f ms, %.3f ns/iteration", n, dt / 1e6,
             (double)dt / (double)n);
    /* at least 0.05 ns per iteration: 10 ms for 2e8 */
    ASSERT_GT(dt, n / 20);
    check_sumsq(n);
}

/* ---- sleep ---------------------------------------------------------------- */

/* A thread that sends SIGUSR1 to `target` every 10 ms (after a first delay)
 * until told to stop. */
typedef struct {
    pthread_t target;
    pthread_t th;
    int64_t first_delay_ms;
    _Atomic int stop;
    _Atomic int sent;
} signaler;

static void *
signaler_main(void *arg)
{
    signaler *s = arg;
    test_sleep_ms((double)s->first_delay_ms);
    while (!atomic_load(&s->stop)) {
        pthread_kill(s->target, SIGUSR1);
        atomic_fetch_add(&s->sent, 1);
        test_sleep_ms(10);
    }
    return NULL;
}

static signaler sigr;

static int
signaler_start(int64_t first_delay_ms)
{
    memset(&sigr, 0, sizeof sigr);
    sigr.target = pthread_self();
    sigr.first_delay_ms = first_delay_ms;
    return pthread_create(&sigr.th, NULL, signaler_main, &sigr) == 0;
}

static void
signaler_stop(void)
{
    atomic_store(&sigr.stop, 1);
    pthread_join(sigr.th, NULL);
}

static void
do_sleep(np_kcall *c, double secs, int64_t deadline, int interruptible)
{
    call_init(c);
    c->arg[0].f64 = secs;
    c->arg[1].i64 = deadline;
    c->interruptible = interruptible;
    np_k_sleep(c);
}

TEST(sleep_durations)
{
    np_kcall c;
    const double secs[] = {0.0, 0.001, 0.05, 0.2};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        int64_t t0 = np_monotonic_ns();
        do_sleep(&c, secs[i], 0, 0);
        int64_t dt = np_monotonic_ns() - t0;
        ASSERT_OK(&c);
        int64_t want = (int64_t)(secs[i] * 1e9);
        ASSERT_GE(dt, want);
        ASSERT_LT(dt, want + 2000 * MS);
        /* the deadline it computed, in np_monotonic_ns's clock */
        ASSERT_GE(c.arg[1].i64, t0 + want);
        ASSERT_LE(c.arg[1].i64, t0 + dt);
    }
}

TEST(sleep_negative_nan_and_past_deadline_return_at_once)
{
    np_kcall c;
    int64_t t0 = np_monotonic_ns();
    do_sleep(&c, -1.0, 0, 1);
    ASSERT_OK(&c);
    do_sleep(&c, __builtin_nan(""), 0, 1);
    ASSERT_OK(&c);
    /* a deadline already set (a restart) wins over the seconds */
    do_sleep(&c, 100.0, np_monotonic_ns() - 1000 * MS, 1);
    ASSERT_OK(&c);
    do_sleep(&c, 100.0, 1, 1);
    ASSERT_OK(&c);
    ASSERT_LT(np_monotonic_ns() - t0, 1000 * MS);
}

TEST(sleep_interrupted_returns_eintr_then_resumes)
{
    test_install_sigusr1();
    np_kcall c;
    int64_t t0 = np_monotonic_ns();
    ASSERT_TRUE(signaler_start(30));
    do_sleep(&c, 0.5, 0, 1);
    int64_t t1 = np_monotonic_ns();
    signaler_stop();
    ASSERT_EQ(c.status, NP_K_EINTR);
    ASSERT_EQ(c.code, EINTR);
    ASSERT_LT(t1 - t0, 450 * MS);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&test_sigusr1_count) > 0, 5));
    int64_t deadline = c.arg[1].i64;
    ASSERT_GE(deadline, t0 + 500 * MS);
    ASSERT_LE(deadline, t1 + 500 * MS);
    /* Called again with the same record: continues to the same deadline. */
    c.interruptible = 1;
    np_k_sleep(&c);
    int64_t t2 = np_monotonic_ns();
    ASSERT_OK(&c);
    ASSERT_EQ(c.arg[1].i64, deadline);
    ASSERT_GE(t2, deadline);
    ASSERT_LT(t2 - t0, 3000 * MS);
    TEST_LOG("interrupted after %.1f ms, done after %.1f ms",
             (t1 - t0) / 1e6, (t2 - t0) / 1e6);
}

TEST(sleep_uninterruptible_ignores_signals)
{
    test_install_sigusr1();
    np_kcall c;
    int64_t t0 = np_monotonic_ns();
    ASSERT_TRUE(signaler_start(20));
    do_sleep(&c, 0.2, 0, 0);
    int64_t dt = np_monotonic_ns() - t0;
    signaler_stop();
    ASSERT_OK(&c);
    ASSERT_GE(dt, 200 * MS);
    ASSERT_LT(dt, 3000 * MS);
    ASSERT_GT(atomic_load(&sigr.sent), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&test_sigusr1_count) > 0, 5));
}

/* Huge durations clamp instead of overflowing; only a signal ends them. */
TEST(sleep_huge_seconds_clamp)
{
    test_install_sigusr1();
    const double secs[] = {1e300, 1e10, __builtin_inf()};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        np_kcall c;
        ASSERT_TRUE(signaler_start(20));
        do_sleep(&c, secs[i], 0, 1);
        signaler_stop();
        ASSERT_EQ(c.status, NP_K_EINTR);
        ASSERT_EQ(c.arg[1].i64, INT64_MAX);
    }
    /* 1e9 s = 1e18 ns still fits next to the current time */
    np_kcall c;
    int64_t t0 = np_monotonic_ns();
    ASSERT_TRUE(signaler_start(20));
    do_sleep(&c, 1e9, 0, 1);
    signaler_stop();
    ASSERT_EQ(c.status, NP_K_EINTR);
    ASSERT_GE(c.arg[1].i64, t0 + INT64_C(1000000000000000000));
    ASSERT_LT(c.arg[1].i64, t0 + INT64_C(1000000000000000000) + 5000 * MS);
}

/* ---- crc32 / adler32 ------------------------------------------------------ */

static uint64_t
run_check(np_kernel_fn fn, const void *p, size_t n, uint32_t start)
{
    np_kcall c;
    call_init(&c);
    c.arg[0].buf = kbuf(p, n);
    c.arg[1].u32 = start;
    c.ret.u64 = 0xdeadbeefdeadbeef;
    fn(&c);
    if (c.status != NP_K_OK) {
        return UINT64_MAX;
    }
    return c.ret.u64;
}

TEST(crc32_adler32_vectors)
{
    ASSERT_UEQ(run_check(np_k_crc32, "", 0, 0), 0);
    ASSERT_UEQ(run_check(np_k_adler32, "", 0, 1), 1);
    ASSERT_UEQ(run_check(np_k_crc32, "abc", 3, 0), 0x352441c2);
    ASSERT_UEQ(run_check(np_k_adler32, "abc", 3, 1), 0x024d0127);
    ASSERT_UEQ(run_check(np_k_crc32, "123456789", 9, 0), 0xcbf43926);
    ASSERT_UEQ(run_check(np_k_adler32, "Wikipedia", 9, 1), 0x11e60398);
    /* an empty buffer returns the start value, NULL pointer or not
     * (zlib.crc32(b"", 5) == 5; zlib's crc32(5, NULL, 0) would be 0) */
    ASSERT_UEQ(run_check(np_k_crc32, NULL, 0, 5), 5);
    ASSERT_UEQ(run_check(np_k_adler32, NULL, 0, 5), 5);
    ASSERT_UEQ(run_check(np_k_crc32, "x", 0, 0xffffffffu), 0xffffffffu);
    /* adler32 reduces its start value modulo 65521 even with no data */
    ASSERT_UEQ(run_check(np_k_adler32, "", 0, 0xffffffffu), 0xe000e);
    ASSERT_UEQ(run_check(np_k_adler32, NULL, 0, 0xffffffffu), 0xe000e);
    ASSERT_UEQ(run_check(np_k_adler32, "a", 1, 0xffffffffu), 0x7d006f);
    /* chaining through the start value */
    uint64_t a = run_check(np_k_crc32, "abc", 3, 0);
    ASSERT_UEQ(run_check(np_k_crc32, "def", 3, (uint32_t)a),
               run_check(np_k_crc32, "abcdef", 6, 0));
    a = run_check(np_k_adler32, "abc", 3, 1);
    ASSERT_UEQ(run_check(np_k_adler32, "def", 3, (uint32_t)a),
               run_check(np_k_adler32, "abcdef", 6, 1));
}

TEST(crc32_adler32_multi_block_vs_chunked_zlib)
{
    size_t n = (size_t)1 << 20;
    unsigned char *p = gen_random(n, 99);
    /* from Python: zlib.crc32 / zlib.adler32 of gen_random(1 << 20, 99) */
    EXPECT_UEQ(run_check(np_k_crc32, p, n, 0), 0x714e3ca8);
    EXPECT_UEQ(run_check(np_k_adler32, p, n, 1), 0x25256b9f);
    /* against zlib itself, fed in odd-sized chunks */
    uLong crc = crc32(0, Z_NULL, 0), ad = adler32(0, Z_NULL, 0);
    for (size_t off = 0; off < n;) {
        size_t k = 1 + (off * 31 + 7) % 9973;
        if (k > n - off) {
            k = n - off;
        }
        crc = crc32(crc, p + off, (uInt)k);
        ad = adler32(ad, p + off, (uInt)k);
        off += k;
    }
    EXPECT_UEQ(run_check(np_k_crc32, p, n, 0), crc);
    EXPECT_UEQ(run_check(np_k_adler32, p, n, 1), ad);
    free(p);
}

/* The big buffer for the >4 GiB tests: zero pages, a random last page.
 * Reading untouched anonymous pages costs no memory. */
#define BIG_LEN (((size_t)1 << 32) + 8192 + 123)

static unsigned char *
big_map(void)
{
    void *m = mmap(NULL, BIG_LEN, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        return NULL;
    }
    unsigned char *tail = gen_random(4096, 5);
    memcpy((unsigned char *)m + BIG_LEN - 4096, tail, 4096);
    free(tail);
    return m;
}

TEST(crc32_adler32_over_4gib)
{
    if (!big_enabled()) {
        TEST_LOG("needs NP_TEST_BIG=1 (reads 4 GiB four times, ~10 s)");
        return;
    }
    unsigned char *m = big_map();
    if (m == NULL) {
        TEST_LOG("cannot map %zu bytes; skipped", BIG_LEN);
        return;
    }
    /* from Python (zlib over the same contents) */
    EXPECT_UEQ(run_check(np_k_crc32, m, BIG_LEN, 0), 0x691592a4);
    EXPECT_UEQ(run_check(np_k_adler32, m, BIG_LEN, 1), 0x2cf0f671);
    /* and zlib's own size_t entry points */
    EXPECT_UEQ(run_check(np_k_crc32, m, BIG_LEN, 0), crc32_z(0, m, BIG_LEN));
    EXPECT_UEQ(run_check(np_k_adler32, m, BIG_LEN, 1),
               adler32_z(1, m, BIG_LEN));
    munmap(m, BIG_LEN);
}

/* ---- sha256 ---------------------------------------------------------------
 *
 * np_k_sha256 has two implementations (see np_sha256.c): OpenSSL's SHA256(),
 * dlopen()ed from libcrypto on first use, and the portable C fallback, forced
 * by NATIVEPOOL_PORTABLE_SHA256=1 (read once, at the first call).  Each test
 * runs in its own forked child, so the choice is made afresh per test: every
 * check below runs twice, once per path, and sha256_use_path() verifies the
 * path actually taken. */

/* Not in np_kernels.h: "portable" or the libcrypto name np_k_sha256 loaded. */
const char *np_sha256_backend(void);

static const char *const libcrypto_names[] = {
    "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so",
};

/* 1 if this process can load a libcrypto that has SHA256 (as the kernel
 * tries it), 0 if not.  Balanced dlopen/dlclose: call it after the kernel
 * made its choice, so this never unloads anything the kernel uses. */
static int
libcrypto_loadable(void)
{
    for (size_t i = 0; i < sizeof libcrypto_names / sizeof libcrypto_names[0];
         i++) {
        void *h = dlopen(libcrypto_names[i], RTLD_NOW | RTLD_LOCAL);
        if (h != NULL) {
            int ok = dlsym(h, "SHA256") != NULL;
            dlclose(h);
            if (ok) {
                return 1;
            }
        }
    }
    return 0;
}

/* 1 if some libcrypto is mapped in this process (loads nothing). */
static int
libcrypto_loaded(void)
{
    for (size_t i = 0; i < sizeof libcrypto_names / sizeof libcrypto_names[0];
         i++) {
        void *h = dlopen(libcrypto_names[i], RTLD_NOW | RTLD_NOLOAD);
        if (h != NULL) {
            dlclose(h);
            return 1;
        }
    }
    return 0;
}

/* Before the first sha256 of this (forked) test process: choose the path
 * through the environment, then check it was taken.  The OpenSSL path must
 * be taken whenever a libcrypto can be loaded here; without one, the test
 * runs on the portable path and says so. */
static void
sha256_use_path(int portable)
{
    if (portable) {
        ASSERT_EQ(setenv("NATIVEPOOL_PORTABLE_SHA256", "1", 1), 0);
    }
    else {
        ASSERT_EQ(unsetenv("NATIVEPOOL_PORTABLE_SHA256"), 0);
    }
    const char *b = np_sha256_backend();
    TEST_LOG("sha256 backend: %s", b);
    if (portable) {
        ASSERT_STREQ(b, "portable");
        /* forced portable: libcrypto was not even loaded */
        ASSERT_FALSE(libcrypto_loaded());
    }
    else if (strcmp(b, "portable") == 0) {
        ASSERT_FALSE(libcrypto_loadable());
        TEST_LOG("no libcrypto here: the OpenSSL path is not tested");
    }
    else {
        ASSERT_TRUE(strncmp(b, "libcrypto.so", 12) == 0);
        ASSERT_TRUE(libcrypto_loaded());
    }
}

static void
sha256_check_vectors(void)
{
    static const struct { const char *in; const char *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc",
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
         "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha256_hex(v[i].in, strlen(v[i].in), hex);
        ASSERT_STREQ(hex, v[i].hex);
    }
    /* NULL pointer, length 0 */
    sha256_hex(NULL, 0, hex);
    ASSERT_STREQ(hex, v[0].hex);
    np_kcall c;
    call_init(&c);
    c.arg[0].buf = kbuf("abc", 3);
    np_k_sha256(&c);
    ASSERT_OK(&c);
    ASSERT_EQ(c.digest_len, 32);
}

static void
sha256_check_million_a(void)
{
    size_t n = 1000000;
    char *p = malloc(n);
    memset(p, 'a', n);
    char hex[65];
    sha256_hex(p, n, hex);
    free(p);
    ASSERT_STREQ(hex,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Lengths around the padding boundaries (55/56/64 mod 64) and multi-block
 * buffers, against hashlib.sha256(gen_random(n, 42)). */
static void
sha256_check_padding_boundaries_and_multi_block(void)
{
    static const struct { size_t n; const char *hex; } v[] = {
        {1, "c3641f8544d7c02f3580b07c0f9887f0c6a27ff5ab1d4a3e29caf197cfc299ae"},
        {55, "99024cab3e483ab2cacf126f30b0b39090bac8c7a21c3b5570f6fc65732da499"},
        {56, "caa628e24a1be3ef635aa8ff474d04e4ddfb5de952dd347f1633ba667dbced44"},
        {57, "88b208ae1e7e8b5285b481b83a3bcb01f6f150c7a5042aa3fdf361f94384c236"},
        {63, "76b76045370027f5472cbe0c5fda593e274084225bcc79d6ccd721c0f61691c0"},
        {64, "31379d397e30448c9d2d1e68d8057ba5959697ab044588be34fed19227eda79a"},
        {65, "b2f19a9dcd8216ea74fc6649a4e326f7e789ca8ed73fe2943d4f958bd1056ecf"},
        {119, "d6b69b0e8b288366366be56c2b46c05f8da570c1ff7fc8095b484e117a8dadbc"},
        {120, "d8d9b9d803c47934f454e7e1edb9e94fede5f3c0e49a6c68e4e4fb66edad9565"},
        {127, "a5f0c70a97cbba7f694290681444629961a37ee9cba77d15c07ce6212923204e"},
        {128, "45f763797176a25ee99cdd656d5ddabdf92e5207e84c2a1ffc804ab0bec2036c"},
        {129, "5bdb930f998fde6f045b0efa3056f40ceb3443ef797151e707d02d3cfa55a253"},
        {1000, "d5712948acaa3b5238fdcb8329347ceaa3b95dd57df504b978891445d5101156"},
        {65543, "7d46251e953aa3de70737d01726a64585a0e883fbf26a794bead141bd5f546bc"},
    };
    unsigned char *p = gen_random(65543, 42);
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        /* each length is a prefix of the same generated stream */
        sha256_hex(p, v[i].n, hex);
        if (strcmp(hex, v[i].hex) != 0) {
            free(p);
            FAIL("sha256 of %zu bytes: %s, want %s", v[i].n, hex, v[i].hex);
        }
    }
    free(p);
}

static void
sha256_check_over_4gib(void)
{
    if (!big_enabled()) {
        TEST_LOG("needs NP_TEST_BIG=1 (hashes 4 GiB)");
        return;
    }
    unsigned char *m = big_map();
    if (m == NULL) {
        TEST_LOG("cannot map %zu bytes; skipped", BIG_LEN);
        return;
    }
    char hex[65];
    sha256_hex(m, BIG_LEN, hex);
    munmap(m, BIG_LEN);
    /* from Python: hashlib.sha256 over the same contents */
    ASSERT_STREQ(hex,
        "9092575e0cfd585e2ade74698fcb495992fe58ad532aaa804b500507e268bbb9");
}

/* Each check, on the OpenSSL path (libcrypto, when it can be loaded) and on
 * the portable path. */
#define SHA256_BOTH_PATHS(name)                                              \
    TEST(sha256_##name) {                                                    \
        sha256_use_path(0);                                                  \
        RETURN_IF_FAILED();                                                  \
        sha256_check_##name();                                               \
    }                                                                        \
    TEST(sha256_##name##_portable) {                                         \
        sha256_use_path(1);                                                  \
        RETURN_IF_FAILED();                                                  \
        sha256_check_##name();                                               \
    }

SHA256_BOTH_PATHS(vectors)
SHA256_BOTH_PATHS(million_a)
SHA256_BOTH_PATHS(padding_boundaries_and_multi_block)
SHA256_BOTH_PATHS(over_4gib)

/* The environment switch is read once: changing it after the first call
 * changes nothing.  "0" and "" mean "not forced". */
static void
sha256_check_env_read_once(const char *first, const char *later)
{
    ASSERT_EQ(setenv("NATIVEPOOL_PORTABLE_SHA256", first, 1), 0);
    char hex[65];
    sha256_hex("abc", 3, hex);
    const char *b = np_sha256_backend();
    int forced = strcmp(first, "1") == 0;
    if (forced) {
        ASSERT_STREQ(b, "portable");
    }
    else {
        ASSERT_EQ(strcmp(b, "portable") != 0, libcrypto_loadable());
    }
    ASSERT_EQ(setenv("NATIVEPOOL_PORTABLE_SHA256", later, 1), 0);
    ASSERT_STREQ(np_sha256_backend(), b);
    sha256_hex("abc", 3, hex);
    ASSERT_STREQ(hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(sha256_env_zero_is_not_forced) { sha256_check_env_read_once("0", "1"); }
TEST(sha256_env_empty_is_not_forced) { sha256_check_env_read_once("", "1"); }
TEST(sha256_env_read_once_forced) { sha256_check_env_read_once("1", "0"); }

/* Many threads make the very first call at once: one resolves, all agree
 * (TSan checks the pthread_once publication), every digest is right. */
#define SHA256_RACE_THREADS 8

typedef struct sha256_race {
    pthread_barrier_t start;
    const unsigned char *data;
    size_t len;
    const char *want;
    const char *backend[SHA256_RACE_THREADS];
    int index;
} sha256_race;

typedef struct sha256_race_arg {
    sha256_race *r;
    int i;
} sha256_race_arg;

static void *
sha256_race_thread(void *p)
{
    sha256_race_arg *a = p;
    sha256_race *r = a->r;
    pthread_barrier_wait(&r->start);
    char hex[65];
    for (int k = 0; k < 20; k++) {
        sha256_hex(r->data, r->len, hex);
        EXPECT_STREQ(hex, r->want);
    }
    r->backend[a->i] = np_sha256_backend();
    return NULL;
}

static void
sha256_check_first_use_race(void)
{
    sha256_race r;
    memset(&r, 0, sizeof r);
    unsigned char *p = gen_random(65543, 42);
    r.data = p;
    r.len = 65543;
    r.want = "7d46251e953aa3de70737d01726a64585a0e883fbf26a794bead141bd5f546bc";
    ASSERT_EQ(pthread_barrier_init(&r.start, NULL, SHA256_RACE_THREADS), 0);
    pthread_t t[SHA256_RACE_THREADS];
    sha256_race_arg args[SHA256_RACE_THREADS];
    for (int i = 0; i < SHA256_RACE_THREADS; i++) {
        args[i].r = &r;
        args[i].i = i;
        ASSERT_EQ(pthread_create(&t[i], NULL, sha256_race_thread, &args[i]),
                  0);
    }
    for (int i = 0; i < SHA256_RACE_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    pthread_barrier_destroy(&r.start);
    free(p);
    for (int i = 1; i < SHA256_RACE_THREADS; i++) {
        ASSERT_STREQ(r.backend[i], r.backend[0]);
    }
    TEST_LOG("sha256 backend: %s", r.backend[0]);
}

TEST(sha256_first_use_race)
{
    ASSERT_EQ(unsetenv("NATIVEPOOL_PORTABLE_SHA256"), 0);
    sha256_check_first_use_race();
    RETURN_IF_FAILED();
    ASSERT_EQ(strcmp(np_sha256_backend(), "portable") != 0,
              libcrypto_loadable());
}

TEST(sha256_first_use_race_portable)
{
    ASSERT_EQ(setenv("NATIVEPOOL_PORTABLE_SHA256", "1", 1), 0);
    sha256_check_first_use_race();
    RETURN_IF_FAILED();
    ASSERT_STREQ(np_sha256_backend(), "portable");
}

/* ---- compress / decompress ------------------------------------------------ */

static void
do_compress(np_kcall *c, const void *p, size_t n, int level, int wbits)
{
    call_init(c);
    c->arg[0].buf = kbuf(p, n);
    c->arg[1].i32 = level;
    c->arg[2].i32 = wbits;
    np_k_compress(c);
}

static void
do_decompress(np_kcall *c, const void *p, size_t n, int wbits,
              int64_t bufsize)
{
    call_init(c);
    c->arg[0].buf = kbuf(p, n);
    c->arg[1].i32 = wbits;
    c->arg[2].i64 = bufsize;
    np_k_decompress(c);
}

TEST(compress_known_outputs)
{
    static const struct {
        const char *in; int level, wbits; size_t n; const char *hex;
    } v[] = {
        /* zlib.compress(b"abc").hex() etc. */
        {"abc", -1, 15, 11, "789c4b4c4a0600024d0127"},
        {"abc", 9, 31, 23, "1f8b08000000000002034b4c4a0600c241243503000000"},
        {"abc", 1, -15, 5, "4b4c4a0600"},
        {"", -1, 15, 8, "789c030000000001"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        np_kcall c;
        do_compress(&c, v[i].in, strlen(v[i].in), v[i].level, v[i].wbits);
        ASSERT_OK(&c);
        ASSERT_PTR_NE(c.out, NULL);
        ASSERT_EQ(c.out_len, v[i].n);
        char hex[128];
        to_hex(c.out, c.out_len, hex);
        call_clear(&c);
        ASSERT_STREQ(hex, v[i].hex);
    }
    /* an empty buffer with a NULL pointer is b"" */
    np_kcall c;
    do_compress(&c, NULL, 0, -1, 15);
    ASSERT_OK(&c);
    char hex[128];
    to_hex(c.out, c.out_len, hex);
    call_clear(&c);
    ASSERT_STREQ(hex, "789c030000000001");
}

/* Byte-identical to CPython's zlib.compress(data, level, wbits) for inputs
 * that span several of CPython's output blocks (level 0 depends on them),
 * and back again through decompress. */
TEST(compress_matches_cpython_and_round_trips)
{
    static const struct {
        char kind; size_t n; int level, wbits; size_t out_len;
        const char *sha;
    } v[] = {
        /* kind, n, level, wbits, len(zlib.compress(data, level, wbits)),
         * hashlib.sha256(that).hexdigest(); T = gen_text(n),
         * R = gen_random(n, 7) */
        {'T', 100000, -1, 15, 595, "0cf09d6d7a4e6aa192cd4a100432b9b4bdae9a01767a93653eef7a240cca4948"},
        {'T', 100000, 0, 15, 100021, "12c9b8414c4fb324a16640d96a799dde01452b40c69bda1dba0d56d70a4ec4b3"},
        {'R', 300000, 0, 15, 300036, "f7299fd269fc4e2f4660155a602ef9a603c20e37a70edd686de538ded0d190bd"},
        {'R', 300000, 0, -15, 300030, "f6fccbedcd899a7d8088cbed9d04fddd0c7ae94e7260d6b8e8be523458730f19"},
        {'R', 300000, 0, 31, 300048, "899defe9049c644c868552311302e956aa3fce5a5a08ccf0e0b3212b7d614716"},
        {'R', 200000, 6, 31, 200083, "52916c281a43e87b59d44fa1e0c105c3d496b194d83d1f4341079f8adcc531d2"},
        {'T', 1000000, 9, 15, 3870, "53cd01d692134e7376a6ef09c756b4e5c2e1d787fe27e6f1637c4a7bd8da2bcd"},
        {'T', 1000000, 1, -9, 25562, "1c436e75db2bf2205cb3022ad81e766c716b65fb7ee9257483e7391a7fb91469"},
        {'T', 0, 6, 31, 20, "59869db34853933b239f1e2219cf7d431da006aa919635478511fabbfc8849d2"},
        {'T', 0, 0, -15, 5, "f067985d352d2da6dfaef4844a66d06c5371ecbd9530a4d195ac599fef8b3427"},
        {'T', 5000000, 0, 15, 5000391, "a30ed0d1a3f5030445f4666f5da1ecf511a5f219f152c04de168af137218623e"},
        {'R', 70000, 0, 9, 70021, "8e633b0fd8cf7dbb943dda0b5c44afcb0672e817ea4ac4654d5c7efd52cf9c3b"},
        {'T', 3000000, 1, 25, 76681, "805ac21aab89c7a85638cd5dd2faa75cc1b5dc359ee06d91dc3e3ac264feba59"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        unsigned char *data = v[i].kind == 'T' ? gen_text(v[i].n)
                                               : gen_random(v[i].n, 7);
        np_kcall c, d;
        do_compress(&c, data, v[i].n, v[i].level, v[i].wbits);
        if (c.status != NP_K_OK) {
            free(data);
            FAIL("case %zu: %s", i, c.msg);
        }
        char hex[65];
        sha256_hex(c.out, c.out_len, hex);
        EXPECT_EQ(c.out_len, v[i].out_len);
        if (strcmp(hex, v[i].sha) != 0) {
            test_fail_msg(__FILE__, __LINE__, "case %zu (%c %zu level %d "
                          "wbits %d): sha256 %s, want %s", i, v[i].kind,
                          v[i].n, v[i].level, v[i].wbits, hex, v[i].sha);
        }
        /* the container's magic */
        if (v[i].wbits > 15 && c.out_len >= 2) {
            EXPECT_EQ(c.out[0], 0x1f);
            EXPECT_EQ(c.out[1], 0x8b);
        }
        else if (v[i].wbits > 0 && c.out_len >= 2) {
            EXPECT_EQ(c.out[0] & 0x0f, 8);
            EXPECT_EQ((c.out[0] * 256 + c.out[1]) % 31, 0);
        }
        /* round trip, with a tiny and with the default first buffer */
        const int64_t bufsizes[] = {1, 16384, (int64_t)v[i].n + 1};
        for (size_t b = 0; b < 3; b++) {
            do_decompress(&d, c.out, c.out_len, v[i].wbits, bufsizes[b]);
            if (d.status != NP_K_OK) {
                test_fail_msg(__FILE__, __LINE__, "case %zu: %s", i, d.msg);
            }
            else {
                EXPECT_TRUE(d.out != NULL);
                EXPECT_EQ(d.out_len, v[i].n);
                EXPECT_TRUE(d.out_len == v[i].n &&
                            memcmp(d.out, data, v[i].n) == 0);
            }
            call_clear(&d);
        }
        call_clear(&c);
        free(data);
        RETURN_IF_FAILED();
    }
}

TEST(compress_round_trip_levels_and_wbits)
{
    size_t n = 150000;
    unsigned char *text = gen_text(n), *rnd = gen_random(n, 3);
    const int levels[] = {-1, 0, 1, 2, 5, 6, 9};
    const int wbits[] = {9, 12, 15, -9, -15, 25, 31};
    for (int k = 0; k < 2; k++) {
        const unsigned char *data = k ? rnd : text;
        for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++) {
            for (size_t wi = 0; wi < sizeof wbits / sizeof wbits[0]; wi++) {
                np_kcall c, d;
                do_compress(&c, data, n, levels[li], wbits[wi]);
                EXPECT_EQ(c.status, NP_K_OK);
                if (c.status == NP_K_OK) {
                    /* zlib streams through the header-sniffing wbits
                     * (32 + n: zlib or gzip) */
                    int dw = wbits[wi] > 0 && wbits[wi] <= 15
                                 ? wbits[wi] + 32 : wbits[wi];
                    do_decompress(&d, c.out, c.out_len, dw, 16384);
                    EXPECT_EQ(d.status, NP_K_OK);
                    EXPECT_TRUE(d.status == NP_K_OK && d.out_len == n &&
                                memcmp(d.out, data, n) == 0);
                    call_clear(&d);
                    /* level 0 stores: barely bigger; text shrinks a lot */
                    if (levels[li] == 0) {
                        EXPECT_GT(c.out_len, n);
                    }
                    else if (!k) {
                        EXPECT_LT(c.out_len, n / 4);
                    }
                }
                call_clear(&c);
            }
        }
    }
    free(text);
    free(rnd);
}

TEST(compress_errors_match_cpython)
{
    /* zlib.compress(b"x", 10) etc.: "Bad compression level" for any
     * deflateInit2 Z_STREAM_ERROR (bad level or bad wbits) */
    const int bad[][2] = {{10, 15}, {-2, 15}, {6, 100}, {6, -8}, {6, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        np_kcall c;
        do_compress(&c, "x", 1, bad[i][0], bad[i][1]);
        ASSERT_EQ(c.status, NP_K_ZLIB);
        ASSERT_EQ(c.code, Z_STREAM_ERROR);
        ASSERT_STREQ(c.msg, "Bad compression level");
        ASSERT_PTR_EQ(c.out, NULL);
    }
    /* wbits 8 is accepted (zlib makes it 9) */
    np_kcall c;
    do_compress(&c, "x", 1, 6, 8);
    ASSERT_OK(&c);
    call_clear(&c);
}

TEST(decompress_errors_match_cpython)
{
    size_t n = 1100;
    unsigned char *src = malloc(n);
    for (size_t i = 0; i < n; i++) {
        src[i] = (unsigned char)"hello world"[i % 11];
    }
    np_kcall z, gz, d;
    do_compress(&z, src, n, -1, 15);
    ASSERT_OK(&z);
    do_compress(&gz, "x", 1, -1, 31);
    ASSERT_OK(&gz);
    unsigned char *bad_check = malloc(z.out_len);
    memcpy(bad_check, z.out, z.out_len);
    bad_check[z.out_len - 1] ^= 1;
    static const unsigned char bad_block[] = {
        0x78, 0x9c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const struct {
        const void *p; size_t n; int wbits; int code; const char *msg;
    } v[] = {
        /* the messages of zlib.decompress(...) in CPython 3.11 */
        {"garbage data", 12, 15, Z_DATA_ERROR,
         "Error -3 while decompressing data: incorrect header check"},
        {z.out, z.out_len - 5, 15, Z_BUF_ERROR,
         "Error -5 while decompressing data: incomplete or truncated stream"},
        {z.out, 10, 15, Z_BUF_ERROR,
         "Error -5 while decompressing data: incomplete or truncated stream"},
        {"", 0, 15, Z_BUF_ERROR,
         "Error -5 while decompressing data: incomplete or truncated stream"},
        {NULL, 0, 15, Z_BUF_ERROR,
         "Error -5 while decompressing data: incomplete or truncated stream"},
        {z.out, z.out_len, 100, Z_STREAM_ERROR,
         "Error -2 while preparing to decompress data: inconsistent stream "
         "state"},
        {z.out, z.out_len, -15, Z_DATA_ERROR,
         "Error -3 while decompressing data: invalid stored block lengths"},
        {gz.out, gz.out_len, 15, Z_DATA_ERROR,
         "Error -3 while decompressing data: incorrect header check"},
        {z.out, z.out_len, 31, Z_DATA_ERROR,
         "Error -3 while decompressing data: incorrect header check"},
        {bad_check, z.out_len, 15, Z_DATA_ERROR,
         "Error -3 while decompressing data: incorrect data check"},
        {z.out, z.out_len, 8, Z_DATA_ERROR,
         "Error -3 while decompressing data: invalid window size"},
        {bad_block, sizeof bad_block, 15, Z_DATA_ERROR,
         "Error -3 while decompressing data: invalid block type"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        do_decompress(&d, v[i].p, v[i].n, v[i].wbits, 16384);
        EXPECT_EQ(d.status, NP_K_ZLIB);
        EXPECT_EQ(d.code, v[i].code);
        EXPECT_PTR_EQ(d.out, NULL);
        if (strcmp(d.msg, v[i].msg) != 0) {
            test_fail_msg(__FILE__, __LINE__, "case %zu: \"%s\", want \"%s\"",
                          i, d.msg, v[i].msg);
        }
        call_clear(&d);
    }
    /* both containers with wbits 47 (auto-detect) */
    do_decompress(&d, z.out, z.out_len, 47, 16384);
    EXPECT_EQ(d.status, NP_K_OK);
    EXPECT_TRUE(d.out_len == n && memcmp(d.out, src, n) == 0);
    call_clear(&d);
    do_decompress(&d, gz.out, gz.out_len, 47, 1);
    EXPECT_EQ(d.status, NP_K_OK);
    EXPECT_TRUE(d.out_len == 1 && d.out[0] == 'x');
    call_clear(&d);
    /* bufsize: negative is ValueError, 0 means 1 */
    do_decompress(&d, z.out, z.out_len, 15, -1);
    EXPECT_EQ(d.status, NP_K_VALUE);
    EXPECT_STREQ(d.msg, "bufsize must be non-negative");
    call_clear(&d);
    do_decompress(&d, z.out, z.out_len, 15, 0);
    EXPECT_EQ(d.status, NP_K_OK);
    EXPECT_EQ(d.out_len, n);
    call_clear(&d);
    free(bad_check);
    free(src);
    call_clear(&z);
    call_clear(&gz);
}

/* zlib.decompress ignores data after the end of the stream. */
TEST(decompress_ignores_trailing_data)
{
    np_kcall z, d;
    do_compress(&z, "hello hello hello", 17, 6, 15);
    ASSERT_OK(&z);
    size_t n = z.out_len + 13;
    unsigned char *p = malloc(n);
    memcpy(p, z.out, z.out_len);
    memcpy(p + z.out_len, "trailing junk", 13);
    do_decompress(&d, p, n, 15, 16384);
    free(p);
    call_clear(&z);
    ASSERT_OK(&d);
    ASSERT_EQ(d.out_len, 17);
    ASSERT_EQ(memcmp(d.out, "hello hello hello", 17), 0);
    call_clear(&d);
    /* and an empty stream decompresses to b"" (out still non-NULL) */
    do_compress(&z, "", 0, 6, 15);
    ASSERT_OK(&z);
    do_decompress(&d, z.out, z.out_len, 15, 16384);
    call_clear(&z);
    ASSERT_OK(&d);
    ASSERT_EQ(d.out_len, 0);
    ASSERT_PTR_NE(d.out, NULL);
    call_clear(&d);
}

/* A big initial buffer is given back (shrunk) and a huge one fails cleanly. */
TEST(decompress_bufsize_extremes)
{
    np_kcall z, d;
    do_compress(&z, "abcabcabc", 9, 6, 15);
    ASSERT_OK(&z);
    do_decompress(&d, z.out, z.out_len, 15, (int64_t)1 << 30);
    EXPECT_EQ(d.status, NP_K_OK);
    EXPECT_EQ(d.out_len, 9);
    call_clear(&d);
    do_decompress(&d, z.out, z.out_len, 15, INT64_MAX);
    EXPECT_EQ(d.status, NP_K_NOMEM);
    EXPECT_PTR_EQ(d.out, NULL);
    call_clear(&d);
    call_clear(&z);
}

TEST(compress_decompress_over_4gib)
{
    if (!big_enabled()) {
        TEST_LOG("needs NP_TEST_BIG=1 (4 GiB in, 4 GiB out)");
        return;
    }
    unsigned char *m = big_map();
    if (m == NULL) {
        TEST_LOG("cannot map %zu bytes; skipped", BIG_LEN);
        return;
    }
    np_kcall z, d;
    do_compress(&z, m, BIG_LEN, 1, 15);
    ASSERT_OK(&z);
    TEST_LOG("compressed %zu -> %zu bytes", BIG_LEN, z.out_len);
    do_decompress(&d, z.out, z.out_len, 15, 16384);
    call_clear(&z);
    ASSERT_OK(&d);
    ASSERT_EQ(d.out_len, BIG_LEN);
    ASSERT_EQ(memcmp(d.out, m, BIG_LEN), 0);
    call_clear(&d);
    munmap(m, BIG_LEN);
}

/* ---- read_file / read_into ------------------------------------------------ */

static char tmpdir[64];

/* A fresh directory under /tmp; files go in it. */
static int
make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/np_kernels_XXXXXX");
    return mkdtemp(tmpdir) != NULL;
}

static void
tmp_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmpdir, name);
}

static int
write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return 0;
    }
    const unsigned char *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w <= 0) {
            close(fd);
            return 0;
        }
        q += w;
        n -= (size_t)w;
    }
    return close(fd) == 0;
}

static void
do_read_file(np_kcall *c, const char *path)
{
    call_init(c);
    c->arg[0].buf = kbuf(path, path != NULL ? strlen(path) + 1 : 0);
    np_k_read_file(c);
}

TEST(read_file_regular_and_empty)
{
    ASSERT_TRUE(make_tmpdir());
    char path[128], empty[128];
    tmp_path(path, sizeof path, "data");
    tmp_path(empty, sizeof empty, "empty");
    const size_t sizes[] = {1, 4095, 4096, 100000, 3000001};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = gen_random(sizes[i], (uint32_t)i);
        ASSERT_TRUE(write_file(path, p, sizes[i]));
        np_kcall c;
        do_read_file(&c, path);
        EXPECT_EQ(c.status, NP_K_OK);
        EXPECT_EQ(c.out_len, sizes[i]);
        EXPECT_TRUE(c.out != NULL && c.out_len == sizes[i] &&
                    memcmp(c.out, p, sizes[i]) == 0);
        call_clear(&c);
        free(p);
        RETURN_IF_FAILED();
    }
    ASSERT_TRUE(write_file(empty, "", 0));
    np_kcall c;
    do_read_file(&c, empty);
    ASSERT_OK(&c);
    ASSERT_EQ(c.out_len, 0);
    ASSERT_PTR_NE(c.out, NULL);
    call_clear(&c);
    unlink(path);
    unlink(empty);
    rmdir(tmpdir);
}

/* /proc files report size 0: read until EOF anyway. */
TEST(read_file_proc_self_status)
{
    struct stat st;
    ASSERT_EQ(stat("/proc/self/status", &st), 0);
    ASSERT_EQ(st.st_size, 0);
    np_kcall c;
    do_read_file(&c, "/proc/self/status");
    ASSERT_OK(&c);
    ASSERT_GT(c.out_len, 100);
    char *s = malloc(c.out_len + 1);
    memcpy(s, c.out, c.out_len);
    s[c.out_len] = '\0';
    call_clear(&c);
    int ok = strncmp(s, "Name:", 5) == 0 && strstr(s, "\nPid:") != NULL &&
             s[strlen(s) - 1] == '\n';
    free(s);
    ASSERT_TRUE(ok);
}

/* A FIFO: no size at all, more data than the first buffer holds. */
typedef struct {
    char path[128];
    unsigned char *data;
    size_t n;
    _Atomic int ok;
} fifo_writer;

static void *
fifo_writer_main(void *arg)
{
    fifo_writer *w = arg;
    atomic_store(&w->ok, write_file(w->path, w->data, w->n));
    return NULL;
}

TEST(read_file_fifo_grows_buffer)
{
    ASSERT_TRUE(make_tmpdir());
    static fifo_writer w;
    tmp_path(w.path, sizeof w.path, "fifo");
    ASSERT_EQ(mkfifo(w.path, 0600), 0);
    w.n = 300000;
    w.data = gen_random(w.n, 11);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, fifo_writer_main, &w), 0);
    np_kcall c;
    do_read_file(&c, w.path);
    pthread_join(th, NULL);
    EXPECT_TRUE(atomic_load(&w.ok));
    EXPECT_EQ(c.status, NP_K_OK);
    EXPECT_TRUE(c.out_len == w.n && memcmp(c.out, w.data, w.n) == 0);
    call_clear(&c);
    free(w.data);
    unlink(w.path);
    rmdir(tmpdir);
}

TEST(read_file_errors)
{
    np_kcall c;
    do_read_file(&c, "/nonexistent/np_kernels/no such file");
    ASSERT_EQ(c.status, NP_K_ERRNO);
    ASSERT_EQ(c.code, ENOENT);
    ASSERT_PTR_EQ(c.out, NULL);
    /* a directory: IsADirectoryError, as open(dir, 'rb') */
    do_read_file(&c, "/tmp");
    ASSERT_EQ(c.status, NP_K_ERRNO);
    ASSERT_EQ(c.code, EISDIR);
    ASSERT_PTR_EQ(c.out, NULL);
    /* the empty path, with and without a pointer */
    do_read_file(&c, "");
    ASSERT_EQ(c.status, NP_K_ERRNO);
    ASSERT_EQ(c.code, ENOENT);
    do_read_file(&c, NULL);
    ASSERT_EQ(c.status, NP_K_ERRNO);
    ASSERT_EQ(c.code, ENOENT);
    /* a path through a regular file */
    do_read_file(&c, "/proc/self/status/x");
    ASSERT_EQ(c.status, NP_K_ERRNO);
    ASSERT_EQ(c.code, ENOTDIR);
}

static void
do_read_into(np_kcall *c, const char *path, void *dst, size_t n, int64_t off)
{
    call_init(c);
    c->arg[0].buf = kbuf(path, strlen(path) + 1);
    c->arg[1].buf = kbuf(dst, n);
    c->arg[2].i64 = off;
    c->ret.i64 = -12345;
    np_k_read_into(c);
}

TEST(read_into_offsets)
{
    ASSERT_TRUE(make_tmpdir());
    char path[128];
    tmp_path(path, sizeof path, "data");
    size_t n = 1000;
    unsigned char *p = gen_random(n, 21);
    ASSERT_TRUE(write_file(path, p, n));
    unsigned char buf[2000];
    np_kcall c;
    const struct { size_t len; int64_t off; int64_t want; } v[] = {
        {100, 0, 100}, {100, 950, 50}, {100, 999, 1}, {100, 1000, 0},
        {100, 5000, 0}, {2000, 0, 1000}, {1000, 0, 1000}, {0, 10, 0},
        {100, INT64_MAX - 10, 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        memset(buf, 0xee, sizeof buf);
        do_read_into(&c, path, buf, v[i].len, v[i].off);
        EXPECT_EQ(c.status, NP_K_OK);
        EXPECT_EQ(c.ret.i64, v[i].want);
        if (v[i].want > 0) {
            EXPECT_EQ(memcmp(buf, p + v[i].off, (size_t)v[i].want), 0);
        }
        /* nothing past what was read is touched */
        EXPECT_EQ(buf[v[i].want], 0xee);
    }
    /* an empty destination with a NULL pointer */
    do_read_into(&c, path, NULL, 0, 0);
    EXPECT_EQ(c.status, NP_K_OK);
    EXPECT_EQ(c.ret.i64, 0);
    /* errors */
    do_read_into(&c, path, buf, 10, -1);
    EXPECT_EQ(c.status, NP_K_VALUE);
    do_read_into(&c, "/nonexistent/np_kernels", buf, 10, 0);
    EXPECT_EQ(c.status, NP_K_ERRNO);
    EXPECT_EQ(c.code, ENOENT);
    do_read_into(&c, tmpdir, buf, 10, 0);
    EXPECT_EQ(c.status, NP_K_ERRNO);
    EXPECT_EQ(c.code, EISDIR);
    /* a missing file with an empty destination still reports ENOENT */
    do_read_into(&c, "/nonexistent/np_kernels", NULL, 0, 0);
    EXPECT_EQ(c.code, ENOENT);
    free(p);
    unlink(path);
    rmdir(tmpdir);
}

/* /proc files read through pread too (size 0 in stat). */
TEST(read_into_proc)
{
    char buf[64];
    np_kcall c;
    do_read_into(&c, "/proc/self/status", buf, sizeof buf, 0);
    ASSERT_OK(&c);
    ASSERT_EQ(c.ret.i64, (int64_t)sizeof buf);
    ASSERT_EQ(memcmp(buf, "Name:", 5), 0);
}

static const test_case TESTS[] = {
    TEST_ENTRY(kfail_sets_outcome),
    TEST_ENTRY(sum_squares_small),
    TEST_ENTRY(sum_squares_3037000500),
    TEST_ENTRY(sum_squares_max_is_exact),
    TEST_ENTRY(sum_squares_overflow),
    TEST_ENTRY(sum_squares_is_a_real_loop),
    TEST_ENTRY(sleep_durations),
    TEST_ENTRY(sleep_negative_nan_and_past_deadline_return_at_once),
    TEST_ENTRY(sleep_interrupted_returns_eintr_then_resumes),
    TEST_ENTRY(sleep_uninterruptible_ignores_signals),
    TEST_ENTRY(sleep_huge_seconds_clamp),
    TEST_ENTRY(crc32_adler32_vectors),
    TEST_ENTRY(crc32_adler32_multi_block_vs_chunked_zlib),
    TEST_ENTRY(crc32_adler32_over_4gib),
    TEST_ENTRY(sha256_vectors),
    TEST_ENTRY(sha256_vectors_portable),
    TEST_ENTRY(sha256_million_a),
    TEST_ENTRY(sha256_million_a_portable),
    TEST_ENTRY(sha256_padding_boundaries_and_multi_block),
    TEST_ENTRY(sha256_padding_boundaries_and_multi_block_portable),
    TEST_ENTRY(sha256_over_4gib),
    TEST_ENTRY(sha256_over_4gib_portable),
    TEST_ENTRY(sha256_env_zero_is_not_forced),
    TEST_ENTRY(sha256_env_empty_is_not_forced),
    TEST_ENTRY(sha256_env_read_once_forced),
    TEST_ENTRY(sha256_first_use_race),
    TEST_ENTRY(sha256_first_use_race_portable),
    TEST_ENTRY(compress_known_outputs),
    TEST_ENTRY(compress_matches_cpython_and_round_trips),
    TEST_ENTRY(compress_round_trip_levels_and_wbits),
    TEST_ENTRY(compress_errors_match_cpython),
    TEST_ENTRY(decompress_errors_match_cpython),
    TEST_ENTRY(decompress_ignores_trailing_data),
    TEST_ENTRY(decompress_bufsize_extremes),
    TEST_ENTRY(compress_decompress_over_4gib),
    TEST_ENTRY(read_file_regular_and_empty),
    TEST_ENTRY(read_file_proc_self_status),
    TEST_ENTRY(read_file_fifo_grows_buffer),
    TEST_ENTRY(read_file_errors),
    TEST_ENTRY(read_into_offsets),
    TEST_ENTRY(read_into_proc),
};

int
main(int argc, char **argv)
{
    return TEST_MAIN(argc, argv, TESTS);
}
