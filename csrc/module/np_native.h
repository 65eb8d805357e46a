/* np_native.h -- what native.c (NativeFunction, calls), native_task.c (pool
 * tasks, the C API) and mapjob.c share about a native call.
 *
 * Life of a call (np_ncall):
 *
 *   np_ncall_new (GIL)      arguments converted into k.arg, buffers pinned
 *        |                  (views), the function referenced
 *        v
 *   np_ncall_run (no GIL)   the kernel fills k's outcome; nothing else of
 *        |                  the call is touched, so any thread may run it
 *        v
 *   np_ncall_outcome (GIL)  the outcome becomes a Python object/exception
 *        |
 *        v
 *   np_ncall_free (GIL)     buffers released, references dropped, k.out freed
 *
 * A call that never runs (cancelled) goes straight to np_ncall_free.
 */
#ifndef NP_NATIVE_H
#define NP_NATIVE_H

#include "np_module.h"
#include "np_ffi.h"
#include "np_kernels.h"

/* A task submitted through the C API (include/nativepool.h). */
typedef struct np_capi_call {
    void (*run)(void *arg);
    PyObject *(*result)(void *arg);   /* or NULL: the result is None */
    void (*cleanup)(void *arg);       /* or NULL */
    void *arg;
    int cleaned;                      /* cleanup already called */
    int failed;                       /* result will raise (set before the
                                       * future finishes): a finalizer
                                       * loads it to log it if unread */
} np_capi_call;

struct np_ncall {
    np_kcall k;                /* first member: kernels see only this */
    np_kernel_fn kernel;
    PyObject *fn;              /* the NativeFunction (strong), NULL for C API */
    PyObject *filename;        /* the path argument as given, for OSError */
    np_capi_call capi;         /* C API tasks only */
    int nviews;                /* pinned so far */
    Py_buffer views[];         /* one per buffer or path parameter */
};

/* A call with room for nviews pinned buffers, zeroed but for the views.
 * GIL held; NULL with MemoryError. */
np_ncall *np_ncall_alloc(Py_ssize_t nviews);

/* ---- NativeFunction (native.c), its arguments (native_args.c) ---------- */

/* How one Python argument becomes a C value. */
enum {
    P_INT,        /* integer of `ctype`, range checked */
    P_FLOAT,      /* float (F32) or double (F64) */
    P_BUF,        /* read-only buffer, pinned */
    P_WBUF,       /* writable buffer, pinned */
    P_PATH,       /* file system path: NUL-terminated bytes, pinned */
    P_SECONDS,    /* a duration, with time.sleep's rules */
    P_U32_MASK,   /* unsigned int taken bitwise (zlib's start values) */
    P_CINT,       /* C int (zlib's level and wbits) */
    P_BUFSIZE,    /* zlib's bufsize: >= 0, and 0 means 1 */
    P_OFFSET,     /* file offset >= 0 */
    P_SUMSQ,      /* sum_squares' n: int64 up to NP_SUM_SQUARES_MAX */
};

typedef struct {
    const char *name;
    uint8_t kind;
    uint8_t ctype;          /* NP_T_*: P_INT, P_FLOAT */
    uint8_t has_default;
    int64_t idefault;
} np_param;

/* How the C outcome becomes a Python object. */
enum { R_NONE, R_INT, R_UINT, R_FLOAT, R_U128, R_BYTES, R_DIGEST };

typedef struct {
    const char *name;
    const char *doc;
    np_kernel_fn kernel;
    uint8_t rkind;
    int8_t npos_only;       /* leading parameters not passable by keyword */
    int8_t nparams;
    np_param params[4];
} np_builtin;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *name;          /* str */
    PyObject *doc;           /* str or NULL */
    PyObject *keepalive;     /* what owns a user function's code, or NULL */
    const np_builtin *builtin;
    np_param *params;        /* user functions: owned; builtins: NULL */
    np_ffi_fn *ffi;          /* user functions: owned */
    int nparams;
    int npos_only;
    int nviews;              /* parameters that pin a buffer */
    np_kernel_fn kernel;
    uint8_t rkind;
} np_nativefn;

#define NATIVEFN(op) ((np_nativefn *)(op))

static inline const np_param *
fn_params(np_nativefn *fn)
{
    return fn->builtin ? fn->builtin->params : fn->params;
}

#endif /* NP_NATIVE_H */
