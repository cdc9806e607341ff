"""Walking IR blocks and lowering structured control flow (``for``, ``while``, ``if``) to
LLVM basic blocks and phis.

Shared by the SIMT lowering (``simt.py``) and the vector-compute lowering (``vc.py``): op
dispatch and the block structure are the same on both targets; only the shape of a lowered
value differs (a SIMT register is a ``Reg`` of per-lane slots, a VC register is one LLVM
vector, a VC pointer a ``Pointer``), and that difference is confined to the hooks below.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Value, walk_block
from cmlang.types import VectorType
from cmlang.ir.ops import BINARY, UNARY, IDS
from cmlang.passes import constant_value
from .llvm_builtins import I32


class StructuredControlFlow:
    """Mixin: ``lower_kernel_body``, ``lower_block``, ``lower_op`` (dispatch to ``op_<opcode>``)
    and the ops that own blocks, ``op_for``, ``op_while`` and ``op_if``.

    The class mixing this in provides ``self.fn`` (the IR function), ``self.profile`` (the
    device profile), ``self.values`` (IR value -> lowered value), ``self.b`` (the
    ``ir.IRBuilder`` at the current position),
    ``self.kernel`` (the ``ir.Function`` being built), the ``op_*`` methods (including
    ``op_binary``, ``op_unary`` and ``op_id`` for those op families) and these hooks:

    ``_unsupported_op_message(op)``
        The error message for an op the target has no lowering for.
    ``_phi_like(template)``
        A lowered value of the same kind and type as ``template`` whose LLVM values are
        fresh phis at the builder's position: one per slot of a SIMT ``Reg``, one for a VC
        vector or a scalar. A value with nothing to merge (a VC SLM pointer: a compile-time
        offset) is returned as it is.
    ``_add_incoming_value(phi_value, value, block)``
        Adds ``value`` (shaped like ``phi_value``) as the incoming value from ``block`` to
        every phi inside ``phi_value``.
    ``_visibly_uniform(value)`` (optional; the default returns ``value``)
        Called only where the device profile asks for it, the CPU runtime's workaround
        ``profile.cpu.broadcast_loop_bounds``: a ``for`` loop's scalar bound or step, or a
        ``while`` condition computed with a scalar min/max/abs, in a form the target's
        compiler can see is the same in every lane. Scalars are uniform by the execution
        model, but the CPU runtime's vectorizer cannot always prove it, and then runs the
        whole loop under a lane mask. A ``while`` condition that does not change inside
        the loop goes through it too: the hook's value must be one the optimizer cannot
        hoist out of the loop, so the loop keeps its exit (LLVM turns ``while c:`` with an
        invariant ``c`` into a loop with no exit at all, and the CPU runtime's vectorizer
        gives up on a kernel holding one; see ``simt.py``). A loop with no exit is correct
        code elsewhere (an Intel GPU compiler takes it), so other profiles get none of
        this. (Other while conditions are left alone: a convergent call in the loop header
        stops LLVM from rotating the loop.)
    """

    def lower_kernel_body(self):
        """Lower ``self.fn``'s body at the builder's position, ending it with ``ret void``."""
        term = self.lower_block(self.fn.body)
        if term is not None and term.opcode != "return":
            raise CompileError(f"kernel body ends in '{term.opcode}'", term.loc)
        if self.b.block.terminator is None:
            self.b.ret_void()

    def lower_block(self, block, args=()):
        """Lower the ops of ``block`` (binding its args); returns its terminator op, unlowered."""
        for a, v in zip(block.args, args):
            self.values[a] = v
        for op in block.ops:
            if op.opcode in ("yield", "condition"):
                return op
            if op.opcode == "return":
                if block is not self.fn.body:
                    raise CompileError("'return' inside control flow is not supported", op.loc)
                self.b.ret_void()
                return op
            self.lower_op(op)
        return None

    def lower_op(self, op):
        """Lower ``op`` with ``op_<opcode>`` (or the binary / unary / id family method) and
        record its results in ``self.values``; errors without a location get ``op``'s."""
        method = getattr(self, f"op_{op.opcode}", None)
        if method is None:
            method = (self.op_binary if op.opcode in BINARY else self.op_unary if op.opcode in UNARY
                      else self.op_id if op.opcode in IDS else None)
        if method is None:
            raise CompileError(self._unsupported_op_message(op), op.loc)
        try:
            result = method(op)
        except CompileError as e:
            if e.loc is None and op.loc is not None:
                raise CompileError(e.message, op.loc) from None
            raise
        if op.results:
            results = result if len(op.results) > 1 else [result]
            for r, v in zip(op.results, results):
                self.values[r] = v

    def get(self, value: Value):
        return self.values[value]

    def operands(self, op):
        return [self.values[v] for v in op.operands]

    def counted_loop(self, count: int, carried, body, name="loop"):
        """``for i in range(count)`` (count >= 1, i an i32) carrying a list of LLVM values:
        ``body(i, values)`` emits one iteration and returns the next values. A loop the
        lowering itself makes (a dpas over k, a block's rows), not one of the kernel's;
        ``name`` names its blocks."""
        b = self.b
        pre = b.block
        loop = self.kernel.append_basic_block(name)
        exit_bb = self.kernel.append_basic_block(f"{name}.exit")
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(I32)
        phis = [b.phi(v.type) for v in carried]
        i.add_incoming(ir.Constant(I32, 0), pre)
        for phi, v in zip(phis, carried):
            phi.add_incoming(v, pre)
        nxt = body(i, phis)
        i_next = b.add(i, ir.Constant(I32, 1))
        latch = b.block
        for phi, v in zip(phis, nxt):
            phi.add_incoming(v, latch)
        i.add_incoming(i_next, latch)
        b.cbranch(b.icmp_unsigned("<", i_next, ir.Constant(I32, count)), loop, exit_bb)
        b.position_at_end(exit_bb)
        return nxt

    def _phis_like(self, templates):
        return [self._phi_like(t) for t in templates]

    def _add_incoming(self, phi_values, values, block):
        for phi_value, value in zip(phi_values, values):
            self._add_incoming_value(phi_value, value, block)

    def _yielded(self, term):
        """The lowered operands of a block's terminator (none when the block falls through)."""
        return self.operands(term) if term is not None else []

    @staticmethod
    def _results(op, values):
        """An op's lowered result: the single value, or the list for zero or several results."""
        return values if len(op.results) != 1 else values[0]

    def _enter_loop(self, header_name, body_name, exit_name):
        """Append a loop's header, body and exit blocks and branch into the header; returns
        (the block branched from, header, body, exit), the builder at the header."""
        b = self.b
        header = self.kernel.append_basic_block(header_name)
        body_bb = self.kernel.append_basic_block(body_name)
        exit_bb = self.kernel.append_basic_block(exit_name)
        pre = b.block
        b.branch(header)
        b.position_at_end(header)
        return pre, header, body_bb, exit_bb

    def op_for(self, op):
        b = self.b
        lo, hi, step, *init = self.operands(op)
        if self.profile.cpu.broadcast_loop_bounds:
            lo, hi, step = (self._visibly_uniform(v) for v in (lo, hi, step))
        pre, header, body_bb, exit_bb = self._enter_loop("for.header", "for.body", "for.exit")
        iv = b.phi(lo.type)
        carried = self._phis_like(init)
        iv.add_incoming(lo, pre)
        self._add_incoming(carried, init, pre)
        b.cbranch(self._loop_test(op.operands[2], iv, hi, step, op.operands[0].type), body_bb, exit_bb)
        b.position_at_end(body_bb)
        nxt = self._yielded(self.lower_block(op.blocks[0], [iv] + carried))
        iv_next = b.add(iv, step)
        latch = b.block
        b.branch(header)
        iv.add_incoming(iv_next, latch)
        self._add_incoming(carried, nxt, latch)
        b.position_at_end(exit_bb)
        return self._results(op, carried)

    def _visibly_uniform(self, value):
        return value

    def _loop_test(self, step_value, iv, hi, step, t):
        """``iv < hi`` for a positive step, ``iv > hi`` for a negative one; a signed step
        whose sign is unknown at compile time selects between the two at run time."""
        b = self.b
        cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
        sign = constant_value(step_value)
        if sign is not None or not t.is_signed:
            return cmp("<", iv, hi) if sign is None or sign > 0 else cmp(">", iv, hi)
        up = b.icmp_signed(">", step, ir.Constant(step.type, 0))
        return b.select(up, cmp("<", iv, hi), cmp(">", iv, hi))

    def op_if(self, op):
        b = self.b
        (cond,) = self.operands(op)
        then_bb = self.kernel.append_basic_block("if.then")
        else_bb = self.kernel.append_basic_block("if.else")
        merge_bb = self.kernel.append_basic_block("if.end")
        b.cbranch(cond, then_bb, else_bb)
        ends = []       # (block the branch ends in, values it yields)
        for bb, block in zip((then_bb, else_bb), list(op.blocks) + [None] * (2 - len(op.blocks))):
            b.position_at_end(bb)
            term = self.lower_block(block) if block is not None else None
            ends.append((b.block, self._yielded(term)))
            b.branch(merge_bb)
        b.position_at_end(merge_bb)
        if not op.results:
            return None
        merged = self._phis_like(ends[0][1])
        for block, vals in ends:
            self._add_incoming(merged, vals, block)
        return self._results(op, merged)

    def op_while(self, op):
        b = self.b
        init = self.operands(op)
        before, after = op.blocks
        pre, header, body_bb, exit_bb = self._enter_loop("while.cond", "while.body", "while.exit")
        carried = self._phis_like(init)
        self._add_incoming(carried, init, pre)
        cond_op = self.lower_block(before, carried)
        c, *passed = self.operands(cond_op)
        if self.profile.cpu.broadcast_loop_bounds and (
                _computes_scalar_min_max_abs(before) or _is_loop_invariant(cond_op.operands[0], op)):
            c = self._visibly_uniform(c)
        b.cbranch(c, body_bb, exit_bb)
        b.position_at_end(body_bb)
        nxt = self._yielded(self.lower_block(after, passed))
        latch = b.block
        b.branch(header)
        self._add_incoming(carried, nxt, latch)
        b.position_at_end(exit_bb)
        return self._results(op, passed)


# Ops whose result depends only on their operands (no memory, no lane position).
_PURE_OPS = set(BINARY) | set(UNARY) | {"const", "splat", "build", "cmp", "select", "convert",
                                        "fma", "rdregion", "extract", "reduce"}


def _is_loop_invariant(value, loop) -> bool:
    """Whether ``value`` is the same in every iteration of ``loop`` (conservative): made
    outside the loop, or by pure ops inside it from such values."""
    inside = {id(op) for block in loop.blocks for op in walk_block(block)}
    inner_blocks = {id(block) for op in [loop] + [o for b in loop.blocks for o in walk_block(b)]
                    for block in op.blocks}

    def invariant(v):
        op = v.defining_op
        if op is None:
            return id(v.owner) not in inner_blocks
        if id(op) not in inside:
            return True
        return op.opcode in _PURE_OPS and all(invariant(x) for x in op.operands)
    return invariant(value)


def _computes_scalar_min_max_abs(block) -> bool:
    """Whether a block computes a scalar min, max or abs (which the optimizer may turn into
    a builtin call whose result a vectorizing compiler takes as per-lane)."""
    for op in block.ops:
        if op.opcode in ("min", "max", "abs") and op.results and not isinstance(op.results[0].type, VectorType):
            return True
        if any(_computes_scalar_min_max_abs(inner) for inner in op.blocks):
            return True
    return False
