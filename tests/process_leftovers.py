"""Leftover checks for ProcessPool tests: the ``pools`` fixture makes pools
and, at teardown, shuts them down and fails the test if any worker process
or any shared-memory segment (channel or buffer memfd) is left behind."""
import gc
import multiprocessing
import os
import time

import pytest

from conftest import np, HANG_TIMEOUT


def descendants():
    """pid -> cmdline of every live descendant of this process."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if rest[0] == "Z":
            continue
        parents[int(name)] = (int(rest[1]), cmd)
    out, todo = {}, [os.getpid()]
    while todo:
        p = todo.pop()
        for child, (ppid, cmd) in parents.items():
            if ppid == p and child not in out:
                out[child] = cmd
                todo.append(child)
    return out


def workers():
    """Live worker processes: descendants that are not multiprocessing's
    own long-lived helpers (the forkserver, the resource tracker)."""
    return {p: c for p, c in descendants().items()
            if "forkserver import main" not in c
            and "resource_tracker" not in c}


def segment_fds():
    """This process's open shared-memory segments of nativepool: channels
    (memfd nativepool-chan) and large task or result buffers
    (memfd nativepool-buffer), as {fd: link}."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if "nativepool-chan" in link or "nativepool-buffer" in link:
            out[int(fd)] = link
    return out


def wait_until_true(pred, timeout=HANG_TIMEOUT):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def pools():
    """A ProcessPool factory (forkserver by default); at teardown every pool
    is shut down and nothing may be left: no worker process, no channel,
    no buffer segment."""
    made = []
    before_workers = set(workers())

    def factory(max_workers=2, method="forkserver", **kwargs):
        p = np.ProcessPool(max_workers,
                        mp_context=multiprocessing.get_context(method), **kwargs)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.shutdown(wait=True, cancel_futures=True)
    assert wait_until_true(lambda: not (set(workers()) - before_workers)), \
        "worker processes left behind: %r" % (set(workers()) - before_workers)
    gc.collect()   # futures in reference cycles (tracebacks) hold result buffers
    assert segment_fds() == {}, "shared-memory segments left open"
