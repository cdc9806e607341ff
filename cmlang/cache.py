"""The persistent compile cache: compiled kernels (and driver binaries) on disk.

Three stores live under cmlang's cache folder (``CMLANG_CACHE_DIR``, else the user
cache dir ``.../cmlang``):

- ``kernels/<key>.entry``: one compiled specialization -- the ``KernelBinary`` as a
  JSON manifest, its SPIR-V, the IR text, and the record of every Python value the
  front end read to compile it (``reads.py``).  Two levels decide a hit:
  the key, a sha256 over the kernel's own source (and where it is: the IR records
  locations), constexpr values, parameter types, ``simd``, target, codegen-relevant
  device properties, the cmlang version, a hash of the compiler's own sources and the
  llvmlite build, names the entry; the entry is then served only if every recorded
  read (each global, closure value, module attribute chain, tuple item and inlined
  ``@cm.func`` source, however the front end reached it) resolves today to the value it
  had.  A compile whose reads cannot all be re-resolved is not stored.  A hit needs
  neither the front end nor codegen: the IR text is parsed only if asked for.
- ``device-binaries/<key>.entry``: what the OpenCL driver built from a SPIR-V module
  for one device and driver version (``build_device_kernel``).  On the Intel CPU
  runtime building SPIR-V takes ~0.1 s for a tiny kernel and ~9 s for flash
  attention; loading the driver's own binary takes ~3 ms and ~60 ms.
- ``native-binaries/<key>.entry``: Intel GPU binaries, ISA listings and stats that
  ``ocloc`` built (``cmlang.codegen.intel_gpu``), keyed by SPIR-V, device, options and
  the ocloc/IGC version.

Every file is one "entry": a magic line, a JSON header naming the sections and the
sha256 of the body, then the body.  Entries are written to a temporary file and
renamed into place, so concurrent processes never see a partial one; an entry that
does not parse or whose checksum does not match is deleted and rebuilt.

The stores together are kept under ``CMLANG_CACHE_MAX_MB`` (default 2048): a write
that takes them over it deletes the least recently used entries (reads refresh an
entry's modification time) down to 90% of the limit.

``CMLANG_CACHE=0`` switches both stores off.  This module loads only the standard
library and cmlang.kernel (itself light), never the front end, codegen or llvmlite.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time

from . import reads
from .compiled import CompiledKernel
from .runtime.profiles import get_profile
# The folder, the entry format, eviction and the driver-binary store are the runtime's
# (a launch reuses driver binaries without the compiler); re-exported for the compiler's
# kernel store and the command line.
from .runtime.disk_store import (  # noqa: F401
    ENTRY_MAGIC, ENTRY_VERSION, ENTRY_SUFFIX, LLVM_IR_SUFFIX, KERNELS, DEVICE_BINARIES,
    NATIVE_BINARIES, STORES, DISABLE_ENV, DIR_ENV, MAX_MB_ENV, DEFAULT_MAX_MB, CorruptEntry,
    enabled, cache_root, max_bytes, store_dir, entry_path, pack_entry, unpack_entry, read_entry,
    write_entry, evict, write_atomically, build_device_kernel, building, _remove, _warn_once,
)

# ---------------------------------------------------------------------------
# Fingerprints of the toolchain (computed once per process)

@functools.lru_cache(maxsize=None)
def compiler_fingerprint() -> str:
    """sha256 of the compiler's own sources: the .py/.lark files of cmlang and codegen
    (not the runtime, the examples, the CLI or the benchmark harness)."""
    import cmlang
    h = hashlib.sha256()
    for root in _compiler_roots(cmlang):
        for path in _source_files(root):
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read())
            h.update(b"\0")
    return h.hexdigest()


def _compiler_roots(cmlang):
    """cmlang's folder, and codegen/ where the package's search path finds it (inside
    cmlang when installed, beside it in a source checkout).  Read from the file system,
    not the import system, so that the fingerprint never depends on what is imported."""
    roots = [os.path.dirname(os.path.abspath(cmlang.__file__))]
    for entry in list(cmlang.__path__)[1:]:
        codegen = os.path.join(os.path.abspath(entry), "codegen")
        if os.path.isfile(os.path.join(codegen, "__init__.py")):
            roots.append(codegen)
    return roots


# Parts of the cmlang package that do not change what the compiler emits; everything
# else (a new module included) counts as compiler source.
_NOT_COMPILER_DIRS = {"__pycache__", "runtime", "examples"}
_NOT_COMPILER_FILES = {"bench.py", "cli.py", "package.py", "isa_report.py", "intel_gpu.py", "autotuning.py"}


def _source_files(root):
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_COMPILER_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".py", ".lark")) and not (folder == root and name in _NOT_COMPILER_FILES):
                yield os.path.join(folder, name)


@functools.lru_cache(maxsize=None)
def llvmlite_fingerprint() -> str:
    """llvmlite's version file plus the size and mtime of its LLVM library; cheaper
    than importlib.metadata (~17 ms) and it never imports llvmlite."""
    from importlib.machinery import PathFinder
    spec = PathFinder.find_spec("llvmlite")  # searches sys.path; never sys.modules
    if spec is None or not spec.submodule_search_locations:
        return "absent"
    folder = spec.submodule_search_locations[0]
    h = hashlib.sha256()
    for relative in ("_version.py",):
        try:
            with open(os.path.join(folder, relative), "rb") as f:
                h.update(f.read())
        except OSError:
            pass
    binding = os.path.join(folder, "binding")
    for name in sorted(os.listdir(binding)) if os.path.isdir(binding) else ():
        if ".so" in name or name.endswith((".dll", ".dylib")):
            st = os.stat(os.path.join(binding, name))
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def toolchain() -> dict:
    """What, besides the kernel, every key covers: entries made with another
    toolchain can never hit again (``cmlang cache clear --stale`` removes them)."""
    import cmlang
    return {"cmlang": cmlang.__version__, "compiler": compiler_fingerprint(),
            "llvmlite": llvmlite_fingerprint()}


# ---------------------------------------------------------------------------
# The key of one kernel specialization

def kernel_key(kernel, constexpr_key, target: str, profile="cpu", checked=False, surfaces=()):
    """sha256 (hex) naming one specialization; None when the kernel's source cannot
    be read (defined in a REPL or exec'd string): such kernels are not cached.
    What the kernel reads beyond its own source is checked on lookup (``load_compiled``)."""
    fn = kernel.fn
    try:
        # File and line too: the IR records source locations (``.ir`` shows them).
        # Not the module name: a file run as __main__ or imported compiles alike.
        source = f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}\n{reads.source_text(fn)}"
    except OSError:
        return None
    parts = {
        "entry": ENTRY_VERSION,
        "kernel": fn.__qualname__,
        "source": source,
        "constexprs": repr(constexpr_key),
        "params": [[name, str(t)] for name, t in kernel.params],
        "simd": kernel.simd,
        "grf": getattr(kernel, "grf", 128),
        "target": target,
        "checked": bool(checked),       # checked mode's bounds checks are other code
        "surfaces": list(surfaces),     # block ops whose surfaces the launch proved (no run-time check)
        # Everything the code generator may read about the device (cmlang.runtime.profiles).
        "profile": [get_profile(profile).name, get_profile(profile).key()],
        **toolchain(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------
# Compiled kernels in the cache

def load_compiled(kernel, key: str, target: str, constexprs: dict):
    """The CompiledKernel stored under ``key``, or None on a miss: no entry, a corrupt
    one, or one compiled when a value the front end read was different (``constexprs``:
    the specialization's constexpr values, roots of some of those reads)."""
    sections = read_entry(entry_path(KERNELS, key))
    if sections is None:
        return None
    from cmlang.runtime.package import binary_from_json
    from cmlang.runtime.spirv_check import ModuleMismatch, check_module
    try:
        if not reads.still_valid(json.loads(sections["reads"]), kernel.fn, constexprs):
            return None         # stale: compiled again and stored over it
        manifest = json.loads(sections["manifest"])
        binary = binary_from_json(manifest["binary"], sections["spirv"])
        check_module(binary)    # the record and the SPIR-V agree (simd, entry point)
        return CachedCompiledKernel(kernel, binary, sections["ir"].decode(),
                                    llvm_ir_path(key), target)
    except (KeyError, ValueError, TypeError, ModuleMismatch):
        _remove(entry_path(KERNELS, key))  # valid checksum, wrong content: an old layout
        return None


def store_compiled(key: str, ck) -> bool:
    """Write ``ck`` under ``key``; False if it could not be stored.  Never raises:
    a kernel that cannot be cached (e.g. a type without a text spelling) still runs."""
    from cmlang.runtime.package import binary_to_json
    python_reads = getattr(ck.function, "python_reads", None)
    if not (python_reads and python_reads["complete"]):
        return False    # it read something no path leads back to: it could not be re-checked
    try:
        manifest = {"binary": binary_to_json(ck.binary), "target": ck.target,
                    "kernel": ck.kernel.fn.__qualname__, "module": ck.kernel.fn.__module__,
                    "created": time.time(), "toolchain": toolchain()}
        sections = {"manifest": json.dumps(manifest).encode(), "spirv": bytes(ck.binary.spirv),
                    "ir": ck.ir.encode(), "reads": json.dumps(python_reads).encode()}
        llvm_ir = (ck.llvm_ir or "").encode()
    except Exception as e:  # noqa: BLE001 - caching is an optimisation, never a failure
        import warnings
        warnings.warn(f"cmlang: kernel {ck.binary.name} is not cached on disk: {type(e).__name__}: {e}",
                      stacklevel=2)
        return False
    # The LLVM IR (often most of the bytes) goes beside the entry, read only if asked
    # for; written first, so that an entry implies its side file.
    return (write_entry(llvm_ir_path(key), {"llvm_ir": llvm_ir})
            and write_entry(entry_path(KERNELS, key), sections))


def llvm_ir_path(key: str) -> str:
    return os.path.join(store_dir(KERNELS), key + LLVM_IR_SUFFIX)


class CachedCompiledKernel(CompiledKernel):
    """A CompiledKernel read from disk: ``.ir`` is the stored text and ``.function``
    parses it on first use (the front end, codegen and IR parser stay unloaded)."""

    def __init__(self, kernel, binary, ir_text, llvm_ir_path, target):
        # Not the dataclass __init__: ``function`` and ``llvm_ir`` are lazy properties here.
        self.kernel, self.binary, self.target = kernel, binary, target
        self.profile = binary.profile or "cpu"
        self._ir_text = ir_text
        self._llvm_ir_path = llvm_ir_path
        self._function = None
        self._llvm_ir = None

    @property
    def ir(self) -> str:
        return self._ir_text

    @property
    def function(self):
        if self._function is None:
            from .ir.parser import parse_function
            self._function = parse_function(self._ir_text)
        return self._function

    @property
    def llvm_ir(self) -> str:
        if self._llvm_ir is None:
            sections = read_entry(self._llvm_ir_path)
            if sections is not None and "llvm_ir" in sections:
                self._llvm_ir = sections["llvm_ir"].decode()
            else:  # the side file went missing: generate it again from the IR
                from cmlang.codegen import compile_function
                self._llvm_ir = compile_function(self.function, target=self.target,
                                                 profile=self.profile).llvm_ir
        return self._llvm_ir

    __eq__ = object.__eq__      # the dataclass one would compare (and parse) the IR
    __hash__ = object.__hash__

    def __repr__(self):
        return f"<cmlang compiled kernel {self.binary.name} target={self.target} (disk cache)>"


# ---------------------------------------------------------------------------
# `cmlang cache info|clear`

def info() -> dict:
    """Where the cache is and what it holds (bytes include the LLVM IR side files)."""
    out = {"dir": cache_root(), "enabled": enabled(), "max_bytes": max_bytes()}
    for store in STORES:
        folder = store_dir(store)
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        out[store] = {"entries": sum(n.endswith(ENTRY_SUFFIX) for n in names),
                      "bytes": sum(_size(os.path.join(folder, n)) for n in names)}
    return out


def list_kernels() -> list:
    """[(qualified kernel name, target, simd, bytes, created)] of the kernel entries."""
    rows = []
    for path in _entries(KERNELS):
        sections = read_entry(path)
        if sections is None:
            continue
        try:
            manifest = json.loads(sections["manifest"])
            rows.append((f"{manifest['module']}.{manifest['kernel']}", manifest["target"],
                         manifest["binary"]["simd"], _size(path), manifest["created"]))
        except (KeyError, ValueError):
            continue
    return sorted(rows)


def clear(stale_only: bool = False) -> int:
    """Delete the entries (with their side files and stray temporary files); returns
    how many entries went.  ``stale_only``: only compiled kernels made with another
    toolchain (cmlang, compiler sources or llvmlite), which can never hit again."""
    removed = 0
    current = toolchain() if stale_only else None
    for store in (KERNELS,) if stale_only else STORES:
        folder = store_dir(store)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        for name in sorted(names, key=lambda n: not n.endswith(ENTRY_SUFFIX)):  # entries first
            path = os.path.join(folder, name)
            if name.endswith(ENTRY_SUFFIX):
                if not stale_only or _toolchain_of(path) != current:
                    _remove(path)
                    removed += 1
            elif name.endswith(LLVM_IR_SUFFIX):
                if not os.path.exists(path[:-len(LLVM_IR_SUFFIX)] + ENTRY_SUFFIX):
                    _remove(path)  # its entry is gone
            elif name.startswith(".tmp-") and not stale_only:
                _remove(path)
    return removed


def _toolchain_of(path):
    sections = read_entry(path)
    try:
        return json.loads(sections["manifest"])["toolchain"]
    except (TypeError, KeyError, ValueError):
        return None


def _entries(store):
    folder = store_dir(store)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(ENTRY_SUFFIX)]


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
