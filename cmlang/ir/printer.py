"""The IR's text form (MLIR-like); ``cmlang.ir.parser`` reads it back.

    kernel @saxpy(%x: ptr<f32>, %a: f32) simd=16 constexprs={N=32} {
      %0: i32 = thread_id [dim=0]
      %v.1: vector<f32, 32> = load %x, %0 loc("k.py":3:9)
      %r.2: i32 = for %lo, %hi, %st, %init {
      ^(%i.3: i32, %acc.4: i32):
        yield %acc.4
      }
      %5: f32 = if %c {
        yield %a
      } else {
        yield %b
      }
      return
    }

One op per line: ``results = opcode operands [attrs] loc(...) {blocks}``. Values are
``%<hint>.<n>`` (``%<n>`` without a hint) numbered by one running counter in program
order; kernel parameters keep their Python names. Attributes print in the order the
op catalogue lists them; values are ints, floats (``repr``, plus ``inf -inf nan``),
``true false none``, JSON-escaped strings, tuples ``(1, 2)``, dicts ``{a=1}`` and
types. A block's arguments, if any, are on a ``^(...):`` line; the blocks of an
``if`` are separated by ``else``, those of a ``while`` by ``do``. ``//`` starts a comment
that runs to the end of the line (analyses print their findings so: ``annotate``).
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

from ..types import ScalarType, VectorType, PtrType
from .core import Function, Block, Op
from .ops import OPS

INDENT = "  "
# The word between consecutive blocks of a multi-block op (the parser checks it).
BLOCK_SEPARATORS = {"if": "else", "while": "do"}
DEFAULT_BLOCK_SEPARATOR = "region"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def block_separator(opcode: str) -> str:
    return BLOCK_SEPARATORS.get(opcode, DEFAULT_BLOCK_SEPARATOR)


def print_function(fn: Function, locs: bool = False, annotate=None) -> str:
    """The text of ``fn``.  ``annotate(op, name)`` may return a note for an op, printed as a
    ``// note`` comment at the end of the op's line; ``name(value)`` is a value's printed name."""
    return _Printer(locs, annotate).function(fn)


# ---------------------------------------------------------------------------
# Attribute values

def format_attr_value(v) -> str:
    """The text of one attribute value; raises TypeError for values with no spelling."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _format_float(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, np.ndarray):
        v = tuple(v.ravel().tolist())
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(format_attr_value(x) for x in v) + ")"
    if isinstance(v, dict):
        return format_attr_dict(v)
    if isinstance(v, (ScalarType, VectorType, PtrType)):
        return str(v)
    raise TypeError(f"IR attribute value {v!r} of type {type(v).__name__} has no text form")


def _format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)  # shortest text that reads back to the same double


def format_attr_dict(d: dict) -> str:
    for key in d:
        if not (isinstance(key, str) and _IDENT.match(key)):
            raise TypeError(f"IR attribute name {key!r} is not an identifier")
    return "{" + ", ".join(f"{k}={format_attr_value(v)}" for k, v in d.items()) + "}"


def _record_value(v) -> str:
    """Constexpr values are kept for the record only: anything unprintable prints as its repr."""
    try:
        return format_attr_value(v)
    except TypeError:
        return json.dumps(repr(v))


def ordered_attrs(op: Op) -> list:
    """The op's attributes: catalogue order first, then any extras in insertion order."""
    known = OPS[op.opcode].attrs + OPS[op.opcode].optional_attrs if op.opcode in OPS else ()
    keys = [k for k in known if k in op.attrs] + [k for k in op.attrs if k not in known]
    return [(k, op.attrs[k]) for k in keys]


def format_loc(loc) -> str:
    return f"loc({json.dumps(loc.file)}:{loc.line}:{loc.col})"


# ---------------------------------------------------------------------------

class _Printer:
    def __init__(self, locs: bool, annotate=None):
        self.locs = locs
        self.annotate = annotate
        self.names = {}      # Value -> printed name
        self.counter = 0
        self.lines = []

    def name_of(self, value) -> str:
        try:
            return self.names[value]
        except KeyError:
            # Printing must not fail on broken IR (it is how one debugs it).
            return f"%<undefined {value.hint or '?'}: {value.type}>"

    def define(self, value) -> str:
        hint = _sanitize(value.hint)
        name = f"%{hint}.{self.counter}" if hint else f"%{self.counter}"
        self.counter += 1
        self.names[value] = name
        return f"{name}: {value.type}"

    def function(self, fn: Function) -> str:
        params = []
        for i, arg in enumerate(fn.params):
            name = "%" + _sanitize(fn.param_names[i] if i < len(fn.param_names) else arg.hint)
            if not name[1:] or name in self.names.values():
                name = f"%arg{i}"
            self.names[arg] = name
            params.append(f"{name}: {arg.type}")
        attrs = [f"simd={fn.simd}"]
        if fn.constexprs:
            attrs.append("constexprs={" + ", ".join(
                f"{k}={_record_value(v)}" for k, v in fn.constexprs.items()) + "}")
        if fn.source_file:
            attrs.append(f"file={json.dumps(fn.source_file)}")
        self.lines.append(f"kernel @{fn.name}({', '.join(params)}) {' '.join(attrs)} {{")
        self.block_ops(fn.body, 1)
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    def block_ops(self, block: Block, depth: int):
        for op in block.ops:
            self.op(op, depth)

    def op(self, op: Op, depth: int):
        pad = INDENT * depth
        text = pad
        if op.results:
            text += ", ".join(self.define(r) for r in op.results) + " = "
        text += op.opcode
        if op.operands:
            text += " " + ", ".join(self.name_of(v) for v in op.operands)
        if op.attrs:
            text += " [" + ", ".join(f"{k}={format_attr_value(v)}" for k, v in ordered_attrs(op)) + "]"
        if self.locs and op.loc is not None:
            text += " " + format_loc(op.loc)
        if not op.blocks:
            self.lines.append(text)
            self._annotate(op, len(self.lines) - 1)
            return
        first_line = len(self.lines)
        for i, block in enumerate(op.blocks):
            if i:
                text = f"{pad}}} {block_separator(op.opcode)}"
            self.lines.append(text + " {")
            if block.args:
                self.lines.append(f"{pad}^({', '.join(self.define(a) for a in block.args)}):")
            self.block_ops(block, depth + 1)
        self.lines.append(pad + "}")
        self._annotate(op, first_line)    # after the blocks: their arguments have names now

    def _annotate(self, op: Op, line: int):
        note = self.annotate(op, self.name_of) if self.annotate else None
        if note:
            self.lines[line] += f"  // {note}"


def _sanitize(hint: str) -> str:
    """A hint usable in a value name: identifier characters only."""
    if not hint:
        return ""
    hint = re.sub(r"[^A-Za-z0-9_]", "_", hint)
    return hint if _IDENT.match(hint) else "_" + hint
