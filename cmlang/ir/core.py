"""The IR's data structures: values, ops, blocks, a kernel function, and a builder.

One small structured SSA IR (in the spirit of MLIR's scf): every value has a type
from ``cmlang.types``; control flow is nested (``for``/``if``/``while`` ops own
blocks that end in ``yield``/``condition``), so the interpreter and every lowering
walk it recursively. Which opcodes exist, their operands, attributes and meaning
is defined in ``cmlang.ir.ops``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..limits import IR_OPS


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    col: int

    def __str__(self):
        return f"{self.file}:{self.line}:{self.col}"


class Value:
    """An SSA value: an op result or a block argument (kernel params are body args)."""

    __slots__ = ("type", "hint", "owner", "index")

    def __init__(self, type, hint: str = "", owner=None, index: int = 0):
        self.type = type
        self.hint = hint      # a name for printing (the Python variable, if any)
        self.owner = owner    # the defining Op, or the Block for block arguments
        self.index = index

    def __repr__(self):
        return f"<Value {self.hint or '?'}: {self.type}>"

    @property
    def defining_op(self) -> Optional["Op"]:
        return self.owner if isinstance(self.owner, Op) else None


class Op:
    __slots__ = ("opcode", "operands", "results", "attrs", "blocks", "loc")

    def __init__(self, opcode, operands=(), result_types=(), attrs=None, blocks=(), loc=None):
        self.opcode = opcode
        self.operands = list(operands)
        self.results = [Value(t, owner=self, index=i) for i, t in enumerate(result_types)]
        self.attrs = dict(attrs or {})
        self.blocks = list(blocks)
        self.loc = loc

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.opcode} has {len(self.results)} results"
        return self.results[0]

    def __repr__(self):
        return f"<Op {self.opcode} {self.attrs}>"


class Block:
    __slots__ = ("args", "ops")

    def __init__(self, arg_types=(), arg_hints=()):
        hints = list(arg_hints) + [""] * (len(arg_types) - len(arg_hints))
        self.args = [Value(t, h, owner=self, index=i) for i, (t, h) in enumerate(zip(arg_types, hints))]
        self.ops = []

    @property
    def terminator(self) -> Optional[Op]:
        return self.ops[-1] if self.ops else None


@dataclass
class Function:
    """A kernel after inlining: parameters are the args of ``body``.

    ``simd`` is the CM thread's lane count on SIMT targets; ``param_names`` are the
    Python parameter names in order (constexpr parameters are folded away and kept
    in ``constexprs`` for the record).
    """
    name: str
    body: Block
    param_names: list
    simd: int = 16
    constexprs: dict = field(default_factory=dict)
    source_file: str = ""
    # What the front end read from Python to build it (reads.ReadRecord.to_json()), kept
    # for the disk cache; not part of the IR.
    python_reads: dict | None = field(default=None, compare=False, repr=False)

    @property
    def params(self):
        return self.body.args

    def walk(self):
        """Every op, outer before inner, in program order."""
        yield from walk_block(self.body)


def walk_block(block: Block):
    for op in block.ops:
        yield op
        for b in op.blocks:
            yield from walk_block(b)


class Builder:
    """Appends ops at the end of the current block; ``at(block)`` nests."""

    def __init__(self, block: Block):
        self.block = block
        self.loc = None
        self.created = 0                    # ops made, held to limits.IR_OPS
        self.max_ops = IR_OPS.value

    def create(self, opcode, operands=(), result_types=(), attrs=None, blocks=(), loc=None) -> Op:
        self.created += 1
        if self.created > self.max_ops:
            from ..errors import CompileError
            raise CompileError(IR_OPS.exceeded(self.created, "the kernel"), loc or self.loc)
        op = Op(opcode, operands, result_types, attrs, blocks, loc or self.loc)
        self.block.ops.append(op)
        return op

    def op1(self, opcode, operands, result_type, **attrs) -> Value:
        """Create a one-result op and return its result."""
        return self.create(opcode, operands, [result_type], attrs).result

    def at(self, block: Block):
        return _InsertionPoint(self, block)


class _InsertionPoint:
    def __init__(self, builder, block):
        self.builder, self.block, self.saved = builder, block, None

    def __enter__(self):
        self.saved, self.builder.block = self.builder.block, self.block
        return self.builder

    def __exit__(self, *exc):
        self.builder.block = self.saved
