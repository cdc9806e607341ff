"""What the runtime needs to launch a compiled kernel; also what a package stores.

Deliberately free of compiler imports: loading a precompiled kernel must not pull
in llvmlite or the front end.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    name: str
    type: object          # a cmlang.types ScalarType or PtrType
    writes: bool = False  # pointer parameters: does the kernel store/scatter/atomic to it
    min_elems: int = 0    # pointer parameters: elements that constant-offset accesses need
    # pointer parameters: accesses whose offsets are affine in the thread ids and scalar
    # arguments (AffineExtent), checked against the grid and arguments at launch
    extents: tuple = ()


@dataclass(frozen=True)
class AffineExtent:
    """An access every CM thread makes at ``offset + 0 .. elems-1`` (elements), where
    ``offset = const + sum(coef * variable)`` with ``const`` in low..high (a register of
    offsets spans a range) and each term ``(kind, index, coef)``: ``("thread", d, c)`` is
    ``c * thread_id(d)``, ``("arg", i, c)`` is ``c * `` the scalar argument at parameter i.
    The offset is computed in an integer type with values in ``type_min..type_max``: where
    the grid's corners leave that range the arithmetic wraps and nothing is claimed."""
    low: int
    high: int
    terms: tuple
    elems: int
    type_min: int
    type_max: int
    where: str = ""      # file:line:col of the access

    def needed(self, grid, args):
        """Elements the buffer needs for ``grid`` (3 ints) and ``args`` (user arguments),
        or None where the offset arithmetic may wrap."""
        low, high = self.low, self.high
        for kind, index, coef in self.terms:
            if kind == "thread":
                span = coef * (grid[index] - 1)
                low, high = low + min(span, 0), high + max(span, 0)
            else:
                value = coef * int(args[index])
                low, high = low + value, high + value
        if low < self.type_min or high > self.type_max:
            return None
        return high + self.elems

    def to_json(self) -> list:
        return [self.low, self.high, [list(t) for t in self.terms], self.elems, self.type_min,
                self.type_max, self.where]

    @classmethod
    def from_json(cls, data) -> "AffineExtent":
        low, high, terms, elems, type_min, type_max, where = data
        return cls(int(low), int(high), tuple((str(k), int(i), int(c)) for k, i, c in terms), int(elems),
                   int(type_min), int(type_max), str(where))


@dataclass(frozen=True)
class KernelBinary:
    name: str
    spirv: bytes
    simd: int
    params: tuple         # of Param, in kernel argument order
    uses_groups: bool = False    # does the kernel use SLM, barriers or group/local ids
    extensions: tuple = field(default_factory=tuple)
    target: str = "spirv"        # the code generator that made it (cmlang.codegen.target)
    lanes_per_thread: int = 0    # work-items per CM thread (0: simd, the SIMT mapping)
    build_options: str = ""      # what the driver's build needs (e.g. -vc-codegen)
    profile: str = ""            # the device profile it was compiled for ("": unknown)
    slm_bytes: int = 0           # shared local memory per group (cm.slm), checked at launch
    # Checked mode (cmlang/passes/bounds_checks.py): the checked accesses (runtime.bounds.
    # CheckSite, by site number) and how many parameters at the end are the launcher's
    # (the pointer arguments' lengths and the error buffer), not the user's.
    checks: tuple = ()
    hidden_params: int = 0

    @property
    def lanes(self) -> int:
        return self.lanes_per_thread or self.simd

    @property
    def user_params(self) -> tuple:
        """The parameters a launch passes (all but checked mode's hidden ones)."""
        return self.params[:len(self.params) - self.hidden_params]


def constexpr_key(value):
    """The hashable key of a constexpr value, the one rule for kernels and packages alike:
    tells 1 from 1.0 from True; numpy scalars count as their Python value; tuples and lists
    by their items."""
    if isinstance(value, (list, tuple)):
        return ("tuple", tuple(constexpr_key(v) for v in value))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    return (type(value).__name__, value)
