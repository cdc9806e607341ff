"""What an expression evaluates to while a kernel compiles.

- an ``ir.Value``: a run-time value (typed scalar, register or pointer);
- a *weak* Python number (``bool``, ``int``, ``float``): a literal or constexpr, folded in
  Python and typed only when it meets a typed operand;
- any other compile-time Python object: tuples (their items may be run-time values),
  cmlang types, builtins, ``@cm.func`` functions, modules, ``None``;
- the small wrappers below.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..ir import Value
from ..types import ScalarType, VectorType, PtrType


class Undefined:
    """A name that must not be read any more (e.g. assigned in only one branch of an if)."""

    def __init__(self, reason: str):
        self.reason = reason


@dataclass(frozen=True)
class RegisterMethod:
    """``v.select`` before it is called: the register, the method name, and the view the
    register was read through (None: not a variable's register)."""
    value: Value
    name: str
    view: object = None


def is_weak(x) -> bool:
    """A Python number (bool, int or float): typed only when it meets a typed operand."""
    return isinstance(x, (bool, int, float))


def is_constexpr(x) -> bool:
    """Known at compile time: anything that is not (and does not contain) a run-time value."""
    if isinstance(x, Value):
        return False
    if isinstance(x, tuple):
        return all(is_constexpr(e) for e in x)
    return True


def is_numeric(x) -> bool:
    """A weak number or a run-time scalar/register (not a pointer)."""
    return is_weak(x) or (isinstance(x, Value) and isinstance(x.type, (ScalarType, VectorType)))


def is_register(x) -> bool:
    return isinstance(x, Value) and isinstance(x.type, VectorType)


def describe(x) -> str:
    """How a value is named in error messages: its IR type or its kind of constant."""
    if isinstance(x, Value):
        return str(x.type)
    if isinstance(x, View):
        return f"view of '{x.root}'"
    if isinstance(x, bool):
        return "bool constant"
    if isinstance(x, int):
        return "int constant"
    if isinstance(x, float):
        return "float constant"
    if isinstance(x, tuple):
        return "tuple"
    if x is None:
        return "None"
    if isinstance(x, (ScalarType, VectorType, PtrType)):
        return f"type {x}"
    return getattr(x, "__name__", None) or type(x).__name__


def same_constant(a, b) -> bool:
    """Are two compile-time values the same (1, 1.0 and True are different)?"""
    if a is b:
        return True
    if isinstance(a, Value) or isinstance(b, Value) or type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_constant(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:
        return False


def bind_arguments(fn, display: str, args, kwargs, error, skip: int = 1):
    """Binds call arguments to the Python signature of a builtin implementation ``fn``
    whose first ``skip`` parameters are supplied by the compiler (the emitter, the register
    of a method); returns the values bound to the other parameters, in order.

    ``error(msg)`` builds the exception for a wrong call, e.g.
    "cm.load expects 3 to 4 arguments (p, offset, shape, pitch), got 2".
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[skip:]
    try:
        bound = sig.bind(*([None] * skip), *args, **kwargs)
    except TypeError as e:
        required = [p for p in params if p.default is inspect.Parameter.empty]
        names = ", ".join(p.name for p in params)
        if len(required) == len(params):
            expected = f"{len(params)} argument{'s' if len(params) != 1 else ''}"
        else:
            expected = f"{len(required)} to {len(params)} arguments"
        if "unexpected keyword" in str(e) or "multiple values" in str(e):
            raise error(f"{display}: {str(e).split(': ', 1)[-1]}; parameters are ({names})") from None
        raise error(f"{display} expects {expected} ({names}), got {len(args) + len(kwargs)}") from None
    bound.apply_defaults()
    values = []
    for p in params:
        v = bound.arguments[p.name]
        values.extend(v if p.kind is p.VAR_POSITIONAL else [v])
    return values


@dataclass(frozen=True, eq=False)
class View:
    """A name bound to part of another variable's register (a numpy slice, a CM
    ``vector_ref``): ``root`` is a variable of the same function holding a register, ``steps``
    the regions (``regions.Region``) and reinterpretations (a ``VectorType`` for
    ``format``) from it to the view. Reading the name re-reads the root; writing through it
    writes the root (see ``FunctionCompiler.write_view``)."""
    root: str
    frame: object
    steps: tuple = ()

    def then(self, step) -> "View":
        return View(self.root, self.frame, self.steps + (step,))

    def same(self, other) -> bool:
        """The same region of the same variable (run-time offsets: the same values)."""
        return (isinstance(other, View) and other.root == self.root and other.frame is self.frame
                and len(other.steps) == len(self.steps)
                and all(_same_step(a, b) for a, b in zip(self.steps, other.steps)))


def _same_step(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, VectorType):
        return a == b
    return (a.offset, a.vsize, a.vstride, a.hsize, a.hstride, a.shape) == \
        (b.offset, b.vsize, b.vstride, b.hsize, b.hstride, b.shape) and a.dyn is b.dyn
