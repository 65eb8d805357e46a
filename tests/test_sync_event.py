"""nativepool.Event: drop-in for threading.Event.

Tests not marked ``nativepool_only`` also pass against the stdlib.
"""
import os
import sys
import threading
import time
import warnings

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT, start_thread, join_all, has_word, GIL_SCRIPT

PY = sys.version_info[:2]
SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))


# --------------------------------------------------------------------------
# basics

def test_initially_unset():
    ev = np.Event()
    assert ev.is_set() is False
    assert ev.wait(0) is False


def test_set_and_clear():
    ev = np.Event()
    assert ev.set() is None
    assert ev.is_set() is True
    ev.set()  # idempotent
    assert ev.is_set() is True
    assert ev.wait() is True
    assert ev.wait(0) is True
    assert ev.wait(timeout=None) is True
    assert ev.wait(-1) is True
    assert ev.clear() is None
    assert ev.is_set() is False
    ev.clear()
    assert ev.is_set() is False
    assert ev.wait(0) is False


@pytest.mark.parametrize("timeout", [0, -1, -0.5, 0.0])
def test_wait_nonpositive_timeout_unset(timeout):
    ev = np.Event()
    assert ev.wait(timeout) is False
    assert threading.Event().wait(timeout) is False


def test_wait_timeout_expires():
    ev = np.Event()
    t0 = time.monotonic()
    assert ev.wait(0.1) is False
    assert time.monotonic() - t0 >= 0.08
    assert ev.wait(timeout=0.01) is False


def test_wait_returns_true_when_set_by_other_thread():
    ev = np.Event()
    results = []
    started = threading.Event()

    def waiter():
        started.set()
        results.append(ev.wait(HANG_TIMEOUT))

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    time.sleep(0.05)
    assert results == []
    ev.set()
    join_all([t])
    assert results == [True]


def test_untimed_wait_wakes_on_set():
    ev = np.Event()
    results = []
    t = start_thread(lambda: results.append(ev.wait()))
    time.sleep(0.05)
    assert results == []
    ev.set()
    join_all([t])
    assert results == [True]


def test_set_wakes_all_waiters():
    ev = np.Event()
    results = []
    lock = threading.Lock()

    def waiter(timed):
        r = ev.wait(HANG_TIMEOUT) if timed else ev.wait()
        with lock:
            results.append(r)

    threads = [start_thread(waiter, i % 2 == 0) for i in range(8)]
    time.sleep(0.1)
    assert results == []
    ev.set()
    join_all(threads)
    assert results == [True] * 8


def test_set_then_clear_still_wakes_current_waiters():
    # A waiter blocked before set() returns True even if clear() follows at once
    # (same as threading.Event: the notify happened while the flag was set).
    ev = np.Event()
    results = []
    started = threading.Event()

    def waiter():
        started.set()
        results.append(ev.wait(HANG_TIMEOUT))

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    time.sleep(0.1)
    ev.set()
    ev.clear()
    join_all([t])
    assert results == [True]


def test_clear_makes_later_waits_block():
    ev = np.Event()
    ev.set()
    ev.clear()
    results = []
    t = start_thread(lambda: results.append(ev.wait(0.1)))
    join_all([t])
    assert results == [False]


def test_wait_bad_timeout_type():
    with pytest.raises(TypeError):
        threading.Event().wait("1")
    with pytest.raises(TypeError):
        np.Event().wait("1")


def test_isset_alias_only_where_stdlib_has_it():
    std_has = hasattr(threading.Event(), "isSet")
    ev = np.Event()
    assert hasattr(ev, "isSet") == std_has
    if not std_has:
        return
    with warnings.catch_warnings(record=True) as std_w:
        warnings.simplefilter("always")
        threading.Event().isSet()
    std_warns = any(issubclass(w.category, DeprecationWarning) for w in std_w)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert ev.isSet() is False
        ev.set()
        assert ev.isSet() is True
    assert any(issubclass(x.category, DeprecationWarning) for x in w) == std_warns


def test_at_fork_reinit_keeps_flag_and_stays_usable():
    ev = np.Event()
    ev.set()
    ev._at_fork_reinit()
    assert ev.is_set() is True  # as threading.Event: only the internals are reset
    ev.clear()
    ev._at_fork_reinit()
    assert ev.is_set() is False
    assert ev.wait(0.01) is False
    results = []
    t = start_thread(lambda: results.append(ev.wait(HANG_TIMEOUT)))
    time.sleep(0.05)
    ev.set()
    join_all([t])
    assert results == [True]


def test_at_fork_reinit_in_forked_child_with_waiter():
    # a thread is blocked in wait() when the process forks; in the child that
    # thread does not exist, and the event must be usable after _at_fork_reinit
    proc = run_script("""
        import os, threading, time
        ev = np.Event()
        res = []
        t = threading.Thread(target=lambda: res.append(ev.wait(60)))
        t.start()
        time.sleep(0.2)
        pid = os.fork()
        if pid == 0:
            try:
                ev._at_fork_reinit()
                ok = ev.wait(0.05) is False
                w = threading.Thread(target=lambda: res.append(ev.wait(10)))
                w.start(); time.sleep(0.1); ev.set(); w.join(20)
                ok = ok and res == [True] and ev.wait(1) is True
                ev.clear()
                ok = ok and ev.wait(0.01) is False
                os._exit(0 if ok else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        ev.set(); t.join(30)
        out("child", os.WEXITSTATUS(status) if os.WIFEXITED(status) else "signal")
        out("parent", res)
    """, timeout=60)
    assert "child 0" in proc.stdout, (proc.stdout, proc.stderr)
    assert "parent [True]" in proc.stdout, (proc.stdout, proc.stderr)


_REPR_MARKS = [pytest.mark.nativepool_only] if PY < (3, 11) else []


@pytest.mark.parametrize("dummy", [pytest.param(0, marks=_REPR_MARKS)])
def test_repr_shows_state(dummy):
    ev = np.Event()
    r = repr(ev)
    assert has_word("unset", r) and not has_word("set", r), r
    ev.set()
    r = repr(ev)
    assert has_word("set", r) and not has_word("unset", r), r
    ev.clear()
    assert has_word("unset", repr(ev))


# --------------------------------------------------------------------------
# GIL released while blocked; Ctrl-C interrupts the main thread

BLOCKING_CASES = {
    "wait": "obj.wait()",
    "wait_timeout": "obj.wait(60)",
    "wait_timeout_kw": "obj.wait(timeout=60)",
}


@pytest.mark.parametrize("case", sorted(BLOCKING_CASES))
def test_blocking_call_releases_gil(case):
    proc = run_script(GIL_SCRIPT % dict(setup="obj = np.Event()", block=BLOCKING_CASES[case],
                                        unblock="obj.set()"), timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "progress 300000 blocker_still_blocked True" in proc.stdout, (
        "the blocked call did not let another thread run", proc.stdout, proc.stderr)
    assert "result True alive False" in proc.stdout, (proc.stdout, proc.stderr)


SIGINT_SCRIPT = """
import os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
obj = np.Event()
kicked = []
def kick():
    kicked.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
timer = threading.Timer(0.5, kick)
try:
    timer.start()
    r = %(stmt)s
    out("returned without interrupt", r)
except KeyboardInterrupt:
    out("caught KeyboardInterrupt after %%.3f" %% (time.monotonic() - kicked[0]))
timer.join(30)
assert not obj.is_set()
obj.set()
assert obj.wait(0) is True
out("after ok")
"""


@pytest.mark.parametrize("case", sorted(BLOCKING_CASES))
def test_sigint_interrupts_wait(case):
    proc = run_script(SIGINT_SCRIPT % dict(stmt=BLOCKING_CASES[case].replace("60", "600")),
                      timeout=40)
    assert "caught KeyboardInterrupt" in proc.stdout, (proc.stdout, proc.stderr)
    delay = float(proc.stdout.split("caught KeyboardInterrupt after ")[1].split()[0])
    assert delay < 10.0, "KeyboardInterrupt only %.1f s after SIGINT" % delay
    assert "after ok" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


# --------------------------------------------------------------------------
# stress

@pytest.mark.stress
def test_stress_ping_pong_no_lost_wakeup():
    rounds = max(1000, int(100000 * SCALE))
    ping, pong = np.Event(), np.Event()
    failures = []
    done = []

    def responder():
        for i in range(rounds):
            if ping.wait(HANG_TIMEOUT) is not True:
                failures.append(("ping lost", i))
                return
            ping.clear()
            pong.set()
        done.append(True)

    t = start_thread(responder)
    for i in range(rounds):
        ping.set()
        r = pong.wait(HANG_TIMEOUT)
        if r is not True:
            failures.append(("pong lost", i, r))
            break
        pong.clear()
    join_all([t], timeout=HANG_TIMEOUT)
    assert failures == []
    assert done == [True]
    assert not ping.is_set() and not pong.is_set()


@pytest.mark.stress
def test_stress_many_waiters_many_rounds():
    # several waiters, repeated set/clear generations: every waiter of every
    # generation is released, nobody is left blocked
    n_waiters = 6
    rounds = max(50, int(2000 * SCALE))
    go = [np.Event() for _ in range(rounds)]
    arrived = threading.Semaphore(0)
    failures = []

    def waiter():
        for i in range(rounds):
            arrived.release()
            if go[i].wait(HANG_TIMEOUT) is not True:
                failures.append(i)
                return

    threads = [start_thread(waiter) for _ in range(n_waiters)]
    for i in range(rounds):
        for _ in range(n_waiters):
            assert arrived.acquire(timeout=HANG_TIMEOUT)
        go[i].set()
    join_all(threads, timeout=120)
    assert failures == []
