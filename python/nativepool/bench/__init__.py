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

Layout, for whoever adds a section (native tasks, process pools...): the
harness is ``harness.py``; each family of sections is a module here
(``pool.py``: a, b, c; ``sync.py``: sync; ``native.py``: native;
``process.py``: process) imported below, which registers its sections when
imported.

* workload functions (``bench_submit_result``, ``bench_map``,
  ``bench_sleep_tasks``, ``serial_calls``, ...) take an executor factory and
  sizes and return the seconds of their timed region;
* a :class:`Section` names its rows (:class:`Row`: a label and a callable
  ``run(sizes) -> seconds``), its sizes (full and quick), its unit, and its
  :class:`Target` s;
* :func:`register_section` adds it to :data:`SECTIONS`, the registry that
  ``--only`` picks from.  The table, the JSON and ``--check`` follow from it.

Sections: (a) submit + result, (b) map, (c) I/O-bound sleeps, sync
(nativepool's synchronization objects and queues against threading's and
queue's), native (native tasks, ``nativepool.native``, on 2 workers
against the serial loop), and process (``nativepool.ProcessPool`` against
``concurrent.futures.ProcessPoolExecutor``, with ``multiprocessing.Pool``,
and loky and pebble when installed (``pip install loky pebble``), for
context: per-task round trips, map with chunksize=1000, 64 MiB bytes and
numpy transfers, 4 CPU-bound tasks against the serial loop, start-up; 2
workers, forkserver; rows of a missing optional library are "n/a (not
installed)").  sync is a list of pairs: each row names its own
baseline row, size and unit, and a class nativepool does not have yet is
"n/a (not implemented)" with its target N/A (not a FAIL for ``--check``).

Hidden debugging switch: ``NATIVEPOOL_BENCH_FAKE=1`` benchmarks the stdlib's
ThreadPoolExecutor in place of ``nativepool.ThreadPool`` (to test this
script without the C extension); the header then says so loudly.
``NATIVEPOOL_BENCH_FAKE_PROCESS=1`` likewise benchmarks the stdlib's
ProcessPoolExecutor in place of ``nativepool.ProcessPool`` (section
process; its description line and labels then say FAKE).
"""

from .harness import (  # noqa: F401  (the API of the harness)
    SECTIONS,
    Row,
    Section,
    Target,
    machine_info,
    main,
    register_section,
)
from . import pool, sync, native, process  # noqa: F401,E402  (each registers its sections)

__all__ = ["SECTIONS", "Row", "Section", "Target", "machine_info", "main",
           "register_section"]
