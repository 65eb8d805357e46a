/* channel.c -- _nativepool._Channel: the Python face of np_chan, the
 * cross-process message channel a ProcessPool worker will talk through.
 *
 * Private for now (the ProcessPool is built on it next).  Every blocking
 * call releases the GIL, takes a timeout, and turns EINTR into Python
 * signal handling (Ctrl-C) before it resumes.
 *
 * Threads: np_chan allows one reader and one writer at a time; two locks
 * serialize the rest.  A message interrupted part-way (an exception from a
 * signal handler, or a timeout while a long message streams) cannot be
 * resumed from Python with other data, so it leaves the channel broken:
 * every later call raises.
 *
 * A send or recv holds its lock for the whole message, and so across what
 * may run Python: the signal handlers between waits, taking the GIL back.
 * That is safe because of two rules (chan_lock below): a thread that must
 * wait for the lock waits with the GIL released (so its holder can always
 * take the GIL back), and a thread never waits for a lock it holds itself
 * (a signal handler or a finalizer that uses the same channel from inside
 * a send/recv of it): that raises RuntimeError instead of deadlocking.
 */
#include "np_module.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "np_chan.h"

/* One direction's lock: a mutex and its holder (pthread_self(), or 0). */
typedef struct {
    np_mutex mutex;
    _Atomic unsigned long owner;
} chan_lock;

typedef struct {
    PyObject_HEAD
    np_chan *ch;
    chan_lock send_lock, recv_lock;
    int broken;              /* a message was left half-sent or half-read */
} np_channel;

#define CHANNEL(op) ((np_channel *)(op))

static PyTypeObject *
channel_type(PyObject *module)
{
    return ((np_state *)PyModule_GetState(module))->channel_type;
}

static unsigned long
self_id(void)
{
    return (unsigned long)pthread_self();
}

/* Take l (GIL held; released only while waiting).  -1 with RuntimeError if
 * this thread holds it already: it is inside a send/recv of this channel,
 * and a signal handler or a finalizer is using the channel again. */
static int
chan_lock_take(chan_lock *l, const char *what)
{
    unsigned long me = self_id();
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) == me) {
        PyErr_Format(PyExc_RuntimeError,
                     "reentrant %s: this thread is already inside a %s on "
                     "this channel (a signal handler or a finalizer called it)",
                     what, what);
        return -1;
    }
    np_mutex_lock_blocking(&l->mutex);
    atomic_store_explicit(&l->owner, me, memory_order_relaxed);
    return 0;
}

/* 1 if l was free and is now ours, without waiting. */
static int
chan_lock_try(chan_lock *l)
{
    if (!np_mutex_trylock(&l->mutex)) {
        return 0;
    }
    atomic_store_explicit(&l->owner, self_id(), memory_order_relaxed);
    return 1;
}

static void
chan_lock_release(chan_lock *l)
{
    atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
    np_mutex_unlock(&l->mutex);
}

/* Raise for a runtime code (not NP_OK / NP_EINTR). */
static void
raise_code(int r, int sending)
{
    switch (r) {
    case NP_ETIMEDOUT:
        PyErr_SetString(PyExc_TimeoutError, "channel operation timed out");
        break;
    case NP_ECLOSED:
        if (sending) {
            PyErr_SetString(PyExc_BrokenPipeError,
                            "the other end of the channel is closed or its "
                            "process has exited");
        }
        else {
            PyErr_SetString(PyExc_EOFError,
                            "the other end of the channel is closed or its "
                            "process has exited");
        }
        break;
    case NP_ENOMEM:
        PyErr_NoMemory();
        break;
    default:
        if (errno != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        else {
            PyErr_Format(PyExc_OSError, "channel error %d", r);
        }
    }
}

/* The endpoint, or NULL with ValueError once closed. */
static np_chan *
open_chan(np_channel *self)
{
    if (self->ch == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed channel");
    }
    return self->ch;
}

/* The endpoint for a message: open and not broken. */
static np_chan *
get_chan(np_channel *self)
{
    if (open_chan(self) == NULL) {
        return NULL;
    }
    if (self->broken) {
        PyErr_SetString(PyExc_OSError, "the channel is broken: a message was "
                        "interrupted part-way");
        return NULL;
    }
    return self->ch;
}

static np_channel *
channel_new_from(PyTypeObject *tp, np_chan *ch)
{
    np_channel *self = (np_channel *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        np_chan_close(ch);
        return NULL;
    }
    self->ch = ch;
    self->send_lock.mutex = (np_mutex)NP_MUTEX_INIT;
    self->recv_lock.mutex = (np_mutex)NP_MUTEX_INIT;
    atomic_init(&self->send_lock.owner, 0);
    atomic_init(&self->recv_lock.owner, 0);
    self->broken = 0;
    return self;
}

/* _Channel.create(ring_size=0, use_pidfd=True): the parent's end. */
static PyObject *
channel_create(PyObject *cls, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"ring_size", "use_pidfd", NULL};
    Py_ssize_t ring = 0;
    int pidfd = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|np:create", kws, &ring,
                                     &pidfd)) {
        return NULL;
    }
    if (ring < 0) {
        PyErr_SetString(PyExc_ValueError, "ring_size must be >= 0");
        return NULL;
    }
    np_chan *ch;
    errno = 0;
    int r = np_chan_create(&ch, (size_t)ring, pidfd ? 0 : NP_CHAN_NO_PIDFD);
    if (r != NP_OK) {
        raise_code(r, 0);
        return NULL;
    }
    return (PyObject *)channel_new_from((PyTypeObject *)cls, ch);
}

/* _Channel.attach(fds): the child's end, from the parent's child_fds(). */
static PyObject *
channel_attach(PyObject *cls, PyObject *fdseq)
{
    PyObject *seq = PySequence_Fast(fdseq, "fds must be a sequence of ints");
    if (seq == NULL) {
        return NULL;
    }
    if (PySequence_Fast_GET_SIZE(seq) != NP_CHAN_NFDS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "expected %d fds", NP_CHAN_NFDS);
        return NULL;
    }
    int fds[NP_CHAN_NFDS];
    for (int i = 0; i < NP_CHAN_NFDS; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if ((v == -1 && PyErr_Occurred()) || v < 0 || v > INT_MAX) {
            Py_DECREF(seq);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "invalid file descriptor");
            }
            return NULL;
        }
        fds[i] = (int)v;
    }
    Py_DECREF(seq);
    np_chan *ch;
    errno = 0;
    int r = np_chan_attach(&ch, fds);
    if (r != NP_OK) {
        raise_code(r, 0);
        return NULL;
    }
    return (PyObject *)channel_new_from((PyTypeObject *)cls, ch);
}

static PyObject *
channel_child_fds(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_chan *ch = get_chan(CHANNEL(op));
    if (ch == NULL) {
        return NULL;
    }
    int fds[NP_CHAN_NFDS];
    np_chan_child_fds(ch, fds);
    PyObject *t = PyTuple_New(NP_CHAN_NFDS);
    for (int i = 0; t != NULL && i < NP_CHAN_NFDS; i++) {
        PyObject *v = PyLong_FromLong(fds[i]);
        if (v == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *
channel_child_started(PyObject *op, PyObject *arg)
{
    np_chan *ch = get_chan(CHANNEL(op));
    if (ch == NULL) {
        return NULL;
    }
    long pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    errno = 0;
    int r = np_chan_child_started(ch, (pid_t)pid);
    if (r != NP_OK) {
        raise_code(r, 0);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* send(data, timeout=None): one message, the bytes of a bytes-like object. */
static PyObject *
channel_send(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"data", "timeout", NULL};
    Py_buffer view;
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|O:send", kws, &view,
                                     &timeout)) {
        return NULL;
    }
    np_channel *self = CHANNEL(op);
    np_state *st = np_state_from_type(Py_TYPE(op));
    int64_t deadline;
    np_chan *ch = get_chan(self);
    if (ch == NULL || np_parse_timeout(st, timeout, &deadline) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (chan_lock_take(&self->send_lock, "send") < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int r;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        r = np_chan_send(ch, view.buf, (size_t)view.len, deadline);
        Py_END_ALLOW_THREADS
        if (r != NP_EINTR || PyErr_CheckSignals() < 0) {
            break;
        }
    }
    if (r != NP_OK && np_chan_send_pending(ch)) {
        self->broken = 1;   /* part of it is in the ring */
    }
    chan_lock_release(&self->send_lock);
    PyBuffer_Release(&view);
    if (r == NP_OK) {
        Py_RETURN_NONE;
    }
    if (!PyErr_Occurred()) {
        raise_code(r, 1);
    }
    return NULL;
}

/* recv(timeout=None) -> bytes: the next message. */
static PyObject *
channel_recv(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kws[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:recv", kws, &timeout)) {
        return NULL;
    }
    np_channel *self = CHANNEL(op);
    np_state *st = np_state_from_type(Py_TYPE(op));
    int64_t deadline;
    np_chan *ch = get_chan(self);
    if (ch == NULL || np_parse_timeout(st, timeout, &deadline) < 0) {
        return NULL;
    }
    if (chan_lock_take(&self->recv_lock, "recv") < 0) {
        return NULL;
    }
    size_t size = 0;
    int r;
    PyObject *bytes = NULL;
    for (;;) {   /* waiting for a message: nothing is read yet */
        Py_BEGIN_ALLOW_THREADS
        r = np_chan_recv_size(ch, &size, deadline);
        Py_END_ALLOW_THREADS
        if (r != NP_EINTR || PyErr_CheckSignals() < 0) {
            break;
        }
    }
    if (r == NP_OK) {
        if (size > (size_t)PY_SSIZE_T_MAX) {
            r = NP_ENOMEM;
        }
        else {
            bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        }
        if (bytes != NULL) {
            /* Straight into the bytes object's storage. */
            for (;;) {
                char *buf = PyBytes_AS_STRING(bytes);
                Py_BEGIN_ALLOW_THREADS
                r = np_chan_recv_data(ch, buf, deadline);
                Py_END_ALLOW_THREADS
                if (r != NP_EINTR || PyErr_CheckSignals() < 0) {
                    break;
                }
            }
            if (r != NP_OK) {
                self->broken = 1;   /* a message is half read */
                Py_CLEAR(bytes);
            }
        }
    }
    chan_lock_release(&self->recv_lock);
    if (bytes == NULL && !PyErr_Occurred()) {
        raise_code(r == NP_OK ? NP_ENOMEM : r, 0);
    }
    return bytes;
}

np_chan *
np_channel_chan(np_state *st, PyObject *obj)
{
    if (!Py_IS_TYPE(obj, st->channel_type)) {
        PyErr_Format(PyExc_TypeError, "expected a _Channel, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return get_chan(CHANNEL(obj));
}

static PyObject *
channel_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_channel *self = CHANNEL(op);
    if (self->ch == NULL) {
        Py_RETURN_NONE;
    }
    /* Another thread blocked in send/recv would use the mapping we free. */
    if (!chan_lock_try(&self->send_lock)) {
        PyErr_SetString(PyExc_RuntimeError, "channel is in use by another thread");
        return NULL;
    }
    if (!chan_lock_try(&self->recv_lock)) {
        chan_lock_release(&self->send_lock);
        PyErr_SetString(PyExc_RuntimeError, "channel is in use by another thread");
        return NULL;
    }
    np_chan *ch = self->ch;
    self->ch = NULL;
    chan_lock_release(&self->recv_lock);
    chan_lock_release(&self->send_lock);
    np_chan_close(ch);
    Py_RETURN_NONE;
}

/* _forget(): in a fork child, drop an inherited copy without telling the
 * peer (see np_chan_forget). */
static PyObject *
channel_forget(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_channel *self = CHANNEL(op);
    if (self->ch != NULL) {
        np_chan_forget(self->ch);
        self->ch = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
channel_peer_status(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_chan *ch = open_chan(CHANNEL(op));
    if (ch == NULL) {
        return NULL;
    }
    static const char *const names[] = {"alive", "closed", "dead"};
    int s = np_chan_peer_status(ch);
    return PyUnicode_FromString(s >= 0 && s <= 2 ? names[s] : "unknown");
}

static PyObject *
channel_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    np_chan *ch = open_chan(CHANNEL(op));
    if (ch == NULL) {
        return NULL;
    }
    np_chan_stats s;
    np_chan_get_stats(ch, &s);
    return Py_BuildValue("{sKsKsKsKsn}", "sent", (unsigned long long)s.sent,
                         "received", (unsigned long long)s.received, "wakes",
                         (unsigned long long)s.wakes, "sleeps",
                         (unsigned long long)s.sleeps, "ring_size",
                         (Py_ssize_t)np_chan_ring_size(ch));
}

static PyObject *
channel_set_spin(PyObject *op, PyObject *arg)
{
    double secs = PyFloat_AsDouble(arg);
    if (secs == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    np_chan *ch = open_chan(CHANNEL(op));
    if (ch == NULL) {
        return NULL;
    }
    np_chan_set_spin(ch, secs <= 0 ? 0 : (int64_t)(secs * 1e9));
    Py_RETURN_NONE;
}

static PyObject *
channel_closed(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(CHANNEL(op)->ch == NULL);
}

/* _chan_wait_any(channels, timeout=None) -> list of indices that are
 * readable (a message, or the peer gone).  The caller must be the only
 * reader of every channel; empty list on timeout. */
static PyObject *
chan_wait_any(PyObject *module, PyObject *args)
{
    PyObject *chans, *timeout = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:_chan_wait_any", &chans, &timeout)) {
        return NULL;
    }
    np_state *st = PyModule_GetState(module);
    PyObject *seq = PySequence_Fast(chans, "channels must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int64_t deadline;
    np_chan **arr = PyMem_Calloc(n ? (size_t)n : 1, sizeof(np_chan *));
    unsigned char *ready = PyMem_Calloc((size_t)n + 1, 1);
    PyObject *result = NULL;
    if (arr == NULL || ready == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "no channels to wait on");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        if (!Py_IS_TYPE(c, channel_type(module)) ||
            (arr[i] = get_chan(CHANNEL(c))) == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "expected _Channel objects");
            }
            goto done;
        }
    }
    if (np_parse_timeout(st, timeout, &deadline) < 0) {
        goto done;
    }
    int r;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        r = np_chan_wait_any(arr, (size_t)n, -1, ready, deadline);
        Py_END_ALLOW_THREADS
        if (r != NP_EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            goto done;
        }
    }
    if (r < 0 && r != NP_ETIMEDOUT) {
        raise_code(r, 0);
        goto done;
    }
    result = PyList_New(0);
    for (Py_ssize_t i = 0; result != NULL && r > 0 && i < n; i++) {
        if (ready[i]) {
            PyObject *v = PyLong_FromSsize_t(i);
            if (v == NULL || PyList_Append(result, v) < 0) {
                Py_CLEAR(result);
            }
            Py_XDECREF(v);
        }
    }
done:
    PyMem_Free(arr);
    PyMem_Free(ready);
    Py_DECREF(seq);
    return result;
}

/* Advise that [p, p + size) be backed by huge pages where it covers whole
 * ones (Linux THP in "madvise" mode): memory fresh from malloc is then
 * faulted in 2 MiB at a time, not 4 KiB, which on virtual machines is most
 * of the cost of filling a large new object.  Advice only: the contents
 * and every other use of the memory stay as they are. */
static void
advise_huge(char *p, size_t size)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)p + size) & ~(huge - 1);
    if (end > start) {
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
    }
#else
    (void)p;
    (void)size;
#endif
}

/* _read_shared(fd, size) -> bytes: the first size bytes of the file fd (a
 * shared buffer's memfd, _shared.py), read into a new bytes object with
 * the GIL released: one copy, by the kernel, into memory advised huge. */
static PyObject *
read_shared(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "in:_read_shared", &fd, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, size);
    if (b == NULL) {
        return NULL;
    }
    char *p = PyBytes_AS_STRING(b);
    size_t done = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    advise_huge(p, (size_t)size);
    while (done < (size_t)size) {
        size_t want = (size_t)size - done;
        ssize_t r = pread(fd, p + done, want < ((size_t)1 << 30) ? want : (size_t)1 << 30,
                          (off_t)done);
        if (r < 0 && errno == EINTR) {
            continue;   /* a regular file: the read resumes at once */
        }
        if (r <= 0) {
            err = r < 0 ? errno : -1;
            break;
        }
        done += (size_t)r;
    }
    Py_END_ALLOW_THREADS
    if (err != 0) {
        Py_DECREF(b);
        if (err > 0) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        PyErr_SetString(PyExc_EOFError, "the shared buffer is shorter than its size");
        return NULL;
    }
    return b;
}

static void
channel_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    np_channel *self = CHANNEL(op);
    if (self->ch != NULL) {
        np_chan_close(self->ch);   /* no method runs: nobody holds a lock */
        self->ch = NULL;
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef channel_methods[] = {
    {"create", (PyCFunction)(void (*)(void))channel_create,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "create(ring_size=0, use_pidfd=True)\n--\n\nThe parent's end of a new channel."},
    {"attach", channel_attach, METH_O | METH_CLASS,
     "attach(fds)\n--\n\nThe child's end, from the parent's child_fds()."},
    {"child_fds", channel_child_fds, METH_NOARGS,
     "child_fds($self, /)\n--\n\nThe fds the child attaches with (pass them on)."},
    {"child_started", channel_child_started, METH_O,
     "child_started($self, pid, /)\n--\n\nThe child holds its fds: close ours, watch it."},
    {"send", (PyCFunction)(void (*)(void))channel_send, METH_VARARGS | METH_KEYWORDS,
     "send($self, /, data, timeout=None)\n--\n\nSend one message (a bytes-like object)."},
    {"recv", (PyCFunction)(void (*)(void))channel_recv, METH_VARARGS | METH_KEYWORDS,
     "recv($self, /, timeout=None)\n--\n\nThe next message, as bytes. EOFError once the peer is gone."},
    {"close", channel_close, METH_NOARGS, "close($self, /)\n--\n\n"},
    {"_forget", channel_forget, METH_NOARGS, NULL},
    {"peer_status", channel_peer_status, METH_NOARGS,
     "peer_status($self, /)\n--\n\n'alive', 'closed' or 'dead'."},
    {"stats", channel_stats, METH_NOARGS, "stats($self, /)\n--\n\n"},
    {"set_spin", channel_set_spin, METH_O,
     "set_spin($self, seconds, /)\n--\n\nHow long a wait polls before it sleeps."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef channel_getset[] = {
    {"closed", channel_closed, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot channel_slots[] = {
    {Py_tp_doc, "A message channel to a worker process (np_chan)."},
    {Py_tp_dealloc, channel_dealloc},
    {Py_tp_methods, channel_methods},
    {Py_tp_getset, channel_getset},
    {0, NULL},
};

static PyType_Spec channel_spec = {
    .name = "nativepool._nativepool._Channel",
    .basicsize = sizeof(np_channel),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = channel_slots,
};

static PyMethodDef channel_functions[] = {
    {"_chan_wait_any", chan_wait_any, METH_VARARGS,
     "_chan_wait_any(channels, timeout=None) -> indices of readable channels"},
    {"_read_shared", read_shared, METH_VARARGS,
     "_read_shared(fd, size) -> bytes: a shared buffer's contents"},
    {NULL, NULL, 0, NULL},
};

int
np_channel_type_init(PyObject *module, np_state *st)
{
    st->channel_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &channel_spec, NULL);
    if (st->channel_type == NULL ||
        np_module_add(module, "_Channel", (PyObject *)st->channel_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, channel_functions);
}
