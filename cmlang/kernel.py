"""``@cm.kernel``: a Python function that compiles, specializes and launches.

A Kernel owns its specializations: one per tuple of constexpr values and target.
Launch (``k[grid](*args)`` or ``k[grid, group](*args)``) looks the specialization up,
compiles it on a miss (front end -> IR passes -> codegen), and hands the resulting
``KernelBinary`` to the runtime, or runs the IR in the interpreter when
``interpret=True`` or ``CMLANG_INTERPRET=1``.
"""
from __future__ import annotations

import builtins
import inspect
import os
from dataclasses import dataclass

from .errors import CompileError, LaunchError
from .runtime.launcher import launch as _runtime_launch
from .types import ScalarType, PtrType, SCALAR_TYPES, constexpr, i32, f32, bool_

TARGETS = ("spirv", "spirv-vc")
_PYTHON_ANNOTATIONS = {builtins.int: i32, builtins.float: f32, builtins.bool: bool_}


@dataclass
class CompiledKernel:
    """One specialization of a kernel for one target: its IR, LLVM IR and SPIR-V."""
    kernel: "Kernel"
    function: object        # cmlang.ir.Function
    binary: object          # cmlang.runtime.binary.KernelBinary
    llvm_ir: str
    target: str

    @property
    def ir(self) -> str:
        from .ir.printer import print_function
        return print_function(self.function)

    @property
    def spirv(self) -> bytes:
        return self.binary.spirv

    @property
    def spirv_asm(self):
        from cmlang.codegen.spirv import disassemble
        return disassemble(self.spirv)

    def __getitem__(self, config):
        grid, group = _split_config(config)
        return lambda *args: _launch_binary(self.binary, grid, group, args)

    # What Intel's GPU compiler made of it: set by ``compile(..., device=...)``
    # (a cmlang.codegen.intel_gpu.NativeBuild; a class attribute, not a dataclass field).
    native_build = None

    @property
    def native(self) -> bytes:
        """The Intel GPU binary (what clCreateProgramWithBinary takes on that device)."""
        return self._native_build().binary

    @property
    def isa(self) -> str:
        """IGC's assembly listing of the kernel."""
        return self._native_build().isa

    @property
    def stats(self) -> dict:
        """instructions, spill_bytes, grf, dpas, block2d, messages (from IGC's listing)."""
        return dict(self._native_build().stats)

    def _native_build(self):
        if self.native_build is None:
            raise CompileError(f"{self.binary.name}: no Intel GPU build; compile it with "
                               f"device=... (an ocloc -device name such as 'pvc' or 'dg2')")
        return self.native_build


class Kernel:
    def __init__(self, fn, simd=16, interpret=False):
        if simd not in (8, 16, 32):
            raise CompileError(f"simd must be 8, 16 or 32, got {simd!r}")
        self.fn = fn
        self.simd = simd
        self.interpret = interpret
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.params = _read_params(fn)                     # [(name, type or constexpr)]
        self.runtime_params = [(n, t) for n, t in self.params if t is not constexpr]
        self._constexpr_positions = [i for i, (_, t) in enumerate(self.params) if t is constexpr]
        self._specializations = {}                         # (constexpr values, target) -> CompiledKernel
        self._ir_cache = {}                                # constexpr values -> Function

    def __repr__(self):
        return f"<cmlang kernel {self.__name__} simd={self.simd}>"

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"launch a kernel with a grid: {self.__name__}[grid](...) or "
                          f"{self.__name__}[grid, group](...)")

    def __getitem__(self, config):
        grid, group = _split_config(config)
        return _BoundLaunch(self, grid, group)

    # --- specialization -------------------------------------------------------
    def _split_args(self, args):
        if len(args) != len(self.params):
            names = ", ".join(n for n, _ in self.params)
            raise LaunchError(f"{self.__name__}() takes {len(self.params)} arguments ({names}), "
                              f"got {len(args)}")
        key = tuple(_constexpr_key(args[i]) for i in self._constexpr_positions)
        if not self._constexpr_positions:
            return key, args
        runtime = [a for i, a in enumerate(args) if i not in self._constexpr_positions]
        return key, runtime

    def _constexpr_dict(self, key):
        names = [self.params[i][0] for i in self._constexpr_positions]
        return dict(zip(names, (_constexpr_value(v) for v in key)))

    def ir_function(self, key=()):
        """The optimized IR of one specialization (cached)."""
        fn = self._ir_cache.get(key)
        if fn is None:
            from .frontend import compile_to_ir
            from .ir.verify import verify_function
            from .passes.dce import eliminate_dead_code
            fn = compile_to_ir(self.fn, dict(self.runtime_params), self._constexpr_dict(key), self.simd,
                               name=self.__name__)
            verify_function(fn)
            eliminate_dead_code(fn)
            self._ir_cache[key] = fn
        return fn

    def specialization(self, key=(), target="spirv") -> CompiledKernel:
        ck = self._specializations.get((key, target))
        if ck is None:
            ck = self._specializations[(key, target)] = self._build(key, target)
        return ck

    def _build(self, key, target):
        if target not in TARGETS:
            raise CompileError(f"unknown target {target!r}; targets are {', '.join(TARGETS)}")
        # The disk cache (cmlang/cache.py): a hit loads neither the front end nor codegen.
        from . import cache
        disk_key = cache.kernel_key(self, key, target) if cache.enabled() else None
        if disk_key is not None:
            ck = cache.load_compiled(self, disk_key, target)
            if ck is not None:
                return ck
        from cmlang.codegen import compile_function
        fn = self.ir_function(key)
        result = compile_function(fn, target=target)
        ck = CompiledKernel(self, fn, make_binary(fn, result), result.llvm_ir, target)
        if disk_key is not None:
            cache.store_compiled(disk_key, ck)
        return ck

    def compile(self, *args_or_types, target="spirv", device=None, **constexprs) -> CompiledKernel:
        """Compile one specialization: give launch arguments (or types) in order,
        or only the constexpr values by name.  ``device`` (ocloc's -device name, e.g.
        "pvc"): also build it with Intel's GPU compiler (``.native``, ``.isa``, ``.stats``)."""
        if args_or_types:
            key, _ = self._split_args(args_or_types)
        else:
            names = [self.params[i][0] for i in self._constexpr_positions]
            missing = [n for n in names if n not in constexprs]
            if missing:
                raise CompileError(f"{self.__name__}: constexpr parameter(s) {', '.join(missing)} need a value")
            key = tuple(_constexpr_key(constexprs[n]) for n in names)
        ck = self.specialization(key, target)
        return ck if device is None else _with_native_build(ck, device, getattr(self, "grf", 128))

    # --- launch -----------------------------------------------------------------
    def launch(self, grid, group, args):
        key, runtime_args = self._split_args(args)
        if self.interpret or os.environ.get("CMLANG_INTERPRET", "") not in ("", "0"):
            return self._interpret(key, grid, group, runtime_args)
        return _launch_binary(self.specialization(key).binary, grid, group, runtime_args)

    def _interpret(self, key, grid, group, args):
        from cmlang.runtime.interpreter import run
        from cmlang.runtime.launcher import prepare_host_args
        fn = self.ir_function(key)
        binary = make_binary(fn, None)
        host_args, write_back = prepare_host_args(binary, args)
        run(fn, grid, group, host_args)
        write_back()


class _BoundLaunch:
    __slots__ = ("kernel", "grid", "group")

    def __init__(self, kernel, grid, group):
        self.kernel, self.grid, self.group = kernel, grid, group

    def __call__(self, *args):
        return self.kernel.launch(self.grid, self.group, args)


def make_binary(fn, codegen_result):
    """The launch contract of a compiled IR function (codegen_result None: interpreter only)."""
    from cmlang.runtime.binary import KernelBinary, Param
    from .passes.buffer_extents import analyze_buffers
    uses = analyze_buffers(fn)
    params = []
    for i, (name, value) in enumerate(zip(fn.param_names, fn.params)):
        use = uses.get(i)
        params.append(Param(name, value.type, writes=bool(use and use.writes),
                            min_elems=use.min_elems if use else 0))
    uses_groups = any(op.opcode in ("slm", "barrier", "group_id", "local_id", "local_size", "group_count")
                      for op in fn.walk())
    if codegen_result is None:
        return KernelBinary(fn.name, b"", fn.simd, tuple(params), uses_groups)
    return KernelBinary(codegen_result.kernel_name, codegen_result.spirv, fn.simd, tuple(params),
                        uses_groups, tuple(codegen_result.extensions))


def _with_native_build(ck, device, grf):
    """A copy of ``ck`` carrying IGC's build for ``device`` (specializations stay device-free)."""
    import copy
    from cmlang.codegen.intel_gpu import build_native
    native = copy.copy(ck)
    native.native_build = build_native(ck.spirv, ck.binary.name, device, ck.target, grf)
    return native


def _launch_binary(binary, grid, group, args):
    return _runtime_launch(binary, grid, group, args)


def _split_config(config):
    """``k[grid]`` or ``k[grid, group]``: a pair is always (grid, group), so a 2-D grid
    without a group is written ``k[(4, 3), None]``; three ints are a 3-D grid."""
    if isinstance(config, tuple):
        if len(config) == 2:
            return config[0], config[1]
        if len(config) == 1:
            return config[0], None
    return config, None


def _read_params(fn):
    sig = inspect.signature(fn)
    params = []
    for p in sig.parameters.values():
        ann = p.annotation
        if isinstance(ann, str):  # from __future__ import annotations
            try:
                ann = eval(ann, fn.__globals__)  # noqa: S307 - the user's own annotation
            except Exception as e:
                raise CompileError(f"{fn.__name__}: cannot evaluate annotation {ann!r} of "
                                   f"parameter '{p.name}': {e}") from None
        ann = _PYTHON_ANNOTATIONS.get(ann, ann)
        if ann is inspect.Parameter.empty:
            raise CompileError(f"{fn.__name__}: parameter '{p.name}' needs a type annotation "
                               f"(e.g. cm.ptr[cm.f32], cm.i32 or cm.constexpr)")
        if isinstance(ann, str) and ann in SCALAR_TYPES:
            ann = SCALAR_TYPES[ann]
        if not (ann is constexpr or isinstance(ann, (ScalarType, PtrType))):
            raise CompileError(f"{fn.__name__}: parameter '{p.name}' has unsupported annotation "
                               f"{ann!r}; use cm.ptr[T], a scalar type or cm.constexpr")
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise CompileError(f"{fn.__name__}: parameter '{p.name}': only plain positional "
                               f"parameters are supported")
        params.append((p.name, ann))
    return params


def _constexpr_key(value):
    """A hashable key for a constexpr value that also tells 1 from 1.0 from True."""
    if isinstance(value, (list, tuple)):
        return ("tuple", tuple(_constexpr_key(v) for v in value))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    return (type(value).__name__, value)


def _constexpr_value(key):
    kind, value = key
    if kind == "tuple":
        return tuple(_constexpr_value(v) for v in value)
    return value


def kernel(fn=None, *, simd=16, interpret=False):
    """Decorator: ``@cm.kernel`` or ``@cm.kernel(simd=16, interpret=False)``."""
    if fn is None:
        return lambda f: Kernel(f, simd=simd, interpret=interpret)
    return Kernel(fn, simd=simd, interpret=interpret)
