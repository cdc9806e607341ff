"""The front end: a Python kernel function -> cmlang IR (``compile_to_ir``).

Where to look:
    visitor.py        statements, expressions, names, calls, @cm.func inlining
    control_flow.py   if / for / while / static_range / break / continue / early return,
                      loop-carried variables
    operators.py      + - * / // % ** & | ^ << >> ~ not and or, comparisons, constant folding
    regions.py        v[a:b:s], m[i, j], subscript assignment, v.select/replicate/iselect/format/...
    builtins_impl.py  cm.load, cm.exp, cm.merge, ... and the Python builtins min/max/abs/int/float
    typing_rules.py   promotion (C usual arithmetic conversions, weak constants)
    emit.py           op creation at the current source location, conversions and splats
    values.py         what expressions evaluate to (run-time values, compile-time values)

The language (the user's contract)
----------------------------------
Values. A kernel computes on typed run-time values (scalars, ``vector[T, N]``,
``matrix[T, R, C]`` registers, pointers) and on compile-time values: Python literals,
``cm.constexpr`` parameters, module-level globals that are ints/floats/bools/tuples/cmlang
types, tuples, types. Numbers known at compile time are *weak*: operations between two of
them fold in Python with Python semantics (``7 / 2 == 3.5``, ``-7 // 2 == -4``; like
Triton's constexpr); combined with a typed operand they take its type.

Promotion. Typed operands follow C's usual arithmetic conversions: a float operand makes
the result the wider float (f64 > f32 > f16, bf16; f16 with bf16 gives f32); otherwise
integer promotion (bool and integers narrower than 32 bits -> i32), then the wider wins and
unsigned wins at equal width. A weak int takes the other operand's type (a sub-32-bit
integer type promotes to i32; the constant must fit, see below); a weak
float with an integer operand gives f32. A scalar combined with a register is converted and
splat; two registers need the same shape (``vector[T, N]`` and a matrix of N elements differ).
Comparisons give bool scalars or masks; operands of one identical type are compared as is.

Constants must fit. Wherever a Python number becomes a typed value (an operand, ``cm.full``,
a constructor, a region write, ``cm.iota``, a loop bound, a call argument, a stored or
atomic value) it must fit the type, else a CompileError at the node: an int for an n-bit
type lies in [-2**(n-1), 2**n - 1] -- the type's values or the other reading of the same
bits, so ``-1`` is the all-ones ``u32`` mask and ``0xFFFFFFFF`` is ``-1`` for ``i32``, as CM
and C programmers write masks (numpy refuses these since 2.0; here they lose no bit, while
anything wider does); a float converted to an integer type must fit its range after
truncation; a finite float must not round to infinity (f16 above 65504, bf16/f32 above
about 3.4e38), while ``math.inf`` and ``math.nan`` stay allowed. Scalars passed at launch
(runtime/launcher.py) must lie in the parameter type's own range, a finite float must not
become infinity there either, and a bool is refused where a number is expected.

Operators. ``/`` on ints truncates toward zero (C); ``//`` on ints truncates too (like C and
Triton), on floats is ``floor(a / b)``; ``%`` is C's remainder on ints and fmod on floats;
``**`` is pow on floats, and on ints only with a constant exponent 0..64 (unrolled
multiplications). ``&|^~<<>>`` take ints and bools; shifts have the promoted type of the
left operand. ``and``/``or``/``not`` take scalars (both sides are evaluated at run time; a
compile-time left side that decides the result short-circuits); ``a if c else b`` with a run-
time c evaluates both sides and selects (a mask c selects element-wise).

Regions: see ``regions``. Control flow: see ``control_flow``. Builtins: see
``cmlang.language`` and ``builtins_impl``.

``break`` and ``continue`` work in ``range`` / ``while`` loops and in ``cm.static_range``
under scalar conditions (see ``control_flow``); a loop's ``else:`` clause does not.

Not supported (CompileError "unsupported Python construct: ..."): with, try, lambda,
comprehensions, classes, global/nonlocal, del, raise, import, match, calls to Python
functions that are not ``@cm.func``, attributes of unknown objects, strings outside ``print``.
Every CompileError carries the file, line and column of the offending node.
"""
from __future__ import annotations

import numpy as np

from ..errors import CompileError
from ..ir import Block, Function
from ..types import ScalarType, PtrType, VectorType
from .source import function_source

__all__ = ["compile_to_ir"]


def compile_to_ir(pyfn, param_types: dict, constexprs: dict, simd: int, name: str | None = None) -> Function:
    """Compiles the Python kernel ``pyfn`` into an IR Function.

    ``param_types``: each run-time parameter's cmlang type (ScalarType, VectorType or PtrType);
    ``constexprs``: the compile-time parameters' values. ``Function.params`` follow the
    Python parameter order without the constexprs.
    """
    from .visitor import FunctionCompiler

    src = function_source(pyfn)
    fargs = src.tree.args
    if fargs.vararg or fargs.kwarg or fargs.kwonlyargs:
        node = fargs.vararg or fargs.kwarg or fargs.kwonlyargs[0]
        raise CompileError("unsupported Python construct: kernel parameters must be plain positional "
                           "parameters", src.loc(node))
    arg_nodes = fargs.posonlyargs + fargs.args
    names = [a.arg for a in arg_nodes]
    for key in list(param_types) + list(constexprs):
        if key not in names:
            raise CompileError(f"{pyfn.__name__} has no parameter '{key}'", src.loc(src.tree))
    params = []
    for a in arg_nodes:
        if a.arg in constexprs:
            continue
        t = param_types.get(a.arg)
        if not isinstance(t, (ScalarType, PtrType, VectorType)):
            raise CompileError(f"kernel parameter '{a.arg}' needs a scalar, register or pointer type "
                               f"or cm.constexpr, got {t!r}", src.loc(a))
        params.append((a.arg, t))
    body = Block([t for _, t in params], [n for n, _ in params])
    fn = Function(name or pyfn.__name__, body, [n for n, _ in params], simd,
                  {k: _constexpr_value(v) for k, v in constexprs.items()}, src.file)
    compiler = FunctionCompiler(fn, pyfn)
    compiler.compile_kernel(fn.constexprs)
    fn.python_reads = compiler.reads.to_json()
    return fn


def _constexpr_value(v):
    if isinstance(v, (list, tuple)):
        return tuple(_constexpr_value(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v
