"""The Emitter: appends IR ops at the current location and converts values between types.

Everything that creates IR goes through it, so every op gets the location of the
Python node being compiled (``builder.loc``, set by the visitor) and every error raised
through ``error()`` points at that node.
"""
from __future__ import annotations

from ..errors import CompileError
from ..ir import Builder, Block, Value
from ..types import ScalarType, VectorType, i32, i64, bool_, with_elem
from . import typing_rules as tr
from .values import is_weak, describe


class Emitter:
    def __init__(self, builder: Builder, body: Block):
        self.b = builder
        self.body = body   # the kernel's top-level block (cm.slm is only allowed there)
        # simd_lanes(n): the active lanes when SIMD control flow of n lanes is being compiled,
        # else None (memory builtins of n elements are predicated with it; frontend/simd.py)
        self.simd_lanes = lambda n: None

    # --- basics -----------------------------------------------------------------
    @property
    def loc(self):
        return self.b.loc

    def error(self, message: str) -> CompileError:
        return CompileError(message, self.b.loc)

    def op(self, opcode, operands, result_type, **attrs) -> Value:
        return self.b.op1(opcode, operands, result_type, **attrs)

    def effect(self, opcode, operands=(), **attrs):
        """An op without results (store, barrier, yield, ...)."""
        return self.b.create(opcode, operands, (), attrs)

    def at_top_level(self) -> bool:
        return self.b.block is self.body

    # --- constants and conversions -------------------------------------------------
    def const(self, t, value) -> Value:
        """A typed constant; ``value`` is one Python number or a tuple (one per element)."""
        elem = t.elem
        try:
            if isinstance(value, tuple):
                if len(value) != t.size:
                    raise self.error(f"{len(value)} values given for {t}, which has {t.size} elements")
                value = tuple(tr.cast_constant(v, elem) for v in value)
            else:
                value = tr.cast_constant(value, elem)
        except ValueError as e:
            raise self.error(str(e)) from None
        return self.op("const", [], t, value=value)

    def convert(self, v: Value, elem: ScalarType, sat: bool = False) -> Value:
        if v.type.elem == elem and not sat:
            return v
        if isinstance(v.type, ScalarType) or isinstance(v.type, VectorType):
            return self.op("convert", [v], with_elem(v.type, elem), sat=sat)
        raise self.error(f"cannot convert {v.type} to {elem}")

    def splat(self, s: Value, t: VectorType) -> Value:
        return self.op("splat", [s], t)

    def coerce(self, x, t, what: str = "value"):
        """``x`` (weak number, constant tuple, scalar or register) as a value of exactly type ``t``.

        Scalars are converted then splat; registers must already have t's shape.
        """
        if is_weak(x):
            return self.const(t, x)
        if isinstance(x, tuple) and isinstance(t, VectorType) and all(is_weak(e) for e in x):
            return self.const(t, x)
        if isinstance(x, Value) and isinstance(x.type, ScalarType):
            s = self.convert(x, t.elem)
            return self.splat(s, t) if isinstance(t, VectorType) else s
        if isinstance(x, Value) and isinstance(x.type, VectorType):
            if not isinstance(t, VectorType) or x.type.shape != t.shape:
                raise self.error(f"{what} has type {x.type}, expected {t}")
            return self.convert(x, t.elem)
        raise self.error(f"{what} is a {describe(x)}, expected {t}")

    # --- frequently needed values --------------------------------------------------
    def as_bool(self, x) -> Value:
        """A scalar or register as bool (ints and floats compare != 0)."""
        if is_weak(x):
            return self.const(bool_, bool(x))
        if x.type.elem.is_bool:
            return x
        zero = self.const(x.type, 0)
        return self.op("cmp", [x, zero], with_elem(x.type, bool_), pred="ne")

    def int_index(self, x, what: str) -> Value:
        """A run-time integer scalar as i32 (a dynamic register index or offset)."""
        if not (isinstance(x, Value) and isinstance(x.type, ScalarType) and (x.type.is_int or x.type.is_bool)):
            raise self.error(f"{what} must be an integer, got {describe(x)}")
        return self.convert(x, i32)

    def memory_offset(self, x, what: str = "offset") -> Value:
        """An element offset into memory: i32, or i64 when it is 64-bit."""
        if isinstance(x, int) and not isinstance(x, bool):
            return self.const(i32 if -2**31 <= x < 2**31 else i64, x)
        if isinstance(x, Value) and isinstance(x.type, ScalarType) and x.type.is_int:
            return self.convert(x, i64 if x.type.bits == 64 else i32)
        raise self.error(f"{what} must be an integer, got {describe(x)}")

    def add_i32(self, a, b):
        """a + b for optional i32 values (None means absent)."""
        if a is None:
            return b
        if b is None:
            return a
        return self.op("add", [a, b], i32)

    def mul_i32(self, a: Value, k: int) -> Value:
        if k == 1:
            return a
        return self.op("mul", [a, self.const(i32, k)], i32)
