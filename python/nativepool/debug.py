"""Debugging help for programs that use nativepool's locks.

check_lock_order(True)
    Record, per thread, the order in which nativepool Locks and RLocks are
    taken.  The first time two locks are taken in opposite orders (A then B
    somewhere, B then A somewhere else), the acquire that closes the cycle
    raises LockOrderError (or warns, with on_violation="warn") *before* it
    blocks, naming both locks and where each order was taken.  Two threads
    running those two paths at the same moment would deadlock; this finds
    the bug on a run where they did not.  A blocking acquire of a Lock the
    thread already holds (a certain self-deadlock) is reported the same way.
    Setting NATIVEPOOL_CHECK_LOCK_ORDER=1 (or "raise", or "warn") in the
    environment turns it on at import.  It slows every acquire and release
    down (Python code runs for each); it is for test runs, not production.

dump_locks()
    For a program that is already stuck: list every nativepool Lock and RLock
    that is held, with its owner thread and how many threads wait for it.
    Works without check_lock_order.  It never blocks on a lock a collection
    could need, so it is safe from a signal handler or another thread.

Both are per interpreter: a subinterpreter that imports nativepool checks
and lists its own locks only.  From a signal handler, for instance:
    ``signal.signal(signal.SIGUSR1, lambda *a: nativepool.debug.dump_locks(sys.stderr))``.
"""
import _thread
import os
import sys
import threading
import warnings
import weakref

from . import _nativepool

__all__ = ["LockOrderError", "LockOrderWarning", "check_lock_order", "dump_locks"]


class LockOrderError(RuntimeError):
    """Two locks were taken in opposite orders: a potential deadlock."""


class LockOrderWarning(RuntimeWarning):
    """check_lock_order(on_violation="warn")'s report."""


_HOOK_BEFORE, _HOOK_ACQUIRED, _HOOK_RELEASED = 0, 1, 2


def _where():
    """file:line (function) of the nearest caller outside nativepool's own
    Python code (the hook is called from C, inside the user's acquire)."""
    frame = sys._getframe(1)
    here = os.path.dirname(__file__)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return "%s:%d (%s)" % (frame.f_code.co_filename, frame.f_lineno,
                           frame.f_code.co_name)


class _Checker:
    """The hook the C locks call: hook(lock, event).

    held:   lock -> (thread name, where taken), for every lock held now, in
            a dict per thread, in acquisition order.
    after:  lock A -> {lock B: (thread, where A was taken, where B was
            taken)}: "B was acquired while A was held", the first time.
    Guarded by a _thread lock (not one of ours: the hook must not recurse).
    """

    def __init__(self, on_violation):
        self.on_violation = on_violation
        self.mutex = _thread.allocate_lock()
        self.held = {}                          # thread ident -> {lock: info}
        self.after = weakref.WeakKeyDictionary()
        self.reported = set()

    def __call__(self, lock, event):
        if event == _HOOK_BEFORE:
            self.before(lock)
        elif event == _HOOK_ACQUIRED:
            self.acquired(lock)
        else:
            self.released(lock)

    def before(self, lock):
        me = threading.get_ident()
        with self.mutex:
            mine = dict(self.held.get(me, {}))
        here = None
        for other, (_, other_where) in mine.items():
            if other is lock:
                # Only Locks get here (an owner's RLock re-entry does not
                # call the hook): a blocking acquire of our own Lock.
                here = here or _where()
                self.report(
                    (id(lock),),
                    "acquiring %r, which this thread already holds (taken at "
                    "%s), at %s: this blocks forever" % (lock, other_where, here))
                continue
            with self.mutex:
                earlier = self.after.get(lock, {}).get(other)
            if earlier is not None:
                here = here or _where()
                thread, lock_where, other_where_then = earlier
                self.report(
                    tuple(sorted((id(lock), id(other)))),
                    "lock order inversion between %r and %r.\n"
                    "  Earlier, thread %r took the first at %s and then the "
                    "second at %s.\n"
                    "  Now thread %r holds the second (taken at %s) and is "
                    "acquiring the first at %s.\n"
                    "  Two threads doing this at the same time deadlock."
                    % (lock, other, thread, lock_where, other_where_then,
                       threading.current_thread().name, other_where, here))

    def report(self, key, message):
        if self.on_violation == "raise":
            raise LockOrderError(message)
        if key not in self.reported:
            self.reported.add(key)
            warnings.warn(message, LockOrderWarning, stacklevel=4)

    def acquired(self, lock):
        me = threading.get_ident()
        name = threading.current_thread().name
        where = _where()
        with self.mutex:
            mine = self.held.setdefault(me, {})
            for other, (_, other_where) in mine.items():
                if other is lock:
                    continue
                edges = self.after.get(other)
                if edges is None:
                    edges = self.after[other] = weakref.WeakKeyDictionary()
                if lock not in edges:
                    edges[lock] = (name, other_where, where)
            mine[lock] = (name, where)

    def released(self, lock):
        # A Lock may be released by another thread than the one that took
        # it: forget it wherever it is held.
        with self.mutex:
            for mine in self.held.values():
                mine.pop(lock, None)


_checker = None


def check_lock_order(enabled=True, *, on_violation="raise"):
    """Turn lock-order checking on or off (see the module's docstring).

    on_violation: "raise" (LockOrderError from the offending acquire, which
    then does not take the lock) or "warn" (LockOrderWarning, once per pair
    of locks; the acquire proceeds).  Calling it again while it is on only
    changes on_violation; turning it off forgets what was recorded.
    """
    global _checker
    if on_violation not in ("raise", "warn"):
        raise ValueError("on_violation must be 'raise' or 'warn', not %r"
                         % (on_violation,))
    if not enabled:
        _checker = None
    elif _checker is not None:
        # Already on: keep what was recorded (the order, the held locks).
        _checker.on_violation = on_violation
        return
    else:
        _checker = _Checker(on_violation)
    _nativepool._set_lock_hook(_checker)


def dump_locks(file=None):
    """Describe every nativepool Lock and RLock held right now: the lock,
    its owner thread, its recursion depth and how many threads wait for it.
    Returns the text, and writes it to ``file`` too if given."""
    names = {t.ident: t.name for t in threading.enumerate()}
    held = _nativepool._held_locks()
    lines = ["nativepool: %d lock(s) held" % len(held)]
    for lock, owner, depth, waiters in held:
        lines.append("  %r\n    owner: thread %r (ident %d), depth %d, waiters=%d"
                     % (lock, names.get(owner, "?"), owner, depth, waiters))
    text = "\n".join(lines) + "\n"
    if file is not None:
        file.write(text)
    return text


def _from_environment():
    value = os.environ.get("NATIVEPOOL_CHECK_LOCK_ORDER", "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return
    check_lock_order(True, on_violation="warn" if value == "warn" else "raise")


_from_environment()
