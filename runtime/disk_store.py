"""cmlang's on-disk store: the cache folder, entry files, eviction, and the driver's own
binaries of SPIR-V modules.

Part of the runtime, so that launching (and a precompiled package) reuses the driver's
binaries without the compiler; the compiler's cache of compiled kernels (``cmlang.cache``)
keeps its entries in the same folder with the same entry format, through this module.

Every file is one "entry": a magic line, a JSON header naming the sections and the sha256
of the body, then the body.  Entries are written to a temporary file and renamed into
place, so concurrent processes never see a partial one; an entry that does not parse or
whose checksum does not match is deleted and rebuilt.  The stores together are kept under
``CMLANG_CACHE_MAX_MB`` (default 2048) by deleting least recently used entries on write;
``CMLANG_CACHE=0`` switches them off.  A slow build (Intel's GPU compiler) is made under
``building(store, key)``: a second process that wants the same entry waits for the first
and reads its result instead of building it again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

from cmlang.errors import LaunchError

ENTRY_MAGIC = b"CMLANG-CACHE-ENTRY\n"
ENTRY_VERSION = 2            # bump when the layout of entries or keys changes
ENTRY_SUFFIX = ".entry"
LLVM_IR_SUFFIX = ".llvm-ir"    # beside a kernel entry: its LLVM IR, loaded on demand
KERNELS = "kernels"
DEVICE_BINARIES = "device-binaries"
NATIVE_BINARIES = "native-binaries"   # Intel GPU binaries built by ocloc (cmlang.codegen.intel_gpu)
STORES = (KERNELS, DEVICE_BINARIES, NATIVE_BINARIES)
DISABLE_ENV = "CMLANG_CACHE"
DIR_ENV = "CMLANG_CACHE_DIR"
MAX_MB_ENV = "CMLANG_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048


class CorruptEntry(Exception):
    """An entry file that does not parse or whose checksum does not match."""


# ---------------------------------------------------------------------------
# Where, and whether

def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_root() -> str:
    """cmlang's cache folder (shared with the OpenCL vendors folder of runtime/icd.py)."""
    explicit = os.environ.get(DIR_ENV)
    if explicit:
        return explicit
    import platformdirs
    return platformdirs.user_cache_dir("cmlang")


def max_bytes() -> int:
    """The size the stores are kept under (``CMLANG_CACHE_MAX_MB``, MiB)."""
    raw = os.environ.get(MAX_MB_ENV, "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_MB
    except ValueError:
        raise ValueError(f"{MAX_MB_ENV}={raw!r} is not a number of MiB") from None
    return int(mb * 2**20)


def store_dir(store: str) -> str:
    return os.path.join(cache_root(), store)


def entry_path(store: str, key: str) -> str:
    return os.path.join(store_dir(store), key + ENTRY_SUFFIX)


LOCK_SHARDS = 256              # lock files per store (keys share one by their first byte)


@contextlib.contextmanager
def building(store: str, key: str):
    """Held while one process builds the entry ``key`` of ``store``: others building the
    same key (or one of its shard) wait, then find the entry written.  Advisory ``flock``
    on one of LOCK_SHARDS files per store; where there is no flock, no wait."""
    try:
        import fcntl
    except ImportError:                       # not POSIX: builds may repeat, entries stay whole
        yield
        return
    folder = os.path.join(cache_root(), "locks", store)     # beside the stores: they hold entries only
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, f"{int(key[:2], 16) % LOCK_SHARDS:02x}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                          # closing releases the lock


# ---------------------------------------------------------------------------
# Entries: magic, JSON header, body

def pack_entry(sections: dict) -> bytes:
    """``{name: bytes}`` -> the bytes of an entry file."""
    body = b"".join(sections.values())
    header = {"version": ENTRY_VERSION,
              "sections": [[name, len(data)] for name, data in sections.items()],
              "sha256": hashlib.sha256(body).hexdigest()}
    return ENTRY_MAGIC + json.dumps(header).encode() + b"\n" + body


def unpack_entry(blob: bytes) -> dict:
    """The inverse of ``pack_entry``; CorruptEntry when anything is off."""
    if not blob.startswith(ENTRY_MAGIC):
        raise CorruptEntry("bad magic")
    header_end = blob.find(b"\n", len(ENTRY_MAGIC))
    if header_end < 0:
        raise CorruptEntry("no header")
    try:
        header = json.loads(blob[len(ENTRY_MAGIC):header_end])
        version, sections, checksum = header["version"], header["sections"], header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise CorruptEntry("unreadable header") from None
    if version != ENTRY_VERSION:
        raise CorruptEntry(f"entry version {version}")
    body = memoryview(blob)[header_end + 1:]
    if hashlib.sha256(body).hexdigest() != checksum:
        raise CorruptEntry("checksum mismatch")
    out, offset = {}, 0
    for name, size in sections:
        out[name] = bytes(body[offset:offset + size])
        offset += size
    if offset != len(body):
        raise CorruptEntry("section sizes do not add up")
    return out


def read_entry(path: str):
    """The sections of the entry at ``path``; None if missing.  A corrupt entry is
    removed (and None returned) so that the caller rebuilds it."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    try:
        sections = unpack_entry(blob)
    except CorruptEntry:
        _remove(path)
        return None
    try:
        os.utime(path)          # used now: the eviction order is least recently used first
    except OSError:
        pass                    # a read-only cache still serves hits
    return sections


def write_entry(path: str, sections: dict) -> bool:
    """Write an entry atomically; False (and nothing written) when the disk refuses.
    Then evict the least recently used entries if the stores are over ``max_bytes()``."""
    try:
        write_atomically(path, pack_entry(sections))
    except OSError:
        return False  # a read-only or full cache disk must not break compilation
    try:
        limit = max_bytes()
    except ValueError as e:  # a bad setting must not break compilation either
        _warn_once(f"cmlang: {e}; the disk cache is not trimmed until it is fixed")
        return True
    evict(limit, keep=path)
    return True


_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        import warnings
        warnings.warn(message, stacklevel=3)


def evict(limit: int, keep: str | None = None) -> int:
    """If the stores hold more than ``limit`` bytes, delete least recently used entries
    (a kernel entry with its LLVM IR side file) down to 90% of it, never the one at
    ``keep``; returns how many went.  Safe against other processes doing the same."""
    units = {}                                   # stem path -> [size, last use]
    for store in STORES:
        try:
            files = list(os.scandir(store_dir(store)))
        except OSError:
            continue
        for f in files:
            if not f.name.endswith((ENTRY_SUFFIX, LLVM_IR_SUFFIX)):
                continue
            try:
                st = f.stat()
            except OSError:
                continue                          # evicted meanwhile by another process
            unit = units.setdefault(os.path.splitext(f.path)[0], [0, 0.0])
            unit[0] += st.st_size
            if f.name.endswith(ENTRY_SUFFIX):
                unit[1] = st.st_mtime             # a lone side file keeps 0: oldest
    total = sum(size for size, _ in units.values())
    if total <= limit:
        return 0
    kept = os.path.splitext(keep)[0] if keep else None
    removed = 0
    for stem, (size, _) in sorted(units.items(), key=lambda item: item[1][1]):
        if total <= 0.9 * limit:
            break
        if stem == kept:
            continue
        _remove(stem + ENTRY_SUFFIX)              # the entry first: an entry implies its side file
        _remove(stem + LLVM_IR_SUFFIX)
        total -= size
        removed += 1
    return removed


def write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass  # gone already (another process), or not ours to remove


# ---------------------------------------------------------------------------
# Driver binaries: skip the driver's SPIR-V compile on later runs

def _quiet_build(cl, program, device, options=""):
    import warnings
    with warnings.catch_warnings():  # the driver's chatter on success is noise
        warnings.simplefilter("ignore", cl.CompilerWarning)
        return program.build(options=options, devices=[device.cl_device])


ISOLATE_ENV = "CMLANG_ISOLATE_BUILDS"


def isolated_builds() -> bool:
    """Whether the driver builds new modules in a forked child first (default: yes;
    ``CMLANG_ISOLATE_BUILDS=0`` builds in the process, as before)."""
    return os.environ.get(ISOLATE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def build_device_kernel(device, spirv: bytes, name: str, options: str = "", fallback=None):
    """``device.build_kernel(spirv, name)``, reusing the driver's binary from disk.

    OpenCL devices only (others build as usual).  The key covers the SPIR-V, the
    device and its driver version, so a driver update rebuilds; a binary the driver
    refuses is deleted and rebuilt from SPIR-V.  ``fallback(spirv, name)`` builds
    without the store (default ``device.build_kernel``): used for other backends
    and to report a failed build with the driver's log.

    A module the driver has not built before is built in a forked child first
    (``isolated_builds``): the driver's compiler has crashed the process on some
    well-formed modules (the CPU runtime's X86 instruction selection), and a crash there
    must be a LaunchError, not a dead interpreter.  The parent then loads the child's
    binary (cheap) instead of building again.
    """
    fallback = fallback or device.build_kernel
    if getattr(device, "backend", None) != "opencl" or not hasattr(device, "cl_device"):
        return fallback(spirv, name, options)
    store = enabled() and not options      # builds with options (vISA modules) skip the store
    if not store and not isolated_builds():
        return fallback(spirv, name, options)
    import pyopencl as cl
    path = entry_path(DEVICE_BINARIES, _device_binary_key(device, spirv)) if store else None
    sections = read_entry(path) if store else None
    if sections is not None:
        try:
            program = cl.Program(device.context, [device.cl_device], [sections["binary"]])
            return cl.Kernel(_quiet_build(cl, program, device), name)
        except (cl.Error, KeyError, RuntimeError):
            _remove(path)
    if isolated_builds():
        binary = _build_in_child(device, spirv, name, options)
        if binary is None:
            return fallback(spirv, name, options)   # a refused build: its LaunchError has the log
        program = _quiet_build(cl, cl.Program(device.context, [device.cl_device], [binary]), device)
        kernel = cl.Kernel(program, name)
    else:
        try:
            program = _quiet_build(cl, cl.Program(device.context, spirv), device)
            kernel = cl.Kernel(program, name)
        except cl.Error:
            return fallback(spirv, name)  # its LaunchError carries the build log
        device.check_vectorized(program, spirv, name)
        binary = program.get_info(cl.program_info.BINARIES)[0]
    if store and binary:
        write_entry(path, {"binary": bytes(binary)})
    return kernel


def _build_in_child(device, spirv: bytes, name: str, options: str):
    """The driver's binary of ``spirv`` built in a forked child, with the device's checks
    (``check_vectorized``); None when the driver refuses the module; a child that dies, or
    does not finish within ``CMLANG_CHILD_TIMEOUT_S``, is a LaunchError."""
    from cmlang import limits
    from .forked import ChildCrashed, ChildTimedOut, call_in_child

    def build():
        import pyopencl as cl
        try:
            program = _quiet_build(cl, cl.Program(device.context, spirv), device, options)
            cl.Kernel(program, name)
        except cl.Error:
            return None          # refused, not crashed: the parent's build reports the log
        device.check_vectorized(program, spirv, name)
        return bytes(program.get_info(cl.program_info.BINARIES)[0])
    try:
        return call_in_child(build)
    except ChildTimedOut as late:
        log = f":\n{late.log[-2000:]}" if late.log else ""
        raise LaunchError(f"the driver of {device.spec} did not finish building kernel '{name}' in "
                          f"{late.timeout:g} s (in a child process, now killed; set "
                          f"{limits.CHILD_SECONDS.env} to allow longer){log}") from None
    except ChildCrashed as crash:
        import signal
        status = crash.status
        how = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        log = f":\n{crash.log[-2000:]}" if crash.log else ""
        raise LaunchError(f"the driver of {device.spec} crashed ({how}) building kernel '{name}' (in "
                          "a child process; this one is unharmed): a bug in the driver's compiler or a "
                          "damaged SPIR-V module (spirv-val checks one); please report it with the "
                          f"kernel{log}") from None


def _device_binary_key(device, spirv: bytes) -> str:
    cl_device = device.cl_device
    identity = "\0".join([_device_identity(cl_device), hashlib.sha256(spirv).hexdigest()])
    return hashlib.sha256(identity.encode()).hexdigest()


_identities: dict = {}


def _device_identity(cl_device) -> str:
    ident = _identities.get(cl_device.int_ptr)
    if ident is None:
        ident = _identities[cl_device.int_ptr] = "\0".join(
            [str(ENTRY_VERSION), cl_device.platform.name, cl_device.platform.version,
             cl_device.name, cl_device.version, cl_device.driver_version])
    return ident
