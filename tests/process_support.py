"""Task functions for tests/test_process_pool.py.

They live in a small module of their own (not in the test module) because a
worker process started by "spawn" or "forkserver" imports the module of every
function it is sent by name: this one imports nothing heavy (no pytest, no
conftest).  The tests directory reaches the workers' sys.path because
multiprocessing passes the parent's sys.path to spawned and forkserver
children (pytest puts tests/ on the parent's sys.path: rootdir conftest).
"""
import os
import threading
import time

# How long a gated task waits for its gate before giving up (a hang guard:
# a test that never opens a gate fails instead of hanging).
GATE_TIMEOUT = 60.0


# ---- plain tasks -----------------------------------------------------------

def add(a, b=0):
    return a + b


def square(x):
    return x * x


def div(a, b):
    return a / b


def identity(x):
    return x


def pid(*_args):
    return os.getpid()


def echo_args(*args, **kwargs):
    """Everything it was called with: (args, kwargs)."""
    return args, kwargs


def reverse_bytes(data):
    return data[::-1]


def sized(n):
    """n bytes of a known pattern."""
    pattern = bytes(range(256))
    return (pattern * (n // 256 + 1))[:n]


# ---- gates: a task that waits until the test creates a file ---------------

def touch(path):
    with open(path, "w"):
        pass


def wait_for_file(path, timeout=GATE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError("gate %s was never opened" % path)
        time.sleep(0.005)


def gated(gate, value=None, started=None):
    """Create ``started`` (if given), wait until ``gate`` exists, return
    ``value``."""
    if started is not None:
        touch(started)
    wait_for_file(gate)
    return value


def gated_item(gate, x):
    """For map: item 0 returns at once, every other item waits for the gate."""
    if x != 0:
        wait_for_file(gate)
    return x * 10


# ---- exceptions ---------------------------------------------------------------

class CustomError(Exception):
    """A picklable exception class of a module the workers can import."""


def raise_error(exc_type, *args):
    raise exc_type(*args)


def raise_system_exit(code):
    raise SystemExit(code)


class UnpicklableError(Exception):
    """Pickles fine in the worker, but unpickling it calls cls(*self.args)
    = cls("only one") and __init__ wants two arguments: TypeError in the
    parent."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_unpicklable_error():
    raise UnpicklableError("only one", "two")


def exit_worker(code):
    os._exit(code)


# ---- results that cannot be pickled ---------------------------------------------

def return_lock():
    return threading.Lock()


def return_generator():
    return (i for i in range(3))


# ---- initializers -------------------------------------------------------------

_init_value = None
_init_pid = None


def init_set_global(value):
    global _init_value, _init_pid
    _init_value = value
    _init_pid = os.getpid()


def read_global(*_args):
    """(this worker's pid, the pid its initializer ran in, the value it set)."""
    return os.getpid(), _init_pid, _init_value


def init_fail(message):
    raise RuntimeError(message)


# ---- large buffers (tests/test_process_shared.py) ------------------------------

def describe(x):
    """What a large argument looks like where it arrives: its type, value
    digest and, for an array, dtype, shape, order and writability."""
    import hashlib
    if type(x).__module__ == "numpy":
        return ("ndarray", str(x.dtype), x.shape, bool(x.flags.c_contiguous),
                bool(x.flags.f_contiguous), bool(x.flags.writeable),
                hashlib.sha1(x.tobytes()).hexdigest())
    if isinstance(x, (tuple, list)):
        return (type(x).__name__,) + tuple(describe(v) for v in x)
    if isinstance(x, dict):
        return ("dict",) + tuple((k, describe(v)) for k, v in sorted(x.items()))
    if isinstance(x, (bytes, bytearray)):
        return (type(x).__name__, len(x), hashlib.sha1(x).hexdigest())
    return (type(x).__name__, repr(x))


def describe_call(*args, **kwargs):
    return describe(args), describe(kwargs)


def write_first(a, value):
    """Write to the array the worker was given; what it reads back."""
    a.flat[0] = value
    return a.flat[0].item()


def make_array(n, order="C"):
    import numpy
    return numpy.arange(n, dtype=numpy.float64).reshape(2, n // 2, order=order)


def make_result(kind, n):
    """A large result of a kind describe() knows."""
    if kind == "bytes":
        return sized(n)
    if kind == "bytearray":
        return bytearray(sized(n))
    if kind == "array":
        return make_array(n // 8)
    if kind == "nested":
        return {"a": make_array(n // 8), "b": [sized(n), make_array(n // 8, "F")]}
    raise ValueError(kind)


def buffer_fds():
    """This process's open memfds of nativepool buffers."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "nativepool-buffer" in os.readlink("/proc/self/fd/" + fd):
                n += 1
        except OSError:
            pass
    return n


def gated_describe(gate, x, started=None):
    gated(gate, None, started)
    return describe(x)


def die_with(x):
    os._exit(7)
