/* sync_lock.c -- nativepool.Lock and nativepool.RLock.
 *
 * Both are an np_sem word (1 = free) plus contention statistics.  The
 * uncontended acquire is one CAS with the GIL held; a contended one
 * releases the GIL, spins briefly, then parks on the word (np_sem.h).
 *
 * Lock has no owner: as threading.Lock, any thread may release it.  RLock
 * records its owner (the thread ident, as threading.RLock reports it) and a
 * recursion count that only the owner touches.
 */
#include "np_module.h"

#include "structmember.h"

#include "pythread.h"

#include <pthread.h>

/* The registry of one interpreter's locks (debug.dump_locks) and its
 * lock-order hook, behind a pointer every lock holds: see "the registry"
 * below for why it is not simply part of the module state. */
typedef struct np_lockreg np_lockreg;

/* Lock and RLock share this prefix.  `owner` is the RLock's owner; for a
 * Lock it only records who acquired it last (a Lock may be released by
 * anyone), for debug.dump_locks. */
typedef struct np_lockobj {
    PyObject_HEAD
    np_sem sem;
    np_stats stats;
    PyObject *weakreflist;
    _Atomic unsigned long owner;     /* thread ident, 0 when free */
    np_lockreg *reg;                 /* a counted reference; set by sync_new */
    struct np_lockobj *reg_prev, *reg_next;   /* reg's list, under reg->mutex */
} np_lockobj;

typedef struct {
    np_lockobj base;
    unsigned long count;             /* only touched by the owner */
} np_rlockobj;

#define LOCK(op) ((np_lockobj *)(op))
#define RLOCK(op) ((np_rlockobj *)(op))

/* ---- the registry of live locks (debug.dump_locks) -----------------------
 * A list of every Lock and RLock of one interpreter, linked at creation and
 * unlinked at deallocation under `mutex`, so a program that is already
 * stuck can still be asked which locks are held, by whom, with how many
 * waiters.  The cost is paid at creation and destruction only.
 *
 * One registry per module object (per interpreter: a legacy subinterpreter
 * that imports us gets its own, and sees only its own locks).  The module
 * state holds one reference, every lock another: a lock can outlive its
 * module object (the collector may clear the module and the lock's type,
 * whose ht_module it drops, before it frees a lock caught in the same
 * garbage; finalization does the same), and its dealloc still unlinks from
 * a live registry.  module_clear drops the hook (a Python object); the
 * registry itself is freed with its last reference.
 *
 * Lock rule: `mutex` is held for list moves and loads only -- never across
 * a Python allocation, DECREF or call.  On 3.9-3.11 an allocation can run
 * the collector, which can free a lock, whose dealloc takes `mutex`: a
 * self-deadlock (dump_locks did that). */
struct np_lockreg {
    np_mutex mutex;
    np_lockobj *head;
    _Atomic Py_ssize_t refs;
    /* The lock-order hook (debug.check_lock_order): NULL unless checking
     * is on.  Only read and written with the GIL held; one load when off. */
    PyObject *hook;
    struct np_lockreg *all_prev, *all_next;   /* every registry: for fork */
};

/* Every registry of the process, so that a fork child can reset their
 * mutexes: a fork can catch another thread inside a critical section, and
 * in the child that thread does not exist. */
static np_mutex all_regs_lock = NP_MUTEX_INIT;
static np_lockreg *all_regs;
static pthread_once_t all_regs_once = PTHREAD_ONCE_INIT;

static void
registries_after_fork(void)
{
    np_mutex_reinit(&all_regs_lock);
    for (np_lockreg *r = all_regs; r != NULL; r = r->all_next) {
        np_mutex_reinit(&r->mutex);
    }
}

static void
registries_init(void)
{
    (void)pthread_atfork(NULL, NULL, registries_after_fork);
}

static np_lockreg *
lockreg_new(void)
{
    (void)pthread_once(&all_regs_once, registries_init);
    np_lockreg *r = PyMem_RawCalloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    atomic_init(&r->refs, 1);
    np_mutex_lock(&all_regs_lock);
    r->all_next = all_regs;
    if (all_regs != NULL) {
        all_regs->all_prev = r;
    }
    all_regs = r;
    np_mutex_unlock(&all_regs_lock);
    return r;
}

static void
lockreg_decref(np_lockreg *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1) {
        return;
    }
    /* The last reference: no lock is linked, and the module state that
     * owned the hook has cleared it. */
    np_mutex_lock(&all_regs_lock);
    if (r->all_prev != NULL) {
        r->all_prev->all_next = r->all_next;
    }
    else {
        all_regs = r->all_next;
    }
    if (r->all_next != NULL) {
        r->all_next->all_prev = r->all_prev;
    }
    np_mutex_unlock(&all_regs_lock);
    PyMem_RawFree(r);
}

static void
registry_add(np_lockreg *r, np_lockobj *l)
{
    atomic_fetch_add(&r->refs, 1);
    l->reg = r;
    np_mutex_lock(&r->mutex);
    l->reg_prev = NULL;
    l->reg_next = r->head;
    if (r->head != NULL) {
        r->head->reg_prev = l;
    }
    r->head = l;
    np_mutex_unlock(&r->mutex);
}

static void
registry_remove(np_lockobj *l)
{
    np_lockreg *r = l->reg;
    if (r == NULL) {
        return;
    }
    np_mutex_lock(&r->mutex);
    if (l->reg_prev != NULL) {
        l->reg_prev->reg_next = l->reg_next;
    }
    else if (r->head == l) {
        r->head = l->reg_next;
    }
    if (l->reg_next != NULL) {
        l->reg_next->reg_prev = l->reg_prev;
    }
    np_mutex_unlock(&r->mutex);
    l->reg = NULL;
    lockreg_decref(r);
}

int
np_locks_init(np_state *st)
{
    st->locks = lockreg_new();
    if (st->locks == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int
np_locks_traverse(np_state *st, visitproc visit, void *arg)
{
    if (st->locks != NULL) {
        Py_VISIT(st->locks->hook);
    }
    return 0;
}

void
np_locks_clear(np_state *st)
{
    if (st->locks != NULL) {
        Py_CLEAR(st->locks->hook);
    }
}

void
np_locks_free(np_state *st)
{
    np_locks_clear(st);
    if (st->locks != NULL) {
        lockreg_decref(st->locks);
        st->locks = NULL;
    }
}

/* One held lock, as _held_locks reports it. */
typedef struct {
    PyObject *lock;                  /* a strong reference */
    unsigned long owner, depth;
    unsigned int waiters;
} held_entry;

/* _held_locks(): [(lock, owner ident, depth, waiters)] for every lock of
 * this interpreter that is held now.  Strong references and numbers are
 * collected under the registry mutex (raw memory only: no Python
 * allocation there, see the lock rule above); the Python objects are built,
 * and the references dropped, after it. */
PyObject *
np_held_locks(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    np_state *st = PyModule_GetState(module);
    np_lockreg *r = st->locks;
    held_entry *held = NULL;
    size_t n = 0, cap = 0;
    int nomem = 0;
    if (r == NULL) {
        return PyList_New(0);
    }
    np_mutex_lock(&r->mutex);
    for (np_lockobj *l = r->head; l != NULL; l = l->reg_next) {
        /* Refcount 0: being deallocated (not yet unlinked); skip it. */
        if (np_sem_value(&l->sem) != 0 || Py_REFCNT(l) == 0) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            held_entry *bigger = PyMem_RawRealloc(held, ncap * sizeof(*held));
            if (bigger == NULL) {
                nomem = 1;
                break;
            }
            held = bigger;
            cap = ncap;
        }
        np_state *lst = np_state_from_type(Py_TYPE(l));
        int is_rlock = lst != NULL && PyObject_TypeCheck((PyObject *)l, lst->rlock_type);
        Py_INCREF(l);
        held[n].lock = (PyObject *)l;
        held[n].owner = atomic_load(&l->owner);
        held[n].depth = is_rlock ? ((np_rlockobj *)l)->count : 1;
        held[n].waiters = np_sem_sleepers(&l->sem);
        n++;
    }
    np_mutex_unlock(&r->mutex);

    PyObject *out = nomem ? PyErr_NoMemory() : PyList_New((Py_ssize_t)n);
    for (size_t i = 0; i < n && out != NULL; i++) {
        PyObject *t = Py_BuildValue("(OkkI)", held[i].lock, held[i].owner,
                                    held[i].depth, held[i].waiters);
        if (t == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    for (size_t i = 0; i < n; i++) {
        Py_DECREF(held[i].lock);
    }
    PyMem_RawFree(held);
    return out;
}

/* ---- the lock-order hook (debug.check_lock_order) -------------------------
 * reg->hook is NULL unless checking is on; then called as hook(lock, event)
 * with HOOK_BEFORE before a blocking acquire (it may raise: the acquire then
 * fails without taking the lock), HOOK_ACQUIRED after any successful
 * acquire, HOOK_RELEASED after a release. */
enum { HOOK_BEFORE = 0, HOOK_ACQUIRED = 1, HOOK_RELEASED = 2 };

/* Every live lock has its registry (sync_new sets it, only dealloc clears
 * it): the fast path pays two loads. */
#define HOOK_ON(l) (LOCK(l)->reg->hook != NULL)

static int
call_hook(PyObject *op, int event)
{
    PyObject *hook = LOCK(op)->reg ? LOCK(op)->reg->hook : NULL;
    if (hook == NULL) {
        return 0;
    }
    Py_INCREF(hook);
    PyObject *ev = PyLong_FromLong(event);
    PyObject *r = ev ? PyObject_CallFunctionObjArgs(hook, op, ev, NULL) : NULL;
    Py_XDECREF(ev);
    Py_DECREF(hook);
    if (r == NULL) {
        if (event == HOOK_BEFORE) {
            return -1;            /* the report: refuse the acquire */
        }
        /* After the fact nothing can fail.  A Ctrl-C whose handler ran
         * inside the hook's Python code is not lost: it is raised again at
         * the next check (the caller holds the lock by then). */
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyErr_Clear();
            PyErr_SetInterrupt();
        }
        else {
            PyErr_WriteUnraisable(op);
        }
        return 0;
    }
    Py_DECREF(r);
    return 0;
}

PyObject *
np_set_lock_hook(PyObject *module, PyObject *hook)
{
    np_state *st = PyModule_GetState(module);
    if (hook != Py_None && !PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "the lock hook must be callable or None");
        return NULL;
    }
    if (st->locks == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "nativepool's module state is cleared");
        return NULL;
    }
    Py_XSETREF(st->locks->hook, hook == Py_None ? NULL : Py_NewRef(hook));
    Py_RETURN_NONE;
}

static PyObject *
sync_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", tp->tp_name);
        return NULL;
    }
    np_state *st = np_state_from_type(tp);
    if (st == NULL || st->locks == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: nativepool's module is gone", tp->tp_name);
        return NULL;
    }
    PyObject *op = tp->tp_alloc(tp, 0);
    if (op != NULL) {
        /* Lock and RLock share the layout up to reg_next. */
        atomic_init(&LOCK(op)->sem.value, 1);
        registry_add(st->locks, LOCK(op));
    }
    return op;
}

static void
sync_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    registry_remove(LOCK(op));
    if (LOCK(op)->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* Whether an acquire with this deadline can block (the lock-order check
 * only cares about those: a try-acquire cannot deadlock). */
static int
may_block(int64_t deadline)
{
    return deadline == NP_FOREVER || deadline > np_monotonic_ns();
}

static np_state *
sstate(PyObject *op)
{
    return np_state_from_type(Py_TYPE(op));
}

/* Take a Lock or RLock back after a wait (Condition.wait, _acquire_restore)
 * for `owner` at depth `count`: uninterruptibly, as threading's RLock does
 * (a Ctrl-C must not leave wait() without its lock: the with-block's exit
 * would then fail and mask the KeyboardInterrupt), and without asking the
 * lock-order hook, whose HOOK_BEFORE may refuse: a restore is no new
 * acquisition decision and must not fail.  The hook still hears that the
 * lock is held again.  A signal that arrives meanwhile stays pending for
 * the caller to deliver.  No exception may be set on entry. */
static void
lock_restore(np_lockobj *l, unsigned long owner, unsigned long count, int is_rlock)
{
    np_sem_take_uninterruptible(&l->sem, &l->stats);
    atomic_store_explicit(&l->owner, owner, memory_order_relaxed);
    if (is_rlock) {
        ((np_rlockobj *)l)->count = count;
    }
    np_stats_acquired(&l->stats, 1);
    if (HOOK_ON(l)) {
        call_hook((PyObject *)l, HOOK_ACQUIRED);
    }
}

/* ---- Lock --------------------------------------------------------------- */

static PyObject *
lock_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    np_lockobj *l = LOCK(op);
    int64_t deadline = NP_FOREVER;
    if (nargs != 0 || kwnames != NULL) {
        if (np_parse_lock_acquire(sstate(op), args, nargs, kwnames, &deadline) < 0) {
            return NULL;
        }
    }
    if (HOOK_ON(op) && may_block(deadline) && call_hook(op, HOOK_BEFORE) < 0) {
        return NULL;
    }
    int r = np_sem_take_blocking(&l->sem, deadline, &l->stats);
    if (r < 0) {
        return NULL;
    }
    if (r) {
        np_stats_acquired(&l->stats, 1);
        atomic_store_explicit(&l->owner, PyThread_get_thread_ident(),
                              memory_order_relaxed);
        if (HOOK_ON(op)) {
            call_hook(op, HOOK_ACQUIRED);
        }
    }
    return PyBool_FromLong(r);
}

static PyObject *
lock_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return lock_acquire(op, NULL, 0, NULL);
}

static PyObject *
lock_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    /* Forget the owner first: once given, another thread may set it. */
    atomic_store_explicit(&LOCK(op)->owner, 0, memory_order_relaxed);
    if (np_sem_give(&LOCK(op)->sem, 1, 1, 0) != NP_OK) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    if (HOOK_ON(op)) {
        call_hook(op, HOOK_RELEASED);
    }
    Py_RETURN_NONE;
}

static PyObject *
lock_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(n))
{
    return lock_release(op, NULL);
}

static PyObject *
lock_locked(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(np_sem_value(&LOCK(op)->sem) == 0);
}

/* For threading.Condition(nativepool.Lock()): it uses these when the lock
 * has them, so its wait() takes the lock back uninterruptibly too (with a
 * plain lock it calls acquire(), which Ctrl-C interrupts). */
static PyObject *
lock_release_save(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return lock_release(op, NULL);
}

static PyObject *
lock_acquire_restore(PyObject *op, PyObject *Py_UNUSED(state))
{
    lock_restore(LOCK(op), PyThread_get_thread_ident(), 1, 0);
    Py_RETURN_NONE;
}

/* After fork: a new, unlocked lock (waiters were threads of the parent). */
static PyObject *
lock_at_fork_reinit(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_lockobj *l = LOCK(op);
    atomic_store(&l->sem.value, 1);
    atomic_store(&l->sem.sleepers, 0);
    Py_RETURN_NONE;
}

static PyObject *
sync_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return np_stats_dict(&LOCK(op)->stats);
}

static PyObject *
sync_reset_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_stats_reset(&LOCK(op)->stats);
    Py_RETURN_NONE;
}

static PyObject *
lock_repr(PyObject *op)
{
    np_lockobj *l = LOCK(op);
    /* _thread.lock's shape, "<unlocked _thread.lock object at 0x...>", with
     * our waiters where _thread.RLock puts its owner and count. */
    return PyUnicode_FromFormat("<%s %s object waiters=%u at %p>",
                                np_sem_value(&l->sem) ? "unlocked" : "locked",
                                Py_TYPE(op)->tp_name, np_sem_sleepers(&l->sem), op);
}

#define ACQUIRE_DOC(cls)                                                     \
    "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"                    \
    "Acquire the " cls ", waiting up to timeout seconds (forever if -1);\n" \
    "return whether it was acquired. Waits release the GIL and are\n"       \
    "interrupted by Ctrl-C."

#define STATS_METHODS                                                        \
    {"stats", sync_stats, METH_NOARGS,                                        \
     "stats($self, /)\n--\n\n"                                               \
     "Contention statistics: a dict of acquisitions, contended (how many\n"  \
     "had to wait), wait_total and wait_max (seconds)."},                    \
    {"reset_stats", sync_reset_stats, METH_NOARGS,                            \
     "reset_stats($self, /)\n--\n\nZero the contention statistics."}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire,
     METH_FASTCALL | METH_KEYWORDS, ACQUIRE_DOC("lock")},
    {"acquire_lock", (PyCFunction)(void (*)(void))lock_acquire,
     METH_FASTCALL | METH_KEYWORDS, "An obsolete synonym of acquire()."},
    {"release", lock_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease the lock (from any thread).\n\n"
     "RuntimeError if it is not locked."},
    {"release_lock", lock_release, METH_NOARGS, "An obsolete synonym of release()."},
    {"locked", lock_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nWhether the lock is held."},
    {"locked_lock", lock_locked, METH_NOARGS, "An obsolete synonym of locked()."},
    {"__enter__", lock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, NULL},
    {"_release_save", lock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", lock_acquire_restore, METH_O, NULL},
    {"_at_fork_reinit", lock_at_fork_reinit, METH_NOARGS, NULL},
    STATS_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMemberDef sync_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(np_lockobj, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot lock_slots[] = {
    {Py_tp_doc, "Lock()\n--\n\n"
                "A primitive lock, threading.Lock's drop-in, with contention\n"
                "statistics (stats())."},
    {Py_tp_new, sync_new},
    {Py_tp_dealloc, sync_dealloc},
    {Py_tp_repr, lock_repr},
    {Py_tp_methods, lock_methods},
    {Py_tp_members, sync_members},
    {0, NULL},
};

static PyType_Spec lock_spec = {
    .name = "nativepool.Lock",
    .basicsize = sizeof(np_lockobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = lock_slots,
};

/* ---- RLock -------------------------------------------------------------- */

/* Take the underlying word for `me` (count starts at `count`). */
static int
rlock_take(np_rlockobj *l, int64_t deadline, unsigned long me, unsigned long count)
{
    if (HOOK_ON(l) && may_block(deadline) &&
        call_hook((PyObject *)l, HOOK_BEFORE) < 0) {
        return -1;
    }
    int r = np_sem_take_blocking(&l->base.sem, deadline, &l->base.stats);
    if (r > 0) {
        atomic_store_explicit(&l->base.owner, me, memory_order_relaxed);
        l->count = count;
        np_stats_acquired(&l->base.stats, 1);
        if (HOOK_ON(l)) {
            call_hook((PyObject *)l, HOOK_ACQUIRED);
        }
    }
    return r;
}

static PyObject *
rlock_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    np_rlockobj *l = RLOCK(op);
    int64_t deadline = NP_FOREVER;
    if (nargs != 0 || kwnames != NULL) {
        if (np_parse_lock_acquire(sstate(op), args, nargs, kwnames, &deadline) < 0) {
            return NULL;
        }
    }
    unsigned long me = PyThread_get_thread_ident();
    if (atomic_load_explicit(&l->base.owner, memory_order_relaxed) == me) {
        if (l->count == ULONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "Internal lock count overflowed");
            return NULL;
        }
        l->count++;
        Py_RETURN_TRUE;
    }
    int r = rlock_take(l, deadline, me, 1);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
rlock_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return rlock_acquire(op, NULL, 0, NULL);
}

static PyObject *
rlock_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_rlockobj *l = RLOCK(op);
    unsigned long me = PyThread_get_thread_ident();
    if (l->count == 0 ||
        atomic_load_explicit(&l->base.owner, memory_order_relaxed) != me) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--l->count == 0) {
        atomic_store_explicit(&l->base.owner, 0, memory_order_relaxed);
        np_sem_give(&l->base.sem, 1, 1, 0);
        if (HOOK_ON(op)) {
            call_hook(op, HOOK_RELEASED);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
rlock_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(n))
{
    return rlock_release(op, NULL);
}

static int
rlock_owned(np_rlockobj *l)
{
    return l->count > 0 &&
           atomic_load_explicit(&l->base.owner, memory_order_relaxed) ==
               PyThread_get_thread_ident();
}

static PyObject *
rlock_is_owned(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(rlock_owned(RLOCK(op)));
}

static PyObject *
rlock_recursion_count(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_rlockobj *l = RLOCK(op);
    return PyLong_FromUnsignedLong(rlock_owned(l) ? l->count : 0);
}

/* For threading.Condition.wait: release completely, return the state. */
static PyObject *
rlock_release_save(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    unsigned long state[2];
    if (np_fastlock_save(op, NP_FASTLOCK_RLOCK, state) < 0) {
        return NULL;
    }
    return Py_BuildValue("(kk)", state[0], state[1]);
}

static PyObject *
rlock_acquire_restore(PyObject *op, PyObject *state)
{
    unsigned long count, owner;
    if (!PyArg_ParseTuple(state, "kk:_acquire_restore", &count, &owner)) {
        return NULL;
    }
    lock_restore(LOCK(op), owner, count, 1);
    Py_RETURN_NONE;
}

static PyObject *
rlock_at_fork_reinit(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    atomic_store(&RLOCK(op)->base.owner, 0);
    RLOCK(op)->count = 0;
    return lock_at_fork_reinit(op, NULL);
}

static PyObject *
rlock_repr(PyObject *op)
{
    np_rlockobj *l = RLOCK(op);
    unsigned long owner = atomic_load(&l->base.owner);
    /* _thread.RLock's shape: "<unlocked _thread.RLock object owner=0
     * count=0 at 0x...>", plus our waiters. */
    return PyUnicode_FromFormat("<%s %s object owner=%lu count=%lu waiters=%u at %p>",
                                np_sem_value(&l->base.sem) ? "unlocked" : "locked",
                                Py_TYPE(op)->tp_name, owner, owner ? l->count : 0UL,
                                np_sem_sleepers(&l->base.sem), op);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire,
     METH_FASTCALL | METH_KEYWORDS, ACQUIRE_DOC("lock (again, if this thread holds it)")},
    {"release", rlock_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease one level; the owner only.\n\n"
     "RuntimeError if this thread does not hold it."},
    {"__enter__", rlock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_exit, METH_FASTCALL, NULL},
    {"_is_owned", rlock_is_owned, METH_NOARGS, NULL},
    {"_recursion_count", rlock_recursion_count, METH_NOARGS, NULL},
    {"_release_save", rlock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", rlock_acquire_restore, METH_O, NULL},
    {"_at_fork_reinit", rlock_at_fork_reinit, METH_NOARGS, NULL},
    STATS_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyType_Slot rlock_slots[] = {
    {Py_tp_doc, "RLock()\n--\n\n"
                "A reentrant lock, threading.RLock's drop-in, with contention\n"
                "statistics (stats())."},
    {Py_tp_new, sync_new},
    {Py_tp_dealloc, sync_dealloc},
    {Py_tp_repr, rlock_repr},
    {Py_tp_methods, rlock_methods},
    {Py_tp_members, sync_members},
    {0, NULL},
};

static PyType_Spec rlock_spec = {
    .name = "nativepool.RLock",
    .basicsize = sizeof(np_rlockobj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = rlock_slots,
};

int
np_lock_types_init(PyObject *module, np_state *st)
{
    if (np_locks_init(st) < 0) {
        return -1;
    }
    st->lock_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &lock_spec, NULL);
    if (st->lock_type == NULL ||
        np_module_add(module, "Lock", (PyObject *)st->lock_type) < 0) {
        return -1;
    }
    st->rlock_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &rlock_spec, NULL);
    if (st->rlock_type == NULL ||
        np_module_add(module, "RLock", (PyObject *)st->rlock_type) < 0) {
        return -1;
    }
    return 0;
}

/* ---- Condition's fast path ------------------------------------------------
 * A Condition over one of our own locks (exact types: a subclass may
 * override acquire/release in Python) calls these instead of the lock's
 * methods.  They behave exactly like those methods, lock-order hook
 * included. */

int
np_fastlock_kind(np_state *st, PyObject *lock)
{
    if (Py_IS_TYPE(lock, st->lock_type)) {
        return NP_FASTLOCK_LOCK;
    }
    if (Py_IS_TYPE(lock, st->rlock_type)) {
        return NP_FASTLOCK_RLOCK;
    }
    return 0;
}

/* _is_owned(): an RLock's owner is us; a Lock is held (by anyone: the
 * stdlib's own test for a plain lock). */
int
np_fastlock_owned(PyObject *lock, int kind)
{
    return kind == NP_FASTLOCK_RLOCK ? rlock_owned(RLOCK(lock))
                                     : np_sem_value(&LOCK(lock)->sem) == 0;
}

/* acquire() with no arguments: 0, or -1 with an exception. */
int
np_fastlock_acquire(PyObject *lock, int kind)
{
    PyObject *r = kind == NP_FASTLOCK_RLOCK ? rlock_acquire(lock, NULL, 0, NULL)
                                            : lock_acquire(lock, NULL, 0, NULL);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

int
np_fastlock_release(PyObject *lock, int kind)
{
    PyObject *r = kind == NP_FASTLOCK_RLOCK ? rlock_release(lock, NULL)
                                            : lock_release(lock, NULL);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* _release_save(): release completely, remembering the recursion depth
 * and owner in *state (an RLock; a Lock just releases).  0 or -1. */
int
np_fastlock_save(PyObject *lock, int kind, unsigned long state[2])
{
    if (kind == NP_FASTLOCK_LOCK) {
        return np_fastlock_release(lock, kind);
    }
    np_rlockobj *l = RLOCK(lock);
    if (l->count == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return -1;
    }
    state[0] = l->count;
    state[1] = atomic_load_explicit(&l->base.owner, memory_order_relaxed);
    l->count = 0;
    atomic_store_explicit(&l->base.owner, 0, memory_order_relaxed);
    np_sem_give(&l->base.sem, 1, 1, 0);
    if (HOOK_ON(lock)) {
        call_hook(lock, HOOK_RELEASED);
    }
    return 0;
}

/* _acquire_restore(state): never fails, never interrupted (lock_restore). */
void
np_fastlock_restore(PyObject *lock, int kind, const unsigned long state[2])
{
    if (kind == NP_FASTLOCK_LOCK) {
        lock_restore(LOCK(lock), PyThread_get_thread_ident(), 1, 0);
    }
    else {
        lock_restore(LOCK(lock), state[1], state[0], 1);
    }
}
