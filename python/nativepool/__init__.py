"""nativepool: native thread pools and futures for CPython.

A drop-in for ``concurrent.futures`` (``ThreadPool`` is
``ThreadPoolExecutor``) whose workers, queue, futures and waits are C and
pthreads; the GIL is held only while Python code runs.

Exceptions beyond the stdlib's own classes (each a subclass of one, so an
existing ``except`` clause still catches it):

``WorkerDiedError(BrokenProcessPool)``
    The worker process running a ProcessPool task died; only that task
    failed, the pool goes on.
``TransferError(BrokenProcessPool)``
    A ProcessPool task or its result could not cross between processes:
    unpickling it (in the worker, or in the parent) raised, or pickling a
    result raised SystemExit or KeyboardInterrupt.  ``__cause__`` is the
    original error.  Only that task failed, the pool goes on (the stdlib's
    pool breaks, with BrokenProcessPool).  An ordinary error while pickling
    is the future's exception itself, as in the stdlib.
"""
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    InvalidStateError,
    TimeoutError,
    as_completed,
    wait,
)
from concurrent.futures.thread import BrokenThreadPool

from . import _nativepool
from ._future import Future
from ._thread import ThreadPool, ThreadPoolExecutor, _spawn_thread
from concurrent.futures.process import BrokenProcessPool
from queue import Empty, Full

from ._nativepool import (
    AtomicInt,
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Event,
    LifoQueue,
    Lock,
    PriorityQueue,
    Queue,
    RLock,
    Semaphore,
    ShutDown,
    SimpleQueue,
    set_unretrieved_exception_logging,
)

from . import debug  # noqa: E402  (NATIVEPOOL_CHECK_LOCK_ORDER is read here)
from . import native  # noqa: E402
from ._process import (  # noqa: E402
    ProcessPool, ProcessPoolExecutor, TransferError, WorkerDiedError)

__version__ = "0.1.0"

_nativepool._setup(Future, _spawn_thread)


def get_include():
    """The directory of nativepool.h, the C API header for other extensions.

    Build with ``include_dirs=[nativepool.get_include()]``; see the header.
    """
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "include")
    if os.path.exists(os.path.join(installed, "nativepool.h")):
        return installed
    # An in-place or editable build: the header is still in the source tree.
    source = os.path.normpath(os.path.join(here, "..", "..", "csrc", "include"))
    if os.path.exists(os.path.join(source, "nativepool.h")):
        return source
    return installed

__all__ = [
    "ALL_COMPLETED",
    "AtomicInt",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Empty",
    "Full",
    "LifoQueue",
    "PriorityQueue",
    "Queue",
    "ShutDown",
    "SimpleQueue",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "BrokenThreadPool",
    "BrokenProcessPool",
    "CancelledError",
    "Future",
    "InvalidStateError",
    "ProcessPool",
    "ProcessPoolExecutor",
    "WorkerDiedError",
    "TransferError",
    "ThreadPool",
    "ThreadPoolExecutor",
    "TimeoutError",
    "as_completed",
    "get_include",
    "native",
    "set_unretrieved_exception_logging",
    "wait",
]
