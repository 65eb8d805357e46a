"""nativepool.Barrier: drop-in for threading.Barrier.

Tests not marked ``nativepool_only`` also pass against the stdlib (run with
NATIVEPOOL_TEST_MODULE pointing at a module re-exporting threading's Barrier
and BrokenBarrierError). Blocking calls that could hang the run (GIL, Ctrl-C)
run in subprocesses; every wait in this process is bounded, and time is only a
hang bound or a lower bound for a timeout, never a speed check.
"""
import collections
import os
import sys
import threading
import time

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT, start_thread, join_all

PY = sys.version_info[:2]
SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))

BBE = threading.BrokenBarrierError


# --------------------------------------------------------------------------
# helpers


class Party:
    """A thread calling barrier.wait(*args) once; records result or exception."""

    def __init__(self, barrier, *args, **kwargs):
        self.barrier = barrier
        self.args = args
        self.kwargs = kwargs
        self.result = None
        self.error = None
        self.ident = None
        self.started = threading.Event()
        self.done = threading.Event()
        self.thread = start_thread(self._run)

    def _run(self):
        self.ident = threading.get_ident()
        self.started.set()
        try:
            self.result = self.barrier.wait(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        finally:
            self.done.set()

    def join(self, timeout=HANG_TIMEOUT):
        join_all([self.thread], timeout)
        return self


def arrive(barrier, n, *args, **kwargs):
    """Start n parties and wait until all n are counted as waiting."""
    parties = []
    for i in range(n):
        parties.append(Party(barrier, *args, **kwargs))
        # one at a time, so n_waiting grows deterministically
        assert wait_until(lambda: barrier.n_waiting == i + 1), (
            "n_waiting is %d, expected %d" % (barrier.n_waiting, i + 1))
    return parties


def join_parties(parties, timeout=HANG_TIMEOUT):
    join_all([p.thread for p in parties], timeout)
    return parties


# --------------------------------------------------------------------------
# construction and properties

def test_broken_barrier_error_is_threadings():
    assert np.BrokenBarrierError is threading.BrokenBarrierError
    assert issubclass(np.BrokenBarrierError, RuntimeError)


@pytest.mark.parametrize("parties", [1, 2, 3, 7])
def test_properties_initial(parties):
    b = np.Barrier(parties)
    assert b.parties == parties
    assert b.n_waiting == 0
    assert b.broken is False


def test_constructor_keywords():
    calls = []
    b = np.Barrier(parties=1, action=lambda: calls.append(1), timeout=5.0)
    assert b.parties == 1
    assert b.wait() == 0
    assert calls == [1]
    b = np.Barrier(2, None, None)
    assert b.parties == 2


def test_properties_are_read_only():
    b = np.Barrier(2)
    for name, value in (("parties", 3), ("n_waiting", 1), ("broken", True)):
        with pytest.raises(AttributeError):
            setattr(b, name, value)
    assert b.parties == 2 and b.n_waiting == 0 and b.broken is False


_VALUE_MARKS = [pytest.mark.nativepool_only] if PY < (3, 13) else []


@pytest.mark.parametrize("parties", [pytest.param(p, marks=_VALUE_MARKS) for p in (0, -1, -5)])
def test_parties_below_one_is_valueerror(parties):
    with pytest.raises(ValueError):
        np.Barrier(parties)
    with pytest.raises(ValueError):
        np.Barrier(parties, action=lambda: None, timeout=1)


# --------------------------------------------------------------------------
# one round, several rounds

def test_single_party_returns_immediately():
    calls = []
    b = np.Barrier(1, action=lambda: calls.append(threading.get_ident()))
    for _ in range(5):
        assert b.wait() == 0
        assert b.wait(HANG_TIMEOUT) == 0
        assert b.wait(timeout=0) == 0  # last arriver never waits
    assert calls == [threading.get_ident()] * 15
    assert b.n_waiting == 0 and b.broken is False


@pytest.mark.parametrize("parties", [2, 3, 5, 16])
def test_one_round_distinct_indices(parties):
    b = np.Barrier(parties)
    ps = [Party(b, HANG_TIMEOUT) for _ in range(parties)]
    join_parties(ps)
    assert [p.error for p in ps] == [None] * parties
    assert sorted(p.result for p in ps) == list(range(parties))
    assert b.n_waiting == 0
    assert b.broken is False


def test_wait_blocks_until_last_party_arrives():
    b = np.Barrier(3)
    ps = arrive(b, 2, HANG_TIMEOUT)
    time.sleep(0.1)
    assert not any(p.done.is_set() for p in ps)
    assert b.n_waiting == 2
    # the last arriver (this thread) releases everybody and gets its own index
    idx = b.wait(HANG_TIMEOUT)
    join_parties(ps)
    assert sorted([idx] + [p.result for p in ps]) == [0, 1, 2]
    assert b.n_waiting == 0
    assert b.broken is False


def test_untimed_wait():
    b = np.Barrier(2)
    p = Party(b)
    assert wait_until(lambda: b.n_waiting == 1)
    assert b.wait() in (0, 1)
    p.join()
    assert p.error is None and p.result in (0, 1)


def test_reuse_many_rounds():
    b = np.Barrier(3)
    for r in range(50):
        ps = [Party(b, HANG_TIMEOUT) for _ in range(2)]
        me = b.wait(HANG_TIMEOUT)
        join_parties(ps)
        assert sorted([me] + [p.result for p in ps]) == [0, 1, 2], r
        assert b.n_waiting == 0


def test_more_threads_than_parties():
    # 12 threads on a Barrier(3): four rounds, every index handed out 4 times
    b = np.Barrier(3)
    ps = [Party(b, HANG_TIMEOUT) for _ in range(12)]
    join_parties(ps)
    assert [p.error for p in ps] == [None] * 12
    assert collections.Counter(p.result for p in ps) == {0: 4, 1: 4, 2: 4}
    assert b.n_waiting == 0 and not b.broken


def test_n_waiting_counts_blocked_parties():
    b = np.Barrier(4)
    ps = arrive(b, 3, HANG_TIMEOUT)
    assert b.n_waiting == 3
    assert b.wait(HANG_TIMEOUT) in range(4)
    join_parties(ps)
    assert b.n_waiting == 0


# --------------------------------------------------------------------------
# action

def test_action_runs_once_per_round_in_a_participant_before_release():
    parties = 4
    current = []
    calls = []

    def action():
        calls.append((threading.get_ident(), sum(p.done.is_set() for p in current)))

    b = np.Barrier(parties, action=action)
    for r in range(5):
        del current[:]
        for _ in range(parties):
            current.append(Party(b, HANG_TIMEOUT))
        join_parties(current)
        assert len(calls) == r + 1
        ident, n_released = calls[-1]
        assert ident in {p.ident for p in current}, (
            "the action did not run in a participating thread")
        assert n_released == 0, "a party was released before the action ran"
        assert [p.error for p in current] == [None] * parties
        assert sorted(p.result for p in current) == list(range(parties))


def test_action_sees_all_parties_still_blocked():
    parties = 3
    b_ref = {}
    returned = []
    seen = []

    def action():
        time.sleep(0.05)  # give a prematurely released party time to show up
        seen.append((len(returned), b_ref["b"].broken))

    b = np.Barrier(parties, action=action)
    b_ref["b"] = b

    def runner():
        idx = b.wait(HANG_TIMEOUT)
        returned.append(idx)

    threads = [start_thread(runner) for _ in range(parties)]
    join_all(threads)
    assert seen == [(0, False)]
    assert sorted(returned) == [0, 1, 2]


def test_action_exception_breaks_barrier():
    class Boom(Exception):
        pass

    ran_in = []

    def action():
        ran_in.append(threading.get_ident())
        raise Boom("in action")

    b = np.Barrier(3, action=action)
    ps = [Party(b, HANG_TIMEOUT) for _ in range(3)]
    join_parties(ps)
    assert len(ran_in) == 1
    raiser = [p for p in ps if p.ident == ran_in[0]]
    assert len(raiser) == 1
    assert isinstance(raiser[0].error, Boom), raiser[0].error
    others = [p for p in ps if p is not raiser[0]]
    for p in others:
        assert type(p.error) is BBE, p.error
    assert b.broken is True
    assert b.n_waiting == 0
    # stays broken for later callers, without blocking
    with pytest.raises(BBE):
        b.wait(HANG_TIMEOUT)
    with pytest.raises(BBE):
        b.wait()
    assert len(ran_in) == 1
    # reset makes it usable again (the action raises again, though)
    b.reset()
    assert b.broken is False


def test_action_exception_then_reset_and_reuse():
    state = {"fail": True}
    calls = []

    def action():
        calls.append(1)
        if state["fail"]:
            raise KeyError("once")

    b = np.Barrier(2, action=action)
    p = Party(b, HANG_TIMEOUT)
    assert wait_until(lambda: b.n_waiting == 1)
    with pytest.raises(KeyError):  # this thread arrives last and runs the action
        b.wait(HANG_TIMEOUT)
    p.join()
    assert type(p.error) is BBE
    assert b.broken
    b.reset()
    state["fail"] = False
    ps = [Party(b, HANG_TIMEOUT) for _ in range(2)]
    join_parties(ps)
    assert sorted(x.result for x in ps) == [0, 1]
    assert len(calls) == 2
    assert not b.broken


def test_base_exception_in_action_breaks_barrier():
    class Stop(BaseException):
        pass

    def action():
        raise Stop()

    b = np.Barrier(2, action=action)
    p = Party(b, HANG_TIMEOUT)
    assert wait_until(lambda: b.n_waiting == 1)
    with pytest.raises(Stop):
        b.wait(HANG_TIMEOUT)
    p.join()
    assert type(p.error) is BBE
    assert b.broken


# --------------------------------------------------------------------------
# timeouts

def test_per_call_timeout_breaks_barrier():
    b = np.Barrier(3)
    waiting = Party(b, HANG_TIMEOUT)
    assert wait_until(lambda: b.n_waiting == 1)
    t0 = time.monotonic()
    with pytest.raises(BBE):
        b.wait(0.1)
    assert time.monotonic() - t0 >= 0.08
    waiting.join()
    assert type(waiting.error) is BBE  # the other waiter was woken by the break
    assert b.broken is True
    assert b.n_waiting == 0
    with pytest.raises(BBE):
        b.wait(HANG_TIMEOUT)


def test_untimed_waiter_woken_by_other_partys_timeout():
    b = np.Barrier(3)
    untimed = Party(b)
    assert wait_until(lambda: b.n_waiting == 1)
    timed = Party(b, timeout=0.1)
    timed.join()
    untimed.join()
    assert type(timed.error) is BBE
    assert type(untimed.error) is BBE
    assert b.broken


def test_default_timeout_breaks_barrier():
    b = np.Barrier(2, timeout=0.1)
    t0 = time.monotonic()
    with pytest.raises(BBE):
        b.wait()
    assert time.monotonic() - t0 >= 0.08
    assert b.broken
    b.reset()
    assert not b.broken
    with pytest.raises(BBE):
        b.wait(None)  # None means "use the default"
    assert b.broken


def test_per_call_timeout_overrides_default():
    b = np.Barrier(2, timeout=0.05)
    p = Party(b, HANG_TIMEOUT)
    assert wait_until(lambda: b.n_waiting == 1)
    time.sleep(0.3)  # far past the default timeout
    assert not p.done.is_set()
    assert b.broken is False
    assert b.wait() in (0, 1)  # last arriver: releases without waiting
    p.join()
    assert p.error is None and {p.result, 1 - p.result} == {0, 1}
    assert not b.broken


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5])
def test_nonpositive_timeout_breaks_immediately(timeout):
    b = np.Barrier(2)
    with pytest.raises(BBE):
        b.wait(timeout)
    assert b.broken
    assert b.n_waiting == 0


def test_default_timeout_nonpositive():
    b = np.Barrier(2, timeout=0)
    with pytest.raises(BBE):
        b.wait()
    assert b.broken


def test_timeout_not_hit_when_round_completes():
    b = np.Barrier(3, timeout=HANG_TIMEOUT)
    ps = [Party(b, 5.0) for _ in range(3)]
    join_parties(ps)
    assert sorted(p.result for p in ps) == [0, 1, 2]
    assert not b.broken


def test_wait_bad_timeout_type():
    std = threading.Barrier(2)
    try:
        std.wait("1")
    except Exception as exc:  # noqa: BLE001
        etype = type(exc)
    else:
        raise AssertionError("the stdlib accepted a str timeout")
    b = np.Barrier(2)
    with pytest.raises(etype):
        b.wait("1")


# --------------------------------------------------------------------------
# abort / reset

def test_abort_wakes_waiters_and_breaks():
    b = np.Barrier(4)
    ps = arrive(b, 3, HANG_TIMEOUT)
    assert b.abort() is None
    join_parties(ps)
    assert [type(p.error) for p in ps] == [BBE] * 3
    assert b.broken is True
    assert b.n_waiting == 0
    with pytest.raises(BBE):
        b.wait(HANG_TIMEOUT)
    with pytest.raises(BBE):
        b.wait()
    b.abort()  # idempotent
    assert b.broken


def test_abort_idle_barrier():
    b = np.Barrier(2)
    b.abort()
    assert b.broken
    with pytest.raises(BBE):
        b.wait()
    b.reset()
    assert not b.broken
    ps = [Party(b, HANG_TIMEOUT) for _ in range(2)]
    join_parties(ps)
    assert sorted(p.result for p in ps) == [0, 1]


def test_reset_while_waiting_raises_and_barrier_stays_usable():
    b = np.Barrier(3)
    ps = arrive(b, 2, HANG_TIMEOUT)
    assert b.reset() is None
    join_parties(ps)
    assert [type(p.error) for p in ps] == [BBE, BBE]
    assert b.broken is False
    assert b.n_waiting == 0
    # a full new round works
    ps = [Party(b, HANG_TIMEOUT) for _ in range(3)]
    join_parties(ps)
    assert [p.error for p in ps] == [None] * 3
    assert sorted(p.result for p in ps) == [0, 1, 2]


def test_reset_then_immediate_new_round():
    # parties arriving right after reset() (while the old ones may still be
    # leaving) form a correct new round
    b = np.Barrier(2)
    old = arrive(b, 1, HANG_TIMEOUT)
    b.reset()
    new = [Party(b, HANG_TIMEOUT) for _ in range(2)]
    join_parties(old + new)
    assert type(old[0].error) is BBE
    assert [p.error for p in new] == [None, None]
    assert sorted(p.result for p in new) == [0, 1]
    assert not b.broken


def test_reset_idle_and_broken_barrier():
    b = np.Barrier(2)
    b.reset()
    assert not b.broken and b.n_waiting == 0
    with pytest.raises(BBE):
        b.wait(0.01)
    assert b.broken
    b.reset()
    assert not b.broken
    ps = [Party(b, HANG_TIMEOUT) for _ in range(2)]
    join_parties(ps)
    assert sorted(p.result for p in ps) == [0, 1]


def test_reset_after_abort_with_waiters():
    b = np.Barrier(3)
    ps = arrive(b, 2, HANG_TIMEOUT)
    b.abort()
    join_parties(ps)
    b.reset()
    assert not b.broken
    ps = [Party(b, HANG_TIMEOUT) for _ in range(3)]
    join_parties(ps)
    assert sorted(p.result for p in ps) == [0, 1, 2]


def test_wait_after_timeout_break_then_reset():
    b = np.Barrier(2, timeout=0.05)
    with pytest.raises(BBE):
        b.wait()
    b.reset()
    p = Party(b)  # default timeout 0.05 applies: will break again alone
    p.join()
    assert type(p.error) is BBE
    b.reset()
    ps = [Party(b, HANG_TIMEOUT) for _ in range(2)]
    join_parties(ps)
    assert sorted(p.result for p in ps) == [0, 1]


# --------------------------------------------------------------------------
# GIL released while blocked; Ctrl-C interrupts the main thread

BLOCKING_CASES = {
    "wait": "b.wait()",
    "wait_timeout": "b.wait(60)",
    "wait_timeout_kw": "b.wait(timeout=60)",
    "wait_default_timeout": "b.wait()",
}
CASE_ARGS = {"wait_default_timeout": ", timeout=60"}

GIL_SCRIPT = """
import threading, time
b = np.Barrier(2%(args)s)
state = {"started": False, "done": False, "result": None}
def blocker():
    state["started"] = True
    state["result"] = %(block)s
    state["done"] = True
t = threading.Thread(target=blocker, daemon=True)
t.start()
while b.n_waiting < 1:
    time.sleep(0.001)
time.sleep(0.2)
n = 0
for i in range(300000):   # pure Python: needs the GIL
    n += 1
out("progress", n, "blocker_still_blocked", not state["done"])
mine = b.wait(30)
t.join(30)
out("result", sorted([mine, state["result"]]), "alive", t.is_alive())
"""


@pytest.mark.parametrize("case", sorted(BLOCKING_CASES))
def test_blocking_wait_releases_gil(case):
    proc = run_script(GIL_SCRIPT % dict(block=BLOCKING_CASES[case],
                                        args=CASE_ARGS.get(case, "")), timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "progress 300000 blocker_still_blocked True" in proc.stdout, (
        "the blocked call did not let another thread run", proc.stdout, proc.stderr)
    assert "result [0, 1] alive False" in proc.stdout, (proc.stdout, proc.stderr)


SIGINT_SCRIPT = """
import os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
b = np.Barrier(3%(args)s)
# another party is already waiting (index 0)
res = []
def party():
    try:
        res.append(b.wait(60))
    except Exception as exc:
        res.append(type(exc).__name__)
p1 = threading.Thread(target=party); p1.start()
while b.n_waiting < 1:
    time.sleep(0.001)
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
# as threading.Barrier: the interrupted party left, the barrier is intact
out("state", b.broken, b.n_waiting)
p2 = threading.Thread(target=party); p2.start()
while b.n_waiting < 2 and p2.is_alive():
    time.sleep(0.001)
mine = b.wait(30)
p1.join(30); p2.join(30)
out("round", sorted(res + [mine]))
out("after ok")
"""

SIGINT_CASES = {
    "wait": ("", "b.wait()"),
    "wait_timeout": ("", "b.wait(600)"),
    "wait_default_timeout": (", timeout=600", "b.wait()"),
}


@pytest.mark.parametrize("case", sorted(SIGINT_CASES))
def test_sigint_interrupts_wait(case):
    args, stmt = SIGINT_CASES[case]
    proc = run_script(SIGINT_SCRIPT % dict(args=args, stmt=stmt), timeout=60)
    out = proc.stdout
    assert "caught KeyboardInterrupt" in out, (out, proc.stderr)
    delay = float(out.split("caught KeyboardInterrupt after ")[1].split()[0])
    assert delay < 10.0, "KeyboardInterrupt only %.1f s after SIGINT" % delay
    assert "state False 1" in out, (out, proc.stderr)
    assert "round [0, 1, 2]" in out, (out, proc.stderr)
    assert "after ok" in out, (out, proc.stderr)
    assert proc.returncode == 0, (out, proc.stderr)


SIGINT_BEHIND_ACTION_SCRIPT = """
import os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
finish = threading.Event()
b = np.Barrier(2, action=lambda: finish.wait(30))
res = []
def party():
    res.append(b.wait(60))
ts = [threading.Thread(target=party) for _ in range(2)]
for t in ts: t.start()
while b.n_waiting < 1 and not res:
    time.sleep(0.001)
time.sleep(0.3)   # the second party arrived and runs the (long) action
kicked = []
def kick():
    kicked.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
timer = threading.Timer(0.5, kick)
try:
    timer.start()
    r = b.wait(60)   # a third arrival: waits for the round to drain
    out("returned without interrupt", r)
except KeyboardInterrupt:
    out("caught KeyboardInterrupt after %.3f" % (time.monotonic() - kicked[0]))
timer.join(30)
finish.set()
for t in ts: t.join(30)
out("round", sorted(res), b.broken, b.n_waiting)
out("after ok")
"""


def test_sigint_interrupts_wait_blocked_behind_running_action():
    # The main thread arrives while another round's action is running (the
    # stdlib holds the barrier's lock across the action). Ctrl-C must still
    # interrupt it promptly, without disturbing the round in progress.
    proc = run_script(SIGINT_BEHIND_ACTION_SCRIPT, timeout=90)
    out = proc.stdout
    assert "caught KeyboardInterrupt" in out, (out, proc.stderr)
    delay = float(out.split("caught KeyboardInterrupt after ")[1].split()[0])
    assert delay < 10.0, "KeyboardInterrupt only %.1f s after SIGINT" % delay
    assert "round [0, 1] False 0" in out, (out, proc.stderr)
    assert "after ok" in out, (out, proc.stderr)
    assert proc.returncode == 0, (out, proc.stderr)


# --------------------------------------------------------------------------
# stress

@pytest.mark.stress
@pytest.mark.parametrize("parties", [2, 4])
def test_stress_many_rounds_indices_and_action(parties):
    rounds = max(200, int(10000 * SCALE))
    completed = [0] * parties
    indices = [[None] * rounds for _ in range(parties)]
    action_calls = []
    failures = []

    def action():
        r = len(action_calls)
        action_calls.append(threading.get_ident())
        # every party has finished round r-1 and none has left round r
        if completed != [r] * parties:
            failures.append(("action saw", r, list(completed)))

    b = np.Barrier(parties, action=action)

    def worker(k):
        for r in range(rounds):
            try:
                indices[k][r] = b.wait(HANG_TIMEOUT)
            except BaseException as exc:  # noqa: BLE001
                failures.append((k, r, repr(exc)))
                b.abort()
                return
            completed[k] += 1

    threads = [start_thread(worker, k) for k in range(parties)]
    join_all(threads, timeout=600)
    assert failures == []
    assert len(action_calls) == rounds
    idents = {t.ident for t in threads}
    assert set(action_calls) <= idents
    for r in range(rounds):
        got = sorted(indices[k][r] for k in range(parties))
        assert got == list(range(parties)), (r, got)
    assert b.n_waiting == 0 and not b.broken


@pytest.mark.stress
def test_stress_more_threads_than_parties():
    # 9 threads share a Barrier(3). Once `target` rounds have completed the
    # threads leave; the ones stuck in a last round that cannot fill are
    # released with abort() once nothing is draining. Every completed round
    # handed out each index exactly once.
    parties, n_threads = 3, 9
    target = max(300, int(3000 * SCALE))
    counts = collections.Counter()
    lock = threading.Lock()
    actions = []
    final = threading.Event()
    failures = []

    def action():
        actions.append(1)
        if len(actions) >= target:
            final.set()

    b = np.Barrier(parties, action=action)

    def worker():
        while True:
            try:
                idx = b.wait(HANG_TIMEOUT)
            except BBE:
                if not final.is_set():
                    failures.append("broken before the end")
                return
            except BaseException as exc:  # noqa: BLE001
                failures.append(repr(exc))
                b.abort()
                return
            with lock:
                counts[idx] += 1
            if final.is_set():
                return

    threads = [start_thread(worker) for _ in range(n_threads)]
    assert final.wait(600)

    def settled():
        alive = sum(t.is_alive() for t in threads)
        return alive < parties and b.n_waiting == alive

    assert wait_until(settled)
    time.sleep(0.05)
    assert settled()
    b.abort()
    join_all(threads)
    assert failures == []
    assert len(actions) >= target
    assert counts == {i: len(actions) for i in range(parties)}


@pytest.mark.stress
def test_stress_resets_under_load_keep_rounds_whole():
    # Parties loop on the barrier while the main thread keeps resetting it.
    # Whatever interleaving, every round that completed (ran its action)
    # released exactly `parties` waiters, and nobody is left blocked.
    parties = 3
    b_actions = []
    successes = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    b = np.Barrier(parties, action=lambda: b_actions.append(1))

    def worker(k):
        while not stop.is_set():
            try:
                b.wait(HANG_TIMEOUT)
            except BBE:
                continue
            except BaseException as exc:  # noqa: BLE001
                errors.append(repr(exc))
                return
            with lock:
                successes[k] += 1

    threads = [start_thread(worker, k) for k in range(parties)]
    n_resets = max(50, int(500 * SCALE))
    for i in range(n_resets):
        time.sleep(0.001 * (i % 3))
        b.reset()
    stop.set()
    deadline = time.monotonic() + HANG_TIMEOUT
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        b.reset()  # releases parties blocked in a round that cannot fill
        time.sleep(0.005)
    join_all(threads, timeout=1)
    assert errors == []
    assert sum(successes.values()) == parties * len(b_actions)
    assert not b.broken
    assert b.n_waiting == 0


@pytest.mark.stress
def test_stress_abort_releases_everyone():
    parties = 4
    b = np.Barrier(parties)
    outcomes = []
    lock = threading.Lock()
    ready = threading.Barrier(parties)

    def worker(k):
        ready.wait(HANG_TIMEOUT)
        n = 0
        while True:
            try:
                b.wait(HANG_TIMEOUT)
                n += 1
            except BBE:
                with lock:
                    outcomes.append(("broken", n))
                return
            except BaseException as exc:  # noqa: BLE001
                with lock:
                    outcomes.append(("error", repr(exc)))
                return

    threads = [start_thread(worker, k) for k in range(parties)]
    time.sleep(0.5)
    b.abort()
    join_all(threads)
    assert [o[0] for o in outcomes] == ["broken"] * parties
    counts = sorted(o[1] for o in outcomes)
    # a party is at most one round ahead of another
    assert counts[-1] - counts[0] <= 1, counts
    assert b.broken and b.n_waiting == 0
