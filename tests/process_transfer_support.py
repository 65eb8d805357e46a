"""Task functions and objects for tests/test_process_transfer.py and
tests/test_process_interrupt.py (a module of their own, light to import:
worker processes import it by name; see process_support.py).

Objects whose pickling or unpickling misbehaves, each on one side only:
``__reduce__`` runs where the object is pickled, the function it names
where it is unpickled.
"""
import logging
import logging.handlers
import os
import pickle
import sys
import time


def _exit(code):
    sys.exit(code)


def _raise_unpickling_error(message):
    raise pickle.UnpicklingError(message)


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


class FailsToUnpickle:
    """Unpickling it raises UnpicklingError (wherever that is)."""

    def __reduce__(self):
        return (_raise_unpickling_error, ("this object refuses to load",))


class ExitsWhenUnpickled:
    """Unpickling it calls sys.exit(1)."""

    def __reduce__(self):
        return (_exit, (1,))


class InterruptsWhenUnpickled:
    """Unpickling it raises KeyboardInterrupt."""

    def __reduce__(self):
        return (_raise_keyboard_interrupt, ())


class ExitsWhenPickled:
    """Pickling it calls sys.exit(1)."""

    def __reduce__(self):
        sys.exit(1)


class InterruptsWithALockWhenPickled:
    """Pickling it raises a KeyboardInterrupt that cannot be pickled."""

    def __reduce__(self):
        import threading
        raise KeyboardInterrupt(threading.Lock())


def identity(x):
    return x


def add(a, b=0):
    return a + b


def make(cls_name):
    """An instance of one of the classes above, made in the worker: its
    pickling runs there, its unpickling in the parent."""
    return globals()[cls_name]()


class Box:
    """A result that can be weakly referenced."""

    def __init__(self, value):
        self.value = value


def box(x):
    return Box(x)


def fail_on(x, bad):
    if x in bad:
        raise ValueError("item %r failed" % (x,))
    return x


# ---- initializers ------------------------------------------------------------

def log_to_queue_then_fail(queue):
    """What a program does to see its workers' logging (the logging
    cookbook's QueueHandler recipe), then an initializer that fails."""
    root = logging.getLogger()
    root.addHandler(logging.handlers.QueueHandler(queue))
    root.setLevel(logging.DEBUG)
    raise ValueError("initializer failed on purpose")


_init_args = None


def record_init_args(*args):
    global _init_args
    _init_args = args


def init_args():
    return _init_args


# ---- for the interrupt tests ---------------------------------------------------

def touch(path):
    with open(path, "w"):
        pass


def wait_long(started, seconds=600):
    """Create ``started``, then sleep far longer than any test waits: only
    being stopped ends it in time."""
    touch(started)
    time.sleep(seconds)
    return "finished"


def pid(*_args):
    return os.getpid()
