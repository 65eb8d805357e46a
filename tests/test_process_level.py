"""Process-level behaviour, each case in a fresh interpreter: interpreter exit with
pools still running, os.fork(), and Ctrl-C (SIGINT) while blocked."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_script, popen_script

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def assert_clean(proc):
    assert proc.returncode == 0, "rc=%s\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Fatal Python error" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------
# interpreter exit

def test_exit_without_shutdown_completes_queued_work():
    proc = run_script("""
        import time
        pool = np.ThreadPool(2)
        def task(i):
            time.sleep(0.01)
            out("task", i)
        for i in range(40):
            pool.submit(task, i)
        out("main done")
        # falls off the end: no shutdown
    """)
    assert_clean(proc)
    lines = proc.stdout.splitlines()
    assert "main done" in lines
    assert sorted(l for l in lines if l.startswith("task")) == \
        sorted("task %d" % i for i in range(40))


def test_exit_without_shutdown_writes_file(tmp_path):
    out = tmp_path / "out.txt"
    proc = run_script("""
        import sys, time, threading
        path = sys.argv[1] if len(sys.argv) > 1 else %r
        lock = threading.Lock()
        pool = np.ThreadPool(3, thread_name_prefix="exitpool")
        def task(i):
            if i == 0:
                time.sleep(0.3)   # a running task when the main thread ends
            with lock:
                with open(path, "a") as fh:
                    fh.write("%%d\\n" %% i)
        for i in range(100):
            pool.submit(task, i)
    """ % str(out))
    assert_clean(proc)
    got = sorted(int(x) for x in out.read_text().split())
    assert got == list(range(100))


def test_exit_with_several_pools_and_unreferenced_pool():
    proc = run_script("""
        import time
        def make():
            p = np.ThreadPool(1)
            p.submit(lambda: (time.sleep(0.1), out("from dropped pool")))
        make()
        pools = [np.ThreadPool(2) for _ in range(4)]
        for k, p in enumerate(pools):
            for i in range(5):
                p.submit(out, "pool", k, "task", i)
    """)
    assert_clean(proc)
    lines = proc.stdout.splitlines()
    assert "from dropped pool" in lines
    assert len([l for l in lines if l.startswith("pool")]) == 20


def test_exit_after_sys_exit_in_main():
    proc = run_script("""
        import sys, time
        pool = np.ThreadPool(1)
        pool.submit(lambda: (time.sleep(0.1), print("finished", flush=True)))
        sys.exit(0)
    """)
    assert_clean(proc)
    assert "finished" in proc.stdout


def test_exit_with_done_callbacks_and_pending_manual_future():
    proc = run_script("""
        pool = np.ThreadPool(2)
        pending = np.Future()   # never completed
        for i in range(10):
            f = pool.submit(pow, 2, i)
            f.add_done_callback(lambda fut: out("cb", fut.result()))
    """)
    assert_clean(proc)
    got = sorted(int(l.split()[1]) for l in proc.stdout.splitlines() if l.startswith("cb"))
    assert got == sorted(2 ** i for i in range(10))


def test_unretrieved_exception_at_exit_does_not_crash():
    proc = run_script("""
        import logging
        logging.basicConfig()
        pool = np.ThreadPool(1)
        def boom():
            raise ValueError("never retrieved at exit")
        f = pool.submit(boom)
        print("ok", flush=True)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "Fatal Python error" not in proc.stderr
    assert "ok" in proc.stdout


def test_exit_from_worker_thread_submit_does_not_hang():
    # A task that itself submits more work while the interpreter shuts down.
    proc = run_script("""
        import time
        pool = np.ThreadPool(2)
        def chain(n):
            time.sleep(0.01)
            if n > 0:
                try:
                    pool.submit(chain, n - 1)
                except RuntimeError:
                    out("refused")
                    return
            out("chain", n)
        pool.submit(chain, 20)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "Fatal Python error" not in proc.stderr


# --------------------------------------------------------------------------
# fork

FORK_PRELUDE = """
import os, sys, time, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: fork() with threads
def wait_child(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rpid, status = os.waitpid(pid, os.WNOHANG)
        if rpid:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


@needs_fork
def test_fork_child_can_use_new_pool():
    proc = run_script(FORK_PRELUDE + """
pool = np.ThreadPool(2)
assert pool.submit(pow, 2, 5).result(10) == 32
pid = os.fork()
if pid == 0:
    try:
        with np.ThreadPool(3) as p2:
            r = list(p2.map(abs, range(-50, 0)))
        ok = r == list(range(50, 0, -1))
        f = np.Future()
        threading.Timer(0.01, f.set_result, (1,)).start()
        ok = ok and f.result(10) == 1
        os._exit(0 if ok else 1)
    except BaseException as e:
        print("child error", repr(e), flush=True)
        os._exit(2)
rc = wait_child(pid)
print("child rc", rc)
assert pool.submit(pow, 3, 2).result(10) == 9
pool.shutdown()
""")
    assert_clean(proc)
    assert "child rc 0" in proc.stdout


@pytest.mark.nativepool_only
@needs_fork
def test_fork_child_can_use_parent_pool():
    proc = run_script(FORK_PRELUDE + """
pool = np.ThreadPool(2)
# make sure the parent has spawned all its workers
b = threading.Barrier(2, timeout=10)
[f.result(10) for f in [pool.submit(b.wait), pool.submit(b.wait)]]
pid = os.fork()
if pid == 0:
    try:
        r = [pool.submit(pow, 2, i).result(10) for i in range(10)]
        r2 = list(pool.map(abs, [-1, -2, -3], timeout=10))
        name = pool.submit(lambda: threading.current_thread().name).result(10)
        pool.shutdown(wait=True)
        os._exit(0 if r == [2 ** i for i in range(10)] and r2 == [1, 2, 3] else 1)
    except BaseException as e:
        print("child error", repr(e), flush=True)
        os._exit(2)
rc = wait_child(pid)
print("child rc", rc)
assert pool.submit(pow, 3, 2).result(10) == 9
pool.shutdown()
""")
    assert_clean(proc)
    assert "child rc 0" in proc.stdout, proc.stdout


@pytest.mark.nativepool_only
@needs_fork
def test_fork_orphaned_tasks_fail_with_broken_pool_in_child(tmp_path):
    marker = tmp_path / "ran.txt"
    proc = run_script(FORK_PRELUDE + """
import concurrent.futures.thread as cft
marker = %r
pool = np.ThreadPool(1)
gate = threading.Event()
started = threading.Event()
def running_task():
    started.set()
    gate.wait(20)
    with open(marker, "a") as fh:
        fh.write("running %%d\\n" %% os.getpid())
    return "running-done"
def queued_task():
    with open(marker, "a") as fh:
        fh.write("queued %%d\\n" %% os.getpid())
    return "queued-done"
f_run = pool.submit(running_task)
started.wait(10)
f_queued = pool.submit(queued_task)
pid = os.fork()
if pid == 0:
    code = 0
    for name, f in (("running", f_run), ("queued", f_queued)):
        try:
            r = f.result(timeout=10)
            print("child:", name, "returned", r, flush=True)
            code = 3
        except cft.BrokenThreadPool:
            print("child:", name, "broken", flush=True)
        except BaseException as e:
            print("child:", name, "error", repr(e), flush=True)
            code = 4
    # the pool keeps working in the child for new work
    try:
        if pool.submit(pow, 2, 3).result(10) != 8:
            code = 5
    except BaseException as e:
        print("child: new submit failed", repr(e), flush=True)
        code = 6
    sys.stdout.flush()
    os._exit(code)
rc = wait_child(pid)
print("child rc", rc, flush=True)
gate.set()
print("parent", f_run.result(10), f_queued.result(10), flush=True)
pool.shutdown()
print("parent pid", os.getpid())
""" % str(marker))
    assert_clean(proc)
    out = proc.stdout
    assert "child: running broken" in out, out
    assert "child: queued broken" in out, out
    assert "child rc 0" in out, out
    assert "parent running-done queued-done" in out
    parent_pid = [l.split()[2] for l in out.splitlines() if l.startswith("parent pid")][0]
    lines = marker.read_text().split("\n")
    lines = [l for l in lines if l]
    # each task ran exactly once, in the parent
    assert sorted(lines) == sorted(["running " + parent_pid, "queued " + parent_pid]), lines


@needs_fork
def test_fork_while_tasks_are_flowing():
    # Repeated forks while workers are busy: the child must never deadlock
    # (internal locks held at fork time) and must be able to run a new pool.
    proc = run_script(FORK_PRELUDE + """
pool = np.ThreadPool(2)
stop = threading.Event()
def feeder():
    while not stop.is_set():
        fs = [pool.submit(abs, -i) for i in range(50)]
        for f in fs:
            f.result(10)
t = threading.Thread(target=feeder)
t.start()
bad = []
for k in range(15):
    pid = os.fork()
    if pid == 0:
        try:
            with np.ThreadPool(2) as p:
                ok = sum(p.map(abs, range(100))) == 4950
            f = np.Future(); f.set_result(1)
            os._exit(0 if ok and f.result() == 1 else 1)
        except BaseException:
            os._exit(2)
    rc = wait_child(pid)
    if rc != 0:
        bad.append((k, rc))
stop.set()
t.join(30)
pool.shutdown()
print("bad", bad)
""")
    assert_clean(proc)
    assert "bad []" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------
# Ctrl-C

SIGINT_CASES = {
    "result": "f.result()",
    "result_timeout": "f.result(timeout=600)",
    "exception": "f.exception()",
    "wait": "np.wait([f])",
    "wait_first": "np.wait([f, np.Future()], return_when=np.FIRST_COMPLETED)",
    "as_completed": "next(np.as_completed([f]))",
    "as_completed_timeout": "next(np.as_completed([f], timeout=600))",
    "map": "list(pool.map(ev.wait, [600]))",
    "shutdown": "pool.shutdown(wait=True)",
    "manual_future": "np.Future().result()",
    "map_buffersize": "list(pool.map(ev.wait, [600], buffersize=1))",
    "stdlib_wait": "__import__('concurrent.futures').futures.wait([f])",
}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.nativepool_only) if "buffersize" in c else c
    for c in sorted(SIGINT_CASES)])
def test_sigint_interrupts_blocking_call(case):
    stmt = SIGINT_CASES[case]
    proc = popen_script("""
        import signal, sys, threading
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pool = np.ThreadPool(1)
        ev = threading.Event()
        f = pool.submit(ev.wait, 600)
        try:
            print("ready", flush=True)
            %s
            print("returned without interrupt", flush=True)
        except KeyboardInterrupt:
            print("caught KeyboardInterrupt", flush=True)
        finally:
            ev.set()
        # the interrupted wait left the future usable
        print("after", f.result(30), flush=True)
        pool.shutdown(wait=True)
    """ % stmt)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read())
        time.sleep(0.5)  # let the child enter the blocking call
        os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail("%s was not interrupted by SIGINT within 10 s\n%s" % (stmt, err))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "caught KeyboardInterrupt" in out, (out, err)
    assert "after True" in out, (out, err)
    assert proc.returncode == 0, (out, err)


def test_sigint_uncaught_exits_with_keyboardinterrupt():
    proc = popen_script("""
        import signal, threading
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pool = np.ThreadPool(1)
        f = pool.submit(threading.Event().wait, 3)  # worker ends by itself
        print("ready", flush=True)
        f.result()
    """)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0


SIGNAL_WAITS = {
    "result": "f.result()",
    "exception": "f.exception()",
    "wait": "np.wait([f])",
    "as_completed": "next(np.as_completed([f]))",
    "map": "next(pool.map(ev.wait, [600]))",
}


@pytest.mark.parametrize("case", sorted(SIGNAL_WAITS))
def test_signal_handler_runs_and_wait_resumes(case):
    # A Python signal handler that does not raise must run while the main
    # thread is blocked, and the blocking call must then keep waiting and
    # return the right value (PEP 475 style retry), not fail or return early.
    proc = run_script("""
        import signal, threading, time
        hits = []
        signal.signal(signal.SIGALRM, lambda *a: hits.append(time.monotonic()))
        pool = np.ThreadPool(2)
        ev = threading.Event()
        f = pool.submit(ev.wait, 600)
        def release():
            # released only once the handler has run several times
            deadline = time.monotonic() + 20
            while len(hits) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            ev.set()
        threading.Thread(target=release).start()
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        r = %s
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        import concurrent.futures as cf
        print("value", r.result() if isinstance(r, cf.Future) else r, flush=True)
        print("hits", len(hits) >= 3, flush=True)
        pool.shutdown()
    """ % SIGNAL_WAITS[case], timeout=60)
    assert_clean(proc)
    assert "hits True" in proc.stdout, proc.stdout
    out_line = [l for l in proc.stdout.splitlines() if l.startswith("value")][0]
    if case == "exception":
        assert out_line == "value None"
    elif case == "wait":
        assert "value DoneAndNotDoneFutures" in out_line
    else:
        assert out_line == "value True"


def test_signal_handler_exception_interrupts_result():
    proc = run_script("""
        import signal, threading
        class Alarm(Exception):
            pass
        def handler(*a):
            raise Alarm()
        signal.signal(signal.SIGALRM, handler)
        pool = np.ThreadPool(1)
        ev = threading.Event()
        f = pool.submit(ev.wait, 600)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            f.result()
            print("no alarm", flush=True)
        except Alarm:
            print("alarm raised", flush=True)
        ev.set()
        print("after", f.result(30), flush=True)
        pool.shutdown()
    """, timeout=60)
    assert_clean(proc)
    assert "alarm raised" in proc.stdout
    assert "after True" in proc.stdout


@needs_fork
@pytest.mark.parametrize("busy", [False, True])
def test_fork_child_normal_exit_does_not_hang(busy):
    # The child leaves through normal interpreter finalization (atexit hooks
    # join pools it inherited, whose workers do not exist in the child).
    proc = run_script(FORK_PRELUDE + """
busy = %r
pool = np.ThreadPool(1)
gate = threading.Event()
started = threading.Event()
if busy:
    pool.submit(lambda: (started.set(), gate.wait(30)))
    started.wait(10)
    pool.submit(int)          # queued behind the blocked task
else:
    pool.submit(int).result(10)
pid = os.fork()
if pid == 0:
    other = np.ThreadPool(2)
    other.submit(print, "child task", flush=True)
    sys.exit(0)
rc = wait_child(pid)
print("child rc", rc, flush=True)
gate.set()
pool.shutdown()
""" % busy)
    assert_clean(proc)
    assert "child rc 0" in proc.stdout, proc.stdout
    assert "child task" in proc.stdout


def test_daemon_thread_submitting_during_exit():
    # A daemon thread keeps submitting/waiting while the interpreter exits:
    # no crash, no hang (stdlib: submit raises RuntimeError after shutdown).
    for _ in range(3):
        proc = run_script("""
            import threading, time
            pool = np.ThreadPool(2)
            def loop():
                while True:
                    try:
                        pool.submit(abs, -1).result(5)
                    except RuntimeError:
                        return
            for _ in range(2):
                threading.Thread(target=loop, daemon=True).start()
            time.sleep(0.2)
            print("main exits", flush=True)
        """, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Fatal Python error" not in proc.stderr, proc.stderr
        assert "main exits" in proc.stdout


def test_pool_use_in_atexit_handler_does_not_hang():
    proc = run_script("""
        import atexit
        def late():
            try:
                p = np.ThreadPool(1)
                print("late", p.submit(pow, 2, 2).result(10), flush=True)
                p.shutdown()
            except RuntimeError as e:
                print("refused", e, flush=True)
        atexit.register(late)
        pool = np.ThreadPool(1)
        pool.submit(print, "normal", flush=True)
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Fatal Python error" not in proc.stderr
    assert "normal" in proc.stdout
    assert ("late 4" in proc.stdout) or ("refused" in proc.stdout)


@pytest.mark.nativepool_only
@needs_fork
def test_fork_with_map_in_progress():
    proc = run_script(FORK_PRELUDE + """
import concurrent.futures.thread as cft
pool = np.ThreadPool(1)
gate = threading.Event()
def f(x):
    if x == 1:
        gate.wait(20)
    return x
finished = pool.submit(pow, 2, 5)
finished.result(10)
it = pool.map(f, range(6), timeout=20)
assert next(it) == 0
pid = os.fork()
if pid == 0:
    code = 0
    if finished.result(1) != 32:
        code = 1
    try:
        v = next(it)
        print("child got", v, flush=True)
        code = 2
    except cft.BrokenThreadPool:
        print("child map broken", flush=True)
    except BaseException as e:
        print("child map error", repr(e), flush=True)
        code = 3
    os._exit(code)
rc = wait_child(pid)
print("child rc", rc, flush=True)
gate.set()
print("parent", list(it), flush=True)
pool.shutdown()
""")
    assert_clean(proc)
    assert "child map broken" in proc.stdout, proc.stdout
    assert "child rc 0" in proc.stdout
    assert "parent [1, 2, 3, 4, 5]" in proc.stdout
