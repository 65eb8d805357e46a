"""Task functions for tests/test_future_release.py (a module of its own so
ProcessPool workers started by spawn/forkserver can import it cheaply)."""
import threading
import time

# Set by a test: called by SlowReply's unpickling in the parent (the
# re-entrancy case), with the future whose result is being unpickled.
on_unpickle = None


def _make_slow(value, delay):
    # Unpickling runs Python for a while: long enough that a second thread
    # asking for the same future's result arrives during it.
    time.sleep(delay)
    hook = on_unpickle
    if hook is not None:
        hook()
    return SlowReply(value, delay)


class SlowReply:
    def __init__(self, value, delay=0.05):
        self.value = value
        self.delay = delay

    def __reduce__(self):
        return _make_slow, (self.value, self.delay)


class SlowError(Exception):
    def __init__(self, value, delay=0.05):
        super().__init__(value)
        self.value = value
        self.delay = delay

    def __reduce__(self):
        return _make_slow_error, (self.value, self.delay)


def _make_slow_error(value, delay):
    time.sleep(delay)
    return SlowError(value, delay)


def reply(value, delay=0.05):
    return SlowReply(value, delay)


def fail(value, delay=0.05):
    raise SlowError(value, delay)


class Holder:
    """Something a test holds weakly while a pool runs its method."""

    def method(self):
        return Result()

    def __call__(self, *args):
        return Result()


class Result:
    pass


def touch(*args):
    return len(args)


started = threading.Event()
