"""The C API (csrc/include/nativepool.h): a third-party extension (its source
is native_support.EXT_SOURCE), compiled at test time against
nativepool.get_include() only, submits C tasks to a nativepool.ThreadPool.

Checked against the header's rules: the future is a nativepool.Future; run()
runs once without the GIL; cleanup(arg) runs exactly once in every path
(after run, after result() for a task with a result function, on cancel,
on shutdown(cancel_futures=True), when the submit itself fails); the result
function is called at most once and its exception fails the future.
"""
import concurrent.futures as cf
import gc
import os
import threading
import time
import weakref

import pytest

from conftest import np, run_script, wait_until, check_no_leak, HANG_TIMEOUT
from native_support import EXT_NAME, EXT_SOURCE, build_ext, compiler, drain, load_ext

if getattr(np, "get_include", None) is None:
    pytest.skip("the module under test has no C API", allow_module_level=True)

pytestmark = pytest.mark.nativepool_only


@pytest.fixture(scope="module")
def ext_path(tmp_path_factory):
    if compiler() is None:
        pytest.skip("gcc is needed to build the C API test extension")
    return build_ext(str(tmp_path_factory.mktemp("capi")))


@pytest.fixture(scope="module")
def ext(ext_path):
    return load_ext(ext_path)


_tags = iter(range(1, 256))


@pytest.fixture
def tag():
    """A counter slot of the extension for this test alone."""
    return next(_tags)


def counts(ext, tag):
    return ext.counters(tag)


def wait_for(ext, tag, key, value, timeout=10):
    """Wait until counter `key` reaches value (draining lazily released
    tasks); then check it does not go past it."""
    def reached():
        gc.collect()
        return ext.counters(tag)[key] >= value
    wait_until(reached, timeout=timeout, interval=0.01)
    time.sleep(0.02)
    return ext.counters(tag)[key]


# --------------------------------------------------------------------------
# the header and the import

def test_get_include_contains_header():
    inc = np.get_include()
    header = os.path.join(inc, "nativepool.h")
    assert os.path.isfile(header)
    text = open(header).read()
    for name in ["NativePool_Import", "NativePool_Submit", "NativePool_SubmitTask",
                 "NativePool_IsThreadPool", "NATIVEPOOL_CAPI_VERSION"]:
        assert name in text


def test_capsule_is_exported():
    import nativepool._nativepool as core
    assert type(core._C_API).__name__ == "PyCapsule"


def test_extension_builds_and_imports(ext):
    assert ext.__name__ == EXT_NAME
    assert callable(ext.submit)


def test_is_thread_pool(ext, pool):
    assert ext.is_pool(pool) is True
    assert ext.is_pool(cf.ThreadPoolExecutor) is False
    assert ext.is_pool(object()) is False
    assert ext.is_pool(None) is False
    ex = cf.ThreadPoolExecutor(1)
    try:
        assert ext.is_pool(ex) is False
    finally:
        ex.shutdown()


# --------------------------------------------------------------------------
# NativePool_Submit: result None, cleanup after run on the worker

def test_submit_runs_and_cleans_up(ext, pool, tag):
    f = ext.submit(pool, tag, 1000)
    assert isinstance(f, np.Future)
    assert f.result(HANG_TIMEOUT) is None
    assert f.exception() is None
    assert wait_for(ext, tag, "cleanups", 1) == 1
    c = counts(ext, tag)
    assert c["runs"] == 1
    assert c["runs_with_gil"] == 0, "run() was called with the GIL held"
    assert c["cleanups_with_gil"] == 0, "cleanup after run should be on the worker"
    assert c["results"] == 0


def test_submit_cleanup_happens_without_anyone_reading(ext, pool, tag):
    fs = [ext.submit(pool, tag, 100) for _ in range(20)]
    cf.wait(fs, timeout=HANG_TIMEOUT)
    assert wait_for(ext, tag, "cleanups", 20) == 20
    del fs
    drain(pool)
    assert counts(ext, tag)["cleanups"] == 20


# --------------------------------------------------------------------------
# NativePool_SubmitTask with a result function

def test_submit_task_result(ext, pool, tag):
    f = ext.submit_task(pool, tag, 100_000)
    assert isinstance(f, np.Future)
    assert f.result(HANG_TIMEOUT) == sum(range(100_000))
    c = counts(ext, tag)
    assert c["results"] == 1
    # With a result function, cleanup comes after result() (with the GIL).
    assert c["cleanups"] == 1 and c["cleanups_with_gil"] == 1
    assert f.result() == sum(range(100_000))
    assert f.exception() is None
    assert counts(ext, tag)["results"] == 1              # at most once
    assert counts(ext, tag)["cleanups"] == 1
    assert counts(ext, tag)["runs_with_gil"] == 0


def test_result_function_not_called_before_completion(ext, pool1_factory, tag):
    p = pool1_factory()
    f = ext.submit_task(p, tag, 10, 200)
    assert counts(ext, tag)["results"] == 0
    assert f.result(HANG_TIMEOUT) == sum(range(10))
    assert counts(ext, tag)["results"] == 1


def test_result_function_from_done_callback(ext, pool, tag):
    seen = []
    ev = threading.Event()
    f = ext.submit_task(pool, tag, 50, 50)
    f.add_done_callback(lambda fut: (seen.append(fut.result()), ev.set()))
    assert ev.wait(HANG_TIMEOUT)
    assert seen == [sum(range(50))]
    assert f.result() == sum(range(50))
    assert counts(ext, tag)["results"] == 1
    assert counts(ext, tag)["cleanups"] == 1


def test_result_never_read_still_cleaned_up(ext, pool, tag):
    f = ext.submit_task(pool, tag, 10)
    ref = weakref.ref(f)
    while not f.done():
        time.sleep(0.005)
    del f

    def gone():
        drain(pool)
        return ref() is None
    assert wait_until(gone, timeout=10)
    assert counts(ext, tag)["cleanups"] == 1
    assert counts(ext, tag)["results"] <= 1


def test_result_function_failure_fails_future(ext, pool, tag):
    f = ext.submit_failing(pool, tag, 7)
    exc = f.exception(HANG_TIMEOUT)
    assert isinstance(exc, ValueError)
    assert str(exc) == "task failed for n=7"
    with pytest.raises(ValueError) as info:
        f.result()
    assert info.value is exc
    c = counts(ext, tag)
    assert c["results"] == 1 and c["cleanups"] == 1


def test_result_function_failure_and_waits(ext, quick_pool, tag):
    p = quick_pool(2)
    slow = ext.submit(p, tag, 0, 2000)
    bad = ext.submit_failing(p, tag, 3, 50)
    for wait in (cf.wait, np.wait):
        done, not_done = wait([slow, bad], timeout=HANG_TIMEOUT,
                              return_when=cf.FIRST_EXCEPTION)
        assert bad in done and slow in not_done
    assert [f for f in cf.as_completed([bad], timeout=HANG_TIMEOUT)] == [bad]
    assert isinstance(bad.exception(), ValueError)


def test_result_function_null_without_exception(ext, pool, tag):
    f = ext.submit_null_result(pool, tag, 1)
    exc = f.exception(HANG_TIMEOUT)
    assert isinstance(exc, SystemError)
    assert counts(ext, tag)["cleanups"] == 1


def test_result_function_memory_error_fails_future_once(ext, pool, tag):
    # "NULL with an exception set fails the future with it", and the result
    # function is called at most once -- whatever the exception.
    # The result function runs once; even a MemoryError is the outcome.
    f = ext.submit_nomem(pool, tag, 1)
    while not f.done():          # no waiter attached: the result is read below
        time.sleep(0.005)
    with pytest.raises(MemoryError):
        f.result()
    exc = f.exception()
    assert isinstance(exc, MemoryError)
    with pytest.raises(MemoryError):
        f.result()
    c = counts(ext, tag)
    assert c["results"] == 1, "result function called %d times" % c["results"]
    assert c["cleanups"] == 1


def test_result_function_memory_error_with_waiter_attached(ext, pool, tag):
    # The same task with a stdlib waiter attached before it finishes: the
    # outcome is converted at completion, and the MemoryError fails it.
    f = ext.submit_nomem(pool, tag, 1, 100)
    done, _ = cf.wait([f], timeout=HANG_TIMEOUT)
    assert f in done
    assert isinstance(f.exception(), MemoryError)
    with pytest.raises(MemoryError):
        f.result()
    assert counts(ext, tag)["results"] == 1
    assert counts(ext, tag)["cleanups"] == 1


def test_task_without_cleanup(ext, pool, tag):
    f = ext.submit_no_cleanup(pool, tag, 10)
    assert f.result(HANG_TIMEOUT) == 45
    assert counts(ext, tag)["cleanups"] == 0


# --------------------------------------------------------------------------
# cleanup exactly once in every path

@pytest.fixture
def pool1_factory(make_pool):
    return lambda: make_pool(max_workers=1)



def test_cancelled_queued_task_cleaned_up(ext, pool1_factory, tag):
    p = pool1_factory()
    blocker = ext.submit(p, tag, 0, 300)
    first = ext.next_id()
    queued = [ext.submit_task(p, tag, 10), ext.submit(p, tag, 10)]
    last = ext.next_id()
    assert all(q.cancel() for q in queued)
    # Cancelled: given up at once, with the GIL.
    assert ext.cleanup_counts(first, last) == [1, 1]
    assert blocker.result(HANG_TIMEOUT) is None
    drain(p)
    assert wait_for(ext, tag, "cleanups", 3) == 3
    c = counts(ext, tag)
    assert c["runs"] == 1                          # the cancelled ones never ran
    assert c["results"] == 0
    assert ext.cleanup_counts(first, last) == [1, 1]
    with pytest.raises(cf.CancelledError):
        queued[0].result()


def test_shutdown_cancel_futures_cleans_up(ext, make_pool, tag):
    p = make_pool(max_workers=1)
    first = ext.next_id()
    running = ext.submit(p, tag, 0, 200)
    queued = [ext.submit_task(p, tag, i) for i in range(5)]
    queued += [ext.submit(p, tag, i) for i in range(5)]
    last = ext.next_id()
    p.shutdown(wait=True, cancel_futures=True)
    assert running.done() and not running.cancelled()
    assert all(q.cancelled() for q in queued)
    gc.collect()
    assert wait_for(ext, tag, "cleanups", 11) == 11
    assert ext.cleanup_counts(first, last) == [1] * 11
    assert counts(ext, tag)["runs"] == 1


def test_submit_after_shutdown(ext, make_pool, tag):
    p = make_pool(max_workers=1)
    p.shutdown()
    first = ext.next_id()
    with pytest.raises(RuntimeError):
        ext.submit(p, tag, 1)
    with pytest.raises(RuntimeError):
        ext.submit_task(p, tag, 1)
    assert ext.cleanup_counts(first, ext.next_id()) == [1, 1]
    assert counts(ext, tag)["runs"] == 0


def test_broken_pool_cleans_up(ext, make_pool, log_capture, tag):
    log_capture("concurrent.futures")          # the initializer's CRITICAL record

    def init():
        raise ValueError("initializer fails")

    p = make_pool(max_workers=1, initializer=init)
    first = ext.next_id()
    outcomes = []
    for _ in range(3):
        try:
            f = ext.submit_task(p, tag, 5)
        except np.BrokenThreadPool:
            outcomes.append("refused")
        else:
            outcomes.append(type(f.exception(HANG_TIMEOUT)).__name__)
    assert set(outcomes) <= {"refused", "BrokenThreadPool"}, outcomes
    gc.collect()
    assert ext.cleanup_counts(first, ext.next_id()) == [1, 1, 1]
    assert counts(ext, tag)["runs"] == 0


@pytest.mark.parametrize("bad", [None, 5, "pool", cf.ThreadPoolExecutor],
                         ids=["None", "int", "str", "class"])
def test_submit_to_non_pool(ext, tag, bad):
    first = ext.next_id()
    with pytest.raises(TypeError):
        ext.submit(bad, tag, 1)
    with pytest.raises(TypeError):
        ext.submit_task(bad, tag, 1)
    assert ext.cleanup_counts(first, ext.next_id()) == [1, 1]
    assert counts(ext, tag)["runs"] == 0


def test_submit_to_stdlib_executor_is_type_error(ext, tag):
    ex = cf.ThreadPoolExecutor(1)
    try:
        with pytest.raises(TypeError):
            ext.submit(ex, tag, 1)
    finally:
        ex.shutdown()
    assert counts(ext, tag)["cleanups"] == 1


def test_null_run_is_value_error(ext, pool, tag):
    first = ext.next_id()
    with pytest.raises(ValueError):
        ext.submit_null_run(pool, tag, 1)
    assert ext.cleanup_counts(first, ext.next_id()) == [1]
    with pytest.raises(ValueError):
        ext.submit_null_task(pool)
    assert counts(ext, tag)["runs"] == 0


def test_every_path_once(ext, make_pool, tag):
    # All the paths mixed, then an audit of each task's cleanup count.
    p = make_pool(max_workers=2)
    first = ext.next_id()
    fs = []
    for i in range(200):
        k = i % 5
        if k == 0:
            fs.append(ext.submit(p, tag, i))
        elif k == 1:
            fs.append(ext.submit_task(p, tag, i))
        elif k == 2:
            fs.append(ext.submit_failing(p, tag, i))
        elif k == 3:
            f = ext.submit_task(p, tag, i, 1)
            f.cancel()
            fs.append(f)
        else:
            with pytest.raises(TypeError):
                ext.submit(object(), tag, i)
    last = ext.next_id()
    for i, f in enumerate(fs):
        if not f.cancelled():
            f.exception(HANG_TIMEOUT)
    del fs, f
    p.shutdown(wait=True)
    gc.collect()
    wait_for(ext, tag, "cleanups", 200)
    audit = ext.cleanup_counts(first, last)
    assert audit == [1] * 200, [(i, c) for i, c in enumerate(audit) if c != 1][:10]


# --------------------------------------------------------------------------
# scale, lifetime, leaks

def test_many_tasks(ext, pool, tag):
    n = 10_000
    fs = [ext.submit(pool, tag, 100) for _ in range(n // 2)]
    fs += [ext.submit_task(pool, tag, i % 100) for i in range(n // 2)]
    done, not_done = cf.wait(fs, timeout=HANG_TIMEOUT * 2)
    assert len(done) == n and not not_done
    assert all(f.result() is None for f in fs[:n // 2])
    assert [f.result() for f in fs[n // 2:]] == \
        [sum(range(i % 100)) for i in range(n // 2)]
    c = counts(ext, tag)
    assert c["runs"] == n and c["runs_with_gil"] == 0
    assert wait_for(ext, tag, "cleanups", n) == n


def test_future_freed(ext, pool, tag):
    f = ext.submit_task(pool, tag, 10)
    f.result(HANG_TIMEOUT)
    ref = weakref.ref(f)
    del f

    def gone():
        drain(pool)
        return ref() is None
    assert wait_until(gone, timeout=10)


def test_pool_dropped_without_shutdown(ext, tag):
    p = np.ThreadPool(2)
    fs = [ext.submit(p, tag, 1000, 20) for _ in range(6)]
    del p
    gc.collect()
    assert all(f.result(HANG_TIMEOUT) is None for f in fs)
    assert wait_for(ext, tag, "cleanups", 6) == 6


def test_no_leak(ext, pool, tag):
    def once():
        ext.submit_task(pool, tag, 10).result()
        ext.submit(pool, tag, 10).result()

    check_no_leak(once, iterations=3000, warmup=300)


def test_mixed_with_python_and_native_tasks(ext, pool, tag):
    native = np.native
    fs = []
    for i in range(100):
        fs.append(("c", i, ext.submit_task(pool, tag, i)))
        fs.append(("py", i, pool.submit(pow, i, 2)))
        fs.append(("native", i, pool.submit(native.sum_squares, i)))
    for kind, i, f in fs:
        want = {"c": sum(range(i)), "py": i * i,
                "native": (i - 1) * i * (2 * i - 1) // 6 if i > 0 else 0}[kind]
        assert f.result(HANG_TIMEOUT) == want


CAPI_GIL_SCRIPT = r"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location(%(name)r, %(path)r)
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)
pool = np.ThreadPool(2)
ws = [pool.submit(time.sleep, 0.05) for _ in range(2)]
[w.result() for w in ws]
ext.submit(pool, 0, 10).result()
time.sleep(0.2)
old = sys.getswitchinterval()
sys.setswitchinterval(1000)
try:
    fs = [ext.submit(pool, 0, 1000, 50) for _ in range(6)]
    start = time.monotonic()
    while time.monotonic() < start + 8 and not all([f.done() for f in fs]):
        pass
    done = sum(f.done() for f in fs)
    cleanups = ext.counters(0)["cleanups"]
finally:
    sys.setswitchinterval(old)
out("done", done)
out("cleanups_during_spin", cleanups)
pool.shutdown()
"""


def test_capi_tasks_complete_without_the_gil(ext_path):
    proc = run_script(CAPI_GIL_SCRIPT % {"name": EXT_NAME, "path": ext_path},
                      timeout=90)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "done 6" in proc.stdout, proc.stdout
    # cleanup(arg) ran on the worker too (no GIL needed); the warm-up task's
    # cleanup makes 7.
    assert "cleanups_during_spin 7" in proc.stdout, proc.stdout


def test_second_extension_instance(ext_path, tmp_path):
    # Another module built from the same header works side by side (each
    # translation unit imports the API itself).
    name2 = EXT_NAME + "_two"
    path2 = build_ext(str(tmp_path), name2, EXT_SOURCE.replace(EXT_NAME, name2))
    ext2 = load_ext(path2, name2)
    p = np.ThreadPool(1)
    try:
        assert ext2.submit_task(p, 1, 10).result(HANG_TIMEOUT) == 45
    finally:
        p.shutdown()
