#!/usr/bin/env python3
"""(a) submit + result: submit 20k no-op tasks, then .result() on each
(us/task); nativepool.ThreadPool against concurrent.futures.ThreadPoolExecutor,
with the plain serial loop as the floor.

Standalone form of section (a) of `python -m nativepool.bench`: the same
workload functions, the same table, options and targets
(--quick, --repeats N, --json FILE, --check; see --help).

    python benchmarks/bench_submit.py [--quick] [--repeats N] [--json FILE] [--check]
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
    sys.exit(bench.main(sys.argv[1:], sections=["a"],
                        prog=os.path.basename(__file__)))
