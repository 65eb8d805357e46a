#!/usr/bin/env python3
"""(b) map: list(pool.map(inc, items)) over 100k ints (us/task);
nativepool.ThreadPool against concurrent.futures.ThreadPoolExecutor, with
multiprocessing.pool.ThreadPool.map as a reference and
[inc(x) for x in items] as the floor.

Standalone form of section (b) of `python -m nativepool.bench`: the same
workload functions, the same table, options and targets
(--quick, --repeats N, --json FILE, --check; see --help).

    python benchmarks/bench_map.py [--quick] [--repeats N] [--json FILE] [--check]
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
    sys.exit(bench.main(sys.argv[1:], sections=["b"],
                        prog=os.path.basename(__file__)))
