/* atomicint.c -- nativepool.AtomicInt: a 64-bit signed integer whose
 * updates are single atomic operations.
 *
 * The classic race: `counter += 1` in several threads loses updates,
 * because load, add and store are separate steps.  With
 * `counter = nativepool.AtomicInt()`, `counter += 1` calls
 * nb_inplace_add, which does one atomic fetch-add and returns the same
 * object, so the rebinding stores what was already there.  No lock.
 *
 * Overflow is an error, never a silent wrap: updates are CAS loops that
 * check the result with __builtin_*_overflow before publishing it.
 */
#include "np_module.h"

typedef struct {
    PyObject_HEAD
    _Atomic int64_t value;
} np_atomicint;

#define AINT(op) ((np_atomicint *)(op))

static int
as_int64(PyObject *obj, int64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "an integer is required, not %.200s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "AtomicInt holds a 64-bit signed integer");
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Atomically value += delta; the new value in *out.  -1 on overflow. */
static int
fetch_add(np_atomicint *a, int64_t delta, int64_t *out)
{
    int64_t old = atomic_load_explicit(&a->value, memory_order_relaxed);
    int64_t new_;
    do {
        if (__builtin_add_overflow(old, delta, &new_)) {
            PyErr_SetString(PyExc_OverflowError,
                            "AtomicInt holds a 64-bit signed integer");
            return -1;
        }
    } while (!atomic_compare_exchange_weak(&a->value, &old, new_));
    *out = new_;
    return 0;
}

static PyObject *
add_and_return(PyObject *op, int64_t delta)
{
    int64_t v;
    if (fetch_add(AINT(op), delta, &v) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(v);
}

static int
aint_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"value", NULL};
    PyObject *obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:AtomicInt", kws, &obj)) {
        return -1;
    }
    int64_t v = 0;
    if (obj != NULL && as_int64(obj, &v) < 0) {
        return -1;
    }
    atomic_store(&AINT(op)->value, v);
    return 0;
}

static void
aint_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
aint_get(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(atomic_load(&AINT(op)->value));
}

static PyObject *
aint_set(PyObject *op, PyObject *arg)
{
    int64_t v;
    if (as_int64(arg, &v) < 0) {
        return NULL;
    }
    atomic_store(&AINT(op)->value, v);
    Py_RETURN_NONE;
}

static PyObject *
aint_add(PyObject *op, PyObject *arg)
{
    int64_t d;
    if (as_int64(arg, &d) < 0) {
        return NULL;
    }
    return add_and_return(op, d);
}

static PyObject *
aint_inc(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return add_and_return(op, 1);
}

static PyObject *
aint_dec(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return add_and_return(op, -1);
}

static PyObject *
aint_exchange(PyObject *op, PyObject *arg)
{
    int64_t v;
    if (as_int64(arg, &v) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(atomic_exchange(&AINT(op)->value, v));
}

static PyObject *
aint_compare_exchange(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "compare_exchange() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    int64_t expected, desired;
    if (as_int64(args[0], &expected) < 0 || as_int64(args[1], &desired) < 0) {
        return NULL;
    }
    return PyBool_FromLong(
        atomic_compare_exchange_strong(&AINT(op)->value, &expected, desired));
}

/* a += n / a -= n: atomic, and `a` stays the same object. */
static PyObject *
inplace(PyObject *op, PyObject *other, int sign)
{
    if (!PyLong_Check(other)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    int64_t d, v;
    if (as_int64(other, &d) < 0) {
        return NULL;
    }
    if (sign < 0) {
        if (d == INT64_MIN) {
            PyErr_SetString(PyExc_OverflowError,
                            "AtomicInt holds a 64-bit signed integer");
            return NULL;
        }
        d = -d;
    }
    if (fetch_add(AINT(op), d, &v) < 0) {
        return NULL;
    }
    Py_INCREF(op);
    return op;
}

static PyObject *
aint_iadd(PyObject *op, PyObject *other)
{
    return inplace(op, other, 1);
}

static PyObject *
aint_isub(PyObject *op, PyObject *other)
{
    return inplace(op, other, -1);
}

static PyObject *
aint_int(PyObject *op)
{
    return aint_get(op, NULL);
}

static int
aint_bool(PyObject *op)
{
    return atomic_load(&AINT(op)->value) != 0;
}

static PyObject *
aint_richcompare(PyObject *op, PyObject *other, int cmp)
{
    PyObject *mine = aint_get(op, NULL);
    if (mine == NULL) {
        return NULL;
    }
    PyObject *theirs = other;
    Py_INCREF(theirs);
    if (!PyLong_Check(other)) {
        /* Another AtomicInt compares by value too. */
        if (Py_TYPE(other)->tp_richcompare == aint_richcompare) {
            Py_DECREF(theirs);
            theirs = aint_get(other, NULL);
        }
        else {
            Py_DECREF(theirs);
            Py_DECREF(mine);
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    PyObject *r = PyObject_RichCompare(mine, theirs, cmp);
    Py_DECREF(mine);
    Py_DECREF(theirs);
    return r;
}

static PyObject *
aint_repr(PyObject *op)
{
    return PyUnicode_FromFormat("nativepool.AtomicInt(%lld)",
                                (long long)atomic_load(&AINT(op)->value));
}

static PyObject *
aint_get_value(PyObject *op, void *Py_UNUSED(closure))
{
    return aint_get(op, NULL);
}

static int
aint_set_value(PyObject *op, PyObject *v, void *Py_UNUSED(closure))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete value");
        return -1;
    }
    PyObject *r = aint_set(op, v);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static PyMethodDef aint_methods[] = {
    {"get", aint_get, METH_NOARGS, "get($self, /)\n--\n\nThe current value."},
    {"set", aint_set, METH_O, "set($self, value, /)\n--\n\nStore value."},
    {"add", aint_add, METH_O,
     "add($self, n, /)\n--\n\nAtomically add n; return the new value."},
    {"inc", aint_inc, METH_NOARGS,
     "inc($self, /)\n--\n\nAtomically add 1; return the new value."},
    {"dec", aint_dec, METH_NOARGS,
     "dec($self, /)\n--\n\nAtomically subtract 1; return the new value."},
    {"exchange", aint_exchange, METH_O,
     "exchange($self, value, /)\n--\n\nStore value; return the old one."},
    {"compare_exchange", (PyCFunction)(void (*)(void))aint_compare_exchange,
     METH_FASTCALL,
     "compare_exchange($self, expected, desired, /)\n--\n\n"
     "If the value is expected, store desired and return True; else False."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef aint_getset[] = {
    {"value", aint_get_value, aint_set_value, "the current value", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot aint_slots[] = {
    {Py_tp_doc, "AtomicInt(value=0)\n--\n\n"
                "A 64-bit signed integer with atomic updates: `a += 1` from many\n"
                "threads never loses a count, without a lock."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, aint_init},
    {Py_tp_dealloc, aint_dealloc},
    {Py_tp_repr, aint_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_richcompare, aint_richcompare},
    {Py_tp_methods, aint_methods},
    {Py_tp_getset, aint_getset},
    {Py_nb_inplace_add, aint_iadd},
    {Py_nb_inplace_subtract, aint_isub},
    {Py_nb_int, aint_int},
    {Py_nb_index, aint_int},
    {Py_nb_bool, aint_bool},
    {0, NULL},
};

static PyType_Spec aint_spec = {
    .name = "nativepool.AtomicInt",
    .basicsize = sizeof(np_atomicint),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = aint_slots,
};

int
np_atomicint_type_init(PyObject *module, np_state *st)
{
    st->atomicint_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &aint_spec, NULL);
    if (st->atomicint_type == NULL) {
        return -1;
    }
    return np_module_add(module, "AtomicInt", (PyObject *)st->atomicint_type);
}
