"""nativepool.native.wrap with cffi (ABI-mode lib functions and ffi.cast
function pointers) and numba cfuncs (skipped when numba is not installed).

cffi types map as: integer and floating point primitives by size and
signedness, `T *` to 'wbuffer' and `const T *` to 'buffer' (read-only memory,
so bytes are accepted); variadic functions, pointer results, structs, char
and long double are refused with TypeError.
"""
import ctypes
import ctypes.util
import math
import struct

import pytest

from conftest import HANG_TIMEOUT
from native_support import build_shared_lib, get_native

native = get_native()

pytestmark = pytest.mark.nativepool_only

C = ctypes


@pytest.fixture(scope="module")
def libpath(tmp_path_factory):
    return build_shared_lib(str(tmp_path_factory.mktemp("wraplib_cffi")))


# --------------------------------------------------------------------------
# cffi

CFFI_CDEF = """
int8_t neg8(int8_t x);
uint8_t u8max(void);
int16_t neg16(int16_t x);
uint32_t u32max(void);
int64_t i64min(void);
uint64_t u64max(void);
int64_t add(int64_t a, int64_t b);
float fhalf(float x);
double dmix(int8_t a, double b, int32_t c, float d, uint64_t e, int16_t f);
void store42(int64_t *out);
void fill(double *out, int64_t n, double v);
double sum(const double *x, int64_t n);
int64_t count_bytes(const char *p, int64_t n, int32_t c);
"""


@pytest.fixture(scope="module")
def cffi_lib(libpath):
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    ffi.cdef(CFFI_CDEF)
    return ffi, ffi.dlopen(libpath)


def test_cffi_abi_functions(cffi_lib):
    ffi, clib = cffi_lib
    neg8 = native.wrap(clib.neg8)
    assert neg8.restype == "int8" and neg8.argtypes == ("int8",)
    assert neg8(100) == -100
    assert native.wrap(clib.u8max)() == 255
    assert native.wrap(clib.neg16)(-300) == 300
    assert native.wrap(clib.u32max)() == 2**32 - 1
    assert native.wrap(clib.i64min)() == -(2**63)
    assert native.wrap(clib.u64max)() == 2**64 - 1
    add = native.wrap(clib.add)
    assert add.argtypes == ("int64", "int64") and add(2**40, -1) == 2**40 - 1
    fhalf = native.wrap(clib.fhalf)
    assert fhalf.restype == "float" and fhalf(5.0) == 2.5
    dmix = native.wrap(clib.dmix)
    assert dmix.argtypes == ("int8", "double", "int32", "float", "uint64", "int16")
    assert dmix(1, 2.0, 3, 4.0, 5, 6) == 21.0


def test_cffi_nonconst_pointer_is_wbuffer(cffi_lib):
    ffi, clib = cffi_lib
    fill = native.wrap(clib.fill)
    assert fill.argtypes == ("wbuffer", "int64", "double")
    assert fill.restype == "void"
    numpy = pytest.importorskip("numpy")
    a = numpy.zeros(10)
    fill(a, 10, 3.25)
    assert (a == 3.25).all()
    store42 = native.wrap(clib.store42)
    buf = bytearray(8)
    store42(buf)
    assert struct.unpack("q", buf) == (42,)
    with pytest.raises(TypeError):
        fill(b"\0" * 80, 10, 1.0)


def test_cffi_pointers_are_writable_by_default(cffi_lib):
    # cffi's ctypes do not keep `const` (ffi.typeof("const char *").cname is
    # "char *"), so wrap() cannot tell a read-only pointer: every cffi pointer
    # is 'wbuffer' (documented), and read-only bytes are refused cleanly.
    ffi, clib = cffi_lib
    s = native.wrap(clib.sum)
    assert s.argtypes == ("wbuffer", "int64"), s.argtypes
    with pytest.raises(TypeError, match="writable"):
        s(struct.pack("3d", 1.0, 2.0, 3.0), 3)
    assert s(bytearray(struct.pack("3d", 1.0, 2.0, 3.0)), 3) == 6.0
    addr = int(ffi.cast("uintptr_t", clib.count_bytes))
    p = ffi.cast("int64_t(*)(const char *, int64_t, int32_t)", addr)
    w = native.wrap(p)
    assert w.argtypes == ("wbuffer", "int64", "int32"), w.argtypes
    assert w(bytearray(b"banana"), 6, ord("a")) == 3


def test_cffi_const_pointer_with_explicit_argtypes(cffi_lib):
    ffi, clib = cffi_lib
    s = native.wrap(clib.sum, argtypes=["buffer", "int64"])
    assert s(struct.pack("3d", 1.0, 2.0, 3.0), 3) == 6.0
    c = native.wrap(clib.count_bytes, argtypes=["buffer", "int64", "int32"])
    assert c(b"banana", 6, ord("n")) == 2


def test_cffi_cast_function_pointer(cffi_lib):
    cffi = pytest.importorskip("cffi")
    ffi, clib = cffi_lib
    libm = C.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    addr = C.cast(libm.cos, C.c_void_p).value
    p = ffi.cast("double(*)(double)", addr)
    w = native.wrap(p)
    assert w.address == addr
    assert w.restype == "double" and w.argtypes == ("double",)
    assert w(0.5) == math.cos(0.5)
    # A pointer from another FFI instance, with ffi= given or not.
    ffi2 = cffi.FFI()
    p2 = ffi2.cast("double(*)(double)", addr)
    assert native.wrap(p2, ffi=ffi2)(1.0) == math.cos(1.0)
    assert native.wrap(p2)(1.0) == math.cos(1.0)


def test_cffi_pool(cffi_lib, pool):
    ffi, clib = cffi_lib
    add = native.wrap(clib.add)
    assert pool.submit(add, 1, 2).result(HANG_TIMEOUT) == 3
    assert list(pool.map(add, range(100), range(100, 200))) == \
        [a + b for a, b in zip(range(100), range(100, 200))]


def test_cffi_errors(libpath):
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    ffi.cdef("""
        int printf(const char *fmt, ...);
        char *strchr(const char *s, int c);
        typedef struct { int a; } pair_t;
    """)
    libc = ffi.dlopen(None)
    with pytest.raises(TypeError, match="variadic"):
        native.wrap(libc.printf)
    with pytest.raises(TypeError, match="pointer results"):
        native.wrap(libc.strchr)
    addr = C.cast(C.CDLL(libpath).add, C.c_void_p).value
    with pytest.raises(TypeError):
        native.wrap(ffi.cast("int(*)(pair_t)", addr))
    with pytest.raises(TypeError):
        native.wrap(ffi.cast("int(*)(char)", addr))
    with pytest.raises(TypeError):
        native.wrap(ffi.cast("long double(*)(int)", addr))
    with pytest.raises(TypeError):
        native.wrap(ffi.new("int *"))


# --------------------------------------------------------------------------
# numba

@pytest.fixture(scope="module")
def numba_funcs():
    numba = pytest.importorskip("numba")
    from numba import carray, cfunc, types

    @cfunc("float64(float64, int64)")
    def scale(x, n):
        s = 0.0
        for _ in range(n):
            s += x
        return s

    @cfunc(types.void(types.CPointer(types.float64), types.int64, types.float64))
    def nfill(out, n, v):
        a = carray(out, n)
        for i in range(n):
            a[i] = v

    @cfunc("int8(int8)")
    def nneg8(x):
        return -x

    del numba
    return scale, nfill, nneg8


def test_numba_cfunc(numba_funcs, pool):
    scale, nfill, nneg8 = numba_funcs
    w = native.wrap(scale)
    assert w.__name__ == "scale"
    assert w.restype == "double" and w.argtypes == ("double", "int64")
    assert w.address == scale.address
    assert w(1.5, 4) == 6.0
    assert pool.submit(w, 2.0, 3).result(HANG_TIMEOUT) == 6.0
    assert list(pool.map(w, [1.0, 2.0], [10, 20])) == [10.0, 40.0]
    n8 = native.wrap(nneg8)
    assert n8.restype == "int8" and n8(5) == -5


def test_numba_cfunc_writes_numpy(numba_funcs):
    numpy = pytest.importorskip("numpy")
    scale, nfill, nneg8 = numba_funcs
    w = native.wrap(nfill)
    assert w.argtypes == ("wbuffer", "int64", "double") and w.restype == "void"
    a = numpy.zeros(50)
    w(a, 50, 9.5)
    assert (a == 9.5).all()
