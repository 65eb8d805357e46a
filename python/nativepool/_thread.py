"""nativepool.ThreadPool: concurrent.futures.ThreadPoolExecutor, in C.

The C type ThreadPoolBase does submit/map/shutdown; this subclass adds the
stdlib constructor (defaults and checks of the running Python) and makes
``isinstance(pool, concurrent.futures.ThreadPoolExecutor)`` true, so
``loop.set_default_executor(pool)`` and type-checking code accept it.
"""
import concurrent.futures
import math
import operator
import os
import sys
import threading
import weakref

from . import _nativepool

__all__ = ["ThreadPool", "ThreadPoolExecutor"]

# Every live pool core, for the exit and fork hooks below.
_live_cores = weakref.WeakSet()


def _default_max_workers():
    # The stdlib's default on the running Python: 3.13 counts the CPUs this
    # process may use, earlier versions all CPUs.
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (count or 1) + 4)


def _thread_limit(max_workers):
    """How many threads the stdlib starts for a max_workers it accepted: it
    starts one while it has fewer than max_workers, so a fractional number
    counts rounded up, and one past sys.maxsize (10**30, inf) is no limit."""
    try:
        n = operator.index(max_workers)
    except TypeError:
        try:
            n = math.ceil(max_workers)
        except OverflowError:
            return sys.maxsize
        except ValueError:
            # nan: the stdlib accepts it (nan <= 0 is false) and then never
            # starts a thread (0 < nan is false too): every result() hangs.
            raise ValueError("max_workers must be greater than 0") from None
        except TypeError:
            raise TypeError("ThreadPool() max_workers must be a number, not %s"
                            % type(max_workers).__name__) from None
    return min(n, sys.maxsize)


def _spawn_thread(core, name):
    """Start one worker thread (called from C, with the GIL, in submit)."""
    t = threading.Thread(name=name, target=core._work)
    t.start()
    return t


def _python_exit():
    # Like concurrent.futures.thread._python_exit: refuse new work, let
    # queued work finish, join every worker, before the interpreter
    # finalizes (a thread that takes the GIL during finalization hangs).
    _nativepool._set_interpreter_exiting()
    cores = list(_live_cores)
    for core in cores:
        core._close()
    for core in cores:
        core._join()


threading._register_atexit(_python_exit)


def _after_fork_in_child():
    for core in list(_live_cores):
        core._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ThreadPool(_nativepool.ThreadPoolBase, concurrent.futures.ThreadPoolExecutor):
    """A pool of worker threads, ``concurrent.futures.ThreadPoolExecutor``'s
    drop-in replacement, with the queue, futures and waits in C.

    ThreadPool(max_workers=None, thread_name_prefix='', initializer=None,
               initargs=())
    """

    # No _counter of our own: the default prefixes come from the stdlib's
    # ThreadPoolExecutor._counter, which a subclass shares, so a ThreadPool
    # and a stdlib pool never both name their threads ThreadPoolExecutor-0_*.

    def __init__(self, max_workers=None, thread_name_prefix="",
                 initializer=None, initargs=()):
        if max_workers is None:
            max_workers = _default_max_workers()
        # The stdlib's checks, in its order, with its errors ("3" <= 0 raises
        # its TypeError); what passes them is accepted, as by the stdlib.
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        limit = _thread_limit(max_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        prefix = thread_name_prefix or ("ThreadPoolExecutor-%d" % self._counter())
        # The stdlib names threads '%s_%d' % (prefix, i), whatever prefix is;
        # initargs is unpacked by each worker (initializer(*initargs)), so
        # any iterable, and none at all without an initializer.
        _nativepool.ThreadPoolBase.__init__(
            self, limit, str(prefix), initializer, initargs)
        # The stdlib's attribute names and values, for code that reads them.
        self._max_workers = max_workers
        self._thread_name_prefix = prefix
        self._initializer = initializer
        self._initargs = initargs
        _live_cores.add(self._core)

    @property
    def _threads(self):
        """The worker threads started so far (a new set)."""
        return set(self._core.threads)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown(wait=True)
        return False

    def __repr__(self):
        stats = self._core._stats()
        return "<%s.%s max_workers=%s threads=%d idle=%d queued=%d%s>" % (
            type(self).__module__, type(self).__qualname__, self._max_workers,
            stats["threads"], stats["idle"], stats["queued"],
            " shut down" if stats["closed"] else "")


ThreadPoolExecutor = ThreadPool
