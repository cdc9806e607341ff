"""Runs a prepared IR function: CM threads, groups, barriers, control flow, debug ops.

Preparation (``Program``) turns every block into a list of *steps*, one closure per
op that reads its operands from and writes its results to a per-thread list of
registers (``regs``; every IR value has a fixed slot). Data ops get their numpy
function from ``semantics.SEMANTICS``; the ops that need the running CM thread
(ids, SLM, barrier, print, breakpoint) and the structured control flow are here.

A CM thread runs as a Python generator that yields at every ``barrier``. A group's
threads are advanced in turn, each up to its next barrier (or its end), so all of
them arrive before any proceeds; a thread that ends while others wait is barrier
divergence. Groups run one after another.
"""
from __future__ import annotations

import bdb
import builtins
import itertools

import numpy as np

from ...errors import LaunchError
from ...types import PtrType, bf16
from ...ir.ops import IDS
from ..bounds import runtime_error, thread_text
from .memory import Buffer, new_slm
from .semantics import SEMANTICS
from .values import KernelFault, make_value, type_matches, bf16_bits_to_f32

# Tests switch this on to check that every op's result has exactly its IR type's
# numpy representation (dtype and shape); it costs a check per op.
CHECK_TYPES = False


class _OpFailure(Exception):
    """An op failed; carries the op (for its location) up to the thread, which adds itself."""

    def __init__(self, op, cause):
        super().__init__(str(cause))
        self.op, self.cause = op, cause


# ---------------------------------------------------------------------------
# Threads and groups

class _Group:
    def __init__(self, group_id, local_size, group_count):
        self.group_id, self.local_size, self.group_count = group_id, local_size, group_count
        self.slm_buffers = {}      # slm op -> Buffer, shared by the group's CM threads

    def slm(self, op):
        buf = self.slm_buffers.get(op)
        if buf is None:
            name = op.results[0].hint or "slm"
            buf = self.slm_buffers[op] = new_slm(name, op.results[0].type.elem, op.attrs["n"])
        return buf


class _Thread:
    __slots__ = ("group", "local_id", "thread_id", "ids")

    def __init__(self, group, local_id):
        self.group = group
        self.local_id = local_id
        self.thread_id = tuple(g * s + l for g, s, l in zip(group.group_id, group.local_size, local_id))
        as_i32 = lambda xs: tuple(np.int32(x) for x in xs)  # noqa: E731
        self.ids = {"thread_id": as_i32(self.thread_id), "group_id": as_i32(group.group_id),
                    "local_id": as_i32(local_id), "group_count": as_i32(group.group_count),
                    "local_size": as_i32(group.local_size)}

    def describe(self):
        return thread_text(self.thread_id, self.group.group_id, self.local_id)


# ---------------------------------------------------------------------------
# Preparation: blocks -> steps

class _Block:
    """A prepared block: where its arguments go, its steps, what its terminator hands on."""
    __slots__ = ("arg_slots", "steps", "result_slots")

    def __init__(self, arg_slots, steps, result_slots):
        self.arg_slots, self.steps, self.result_slots = arg_slots, steps, result_slots


def _run_block(block, regs, th, args):
    """Generator: runs ``block`` with ``args``; returns its terminator's operand values."""
    for slot, value in zip(block.arg_slots, args):
        regs[slot] = value
    op = None
    try:
        for fn, op, yields in block.steps:
            if yields:
                yield from fn(regs, th)
            else:
                fn(regs, th)
    except (_OpFailure, bdb.BdbQuit):
        raise
    except Exception as e:
        raise _OpFailure(op, e) from e
    return [regs[s] for s in block.result_slots]


class Program:
    """A function prepared for execution (done once per launch, shared by all threads)."""

    def __init__(self, fn):
        self.fn = fn
        self.slots = {}
        param_scope = [(p.hint, self._slot(p)) for p in fn.params]
        self.param_slots = [s for _, s in param_scope]
        self.body = self._block(fn.body, param_scope)

    def _slot(self, value):
        return self.slots.setdefault(value, len(self.slots))

    def _block(self, block, scope):
        """``scope``: (name, slot) of the values visible here, for breakpoints."""
        arg_slots = [self._slot(a) for a in block.args]
        scope = scope + [(a.hint, s) for a, s in zip(block.args, arg_slots)]
        steps, term = [], None
        for op in block.ops:
            if op.opcode in ("yield", "condition", "return"):
                term = op
                break
            steps.append(self._step(op, scope))     # nested blocks copy what they need
            scope.extend((r.hint, self._slot(r)) for r in op.results)
        result_slots = [self._slot(v) for v in term.operands] if term is not None else []
        return _Block(arg_slots, steps, result_slots)

    def _step(self, op, scope):
        """(fn(regs, thread), op, whether fn is a generator to ``yield from``)."""
        name = op.opcode
        if name in _CONTROL:
            return _CONTROL[name](self, op, scope), op, True
        if name == "barrier":
            def barrier(regs, th):
                yield op
            return barrier, op, True
        if name in _THREAD_OPS:
            return _THREAD_OPS[name](self, op, scope), op, False
        return _data_step(op, SEMANTICS[name](op), [self._slot(v) for v in op.operands],
                          [self._slot(r) for r in op.results]), op, False


def _data_step(op, sem, ins, outs):
    """A closure that calls the op's numpy semantics on registers ``ins``."""
    if not outs:
        return lambda regs, th: sem(*[regs[i] for i in ins])
    out = outs[0]
    if CHECK_TYPES:
        t = op.results[0].type

        def checked(regs, th):
            value = regs[out] = sem(*[regs[i] for i in ins])
            if not type_matches(t, value):
                raise AssertionError(f"{op.opcode} gave {type(value).__name__} "
                                     f"{getattr(value, 'dtype', '')} {np.shape(value)} for {t}")
        return checked
    if len(ins) == 0:
        def step(regs, th):
            regs[out] = sem()
    elif len(ins) == 1:
        a, = ins

        def step(regs, th):
            regs[out] = sem(regs[a])
    elif len(ins) == 2:
        a, b = ins

        def step(regs, th):
            regs[out] = sem(regs[a], regs[b])
    else:
        def step(regs, th):
            regs[out] = sem(*[regs[i] for i in ins])
    return step


# ---------------------------------------------------------------------------
# Control flow (generators: a barrier may sit inside)

def _assign(regs, slots, values):
    for s, v in zip(slots, values):
        regs[s] = v


def _for(prog, op, scope):
    lo_s, hi_s, step_s, *init_slots = [prog._slot(v) for v in op.operands]
    body = prog._block(op.blocks[0], scope)
    iv_type = np.dtype(op.operands[0].type.np_dtype).type
    result_slots = [prog._slot(r) for r in op.results]

    def run_for(regs, th):
        lo, hi, step = int(regs[lo_s]), int(regs[hi_s]), int(regs[step_s])
        if step == 0:
            raise KernelFault("for loop with step 0 never ends")
        values = [regs[s] for s in init_slots]
        iv = lo
        while (iv < hi) if step > 0 else (iv > hi):
            values = yield from _run_block(body, regs, th, [iv_type(iv), *values])
            iv += step
        _assign(regs, result_slots, values)
    return run_for


def _if(prog, op, scope):
    cond_s = prog._slot(op.operands[0])
    then_block, else_block = (prog._block(b, scope) for b in op.blocks)
    result_slots = [prog._slot(r) for r in op.results]

    def run_if(regs, th):
        block = then_block if regs[cond_s] else else_block
        values = yield from _run_block(block, regs, th, ())
        _assign(regs, result_slots, values)
    return run_if


def _while(prog, op, scope):
    init_slots = [prog._slot(v) for v in op.operands]
    before, after = (prog._block(b, scope) for b in op.blocks)
    result_slots = [prog._slot(r) for r in op.results]

    def run_while(regs, th):
        values = [regs[s] for s in init_slots]
        while True:
            cond, *passed = yield from _run_block(before, regs, th, values)
            if not cond:
                break
            values = yield from _run_block(after, regs, th, passed)
        _assign(regs, result_slots, passed)
    return run_while


_CONTROL = {"for": _for, "if": _if, "while": _while}


# ---------------------------------------------------------------------------
# Ops that need the running CM thread

def _id_op(prog, op, scope):
    out, kind, dim = prog._slot(op.result), op.opcode, op.attrs["dim"]

    def read_id(regs, th):
        regs[out] = th.ids[kind][dim]
    return read_id


def _slm_op(prog, op, scope):
    out = prog._slot(op.result)

    def slm(regs, th):
        regs[out] = th.group.slm(op)
    return slm


class _Shown:
    """A register in ``print``: numpy's compact text; a format spec applies per element."""

    def __init__(self, array):
        self.array = array

    def __format__(self, spec):
        formatter = {"all": (lambda x: format(x, spec))} if spec else None
        return np.array2string(self.array, separator=", ", formatter=formatter, max_line_width=10 ** 6)

    __str__ = __repr__ = lambda self: format(self, "")


def _print_op(prog, op, scope):
    fmt, ins = op.attrs["fmt"], [prog._slot(v) for v in op.operands]

    def print_values(regs, th):
        values = [_Shown(v) if isinstance(v, np.ndarray) else v for v in (regs[i] for i in ins)]
        print(f"[thread {th.thread_id}] {fmt.format(*values)}")
    return print_values


def _breakpoint_op(prog, op, scope):
    """Runs ``breakpoint()`` in a frame that claims the kernel's file and line, with the
    kernel's variables (by their Python names) as its locals: pdb's ``l`` shows the
    kernel source, ``p acc`` prints a register; sys.breakpointhook/PYTHONBREAKPOINT apply."""
    file = op.loc.file if op.loc else f"<kernel {prog.fn.name}>"
    line = op.loc.line if op.loc else 1
    code = compile("\n" * (line - 1) + "__cm_breakpoint__()", file, "exec")
    names = [(name, slot) for name, slot in scope if name.isidentifier()]   # a snapshot

    def stop(regs, th):
        local_vars = {}
        for name, slot in names:        # later definitions of a name win, as in Python
            value = regs[slot]
            local_vars[name] = value.data if isinstance(value, Buffer) else value
        global_vars = {"__name__": "__cmlang_kernel__", "__builtins__": builtins, "np": np,
                       "__cm_breakpoint__": builtins.breakpoint, "__cm_thread__": th.describe()}
        exec(code, global_vars, local_vars)
    return stop


_THREAD_OPS = {**{name: _id_op for name in IDS}, "slm": _slm_op, "print": _print_op,
               "breakpoint": _breakpoint_op}


# ---------------------------------------------------------------------------
# Running

def _thread_main(prog, th, args):
    """Generator for one CM thread; yields the barrier op it waits at."""
    regs = [None] * len(prog.slots)
    for slot, value in zip(prog.param_slots, args):
        regs[slot] = value
    try:
        yield from _run_block(prog.body, regs, th, ())
    except _OpFailure as failure:
        cause = failure.cause
        message = str(cause) if isinstance(cause, KernelFault) else f"{type(cause).__name__}: {cause}"
        raise _runtime_error(failure.op.loc, message, th) from (None if isinstance(cause, KernelFault) else cause)


def _runtime_error(loc, message, th):
    err = runtime_error(loc, message, th.describe())
    err.thread_id, err.group_id, err.local_id = th.thread_id, th.group.group_id, th.local_id
    return err


def _run_group(prog, group, args):
    """Advances the group's CM threads in turn from barrier to barrier."""
    local_ids = [(x, y, z) for z, y, x in itertools.product(*(range(n) for n in reversed(group.local_size)))]
    running = [(th, _thread_main(prog, th, args)) for th in (_Thread(group, lid) for lid in local_ids)]
    while running:
        waiting, finished = [], []
        for th, gen in running:
            try:
                barrier = next(gen)
                waiting.append((th, gen, barrier))
            except StopIteration:
                finished.append(th)
        if waiting and finished:
            th, _, barrier = waiting[0]
            ended = ", ".join(str(t.local_id) for t in finished)
            raise _runtime_error(barrier.loc, "barrier divergence: this CM thread waits at a barrier that "
                                 f"CM thread(s) with local_id {ended} of its group ended without reaching", th)
        running = [(th, gen) for th, gen, _ in waiting]


def _dims(value, what):
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise LaunchError(f"{what} must be a positive int or a tuple of 1 to 3 positive ints, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _bind_args(fn, args, names):
    """Argument values in register form; pointers become Buffers over the arrays (in place)."""
    values, copies = [], []
    for param, name, arg in zip(fn.params, names, args):
        t = param.type
        if not isinstance(t, PtrType):
            if t == bf16 and isinstance(arg, np.uint16):
                arg = bf16_bits_to_f32(arg)     # the launcher hands bf16 scalars over as their bits
            values.append(make_value(t, arg))
            continue
        want = np.dtype(t.elem.np_dtype)
        if not isinstance(arg, np.ndarray) or arg.dtype != want:
            got = arg.dtype if isinstance(arg, np.ndarray) else type(arg).__name__
            raise LaunchError(f"argument '{name}' ({t}) must be a numpy array of {want}, got {got}")
        flat = arg.reshape(-1) if arg.flags.c_contiguous else np.ascontiguousarray(arg).reshape(-1)
        if not np.shares_memory(flat, arg):
            copies.append((arg, flat))      # written back after the run
        values.append(Buffer(name, flat, t.elem))
    return values, copies


def run(fn, grid, group, args, *, param_info=None):
    """Execute IR function ``fn`` on the host, CM thread by CM thread.

    ``grid``/``group``: int or tuple of up to 3 ints counting CM threads (group None:
    every CM thread is its own group). ``args`` in IR parameter order: numpy arrays for
    pointers (read and written in place; bf16 as uint16 bits), numbers for scalars
    (converted to the parameter's type; a bf16 scalar may also come as its np.uint16 bits).
    ``param_info``: optional parameter names (strings or objects with ``.name``, e.g.
    ``KernelBinary.params``) used in messages; by default the IR's parameter names.
    Raises ``KernelRuntimeError`` naming file:line:col, the CM thread and the source line.
    """
    grid3, group3 = _dims(grid, "grid"), _dims(1 if group is None else group, "group")
    if any(g % l for g, l in zip(grid3, group3)):
        raise LaunchError(f"grid {grid3} is not a multiple of the group {group3}")
    if len(args) != len(fn.params):
        raise LaunchError(f"{fn.name} takes {len(fn.params)} arguments, got {len(args)}")
    names = _param_names(fn, param_info)
    values, copies = _bind_args(fn, args, names)
    prog = Program(fn)
    counts = tuple(g // l for g, l in zip(grid3, group3))
    try:
        with np.errstate(all="ignore"):
            for gz, gy, gx in itertools.product(*(range(n) for n in reversed(counts))):
                _run_group(prog, _Group((gx, gy, gz), group3, counts), values)
    finally:
        for original, flat in copies:
            original[...] = flat.reshape(original.shape)


def _param_names(fn, param_info):
    if param_info is not None:
        return [getattr(p, "name", p) for p in param_info]
    names = list(fn.param_names) if fn.param_names else []
    return [names[i] if i < len(names) else (p.hint or f"arg{i}") for i, p in enumerate(fn.params)]
