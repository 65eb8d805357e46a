"""nativepool.ProcessPool under faults: workers that die (exit, SIGKILL,
segfault, killed from outside as the OOM killer does), per-task timeouts,
cancelling running tasks, terminate/kill_workers, unpicklable tasks, and a
parent that is killed.  After every test the pool's processes and channel
segments must all be gone (the `leftovers` fixture checks)."""
import ctypes
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import pytest

from conftest import np, HANG_TIMEOUT
from process_leftovers import (  # noqa: F401 (pools: a fixture)
    pools, wait_until_true as _wait_until, workers as _workers)

pytestmark = pytest.mark.nativepool_only

ProcessPool = np.ProcessPool
WorkerDiedError = np.WorkerDiedError


# ---- task functions (module level: workers import them) ---------------------

def add(a, b=0):
    return a + b


def pid():
    return os.getpid()


def nap(seconds, value=None):
    time.sleep(seconds)
    return value


def die(code):
    os._exit(code)


def kill_self(sig):
    os.kill(os.getpid(), sig)
    time.sleep(5)


def segfault():
    ctypes.string_at(0)


def unpicklable_result():
    return threading.Lock()


# ---- a worker that dies fails only its own task -----------------------------------

@pytest.mark.parametrize("how, fn, args, text, code", [
    ("exit", die, (3,), "exited with code 3", 3),
    ("sigkill", kill_self, (signal.SIGKILL,), "signal 9 (SIGKILL)", -9),
    ("sigterm", kill_self, (signal.SIGTERM,), "signal 15 (SIGTERM)", -15),
    ("segfault", segfault, (), "signal 11 (SIGSEGV)", -11),
])
def test_dead_worker_fails_only_its_task(pools, how, fn, args, text, code):
    p = pools(2)
    slow = [p.submit(nap, 0.3, i) for i in range(2)]
    queued = [p.submit(add, i, 100) for i in range(20)]
    bad = p.submit(fn, *args)
    after = [p.submit(add, i, 1000) for i in range(20)]
    with pytest.raises(WorkerDiedError) as info:
        bad.result(timeout=HANG_TIMEOUT)
    err = info.value
    assert isinstance(err, np.BrokenProcessPool)
    assert text in str(err), str(err)
    assert err.exitcode == code
    assert isinstance(err.pid, int) and err.pid > 0
    assert [f.result(timeout=HANG_TIMEOUT) for f in slow] == [0, 1]
    assert [f.result(timeout=HANG_TIMEOUT) for f in queued] == [i + 100 for i in range(20)]
    assert [f.result(timeout=HANG_TIMEOUT) for f in after] == [i + 1000 for i in range(20)]
    # The pool goes on, on replacement workers.
    assert p.submit(add, 2, 3).result(timeout=HANG_TIMEOUT) == 5
    assert err.pid not in p._processes


def test_every_worker_dies_in_turn(pools):
    p = pools(2)
    bad = [p.submit(die, 7) for _ in range(6)]
    good = [p.submit(add, i) for i in range(10)]
    for f in bad:
        with pytest.raises(WorkerDiedError):
            f.result(timeout=HANG_TIMEOUT)
    assert [f.result(timeout=HANG_TIMEOUT) for f in good] == list(range(10))


def touch_then_nap(path, seconds):
    open(path, "w").close()
    time.sleep(seconds)


def test_worker_killed_from_outside(pools, tmp_path):
    """What the OOM killer does: SIGKILL from another process."""
    p = pools(1)
    started = str(tmp_path / "started")
    f = p.submit(touch_then_nap, started, 30)
    assert _wait_until(lambda: os.path.exists(started))
    (victim,) = p._processes
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerDiedError, match="SIGKILL"):
        f.result(timeout=HANG_TIMEOUT)
    assert p.submit(add, 1, 1).result(timeout=HANG_TIMEOUT) == 2


def test_idle_worker_death_fails_nothing(pools):
    p = pools(1)
    first = p.submit(pid).result(timeout=HANG_TIMEOUT)
    os.kill(first, signal.SIGKILL)
    assert _wait_until(lambda: first not in p._processes)
    assert p.submit(add, 4, 5).result(timeout=HANG_TIMEOUT) == 9
    assert p.submit(pid).result(timeout=HANG_TIMEOUT) != first


# ---- timeouts and cancelling running tasks ------------------------------------------

def test_schedule_timeout_kills_overdue_task(pools):
    p = pools(2)
    slow = p.schedule(nap, (30,), timeout=0.3)
    fine = p.schedule(nap, (0.05,), {"value": "ok"}, timeout=20)
    others = [p.submit(add, i) for i in range(10)]
    with pytest.raises(np.TimeoutError) as info:
        slow.result(timeout=HANG_TIMEOUT)
    assert "timeout" in str(info.value)
    assert fine.result(timeout=HANG_TIMEOUT) == "ok"
    assert [f.result(timeout=HANG_TIMEOUT) for f in others] == list(range(10))
    assert p.submit(add, 1, 2).result(timeout=HANG_TIMEOUT) == 3


def test_schedule_keeps_fn_keywords(pools):
    p = pools(1)
    # fn's own keyword named "timeout" is the function's, not the pool's.
    assert p.schedule(dict, (), {"timeout": 5, "fn": 1}).result(
        timeout=HANG_TIMEOUT) == {"timeout": 5, "fn": 1}
    assert p.submit(dict, timeout=5).result(timeout=HANG_TIMEOUT) == {"timeout": 5}


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_schedule_rejects_bad_timeout(pools, bad):
    p = pools(1)
    with pytest.raises(ValueError):
        p.schedule(add, (1,), timeout=bad)


def test_timeout_counts_from_start_not_submit(pools):
    p = pools(1)
    first = p.submit(nap, 0.5, "a")
    second = p.schedule(nap, (0.1, "b"), timeout=0.4)   # waits ~0.5 s queued
    assert first.result(timeout=HANG_TIMEOUT) == "a"
    assert second.result(timeout=HANG_TIMEOUT) == "b"


def test_timeout_does_not_count_a_starting_worker(pools):
    """A task sent to a worker that is still starting (here: a slow
    initializer) has its timeout start when the worker starts the task, and
    an overdue one is still caught when nothing else wakes the pool."""
    p = pools(1, initializer=time.sleep, initargs=(1.0,))
    f = p.schedule(nap, (0.1, "ok"), timeout=0.5)
    assert f.result(timeout=HANG_TIMEOUT) == "ok"
    g = p.schedule(nap, (30,), timeout=0.3)
    with pytest.raises(np.TimeoutError):
        g.result(timeout=HANG_TIMEOUT)


def test_cancel_running(pools):
    p = pools(1)
    running = p.submit(nap, 30)
    queued = p.submit(add, 1, 2)
    assert _wait_until(lambda: running.running())
    assert _wait_until(lambda: p._core._stats()["running"] == 1)
    assert not running.cancel()                # the stdlib's rule stands
    assert p.cancel_running(running)
    with pytest.raises(np.CancelledError):
        running.result(timeout=HANG_TIMEOUT)
    assert queued.result(timeout=HANG_TIMEOUT) == 3
    assert not p.cancel_running(queued)        # done
    pending = [p.submit(nap, 0.2) for _ in range(3)]
    assert p.cancel_running(pending[-1])       # pending: a plain cancel
    assert pending[-1].cancelled()
    assert [f.result(timeout=HANG_TIMEOUT) for f in pending[:-1]] == [None, None]


# ---- terminate / kill workers ------------------------------------------------------------

@pytest.mark.parametrize("method, sig", [("terminate_workers", "SIGTERM"),
                                         ("kill_workers", "SIGKILL")])
def test_terminate_and_kill_workers(pools, method, sig):
    p = pools(2)
    running = [p.submit(nap, 30) for _ in range(2)]
    pending = [p.submit(add, i) for i in range(5)]
    assert _wait_until(lambda: p._core._stats()["running"] == 2)
    getattr(p, method)()
    for f in running:
        with pytest.raises(WorkerDiedError, match=sig):
            f.result(timeout=HANG_TIMEOUT)
    assert all(f.cancelled() for f in pending)
    with pytest.raises(RuntimeError, match="after shutdown"):
        p.submit(add, 1)


# ---- pickling faults -------------------------------------------------------------------

def test_unpicklable_argument_fails_that_future(pools):
    p = pools(1)
    bad = p.submit(add, threading.Lock())
    with pytest.raises(TypeError, match="pickle"):
        bad.result(timeout=HANG_TIMEOUT)
    assert p.submit(add, 1, 1).result(timeout=HANG_TIMEOUT) == 2


def test_unpicklable_result_fails_that_future(pools):
    p = pools(1)
    bad = p.submit(unpicklable_result)
    with pytest.raises(TypeError, match="pickle"):
        bad.result(timeout=HANG_TIMEOUT)
    assert p.submit(add, 1, 1).result(timeout=HANG_TIMEOUT) == 2


# ---- lifetime ------------------------------------------------------------------------------

def test_dropped_pool_stops_its_workers(pools):
    before = set(_workers())
    p = ProcessPool(2, mp_context=multiprocessing.get_context("forkserver"))
    fs = [p.submit(nap, 0.1, i) for i in range(4)]
    del p
    assert [f.result(timeout=HANG_TIMEOUT) for f in fs] == [0, 1, 2, 3]
    assert _wait_until(lambda: not (set(_workers()) - before))


def test_max_tasks_per_child_replaces_workers(pools):
    p = pools(1, max_tasks_per_child=2)
    pids = [p.submit(pid).result(timeout=HANG_TIMEOUT) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_other_start_methods_survive_a_crash(pools, method):
    p = pools(2, method=method)
    q = pools(1, method=method)    # a second pool: a fork child inherits its channel
    assert q.submit(add, 1).result(timeout=HANG_TIMEOUT) == 1
    bad = p.submit(die, 5)
    good = [p.submit(add, i) for i in range(5)]
    with pytest.raises(WorkerDiedError, match="code 5"):
        bad.result(timeout=HANG_TIMEOUT)
    assert [f.result(timeout=HANG_TIMEOUT) for f in good] == list(range(5))
    assert q.submit(add, 2).result(timeout=HANG_TIMEOUT) == 2


PARENT_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time, multiprocessing
    import nativepool

    def nap(s):
        time.sleep(s)
        return os.getpid()

    if __name__ == "__main__":
        pool = nativepool.ProcessPool(2, mp_context=multiprocessing.get_context("{method}"))
        pids = {{pool.submit(nap, 0).result() for _ in range(20)}}
        busy = [pool.submit(nap, 60) for _ in range(2)]
        while pool._core._stats()["running"] < 2:
            time.sleep(0.01)
        print(" ".join(map(str, pool._processes)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_workers_exit_when_the_parent_is_killed(tmp_path, method):
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT.format(method=method))
    env = dict(os.environ)
    here = os.path.dirname(np.__file__)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(here)] + [x for x in [env.get("PYTHONPATH")] if x])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=HANG_TIMEOUT, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(x) for x in proc.stdout.split()]
    assert len(pids) == 2

    def gone(p):
        try:
            with open("/proc/%d/stat" % p) as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    assert _wait_until(lambda: all(gone(p) for p in pids)), \
        "workers outlived their parent"


# ---- an error nobody reads still shows --------------------------------------------

def fail(message):
    raise ValueError(message)


def test_unread_worker_exception_is_logged(pools, log_capture):
    """As for a thread's task: a future whose exception was never looked
    at logs it when it goes away, remote traceback and all."""
    records = log_capture("nativepool")
    p = pools(1)
    f = p.submit(fail, "nobody reads this")
    read = p.submit(fail, "this one is read")
    with pytest.raises(ValueError):
        read.result(HANG_TIMEOUT)
    np.wait([f], HANG_TIMEOUT)
    del f, read

    def logged():
        gc.collect()
        p.submit(add, 1).result(HANG_TIMEOUT)   # drains deferred releases
        return [r for r in records
                if "never retrieved" in r.getMessage()]
    assert _wait_until(logged)
    [rec] = logged()
    assert "nobody reads this" in rec.getMessage()
    assert "in fail" in "".join(traceback.format_exception(*rec.exc_info))


# ---- a task its worker never read runs elsewhere ------------------------------------

def pid_of(*_args):
    return os.getpid()


def _stopped_worker(p):
    """The pid of p's only worker, stopped (SIGSTOP): what it is sent stays
    unread in its channel."""
    w = p.submit(pid_of).result(HANG_TIMEOUT)
    os.kill(w, signal.SIGSTOP)
    return w


def _requeued(p):
    return p._core._stats()["pending"] == 1


@pytest.mark.parametrize("size", [100, 2 << 20], ids=["fits", "streams"])
def test_task_unread_by_a_dead_worker_runs_on_another(pools, size):
    """A worker that dies before it has read its task (here: stopped, then
    killed) never ran it: the task goes to the replacement instead of
    failing.  A message longer than the channel's ring dies part-sent."""
    p = pools(1)
    w = _stopped_worker(p)
    killer = threading.Timer(0.3, os.kill, (w, signal.SIGKILL))
    killer.start()   # a long message blocks submit until the worker is gone
    try:
        f = p.submit(pid_of, "x" * size)   # str: in the pickle, not out of band
        assert f.running()
        if size < 1000:
            time.sleep(0.3)
        new = f.result(HANG_TIMEOUT)
    finally:
        killer.join()
    assert new != w
    assert p.submit(pid_of).result(HANG_TIMEOUT) == new


def _hold_replacements(p, monkeypatch):
    """Replacement workers start only once the returned event is set, so a
    requeued task waits in the pending list meanwhile."""
    gate = threading.Event()
    spawn = p._manager._spawn

    def held():
        gate.wait(HANG_TIMEOUT)
        return spawn()
    monkeypatch.setattr(p._manager, "_spawn", held)
    return gate


def test_requeued_task_can_be_cancelled_while_it_waits(pools, monkeypatch):
    p = pools(1)
    w = _stopped_worker(p)
    gate = _hold_replacements(p, monkeypatch)
    f = p.submit(pid_of)
    os.kill(w, signal.SIGKILL)
    assert _wait_until(lambda: _requeued(p))
    assert f.running() and not f.cancel()
    assert p.cancel_running(f)
    with pytest.raises(np.CancelledError, match="cancelled while running"):
        f.result(HANG_TIMEOUT)
    assert not p.cancel_running(f)
    gate.set()
    assert p.submit(add, 2, 3).result(HANG_TIMEOUT) == 5


def test_shutdown_cancel_futures_leaves_a_requeued_task_to_run(pools, monkeypatch):
    p = pools(1)
    w = _stopped_worker(p)
    gate = _hold_replacements(p, monkeypatch)
    f = p.submit(pid_of)
    queued = p.submit(pid_of)
    os.kill(w, signal.SIGKILL)
    assert _wait_until(lambda: p._core._stats()["pending"] == 2)
    p.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled() and f.running()
    gate.set()
    p.shutdown(wait=True)
    assert f.result(0) != w


def test_worker_death_after_shutdown_nowait_still_runs_the_queue(pools, tmp_path):
    """shutdown(wait=False) leaves queued tasks to run: a worker that dies
    then is still replaced while they wait."""
    p = pools(1)
    w = p.submit(pid_of).result(HANG_TIMEOUT)
    started = str(tmp_path / "started")
    running = p.submit(touch_then_nap, started, 30)
    queued = [p.submit(add, i, 1) for i in range(3)]
    assert _wait_until(lambda: os.path.exists(started))
    p.shutdown(wait=False)
    os.kill(w, signal.SIGKILL)
    with pytest.raises(WorkerDiedError):
        running.result(HANG_TIMEOUT)
    assert [f.result(HANG_TIMEOUT) for f in queued] == [1, 2, 3]
    p.shutdown(wait=True)
