"""The include graph draws the architecture; this keeps it true.

    python/ -> csrc/module (the binding: the only C that sees Python.h)
            -> csrc/runtime, csrc/kernels (pure C)

- Nothing below the binding includes Python.h (or any CPython header).
- The runtime includes only runtime headers; the kernels only kernel and
  runtime headers; nobody reaches a header by a relative path.
- A private header (`*_impl.h`) is included only by its own concept's files
  (np_chan_impl.h by np_chan*.c).
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
CPYTHON = re.compile(r"^(Python\.h|structmember\.h|pythread\.h|frameobject\.h|"
                     r"pyconfig\.h|cpython/.*|internal/.*)$")

pytestmark = pytest.mark.skipif(not CSRC.is_dir(), reason="no C sources here")


def sources(layer):
    return sorted(p for p in (CSRC / layer).rglob("*") if p.suffix in (".c", ".h"))


def includes(path):
    return INCLUDE.findall(path.read_text())


def local_headers(layer):
    return {p.name for p in (CSRC / layer).rglob("*.h")}


@pytest.mark.parametrize("layer", ["runtime", "kernels"])
def test_no_python_below_the_binding(layer):
    bad = [(p.name, h) for p in sources(layer) for _, h in includes(p)
           if CPYTHON.match(h)]
    assert not bad, bad


@pytest.mark.parametrize("layer,allowed", [
    ("runtime", ["runtime"]),
    ("kernels", ["kernels", "runtime"]),
])
def test_lower_layers_include_only_their_own_and_lower(layer, allowed):
    ok = set().union(*(local_headers(a) for a in allowed))
    ours = set().union(*(local_headers(d.name) for d in CSRC.iterdir() if d.is_dir()))
    bad = [(p.name, h) for p in sources(layer) for kind, h in includes(p)
           if kind == '"' and h not in ok]
    # A quoted include that names none of our headers would be a typo or a
    # reach into another tree: also an error.
    assert not bad, bad
    assert not [(p.name, h) for p in sources(layer) for kind, h in includes(p)
                if kind == "<" and h in ours], "our headers are included with quotes"


def test_no_relative_includes():
    bad = [(str(p.relative_to(CSRC)), h) for layer in ("runtime", "kernels", "module", "include")
           if (CSRC / layer).is_dir()
           for p in sources(layer) for kind, h in includes(p)
           if kind == '"' and ("/" in h or ".." in h)]
    assert not bad, bad


def test_private_headers_stay_private():
    impl = {p.name: p for p in CSRC.rglob("*_impl.h")}
    bad = []
    for p in CSRC.rglob("*"):
        if p.suffix not in (".c", ".h"):
            continue
        for _, h in includes(p):
            if h in impl:
                concept = h[:-len("_impl.h")]
                if not p.stem.startswith(concept):
                    bad.append((p.name, h))
    assert not bad, bad


def test_the_rules_see_violations():
    # The checks above would pass vacuously if the pattern matched nothing:
    # it must find the binding's own CPython include.
    assert ("<", "Python.h") in INCLUDE.findall("#include <Python.h>\n")
    assert ('"', "np_sync.h") in INCLUDE.findall('  # include "np_sync.h"\n')
    assert any(CPYTHON.match(h) for p in sources("module") for _, h in includes(p))
