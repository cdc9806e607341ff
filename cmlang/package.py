"""Building precompiled kernel packages (``.cmpkg``); ``cmlang.runtime.package`` loads them.

    cm.build_package("attn.cmpkg", [
        saxpy,                                     # a kernel without constexpr parameters
        (attention, {"HEAD_DIM": 64}),             # (kernel, constexpr values)
        {"kernel": attention, "constexprs": {"HEAD_DIM": 128}, "simd": 16, "target": "spirv"},
    ])

Every specialization goes through the normal compile path (so the disk cache helps);
the package holds the SPIR-V and the launch contract, never Python code or pickles.
``devices=("pvc", "dg2")`` (ocloc -device names) adds each specialization's native Intel
GPU binary, built by Intel's offline compiler, with the device and compiler version in
the manifest; the loader prefers it on a matching device.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile

from .errors import CompileError
from .kernel import Kernel, TARGETS
from .runtime.package import (CONSTEXPR, FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME,
                              MANIFEST_SHA_NAME, manifest_checksum,
                              binary_to_json, constexpr_key, constexpr_to_json)
from .types import constexpr


def build_package(path, specs, target="spirv", progress=None, devices=()) -> str:
    """Compile ``specs`` and write them to the package ``path``; returns ``path``.

    A spec is a Kernel, ``(kernel, {constexpr name: value})`` or a dict with keys
    ``kernel``, ``constexprs``, ``simd``, ``target``.  ``progress``: show a progress
    bar (default: when there are several specializations and stderr is a terminal).
    """
    jobs = _deduplicate([_normalize(spec, target) for spec in specs])
    if not jobs:
        raise CompileError("build_package: no kernels to build")
    records, payloads = [], {}
    for index, (kernel, constexprs, spec_target) in enumerate(_progress(jobs, progress)):
        ck = kernel.compile(target=spec_target, checked=False, **constexprs)
        payload_name = f"spirv/{index:04d}-{_safe(kernel.__name__)}.spv"
        payloads[payload_name] = bytes(ck.binary.spirv)
        record = _record(kernel, constexprs, spec_target, ck.binary, payload_name)
        if devices:
            record["native"] = _native_payloads(kernel, constexprs, ck, devices, index, payloads)
        records.append(record)
    _check_unambiguous(records)
    import cmlang
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "cmlang_version": cmlang.__version__, "kernels": records}
    if devices:
        from cmlang.codegen.intel_gpu import compiler_version, describe_compiler
        manifest["native_devices"] = list(devices)
        manifest["intel_gpu_compiler"] = describe_compiler(compiler_version())
    _write_zip(str(path), manifest, payloads)
    return str(path)


def _normalize(spec, default_target):
    """-> (Kernel, {name: value}, target), checked against the kernel's parameters."""
    options = {}
    if isinstance(spec, Kernel):
        kernel, constexprs = spec, {}
    elif isinstance(spec, dict):
        options = dict(spec)
        kernel, constexprs = options.pop("kernel", None), options.pop("constexprs", {}) or {}
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        kernel, constexprs = spec
    else:
        raise CompileError(f"build_package: a spec is a kernel, (kernel, constexprs) or a dict, "
                           f"got {spec!r}")
    if not isinstance(kernel, Kernel):
        raise CompileError(f"build_package: {kernel!r} is not a @cm.kernel")
    spec_target = options.pop("target", default_target)
    simd = options.pop("simd", None)
    if options:
        raise CompileError(f"build_package: unknown spec keys {', '.join(sorted(options))}")
    if spec_target not in TARGETS:
        raise CompileError(f"build_package: unknown target {spec_target!r}; targets are {', '.join(TARGETS)}")
    if simd is not None and simd != kernel.simd:
        kernel = Kernel(kernel.fn, simd=simd)
    names = [n for n, t in kernel.params if t is constexpr]
    extra = sorted(set(constexprs) - set(names))
    missing = [n for n in names if n not in constexprs]
    if extra or missing:
        raise CompileError(f"build_package: {kernel.__name__} has constexpr parameters "
                           f"({', '.join(names) or 'none'}); "
                           + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"))
    return kernel, {n: constexprs[n] for n in names}, spec_target


def _deduplicate(jobs):
    seen, out = set(), []
    for kernel, constexprs, spec_target in jobs:
        key = (kernel.fn, kernel.simd, spec_target, tuple(constexpr_key(v) for v in constexprs.values()))
        if key not in seen:
            seen.add(key)
            out.append((kernel, constexprs, spec_target))
    return out


def _signature(kernel, constexprs):
    """The specialization's signature: cm.ptr[T] parameters with T's value as element type."""
    key = tuple(constexpr_key(constexprs[n]) for n, t in kernel.params if t is constexpr)
    resolved = dict(kernel.param_types(key))
    return [{"name": n, "type": CONSTEXPR if t is constexpr else str(resolved[n])} for n, t in kernel.params]


def _record(kernel, constexprs, spec_target, binary, payload_name):
    try:
        stored = {n: constexpr_to_json(v) for n, v in constexprs.items()}
    except TypeError as e:
        raise CompileError(f"build_package: {kernel.__name__}: {e}") from None
    return {
        "name": kernel.__name__,
        "signature": _signature(kernel, constexprs),
        "constexprs": stored,
        "target": spec_target,
        "payload": payload_name,
        "sha256": hashlib.sha256(binary.spirv).hexdigest(),
        **binary_to_json(binary),   # entry, simd, uses_groups, extensions, params
    }


def _native_payloads(kernel, constexprs, ck, devices, index, payloads) -> list:
    """Build the specialization ``ck`` for each Intel GPU, from the SPIR-V of that GPU's
    device profile (the package's SPIR-V is the building device's, which may carry another
    device's workarounds; the kernel's launch contract is the same); store the binaries,
    return their manifest entries."""
    entries = []
    for device in devices:
        build = kernel.compile(target=ck.target, device=device, **constexprs).native_build
        name = f"native/{index:04d}-{_safe(kernel.__name__)}.{_safe(device)}.bin"
        payloads[name] = build.binary
        entries.append({"device": device, "payload": name, "options": list(build.options),
                        "sha256": hashlib.sha256(build.binary).hexdigest(),
                        "compiler": build.compiler, "stats": {k: build.stats[k] for k in (
                            "instructions", "spill_bytes", "grf", "dpas", "block2d", "messages")}})
    return entries


def _check_unambiguous(records):
    """Two specializations that the same arguments would select cannot both ship."""
    seen = {}
    for r in records:
        key = (r["name"], json.dumps(r["signature"]), json.dumps(r["constexprs"], sort_keys=True))
        if key in seen:
            raise CompileError(f"build_package: two specializations of '{r['name']}' have the same "
                               f"signature and constexprs (simd {seen[key]['simd']} and {r['simd']}, "
                               f"targets {seen[key]['target']} and {r['target']}); a launch could "
                               "not tell them apart")
        seen[key] = r


def _progress(jobs, progress):
    import sys
    if progress is None:
        progress = len(jobs) > 1 and sys.stderr.isatty()
    if not progress:
        return jobs
    from tqdm import tqdm
    return tqdm(jobs, desc="compiling", unit="kernel")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _write_zip(path, manifest, payloads):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".cmpkg")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            manifest_bytes = json.dumps(manifest, indent=1).encode()
            zf.writestr(MANIFEST_NAME, manifest_bytes)
            zf.writestr(MANIFEST_SHA_NAME, manifest_checksum(manifest_bytes))
            for name, data in payloads.items():
                zf.writestr(name, data)
        os.chmod(tmp, 0o666 & ~_umask())  # a file to ship: not mkstemp's private 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
