"""ThreadPool as a drop-in for concurrent.futures.ThreadPoolExecutor.

Every test here runs against both classes (the ``executor`` fixture), so the
stdlib proves each expectation; a check that only our pool can pass (where
we deliberately do better than the stdlib) is marked in its comment.
"""
import concurrent.futures as cf
import itertools
import re
import threading

import pytest

from conftest import np, run_script, HANG_TIMEOUT

EXECUTORS = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request):
    """The executor class under test: nativepool's or the stdlib's."""
    return EXECUTORS[request.param]


def _shutdown_all(pools):
    for p in pools:
        p.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------
# worker thread names

@pytest.mark.parametrize("round_", range(3))
def test_worker_names_unique_when_threads_submit_at_once(executor, round_):
    # 8 threads submit at the same moment; the tasks wait for each other on a
    # barrier, so all 8 run at once on 8 workers.  The stdlib names them
    # p_0..p_7 (submit holds a lock while it counts and starts a thread).
    n = 8
    p = executor(n, thread_name_prefix="p")
    go = threading.Barrier(n, timeout=HANG_TIMEOUT)      # guards a hang only
    together = threading.Barrier(n, timeout=HANG_TIMEOUT)
    futures = []
    lock = threading.Lock()

    def task():
        together.wait()
        return threading.current_thread().name

    def submitter():
        go.wait()
        f = p.submit(task)
        with lock:
            futures.append(f)

    try:
        threads = [threading.Thread(target=submitter) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_TIMEOUT)
        names = [f.result(HANG_TIMEOUT) for f in futures]
    finally:
        p.shutdown(wait=True)
    expected = ["p_%d" % i for i in range(n)]
    assert sorted(names) == expected
    assert sorted(t.name for t in p._threads) == expected


@pytest.mark.parametrize("first,second", list(itertools.product(
    sorted(EXECUTORS), repeat=2)))
def test_default_prefix_is_stdlib_format_and_unique(first, second):
    # The stdlib's default prefix is "ThreadPoolExecutor-%d" from a counter on
    # the class, which subclasses share: two pools never get the same prefix,
    # whichever of the two classes each one is.  A fresh interpreter, so
    # that both counters start where a program's would.
    r = run_script("""
        import concurrent.futures as cf, threading
        classes = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}
        pools = [classes[%r](1), classes[%r](1)]
        for p in pools:
            name = p.submit(lambda: threading.current_thread().name).result(30)
            out(name, p._thread_name_prefix)
            p.shutdown()
    """ % (first, second))
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in r.stdout.splitlines()]
    assert len(lines) == 2, r.stdout
    for name, prefix in lines:
        assert re.fullmatch(r"ThreadPoolExecutor-\d+_0", name), name
        assert name == prefix + "_0"
    assert lines[0][0] != lines[1][0]


# --------------------------------------------------------------------------
# a worker thread that cannot be started

class FailingStarts:
    """threading.Thread.start, patched so that worker threads named
    ``prefix_*`` fail to start (RuntimeError, as when the OS refuses a
    thread) after ``allow`` successes.  Both pools start their workers with
    it: the stdlib's _adjust_thread_count and our _spawn_thread."""

    def __init__(self, monkeypatch, prefix, allow=0):
        self.prefix = prefix + "_"
        self.allow = allow
        self.failed = 0
        self.lock = threading.Lock()
        self.original = threading.Thread.start
        fake = self

        def start(thread):
            if thread.name.startswith(fake.prefix):
                with fake.lock:
                    ok = fake.allow > 0
                    fake.allow -= ok
                    fake.failed += not ok
                if not ok:
                    raise RuntimeError("can't start new thread")
            return fake.original(thread)

        self.monkeypatch = monkeypatch
        monkeypatch.setattr(threading.Thread, "start", start)

    def stop(self):
        self.monkeypatch.setattr(threading.Thread, "start", self.original)


def test_spawn_failure_first_worker_submit_raises(executor, monkeypatch):
    p = executor(4, thread_name_prefix="nostart")
    starts = FailingStarts(monkeypatch, "nostart")
    try:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            p.submit(pow, 2, 5)
        assert starts.failed == 1
        assert not p._threads
        starts.stop()
        # The pool is not broken: once threads can start, it works.
        assert p.submit(pow, 2, 5).result(HANG_TIMEOUT) == 32
    finally:
        starts.stop()
        p.shutdown(wait=True)


def test_spawn_failure_index_reused(executor, monkeypatch):
    # A thread that failed to start used no index: the next one gets it.
    p = executor(3, thread_name_prefix="idx")
    starts = FailingStarts(monkeypatch, "idx", allow=1)
    release = threading.Event()
    try:
        p.submit(release.wait, HANG_TIMEOUT)       # idx_0, stays busy
        try:
            p.submit(int)                           # idx_1 fails to start
        except RuntimeError:
            pass
        assert starts.failed == 1
        starts.stop()
        p.submit(int).result(HANG_TIMEOUT)          # idx_1
        release.set()
    finally:
        release.set()
        starts.stop()
        p.shutdown(wait=True)
    assert sorted(t.name for t in p._threads) == ["idx_0", "idx_1"]


def test_spawn_failure_leaves_no_task_behind(monkeypatch):
    # Where we do better than the stdlib: its submit queues the work item
    # before starting the thread, so a submit that raised still runs its
    # call later, when some thread starts.  Ours takes it back.
    p = np.ThreadPool(1, thread_name_prefix="nostart")
    starts = FailingStarts(monkeypatch, "nostart")
    ran = []
    try:
        with pytest.raises(RuntimeError):
            p.submit(ran.append, "failed submit")
        starts.stop()
        p.submit(ran.append, "second").result(HANG_TIMEOUT)
    finally:
        starts.stop()
        p.shutdown(wait=True)
    assert ran == ["second"]


def test_spawn_failure_with_a_worker_runs_on_it(executor, monkeypatch):
    # One worker exists and is busy; the next submit wants a second thread
    # and cannot start it.  The task runs on the existing worker all the
    # same (the stdlib's submit raises, but the work item is queued; ours
    # returns the future and logs a warning).
    p = executor(2, thread_name_prefix="onlyone")
    starts = FailingStarts(monkeypatch, "onlyone", allow=1)
    release = threading.Event()
    ran = threading.Event()
    try:
        busy = p.submit(release.wait, HANG_TIMEOUT)
        try:
            second = p.submit(lambda: ran.set() or "second")
        except RuntimeError:
            assert executor is cf.ThreadPoolExecutor
            second = None
        assert starts.failed == 1
        release.set()
        assert ran.wait(HANG_TIMEOUT)          # guards a hang only
        assert busy.result(HANG_TIMEOUT) is True
        if second is not None:
            assert second.result(HANG_TIMEOUT) == "second"
        assert len(p._threads) == 1
    finally:
        release.set()
        starts.stop()
        p.shutdown(wait=True)


def test_spawn_failure_with_a_worker_warns_once(monkeypatch, log_capture):
    # Ours only (the stdlib raises from each such submit instead): a pool
    # that cannot grow says so once, not in every submit (with RLIMIT_NPROC
    # reached, that would be a traceback per task).
    records = log_capture("nativepool")
    p = np.ThreadPool(4, thread_name_prefix="onlyone")
    starts = FailingStarts(monkeypatch, "onlyone", allow=1)
    release = threading.Event()
    try:
        busy = p.submit(release.wait, HANG_TIMEOUT)
        more = [p.submit(pow, 2, i) for i in range(3)]
        assert starts.failed == 3
        release.set()
        assert [f.result(HANG_TIMEOUT) for f in more] == [1, 2, 4]
        assert busy.result(HANG_TIMEOUT) is True
    finally:
        release.set()
        p.shutdown(wait=True)
    warnings = [r for r in records if "could not start" in r.getMessage()]
    assert len(warnings) == 1


def test_spawn_failure_concurrent_submitters_never_left_pending(executor, monkeypatch):
    # Every start fails while 8 threads submit at once: each submit raises
    # RuntimeError or returns a future that fails with it; none stays
    # pending (which would hang its result()).
    n = 8
    p = executor(n, thread_name_prefix="nostart")
    FailingStarts(monkeypatch, "nostart")
    go = threading.Barrier(n, timeout=HANG_TIMEOUT)      # guards a hang only
    outcomes = []
    lock = threading.Lock()

    def submitter():
        go.wait()
        try:
            r = p.submit(pow, 2, 5)
        except RuntimeError as e:
            r = e
        with lock:
            outcomes.append(r)

    threads = [threading.Thread(target=submitter) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT)
    try:
        assert len(outcomes) == n
        futures = [r for r in outcomes if isinstance(r, cf.Future)]
        done, pending = cf.wait(futures, timeout=HANG_TIMEOUT)  # guards a hang
        assert not pending
        for f in futures:
            assert isinstance(f.exception(), RuntimeError)
    finally:
        p.shutdown(wait=True, cancel_futures=True)


def test_spawn_failure_in_map_raises(executor, monkeypatch):
    p = executor(4, thread_name_prefix="nostart")
    starts = FailingStarts(monkeypatch, "nostart")
    try:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            list(p.map(abs, range(-5, 0)))
        starts.stop()
        assert list(p.map(abs, range(-5, 0))) == [5, 4, 3, 2, 1]
    finally:
        starts.stop()
        p.shutdown(wait=True)


def test_spawn_failure_in_map_with_a_worker(executor, monkeypatch):
    # The first worker starts, every further one fails.  The stdlib's map
    # raises if one of its submits wanted a thread (when the first worker is
    # busy at that moment), its calls still run; ours runs every item on
    # the worker it has.
    p = executor(4, thread_name_prefix="onlyone")
    FailingStarts(monkeypatch, "onlyone", allow=1)
    try:
        try:
            result = list(p.map(abs, range(-50, 0)))
        except RuntimeError:
            assert executor is cf.ThreadPoolExecutor
        else:
            assert result == list(range(50, 0, -1))
    finally:
        p.shutdown(wait=True)


def test_spawn_failure_from_the_os(executor):
    # A real pthread_create failure: a stack larger than the machine's
    # memory cannot be mapped (heuristic overcommit refuses it).
    old = threading.stack_size(1 << 46)
    try:
        probe = threading.Thread(target=int)
        try:
            probe.start()
        except RuntimeError:
            pass
        else:
            probe.join()
            pytest.skip("this machine maps a 64 TiB thread stack")
        p = executor(2)
        try:
            with pytest.raises(RuntimeError, match="can't start new thread"):
                p.submit(pow, 2, 5)
        finally:
            threading.stack_size(old)
        assert p.submit(pow, 2, 5).result(HANG_TIMEOUT) == 32
        p.shutdown(wait=True)
    finally:
        threading.stack_size(old)


# Ctrl-C while submit starts a worker: Thread.start() has started the thread
# and waits for it to run when the signal handler raises.  The stdlib's
# submit raises KeyboardInterrupt; the pool stays usable; exit does not hang.
_INTERRUPTED_START = """
    import concurrent.futures as cf, threading
    cls = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}[%r]
    original = threading.Thread.start
    pending = [1]
    def start(thread):
        original(thread)
        if thread.name.startswith("intr_") and pending:
            pending.pop()
            raise KeyboardInterrupt
    threading.Thread.start = start
    gate = threading.Event()
    if %r:
        # The new thread waits in its initializer: it comes into the pool
        # only after Thread.start() has raised.
        p = cls(2, thread_name_prefix="intr", initializer=gate.wait,
                initargs=(30,))
    else:
        gate.set()
        p = cls(2, thread_name_prefix="intr")
    try:
        %s
    except KeyboardInterrupt:
        out("interrupted")
    else:
        out("not interrupted")
    gate.set()
    out(p.submit(pow, 2, 5).result(30))
    p.shutdown()
    out("done")
"""


@pytest.mark.parametrize("late", [False, True], ids=["thread_in", "thread_late"])
@pytest.mark.parametrize("call", ["p.submit(pow, 2, 3)",
                                  "list(p.map(pow, [2, 3], [3, 2]))"])
def test_interrupted_worker_start(executor, call, late):
    name = {v: k for k, v in EXECUTORS.items()}[executor]
    # run_script's timeout guards the hang at exit (a miscounted thread).
    r = run_script(_INTERRUPTED_START % (name, late, call), timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["interrupted", "32", "done"], r.stderr


# At interpreter shutdown: an atexit handler runs after the pools' exit hook
# (the stdlib refuses new work then); a threading._register_atexit callback
# runs before it (3.12.0-3.12.x refuse to start threads then).  Whatever
# the stdlib does on this Python, we do, and nothing hangs.
_AT_SHUTDOWN = """
    import atexit, concurrent.futures as cf, threading
    cls = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}[%r]
    def late():
        p = cls(2)
        try:
            out("submit", p.submit(pow, 2, 5).result(30))
        except RuntimeError as e:
            out("submit raised", e)
        try:
            out("map", list(p.map(pow, [2], [3])))
        except RuntimeError as e:
            out("map raised", e)
        p.shutdown()
        out("shutdown")
    %s(late)
"""


@pytest.mark.parametrize("register", ["atexit.register",
                                      "threading._register_atexit"])
def test_submit_at_interpreter_shutdown_as_stdlib(register):
    outputs = {}
    for name in sorted(EXECUTORS):
        # run_script's timeout guards a hang at exit only.
        r = run_script(_AT_SHUTDOWN % (name, register), timeout=30)
        assert r.returncode == 0, r.stderr
        outputs[name] = r.stdout.splitlines()
    assert outputs["stdlib"][-1] == "shutdown"
    assert outputs["nativepool"] == outputs["stdlib"]


# --------------------------------------------------------------------------
# the constructor: what the stdlib accepts, with its errors

def _ctor_error(cls, *args, **kwargs):
    try:
        p = cls(*args, **kwargs)
    except Exception as e:
        return type(e), str(e)
    p.shutdown()
    return None


@pytest.mark.parametrize("args,kwargs", [
    ((0,), {}), ((-1,), {}), ((), {"max_workers": 0}),
    (("3",), {}), (([],), {}), ((object(),), {}), ((1j,), {}),
    ((1, "", 5), {}), ((1,), {"initializer": "not callable"}),
], ids=lambda v: repr(v))
def test_constructor_errors_as_stdlib(executor, args, kwargs):
    expected = _ctor_error(cf.ThreadPoolExecutor, *args, **kwargs)
    assert expected is not None
    got = _ctor_error(executor, *args, **kwargs)
    assert got == expected
    assert "Base" not in got[1] and "_nativepool" not in got[1]


def test_constructor_messages(executor):
    with pytest.raises(ValueError) as e:
        executor(0)
    assert str(e.value) == "max_workers must be greater than 0"
    with pytest.raises(TypeError) as e:
        executor(1, initializer=3)
    assert str(e.value) == "initializer must be a callable"


def test_constructor_signature(executor):
    import inspect
    assert (inspect.signature(executor)
            == inspect.signature(cf.ThreadPoolExecutor))
    assert (inspect.signature(executor.__init__)
            == inspect.signature(cf.ThreadPoolExecutor.__init__))


def test_constructor_positional(executor):
    seen = []
    p = executor(4, "posprefix", seen.append, (1,))
    try:
        name = p.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT)
    finally:
        p.shutdown(wait=True)
    assert name == "posprefix_0"
    assert seen == [1]
    assert (p._max_workers, p._thread_name_prefix, p._initargs) == (4, "posprefix", (1,))


@pytest.mark.parametrize("prefix,name", [(5, "5_0"), (b"x", "b'x'_0"),
                                         (("a", 1), "('a', 1)_0")])
def test_thread_name_prefix_any_object(executor, prefix, name):
    # The stdlib names its threads '%s_%d' % (prefix, index).
    p = executor(1, thread_name_prefix=prefix)
    try:
        got = p.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT)
    finally:
        p.shutdown(wait=True)
    assert got == name
    assert p._thread_name_prefix == prefix


@pytest.mark.parametrize("prefix", [None, "", 0, b""])
def test_thread_name_prefix_false_is_default(executor, prefix):
    p = executor(1, thread_name_prefix=prefix)
    try:
        got = p.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT)
    finally:
        p.shutdown(wait=True)
    assert re.fullmatch(r"ThreadPoolExecutor-\d+_0", got), got


@pytest.mark.parametrize("make", [list, tuple, iter, lambda a: dict.fromkeys(a)],
                         ids=["list", "tuple", "iterator", "dict"])
def test_initargs_any_iterable(executor, make):
    initargs = make([1, 2])
    seen = []
    p = executor(2, initializer=lambda *a: seen.append(a), initargs=initargs)
    try:
        p.submit(int).result(HANG_TIMEOUT)
    finally:
        p.shutdown(wait=True)
    assert seen == [(1, 2)]
    assert p._initargs is initargs


def test_initargs_ignored_without_initializer(executor):
    p = executor(1, initargs=5)
    try:
        assert p.submit(pow, 2, 5).result(HANG_TIMEOUT) == 32
    finally:
        p.shutdown(wait=True)
    assert p._initargs == 5


def test_initargs_not_iterable_breaks_pool(executor, log_capture):
    # initializer(*5) fails in the worker: logged, and the pool is broken.
    records = log_capture("concurrent.futures")
    p = executor(1, initializer=print, initargs=5)
    try:
        f = p.submit(int)
        with pytest.raises(cf.thread.BrokenThreadPool):
            f.result(HANG_TIMEOUT)
        with pytest.raises(cf.thread.BrokenThreadPool):
            p.submit(int)
    finally:
        p.shutdown(wait=True)
    assert any("Exception in initializer" in r.getMessage() for r in records)


@pytest.mark.parametrize("max_workers,threads,bounded", [
    (2.5, 3, True), (True, 1, True), (3.0, 3, True),
    (10 ** 30, 6, False), (float("inf"), 6, False)])
def test_max_workers_any_number(executor, max_workers, threads, bounded):
    # The stdlib keeps max_workers as given and starts a thread while it has
    # fewer than max_workers: 2.5 means 3 threads, 10**30 and inf no limit.
    # `threads` tasks that wait for each other need that many threads; in a
    # bounded pool, three more submitted meanwhile wait behind them.
    p = executor(max_workers)
    together = threading.Barrier(threads, timeout=HANG_TIMEOUT)   # guards a hang
    try:
        fs = [p.submit(together.wait) for _ in range(threads)]
        if bounded:
            fs += [p.submit(int) for _ in range(3)]
        for f in fs:
            f.result(HANG_TIMEOUT)
        assert len(p._threads) == threads
    finally:
        p.shutdown(wait=True)
    assert p._max_workers == max_workers


def test_max_workers_nan_refused():
    # Ours only: the stdlib accepts nan (nan <= 0 is false) and then never
    # starts a thread (0 < nan is false either), so every result() hangs.
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        np.ThreadPool(float("nan"))


def test_default_max_workers_formula(executor):
    import os
    import sys
    count = os.process_cpu_count() if sys.version_info >= (3, 13) else os.cpu_count()
    p = executor()
    p.shutdown()
    assert p._max_workers == min(32, (count or 1) + 4)


def test_default_max_workers_with_affinity(executor):
    # With the process pinned to one CPU, 3.13's default counts 1 (it uses
    # os.process_cpu_count()), earlier versions still count all CPUs.
    import os
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity")
    name = {v: k for k, v in EXECUTORS.items()}[executor]
    r = run_script("""
        import concurrent.futures as cf, os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        cls = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}[%r]
        count = (os.process_cpu_count() if hasattr(os, "process_cpu_count")
                 else os.cpu_count())
        p = cls()
        out(p._max_workers, min(32, (count or 1) + 4))
        p.shutdown()
    """ % name)
    assert r.returncode == 0, r.stderr
    got, expected = r.stdout.split()
    assert got == expected
