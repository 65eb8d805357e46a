"""nativepool.Condition: drop-in for threading.Condition.

Tests not marked ``nativepool_only`` also pass against the stdlib (run with
NATIVEPOOL_TEST_MODULE pointing at a module re-exporting threading's Condition,
Lock and RLock); error types and messages are compared with the running
Python's own threading.Condition.

A waiter is known to be blocked in wait() without peeking at private state:
it signals "about to wait" while holding the condition's lock, and the test
then takes that lock -- which is only possible once wait() has released it.
Blocking calls that could hang the run (GIL, Ctrl-C) run in subprocesses;
time is only a hang bound or a lower bound for a timeout, never a speed check.
"""
import collections
import os
import sys
import threading
import time
import warnings

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT, stdlib_error, assert_same_error, start_thread, join_all, run_in_thread

PY = sys.version_info[:2]
SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))


# --------------------------------------------------------------------------
# helpers


def other_can_acquire(cond):
    """Whether another thread can take (and give back) cond's lock right now."""
    def probe():
        if cond.acquire(False):
            cond.release()
            return True
        return False
    return run_in_thread(probe)


class DuckLock:
    """A lock that is not a lock type: only acquire/release (+ context manager)."""

    def __init__(self):
        self._l = threading.Lock()

    def acquire(self, blocking=True, timeout=-1):
        return self._l.acquire(blocking, timeout)

    def release(self):
        self._l.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


class MinimalDuckLock:
    """Only acquire() and release(); no context manager, no private protocol."""

    def __init__(self):
        self._l = threading.Lock()

    def acquire(self, blocking=True, timeout=-1):
        return self._l.acquire(blocking, timeout)

    def release(self):
        self._l.release()


LOCK_FACTORIES = {
    "default": lambda: None,
    "np.Lock": lambda: np.Lock(),
    "np.RLock": lambda: np.RLock(),
    "threading.Lock": threading.Lock,
    "threading.RLock": threading.RLock,
    "duck": DuckLock,
}
REENTRANT = ["default", "np.RLock", "threading.RLock"]


def make_cond(kind):
    lock = LOCK_FACTORIES[kind]()
    return np.Condition() if lock is None else np.Condition(lock)


@pytest.fixture(params=sorted(LOCK_FACTORIES))
def kind(request):
    return request.param


@pytest.fixture(params=REENTRANT)
def rkind(request):
    return request.param


class Waiter:
    """A thread that takes the condition's lock (``depth`` times), announces it
    is about to wait, waits, and records (result, still-owned) afterwards.

    ``started()`` returns once the thread is really blocked in wait(): the test
    takes the condition's lock, which wait() must have released.
    """

    def __init__(self, cond, call=None, depth=1, tag=None, record=None):
        self.cond = cond
        self.call = call or (lambda c: c.wait(HANG_TIMEOUT))
        self.depth = depth
        self.tag = tag
        self.record = record  # shared list of tags, appended under the lock
        self.ready = threading.Event()
        self.result = None
        self.error = None
        self.owned_after = None
        self.done = threading.Event()
        self.thread = start_thread(self._run)

    def _run(self):
        try:
            for _ in range(self.depth):
                self.cond.acquire()
            try:
                self.ready.set()
                self.result = self.call(self.cond)
                if self.record is not None:
                    self.record.append(self.tag)
                self.owned_after = self.cond._is_owned()
            finally:
                for _ in range(self.depth):
                    self.cond.release()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        finally:
            self.done.set()

    def started(self):
        assert self.ready.wait(HANG_TIMEOUT)
        assert self.cond.acquire(timeout=HANG_TIMEOUT), "wait() did not release the lock"
        self.cond.release()
        return self

    def join(self, timeout=HANG_TIMEOUT):
        join_all([self.thread], timeout)
        if self.error is not None:
            raise self.error
        return self.result


# --------------------------------------------------------------------------
# construction, acquire/release, context manager

def test_default_lock_is_reentrant():
    cond = np.Condition()
    assert cond.acquire() is True
    assert cond.acquire() is True  # would deadlock on a plain Lock
    assert cond.acquire(False) is True
    assert cond._is_owned() is True
    assert other_can_acquire(cond) is False
    for _ in range(3):
        cond.release()
    assert cond._is_owned() is False
    assert other_can_acquire(cond) is True
    with pytest.raises(RuntimeError):
        cond.release()


def test_default_lock_is_nativepool_rlock():
    cond = np.Condition()
    if not hasattr(cond, "_lock"):
        pytest.skip("the Condition does not expose its lock")
    assert type(cond._lock) is type(np.RLock())


def test_lock_none_means_default():
    cond = np.Condition(None)
    with cond:
        with cond:
            assert cond._is_owned()
    assert other_can_acquire(cond)
    cond = np.Condition(lock=None)
    with cond:
        assert cond._is_owned()


def test_lock_keyword_argument():
    lock = np.Lock()
    cond = np.Condition(lock=lock)
    with cond:
        assert lock.locked()
    assert not lock.locked()


def test_acquire_release_delegate_to_lock(kind):
    lock = LOCK_FACTORIES[kind]()
    if lock is None:
        pytest.skip("no explicit lock")
    cond = np.Condition(lock)
    assert cond.acquire() is True
    # the lock itself is now taken, for every thread but (for RLocks) this one
    assert run_in_thread(lambda: lock.acquire(False)) is False
    cond.release()
    assert lock.acquire(False) is True
    assert run_in_thread(lambda: cond.acquire(False)) is False
    assert run_in_thread(lambda: cond.acquire(timeout=0.01)) is False
    lock.release()
    assert cond.acquire(blocking=False) is True
    cond.release()
    assert cond.acquire(True, 1) is True
    cond.release()
    assert cond.acquire(timeout=1) is True
    cond.release()
    assert other_can_acquire(cond)


@pytest.mark.parametrize("lk", ["np.Lock", "threading.Lock"])
def test_plain_lock_is_not_reentrant_through_condition(lk):
    lock = LOCK_FACTORIES[lk]()
    cond = np.Condition(lock)
    assert cond.acquire()
    assert cond.acquire(False) is False
    assert cond.acquire(timeout=0.01) is False
    cond.release()
    with pytest.raises(RuntimeError):
        cond.release()


STDLIB_TWIN = {
    "default": threading.RLock,
    "np.Lock": threading.Lock,
    "np.RLock": threading.RLock,
    "threading.Lock": threading.Lock,
    "threading.RLock": threading.RLock,
    "duck": DuckLock,
}


def test_release_unheld_raises_like_the_lock(kind):
    cond = make_cond(kind)
    expected, _ = stdlib_error(threading.Condition(STDLIB_TWIN[kind]()).release)
    with pytest.raises(expected):
        cond.release()


def test_context_manager(kind):
    cond = make_cond(kind)
    with cond as entered:
        assert entered is True
        assert cond._is_owned()
        assert other_can_acquire(cond) is False
    assert other_can_acquire(cond) is True

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with cond:
            raise Boom
    assert other_can_acquire(cond) is True


def test_is_owned(kind):
    cond = make_cond(kind)
    assert cond._is_owned() is False
    with cond:
        assert cond._is_owned() is True
    assert cond._is_owned() is False


def test_is_owned_is_per_thread_for_rlocks(rkind):
    cond = make_cond(rkind)
    with cond:
        assert cond._is_owned() is True
        assert run_in_thread(cond._is_owned) is False
    assert run_in_thread(lambda: (cond.acquire(), cond._is_owned(), cond.release())[1]) is True
    assert cond._is_owned() is False


def test_minimal_duck_lock():
    # only acquire/release: wait/notify still work (stdlib falls back to them)
    lock = MinimalDuckLock()
    cond = np.Condition(lock)
    assert cond._is_owned() is False
    assert cond.acquire() is True
    assert cond._is_owned() is True
    assert cond.wait(0.01) is False
    assert cond._is_owned() is True
    cond.release()
    w = Waiter(cond).started()
    cond.acquire()
    cond.notify()
    cond.release()
    assert w.join() is True
    assert w.owned_after is True
    assert cond.acquire(False) is True
    cond.release()


def test_lock_private_protocol_is_used():
    # a lock exposing _is_owned/_release_save/_acquire_restore: the condition
    # uses them (as threading.Condition does)
    calls = []

    class Tracing:
        def __init__(self):
            self._r = threading.RLock()

        def acquire(self, *a, **k):
            return self._r.acquire(*a, **k)

        def release(self):
            self._r.release()

        def __enter__(self):
            return self._r.__enter__()

        def __exit__(self, *a):
            return self._r.__exit__(*a)

        def _is_owned(self):
            calls.append("_is_owned")
            return self._r._is_owned()

        def _release_save(self):
            calls.append("_release_save")
            return self._r._release_save()

        def _acquire_restore(self, state):
            calls.append("_acquire_restore")
            self._r._acquire_restore(state)

    cond = np.Condition(Tracing())
    with cond:
        with cond:
            assert cond.wait(0.01) is False
            assert cond._is_owned() is True
    assert calls.count("_release_save") == 1, calls
    assert calls.count("_acquire_restore") == 1, calls
    assert "_is_owned" in calls
    assert calls.index("_release_save") < calls.index("_acquire_restore")
    # a lock that says "not owned" makes wait/notify refuse
    calls.clear()
    t = Tracing()
    t._is_owned = lambda: False
    cond = np.Condition(t)
    with cond:
        with pytest.raises(RuntimeError):
            cond.wait(0)
        with pytest.raises(RuntimeError):
            cond.notify()


# --------------------------------------------------------------------------
# errors

def test_wait_unacquired_raises(kind):
    cond = make_cond(kind)
    assert_same_error(lambda: cond.wait(), lambda: threading.Condition().wait())
    assert_same_error(lambda: cond.wait(0.01), lambda: threading.Condition().wait(0.01))
    assert_same_error(lambda: cond.wait(timeout=0),
                      lambda: threading.Condition().wait(timeout=0))
    with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
        cond.wait(1)
    # still usable
    with cond:
        assert cond.wait(0) is False


def test_notify_unacquired_raises(kind):
    cond = make_cond(kind)
    assert_same_error(lambda: cond.notify(), lambda: threading.Condition().notify())
    assert_same_error(lambda: cond.notify(3), lambda: threading.Condition().notify(3))
    assert_same_error(lambda: cond.notify_all(), lambda: threading.Condition().notify_all())
    with pytest.raises(RuntimeError, match="cannot notify on un-acquired lock"):
        cond.notify_all()


@pytest.mark.parametrize("timeout", [0.01, 0, 0.0, -1])
def test_wait_for_unacquired_raises_when_predicate_false(kind, timeout):
    # even with a timeout that has already expired: the stdlib's wait_for
    # always calls wait() once the predicate is false, and wait() checks
    cond = make_cond(kind)
    assert_same_error(lambda: cond.wait_for(lambda: False, timeout),
                      lambda: threading.Condition().wait_for(lambda: False, timeout))
    assert_same_error(lambda: cond.wait_for(lambda: 0, timeout=timeout),
                      lambda: threading.Condition().wait_for(lambda: 0, timeout=timeout))


def test_wait_for_unacquired_true_predicate_returns_it():
    # as the stdlib: the predicate is evaluated first, ownership only checked on wait()
    std = threading.Condition().wait_for(lambda: "yes")
    assert std == "yes"
    assert np.Condition().wait_for(lambda: "yes") == "yes"


def test_wait_and_notify_from_non_owner_thread_raise(rkind):
    cond = make_cond(rkind)
    with cond:
        with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
            run_in_thread(lambda: cond.wait(0.01))
        with pytest.raises(RuntimeError, match="cannot notify on un-acquired lock"):
            run_in_thread(cond.notify)
        with pytest.raises(RuntimeError, match="cannot notify on un-acquired lock"):
            run_in_thread(cond.notify_all)
        assert cond._is_owned()


def test_wait_bad_timeout_type():
    cond = np.Condition()
    std = threading.Condition()
    with std:
        etype, _ = stdlib_error(lambda: std.wait("1"))
    with cond:
        with pytest.raises(etype):
            cond.wait("1")
        # the failed call left the lock held (exactly once)
        assert cond._is_owned()
    assert not cond._is_owned()
    assert other_can_acquire(cond)


# --------------------------------------------------------------------------
# wait / notify

@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5])
def test_wait_nonpositive_timeout_returns_false(kind, timeout):
    cond = make_cond(kind)
    with cond:
        assert cond.wait(timeout) is False
        assert cond._is_owned()
    with cond:
        assert cond.wait(timeout=timeout) is False


def test_wait_timeout_expires(kind):
    cond = make_cond(kind)
    with cond:
        t0 = time.monotonic()
        assert cond.wait(0.1) is False
        assert time.monotonic() - t0 >= 0.08
        assert cond._is_owned()
        assert other_can_acquire(cond) is False
    assert other_can_acquire(cond) is True


def test_notify_without_waiters_is_noop(kind):
    cond = make_cond(kind)
    with cond:
        assert cond.notify() is None
        assert cond.notify(5) is None
        assert cond.notify(0) is None
        assert cond.notify_all() is None
        # nothing was stored for a later waiter
        assert cond.wait(0.05) is False


@pytest.mark.parametrize("how", ["wait()", "wait(T)", "wait(timeout=T)", "wait(None)"])
def test_wait_returns_true_when_notified(kind, how):
    calls = {
        "wait()": lambda c: c.wait(),
        "wait(T)": lambda c: c.wait(HANG_TIMEOUT),
        "wait(timeout=T)": lambda c: c.wait(timeout=HANG_TIMEOUT),
        "wait(None)": lambda c: c.wait(None),
    }
    cond = make_cond(kind)
    w = Waiter(cond, calls[how]).started()
    time.sleep(0.02)
    assert not w.done.is_set()
    with cond:
        cond.notify()
    assert w.join() is True
    assert w.owned_after is True
    assert other_can_acquire(cond)


def test_wait_releases_the_lock_while_blocked(kind):
    cond = make_cond(kind)
    w = Waiter(cond)
    assert w.ready.wait(HANG_TIMEOUT)
    # another thread (this one) can take the lock while the waiter waits
    assert cond.acquire(timeout=HANG_TIMEOUT) is True
    assert not w.done.is_set()
    cond.notify()
    time.sleep(0.05)
    # notified, but it cannot return before it gets the lock back
    assert not w.done.is_set()
    cond.release()
    assert w.join() is True
    assert w.owned_after is True


@pytest.mark.parametrize("depth", [2, 3])
def test_wait_fully_releases_recursive_lock_and_restores_depth(rkind, depth):
    cond = make_cond(rkind)
    w_state = {}

    def call(c):
        r = c.wait(HANG_TIMEOUT)
        # depth restored: depth-1 releases keep it owned, the last frees it
        for i in range(depth - 1):
            c.release()
            w_state.setdefault("owned", []).append(c._is_owned())
        for i in range(depth - 1):
            c.acquire()
        return r

    w = Waiter(cond, call, depth=depth).started()
    with cond:
        cond.notify()
    assert w.join() is True
    assert w.owned_after is True
    assert w_state["owned"] == [True] * (depth - 1)
    # the waiter's `depth` releases freed it completely
    assert other_can_acquire(cond)
    with cond:
        pass


def test_timed_out_wait_restores_recursion_depth(rkind):
    cond = make_cond(rkind)
    cond.acquire()
    cond.acquire()
    assert cond.wait(0.02) is False
    cond.release()
    assert cond._is_owned() is True
    assert other_can_acquire(cond) is False
    cond.release()
    assert cond._is_owned() is False
    assert other_can_acquire(cond) is True
    with pytest.raises(RuntimeError):
        cond.release()


def test_notify_one_wakes_exactly_one(kind):
    cond = make_cond(kind)
    order = []
    waiters = [Waiter(cond, tag=i, record=order).started() for i in range(3)]
    with cond:
        cond.notify()
    assert wait_until(lambda: len(order) >= 1)
    time.sleep(0.1)
    assert len(order) == 1
    with cond:
        cond.notify_all()
    for w in waiters:
        assert w.join() is True


def test_notify_n_wakes_at_most_n(kind):
    cond = make_cond(kind)
    order = []
    waiters = [Waiter(cond, tag=i, record=order).started() for i in range(5)]
    with cond:
        cond.notify(2)
    assert wait_until(lambda: len(order) >= 2)
    time.sleep(0.1)
    assert len(order) == 2
    with cond:
        cond.notify(0)
        cond.notify(-1)
    time.sleep(0.1)
    assert len(order) == 2
    with cond:
        cond.notify(100)  # more than there are: wakes the remaining three
    for w in waiters:
        assert w.join() is True
    assert sorted(order) == list(range(5))


@pytest.mark.parametrize("n", [1, 2])
def test_notify_is_fifo(kind, n):
    cond = make_cond(kind)
    order = []
    count = 6
    # started() one at a time: waiter i is waiting before waiter i+1 starts
    waiters = [Waiter(cond, tag=i, record=order).started() for i in range(count)]
    woken = 0
    while woken < count:
        with cond:
            cond.notify(n)
        woken = min(count, woken + n)
        assert wait_until(lambda: len(order) >= woken)
        time.sleep(0.02)
        assert len(order) == woken
    for w in waiters:
        assert w.join() is True
    # within one notify(n) batch the woken threads may return in any order
    batches = [sorted(order[i:i + n]) for i in range(0, count, n)]
    assert batches == [list(range(i, min(i + n, count))) for i in range(0, count, n)]


def test_notify_all_wakes_everyone(kind):
    cond = make_cond(kind)
    order = []
    waiters = [Waiter(cond, tag=i, record=order).started() for i in range(6)]
    with cond:
        cond.notify_all()
    for w in waiters:
        assert w.join() is True
        assert w.owned_after is True
    assert sorted(order) == list(range(6))


def test_notify_does_not_wake_later_waiters(kind):
    # a notify with nobody waiting is not remembered
    cond = make_cond(kind)
    with cond:
        cond.notify_all()
        cond.notify(3)
    w = Waiter(cond, lambda c: c.wait(0.2)).started()
    assert w.join() is False


def test_notifyall_alias_only_where_stdlib_has_it():
    std_has = hasattr(threading.Condition(), "notifyAll")
    cond = np.Condition()
    assert hasattr(cond, "notifyAll") == std_has
    if not std_has:
        return
    with warnings.catch_warnings(record=True) as std_w:
        warnings.simplefilter("always")
        c = threading.Condition()
        with c:
            c.notifyAll()
    std_warns = any(issubclass(w.category, DeprecationWarning) for w in std_w)
    w1 = Waiter(cond).started()
    w2 = Waiter(cond).started()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        with cond:
            assert cond.notifyAll() is None
    assert any(issubclass(x.category, DeprecationWarning) for x in got) == std_warns
    assert w1.join() is True and w2.join() is True
    with pytest.raises(RuntimeError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cond.notifyAll()


def test_timed_out_waiter_does_not_swallow_notify(kind):
    # A times out and returns before the notify; B (waiting longer) must get it.
    cond = make_cond(kind)
    a = Waiter(cond, lambda c: c.wait(0.05)).started()
    b = Waiter(cond).started()
    assert a.join() is False
    with cond:
        cond.notify(1)
    assert b.join() is True


def test_many_timed_out_waiters_then_notify(kind):
    cond = make_cond(kind)
    short = [Waiter(cond, lambda c: c.wait(0.03)).started() for _ in range(5)]
    for w in short:
        assert w.join() is False
    b = Waiter(cond).started()
    with cond:
        cond.notify()
    assert b.join() is True


@pytest.mark.nativepool_only
@pytest.mark.parametrize("rep", range(3))
def test_waiter_timing_out_during_notify_does_not_swallow_it(kind, rep):
    # A's timeout expires while the notifier holds the lock, so A is still
    # reacquiring when notify(1) runs. Exactly one of A and B may consume the
    # notify: either A returns True (it was still queued) and B keeps waiting,
    # or A returns False and B wakes with True. (threading.Condition loses the
    # notify here: A returns False and B is not woken.)
    cond = make_cond(kind)
    a = Waiter(cond, lambda c: c.wait(0.05)).started()
    b = Waiter(cond, lambda c: c.wait(5)).started()
    with cond:
        time.sleep(0.3)  # A's timeout expires meanwhile
        cond.notify(1)
    ra = a.join()
    if ra is True:
        time.sleep(0.2)
        assert not b.done.is_set(), "notify(1) woke both waiters"
        with cond:
            cond.notify()
    assert b.join() is True


def test_timeouts_and_notifies_mixed_never_wake_more_than_n(kind):
    # Several rounds: two waiters, one with a timeout racing the notify(1).
    # Never more than one True per notify(1).
    cond = make_cond(kind)
    for i in range(8):
        a = Waiter(cond, lambda c: c.wait(0.02 + 0.005 * i)).started()
        b = Waiter(cond, lambda c: c.wait(0.3)).started()
        time.sleep(0.02)
        with cond:
            cond.notify(1)
        results = [a.join(), b.join()]
        assert results.count(True) <= 1, (i, results)


# --------------------------------------------------------------------------
# wait_for

def test_wait_for_true_predicate_returns_immediately(kind):
    cond = make_cond(kind)
    with cond:
        assert cond.wait_for(lambda: True) is True
        assert cond.wait_for(lambda: 42, timeout=0) == 42
        v = object()
        assert cond.wait_for(lambda: v, 1) is v
        assert cond._is_owned()


def test_wait_for_timeout_returns_last_value(kind):
    cond = make_cond(kind)
    calls = []

    def pred():
        calls.append(1)
        return 0 if len(calls) % 2 else ""

    with cond:
        t0 = time.monotonic()
        r = cond.wait_for(pred, timeout=0.1)
        assert time.monotonic() - t0 >= 0.08
        assert r == (0 if len(calls) % 2 else "")
        assert type(r) is (int if len(calls) % 2 else str)
        assert len(calls) >= 2
        assert cond._is_owned()
        assert cond.wait_for(lambda: None, 0) is None
        assert cond.wait_for(lambda: [], timeout=-1) == []


def test_wait_for_wakes_when_predicate_becomes_true(kind):
    cond = make_cond(kind)
    state = {"n": 0}
    evaluated = []

    def pred():
        evaluated.append(cond._is_owned())
        return state["n"] >= 3 and ("done", state["n"])

    w = Waiter(cond, lambda c: c.wait_for(pred, HANG_TIMEOUT)).started()
    for _ in range(3):
        with cond:
            state["n"] += 1
            cond.notify()
    assert w.join() == ("done", 3)
    assert w.owned_after is True
    assert all(evaluated)  # the predicate always ran with the lock held


def test_wait_for_untimed(kind):
    cond = make_cond(kind)
    box = []
    w = Waiter(cond, lambda c: c.wait_for(lambda: box)).started()
    with cond:
        cond.notify()  # spurious from the predicate's view: keeps waiting
    time.sleep(0.05)
    assert not w.done.is_set()
    with cond:
        box.append(1)
        cond.notify_all()
    assert w.join() == [1]


def test_wait_for_predicate_exception_propagates_with_lock_held(kind):
    cond = make_cond(kind)

    def pred():
        raise ZeroDivisionError("boom")

    with cond:
        with pytest.raises(ZeroDivisionError):
            cond.wait_for(pred, 1)
        assert cond._is_owned()
    assert other_can_acquire(cond)

    n = []

    def pred2():
        n.append(1)
        if len(n) > 1:
            raise KeyError("later")
        return False

    w = Waiter(cond, lambda c: c.wait_for(pred2, HANG_TIMEOUT)).started()
    with cond:
        cond.notify()
    with pytest.raises(KeyError):
        w.join()
    assert other_can_acquire(cond)


def test_wait_for_recursive_lock(rkind):
    cond = make_cond(rkind)
    flag = []
    w = Waiter(cond, lambda c: c.wait_for(lambda: flag, HANG_TIMEOUT), depth=3).started()
    with cond:
        flag.append(True)
        cond.notify()
    assert w.join() == [True]
    assert other_can_acquire(cond)


# --------------------------------------------------------------------------
# several conditions sharing one lock

@pytest.mark.parametrize("lk", ["np.Lock", "np.RLock", "threading.Lock"])
def test_two_conditions_share_a_lock(lk):
    lock = LOCK_FACTORIES[lk]()
    c1, c2 = np.Condition(lock), np.Condition(lock)
    w1 = Waiter(c1, tag=1).started()
    w2 = Waiter(c2, tag=2).started()
    with c1:
        assert c2._is_owned()
        c1.notify_all()
    assert w1.join() is True
    time.sleep(0.05)
    assert not w2.done.is_set()  # notifying c1 does not wake c2's waiter
    with c2:
        c2.notify()
    assert w2.join() is True


def test_stdlib_and_nativepool_rlocks_work_identically():
    for lock in (np.RLock(), threading.RLock()):
        cond = np.Condition(lock)
        w = Waiter(cond, depth=2).started()
        assert lock.acquire(timeout=HANG_TIMEOUT)
        cond.notify()
        lock.release()
        assert w.join() is True
        assert lock.acquire(False)
        lock.release()


# --------------------------------------------------------------------------
# GIL released while blocked; Ctrl-C interrupts the main thread

BLOCKING_CASES = {
    "wait": "cond.wait()",
    "wait_timeout": "cond.wait(60)",
    "wait_timeout_kw": "cond.wait(timeout=60)",
    "wait_for": "cond.wait_for(lambda: flag)",
    "wait_for_timeout": "cond.wait_for(lambda: flag, 60)",
    "wait_lock": "cond.wait()",
}
CASE_LOCK = {"wait_lock": "np.Lock()"}

GIL_SCRIPT = """
import threading, time
cond = np.Condition(%(lock)s)
flag = []
state = {"started": False, "done": False, "result": None}
def blocker():
    with cond:
        state["started"] = True
        state["result"] = bool(%(block)s)
    state["done"] = True
t = threading.Thread(target=blocker, daemon=True)
t.start()
while not state["started"]:
    time.sleep(0.001)
with cond:       # taken only once the blocker is inside wait
    pass
time.sleep(0.2)
n = 0
for i in range(300000):   # pure Python: needs the GIL
    n += 1
out("progress", n, "blocker_still_blocked", not state["done"])
with cond:
    flag.append(1)
    cond.notify()
t.join(30)
out("result", state["result"], "alive", t.is_alive())
"""


@pytest.mark.parametrize("case", sorted(BLOCKING_CASES))
def test_blocking_wait_releases_gil(case):
    proc = run_script(GIL_SCRIPT % dict(block=BLOCKING_CASES[case],
                                        lock=CASE_LOCK.get(case, "")), timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "progress 300000 blocker_still_blocked True" in proc.stdout, (
        "the blocked call did not let another thread run", proc.stdout, proc.stderr)
    assert "result True alive False" in proc.stdout, (proc.stdout, proc.stderr)


SIGINT_SCRIPT = """
import os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
cond = np.Condition(%(lock)s)
flag = []
kicked = []
def kick():
    kicked.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
timer = threading.Timer(0.5, kick)
%(acquire)s
try:
    timer.start()
    r = %(stmt)s
    out("returned without interrupt", r)
except KeyboardInterrupt:
    out("caught KeyboardInterrupt after %%.3f" %% (time.monotonic() - kicked[0]))
timer.join(30)
out("owned after interrupt", cond._is_owned())
%(check_depth)s
# fully released now: another thread can take it
def probe():
    if cond.acquire(timeout=10):
        cond.release()
        return True
    return False
box = []
pt = threading.Thread(target=lambda: box.append(probe())); pt.start(); pt.join(30)
out("other thread acquired", box)
# the interrupted wait left no stale entry that swallows the next notify
res = []
ready = threading.Event()
def waiter():
    with cond:
        ready.set()
        res.append(cond.wait(30))
wt = threading.Thread(target=waiter); wt.start()
ready.wait(30)
with cond:
    cond.notify()
wt.join(40)
out("next waiter", res)
out("after ok")
"""

DEPTH_CHECK = """
cond.release()
out("owned after one release", cond._is_owned())
cond.release()
out("owned after two releases", cond._is_owned())
"""

SIGINT_CASES = {
    # name: (lock expr, acquire statements, blocking expr, depth check)
    "wait_rlock_depth2": ("", "cond.acquire(); cond.acquire()", "cond.wait()", DEPTH_CHECK),
    "wait_timeout_rlock_depth2": ("", "cond.acquire(); cond.acquire()", "cond.wait(600)",
                                  DEPTH_CHECK),
    "wait_for_rlock_depth2": ("", "cond.acquire(); cond.acquire()",
                              "cond.wait_for(lambda: flag)", DEPTH_CHECK),
    "wait_np_lock": ("np.Lock()", "cond.acquire()", "cond.wait()", "cond.release()"),
    "wait_timeout_np_lock": ("np.Lock()", "cond.acquire()", "cond.wait(timeout=600)",
                             "cond.release()"),
}


@pytest.mark.parametrize("case", sorted(SIGINT_CASES))
def test_sigint_interrupts_wait_and_lock_is_held_again(case):
    lock, acquire, stmt, check = SIGINT_CASES[case]
    proc = run_script(SIGINT_SCRIPT % dict(lock=lock, acquire=acquire, stmt=stmt,
                                           check_depth=check), timeout=60)
    out = proc.stdout
    assert "caught KeyboardInterrupt" in out, (out, proc.stderr)
    delay = float(out.split("caught KeyboardInterrupt after ")[1].split()[0])
    assert delay < 10.0, "KeyboardInterrupt only %.1f s after SIGINT" % delay
    assert "owned after interrupt True" in out, (out, proc.stderr)
    if "depth2" in case:
        assert "owned after one release True" in out, (out, proc.stderr)
        assert "owned after two releases False" in out, (out, proc.stderr)
    assert "other thread acquired [True]" in out, (out, proc.stderr)
    assert "next waiter [True]" in out, (out, proc.stderr)
    assert "after ok" in out, (out, proc.stderr)
    assert proc.returncode == 0, (out, proc.stderr)


# --------------------------------------------------------------------------
# stress

@pytest.mark.stress
@pytest.mark.parametrize("lk", ["default", "np.Lock"])
def test_stress_ping_pong_wait_returns_true(lk):
    # Two threads alternate notify()/wait() while holding the lock; each wait
    # must return True (notified), never time out: no lost wakeup.
    rounds = max(1000, int(100000 * SCALE))
    cond = make_cond(lk)
    failures = []
    ready = threading.Event()
    done = []

    def responder():
        with cond:
            ready.set()
            for i in range(rounds):
                if cond.wait(HANG_TIMEOUT) is not True:
                    failures.append(("responder", i))
                    return
                cond.notify()
        done.append("responder")

    t = start_thread(responder)
    assert ready.wait(HANG_TIMEOUT)
    with cond:  # the responder is waiting once we hold the lock
        for i in range(rounds):
            cond.notify()
            if cond.wait(HANG_TIMEOUT) is not True:
                failures.append(("initiator", i))
                break
    join_all([t], timeout=HANG_TIMEOUT)
    assert failures == []
    assert done == ["responder"]


@pytest.mark.stress
def test_stress_ping_pong_wait_for():
    rounds = max(1000, int(100000 * SCALE))
    cond = np.Condition()
    state = {"seq": 0}
    failures = []

    def player(parity):
        with cond:
            for i in range(rounds):
                if not cond.wait_for(lambda: state["seq"] % 2 == parity, HANG_TIMEOUT):
                    failures.append((parity, i, state["seq"]))
                    cond.notify_all()
                    return
                state["seq"] += 1
                cond.notify()

    threads = [start_thread(player, 0), start_thread(player, 1)]
    join_all(threads, timeout=300)
    assert failures == []
    assert state["seq"] == 2 * rounds


@pytest.mark.stress
@pytest.mark.parametrize("lk", ["default", "np.Lock"])
def test_stress_bounded_producer_consumer(lk):
    lock = LOCK_FACTORIES[lk]()
    if lock is None:
        lock = np.RLock()
    not_full = np.Condition(lock)
    not_empty = np.Condition(lock)
    capacity = 4
    n_producers, n_consumers = 4, 3
    per_producer = max(500, int(10000 * SCALE))
    buf = collections.deque()
    consumed = [[] for _ in range(n_consumers)]
    failures = []

    def producer(p):
        for i in range(per_producer):
            with not_full:
                if not not_full.wait_for(lambda: len(buf) < capacity, HANG_TIMEOUT):
                    failures.append(("producer timeout", p, i))
                    return
                buf.append(p * per_producer + i)
                not_empty.notify()

    def consumer(c):
        while True:
            with not_empty:
                if not not_empty.wait_for(lambda: buf, HANG_TIMEOUT):
                    failures.append(("consumer timeout", c))
                    return
                item = buf.popleft()
                not_full.notify()
            if item is None:
                return
            consumed[c].append(item)

    consumers = [start_thread(consumer, c) for c in range(n_consumers)]
    producers = [start_thread(producer, p) for p in range(n_producers)]
    join_all(producers, timeout=300)
    for _ in range(n_consumers):
        with not_full:
            assert not_full.wait_for(lambda: len(buf) < capacity, HANG_TIMEOUT)
            buf.append(None)
            not_empty.notify()
    join_all(consumers, timeout=HANG_TIMEOUT)
    assert failures == []
    allitems = sorted(x for part in consumed for x in part)
    assert allitems == list(range(n_producers * per_producer))
    assert not buf


@pytest.mark.stress
def test_stress_notify_one_hands_out_exact_tokens():
    # N waiters; tokens are handed out one notify(1) at a time. Every wait
    # wakes only when notified, and no token is lost or duplicated.
    cond = np.Condition()
    n_waiters = 6
    tokens = max(500, int(20000 * SCALE))
    state = {"avail": 0, "taken": 0, "stop": False}
    taken = [0] * n_waiters
    failures = []

    def waiter(k):
        with cond:
            while True:
                if not cond.wait_for(lambda: state["avail"] or state["stop"], HANG_TIMEOUT):
                    failures.append(("timeout", k))
                    return
                if state["avail"]:
                    state["avail"] -= 1
                    state["taken"] += 1
                    taken[k] += 1
                    cond.notify_all()  # tell the producer
                elif state["stop"]:
                    return

    threads = [start_thread(waiter, k) for k in range(n_waiters)]
    for i in range(tokens):
        with cond:
            state["avail"] += 1
            cond.notify(1)
            if i % 8 == 7:
                if not cond.wait_for(lambda: state["avail"] == 0, HANG_TIMEOUT):
                    failures.append(("producer timeout", i))
                    break
    with cond:
        assert cond.wait_for(lambda: state["avail"] == 0, HANG_TIMEOUT)
        state["stop"] = True
        cond.notify_all()
    join_all(threads, timeout=HANG_TIMEOUT)
    assert failures == []
    assert state["taken"] == tokens
    assert sum(taken) == tokens


@pytest.mark.stress
def test_stress_timeouts_racing_notifies_stay_consistent():
    # Waiters with tiny timeouts race notify(1); the lock is never lost,
    # each wait returns a bool, and every thread finishes.
    cond = np.Condition()
    n_waiters = 4
    rounds = max(200, int(3000 * SCALE))
    failures = []
    stop = threading.Event()

    def waiter():
        for i in range(rounds):
            with cond:
                r = cond.wait(0.0005 * (i % 4))
                if type(r) is not bool or not cond._is_owned():
                    failures.append(r)
                    return

    def notifier():
        while not stop.is_set():
            with cond:
                cond.notify(1)

    nt = start_thread(notifier)
    threads = [start_thread(waiter) for _ in range(n_waiters)]
    try:
        join_all(threads, timeout=300)
    finally:
        stop.set()
    join_all([nt])
    assert failures == []
    assert other_can_acquire(cond)
