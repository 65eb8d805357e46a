"""Stress: a million tasks from several submitter threads, with random failures and
cancellations; every future must resolve exactly once with the right outcome.

Runs in the normal suite (deselect with -m "not stress"). Scale it with
NATIVEPOOL_STRESS_SCALE (e.g. 0.05 for a quick run); 1.0 means 1,000,000 tasks.
"""
import concurrent.futures as cf
import os
import random
import threading
import time

import pytest

from conftest import np, wait_until

pytestmark = pytest.mark.stress

SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))

# outcome codes recorded by the done callback
NOT_YET = 0
OK_RESULT = 1
OK_EXCEPTION = 2
OK_CANCELLED = 3
WRONG = 9

SUBMITTERS = 4


class TaskError(Exception):
    pass


def _task(i, fail):
    if fail:
        raise TaskError(i)
    return i * 2 + 1


def test_million_tasks_resolved_exactly_once():
    n_total = max(1000, int(1_000_000 * SCALE))
    per = n_total // SUBMITTERS
    n_total = per * SUBMITTERS

    rnd = random.Random(12345)
    # ~5% of tasks fail, ~5% are cancelled right after submit (cancel may lose
    # the race against a worker; cancel()'s return value says which won).
    fail = bytearray(1 if rnd.random() < 0.05 else 0 for _ in range(n_total))
    try_cancel = bytearray(1 if rnd.random() < 0.05 else 0 for _ in range(n_total))

    calls = bytearray(n_total)      # done-callback invocations per future (saturating)
    outcome = bytearray(n_total)
    cancel_won = bytearray(n_total)
    sample = {}                     # a few futures kept to inspect afterwards
    errors = []

    # The callback must know which task a future belongs to without keeping the
    # future alive; bind the index in a closure per submit (cheap default arg).
    def make_cb(i):
        def cb(fut, i=i):
            c = calls[i]
            if c < 255:
                calls[i] = c + 1
            try:
                if not fut.done():
                    outcome[i] = WRONG
                elif fut.cancelled():
                    outcome[i] = OK_CANCELLED
                else:
                    exc = fut.exception(0)
                    if exc is None:
                        outcome[i] = OK_RESULT if (not fail[i] and fut.result(0) == i * 2 + 1) else WRONG
                    else:
                        outcome[i] = OK_EXCEPTION if (fail[i] and type(exc) is TaskError
                                                      and exc.args == (i,)) else WRONG
            except BaseException as e:  # pragma: no cover - reported below
                outcome[i] = WRONG
                errors.append(repr(e))
        return cb

    pool = np.ThreadPool(max_workers=2)
    start = threading.Barrier(SUBMITTERS + 1)

    def submitter(k):
        base = k * per
        submit = pool.submit
        try:
            start.wait()
            for i in range(base, base + per):
                f = submit(_task, i, fail[i])
                f.add_done_callback(make_cb(i))
                if try_cancel[i] and f.cancel():
                    cancel_won[i] = 1
                if i % 9973 == 0:
                    sample[i] = f
        except BaseException as e:
            errors.append("submitter %d: %r" % (k, e))

    ts = [threading.Thread(target=submitter, args=(k,)) for k in range(SUBMITTERS)]
    for t in ts:
        t.start()
    start.wait()
    for t in ts:
        t.join(600)
        assert not t.is_alive(), "a submitter hung"
    pool.shutdown(wait=True)
    # callbacks of cancelled futures run in the cancelling thread; all others run
    # before the worker picks the next task, so everything must be done by now.
    assert wait_until(lambda: calls.count(0) == 0, timeout=30), \
        "%d futures never called their done callback" % calls.count(0)
    assert not errors, errors[:5]

    multi = [i for i in range(n_total) if calls[i] != 1]
    assert not multi, "futures resolved more than once: %r" % multi[:10]
    wrong = [i for i in range(n_total) if outcome[i] in (WRONG, NOT_YET)]
    assert not wrong, "wrong outcomes for tasks %r" % wrong[:10]

    # cancelled exactly when cancel() said so
    for i in range(n_total):
        if cancel_won[i]:
            assert outcome[i] == OK_CANCELLED, i
        else:
            assert outcome[i] != OK_CANCELLED, i
            assert outcome[i] == (OK_EXCEPTION if fail[i] else OK_RESULT), i
    n_cancelled = cancel_won.count(1)
    assert n_cancelled <= try_cancel.count(1)

    for i, f in sample.items():
        assert f.done()
        if cancel_won[i]:
            assert f.cancelled()
            with pytest.raises(cf.CancelledError):
                f.result(0)
        elif fail[i]:
            with pytest.raises(TaskError):
                f.result(0)
        else:
            assert f.result(0) == i * 2 + 1


@pytest.mark.nativepool_only  # relies on cancelled futures being notified
def test_concurrent_submit_and_shutdown_cancel_futures():
    """Submitters race a shutdown(cancel_futures=True): every accepted future is
    resolved exactly once (finished or cancelled), refused submits raise
    RuntimeError, and nothing hangs."""
    rounds = max(2, int(20 * SCALE))
    per_round = max(2000, int(10000 * SCALE))
    for r in range(rounds):
        pool = np.ThreadPool(max_workers=2)
        lock = threading.Lock()
        accepted = []
        counts = {}
        errors = []
        go = threading.Event()

        def submitter(k):
            go.wait(30)
            for j in range(per_round // SUBMITTERS):
                key = (k, j)
                try:
                    f = pool.submit(_task, j, j % 13 == 0)
                except RuntimeError:
                    return
                except BaseException as e:
                    errors.append(repr(e))
                    return
                counts[key] = 0

                def cb(fut, key=key):
                    with lock:
                        counts[key] += 1
                f.add_done_callback(cb)
                accepted.append((key, f))

        ts = [threading.Thread(target=submitter, args=(k,)) for k in range(SUBMITTERS)]
        for t in ts:
            t.start()
        go.set()
        # shut down at varying points while the submitters are still going
        wait_until(lambda: len(accepted) >= 50 + 100 * (r % 5), timeout=30)
        pool.shutdown(wait=True, cancel_futures=True)
        for t in ts:
            t.join(60)
            assert not t.is_alive()
        pool.shutdown(wait=True)
        assert not errors, errors
        # Every accepted future is done: finished or cancelled (and cancelled ones
        # are notified, so the stdlib waiters see them as done).
        assert wait_until(lambda: all(f.done() for _, f in accepted), timeout=30)
        done, not_done = cf.wait([f for _, f in accepted], timeout=30)
        assert not not_done
        assert wait_until(lambda: all(v == 1 for v in counts.values()), timeout=30)
        bad = {k: v for k, v in counts.items() if v != 1}
        assert not bad, list(bad.items())[:10]
        for (k, j), f in accepted:
            if f.cancelled():
                continue
            if j % 13 == 0:
                assert isinstance(f.exception(0), TaskError)
            else:
                assert f.result(0) == j * 2 + 1


def test_many_waiters_many_futures():
    """Many threads block on result() of futures completed from the pool."""
    n = max(200, int(20000 * SCALE))
    pool = np.ThreadPool(max_workers=2)
    try:
        gate = threading.Event()
        fs = [pool.submit(lambda i=i: (gate.wait(30), i)[1]) for i in range(n)]
        got = [0] * 8
        errs = []

        def waiter(k):
            try:
                s = 0
                for f in fs[k::8]:
                    s += f.result(60)
                got[k] = s
            except BaseException as e:
                errs.append(repr(e))

        ts = [threading.Thread(target=waiter, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        time.sleep(0.05)
        gate.set()
        for t in ts:
            t.join(120)
        assert not errs, errs[:3]
        assert sum(got) == n * (n - 1) // 2
    finally:
        pool.shutdown(wait=True)


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_native_memory_does_not_grow():
    """tracemalloc does not see memory the C runtime takes with malloc(); check
    the process RSS instead over many submit/result/callback/cancel cycles."""
    import gc
    n = max(20000, int(400_000 * SCALE))
    pool = np.ThreadPool(max_workers=2)

    def batch(count):
        pending = []
        for i in range(count):
            f = pool.submit(_task, i, i % 17 == 0)
            f.add_done_callback(_noop)
            if i % 23 == 0:
                f.cancel()
            pending.append(f)
            if len(pending) >= 1000:
                for g in pending:
                    if not g.cancelled():
                        g.exception(60)
                pending.clear()
        for g in pending:
            if not g.cancelled():
                g.exception(60)

    try:
        batch(n // 2)  # warm up: arenas, free lists, thread stacks
        gc.collect()
        before = _rss_bytes()
        batch(n)
        gc.collect()
        after = _rss_bytes()
    finally:
        pool.shutdown(wait=True)
    growth = after - before
    # 40 bytes per task leaked over n tasks would exceed this bound.
    assert growth < max(8 << 20, 40 * n), \
        "RSS grew by %.1f MB over %d tasks" % (growth / 1e6, n)


def _noop(fut):
    pass
