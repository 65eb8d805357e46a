"""Shared helpers for the native-task tests (test_native*.py): the C sources
compiled at test time and small helpers.  Not a test module."""
import gc
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zlib

import pytest

from conftest import np, HANG_TIMEOUT


def get_native():
    """nativepool.native, or skip the calling test module."""
    native = getattr(np, "native", None)
    if native is None:
        pytest.skip("the module under test has no native tasks",
                    allow_module_level=True)
    return native


def sum_squares_formula(n):
    """sum(i*i for i in range(n)), in closed form."""
    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0


def drain(pool):
    """Let the pool release what its GIL-less workers left behind: finished
    native futures are released lazily, by the next submit/map/shutdown."""
    pool.submit(int).result(HANG_TIMEOUT)
    gc.collect()



# ---- shared by the test files -----------------------------------------------

DATA = b"".join(b"record %d %d\n" % (i, i * 7919 % 1013) for i in range(3000))


@pytest.fixture
def datafile(tmp_path):
    """A file holding DATA."""
    p = tmp_path / "data.bin"
    p.write_bytes(DATA)
    return p


@pytest.fixture
def pool1(make_pool):
    """A one-worker pool (for queueing behind a native sleep)."""
    return make_pool(max_workers=1)


# zlib.compress takes wbits from 3.11 (ours does on every Python).
ZLIB_WBITS = sys.version_info >= (3, 11)


def zcompress(data, level=-1, wbits=15):
    """zlib.compress(data, level, wbits) on every Python (compressobj gives
    zlib.compress's bytes at level != 0 before 3.11)."""
    if ZLIB_WBITS:
        return zlib.compress(data, level, wbits)
    if wbits == 15:
        return zlib.compress(data, level)
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


def outcome(fn, *args, **kwargs):
    """('ok', value) or (exception class, str(exception))."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001
        return (type(exc), str(exc))


def compiler():
    return shutil.which("gcc")


# --------------------------------------------------------------------------
# a tiny C library with every type NativeFunction supports (test_native_wrap*)

LIB_SOURCE = r"""
#include <stdint.h>
#include <string.h>

int8_t neg8(int8_t x) { return (int8_t)-x; }
int8_t add8(int8_t a, int8_t b) { return (int8_t)(a + b); }
uint8_t u8max(void) { return 255; }
uint8_t u8id(uint8_t x) { return x; }
int16_t neg16(int16_t x) { return (int16_t)-x; }
uint16_t u16id(uint16_t x) { return x; }
int32_t neg32(int32_t x) { return -x; }
uint32_t u32id(uint32_t x) { return x; }
uint32_t u32max(void) { return UINT32_MAX; }
int64_t i64min(void) { return INT64_MIN; }
int64_t i64max(void) { return INT64_MAX; }
int64_t i64id(int64_t x) { return x; }
uint64_t u64max(void) { return UINT64_MAX; }
uint64_t u64id(uint64_t x) { return x; }
int64_t add(int64_t a, int64_t b) { return a + b; }
float fhalf(float x) { return x / 2.0f; }
double dhalf(double x) { return x / 2.0; }
int is_nan(double x) { return x != x; }
double dmix(int8_t a, double b, int32_t c, float d, uint64_t e, int16_t f) {
    return a + b + c + (double)d + (double)e + f;
}
double mixed_order(double a, int32_t b, double c, int64_t d) {
    return a * 1000.0 + b * 100.0 + c * 10.0 + (double)d;
}
int64_t sum16(int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5,
              int64_t a6, int64_t a7, int64_t a8, int64_t a9, int64_t a10,
              int64_t a11, int64_t a12, int64_t a13, int64_t a14, int64_t a15,
              int64_t a16) {
    return a1 + 2*a2 + 3*a3 + 4*a4 + 5*a5 + 6*a6 + 7*a7 + 8*a8 + 9*a9 +
           10*a10 + 11*a11 + 12*a12 + 13*a13 + 14*a14 + 15*a15 + 16*a16;
}
double dsum16(double a1, double a2, double a3, double a4, double a5, double a6,
              double a7, double a8, double a9, double a10, double a11,
              double a12, double a13, double a14, double a15, double a16) {
    return a1 + 2*a2 + 3*a3 + 4*a4 + 5*a5 + 6*a6 + 7*a7 + 8*a8 + 9*a9 +
           10*a10 + 11*a11 + 12*a12 + 13*a13 + 14*a14 + 15*a15 + 16*a16;
}
void store42(int64_t *out) { *out = 42; }
void fill(double *out, int64_t n, double v) {
    for (int64_t i = 0; i < n; i++) out[i] = v;
}
double sum(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}
int64_t count_bytes(const char *p, int64_t n, int32_t c) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += p[i] == (char)c;
    return k;
}
/* CPU work the compiler cannot fold. */
uint64_t spin(uint64_t n) {
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x = i;
        __asm__ __volatile__("" : "+r"(x));
        s += x ^ (x >> 3);
    }
    return s;
}
"""


def build_shared_lib(directory):
    """Compile LIB_SOURCE into directory; return the .so path (skip without gcc)."""
    gcc = compiler()
    if gcc is None:
        pytest.skip("gcc is needed to build the test library")
    src = os.path.join(directory, "npwrap.c")
    with open(src, "w") as f:
        f.write(LIB_SOURCE)
    out = os.path.join(directory, "libnpwrap.so")
    proc = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                           src, "-o", out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def spin_py(n):
    """What LIB_SOURCE's spin(n) returns."""
    return sum(i ^ (i >> 3) for i in range(n)) & (2**64 - 1)


# --------------------------------------------------------------------------
# a third-party extension using only nativepool.h (test_native_capi)

EXT_NAME = "npcapi_testext"

EXT_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <nativepool.h>

/* Per-tag counters (a test uses its own tag, so lazily released tasks of
 * other tests never disturb it), and a per-task cleanup count. */
#define NTAGS 256
#define MAX_IDS (1 << 20)

static atomic_long runs[NTAGS], runs_with_gil[NTAGS], cleanups[NTAGS],
    cleanups_with_gil[NTAGS], results[NTAGS];
static atomic_int cleaned_by_id[MAX_IDS];
static atomic_long next_id;

enum { OK = 0, FAIL_VALUE = 1, FAIL_NOMEM = 2, FAIL_NULL = 3 };

typedef struct {
    long id;
    int tag;
    int fail;
    int64_t n;
    int64_t sleep_ms;
    uint64_t sum;
} work;

static void
run_work(void *arg)
{
    work *w = arg;
    atomic_fetch_add(&runs[w->tag], 1);
    if (PyGILState_Check()) {
        atomic_fetch_add(&runs_with_gil[w->tag], 1);
    }
    if (w->sleep_ms > 0) {
        struct timespec ts = {(time_t)(w->sleep_ms / 1000),
                              (long)(w->sleep_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    uint64_t s = 0;
    for (int64_t i = 0; i < w->n; i++) {
        uint64_t x = (uint64_t)i;
        __asm__ __volatile__("" : "+r"(x));
        s += x;
    }
    w->sum = s;
}

static void
cleanup_work(void *arg)
{
    work *w = arg;
    if (PyGILState_Check()) {
        atomic_fetch_add(&cleanups_with_gil[w->tag], 1);
    }
    if (w->id >= 0 && w->id < MAX_IDS) {
        atomic_fetch_add(&cleaned_by_id[w->id], 1);
    }
    atomic_fetch_add(&cleanups[w->tag], 1);
    free(w);
}

static PyObject *
result_work(void *arg)
{
    work *w = arg;
    atomic_fetch_add(&results[w->tag], 1);
    switch (w->fail) {
    case FAIL_VALUE:
        PyErr_Format(PyExc_ValueError, "task failed for n=%lld", (long long)w->n);
        return NULL;
    case FAIL_NOMEM:
        return PyErr_NoMemory();
    case FAIL_NULL:
        return NULL;       /* no exception set: a bug in the extension */
    default:
        return PyLong_FromUnsignedLongLong(w->sum);
    }
}

/* (pool, tag, n[, sleep_ms]) -> work, or NULL with an exception. */
static work *
new_work(PyObject *args, PyObject **pool, int fail)
{
    int tag;
    long long n, sleep_ms = 0;
    if (!PyArg_ParseTuple(args, "OiL|L", pool, &tag, &n, &sleep_ms)) {
        return NULL;
    }
    if (tag < 0 || tag >= NTAGS) {
        PyErr_SetString(PyExc_ValueError, "bad tag");
        return NULL;
    }
    work *w = calloc(1, sizeof *w);
    if (w == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    w->id = atomic_fetch_add(&next_id, 1);
    w->tag = tag;
    w->fail = fail;
    w->n = n;
    w->sleep_ms = sleep_ms;
    return w;
}

/* submit(pool, tag, n, sleep_ms=0): NativePool_Submit, result None. */
static PyObject *
submit(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *pool;
    work *w = new_work(args, &pool, OK);
    if (w == NULL) {
        return NULL;
    }
    return NativePool_Submit(pool, run_work, w, cleanup_work);
}

static PyObject *
submit_task_impl(PyObject *args, int fail, int with_result, int with_cleanup,
                 int null_run)
{
    PyObject *pool;
    work *w = new_work(args, &pool, fail);
    if (w == NULL) {
        return NULL;
    }
    NativePool_Task t = {null_run ? NULL : run_work, w,
                         with_result ? result_work : NULL,
                         with_cleanup ? cleanup_work : NULL};
    return NativePool_SubmitTask(pool, &t);
}

static PyObject *
submit_task(PyObject *Py_UNUSED(self), PyObject *args)
{
    return submit_task_impl(args, OK, 1, 1, 0);
}

static PyObject *
submit_failing(PyObject *Py_UNUSED(self), PyObject *args)
{
    return submit_task_impl(args, FAIL_VALUE, 1, 1, 0);
}

static PyObject *
submit_nomem(PyObject *Py_UNUSED(self), PyObject *args)
{
    return submit_task_impl(args, FAIL_NOMEM, 1, 1, 0);
}

static PyObject *
submit_null_result(PyObject *Py_UNUSED(self), PyObject *args)
{
    return submit_task_impl(args, FAIL_NULL, 1, 1, 0);
}

static PyObject *
submit_null_run(PyObject *Py_UNUSED(self), PyObject *args)
{
    return submit_task_impl(args, OK, 1, 1, 1);
}

/* No cleanup at all: the work struct leaks by design (a few bytes). */
static PyObject *
submit_no_cleanup(PyObject *Py_UNUSED(self), PyObject *args)
{
    return submit_task_impl(args, OK, 1, 0, 0);
}

static PyObject *
submit_null_task(PyObject *Py_UNUSED(self), PyObject *pool)
{
    return NativePool_SubmitTask(pool, NULL);
}

static PyObject *
counters(PyObject *Py_UNUSED(self), PyObject *arg)
{
    long tag = PyLong_AsLong(arg);
    if (tag == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (tag < 0 || tag >= NTAGS) {
        PyErr_SetString(PyExc_ValueError, "bad tag");
        return NULL;
    }
    return Py_BuildValue(
        "{s:l,s:l,s:l,s:l,s:l}", "runs", atomic_load(&runs[tag]),
        "runs_with_gil", atomic_load(&runs_with_gil[tag]),
        "cleanups", atomic_load(&cleanups[tag]),
        "cleanups_with_gil", atomic_load(&cleanups_with_gil[tag]),
        "results", atomic_load(&results[tag]));
}

static PyObject *
get_next_id(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromLong(atomic_load(&next_id));
}

/* cleanup_counts(first, last): [cleanup count of each task id in range]. */
static PyObject *
cleanup_counts(PyObject *Py_UNUSED(self), PyObject *args)
{
    long first, last;
    if (!PyArg_ParseTuple(args, "ll", &first, &last)) {
        return NULL;
    }
    if (first < 0 || last > MAX_IDS || first > last) {
        PyErr_SetString(PyExc_ValueError, "bad range");
        return NULL;
    }
    PyObject *list = PyList_New(last - first);
    for (long i = first; list != NULL && i < last; i++) {
        PyObject *v = PyLong_FromLong(atomic_load(&cleaned_by_id[i]));
        if (v == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i - first, v);
    }
    return list;
}

static PyObject *
is_pool(PyObject *Py_UNUSED(self), PyObject *obj)
{
    return PyBool_FromLong(NativePool_IsThreadPool(obj));
}

static PyMethodDef methods[] = {
    {"submit", submit, METH_VARARGS, NULL},
    {"submit_task", submit_task, METH_VARARGS, NULL},
    {"submit_failing", submit_failing, METH_VARARGS, NULL},
    {"submit_nomem", submit_nomem, METH_VARARGS, NULL},
    {"submit_null_result", submit_null_result, METH_VARARGS, NULL},
    {"submit_null_run", submit_null_run, METH_VARARGS, NULL},
    {"submit_no_cleanup", submit_no_cleanup, METH_VARARGS, NULL},
    {"submit_null_task", submit_null_task, METH_O, NULL},
    {"counters", counters, METH_O, NULL},
    {"next_id", get_next_id, METH_NOARGS, NULL},
    {"cleanup_counts", cleanup_counts, METH_VARARGS, NULL},
    {"is_pool", is_pool, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "@NAME@", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_@NAME@(void)
{
    if (NativePool_Import() < 0) {
        return NULL;
    }
    return PyModule_Create(&moddef);
}
""".replace("@NAME@", EXT_NAME)


def build_ext(directory, name=EXT_NAME, source=EXT_SOURCE):
    """Build the C API test extension (only nativepool.h and Python.h)."""
    gcc = compiler()
    if gcc is None:
        pytest.skip("gcc is needed to build the C API test extension")
    src = os.path.join(directory, name + ".c")
    with open(src, "w") as f:
        f.write(source)
    target = os.path.join(directory, name + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
           "-I" + sysconfig.get_paths()["include"], "-I" + np.get_include(),
           src, "-o", target]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, "%s\n%s" % (" ".join(cmd), proc.stderr)
    return target


def load_ext(path, name=EXT_NAME):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
