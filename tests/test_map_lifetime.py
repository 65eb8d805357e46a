"""ThreadPool.map: what runs, what is cancelled, and what stays alive.

Issue 11.  The stdlib's map() (concurrent/futures/_base.py) submits every
item at once and returns a generator whose ``finally`` cancels the futures
it has not yielded yet.  So:
  - an iterator that is never started runs every item, even if it is
    dropped or closed at once (a generator that never started runs no
    finally);
  - closing or dropping one that has started cancels only the items not yet
    running;
  - with buffersize (3.14) dropping the iterator stops pulling input, and
    the iterator holds its executor only weakly: once the pool is gone no
    more input is pulled;
  - the iterator does not keep the pool (so its workers) alive, keeps no
    reference to a result it has handed out, and is collectable in a cycle.

Behavioural tests run against nativepool.ThreadPool and the stdlib's
ThreadPoolExecutor (the ``executor_class`` fixture), so they prove the
stdlib's behaviour and not our reading of it; buffersize tests run against
the stdlib only from 3.14.
"""
import ast
import concurrent.futures as cf
import gc
import itertools
import sys
import threading
import time
import weakref

import pytest

from conftest import np, wait_until, run_script, HANG_TIMEOUT, MODULE_NAME

IMPLEMENTATIONS = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}
STDLIB_HAS_BUFFERSIZE = sys.version_info >= (3, 14)

_prefixes = itertools.count()


@pytest.fixture(params=list(IMPLEMENTATIONS), ids=list(IMPLEMENTATIONS))
def executor_class(request):
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def buffered_class(executor_class):
    """executor_class, for a test of buffersize: the stdlib has it from 3.14."""
    if executor_class is cf.ThreadPoolExecutor and not STDLIB_HAS_BUFFERSIZE:
        pytest.skip("the stdlib's map() takes buffersize from 3.14")
    return executor_class


@pytest.fixture
def make(executor_class):
    """make(max_workers, **kw): a pool of the implementation under test,
    shut down (waiting) at teardown."""
    made = []

    def factory(max_workers, **kw):
        p = executor_class(max_workers, **kw)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.shutdown(wait=True)


def native_or_skip():
    native = getattr(np, "native", None)
    if native is None:
        pytest.skip("the module under test has no native tasks")
    return native


class Recorder:
    """A task function that records the items it started and finished."""

    def __init__(self, block_on=None, delay=0.0):
        self.lock = threading.Lock()
        self.started = []
        self.finished = []
        self.block_on = block_on or {}
        self.delay = delay

    def __call__(self, x):
        with self.lock:
            self.started.append(x)
        if self.delay:
            time.sleep(self.delay)
        ev = self.block_on.get(x)
        if ev is not None and not ev.wait(HANG_TIMEOUT):
            raise AssertionError("gate never opened")
        with self.lock:
            self.finished.append(x)
        return x


# ---- 1. an unconsumed map runs every item ----------------------------------

def test_unconsumed_map_runs_every_item(executor_class, tmp_path):
    # The case: the result is never even bound.
    def write_file(i):
        (tmp_path / ("f%d" % i)).write_text(str(i))

    with executor_class(4) as pool:
        pool.map(write_file, range(100))
    assert sorted(int(p.name[1:]) for p in tmp_path.iterdir()) == list(range(100))


def test_unstarted_iterator_dropped_runs_every_item(executor_class):
    rec = Recorder(delay=0.001)
    pool = executor_class(2)
    try:
        it = pool.map(rec, range(200))
        del it
        gc.collect()
    finally:
        pool.shutdown(wait=True)
    assert sorted(rec.finished) == list(range(200))


def test_unstarted_iterator_closed_runs_every_item(executor_class):
    # Closing a generator that never started runs no finally: nothing is
    # cancelled, and the closed iterator is exhausted.
    rec = Recorder(delay=0.001)
    pool = executor_class(2)
    try:
        it = pool.map(rec, range(200))
        it.close()
        with pytest.raises(StopIteration):
            next(it)
    finally:
        pool.shutdown(wait=True)
    assert sorted(rec.finished) == list(range(200))


def test_unconsumed_native_map_runs_every_item(executor_class, tmp_path):
    native = native_or_skip()
    path = tmp_path / "data"
    path.write_bytes(b"abcdefgh" * 8)
    bufs = [bytearray(64) for _ in range(100)]
    with executor_class(4) as pool:
        pool.map(native.read_into, [str(path)] * 100, bufs)
    assert all(b == path.read_bytes() for b in bufs)


@pytest.mark.parametrize("how", ["close", "del"])
def test_started_iterator_stopped_cancels_only_not_running(make, how):
    gate0, gate1 = threading.Event(), threading.Event()
    rec = Recorder(block_on={0: gate0, 1: gate1})
    pool = make(1)
    it = pool.map(rec, range(30))
    gate0.set()
    assert next(it) == 0
    assert wait_until(lambda: 1 in rec.started)   # item 1 is running
    if how == "close":
        it.close()
    else:
        del it
        gc.collect()
    gate1.set()
    pool.shutdown(wait=True)
    # the running item finished; nothing queued ran
    assert rec.started == [0, 1]
    assert rec.finished == [0, 1]


def test_started_iterator_error_cancels_only_not_running(make):
    gate1 = threading.Event()

    def f(x):
        if x == 0:
            assert wait_until(lambda: 1 in rec.started)
            raise ValueError("zero")
        return rec(x)

    rec = Recorder(block_on={1: gate1, 2: gate1})
    pool = make(2)
    it = pool.map(f, range(30))
    with pytest.raises(ValueError, match="zero"):
        next(it)
    gate1.set()
    pool.shutdown(wait=True)
    # item 1 was running; the freed worker may have started item 2 before
    # the cancel (it then blocked on the gate too); nothing else ran
    assert 1 in rec.finished
    assert set(rec.finished) <= {1, 2}


def test_unstarted_buffersize_iterator_dropped_stops_input(buffered_class):
    pulled = []

    def source():
        for i in itertools.count():
            pulled.append(i)
            yield i

    rec = Recorder()
    pool = buffered_class(2)
    try:
        it = pool.map(rec, source(), buffersize=3)
        del it
        gc.collect()
    finally:
        pool.shutdown(wait=True)
    # the buffered items run, no more input is pulled
    assert pulled == [0, 1, 2]
    assert sorted(rec.finished) == [0, 1, 2]


def test_started_buffersize_iterator_closed_stops_input(buffered_class):
    pulled = []

    def source():
        for i in itertools.count():
            pulled.append(i)
            yield i

    pool = buffered_class(2)
    try:
        it = pool.map(lambda x: x, source(), buffersize=3)
        assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
        it.close()
        n = len(pulled)
        with pytest.raises(StopIteration):
            next(it)
    finally:
        pool.shutdown(wait=True)
    assert len(pulled) == n == 8


# ---- 2. the iterator does not keep the pool's workers alive ----------------

def _workers(prefix):
    return [t for t in threading.enumerate() if t.name.startswith(prefix + "_")]


def _assert_workers_exit(prefix):
    threads = _workers(prefix)
    for t in threads:
        t.join(HANG_TIMEOUT)     # bounds a hang only
    assert not [t for t in threads if t.is_alive()]


def test_pool_dropped_while_map_iterator_lives(executor_class):
    prefix = "maplife%d" % next(_prefixes)
    p = executor_class(5, thread_name_prefix=prefix)
    res = p.map(abs, range(-5, 5))
    assert wait_until(lambda: _workers(prefix))
    del p
    _assert_workers_exit(prefix)
    assert list(res) == [abs(x) for x in range(-5, 5)]


def test_pool_dropped_while_started_map_iterator_lives(executor_class):
    prefix = "maplife%d" % next(_prefixes)
    p = executor_class(3, thread_name_prefix=prefix)
    res = p.map(abs, range(-50, 50))
    assert next(res) == 50
    del p
    _assert_workers_exit(prefix)
    assert list(res) == [abs(x) for x in range(-49, 50)]


def test_pool_dropped_while_native_map_iterator_lives(executor_class):
    native = native_or_skip()
    prefix = "maplife%d" % next(_prefixes)
    p = executor_class(2, thread_name_prefix=prefix)
    res = p.map(native.sum_squares, range(100))
    del p
    _assert_workers_exit(prefix)
    assert list(res) == [n * (n - 1) * (2 * n - 1) // 6 for n in range(100)]


def test_pool_dropped_while_buffersize_iterator_lives(buffered_class):
    # 3.14: once the executor is gone, no more input is pulled; the buffered
    # results are still delivered, then the iterator ends.
    prefix = "maplife%d" % next(_prefixes)
    p = buffered_class(2, thread_name_prefix=prefix)
    res = p.map(abs, itertools.count(), buffersize=2)
    assert next(res) == 0           # submits item 2, yields item 0
    del p
    _assert_workers_exit(prefix)
    assert list(res) == [1, 2]


# ---- 3. item release never happens under the job lock ----------------------

DEADLOCK_SCRIPT = r"""
import concurrent.futures as cf, faulthandler, gc, sys, threading, time
# A deadlock on the GIL stops every Python thread: a C watchdog reports it
# (bounds a hang only).
faulthandler.dump_traceback_later(%(hang)d, exit=True)
KIND = %(kind)r
Pool = cf.ThreadPoolExecutor if KIND == "stdlib" else np.ThreadPool
ROUNDS = %(rounds)d

def run(name, fn):
    box = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(20)               # bounds a hang only
    if t.is_alive():
        out("HANG", name)
        sys.stdout.flush()
        import os; os._exit(1)
    return box[0] if box else None

def outcome(it):
    try:
        return next(it)
    except cf.CancelledError:
        return "cancelled"
    except StopIteration:
        return "stop"
    except ValueError:       # generator already executing
        return "busy"

# (a) several runners, items whose __del__ sleeps (lets the GIL go) and
# touches the pool; the consumer iterates while shutdown(cancel_futures).
# (The stdlib's shutdown drops cancelled work items while it holds
# _shutdown_lock, so a __del__ that submits deadlocks there: only ours.)
class Slow:
    def __init__(self, pool):
        self.pool = pool
    def __del__(self):
        time.sleep(0.0003)
        if KIND != "stdlib":
            try:
                self.pool.submit(abs, 1)
            except RuntimeError:
                pass

def scenario_a():
    pool = Pool(4)
    it = pool.map(lambda x: time.sleep(0.0005), [Slow(pool) for _ in range(300)])
    got = []
    def consume():
        try:
            for v in it:
                got.append(v)
        except cf.CancelledError:
            got.append("cancelled")
    c = threading.Thread(target=consume)
    c.start()
    time.sleep(0.005)
    pool.shutdown(wait=True, cancel_futures=True)
    c.join()
    return got[-1:] in (["cancelled"], [None])

# (b) the queued runner is given back by shutdown(cancel_futures=True):
# each dropped item's __del__ reads the map (in the shutdown thread).
HOLDER = {}
class Reader:
    def __del__(self):
        HOLDER["seen"].append(outcome(HOLDER["it"]))

def scenario_b():
    pool = Pool(1)
    gate = threading.Event()
    blocker = pool.submit(gate.wait, 10)
    HOLDER["seen"] = []
    HOLDER["it"] = pool.map(abs, [Reader() for _ in range(5)])
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    pool.shutdown(wait=True)
    seen = HOLDER["seen"]
    HOLDER.clear()
    return seen

# (c) a running runner sees the cancel and drops the rest: each dropped
# item's __del__ reads the map (in the runner's thread).
def scenario_c():
    pool = Pool(1)
    started, gate = threading.Event(), threading.Event()
    def f(x):
        if isinstance(x, int):
            started.set()
            gate.wait(10)
        return "r0"
    HOLDER["seen"] = []
    HOLDER["it"] = pool.map(f, [0] + [Reader() for _ in range(5)])
    started.wait(10)
    # before the shutdown: on the stdlib, the first dropped item's __del__
    # waits (in shutdown) for the running item
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=False, cancel_futures=True)
    pool.shutdown(wait=True)
    seen = HOLDER["seen"]
    HOLDER.clear()
    return seen

for r in range(ROUNDS):
    ok = run("a", scenario_a)
    if not ok:
        out("BAD a")
    out("b", run("b", scenario_b))
    out("c", run("c", scenario_c))
gc.collect()
out("done")
"""


@pytest.mark.parametrize("kind", ["nativepool", "stdlib"])
def test_item_release_during_cancelling_shutdown_no_deadlock(kind):
    if kind == "nativepool" and MODULE_NAME != "nativepool":
        pytest.skip("runs nativepool itself")
    r = run_script(DEADLOCK_SCRIPT % {"kind": kind, "rounds": 15,
                                      "hang": HANG_TIMEOUT * 2},
                   timeout=HANG_TIMEOUT * 4)
    assert "HANG" not in r.stdout and "Timeout (" not in r.stderr, \
        r.stdout + r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "BAD a" not in lines
    assert lines[-1] == "done"
    seen = {"b": [], "c": []}
    for line in lines[:-1]:
        name, _, outcomes = line.partition(" ")
        # "busy": another thread was inside next() (on the stdlib a worker
        # drops cancelled work items too, racing the shutdown thread)
        seen[name].append([x for x in ast.literal_eval(outcomes) if x != "busy"])
    assert len(seen["b"]) == len(seen["c"]) == 15
    for b in seen["b"]:
        # the first dropped item's __del__ finds its own call cancelled;
        # the iterator has then finished
        assert b[0] == "cancelled" and set(b[1:]) <= {"stop"}, seen["b"]
    for c in seen["c"]:
        # the running item's result, then the cancelled next one
        assert c[:2] == ["r0", "cancelled"] and set(c[2:]) <= {"stop"}, seen["c"]


# ---- 4. cycles through a map's items are collected ------------------------

class Holder:
    def method(self, x):
        return x


def test_cycle_through_a_result_is_collected(make):
    pool = make(2)
    h = Holder()
    it = pool.map(lambda x: h, [1])
    pool.shutdown(wait=True)         # the result waits in the iterator
    h.it = it                        # result -> iterator -> result
    wr = weakref.ref(h)
    del h, it
    gc.collect()
    assert wr() is None


def test_cycle_through_a_failure_is_collected(make):
    pool = make(2)
    h = Holder()

    def f(x):
        raise ValueError(h)
    it = pool.map(f, [1])
    pool.shutdown(wait=True)
    h.it = it
    wr = weakref.ref(h)
    del h, it, f
    gc.collect()
    assert wr() is None


def test_cycle_through_the_function_is_collected(make):
    pool = make(2)
    h = Holder()
    it = pool.map(h.method, [1, 2])
    pool.shutdown(wait=True)
    h.it = it                        # fn -> h -> iterator -> fn
    wr = weakref.ref(h)
    del h, it
    gc.collect()
    assert wr() is None


def test_cycle_through_a_buffered_result_is_collected(buffered_class):
    pool = buffered_class(2)
    h = Holder()
    it = pool.map(lambda x: h, itertools.count(), buffersize=2)
    pool.shutdown(wait=True)
    h.it = it
    wr = weakref.ref(h)
    del h, it
    gc.collect()
    assert wr() is None


# ---- 5. a result handed out is not kept ------------------------------------

class Result:
    pass


def test_taken_result_is_not_kept(make):
    pool = make(2)
    it = pool.map(lambda x: Result(), range(3))
    r = next(it)
    wr = weakref.ref(r)
    del r
    assert wait_until(lambda: wr() is None)
    assert len(list(it)) == 2


def test_taken_result_is_not_kept_buffersize(buffered_class):
    pool = buffered_class(2)
    try:
        it = pool.map(lambda x: Result(), range(5), buffersize=2)
        r = next(it)
        wr = weakref.ref(r)
        del r
        assert wait_until(lambda: wr() is None)
        assert len(list(it)) == 4
    finally:
        pool.shutdown(wait=True)


def test_taken_exception_is_not_kept(make):
    class Boom(Exception):
        pass

    pool = make(2)
    it = pool.map(lambda x: (_ for _ in ()).throw(Boom()), range(3))
    try:
        next(it)
    except Boom as e:
        wr = weakref.ref(e)
    assert wait_until(lambda: (gc.collect(), wr() is None)[1])


def test_taken_native_result_is_not_kept(make, tmp_path):
    native = native_or_skip()
    path = tmp_path / "data"
    path.write_bytes(b"x" * 1000)
    pool = make(2)
    it = pool.map(native.read_file, [str(path)] * 3)
    r = next(it)
    assert r == b"x" * 1000
    # only r and getrefcount's argument
    assert wait_until(lambda: sys.getrefcount(r) == 2), sys.getrefcount(r)


def test_results_of_a_dropped_iterator_are_freed(make):
    # An unstarted iterator dropped: its items still run (1.), and their
    # results, which nobody can read any more, are freed at once (the
    # stdlib's futures go with the generator), not when the map ends.
    pool = make(1)
    gate = threading.Event()
    refs = []

    def f(x):
        if x == 10:
            gate.wait(HANG_TIMEOUT)
        r = Result()
        refs.append(weakref.ref(r))
        return r

    it = pool.map(f, range(20))
    assert wait_until(lambda: len(refs) == 10)     # item 10 is blocked
    del it
    gc.collect()
    try:
        assert [r for r in refs if r() is not None] == []
    finally:
        gate.set()
    pool.shutdown(wait=True)
    gc.collect()
    assert len(refs) == 20
    assert [r for r in refs if r() is not None] == []


# ---- 6. no reference leak on the iterator's type ---------------------------

def test_iterator_type_refcount_stable(make, executor_class):
    pool = make(2)
    buffered = executor_class is not cf.ThreadPoolExecutor or STDLIB_HAS_BUFFERSIZE
    tp = type(pool.map(abs, [1]))
    list(pool.map(abs, [1]))
    before = sys.getrefcount(tp)
    for _ in range(1000):
        list(pool.map(abs, [-1, -2]))
        pool.map(abs, [])
        if buffered:
            it = pool.map(abs, itertools.count(), buffersize=1)
            next(it)
            it.close()
    pool.shutdown(wait=True)
    gc.collect()
    assert sys.getrefcount(tp) - before < 10
