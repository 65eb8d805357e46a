/* module.c -- nativepool._nativepool: module state, multi-phase init, and
 * the few module-level functions python/nativepool uses to wire itself in.
 */
#include "np_module.h"

static np_state *
get_state(PyObject *module)
{
    return (np_state *)PyModule_GetState(module);
}

np_state *
np_state_from_type(PyTypeObject *tp)
{
    /* PyType_GetModuleByDef (3.11+) without needing 3.11: our types are
     * heap types created with PyType_FromModuleAndSpec; a Python subclass
     * (nativepool.Future) finds them on its MRO. */
    PyObject *mro = tp->tp_mro;
    Py_ssize_t n = mro ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(t, Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
        if (m != NULL && PyModule_GetDef(m) == &np_moduledef) {
            return get_state(m);
        }
    }
    return NULL;
}

int
np_module_add(PyObject *module, const char *name, PyObject *obj)
{
    Py_INCREF(obj);
    if (PyModule_AddObject(module, name, obj) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    return 0;
}

PyObject *
np_type_display_name(PyTypeObject *tp)
{
    PyObject *mod = PyObject_GetAttrString((PyObject *)tp, "__module__");
    if (mod == NULL) {
        return NULL;
    }
    PyObject *qual = PyObject_GetAttrString((PyObject *)tp, "__qualname__");
    PyObject *r = qual ? PyUnicode_FromFormat("%S.%S", mod, qual) : NULL;
    Py_XDECREF(qual);
    Py_DECREF(mod);
    return r;
}

void
np_log_exc(PyObject *logger, const char *level, const char *msg,
           PyObject *arg, PyObject *exc)
{
    PyObject *meth = PyObject_GetAttrString(logger, level);
    PyObject *kw = NULL, *args = NULL, *r = NULL;
    if (meth != NULL) {
        kw = Py_BuildValue("{sO}", "exc_info", exc ? exc : Py_None);
    }
    if (kw != NULL) {
        args = arg ? Py_BuildValue("(sO)", msg, arg) : Py_BuildValue("(s)", msg);
    }
    if (args != NULL) {
        r = PyObject_Call(meth, args, kw);
    }
    if (r == NULL) {
        PyErr_WriteUnraisable(logger);
    }
    Py_XDECREF(r);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(meth);
}

/* ---- module functions -------------------------------------------------- */

/* _setup(future_class, spawn_thread): called once by nativepool/__init__. */
static PyObject *
mod_setup(PyObject *module, PyObject *args)
{
    np_state *st = get_state(module);
    PyObject *future_class, *spawn;
    if (!PyArg_ParseTuple(args, "O!O:_setup", &PyType_Type, &future_class,
                          &spawn)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)future_class, st->future_base_type)) {
        PyErr_SetString(PyExc_TypeError, "future_class must derive from FutureBase");
        return NULL;
    }
    Py_INCREF(future_class);
    Py_XSETREF(st->future_type, (PyTypeObject *)future_class);
    Py_INCREF(spawn);
    Py_XSETREF(st->spawn_thread, spawn);
    Py_RETURN_NONE;
}

static PyObject *
mod_set_unretrieved_logging(PyObject *module, PyObject *arg)
{
    np_state *st = get_state(module);
    int enabled = PyObject_IsTrue(arg);
    if (enabled < 0) {
        return NULL;
    }
    int previous = st->log_unretrieved;
    st->log_unretrieved = enabled;
    return PyBool_FromLong(previous);
}

static PyObject *
mod_set_interpreter_exiting(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    get_state(module)->interpreter_exiting = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_setup", mod_setup, METH_VARARGS, NULL},
    {"set_unretrieved_exception_logging", mod_set_unretrieved_logging, METH_O,
     "set_unretrieved_exception_logging(enabled, /)\n--\n\n"
     "Turn on or off the logging of exceptions stored on futures that\n"
     "nobody retrieved (on the 'nativepool' logger, when the future is\n"
     "collected). On by default. Returns the previous setting."},
    {"_set_interpreter_exiting", mod_set_interpreter_exiting, METH_NOARGS, NULL},
    {"_held_locks", np_held_locks, METH_NOARGS,
     "[(lock, owner ident, depth, waiters)] for every held Lock and RLock"},
    {"_set_lock_hook", np_set_lock_hook, METH_O,
     "install (or, with None, remove) the lock-order hook"},
    {NULL, NULL, 0, NULL},
};

/* ---- init -------------------------------------------------------------- */

PyObject *
np_import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return r;
}

static PyObject *
get_logger(const char *name)
{
    PyObject *getLogger = np_import_attr("logging", "getLogger");
    if (getLogger == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallFunction(getLogger, "s", name);
    Py_DECREF(getLogger);
    return r;
}

static int
module_exec(PyObject *module)
{
    np_state *st = get_state(module);
    static const char *const names[5] = {
        "PENDING", "RUNNING", "CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED",
    };
    for (int i = 0; i < 5; i++) {
        st->state_names[i] = PyUnicode_InternFromString(names[i]);
        if (st->state_names[i] == NULL) {
            return -1;
        }
    }
#define INTERN(field, text)                                   \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL) \
        return -1;
    INTERN(str_add_result, "add_result");
    INTERN(str_add_exception, "add_exception");
    INTERN(str_add_cancelled, "add_cancelled");
    INTERN(str_join, "join");
#undef INTERN
#define IMPORT(field, mod, name)                               \
    if ((st->field = np_import_attr(mod, name)) == NULL)          \
        return -1;
    IMPORT(CancelledError, "concurrent.futures", "CancelledError");
    IMPORT(TimeoutError, "concurrent.futures", "TimeoutError");
    IMPORT(InvalidStateError, "concurrent.futures", "InvalidStateError");
    IMPORT(BrokenThreadPool, "concurrent.futures.thread", "BrokenThreadPool");
#undef IMPORT
    PyObject *tmax = np_import_attr("threading", "TIMEOUT_MAX");
    if (tmax == NULL) {
        return -1;
    }
    st->timeout_max = PyFloat_AsDouble(tmax);
    Py_DECREF(tmax);
    if (st->timeout_max == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if ((st->cf_logger = get_logger("concurrent.futures")) == NULL ||
        (st->np_logger = get_logger("nativepool")) == NULL) {
        return -1;
    }
    st->log_unretrieved = 1;

    if (np_future_types_init(module, st) < 0 ||
        np_pool_types_init(module, st) < 0 ||
        np_mapiter_type_init(module, st) < 0 ||
        np_lock_types_init(module, st) < 0 ||
        np_semaphore_types_init(module, st) < 0 ||
        np_atomicint_type_init(module, st) < 0 ||
        np_condition_types_init(module, st) < 0 ||
        np_barrier_type_init(module, st) < 0 ||
        np_queue_types_init(module, st) < 0 ||
        np_native_types_init(module, st) < 0 ||
        np_capi_init(module, st) < 0 ||
        np_channel_type_init(module, st) < 0 ||
        np_procpool_type_init(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    np_state *st = get_state(module);
    Py_VISIT(st->future_base_type);
    Py_VISIT(st->future_type);
    Py_VISIT(st->condition_type);
    Py_VISIT(st->core_type);
    Py_VISIT(st->pool_type);
    Py_VISIT(st->mapiter_type);
    Py_VISIT(st->lock_type);
    Py_VISIT(st->rlock_type);
    Py_VISIT(st->semaphore_type);
    Py_VISIT(st->bsemaphore_type);
    Py_VISIT(st->event_type);
    Py_VISIT(st->atomicint_type);
    Py_VISIT(st->cond_type);
    Py_VISIT(st->barrier_type);
    Py_VISIT(st->queue_type);
    Py_VISIT(st->lifoqueue_type);
    Py_VISIT(st->priorityqueue_type);
    Py_VISIT(st->simplequeue_type);
    Py_VISIT(st->nativefn_type);
    Py_VISIT(st->channel_type);
    Py_VISIT(st->proccore_type);
    Py_VISIT(st->Empty);
    Py_VISIT(st->Full);
    Py_VISIT(st->ShutDown);
    Py_VISIT(st->BrokenBarrierError);
    Py_VISIT(st->CancelledError);
    Py_VISIT(st->TimeoutError);
    Py_VISIT(st->InvalidStateError);
    Py_VISIT(st->BrokenThreadPool);
    Py_VISIT(st->cf_logger);
    Py_VISIT(st->np_logger);
    Py_VISIT(st->spawn_thread);
    return np_locks_traverse(st, visit, arg);
}

static int
module_clear(PyObject *module)
{
    np_state *st = get_state(module);
    np_reclaim_drain(st);   /* pools are joined by now: nothing is pushed */
    Py_CLEAR(st->future_base_type);
    Py_CLEAR(st->future_type);
    Py_CLEAR(st->condition_type);
    Py_CLEAR(st->core_type);
    Py_CLEAR(st->pool_type);
    Py_CLEAR(st->mapiter_type);
    Py_CLEAR(st->lock_type);
    Py_CLEAR(st->rlock_type);
    Py_CLEAR(st->semaphore_type);
    Py_CLEAR(st->bsemaphore_type);
    Py_CLEAR(st->event_type);
    Py_CLEAR(st->atomicint_type);
    Py_CLEAR(st->cond_type);
    Py_CLEAR(st->barrier_type);
    Py_CLEAR(st->queue_type);
    Py_CLEAR(st->lifoqueue_type);
    Py_CLEAR(st->priorityqueue_type);
    Py_CLEAR(st->simplequeue_type);
    Py_CLEAR(st->nativefn_type);
    Py_CLEAR(st->channel_type);
    Py_CLEAR(st->proccore_type);
    Py_CLEAR(st->Empty);
    Py_CLEAR(st->Full);
    Py_CLEAR(st->ShutDown);
    Py_CLEAR(st->BrokenBarrierError);
    Py_CLEAR(st->CancelledError);
    Py_CLEAR(st->TimeoutError);
    Py_CLEAR(st->InvalidStateError);
    Py_CLEAR(st->BrokenThreadPool);
    Py_CLEAR(st->cf_logger);
    Py_CLEAR(st->np_logger);
    Py_CLEAR(st->spawn_thread);
    for (int i = 0; i < 5; i++) {
        Py_CLEAR(st->state_names[i]);
    }
    Py_CLEAR(st->str_add_result);
    Py_CLEAR(st->str_add_exception);
    Py_CLEAR(st->str_add_cancelled);
    Py_CLEAR(st->str_join);
    /* The lock-order hook; the registry stays for the locks that outlive
     * this module object (module_free drops our reference). */
    np_locks_clear(st);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
    np_locks_free(get_state((PyObject *)module));
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    /* Worker threads belong to one interpreter; no sharing is designed. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    /* No Py_mod_gil slot yet: the runtime, futures and map jobs use C
     * atomics and mutexes, but the pool's bookkeeping (core->shutdown,
     * spawned, the threads list) still leans on the GIL, and no
     * free-threaded CPython is available to test on here.  A free-threaded
     * interpreter therefore re-enables the GIL when it imports us. */
    {0, NULL},
};

PyModuleDef np_moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "nativepool._nativepool",
    .m_doc = "The C core of nativepool.",
    .m_size = sizeof(np_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__nativepool(void)
{
    return PyModuleDef_Init(&np_moduledef);
}
