"""A task or its result that cannot cross between the parent and a worker:
pickling or unpickling it raises (an error, SystemExit, KeyboardInterrupt),
on either side.

The contract, the stdlib's (each test marked "both" runs against
concurrent.futures.ProcessPoolExecutor too):
  - an error while pickling (the task in the parent, the result in the
    worker) is the future's exception itself, pickle's own error, with
    its traceback attached as a _RemoteTraceback __cause__; submit()
    itself does not raise;
  - an error while unpickling (the task in the worker, the result in the
    parent) fails the future with BrokenProcessPool (the stdlib breaks the
    whole pool, failing every future so).
nativepool keeps the pool going: such a future fails with TransferError, a
BrokenProcessPool, whose __cause__ is the original error, and the next
task runs.  SystemExit or KeyboardInterrupt raised while (un)pickling never
comes out of result() as such: it is a TransferError's cause.
"""
import concurrent.futures as cf
import concurrent.futures.process as cfp
import gc
import multiprocessing
import pickle
import sys
import threading

import pytest

import process_transfer_support as ts
from conftest import HANG_TIMEOUT as T, np

IMPLEMENTATIONS = {"stdlib": cf.ProcessPoolExecutor, "nativepool": np.ProcessPool}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def executor_class(request):
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def make_pool(executor_class):
    made = []

    def factory(max_workers=1, **kwargs):
        kwargs.setdefault("mp_context", multiprocessing.get_context("forkserver"))
        p = executor_class(max_workers, **kwargs)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pool(make_pool):
    return make_pool()


@pytest.fixture
def nppool():
    p = np.ProcessPool(1, mp_context=multiprocessing.get_context("forkserver"))
    yield p
    p.shutdown(wait=True, cancel_futures=True)


def is_nativepool(pool):
    return isinstance(pool, np.ProcessPool)


def assert_survives(pool):
    """nativepool's pool goes on after a transfer failure."""
    if is_nativepool(pool):
        assert pool.submit(ts.add, 1, 2).result(T) == 3


def assert_broken(f):
    """Both pools: the future fails with a BrokenProcessPool, from
    exception() and from result(); returns the exception."""
    exc = f.exception(T)
    assert isinstance(exc, cfp.BrokenProcessPool), repr(exc)
    with pytest.raises(cfp.BrokenProcessPool):
        f.result(T)
    return exc


def assert_transfer_error(exc, cause_type):
    """nativepool's side of the contract: TransferError, the original
    error as its __cause__."""
    assert type(exc) is np.TransferError, repr(exc)
    assert isinstance(exc.__cause__, cause_type), repr(exc.__cause__)
    assert cause_type.__name__ in str(exc)


def test_transfer_error_is_public_and_a_broken_process_pool():
    assert np.TransferError is np._process.TransferError
    assert "TransferError" in np.__all__
    assert issubclass(np.TransferError, cfp.BrokenProcessPool)
    assert "TransferError" in np.__doc__


# ---- unpickling a task in the worker --------------------------------------------------

@pytest.mark.parametrize("arg, cause", [
    (ts.FailsToUnpickle(), pickle.UnpicklingError),
    (ts.ExitsWhenUnpickled(), SystemExit),
], ids=["error", "sys.exit"])
def test_argument_the_worker_cannot_unpickle(pool, arg, cause):    # both
    f = pool.submit(ts.identity, arg)
    exc = assert_broken(f)
    if is_nativepool(pool):
        assert_transfer_error(exc, cause)
        # The cause comes from the worker, with its traceback.
        assert isinstance(exc.__cause__.__cause__, cfp._RemoteTraceback)
        assert "_procworker" in str(exc.__cause__.__cause__)
    assert_survives(pool)


def test_keyboard_interrupt_unpickling_an_argument(nppool):
    exc = nppool.submit(ts.identity, ts.InterruptsWhenUnpickled()).exception(T)
    assert_transfer_error(exc, KeyboardInterrupt)
    assert_survives(nppool)


# ---- unpickling a result in the parent ---------------------------------------------

@pytest.mark.parametrize("kind, cause", [
    ("FailsToUnpickle", pickle.UnpicklingError),
    ("ExitsWhenUnpickled", SystemExit),
    ("InterruptsWhenUnpickled", KeyboardInterrupt),
], ids=["error", "sys.exit", "KeyboardInterrupt"])
def test_result_the_parent_cannot_unpickle(pool, kind, cause):     # both
    f = pool.submit(ts.make, kind)
    exc = assert_broken(f)
    if is_nativepool(pool):
        assert_transfer_error(exc, cause)
        assert "could not be unpickled in the parent process" in str(exc)
    assert_survives(pool)


def test_unpickling_error_keeps_no_view_of_freed_memory(nppool):
    """The reply is unpickled from a view of memory that is freed right
    after: the frames of the unpickling error's traceback (reachable from
    the future's exception) must not keep a usable view of it."""
    exc = nppool.submit(ts.make, "FailsToUnpickle").exception(T)
    views = []
    seen = set()
    e = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            views += [v for v in tb.tb_frame.f_locals.values()
                      if isinstance(v, memoryview)]
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    assert views, "the test no longer reaches the unpickler's frames"
    for v in views:
        with pytest.raises(ValueError, match="released"):
            v.nbytes


# ---- pickling a result in the worker -------------------------------------------------

def test_system_exit_pickling_a_result(nppool):
    # The stdlib's future raises the SystemExit itself.
    f = nppool.submit(ts.make, "ExitsWhenPickled")
    exc = f.exception(T)
    assert_transfer_error(exc, SystemExit)
    assert "could not be pickled in the worker process" in str(exc)
    with pytest.raises(np.TransferError):
        f.result(T)
    assert_survives(nppool)


# ---- pickling a task in the parent -------------------------------------------------

_LAMBDA = lambda: 0   # noqa: E731 (a module-level lambda: PicklingError)


def _local_function():
    def inner():
        pass
    return inner


def pickle_error(obj):
    try:
        pickle.dumps(obj)
    except Exception as exc:
        return exc
    raise AssertionError("%r pickles" % (obj,))


@pytest.mark.parametrize("make_arg", [
    lambda: _LAMBDA,
    _local_function,
    threading.Lock,
], ids=["lambda", "local-function", "lock"])
@pytest.mark.parametrize("where", ["fn", "arg"])
def test_task_the_parent_cannot_pickle(pool, monkeypatch, make_arg, where):  # both
    """The stdlib (3.9 to 3.13) pickles in its feeder thread and fails the
    future with pickle's own error (PicklingError, AttributeError for a
    local object before 3.14, TypeError), its traceback as a
    _RemoteTraceback __cause__; submit() does not raise.  (nativepool
    sends lambdas by value when cloudpickle is installed: not here.)"""
    monkeypatch.setattr(np._pickling, "_cloudpickle", None)
    obj = make_arg()
    expected = pickle_error(obj)
    if where == "fn" and callable(obj):
        f = pool.submit(obj)
    else:
        f = pool.submit(ts.identity, obj)
    exc = f.exception(T)
    assert isinstance(exc, type(expected)), (exc, expected)
    assert not isinstance(exc, cfp.BrokenProcessPool)
    assert isinstance(exc.__cause__, cfp._RemoteTraceback)
    assert pool.submit(ts.add, 1, 2).result(T) == 3


def test_system_exit_pickling_a_task_propagates_from_submit(nppool):
    # Pickling runs in the caller's thread, in submit(): SystemExit or a
    # Ctrl-C there is the caller's (the stdlib's feeder thread would die of
    # it, and the future never finish).
    with pytest.raises(SystemExit):
        nppool.submit(ts.identity, ts.ExitsWhenPickled())
    assert_survives(nppool)


def test_transfer_error_pickles_with_its_cause():
    err = np.TransferError("boom")
    try:
        raise ValueError("the cause")
    except ValueError as exc:
        err.__cause__ = exc
    got = pickle.loads(pickle.dumps(err))
    assert type(got) is np.TransferError and got.args == ("boom",)
    assert type(got.__cause__) is ValueError
    assert "the cause" in str(got.__cause__.__cause__)   # its traceback, as text
    plain = pickle.loads(pickle.dumps(np.TransferError("alone")))
    assert plain.args == ("alone",) and plain.__cause__ is None


def test_reply_that_cannot_be_pickled_at_all_still_fails_its_future(nppool):
    """A KeyboardInterrupt (carrying a lock) raised while pickling the
    result: the TransferError for it cannot be pickled either; the worker
    sends one with the text of what happened, and goes on."""
    f = nppool.submit(ts.make, "InterruptsWithALockWhenPickled")
    exc = f.exception(T)
    assert type(exc) is np.TransferError
    assert "KeyboardInterrupt" in str(exc) and "_thread.lock" in str(exc)
    assert_survives(nppool)
