#!/usr/bin/env python3
"""(c) I/O-bound: 100 tasks of time.sleep(0.02) on 10 workers (wall
seconds, ideal 0.2 s); nativepool.ThreadPool against
concurrent.futures.ThreadPoolExecutor.

Standalone form of section (c) of `python -m nativepool.bench`: the same
workload functions, the same table, options and targets
(--quick, --repeats N, --json FILE, --check; see --help).

    python benchmarks/bench_io.py [--quick] [--repeats N] [--json FILE] [--check]
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
    sys.exit(bench.main(sys.argv[1:], sections=["c"],
                        prog=os.path.basename(__file__)))
