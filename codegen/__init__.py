"""cmlang.codegen: IR -> LLVM IR -> SPIR-V, one target per module.

``compile_function(fn, target="spirv", profile="cpu")`` runs the target's stages
(``target.py`` holds the interface, ``cmlang.targets`` the registry): the SIMT target (a CM thread is one
sub-group; ``simt_target.py``: ``simt.py`` then ``spirv.py``) and the vector-compute target
``spirv-vc`` (a CM thread is one work-item; ``vc_target.py``: ``vc.py`` then
``vc_translate.py``).  The device profile (``cmlang.runtime.profiles``) says what the device
has and needs; every stage receives it.
"""
from __future__ import annotations

from cmlang.targets import TARGETS, get_target, target_names  # noqa: F401
from .target import CodegenResult, Target  # noqa: F401


def compile_function(fn, target: str = "spirv", opt_level: int = 2, profile="cpu") -> CodegenResult:
    """Compile one IR kernel function to a validated binary for ``target`` and device ``profile``."""
    from cmlang.runtime.profiles import get_profile
    return get_target(target).compile(fn, get_profile(profile), opt_level)
