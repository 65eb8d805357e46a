"""nativepool.ThreadPool: constructor, submit, shutdown, initializer, threads."""
import concurrent.futures as cf
import concurrent.futures.thread as cft
import gc
import logging
import os
import re
import sys
import threading
import time
import weakref

import pytest

from conftest import np, wait_until, refcount_settles, HANG_TIMEOUT


class MyError(Exception):
    pass


def stdlib_default_workers():
    cpu = os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()
    return min(32, (cpu or 1) + 4)


# --------------------------------------------------------------------------
# constructor

def test_alias():
    assert np.ThreadPoolExecutor is np.ThreadPool


def test_isinstance_stdlib_executor():
    p = np.ThreadPool(1)
    try:
        assert isinstance(p, cf.ThreadPoolExecutor)
        assert isinstance(p, cf.Executor)
    finally:
        p.shutdown()


@pytest.mark.parametrize("n", [0, -1])
def test_max_workers_must_be_positive(n):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        np.ThreadPool(max_workers=n)


def test_max_workers_bad_type():
    with pytest.raises(TypeError):
        np.ThreadPool(max_workers="3")


def test_initializer_must_be_callable():
    with pytest.raises(TypeError, match="initializer must be a callable"):
        np.ThreadPool(1, initializer=5)


def test_constructor_keywords_and_positionals():
    ran = []
    p = np.ThreadPool(2, "kwpfx", ran.append, ("init",))
    try:
        assert p.submit(threading.current_thread).result(HANG_TIMEOUT).name.startswith("kwpfx")
    finally:
        p.shutdown()
    assert ran == ["init"]
    p = np.ThreadPool(max_workers=1, thread_name_prefix="x", initializer=None, initargs=())
    p.shutdown()


def _concurrency_probe(pool, n_tasks, expected_parallel):
    """Submit n_tasks blocking tasks; return number that start concurrently."""
    started = []
    lock = threading.Lock()
    release = threading.Event()

    def task():
        with lock:
            started.append(threading.get_ident())
        release.wait(HANG_TIMEOUT)

    futs = [pool.submit(task) for _ in range(n_tasks)]
    try:
        wait_until(lambda: len(started) >= expected_parallel)
        # Give surplus tasks a chance to (wrongly) start too.
        time.sleep(0.3)
        with lock:
            n = len(started)
            idents = set(started)
    finally:
        release.set()
    for f in futs:
        f.result(HANG_TIMEOUT)
    return n, idents


@pytest.mark.parametrize("workers", [1, 3])
def test_max_workers_bounds_concurrency(make_pool, workers):
    p = make_pool(max_workers=workers)
    n, idents = _concurrency_probe(p, workers + 3, workers)
    assert n == workers
    assert len(idents) == workers


def test_default_max_workers_matches_stdlib(make_pool):
    expected = stdlib_default_workers()
    p = make_pool()
    n, idents = _concurrency_probe(p, expected + 2, expected)
    assert n == expected


# --------------------------------------------------------------------------
# thread naming and real threads

def test_worker_threads_named_with_prefix(make_pool):
    p = make_pool(max_workers=2, thread_name_prefix="myprefix")
    barrier = threading.Barrier(2, timeout=HANG_TIMEOUT)

    def task():
        barrier.wait()
        t = threading.current_thread()
        return t.name, isinstance(t, threading.Thread), t is threading.main_thread()

    res = [f.result(HANG_TIMEOUT) for f in [p.submit(task), p.submit(task)]]
    names = sorted(r[0] for r in res)
    assert all(re.fullmatch(r"myprefix_\d+", n) for n in names), names
    assert len(set(names)) == 2
    assert all(r[1] for r in res)
    assert not any(r[2] for r in res)


def test_default_thread_name_prefix(make_pool):
    p = make_pool(max_workers=1)
    name = p.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT)
    assert re.fullmatch(r"ThreadPoolExecutor-\d+_\d+", name), name


def test_default_prefixes_differ_between_pools(make_pool):
    a = make_pool(max_workers=1)
    b = make_pool(max_workers=1)
    na = a.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT)
    nb = b.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT)
    assert na.rsplit("_", 1)[0] != nb.rsplit("_", 1)[0]


def test_worker_threads_visible_in_threading(make_pool):
    p = make_pool(max_workers=1, thread_name_prefix="visible")
    t = p.submit(threading.current_thread).result(HANG_TIMEOUT)
    assert t in threading.enumerate()
    assert t.ident == p.submit(threading.get_ident).result(HANG_TIMEOUT)


def test_thread_local_storage_per_worker(make_pool):
    p = make_pool(max_workers=1)
    local = threading.local()

    def put(v):
        local.v = v

    def get():
        return getattr(local, "v", None)

    p.submit(put, 11).result(HANG_TIMEOUT)
    assert p.submit(get).result(HANG_TIMEOUT) == 11
    assert getattr(local, "v", None) is None  # not set in the main thread


# --------------------------------------------------------------------------
# initializer

def test_initializer_runs_in_each_worker_and_sets_thread_locals(make_pool):
    local = threading.local()
    inits = []
    lock = threading.Lock()

    def init(tag, extra):
        local.tag = (tag, extra, threading.current_thread().name)
        with lock:
            inits.append(threading.current_thread().name)

    p = make_pool(max_workers=2, thread_name_prefix="ini", initializer=init,
                  initargs=("T", 9))
    barrier = threading.Barrier(2, timeout=HANG_TIMEOUT)

    def task():
        barrier.wait()
        return local.tag

    res = [f.result(HANG_TIMEOUT) for f in [p.submit(task), p.submit(task)]]
    for tag, extra, name in res:
        assert (tag, extra) == ("T", 9)
    # each worker saw its own thread-local, set by its own initializer run
    assert sorted(r[2] for r in res) == sorted(inits)
    assert len(inits) == 2


def failing_init():
    raise MyError("init failed")


def test_failing_initializer_breaks_pool(make_pool, log_capture):
    records = log_capture("concurrent.futures")
    p = make_pool(max_workers=2, initializer=failing_init)
    futs = []
    for i in range(5):
        # once the pool is known to be broken, submit itself raises
        try:
            futs.append(p.submit(pow, 2, i))
        except cft.BrokenThreadPool:
            break
    for f in futs:
        with pytest.raises(cft.BrokenThreadPool,
                           match="A thread initializer failed, the thread pool is not usable anymore"):
            f.result(HANG_TIMEOUT)
        assert isinstance(f.exception(), cf.BrokenExecutor)
    with pytest.raises(cft.BrokenThreadPool):
        p.submit(pow, 2, 2)
    crit = [r for r in records if r.levelno == logging.CRITICAL
            and r.getMessage().startswith("Exception in initializer:")]
    assert crit, [r.getMessage() for r in records]
    assert crit[0].exc_info and crit[0].exc_info[0] is MyError
    p.shutdown(wait=True)


def test_broken_pool_shutdown_does_not_hang(make_pool, log_capture):
    log_capture("concurrent.futures")
    p = make_pool(max_workers=1, initializer=failing_init)
    f = p.submit(int)
    with pytest.raises(cft.BrokenThreadPool):
        f.result(HANG_TIMEOUT)
    p.shutdown(wait=True)
    p.shutdown(wait=True)


# --------------------------------------------------------------------------
# submit

def test_submit_args_kwargs(pool):
    def f(a, b, *, c):
        return (a, b, c)
    assert pool.submit(f, 1, 2, c=3).result(HANG_TIMEOUT) == (1, 2, 3)
    assert pool.submit(f, 1, b=2, c=3).result(HANG_TIMEOUT) == (1, 2, 3)


def test_submit_fn_keyword_is_passed_through(pool):
    # submit(fn, /, *args, **kwargs): 'fn' as keyword goes to the callable
    def f(**kw):
        return kw
    assert pool.submit(f, fn=1, self=2).result(HANG_TIMEOUT) == {"fn": 1, "self": 2}


def test_submit_no_callable():
    p = np.ThreadPool(1)
    try:
        with pytest.raises(TypeError):
            p.submit()
    finally:
        p.shutdown()


@pytest.mark.nativepool_only
@pytest.mark.parametrize("bad", [None, 42, "str"])
def test_submit_non_callable_raises_typeerror(pool, bad):
    with pytest.raises(TypeError):
        pool.submit(bad)


def test_submit_returns_future(pool):
    f = pool.submit(int, "5")
    assert isinstance(f, cf.Future)
    assert isinstance(f, np.Future)
    assert f.result(HANG_TIMEOUT) == 5


def test_submit_various_callables(pool):
    class C:
        def m(self, x):
            return x + 1

        def __call__(self, x):
            return x * 3

        @staticmethod
        def s(x):
            return -x
    import functools
    assert pool.submit(C().m, 1).result(HANG_TIMEOUT) == 2
    assert pool.submit(C(), 2).result(HANG_TIMEOUT) == 6
    assert pool.submit(C.s, 3).result(HANG_TIMEOUT) == -3
    assert pool.submit(functools.partial(pow, 2), 10).result(HANG_TIMEOUT) == 1024
    assert pool.submit(len, [1, 2]).result(HANG_TIMEOUT) == 2
    assert pool.submit(C).result(HANG_TIMEOUT).__class__ is C


def test_task_exception_stored(pool):
    def boom(x):
        raise MyError(x)
    f = pool.submit(boom, "v")
    with pytest.raises(MyError, match="v"):
        f.result(HANG_TIMEOUT)
    assert isinstance(f.exception(), MyError)


def test_task_baseexception_does_not_kill_worker(make_pool):
    p = make_pool(max_workers=1)

    def stop():
        raise SystemExit(3)

    def ki():
        raise KeyboardInterrupt

    f1 = p.submit(stop)
    f2 = p.submit(ki)
    with pytest.raises(SystemExit):
        f1.result(HANG_TIMEOUT)
    with pytest.raises(KeyboardInterrupt):
        f2.result(HANG_TIMEOUT)
    # the single worker is still alive
    assert p.submit(lambda: 5).result(HANG_TIMEOUT) == 5


def test_future_running_while_task_runs(pool, gate):
    f = pool.submit(gate.wait)
    assert wait_until(f.running)
    assert not f.done()
    assert f.cancel() is False
    gate.open()
    assert f.result(HANG_TIMEOUT) is True
    assert not f.running()


def test_cancel_queued_future_does_not_run(make_pool, gate):
    p = make_pool(max_workers=1)
    blocker = p.submit(gate.wait)
    ran = []
    queued = [p.submit(ran.append, i) for i in range(10)]
    assert all(f.cancel() for f in queued[::2])
    gate.open()
    blocker.result(HANG_TIMEOUT)
    for i, f in enumerate(queued):
        if i % 2 == 0:
            assert f.cancelled()
            with pytest.raises(cf.CancelledError):
                f.result(HANG_TIMEOUT)
        else:
            assert f.result(HANG_TIMEOUT) is None
    assert ran == list(range(1, 10, 2))


def test_fifo_order_single_worker(make_pool):
    p = make_pool(max_workers=1)
    out = []
    futs = [p.submit(out.append, i) for i in range(500)]
    for f in futs:
        f.result(HANG_TIMEOUT)
    assert out == list(range(500))


def test_task_can_submit_to_same_pool(pool):
    def outer(n):
        if n == 0:
            return 0
        return pool.submit(lambda: n).result(HANG_TIMEOUT) + 1
    assert pool.submit(outer, 5).result(HANG_TIMEOUT) == 6


def test_many_tasks_all_complete(pool):
    futs = [pool.submit(lambda x: x * x, i) for i in range(5000)]
    assert [f.result(HANG_TIMEOUT) for f in futs] == [i * i for i in range(5000)]


def test_done_callback_runs_after_result_is_set(pool):
    seen = []
    ev = threading.Event()

    def cb(f):
        seen.append((f.done(), f.result()))
        ev.set()

    f = pool.submit(lambda: "r")
    f.add_done_callback(cb)
    assert ev.wait(HANG_TIMEOUT)
    assert seen == [(True, "r")]


# --------------------------------------------------------------------------
# shutdown

def test_submit_after_shutdown_raises():
    p = np.ThreadPool(2)
    p.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        p.submit(int)


def test_shutdown_wait_waits_for_running_and_queued():
    p = np.ThreadPool(1)
    out = []

    def slow(i):
        time.sleep(0.02)
        out.append(i)

    futs = [p.submit(slow, i) for i in range(10)]
    p.shutdown(wait=True)
    assert out == list(range(10))
    assert all(f.done() and not f.cancelled() for f in futs)


def test_shutdown_nowait_then_tasks_finish(gate):
    p = np.ThreadPool(1)
    f1 = p.submit(gate.wait)
    f2 = p.submit(lambda: "second")
    p.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        p.submit(int)
    gate.open()
    assert f1.result(HANG_TIMEOUT) is True
    assert f2.result(HANG_TIMEOUT) == "second"
    p.shutdown(wait=True)


def test_shutdown_cancel_futures(gate):
    p = np.ThreadPool(1)
    running = p.submit(gate.wait)
    assert wait_until(running.running)
    queued = [p.submit(int, i) for i in range(20)]
    p.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    for f in queued:
        with pytest.raises(cf.CancelledError):
            f.result(0)
    assert not running.cancelled()
    gate.open()
    assert running.result(HANG_TIMEOUT) is True
    p.shutdown(wait=True)


@pytest.mark.nativepool_only
def test_shutdown_cancel_futures_notifies_stdlib_waiters(gate):
    p = np.ThreadPool(1)
    running = p.submit(gate.wait)
    assert wait_until(running.running)
    queued = [p.submit(int, i) for i in range(5)]
    try:
        p.shutdown(wait=False, cancel_futures=True)
        # Stdlib leaves them CANCELLED (not notified) and wait() would block until
        # the timeout; nativepool moves them to CANCELLED_AND_NOTIFIED.
        done, not_done = cf.wait(queued, timeout=5)
        assert not not_done
        assert set(queued) == done
        done, not_done = np.wait(queued, timeout=5)
        assert not not_done
        assert set(cf.as_completed(queued, timeout=5)) == set(queued)
    finally:
        gate.open()
        p.shutdown(wait=True)


def test_shutdown_cancel_futures_callbacks_run_once(gate):
    p = np.ThreadPool(1)
    running = p.submit(gate.wait)
    assert wait_until(running.running)
    counts = {}
    queued = []
    for i in range(10):
        f = p.submit(int, i)
        counts[i] = 0

        def cb(fut, i=i):
            counts[i] += 1
        f.add_done_callback(cb)
        queued.append(f)
    p.shutdown(wait=False, cancel_futures=True)
    gate.open()
    p.shutdown(wait=True)
    assert all(f.cancelled() for f in queued)
    assert all(v == 1 for v in counts.values()), counts


def test_shutdown_idempotent_and_context_manager():
    with np.ThreadPool(2) as p:
        f = p.submit(lambda: 1)
    assert f.result(0) == 1
    p.shutdown()
    p.shutdown(wait=False)
    p.shutdown(cancel_futures=True)
    with pytest.raises(RuntimeError):
        p.submit(int)


def test_context_manager_returns_pool_and_waits():
    out = []
    with np.ThreadPool(2) as p:
        assert isinstance(p, np.ThreadPool)
        futs = [p.submit(lambda i=i: (time.sleep(0.01), out.append(i))) for i in range(6)]
    assert sorted(out) == list(range(6))
    assert all(f.done() for f in futs)


def test_context_manager_exception_propagates():
    with pytest.raises(MyError):
        with np.ThreadPool(1) as p:
            p.submit(int)
            raise MyError()
    with pytest.raises(RuntimeError):
        p.submit(int)


def test_shutdown_from_inside_task_nowait():
    p = np.ThreadPool(2)
    f = p.submit(lambda: p.shutdown(wait=False))
    assert f.result(HANG_TIMEOUT) is None
    p.shutdown(wait=True)


def test_shutdown_positional_wait_keyword_cancel():
    p = np.ThreadPool(1)
    p.shutdown(True)
    with pytest.raises(TypeError):
        p.shutdown(True, True)  # cancel_futures is keyword-only


def test_shutdown_releases_threads():
    p = np.ThreadPool(3, thread_name_prefix="reaped")
    barrier = threading.Barrier(3, timeout=HANG_TIMEOUT)
    threads = [f.result(HANG_TIMEOUT) for f in
               [p.submit(lambda: (barrier.wait(), threading.current_thread())[1])
                for _ in range(3)]]
    p.shutdown(wait=True)
    assert wait_until(lambda: not any(t.is_alive() for t in threads), timeout=10)


def test_concurrent_shutdown_and_submit():
    for _ in range(20):
        p = np.ThreadPool(2)
        accepted = []
        errors = []
        stop = threading.Event()

        def submitter():
            while not stop.is_set():
                try:
                    accepted.append(p.submit(int, 1))
                except RuntimeError:
                    errors.append(1)
                    return

        ts = [threading.Thread(target=submitter) for _ in range(2)]
        for t in ts:
            t.start()
        time.sleep(0.005)
        p.shutdown(wait=True)
        stop.set()
        for t in ts:
            t.join(HANG_TIMEOUT)
        # every accepted future completes (nothing lost)
        for f in accepted:
            assert f.result(HANG_TIMEOUT) == 1


# --------------------------------------------------------------------------
# weakref / gc / leaks

def test_weakref_to_pool():
    p = np.ThreadPool(1)
    r = weakref.ref(p)
    assert r() is p
    p.submit(int).result(HANG_TIMEOUT)
    p.shutdown(wait=True)
    del p
    assert wait_until(lambda: (gc.collect(), r() is None)[1], timeout=10)


def test_unreferenced_pool_without_shutdown_finishes_work():
    out = []
    ev = threading.Event()

    def make():
        p = np.ThreadPool(1)
        f = p.submit(lambda: (time.sleep(0.05), out.append(1), ev.set()))
        return f

    f = make()
    gc.collect()
    assert ev.wait(HANG_TIMEOUT)
    assert f.result(HANG_TIMEOUT) == (None, None, None)
    assert out == [1]


def test_args_and_result_refcounts_released(make_pool):
    p = make_pool(max_workers=2)
    arg = object()
    res = object()
    base_arg = sys.getrefcount(arg)
    base_res = sys.getrefcount(res)
    for _ in range(500):
        p.submit(lambda a: res, arg).result(HANG_TIMEOUT)
    assert refcount_settles(arg, base_arg) <= base_arg + 2
    assert refcount_settles(res, base_res) <= base_res + 2


def test_exception_refcount_released(make_pool):
    p = make_pool(max_workers=2)
    err = MyError("shared")
    base = sys.getrefcount(err)

    def boom():
        raise err

    for _ in range(300):
        f = p.submit(boom)
        assert f.exception(HANG_TIMEOUT) is err
        del f
    err.__traceback__ = None
    assert refcount_settles(err, base) <= base + 2


def test_submit_result_no_leak(make_pool, assert_no_leak):
    p = make_pool(max_workers=2)

    def cycle():
        p.submit(divmod, 7, 3).result(HANG_TIMEOUT)
        f = p.submit(lambda: 1 / 0)
        f.exception(HANG_TIMEOUT)
        g = p.submit(int)
        g.add_done_callback(lambda fut: None)
        g.result(HANG_TIMEOUT)

    assert_no_leak(cycle, iterations=2000, settle=lambda: p.submit(int).result(HANG_TIMEOUT))


def test_pool_create_destroy_no_leak(assert_no_leak):
    def cycle():
        with np.ThreadPool(1) as p:
            p.submit(int).result(HANG_TIMEOUT)
    assert_no_leak(cycle, iterations=200, warmup=30, max_growth=128 * 1024)


# --------------------------------------------------------------------------
# more lifecycle

def test_dropped_pools_release_their_threads():
    # Pools dropped without shutdown() must not leak worker threads forever
    # (the stdlib's workers exit once their executor is garbage-collected).
    base = threading.active_count()
    for _ in range(30):
        p = np.ThreadPool(2)
        p.submit(int).result(HANG_TIMEOUT)
        del p
    gc.collect()
    assert wait_until(lambda: (gc.collect(), threading.active_count())[1] <= base + 2,
                      timeout=HANG_TIMEOUT), (base, threading.active_count())


def test_subclassing_pool():
    class Counting(np.ThreadPool):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.n = 0

        def submit(self, fn, /, *args, **kwargs):
            self.n += 1
            return super().submit(fn, *args, **kwargs)

    with Counting(2, thread_name_prefix="sub") as p:
        assert p.submit(pow, 2, 3).result(HANG_TIMEOUT) == 8
        assert list(p.map(abs, [-1, -2])) == [1, 2]
        assert p.n >= 1
        assert isinstance(p, cf.ThreadPoolExecutor)


def test_submit_from_done_callbacks_while_shutting_down():
    p = np.ThreadPool(2)
    results = []
    refused = []
    lock = threading.Lock()

    def cb(fut):
        try:
            g = p.submit(int, 1)
        except RuntimeError:
            with lock:
                refused.append(1)
            return
        with lock:
            results.append(g)

    futs = []
    for i in range(2000):
        f = p.submit(abs, -i)
        f.add_done_callback(cb)
        futs.append(f)
    p.shutdown(wait=True)
    assert all(f.done() for f in futs)
    with lock:
        got = list(results)
    # every follow-up that was accepted completes; nothing is lost or hangs
    for g in got:
        assert g.result(HANG_TIMEOUT) == 1
    assert len(got) + len(refused) == 2000


def test_result_from_many_threads_while_pool_busy(make_pool):
    p = make_pool(max_workers=2)
    fs = [p.submit(lambda i=i: (time.sleep(0.0005), i)[1]) for i in range(400)]
    out = [None] * 4
    errs = []

    def consumer(k):
        try:
            out[k] = [f.result(HANG_TIMEOUT) for f in fs[k::4]]
        except BaseException as e:
            errs.append(e)

    ts = [threading.Thread(target=consumer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(HANG_TIMEOUT * 2)
    assert not errs
    for k in range(4):
        assert out[k] == list(range(400))[k::4]


def test_max_workers_large_spawns_lazily(make_pool):
    p = make_pool(max_workers=1000)
    base = threading.active_count()
    for _ in range(20):
        p.submit(int).result(HANG_TIMEOUT)
    # sequential tasks reuse idle workers instead of spawning 20 threads
    assert threading.active_count() - base <= 3


def test_first_worker_name_index_starts_at_zero(make_pool):
    p = make_pool(max_workers=1, thread_name_prefix="solo")
    assert p.submit(lambda: threading.current_thread().name).result(HANG_TIMEOUT) == "solo_0"
