"""Section process: ``nativepool.ProcessPool`` against
``concurrent.futures.ProcessPoolExecutor`` (the baseline of every ratio),
with ``multiprocessing.Pool``, loky and pebble for context.

Every pool has 2 workers and the "forkserver" start method
(``multiprocessing.get_context("forkserver")``, passed as ``mp_context``,
pebble's ``context=``), except loky, which runs on its own loky backend
(fork + exec of a fresh interpreter) as its users run it.  The forkserver
server is started once, by a throwaway stdlib pool, before the first timed
region, so no row pays for it; it preloads this module (and so
nativepool), so its workers start without importing them.  Every row
creates its pool and warms it up (every worker has run a task) before its
timed region and shuts it down after it (also when the row fails), so the
timed regions are the steady state; the start-up rows time the whole life
of a pool instead.  loky is the exception: ``get_reusable_executor()``,
its own way to keep workers between uses, is reused from row to row (its
workers are fresh interpreters, slow to start) and shut down at exit or
when a row fails.

Six groups of rows, each its own workload:

* task: N sequential round trips ``submit(noop).result()``
  (``apply_async(noop).get()``, ``schedule(noop).result()``): the
  per-task overhead, us per task.
* map: ``list(pool.map(inc, range(n), chunksize=1000))``
  (``multiprocessing.Pool.map(inc, range(n), chunksize=1000)``), us per
  item; the target compares with multiprocessing.Pool.
* bytes: a 64 MiB ``bytes`` (16 MiB with --quick) sent to a worker, its
  length sent back (``submit(nbytes, data).result()``), ms per transfer,
  in the steady state: the warm-up sends every worker the data first.
* numpy: the same with a uint8 numpy array ("n/a" without numpy).
* cpu: 4 calls of the pure-Python ``cpu_intensive(n)`` (n calibrated at
  run time to ~0.2 s a call, ~0.05 s with --quick) on 2 workers against
  the same 4 calls in a loop in this process, ms for the 4.
* startup: create a pool, ``submit(noop)`` twice, wait for both, shut it
  down: ms per pool life, stdlib and nativepool only.

The "vs stdlib" column is always ``stdlib_median / row_median`` within the
group.  Rows of an optional library that is not installed (``pip install
loky pebble``, the ``bench`` extra) say "n/a (not installed)"; a nativepool
without ProcessPool makes its rows "n/a (not implemented)" and their
targets N/A.

Hidden debugging switch: ``NATIVEPOOL_BENCH_FAKE_PROCESS=1`` benchmarks the
stdlib's ProcessPoolExecutor in place of ``nativepool.ProcessPool`` (to
test this section before ProcessPool exists); the section's description
line and the rows' labels then say so loudly.

The worker functions are module-level functions of this module, so that
forkserver (and loky's) workers import them by reference.
"""

import atexit
import concurrent.futures
import gc
import multiprocessing
import operator
import os
import time

from .harness import (
    NOT_IMPLEMENTED,
    ROLE_FLOOR,
    ROLE_OURS,
    ROLE_REF,
    ROLE_STDLIB,
    NativepoolUnavailable,
    Row,
    Section,
    Target,
    _fmt_times,
    _ratio,
    register_section,
)
from .native import _best_of, _calibrate_count, sum_squares_value

perf_counter = time.perf_counter
StdlibProcessPool = concurrent.futures.ProcessPoolExecutor

WORKERS = 2
START_METHOD = "forkserver"
FAKE_ENV = "NATIVEPOOL_BENCH_FAKE_PROCESS"
FAKE = os.environ.get(FAKE_ENV, "") not in ("", "0")
NOT_INSTALLED = "n/a (not installed)"
NO_NUMPY = "n/a (numpy not installed)"
MiB = 1024 * 1024


def mp_context():
    """The one start method of every pool (but loky's)."""
    return multiprocessing.get_context(START_METHOD)


# --------------------------------------------------------------------------
# Worker functions (module level: the workers import them by reference)
# --------------------------------------------------------------------------

def noop():
    """The no-op task of the task and startup rows."""
    return None


def inc(x):
    """The trivial mapped function of the map rows."""
    return x + 1


def nbytes(obj):
    """The size of a bytes object or a numpy array (the transfer rows)."""
    return memoryview(obj).nbytes


def cpu_intensive(n):
    """The pure-Python CPU-bound task of the cpu rows."""
    return sum(i * i for i in range(n))


def worker_pid(delay=0.0, payload=None):
    """The warm-up task: this worker's pid, after ``delay`` seconds (so
    that a pool that starts workers on demand starts all of them).  The
    payload (the transfer rows' data) is only unpickled."""
    if delay:
        time.sleep(delay)
    return os.getpid()


# --------------------------------------------------------------------------
# The implementation under test
# --------------------------------------------------------------------------

class FakeProcessPool(StdlibProcessPool):
    """FAKE run (NATIVEPOOL_BENCH_FAKE_PROCESS=1): the stdlib's
    ProcessPoolExecutor posing as nativepool.ProcessPool."""


def nativepool_processpool():
    """``nativepool.ProcessPool``, None if this nativepool has none yet, or
    the stand-in of a FAKE run.  NativepoolUnavailable if nativepool does
    not import."""
    if FAKE:
        return FakeProcessPool
    try:
        import nativepool
    except Exception as exc:   # ImportError, or a crash in the extension
        raise NativepoolUnavailable("import nativepool failed: %s: %s"
                                    % (type(exc).__name__, exc))
    return getattr(nativepool, "ProcessPool", None)


def _import_optional(name):
    try:
        return __import__(name)
    except Exception:   # ImportError, or a broken install
        return None


def _numpy():
    return _import_optional("numpy")


# --------------------------------------------------------------------------
# The pools, behind one small interface
# --------------------------------------------------------------------------
#
# A handle has submit(fn, *args) -> h, wait(h) -> the result (both are the
# pool's own methods or a one-line adapter: ~0.1 us, against tens of us
# per task), map(fn, items, chunksize) -> list, and close(ok): shutdown and
# join; ok=False (a row failed) also cancels/terminates what is pending.

_result = operator.methodcaller("result")
_get = operator.methodcaller("get")


class _ExecutorHandle(object):
    """A concurrent.futures-style executor (stdlib, nativepool, loky)."""

    def __init__(self, pool):
        self.pool = pool
        self.submit = pool.submit
        self.wait = _result

    def map(self, fn, items, chunksize):
        return list(self.pool.map(fn, items, chunksize=chunksize))

    def close(self, ok):
        if ok:
            self.pool.shutdown(wait=True)
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _MpPoolHandle(object):
    """multiprocessing.Pool: apply_async(fn, args).get(), map."""

    def __init__(self, pool):
        self.pool = pool
        apply_async = pool.apply_async
        self.submit = lambda fn, *args: apply_async(fn, args)
        self.wait = _get

    def map(self, fn, items, chunksize):
        return self.pool.map(fn, items, chunksize=chunksize)

    def close(self, ok):
        if ok:
            self.pool.close()
        else:
            self.pool.terminate()
        self.pool.join()


class _PebbleHandle(object):
    """pebble.ProcessPool: schedule(fn, args).result(), map(...).result()."""

    def __init__(self, pool):
        self.pool = pool
        schedule = pool.schedule
        self.submit = lambda fn, *args: schedule(fn, args)
        self.wait = _result

    def map(self, fn, items, chunksize):
        return list(self.pool.map(fn, items, chunksize=chunksize).result())

    def close(self, ok):
        if ok:
            self.pool.close()
        else:
            self.pool.stop()
        self.pool.join()


def _open_stdlib():
    return _ExecutorHandle(StdlibProcessPool(max_workers=WORKERS,
                                             mp_context=mp_context()))


def _open_nativepool():
    cls = nativepool_processpool()
    if cls is None:
        raise NativepoolUnavailable(NOT_IMPLEMENTED)
    return _ExecutorHandle(cls(max_workers=WORKERS, mp_context=mp_context()))


def _open_mp_pool():
    return _MpPoolHandle(mp_context().Pool(WORKERS))


class _LokyHandle(_ExecutorHandle):
    """loky.get_reusable_executor(): loky's own way to reuse its workers
    (fresh interpreters, ~0.3 s each to start and import this module
    here), so a row leaves it running for the next one; a failed row
    kills it (the next row gets a new one), and so does the exit."""

    def close(self, ok):
        if not ok:
            self.pool.shutdown(wait=True, kill_workers=True)


_loky_pool = None


def _open_loky():
    global _loky_pool
    import loky
    # No forkserver here: loky's executor runs on its own "loky" backend
    # (fork + exec of a fresh interpreter, loky's default and what its
    # users get; loky would accept context="forkserver", but that is not
    # how loky is used); every other pool uses the forkserver context.
    # The idle timeout is long enough to keep the workers between rows.
    pool = loky.get_reusable_executor(max_workers=WORKERS, timeout=300)
    if _loky_pool is None:
        # loky shuts its executors down at exit too; this makes it explicit
        atexit.register(_shutdown_loky)
    _loky_pool = pool
    return _LokyHandle(pool)


def _shutdown_loky():
    if _loky_pool is not None:
        _loky_pool.shutdown(wait=True, kill_workers=True)


def _open_pebble():
    import pebble
    return _PebbleHandle(pebble.ProcessPool(max_workers=WORKERS,
                                            context=mp_context()))


def _available_nativepool():
    try:
        cls = nativepool_processpool()
    except NativepoolUnavailable as exc:
        return str(exc)
    return NOT_IMPLEMENTED if cls is None else None


def _available_module(name):
    return lambda: None if _import_optional(name) is not None else NOT_INSTALLED


_OURS_LABEL = ("nativepool.ProcessPool [FAKE: stdlib ProcessPoolExecutor]"
               if FAKE else "nativepool.ProcessPool")

# key -> (label, role, open, available)
IMPLS = {
    "stdlib": ("concurrent.futures.ProcessPoolExecutor", ROLE_STDLIB,
               _open_stdlib, lambda: None),
    "nativepool": (_OURS_LABEL, ROLE_OURS, _open_nativepool,
                   _available_nativepool),
    "mp_pool": ("multiprocessing.Pool", ROLE_REF, _open_mp_pool,
                lambda: None),
    "loky": ("loky.get_reusable_executor (loky backend)", ROLE_REF, _open_loky,
             _available_module("loky")),
    "pebble": ("pebble.ProcessPool", ROLE_REF, _open_pebble,
               _available_module("pebble")),
}
ALL_IMPLS = ("stdlib", "nativepool", "mp_pool", "loky", "pebble")


_forkserver_started = False


def ensure_forkserver():
    """Start the forkserver server (once per process) with a throwaway
    stdlib pool, so no timed region, start-up included, pays for it.

    The server preloads this module (and so nativepool): every worker it
    forks has the task functions imported already, whichever pool asked
    for it, instead of importing nativepool and this package (~0.1 s here)
    on its first task.  So the start-up rows compare the pools' own
    start-up, and a warm-up costs tens of ms, not a fresh import per
    worker (loky's workers, fresh interpreters, still import it)."""
    global _forkserver_started
    if _forkserver_started:
        return
    mp_context().set_forkserver_preload([__name__])
    with StdlibProcessPool(max_workers=1, mp_context=mp_context()) as pool:
        pool.submit(noop).result()
    _forkserver_started = True


def warm_up(handle, payload=None, delay=0.01, attempts=100):
    """Until every worker has answered: submit 2 x WORKERS short sleeps
    (so pools that start workers on demand start all of them) and collect
    the pids that ran them.  The first task a worker runs imports this
    module there (and numpy, when the payload is an array)."""
    pids = set()
    for _ in range(attempts):
        hs = [handle.submit(worker_pid, delay, payload)
              for _ in range(2 * WORKERS)]
        pids.update(handle.wait(h) for h in hs)
        if len(pids) >= WORKERS:
            return
    raise RuntimeError("warm-up: only %d of %d workers answered"
                       % (len(pids), WORKERS))


def with_pool(impl, body, payload=None):
    """Open the pool of ``impl``, warm it up, return ``body(handle)`` (the
    seconds of its timed region); the pool is shut down in any case."""
    ensure_forkserver()
    handle = IMPLS[impl][2]()
    ok = False
    try:
        warm_up(handle, payload)
        seconds = body(handle)
        ok = True
    finally:
        handle.close(ok)
    return seconds


# --------------------------------------------------------------------------
# Workloads: each returns the seconds of its timed region
# --------------------------------------------------------------------------

def bench_round_trips(impl, n_tasks):
    """task: ``n_tasks`` sequential ``wait(submit(noop))`` round trips."""
    def body(handle):
        submit, wait = handle.submit, handle.wait
        gc.collect()
        t0 = perf_counter()
        for _ in range(n_tasks):
            wait(submit(noop))
        return perf_counter() - t0
    return with_pool(impl, body)


def bench_map(impl, n_items, chunksize):
    """map: ``list(pool.map(inc, range(n_items), chunksize=chunksize))``."""
    out = []

    def body(handle):
        gc.collect()
        t0 = perf_counter()
        out.append(handle.map(inc, range(n_items), chunksize))
        return perf_counter() - t0
    seconds = with_pool(impl, body)
    res = out[0]
    if len(res) != n_items or res[0] != 1 or res[-1] != n_items:
        raise AssertionError("map returned a wrong result")
    return seconds


_payloads = {}


def payload(kind, mib):
    """The transfer payload (built once, outside the timed regions):
    ``mib`` MiB of random bytes, or a uint8 numpy array of them."""
    key = (kind, mib)
    obj = _payloads.get(key)
    if obj is None:
        raw = _payloads.get(("bytes", mib))
        if raw is None:
            raw = _payloads[("bytes", mib)] = os.urandom(mib * MiB)
        if kind == "bytes":
            obj = raw
        else:
            np = _numpy()
            # an ordinary (owned, writable) array, as users have them
            obj = _payloads[key] = np.frombuffer(raw, dtype=np.uint8).copy()
    return obj


def bench_transfer(impl, kind, mib, n_transfers):
    """bytes / numpy: ``n_transfers`` sequential ``submit(nbytes,
    data).result()``: the data out, a small int back."""
    data = payload(kind, mib)
    size = mib * MiB
    # Warm up with the data itself: every worker has received it once, so
    # the timed transfers are the steady state (throughput), not a fresh
    # process's first touch of that much memory (on a VM, up to 10x slower
    # and erratic); the same for every implementation.
    warm = data

    def body(handle):
        submit, wait = handle.submit, handle.wait
        got = []
        gc.collect()
        t0 = perf_counter()
        for _ in range(n_transfers):
            got.append(wait(submit(nbytes, data)))
        t1 = perf_counter()
        if got != [size] * n_transfers:
            raise AssertionError("the worker saw %r bytes, expected %d"
                                 % (got[:1], size))
        return t1 - t0
    return with_pool(impl, body, warm)


_calibrated = {}


def calibration(sizes):
    """n for which one cpu_intensive(n) takes ~sizes["task_s"] here
    (computed once per size, outside every timed region), and the best
    timing of one call at that n."""
    target = sizes["task_s"]
    cal = _calibrated.get(target)
    if cal is None:
        gc.collect()
        n = _calibrate_count(cpu_intensive, 50000, target)
        cal = {"n": n, "ms": _best_of(lambda: cpu_intensive(n), 1) * 1e3}
        _calibrated[target] = cal
    return cal


def bench_cpu_pool(impl, sizes):
    """cpu: submit ``n_cpu_tasks`` cpu_intensive(n), then every result."""
    n = calibration(sizes)["n"]
    n_tasks = sizes["n_cpu_tasks"]

    def body(handle):
        submit, wait = handle.submit, handle.wait
        gc.collect()
        t0 = perf_counter()
        hs = [submit(cpu_intensive, n) for _ in range(n_tasks)]
        out = [wait(h) for h in hs]
        t1 = perf_counter()
        if out != [sum_squares_value(n)] * n_tasks:
            raise AssertionError("cpu_intensive returned a wrong result")
        return t1 - t0
    return with_pool(impl, body)


def bench_cpu_serial(sizes):
    """cpu: the same ``n_cpu_tasks`` calls in a loop in this process."""
    n = calibration(sizes)["n"]
    n_tasks = sizes["n_cpu_tasks"]
    gc.collect()
    t0 = perf_counter()
    out = [cpu_intensive(n) for _ in range(n_tasks)]
    t1 = perf_counter()
    if out != [sum_squares_value(n)] * n_tasks:
        raise AssertionError("cpu_intensive returned a wrong result")
    return t1 - t0


def _bare_worker(conn, n, calls):
    conn.send("ready")
    conn.recv()
    conn.send([cpu_intensive(n) for _ in range(calls)])
    conn.close()


def bench_cpu_bare(sizes):
    """cpu: the machine's ceiling for this workload: WORKERS bare processes
    (no pool), already started and waiting, each making its share of the
    ``n_cpu_tasks`` calls; timed from "go" to the last result."""
    n = calibration(sizes)["n"]
    calls = sizes["n_cpu_tasks"] // WORKERS
    ensure_forkserver()
    ctx = mp_context()
    procs, conns = [], []
    try:
        for _ in range(WORKERS):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_bare_worker, args=(child, n, calls))
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        for c in conns:
            c.recv()
        gc.collect()
        t0 = perf_counter()
        for c in conns:
            c.send("go")
        out = [x for c in conns for x in c.recv()]
        t1 = perf_counter()
    finally:
        for c in conns:
            c.close()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    if out != [sum_squares_value(n)] * (calls * WORKERS):
        raise AssertionError("cpu_intensive returned a wrong result")
    return t1 - t0


def bench_startup(impl, n_starts):
    """startup: ``n_starts`` times (the seconds summed): create a pool,
    submit noop WORKERS times, wait for every result, shut it down."""
    ensure_forkserver()
    opener = IMPLS[impl][2]
    total = 0.0
    for _ in range(n_starts):
        gc.collect()
        t0 = perf_counter()
        handle = opener()
        try:
            hs = [handle.submit(noop) for _ in range(WORKERS)]
            for h in hs:
                handle.wait(h)
        except BaseException:
            handle.close(False)
            raise
        handle.close(True)
        total += perf_counter() - t0
    return total


# --------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------

# What the issue measured (stdlib and references), for the notes column.
_ISSUE_US = {"task.stdlib": "~78 us", "task.loky": "~95 us",
             "task.pebble": "~41 us", "task.mp_pool": "~20 us",
             "bytes.stdlib": "~34 ms"}


def _ms_per(size_key):
    """Row.per_task for "ms per <size_key>" (the harness divides seconds
    by per_task and multiplies by 1e6)."""
    return lambda s: s[size_key] * 1e3


_GROUPS = [
    # group, per_task, unit, run(impl, sizes), implementations
    ("task", "n_tasks", "us/task",
     lambda impl, s: bench_round_trips(impl, s["n_tasks"]), ALL_IMPLS),
    ("map", "n_items", "us/item",
     lambda impl, s: bench_map(impl, s["n_items"], s["chunksize"]), ALL_IMPLS),
    ("bytes", _ms_per("n_transfers"), "ms/xfer",
     lambda impl, s: bench_transfer(impl, "bytes", s["mib"],
                                    s["n_transfers"]), ALL_IMPLS),
    ("numpy", _ms_per("n_transfers"), "ms/xfer",
     lambda impl, s: bench_transfer(impl, "numpy", s["mib"],
                                    s["n_transfers"]), ALL_IMPLS),
    ("cpu", lambda s: 1e3, "ms",
     lambda impl, s: bench_cpu_pool(impl, s), ("stdlib", "nativepool")),
    ("startup", _ms_per("n_starts"), "ms/start",
     lambda impl, s: bench_startup(impl, s["n_starts"]),
     ("stdlib", "nativepool")),
]

_WHAT = {
    "task": {"stdlib": "submit(noop).result()",
             "nativepool": "submit(noop).result()",
             "mp_pool": "apply_async(noop).get()",
             "loky": "submit(noop).result()",
             "pebble": "schedule(noop).result()"},
    "map": {"mp_pool": "map(inc, range(n), chunksize)",
            "pebble": "map(inc, ..., chunksize).result()"},
    "bytes": {"mp_pool": "apply_async(nbytes, (data,)).get()",
              "pebble": "schedule(nbytes, (data,)).result()"},
    "numpy": {"mp_pool": "apply_async(nbytes, (array,)).get()",
              "pebble": "schedule(nbytes, (array,)).result()"},
    "cpu": {},
    "startup": {},
}
_DEFAULT_WHAT = {
    "task": "submit(noop).result()",
    "map": "list(map(inc, range(n), chunksize=chunksize))",
    "bytes": "submit(nbytes, data).result()",
    "numpy": "submit(nbytes, array).result()",
    "cpu": "4 x submit(cpu_intensive, n), then result()",
    "startup": "create, 2 x submit(noop), wait, shutdown",
}


def _available(group, impl):
    base = IMPLS[impl][3]
    if group != "numpy":
        return base

    def available():
        if _numpy() is None:
            return NO_NUMPY
        return base()
    return available


def _run(group_run, impl):
    return lambda sizes: group_run(impl, sizes)


def _rows():
    rows = []
    for group, per_task, unit, run, impls in _GROUPS:
        baseline = group + ".stdlib"
        for impl in impls:
            label, role = IMPLS[impl][0], IMPLS[impl][1]
            what = _WHAT[group].get(impl, _DEFAULT_WHAT[group])
            rows.append(Row("%s.%s" % (group, impl),
                            "%s: %s: %s" % (group, label, what), role,
                            _run(run, impl), available=_available(group, impl),
                            baseline=baseline, per_task=per_task, unit=unit))
        if group == "cpu":
            rows.append(Row("cpu.serial", "cpu: serial loop in this process: "
                            "4 x cpu_intensive(n)", ROLE_FLOOR,
                            bench_cpu_serial, baseline=baseline,
                            per_task=per_task, unit=unit))
            rows.append(Row("cpu.bare", "cpu: %d bare processes, no pool: "
                            "2 x cpu_intensive(n) each" % WORKERS, ROLE_REF,
                            bench_cpu_bare, baseline=baseline,
                            per_task=per_task, unit=unit))
    return rows


def _vs(medians, row_key, other, what):
    """'N.NNx faster/slower than <what>'."""
    if row_key not in medians or other not in medians:
        return ""
    r = medians[other] / medians[row_key]
    if r >= 1:
        return "%.2fx faster than %s" % (r, what)
    return "%.2fx slower than %s" % (1.0 / r, what)


def _notes(row_key, medians, sizes):
    group, impl = row_key.split(".", 1)
    parts = []
    if group == "map" and impl != "mp_pool":
        parts.append(_vs(medians, row_key, "map.mp_pool",
                         "multiprocessing.Pool.map"))
    if group in ("bytes", "numpy") and row_key in medians:
        # MiB per ms -> GiB/s
        parts.append("%.2f GiB/s" % (sizes["mib"] / medians[row_key]
                                     * 1e3 / 1024.0))
    if group == "cpu":
        if impl == "serial":
            parts.append("ideal with %d workers: %dx faster" % (WORKERS,
                                                                 WORKERS))
        else:
            parts.append(_vs(medians, row_key, "cpu.serial", "serial"))
        if impl == "bare":
            parts.append("this machine's ceiling")
    if group == "startup" and impl == "stdlib":
        parts.append("forkserver server already running")
    if row_key in _ISSUE_US and (group != "bytes" or sizes["mib"] == 64):
        parts.append("the issue: %s" % _ISSUE_US[row_key])
    if FAKE and impl == "nativepool":
        parts.append("FAKE")
    return "; ".join(p for p in parts if p)


def _describe(s):
    cal = _calibrated.get(s["task_s"])
    cal_text = ("n=%s, %.0f ms a call here" % (format(cal["n"], ","), cal["ms"])
                if cal else "n calibrated at run time")
    text = ("%d workers; start method %s (server started beforehand, "
            "preloading this module) for all but loky (its own backend, its "
            "reusable executor kept from row to row); each row creates and "
            "warms its pool before its timed region. "
            "task: %s round trips; map: %s ints, chunksize=%d; bytes/numpy: "
            "%d MiB out, its length back, x%d; cpu: %d x cpu_intensive(n) "
            "(~%g s a call; %s) vs the same loop here; startup: a pool's "
            "whole life (the forkserver server already running), x%d"
            % (WORKERS, START_METHOD, format(s["n_tasks"], ","),
               format(s["n_items"], ","), s["chunksize"], s["mib"],
               s["n_transfers"], s["n_cpu_tasks"], s["task_s"], cal_text,
               s["n_starts"]))
    if FAKE:
        text = ("*** FAKE RUN (%s=1): the 'nativepool.ProcessPool' rows are "
                "the stdlib ProcessPoolExecutor; their numbers say nothing "
                "about nativepool *** " % FAKE_ENV) + text
    return text


register_section(Section(
    key="process",
    title="process pools",
    describe=_describe,
    rows=_rows(),
    # Sized for this 2-vCPU VM, where a process round trip costs ~0.5 ms
    # and a 64 MiB pipe transfer ~0.3 s (the issue measured 78 us and 34
    # ms): full ~50 s, --quick ~15 s.  --quick sends 16 MiB.
    sizes_full={"n_tasks": 1000, "n_items": 100000, "chunksize": 1000,
                "mib": 64, "n_transfers": 3, "n_cpu_tasks": 4, "task_s": 0.2,
                "n_starts": 5},
    sizes_quick={"n_tasks": 300, "n_items": 20000, "chunksize": 1000,
                 "mib": 16, "n_transfers": 1, "n_cpu_tasks": 4,
                 "task_s": 0.05, "n_starts": 3},
    unit="us/task",
    notes=_notes,
    targets=[
        Target("process.task", ">=5x lower per-task time than "
               "ProcessPoolExecutor (submit(noop).result())",
               lambda m: _ratio(m, "task.stdlib", "task.nativepool"), ">=",
               5.0, _fmt_times, row="task.nativepool", column="ratio"),
        Target("process.map", "map(chunksize=1000) at least as fast as "
               "multiprocessing.Pool.map",
               lambda m: _ratio(m, "map.mp_pool", "map.nativepool"), ">=",
               1.0, _fmt_times, row="map.nativepool", column="notes"),
        Target("process.bytes", ">=3x the stdlib's throughput: 64 MiB bytes "
               "(16 MiB with --quick)",
               lambda m: _ratio(m, "bytes.stdlib", "bytes.nativepool"), ">=",
               3.0, _fmt_times, row="bytes.nativepool", column="ratio"),
        Target("process.numpy", ">=3x the stdlib's throughput: 64 MiB numpy "
               "array (16 MiB with --quick)", lambda m: _ratio(m, "numpy.stdlib", "numpy.nativepool"),
               ">=", 3.0, _fmt_times, row="numpy.nativepool", column="ratio"),
        Target("process.cpu", ">=1.8x faster than serial: 4 CPU-bound "
               "pure-Python tasks, 2 workers",
               lambda m: _ratio(m, "cpu.serial", "cpu.nativepool"), ">=", 1.8,
               _fmt_times, row="cpu.nativepool", column="notes"),
        Target("process.startup", "start-up no slower than the stdlib "
               "(>=0.9x: noise margin)",
               lambda m: _ratio(m, "startup.stdlib", "startup.nativepool"),
               ">=", 0.9, _fmt_times, row="startup.nativepool",
               column="ratio"),
    ],
))
