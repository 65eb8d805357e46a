"""Task functions for the ProcessPool chaos test (tests/test_chaos.py).

A module of their own, importing nothing heavy, because the workers
(forkserver or spawn) import the module of every function they are sent by
name (see process_support.py)."""
import os
import signal


class ChaosError(Exception):
    """Raised by a chaos task on purpose (picklable: module level)."""


def chaos_task(i, kind):
    """kind "kill": SIGKILL this worker; "raise": raise ChaosError(i);
    otherwise return i * i."""
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("still alive after SIGKILL")
    if kind == "raise":
        raise ChaosError(i)
    return i * i
