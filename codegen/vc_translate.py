"""LLVM IR -> SPIR-V for ``spirv-vc`` with the Khronos LLVM/SPIR-V translator.

LLVM 22's own SPIR-V backend does not produce vector-compute modules; the translator does
(``llvm-spirv`` from the ``dpcpp-llvm-spirv`` wheel, docs/toolchain.md). The module from
``codegen.vc`` is verified and written as bitcode by llvmlite, then translated in a
subprocess with ``SPV_INTEL_vector_compute`` on and the ``llvm.genx.*`` intrinsics kept as
imported functions: the form Intel's GPU compiler reads with ``-vc-codegen``.

Why the module is not optimized first: LLVM 22's passes introduce intrinsics and flags the
2024 translator's bitcode reader does not know, and IGC's vector compiler optimizes anyway.

Checks:
- ``check_imports``: a module may import ``llvm.genx.*`` intrinsics only; any other import
  (an OpenCL builtin the translator did not turn into an instruction) is a CompileError.
- ``validate``: spirv-val where it can judge the module. spirv-val (2023.1 here, and 2025.5
  alike) rejects every vector width other than 2, 3, 4, 8, 16 even under the VectorAnyINTEL
  capability the extension defines, and stops at the first such type. For those modules the
  translator reads the SPIR-V back (what IGC does) and the LLVM verifier checks the result.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import tempfile

import llvmlite.binding as llvm

from cmlang.errors import CompileError
from .spirv import _run_tool, imported_functions, llvm_lock

EXTENSION = "SPV_INTEL_vector_compute"
TRANSLATOR_OPTIONS = ("--spirv-ext=+" + EXTENSION, "--spirv-allow-unknown-intrinsics=llvm.genx")
INSTALL_HINT = "pip install dpcpp-llvm-spirv (or the cmlang[vc] extra)"
TIMEOUT_S = 120


def translator_path() -> str:
    """The llvm-spirv executable of the dpcpp-llvm-spirv wheel; CompileError when missing."""
    try:
        import dpcpp_llvm_spirv
    except ImportError:
        raise CompileError(f"target 'spirv-vc' needs the Khronos SPIR-V translator: {INSTALL_HINT}") from None
    path = dpcpp_llvm_spirv.get_llvm_spirv_path()
    if not os.path.isfile(path):
        raise CompileError(f"the dpcpp-llvm-spirv wheel has no llvm-spirv at {path}: reinstall it ({INSTALL_HINT})")
    if not os.access(path, os.X_OK):
        os.chmod(path, os.stat(path).st_mode | 0o111)
    return path


def to_bitcode(llvm_ir: str) -> bytes:
    with llvm_lock:     # one lock for all of cmlang's LLVM use (spirv.py)
        try:
            module = llvm.parse_assembly(llvm_ir)
            module.verify()
        except RuntimeError as e:
            raise CompileError(f"internal error: generated LLVM IR is invalid: {e}") from None
        return module.as_bitcode()


def _run_translator(args, data: bytes, suffix_in: str, suffix_out: str, kernel="?") -> bytes:
    exe = translator_path()
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in" + suffix_in), os.path.join(d, "out" + suffix_out)
        with open(src, "wb") as f:
            f.write(data)
        try:
            r = subprocess.run([exe, *args, src, "-o", dst], capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CompileError(f"kernel '{kernel}': llvm-spirv did not finish in {TIMEOUT_S} s") from None
        if r.returncode != 0 or not os.path.exists(dst):
            raise CompileError("llvm-spirv failed:\n" + (r.stderr or r.stdout).strip())
        with open(dst, "rb") as f:
            return f.read()


def translate(bitcode: bytes, kernel="?") -> bytes:
    """SPIR-V of an LLVM bitcode module (vector compute on, genx intrinsics kept)."""
    return _run_translator(TRANSLATOR_OPTIONS, bitcode, ".bc", ".spv", kernel)


def check_imports(spirv: bytes) -> None:
    """Only llvm.genx.* may be imported: anything else would fail in the driver."""
    others = [name for name in imported_functions(spirv) if not name.startswith("llvm.genx.")]
    if others:
        raise CompileError("the spirv-vc module would import " + ", ".join(others)
                           + " (only llvm.genx.* intrinsics may be imported)")


def llvm_to_spirv_vc(llvm_ir: str, kernel="?") -> bytes:
    """LLVM IR text from ``codegen.vc`` -> a checked SPIR-V vector-compute module."""
    spirv = translate(to_bitcode(llvm_ir), kernel)
    check_imports(spirv)
    return spirv


def genx_imports(spirv: bytes) -> list:
    return [name for name in imported_functions(spirv) if name.startswith("llvm.genx.")]


# --- validation ----------------------------------------------------------------------------

_VECTOR_ANY = re.compile(r"Illegal number of components \((\d+)\) for TypeVector")


def read_back(spirv: bytes) -> str:
    """The translator's reading of the module as LLVM IR text, checked by the LLVM verifier."""
    bitcode = _run_translator(("-r",), spirv, ".spv", ".bc")
    with llvm_lock:     # one lock for all of cmlang's LLVM use (spirv.py)
        try:
            module = llvm.parse_bitcode(bitcode)
            module.verify()
        except RuntimeError as e:
            raise CompileError(f"the translator's reading of the module is invalid: {e}") from None
        return str(module)


def validate(spirv: bytes) -> str:
    """Validate a spirv-vc module; returns which check judged it.

    "spirv-val": spirv-val accepted it. "read-back": spirv-val stopped at a vector width
    that only VectorAnyINTEL allows (which it does not implement), and the translator read the
    module back into LLVM IR that verifies. Raises CompileError on any other problem.
    """
    r = _run_tool("spirv-val", spirv)
    if r is not None:
        if r.returncode == 0:
            return "spirv-val"
        text = (r.stdout + r.stderr).strip()
        if not (_VECTOR_ANY.search(text) and VECTOR_ANY_INTEL in capabilities(spirv)):
            raise CompileError("spirv-val rejected the module:\n" + text)
    read_back(spirv)
    return "read-back"


VECTOR_COMPUTE_INTEL, VECTOR_ANY_INTEL = 5617, 5619      # SPIR-V capability numbers
_OP_CAPABILITY = 17


def capabilities(spirv: bytes) -> set:
    """The capability numbers a module declares (OpCapability)."""
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv[:len(spirv) // 4 * 4])
    found, i = set(), 5
    while i < len(words):
        count, opcode = words[i] >> 16, words[i] & 0xFFFF
        if count == 0:
            break
        if opcode == _OP_CAPABILITY:
            found.add(words[i + 1])
        i += count
    return found
