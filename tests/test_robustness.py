"""Misuse and garbage-collection robustness: never a crash, a hang or a lost task.

Anything that could crash the interpreter runs in a subprocess, so a segfault
is reported as a failed test instead of killing the test run.
"""
import concurrent.futures as cf
import gc
import threading
import weakref

import pytest

from conftest import np, run_script, wait_until, HANG_TIMEOUT


class MyError(Exception):
    pass


def assert_no_crash(proc):
    assert proc.returncode == 0, "rc=%s\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    assert "Fatal Python error" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------
# reference cycles must be collectable (tp_traverse / tp_clear)

def _collected(ref, timeout=5.0):
    return wait_until(lambda: (gc.collect(), ref() is None)[1], timeout=timeout)


def test_future_result_cycle_collected():
    f = np.Future()
    f.set_result([f])
    r = weakref.ref(f)
    del f
    assert _collected(r)


def test_future_callback_cycle_collected():
    f = np.Future()
    f.add_done_callback(lambda _: f)  # pending future -> callback -> closure -> future
    r = weakref.ref(f)
    del f
    assert _collected(r)


def test_future_exception_traceback_cycle_collected():
    f = np.Future()
    try:
        raise MyError()
    except MyError as e:
        holder = [f]  # the frame (in the traceback) references the future
        f.set_exception(e)
    f.exception()
    r = weakref.ref(f)
    del f, holder
    assert _collected(r)


def test_pool_future_cycle_collected(make_pool):
    p = make_pool(max_workers=1)
    box = []

    def task():
        return box  # result -> list -> future

    f = p.submit(task)
    box.append(f)
    f.result(HANG_TIMEOUT)
    r = weakref.ref(f)
    del f, box
    assert _collected(r)


def test_pool_referenced_from_its_own_task_collected():
    p = np.ThreadPool(1)
    f = p.submit(lambda: p)
    assert f.result(HANG_TIMEOUT) is p
    p.shutdown(wait=True)
    r = weakref.ref(p)
    del p, f
    assert _collected(r, timeout=10)


# --------------------------------------------------------------------------
# user code meddling with pool futures

@pytest.mark.nativepool_only
def test_user_completes_running_pool_future(make_pool, gate):
    p = make_pool(max_workers=1)
    f = p.submit(gate.wait)
    assert wait_until(f.running)
    f.set_result("user")
    gate.open()
    assert f.result(HANG_TIMEOUT) == "user"
    # the single worker survives the task's own (rejected) completion
    assert p.submit(pow, 2, 4).result(HANG_TIMEOUT) == 16


@pytest.mark.nativepool_only
def test_user_completes_queued_pool_future(make_pool, gate):
    p = make_pool(max_workers=1)
    blocker = p.submit(gate.wait)
    ran = []
    f = p.submit(ran.append, 1)
    f.set_exception(MyError("user"))
    gate.open()
    assert blocker.result(HANG_TIMEOUT) is True
    with pytest.raises(MyError, match="user"):
        f.result(HANG_TIMEOUT)
    assert p.submit(pow, 3, 2).result(HANG_TIMEOUT) == 9


def test_cancel_from_other_threads_races_worker(make_pool):
    # Cancel futures from a different thread than the submitter while workers
    # pick them up: each ends either cancelled or finished, callbacks once.
    p = make_pool(max_workers=2)
    n = 20000
    futs = []
    counts = [0] * n
    lock = threading.Lock()
    done_submitting = threading.Event()

    def submitter():
        for i in range(n):
            f = p.submit(abs, -i)

            def cb(fut, i=i):
                with lock:
                    counts[i] += 1
            f.add_done_callback(cb)
            futs.append(f)
        done_submitting.set()

    cancel_ok = set()

    def canceller():
        k = 0
        while k < n:
            if k < len(futs):
                if k % 3 == 0 and futs[k].cancel():
                    cancel_ok.add(k)
                k += 1
            elif done_submitting.is_set() and k >= len(futs):
                break

    ts = [threading.Thread(target=submitter), threading.Thread(target=canceller)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    p.shutdown(wait=True)
    assert wait_until(lambda: min(counts) >= 1, timeout=HANG_TIMEOUT)
    assert max(counts) == 1
    for i, f in enumerate(futs):
        assert f.done()
        if i in cancel_ok:
            assert f.cancelled()
        else:
            assert not f.cancelled()
            assert f.result(0) == i


# --------------------------------------------------------------------------
# half-initialized objects and re-initialization (in a subprocess)

def test_uninitialized_objects_do_not_crash():
    proc = run_script("""
        import concurrent.futures as cf
        def attempt(label, fn):
            try:
                fn()
                print(label, "ok", flush=True)
            except Exception as e:
                print(label, type(e).__name__, flush=True)
        p = np.ThreadPool.__new__(np.ThreadPool)
        attempt("pool-submit", lambda: p.submit(int))
        attempt("pool-map", lambda: list(p.map(int, [1])))
        attempt("pool-shutdown", lambda: p.shutdown())
        attempt("pool-repr", lambda: repr(p))
        f = np.Future.__new__(np.Future)
        attempt("fut-done", lambda: f.done())
        attempt("fut-result", lambda: f.result(timeout=0))
        attempt("fut-set", lambda: f.set_result(1))
        attempt("fut-cancel", lambda: f.cancel())
        attempt("fut-cb", lambda: f.add_done_callback(print))
        attempt("fut-repr", lambda: repr(f))
        attempt("fut-wait", lambda: cf.wait([f], timeout=0))
        del p, f
        import gc; gc.collect()
        print("survived", flush=True)
    """)
    assert_no_crash(proc)
    assert "survived" in proc.stdout


def test_reinit_pool_does_not_crash_or_lose_work():
    proc = run_script("""
        import threading
        p = np.ThreadPool(2)
        ev = threading.Event()
        f = p.submit(ev.wait, 30)
        try:
            p.__init__(3)
            print("reinit ok", flush=True)
        except Exception as e:
            print("reinit", type(e).__name__, flush=True)
        ev.set()
        print("first", f.result(30), flush=True)
        try:
            print("second", p.submit(pow, 2, 3).result(30), flush=True)
        except Exception as e:
            print("second", type(e).__name__, flush=True)
        p.shutdown(wait=True)
        print("survived", flush=True)
    """)
    assert_no_crash(proc)
    assert "first True" in proc.stdout
    assert "survived" in proc.stdout


def test_subclass_without_super_init_does_not_crash():
    proc = run_script("""
        class Bad(np.ThreadPool):
            def __init__(self):
                pass
        b = Bad()
        for name, call in [("submit", lambda: b.submit(int)),
                           ("map", lambda: list(b.map(int, [1]))),
                           ("shutdown", lambda: b.shutdown())]:
            try:
                call()
                print(name, "ok", flush=True)
            except Exception as e:
                print(name, type(e).__name__, flush=True)
        with Bad() as c:
            pass
        print("survived", flush=True)
    """)
    # the `with` may raise cleanly; a crash is what we are looking for
    assert "Fatal Python error" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)
    assert "shutdown" in proc.stdout


def test_weird_callables_and_arguments(pool):
    class Weird:
        def __call__(self, *a, **k):
            return (a, k)

        def __eq__(self, other):
            raise MyError("no eq")

        __hash__ = object.__hash__

    w = Weird()
    assert pool.submit(w, 1, x=2).result(HANG_TIMEOUT) == ((1,), {"x": 2})
    big = list(range(1000))
    assert pool.submit(len, big).result(HANG_TIMEOUT) == 1000
    assert pool.submit(lambda *a: len(a), *big).result(HANG_TIMEOUT) == 1000
    kw = {"k%d" % i: i for i in range(300)}
    assert pool.submit(lambda **k: len(k), **kw).result(HANG_TIMEOUT) == 300


def test_exception_with_failing_str_and_repr(pool, log_capture):
    log_capture("nativepool")

    class Nasty(Exception):
        def __str__(self):
            raise RuntimeError("str fails")

        def __repr__(self):
            raise RuntimeError("repr fails")

    def boom():
        raise Nasty()

    f = pool.submit(boom)
    with pytest.raises(Nasty):
        f.result(HANG_TIMEOUT)
    g = pool.submit(boom)
    cf.wait([g], timeout=HANG_TIMEOUT)
    del g  # unretrieved + unprintable: logging must not crash anything
    gc.collect()
    assert pool.submit(int).result(HANG_TIMEOUT) == 0


def test_unprintable_unretrieved_exception_in_subprocess():
    proc = run_script("""
        import gc, logging
        logging.basicConfig()
        class Nasty(Exception):
            def __str__(self):
                raise RuntimeError("str fails")
            def __repr__(self):
                raise RuntimeError("repr fails")
        f = np.Future()
        f.set_exception(Nasty())
        del f
        gc.collect()
        print("survived", flush=True)
    """)
    assert_no_crash(proc)
    assert "survived" in proc.stdout
