"""Leak checks: each scenario is rerun until tracemalloc's traced memory and
the refcounts of every heap type involved stop growing (check_plateau in
conftest.py, after ultrajson's leak check).

The type refcounts catch a reference leaked to a heap type (issue 11,
point 4: ``Py_INCREF`` after ``PyObject_GC_New``, which already took the
reference): such a leak costs no traced memory, only a refcount per object.
The internal types (the pool core, the map iterator, the future's condition,
the process core and its channels) are reached through objects and tracked
as well.

No speed assertions; the only timeouts guard against hangs.
"""
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import sys
import threading

import pytest

from conftest import np, MODULE_NAME, HANG_TIMEOUT, check_plateau, wait_until

pytestmark = pytest.mark.skipif(
    os.environ.get("NATIVEPOOL_UNDER_ASAN") == "1",
    reason="ASan's allocator and quarantine change what tracemalloc sees and "
           "slow every round ~5x; leak checks run in the plain build")

native = getattr(np, "native", None)
needs_native = pytest.mark.skipif(native is None, reason="no nativepool.native")
nativepool_only = pytest.mark.nativepool_only


class Boom(Exception):
    pass


def boom(*_args):
    raise Boom("x")


def noop(*_args):
    return None


@pytest.fixture(scope="module")
def shared_pool():
    p = np.ThreadPool(2, thread_name_prefix="leakpool")
    yield p
    p.shutdown(wait=True)


def drain(pool):
    """Let the pool's workers drop what they hold: one more task through
    every worker (a finished task's references are released before or at
    the worker's next task)."""
    def settle():
        fs = [pool.submit(noop) for _ in range(8)]
        for f in fs:
            f.result(HANG_TIMEOUT)   # hang guard only
    return settle


def internal_types(pool=None):
    """The internal heap types reachable from objects (not exported)."""
    found = []
    if pool is not None and hasattr(pool, "_core"):
        found.append(type(pool._core))
    if pool is not None:
        it = pool.map(abs, [1])
        found.append(type(it))
        list(it)
        f = pool.submit(abs, 1)
        f.result()
        found.append(type(f))
        found.append(type(f._condition))
    return found


_INTERNAL = []


def plateau(fn, types=(), **kwargs):
    """check_plateau tracking the internal types too, in every scenario."""
    if not _INTERNAL:
        p = np.ThreadPool(1)
        try:
            _INTERNAL.extend(internal_types(p))
        finally:
            p.shutdown()
        _INTERNAL.append(None)   # probed
    extra = [t for t in _INTERNAL if t is not None] + list(types)
    return check_plateau(fn, types=extra, **kwargs)


# ---- the helper itself ----------------------------------------------------

def test_helper_catches_a_small_leak():
    # One small object per call kept alive: the traced memory never settles.
    kept = []
    with pytest.raises(AssertionError, match="still growing"):
        check_plateau(lambda: kept.append(object()), batch=200, max_rounds=20)


def test_helper_catches_a_type_reference_leak():
    # A reference to a heap type leaked per call (what a Py_INCREF after
    # PyObject_GC_New does): no memory, only the type's refcount.
    class Leaky:
        pass
    kept = []
    with pytest.raises(AssertionError, match="type refcounts grew.*Leaky"):
        check_plateau(lambda: kept.append(Leaky), batch=10, types=[Leaky])


def test_helper_passes_a_clean_scenario():
    check_plateau(lambda: [object() for _ in range(10)], batch=200)


# ---- pools --------------------------------------------------------------

def test_threadpool_create_submit_shutdown():
    def scenario():
        p = np.ThreadPool(2)
        p.submit(abs, -1).result(HANG_TIMEOUT)
        p.shutdown(wait=True)

    plateau(scenario, batch=10)


def test_threadpool_context_manager_with_map():
    def scenario():
        with np.ThreadPool(2) as p:
            assert list(p.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]

    plateau(scenario, batch=10)


def test_threadpool_dropped_without_shutdown():
    # The stdlib lets the workers of a dropped pool finish and exit; wait
    # for them (named by the prefix) before measuring.
    def scenario():
        p = np.ThreadPool(2, thread_name_prefix="leakdrop")
        p.submit(abs, -1).result(HANG_TIMEOUT)

    def settle():
        gc.collect()
        assert wait_until(lambda: not any(
            t.name.startswith("leakdrop") for t in threading.enumerate())), \
            "workers of dropped pools never exited"   # hang guard only

    plateau(scenario, batch=10, settle=settle)


# ---- maps ---------------------------------------------------------------

def test_thread_map(shared_pool):
    plateau(lambda: list(shared_pool.map(abs, range(-10, 10))),
                  batch=50, settle=drain(shared_pool))


def test_thread_map_star_timeout_chunks(shared_pool):
    def scenario():
        assert list(shared_pool.map(pow, [2, 3], [2, 2], timeout=HANG_TIMEOUT,
                                    chunksize=2)) == [4, 9]
    plateau(scenario, batch=50, settle=drain(shared_pool))


def test_thread_map_failing_item(shared_pool):
    def scenario():
        it = shared_pool.map(boom, range(3))
        with pytest.raises(Boom):
            list(it)
    plateau(scenario, batch=50, settle=drain(shared_pool))


def test_thread_map_dropped_unconsumed(shared_pool):
    plateau(lambda: shared_pool.map(abs, range(10)), batch=50,
            settle=drain(shared_pool))


def test_thread_map_closed_after_first(shared_pool):
    def scenario():
        it = shared_pool.map(abs, range(20))
        next(it)
        it.close() if hasattr(it, "close") else None
        del it
    plateau(scenario, batch=50, settle=drain(shared_pool))


class Holder:
    pass


def identity(x):
    return x


def test_thread_map_cycle_through_items_collected(shared_pool):
    # An item (and so its result) that refers back to its own unconsumed
    # iterator: only the collector can free the pair, and only if the
    # iterator's traverse visits its items and results (issue 11, point 4).
    def scenario():
        h = Holder()
        it = shared_pool.map(identity, [h, 1])
        h.it = it
    plateau(scenario, batch=50, settle=drain(shared_pool))


@needs_native
def test_native_map(shared_pool):
    expect = [sum(i * i for i in range(n)) for n in range(20)]

    def scenario():
        assert list(shared_pool.map(native.sum_squares, range(20))) == expect
    plateau(scenario, batch=50, settle=drain(shared_pool))


# ---- futures ------------------------------------------------------------

def test_future_result(shared_pool):
    plateau(lambda: shared_pool.submit(abs, -3).result(HANG_TIMEOUT),
                  batch=200, settle=drain(shared_pool))


def test_future_exception(shared_pool):
    def scenario():
        f = shared_pool.submit(boom)
        assert isinstance(f.exception(HANG_TIMEOUT), Boom)
        with pytest.raises(Boom):
            f.result()
    plateau(scenario, batch=200, settle=drain(shared_pool))


def test_future_cancel_queued():
    # One worker, blocked on an event: the second future is still queued
    # when it is cancelled.
    pool = np.ThreadPool(1)

    def scenario():
        ev = threading.Event()
        blocker = pool.submit(ev.wait, HANG_TIMEOUT)   # hang guard only
        f = pool.submit(abs, -1)
        assert f.cancel()
        ev.set()
        blocker.result(HANG_TIMEOUT)
        assert f.cancelled()

    try:
        plateau(scenario, batch=100, settle=drain(pool))
    finally:
        pool.shutdown()


def test_future_callbacks(shared_pool):
    seen = []

    def cb(f):
        seen.append(f.result())

    def scenario():
        f = shared_pool.submit(abs, -2)
        f.add_done_callback(cb)
        f.result(HANG_TIMEOUT)
        f.add_done_callback(cb)          # runs at once
        f.add_done_callback(lambda _f: 1 / 0)   # logged, not raised
        seen.clear()

    import logging
    logger = logging.getLogger("concurrent.futures")
    saved = logger.disabled
    logger.disabled = True
    try:
        plateau(scenario, batch=100, settle=drain(shared_pool))
    finally:
        logger.disabled = saved


def test_bare_future_outcomes():
    def scenario():
        f = np.Future()
        f.set_result(1)
        f.result()
        g = np.Future()
        g.set_exception(Boom("y"))
        g.exception()
        h = np.Future()
        h.add_done_callback(noop)
        h.cancel()
        h.set_running_or_notify_cancel()
    f = np.Future()
    plateau(scenario, batch=300, types=[type(f), type(f._condition)])


def test_wait_and_as_completed(shared_pool):
    def scenario():
        fs = [shared_pool.submit(abs, i) for i in range(5)]
        done, _ = np.wait(fs, timeout=HANG_TIMEOUT)
        assert len(done) == 5
        assert sorted(f.result() for f in np.as_completed(fs, HANG_TIMEOUT)) == \
            list(range(5))
    plateau(scenario, batch=50, settle=drain(shared_pool))


# ---- synchronization objects ---------------------------------------------

def lock_ops():
    lk = np.Lock()
    with lk:
        assert not lk.acquire(timeout=0)
    lk.acquire()
    lk.release()
    with pytest.raises(RuntimeError):
        lk.release()
    repr(lk)


def rlock_ops():
    rl = np.RLock()
    with rl:
        with rl:
            repr(rl)
    with pytest.raises(RuntimeError):
        rl.release()


def condition_ops():
    c = np.Condition()
    with c:
        c.notify_all()
        assert not c.wait(0)
        assert c.wait_for(lambda: True, 0)
    c2 = np.Condition(np.Lock())
    with c2:
        c2.notify(2)
    with pytest.raises(RuntimeError):
        c.notify()


def semaphore_ops():
    s = np.Semaphore(2)
    with s:
        s.acquire()
        assert not s.acquire(timeout=0)
        s.release()
    s.release(2)
    b = np.BoundedSemaphore(1)
    with b:
        pass
    with pytest.raises(ValueError):
        b.release()
    repr(s), repr(b)


def event_ops():
    e = np.Event()
    assert not e.wait(0)
    e.set()
    assert e.wait(0) and e.is_set()
    e.clear()
    repr(e)


def barrier_ops():
    b = np.Barrier(1, action=noop)
    assert b.wait() == 0
    b2 = np.Barrier(2)
    with pytest.raises(np.BrokenBarrierError):
        b2.wait(0)
    b2.reset()
    b2.abort()
    repr(b)


def queue_ops():
    for cls in (np.Queue, np.LifoQueue, np.PriorityQueue):
        q = cls(2)
        q.put(1)
        q.put_nowait(2)
        with pytest.raises(np.Full):
            q.put_nowait(3)
        q.get()
        q.get_nowait()
        with pytest.raises(np.Empty):
            q.get(timeout=0)
        q.task_done()
        q.task_done()
        q.join()
        if hasattr(q, "shutdown"):
            q.put(object())
            q.shutdown()
            with pytest.raises(np.ShutDown):
                q.put(1)
    sq = np.SimpleQueue()
    sq.put([1])
    sq.get()
    with pytest.raises(np.Empty):
        sq.get_nowait()


def atomic_ops():
    a = np.AtomicInt(3)
    a.add(2)
    a.inc()
    a.dec()
    a.exchange(7)
    a.compare_exchange(7, 8)
    a.set(a.get() + 1)
    int(a), repr(a)


@pytest.mark.parametrize("ops", [lock_ops, rlock_ops, condition_ops,
                                 semaphore_ops, event_ops, barrier_ops,
                                 queue_ops, atomic_ops],
                         ids=lambda f: f.__name__)
def test_sync_object(ops):
    plateau(ops, batch=200)


def test_sync_objects_across_threads(shared_pool):
    # The blocking paths (a waiter parked in C, woken from another thread).
    def scenario():
        ev = np.Event()
        q = np.Queue()
        c = np.Condition()
        box = []

        def waiter():
            assert ev.wait(HANG_TIMEOUT)          # hang guard only
            q.put(1)
            with c:
                assert c.wait_for(lambda: box, HANG_TIMEOUT)   # hang guard only
            return q.get(timeout=HANG_TIMEOUT)    # hang guard only

        f = shared_pool.submit(waiter)
        ev.set()
        assert q.get(timeout=HANG_TIMEOUT) == 1
        with c:
            box.append(1)
            c.notify_all()
        q.put(2)
        assert f.result(HANG_TIMEOUT) == 2
    plateau(scenario, batch=50, settle=drain(shared_pool))


# ---- native calls -------------------------------------------------------

@needs_native
def test_native_direct_calls():
    data = bytes(range(256)) * 16
    ba = bytearray(data)

    def scenario():
        native.sum_squares(1000)
        native.crc32(data)
        native.adler32(memoryview(ba))
        native.sha256(ba)
        native.decompress(native.compress(data))
        with pytest.raises(TypeError):
            native.crc32(1.5)
    plateau(scenario, batch=200)


@needs_native
def test_native_submitted_with_buffers(shared_pool):
    data = bytes(range(256)) * 16
    ba = bytearray(data)

    def scenario():
        fs = [shared_pool.submit(native.crc32, data),
              shared_pool.submit(native.sha256, ba),
              shared_pool.submit(native.sum_squares, 100),
              shared_pool.submit(native.sleep, 0)]
        for f in fs:
            f.result(HANG_TIMEOUT)
        with pytest.raises(TypeError):
            shared_pool.submit(native.crc32, 1.5).result(HANG_TIMEOUT)
        ba.append(0)   # pins are released: the bytearray resizes again
        ba.pop()
    plateau(scenario, batch=100, settle=drain(shared_pool))


@needs_native
@nativepool_only
def test_native_wrap_creates_functions():
    # Each wrap() allocates a NativeFunction: a reference leaked to its
    # type grows NativeFunction's refcount by one per call (native.c).
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    labs = libc.labs
    labs.restype = ctypes.c_long
    labs.argtypes = [ctypes.c_long]

    def scenario():
        fn = native.wrap(labs)
        assert fn(-5) == 5
    plateau(scenario, batch=200, types=[native.NativeFunction])


# ---- process tasks -------------------------------------------------------

@pytest.fixture(scope="module")
def proc_pool():
    p = np.ProcessPool(2, mp_context=multiprocessing.get_context("forkserver"))
    yield p
    p.shutdown(wait=True)


def test_process_submit_result(proc_pool):
    import process_support as ps

    def scenario():
        assert proc_pool.submit(ps.add, 2, 3).result(HANG_TIMEOUT) == 5
        with pytest.raises(ps.CustomError):
            proc_pool.submit(ps.raise_error, ps.CustomError, "z").result(HANG_TIMEOUT)
        assert proc_pool.submit(ps.sized, 1000).result(HANG_TIMEOUT)[:2] == b"\0\1"

    extra = [type(proc_pool._core)] if hasattr(proc_pool, "_core") else []
    plateau(scenario, batch=20, types=extra)


def test_process_map(proc_pool):
    import process_support as ps

    def scenario():
        assert list(proc_pool.map(ps.square, range(10), chunksize=3)) == \
            [i * i for i in range(10)]
    plateau(scenario, batch=20)


def test_process_large_buffers(proc_pool):
    # Large arguments and results travel in shared-memory segments.
    import process_support as ps
    blob = ps.sized(1 << 20)

    def scenario():
        assert proc_pool.submit(ps.reverse_bytes, blob).result(HANG_TIMEOUT) == blob[::-1]
    plateau(scenario, batch=5, memory_slack=64 * 1024)
