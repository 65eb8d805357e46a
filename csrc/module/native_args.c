/* native_args.c -- a NativeFunction's arguments: matching them to its
 * parameters and converting each into a C value of the declared type, or
 * pinning its buffer.  With the GIL, at call or submit time, so that a bad
 * argument is an exception in the caller's thread and never a crash (or a
 * surprise) on a worker.
 */
#include "np_native.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- argument conversion ------------------------------------------------- */

static int
arg_type_error(np_nativefn *fn, int i, const char *expected, PyObject *o)
{
    PyErr_Format(PyExc_TypeError, "%U() argument %d ('%s') must be %s, not %.100s",
                 fn->name, i + 1, fn_params(fn)[i].name, expected,
                 Py_TYPE(o)->tp_name);
    return -1;
}

static int
arg_range_error(np_nativefn *fn, int i, PyObject *o, const char *range)
{
    PyErr_Format(PyExc_OverflowError, "%U() argument %d ('%s'): %R is out of "
                 "range for %s", fn->name, i + 1, fn_params(fn)[i].name, o, range);
    return -1;
}

/* An integer argument as int64 (*v) or, for unsigned types, uint64 (*u).
 * 0, or -1 with TypeError/OverflowError. */
static int
convert_index(np_nativefn *fn, int i, PyObject *o, int is_unsigned,
              int64_t *v, uint64_t *u, const char *range)
{
    if (!PyIndex_Check(o)) {
        return arg_type_error(fn, i, "an integer", o);
    }
    PyObject *ix = PyNumber_Index(o);
    if (ix == NULL) {
        return -1;
    }
    int overflow = 0;
    if (is_unsigned) {
        /* Negative or too large: OverflowError either way. */
        *u = PyLong_AsUnsignedLongLong(ix);
        if (*u == (uint64_t)-1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                Py_DECREF(ix);
                return -1;
            }
            overflow = 1;
        }
    }
    else {
        long long x = PyLong_AsLongLongAndOverflow(ix, &overflow);
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(ix);
            return -1;
        }
        *v = x;
    }
    Py_DECREF(ix);
    if (overflow) {
        PyErr_Clear();
        return arg_range_error(fn, i, o, range);
    }
    return 0;
}

static int
convert_int(np_nativefn *fn, int i, PyObject *o, uint8_t ctype, np_kval *out)
{
    static const struct { int64_t lo, hi; const char *name; } SIGNED[] = {
        [NP_T_I8] = {INT8_MIN, INT8_MAX, "int8"},
        [NP_T_I16] = {INT16_MIN, INT16_MAX, "int16"},
        [NP_T_I32] = {INT32_MIN, INT32_MAX, "int32"},
        [NP_T_I64] = {INT64_MIN, INT64_MAX, "int64"},
    };
    static const struct { uint64_t hi; const char *name; } UNSIGNED[] = {
        [NP_T_U8] = {UINT8_MAX, "uint8"},
        [NP_T_U16] = {UINT16_MAX, "uint16"},
        [NP_T_U32] = {UINT32_MAX, "uint32"},
        [NP_T_U64] = {UINT64_MAX, "uint64"},
    };
    int64_t v = 0;
    uint64_t u = 0;
    if (ctype >= NP_T_U8) {
        const char *name = UNSIGNED[ctype].name;
        if (convert_index(fn, i, o, 1, &v, &u, name) < 0) {
            return -1;
        }
        if (u > UNSIGNED[ctype].hi) {
            return arg_range_error(fn, i, o, name);
        }
        switch (ctype) {
        case NP_T_U8: out->u8 = (uint8_t)u; break;
        case NP_T_U16: out->u16 = (uint16_t)u; break;
        case NP_T_U32: out->u32 = (uint32_t)u; break;
        default: out->u64 = u; break;
        }
        return 0;
    }
    const char *name = SIGNED[ctype].name;
    if (convert_index(fn, i, o, 0, &v, &u, name) < 0) {
        return -1;
    }
    if (v < SIGNED[ctype].lo || v > SIGNED[ctype].hi) {
        return arg_range_error(fn, i, o, name);
    }
    switch (ctype) {
    case NP_T_I8: out->i8 = (int8_t)v; break;
    case NP_T_I16: out->i16 = (int16_t)v; break;
    case NP_T_I32: out->i32 = (int32_t)v; break;
    default: out->i64 = v; break;
    }
    return 0;
}

static int
convert_double(np_nativefn *fn, int i, PyObject *o, double *d)
{
    if (!PyFloat_Check(o) && !PyIndex_Check(o) &&
        Py_TYPE(o)->tp_as_number == NULL) {
        return arg_type_error(fn, i, "a real number", o);
    }
    *d = PyFloat_AsDouble(o);
    if (*d == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            return arg_type_error(fn, i, "a real number", o);
        }
        return -1;
    }
    return 0;
}

/* Pin o's memory in *view: contiguous, writable if asked. */
static int
pin_buffer(np_nativefn *fn, int i, PyObject *o, int writable, Py_buffer *view)
{
    if (PyObject_GetBuffer(o, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (!PyObject_CheckBuffer(o)) {
        PyErr_Clear();
        return arg_type_error(fn, i, writable
            ? "a writable bytes-like object (bytearray, memoryview, array, "
              "numpy array)"
            : "a bytes-like object (bytes, bytearray, memoryview, array, "
              "numpy array)", o);
    }
    PyObject *why = np_fetch_exception();
    Py_buffer probe;
    if (writable && PyObject_GetBuffer(o, &probe, PyBUF_SIMPLE) == 0) {
        PyBuffer_Release(&probe);
        Py_XDECREF(why);
        PyErr_Format(PyExc_TypeError, "%U() argument %d ('%s') must be a "
                     "writable bytes-like object (bytearray, memoryview, array, "
                     "numpy array), not a read-only %.100s", fn->name, i + 1,
                     fn_params(fn)[i].name, Py_TYPE(o)->tp_name);
        return -1;
    }
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%U() argument %d ('%s') must be a contiguous "
                 "buffer: %S", fn->name, i + 1, fn_params(fn)[i].name,
                 why ? why : Py_None);
    Py_XDECREF(why);
    return -1;
}

/* Convert argument i (o) into c->k.arg[i]; buffers go to c->views. */
static int
convert_arg(np_nativefn *fn, int i, PyObject *o, np_ncall *c)
{
    const np_param *p = &fn_params(fn)[i];
    np_kval *out = &c->k.arg[i];
    double d;
    int64_t v;
    uint64_t u;
    switch (p->kind) {
    case P_INT:
        return convert_int(fn, i, o, p->ctype, out);
    case P_FLOAT:
        if (convert_double(fn, i, o, &d) < 0) {
            return -1;
        }
        if (p->ctype == NP_T_F32) {
            if (isfinite(d) && fabs(d) > FLT_MAX) {
                return arg_range_error(fn, i, o, "float");
            }
            out->f32 = (float)d;
        }
        else {
            out->f64 = d;
        }
        return 0;
    case P_BUF:
    case P_WBUF: {
        Py_buffer *view = &c->views[c->nviews];
        if (pin_buffer(fn, i, o, p->kind == P_WBUF, view) < 0) {
            return -1;
        }
        c->nviews++;
        out->buf.ptr = view->buf;
        out->buf.len = (size_t)view->len;
        return 0;
    }
    case P_PATH: {
        PyObject *bytes = NULL;
        if (!PyUnicode_FSConverter(o, &bytes)) {
            return -1;
        }
        Py_buffer *view = &c->views[c->nviews];
        int r = PyObject_GetBuffer(bytes, view, PyBUF_SIMPLE);
        Py_DECREF(bytes);   /* the view holds it */
        if (r < 0) {
            return -1;
        }
        c->nviews++;
        out->buf.ptr = view->buf;   /* bytes are NUL-terminated */
        out->buf.len = (size_t)view->len;
        if (c->filename == NULL) {
            /* As open() reports it: the str or bytes os.fspath() gives. */
            c->filename = PyOS_FSPath(o);
            if (c->filename == NULL) {
                return -1;
            }
        }
        return 0;
    }
    case P_SECONDS:
        if (PyFloat_Check(o)) {
            d = PyFloat_AS_DOUBLE(o);
        }
        else if (PyIndex_Check(o)) {
            PyObject *ix = PyNumber_Index(o);
            d = ix ? PyLong_AsDouble(ix) : -1.0;
            Py_XDECREF(ix);
            if (d == -1.0 && PyErr_Occurred()) {
                if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    PyErr_SetString(PyExc_OverflowError, "sleep length is too large");
                }
                return -1;
            }
        }
        else {
            return arg_type_error(fn, i, "a number (int or float)", o);
        }
        if (isnan(d)) {
            PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
            return -1;
        }
        if (d < 0) {
            PyErr_SetString(PyExc_ValueError, "sleep length must be non-negative");
            return -1;
        }
        if (d > 9e9) {   /* ~285 years: beyond int64 nanoseconds soon after */
            PyErr_SetString(PyExc_OverflowError, "sleep length is too large");
            return -1;
        }
        out->f64 = d;
        return 0;
    case P_U32_MASK:
        if (!PyIndex_Check(o)) {
            return arg_type_error(fn, i, "an integer", o);
        }
        else {
            PyObject *ix = PyNumber_Index(o);
            if (ix == NULL) {
                return -1;
            }
            unsigned long m = PyLong_AsUnsignedLongMask(ix);
            Py_DECREF(ix);
            if (m == (unsigned long)-1 && PyErr_Occurred()) {
                return -1;
            }
            out->u32 = (uint32_t)(m & 0xffffffffUL);
        }
        return 0;
    case P_CINT:
        if (convert_index(fn, i, o, 0, &v, &u, "a C int") < 0) {
            return -1;
        }
        if (v < INT_MIN || v > INT_MAX) {
            return arg_range_error(fn, i, o, "a C int");
        }
        out->i32 = (int32_t)v;
        return 0;
    case P_BUFSIZE:
    case P_OFFSET:
    case P_SUMSQ:
        if (convert_index(fn, i, o, 0, &v, &u, "int64") < 0) {
            return -1;
        }
        if (p->kind == P_SUMSQ && v > NP_SUM_SQUARES_MAX) {
            PyErr_Format(PyExc_OverflowError,
                         "%U() argument 1 ('n'): %R is too large: the sum must "
                         "fit in 128 bits (n <= %lld)", fn->name, o,
                         (long long)NP_SUM_SQUARES_MAX);
            return -1;
        }
        if (p->kind != P_SUMSQ && v < 0) {
            PyErr_Format(PyExc_ValueError, "%s must be non-negative", p->name);
            return -1;
        }
        out->i64 = (p->kind == P_BUFSIZE && v == 0) ? 1 : v;
        return 0;
    }
    PyErr_SetString(PyExc_SystemError, "nativepool: bad parameter kind");
    return -1;
}

/* Match args/kwnames to parameters (vals[i]: borrowed, or NULL if left to
 * its default).  0, or -1 with TypeError. */
static int
bind_args(np_nativefn *fn, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames, PyObject **vals)
{
    const np_param *params = fn_params(fn);
    if (nargs > fn->nparams) {
        PyErr_Format(PyExc_TypeError, "%U() takes %s%d argument%s (%zd given)",
                     fn->name, fn->npos_only == fn->nparams ? "exactly " : "at most ",
                     fn->nparams, fn->nparams == 1 ? "" : "s", nargs);
        return -1;
    }
    for (int i = 0; i < fn->nparams; i++) {
        vals[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = fn->npos_only; i < fn->nparams; i++) {
            if (PyUnicode_CompareWithASCIIString(key, params[i].name) == 0) {
                found = i;
                break;
            }
        }
        if (found < 0) {
            PyErr_Format(PyExc_TypeError,
                         "%U() got an unexpected keyword argument '%U'",
                         fn->name, key);
            return -1;
        }
        if (vals[found] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%U() got multiple values for argument '%s'", fn->name,
                         params[found].name);
            return -1;
        }
        vals[found] = args[nargs + k];
    }
    for (int i = 0; i < fn->nparams; i++) {
        if (vals[i] == NULL && !params[i].has_default) {
            PyErr_Format(PyExc_TypeError,
                         "%U() missing required argument '%s' (pos %d)",
                         fn->name, params[i].name, i + 1);
            return -1;
        }
    }
    return 0;
}

np_ncall *
np_ncall_new(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    np_nativefn *fn = NATIVEFN(op);
    PyObject *vals[NP_KMAX_ARGS];
    if (bind_args(fn, args, nargs, kwnames, vals) < 0) {
        return NULL;
    }
    np_ncall *c = np_ncall_alloc(fn->nviews);
    if (c == NULL) {
        return NULL;
    }
    Py_INCREF(op);
    c->fn = op;
    c->kernel = fn->kernel;
    c->k.ctx = fn->ffi;
    const np_param *params = fn_params(fn);
    for (int i = 0; i < fn->nparams; i++) {
        if (vals[i] == NULL) {          /* a default: always an integer */
            c->k.arg[i].i64 = params[i].idefault;
            if (params[i].kind == P_CINT || params[i].kind == P_U32_MASK) {
                c->k.arg[i].i32 = (int32_t)params[i].idefault;
            }
        }
        else if (convert_arg(fn, i, vals[i], c) < 0) {
            np_ncall_free(c);
            return NULL;
        }
    }
    return c;
}

