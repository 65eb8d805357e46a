"""ProcessPool reliability: no deadlock when the GC runs a finalizer that
calls back into the pool, thread creation that fails, workers that die
while starting (an unguarded script), os.fork() with tasks in flight, and
prompt release of a finished task's objects.

Where the behaviour is the stdlib's, the test also runs on
concurrent.futures.ProcessPoolExecutor (id "stdlib"), which proves the
expectation.  Every timeout here is a hang guard, never a timing.
"""
import concurrent.futures as cf
import gc
import multiprocessing
import os
import subprocess
import sys
import textwrap
import weakref

import pytest

from conftest import np, HANG_TIMEOUT, run_script, wait_until
import reliability_support as rs

IMPLEMENTATIONS = {"nativepool": np.ProcessPool, "stdlib": cf.ProcessPoolExecutor}
POOL_EXPR = {"nativepool": "np.ProcessPool", "stdlib": "cf.ProcessPoolExecutor"}

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(params=list(IMPLEMENTATIONS), ids=list(IMPLEMENTATIONS))
def impl(request):
    return request.param


def forkserver():
    return multiprocessing.get_context("forkserver")


def assert_ran(proc, marker="ok"):
    assert proc.returncode == 0 and marker in proc.stdout, (
        "rc=%s\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout,
                                             proc.stderr))


# ---- 1. no Python object is built under the core's lock ---------------------

# A finalizer run by the GC in the middle of an allocation calls back into
# the pool.  Building the answer of repr(pool) (core._stats) or
# core._slots() under the core's mutex made that finalizer take the mutex
# its own thread held: a deadlock.  The GC thresholds make nearly every
# allocation collect, at a few different counts; the dict and 3-tuple free
# lists are emptied first, so that the objects built next are real
# allocations (which is what runs the GC on 3.9-3.11).
REENTRY_SCRIPT = """
import concurrent.futures as cf, gc, multiprocessing
def main():
    pool = {pool}(1, mp_context=multiprocessing.get_context("forkserver"))
    pool.submit(abs, -1).result()
    calls = []
    class Trap:
        def __init__(self):
            self.me = self              # a cycle: only the GC frees it
        def __del__(self):
            calls.append(repr(pool))
            {extra}
    try:
        for threshold in (1, 2, 3, 4):
            gc.set_threshold(threshold, 1, 1)
            for i in range(60):
                keep = [dict() for _ in range(100)]
                keep += [(i, j, 0) for j in range(2100)]
                Trap()
                {call}
                del keep
    finally:
        gc.set_threshold(700, 10, 10)
    pool.shutdown()
    print("ok", len(calls))
if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("call", ["repr", "slots"])
def test_finalizer_reentering_the_pool_does_not_deadlock(impl, call):
    if call == "slots" and impl == "stdlib":
        pytest.skip("core._slots() is nativepool's own")
    expr = "repr(pool)" if call == "repr" else "pool._core._slots()"
    proc = run_script(REENTRY_SCRIPT.format(
        pool=POOL_EXPR[impl], call=expr,
        extra=expr if impl == "nativepool" else "pass"), timeout=2 * HANG_TIMEOUT)
    assert_ran(proc)


# The channel's send/recv hold the channel's lock across what runs Python
# (signal handlers, between the waits).  A handler that used the same
# channel from the same thread waited for the lock its own thread held,
# forever; now it raises RuntimeError, and the interrupted call goes on
# (here the handler then raises, so the outer call ends with that).
CHANNEL_REENTRY_SCRIPT = r"""
import signal
from nativepool import _nativepool as m
ch = m._Channel.create()            # no peer: recv waits, a long send fills the ring
inner = []
def handler(sig, frame):
    try:
        {inner}
    except RuntimeError as exc:
        inner.append(str(exc))
    raise KeyboardInterrupt
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    {outer}
except KeyboardInterrupt:
    print("outer interrupted; inner:", inner)
"""


@pytest.mark.parametrize("outer, inner", [
    ("ch.recv()", "ch.recv(timeout=0)"),
    ("ch.send(bytes(1 << 24))", "ch.send(b'x', timeout=0)"),
], ids=["recv", "send"])
def test_channel_reentry_from_a_signal_handler_raises(outer, inner):
    proc = run_script(CHANNEL_REENTRY_SCRIPT.format(outer=outer, inner=inner),
                      timeout=HANG_TIMEOUT)
    assert "outer interrupted" in proc.stdout, (proc.stdout, proc.stderr)
    assert "already inside" in proc.stdout, proc.stdout


# ---- 2. no thread can be started ---------------------------------------------

def _refuse_thread_start(self):
    raise RuntimeError("can't start new thread")


def _kill_stdlib_workers(pool):
    # The stdlib starts its workers before its manager thread: after a
    # failed start nothing would ever stop them.
    for p in list((pool._processes or {}).values()):
        p.kill()
        p.join(HANG_TIMEOUT)


def test_submit_raises_when_no_thread_can_be_started(impl, monkeypatch):
    """RLIMIT_NPROC, or a submit at interpreter shutdown on 3.12+: the
    stdlib's submit raises the RuntimeError of Thread.start()."""
    import threading
    pool = IMPLEMENTATIONS[impl](1, mp_context=forkserver())
    try:
        with monkeypatch.context() as m:
            m.setattr(threading.Thread, "start", _refuse_thread_start)
            with pytest.raises(RuntimeError, match="can't start new thread"):
                pool.submit(rs.add, 1, 2)
    finally:
        if impl == "stdlib":
            _kill_stdlib_workers(pool)
            pool.shutdown(wait=False)
        else:
            pool.shutdown(wait=True)


@pytest.mark.nativepool_only
def test_pool_works_once_a_thread_can_be_started_again(monkeypatch):
    """The failed start leaves nothing half-made behind: no worker without
    a collector (whose tasks would hang), no orphan process; the next
    submit starts the collector and runs.  (The stdlib's pool keeps the
    unstarted thread and hangs here.)"""
    import threading
    pool = np.ProcessPool(2, mp_context=forkserver())
    try:
        with monkeypatch.context() as m:
            m.setattr(threading.Thread, "start", _refuse_thread_start)
            for _ in range(3):
                with pytest.raises(RuntimeError, match="can't start new thread"):
                    pool.submit(rs.add, 1, 2)
            assert pool._processes == {}
        fs = [pool.submit(rs.add, i, 1) for i in range(10)]
        assert [f.result(timeout=HANG_TIMEOUT) for f in fs] == list(range(1, 11))
    finally:
        pool.shutdown(wait=True)


@pytest.mark.nativepool_only
def test_concurrent_submits_whose_spawns_fail_never_leave_a_task_pending():
    """Two submits start a worker each, at the same time, and both starts
    fail.  The first to give up saw the other still trying, so it kept its
    task pending for that worker; the other, the last, raised and took back
    only its own task: the first task waited forever.  Each task must now
    be refused (submit raises) or failed (its future done)."""
    import threading
    from concurrent.futures.process import BrokenProcessPool
    barrier = threading.Barrier(2, timeout=HANG_TIMEOUT)

    def spawn():
        barrier.wait()        # both submits are inside their spawn hook
        raise RuntimeError("can't start new thread")

    core = np._nativepool._ProcCore(2, spawn, BrokenProcessPool)
    results = [None, None]

    def submit(i):
        try:
            results[i] = core.submit(b"not run")
        except RuntimeError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT)
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, RuntimeError)
        else:
            # A hang guard: the future must be done already, not pending.
            assert r.done(), "a submitted task was left pending with no worker"
            assert isinstance(r.exception(timeout=0), RuntimeError)
    core._shutdown()


# ---- 3. an unguarded script: workers that die while starting ----------------

# With spawn or forkserver every worker imports the main module: a script
# that creates its pool and submits at top level, without the
# `if __name__ == "__main__":` guard, starts a pool in each worker, which
# multiprocessing refuses there (a RuntimeError and its traceback), so the
# worker dies before it takes a task.  The stdlib's pool breaks at the first
# such death; ours used to start a replacement forever, a traceback each.
UNGUARDED_SCRIPT = """
import concurrent.futures as cf, multiprocessing
from concurrent.futures.process import BrokenProcessPool
import nativepool as np

def add(a, b):
    return a + b

pool = {pool}(2, mp_context=multiprocessing.get_context("{method}"))
fs = [pool.submit(add, i, 1) for i in range(4)]
for f in fs:
    try:
        print("result:", f.result())
    except BrokenProcessPool as exc:
        print("broken:", exc)
try:
    pool.submit(add, 1, 2)
    print("later submit: accepted")
except BrokenProcessPool as exc:
    print("later submit: broken:", exc)
pool.shutdown()
print("done")
"""


def run_file(path, timeout):
    """Run a script file in a new session; on timeout (a hang guard) kill
    the whole session, workers and forkserver included, and fail."""
    proc = subprocess.Popen([sys.executable, str(path)], cwd=str(path.parent),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail("the script hung (>%ss); stderr has %d tracebacks:\n%s"
                    % (timeout, err.count("Traceback (most recent call last)"),
                       err[-3000:]))
    return proc.returncode, out, err


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_unguarded_script_breaks_the_pool_fast(impl, method, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT.format(pool=POOL_EXPR[impl], method=method))
    rc, out, err = run_file(script, timeout=4 * HANG_TIMEOUT)
    assert rc == 0, (out, err)
    lines = out.splitlines()
    assert "done" in lines, out
    assert not [l for l in lines if l.startswith("result:")], out
    assert len([l for l in lines if l.startswith("broken:")]) == 4, out
    assert any(l.startswith("later submit: broken:") for l in lines), out
    # One traceback per worker that died (a few: the pool stops starting
    # them), not one per respawn forever.
    assert err.count("Traceback (most recent call last)") <= 8, err[-3000:]
    if impl == "nativepool":
        assert 'if __name__ == "__main__":' in out, out


# ---- 4. os.fork() with tasks in flight -------------------------------------

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

FORK_PRELUDE = """
import multiprocessing, os, sys, threading, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: fork() with threads
sys.path.insert(0, %r)
import reliability_support as rs
from concurrent.futures.process import BrokenProcessPool

def wait_child(pid, timeout=60):
    # A hang guard: a child that hangs is killed and reported as "hung".
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rpid, status = os.waitpid(pid, os.WNOHANG)
        if rpid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
""" % TESTS_DIR


@pytest.mark.nativepool_only
@needs_fork
def test_fork_child_fails_the_parents_futures(tmp_path):
    """In a child of os.fork() the pool's workers and channels are the
    parent's: its copies of the running and pending futures fail with
    BrokenProcessPool (as a ThreadPool's fail with BrokenThreadPool),
    callbacks run, and submit raises BrokenProcessPool; the parent's pool
    is untouched.  (The stdlib's futures stay pending in the child.)"""
    gate = str(tmp_path / "gate")
    proc = run_script(FORK_PRELUDE + """
gate = %r
pool = np.ProcessPool(1, mp_context=multiprocessing.get_context("forkserver"))
running = pool.submit(rs.wait_for_file, gate)
while pool._core._stats()["running"] < 1:
    time.sleep(0.005)
pending = [pool.submit(rs.add, i, 1) for i in range(3)]
seen = []
pending[0].add_done_callback(lambda f: seen.append(type(f.exception()).__name__))
pid = os.fork()
if pid == 0:
    code = 0
    named = [("running", running)] + [("pending%%d" %% i, f) for i, f in enumerate(pending)]
    for name, f in named:
        try:
            f.result(timeout=10)     # a hang guard
            print("child:", name, "returned", flush=True)
            code = 1
        except BrokenProcessPool:
            print("child:", name, "broken", flush=True)
        except BaseException as e:
            print("child:", name, "error", repr(e), flush=True)
            code = 2
    try:
        pool.submit(rs.add, 1, 1)
        print("child: submit accepted", flush=True)
        code = 3
    except BrokenProcessPool:
        print("child: submit broken", flush=True)
    print("child: callback saw", seen, flush=True)
    os._exit(code)
print("child rc", wait_child(pid), flush=True)
open(gate, "w").close()
print("parent", running.result(30) == gate, [f.result(30) for f in pending], flush=True)
pool.shutdown()
""" % gate, timeout=2 * HANG_TIMEOUT)
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr)
    for name in ("running", "pending0", "pending1", "pending2"):
        assert "child: %s broken" % name in out, out
    assert "child: submit broken" in out, out
    assert "child: callback saw ['BrokenProcessPool']" in out, out
    assert "child rc 0" in out, out
    assert "parent True [1, 2, 3]" in out, out


@pytest.mark.nativepool_only
@needs_fork
def test_fork_while_tasks_flow_never_leaves_a_future_pending_in_the_child():
    """Forks that land anywhere: while a feeder thread submits (a sender
    may hold a channel's lock) and the collector completes tasks (it may
    hold the core's or a future's lock, or be between taking a reply and
    finishing its future).  In each child every future the parent had
    submitted is done, or becomes done at once, and submit raises."""
    proc = run_script(FORK_PRELUDE + """
pool = np.ProcessPool(2, mp_context=multiprocessing.get_context("forkserver"))
inflight = []
stop = threading.Event()
def feeder():
    # It waits by polling done(), which takes no lock: a thread inside
    # result() (unpickling under the future's lock) or wait() at the fork
    # would leave that future's lock held in the child, for nativepool's
    # futures as for the stdlib's (whose _condition is not reset at fork
    # either); this test is about the pool's own threads and locks.
    while not stop.is_set():
        fs = [pool.submit(rs.add, i, 1) for i in range(20)]
        inflight[:] = fs
        deadline = time.monotonic() + 30          # a hang guard
        while not all(f.done() for f in fs) and time.monotonic() < deadline:
            time.sleep(0.0005)
t = threading.Thread(target=feeder)
t.start()
while not inflight:
    time.sleep(0.001)
bad = []
for k in range(20):
    time.sleep(0.002 * (k % 5))     # land at different points of the flow
    pid = os.fork()
    if pid == 0:
        code = 0
        deadline = time.monotonic() + 10   # a hang guard: they must be done
        for f in list(inflight):
            try:
                f.exception(timeout=max(0, deadline - time.monotonic()))
            except BaseException as e:
                print("child", k, "future", repr(e), flush=True)
                code = 1
                break
        try:
            pool.submit(rs.add, 1, 1)
            code = 2
        except BrokenProcessPool:
            pass
        except BaseException as e:
            print("child", k, "submit", repr(e), flush=True)
            code = 3
        os._exit(code)
    rc = wait_child(pid)
    if rc != 0:
        bad.append((k, rc))
        break
stop.set()
t.join(60)
pool.shutdown()
print("bad", bad, flush=True)
""", timeout=4 * HANG_TIMEOUT)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "bad []" in proc.stdout, (proc.stdout, proc.stderr)


@needs_fork
def test_fork_started_workers_leave_the_parents_futures_alone(impl, tmp_path):
    """The "fork" start method forks the pool's own workers: those children
    run tasks, not the parent's code, so the parent's pending futures must
    not fail (nor run their callbacks) in them."""
    gate, log = str(tmp_path / "gate"), str(tmp_path / "log")

    def note(f):
        with open(log, "a") as fh:
            fh.write("%d %s\n" % (os.getpid(), type(f.exception()).__name__))

    pool = IMPLEMENTATIONS[impl](3, mp_context=multiprocessing.get_context("fork"))
    try:
        first = pool.submit(rs.wait_for_file, gate)
        first.add_done_callback(note)
        # More workers are forked while `first` is pending with a callback
        # (the stdlib starts them all at its first submit).
        more = [pool.submit(rs.wait_for_file, gate) for _ in range(2)]
        more[0].add_done_callback(note)
        with open(gate, "w"):
            pass
        assert [f.result(timeout=HANG_TIMEOUT) for f in [first] + more] == [gate] * 3
    finally:
        with open(gate, "a"):
            pass
        pool.shutdown(wait=True)
    with open(log) as fh:
        lines = sorted(fh.read().split("\n"))[1:]
    assert lines == ["%d NoneType" % os.getpid()] * 2, lines


# ---- 5. a finished task's objects are released promptly --------------------

def released(wr):
    """Poll (a hang guard, not a timing) until wr's object is gone, with no
    pool call meanwhile: the stdlib's manager thread drops its work item
    just after it sets the result, ours lets go once it is idle."""
    return wait_until(lambda: gc.collect() >= 0 and wr() is None)


def test_task_function_and_arguments_are_released_once_done(impl):
    with IMPLEMENTATIONS[impl](1, mp_context=forkserver()) as pool:
        assert pool.submit(rs.add, 1).result(timeout=HANG_TIMEOUT) == 1
        obj = rs.Obj(5)
        arg = rs.Payload(7)
        wr_obj, wr_arg = weakref.ref(obj), weakref.ref(arg)
        f = pool.submit(obj.method, 2)
        g = pool.submit(rs.identity_n, arg)
        del obj, arg
        assert f.result(timeout=HANG_TIMEOUT) == 7
        assert g.result(timeout=HANG_TIMEOUT) == 7
        assert released(wr_obj), "the task's function (a bound method) lingers"
        assert released(wr_arg), "the task's argument lingers"


def test_result_is_released_once_the_future_is_dropped(impl):
    with IMPLEMENTATIONS[impl](1, mp_context=forkserver()) as pool:
        assert pool.submit(rs.add, 1).result(timeout=HANG_TIMEOUT) == 1
        f = pool.submit(rs.make_payload, 3)
        r = f.result(timeout=HANG_TIMEOUT)
        wr = weakref.ref(r)
        del r, f
        assert released(wr), "the result lingers after the future is dropped"
        # An exception too (its traceback makes cycles: the GC frees them).
        f = pool.submit(rs.raise_payload_error, 4)
        exc = f.exception(timeout=HANG_TIMEOUT)
        wr = weakref.ref(exc)
        del exc, f
        assert released(wr), "the exception lingers after the future is dropped"
