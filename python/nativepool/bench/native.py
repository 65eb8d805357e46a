"""Section native: native tasks (``nativepool.native``) on 2 workers against
the serial loop, with the stdlib's ThreadPoolExecutor(2) for context.

Two groups, each with its own serial loop as the baseline of its rows (the
"vs stdlib" column of this section is the speedup vs that serial loop):

* cpu: 4 CPU-bound tasks of about 50 ms each.  ``native.sum_squares(n)``
  with n calibrated at run time, on nativepool.ThreadPool(2) (workers that
  never take the GIL) and on ThreadPoolExecutor(2) (a NativeFunction is a
  plain callable there, and releases the GIL when called: it scales too),
  vs 4 direct calls in a loop; two plain threads making 2 direct calls
  each show the machine's own 2-thread scaling (the ceiling of any pool).
  Then the pure-Python ``sum(i*i for i in range(n'))``, n' sized to ~50
  ms, on both pools vs its serial loop: GIL bound, ~1x at best.
* crc: 20,000 tiny tasks of about 20 us each.  ``native.crc32(buf)`` with
  buf sized at run time so that one ``zlib.crc32(buf)`` takes ~20 us, on
  nativepool.ThreadPool(2) (submit all then result all, and pool.map) vs
  ``zlib.crc32(buf)`` x 20,000 in a loop; the stdlib's ThreadPoolExecutor(2)
  running ``zlib.crc32(buf)`` (a GIL-releasing C call of the same cost)
  shows the cost of its per-task GIL hand-offs.  A reference row reads the
  last future's result first, then all: the main thread then sleeps once
  instead of being woken for nearly every future, which is the pool's own
  throughput without the wake-up cost of the in-order result loop.

Calibration runs once per process and size set, on the first row's first
run, outside every timed region; the section's description line (and so
the JSON) gives the calibrated n, n' and buffer size.
"""

import concurrent.futures
import gc
import threading
import time
import zlib

from .harness import (
    NOT_IMPLEMENTED,
    ROLE_FLOOR,
    ROLE_OURS,
    ROLE_REF,
    NativepoolUnavailable,
    Row,
    Section,
    Target,
    _fmt_times,
    _ratio,
    nativepool_threadpool,
    register_section,
)
from .pool import warm_up

perf_counter = time.perf_counter
StdlibThreadPool = concurrent.futures.ThreadPoolExecutor

WORKERS = 2


# --------------------------------------------------------------------------
# The implementation under test
# --------------------------------------------------------------------------

_KERNELS = ("sum_squares", "crc32")


def native_module():
    """``nativepool.native``, or None if this build has no native tasks."""
    try:
        from nativepool import native
    except Exception:   # ImportError, or the extension missing (FAKE run)
        return None
    if not all(hasattr(native, k) for k in _KERNELS):
        return None
    return native


def _native_available():
    return None if native_module() is not None else NOT_IMPLEMENTED


def _need_native():
    native = native_module()
    if native is None:
        raise NativepoolUnavailable(NOT_IMPLEMENTED)
    return native


# --------------------------------------------------------------------------
# Task bodies
# --------------------------------------------------------------------------

def py_sum_squares(n):
    """The pure-Python twin of native.sum_squares(n)."""
    return sum(i * i for i in range(n))


def sum_squares_value(n):
    """sum(i*i for i in range(n)), closed form (to check results)."""
    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0


# --------------------------------------------------------------------------
# Calibration (once per size set, outside the timed regions)
# --------------------------------------------------------------------------

_calibrated = {}


def _best_of(fn, repeats):
    best = None
    for _ in range(repeats):
        t0 = perf_counter()
        fn()
        dt = perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best


def _calibrate_count(fn, n0, target_s, repeats=7):
    """The n for which fn(n) takes ~target_s: the best of ``repeats``
    timings at n0 (a few ms: the least disturbed by other load), scaled
    linearly (both sums are linear in n, with no fixed cost to speak of at
    n0; a single slow timing at full size would throw the size off)."""
    t = _best_of(lambda: fn(n0), repeats)
    return max(1, int(round(n0 * target_s / t)))


def _crc_seconds_per_byte(size=64 * 1024, calls=100, repeats=7):
    """zlib.crc32's speed: the best of ``repeats`` loops of ``calls`` calls
    on a ``size``-byte buffer (crc32 is linear in the size; the call
    itself costs ~0.1 us)."""
    buf = bytes(size)
    crc = zlib.crc32

    def loop():
        for _ in range(calls):
            crc(buf)
    return _best_of(loop, repeats) / calls / size


def _make_buffer(per_byte, target_s):
    """A buffer for which one zlib.crc32(buf) takes ~target_s, rounded to
    4 KiB (16 KiB .. 4 MiB)."""
    size = int(round(target_s / per_byte / 4096.0)) * 4096
    size = min(max(size, 16 * 1024), 4 * 1024 * 1024)
    # The content does not change crc32's speed; make it non-trivial anyway.
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def calibration(sizes):
    """The calibrated workload sizes for ``sizes`` (computed once):
    dict with sumsq_n, sumsq_ms (one native.sum_squares(n) call), py_n,
    py_ms (one py_sum_squares(n') call), buf, buf_kib, crc_us (one
    zlib.crc32(buf) call).

    The CPU speed of this shared box drifts (other load, the host), so
    zlib.crc32's speed is sampled three times across the calibration and
    the best is kept; the ms/us shown are best-of timings at the final
    sizes, for information."""
    key = (sizes["task_ms"], sizes["crc_us"])
    cal = _calibrated.get(key)
    if cal is not None:
        return cal
    gc.collect()
    target = sizes["task_ms"] / 1e3
    cal = {}
    per_byte = _crc_seconds_per_byte()
    native = native_module()
    if native is not None:
        n = _calibrate_count(native.sum_squares, 8000000, target)
        cal["sumsq_n"] = n
        per_byte = min(per_byte, _crc_seconds_per_byte())
        cal["sumsq_ms"] = _best_of(lambda: native.sum_squares(n), 3) * 1e3
        # tiny: sum_squares sized like the crc32 calls (~20 us): a loop of
        # 100 calls per timing, so the call overhead is counted.
        t_us = sizes["crc_us"] / 1e6
        n0 = 20000
        per = _best_of(lambda: [native.sum_squares(n0) for _ in range(100)],
                       7) / 100
        tiny = max(1, int(round(n0 * t_us / per)))
        cal["tiny_n"] = tiny
        cal["tiny_us"] = _best_of(
            lambda: [native.sum_squares(tiny) for _ in range(100)], 7) / 100 * 1e6
    n = _calibrate_count(py_sum_squares, 100000, target)
    cal["py_n"] = n
    per_byte = min(per_byte, _crc_seconds_per_byte())
    cal["py_ms"] = _best_of(lambda: py_sum_squares(n), 2) * 1e3
    buf = _make_buffer(per_byte, sizes["crc_us"] / 1e6)
    crc = zlib.crc32
    cal["buf"] = buf
    cal["buf_kib"] = len(buf) / 1024.0
    cal["crc_us"] = _best_of(lambda: [crc(buf) for _ in range(100)],
                             7) / 100 * 1e6
    cal["crc_value"] = crc(buf)
    _calibrated[key] = cal
    return cal


def _cal_if_done(sizes):
    return _calibrated.get((sizes["task_ms"], sizes["crc_us"]))


# --------------------------------------------------------------------------
# Workload functions: each returns the seconds of its timed region only
# --------------------------------------------------------------------------

def _native_warm_up(pool, native):
    """Run a few native tasks first (first-call costs are not timed)."""
    small = bytes(4096)
    for f in [pool.submit(native.crc32, small) for _ in range(8)]:
        f.result()
    for f in [pool.submit(native.sum_squares, 1000) for _ in range(8)]:
        f.result()


def _check(out, n, expected, what):
    if len(out) != n or any(x != expected for x in out):
        bad = [x for x in out if x != expected][:1]
        raise AssertionError("%s: wrong results (%d of %d, first wrong: %r, "
                             "expected %r)" % (what, len(out), n,
                                               bad[0] if bad else None,
                                               expected))


def serial_loop(fn, arg, n_tasks, expected, what):
    """``[fn(arg) for _ in range(n_tasks)]`` in this thread."""
    gc.collect()
    t0 = perf_counter()
    out = [fn(arg) for _ in range(n_tasks)]
    t1 = perf_counter()
    _check(out, n_tasks, expected, what)
    return t1 - t0


def pool_submit(executor_factory, fn, arg, n_tasks, expected, what,
                native=None, max_workers=WORKERS):
    """``pool.submit(fn, arg)`` ``n_tasks`` times, then ``.result()`` on
    each, in order, on a pool of ``max_workers``.  Pool creation and
    warm-up (threads started; a few native tasks when ``native``) are
    before the timed region, shutdown after it."""
    pool = executor_factory(max_workers=max_workers)
    futures = out = None
    try:
        warm_up(pool)
        if native is not None:
            _native_warm_up(pool, native)
        gc.collect()
        t0 = perf_counter()
        submit = pool.submit
        futures = [submit(fn, arg) for _ in range(n_tasks)]
        out = [f.result() for f in futures]
        t1 = perf_counter()
    finally:
        pool.shutdown(wait=True)
    del futures
    _check(out, n_tasks, expected, what)
    return t1 - t0


def pool_submit_wait_last(executor_factory, fn, arg, n_tasks, expected, what,
                          native=None, max_workers=WORKERS):
    """As pool_submit, but ``.result()`` of the last future first, then of
    all of them: the main thread sleeps once instead of being woken for
    nearly every future, so this is the pool's own throughput (what the
    in-order result loop costs on top of it is the wake-ups)."""
    pool = executor_factory(max_workers=max_workers)
    futures = out = None
    try:
        warm_up(pool)
        if native is not None:
            _native_warm_up(pool, native)
        gc.collect()
        t0 = perf_counter()
        submit = pool.submit
        futures = [submit(fn, arg) for _ in range(n_tasks)]
        futures[-1].result()
        out = [f.result() for f in futures]
        t1 = perf_counter()
    finally:
        pool.shutdown(wait=True)
    del futures
    _check(out, n_tasks, expected, what)
    return t1 - t0


def plain_threads(fn, arg, n_tasks, expected, what, n_threads=WORKERS):
    """No pool: ``n_threads`` started threading.Threads, released together
    by a Barrier, each calling ``fn(arg)`` ``n_tasks / n_threads`` times
    (a NativeFunction releases the GIL per call).  For long calls (section
    cpu) this is the machine's own 2-thread scaling, the ceiling of any
    pool."""
    per = n_tasks // n_threads
    if per * n_threads != n_tasks:
        raise ValueError("n_tasks must be a multiple of n_threads")
    start = threading.Barrier(n_threads + 1)
    outs = [None] * n_threads
    errors = []

    def body(i):
        try:
            start.wait()
            outs[i] = [fn(arg) for _ in range(per)]
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=body, args=(i,), daemon=True)
               for i in range(n_threads)]
    for t in threads:
        t.start()
    gc.collect()
    t0 = perf_counter()
    start.wait()
    for t in threads:
        t.join()
    t1 = perf_counter()
    if errors:
        raise errors[0]
    _check([x for o in outs for x in o], n_tasks, expected, what)
    return t1 - t0


def pool_map(executor_factory, fn, arg, n_tasks, expected, what,
             native=None, max_workers=WORKERS):
    """``list(pool.map(fn, [arg] * n_tasks))`` on a pool of ``max_workers``
    (the input list is built, the pool created and warmed, before timing)."""
    items = [arg] * n_tasks
    pool = executor_factory(max_workers=max_workers)
    out = None
    try:
        warm_up(pool)
        if native is not None:
            _native_warm_up(pool, native)
        gc.collect()
        t0 = perf_counter()
        out = list(pool.map(fn, items))
        t1 = perf_counter()
    finally:
        pool.shutdown(wait=True)
    _check(out, n_tasks, expected, what)
    return t1 - t0


# ---- the rows' run functions ---------------------------------------------

def _ours_factory():
    return nativepool_threadpool()


def run_cpu_serial(sizes):
    native = _need_native()
    cal = calibration(sizes)
    n = cal["sumsq_n"]
    return serial_loop(native.sum_squares, n, sizes["n_cpu_tasks"],
                       sum_squares_value(n), "native.sum_squares serial")


def run_cpu_pool(factory):
    def run(sizes):
        native = _need_native()
        cal = calibration(sizes)
        n = cal["sumsq_n"]
        return pool_submit(factory(), native.sum_squares, n,
                           sizes["n_cpu_tasks"], sum_squares_value(n),
                           "native.sum_squares on a pool", native=native)
    return run


def run_cpu_threads(sizes):
    native = _need_native()
    cal = calibration(sizes)
    n = cal["sumsq_n"]
    return plain_threads(native.sum_squares, n, sizes["n_cpu_tasks"],
                         sum_squares_value(n), "native.sum_squares on threads")


def run_py_serial(sizes):
    cal = calibration(sizes)
    n = cal["py_n"]
    return serial_loop(py_sum_squares, n, sizes["n_cpu_tasks"],
                       sum_squares_value(n), "Python sum serial")


def run_py_pool(factory):
    def run(sizes):
        cal = calibration(sizes)
        n = cal["py_n"]
        return pool_submit(factory(), py_sum_squares, n, sizes["n_cpu_tasks"],
                           sum_squares_value(n), "Python sum on a pool")
    return run


def run_tiny_serial(sizes):
    native = _need_native()
    n = calibration(sizes)["tiny_n"]
    return serial_loop(native.sum_squares, n, sizes["n_crc_tasks"],
                       sum_squares_value(n), "tiny native.sum_squares serial")


def run_tiny_pool(how):
    work = {"submit": pool_submit, "map": pool_map}[how]

    def run(sizes):
        native = _need_native()
        n = calibration(sizes)["tiny_n"]
        return work(_ours_factory(), native.sum_squares, n,
                    sizes["n_crc_tasks"], sum_squares_value(n),
                    "tiny native.sum_squares on a pool (%s)" % how,
                    native=native)
    return run


def run_crc_serial(sizes):
    cal = calibration(sizes)
    return serial_loop(zlib.crc32, cal["buf"], sizes["n_crc_tasks"],
                       cal["crc_value"], "zlib.crc32 serial")


def run_crc_serial_native(sizes):
    native = _need_native()
    cal = calibration(sizes)
    return serial_loop(native.crc32, cal["buf"], sizes["n_crc_tasks"],
                       cal["crc_value"], "native.crc32 serial")


def run_crc_pool(factory, native_fn, how):
    """native_fn: True runs native.crc32, False zlib.crc32; how: "submit",
    "last" (submit, wait for the last future, then result all) or "map"."""
    work = {"submit": pool_submit, "last": pool_submit_wait_last,
            "map": pool_map}[how]

    def run(sizes):
        native = _need_native() if native_fn else None
        cal = calibration(sizes)
        fn = native.crc32 if native_fn else zlib.crc32
        return work(factory(), fn, cal["buf"], sizes["n_crc_tasks"],
                    cal["crc_value"], "%s on a pool (%s)"
                    % ("native.crc32" if native_fn else "zlib.crc32", how),
                    native=native_module())
    return run


def _stdlib():
    return StdlibThreadPool


# --------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------

def _describe(s):
    cal = _cal_if_done(s)
    if cal is None:
        cal_text = "calibrated at run time"
    else:
        parts = []
        if "sumsq_n" in cal:
            parts.append("sum_squares n=%s (%.1f ms/call)"
                         % (format(cal["sumsq_n"], ","), cal["sumsq_ms"]))
            parts.append("tiny sum_squares n=%s (%.1f us/call)"
                         % (format(cal["tiny_n"], ","), cal["tiny_us"]))
        parts.append("Python n'=%s (%.1f ms/call)"
                     % (format(cal["py_n"], ","), cal["py_ms"]))
        parts.append("buf %.0f KiB (zlib.crc32 %.1f us/call)"
                     % (cal["buf_kib"], cal["crc_us"]))
        cal_text = ", ".join(parts)
    return ("%d workers; cpu: %d tasks of ~%g ms; tiny and crc: %s tasks of ~%g us; "
            "submit all then result all unless map; %s. "
            "The 'vs stdlib' column here is the speedup vs the serial loop of "
            "the row's group (the 'baseline' rows)"
            % (WORKERS, s["n_cpu_tasks"], s["task_ms"],
               format(s["n_crc_tasks"], ","), s["crc_us"], cal_text))


def _times_vs(medians, row_key, other):
    """'N.NNx faster/slower than <other row>' text."""
    if row_key not in medians or other not in medians:
        return ""
    r = medians[other] / medians[row_key]
    if r >= 1:
        return "%.2fx faster than" % r
    return "%.2fx slower than" % (1.0 / r)


def _notes(row_key, medians, sizes):
    if row_key in ("cpu.nativepool", "py.nativepool"):
        base = row_key.split(".")[0] + ".stdlib"
        text = _times_vs(medians, row_key, base)
        return text and text + " ThreadPoolExecutor(2)"
    if row_key in ("crc.nativepool", "crc.nativepool_map",
                   "crc.nativepool_py"):
        text = _times_vs(medians, row_key, "crc.stdlib")
        return text and text + " ThreadPoolExecutor(2)"
    if row_key == "crc.stdlib":
        return "GIL hand-off per task (the issue: ~0.86x)"
    if row_key == "cpu.stdlib":
        return "a NativeFunction call releases the GIL"
    if row_key in ("py.stdlib",):
        return "GIL-bound: ~1x expected"
    if row_key == "tiny.nativepool":
        return "per-future wake-ups of the in-order result() loop"
    if row_key == "cpu.threads":
        return "the machine's 2-thread scaling"
    if row_key == "crc.nativepool_last":
        return "pool throughput: 1 wake-up instead of ~1 per future"
    if row_key == "crc.serial_native":
        return "direct calls (GIL released per call)"
    if row_key in ("cpu.serial", "py.serial", "crc.serial", "tiny.serial"):
        return "ideal with %d workers: %.2fx" % (WORKERS, float(WORKERS))
    return ""


def _row(key, label, role, run, baseline, per_task, available=None):
    return Row(key, label, role, run, available=available, baseline=baseline,
               per_task=per_task, unit="us/task")


_CPU = "cpu.serial"
_PY = "py.serial"
_CRC = "crc.serial"
_TINY = "tiny.serial"

register_section(Section(
    key="native",
    title="native tasks (GIL-free C kernels)",
    describe=_describe,
    rows=[
        # cpu: 4 x ~50 ms of native.sum_squares(n)
        _row(_CPU, "cpu: serial: native.sum_squares(n) x 4", ROLE_FLOOR,
             run_cpu_serial, _CPU, "n_cpu_tasks", _native_available),
        _row("cpu.nativepool", "cpu: nativepool.ThreadPool(2): "
             "native.sum_squares(n)", ROLE_OURS,
             run_cpu_pool(_ours_factory), _CPU, "n_cpu_tasks",
             _native_available),
        _row("cpu.stdlib", "cpu: ThreadPoolExecutor(2): native.sum_squares(n)",
             ROLE_REF, run_cpu_pool(_stdlib), _CPU, "n_cpu_tasks",
             _native_available),
        _row("cpu.threads", "cpu: 2 plain threads (ceiling): "
             "native.sum_squares(n)", ROLE_REF, run_cpu_threads, _CPU,
             "n_cpu_tasks", _native_available),
        # py: the same in pure Python: GIL-bound
        _row(_PY, "py: serial: sum(i*i for i in range(n')) x 4",
             ROLE_FLOOR, run_py_serial, _PY, "n_cpu_tasks"),
        _row("py.stdlib", "py: ThreadPoolExecutor(2): sum(i*i ...)",
             ROLE_REF, run_py_pool(_stdlib), _PY, "n_cpu_tasks"),
        _row("py.nativepool", "py: nativepool.ThreadPool(2): sum(i*i ...)",
             ROLE_REF, run_py_pool(_ours_factory), _PY, "n_cpu_tasks"),
        # tiny: 20,000 x ~20 us of native.sum_squares (compute-bound: two
        # run in parallel at full speed, unlike crc32 on this VM's vCPUs)
        _row(_TINY, "tiny: serial: native.sum_squares(n_tiny) x N", ROLE_FLOOR,
             run_tiny_serial, _TINY, "n_crc_tasks", _native_available),
        _row("tiny.nativepool_map", "tiny: nativepool.ThreadPool(2): map "
             "native.sum_squares", ROLE_OURS, run_tiny_pool("map"), _TINY,
             "n_crc_tasks", _native_available),
        _row("tiny.nativepool", "tiny: nativepool.ThreadPool(2): submit "
             "native.sum_squares", ROLE_REF, run_tiny_pool("submit"), _TINY,
             "n_crc_tasks", _native_available),
        # crc: 20,000 x ~20 us
        _row(_CRC, "crc: serial: zlib.crc32(buf) x N", ROLE_FLOOR,
             run_crc_serial, _CRC, "n_crc_tasks"),
        _row("crc.serial_native", "crc: serial: native.crc32(buf) x N",
             ROLE_REF, run_crc_serial_native, _CRC, "n_crc_tasks",
             _native_available),
        _row("crc.nativepool", "crc: nativepool.ThreadPool(2): submit "
             "native.crc32", ROLE_OURS,
             run_crc_pool(_ours_factory, True, "submit"), _CRC, "n_crc_tasks",
             _native_available),
        _row("crc.nativepool_map", "crc: nativepool.ThreadPool(2): map "
             "native.crc32", ROLE_OURS,
             run_crc_pool(_ours_factory, True, "map"), _CRC, "n_crc_tasks",
             _native_available),
        _row("crc.nativepool_last", "crc: nativepool.ThreadPool(2): submit "
             "native.crc32, last result() first", ROLE_REF,
             run_crc_pool(_ours_factory, True, "last"), _CRC, "n_crc_tasks",
             _native_available),
        _row("crc.nativepool_py", "crc: nativepool.ThreadPool(2): submit "
             "zlib.crc32", ROLE_REF,
             run_crc_pool(_ours_factory, False, "submit"), _CRC,
             "n_crc_tasks"),
        _row("crc.stdlib", "crc: ThreadPoolExecutor(2): submit zlib.crc32",
             ROLE_REF, run_crc_pool(_stdlib, False, "submit"), _CRC,
             "n_crc_tasks"),
    ],
    sizes_full={"n_cpu_tasks": 4, "task_ms": 50, "n_crc_tasks": 20000,
                "crc_us": 20},
    sizes_quick={"n_cpu_tasks": 4, "task_ms": 10, "n_crc_tasks": 4000,
                 "crc_us": 20},
    unit="us/task",
    baseline=_CPU,
    notes=_notes,
    targets=[
        Target("native.cpu", ">=1.9x faster than serial: 4 x sum_squares, "
               "2 workers", lambda m: _ratio(m, _CPU, "cpu.nativepool"), ">=",
               1.9, _fmt_times, row="cpu.nativepool", column="ratio"),
        Target("native.tiny", ">=1.8x faster than serial: 20,000 tiny "
               "native tasks (map)",
               lambda m: _ratio(m, _TINY, "tiny.nativepool_map"), ">=", 1.8,
               _fmt_times, row="tiny.nativepool_map", column="ratio"),
    ],
))
