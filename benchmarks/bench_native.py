#!/usr/bin/env python3
"""(native) native tasks: nativepool.native kernels on 2 workers against the
serial loop.  cpu: 4 x native.sum_squares(n) of ~50 ms (n calibrated at run
time) on nativepool.ThreadPool(2) and ThreadPoolExecutor(2), and the
pure-Python sum(i*i for i in range(n')) on both (GIL-bound); crc: 20,000 x
native.crc32(buf) of ~20 us (buf sized at run time), submit and map, against
zlib.crc32(buf) x 20,000 in a loop and on ThreadPoolExecutor(2).

Standalone form of section native of `python -m nativepool.bench`: the same
workload functions, the same table, options and targets
(--quick, --repeats N, --json FILE, --check; see --help).

    python benchmarks/bench_native.py [--quick] [--repeats N] [--json FILE] [--check]
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
    if "native" not in bench.SECTIONS:
        sys.exit("%s has no section 'native': a stale install of nativepool? "
                 "(pip install -e .)" % bench.__file__)
    sys.exit(bench.main(sys.argv[1:], sections=["native"],
                        prog=os.path.basename(__file__)))
