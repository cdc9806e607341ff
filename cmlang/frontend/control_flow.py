"""Control flow: statement lists with early returns, if, for and while.

- ``if`` with a compile-time condition compiles only the taken branch. A run-time
  condition builds an ``if`` op; its results are the variables that either branch
  assigns and that exist after it (defined before, or in both branches). A variable
  assigned in only one branch (and not defined before) cannot be read after the if.
- ``if c: return`` (kernels) / ``if c: return x`` (funcs): the statements after the if
  are compiled into the branch that does not return, so the IR stays structured.
  Returns inside loops are not supported.
- ``for i in range(...)`` builds a ``for`` op; ``for i in cm.static_range(...)`` and loops
  over compile-time tuples are unrolled with ``i`` a compile-time value.
- ``while c:`` builds a ``while`` op.
- Loop-carried variables are the names the body assigns that exist before the loop.
  A weak initial value (``s = 0``) takes the type the body gives it: the body is built
  with a guessed type, and rebuilt with the type it produced until both agree.
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Optional

from .. import language as lang
from ..errors import CompileError
from ..ir import Block, Value
from ..types import ScalarType, VectorType
from . import operators as ops
from . import typing_rules as tr
from .values import Undefined, is_constexpr, is_weak, is_numeric, is_register, describe, same_constant

MAX_UNROLL = 1 << 16
_MISSING = object()


@dataclass
class Returned:
    """A statement list ended in a return (value None for a kernel or a bare return)."""
    value: object


class _ConstantCondition(Exception):
    def __init__(self, value):
        self.value = value


# --- how values from two paths are joined into op results --------------------------------

@dataclass
class _Same:          # both paths hold the same compile-time value: no result needed
    value: object


@dataclass
class _Slot:          # one op result of this type
    type: object


@dataclass
class _TuplePlan:     # a tuple joined item by item
    parts: list


def assigned_names(stmts):
    """Names a statement list assigns (also through subscripts: ``v[0] = x`` rebinds v), in
    source order."""
    found = []
    for stmt in stmts:
        for node in ast.walk(stmt):
            name = None
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name):
                name = node.value.id
            if name is not None:
                found.append((node.lineno, node.col_offset, name))
    names = []
    for _, _, name in sorted(found):
        if name not in names:
            names.append(name)
    return names


def _contains_return(node):
    return any(isinstance(n, ast.Return) for n in ast.walk(node))


class ControlFlowMixin:
    """Statement lists and control flow of ``FunctionCompiler`` (see ``visitor``)."""

    # --- statement lists and returns ------------------------------------------------
    def compile_stmts(self, stmts) -> Optional[Returned]:
        """Compiles statements in order; returns Returned when the list ends in a return."""
        stmts = list(stmts)
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Return):
                with self.at_node(s):
                    return self._return(s)
            if isinstance(s, ast.If) and _contains_return(s):
                with self.at_node(s):
                    return self._if_with_return(s, stmts[i + 1:])
            self.stmt(s)
        return None

    def _return(self, node):
        if self.frame.loop_depth:
            raise self.error("return inside a loop is not supported", node)
        if self.frame.is_kernel:
            if node.value is not None:
                raise self.error("a kernel cannot return a value; store results to memory", node.value)
            return Returned(None)
        return Returned(self.expr(node.value) if node.value is not None else None)

    def _if_with_return(self, node, rest):
        """An if whose branches may return: the rest of the list goes into both branches
        (where a branch returns first, the copy there is never compiled)."""
        cond = self.condition(node.test)
        if not isinstance(cond, Value):
            return self.compile_stmts((node.body if cond else node.orelse) + rest)
        then_block, _, then_ret = self._branch(node.body + rest)
        else_block, _, else_ret = self._branch(node.orelse + rest)
        a = then_ret.value if then_ret else None
        b = else_ret.value if else_ret else None
        plan = self._plan(f"the return value of '{self.frame.name}'", a, b)
        op = self._build_if(cond, then_block, else_block, [(plan, a)], [(plan, b)])
        return Returned(self._rebuild(plan, iter(op.results)))

    def condition(self, test):
        value = self.expr(test)
        with self.at_node(test):
            return ops.truth(self.em, value)

    # --- if -------------------------------------------------------------------------
    def stmt_If(self, node):
        cond = self.condition(node.test)
        if not isinstance(cond, Value):
            for s in (node.body if cond else node.orelse):
                self.stmt(s)
            return
        before = self.frame.env
        then_block, then_env, _ = self._branch(node.body)
        else_block, else_env, _ = self._branch(node.orelse)
        changed = []
        for env in (then_env, else_env):
            for name, value in env.items():
                if before.get(name, _MISSING) is not value and name not in changed:
                    changed.append(name)
        after = dict(before)
        merged = []
        for name in changed:
            a, b = then_env.get(name, _MISSING), else_env.get(name, _MISSING)
            undefined = next((x for x in (a, b) if isinstance(x, Undefined)), None)
            if undefined is not None:
                after[name] = undefined
            elif a is _MISSING or b is _MISSING:
                after[name] = Undefined(f"is defined in only one branch of the if at line "
                                        f"{self.loc(node).line}; define it before the if or in both branches")
            else:
                merged.append((name, self._plan(f"variable '{name}'", a, b), a, b))
        op = self._build_if(cond, then_block, else_block,
                            [(plan, a) for _, plan, a, _ in merged], [(plan, b) for _, plan, _, b in merged])
        results = iter(op.results)
        self.frame.env = after
        for name, plan, _, _ in merged:
            self.bind(name, self._rebuild(plan, results))

    def _branch(self, stmts):
        """Compiles ``stmts`` into a new block with a copy of the variables."""
        block = Block()
        saved = self.frame.env
        self.frame.env = dict(saved)
        try:
            with self.builder.at(block):
                returned = self.compile_stmts(stmts)
            return block, self.frame.env, returned
        finally:
            self.frame.env = saved

    def _build_if(self, cond, then_block, else_block, then_values, else_values):
        """Ends both blocks with yields of the joined values and creates the if op."""
        types = []
        for plan, _ in then_values:
            types += self._slot_types(plan)
        for block, values in ((then_block, then_values), (else_block, else_values)):
            with self.builder.at(block):
                flat = []
                for plan, value in values:
                    flat += self._flatten(plan, value)
                self.em.effect("yield", flat)
        return self.builder.create("if", [cond], types, blocks=[then_block, else_block])

    def _plan(self, what, a, b):
        """How to join value ``a`` of one path with ``b`` of the other."""
        if a is b or (is_constexpr(a) and is_constexpr(b) and same_constant(a, b)):
            return _Same(a)
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
            return _TuplePlan([self._plan(f"{what}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b))])
        if is_numeric(a) and is_numeric(b):
            return _Slot(self._join_type(what, a, b))
        raise self.error(f"{what} is {describe(a)} on one path and {describe(b)} on the other; "
                         "with a run-time condition both must be numbers or registers of one type")

    def _join_type(self, what, a, b):
        if isinstance(a, Value) and isinstance(b, Value):
            if a.type != b.type:
                raise self.error(f"{what} has type {a.type} on one path and {b.type} on the other")
            return a.type
        if isinstance(a, Value) or isinstance(b, Value):
            typed, weak = (a, b) if isinstance(a, Value) else (b, a)
            if not tr.weak_fits(weak, typed.type.elem):
                raise self.error(f"{what} has type {typed.type} on one path and is the "
                                 f"{describe(weak)} {weak!r} on the other")
            return typed.type
        try:
            return tr.join_weak_types([a, b])
        except OverflowError as e:
            raise self.error(str(e)) from None

    def _slot_types(self, plan):
        if isinstance(plan, _Slot):
            return [plan.type]
        if isinstance(plan, _TuplePlan):
            return [t for p in plan.parts for t in self._slot_types(p)]
        return []

    def _flatten(self, plan, value):
        if isinstance(plan, _Slot):
            return [self.em.coerce(value, plan.type)]
        if isinstance(plan, _TuplePlan):
            return [v for p, x in zip(plan.parts, value) for v in self._flatten(p, x)]
        return []

    def _rebuild(self, plan, results):
        if isinstance(plan, _Slot):
            return next(results)
        if isinstance(plan, _TuplePlan):
            return tuple(self._rebuild(p, results) for p in plan.parts)
        return plan.value

    # --- for ------------------------------------------------------------------------
    def stmt_For(self, node):
        if node.orelse:
            raise self.unsupported("for ... else", node)
        it = node.iter
        if isinstance(it, ast.Call):
            callee = self.expr(it.func)
            if callee is lang.static_range or callee is builtins.range:
                args = self._range_args(it, callee)
                if callee is lang.static_range:
                    with self.at_node(it):
                        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                            raise self.error("cm.static_range() needs compile-time integer bounds, got "
                                             + ", ".join(describe(a) for a in args), it)
                        if args[-1] == 0 and len(args) == 3:
                            raise self.error("cm.static_range() step must not be zero", it)
                    return self._unrolled(node, range(*args))
                return self._range_loop(node, args)
        seq = self.expr(it)
        if isinstance(seq, tuple):
            return self._unrolled(node, seq)
        hint = "; use cm.static_range(v.size) and v[i]" if is_register(seq) else ""
        raise self.unsupported(f"for loop over {describe(seq)}{hint}", it)

    def _range_args(self, call, callee):
        name = "cm.static_range" if callee is lang.static_range else "range"
        if call.keywords or not 1 <= len(call.args) <= 3:
            raise self.error(f"{name}() expects 1 to 3 positional arguments (start, stop, step), got "
                             f"{len(call.args) + len(call.keywords)}", call)
        return [self.expr(a) for a in call.args]

    def _unrolled(self, node, items):
        """``for x in cm.static_range(n)`` / a tuple: the body once per item, x compile-time."""
        if len(items) > MAX_UNROLL:
            raise self.error(f"the loop has {len(items)} iterations, too many to unroll", node.iter)
        self.frame.loop_depth += 1
        try:
            for item in items:
                with self.at_node(node.target):
                    self.assign(node.target, item)
                self.compile_stmts(node.body)
        finally:
            self.frame.loop_depth -= 1

    def _range_loop(self, node, args):
        """``for i in range(lo, hi, step)`` -> for op (lo, hi, step, init...)."""
        if not isinstance(node.target, ast.Name):
            raise self.unsupported("unpacking in the target of a run-time for loop", node.target)
        em = self.em
        with self.at_node(node.iter):
            lo, hi, step = [0, args[0], 1] if len(args) == 1 else (args + [1])[:3]
            for x in (lo, hi, step):
                if not (isinstance(x, int)
                        or (isinstance(x, Value) and isinstance(x.type, ScalarType)
                            and (x.type.is_int or x.type.is_bool))):
                    raise em.error(f"range() bounds must be integers, got {describe(x)}")
            if is_constexpr(step) and step == 0:
                raise em.error("range() step must not be zero")
            iv_type = ops.common_elem(em, [lo, hi, step])
            lo, hi, step = (em.coerce(x, iv_type) for x in (lo, hi, step))
        var = node.target.id
        names, inits, frozen = self._loop_state(node.body, exclude={var})

        def build(names, types, weak):
            block = Block([iv_type, *types], [var, *names])
            bindings = {var: block.args[0], **self._carried_bindings(names, block.args[1:], weak)}
            env_end = self._loop_body(node.body, block, bindings)
            return [block], env_end, block.args[1:]

        names, inits, types, blocks, env_end = self._settle(node, names, inits, build)
        self._end_block(blocks[0], names, types, env_end)
        init_values = [em.coerce(v, t) for v, t in zip(inits, types)]
        op = self.builder.create("for", [lo, hi, step, *init_values], types, blocks=blocks)
        self._after_loop(node, names, op.results, env_end, frozen, [var])

    # --- while --------------------------------------------------------------------------
    def stmt_While(self, node):
        """``while c:`` -> while op: block 0 computes c, block 1 is the body."""
        if node.orelse:
            raise self.unsupported("while ... else", node)
        names, inits, frozen = self._loop_state(node.body, exclude=set())

        def build(names, types, weak):
            before, after = Block(types, names), Block(types, names)
            saved = self.frame.env
            self.frame.env = dict(saved)
            try:
                self.frame.env.update(self._carried_bindings(names, before.args, weak))
                with self.builder.at(before):
                    c = self.condition(node.test)
                    if not isinstance(c, Value):
                        raise _ConstantCondition(c)
                    self.em.effect("condition", [c, *before.args])
            finally:
                self.frame.env = saved
            env_end = self._loop_body(node.body, after, self._carried_bindings(names, after.args, weak))
            return [before, after], env_end, after.args

        try:
            names, inits, types, blocks, env_end = self._settle(node, names, inits, build)
        except _ConstantCondition as c:
            if c.value:
                raise self.error("the while condition is always true and break is not supported",
                                 node.test) from None
            return   # never runs
        self._end_block(blocks[1], names, types, env_end)
        init_values = [self.em.coerce(v, t) for v, t in zip(inits, types)]
        op = self.builder.create("while", init_values, types, blocks=blocks)
        self._after_loop(node, names, op.results, env_end, frozen, [])

    # --- loop-carried variables -----------------------------------------------------------
    def _loop_state(self, body, exclude):
        """The variables a loop carries (numbers and registers assigned in the body that exist
        before it), their initial values, and other assigned names that must not change."""
        env = self.frame.env
        names, inits, frozen = [], [], []
        assigned = set(assigned_names(body))
        for name in [n for n in env if n in assigned]:   # in the order the variables appeared
            value = env.get(name, _MISSING)
            if name in exclude or value is _MISSING or isinstance(value, Undefined):
                continue
            if is_numeric(value):
                names.append(name)
                inits.append(value)
            else:
                frozen.append(name)
        return names, inits, frozen

    @staticmethod
    def _carried_bindings(names, args, weak):
        """Carried names bound to the block arguments (or, in a weak trial, to their weak values)."""
        return {n: weak.get(n, a) if weak else a for n, a in zip(names, args)}

    def _loop_body(self, body, block, bindings):
        """Compiles a loop body into ``block``; returns the variables at its end."""
        saved = self.frame.env
        self.frame.env = dict(saved)
        self.frame.env.update(bindings)
        self.frame.loop_depth += 1
        try:
            with self.builder.at(block):
                self.compile_stmts(body)
            return self.frame.env
        finally:
            self.frame.env = saved
            self.frame.loop_depth -= 1

    def _settle(self, node, names, inits, build):
        """Builds the loop body until the carried variables' types agree with what it yields.

        ``build(names, types, weak)`` compiles the body with block arguments of ``types``; it
        returns (blocks, variables at the end, the arguments standing for the carried names).
        Weak initial values may change type (and are dropped from the carried set when the body
        never changes them); typed ones must keep theirs.
        """
        names, inits = list(names), list(inits)
        types = self._guess_types(names, inits, build)
        mismatch = None
        for _ in range(2 * len(names) + 2):
            blocks, env_end, args = build(names, types, None)
            unchanged = [k for k, n in enumerate(names) if is_weak(inits[k])
                         and (env_end[n] is args[k] or same_constant(env_end[n], inits[k]))]
            if unchanged:
                names = [n for k, n in enumerate(names) if k not in unchanged]
                inits = [v for k, v in enumerate(inits) if k not in unchanged]
                types = [t for k, t in enumerate(types) if k not in unchanged]
                continue
            new_types = [self._end_type(node, n, env_end[n], t, init)
                         for n, t, init in zip(names, types, inits)]
            if new_types == types:
                return names, inits, types, blocks, env_end
            for k, (old, new) in enumerate(zip(types, new_types)):
                if old != new:
                    mismatch = (names[k], old, new)
                    if not is_weak(inits[k]):
                        self._type_changes(node, *mismatch)
            types = [new if is_weak(init) else old for old, new, init in zip(types, new_types, inits)]
        self._type_changes(node, *mismatch)

    def _guess_types(self, names, inits, build):
        """First guess of the carried types: a trial build with the weak initial values left
        weak (``s = 0`` then ``s += x`` gives x's type); default types if that trial fails."""
        types = [v.type if isinstance(v, Value) else self._weak_type(v) for v in inits]
        weak = {n: v for n, v in zip(names, inits) if is_weak(v)}
        if not weak:
            return types
        try:
            _, env_end, _ = build(names, types, weak)
        except (CompileError, _ConstantCondition):
            return types
        for k, name in enumerate(names):
            end = env_end.get(name)
            if name not in weak:
                continue
            if isinstance(end, Value) and isinstance(end.type, (ScalarType, VectorType)):
                types[k] = end.type
            elif is_weak(end):
                try:
                    types[k] = tr.join_weak_types([inits[k], end])
                except OverflowError:
                    pass
        return types

    def _type_changes(self, node, name, old, new):
        raise self.error(f"variable '{name}' has type {old} before the loop and {new} after an "
                         f"iteration; convert it so that both agree", node)

    def _weak_type(self, value):
        try:
            return tr.default_type(value)
        except OverflowError as e:
            raise self.error(str(e)) from None

    def _end_type(self, node, name, value, t, init):
        if isinstance(value, Value) and isinstance(value.type, (ScalarType, VectorType)):
            return value.type
        if is_weak(value):
            return t if tr.weak_fits(value, t.elem) else self._weak_type(value)
        if isinstance(value, Undefined):
            raise self.error(f"variable '{name}' {value.reason}", node)
        raise self.error(f"variable '{name}' changes from {describe(init)} to {describe(value)} "
                         "inside a run-time loop", node)

    def _end_block(self, block, names, types, env_end):
        with self.builder.at(block):
            values = [self.em.coerce(env_end[n], t, what=f"variable '{n}'") for n, t in zip(names, types)]
            self.em.effect("yield", values)

    def _after_loop(self, node, names, results, env_end, frozen, loop_vars):
        env = self.frame.env
        line = self.loc(node).line
        for name in frozen:
            end = env_end.get(name, _MISSING)
            if end is not env[name] and not same_constant(end, env[name]):
                raise self.error(f"variable '{name}' holds a {describe(env[name])}, which cannot change "
                                 "inside a run-time loop", node)
        for name, value in env_end.items():
            if name not in env or isinstance(env[name], Undefined):
                if name not in loop_vars:
                    env[name] = Undefined(f"is assigned inside the loop at line {line} but not defined "
                                          "before it; define it before the loop to use it after")
        for name in loop_vars:
            env[name] = Undefined(f"is the variable of the loop at line {line} and cannot be used after it")
        for name, result in zip(names, results):
            self.bind(name, result)
