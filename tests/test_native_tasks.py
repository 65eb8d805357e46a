"""Native tasks on a ThreadPool: futures, done callbacks, wait/as_completed,
cancel, shutdown, map, mixing with Python tasks, unretrieved-exception logging.

A NativeFunction passed to ThreadPool.submit/map runs on a worker that never
takes the GIL; the future is a plain nativepool.Future.  Buffer pinning,
GIL-freedom and lifetime: test_native_lifetime.py.
"""
import concurrent.futures as cf
import gc
import hashlib
import logging
import os
import threading
import time
import traceback
import zlib

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT
from native_support import (  # datafile, pool1: fixtures
    DATA, datafile, drain, get_native, pool1, sum_squares_formula, zcompress)

native = get_native()

pytestmark = pytest.mark.nativepool_only

# --------------------------------------------------------------------------
# submit: results and failures

def test_submit_returns_nativepool_future(pool):
    f = pool.submit(native.crc32, DATA)
    assert isinstance(f, np.Future)
    assert isinstance(f, cf.Future)
    assert f.result(HANG_TIMEOUT) == zlib.crc32(DATA)
    assert f.done() and not f.running() and not f.cancelled()
    assert f.exception() is None


@pytest.mark.parametrize("name, args, expected", [
    ("crc32", (DATA, 12345), lambda: zlib.crc32(DATA, 12345)),
    ("adler32", (DATA,), lambda: zlib.adler32(DATA)),
    ("compress", (DATA, 9), lambda: zlib.compress(DATA, 9)),
    ("decompress", (zlib.compress(DATA), 15, 1), lambda: DATA),
    ("sha256", (DATA,), lambda: hashlib.sha256(DATA).digest()),
    ("sum_squares", (4_000_000,), lambda: sum_squares_formula(4_000_000)),
    ("sleep", (0.01,), lambda: None),
])
def test_submit_each_builtin(pool, name, args, expected):
    f = pool.submit(getattr(native, name), *args)
    assert f.result(HANG_TIMEOUT) == expected()


def test_submit_with_keywords(pool):
    f = pool.submit(native.compress, DATA, level=1, wbits=-15)
    assert f.result(HANG_TIMEOUT) == zcompress(DATA, 1, -15)
    f = pool.submit(native.decompress, zlib.compress(DATA), bufsize=0)
    assert f.result(HANG_TIMEOUT) == DATA


def test_submit_file_kernels(pool, datafile):
    assert pool.submit(native.read_file, datafile).result(HANG_TIMEOUT) == DATA
    buf = bytearray(100)
    f = pool.submit(native.read_into, str(datafile), buf, 50)
    assert f.result(HANG_TIMEOUT) == 100
    assert buf == DATA[50:150]


def test_result_is_converted_once(pool):
    f = pool.submit(native.sha256, DATA)
    r = f.result(HANG_TIMEOUT)
    assert f.result() is r
    assert f.result(0) is r


def test_result_from_many_threads_at_once(pool):
    for _ in range(20):
        f = pool.submit(native.compress, DATA)
        results = []
        barrier = threading.Barrier(4)

        def get():
            barrier.wait(HANG_TIMEOUT)
            results.append(f.result(HANG_TIMEOUT))

        threads = [threading.Thread(target=get) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_TIMEOUT)
        assert len(results) == 4
        assert all(r is results[0] for r in results)
        assert results[0] == zlib.compress(DATA)


def test_failure_is_stored(pool, tmp_path):
    missing = str(tmp_path / "missing")
    f = pool.submit(native.read_file, missing)
    exc = f.exception(HANG_TIMEOUT)
    assert isinstance(exc, FileNotFoundError)
    assert exc.filename == missing
    with pytest.raises(FileNotFoundError) as info:
        f.result()
    assert info.value is exc
    assert f.done() and not f.cancelled()


def test_failure_zlib_error(pool):
    f = pool.submit(native.decompress, b"definitely not zlib")
    with pytest.raises(zlib.error) as info:
        f.result(HANG_TIMEOUT)
    with pytest.raises(zlib.error) as want:
        zlib.decompress(b"definitely not zlib")
    assert str(info.value) == str(want.value)


def test_failure_traceback_is_usable(pool):
    f = pool.submit(native.decompress, b"garbage")
    with pytest.raises(zlib.error) as info:
        f.result(HANG_TIMEOUT)
    "".join(traceback.format_exception(type(info.value), info.value,
                                       info.value.__traceback__))


def test_result_timeout_while_running(quick_pool):
    pool1 = quick_pool(1)
    f = pool1.submit(native.sleep, 0.5)
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.05)
    assert f.result(HANG_TIMEOUT) is None


def test_running_state(quick_pool):
    pool1 = quick_pool(1)
    f = pool1.submit(native.sleep, 0.5)
    assert wait_until(f.running, timeout=5)
    assert not f.done()
    assert not f.cancel()          # running: cannot be cancelled
    f.result(HANG_TIMEOUT)
    assert not f.running()


# --------------------------------------------------------------------------
# done callbacks

def test_done_callback_runs_once_with_the_future(pool):
    calls = []
    done = threading.Event()

    def cb(fut):
        calls.append(fut)
        done.set()

    f = pool.submit(native.sleep, 0.1)
    f.add_done_callback(cb)
    assert done.wait(HANG_TIMEOUT)
    f.result()
    time.sleep(0.05)
    assert calls == [f]


def test_done_callback_after_completion_runs_at_once(pool):
    f = pool.submit(native.crc32, b"abc")
    f.result(HANG_TIMEOUT)
    calls = []
    f.add_done_callback(calls.append)
    assert calls == [f]


def test_done_callback_reads_result_and_exception(pool, tmp_path):
    seen = []
    ev = threading.Event()

    def cb(fut):
        seen.append(fut.exception() or fut.result())
        if len(seen) == 2:
            ev.set()

    f1 = pool.submit(native.sha256, b"x")
    f2 = pool.submit(native.read_file, tmp_path / "nope")
    f1.add_done_callback(cb)
    f2.add_done_callback(cb)
    assert ev.wait(HANG_TIMEOUT)
    assert hashlib.sha256(b"x").digest() in seen
    assert any(isinstance(s, FileNotFoundError) for s in seen)


def test_many_callbacks_on_many_native_futures(pool):
    calls = []
    lock = threading.Lock()

    def cb(fut):
        with lock:
            calls.append(fut)

    fs = []
    for i in range(500):
        f = pool.submit(native.crc32, b"%d" % i)
        f.add_done_callback(cb)
        f.add_done_callback(cb)
        fs.append(f)
    assert wait_until(lambda: len(calls) == 1000, timeout=HANG_TIMEOUT)
    time.sleep(0.05)
    assert len(calls) == 1000
    assert all(calls.count(f) == 2 for f in fs[:50])


# --------------------------------------------------------------------------
# wait / as_completed, stdlib's and nativepool's

WAITS = [pytest.param(cf.wait, id="cf"), pytest.param(np.wait, id="np")]
AS_COMPLETED = [pytest.param(cf.as_completed, id="cf"),
                pytest.param(np.as_completed, id="np")]


@pytest.mark.parametrize("wait", WAITS)
def test_wait_first_exception(quick_pool, wait, tmp_path):
    p = quick_pool(3)
    slow = [p.submit(native.sleep, 2.0) for _ in range(2)]
    bad = p.submit(native.read_file, tmp_path / "missing")
    done, not_done = wait(slow + [bad], timeout=HANG_TIMEOUT,
                          return_when=cf.FIRST_EXCEPTION)
    assert bad in done
    assert set(slow) <= not_done, "returned only after the slow tasks"
    assert isinstance(bad.exception(), FileNotFoundError)


@pytest.mark.parametrize("wait", WAITS)
def test_wait_first_exception_before_failure_queued(quick_pool, wait):
    # The waiter is installed while the failing task is still queued.
    p = quick_pool(1)
    first = p.submit(native.sleep, 0.2)
    bad = p.submit(native.decompress, b"bad")
    after = p.submit(native.sleep, 2.0)
    done, not_done = wait([first, bad, after], timeout=HANG_TIMEOUT,
                          return_when=cf.FIRST_EXCEPTION)
    assert first in done and bad in done
    assert after in not_done
    assert isinstance(bad.exception(), zlib.error)


@pytest.mark.parametrize("wait", WAITS)
def test_wait_all_completed_and_first_completed(quick_pool, wait):
    pool = quick_pool(4)
    fs = [pool.submit(native.sleep, 0.01 * (i % 4)) for i in range(12)]
    fs += [pool.submit(native.sha256, DATA) for _ in range(12)]
    done, not_done = wait(fs, timeout=HANG_TIMEOUT, return_when=cf.ALL_COMPLETED)
    assert done == set(fs) and not not_done
    more = [pool.submit(native.sleep, 0.05), pool.submit(native.sleep, 1.0)]
    done, not_done = wait(more, timeout=HANG_TIMEOUT, return_when=cf.FIRST_COMPLETED)
    assert more[0] in done and more[1] in not_done


@pytest.mark.parametrize("wait", WAITS)
def test_wait_timeout_with_native_tasks(quick_pool, wait):
    f = quick_pool(1).submit(native.sleep, 1.0)
    done, not_done = wait([f], timeout=0.1)
    assert not done and not_done == {f}


@pytest.mark.parametrize("as_completed", AS_COMPLETED)
def test_as_completed(pool, as_completed, tmp_path):
    fs = [pool.submit(native.sleep, 0.02 * i) for i in range(6)]
    fs.append(pool.submit(native.read_file, tmp_path / "missing"))
    fs.append(pool.submit(native.sum_squares, 1000))
    got = list(as_completed(fs, timeout=HANG_TIMEOUT))
    assert sorted(map(id, got)) == sorted(map(id, fs))
    assert isinstance(fs[6].exception(), FileNotFoundError)
    assert fs[7].result() == sum_squares_formula(1000)


@pytest.mark.parametrize("as_completed", AS_COMPLETED)
def test_as_completed_timeout(quick_pool, as_completed):
    pool1 = quick_pool(1)
    fs = [pool1.submit(native.sleep, 0.05), pool1.submit(native.sleep, 1.5)]
    it = as_completed(fs, timeout=0.4)
    assert next(it) is fs[0]
    with pytest.raises(cf.TimeoutError):
        next(it)


def test_waiters_on_many_native_futures(pool):
    # Stdlib waiters attached to futures that complete on GIL-less workers.
    for _ in range(20):
        fs = [pool.submit(native.crc32, b"%d" % i) for i in range(50)]
        done, not_done = cf.wait(fs, timeout=HANG_TIMEOUT)
        assert len(done) == 50 and not not_done
        assert [f.result() for f in fs] == [zlib.crc32(b"%d" % i) for i in range(50)]


# --------------------------------------------------------------------------
# cancel and shutdown

def test_cancel_queued_native_task(pool1, datafile):
    blocker = pool1.submit(native.sleep, 0.3)
    buf = bytearray(10)
    queued = pool1.submit(native.read_into, datafile, buf)
    other = pool1.submit(native.crc32, b"abc")
    assert queued.cancel()
    assert queued.cancelled() and queued.done()
    with pytest.raises(cf.CancelledError):
        queued.result()
    with pytest.raises(cf.CancelledError):
        queued.exception()
    assert blocker.result(HANG_TIMEOUT) is None
    assert other.result(HANG_TIMEOUT) == zlib.crc32(b"abc")
    assert buf == bytearray(10)          # never ran
    assert queued.cancelled()


def test_cancel_callback_runs(pool1):
    blocker = pool1.submit(native.sleep, 0.2)
    q = pool1.submit(native.sleep, 0)
    seen = []
    q.add_done_callback(seen.append)
    assert q.cancel()
    assert seen == [q]
    blocker.result(HANG_TIMEOUT)


def test_shutdown_cancel_futures(make_pool):
    p = make_pool(max_workers=1)
    running = p.submit(native.sleep, 0.3)
    assert wait_until(running.running, timeout=5)
    queued = [p.submit(native.sha256, DATA) for _ in range(5)]
    p.shutdown(wait=True, cancel_futures=True)
    assert running.done() and not running.cancelled()
    assert all(q.cancelled() for q in queued)
    with pytest.raises(RuntimeError):
        p.submit(native.crc32, b"")


def test_shutdown_waits_for_native_tasks(make_pool):
    p = make_pool(max_workers=2)
    fs = [p.submit(native.sleep, 0.05) for _ in range(6)]
    p.shutdown(wait=True)
    assert all(f.done() and not f.cancelled() for f in fs)


def test_submit_after_shutdown_is_refused_before_conversion(make_pool):
    p = make_pool(max_workers=1)
    p.shutdown()
    buf = bytearray(4)
    with pytest.raises(RuntimeError):
        p.submit(native.read_into, "/nonexistent", buf)
    buf.extend(b"ok")                      # nothing stayed pinned
    with pytest.raises(RuntimeError):
        p.submit(native.crc32, "not even a buffer")


def test_context_manager(datafile):
    with np.ThreadPool(2) as p:
        fs = [p.submit(native.read_file, datafile) for _ in range(10)]
    assert all(f.result() == DATA for f in fs)


# --------------------------------------------------------------------------
# map

def test_map_single_iterable(pool):
    items = [b"%d" % i * (i % 7) for i in range(200)]
    assert list(pool.map(native.crc32, items)) == [zlib.crc32(x) for x in items]


def test_map_several_iterables(pool):
    datas = [b"a", b"bb", b"ccc", b"dddd"]
    starts = [0, 1, 2**32 + 3, -5, 99]           # the shortest wins
    assert list(pool.map(native.crc32, datas, starts)) == \
        [zlib.crc32(d, s) for d, s in zip(datas, starts)]
    comp = list(pool.map(native.compress, [DATA] * 3, [0, 5, 9], [15, -15, 31]))
    assert comp == [zcompress(DATA, l, w) for l, w in [(0, 15), (5, -15), (9, 31)]]


def test_map_empty(pool):
    assert list(pool.map(native.crc32, [])) == []
    assert list(pool.map(native.crc32, [], [])) == []


def test_map_failures_in_order(pool, tmp_path):
    paths = [tmp_path / ("f%d" % i) for i in range(5)]
    for p in paths[:3]:
        p.write_bytes(p.name.encode())
    it = pool.map(native.read_file, paths)
    assert [next(it) for _ in range(3)] == [b"f0", b"f1", b"f2"]
    with pytest.raises(FileNotFoundError) as info:
        next(it)
    assert os.fspath(info.value.filename) == str(paths[3])


def test_map_timeout(quick_pool):
    pool1 = quick_pool(1)
    it = pool1.map(native.sleep, [0.01, 1.0, 1.0], timeout=0.3)
    assert next(it) is None
    with pytest.raises(cf.TimeoutError):
        next(it)


def test_map_buffersize(pool):
    items = [b"x" * (i % 50) for i in range(2000)]
    assert list(pool.map(native.adler32, items, buffersize=4)) == \
        [zlib.adler32(x) for x in items]
    assert list(pool.map(native.sum_squares, range(300), buffersize=1)) == \
        [sum_squares_formula(n) for n in range(300)]


def test_map_buffersize_is_lazy(pool):
    pulled = []

    def gen():
        for i in range(10**9):
            pulled.append(i)
            yield i

    it = pool.map(native.sum_squares, gen(), buffersize=3)
    assert [next(it) for _ in range(5)] == [sum_squares_formula(n) for n in range(5)]
    assert len(pulled) < 50
    del it


def test_map_big(pool):
    n = 100_000
    items = [i.to_bytes(4, "little") for i in range(n)]
    got = list(pool.map(native.crc32, items))
    assert len(got) == n
    assert got == [zlib.crc32(x) for x in items]


def test_map_big_sum_squares(pool):
    ns = [i % 97 for i in range(100_000)]
    assert list(pool.map(native.sum_squares, ns)) == [sum_squares_formula(k) for k in ns]


def test_map_native_and_python_interleaved(pool):
    it1 = pool.map(native.crc32, [b"a", b"b", b"c"] * 100)
    it2 = pool.map(lambda x: x * 2, range(300))
    assert list(it2) == [x * 2 for x in range(300)]
    assert list(it1) == [zlib.crc32(x) for x in [b"a", b"b", b"c"] * 100]


# --------------------------------------------------------------------------
# Python and native tasks on one pool

def test_mixed_python_and_native_tasks(pool):
    fs = []
    for i in range(300):
        if i % 3 == 0:
            fs.append(("py", i, pool.submit(pow, i, 2)))
        elif i % 3 == 1:
            fs.append(("crc", i, pool.submit(native.crc32, b"%d" % i)))
        else:
            fs.append(("sq", i, pool.submit(native.sum_squares, i)))
    for kind, i, f in fs:
        want = {"py": i * i, "crc": zlib.crc32(b"%d" % i),
                "sq": sum_squares_formula(i)}[kind]
        assert f.result(HANG_TIMEOUT) == want


def test_python_task_after_native_tasks_on_same_worker(pool1):
    # The worker drops the GIL for native tasks and takes it back for Python.
    for _ in range(50):
        a = pool1.submit(native.crc32, b"x")
        b = pool1.submit(lambda: threading.current_thread().name)
        c = pool1.submit(native.sleep, 0)
        assert a.result(HANG_TIMEOUT) == zlib.crc32(b"x")
        assert isinstance(b.result(HANG_TIMEOUT), str)
        assert c.result(HANG_TIMEOUT) is None


def test_python_task_waits_on_native_future(pool):
    inner = pool.submit(native.sleep, 0.1)
    outer = pool.submit(lambda: inner.result(HANG_TIMEOUT) is None)
    assert outer.result(HANG_TIMEOUT) is True


# --------------------------------------------------------------------------
# unretrieved exceptions are logged

def _never_retrieved(r):
    return r.getMessage().startswith("Future exception was never retrieved")


def _record_text(rec):
    text = rec.getMessage()
    if rec.exc_info:
        text += "".join(traceback.format_exception(*rec.exc_info))
    return text


def test_unretrieved_native_exception_logged(pool, log_capture, tmp_path):
    records = log_capture("nativepool")
    marker = str(tmp_path / "lost-native-exception-marker")
    f = pool.submit(native.read_file, marker)
    cf.wait([f], timeout=HANG_TIMEOUT)      # wait() does not retrieve
    assert f.done()
    del f

    def found():
        drain(pool)
        return [r for r in records if _never_retrieved(r)]

    recs = wait_until(found, timeout=10, interval=0.02)
    assert recs, "the unretrieved native exception was not logged"
    assert recs[0].levelno == logging.ERROR
    text = _record_text(recs[0])
    assert "lost-native-exception-marker" in text or "FileNotFoundError" in text


def test_unretrieved_native_exception_logged_after_shutdown(make_pool, log_capture):
    records = log_capture("nativepool")
    p = make_pool(max_workers=1)
    f = p.submit(native.decompress, b"lost zlib error")
    while not f.done():
        time.sleep(0.01)
    del f
    p.shutdown(wait=True)

    def found():
        gc.collect()
        return [r for r in records if _never_retrieved(r)]
    recs = wait_until(found, timeout=5)
    assert recs
    assert "zlib" in _record_text(recs[0]) or "error" in _record_text(recs[0])


@pytest.mark.parametrize("how", ["result", "exception", "callback"])
def test_retrieved_native_exception_not_logged(pool, log_capture, how, tmp_path):
    records = log_capture("nativepool")
    f = pool.submit(native.read_file, tmp_path / "missing")
    if how == "result":
        with pytest.raises(FileNotFoundError):
            f.result(HANG_TIMEOUT)
    elif how == "exception":
        assert isinstance(f.exception(HANG_TIMEOUT), FileNotFoundError)
    else:
        ev = threading.Event()
        f.add_done_callback(lambda fut: (fut.exception(), ev.set()))
        assert ev.wait(HANG_TIMEOUT)
    del f
    for _ in range(3):
        drain(pool)
        time.sleep(0.02)
    assert not [r for r in records if _never_retrieved(r)]


def test_successful_native_results_not_logged(pool, log_capture):
    records = log_capture("nativepool")
    fs = [pool.submit(native.crc32, b"x") for _ in range(20)]
    cf.wait(fs, timeout=HANG_TIMEOUT)
    del fs
    drain(pool)
    assert not [r for r in records if _never_retrieved(r)]


# --------------------------------------------------------------------------
# failures around the tasks: callbacks that raise, broken pools, fork

def test_raising_done_callback_is_logged(pool, log_capture):
    records = log_capture("concurrent.futures")
    ran = threading.Event()

    def bad(fut):
        ran.set()
        raise RuntimeError("native-callback-boom")

    f = pool.submit(native.sleep, 0.05)
    f.add_done_callback(bad)
    assert ran.wait(HANG_TIMEOUT)
    assert f.result() is None

    def logged():
        return [r for r in records
                if r.getMessage().startswith("exception calling callback for")]
    assert wait_until(logged, timeout=10)
    # The pool still works.
    assert pool.submit(native.crc32, b"a").result(HANG_TIMEOUT) == zlib.crc32(b"a")


def test_broken_pool_fails_native_tasks(make_pool, log_capture):
    log_capture("concurrent.futures")          # keep the CRITICAL record quiet

    def init():
        raise ValueError("initializer fails")

    p = make_pool(max_workers=1, initializer=init)
    buf = bytearray(4)
    try:
        f = p.submit(native.read_into, "/proc/version", buf)
    except np.BrokenThreadPool:
        f = None                                # already broken: refused
    if f is not None:
        assert isinstance(f.exception(HANG_TIMEOUT), np.BrokenThreadPool)
    buf.extend(b"x")                            # not pinned any more
    with pytest.raises(np.BrokenThreadPool):
        p.submit(native.crc32, b"")


def test_native_map_cancelled_by_shutdown(make_pool):
    p = make_pool(max_workers=1)
    p.submit(native.sleep, 0.2)
    bufs = [bytearray(4) for _ in range(5)]
    it = p.map(native.read_into, ["/proc/version"] * 5, bufs)
    p.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(cf.CancelledError):
        list(it)
    for b in bufs:
        b.extend(b"x")                          # none left pinned


def test_native_tasks_after_fork():
    proc = run_script("""
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        native = np.native
        pool = np.ThreadPool(2)
        out("parent", pool.submit(native.crc32, b"x").result(30))
        pid = os.fork()
        if pid == 0:
            try:
                a = pool.submit(native.crc32, b"x").result(30)
                b = list(pool.map(native.sum_squares, range(5)))
                out("child", a, b)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        pool.shutdown()
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    crc = zlib.crc32(b"x")
    assert "parent %d" % crc in proc.stdout
    assert "child %d [0, 0, 1, 5, 14]" % crc in proc.stdout, (proc.stdout, proc.stderr)
