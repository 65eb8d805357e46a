"""ThreadPool as a drop-in for concurrent.futures.ThreadPoolExecutor.

Every test here runs against both classes (the ``executor`` fixture), so the
stdlib proves each expectation; a check that only our pool can pass (where
we deliberately do better than the stdlib) is marked in its comment.
"""
import concurrent.futures as cf
import itertools
import re
import threading

import pytest

from conftest import np, run_script, HANG_TIMEOUT

EXECUTORS = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request):
    """The executor class under test: nativepool's or the stdlib's."""
    return EXECUTORS[request.param]


def _shutdown_all(pools):
    for p in pools:
        p.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------
# worker thread names

@pytest.mark.parametrize("round_", range(3))
def test_worker_names_unique_when_threads_submit_at_once(executor, round_):
    # 8 threads submit at the same moment; the tasks wait for each other on a
    # barrier, so all 8 run at once on 8 workers.  The stdlib names them
    # p_0..p_7 (submit holds a lock while it counts and starts a thread).
    n = 8
    p = executor(n, thread_name_prefix="p")
    go = threading.Barrier(n, timeout=HANG_TIMEOUT)      # guards a hang only
    together = threading.Barrier(n, timeout=HANG_TIMEOUT)
    futures = []
    lock = threading.Lock()

    def task():
        together.wait()
        return threading.current_thread().name

    def submitter():
        go.wait()
        f = p.submit(task)
        with lock:
            futures.append(f)

    try:
        threads = [threading.Thread(target=submitter) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_TIMEOUT)
        names = [f.result(HANG_TIMEOUT) for f in futures]
    finally:
        p.shutdown(wait=True)
    expected = ["p_%d" % i for i in range(n)]
    assert sorted(names) == expected
    assert sorted(t.name for t in p._threads) == expected


@pytest.mark.parametrize("first,second", list(itertools.product(
    sorted(EXECUTORS), repeat=2)))
def test_default_prefix_is_stdlib_format_and_unique(first, second):
    # The stdlib's default prefix is "ThreadPoolExecutor-%d" from a counter on
    # the class, which subclasses share: two pools never get the same prefix,
    # whichever of the two classes each one is.  A fresh interpreter, so
    # that both counters start where a program's would.
    r = run_script("""
        import concurrent.futures as cf, threading
        classes = {"nativepool": np.ThreadPool, "stdlib": cf.ThreadPoolExecutor}
        pools = [classes[%r](1), classes[%r](1)]
        for p in pools:
            name = p.submit(lambda: threading.current_thread().name).result(30)
            out(name, p._thread_name_prefix)
            p.shutdown()
    """ % (first, second))
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in r.stdout.splitlines()]
    assert len(lines) == 2, r.stdout
    for name, prefix in lines:
        assert re.fullmatch(r"ThreadPoolExecutor-\d+_0", name), name
        assert name == prefix + "_0"
    assert lines[0][0] != lines[1][0]
