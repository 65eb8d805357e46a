"""Task functions and objects for tests/test_process_reliability.py.

A module of their own, importing nothing heavy, for the same reason as
process_support.py: spawn and forkserver workers import the module of every
function and class they are sent by reference.
"""
import os
import time


def add(a, b=0):
    return a + b


def nap(seconds, value=None):
    time.sleep(seconds)
    return value


def wait_for_file(path, timeout=60.0):
    """Block until path exists (a gate the test opens); a hang guard, not a
    timing: a gate never opened fails the task instead of hanging."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("gate %s was never opened" % path)
        time.sleep(0.005)
    return path


class Payload:
    """Something a task returns: the test holds it only through a weakref."""

    def __init__(self, n=0):
        self.n = n


class Obj:
    """Picklable, with a method to submit as the task itself (obj.method is
    a bound method: the stdlib's work item holds obj through it)."""

    def __init__(self, n=1):
        self.n = n

    def method(self, k=0):
        return self.n + k

    def make_payload(self):
        return Payload(self.n)


def make_payload(n=0):
    return Payload(n)


def identity_n(payload):
    return payload.n


class PayloadError(Exception):
    pass


def raise_payload_error(n):
    raise PayloadError(n)
