"""``cmlang isa``: what Intel's GPU compiler makes of every kernel the benchmarks launch.

The specializations are not listed by hand: each benchmark workload's cmlang
implementations run once per device at the chosen size (``quick`` by default), planning
for that device's profile (``cmlang.runtime.profiles.planning_for``), while every
specialization they ask for is recorded (kernel, constexpr values, simd): tile shapes chosen per device (by
``cm.autotune``, ranked by Intel's compiler, or by host code reading
``cmlang.autotuning.tuning_profile()``) are the ones built for it.  Each is then
compiled to SPIR-V for every target asked for and built by ``ocloc`` for every device
(cmlang.codegen.intel_gpu; the ocloc runs go in parallel, each a process of its own).
One row per (specialization, target, device): IGC's instruction count, spill bytes,
GRF mode, dpas instructions and 2-D block messages.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from .autotuning import in_tuning
from .runtime.profiles import device_choice

STATS_COLUMNS = ("instructions", "spill_bytes", "grf", "dpas", "block2d", "messages")


@dataclass(frozen=True)
class Specialization:
    kernel: object          # cmlang Kernel
    key: tuple              # its constexpr key (Kernel._split_args)
    workload: str
    device: str | None = None     # recorded while planning for this device only (None: all)
    surfaces: tuple = ()          # block ops whose surfaces the launch proved (Kernel.proven_surfaces)

    @property
    def name(self) -> str:
        return self.kernel.__name__

    def constexprs(self) -> dict:
        return self.kernel._constexpr_dict(self.key)

    def argument_types(self) -> list:
        return [str(t) for _, t in self.kernel.param_types(self.key)]


@dataclass
class Row:
    kernel: str
    constexprs: dict
    argument_types: list
    target: str
    device: str
    workload: str
    simd: int = 16
    instructions: int | None = None
    spill_bytes: int | None = None
    grf: int | None = None
    dpas: int | None = None
    block2d: int | None = None
    messages: int | None = None
    error: str = ""
    seconds: float | None = None    # wall time of this build (ocloc; ~0 on a cache hit)


@contextlib.contextmanager
def recording():
    """Record every kernel specialization asked for while the block runs:
    yields a list of (Kernel, constexpr key, proven surfaces), each once, in first-use order."""
    from .kernel import Kernel
    seen, found = set(), []
    original = Kernel.specialization

    def specialization(self, key=(), target="spirv", *rest, **options):
        surfaces = options.get("surfaces", rest[2] if len(rest) > 2 else ())
        ident = (self.fn, self.simd, key, surfaces)
        if ident not in seen and not in_tuning():     # an autotuner's trials are not the program
            seen.add(ident)
            found.append((self, key, surfaces))
        return original(self, key, target, *rest, **options)

    Kernel.specialization = specialization
    try:
        yield found
    finally:
        Kernel.specialization = original


def launched_specializations(names=(), size="quick", report=print, devices=None) -> list:
    """Every specialization the cmlang implementations of the named benchmarks (all
    when none) launch at ``size``; one run of each on the current device.  With
    ``devices``, one run per device while host code plans for that device's profile
    (``planning_for``: per-device tiles and element types); a specialization that not
    every device's run launched is built for its devices only."""
    from . import bench as harness
    from .runtime import get_device
    from .runtime.profiles import planning_for, device_choice
    device = get_device()
    plans = list(devices) if devices else [None]
    launched = {}                                   # ident -> (Specialization, devices that launched it)
    for plan in plans:
        context = planning_for(device_choice(plan)[0]) if plan else contextlib.nullcontext()
        with context:
            for b in harness.select(harness.load_benchmarks(report=report), list(names)):
                params = b.sizes[size]
                inputs = b.make_inputs(params, np.random.default_rng(0))
                for impl, setup in b.implementations.items():
                    if not impl.startswith("cmlang"):
                        continue
                    with recording() as found:
                        try:
                            setup(inputs, device).run()
                        except harness.Skip as exc:
                            report(f"skipped {b.name} {impl}: {exc}")
                    for kernel, key, surfaces in found:
                        ident = (kernel.fn, kernel.simd, key, surfaces)
                        if ident not in launched:
                            launched[ident] = (Specialization(kernel, key, b.name, surfaces=surfaces), [])
                        launched[ident][1].append(plan)
    out = []
    for spec, planned in launched.values():
        if len(planned) == len(plans):
            out.append(spec)
        else:
            out += [Specialization(spec.kernel, spec.key, spec.workload, plan, spec.surfaces) for plan in planned]
    return out


def build_rows(specs, devices, targets, progress=True, workers=None) -> list:
    """IGC's stats for every (specialization, target, device); an error becomes a row
    with ``error`` set.  SPIR-V compiles here (LLVM is one per process); the ocloc
    builds run ``workers`` at a time."""
    from .codegen.intel_gpu import build_native, find_ocloc
    from .errors import CompileError
    find_ocloc()                          # no compiler: one clear error, before any work
    jobs = [(spec, target, device) for spec in specs for target in targets for device in devices
            if spec.device in (None, device)]
    bar = _progress_bar(len(jobs), progress)
    rows = [Row(spec.name, _jsonable(spec.constexprs()), spec.argument_types(), target, device,
                spec.workload, spec.kernel.simd) for spec, target, device in jobs]

    def build(index, spirv, name):
        spec, target, device = jobs[index]
        row = rows[index]
        start = time.perf_counter()
        try:
            stats = build_native(spirv, name, device, target, getattr(spec.kernel, "grf", 128)).stats
            for column in STATS_COLUMNS:
                setattr(row, column, stats[column])
        except CompileError as exc:
            row.error = str(exc)
        row.seconds = round(time.perf_counter() - start, 3)
        bar.update(1)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        futures = []
        for index, (spec, target, device) in enumerate(jobs):
            try:
                ck = spec.kernel.specialization(spec.key, target, device_choice(device)[0],
                                                surfaces=spec.surfaces)
            except CompileError as exc:
                rows[index].error = f"cmlang: {exc}"
                bar.update(1)
                continue
            futures.append(pool.submit(build, index, ck.spirv, ck.binary.name))
        for future in futures:
            future.result()
    bar.close()
    return rows


def _progress_bar(total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, file=sys.stderr, desc="ocloc", unit="build", disable=not enabled,
                leave=False)


def _jsonable(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def format_table(rows) -> str:
    """A markdown table, one row per build."""
    header = ("kernel", "constexprs", "arguments", "target", "device", "instructions",
              "spill bytes", "GRF", "dpas", "2-D block")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        constexprs = _describe_options(r)
        args = ", ".join(r.argument_types)
        if r.error:
            cells = (r.kernel, constexprs, args, r.target, r.device,
                     "**rejected**: " + r.error.splitlines()[-1][:120].replace("|", "/"), "", "", "", "")
        else:
            cells = (r.kernel, constexprs, args, r.target, r.device, r.instructions,
                     r.spill_bytes, r.grf, r.dpas, r.block2d)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _describe_options(row) -> str:
    """The constexpr values, and the sub-group size where it is not the usual 16."""
    parts = [f"{k}={v}" for k, v in row.constexprs.items()] + ([f"simd={row.simd}"] if row.simd != 16 else [])
    return ", ".join(parts) or "-"


def format_grid(rows) -> str:
    """A markdown table with one line per specialization (with the benchmark that first
    launched it) and a column per (target, device): "instructions / spill bytes", plus
    GRF, dpas and 2-D block counts where they are not 128, 0 and 0."""
    present = {(r.target, r.device) for r in rows}      # targets, then devices, in the order asked
    columns = [(t, d) for t in dict.fromkeys(r.target for r in rows)
               for d in dict.fromkeys(r.device for r in rows) if (t, d) in present]
    lines, cells = {}, {}
    for r in rows:
        ident = (r.kernel, json.dumps(r.constexprs, default=str), tuple(r.argument_types), r.simd)
        lines.setdefault(ident, r)
        if r.error:
            text = "rejected"
        else:
            text = f"{r.instructions} / {r.spill_bytes}"
            extras = [f"GRF {r.grf}" if r.grf != 128 else "", f"dpas {r.dpas}" if r.dpas else "",
                      f"2-D {r.block2d}" if r.block2d else ""]
            text += "".join(f"; {e}" for e in extras if e)
        cells[ident, r.target, r.device] = text
    header = ["workload", "kernel", "constexprs"] + [f"{t} {d}" for t, d in columns]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ident, r in lines.items():
        constexprs = _describe_options(r)
        out.append("| " + " | ".join([r.workload, r.kernel, constexprs] + [cells.get((ident, t, d), "")
                                                                 for t, d in columns]) + " |")
    return "\n".join(out)


def summary(rows, seconds) -> str:
    built = [r for r in rows if not r.error]
    spilling = [r for r in built if r.spill_bytes]
    worst = max(built, key=lambda r: r.spill_bytes, default=None)
    text = (f"{len(built)} of {len(rows)} builds succeeded; {len(spilling)} spill"
            + (f" (most: {worst.kernel} {worst.target} {worst.device}, {worst.spill_bytes} bytes)"
               if spilling else "")
            + f"; {sum(1 for r in built if r.dpas)} use dpas, "
              f"{sum(1 for r in built if r.block2d)} use 2-D block messages; {seconds:.1f} s")
    return text


def write_json(rows, path) -> None:
    with open(path, "w") as f:
        json.dump([asdict(r) for r in rows], f, indent=1)


def run_command(args) -> int:
    """``cmlang isa [NAME...] --device pvc,dg2 [--target ...] [--json F] [--size S]``."""
    from .codegen.intel_gpu import compiler_version, describe_compiler
    devices = _split_list(args.device)
    targets = _split_list(args.target)
    start = time.perf_counter()
    notes = []
    specs = launched_specializations(args.names, args.size, report=notes.append, devices=devices)
    rows = build_rows(specs, devices, targets, progress=not args.quiet, workers=args.jobs)
    seconds = time.perf_counter() - start
    print(f"Intel GPU code ({describe_compiler(compiler_version())}), "
          f"{len({(s.kernel.fn, s.kernel.simd, s.key) for s in specs})} specializations launched at "
          f"size {args.size}:")
    print(format_grid(rows) if args.grid else format_table(rows))
    print(summary(rows, seconds))
    for note in dict.fromkeys(notes):      # each device's run reports the same skips
        print(note)
    if args.json:
        write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 1 if any(r.error for r in rows) else 0


def _split_list(text) -> list:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="benchmarks (or groups) whose kernels to build; all by default")
    parser.add_argument("--device", default="pvc,dg2",
                        help="ocloc -device names, comma separated (default pvc,dg2)")
    parser.add_argument("--target", default="spirv,spirv-vc",
                        help="cmlang targets, comma separated (default spirv,spirv-vc)")
    parser.add_argument("--size", default="quick", choices=("tiny", "quick", "full"),
                        help="the benchmark size whose launches are recorded (default quick)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON records")
    parser.add_argument("-j", "--jobs", type=int, help="ocloc builds at a time (default: CPUs)")
    parser.add_argument("--grid", action="store_true",
                        help="one line per specialization, a column per target and device")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
