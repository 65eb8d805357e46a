/*
 * nativepool.h -- the C API of nativepool, for other extension modules.
 *
 * Another extension submits C tasks to a nativepool.ThreadPool and gets a
 * nativepool.Future back.  The task runs on a pool worker that does not hold
 * the GIL (and never takes it for this task), so C work from many tasks runs
 * on all cores at once.
 *
 * Build against it:   include_dirs=[nativepool.get_include()]
 * (no library to link: the functions are reached through a capsule).
 *
 * Use it (the numpy import_array pattern):
 *
 *     #include <nativepool.h>
 *
 *     static void run(void *arg) { ...C work, no Python calls... }
 *     static void cleanup(void *arg) { free(arg); }
 *
 *     PyMODINIT_FUNC PyInit_mymod(void) {
 *         if (NativePool_Import() < 0) return NULL;   // once, GIL held
 *         ...
 *     }
 *
 *     // later, with the GIL held:
 *     PyObject *fut = NativePool_Submit(pool, run, arg, cleanup);
 *     if (fut == NULL) return NULL;      // exception set; cleanup(arg) ran
 *
 * Each translation unit that calls the API must call NativePool_Import()
 * once (the table pointer below is static, per file).
 *
 * Rules:
 *   - Call the functions with the GIL held.
 *   - run(arg) runs once, on a worker thread, without the GIL: it must not
 *     touch Python objects or call the Python C API.
 *   - Ownership of arg passes to nativepool at the call, whatever happens:
 *     cleanup(arg), if given, is called exactly once: after run() (on the
 *     worker, without the GIL) for a task without a result function; after
 *     result() (with the GIL) for one with a result function; or, if run
 *     never happens (the submit failed, the future was cancelled, the pool
 *     was shut down with cancel_futures=True or broken), when nativepool
 *     gives the task up (with the GIL).  cleanup must not call Python.
 *   - The future's result is None, or what result(arg) returns: it is
 *     called with the GIL, exactly once, by the first to ask (result(),
 *     exception(), a done callback...) or else soon after run() returns, on
 *     a worker that takes the GIL to release finished tasks (as the stdlib
 *     lets go of a finished task's objects); return a new reference, or
 *     NULL with an exception set to fail the future with it.
 */
#ifndef NATIVEPOOL_H
#define NATIVEPOOL_H

#include <Python.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NATIVEPOOL_CAPI_VERSION 1
#define NATIVEPOOL_CAPSULE_NAME "nativepool._nativepool._C_API"

typedef struct NativePool_Task {
    void (*run)(void *arg);               /* required */
    void *arg;
    PyObject *(*result)(void *arg);       /* optional: None if NULL */
    void (*cleanup)(void *arg);           /* optional */
} NativePool_Task;

typedef struct NativePool_CAPI {
    unsigned int version;                 /* NATIVEPOOL_CAPI_VERSION */
    unsigned int size;                    /* sizeof(NativePool_CAPI) */
    /* Submit run(arg) to pool (a nativepool.ThreadPool).  A new reference
     * to a nativepool.Future, or NULL with an exception (TypeError if pool
     * is not a nativepool.ThreadPool, RuntimeError after shutdown). */
    PyObject *(*Submit)(PyObject *pool, void (*run)(void *), void *arg,
                        void (*cleanup)(void *));
    /* The same, with a result function. */
    PyObject *(*SubmitTask)(PyObject *pool, const NativePool_Task *task);
    /* 1 if obj is a nativepool.ThreadPool, else 0. */
    int (*IsThreadPool)(PyObject *obj);
} NativePool_CAPI;

#if defined(__GNUC__)
#define NATIVEPOOL_UNUSED __attribute__((unused))
#else
#define NATIVEPOOL_UNUSED
#endif

static const NativePool_CAPI *NativePool_API NATIVEPOOL_UNUSED = NULL;

/* Import nativepool and load its C API: 0, or -1 with ImportError. */
static inline int
NativePool_Import(void)
{
    const NativePool_CAPI *api =
        (const NativePool_CAPI *)PyCapsule_Import(NATIVEPOOL_CAPSULE_NAME, 0);
    if (api == NULL) {
        return -1;
    }
    if (api->version < NATIVEPOOL_CAPI_VERSION ||
        api->size < sizeof(NativePool_CAPI)) {
        PyErr_Format(PyExc_ImportError,
                     "nativepool C API version %u is older than %u, which this "
                     "module was built against: upgrade nativepool",
                     api->version, (unsigned)NATIVEPOOL_CAPI_VERSION);
        return -1;
    }
    NativePool_API = api;
    return 0;
}

#define NativePool_Submit(pool, run, arg, cleanup) \
    (NativePool_API->Submit((pool), (run), (arg), (cleanup)))
#define NativePool_SubmitTask(pool, task) \
    (NativePool_API->SubmitTask((pool), (task)))
#define NativePool_IsThreadPool(obj) (NativePool_API->IsThreadPool(obj))

#ifdef __cplusplus
}
#endif

#endif /* NATIVEPOOL_H */
