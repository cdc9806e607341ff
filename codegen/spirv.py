"""LLVM IR -> SPIR-V with LLVM's own spirv64 backend (through llvmlite), plus safety checks.

- ``llvm_to_spirv`` parses, verifies, optimizes (new pass manager) and emits the module.
- Every module is scanned for imported functions: the backend turns a builtin it does not
  recognise into an import that validates fine and only fails (or crashes) in the driver,
  so a module that still imports one is a ``CompileError`` naming it (docs/toolchain.md).
- ``validate`` runs spirv-val when it is installed, else ``check_structure`` (header, ids,
  the widths of integer arithmetic operands); ``disassemble`` runs spirv-dis.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading

import llvmlite.binding as llvm

from cmlang import limits
from cmlang.errors import CompileError
from cmlang.runtime.forked import ChildCrashed, ChildTimedOut, call_in_child

TRIPLE = "spirv64-unknown-unknown"

# SPIR-V extensions the backend may use. The option is process-global, so it is set once
# to everything the SIMT lowering can need; the backend declares only those a module uses.
EXTENSIONS = (
    "SPV_INTEL_subgroups",                 # intel_sub_group_shuffle*, block reads/writes
    "SPV_EXT_shader_atomic_float_add",     # atomicrmw fadd/fsub
    "SPV_EXT_shader_atomic_float_min_max",  # atomicrmw fmin/fmax
)

# LLVM options, target machine and codegen are not thread-safe: every use of llvmlite in
# cmlang (this module and vc_translate) holds this lock.
llvm_lock = threading.Lock()
_state = {}


def _target_machine():
    """A fresh spirv64 target machine (the extension option is set once, before the first).

    The SPIR-V backend keeps per-module state in its subtarget: reusing one target
    machine for a second module crashes, so every module gets its own (~0.1 ms).
    """
    if "target" not in _state:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _state["target"] = llvm.Target.from_triple(TRIPLE)
    # The options are process-global and other code in the process (a user's own llvmlite
    # use, tests) may have changed them since: set them for every module.
    llvm.set_option("", "--spirv-ext=" + ",".join("+" + e for e in EXTENSIONS))
    # No loop strength reduction in the backend: it rewrites loop arithmetic into
    # trunc/zext chains through odd widths (i64 -> i8 -> i32 for an induction value it
    # knows fits), and the backend's legalizer turns those into a trunc it then types like
    # its source, so the SPIR-V drops the trunc (``OpIMul %uint %a %ulong``: invalid, and the
    # driver fails to link it). LSR tunes addressing modes for a machine target; the driver
    # that compiles the SPIR-V runs its own.
    llvm.set_option("", "--disable-lsr")
    return _state["target"].create_target_machine(opt=2)


def data_layout() -> str:
    """The spirv64 data layout string (what the lowering writes into each module)."""
    with llvm_lock:
        if "layout" not in _state:
            _state["layout"] = str(_target_machine().target_data)
        return _state["layout"]


def _optimize(module, tm, opt_level: int):
    pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    # The OpenCL runtime vectorizes across lanes itself; LLVM's vectorizers would only add
    # vector types of widths SPIR-V may not have.
    pto.loop_vectorization = False
    pto.slp_vectorization = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


def llvm_to_spirv(llvm_ir: str, opt_level: int = 2, allowed_imports=frozenset(), kernel="?"):
    """(optimized LLVM IR text, SPIR-V bytes) of a module; raises CompileError on imports
    other than ``allowed_imports`` (builtins the device's compiler resolves).  ``kernel``
    names the module's kernel in errors."""
    try:
        result = _in_child(kernel, _compile, llvm_ir, opt_level) if _use_fork() else None
    except OSError:          # fork refused (memory limits): compile here instead
        result = None
    if result is None:
        with llvm_lock:
            result = _compile(llvm_ir, opt_level)
    optimized, spirv = result
    check_imports(spirv, allowed_imports)
    return optimized, spirv


def _compile(llvm_ir: str, opt_level: int):
    tm = _target_machine()
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
    except RuntimeError as e:
        raise CompileError(f"internal error: generated LLVM IR is invalid: {e}") from None
    _assume_forward_progress(module)
    if opt_level > 0:
        _optimize(module, tm, opt_level)
    return str(module), tm.emit_object(module)


def _assume_forward_progress(module):
    """Mark every defined function ``mustprogress``: a CM kernel follows C++'s rule that a
    loop without side effects terminates, so the optimizer deletes such a loop instead of
    leaving a loop with no exit behind (``while n == 12345: i += 0`` became ``br label
    %self``). A kernel holding a loop with no exit is one the OpenCL CPU runtime's
    vectorizer gives up on, silently running it one work-item per sub-group."""
    for function in module.functions:
        if not function.is_declaration:
            function.add_function_attribute("mustprogress")


# --- running the backend in a forked child ---------------------------------------------------
#
# LLVM 22's SPIR-V backend keeps module state in statics (SPIRVModuleAnalysis::MAI, ...)
# that leak from one module into the next: after a few dozen modules in one process it
# sometimes numbers two SPIR-V ids alike (spirv-val: "Id 2 is defined more than once")
# or crashes. A forked child starts from this process's pristine state every time, so
# each module compiles as if it were the first; it also keeps an LLVM fatal error
# ("LLVM ERROR: ...", which exits the process) from killing the caller. A fork costs 1-7 ms
# (more with a larger parent). CMLANG_CODEGEN_IN_PROCESS=1 compiles in this process instead.

def _use_fork() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux") and \
        os.environ.get("CMLANG_CODEGEN_IN_PROCESS", "") in ("", "0")


def _in_child(kernel, fn, *args):
    """fn(*args) in a forked child; a crash of the backend, or a child that does not finish
    in time, becomes a CompileError naming the kernel."""
    try:
        return call_in_child(fn, *args, while_forking=_llvm_idle)
    except ChildCrashed as e:
        raise CompileError(f"kernel '{kernel}': the SPIR-V backend failed (exit status {e.status}):\n"
                           f"{e.log}") from None
    except ChildTimedOut as e:
        raise CompileError(f"kernel '{kernel}': LLVM's SPIR-V backend did not finish in "
                           f"{e.timeout:g} s (its child process was killed; set "
                           f"{limits.CHILD_SECONDS.env} to allow longer)"
                           + (f":\n{e.log}" if e.log else "")) from None


@contextlib.contextmanager
def _llvm_idle():
    """Held across the fork: no other thread is inside LLVM at that moment.  A thread inside
    llvmlite holds llvmlite's own process-wide lock, and in the child that lock would stay
    held by a thread that does not exist there (the child's first llvmlite call would wait
    forever).  Holding it, and cmlang's, here means the child's copies are held by its own
    (only) thread, which llvmlite's reentrant lock lets in again.  The target and options
    are set up first, so the child inherits them."""
    with llvm_lock, _llvmlite_lock():
        _target_machine()
        yield


def _llvmlite_lock():
    """The lock llvmlite takes around every call into LLVM (``ffi.lib._lock``, not public:
    where an llvmlite release moves it, cmlang's own ``llvm_lock`` still covers cmlang's
    threads)."""
    lock = getattr(getattr(llvm.ffi, "lib", None), "_lock", None)
    return lock if hasattr(lock, "__enter__") else contextlib.nullcontext()


# --- reading SPIR-V binaries ---------------------------------------------------------------

_MAGIC = 0x07230203
_OP_EXTENSION, _OP_FUNCTION, _OP_FUNCTION_END, _OP_DECORATE = 10, 54, 56, 71
_LINKAGE_ATTRIBUTES, _IMPORT = 41, 1


def _instructions(spirv: bytes):
    """(opcode, operand words) of every instruction after the 5-word header."""
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv[:len(spirv) // 4 * 4])
    if not words or words[0] != _MAGIC:
        raise CompileError("not a SPIR-V module")
    i = 5
    while i < len(words):
        count, opcode = words[i] >> 16, words[i] & 0xFFFF
        if count == 0:
            raise CompileError("malformed SPIR-V module")
        yield opcode, words[i + 1:i + count]
        i += count


def _string(words):
    """A SPIR-V literal string; returns (text, number of words it used)."""
    raw = b"".join(struct.pack("<I", w) for w in words)
    end = raw.index(b"\0")
    return raw[:end].decode("utf-8"), end // 4 + 1


def imported_functions(spirv: bytes) -> list:
    """Names of functions the module imports (builtin variables, also imports, excluded)."""
    functions, imports = set(), {}
    for opcode, ops in _instructions(spirv):
        if opcode == _OP_FUNCTION:
            functions.add(ops[1])
        elif opcode == _OP_DECORATE and len(ops) > 2 and ops[1] == _LINKAGE_ATTRIBUTES:
            name, used = _string(ops[2:])
            if ops[2 + used] == _IMPORT:
                imports[ops[0]] = name
    return sorted(name for target, name in imports.items() if target in functions)


def extensions(spirv: bytes) -> tuple:
    """The SPIR-V extensions a module declares (OpExtension)."""
    return tuple(_string(ops)[0] for opcode, ops in _instructions(spirv) if opcode == _OP_EXTENSION)


def check_imports(spirv: bytes, allowed=frozenset()) -> None:
    names = [n for n in imported_functions(spirv) if n not in allowed]
    if names:
        raise CompileError(
            "the SPIR-V backend did not recognise the builtin(s) " + ", ".join(names)
            + "; the module would import them and fail in the driver")


# --- SPIRV-Tools -----------------------------------------------------------------------------

TOOL_TIMEOUT_S = 120


def _run_tool(tool: str, spirv: bytes, *args):
    """``tool [args] module.spv`` (subprocess.CompletedProcess); None when not installed."""
    exe = shutil.which(tool)
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "module.spv")
        with open(path, "wb") as f:
            f.write(spirv)
        try:
            return subprocess.run([exe, *args, path], capture_output=True, text=True,
                                  timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CompileError(f"{tool} did not finish in {TOOL_TIMEOUT_S} s on a module of "
                               f"{len(spirv)} bytes") from None


def validate(spirv: bytes) -> str:
    """Check a module with spirv-val if installed, else with ``check_structure``; returns
    which check judged it ("spirv-val" or "structure"); CompileError on failure."""
    r = _run_tool("spirv-val", spirv)
    if r is None:
        check_structure(spirv)
        return "structure"
    if r.returncode != 0:
        raise CompileError("spirv-val rejected the module:\n" + (r.stdout + r.stderr).strip())
    return "spirv-val"


# Integer ops whose operands must have the result's width: (opcode, name, operand positions
# after the result type and id). A shift's amount may have any width; its base may not.
_SAME_WIDTH_OPS = {126: ("OpSNegate", (0,)), 128: ("OpIAdd", (0, 1)), 130: ("OpISub", (0, 1)),
                   132: ("OpIMul", (0, 1)), 134: ("OpUDiv", (0, 1)), 135: ("OpSDiv", (0, 1)),
                   137: ("OpUMod", (0, 1)), 138: ("OpSRem", (0, 1)), 139: ("OpSMod", (0, 1)),
                   194: ("OpShiftRightLogical", (0,)), 195: ("OpShiftRightArithmetic", (0,)),
                   196: ("OpShiftLeftLogical", (0,)), 197: ("OpBitwiseOr", (0, 1)),
                   198: ("OpBitwiseXor", (0, 1)), 199: ("OpBitwiseAnd", (0, 1)), 200: ("OpNot", (0,))}
_OP_TYPE_INT, _OP_TYPE_FLOAT, _OP_TYPE_VECTOR = 21, 22, 23
# Instructions laid out (result type, result id, ...) whose result type is recorded.
_TYPED_RESULTS = {43, 44, 46, 50, 55, 57, 59, 61, 12, 79, 81, 82, 113, 114, 124, 169, 245} | set(_SAME_WIDTH_OPS)


def check_structure(spirv: bytes) -> None:
    """What can be checked without spirv-val: the header, instruction word counts, ids
    within the bound and defined once, and the integer arithmetic ops' operand widths (a
    dropped ``trunc``/``zext`` shows there). CompileError naming the first problem."""
    if len(spirv) % 4 or len(spirv) < 20:
        raise CompileError(f"malformed SPIR-V module: {len(spirv)} bytes is not a whole header "
                           f"and instruction words")
    bound = struct.unpack("<I", spirv[12:16])[0]
    words = len(spirv) // 4
    i = 5
    while i < words:
        count = struct.unpack_from("<I", spirv, 4 * i)[0] >> 16
        if count == 0 or i + count > words:
            raise CompileError(f"malformed SPIR-V module: the instruction at word {i} has "
                               f"word count {count} with {words - i} words left")
        i += count
    widths = {}         # type id -> (scalar bit width, components) for int/float/vector types
    types = {}          # value id -> type id
    defined = set()
    in_function = False
    for opcode, ops in _instructions(spirv):
        if opcode in (_OP_FUNCTION, _OP_FUNCTION_END):
            if in_function == (opcode == _OP_FUNCTION):
                raise CompileError("malformed SPIR-V module: OpFunction and OpFunctionEnd do not pair")
            in_function = opcode == _OP_FUNCTION
        if opcode == _OP_TYPE_INT or opcode == _OP_TYPE_FLOAT:
            widths[ops[0]] = (ops[1], 1)
        elif opcode == _OP_TYPE_VECTOR and ops[1] in widths:
            widths[ops[0]] = (widths[ops[1]][0], ops[2])
        if opcode in _TYPED_RESULTS and len(ops) >= 2:
            result = ops[1]
            if result >= bound or result in defined:
                raise CompileError(f"malformed SPIR-V module: id {result} is "
                                   + ("outside the bound" if result >= bound else "defined twice"))
            defined.add(result)
            types[result] = ops[0]
        if opcode in _SAME_WIDTH_OPS:
            name, positions = _SAME_WIDTH_OPS[opcode]
            want = widths.get(ops[0])
            for pos in positions:
                got = widths.get(types.get(ops[2 + pos]))
                if want is not None and got is not None and got != want:
                    raise CompileError(
                        f"invalid SPIR-V: {name} %{ops[1]} has a {_shape(want)} result but "
                        f"operand %{ops[2 + pos]} is {_shape(got)}")
    if in_function:
        raise CompileError("malformed SPIR-V module: the last function has no OpFunctionEnd")


def _shape(width_and_count) -> str:
    bits, count = width_and_count
    return f"{bits}-bit" if count == 1 else f"{count} x {bits}-bit"


def disassemble(spirv: bytes):
    """spirv-dis text of the module, or None when spirv-dis is not installed."""
    r = _run_tool("spirv-dis", spirv)
    if r is None:
        return None
    if r.returncode != 0:
        raise CompileError("spirv-dis failed:\n" + r.stderr.strip())
    return r.stdout
