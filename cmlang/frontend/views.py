"""Registers with numpy's view rules, lowered to SSA in the front end.

A region read (``v[a:b]``, ``m[i]``, ``m.row(i)``, ``v.select(...)``, ``v.format(T)``) of a
variable's register is a *view* of it. The IR has no references: a name bound to a view holds
a ``values.View`` (the variable, ``root``, and the steps from its register: regions and
``format`` types). Reading the name re-reads the root (rdregion/bitcast of its current
value); writing through it (``r[0] = 1``, ``r += 1``, ``r[...] = x``) writes the region back
through every step (wrregion/bitcast) and rebinds the root, so control flow carries and
merges the root like any variable.

Values are tagged, not wrapped: ``self.views`` maps a register value read through a view to
that view, and ``self._last_root`` remembers the variable whose register the latest name
lookup returned (``a = b`` copies, so only the expression that reads the name right away may
take a view of it). Assigning a name a new value detaches the views of its old register
(they become independent registers, as numpy's views keep the old array).

``@cm.func`` register arguments are references: the func's writes to a parameter's
elements are copied back to the caller's variable (or view) when the call returns.
"""
from __future__ import annotations

import ast

from ..ir import Value
from ..types import VectorType
from . import regions
from .values import View, Undefined, is_register, describe


class ViewsMixin:
    """The view half of ``FunctionCompiler`` (see the module docstring)."""

    def _init_views(self):
        self.views = {}          # id(value) -> (value, View): register values read through a view
        self._last_root = None   # (value, variable name) of the latest lookup of a register variable
        self._view_reads = {}    # id(View) -> (View, root value, block, value): reads to reuse

    # --- which view a value is ----------------------------------------------------------
    def view_of(self, value):
        """The view ``value`` was just read through (a variable is the view with no steps), or
        None for a value that is not (part of) a variable's register."""
        if not (isinstance(value, Value) and isinstance(value.type, VectorType)):
            return None
        entry = self.views.get(id(value))
        if entry is not None and entry[0] is value and entry[1].frame is self.frame:
            return entry[1]
        if self._last_root is not None and self._last_root[0] is value:
            return View(self._last_root[1], self.frame)
        return None

    def as_view(self, value, view, step):
        """Records that ``value`` is ``view`` (of the register it was read from) one ``step`` on."""
        if view is not None and step is not None and isinstance(value, Value):
            self.views[id(value)] = (value, view.then(step))
        return value

    # --- reading and writing through views --------------------------------------------------
    def read_view(self, view: View, env=None, tag=True):
        """The current value of ``view`` (from the variables ``env``, by default the frame's)."""
        env = self.frame.env if env is None else env
        base = self._root_value(view, env)
        cached = self._view_reads.get(id(view))
        if cached is not None and cached[0] is view and cached[1] is base and cached[2] is self.builder.block:
            value = cached[3]
        else:
            value = base
            for step in view.steps:
                value = self._step(value, step)
            self._view_reads[id(view)] = (view, base, self.builder.block, value)
        if tag:
            self.views[id(value)] = (value, view)
        return value

    def _root_value(self, view, env):
        base = env.get(view.root)
        if isinstance(base, Undefined):
            raise self.error(f"'{view.root}', whose register a view reads, {base.reason}")
        if not is_register(base):
            raise self.error(f"a view of '{view.root}' outlived its register")
        return base

    def _step(self, value, step):
        if isinstance(step, VectorType):
            return self.em.op("bitcast", [value], step)
        return regions.read_region(self.em, value, step)

    def write_view(self, view: View, value, key=None):
        """Writes ``value`` to ``view`` (to its part ``key``, a subscript, when given): every
        step back to the root becomes a wrregion (or bitcast), and the root is rebound."""
        env = self.frame.env
        parents = [self._root_value(view, env)]
        for step in view.steps:
            parents.append(self._step(parents[-1], step))
        steps = list(view.steps)
        part = None         # the current value of the written part (for SIMD control flow)
        if key is not None:
            steps.append(regions.subscript_region(self.em, parents[-1], key))
            if self.simd_stack and steps[-1].shape is not None:
                part = regions.read_region(self.em, parents[-1], steps[-1])
        elif steps:
            part = parents.pop()       # the view's own value: replaced whole
        if not steps:       # the whole variable
            target = parents[0].type
            new = self.em.coerce(regions.reshaped(self.em, value, target.shape), target)
        else:
            new = self.simd_merge_part(parents[0], value, part)
            for step, parent in reversed(list(zip(steps, parents))):
                if isinstance(step, VectorType):
                    new = self.em.op("bitcast", [self.em.coerce(regions.reshaped(self.em, new, step.shape), step)],
                                     parent.type)
                else:
                    new = regions.write_region(self.em, parent, step, new)
        new = self.simd_merge_root(parents[0], new)
        if not new.hint:
            new.hint = view.root
        env[view.root] = new

    def target_view(self, node):
        """The view (or variable) that an assignment to a subscript of ``node`` writes."""
        if isinstance(node, ast.Name):
            name = node.id
            bound = self.frame.env.get(name)
            if isinstance(bound, View):
                return bound
            reason = self.frame.merged_views.get(name)
            if reason is not None:
                raise self.error(f"cannot write through '{name}': {reason}", node)
            base = self.lookup(name, node)
            if not is_register(base):
                if isinstance(base, tuple):
                    raise self.error(f"'{name}' is a tuple; tuples cannot be changed", node)
                raise self.error(f"cannot assign to a region of {describe(base)} '{name}'", node)
            return View(name, self.frame)
        value = self.expr(node)
        view = self.view_of(value)
        if view is None:
            raise self.error("cannot assign to a region of a value that is not a variable's register "
                             "or a view of one", node)
        return view

    # --- binding names --------------------------------------------------------------------
    def bind_value(self, name, value):
        """Binds ``name``: to a view when ``value`` was read through one of this function's
        variables (other than ``name`` itself), else to the value."""
        entry = self.views.get(id(value)) if isinstance(value, Value) else None
        if entry is not None and entry[0] is value and entry[1].frame is self.frame and entry[1].root != name:
            if not value.hint:
                value.hint = name
            self.frame.env[name] = entry[1]
            return
        if isinstance(value, Value) and not value.hint:
            value.hint = name
        self.frame.env[name] = value

    def rebind(self, name, value):
        """``name = value`` in the source: views of the register ``name`` held keep that
        register (they become independent of ``name``), then ``name`` is bound."""
        env = self.frame.env
        if is_register(env.get(name)):
            for other, bound in list(env.items()):
                if isinstance(bound, View) and bound.root == name and other != name:
                    env[other] = self.read_view(bound, tag=False)
        self.frame.merged_views.pop(name, None)
        self.bind_value(name, value)

    # --- @cm.func arguments by reference -------------------------------------------------------
    @staticmethod
    def rebound_names(fdef):
        """Names a function body assigns whole (``x = ...``, loop targets); ``x += 1`` and
        subscript writes are in place."""
        names = set()
        for node in ast.walk(fdef):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.For)):
                targets = [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
        return names

    def with_references(self, value, env):
        """A func's result with the final values of its reference parameters (see ``inline``)."""
        refs = self.frame.ref_params
        if not refs:
            return value
        return (value, tuple(self.read_view(env[p], env, tag=False) if isinstance(env[p], View) else env[p]
                             for p in refs))
