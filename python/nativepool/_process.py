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
import gc
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback

from . import _nativepool, _procworker
from ._future import Future
from . import _shared

__all__ = ["ProcessPool", "ProcessPoolExecutor", "TransferError",
           "WorkerDiedError"]


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


class TransferError(BrokenProcessPool):
    """A task, or its result, could not cross between the parent and a
    worker process: pickling or unpickling it raised.  ``__cause__`` is
    the original error (from a worker, with its traceback attached as the
    stdlib attaches a task's: a ``_RemoteTraceback`` as its own
    ``__cause__``).  Only this task failed: the pool goes on (the stdlib's
    pool breaks for good, failing every future with BrokenProcessPool,
    which this is, so ``except BrokenProcessPool`` works for both).

    Raised by the future of a task whose arguments the worker could not
    unpickle, or whose result (or exception) the parent could not
    unpickle; and, for SystemExit or KeyboardInterrupt raised while
    pickling a result in the worker, instead of that exception (it never
    comes out of ``result()`` as such).  An ordinary error while pickling
    is the future's exception itself, as in the stdlib: a task's
    arguments that cannot be pickled fail its future with pickle's error
    (``submit`` itself does not raise), and so does a result that cannot.
    """

    def __reduce__(self):
        # A worker sends one to the parent: the cause goes too (pickle
        # drops __cause__), with its traceback as text, as the stdlib's
        # _ExceptionWithTraceback sends a task's exception.
        cause = self.__cause__
        tb = None
        if cause is not None:
            tb = _traceback_text(cause)
        return (_rebuild_transfer_error,
                (type(self), self.args, cause, tb), self.__dict__ or None)


def _traceback_text(exc):
    return '\n"""\n%s"""' % "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))


def _rebuild_transfer_error(cls, args, cause, tb):
    err = cls(*args)
    if cause is not None:
        if tb is not None:
            cause.__cause__ = _RemoteTraceback(tb)
        err.__cause__ = cause
    return err


def _transfer_message(what, exc):
    return "%s: %s: %s" % (what, type(exc).__name__, exc)


def _with_traceback_cause(exc, err=None):
    """err (or exc) with exc's formatted traceback as a _RemoteTraceback
    __cause__, as the stdlib attaches it to errors of its feeder thread."""
    err = exc if err is None else err
    err.__cause__ = _RemoteTraceback(_traceback_text(exc))
    return err


def _load_reply(data, fds=None, _load=_shared.load, _error=TransferError,
                _message=_transfer_message, _finalizing=sys.is_finalizing):
    """A worker's reply: the result, or the exception it raised (``fds``:
    its shared buffers, opened by the collector).  One that cannot be
    unpickled here fails its own future with TransferError, whatever the
    unpickler raised (SystemExit too: it must not come out of result() as
    such); the stdlib's pool fails it, and every other, with
    BrokenProcessPool.

    ``data`` is a view of memory the caller frees once this returns: it
    is released here, so that a frame of an unpickling error's traceback
    keeping it cannot read that memory later.  (Names are bound as
    defaults: at module teardown they would be None.)"""
    try:
        return _load(data, fds)
    except BaseException as exc:
        what = ("this task's result or exception could not be unpickled "
                "in the parent process")
        if _finalizing():
            what += " (the interpreter is shutting down)"
        raise _error(_message(what, exc)) from exc
    finally:
        data.release()


# References to _load_reply besides those of cores and tasks (the module's
# name, getrefcount's argument): see _settle_unread_failures.
_LOAD_REPLY_REFS = sys.getrefcount(_load_reply)


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
        method = ctx.get_start_method()
        self.forking = method == "fork"
        # A child of fork or spawn starts with SIGINT blocked, until the
        # worker has set its own handler (_procworker.ignore_interrupts):
        # a Ctrl-C sent to the process group while it starts stays pending,
        # and then means nothing, instead of a KeyboardInterrupt traceback
        # from a worker still importing.  (A forkserver child starts from
        # the server, whose mask is not ours; it is quiet anyway: an error
        # before our code runs ends it silently.)
        self.block_sigint = (method in ("fork", "spawn")
                             and hasattr(signal, "pthread_sigmask"))
        self.initializer = initializer
        self.initargs = initargs      # as given, as the stdlib passes them
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
        if self.block_sigint:
            if not self.forking:
                # spawn starts the resource tracker on first use, which
                # unblocks SIGINT when it has started: before, then.
                from multiprocessing import resource_tracker
                resource_tracker.ensure_running()
            # Blocked, not ignored: a Ctrl-C meant for this process is
            # delivered to another thread, or right after, never lost.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                p.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        else:
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
        # The worker has logged it ("Exception in initializer:" on the
        # concurrent.futures logger, as the stdlib's workers do, where the
        # user's handlers for workers see it); here it only breaks the pool,
        # as the cause of the BrokenProcessPool.
        import pickle
        try:
            exc = pickle.loads(data)
        except BaseException as e:   # pragma: no cover (cannot unpickle)
            exc = e
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

    def cancel_running(self, future):
        """ProcessPool.cancel_running for a future that is not pending."""
        pid = self.core._cancel_running(future)
        if pid is None:
            return False
        # Stopped on purpose, as cancel() stops a pending one: its
        # CancelledError is nobody's news, never logged as unretrieved.
        _settle(future, _QUIET)
        if pid is not True:    # True: it was waiting to run again
            self._kill(pid)
        return True

    def interrupt(self):
        """What Ctrl-C means for this pool (an interrupted ``with`` block,
        an interpreter exiting on KeyboardInterrupt): its workers ignore
        SIGINT, so the parent decides.  No new tasks; pending ones are
        cancelled, and so are running ones (their workers are killed and
        not replaced), all quietly: the user stopped them.  Then nothing
        is left to wait for: shutdown(wait=True) returns at once."""
        if self.forked:
            return
        self.core._shutdown(True)
        for f in _running_futures():
            self.cancel_running(f)


# _settle(future, how): the C hook for a future's outcome after the fact
# (procpool.c): at exit, unpickle and log an unread failure now; never log
# its exception; that, and let go of its outcome.
_settle = _nativepool._ProcCore._settle
_AT_EXIT, _QUIET, _RELEASE = 0, 1, 2


def _running_futures():
    """Every running nativepool future (of any pool: _cancel_running tells
    which are a pool's).  The C core does not list its tasks; this is for
    a Ctrl-C, not for a hot path."""
    return [o for o in gc.get_objects() if type(o) is Future and o.running()]


def _exiting_on_interrupt():
    # The main thread ended with a KeyboardInterrupt nobody caught (the
    # interpreter reported it, which sets sys.last_value; 3.12 also sets
    # sys.last_exc).  In an interactive session it is the last interrupt
    # at the prompt, which also means: stop.
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _settle_unread_failures():
    """At exit, before module teardown: a failed reply nobody has read, of
    a future still alive, is unpickled and logged now, with the task's own
    exception.  Left to the future's finalizer at module teardown, the
    unpickling failed (a bogus BrokenProcessPool was logged), and so may
    the logging.  Each task whose reply is not unpickled yet holds a
    reference to _load_reply (as each live core does): without such
    tasks, the heap is not scanned."""
    managers = list(_live_managers)
    if any(m.forked for m in managers):
        # A fork of a process with pools (a worker started by fork, too):
        # the futures it has are copies of the parent's, whose own exit
        # reports them.
        return
    if sys.getrefcount(_load_reply) - _LOAD_REPLY_REFS <= len(managers):
        return
    for o in gc.get_objects():
        if type(o) is Future:
            _settle(o, _AT_EXIT)


def _stop_pools(interrupted):
    managers = [m for m in list(_live_managers) if not m.forked]
    if interrupted:
        for m in managers:
            m.interrupt()
    for m in managers:
        m.shutdown(wait=False)
    for m in managers:
        m.join()


def _python_exit():
    # Like concurrent.futures.process._python_exit: queued work finishes,
    # workers stop, collectors are joined before the interpreter finalizes;
    # unless the program ends on Ctrl-C: then, as for an interrupted `with`
    # block, what is pending or running is cancelled (the stdlib's workers
    # die of the SIGINT).  A Ctrl-C meanwhile does the same (a second one
    # is not caught).
    try:
        _stop_pools(_exiting_on_interrupt())
    except KeyboardInterrupt:
        _stop_pools(True)
    _settle_unread_failures()


threading._register_atexit(_python_exit)


def _after_fork_in_child():
    for m in list(_live_managers):
        m.forked = True
        m.core._forked("this ProcessPool belongs to the parent process "
                       "(the pool does not survive os.fork())")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _take(fut, timeout, stop):
    """The result of fut, one of map's futures, which then lets go of it:
    once the consumer drops the result, nothing of the map's keeps it (the
    future may live on a while, as the collector's reference to it waits
    for the next GIL holder).  Not done by its timeout: cancelled.  A
    Ctrl-C while waiting: stop(fut) (the map's own tasks stop)."""
    try:
        try:
            r = fut.result(timeout)
        except KeyboardInterrupt:
            stop(fut)
            raise
        finally:
            fut.cancel()
        _settle(fut, _RELEASE)
        return r
    finally:
        del fut


class ProcessPool(concurrent.futures.ProcessPoolExecutor):
    """A pool of worker processes, ``concurrent.futures.ProcessPoolExecutor``'s
    drop-in replacement, with its channels and bookkeeping in C.

    ProcessPool(max_workers=None, mp_context=None, initializer=None,
                initargs=(), *, max_tasks_per_child=None)

    Beyond the stdlib: a worker that dies fails only the task it was running
    (with :class:`WorkerDiedError`) and is replaced; a task or result that
    cannot be pickled across fails only itself (:class:`TransferError`);
    :meth:`schedule` takes a per-task timeout; :meth:`cancel_running` stops
    a running task.

    Workers ignore Ctrl-C (SIGINT, which a terminal or Jupyter sends to the
    whole process group): the parent decides.  A ``with`` block left by
    KeyboardInterrupt, or a program ending on one, cancels what is pending
    and what is running (instead of waiting for it); a Ctrl-C while
    ``map``'s iterator waits stops that map's tasks.  The pool goes on.
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
        # Asked here, as the stdlib asks it (an object that is no context
        # fails here, before the initializer is looked at).
        start_method = mp_context.get_start_method(allow_none=False)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if start_method == "fork":
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
        process killed (and replaced), and fails with ``CancelledError``
        (which, like a cancellation, is never logged as unretrieved).
        Returns False if it was already done (or is not this pool's)."""
        if future.cancel():
            return True
        return self._manager.cancel_running(future)

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
        # map's futures are its own: the user never holds one, so nobody
        # is told of an exception the iterator does not raise (the stdlib's
        # futures never log).
        def submit(pool, task):
            f = pool.submit(*call(task))
            _settle(f, _QUIET)
            return f

        if buffersize:
            fs = collections.deque(
                submit(self, t) for t in itertools.islice(tasks, buffersize))
        else:
            fs = [submit(self, t) for t in tasks]
        pool_ref = weakref.ref(self)
        manager_ref = weakref.ref(self._manager)

        def stop(fut):
            # Ctrl-C while waiting for this map: what is its own stops, the
            # running tasks too (their workers ignore SIGINT: we decide).
            manager = manager_ref()
            for f in itertools.chain((fut,), fs):
                if not f.cancel() and manager is not None:
                    manager.cancel_running(f)

        def result_iterator():
            try:
                fs.reverse()
                while fs:
                    if buffersize:
                        pool = pool_ref()
                        if pool is not None:
                            t = next(tasks, None)
                            if t is not None:
                                fs.appendleft(submit(pool, t))
                            t = None
                        pool = None
                    left = None if timeout is None else end_time - time.monotonic()
                    # No local names the result: suspended at yield, the
                    # iterator must not keep what the consumer took.
                    if chunksize == 1:
                        yield _take(fs.pop(), left, stop)
                    else:
                        # Popped as they go (nothing keeps the ones
                        # taken), at C speed.
                        chunk = _take(fs.pop(), left, stop)
                        chunk.reverse()
                        yield from itertools.starmap(
                            chunk.pop, itertools.repeat((), len(chunk)))
            finally:
                for future in fs:
                    future.cancel()
        return result_iterator()

    # -- stopping ---------------------------------------------------------
    def shutdown(self, wait=True, *, cancel_futures=False):
        self._manager.shutdown(wait, cancel_futures)

    shutdown.__doc__ = concurrent.futures.Executor.shutdown.__doc__

    def __exit__(self, exc_type, exc_val, exc_tb):
        # shutdown(wait=True), as the stdlib's; but a block left by Ctrl-C
        # first cancels what is pending and what is running (its workers
        # ignore SIGINT, so nothing else would stop them, and the wait could
        # last for ever), quietly.
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._manager.interrupt()
        self.shutdown(wait=True)
        return False

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
