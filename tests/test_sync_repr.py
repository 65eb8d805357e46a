"""Reprs in the stdlib's shapes (issue 11).

Each regex below is written for the stdlib's repr and must match ours too,
so code that parses threading's reprs keeps working on nativepool's objects.
nativepool may add `name=value` fields where the stdlib has some (before
"at" in the "<... object ... at 0x...>" shape, as _thread.RLock does).
"""
import queue
import re
import sys
import threading

import pytest

from conftest import np

PY = sys.version_info[:2]

ADDR = r"0x[0-9a-f]+"
EXTRA = r"(?: \w+=\S+)*"        # our own fields, where the shape allows them
LOCK_RE = r"^<(unlocked|locked) [\w.]+ object%s at %s>$" % (EXTRA, ADDR)
RLOCK_RE = (r"^<(unlocked|locked) [\w.]+ object owner=(\d+) count=(\d+)%s at %s>$"
            % (EXTRA, ADDR))
EVENT_RE = r"^<[\w.]+\.Event at %s: (set|unset)>$" % ADDR
SEM_RE = r"^<[\w.]+\.Semaphore at %s: value=(\d+)>$" % ADDR
BSEM_RE = r"^<[\w.]+\.BoundedSemaphore at %s: value=(\d+)/(\d+)>$" % ADDR
BARRIER_RE = r"^<[\w.]+\.Barrier at %s: (?:waiters=(\d+)/(\d+)|(broken))>$" % ADDR
COND_RE = r"^<Condition\((<.*>), (\d+)\)>$"
QUEUE_RE = r"^<[\w.]+Queue object%s at %s>$" % (EXTRA, ADDR)

# threading's Event/Semaphore/Barrier reprs exist from 3.11 on
_NEW_REPRS = [pytest.mark.skipif(PY < (3, 11), reason="no stdlib repr before 3.11")]


def impl(name, new_style=False):
    marks = _NEW_REPRS if new_style else []
    return [pytest.param("np", id="nativepool"),
            pytest.param("std", id="stdlib", marks=marks)]


def mod(which, stdlib=threading):
    return np if which == "np" else stdlib


def match(regex, obj):
    r = repr(obj)
    m = re.match(regex, r)
    assert m, "%r does not have the shape %s" % (r, regex)
    return m


@pytest.mark.parametrize("which", impl("Lock"))
def test_lock_repr(which):
    lock = mod(which).Lock()
    assert match(LOCK_RE, lock).group(1) == "unlocked"
    lock.acquire()
    assert match(LOCK_RE, lock).group(1) == "locked"
    lock.release()
    if which == "np":
        assert type(lock).__module__ + "." + type(lock).__name__ in repr(lock)


@pytest.mark.parametrize("which", impl("RLock"))
def test_rlock_repr(which):
    rl = mod(which).RLock()
    assert match(RLOCK_RE, rl).groups() == ("unlocked", "0", "0")
    rl.acquire()
    rl.acquire()
    assert match(RLOCK_RE, rl).groups() == (
        "locked", str(threading.get_ident()), "2")
    rl.release()
    rl.release()
    assert match(RLOCK_RE, rl).group(1) == "unlocked"


@pytest.mark.parametrize("which", impl("Event", True))
def test_event_repr(which):
    ev = mod(which).Event()
    assert match(EVENT_RE, ev).group(1) == "unset"
    ev.set()
    assert match(EVENT_RE, ev).group(1) == "set"


@pytest.mark.parametrize("which", impl("Semaphore", True))
def test_semaphore_repr(which):
    s = mod(which).Semaphore(3)
    assert match(SEM_RE, s).group(1) == "3"
    s.acquire()
    assert match(SEM_RE, s).group(1) == "2"


@pytest.mark.parametrize("which", impl("BoundedSemaphore", True))
def test_bounded_semaphore_repr(which):
    s = mod(which).BoundedSemaphore(3)
    assert match(BSEM_RE, s).groups() == ("3", "3")
    s.acquire()
    assert match(BSEM_RE, s).groups() == ("2", "3")


@pytest.mark.parametrize("which", impl("Barrier", True))
def test_barrier_repr(which):
    b = mod(which).Barrier(3)
    assert match(BARRIER_RE, b).groups() == ("0", "3", None)
    b.abort()
    assert match(BARRIER_RE, b).groups() == (None, None, "broken")


@pytest.mark.parametrize("which", impl("Condition"))
def test_condition_repr(which):
    m = mod(which)
    lock = m.RLock()
    c = m.Condition(lock)
    inner, n = match(COND_RE, c).groups()
    assert inner == repr(lock) and n == "0"


@pytest.mark.parametrize("name", ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"])
@pytest.mark.parametrize("which", impl("Queue"))
def test_queue_repr(which, name):
    q = getattr(mod(which, queue), name)()
    match(QUEUE_RE, q)
    q.put(1)
    match(QUEUE_RE, q)


@pytest.mark.nativepool_only
def test_subclass_reprs_name_the_subclass():
    class MySem(np.Semaphore):
        pass

    class MyEvent(np.Event):
        pass

    class MyLock(np.Lock):
        pass

    for cls, obj in ((MySem, MySem(2)), (MyEvent, MyEvent())):
        assert repr(obj).startswith("<%s.%s at 0x" % (cls.__module__, cls.__qualname__))
    assert repr(MyLock()).startswith("<unlocked MyLock object")   # tp_name, as _thread


@pytest.mark.nativepool_only
def test_lock_reprs_show_waiters():
    import time
    from conftest import start_thread, join_all, wait_until
    lock = np.Lock()
    lock.acquire()
    t = start_thread(lock.acquire)
    wait_until(lambda: "waiters=1" in repr(lock))
    lock.release()
    join_all([t])
    lock.release()
    assert "waiters=0" in repr(lock)
