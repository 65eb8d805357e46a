"""nativepool.ProcessPool: concurrent.futures.ProcessPoolExecutor, with its
channels, queue and bookkeeping in C.

    ProcessPool ----> _Manager ----> _nativepool._ProcCore (C)
    (user's handle)   starts, reaps,   pending tasks, one slot per worker,
                      kills workers;   the collector's wait and the replies
                      the collector
                      thread's loop

Each worker process talks to the parent through its own channel
(np_chan: shared-memory rings, see csrc/runtime/np_chan.h) and runs one task
at a time (_procworker.py).  The collector thread waits on every channel in
C without the GIL; a reply completes its future without the GIL, and the
result is unpickled by whoever reads it first.  What needs Python comes back
to the collector's loop here as an event: a worker that ended (reap it, fail
the task it was running, start a replacement), one to kill (its task is
overdue), an initializer that failed (the pool is broken).

The collector thread holds the _Manager, not the pool, so a pool dropped
without shutdown() is collected like the stdlib's: a finalizer shuts the core
down, queued work finishes, and the workers exit.
"""
import collections
import concurrent.futures
import itertools
import multiprocessing
import os
import signal
import threading
import time
import traceback
import weakref
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback

from . import _nativepool, _procworker
from ._future import Future
from . import _shared

__all__ = ["ProcessPool", "ProcessPoolExecutor", "WorkerDiedError"]


class WorkerDiedError(BrokenProcessPool):
    """The worker process running this task died (it exited, was killed by
    a signal, crashed, or was taken by the OOM killer).  Only this task
    failed: the pool started a replacement and goes on.

    ``pid`` is the worker's process id, ``exitcode`` its exit status as
    ``multiprocessing.Process.exitcode`` gives it (negative: the signal).
    """

    def __init__(self, message, pid=None, exitcode=None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self):
        return (type(self), (self.args[0], self.pid, self.exitcode))


def _with_traceback_cause(exc, err=None):
    """err (or exc) with exc's formatted traceback as a _RemoteTraceback
    __cause__, as the stdlib attaches it to errors of its feeder thread."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    err = exc if err is None else err
    err.__cause__ = _RemoteTraceback('\n"""\n%s"""' % tb)
    return err


def _load_reply(data, fds=None, _load=_shared.load):
    """A worker's reply: the result, or the exception it raised (``fds``:
    its shared buffers, opened by the collector).  One that cannot be
    unpickled here fails its own future with BrokenProcessPool, as in the
    stdlib (whose pool breaks for good; ours goes on)."""
    try:
        return _load(data, fds)
    except Exception as exc:
        raise _with_traceback_cause(exc, BrokenProcessPool(
            "the result of this task could not be unpickled in the parent "
            "process: %s: %s" % (type(exc).__name__, exc)))


def _describe_exit(exitcode):
    if exitcode is None:
        return "ended (exit status unknown)"
    if exitcode >= 0:
        return "exited with code %d" % exitcode
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = "signal %d" % -exitcode
    text = "was killed by signal %d (%s)" % (-exitcode, name)
    if exitcode == -signal.SIGKILL:
        text += ": killed by another process, or by the kernel's OOM killer"
    return text


def _default_context():
    # Safe when the parent has threads (and ours always does: the collector).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context(
        "forkserver" if "forkserver" in methods else "spawn")


def _default_max_workers():
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1


# Every live manager, for the exit and fork hooks below (and for a worker
# started by fork, which forgets every channel it inherited: _channels()).
_live_managers = weakref.WeakSet()


def _channels():
    return [ch for m in list(_live_managers) for ch in list(m.channels.values())]


class _Manager:
    """Starts, reaps and kills the worker processes of one pool, and runs
    the collector thread.  Holds no reference to the pool."""

    _counter = itertools.count(1).__next__

    def __init__(self, ctx, max_workers, initializer, initargs, max_tasks,
                 shared=True):
        self.ctx = ctx
        self.shared = shared          # large buffers in shared memory
        self.forking = ctx.get_start_method() == "fork"
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.core = _nativepool._ProcCore(
            max_workers, lambda: self._spawn(), BrokenProcessPool, max_tasks,
            _load_reply)
        self.processes = {}           # pid -> multiprocessing.Process
        self.channels = {}            # pid -> its _Channel (the core's too)
        self.lock = threading.Lock()  # processes, thread
        self.thread = None
        self.name = "ProcessPool-%d" % self._counter()
        self.forked = False
        _live_managers.add(self)

    # -- starting ---------------------------------------------------------
    def _spawn(self):
        """Start one worker and attach it to the core (called by the core's
        submit, or by the collector to replace a dead worker)."""
        with self.lock:
            if self.thread is None:
                # First, while nothing depends on it: a start that fails
                # (no thread can be made) leaves no worker without a reader.
                t = threading.Thread(target=self._collect_loop, daemon=True,
                                     name=self.name + "-collector")
                t.start()
                self.thread = t
        ch = _nativepool._Channel.create()
        args = (_procworker.ChildFds(ch.child_fds()), self.initializer,
                self.initargs, None, self.forking, self.shared)
        p = self.ctx.Process(target=_procworker.main, args=args,
                             name="%s-worker" % self.name)
        p.start()
        ch.child_started(p.pid)
        with self.lock:
            self.processes[p.pid] = p
            self.channels[p.pid] = ch
        self.core._attach(ch, p.pid)

    # -- the collector ----------------------------------------------------
    def _collect_loop(self):
        core = self.core
        while True:
            try:
                ev = core._collect()
            except BaseException as exc:   # no memory, a broken wait
                self._fail_all("the ProcessPool's collector failed: %r" % exc)
                break
            if ev is None:
                break
            kind, slot, pid = ev[:3]
            if kind == "gone":
                self._reap(slot, pid)
            elif kind == "kill":
                self._kill(pid)
            elif kind == "init_failed":
                self._init_failed(ev[3])
        self._join_processes()

    def _reap(self, slot, pid):
        with self.lock:
            p = self.processes.pop(pid, None)
            self.channels.pop(pid, None)
        exitcode = None
        if p is not None:
            p.join()
            exitcode = p.exitcode
            if hasattr(p, "close"):
                p.close()
        exc = WorkerDiedError(
            "the worker process (pid %d) running this task %s"
            % (pid, _describe_exit(exitcode)), pid, exitcode)
        self.core._slot_gone(slot, exc)
        try:
            self.core._replace()
        except Exception as e:
            if not self.core._slots():
                self._fail_all("could not start a worker process: %r" % e)

    def _kill(self, pid):
        with self.lock:
            p = self.processes.get(pid)
        if p is not None:
            try:
                p.kill()
            except (ProcessLookupError, ValueError):
                pass

    def _init_failed(self, data):
        import logging
        import pickle
        try:
            exc = pickle.loads(data)
        except BaseException as e:   # pragma: no cover (cannot unpickle)
            exc = e
        logging.getLogger("concurrent.futures").critical(
            "Exception in initializer:", exc_info=exc)
        self.core._set_broken(
            "A process initializer failed, the process pool is not usable "
            "anymore", exc)

    def _fail_all(self, message):
        self.core._set_broken(message)
        for slot, pid, busy in self.core._slots():
            self._kill(pid)

    def _join_processes(self):
        with self.lock:
            procs = list(self.processes.values())
            self.processes.clear()
        for p in procs:
            p.join()

    # -- stopping ---------------------------------------------------------
    def shutdown(self, wait, cancel_futures=False):
        if self.forked:
            return
        self.core._shutdown(cancel_futures)
        if wait:
            self.join()

    def join(self):
        with self.lock:
            t = self.thread
        if t is not None and t is not threading.current_thread():
            t.join()

    def signal_workers(self, operation):
        with self.lock:
            procs = list(self.processes.values())
        for p in procs:
            try:
                if p.is_alive():
                    getattr(p, operation)()
            except (ProcessLookupError, ValueError):
                pass


def _python_exit():
    # Like concurrent.futures.process._python_exit: queued work finishes,
    # workers stop, collectors are joined before the interpreter finalizes.
    managers = [m for m in list(_live_managers) if not m.forked]
    for m in managers:
        m.shutdown(wait=False)
    for m in managers:
        m.join()


threading._register_atexit(_python_exit)


def _after_fork_in_child():
    for m in list(_live_managers):
        m.forked = True
        m.core._forked("this ProcessPool belongs to the parent process "
                       "(the pool does not survive os.fork())")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _result_or_cancel(fut, timeout=None):
    try:
        try:
            return fut.result(timeout)
        finally:
            fut.cancel()
    finally:
        del fut


class ProcessPool(concurrent.futures.ProcessPoolExecutor):
    """A pool of worker processes, ``concurrent.futures.ProcessPoolExecutor``'s
    drop-in replacement, with its channels and bookkeeping in C.

    ProcessPool(max_workers=None, mp_context=None, initializer=None,
                initargs=(), *, max_tasks_per_child=None)

    Beyond the stdlib: a worker that dies fails only the task it was running
    (with :class:`WorkerDiedError`) and is replaced; :meth:`schedule` takes a
    per-task timeout; :meth:`cancel_running` stops a running task.
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None,
                 initargs=(), *, max_tasks_per_child=None):
        if max_workers is None:
            max_workers = _default_max_workers()
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if mp_context is None:
            mp_context = (multiprocessing.get_context("spawn")
                          if max_tasks_per_child is not None
                          and "forkserver" not in multiprocessing.get_all_start_methods()
                          else _default_context())
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if mp_context.get_start_method(allow_none=False) == "fork":
                raise ValueError("max_tasks_per_child is incompatible with"
                                 " the 'fork' multiprocessing start method;"
                                 " supply a different mp_context.")
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._initializer = initializer
        self._initargs = initargs
        self._max_tasks_per_child = max_tasks_per_child
        self._shared = _shared.enabled()
        self._manager = _Manager(mp_context, max_workers, initializer,
                                 initargs, max_tasks_per_child, self._shared)
        self._core = self._manager.core
        # Dropped without shutdown(): finish queued work, stop the workers.
        self._finalizer = weakref.finalize(self, self._manager.shutdown, False)

    # -- submitting -------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs):
        try:
            payload, fds = _shared.encode_task(fn, args, kwargs, self._shared)
        except Exception as exc:
            return self._failed(exc)
        return self._core.submit(payload, None, fds)

    submit.__doc__ = concurrent.futures.Executor.submit.__doc__

    def schedule(self, fn, args=(), kwargs=None, *, timeout=None):
        """Like ``submit(fn, *args, **kwargs)``, with a per-task timeout: if
        the task runs longer than ``timeout`` seconds, its worker process is
        killed (and replaced) and the future fails with ``TimeoutError``.
        The timeout counts from the moment the task starts running."""
        if timeout is not None and not (timeout > 0):
            raise ValueError("timeout must be a positive number of seconds")
        try:
            payload, fds = _shared.encode_task(fn, tuple(args),
                                               dict(kwargs or {}), self._shared)
        except Exception as exc:
            return self._failed(exc)
        return self._core.submit(payload, timeout, fds)

    def _failed(self, exc):
        # Like the stdlib's feeder thread: an argument that cannot be
        # pickled fails that one future (if the pool is open).
        self._core._check_open()
        fut = Future()
        fut.set_running_or_notify_cancel()
        fut.set_exception(_with_traceback_cause(exc))
        return fut

    def cancel_running(self, future):
        """Cancel ``future`` even if it is running: a pending one is
        cancelled as by ``future.cancel()``; a running one has its worker
        process killed (and replaced), and fails with ``CancelledError``.
        Returns False if it was already done (or is not this pool's)."""
        if future.cancel():
            return True
        pid = self._core._cancel_running(future)
        if pid is None:
            return False
        if pid is not True:    # True: it was waiting to run again
            self._manager._kill(pid)
        return True

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        """Returns an iterator equivalent to map(fn, iter), run in worker
        processes; ``chunksize`` items travel per task, and ``buffersize``
        (Python 3.14's) bounds how many tasks are submitted ahead of the
        results consumed."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if timeout is not None:
            end_time = timeout + time.monotonic()
        if chunksize > 1 and len(iterables) == 1:
            # A chunk of the items themselves, not of 1-tuples: pickle
            # memoizes every tuple, which made pickling the chunks most of
            # the parent's work.
            it = iter(iterables[0])
        else:
            it = zip(*iterables)
        if chunksize == 1:
            tasks = it
            call = (lambda args: (fn,) + args)
        elif len(iterables) == 1:
            tasks = iter(lambda: tuple(itertools.islice(it, chunksize)), ())
            call = (lambda chunk: (_procworker.map_chunk, fn, chunk))
        else:
            from concurrent.futures.process import _process_chunk
            tasks = iter(lambda: tuple(itertools.islice(it, chunksize)), ())
            call = (lambda chunk: (_process_chunk, fn, chunk))
        if buffersize:
            fs = collections.deque(
                self.submit(*call(t)) for t in itertools.islice(tasks, buffersize))
        else:
            fs = [self.submit(*call(t)) for t in tasks]
        pool_ref = weakref.ref(self)

        def result_iterator():
            try:
                fs.reverse()
                while fs:
                    if buffersize:
                        pool = pool_ref()
                        if pool is not None:
                            t = next(tasks, None)
                            if t is not None:
                                fs.appendleft(pool.submit(*call(t)))
                        pool = None
                    if timeout is None:
                        r = _result_or_cancel(fs.pop())
                    else:
                        r = _result_or_cancel(fs.pop(), end_time - time.monotonic())
                    if chunksize == 1:
                        yield r
                    else:
                        yield from r
            finally:
                for future in fs:
                    future.cancel()
        return result_iterator()

    # -- stopping ---------------------------------------------------------
    def shutdown(self, wait=True, *, cancel_futures=False):
        self._manager.shutdown(wait, cancel_futures)

    shutdown.__doc__ = concurrent.futures.Executor.shutdown.__doc__

    def _force_shutdown(self, operation):
        self.shutdown(wait=False, cancel_futures=True)
        self._core._terminate()
        self._manager.signal_workers(operation)

    def terminate_workers(self):
        """Shut down without waiting, cancel what is pending, and send
        SIGTERM to every worker; their running tasks fail with
        WorkerDiedError.  (Python 3.14's method.)"""
        self._force_shutdown("terminate")

    def kill_workers(self):
        """As terminate_workers(), with SIGKILL."""
        self._force_shutdown("kill")

    # -- introspection ----------------------------------------------------
    @property
    def _processes(self):
        """The worker processes: {pid: multiprocessing.Process} (a copy)."""
        with self._manager.lock:
            return dict(self._manager.processes)

    @property
    def _broken(self):
        return self._core.broken

    def __repr__(self):
        s = self._core._stats()
        return "<%s.%s max_workers=%d workers=%d running=%d pending=%d%s>" % (
            type(self).__module__, type(self).__qualname__, self._max_workers,
            s["workers"], s["running"], s["pending"],
            " shut down" if s["closed"] else "")


ProcessPoolExecutor = ProcessPool
