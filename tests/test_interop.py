"""Interoperation with the stdlib: isinstance, concurrent.futures.wait/as_completed
on our futures, and asyncio (wrap_future, await, run_in_executor, to_thread)."""
import asyncio
import concurrent.futures as cf
import random
import sys
import threading
import time
import warnings

import pytest

from conftest import np, wait_until, HANG_TIMEOUT


class MyError(Exception):
    pass


def test_isinstance_checks(pool):
    assert isinstance(pool, cf.ThreadPoolExecutor)
    assert isinstance(pool, cf.Executor)
    f = pool.submit(int)
    assert isinstance(f, cf.Future)
    assert isinstance(np.Future(), cf.Future)
    assert issubclass(np.Future, cf.Future)
    assert issubclass(np.ThreadPool, cf.ThreadPoolExecutor)


# --------------------------------------------------------------------------
# stdlib helpers on our futures

def test_stdlib_wait_all_on_pool_futures(pool):
    fs = [pool.submit(time.sleep, 0.001 * (i % 5)) for i in range(50)]
    done, not_done = cf.wait(fs, timeout=HANG_TIMEOUT)
    assert done == set(fs) and not not_done


def test_stdlib_wait_first_completed_on_pool_futures(make_pool):
    p = make_pool(max_workers=3)
    ev = threading.Event()
    slow = [p.submit(ev.wait, HANG_TIMEOUT) for _ in range(2)]
    quick = p.submit(lambda: "q")
    try:
        done, not_done = cf.wait(slow + [quick], timeout=HANG_TIMEOUT,
                                 return_when=cf.FIRST_COMPLETED)
        assert quick in done
        assert set(slow) <= not_done
    finally:
        ev.set()


def test_stdlib_wait_first_exception_on_pool_futures(make_pool):
    p = make_pool(max_workers=3)
    ev = threading.Event()
    slow = p.submit(ev.wait, HANG_TIMEOUT)

    def boom():
        time.sleep(0.02)
        raise MyError()

    bad = p.submit(boom)
    try:
        done, not_done = cf.wait([slow, bad], timeout=HANG_TIMEOUT,
                                 return_when=cf.FIRST_EXCEPTION)
        assert done == {bad} and not_done == {slow}
    finally:
        ev.set()


def test_stdlib_wait_on_manual_np_futures_completed_later():
    fs = [np.Future() for _ in range(3)]
    for i, f in enumerate(fs):
        threading.Timer(0.01 * (i + 1), f.set_result, (i,)).start()
    done, not_done = cf.wait(fs, timeout=HANG_TIMEOUT)
    assert done == set(fs) and not not_done


def test_stdlib_wait_mixed_futures(pool):
    s = cf.Future()
    threading.Timer(0.03, s.set_result, (1,)).start()
    n = pool.submit(time.sleep, 0.01)
    m = np.Future()
    threading.Timer(0.02, m.set_exception, (MyError(),)).start()
    done, not_done = cf.wait([s, n, m], timeout=HANG_TIMEOUT)
    assert done == {s, n, m} and not not_done


def test_stdlib_as_completed_on_pool_futures(pool):
    rnd = random.Random(3)
    fs = [pool.submit(lambda d=rnd.random() * 0.005, i=i: (time.sleep(d), i)[1])
          for i in range(300)]
    out = list(cf.as_completed(fs, timeout=HANG_TIMEOUT))
    assert len(out) == 300 and set(out) == set(fs)
    assert sorted(f.result() for f in out) == list(range(300))


def test_stdlib_as_completed_mixed(pool):
    s = cf.Future()
    threading.Timer(0.02, s.set_result, ("s",)).start()
    fs = [pool.submit(lambda: "n"), s, np.Future()]
    fs[2].set_result("m")
    got = {f.result() for f in cf.as_completed(fs, timeout=HANG_TIMEOUT)}
    assert got == {"n", "s", "m"}


def test_stdlib_wait_cancel_then_notify(pool):
    f = np.Future()

    def later():
        time.sleep(0.02)
        f.cancel()
        f.set_running_or_notify_cancel()

    threading.Thread(target=later).start()
    done, not_done = cf.wait([f], timeout=HANG_TIMEOUT)
    assert done == {f}


def test_stdlib_wait_on_many_completing_futures_no_lost_wakeup(make_pool):
    # Completion must be atomic with respect to the stdlib waiter protocol:
    # race many completions against waiter installation.
    p = make_pool(max_workers=2)
    for _ in range(300):
        fs = [p.submit(int, i) for i in range(3)]
        done, not_done = cf.wait(fs, timeout=HANG_TIMEOUT)
        assert not not_done
        f = p.submit(int)
        done, _ = cf.wait([f], timeout=HANG_TIMEOUT, return_when=cf.FIRST_COMPLETED)
        assert done == {f}


# --------------------------------------------------------------------------
# asyncio

def test_wrap_future_result(pool):
    async def main():
        return await asyncio.wrap_future(pool.submit(lambda: 41 + 1))
    assert asyncio.run(main()) == 42


def test_wrap_future_exception(pool):
    def boom():
        raise MyError("async boom")

    async def main():
        return await asyncio.wrap_future(pool.submit(boom))
    with pytest.raises(MyError, match="async boom"):
        asyncio.run(main())


def test_wrap_future_manual_np_future():
    f = np.Future()

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: threading.Thread(target=f.set_result, args=("x",)).start())
        return await asyncio.wait_for(asyncio.wrap_future(f), HANG_TIMEOUT)
    assert asyncio.run(main()) == "x"


def test_wrap_future_cancel_propagates_to_pool_future(make_pool, gate):
    p = make_pool(max_workers=1)
    blocker = p.submit(gate.wait)
    queued = p.submit(lambda: "never")

    async def main():
        afut = asyncio.wrap_future(queued)
        await asyncio.sleep(0)
        afut.cancel()
        for _ in range(10):
            await asyncio.sleep(0)
        return afut.cancelled()

    assert asyncio.run(main()) is True
    assert queued.cancelled()
    gate.open()
    assert blocker.result(HANG_TIMEOUT) is True


@pytest.mark.nativepool_only
def test_await_future_directly(pool):
    async def main():
        return await pool.submit(lambda: "awaited")
    assert asyncio.run(main()) == "awaited"


@pytest.mark.nativepool_only
def test_await_future_directly_exception(pool):
    def boom():
        raise MyError("await boom")

    async def main():
        return await pool.submit(boom)
    with pytest.raises(MyError, match="await boom"):
        asyncio.run(main())


@pytest.mark.nativepool_only
def test_await_manual_np_future():
    f = np.Future()

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: threading.Thread(target=f.set_result, args=(5,)).start())
        return await asyncio.wait_for(_awaiter(f), HANG_TIMEOUT)

    async def _awaiter(fut):
        return await fut

    assert asyncio.run(main()) == 5


def test_run_in_executor_explicit(pool):
    async def main():
        loop = asyncio.get_running_loop()
        a = loop.run_in_executor(pool, pow, 2, 8)
        b = loop.run_in_executor(pool, lambda: threading.current_thread().name)
        return await asyncio.gather(a, b)
    r, name = asyncio.run(main())
    assert r == 256
    assert name.startswith("nptest")


def test_run_in_executor_exception(pool):
    def boom():
        raise MyError("rie")

    async def main():
        return await asyncio.get_running_loop().run_in_executor(pool, boom)
    with pytest.raises(MyError, match="rie"):
        asyncio.run(main())


def test_set_default_executor_and_to_thread():
    p = np.ThreadPool(2, thread_name_prefix="asyncdefault")

    async def main():
        loop = asyncio.get_running_loop()
        with warnings.catch_warnings():
            # 3.8-3.10 only warn (DeprecationWarning) for a non-ThreadPoolExecutor
            warnings.simplefilter("error")
            loop.set_default_executor(p)
        n1 = await loop.run_in_executor(None, lambda: threading.current_thread().name)
        names = [n1]
        if hasattr(asyncio, "to_thread"):
            names.append(await asyncio.to_thread(lambda: threading.current_thread().name))
        return names

    try:
        names = asyncio.run(main())
    finally:
        p.shutdown(wait=True)
    assert names and all(n.startswith("asyncdefault") for n in names), names


def test_asyncio_run_shuts_down_default_executor():
    # asyncio.run() calls loop.shutdown_default_executor(), i.e. pool.shutdown(wait=True)
    p = np.ThreadPool(1)

    async def main():
        asyncio.get_running_loop().set_default_executor(p)
        return await asyncio.get_running_loop().run_in_executor(None, int, "3")

    assert asyncio.run(main()) == 3
    with pytest.raises(RuntimeError):
        p.submit(int)


def test_asyncio_gather_many(pool):
    async def main():
        loop = asyncio.get_running_loop()
        futs = [loop.run_in_executor(pool, abs, -i) for i in range(500)]
        return await asyncio.gather(*futs)
    assert asyncio.run(main()) == list(range(500))


def test_asyncio_wait_for_timeout_cancels(make_pool, gate):
    p = make_pool(max_workers=1)
    p.submit(gate.wait)

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(p, int)
        try:
            await asyncio.wait_for(fut, 0.05)
        except asyncio.TimeoutError:
            return "timeout"
    assert asyncio.run(main()) == "timeout"
    gate.open()


def test_state_strings_seen_by_stdlib_helpers(make_pool, gate):
    # The stdlib helpers read f._state; it must hold the stdlib's strings.
    from concurrent.futures import _base
    p = make_pool(max_workers=1)
    running = p.submit(gate.wait)
    assert wait_until(running.running)
    assert running._state == _base.RUNNING
    queued = p.submit(int)
    assert queued._state == _base.PENDING
    cancelled = p.submit(int)
    cancelled.cancel()
    assert cancelled._state in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED)
    gate.open()
    assert running.result(HANG_TIMEOUT) is True
    assert queued.result(HANG_TIMEOUT) == 0
    assert queued._state == _base.FINISHED
    f = np.Future()
    assert f._state == _base.PENDING
    f.cancel()
    f.set_running_or_notify_cancel()
    assert f._state == _base.CANCELLED_AND_NOTIFIED


@pytest.mark.nativepool_only
def test_state_after_cancel_futures_is_notified(gate):
    from concurrent.futures import _base
    p = np.ThreadPool(1)
    running = p.submit(gate.wait)
    assert wait_until(running.running)
    queued = p.submit(int)
    p.shutdown(wait=False, cancel_futures=True)
    assert queued._state == _base.CANCELLED_AND_NOTIFIED
    gate.open()
    p.shutdown(wait=True)



@pytest.mark.nativepool_only
def test_cancelling_awaiting_task_cancels_queued_future(make_pool, gate):
    p = make_pool(max_workers=1)
    blocker = p.submit(gate.wait)
    queued = p.submit(lambda: "never")

    async def waiter():
        return await queued

    async def main():
        t = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.01)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            return "cancelled"
        return "not cancelled"

    assert asyncio.run(main()) == "cancelled"
    assert queued.cancelled()
    gate.open()
    assert blocker.result(HANG_TIMEOUT) is True


@pytest.mark.nativepool_only
def test_await_already_done_future():
    f = np.Future()
    f.set_result("done")

    async def main():
        return await f
    assert asyncio.run(main()) == "done"
