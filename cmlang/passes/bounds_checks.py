"""Checked mode: bounds checks of every memory access and dynamic register index, in the IR.

``insert_bounds_checks(fn)`` (run for ``CMLANG_CHECK=1`` / ``@cm.kernel(check=True)``)
rewrites each checked op ``r = op(...)`` into

    ok = <every index the op touches is inside its buffer / register>
    r = if ok { r' = op(...); yield r' } else { <record the first fault>; yield <zeros or dst> }

so both targets compile the checks with their ordinary lowering (no code generator knows
about checked mode) and a bad access never happens.  The kernel gains hidden parameters,
after the user's: one i64 element count per pointer parameter (``__cm_size_<name>``),
then ``__cm_errors: ptr<i32>`` (``runtime.bounds.ERROR_WORDS`` words).  The first fault
of a launch sets word 0 by compare-and-swap and writes the record: the site's number,
the CM thread, the bad index and which element of the access it was
(``runtime.bounds.RECORD``); the launcher turns it into the interpreter's report.

Conditions are scalars (a register's verdict is reduced), so the branch is uniform on
the SIMT target; each is also taken from lane 0 of a register (``visibly_uniform``) so
that the CPU runtime's vectorizer sees it so.  Checked: load, store, load2d, store2d, block_load2d, block_store2d
(elements inside the surface), gather, scatter (enabled elements), atomic, on global
memory and SLM; rdregion, wrregion, extract and insert with a dynamic offset, iselect.
"""
from __future__ import annotations

import numpy as np

from ..ir.core import Block, Function, Op, Value
from ..runtime.bounds import ERROR_WORDS, RECORD, CheckSite
from .buffer_extents import constant_elems
from ..types import PtrType, VectorType, bool_, i32, i64

ERRORS_PARAM = "__cm_errors"
SIZE_PREFIX = "__cm_size_"

MEMORY_WHAT = {"load": "load from", "store": "store to", "load2d": "2-D load from",
               "store2d": "2-D store to", "block_load2d": "2-D block load from",
               "block_store2d": "2-D block store to", "gather": "gather from",
               "scatter": "scatter to"}


def insert_bounds_checks(fn: Function) -> tuple:
    """Adds the checks and the hidden parameters to ``fn`` in place; returns the sites
    (``CheckSite``, numbered in order) and the number of hidden parameters."""
    checker = _Checker(fn)
    checker.block(fn.body)
    return tuple(checker.sites), len(checker.size_params) + 1


class _Checker:
    def __init__(self, fn: Function):
        self.fn = fn
        self.sites = []
        pointers = [(i, v) for i, v in enumerate(fn.params) if isinstance(v.type, PtrType)]
        names = list(fn.param_names)
        # Hidden parameters: the pointer arguments' lengths, then the error buffer.
        self.size_params = {v: self._add_param(i64, SIZE_PREFIX + names[i]) for i, v in pointers}
        self.errors = self._add_param(PtrType(i32), ERRORS_PARAM)
        self.param_index = {v: i for i, v in pointers}
        self.slm = {}           # slm op result -> (name, n)

    def _add_param(self, t, name) -> Value:
        body = self.fn.body
        v = Value(t, name, owner=body, index=len(body.args))
        body.args.append(v)
        self.fn.param_names.append(name)
        return v

    # --- walking -----------------------------------------------------------------
    def block(self, block: Block):
        old, block.ops = block.ops, []
        for op in old:
            for inner in op.blocks:
                self.block(inner)
            if op.opcode == "slm":
                self.slm[op.results[0]] = (op.results[0].hint or "slm", op.attrs["n"])
            rewrite = self._rewriter(op)
            if rewrite is None:
                block.ops.append(op)
            else:
                block.ops.extend(rewrite(_Emitter(op.loc), op))

    def _rewriter(self, op):
        if self._safe(op):
            return None
        n = len(op.operands)
        if op.opcode in ("load", "store"):
            return self._block_access
        if op.opcode in ("load2d", "store2d", "block_load2d", "block_store2d", "gather", "scatter", "atomic"):
            return self._indexed_access
        if op.opcode in ("rdregion", "wrregion") and n == (2 if op.opcode == "rdregion" else 3):
            return self._region
        if op.opcode in ("extract", "insert") and n == (2 if op.opcode == "extract" else 3):
            return self._element
        if op.opcode == "iselect":
            return self._iselect
        return None

    def _safe(self, op) -> bool:
        """Accesses whose indices are known to lie in bounds need no check: SLM accesses
        and iselects whose offsets are constants, narrow unsigned values widened, or
        masked with a constant (a histogram's ``cm.atomic_add(slm, pixels.astype(i32), 1)``
        into 256 bins)."""
        code = op.opcode
        if code in ("load", "store", "gather", "scatter", "atomic") and op.operands[0] in self.slm:
            low, high = _value_range(op.operands[1])
            if low is None:
                return False
            if code in ("load", "store"):
                high += (op.results[0].type.size if code == "load" else _size(op.operands[2].type)) - 1
            return 0 <= low and high < self.slm[op.operands[0]][1]
        if code == "iselect":
            low, high = _value_range(op.operands[1])
            return low is not None and 0 <= low and high < op.operands[0].type.size
        return False

    # --- sites ---------------------------------------------------------------------
    def _site(self, op, kind, what, pointer=None, size=0) -> int:
        loc = op.loc
        buffer, param = "", -1
        if pointer is not None:
            if pointer in self.param_index:
                param = self.param_index[pointer]
                buffer = f"'{self.fn.param_names[param]}'"
            else:
                name, size = self.slm.get(pointer, (pointer.hint or "slm", 0))
                buffer = f"'{name}' (SLM)"
        self.sites.append(CheckSite(loc.file if loc else "", loc.line if loc else 0,
                                    loc.col if loc else 0, kind, what, buffer, param, size))
        return len(self.sites) - 1

    def _length(self, e, pointer) -> Value:
        """The element count of the buffer ``pointer`` points to, as an i64 scalar."""
        if pointer in self.size_params:
            return self.size_params[pointer]
        return e.const(i64, self.slm.get(pointer, ("", 0))[1])

    # --- the rewrites ----------------------------------------------------------------
    def _block_access(self, e, op):
        """load/store: elements start .. start+n-1 (the interpreter's check_block)."""
        p = op.operands[0]
        n = op.results[0].type.size if op.opcode == "load" else _size(op.operands[2].type)
        site = self._site(op, "memory", MEMORY_WHAT[op.opcode], p)
        start, length = e.to_i64(op.operands[1]), self._length(e, p)
        ok = e.op("and", [e.cmp(start, e.const(i64, 0), "ge"),
                          e.cmp(start, e.op("sub", [length, e.const(i64, n)], i64), "le")], bool_)

        def report(f):
            negative = f.cmp(start, f.const(i64, 0), "lt")
            index = f.select(negative, start, f.max(start, length))
            element = f.select(negative, f.const(i64, 0),
                               f.max(f.const(i64, 0), f.op("sub", [length, start], i64)))
            self._record(f, site, index, element)
        return e.guarded(op, ok, report)

    def _indexed_access(self, e, op):
        p = op.operands[0]
        what = (f"atomic {op.attrs['kind']} on" if op.opcode == "atomic" else MEMORY_WHAT[op.opcode])
        site = self._site(op, "memory", what, p)
        length = self._length(e, p)
        if op.opcode in ("gather", "scatter", "atomic"):
            index, active = self._indices(e, op)
            return self._check_indices(e, op, site, index, active, e.const(i64, 0), length)
        # 2-D accesses: the smallest and largest index decide (scalars: cheap on the
        # path that runs); the report finds the first bad element.
        starts, ends, empty = self._index_bounds(e, op)
        ok = e.all_of(bool_, [e.cmp(x, e.const(i64, 0), "ge") for x in starts]
                      + [e.cmp(x, length, "lt") for x in ends])
        if empty is not None:
            ok = e.op("or", [ok, empty], bool_)

        def report(f):
            index, active = self._indices(f, op)
            self._report_first_bad(f, site, index, active, f.const(i64, 0), length)
        return e.guarded(op, ok, report)

    def _index_bounds(self, e, op):
        """Indices among which are the smallest and the largest a 2-D access touches (i64
        scalars: the ends of its first and last row), and for a surface block whether it
        touches nothing (or None)."""
        code, args = op.opcode, op.operands

        def at(rows_part, cols_part):
            return e.op("add", [rows_part, cols_part], i64)

        if code in ("load2d", "store2d"):
            # the first and last row's ends, whichever way the pitch goes (no min/max:
            # see _Emitter.min)
            rows, cols = (op.results[0] if code == "load2d" else args[3]).type.shape
            offset, pitch = e.to_i64(args[1]), e.to_i64(args[2])
            last = e.op("add", [offset, e.op("mul", [pitch, e.const(i64, rows - 1)], i64)], i64)
            width = e.const(i64, cols - 1)
            return [offset, last], [e.op("add", [offset, width], i64), e.op("add", [last, width], i64)], None
        shape = (args[6].type if code == "block_store2d" else op.results[0].type).shape
        if code == "block_load2d" and op.attrs.get("transpose"):
            shape = shape[::-1]
        rows, cols = shape
        x, y, width, height, pitch = (e.to_i64(v) for v in args[1:6])
        zero, one = e.const(i64, 0), e.const(i64, 1)
        # the rows and columns inside the surface
        r0 = e.max(y, zero)
        r1 = e.op("sub", [e.min(e.op("add", [y, e.const(i64, rows)], i64), height), one], i64)
        c0 = e.max(x, zero)
        c1 = e.op("sub", [e.min(e.op("add", [x, e.const(i64, cols)], i64), width), one], i64)
        empty = e.op("or", [e.cmp(r0, r1, "gt"), e.cmp(c0, c1, "gt")], bool_)
        first, last = e.op("mul", [r0, pitch], i64), e.op("mul", [r1, pitch], i64)
        return [at(first, c0), at(last, c0)], [at(first, c1), at(last, c1)], empty

    def _indices(self, e, op):
        """The element indices ``op`` touches (an i64 register, or scalar for a scalar
        atomic) and which of them it touches (a bool register, or None: all)."""
        code, args = op.opcode, op.operands
        if code in ("gather", "scatter", "atomic"):
            mask_at = {"gather": 2, "scatter": 3}.get(code)
            mask = args[mask_at] if mask_at is not None and len(args) > mask_at else None
            return e.to_i64(args[1]), mask
        if code in ("load2d", "store2d"):
            shape = (op.results[0] if code == "load2d" else args[3]).type.shape
            rows, cols = _grid(shape)
            t = VectorType(i64, shape)
            base = e.op("add", [e.splat(e.to_i64(args[1]), t),
                                e.op("mul", [e.splat(e.to_i64(args[2]), t), e.const(t, rows)], t)], t)
            return e.op("add", [base, e.const(t, cols)], t), None
        # block_load2d / block_store2d: (p, x, y, width, height, pitch[, m])
        shape = (args[6].type if code == "block_store2d" else op.results[0].type).shape
        if code == "block_load2d" and op.attrs.get("transpose"):
            shape = shape[::-1]
        rows, cols = _grid(shape)
        t, tb = VectorType(i64, shape), VectorType(bool_, shape)
        x, y, width, height, pitch = (e.splat(e.to_i64(v), t) for v in args[1:6])
        r = e.op("add", [y, e.const(t, rows)], t)
        c = e.op("add", [x, e.const(t, cols)], t)
        zero = e.const(t, 0)
        inside = e.all_of(tb, [e.cmp(c, zero, "ge", tb), e.cmp(c, width, "lt", tb),
                               e.cmp(r, zero, "ge", tb), e.cmp(r, height, "lt", tb)])
        return e.op("add", [e.op("mul", [r, pitch], t), c], t), inside

    def _check_indices(self, e, op, site, index, active, low, high):
        """Every ``index`` element (where ``active``) in low .. high-1; the report names
        the first one that is not (the interpreter's check_indices)."""
        if not isinstance(index.type, VectorType):          # a scalar atomic: one element
            ok = e.op("and", [e.cmp(index, low, "ge"), e.cmp(index, high, "lt")], bool_)
            return e.guarded(op, ok, lambda f: self._record(f, site, index, f.const(i64, 0)))
        t = index.type
        tb = VectorType(bool_, t.shape)
        bad = e.op("or", [e.cmp(index, e.splat(low, t), "lt", tb),
                          e.cmp(index, e.splat(high, t), "ge", tb)], tb)
        if active is not None:
            bad = e.op("and", [bad, active], tb)
        ti = VectorType(i32, t.shape)
        any_bad = e.reduce("max", e.select(bad, e.const(ti, 1), e.const(ti, 0)))
        ok = e.cmp(any_bad, e.const(i32, 0), "eq")

        return e.guarded(op, ok, lambda f: self._record_first(f, site, index, bad))

    def _report_first_bad(self, f, site, index, active, low, high):
        t = index.type
        tb = VectorType(bool_, t.shape)
        bad = f.op("or", [f.cmp(index, f.splat(low, t), "lt", tb),
                          f.cmp(index, f.splat(high, t), "ge", tb)], tb)
        if active is not None:
            bad = f.op("and", [bad, active], tb)
        self._record_first(f, site, index, bad)

    def _record_first(self, f, site, index, bad):
        """Records the first element where ``bad`` holds (its index and position)."""
        ti = VectorType(i32, index.type.shape)
        order = f.const(ti, tuple(range(index.type.size)))
        first = f.reduce("min", f.select(bad, order, f.const(ti, index.type.size)))
        self._record(f, site, f.op("extract", [index, first], i64, index=0), f.to_i64(first))

    def _region(self, e, op):
        """rdregion/wrregion with a dynamic offset: the region's indices plus it."""
        a = op.attrs
        rows = np.arange(a["vsize"])[:, None] * a["vstride"]
        cols = np.arange(a["hsize"])[None, :] * a["hstride"]
        static = (a["offset"] + rows + cols).reshape(-1)
        size = op.operands[0].type.size
        site = self._site(op, "region", op.opcode, size=size)
        dyn = e.to_i64(op.operands[-1])
        lo, hi = int(static.min()), int(static.max())
        ok = e.op("and", [e.cmp(dyn, e.const(i64, -lo), "ge"),
                          e.cmp(dyn, e.const(i64, size - 1 - hi), "le")], bool_)
        t = VectorType(i64, (len(static),))

        def report(f):
            index = f.op("add", [f.const(t, tuple(int(x) for x in static)), f.splat(dyn, t)], t)
            self._report_first_bad(f, site, index, None, f.const(i64, 0), f.const(i64, size))
        return e.guarded(op, ok, report)

    def _element(self, e, op):
        """extract/insert with a dynamic index."""
        size = op.operands[0].type.size
        site = self._site(op, "element", op.opcode, size=size)
        index = e.op("add", [e.const(i64, op.attrs["index"]), e.to_i64(op.operands[-1])], i64)
        ok = e.op("and", [e.cmp(index, e.const(i64, 0), "ge"), e.cmp(index, e.const(i64, size), "lt")], bool_)
        return e.guarded(op, ok, lambda f: self._record(f, site, index, f.const(i64, 0)))

    def _iselect(self, e, op):
        size = op.operands[0].type.size
        site = self._site(op, "iselect", "iselect", size=size)
        index = e.to_i64(op.operands[1])
        return self._check_indices(e, op, site, index, None, e.const(i64, 0), e.const(i64, size))

    # --- the error record -------------------------------------------------------------
    def _record(self, f, site, index, element):
        """The first fault of the launch: word 0 from 0 to 1, then the record."""
        zero, one = f.const(i32, 0), f.const(i32, 1)
        old = f.op("atomic", [self.errors, zero, zero, one], i32, kind="cmpxchg")
        first = f.cmp(old, zero, "eq")
        high = f.convert(f.op("shr", [index, f.const(i64, 32)], i64), i32)
        words = [f.const(i32, site)] + [f.op("thread_id", [], i32, dim=d) for d in range(3)] + [
            f.convert(index, i32), high, f.convert(element, i32), zero]
        record = Op("build", words, [VectorType(i32, (len(words),))], loc=f.loc)
        store = Op("store", [self.errors, f.const(i32, RECORD), record.results[0]], loc=f.loc)
        f.ops.append(record)
        f.ops.append(Op("if", [first], [], blocks=[_block([store], f.loc), _block([], f.loc)], loc=f.loc))


assert RECORD + 8 <= ERROR_WORDS


def _value_range(value, depth=0):
    """(lowest, highest) an integer value (every element of a register) can take, or
    (None, None): constants, widened unsigned values, ``and`` with a value >= 0, sums and
    conversions of those."""
    op = value.defining_op
    if op is None or depth > 16:
        return None, None
    if op.opcode == "const":
        elems = constant_elems(value, getattr(value.type, "size", 1))
        return (min(elems), max(elems)) if elems else (None, None)
    if op.opcode == "convert" and not op.attrs.get("sat"):
        source = getattr(op.operands[0].type, "elem", op.operands[0].type)
        target = getattr(value.type, "elem", value.type)
        if source.kind not in "iu" or target.kind not in "iu":
            return None, None
        low, high = _value_range(op.operands[0], depth + 1)
        if low is None and source.kind == "u":
            low, high = 0, 2 ** source.bits - 1
        fits = low is not None and target.bits > source.bits and (target.kind == "i" or low >= 0)
        limit = 2 ** (target.bits - (target.kind == "i"))
        return (low, high) if fits or (low is not None and 0 <= low and high < limit) else (None, None)
    if op.opcode == "add":
        (l1, h1), (l2, h2) = (_value_range(v, depth + 1) for v in op.operands)
        if l1 is None or l2 is None:
            return None, None
        limit = 2 ** (getattr(value.type, "elem", value.type).bits - 1)
        return (l1 + l2, h1 + h2) if -limit <= l1 + l2 and h1 + h2 < limit else (None, None)
    if op.opcode == "and":
        for mask in op.operands:
            low, high = _value_range(mask, depth + 1)
            if low is not None and low >= 0:
                return 0, high
    if op.opcode == "splat":
        return _value_range(op.operands[0], depth + 1)
    return None, None


CLAMPS = {"min", "max", "abs", "select"}


def _clamped_operands(op, budget=256) -> bool:
    """Whether a scalar operand of ``op`` is computed with a min, max, abs or select
    (which LLVM may turn into a min or max): the check's condition would look per-lane to
    the CPU runtime's vectorizer.  Follows at most ``budget`` ops; past it, says yes."""
    todo = [v for v in op.operands[1:] if not isinstance(v.type, (VectorType, PtrType))]
    seen = set()
    while todo:
        defining = todo.pop().defining_op
        if defining is None or id(defining) in seen:
            continue
        if defining.opcode in CLAMPS or len(seen) >= budget:
            return True
        seen.add(id(defining))
        todo.extend(defining.operands)
    return False


def _size(t) -> int:
    return t.size if isinstance(t, VectorType) else 1


def _grid(shape):
    rows, cols = shape
    r = np.repeat(np.arange(rows), cols)
    c = np.tile(np.arange(cols), rows)
    return tuple(int(x) for x in r), tuple(int(x) for x in c)


def _block(ops, loc, values=()) -> Block:
    b = Block()
    b.ops = list(ops) + [Op("yield", list(values), loc=loc)]
    return b


class _Emitter:
    """Makes ops at ``loc`` into ``self.ops``."""

    def __init__(self, loc):
        self.loc = loc
        self.ops = []
        self.clamped = False     # made a min or max (see min)

    def op(self, opcode, operands, result_type, **attrs) -> Value:
        o = Op(opcode, operands, [result_type], attrs, loc=self.loc)
        self.ops.append(o)
        return o.results[0]

    def const(self, t, value) -> Value:
        return self.op("const", [], t, value=value)

    def cmp(self, a, b, pred, t=bool_) -> Value:
        return self.op("cmp", [a, b], t, pred=pred)

    def select(self, c, a, b) -> Value:
        return self.op("select", [c, a, b], a.type)

    def splat(self, v, t) -> Value:
        return self.op("splat", [v], t)

    def reduce(self, kind, v) -> Value:
        return self.op("reduce", [v], v.type.elem, kind=kind, axis=None)

    # A condition made with a min or max (LLVM's smin/smax, OpenCL min/max to the CPU
    # runtime's vectorizer) looks per-lane to the vectorizer: ``guarded`` then takes it
    # from lane 0 (``visibly_uniform``).
    def min(self, a, b) -> Value:
        self.clamped = True
        return self.select(self.cmp(a, b, "lt"), a, b)

    def max(self, a, b) -> Value:
        self.clamped = True
        return self.select(self.cmp(a, b, "gt"), a, b)

    def all_of(self, t, conditions) -> Value:
        result = conditions[0]
        for c in conditions[1:]:
            result = self.op("and", [result, c], t)
        return result

    def to_i64(self, v) -> Value:
        t = v.type
        target = VectorType(i64, t.shape) if isinstance(t, VectorType) else i64
        return v if t == target else self.convert(v, target)

    def convert(self, v, t) -> Value:
        return self.op("convert", [v], t, sat=False)

    def visibly_uniform(self, ok) -> Value:
        """``ok`` as lane 0 of a register holding it: the same scalar, but on the SIMT
        target a sub-group broadcast, which the CPU runtime's vectorizer knows to be
        uniform.  A condition made with a min or max (2-D bounds, offsets a kernel clamps)
        looks per-lane to it, and it would run both sides of the branch under a mask, the
        fault report included (3x on a transpose)."""
        as_int = self.select(ok, self.const(i32, 1), self.const(i32, 0))
        lane0 = self.op("extract", [self.splat(as_int, VectorType(i32, (2,)))], i32, index=0)
        return self.cmp(lane0, self.const(i32, 0), "ne")

    def guarded(self, op, ok, report) -> list:
        """The ops so far, then ``if ok { op } else { report; zeros or the unchanged register }``;
        the if takes over ``op``'s results (their uses stay as they are)."""
        then_results = []
        for r in op.results:
            fresh = Value(r.type, r.hint, owner=op, index=r.index)
            then_results.append(fresh)
        original = op.results
        op.results = then_results
        failure = _Emitter(self.loc)
        report(failure)
        fallbacks = []
        for r in original:
            if op.opcode in ("wrregion", "insert"):
                fallbacks.append(op.operands[0])           # the register, unchanged
            else:
                fallbacks.append(failure.const(r.type, False if r.type.elem == bool_ else 0)
                                 if isinstance(r.type, VectorType) else
                                 failure.const(r.type, False if r.type == bool_ else 0))
        if self.clamped or _clamped_operands(op):
            ok = self.visibly_uniform(ok)
        guard = Op("if", [ok], [], blocks=[_block([op], self.loc, then_results),
                                           _block(failure.ops, self.loc, fallbacks)], loc=self.loc)
        for i, r in enumerate(original):
            r.owner, r.index = guard, i
        guard.results = list(original)
        return self.ops + [guard]
