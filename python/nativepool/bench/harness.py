"""The benchmark harness: loading the implementation under test, the
section registry (Section, Row, Target), the machine description, running
sections (interleaved repeats, medians, ratios, targets) and reporting
(table, JSON), and main().  The sections themselves are in pool.py and
sync.py."""

import argparse
import collections
import concurrent.futures
import datetime
import faulthandler
import json
import operator
import os
import platform
import statistics
import sys
import threading
import traceback

StdlibThreadPool = concurrent.futures.ThreadPoolExecutor
FAKE_ENV = "NATIVEPOOL_BENCH_FAKE"


# --------------------------------------------------------------------------
# Loading the implementation under test
# --------------------------------------------------------------------------

class NativepoolUnavailable(RuntimeError):
    pass


_loaded = None


def load_nativepool():
    """Return ``(module_or_None, ThreadPool_class, version_string, fake)``.

    Raises NativepoolUnavailable with the reason when nativepool can't be
    imported (or has no ThreadPool yet) and the fake switch is off.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    if os.environ.get(FAKE_ENV, "") not in ("", "0"):
        class FakeThreadPool(StdlibThreadPool):
            """concurrent.futures.ThreadPoolExecutor posing as nativepool."""
        _loaded = (None, FakeThreadPool,
                   "FAKE (%s=1: stdlib ThreadPoolExecutor stand-in)" % FAKE_ENV,
                   True)
        return _loaded
    try:
        import nativepool
    except Exception as exc:  # ImportError, or a crash in the extension init
        raise NativepoolUnavailable("import nativepool failed: %s: %s"
                                    % (type(exc).__name__, exc))
    pool_cls = getattr(nativepool, "ThreadPool", None)
    if pool_cls is None:
        raise NativepoolUnavailable(
            "nativepool (%s) has no ThreadPool: is the C extension built? "
            "(pip install -e .)" % (getattr(nativepool, "__file__", None)
                                     or list(getattr(nativepool, "__path__", []))))
    version = getattr(nativepool, "__version__", None)
    if version is None:
        try:
            from importlib import metadata
            version = metadata.version("nativepool")
        except Exception:
            version = "unknown"
    where = getattr(nativepool, "__file__", None) or "?"
    _loaded = (nativepool, pool_cls, "%s (%s)" % (version, os.path.dirname(where)),
               False)
    return _loaded


def nativepool_threadpool():
    """The executor class under test (nativepool.ThreadPool)."""
    return load_nativepool()[1]




# --------------------------------------------------------------------------
# Sections: the registry
# --------------------------------------------------------------------------

ROLE_STDLIB = "stdlib"      # the baseline every ratio is taken against
ROLE_OURS = "nativepool"    # the implementation under test
ROLE_REF = "reference"      # another implementation, for context
ROLE_FLOOR = "floor"        # a lower bound (the serial loop)


NOT_IMPLEMENTED = "n/a (not implemented)"


class Row(object):
    """One implementation in a section.

    run(sizes) -> seconds of the timed region.  available() -> None, or a
    reason string to skip the row (e.g. an optional library not installed);
    a reason starting with "n/a" (:data:`NOT_IMPLEMENTED`: the object under
    test does not exist yet) is shown as is, and the targets on that row are
    reported n/a instead of FAIL.

    Sections that compare several pairs (section sync: one stdlib object and
    its nativepool counterpart per pair) give each row its own
    ``baseline`` (key of the row its "vs stdlib" ratio is taken against;
    default: the section's), ``per_task`` (the size, or callable(sizes),
    that divides its seconds; default: the section's) and ``unit`` (the
    display unit; default: the section's).
    """

    def __init__(self, key, label, role, run, available=None, baseline=None,
                 per_task=None, unit=None):
        self.key = key
        self.label = label
        self.role = role
        self.run = run
        self.available = available or (lambda: None)
        self.baseline = baseline
        self.per_task = per_task
        self.unit = unit


class Target(object):
    """A goal checked against the medians (in the section's display unit).

    metric(medians) -> float, where medians maps row key -> median.  It
    passes when ``metric op threshold`` (op is ">=" or "<=").  ``row`` and
    ``column`` ("ratio" or "notes") say where PASS/FAIL is shown.
    """

    _OPS = {">=": operator.ge, "<=": operator.le}

    def __init__(self, key, description, metric, op, threshold, fmt, row, column):
        if op not in self._OPS:
            raise ValueError("op must be '>=' or '<='")
        self.key = key
        self.description = description
        self.metric = metric
        self.op = op
        self.threshold = threshold
        self.fmt = fmt          # "%.1fx"-style string or a callable(value)
        self.row = row
        self.column = column

    def evaluate(self, medians):
        try:
            value = self.metric(medians)
        except (KeyError, TypeError, ZeroDivisionError):
            return None, False
        if value is None:
            return None, False
        return value, bool(self._OPS[self.op](value, self.threshold))


class Section(object):
    """A workload: rows timed side by side, a unit, targets.

    sizes_full / sizes_quick: dicts passed to every Row.run.
    per_task: name of the size that divides the seconds to give
    microseconds per task; None reports plain seconds.
    notes(row_key, medians, sizes) -> extra text for the row (or "").
    """

    def __init__(self, key, title, describe, rows, sizes_full, sizes_quick,
                 per_task=None, targets=(), notes=None, baseline="stdlib",
                 unit=None):
        self.key = key
        self.title = title
        self.describe = describe      # describe(sizes) -> one line
        self.rows = list(rows)
        self.sizes_full = dict(sizes_full)
        self.sizes_quick = dict(sizes_quick)
        self.per_task = per_task
        self.targets = list(targets)
        self.notes = notes or (lambda row_key, medians, sizes: "")
        self.baseline = baseline
        self._unit = unit

    def _per_task(self, row):
        if row is not None and row.per_task is not None:
            return row.per_task
        return self.per_task

    def unit(self, row=None):
        if row is not None and row.unit is not None:
            return row.unit
        if self._unit is not None:
            return self._unit
        return "us/task" if self._per_task(row) else "s"

    def to_unit(self, seconds, sizes, row=None):
        per_task = self._per_task(row)
        if per_task:
            n = per_task(sizes) if callable(per_task) else sizes[per_task]
            return seconds / n * 1e6
        return seconds

    def baseline_of(self, row):
        return row.baseline if row.baseline is not None else self.baseline


SECTIONS = collections.OrderedDict()


def register_section(section):
    """Add a section to the registry (its key is what --only selects)."""
    if section.key in SECTIONS:
        raise ValueError("section %r already registered" % section.key)
    SECTIONS[section.key] = section
    return section


def _fmt_times(x):
    return ("%.1fx" if x >= 10 else "%.2fx") % x


def _apply_fmt(fmt, value):
    return fmt(value) if callable(fmt) else fmt % value


def _ratio(medians, num, den):
    return medians[num] / medians[den]


def _ours(fn):
    """Wrap an executor-taking workload into a Row.run for nativepool."""
    return lambda sizes: fn(nativepool_threadpool(), sizes)


# (a) submit + result --------------------------------------------------------


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores():
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
                    continue
                k, v = [p.strip() for p in line.split(":", 1)]
                if k == "physical id":
                    phys = v
                elif k == "core id":
                    core = v
        if core is not None:
            cores.add((phys, core))
        return len(cores) or None
    except OSError:
        return None


def machine_info():
    nativepool_version, fake = "unavailable", False
    try:
        _, _, nativepool_version, fake = load_nativepool()
    except NativepoolUnavailable as exc:
        nativepool_version = "unavailable (%s)" % exc
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    gil = getattr(sys, "_is_gil_enabled", None)
    return collections.OrderedDict([
        ("cpu_model", _cpu_model()),
        ("logical_cpus", os.cpu_count()),
        ("usable_cpus", usable),
        ("physical_cores", _physical_cores()),
        ("python", "%s %s" % (platform.python_implementation(),
                              platform.python_version())),
        ("python_build", " ".join(platform.python_build())),
        ("python_compiler", platform.python_compiler()),
        ("gil_enabled", gil() if gil is not None else True),
        ("platform", platform.platform()),
        ("nativepool", nativepool_version),
        ("nativepool_fake", fake),
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
    ])


def format_header(info, repeats, quick):
    cores = "%s logical CPUs" % info["logical_cpus"]
    if info["physical_cores"]:
        cores += ", %s physical cores" % info["physical_cores"]
    if info["usable_cpus"] is not None and info["usable_cpus"] != info["logical_cpus"]:
        cores += ", %s usable by this process" % info["usable_cpus"]
    py = info["python"]
    if not info["gil_enabled"]:
        py += " (free-threaded, GIL disabled)"
    lines = [
        "nativepool benchmark: %s, %d interleaved repeats per row"
        % ("QUICK run (sizes scaled down ~5x, not comparable with a full run)"
           if quick else "full run", repeats),
        "  machine    : %s, %s" % (info["cpu_model"], cores),
        "  python     : %s (%s) [%s]" % (py, info["python_build"], info["python_compiler"]),
        "  platform   : %s" % info["platform"],
        "  nativepool : %s" % info["nativepool"],
        "  date       : %s" % info["date"],
    ]
    if info["nativepool_fake"]:
        lines.append("  *** FAKE RUN: 'nativepool' rows are the stdlib ThreadPoolExecutor"
                     " and threading's sync objects (%s=1); numbers say nothing"
                     " about nativepool ***" % FAKE_ENV)
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------

def _fmt_value(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    if a >= 0.1:
        return "%.3f" % v
    return "%.4f" % v


def _fmt_ratio(r):
    if r is None:
        return "-"
    if 0.995 <= r < 1.005:
        return "1.00x (same)"
    if r >= 1:
        return ("%.1fx faster" if r >= 10 else "%.2fx faster") % r
    inv = 1.0 / r
    return ("%.1fx slower" if inv >= 10 else "%.2fx slower") % inv


def run_section(section, repeats, quick=False, sizes=None, log=None):
    """Time every row of a section, interleaved within each repeat.

    Returns a JSON-able dict: raw seconds, values in the section unit,
    median/min/max, ratios, notes and target verdicts.
    """
    if sizes is None:
        sizes = section.sizes_quick if quick else section.sizes_full
    rows = collections.OrderedDict()
    for row in section.rows:
        reason = row.available()
        rows[row.key] = {"label": row.label, "role": row.role, "seconds": [],
                         "skipped": reason, "error": None,
                         "unit": section.unit(row),
                         "baseline": section.baseline_of(row)}
    for rep in range(repeats):
        for row in section.rows:
            r = rows[row.key]
            if r["skipped"] or r["error"]:
                continue
            try:
                r["seconds"].append(row.run(sizes))
            except NativepoolUnavailable as exc:
                r["skipped"] = str(exc)
            except Exception as exc:
                r["error"] = "%s: %s" % (type(exc).__name__, exc)
                r["traceback"] = traceback.format_exc()
        if log:
            log("  (%s) repeat %d/%d done" % (section.key, rep + 1, repeats))
    medians = {}
    for row in section.rows:
        key, r = row.key, rows[row.key]
        if r["error"] or r["skipped"] or not r["seconds"]:
            r.update(values=[], median=None, min=None, max=None)
            continue
        vals = [section.to_unit(s, sizes, row) for s in r["seconds"]]
        r["values"] = vals
        r["median"] = statistics.median(vals)
        r["min"] = min(vals)
        r["max"] = max(vals)
        medians[key] = r["median"]
    for key, r in rows.items():
        m = medians.get(key)
        base = medians.get(r["baseline"])
        r["ratio_vs_stdlib"] = (base / m) if (base and m) else None
        r["notes"] = section.notes(key, medians, sizes) if m is not None else ""
    targets = []
    for t in section.targets:
        value, passed = t.evaluate(medians)
        na = rows.get(t.row, {}).get("skipped")
        if value is None and na and na.startswith("n/a"):
            passed = None       # the object under test does not exist yet
        targets.append(collections.OrderedDict([
            ("key", t.key), ("description", t.description), ("row", t.row),
            ("column", t.column), ("op", t.op), ("threshold", t.threshold),
            ("value", value), ("passed", passed),
            ("text", _apply_fmt(t.fmt, value) if value is not None else "n/a"),
            ("verdict", _verdict(passed)),
        ]))
    return collections.OrderedDict([
        ("key", section.key), ("title", section.title),
        ("description", section.describe(sizes)), ("sizes", sizes),
        ("unit", section.unit()), ("repeats", repeats),
        ("rows", rows), ("targets", targets),
    ])


def _verdict(passed):
    return {True: "PASS", False: "FAIL", None: "N/A"}[passed]


def format_section(res):
    head = ["implementation", "median", "min", "max", "unit", "vs stdlib", "notes"]
    table = []
    tag = {}
    for t in res["targets"]:
        verdict = t["verdict"]
        tag.setdefault((t["row"], t["column"]), []).append(
            "[%s %s%s]" % (verdict, t["op"], _fmt_threshold(t)))
    for key, r in res["rows"].items():
        if r["skipped"]:
            text = r["skipped"]
            if not text.startswith("n/a"):
                text = "skipped: " + text
            table.append([r["label"], text, "", "", "", "", ""])
            continue
        if r["error"]:
            table.append([r["label"], "ERROR: %s" % r["error"], "", "", "", "", ""])
            continue
        if key == "stdlib" or key == r["baseline"] or r["role"] == ROLE_STDLIB:
            ratio = "baseline"
        else:
            ratio = _fmt_ratio(r["ratio_vs_stdlib"])
        notes = r["notes"]
        for col, text in (("ratio", ratio), ("notes", notes)):
            extra = tag.get((key, col))
            if extra:
                text = (text + " " if text else "") + " ".join(extra)
            if col == "ratio":
                ratio = text
            else:
                notes = text
        table.append([r["label"], _fmt_value(r["median"]), _fmt_value(r["min"]),
                      _fmt_value(r["max"]), r.get("unit", res["unit"]), ratio, notes])
    # rows with a long skip/error message span the numeric columns
    widths = [len(h) for h in head]
    for line in table:
        if line[2] == "" and line[4] == "":
            widths[0] = max(widths[0], len(line[0]))
            continue
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))
    right = {1, 2, 3}

    def fmt(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  " + "  ".join(out).rstrip()

    lines = ["", "(%s) %s: %s" % (res["key"], res["title"], res["description"]),
             fmt(head), "  " + "  ".join("-" * w for w in widths)]
    for line in table:
        if line[2] == "" and line[4] == "":
            lines.append("  " + line[0].ljust(widths[0]) + "  " + line[1])
        else:
            lines.append(fmt(line))
    kw = max([11] + [len(t["key"]) for t in res["targets"]])
    dw = max([38] + [len(t["description"]) for t in res["targets"]])
    for t in res["targets"]:
        lines.append("  target %-*s %-*s %-10s %s"
                     % (kw, t["key"], dw, t["description"], t["text"], t["verdict"]))
    return "\n".join(lines)


def _fmt_threshold(t):
    thr = t["threshold"]
    if t["text"].endswith(" s"):
        return "%g s" % thr
    return "%gx" % thr


def format_summary(results):
    targets = [t for res in results for t in res["targets"]]
    failed = [t for t in targets if t["passed"] is False]
    na = [t for t in targets if t["passed"] is None]
    checked = len(targets) - len(na)
    lines = [""]
    if targets:
        line = "targets: %d/%d PASS" % (checked - len(failed), checked)
        if failed:
            line += " (FAIL: %s)" % ", ".join(t["key"] for t in failed)
        if na:
            line += "; %d n/a, object not implemented yet (%s)" % (
                len(na), ", ".join(t["key"] for t in na))
        lines.append(line)
    errors = ["%s/%s" % (res["key"], k) for res in results
              for k, r in res["rows"].items() if r["error"]]
    if errors:
        lines.append("rows with errors: %s (-v shows the tracebacks)"
                     % ", ".join(errors))
    return "\n".join(lines)


def write_json(path, info, args_dict, results):
    doc = collections.OrderedDict([
        ("machine", info), ("config", args_dict), ("sections", results),
        # n/a targets (object not implemented yet) are listed, not failed
        ("all_targets_passed", all(t["passed"] is not False for res in results
                                   for t in res["targets"])),
        ("targets_not_applicable", [t["key"] for res in results
                                    for t in res["targets"]
                                    if t["passed"] is None]),
    ])
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def build_parser(prog=None, sections=None):
    keys = list(sections or SECTIONS)
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark nativepool against the stdlib, side by side. "
                    "Sections: " + "; ".join(
                        "%s = %s" % (k, SECTIONS[k].title) for k in keys))
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats (3) and sizes scaled down ~5x")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats per row (default 5, or 3 with --quick)")
    p.add_argument("--only", default=None,
                   help="comma-separated sections to run (default: all: %s)"
                        % ",".join(keys))
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write raw timings, medians, ratios, machine info and "
                        "targets to FILE")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a target fails (or a row errors)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="dump all thread stacks and exit if the run hangs "
                        "longer than this")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print progress and tracebacks of failing rows")
    return p


def main(argv=None, sections=None, prog=None):
    """Entry point.  ``sections`` restricts the registry (the standalone
    scripts pass their own section key)."""
    allowed = list(sections or SECTIONS)
    args = build_parser(prog, allowed).parse_args(argv)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        bad = [k for k in keys if k not in allowed]
        if bad:
            print("unknown section(s): %s (choose from %s)"
                  % (",".join(bad), ",".join(allowed)), file=sys.stderr)
            return 2
    else:
        keys = allowed
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if repeats < 1:
        print("--repeats must be >= 1", file=sys.stderr)
        return 2
    if args.timeout:
        faulthandler.dump_traceback_later(args.timeout, exit=True)

    try:
        load_nativepool()
    except NativepoolUnavailable as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2

    info = machine_info()
    print(format_header(info, repeats, args.quick))
    sys.stdout.flush()
    log = (lambda s: print(s, file=sys.stderr)) if args.verbose else None
    results = []
    for key in keys:
        res = run_section(SECTIONS[key], repeats, quick=args.quick, log=log)
        results.append(res)
        print(format_section(res))
        if args.verbose:
            for r in res["rows"].values():
                if r.get("traceback"):
                    print(r["traceback"], file=sys.stderr)
        sys.stdout.flush()
    print(format_summary(results))
    if args.timeout:
        faulthandler.cancel_dump_traceback_later()

    if args.json:
        cfg = collections.OrderedDict([
            ("argv", list(sys.argv if argv is None else argv)),
            ("quick", args.quick), ("repeats", repeats), ("sections", keys),
            ("threads_alive_at_end", threading.active_count()),
        ])
        write_json(args.json, info, cfg, results)
        print("wrote %s" % args.json)

    if args.check:
        ok = all(t["passed"] is not False for res in results for t in res["targets"])
        ok = ok and not any(r["error"] for res in results for r in res["rows"].values())
        return 0 if ok else 1
    return 0
