"""Structural and type checks of a kernel function against the op catalogue.

``verify_function(fn)`` raises ``CompileError(message, op.loc)`` at the first problem:
an unknown opcode, missing or unknown attributes, wrong operand/result counts, an
operand not defined before its use (in its block or an enclosing one), a block
that does not end in the terminator its parent needs, or a type rule of
``cmlang.ir.ops`` broken. Each opcode's type rule is one small function in
``TYPE_RULES``; how many operands/results it takes is in ``ARITY``.
"""
from __future__ import annotations

import numbers

from ..errors import CompileError
from ..types import ScalarType, VectorType, PtrType, bool_, i32
from .core import Function, Block, Op, Value
from .ops import (OPS, BINARY, UNARY, FLOAT_ONLY_UNARY, BIT_UNARY, INT_ONLY_BINARY, IDS, REDUCE_KINDS, ATOMIC_KINDS,
                  CMP_PREDS, is_register, is_scalar, is_ptr, atomic_mask_index)

ANY = None  # "any number of" in ARITY

# opcode -> (operand count, result count); a count is an int or an inclusive (lo, hi) range.
ARITY = {
    "const": (0, 1), "splat": (1, 1), "build": ((1, ANY), 1),
    **{name: (2, 1) for name in BINARY}, **{name: (1, 1) for name in UNARY},
    "fma": (3, 1), "cmp": (2, 1), "select": (3, 1), "convert": (1, 1), "bitcast": (1, 1),
    "rdregion": ((1, 2), 1), "wrregion": ((2, 3), 1), "extract": ((1, 2), 1),
    "insert": ((2, 3), 1), "iselect": (2, 1), "reduce": (1, 1), "dpas": (3, 1),
    "load": (2, 1), "store": (3, 0), "load2d": (3, 1), "store2d": (4, 0),
    "block_load2d": (6, 1), "block_store2d": (7, 0), "block_prefetch2d": (6, 0),
    "gather": ((2, 3), 1), "scatter": ((3, 4), 0), "atomic": ((3, 5), (0, 1)),
    "slm": (0, 1), "barrier": (0, 0), "fence": (0, 0),
    **{name: (0, 1) for name in IDS},
    "for": ((3, ANY), (0, ANY)), "if": (1, (0, ANY)), "while": ((0, ANY), (0, ANY)),
    "yield": ((0, ANY), 0), "condition": ((1, ANY), 0), "return": (0, 0),
    "print": ((0, ANY), 0), "breakpoint": (0, 0),
}

BLOCK_COUNTS = {"for": 1, "if": 2, "while": 2}  # every other op has none


def verify_function(fn: Function) -> None:
    _Verifier().function(fn)


def _fail(op: Op, message: str):
    raise CompileError(f"invalid IR: {op.opcode}: {message}", op.loc)


# ---------------------------------------------------------------------------
# Structure: scopes, attributes, counts, terminators

class _Verifier:
    def __init__(self):
        self.visible = set()   # values defined before the current point
        self.seen_ops = set()

    def function(self, fn: Function):
        for arg in fn.params:
            if not (is_scalar(arg.type) or is_register(arg.type)
                    or (is_ptr(arg.type) and arg.type.space == "global")):
                raise CompileError(f"invalid IR: kernel parameter {arg.hint or '?'} has type {arg.type}; "
                                   "parameters are scalars, registers (by value) or global pointers")
        self.block(fn.body)
        last = fn.body.terminator
        if last is None or last.opcode != "return":
            where = last or Op("return")
            raise CompileError(f"invalid IR: kernel {fn.name} must end in return", where.loc)

    def block(self, block: Block):
        """Checks ``block``; its arguments and results are visible only inside it."""
        added = list(block.args)
        self.visible.update(added)
        for i, op in enumerate(block.ops):
            self.op(op, is_last=(i == len(block.ops) - 1))
            added += op.results
        self.visible.difference_update(added)

    def op(self, op: Op, is_last: bool):
        if op.opcode not in OPS:
            _fail(op, "unknown opcode")
        if id(op) in self.seen_ops:
            _fail(op, "the same op object appears twice in the IR")
        self.seen_ops.add(id(op))
        if OPS[op.opcode].terminator and not is_last:
            _fail(op, "a terminator must be the last op of its block")
        for k, v in enumerate(op.operands):
            if not isinstance(v, Value):
                _fail(op, f"operand {k} is not an IR value: {v!r}")
            if v not in self.visible:
                _fail(op, f"operand {k} ({v.hint or 'unnamed'}: {v.type}) is not defined before "
                          "its use in this block or an enclosing one")
        self.attrs(op)
        self.counts(op)
        for b in op.blocks:
            self.block(b)
        TYPE_RULES[op.opcode](op)
        for r in op.results:
            if r.owner is not op:
                _fail(op, "a result's owner is not this op")
        self.visible.update(op.results)

    @staticmethod
    def attrs(op: Op):
        wanted = OPS[op.opcode].attrs
        missing = [a for a in wanted if a not in op.attrs]
        if missing:
            _fail(op, f"missing attribute {', '.join(missing)}")
        extra = [a for a in op.attrs if a not in wanted and a not in OPS[op.opcode].optional_attrs]
        if extra:
            _fail(op, f"unknown attribute {', '.join(extra)}")

    @staticmethod
    def counts(op: Op):
        operands, results = ARITY[op.opcode]
        _check_count(op, "operands", len(op.operands), operands)
        _check_count(op, "results", len(op.results), results)
        blocks = BLOCK_COUNTS.get(op.opcode, 0)
        if len(op.blocks) != blocks:
            _fail(op, f"expected {blocks} blocks, got {len(op.blocks)}")


def _check_count(op, what, n, wanted):
    lo, hi = wanted if isinstance(wanted, tuple) else (wanted, wanted)
    if n < lo or (hi is not ANY and n > hi):
        expected = f"{lo}" if lo == hi else f"{lo}..{'' if hi is ANY else hi}"
        _fail(op, f"expected {expected} {what}, got {n}")


# ---------------------------------------------------------------------------
# Small predicates and checks used by the type rules

def _types(values):
    return [v.type for v in values]


def _fmt(types):
    return "(" + ", ".join(str(t) for t in types) + ")"


def _is_int_scalar(t):
    return is_scalar(t) and t.is_int


def _is_int_value(t):
    """An integer scalar or an integer register."""
    return isinstance(t, (ScalarType, VectorType)) and t.elem.is_int


def _is_bool_scalar(t):
    return t == bool_


def _require(op, ok, message):
    if not ok:
        _fail(op, message)


def _require_int_scalar(op, v, what):
    _require(op, _is_int_scalar(v.type), f"{what} must be an integer scalar, got {v.type}")


def _require_int_attr(op, *names, positive=False):
    for name in names:
        x = op.attrs[name]
        ok = isinstance(x, int) and not isinstance(x, bool) and (x > 0 if positive else True)
        _require(op, ok, f"attribute {name} must be a{' positive' if positive else 'n'} integer, got {x!r}")


def _same_types(op, values, what="operands"):
    types = _types(values)
    _require(op, all(t == types[0] for t in types), f"{what} must have one type, got {_fmt(types)}")
    _require(op, not is_ptr(types[0]), f"{what} cannot be pointers")


def _result_is(op, t):
    got = op.results[0].type
    _require(op, got == t, f"result type must be {t}, got {got}")


def _check_terminator(parent: Op, block: Block, opcode: str, types, what: str):
    term = block.terminator
    if term is None or term.opcode != opcode:
        _fail(parent, f"{what} must end in {opcode}, not {term.opcode if term else 'nothing'}")
    got = _types(term.operands[1:] if opcode == "condition" else term.operands)
    if got != list(types):
        _fail(term, f"{what} hands {_fmt(got)} to {parent.opcode}, which expects {_fmt(types)}")


def _region_in_range(op, size):
    """The static region <vsize, vstride, hsize, hstride> at offset stays inside ``size``."""
    a = op.attrs
    corners = [a["offset"] + r * a["vstride"] + c * a["hstride"]
               for r in (0, a["vsize"] - 1) for c in (0, a["hsize"] - 1)]
    lo, hi = min(corners), max(corners)
    _require(op, lo >= 0 and hi < size,
             f"region touches elements {lo}..{hi} of a {size}-element register")


# ---------------------------------------------------------------------------
# Type rules, one per opcode (operand/result counts are already checked)

def _elementwise(op):
    _same_types(op, op.operands)
    t = op.operands[0].type
    _result_is(op, t)
    if op.opcode == "pow" or op.opcode in FLOAT_ONLY_UNARY:
        _require(op, t.elem.is_float, f"needs floating-point operands, got {t}")
    elif op.opcode in ("and", "or", "xor", "not"):
        _require(op, t.elem.is_int or t.elem.is_bool, f"needs integer or bool operands, got {t}")
    elif op.opcode in ("shl", "shr"):
        _require(op, t.elem.is_int, f"needs integer operands, got {t}")
    elif op.opcode in BIT_UNARY:
        _require(op, t.elem.is_int and t.elem.bits == 32, f"needs i32 or u32 operands, got {t}")
    elif op.opcode in INT_ONLY_BINARY:
        _require(op, t.elem.is_int and t.elem.bits <= 32, f"needs integer operands of at most 32 bits, got {t}")


def _const(op):
    t = op.results[0].type
    _require(op, not is_ptr(t), "cannot make a pointer constant")
    value = op.attrs["value"]
    elems = value if isinstance(value, (tuple, list)) else (value,)
    if isinstance(value, (tuple, list)):
        _require(op, len(elems) == t.size, f"value has {len(elems)} elements, {t} has {t.size}")
    for x in elems:
        ok = isinstance(x, numbers.Real) and (t.elem.is_float or isinstance(x, numbers.Integral))
        _require(op, ok, f"value {x!r} does not fit element type {t.elem}")


def _splat(op):
    s = op.operands[0].type
    _require(op, is_scalar(s), f"operand must be a scalar, got {s}")
    r = op.results[0].type
    _require(op, is_register(r) and r.elem == s, f"result must be a register of {s}, got {r}")


def _build(op):
    _same_types(op, op.operands)
    s = op.operands[0].type
    _require(op, is_scalar(s), f"operands must be scalars, got {s}")
    _result_is(op, VectorType(s, (len(op.operands),)))


def _cmp(op):
    _same_types(op, op.operands)
    _require(op, op.attrs["pred"] in CMP_PREDS, f"unknown predicate {op.attrs['pred']!r}")
    t = op.operands[0].type
    _result_is(op, VectorType(bool_, t.shape) if is_register(t) else bool_)


def _select(op):
    mask, a, b = op.operands
    _same_types(op, [a, b], "the two choices")
    _result_is(op, a.type)
    m = mask.type
    ok = _is_bool_scalar(m) or (is_register(m) and m.elem == bool_ and is_register(a.type)
                                and m.shape == a.type.shape)
    _require(op, ok, f"mask must be bool or a bool register of shape {a.type.shape}, got {m}")


def _convert(op):
    src, dst = op.operands[0].type, op.results[0].type
    _require(op, not is_ptr(src) and not is_ptr(dst), "cannot convert pointers")
    _require(op, src.shape == dst.shape and is_register(src) == is_register(dst),
             f"must keep the shape: {src} -> {dst}")
    _require(op, isinstance(op.attrs["sat"], bool), "attribute sat must be true or false")


def _bitcast(op):
    src, dst = op.operands[0].type, op.results[0].type
    _require(op, not is_ptr(src) and not is_ptr(dst), "cannot bitcast pointers")
    sbits, dbits = src.size * src.elem.bits, dst.size * dst.elem.bits
    _require(op, sbits == dbits, f"total bits differ: {src} has {sbits}, {dst} has {dbits}")


def _region_attrs(op):
    _require_int_attr(op, "offset", "vstride", "hstride")
    _require_int_attr(op, "vsize", "hsize", positive=True)
    return op.attrs["vsize"] * op.attrs["hsize"]


def _rdregion(op):
    n = _region_attrs(op)
    src, r = op.operands[0].type, op.results[0].type
    _require(op, is_register(src), f"source must be a register, got {src}")
    _require(op, not is_ptr(r) and r.elem == src.elem, f"result element type must be {src.elem}, got {r}")
    _require(op, r.size == n, f"result has {r.size} elements, the region has vsize*hsize = {n}")
    if len(op.operands) == 2:
        _require_int_scalar(op, op.operands[1], "the dynamic offset")
    else:
        _region_in_range(op, src.size)


def _wrregion(op):
    n = _region_attrs(op)
    dst, src = op.operands[0].type, op.operands[1].type
    _require(op, is_register(dst), f"destination must be a register, got {dst}")
    _result_is(op, dst)
    _require(op, not is_ptr(src) and src.elem == dst.elem, f"source element type must be {dst.elem}, got {src}")
    _require(op, src.size == n, f"source has {src.size} elements, the region has vsize*hsize = {n}")
    if len(op.operands) == 3:
        _require_int_scalar(op, op.operands[2], "the dynamic offset")
    else:
        _region_in_range(op, dst.size)


def _index_in_range(op, reg, dynamic):
    _require_int_attr(op, "index")
    if dynamic is not None:
        _require_int_scalar(op, dynamic, "the dynamic index")
    else:
        i = op.attrs["index"]
        _require(op, 0 <= i < reg.size, f"index {i} is out of range for {reg}")


def _extract(op):
    src = op.operands[0].type
    _require(op, is_register(src), f"source must be a register, got {src}")
    _result_is(op, src.elem)
    _index_in_range(op, src, op.operands[1] if len(op.operands) == 2 else None)


def _insert(op):
    dst, s = op.operands[0].type, op.operands[1].type
    _require(op, is_register(dst), f"destination must be a register, got {dst}")
    _require(op, s == dst.elem, f"inserted value must be {dst.elem}, got {s}")
    _result_is(op, dst)
    _index_in_range(op, dst, op.operands[2] if len(op.operands) == 3 else None)


def _iselect(op):
    src, idx = op.operands[0].type, op.operands[1].type
    _require(op, is_register(src), f"source must be a register, got {src}")
    _require(op, is_register(idx) and idx.elem.is_int, f"indices must be an integer register, got {idx}")
    _result_is(op, VectorType(src.elem, idx.shape))


def _reduce(op):
    src, kind, axis = op.operands[0].type, op.attrs["kind"], op.attrs["axis"]
    _require(op, is_register(src), f"source must be a register, got {src}")
    _require(op, kind in REDUCE_KINDS, f"unknown kind {kind!r}")
    if axis is None:
        _result_is(op, src.elem)
        return
    _require(op, src.is_matrix and axis in (0, 1), f"axis={axis!r} needs a matrix and 0 or 1, got {src}")
    rows, cols = src.shape
    _result_is(op, VectorType(src.elem, (cols,) if axis == 0 else (rows,)))


def _dpas(op):
    acc, a, b = _types(op.operands)
    floats = acc.elem.name == "f32" and a.elem == b.elem and a.elem.name in ("f16", "bf16", "f32")
    ints = acc.elem.name == "i32" and a.elem.name in ("i8", "u8") and b.elem.name in ("i8", "u8")
    ok = (all(is_register(t) and t.is_matrix for t in (acc, a, b)) and (floats or ints)
          and a.shape[0] == acc.shape[0] and b.shape[1] == acc.shape[1] and a.shape[1] == b.shape[0])
    _require(op, ok, "needs acc: matrix<f32, M, N>, a: matrix<T, M, K>, b: matrix<T, K, N> with T in "
                     f"f16 bf16 f32 (or i32 acc with a, b each i8 or u8), got {_fmt((acc, a, b))}")
    if "precision" in op.attrs:
        _require(op, op.attrs["precision"] == "tf32" and a.elem.name == "f32",
                 f"precision must be \"tf32\" with f32 inputs, got {op.attrs['precision']!r} on {a.elem}")
    _result_is(op, acc)


# --- memory ---------------------------------------------------------------------

def _pointer(op) -> PtrType:
    p = op.operands[0].type
    _require(op, is_ptr(p), f"first operand must be a pointer, got {p}")
    return p


def _elem_matches(op, p, t, what):
    _require(op, not is_ptr(t) and t.elem == p.elem,
             f"{what} element type must match {p} ({p.elem}), got {t}")


def _load(op):
    p, r = _pointer(op), op.results[0].type
    _require_int_scalar(op, op.operands[1], "the offset")
    _require(op, is_register(r) and not r.is_matrix, f"result must be a vector, got {r}")
    _elem_matches(op, p, r, "result")


def _store(op):
    p = _pointer(op)
    _require_int_scalar(op, op.operands[1], "the offset")
    _elem_matches(op, p, op.operands[2].type, "stored value")


def _load2d(op):
    p, r = _pointer(op), op.results[0].type
    _require_int_scalar(op, op.operands[1], "the offset")
    _require_int_scalar(op, op.operands[2], "the pitch")
    _require(op, is_register(r) and r.is_matrix, f"result must be a matrix, got {r}")
    _elem_matches(op, p, r, "result")


def _store2d(op):
    p, m = _pointer(op), op.operands[3].type
    _require_int_scalar(op, op.operands[1], "the offset")
    _require_int_scalar(op, op.operands[2], "the pitch")
    _require(op, is_register(m) and m.is_matrix, f"stored value must be a matrix, got {m}")
    _elem_matches(op, p, m, "stored value")


def _surface(op):
    _require(op, op.attrs.get("surface_fits", 1) == 1, "surface_fits must be 1")
    for value, what in zip(op.operands[1:6], ("x", "y", "the width", "the height", "the pitch")):
        _require(op, value.type == i32, f"{what} of a 2-D block must be an i32 scalar, got {value.type}")


def _block_load2d(op):
    p, r = _pointer(op), op.results[0].type
    _surface(op)
    _require(op, is_register(r) and r.is_matrix, f"result must be a matrix, got {r}")
    _require(op, op.attrs.get("transpose") in (0, 1), "transpose must be 0 or 1")
    _elem_matches(op, p, r, "result")


def _block_store2d(op):
    p, m = _pointer(op), op.operands[6].type
    _surface(op)
    _require(op, is_register(m) and m.is_matrix, f"stored value must be a matrix, got {m}")
    _elem_matches(op, p, m, "stored value")


def _block_prefetch2d(op):
    _pointer(op)
    _surface(op)
    for k in ("rows", "cols"):
        _require(op, isinstance(op.attrs.get(k), int) and op.attrs[k] >= 1, f"{k} must be an int >= 1")


def _offsets_and_mask(op, offs, mask, allow_scalar=False):
    t = offs.type
    ok = (is_register(t) or allow_scalar) and _is_int_value(t)
    _require(op, ok, f"offsets must be an integer {'value' if allow_scalar else 'register'}, got {t}")
    if mask is not None:
        want = VectorType(bool_, t.shape) if is_register(t) else bool_
        _require(op, mask.type == want, f"mask must be {want}, got {mask.type}")


def _gather(op):
    p, offs = _pointer(op), op.operands[1]
    _offsets_and_mask(op, offs, op.operands[2] if len(op.operands) == 3 else None)
    _result_is(op, VectorType(p.elem, offs.type.shape))


def _scatter(op):
    p, offs, v = _pointer(op), op.operands[1], op.operands[2]
    _offsets_and_mask(op, offs, op.operands[3] if len(op.operands) == 4 else None)
    _require(op, v.type == VectorType(p.elem, offs.type.shape),
             f"stored value must be {VectorType(p.elem, offs.type.shape)}, got {v.type}")


def _atomic(op):
    p, offs, v = _pointer(op), op.operands[1], op.operands[2]
    kind = op.attrs["kind"]
    _require(op, kind in ATOMIC_KINDS, f"unknown kind {kind!r}")
    at = atomic_mask_index(kind)
    mask = op.operands[at] if len(op.operands) > at else None
    _require(op, mask is None or is_register(offs.type), "a masked atomic needs register offsets")
    _offsets_and_mask(op, offs, mask, allow_scalar=True)
    want = VectorType(p.elem, offs.type.shape) if is_register(offs.type) else p.elem
    _require(op, v.type == want, f"value must be {want}, got {v.type}")
    _require(op, len(op.operands) >= at,
             "cmpxchg takes (p, offs, expected, new); the other kinds take (p, offs, v); either may end "
             "in a mask")
    if kind == "cmpxchg":
        _require(op, op.operands[3].type == want, f"new value must be {want}, got {op.operands[3].type}")
    if op.results:
        _result_is(op, want)


def _slm(op):
    _require_int_attr(op, "n", positive=True)
    r = op.results[0].type
    _require(op, is_ptr(r) and r.space == "local", f"result must be a local pointer, got {r}")


def _id(op):
    _result_is(op, i32)
    _require(op, op.attrs["dim"] in (0, 1, 2), f"dim must be 0, 1 or 2, got {op.attrs['dim']!r}")


def _print(op):
    _require(op, isinstance(op.attrs["fmt"], str), "attribute fmt must be a string")


def _nothing(op):
    pass  # counts and context say it all (terminators are checked by their parent)


# --- structured control flow -----------------------------------------------------

def _for(op):
    lo, hi, step, *init = op.operands
    _require(op, _is_int_scalar(lo.type) and lo.type == hi.type == step.type,
             f"bounds and step must be one integer scalar type, got {_fmt(_types([lo, hi, step]))}")
    iters = _types(init)
    body = op.blocks[0]
    _require(op, _types(body.args) == [lo.type] + iters,
             f"body arguments must be {_fmt([lo.type] + iters)}, got {_fmt(_types(body.args))}")
    _require(op, _types(op.results) == iters, f"results must be {_fmt(iters)}, got {_fmt(_types(op.results))}")
    _check_terminator(op, body, "yield", iters, "the for body")


def _if(op):
    cond = op.operands[0].type
    _require(op, _is_bool_scalar(cond), f"condition must be bool, got {cond}")
    results = _types(op.results)
    for block, what in zip(op.blocks, ("the then block", "the else block")):
        _require(op, not block.args, f"{what} takes no arguments")
        _check_terminator(op, block, "yield", results, what)


def _while(op):
    before, after = op.blocks
    inits = _types(op.operands)
    _require(op, _types(before.args) == inits,
             f"first block arguments must be {_fmt(inits)}, got {_fmt(_types(before.args))}")
    term = before.terminator
    _check_terminator(op, before, "condition", _types(op.results), "the first block of while")
    _require(op, _is_bool_scalar(term.operands[0].type),
             f"the condition must be bool, got {term.operands[0].type}")
    _require(op, _types(after.args) == _types(op.results),
             f"second block arguments must be {_fmt(_types(op.results))}, got {_fmt(_types(after.args))}")
    _check_terminator(op, after, "yield", inits, "the second block of while")


TYPE_RULES = {
    "const": _const, "splat": _splat, "build": _build,
    **{name: _elementwise for name in (*BINARY, *UNARY, "fma")},
    "cmp": _cmp, "select": _select, "convert": _convert, "bitcast": _bitcast,
    "rdregion": _rdregion, "wrregion": _wrregion, "extract": _extract, "insert": _insert,
    "iselect": _iselect, "reduce": _reduce, "dpas": _dpas,
    "load": _load, "store": _store, "load2d": _load2d, "store2d": _store2d,
    "block_load2d": _block_load2d, "block_store2d": _block_store2d, "block_prefetch2d": _block_prefetch2d,
    "gather": _gather, "scatter": _scatter, "atomic": _atomic, "slm": _slm,
    "barrier": _nothing, "fence": _nothing,
    **{name: _id for name in IDS},
    "for": _for, "if": _if, "while": _while,
    "yield": _nothing, "condition": _nothing, "return": _nothing,
    "print": _print, "breakpoint": _nothing,
}
assert set(TYPE_RULES) == set(OPS) == set(ARITY), "verify.py must cover the whole op catalogue"
