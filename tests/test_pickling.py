"""nativepool._pickling: how a ProcessPool task is pickled for its worker
(private).

In-process tests put a stand-in module at sys.modules["__main__"] (with or
without a file) and define functions in it.  The round trips that matter
run in two fresh interpreters: a ``python -c`` parent, whose __main__ has
no file, pickles tasks of functions defined in its __main__; another
``python -c`` loads them with a plain pickle.loads, as a worker does,
without those functions in its own __main__, and calls them."""
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import types

import pytest

pytestmark = pytest.mark.nativepool_only

pk = pytest.importorskip("nativepool._pickling")

try:
    import cloudpickle
except ImportError:
    cloudpickle = None

needs_cloudpickle = pytest.mark.skipif(cloudpickle is None,
                                       reason="cloudpickle is not installed")

# Where the nativepool under test lives (site-packages in CI, python/ in an
# in-place build): subprocesses must import that one, built.
import nativepool as _np  # noqa: E402
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(_np.__file__)))


def add(a, b=0):
    return a + b


class Box:
    def __init__(self, value):
        self.value = value


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(params=["cloudpickle", "builtin"])
def mode(request, monkeypatch):
    """Run the test with cloudpickle, then as if it were not installed."""
    monkeypatch.delenv("NATIVEPOOL_NO_CLOUDPICKLE", raising=False)
    if request.param == "cloudpickle":
        if cloudpickle is None:
            pytest.skip("cloudpickle is not installed")
    else:
        monkeypatch.setattr(pk, "_cloudpickle", None)
    return request.param


@pytest.fixture
def with_cloudpickle(monkeypatch):
    if cloudpickle is None:
        pytest.skip("cloudpickle is not installed")
    monkeypatch.delenv("NATIVEPOOL_NO_CLOUDPICKLE", raising=False)


@pytest.fixture
def no_cloudpickle(monkeypatch):
    monkeypatch.delenv("NATIVEPOOL_NO_CLOUDPICKLE", raising=False)
    monkeypatch.setattr(pk, "_cloudpickle", None)


@pytest.fixture
def fake_main(monkeypatch):
    """make(file=None, spec_name=None): a new module as __main__ (restored
    at teardown); make(...).define(source) runs source in it."""
    monkeypatch.setattr(pk, "_main_in_workers", pk._main_in_workers)

    def make(file=None, spec_name=None):
        main = types.ModuleType("__main__")
        if file is not None:
            main.__file__ = file
        main.__spec__ = (types.SimpleNamespace(name=spec_name)
                         if spec_name is not None else None)

        def define(source):
            exec(textwrap.dedent(source), main.__dict__)
            return main

        main.define = define
        monkeypatch.setitem(sys.modules, "__main__", main)
        return main

    return make


# --------------------------------------------------------------------------
# subprocess helpers

def python(code=None, args=(), stdin=None, env=None):
    """Run code with ``python -c`` (a __main__ without a file), or python
    with args only, nativepool importable; return its stdout, failing the
    test on a non-zero exit."""
    argv = [sys.executable] + (["-c", textwrap.dedent(code)] if code else [])
    e = dict(os.environ)
    e.pop("NATIVEPOOL_NO_CLOUDPICKLE", None)
    e["PYTHONPATH"] = os.pathsep.join(
        [PYTHON_DIR] + [p for p in [e.get("PYTHONPATH")] if p])
    e.update(env or {})
    try:
        proc = subprocess.run(argv + list(args), input=stdin,
                              capture_output=True, text=True, timeout=120,
                              env=e)
    except subprocess.TimeoutExpired as exc:
        pytest.fail("subprocess hung\nstdout:\n%s\nstderr:\n%s"
                    % (exc.stdout, exc.stderr))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# The parent: runs the definitions, then prints each task of TASKS as one
# base64 line of _pickling.dumps, or "error <type>: <message>".
SENDER = """
import base64, sys
from nativepool import _pickling
%s
for task in TASKS:
    try:
        data = _pickling.dumps(task)
    except Exception as exc:
        print("error", type(exc).__name__ + ":", exc)
    else:
        print(base64.b64encode(data).decode())
"""

# The worker: a fresh __main__ and a plain pickle.loads; prints one JSON line
# per task: the result, and whether the bytes use cloudpickle.  With
# "blocked" as its argument, importing cloudpickle fails there.
RECEIVER = """
import base64, json, pickle, sys
if "blocked" in sys.argv:
    sys.modules["cloudpickle"] = None
for line in sys.stdin:
    data = base64.b64decode(line)
    fn, args, kwargs = pickle.loads(data)
    print(json.dumps([fn(*args, **kwargs), b"cloudpickle" in data]))
"""


def send(definitions, cloud):
    """The lines SENDER prints for definitions (which set TASKS); cloud:
    whether the parent may use cloudpickle."""
    env = {} if cloud else {"NATIVEPOOL_NO_CLOUDPICKLE": "1"}
    return python(SENDER % textwrap.dedent(definitions), env=env).splitlines()


def receive(lines, cloud):
    """[(result, used_cloudpickle)] of running the tasks in a fresh
    interpreter (one without cloudpickle unless cloud)."""
    out = python(RECEIVER, args=[] if cloud else ["blocked"],
                 stdin="\n".join(lines) + "\n")
    return [tuple(json.loads(line)) for line in out.splitlines()]


# --------------------------------------------------------------------------
# rule 1: by reference

@pytest.mark.parametrize("task", [
    (add, (1,), {}),
    (add, ("a", "b"), {}),
    (add, (1,), {"b": 2}),
    (len, ([1, 2, 3],), {}),
    (add, (Box(3), None), {}),
    (os.path.join, ("a", "b"), {}),
])
def test_importable_functions_pickle_as_pickle_does(mode, task):
    data = pk.dumps(task)
    assert data == pickle.dumps(task, protocol=5)
    assert b"cloudpickle" not in data and b"_make_function" not in data
    assert pickle.loads(data)[0] is task[0]


def test_functions_in_arguments_are_by_reference_too(mode):
    data = pk.dumps((map, (add, [1, 2], [3, 4]), {}))
    fn, args, kwargs = pickle.loads(data)
    assert fn is map and args[0] is add
    assert list(fn(*args)) == [4, 6]


def test_main_functions_by_reference_when_workers_import_main(mode, fake_main):
    main = fake_main(file="/somewhere/script.py")
    main.define("def double(x):\n    return 2 * x\n")
    task = (main.double, (21,), {})
    data = pk.dumps(task)
    assert data == pickle.dumps(task, protocol=5)
    assert b"__main__" in data and b"double" in data
    assert pickle.loads(data)[0] is main.double


def test_by_reference_kept_when_the_slow_path_runs(with_cloudpickle, fake_main):
    # A nested function in the arguments sends the task to cloudpickle's
    # pickler; the script's function and the module's still go by name.
    main = fake_main(file="/somewhere/script.py")
    main.define("def double(x):\n    return 2 * x\n")

    def nested(x):
        return x + 1

    data = pk.dumps((main.double, (nested, add), {}))
    fn, (loaded_nested, loaded_add), _ = pickle.loads(data)
    assert fn is main.double and loaded_add is add
    assert loaded_nested is not nested and loaded_nested(1) == 2


@pytest.mark.parametrize("file, spec_name, expected", [
    ("/home/u/script.py", None, True),      # python script.py
    (None, "pkg.tool", True),               # python -m pkg.tool: imported again
    ("/home/u/pkg/__main__.py", "pkg.__main__", False),   # python -m pkg
    ("/home/u/app.pyz/__main__.py", "__main__", False),    # zipapp
    ("<stdin>", None, False),                # python - < script
    (None, None, False),                     # python -c, REPL, notebook
])
def test_which_main_the_workers_import(fake_main, file, spec_name, expected):
    fake_main(file=file, spec_name=spec_name)
    assert pk._workers_have_main() is expected


# --------------------------------------------------------------------------
# rule 3: top-level functions of a file-less __main__, without cloudpickle

NOTEBOOK = """
import math
import xml.dom.minidom
SCALE = 3
ITEMS = [1, 2, 3]

def is_even(n):
    return True if n == 0 else is_odd(n - 1)

def is_odd(n):
    return False if n == 0 else is_even(n - 1)

def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)

def area(r, digits=2, *, scale=None):
    "Area of a circle, times SCALE."
    return round(math.pi * r * r * (scale or SCALE), digits)

def total(extra=0):
    return sum(ITEMS) + extra

def parities(n, *, key=is_even):
    return [key(i) for i in range(n)]

def tag(text):
    return xml.dom.minidom.parseString(text).documentElement.tagName
"""


def test_notebook_function_by_value(no_cloudpickle, fake_main):
    main = fake_main().define(NOTEBOOK)
    main.area.note = "kept"
    main.total.__doc__ = "set after the def"
    data = pk.dumps((main.area, (2.0,), {"scale": 1}))
    assert b"_make_function" in data and b"cloudpickle" not in data
    fn, args, kwargs = pickle.loads(data)
    assert fn is not main.area
    assert fn(*args, **kwargs) == round(math.pi * 4, 2)
    assert fn(1.0) == round(math.pi * 3, 2)           # the global SCALE
    assert (fn.__name__, fn.__qualname__, fn.__module__) == ("area", "area", "__main__")
    assert fn.__doc__ == "Area of a circle, times SCALE."
    assert fn.__defaults__ == (2,) and fn.__kwdefaults__ == {"scale": None}
    assert fn.__dict__ == {"note": "kept"}
    assert fn.__globals__ is not main.__dict__
    assert fn.__globals__["__name__"] == "__main__"
    assert fn.__globals__["math"] is sys.modules["math"]
    assert "ITEMS" not in fn.__globals__                # only what it names
    assert pickle.loads(pk.dumps(main.total)).__doc__ == "set after the def"


def test_notebook_recursion_and_shared_globals(no_cloudpickle, fake_main):
    main = fake_main().define(NOTEBOOK)
    data = pk.dumps((main.parities, (5,), {}))
    fn, args, _ = pickle.loads(data)
    assert fn(*args) == [True, False, True, False, True]
    # is_even (a default) and is_odd (its global) came along, by value, and
    # call each other through the one new globals dict.
    even = fn.__kwdefaults__["key"]
    assert even is not main.is_even
    assert even.__globals__ is fn.__globals__
    assert even.__globals__["is_odd"].__globals__ is fn.__globals__
    assert even.__globals__["is_odd"](7) is True
    fact = pickle.loads(pk.dumps((main.fact, (10,), {})))[0]
    assert fact(10) == 3628800 and fact.__globals__["fact"] is fact


def test_notebook_globals_are_a_snapshot(no_cloudpickle, fake_main):
    main = fake_main().define(NOTEBOOK)
    data = pk.dumps((main.total, (), {}))
    main.ITEMS.append(100)
    fn = pickle.loads(data)[0]
    assert fn() == 6 and main.total() == 106
    # and a later dumps sends the new value
    assert pickle.loads(pk.dumps((main.total, (), {})))[0]() == 106


def test_notebook_submodule_reached_as_attribute(no_cloudpickle, fake_main):
    main = fake_main().define(NOTEBOOK)
    data = pk.dumps((main.tag, ("<root/>",), {}))
    fn, args, _ = pickle.loads(data)
    assert fn(*args) == "root"
    assert b"xml.dom.minidom" in data


def test_notebook_function_in_arguments(no_cloudpickle, fake_main):
    main = fake_main().define(NOTEBOOK)
    fn, args, _ = pickle.loads(pk.dumps((map, (main.fact, [3, 4]), {})))
    assert list(fn(*args)) == [6, 24]


def test_notebook_functions_with_cloudpickle(with_cloudpickle, fake_main):
    main = fake_main().define(NOTEBOOK)
    data = pk.dumps((main.parities, (3,), {}))
    assert b"cloudpickle" in data
    fn, args, _ = pickle.loads(data)
    assert fn is not main.parities and fn(*args) == [True, False, True]


# --------------------------------------------------------------------------
# rule 2 and 4: lambdas, nested functions, closures

def make_adder(n):
    def adder(x):
        return x + n
    return adder


def nested_functions():
    def inner(x):
        return x * 3
    return [lambda x: x - 1, inner, make_adder(10)]


@pytest.mark.parametrize("index, expected", [(0, 4), (1, 15), (2, 15)])
def test_lambdas_and_closures_with_cloudpickle(with_cloudpickle, index, expected):
    fn = nested_functions()[index]
    data = pk.dumps((fn, (5,), {}))
    assert b"cloudpickle" in data
    loaded, args, _ = pickle.loads(data)
    assert loaded is not fn and loaded(*args) == expected


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("where", ["fn", "args", "kwargs"])
def test_lambdas_and_closures_without_cloudpickle(no_cloudpickle, index, where):
    fn = nested_functions()[index]
    task = {"fn": (fn, (), {}), "args": (add, (fn,), {}),
            "kwargs": (add, (), {"b": [fn]})}[where]
    with pytest.raises(pickle.PicklingError) as info:
        pk.dumps(task)
    message = str(info.value)
    assert repr(fn) in message
    assert "pip install cloudpickle" in message
    assert "top level of a module" in message


def test_environment_variable_disables_cloudpickle(monkeypatch):
    monkeypatch.setattr(pk, "_cloudpickle", pk._UNRESOLVED)
    monkeypatch.setenv("NATIVEPOOL_NO_CLOUDPICKLE", "1")
    with pytest.raises(pickle.PicklingError, match="cloudpickle"):
        pk.dumps((lambda: 1, (), {}))
    monkeypatch.setenv("NATIVEPOOL_NO_CLOUDPICKLE", "0")
    if cloudpickle is not None:
        assert pickle.loads(pk.dumps((lambda: 1, (), {})))[0]() == 1


def test_notebook_function_using_a_lambda_without_cloudpickle(no_cloudpickle, fake_main):
    main = fake_main().define("square = lambda x: x * x\n"
                              "def area(r):\n    return 3 * square(r)\n")
    with pytest.raises(pickle.PicklingError, match="cloudpickle") as info:
        pk.dumps((main.area, (2,), {}))
    assert "<lambda>" in str(info.value)


def test_function_no_longer_under_its_name_without_cloudpickle(no_cloudpickle, fake_main):
    main = fake_main(file="/somewhere/script.py")
    main.define("def f():\n    return 1\n")
    old = main.f
    main.define("def f():\n    return 2\n")      # redefined: old is not __main__.f
    with pytest.raises(pickle.PicklingError, match="cloudpickle") as info:
        pk.dumps((old, (), {}))
    assert "__main__.f" in str(info.value)


# --------------------------------------------------------------------------
# classes of a file-less __main__

CLASSES = """
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return (self.x ** 2 + self.y ** 2) ** 0.5

def norm(p):
    return p.norm()

def origin():
    return Point(0, 0).norm()
"""


@pytest.mark.parametrize("task", [
    lambda main: (main.norm, (main.Point(3, 4),), {}),     # an instance
    lambda main: (main.origin, (), {}),                    # a global
    lambda main: (add, (main.Point,), {}),                 # the class
], ids=["instance", "global", "class"])
def test_notebook_class_without_cloudpickle(no_cloudpickle, fake_main, task):
    main = fake_main().define(CLASSES)
    with pytest.raises(pickle.PicklingError) as info:
        pk.dumps(task(main))
    message = str(info.value)
    assert "Point" in message and "pip install cloudpickle" in message


def test_notebook_class_with_cloudpickle(with_cloudpickle, fake_main):
    main = fake_main().define(CLASSES)
    data = pk.dumps((main.norm, (main.Point(3, 4),), {}))
    assert b"cloudpickle" in data
    fn, args, _ = pickle.loads(data)
    assert fn(*args) == 5.0


def test_local_class_without_cloudpickle(no_cloudpickle):
    class Local:
        pass

    with pytest.raises(pickle.PicklingError, match="cloudpickle"):
        pk.dumps((add, (Local(),), {}))


# --------------------------------------------------------------------------
# other errors propagate as pickle raises them

def _generator():
    yield 1


def pickle_error(obj):
    try:
        pickle.dumps(obj, protocol=5)
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("pickle accepted %r" % (obj,))


@pytest.mark.parametrize("make", [threading.Lock, _generator],
                         ids=["lock", "generator"])
@pytest.mark.parametrize("main_kind", ["script", "notebook"])
def test_unpicklable_arguments_raise_what_pickle_raises(mode, fake_main, make, main_kind):
    main = fake_main(file="/x/script.py" if main_kind == "script" else None)
    main.define(NOTEBOOK)
    bad = make()
    expected = pickle_error(bad)
    tasks = [(add, (bad,), {}), (main.fact, (), {"n": [bad]})]
    if mode == "cloudpickle":
        tasks.append((add, (lambda: 0, bad), {}))
    for task in tasks:
        with pytest.raises(Exception) as info:
            pk.dumps(task)
        assert (type(info.value), str(info.value)) == expected


def test_too_deep_raises_recursion_error(mode):
    deep = []
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(RecursionError):
        pk.dumps((add, (deep,), {}))


# --------------------------------------------------------------------------
# across processes: a python -c parent, a fresh worker

NOTEBOOK_TASKS = NOTEBOOK + """
TASKS = [(is_even, (10,), {}), (is_odd, (7,), {}), (fact, (10,), {}),
         (area, (2.0,), {}), (area, (1.0,), {"digits": 4}),
         (total, (), {"extra": 10}), (parities, (3,), {}),
         (tag, ("<doc/>",), {})]
"""


def expected_notebook_results():
    return [True, True, 3628800, round(math.pi * 4 * 3, 2),
            round(math.pi * 3, 4), 16, [True, False, True], "doc"]


@pytest.mark.parametrize("cloud", [
    pytest.param(True, id="cloudpickle", marks=needs_cloudpickle),
    pytest.param(False, id="builtin")])
def test_notebook_functions_across_processes(cloud):
    lines = send(NOTEBOOK_TASKS, cloud)
    assert not [line for line in lines if line.startswith("error")], lines
    results = receive(lines, cloud)
    assert [r for r, _ in results] == expected_notebook_results()
    assert all(used is cloud for _, used in results)


def test_builtin_by_value_loads_where_cloudpickle_is_missing():
    # The parent has cloudpickle disabled; the worker cannot import it: the
    # payload must not need it.
    lines = send("def f(x):\n    return [x, __name__]\nTASKS = [(f, (1,), {})]\n",
                 cloud=False)
    assert receive(lines, cloud=False) == [([1, "__main__"], False)]


@needs_cloudpickle
def test_lambdas_and_closures_across_processes():
    lines = send("""
        def make_adder(n):
            return lambda x: x + n
        def outer():
            def inner(x):
                return x * 2
            return inner
        TASKS = [(lambda x: x - 1, (5,), {}), (make_adder(10), (5,), {}),
                 (outer(), (5,), {}), (sorted, ([3, 1, 2],), {"key": lambda v: -v})]
    """, cloud=True)
    assert [r for r, _ in receive(lines, cloud=True)] == [4, 15, 10, [3, 2, 1]]


def test_lambdas_across_processes_without_cloudpickle():
    lines = send("""
        def make_adder(n):
            return lambda x: x + n
        def top(x):
            return x
        TASKS = [(lambda x: x - 1, (5,), {}), (make_adder(10), (5,), {}),
                 (top, (7,), {})]
    """, cloud=False)
    assert len(lines) == 3
    # The nested one is a local object: an AttributeError too, as pickle's
    # own error for it is before 3.14.
    local = "LocalObjectError" if sys.version_info < (3, 14) else "PicklingError"
    for line, name in zip(lines[:2], ["PicklingError", local]):
        assert line.startswith("error %s: cannot send <function" % name)
        assert "pip install cloudpickle" in line
    assert receive(lines[2:], cloud=False) == [(7, False)]


@pytest.mark.parametrize("cloud", [
    pytest.param(True, id="cloudpickle", marks=needs_cloudpickle),
    pytest.param(False, id="builtin")])
def test_notebook_class_across_processes(cloud):
    lines = send(CLASSES + "TASKS = [(norm, (Point(3, 4),), {}), (origin, (), {})]\n",
                 cloud)
    if cloud:
        assert receive(lines, cloud) == [(5.0, True), (0.0, True)]
    else:
        assert len(lines) == 2
        for line in lines:
            assert line.startswith("error PicklingError: cannot send <class '__main__.Point'>")
            assert "pip install cloudpickle" in line


def test_script_main_pickles_by_reference(tmp_path):
    # A script file: the workers run it again, so its functions go by name.
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import pickle
        from nativepool import _pickling
        def f(x):
            return x
        task = (f, (1,), {})
        data = _pickling.dumps(task)
        print(data == pickle.dumps(task, protocol=5), b"__main__" in data,
              b"cloudpickle" in data, b"_make_function" in data)
    """))
    out = python(args=[str(script)])
    assert out.split() == ["True", "True", "False", "False"]


# --------------------------------------------------------------------------
# results that name a notebook's functions and classes

NOTEBOOK_RESULTS = """
import nativepool

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

class NotebookError(Exception):
    pass

def make(x):
    return Point(x, -x)

def get_class():
    return Point

def raise_it():
    raise NotebookError("from the worker")

def square(x):
    return x * x

def get_function():
    return square

with nativepool.ProcessPool(1) as pool:
    p = pool.submit(make, 3).result()
    print(type(p) is Point, p.x, p.y)
    print(pool.submit(get_class).result() is Point)
    try:
        pool.submit(raise_it).result()
    except NotebookError as exc:
        print("caught", exc)
    f = pool.submit(get_function).result()
    print(f is square, f(4))
"""


@needs_cloudpickle
def test_notebook_objects_come_back_as_the_notebooks_own():
    """A notebook's class (by value, with cloudpickle) whose instance, the
    class itself, an exception of it or a notebook function is the result:
    the parent gets its own objects back, not copies the worker made."""
    out = python(NOTEBOOK_RESULTS)
    assert out.splitlines() == ["True 3 -3", "True", "caught from the worker",
                                "True 16"]


def test_notebook_function_comes_back_as_the_notebooks_own_without_cloudpickle():
    code = NOTEBOOK_RESULTS.split("with nativepool")[0] + textwrap.dedent("""
        with nativepool.ProcessPool(1) as pool:
            f = pool.submit(get_function).result()
            print(f is square, f(4))
    """)
    assert python(code, env={"NATIVEPOOL_NO_CLOUDPICKLE": "1"}).split() == ["True", "16"]
