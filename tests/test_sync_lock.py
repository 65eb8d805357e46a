"""nativepool.Lock and nativepool.RLock: drop-in replacements for threading's.

Everything not marked ``nativepool_only`` must also pass against the stdlib
(run with NATIVEPOOL_TEST_MODULE pointing at a module re-exporting threading's
classes). Error types and messages are compared with the running Python's own
threading.Lock / threading.RLock, so the expectations follow the version.

Blocking calls run in subprocesses where a bug could hang the test run (GIL
held while waiting, Ctrl-C ignored); time is only used as a hang bound or as a
lower bound for a timeout, never as a speed assertion.
"""
import os
import sys
import threading
import time

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT, stdlib_error, assert_same_error, start_thread, join_all, run_in_thread, has_word, GIL_SCRIPT

PY = sys.version_info[:2]
SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))

STATS_KEYS = {"acquisitions", "contended", "wait_total", "wait_max"}


# --------------------------------------------------------------------------
# helpers


# ==========================================================================
# Lock

def test_lock_basic_acquire_release():
    lock = np.Lock()
    assert lock.locked() is False
    assert lock.acquire() is True
    assert lock.locked() is True
    lock.release()
    assert lock.locked() is False
    assert lock.acquire(True) is True
    lock.release()
    assert lock.acquire(blocking=True, timeout=-1) is True
    lock.release()
    assert lock.acquire(timeout=5) is True
    lock.release()
    assert not lock.locked()


def test_lock_is_not_reentrant():
    lock = np.Lock()
    assert lock.acquire()
    assert lock.acquire(False) is False
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(0) is False
    assert lock.acquire(timeout=0) is False
    assert lock.acquire(True, 0) is False
    assert lock.locked()
    lock.release()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_nonblocking_success():
    lock = np.Lock()
    assert lock.acquire(False) is True
    assert lock.locked()
    assert lock.acquire(blocking=False, timeout=-1) is False
    lock.release()


def test_lock_timeout_expires():
    lock = np.Lock()
    lock.acquire()
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.1) is False
    # lower bound only: the call must actually have waited
    assert time.monotonic() - t0 >= 0.08
    assert lock.locked()
    lock.release()


def test_lock_timeout_acquire_in_other_thread_fails_while_held():
    lock = np.Lock()
    lock.acquire()
    assert run_in_thread(lambda: lock.acquire(timeout=0.05)) is False
    assert run_in_thread(lambda: lock.acquire(False)) is False
    lock.release()
    assert run_in_thread(lambda: lock.acquire(False)) is True
    assert lock.locked()
    lock.release()


def test_lock_blocked_acquire_wakes_on_release():
    lock = np.Lock()
    lock.acquire()
    results = []
    started = threading.Event()

    def waiter():
        started.set()
        results.append(lock.acquire(timeout=HANG_TIMEOUT))

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    time.sleep(0.05)
    assert results == []  # still blocked: the lock is held
    lock.release()
    join_all([t])
    assert results == [True]
    assert lock.locked()  # now held by the (finished) waiter
    lock.release()


def test_lock_release_unlocked_raises():
    assert_same_error(lambda: np.Lock().release(),
                      lambda: threading.Lock().release())
    lock = np.Lock()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_lock_nonblocking_with_timeout_is_valueerror():
    assert_same_error(lambda: np.Lock().acquire(False, 1),
                      lambda: threading.Lock().acquire(False, 1))
    assert_same_error(lambda: np.Lock().acquire(blocking=False, timeout=0),
                      lambda: threading.Lock().acquire(blocking=False, timeout=0))


@pytest.mark.parametrize("timeout", [-2, -0.5, -1.5, -1e9])
def test_lock_negative_timeout_is_valueerror(timeout):
    lock = np.Lock()
    assert_same_error(lambda: lock.acquire(timeout=timeout),
                      lambda: threading.Lock().acquire(timeout=timeout))
    assert not lock.locked()


@pytest.mark.parametrize("timeout", [1e300, float("inf"), 2 ** 80])
def test_lock_huge_timeout_is_overflowerror(timeout):
    lock = np.Lock()
    with pytest.raises(OverflowError):
        lock.acquire(timeout=timeout)
    assert not lock.locked()
    # the stdlib agrees
    with pytest.raises(OverflowError):
        threading.Lock().acquire(timeout=timeout)


def test_lock_bad_timeout_types():
    assert_same_error(lambda: np.Lock().acquire(timeout="1"),
                      lambda: threading.Lock().acquire(timeout="1"),
                      check_message=False)


@pytest.mark.parametrize("factory", ["Lock", "RLock"])
def test_nan_timeout_is_valueerror(factory):
    obj = getattr(np, factory)()
    assert_same_error(lambda: obj.acquire(timeout=float("nan")),
                      lambda: getattr(threading, factory)().acquire(timeout=float("nan")),
                      check_message=False)
    # and the failed call did not take the lock
    assert run_in_thread(lambda: obj.acquire(False)) is True


def test_lock_release_from_other_thread_is_allowed():
    lock = np.Lock()
    lock.acquire()
    run_in_thread(lock.release)
    assert not lock.locked()
    assert lock.acquire(False)
    lock.release()


def test_lock_context_manager():
    lock = np.Lock()
    with lock as entered:
        assert entered is True
        assert lock.locked()
    assert not lock.locked()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with lock:
            raise Boom
    assert not lock.locked()


def test_lock_at_fork_reinit():
    lock = np.Lock()
    lock.acquire()
    lock._at_fork_reinit()
    assert not lock.locked()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_repr_shows_state():
    lock = np.Lock()
    r = repr(lock)
    assert has_word("unlocked", r) and not has_word("locked", r), r
    lock.acquire()
    r = repr(lock)
    assert has_word("locked", r) and not has_word("unlocked", r), r
    lock.release()
    assert has_word("unlocked", repr(lock))


def test_lock_with_stdlib_condition():
    cond = threading.Condition(np.Lock())
    box = []

    def producer():
        with cond:
            box.append(1)
            cond.notify()

    with cond:
        t = start_thread(producer)
        assert cond.wait_for(lambda: box, timeout=HANG_TIMEOUT)
    join_all([t])
    with cond:
        assert cond.wait(0.01) is False


# ==========================================================================
# RLock

def test_rlock_reentrant():
    rl = np.RLock()
    assert rl.acquire() is True
    assert rl.acquire() is True
    assert rl.acquire(False) is True
    assert rl.acquire(timeout=1) is True
    assert rl._is_owned()
    for _ in range(4):
        rl.release()
    assert not rl._is_owned()
    with pytest.raises(RuntimeError):
        rl.release()


def test_rlock_release_unowned_raises():
    assert_same_error(lambda: np.RLock().release(),
                      lambda: threading.RLock().release())


def test_rlock_release_by_non_owner_raises_and_keeps_lock():
    rl = np.RLock()
    rl.acquire()
    std = threading.RLock()
    std.acquire()
    etype, msg = stdlib_error(lambda: run_in_thread(std.release))
    with pytest.raises(etype) as info:
        run_in_thread(rl.release)
    assert str(info.value) == msg
    # still owned by this thread, still excluded for others
    assert rl._is_owned()
    assert run_in_thread(lambda: rl.acquire(False)) is False
    rl.release()
    assert run_in_thread(lambda: (rl.acquire(False), rl.release())[0]) is True
    std.release()


def test_rlock_excludes_other_threads():
    rl = np.RLock()
    rl.acquire()
    rl.acquire()
    assert run_in_thread(lambda: rl.acquire(False)) is False
    assert run_in_thread(lambda: rl.acquire(timeout=0.05)) is False
    assert run_in_thread(rl._is_owned) is False
    rl.release()
    # one level still held
    assert run_in_thread(lambda: rl.acquire(False)) is False
    rl.release()
    assert run_in_thread(lambda: (rl.acquire(False), rl.release())[0]) is True


def test_rlock_blocked_acquire_wakes_on_full_release():
    rl = np.RLock()
    rl.acquire()
    rl.acquire()
    results = []
    started = threading.Event()

    def waiter():
        started.set()
        got = rl.acquire(timeout=HANG_TIMEOUT)
        results.append((got, rl._is_owned()))
        if got:
            rl.release()

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    rl.release()
    time.sleep(0.05)
    assert results == []  # still held once
    rl.release()
    join_all([t])
    assert results == [(True, True)]


def test_rlock_errors_match_stdlib():
    assert_same_error(lambda: np.RLock().acquire(False, 1),
                      lambda: threading.RLock().acquire(False, 1))
    assert_same_error(lambda: np.RLock().acquire(timeout=-2),
                      lambda: threading.RLock().acquire(timeout=-2))
    with pytest.raises(OverflowError):
        np.RLock().acquire(timeout=1e300)


def test_rlock_timeout_expires():
    rl = np.RLock()
    rl.acquire()

    def other():
        t0 = time.monotonic()
        got = rl.acquire(timeout=0.1)
        return got, time.monotonic() - t0

    got, elapsed = run_in_thread(other)
    assert got is False
    assert elapsed >= 0.08
    rl.release()


def test_rlock_context_manager():
    rl = np.RLock()
    with rl as entered:
        assert entered is True
        with rl:
            assert rl._is_owned()
        assert rl._is_owned()
    assert not rl._is_owned()
    with pytest.raises(KeyError):
        with rl:
            raise KeyError
    assert not rl._is_owned()
    assert run_in_thread(lambda: (rl.acquire(False), rl.release())[0]) is True


def test_rlock_release_save_acquire_restore():
    rl = np.RLock()
    for _ in range(3):
        rl.acquire()
    state = rl._release_save()
    assert not rl._is_owned()
    # fully released: another thread can take and give it back
    assert run_in_thread(lambda: (rl.acquire(False), rl.release())[0]) is True
    rl._acquire_restore(state)
    assert rl._is_owned()
    assert run_in_thread(lambda: rl.acquire(False)) is False
    # the recursion depth came back: three releases, then it is free
    for _ in range(3):
        rl.release()
    assert not rl._is_owned()
    with pytest.raises(RuntimeError):
        rl.release()


def test_rlock_release_save_unowned_raises():
    assert_same_error(lambda: np.RLock()._release_save(),
                      lambda: threading.RLock()._release_save())


@pytest.mark.skipif(not hasattr(threading.RLock(), "_recursion_count"),
                    reason="the running Python's RLock has no _recursion_count")
def test_rlock_recursion_count():
    rl = np.RLock()
    assert rl._recursion_count() == 0
    rl.acquire()
    rl.acquire()
    assert rl._recursion_count() == 2
    assert run_in_thread(rl._recursion_count) == 0
    rl.release()
    assert rl._recursion_count() == 1
    rl.release()
    assert rl._recursion_count() == 0


def test_rlock_at_fork_reinit():
    rl = np.RLock()
    rl.acquire()
    rl.acquire()
    rl._at_fork_reinit()
    assert not rl._is_owned()
    assert run_in_thread(lambda: (rl.acquire(False), rl.release())[0]) is True
    with pytest.raises(RuntimeError):
        rl.release()


def test_rlock_repr_shows_state():
    rl = np.RLock()
    r = repr(rl)
    assert has_word("unlocked", r) and not has_word("locked", r), r
    rl.acquire()
    r = repr(rl)
    assert has_word("locked", r) and not has_word("unlocked", r), r
    rl.release()
    assert has_word("unlocked", repr(rl))


def test_condition_over_rlock_wait_notify():
    rl = np.RLock()
    cond = threading.Condition(rl)
    items = []
    seen = []

    def consumer():
        with cond:
            with cond:  # recursive: wait() must release both levels
                ok = cond.wait_for(lambda: items, timeout=HANG_TIMEOUT)
                seen.append((bool(ok), list(items), rl._is_owned()))

    with cond:
        assert rl._is_owned()
    t = start_thread(consumer)
    # the producer can take the lock while the consumer waits
    wait_until(lambda: not t.is_alive() or _waiting(cond), timeout=HANG_TIMEOUT)
    with cond:
        items.append("x")
        cond.notify()
    join_all([t])
    assert seen == [(True, ["x"], True)]
    assert not rl._is_owned()


def _waiting(cond):
    return len(getattr(cond, "_waiters", ())) > 0


def test_condition_over_rlock_notify_all_and_timeout():
    cond = threading.Condition(np.RLock())
    flag = []
    results = []
    lock = threading.Lock()

    def waiter():
        with cond:
            ok = cond.wait_for(lambda: flag, timeout=HANG_TIMEOUT)
        with lock:
            results.append(bool(ok))

    threads = [start_thread(waiter) for _ in range(4)]
    assert wait_until(lambda: len(cond._waiters) == 4)
    with cond:
        flag.append(1)
        cond.notify_all()
    join_all(threads)
    assert results == [True] * 4
    with cond:
        t0 = time.monotonic()
        assert cond.wait(0.05) is False
        assert time.monotonic() - t0 >= 0.04
        assert cond._is_owned()


# ==========================================================================
# GIL released while blocked; Ctrl-C interrupts the main thread

# setup (holds the lock elsewhere), the blocking expression, the unblocking statement
BLOCKING_CASES = {
    "lock_acquire": ("obj = np.Lock(); obj.acquire()", "obj.acquire()", "obj.release()"),
    "lock_acquire_timeout": ("obj = np.Lock(); obj.acquire()",
                             "obj.acquire(timeout=60)", "obj.release()"),
    "lock_acquire_with": ("obj = np.Lock(); obj.acquire()",
                          "obj.__enter__()", "obj.release()"),
    "rlock_acquire": ("obj = np.RLock(); obj.acquire()", "obj.acquire()", "obj.release()"),
    "rlock_acquire_timeout": ("obj = np.RLock(); obj.acquire()",
                              "obj.acquire(True, 60)", "obj.release()"),
}


def check_gil_released(setup, block, unblock):
    proc = run_script(GIL_SCRIPT % dict(setup=setup, block=block, unblock=unblock),
                      timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "progress 300000 blocker_still_blocked True" in proc.stdout, (
        "the blocked call did not let another thread run", proc.stdout, proc.stderr)
    assert "result True alive False" in proc.stdout, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("case", sorted(BLOCKING_CASES))
def test_blocking_call_releases_gil(case):
    check_gil_released(*BLOCKING_CASES[case])


# setup, blocking statement in the main thread, post-interrupt checks
SIGINT_CASES = {
    "lock_acquire": ("obj = np.Lock(); obj.acquire()", "obj.acquire()",
                     "assert obj.locked(); obj.release(); assert obj.acquire(False)"),
    "lock_acquire_timeout": ("obj = np.Lock(); obj.acquire()", "obj.acquire(timeout=600)",
                             "assert obj.locked(); obj.release(); assert not obj.locked()"),
    "lock_with": ("obj = np.Lock(); obj.acquire()", "with obj: pass",
                  "assert obj.locked(); obj.release(); assert obj.acquire(False)"),
    "rlock_acquire": (
        "obj = np.RLock(); hold = threading.Event(); held = threading.Event()\n"
        "def holder():\n"
        "    with obj:\n"
        "        held.set(); hold.wait(60)\n"
        "ht = threading.Thread(target=holder, daemon=True); ht.start(); held.wait(60)",
        "obj.acquire()",
        "assert not obj._is_owned(); hold.set(); ht.join(30);"
        " assert obj.acquire(timeout=30); obj.release()"),
    "rlock_acquire_timeout": (
        "obj = np.RLock(); hold = threading.Event(); held = threading.Event()\n"
        "def holder():\n"
        "    with obj:\n"
        "        held.set(); hold.wait(60)\n"
        "ht = threading.Thread(target=holder, daemon=True); ht.start(); held.wait(60)",
        "obj.acquire(timeout=600)",
        "assert not obj._is_owned(); hold.set(); ht.join(30);"
        " assert obj.acquire(timeout=30); obj.release()"),
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


def check_sigint(setup, stmt, after):
    proc = run_script(SIGINT_SCRIPT % dict(setup=setup, stmt=stmt, after=after),
                      timeout=40)
    assert "caught KeyboardInterrupt" in proc.stdout, (proc.stdout, proc.stderr)
    delay = float(proc.stdout.split("caught KeyboardInterrupt after ")[1].split()[0])
    assert delay < 10.0, "KeyboardInterrupt only %.1f s after SIGINT" % delay
    assert "after ok" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("case", sorted(SIGINT_CASES))
def test_sigint_interrupts_blocking_call(case):
    check_sigint(*SIGINT_CASES[case])


def test_lock_at_fork_reinit_in_forked_child():
    proc = run_script("""
        import os, threading
        lock = np.Lock()
        rl = np.RLock()
        held = threading.Event(); done = threading.Event()
        def holder():
            lock.acquire(); rl.acquire(); held.set(); done.wait(60)
            rl.release(); lock.release()
        t = threading.Thread(target=holder); t.start(); held.wait(60)
        pid = os.fork()
        if pid == 0:
            try:
                lock._at_fork_reinit(); rl._at_fork_reinit()
                ok = lock.acquire(timeout=10) and rl.acquire(timeout=10)
                rl.release(); lock.release()
                os._exit(0 if ok and not lock.locked() else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        done.set(); t.join(30)
        out("child", os.WEXITSTATUS(status) if os.WIFEXITED(status) else "signal")
        out("parent", lock.acquire(timeout=10), rl.acquire(timeout=10))
    """, timeout=60)
    assert "child 0" in proc.stdout, (proc.stdout, proc.stderr)
    assert "parent True True" in proc.stdout, (proc.stdout, proc.stderr)


# ==========================================================================
# stats (nativepool only)

def _blocked_acquire(obj, hold_time=0.3):
    """Hold obj in this thread, have another thread block on it for ~hold_time."""
    obj.acquire()
    started = threading.Event()
    results = []

    def waiter():
        started.set()
        results.append(obj.acquire(timeout=HANG_TIMEOUT))
        obj.release()

    t = start_thread(waiter)
    assert started.wait(HANG_TIMEOUT)
    time.sleep(hold_time)
    obj.release()
    join_all([t])
    assert results == [True]


def _check_stats_shape(st):
    assert isinstance(st, dict)
    assert STATS_KEYS <= set(st), st
    assert isinstance(st["acquisitions"], int)
    assert isinstance(st["contended"], int)
    assert isinstance(st["wait_total"], float)
    assert isinstance(st["wait_max"], float)


@pytest.mark.nativepool_only
@pytest.mark.parametrize("factory", ["Lock", "RLock"])
def test_stats_uncontended(factory):
    obj = getattr(np, factory)()
    st = obj.stats()
    _check_stats_shape(st)
    assert st["acquisitions"] == 0 and st["contended"] == 0
    assert st["wait_total"] == 0.0 and st["wait_max"] == 0.0
    for _ in range(5):
        obj.acquire()
        obj.release()
    with obj:
        pass
    assert obj.acquire(False)
    obj.release()
    st = obj.stats()
    _check_stats_shape(st)
    assert st["acquisitions"] == 7, st
    assert st["contended"] == 0, st


@pytest.mark.nativepool_only
@pytest.mark.parametrize("factory", ["Lock", "RLock"])
def test_stats_contended(factory):
    obj = getattr(np, factory)()
    obj.acquire()
    obj.release()
    _blocked_acquire(obj, 0.3)
    st = obj.stats()
    _check_stats_shape(st)
    # 1 uncontended + the holder's + the blocked one
    assert st["acquisitions"] == 3, st
    assert st["contended"] == 1, st
    assert 0.1 <= st["wait_max"] <= st["wait_total"], st
    assert st["wait_total"] < HANG_TIMEOUT, st  # seconds, not ns/us
    obj.reset_stats()
    st = obj.stats()
    assert st["acquisitions"] == 0 and st["contended"] == 0, st
    assert st["wait_total"] == 0.0 and st["wait_max"] == 0.0, st
    # counting resumes after a reset
    with obj:
        pass
    assert obj.stats()["acquisitions"] == 1


@pytest.mark.nativepool_only
def test_stats_wait_max_is_max_and_total_sums():
    lock = np.Lock()
    _blocked_acquire(lock, 0.15)
    _blocked_acquire(lock, 0.3)
    st = lock.stats()
    assert st["contended"] == 2, st
    assert st["wait_max"] >= 0.2, st
    assert st["wait_total"] >= st["wait_max"] + 0.1, st


@pytest.mark.nativepool_only
def test_stats_rlock_reentrant_acquire_is_not_contended():
    rl = np.RLock()
    with rl:
        with rl:
            with rl:
                pass
    st = rl.stats()
    assert st["contended"] == 0, st
    assert st["acquisitions"] >= 1, st
    assert st["wait_total"] == 0.0, st


# ==========================================================================
# stress

@pytest.mark.stress
@pytest.mark.parametrize("factory", ["Lock", "RLock"])
def test_stress_lock_protects_counter(factory):
    lock = getattr(np, factory)()
    n_threads = 8
    per_thread = max(1000, int(20000 * SCALE))
    box = [0]
    start = threading.Barrier(n_threads)

    def worker():
        start.wait()
        for i in range(per_thread):
            with lock:
                v = box[0]
                if i % 64 == 0:
                    time.sleep(0)  # invite a switch inside the critical section
                box[0] = v + 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [start_thread(worker) for _ in range(n_threads)]
        join_all(threads, timeout=300)
    finally:
        sys.setswitchinterval(old)
    assert box[0] == n_threads * per_thread
    if factory == "Lock":
        assert not lock.locked()
    assert lock.acquire(False)
    lock.release()
