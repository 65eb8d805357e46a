"""Side-by-side benchmark: nativepool against the standard library.

Run it as::

    python -m nativepool.bench                  # every section, 5 repeats
    python -m nativepool.bench --quick          # 3 repeats, sizes scaled down ~5x
    python -m nativepool.bench --only a,c --repeats 9 --json out.json --check
    python -m nativepool.bench --only sync      # Lock, RLock, Semaphore, ...

Every workload runs in this one process, and within each repeat the
implementations are interleaved (stdlib, nativepool, the references, then the
next repeat), so machine noise hits all of them alike.  ``gc.collect()`` runs
right before every timed region.  The table reports the median, min and max of
the repeats, and each row's ratio to the stdlib (``stdlib_median /
row_median``: "12.3x faster").  The targets are informational: the exit code
is 0 unless ``--check`` is given, then 1 if a target fails.

Layout, for whoever adds a section (sync objects, native tasks, process
pools...):

* workload functions (``bench_submit_result``, ``bench_map``,
  ``bench_sleep_tasks``, ``serial_calls``, ...) take an executor factory and
  sizes and return the seconds of their timed region; the scripts in
  ``benchmarks/`` use them too;
* a :class:`Section` names its rows (:class:`Row`: a label and a callable
  ``run(sizes) -> seconds``), its sizes (full and quick), its unit, and its
  :class:`Target` s;
* :func:`register_section` adds it to :data:`SECTIONS`, the registry that
  ``--only`` picks from.  The table, the JSON and ``--check`` follow from it.

Sections: (a) submit + result, (b) map, (c) I/O-bound sleeps, and sync
(nativepool's Lock, RLock, Semaphore, BoundedSemaphore, Event and AtomicInt
against threading's).  sync is a list of pairs: each row names its own
baseline row, size and unit, and a class nativepool does not have yet is
"n/a (not implemented)" with its target N/A (not a FAIL for ``--check``).

Hidden debugging switch: ``NATIVEPOOL_BENCH_FAKE=1`` benchmarks the stdlib's
ThreadPoolExecutor in place of ``nativepool.ThreadPool`` (to test this
script without the C extension); the header then says so loudly.
"""

import argparse
import collections
import concurrent.futures
import datetime
import faulthandler
import gc
import json
import math
import multiprocessing.pool
import operator
import os
import platform
import queue
import statistics
import sys
import threading
import time
import traceback

perf_counter = time.perf_counter

StdlibThreadPool = concurrent.futures.ThreadPoolExecutor

FAKE_ENV = "NATIVEPOOL_BENCH_FAKE"


# --------------------------------------------------------------------------
# Task bodies (module-level so every implementation calls the same function)
# --------------------------------------------------------------------------

def noop():
    """The no-op task of section (a)."""
    return None


def inc(x):
    """The trivial mapped function of section (b)."""
    return x + 1


def _default_workers():
    # concurrent.futures' default since 3.8; only used to size the warm-up.
    return min(32, (os.cpu_count() or 1) + 4)


# --------------------------------------------------------------------------
# Loading the implementation under test
# --------------------------------------------------------------------------

class NativepoolUnavailable(RuntimeError):
    pass


_loaded = None


def load_nativepool():
    """Return ``(module_or_None, ThreadPool_class, version_string, fake)``.

    Raises NativepoolUnavailable with the reason when nativepool can't be
    imported (or has no ThreadPool yet) and the fake switch is off.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    if os.environ.get(FAKE_ENV, "") not in ("", "0"):
        class FakeThreadPool(StdlibThreadPool):
            """concurrent.futures.ThreadPoolExecutor posing as nativepool."""
        _loaded = (None, FakeThreadPool,
                   "FAKE (%s=1: stdlib ThreadPoolExecutor stand-in)" % FAKE_ENV,
                   True)
        return _loaded
    try:
        import nativepool
    except Exception as exc:  # ImportError, or a crash in the extension init
        raise NativepoolUnavailable("import nativepool failed: %s: %s"
                                    % (type(exc).__name__, exc))
    pool_cls = getattr(nativepool, "ThreadPool", None)
    if pool_cls is None:
        raise NativepoolUnavailable(
            "nativepool (%s) has no ThreadPool: is the C extension built? "
            "(pip install -e .)" % (getattr(nativepool, "__file__", None)
                                     or list(getattr(nativepool, "__path__", []))))
    version = getattr(nativepool, "__version__", None)
    if version is None:
        try:
            from importlib import metadata
            version = metadata.version("nativepool")
        except Exception:
            version = "unknown"
    where = getattr(nativepool, "__file__", None) or "?"
    _loaded = (nativepool, pool_cls, "%s (%s)" % (version, os.path.dirname(where)),
               False)
    return _loaded


def nativepool_threadpool():
    """The executor class under test (nativepool.ThreadPool)."""
    return load_nativepool()[1]


# --------------------------------------------------------------------------
# Workload functions: each returns the seconds of its timed region only
# --------------------------------------------------------------------------

def make_executor(executor_factory, max_workers=None):
    if max_workers is None:
        return executor_factory()
    return executor_factory(max_workers=max_workers)


def warm_up(pool, n_tasks=None):
    """Get the pool's threads started before timing.

    Tasks that sleep 1 ms keep the workers busy, so a pool that starts
    threads on demand (the stdlib's) starts all of them; then a few no-ops.
    """
    if n_tasks is None:
        n_tasks = 4 * _default_workers()
    futures = [pool.submit(time.sleep, 0.001) for _ in range(n_tasks)]
    for f in futures:
        f.result()
    futures = [pool.submit(noop) for _ in range(n_tasks)]
    for f in futures:
        f.result()


def bench_submit_result(executor_factory, n_tasks, max_workers=None):
    """(a) submit ``n_tasks`` no-op tasks, then ``.result()`` each in order.

    Pool creation, warm-up and shutdown are outside the timed region.
    """
    pool = make_executor(executor_factory, max_workers)
    futures = None
    try:
        warm_up(pool)
        gc.collect()
        t0 = perf_counter()
        futures = [pool.submit(noop) for _ in range(n_tasks)]
        for f in futures:
            f.result()
        t1 = perf_counter()
    finally:
        pool.shutdown(wait=True)
    del futures
    return t1 - t0


def bench_map(executor_factory, n_items, max_workers=None, chunksize=1):
    """(b) ``list(pool.map(inc, items))`` over ``n_items`` ints.

    The items list is built, and the pool created and warmed, before timing;
    shutdown comes after.
    """
    items = list(range(n_items))
    pool = make_executor(executor_factory, max_workers)
    out = None
    try:
        warm_up(pool)
        gc.collect()
        t0 = perf_counter()
        out = list(pool.map(inc, items, chunksize=chunksize))
        t1 = perf_counter()
    finally:
        pool.shutdown(wait=True)
    if len(out) != n_items or out[-1] != n_items:
        raise AssertionError("map returned a wrong result")
    return t1 - t0


def bench_mp_threadpool_map(n_items, processes=None):
    """(b) reference: ``multiprocessing.pool.ThreadPool().map(inc, items)``.

    Default processes (os.cpu_count()) and default chunksize (the pool picks
    about len/(4*processes), which is its normal use).  Creation, warm-up and
    close/join are outside the timed region.
    """
    items = list(range(n_items))
    pool = multiprocessing.pool.ThreadPool(processes)
    out = None
    try:
        nproc = getattr(pool, "_processes", None) or (os.cpu_count() or 1)
        pool.map(time.sleep, [0.001] * (4 * nproc), chunksize=1)
        gc.collect()
        t0 = perf_counter()
        out = pool.map(inc, items)
        t1 = perf_counter()
    finally:
        pool.close()
        pool.join()
    if len(out) != n_items or out[-1] != n_items:
        raise AssertionError("map returned a wrong result")
    return t1 - t0


def serial_calls(n_tasks):
    """(a) floor: call the no-op ``n_tasks`` times in a plain loop."""
    f = noop
    gc.collect()
    t0 = perf_counter()
    for _ in range(n_tasks):
        f()
    return perf_counter() - t0


def serial_map(n_items):
    """(b) floor: ``[inc(x) for x in items]``."""
    items = list(range(n_items))
    gc.collect()
    t0 = perf_counter()
    out = [inc(x) for x in items]
    t1 = perf_counter()
    if len(out) != n_items:
        raise AssertionError("wrong result")
    return t1 - t0


def bench_sleep_tasks(executor_factory, n_tasks=100, max_workers=10, sleep_s=0.02):
    """(c) the classic I/O-bound case: ``n_tasks`` tasks that each
    ``time.sleep(sleep_s)`` on ``max_workers`` workers.

    Times what a user waits for: the whole ``with Pool(max_workers) as pool:``
    block (creation, submitting, every result, shutdown).  The ideal is
    ceil(n_tasks / max_workers) * sleep_s (0.2 s for the defaults).
    """
    gc.collect()
    t0 = perf_counter()
    with make_executor(executor_factory, max_workers) as pool:
        futures = [pool.submit(time.sleep, sleep_s) for _ in range(n_tasks)]
        for f in futures:
            f.result()
    return perf_counter() - t0


def sleep_ideal(n_tasks, max_workers, sleep_s):
    return math.ceil(n_tasks / float(max_workers)) * sleep_s


# --------------------------------------------------------------------------
# Sections: the registry
# --------------------------------------------------------------------------

ROLE_STDLIB = "stdlib"      # the baseline every ratio is taken against
ROLE_OURS = "nativepool"    # the implementation under test
ROLE_REF = "reference"      # another implementation, for context
ROLE_FLOOR = "floor"        # a lower bound (the serial loop)


NOT_IMPLEMENTED = "n/a (not implemented)"


class Row(object):
    """One implementation in a section.

    run(sizes) -> seconds of the timed region.  available() -> None, or a
    reason string to skip the row (e.g. an optional library not installed);
    a reason starting with "n/a" (:data:`NOT_IMPLEMENTED`: the object under
    test does not exist yet) is shown as is, and the targets on that row are
    reported n/a instead of FAIL.

    Sections that compare several pairs (section sync: one stdlib object and
    its nativepool counterpart per pair) give each row its own
    ``baseline`` (key of the row its "vs stdlib" ratio is taken against;
    default: the section's), ``per_task`` (the size, or callable(sizes),
    that divides its seconds; default: the section's) and ``unit`` (the
    display unit; default: the section's).
    """

    def __init__(self, key, label, role, run, available=None, baseline=None,
                 per_task=None, unit=None):
        self.key = key
        self.label = label
        self.role = role
        self.run = run
        self.available = available or (lambda: None)
        self.baseline = baseline
        self.per_task = per_task
        self.unit = unit


class Target(object):
    """A goal checked against the medians (in the section's display unit).

    metric(medians) -> float, where medians maps row key -> median.  It
    passes when ``metric op threshold`` (op is ">=" or "<=").  ``row`` and
    ``column`` ("ratio" or "notes") say where PASS/FAIL is shown.
    """

    _OPS = {">=": operator.ge, "<=": operator.le}

    def __init__(self, key, description, metric, op, threshold, fmt, row, column):
        if op not in self._OPS:
            raise ValueError("op must be '>=' or '<='")
        self.key = key
        self.description = description
        self.metric = metric
        self.op = op
        self.threshold = threshold
        self.fmt = fmt          # "%.1fx"-style string or a callable(value)
        self.row = row
        self.column = column

    def evaluate(self, medians):
        try:
            value = self.metric(medians)
        except (KeyError, TypeError, ZeroDivisionError):
            return None, False
        if value is None:
            return None, False
        return value, bool(self._OPS[self.op](value, self.threshold))


class Section(object):
    """A workload: rows timed side by side, a unit, targets.

    sizes_full / sizes_quick: dicts passed to every Row.run.
    per_task: name of the size that divides the seconds to give
    microseconds per task; None reports plain seconds.
    notes(row_key, medians, sizes) -> extra text for the row (or "").
    """

    def __init__(self, key, title, describe, rows, sizes_full, sizes_quick,
                 per_task=None, targets=(), notes=None, baseline="stdlib",
                 unit=None):
        self.key = key
        self.title = title
        self.describe = describe      # describe(sizes) -> one line
        self.rows = list(rows)
        self.sizes_full = dict(sizes_full)
        self.sizes_quick = dict(sizes_quick)
        self.per_task = per_task
        self.targets = list(targets)
        self.notes = notes or (lambda row_key, medians, sizes: "")
        self.baseline = baseline
        self._unit = unit

    def _per_task(self, row):
        if row is not None and row.per_task is not None:
            return row.per_task
        return self.per_task

    def unit(self, row=None):
        if row is not None and row.unit is not None:
            return row.unit
        if self._unit is not None:
            return self._unit
        return "us/task" if self._per_task(row) else "s"

    def to_unit(self, seconds, sizes, row=None):
        per_task = self._per_task(row)
        if per_task:
            n = per_task(sizes) if callable(per_task) else sizes[per_task]
            return seconds / n * 1e6
        return seconds

    def baseline_of(self, row):
        return row.baseline if row.baseline is not None else self.baseline


SECTIONS = collections.OrderedDict()


def register_section(section):
    """Add a section to the registry (its key is what --only selects)."""
    if section.key in SECTIONS:
        raise ValueError("section %r already registered" % section.key)
    SECTIONS[section.key] = section
    return section


def _fmt_times(x):
    return ("%.1fx" if x >= 10 else "%.2fx") % x


def _apply_fmt(fmt, value):
    return fmt(value) if callable(fmt) else fmt % value


def _ratio(medians, num, den):
    return medians[num] / medians[den]


def _ours(fn):
    """Wrap an executor-taking workload into a Row.run for nativepool."""
    return lambda sizes: fn(nativepool_threadpool(), sizes)


# (a) submit + result --------------------------------------------------------

register_section(Section(
    key="a",
    title="submit + result",
    describe=lambda s: ("submit %s no-op tasks, then .result() on each; "
                        "default max_workers" % format(s["n_tasks"], ",")),
    rows=[
        Row("stdlib", "concurrent.futures.ThreadPoolExecutor", ROLE_STDLIB,
            lambda s: bench_submit_result(StdlibThreadPool, s["n_tasks"])),
        Row("nativepool", "nativepool.ThreadPool", ROLE_OURS,
            _ours(lambda cls, s: bench_submit_result(cls, s["n_tasks"]))),
        Row("serial", "serial loop (floor): noop() x N", ROLE_FLOOR,
            lambda s: serial_calls(s["n_tasks"])),
    ],
    sizes_full={"n_tasks": 20000},
    sizes_quick={"n_tasks": 4000},
    per_task="n_tasks",
    targets=[
        Target("a.vs_stdlib", ">=10x fewer us/task than the stdlib",
               lambda m: _ratio(m, "stdlib", "nativepool"), ">=", 10.0,
               _fmt_times, row="nativepool", column="ratio"),
    ],
))


# (b) map ----------------------------------------------------------------------

def _map_notes(row_key, medians, sizes):
    if row_key == "serial" or "serial" not in medians or row_key not in medians:
        return ""
    return "%.2fx serial time" % (medians[row_key] / medians["serial"])


register_section(Section(
    key="b",
    title="map",
    describe=lambda s: ("list(pool.map(inc, items)) over %s ints, "
                        "default max_workers, chunksize=1"
                        % format(s["n_items"], ",")),
    rows=[
        Row("stdlib", "concurrent.futures.ThreadPoolExecutor.map", ROLE_STDLIB,
            lambda s: bench_map(StdlibThreadPool, s["n_items"])),
        Row("nativepool", "nativepool.ThreadPool.map", ROLE_OURS,
            _ours(lambda cls, s: bench_map(cls, s["n_items"]))),
        Row("mp_threadpool", "multiprocessing.pool.ThreadPool.map (ref)",
            ROLE_REF, lambda s: bench_mp_threadpool_map(s["n_items"])),
        Row("serial", "serial loop (floor): [inc(x) for x in items]",
            ROLE_FLOOR, lambda s: serial_map(s["n_items"])),
    ],
    sizes_full={"n_items": 100000},
    sizes_quick={"n_items": 20000},
    per_task="n_items",
    notes=_map_notes,
    targets=[
        Target("b.vs_stdlib", ">=20x faster than the stdlib's map",
               lambda m: _ratio(m, "stdlib", "nativepool"), ">=", 20.0,
               _fmt_times, row="nativepool", column="ratio"),
        Target("b.vs_serial", "within 2x of the serial loop",
               lambda m: _ratio(m, "nativepool", "serial"), "<=", 2.0,
               _fmt_times, row="nativepool", column="notes"),
    ],
))


# (c) I/O-bound sleeps ---------------------------------------------------------

def _sleep_args(s):
    return s["n_tasks"], s["max_workers"], s["sleep_s"]


def _sleep_notes(row_key, medians, sizes):
    if row_key not in medians:
        return ""
    ideal = sleep_ideal(*_sleep_args(sizes))
    return "%+.1f%% over ideal %.2f s" % ((medians[row_key] / ideal - 1) * 100, ideal)


_SLEEP_SIZES = {"n_tasks": 100, "max_workers": 10, "sleep_s": 0.02}

register_section(Section(
    key="c",
    title="I/O-bound sleeps",
    describe=lambda s: ("%d tasks of time.sleep(%g) on %d workers, wall time of "
                        "the whole with-block (ideal %.2f s)"
                        % (s["n_tasks"], s["sleep_s"], s["max_workers"],
                           sleep_ideal(*_sleep_args(s)))),
    rows=[
        Row("stdlib", "concurrent.futures.ThreadPoolExecutor", ROLE_STDLIB,
            lambda s: bench_sleep_tasks(StdlibThreadPool, *_sleep_args(s))),
        Row("nativepool", "nativepool.ThreadPool", ROLE_OURS,
            _ours(lambda cls, s: bench_sleep_tasks(cls, *_sleep_args(s)))),
    ],
    # Already short (0.2 s a run), and the target is about 0.2 s: --quick
    # keeps the full size.
    sizes_full=_SLEEP_SIZES,
    sizes_quick=_SLEEP_SIZES,
    per_task=None,
    notes=_sleep_notes,
    targets=[
        Target("c.vs_ideal", "wall time within 5% of the ideal",
               lambda m: m["nativepool"], "<=", 0.21, "%.3f s",
               row="nativepool", column="notes"),
    ],
))


# (sync) synchronization objects -----------------------------------------------
#
# nativepool.Lock, RLock, Semaphore, BoundedSemaphore, Event and AtomicInt
# against threading's.  Unlike (a)-(c) this section is a list of pairs: each
# stdlib row is the baseline of the nativepool row after it (Row.baseline),
# and each pair has its own size and unit (Row.per_task, Row.unit).  A
# nativepool class that does not exist yet makes its row "n/a (not
# implemented)" and its target N/A, so the section runs while the objects
# land one by one.

SYNC_NAMES = ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event",
              "AtomicInt", "Condition", "Barrier", "Queue", "SimpleQueue")


class _FakeAtomicInt(object):
    """FAKE-run stand-in for nativepool.AtomicInt: an int behind a Lock."""

    def __init__(self, value=0):
        self._value = value
        self._lock = threading.Lock()

    def add(self, n):
        with self._lock:
            self._value += n
            return self._value

    def inc(self):
        return self.add(1)

    def __iadd__(self, n):
        self.add(n)
        return self

    @property
    def value(self):
        return self._value

    def __int__(self):
        return self._value


def _fake_sync(name):
    if name == "AtomicInt":
        return _FakeAtomicInt
    if name in ("Queue", "SimpleQueue"):
        return getattr(queue, name)
    return getattr(threading, name)


def nativepool_sync(name):
    """nativepool's sync class ``name`` (one of SYNC_NAMES), or None if it
    does not exist yet.  FAKE run: threading's class (AtomicInt: an int
    behind a threading.Lock)."""
    module, _, _, fake = load_nativepool()
    if fake:
        return _fake_sync(name)
    return getattr(module, name, None)


def _sync_available(name):
    def available():
        try:
            cls = nativepool_sync(name)
        except NativepoolUnavailable as exc:
            return str(exc)
        return NOT_IMPLEMENTED if cls is None else None
    return available


def _ours_sync(name, fn):
    """Row.run for nativepool's class ``name``: fn(cls, sizes)."""
    def run(sizes):
        cls = nativepool_sync(name)
        if cls is None:
            raise NativepoolUnavailable(NOT_IMPLEMENTED)
        return fn(cls, sizes)
    return run


def _join_or_fail(threads, timeout, what):
    deadline = perf_counter() + timeout
    for t in threads:
        t.join(max(0.0, deadline - perf_counter()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        # The threads are daemons, blocked for good: leave them behind and
        # let the row show an ERROR instead of hanging the whole run.
        raise RuntimeError("%s hung: %s still blocked after %.0f s (lost "
                           "wakeup?)" % (what, ", ".join(stuck), timeout))


def bench_acquire_release(factory, n_pairs):
    """(sync) ``obj.acquire(); obj.release()`` ``n_pairs`` times on one
    thread (uncontended).  ``factory()`` makes a Lock, an RLock or a
    Semaphore(1)."""
    obj = factory()
    gc.collect()
    t0 = perf_counter()
    for _ in range(n_pairs):
        obj.acquire()
        obj.release()
    t1 = perf_counter()
    _check_released(obj)
    return t1 - t0


def bench_with_block(factory, n_pairs):
    """(sync) ``with obj: pass`` ``n_pairs`` times on one thread."""
    obj = factory()
    gc.collect()
    t0 = perf_counter()
    for _ in range(n_pairs):
        with obj:
            pass
    t1 = perf_counter()
    _check_released(obj)
    return t1 - t0


def _check_released(obj):
    # After the loop the object must be free again: one non-blocking
    # acquire succeeds.
    if not obj.acquire(False):
        raise AssertionError("%s is still held after acquire/release pairs"
                             % type(obj).__name__)
    obj.release()


def _semaphore_factory(cls):
    return lambda: cls(1)


def _run_pair(side_a, side_b, n, what, timeout=None):
    """Run two loop bodies on two started threads released together by a
    Barrier; side_a is timed.  A hang (lost wakeup) becomes an error after
    the timeout instead of stopping the benchmark."""
    start = threading.Barrier(2)
    elapsed = []
    errors = []

    def a():
        try:
            start.wait()
            t0 = perf_counter()
            side_a()
            elapsed.append(perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)

    def b():
        try:
            start.wait()
            side_b()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=a, name=what + "-A", daemon=True),
               threading.Thread(target=b, name=what + "-B", daemon=True)]
    gc.collect()
    for t in threads:
        t.start()
    _join_or_fail(threads, timeout or 30.0 + n * 0.001, what)
    if errors:
        raise errors[0]
    return elapsed[0]


def bench_event_pingpong(event_factory, n_round_trips, timeout=None):
    """(sync) ping-pong between two threads through two Events.

    A: ``e1.set(); e2.wait(); e2.clear()``; B: ``e1.wait(); e1.clear();
    e2.set()``; ``n_round_trips`` times each, on two started threads (see
    _run_pair: a lost wakeup is an ERROR row, not a hang); A's loop is timed.
    """
    e1 = event_factory()
    e2 = event_factory()

    def side_a():
        for _ in range(n_round_trips):
            e1.set()
            e2.wait()
            e2.clear()

    def side_b():
        for _ in range(n_round_trips):
            e1.wait()
            e1.clear()
            e2.set()

    el = _run_pair(side_a, side_b, n_round_trips, "Event ping-pong", timeout)
    # B cleared e1 and A cleared e2 at the end of their last round trip.
    if e1.is_set() or e2.is_set():
        raise AssertionError("Event ping-pong ended in a wrong state "
                             "(e1 set: %s, e2 set: %s; want both clear)"
                             % (e1.is_set(), e2.is_set()))
    return el


def bench_condition_pingpong(cond_factory, n_round_trips):
    """(sync) two threads hand a token back and forth through one
    Condition: ``notify()`` then ``wait()`` until it is their turn."""
    cond = cond_factory()
    turn = [0]

    def side_a():
        for _ in range(n_round_trips):
            with cond:
                turn[0] = 1
                cond.notify()
                while turn[0] != 0:
                    cond.wait()

    def side_b():
        for _ in range(n_round_trips):
            with cond:
                while turn[0] != 1:
                    cond.wait()
                turn[0] = 0
                cond.notify()

    return _run_pair(side_a, side_b, n_round_trips, "Condition ping-pong")


def bench_barrier_rounds(barrier_factory, n_rounds):
    """(sync) two threads meet at a Barrier(2) ``n_rounds`` times."""
    barrier = barrier_factory(2)
    indices = []

    def side_a():
        for _ in range(n_rounds):
            indices.append(barrier.wait())

    def side_b():
        for _ in range(n_rounds):
            barrier.wait()

    el = _run_pair(side_a, side_b, n_rounds, "Barrier(2) rounds")
    if len(indices) != n_rounds or any(i not in (0, 1) for i in indices):
        raise AssertionError("Barrier returned wrong indices")
    return el


def bench_queue_transfer(queue_factory, n_items):
    """(sync) one producer thread puts ``n_items`` ints, one consumer thread
    gets them; the consumer's time, checked for order and count."""
    q = queue_factory()
    got = [0, -1]

    def consumer():
        get = q.get
        for i in range(n_items):
            x = get()
            if x != i:
                raise AssertionError("queue item %r, expected %d" % (x, i))
        got[0] = n_items

    def producer():
        put = q.put
        for i in range(n_items):
            put(i)

    el = _run_pair(consumer, producer, n_items, "queue transfer")
    if got[0] != n_items:
        raise AssertionError("the consumer did not get every item")
    return el


def bench_queue_pingpong(queue_factory, n_round_trips):
    """(sync) two threads bounce a token through two queues."""
    q1, q2 = queue_factory(), queue_factory()

    def side_a():
        for i in range(n_round_trips):
            q1.put(i)
            q2.get()

    def side_b():
        for _ in range(n_round_trips):
            q2.put(q1.get())

    return _run_pair(side_a, side_b, n_round_trips, "Queue ping-pong")


# The shared counter of the race workload: a module global, as in the
# classic "counter += 1 from several threads" bug.
_race_counter = 0


def _race_locked(lock, n_incr, start):
    global _race_counter
    start.wait()
    for _ in range(n_incr):
        with lock:
            _race_counter += 1


def _race_atomic(n_incr, start):
    global _race_counter
    start.wait()
    for _ in range(n_incr):
        _race_counter += 1


def atomic_value(a):
    """The int value of an AtomicInt (``.value``, ``.get()``, ``.load()``
    or ``int()``, whichever it has)."""
    for attr in ("value", "get", "load"):
        v = getattr(a, attr, None)
        if v is not None:
            return v() if callable(v) else v
    return int(a)


def bench_counter_race(n_threads, n_incr, atomic_cls=None, lock_factory=None,
                       timeout=None):
    """(sync) ``n_threads`` threads each doing ``counter += 1`` ``n_incr``
    times on a global counter: with ``lock_factory`` (threading.Lock) as
    ``with lock: counter += 1`` on an int, with ``atomic_cls`` as a bare
    ``counter += 1`` on an AtomicInt.  Times from the start Barrier to the
    last join; the final count must be exactly n_threads * n_incr.
    """
    global _race_counter
    if (atomic_cls is None) == (lock_factory is None):
        raise ValueError("give exactly one of atomic_cls, lock_factory")
    start = threading.Barrier(n_threads + 1)
    if atomic_cls is not None:
        try:
            counter = atomic_cls(0)
        except TypeError:
            counter = atomic_cls()
        _race_counter = counter
        target, args = _race_atomic, (n_incr, start)
    else:
        counter = None
        _race_counter = 0
        target, args = _race_locked, (lock_factory(), n_incr, start)
    threads = [threading.Thread(target=target, args=args, name="counter-%d" % i)
               for i in range(n_threads)]
    for t in threads:
        t.daemon = True
    try:
        for t in threads:
            t.start()
        gc.collect()
        t0 = perf_counter()
        start.wait()
        if timeout is None:
            timeout = 30.0 + n_threads * n_incr * 1e-5
        _join_or_fail(threads, timeout, "counter race")
        t1 = perf_counter()
        final = _race_counter
    finally:
        if start.n_waiting:
            start.abort()
        _race_counter = 0
    want = n_threads * n_incr
    if counter is not None:
        if final is not counter:
            raise AssertionError("`counter += 1` rebound the global to a %s: "
                                 "AtomicInt.__iadd__ must return self"
                                 % type(final).__name__)
        final = atomic_value(counter)
    if final != want:
        raise AssertionError("final count %r, expected %d" % (final, want))
    return t1 - t0


def _counter_notes(row_key, medians, sizes):
    if not row_key.startswith("counter."):
        return ""
    return "count %s exact" % format(sizes["n_threads"] * sizes["n_incr"], ",")


def _n_increments(sizes):
    return sizes["n_threads"] * sizes["n_incr"]


def _pair_rows(key, stdlib_label, ours_name, ours_label, run_stdlib, run_ours,
               per_task, unit):
    """The two rows of one comparison: threading's object (the baseline),
    then nativepool's, interleaved within every repeat."""
    base = key + ".stdlib"
    return [
        Row(base, stdlib_label, ROLE_STDLIB, run_stdlib, baseline=base,
            per_task=per_task, unit=unit),
        Row(key + ".nativepool", ours_label, ROLE_OURS,
            _ours_sync(ours_name, run_ours), available=_sync_available(ours_name),
            baseline=base, per_task=per_task, unit=unit),
    ]


def _pair_ratio(key):
    return lambda m: _ratio(m, key + ".stdlib", key + ".nativepool")


register_section(Section(
    key="sync",
    title="synchronization objects",
    describe=lambda s: (
        "uncontended acquire();release(): (Bounded)Semaphore(1) x%s, "
        "Lock (also `with`), RLock x%s; Event, Condition, Queue ping-pong "
        "and Barrier(2) rounds, 2 threads, x%s; %d threads x%s `counter += 1`; "
        "queues 1 producer -> 1 consumer x%s items"
        % (format(s["n_sem"], ","), format(s["n_lock"], ","),
           format(s["n_pingpong"], ","), s["n_threads"],
           format(s["n_incr"], ","), format(s["n_queue"], ","))),
    rows=(
        _pair_rows("sem", "threading.Semaphore: acquire(); release()",
                   "Semaphore", "nativepool.Semaphore: acquire(); release()",
                   lambda s: bench_acquire_release(
                       _semaphore_factory(threading.Semaphore), s["n_sem"]),
                   lambda cls, s: bench_acquire_release(
                       _semaphore_factory(cls), s["n_sem"]),
                   "n_sem", "us/pair")
        + _pair_rows("bsem", "threading.BoundedSemaphore: acquire(); release()",
                     "BoundedSemaphore",
                     "nativepool.BoundedSemaphore: acquire(); release()",
                     lambda s: bench_acquire_release(
                         _semaphore_factory(threading.BoundedSemaphore),
                         s["n_sem"]),
                     lambda cls, s: bench_acquire_release(
                         _semaphore_factory(cls), s["n_sem"]),
                     "n_sem", "us/pair")
        + _pair_rows("lock", "threading.Lock: acquire(); release()",
                     "Lock", "nativepool.Lock: acquire(); release()",
                     lambda s: bench_acquire_release(threading.Lock, s["n_lock"]),
                     lambda cls, s: bench_acquire_release(cls, s["n_lock"]),
                     "n_lock", "us/pair")
        + _pair_rows("lock_with", "threading.Lock: with lock: pass",
                     "Lock", "nativepool.Lock: with lock: pass",
                     lambda s: bench_with_block(threading.Lock, s["n_lock"]),
                     lambda cls, s: bench_with_block(cls, s["n_lock"]),
                     "n_lock", "us/pair")
        + _pair_rows("rlock", "threading.RLock: acquire(); release()",
                     "RLock", "nativepool.RLock: acquire(); release()",
                     lambda s: bench_acquire_release(threading.RLock, s["n_lock"]),
                     lambda cls, s: bench_acquire_release(cls, s["n_lock"]),
                     "n_lock", "us/pair")
        + _pair_rows("event", "threading.Event: 2-thread ping-pong",
                     "Event", "nativepool.Event: 2-thread ping-pong",
                     lambda s: bench_event_pingpong(threading.Event,
                                                    s["n_pingpong"]),
                     lambda cls, s: bench_event_pingpong(cls, s["n_pingpong"]),
                     "n_pingpong", "us/rtrip")
        + _pair_rows("counter", "threading.Lock: with lock: counter += 1",
                     "AtomicInt", "nativepool.AtomicInt: counter += 1",
                     lambda s: bench_counter_race(s["n_threads"], s["n_incr"],
                                                  lock_factory=threading.Lock),
                     lambda cls, s: bench_counter_race(s["n_threads"],
                                                       s["n_incr"],
                                                       atomic_cls=cls),
                     _n_increments, "us/incr")
        + _pair_rows("cond", "threading.Condition: 2-thread ping-pong",
                     "Condition", "nativepool.Condition: 2-thread ping-pong",
                     lambda s: bench_condition_pingpong(threading.Condition,
                                                        s["n_pingpong"]),
                     lambda cls, s: bench_condition_pingpong(cls, s["n_pingpong"]),
                     "n_pingpong", "us/rtrip")
        + _pair_rows("barrier", "threading.Barrier(2): rounds",
                     "Barrier", "nativepool.Barrier(2): rounds",
                     lambda s: bench_barrier_rounds(threading.Barrier,
                                                    s["n_pingpong"]),
                     lambda cls, s: bench_barrier_rounds(cls, s["n_pingpong"]),
                     "n_pingpong", "us/round")
        + _pair_rows("queue", "queue.Queue: 1 producer -> 1 consumer",
                     "Queue", "nativepool.Queue: 1 producer -> 1 consumer",
                     lambda s: bench_queue_transfer(queue.Queue, s["n_queue"]),
                     lambda cls, s: bench_queue_transfer(cls, s["n_queue"]),
                     "n_queue", "us/item")
        + _pair_rows("squeue", "queue.SimpleQueue: 1 producer -> 1 consumer",
                     "SimpleQueue",
                     "nativepool.SimpleQueue: 1 producer -> 1 consumer",
                     lambda s: bench_queue_transfer(queue.SimpleQueue,
                                                    s["n_queue"]),
                     lambda cls, s: bench_queue_transfer(cls, s["n_queue"]),
                     "n_queue", "us/item")
        + _pair_rows("queue_pp", "queue.Queue: 2-thread ping-pong",
                     "Queue", "nativepool.Queue: 2-thread ping-pong",
                     lambda s: bench_queue_pingpong(queue.Queue, s["n_pingpong"]),
                     lambda cls, s: bench_queue_pingpong(cls, s["n_pingpong"]),
                     "n_pingpong", "us/rtrip")
    ),
    sizes_full={"n_sem": 200000, "n_lock": 1000000, "n_pingpong": 20000,
                "n_threads": 5, "n_incr": 100000, "n_queue": 200000},
    sizes_quick={"n_sem": 40000, "n_lock": 200000, "n_pingpong": 4000,
                 "n_threads": 5, "n_incr": 20000, "n_queue": 40000},
    unit="us/op",
    notes=_counter_notes,
    targets=[
        Target("sync.sem", ">=5x faster than threading.Semaphore",
               _pair_ratio("sem"), ">=", 5.0, _fmt_times,
               row="sem.nativepool", column="ratio"),
        Target("sync.bsem", ">=5x faster than threading.BoundedSemaphore",
               _pair_ratio("bsem"), ">=", 5.0, _fmt_times,
               row="bsem.nativepool", column="ratio"),
        Target("sync.lock", "no slower than threading.Lock (>=0.95x: noise "
               "margin)", _pair_ratio("lock"), ">=", 0.95, _fmt_times,
               row="lock.nativepool", column="ratio"),
        Target("sync.lock_with", "`with lock:` no slower than threading.Lock "
               "(>=0.95x: noise margin)", _pair_ratio("lock_with"), ">=", 0.95,
               _fmt_times, row="lock_with.nativepool", column="ratio"),
        Target("sync.rlock", "no slower than threading.RLock (>=0.95x: noise "
               "margin)", _pair_ratio("rlock"), ">=", 0.95, _fmt_times,
               row="rlock.nativepool", column="ratio"),
        Target("sync.event", ">=1.5x faster Event ping-pong round trip",
               _pair_ratio("event"), ">=", 1.5, _fmt_times,
               row="event.nativepool", column="ratio"),
        Target("sync.cond", ">=1.5x faster Condition ping-pong round trip",
               _pair_ratio("cond"), ">=", 1.5, _fmt_times,
               row="cond.nativepool", column="ratio"),
        Target("sync.barrier", ">=1.5x faster Barrier(2) round",
               _pair_ratio("barrier"), ">=", 1.5, _fmt_times,
               row="barrier.nativepool", column="ratio"),
        Target("sync.queue", ">=10x faster Queue 1 producer -> 1 consumer",
               _pair_ratio("queue"), ">=", 10.0, _fmt_times,
               row="queue.nativepool", column="ratio"),
        Target("sync.squeue", "SimpleQueue at least as fast as queue.SimpleQueue "
               "(>=0.95x: noise margin)", _pair_ratio("squeue"), ">=", 0.95,
               _fmt_times, row="squeue.nativepool", column="ratio"),
        Target("sync.queue_pp", ">=1.5x faster Queue ping-pong round trip",
               _pair_ratio("queue_pp"), ">=", 1.5, _fmt_times,
               row="queue_pp.nativepool", column="ratio"),
    ],
))


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores():
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
                    continue
                k, v = [p.strip() for p in line.split(":", 1)]
                if k == "physical id":
                    phys = v
                elif k == "core id":
                    core = v
        if core is not None:
            cores.add((phys, core))
        return len(cores) or None
    except OSError:
        return None


def machine_info():
    nativepool_version, fake = "unavailable", False
    try:
        _, _, nativepool_version, fake = load_nativepool()
    except NativepoolUnavailable as exc:
        nativepool_version = "unavailable (%s)" % exc
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    gil = getattr(sys, "_is_gil_enabled", None)
    return collections.OrderedDict([
        ("cpu_model", _cpu_model()),
        ("logical_cpus", os.cpu_count()),
        ("usable_cpus", usable),
        ("physical_cores", _physical_cores()),
        ("python", "%s %s" % (platform.python_implementation(),
                              platform.python_version())),
        ("python_build", " ".join(platform.python_build())),
        ("python_compiler", platform.python_compiler()),
        ("gil_enabled", gil() if gil is not None else True),
        ("platform", platform.platform()),
        ("nativepool", nativepool_version),
        ("nativepool_fake", fake),
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
    ])


def format_header(info, repeats, quick):
    cores = "%s logical CPUs" % info["logical_cpus"]
    if info["physical_cores"]:
        cores += ", %s physical cores" % info["physical_cores"]
    if info["usable_cpus"] is not None and info["usable_cpus"] != info["logical_cpus"]:
        cores += ", %s usable by this process" % info["usable_cpus"]
    py = info["python"]
    if not info["gil_enabled"]:
        py += " (free-threaded, GIL disabled)"
    lines = [
        "nativepool benchmark: %s, %d interleaved repeats per row"
        % ("QUICK run (sizes scaled down ~5x, not comparable with a full run)"
           if quick else "full run", repeats),
        "  machine    : %s, %s" % (info["cpu_model"], cores),
        "  python     : %s (%s) [%s]" % (py, info["python_build"], info["python_compiler"]),
        "  platform   : %s" % info["platform"],
        "  nativepool : %s" % info["nativepool"],
        "  date       : %s" % info["date"],
    ]
    if info["nativepool_fake"]:
        lines.append("  *** FAKE RUN: 'nativepool' rows are the stdlib ThreadPoolExecutor"
                     " and threading's sync objects (%s=1); numbers say nothing"
                     " about nativepool ***" % FAKE_ENV)
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------

def _fmt_value(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    if a >= 0.1:
        return "%.3f" % v
    return "%.4f" % v


def _fmt_ratio(r):
    if r is None:
        return "-"
    if 0.995 <= r < 1.005:
        return "1.00x (same)"
    if r >= 1:
        return ("%.1fx faster" if r >= 10 else "%.2fx faster") % r
    inv = 1.0 / r
    return ("%.1fx slower" if inv >= 10 else "%.2fx slower") % inv


def run_section(section, repeats, quick=False, sizes=None, log=None):
    """Time every row of a section, interleaved within each repeat.

    Returns a JSON-able dict: raw seconds, values in the section unit,
    median/min/max, ratios, notes and target verdicts.
    """
    if sizes is None:
        sizes = section.sizes_quick if quick else section.sizes_full
    rows = collections.OrderedDict()
    for row in section.rows:
        reason = row.available()
        rows[row.key] = {"label": row.label, "role": row.role, "seconds": [],
                         "skipped": reason, "error": None,
                         "unit": section.unit(row),
                         "baseline": section.baseline_of(row)}
    for rep in range(repeats):
        for row in section.rows:
            r = rows[row.key]
            if r["skipped"] or r["error"]:
                continue
            try:
                r["seconds"].append(row.run(sizes))
            except NativepoolUnavailable as exc:
                r["skipped"] = str(exc)
            except Exception as exc:
                r["error"] = "%s: %s" % (type(exc).__name__, exc)
                r["traceback"] = traceback.format_exc()
        if log:
            log("  (%s) repeat %d/%d done" % (section.key, rep + 1, repeats))
    medians = {}
    for row in section.rows:
        key, r = row.key, rows[row.key]
        if r["error"] or r["skipped"] or not r["seconds"]:
            r.update(values=[], median=None, min=None, max=None)
            continue
        vals = [section.to_unit(s, sizes, row) for s in r["seconds"]]
        r["values"] = vals
        r["median"] = statistics.median(vals)
        r["min"] = min(vals)
        r["max"] = max(vals)
        medians[key] = r["median"]
    for key, r in rows.items():
        m = medians.get(key)
        base = medians.get(r["baseline"])
        r["ratio_vs_stdlib"] = (base / m) if (base and m) else None
        r["notes"] = section.notes(key, medians, sizes) if m is not None else ""
    targets = []
    for t in section.targets:
        value, passed = t.evaluate(medians)
        na = rows.get(t.row, {}).get("skipped")
        if value is None and na and na.startswith("n/a"):
            passed = None       # the object under test does not exist yet
        targets.append(collections.OrderedDict([
            ("key", t.key), ("description", t.description), ("row", t.row),
            ("column", t.column), ("op", t.op), ("threshold", t.threshold),
            ("value", value), ("passed", passed),
            ("text", _apply_fmt(t.fmt, value) if value is not None else "n/a"),
            ("verdict", _verdict(passed)),
        ]))
    return collections.OrderedDict([
        ("key", section.key), ("title", section.title),
        ("description", section.describe(sizes)), ("sizes", sizes),
        ("unit", section.unit()), ("repeats", repeats),
        ("rows", rows), ("targets", targets),
    ])


def _verdict(passed):
    return {True: "PASS", False: "FAIL", None: "N/A"}[passed]


def format_section(res):
    head = ["implementation", "median", "min", "max", "unit", "vs stdlib", "notes"]
    table = []
    tag = {}
    for t in res["targets"]:
        verdict = t["verdict"]
        tag.setdefault((t["row"], t["column"]), []).append(
            "[%s %s%s]" % (verdict, t["op"], _fmt_threshold(t)))
    for key, r in res["rows"].items():
        if r["skipped"]:
            text = r["skipped"]
            if not text.startswith("n/a"):
                text = "skipped: " + text
            table.append([r["label"], text, "", "", "", "", ""])
            continue
        if r["error"]:
            table.append([r["label"], "ERROR: %s" % r["error"], "", "", "", "", ""])
            continue
        if key == "stdlib" or key == r["baseline"] or r["role"] == ROLE_STDLIB:
            ratio = "baseline"
        else:
            ratio = _fmt_ratio(r["ratio_vs_stdlib"])
        notes = r["notes"]
        for col, text in (("ratio", ratio), ("notes", notes)):
            extra = tag.get((key, col))
            if extra:
                text = (text + " " if text else "") + " ".join(extra)
            if col == "ratio":
                ratio = text
            else:
                notes = text
        table.append([r["label"], _fmt_value(r["median"]), _fmt_value(r["min"]),
                      _fmt_value(r["max"]), r.get("unit", res["unit"]), ratio, notes])
    # rows with a long skip/error message span the numeric columns
    widths = [len(h) for h in head]
    for line in table:
        if line[2] == "" and line[4] == "":
            widths[0] = max(widths[0], len(line[0]))
            continue
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))
    right = {1, 2, 3}

    def fmt(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  " + "  ".join(out).rstrip()

    lines = ["", "(%s) %s: %s" % (res["key"], res["title"], res["description"]),
             fmt(head), "  " + "  ".join("-" * w for w in widths)]
    for line in table:
        if line[2] == "" and line[4] == "":
            lines.append("  " + line[0].ljust(widths[0]) + "  " + line[1])
        else:
            lines.append(fmt(line))
    kw = max([11] + [len(t["key"]) for t in res["targets"]])
    dw = max([38] + [len(t["description"]) for t in res["targets"]])
    for t in res["targets"]:
        lines.append("  target %-*s %-*s %-10s %s"
                     % (kw, t["key"], dw, t["description"], t["text"], t["verdict"]))
    return "\n".join(lines)


def _fmt_threshold(t):
    thr = t["threshold"]
    if t["text"].endswith(" s"):
        return "%g s" % thr
    return "%gx" % thr


def format_summary(results):
    targets = [t for res in results for t in res["targets"]]
    failed = [t for t in targets if t["passed"] is False]
    na = [t for t in targets if t["passed"] is None]
    checked = len(targets) - len(na)
    lines = [""]
    if targets:
        line = "targets: %d/%d PASS" % (checked - len(failed), checked)
        if failed:
            line += " (FAIL: %s)" % ", ".join(t["key"] for t in failed)
        if na:
            line += "; %d n/a, object not implemented yet (%s)" % (
                len(na), ", ".join(t["key"] for t in na))
        lines.append(line)
    errors = ["%s/%s" % (res["key"], k) for res in results
              for k, r in res["rows"].items() if r["error"]]
    if errors:
        lines.append("rows with errors: %s (-v shows the tracebacks)"
                     % ", ".join(errors))
    return "\n".join(lines)


def write_json(path, info, args_dict, results):
    doc = collections.OrderedDict([
        ("machine", info), ("config", args_dict), ("sections", results),
        # n/a targets (object not implemented yet) are listed, not failed
        ("all_targets_passed", all(t["passed"] is not False for res in results
                                   for t in res["targets"])),
        ("targets_not_applicable", [t["key"] for res in results
                                    for t in res["targets"]
                                    if t["passed"] is None]),
    ])
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def build_parser(prog=None, sections=None):
    keys = list(sections or SECTIONS)
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark nativepool against the stdlib, side by side. "
                    "Sections: " + "; ".join(
                        "%s = %s" % (k, SECTIONS[k].title) for k in keys))
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats (3) and sizes scaled down ~5x")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats per row (default 5, or 3 with --quick)")
    p.add_argument("--only", default=None,
                   help="comma-separated sections to run (default: all: %s)"
                        % ",".join(keys))
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write raw timings, medians, ratios, machine info and "
                        "targets to FILE")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a target fails (or a row errors)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="dump all thread stacks and exit if the run hangs "
                        "longer than this")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print progress and tracebacks of failing rows")
    return p


def main(argv=None, sections=None, prog=None):
    """Entry point.  ``sections`` restricts the registry (the standalone
    scripts pass their own section key)."""
    allowed = list(sections or SECTIONS)
    args = build_parser(prog, allowed).parse_args(argv)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        bad = [k for k in keys if k not in allowed]
        if bad:
            print("unknown section(s): %s (choose from %s)"
                  % (",".join(bad), ",".join(allowed)), file=sys.stderr)
            return 2
    else:
        keys = allowed
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if repeats < 1:
        print("--repeats must be >= 1", file=sys.stderr)
        return 2
    if args.timeout:
        faulthandler.dump_traceback_later(args.timeout, exit=True)

    try:
        load_nativepool()
    except NativepoolUnavailable as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2

    info = machine_info()
    print(format_header(info, repeats, args.quick))
    sys.stdout.flush()
    log = (lambda s: print(s, file=sys.stderr)) if args.verbose else None
    results = []
    for key in keys:
        res = run_section(SECTIONS[key], repeats, quick=args.quick, log=log)
        results.append(res)
        print(format_section(res))
        if args.verbose:
            for r in res["rows"].values():
                if r.get("traceback"):
                    print(r["traceback"], file=sys.stderr)
        sys.stdout.flush()
    print(format_summary(results))
    if args.timeout:
        faulthandler.cancel_dump_traceback_later()

    if args.json:
        cfg = collections.OrderedDict([
            ("argv", list(sys.argv if argv is None else argv)),
            ("quick", args.quick), ("repeats", repeats), ("sections", keys),
            ("threads_alive_at_end", threading.active_count()),
        ])
        write_json(args.json, info, cfg, results)
        print("wrote %s" % args.json)

    if args.check:
        ok = all(t["passed"] is not False for res in results for t in res["targets"])
        ok = ok and not any(r["error"] for res in results for r in res["rows"].values())
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
