/*
 * np_kernels.c -- the outcome helpers and the CPU/time kernels: sleep and
 * sum_squares.  The zlib kernels live in np_kzlib.c, the file kernels in
 * np_kfile.c, SHA-256 in np_sha256.c.  Plain C11 (+ GNU asm/__int128), no
 * Python.h.  See np_kernels.h for the rules every kernel follows.
 */
#define _GNU_SOURCE
#include "np_kernels.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "np_sync.h"   /* np_monotonic_ns */

/* ---- outcome helpers ------------------------------------------------------ */

void
np_kfail(np_kcall *c, int status, int code, const char *fmt, ...)
{
    c->status = status;
    c->code = code;
    c->msg[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg, sizeof c->msg, fmt, ap);
        va_end(ap);
    }
}

void
np_kfail_errno(np_kcall *c, int err)
{
    c->status = NP_K_ERRNO;
    c->code = err;
    c->msg[0] = '\0';
}

/* ---- sleep ---------------------------------------------------------------- */

/* now + seconds in CLOCK_MONOTONIC ns (np_monotonic_ns's clock), clamped to
 * INT64_MAX; negative or NaN seconds give now. */
static int64_t
sleep_deadline(double seconds)
{
    int64_t now = np_monotonic_ns();
    if (!(seconds > 0)) {
        return now;
    }
    /* Compare in double before converting: 1e300 * 1e9 must not reach an
     * int64 conversion (undefined behaviour). */
    double ns = seconds * 1e9;
    if (ns >= (double)(INT64_MAX - now)) {
        return INT64_MAX;
    }
    return now + (int64_t)ns;
}

void
np_k_sleep(np_kcall *c)
{
    c->status = NP_K_OK;
    c->code = 0;
    c->msg[0] = '\0';
    int64_t deadline = c->arg[1].i64;
    if (deadline == 0) {
        deadline = sleep_deadline(c->arg[0].f64);
        c->arg[1].i64 = deadline;   /* a restart after NP_K_EINTR keeps it */
    }
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline / 1000000000);
    ts.tv_nsec = (long)(deadline % 1000000000);
    for (;;) {
        /* clock_nanosleep returns the error number; it does not set errno. */
        int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (r == 0) {
            return;
        }
        if (r == EINTR) {
            if (c->interruptible) {
                np_kfail(c, NP_K_EINTR, EINTR, NULL);
                return;
            }
            continue;   /* absolute deadline: retrying does not stretch it */
        }
        np_kfail_errno(c, r);
        return;
    }
}

/* ---- sum_squares ---------------------------------------------------------- */

__extension__ typedef unsigned __int128 np_u128;

/* The largest n with sum(i*i for i in range(n)) = (n-1)n(2n-1)/6 < 2**128,
 * found exactly with Python integers by bisection:
 *
 *     M = 2**128 - 1
 *     f = lambda n: (n - 1) * n * (2*n - 1) // 6
 *     lo, hi = 0, 2**63
 *     while lo < hi:
 *         m = (lo + hi + 1) // 2
 *         lo, hi = (m, hi) if f(m) <= M else (lo, m - 1)
 *     # lo == 10069012961345; f(lo) = 0xffffffffffadf12a50f66bc02f7f8160,
 *     # f(lo + 1) > M
 *
 * (tests/c/test_kernels.c re-checks both sides with overflow-checked
 * 128-bit arithmetic.) */
const int64_t NP_SUM_SQUARES_MAX = INT64_C(10069012961345);

void
np_k_sum_squares(np_kcall *c)
{
    c->status = NP_K_OK;
    c->code = 0;
    c->msg[0] = '\0';
    c->ret.u128.lo = 0;
    c->ret.u128.hi = 0;
    int64_t n = c->arg[0].i64;
    if (n <= 0) {
        return;
    }
    if (n > NP_SUM_SQUARES_MAX) {
        np_kfail(c, NP_K_OVERFLOW, 0,
                 "sum_squares(n): n must be at most %lld (the sum must fit "
                 "in 128 bits)", (long long)NP_SUM_SQUARES_MAX);
        return;
    }
    np_u128 sum = 0;
    uint64_t end = (uint64_t)n;
    for (uint64_t i = 0; i < end; i++) {
        uint64_t x = i;
        /* An opaque copy of i: the compiler can no longer see that x runs
         * through 0..n-1, so it cannot replace the loop by the closed
         * formula or vectorize it; one 64x64->128 multiply and a 128-bit
         * add per iteration remain. */
        __asm__ __volatile__("" : "+r"(x));
        sum += (np_u128)x * x;
    }
    c->ret.u128.lo = (uint64_t)sum;
    c->ret.u128.hi = (uint64_t)(sum >> 64);
}
