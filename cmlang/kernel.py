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

from . import limits
from .errors import CompileError, LaunchError, USER_ERRORS, public, trimmed
from .runtime import launch_config
from .runtime.binary import constexpr_key
from .compiled import CompiledKernel
from .language import HostLaunched
from .runtime.launcher import Launched, launch as _runtime_launch
from .types import ScalarType, PtrType, VectorType, ElementParam, SCALAR_TYPES, constexpr, i32, f32, bool_
from .targets import check_target_name, target_names
from .runtime.profiles import get_profile, profile_for_device, device_choice, DEFAULT_PROFILE

TARGETS = target_names()     # the registry is cmlang.codegen.target
CHECK_ENV = "CMLANG_CHECK"   # 1: every kernel in checked mode (see Kernel.checked_mode)
_PYTHON_ANNOTATIONS = {builtins.int: i32, builtins.float: f32, builtins.bool: bool_}


class Kernel(HostLaunched):
    @public
    def __init__(self, fn, simd=16, interpret=False, grf=128, check=False):
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise CompileError(f"@cm.kernel decorates a Python function, got {fn!r}")
        # Decoration-time errors point at the def line.
        if type(simd) is not int or simd not in (8, 16, 32):
            raise CompileError(f"{fn.__name__}: simd must be the int 8, 16 or 32, got {simd!r}",
                               def_location(fn))
        if type(grf) is not int or grf not in (128, 256):
            raise CompileError(f"{fn.__name__}: grf must be 128 or 256 (registers per hardware thread), "
                               f"got {grf!r}", def_location(fn))
        if type(check) is not bool:
            raise CompileError(f"{fn.__name__}: check must be True or False, got {check!r}",
                               def_location(fn))
        self.fn = fn
        self.simd = simd
        self.check = check        # checked mode (also CMLANG_CHECK=1): bounds checks on the device
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
        self._specializations = {}   # (constexpr values, target, profile[, "checked"][, surfaces]) -> CompiledKernel
        self._ir_cache = {}                                # constexpr values -> Function
        self._surface_sites = {}                           # constexpr values -> SurfaceSites
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

    def param_types(self, key=()):
        """[(name, type)] of the run-time parameters of one specialization: ``cm.ptr[T]``
        with the element type that the constexpr ``T`` has in ``key``."""
        constexprs = self._constexpr_dict(key)
        return [(n, PtrType(t.elem.resolve(constexprs, self.__name__, n), t.space)
                 if isinstance(t, PtrType) and isinstance(t.elem, ElementParam) else t)
                for n, t in self.runtime_params]

    def ir_function(self, key=()):
        """The IR of one specialization after the pass pipeline (``cmlang.passes.pipeline``), cached."""
        fn = self._ir_cache.get(key)
        if fn is None:
            from .frontend import compile_to_ir
            from .passes.pipeline import run_pipeline
            with self._compiling():
                constexprs = self._constexpr_dict(key)
                fn = compile_to_ir(self.fn, dict(self.param_types(key)), constexprs,
                                   self.simd, name=self.__name__)
                run_pipeline(fn)
            self._ir_cache[key] = fn
        return fn

    def _ir_with_proven_surfaces(self, key, surfaces):
        """A fresh copy of the specialization's IR whose block ops at the ``surfaces``
        indices carry ``surface_fits`` (cmlang/passes/block_surfaces.py)."""
        from .frontend import compile_to_ir
        from .passes.block_surfaces import mark_proven
        from .passes.pipeline import run_pipeline
        with self._compiling():
            fn = compile_to_ir(self.fn, dict(self.param_types(key)), self._constexpr_dict(key),
                               self.simd, name=self.__name__)
            run_pipeline(fn)
        mark_proven(fn, surfaces)
        return fn

    def proven_surfaces(self, key, runtime_args, profile) -> tuple:
        """The block ops (indices) whose surfaces these launch arguments prove to fit the 2-D
        block messages of ``profile``; () where it has none (every other device)."""
        if get_profile(profile).block2d is None:
            return ()
        sites = self._surface_sites.get(key)
        if sites is None:
            from .passes.block_surfaces import surface_sites
            sites = self._surface_sites[key] = surface_sites(self.ir_function(key))
        if not sites:
            return ()
        from .passes.block_surfaces import proven_sites
        return proven_sites(sites, runtime_args, lambda i: _starts_aligned(runtime_args[i]))

    def _checked_ir_function(self, key):
        """A fresh copy of the specialization's IR with checked mode's bounds checks
        (``cmlang.passes.bounds_checks``), their sites and the number of hidden parameters.
        The interpreter keeps running the unchecked IR: it checks every access itself."""
        from .frontend import compile_to_ir
        from .ir.verify import verify_function
        from .passes.bounds_checks import insert_bounds_checks
        from .passes.pipeline import run_pipeline
        with self._compiling():
            fn = compile_to_ir(self.fn, dict(self.runtime_params), self._constexpr_dict(key),
                               self.simd, name=self.__name__)
            run_pipeline(fn)
            checks, hidden = insert_bounds_checks(fn)
            verify_function(fn)
        return fn, checks, hidden

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

    def specialization(self, key=(), target="spirv", profile=DEFAULT_PROFILE, checked=None,
                       surfaces=()) -> CompiledKernel:
        """``checked`` None: checked mode if the kernel asks for it or ``CMLANG_CHECK=1``.
        ``surfaces``: the block ops whose surfaces the launch proved (``proven_surfaces``);
        checked mode keeps every run-time check."""
        profile = get_profile(profile)
        checked = self.checked_mode() if checked is None else checked
        surfaces = () if checked or profile.block2d is None else tuple(surfaces)
        spec_key = (key, target, profile.name) + (("checked",) if checked else ()) + \
            ((("surfaces",) + surfaces,) if surfaces else ())
        ck = self._specializations.get(spec_key)
        if ck is None:
            ck = self._specializations[spec_key] = self._build(key, target, profile, checked, surfaces)
        return ck

    def checked_mode(self) -> bool:
        return self.check or os.environ.get(CHECK_ENV, "") not in ("", "0")

    def _build(self, key, target, profile, checked=False, surfaces=()):
        check_target_name(target)
        # The disk cache (cmlang/cache.py): a hit loads neither the front end nor codegen.
        from . import cache
        disk_key = cache.kernel_key(self, key, target, profile, checked, surfaces) if cache.enabled() else None
        if disk_key is not None:
            ck = cache.load_compiled(self, disk_key, target, self._constexpr_dict(key))
            if ck is not None:
                return ck
        from cmlang.codegen import compile_function
        if checked:
            fn, checks, hidden = self._checked_ir_function(key)
        else:
            fn = self._ir_with_proven_surfaces(key, surfaces) if surfaces else self.ir_function(key)
            checks, hidden = (), 0
        with self._compiling():
            result = _with_register_file(compile_function(fn, target=target, profile=profile),
                                         self.grf, profile, self.__name__)
        ck = CompiledKernel(self, fn, make_binary(fn, result, profile.name, checks, hidden), result.llvm_ir,
                            target, profile.name)
        if disk_key is not None:
            cache.store_compiled(disk_key, ck)
        return ck

    @public
    def compile(self, *args_or_types, target="spirv", device=None, checked=None, **constexprs) -> CompiledKernel:
        """Compile one specialization: give launch arguments (or types) in order,
        or only the constexpr values by name.  ``device`` names a device: a profile
        (``cpu``, ``pvc``, ``dg2``, ``tgllp``, ``generic``) or an Intel GPU by the name Intel's
        offline compiler uses (``-device``: ``pvc``, ``dg2``, ``acm-g10``, ...); for an Intel GPU
        the result also carries IGC's build (``.native``, ``.isa``, ``.stats``).  Default: the
        profile of the current device, no native build.  ``checked``: checked mode (default:
        the kernel's ``check`` or ``CMLANG_CHECK``)."""
        runtime_args = None
        if args_or_types:
            key, runtime_args = self._split_args(args_or_types)
        else:
            names = [self.params[i][0] for i in self._constexpr_positions]
            missing = [n for n in names if n not in constexprs]
            if missing:
                raise CompileError(f"{self.__name__}: constexpr parameter(s) {', '.join(missing)} need a value")
            key = tuple(constexpr_key(constexprs[n]) for n in names)
        profile, native_device = (_current_profile(), None) if device is None else device_choice(device)
        surfaces = self.proven_surfaces(key, runtime_args, profile) if _all_values(runtime_args) else ()
        ck = self.specialization(key, target, profile, checked, surfaces)
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
        # Surfaces are proven for the profile host code plans for (`cmlang isa` records them
        # with the specialization), else the current device's; a device without 2-D block
        # messages drops them.
        from .runtime.profiles import planning
        profile = _current_profile()
        surfaces = self.proven_surfaces(key, runtime_args, planning() or profile)
        return _launch_binary(self.specialization(key, "spirv", profile, surfaces=surfaces).binary, grid, group,
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


def _all_values(args) -> bool:
    """Whether compile() was given launch arguments (not types): only values prove surfaces."""
    import numpy as np
    return args is not None and not any(isinstance(a, (ScalarType, VectorType, PtrType, type, np.dtype))
                                        for a in args)


def _starts_aligned(arg) -> bool:
    """Whether the buffer a pointer argument becomes starts on 64 bytes: host arrays are
    copied into buffers cmlang allocates (at least 64-byte aligned on OpenCL and USM), as
    are cmlang's device arrays; other memory only where its address says so."""
    import numpy as np
    from .runtime.arrays import DeviceArray
    from .runtime.interop import Foreign, recognise
    from .passes.block_surfaces import BASE_ALIGN
    if isinstance(arg, (np.ndarray, DeviceArray)):
        return True
    foreign = arg if isinstance(arg, Foreign) else recognise(arg)
    if isinstance(foreign, np.ndarray):
        return True
    extent = foreign.extent() if isinstance(foreign, Foreign) else None
    return extent is not None and extent[1] % BASE_ALIGN == 0


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


def make_binary(fn, codegen_result, profile="", checks=(), hidden_params=0):
    """The launch contract of a compiled IR function (codegen_result None: interpreter only);
    ``checks``/``hidden_params``: checked mode's sites and hidden parameters."""
    from cmlang.runtime.binary import KernelBinary, Param
    from .passes import affine_extents, analyze_buffers, uses_groups
    uses = analyze_buffers(fn)
    extents = affine_extents(fn)
    params = []
    for i, (name, value) in enumerate(zip(fn.param_names, fn.params)):
        use = uses.get(i)
        params.append(Param(name, value.type, writes=bool(use and use.writes),
                            min_elems=use.min_elems if use else 0, extents=extents.get(i, ())))
    group_features = uses_groups(fn)
    slm_bytes = sum(op.attrs["n"] * op.results[0].type.elem.nbytes
                    for op in fn.walk() if op.opcode == "slm")
    if codegen_result is None:
        return KernelBinary(fn.name, b"", fn.simd, tuple(params), group_features, slm_bytes=slm_bytes)
    return KernelBinary(codegen_result.kernel_name, codegen_result.spirv, fn.simd, tuple(params),
                        group_features, tuple(codegen_result.extensions), codegen_result.target,
                        codegen_result.lanes_per_thread, codegen_result.build_options, profile,
                        slm_bytes, tuple(checks), hidden_params)


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
    # cm.ptr[T] with T a constexpr parameter: in a string annotation (``from __future__ import
    # annotations`` or quoted) the names of the constexpr parameters stand for their values.
    element_params = {p.name: ElementParam(p.name) for p in sig.parameters.values()
                      if _is_constexpr_annotation(p.annotation, fn.__globals__)}
    for p in sig.parameters.values():
        ann = p.annotation
        if isinstance(ann, str):  # from __future__ import annotations
            try:
                ann = eval(ann, fn.__globals__, element_params)  # noqa: S307 - the user's own annotation
                if isinstance(ann, str) and ann not in SCALAR_TYPES:   # quoted under __future__ annotations
                    ann = eval(ann, fn.__globals__, element_params)  # noqa: S307
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


def _is_constexpr_annotation(ann, globals_) -> bool:
    if isinstance(ann, str):
        try:
            ann = eval(ann, globals_)  # noqa: S307 - the user's own annotation
        except Exception:  # noqa: BLE001 - not a constexpr then; _read_params reports errors
            return False
    return ann is constexpr


def _constexpr_value(key):
    kind, value = key
    if kind == "tuple":
        return tuple(_constexpr_value(v) for v in value)
    return value


def kernel(fn=None, *, simd=16, interpret=False, grf=128, check=False):
    """Decorator: ``@cm.kernel`` or ``@cm.kernel(simd=16, interpret=False, grf=128, check=False)``
    (``grf=256``: the large register file mode, where the device has it; ``check=True``:
    checked mode, as ``CMLANG_CHECK=1``: device code checks every access's bounds)."""
    if fn is None:
        return public(lambda f: Kernel(f, simd=simd, interpret=interpret, grf=grf, check=check))
    return Kernel(fn, simd=simd, interpret=interpret, grf=grf, check=check)
