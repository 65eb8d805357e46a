"""The loop of a ProcessPool worker process (private: issue 5 builds the
pool on it and on _nativepool._Channel).

Wire format, one channel message each (np_chan delivers messages whole and
in order):

  parent -> worker   TASK: 8-byte little-endian task id, then
                     pickle((fn, args, kwargs)) (protocol 5), its large
                     buffers out of band in shared memory (_shared.py)
                     STOP: the empty message: finish and exit 0
  worker -> parent   8-byte task id, 1 status byte, then a pickle:
                     OK      the result
                     ERROR   the exception, wrapped as concurrent.futures
                             does (the remote traceback becomes the
                             __cause__ of the exception re-raised in the
                             parent)
                     RETIRED task id -1: max_tasks_per_child reached; the
                             worker exits 0 right after
                     INIT_FAILED task id -1: the initializer raised (its
                             exception follows); the worker exits 1
                     STARTED (no pickle) the task has begun: sent first
                             for a task whose id has bit 63 (TIMED) set,
                             cleared in the reply; its timeout starts

The id is outside the pickle so that a task whose payload cannot be
unpickled here (a function the worker cannot import) still fails only its
own future.  The loop waits in C with the GIL released; it ends on STOP, or
when the parent is gone (EOFError from the channel: a worker never outlives
its parent).
"""
import os
import pickle
import struct
import sys
from concurrent.futures.process import _ExceptionWithTraceback

from . import _nativepool, _shared

OK = 0
ERROR = 1
RETIRED = 2
INIT_FAILED = 3
STARTED = 4
TIMED = 1 << 63   # in a TASK's id: say STARTED first (its timeout starts)

_ID = struct.Struct("<q")
_TASK_ID = struct.Struct("<Q")
_REPLY = struct.Struct("<qB")
HEADER = _ID.size


class ChildFds:
    """A channel's child fds, as a multiprocessing Process argument: they
    travel as reduction.DupFd (inherited, passed to the spawned
    interpreter, or sent to the forkserver), like a Connection's fd."""

    def __init__(self, fds):
        self.fds = tuple(fds)

    def __reduce__(self):
        from multiprocessing import reduction
        return (_rebuild_fds, ([reduction.DupFd(f) for f in self.fds],))


def _rebuild_fds(dups):
    # Unpickled in a new worker (spawn, forkserver) before anything of
    # ours runs: the earliest point to stop reacting to Ctrl-C.
    ignore_interrupts()
    return ChildFds([d.detach() for d in dups])


def _ignore_sigint(signum, frame):
    pass


def ignore_interrupts():
    """A worker ignores SIGINT: Ctrl-C in a terminal or a notebook reaches
    the whole process group, and the parent decides what it means (it
    cancels what it waits for, _process.py), so an idle worker prints no
    KeyboardInterrupt traceback and a running task is not broken off.  A
    handler that does nothing rather than SIG_IGN: a program a task starts
    with exec gets the default disposition back (an ignored signal would
    stay ignored there).  Then SIGINT is unblocked: the pool starts a fork
    or spawn child with it blocked (_Manager._spawn), so that one sent
    meanwhile waited, and now means nothing."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _ignore_sigint)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def encode_task(task_id, fn, args=(), kwargs=None):
    """The TASK message for fn(*args, **kwargs) (the parent's side)."""
    return _ID.pack(task_id) + pickle.dumps((fn, args, kwargs or {}), protocol=5)


def decode_reply(msg):
    """(task_id, status, value) from a worker's message (the parent's side).
    An ERROR value is the exception to raise, its remote traceback attached
    as __cause__, as concurrent.futures.ProcessPoolExecutor raises it."""
    task_id, status = _REPLY.unpack_from(msg)
    value = pickle.loads(memoryview(msg)[_REPLY.size:])
    return task_id, status, value


# The memfds of the last reply's shared buffers (_shared.py): the parent
# opens them when the reply arrives, before it sends anything else, so they
# are closed when the next message comes (or when the process ends).
_held = []
_shared_ok = True   # main()'s shared


def _release_held():
    while _held:
        os.close(_held.pop())


def _reply(ch, task_id, status, value):
    """Send ``value`` as the reply ``status`` for ``task_id``.  A result (or
    exception) that cannot be pickled fails that task only: an OK reply
    becomes ERROR; an ERROR or INIT_FAILED one stays what it is, with the
    pickling error in place of its exception."""
    try:
        data, fds = _shared.encode_result(value, _shared_ok)
    except Exception as exc:
        # As the stdlib's worker: the pickling error is this task's failure
        # (raised by its future as it is, its traceback attached).
        data, fds = _dumps_error(_error(exc)), None
        status = ERROR if status == OK else status
    except BaseException as exc:
        # SystemExit or KeyboardInterrupt raised while pickling must not
        # come out of result() as if the task had raised it.
        what = ("the result of this task" if status == OK
                else "the exception raised in the worker")
        data, fds = _dumps_error(_transfer_error(
            what + " could not be pickled in the worker process", exc)), None
        status = ERROR if status == OK else status
    try:
        ch.send(_REPLY.pack(task_id, status) + data)
    finally:
        if fds:
            _held.extend(fds)


def _dumps_error(err):
    """err pickled for an ERROR reply; if even that fails (its cause, or
    an exception's arguments, cannot be pickled), a TransferError that
    carries the text of what happened instead."""
    try:
        return pickle.dumps(err, protocol=5)
    except BaseException as exc:
        from ._process import TransferError, _traceback_text
        text = _traceback_text(exc)
        return pickle.dumps(TransferError(
            "the reply of this task could not be pickled in the worker "
            "process: %s: %s\n%s" % (type(exc).__name__, exc, text)),
            protocol=5)


def _transfer_error(what, exc):
    """A TransferError for exc, raised while (un)pickling in the worker;
    exc is its __cause__ (it travels with its traceback)."""
    from ._process import TransferError, _transfer_message
    err = TransferError(_transfer_message(what, exc))
    err.__cause__ = exc
    return err


PARENT_FD = 5   # NP_CHAN_FD_PARENT: readable once the parent is gone


def _watch_parent(fd):
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():
        pass
    # The parent is gone (killed, crashed): nobody will read our result.
    # Do not finish the task: a worker never outlives its parent.
    os._exit(1)


def _start_parent_watch(fd):
    """A task can run for hours without reading the channel, the only place
    the loop notices a dead parent; this thread (waiting in poll without the
    GIL, on a pidfd of the parent or the read end of a pipe only the parent
    held) ends the process as soon as the parent is gone."""
    import threading
    threading.Thread(target=_watch_parent, args=(fd,), daemon=True,
                     name="nativepool-parent-watch").start()


def map_chunk(fn, items):
    """A chunk of ProcessPool.map over one iterable: fn of each item."""
    return list(map(fn, items))


def _error(exc):
    return _ExceptionWithTraceback(exc, exc.__traceback__)


def main(fds, initializer=None, initargs=(), max_tasks=None, forked=False,
         shared=True):
    """Run tasks from the channel whose child fds are ``fds`` (a ChildFds
    or a sequence of ints) until STOP, until ``max_tasks`` are done, or
    until the parent is gone.  ``forked``: this process is a fork of the
    pool's: release the copies of the parent's channels it inherited (after
    attaching its own: they own its fds until then).  ``shared``: results
    may put large buffers in shared memory (_shared.py)."""
    ignore_interrupts()   # fork: the first of our code that runs
    if isinstance(fds, ChildFds):
        fds = fds.fds
    ch = _nativepool._Channel.attach(fds)
    if fds[PARENT_FD] >= 0:
        _start_parent_watch(os.dup(fds[PARENT_FD]))
    if forked:
        from . import _process
        for other in _process._channels():
            other._forget()
        _shared.close_inherited()
    else:
        for fd in fds:
            os.close(fd)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            # Here, as the stdlib's workers log it: where the user's
            # handlers for the workers (a QueueHandler) see it.  The parent
            # then breaks the pool, this exception as the cause.
            import logging
            logging.getLogger("concurrent.futures").critical(
                "Exception in initializer:", exc_info=True)
            _reply(ch, -1, INIT_FAILED, _error(exc))
            ch.close()
            sys.exit(1)
    global _shared_ok
    _shared_ok = shared
    done = 0
    while max_tasks is None or done < max_tasks:
        try:
            msg = ch.recv()
        except EOFError:
            break                       # the parent is gone, or closed us
        _release_held()
        if not msg:
            break                       # STOP
        (task_id,) = _TASK_ID.unpack_from(msg)
        if task_id & TIMED:
            task_id &= ~TIMED
            ch.send(_REPLY.pack(task_id, STARTED))
        try:
            fn, args, kwargs = _shared.load(memoryview(msg)[HEADER:])
        except BaseException as exc:
            # Not the task's own failure (and SystemExit from an unpickler
            # must not come out of result() as if fn had raised it).
            _reply(ch, task_id, ERROR, _transfer_error(
                "this task could not be unpickled in the worker process", exc))
        else:
            msg = None
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _reply(ch, task_id, ERROR, _error(exc))
            else:
                _reply(ch, task_id, OK, result)
        # Drop the task's objects before waiting for the next one.
        msg = fn = args = kwargs = result = None
        done += 1
    else:
        _reply(ch, -1, RETIRED, done)
        if _held:
            # The parent opens the last result's buffers, then says STOP.
            try:
                ch.recv()
            except EOFError:
                pass
    _release_held()
    ch.close()
