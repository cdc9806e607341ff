"""What the front end read from Python while compiling one kernel specialization.

The front end folds Python values into the code it emits: module constants, attributes of
imported modules (``pkg.sub.deep.N``), items of global tuples (``FUNCS[0]``), the source of
every ``@cm.func`` it inlines, however it reached it (a global, a tuple, a constexpr). The
visitor records each such read here, in the one place where it resolves a name, an
attribute or a subscript of a compile-time value. A read is a *path* from a root (the
kernel function, or a constexpr argument) through steps (``global``/``closure`` name of a
function, ``attr`` of a module, ``item`` of a tuple) and a *fingerprint* of the value found
(its type and repr; for a function its file, line, source and defaults).

The disk cache (``cache.py``) stores the record with each compiled kernel and serves the
entry only if re-resolving every path today gives the same fingerprints; a compile that
read something without a path to re-resolve it is marked incomplete and never stored.
So a value the front end used cannot be missed: it is either recorded or the kernel is
not cached. This module is light (standard library only): a cache hit must not load the
front end.
"""
from __future__ import annotations

import hashlib
import linecache
import textwrap
import types

KERNEL_ROOT = (("kernel", ""),)


def constexpr_root(name: str):
    return (("constexpr", name),)


class ReadRecord:
    """The reads of one compile: ``reads`` maps a path (tuple of (kind, key) steps) to the
    fingerprint of the value it gave; ``complete`` is False once a value was read from an
    object whose own path is unknown."""

    def __init__(self):
        self.reads: dict = {}
        self.complete = True
        self._origins: dict = {}     # id(object) -> (object, path): where a value came from

    def read_root(self, path, value):
        """Records a value the compile starts from (a constexpr argument): a function's
        source, for one, is in no key."""
        self.reads[path] = fingerprint(value)
        self.root(value, path)

    def root(self, obj, path):
        """``obj`` is reachable at ``path`` (a constexpr argument, a converted value)."""
        if path is not None and not _is_number(obj):
            self._origins[id(obj)] = (obj, path)

    def path_of(self, obj):
        entry = self._origins.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else None

    def read(self, base, step, value):
        """Records that ``value`` was read by ``step`` (e.g. ("attr", "N")) from the object
        at path ``base``; None as base means the path is unknown."""
        kind, key = step
        if base is None or not isinstance(key, (str, int)) or isinstance(key, bool):
            self.complete = False
            return
        path = base + ((kind, key),)
        self.reads[path] = fingerprint(value)
        self.root(value, path)

    def to_json(self):
        return {"complete": self.complete,
                "reads": [[[list(step) for step in path], fp] for path, fp in sorted(self.reads.items(), key=repr)]}


def is_compiler_object(obj) -> bool:
    """One of cmlang's own objects (a type spelling such as ``cm.vector``, a builtin), not a
    user's function: what reading it gives is the compiler's, covered by the cache key's
    hash of the compiler sources."""
    return type(obj).__module__.split(".")[0] == "cmlang" and _function_of(obj) is None


def still_valid(record, kernel_fn, constexprs: dict) -> bool:
    """Does re-resolving every read of a stored ``record`` (``to_json`` form) today give
    the fingerprints recorded when the kernel was compiled?"""
    if not record.get("complete"):
        return False
    for path, fp in record["reads"]:
        try:
            value = resolve([tuple(step) for step in path], kernel_fn, constexprs)
        except Exception:       # noqa: BLE001 - anything that no longer resolves is a change
            return False
        if fingerprint(value) != fp:
            return False
    return True


class _Absent:
    """What a name that is not there resolves to (a builtin the code used, not shadowed)."""

    def __repr__(self):
        return "<absent>"


ABSENT = _Absent()


def resolve(path, kernel_fn, constexprs: dict):
    (root_kind, root_key), steps = path[0], path[1:]
    obj = kernel_fn if root_kind == "kernel" else constexprs[root_key]
    for kind, key in steps:
        if kind == "global":
            obj = python_function(obj).__globals__.get(key, ABSENT)
        elif kind == "closure":
            fn = python_function(obj)
            cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
            obj = cells[key].cell_contents
        elif kind == "attr":
            obj = getattr(obj, key, ABSENT)
        elif kind == "item":
            obj = obj[key]
        else:
            raise ValueError(f"unknown read step {kind!r}")
    return obj


def python_function(obj):
    """The Python function behind a kernel, a ``@cm.func`` or a plain function."""
    if isinstance(obj, types.FunctionType):
        return obj
    fn = getattr(obj, "fn", None)
    if isinstance(fn, types.FunctionType):
        return fn
    raise TypeError(f"{obj!r} is not a function")


def fingerprint(value) -> str:
    """A text that changes whenever ``value`` would compile differently: numbers with their
    type, tuples item by item, functions by file, line, source and default values."""
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(fingerprint(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{fingerprint(k)}: {fingerprint(v)}" for k, v in value.items()) + "}"
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    if hasattr(value, "tobytes") and isinstance(getattr(value, "ndim", None), int) and value.ndim > 0:
        # an array: its repr elides the middle of large ones
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        return f"array {value.dtype} {value.shape} {digest}"
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if value is ABSENT:
        return "absent"
    fn = _function_of(value)
    if fn is not None:
        return f"{type(value).__name__} {function_identity(fn)}"
    return f"{type(value).__module__}.{type(value).__qualname__} {value!r}"


def _function_of(value):
    if isinstance(value, types.FunctionType):
        return value
    fn = getattr(value, "fn", None)
    return fn if isinstance(fn, types.FunctionType) else None


def function_identity(fn) -> str:
    code = fn.__code__
    try:
        source = source_text(fn)
    except OSError:
        source = f"<no source: {code.co_code.hex()}>"
    defaults = fingerprint(fn.__defaults__ or ()) + fingerprint(sorted((fn.__kwdefaults__ or {}).items()))
    return f"{fn.__qualname__} {code.co_filename}:{code.co_firstlineno} defaults {defaults}\n{source}"


def _is_number(x) -> bool:
    return isinstance(x, (bool, int, float, complex, str, bytes)) or x is None


def source_text(fn) -> str:
    """The (dedented) source lines of ``fn``, decorators included.

    Cheaper than ``inspect.getsource``, whose tokenizer costs ~15 ms on first use:
    the code objects know the lines they span (``co_positions``)."""
    code = fn.__code__
    lines = linecache.getlines(code.co_filename, fn.__globals__)
    if not lines:
        raise OSError(f"no source for {fn.__qualname__}")
    last = _last_line(code)
    if not 0 < code.co_firstlineno <= last <= len(lines):
        raise OSError(f"stale source for {fn.__qualname__}")
    return textwrap.dedent("".join(lines[code.co_firstlineno - 1:last]))


def _last_line(code) -> int:
    last = code.co_firstlineno
    for _, end_line, _, _ in code.co_positions():
        if end_line is not None and end_line > last:
            last = end_line
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions, comprehensions
            last = max(last, _last_line(const))
    return last
