"""Large buffers cross between a ProcessPool and its workers in shared
memory (private).

Tasks and results are pickled with protocol 5; each pickle buffer of at
least _pickling.OOB_MIN bytes (a numpy array's data anywhere in it; a large
bytes or bytearray argument or result at the top level, which
_pickling.LargeBytes turns into a buffer) goes out of band instead of into
the pickle.  The sender copies each one into a memfd of its own (one copy,
made by the kernel in os.write) and sends, ahead of the pickle:

    b"B", the sender's pid (u32), the buffer count n (u32),
    n times: the memfd's fd number in the sender (i32), its size (u64),
             1 if the buffer is read-only (u8)

The receiver opens each memfd through /proc/<sender pid>/fd/<fd> (a new
open of the same memory: no fd passing over a socket) and loads the pickle
with these buffers:
  - a writable one (a numpy array's) is the memfd mapped copy-on-write: the
    array is rebuilt over the map without a copy, and stays writable, its
    writes private to the receiver (as with a copy);
  - a read-only one (a bytes object's) is read into a new bytes object
    (_nativepool._read_shared, one copy by the kernel), which pickle hands
    to the rebuilding function as it is, so that the bytes received is that
    object (bytes(b) is b).
A plain message starts with pickle's PROTO opcode (0x80), never b"B".

Who closes what, so that no memfd outlives its use whoever dies:
  - a task's: the parent's C core owns them from submit on (core.submit's
    fds) and closes them when the worker answers (the worker opened them
    before running the task), when the worker is gone, or when the task
    never runs;
  - a result's: the worker keeps them until it reads its next message; the
    collector opens them (procpool_collect.c) as soon as the reply arrives,
    before it sends that worker anything; the future holds them until its
    result is loaded, then closes them.  A worker killed between its reply
    and that open loses them: the future fails with BrokenProcessPool.
Once every fd and map of a memfd is gone, the kernel frees its memory.

NATIVEPOOL_NO_SHARED_BUFFERS=1 (read when a pool is created, and passed to
its workers) keeps every buffer inside the pickle, for a system where one
process may not open another's /proc/<pid>/fd.
"""
import mmap
import os
import pickle
import struct

from . import _nativepool
from ._pickling import OOB_MIN, LargeBytes, dumps, dumps_result, large_bytes

__all__ = ["enabled", "encode_task", "encode_result", "load", "close_inherited"]

MARK = 0x42   # b"B"
_HEAD = struct.Struct("<cII")
_BUF = struct.Struct("<iQB")
MEMFD_NAME = "nativepool-buffer"


def enabled():
    """False when NATIVEPOOL_NO_SHARED_BUFFERS is set (not empty or 0)."""
    return (hasattr(os, "memfd_create")
            and os.environ.get("NATIVEPOOL_NO_SHARED_BUFFERS", "") in ("", "0"))


def encode_task(fn, args, kwargs, shared=True):
    """(payload, fds) for core.submit: the task's message after its id, and
    the memfds it names (None when every buffer is in the pickle).  The
    caller hands the fds to the core at once."""
    if not shared:
        return dumps((fn, args, kwargs)), None
    args = large_bytes(args)
    if kwargs:
        values = large_bytes(tuple(kwargs.values()))
        if type(values) is tuple:
            kwargs = dict(zip(kwargs, values))
    buffers = []
    data = dumps((fn, args, kwargs), buffers)
    if not buffers:
        return data, None
    return _share(data, buffers)


def encode_result(value, shared=True):
    """(data, fds) for a worker's reply: the result pickled, its large
    buffers in memfds the worker keeps open (fds) until the parent has
    opened them, or None."""
    if not shared:
        return dumps_result(value), None
    if (type(value) is bytes or type(value) is bytearray) and len(value) >= OOB_MIN:
        value = LargeBytes(value)
    buffers = []
    data = dumps_result(value, buffers)
    if not buffers:
        return data, None
    return _share(data, buffers)


def _share(data, buffers):
    fds = []
    try:
        head = [_HEAD.pack(b"B", os.getpid(), len(buffers))]
        for pb in buffers:
            fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC)
            fds.append(fd)
            with pb.raw() as raw:
                size = raw.nbytes
                done = 0
                while done < size:   # os.write releases the GIL
                    done += os.write(fd, raw[done:])
                head.append(_BUF.pack(fd, size, raw.readonly))
        head.append(data)
        return b"".join(head), tuple(fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def load(view, fds=None):
    """The object pickled in ``view`` (a memoryview of a message after its
    header), its shared buffers loaded.  The worker opens a task's buffers
    itself (fds None); the parent's collector has opened a result's (fds:
    one per buffer, -1 for one it could not open; the caller closes them)."""
    if not view or view[0] != MARK:
        return pickle.loads(view)
    _, pid, n = _HEAD.unpack_from(view)
    pos = _HEAD.size
    buffers = []
    for i in range(n):
        fdnum, size, readonly = _BUF.unpack_from(view, pos)
        pos += _BUF.size
        if fds is None:
            fd = _open(pid, fdnum)
            try:
                buffers.append(_buffer(fd, size, readonly))
            finally:
                os.close(fd)
        elif fds[i] < 0:
            raise OSError("the shared-memory buffers of this result were "
                          "lost: worker process %d exited before the "
                          "parent could open them" % pid)
        else:
            buffers.append(_buffer(fds[i], size, readonly))
    return pickle.loads(view[pos:], buffers=buffers)


def _open(pid, fdnum):
    path = "/proc/%d/fd/%d" % (pid, fdnum)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(
            exc.errno,
            "the worker could not open a shared-memory buffer of its task "
            "(%s: %s); setting NATIVEPOOL_NO_SHARED_BUFFERS=1 sends large "
            "buffers inside the pickle instead" % (path, exc.strerror)) from None


def _buffer(fd, size, readonly):
    """The buffer pickle.loads gets for a shared buffer of fd."""
    if readonly:
        return _nativepool._read_shared(fd, size)
    # Copy-on-write: the receiver may write to an array it was given, as
    # it may to one the stdlib pool unpickles; the sender never sees those
    # writes.
    return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE,
                    prot=mmap.PROT_READ | mmap.PROT_WRITE)


def close_inherited():
    """In a forked worker: close the parent's buffer memfds inherited with
    the fork (of tasks in flight then), which would otherwise keep their
    memory for as long as this worker lives."""
    target = "/memfd:" + MEMFD_NAME
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        try:
            if os.readlink("/proc/self/fd/" + name).startswith(target):
                os.close(int(name))
        except (OSError, ValueError):
            pass
