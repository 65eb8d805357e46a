"""Native tasks: buffers pinned for the life of the task, GIL-freedom (the
key property: native tasks complete while the main thread never releases
the GIL), and lifetime (futures freed, no leaks, pools dropped or the
interpreter exiting with native tasks queued).

Finished native futures may be released lazily: the next submit, map or
shutdown drains what the GIL-less workers left, so these tests submit again
(drain()) or shut down before gc.collect().
"""
import concurrent.futures as cf
import gc
import hashlib
import sys
import threading
import weakref
import zlib

import pytest

from conftest import np, run_script, wait_until, check_no_leak, HANG_TIMEOUT
from native_support import (  # datafile, pool1: fixtures
    DATA, datafile, drain, get_native, pool1, sum_squares_formula)

native = get_native()

pytestmark = pytest.mark.nativepool_only

# --------------------------------------------------------------------------
# buffers are pinned for the life of the task

def test_bytearray_pinned_while_queued_and_running(pool1, datafile):
    blocker = pool1.submit(native.sleep, 0.3)
    buf = bytearray(16)
    f = pool1.submit(native.read_into, datafile, buf)
    assert not f.done()
    with pytest.raises(BufferError):
        buf.extend(b"x")                      # queued
    with pytest.raises(BufferError):
        buf.clear()
    with pytest.raises(BufferError):
        del buf[0]
    assert f.result(HANG_TIMEOUT) == 16
    assert buf == DATA[:16]
    buf.extend(b"more")                       # released by result()
    assert len(buf) == 20
    blocker.result()


def test_bytearray_pinned_while_running(pool1):
    # A compress of a large buffer, resized while the kernel runs.
    big = bytearray(DATA * 30)
    f = pool1.submit(native.compress, big, 9)
    while not f.running() and not f.done():
        pass
    if not f.done():
        with pytest.raises(BufferError):
            big.extend(b"x")
    assert f.result(HANG_TIMEOUT) == zlib.compress(bytes(big[:len(DATA) * 30]), 9)
    big.extend(b"x")


def test_bytearray_released_after_cancel(pool1, datafile):
    blocker = pool1.submit(native.sleep, 0.3)
    buf = bytearray(8)
    data = bytearray(b"payload")
    f1 = pool1.submit(native.read_into, datafile, buf)
    f2 = pool1.submit(native.crc32, data)
    with pytest.raises(BufferError):
        buf.extend(b"x")
    assert f1.cancel() and f2.cancel()
    buf.extend(b"x")
    data.extend(b"x")
    blocker.result(HANG_TIMEOUT)


def test_bytearray_released_after_shutdown_cancel(make_pool):
    p = make_pool(max_workers=1)
    p.submit(native.sleep, 0.2)
    bufs = [bytearray(b"abc") for _ in range(5)]
    fs = [p.submit(native.sha256, b) for b in bufs]
    with pytest.raises(BufferError):
        bufs[-1].extend(b"x")
    p.shutdown(wait=True, cancel_futures=True)
    for b in bufs:
        b.extend(b"x")
    assert all(f.cancelled() or f.done() for f in fs)


def test_bytearray_released_after_failure(pool, tmp_path):
    buf = bytearray(8)
    f = pool.submit(native.read_into, tmp_path / "missing", buf)
    with pytest.raises(FileNotFoundError):
        f.result(HANG_TIMEOUT)
    buf.extend(b"x")


def test_buffer_released_without_reading_result(pool, datafile):
    # Nobody reads the result: the buffer is released when the future goes.
    box = [bytearray(8)]
    base = sys.getrefcount(box[0])
    f = pool.submit(native.read_into, datafile, box[0])
    cf.wait([f], timeout=HANG_TIMEOUT)
    del f
    # Released once the task is done (by the worker, before it parks), with
    # no later pool call; the poll is a hang guard only.
    assert wait_until(lambda: sys.getrefcount(box[0]) <= base, timeout=10)
    box[0].extend(b"x")


def test_refcount_of_buffer_restored(pool):
    data = bytearray(DATA)
    base = sys.getrefcount(data)
    fs = [pool.submit(native.crc32, data) for _ in range(50)]
    assert sys.getrefcount(data) > base          # the views hold it
    assert all(f.result(HANG_TIMEOUT) == zlib.crc32(DATA) for f in fs)
    assert sys.getrefcount(data) == base
    del fs


def test_memoryview_cannot_be_released_while_exported(pool1, datafile):
    blocker = pool1.submit(native.sleep, 0.2)
    mv = memoryview(bytearray(32))
    f = pool1.submit(native.read_into, datafile, mv)
    with pytest.raises(BufferError):
        mv.release()
    assert f.result(HANG_TIMEOUT) == 32
    assert mv.tobytes() == DATA[:32]
    mv.release()                              # no longer exported
    blocker.result()


def test_map_pins_until_consumed_and_releases(pool, datafile):
    bufs = [bytearray(4) for _ in range(20)]
    it = pool.map(native.read_into, [datafile] * 20, bufs, range(0, 80, 4))
    with pytest.raises(BufferError):
        bufs[-1].extend(b"x")
    assert list(it) == [4] * 20
    for i, b in enumerate(bufs):
        assert b == DATA[4 * i:4 * i + 4]
        b.extend(b"x")


def test_map_abandoned_releases_buffers(pool, datafile):
    bufs = [bytearray(4) for _ in range(10)]
    it = pool.map(native.read_into, [datafile] * 10, bufs)
    assert next(it) == 4
    del it
    drain(pool)

    def all_free():
        for b in bufs:
            try:
                b.extend(b"x")
            except BufferError:
                return False
            del b[-1]
        return True
    assert wait_until(lambda: (drain(pool), all_free())[1], timeout=10)


def test_numpy_buffers(pool, datafile):
    numpy = pytest.importorskip("numpy")
    a = numpy.arange(5000, dtype=numpy.int64)
    assert pool.submit(native.crc32, a).result(HANG_TIMEOUT) == zlib.crc32(a.tobytes())
    assert pool.submit(native.sha256, a).result() == hashlib.sha256(a).digest()
    out = numpy.zeros(64, dtype=numpy.uint8)
    assert pool.submit(native.read_into, datafile, out, 3).result(HANG_TIMEOUT) == 64
    assert out.tobytes() == DATA[3:67]
    with pytest.raises(TypeError):
        pool.submit(native.read_into, datafile, numpy.zeros((2, 8))[:, 0])
    ro = numpy.zeros(8, dtype=numpy.uint8)
    ro.flags.writeable = False
    with pytest.raises(TypeError):
        pool.submit(native.read_into, datafile, ro)
    assert pool.submit(native.crc32, ro).result(HANG_TIMEOUT) == zlib.crc32(bytes(8))


def test_numpy_array_pinned_while_queued(pool1, datafile):
    numpy = pytest.importorskip("numpy")
    blocker = pool1.submit(native.sleep, 0.2)
    a = numpy.zeros(16, dtype=numpy.uint8)
    f = pool1.submit(native.read_into, datafile, a)
    with pytest.raises(ValueError):
        a.resize(32)             # numpy refuses: the array's buffer is exported
    assert f.result(HANG_TIMEOUT) == 16
    assert a.tobytes() == DATA[:16]
    a.resize(32, refcheck=False)
    blocker.result()


# --------------------------------------------------------------------------
# GIL-freedom: native tasks complete while the main thread never lets go

GIL_FREE_SCRIPT = r"""
import sys, time
native = np.native
pool = np.ThreadPool(2)

# Warm up: both workers started, have run Python and native tasks, parked.
ws = [pool.submit(time.sleep, 0.05) for _ in range(2)]
[w.result() for w in ws]
list(pool.map(native.crc32, [b"warm"] * 50))
pool.submit(native.sleep, 0).result()

# sum_squares(n) taking about 30 ms here (a direct call, GIL released).
n = 1000000
while True:
    t0 = time.perf_counter(); native.sum_squares(n); dt = time.perf_counter() - t0
    if dt > 0.005:
        break
    n *= 4
n = max(1000, int(n * 0.03 / dt))
time.sleep(0.2)

callback_at = []
old = sys.getswitchinterval()
sys.setswitchinterval(1000)     # the main thread never offers the GIL
try:
    start = time.monotonic()
    fs = [pool.submit(native.sleep, 0.05) for _ in range(6)]
    fs += [pool.submit(native.sum_squares, n) for _ in range(4)]
    fs[-1].add_done_callback(lambda f: callback_at.append(time.monotonic()))
    deadline = start + 8.0
    while time.monotonic() < deadline:           # pure Python spin
        if all([f.done() for f in fs]):
            break
    spin_end = time.monotonic()
    native_done = sum(f.done() for f in fs)
    callbacks_during_spin = len(callback_at)

    # Control: a Python task needs the GIL, so it cannot finish now.
    pf = pool.submit(abs, -42)
    control_end = time.monotonic() + 0.5
    while time.monotonic() < control_end:
        pf.done()
    python_done_during_spin = pf.done()
finally:
    sys.setswitchinterval(old)

out("native_done", native_done, "of", len(fs))
out("spin_seconds %.3f" % (spin_end - start))
out("callbacks_during_spin", callbacks_during_spin)
out("python_done_during_spin", python_done_during_spin)
out("python_result", pf.result(30))
deadline = time.monotonic() + 30
while not callback_at and time.monotonic() < deadline:
    time.sleep(0.01)
out("callback_after_spin", bool(callback_at) and callback_at[0] >= spin_end)
ok = [f.result() for f in fs[:6]] == [None] * 6 and \
     all(f.result() == (n - 1) * n * (2 * n - 1) // 6 for f in fs[6:])
out("results_ok", ok)
pool.shutdown()
"""


def test_native_tasks_complete_without_the_gil():
    proc = run_script(GIL_FREE_SCRIPT, timeout=90)
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr)
    assert "native_done 10 of 10" in out, out
    # The control: the same spin starves a Python task, so the check above
    # would catch native tasks that need the GIL.
    assert "python_done_during_spin False" in out, out
    assert "python_result 42" in out, out
    # A done callback needs the GIL: it runs only after the spin.
    assert "callbacks_during_spin 0" in out, out
    assert "callback_after_spin True" in out, out
    assert "results_ok True" in out, out


MAP_GIL_FREE_SCRIPT = r"""
import sys, time
native = np.native
pool = np.ThreadPool(2)
ws = [pool.submit(time.sleep, 0.05) for _ in range(2)]
[w.result() for w in ws]
list(pool.map(native.crc32, [b"warm"] * 50))
time.sleep(0.2)
fs = []
old = sys.getswitchinterval()
sys.setswitchinterval(1000)
try:
    # A native map's runners complete the items without the GIL; a native
    # future submitted after the map only runs once the map's items are done
    # (FIFO), so its completion during the spin proves the map ran.
    it = pool.map(native.sleep, [0.02] * 20)
    last = [pool.submit(native.sleep, 0), pool.submit(native.sleep, 0)]
    start = time.monotonic()
    while time.monotonic() < start + 8 and not all([f.done() for f in last]):
        pass
    done_during_spin = all([f.done() for f in last])
finally:
    sys.setswitchinterval(old)
out("done_during_spin", done_during_spin)
out("map", list(it) == [None] * 20)
pool.shutdown()
"""


def test_native_map_runs_without_the_gil():
    proc = run_script(MAP_GIL_FREE_SCRIPT, timeout=90)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "done_during_spin True" in proc.stdout, proc.stdout
    assert "map True" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------
# lifetime and leaks

def test_future_freed_after_later_submit(pool):
    f = pool.submit(native.sha256, DATA)
    f.result(HANG_TIMEOUT)
    ref = weakref.ref(f)
    del f

    def dead():
        drain(pool)
        return ref() is None
    assert wait_until(dead, timeout=10), "native future never freed"


def test_future_freed_after_shutdown(make_pool):
    p = make_pool(max_workers=2)
    fs = [p.submit(native.crc32, b"%d" % i) for i in range(10)]
    fs.append(p.submit(native.read_file, "/nonexistent/path"))
    cf.wait(fs, timeout=HANG_TIMEOUT)
    fs[-1].exception()
    refs = [weakref.ref(f) for f in fs]
    del fs
    p.shutdown(wait=True)
    gc.collect()
    assert wait_until(lambda: not gc.collect() and all(r() is None for r in refs),
                      timeout=10)


def test_unfinished_future_dropped_by_caller_still_runs(pool, datafile):
    buf = bytearray(8)
    ev = threading.Event()
    f = pool.submit(native.read_into, datafile, buf)
    f.add_done_callback(lambda fut: ev.set())
    del f
    gc.collect()
    assert ev.wait(HANG_TIMEOUT)
    drain(pool)
    assert buf == DATA[:8]


def test_pool_dropped_without_shutdown_completes_native_tasks():
    p = np.ThreadPool(2)
    fs = [p.submit(native.sleep, 0.05) for _ in range(6)]
    fs += [p.submit(native.sha256, DATA) for _ in range(4)]
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert [f.result(HANG_TIMEOUT) for f in fs[:6]] == [None] * 6
    assert all(f.result(HANG_TIMEOUT) == hashlib.sha256(DATA).digest() for f in fs[6:])
    assert wait_until(lambda: not gc.collect() and ref() is None, timeout=10)


def test_exit_with_native_tasks_queued_completes_them():
    proc = run_script("""
        native = np.native
        pool = np.ThreadPool(2)
        fs = [pool.submit(native.sleep, 0.05) for _ in range(6)]
        fs[-1].add_done_callback(lambda f: out("last done"))
        out("exiting")
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["exiting", "last", "done"], (proc.stdout, proc.stderr)


def test_no_leak_submit_result_crc32(pool):
    data = b"leak check payload"
    check_no_leak(lambda: pool.submit(native.crc32, data).result(),
                  iterations=20000, warmup=1000)


def test_no_leak_failing_tasks(pool, tmp_path):
    missing = str(tmp_path / "missing")

    def once():
        f = pool.submit(native.read_file, missing)
        assert isinstance(f.exception(), FileNotFoundError)

    check_no_leak(once, iterations=3000, warmup=300)


def test_no_leak_buffers_and_bytes_results(pool, datafile):
    buf = bytearray(64)
    path = str(datafile)

    def once():
        pool.submit(native.read_into, path, buf).result()
        pool.submit(native.read_file, path).result()
        pool.submit(native.compress, buf).result()

    check_no_leak(once, iterations=2000, warmup=200)


def test_no_leak_map(pool):
    items = [b"%d" % i for i in range(100)]
    check_no_leak(lambda: list(pool.map(native.crc32, items)), iterations=300,
                  warmup=30)


def test_no_leak_direct_calls():
    def once():
        native.crc32(b"abc")
        native.sha256(b"abc")
        native.compress(b"abc")
        try:
            native.decompress(b"abc")
        except zlib.error:
            pass
        try:
            native.crc32("bad")
        except TypeError:
            pass

    check_no_leak(once, iterations=3000, warmup=300)


def test_no_leak_cancelled(pool1):
    def once():
        blocker = pool1.submit(native.sleep, 0)
        f = pool1.submit(native.crc32, bytearray(b"x"))
        f.cancel()
        blocker.result()
        f.cancelled() or f.result()

    check_no_leak(once, iterations=2000, warmup=200)


@pytest.mark.stress
def test_stress_many_native_tasks_from_many_threads(pool):
    errors = []

    def producer(k):
        try:
            for i in range(300):
                data = b"%d-%d" % (k, i)
                fs = [pool.submit(native.crc32, data), pool.submit(native.sha256, data),
                      pool.submit(native.sum_squares, i)]
                assert fs[0].result(HANG_TIMEOUT) == zlib.crc32(data)
                assert fs[1].result(HANG_TIMEOUT) == hashlib.sha256(data).digest()
                assert fs[2].result(HANG_TIMEOUT) == sum_squares_formula(i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT * 2)
    assert not errors, errors[:3]
