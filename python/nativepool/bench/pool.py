"""Sections a, b and c: the thread pool against concurrent.futures (submit
and result, map, I/O-bound sleeps), with the serial loop as the floor."""

import concurrent.futures
import gc
import math
import multiprocessing.pool
import os
import time

from .harness import (
    ROLE_FLOOR,
    ROLE_OURS,
    ROLE_REF,
    ROLE_STDLIB,
    Row,
    Section,
    Target,
    _fmt_times,
    _ours,
    _ratio,
    register_section,
)

perf_counter = time.perf_counter
StdlibThreadPool = concurrent.futures.ThreadPoolExecutor


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
