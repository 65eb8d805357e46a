"""nativepool.wait / nativepool.as_completed with our futures, stdlib futures and mixes."""
import concurrent.futures as cf
import threading
import time

import pytest

from conftest import np, HANG_TIMEOUT


class MyError(Exception):
    pass


KINDS = ["np", "stdlib", "mixed"]


def make_futures(kind, n):
    out = []
    for i in range(n):
        if kind == "np" or (kind == "mixed" and i % 2 == 0):
            out.append(np.Future())
        else:
            out.append(cf.Future())
    return out


def later(delay, fn, *args):
    t = threading.Timer(delay, fn, args)
    t.daemon = True
    t.start()
    return t


# --------------------------------------------------------------------------
# wait

@pytest.mark.parametrize("kind", KINDS)
def test_wait_all_completed(kind):
    fs = make_futures(kind, 4)
    for i, f in enumerate(fs):
        later(0.01 * i, f.set_result, i)
    res = np.wait(fs, timeout=HANG_TIMEOUT)
    assert res.done == set(fs)
    assert res.not_done == set()
    done, not_done = res  # a 2-tuple (DoneAndNotDoneFutures)
    assert done == set(fs) and not_done == set()
    assert [f.result() for f in fs] == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_default_return_when_is_all(kind):
    fs = make_futures(kind, 2)
    fs[0].set_result(0)
    later(0.05, fs[1].set_result, 1)
    done, not_done = np.wait(fs)
    assert done == set(fs) and not not_done


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_completed(kind):
    fs = make_futures(kind, 3)
    later(0.02, fs[1].set_result, "one")
    done, not_done = np.wait(fs, timeout=HANG_TIMEOUT, return_when=np.FIRST_COMPLETED)
    assert done == {fs[1]}
    assert not_done == {fs[0], fs[2]}


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_completed_already_done(kind):
    fs = make_futures(kind, 3)
    fs[2].set_exception(MyError())
    done, not_done = np.wait(fs, timeout=0, return_when=np.FIRST_COMPLETED)
    assert done == {fs[2]} and not_done == {fs[0], fs[1]}


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_exception(kind):
    fs = make_futures(kind, 4)
    fs[0].set_result(0)
    later(0.02, fs[3].set_exception, MyError())
    done, not_done = np.wait(fs, timeout=HANG_TIMEOUT, return_when=np.FIRST_EXCEPTION)
    assert done == {fs[0], fs[3]}
    assert not_done == {fs[1], fs[2]}


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_exception_without_exception_waits_for_all(kind):
    fs = make_futures(kind, 3)
    for i, f in enumerate(fs):
        later(0.01 * (i + 1), f.set_result, i)
    done, not_done = np.wait(fs, timeout=HANG_TIMEOUT, return_when=np.FIRST_EXCEPTION)
    assert done == set(fs) and not not_done


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_exception_already_failed(kind):
    fs = make_futures(kind, 3)
    fs[1].set_exception(MyError())
    done, not_done = np.wait(fs, timeout=0, return_when=np.FIRST_EXCEPTION)
    assert done == {fs[1]} and not_done == {fs[0], fs[2]}


@pytest.mark.parametrize("kind", KINDS)
def test_wait_timeout_returns_not_done(kind):
    fs = make_futures(kind, 3)
    fs[0].set_result(1)
    done, not_done = np.wait(fs, timeout=0.05)
    assert done == {fs[0]}
    assert not_done == {fs[1], fs[2]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("timeout", [0, -1])
def test_wait_zero_or_negative_timeout_does_not_block(kind, timeout):
    fs = make_futures(kind, 2)
    result = []
    t = threading.Thread(target=lambda: result.append(np.wait(fs, timeout=timeout)))
    t.daemon = True
    t.start()
    t.join(HANG_TIMEOUT)
    alive = t.is_alive()
    for f in fs:
        f.set_result(None)
    assert not alive, "wait() with timeout=%r blocked" % timeout
    assert result[0].done == set() and result[0].not_done == set(fs)


def test_wait_bad_timeout_type():
    f = np.Future()
    with pytest.raises(TypeError):
        np.wait([f], timeout="x")


def test_wait_invalid_return_when():
    f = np.Future()
    with pytest.raises(ValueError):
        np.wait([f], timeout=0.01, return_when="BOGUS")


def test_wait_empty():
    done, not_done = np.wait([])
    assert done == set() and not_done == set()


@pytest.mark.parametrize("kind", KINDS)
def test_wait_duplicates(kind):
    fs = make_futures(kind, 2)
    later(0.02, fs[0].set_result, 0)
    fs[1].set_result(1)
    done, not_done = np.wait([fs[0], fs[0], fs[1], fs[0]], timeout=HANG_TIMEOUT)
    assert done == set(fs) and not not_done


@pytest.mark.parametrize("kind", KINDS)
def test_wait_accepts_any_iterable(kind):
    fs = make_futures(kind, 3)
    for f in fs:
        f.set_result(None)
    done, _ = np.wait(iter(fs), timeout=0)
    assert done == set(fs)
    done, _ = np.wait(tuple(fs), timeout=0)
    assert done == set(fs)
    done, _ = np.wait(set(fs), timeout=0)
    assert done == set(fs)


@pytest.mark.parametrize("kind", KINDS)
def test_wait_cancelled_and_notified_counts_as_done(kind):
    fs = make_futures(kind, 2)

    def cancel_notify(f):
        f.cancel()
        f.set_running_or_notify_cancel()

    later(0.02, cancel_notify, fs[0])
    done, not_done = np.wait(fs, timeout=HANG_TIMEOUT, return_when=np.FIRST_COMPLETED)
    assert done == {fs[0]} and not_done == {fs[1]}


@pytest.mark.parametrize("kind", KINDS)
def test_wait_with_pool_futures(kind, pool):
    ev = threading.Event()
    fs = make_futures(kind, 2) + [pool.submit(ev.wait, HANG_TIMEOUT)]
    later(0.02, ev.set)
    done, not_done = np.wait(fs, timeout=HANG_TIMEOUT, return_when=np.FIRST_COMPLETED)
    assert done == {fs[2]} and not_done == set(fs[:2])


def test_wait_removes_waiters(pool):
    # Repeated waits on the same long-lived futures must not accumulate state
    # (stdlib removes its waiters from f._waiters after each wait).
    f = np.Future()
    g = cf.Future()
    for _ in range(200):
        np.wait([f, g], timeout=0.0001)
    f.set_result(1)
    g.set_result(2)
    for fut in (f, g):
        waiters = getattr(fut, "_waiters", None)
        if waiters is not None:
            assert len(waiters) == 0


def test_wait_many_threads_same_futures():
    fs = [np.Future() for _ in range(5)]
    results = []
    lock = threading.Lock()

    def waiter():
        r = np.wait(fs, timeout=HANG_TIMEOUT)
        with lock:
            results.append(r)

    ts = [threading.Thread(target=waiter) for _ in range(8)]
    for t in ts:
        t.start()
    time.sleep(0.02)
    for f in fs:
        f.set_result(0)
    for t in ts:
        t.join(HANG_TIMEOUT)
    assert len(results) == 8
    assert all(r.done == set(fs) for r in results)


# --------------------------------------------------------------------------
# as_completed

@pytest.mark.parametrize("kind", KINDS)
def test_as_completed_order(kind):
    fs = make_futures(kind, 3)
    it = np.as_completed(fs, timeout=HANG_TIMEOUT)
    fs[2].set_result(2)
    assert next(it) is fs[2]
    fs[0].set_exception(MyError())
    assert next(it) is fs[0]
    fs[1].set_result(1)
    assert next(it) is fs[1]
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.parametrize("kind", KINDS)
def test_as_completed_done_first(kind):
    fs = make_futures(kind, 4)
    fs[3].set_result(3)
    fs[1].set_result(1)
    later(0.05, fs[0].set_result, 0)
    later(0.1, fs[2].set_result, 2)
    out = list(np.as_completed(fs, timeout=HANG_TIMEOUT))
    assert set(out[:2]) == {fs[1], fs[3]}
    assert set(out) == set(fs) and len(out) == 4


@pytest.mark.parametrize("kind", KINDS)
def test_as_completed_duplicates_yielded_once(kind):
    fs = make_futures(kind, 2)
    for f in fs:
        f.set_result(None)
    out = list(np.as_completed([fs[0], fs[1], fs[0]]))
    assert len(out) == 2 and set(out) == set(fs)
    g = make_futures(kind, 1)[0]
    later(0.02, g.set_result, 1)
    out = list(np.as_completed([g, g, g], timeout=HANG_TIMEOUT))
    assert out == [g]


@pytest.mark.parametrize("kind", KINDS)
def test_as_completed_timeout(kind):
    fs = make_futures(kind, 3)
    fs[0].set_result(0)
    it = np.as_completed(fs, timeout=0.1)
    assert next(it) is fs[0]
    with pytest.raises(cf.TimeoutError) as ei:
        next(it)
    assert "2 (of 3) futures unfinished" in str(ei.value)


@pytest.mark.parametrize("timeout", [0, -1])
def test_as_completed_zero_negative_timeout(timeout):
    f = np.Future()
    g = np.Future()
    g.set_result(1)
    it = np.as_completed([f, g], timeout=timeout)
    # timeout is checked only after yielding finished futures
    assert next(it) is g
    with pytest.raises(cf.TimeoutError):
        next(it)


def test_as_completed_bad_timeout_type():
    f = np.Future()
    with pytest.raises(TypeError):
        list(np.as_completed([f], timeout="x"))


def test_as_completed_empty():
    assert list(np.as_completed([])) == []


@pytest.mark.parametrize("kind", KINDS)
def test_as_completed_cancelled_and_notified(kind):
    fs = make_futures(kind, 2)
    fs[1].set_result(1)

    def cancel_notify():
        fs[0].cancel()
        fs[0].set_running_or_notify_cancel()

    later(0.02, cancel_notify)
    out = list(np.as_completed(fs, timeout=HANG_TIMEOUT))
    assert out == [fs[1], fs[0]]


def test_as_completed_pool_futures(pool):
    import random
    rnd = random.Random(1)
    delays = [rnd.random() * 0.01 for _ in range(100)]
    fs = [pool.submit(lambda d=d, i=i: (time.sleep(d), i)[1]) for i, d in enumerate(delays)]
    out = list(np.as_completed(fs + [cf.Future() for _ in range(0)], timeout=HANG_TIMEOUT))
    assert len(out) == 100 and set(out) == set(fs)
    assert sorted(f.result() for f in out) == list(range(100))


def test_as_completed_generator_input_mixed(pool):
    s = cf.Future()
    later(0.02, s.set_result, "s")
    fs = (f for f in [pool.submit(lambda: "n"), s])
    out = {f.result() for f in np.as_completed(fs, timeout=HANG_TIMEOUT)}
    assert out == {"n", "s"}


def test_wait_as_completed_no_leak(assert_no_leak):
    def cycle():
        a = np.Future()
        b = cf.Future()
        np.wait([a, b], timeout=0)
        a.set_result(1)
        np.wait([a, b], timeout=0, return_when=np.FIRST_COMPLETED)
        b.set_result(2)
        list(np.as_completed([a, b]))
        c = np.Future()
        try:
            next(np.as_completed([c], timeout=0))
        except cf.TimeoutError:
            pass
    assert_no_leak(cycle, iterations=2000)


def test_wait_timeout_is_not_cut_short():
    f = np.Future()
    t0 = time.monotonic()
    done, not_done = np.wait([f], timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert not_done == {f}


def test_as_completed_timeout_is_not_cut_short():
    f = np.Future()
    t0 = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        next(np.as_completed([f], timeout=0.2))
    assert time.monotonic() - t0 >= 0.19
