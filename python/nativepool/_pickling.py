"""How a ProcessPool task travels to its worker: dumps((fn, args, kwargs))
(private).

The worker reads the bytes with a plain pickle.loads.  It has the same
Python and the same installed packages as the parent, but not always the
parent's __main__.  When the parent runs a script file, multiprocessing
(spawn, forkserver) runs that file again in the worker, as __mp_main__
aliased to __main__, so a function of the script pickles by reference as
usual.  When __main__ has no file (a Jupyter notebook or IPython,
``python -c``, stdin, the REPL), or is a package's __main__.py (``python
-m pkg``, a zipapp), which multiprocessing does not import again, the
worker's __main__ lacks the parent's functions, and loading a reference to
one fails with AttributeError.  Call that parent's __main__ "file-less".

A function anywhere in the task (fn, an argument, a default, a global one
of them uses) travels:

  1. by reference, as pickle does, when the worker can import it: its
     module is not a file-less __main__, its __qualname__ has no <lambda>
     or <locals>, and that name in that module is the function itself;
  2. else by value with cloudpickle, when cloudpickle is installed (the
     whole task then goes through cloudpickle's pickler, so objects shared
     between functions and arguments stay shared once loaded);
  3. else, for a plain function at the top level of a file-less __main__
     (a notebook cell's ``def``: no closure, __qualname__ == __name__), by
     value with the small mechanism below: its code object (marshal: the
     worker runs the same Python), names, defaults, __doc__ and __dict__,
     and the globals its code names: modules by name (the worker imports
     them), other such functions by value again, anything else by plain
     pickling.  The rebuilt functions share one new globals dict per
     __main__ namespace and dumps call.  Annotations are left out: they
     may name classes the worker cannot have;
  4. else pickle.PicklingError, saying what to do (a lambda, a nested
     function or a closure without cloudpickle).

A class defined in a file-less __main__ (or inside a function) goes by
value with cloudpickle and is rule 4's PicklingError without it; an
instance of one too, since pickling an instance pickles its class.  Any
other error raised while pickling (a lock, a generator: TypeError)
propagates unchanged, so the pool fails that one task with it.

The fast path is a plain pickle.dumps, kept when its bytes cannot hold a
reference the worker lacks: when they name no __main__ at all, or when
__main__ is not file-less.  Only a failure, or a reference to a file-less
__main__, takes the slower pickler.

A result goes back with dumps_result (in the worker): plain pickle, except
that a function or class of the parent's file-less __main__ (which came by
value) goes back by reference to the parent's __main__, so that the parent
gets its own class and functions back, not copies.

cloudpickle is imported on first need.  NATIVEPOOL_NO_CLOUDPICKLE=1 in the
environment (read at each use; empty or 0 means unset) makes this module
behave as if cloudpickle were not installed; tests do the same in-process
by setting ``_cloudpickle`` to None.
"""
import builtins
import importlib
import io
import marshal
import os
import pickle
import sys
import types

__all__ = ["dumps", "dumps_result", "large_bytes", "OOB_MIN"]

PROTOCOL = 5

_FunctionType = types.FunctionType
_modules = sys.modules
_plain_dumps = pickle.dumps

# The cloudpickle module, None when it is not installed, _UNRESOLVED until
# first needed (importing it costs milliseconds that most programs never
# need to pay).  Tests set it to None (monkeypatch.setattr) to run the
# "cloudpickle is not installed" rules.
_UNRESOLVED = object()
_cloudpickle = _UNRESOLVED

# The __main__ module once seen to be one the workers import too
# (_UNRESOLVED before: never None, which a missing __main__ would match).
# The fast path compares identities rather than looking at __main__ on
# every task; a new __main__ (runpy, a test's stand-in) is looked at again.
_main_in_workers = _UNRESOLVED


def dumps(obj, buffers=None):
    """pickle ``obj`` (a task: (fn, args, kwargs)) for a worker process,
    protocol 5, by the rules of the module docstring.  With a list as
    ``buffers``, the pickle buffers of at least OOB_MIN bytes (numpy
    arrays, large_bytes()) go out of band: appended to the list, in the
    order pickle.loads(..., buffers=) wants them back."""
    callback = None if buffers is None else buffer_callback(buffers)
    try:
        data = _plain_dumps(obj, PROTOCOL, buffer_callback=callback)
    except Exception:
        # A lambda, a nested function, an unpicklable argument: the full
        # pickler decides (and raises the same error for the last).  It is
        # called outside this handler so that its error does not carry
        # this one as __context__.
        pass
    else:
        # Every reference pickle writes spells its module out at least once
        # (protocol 5: the module name is a string before STACK_GLOBAL), so
        # bytes without "__main__" reference nothing the worker could lack.
        # partition, not find or in: find parses its optional arguments and
        # in first tries its operand as an int, each costing more than the
        # search of a small pickle; without a match partition returns data
        # itself, not a copy.
        if (_modules.get("__main__") is _main_in_workers
                or not data.partition(b"__main__")[1]
                or _workers_have_main()):
            return data
    if buffers:
        del buffers[:]    # the slow pickler starts over
    return _dumps_slow(obj, callback)


def _dumps_slow(obj, callback):
    cloudpickle = _get_cloudpickle()
    buf = io.BytesIO()
    if cloudpickle is None:
        _Pickler(buf, callback).dump(obj)
    else:
        _cloud_pickler(cloudpickle)(buf, callback).dump(obj)
    return buf.getvalue()


# --------------------------------------------------------------------------
# results: what a task sends back

def dumps_result(obj, buffers=None):
    """pickle a task's result (or exception) in the worker, for the parent.
    Plain pickle, except that a function or class the parent's __main__
    sent by value (rule 2 or 3: a notebook's), which the worker's __main__
    lacks, goes back by reference to the parent's __main__: the parent gets
    its own object again (a notebook class's instance is an instance of the
    notebook's class).  ``buffers``: as for dumps()."""
    callback = None if buffers is None else buffer_callback(buffers)
    try:
        return _plain_dumps(obj, PROTOCOL, buffer_callback=callback)
    except Exception:
        pass   # see dumps(): the retry raises its own error, if any
    if buffers:
        del buffers[:]
    buf = io.BytesIO()
    _ResultPickler(buf, PROTOCOL, buffer_callback=callback).dump(obj)
    return buf.getvalue()


class _ResultPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if ((type(obj) is _FunctionType or isinstance(obj, type))
                and getattr(obj, "__module__", None) == "__main__"):
            qualname = obj.__qualname__
            if "<" not in qualname and _lookup("__main__", qualname) is not obj:
                return (_main_attr, (qualname,))
        return NotImplemented


def _main_attr(qualname):
    """The object named qualname in this process's __main__ (the parent's:
    where a result naming a notebook's function or class is loaded)."""
    obj = _modules["__main__"]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------
# out-of-band buffers

# A buffer this large crosses in shared memory (a memfd the worker maps,
# _process.py) rather than inside the pickle: below it, creating, filling
# and mapping a memfd costs more than copying the bytes through the channel.
OOB_MIN = 256 * 1024


def buffer_callback(buffers):
    def callback(pb):
        # True: keep it in band.  raw() fails for a non-contiguous buffer,
        # which cannot be one flat segment anyway.
        try:
            if pb.raw().nbytes < OOB_MIN:
                return True
        except BufferError:
            return True
        buffers.append(pb)
        return False
    return callback


class LargeBytes:
    """A bytes or bytearray object that pickles as a pickle buffer, so that
    it can go out of band (pickle writes plain bytes in band, whatever the
    protocol).  Loaded, it is the same type and value again (one copy out
    of the buffer)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __reduce_ex__(self, protocol):
        obj = self.obj
        return (type(obj), (pickle.PickleBuffer(obj),))


def large_bytes(values):
    """``values`` (a tuple, or a dict's values) with each bytes or bytearray
    of at least OOB_MIN bytes wrapped to go out of band: a tuple, or the
    argument itself when there is none (the usual case, for the cost of
    one pass over the arguments)."""
    wrap = None
    for i, v in enumerate(values):
        if (type(v) is bytes or type(v) is bytearray) and len(v) >= OOB_MIN:
            if wrap is None:
                wrap = list(values)
            wrap[i] = LargeBytes(v)
    return values if wrap is None else tuple(wrap)


def _get_cloudpickle():
    global _cloudpickle
    if os.environ.get("NATIVEPOOL_NO_CLOUDPICKLE", "") not in ("", "0"):
        return None
    module = _cloudpickle
    if module is _UNRESOLVED:
        try:
            import cloudpickle as module
        except ImportError:
            module = None
        _cloudpickle = module
    return module


def _workers_have_main():
    """Whether the workers will have the parent's __main__, by
    multiprocessing's rules (spawn.get_preparation_data and
    _fixup_main_from_*): a script file is run again there as __mp_main__,
    ``python -m pkg.mod`` imports pkg.mod again; but a package's
    __main__.py or a zipapp (``python -m pkg``, ``python app.pyz``) is
    not, nor is a __file__ that is no file (``<stdin>``), nor is there a
    __file__ at all in a notebook, ``python -c`` or the REPL.  (A forked
    worker does have it; by value works there too.)"""
    global _main_in_workers
    main = _modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        imported = name != "__main__" and not name.endswith(".__main__")
    else:
        path = getattr(main, "__file__", None)
        imported = (isinstance(path, str) and not path.startswith("<")
                    and os.path.splitext(os.path.basename(path))[0]
                    != "ipython")
    if imported:
        _main_in_workers = main
    return imported


_workers_have_main()


# --------------------------------------------------------------------------
# which objects the worker can import by name

def _lookup(module_name, qualname):
    """The object named qualname in module_name, as pickle would find it
    (importing the module if needed), or None."""
    module = _modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:
            return None
    obj = module
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def _by_reference(obj):
    """Whether obj (a function or a class) pickles by reference (rule 1)."""
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return False
    if "<" in qualname:                 # <lambda>, <locals>
        return False
    if module_name == "__main__" and not _workers_have_main():
        return False
    return _lookup(module_name, qualname) is obj


def _is_main_function(fn):
    """Whether rule 3 sends fn by value without cloudpickle: a plain
    function at the top level of a file-less __main__."""
    return (fn.__module__ == "__main__" and fn.__closure__ is None
            and fn.__qualname__ == fn.__name__ and fn.__name__ != "<lambda>"
            and not _workers_have_main())


_NEED_CLOUDPICKLE = ("need cloudpickle (pip install cloudpickle) in the "
                     "parent and the workers")


if sys.version_info < (3, 14):
    class LocalObjectError(pickle.PicklingError, AttributeError):
        """Rule 4's error for a local object (a nested function, a closure,
        a class defined in a function): pickle itself raises AttributeError
        for one before Python 3.14 (PicklingError since), and the stdlib's
        pool fails the future with that; ours is both, so that either
        except clause catches it."""
else:
    LocalObjectError = pickle.PicklingError


def _function_error(fn):
    cls = (LocalObjectError if "<locals>" in fn.__qualname__
           else pickle.PicklingError)
    if fn.__name__ == "<lambda>" or "<locals>" in fn.__qualname__ \
            or fn.__closure__ is not None:
        why = ("lambdas, nested functions and closures %s, or define the "
               "function with def at the top level of a module"
               % _NEED_CLOUDPICKLE)
    else:
        why = ("the worker cannot import it as %s.%s, and functions it "
               "cannot import by name %s, or define the function at the "
               "top level of a module" % (fn.__module__, fn.__qualname__,
                                           _NEED_CLOUDPICKLE))
    return cls("cannot send %r to a worker process: %s" % (fn, why))


def _class_error(cls):
    if cls.__module__ == "__main__":
        where = ("classes defined in a __main__ the workers do not import "
                 "(a notebook, python -c, stdin, the REPL, a package's "
                 "__main__.py)")
    else:
        where = "classes defined inside functions"
    error = (LocalObjectError if "<locals>" in getattr(cls, "__qualname__", "")
             else pickle.PicklingError)
    return error(
        "cannot send %r to a worker process: %s %s, or define the class at "
        "the top level of an importable module" % (cls, where,
                                                    _NEED_CLOUDPICKLE))


def _class_needs_value(cls):
    """Whether the worker cannot import cls by name for a reason this
    module knows (pickle finds and reports the other ones itself)."""
    module_name = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    if isinstance(qualname, str) and "<locals>" in qualname:
        return True
    return module_name == "__main__" and not _workers_have_main()


# --------------------------------------------------------------------------
# without cloudpickle: rules 1, 3 and 4

class _Namespace:
    """Stands for one __main__ globals dict of the parent in the pickle: the
    pickler memoizes it, so every function that uses it gets the same new
    dict in the worker."""

    __slots__ = ("globals",)

    def __init__(self, globals_):
        self.globals = globals_        # keeps id(globals_) unique meanwhile

    def __reduce__(self):
        return (_new_namespace, ())


def _new_namespace():
    return {"__builtins__": builtins, "__name__": "__main__"}


def _code_names(code, names):
    """Add the names code and its nested code objects (inner functions,
    comprehensions) look up to names: globals, and attributes too (an extra
    global is harmless, a missing one is not)."""
    names.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_names(const, names)
    return names


def _submodules(module_name, names):
    """Imported submodules of module_name that the code may reach as
    attributes (``xml.dom.minidom`` from a global ``xml``): importing
    ``xml`` alone does not bind them in the worker."""
    prefix = module_name + "."
    return tuple(name for name in list(_modules)
                 if name.startswith(prefix)
                 and names.issuperset(name[len(prefix):].split(".")))


class _Pickler(pickle.Pickler):
    """The C pickler with rules 1, 3 and 4 for functions and classes.
    reducer_override sees every object but None, bools, ints, floats, str,
    bytes and the built-in containers, so plain data costs nothing extra."""

    def __init__(self, file, buffer_callback=None):
        super().__init__(file, PROTOCOL, buffer_callback=buffer_callback)
        self._namespaces = {}

    def reducer_override(self, obj):
        if type(obj) is _FunctionType:
            if _by_reference(obj):
                return NotImplemented
            if _is_main_function(obj):
                return self._reduce_function(obj)
            raise _function_error(obj)
        if isinstance(obj, type) and _class_needs_value(obj):
            raise _class_error(obj)
        return NotImplemented

    def _reduce_function(self, fn):
        g = fn.__globals__
        namespace = self._namespaces.get(id(g))
        if namespace is None:
            namespace = self._namespaces[id(g)] = _Namespace(g)
        names = _code_names(fn.__code__, set())
        modules = []
        values = {}
        for name in sorted(names):
            if name not in g:
                continue                # a builtin, or not defined yet
            value = g[name]
            if isinstance(value, types.ModuleType):
                modules.append((name, value.__name__,
                                _submodules(value.__name__, names)))
            else:
                values[name] = value
        # Everything that may lead back to a function (defaults, globals)
        # is in the state, pickled after the function is memoized: a
        # function that calls itself, or two that call each other, then
        # meet the memo instead of recursing.
        state = (fn.__defaults__, fn.__kwdefaults__, fn.__doc__,
                 fn.__dict__ or None, tuple(modules), values)
        return (_make_function,
                (sys.implementation.cache_tag, marshal.dumps(fn.__code__),
                 fn.__name__, fn.__qualname__, namespace),
                state, None, None, _fill_function)


def _make_function(tag, code, name, qualname, namespace):
    """Rebuild a function of rule 3 (in the worker), its state still to
    come (_fill_function)."""
    if tag != sys.implementation.cache_tag:
        # marshal data is only good for the Python that wrote it.
        raise pickle.UnpicklingError(
            "function %s was pickled by %s, this is %s"
            % (qualname, tag, sys.implementation.cache_tag))
    fn = types.FunctionType(marshal.loads(code), namespace, name)
    fn.__qualname__ = qualname
    return fn


def _fill_function(fn, state):
    defaults, kwdefaults, doc, attrs, modules, values = state
    fn.__defaults__ = defaults
    fn.__kwdefaults__ = kwdefaults
    fn.__doc__ = doc
    if attrs:
        fn.__dict__.update(attrs)
    g = fn.__globals__
    for name, module_name, submodules in modules:
        for submodule in submodules:
            importlib.import_module(submodule)
        g[name] = importlib.import_module(module_name)
    g.update(values)
    return fn


# --------------------------------------------------------------------------
# with cloudpickle: rules 1 and 2

_cloud_class = (None, None)


def _cloud_pickler(cloudpickle):
    """cloudpickle's pickler, made to keep rule 1: cloudpickle itself sends
    every __main__ function by value, even when the worker imports the
    script (a class by value there would not be the worker's class)."""
    global _cloud_class
    module, cls = _cloud_class
    if module is cloudpickle:
        return cls
    base = cloudpickle.CloudPickler

    class Pickler(base):
        def __init__(self, file, buffer_callback=None):
            base.__init__(self, file, protocol=PROTOCOL,
                          buffer_callback=buffer_callback)

        def reducer_override(self, obj):
            if ((type(obj) is _FunctionType or isinstance(obj, type))
                    and _by_reference(obj)):
                return NotImplemented
            return base.reducer_override(self, obj)

        def dump(self, obj):
            # cloudpickle's dump turns RecursionError into PicklingError;
            # plain pickle's error is the one to propagate.
            return pickle.Pickler.dump(self, obj)

    _cloud_class = (cloudpickle, Pickler)
    return Pickler
