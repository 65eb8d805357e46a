"""nativepool.native.wrap: user C functions as NativeFunctions, from ctypes
(CDLL functions, CFUNCTYPE objects) and raw addresses with explicit types;
their attributes, errors, and calls directly, via submit and via map.

The tiny C library with every supported type (native_support.LIB_SOURCE) is
compiled at test time with gcc.  cffi and numba: test_native_wrap_cffi.py.
"""
import ctypes
import ctypes.util
import gc
import math
import struct
import threading
import time
import weakref

import pytest

from conftest import np, run_script, check_no_leak, HANG_TIMEOUT
from native_support import build_shared_lib, get_native, spin_py

native = get_native()

pytestmark = pytest.mark.nativepool_only

C = ctypes


@pytest.fixture(scope="module")
def libpath(tmp_path_factory):
    return build_shared_lib(str(tmp_path_factory.mktemp("wraplib")))


@pytest.fixture(scope="module")
def lib(libpath):
    return ctypes.CDLL(libpath)


def wrapped(lib, name, restype, argtypes, **kw):
    """native.wrap of lib.name after setting its ctypes signature."""
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return native.wrap(f, **kw)


# --------------------------------------------------------------------------
# ctypes: system libraries

def test_libm_cos():
    libm = C.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.cos.restype = C.c_double
    libm.cos.argtypes = [C.c_double]
    cos = native.wrap(libm.cos)
    assert isinstance(cos, native.NativeFunction)
    assert cos.__name__ == "cos"
    assert cos.restype == "double" and cos.argtypes == ("double",)
    assert cos.address == C.cast(libm.cos, C.c_void_p).value
    for x in [0.0, 0.5, 1.0, -3.0, 100.25]:
        assert cos(x) == math.cos(x)
    assert cos(2) == math.cos(2)           # an int for a double


def test_libc_labs():
    libc = C.CDLL(None)
    libc.labs.restype = C.c_long
    libc.labs.argtypes = [C.c_long]
    labs = native.wrap(libc.labs)
    assert labs.argtypes == ("int%d" % (8 * C.sizeof(C.c_long)),)
    assert labs(-5) == 5 and labs(7) == 7
    big = 2 ** (8 * C.sizeof(C.c_long) - 1) - 1
    assert labs(-big) == big
    with pytest.raises(OverflowError):
        labs(big + 1)


def test_submit_and_map_system_function(pool):
    libm = C.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.sqrt.restype = C.c_double
    libm.sqrt.argtypes = [C.c_double]
    sqrt = native.wrap(libm.sqrt)
    assert pool.submit(sqrt, 16.0).result(HANG_TIMEOUT) == 4.0
    xs = [float(i) for i in range(1000)]
    assert list(pool.map(sqrt, xs)) == [math.sqrt(x) for x in xs]


# --------------------------------------------------------------------------
# ctypes: every type, through the compiled library

def test_int8(lib):
    neg8 = wrapped(lib, "neg8", C.c_int8, [C.c_int8])
    assert neg8.restype == "int8" and neg8.argtypes == ("int8",)
    assert neg8(5) == -5
    assert neg8(-127) == 127
    assert neg8(-128) == -128                 # wraps in C
    add8 = wrapped(lib, "add8", C.c_int8, [C.c_int8, C.c_int8])
    assert add8(100, 100) == -56
    assert add8(-100, -1) == -101
    for bad in [128, -129, 2**70]:
        with pytest.raises(OverflowError):
            neg8(bad)


def test_uint8(lib):
    assert wrapped(lib, "u8max", C.c_uint8, [])() == 255
    u8id = wrapped(lib, "u8id", C.c_uint8, [C.c_uint8])
    assert u8id.restype == "uint8"
    assert [u8id(v) for v in (0, 1, 200, 255)] == [0, 1, 200, 255]
    for bad in [256, -1]:
        with pytest.raises(OverflowError):
            u8id(bad)


def test_int16_uint16(lib):
    neg16 = wrapped(lib, "neg16", C.c_int16, [C.c_int16])
    assert neg16(300) == -300 and neg16(-32768) == -32768 and neg16(32767) == -32767
    u16id = wrapped(lib, "u16id", C.c_uint16, [C.c_uint16])
    assert u16id(65535) == 65535
    with pytest.raises(OverflowError):
        neg16(32768)
    with pytest.raises(OverflowError):
        u16id(65536)


def test_int32_uint32(lib):
    neg32 = wrapped(lib, "neg32", C.c_int32, [C.c_int32])
    assert neg32(7) == -7 and neg32(-(2**31) + 1) == 2**31 - 1
    u32id = wrapped(lib, "u32id", C.c_uint32, [C.c_uint32])
    assert u32id(2**32 - 1) == 2**32 - 1
    assert wrapped(lib, "u32max", C.c_uint32, [])() == 2**32 - 1
    with pytest.raises(OverflowError):
        neg32(2**31)
    with pytest.raises(OverflowError):
        u32id(2**32)
    with pytest.raises(OverflowError):
        u32id(-1)


def test_int64_uint64_extremes(lib):
    assert wrapped(lib, "i64min", C.c_int64, [])() == -(2**63)
    assert wrapped(lib, "i64max", C.c_int64, [])() == 2**63 - 1
    assert wrapped(lib, "u64max", C.c_uint64, [])() == 2**64 - 1
    i64id = wrapped(lib, "i64id", C.c_int64, [C.c_int64])
    u64id = wrapped(lib, "u64id", C.c_uint64, [C.c_uint64])
    for v in [0, -1, 2**63 - 1, -(2**63), 123456789012345]:
        assert i64id(v) == v
    for v in [0, 2**63, 2**64 - 1]:
        assert u64id(v) == v
    for bad in [2**63, -(2**63) - 1]:
        with pytest.raises(OverflowError):
            i64id(bad)
    for bad in [2**64, -1]:
        with pytest.raises(OverflowError):
            u64id(bad)


def test_float(lib):
    fhalf = wrapped(lib, "fhalf", C.c_float, [C.c_float])
    assert fhalf.restype == "float" and fhalf.argtypes == ("float",)
    assert fhalf(3.0) == 1.5
    assert fhalf(0.1) == struct.unpack("f", struct.pack("f", 0.1))[0] / 2
    assert fhalf(float("inf")) == float("inf")
    assert math.isnan(fhalf(float("nan")))
    assert fhalf(2) == 1.0
    with pytest.raises(OverflowError):
        fhalf(1e39)                     # does not fit a C float


def test_double(lib):
    dhalf = wrapped(lib, "dhalf", C.c_double, [C.c_double])
    assert dhalf(1e308) == 5e307
    assert dhalf(-0.5) == -0.25
    assert dhalf(2**60) == 2.0**59
    is_nan = wrapped(lib, "is_nan", C.c_int, [C.c_double])
    assert is_nan.restype == "int32"
    assert is_nan(float("nan")) == 1 and is_nan(1.0) == 0
    with pytest.raises(TypeError):
        dhalf("1.0")
    with pytest.raises(TypeError):
        dhalf(None)
    with pytest.raises(OverflowError):
        dhalf(10**400)


def test_mixed_int_and_double_args(lib):
    dmix = wrapped(lib, "dmix", C.c_double,
                   [C.c_int8, C.c_double, C.c_int32, C.c_float, C.c_uint64, C.c_int16])
    assert dmix.argtypes == ("int8", "double", "int32", "float", "uint64", "int16")
    assert dmix(-1, 0.5, -100000, 0.25, 2**40, -300) == \
        -1 + 0.5 - 100000 + 0.25 + 2**40 - 300
    mixed = wrapped(lib, "mixed_order", C.c_double, [C.c_double, C.c_int32, C.c_double,
                                                     C.c_int64])
    assert mixed(1.0, 2, 3.0, 4) == 1234.0


def test_sixteen_args(lib):
    s16 = wrapped(lib, "sum16", C.c_int64, [C.c_int64] * 16)
    args = list(range(1, 17))
    assert s16(*args) == sum(i * i for i in args)
    assert s16(*([0] * 15 + [-(2**58)])) == -16 * 2**58
    d16 = wrapped(lib, "dsum16", C.c_double, [C.c_double] * 16)
    assert d16(*[0.5] * 16) == 68.0
    with pytest.raises(TypeError):
        s16(*args[:15])
    with pytest.raises(TypeError):
        s16(*args, 17)


def test_void_result_writing_through_pointer(lib):
    store42 = wrapped(lib, "store42", None, [C.POINTER(C.c_int64)])
    assert store42.restype == "void" and store42.argtypes == ("wbuffer",)
    buf = bytearray(8)
    assert store42(buf) is None
    assert struct.unpack("q", buf) == (42,)
    with pytest.raises(TypeError):
        store42(b"\0" * 8)             # read-only


def test_fill_into_numpy_and_bytearray(lib, pool):
    fill = wrapped(lib, "fill", None, [C.POINTER(C.c_double), C.c_int64, C.c_double])
    assert fill.argtypes == ("wbuffer", "int64", "double")
    numpy = pytest.importorskip("numpy")
    a = numpy.zeros(100)
    assert fill(a, 100, 1.5) is None
    assert (a == 1.5).all()
    ba = bytearray(24)
    fill(ba, 3, -2.0)
    assert struct.unpack("3d", ba) == (-2.0, -2.0, -2.0)
    b = numpy.zeros(1000)
    assert pool.submit(fill, b, 1000, 7.0).result(HANG_TIMEOUT) is None
    assert (b == 7.0).all()
    with pytest.raises(TypeError):
        fill(numpy.zeros((10, 10))[:, 0], 10, 1.0)       # not contiguous


def test_sum_const_pointer_takes_bytes(lib):
    s = wrapped(lib, "sum", C.c_double, [C.c_char_p, C.c_int64])
    assert s.argtypes == ("buffer", "int64")
    assert s(struct.pack("3d", 1.0, 2.0, 3.5), 3) == 6.5
    numpy = pytest.importorskip("numpy")
    assert s(numpy.arange(10.0), 10) == 45.0
    assert s(memoryview(numpy.arange(10.0)), 10) == 45.0
    with pytest.raises(TypeError):
        s("not a buffer", 0)


def test_explicit_types_override_ctypes(lib):
    # The same function with names instead of ctypes types.
    s = native.wrap(lib.sum, "double", ["buffer", "int64"])
    assert s(struct.pack("2d", 1.0, 2.0), 2) == 3.0
    s2 = native.wrap(lib.sum, C.c_double, [C.c_char_p, C.c_int64], name="mysum")
    assert s2.__name__ == "mysum"
    assert s2(struct.pack("2d", 1.0, 2.0), 2) == 3.0


def test_ctypes_default_restype_is_int(lib):
    f = lib.is_nan
    f.argtypes = [C.c_double]
    f.restype = C.c_int
    w = native.wrap(f)
    assert w.restype == "int32"
    assert w(float("nan")) == 1


def test_ctypes_type_mapping(lib):
    cases = {
        C.c_byte: "int8", C.c_ubyte: "uint8", C.c_short: "int16", C.c_ushort: "uint16",
        C.c_int: "int32", C.c_uint: "uint32", C.c_longlong: "int64",
        C.c_ulonglong: "uint64", C.c_int64: "int64", C.c_uint64: "uint64",
        C.c_size_t: "uint%d" % (8 * C.sizeof(C.c_size_t)),
        C.c_ssize_t: "int%d" % (8 * C.sizeof(C.c_ssize_t)),
        C.c_bool: "uint8", C.c_float: "float", C.c_double: "double",
        C.c_char_p: "buffer", C.c_void_p: "wbuffer", C.POINTER(C.c_int): "wbuffer",
    }
    addr = C.cast(lib.i64id, C.c_void_p).value
    for ct, name in cases.items():
        w = native.wrap(addr, "void", [ct])
        assert w.argtypes == (name,), ct


# --------------------------------------------------------------------------
# CFUNCTYPE objects

def test_cfunctype_cast_from_library(lib):
    proto = C.CFUNCTYPE(C.c_int64, C.c_int64, C.c_int64)
    fp = C.cast(lib.add, proto)
    w = native.wrap(fp)
    assert w.restype == "int64" and w.argtypes == ("int64", "int64")
    assert w(2, 40) == 42
    assert w.address == C.cast(lib.add, C.c_void_p).value


def test_cfunctype_python_callable(pool):
    # Works, but the callback takes the GIL: just check the results.
    proto = C.CFUNCTYPE(C.c_double, C.c_double, C.c_int32)
    cb = proto(lambda x, k: x * k + 0.5)
    w = native.wrap(cb)
    assert w(1.5, 4) == 6.5
    assert pool.submit(w, 2.0, 3).result(HANG_TIMEOUT) == 6.5
    assert list(pool.map(w, [1.0, 2.0, 3.0], [1, 2, 3])) == [1.5, 4.5, 9.5]


def test_cfunctype_python_callable_kept_alive():
    # The NativeFunction keeps the ctypes callback (and its thunk) alive.
    proc = run_script("""
        import ctypes, gc
        native = np.native
        proto = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
        w = native.wrap(proto(lambda x: x * 3))
        gc.collect()
        pool = np.ThreadPool(2)
        out("direct", w(5))
        out("pool", pool.submit(w, 7).result())
        pool.shutdown()
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "direct 15" in proc.stdout and "pool 21" in proc.stdout


# --------------------------------------------------------------------------
# raw addresses

def test_raw_address_with_names(lib):
    addr = C.cast(lib.add, C.c_void_p).value
    w = native.wrap(addr, "int64", ["int64", "int64"])
    assert w(20, 22) == 42
    assert w.address == addr
    assert w.__name__ == "<native function at %#x>" % addr or hex(addr)[2:] in w.__name__
    w2 = native.wrap(addr, C.c_int64, [C.c_int64, C.c_int64], name="add")
    assert w2.__name__ == "add" and w2.__qualname__ == "add"
    assert w2(1, 2) == 3
    w3 = native.wrap(addr, "int64", ("int64", C.c_int64))       # mixed spellings
    assert w3(1, 1) == 2


def test_native_function_constructor(lib):
    addr = C.cast(lib.add, C.c_void_p).value
    f = native.NativeFunction(addr, "int64", ["int64", "int64"], name="add")
    assert f(3, 4) == 7
    assert f.restype == "int64" and f.argtypes == ("int64", "int64")
    with pytest.raises(TypeError):
        native.NativeFunction(addr, "int64", ["int64"], "positional-name")


def test_repr_and_attributes(lib):
    addr = C.cast(lib.sum, C.c_void_p).value
    s = wrapped(lib, "sum", C.c_double, [C.c_char_p, C.c_int64])
    r = repr(s)
    assert r.startswith("<NativeFunction sum at 0x"), r
    assert int(r.rsplit(" at ", 1)[1].rstrip(">"), 16) == addr
    assert s.__name__ == "sum"
    assert s.address == addr
    assert isinstance(s.argtypes, tuple)
    with pytest.raises(AttributeError):
        s.restype = "int8"
    with pytest.raises(AttributeError):
        s.address = 5


# --------------------------------------------------------------------------
# wrap errors

def test_wrap_ctypes_without_argtypes(libpath):
    fresh = C.CDLL(libpath)            # its functions have no argtypes set
    with pytest.raises(TypeError, match="argtypes"):
        native.wrap(fresh.add)


@pytest.mark.parametrize("restype", [C.c_char_p, C.c_void_p, C.POINTER(C.c_int),
                                     "buffer", "wbuffer"])
def test_wrap_pointer_restype(lib, restype):
    with pytest.raises(TypeError):
        wrapped(lib, "i64id", restype, [C.c_int64])


class Pair(C.Structure):
    _fields_ = [("a", C.c_int), ("b", C.c_int)]


class Either(C.Union):
    _fields_ = [("a", C.c_int), ("b", C.c_double)]


@pytest.mark.parametrize("bad", [C.c_wchar_p, C.c_wchar, C.c_char, C.c_longdouble,
                                 Pair, Either, C.py_object],
                         ids=lambda t: t.__name__)
def test_wrap_unsupported_ctypes_type(lib, bad):
    with pytest.raises(TypeError):
        wrapped(lib, "i64id", C.c_int64, [bad])
    with pytest.raises(TypeError):
        wrapped(lib, "i64id", bad, [C.c_int64])


def test_wrap_more_than_16_args(lib):
    with pytest.raises(TypeError, match="16"):
        wrapped(lib, "sum16", C.c_int64, [C.c_int64] * 17)
    addr = C.cast(lib.sum16, C.c_void_p).value
    with pytest.raises(TypeError):
        native.wrap(addr, "int64", ["int64"] * 17)
    with pytest.raises(TypeError):
        native.NativeFunction(addr, "int64", ["int64"] * 17)


@pytest.mark.parametrize("restype, argtypes", [
    ("long", ["int64"]), ("int64", ["long"]), ("int64", ["Int64"]), ("int64", ["void"]),
    ("int64", [""]), ("int64", [5]), (5, ["int64"]), (None, ["int64"]),
])
def test_wrap_unknown_type_names(lib, restype, argtypes):
    addr = C.cast(lib.i64id, C.c_void_p).value
    with pytest.raises(TypeError):
        native.wrap(addr, restype, argtypes)


def test_wrap_bad_func_objects(lib):
    addr = C.cast(lib.i64id, C.c_void_p).value
    with pytest.raises(TypeError):
        native.wrap(addr)                      # a raw address needs the types
    with pytest.raises(TypeError):
        native.wrap(addr, "int64")
    with pytest.raises(TypeError):
        native.wrap("i64id", "int64", ["int64"])
    with pytest.raises(TypeError):
        native.wrap(True, "int64", ["int64"])
    with pytest.raises(TypeError):
        native.wrap(len)
    with pytest.raises(TypeError):
        native.wrap(lambda x: x)
    with pytest.raises(ValueError):
        native.wrap(0, "int64", ["int64"])     # NULL
    with pytest.raises(TypeError):
        native.wrap(addr, "int64", ["int64"], name=5)


def test_wrapped_argument_errors_in_pool(lib, pool):
    add = wrapped(lib, "add", C.c_int64, [C.c_int64, C.c_int64])
    with pytest.raises(OverflowError):
        pool.submit(add, 2**63, 1)
    with pytest.raises(TypeError):
        pool.submit(add, 1)
    with pytest.raises(TypeError):
        pool.submit(add, 1, 2, arg1=3)
    with pytest.raises(TypeError):
        pool.submit(add, 1.5, 2)
    it = pool.map(add, [1, 2, 2**64, 4], [1, 1, 1, 1])
    assert [next(it), next(it)] == [2, 3]
    with pytest.raises(OverflowError):
        next(it)


# --------------------------------------------------------------------------
# direct calls, submit and map of wrapped functions

def test_map_sum_of_two_lists(lib, pool):
    add = wrapped(lib, "add", C.c_int64, [C.c_int64, C.c_int64])
    a = list(range(-500, 500))
    b = [x * 3 for x in range(1000)]
    assert list(pool.map(add, a, b)) == [x + y for x, y in zip(a, b)]
    assert list(pool.map(add, a, b, buffersize=8)) == [x + y for x, y in zip(a, b)]


def test_submit_every_kind(lib, pool):
    i64id = wrapped(lib, "i64id", C.c_int64, [C.c_int64])
    fhalf = wrapped(lib, "fhalf", C.c_float, [C.c_float])
    u64max = wrapped(lib, "u64max", C.c_uint64, [])
    fs = [pool.submit(i64id, -(2**63)), pool.submit(fhalf, 3.0), pool.submit(u64max)]
    assert [f.result(HANG_TIMEOUT) for f in fs] == [-(2**63), 1.5, 2**64 - 1]
    assert all(isinstance(f, np.Future) for f in fs)


def test_buffer_pinned_during_wrapped_task(lib, make_pool):
    p = make_pool(max_workers=1)
    store42 = wrapped(lib, "store42", None, [C.POINTER(C.c_int64)])
    blocker = p.submit(native.sleep, 0.2)
    buf = bytearray(8)
    f = p.submit(store42, buf)
    with pytest.raises(BufferError):
        buf.extend(b"x")
    assert f.result(HANG_TIMEOUT) is None
    assert struct.unpack("q", buf) == (42,)
    buf.extend(b"x")
    blocker.result()


def test_wrapped_direct_call_releases_gil(lib):
    spin = wrapped(lib, "spin", C.c_uint64, [C.c_uint64])
    assert spin(1000) == spin_py(1000)
    n = 2_000_000
    while True:
        t0 = time.perf_counter()
        spin(n)
        dt = time.perf_counter() - t0
        if dt > 0.01:
            break
        n *= 4
    n = int(n * 0.15 / dt)
    state = {"count": 0, "stop": False}

    def counter():
        while not state["stop"]:
            state["count"] += 1

    t = threading.Thread(target=counter, daemon=True)
    t.start()
    try:
        time.sleep(0.01)
        before = state["count"]
        spin(n)
        during = state["count"] - before
    finally:
        state["stop"] = True
        t.join(HANG_TIMEOUT)
    assert during > 1000


WRAP_GIL_SCRIPT = r"""
import ctypes, sys, time
native = np.native
lib = ctypes.CDLL(%(libpath)r)
lib.spin.restype = ctypes.c_uint64
lib.spin.argtypes = [ctypes.c_uint64]
spin = native.wrap(lib.spin)
pyproto = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
pycb = native.wrap(pyproto(lambda x: x + 1))   # calls back into Python

pool = np.ThreadPool(2)
ws = [pool.submit(time.sleep, 0.05) for _ in range(2)]
[w.result() for w in ws]
pool.submit(spin, 10).result()
n = 1000000
while True:
    t0 = time.perf_counter(); spin(n); dt = time.perf_counter() - t0
    if dt > 0.005:
        break
    n *= 4
n = max(1000, int(n * 0.03 / dt))
time.sleep(0.2)

old = sys.getswitchinterval()
sys.setswitchinterval(1000)
try:
    fs = [pool.submit(spin, n) for _ in range(6)]
    start = time.monotonic()
    while time.monotonic() < start + 8 and not all([f.done() for f in fs]):
        pass
    c_done = sum(f.done() for f in fs)
    cb = pool.submit(pycb, 41)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        cb.done()
    cb_done = cb.done()
finally:
    sys.setswitchinterval(old)
out("c_done", c_done)
out("callback_done_during_spin", cb_done)
out("callback_result", cb.result(30))
out("results_ok", len(set(f.result() for f in fs)) == 1)
pool.shutdown()
"""


def test_wrapped_c_function_runs_without_the_gil(libpath):
    proc = run_script(WRAP_GIL_SCRIPT % {"libpath": libpath}, timeout=90)
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr)
    assert "c_done 6" in out, out
    # The control: a C function that calls back into Python needs the GIL.
    assert "callback_done_during_spin False" in out, out
    assert "callback_result 42" in out, out
    assert "results_ok True" in out, out


def test_no_leak_wrapped_calls(lib, pool):
    add = wrapped(lib, "add", C.c_int64, [C.c_int64, C.c_int64])
    s = wrapped(lib, "sum", C.c_double, [C.c_char_p, C.c_int64])
    data = struct.pack("4d", 1, 2, 3, 4)

    def once():
        add(1, 2)
        pool.submit(add, 3, 4).result()
        pool.submit(s, data, 4).result()

    check_no_leak(once, iterations=2000, warmup=200)


def test_wrapped_function_freed(lib):
    proto = C.CFUNCTYPE(C.c_int64, C.c_int64)
    cb = proto(lambda x: x)
    ref = weakref.ref(cb)
    w = native.wrap(cb)
    del cb
    gc.collect()
    assert ref() is not None        # kept alive by w
    assert w(3) == 3
    del w
    gc.collect()
    assert ref() is None
