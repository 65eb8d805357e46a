"""Ctrl-C with a ProcessPool running, as a terminal or Jupyter sends it: a
SIGINT to the whole process group (the program's workers are in it).

Each test runs a small program in a session of its own
(start_new_session=True), waits until it says READY, sends SIGINT to its
process group with os.killpg, and reads what it printed.

nativepool's workers ignore SIGINT: the parent decides what an interrupt
means.  So an idle worker prints no KeyboardInterrupt traceback (the
stdlib's all do), a ``with`` block left by Ctrl-C and a program ending on
one cancel what is pending and what is running, quietly, instead of
waiting for it; a Ctrl-C while a ``map`` waits stops that map's tasks.
What both pools share is tested on both: nothing hangs.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import HANG_TIMEOUT, np, MODULE_NAME

TESTS = os.path.dirname(os.path.abspath(__file__))

PROLOGUE = """\
import os, sys, time
sys.path.insert(0, %(tests)r)
import multiprocessing
import concurrent.futures as cf
import process_transfer_support as ts
import %(module)s as np
POOL = %(pool)s
CTX = multiprocessing.get_context(%(method)r)

def ready():
    print("READY", flush=True)

def wait_started(path):
    while not os.path.exists(path):
        time.sleep(0.01)

def ready_once_main_is_in(name):
    # READY from another thread, once the main thread waits inside the
    # function called name (so that the SIGINT lands in that wait).
    import threading
    main = threading.main_thread().ident
    def watch():
        while True:
            frame = sys._current_frames().get(main)
            while frame is not None and frame.f_code.co_name != name:
                frame = frame.f_back
            if frame is not None:
                time.sleep(0.1)   # into the wait itself (no assertion on it)
                return ready()
            time.sleep(0.01)
    threading.Thread(target=watch, daemon=True).start()
"""

POOLS = {"stdlib": "cf.ProcessPoolExecutor", "nativepool": "np.ProcessPool"}


def run(tmp_path, body, pool="nativepool", method="forkserver"):
    """Run body (under ``if __name__ == "__main__":``) in a new session;
    SIGINT to its process group once it printed READY.  (stdout, stderr,
    returncode)."""
    script = tmp_path / "prog.py"
    script.write_text(PROLOGUE % dict(tests=TESTS, module=MODULE_NAME,
                                      pool=POOLS[pool], method=method)
                      + 'STARTED = %r\n' % str(tmp_path / "started")
                      + 'if __name__ == "__main__":\n'
                      + textwrap.indent(textwrap.dedent(body), "    "))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out = []
        for line in proc.stdout:
            out.append(line)
            if line.strip() == "READY":
                break
        else:
            proc.wait(HANG_TIMEOUT)
            raise AssertionError("the program ended before READY:\n%s%s"
                                 % ("".join(out), proc.stderr.read()))
        os.killpg(proc.pid, signal.SIGINT)
        # A hang guard only: every program here ends at once.
        rest, err = proc.communicate(timeout=HANG_TIMEOUT)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    finally:
        # Whatever is left of the session (a worker that outlived it).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return "".join(out) + rest, err, proc.returncode


def assert_ended_by_the_interrupt(err, code):
    """One KeyboardInterrupt traceback: the main program's."""
    assert code == -signal.SIGINT, (code, err)
    assert err.count("KeyboardInterrupt") == 1, err
    assert err.startswith("Traceback (most recent call last):"), err


# ---- idle and running workers --------------------------------------------------

@pytest.mark.nativepool_only
@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_idle_workers_print_nothing(tmp_path, method):
    out, err, code = run(tmp_path, """
        pool = POOL(2, mp_context=CTX)
        assert [f.result() for f in [pool.submit(ts.pid) for _ in range(4)]]
        ready()
        time.sleep(600)
    """, method=method)
    assert_ended_by_the_interrupt(err, code)
    assert "Process " not in err and "_procworker" not in err, err


@pytest.mark.nativepool_only
def test_exit_after_ctrl_c_is_quiet_and_logs_only_real_errors(tmp_path):
    """A running task (cancelled quietly), a pending one, and a failed
    future nobody read, alive until module teardown: its own exception is
    logged, not a BrokenProcessPool from unpickling after teardown."""
    out, err, code = run(tmp_path, """
        pool = POOL(1, mp_context=CTX)
        failed = pool.submit(ts.fail_on, 1, [1])
        while not failed.done():
            time.sleep(0.01)
        running = pool.submit(ts.wait_long, STARTED)
        pending = pool.submit(ts.add, 1, 2)
        wait_started(STARTED)
        ready()
        time.sleep(600)
    """)
    assert code == -signal.SIGINT, (code, err)
    assert err.count("KeyboardInterrupt") == 1, err
    assert "NoneType" not in err and "BrokenProcessPool" not in err, err
    assert err.count("Future exception was never retrieved") == 1, err
    assert "never retrieved: ValueError('item 1 failed')" in err, err


def run_with_unread_failure(tmp_path, more):
    """Run a program whose pool has a failed future nobody reads, alive
    until exit, then `more` (indented for the main block); it exited 0."""
    script = tmp_path / "prog.py"
    script.write_text(PROLOGUE % dict(tests=TESTS, module=MODULE_NAME,
                                      pool=POOLS["nativepool"],
                                      method="forkserver") + textwrap.dedent("""
        if __name__ == "__main__":
            pool = POOL(1, mp_context=CTX)
            failed = pool.submit(ts.fail_on, 1, [1])
            while not failed.done():
                time.sleep(0.01)
    """) + textwrap.dedent(more).replace("\n", "\n    "))
    r = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, timeout=HANG_TIMEOUT)   # a hang guard
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.nativepool_only
def test_unread_failure_at_exit_is_the_tasks_own(tmp_path):
    """No Ctrl-C at all: a failed future nobody read, alive until module
    teardown, is logged with the task's own exception."""
    r = run_with_unread_failure(tmp_path, "")
    assert "NoneType" not in r.stderr and "BrokenProcessPool" not in r.stderr, r.stderr
    assert "never retrieved: ValueError('item 1 failed')" in r.stderr, r.stderr


@pytest.mark.nativepool_only
def test_unread_failure_is_logged_once_not_by_forked_workers(tmp_path):
    """A worker started by fork has copies of the parent's futures: its
    exit must not log them (the parent's does, once)."""
    r = run_with_unread_failure(tmp_path, """
            forked = POOL(1, mp_context=multiprocessing.get_context("fork"))
            assert forked.submit(ts.add, 1, 2).result() == 3
            forked.shutdown()
    """)
    assert r.stderr.count("never retrieved") == 1, r.stderr


# ---- nothing hangs -----------------------------------------------------------------

@pytest.mark.parametrize("pool", list(POOLS))
def test_with_block_left_by_ctrl_c_does_not_hang(tmp_path, pool):
    """__exit__ is shutdown(wait=True); a block left by Ctrl-C must not
    wait for a task that runs for minutes (the stdlib's is killed by the
    SIGINT; ours is cancelled)."""
    out, err, code = run(tmp_path, """
        with POOL(1, mp_context=CTX) as pool:
            f = pool.submit(ts.wait_long, STARTED)
            queued = pool.submit(ts.add, 1, 2)
            wait_started(STARTED)
            ready()
            time.sleep(600)
    """, pool=pool)
    assert code == -signal.SIGINT, (code, err)
    assert "KeyboardInterrupt" in err
    if pool == "nativepool":
        assert_ended_by_the_interrupt(err, code)
        assert "never retrieved" not in err, err


@pytest.mark.parametrize("pool", list(POOLS))
def test_program_ended_by_ctrl_c_does_not_wait_for_its_tasks(tmp_path, pool):
    """No ``with``: the interpreter's exit joins the pool; ended by Ctrl-C,
    it must not wait for a task that runs for minutes."""
    out, err, code = run(tmp_path, """
        pool = POOL(1, mp_context=CTX)
        f = pool.submit(ts.wait_long, STARTED)
        wait_started(STARTED)
        ready()
        f.result()
    """, pool=pool)
    assert code == -signal.SIGINT, (code, err)
    if pool == "nativepool":
        assert_ended_by_the_interrupt(err, code)
        assert "never retrieved" not in err, err


@pytest.mark.nativepool_only
def test_ctrl_c_while_the_exit_waits_stops_the_work(tmp_path):
    """A program that ends normally waits for its pool's queued work (the
    stdlib's rule); a Ctrl-C during that wait stops it, without a
    traceback from the exit hook."""
    out, err, code = run(tmp_path, """
        import threading
        pool = POOL(1, mp_context=CTX)
        f = pool.submit(ts.wait_long, STARTED)
        wait_started(STARTED)
        exiting = threading.Event()
        def announce():
            exiting.wait()
            time.sleep(0.5)   # not a timed assertion: a Ctrl-C that comes
            ready()           # sooner must do the same
        threading.Thread(target=announce, daemon=True).start()
        # Registered after nativepool's exit hook: runs before it.
        threading._register_atexit(exiting.set)
    """)
    assert code == 0, err
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert "never retrieved" not in err, err


# ---- what the parent decides --------------------------------------------------------

@pytest.mark.nativepool_only
def test_ctrl_c_in_map_stops_its_tasks_and_the_pool_goes_on(tmp_path):
    out, err, code = run(tmp_path, """
        pool = POOL(2, mp_context=CTX)
        before = {f.result() for f in [pool.submit(ts.pid) for _ in range(4)]}
        it = pool.map(ts.wait_long, [STARTED] * 6)
        wait_started(STARTED)
        ready_once_main_is_in("_take")
        try:
            for r in it:
                pass
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("after", pool.submit(ts.add, 2, 3).result(), flush=True)
        print("stats", pool._core._stats()["running"], flush=True)
        pool.shutdown()
    """)
    assert code == 0, err
    assert err == "", err
    assert "interrupted" in out and "after 5" in out, out
    assert "stats 0" in out, out


@pytest.mark.nativepool_only
def test_ctrl_c_during_result_leaves_the_task_running(tmp_path):
    """Interrupting a wait is the caller's business: the task itself goes
    on (the user holds its future, and may cancel_running it)."""
    out, err, code = run(tmp_path, """
        pool = POOL(1, mp_context=CTX)
        f = pool.submit(ts.wait_long, STARTED, 3)
        wait_started(STARTED)
        try:
            ready()
            f.result()
        except KeyboardInterrupt:
            print("interrupted", f.running(), flush=True)
        print("result", f.result(), flush=True)
        pool.shutdown()
    """)
    assert code == 0, err
    assert err == "", err
    assert "interrupted True" in out and "result finished" in out, out
