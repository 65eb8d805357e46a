"""nativepool.native: the built-in kernels, called directly.

Every kernel mirrors a stdlib function result for result (zlib, hashlib,
open().read(), readinto), so most tests compare the two on the same input,
errors included.

Elsewhere: sleep, argument conversion errors, GIL release and Ctrl-C in
test_native_calls.py; pool integration in test_native_tasks.py and
test_native_lifetime.py; user C functions in test_native_wrap*.py; the C API
in test_native_capi.py.
"""
import array
import errno
import hashlib
import os
import random
import sys
import threading
import time
import zlib

import pytest

from conftest import np, HANG_TIMEOUT
from native_support import ZLIB_WBITS, get_native, outcome, sum_squares_formula, zcompress

native = get_native()

pytestmark = pytest.mark.nativepool_only

BUILTIN_NAMES = ["sleep", "sum_squares", "crc32", "adler32", "compress",
                 "decompress", "read_file", "read_into", "sha256"]

_rng = random.Random(20240611)
RANDOM = _rng.randbytes(5000)
TEXT = b"".join(b"line %d: the quick brown fox %d\n" % (i, i * i % 97)
                for i in range(600))
DATA = RANDOM + TEXT + RANDOM[:777]          # mixed: ~25 KB, half compressible

# sum(i*i for i in range(n)) must fit 128 bits: NP_SUM_SQUARES_MAX in
# csrc/kernels/np_kernels.c (checked against the closed formula below).
SUM_SQUARES_MAX = 10069012961345


def assert_same_outcome(native_call, std_call):
    got = outcome(native_call)
    want = outcome(std_call)
    assert got == want


# --------------------------------------------------------------------------
# the module and the NativeFunction objects

def test_builtins_are_native_functions():
    for name in BUILTIN_NAMES:
        fn = getattr(native, name)
        assert isinstance(fn, native.NativeFunction)
        assert fn.__name__ == name
        assert repr(fn) == "<NativeFunction nativepool.native.%s>" % name
        assert fn.address is None
        assert name in native.__all__
    assert "wrap" in native.__all__
    assert np.native is native


def test_builtins_are_exactly_native_functions():
    # submit() and map() dispatch on the exact type.
    assert type(native.crc32) is native.NativeFunction
    assert callable(native.crc32)
    with pytest.raises(TypeError):
        class Sub(native.NativeFunction):
            pass


def test_builtin_docs_are_per_function():
    # Each builtin carries its own doc (its signature first), not the
    # NativeFunction type's doc.
    # (A Py_tp_doc on the type would shadow the per-object __doc__ getset.)
    for name in BUILTIN_NAMES:
        doc = getattr(native, name).__doc__
        assert doc is not None
        assert doc.startswith(name + "("), (name, doc[:80])


# --------------------------------------------------------------------------
# crc32 / adler32

CHECK_VALUES = [0, 1, 12345, 0xFFFF, 0xFFF0FFF0, 2**31, 2**32 - 1, 2**32,
                2**32 + 7, 2**40 + 3, 2**64 + 5, 2**100 + 2**33 + 9, -1, -2,
                -12345, -(2**31), -(2**32), -(2**32) - 1, -(2**70) - 17]


@pytest.mark.parametrize("name", ["crc32", "adler32"])
@pytest.mark.parametrize("data", [b"a", b"hello world", DATA, TEXT * 5],
                         ids=["1", "11", "mixed", "text"])
def test_checksum_matches_zlib(name, data):
    nfn, zfn = getattr(native, name), getattr(zlib, name)
    assert nfn(data) == zfn(data)
    for v in CHECK_VALUES:
        assert nfn(data, v) == zfn(data, v), v


@pytest.mark.parametrize("name", ["crc32", "adler32"])
def test_checksum_empty_data_matches_zlib(name):
    # zlib's adler32 reduces the start value modulo 65521 even for empty
    # input, so zlib.adler32(b'', 0xffffffff) == 917518, not 0xffffffff.
    nfn, zfn = getattr(native, name), getattr(zlib, name)
    assert nfn(b"") == zfn(b"")
    bad = [(v, nfn(b"", v), zfn(b"", v)) for v in CHECK_VALUES + [65521, 0xFFF1FFF1]
           if nfn(b"", v) != zfn(b"", v)]
    assert not bad, "(start value, native, zlib): %r" % bad


@pytest.mark.parametrize("name", ["crc32", "adler32"])
def test_checksum_buffer_types(name):
    nfn, zfn = getattr(native, name), getattr(zlib, name)
    arr = array.array("i", range(1000))
    for obj in [bytearray(DATA), memoryview(DATA), memoryview(DATA)[100:2000], arr,
                memoryview(arr)]:
        assert nfn(obj) == zfn(obj)
        assert nfn(obj, 99) == zfn(obj, 99)


def test_checksum_numpy():
    numpy = pytest.importorskip("numpy")
    a = numpy.arange(10000, dtype=numpy.float64)
    assert native.crc32(a) == zlib.crc32(a)
    assert native.adler32(a, 7) == zlib.adler32(a, 7)
    assert native.crc32(a[10:20]) == zlib.crc32(a[10:20].tobytes())


def test_checksum_chaining():
    v = 0
    for i in range(0, len(DATA), 1000):
        v = native.crc32(DATA[i:i + 1000], v)
    assert v == zlib.crc32(DATA)


def test_checksum_start_value_type_errors():
    for bad in [1.5, "1", None]:
        with pytest.raises(TypeError):
            native.crc32(b"x", bad)
        with pytest.raises(TypeError):
            zlib.crc32(b"x", bad)


# --------------------------------------------------------------------------
# compress / decompress

COMPRESS_WBITS = [15, -15, 31, 9, 10, 11, 12, 13, 14, -9, -12, 25, 28]

needs_zlib_wbits = pytest.mark.skipif(
    not ZLIB_WBITS, reason="zlib.compress has no wbits before 3.11")


@pytest.mark.parametrize("level", list(range(-1, 10)))
def test_compress_matches_zlib_byte_for_byte(level):
    for wbits in COMPRESS_WBITS if ZLIB_WBITS else [15]:
        for data in (DATA, b"", b"x"):
            want = (zlib.compress(data, level, wbits) if ZLIB_WBITS
                    else zlib.compress(data, level))
            assert native.compress(data, level, wbits) == want, \
                (level, wbits, len(data))


def test_compress_defaults_and_keywords():
    assert native.compress(DATA) == zlib.compress(DATA)
    assert native.compress(DATA, level=1) == zlib.compress(DATA, 1)
    assert native.compress(DATA, wbits=-15) == zcompress(DATA, wbits=-15)
    assert native.compress(DATA, 9, wbits=31) == zcompress(DATA, 9, 31)


@needs_zlib_wbits
def test_compress_keywords_as_zlib():
    assert native.compress(DATA, wbits=-15) == zlib.compress(DATA, wbits=-15)
    assert native.compress(DATA, 9, wbits=31) == zlib.compress(DATA, 9, wbits=31)
    assert native.compress(DATA, wbits=12, level=3) == zlib.compress(DATA, 3, 12)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_compress_large_input_matches_zlib(level):
    # Several output blocks (and at level 0 stored blocks sized by the
    # output space handed to zlib).
    big = _rng.randbytes(300_000) + TEXT * 100
    if level == 0 and sys.version_info < (3, 10):
        # Before 3.10 zlib.compress grew its output buffer differently, so
        # its stored blocks fall elsewhere: ours matches 3.10 and later.
        assert zlib.decompress(native.compress(big, 0)) == big
        return
    assert native.compress(big, level) == zlib.compress(big, level)


def test_compress_buffer_types():
    numpy = pytest.importorskip("numpy")
    a = numpy.frombuffer(DATA, dtype=numpy.uint8).copy()
    for obj in [bytearray(DATA), memoryview(DATA), a]:
        assert native.compress(obj) == zlib.compress(DATA)


@pytest.mark.parametrize("level, wbits", [
    (10, 15), (-2, 15), (100, 15), (-100, 15),     # bad level
    (6, 7), (6, 16), (6, 32), (6, 0), (6, -16), (6, -7), (6, 100), (6, 8),
])
def test_compress_errors_match_zlib(level, wbits):
    if wbits != 15 and not ZLIB_WBITS:
        pytest.skip("zlib.compress has no wbits before 3.11")
    if wbits == 15:
        assert_same_outcome(lambda: native.compress(DATA, level, wbits),
                            lambda: zlib.compress(DATA, level))
        return
    assert_same_outcome(lambda: native.compress(DATA, level, wbits),
                        lambda: zlib.compress(DATA, level, wbits))


def test_compress_bad_level_is_zlib_error():
    with pytest.raises(zlib.error, match="Bad compression level"):
        native.compress(b"abc", 10)


def test_compress_level_beyond_c_int():
    for level in [2**31, -(2**31) - 1, 2**80]:
        with pytest.raises(OverflowError):
            native.compress(b"abc", level)
        with pytest.raises(OverflowError):
            zlib.compress(b"abc", level)


@pytest.mark.parametrize("cwbits, dwbits", [
    (15, 15), (15, 0), (15, 47), (15, 32), (31, 31), (31, 47), (-15, -15),
    (9, 9), (9, 15), (12, 12), (-9, -9), (-12, -15), (25, 25),
])
def test_decompress_matches_zlib(cwbits, dwbits):
    comp = zcompress(DATA, 6, cwbits)
    for bufsize in [0, 1, 2, 7, 1000, 16384, 10**6]:
        got = native.decompress(comp, dwbits, bufsize)
        assert got == zlib.decompress(comp, dwbits, bufsize) == DATA, bufsize


def test_decompress_defaults_and_keywords():
    comp = zlib.compress(DATA)
    assert native.decompress(comp) == DATA
    assert native.decompress(comp, bufsize=0) == DATA
    assert native.decompress(comp, bufsize=1) == DATA
    assert native.decompress(comp, wbits=15, bufsize=3) == DATA
    assert native.decompress(zcompress(DATA, wbits=-15), wbits=-15) == DATA
    assert native.decompress(zlib.compress(b"")) == b""


def test_decompress_large_output():
    # Far beyond the first output blocks.
    big = b"abcdefgh" * 2_000_000
    comp = zlib.compress(big, 1)
    assert native.decompress(comp) == big
    assert native.decompress(comp, 15, 1) == big
    assert native.decompress(comp, 15, len(big)) == big


def test_decompress_trailing_data_ignored_like_zlib():
    comp = zlib.compress(DATA) + b"trailing garbage"
    assert native.decompress(comp) == zlib.decompress(comp) == DATA


COMP = zlib.compress(DATA)


@pytest.mark.parametrize("data, wbits", [
    (b"garbage!", 15),
    (b"", 15),
    (b"x", 15),
    (COMP[:-5], 15),                 # truncated: no end of stream
    (COMP[:20], 15),
    (COMP[:2], 15),
    (COMP[:100] + b"\xff" * 50 + COMP[150:], 15),
    (COMP, -15),                     # zlib stream read as raw deflate
    (zcompress(DATA, wbits=-15), 15),
    (zcompress(DATA, wbits=31), 15),
    (COMP, 31),
    (COMP, 9),                       # window too small for the stream
    (COMP, 7), (COMP, 100), (COMP, -7), (COMP, 16), (COMP, -16),  # bad wbits
], ids=lambda v: str(v) if isinstance(v, int) else "%dB" % len(v))
def test_decompress_errors_match_zlib(data, wbits):
    for bufsize in (16384, 1):
        assert_same_outcome(lambda: native.decompress(data, wbits, bufsize),
                            lambda: zlib.decompress(data, wbits, bufsize))


def test_decompress_errors_are_zlib_error():
    with pytest.raises(zlib.error) as info:
        native.decompress(b"not compressed")
    assert str(info.value) == outcome(zlib.decompress, b"not compressed")[1]
    with pytest.raises(zlib.error, match="incomplete or truncated stream"):
        native.decompress(COMP[:-5])


def test_decompress_bufsize_negative():
    assert_same_outcome(lambda: native.decompress(COMP, 15, -1),
                        lambda: zlib.decompress(COMP, 15, -1))
    with pytest.raises(ValueError, match="bufsize must be non-negative"):
        native.decompress(COMP, bufsize=-5)


def test_compress_decompress_round_trip_many_sizes():
    for n in [0, 1, 2, 100, 32767, 32768, 32769, 65536 + 3]:
        data = (TEXT * 20)[:n]
        assert native.decompress(native.compress(data)) == data


# --------------------------------------------------------------------------
# read_file

@pytest.fixture
def datafile(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(DATA * 4)
    return p


def read_py(path):
    with open(path, "rb") as f:
        return f.read()


def test_read_file_path_types(datafile):
    want = datafile.read_bytes()
    assert native.read_file(str(datafile)) == want
    assert native.read_file(os.fsencode(str(datafile))) == want
    assert native.read_file(datafile) == want
    assert type(native.read_file(datafile)) is bytes


def test_read_file_empty_and_large(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert native.read_file(empty) == b""
    big = tmp_path / "big"
    content = _rng.randbytes(3 * 1024 * 1024 + 17)
    big.write_bytes(content)
    assert native.read_file(big) == content


def test_read_file_relative_path(datafile, monkeypatch):
    monkeypatch.chdir(datafile.parent)
    assert native.read_file(datafile.name) == datafile.read_bytes()


@pytest.mark.parametrize("path", ["/proc/version", "/proc/self/cmdline",
                                  "/proc/self/environ"])
def test_read_file_proc(path):
    # /proc files report size 0: the kernel must read until EOF.
    if not os.path.exists(path):
        pytest.skip("no %s" % path)
    assert native.read_file(path) == read_py(path)


def test_read_file_fifo(tmp_path, pool):
    # A pipe has no size either, and its data arrives in pieces.  (On the
    # pool, so a regression cannot hang the test run.)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    payload = _rng.randbytes(200_000)

    def writer():
        with open(fifo, "wb") as f:
            for i in range(0, len(payload), 7000):
                f.write(payload[i:i + 7000])
                f.flush()

    f = pool.submit(native.read_file, fifo)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert f.result(HANG_TIMEOUT) == payload
    t.join(HANG_TIMEOUT)


def assert_same_oserror(native_call, py_call):
    """The same OSError subclass, errno, strerror, filename (as open() sets
    it: a str or bytes, also for a pathlib.Path) and message."""
    with pytest.raises(OSError) as want:
        py_call()
    with pytest.raises(OSError) as got:
        native_call()
    g, w = got.value, want.value
    assert type(g) is type(w)
    assert g.errno == w.errno
    assert g.strerror == w.strerror
    assert g.filename == w.filename
    assert type(g.filename) is type(w.filename)
    assert str(g) == str(w)
    return g


@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_read_file_missing(tmp_path, kind):
    p = tmp_path / "missing"
    path = {"str": str(p), "bytes": os.fsencode(str(p))}[kind]
    exc = assert_same_oserror(lambda: native.read_file(path), lambda: read_py(path))
    assert isinstance(exc, FileNotFoundError)
    assert exc.errno == errno.ENOENT
    assert exc.filename == path


def test_read_file_directory(tmp_path):
    exc = assert_same_oserror(lambda: native.read_file(str(tmp_path)),
                              lambda: read_py(str(tmp_path)))
    assert isinstance(exc, IsADirectoryError)
    assert exc.errno == errno.EISDIR


def test_oserror_filename_for_pathlib_path(tmp_path):
    # open(Path) reports filename as the str path (open() calls os.fspath):
    # the kernels' errors should look the same for a pathlib.Path argument.
    # As open(): the filename is os.fspath(path), not the Path object.
    missing = tmp_path / "missing"
    for call in (lambda p: native.read_file(p), lambda p: native.read_into(p, bytearray(4))):
        for path in (missing, tmp_path):
            want_exc = outcome(read_py, path)
            with pytest.raises(OSError) as got:
                call(path)
            assert type(got.value) is want_exc[0]
            assert got.value.filename == str(path), repr(got.value.filename)
            assert str(got.value) == want_exc[1]


def test_read_file_not_a_directory(datafile):
    path = str(datafile) + "/child"
    exc = assert_same_oserror(lambda: native.read_file(path), lambda: read_py(path))
    assert isinstance(exc, NotADirectoryError)


def test_read_file_empty_path():
    exc = assert_same_oserror(lambda: native.read_file(""), lambda: read_py(""))
    assert isinstance(exc, FileNotFoundError)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read files without permission bits")
def test_read_file_permission_denied(datafile):
    datafile.chmod(0)
    try:
        exc = assert_same_oserror(lambda: native.read_file(datafile),
                                  lambda: read_py(datafile))
        assert isinstance(exc, PermissionError)
        assert exc.errno == errno.EACCES
    finally:
        datafile.chmod(0o644)


def test_read_file_bad_path_arguments():
    with pytest.raises(ValueError, match="null"):
        native.read_file("a\0b")
    with pytest.raises(ValueError):
        open("a\0b", "rb")
    with pytest.raises(ValueError):
        native.read_file(b"a\0b")
    for bad in [None, 3.5, ["x"]]:
        with pytest.raises(TypeError):
            native.read_file(bad)
    with pytest.raises(TypeError):
        native.read_file(5)        # an fd is not a path here


# --------------------------------------------------------------------------
# read_into

def readinto_py(path, buf, offset=0):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.readinto(buf)


@pytest.mark.parametrize("offset", [0, 1, 1000, 99_999, 100_000, 100_001, 10**9])
@pytest.mark.parametrize("size", [0, 1, 100, 150_000])
def test_read_into_matches_readinto(tmp_path, offset, size):
    p = tmp_path / "f"
    p.write_bytes(_rng.randbytes(100_000))
    got, want = bytearray(b"\xaa" * size), bytearray(b"\xaa" * size)
    n = native.read_into(p, got, offset)
    assert n == readinto_py(p, want, offset)
    assert got == want


def test_read_into_keyword_offset_and_short_read(datafile):
    content = datafile.read_bytes()
    buf = bytearray(10)
    assert native.read_into(str(datafile), buf, offset=5) == 10
    assert buf == content[5:15]
    buf = bytearray(100)
    assert native.read_into(datafile, buf, len(content) - 30) == 30
    assert buf[:30] == content[-30:]
    assert buf[30:] == bytes(70)               # the rest is untouched
    assert native.read_into(datafile, bytearray(10), len(content)) == 0
    assert native.read_into(datafile, bytearray(10), len(content) + 10**6) == 0


def test_read_into_buffer_types(datafile):
    content = datafile.read_bytes()
    mv = memoryview(bytearray(64))
    assert native.read_into(datafile, mv) == 64
    assert mv.tobytes() == content[:64]
    sub = bytearray(64)
    assert native.read_into(datafile, memoryview(sub)[8:16], 3) == 8
    assert sub[8:16] == content[3:11] and sub[:8] == bytes(8)
    arr = array.array("d", [0.0] * 16)
    assert native.read_into(datafile, arr) == 128
    assert arr.tobytes() == content[:128]


def test_read_into_numpy(datafile):
    numpy = pytest.importorskip("numpy")
    content = datafile.read_bytes()
    a = numpy.zeros(1000, dtype=numpy.uint8)
    assert native.read_into(datafile, a, 10) == 1000
    assert a.tobytes() == content[10:1010]
    b = numpy.zeros((4, 8), dtype=numpy.float64)
    assert native.read_into(datafile, b) == 256
    assert b.tobytes() == content[:256]


def test_read_into_proc_file():
    if not os.path.exists("/proc/version"):
        pytest.skip("no /proc")
    got, want = bytearray(40), bytearray(40)
    assert native.read_into("/proc/version", got) == readinto_py("/proc/version", want)
    assert got == want


def test_read_into_errors(tmp_path, datafile):
    missing = str(tmp_path / "missing")
    exc = assert_same_oserror(lambda: native.read_into(missing, bytearray(4)),
                              lambda: readinto_py(missing, bytearray(4)))
    assert isinstance(exc, FileNotFoundError) and exc.filename == missing
    exc = assert_same_oserror(lambda: native.read_into(str(tmp_path), bytearray(4)),
                              lambda: readinto_py(str(tmp_path), bytearray(4)))
    assert isinstance(exc, IsADirectoryError)
    with pytest.raises(ValueError, match="offset must be non-negative"):
        native.read_into(datafile, bytearray(4), -1)
    with pytest.raises(OverflowError):
        native.read_into(datafile, bytearray(4), 2**63)
    with pytest.raises(TypeError):
        native.read_into(datafile, bytearray(4), 1.0)


# --------------------------------------------------------------------------
# sha256

def test_sha256_small_sizes():
    data = _rng.randbytes(256)
    for n in range(0, 201):
        assert native.sha256(data[:n]) == hashlib.sha256(data[:n]).digest(), n


def test_sha256_large_and_block_edges():
    big = _rng.randbytes(3 * 1024 * 1024 + 5)
    assert native.sha256(big) == hashlib.sha256(big).digest()
    for n in [511, 512, 513, 4095, 4096, 4097, 65535, 65536, 65537]:
        assert native.sha256(big[:n]) == hashlib.sha256(big[:n]).digest(), n


def test_sha256_buffer_types():
    numpy = pytest.importorskip("numpy")
    a = numpy.arange(1000, dtype=numpy.int32)
    arr = array.array("q", range(100))
    for obj in [bytearray(DATA), memoryview(DATA)[7:777], a, arr]:
        assert native.sha256(obj) == hashlib.sha256(obj).digest()
    assert type(native.sha256(b"")) is bytes and len(native.sha256(b"")) == 32


# --------------------------------------------------------------------------
# sum_squares

def test_sum_squares_max_constant_is_exact():
    # The documented limit: the largest n whose sum fits 128 bits.
    assert sum_squares_formula(SUM_SQUARES_MAX) < 2**128
    assert sum_squares_formula(SUM_SQUARES_MAX + 1) >= 2**128


def test_sum_squares_small():
    for n in range(-5, 400):
        assert native.sum_squares(n) == sum(i * i for i in range(n)), n


def _first_n_reaching(limit):
    lo, hi = 1, 2**40
    while lo < hi:
        m = (lo + hi) // 2
        if sum_squares_formula(m) >= limit:
            hi = m
        else:
            lo = m + 1
    return lo


def test_sum_squares_beyond_64_bits():
    # Around 2**63 (beyond int64) and 2**64 (the high word becomes non-zero).
    n63 = _first_n_reaching(2**63)
    n64 = _first_n_reaching(2**64)
    cases = [n63 - 1, n63, n63 + 1, 3_100_000, n64 - 1, n64, n64 + 1, 5_000_000,
             10_000_000]
    for n in cases:
        assert native.sum_squares(n) == sum_squares_formula(n), n
    assert native.sum_squares(n64) >= 2**64 > native.sum_squares(n64 - 1)


def test_sum_squares_matches_python_loop_medium():
    n = 200_000
    assert native.sum_squares(n) == sum(i * i for i in range(n))


def test_sum_squares_negative_and_bool():
    assert native.sum_squares(-1) == 0
    assert native.sum_squares(-(2**63)) == 0
    assert native.sum_squares(True) == 0
    assert native.sum_squares(False) == 0


@pytest.mark.parametrize("n", [SUM_SQUARES_MAX + 1, 2**50, 2**62, 2**63 - 1, 2**63,
                               2**64, 2**100, -(2**63) - 1, -(2**100)])
def test_sum_squares_overflow(n):
    t0 = time.monotonic()
    with pytest.raises(OverflowError):
        native.sum_squares(n)
    assert time.monotonic() - t0 < 5     # refused up front, not computed


def test_sum_squares_type_errors():
    for bad in [1.0, "3", None, b"3"]:
        with pytest.raises(TypeError):
            native.sum_squares(bad)


def test_sum_squares_accepts_index_objects():
    class Idx:
        def __index__(self):
            return 10
    assert native.sum_squares(Idx()) == 285
