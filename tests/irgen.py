"""Random small cmlang kernels for the differential test (``tests/test_differential.py``).

``generate(rnd, simd)`` writes the Python source of one kernel with a handful of random
operations and returns a ``KernelCase``: the source (compiled through ``@cm.kernel`` like
user code, so the front end is exercised as well as the interpreter and codegen), the
buffers with their input data, and for every value the kernel computes the place it is
stored and how closely a device must match the interpreter there.

The kernel's shape: every CM thread ``t`` owns one section of every buffer
(``b_<buffer> = t * <section size>``); each operation reads operands from earlier
values (or loads fresh ones from ``in_<T>``), defines one new value, and stores it to
``out_<T>`` (bool masks as u8). Operations never do what ``cmlang/ir/ops.py`` leaves
undefined: integer divisors come from ``nz_<T>`` (no 0, no -1), float->int conversions
without ``sat`` clamp first, region/iselect indices and memory offsets are in range,
scatters and atomics use distinct addresses.

Float values carry a tolerance class: ``exact`` (0 ulp), ``ulp`` (a bound in ulps, for
div/sqrt/transcendentals/fma) or ``sum``/``prod`` (float reductions: rounding depends on
the order). Only exact values are operands of later operations, so a few ulps never grow
through a chain. Floats whose bits came from memory unchanged are ``raw``: only those
are bit-cast to integers (NaN payloads of computed NaNs are not part of the semantics).

Issue 11's constructs have their own ops: ``op_nested_loop`` (for/while pairs, break and
continue, loops never entered, a count broadcast after them), ``op_loop_memory`` (loads and
stores in a loop at ``pos * m`` offsets), ``op_slm`` (a register exchanged between the CM
threads of a group through SLM and barriers; the kernel is then launched in groups of
``GROUP``), ``op_dpas``, ``op_wide_narrow_float`` (bf16 and f64, kept out of the pool and
converted to f32 for the other ops), ``op_edge_constant``; a kernel may write an output
through a second parameter that is passed the same array (``KernelCase.aliases``), and
``out_of_range_kernel`` writes a kernel whose constant does not fit its type.
``generate(..., cases=n)`` batches n independent cases into one kernel.

``rnd`` is a ``random.Random``: the test seeds it with integers that hypothesis draws, and
``python tests/irgen.py SEED [SIMD]`` prints the case of a seed (``CMLANG_DIFF_AVOID`` as in
the test). ``KNOWN_ISSUES`` names bugs outside the interpreter that this test found; a
generator told to ``avoid`` them does not produce the constructs that hit them.
"""
from __future__ import annotations

import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cmlang.types import i8, i16, i32, i64, u8, u16, u32, f16, bf16, f32, f64, bool_, ScalarType
from cmlang.frontend import typing_rules as tr

THREADS = 2
INT_TYPES = (i8, u8, i16, u16, i32, u32, i64)
FLOAT_TYPES = (f16, f32)
NUMERIC_TYPES = INT_TYPES + FLOAT_TYPES
# How often each element type is loaded: the brief's main types (i32, f32; u8/i16 for the
# promotion paths; f16) most, the others mostly appear through conversions.
LOAD_TYPES = {i32: 6, f32: 6, u8: 3, i16: 3, f16: 3, i8: 1, u16: 1, u32: 2, i64: 2}
# Vector sizes: multiples of every simd width, of some, and of none.
VECTOR_SIZES = {8: 4, 16: 3, 24: 3, 32: 2, 40: 2, 64: 1, 4: 1, 5: 1, 12: 1, 20: 1}
ULP_BOUND = {"approx": {f32: 8, f16: 2}, "pow": {f32: 16, f16: 2}, "fma": {f32: 1, f16: 1}}
# Bugs this test found outside the interpreter, reported with reproducers (see the test
# module's docstring). ``generate(..., avoid=...)`` steers around the named ones.
# Fixed since: "narrow-minmax" (front end promoted min/max of one narrow type),
# "sat-float-nan" (codegen clamped before testing for NaN), "reduce-minmax-nan"
# (sub-group min/max reductions do not ignore NaN).
KNOWN_ISSUES = {
    "narrow-small-simd32": "driver: stores of 3..7-element 8/16-bit vectors at unaligned offsets in a "
                           "simd=32 kernel crash the Intel CPU runtime's compiler (SIGSEGV in X86 ISel)",
}
NARROW_INTS = (i8, u8, i16, u16)

# Types that no operator promotes: loop-carried values and if/else results keep them.
LOOP_TYPES = (i32, u32, i64, f32, f16)
CASES_PER_KERNEL = 4   # independent sub-cases the differential test batches into one kernel
GROUP = 2         # CM threads per group in kernels that use SLM (THREADS: one group)
OUT_FILL = 0x5A   # every output byte starts as this (a value no op is likely to produce)


# ---------------------------------------------------------------------------------
# Values, statements, buffers

@dataclass(frozen=True)
class Tolerance:
    """How closely a device must match the interpreter: kind exact, ulp (a bound), or sum /
    prod (a float reduction, whose rounding depends on the order of the operations)."""
    kind: str = "exact"
    ulps: int = 0
    terms: int = 0          # sum/prod: elements reduced per result element
    source: object = None   # sum/prod: the reduced Var (its stored values give the bound)
    axis: object = None     # sum/prod: the reduction's axis

    def __str__(self):
        if self.kind in ("sum", "prod"):
            return f"{self.kind} of {self.terms} terms"
        return "exact" if self.kind == "exact" else f"<= {self.ulps} ulp"


EXACT = Tolerance()


@dataclass(frozen=True)
class Weak:
    """A Python number in the kernel source (a weak constant: it takes the other operand's type)."""
    value: object

    @property
    def name(self):
        return weak_literal(self.value)


@dataclass(eq=False)
class Var:
    name: str
    elem: ScalarType
    shape: tuple                 # () scalar, (n,) vector, (r, c) matrix
    tol: Tolerance = EXACT
    raw: bool = False            # float bits straight from memory: safe to bitcast
    nonzero: bool = False        # never 0 or -1 (a safe integer divisor)
    stmt: "Stmt" = None
    stored: bool = False

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def exact(self):
        return self.tol.kind == "exact"

    @property
    def is_matrix(self):
        return len(self.shape) == 2


@dataclass(eq=False)
class Stmt:
    lines: list
    uses: list                   # Vars read
    defines: Var = None
    tag: str = ""


@dataclass
class Segment:
    offset: int
    n: int
    fill: object                 # fill(rng, thread) -> array of n (inputs); None (outputs)
    var: Var = None              # outputs: the value stored here
    tol: Tolerance = None        # outputs: how to compare (var's tolerance unless given)


@dataclass
class Buffer:
    name: str
    elem: ScalarType
    role: str                    # "in", "nz", "idx", "out", "atom"
    segments: list = field(default_factory=list)
    section: int = 0             # elements per CM thread

    def alloc(self, n, fill=None, var=None, tol=None):
        seg = Segment(self.section, n, fill, var, tol)
        self.segments.append(seg)
        self.section += n
        return seg

    @property
    def writes(self):
        return self.role in ("out", "atom")

    def host_array(self, rng):
        dtype = np.dtype(self.elem.np_dtype)
        if self.role == "out":
            return np.full(THREADS * self.section * dtype.itemsize, OUT_FILL, np.uint8).view(dtype)
        parts = []
        for t in range(THREADS):
            for seg in self.segments:
                parts.append(np.asarray(seg.fill(rng, t), dtype))
        return np.concatenate(parts) if parts else np.zeros(0, dtype)


@dataclass
class KernelCase:
    name: str
    simd: int
    buffers: list                # Buffers in parameter order
    scalars: list                # (name, ScalarType, value) in parameter order, after buffers
    stmts: list
    data_seed: int
    tags: Counter
    group: int = None            # CM threads per group (SLM and barriers), None: no group
    aliases: dict = field(default_factory=dict)   # alias parameter -> the buffer it is passed
    cases: int = 1               # independent sub-cases batched into this kernel

    @property
    def source(self):
        return self.source_of(self.stmts)

    def source_of(self, stmts):
        """The kernel's Python source with only ``stmts`` (same parameters and buffers)."""
        params = [f"{b.name}: cm.ptr[{tname(b.elem)}]" for b in self.buffers]
        params += [f"{alias}: cm.ptr[{tname(self.buffer_named(b).elem)}]" for alias, b in self.aliases.items()]
        params += [f"{name}: {tname(t)}" for name, t, _ in self.scalars]
        lines = ["import cmlang as cm", "", "", f"def {self.name}({', '.join(params)}):",
                 "    t = cm.thread_id(0)"]
        lines += [f"    b_{b.name} = t * {b.section}" for b in self.buffers]
        lines += ["    " + line for stmt in stmts for line in stmt.lines]
        return "\n".join(lines) + "\n"

    def arguments(self):
        """Fresh argument values (numpy arrays and numbers) in parameter order."""
        rng = np.random.default_rng(self.data_seed)
        arrays = [b.host_array(rng) for b in self.buffers]
        # an alias parameter gets the very same array as the buffer it aliases
        aliased = [arrays[self.buffers.index(self.buffer_named(b))] for b in self.aliases.values()]
        return arrays + aliased + [v for _, _, v in self.scalars]

    def buffer_named(self, name):
        return next(b for b in self.buffers if b.name == name)


# ---------------------------------------------------------------------------------
# Input data

def int_data(elem, rng, n, nonzero=False):
    info = np.iinfo(elem.np_dtype)
    lo, hi = int(info.min), int(info.max)
    small = rng.integers(max(lo, -20), min(hi, 40) + 1, n)
    wide = rng.integers(lo, hi, n, dtype=np.int64 if elem != u32 else np.uint64, endpoint=True)
    edges = rng.choice(np.array([lo, hi, 0, 1, hi - 1, lo + 1, lo // 2 if lo else hi // 2], dtype=object), n)
    pick = rng.random(n)
    values = np.where(pick < 0.6, small, np.where(pick < 0.9, wide, edges)).astype(np.int64 if elem != u32
                                                                                    else np.uint64)
    values = values.astype(elem.np_dtype)
    if nonzero:       # no 0 (division by zero) and no -1 / all ones (MIN / -1 overflows)
        bad = (values == 0) | (values == np.array(-1).astype(elem.np_dtype))
        values[bad] = 3
    return values


def bf16_bits(values):
    """float values -> bf16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(np.asarray(values, np.float32)), np.uint16(0x7FC0), rounded)


def bf16_values(bits):
    """bf16 bit patterns -> their exact float32 values."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def float_data(elem, rng, n):
    if elem == bf16:
        return bf16_bits(float_data(f32, rng, n))
    if rng.random() < 0.03:                 # an all-NaN vector (reductions' padding, NaN paths)
        return np.full(n, np.nan, elem.np_dtype)
    dtype = np.dtype(elem.np_dtype)
    big = {f16: 60000.0, f64: 1e200}.get(elem, 1e30)
    uniform = rng.uniform(-50, 50, n)
    integers = rng.integers(-8, 9, n) * 0.5
    wide = np.exp(rng.uniform(-8, math.log(big), n)) * rng.choice([-1, 1], n)
    specials = rng.choice([0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, -2.5, 1.0], n)
    pick = rng.random(n)
    values = np.where(pick < 0.6, uniform, np.where(pick < 0.8, integers, np.where(pick < 0.95, wide, specials)))
    return values.astype(dtype)


def random_data(elem, rng, n, nonzero=False):
    if elem.is_bool:
        return rng.random(n) < 0.5
    if elem.is_float:
        return float_data(elem, rng, n)
    return int_data(elem, rng, n, nonzero)


# ---------------------------------------------------------------------------------
# Source spelling helpers

def tname(elem):
    return "cm.bool_" if elem.is_bool else f"cm.{elem.name}"


def weak_literal(value):
    if isinstance(value, float):
        if math.isinf(value):
            return "1e38" if value > 0 else "-1e38"
        return repr(value)
    return str(value)


def largest_power_of_two_dividing(n):
    return n & -n


def factor_pairs(n):
    return [(r, n // r) for r in range(2, n // 2 + 1) if n % r == 0]


# Clamp bounds for float -> int conversion without sat: exactly representable in f16/f32
# and inside the target range, so the truncation is always defined.
CLAMP = {i8: (-120, 120), u8: (0, 250), i16: (-30000, 30000), u16: (0, 60000),
         i32: (-2000000000, 2000000000), u32: (0, 4000000000), i64: (-2 ** 62, 2 ** 62)}


# ---------------------------------------------------------------------------------
# The generator

class Generator:
    def __init__(self, rnd: random.Random, simd: int, name: str = "k", avoid=()):
        self.rnd = rnd
        self.simd = simd
        self.name = name
        self.avoid = set(avoid)
        self.stmts = []
        self.pool = []
        self.buffers = {}
        self.tags = Counter()
        self.count = 0
        self.s_value = rnd.randint(0, 1000)
        self.x_value = float(np.float32(rnd.choice([rnd.uniform(-40, 40), 0.5, -3.0, 1e6])))
        self.s = Var("s", i32, ())
        self.x = Var("x", f32, (), raw=True)
        self.pool += [self.s, self.x]
        self.m_value = rnd.choice([1, 2, 3])      # a small scalar argument (offsets in loops)
        self.group = None                         # GROUP once the kernel uses SLM
        self.aliases = {}                         # alias parameter -> buffer (the same array)
        self.alias_wanted = rnd.random() < 0.15   # pass one output array to two parameters
        self.cases = 1

    # --- random helpers ---
    def chance(self, p):
        return self.rnd.random() < p

    def choice(self, seq):
        return seq[self.rnd.randrange(len(seq))]

    def weighted(self, table: dict):
        keys = list(table)
        return self.rnd.choices(keys, weights=[table[k] for k in keys])[0]

    def vector_size(self):
        return self.weighted(VECTOR_SIZES)

    # --- buffers ---
    def buffer(self, role, elem):
        name = "idx" if role == "idx" else f"{role}_{elem.name}"
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = Buffer(name, elem, role)
        return buf

    def input_offset(self, elem, n, role="in", fill=None):
        """Allocate n input elements; returns the offset expression of their start."""
        buf = self.buffer(role, elem)
        if fill is None:
            nonzero = role == "nz"
            fill = lambda rng, t, n=n: random_data(elem, rng, n, nonzero)   # noqa: E731
        seg = buf.alloc(n, fill)
        return f"b_{buf.name} + {seg.offset}"

    def index_offset(self, values_per_thread):
        """An i32 index vector in the idx buffer; values_per_thread(rng, t) -> array."""
        n = len(values_per_thread(np.random.default_rng(0), 0))
        return self.input_offset(i32, n, "idx", values_per_thread)

    # --- statements and values ---
    def new_name(self, prefix="v"):
        self.count += 1
        return f"{prefix}{self.count}"

    def define(self, expr, elem, shape, uses, tag, tol=EXACT, raw=False, nonzero=False, store=True, pool=True):
        """One statement ``name = expr``; the new value is stored to out_<T> (unless ``store``
        is false: loaded values are only stored when a tolerance needs them)."""
        var = Var(self.new_name(), elem, tuple(shape), tol, raw and elem.is_float, nonzero)
        return self.define_lines(var, [f"{var.name} = {expr}"], uses, tag, store, pool)

    def store(self, var):
        """Store a value to out_<T> (bool as u8), recording where and how to compare it."""
        if var.stored:
            return
        var.stored = True
        elem = u8 if var.elem.is_bool else var.elem
        if "narrow-small-simd32" in self.avoid and self.simd == 32 and elem.bits < 32 and 2 < var.size < 8:
            elem = f32 if elem.is_float else i32    # widened exactly: no narrow partial stores
        buf = self.buffer("out", elem)
        seg = buf.alloc(var.size, var=var, tol=var.tol)
        value = var.name if elem == var.elem else f"{var.name}.astype({tname(elem)})"
        var.stmt.lines.append(f"cm.store({self.store_target(buf)}, b_out_{elem.name} + {seg.offset}, {value})")

    def store_target(self, buf):
        """The parameter a store writes through: the buffer's, or (some kernels) a second
        parameter that is passed the same array."""
        if self.alias_wanted and self.chance(0.5) and (not self.aliases or buf.name in self.aliases.values()):
            alias = f"alias_{buf.elem.name}"
            self.aliases[alias] = buf.name
            self.tags["memory.alias"] += 1
            return alias
        return buf.name

    def load(self, elem=None, shape=None, nonzero=False):
        """A fresh value from in_<T> (nz_<T>: never 0 or -1); a matrix by a 2-D load or a
        vector load viewed as one. Loads are not stored: their values are the inputs."""
        elem = elem or self.weighted(LOAD_TYPES)
        if shape == ():
            return self.scalar_of(self.load(elem, nonzero=nonzero))
        shape = shape or (self.vector_size(),)
        n = math.prod(shape)
        buf = f"{'nz' if nonzero else 'in'}_{elem.name}"
        off = self.input_offset(elem, n, buf[:2])
        tag = "memory.load"
        if len(shape) == 1:
            expr = f"cm.load({buf}, {off}, {n})"
        elif self.chance(0.5):
            expr, tag = f"cm.load({buf}, {off}, ({shape[0]}, {shape[1]}), {shape[1]})", "memory.load2d"
        else:
            expr = f"cm.load({buf}, {off}, {n}).format({tname(elem)}, {shape[0]}, {shape[1]})"
        return self.define(expr, elem, shape, [], tag, raw=True, nonzero=nonzero, store=False)

    def pick(self, ok=lambda v: True, make=None, fresh=0.15):
        """An exact value from the pool that satisfies ``ok`` (else ``make()`` or a fresh load)."""
        candidates = [v for v in self.pool if v.exact and ok(v)]
        if candidates and not self.chance(fresh):
            return self.choice(candidates)
        made = make() if make is not None else self.load()
        assert ok(made), f"generator bug: {made} does not satisfy the pick"
        return made

    def pick_register(self, ok=lambda v: True, elems=None):
        def good(v):
            return v.shape != () and not v.elem.is_bool and ok(v) and (elems is None or v.elem in elems)
        return self.pick(good, lambda: self.load(self.choice(elems) if elems else None))

    def pick_matrix(self):
        """A matrix: from the pool, or a vector viewed as one, or a 2-D load."""
        def make():
            vectors = [v for v in self.pool if v.exact and len(v.shape) == 1 and not v.elem.is_bool
                       and factor_pairs(v.size)]
            if vectors and self.chance(0.5):
                return self.op_reshape(self.choice(vectors))
            r, c = self.choice(factor_pairs(self.choice([6, 8, 12, 16, 20, 24, 32, 40, 64])))
            return self.load(shape=(r, c))
        return self.pick(lambda u: u.is_matrix and not u.elem.is_bool, make)

    def pick_any_register(self, ok=lambda v: True, matrices=True):
        """A register for data movement: sometimes a matrix, sometimes a mask (bool)."""
        if matrices and self.chance(0.3):
            return self.pick_matrix()
        if self.chance(0.15):
            return self.pick(lambda v: v.shape != () and v.elem.is_bool and ok(v),
                             lambda: self.pick_mask((self.vector_size(),)))
        return self.pick_register(ok)

    def pick_shaped(self, shape, ok=lambda v: True, elems=None):
        """A value of exactly ``shape`` (loaded if the pool has none)."""
        return self.pick(lambda v: v.shape == shape and not v.elem.is_bool and ok(v)
                         and (elems is None or v.elem in elems),
                         lambda: self.load(self.choice(elems) if elems else None, shape))

    def pick_mask(self, shape):
        """A bool value of ``shape`` (a comparison when the pool has none)."""
        return self.pick(lambda v: v.elem.is_bool and v.shape == shape,
                         lambda: self.op_compare(self.pick_shaped(shape)), fresh=0.3)

    def dynamic_index(self, limit):
        """A run-time i32 expression with a value in 0..limit-1 (from the scalar s and t)."""
        c = self.rnd.randint(0, 9)
        if self.chance(0.3):
            return f"(s + t + {c}) % {limit}"
        return f"(s + {c}) % {limit}"

    # --- operations -----------------------------------------------------------------
    def op_binary(self):
        a = self.pick(lambda v: not v.elem.is_bool)
        op = self.weighted({"+": 2, "-": 2, "*": 2, "/": 2, "%": 2, "//": 1.5, "min": 1.5, "max": 1.5,
                            "&": 1, "|": 1, "^": 1, "<<": 1, ">>": 1.5, "**": 1})
        if a.elem.is_float and op in ("&", "|", "^", "<<", ">>", "//"):
            op = self.choice(["+", "-", "*"])
        if op == "**" and a.elem.is_int:
            b = Weak(self.rnd.randint(0, 5))          # integer ** needs a constant exponent
        elif op in ("<<", ">>"):
            b = self.shift_count(a)
        else:
            b = self.second_operand(a, divisor=op in ("/", "%", "//") and a.elem.is_int,
                                    integer=op in ("&", "|", "^"))
        elem, shape = self.result_type(a, b, op)
        if op == "//" and elem.is_float:
            op = "/"      # floor(a / b) would turn a 1-ulp difference of the quotient into 1.0
        if op in ("min", "max"):
            expr = f"{self.choice(['cm.' + op, op])}({a.name}, {b.name})"
        else:
            expr = f"{a.name} {op} {b.name}"
        tol = EXACT
        if elem.is_float and op in ("/", "**"):
            tol = Tolerance("ulp", ULP_BOUND["pow" if op == "**" else "approx"][elem])
        uses = [a] + ([b] if isinstance(b, Var) else [])
        kind = "float" if elem.is_float else "int"
        return self.define(expr, elem, shape, uses, f"binary.{op}.{kind}", tol=tol)

    def shift_count(self, a):
        if self.chance(0.4):
            return Weak(self.rnd.randint(0, 40))
        return self.pick(lambda v: v.elem.is_int and v.shape in (a.shape, ()),
                         lambda: self.pick_shaped(a.shape, elems=INT_TYPES) if a.shape else self.s)

    def second_operand(self, a, divisor=False, integer=False):
        """The right side of ``a <op> b``: a value of a's shape, a scalar or a weak constant.

        ``divisor``: an integer division; the operand is never 0 or -1 (or is a float).
        ``integer``: a bitwise op; the operand is an integer."""
        kind = self.weighted({"same": 5, "scalar": 2, "weak": 3})
        if kind == "weak":
            if divisor:
                return Weak(self.choice([2, 3, 5, 7, -3, -8, 100]))
            if a.elem.is_float:
                return Weak(self.choice([2.0, 0.5, -1.5, 3, 1e-3, 100.0, 2]))
            return Weak(self.choice([1, 2, 3, -1, 7, 255, -128, 1000, 65536]))
        elems = INT_TYPES if integer else None

        def ok(v):
            return (not divisor or v.nonzero or v.elem.is_float) and (not integer or v.elem.is_int)
        if kind == "scalar" or a.shape == ():
            return self.pick(lambda v: v.shape == () and not v.elem.is_bool and ok(v),
                             lambda: self.load(self.choice(elems) if elems else None, (), nonzero=divisor))
        return self.pick(lambda v: v.shape == a.shape and not v.elem.is_bool and ok(v),
                         lambda: self.load(self.choice(elems) if elems else None, a.shape, nonzero=divisor))

    def result_type(self, a, b, op):
        """The element type and shape the front end gives ``a <op> b`` (typing_rules)."""
        shape = a.shape if a.shape != () else (b.shape if isinstance(b, Var) else ())
        if op in ("<<", ">>"):
            return tr.promote_int(a.elem), shape
        if isinstance(b, Weak):
            if op in ("min", "max", "cmp") and tr.weak_fits_exactly(b.value, a.elem):
                return a.elem, shape
            return tr.weak_elem(b.value, a.elem), shape
        if op in ("min", "max", "cmp") and a.elem == b.elem:
            return a.elem, shape
        return tr.usual_conversions(a.elem, b.elem), shape

    def op_unary(self):
        a = self.pick()
        if a.elem.is_bool:
            return self.define(f"~{a.name}", bool_, a.shape, [a], "unary.not.bool")
        op = self.weighted({"-": 3, "~": 2, "abs": 2, "floor": 1, "ceil": 1})
        if op == "~" and a.elem.is_float:
            op = "-"
        if op in ("floor", "ceil"):
            elem = a.elem if a.elem.is_float else f32
            return self.define(f"cm.{op}({a.name})", elem, a.shape, [a], f"unary.{op}")
        if op == "abs":
            return self.define(f"{self.choice(['abs', 'cm.abs'])}({a.name})", a.elem, a.shape, [a], "unary.abs")
        elem = a.elem if a.elem.is_float else tr.promote_int(a.elem)
        return self.define(f"{op}{a.name}", elem, a.shape, [a], f"unary.{'neg' if op == '-' else 'not'}")

    def op_math(self):
        fn = self.weighted({"exp": 1, "exp2": 1, "log": 1, "log2": 1, "sqrt": 2, "rsqrt": 1, "inv": 1,
                            "sin": 1, "cos": 1, "tanh": 1, "fma": 2, "pow": 1})
        if fn == "fma":
            a = self.pick(lambda v: v.elem.is_float and v.shape != (), lambda: self.load(self.choice(FLOAT_TYPES)))
            b = self.pick_shaped(a.shape, elems=(a.elem,))
            c = self.pick_shaped(a.shape, elems=(a.elem,))
            return self.define(f"cm.fma({a.name}, {b.name}, {c.name})", a.elem, a.shape, [a, b, c], "math.fma",
                               tol=Tolerance("ulp", ULP_BOUND["fma"][a.elem]))
        a = self.pick(lambda v: not v.elem.is_bool)
        elem = a.elem if a.elem.is_float else f32
        if fn == "pow":
            b = self.pick_shaped(a.shape, elems=(elem,)) if a.shape else self.x
            elem = tr.usual_conversions(elem, b.elem)
            return self.define(f"cm.pow({a.name}, {b.name})", elem, a.shape, [a, b], "math.pow",
                               tol=Tolerance("ulp", ULP_BOUND["pow"][elem]))
        return self.define(f"cm.{fn}({a.name})", elem, a.shape, [a], f"math.{fn}",
                           tol=Tolerance("ulp", ULP_BOUND["approx"][elem]))

    def op_cm(self):
        """The CM operations: bit scans, rounding, avg / mulhi, dot products, float saturation."""
        fn = self.weighted({"cbit": 1, "fbl": 1, "fbh": 1, "lzd": 1, "rndd": 0.5, "rndu": 0.5, "rnde": 1,
                            "rndz": 0.5, "frc": 0.5, "avg": 1, "mulhi": 1, "dp4": 1, "dph": 0.5, "sat": 1})
        narrow_int = lambda v: v.elem.is_int and v.elem.bits <= 32       # noqa: E731
        if fn in ("cbit", "fbl", "fbh", "lzd"):
            a = self.pick(narrow_int, lambda: self.load(self.choice(INT_TYPES[:-1])))
            elem = tr.promote_int(a.elem) if fn == "fbh" else u32
            return self.define(f"cm.{fn}({a.name})", elem, a.shape, [a], f"cm.{fn}")
        if fn in ("avg", "mulhi"):
            a = self.pick(narrow_int, lambda: self.load(self.choice(INT_TYPES[:-1])))
            b = self.pick_shaped(a.shape, elems=INT_TYPES[:-1]) if self.chance(0.7) else \
                Weak(self.choice([0, 1, 7, -1, 255, -128]) if a.elem.is_signed else self.choice([0, 1, 7, 255]))
            elem, shape = self.result_type(a, b, "min" if fn == "avg" else "*")
            if elem.bits > 32 or (fn == "mulhi" and elem.bits != 32):
                return None
            uses = [a] + ([b] if isinstance(b, Var) else [])
            return self.define(f"cm.{fn}({a.name}, {b.name})", elem, shape, uses, f"cm.{fn}")
        if fn in ("dp4", "dph"):
            a = self.pick(lambda v: v.elem.is_float and v.shape != () and v.size % 4 == 0,
                          lambda: self.load(self.choice(FLOAT_TYPES), (4 * self.rnd.randint(1, 8),)))
            b = self.pick_shaped(a.shape, elems=(a.elem,))
            return self.define(f"cm.{fn}({a.name}, {b.name})", a.elem, a.shape, [a, b], f"cm.{fn}")
        if fn == "sat":
            a = self.pick(lambda v: v.elem.is_float, lambda: self.load(self.choice(FLOAT_TYPES)))
            return self.define(f"cm.sat({a.name})", a.elem, a.shape, [a], "cm.sat.float")
        a = self.pick(lambda v: not v.elem.is_bool)
        elem = a.elem if a.elem.is_float else f32
        return self.define(f"cm.{fn}({a.name})", elem, a.shape, [a], f"cm.{fn}")

    def op_compare(self, a=None):
        if a is None and self.chance(0.15):
            return self.op_mask_logic()
        a = a or self.pick(lambda v: not v.elem.is_bool)
        pred = self.choice(["<", "<=", ">", ">=", "==", "!="])
        b = self.second_operand(a)
        uses = [a] + ([b] if isinstance(b, Var) else [])
        shape = a.shape if a.shape != () else (b.shape if isinstance(b, Var) else ())
        return self.define(f"{a.name} {pred} {b.name}", bool_, shape, uses, f"compare.{pred}")

    def op_mask_logic(self):
        m = self.pick_mask((self.vector_size(),))
        if self.chance(0.3):
            return self.define(f"~{m.name}", bool_, m.shape, [m], "unary.not.bool")
        other = self.pick_mask(m.shape)
        op = self.choice(["&", "|", "^"])
        return self.define(f"{m.name} {op} {other.name}", bool_, m.shape, [m, other], f"binary.{op}.bool")

    def weak_value(self, a):
        return Weak(self.choice([0.0, 1.5, -2.0, 10.0] if a.elem.is_float else [0, 1, 5, -3, 20]))

    def op_merge(self):
        a = self.pick(lambda v: v.shape != () and not v.elem.is_bool)
        mask = self.pick_mask(a.shape) if self.chance(0.85) else self.pick_mask(())
        b = self.pick_shaped(a.shape) if self.chance(0.7) else self.weak_value(a)
        elem, _ = self.result_type(a, b, "min")     # merge keeps one identical type, like min
        raw = a.raw and isinstance(b, Var) and b.raw and a.elem == b.elem
        if self.chance(0.7):
            expr = f"cm.merge({a.name}, {b.name}, {mask.name})"
        else:
            expr = f"{a.name} if {mask.name} else {b.name}"
        uses = [a, mask] + ([b] if isinstance(b, Var) else [])
        return self.define(expr, elem, a.shape, uses, "select.merge" if mask.shape else "select.scalar_mask",
                           raw=raw)

    def op_convert(self):
        kind = self.weighted({"float->int": 3, "int->float": 2, "int->int": 2, "float->float": 1.5, "bool": 0.7})
        if kind == "bool":
            a = self.pick()
            dst = bool_ if not a.elem.is_bool else self.choice(NUMERIC_TYPES)
        else:
            src_types = FLOAT_TYPES if kind.startswith("float") else INT_TYPES
            a = self.pick(lambda v: v.elem in src_types, lambda: self.load(self.choice(src_types)))
            dst = self.choice(FLOAT_TYPES if kind.endswith("float") else INT_TYPES)
        sat = self.chance(0.45) and not dst.is_bool and not a.elem.is_bool
        expr = f"{a.name}.astype({tname(dst)})"
        if sat:
            expr = f"cm.sat({expr})"
        elif a.elem.is_float and dst.is_int:
            lo, hi = CLAMP[dst]
            if a.elem == f16:
                lo, hi = max(lo, -65504), min(hi, 65504)
            expr = f"cm.max(cm.min({a.name}, {hi}), {lo}).astype({tname(dst)})"
        tag = f"convert.{'sat.' if sat else ''}{a.elem.name}->{dst.name}"
        return self.define(expr, dst, a.shape, [a], tag)

    def scalar_of(self, v):
        """A scalar element of a register (static index)."""
        if v.shape == ():
            return v
        i = self.rnd.randrange(v.size)
        index = f"{i // v.shape[1]}, {i % v.shape[1]}" if v.is_matrix else str(i)
        return self.define(f"{v.name}[{index}]", v.elem, (), [v], "region.extract.static",
                           raw=v.raw, nonzero=v.nonzero)

    def op_bitcast(self):
        a = self.pick(lambda v: v.shape != () and not v.elem.is_bool and (v.elem.is_int or v.raw))
        bits = a.size * a.elem.bits
        dst = self.choice([t for t in NUMERIC_TYPES if bits % t.bits == 0])
        n = bits // dst.bits
        pairs = factor_pairs(n)
        if pairs and self.chance(0.4):
            r, c = self.choice(pairs)
            return self.define(f"{a.name}.format({tname(dst)}, {r}, {c})", dst, (r, c), [a],
                               f"bitcast.{a.elem.name}->{dst.name}.matrix", raw=True)
        if a.elem == dst and a.shape == (n,):
            return self.op_reshape(a)
        return self.define(f"{a.name}.format({tname(dst)})", dst, (n,), [a], f"bitcast.{a.elem.name}->{dst.name}",
                           raw=True)

    def op_reshape(self, a=None):
        """A vector viewed as a matrix (format with a shape) or a matrix as a vector."""
        a = a or self.pick_register()
        pairs = factor_pairs(a.size)
        if a.is_matrix or not pairs:
            return self.define(f"{a.name}.format({tname(a.elem)}, {a.size})", a.elem, (a.size,), [a],
                               "bitcast.shape", raw=a.raw, nonzero=a.nonzero)
        r, c = self.choice(pairs)
        return self.define(f"{a.name}.format({tname(a.elem)}, {r}, {c})", a.elem, (r, c), [a], "bitcast.shape",
                           raw=a.raw, nonzero=a.nonzero)

    # --- regions ---
    def random_slice(self, n):
        """(text, count) of a valid slice of 0..n-1, steps 1, 2, 3, -1 or -2."""
        step = self.weighted({1: 4, 2: 3, 3: 1, -1: 1, -2: 1})
        start = self.rnd.randrange(n)
        last = n - 1 if step > 0 else 0
        count = self.rnd.randint(1, (last - start) // step + 1)
        stop = start + (count - 1) * step + (1 if step > 0 else -1)
        if step == 1:
            return f"{start}:{stop}", count
        return f"{start}:{stop if stop >= 0 else ''}:{step}", count    # an empty stop: down to 0

    def region_read(self, v):
        """(expression, shape, tag) of a random region of v (never a single element)."""
        if v.is_matrix:
            rows, cols = v.shape
            form = self.weighted({"row": 2, "column": 2, "2d": 3, "select": 2})
            if form == "row":
                if self.chance(0.4):
                    return f"{v.name}[{self.dynamic_index(rows)}]", (cols,), "region.row.dynamic"
                i = self.rnd.randrange(rows)
                return (f"{v.name}.row({i})" if self.chance(0.5) else f"{v.name}[{i}]"), (cols,), "region.row"
            if form == "column":
                j = self.rnd.randrange(cols)
                return (f"{v.name}.column({j})" if self.chance(0.5) else f"{v.name}[:, {j}]"), (rows,), "region.column"
            if form == "2d":
                rs, rc = self.random_slice(rows)
                cs, cc = self.random_slice(cols)
                return f"{v.name}[{rs}, {cs}]", (rc, cc), "region.2d"
            vs, hs = self.rnd.randint(1, rows), self.rnd.randint(1, cols)
            vst = self.rnd.randint(0, (rows - 1) // (vs - 1)) if vs > 1 else 1
            hst = self.rnd.randint(0, (cols - 1) // (hs - 1)) if hs > 1 else 1
            i = self.rnd.randint(0, rows - 1 - (vs - 1) * vst)
            j = self.rnd.randint(0, cols - 1 - (hs - 1) * hst)
            return f"{v.name}.select({vs}, {vst}, {hs}, {hst}, {i}, {j})", (vs, hs), "region.select2d"
        n = v.size
        if self.chance(0.5):
            text, count = self.random_slice(n)
            return f"{v.name}[{text}]", (count,), "region.slice"
        size = self.rnd.randint(1, n)
        stride = self.rnd.randint(0, (n - 1) // (size - 1)) if size > 1 else 1
        last_start = n - 1 - (size - 1) * stride
        if self.chance(0.4):
            return f"{v.name}.select({size}, {stride}, {self.dynamic_index(last_start + 1)})", (size,), \
                "region.select.dynamic"
        return f"{v.name}.select({size}, {stride}, {self.rnd.randint(0, last_start)})", (size,), "region.select"

    def op_region_read(self):
        v = self.pick_any_register()
        expr, shape, tag = self.region_read(v)
        return self.define(expr, v.elem, shape, [v], tag, raw=v.raw, nonzero=v.nonzero)

    def op_replicate(self):
        v = self.pick_any_register(lambda v: not v.is_matrix, matrices=False)
        n = v.size
        rep = self.rnd.randint(1, 4)
        width = self.rnd.randint(1, min(n, 16))
        hstride = self.rnd.randint(0, (n - 1) // (width - 1)) if width > 1 else 1
        span = (width - 1) * hstride
        vstride = self.rnd.randint(0, (n - 1 - span) // (rep - 1)) if rep > 1 else 0
        offset = self.rnd.randint(0, n - 1 - span - (rep - 1) * vstride)
        if self.chance(0.3):
            expr = f"{v.name}.replicate({rep})"
            width, rep_shape = n, rep * n
        else:
            expr = f"{v.name}.replicate({rep}, vstride={vstride}, width={width}, hstride={hstride}, offset={offset})"
            rep_shape = rep * width
        return self.define(expr, v.elem, (rep_shape,), [v], "region.replicate", raw=v.raw, nonzero=v.nonzero)

    def op_region_write(self):
        v = self.pick_matrix() if self.chance(0.4) else self.pick_register()
        src_expr, shape, tag = self.region_read(v)
        if not src_expr.startswith(v.name + "[") or (tag.endswith("dynamic") and tag != "region.row.dynamic"):
            return self.op_element_write(v)      # select()/row()/column() are read-only
        target = src_expr[len(v.name):]
        kind = self.weighted({"var": 4, "scalar": 2, "weak": 1})
        safe = self.safe_sources(v.elem)
        if kind == "var":
            src = self.pick_shaped(shape, elems=safe)
        elif kind == "scalar":
            src = self.pick(lambda u: u.shape == () and u.elem in safe, lambda: self.scalar_of(
                self.load(self.choice(safe))))
            src = self.scalar_of(src)
        else:
            src = self.weak_value(v)
        augmented = self.chance(0.3)
        name = self.new_name("w")
        lines = [f"{name} = {v.name}", f"{name}{target} {'+=' if augmented else '='} {src.name}"]
        keeps_bits = not augmented and (isinstance(src, Weak) or (src.raw and src.elem == v.elem))
        var = Var(name, v.elem, v.shape, raw=v.raw and keeps_bits)
        uses = [v] + ([src] if isinstance(src, Var) else [])
        kind = "row.dynamic" if tag == "region.row.dynamic" else ("2d" if v.is_matrix else "1d")
        return self.define_lines(var, lines, uses, f"region.write.{kind}{'.augmented' if augmented else ''}")

    @staticmethod
    def safe_sources(dst):
        """Element types that convert implicitly to ``dst`` with a defined result (no float -> int)."""
        return NUMERIC_TYPES if dst.is_float else INT_TYPES

    def define_lines(self, var, lines, uses, tag, store=True, pool=True):
        """A value defined by several lines (region writes, loops, if/else)."""
        stmt = Stmt(lines, list(uses), var, tag)
        var.stmt = stmt
        self.stmts.append(stmt)
        self.tags[tag] += 1
        if pool:
            self.pool.append(var)
        if store:
            self.store(var)
        return var

    def op_element_write(self, v=None):
        v = v or (self.pick_matrix() if self.chance(0.3) else self.pick_register())
        name = self.new_name("w")
        safe = self.safe_sources(v.elem)
        s = self.scalar_of(self.pick(lambda u: u.shape == () and u.elem in safe,
                                     lambda: self.load(self.choice(safe), ())))
        if v.is_matrix:
            rows, cols = v.shape
            if self.chance(0.4):
                index, tag = f"{self.dynamic_index(rows)}, {self.rnd.randrange(cols)}", "region.insert.dynamic"
            else:
                index, tag = f"{self.rnd.randrange(rows)}, {self.rnd.randrange(cols)}", "region.insert.static"
        elif self.chance(0.4):
            index, tag = self.dynamic_index(v.size), "region.insert.dynamic"
        else:
            index, tag = str(self.rnd.randrange(-v.size, v.size)), "region.insert.static"
        lines = [f"{name} = {v.name}", f"{name}[{index}] = {s.name}"]
        var = Var(name, v.elem, v.shape, EXACT, v.raw and s.raw and s.elem == v.elem)
        return self.define_lines(var, lines, [v, s], tag)

    def op_extract(self):
        v = self.pick_any_register()
        if self.chance(0.5):
            return self.scalar_of(v)
        index = self.dynamic_index(v.size)
        if v.is_matrix:
            index = f"{self.dynamic_index(v.shape[0])}, {self.dynamic_index(v.shape[1])}"
        return self.define(f"{v.name}[{index}]", v.elem, (), [v], "region.extract.dynamic",
                           raw=v.raw, nonzero=v.nonzero)

    # --- shuffles ---
    def op_shuffle(self):
        v = self.pick_any_register()
        n = v.size
        kind = self.weighted({"iselect": 3, "iselect_dynamic": 3, "xor": 2, "xor_dynamic": 1, "rotate": 2,
                              "rotate_dynamic": 2, "broadcast": 2, "broadcast_dynamic": 1})
        shape = v.shape
        if kind == "iselect":
            m = self.vector_size()
            idx = tuple(self.rnd.randrange(n) for _ in range(m))
            expr, shape = f"{v.name}.iselect(({', '.join(map(str, idx))},))", (m,)
        elif kind == "iselect_dynamic":
            m = self.vector_size()
            off = self.index_offset(lambda rng, t, m=m: rng.integers(0, n, m))
            fn = self.choice(["{v}.iselect({i})", "cm.shuffle({v}, {i})"])
            expr, shape = fn.format(v=v.name, i=f"cm.load(idx, {off}, {m})"), (m,)
        elif kind == "xor":
            expr = f"cm.shuffle_xor({v.name}, {self.rnd.randrange(largest_power_of_two_dividing(n))})"
        elif kind == "xor_dynamic":
            expr = f"cm.shuffle_xor({v.name}, s & {largest_power_of_two_dividing(n) - 1})"
        elif kind == "rotate":
            expr = f"cm.rotate({v.name}, {self.rnd.randint(-2 * n, 2 * n)})"
        elif kind == "rotate_dynamic":
            expr = f"cm.rotate({v.name}, s - {self.rnd.randint(0, 2000)})"
        elif kind == "broadcast":
            expr = f"cm.broadcast({v.name}, {self.rnd.randrange(n)})"
        else:
            expr = f"cm.broadcast({v.name}, {self.dynamic_index(n)})"
        return self.define(expr, v.elem, shape, [v], f"shuffle.{kind}", raw=v.raw, nonzero=v.nonzero)

    # --- reductions ---
    def op_reduce(self):
        if self.chance(0.15):
            m = self.pick_mask(self.choice([(self.vector_size(),)] + [v.shape for v in self.pool if v.shape]))
            fn = self.choice(["any", "all"])
            return self.define(f"{m.name}.{fn}()", bool_, (), [m], f"reduce.{fn}")
        fn = self.weighted({"sum": 3, "prod": 1, "max": 2, "min": 2})
        if fn in ("min", "max") and self.chance(0.15):
            # every element NaN, sizes that do and do not fill the lanes (reduction padding)
            elem, n = self.choice(FLOAT_TYPES), self.vector_size()
            off = self.input_offset(elem, n, fill=lambda rng, t, n=n, dtype=elem.np_dtype: np.full(n, np.nan, dtype))
            v = self.define(f"cm.load(in_{elem.name}, {off}, {n})", elem, (n,), [], "memory.load", raw=True,
                            store=False)
        else:
            v = self.pick_matrix() if self.chance(0.4) else self.pick(lambda u: u.shape != ())
        axis = self.choice([None, 0, 1]) if v.is_matrix else None
        if axis is None:
            shape = ()
        else:
            shape = (v.shape[1],) if axis == 0 else (v.shape[0],)
        elem = tr.promote_int(v.elem) if fn in ("sum", "prod") else v.elem
        tol = EXACT
        if elem.is_float and fn in ("sum", "prod"):
            terms = v.shape[0] if axis == 0 else (v.shape[-1] if axis == 1 else v.size)
            tol = Tolerance(fn, 2 * terms + 2, terms, v, axis)
            self.store(v)            # its values give the bound
        arg = "" if axis is None else f", axis={axis}"
        return self.define(f"cm.reduce_{fn}({v.name}{arg})", elem, shape, [v],
                           f"reduce.{fn}.{'float' if elem.is_float else 'int'}.axis{axis}", tol=tol)

    # --- construction ---
    def op_construct(self):
        kind = self.choice(["iota", "full", "build"])
        if kind == "iota":
            elem = self.choice((i32, f32, i16, f16, u8))
            n = self.vector_size()
            start, step = self.rnd.randint(-5, 5), self.rnd.randint(-2, 3)
            if not elem.is_signed and elem.is_int:
                start, step = abs(start), abs(step)
            return self.define(f"cm.iota({tname(elem)}, {n}, {start}, {step})", elem, (n,), [], "construct.iota")
        s = self.pick(lambda u: u.shape == () and not u.elem.is_bool, lambda: self.load(shape=()))
        if kind == "full":
            n = self.vector_size()
            return self.define(f"cm.full(cm.vector[{tname(s.elem)}, {n}], {s.name})", s.elem, (n,), [s],
                               "construct.full", raw=s.raw)
        others = [self.pick(lambda u: u.shape == () and u.elem == s.elem, make=lambda: s) for _ in range(3)]
        items = [s.name] + [o.name if self.chance(0.7) else "1" for o in others]
        return self.define(f"cm.vector[{tname(s.elem)}, 4]({', '.join(items)})", s.elem, (4,), [s] + others,
                           "construct.build")

    # --- memory ---
    def op_gather(self):
        elem = self.weighted(LOAD_TYPES)
        m = self.vector_size()
        table = self.rnd.randint(1, 48)
        base = self.input_offset(elem, table)
        off = self.index_offset(lambda rng, t: rng.integers(0, table, m))
        offsets = f"cm.load(idx, {off}, {m}) + ({base})"
        if self.chance(0.5):
            mask = self.pick_mask((m,))
            return self.define(f"cm.gather(in_{elem.name}, {offsets}, {mask.name})", elem, (m,), [mask],
                               "memory.gather.masked", raw=True)
        return self.define(f"cm.gather(in_{elem.name}, {offsets})", elem, (m,), [], "memory.gather", raw=True)

    def distinct_offsets(self, m, room):
        return self.index_offset(lambda rng, t: rng.permutation(room)[:m])

    def op_scatter(self, v=None):
        v = v or self.pick_register(lambda u: not u.is_matrix and u.exact)
        m = v.size
        room = m + self.rnd.randint(0, 8)
        seg = self.buffer("out", v.elem).alloc(room, tol=v.tol)    # where no lane writes: the fill
        off = self.distinct_offsets(m, room)
        offsets = f"cm.load(idx, {off}, {m}) + (b_out_{v.elem.name} + {seg.offset})"
        uses, mask_arg, tag = [v], "", "memory.scatter"
        if self.chance(0.5):
            mask = self.pick_mask((m,))
            uses, mask_arg, tag = uses + [mask], f", {mask.name}", "memory.scatter.masked"
        return self.effect([f"cm.scatter(out_{v.elem.name}, {offsets}, {v.name}{mask_arg})"], uses, tag)

    def effect(self, lines, uses, tag):
        """A statement without a value (scatter, 2-D store): it depends on what it stores."""
        stmt = Stmt(lines, list(uses), None, tag)
        self.stmts.append(stmt)
        self.tags[tag] += 1
        return stmt

    def op_load2d(self):
        elem = self.weighted(LOAD_TYPES)
        r, c = self.choice([(2, 8), (4, 4), (3, 8), (4, 6), (8, 5), (2, 16), (4, 8), (8, 8), (5, 3)])
        pitch = c + self.rnd.randint(0, 5)
        off = self.input_offset(elem, (r - 1) * pitch + c)
        pitch_text = str(pitch) if self.chance(0.6) else f"s - s + {pitch}"
        return self.define(f"cm.load(in_{elem.name}, {off}, ({r}, {c}), {pitch_text})", elem, (r, c), [],
                           "memory.load2d", raw=True)

    def op_store2d(self):
        v = self.pick(lambda u: u.is_matrix and not u.elem.is_bool, make=self.op_load2d)
        r, c = v.shape
        pitch = c + self.rnd.randint(0, 5)
        buf = self.buffer("out", v.elem)
        seg = buf.alloc((r - 1) * pitch + c, tol=v.tol)
        pitch_text = str(pitch) if self.chance(0.6) else f"s - s + {pitch}"
        return self.effect([f"cm.store(out_{v.elem.name}, b_out_{v.elem.name} + {seg.offset}, {v.name}, "
                            f"{pitch_text})"], [v], "memory.store2d")

    def op_atomic(self):
        elem = self.choice([i32, i32, u32, f32, i64])
        kinds = ["add", "sub", "min", "max", "xchg", "cmpxchg"] + (["and", "or", "xor"] if elem.is_int else [])
        kind = self.choice(kinds)
        buf = self.buffer("atom", elem)
        scalar = self.chance(0.2)
        m = 1 if scalar else self.vector_size()
        room = m + self.rnd.randint(0, 4)
        seg = buf.alloc(room, lambda rng, t, room=room: random_data(elem, rng, room))
        if scalar:
            offsets = f"b_atom_{elem.name} + {seg.offset + self.rnd.randrange(room)}"
            value = self.pick(lambda u: u.shape == () and u.elem == elem, make=lambda: self.scalar_of(
                self.load(elem)))
            shape = ()
        else:
            off = self.distinct_offsets(m, room)
            offsets = f"cm.load(idx, {off}, {m}) + (b_atom_{elem.name} + {seg.offset})"
            value = self.pick_shaped((m,), elems=(elem,))
            shape = (m,)
        uses = [value]
        if kind == "cmpxchg":
            # expected: the current contents where a mask says so, else the value itself
            current = f"cm.gather(atom_{elem.name}, {offsets})" if not scalar else None
            if scalar:
                expected = value.name
            else:
                mask = self.pick_mask((m,))
                uses.append(mask)
                expected = f"cm.merge({current}, {value.name}, {mask.name})"
            desired = self.pick_shaped(shape, elems=(elem,)) if shape else self.pick(
                lambda u: u.shape == () and u.elem == elem, make=lambda: value)
            uses.append(desired)
            expr = f"cm.atomic_cmpxchg(atom_{elem.name}, {offsets}, {expected}, {desired.name})"
        else:
            expr = f"cm.atomic_{kind}(atom_{elem.name}, {offsets}, {value.name})"
        return self.define(expr, elem, shape, uses, f"atomic.{kind}.{elem.name}{'.scalar' if scalar else ''}",
                           raw=True)

    # --- control flow ---
    def op_loop(self):
        acc = self.pick(lambda u: u.elem in LOOP_TYPES and u.shape != (), lambda: self.load(self.choice(LOOP_TYPES)))
        w = self.pick(lambda u: u.elem == acc.elem and u.shape in (acc.shape, ()),
                      lambda: self.pick_shaped(acc.shape, elems=(acc.elem,)))
        op = self.choice(["+", "max", "^"] if acc.elem.is_int else ["+", "max", "*"])
        name = self.new_name("acc")
        step = f"{name} {op} {w.name}" if op != "max" else f"cm.max({name}, {w.name})"
        lines = [f"{name} = {acc.name}",
                 f"for i in range(s % 3 + {self.rnd.randint(0, 2)}):",
                 f"    {name} = {step}"]
        var = Var(name, acc.elem, acc.shape)
        return self.define_lines(var, lines, [acc, w], "control.for")

    def op_if(self):
        a = self.pick(lambda u: u.elem in LOOP_TYPES and u.shape != (), lambda: self.load(self.choice(LOOP_TYPES)))
        b = self.pick_shaped(a.shape, elems=(a.elem,))
        cond = self.choice(["s % 2 == 0", "t == 0", f"s > {self.rnd.randint(0, 1000)}"])
        name = self.new_name("y")
        lines = [f"if {cond}:", f"    {name} = {a.name} - {b.name}", "else:",
                 f"    {name} = cm.min({a.name}, {b.name})"]
        elem = tr.usual_conversions(a.elem, b.elem)
        var = Var(name, elem, a.shape)
        return self.define_lines(var, lines, [a, b], "control.if")

    def op_simd_if(self):
        """SIMD control flow: ``if cm.simd(mask)`` / ``elif`` / ``else`` writing a register of the
        mask's width in the active lanes, sometimes a predicated store of that width, and a
        scalar written whatever the mask."""
        a = self.pick(lambda u: u.elem in LOOP_TYPES and len(u.shape) == 1,
                      lambda: self.load(self.choice(LOOP_TYPES)))
        b = self.pick_shaped(a.shape, elems=(a.elem,))
        mask = self.pick_mask(a.shape)
        name = self.new_name("z")
        lines = [f"{name} = {a.name}.copy()", f"if cm.simd({mask.name}):", f"    {name} = {a.name} - {b.name}"]
        uses, tag = [a, b, mask], "control.simd_if"
        if self.chance(0.5):
            buf = self.buffer("out", a.elem)
            seg = buf.alloc(a.size, tol=a.tol)     # the inactive lanes keep the fill
            lines.append(f"    cm.store({buf.name}, b_{buf.name} + {seg.offset}, {b.name})")
            tag += ".store"
        if self.chance(0.5):
            lines += [f"elif cm.simd({b.name} > {a.name}):", f"    {name} += {b.name}"]
            tag += ".elif"
        lines += ["else:", f"    {name} = cm.min({a.name}, {b.name})"]
        var = Var(name, a.elem, a.shape)
        return self.define_lines(var, lines, uses, tag)

    # --- nested loops, while, break/continue (issue 11: none of these were generated) ---
    def loop_bound(self, group_uniform=False):
        """A trip count uniform over the lanes (``group_uniform``: over the CM threads of a
        group too, for loops with barriers), from the scalar arguments: 0..4, sometimes 0."""
        bounds = {f"s % 3 + {self.rnd.randint(0, 2)}": 4, "s - s": 1, "m": 1}
        if not group_uniform:
            bounds["(s + t) % 3"] = 1
        return self.weighted(bounds)

    def loop_header(self, kind, counter, bound):
        """Lines opening a loop over ``counter`` (a for, or a while with its own counter)."""
        if kind == "for":
            return [f"for {counter} in range({bound}):"]
        return [f"{counter} = 0", f"while {counter} < {bound}:", f"    {counter} += 1"]

    def loop_exit(self, counter, kind):
        """An uniform ``if ...: break/continue`` line (a while counter runs 1..n, a for 0..n-1)."""
        word = self.choice(["break", "continue"])
        first = 1 if kind == "while" else 0
        return [f"if {counter} == {self.rnd.randint(first, first + 2)}:", f"    {word}"], word

    def op_nested_loop(self):
        """Two nested loops (for/while) carrying a register and a scalar count, sometimes with
        break/continue, sometimes a while that never runs; the results are stored after."""
        acc = self.pick(lambda u: u.elem in LOOP_TYPES and u.shape != (), lambda: self.load(self.choice(LOOP_TYPES)))
        w = self.pick(lambda u: u.elem == acc.elem and u.shape in (acc.shape, ()),
                      lambda: self.pick_shaped(acc.shape, elems=(acc.elem,)))
        op = self.choice(["+", "max", "^"] if acc.elem.is_int else ["+", "max", "*"])
        name, count = self.new_name("acc"), self.new_name("n")
        step = f"{name} {op} {w.name}" if op != "max" else f"cm.max({name}, {w.name})"
        lines = [f"{name} = {acc.name}", f"{count} = 0"]
        if self.chance(0.15):          # a uniform condition that never holds (issue 11, case 1)
            lines += [f"while s == {self.rnd.randint(1001, 99999)}:", f"    {name} = {step}", f"    {count} += 1"]
            tags = ["control.while.never"]
        else:
            outer, inner = self.choice(["for", "while"]), self.choice(["for", "while"])
            i, j = self.new_name("i"), self.new_name("j")
            body = [f"{name} = {step}", f"{count} += 1"]
            tags = [f"control.{outer}.{inner}"]
            if self.chance(0.4):
                exit_lines, word = self.loop_exit(j, inner)
                body = (exit_lines + body) if inner == "for" or word == "break" else (body + exit_lines)
                tags.append(f"control.{word}.inner")
            inner_lines = self.loop_header(inner, j, self.loop_bound()) + ["    " + line for line in body]
            if self.chance(0.3):
                exit_lines, word = self.loop_exit(i, outer)
                inner_lines += exit_lines
                tags.append(f"control.{word}.outer")
            lines += self.loop_header(outer, i, self.loop_bound()) + ["    " + line for line in inner_lines]
        var = Var(name, acc.elem, acc.shape)
        var = self.define_lines(var, lines, [acc, w], tags[0])
        for tag in tags[1:]:
            self.tags[tag] += 1
        # the count, broadcast to a vector after the loops (the shape of issue 11's reproducer)
        counter = Var(count, i32, (), stmt=var.stmt)
        self.define(f"cm.full(cm.vector[cm.i32, {self.simd}], {count})", i32, (self.simd,), [counter],
                    "control.after_loop")
        if not var.is_matrix and self.chance(0.4):
            self.op_scatter(var)          # a scatter right after the loops
        return var

    def op_loop_memory(self):
        """Loads and stores inside a loop at offsets from a loop-carried scalar times a scalar
        argument (issue 11, case 6: ``v_pos * width`` after ``v_pos += 8``)."""
        elem = self.weighted(LOAD_TYPES)
        n = self.choice([4, 8, 16, self.simd, 12])
        trips_max, step = 2 + self.rnd.randint(0, 2), self.choice([1, 4, 8])
        bound = f"s % 3 + {trips_max - 2}"
        src = self.input_offset(elem, (trips_max - 1) * step * self.m_value + n)
        dst = self.buffer("out", elem).alloc(trips_max * n, tol=EXACT)
        pos, y = self.new_name("pos"), self.new_name("y")
        kind = self.choice(["for", "while"])
        body = [f"cm.store(out_{elem.name}, b_out_{elem.name} + {dst.offset} + {y} * {n}, "
                f"cm.load(in_{elem.name}, {src} + {pos} * m, {n}))", f"{pos} += {step}"]
        if kind == "while":
            header = [f"{y} = -1", f"while {y} + 1 < {bound}:", f"    {y} += 1"]
        else:
            header = [f"for {y} in range({bound}):"]
        lines = [f"{pos} = cm.group_id(1) * 512"] + header + ["    " + line for line in body]
        return self.effect(lines, [], f"memory.in_loop.{kind}")

    # --- shared local memory and barriers across the CM threads of a group ---
    def op_slm(self):
        """Each CM thread of a group writes a register to SLM; after a barrier it reads its
        partner's; sometimes in a loop with barriers inside."""
        self.group = GROUP
        v = self.pick(lambda u: u.shape != () and not u.is_matrix and u.elem in LOOP_TYPES,
                      lambda: self.load(self.choice(LOOP_TYPES)))
        n, T = v.size, tname(v.elem)
        slm, name = self.new_name("slm"), self.new_name("r")
        lid = "cm.local_id(0)"
        lines = [f"{slm} = cm.slm({T}, {GROUP * n})"]
        if self.chance(0.5):
            read = f"cm.load({slm}, ({lid} + 1) % {GROUP} * {n}, {n})"
            tag = "memory.slm.block"
        else:   # the partner's register backwards, by a gather
            read = f"cm.gather({slm}, ({lid} + 1) % {GROUP} * {n} + {n - 1} - cm.iota(cm.i32, {n}))"
            tag = "memory.slm.gather"
        if self.chance(0.4):
            lines += [f"{name} = {v.name}", f"for {self.new_name('i')} in range({self.loop_bound(group_uniform=True)}):",
                      f"    cm.store({slm}, {lid} * {n}, {name})", "    cm.barrier()",
                      f"    {name} = cm.max({name}, {read})", "    cm.barrier()"]
            tag += ".loop"
        else:
            lines += [f"cm.store({slm}, {lid} * {n}, {v.name})", "cm.barrier()", f"{name} = {read}"]
        return self.define_lines(Var(name, v.elem, v.shape, raw=v.raw), lines, [v], tag)

    # --- dpas ---
    def op_dpas(self):
        """acc + a @ b with f32, f16 or bf16 inputs of small integers (every sum exact), or
        i8/u8 inputs (any values, each operand's signedness drawn) with an i32 accumulator
        (wrapping)."""
        if self.chance(0.3):
            return self.integer_dpas()
        elem = self.choice([f32, f16, bf16])
        M, K, N = self.choice([1, 2, 4, 8]), self.choice([8, 16]), self.choice([8, 16])
        if elem == f32 and self.chance(0.5):
            K = self.choice([4, 8])
        small = lambda rng, t, size: rng.integers(-4, 5, size).astype(np.float32)  # noqa: E731
        offs = [self.input_offset(f32, r * c, "sm", lambda rng, t, size=r * c: small(rng, t, size))
                for r, c in ((M, N), (M, K), (K, N))]
        conv = "" if elem == f32 else f".astype({tname(elem)})"
        name = self.new_name("d")
        lines = [f"c{name} = cm.load(sm_f32, {offs[0]}, ({M}, {N}), {N})",
                 f"a{name} = cm.load(sm_f32, {offs[1]}, ({M}, {K}), {K}){conv}",
                 f"b{name} = cm.load(sm_f32, {offs[2]}, ({K}, {N}), {N}){conv}",
                 f"{name} = cm.dpas(c{name}, a{name}, b{name})"]
        return self.define_lines(Var(name, f32, (M, N)), lines, [], f"dpas.{elem.name}")

    def integer_dpas(self):
        a_elem, b_elem = self.choice([i8, u8]), self.choice([i8, u8])
        M, K, N = self.choice([1, 2, 4, 8]), self.choice([8, 16, 32]), self.choice([8, 16])
        c_off = self.input_offset(i32, M * N)
        a_off, b_off = self.input_offset(a_elem, M * K), self.input_offset(b_elem, K * N)
        name = self.new_name("d")
        lines = [f"c{name} = cm.load(in_i32, {c_off}, ({M}, {N}), {N})",
                 f"a{name} = cm.load(in_{a_elem.name}, {a_off}, ({M}, {K}), {K})",
                 f"b{name} = cm.load(in_{b_elem.name}, {b_off}, ({K}, {N}), {N})",
                 f"{name} = cm.dpas(c{name}, a{name}, b{name})"]
        return self.define_lines(Var(name, i32, (M, N)), lines, [], f"dpas.{a_elem.name}.{b_elem.name}")

    # --- bf16 and f64 arithmetic (kept out of the pool: the other ops know f16/f32 only) ---
    def op_wide_narrow_float(self):
        elem = self.choice([bf16, f64])
        n = self.vector_size()
        a = self.define(f"cm.load(in_{elem.name}, {self.input_offset(elem, n)}, {n})", elem, (n,), [],
                        "memory.load", raw=True, store=False, pool=False)
        if self.chance(0.5):
            b = self.define(f"cm.load(in_{elem.name}, {self.input_offset(elem, n)}, {n})", elem, (n,), [],
                            "memory.load", raw=True, store=False, pool=False)
        else:    # from the pool's f32, converted (rounding to bf16; exact to f64)
            f = self.pick_shaped((n,), elems=(f32,))
            b = self.define(f"{f.name}.astype({tname(elem)})", elem, (n,), [f], f"convert.f32->{elem.name}",
                            pool=False)
        op = self.weighted({"+": 3, "-": 2, "*": 3, "/": 1, "min": 1, "max": 1, "sqrt": 1, "fma": 1, "cmp": 1})
        tol = EXACT
        if op in ("min", "max"):
            expr = f"cm.{op}({a.name}, {b.name})"
        elif op == "sqrt":
            expr = f"cm.sqrt({a.name})"
            tol = Tolerance("ulp", 1 if elem == f64 else 1)
        elif op == "fma":
            expr, tol = f"cm.fma({a.name}, {b.name}, {a.name})", Tolerance("ulp", 1)
        elif op == "cmp":
            r = self.define(f"{a.name} {self.choice(['<', '>=', '=='])} {b.name}", bool_, (n,), [a, b],
                            f"compare.{elem.name}")
            return r
        else:
            expr = f"{a.name} {op} {b.name}"
            if op == "/":
                tol = Tolerance("ulp", 1 if elem == bf16 else 8)
        r = self.define(expr, elem, (n,), [a, b], f"float.{elem.name}.{op}", tol=tol, pool=False)
        if r.exact:      # back to f32 (exact from bf16; rounded from f64) for the other ops
            self.define(f"{r.name}.astype(cm.f32)", f32, (n,), [r], f"convert.{elem.name}->f32")
        return r

    # --- constants at the edges of their type's range ---
    def op_edge_constant(self):
        elem = self.choice(INT_TYPES + (f16, f32))
        values = edge_values(elem)
        n = self.vector_size()
        form = self.choice(["full", "build", "element"])
        if form == "full":
            expr = f"cm.full(cm.vector[{tname(elem)}, {n}], {self.choice(values)})"
            return self.define(expr, elem, (n,), [], "construct.edge.full")
        if form == "build":
            expr = f"cm.vector[{tname(elem)}, 4]({', '.join(str(self.choice(values)) for _ in range(4))})"
            return self.define(expr, elem, (4,), [], "construct.edge.build")
        v = self.pick_register(elems=(elem,))
        name, i = self.new_name("w"), self.rnd.randrange(v.size)
        index = f"{i // v.shape[1]}, {i % v.shape[1]}" if v.is_matrix else str(i)
        lines = [f"{name} = {v.name}", f"{name}[{index}] = {self.choice(values)}"]
        return self.define_lines(Var(name, elem, v.shape), lines, [v], "construct.edge.element")

    OPS = {"op_binary": 7, "op_unary": 2, "op_math": 2, "op_compare": 2, "op_merge": 2, "op_convert": 4,
           "op_bitcast": 1.5, "op_reshape": 0.7, "op_region_read": 3, "op_replicate": 1, "op_region_write": 2,
           "op_element_write": 1, "op_extract": 1, "op_shuffle": 4, "op_reduce": 3, "op_construct": 0.7,
           "op_gather": 1, "op_scatter": 1, "op_load2d": 0.7, "op_store2d": 0.7, "op_atomic": 1.2,
           "op_loop": 0.5, "op_if": 0.5, "op_simd_if": 0.5,
           "op_nested_loop": 0.8, "op_loop_memory": 0.4, "op_slm": 0.5, "op_dpas": 0.4,
           "op_wide_narrow_float": 0.8, "op_edge_constant": 0.5, "op_cm": 1.5}

    def generate(self, n_ops, cases=1):
        """``cases`` independent sub-cases (each starts from an empty pool) in one kernel:
        one compile and one launch check them all."""
        for case in range(cases):
            if case:
                self.pool = [self.s, self.x]
            for _ in range(n_ops() if callable(n_ops) else n_ops):
                getattr(self, self.weighted(self.OPS))()
        self.cases = cases
        return self.finish()

    def finish(self):
        buffers = [self.buffers[k] for k in sorted(self.buffers)]
        scalars = [("s", i32, self.s_value), ("x", f32, self.x_value), ("m", i32, self.m_value)]
        return KernelCase(self.name, self.simd, buffers, scalars, list(self.stmts), self.rnd.getrandbits(32),
                          Counter(self.tags), self.group, dict(self.aliases), self.cases)


def generate(rnd: random.Random, simd: int, name: str = "k", n_ops=None, avoid=(), cases=1) -> KernelCase:
    """One random kernel with ``cases`` independent sub-cases of ``n_ops`` random operations
    each (4..8 when not given); ``avoid``: names of KNOWN_ISSUES not to generate."""
    gen = Generator(rnd, simd, name, avoid)
    return gen.generate(n_ops if n_ops is not None else (lambda: rnd.randint(4, 8)), cases)


def edge_values(elem):
    """Python numbers at the edges of ``elem``'s range (each fits exactly)."""
    if elem.is_int:
        info = np.iinfo(elem.np_dtype)
        return [int(info.min), int(info.max), int(info.min) + 1, int(info.max) - 1]
    if elem == f16:
        return [65504.0, -65504.0, 6.103515625e-05, 5.960464477539063e-08]
    return [3.4028234663852886e+38, -3.4028234663852886e+38, 1.1754943508222875e-38, 1.401298464324817e-45]


def beyond_values(elem):
    """Python numbers just and far beyond ``elem``'s range (source spellings).  An integer
    type takes either reading of its bits (``-1`` for u32, ``0xFFFF`` for i16), so the
    range is -2**(bits-1) .. 2**bits - 1."""
    if elem.is_int:
        return [str(2 ** elem.bits), str(-2 ** (elem.bits - 1) - 1), "2**64 + 5", "-2**70", "10**30"]
    if elem == f16:
        return ["70000.0", "-1e5", "65536.0"]
    return ["1e39", "-3.5e38", "1e300"]


def out_of_range_kernel(rnd: random.Random, simd: int, name: str = "k"):
    """(source, constant text, form) of a kernel that turns a Python number beyond its type's
    range into a typed value: the front end must reject it naming the constant."""
    elem = rnd.choice(INT_TYPES + (f16, f32))
    value = rnd.choice(beyond_values(elem))
    n = rnd.choice([4, 8, 16, 5])
    T = tname(elem)
    forms = {
        "full": f"    v = cm.full(cm.vector[{T}, {n}], {value})",
        "build": f"    v = cm.vector[{T}, 4](1, {value}, 2, 3)",
        "element": f"    v = cm.load(p, 0, {n})\n    v[1] = {value}",
        "scalar": f"    v = cm.full(cm.vector[{T}, {n}], cm.load(p, 0, 1)[0])\n    v[0] = {value}",
    }
    form = rnd.choice(sorted(forms))
    src = (f"import cmlang as cm\n\n\ndef {name}(p: cm.ptr[{T}]):\n{forms[form]}\n"
           f"    cm.store(p, 0, v)\n")
    return src, value, f"{form}.{elem.name}"


def avoided_issues(text=None):
    """The KNOWN_ISSUES named in ``text`` (default: env CMLANG_DIFF_AVOID): "all", or names
    separated by commas."""
    # By default only the driver crash is avoided: it kills the process, not just a case.
    text = (os.environ.get("CMLANG_DIFF_AVOID", "narrow-small-simd32") if text is None else text).strip()
    names = set(KNOWN_ISSUES) if text == "all" else {n.strip() for n in text.split(",") if n.strip()}
    unknown = names - set(KNOWN_ISSUES)
    if unknown:
        raise ValueError(f"CMLANG_DIFF_AVOID: unknown issue(s) {sorted(unknown)}; known: {sorted(KNOWN_ISSUES)}")
    return names


def numbered(source):
    return "\n".join(f"{i + 1:4d}  {line}" for i, line in enumerate(source.splitlines()))


def dependency_slice(case: KernelCase, var: Var) -> list:
    """The statements ``var`` needs (in order): a smaller kernel that computes the same value
    from the same inputs (it still stores the values it passes through)."""
    needed, todo = set(), [var]
    while todo:
        v = todo.pop()
        if v.stmt is None or id(v.stmt) in needed:
            continue
        needed.add(id(v.stmt))
        todo.extend(v.stmt.uses)
    return [s for s in case.stmts if id(s) in needed]


if __name__ == "__main__":
    import sys
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    simd = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rnd = random.Random(seed)
    case = generate(rnd, simd, avoid=avoided_issues(), cases=CASES_PER_KERNEL)
    print(case.source)
    print(f"# launched on {THREADS} CM threads, group {case.group}; aliases {case.aliases}")
    print("# and a kernel whose constant must be rejected:\n" + out_of_range_kernel(rnd, simd)[0])
    print(dict(case.tags))
