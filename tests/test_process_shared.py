"""Large buffers between a ProcessPool and its workers: pickle protocol 5
buffers of at least OOB_MIN bytes (numpy arrays, large bytes and bytearray
arguments and results) cross in shared memory (python/nativepool/_shared.py).

What arrives must be what the stdlib's pool delivers (type, value, dtype,
order, writability), so those tests run on both pools; the mechanism (the
buffers really leave the pickle, no memfd outlives its task whatever
happens) is nativepool's own.  The ``pools`` fixture fails a test that
leaves a worker process or a channel or buffer memfd behind."""
import concurrent.futures as cf
import gc
import multiprocessing
import os
import pickle
import sys

import pytest

import process_support as ps
from conftest import HANG_TIMEOUT as T, np
from process_leftovers import pools, segment_fds, wait_until_true  # noqa: F401

numpy = pytest.importorskip("numpy")

from nativepool import _shared, _pickling  # noqa: E402

BIG = 3 * _pickling.OOB_MIN + 17      # out of band
SMALL = _pickling.OOB_MIN // 4        # in band


def big_array(n=BIG // 8, order="C"):
    return ps.make_array(n - n % 2, order)


def arguments():
    """(id, args, kwargs) of large (and mixed) arguments."""
    ro = big_array()
    ro.flags.writeable = False
    return [
        ("bytes", (ps.sized(BIG),), {}),
        ("bytearray", (bytearray(ps.sized(BIG)),), {}),
        ("kwarg-bytes", (), {"data": ps.sized(BIG)}),
        ("array-C", (big_array(),), {}),
        ("array-F", (big_array(order="F"),), {}),
        ("array-readonly", (ro,), {}),
        ("array-strided", (big_array()[:, ::2],), {}),
        ("array-float32", (numpy.ones(BIG, dtype=numpy.float32),), {}),
        ("nested", ([ps.sized(BIG), {"a": big_array()}],), {"k": big_array()}),
        ("many", tuple(big_array() for _ in range(5)) + (ps.sized(SMALL), 3),
         {"small": ps.sized(SMALL)}),
        ("small", (ps.sized(SMALL), numpy.ones(8)), {}),
    ]


ARGS = arguments()


@pytest.fixture(scope="module")
def reference():
    """The stdlib pool, the reference for what arrives."""
    with cf.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("forkserver")) as p:
        yield p


@pytest.mark.parametrize("name, args, kwargs", ARGS, ids=[a[0] for a in ARGS])
def test_large_arguments_arrive_as_in_the_stdlib(pools, reference, name, args, kwargs):
    expected = reference.submit(ps.describe_call, *args, **kwargs).result(T)
    if name == "array-readonly" and sys.version_info < (3, 14):
        # Protocol 5 keeps a read-only array read-only; the stdlib pickles
        # with protocol 4 before 3.14, which makes a writable copy.
        (kind, desc), kw = expected
        expected = (kind, desc[:5] + (False,) + desc[6:]), kw
    p = pools(1)
    assert p.submit(ps.describe_call, *args, **kwargs).result(T) == expected
    assert p.schedule(ps.describe_call, args, kwargs, timeout=T).result(T) == expected


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "array", "nested"])
def test_large_results_arrive_as_in_the_stdlib(pools, reference, kind):
    expected = ps.describe(reference.submit(ps.make_result, kind, BIG).result(T))
    p = pools(2)
    fs = [p.submit(ps.make_result, kind, BIG) for _ in range(4)]
    for f in fs:
        assert ps.describe(f.result(T)) == expected
    assert expected == ps.describe(ps.make_result(kind, BIG))


def test_a_large_result_can_be_read_twice(pools):
    p = pools(1)
    f = p.submit(ps.make_result, "array", BIG)
    first = f.result(T)
    assert f.result(T) is first


def test_large_buffers_leave_the_pickle():
    """The mechanism itself: the message is small, the buffers are memfds."""
    a, b = big_array(), ps.sized(BIG)
    payload, fds = _shared.encode_task(ps.describe_call, (a, b), {"k": b})
    try:
        assert len(payload) < 1024
        assert payload[0] == _shared.MARK
        assert len(fds) == 3
        assert sorted(os.fstat(fd).st_size for fd in fds) == sorted(
            [a.nbytes, len(b), len(b)])
        # The worker's side, here: opens /proc/<pid>/fd/<fd> of this process.
        fn, args, kwargs = _shared.load(memoryview(payload))
        assert ps.describe(args) == ps.describe((a, b))
        assert kwargs["k"] == b and type(kwargs["k"]) is bytes
        assert args[0].flags.writeable
    finally:
        for fd in fds:
            os.close(fd)
    small, none = _shared.encode_task(ps.describe_call, (ps.sized(SMALL),), {})
    assert none is None and small[0] == pickle.PROTO[0]
    plain, none = _shared.encode_task(ps.describe_call, (b,), {}, shared=False)
    assert none is None and len(plain) > BIG


def test_a_large_result_leaves_the_pickle():
    data, fds = _shared.encode_result(big_array())
    try:
        assert len(data) < 1024 and len(fds) == 1
        got = _shared.load(memoryview(data), fds)
        assert ps.describe(got) == ps.describe(big_array())
    finally:
        os.close(fds[0])


def test_lost_result_buffers_fail_that_future_only():
    """A result whose buffers could not be opened (the worker was killed
    between its reply and the collector's open): BrokenProcessPool for
    that future, like any reply the parent cannot load."""
    data, fds = _shared.encode_result(big_array())
    os.close(fds[0])
    from nativepool._process import _load_reply
    with pytest.raises(cf.process.BrokenProcessPool, match="lost"):
        _load_reply(memoryview(data), (-1,))


def test_worker_writes_to_an_array_stay_private(pools):
    a = big_array()
    p = pools(1)
    assert p.submit(ps.write_first, a, -5.0).result(T) == -5.0
    assert a.flat[0] == 0.0


def test_no_shared_buffers_setting(pools, monkeypatch):
    monkeypatch.setenv("NATIVEPOOL_NO_SHARED_BUFFERS", "1")
    p = pools(1)
    assert not p._shared
    args = ARGS[-3][1:]
    assert p.submit(ps.describe_call, *args[0], **args[1]).result(T) == \
        ps.describe_call(*args[0], **args[1])
    assert ps.describe(p.submit(ps.make_result, "nested", BIG).result(T)) == \
        ps.describe(ps.make_result("nested", BIG))


# ---- no buffer outlives its task ------------------------------------------------

def test_buffers_are_closed_once_answered(pools):
    p = pools(2)
    fs = [p.submit(ps.describe, big_array()) for _ in range(6)]
    cf.wait(fs, T)
    # (closed by the collector just after it finishes the future)
    assert wait_until_true(lambda: segment_fds_of_buffers() == 0)
    # Results: held by their futures until read or dropped.
    rs = [p.submit(ps.make_result, "array", BIG) for _ in range(4)]
    cf.wait(rs, T)
    assert ps.describe(rs[0].result()) == ps.describe(big_array())
    assert segment_fds_of_buffers() == 4   # 3 unread, 1 mapped by its array
    del rs, fs

    def released():
        # The collector drops its references to finished futures without
        # the GIL, deferred to the next pool call that holds it (a submit);
        # its last drop may come just after one.
        assert p.submit(ps.add, 1, 2).result(T) == 3
        gc.collect()
        return segment_fds_of_buffers() == 0
    assert wait_until_true(released)


def segment_fds_of_buffers():
    return sum("nativepool-buffer" in link for link in segment_fds().values())


def test_worker_death_with_large_argument(pools, tmp_path):
    p = pools(1)
    f = p.submit(ps.die_with, big_array())
    with pytest.raises(np.WorkerDiedError):
        f.result(T)
    assert segment_fds_of_buffers() == 0
    assert p.submit(ps.describe, ps.sized(BIG)).result(T) == ps.describe(ps.sized(BIG))


def test_cancelled_and_abandoned_tasks_close_their_buffers(pools, tmp_path):
    gate = str(tmp_path / "gate")
    p = pools(1)
    running = p.submit(ps.gated_describe, gate, big_array())
    pending = [p.submit(ps.describe, big_array()) for _ in range(3)]
    assert segment_fds_of_buffers() == 4
    assert pending[0].cancel()
    assert wait_until_true(lambda: running.running())
    p.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in pending)
    ps.touch(gate)
    assert running.result(T) == ps.describe(big_array())
    p.shutdown(wait=True)
    assert segment_fds_of_buffers() == 0


def test_timeout_and_cancel_running_close_their_buffers(pools, tmp_path):
    p = pools(1)
    f = p.schedule(ps.gated_describe, (str(tmp_path / "never"), big_array()),
                   timeout=0.5)
    with pytest.raises(np.TimeoutError):   # not the builtin one before 3.11
        f.result(T)
    g = p.submit(ps.gated_describe, str(tmp_path / "never"), big_array())
    assert wait_until_true(lambda: g.running())
    assert p.cancel_running(g)
    with pytest.raises(cf.CancelledError):
        g.result(T)
    assert segment_fds_of_buffers() == 0
    assert p.submit(ps.add, 1, 2).result(T) == 3


def test_unpicklable_argument_with_a_large_buffer(pools):
    import threading
    p = pools(1)
    f = p.submit(ps.describe_call, big_array(), threading.Lock())
    with pytest.raises(TypeError):
        f.result(T)
    assert segment_fds_of_buffers() == 0


def test_retiring_workers_deliver_large_results(pools):
    p = pools(2, max_tasks_per_child=1)
    fs = [p.submit(ps.make_result, "nested", BIG) for _ in range(6)]
    expected = ps.describe(ps.make_result("nested", BIG))
    assert [ps.describe(f.result(T)) for f in fs] == [expected] * 6


def test_forked_worker_drops_inherited_buffers(pools, tmp_path):
    """A worker started by fork while another task's buffer is open in the
    parent must not keep that buffer alive."""
    gate = str(tmp_path / "gate")
    started = str(tmp_path / "started")
    p = pools(2, method="fork")
    first = p.submit(ps.gated_describe, gate, big_array(), started)
    assert wait_until_true(lambda: os.path.exists(started))
    assert segment_fds_of_buffers() == 1
    # The second worker is forked now, the first task's memfd open here.
    assert p.submit(ps.buffer_fds).result(T) == 0
    ps.touch(gate)
    first.result(T)
