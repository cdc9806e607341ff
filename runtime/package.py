"""Loading precompiled kernel packages (``.cmpkg``) and launching their kernels.

A package is a zip file: ``manifest.json`` plus one SPIR-V payload per kernel
specialization.  The manifest says, per specialization, the kernel's Python name,
its full signature (constexpr parameters included, in their Python positions), the
constexpr values it was built for, ``simd``, target, required SPIR-V extensions, the
launch contract (parameter types, which buffers it writes, minimum sizes) and the
sha256 of its payload.  A package built for Intel GPUs (``cmlang build --device pvc,dg2``)
also holds, per specialization, the native binaries Intel's offline compiler made
(``native``: device name as ocloc's ``-device``, payload, sha256, compiler version); on a
device of that name the loader builds the kernel from its native binary (OpenCL
``clCreateProgramWithBinary``), anywhere else from the SPIR-V.

Loading reads JSON and bytes only -- no pickle, no imports, no Python from the package
runs at load time -- and needs neither the compiler front end nor llvmlite: this module
imports only the runtime, ``cmlang.types``, ``cmlang.limits`` and ``cmlang.errors``.
``cmlang.package`` writes packages.

Trust: a package's kernels are machine code once the driver builds them, and run with the
full rights of the process; load only packages you trust.  The checks here (the sha256 of
the manifest and of every payload, a well-formed manifest within its size budgets, a
``simd`` that agrees with the SPIR-V's sub-group size) catch damage and mistakes, not an
author who means harm.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from cmlang import limits
from cmlang.errors import LaunchError
from cmlang.types import PtrType, ScalarType, VectorType, parse_type

from . import launch_config
from .binary import AffineExtent, KernelBinary, Param, constexpr_key
from .bounds import CheckSite

FORMAT_NAME = "cmlang-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_SHA_NAME = "manifest.sha256"   # hex sha256 of the manifest's bytes
SIMD_WIDTHS = (1, 8, 16, 32)   # @cm.kernel's widths, and 1 for hand-written one-lane code
CONSTEXPR = "constexpr"  # the "type" of a constexpr parameter in a manifest signature


class PackageError(LaunchError):
    """A package that cannot be used: not a package, unknown format, tampered payload."""


# ---------------------------------------------------------------------------
# KernelBinary <-> JSON (also the disk cache's format)

def binary_to_json(binary: KernelBinary) -> dict:
    return {
        "entry": binary.name,
        "simd": binary.simd,
        "uses_groups": bool(binary.uses_groups),
        "extensions": list(binary.extensions),
        "target": binary.target,
        "lanes_per_thread": binary.lanes,
        "build_options": binary.build_options,
        "profile": binary.profile,
        "slm_bytes": binary.slm_bytes,
        "params": [{"name": p.name, "type": str(p.type), "writes": bool(p.writes),
                    "min_elems": int(p.min_elems), "extents": [e.to_json() for e in p.extents]}
                   for p in binary.params],
        "checks": [site.to_json() for site in binary.checks],
        "hidden_params": binary.hidden_params,
    }


def binary_from_json(data: dict, spirv: bytes) -> KernelBinary:
    params = tuple(Param(p["name"], parse_type(p["type"]), bool(p["writes"]), int(p["min_elems"]),
                         tuple(AffineExtent.from_json(e) for e in p.get("extents", ())))
                   for p in data["params"])
    extensions = tuple(data["extensions"])
    # Records written before binaries named their target: a vector-compute module is
    # the spirv-vc target (one work-item per CM thread, built with -vc-codegen).
    legacy_vc = "SPV_INTEL_vector_compute" in extensions
    return KernelBinary(data["entry"], bytes(spirv), int(data["simd"]), params,
                        bool(data["uses_groups"]), extensions,
                        str(data.get("target", "spirv-vc" if legacy_vc else "spirv")),
                        int(data.get("lanes_per_thread", 1 if legacy_vc else 0)),
                        str(data.get("build_options", "-vc-codegen" if legacy_vc else "")),
                        str(data.get("profile", "")), int(data.get("slm_bytes", 0)),
                        tuple(CheckSite.from_json(c) for c in data.get("checks", ())),
                        int(data.get("hidden_params", 0)))


# ---------------------------------------------------------------------------
# Constexpr values <-> JSON.  JSON keeps 1, 1.0 and true apart; tuples and cmlang
# scalar types get a one-key object.

def constexpr_to_json(value):
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (tuple, list)):
        value = value.item()  # numpy scalars
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return {"tuple": [constexpr_to_json(v) for v in value]}
    if isinstance(value, ScalarType):
        return {"type": value.name}
    raise TypeError(f"constexpr value {value!r} ({type(value).__name__}) cannot be stored in a "
                    "package; use numbers, strings, bools, tuples of them or cmlang scalar types")


def constexpr_from_json(data):
    if isinstance(data, dict):
        if "tuple" in data:
            return tuple(constexpr_from_json(v) for v in data["tuple"])
        if "type" in data:
            return parse_type(data["type"])
        raise ValueError(f"unknown constexpr encoding {data!r}")
    return data


# ---------------------------------------------------------------------------
# One specialization

class Specialization:
    """One compiled specialization of a package kernel."""

    def __init__(self, name, signature, constexprs, target, binary, natives=None):
        self.name = name                  # the kernel's Python name
        self.natives = dict(natives or {})  # ocloc device name -> native binary bytes
        self._native_ready = set()          # devices whose kernel handle came from a native binary
        self.signature = signature        # [(param name, type or CONSTEXPR)] in Python order
        self.constexprs = constexprs      # {name: value}
        self.target = target
        self.binary = binary
        self.constexpr_positions = tuple(i for i, (_, t) in enumerate(signature) if t == CONSTEXPR)
        self._constexpr_keys = tuple(constexpr_key(constexprs[signature[i][0]])
                                     for i in self.constexpr_positions)
        self._runtime_types = [(i, t) for i, (_, t) in enumerate(signature) if t != CONSTEXPR]

    @property
    def simd(self):
        return self.binary.simd

    def describe(self) -> str:
        params = ", ".join(f"{n}: {t}" if t != CONSTEXPR else f"{n}={self.constexprs[n]!r}"
                           for n, t in self.signature)
        native = f" native={','.join(self.natives)}" if self.natives else ""
        return f"{self.name}({params}) simd={self.simd} target={self.target}{native}"

    def native_for(self, device):
        """The native binary for ``device`` (None: the device is not one it was built for)."""
        name = ocloc_device_name(device)
        return self.natives.get(name) if name else None

    def prepare(self, device) -> None:
        """On a device the package has a native binary for, have the launcher use the
        kernel built from it (once); a binary the driver refuses falls back to SPIR-V."""
        if device in self._native_ready:
            return
        native = self.native_for(device)
        if native is not None:
            kernel = build_native_kernel(device, native, self.binary.name)
            if kernel is not None:
                from .launcher import use_kernel
                use_kernel(self.binary, device, kernel)
        self._native_ready.add(device)

    def __repr__(self):
        return f"<cmlang package specialization {self.describe()}>"

    def match(self, args):
        """How well ``args`` fit: None if they cannot, else a score (exact type matches)."""
        if len(args) != len(self.signature):
            return None
        for pos, key in zip(self.constexpr_positions, self._constexpr_keys):
            if constexpr_key(args[pos]) != key:
                return None
        score = 0
        for i, t in self._runtime_types:
            fit = _type_fit(args[i], t)
            if fit is None:
                return None
            score += fit
        return score

    def runtime_args(self, args):
        if not self.constexpr_positions:
            return args
        return tuple(a for i, a in enumerate(args) if i not in self.constexpr_positions)


def _type_fit(arg, t):
    """None: ``arg`` cannot be a ``t``; 1: exactly a ``t``; 0: convertible/unknown."""
    if isinstance(t, PtrType):
        dtype = getattr(arg, "dtype", None)
        if dtype is None:
            return 0  # USM memory, dlpack objects...: the launcher checks them
        try:
            return 1 if t.elem.holds(dtype) else None
        except TypeError:
            return 0
    if isinstance(t, VectorType):      # a register passed by value: any sequence of its shape
        try:
            return 0 if np.shape(arg) == t.shape else None
        except ValueError:
            return None
    if isinstance(arg, PtrType) or isinstance(arg, np.ndarray):
        return None
    if isinstance(arg, np.generic):
        if np.dtype(type(arg)) == np.dtype(t.np_dtype):
            return 1
    if t.kind == "b":
        return 1 if isinstance(arg, (bool, np.bool_)) else None
    if isinstance(arg, (bool, np.bool_)):
        return None
    if t.kind in "iu":
        return 0 if isinstance(arg, (int, np.integer)) else None
    return 0 if isinstance(arg, (int, float, np.integer, np.floating)) else None


def _arg_signature(args, constexpr_positions):
    """A hashable summary of the arguments for the dispatch memo: types (and dtypes)
    everywhere, values only where some specialization has a constexpr parameter."""
    return tuple(constexpr_key(a) if i in constexpr_positions else
                 (type(a), getattr(a, "dtype", None))
                 for i, a in enumerate(args))


# ---------------------------------------------------------------------------
# A launchable package kernel

class PackageKernel:
    """All the specializations of one kernel name; ``k[grid](*args)`` picks one from
    the argument types and constexpr values (passed in their Python positions)."""

    def __init__(self, name, specializations):
        self.__name__ = name
        self.specializations = list(specializations)
        self._constexpr_positions = frozenset(p for s in self.specializations for p in s.constexpr_positions)
        self._chosen = {}   # argument signature -> Specialization
        # Keyword arguments bind by the Python signature (the same in every specialization).
        self._binder = launch_config.Binder(name, [n for n, _ in self.specializations[0].signature])

    def __repr__(self):
        return f"<cmlang package kernel {self.__name__}: {len(self.specializations)} specialization(s)>"

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"launch a kernel with a grid: {self.__name__}[grid](...) or "
                          f"{self.__name__}[grid, cm.group(...)](...)")

    def __getitem__(self, config):
        grid, group = launch_config.parse(config, self.__name__)  # as for @cm.kernel
        return _BoundPackageLaunch(self, grid, group)

    def select(self, args) -> Specialization:
        """The specialization that ``args`` launch (LaunchError listing them if none)."""
        try:
            signature = _arg_signature(args, self._constexpr_positions)
            spec = self._chosen.get(signature)
        except TypeError:  # an unhashable argument: no memo
            signature, spec = None, None
        if spec is None:
            spec = self._best_match(args)
            if signature is not None:
                self._chosen[signature] = spec
        return spec

    def _best_match(self, args):
        scored = [(spec.match(args), i, spec) for i, spec in enumerate(self.specializations)]
        scored = [(s, -i, spec) for s, i, spec in scored if s is not None]
        if not scored:
            raise LaunchError(self._no_match_message(args))
        return max(scored, key=lambda item: item[:2])[2]

    def _no_match_message(self, args):
        got = ", ".join(_describe_arg(a) for a in args)
        have = "\n  ".join(s.describe() for s in self.specializations)
        return (f"package kernel '{self.__name__}' has no specialization for the arguments "
                f"({got}); the package has:\n  {have}")

    def launch(self, grid, /, *args, group=None, **kwargs):
        """``k.launch(grid, *args, group=cm.group(...), **kwargs)``, as for ``@cm.kernel``."""
        grid, group = launch_config.call_form(self.__name__, grid, group)
        return self._launch(grid, group, self._binder.bind(args, kwargs))

    def _launch(self, grid, group, args, device=None):
        from .device import get_device, resolve_device
        from .launcher import launch
        spec = self.select(args)
        if spec.natives:
            device = get_device() if device is None else resolve_device(device)
            spec.prepare(device)
        return launch(spec.binary, grid, group, spec.runtime_args(args), device)


class _BoundPackageLaunch:
    __slots__ = ("kernel", "grid", "group")

    def __init__(self, kernel, grid, group):
        self.kernel, self.grid, self.group = kernel, grid, group

    def __call__(self, *args, **kwargs):
        from cmlang.errors import USER_ERRORS, trimmed
        try:
            if kwargs:
                args = self.kernel._binder.bind(args, kwargs)
            return self.kernel._launch(self.grid, self.group, args)
        except USER_ERRORS as e:
            raise trimmed(e)  # noqa: B904  (the runtime's frames are not the user's)


def _describe_arg(a):
    dtype = getattr(a, "dtype", None)
    if dtype is not None and not isinstance(a, np.generic):
        return f"{type(a).__name__}[{dtype}]"
    if isinstance(a, (bool, int, float, str, np.generic)):
        return f"{type(a).__name__} {a!r}"
    return type(a).__name__


# ---------------------------------------------------------------------------
# The package

class Package:
    """A loaded ``.cmpkg``: each kernel name is an attribute (``pkg.saxpy[grid](...)``)."""

    def __init__(self, path, manifest, kernels):
        self.path = path
        self.manifest = manifest
        self.kernels = kernels       # {name: PackageKernel}

    def __getattr__(self, name):
        kernels = self.__dict__.get("kernels", {})
        if name in kernels:
            return kernels[name]
        raise AttributeError(f"package {self.__dict__.get('path')!r} has no kernel {name!r}; "
                             f"it has: {', '.join(sorted(kernels)) or 'none'}")

    def __getitem__(self, name):
        return getattr(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.kernels))

    def __repr__(self):
        return f"<cmlang package {self.path!r}: {', '.join(sorted(self.kernels))}>"

    def describe(self) -> str:
        """One line per specialization."""
        return "\n".join(s.describe() for k in self.kernels.values() for s in k.specializations)


def manifest_checksum(manifest_bytes: bytes) -> bytes:
    """The content of ``manifest.sha256`` for a manifest's bytes."""
    return hashlib.sha256(manifest_bytes).hexdigest().encode() + b"\n"


def load_package(path) -> Package:
    """Open a ``.cmpkg``; checks the format version, the manifest's and every payload's
    sha256, the manifest's shape and the size budgets (``cmlang.limits``)."""
    from cmlang.errors import public
    return public(_load_package)(path)


def _load_package(path) -> Package:
    import zipfile
    path = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = _read_manifest(zf, path)
            kernels = manifest.get("kernels")
            if not isinstance(kernels, list) or not kernels:
                raise PackageError(f"{path}: damaged manifest: 'kernels' must be a non-empty list")
            specs = [_read_specialization(zf, path, record, i) for i, record in enumerate(kernels)]
    except FileNotFoundError:
        raise PackageError(f"no such package: {path}") from None
    except IsADirectoryError:
        raise PackageError(f"{path} is a folder, not a cmlang package") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as e:
        raise PackageError(f"{path} is not a cmlang package or is damaged ({e})") from None
    by_name = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec)
    return Package(path, manifest, {name: PackageKernel(name, s) for name, s in by_name.items()})


def _read_member(zf, path, name, limit):
    """A zip member's bytes, refused before inflating if it would pass ``limit``."""
    info = zf.getinfo(name)             # KeyError: no such member
    if info.file_size > limit.value:
        raise PackageError(f"{path}: {name}: " + limit.exceeded(info.file_size, "the member has"))
    return zf.read(info)


def _read_manifest(zf, path):
    try:
        raw = _read_member(zf, path, MANIFEST_NAME, limits.PACKAGE_MANIFEST_BYTES)
    except KeyError:
        raise PackageError(f"{path} is not a cmlang package (no {MANIFEST_NAME})") from None
    try:
        manifest = json.loads(raw)
    except RecursionError:
        raise PackageError(f"{path}: the manifest is nested too deeply to read") from None
    except ValueError as e:
        raise PackageError(f"{path}: the manifest is not valid JSON ({e})") from None
    depth = _json_depth(manifest)
    if depth > limits.PACKAGE_MANIFEST_DEPTH.value:
        raise PackageError(f"{path}: " + limits.PACKAGE_MANIFEST_DEPTH.exceeded(depth, "the manifest has"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise PackageError(f"{path} is not a cmlang package (manifest format "
                           f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PackageError(f"{path} has package format version {version!r}; this cmlang reads "
                           f"version {FORMAT_VERSION} (the package was written by cmlang "
                           f"{manifest.get('cmlang_version', '?')})")
    try:
        checksum = _read_member(zf, path, MANIFEST_SHA_NAME, limits.PACKAGE_MANIFEST_BYTES)
    except KeyError:
        raise PackageError(f"{path} has no {MANIFEST_SHA_NAME}: the package was modified or "
                           "written by an older cmlang; build it again") from None
    if checksum.strip() != manifest_checksum(raw).strip():
        raise PackageError(f"{path}: the manifest does not match its sha256 in {MANIFEST_SHA_NAME}: "
                           "the package was modified or damaged")
    return manifest


def _json_depth(value) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iteratively)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _read_specialization(zf, path, record, index):
    where = f"{path}: manifest entry {index}"
    if not isinstance(record, dict):
        raise PackageError(f"{where} is not an object")
    name = record.get("name")
    where += f" (kernel {name!r})"
    for key in ("name", "payload", "sha256", "entry"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise PackageError(f"{where}: '{key}' must be a non-empty string, got {record.get(key)!r}")
    try:
        payload = _read_member(zf, path, record["payload"], limits.PACKAGE_PAYLOAD_BYTES)
    except KeyError:
        raise PackageError(f"{where}: the payload {record['payload']} is missing") from None
    if hashlib.sha256(payload).hexdigest() != record["sha256"]:
        raise PackageError(f"{path}: the payload {record['payload']} of kernel '{name}' does not match "
                           f"its sha256 in the manifest: the package was modified or damaged")
    try:
        _check_record_shape(record)
        signature = [(p["name"], p["type"] if p["type"] == CONSTEXPR else parse_type(p["type"]))
                     for p in record["signature"]]
        constexprs = {k: constexpr_from_json(v) for k, v in record["constexprs"].items()}
        binary = binary_from_json(record, payload)
        _check_agreement(signature, constexprs, binary)
        natives = _read_natives(zf, path, where, record)
    except PackageError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, LaunchError) as e:
        message = e.args[0] if isinstance(e, LaunchError) else f"{type(e).__name__}: {e}"
        raise PackageError(f"{where}: damaged manifest entry ({message})") from None
    return Specialization(name, signature, constexprs, record["target"], binary, natives)


def _read_natives(zf, path, where, record):
    """{ocloc device name: native binary} of one specialization, each payload within
    its budget and matching its sha256."""
    natives = record.get("native", [])
    if not isinstance(natives, list):
        raise TypeError(f"'native' must be a list, got {natives!r}")
    found = {}
    for n in natives:
        if not (isinstance(n, dict) and all(isinstance(n.get(k), str) and n[k]
                                            for k in ("device", "payload", "sha256"))):
            raise TypeError("a native entry must be {'device': str, 'payload': str, 'sha256': str}, "
                            f"got {n!r}")
        found[n["device"]] = _read_payload(zf, path, where, n["payload"], n["sha256"])
    return found


# What each manifest field must hold (checked before anything reads it).
_RECORD_FIELDS = {"signature": list, "constexprs": dict, "target": str, "simd": int,
                  "uses_groups": bool, "extensions": list, "lanes_per_thread": int,
                  "build_options": str, "params": list}


def _check_record_shape(record):
    for key, kind in _RECORD_FIELDS.items():
        value = record.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"'{key}' must be a {kind.__name__}, got {value!r}")
    if record["simd"] not in SIMD_WIDTHS:
        raise ValueError(f"simd must be one of {SIMD_WIDTHS}, got {record['simd']!r}")
    if record["lanes_per_thread"] not in (0,) + SIMD_WIDTHS:
        raise ValueError(f"lanes_per_thread {record['lanes_per_thread']!r} is not 0, 1 or a simd width")
    if not all(isinstance(e, str) for e in record["extensions"]):
        raise TypeError(f"'extensions' must be strings, got {record['extensions']!r}")
    for p in record["signature"]:
        if not (isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("type"), str)):
            raise TypeError(f"a signature entry must be {{'name': str, 'type': str}}, got {p!r}")
    for p in record["params"]:
        if not (isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("type"), str)
                and isinstance(p.get("writes"), bool) and type(p.get("min_elems")) is int
                and p["min_elems"] >= 0):
            raise TypeError("a params entry must be {'name': str, 'type': str, 'writes': bool, "
                            f"'min_elems': int >= 0}}, got {p!r}")


def _check_agreement(signature, constexprs, binary):
    """The manifest's parts must agree with each other and with the SPIR-V."""
    runtime = [(n, t) for n, t in signature if t != CONSTEXPR]
    params = [(p.name, p.type) for p in binary.params]
    if runtime != params:
        raise ValueError(f"the signature's run-time parameters {runtime} differ from the launch "
                         f"contract's {params}")
    missing = [n for n, t in signature if t == CONSTEXPR and n not in constexprs]
    if missing or len(constexprs) != len(signature) - len(runtime):
        raise ValueError(f"constexprs {sorted(constexprs)} do not match the signature's constexpr "
                         "parameters")
    from .spirv_check import check_module
    check_module(binary)



def _read_payload(zf, path, where, payload_name, sha):
    try:
        payload = _read_member(zf, path, payload_name, limits.PACKAGE_PAYLOAD_BYTES)
    except KeyError:
        raise PackageError(f"{where}: the payload {payload_name} is missing") from None
    if hashlib.sha256(payload).hexdigest() != sha:
        raise PackageError(f"{where}: the payload {payload_name} does not match its sha256 in "
                           "the manifest: the package was modified or damaged")
    return payload


# ---------------------------------------------------------------------------
# Native Intel GPU binaries

# PCI device ids of the Intel GPUs ocloc names (its -device), for matching a package's
# native binaries to the device at hand.
_INTEL_GPU_IDS = (
    ("pvc", 0x0BD0, 0x0BDB),      # Data Center GPU Max
    ("dg2", 0x5690, 0x56C1),      # Arc A-series, Data Center GPU Flex
    ("tgllp", 0x9A40, 0x9A7F),    # Tiger Lake integrated
)
_CL_DEVICE_ID_INTEL = 0x4251      # cl_intel_device_attribute_query


def ocloc_device_name(device):
    """The ocloc -device name of a cmlang Device, or None when it is not an Intel GPU we
    know.  A device object may state it (``ocloc_device``), as a test's fake record does."""
    stated = getattr(device, "ocloc_device", None)
    if stated:
        return stated
    if getattr(device, "backend", None) != "opencl" or getattr(device, "kind", None) != "gpu" \
            or not getattr(device, "is_intel", False):
        return None
    try:
        pci_id = int(device.cl_device.get_info(_CL_DEVICE_ID_INTEL))
    except Exception:  # noqa: BLE001 - a driver without the query: no native match
        return None
    for name, low, high in _INTEL_GPU_IDS:
        if low <= pci_id <= high:
            return name
    return None


def build_native_kernel(device, native: bytes, name: str):
    """A kernel handle built from a native binary (OpenCL clCreateProgramWithBinary), or
    None where the backend cannot take one (dpctl has no program-from-binary call) or the
    driver refuses it (then the SPIR-V is used)."""
    if getattr(device, "backend", None) != "opencl":
        return None
    import warnings
    import pyopencl as cl
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cl.CompilerWarning)
            program = cl.Program(device.context, [device.cl_device], [native]).build(
                devices=[device.cl_device])
        return cl.Kernel(program, name)
    except (cl.Error, RuntimeError) as exc:
        warnings.warn(f"cmlang: the native binary of '{name}' does not load on {device.spec} "
                      f"({exc}); building from SPIR-V", stacklevel=3)
        return None
