"""nativepool.AtomicInt: a 64-bit signed integer with atomic operations.

There is no stdlib equivalent: every test here is ``nativepool_only``.
"""
import operator
import os
import sys
import threading

import pytest

from conftest import np, HANG_TIMEOUT

pytestmark = pytest.mark.nativepool_only

SCALE = float(os.environ.get("NATIVEPOOL_STRESS_SCALE", "1.0"))
I64_MAX = 2 ** 63 - 1
I64_MIN = -2 ** 63


def run_threads(target, n, timeout=300, switch_interval=1e-5):
    start = threading.Barrier(n)
    errors = []

    def wrapper(idx):
        try:
            start.wait()
            target(idx)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    try:
        threads = [threading.Thread(target=wrapper, args=(i,), daemon=True)
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
    finally:
        sys.setswitchinterval(old)
    assert not any(t.is_alive() for t in threads), "threads still running"
    assert errors == [], errors


# --------------------------------------------------------------------------
# construction and accessors

def test_default_zero():
    a = np.AtomicInt()
    assert a.get() == 0
    assert a.value == 0


def test_initial_value_positional_and_keyword():
    assert np.AtomicInt(42).get() == 42
    assert np.AtomicInt(value=-7).get() == -7
    assert np.AtomicInt(True).get() == 1  # bool is an int


def test_get_set():
    a = np.AtomicInt(1)
    assert a.set(99) is None
    assert a.get() == 99
    assert type(a.get()) is int
    a.set(-5)
    assert a.value == -5
    assert type(a.value) is int


def test_add_returns_new_value():
    a = np.AtomicInt(10)
    assert a.add(5) == 15
    assert a.add(-20) == -5
    assert a.add(0) == -5
    assert a.get() == -5


def test_inc_dec_return_new_value():
    a = np.AtomicInt(0)
    assert a.inc() == 1
    assert a.inc() == 2
    assert a.dec() == 1
    assert a.dec() == 0
    assert a.dec() == -1
    assert a.get() == -1


def test_exchange_returns_old_value():
    a = np.AtomicInt(3)
    assert a.exchange(8) == 3
    assert a.get() == 8
    assert a.exchange(-1) == 8
    assert a.get() == -1


def test_compare_exchange():
    a = np.AtomicInt(5)
    assert a.compare_exchange(4, 100) is False
    assert a.get() == 5
    assert a.compare_exchange(5, 100) is True
    assert a.get() == 100
    assert a.compare_exchange(5, 7) is False
    assert a.get() == 100


def test_int_and_index():
    a = np.AtomicInt(2)
    assert int(a) == 2 and type(int(a)) is int
    assert operator.index(a) == 2
    assert [10, 20, 30][a] == 30
    assert list(range(a)) == [0, 1]
    assert "abcd"[a:] == "cd"
    a.set(-1)
    assert int(a) == -1
    assert [10, 20, 30][a] == 30


def test_comparisons_with_ints():
    a = np.AtomicInt(5)
    assert a == 5 and 5 == a
    assert not (a == 6)
    assert a != 6 and not (a != 5)
    assert a < 6 and not (a < 5) and not (a < 4)
    assert a <= 5 and a <= 6 and not (a <= 4)
    assert a > 4 and not (a > 5)
    assert a >= 5 and not (a >= 6)
    assert 4 < a and 6 > a
    a.set(-3)
    assert a == -3 and a < 0
    assert sorted([3, np.AtomicInt(1), 2], key=int)[0] == 1


def test_equality_with_non_int_is_false_not_error():
    a = np.AtomicInt(5)
    assert (a == "5") is False
    assert (a != "5") is True
    assert (a == None) is False  # noqa: E711
    with pytest.raises(TypeError):
        a < "5"


def test_iadd_is_in_place_and_same_object():
    a = np.AtomicInt(1)
    b = a
    a += 5
    assert a is b
    assert type(a) is np.AtomicInt
    assert b.get() == 6
    a += -10
    assert a is b
    assert b.get() == -4


def test_repr_shows_value():
    a = np.AtomicInt(123456789)
    assert "123456789" in repr(a), repr(a)
    a.set(-42)
    r = repr(a)
    assert "-42" in r and "123456789" not in r, r


# --------------------------------------------------------------------------
# range and types

def test_extremes_allowed():
    a = np.AtomicInt(I64_MAX)
    assert a.get() == I64_MAX
    b = np.AtomicInt(I64_MIN)
    assert b.get() == I64_MIN
    a.set(I64_MIN)
    assert a.get() == I64_MIN
    assert a.exchange(I64_MAX) == I64_MIN
    assert a.compare_exchange(I64_MAX, I64_MIN) is True
    assert a.get() == I64_MIN


@pytest.mark.parametrize("v", [I64_MAX + 1, I64_MIN - 1, 2 ** 64, -2 ** 100])
def test_out_of_range_is_overflowerror(v):
    with pytest.raises(OverflowError):
        np.AtomicInt(v)
    a = np.AtomicInt(7)
    for call in (lambda: a.set(v), lambda: a.add(v), lambda: a.exchange(v),
                 lambda: a.compare_exchange(7, v), lambda: a.compare_exchange(v, 1)):
        with pytest.raises(OverflowError):
            call()
    assert a.get() == 7  # nothing changed


def test_result_overflow_is_overflowerror_and_leaves_value():
    # "values outside the 64-bit signed range -> OverflowError": a result that
    # would leave the range must not wrap around silently
    a = np.AtomicInt(I64_MAX)
    with pytest.raises(OverflowError):
        a.inc()
    assert a.get() == I64_MAX
    with pytest.raises(OverflowError):
        a.add(1)
    assert a.get() == I64_MAX
    with pytest.raises(OverflowError):
        a += 1
    assert a.get() == I64_MAX
    b = np.AtomicInt(I64_MIN)
    with pytest.raises(OverflowError):
        b.dec()
    with pytest.raises(OverflowError):
        b.add(-1)
    assert b.get() == I64_MIN


@pytest.mark.parametrize("bad", [1.0, 1.5, "1", None, b"1", [1], 3 + 0j])
def test_non_int_is_typeerror(bad):
    with pytest.raises(TypeError):
        np.AtomicInt(bad)
    a = np.AtomicInt(7)
    for call in (lambda: a.set(bad), lambda: a.add(bad), lambda: a.exchange(bad),
                 lambda: a.compare_exchange(bad, 1), lambda: a.compare_exchange(7, bad)):
        with pytest.raises(TypeError):
            call()
    assert a.get() == 7


def test_iadd_non_int_is_typeerror_and_keeps_object():
    a = np.AtomicInt(7)
    b = a
    with pytest.raises(TypeError):
        a += 1.5
    assert a is b
    assert a.get() == 7


# --------------------------------------------------------------------------
# races

counter = None


@pytest.mark.stress
def test_classic_race_global_iadd():
    global counter
    counter = np.AtomicInt(0)
    original = counter

    def work(_):
        global counter
        for _ in range(100000):
            counter += 1

    run_threads(work, 5)
    assert counter is original
    assert counter.get() == 500000
    assert counter == 500000


@pytest.mark.stress
def test_race_inc_dec_add():
    a = np.AtomicInt(0)
    n = max(2000, int(50000 * SCALE))

    def work(idx):
        if idx % 2 == 0:
            for _ in range(n):
                a.inc()
                a.add(3)
        else:
            for _ in range(n):
                a.dec()
                a.add(-1)

    run_threads(work, 4)
    # 2 threads each +4 per round, 2 threads each -2 per round
    assert a.get() == 2 * n * 4 - 2 * n * 2


@pytest.mark.stress
def test_race_compare_exchange_loop():
    a = np.AtomicInt(0)
    n = max(2000, int(30000 * SCALE))
    failures = np.AtomicInt(0)

    def work(_):
        for _ in range(n):
            while True:
                cur = a.get()
                if a.compare_exchange(cur, cur + 1):
                    break
                failures.inc()

    run_threads(work, 4)
    assert a.get() == 4 * n


@pytest.mark.stress
def test_race_exchange_hands_out_each_token_once():
    # every value put in by exchange() is taken out exactly once
    a = np.AtomicInt(0)
    n = max(2000, int(20000 * SCALE))
    seen = [[] for _ in range(4)]

    def work(idx):
        out = seen[idx]
        for i in range(n):
            token = (idx + 1) * 10 ** 7 + i + 1
            out.append(a.exchange(token))

    run_threads(work, 4)
    taken = [v for lst in seen for v in lst] + [a.get()]
    put = [0] + [(idx + 1) * 10 ** 7 + i + 1 for idx in range(4) for i in range(n)]
    assert sorted(taken) == sorted(put)
