"""nativepool.native: sleep, argument conversion errors, direct calls.

Argument conversion errors (wrong counts, unexpected/duplicate keywords,
positional-only parameters by keyword, non-buffers, read-only or
non-contiguous buffers, out-of-range ints) must be clean exceptions: at call
time, raised synchronously by ThreadPool.submit, and by ThreadPool.map when
iterating to that item (in order).  A direct call releases the GIL, and a
direct native.sleep() is interrupted by Ctrl-C.
"""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import zlib

import pytest

from conftest import popen_script, HANG_TIMEOUT
from native_support import get_native, sum_squares_formula, outcome

native = get_native()

pytestmark = pytest.mark.nativepool_only

# NP_SUM_SQUARES_MAX (checked in test_native.py).
SUM_SQUARES_MAX = 10069012961345

DATA = b"".join(b"line %d: the quick brown fox %d\n" % (i, i * i % 97)
                for i in range(600))
COMP = zlib.compress(DATA)


def assert_same_outcome(native_call, std_call):
    assert outcome(native_call) == outcome(std_call)


# --------------------------------------------------------------------------
# sleep

def test_sleep_sleeps():
    t0 = time.monotonic()
    assert native.sleep(0.2) is None
    elapsed = time.monotonic() - t0
    assert 0.19 <= elapsed < 10
    t0 = time.monotonic()
    native.sleep(0)
    native.sleep(0.0)
    native.sleep(-0.0)
    native.sleep(False)
    assert time.monotonic() - t0 < 10


def test_sleep_int_seconds():
    t0 = time.monotonic()
    native.sleep(1)
    assert 0.99 <= time.monotonic() - t0 < 15


@pytest.mark.parametrize("bad", [-1, -0.001, -(10**30), float("-inf")])
def test_sleep_negative(bad):
    with pytest.raises(ValueError) as info:
        native.sleep(bad)
    assert str(info.value) == "sleep length must be non-negative"
    if bad > -1e9:   # time.sleep says OverflowError for huge negatives
        assert_same_outcome(lambda: native.sleep(bad), lambda: time.sleep(bad))


def test_sleep_nan():
    with pytest.raises(ValueError):
        native.sleep(float("nan"))
    assert outcome(native.sleep, float("nan"))[0] is outcome(time.sleep, float("nan"))[0]


@pytest.mark.parametrize("bad", ["1", None, b"1", [1], 1j])
def test_sleep_type_error(bad):
    with pytest.raises(TypeError):
        native.sleep(bad)


def test_sleep_number_types_like_time_sleep():
    import decimal
    import fractions
    values = [fractions.Fraction(1, 1000), decimal.Decimal("0.001"), 0.001, 0, True]
    try:
        import numpy
        values += [numpy.float64(0.001), numpy.int64(0), numpy.float32(0.001)]
    except ImportError:
        pass
    for v in values:
        if sys.version_info < (3, 10) and not isinstance(v, (int, float)):
            continue   # 3.9 still took these through the deprecated __int__
        got, want = outcome(native.sleep, v), outcome(time.sleep, v)
        assert got[0] == want[0], (v, got, want)


@pytest.mark.parametrize("huge", [float("inf"), 1e300, 10**30])
def test_sleep_too_long_is_overflow(huge):
    t0 = time.monotonic()
    with pytest.raises(OverflowError):
        native.sleep(huge)
    with pytest.raises(OverflowError):
        time.sleep(huge)
    assert time.monotonic() - t0 < 5


def test_sleep_keeps_its_deadline_across_signal_handlers():
    # A handler that returns normally must not cut the sleep short nor
    # stretch it (PEP 475: the remaining time is recomputed).
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.03, 0.03)
        t0 = time.monotonic()
        native.sleep(0.4)
        elapsed = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits, "the timer never fired"
    assert 0.39 <= elapsed < 10


def test_sleep_exception_from_signal_handler_interrupts():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")

    class Stop(Exception):
        pass

    def handler(*a):
        raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(Stop):
            native.sleep(20)
        assert time.monotonic() - t0 < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------
# argument conversion errors: direct call, submit and map

@pytest.fixture(scope="module")
def some_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("native") / "some_file"
    p.write_bytes(b"0123456789" * 10)
    return str(p)


def _noncontiguous_numpy():
    numpy = pytest.importorskip("numpy")
    return numpy.zeros((8, 8), dtype=numpy.uint8)[:, 0]


def _readonly_numpy():
    numpy = pytest.importorskip("numpy")
    a = numpy.zeros(8, dtype=numpy.uint8)
    a.flags.writeable = False
    return a


FILE = object()      # placeholder for the some_file fixture's path

# (id, function name, args, kwargs, exception class, good positional args of
# the same arity for map, or None when the case cannot go through map)
BAD_CALLS = [
    ("no-args", "crc32", (), {}, TypeError, None),
    ("too-many", "crc32", (b"", 1, 2), {}, TypeError, None),
    ("too-many-sleep", "sleep", (0, 0), {}, TypeError, None),
    ("missing-buffer", "read_into", (FILE,), {}, TypeError, None),
    ("posonly-as-keyword", "crc32", (), {"data": b"x"}, TypeError, None),
    ("posonly-value-keyword", "crc32", (b"x",), {"value": 1}, TypeError, None),
    ("posonly-seconds", "sleep", (), {"seconds": 0}, TypeError, None),
    ("unexpected-keyword", "compress", (b"x",), {"bogus": 1}, TypeError, None),
    ("duplicate-keyword", "compress", (b"x", 1), {"level": 2}, TypeError, None),
    ("duplicate-wbits", "decompress", (b"x", 15), {"wbits": 15}, TypeError, None),
    ("str-for-buffer", "crc32", ("text",), {}, TypeError, (b"ok",)),
    ("none-for-buffer", "sha256", (None,), {}, TypeError, (b"ok",)),
    ("int-for-buffer", "compress", (5,), {}, TypeError, (b"ok",)),
    ("bytes-to-writable", "read_into", (FILE, b"readonly"), {}, TypeError,
     (FILE, bytearray(4))),
    ("readonly-memoryview", "read_into", (FILE, memoryview(b"ro")), {}, TypeError,
     (FILE, bytearray(4))),
    ("strided-memoryview", "read_into", (FILE, memoryview(bytearray(16))[::2]), {},
     TypeError, (FILE, bytearray(4))),
    ("strided-memoryview-read", "crc32", (memoryview(b"abcdefgh")[::2],), {},
     TypeError, (b"ok",)),
    ("noncontiguous-numpy", "crc32", ("NONCONTIG",), {}, TypeError, (b"ok",)),
    ("noncontiguous-numpy-write", "read_into", (FILE, "NONCONTIG"), {}, TypeError,
     (FILE, bytearray(4))),
    ("readonly-numpy", "read_into", (FILE, "READONLY"), {}, TypeError,
     (FILE, bytearray(4))),
    ("float-for-int", "sum_squares", (1.5,), {}, TypeError, (3,)),
    ("str-for-int", "crc32", (b"x", "1"), {}, TypeError, (b"x", 1)),
    ("int64-overflow", "sum_squares", (2**63,), {}, OverflowError, (3,)),
    ("int64-underflow", "sum_squares", (-(2**63) - 1,), {}, OverflowError, (3,)),
    ("sum-squares-max", "sum_squares", (SUM_SQUARES_MAX + 1,), {}, OverflowError, (3,)),
    ("cint-overflow", "compress", (b"x", 2**31), {}, OverflowError, (b"x", 1)),
    ("offset-overflow", "read_into", (FILE, bytearray(2), 2**64), {}, OverflowError,
     (FILE, bytearray(2), 0)),
    ("offset-negative", "read_into", (FILE, bytearray(2), -1), {}, ValueError,
     (FILE, bytearray(2), 0)),
    ("bufsize-negative", "decompress", (b"x", 15, -1), {}, ValueError,
     (COMP, 15, 1)),
    ("sleep-negative", "sleep", (-1,), {}, ValueError, (0,)),
    ("sleep-nan", "sleep", (float("nan"),), {}, ValueError, (0,)),
    ("sleep-str", "sleep", ("1",), {}, TypeError, (0,)),
    ("path-int", "read_file", (7,), {}, TypeError, (FILE,)),
    ("path-nul", "read_file", ("a\0b",), {}, ValueError, (FILE,)),
]


def _resolve(args, some_file):
    out = []
    for a in args:
        if a is FILE:
            a = some_file
        elif isinstance(a, str) and a == "NONCONTIG":
            a = _noncontiguous_numpy()
        elif isinstance(a, str) and a == "READONLY":
            a = _readonly_numpy()
        out.append(a)
    return tuple(out)


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_direct(case, some_file):
    _, name, args, kwargs, exc, _good = case
    fn = getattr(native, name)
    with pytest.raises(exc) as info:
        fn(*_resolve(args, some_file), **kwargs)
    assert type(info.value) is exc
    if exc is TypeError and not case[0].startswith(("posonly", "path")):
        assert name in str(info.value)


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_submit_raises_synchronously(case, some_file, pool):
    _, name, args, kwargs, exc, _good = case
    fn = getattr(native, name)
    with pytest.raises(exc):
        pool.submit(fn, *_resolve(args, some_file), **kwargs)
    # The pool is unharmed.
    assert pool.submit(native.crc32, b"abc").result(HANG_TIMEOUT) == zlib.crc32(b"abc")


MAP_CASES = [c for c in BAD_CALLS if c[5] is not None]


@pytest.mark.parametrize("buffersize", [None, 1])
@pytest.mark.parametrize("case", MAP_CASES, ids=[c[0] for c in MAP_CASES])
def test_bad_call_map_fails_its_item_in_order(case, some_file, pool, buffersize):
    _, name, args, _kwargs, exc, good = case
    fn = getattr(native, name)
    items = [_resolve(good, some_file), _resolve(good, some_file),
             _resolve(args, some_file), _resolve(good, some_file)]
    want_good = fn(*items[0])
    kw = {} if buffersize is None else {"buffersize": buffersize}
    it = pool.map(fn, *zip(*items), **kw)
    assert next(it) == want_good
    assert next(it) == want_good
    with pytest.raises(exc):
        next(it)
    # As with the stdlib's map, the iterator is finished after an error.
    assert list(it) == []
    assert pool.submit(native.crc32, b"abc").result(HANG_TIMEOUT) == zlib.crc32(b"abc")


def test_bad_call_map_other_items_complete(pool):
    # Items after a bad one were submitted too and ran (eager map): their
    # results are right when mapped again without the bad one, and the bad
    # one does not disturb a fresh map on the same pool.
    items = [b"a", b"bb", "bad", b"ccc", b"dddd"]
    it = pool.map(native.crc32, items)
    assert [next(it), next(it)] == [zlib.crc32(b"a"), zlib.crc32(b"bb")]
    with pytest.raises(TypeError):
        next(it)
    good = [x for x in items if isinstance(x, bytes)]
    assert list(pool.map(native.crc32, good)) == [zlib.crc32(x) for x in good]


def test_map_arity_errors(pool):
    with pytest.raises(TypeError):
        list(pool.map(native.crc32, [b"a"], [0], [1]))
    with pytest.raises(TypeError):
        list(pool.map(native.read_into, ["x"]))


def test_readonly_buffer_message_is_clean(some_file):
    with pytest.raises(TypeError) as info:
        native.read_into(some_file, b"readonly")
    msg = str(info.value)
    assert "read_into()" in msg and "buffer" in msg and "read-only" in msg
    assert ";," not in msg, msg


def test_error_messages_name_function_and_argument(some_file):
    with pytest.raises(TypeError, match=r"crc32\(\).*'data'.*str"):
        native.crc32("text")
    with pytest.raises(OverflowError, match=r"sum_squares\(\).*'n'"):
        native.sum_squares(2**64)
    with pytest.raises(TypeError, match=r"compress\(\) got an unexpected keyword argument 'bogus'"):
        native.compress(b"", bogus=1)
    with pytest.raises(TypeError, match=r"compress\(\) got multiple values for argument 'level'"):
        native.compress(b"", 1, level=1)
    with pytest.raises(TypeError, match=r"crc32\(\) takes .*2 arguments \(3 given\)"):
        native.crc32(b"", 1, 2)


def test_argument_conversion_runs_python_code_safely():
    # __index__ and buffer exports run Python code during conversion; an
    # exception from there propagates cleanly.
    class BadIndex:
        def __index__(self):
            raise ZeroDivisionError("from __index__")
    with pytest.raises(ZeroDivisionError):
        native.sum_squares(BadIndex())
    with pytest.raises(ZeroDivisionError):
        native.crc32(b"x", BadIndex())


# --------------------------------------------------------------------------
# direct calls release the GIL; Ctrl-C

def _calibrated_n(seconds):
    """n such that sum_squares(n) takes about `seconds` here."""
    n = 2_000_000
    while True:
        t0 = time.perf_counter()
        native.sum_squares(n)
        dt = time.perf_counter() - t0
        if dt > 0.01 or n >= 2**33:
            break
        n *= 4
    return min(int(n * seconds / dt), SUM_SQUARES_MAX)


def test_direct_call_releases_gil():
    n = _calibrated_n(0.2)
    state = {"count": 0, "stop": False}
    started = threading.Event()

    def spin():
        started.set()
        while not state["stop"]:
            state["count"] += 1

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    started.wait(HANG_TIMEOUT)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        before = state["count"]
        result = native.sum_squares(n)
        during = state["count"] - before
    finally:
        state["stop"] = True
        sys.setswitchinterval(old)
        t.join(HANG_TIMEOUT)
    assert result == sum_squares_formula(n)
    assert during > 1000, "the Python thread did not run during the call (%d)" % during


def test_direct_sleep_releases_gil():
    state = {"count": 0, "stop": False}

    def spin():
        while not state["stop"]:
            state["count"] += 1

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        native.sleep(0.01)
        before = state["count"]
        native.sleep(0.2)
        during = state["count"] - before
    finally:
        state["stop"] = True
        t.join(HANG_TIMEOUT)
    assert during > 1000


def test_direct_calls_from_many_threads():
    errors = []
    want = hashlib.sha256(DATA).digest()

    def work():
        try:
            for _ in range(50):
                assert native.sha256(DATA) == want
                assert native.decompress(native.compress(DATA)) == DATA
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT)
    assert not errors


def test_ctrl_c_interrupts_direct_sleep():
    proc = popen_script("""
        import signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        native = np.native
        t0 = time.monotonic()
        try:
            print("ready", flush=True)
            native.sleep(30)
            print("not interrupted", flush=True)
        except KeyboardInterrupt:
            print("KeyboardInterrupt after %.3f" % (time.monotonic() - t0), flush=True)
        # the module is still usable
        native.sleep(0.01)
        print("crc", native.crc32(b"abc"), flush=True)
    """)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read())
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail("native.sleep(30) was not interrupted by SIGINT\n" + err)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt after" in out, (out, err)
    assert "crc %d" % zlib.crc32(b"abc") in out, (out, err)
    assert proc.returncode == 0, (out, err)
    assert waited < 10
    seconds = float(out.split("KeyboardInterrupt after")[1].split()[0])
    assert seconds < 10


def test_ctrl_c_uncaught_exits_with_keyboardinterrupt():
    proc = popen_script("""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("ready", flush=True)
        np.native.sleep(30)
    """)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
