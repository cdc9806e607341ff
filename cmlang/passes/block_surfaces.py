"""2-D block surfaces proven at launch: which block ops need no run-time surface check.

A 2-D block message (PVC) takes only surfaces that meet its limits (``surface_fits``).
The code generators check the surface at run time and keep a per-element path for the
others, which doubles the code of each access and, in vector-compute code, holds the
per-element addresses in registers.  Where every quantity of the check is known before the
kernel runs, the launch decides it instead:

- the base is a pointer parameter, and the launch knows whether that buffer starts on 64
  bytes (the buffers cmlang allocates do; other memory is asked);
- width, height and pitch are computed from constants and integer scalar parameters by
  +, -, * and << (evaluated at launch in the kernel's i32 arithmetic);
- x, for 8- and 16-bit data, is provably a multiple of whole dwords in every CM thread
  (``alignment.known_multiple``: constants, sums and products, loop counters).

``surface_sites`` finds such ops once per specialization; ``proven_sites`` evaluates them
for a launch's arguments; the indices it returns are part of the specialization's key, and
``mark_proven`` sets ``surface_fits=1`` on those ops, so the code generators emit the
messages alone.  A site not proven keeps the run-time check: nothing here changes what a
kernel computes, only which code computes it.

The rule is the strictest of the two code generators' (SIMT's limits plus vector-compute's
whole dwords of width and x), so a surface proven here fits both.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.core import Function
from ..ir.printer import print_function
from ..types import PtrType, ScalarType
from .alignment import known_multiple
from .induction import induction_loops

# What a 2-D block message needs of the surface (PVC's 2-D block limits): a 64-byte aligned
# base, rows of at least 64 bytes, a pitch of whole 16 bytes not below the width, width,
# pitch (bytes) and height at most 2**24, at least one row.
MIN_WIDTH_BYTES, PITCH_QUANTUM, BASE_ALIGN, MAX_EXTENT = 64, 16, 64, 1 << 24
DWORD = 4
BLOCK_OPS = ("block_load2d", "block_store2d", "block_prefetch2d")
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def surface_fits(elem_bytes: int, width: int, height: int, pitch: int, base_aligned: bool) -> bool:
    """Whether a surface (width, pitch in elements) meets every 2-D block message's limits."""
    width_bytes, pitch_bytes = width * elem_bytes, pitch * elem_bytes
    return (base_aligned and MIN_WIDTH_BYTES <= width_bytes <= pitch_bytes <= MAX_EXTENT
            and width_bytes % DWORD == 0 and pitch_bytes % PITCH_QUANTUM == 0
            and 1 <= height <= MAX_EXTENT)


@dataclass(frozen=True)
class SurfaceSite:
    """A block op (the ``index``-th block op of the function in walk order) whose surface a
    launch can decide: the base is parameter ``pointer``; width, height and pitch are
    ``_launch_form`` expressions of the scalar arguments."""
    index: int
    pointer: int
    elem_bytes: int
    width: tuple
    height: tuple
    pitch: tuple


def block_ops(fn: Function) -> list:
    """The function's block ops in walk order (the order ``index`` counts)."""
    return [op for op in fn.walk() if op.opcode in BLOCK_OPS]


def surface_sites(fn: Function) -> tuple:
    """The block ops whose surface check a launch can decide (see the module docstring)."""
    pointers = {arg: i for i, arg in enumerate(fn.params) if isinstance(arg.type, PtrType)}
    scalars = {arg: i for i, arg in enumerate(fn.params)
               if isinstance(arg.type, ScalarType) and arg.type.kind in "iu"}
    loops = induction_loops(fn)
    sites = []
    for index, op in enumerate(block_ops(fn)):
        base = op.operands[0]
        if base not in pointers:
            continue
        elem_bytes = base.type.elem.nbytes
        x = op.operands[1]
        if elem_bytes < DWORD and (known_multiple(x, loops) * elem_bytes) % DWORD:
            continue
        forms = [_launch_form(v, scalars) for v in op.operands[3:6]]
        if None in forms:
            continue
        sites.append(SurfaceSite(index, pointers[base], elem_bytes, *forms))
    return tuple(sites)


def proven_sites(sites, args, aligned) -> tuple:
    """Indices of the sites whose surface fits for these run-time arguments; ``aligned(i)``
    tells whether the buffer of pointer parameter i starts on ``BASE_ALIGN`` bytes."""
    proven = []
    for site in sites:
        values = [_evaluate(form, args) for form in (site.width, site.height, site.pitch)]
        if None not in values and surface_fits(site.elem_bytes, *values, aligned(site.pointer)):
            proven.append(site.index)
    return tuple(proven)


def mark_proven(fn: Function, proven) -> None:
    """``surface_fits=1`` on the proven block ops: their code generators emit messages alone."""
    ops = block_ops(fn)
    for index in proven:
        ops[index].attrs["surface_fits"] = 1


LAUNCH_OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "shl": lambda a, b: a << b if 0 <= b < 32 else None}
MAX_DEPTH = 16


def _launch_form(value, scalars, depth=0):
    """An expression of integer scalar parameters and constants that computes ``value``:
    ``("arg", i)``, ``("const", c)`` or ``(op, a, b)`` with op in LAUNCH_OPS; else None."""
    if value in scalars:
        return "arg", scalars[value]
    op = value.defining_op
    if op is None or depth > MAX_DEPTH:
        return None
    if op.opcode == "const":
        v = op.attrs.get("value")
        return ("const", int(v)) if isinstance(v, int) and not isinstance(v, bool) else None
    if op.opcode in LAUNCH_OPS:
        a, b = (_launch_form(v, scalars, depth + 1) for v in op.operands)
        return None if a is None or b is None else (op.opcode, a, b)
    return None


def _evaluate(form, args):
    """The form's value for these arguments, or None where the kernel's i32 arithmetic would
    leave the range (or an argument is not an integer: the launch refuses it anyway)."""
    kind = form[0]
    if kind == "const":
        value = form[1]
    elif kind == "arg":
        try:
            value = int(args[form[1]])
        except (TypeError, ValueError):
            return None
    else:
        a, b = _evaluate(form[1], args), _evaluate(form[2], args)
        value = None if a is None or b is None else LAUNCH_OPS[kind](a, b)
    return value if value is not None and I32_MIN <= value <= I32_MAX else None


def _spelling(form, params, name):
    kind = form[0]
    if kind == "const":
        return str(form[1])
    if kind == "arg":
        return name(params[form[1]])
    sign = {"add": "+", "sub": "-", "mul": "*", "shl": "<<"}[kind]
    return f"({_spelling(form[1], params, name)} {sign} {_spelling(form[2], params, name)})"


def describe(fn: Function) -> str:
    """``// block surfaces decided at launch: S of B block ops``, then the IR with ``// surface
    decided at launch: width .., height .., pitch ..`` after each block op that is a site."""
    sites = {site.index: site for site in surface_sites(fn)}
    ops = {id(op): i for i, op in enumerate(block_ops(fn))}
    header = f"// block surfaces decided at launch: {len(sites)} of {len(ops)} block ops\n"

    def note(op, name):
        site = sites.get(ops.get(id(op)))
        if site is None:
            return None
        width, height, pitch = (_spelling(f, fn.params, name) for f in (site.width, site.height, site.pitch))
        return f"surface decided at launch: width {width}, height {height}, pitch {pitch}"
    return header + print_function(fn, annotate=note)
