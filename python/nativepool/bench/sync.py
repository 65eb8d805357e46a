"""Section sync: nativepool's synchronization objects against threading's
and queue's, interleaved pair by pair."""

import gc
import queue
import threading
import time

from .harness import (
    NOT_IMPLEMENTED,
    NativepoolUnavailable,
    ROLE_OURS,
    ROLE_STDLIB,
    Row,
    Section,
    Target,
    _fmt_times,
    _ratio,
    load_nativepool,
    register_section,
)

perf_counter = time.perf_counter


SYNC_NAMES = ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event",
              "AtomicInt", "Condition", "Barrier", "Queue", "SimpleQueue")


class _FakeAtomicInt(object):
    """FAKE-run stand-in for nativepool.AtomicInt: an int behind a Lock."""

    def __init__(self, value=0):
        self._value = value
        self._lock = threading.Lock()

    def add(self, n):
        with self._lock:
            self._value += n
            return self._value

    def inc(self):
        return self.add(1)

    def __iadd__(self, n):
        self.add(n)
        return self

    @property
    def value(self):
        return self._value

    def __int__(self):
        return self._value


def _fake_sync(name):
    if name == "AtomicInt":
        return _FakeAtomicInt
    if name in ("Queue", "SimpleQueue"):
        return getattr(queue, name)
    return getattr(threading, name)


def nativepool_sync(name):
    """nativepool's sync class ``name`` (one of SYNC_NAMES), or None if it
    does not exist yet.  FAKE run: threading's class (AtomicInt: an int
    behind a threading.Lock)."""
    module, _, _, fake = load_nativepool()
    if fake:
        return _fake_sync(name)
    return getattr(module, name, None)


def _sync_available(name):
    def available():
        try:
            cls = nativepool_sync(name)
        except NativepoolUnavailable as exc:
            return str(exc)
        return NOT_IMPLEMENTED if cls is None else None
    return available


def _ours_sync(name, fn):
    """Row.run for nativepool's class ``name``: fn(cls, sizes)."""
    def run(sizes):
        cls = nativepool_sync(name)
        if cls is None:
            raise NativepoolUnavailable(NOT_IMPLEMENTED)
        return fn(cls, sizes)
    return run


def _join_or_fail(threads, timeout, what):
    deadline = perf_counter() + timeout
    for t in threads:
        t.join(max(0.0, deadline - perf_counter()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        # The threads are daemons, blocked for good: leave them behind and
        # let the row show an ERROR instead of hanging the whole run.
        raise RuntimeError("%s hung: %s still blocked after %.0f s (lost "
                           "wakeup?)" % (what, ", ".join(stuck), timeout))


def bench_acquire_release(factory, n_pairs):
    """(sync) ``obj.acquire(); obj.release()`` ``n_pairs`` times on one
    thread (uncontended).  ``factory()`` makes a Lock, an RLock or a
    Semaphore(1)."""
    obj = factory()
    gc.collect()
    t0 = perf_counter()
    for _ in range(n_pairs):
        obj.acquire()
        obj.release()
    t1 = perf_counter()
    _check_released(obj)
    return t1 - t0


def bench_with_block(factory, n_pairs):
    """(sync) ``with obj: pass`` ``n_pairs`` times on one thread."""
    obj = factory()
    gc.collect()
    t0 = perf_counter()
    for _ in range(n_pairs):
        with obj:
            pass
    t1 = perf_counter()
    _check_released(obj)
    return t1 - t0


def _check_released(obj):
    # After the loop the object must be free again: one non-blocking
    # acquire succeeds.
    if not obj.acquire(False):
        raise AssertionError("%s is still held after acquire/release pairs"
                             % type(obj).__name__)
    obj.release()


def _semaphore_factory(cls):
    return lambda: cls(1)


def _run_pair(side_a, side_b, n, what, timeout=None):
    """Run two loop bodies on two started threads released together by a
    Barrier; side_a is timed.  A hang (lost wakeup) becomes an error after
    the timeout instead of stopping the benchmark."""
    start = threading.Barrier(2)
    elapsed = []
    errors = []

    def a():
        try:
            start.wait()
            t0 = perf_counter()
            side_a()
            elapsed.append(perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)

    def b():
        try:
            start.wait()
            side_b()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=a, name=what + "-A", daemon=True),
               threading.Thread(target=b, name=what + "-B", daemon=True)]
    gc.collect()
    for t in threads:
        t.start()
    _join_or_fail(threads, timeout or 30.0 + n * 0.001, what)
    if errors:
        raise errors[0]
    return elapsed[0]


def bench_event_pingpong(event_factory, n_round_trips, timeout=None):
    """(sync) ping-pong between two threads through two Events.

    A: ``e1.set(); e2.wait(); e2.clear()``; B: ``e1.wait(); e1.clear();
    e2.set()``; ``n_round_trips`` times each, on two started threads (see
    _run_pair: a lost wakeup is an ERROR row, not a hang); A's loop is timed.
    """
    e1 = event_factory()
    e2 = event_factory()

    def side_a():
        for _ in range(n_round_trips):
            e1.set()
            e2.wait()
            e2.clear()

    def side_b():
        for _ in range(n_round_trips):
            e1.wait()
            e1.clear()
            e2.set()

    el = _run_pair(side_a, side_b, n_round_trips, "Event ping-pong", timeout)
    # B cleared e1 and A cleared e2 at the end of their last round trip.
    if e1.is_set() or e2.is_set():
        raise AssertionError("Event ping-pong ended in a wrong state "
                             "(e1 set: %s, e2 set: %s; want both clear)"
                             % (e1.is_set(), e2.is_set()))
    return el


def bench_condition_pingpong(cond_factory, n_round_trips):
    """(sync) two threads hand a token back and forth through one
    Condition: ``notify()`` then ``wait()`` until it is their turn."""
    cond = cond_factory()
    turn = [0]

    def side_a():
        for _ in range(n_round_trips):
            with cond:
                turn[0] = 1
                cond.notify()
                while turn[0] != 0:
                    cond.wait()

    def side_b():
        for _ in range(n_round_trips):
            with cond:
                while turn[0] != 1:
                    cond.wait()
                turn[0] = 0
                cond.notify()

    return _run_pair(side_a, side_b, n_round_trips, "Condition ping-pong")


def bench_barrier_rounds(barrier_factory, n_rounds):
    """(sync) two threads meet at a Barrier(2) ``n_rounds`` times."""
    barrier = barrier_factory(2)
    indices = []

    def side_a():
        for _ in range(n_rounds):
            indices.append(barrier.wait())

    def side_b():
        for _ in range(n_rounds):
            barrier.wait()

    el = _run_pair(side_a, side_b, n_rounds, "Barrier(2) rounds")
    if len(indices) != n_rounds or any(i not in (0, 1) for i in indices):
        raise AssertionError("Barrier returned wrong indices")
    return el


def bench_queue_transfer(queue_factory, n_items):
    """(sync) one producer thread puts ``n_items`` ints, one consumer thread
    gets them; the consumer's time, checked for order and count."""
    q = queue_factory()
    got = [0, -1]

    def consumer():
        get = q.get
        for i in range(n_items):
            x = get()
            if x != i:
                raise AssertionError("queue item %r, expected %d" % (x, i))
        got[0] = n_items

    def producer():
        put = q.put
        for i in range(n_items):
            put(i)

    el = _run_pair(consumer, producer, n_items, "queue transfer")
    if got[0] != n_items:
        raise AssertionError("the consumer did not get every item")
    return el


def bench_queue_pingpong(queue_factory, n_round_trips):
    """(sync) two threads bounce a token through two queues."""
    q1, q2 = queue_factory(), queue_factory()

    def side_a():
        for i in range(n_round_trips):
            q1.put(i)
            q2.get()

    def side_b():
        for _ in range(n_round_trips):
            q2.put(q1.get())

    return _run_pair(side_a, side_b, n_round_trips, "Queue ping-pong")


# The shared counter of the race workload: a module global, as in the
# classic "counter += 1 from several threads" bug.
_race_counter = 0


def _race_locked(lock, n_incr, start):
    global _race_counter
    start.wait()
    for _ in range(n_incr):
        with lock:
            _race_counter += 1


def _race_atomic(n_incr, start):
    global _race_counter
    start.wait()
    for _ in range(n_incr):
        _race_counter += 1


def atomic_value(a):
    """The int value of an AtomicInt (``.value``, ``.get()``, ``.load()``
    or ``int()``, whichever it has)."""
    for attr in ("value", "get", "load"):
        v = getattr(a, attr, None)
        if v is not None:
            return v() if callable(v) else v
    return int(a)


def bench_counter_race(n_threads, n_incr, atomic_cls=None, lock_factory=None,
                       timeout=None):
    """(sync) ``n_threads`` threads each doing ``counter += 1`` ``n_incr``
    times on a global counter: with ``lock_factory`` (threading.Lock) as
    ``with lock: counter += 1`` on an int, with ``atomic_cls`` as a bare
    ``counter += 1`` on an AtomicInt.  Times from the start Barrier to the
    last join; the final count must be exactly n_threads * n_incr.
    """
    global _race_counter
    if (atomic_cls is None) == (lock_factory is None):
        raise ValueError("give exactly one of atomic_cls, lock_factory")
    start = threading.Barrier(n_threads + 1)
    if atomic_cls is not None:
        try:
            counter = atomic_cls(0)
        except TypeError:
            counter = atomic_cls()
        _race_counter = counter
        target, args = _race_atomic, (n_incr, start)
    else:
        counter = None
        _race_counter = 0
        target, args = _race_locked, (lock_factory(), n_incr, start)
    threads = [threading.Thread(target=target, args=args, name="counter-%d" % i)
               for i in range(n_threads)]
    for t in threads:
        t.daemon = True
    try:
        for t in threads:
            t.start()
        gc.collect()
        t0 = perf_counter()
        start.wait()
        if timeout is None:
            timeout = 30.0 + n_threads * n_incr * 1e-5
        _join_or_fail(threads, timeout, "counter race")
        t1 = perf_counter()
        final = _race_counter
    finally:
        if start.n_waiting:
            start.abort()
        _race_counter = 0
    want = n_threads * n_incr
    if counter is not None:
        if final is not counter:
            raise AssertionError("`counter += 1` rebound the global to a %s: "
                                 "AtomicInt.__iadd__ must return self"
                                 % type(final).__name__)
        final = atomic_value(counter)
    if final != want:
        raise AssertionError("final count %r, expected %d" % (final, want))
    return t1 - t0


def _counter_notes(row_key, medians, sizes):
    if not row_key.startswith("counter."):
        return ""
    return "count %s exact" % format(sizes["n_threads"] * sizes["n_incr"], ",")


def _n_increments(sizes):
    return sizes["n_threads"] * sizes["n_incr"]


def _pair_rows(key, stdlib_label, ours_name, ours_label, run_stdlib, run_ours,
               per_task, unit):
    """The two rows of one comparison: threading's object (the baseline),
    then nativepool's, interleaved within every repeat."""
    base = key + ".stdlib"
    return [
        Row(base, stdlib_label, ROLE_STDLIB, run_stdlib, baseline=base,
            per_task=per_task, unit=unit),
        Row(key + ".nativepool", ours_label, ROLE_OURS,
            _ours_sync(ours_name, run_ours), available=_sync_available(ours_name),
            baseline=base, per_task=per_task, unit=unit),
    ]


def _pair_ratio(key):
    return lambda m: _ratio(m, key + ".stdlib", key + ".nativepool")


register_section(Section(
    key="sync",
    title="synchronization objects",
    describe=lambda s: (
        "uncontended acquire();release(): (Bounded)Semaphore(1) x%s, "
        "Lock (also `with`), RLock x%s; Event, Condition, Queue ping-pong "
        "and Barrier(2) rounds, 2 threads, x%s; %d threads x%s `counter += 1`; "
        "queues 1 producer -> 1 consumer x%s items"
        % (format(s["n_sem"], ","), format(s["n_lock"], ","),
           format(s["n_pingpong"], ","), s["n_threads"],
           format(s["n_incr"], ","), format(s["n_queue"], ","))),
    rows=(
        _pair_rows("sem", "threading.Semaphore: acquire(); release()",
                   "Semaphore", "nativepool.Semaphore: acquire(); release()",
                   lambda s: bench_acquire_release(
                       _semaphore_factory(threading.Semaphore), s["n_sem"]),
                   lambda cls, s: bench_acquire_release(
                       _semaphore_factory(cls), s["n_sem"]),
                   "n_sem", "us/pair")
        + _pair_rows("bsem", "threading.BoundedSemaphore: acquire(); release()",
                     "BoundedSemaphore",
                     "nativepool.BoundedSemaphore: acquire(); release()",
                     lambda s: bench_acquire_release(
                         _semaphore_factory(threading.BoundedSemaphore),
                         s["n_sem"]),
                     lambda cls, s: bench_acquire_release(
                         _semaphore_factory(cls), s["n_sem"]),
                     "n_sem", "us/pair")
        + _pair_rows("lock", "threading.Lock: acquire(); release()",
                     "Lock", "nativepool.Lock: acquire(); release()",
                     lambda s: bench_acquire_release(threading.Lock, s["n_lock"]),
                     lambda cls, s: bench_acquire_release(cls, s["n_lock"]),
                     "n_lock", "us/pair")
        + _pair_rows("lock_with", "threading.Lock: with lock: pass",
                     "Lock", "nativepool.Lock: with lock: pass",
                     lambda s: bench_with_block(threading.Lock, s["n_lock"]),
                     lambda cls, s: bench_with_block(cls, s["n_lock"]),
                     "n_lock", "us/pair")
        + _pair_rows("rlock", "threading.RLock: acquire(); release()",
                     "RLock", "nativepool.RLock: acquire(); release()",
                     lambda s: bench_acquire_release(threading.RLock, s["n_lock"]),
                     lambda cls, s: bench_acquire_release(cls, s["n_lock"]),
                     "n_lock", "us/pair")
        + _pair_rows("event", "threading.Event: 2-thread ping-pong",
                     "Event", "nativepool.Event: 2-thread ping-pong",
                     lambda s: bench_event_pingpong(threading.Event,
                                                    s["n_pingpong"]),
                     lambda cls, s: bench_event_pingpong(cls, s["n_pingpong"]),
                     "n_pingpong", "us/rtrip")
        + _pair_rows("counter", "threading.Lock: with lock: counter += 1",
                     "AtomicInt", "nativepool.AtomicInt: counter += 1",
                     lambda s: bench_counter_race(s["n_threads"], s["n_incr"],
                                                  lock_factory=threading.Lock),
                     lambda cls, s: bench_counter_race(s["n_threads"],
                                                       s["n_incr"],
                                                       atomic_cls=cls),
                     _n_increments, "us/incr")
        + _pair_rows("cond", "threading.Condition: 2-thread ping-pong",
                     "Condition", "nativepool.Condition: 2-thread ping-pong",
                     lambda s: bench_condition_pingpong(threading.Condition,
                                                        s["n_pingpong"]),
                     lambda cls, s: bench_condition_pingpong(cls, s["n_pingpong"]),
                     "n_pingpong", "us/rtrip")
        + _pair_rows("barrier", "threading.Barrier(2): rounds",
                     "Barrier", "nativepool.Barrier(2): rounds",
                     lambda s: bench_barrier_rounds(threading.Barrier,
                                                    s["n_pingpong"]),
                     lambda cls, s: bench_barrier_rounds(cls, s["n_pingpong"]),
                     "n_pingpong", "us/round")
        + _pair_rows("queue", "queue.Queue: 1 producer -> 1 consumer",
                     "Queue", "nativepool.Queue: 1 producer -> 1 consumer",
                     lambda s: bench_queue_transfer(queue.Queue, s["n_queue"]),
                     lambda cls, s: bench_queue_transfer(cls, s["n_queue"]),
                     "n_queue", "us/item")
        + _pair_rows("squeue", "queue.SimpleQueue: 1 producer -> 1 consumer",
                     "SimpleQueue",
                     "nativepool.SimpleQueue: 1 producer -> 1 consumer",
                     lambda s: bench_queue_transfer(queue.SimpleQueue,
                                                    s["n_queue"]),
                     lambda cls, s: bench_queue_transfer(cls, s["n_queue"]),
                     "n_queue", "us/item")
        + _pair_rows("queue_pp", "queue.Queue: 2-thread ping-pong",
                     "Queue", "nativepool.Queue: 2-thread ping-pong",
                     lambda s: bench_queue_pingpong(queue.Queue, s["n_pingpong"]),
                     lambda cls, s: bench_queue_pingpong(cls, s["n_pingpong"]),
                     "n_pingpong", "us/rtrip")
    ),
    sizes_full={"n_sem": 200000, "n_lock": 1000000, "n_pingpong": 20000,
                "n_threads": 5, "n_incr": 100000, "n_queue": 200000},
    sizes_quick={"n_sem": 40000, "n_lock": 200000, "n_pingpong": 4000,
                 "n_threads": 5, "n_incr": 20000, "n_queue": 40000},
    unit="us/op",
    notes=_counter_notes,
    targets=[
        Target("sync.sem", ">=5x faster than threading.Semaphore",
               _pair_ratio("sem"), ">=", 5.0, _fmt_times,
               row="sem.nativepool", column="ratio"),
        Target("sync.bsem", ">=5x faster than threading.BoundedSemaphore",
               _pair_ratio("bsem"), ">=", 5.0, _fmt_times,
               row="bsem.nativepool", column="ratio"),
        Target("sync.lock", "no slower than threading.Lock (>=0.95x: noise "
               "margin)", _pair_ratio("lock"), ">=", 0.95, _fmt_times,
               row="lock.nativepool", column="ratio"),
        Target("sync.lock_with", "`with lock:` no slower than threading.Lock "
               "(>=0.95x: noise margin)", _pair_ratio("lock_with"), ">=", 0.95,
               _fmt_times, row="lock_with.nativepool", column="ratio"),
        Target("sync.rlock", "no slower than threading.RLock (>=0.95x: noise "
               "margin)", _pair_ratio("rlock"), ">=", 0.95, _fmt_times,
               row="rlock.nativepool", column="ratio"),
        Target("sync.event", ">=1.5x faster Event ping-pong round trip",
               _pair_ratio("event"), ">=", 1.5, _fmt_times,
               row="event.nativepool", column="ratio"),
        Target("sync.cond", ">=1.5x faster Condition ping-pong round trip",
               _pair_ratio("cond"), ">=", 1.5, _fmt_times,
               row="cond.nativepool", column="ratio"),
        Target("sync.barrier", ">=1.5x faster Barrier(2) round",
               _pair_ratio("barrier"), ">=", 1.5, _fmt_times,
               row="barrier.nativepool", column="ratio"),
        Target("sync.queue", ">=10x faster Queue 1 producer -> 1 consumer",
               _pair_ratio("queue"), ">=", 10.0, _fmt_times,
               row="queue.nativepool", column="ratio"),
        Target("sync.squeue", "SimpleQueue at least as fast as queue.SimpleQueue "
               "(>=0.95x: noise margin)", _pair_ratio("squeue"), ">=", 0.95,
               _fmt_times, row="squeue.nativepool", column="ratio"),
        Target("sync.queue_pp", ">=1.5x faster Queue ping-pong round trip",
               _pair_ratio("queue_pp"), ">=", 1.5, _fmt_times,
               row="queue_pp.nativepool", column="ratio"),
    ],
))
