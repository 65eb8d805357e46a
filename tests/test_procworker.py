"""nativepool._procworker: the worker process loop the ProcessPool will drive
(private).  Each test starts a real worker with multiprocessing and speaks
the wire format to it by hand, through a _Channel."""
import multiprocessing
import os
import pickle
import signal

import pytest

from conftest import np, HANG_TIMEOUT

pytestmark = pytest.mark.nativepool_only

pw = pytest.importorskip("nativepool._procworker")
Channel = np._nativepool._Channel


class Boom(Exception):
    pass


def boom(msg):
    raise Boom(msg)


def add(a, b=0):
    return a + b


def unpicklable_result():
    return lambda: None


def die(code):
    os._exit(code)


def crash():
    os.kill(os.getpid(), signal.SIGKILL)


def pid():
    return os.getpid()


def init_fails():
    raise ValueError("bad init")


_initialized = []


def init_records(tag):
    _initialized.append(tag)


def initialized():
    return list(_initialized)


class Worker:
    def __init__(self, method="spawn", **kwargs):
        ctx = multiprocessing.get_context(method)
        self.ch = Channel.create()
        self.proc = ctx.Process(target=pw.main,
                                args=(pw.ChildFds(self.ch.child_fds()),),
                                kwargs=kwargs)
        self.proc.start()
        self.ch.child_started(self.proc.pid)

    def call(self, task_id, fn, *args, **kwargs):
        self.ch.send(pw.encode_task(task_id, fn, args, kwargs))
        return pw.decode_reply(self.ch.recv(timeout=HANG_TIMEOUT))

    def stop(self):
        if not self.ch.closed:
            try:
                self.ch.send(b"")
            except (BrokenPipeError, ValueError):
                pass
        self.proc.join(HANG_TIMEOUT)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        if not self.ch.closed:
            self.ch.close()


@pytest.fixture(params=["spawn", "forkserver", "fork"])
def worker(request):
    w = Worker(request.param)
    yield w
    w.stop()


def test_results_and_ids(worker):
    assert worker.call(7, add, 2, b=3) == (7, pw.OK, 5)
    assert worker.call(8, add, "a", "b") == (8, pw.OK, "ab")
    worker.stop()
    assert worker.proc.exitcode == 0


def test_exception_keeps_remote_traceback(worker):
    task_id, status, exc = worker.call(1, boom, "no")
    assert (task_id, status) == (1, pw.ERROR)
    assert isinstance(exc, Boom) and exc.args == ("no",)
    assert "raise Boom(msg)" in str(exc.__cause__)      # _RemoteTraceback
    assert worker.call(2, add, 1, 1) == (2, pw.OK, 2)    # the worker goes on


def test_unpicklable_result_fails_only_that_task(worker):
    task_id, status, exc = worker.call(3, unpicklable_result)
    assert (task_id, status) == (3, pw.ERROR)
    assert isinstance(exc, (pickle.PicklingError, AttributeError, TypeError))
    assert worker.call(4, add, 2) == (4, pw.OK, 2)


def test_task_that_cannot_be_unpickled_fails_only_itself(worker):
    # A payload the worker cannot load (a module it cannot import).
    payload = pw._ID.pack(5) + b"\x80\x05cno_such_module_xyz\nf\n."
    worker.ch.send(payload)
    task_id, status, exc = pw.decode_reply(worker.ch.recv(timeout=HANG_TIMEOUT))
    assert (task_id, status) == (5, pw.ERROR)
    # Not the task's own failure: a TransferError (a BrokenProcessPool, as
    # the stdlib raises), the unpickling error as its cause.
    assert type(exc) is np.TransferError
    assert isinstance(exc.__cause__, ModuleNotFoundError)
    assert worker.call(6, add, 3) == (6, pw.OK, 3)


@pytest.mark.parametrize("fn, args, code", [(die, (7,), 7), (crash, (), -signal.SIGKILL)])
def test_worker_death_is_eof_for_the_parent(worker, fn, args, code):
    worker.ch.send(pw.encode_task(1, fn, args))
    with pytest.raises(EOFError):
        worker.ch.recv(timeout=HANG_TIMEOUT)
    worker.proc.join(HANG_TIMEOUT)
    assert worker.proc.exitcode == code


def test_max_tasks_retires_the_worker():
    w = Worker(max_tasks=2)
    try:
        assert w.call(1, add, 1)[1] == pw.OK
        assert w.call(2, add, 2)[1] == pw.OK
        assert pw.decode_reply(w.ch.recv(timeout=HANG_TIMEOUT)) == (-1, pw.RETIRED, 2)
        w.proc.join(HANG_TIMEOUT)
        assert w.proc.exitcode == 0
    finally:
        w.stop()


def test_initializer_runs_first():
    w = Worker(initializer=init_records, initargs=("x",))
    try:
        assert w.call(1, initialized) == (1, pw.OK, ["x"])
    finally:
        w.stop()


def test_initializer_failure_is_reported():
    w = Worker(initializer=init_fails)
    try:
        task_id, status, exc = pw.decode_reply(w.ch.recv(timeout=HANG_TIMEOUT))
        assert (task_id, status) == (-1, pw.INIT_FAILED)
        assert isinstance(exc, ValueError)
        w.proc.join(HANG_TIMEOUT)
        assert w.proc.exitcode == 1
    finally:
        w.stop()


def test_parent_closing_the_channel_ends_the_worker(worker):
    assert worker.call(1, pid)[2] == worker.proc.pid
    worker.ch.close()
    worker.proc.join(HANG_TIMEOUT)
    assert worker.proc.exitcode == 0
