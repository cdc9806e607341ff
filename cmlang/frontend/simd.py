"""SIMD control flow (CM's ``SIMD_IF`` / ``SIMD_ELSE`` / ``SIMD_DO_WHILE``), lowered to predication.

``if cm.simd(mask): ... elif cm.simd(m2): ... else: ...`` and ``while cm.simd(mask): ...``
run their bodies for the lanes where the mask is true. The IR gets no new op: the body is
compiled once, straight-line, under the *active mask* (a ``vector<bool, W>``), and

- an assignment of a register of W elements (``x = e``, ``x += e``, and element or region
  writes ``x[i] = s``, ``x[a:b] = r`` of a register ``x`` of W elements) becomes
  ``select(active, new, old)``: element i changes only where lane i is active;
- a region write of W elements into a register of another size (``m[r] = row`` of a matrix
  with rows of W) merges the region the same way: element i of the region with lane i;
- ``cm.load``/``cm.store`` of W elements become gathers/scatters with the active mask,
  ``cm.gather``/``cm.scatter`` of W offsets get it and-ed into their mask (builtins_impl);
- scalars and registers of other sizes are written as usual, and the ops of the body run
  whatever the mask (their results only reach memory and W-element registers through the
  merges above).

``while cm.simd(mask)`` is a ``while`` op that carries the lanes still in the loop
(``simd_act:D``): before each iteration (a while, not CM's do-while) the mask is evaluated
under those lanes, the lanes where it is false leave, and the loop ends when none is left.
``break`` and ``continue`` in its body act per lane: the lanes active at the statement are
added to ``simd_left:D`` (left this iteration; reset every iteration) and, for ``break``,
removed from ``simd_act:D``. Both are ordinary variables under names no Python variable can
have, so uniform ``if`` ops inside the body merge them like any variable.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Optional

from .. import language as lang
from ..ir import Block, Value
from ..types import VectorType, bool_
from . import regions
from .values import Undefined, View, is_register, is_weak, describe

_MISSING = object()


def act_name(depth):
    """The lanes still in the ``while cm.simd`` loop whose body is at loop depth ``depth``."""
    return f"simd_act:{depth}"


def left_name(depth):
    """The lanes that ran a break or continue in the current iteration of that loop."""
    return f"simd_left:{depth}"


@dataclass
class _Entry:
    """One level of SIMD control flow being compiled."""
    frame: object            # the Frame whose variables hold the loop's lane sets
    depth: int               # frame.loop_depth where the level was entered
    mask: Optional[Value]    # a SIMD if: the lanes its branch runs for; a loop body: None (simd_act)
    width: int


class SimdMixin:
    """SIMD control flow of ``FunctionCompiler`` (see the module docstring)."""

    def _init_simd(self):
        self.simd_stack = []
        self._mask_cache = {}
        self.em.simd_lanes = self.simd_lanes

    # --- the active mask ------------------------------------------------------------------
    def simd_mask(self) -> Optional[Value]:
        """The lanes the statement being compiled runs for (None outside SIMD control flow)."""
        if not self.simd_stack:
            return None
        top = self.simd_stack[-1]
        env = top.frame.env
        base = env[act_name(top.depth)] if top.mask is None else top.mask
        left = env.get(left_name(top.depth))
        if not isinstance(left, Value):
            return base
        key = (id(top), id(base), id(left), id(self.builder.block))
        cached = self._mask_cache.get(key)
        if cached is not None and cached[0] is base and cached[1] is left and cached[2] is self.builder.block:
            return cached[3]
        em = self.em
        value = em.op("and", [base, em.op("not", [left], left.type)], base.type)
        self._mask_cache[key] = (base, left, self.builder.block, value)
        return value

    def simd_lanes(self, n):
        """The active mask when SIMD control flow of ``n`` lanes is being compiled, else None
        (what memory builtins of ``n`` elements are predicated with)."""
        if self.simd_stack and self.simd_stack[-1].width == n:
            return self.simd_mask()
        return None

    def simd_select(self, mask, new, old):
        """``new`` in the active lanes, ``old`` elsewhere (element i goes with lane i)."""
        if mask.type.shape != new.type.shape:
            mask = self.em.op("rdregion", [mask], VectorType(bool_, new.type.shape), offset=0, vsize=1,
                              vstride=0, hsize=mask.type.size, hstride=1)
        return self.em.op("select", [mask, new, old], new.type)

    def simd_assign(self, name, value):
        """``name = value`` under SIMD control flow. A variable holding a register of the mask's
        width is written in the active lanes only: the value must be a register of its type, or
        a number or scalar (broadcast, as CM assigns a scalar to a vector). A register of the
        mask's width assigned to a variable that held something else is an error; a new
        variable is bound as it is (its inactive lanes are unspecified)."""
        mask = self.simd_mask()
        if mask is None:
            return value
        width = mask.type.size
        old = self.frame.env.get(name, _MISSING)
        if old is _MISSING or isinstance(old, Undefined):
            return value
        if isinstance(old, View):
            old = self.read_view(old, tag=False)
        old_is_lanes = is_register(old) and old.type.size == width
        if not old_is_lanes and not (is_register(value) and value.type.size == width):
            return value        # neither the variable nor the value has the mask's width
        if old_is_lanes and not is_register(value) and (is_weak(value) or isinstance(value, Value)):
            value = self.em.coerce(value, old.type)
        if not (old_is_lanes and is_register(value) and value.type == old.type):
            raise self.error(f"'{name}' is assigned {describe(value)} under cm.simd, which writes only "
                             f"the active lanes of the {width}-lane mask, but it holds {describe(old)} "
                             f"before; give it the value's type first (e.g. {name} = cm.zeros(...)), "
                             "convert the value, or use a new name")
        return self.simd_select(mask, value, old)

    def simd_merge_root(self, old_root, new_root):
        """A write through a view (``x[i] = s``, ``x += e``, ``r = x[0:8]; r[0] = 1``) of a
        variable with the mask's width: element i of the variable goes with lane i."""
        mask = self.simd_mask()
        if mask is None or old_root.type.size != mask.type.size:
            return new_root
        return self.simd_select(mask, new_root, old_root)

    def simd_merge_part(self, root, value, part):
        """The value written to a region ``part`` of a variable ``root`` of another width
        (``m[r] = row``): merged with the region's current elements when the region has the
        mask's width (element i of the region goes with lane i)."""
        mask = self.simd_mask()
        if mask is None or root.type.size == mask.type.size or not is_register(part) \
                or part.type.size != mask.type.size:
            return value
        new = self.em.coerce(regions.reshaped(self.em, value, part.type.shape), part.type,
                             what="the value written")
        return self.simd_select(mask, new, part)

    # --- if cm.simd(...) / while cm.simd(...) ---------------------------------------------------
    def simd_condition(self, test):
        """The mask expression of a ``cm.simd(mask)`` if/while test, or None for another test."""
        if not isinstance(test, ast.Call):
            return None
        func = test.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name != "simd" or self.expr(func) is not lang.simd:
            return None
        if test.keywords or len(test.args) != 1 or isinstance(test.args[0], ast.Starred):
            raise self.error("cm.simd() takes one argument, the mask (a register with one element per lane)",
                             test)
        return test.args[0]

    def _lane_mask(self, node):
        """The mask of ``cm.simd(node)`` as a vector<bool, W> (nonzero elements are true)."""
        value = self.expr(node)
        with self.at_node(node):
            if not (is_register(value)):
                raise self.error(f"cm.simd() needs a register mask with one element per lane, got "
                                 f"{describe(value)}; use a plain if/while for a scalar condition", node)
            mask = self.em.as_bool(value)
            if mask.type.is_matrix:
                mask = self.em.op("rdregion", [mask], VectorType(bool_, (mask.type.size,)), offset=0, vsize=1,
                                  vstride=0, hsize=mask.type.size, hstride=1)
            if self.simd_stack and self.simd_stack[-1].width != mask.type.size:
                raise self.error(f"cm.simd() mask of {mask.type.size} lanes inside SIMD control flow of "
                                 f"{self.simd_stack[-1].width} lanes; nested SIMD control flow keeps "
                                 "the width", node)
        return mask

    def _under(self, entry, compile_body):
        self.simd_stack.append(entry)
        try:
            return compile_body()
        finally:
            self.simd_stack.pop()

    def simd_if(self, node, mask_node):
        """``if cm.simd(m): A else: B``: A under active & m, then B under active & ~m."""
        em = self.em
        cond = self._lane_mask(mask_node)
        outer = self.simd_mask()
        with self.at_node(node):
            taken = cond if outer is None else em.op("and", [outer, cond], cond.type)
            self._under(_Entry(self.frame, self.frame.loop_depth, taken, cond.type.size),
                        lambda: self.compile_stmts(node.body))
            if node.orelse:
                other = em.op("not", [cond], cond.type)
                if outer is not None:
                    other = em.op("and", [outer, other], cond.type)
                self._under(_Entry(self.frame, self.frame.loop_depth, other, cond.type.size),
                            lambda: self.compile_stmts(node.orelse))

    def simd_exit(self, node, is_break):
        """``break``/``continue``: per lane in a ``while cm.simd`` loop (returns True when done
        here); a uniform loop's break under an ``if cm.simd`` made inside it is an error."""
        depth, env = self.frame.loop_depth, self.frame.env
        word = "break" if is_break else "continue"
        if left_name(depth) in env:
            em = self.em
            lanes = self.simd_mask()
            env[left_name(depth)] = em.op("or", [env[left_name(depth)], lanes], lanes.type)
            if is_break:
                act = env[act_name(depth)]
                env[act_name(depth)] = em.op("and", [act, em.op("not", [lanes], lanes.type)], lanes.type)
            return True
        if self.simd_stack and self.simd_stack[-1].frame is self.frame and self.simd_stack[-1].depth == depth \
                and depth > 0:
            raise self.error(f"'{word}' under 'if cm.simd' would leave the loop in some lanes only; per-lane "
                             f"{word} needs the innermost loop to be 'while cm.simd(...)'", node)
        return False

    def simd_while(self, node, mask_node):
        """``while cm.simd(m):`` -> while op carrying the lanes still in the loop (see the module
        docstring)."""
        if node.orelse:
            raise self.unsupported("while ... else", node)
        em = self.em
        depth = self.frame.loop_depth + 1
        act, left = act_name(depth), left_name(depth)
        with self.builder.at(Block()):            # a trial evaluation, for the width only
            width = self._lane_mask(mask_node).type.size
        lanes_t = VectorType(bool_, (width,))
        with self.at_node(node):
            outer = self.simd_mask()
            entering = outer if outer is not None else em.const(lanes_t, True)
        names, inits, frozen = self._loop_state(node.body, exclude=set())
        names, inits = names + [act], inits + [entering]

        def emit_condition(carried, names, args):
            still = carried[act]
            mask = self._under(_Entry(self.frame, depth, still, width), lambda: self._lane_mask(mask_node))
            with self.at_node(node.test):
                going = em.op("and", [still, mask], lanes_t)
                go = em.op("reduce", [going], bool_, kind="or", axis=None)
                em.effect("condition", [go, *(going if n == act else a for n, a in zip(names, args))])

        def body_bindings(block):
            with self.builder.at(block), self.at_node(node):
                return {left: em.const(lanes_t, False)}

        from .control_flow import _LoopFlags
        self.while_loop(node, names, inits, frozen, _LoopFlags(left, act), emit_condition, body_bindings,
                        compile_body=lambda compile: self._under(_Entry(self.frame, depth, None, width), compile))
