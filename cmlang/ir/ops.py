"""The op catalogue: every opcode of the IR, what it takes, and what it means.

This is the single written definition of cmlang's semantics. The interpreter
(``cmlang.runtime.interpreter``) implements exactly these sentences; each code
generator must produce the same results (the device tests compare against the
interpreter op by op).

Conventions shared by all ops:
- A *register* is a ``VectorType`` value (vector or row-major matrix); a region
  op sees its elements in flattened row-major order, index 0..size-1.
- Element-wise ops take operands of one identical type (the front end inserts
  ``splat``/``convert``) and give that type (``cmp`` gives bool of the same shape).
- Scalars are uniform: one value per CM thread.
- Integer arithmetic wraps (two's complement); ``div``/``rem`` on integers truncate
  toward zero like C; division by zero is undefined (the interpreter raises).
- Memory offsets are element indices (not bytes) into the pointer's buffer.
- SIMD control flow (``if cm.simd(mask)``, ``while cm.simd(mask)``) has no op of its own:
  the front end lowers it to ``select`` merges, masked ``gather``/``scatter``/``atomic`` and a
  ``while`` that carries the active lanes (``cmlang/frontend/simd.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..types import ScalarType, VectorType, PtrType


@dataclass(frozen=True)
class OpDef:
    name: str
    category: str
    doc: str
    attrs: tuple = ()          # attribute names the op carries (always printed in this order)
    optional_attrs: tuple = ()  # attribute names it may carry (printed after those)
    terminator: bool = False
    has_side_effects: bool = False


OPS: dict = {}


def _op(name, category, doc, attrs=(), optional_attrs=(), **kw):
    OPS[name] = OpDef(name, category, doc, tuple(attrs), tuple(optional_attrs), **kw)


# --- constants and construction ------------------------------------------------
_op("const", "construct", "A constant of the result type. `value` is one number (every element "
    "gets it) or a tuple with one number per element in row-major order.", ["value"])
_op("splat", "construct", "(s) -> register whose every element is the scalar s.")
_op("build", "construct", "(s0, ..., s{n-1}) -> vector<T, n> with element i = s_i.")

# --- element-wise arithmetic --------------------------------------------------
BINARY = {
    "add": "a + b", "sub": "a - b", "mul": "a * b",
    "div": "a / b (integers: truncated toward zero)",
    "rem": "integers: a - b * div(a, b) (sign of a, like C %); floats: fmod(a, b)",
    "min": "the smaller of a and b (floats: if one is NaN, the other)",
    "max": "the larger of a and b (floats: if one is NaN, the other)",
    "pow": "a ** b (floats only)",
    "and": "bitwise and (bool: logical and)", "or": "bitwise or (bool: logical or)",
    "xor": "bitwise xor (bool: logical xor)",
    "shl": "a << (b & (bits-1))", "shr": "a >> (b & (bits-1)): arithmetic for signed, logical for unsigned",
    "avg": "(a + b + 1) >> 1 computed without overflow: the average rounded up (integers only; CM avg)",
    "mulhi": "the high half of the double-width product a * b (32-bit integers only; signed or "
             "unsigned by the type; CM imul's high result)",
}
INT_ONLY_BINARY = {"avg", "mulhi"}
for _name, _doc in BINARY.items():
    _op(_name, "binary", f"(a, b) -> element-wise {_doc}.")

UNARY = {
    "neg": "-a", "not": "bitwise not (bool: logical not)", "abs": "|a|",
    "exp": "e ** a", "exp2": "2 ** a", "log": "natural log", "log2": "base-2 log",
    "sqrt": "square root", "rsqrt": "1 / sqrt(a)", "inv": "1 / a",
    "sin": "sine", "cos": "cosine", "tanh": "hyperbolic tangent",
    "floor": "round toward -inf", "ceil": "round toward +inf",
    "rndd": "round toward -inf (CM rndd)", "rndu": "round toward +inf (CM rndu)",
    "rnde": "round to the nearest integer, ties to even (CM rnde)",
    "rndz": "round toward zero (CM rndz)", "frc": "a - rndd(a), the fraction in [0, 1) (CM frc)",
    "cbit": "the number of set bits (32-bit integers; CM cbit)",
    "fbl": "the index of the lowest set bit, 0xFFFFFFFF (-1 for i32) if a is 0 (32-bit integers; CM fbl)",
    "fbh": "CM fbh on 32-bit integers, the first bit from the MSB side: unsigned, the number of "
           "leading zeros; signed, the number of leading bits equal to the sign bit (the sign bit "
           "included); 0xFFFFFFFF (-1 for i32) where no bit differs: a = 0, and for signed a = -1",
    "lzd": "the number of leading zero bits, 32 for 0 (32-bit integers; CM lzd)",
}
FLOAT_ONLY_UNARY = {"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "inv", "sin", "cos", "tanh", "floor", "ceil",
                    "rndd", "rndu", "rnde", "rndz", "frc"}
BIT_UNARY = {"cbit", "fbl", "fbh", "lzd"}      # element-wise on i32 or u32 only
for _name, _doc in UNARY.items():
    _op(_name, "unary", f"(a) -> element-wise {_doc}.")

_op("fma", "ternary", "(a, b, c) -> a * b + c element-wise, rounded once.")
_op("cmp", "compare", "(a, b) -> bool of the same shape: a `pred` b with pred in "
    "eq ne lt le gt ge (NaN compares unequal to everything).", ["pred"])
_op("select", "ternary", "(mask, a, b) -> a where mask else b; mask is a bool scalar or a bool "
    "register of a's shape (CM merge).")
_op("convert", "convert", "(a) -> the result element type, same shape. float->int truncates toward "
    "zero; int->int wraps; to float rounds to nearest even. With sat=true the value is first clamped "
    "to the result type's range (NaN -> 0); a float result with sat=true is clamped to [0.0, 1.0] (CM and "
    "ESIMD saturation; NaN -> 0), also when the element types are equal.", ["sat"])
_op("bitcast", "convert", "(a) -> the same bits seen as the result type (CM format); total bit "
    "size must match; the result may have any shape; bool registers pack element 0 into bit 0.")

# --- regions and cross-lane operations ----------------------------------------
_REGION = ("Region <vsize, vstride, hsize, hstride> at element `offset` (plus the optional "
           "dynamic scalar offset operand): element (r, c), r < vsize, c < hsize, is "
           "src[offset + r*vstride + c*hstride].")
_op("rdregion", "region", "(src[, dyn_offset]) -> register of vsize*hsize elements (shape from the "
    "result type). " + _REGION + " Every index must be in range.",
    ["offset", "vsize", "vstride", "hsize", "hstride"])
_op("wrregion", "region", "(dst, src[, dyn_offset]) -> dst with the region elements replaced by src "
    "in row-major order. " + _REGION + " Regions must not overlap themselves.",
    ["offset", "vsize", "vstride", "hsize", "hstride"])
_op("extract", "region", "(src[, dyn_index]) -> the scalar src[index + dyn_index].", ["index"])
_op("insert", "region", "(dst, s[, dyn_index]) -> dst with element index + dyn_index set to s.", ["index"])
_op("iselect", "region", "(src, idx) -> register of idx's shape, r[i] = src[idx[i]]; every index must "
    "be in 0..size-1 (the general cross-lane shuffle).")
_op("reduce", "region", "(src) -> `kind` in add mul min max and or over the elements. axis=none "
    "gives a scalar; on a matrix axis=0 reduces each column (vector of C), axis=1 each row "
    "(vector of R).", ["kind", "axis"])
_op("dpas", "region", "(acc, a, b) -> acc + a @ b with acc: matrix<f32, M, N>, a: matrix<T, M, K>, "
    "b: matrix<T, K, N>; products and sums in f32. Integer form: acc: matrix<i32, M, N>, a and b each i8 "
    "or u8; exact products summed in i32 (wrapping). precision=\"tf32\" (f32 inputs only): every "
    "element of a and b is first rounded to tf32 (10 mantissa bits, nearest even).",
    optional_attrs=["precision"])

# --- memory -----------------------------------------------------------------------
_op("load", "memory", "(p, off) -> vector<T, n>: element i is p[off + i].", has_side_effects=False)
_op("store", "memory", "(p, off, v): p[off + i] = v[i] for every element (a scalar v stores one "
    "element).", has_side_effects=True)
_op("load2d", "memory", "(p, off, pitch) -> matrix<T, r, c>: element (i, j) is p[off + i*pitch + j].")
_op("store2d", "memory", "(p, off, pitch, m): p[off + i*pitch + j] = m[i, j]; where rows overlap "
    "(pitch < c) the later element in row-major order wins.", has_side_effects=True)
_SURFACE = ("a block of the surface `width` x `height` elements with rows `pitch` elements "
            "apart (x, y, width, height, pitch: i32 scalars; x, y may be negative; surface_fits=1: "
            "the launch proved the surface meets the 2-D block messages' limits)")
_op("block_load2d", "memory", "(p, x, y, width, height, pitch) -> matrix<T, r, c>: " + _SURFACE + ": "
    "element (i, j) is p[(y + i)*pitch + x + j] where 0 <= x + j < width and 0 <= y + i < height, "
    "else 0 (no access). transpose=1: the block read is c rows of r elements and element (i, j) is "
    "the block's (j, i).", ["transpose"], optional_attrs=["surface_fits"])
_op("block_store2d", "memory", "(p, x, y, width, height, pitch, m): p[(y + i)*pitch + x + j] = m[i, j] "
    "where 0 <= x + j < width and 0 <= y + i < height; elements outside the surface are not "
    "written.", optional_attrs=["surface_fits"], has_side_effects=True)
_op("block_prefetch2d", "memory", "(p, x, y, width, height, pitch): a hint that the `rows` x `cols` "
    "block at (x, y) of the surface will be read; no effect on any value.", ["rows", "cols"],
    optional_attrs=["surface_fits"], has_side_effects=True)
_op("gather", "memory", "(p, offs[, mask]) -> register of offs' shape: r[i] = p[offs[i]] where mask "
    "(else 0, no access).")
_op("scatter", "memory", "(p, offs, v[, mask]): p[offs[i]] = v[i] where mask; when two elements hit one "
    "address the higher index wins.", has_side_effects=True)
_op("atomic", "memory", "(p, offs, v[, v2][, mask]) -> old values: for each element i in order, atomically "
    "old = p[offs[i]]; p[offs[i]] = old `kind` v[i] with kind in add sub min max and or xor xchg; "
    "cmpxchg stores v2[i] if old == v[i] bit for bit (a float NaN matches the same NaN, -0.0 does "
    "not match +0.0); float min/max ignore a NaN operand. A scalar offset "
    "updates one element. With a mask (a bool register of offs' shape; only with register offsets), "
    "elements where it is false have no access and give 0.",
    ["kind"], has_side_effects=True)
_op("slm", "memory", "() -> ptr<T, local> to `n` elements of shared local memory, one allocation "
    "per group of CM threads, contents undefined until written.", ["n"])
_op("barrier", "sync", "(): every CM thread of the group arrives before any proceeds; memory "
    "written before it (global and local) is visible after it.", has_side_effects=True)
_op("fence", "sync", "(): this CM thread's memory writes are ordered before its later ones.",
    has_side_effects=True)

# --- ids (i32, uniform per CM thread) --------------------------------------------
IDS = {
    "thread_id": "global CM-thread index in dimension `dim`",
    "group_id": "index of this CM thread's group in dimension `dim`",
    "local_id": "index of this CM thread inside its group in dimension `dim`",
    "group_count": "number of groups in dimension `dim`",
    "local_size": "CM threads per group in dimension `dim`",
}
for _name, _doc in IDS.items():
    _op(_name, "id", f"() -> i32: {_doc}.", ["dim"])

# --- structured control flow ---------------------------------------------------
_op("for", "control", "(lo, hi, step, init...) -> final iteration values. Body block args are "
    "(iv, iter...); it runs for iv = lo, lo+step, ... while iv < hi (step > 0) or iv > hi "
    "(step < 0), and ends in yield(next iter...). Bounds and step are signed integers.")
_op("if", "control", "(cond) -> values yielded by the taken block; blocks are then, else.")
_op("while", "control", "(init...) -> values. Block 0 (args: iter...) ends in condition(c, v...): "
    "if c, block 1 runs with args v... and yields the next iter...; else the op gives v....")
_op("yield", "control", "(v...): ends a for/if/while body, handing values to the parent op.",
    terminator=True)
_op("condition", "control", "(c, v...): ends the first block of a while.", terminator=True)
_op("return", "control", "(): ends the kernel.", terminator=True)
_op("print", "debug", "(v...) prints `fmt` formatted with the values, once per CM thread; "
    "registers print like numpy arrays, a format spec applies per element.",
    ["fmt"], has_side_effects=True)
_op("breakpoint", "debug", "(): the interpreter stops in pdb at this kernel line with the live "
    "variables; devices ignore it.", has_side_effects=True)

REDUCE_KINDS = ("add", "mul", "min", "max", "and", "or")
ATOMIC_KINDS = ("add", "sub", "min", "max", "and", "or", "xor", "xchg", "cmpxchg")
CMP_PREDS = ("eq", "ne", "lt", "le", "gt", "ge")


def atomic_mask_index(kind):
    """Where an atomic op's optional mask operand is: after p, offs and its one or two values."""
    return 4 if kind == "cmpxchg" else 3


def is_register(t):
    return isinstance(t, VectorType)


def is_scalar(t):
    return isinstance(t, ScalarType)


def is_ptr(t):
    return isinstance(t, PtrType)


def semantics_table() -> str:
    """The catalogue as Markdown: docs/ops.md is generated from this."""
    lines = ["| op | category | attributes | meaning |", "|---|---|---|---|"]
    for d in OPS.values():
        lines.append(f"| `{d.name}` | {d.category} | {', '.join(d.attrs)} | {d.doc} |")
    return "\n".join(lines)


DOCS_HEADER = """# cmlang IR operations

Generated from `cmlang/ir/ops.py`, the single definition of what each op means: the
interpreter implements these sentences and the device tests compare against it.
Regenerate with `python -c "from cmlang.ir.ops import write_docs; write_docs()"`.
"""


def docs_markdown() -> str:
    conventions = __doc__.split("Conventions shared by all ops:", 1)[1].strip()
    return f"{DOCS_HEADER}\n## Conventions\n\n{conventions}\n\n## Operations\n\n{semantics_table()}\n"


def write_docs(path=None):
    import os
    path = path or os.path.join(os.path.dirname(__file__), "..", "..", "docs", "ops.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(docs_markdown())
