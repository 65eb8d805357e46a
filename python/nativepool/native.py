"""nativepool.native: C functions as tasks that never take the GIL.

A :class:`NativeFunction` is a C function with a declared signature. Called
from Python it runs in the calling thread with the GIL released. Passed to
``ThreadPool.submit`` or ``ThreadPool.map`` it runs on a worker that never
takes the GIL: its arguments are converted to C values at submit time,
buffers (bytes, bytearray, memoryview, array, numpy arrays) are pinned until
the call ends, and the C result becomes a Python object only when someone
reads it. So CPU-bound native work scales with cores while the main thread
runs Python.

Built-in kernels (each mirrors a stdlib function, result for result)::

    sleep(seconds)                         time.sleep
    sum_squares(n)                         sum(i*i for i in range(n))
    crc32(data, value=0)                   zlib.crc32
    adler32(data, value=1)                 zlib.adler32
    compress(data, level=-1, wbits=15)     zlib.compress
    decompress(data, wbits=15, bufsize=16384)   zlib.decompress
    read_file(path)                        open(path, 'rb').read()
    read_into(path, buffer, offset=0)      f.seek(offset); f.readinto(buffer)
    sha256(data)                           hashlib.sha256(data).digest()

Your own C functions: :func:`wrap` takes a ctypes function, a cffi function,
a numba ``cfunc`` or a raw address with C types.
"""
import ctypes as _ctypes

from . import _nativepool

NativeFunction = _nativepool.NativeFunction

_b = _nativepool._native_builtins
sleep = _b["sleep"]
sum_squares = _b["sum_squares"]
crc32 = _b["crc32"]
adler32 = _b["adler32"]
compress = _b["compress"]
decompress = _b["decompress"]
read_file = _b["read_file"]
read_into = _b["read_into"]
sha256 = _b["sha256"]
del _b

__all__ = [
    "NativeFunction",
    "adler32",
    "compress",
    "crc32",
    "decompress",
    "read_file",
    "read_into",
    "sha256",
    "sleep",
    "sum_squares",
    "wrap",
]

_TYPE_NAMES = frozenset([
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float", "double", "buffer", "wbuffer", "void",
])

# ---- ctypes ---------------------------------------------------------------

_CTYPES_INT_CODES = {"b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "?"}


def _ctypes_name(t, what):
    """The C type name of a ctypes type (None is void)."""
    if t is None:
        return "void"
    if isinstance(t, str):
        return t
    if not isinstance(t, type):
        raise TypeError(f"{what}: expected a ctypes type, not {t!r}")
    if t is _ctypes.c_char_p:
        return "buffer"         # ctypes passes bytes there: const char *
    if t is _ctypes.c_void_p or issubclass(t, _ctypes._Pointer):
        return "wbuffer"        # the callee may write: needs a writable buffer
    code = getattr(t, "_type_", None)
    if isinstance(code, str) and issubclass(t, _ctypes._SimpleCData):
        if code == "f":
            return "float"
        if code == "d":
            return "double"
        if code in _CTYPES_INT_CODES:
            signed = code.islower() and code != "?"
            return f"{'int' if signed else 'uint'}{8 * _ctypes.sizeof(t)}"
    raise TypeError(
        f"{what}: the ctypes type {t.__name__} is not supported (use integer "
        "types, c_float, c_double, POINTER(...), c_void_p or c_char_p)")


def _from_ctypes(func, restype, argtypes):
    if argtypes is None:
        argtypes = func.argtypes
        if argtypes is None:
            raise TypeError(
                f"{_name_of(func)}: set argtypes on the ctypes function (or pass "
                "argtypes=): without them the signature is unknown")
    if restype is None:
        restype = func.restype      # ctypes' default is c_int, as for CDLL
    address = _ctypes.cast(func, _ctypes.c_void_p).value
    return address, _ctypes_name(restype, "restype"), [
        _ctypes_name(a, f"argument {i + 1}") for i, a in enumerate(argtypes)]


# ---- cffi -----------------------------------------------------------------

def _is_cffi(func):
    return type(func).__module__ == "_cffi_backend" or (
        getattr(func, "__module__", None) is None
        and type(func).__name__ == "builtin_function_or_method"
        and "_cffi" in repr(getattr(func, "__self__", "")))


def _cffi_name(ffi, ct, what):
    kind = ct.kind
    if kind == "void":
        return "void"
    if kind == "pointer":
        # cffi's types do not keep `const` (ffi.typeof("const char *") is
        # 'char *'), so a pointer may be written through: a writable buffer.
        # Pass argtypes=[..., "buffer", ...] for a read-only one.
        return "wbuffer"
    if kind == "primitive":
        if ct.cname in ("float", "double"):
            return ct.cname
        if ct.cname in ("char", "wchar_t", "char16_t", "char32_t", "long double"):
            raise TypeError(f"{what}: the C type {ct.cname} is not supported")
        size = ffi.sizeof(ct)
        signed = int(ffi.cast(ct, -1)) < 0 if ct.cname != "_Bool" else False
        return f"{'int' if signed else 'uint'}{8 * size}"
    raise TypeError(f"{what}: the C type {ct.cname} is not supported")


def _from_cffi(func, restype, argtypes, ffi):
    if ffi is None:
        import cffi
        ffi = cffi.FFI()
    ptr = func
    if not isinstance(func, ffi.CData):
        # An API-mode lib function: ffi.typeof knows it; take its address.
        ptr = ffi.cast(ffi.typeof(func), func)
    ct = ffi.typeof(ptr)
    if ct.kind == "pointer" and ct.item.kind == "function":
        ct = ct.item
    if ct.kind != "function":
        raise TypeError(f"expected a cffi function, not {ct.cname}")
    if ct.ellipsis:
        raise TypeError("variadic C functions are not supported")
    if restype is None:
        restype = _cffi_name(ffi, ct.result, "restype")
    if argtypes is None:
        argtypes = [_cffi_name(ffi, a, f"argument {i + 1}")
                    for i, a in enumerate(ct.args)]
    address = int(ffi.cast("uintptr_t", ptr))
    name = getattr(func, "__name__", None)
    if not (isinstance(name, str) and name.isidentifier()):
        name = f"<cffi {ct.cname}>"    # an ABI-mode cdata has no name
    return address, restype, argtypes, name


def _name_of(func):
    return getattr(func, "__name__", None) or repr(func)


def wrap(func, restype=None, argtypes=None, *, name=None, ffi=None, keepalive=None):
    """Return a NativeFunction for a C function.

    func is one of:
      - a ctypes function: ``CDLL(...).name`` with ``argtypes`` (and
        ``restype``) set, or a ``CFUNCTYPE(...)`` instance;
      - a cffi function: ``lib.name`` (ABI or API mode) or an
        ``ffi.cast("int(*)(int)", address)`` pointer (pass ``ffi=`` when it
        is not the default backend's);
      - a numba ``@cfunc`` (its ``.ctypes`` signature is used);
      - an int address, with restype and argtypes given.

    restype / argtypes override what func declares. Types are ctypes types
    or names: int8, int16, int32, int64, uint8, uint16, uint32, uint64,
    float, double, buffer (read-only memory: bytes & co. pass as a
    pointer), wbuffer (memory the function writes: bytearray, writable
    memoryview, numpy array), void (restype only). ctypes POINTER(T) and
    c_void_p, and every cffi pointer (cffi's types forget ``const``), are
    wbuffer; c_char_p is buffer. Pass argtypes to declare a pointer
    read-only.

    The NativeFunction keeps func alive, and ffi and keepalive if given.
    Keep whatever owns the code loaded for as long as you use it: a cffi
    ``ffi.dlopen`` library closes when its lib and ffi objects are
    collected, and then calling into it crashes, as it would in cffi.

    Raises TypeError for a signature that cannot be called safely (pointer
    results, variadic functions, structs, more than 16 arguments).
    """
    extra = tuple(x for x in (ffi, keepalive) if x is not None)
    keepalive = (func,) + extra
    if isinstance(func, bool):
        raise TypeError("func must be a C function or an address, not bool")
    if isinstance(func, int):
        if restype is None or argtypes is None:
            raise TypeError("wrapping a raw address needs restype and argtypes")
        address = func
        keepalive = extra or None
    elif hasattr(func, "address") and hasattr(func, "ctypes") and hasattr(func, "_sig"):
        # numba.cfunc: its ctypes view carries the C signature.
        address, rt, at = _from_ctypes(func.ctypes, None, None)
        address = func.address
        restype = rt if restype is None else restype
        argtypes = at if argtypes is None else argtypes
        name = name or func.__name__
    elif isinstance(func, _ctypes._CFuncPtr):
        address, restype, argtypes = _from_ctypes(func, restype, argtypes)
        name = name or getattr(func, "__name__", None)
    elif _is_cffi(func) or ffi is not None:
        address, restype, argtypes, cname = _from_cffi(func, restype, argtypes, ffi)
        name = name or cname
    else:
        raise TypeError(
            "func must be a ctypes function, a cffi function, a numba cfunc or "
            f"an int address, not {type(func).__name__}")
    restype = _ctypes_name(restype, "restype")
    argtypes = [_ctypes_name(a, f"argument {i + 1}") for i, a in enumerate(argtypes)]
    return NativeFunction(address, restype, argtypes, name=name, keepalive=keepalive)
