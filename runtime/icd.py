"""Make the Intel OpenCL CPU runtime (the ``intel-opencl-rt`` wheel) visible to OpenCL.

The wheel installs ``<prefix>/lib/libintelocl.so`` but its ``.icd`` file holds a
placeholder path, so no ICD loader finds the runtime by itself, and users cannot be
asked for root to write ``/etc/OpenCL/vendors``.  Instead we keep a private vendors
folder under the user cache dir, holding

- ``intel-cpu-cmlang.icd`` with the real absolute library path,
- ``system-<name>.icd``: copies of ``/etc/OpenCL/vendors/*.icd``,
- ``user-<name>.icd``: copies of the folder (or file) the user already had in
  ``OCL_ICD_VENDORS``,

so every runtime the machine had stays visible, and point ``OCL_ICD_VENDORS`` at it.
That must happen before pyopencl or dpctl first enumerates platforms: the loader reads
the variable once.  ``import cmlang`` does it; ``CMLANG_NO_ICD_REGISTER=1`` opts out.

Every ``.icd`` file names a library the loader will load into the process, so the folder
is rebuilt on every start (a child process too) to hold exactly the files above: an
``.icd`` that anything else put there is removed before any loader reads the folder.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sys
import tempfile

ICD_NAME = "intel-cpu-cmlang.icd"
LIB_NAME = "libintelocl.so"
SYSTEM_VENDORS_DIR = "/etc/OpenCL/vendors"
OPT_OUT_ENV = "CMLANG_NO_ICD_REGISTER"
# The user's own OCL_ICD_VENDORS, kept for child processes (whose OCL_ICD_VENDORS is ours).
USER_SOURCE_ENV = "CMLANG_USER_OCL_ICD_VENDORS"

_done: str | None = None  # the folder this process registered (fast path)
problem: str | None = None  # why registering failed, for the "no device" message


def register_intel_cpu_runtime() -> str | None:
    """Register the Intel CPU runtime with the ICD loader; return the vendors folder.

    Returns None when opted out, when the library is not installed, or when no
    cache folder can be written.  Idempotent and cheap on repeated calls.
    """
    global _done, problem
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return None
    if _done is not None and os.environ.get("OCL_ICD_VENDORS") == _done:
        return _done
    lib = find_intel_cpu_runtime()
    if lib is None:
        return None
    if _inherited_folder(lib) is not None:
        # A parent process registered: the same folder, rebuilt here as well (its user
        # source comes down in USER_SOURCE_ENV).
        user_source = os.environ.get(USER_SOURCE_ENV) or None
        if os.path.abspath(vendors_folder(user_source)) != os.path.abspath(os.environ["OCL_ICD_VENDORS"]):
            user_source = None  # a stale record: the plain folder
    else:
        user_source = _user_vendors_source()
    folder = vendors_folder(user_source)
    try:
        sync_vendors_folder(folder, _wanted_icds(lib, user_source))
    except OSError as exc:
        import warnings
        problem = (f"cmlang could not register the Intel OpenCL CPU runtime in {folder} ({exc}); "
                   "set CMLANG_CACHE_DIR to a folder you can write")
        warnings.warn(problem)
        return None
    os.environ["OCL_ICD_VENDORS"] = folder
    if user_source is not None:
        os.environ[USER_SOURCE_ENV] = user_source
    else:
        os.environ.pop(USER_SOURCE_ENV, None)
    _done = folder
    return folder


def find_intel_cpu_runtime() -> str | None:
    """Absolute path of ``libintelocl.so`` from the intel-opencl-rt wheel, or None."""
    for prefix in _candidate_prefixes():
        path = os.path.join(prefix, "lib", LIB_NAME)
        if os.path.isfile(path):
            return os.path.abspath(path)
    return _find_through_wheel_metadata()


def cache_dir() -> str:
    """cmlang's cache folder (one definition: ``disk_store.cache_root``)."""
    from .disk_store import cache_root
    return cache_root()


def vendors_folder(user_source: str | None = None) -> str:
    """``<cache>/opencl-vendors``; a user-supplied OCL_ICD_VENDORS gets its own folder
    so that processes with different settings never overwrite each other's copies."""
    base = os.path.join(cache_dir(), "opencl-vendors")
    if user_source is None:
        return base
    return base + "-" + hashlib.sha256(user_source.encode()).hexdigest()[:12]


def sync_vendors_folder(folder: str, wanted: dict) -> None:
    """Make ``folder`` hold exactly ``wanted`` ({file name: content}) among its ``.icd``s.

    Only files that differ are rewritten, each through a temporary file and
    ``os.replace``, so concurrent processes never see a half-written ``.icd``.  Any other
    ``.icd`` (a copy of one that has since disappeared, or one put there by something
    else) is removed: the loader would load the library it names.
    """
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name, content in wanted.items():
        path = os.path.join(folder, name)
        if os.path.islink(path) or _read(path) != content:
            _write_atomically(path, content)
    for name in os.listdir(folder):
        if name.endswith(".icd") and name not in wanted:
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                pass  # another process removed it first
            except IsADirectoryError:
                import shutil
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


# ---------------------------------------------------------------------------

def _candidate_prefixes():
    """Where a wheel's ``data`` files (``<prefix>/lib/...``) may have landed."""
    import sysconfig
    seen = []
    candidates = [sys.prefix, sys.base_prefix, sysconfig.get_paths().get("data", "")]
    for scheme in ("posix_user", "posix_prefix"):
        try:
            candidates.append(sysconfig.get_paths(scheme)["data"])
        except KeyError:
            pass
    for prefix in candidates:
        if prefix and prefix not in seen:
            seen.append(prefix)
            yield prefix


def _find_through_wheel_metadata() -> str | None:
    """Slow path: ask the installed wheel's file list where the library went."""
    from importlib import metadata
    try:
        dist = metadata.distribution("intel-opencl-rt")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == LIB_NAME:
            path = os.path.abspath(str(dist.locate_file(file)))
            if os.path.isfile(path):
                return path
    return None


def _is_our_folder(path: str) -> bool:
    parent, name = os.path.split(os.path.abspath(path))
    return name.startswith("opencl-vendors") and parent == os.path.abspath(cache_dir())


def _inherited_folder(lib: str) -> str | None:
    """OCL_ICD_VENDORS if it already is one of our folders naming this library."""
    value = os.environ.get("OCL_ICD_VENDORS")
    if value and _is_our_folder(value) and _read(os.path.join(value, ICD_NAME)) == lib + "\n":
        return value
    return None


def _user_vendors_source() -> str | None:
    """The user's own OCL_ICD_VENDORS (a folder or one .icd file), unless it is ours."""
    value = os.environ.get("OCL_ICD_VENDORS")
    if not value or not os.path.exists(value) or _is_our_folder(value):
        return None
    return os.path.abspath(value)


def _wanted_icds(lib: str, user_source: str | None) -> dict:
    wanted = {ICD_NAME: lib + "\n"}
    real_lib = os.path.realpath(lib)
    sources = [("system-", sorted(glob.glob(os.path.join(SYSTEM_VENDORS_DIR, "*.icd"))))]
    if user_source is not None:
        files = ([user_source] if os.path.isfile(user_source)
                 else sorted(glob.glob(os.path.join(user_source, "*.icd"))))
        sources.append(("user-", files))
    for prefix, files in sources:
        for path in files:
            content = _read(path)
            if content is None or _names_library(content, real_lib):
                continue  # unreadable, or our runtime again (would show up twice)
            wanted[prefix + os.path.basename(path)] = content
    return wanted


def _names_library(icd_content: str, real_lib: str) -> bool:
    first_line = icd_content.strip().splitlines()[0] if icd_content.strip() else ""
    return os.path.isabs(first_line) and os.path.realpath(first_line) == real_lib


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


def _write_atomically(path: str, content: str) -> None:
    # The temporary name does not end in .icd, so a loader never picks it up.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
