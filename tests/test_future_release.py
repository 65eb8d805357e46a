"""A finished task lets go of what it held, and its outcome reads right.

Issue 11, section 1: the stdlib frees a task's function, arguments and
result as soon as the task is done, with no later pool call; a finished
native task must unpin its buffers the same way; and a finished
ProcessPool (or C API) future whose outcome is converted while a second
thread asks for it must not look empty (result() None, exception() None).
"""
import concurrent.futures as cf
import gc
import threading
import weakref

import pytest

from conftest import np, MODULE_NAME, wait_until, HANG_TIMEOUT
import future_race_support as sup

native = getattr(np, "native", None)
needs_native = pytest.mark.skipif(native is None,
                                  reason="no native tasks in %s" % MODULE_NAME)


def collected(ref):
    gc.collect()
    return ref() is None


# ---- Python tasks: the stdlib's behaviour, on both ---------------------------

THREAD_POOLS = [pytest.param(np.ThreadPool, id="nativepool"),
                pytest.param(cf.ThreadPoolExecutor, id="stdlib")]


@pytest.mark.parametrize("Pool", THREAD_POOLS)
def test_finished_task_lets_go_of_its_function(Pool):
    with Pool(2) as pool:
        obj = sup.Holder()
        wr = weakref.ref(obj)
        f = pool.submit(obj.method)
        del obj
        f.result(HANG_TIMEOUT)
        # No further pool call; the poll is a hang guard only (the worker
        # drops its work item just after the future is set).
        assert wait_until(lambda: collected(wr), timeout=10)


@pytest.mark.parametrize("Pool", THREAD_POOLS)
def test_finished_task_lets_go_of_its_arguments(Pool):
    with Pool(2) as pool:
        arg = sup.Holder()
        wr = weakref.ref(arg)
        f = pool.submit(sup.touch, arg)
        del arg
        assert f.result(HANG_TIMEOUT) == 1
        assert wait_until(lambda: collected(wr), timeout=10)


# ---- native tasks: unpinned once done, with nobody reading -------------------

@needs_native
def test_native_task_unpins_its_buffer_once_done_without_a_later_call():
    # Before the fix the buffer stayed pinned (BufferError on resize) until
    # result() was called or some later submit drained the releases.
    with np.ThreadPool(2) as pool:
        pool.submit(int).result(HANG_TIMEOUT)      # workers started
        buf = bytearray(b"x" * 4096)
        f = pool.submit(native.sha256, buf)
        assert wait_until(f.done, timeout=HANG_TIMEOUT)   # done() converts nothing

        def resizable():
            try:
                buf.extend(b"y")
            except BufferError:
                return False
            return True
        assert wait_until(resizable, timeout=10), "buffer still pinned"
        assert f.result(HANG_TIMEOUT) == __import__("hashlib").sha256(
            b"x" * 4096).digest()


@needs_native
def test_native_task_lets_go_of_its_argument_once_done():
    class Buf(bytearray):
        pass
    with np.ThreadPool(2) as pool:
        pool.submit(int).result(HANG_TIMEOUT)
        b = Buf(b"abc" * 100)
        wr = weakref.ref(b)
        f = pool.submit(native.crc32, b)
        del b
        assert wait_until(f.done, timeout=HANG_TIMEOUT)
        assert wait_until(lambda: collected(wr), timeout=10), "argument kept"
        assert f.exception() is None


# ---- converting an outcome while another thread asks ---------------------------

PROCESS_POOLS = [pytest.param(np.ProcessPool, id="nativepool"),
                 pytest.param(cf.ProcessPoolExecutor, id="stdlib")]


def read_from_two_threads(f, read):
    barrier = threading.Barrier(2)
    got = [None, None]

    def reader(i):
        barrier.wait(HANG_TIMEOUT)
        try:
            got[i] = read(f)
        except BaseException as exc:   # what it raised is the verdict
            got[i] = exc
    ts = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(HANG_TIMEOUT)           # hang guard only
    assert not any(t.is_alive() for t in ts), "a reader hung"
    return got


@pytest.mark.parametrize("Pool", PROCESS_POOLS)
def test_two_threads_read_a_result_whose_unpickling_takes_time(Pool):
    # Before the fix one of the two got None: the call was detached before
    # its reply was unpickled, and the second reader found an empty future.
    with Pool(1) as pool:
        for i in range(3):
            f = pool.submit(sup.reply, i, 0.05)
            assert wait_until(f.done, timeout=HANG_TIMEOUT)
            got = read_from_two_threads(f, lambda f: f.result(HANG_TIMEOUT))
            assert [type(g) for g in got] == [sup.SlowReply, sup.SlowReply], got
            assert got[0] is got[1] and got[0].value == i


@pytest.mark.parametrize("Pool", PROCESS_POOLS)
def test_two_threads_read_an_exception_whose_unpickling_takes_time(Pool):
    with Pool(1) as pool:
        f = pool.submit(sup.fail, 7, 0.05)
        assert wait_until(f.done, timeout=HANG_TIMEOUT)
        got = read_from_two_threads(f, lambda f: f.exception(HANG_TIMEOUT))
        assert [type(g) for g in got] == [sup.SlowError, sup.SlowError], got
        assert got[0] is got[1] and got[0].value == 7


@pytest.mark.nativepool_only
def test_unpickler_asking_for_its_own_future_gets_runtime_error():
    # An unpickler that calls f.result() on the future it is unpickling for
    # (same thread): before the fix it re-entered and got None.
    with np.ProcessPool(1) as pool:
        f = pool.submit(sup.reply, 5, 0.0)
        assert wait_until(f.done, timeout=HANG_TIMEOUT)
        inner = []

        def hook():
            try:
                inner.append(f.result(1))
            except BaseException as exc:
                inner.append(exc)
        sup.on_unpickle = hook
        try:
            outer = f.result(HANG_TIMEOUT)
        finally:
            sup.on_unpickle = None
        assert len(inner) == 1 and isinstance(inner[0], RuntimeError), inner
        assert type(outer) is sup.SlowReply and outer.value == 5
        assert f.result() is outer
