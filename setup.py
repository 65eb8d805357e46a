"""Build the nativepool C extension.

Environment switches (read at build time):
  NATIVEPOOL_DEBUG=1                 -O0 -g, assertions on
  NATIVEPOOL_SANITIZE=address|thread build with that sanitizer (load the
                                     runtime with LD_PRELOAD when importing)
"""
import os

from setuptools import Extension, setup

RUNTIME = [
    "csrc/runtime/np_sync.c",
    "csrc/runtime/np_pool.c",
    "csrc/runtime/np_sem.c",
]
MODULE = [
    "csrc/module/module.c",
    "csrc/module/future.c",
    "csrc/module/threadpool.c",
    "csrc/module/mapjob.c",
    "csrc/module/waiting.c",
    "csrc/module/sync_lock.c",
    "csrc/module/sync_sem.c",
    "csrc/module/atomicint.c",
    "csrc/module/sync_cond.c",
    "csrc/module/sync_barrier.c",
    "csrc/module/queue.c",
    "csrc/module/queue_core.c",
]

cflags = ["-std=c11", "-Wall", "-Wextra", "-pthread", "-fno-strict-aliasing"]
ldflags = ["-pthread"]
if os.environ.get("NATIVEPOOL_DEBUG") == "1":
    cflags += ["-O0", "-g3", "-UNDEBUG"]
else:
    cflags += ["-O2"]
sanitize = os.environ.get("NATIVEPOOL_SANITIZE")
if sanitize:
    if sanitize not in ("address", "thread", "undefined"):
        raise SystemExit("NATIVEPOOL_SANITIZE must be address, thread or undefined")
    cflags += ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-g"]
    ldflags += ["-fsanitize=" + sanitize]

setup(
    ext_modules=[
        Extension(
            "nativepool._nativepool",
            sources=RUNTIME + MODULE,
            include_dirs=["csrc/runtime", "csrc/module", "csrc/include"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            depends=[
                "csrc/runtime/np_sync.h",
                "csrc/runtime/np_pool.h",
                "csrc/runtime/np_sem.h",
                "csrc/module/np_module.h",
                "csrc/module/npqueue.h",
            ],
        )
    ],
)
