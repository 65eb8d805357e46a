"""nativepool.Semaphore and nativepool.BoundedSemaphore: drop-in for threading's.

Tests not marked ``nativepool_only`` also pass against the stdlib; errors are
compared with what the running Python's threading.Semaphore raises.
"""
import os
import re
import sys
import threading
import time

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT, assert_same_error, start_thread, join_all, GIL_SCRIPT

PY = sys.version_info[:2]
SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))
STATS_KEYS = {"acquisitions", "contended", "wait_total", "wait_max"}

KINDS = ["Semaphore", "BoundedSemaphore"]


def stdlib_error(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return type(exc), str(exc)
    raise AssertionError("the stdlib did not raise for this call")


def run_in_thread(fn, timeout=HANG_TIMEOUT):
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = start_thread(target)
    join_all([t], timeout)
    if "error" in box:
        raise box["error"]
    return box["result"]


def has_number(n, text):
    return re.search(r"(?<![\w.-])%d(?![\w.])" % n, text) is not None


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def make(kind, *args, **kwargs):
    return getattr(np, kind)(*args, **kwargs)


# --------------------------------------------------------------------------
# construction

def test_default_value_is_one(kind):
    s = make(kind)
    assert s._value == 1
    assert s.acquire(False) is True
    assert s.acquire(False) is False
    s.release()


def test_value_keyword_and_zero(kind):
    s = make(kind, value=3)
    assert s._value == 3
    z = make(kind, 0)
    assert z._value == 0
    assert z.acquire(False) is False


@pytest.mark.parametrize("value", [-1, -100])
def test_negative_initial_value(kind, value):
    assert_same_error(lambda: make(kind, value),
                      lambda: getattr(threading, kind)(value))


# --------------------------------------------------------------------------
# acquire / release

def test_counts_down_and_up(kind):
    s = make(kind, 3)
    assert [s.acquire() for _ in range(3)] == [True] * 3
    assert s._value == 0
    assert s.acquire(blocking=False) is False
    assert s.acquire(timeout=0) is False
    s.release()
    assert s._value == 1
    s.release()
    s.release()
    assert s._value == 3


def test_three_holders_at_once():
    # the semaphore really admits `value` concurrent holders (not a mutex)
    s = np.Semaphore(3)
    got = [run_in_thread(lambda: s.acquire(timeout=5)) for _ in range(3)]
    assert got == [True, True, True]
    assert run_in_thread(lambda: s.acquire(timeout=0.05)) is False
    s.release()  # released by a thread that never acquired: allowed
    assert run_in_thread(lambda: s.acquire(False)) is True


def test_nonblocking_with_timeout_is_valueerror(kind):
    s = make(kind, 1)
    assert_same_error(lambda: s.acquire(False, 1),
                      lambda: getattr(threading, kind)(1).acquire(False, 1))
    assert_same_error(lambda: s.acquire(blocking=False, timeout=0),
                      lambda: getattr(threading, kind)(1).acquire(blocking=False, timeout=0))
    assert s._value == 1
    assert s.acquire(False, None) is True


@pytest.mark.parametrize("timeout", [0, -1, -5, -0.5])
def test_nonpositive_timeout_fails_at_once_when_unavailable(kind, timeout):
    s = make(kind, 0)
    assert s.acquire(timeout=timeout) is False
    assert s.acquire(True, timeout) is False
    assert s._value == 0
    # same as the stdlib
    assert getattr(threading, kind)(0).acquire(timeout=timeout) is False


@pytest.mark.parametrize("timeout", [0, -1, -5])
def test_nonpositive_timeout_succeeds_when_available(kind, timeout):
    s = make(kind, 1)
    assert s.acquire(timeout=timeout) is True
    assert s._value == 0


def test_timeout_expires(kind):
    s = make(kind, 0)
    t0 = time.monotonic()
    assert s.acquire(timeout=0.1) is False
    assert time.monotonic() - t0 >= 0.08
    assert s._value == 0


def test_blocked_acquire_wakes_on_release(kind):
    s = make(kind, 1)
    s.acquire()
    results = []
    started = threading.Event()

    def waiter():
        started.set()
        results.append(s.acquire(timeout=HANG_TIMEOUT))

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    time.sleep(0.05)
    assert results == []
    s.release()
    join_all([t])
    assert results == [True]
    assert s._value == 0


def test_untimed_acquire_wakes_on_release(kind):
    s = make(kind, 1)
    s.acquire()
    results = []
    t = start_thread(lambda: results.append(s.acquire()))
    time.sleep(0.05)
    assert results == []
    s.release()
    join_all([t])
    assert results == [True]


def test_release_n_wakes_n_waiters():
    s = np.Semaphore(0)
    results = []
    lock = threading.Lock()

    def waiter():
        r = s.acquire(timeout=HANG_TIMEOUT)
        with lock:
            results.append(r)

    threads = [start_thread(waiter) for _ in range(5)]
    time.sleep(0.1)
    s.release(3)
    assert wait_until(lambda: len(results) == 3)
    time.sleep(0.1)
    assert len(results) == 3  # exactly three got through
    assert s._value == 0
    s.release(n=2)
    join_all(threads)
    assert results == [True] * 5
    assert s._value == 0


def test_release_n_adds_n(kind):
    s = make(kind, 4)
    for _ in range(4):
        s.acquire()
    s.release(3)
    assert s._value == 3
    s.release(n=1)
    assert s._value == 4


@pytest.mark.parametrize("n", [0, -1])
def test_release_n_below_one_is_valueerror(kind, n):
    s = make(kind, 2)
    s.acquire()
    assert_same_error(lambda: s.release(n),
                      lambda: getattr(threading, kind)(2).release(n))
    assert s._value == 1


def test_bounded_over_release():
    s = np.BoundedSemaphore(2)
    assert_same_error(s.release, threading.BoundedSemaphore(2).release)
    assert s._value == 2
    s.acquire()
    std = threading.BoundedSemaphore(2)
    std.acquire()
    assert_same_error(lambda: s.release(2), lambda: std.release(2))
    assert s._value == 1  # the failed release changed nothing
    s.release()
    assert s._value == 2
    with pytest.raises(ValueError):
        s.release()


def test_unbounded_can_exceed_initial_value():
    s = np.Semaphore(1)
    s.release()
    s.release(5)
    assert s._value == 7
    assert all(s.acquire(False) for _ in range(7))
    assert s.acquire(False) is False


def test_context_manager(kind):
    s = make(kind, 2)
    with s as entered:
        assert entered is True
        assert s._value == 1
        with s:
            assert s._value == 0
    assert s._value == 2
    with pytest.raises(ZeroDivisionError):
        with s:
            1 / 0
    assert s._value == 2


# the stdlib's Semaphore repr shows the value only from 3.11 on
_REPR_MARKS = [pytest.mark.nativepool_only] if PY < (3, 11) else []


@pytest.mark.parametrize("kind", [pytest.param(k, marks=_REPR_MARKS) for k in KINDS])
def test_repr_shows_value(kind):
    s = make(kind, 5)
    assert has_number(5, repr(s)), repr(s)
    s.acquire()
    s.acquire()
    r = repr(s)
    assert has_number(3, r), r
    if kind == "Semaphore":
        assert not has_number(5, r), r


# --------------------------------------------------------------------------
# GIL released while blocked; Ctrl-C interrupts the main thread

BLOCKING_CASES = {
    "semaphore": ("obj = np.Semaphore(0)", "obj.acquire()", "obj.release()"),
    "semaphore_timeout": ("obj = np.Semaphore(0)", "obj.acquire(timeout=60)", "obj.release()"),
    "semaphore_with": ("obj = np.Semaphore(0)", "obj.__enter__()", "obj.release()"),
    "bounded": ("obj = np.BoundedSemaphore(1); obj.acquire()", "obj.acquire()",
                "obj.release()"),
    "bounded_timeout": ("obj = np.BoundedSemaphore(1); obj.acquire()",
                        "obj.acquire(True, 60)", "obj.release()"),
}


@pytest.mark.parametrize("case", sorted(BLOCKING_CASES))
def test_blocking_call_releases_gil(case):
    setup, block, unblock = BLOCKING_CASES[case]
    proc = run_script(GIL_SCRIPT % dict(setup=setup, block=block, unblock=unblock),
                      timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "progress 300000 blocker_still_blocked True" in proc.stdout, (
        "the blocked call did not let another thread run", proc.stdout, proc.stderr)
    assert "result True alive False" in proc.stdout, (proc.stdout, proc.stderr)


SIGINT_CASES = {
    "semaphore": ("obj = np.Semaphore(0)", "obj.acquire()",
                  "assert obj._value == 0; obj.release(); assert obj.acquire(False)"),
    "semaphore_timeout": ("obj = np.Semaphore(0)", "obj.acquire(timeout=600)",
                          "assert obj._value == 0; obj.release(); assert obj.acquire(False)"),
    "semaphore_with": ("obj = np.Semaphore(0)", "with obj: pass",
                       "assert obj._value == 0; obj.release(); assert obj._value == 1"),
    "bounded": ("obj = np.BoundedSemaphore(2); obj.acquire(); obj.acquire()",
                "obj.acquire()",
                "assert obj._value == 0; obj.release(2); assert obj._value == 2"),
    "bounded_timeout": ("obj = np.BoundedSemaphore(1); obj.acquire()",
                        "obj.acquire(timeout=600)",
                        "assert obj._value == 0; obj.release(); assert obj._value == 1"),
}

SIGINT_SCRIPT = """
import os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
%(setup)s
kicked = []
def kick():
    kicked.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
timer = threading.Timer(0.5, kick)
try:
    timer.start()
    %(stmt)s
    out("returned without interrupt")
except KeyboardInterrupt:
    out("caught KeyboardInterrupt after %%.3f" %% (time.monotonic() - kicked[0]))
timer.join(30)
%(after)s
out("after ok")
"""


@pytest.mark.parametrize("case", sorted(SIGINT_CASES))
def test_sigint_interrupts_blocking_call(case):
    setup, stmt, after = SIGINT_CASES[case]
    proc = run_script(SIGINT_SCRIPT % dict(setup=setup, stmt=stmt, after=after),
                      timeout=40)
    assert "caught KeyboardInterrupt" in proc.stdout, (proc.stdout, proc.stderr)
    delay = float(proc.stdout.split("caught KeyboardInterrupt after ")[1].split()[0])
    assert delay < 10.0, "KeyboardInterrupt only %.1f s after SIGINT" % delay
    assert "after ok" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


# --------------------------------------------------------------------------
# stats (nativepool only)

def _check_stats_shape(st):
    assert isinstance(st, dict)
    assert STATS_KEYS <= set(st), st
    assert isinstance(st["acquisitions"], int)
    assert isinstance(st["contended"], int)
    assert isinstance(st["wait_total"], float)
    assert isinstance(st["wait_max"], float)


@pytest.mark.nativepool_only
def test_stats_uncontended(kind):
    s = make(kind, 2)
    st = s.stats()
    _check_stats_shape(st)
    assert st["acquisitions"] == 0 and st["contended"] == 0
    assert st["wait_total"] == 0.0 and st["wait_max"] == 0.0
    s.acquire()
    s.acquire()
    s.release(2)
    with s:
        pass
    assert s.acquire(False)
    s.release()
    st = s.stats()
    _check_stats_shape(st)
    assert st["acquisitions"] == 4, st
    assert st["contended"] == 0, st


@pytest.mark.nativepool_only
def test_stats_contended_and_reset(kind):
    s = make(kind, 1)
    s.acquire()
    started = threading.Event()
    results = []

    def waiter():
        started.set()
        results.append(s.acquire(timeout=HANG_TIMEOUT))
        s.release()

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    time.sleep(0.3)
    s.release()
    join_all([t])
    assert results == [True]
    st = s.stats()
    _check_stats_shape(st)
    assert st["acquisitions"] == 2, st
    assert st["contended"] == 1, st
    assert 0.1 <= st["wait_max"] <= st["wait_total"] < HANG_TIMEOUT, st
    s.reset_stats()
    st = s.stats()
    assert st["acquisitions"] == 0 and st["contended"] == 0, st
    assert st["wait_total"] == 0.0 and st["wait_max"] == 0.0, st
    with s:
        pass
    assert s.stats()["acquisitions"] == 1


# --------------------------------------------------------------------------
# stress

@pytest.mark.stress
@pytest.mark.parametrize("kind_name", KINDS)
def test_stress_never_more_than_three_holders(kind_name):
    s = make(kind_name, 3)
    n_threads = 10
    rounds = max(200, int(3000 * SCALE))
    guard = threading.Lock()
    state = {"holders": 0, "max": 0, "over": 0, "timeouts": 0}
    start = threading.Barrier(n_threads)

    def worker():
        start.wait()
        for i in range(rounds):
            if not s.acquire(timeout=HANG_TIMEOUT):
                with guard:
                    state["timeouts"] += 1
                return
            try:
                with guard:
                    state["holders"] += 1
                    if state["holders"] > 3:
                        state["over"] += 1
                    state["max"] = max(state["max"], state["holders"])
                if i % 4 == 0:
                    time.sleep(0)
                with guard:
                    state["holders"] -= 1
            finally:
                s.release()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [start_thread(worker) for _ in range(n_threads)]
        join_all(threads, timeout=300)
    finally:
        sys.setswitchinterval(old)
    assert state["timeouts"] == 0, state
    assert state["over"] == 0, state
    assert state["max"] <= 3, state
    assert state["holders"] == 0
    assert s._value == 3  # nothing lost, nothing added
    assert [s.acquire(False) for _ in range(4)] == [True, True, True, False]
