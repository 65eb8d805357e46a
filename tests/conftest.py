"""Shared fixtures and helpers for the nativepool Python test suite.

The module under test is imported once here and exposed as ``conftest.np``
(test modules do ``from conftest import np``). By default it is ``nativepool``;
set ``NATIVEPOOL_TEST_MODULE`` to test another module exposing the same API
(e.g. a shim over ``concurrent.futures`` to check that the stdlib-semantics
tests pass on the stdlib). Subprocess-based tests import the same module name.

Markers:
  stress          - the long stress tests (run by default; deselect with -m "not stress")
  nativepool_only - behaviour that deliberately differs from / extends the stdlib
                    (expected to fail when run against a plain stdlib shim)
"""
import gc
import importlib
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

MODULE_NAME = os.environ.get("NATIVEPOOL_TEST_MODULE", "nativepool")
np = importlib.import_module(MODULE_NAME)

PY = sys.version_info[:2]

# Generous bound used only to avoid hangs; never a speed assertion.
HANG_TIMEOUT = 30.0


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "stress: long-running stress test (runs by default)")
    config.addinivalue_line(
        "markers", "nativepool_only: nativepool-specific behaviour beyond the stdlib")


# --------------------------------------------------------------------------
# pools

@pytest.fixture
def pool():
    """A 4-worker pool, shut down (waiting) at teardown."""
    p = np.ThreadPool(max_workers=4, thread_name_prefix="nptest")
    try:
        yield p
    finally:
        p.shutdown(wait=True, cancel_futures=True)


def _pools(wait):
    """A pool factory whose pools are shut down (cancel_futures=True) when
    the generator is closed."""
    made = []

    def factory(*args, **kwargs):
        p = np.ThreadPool(*args, **kwargs)
        made.append(p)
        return p

    try:
        yield factory
    finally:
        for p in made:
            p.shutdown(wait=wait, cancel_futures=True)


@pytest.fixture
def make_pool():
    """Factory for pools; every pool made is shut down at teardown."""
    yield from _pools(wait=True)


@pytest.fixture
def quick_pool():
    """Factory for pools shut down without waiting at teardown: tests that
    leave a long native sleep running do not wait for it (it ends by
    itself, without the GIL)."""
    yield from _pools(wait=False)


class Gate:
    """A one-shot Event wrapper: tasks block on it; the test releases it.

    ``wait()`` inside tasks is bounded so a broken test never hangs forever;
    a task that times out on the gate raises, which makes the test fail.
    """

    def __init__(self):
        self.event = threading.Event()

    def wait(self, *args, **kwargs):
        if not self.event.wait(HANG_TIMEOUT):
            raise AssertionError("gate was never opened")
        return True

    def open(self):
        self.event.set()


@pytest.fixture
def gate():
    g = Gate()
    try:
        yield g
    finally:
        g.open()


def wait_until(predicate, timeout=HANG_TIMEOUT, interval=0.005):
    """Poll predicate() until it is true or timeout expires; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------
# logging capture that works for records emitted from any thread

class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []
        self._lock_ = threading.Lock()

    def emit(self, record):
        with self._lock_:
            self.records.append(record)


@pytest.fixture
def log_capture():
    """Return a function capture(logger_name) -> list of LogRecords (live)."""
    installed = []

    def capture(name, level=logging.DEBUG):
        logger = logging.getLogger(name)
        h = _ListHandler()
        installed.append((logger, h, logger.level, logger.propagate))
        logger.addHandler(h)
        logger.setLevel(level)
        logger.propagate = False
        return h.records

    try:
        yield capture
    finally:
        for logger, h, lvl, prop in reversed(installed):
            logger.removeHandler(h)
            logger.setLevel(lvl)
            logger.propagate = prop


# --------------------------------------------------------------------------
# leak checking

def _traced_now():
    gc.collect()
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def check_no_leak(fn, iterations=3000, warmup=300, max_growth=96 * 1024,
                  settle=None):
    """Run fn() warmup+iterations times under tracemalloc; fail if traced memory
    grows by more than max_growth bytes across the measured iterations.

    A leak of one small object (e.g. a future, ~100+ bytes) per iteration over
    3000 iterations is far above the slack allowed for free lists and caches.
    ``settle`` is an optional callable run before each measurement (e.g. to wait
    until worker threads have dropped their references).
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        for _ in range(warmup):
            fn()
        if settle:
            settle()
        before = _traced_now()
        for _ in range(iterations):
            fn()
        if settle:
            settle()
        after = _traced_now()
        # Allow a brief moment for workers to release their last references.
        if after - before > max_growth:
            time.sleep(0.2)
            after = _traced_now()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    growth = after - before
    assert growth <= max_growth, (
        "traced memory grew by %d bytes over %d iterations (%.1f bytes/iter)"
        % (growth, iterations, growth / iterations))


@pytest.fixture
def assert_no_leak():
    return check_no_leak


def _tracked_types(extra=()):
    """The heap types whose refcounts a leak check follows: every type the
    extension module exports, the public Python classes over them, and
    ``extra`` (internal types reached through objects, e.g.
    type(pool._core), type(pool.map(...)), type(future._condition))."""
    found = {}
    for mod in (getattr(np, "_nativepool", None), np):
        for name in dir(mod or ()):
            value = getattr(mod, name, None)
            if isinstance(value, type) and value.__flags__ & (1 << 9):  # HEAPTYPE
                found.setdefault(value, value.__qualname__)
    for t in extra:
        found.setdefault(t, t.__qualname__)
    return found


def _type_refcounts(types):
    return {t: sys.getrefcount(t) for t in types}


def check_plateau(fn, batch=50, types=(), max_rounds=40, min_rounds=8,
                  settle=None, memory_slack=16 * 1024, refcount_slack=3):
    """Rerun a scenario until memory and type refcounts stop growing.

    Like ultrajson's leak check (tests/conftest.py there): run ``fn()``
    ``batch`` times per round under tracemalloc; after each round (``settle()``
    first, if given, then gc) read the traced memory and ``sys.getrefcount``
    of every tracked heap type (see _tracked_types).  The scenario passes
    when the high-water mark of the traced memory has not risen by more
    than ``memory_slack`` for the last half of the rounds run (and at least
    ``min_rounds``); it fails when memory is still rising in the second half
    of ``max_rounds`` rounds.  A type's refcount must come back to its
    first-round value (``refcount_slack`` allows for an object still
    held by a worker at the instant of measuring): a leaked reference to a
    type grows it by ``batch`` every round, which no slack hides.

    ``memory_slack`` absorbs free lists and dict resizes (threads make the
    measure noisy); a leak of even one small object per call exceeds it
    every few rounds, so it keeps the high-water mark rising.
    """
    types = _tracked_types(types)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()

    def measure():
        if settle:
            settle()
        mem = _traced_now()
        return mem, _type_refcounts(types)

    history = []
    try:
        for _ in range(batch):   # warm-up round: caches, free lists, imports
            fn()
        baseline, base_rc = measure()
        high = baseline
        last_increase = 0
        rounds = 0
        for i in range(1, max_rounds + 1):
            for _ in range(batch):
                fn()
            current, rc = measure()
            rounds = i
            history.append(current - baseline)
            if current > high + memory_slack:
                high = current
                last_increase = i
            elif i >= max(min_rounds, 2 * last_increase):
                break
    finally:
        if not was_tracing:
            tracemalloc.stop()
    grown = {name: rc[t] - base_rc[t] for t, name in types.items()
             if rc[t] - base_rc[t] > refcount_slack}
    assert not grown, (
        "type refcounts grew over %d rounds of %d calls: %r"
        % (rounds, batch, grown))
    assert rounds < max_rounds or last_increase <= max_rounds // 2, (
        "traced memory still growing after %d rounds of %d calls: %d bytes "
        "(%.1f bytes/call); per round: %r"
        % (rounds, batch, current - baseline,
           (current - baseline) / (rounds * batch), history))
    return current - baseline


def refcount_settles(obj, baseline, slack=2, timeout=5.0):
    """Wait until sys.getrefcount(obj) <= baseline + slack; return the final count."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        rc = sys.getrefcount(obj)
        if rc <= baseline + slack or time.monotonic() >= deadline:
            return rc
        time.sleep(0.01)


# --------------------------------------------------------------------------
# subprocess helpers

_PRELUDE = (
    "import importlib as _il, os as _os, sys as _sys, threading as _th\n"
    "np = _il.import_module(_os.environ.get('NATIVEPOOL_TEST_MODULE', 'nativepool'))\n"
    "_out_lock = _th.Lock()\n"
    "def out(*a):\n"
    "    with _out_lock:\n"
    "        _sys.stdout.write(' '.join(map(str, a)) + '\\n')\n"
    "        _sys.stdout.flush()\n"
)


def run_script(source, timeout=60, env=None, **kwargs):
    """Run Python source in a fresh interpreter (the same executable), with the
    module under test importable as ``np``. Returns CompletedProcess (text mode).

    A hang becomes a test failure (not a stuck test run) via the timeout.
    """
    prelude = _PRELUDE
    code = prelude + textwrap.dedent(source)
    e = dict(os.environ)
    e["NATIVEPOOL_TEST_MODULE"] = MODULE_NAME
    e["PYTHONFAULTHANDLER"] = "1"
    if env:
        e.update(env)
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=timeout, env=e, **kwargs)
    except subprocess.TimeoutExpired as exc:
        pytest.fail("subprocess hung (>%ss)\nstdout:\n%s\nstderr:\n%s"
                    % (timeout, exc.stdout, exc.stderr))


def popen_script(source, env=None, **kwargs):
    prelude = _PRELUDE
    code = prelude + textwrap.dedent(source)
    e = dict(os.environ)
    e["NATIVEPOOL_TEST_MODULE"] = MODULE_NAME
    e["PYTHONFAULTHANDLER"] = "1"
    e["PYTHONUNBUFFERED"] = "1"
    if env:
        e.update(env)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, **kwargs)


@pytest.fixture(autouse=True)
def _no_stray_unopened_state():
    """Make sure unretrieved-exception logging is left enabled between tests."""
    yield
    setter = getattr(np, "set_unretrieved_exception_logging", None)
    if setter is not None:
        try:
            setter(True)
        except Exception:
            pass


# ---- helpers shared by the synchronization-object tests ----------------

def stdlib_error(fn):
    """(type, message) of the exception the stdlib raises for fn()."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return type(exc), str(exc)
    raise AssertionError("the stdlib did not raise for this call")


def assert_same_error(np_call, std_call, check_message=True):
    etype, msg = stdlib_error(std_call)
    with pytest.raises(etype) as info:
        np_call()
    if check_message:
        assert str(info.value) == msg


def start_thread(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def join_all(threads, timeout=HANG_TIMEOUT):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, "%d thread(s) still blocked" % len(alive)


def run_in_thread(fn, timeout=HANG_TIMEOUT):
    """Run fn() in another thread; return its result or re-raise its exception."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = start_thread(target)
    join_all([t], timeout)
    if "error" in box:
        raise box["error"]
    return box["result"]


def has_word(word, text):
    return re.search(r"(?<![A-Za-z_])%s(?![A-Za-z_])" % re.escape(word), text) is not None


# A blocking call must release the GIL: a subprocess script in which one
# thread blocks in it while the main thread runs pure Python (run_script
# provides np and out).  Fill in setup, block and unblock.
GIL_SCRIPT = """
import threading, time
%(setup)s
state = {"started": False, "done": False, "result": None}
def blocker():
    state["started"] = True
    state["result"] = %(block)s
    state["done"] = True
t = threading.Thread(target=blocker, daemon=True)
t.start()
while not state["started"]:
    time.sleep(0.001)
time.sleep(0.3)      # let the blocker enter its wait
n = 0
for i in range(300000):   # pure Python: needs the GIL
    n += 1
out("progress", n, "blocker_still_blocked", not state["done"])
%(unblock)s
t.join(30)
out("result", state["result"], "alive", t.is_alive())
"""
