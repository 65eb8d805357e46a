"""nativepool.ProcessPool against concurrent.futures.ProcessPoolExecutor.

Every behavioural test runs twice, through the ``executor_class`` fixture:
once on the stdlib's ProcessPoolExecutor (id "stdlib") and once on
nativepool.ProcessPool (id "nativepool").  The expectations are the
stdlib's (its messages are copied from concurrent/futures/process.py and
_base.py), so a test that passes on "stdlib" and fails on "nativepool" is a
place where the pool is not a drop-in replacement.  Tests of nativepool-only
things (isinstance, nativepool.Future, buffersize before Python 3.14) are
not parametrized.

Task functions live in tests/process_support.py: worker processes import it
by name (multiprocessing gives spawn and forkserver children the parent's
sys.path, which has tests/ on it).  Pools use the "forkserver" start method
unless a test says otherwise, and have 1-2 workers.

Cross-process synchronization uses "gates": a task waits (bounded, see
process_support.GATE_TIMEOUT) until the test creates a file.  Timeouts are
hang guards only; nothing asserts how long anything took.
"""
import concurrent.futures as cf
import concurrent.futures.process as cfp
import gc
import itertools
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import process_support as ps
import process_transfer_support as ts
from conftest import HANG_TIMEOUT, np, wait_until

T = HANG_TIMEOUT            # hang guard for result(), wait(), ...

IMPLEMENTATIONS = {
    "stdlib": cf.ProcessPoolExecutor,
    "nativepool": np.ProcessPool,
}


def skip_without_mtpc(executor_class, kwargs=None):
    """The stdlib took max_tasks_per_child in 3.11 (nativepool has it on
    every version)."""
    if (executor_class is cf.ProcessPoolExecutor and sys.version_info < (3, 11)
            and (kwargs is None or "max_tasks_per_child" in kwargs)):
        pytest.skip("the stdlib's max_tasks_per_child is new in 3.11")

# Messages of the stdlib (concurrent/futures/process.py and _base.py).
MSG_MAX_WORKERS = "max_workers must be greater than 0"
MSG_INITIALIZER = "initializer must be a callable"
MSG_MTPC_TYPE = "max_tasks_per_child must be an integer"
MSG_MTPC_VALUE = "max_tasks_per_child must be >= 1"
MSG_MTPC_FORK = ("max_tasks_per_child is incompatible with the 'fork' "
                 "multiprocessing start method; supply a different mp_context.")
MSG_SHUTDOWN = "cannot schedule new futures after shutdown"
MSG_CHUNKSIZE = "chunksize must be >= 1."
# Python 3.14's Executor.map
MSG_BUFFERSIZE_TYPE = "buffersize must be an integer or None"
MSG_BUFFERSIZE_VALUE = "buffersize must be None or > 0"


# ---- fixtures ------------------------------------------------------------------

class Gate:
    """A file a gated task waits for (process_support.gated); ``started``
    is a file such a task creates when it begins to run."""

    def __init__(self, directory, name):
        self.path = str(directory / ("gate-" + name))
        self.directory = directory
        self.name = name

    def started(self, i=0):
        return str(self.directory / ("started-%s-%s" % (self.name, i)))

    def wait_started(self, i=0):
        path = self.started(i)
        assert wait_until(lambda: os.path.exists(path), T), \
            "gated task %d never started" % i

    def open(self):
        ps.touch(self.path)

    @property
    def is_open(self):
        return os.path.exists(self.path)


_open_gates = []


@pytest.fixture
def gate(tmp_path):
    g = Gate(tmp_path, "a")
    _open_gates.append(g)
    yield g
    g.open()


@pytest.fixture(params=list(IMPLEMENTATIONS), ids=list(IMPLEMENTATIONS))
def executor_class(request):
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def make_pool(executor_class):
    """make_pool(max_workers=2, method="forkserver", **kwargs): a pool of the
    implementation under test.  At teardown the gates are opened (so that
    no gated task holds up shutdown) and every pool is shut down."""
    made = []

    def factory(max_workers=2, method="forkserver", **kwargs):
        skip_without_mtpc(executor_class, kwargs)
        if "mp_context" not in kwargs:
            kwargs["mp_context"] = multiprocessing.get_context(method)
        p = executor_class(max_workers, **kwargs)
        made.append(p)
        return p

    yield factory
    for g in _open_gates:
        g.open()
    del _open_gates[:]
    for p in made:
        p.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pool(make_pool):
    return make_pool(2)


def remote_traceback_text(exc):
    """The text of the remote traceback attached as exc.__cause__, as the
    stdlib attaches it (a concurrent.futures.process._RemoteTraceback)."""
    cause = exc.__cause__
    assert isinstance(cause, cfp._RemoteTraceback), \
        "__cause__ is %r, not the stdlib's _RemoteTraceback" % (cause,)
    return str(cause)


# ---- constructor -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, etype, message", [
    (dict(max_workers=0), ValueError, MSG_MAX_WORKERS),
    (dict(max_workers=-1), ValueError, MSG_MAX_WORKERS),
    # max_workers is checked before the initializer
    (dict(max_workers=0, initializer=5), ValueError, MSG_MAX_WORKERS),
    (dict(max_workers=1, initializer=5), TypeError, MSG_INITIALIZER),
    (dict(max_workers=1, initializer="not callable"), TypeError, MSG_INITIALIZER),
    (dict(max_workers=1, max_tasks_per_child="1"), TypeError, MSG_MTPC_TYPE),
    (dict(max_workers=1, max_tasks_per_child=1.0), TypeError, MSG_MTPC_TYPE),
    (dict(max_workers=1, max_tasks_per_child=0), ValueError, MSG_MTPC_VALUE),
    (dict(max_workers=1, max_tasks_per_child=-3), ValueError, MSG_MTPC_VALUE),
], ids=["workers0", "workers-1", "workers0-bad-init", "init-int", "init-str",
        "mtpc-str", "mtpc-float", "mtpc0", "mtpc-neg"])
def test_constructor_errors(executor_class, kwargs, etype, message):
    skip_without_mtpc(executor_class, kwargs)
    kwargs = dict(kwargs, mp_context=multiprocessing.get_context("forkserver"))
    with pytest.raises(etype) as info:
        executor_class(**kwargs)
    assert type(info.value) is etype
    assert str(info.value) == message


@pytest.mark.parametrize("mtpc", [1, "1", 0],
                         ids=["valid", "bad-type", "bad-value"])
def test_constructor_max_tasks_per_child_with_fork(executor_class, mtpc):
    skip_without_mtpc(executor_class)
    # The type and value are checked first; a valid value with a 'fork'
    # context is the ValueError about the start method.
    expected = {1: (ValueError, MSG_MTPC_FORK),
                "1": (TypeError, MSG_MTPC_TYPE),
                0: (ValueError, MSG_MTPC_VALUE)}[mtpc]
    with pytest.raises(expected[0]) as info:
        executor_class(1, mp_context=multiprocessing.get_context("fork"),
                       max_tasks_per_child=mtpc)
    assert str(info.value) == expected[1]


def test_constructor_asks_the_context_first(executor_class):
    # The stdlib asks mp_context for its start method before it looks at
    # the initializer: an object that is no context fails first.
    with pytest.raises(AttributeError):
        executor_class(1, mp_context=object(), initializer=5)


@pytest.mark.parametrize("initargs", [5, None, [1, 2]],
                         ids=["int", "None", "list"])
def test_constructor_keeps_initargs_as_given(executor_class, initargs):
    # Not checked, nor converted: the stdlib stores them and passes them
    # to the initializer as they are (*initargs, in each worker).
    p = executor_class(1, mp_context=multiprocessing.get_context("forkserver"),
                       initargs=initargs)
    try:
        assert p._initargs is initargs
        assert p.submit(ps.add, 1, 2).result(timeout=T) == 3
    finally:
        p.shutdown(wait=True)


def test_initargs_a_list_reach_the_initializer(make_pool):
    p = make_pool(1, initializer=ts.record_init_args, initargs=[1, "two"])
    assert p.submit(ts.init_args).result(timeout=T) == (1, "two")


def test_initargs_not_iterable_fail_the_initializer(make_pool):
    # initializer(*5) raises in the worker: the pool breaks, as for any
    # initializer that fails.
    p = make_pool(1, initializer=ts.record_init_args, initargs=5)
    exc = p.submit(ps.add, 1, 2).exception(timeout=T)
    assert isinstance(exc, cfp.BrokenProcessPool)


def test_constructor_max_workers_not_a_number(executor_class):
    # max_workers <= 0 on a str: the comparison's TypeError.
    with pytest.raises(TypeError):
        executor_class("2")


def test_constructor_accepts_valid_arguments(executor_class):
    skip_without_mtpc(executor_class)
    p = executor_class(max_workers=1,
                       mp_context=multiprocessing.get_context("forkserver"),
                       initializer=ps.init_set_global, initargs=("x",),
                       max_tasks_per_child=3)
    try:
        assert p.submit(ps.read_global).result(timeout=T)[2] == "x"
    finally:
        p.shutdown(wait=True)


def test_constructor_default_max_workers(executor_class):
    p = executor_class(mp_context=multiprocessing.get_context("forkserver"))
    try:
        assert p.submit(ps.add, 1, 2).result(timeout=T) == 3
    finally:
        p.shutdown(wait=True)


# ---- submit / result / exception ----------------------------------------------

def test_submit_result(pool):
    f = pool.submit(ps.add, 1, 2)
    assert f.result(timeout=T) == 3
    assert f.done() and not f.cancelled() and not f.running()
    assert f.exception(timeout=T) is None
    assert pool.submit(ps.add, "a", b="b").result(timeout=T) == "ab"
    worker = pool.submit(ps.pid).result(timeout=T)
    assert worker != os.getpid()


def test_result_and_exception_timeout(pool, gate):
    f = pool.submit(ps.gated, gate.path, "late")
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        f.exception(timeout=0.05)
    assert not f.done()
    gate.open()
    assert f.result(timeout=T) == "late"


def test_worker_exception_reraised_with_remote_traceback(pool):
    f = pool.submit(ps.raise_error, ValueError, "boom", 42)
    with pytest.raises(ValueError) as info:
        f.result(timeout=T)
    exc = info.value
    assert type(exc) is ValueError
    assert exc.args == ("boom", 42)
    text = remote_traceback_text(exc)
    assert "Traceback (most recent call last)" in text
    assert "raise_error" in text              # the worker's frame
    assert "process_support.py" in text
    assert "ValueError: ('boom', 42)" in text
    # result() raises the same exception again; exception() returns it
    assert f.exception(timeout=T) is exc
    with pytest.raises(ValueError) as again:
        f.result(timeout=T)
    assert again.value is exc


def test_worker_exception_custom_class(pool):
    f = pool.submit(ps.raise_error, ps.CustomError, "custom", 1)
    exc = f.exception(timeout=T)
    assert type(exc) is ps.CustomError
    assert exc.args == ("custom", 1)
    assert "CustomError" in remote_traceback_text(exc)
    # the pool goes on after a task raised
    assert pool.submit(ps.add, 2, 2).result(timeout=T) == 4


def test_worker_system_exit_is_the_futures_exception(pool):
    # The stdlib's worker catches BaseException: SystemExit raised by a task
    # fails that task (and is re-raised by result()), the worker lives on.
    f = pool.submit(ps.raise_system_exit, 3)
    exc = f.exception(timeout=T)
    assert type(exc) is SystemExit and exc.code == 3
    with pytest.raises(SystemExit):
        f.result(timeout=T)
    assert pool.submit(ps.add, 1, 1).result(timeout=T) == 2


def test_worker_exit_fails_the_future_with_broken_process_pool(make_pool):
    # A worker that dies while running a task: the stdlib fails every
    # pending future and breaks the pool; nativepool (documented) fails
    # only that task, with WorkerDiedError, a BrokenProcessPool.  Only the
    # common part is checked: the future's exception is a BrokenProcessPool.
    p = make_pool(1)
    exc = p.submit(ps.exit_worker, 3).exception(timeout=T)
    assert isinstance(exc, cfp.BrokenProcessPool), repr(exc)


def test_submit_fn_is_positional_only(pool):
    # 'fn' and 'self' as keyword arguments reach the function.
    f = pool.submit(ps.echo_args, 1, fn="F", self="S")
    assert f.result(timeout=T) == ((1,), {"fn": "F", "self": "S"})
    with pytest.raises(TypeError):
        pool.submit(fn=ps.echo_args)


def test_submit_after_shutdown(pool):
    assert pool.submit(ps.add, 1).result(timeout=T) == 1
    pool.shutdown(wait=True)
    with pytest.raises(RuntimeError) as info:
        pool.submit(ps.add, 1)
    assert str(info.value) == MSG_SHUTDOWN
    # map submits eagerly: the same error from the map() call itself
    with pytest.raises(RuntimeError) as info:
        pool.map(ps.square, [1, 2])
    assert str(info.value) == MSG_SHUTDOWN


def test_submit_after_shutdown_without_any_task(executor_class):
    p = executor_class(1, mp_context=multiprocessing.get_context("forkserver"))
    p.shutdown(wait=True)
    with pytest.raises(RuntimeError) as info:
        p.submit(ps.add, 1)
    assert str(info.value) == MSG_SHUTDOWN


def test_submit_unpicklable_argument_after_shutdown(pool):
    pool.shutdown(wait=True)
    with pytest.raises(RuntimeError) as info:
        pool.submit(ps.identity, threading.Lock())
    assert str(info.value) == MSG_SHUTDOWN


# ---- cancel -------------------------------------------------------------------------

def test_cancel_pending_but_not_running(make_pool, gate):
    p = make_pool(1)
    running = p.submit(ps.gated, gate.path, "r", gate.started(0))
    pending = [p.submit(ps.add, i) for i in range(6)]
    gate.wait_started(0)
    assert not running.cancel()
    assert running.running() and not running.cancelled()
    # The stdlib has already moved a few pending calls to its call queue
    # (where they are RUNNING); the last one is still cancellable.
    last = pending[-1]
    assert last.cancel()
    assert last.cancelled() and last.done()
    assert last.cancel()              # cancelling again: still True
    with pytest.raises(cf.CancelledError):
        last.result(timeout=T)
    gate.open()
    assert running.result(timeout=T) == "r"
    for i, f in enumerate(pending[:-1]):
        if not f.cancelled():
            assert f.result(timeout=T) == i


# ---- map ------------------------------------------------------------------------------

def test_map_results_in_order(pool):
    assert list(pool.map(ps.square, range(20))) == [i * i for i in range(20)]


@pytest.mark.parametrize("chunksize", [1, 3, 7, 100])
def test_map_chunksize(pool, chunksize):
    out = list(pool.map(ps.add, range(50), range(0, 500, 10), chunksize=chunksize))
    assert out == [i + 10 * i for i in range(50)]


def test_map_chunks_run_in_one_process(pool):
    # a chunk is one task: all its items run in the same worker
    pids = list(pool.map(ps.pid, range(10), chunksize=5))
    assert len(set(pids[:5])) == 1 and len(set(pids[5:])) == 1
    assert os.getpid() not in pids


@pytest.mark.parametrize("chunksize", [0, -1])
def test_map_bad_chunksize(pool, chunksize):
    with pytest.raises(ValueError) as info:
        pool.map(ps.square, [1, 2], chunksize=chunksize)
    assert str(info.value) == MSG_CHUNKSIZE


def test_map_multiple_iterables_shortest_wins(pool):
    assert list(pool.map(ps.add, [1, 2, 3], [10, 20])) == [11, 22]
    assert list(pool.map(ps.add, [1, 2, 3], itertools.count())) == [1, 3, 5]
    assert list(pool.map(ps.add, [1, 2, 3], [10, 20, 30, 40], chunksize=2)) \
        == [11, 22, 33]


def test_map_collects_input_at_once(pool):
    # Without buffersize the iterables are collected immediately (the
    # docs: "rather than lazily"), every call submitted by map() itself.
    consumed = []

    def source():
        for i in range(10):
            consumed.append(i)
            yield i

    it = pool.map(ps.square, source())
    assert consumed == list(range(10))
    assert list(it) == [i * i for i in range(10)]


def test_map_empty(pool):
    assert list(pool.map(ps.square, [])) == []
    assert list(pool.map(ps.square, [], chunksize=4)) == []
    assert list(pool.map(ps.add, [1, 2], [])) == []


@pytest.mark.parametrize("chunksize", [1, 2])
def test_map_exception_at_the_right_item(pool, chunksize):
    it = pool.map(ps.div, [1, 2, 3, 4], [1, 1, 0, 1], chunksize=chunksize)
    assert next(it) == 1.0
    assert next(it) == 2.0
    with pytest.raises(ZeroDivisionError) as info:
        next(it)
    assert "div" in remote_traceback_text(info.value)
    # the iterator is finished once it raised
    assert list(it) == []


def test_map_is_lazy(pool, gate):
    # map() returns while items 1 and 2 still wait on the gate, and the
    # first result is available before the others are done.
    it = pool.map(ps.gated_item, [gate.path] * 3, [0, 1, 2])
    assert next(it) == 0
    assert not gate.is_open
    gate.open()
    assert list(it) == [10, 20]


def test_map_timeout(pool, gate):
    it = pool.map(ps.gated, [gate.path, gate.path], timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        next(it)


def test_map_timeout_not_reached(pool):
    assert list(pool.map(ps.square, range(5), timeout=T)) == [0, 1, 4, 9, 16]


def _collected_futures_logged(pool, records):
    gc.collect()
    if isinstance(pool, np.ProcessPool):
        pool.submit(ps.add, 1).result(T)   # drains deferred releases
    gc.collect()
    return [r for r in records if "never retrieved" in r.getMessage()]


@pytest.mark.parametrize("chunksize", [1, 2])
def test_map_logs_no_failure_of_its_own_futures(pool, log_capture, chunksize):
    # The user never holds map's futures: the first failure is raised by
    # the iterator, and nothing is logged of the others (the stdlib's
    # futures never log), however the iterator ends.
    records = log_capture("nativepool")
    bad = range(chunksize, 8)
    it = pool.map(ts.fail_on, range(8), [bad] * 8, chunksize=chunksize)
    assert [next(it) for _ in range(chunksize)] == list(range(chunksize))
    with pytest.raises(ValueError, match="item %d failed" % chunksize):
        list(it)
    del it
    dropped = pool.map(ts.fail_on, range(4), [range(4)] * 4)   # never read
    list(pool.map(ps.square, range(4)))       # after it, all of them ran
    del dropped
    assert _collected_futures_logged(pool, records) == []


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_keeps_no_result_already_taken(pool, chunksize):
    # Each result is the consumer's alone once taken: the iterator (and
    # anything of the pool's) lets go of it, as the stdlib's does.
    it = pool.map(ts.box, range(9), chunksize=chunksize)
    refs = []
    for i in range(9):
        r = next(it)
        assert r.value == i
        refs.append(weakref.ref(r))
        del r
        gc.collect()
        alive = [ref().value for ref in refs if ref() is not None]
        assert alive == [], "results %s taken, still alive" % alive
    assert list(it) == []


# ---- map(buffersize=): Python 3.14's; nativepool has it on every Python --------

BUFFERSIZE_IMPLS = ["nativepool"] + (["stdlib"] if sys.version_info >= (3, 14) else [])


@pytest.fixture(params=BUFFERSIZE_IMPLS)
def buffer_pool(request):
    p = IMPLEMENTATIONS[request.param](
        2, mp_context=multiprocessing.get_context("forkserver"))
    yield p
    p.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("bad, etype, message", [
    ("2", TypeError, MSG_BUFFERSIZE_TYPE),
    (2.0, TypeError, MSG_BUFFERSIZE_TYPE),
    (0, ValueError, MSG_BUFFERSIZE_VALUE),
    (-1, ValueError, MSG_BUFFERSIZE_VALUE),
])
def test_map_bad_buffersize(buffer_pool, bad, etype, message):
    with pytest.raises(etype) as info:
        buffer_pool.map(ps.square, [1, 2], buffersize=bad)
    assert str(info.value) == message


def test_map_buffersize_consumes_input_lazily(buffer_pool):
    consumed = []

    def source():
        for i in range(10):
            consumed.append(i)
            yield i

    it = buffer_pool.map(ps.square, source(), buffersize=2)
    assert len(consumed) == 2
    assert next(it) == 0
    assert len(consumed) == 3
    assert next(it) == 1
    assert len(consumed) == 4
    assert list(it) == [i * i for i in range(2, 10)]
    assert len(consumed) == 10


def test_map_buffersize_counts_chunks(buffer_pool):
    consumed = []

    def source():
        for i in range(10):
            consumed.append(i)
            yield i

    it = buffer_pool.map(ps.square, source(), chunksize=3, buffersize=1)
    assert len(consumed) == 3          # one chunk of 3
    assert [next(it) for _ in range(3)] == [0, 1, 4]
    assert len(consumed) == 6
    assert list(it) == [i * i for i in range(3, 10)]


def test_map_buffersize_infinite_input(buffer_pool):
    it = buffer_pool.map(ps.square, itertools.count(), buffersize=3)
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    it.close()


# ---- shutdown ---------------------------------------------------------------------------

def test_shutdown_cancel_futures(make_pool, gate):
    p = make_pool(1)
    running = p.submit(ps.gated, gate.path, "r", gate.started(0))
    gate.wait_started(0)
    pending = [p.submit(ps.add, i) for i in range(10)]
    p.shutdown(wait=False, cancel_futures=True)
    # The stdlib cancels from its manager thread: wait for it (hang guard).
    # The last pending future cannot have reached a worker (the stdlib's
    # call queue holds max_workers + 1 calls).
    assert wait_until(lambda: pending[-1].cancelled(), T)
    assert not running.done()
    gate.open()
    assert running.result(timeout=T) == "r"
    # (not cf.wait(pending): the stdlib's manager thread cancels with
    # cancel(), which wait() does not count as done until notified)
    n_cancelled = 0
    for i, f in enumerate(pending):
        if f.cancelled():
            n_cancelled += 1
            with pytest.raises(cf.CancelledError):
                f.result(timeout=T)
        else:
            assert f.result(timeout=T) == i
    assert n_cancelled >= len(pending) - 2
    p.shutdown(wait=True)
    with pytest.raises(RuntimeError) as info:
        p.submit(ps.add, 1)
    assert str(info.value) == MSG_SHUTDOWN


def test_shutdown_wait_cancel_futures_from_thread(make_pool, gate):
    # shutdown(wait=True, cancel_futures=True) blocks until the running
    # task is done, and cancels the rest.
    p = make_pool(1)
    running = p.submit(ps.gated, gate.path, "r", gate.started(0))
    gate.wait_started(0)
    pending = [p.submit(ps.add, i) for i in range(6)]
    finished = threading.Event()

    def stop():
        p.shutdown(wait=True, cancel_futures=True)
        finished.set()

    t = threading.Thread(target=stop, daemon=True)
    t.start()
    assert wait_until(lambda: pending[-1].cancelled(), T)
    assert not finished.is_set()       # the running task holds it up
    gate.open()
    t.join(T)
    assert finished.is_set()
    assert running.done() and running.result() == "r"
    assert all(f.done() for f in pending)


def test_shutdown_twice(pool):
    assert pool.submit(ps.add, 5).result(timeout=T) == 5
    pool.shutdown()
    pool.shutdown()
    pool.shutdown(wait=False)
    pool.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(RuntimeError) as info:
        pool.submit(ps.add, 1)
    assert str(info.value) == MSG_SHUTDOWN


def test_shutdown_unused_pool_twice(executor_class):
    p = executor_class(2, mp_context=multiprocessing.get_context("forkserver"))
    p.shutdown(wait=True)
    p.shutdown(wait=True)


def test_shutdown_wait_waits_for_all_work(pool):
    fs = [pool.submit(ps.add, i) for i in range(20)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in fs)
    assert [f.result() for f in fs] == list(range(20))


def test_shutdown_wait_ends_the_workers(pool):
    # "will not return until ... the resources associated with the executor
    # have been freed": the worker processes have exited and been reaped.
    pids = set(pool.map(ps.pid, range(40)))
    assert pids and os.getpid() not in pids
    pool.shutdown(wait=True)
    for worker in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)


def test_shutdown_nowait_still_completes_work(pool, gate):
    fs = [pool.submit(ps.gated, gate.path, i) for i in range(4)]
    pool.shutdown(wait=False)
    assert not any(f.done() for f in fs)
    with pytest.raises(RuntimeError) as info:
        pool.submit(ps.add, 1)
    assert str(info.value) == MSG_SHUTDOWN
    gate.open()
    assert [f.result(timeout=T) for f in fs] == [0, 1, 2, 3]


def test_context_manager_waits_for_work(executor_class, gate):
    ctx = multiprocessing.get_context("forkserver")
    opener = threading.Timer(0.3, gate.open)
    with executor_class(2, mp_context=ctx) as p:
        fs = [p.submit(ps.gated, gate.path, i) for i in range(4)]
        fs.append(p.submit(ps.add, 4))
        opener.start()
    try:
        # __exit__ is shutdown(wait=True): everything is done
        assert all(f.done() for f in fs)
        assert [f.result() for f in fs] == [0, 1, 2, 3, 4]
        with pytest.raises(RuntimeError) as info:
            p.submit(ps.add, 1)
        assert str(info.value) == MSG_SHUTDOWN
    finally:
        opener.cancel()
        gate.open()


def test_context_manager_returns_the_pool(executor_class):
    p = executor_class(1, mp_context=multiprocessing.get_context("forkserver"))
    with p as entered:
        assert entered is p
        assert entered.submit(ps.add, 1, 2).result(timeout=T) == 3


# ---- wait / as_completed / callbacks --------------------------------------------------

def test_wait_all_completed(pool):
    fs = [pool.submit(ps.square, i) for i in range(8)]
    done, not_done = cf.wait(fs, timeout=T)
    assert done == set(fs) and not not_done
    assert sorted(f.result() for f in done) == [i * i for i in range(8)]


def test_wait_first_completed(pool, gate):
    slow = pool.submit(ps.gated, gate.path, "slow")
    quick = pool.submit(ps.add, 1, 1)
    done, not_done = cf.wait([slow, quick], timeout=T,
                             return_when=cf.FIRST_COMPLETED)
    assert quick in done and slow in not_done
    gate.open()
    done, not_done = cf.wait([slow, quick], timeout=T)
    assert done == {slow, quick}


def test_wait_first_exception(pool, gate):
    slow = pool.submit(ps.gated, gate.path, "slow")
    bad = pool.submit(ps.raise_error, ps.CustomError, "x")
    done, not_done = cf.wait([slow, bad], timeout=T,
                             return_when=cf.FIRST_EXCEPTION)
    assert bad in done and slow in not_done
    assert type(bad.exception()) is ps.CustomError


def test_wait_timeout(pool, gate):
    slow = pool.submit(ps.gated, gate.path, "slow")
    done, not_done = cf.wait([slow], timeout=0.1)
    assert not done and not_done == {slow}


def test_as_completed(pool, gate):
    slow = pool.submit(ps.gated, gate.path, "slow")
    quick = [pool.submit(ps.add, i) for i in range(3)]
    it = cf.as_completed([slow] + quick, timeout=T)
    first = [next(it) for _ in range(3)]
    assert set(first) == set(quick)
    gate.open()
    assert next(it) is slow
    assert list(it) == []
    assert slow.result() == "slow"


def test_as_completed_timeout(pool, gate):
    slow = pool.submit(ps.gated, gate.path, "slow")
    with pytest.raises(cf.TimeoutError):
        for _ in cf.as_completed([slow], timeout=0.1):
            pass


def test_add_done_callback(pool, gate):
    calls = []
    lock = threading.Lock()

    def cb(fut):
        with lock:
            calls.append(fut)

    f = pool.submit(ps.gated, gate.path, 5)
    g = pool.submit(ps.raise_error, ps.CustomError, "cb")
    f.add_done_callback(cb)
    g.add_done_callback(cb)
    assert wait_until(lambda: g in calls, T)
    assert f not in calls               # still waiting on the gate
    gate.open()
    assert f.result(timeout=T) == 5
    assert wait_until(lambda: len(calls) == 2, T)
    pool.shutdown(wait=True)
    assert sorted(map(id, calls)) == sorted([id(f), id(g)])   # once each
    # added to a finished future: runs at once, in the calling thread
    threads = []
    f.add_done_callback(lambda fut: threads.append((fut, threading.current_thread())))
    assert threads == [(f, threading.current_thread())]


def test_add_done_callback_on_cancelled_future(make_pool, gate):
    p = make_pool(1)
    running = p.submit(ps.gated, gate.path, "r", gate.started(0))
    gate.wait_started(0)
    pending = [p.submit(ps.add, i) for i in range(5)]
    calls = []
    pending[-1].add_done_callback(calls.append)
    assert pending[-1].cancel()
    assert calls == [pending[-1]]       # cancel() runs the callbacks
    gate.open()
    assert running.result(timeout=T) == "r"
    p.shutdown(wait=True)
    assert calls == [pending[-1]]


# ---- initializer ----------------------------------------------------------------------

def test_initializer_runs_in_each_worker(make_pool):
    p = make_pool(2, initializer=ps.init_set_global, initargs=("hello",))
    results = [f.result(timeout=T) for f in
               [p.submit(ps.read_global) for _ in range(8)]]
    for worker_pid, init_pid, value in results:
        assert worker_pid == init_pid
        assert value == "hello"
    assert list(p.map(ps.read_global, range(4)))[0][2] == "hello"


def test_initializer_runs_in_replacement_workers(make_pool):
    p = make_pool(1, initializer=ps.init_set_global, initargs=(7,),
                  max_tasks_per_child=1)
    results = [p.submit(ps.read_global).result(timeout=T) for _ in range(3)]
    assert len({r[0] for r in results}) == 3
    assert all(r[0] == r[1] and r[2] == 7 for r in results)


def test_initializer_failure_breaks_the_pool(make_pool):
    # The messages differ: the stdlib says "A process in the process pool
    # was terminated abruptly while the future was running or pending." (on
    # the future) and "A child process terminated abruptly, the process pool
    # is not usable anymore" (on submit); nativepool says "A process
    # initializer failed, the process pool is not usable anymore".  Only the
    # types are compared.
    p = make_pool(1, initializer=ps.init_fail, initargs=("init boom",))
    f = p.submit(ps.add, 1, 2)
    exc = f.exception(timeout=T)
    assert isinstance(exc, cfp.BrokenProcessPool)
    with pytest.raises(cfp.BrokenProcessPool):
        f.result(timeout=T)
    with pytest.raises(cfp.BrokenProcessPool):
        p.submit(ps.add, 1, 2)
    with pytest.raises(cfp.BrokenProcessPool):
        p.map(ps.square, [1])
    p.shutdown(wait=True)


def test_initializer_failure_is_logged_in_the_worker(make_pool):
    # The stdlib's worker logs "Exception in initializer:" (CRITICAL, with
    # the traceback) on the concurrent.futures logger, in the worker
    # process: a handler the worker has (here a QueueHandler, as the
    # logging cookbook sends workers' records to the parent) sees it.
    queue = multiprocessing.get_context("forkserver").Queue()
    try:
        p = make_pool(1, initializer=ts.log_to_queue_then_fail,
                      initargs=(queue,))
        exc = p.submit(ps.add, 1, 2).exception(timeout=T)
        assert isinstance(exc, cfp.BrokenProcessPool)
        record = queue.get(timeout=T)   # a hang guard
        assert record.name == "concurrent.futures"
        assert record.levelname == "CRITICAL"
        assert record.getMessage().startswith("Exception in initializer:")
        assert "initializer failed on purpose" in record.getMessage()
        assert record.process != os.getpid()
    finally:
        queue.close()
        queue.join_thread()


# ---- max_tasks_per_child ------------------------------------------------------------

def test_max_tasks_per_child_one(make_pool):
    p = make_pool(1, max_tasks_per_child=1)
    pids = [p.submit(ps.pid).result(timeout=T) for _ in range(3)]
    assert len(set(pids)) == 3
    assert os.getpid() not in pids


def test_max_tasks_per_child_two(make_pool):
    p = make_pool(1, max_tasks_per_child=2)
    pids = [p.submit(ps.pid).result(timeout=T) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_max_tasks_per_child_spawn(make_pool):
    p = make_pool(1, method="spawn", max_tasks_per_child=1)
    pids = [p.submit(ps.pid).result(timeout=T) for _ in range(2)]
    assert pids[0] != pids[1]


# ---- pickling failures ---------------------------------------------------------------

@pytest.mark.parametrize("arg, text", [
    (threading.Lock(), "cannot pickle '_thread.lock' object"),
    ((i for i in range(3)), "cannot pickle 'generator' object"),
], ids=["lock", "generator"])
def test_unpicklable_argument_fails_that_future(pool, arg, text):
    good = pool.submit(ps.add, 1, 2)
    bad = pool.submit(ps.identity, arg)      # submit itself does not raise
    exc = bad.exception(timeout=T)
    assert type(exc) is TypeError
    assert str(exc) == text
    with pytest.raises(TypeError):
        bad.result(timeout=T)
    assert good.result(timeout=T) == 3
    assert pool.submit(ps.add, 3, 4).result(timeout=T) == 7


def test_unpicklable_argument_error_has_remote_traceback_cause(pool):
    # The stdlib's feeder thread attaches the pickling error's traceback as
    # a _RemoteTraceback __cause__ (_SafeQueue._on_queue_feeder_error).
    exc = pool.submit(ps.identity, threading.Lock()).exception(timeout=T)
    assert type(exc) is TypeError
    text = remote_traceback_text(exc)
    assert "cannot pickle '_thread.lock' object" in text


@pytest.mark.parametrize("fn, text", [
    (ps.return_lock, "cannot pickle '_thread.lock' object"),
    (ps.return_generator, "cannot pickle 'generator' object"),
], ids=["lock", "generator"])
def test_unpicklable_result_fails_that_future(pool, fn, text):
    exc = pool.submit(fn).exception(timeout=T)
    assert type(exc) is TypeError
    assert str(exc) == text
    assert text in remote_traceback_text(exc)
    assert pool.submit(ps.add, 3, 4).result(timeout=T) == 7
    assert list(pool.map(ps.square, range(4))) == [0, 1, 4, 9]


def test_exception_that_cannot_be_unpickled_in_the_parent(make_pool):
    # UnpicklableError pickles in the worker, but unpickling it in the
    # parent raises TypeError (its __init__ wants two arguments).  The
    # stdlib cannot tell which task the reply belonged to: the future fails
    # with BrokenProcessPool, whose __cause__ (a _RemoteTraceback) carries
    # the unpickling error, and the pool is broken from then on.
    # nativepool's fails with TransferError (a BrokenProcessPool) whose
    # __cause__ is the unpickling error itself, and the pool goes on.
    p = make_pool(1)
    f = p.submit(ps.raise_unpicklable_error)
    exc = f.exception(timeout=T)
    assert isinstance(exc, cfp.BrokenProcessPool), \
        "expected BrokenProcessPool, got %r" % (exc,)
    if isinstance(p, np.ProcessPool):
        assert type(exc) is np.TransferError
        assert type(exc.__cause__) is TypeError
        text = str(exc.__cause__)
    else:
        text = remote_traceback_text(exc)
    assert "__init__() missing 1 required positional " \
           "argument: 'b'" in text


def test_exception_that_cannot_be_unpickled_is_reported(make_pool):
    # The part both must share, whatever happens to the pool: the future
    # fails (no hang), and the unpickling error is reported on it, in the
    # exception or in its __cause__ chain.
    p = make_pool(1)
    exc = p.submit(ps.raise_unpicklable_error).exception(timeout=T)
    assert exc is not None
    texts = []
    e = exc
    while e is not None:
        texts.append(str(e))
        e = e.__cause__
    assert any("__init__() missing 1 required positional "
               "argument: 'b'" in t for t in texts), texts


# ---- data -----------------------------------------------------------------------------

def test_large_argument_and_result(pool):
    data = os.urandom(8 << 20)
    assert pool.submit(ps.reverse_bytes, data).result(timeout=T) == data[::-1]
    n = (8 << 20) + 3
    assert pool.submit(ps.sized, n).result(timeout=T) == ps.sized(n)
    big = [data[:1 << 20], data[1 << 20:3 << 20]]
    assert list(pool.map(ps.reverse_bytes, big)) == [b[::-1] for b in big]


def test_many_tasks(pool):
    fs = [pool.submit(ps.add, i, 1) for i in range(2000)]
    assert [f.result(timeout=T) for f in fs] == list(range(1, 2001))
    assert list(pool.map(ps.square, range(2000), chunksize=50)) \
        == [i * i for i in range(2000)]


def test_submit_from_several_threads(pool):
    n_threads, per_thread = 4, 50
    barrier = threading.Barrier(n_threads)
    results = [None] * n_threads
    errors = []

    def submitter(k):
        try:
            barrier.wait(T)
            fs = [pool.submit(ps.add, k * 1000, i) for i in range(per_thread)]
            results[k] = [f.result(timeout=T) for f in fs]
        except BaseException as exc:   # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(k,), daemon=True)
               for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * T)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for k in range(n_threads):
        assert results[k] == [k * 1000 + i for i in range(per_thread)]


# ---- start methods ------------------------------------------------------------------

@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_start_methods(make_pool, method):
    p = make_pool(2 if method != "spawn" else 1, method=method)
    assert p.submit(ps.add, 20, 22).result(timeout=T) == 42
    assert list(p.map(ps.square, range(6))) == [0, 1, 4, 9, 16, 25]
    assert p.submit(ps.pid).result(timeout=T) != os.getpid()
    exc = p.submit(ps.raise_error, ps.CustomError, method).exception(timeout=T)
    assert type(exc) is ps.CustomError and exc.args == (method,)


MAIN_SCRIPT = textwrap.dedent("""
    import concurrent.futures, multiprocessing, os, sys
    import nativepool

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    def norm2(p):
        return p.x * p.x + p.y * p.y

    def square(x):
        return x * x

    def boom():
        raise KeyError("from __main__")

    if __name__ == "__main__":
        cls = {"stdlib": concurrent.futures.ProcessPoolExecutor,
               "nativepool": nativepool.ProcessPool}[sys.argv[1]]
        ctx = multiprocessing.get_context(sys.argv[2])
        with cls(2, mp_context=ctx) as pool:
            print(list(pool.map(square, range(5))))
            print(pool.submit(norm2, Point(3, 4)).result(timeout=30))
            try:
                pool.submit(boom).result(timeout=30)
            except KeyError as exc:
                print("KeyError", exc.args[0])
""")


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_function_defined_in_main_script(executor_class, method, tmp_path):
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    name = [k for k, v in IMPLEMENTATIONS.items() if v is executor_class][0]
    env = dict(os.environ)
    python_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [python_dir] + [x for x in [env.get("PYTHONPATH")] if x])
    try:
        proc = subprocess.run([sys.executable, str(script), name, method],
                              capture_output=True, text=True, timeout=60,
                              env=env, cwd=str(tmp_path))
    except subprocess.TimeoutExpired as exc:
        pytest.fail("script hung\nstdout:\n%s\nstderr:\n%s"
                    % (exc.stdout, exc.stderr))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[0, 1, 4, 9, 16]", "25", "KeyError from __main__"], proc.stderr


# ---- nativepool only ------------------------------------------------------------------

@pytest.mark.nativepool_only
def test_nativepool_is_a_process_pool_executor():
    assert np.ProcessPoolExecutor is np.ProcessPool
    p = np.ProcessPool(1, mp_context=multiprocessing.get_context("forkserver"))
    try:
        assert isinstance(p, cf.ProcessPoolExecutor)
        assert isinstance(p, cf.Executor)
    finally:
        p.shutdown(wait=True)


@pytest.mark.nativepool_only
def test_cancel_running_is_not_logged(log_capture, tmp_path):
    # cancel_running stops a task on purpose, as cancel() a pending one:
    # its CancelledError is nobody's news.
    records = log_capture("nativepool")
    p = np.ProcessPool(1, mp_context=multiprocessing.get_context("forkserver"))
    try:
        started = str(tmp_path / "started")
        f = p.submit(ts.wait_long, started)
        assert wait_until(lambda: os.path.exists(started), T)
        assert p.cancel_running(f)
        assert isinstance(f.exception(timeout=T), cf.CancelledError)
        f = p.submit(ts.wait_long, started + "2")
        assert wait_until(lambda: os.path.exists(started + "2"), T)
        assert p.cancel_running(f)
        cf.wait([f], timeout=T)
        del f
        assert _collected_futures_logged(p, records) == []
    finally:
        p.shutdown(wait=True)


@pytest.mark.nativepool_only
def test_nativepool_futures_are_nativepool_futures():
    p = np.ProcessPool(1, mp_context=multiprocessing.get_context("forkserver"))
    try:
        futures = [p.submit(ps.add, 1, 2),
                   p.submit(ps.raise_error, ps.CustomError, "x"),
                   p.submit(ps.identity, threading.Lock())]   # fails at once
        for f in futures:
            assert isinstance(f, np.Future), type(f)
            assert isinstance(f, cf.Future)
        assert futures[0].result(timeout=T) == 3
        cf.wait(futures, timeout=T)
        assert all(f.done() for f in futures)
    finally:
        p.shutdown(wait=True)
