"""nativepool Queue / LifoQueue / PriorityQueue / SimpleQueue: drop-ins for the
``queue`` module classes, with the semantics of Python 3.13's queue.py
(including shutdown()) on every supported Python.

Tests not marked ``nativepool_only`` compare against, or mirror, the stdlib.
"""
import os
import queue
import signal
import sys
import threading
import time

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT, start_thread, join_all

PY = sys.version_info[:2]
SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))


def qattr(name):
    """nativepool.<name>, falling back to nativepool._nativepool.<name>."""
    obj = getattr(np, name, None)
    if obj is None:
        obj = getattr(getattr(np, "_nativepool", None), name, None)
    assert obj is not None, "nativepool has no %s" % name
    return obj


Queue = qattr("Queue")
LifoQueue = qattr("LifoQueue")
PriorityQueue = qattr("PriorityQueue")
SimpleQueue = qattr("SimpleQueue")
ShutDown = qattr("ShutDown")

BOUNDED = [Queue, LifoQueue, PriorityQueue]
ALL = BOUNDED + [SimpleQueue]
STD = {Queue: queue.Queue, LifoQueue: queue.LifoQueue,
       PriorityQueue: queue.PriorityQueue, SimpleQueue: queue.SimpleQueue}


def ids(cls):
    return cls.__name__


def capture(fn, *args, **kwargs):
    """Run fn in a thread; return (thread, result-list). The list receives
    ('ok', value) or ('exc', exception)."""
    out = []

    def run():
        try:
            out.append(("ok", fn(*args, **kwargs)))
        except BaseException as e:  # noqa: B902 - recorded for the test
            out.append(("exc", e))

    return start_thread(run), out


# --------------------------------------------------------------------------
# exception types

def test_shutdown_exception_type():
    assert issubclass(ShutDown, Exception)
    if hasattr(queue, "ShutDown"):
        assert ShutDown is queue.ShutDown
    else:
        assert PY < (3, 13)
        assert ShutDown.__name__ == "ShutDown"
        assert not issubclass(ShutDown, (queue.Empty, queue.Full))


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_empty_raises_stdlib_empty(cls):
    q = cls()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        STD[cls]().get_nowait()


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_full_raises_stdlib_full(cls):
    q = cls(maxsize=1)
    q.put_nowait(1)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(2, False)
    with pytest.raises(queue.Full):
        q.put(2, block=False)
    assert q.qsize() == 1
    assert q.get_nowait() == 1


# --------------------------------------------------------------------------
# ordering

def test_fifo_order():
    q = Queue()
    items = [5, 1, "x", None, 3, (1, 2)]
    for it in items:
        q.put(it)
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_lifo_order():
    q = LifoQueue()
    items = [5, 1, "x", None, 3, (1, 2)]
    for it in items:
        q.put(it)
    assert [q.get() for _ in items] == items[::-1]


def test_priority_order_matches_stdlib():
    import random
    rng = random.Random(1234)
    data = [rng.randrange(50) for _ in range(500)]
    q, s = PriorityQueue(), queue.PriorityQueue()
    for x in data:
        q.put(x)
        s.put(x)
    got = [q.get_nowait() for _ in data]
    assert got == [s.get_nowait() for _ in data] == sorted(data)


def test_priority_ties_with_sequence_numbers():
    # the documented idiom: (priority, seq, payload) -- equal priorities come
    # out in insertion order, and the payload is never compared
    class Unorderable:
        def __init__(self, n):
            self.n = n

        def __lt__(self, other):
            raise AssertionError("payload compared")

    q = PriorityQueue()
    prios = [3, 1, 2, 1, 3, 1, 2]
    for seq, p in enumerate(prios):
        q.put((p, seq, Unorderable(seq)))
    out = [q.get_nowait() for _ in prios]
    assert [(p, s) for p, s, _ in out] == sorted((p, s) for s, p in enumerate(prios))
    assert [u.n for _, _, u in out] == [s for _, s, _ in out]


def test_priority_interleaved_put_get():
    q, s = PriorityQueue(), queue.PriorityQueue()
    ops = [7, 3, None, 9, 1, None, None, 4, 4, 0, None, None, None, None]
    for op in ops:
        if op is None:
            assert q.get_nowait() == s.get_nowait()
        else:
            q.put(op)
            s.put(op)
        assert q.qsize() == s.qsize()
    assert q.empty()


@pytest.mark.nativepool_only  # heapq-based queue.PriorityQueue keeps the item
def test_priority_lt_raises_leaves_queue_unchanged():
    class Bad:
        def __init__(self, v, boom=False):
            self.v, self.boom = v, boom

        def __lt__(self, other):
            if self.boom or getattr(other, "boom", False):
                raise RuntimeError("boom")
            return self.v < other.v

    q = PriorityQueue()
    for v in (5, 2, 8, 1):
        q.put(Bad(v))
    assert q.qsize() == 4
    with pytest.raises(RuntimeError, match="boom"):
        q.put(Bad(3, boom=True))
    assert q.qsize() == 4
    if hasattr(q, "unfinished_tasks"):
        assert q.unfinished_tasks == 4
    with pytest.raises(RuntimeError, match="boom"):
        q.put_nowait(Bad(0, boom=True))
    assert q.qsize() == 4
    assert [q.get_nowait().v for _ in range(4)] == [1, 2, 5, 8]
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    # still fully functional afterwards
    q.put(Bad(2))
    q.put(Bad(1))
    assert [q.get().v, q.get().v] == [1, 2]


def test_priority_lt_raises_does_not_count_as_task():
    class Bad:
        def __lt__(self, other):
            raise RuntimeError("boom")

    q = PriorityQueue()
    q.put(Bad())
    with pytest.raises(RuntimeError):
        q.put(Bad())
    q.get_nowait()
    q.task_done()
    t, out = capture(q.join)
    join_all([t], timeout=5)
    assert out == [("ok", None)]
    with pytest.raises(ValueError):
        q.task_done()


# --------------------------------------------------------------------------
# maxsize / qsize / empty / full

@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_maxsize_full_empty_qsize(cls):
    q = cls(3)
    assert q.maxsize == 3
    assert q.empty() is True and q.full() is False and q.qsize() == 0
    q.put(1)
    assert q.empty() is False and q.full() is False and q.qsize() == 1
    q.put(2)
    q.put(3)
    assert q.full() is True and q.qsize() == 3
    with pytest.raises(queue.Full):
        q.put(4, block=False)
    q.get()
    assert q.full() is False and q.qsize() == 2
    q.put(4, block=False)
    assert q.full() is True


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
@pytest.mark.parametrize("maxsize", [0, -1, -5])
def test_nonpositive_maxsize_is_unbounded(cls, maxsize):
    q = cls(maxsize)
    std = STD[cls](maxsize)
    for i in range(1000):
        q.put_nowait(i)
    assert q.qsize() == 1000
    assert q.full() is False
    assert std.full() is False
    assert q.maxsize == maxsize


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_default_maxsize(cls):
    assert cls().maxsize == STD[cls]().maxsize == 0
    assert cls(maxsize=2).maxsize == 2


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_put_get_return_none(cls):
    q = cls()
    assert q.put(1) is None
    assert q.put_nowait(2) is None
    assert sorted([q.get(), q.get_nowait()]) == [1, 2]


# --------------------------------------------------------------------------
# timeouts

@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_get_timeout_raises_empty_not_early(cls):
    q = cls()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - t0 >= 0.2 - 0.005
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(True, 0.1)
    assert time.monotonic() - t0 >= 0.1 - 0.005


def test_simplequeue_get_timeout_not_early():
    q = SimpleQueue()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - t0 >= 0.2 - 0.005


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_put_timeout_raises_full_not_early(cls):
    q = cls(1)
    q.put(0)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(1, timeout=0.2)
    assert time.monotonic() - t0 >= 0.2 - 0.005
    assert q.qsize() == 1
    assert q.get_nowait() == 0


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_zero_timeout_is_immediate(cls):
    q = cls()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0)
    assert time.monotonic() - t0 < 5.0
    q.put(1)
    assert q.get(timeout=0) == 1


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize("timeout", [-1, -0.001])
def test_negative_get_timeout_value_error(cls, timeout):
    with pytest.raises(ValueError, match="non-negative"):
        STD[cls]().get(timeout=timeout)
    q = cls()
    q.put(1)  # even with an item available: the check comes first
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=timeout)
    assert q.qsize() == 1


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_negative_put_timeout_value_error(cls):
    q = cls(1)
    std = STD[cls](1)
    std.put(0)
    with pytest.raises(ValueError, match="non-negative"):
        std.put(1, timeout=-1)
    q.put(0)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-1)
    assert q.qsize() == 1


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_negative_timeout_ignored_when_nonblocking(cls):
    # queue.py only checks the timeout when block is true
    q, std = cls(), STD[cls]()
    with pytest.raises(queue.Empty):
        std.get(False, -1)
    with pytest.raises(queue.Empty):
        q.get(False, -1)
    q.put(1, False, -1)
    assert q.get(False, -1) == 1


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_get_timeout_woken_by_put(cls):
    q = cls()
    t, out = capture(q.get, timeout=HANG_TIMEOUT)
    time.sleep(0.05)
    assert out == []
    q.put("item")
    join_all([t])
    assert out == [("ok", "item")]


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_blocked_put_woken_by_get(cls):
    q = cls(1)
    q.put("a")
    t, out = capture(q.put, "b", timeout=HANG_TIMEOUT)
    t2, out2 = capture(q.put, "c")
    time.sleep(0.1)
    assert out == [] and out2 == []
    assert q.qsize() == 1
    got = [q.get(timeout=HANG_TIMEOUT) for _ in range(3)]
    join_all([t, t2])
    assert got[0] == "a"
    assert sorted(got[1:]) == ["b", "c"]
    assert out == [("ok", None)] and out2 == [("ok", None)]


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_untimed_get_woken_by_put(cls):
    q = cls()
    threads, outs = zip(*[capture(q.get) for _ in range(4)])
    time.sleep(0.1)
    assert all(o == [] for o in outs)
    for i in range(4):
        q.put(i)
    join_all(threads)
    assert sorted(o[0][1] for o in outs) == [0, 1, 2, 3]


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_bad_timeout_type(cls):
    with pytest.raises(TypeError):
        STD[cls]().get(timeout="1")
    with pytest.raises(TypeError):
        cls().get(timeout="1")


# --------------------------------------------------------------------------
# task_done / join

@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_task_done_too_many_times(cls):
    q = cls()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()
    with pytest.raises(ValueError):
        STD[cls]().task_done()


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_join_on_fresh_queue_returns(cls):
    q = cls()
    t, out = capture(q.join)
    join_all([t], timeout=5)
    assert out == [("ok", None)]


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_join_waits_until_all_tasks_done(cls):
    q = cls()
    for i in range(3):
        q.put(i)
    if hasattr(q, "unfinished_tasks"):
        assert q.unfinished_tasks == 3
    t, out = capture(q.join)
    for _ in range(3):
        q.get()
    time.sleep(0.05)
    assert out == [], "join returned before task_done"
    q.task_done()
    q.task_done()
    time.sleep(0.05)
    assert out == [], "join returned with a task unfinished"
    q.task_done()
    join_all([t])
    assert out == [("ok", None)]


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_join_with_worker_threads(cls):
    q = cls()
    done = []
    lock = threading.Lock()

    def worker():
        while True:
            item = q.get()
            if item is None or item == (10 ** 9,):
                q.task_done()
                return
            time.sleep(0.001)
            with lock:
                done.append(item)
            q.task_done()

    workers = [start_thread(worker) for _ in range(3)]
    for i in range(100):
        q.put((i,))
    t, out = capture(q.join)
    join_all([t])
    assert out == [("ok", None)]
    assert sorted(done) == [(i,) for i in range(100)]
    for _ in workers:
        q.put((10 ** 9,))
    join_all(workers)


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_multiple_joiners_released(cls):
    q = cls()
    q.put(1)
    threads, outs = zip(*[capture(q.join) for _ in range(4)])
    time.sleep(0.05)
    assert all(o == [] for o in outs)
    q.get()
    q.task_done()
    join_all(threads)
    assert all(o == [("ok", None)] for o in outs)


# --------------------------------------------------------------------------
# shutdown(immediate=False)

@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_put_raises(cls):
    q = cls()
    q.shutdown()
    with pytest.raises(ShutDown):
        q.put(1)
    with pytest.raises(ShutDown):
        q.put_nowait(1)
    with pytest.raises(ShutDown):
        q.put(1, timeout=0.5)
    assert q.qsize() == 0


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_get_drains_then_raises(cls):
    q = cls()
    for i in (3, 1, 2):
        q.put(i)
    q.shutdown()
    if hasattr(q, "is_shutdown"):
        assert q.is_shutdown is True
    assert q.qsize() == 3
    got = sorted([q.get(), q.get_nowait(), q.get(timeout=1)])
    assert got == [1, 2, 3]
    with pytest.raises(ShutDown):
        q.get()
    with pytest.raises(ShutDown):
        q.get_nowait()
    with pytest.raises(ShutDown):
        q.get(block=False)
    with pytest.raises(ShutDown):
        q.get(timeout=0.5)


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_wakes_blocked_getters(cls):
    q = cls()
    threads = []
    outs = []
    for kw in ({}, {"timeout": HANG_TIMEOUT}, {}, {"timeout": HANG_TIMEOUT}):
        t, o = capture(q.get, **kw)
        threads.append(t)
        outs.append(o)
    time.sleep(0.1)
    assert all(o == [] for o in outs)
    t0 = time.monotonic()
    q.shutdown()
    join_all(threads, timeout=10)
    assert time.monotonic() - t0 < 10
    for o in outs:
        assert len(o) == 1 and o[0][0] == "exc"
        assert isinstance(o[0][1], ShutDown), o


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_wakes_blocked_putters(cls):
    q = cls(1)
    q.put("x")
    threads, outs = [], []
    for kw in ({}, {"timeout": HANG_TIMEOUT}, {"block": True}):
        t, o = capture(q.put, "y", **kw)
        threads.append(t)
        outs.append(o)
    time.sleep(0.1)
    assert all(o == [] for o in outs)
    q.shutdown()
    join_all(threads, timeout=10)
    for o in outs:
        assert len(o) == 1 and o[0][0] == "exc"
        assert isinstance(o[0][1], ShutDown), o
    assert q.qsize() == 1
    assert q.get_nowait() == "x"


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_is_idempotent_and_join_still_needs_task_done(cls):
    q = cls()
    q.put(1)
    q.shutdown()
    q.shutdown()
    assert q.get() == 1
    t, out = capture(q.join)
    time.sleep(0.05)
    assert out == []  # non-immediate shutdown does not finish tasks
    q.task_done()
    join_all([t])
    assert out == [("ok", None)]


# --------------------------------------------------------------------------
# shutdown(immediate=True)

@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_immediate_empties_and_releases_join(cls):
    q = cls()
    for i in range(5):
        q.put(i)
    t, out = capture(q.join)
    time.sleep(0.05)
    assert out == []
    q.shutdown(immediate=True)
    join_all([t], timeout=10)
    assert out == [("ok", None)]
    assert q.qsize() == 0
    assert q.empty()
    with pytest.raises(ShutDown):
        q.get()
    with pytest.raises(ShutDown):
        q.get_nowait()
    with pytest.raises(ShutDown):
        q.put(9)
    # join after an immediate shutdown returns at once
    t, out = capture(q.join)
    join_all([t], timeout=5)
    assert out == [("ok", None)]


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_immediate_join_still_waits_for_retrieved_item(cls):
    # as 3.13 queue.py: only the discarded items are marked done; an item
    # already retrieved keeps join() blocked until its task_done()
    q = cls()
    for i in range(5):
        q.put(i)
    q.get()
    t, out = capture(q.join)
    time.sleep(0.05)
    q.shutdown(immediate=True)
    time.sleep(0.1)
    assert out == []
    assert q.qsize() == 0
    q.task_done()
    join_all([t], timeout=10)
    assert out == [("ok", None)]


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_immediate_task_done_semantics_like_313(cls):
    # 3.13 queue.py: immediate shutdown subtracts the discarded items from
    # unfinished_tasks; an item already retrieved still counts
    q = cls()
    for i in range(3):
        q.put(i)
    q.get()
    q.shutdown(True)
    if hasattr(q, "unfinished_tasks"):
        assert q.unfinished_tasks == 1
    q.task_done()  # for the retrieved item: allowed
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_immediate_wakes_getters_and_putters(cls):
    g = cls()
    getters = [capture(g.get) for _ in range(3)]
    p = cls(1)
    p.put(0)
    putters = [capture(p.put, i) for i in range(3)]
    time.sleep(0.1)
    g.shutdown(immediate=True)
    p.shutdown(immediate=True)
    join_all([t for t, _ in getters + putters], timeout=10)
    for _, o in getters + putters:
        assert len(o) == 1 and o[0][0] == "exc" and isinstance(o[0][1], ShutDown), o
    assert p.qsize() == 0


@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
def test_shutdown_immediate_keyword_and_positional(cls):
    q = cls()
    q.put(1)
    q.shutdown(True)
    assert q.qsize() == 0
    q2 = cls()
    q2.put(1)
    q2.shutdown(immediate=False)
    assert q2.qsize() == 1


@pytest.mark.skipif(not hasattr(queue.Queue, "shutdown"), reason="stdlib has no shutdown")
@pytest.mark.parametrize("cls", BOUNDED, ids=ids)
@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_matches_stdlib(cls, immediate):
    def trace(q):
        log = []
        for i in (4, 2, 6):
            q.put(i)
        q.get()
        q.shutdown(immediate)
        for op in ("qsize", "empty", "get", "get", "get", "put", "task_done",
                   "task_done", "task_done", "qsize"):
            try:
                if op == "get":
                    r = q.get_nowait()
                elif op == "put":
                    r = q.put_nowait(0)
                else:
                    r = getattr(q, op)()
                log.append((op, "ok", r))
            except Exception as e:
                log.append((op, type(e).__name__))
        return log

    assert trace(cls()) == trace(STD[cls]())


# --------------------------------------------------------------------------
# SimpleQueue

def test_simplequeue_basic():
    q = SimpleQueue()
    assert q.empty() is True
    assert q.qsize() == 0
    for i in range(10):
        q.put(i)
    q.put_nowait(10)
    q.put(11, block=False, timeout=-1)  # arguments ignored, like the stdlib
    assert q.qsize() == 12
    assert q.empty() is False
    assert [q.get() for _ in range(6)] == list(range(6))
    assert [q.get_nowait() for _ in range(3)] == [6, 7, 8]
    assert [q.get(timeout=1) for _ in range(3)] == [9, 10, 11]
    assert q.empty() is True
    with pytest.raises(queue.Empty):
        q.get(block=False)


def test_simplequeue_has_no_task_api():
    std = queue.SimpleQueue()
    q = SimpleQueue()
    for name in ("task_done", "join", "full", "shutdown", "maxsize"):
        assert hasattr(q, name) == hasattr(std, name), name


def test_simplequeue_cross_thread():
    q = SimpleQueue()
    t, out = capture(q.get, timeout=HANG_TIMEOUT)
    time.sleep(0.05)
    assert out == []
    q.put("hello")
    join_all([t])
    assert out == [("ok", "hello")]


# --------------------------------------------------------------------------
# misc API parity

@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_subclassable_and_generic_alias(cls):
    class Sub(cls):
        pass

    q = Sub()
    q.put(1)
    assert q.get() == 1
    if hasattr(STD[cls], "__class_getitem__"):
        assert cls[int] is not None


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_items_are_not_copied_and_refs_released(cls):
    import gc
    import weakref

    class Obj:
        pass

    q = cls()
    o = Obj()
    q.put(o)
    assert q.get() is o
    r = weakref.ref(o)
    q.put(o)
    del o
    gc.collect()
    assert r() is not None  # held by the queue
    q.get()
    gc.collect()
    assert r() is None


# --------------------------------------------------------------------------
# GIL / signals

@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_gil_released_while_blocked(cls):
    q = cls()
    t, out = capture(q.get, timeout=2.0)
    time.sleep(0.05)
    # pure-Python spinning in this thread must make progress while the other
    # thread is blocked inside get()
    counter = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.3:
        counter += 1
    assert counter > 1000
    assert t.is_alive()
    q.put("done")
    join_all([t])
    assert out == [("ok", "done")]


def test_gil_released_untimed_get_and_put():
    q = Queue(1)
    q.put(0)
    tp, outp = capture(q.put, 1)  # blocks: full
    q2 = Queue()
    tg, outg = capture(q2.get)  # blocks: empty
    progress = []
    tw = start_thread(lambda: [progress.append(i) for i in range(200000)])
    join_all([tw])
    assert len(progress) == 200000
    assert tp.is_alive() and tg.is_alive()
    assert q.get() == 0
    q2.put("x")
    join_all([tp, tg])
    assert outp == [("ok", None)] and outg == [("ok", "x")]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("clsname,kw", [
    ("Queue", ""), ("Queue", "timeout=60"), ("SimpleQueue", ""),
    ("LifoQueue", ""), ("PriorityQueue", "timeout=60")])
def test_ctrl_c_interrupts_blocking_get(clsname, kw):
    src = """
    import os, signal, threading, time
    cls = getattr(np, %(name)r, None) or getattr(np._nativepool, %(name)r)
    q = cls()
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    try:
        q.get(%(kw)s)
    except KeyboardInterrupt:
        out("interrupted", round(time.monotonic() - t0, 3))
    else:
        out("not-interrupted")
    # still usable afterwards
    q.put(1)
    out("after", q.get())
    """ % {"name": clsname, "kw": kw}
    t0 = time.monotonic()
    r = run_script(src, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "interrupted", r.stdout + r.stderr
    assert float(lines[1]) < 10.0
    assert lines[2:] == ["after", "1"]
    assert elapsed < 30


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_blocking_put():
    src = """
    import os, signal, threading, time
    cls = getattr(np, "Queue", None) or np._nativepool.Queue
    q = cls(1)
    q.put(0)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    try:
        q.put(1)
    except KeyboardInterrupt:
        out("interrupted", round(time.monotonic() - t0, 3), q.qsize())
    else:
        out("not-interrupted")
    """
    r = run_script(src, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "interrupted", r.stdout + r.stderr
    assert float(lines[1]) < 10.0
    assert lines[2] == "1"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_signal_handler_runs_and_get_resumes():
    # a handler that does not raise: get() keeps waiting and then gets the item
    src = """
    import os, signal, threading, time
    cls = getattr(np, "Queue", None) or np._nativepool.Queue
    q = cls()
    hits = []
    signal.signal(signal.SIGUSR1, lambda *a: hits.append(1))
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    threading.Timer(0.6, q.put, ("item",)).start()
    t0 = time.monotonic()
    v = q.get(timeout=20)
    out(v, len(hits), time.monotonic() - t0 >= 0.5)
    """
    r = run_script(src, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["item", "1", "True"], r.stdout + r.stderr


# --------------------------------------------------------------------------
# stress

@pytest.mark.stress
def test_stress_producers_consumers():
    nprod, ncons = 4, 4
    total = max(nprod, int(100000 * SCALE)) // nprod * nprod
    per = total // nprod
    q = Queue(maxsize=8)
    sentinel = object()
    received = [[] for _ in range(ncons)]
    errors = []

    def producer(pid):
        try:
            for i in range(per):
                q.put(pid * per + i, timeout=HANG_TIMEOUT)
        except BaseException as e:
            errors.append(e)

    def consumer(cid):
        out = received[cid]
        try:
            while True:
                item = q.get(timeout=HANG_TIMEOUT)
                q.task_done()
                if item is sentinel:
                    return
                out.append(item)
        except BaseException as e:
            errors.append(e)

    consumers = [start_thread(consumer, c) for c in range(ncons)]
    producers = [start_thread(producer, p) for p in range(nprod)]
    join_all(producers, timeout=300)
    for _ in consumers:
        q.put(sentinel, timeout=HANG_TIMEOUT)
    join_all(consumers, timeout=300)
    assert not errors, errors[:3]
    t, out = capture(q.join)
    join_all([t], timeout=10)
    assert out == [("ok", None)]
    allitems = [x for r in received for x in r]
    assert len(allitems) == total
    assert sorted(allitems) == list(range(total))
    # per-producer FIFO order is preserved within each consumer
    for r in received:
        last = {}
        for x in r:
            pid = x // per
            assert last.get(pid, -1) < x
            last[pid] = x
    assert q.qsize() == 0 and q.empty()


@pytest.mark.stress
def test_stress_shutdown_with_blocked_threads():
    rounds = max(5, int(50 * SCALE))
    for _ in range(rounds):
        q = Queue(maxsize=2)
        q.put(0)
        q.put(1)
        putters = [capture(q.put, i) for i in range(4)]
        e = Queue()
        getters = [capture(e.get) for _ in range(4)]
        time.sleep(0.002)
        q.shutdown(immediate=True)
        e.shutdown()
        join_all([t for t, _ in putters + getters], timeout=10)
        for _, o in putters + getters:
            assert len(o) == 1
            # a putter may have raced in before shutdown only if space existed,
            # which it never did: all must see ShutDown
            assert o[0][0] == "exc" and isinstance(o[0][1], ShutDown), o
