#!/usr/bin/env python3
"""(sync) synchronization objects: nativepool.Semaphore, BoundedSemaphore,
Lock (acquire/release and `with`), RLock, Event (two-thread ping-pong) and
AtomicInt (5 threads doing `counter += 1`) against threading's, each
nativepool row interleaved with its stdlib baseline; a class nativepool does
not have yet shows as "n/a (not implemented)".

Standalone form of section sync of `python -m nativepool.bench`: the same
workload functions, the same table, options and targets
(--quick, --repeats N, --json FILE, --check; see --help).

    python benchmarks/bench_sync.py [--quick] [--repeats N] [--json FILE] [--check]
"""
import os
import sys

try:
    from nativepool import bench
except ImportError:
    # Not installed: fall back to the source tree (needs the built extension).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    os.pardir, "python"))
    from nativepool import bench

if __name__ == "__main__":
    if "sync" not in bench.SECTIONS:
        sys.exit("%s has no section 'sync': a stale install of nativepool? "
                 "(pip install -e .)" % bench.__file__)
    sys.exit(bench.main(sys.argv[1:], sections=["sync"],
                        prog=os.path.basename(__file__)))
