/* native.c -- NativeFunction: a C function with a declared signature, and
 * the calls made of it.
 *
 * A NativeFunction is either one of our kernels (csrc/kernels, with Python
 * signatures modelled on the stdlib functions they mirror) or a user's C
 * function wrapped from an address and C types, called through libffi.
 *
 * Everything that needs Python happens here, with the GIL: checking and
 * converting the arguments into C values (np_ncall_new), pinning buffers,
 * and turning the C outcome into a result or an exception
 * (np_ncall_outcome).  The run in between needs no GIL.  Called directly,
 * a NativeFunction releases the GIL around the run; submitted to a pool,
 * the run happens on a worker that does not hold it (native_task.c).
 */
#include "np_native.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "np_ffi.h"
#include "structmember.h"

/* ---- type names (user functions) ------------------------------------------ */

static const struct {
    const char *name;
    uint8_t ctype;
    uint8_t kind;
} TYPE_NAMES[] = {
    {"int8", NP_T_I8, P_INT},     {"int16", NP_T_I16, P_INT},
    {"int32", NP_T_I32, P_INT},   {"int64", NP_T_I64, P_INT},
    {"uint8", NP_T_U8, P_INT},    {"uint16", NP_T_U16, P_INT},
    {"uint32", NP_T_U32, P_INT},  {"uint64", NP_T_U64, P_INT},
    {"float", NP_T_F32, P_FLOAT}, {"double", NP_T_F64, P_FLOAT},
    {"buffer", NP_T_PTR, P_BUF},  {"wbuffer", NP_T_PTR, P_WBUF},
    {"void", NP_T_VOID, 0},
};
#define N_TYPE_NAMES (sizeof(TYPE_NAMES) / sizeof(TYPE_NAMES[0]))

static const char *
type_name(uint8_t ctype, uint8_t kind)
{
    for (size_t i = 0; i < N_TYPE_NAMES; i++) {
        if (TYPE_NAMES[i].ctype == ctype &&
            (ctype != NP_T_PTR || TYPE_NAMES[i].kind == kind)) {
            return TYPE_NAMES[i].name;
        }
    }
    return "?";
}

/* -1 with TypeError if `name` is not a type name. */
static int
lookup_type(PyObject *name, const char *what, size_t *index)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a C type name (str), not %.100s", what,
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    for (size_t i = 0; i < N_TYPE_NAMES; i++) {
        if (PyUnicode_CompareWithASCIIString(name, TYPE_NAMES[i].name) == 0) {
            *index = i;
            return 0;
        }
    }
    PyErr_Format(PyExc_TypeError,
                 "unknown C type %R for %s (expected one of int8, int16, int32, "
                 "int64, uint8, uint16, uint32, uint64, float, double, buffer, "
                 "wbuffer%s)", name, what,
                 strcmp(what, "restype") == 0 ? ", void" : "");
    return -1;
}

/* ---- calls ------------------------------------------------------------- */

np_ncall *
np_ncall_alloc(Py_ssize_t nviews)
{
    np_ncall *c = PyMem_Malloc(offsetof(np_ncall, views) +
                               (size_t)nviews * sizeof(Py_buffer));
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memset(c, 0, offsetof(np_ncall, views));
    return c;
}

void
np_ncall_free(np_ncall *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < c->nviews; i++) {
        PyBuffer_Release(&c->views[i]);
    }
    if (c->capi.cleanup != NULL && !c->capi.cleaned) {
        c->capi.cleaned = 1;
        c->capi.cleanup(c->capi.arg);
    }
    free(c->k.out);
    Py_XDECREF(c->fn);
    Py_XDECREF(c->filename);
    PyMem_Free(c);
}

void
np_ncall_run(np_ncall *c)
{
    c->kernel(&c->k);
}

int
np_ncall_failed(np_ncall *c)
{
    return c != NULL && (c->k.status != NP_K_OK || c->capi.failed);
}

static void
raise_outcome(np_ncall *c)
{
    np_kcall *k = &c->k;
    PyObject *cls;
    switch (k->status) {
    case NP_K_ERRNO: {
        /* OSError(errno, strerror[, filename]) picks the subclass
         * (FileNotFoundError, ...), as open() raises. */
        PyObject *exc = c->filename
            ? PyObject_CallFunction(PyExc_OSError, "isO", k->code,
                                    strerror(k->code), c->filename)
            : PyObject_CallFunction(PyExc_OSError, "is", k->code,
                                    strerror(k->code));
        if (exc != NULL) {
            np_raise_exception(exc);
            Py_DECREF(exc);
        }
        return;
    }
    case NP_K_NOMEM:
        if (k->msg[0]) {
            PyErr_SetString(PyExc_MemoryError, k->msg);
        }
        else {
            PyErr_NoMemory();
        }
        return;
    case NP_K_ZLIB:
        cls = np_import_attr("zlib", "error");   /* when first needed */
        if (cls != NULL) {
            PyErr_SetString(cls, k->msg);
            Py_DECREF(cls);
        }
        return;
    case NP_K_OVERFLOW:
        PyErr_SetString(PyExc_OverflowError, k->msg);
        return;
    default:
        PyErr_SetString(PyExc_ValueError, k->msg[0] ? k->msg : "native call failed");
        return;
    }
}

static PyObject *
u128_to_long(uint64_t lo, uint64_t hi)
{
    if (hi == 0) {
        return PyLong_FromUnsignedLongLong(lo);
    }
    PyObject *h = PyLong_FromUnsignedLongLong(hi);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *l = PyLong_FromUnsignedLongLong(lo);
    PyObject *hs = (h && shift) ? PyNumber_Lshift(h, shift) : NULL;
    PyObject *r = (hs && l) ? PyNumber_Or(hs, l) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(shift);
    Py_XDECREF(l);
    Py_XDECREF(hs);
    return r;
}

PyObject *
np_ncall_outcome(np_ncall *c)
{
    np_kcall *k = &c->k;
    if (k->status != NP_K_OK) {
        raise_outcome(c);
        return NULL;
    }
    if (c->fn == NULL) {                 /* a C API task */
        if (c->capi.result == NULL) {
            Py_RETURN_NONE;
        }
        PyObject *r = c->capi.result(c->capi.arg);
        if (r == NULL && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError,
                            "nativepool C API: result function returned NULL "
                            "without setting an exception");
        }
        return r;
    }
    switch (NATIVEFN(c->fn)->rkind) {
    case R_INT:
        return PyLong_FromLongLong(k->ret.i64);
    case R_UINT:
        return PyLong_FromUnsignedLongLong(k->ret.u64);
    case R_FLOAT:
        return PyFloat_FromDouble(k->ret.f64);
    case R_U128:
        return u128_to_long(k->ret.u128.lo, k->ret.u128.hi);
    case R_BYTES:
        return PyBytes_FromStringAndSize((const char *)k->out,
                                         (Py_ssize_t)k->out_len);
    case R_DIGEST:
        return PyBytes_FromStringAndSize((const char *)k->digest,
                                         (Py_ssize_t)k->digest_len);
    default:
        Py_RETURN_NONE;
    }
}

/* ---- calling it directly --------------------------------------------------- */

static PyObject *
nativefn_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                    PyObject *kwnames)
{
    np_ncall *c = np_ncall_new(op, args, PyVectorcall_NARGS(nargsf), kwnames);
    if (c == NULL) {
        return NULL;
    }
    /* A kernel that waits (sleep) returns NP_K_EINTR when a signal handler
     * ran: run the Python handlers (Ctrl-C raises here), then resume. */
    c->k.interruptible = 1;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        np_ncall_run(c);
        Py_END_ALLOW_THREADS
        if (c->k.status != NP_K_EINTR) {
            break;
        }
        c->k.status = NP_K_OK;
        if (PyErr_CheckSignals() < 0) {
            np_ncall_free(c);
            return NULL;
        }
    }
    PyObject *r = np_ncall_outcome(c);
    np_ncall_free(c);
    return r;
}

/* ---- the type --------------------------------------------------------------- */

int
np_is_native(np_state *st, PyObject *fn)
{
    return st->nativefn_type != NULL && Py_IS_TYPE(fn, st->nativefn_type);
}

static np_nativefn *
nativefn_alloc(np_state *st)
{
    np_nativefn *fn = PyObject_GC_New(np_nativefn, st->nativefn_type);
    if (fn == NULL) {
        return NULL;
    }
    fn->vectorcall = nativefn_vectorcall;
    fn->name = fn->doc = fn->keepalive = NULL;
    fn->builtin = NULL;
    fn->params = NULL;
    fn->ffi = NULL;
    fn->nparams = fn->npos_only = fn->nviews = 0;
    fn->kernel = NULL;
    fn->rkind = R_NONE;
    PyObject_GC_Track((PyObject *)fn);
    return fn;
}

static int
count_views(const np_param *params, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        v += params[i].kind == P_BUF || params[i].kind == P_WBUF ||
             params[i].kind == P_PATH;
    }
    return v;
}

/* NativeFunction(address, restype, argtypes, *, name=None, keepalive=None) */
static PyObject *
nativefn_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"address", "restype", "argtypes", "name", "keepalive",
                          NULL};
    PyObject *address, *restype, *argtypes, *name = Py_None, *keepalive = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|$OO:NativeFunction", kws,
                                     &address, &restype, &argtypes, &name,
                                     &keepalive)) {
        return NULL;
    }
    np_state *st = np_state_from_type(type);
    if (!PyLong_Check(address)) {
        PyErr_Format(PyExc_TypeError, "address must be an int, not %.100s",
                     Py_TYPE(address)->tp_name);
        return NULL;
    }
    void *ptr = PyLong_AsVoidPtr(address);
    if (ptr == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "address must not be NULL (0)");
        }
        return NULL;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "name must be a str or None");
        return NULL;
    }
    size_t ri;
    if (lookup_type(restype, "restype", &ri) < 0) {
        return NULL;
    }
    if (TYPE_NAMES[ri].ctype == NP_T_PTR) {
        PyErr_SetString(PyExc_TypeError,
                        "pointer results are not supported (restype must be "
                        "void, an integer or a floating point type)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(argtypes, "argtypes must be a sequence of C "
                                              "type names");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > NP_KMAX_ARGS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_TypeError, "at most %d arguments are supported, not %zd",
                     NP_KMAX_ARGS, n);
        return NULL;
    }
    np_nativefn *fn = nativefn_alloc(st);
    np_ffi_fn *ffi = PyMem_Calloc(1, sizeof(np_ffi_fn));
    np_param *params = PyMem_Calloc(n ? (size_t)n : 1, sizeof(np_param));
    if (fn == NULL || ffi == NULL || params == NULL) {
        Py_XDECREF(fn);
        PyMem_Free(ffi);
        PyMem_Free(params);
        Py_DECREF(seq);
        return fn ? PyErr_NoMemory() : NULL;
    }
    fn->ffi = ffi;
    fn->params = params;
    static const char *const ARGNAMES[NP_KMAX_ARGS] = {
        "arg1", "arg2", "arg3", "arg4", "arg5", "arg6", "arg7", "arg8",
        "arg9", "arg10", "arg11", "arg12", "arg13", "arg14", "arg15", "arg16"};
    uint8_t ctypes[NP_KMAX_ARGS];
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t ai;
        if (lookup_type(PySequence_Fast_GET_ITEM(seq, i), "argtypes", &ai) < 0) {
            goto fail;
        }
        if (TYPE_NAMES[ai].ctype == NP_T_VOID) {
            PyErr_Format(PyExc_TypeError, "argument %zd: void is not an "
                         "argument type", i + 1);
            goto fail;
        }
        params[i].name = ARGNAMES[i];
        params[i].kind = TYPE_NAMES[ai].kind;
        params[i].ctype = TYPE_NAMES[ai].ctype;
        ctypes[i] = TYPE_NAMES[ai].ctype;
    }
    int r = np_ffi_prepare(ffi, (void (*)(void))ptr, TYPE_NAMES[ri].ctype,
                           (int)n, ctypes);
    if (r < 0) {
        PyErr_SetString(PyExc_TypeError, r == -2
                            ? "libffi refused this signature"
                            : "unsupported signature");
        goto fail;
    }
    fn->nparams = fn->npos_only = (int)n;
    fn->nviews = count_views(params, (int)n);
    fn->kernel = np_k_ffi;
    switch (TYPE_NAMES[ri].ctype) {
    case NP_T_VOID: fn->rkind = R_NONE; break;
    case NP_T_F32: case NP_T_F64: fn->rkind = R_FLOAT; break;
    case NP_T_U8: case NP_T_U16: case NP_T_U32: case NP_T_U64:
        fn->rkind = R_UINT; break;
    default: fn->rkind = R_INT; break;
    }
    if (name == Py_None) {
        fn->name = PyUnicode_FromFormat("<native function at %p>", ptr);
        if (fn->name == NULL) {
            goto fail;
        }
    }
    else {
        Py_INCREF(name);
        fn->name = name;
    }
    if (keepalive != Py_None) {
        Py_INCREF(keepalive);
        fn->keepalive = keepalive;
    }
    Py_DECREF(seq);
    return (PyObject *)fn;
fail:
    Py_DECREF(seq);
    Py_DECREF(fn);
    return NULL;
}

static int
nativefn_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(NATIVEFN(op)->keepalive);
    return 0;
}

static int
nativefn_clear(PyObject *op)
{
    Py_CLEAR(NATIVEFN(op)->keepalive);
    return 0;
}

static void
nativefn_dealloc(PyObject *op)
{
    np_nativefn *fn = NATIVEFN(op);
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    nativefn_clear(op);
    Py_XDECREF(fn->name);
    Py_XDECREF(fn->doc);
    PyMem_Free(fn->params);
    PyMem_Free(fn->ffi);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
nativefn_repr(PyObject *op)
{
    np_nativefn *fn = NATIVEFN(op);
    if (fn->builtin != NULL) {
        return PyUnicode_FromFormat("<NativeFunction nativepool.native.%U>",
                                    fn->name);
    }
    return PyUnicode_FromFormat("<NativeFunction %U at %p>", fn->name,
                                (void *)fn->ffi->fn);
}

static PyObject *
get_name(PyObject *op, void *Py_UNUSED(closure))
{
    Py_INCREF(NATIVEFN(op)->name);
    return NATIVEFN(op)->name;
}

static PyObject *
get_doc(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *d = NATIVEFN(op)->doc ? NATIVEFN(op)->doc : Py_None;
    Py_INCREF(d);
    return d;
}

static PyObject *
get_address(PyObject *op, void *Py_UNUSED(closure))
{
    np_nativefn *fn = NATIVEFN(op);
    if (fn->ffi == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromVoidPtr((void *)fn->ffi->fn);
}

static PyObject *
get_restype(PyObject *op, void *Py_UNUSED(closure))
{
    np_nativefn *fn = NATIVEFN(op);
    if (fn->ffi == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(type_name(fn->ffi->rtype, 0));
}

static PyObject *
get_argtypes(PyObject *op, void *Py_UNUSED(closure))
{
    np_nativefn *fn = NATIVEFN(op);
    if (fn->ffi == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *t = PyTuple_New(fn->nparams);
    for (int i = 0; t != NULL && i < fn->nparams; i++) {
        PyObject *s = PyUnicode_FromString(
            type_name(fn->params[i].ctype, fn->params[i].kind));
        if (s == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyGetSetDef nativefn_getset[] = {
    {"__name__", get_name, NULL, NULL, NULL},
    {"__qualname__", get_name, NULL, NULL, NULL},
    {"__doc__", get_doc, NULL, NULL, NULL},
    {"address", get_address, NULL,
     "the C function's address (None for built-in kernels)", NULL},
    {"restype", get_restype, NULL, "the declared C result type", NULL},
    {"argtypes", get_argtypes, NULL, "the declared C argument types", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef nativefn_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(np_nativefn, vectorcall),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot nativefn_slots[] = {
    {Py_tp_new, nativefn_new},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, nativefn_repr},
    {Py_tp_dealloc, nativefn_dealloc},
    {Py_tp_traverse, nativefn_traverse},
    {Py_tp_clear, nativefn_clear},
    {Py_tp_getset, nativefn_getset},
    {Py_tp_members, nativefn_members},
    {0, NULL},
};

static PyType_Spec nativefn_spec = {
    .name = "nativepool.native.NativeFunction",
    .basicsize = sizeof(np_nativefn),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = nativefn_slots,
};

/* ---- the built-in kernels ------------------------------------------------------ */

#define DEF(v) 1, (v)

static const np_builtin BUILTINS[] = {
    {"sleep",
     "sleep(seconds, /)\n\n"
     "Sleep for the given number of seconds (an int or float), as\n"
     "time.sleep, with no GIL held.",
     np_k_sleep, R_NONE, 1, 1, {{"seconds", P_SECONDS, NP_T_F64, 0, 0}}},
    {"sum_squares",
     "sum_squares(n, /)\n\n"
     "Return sum(i*i for i in range(n)), exactly, computed by a real C\n"
     "loop (the CPU-bound stand-in). n <= 0 gives 0; n above about 1.0e13\n"
     "(where the sum stops fitting 128 bits) raises OverflowError.",
     np_k_sum_squares, R_U128, 1, 1, {{"n", P_SUMSQ, NP_T_I64, 0, 0}}},
    {"crc32",
     "crc32(data, value=0, /)\n\nAs zlib.crc32.",
     np_k_crc32, R_UINT, 2, 2,
     {{"data", P_BUF, 0, 0, 0}, {"value", P_U32_MASK, 0, DEF(0)}}},
    {"adler32",
     "adler32(data, value=1, /)\n\nAs zlib.adler32.",
     np_k_adler32, R_UINT, 2, 2,
     {{"data", P_BUF, 0, 0, 0}, {"value", P_U32_MASK, 0, DEF(1)}}},
    {"compress",
     "compress(data, /, level=-1, wbits=15)\n\n"
     "As zlib.compress: the same bytes, the same errors.",
     np_k_compress, R_BYTES, 1, 3,
     {{"data", P_BUF, 0, 0, 0}, {"level", P_CINT, 0, DEF(-1)},
      {"wbits", P_CINT, 0, DEF(15)}}},
    {"decompress",
     "decompress(data, /, wbits=15, bufsize=16384)\n\n"
     "As zlib.decompress: the same bytes, the same errors.",
     np_k_decompress, R_BYTES, 1, 3,
     {{"data", P_BUF, 0, 0, 0}, {"wbits", P_CINT, 0, DEF(15)},
      {"bufsize", P_BUFSIZE, 0, DEF(16384)}}},
    {"read_file",
     "read_file(path, /)\n\n"
     "Return the whole file's contents, as open(path, 'rb').read().",
     np_k_read_file, R_BYTES, 1, 1, {{"path", P_PATH, 0, 0, 0}}},
    {"read_into",
     "read_into(path, buffer, /, offset=0)\n\n"
     "Read from the file at path, starting at offset, into the writable\n"
     "buffer until it is full or the file ends; return the number of bytes\n"
     "read (as f.seek(offset); f.readinto(buffer) on a regular file).",
     np_k_read_into, R_INT, 2, 3,
     {{"path", P_PATH, 0, 0, 0}, {"buffer", P_WBUF, 0, 0, 0},
      {"offset", P_OFFSET, 0, DEF(0)}}},
    {"sha256",
     "sha256(data, /)\n\n"
     "Return the SHA-256 digest of data, as hashlib.sha256(data).digest().",
     np_k_sha256, R_DIGEST, 1, 1, {{"data", P_BUF, 0, 0, 0}}},
};

static PyObject *
make_builtins(np_state *st)
{
    PyObject *d = PyDict_New();
    for (size_t i = 0; d != NULL && i < sizeof(BUILTINS) / sizeof(BUILTINS[0]); i++) {
        const np_builtin *b = &BUILTINS[i];
        np_nativefn *fn = nativefn_alloc(st);
        if (fn == NULL) {
            Py_CLEAR(d);
            break;
        }
        fn->builtin = b;
        fn->nparams = b->nparams;
        fn->npos_only = b->npos_only;
        fn->nviews = count_views(b->params, b->nparams);
        fn->kernel = b->kernel;
        fn->rkind = b->rkind;
        fn->name = PyUnicode_FromString(b->name);
        fn->doc = PyUnicode_FromString(b->doc);
        if (fn->name == NULL || fn->doc == NULL ||
            PyDict_SetItem(d, fn->name, (PyObject *)fn) < 0) {
            Py_CLEAR(d);
        }
        Py_DECREF(fn);
    }
    return d;
}

int
np_native_types_init(PyObject *module, np_state *st)
{
    st->nativefn_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &nativefn_spec, NULL);
    if (st->nativefn_type == NULL) {
        return -1;
    }
    if (np_module_add(module, "NativeFunction", (PyObject *)st->nativefn_type) < 0) {
        return -1;
    }
    PyObject *builtins = make_builtins(st);
    if (builtins == NULL) {
        return -1;
    }
    int r = np_module_add(module, "_native_builtins", builtins);
    Py_DECREF(builtins);
    return r;
}
