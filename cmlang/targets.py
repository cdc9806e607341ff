"""The one registry of code-generation targets (the interface is ``cmlang.codegen.target``).

Names only, importable without the compiler: the launcher, the disk cache, packages and the
command line list and check target names without loading codegen or llvmlite.
"""
from __future__ import annotations

import importlib

from .errors import CompileError

# name -> "module:class", imported on first use.  A new target: one module, one line here.
TARGETS = {
    "spirv": "cmlang.codegen.simt_target:SimtTarget",
    "spirv-vc": "cmlang.codegen.vc_target:VectorComputeTarget",
}
DEFAULT_TARGET = "spirv"

_loaded: dict = {}


def target_names() -> tuple:
    return tuple(TARGETS)


def check_target_name(name: str) -> str:
    if name not in TARGETS:
        raise CompileError(f"unknown target {name!r}; targets are {', '.join(TARGETS)}")
    return name


def get_target(name: str):
    target = _loaded.get(check_target_name(name))
    if target is None:
        module, cls = TARGETS[name].split(":")
        target = _loaded[name] = getattr(importlib.import_module(module), cls)()
    return target
