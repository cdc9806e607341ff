"""``@cm.kernel``: a Python function that compiles, specializes and launches.

A Kernel owns its specializations: one per tuple of constexpr values and target.
Launch (``k[grid](*args)``, ``k[grid, cm.group(...)](*args)``, arguments also by
name; the forms are parsed in ``runtime/launch_config.py``) looks the specialization up,
compiles it on a miss (front end -> IR passes -> codegen), and hands the resulting
``KernelBinary`` to the runtime, or runs the IR in the interpreter when
``interpret=True`` or ``CMLANG_INTERPRET=1``.
"""
from __future__ import annotations

import builtins
import contextlib
import inspect
import os
from dataclasses import dataclass

from . import limits
from .errors import CompileError, LaunchError, USER_ERRORS, public, trimmed
from .runtime import launch_config
from .runtime.binary import constexpr_key
from .runtime.launcher import Launched, launch as _runtime_launch
from .types import ScalarType, PtrType, VectorType, SCALAR_TYPES, constexpr, i32, f32, bool_
from .targets import check_target_name, target_names
from .runtime.profiles import get_profile, profile_for_device, device_choice, DEFAULT_PROFILE

TARGETS = target_names()     # the registry is cmlang.codegen.target
_PYTHON_ANNOTATIONS = {builtins.int: i32, builtins.float: f32, builtins.bool: bool_}


@dataclass
class CompiledKernel:
    """One specialization of a kernel for one target: its IR, LLVM IR and SPIR-V."""
    kernel: "Kernel"
    function: object        # cmlang.ir.Function
    binary: object          # cmlang.runtime.binary.KernelBinary
    llvm_ir: str
    target: str
    profile: str = DEFAULT_PROFILE   # the device profile it was compiled for

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
        grid, group = launch_config.parse(config, self.binary.name)
        binder = launch_config.Binder(self.binary.name, [p.name for p in self.binary.params])

        def launch(*args, **kwargs):
            try:
                return _launch_binary(self.binary, grid, group, binder.bind(args, kwargs))
            except USER_ERRORS as e:
                raise trimmed(e)  # noqa: B904
        return launch

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
    @public
    def __init__(self, fn, simd=16, interpret=False, grf=128):
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise CompileError(f"@cm.kernel decorates a Python function, got {fn!r}")
        # Decoration-time errors point at the def line.
        if type(simd) is not int or simd not in (8, 16, 32):
            raise CompileError(f"{fn.__name__}: simd must be the int 8, 16 or 32, got {simd!r}",
                               def_location(fn))
        if type(grf) is not int or grf not in (128, 256):
            raise CompileError(f"{fn.__name__}: grf must be 128 or 256 (registers per hardware thread), "
                               f"got {grf!r}", def_location(fn))
        self.fn = fn
        self.simd = simd
        self.grf = grf            # 256: the large register file mode (profiles with large_grf)
        self.interpret = interpret
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        try:
            self.params = _read_params(fn)                 # [(name, type or constexpr)]
        except CompileError as e:
            if e.loc is not None:
                raise
            raise CompileError(e.message, def_location(fn)) from None
        self.runtime_params = [(n, t) for n, t in self.params if t is not constexpr]
        self._constexpr_positions = [i for i, (_, t) in enumerate(self.params) if t is constexpr]
        self._specializations = {}                 # (constexpr values, target, profile) -> CompiledKernel
        self._ir_cache = {}                                # constexpr values -> Function
        self._binder = launch_config.Binder(self.__name__, [n for n, _ in self.params])

    def __repr__(self):
        return f"<cmlang kernel {self.__name__} simd={self.simd}>"

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"launch a kernel with a grid: {self.__name__}[grid](...) or "
                          f"{self.__name__}[grid, cm.group(...)](...)")

    def __getitem__(self, config):
        grid, group = launch_config.parse(config, self.__name__)
        return _BoundLaunch(self, grid, group)

    # --- specialization -------------------------------------------------------
    def _split_args(self, args):
        if len(args) != len(self.params):
            names = ", ".join(n for n, _ in self.params)
            raise LaunchError(f"{self.__name__}() takes {len(self.params)} arguments ({names}), "
                              f"got {len(args)}")
        key = tuple(constexpr_key(args[i]) for i in self._constexpr_positions)
        if not self._constexpr_positions:
            return key, args
        runtime = [a for i, a in enumerate(args) if i not in self._constexpr_positions]
        return key, runtime

    def _constexpr_dict(self, key):
        names = [self.params[i][0] for i in self._constexpr_positions]
        return dict(zip(names, (_constexpr_value(v) for v in key)))

    def ir_function(self, key=()):
        """The IR of one specialization after the pass pipeline (``cmlang.passes.pipeline``), cached."""
        fn = self._ir_cache.get(key)
        if fn is None:
            from .frontend import compile_to_ir
            from .passes.pipeline import run_pipeline
            with self._compiling():
                fn = compile_to_ir(self.fn, dict(self.runtime_params), self._constexpr_dict(key),
                                   self.simd, name=self.__name__)
                run_pipeline(fn)
            self._ir_cache[key] = fn
        return fn

    @contextlib.contextmanager
    def _compiling(self):
        """Front end, passes and codegen: deep recursion allowed up to the nesting budget,
        and a RecursionError past it becomes a CompileError at the kernel's def line."""
        try:
            with limits.compiler_recursion():
                yield
        except RecursionError:
            raise CompileError(limits.recursion_message(f"kernel '{self.__name__}'"),
                               def_location(self.fn)) from None

    def specialization(self, key=(), target="spirv", profile=DEFAULT_PROFILE) -> CompiledKernel:
        profile = get_profile(profile)
        ck = self._specializations.get((key, target, profile.name))
        if ck is None:
            ck = self._specializations[(key, target, profile.name)] = self._build(key, target, profile)
        return ck

    def _build(self, key, target, profile):
        check_target_name(target)
        # The disk cache (cmlang/cache.py): a hit loads neither the front end nor codegen.
        from . import cache
        disk_key = cache.kernel_key(self, key, target, profile) if cache.enabled() else None
        if disk_key is not None:
            ck = cache.load_compiled(self, disk_key, target, self._constexpr_dict(key))
            if ck is not None:
                return ck
        from cmlang.codegen import compile_function
        fn = self.ir_function(key)
        with self._compiling():
            result = _with_register_file(compile_function(fn, target=target, profile=profile),
                                         self.grf, profile, self.__name__)
        ck = CompiledKernel(self, fn, make_binary(fn, result, profile.name), result.llvm_ir, target,
                            profile.name)
        if disk_key is not None:
            cache.store_compiled(disk_key, ck)
        return ck

    @public
    def compile(self, *args_or_types, target="spirv", device=None, **constexprs) -> CompiledKernel:
        """Compile one specialization: give launch arguments (or types) in order,
        or only the constexpr values by name.  ``device`` names a device: a profile
        (``cpu``, ``pvc``, ``dg2``, ``tgllp``, ``generic``) or an Intel GPU by the name Intel's
        offline compiler uses (``-device``: ``pvc``, ``dg2``, ``acm-g10``, ...); for an Intel GPU
        the result also carries IGC's build (``.native``, ``.isa``, ``.stats``).  Default: the
        profile of the current device, no native build."""
        if args_or_types:
            key, _ = self._split_args(args_or_types)
        else:
            names = [self.params[i][0] for i in self._constexpr_positions]
            missing = [n for n in names if n not in constexprs]
            if missing:
                raise CompileError(f"{self.__name__}: constexpr parameter(s) {', '.join(missing)} need a value")
            key = tuple(constexpr_key(constexprs[n]) for n in names)
        if device is None:
            return self.specialization(key, target, _current_profile())
        profile, native_device = device_choice(device)
        ck = self.specialization(key, target, profile)
        return ck if native_device is None else _with_native_build(ck, native_device, getattr(self, "grf", 128))

    # --- launch -----------------------------------------------------------------
    @public
    def launch(self, grid, /, *args, group=None, **kwargs):
        """``k.launch(grid, *args, group=cm.group(...), **kwargs)``: ``k[grid, cm.group(...)](...)``
        spelled as a call (``group`` is a ``cm.group``, an int or a tuple of ints)."""
        grid, group = launch_config.call_form(self.__name__, grid, group)
        return self._launch(grid, group, self._binder.bind(args, kwargs))

    def _launch(self, grid, group, args):
        key, runtime_args = self._split_args(args)
        if self.interpret or os.environ.get("CMLANG_INTERPRET", "") not in ("", "0"):
            return self._interpret(key, grid, group, runtime_args)
        return _launch_binary(self.specialization(key, "spirv", _current_profile()).binary, grid, group,
                              runtime_args)

    def _interpret(self, key, grid, group, args):
        from cmlang.runtime.interpreter import run
        from cmlang.runtime.launcher import prepare_host_args
        fn = self.ir_function(key)
        binary = make_binary(fn, None)
        host_args, write_back = prepare_host_args(binary, args)
        run(fn, grid, group, host_args)
        write_back()
        return Launched.finished()


class _BoundLaunch:
    __slots__ = ("kernel", "grid", "group")

    def __init__(self, kernel, grid, group):
        self.kernel, self.grid, self.group = kernel, grid, group

    def __call__(self, *args, **kwargs):
        kernel = self.kernel
        try:
            if kwargs:  # positional arguments alone are counted by _split_args
                args = kernel._binder.bind(args, kwargs)
            return kernel._launch(self.grid, self.group, args)
        except USER_ERRORS as e:
            raise trimmed(e)  # noqa: B904  (the compiler's frames are not the user's)


def _current_profile():
    """The profile of the device launches go to (the CPU runtime's when none resolves)."""
    from .runtime.device import get_device
    try:
        return profile_for_device(get_device())
    except Exception:  # no device: compile for the default profile, the launch will say why
        return get_profile(DEFAULT_PROFILE)


def make_binary(fn, codegen_result, profile=""):
    """The launch contract of a compiled IR function (codegen_result None: interpreter only)."""
    from cmlang.runtime.binary import KernelBinary, Param
    from .passes import analyze_buffers, uses_groups
    uses = analyze_buffers(fn)
    params = []
    for i, (name, value) in enumerate(zip(fn.param_names, fn.params)):
        use = uses.get(i)
        params.append(Param(name, value.type, writes=bool(use and use.writes),
                            min_elems=use.min_elems if use else 0))
    group_features = uses_groups(fn)
    slm_bytes = sum(op.attrs["n"] * op.results[0].type.elem.nbytes
                    for op in fn.walk() if op.opcode == "slm")
    if codegen_result is None:
        return KernelBinary(fn.name, b"", fn.simd, tuple(params), group_features, slm_bytes=slm_bytes)
    return KernelBinary(codegen_result.kernel_name, codegen_result.spirv, fn.simd, tuple(params),
                        group_features, tuple(codegen_result.extensions), codegen_result.target,
                        codegen_result.lanes_per_thread, codegen_result.build_options, profile,
                        slm_bytes)


def _with_register_file(result, grf, profile, name):
    """The large register file mode: the driver's build of the binary asks for it where the
    profile has it; an Intel GPU profile without it refuses (the CPU and generic profiles,
    which name no hardware, ignore it)."""
    if grf == 128 or (not profile.large_grf and profile.native_device is None):
        return result
    if not profile.large_grf:
        raise CompileError(f"kernel '{name}': grf=256 (the large register file) is not available on "
                           f"{profile.name} ({profile.description}); it has {profile.grf_count} registers")
    import dataclasses
    from cmlang.codegen.intel_gpu import GRF_OPTIONS
    options = " ".join((result.build_options,) + GRF_OPTIONS[256]).strip()
    return dataclasses.replace(result, build_options=options)


def _with_native_build(ck, device, grf):
    """A copy of ``ck`` carrying IGC's build for ``device`` (specializations stay device-free)."""
    import copy
    from cmlang.codegen.intel_gpu import build_native
    native = copy.copy(ck)
    native.native_build = build_native(ck.spirv, ck.binary.name, device, ck.target, grf)
    return native


def _launch_binary(binary, grid, group, args):
    return _runtime_launch(binary, grid, group, args)


def def_location(fn):
    """The place of ``fn``'s ``def`` line (decorators skipped), for decoration-time errors."""
    import linecache
    from .ir.core import Location
    code = fn.__code__
    line = code.co_firstlineno
    for offset in range(64):    # past the decorators, which may span lines
        text = linecache.getline(code.co_filename, line + offset)
        stripped = text.lstrip()
        if stripped.startswith(("def ", "async def ")):
            return Location(code.co_filename, line + offset, len(text) - len(stripped))
        if not text:
            break
    return Location(code.co_filename, line, 0)


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
        if not (ann is constexpr or isinstance(ann, (ScalarType, PtrType, VectorType))):
            raise CompileError(f"{fn.__name__}: parameter '{p.name}' has unsupported annotation "
                               f"{ann!r}; use cm.ptr[T], a scalar type, a register type such as "
                               f"cm.vector[cm.f32, 9] or cm.constexpr")
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise CompileError(f"{fn.__name__}: parameter '{p.name}': only plain positional "
                               f"parameters are supported")
        params.append((p.name, ann))
    return params


def _constexpr_value(key):
    kind, value = key
    if kind == "tuple":
        return tuple(_constexpr_value(v) for v in value)
    return value


def kernel(fn=None, *, simd=16, interpret=False, grf=128):
    """Decorator: ``@cm.kernel`` or ``@cm.kernel(simd=16, interpret=False, grf=128)``
    (``grf=256``: the large register file mode, where the device has it)."""
    if fn is None:
        return public(lambda f: Kernel(f, simd=simd, interpret=interpret, grf=grf))
    return Kernel(fn, simd=simd, interpret=interpret, grf=grf)
