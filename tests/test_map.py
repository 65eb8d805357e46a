"""ThreadPool.map: ordering, exceptions, timeout, chunksize and buffersize (3.14)."""
import concurrent.futures as cf
import itertools
import sys
import threading
import time

import pytest

from conftest import np, wait_until, HANG_TIMEOUT


class MyError(Exception):
    pass


class CountingIter:
    """An iterator over range(limit) (or endless) that records how far it was pulled.

    Pulling beyond ``hard_limit`` raises, so an implementation that eagerly
    drains an "infinite" iterator fails instead of exhausting memory.
    """

    def __init__(self, limit=None, hard_limit=100000):
        self.limit = limit
        self.hard_limit = hard_limit
        self.pulled = 0
        self.lock = threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            if self.limit is not None and self.pulled >= self.limit:
                raise StopIteration
            if self.pulled >= self.hard_limit:
                raise AssertionError("input iterator pulled too far (eager map?)")
            v = self.pulled
            self.pulled += 1
            return v


def test_map_results_in_order(pool):
    def f(x):
        time.sleep(0.001 * ((x * 7) % 5))
        return x * 2
    assert list(pool.map(f, range(50))) == [x * 2 for x in range(50)]


def test_map_multiple_iterables_shortest_wins(pool):
    assert list(pool.map(pow, [2, 3, 4], [1, 2, 3, 4, 5])) == [2, 9, 64]
    assert list(pool.map(lambda a, b, c: a + b + c, "ab", "cd", "ef")) == ["ace", "bdf"]


def test_map_empty(pool):
    assert list(pool.map(abs, [])) == []
    assert list(pool.map(pow, [], [1])) == []


def test_map_generator_input(pool):
    assert list(pool.map(str, (i for i in range(5)))) == ["0", "1", "2", "3", "4"]


def test_map_chunksize_accepted(pool):
    assert list(pool.map(abs, [-1, -2, -3], chunksize=2)) == [1, 2, 3]
    assert list(pool.map(abs, [-1, -2, -3], chunksize=100)) == [1, 2, 3]


def test_map_is_eager_without_buffersize(make_pool):
    # stdlib: all tasks are submitted when map() is called, before iteration
    p = make_pool(max_workers=2)
    done = []
    lock = threading.Lock()

    def f(x):
        with lock:
            done.append(x)
        return x

    it = p.map(f, range(10))
    assert wait_until(lambda: len(done) == 10, timeout=HANG_TIMEOUT)
    assert sorted(done) == list(range(10))
    assert list(it) == list(range(10))


def test_map_input_error_raised_at_call(pool):
    def gen():
        yield 1
        raise MyError("bad input")
    with pytest.raises(MyError, match="bad input"):
        pool.map(abs, gen())


def test_map_exception_at_position_and_rest_cancelled(make_pool):
    p = make_pool(max_workers=1)
    gate0 = threading.Event()
    gate_rest = threading.Event()
    ran = []

    def f(x):
        if x == 0:
            gate0.wait(HANG_TIMEOUT)
            return "zero"
        if x == 1:
            raise MyError("at one")
        ran.append(x)
        gate_rest.wait(HANG_TIMEOUT)
        return x

    it = p.map(f, range(40))
    gate0.set()
    assert next(it) == "zero"
    with pytest.raises(MyError, match="at one"):
        next(it)
    # remaining queued work is cancelled when the exception propagates
    gate_rest.set()
    p.shutdown(wait=True)
    assert set(ran) <= {2}, ran
    with pytest.raises(StopIteration):
        next(it)


def test_map_exception_traceback(pool):
    def failing_mapped_fn(x):
        raise MyError(x)
    import traceback
    with pytest.raises(MyError) as ei:
        list(pool.map(failing_mapped_fn, [1]))
    names = [fr.name for fr in traceback.extract_tb(ei.value.__traceback__)]
    assert "failing_mapped_fn" in names


def test_map_timeout(make_pool, gate):
    p = make_pool(max_workers=1)
    it = p.map(gate.wait, [1, 2], timeout=0.1)
    with pytest.raises(cf.TimeoutError):
        next(it)
    gate.open()


def test_map_timeout_applies_from_call(make_pool):
    p = make_pool(max_workers=2)
    ev = threading.Event()
    it = p.map(lambda x: ev.wait(HANG_TIMEOUT) and x, [1, 2], timeout=0.2)
    try:
        with pytest.raises(cf.TimeoutError):
            list(it)
    finally:
        ev.set()


def test_map_timeout_not_hit(pool):
    assert list(pool.map(abs, [-1, -2], timeout=HANG_TIMEOUT)) == [1, 2]


@pytest.mark.parametrize("bad", ["x", [], object()])
def test_map_timeout_bad_type(pool, bad):
    with pytest.raises(TypeError):
        list(pool.map(abs, [1, 2], timeout=bad))


def test_map_negative_timeout_does_not_wait(make_pool, gate):
    p = make_pool(max_workers=1)
    it = p.map(gate.wait, [1], timeout=-1)
    with pytest.raises(cf.TimeoutError):
        next(it)
    gate.open()


def test_map_after_shutdown_raises():
    p = np.ThreadPool(1)
    p.shutdown()
    with pytest.raises(RuntimeError):
        list(p.map(abs, [1]))


def test_map_iterator_closed_early_cancels_rest(make_pool):
    p = make_pool(max_workers=1)
    gate = threading.Event()
    gate_rest = threading.Event()
    ran = []

    def f(x):
        if x == 0:
            gate.wait(HANG_TIMEOUT)
        else:
            ran.append(x)
            gate_rest.wait(HANG_TIMEOUT)
        return x

    it = p.map(f, range(30))
    gate.set()
    assert next(it) == 0
    it.close()
    gate_rest.set()
    p.shutdown(wait=True)
    # at most the task already picked up by the single worker ran
    assert set(ran) <= {1}, ran


def test_map_big(pool):
    n = 20000
    assert sum(pool.map(abs, range(-n, 0))) == n * (n + 1) // 2


# --------------------------------------------------------------------------
# buffersize (3.14 semantics; nativepool provides it on every version)

stdlib_has_buffersize = sys.version_info >= (3, 14)


@pytest.mark.nativepool_only
@pytest.mark.parametrize("bad", [1.5, "2", [1]])
def test_buffersize_type_error(pool, bad):
    with pytest.raises(TypeError, match="buffersize must be an integer or None"):
        pool.map(abs, [1], buffersize=bad)


@pytest.mark.nativepool_only
@pytest.mark.parametrize("bad", [0, -1])
def test_buffersize_value_error(pool, bad):
    with pytest.raises(ValueError, match="buffersize must be None or > 0"):
        pool.map(abs, [1], buffersize=bad)


@pytest.mark.nativepool_only
def test_buffersize_none_is_default(pool):
    assert list(pool.map(abs, [-1, -2], buffersize=None)) == [1, 2]


@pytest.mark.nativepool_only
@pytest.mark.parametrize("bs", [1, 2, 7])
def test_buffersize_results_in_order(pool, bs):
    assert list(pool.map(lambda x: x * 3, range(100), buffersize=bs)) == \
        [x * 3 for x in range(100)]


@pytest.mark.nativepool_only
def test_buffersize_infinite_iterator(pool):
    it = pool.map(lambda x: x * x, itertools.count(), buffersize=4)
    got = list(itertools.islice(it, 200))
    assert got == [x * x for x in range(200)]
    it.close()


@pytest.mark.nativepool_only
def test_buffersize_is_lazy(make_pool):
    p = make_pool(max_workers=8)
    src = CountingIter(limit=None, hard_limit=10000)
    it = p.map(lambda x: x, src, buffersize=3)
    time.sleep(0.1)
    assert src.pulled <= 3
    consumed = 0
    for _ in range(20):
        assert next(it) == consumed
        consumed += 1
        assert src.pulled <= consumed + 3, (src.pulled, consumed)
    it.close()
    time.sleep(0.05)
    assert src.pulled <= consumed + 3


@pytest.mark.nativepool_only
def test_buffersize_bounds_in_flight_tasks(make_pool):
    p = make_pool(max_workers=8)
    active = [0]
    max_active = [0]
    lock = threading.Lock()

    def f(x):
        with lock:
            active[0] += 1
            max_active[0] = max(max_active[0], active[0])
        time.sleep(0.002)
        with lock:
            active[0] -= 1
        return x

    assert list(p.map(f, range(60), buffersize=2)) == list(range(60))
    # CPython 3.14 submits the next task before blocking on the oldest one, so
    # up to buffersize + 1 tasks may be outstanding; an eager map would run 8.
    assert 1 <= max_active[0] <= 3


@pytest.mark.nativepool_only
def test_buffersize_does_not_pull_when_not_consumed(make_pool):
    p = make_pool(max_workers=4)
    src = CountingIter(limit=1000)
    it = p.map(lambda x: x, src, buffersize=5)
    time.sleep(0.2)  # workers finish the buffered tasks; nothing new must be pulled
    assert src.pulled <= 5
    assert list(it) == list(range(1000))
    assert src.pulled == 1000


@pytest.mark.nativepool_only
def test_buffersize_exception_at_position(make_pool):
    p = make_pool(max_workers=2)
    src = CountingIter(limit=None, hard_limit=10000)

    def f(x):
        if x == 10:
            raise MyError("ten")
        return x

    it = p.map(f, src, buffersize=3)
    assert [next(it) for _ in range(10)] == list(range(10))
    with pytest.raises(MyError, match="ten"):
        next(it)
    pulled = src.pulled
    assert pulled <= 11 + 3
    with pytest.raises(StopIteration):
        next(it)
    assert src.pulled == pulled


@pytest.mark.nativepool_only
def test_buffersize_multiple_iterables(pool):
    assert list(pool.map(pow, itertools.count(2), [1, 2, 3], buffersize=2)) == [2, 9, 64]


@pytest.mark.nativepool_only
def test_buffersize_with_timeout(make_pool, gate):
    p = make_pool(max_workers=1)
    it = p.map(gate.wait, itertools.count(), timeout=0.1, buffersize=2)
    with pytest.raises(cf.TimeoutError):
        next(it)
    gate.open()


@pytest.mark.nativepool_only
def test_buffersize_map_after_pool_gone_stops(make_pool):
    # 3.14: the result iterator holds only a weak reference to the executor;
    # a shut-down pool must not make the iterator hang.
    p = make_pool(max_workers=2)
    it = p.map(lambda x: x, itertools.count(), buffersize=2)
    assert next(it) == 0
    p.shutdown(wait=True)
    # after shutdown, the iterator either stops or raises RuntimeError; it must not hang
    out = []
    try:
        for v in it:
            out.append(v)
            if len(out) > 100:
                break
    except RuntimeError:
        pass
    assert len(out) <= 100  # no endless stream of results after shutdown
    assert out[:1] in ([], [1])


def test_map_no_leak(make_pool, assert_no_leak):
    p = make_pool(max_workers=2)

    def cycle():
        list(p.map(abs, range(-5, 5)))
        try:
            list(p.map(lambda x: 1 // x, [1, 0, 1]))
        except ZeroDivisionError:
            pass
    assert_no_leak(cycle, iterations=1000, warmup=100,
                   settle=lambda: p.submit(int).result(HANG_TIMEOUT))


# --------------------------------------------------------------------------
# more map edge cases

def test_map_result_is_iterator(pool):
    it = pool.map(abs, [-1])
    assert iter(it) is it
    assert next(it) == 1
    with pytest.raises(StopIteration):
        next(it)


def test_map_no_iterables(pool):
    assert list(pool.map(abs)) == []


def test_map_non_iterable_raises_at_call(pool):
    with pytest.raises(TypeError):
        pool.map(abs, 5)


def test_map_non_callable(pool):
    with pytest.raises(TypeError):
        list(pool.map(None, [1, 2]))


def test_map_iterator_deleted_cancels_rest(make_pool):
    import gc
    p = make_pool(max_workers=1)
    gate = threading.Event()
    gate_rest = threading.Event()
    ran = []

    def f(x):
        if x == 0:
            gate.wait(HANG_TIMEOUT)
        else:
            ran.append(x)
            gate_rest.wait(HANG_TIMEOUT)
        return x

    it = p.map(f, range(30))
    gate.set()
    assert next(it) == 0
    del it
    gc.collect()
    gate_rest.set()
    p.shutdown(wait=True)
    assert set(ran) <= {1}, ran


def test_map_iterator_consumed_from_several_threads(make_pool):
    # Concurrent next() on one result iterator: the stdlib generator raises
    # ValueError("generator already executing"); whatever the implementation
    # does, each result is delivered at most once and nothing crashes.
    p = make_pool(max_workers=2)
    n = 3000
    it = p.map(abs, range(n))
    got = [[] for _ in range(4)]
    errs = []

    def consumer(k):
        while True:
            try:
                v = next(it)
            except StopIteration:
                return
            except ValueError:
                continue
            except BaseException as e:
                errs.append(e)
                return
            got[k].append(v)

    ts = [threading.Thread(target=consumer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(HANG_TIMEOUT * 2)
    assert not errs, errs[:3]
    allv = [v for g in got for v in g]
    assert len(allv) == len(set(allv))
    assert sorted(allv) == list(range(n))
    for g in got:
        assert g == sorted(g)  # each thread sees results in input order


@pytest.mark.nativepool_only
def test_buffersize_iterator_deleted_cancels_rest(make_pool):
    import gc
    p = make_pool(max_workers=1)
    gate = threading.Event()
    ran = []
    src = CountingIter(limit=None, hard_limit=10000)

    def f(x):
        if x == 1:
            gate.wait(HANG_TIMEOUT)
        elif x >= 2:
            ran.append(x)
        return x

    it = p.map(f, src, buffersize=4)
    assert next(it) == 0
    # the single worker is (about to be) blocked in task 1; 2.. are queued
    del it
    gc.collect()
    gate.set()
    p.shutdown(wait=True)
    assert src.pulled <= 5
    assert ran == []


def test_map_timeout_is_not_cut_short(make_pool, gate):
    p = make_pool(max_workers=1)
    t0 = time.monotonic()
    it = p.map(gate.wait, [1], timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        next(it)
    assert time.monotonic() - t0 >= 0.19
    gate.open()


@pytest.mark.nativepool_only
def test_buffersize_map_no_leak(make_pool, assert_no_leak):
    p = make_pool(max_workers=2)

    def cycle():
        list(p.map(abs, range(-5, 5), buffersize=2))
        it = p.map(abs, itertools.count(), buffersize=3)
        next(it)
        it.close()
    assert_no_leak(cycle, iterations=1000, warmup=100,
                   settle=lambda: p.submit(int).result(HANG_TIMEOUT))


def test_map_cancel_futures_shutdown_mid_iteration(make_pool):
    p = make_pool(max_workers=1)
    gate = threading.Event()

    def f(x):
        if x == 0:
            gate.wait(HANG_TIMEOUT)
        return x

    it = p.map(f, range(10))
    p.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert next(it) == 0
    with pytest.raises(cf.CancelledError):
        next(it)


@pytest.mark.nativepool_only
def test_buffersize_input_error_raised_while_iterating(make_pool):
    p = make_pool(max_workers=2)

    def gen():
        for i in range(5):
            yield i
        raise MyError("input broke")

    it = p.map(lambda x: x * 10, gen(), buffersize=2)
    got = []
    with pytest.raises(MyError, match="input broke"):
        for v in it:
            got.append(v)
    assert got == [x * 10 for x in range(len(got))] and len(got) <= 5
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.nativepool_only
def test_buffersize_first_task_fails_stops_pulling(make_pool):
    p = make_pool(max_workers=2)
    src = CountingIter(limit=None, hard_limit=10000)

    def f(x):
        if x == 0:
            raise MyError("first")
        return x

    it = p.map(f, src, buffersize=3)
    with pytest.raises(MyError, match="first"):
        next(it)
    pulled = src.pulled
    assert pulled <= 4
    time.sleep(0.05)
    assert src.pulled == pulled


def test_map_task_raising_stopiteration(pool):
    # stdlib: the result generator re-raises StopIteration -> RuntimeError (PEP 479)
    def f(x):
        if x == 1:
            raise StopIteration("inner")
        return x
    it = pool.map(f, [0, 1, 2])
    assert next(it) == 0
    with pytest.raises(RuntimeError):
        next(it)


def test_submit_task_raising_stopiteration(pool):
    def f():
        raise StopIteration("inner")
    fut = pool.submit(f)
    with pytest.raises(StopIteration):
        fut.result(HANG_TIMEOUT)
    assert isinstance(fut.exception(), StopIteration)


# ---- batched wake-ups (mapjob.c: wake_target) -------------------------------
# Once a native map's results come fast, the consumer asks to be woken by a
# later slot.  It must still get every result, in order, promptly after a
# slow one, and never spin while it waits.  native.sleep(0) is a ~1 us task.

@pytest.mark.nativepool_only
def test_map_fast_results_then_a_slow_one(make_pool):
    from nativepool import native
    pool = make_pool(2)
    secs = [0.0] * 6000
    secs[3000] = 0.3
    t0 = time.monotonic()
    assert list(pool.map(native.sleep, secs)) == [None] * 6000
    assert time.monotonic() - t0 < HANG_TIMEOUT


@pytest.mark.nativepool_only
def test_map_batched_wait_does_not_spin(make_pool):
    # While the consumer waits 0.5 s for a slow item that follows thousands
    # of fast ones, it sleeps: the process uses far less CPU than wall time.
    from nativepool import native
    pool = make_pool(2)
    secs = [0.0] * 5001
    secs[5000] = 0.5
    it = pool.map(native.sleep, secs)
    for _ in range(4000):
        next(it)
    c0 = time.process_time()
    rest = list(it)
    cpu = time.process_time() - c0
    assert rest == [None] * 1001
    assert cpu < 0.25, f"consumer used {cpu:.3f} s of CPU waiting 0.5 s"


@pytest.mark.nativepool_only
def test_map_batched_slots_complete_out_of_order(make_pool):
    # Every 1000th item is slow, the rest fast: later slots finish first; the
    # consumer must not wait for a slot that is already done.
    from nativepool import native
    pool = make_pool(4)
    ns = [10 ** 7 if i % 1000 == 0 else i for i in range(5000)]
    want = [n * (n - 1) * (2 * n - 1) // 6 for n in ns]
    for _ in range(3):
        assert list(pool.map(native.sum_squares, ns)) == want
