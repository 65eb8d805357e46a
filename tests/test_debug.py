"""nativepool.debug: lock-order checking and dump_locks().

check_lock_order() records, per thread, which nativepool Lock/RLock objects
are held when another one is acquired; the first acquire that takes two locks
in the opposite order of an earlier acquisition (any thread) raises
LockOrderError before blocking (the lock is then not acquired) or, in "warn"
mode, emits LockOrderWarning once for the pair and proceeds.  A blocking
acquire of a Lock the same thread already holds is reported the same way.

dump_locks() lists every nativepool lock currently held: repr, owner thread
name and ident, number of waiters.

Every test is nativepool_only, and checking is always switched off again at
teardown so the rest of the suite is unaffected.  Two-thread "inversions" are
done sequentially (the first thread finishes before the second starts), so a
broken checker never produces a real deadlock; the few acquires that could
block forever when the checker is broken run in daemon threads with a bound.
"""
import importlib
import io
import os
import re
import threading
import warnings

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT

pytestmark = pytest.mark.nativepool_only

THIS_FILE = os.path.basename(__file__)


# --------------------------------------------------------------------------
# helpers

def _debug_module():
    return importlib.import_module(np.__name__ + ".debug")


@pytest.fixture
def dbg():
    """nativepool.debug, with lock-order checking off before and after."""
    d = _debug_module()
    d.check_lock_order(False)
    try:
        yield d
    finally:
        d.check_lock_order(False)


@pytest.fixture
def checking(dbg):
    """Lock-order checking on, in "raise" mode."""
    assert dbg.check_lock_order(True) is None
    return dbg


def addr(lock):
    """The stable part of a lock's repr (the rest, e.g. acquisitions=, changes)."""
    m = re.search(r"at (0x[0-9a-fA-F]+)", repr(lock))
    assert m, repr(lock)
    return m.group(1)


def assert_names(msg, *locks):
    for lock in locks:
        a = addr(lock)
        assert a.lower() in msg.lower(), (
            "the report does not name %r (no %s in it):\n%s" % (lock, a, msg))
        kind = type(lock).__name__          # "Lock" / "RLock"
        assert kind in msg, "no %r in the report:\n%s" % (kind, msg)


def held(lock):
    """Whether lock is held by anyone, without acquiring it (RLock has no
    locked() before 3.14; its repr says locked/unlocked)."""
    if hasattr(lock, "locked"):
        return lock.locked()
    m = re.search(r"\b(unlocked|locked)\b", repr(lock))
    assert m, repr(lock)
    return m.group(1) == "locked"


_SOURCE_LINES = None


def line_of(marker):
    """1-based line of this file holding the comment '# @marker' (unique)."""
    global _SOURCE_LINES
    if _SOURCE_LINES is None:
        with open(__file__, encoding="utf-8") as f:
            _SOURCE_LINES = f.read().splitlines()
    tag = "# @" + marker
    hits = [i + 1 for i, text in enumerate(_SOURCE_LINES)
            if text.rstrip().endswith(tag)]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def assert_locations(msg, *markers):
    for m in markers:
        loc = "%s:%d" % (THIS_FILE, line_of(m))
        assert loc in msg, "location %s (%s) missing from the report:\n%s" % (
            loc, m, msg)


def run_in_thread(fn, name=None, timeout=HANG_TIMEOUT):
    """Run fn() in a fresh (daemon) thread to completion; return its result or
    re-raise its exception."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "thread still running after %ss" % timeout
    if "error" in box:
        raise box["error"]
    return box.get("result")


def a_then_b(a, b):
    with a:
        with b:
            pass


LOCK_PAIRS = [
    pytest.param(lambda: np.Lock(), lambda: np.Lock(), id="Lock-Lock"),
    pytest.param(lambda: np.RLock(), lambda: np.RLock(), id="RLock-RLock"),
    pytest.param(lambda: np.Lock(), lambda: np.RLock(), id="Lock-RLock"),
    pytest.param(lambda: np.RLock(), lambda: np.Lock(), id="RLock-Lock"),
]


# --------------------------------------------------------------------------
# API surface

def test_api_types(dbg):
    assert issubclass(dbg.LockOrderError, RuntimeError)
    assert issubclass(dbg.LockOrderWarning, RuntimeWarning)
    assert callable(dbg.check_lock_order)
    assert callable(dbg.dump_locks)


@pytest.mark.parametrize("bad", ["ignore", "RAISE", "", None, 1])
def test_bad_on_violation_is_value_error(dbg, bad):
    with pytest.raises(ValueError):
        dbg.check_lock_order(True, on_violation=bad)


def test_on_violation_is_keyword_only(dbg):
    with pytest.raises(TypeError):
        dbg.check_lock_order(True, "raise")


def test_returns_none(dbg):
    assert dbg.check_lock_order(True, on_violation="warn") is None
    assert dbg.check_lock_order(True, on_violation="raise") is None
    assert dbg.check_lock_order(False) is None


# --------------------------------------------------------------------------
# inversions: "raise"

@pytest.mark.parametrize("make_a, make_b", LOCK_PAIRS)
def test_ab_ba_across_threads_raises(checking, make_a, make_b):
    A, B = make_a(), make_b()
    run_in_thread(lambda: a_then_b(A, B), name="first-order")
    assert not held(A) and not held(B)

    def b_then_a():
        B.acquire()
        try:
            with pytest.raises(checking.LockOrderError) as info:
                A.acquire()
            # the closing acquire was refused: A is not held, B still is
            assert not held(A)
            assert held(B)
            return str(info.value)
        finally:
            B.release()

    msg = run_in_thread(b_then_a, name="second-order")
    assert not held(A) and not held(B)
    assert_names(msg, A, B)
    # A really is free (nobody took it behind our back).
    assert A.acquire(blocking=False)
    A.release()


def test_ab_ba_thread_then_main_raises(checking):
    A, B = np.Lock(), np.Lock()
    run_in_thread(lambda: a_then_b(A, B))
    with B:
        with pytest.raises(checking.LockOrderError):
            A.acquire()
        assert not held(A)
        assert held(B)
    assert not held(B)


def test_same_thread_inversion_raises(checking):
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    B.acquire()
    try:
        with pytest.raises(checking.LockOrderError) as info:
            A.acquire()
        assert not held(A)
    finally:
        B.release()
    assert_names(str(info.value), A, B)


def test_inversion_through_with_statement(checking):
    A, B = np.RLock(), np.Lock()
    a_then_b(A, B)
    with pytest.raises(checking.LockOrderError):
        with B:
            with A:
                pytest.fail("the inverted 'with A' body ran")
    assert not held(A) and not held(B)


def test_inversion_with_lock_in_between(checking):
    # A is held (not innermost) when B is taken: still an A-before-B order.
    A, X, B = np.Lock(), np.Lock(), np.Lock()
    with A:
        with X:
            with B:
                pass
    with B:
        with pytest.raises(checking.LockOrderError):
            A.acquire()
        assert not held(A)


def test_timeout_acquire_also_checked(checking):
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    with B:
        with pytest.raises(checking.LockOrderError):
            A.acquire(timeout=5)
        assert not held(A)


def test_message_has_all_four_locations(checking):
    A, B = np.Lock(), np.Lock()

    def first():
        with A:  # @first-A
            with B:  # @first-B
                pass

    run_in_thread(first)
    B.acquire()  # @second-B
    try:
        with pytest.raises(checking.LockOrderError) as info:
            A.acquire()  # @second-A
    finally:
        B.release()
    msg = str(info.value)
    assert_names(msg, A, B)
    assert_locations(msg, "first-A", "first-B", "second-B", "second-A")


def test_error_leaves_checker_usable(checking):
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    with B:
        with pytest.raises(checking.LockOrderError):
            A.acquire()
    # the established order still works, and an unrelated pair too
    a_then_b(A, B)
    C, D = np.Lock(), np.Lock()
    a_then_b(C, D)
    a_then_b(C, D)
    assert not any(held(l) for l in (A, B, C, D))


# --------------------------------------------------------------------------
# inversions: "warn"

def test_warn_mode_warns_and_acquires(dbg):
    dbg.check_lock_order(True, on_violation="warn")
    A, B = np.Lock(), np.Lock()
    run_in_thread(lambda: a_then_b(A, B))
    B.acquire()  # @warn-B
    try:
        with pytest.warns(dbg.LockOrderWarning) as rec:
            A.acquire()  # @warn-A
        try:
            assert held(A), "warn mode must proceed and acquire"
        finally:
            A.release()
    finally:
        B.release()
    msgs = [str(w.message) for w in rec
            if issubclass(w.category, dbg.LockOrderWarning)]
    assert len(msgs) == 1, msgs
    assert_names(msgs[0], A, B)
    assert_locations(msgs[0], "warn-B", "warn-A")


def test_warn_mode_warns_once_per_pair(dbg):
    dbg.check_lock_order(True, on_violation="warn")
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a_then_b(B, A)          # first inversion: one warning
        a_then_b(B, A)          # the same pair again: nothing
        a_then_b(A, B)          # either order of that pair: nothing
        run_in_thread(lambda: None)
    got = [w for w in rec if issubclass(w.category, dbg.LockOrderWarning)]
    assert len(got) == 1, [str(w.message) for w in got]
    # a different pair is reported on its own
    C = np.Lock()
    a_then_b(A, C)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a_then_b(C, A)
    got = [w for w in rec if issubclass(w.category, dbg.LockOrderWarning)]
    assert len(got) == 1
    assert_names(str(got[0].message), A, C)


def test_switch_warn_to_raise(dbg):
    dbg.check_lock_order(True, on_violation="warn")
    dbg.check_lock_order(True, on_violation="raise")
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    with B:
        with pytest.raises(dbg.LockOrderError):
            A.acquire()
    assert not held(A)


# --------------------------------------------------------------------------
# self-deadlock

def _acquire_twice_in_thread(lock, second=None, **kwargs):
    """In a daemon thread: acquire lock, then blocking-acquire it again.
    Returns the exception of the second acquire (None if it succeeded).
    A hang (checker missing) is undone by releasing from here: a Lock has no
    owner, so any thread may release it."""
    box = {}
    first_done = threading.Event()

    def target():
        lock.acquire()  # @self-first
        first_done.set()
        try:
            if second is None:
                lock.acquire(**kwargs)  # @self-second
            else:
                second(lock)
            box["second"] = "acquired"
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    assert first_done.wait(HANG_TIMEOUT)
    t.join(5.0)
    if t.is_alive():
        lock.release()             # unblock the stuck thread
        t.join(HANG_TIMEOUT)
        if held(lock):
            lock.release()
        pytest.fail("blocking re-acquire of a held Lock was not reported: "
                    "the thread deadlocked on itself")
    return box


def test_self_deadlock_lock_raises(checking):
    L = np.Lock()
    box = _acquire_twice_in_thread(L)
    assert "second" not in box
    exc = box.get("error")
    assert isinstance(exc, checking.LockOrderError), exc
    # still held once (by the first acquire), not twice
    assert held(L)
    L.release()
    assert not held(L)
    msg = str(exc)
    assert_names(msg, L)
    assert_locations(msg, "self-first", "self-second")


def test_self_deadlock_lock_with_statement(checking):
    L = np.Lock()

    def second(lock):
        with lock:
            pytest.fail("re-entered a held Lock")

    box = _acquire_twice_in_thread(L, second=second)
    assert "second" not in box
    assert isinstance(box.get("error"), checking.LockOrderError), box
    assert held(L)
    L.release()
    assert not held(L)


def test_nonblocking_reacquire_not_reported(checking):
    L = np.Lock()
    with L:
        assert L.acquire(blocking=False) is False
        assert L.acquire(False) is False
    assert not held(L)


# --------------------------------------------------------------------------
# no false reports

def test_rlock_reentry_not_reported(checking):
    R = np.RLock()
    with R:
        with R:
            assert R.acquire()
            assert R.acquire(timeout=1)
            R.release()
            R.release()
    assert not held(R)


def test_rlock_reentry_under_other_lock_not_reported(checking):
    # R, then A, then R again (re-entry): R is already ours, not an A->R order.
    R, A = np.RLock(), np.Lock()
    for _ in range(3):
        with R:
            with A:
                with R:
                    pass
    run_in_thread(lambda: a_then_b(R, A))
    assert not held(R) and not held(A)


def test_consistent_order_never_reported(checking):
    A, B, C = np.Lock(), np.RLock(), np.Lock()

    def worker():
        for _ in range(200):
            with A:
                with B:
                    with C:
                        pass
            with A:
                with C:
                    pass
            with B:
                with C:
                    pass

    threads = [threading.Thread(target=lambda: box.append(run_safely(worker)),
                                daemon=True) for _ in range(4)]
    box = []
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert box == [None] * 4, box
    assert not any(held(l) for l in (A, B, C))


def run_safely(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return exc
    return None


def test_release_out_of_order_is_fine(checking):
    A, B, C = np.Lock(), np.Lock(), np.Lock()
    for _ in range(3):
        A.acquire()
        B.acquire()
        A.release()             # not LIFO
        C.acquire()             # only B is held here: B->C, not A->C
        B.release()
        C.release()
    # C then A is consistent with everything above (A was released before C).
    with C:
        with A:
            pass
    assert not any(held(l) for l in (A, B, C))


def test_sequential_unnested_use_not_reported(checking):
    A, B = np.Lock(), np.Lock()
    for _ in range(5):
        with A:
            pass
        with B:
            pass
        with B:
            pass
        with A:
            pass


def test_lock_released_by_other_thread_not_false_report(checking):
    # A Lock acquired in one thread and released by another is legal.
    A, B = np.Lock(), np.Lock()
    A.acquire()
    run_in_thread(A.release)
    assert not held(A)
    # main no longer holds A: B then A must not be an inversion of anything,
    # and A then B afterwards is just the same order.
    with B:
        with A:
            pass


CONDITIONS = [
    pytest.param(lambda: np.Condition(), id="np.Condition()"),
    pytest.param(lambda: np.Condition(np.Lock()), id="np.Condition(Lock)"),
    pytest.param(lambda: np.Condition(np.RLock()), id="np.Condition(RLock)"),
    pytest.param(lambda: threading.Condition(np.Lock()), id="threading.Condition(Lock)"),
    pytest.param(lambda: threading.Condition(np.RLock()), id="threading.Condition(RLock)"),
]


@pytest.mark.parametrize("make_cond", CONDITIONS)
def test_condition_wait_no_false_report(checking, make_cond):
    cond = make_cond()
    A = np.Lock()
    with cond:
        cond.notify()              # _is_owned on a plain Lock: acquire(False)
        assert cond.wait(0.01) is False   # releases and re-acquires the lock
        cond.notify_all()
    # Nothing is held now.  A then the condition's lock (A -> C), with a wait
    # that re-acquires C while A is held: consistent, never reported.
    with A:
        with cond:
            cond.wait(0.01)
            cond.notify()
    with A:
        with cond:
            pass
    assert not held(A)


@pytest.mark.parametrize("make_cond", CONDITIONS)
def test_condition_wait_keeps_tracking(checking, make_cond):
    # After waits, a genuine inversion of A -> cond lock is still caught.
    cond = make_cond()
    A = np.Lock()
    with A:
        with cond:
            cond.wait(0.01)
    with cond:
        cond.wait(0.01)
        with pytest.raises(checking.LockOrderError):
            A.acquire()
        assert not held(A)


@pytest.mark.parametrize("make_cond", CONDITIONS)
def test_condition_producer_consumer_no_report(checking, make_cond):
    cond = make_cond()
    outer = np.Lock()
    items = []
    n = 200
    errors = []

    def consumer():
        got = 0
        while got < n:
            with outer:
                with cond:          # outer -> cond, always (no wait here)
                    pass
            with cond:
                while not items:
                    cond.wait(HANG_TIMEOUT)
                items.pop()
                got += 1
                cond.notify()

    def producer():
        for i in range(n):
            with outer:
                with cond:          # outer -> cond, with a re-acquiring wait
                    cond.wait(0)
            with cond:
                while items:
                    cond.wait(HANG_TIMEOUT)
                items.append(i)
                cond.notify()

    threads = [threading.Thread(target=lambda f=f: errors.append(run_safely(f)),
                                daemon=True) for f in (consumer, producer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "producer/consumer hung"
    assert errors == [None, None], errors


# --------------------------------------------------------------------------
# turning it off

def test_disabled_by_default_in_fixture_nothing_reported(dbg):
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a_then_b(B, A)
    assert not [w for w in rec if issubclass(w.category, dbg.LockOrderWarning)]


def test_disable_stops_reports(dbg):
    dbg.check_lock_order(True)
    A, B = np.Lock(), np.Lock()
    a_then_b(A, B)
    dbg.check_lock_order(False)
    a_then_b(B, A)              # no error
    L = np.Lock()
    L.acquire()
    assert L.acquire(timeout=0.05) is False   # plain timeout, no report
    L.release()
    dbg.check_lock_order(True, on_violation="warn")
    dbg.check_lock_order(False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a_then_b(A, B)
        a_then_b(B, A)
    assert not [w for w in rec if issubclass(w.category, dbg.LockOrderWarning)]


def test_disable_forgets_recorded_order(dbg):
    A, B = np.Lock(), np.Lock()
    dbg.check_lock_order(True)
    run_in_thread(lambda: a_then_b(A, B))
    a_then_b(A, B)
    dbg.check_lock_order(False)
    dbg.check_lock_order(True)
    a_then_b(B, A)              # the A->B order was forgotten
    with A:
        with pytest.raises(dbg.LockOrderError):
            B.acquire()         # but B->A is now the recorded order
        assert not held(B)


# --------------------------------------------------------------------------
# environment variable (fresh interpreters)

ENV_SCRIPT = """
import warnings
dbg = _il.import_module(np.__name__ + '.debug')
A, B = np.Lock(), np.Lock()
t = _th.Thread(target=lambda: [A.acquire(), B.acquire(), B.release(), A.release()])
t.start(); t.join()
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter('always')
    B.acquire()
    try:
        A.acquire()
        out('ACQUIRED', A.locked())
        A.release()
    except dbg.LockOrderError as exc:
        out('ERROR', A.locked())
    finally:
        B.release()
for w in rec:
    if issubclass(w.category, dbg.LockOrderWarning):
        out('WARNING')
out('DONE')
"""


@pytest.mark.parametrize("value", ["1", "raise"])
def test_env_var_raise(value):
    r = run_script(ENV_SCRIPT, env={"NATIVEPOOL_CHECK_LOCK_ORDER": value})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["ERROR False", "DONE"], (r.stdout, r.stderr)


def test_env_var_warn():
    r = run_script(ENV_SCRIPT, env={"NATIVEPOOL_CHECK_LOCK_ORDER": "warn"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ACQUIRED", "True", "WARNING", "DONE"], (
        r.stdout, r.stderr)


def test_env_var_unset_means_off(monkeypatch):
    monkeypatch.delenv("NATIVEPOOL_CHECK_LOCK_ORDER", raising=False)
    r = run_script(ENV_SCRIPT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ACQUIRED", "True", "DONE"], (r.stdout, r.stderr)


def test_env_var_can_be_switched_off():
    r = run_script("""
        dbg = _il.import_module(np.__name__ + '.debug')
        dbg.check_lock_order(False)
        A, B = np.Lock(), np.Lock()
        with A:
            with B:
                pass
        with B:
            with A:
                out('OK')
    """, env={"NATIVEPOOL_CHECK_LOCK_ORDER": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["OK"]


# --------------------------------------------------------------------------
# dump_locks

def _dump_has(text, lock):
    return addr(lock).lower() in text.lower()


def test_dump_locks_in_process(dbg):
    L, R, free = np.Lock(), np.RLock(), np.Lock()
    L.acquire()
    try:
        text = dbg.dump_locks()
        assert isinstance(text, str)
        assert _dump_has(text, L), text
        assert not _dump_has(text, free), text
        assert not _dump_has(text, R), text
    finally:
        L.release()
    text = dbg.dump_locks()
    assert not _dump_has(text, L), text


def test_dump_locks_owner_name_and_ident(dbg):
    R, L = np.RLock(), np.Lock()
    held, done = threading.Event(), threading.Event()
    info = {}

    def holder():
        info["ident"] = threading.get_ident()
        with R:
            with R:
                with L:
                    held.set()
                    done.wait(HANG_TIMEOUT)

    t = threading.Thread(target=holder, name="np-dump-holder-7", daemon=True)
    t.start()
    try:
        assert held.wait(HANG_TIMEOUT)
        text = dbg.dump_locks()
    finally:
        done.set()
        t.join(HANG_TIMEOUT)
    assert _dump_has(text, R) and _dump_has(text, L), text
    assert "np-dump-holder-7" in text, text
    assert str(info["ident"]) in text, text
    assert "RLock" in text and "Lock" in text
    # released: gone
    text = dbg.dump_locks()
    assert not _dump_has(text, R) and not _dump_has(text, L), text


def test_dump_locks_writes_to_file(dbg):
    L = np.Lock()

    class Sink:
        def __init__(self):
            self.parts = []

        def write(self, s):
            self.parts.append(s)
            return len(s)

    with L:
        buf = io.StringIO()
        text = dbg.dump_locks(file=buf)
        sink = Sink()
        text2 = dbg.dump_locks(sink)
    assert _dump_has(text, L)
    assert text in buf.getvalue()
    assert text2 in "".join(sink.parts)
    assert _dump_has("".join(sink.parts), L)


def test_dump_locks_works_with_checking_on(checking):
    L = np.Lock()
    with L:
        text = checking.dump_locks()
    assert _dump_has(text, L)


def test_dump_locks_deadlock_subprocess():
    r = run_script("""
        import time
        dbg = _il.import_module(np.__name__ + '.debug')
        A, B = np.Lock(), np.Lock()
        unused = np.Lock()
        start = _th.Barrier(2)
        def ab():
            with A:
                start.wait()
                if B.acquire(timeout=60):
                    B.release()
        def ba():
            with B:
                start.wait()
                if A.acquire(timeout=60):
                    A.release()
        t1 = _th.Thread(target=ab, name='deadlock-AB', daemon=True)
        t2 = _th.Thread(target=ba, name='deadlock-BA', daemon=True)
        t1.start(); t2.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if 'waiters=1' in repr(A) and 'waiters=1' in repr(B):
                break
            time.sleep(0.01)
        else:
            out('NOT-DEADLOCKED', repr(A), repr(B))
        import re
        def addr(l):
            return re.search(r'at (0x[0-9a-fA-F]+)', repr(l)).group(1)
        text = dbg.dump_locks()
        out('A', addr(A)); out('B', addr(B)); out('U', addr(unused))
        out('I1', t1.ident); out('I2', t2.ident)
        out('---')
        out(text)
        _sys.stdout.flush()
        _os._exit(0)
    """, timeout=90)
    assert r.returncode == 0, r.stderr
    head, _, text = r.stdout.partition("---\n")
    assert "NOT-DEADLOCKED" not in head, head
    vals = dict(line.split(" ", 1) for line in head.splitlines())
    low = text.lower()
    assert vals["A"].lower() in low, text
    assert vals["B"].lower() in low, text
    assert vals["U"].lower() not in low, text
    assert "deadlock-AB" in text and "deadlock-BA" in text, text
    assert vals["I1"] in text and vals["I2"] in text, text
    assert text.count("waiters=1") >= 2, text
    # where a lock's repr and a thread name share a line, it is the owner's
    for key, owner, other in (("A", "deadlock-AB", "deadlock-BA"),
                              ("B", "deadlock-BA", "deadlock-AB")):
        lines = [ln for ln in text.splitlines() if vals[key].lower() in ln.lower()]
        assert lines, text
        for ln in lines:
            assert other not in ln or owner in ln, (
                "%s's entry names %s but not its owner %s:\n%s" % (key, other, owner, text))
