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
- ``break`` / ``continue`` (in run-time loops and in ``cm.static_range``) lower to flags,
  ordinary variables under names no Python variable can have: ``left`` (this iteration
  ran a break or continue) and ``broke`` (a break ran). The statements after one that may
  have set ``left`` at run time are compiled under ``if not left``; a ``left`` known at
  compile time ends the statement list. ``broke`` is loop-carried and ends the loop: a
  ``for`` over ``range`` with a break becomes a ``while`` op on ``not broke and iv in
  range``, a ``while`` tests ``not broke`` before its condition (the condition is not
  evaluated after a break, as in Python), and ``cm.static_range`` stops unrolling after a
  compile-time break or guards the later copies of the body with ``if not broke``. The
  conditions are scalars (uniform in a CM thread); a mask condition is an error as for any
  if. A variable a path lacks because that path left the iteration is never read there, so
  that path yields a stand-in value for it. ``for``/``while ... else`` is not supported.
- Loop-carried variables are the names the body assigns that exist before the loop.
  A weak initial value (``s = 0``) takes the type the body gives it: the body is built
  with a guessed type, and rebuilt with the type it produced until both agree.
"""
from __future__ import annotations

import ast
import builtins
import functools
from dataclasses import dataclass
from typing import Optional

from .. import language as lang
from ..errors import CompileError
from .. import limits
from ..ir import Block, Value
from ..types import ScalarType, VectorType, bool_
from . import operators as ops
from . import typing_rules as tr
from .values import Undefined, View, is_constexpr, is_weak, is_numeric, is_register, describe, same_constant

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


# --- break and continue ---------------------------------------------------------------------

@dataclass
class _LoopFlags:
    """The variable names of one loop's flags (see the module docstring)."""
    left: Optional[str] = None      # None: the body has neither break nor continue
    broke: Optional[str] = None     # None: the body has no break

    @staticmethod
    def at(depth, has_break=True):
        """The flags of the loop whose body is compiled at loop depth ``depth``; ``:`` keeps
        them apart from Python variables, the depth apart from the enclosing loops' flags."""
        return _LoopFlags(f"left:{depth}", f"broke:{depth}" if has_break else None)

    def names(self):
        return [n for n in (self.left, self.broke) if n is not None]

    def fresh(self):
        """The flags at the start of an iteration (and wherever nothing has left it yet)."""
        return dict.fromkeys(self.names(), False)


def _loop_exits(body):
    """(has break, has continue) for the loop of ``body``, not counting loops nested in it."""
    found = set()
    pending = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Break, ast.Continue)):
            found.add(type(node))
        elif isinstance(node, (ast.For, ast.While)):
            pending.extend(node.orelse)        # a loop's else clause belongs to the enclosing loop
        else:
            pending.extend(ast.iter_child_nodes(node))
    return ast.Break in found, ast.Continue in found


def _stand_in(value, other):
    """A value for a path that has left the loop iteration and lacks the variable the other
    path holds as ``other``: never read (what reads it is skipped on that path), so a zero of
    the other's type for run-time numbers, the same object for the rest."""
    if value is not _MISSING and not isinstance(value, Undefined):
        return value
    if other is _MISSING or isinstance(other, Undefined):
        return value
    if isinstance(other, tuple):
        return tuple(_stand_in(_MISSING, x) for x in other)
    if isinstance(other, Value) and is_numeric(other):
        return 0        # a weak zero: the join gives it the other path's type
    return other


class ControlFlowMixin:
    """Statement lists and control flow of ``FunctionCompiler`` (see ``visitor``)."""

    # --- statement lists and returns ------------------------------------------------
    def compile_stmts(self, stmts) -> Optional[Returned]:
        """Compiles statements in order; returns Returned when the list ends in a return.
        After a statement that may have left the loop iteration (break, continue) the rest
        runs under ``if not left``; after one that surely has, the rest is never compiled."""
        stmts = list(stmts)
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Return):
                with self.at_node(s):
                    return self._return(s)
            if isinstance(s, ast.If) and _contains_return(s):
                with self.at_node(s):
                    return self._if_with_return(s, stmts[i + 1:])
            self.stmt(s)
            left = self.frame.env.get(self._flags().left, False)
            if left is True:
                return None
            if isinstance(left, Value) and i + 1 < len(stmts):
                rest = stmts[i + 1:]
                self._unless(left, lambda: self.compile_stmts(rest), rest[0])
                return None
        return None

    # --- break and continue -------------------------------------------------------------
    def _flags(self):
        """The flags of the innermost loop being compiled."""
        return _LoopFlags.at(self.frame.loop_depth)

    def _loop_flags(self, body):
        """The flags of a loop with body ``body``, about to be compiled one level deeper."""
        has_break, has_continue = _loop_exits(body)
        if not (has_break or has_continue):
            return _LoopFlags()
        return _LoopFlags.at(self.frame.loop_depth + 1, has_break)

    def _set_flags(self, node, names):
        env = self.frame.env
        if not self.frame.loop_depth or self._flags().left not in env:
            raise self.error(f"'{type(node).__name__.lower()}' outside a loop", node)
        for name in names:
            env[name] = True

    def stmt_Break(self, node):
        if self.simd_exit(node, is_break=True):
            return
        flags = self._flags()
        self._set_flags(node, [flags.left, flags.broke])

    def stmt_Continue(self, node):
        if self.simd_exit(node, is_break=False):
            return
        self._set_flags(node, [self._flags().left])

    def _has_left(self, env):
        """Has the path that ends with variables ``env`` surely left the loop iteration?"""
        return env.get(self._flags().left, False) is True

    def _unless(self, flag, compile_rest, node):
        """``compile_rest()`` under ``if not flag`` (a run-time flag of the innermost loop)."""
        with self.at_node(node):
            cond = ops.logical_not(self.em, flag)
            fresh = {n: False for n in self._flags().names() if n in self.frame.env}

            def compile_then():
                self.frame.env.update(fresh)     # this path has not left the iteration
                return compile_rest()
            then = self._branch(compile_then)
            skipped = self._branch(lambda: None)
            self._join_branches(cond, then, skipped, node, else_left=True)

    def _return(self, node):
        if any(entry.frame is self.frame for entry in self.simd_stack):
            raise self.error("return under SIMD control flow (cm.simd) is not supported: lanes cannot "
                             "leave the kernel one by one", node)
        if self.frame.loop_depth:
            raise self.error("return inside a loop is not supported", node)
        if self.frame.is_kernel:
            if node.value is not None:
                raise self.error("a kernel cannot return a value; store results to memory", node.value)
            return Returned(None)
        value = self.expr(node.value) if node.value is not None else None
        return Returned(self.with_references(value, self.frame.env))

    def _if_with_return(self, node, rest):
        """An if whose branches may return: the rest of the list goes into both branches
        (where a branch returns first, the copy there is never compiled)."""
        if self.simd_condition(node.test) is not None:
            inner = next(n for n in ast.walk(node) if isinstance(n, ast.Return))
            raise self.error("return under SIMD control flow (cm.simd) is not supported: lanes cannot "
                             "leave the kernel one by one", inner)
        cond = self.condition(node.test)
        if not isinstance(cond, Value):
            return self.compile_stmts((node.body if cond else node.orelse) + rest)
        then_block, then_env, then_ret = self._branch(lambda: self.compile_stmts(node.body + rest))
        else_block, else_env, else_ret = self._branch(lambda: self.compile_stmts(node.orelse + rest))
        # a path that ends without a return returns None (and the reference parameters)
        with self.builder.at(then_block):
            a = then_ret.value if then_ret else self.with_references(None, then_env)
        with self.builder.at(else_block):
            b = else_ret.value if else_ret else self.with_references(None, else_env)
        plan = self._plan(f"the return value of '{self.frame.name}'", a, b)
        op = self._build_if(cond, then_block, else_block, [(plan, a)], [(plan, b)])
        return Returned(self._rebuild(plan, iter(op.results)))

    def condition(self, test):
        value = self.expr(test)
        with self.at_node(test):
            return ops.truth(self.em, value)

    # --- if -------------------------------------------------------------------------
    def stmt_If(self, node):
        mask = self.simd_condition(node.test)
        if mask is not None:
            return self.simd_if(node, mask)
        cond = self.condition(node.test)
        if not isinstance(cond, Value):
            self.compile_stmts(node.body if cond else node.orelse)
            return
        then = self._branch(lambda: self.compile_stmts(node.body))
        other = self._branch(lambda: self.compile_stmts(node.orelse))
        self._join_branches(cond, then, other, node)

    def _branch(self, compile_body):
        """Runs ``compile_body()`` into a new block with a copy of the variables; returns the
        block, the variables at its end and what compile_body returned."""
        block = Block()
        saved = self.frame.env
        self.frame.env = dict(saved)
        try:
            with self.builder.at(block):
                returned = compile_body()
            return block, self.frame.env, returned
        finally:
            self.frame.env = saved

    def _join_branches(self, cond, then, other, node, else_left=False):
        """Creates the if op of two compiled branches, each (block, variables at its end, _),
        and binds what either changed to the op's results. ``else_left``: the else branch has
        left the loop iteration even where its flags are not compile-time True."""
        before = self.frame.env
        (then_block, then_env, _), (else_block, else_env, _) = then, other
        then_left, else_left = self._has_left(then_env), else_left or self._has_left(else_env)
        changed = []
        for env in (then_env, else_env):
            for name, value in env.items():
                if before.get(name, _MISSING) is not value and name not in changed:
                    changed.append(name)
        after = dict(before)
        merged = []
        line = self.loc(node).line
        view_names = set()     # names bound to views of different regions on the two paths
        for name in changed:
            a, b = then_env.get(name, _MISSING), else_env.get(name, _MISSING)
            if then_left:
                a = _stand_in(a, b)
            if else_left:
                b = _stand_in(b, a)
            undefined = next((x for x in (a, b) if isinstance(x, Undefined)), None)
            if undefined is not None:
                after[name] = undefined
            elif a is _MISSING or b is _MISSING:
                after[name] = Undefined(f"is defined in only one branch of the if at line "
                                        f"{line}; define it before the if or in both branches")
            elif isinstance(a, View) and a.same(b):
                after[name] = a
            else:
                if isinstance(a, View) or isinstance(b, View):
                    # views of different regions: the name holds the register it reads
                    view_names.add(name)
                    a, b = self._read_in(then_block, then_env, a), self._read_in(else_block, else_env, b)
                try:
                    plan = self._plan(f"variable '{name}'", a, b)
                except CompileError as e:
                    # different types on the two paths: an error only if the name is read after
                    after[name] = Undefined(f"{e.message.removeprefix(f'variable {name!r} ')} (the if "
                                            f"at line {line}); convert it so that both agree")
                    continue
                merged.append((name, plan, a, b))
        op = self._build_if(cond, then_block, else_block,
                            [(plan, a) for _, plan, a, _ in merged], [(plan, b) for _, plan, _, b in merged])
        results = iter(op.results)
        self.frame.env = after
        for name, plan, _, _ in merged:
            self.bind(name, self._rebuild(plan, results))
            if name in view_names:
                self.frame.merged_views[name] = (f"it is a view of different registers or regions on the "
                                                 f"two paths of the if at line {line}")
        if then_left and else_left:
            after[self._flags().left] = True     # the rest of the statement list is unreachable

    def _read_in(self, block, env, value):
        """``value`` as a register at the end of ``block`` (a view is read from ``env``)."""
        if not isinstance(value, View):
            return value
        with self.builder.at(block):
            return self.read_view(value, env, tag=False)

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
        """``for x in cm.static_range(n)`` / a tuple: the body once per item, x compile-time.
        After a compile-time break the unrolling stops; after a run-time one the later copies
        of the body run under ``if not broke``."""
        count = _iterations(items)
        if count > MAX_UNROLL:
            raise self.error(f"the loop has {count} iterations, too many to unroll (at most "
                             f"{MAX_UNROLL}; use range() for a run-time loop)", node.iter)
        flags = self._loop_flags(node.body)
        self.frame.loop_depth += 1
        try:
            for done, item in enumerate(items):
                broke = self.frame.env.get(flags.broke, False)
                if broke is True:
                    break
                iteration = functools.partial(self._unrolled_iteration, node, item, flags)
                before = self.builder.created
                if isinstance(broke, Value):
                    self._unless(broke, iteration, node)
                else:
                    iteration()
                if done == 0:
                    self._check_unrolled_size(node, count, self.builder.created - before)
        finally:
            self.frame.loop_depth -= 1
            for name in flags.names():
                self.frame.env.pop(name, None)

    def _check_unrolled_size(self, node, count, per_iteration):
        """After the first copy of the body: fail now, not minutes later, when all the
        copies would pass the IR size budget."""
        builder = self.builder
        expected = builder.created + per_iteration * (count - 1)
        if expected > builder.max_ops:
            raise self.error(limits.IR_OPS.exceeded(
                expected, f"unrolling this loop ({count} iterations of about {per_iteration} "
                          "operations) would give the kernel"), node.iter)

    def _unrolled_iteration(self, node, item, flags):
        self.frame.env.update(flags.fresh())
        with self.at_node(node.target):
            self.assign(node.target, item)
        self.compile_stmts(node.body)

    def _range_loop(self, node, args):
        """``for i in range(lo, hi, step)`` -> for op (lo, hi, step, init...); with a break in
        the body, a while op (see ``_breakable_range_loop``)."""
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
            step_sign = (step > 0) - (step < 0) if is_constexpr(step) else None
            iv_type = ops.common_elem(em, [lo, hi, step])
            lo, hi, step = (em.coerce(x, iv_type) for x in (lo, hi, step))
        var = node.target.id
        flags = self._loop_flags(node.body)
        names, inits, frozen = self._loop_state(node.body, exclude={var})
        if flags.broke:
            return self._breakable_range_loop(node, (lo, hi, step), step_sign, names, inits, frozen, flags)

        def build(names, types, weak):
            block = Block([iv_type, *types], [var, *names])
            bindings = {var: block.args[0], **self._carried_bindings(names, block.args[1:], weak),
                        **flags.fresh()}
            env_end = self._loop_body(node.body, block, bindings)
            return [block], env_end, block.args[1:]

        names, inits, types, blocks, env_end = self._settle(node, names, inits, build)
        self._end_block(blocks[0], names, types, env_end)
        init_values = [em.coerce(v, t) for v, t in zip(inits, types)]
        op = self.builder.create("for", [lo, hi, step, *init_values], types, blocks=blocks)
        self._after_loop(node, names, op.results, env_end, frozen, [var], flags)

    def _breakable_range_loop(self, node, bounds, step_sign, names, inits, frozen, flags):
        """A ``for`` over ``range`` whose body has a break: a while op carrying the loop
        variable, the variables and the break flag, on ``not broke and iv in range``."""
        lo, hi, step = bounds
        iv_type, var = lo.type, node.target.id
        names, inits = names + [flags.broke], inits + [False]

        def build(names, types, weak):
            before, after = (Block([iv_type, *types], [var, *names]) for _ in range(2))
            with self.builder.at(before):
                broke = self._carried_bindings(names, before.args[1:], weak).get(flags.broke, False)
                go = ops.bool_op(self.em, "and", [ops.logical_not(self.em, broke),
                                                  self._in_range(before.args[0], hi, step, step_sign)])
                self.em.effect("condition", [go, *before.args])
            bindings = {var: after.args[0], **self._carried_bindings(names, after.args[1:], weak),
                        **flags.fresh()}
            env_end = self._loop_body(node.body, after, bindings)
            return [before, after], env_end, after.args[1:]

        names, inits, types, blocks, env_end = self._settle(node, names, inits, build)
        body = blocks[1]
        with self.builder.at(body):
            next_iv = self.em.op("add", [body.args[0], step], iv_type)
        self._end_block(body, names, types, env_end, leading=[next_iv])
        init_values = [lo, *(self.em.coerce(v, t) for v, t in zip(inits, types))]
        op = self.builder.create("while", init_values, [iv_type, *types], blocks=blocks)
        self._after_loop(node, names, op.results[1:], env_end, frozen, [var], flags)

    def _in_range(self, iv, hi, step, step_sign):
        """The for op's test as ops: ``iv < hi`` for a positive step, ``iv > hi`` for a
        negative one; a signed step of unknown sign selects at run time (as codegen does)."""
        em = self.em
        if step_sign is not None or not iv.type.is_signed:
            return ops.compare(em, "lt" if step_sign is None or step_sign > 0 else "gt", iv, hi)
        up = ops.compare(em, "gt", step, 0)
        return em.op("select", [up, ops.compare(em, "lt", iv, hi), ops.compare(em, "gt", iv, hi)], bool_)

    # --- while --------------------------------------------------------------------------
    def stmt_While(self, node):
        """``while c:`` -> while op: block 0 computes c, block 1 is the body."""
        mask = self.simd_condition(node.test)
        if mask is not None:
            return self.simd_while(node, mask)
        if node.orelse:
            raise self.unsupported("while ... else", node)
        flags = self._loop_flags(node.body)
        names, inits, frozen = self._loop_state(node.body, exclude=set())
        if flags.broke:
            names, inits = names + [flags.broke], inits + [False]

        def emit_condition(carried, names, args):
            c = self._while_test(node.test, carried.get(flags.broke, False))
            self.em.effect("condition", [c, *args])

        try:
            self.while_loop(node, names, inits, frozen, flags, emit_condition,
                            body_bindings=lambda block: flags.fresh())
        except _ConstantCondition as c:
            if c.value:
                raise self.error("the while condition is always true and the loop has no break",
                                 node.test) from None
            # never runs

    def while_loop(self, node, names, inits, frozen, flags, emit_condition, body_bindings,
                   compile_body=lambda compile: compile()):
        """The while op of ``while c:`` and ``while cm.simd(m):``.  Block 0 evaluates the test
        with the carried variables bound: ``emit_condition(carried, names, args)`` emits its
        ``condition`` effect.  Block 1 is the body, compiled (through ``compile_body``, which
        may wrap it) with the carried variables and ``body_bindings(block)`` bound.  The
        carried variables' types settle first (_settle)."""
        def build(names, types, weak):
            before, after = Block(types, names), Block(types, names)
            saved = self.frame.env
            self.frame.env = dict(saved)
            try:
                carried = self._carried_bindings(names, before.args, weak)
                self.frame.env.update(carried)
                with self.builder.at(before):
                    emit_condition(carried, names, before.args)
            finally:
                self.frame.env = saved
            bindings = {**self._carried_bindings(names, after.args, weak), **body_bindings(after)}
            env_end = compile_body(lambda: self._loop_body(node.body, after, bindings))
            return [before, after], env_end, after.args

        names, inits, types, blocks, env_end = self._settle(node, names, inits, build)
        self._end_block(blocks[1], names, types, env_end)
        init_values = [self.em.coerce(v, t) for v, t in zip(inits, types)]
        op = self.builder.create("while", init_values, types, blocks=blocks)
        self._after_loop(node, names, op.results, env_end, frozen, [], flags)

    def _while_test(self, test, broke):
        """The condition of a while loop: ``test``, and with a run-time break flag ``if broke:
        False else: test`` (Python does not evaluate the test after a break)."""
        if not isinstance(broke, Value):
            c = self.condition(test)
            if not isinstance(c, Value):
                raise _ConstantCondition(c)
            return c
        test_block = Block()
        with self.builder.at(test_block):
            c = self.condition(test)
        if not isinstance(c, Value) and not test_block.ops:    # e.g. ``while True:``
            if not c:
                raise _ConstantCondition(c)
            return ops.logical_not(self.em, broke)
        stop_block = Block()
        with self.builder.at(stop_block):
            self.em.effect("yield", [self.em.const(bool_, False)])
        with self.builder.at(test_block):
            self.em.effect("yield", [self.em.as_bool(c)])
        return self.builder.create("if", [broke], [bool_], blocks=[stop_block, test_block]).results[0]

    # --- loop-carried variables -----------------------------------------------------------
    def _loop_state(self, body, exclude):
        """The variables a loop carries (numbers and registers assigned in the body that exist
        before it), their initial values, and other assigned names that must not change."""
        env = self.frame.env
        names, inits, frozen = [], [], []
        assigned = set(assigned_names(body))
        rebound = self.rebound_names(ast.Module(body=list(body), type_ignores=[]))
        for name, value in list(env.items()):
            if isinstance(value, View) and (name in rebound or value.root in rebound):
                # a view the body rebinds, or of a variable it rebinds: from here on the name
                # holds the register it reads (as after a rebinding outside a loop)
                env[name] = self.read_view(value, tag=False)
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
                for name in bindings:       # a carried name the body bound to a view yields its register
                    if isinstance(self.frame.env.get(name), View):
                        self.frame.env[name] = self.read_view(self.frame.env[name], tag=False)
            return self.frame.env
        finally:
            self.frame.env = saved
            self.frame.loop_depth -= 1

    def _settle(self, node, names, inits, build):
        """``_settle_types`` with the carried names of weak initial values marked: their type
        is the loop's to find, so ``s += x`` in the body does not convert back to a guess."""
        saved = self.frame.weak_carried
        self.frame.weak_carried = saved | {n for n, v in zip(names, inits) if is_weak(v)}
        try:
            return self._settle_types(node, names, inits, build)
        finally:
            self.frame.weak_carried = saved

    def _settle_types(self, node, names, inits, build):
        """Builds the loop body until the carried variables' types agree with what it yields.

        ``build(names, types, weak)`` compiles the body with block arguments of ``types``; it
        returns (blocks, variables at the end, the arguments standing for the carried names).
        Weak initial values may change type (and are dropped from the carried set when the body
        never changes them); typed ones must keep theirs.
        """
        names, inits = list(names), list(inits)
        types = self._guess_types(names, inits, build)
        mismatch = None
        rounds = 0
        while rounds < 2 * len(names) + 2:
            rounds += 1
            blocks, env_end, args = build(names, types, None)
            written = self._written_through(names, env_end, args)
            if written:     # variables the body wrote through a view or a func's reference
                names += written
                inits += [self.frame.env[n] for n in written]
                types += [self.frame.env[n].type for n in written]
                continue
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

    def _written_through(self, names, env_end, args):
        """Registers of variables from before the loop that its body changed without assigning
        the name (through a view, or as a @cm.func's reference argument)."""
        before = self.frame.env
        carried_args = set(map(id, args))
        return [n for n, v in before.items()
                if n not in names and is_register(v) and n in env_end and env_end[n] is not v
                and id(env_end[n]) not in carried_args and ":" not in n]

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

    def _end_block(self, block, names, types, env_end, leading=()):
        """Ends a loop body with the yield of ``leading`` values and the carried variables."""
        with self.builder.at(block):
            values = [self.em.coerce(env_end[n], t, what=f"variable '{n}'") for n, t in zip(names, types)]
            self.em.effect("yield", [*leading, *values])

    def _after_loop(self, node, names, results, env_end, frozen, loop_vars, flags):
        """Binds the carried variables to the loop's results; the loop's own flags end with it."""
        env = self.frame.env
        line = self.loc(node).line
        for name in frozen:
            end = env_end.get(name, _MISSING)
            if end is not env[name] and not same_constant(end, env[name]):
                raise self.error(f"variable '{name}' holds a {describe(env[name])}, which cannot change "
                                 "inside a run-time loop", node)
        for name, value in env_end.items():
            if name not in env or isinstance(env[name], Undefined):
                if name not in loop_vars and name not in flags.names():
                    env[name] = Undefined(f"is assigned inside the loop at line {line} but not defined "
                                          "before it; define it before the loop to use it after")
        for name in loop_vars:
            env[name] = Undefined(f"is the variable of the loop at line {line} and cannot be used after it")
        for name, result in zip(names, results):
            if name not in flags.names():
                self.bind(name, result)


def _iterations(items) -> int:
    """len(items), also for ranges longer than a C ssize_t (``cm.static_range(2**63)``)."""
    if isinstance(items, range):
        step = items.step
        span = (items.stop - items.start) if step > 0 else (items.start - items.stop)
        return max(0, (span + abs(step) - 1) // abs(step))
    return len(items)
