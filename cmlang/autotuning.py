"""``@cm.autotune``: the tile shape (constexpr values, ``simd``, ``grf``) chosen per device.

Over a kernel, each config gives values of constexpr parameters, which the launch then
leaves out, and the grid may be a function of the chosen config (as in Triton)::

    @cm.autotune(configs=[{"BLOCK": 64}, {"BLOCK": 256, "simd": 8}], key=["n"])
    @cm.kernel
    def scale(x: cm.ptr[f32], n: i32, BLOCK: cm.constexpr): ...

    scale[lambda c: (n // c["BLOCK"],)](x, n)

Over a host function that launches kernels, each config is keyword arguments of the call.

The configs may differ per device: ``configs`` is then a dict from device profile names
to lists (``{"cpu": [...], "pvc": [...], "default": [...]}``); a device whose profile is
not named tries the ``"default"`` list.  Every list names the same parameters.

The first call per value of the ``key`` arguments (for an array: its shape and dtype)
chooses a config and remembers it, in this process and in the disk cache (store
``autotune`` beside the compiled kernels), keyed by the device, the sources of the kernels,
the configs, the key values and the toolchain; later processes reuse it without timing.

- On the device the launch runs on, each config is *timed*: compiled, run once and checked
  (``check=``), warmed up; then the configs are run round-robin, ``repeat`` rounds, and the
  smallest median device time (profiling events, ``cmlang.runtime.profile``) wins.
- On a compile-only device profile (``CMLANG_AUTOTUNE_DEVICE=pvc``, or
  ``k[grid].tune(*args, device="pvc")``) each config is *ranked* by what Intel's compiler
  reports: configs without register spills first, then the fewest instructions per unit
  of work (``work(config)``: the useful work of one CM thread's code; by default every
  CM thread counts alike, so the score is instructions x CM threads).
- A config that fails to compile or to run, or that ``check`` rejects, is skipped with an
  ``AutotuneWarning`` and never chosen.  The arguments the kernels write are restored
  before each config runs and after tuning, so the caller's own launch sees its inputs
  as they were and leaves the correct result.
- ``CMLANG_AUTOTUNE=0`` takes the first config; ``CMLANG_AUTOTUNE_LOG=1`` prints the
  table; ``budget`` (``CMLANG_AUTOTUNE_BUDGET``, default 10 s) stops timing a key once
  spent and keeps the best so far for this process (not on disk: a later process, which
  finds the configs compiled in the cache, tries again).  Ranking by compiler stats ranks
  every config whatever the budget: its answer must not depend on the machine's load.

``k.best`` is the config chosen for the last key launched, ``k.timed`` whether it was
measured in this process, ``k.how`` how it was chosen ("timed", "ranked", "cached",
"first") and ``k.table`` the rows of the last tuning.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import statistics
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import CompileError, LaunchError
from .kernel import Kernel, _current_profile
from .language import HostLaunched
from .runtime import launch_config
from .runtime.profiles import get_profile, planning

ENABLE_ENV = "CMLANG_AUTOTUNE"
LOG_ENV = "CMLANG_AUTOTUNE_LOG"
BUDGET_ENV = "CMLANG_AUTOTUNE_BUDGET"
DEVICE_ENV = "CMLANG_AUTOTUNE_DEVICE"
DEFAULT_BUDGET_S = 10.0
STORE = "autotune"              # the disk-cache store of choices (cmlang.cache conventions)
KERNEL_OPTIONS = ("simd", "grf")  # config keys that are kernel options, not constexprs


_tuning = threading.local()


@contextlib.contextmanager
def tuning():
    """Marks the configs' trial compiles and launches (``in_tuning()`` is True inside), so
    that tools recording what a program launches (``cmlang isa``) keep only the choice."""
    _tuning.depth = getattr(_tuning, "depth", 0) + 1
    try:
        yield
    finally:
        _tuning.depth -= 1


def in_tuning() -> bool:
    return getattr(_tuning, "depth", 0) > 0


def tuning_profile():
    """The device profile configs and tile shapes are chosen for now: the one a
    ``planning_for`` block names (how ``cmlang isa`` plans each GPU), else
    ``CMLANG_AUTOTUNE_DEVICE`` when set (a compile-only profile, ranked by Intel's compiler),
    else the device launches run on.  Host code whose tile shapes or element types differ per
    device reads it, so that it picks what the autotuner is choosing for."""
    planned = planning()
    if planned is not None:
        return planned
    return get_profile(os.environ.get(DEVICE_ENV, "").strip() or _current_profile())


class AutotuneWarning(UserWarning):
    """A config was skipped (it failed to compile, to run, or the result check)."""


def autotune(configs, key=(), *, check=None, work=None, restore=None, budget=None,
             warmup=1, repeat=5):
    """Decorator over a ``@cm.kernel`` or a host function that launches kernels.

    ``configs``: dicts of constexpr values (and ``simd``/``grf``) for a kernel, of keyword
    arguments for a function, or a dict from device profile names (and ``"default"``) to
    such lists, the configs tried on that device; ``key``: names of the arguments whose values pick a choice;
    ``check(args, result)``: False or a message rejects a config (``args``: the call's
    arguments after the run, ``result``: the function's return value, None for a kernel);
    ``work(config)``: useful work of one CM thread, for ranking by compiler stats;
    ``restore``: names of the arguments a host function writes (default: every array
    argument); ``budget``: seconds of tuning per key; ``warmup``/``repeat``: untimed and
    timed runs per config."""
    by_profile = _normalize_configs(configs)
    options = _Options(next(iter(by_profile.values())), tuple(key), check, work, restore,
                       budget, max(0, int(warmup)), max(1, int(repeat)), by_profile)

    def wrap(target):
        if isinstance(target, Kernel):
            return AutotunedKernel(target, options)
        if isinstance(target, (AutotunedKernel, AutotunedFunction)):
            raise CompileError("cm.autotune applied twice; give one list of configs")
        if callable(target):
            return AutotunedFunction(target, options)
        raise CompileError(f"cm.autotune decorates a @cm.kernel or a function, got {target!r}")
    return wrap


@dataclass(frozen=True)
class _Options:
    configs: tuple
    key: tuple
    check: object
    work: object
    restore: object
    budget: object
    warmup: int
    repeat: int
    by_profile: dict        # device profile name (or "default") -> configs


@dataclass
class Choice:
    """The config chosen for one key value, and how."""
    index: int
    config: dict
    how: str                     # "timed", "ranked", "cached", "first"
    table: list = field(default_factory=list)   # [Row] of the tuning that chose it
    partial: bool = False        # the budget ran out before every config was tried


@dataclass
class Row:
    """One config's line in the tuning table."""
    index: int
    config: dict
    seconds: float | None = None     # median device time (timed)
    stats: dict | None = None        # compiler stats (ranked)
    score: float | None = None       # instructions per unit of work (ranked)
    status: str = "ok"               # ok, skipped, not tried

    def as_json(self):
        return {"index": self.index, "seconds": self.seconds, "stats": self.stats,
                "score": self.score, "status": self.status}


# ---------------------------------------------------------------------------
# What both kinds share: choices per key, the disk cache, the table

class _Tuned:
    _returns_result = True      # False: a kernel launch, whose value is an event, not a result

    def __init__(self, name, options):
        self.__name__ = name
        self.options = options
        self.configs = options.configs     # the first list given (the only one, mostly)
        self._choices = {}                  # (profile name, key values) -> Choice
        self.best = None
        self.timed = False
        self.how = None
        self.table = []

    def configs_for(self, profile_name) -> tuple:
        """The configs tried on a device of this profile."""
        by_profile = self.options.by_profile
        configs = by_profile.get(profile_name, by_profile.get("default"))
        if configs is None:
            raise LaunchError(f"{self.__name__}: cm.autotune has no configs for device profile "
                              f"'{profile_name}' (it has {', '.join(by_profile)}; add a \"default\" list)")
        return configs

    def _select(self, key_values, profile_name, measure, rank, identity):
        """The Choice for ``key_values`` on ``profile_name``: remembered, read from disk,
        or made now by ``measure(configs)`` (timed) / ``rank(configs)`` (compiler stats).
        ``identity()``: (sources, device) for the disk key, only asked for on a miss."""
        memo = (profile_name, key_values)
        choice = self._choices.get(memo)
        if choice is None:
            choice = self._decide(key_values, self.configs_for(profile_name), measure, rank, identity)
            self._choices[memo] = choice
        self.best, self.how, self.table = dict(choice.config), choice.how, choice.table
        self.timed = choice.how == "timed"
        return choice

    def _decide(self, key_values, configs, measure, rank, identity):
        if not enabled():
            return Choice(0, configs[0], "first")
        if measure is None and rank is None:        # interpreted: nothing to time
            return Choice(0, configs[0], "first")
        disk_key = self._disk_key(key_values, *identity(), configs=configs)
        cached = _load_choice(disk_key, configs)
        if cached is not None:
            if log_enabled():
                print(format_table(self.__name__, key_values, cached), file=sys.stderr)
            return cached
        with tuning():
            rows, partial = (measure(configs) if measure is not None else rank(configs))
        choice = self._pick(rows, configs, ranked=measure is None, partial=partial)
        if not partial:     # cut short by the budget: a later process (compiled configs in
            _store_choice(disk_key, choice, self.__name__)   # the cache by then) tries again
        if log_enabled():
            print(format_table(self.__name__, key_values, choice), file=sys.stderr)
        return choice

    def _pick(self, rows, configs, ranked, partial):
        usable = [r for r in rows if r.status == "ok"]
        if not usable:
            reasons = "; ".join(f"{r.config}: {r.status}" for r in rows)
            raise LaunchError(f"{self.__name__}: every autotune config failed ({reasons})")
        if ranked:
            best = min(usable, key=lambda r: rank_key(r.stats, r.score))
        else:
            best = min(usable, key=lambda r: r.seconds)
        return Choice(best.index, configs[best.index], "ranked" if ranked else "timed",
                      rows, partial)

    def _disk_key(self, key_values, sources, device_identity, configs=None):
        from . import cache
        if not cache.enabled() or sources is None:
            return None
        parts = {"store": STORE, "name": self.__name__, "sources": sources,
                 "configs": [sorted(c.items()) for c in configs or self.configs], "key": list(self.options.key),
                 "key_values": repr(key_values), "device": device_identity, **cache.toolchain()}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()

    def _budget(self):
        if self.options.budget is not None:
            return float(self.options.budget)
        raw = os.environ.get(BUDGET_ENV, "").strip()
        try:
            return float(raw) if raw else DEFAULT_BUDGET_S
        except ValueError:
            raise ValueError(f"{BUDGET_ENV}={raw!r} is not a number of seconds") from None

    def _tune(self, attempt, what, configs, start=None, budgeted=True):
        """Run ``attempt(index, config) -> Row`` over ``configs`` within the budget
        (counted from ``start``, default now; ``budgeted`` False: every config)."""
        budget, start = self._budget() if budgeted else math.inf, start if start is not None else time.perf_counter()
        rows, partial = [], False
        from tqdm import tqdm
        with tqdm(total=len(configs), desc=f"{what} {self.__name__}", unit="config",
                  file=sys.stderr, leave=False, disable=None) as progress:
            for index, config in enumerate(configs):
                if any(r.status == "ok" for r in rows) and time.perf_counter() - start > budget:
                    partial = True
                    rows.append(Row(index, config, status="not tried (budget)"))
                    continue
                try:
                    row = attempt(index, config)
                except _Rejected as why:
                    row = self._skip(index, config, why)
                rows.append(row)
                progress.update(1)
        return rows, partial

    def _run_checked(self, run, args, restore):
        """Restore the written arguments, run once, apply ``check``; (result, launches)."""
        from .runtime.profiling import profile
        restore()
        try:
            with profile() as launched:
                result = run()
                _wait(launched)
        except Exception as exc:  # noqa: BLE001 - a config that cannot run is skipped
            raise _Rejected(f"{type(exc).__name__}: {_first_line(exc)}") from None
        if self.options.check is not None:
            try:
                verdict = self.options.check(args, result if self._returns_result else None)
            except Exception as exc:  # noqa: BLE001 - a check that raises rejects
                raise _Rejected(f"check raised {type(exc).__name__}: {_first_line(exc)}") from None
            if verdict is False or isinstance(verdict, str):
                raise _Rejected(f"check failed{': ' + verdict if isinstance(verdict, str) else ''}")
        return result, launched.launches

    def _measure(self, make_run, args, restore, configs, start):
        """Rows of timed configs.  Each config is first run once and checked, and warmed
        up; then the configs that passed are timed round-robin (one run of each in turn,
        ``repeat`` rounds, fewer once the budget is spent), so that load elsewhere on the
        machine falls on all of them alike; the median device time of each counts."""
        runs = {}

        def prepare(index, config):
            run = make_run(config)
            _, launches = self._run_checked(run, args, restore)
            if not launches:
                raise _Rejected("it launched no kernel to time")
            try:
                for _ in range(self.options.warmup):
                    run()
            except Exception as exc:  # noqa: BLE001
                raise _Rejected(f"{type(exc).__name__}: {_first_line(exc)}") from None
            runs[index] = run
            return Row(index, config, seconds=math.inf)

        rows, partial = self._tune(prepare, "timing", configs, start)
        from .runtime.profiling import profile
        times = {index: [] for index in runs}
        for round_ in range(self.options.repeat):
            if round_ and time.perf_counter() - start > self._budget():
                partial = True
                break
            for index, run in list(runs.items()):
                try:
                    with profile() as launched:
                        run()
                    times[index].append(launched.seconds)
                except Exception as exc:  # noqa: BLE001 - ran once, fails later: skipped too
                    del runs[index], times[index]
                    rows[index] = self._skip(rows[index].index, rows[index].config,
                                             f"{type(exc).__name__}: {_first_line(exc)}")
        for index, samples in times.items():
            rows[index].seconds = statistics.median(samples)
        return rows, partial

    def _skip(self, index, config, why):
        warnings.warn(f"cm.autotune {self.__name__}: config {config} skipped: {why}",
                      AutotuneWarning, stacklevel=5)
        return Row(index, config, status=f"skipped: {why}")


class _Rejected(Exception):
    """Why a config is skipped."""


def _wait(launched):
    for _, event in launched.launches:
        if hasattr(event, "wait"):
            event.wait()


def _first_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


# ---------------------------------------------------------------------------
# Over a kernel

class AutotunedKernel(_Tuned, HostLaunched):
    """A kernel whose tuned constexprs (and simd/grf) come from the chosen config."""
    _returns_result = False

    def __init__(self, kernel, options):
        super().__init__(kernel.__name__, options)
        self.kernel = kernel
        self.__doc__ = kernel.__doc__
        constexprs = [n for n, t in kernel.params if t is _constexpr()]
        tuned = [n for n in options.configs[0] if n not in KERNEL_OPTIONS]
        for name in tuned:
            if name not in constexprs:
                raise CompileError(f"cm.autotune over {kernel.__name__}: config key '{name}' is not a "
                                   f"constexpr parameter (its constexpr parameters: "
                                   f"{', '.join(constexprs) or 'none'}; kernel options: simd, grf)")
        self.tuned = tuple(tuned)
        self.launch_params = tuple(n for n, _ in kernel.params if n not in tuned)
        self._binder = launch_config.Binder(kernel.__name__, self.launch_params)
        _check_key_names(kernel.__name__, options.key, self.launch_params)
        self._variants = {}

    def __repr__(self):
        return f"<cmlang autotuned kernel {self.__name__}: {len(self.configs)} configs>"

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"launch a kernel with a grid: {self.__name__}[grid](...); the grid "
                          f"may be a function of the chosen config: {self.__name__}[lambda c: ...](...)")

    def __getitem__(self, launch):
        grid, group = _parse_launch(launch, self.__name__)
        return _TunedLaunch(self, grid, group)

    # --- one launch --------------------------------------------------------------
    def launch(self, grid, /, *args, group=None, **kwargs):
        """``k.launch(grid, *args, group=...)``: ``k[grid, cm.group(...)](...)`` as a call;
        ``grid`` and ``group`` may be functions of the chosen config."""
        return self._launch(grid, group, self._binder.bind(args, kwargs))

    def _launch(self, grid, group, args):
        choice = self.choose(grid, group, args)
        return self._launch_config(choice.config, grid, group, args)

    def choose(self, grid, group, args, device=None, target="spirv"):
        """The Choice for these launch arguments (tuning on a miss).  ``target``: the
        flavour whose compiler stats rank the configs on a compile-only profile (a
        choice per flavour there: spirv-vc code of a shape may spill where SIMT does not)."""
        key_values = _key_values(self.options.key, self.launch_params, args)
        here = _current_profile()
        target_profile = get_profile(device) if device else tuning_profile()
        runs_here = target_profile.name == here.name
        flavour = "" if runs_here or target == "spirv" else target     # "" keeps the SIMT keys
        interpreted = self.kernel.interpret or os.environ.get("CMLANG_INTERPRET", "") not in ("", "0")
        measure = rank = None
        if runs_here and not interpreted:
            measure = lambda configs: self._measure_all(grid, group, args, configs)   # noqa: E731
        elif not runs_here:
            if not target_profile.native_device:
                raise LaunchError(f"{self.__name__}: cannot tune for device profile "
                                  f"'{target_profile.name}': it is not the device launches run on "
                                  f"and Intel's compiler has no build for it")
            rank = lambda configs: self._rank_all(grid, args, target_profile, configs, target)   # noqa: E731
        where = target_profile.name + (f"/{flavour}" if flavour else "")
        return self._select(key_values, where, measure, rank,
                            lambda: (_kernel_sources(self.kernel),
                                     _device_identity(target_profile, runs_here, flavour)))

    def _launch_config(self, config, grid, group, args):
        grid, group = _resolve(grid, config), _resolve(group, config)
        if isinstance(group, launch_config.group):
            group = group.dims
        return launch_kernel(self._variant(config), grid, group, self._full_args(config, args))

    def _full_args(self, config, args):
        given = dict(zip(self.launch_params, args))
        return tuple(config[n] if n in self.tuned else given[n] for n, _ in self.kernel.params)

    def _variant(self, config):
        """The kernel with the config's simd/grf (the decorated one when it gives none)."""
        options = {k: config[k] for k in KERNEL_OPTIONS if k in config}
        if not options or all(getattr(self.kernel, k, None) == v for k, v in options.items()):
            return self.kernel
        key = tuple(sorted(options.items()))
        variant = self._variants.get(key)
        if variant is None:
            variant = self._variants[key] = _kernel_variant(self.kernel, **options)
        return variant

    # --- timing on the device ---------------------------------------------------------
    def _measure_all(self, grid, group, args, configs):
        start = time.perf_counter()         # compiling counts against the budget too
        restore = _Snapshot(self._written_args(args, configs))
        try:
            return self._measure(lambda c: lambda: self._launch_config(c, grid, group, args),
                                 args, restore, configs, start)
        finally:
            restore()       # the caller's launch starts from its own inputs

    def _written_args(self, args, configs):
        """The array arguments some config's kernel writes (from the compiler's buffer
        analysis; a config that does not compile writes nothing)."""
        written = set()
        for config in configs:
            try:
                binary = self._specialization(config, args).binary
            except Exception:  # noqa: BLE001 - reported when the config is timed
                continue
            written |= {p.name for p in binary.params if p.writes}
        return [a for n, a in zip(self.launch_params, args) if n in written]

    def _specialization(self, config, args, target="spirv", profile=None):
        variant = self._variant(config)
        key, _ = variant._split_args(self._full_args(config, args))
        return variant.specialization(key, target, profile or _current_profile())

    # --- ranking by Intel's compiler -----------------------------------------------------
    def _rank_all(self, grid, args, profile, configs, target="spirv"):
        def attempt(index, config):
            try:
                stats = native_stats(self._variant(config), self._full_args(config, args),
                                     profile.native_device, target)
            except Exception as exc:  # noqa: BLE001 - a config IGC rejects is skipped
                raise _Rejected(f"{type(exc).__name__}: {_first_line(exc)}") from None
            return Row(index, config, stats=dict(stats),
                       score=instructions_per_work(stats, config, self.options.work, grid))
        # Every config is ranked, whatever the budget: IGC's stats do not depend on the clock,
        # so a loaded machine must choose as a quiet one does (the builds are cached).
        return self._tune(attempt, f"ranking for {profile.name}", configs, budgeted=False)


class _TunedLaunch:
    __slots__ = ("kernel", "grid", "group")

    def __init__(self, kernel, grid, group):
        self.kernel, self.grid, self.group = kernel, grid, group

    def __call__(self, *args, **kwargs):
        return self.kernel._launch(self.grid, self.group, self.kernel._binder.bind(args, kwargs))

    def tune(self, *args, device=None, target="spirv", **kwargs):
        """Choose (or recall) the config for these arguments without launching;
        ``device`` names a device profile (a compile-only one ranks by compiler stats of
        ``target``'s code)."""
        args = self.kernel._binder.bind(args, kwargs)
        return dict(self.kernel.choose(self.grid, self.group, args, device, target).config)


# ---------------------------------------------------------------------------
# Over a host function

class AutotunedFunction(_Tuned):
    """A host function called with the chosen config's keyword arguments."""

    def __init__(self, fn, options):
        super().__init__(getattr(fn, "__name__", "function"), options)
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self.signature = inspect.signature(fn)
        params = self.signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for name in options.configs[0]:
            if name not in params and not takes_any:
                raise CompileError(f"cm.autotune over {self.__name__}: config key '{name}' is not "
                                   f"a parameter of the function")
        self.launch_params = tuple(n for n in params if n not in options.configs[0])
        _check_key_names(self.__name__, options.key, self.launch_params)

    def __repr__(self):
        return f"<cmlang autotuned function {self.__name__}: {len(self.configs)} configs>"

    def __call__(self, *args, **kwargs):
        choice = self.choose(args, kwargs)
        return self.fn(*args, **kwargs, **choice.config)

    def choose(self, args, kwargs):
        bound = self.signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        named = dict(bound.arguments)
        key_values = _key_values(self.options.key, tuple(named), tuple(named.values()))
        profile = _current_profile()
        measure = None
        elsewhere = tuning_profile().name
        if elsewhere != profile.name:
            # What a host function launches is known only by running it: it cannot be
            # ranked for another device by compiler stats.
            warnings.warn(f"cm.autotune {self.__name__}: a host function is tuned only on the "
                          f"device it runs on, not for the {elsewhere} profile; first config taken",
                          AutotuneWarning, stacklevel=3)
        elif os.environ.get("CMLANG_INTERPRET", "") in ("", "0"):
            measure = lambda configs: self._measure_all(args, kwargs, named, configs)  # noqa: E731
        return self._select(key_values, profile.name, measure, None,
                            lambda: (_function_sources(self.fn), _device_identity(profile, True)))

    def _measure_all(self, args, kwargs, named, configs):
        names = self.options.restore
        arrays = [v for n, v in named.items() if names is None or n in names]
        restore = _Snapshot([a for a in arrays if _is_array(a)])
        try:
            return self._measure(lambda c: lambda: self.fn(*args, **kwargs, **c), args, restore,
                                 configs, time.perf_counter())
        finally:
            restore()


# ---------------------------------------------------------------------------
# Ranking by compiler stats

def native_stats(kernel, args, device, target="spirv") -> dict:
    """Intel's compiler's stats of one specialization built for ``device`` (an ocloc
    ``-device`` name): ``instructions``, ``spill_bytes``, ``grf``, ``dpas``, ...

    The one place the tuner asks for them (``k.compile(..., device=).stats``)."""
    compiled = kernel.compile(*args, target=target, device=device)
    stats = getattr(compiled, "stats", None)
    if stats is None:
        raise CompileError(f"{kernel.__name__}: this cmlang cannot build with Intel's GPU "
                           f"compiler, so configs for '{device}' cannot be ranked")
    return stats


def instructions_per_work(stats, config, work=None, grid=None) -> float:
    """Instructions per unit of useful work: ``work(config)`` per CM thread when given,
    else every CM thread of the grid counts alike (instructions x CM threads)."""
    instructions = float(stats["instructions"])
    if work is not None:
        amount = float(work(config))
        if amount <= 0:
            raise _Rejected(f"work({config}) is {amount}, not positive")
        return instructions / amount
    threads = math.prod(_dims(_resolve(grid, config))) if grid is not None else 1
    return instructions * threads


def rank_key(stats, score):
    """Sort key of a ranked config: no spill first, then fewest instructions per work."""
    return (stats.get("spill_bytes", 0) > 0, score, stats.get("spill_bytes", 0))


def _dims(grid):
    return tuple(grid) if isinstance(grid, (tuple, list)) else (grid,)


# ---------------------------------------------------------------------------
# Launching: the one place a tuned config reaches a kernel

def launch_kernel(kernel, grid, group, args):
    return kernel.launch(grid, *args, group=group)


def _parse_launch(config, name):
    """``k[grid]`` / ``k[grid, cm.group(...)]``, where the grid (or the group) may be a
    function of the chosen config; anything else as every kernel parses it."""
    parts = config if isinstance(config, tuple) else (config,)
    if not any(callable(p) for p in parts):
        return launch_config.parse(config, name)
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2 and (callable(parts[1]) or isinstance(parts[1], launch_config.group)):
        return parts
    raise LaunchError(f"{name}[{config!r}]: with a function of the config the launch is "
                      f"k[lambda config: grid] or k[lambda config: grid, cm.group(...)]")


def _kernel_variant(kernel, **options):
    """The same kernel function with other kernel options (simd, grf)."""
    accepted = inspect.signature(Kernel.__init__).parameters
    made = Kernel(kernel.fn, **{k: v for k, v in options.items() if k in accepted},
                  **({"interpret": kernel.interpret} if "interpret" in accepted else {}))
    for name, value in options.items():
        if name not in accepted:
            setattr(made, name, value)      # read where the kernel is built (grf: Intel's compiler)
    return made


def _resolve(value, config):
    return value(dict(config)) if callable(value) else value


# ---------------------------------------------------------------------------
# Arguments: binding, keys, restoring what is written

def _check_key_names(name, key, params):
    unknown = [k for k in key if k not in params]
    if unknown:
        raise CompileError(f"cm.autotune over {name}: key {', '.join(map(repr, unknown))} is not an "
                           f"argument (arguments: {', '.join(params)})")


def _key_values(key, params, args):
    """The named key arguments' values, then the element types of all arguments (as
    Triton's autotuner keys on every tensor's dtype): a choice made for f32 operands never
    serves bf16 ones, whose registers and products differ."""
    given = dict(zip(params, args))
    listed = tuple(_key_value(given.get(k)) for k in key)
    types = tuple(t for t in map(_element_type, args) if t is not None)
    return listed + (("types",) + types,) if types else listed


def _element_type(value):
    """An array's dtype, or an element type given as an argument (cm.bf16 to a constexpr)."""
    from .types import ScalarType
    if isinstance(value, ScalarType):
        return str(value)
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    try:
        return str(np.dtype(dtype))
    except TypeError:
        return str(dtype)


def _key_value(value):
    """What of an argument picks a choice: an array's shape and dtype, a number's value."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return ("array", tuple(int(n) for n in value.shape), str(np.dtype(value.dtype)))
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    return repr(value)


def _is_array(value):
    from .runtime.arrays import DeviceArray
    return isinstance(value, (np.ndarray, DeviceArray))


class _Snapshot:
    """Copies of arrays, written back on call (numpy arrays and DeviceArrays)."""

    def __init__(self, arrays):
        from .runtime.arrays import DeviceArray
        self.saved = []
        for a in arrays:
            if isinstance(a, np.ndarray) and a.flags.writeable:
                self.saved.append((a, a.copy()))
            elif isinstance(a, DeviceArray):
                self.saved.append((a, a.numpy()))

    def __call__(self):
        for array, copy in self.saved:
            if isinstance(array, np.ndarray):
                array[...] = copy
            else:
                array.device.copy_from_host(array.buffer, copy)


# ---------------------------------------------------------------------------
# The disk cache of choices

def enabled() -> bool:
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def log_enabled() -> bool:
    return os.environ.get(LOG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _constexpr():
    from .types import constexpr
    return constexpr


def _kernel_sources(kernel):
    return _sources(kernel.fn, {"simd": kernel.simd, "params": [[n, str(t)] for n, t in kernel.params]})


def _function_sources(fn):
    return _sources(fn, {})


def _sources(fn, extra):
    """What the speed of a choice depends on in Python: the source of ``fn`` and of every
    function, ``@cm.func`` and kernel it names (recursively), and the plain constants they
    name (globals, closure values); None when a source cannot be read (a REPL): such
    choices live in memory only.  Attributes of modules are not followed."""
    from . import reads
    found, pending, seen = dict(extra), [fn], set()
    while pending:
        f = pending.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        try:
            found[f"{f.__module__}.{f.__qualname__}"] = reads.function_identity(f)
        except (OSError, TypeError):
            return None
        for name, value in _names_read(f):
            inner = _python_function(value)
            if inner is not None:
                pending.append(inner)
            elif _is_plain(value):
                found[f"{f.__qualname__}:{name}"] = repr(value)
    return found


def _names_read(fn):
    """(name, value) of the globals and closure variables ``fn``'s code names."""
    scope = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    for name in sorted(_code_names(fn.__code__)):
        if name in scope:
            try:
                yield name, scope[name].cell_contents
            except ValueError:       # an empty cell
                pass
        elif name in fn.__globals__:
            yield name, fn.__globals__[name]


def _code_names(code) -> set:
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if hasattr(const, "co_names"):       # nested functions, comprehensions
            names |= _code_names(const)
    return names


def _python_function(value):
    """The Python function behind a kernel, tuned kernel or function, ``@cm.func``, or a
    plain function; None for anything else."""
    if isinstance(value, AutotunedKernel):
        value = value.kernel
    fn = value if inspect.isfunction(value) else getattr(value, "fn", None)
    return fn if inspect.isfunction(fn) else None


def _is_plain(value) -> bool:
    from .types import PtrType, ScalarType, VectorType
    if isinstance(value, (bool, int, float, complex, str, bytes, type(None), np.generic,
                          ScalarType, VectorType, PtrType)):
        return True
    if isinstance(value, (tuple, list, frozenset)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


def _device_identity(profile, runs_here, flavour=""):
    """The device a choice is for: the one launches run on, or a profile ranked by IGC
    (with the flavour ranked, where not SIMT)."""
    identity = {"profile": profile.name, "profile_key": profile.key()}
    if flavour:
        identity["target"] = flavour
    if runs_here:
        from .runtime.device import get_device
        device = get_device()
        identity.update(name=device.name, platform=device.platform, kind=device.kind,
                        driver=getattr(getattr(device, "cl_device", None), "driver_version", ""))
    else:
        identity["compiler"] = _native_compiler_identity()
    return identity


def _native_compiler_identity():
    try:
        from cmlang.codegen.intel_gpu import compiler_version
        return compiler_version()
    except Exception:  # noqa: BLE001 - not merged yet, or no ocloc: ranking says why
        return ""


def _load_choice(disk_key, configs):
    if disk_key is None:
        return None
    from . import cache
    sections = cache.read_entry(cache.entry_path(STORE, disk_key))
    if sections is None:
        return None
    try:
        stored = json.loads(sections["choice"])
        index = stored["index"]
        if _jsonable(configs[index]) != stored["config"]:
            return None
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    rows = [Row(r["index"], configs[r["index"]], r["seconds"], r["stats"], r["score"], r["status"])
            for r in stored.get("table", [])]
    return Choice(index, configs[index], "cached", rows, stored.get("partial", False))


def _store_choice(disk_key, choice, name):
    if disk_key is None:
        return
    from . import cache
    record = {"name": name, "index": choice.index, "config": _jsonable(choice.config),
              "chosen_by": choice.how, "partial": choice.partial, "created": time.time(),
              "table": [r.as_json() for r in choice.table]}
    cache.write_entry(cache.entry_path(STORE, disk_key),
                      {"choice": json.dumps(record, default=repr).encode()})


def _jsonable(config):
    return json.loads(json.dumps(config, default=repr))


# ---------------------------------------------------------------------------
# The table (CMLANG_AUTOTUNE_LOG=1)

def format_table(name, key_values, choice) -> str:
    ranked = any(row.stats is not None for row in choice.table)
    title = (f"cm.autotune {name} key={key_values}: "
             f"{'ranked by compiler stats, not timed' if ranked else 'timed on the device'}"
             f"{' (budget spent: not every config tried)' if choice.partial else ''}"
             f"{' (the choice of an earlier process, from the disk cache)' if choice.how == 'cached' else ''}")
    lines = [title]
    for row in choice.table:
        mark = "*" if row.index == choice.index else " "
        if row.status != "ok":
            measure = row.status
        elif ranked:
            s = row.stats
            measure = (f"spill {s.get('spill_bytes', 0)} B, {s.get('instructions')} instructions, "
                       f"{row.score:.4g} per work")
        else:
            measure = f"{row.seconds * 1e3:.3f} ms"
        lines.append(f" {mark} {row.config}  {measure}")
    return "\n".join(lines)


def _normalize_configs(configs) -> dict:
    """{device profile name or "default": tuple of config dicts}; a plain list is the default."""
    if isinstance(configs, dict):
        if not configs:
            raise CompileError("cm.autotune needs at least one config")
        from .runtime.profiles import PROFILES
        unknown = [name for name in configs if name not in PROFILES and name != "default"]
        if unknown:
            raise CompileError(f"cm.autotune: configs for {', '.join(map(repr, unknown))}: not a device "
                               f"profile (profiles: {', '.join(PROFILES)}, or \"default\")")
        by_profile = {name: _config_list(listed, f" for '{name}'") for name, listed in configs.items()}
    else:
        by_profile = {"default": _config_list(configs, "")}
    lists = list(by_profile.values())
    for listed in lists[1:]:
        if _tuned_names(listed[0]) != _tuned_names(lists[0][0]):
            raise CompileError(f"cm.autotune: every config must name the same parameters; "
                               f"{_tuned_names(listed[0])} differs from {_tuned_names(lists[0][0])}")
    return by_profile


def _tuned_names(config):             # kernel options may be left to the kernel's own
    return sorted(set(config) - set(KERNEL_OPTIONS))


def _config_list(configs, where) -> tuple:
    configs = tuple(dict(c) for c in (configs or ()))
    if not configs:
        raise CompileError(f"cm.autotune needs at least one config{where}")
    for c in configs[1:]:
        if _tuned_names(c) != _tuned_names(configs[0]):
            raise CompileError(f"cm.autotune: every config must name the same parameters; "
                               f"{_tuned_names(c)} differs from {_tuned_names(configs[0])}")
    for c in configs:
        if "simd" in c and c["simd"] not in (8, 16, 32):
            raise CompileError(f"cm.autotune: simd must be 8, 16 or 32, got {c['simd']!r} in {c}")
    return configs
