"""nativepool.Future: the whole concurrent.futures.Future API, standalone."""
import concurrent.futures as cf
import gc
import logging
import threading
import time
import traceback

import pytest

from conftest import np, wait_until, HANG_TIMEOUT


class MyError(Exception):
    pass


# --------------------------------------------------------------------------
# identity of re-exported names

def test_exceptions_are_stdlib_objects():
    import concurrent.futures.thread as cft
    assert np.CancelledError is cf.CancelledError
    assert np.TimeoutError is cf.TimeoutError
    assert np.BrokenExecutor is cf.BrokenExecutor
    assert np.BrokenThreadPool is cft.BrokenThreadPool
    assert np.InvalidStateError is cf.InvalidStateError


def test_return_when_constants_match_stdlib():
    assert np.FIRST_COMPLETED == cf.FIRST_COMPLETED
    assert np.FIRST_EXCEPTION == cf.FIRST_EXCEPTION
    assert np.ALL_COMPLETED == cf.ALL_COMPLETED


def test_future_is_stdlib_future_instance():
    f = np.Future()
    assert isinstance(f, cf.Future)
    assert isinstance(f, np.Future)


def test_future_class_getitem():
    # concurrent.futures.Future supports Future[int] since 3.9
    alias = np.Future[int]
    assert alias is not None


# --------------------------------------------------------------------------
# states

def test_new_future_is_pending():
    f = np.Future()
    assert not f.done()
    assert not f.running()
    assert not f.cancelled()
    assert "pending" in repr(f)


def test_set_result():
    f = np.Future()
    f.set_result(42)
    assert f.done()
    assert not f.running()
    assert not f.cancelled()
    assert f.result() == 42
    assert f.result(timeout=0) == 42
    assert f.exception() is None
    assert "finished" in repr(f)


def test_set_result_none_and_objects():
    f = np.Future()
    f.set_result(None)
    assert f.result() is None
    obj = object()
    g = np.Future()
    g.set_result(obj)
    assert g.result() is obj


def test_set_exception():
    f = np.Future()
    err = MyError("boom")
    f.set_exception(err)
    assert f.done()
    assert not f.cancelled()
    assert f.exception() is err
    with pytest.raises(MyError, match="boom") as ei:
        f.result()
    assert ei.value is err
    assert "finished" in repr(f)


def test_set_exception_baseexception_subclass():
    class Stop(BaseException):
        pass
    f = np.Future()
    f.set_exception(Stop())
    with pytest.raises(Stop):
        f.result()
    assert isinstance(f.exception(), Stop)


def test_running_state():
    f = np.Future()
    assert f.set_running_or_notify_cancel() is True
    assert f.running()
    assert not f.done()
    assert "running" in repr(f)
    assert f.cancel() is False
    assert not f.cancelled()
    f.set_result(1)
    assert not f.running()
    assert f.result() == 1


def test_cancel_pending():
    f = np.Future()
    assert f.cancel() is True
    assert f.cancelled()
    assert f.done()
    assert not f.running()
    assert f.cancel() is True  # idempotent
    with pytest.raises(cf.CancelledError):
        f.result()
    with pytest.raises(cf.CancelledError):
        f.exception()
    with pytest.raises(cf.CancelledError):
        f.result(timeout=0)
    assert "cancelled" in repr(f)


def test_cancel_finished_returns_false():
    f = np.Future()
    f.set_result(3)
    assert f.cancel() is False
    assert not f.cancelled()
    assert f.result() == 3

    g = np.Future()
    g.set_exception(MyError())
    assert g.cancel() is False
    assert not g.cancelled()


def test_set_running_or_notify_cancel_on_cancelled():
    f = np.Future()
    f.cancel()
    assert f.set_running_or_notify_cancel() is False
    assert f.cancelled()
    assert f.done()
    assert f.cancel() is True


@pytest.mark.parametrize("setup", ["running", "result", "exception"])
def test_set_running_or_notify_cancel_unexpected_state(setup):
    f = np.Future()
    if setup == "running":
        f.set_running_or_notify_cancel()
    elif setup == "result":
        f.set_result(1)
    else:
        f.set_exception(MyError())
    with pytest.raises(RuntimeError, match="Future in unexpected state"):
        f.set_running_or_notify_cancel()


@pytest.mark.parametrize("first", ["result", "exception", "cancel"])
@pytest.mark.parametrize("second", ["result", "exception"])
def test_invalid_state_on_second_completion(first, second):
    f = np.Future()
    if first == "result":
        f.set_result(1)
    elif first == "exception":
        f.set_exception(MyError("first"))
    else:
        f.cancel()
    with pytest.raises(cf.InvalidStateError):
        if second == "result":
            f.set_result(2)
        else:
            f.set_exception(MyError("second"))
    # The original outcome is preserved.
    if first == "result":
        assert f.result() == 1
    elif first == "exception":
        assert str(f.exception()) == "first"
    else:
        assert f.cancelled()


def test_invalid_state_after_notify_cancel():
    f = np.Future()
    f.cancel()
    f.set_running_or_notify_cancel()
    with pytest.raises(cf.InvalidStateError):
        f.set_result(1)


def test_set_result_from_running():
    f = np.Future()
    f.set_running_or_notify_cancel()
    f.set_exception(MyError("x"))
    assert isinstance(f.exception(), MyError)


# --------------------------------------------------------------------------
# timeouts

def test_result_timeout_on_pending():
    f = np.Future()
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        f.exception(timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0)
    assert not f.done()


@pytest.mark.parametrize("timeout", [-1, -0.5, -1e300])
def test_negative_timeout_does_not_wait(timeout):
    f = np.Future()
    done = threading.Event()
    box = []

    def waiter():
        try:
            f.result(timeout=timeout)
        except BaseException as e:
            box.append(e)
        done.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    ok = done.wait(HANG_TIMEOUT)
    f.set_result(None)  # free the waiter if it is (wrongly) still blocked
    t.join(HANG_TIMEOUT)
    assert ok, "result() with a negative timeout blocked"
    assert len(box) == 1 and isinstance(box[0], cf.TimeoutError)


def test_negative_timeout_on_done_future_returns():
    f = np.Future()
    f.set_result(5)
    assert f.result(timeout=-1) == 5
    assert f.exception(timeout=-1) is None


@pytest.mark.parametrize("bad", ["x", [], object(), b"1"])
def test_bad_timeout_type(bad):
    f = np.Future()
    with pytest.raises(TypeError):
        f.result(timeout=bad)
    with pytest.raises(TypeError):
        f.exception(timeout=bad)
    assert not f.done()


def test_huge_timeout_is_accepted():
    f = np.Future()
    threading.Timer(0.05, f.set_result, (7,)).start()
    assert f.result(timeout=1e9) == 7


def test_timeout_positional():
    f = np.Future()
    with pytest.raises(cf.TimeoutError):
        f.result(0.01)
    with pytest.raises(cf.TimeoutError):
        f.exception(0.01)


def test_result_wakes_waiting_threads():
    f = np.Future()
    n = 8
    results = []
    lock = threading.Lock()

    def waiter():
        r = f.result(timeout=HANG_TIMEOUT)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=waiter) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    f.set_result("v")
    for t in threads:
        t.join(HANG_TIMEOUT)
    assert results == ["v"] * n


def test_exception_wakes_waiting_threads():
    f = np.Future()
    got = []

    def waiter():
        got.append(f.exception(timeout=HANG_TIMEOUT))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.02)
    err = MyError()
    f.set_exception(err)
    t.join(HANG_TIMEOUT)
    assert got == [err]


def test_cancel_with_notify_wakes_result_waiter():
    f = np.Future()
    got = []

    def waiter():
        try:
            f.result(timeout=HANG_TIMEOUT)
        except cf.CancelledError:
            got.append("cancelled")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.02)
    assert f.cancel()
    t.join(HANG_TIMEOUT)
    assert got == ["cancelled"]


# --------------------------------------------------------------------------
# callbacks

def test_callback_called_once_with_future():
    f = np.Future()
    calls = []
    f.add_done_callback(calls.append)
    assert calls == []
    f.set_result(1)
    assert calls == [f]


def test_callbacks_called_in_order():
    f = np.Future()
    order = []
    for i in range(5):
        f.add_done_callback(lambda fut, i=i: order.append(i))
    f.set_exception(MyError())
    assert order == [0, 1, 2, 3, 4]


def test_callback_on_done_future_runs_immediately():
    f = np.Future()
    f.set_result(1)
    calls = []
    f.add_done_callback(calls.append)
    assert calls == [f]


def test_callback_on_cancel():
    f = np.Future()
    calls = []
    f.add_done_callback(calls.append)
    f.cancel()
    assert calls == [f]
    f.cancel()  # second cancel must not re-run callbacks
    f.set_running_or_notify_cancel()
    assert calls == [f]


def test_callback_not_called_on_running():
    f = np.Future()
    calls = []
    f.add_done_callback(calls.append)
    f.set_running_or_notify_cancel()
    assert calls == []
    f.set_result(0)
    assert calls == [f]


def test_callback_can_call_result_and_add_callback():
    f = np.Future()
    seen = []

    def cb(fut):
        seen.append(fut.result())
        fut.add_done_callback(lambda g: seen.append("nested"))

    f.add_done_callback(cb)
    f.set_result("r")
    assert seen == ["r", "nested"]


def test_failing_callback_is_logged_and_others_still_run(log_capture):
    records = log_capture("concurrent.futures")
    f = np.Future()
    calls = []

    def bad(fut):
        raise MyError("callback failure")

    f.add_done_callback(bad)
    f.add_done_callback(calls.append)
    f.set_result(1)
    assert calls == [f]
    assert f.result() == 1
    msgs = [r for r in records if r.getMessage().startswith("exception calling callback for")]
    assert len(msgs) == 1
    rec = msgs[0]
    assert rec.levelno >= logging.ERROR
    assert rec.exc_info and rec.exc_info[0] is MyError
    assert repr(f) in rec.getMessage()


def test_failing_callback_on_done_future_is_logged(log_capture):
    records = log_capture("concurrent.futures")
    f = np.Future()
    f.set_result(1)

    def bad(fut):
        raise MyError("late callback failure")

    f.add_done_callback(bad)  # must not raise
    assert any(r.getMessage().startswith("exception calling callback for")
               for r in records)


def test_callback_non_callable_is_not_silently_lost():
    # Stdlib stores whatever it is given and the failure is logged later;
    # a TypeError at add time is also acceptable. Either way: no crash.
    f = np.Future()
    try:
        f.add_done_callback(42)
    except TypeError:
        pass
    f.set_result(1)
    assert f.result() == 1


def test_callbacks_run_once_under_races():
    # Many threads add callbacks while another completes the future.
    for _ in range(50):
        f = np.Future()
        counts = [0] * 40
        start = threading.Barrier(5)

        def adder(base):
            start.wait()
            for i in range(base, base + 10):
                def cb(fut, i=i):
                    counts[i] += 1
                f.add_done_callback(cb)

        ts = [threading.Thread(target=adder, args=(k * 10,)) for k in range(4)]
        for t in ts:
            t.start()
        start.wait()
        f.set_result(None)
        for t in ts:
            t.join(HANG_TIMEOUT)
        assert counts == [1] * 40


# --------------------------------------------------------------------------
# tracebacks

def failing_task_with_distinct_name():
    raise MyError("from task")


def test_exception_traceback_preserved(pool):
    f = pool.submit(failing_task_with_distinct_name)
    with pytest.raises(MyError) as ei:
        f.result(timeout=HANG_TIMEOUT)
    names = [fr.name for fr in traceback.extract_tb(ei.value.__traceback__)]
    assert "failing_task_with_distinct_name" in names


# --------------------------------------------------------------------------
# unretrieved exception logging

def _collect_until(records, pred, timeout=5.0):
    def check():
        gc.collect()
        return [r for r in records if pred(r)]
    return wait_until(check, timeout=timeout, interval=0.02)


def _never_retrieved(r):
    return r.getMessage().startswith("Future exception was never retrieved")


@pytest.mark.nativepool_only
def test_unretrieved_exception_logged_on_gc(log_capture):
    records = log_capture("nativepool")
    f = np.Future()
    f.set_exception(MyError("lost-exception-marker"))
    del f
    found = _collect_until(records, _never_retrieved)
    assert found, "unretrieved exception was not logged"
    rec = found[0]
    assert rec.levelno == logging.ERROR
    assert rec.name == "nativepool"
    text = rec.getMessage()
    if rec.exc_info:
        text += "".join(traceback.format_exception(*rec.exc_info))
    assert "lost-exception-marker" in text or "MyError" in text


@pytest.mark.nativepool_only
def test_unretrieved_exception_from_task_logged(pool, log_capture):
    records = log_capture("nativepool")
    f = pool.submit(failing_task_with_distinct_name)
    cf.wait([f], timeout=HANG_TIMEOUT)  # wait() does not retrieve
    assert f.done()
    del f
    found = _collect_until(records, _never_retrieved)
    assert found


@pytest.mark.parametrize("how", ["result", "exception", "exception_timeout"])
def test_retrieved_exception_not_logged(log_capture, how):
    records = log_capture("nativepool")
    f = np.Future()
    f.set_exception(MyError("retrieved"))
    if how == "result":
        with pytest.raises(MyError):
            f.result()
    elif how == "exception":
        assert isinstance(f.exception(), MyError)
    else:
        assert isinstance(f.exception(timeout=1), MyError)
    del f
    gc.collect()
    time.sleep(0.05)
    gc.collect()
    assert not [r for r in records if _never_retrieved(r)]


def test_retrieved_in_callback_not_logged(pool, log_capture):
    records = log_capture("nativepool")
    seen = []
    done = threading.Event()

    def cb(fut):
        seen.append(fut.exception())
        done.set()

    f = pool.submit(failing_task_with_distinct_name)
    f.add_done_callback(cb)
    assert done.wait(HANG_TIMEOUT)
    del f
    gc.collect()
    time.sleep(0.05)
    gc.collect()
    assert isinstance(seen[0], MyError)
    assert not [r for r in records if _never_retrieved(r)]


def test_results_and_cancelled_not_logged(log_capture):
    records = log_capture("nativepool")
    f = np.Future()
    f.set_result(1)
    g = np.Future()
    g.cancel()
    h = np.Future()  # never completed
    del f, g, h
    gc.collect()
    time.sleep(0.05)
    gc.collect()
    assert not [r for r in records if _never_retrieved(r)]


@pytest.mark.nativepool_only
def test_unretrieved_logging_switch(log_capture):
    records = log_capture("nativepool")
    prev = np.set_unretrieved_exception_logging(False)
    try:
        assert prev is True
        assert np.set_unretrieved_exception_logging(False) is False
        f = np.Future()
        f.set_exception(MyError("silenced"))
        del f
        gc.collect()
        time.sleep(0.05)
        gc.collect()
        assert not [r for r in records if _never_retrieved(r)]
    finally:
        assert np.set_unretrieved_exception_logging(True) is False
    # back on: logged again
    g = np.Future()
    g.set_exception(MyError("audible"))
    del g
    assert _collect_until(records, _never_retrieved)


# --------------------------------------------------------------------------
# leaks

def test_future_lifecycle_no_leak(assert_no_leak):
    def cycle():
        f = np.Future()
        f.add_done_callback(lambda fut: None)
        f.set_result([1, 2, 3])
        f.result()

        g = np.Future()
        g.set_exception(MyError("x"))
        g.exception()

        h = np.Future()
        h.cancel()
        h.set_running_or_notify_cancel()
        try:
            h.result()
        except cf.CancelledError:
            pass

        k = np.Future()
        try:
            k.result(timeout=0)
        except cf.TimeoutError:
            pass
    assert_no_leak(cycle, iterations=3000)


def test_result_object_refcount_released():
    import sys
    obj = object()
    base = sys.getrefcount(obj)
    for _ in range(1000):
        f = np.Future()
        f.set_result(obj)
        f.result()
        del f
    gc.collect()
    assert sys.getrefcount(obj) <= base + 1


# --------------------------------------------------------------------------
# more drop-in details

def test_repr_describes_outcome():
    f = np.Future()
    f.set_result(3)
    assert "returned int" in repr(f)
    g = np.Future()
    g.set_exception(MyError())
    assert "raised MyError" in repr(g)


def test_keyword_parameter_names_match_stdlib():
    f = np.Future()
    calls = []
    f.add_done_callback(fn=calls.append)
    f.set_result(result=1)
    assert f.result(timeout=None) == 1
    assert f.exception(timeout=None) is None
    assert calls == [f]
    g = np.Future()
    g.set_exception(exception=MyError())
    assert isinstance(g.exception(timeout=0), MyError)


def test_weakref_to_future():
    import weakref
    f = np.Future()
    r = weakref.ref(f)
    assert r() is f
    del f
    gc.collect()
    assert r() is None


def test_future_subclass_with_attributes():
    class Tagged(np.Future):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

    f = Tagged("t")
    f.extra = 1
    assert f.tag == "t" and f.extra == 1
    f.set_result(2)
    assert f.result() == 2
    assert isinstance(f, cf.Future)
    done, _ = cf.wait([f], timeout=0)
    assert done == {f}


def test_racing_completions_exactly_one_wins():
    for _ in range(200):
        f = np.Future()
        calls = []
        wins = []
        barrier = threading.Barrier(4)

        def setter(kind):
            barrier.wait()
            try:
                if kind == "r":
                    f.set_result(kind)
                elif kind == "e":
                    f.set_exception(MyError(kind))
                elif kind == "c":
                    if not f.cancel():
                        return
                wins.append(kind)
            except cf.InvalidStateError:
                pass

        f.add_done_callback(calls.append)
        ts = [threading.Thread(target=setter, args=(k,)) for k in "rec"]
        for t in ts:
            t.start()
        barrier.wait()
        for t in ts:
            t.join(HANG_TIMEOUT)
        assert len(wins) == 1, wins
        assert calls == [f]
        if wins == ["r"]:
            assert f.result() == "r"
        elif wins == ["e"]:
            assert str(f.exception()) == "e"
        else:
            assert f.cancelled()


@pytest.mark.parametrize("method", ["result", "exception"])
def test_timeout_is_not_cut_short(method):
    # A lower bound only (never an upper bound): catches unit-conversion bugs.
    f = np.Future()
    t0 = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        getattr(f, method)(timeout=0.2)
    assert time.monotonic() - t0 >= 0.19


def test_tiny_timeouts():
    f = np.Future()
    for t in (1e-9, 1e-6, 0.0001, 0.0, 1e-300):
        with pytest.raises(cf.TimeoutError):
            f.result(timeout=t)


def test_nan_timeout_does_not_block_forever():
    f = np.Future()
    box = []

    def waiter():
        try:
            f.result(timeout=float("nan"))
            box.append("returned")
        except (cf.TimeoutError, ValueError) as e:
            box.append(type(e))
        except BaseException as e:  # pragma: no cover
            box.append(e)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    t.join(10)
    blocked = t.is_alive()
    f.set_result(None)
    t.join(HANG_TIMEOUT)
    assert not blocked, "result(timeout=nan) blocked"
    assert box and box[0] in (cf.TimeoutError, ValueError), box


def test_bool_and_int_timeouts():
    f = np.Future()
    f.set_result(1)
    assert f.result(timeout=True) == 1
    assert f.result(timeout=5) == 1
    g = np.Future()
    with pytest.raises(cf.TimeoutError):
        g.result(timeout=False)


def test_result_and_exception_treat_timeout_alike_on_done_futures():
    # stdlib: neither looks at the timeout once the future is done; whatever
    # nativepool chooses, result() and exception() must agree.
    def outcome(call):
        try:
            call()
            return "ok"
        except TypeError:
            return "TypeError"
        except cf.CancelledError:
            return "cancelled"

    f = np.Future()
    f.set_result(1)
    assert outcome(lambda: f.result(timeout="x")) == outcome(lambda: f.exception(timeout="x"))
    g = np.Future()
    g.cancel()
    assert outcome(lambda: g.result(timeout="x")) == outcome(lambda: g.exception(timeout="x"))
