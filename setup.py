"""Build the nativepool C extension.

Environment switches (read at build time):
  NATIVEPOOL_DEBUG=1                 -O0 -g, assertions on
  NATIVEPOOL_SANITIZE=address|thread build with that sanitizer (load the
                                     runtime with LD_PRELOAD when importing)
"""
import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class build_py_with_header(build_py):
    """Install the C API header inside the package (nativepool/include), where
    nativepool.get_include() finds it."""

    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "nativepool", "include")
        self.mkpath(dest)
        self.copy_file(os.path.join("csrc", "include", "nativepool.h"),
                       os.path.join(dest, "nativepool.h"))


RUNTIME = [
    "csrc/runtime/np_sync.c",
    "csrc/runtime/np_pool.c",
    "csrc/runtime/np_sem.c",
    "csrc/runtime/np_chan.c",
    "csrc/runtime/np_chan_setup.c",
]
# Kernels: plain C, one file per family; every file there is built.
KERNELS = sorted(glob.glob("csrc/kernels/*.c"))
MODULE = [
    "csrc/module/module.c",
    "csrc/module/future.c",
    "csrc/module/future_native.c",
    "csrc/module/future_cond.c",
    "csrc/module/threadpool.c",
    "csrc/module/mapjob.c",
    "csrc/module/mapiter.c",
    "csrc/module/waiting.c",
    "csrc/module/sync_lock.c",
    "csrc/module/sync_sem.c",
    "csrc/module/atomicint.c",
    "csrc/module/sync_cond.c",
    "csrc/module/sync_barrier.c",
    "csrc/module/queue.c",
    "csrc/module/queue_core.c",
    "csrc/module/native.c",
    "csrc/module/native_args.c",
    "csrc/module/native_task.c",
    "csrc/module/channel.c",
    "csrc/module/procpool.c",
    "csrc/module/procpool_collect.c",
    "csrc/module/procpool_workers.c",
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
    cmdclass={"build_py": build_py_with_header},
    ext_modules=[
        Extension(
            "nativepool._nativepool",
            sources=RUNTIME + KERNELS + MODULE,
            include_dirs=["csrc/runtime", "csrc/kernels", "csrc/module", "csrc/include"],
            libraries=["z", "ffi", "dl"],  # dl: dlopen before glibc 2.34
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            depends=[
                "csrc/runtime/np_sync.h",
                "csrc/runtime/np_pool.h",
                "csrc/runtime/np_sem.h",
                "csrc/runtime/np_chan.h",
                "csrc/runtime/np_chan_impl.h",
                "csrc/module/np_module.h",
                "csrc/module/npqueue.h",
                "csrc/module/mapjob.h",
                "csrc/module/np_native.h",
                "csrc/kernels/np_kernels.h",
                "csrc/kernels/np_ffi.h",
                "csrc/include/nativepool.h",
            ],
        )
    ],
)
