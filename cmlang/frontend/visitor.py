"""The AST walker: statements and expressions of one kernel, with ``@cm.func`` inlined.

``FunctionCompiler.expr(node)`` evaluates an expression to a run-time ``ir.Value`` or a
compile-time Python value (see ``values``); ``stmt(node)`` compiles a statement.
Dispatch is by node class: ``expr_BinOp``, ``stmt_Assign``, ... Control flow (if, for,
while, break, continue, return) is in ``control_flow``; operators in ``operators``;
subscripts and register methods in ``regions``; builtins in ``builtins_impl``.

Names resolve like Python: local variables of the current frame (kernel or inlined func),
then the function's closure cells, its module globals, and Python's builtins.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import types as pytypes
from dataclasses import dataclass, field

import numpy as np

from .. import language as lang
from .. import reads as recorded
from ..errors import CompileError
from .. import limits
from ..ir import Builder, Value, Function
from ..types import ScalarType, VectorType, PtrType, scalar_from_numpy, constexpr as CONSTEXPR
from ..types import TypeSpellingError
from . import operators as ops
from . import regions
from . import builtins_impl
from .control_flow import ControlFlowMixin
from .views import ViewsMixin
from .simd import SimdMixin
from .emit import Emitter
from .source import FunctionSource, function_source
from .values import (Undefined, RegisterMethod, View, is_constexpr, is_weak, is_numeric, is_register,
                     describe)

UNSUPPORTED_EXPRS = {
    "Lambda": "lambda", "ListComp": "list comprehension", "SetComp": "set comprehension",
    "DictComp": "dict comprehension", "GeneratorExp": "generator expression", "Dict": "dict",
    "Set": "set", "NamedExpr": "assignment expression (:=)", "Await": "await", "Yield": "yield",
    "YieldFrom": "yield from", "Starred": "starred expression", "JoinedStr": "string outside print()",
    "FormattedValue": "string outside print()",
}
UNSUPPORTED_STMTS = {
    "With": "with statement", "AsyncWith": "async with",
    "Try": "try statement", "TryStar": "try statement", "ClassDef": "class definition",
    "FunctionDef": "nested function definition", "AsyncFunctionDef": "nested function definition",
    "Global": "global statement", "Nonlocal": "nonlocal statement", "Delete": "del statement",
    "Raise": "raise statement", "Import": "import statement", "ImportFrom": "import statement",
    "Match": "match statement", "AsyncFor": "async for",
}


@dataclass
class Frame:
    """One function being compiled: the kernel, or a @cm.func being inlined."""
    source: FunctionSource
    globals: dict
    closure: dict                       # free variable name -> cell
    is_kernel: bool
    path: tuple | None = None           # how the function was reached (reads.py), None: unknown
    env: dict = field(default_factory=dict)   # local variables
    loop_depth: int = 0                 # enclosing loops (returns are not allowed inside)
    ref_params: tuple = ()              # register parameters passed by reference (views.py)
    merged_views: dict = field(default_factory=dict)  # name -> why it cannot be written through
    weak_carried: frozenset = frozenset()   # loop-carried names whose type the loop still infers

    @property
    def name(self):
        return self.source.pyfn.__name__


def _closure(pyfn):
    cells = pyfn.__closure__ or ()
    return dict(zip(pyfn.__code__.co_freevars, cells))


class FunctionCompiler(ControlFlowMixin, ViewsMixin, SimdMixin):
    def __init__(self, function: Function, pyfn):
        self.function = function
        self.builder = Builder(function.body)
        self.em = Emitter(self.builder, function.body)
        src = function_source(pyfn)
        self.frame = Frame(src, pyfn.__globals__, _closure(pyfn), is_kernel=True, path=recorded.KERNEL_ROOT)
        self.inlining = [pyfn.__code__]     # the call chain, to reject recursion
        self.depth = 0                      # statements and expressions being compiled, nested
        # Every Python value the compile reads from outside the kernel (the disk cache
        # re-checks them before it serves this kernel again).
        self.reads = recorded.ReadRecord()
        self._init_views()
        self._init_simd()

    # --- entry -------------------------------------------------------------------
    def compile_kernel(self, constexprs: dict):
        fdef = self.frame.source.tree
        self.builder.loc = self.loc(fdef)
        for name, value in constexprs.items():
            self.frame.env[name] = value
            self.reads.read_root(recorded.constexpr_root(name), value)
        for name, arg in zip(self.function.param_names, self.function.params):
            self.frame.env[name] = arg
        self.compile_stmts(fdef.body)
        self.builder.loc = self.loc(fdef)
        self.em.effect("return")

    # --- locations and errors ---------------------------------------------------------
    def loc(self, node):
        return self.frame.source.loc(node)

    def error(self, message, node=None) -> CompileError:
        return CompileError(message, self.loc(node) if node is not None else self.builder.loc)

    def unsupported(self, what, node) -> CompileError:
        return self.error(f"unsupported Python construct: {what}", node)

    @contextlib.contextmanager
    def at_node(self, node):
        """Ops created (and errors raised) while compiling ``node`` get its location."""
        saved = self.builder.loc
        self.builder.loc = self.loc(node)
        try:
            yield
        finally:
            self.builder.loc = saved

    @contextlib.contextmanager
    def nested(self, node):
        """One level deeper into the source: counts nesting against its budget, and turns
        Python's own errors from evaluating ``node`` (a number too large for a float, an
        operator Python refuses, a count too large for an index) into CompileErrors at
        ``node``; CompileErrors raised without a place get this one."""
        self.depth += 1
        try:
            if self.depth > limits.NESTING.value:
                raise self.error(limits.NESTING.exceeded(self.depth, "the kernel"), node)
            yield
        except CompileError as e:
            if e.loc is not None and not isinstance(e, TypeSpellingError):
                raise
            raise CompileError(e.message, self.loc(node)) from e
        except (ArithmeticError, TypeError, ValueError, IndexError, KeyError) as e:
            raise self.error(f"{type(e).__name__}: {e}", node) from e
        finally:
            self.depth -= 1

    # --- names ----------------------------------------------------------------------
    def lookup(self, name, node):
        env = self.frame.env
        if name in env:
            value = env[name]
            if isinstance(value, Undefined):
                raise self.error(f"variable '{name}' {value.reason}", node)
            if isinstance(value, View):
                return self.read_view(value)
            if is_register(value):
                self._last_root = (value, name)
            return value
        if name in self.frame.closure:
            try:
                value = self.frame.closure[name].cell_contents
            except ValueError:
                raise self.error(f"name '{name}' is not defined", node) from None
            return self.read_python(self.frame.path, ("closure", name), value)
        if name in self.frame.globals:
            return self.read_python(self.frame.path, ("global", name), self.frame.globals[name])
        if hasattr(builtins, name):
            # recorded as an absent global: defining one of that name later changes the code
            self.reads.read(self.frame.path, ("global", name), recorded.ABSENT)
            return getattr(builtins, name)
        raise self.error(f"name '{name}' is not defined", node)

    def read_python(self, base, step, obj):
        """A value read from Python (a global, closure cell, module attribute or item of a
        compile-time tuple reached at path ``base``): recorded, then as a compile-time value."""
        self.reads.read(base, step, obj)
        value = self.from_python(obj)
        if value is not obj and base is not None:
            self.reads.root(value, base + (step,))
        return value

    def from_python(self, obj):
        """A Python object from the globals/closure as a compile-time value."""
        if isinstance(obj, list):
            return tuple(self.from_python(x) for x in obj)
        if isinstance(obj, np.generic):
            return self.em.const(scalar_from_numpy(obj.dtype), obj.item())
        return obj

    def bind(self, name, value):
        self.bind_value(name, value)

    # --- statements ---------------------------------------------------------------------
    def stmt(self, node):
        with self.at_node(node), self.nested(node):
            method = getattr(self, "stmt_" + type(node).__name__, None)
            if method is None:
                what = UNSUPPORTED_STMTS.get(type(node).__name__, type(node).__name__)
                raise self.unsupported(what, node)
            method(node)

    def stmt_Pass(self, node):
        pass

    def stmt_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring or a string used as a comment
        if self.member_merge(node.value):
            return
        self.expr(node.value)

    def member_merge(self, call) -> bool:
        """CM's in-place member merge as a statement: ``v.merge(x, mask)`` writes ``x`` into
        ``v`` where ``mask`` (elsewhere ``v`` keeps its value), ``v.merge(x, y, mask)`` writes
        ``x`` where ``mask`` else ``y``; ``v`` a register variable or a view of one, ``mask``
        a bool register or an integer bit mask (as ``cm.merge``). False: not such a call."""
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "merge"):
            return False
        receiver = call.func.value
        if isinstance(receiver, ast.Name):
            bound = self.frame.env.get(receiver.id)
            if not (isinstance(bound, View) or is_register(bound)):
                return False        # cm.merge(...) and other objects' merge
            view = self.target_view(receiver)
        else:
            value = self.expr(receiver)
            if not is_register(value):
                return False
            view = self.view_of(value)
            if view is None:
                raise self.error("v.merge(...) changes v in place: v must be a register variable or "
                                 "a view of one (use cm.merge(x, y, mask) for a new value)", call)
        if call.keywords or len(call.args) not in (2, 3):
            raise self.error("v.merge() takes (x, mask) or (x, y, mask)", call)
        args = [self.expr(a) for a in call.args]
        with self.at_node(call):
            if len(args) == 2:
                new = builtins_impl.merge(self.em, args[0], self.read_view(view, tag=False), args[1])
            else:
                new = builtins_impl.merge(self.em, *args)
            self.write_view(view, new)
        return True

    def stmt_Assign(self, node):
        value = self.expr(node.value)
        for target in node.targets:
            self.assign(target, value)

    def stmt_AnnAssign(self, node):
        if node.value is None:
            raise self.unsupported("annotation without a value", node)
        if not isinstance(node.target, ast.Name):
            raise self.unsupported("annotated assignment to a subscript or attribute", node)
        t = self.annotation(node.annotation)
        value = self.expr(node.value)
        self.assign(node.target, self.convert_to_annotation(value, t, f"'{node.target.id}'"))

    def stmt_AugAssign(self, node):
        opname = ops.BINOPS.get(type(node.op))
        if opname is None:
            raise self.unsupported(f"operator {type(node.op).__name__}", node)
        target = node.target
        if isinstance(target, ast.Name):
            name = target.id
            current = self.lookup(name, target)
            new = ops.binary(self.em, opname, current, self.expr(node.value))
            bound = self.frame.env.get(name)
            if isinstance(bound, View) or is_register(bound):
                # in place, as numpy and CM: the register (and every view of it) changes, and
                # the result converts back to its element type
                with self.at_node(target):
                    self.write_view(self.target_view(target), new)
            elif isinstance(current, Value) and isinstance(new, Value) and new.type != current.type \
                    and name not in self.frame.weak_carried:
                self.bind(name, self.em.convert(new, current.type))   # C: back to the variable's type
            else:
                self.bind(name, new)
        elif isinstance(target, ast.Subscript):
            view = self.target_view(target.value)
            key = self.subscript_key(target.slice)
            rhs = self.expr(node.value)
            with self.at_node(target):
                region = regions.subscript_region(self.em, self.read_view(view, tag=False), key)
                current = regions.read_region(self.em, self.read_view(view, tag=False), region)
            new = ops.binary(self.em, opname, current, rhs)
            with self.at_node(target):
                self.write_view(view.then(region) if region.shape is not None else view, new,
                                None if region.shape is not None else key)
        else:
            raise self.unsupported("augmented assignment to an attribute", node)

    def stmt_Assert(self, node):
        test = self.expr(node.test)
        if not is_constexpr(test):
            raise self.unsupported("assert on a run-time value", node)
        if not test:
            msg = "assertion failed"
            if node.msg is not None:
                m = node.msg.value if isinstance(node.msg, ast.Constant) else self.expr(node.msg)
                msg = f"assertion failed: {m}"
            raise self.error(msg, node)

    def assign(self, target, value):
        """Binds ``value`` to an assignment target (name, tuple, subscript)."""
        if isinstance(target, ast.Name):
            self.rebind(target.id, self.simd_assign(target.id, value))
        elif isinstance(target, (ast.Tuple, ast.List)):
            if any(isinstance(e, ast.Starred) for e in target.elts):
                raise self.unsupported("starred assignment", target)
            if not isinstance(value, tuple):
                raise self.error(f"cannot unpack a {describe(value)}; only tuples can be unpacked", target)
            if len(value) != len(target.elts):
                raise self.error(f"cannot unpack {len(value)} values into {len(target.elts)} names", target)
            for t, v in zip(target.elts, value):
                self.assign(t, v)
        elif isinstance(target, ast.Subscript):
            view = self.target_view(target.value)
            key = self.subscript_key(target.slice)
            with self.at_node(target):
                self.write_view(view, value, key)
        elif isinstance(target, ast.Attribute):
            raise self.unsupported("assignment to an attribute", target)
        else:
            raise self.unsupported(f"assignment to {type(target).__name__}", target)

    # --- expressions ----------------------------------------------------------------------
    def expr(self, node):
        self._last_root = None
        with self.at_node(node), self.nested(node):
            method = getattr(self, "expr_" + type(node).__name__, None)
            if method is None:
                what = UNSUPPORTED_EXPRS.get(type(node).__name__, type(node).__name__)
                raise self.unsupported(what, node)
            value = method(node)
        if not isinstance(node, ast.Name):
            self._last_root = None      # only a name itself is its variable (cm.abs(v) may return v)
        return value

    def expr_Constant(self, node):
        v = node.value
        if isinstance(v, str):
            raise self.unsupported("string outside print()", node)
        if v is None or v is Ellipsis or isinstance(v, (bool, int, float)):
            return v
        raise self.unsupported(f"{type(v).__name__} constant", node)

    def expr_Name(self, node):
        return self.lookup(node.id, node)

    def expr_Tuple(self, node):
        return tuple(self.expr(e) for e in node.elts)

    expr_List = expr_Tuple

    def expr_Attribute(self, node):
        base = self.expr(node.value)
        name = node.attr
        if isinstance(base, Value):
            view = self.view_of(base)
            attr = regions.attribute(self.em, base, name)
            if isinstance(attr, RegisterMethod):
                return RegisterMethod(attr.value, attr.name, view)
            return attr
        if isinstance(base, pytypes.ModuleType):
            if not hasattr(base, name):
                raise self.error(f"module '{base.__name__}' has no attribute '{name}'", node)
            return self.read_python(self.reads.path_of(base), ("attr", name), getattr(base, name))
        if isinstance(base, (ScalarType, VectorType, PtrType)) and not name.startswith("_") \
                and hasattr(base, name):
            return getattr(base, name)
        raise self.unsupported(f"attribute '{name}' of {describe(base)}", node)

    def expr_Subscript(self, node):
        base = self.expr(node.value)
        view = self.view_of(base)
        key = self.subscript_key(node.slice)
        if isinstance(base, Value):
            region = regions.subscript_region(self.em, base, key)
            value = regions.read_region(self.em, base, region)
            return self.as_view(value, view, region if region.shape is not None else None)
        if not is_constexpr(key):
            raise self.error(f"a {describe(base)} needs a compile-time index", node)
        try:
            item = base[key]
        except TypeSpellingError as e:   # cm.vector[...] spelled wrong: its own message
            raise self.error(e.message, node) from None
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise self.error(f"cannot index {describe(base)} with {key!r}: {e}", node) from None
        path = self.reads.path_of(base)
        if path is not None and not recorded.is_compiler_object(base):
            self.reads.read(path, ("item", key), item)     # an item of a tuple from Python: FUNCS[0]
        return item

    def subscript_key(self, node):
        """An index: numbers, run-time values, Python slices (of those) and tuples of them."""
        if isinstance(node, ast.Slice):
            with self.at_node(node):
                lower = None if node.lower is None else self.expr(node.lower)
                if isinstance(lower, Value):
                    return self.dynamic_slice(node, lower)
                parts = [lower] + [None if p is None else self.expr(p) for p in (node.upper, node.step)]
            return slice(*parts)
        if isinstance(node, ast.Tuple):
            return tuple(self.subscript_key(e) for e in node.elts)
        return self.expr(node)

    def dynamic_slice(self, node, start):
        """``i:i + n[:step]`` with a run-time ``i``: the region of ``len(range(0, n, step))``
        elements at offset ``i`` (n and step compile-time)."""
        upper = node.upper
        length = None
        if isinstance(upper, ast.BinOp) and isinstance(upper.op, ast.Add):
            lower_text = ast.dump(node.lower)
            if ast.dump(upper.left) == lower_text:
                length = self.expr(upper.right)
            elif ast.dump(upper.right) == lower_text:
                length = self.expr(upper.left)
        step = 1 if node.step is None else self.expr(node.step)
        if not (isinstance(length, int) and not isinstance(length, bool)):
            raise self.error("a slice with a run-time start needs the stop written as start + n with n a "
                             "compile-time integer, e.g. v[i:i + 8] or v[i:i + 16:2]", node)
        if not (isinstance(step, int) and not isinstance(step, bool) and step > 0):
            raise self.error(f"the step of a slice with a run-time start must be a positive compile-time "
                             f"integer, got {describe(step)}", node)
        count = len(range(0, length, step))
        if count == 0:
            raise self.error(f"empty region of a slice with a run-time start (length {length})", node)
        return regions.DynamicSlice(self.em.int_index(start, "a slice start"), count, step)

    def expr_BinOp(self, node):
        opname = ops.BINOPS.get(type(node.op))
        if opname is None:
            what = "@ operator (use cm.dpas)" if isinstance(node.op, ast.MatMult) else type(node.op).__name__
            raise self.unsupported(what, node)
        return ops.binary(self.em, opname, self.expr(node.left), self.expr(node.right))

    def expr_UnaryOp(self, node):
        return ops.unary(self.em, node.op, self.expr(node.operand))

    def expr_BoolOp(self, node):
        """``and``/``or``: a compile-time left side that decides the result short-circuits
        (like Python); otherwise every operand is evaluated."""
        opname = "and" if isinstance(node.op, ast.And) else "or"
        values = []
        for operand in node.values:
            v = self.expr(operand)
            values.append(v)
            if is_constexpr(v) and all(is_constexpr(x) for x in values):
                if (opname == "and" and not v) or (opname == "or" and v):
                    return ops.bool_op(self.em, opname, values)
        return ops.bool_op(self.em, opname, values)

    def expr_Compare(self, node):
        result = None
        left = self.expr(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.expr(right_node)
            pred = ops.COMPARES.get(type(op))
            if pred is not None:
                r = ops.compare(self.em, pred, left, right)
            else:
                r = self.identity_compare(op, left, right, node)
            result = r if result is None else ops.logical_and(self.em, result, r)
            left = right
        return result

    def identity_compare(self, op, a, b, node):
        """``is``, ``is not``, ``in``, ``not in``: compile-time only."""
        name = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}[type(op)]
        if not (is_constexpr(a) and is_constexpr(b)):
            raise self.error(f"'{name}' needs compile-time operands, got {describe(a)} and {describe(b)}",
                             node)
        try:
            return {"is": lambda: a is b, "is not": lambda: a is not b,
                    "in": lambda: a in b, "not in": lambda: a not in b}[name]()
        except TypeError as e:
            raise self.error(str(e), node) from None

    def expr_IfExp(self, node):
        cond = ops.truth_or_mask(self.em, self.expr(node.test))
        if not isinstance(cond, Value):
            return self.expr(node.body if cond else node.orelse)
        a, b = self.expr(node.body), self.expr(node.orelse)
        return builtins_impl.merge(self.em, a, b, cond)

    # --- calls ----------------------------------------------------------------------
    def expr_Call(self, node):
        callee = self.expr(node.func)
        if callee is builtins.print:
            return self.call_print(node)
        if callee is lang.sat:
            return self.call_sat(node)
        if callee is lang.static_range or callee is builtins.range:
            name = "cm.static_range" if callee is lang.static_range else "range"
            raise self.error(f"{name}() can only be used as the iterable of a for loop", node)
        args, arg_views = [], {}
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.unsupported("starred arguments (*args)", a)
            args.append(self.expr(a))
            arg_views[len(args) - 1] = self.view_of(args[-1])
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.unsupported("keyword argument unpacking (**kwargs)", kw.value)
            if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                kwargs[kw.arg] = kw.value.value      # an option by name: precision="tf32"
                continue
            kwargs[kw.arg] = self.expr(kw.value)
            arg_views[kw.arg] = self.view_of(kwargs[kw.arg])
        return self.call(callee, args, kwargs, node, arg_views)

    def call(self, callee, args, kwargs, node, arg_views=None):
        if isinstance(callee, lang.DeviceFunction):
            return self.inline(callee, args, kwargs, node, arg_views or {})
        if isinstance(callee, RegisterMethod):
            value, step = regions.call_method(self.em, callee.value, callee.name, args, kwargs)
            if step is None and value is callee.value and callee.view is not None and callee.view.steps:
                self.views[id(value)] = (value, callee.view)     # format(T) of a T register: itself
            return self.as_view(value, callee.view, step)
        if isinstance(callee, type) and issubclass(callee, np.generic):   # np.float32(x)
            try:
                callee = scalar_from_numpy(callee)
            except TypeError:
                raise self.error(f"numpy type {callee.__name__} has no cmlang scalar type", node) from None
        if isinstance(callee, ScalarType):
            return builtins_impl.scalar_cast(self.em, callee, args, kwargs)
        if isinstance(callee, VectorType):
            return builtins_impl.construct(self.em, callee, args, kwargs)
        if builtins_impl.lookup(callee) is not None:
            return builtins_impl.call_builtin(self.em, callee, args, kwargs)
        if isinstance(callee, Value):
            raise self.error(f"a {callee.type} value is not callable", node)
        if isinstance(callee, lang.Builtin):
            raise self.error(f"cm.{callee.name} cannot be called here", node)
        name = getattr(callee, "__name__", None) or type(callee).__name__
        if isinstance(callee, lang.HostLaunched):
            raise self.error(f"cannot call the kernel '{name}' from a kernel; move the shared code "
                             "into a @cm.func", node)
        raise self.unsupported(f"call to non-kernel Python function '{name}' (device functions "
                               "need @cm.func)", node)

    def call_print(self, node):
        """``print(a, "text", x)`` -> print [fmt="{} text {}"] with the run-time values."""
        sep = " "
        for kw in node.keywords:
            if kw.arg == "sep" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                sep = kw.value.value
            else:
                raise self.unsupported(f"print() keyword '{kw.arg}'", kw.value)
        pieces, operands = [], []
        for arg in node.args:
            text = ""
            for part in (arg.values if isinstance(arg, ast.JoinedStr) else [arg]):
                if isinstance(part, ast.FormattedValue):
                    if part.format_spec is not None or part.conversion != -1:
                        raise self.unsupported("format spec in a kernel print", part)
                    part = part.value
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    text += _escape(part.value)
                    continue
                text += self._print_piece(self.expr(part), operands)
            pieces.append(text)
        self.em.effect("print", operands, fmt=_escape(sep).join(pieces))

    def _print_piece(self, value, operands):
        """The format text of one printed value; run-time values become ``{}`` placeholders."""
        if isinstance(value, Value):
            operands.append(value)
            return "{}"
        if isinstance(value, tuple):
            items = [self._print_piece(v, operands) for v in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return _escape(str(value))

    def call_sat(self, node):
        """``cm.sat(x.astype(T))`` -> convert [sat=true]; ``cm.sat(x)`` of a floating-point x ->
        convert to its own type [sat=true], the clamp to [0.0, 1.0] of CM and ESIMD."""
        if len(node.args) != 1 or node.keywords:
            raise self.error("cm.sat() takes one value: a conversion such as cm.sat(v.astype(cm.u8)) "
                             "or a floating-point value", node)
        inner = node.args[0]
        if not (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                and inner.func.attr == "astype" and len(inner.args) == 1 and not inner.keywords):
            value = self.expr(inner)
            if not (isinstance(value, Value) and is_numeric(value) and value.type.elem.is_float):
                raise self.error("cm.sat() takes a conversion, e.g. cm.sat(v.astype(cm.u8)), or a "
                                 f"floating-point value to clamp to [0.0, 1.0]; got {describe(value)}", node)
            return self.em.convert(value, value.type.elem, sat=True)
        with self.at_node(inner):
            value = self.expr(inner.func.value)
            t = self.expr(inner.args[0])
            if not (isinstance(value, Value) and is_numeric(value)):
                raise self.error(f"cm.sat(x.astype(T)) needs a run-time scalar or register x, got "
                                 f"{describe(value)}", inner)
            if not isinstance(t, ScalarType):
                raise self.error(f"astype() needs a scalar type, got {describe(t)}", inner)
            if t == value.type.elem and not t.is_float:
                return value
            return self.em.convert(value, t, sat=True)

    # --- @cm.func inlining ---------------------------------------------------------------
    def inline(self, dfn, args, kwargs, node, arg_views):
        """Compiles the body of a @cm.func in place, with its own names and locations."""
        pyfn = dfn.fn
        name = pyfn.__name__
        if pyfn.__code__ in self.inlining:
            raise self.error(f"recursive call to cm.func '{name}' is not supported (funcs are inlined)",
                             node)
        sig = inspect.signature(pyfn)
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise self.error(f"cm.func '{name}': *args and **kwargs parameters are not supported",
                                 node)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise self.error(f"cm.func '{name}': {e}", node) from None
        bound.apply_defaults()
        positional = list(sig.parameters)
        rebound = self.rebound_names(function_source(pyfn).tree)
        references = {}     # parameter -> the caller's variable or view it refers to
        for pname, value in bound.arguments.items():
            where = pname if pname in kwargs else (positional.index(pname) if pname in positional else None)
            view = arg_views.get(where)
            if view is not None and pname not in rebound and is_register(value):
                references[pname] = (view, value)
        callee = Frame(function_source(pyfn), pyfn.__globals__, _closure(pyfn), is_kernel=False,
                       path=self.reads.path_of(dfn))
        call_loc = self.builder.loc
        caller = self.frame
        self.frame = callee
        self.inlining.append(pyfn.__code__)
        try:
            fargs = callee.source.tree.args
            annotations = {a.arg: a.annotation for a in fargs.posonlyargs + fargs.args + fargs.kwonlyargs}
            for pname, value in bound.arguments.items():
                if not isinstance(value, Value):
                    converted = self.from_python(value)
                    self.reads.root(converted, self.reads.path_of(value))
                    value = converted
                ann = annotations.get(pname)
                if ann is not None:
                    t = self.annotation(ann)
                    self.builder.loc = call_loc     # conversions belong to the call site
                    value = self.convert_to_annotation(value, t, f"argument '{pname}' of cm.func '{name}'")
                if pname in references and references[pname][1] is not value:
                    del references[pname]           # converted: a new register, not a reference
                self.bind(pname, value)
            callee.ref_params = tuple(references)
            returned = self.compile_stmts(callee.source.tree.body)
            result = returned.value if returned is not None else self.with_references(None, callee.env)
            if references:
                result, finals = result
        except CompileError as e:
            if e.loc is None or e.loc.file != callee.source.file or call_loc is None \
                    or "(in cm.func" in e.message:
                raise
            raise CompileError(f"{e.message} (in cm.func '{name}' called at {call_loc})", e.loc) from None
        finally:
            self.frame = caller
            self.inlining.pop()
        if references:
            saved = self.builder.loc
            self.builder.loc = call_loc
            for (view, initial), final in zip(references.values(), finals):
                if final is not initial:
                    self.write_view(view, final)
            self.builder.loc = saved
        return result

    def annotation(self, node):
        """The compile-time value of an annotation (also a string one, from
        ``from __future__ import annotations``)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                parsed = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                raise self.error(f"cannot parse the annotation {node.value!r}", node) from None
            for n in ast.walk(parsed):
                n.lineno, n.col_offset = node.lineno, node.col_offset
            node = parsed
        return self.expr(node)

    def convert_to_annotation(self, value, t, what):
        """A value given to an annotated name (``x: f32 = ...``, a func parameter)."""
        em = self.em
        if t is CONSTEXPR:
            if not is_constexpr(value):
                raise em.error(f"{what} must be a compile-time constant, got {describe(value)}")
            return value
        if isinstance(t, ScalarType):
            if not (is_weak(value) or (isinstance(value, Value) and isinstance(value.type, ScalarType))):
                raise em.error(f"{what} must be a {t} scalar, got {describe(value)}")
            return em.coerce(value, t)
        if isinstance(t, VectorType):
            return em.coerce(regions.reshaped(em, value, t.shape), t, what=what)
        if isinstance(t, PtrType):
            if not (isinstance(value, Value) and isinstance(value.type, PtrType) and value.type.elem == t.elem):
                raise em.error(f"{what} must be a {t}, got {describe(value)}")
            return value
        return value    # an annotation cmlang does not check (e.g. a Python type)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")
