"""Intel's GPU compiler in the loop: SPIR-V -> native Intel GPU binary, ISA and stats.

Intel's offline compiler ``ocloc`` (its compute runtime, with IGC inside) turns a cmlang
SPIR-V module into the binary a GPU would run, on any machine, with or without a GPU:

    build = build_native(spirv, "saxpy", device="pvc", target="spirv")
    build.binary   # what clCreateProgramWithBinary takes on that device
    build.isa      # IGC's own assembly listing of the kernel (IGA syntax)
    build.stats    # {"instructions", "spill_bytes", "grf", "dpas", "block2d", "messages"}

The compiler is ``$CMLANG_OCLOC``, else ``ocloc`` on PATH (Debian: ``apt-get install
intel-opencl-icd``).  The listing comes from IGC's shader dump (``IGC_ShaderDumpEnable``):
a SIMT kernel leaves ``*_simd<N>_entry_<NNNN>.asm``, a vector-compute one ``*_<kernel>.asm``;
its header carries ``//.instCount``, ``//.spill size`` and ``//.thread_config numGRF=``.
Builds are cached on disk (``native-binaries`` beside cmlang's other cache stores), keyed by
the SPIR-V, the device, the options and the compiler's identity.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field

from cmlang.errors import CompileError

OCLOC_ENV = "CMLANG_OCLOC"
INSTALL_HINT = ("install Intel's GPU compute runtime, which provides it "
                "(Debian/Ubuntu: apt-get install intel-opencl-icd), or point "
                f"{OCLOC_ENV} at an ocloc executable")
TIMEOUT_S = 600

# How ocloc is asked to build each flavour and register-file size. One table, so that a
# device profile can take it over: (target, grf) -> ocloc -options.
FLAVOUR_OPTIONS = {
    "spirv": (),                      # SIMT: IGC's OpenCL path
    "spirv-vc": ("-vc-codegen",),     # vector compute: IGC's VC (CM/ESIMD) path
}
GRF_OPTIONS = {
    128: (),
    256: ("-ze-opt-large-register-file",),   # both paths; 256 GRF per thread
}


def ocloc_options(target: str, grf: int = 128) -> tuple:
    """The ``-options`` words for a cmlang target and register-file size."""
    if target not in FLAVOUR_OPTIONS:
        raise CompileError(f"unknown target {target!r} for Intel's GPU compiler "
                           f"(known: {', '.join(FLAVOUR_OPTIONS)})")
    if grf not in GRF_OPTIONS:
        raise CompileError(f"grf must be one of {', '.join(map(str, GRF_OPTIONS))}, got {grf!r}")
    return FLAVOUR_OPTIONS[target] + GRF_OPTIONS[grf]


@dataclass(frozen=True)
class NativeBuild:
    """One kernel built by IGC for one device."""
    kernel: str
    device: str
    target: str
    options: tuple
    binary: bytes = field(repr=False)
    isa: str = field(repr=False)
    stats: dict
    compiler: str          # ocloc/IGC identity (versions) that built it


# ---------------------------------------------------------------------------
# Finding the compiler

def find_ocloc() -> str:
    """The ocloc executable: ``$CMLANG_OCLOC``, else ``ocloc`` on PATH; CompileError if none."""
    explicit = os.environ.get(OCLOC_ENV)
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise CompileError(f"{OCLOC_ENV}={explicit!r} is not an executable; {INSTALL_HINT}")
        return path
    path = shutil.which("ocloc")
    if path is None:
        raise CompileError(f"Intel's GPU compiler (ocloc) was not found; {INSTALL_HINT}")
    return path


def available() -> bool:
    try:
        find_ocloc()
    except CompileError:
        return False
    return True


def compiler_version(ocloc: str | None = None) -> dict:
    """``{"ocloc": path, "neo": driver version, "igc": IGC version or None}``."""
    return json.loads(_compiler_version(ocloc or find_ocloc()))


@functools.lru_cache(maxsize=None)
def _compiler_version(ocloc: str) -> str:
    with tempfile.TemporaryDirectory(prefix="cmlang-ocloc-") as d:
        try:
            subprocess.run([ocloc, "query", "OCL_DRIVER_VERSION"], cwd=d, capture_output=True,
                           timeout=60)
        except subprocess.TimeoutExpired:     # no version file: neo stays None
            pass
        try:
            with open(os.path.join(d, "OCL_DRIVER_VERSION")) as f:
                neo = f.read().strip(" \t\r\n\0") or None
        except OSError:
            neo = None
    return json.dumps({"ocloc": ocloc, "neo": neo, "igc": _igc_version(),
                       "fingerprint": _files_fingerprint(ocloc)})


def _igc_version():
    """IGC's package version where the system's package manager knows it (Debian)."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return None
    try:
        r = subprocess.run([dpkg, "-W", "-f=${Version}", "libigc1"], capture_output=True, text=True,
                           timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def _files_fingerprint(ocloc: str) -> str:
    """Size and mtime of ocloc and the IGC library beside it: an update changes the key
    even where no version can be read."""
    real = os.path.realpath(ocloc)
    libdirs = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) + [
        os.path.join(os.path.dirname(os.path.dirname(real)), "lib", "x86_64-linux-gnu"),
        os.path.join(os.path.dirname(os.path.dirname(real)), "lib")]
    parts = []
    for path in [real] + [os.path.join(d, "libigc.so.1") for d in libdirs if d]:
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{os.path.realpath(path)}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def describe_compiler(version: dict) -> str:
    return f"NEO {version['neo'] or '?'} / IGC {version['igc'] or '?'}"


# ---------------------------------------------------------------------------
# Building

def build_native(spirv: bytes, kernel: str, device: str, target: str = "spirv",
                 grf: int = 128, use_cache: bool = True) -> NativeBuild:
    """Build ``spirv`` (one kernel named ``kernel``) for ``device`` (ocloc's -device name).

    CompileError when ocloc is missing, IGC rejects the module (with IGC's log), or the
    kernel calls an external function (``calla``: a builtin IGC did not know)."""
    options = ocloc_options(target, grf)
    ocloc = find_ocloc()
    version = compiler_version(ocloc)
    key = _cache_key(spirv, device, options, version) if use_cache else None
    if key is None:
        return _build(ocloc, spirv, kernel, device, target, options, version)
    from cmlang import cache
    cached = _load(key, kernel, device, target, options)
    if cached is not None:
        return cached
    with cache.building(cache.NATIVE_BINARIES, key):    # another process building it: wait, then read
        cached = _load(key, kernel, device, target, options)
        if cached is not None:
            return cached
        build = _build(ocloc, spirv, kernel, device, target, options, version)
        _store(key, build)
    return build


def _build(ocloc, spirv, kernel, device, target, options, version) -> NativeBuild:
    binary, isa = _run_ocloc(ocloc, spirv, kernel, device, target, options)
    stats = parse_isa(isa)
    if stats["external_calls"]:
        raise CompileError(_describe(kernel, device, target)
                           + f": the ISA calls {stats['external_calls']} external function(s) "
                           "(calla): IGC did not resolve a builtin"
                           + _imports_note(spirv))
    return NativeBuild(kernel, device, target, options, binary, isa, stats, describe_compiler(version))


def _describe(kernel, device, target):
    return f"Intel's GPU compiler: kernel {kernel!r}, device {device}, target {target}"


def _imports_note(spirv: bytes) -> str:
    from .spirv import imported_functions
    try:
        names = imported_functions(spirv)
    except CompileError:
        return ""
    return f"; the module imports {', '.join(names)}" if names else ""


def _run_ocloc(ocloc, spirv, kernel, device, target, options):
    with tempfile.TemporaryDirectory(prefix="cmlang-ocloc-") as work:
        source = os.path.join(work, "module.spv")
        with open(source, "wb") as f:
            f.write(spirv)
        dump = os.path.join(work, "dump") + os.sep
        out = os.path.join(work, "out")
        cmd = [ocloc, "compile", "-q", "-spirv_input", "-file", source, "-device", device,
               "-out_dir", out, "-output", "module", "-output_no_suffix"]
        if options:
            cmd += ["-options", " ".join(options)]
        env = dict(os.environ, IGC_ShaderDumpEnable="1", IGC_DumpToCustomDir=dump)
        try:
            r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                               timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CompileError(_describe(kernel, device, target)
                               + f": ocloc did not finish in {TIMEOUT_S} s") from None
        log = (r.stdout + r.stderr).strip()
        binaries = [p for p in glob.glob(os.path.join(out, "module*")) if os.path.isfile(p)]
        if r.returncode != 0 or not binaries:
            raise CompileError(_describe(kernel, device, target)
                               + f": IGC rejected the module (ocloc exit {r.returncode}):\n"
                               + (log or "(no log)"))
        with open(binaries[0], "rb") as f:
            binary = f.read()
        listing = _find_listing(dump, kernel, target)
        if listing is None:
            raise CompileError(_describe(kernel, device, target)
                               + ": IGC built no kernel of that name (its dump has no listing "
                               "for it)" + (f":\n{log}" if log else ""))
        with open(listing, encoding="utf-8", errors="replace") as f:
            return binary, f.read()


_SIMT_LISTING = re.compile(r"_simd(\d+)_entry_\d+\.asm$")


def _find_listing(dump, kernel, target):
    """The kernel's ``.asm`` in IGC's dump folder (names checked on IGC 1.0.12504)."""
    names = sorted(os.listdir(dump)) if os.path.isdir(dump) else []
    if target == "spirv-vc":
        found = [n for n in names if n.endswith(f"_{kernel}.asm")]
    else:   # the widest SIMD IGC kept, when it compiled several
        found = sorted((n for n in names if _SIMT_LISTING.search(n)),
                       key=lambda n: int(_SIMT_LISTING.search(n).group(1)))
    return os.path.join(dump, found[-1]) if found else None


# ---------------------------------------------------------------------------
# Reading the listing

_HEADER_INT = {
    "instructions": re.compile(r"^//\.instCount\s+(\d+)", re.M),
    "spill_bytes": re.compile(r"^//\.spill size\s+(\d+)", re.M),
    "grf": re.compile(r"^//\.thread_config\s+numGRF=(\d+)", re.M),
}
_PREDICATE = re.compile(r"^\([^)]*\)\s*")
_MESSAGES = ("send", "sends", "sendc", "sendsc", "load", "store", "prefetch", "atomic",
             "load_block2d", "store_block2d", "prefetch_block2d")
_BLOCK2D = ("load_block2d", "store_block2d", "prefetch_block2d")


def opcodes(isa: str):
    """The base opcode (``dpas``, ``load_block2d``, ``mov``...) of every instruction line."""
    for line in isa.splitlines():
        text = line.strip()
        if not text or text.startswith("//") or text.endswith(":"):
            continue
        text = _PREDICATE.sub("", text)
        word = text.split(None, 1)[0] if text else ""
        if word and word[0].isalpha():
            yield word.split(".", 1)[0]


def parse_isa(isa: str) -> dict:
    """Stats of an IGC ``.asm`` listing: its header counts plus opcodes counted."""
    stats = {}
    for name, pattern in _HEADER_INT.items():
        m = pattern.search(isa)
        stats[name] = int(m.group(1)) if m else 0
    if stats["instructions"] == 0 and not _HEADER_INT["instructions"].search(isa):
        raise CompileError("IGC's listing has no //.instCount header: not an IGC .asm dump")
    counts = {}
    for op in opcodes(isa):
        counts[op] = counts.get(op, 0) + 1
    stats["dpas"] = sum(n for op, n in counts.items() if op.startswith("dpas"))
    stats["block2d"] = sum(counts.get(op, 0) for op in _BLOCK2D)
    stats["messages"] = sum(counts.get(op, 0) for op in _MESSAGES)
    stats["external_calls"] = counts.get("calla", 0)
    return stats


STAT_NAMES = ("instructions", "spill_bytes", "grf", "dpas", "block2d", "messages")


# ---------------------------------------------------------------------------
# The disk cache (cmlang/cache.py's entry format, store NATIVE_BINARIES)

def _cache_key(spirv, device, options, version) -> str | None:
    from cmlang import cache
    if not cache.enabled():
        return None
    identity = json.dumps([cache.ENTRY_VERSION, hashlib.sha256(spirv).hexdigest(), device,
                           list(options), version["neo"], version["igc"], version["fingerprint"]])
    return hashlib.sha256(identity.encode()).hexdigest()


def _load(key, kernel, device, target, options):
    from cmlang import cache
    sections = cache.read_entry(cache.entry_path(cache.NATIVE_BINARIES, key))
    if sections is None:
        return None
    try:
        meta = json.loads(sections["meta"])
        return NativeBuild(kernel, device, target, options, sections["binary"],
                           zlib.decompress(sections["isa.z"]).decode("utf-8"), meta["stats"],
                           meta["compiler"])
    except (KeyError, ValueError, zlib.error):
        return None


def _store(key, build: NativeBuild) -> None:
    from cmlang import cache
    meta = {"stats": build.stats, "compiler": build.compiler, "kernel": build.kernel,
            "device": build.device, "target": build.target}
    cache.write_entry(cache.entry_path(cache.NATIVE_BINARIES, key),
                      {"meta": json.dumps(meta).encode(), "binary": build.binary,
                       "isa.z": zlib.compress(build.isa.encode("utf-8"), 6)})   # listings run to MBs
