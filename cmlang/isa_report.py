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
GRF mode, dpas instructions and 2-D block messages, and the same counts in the kernel's
hot loop (``hot_loop``), so that a row says how many instructions the loop spends per dpas.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
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
    loop_instructions: int | None = None   # the hot loop's (hot_loop; None: the kernel has no loop)
    loop_dpas: int | None = None
    loop_block2d: int | None = None
    loop_path_instructions: int | None = None   # along its shortest pass (HotLoop.path_*)
    loop_path_dpas: int | None = None
    error: str = ""
    seconds: float | None = None    # wall time of this build (ocloc; ~0 on a cache hit)


# IGC's listing opens each basic block with a comment naming its predecessors and successors:
#   // B004: Preds:{B007, B003},  Succs:{B005, B006}
# (SIMT and vector-compute listings alike, IGC 1.0.12504; "[inDivergent]" may precede Preds).
_BLOCK_HEADER = re.compile(r"^//\s*B(\d+):.*?Preds:\{([^}]*)\}.*?Succs:\{([^}]*)\}")


@dataclass(frozen=True)
class HotLoop:
    """The hot loop of a kernel's ISA (``hot_loop``): counts over its whole body, and over
    its shortest pass (``path_*``)."""
    instructions: int
    dpas: int
    block2d: int
    blocks: int                 # basic blocks in the loop
    path_instructions: int
    path_dpas: int
    path_block2d: int

    @property
    def instructions_per_dpas(self) -> float | None:
        return self.instructions / self.dpas if self.dpas else None

    @property
    def path_instructions_per_dpas(self) -> float | None:
        return self.path_instructions / self.path_dpas if self.path_dpas else None


def _basic_blocks(isa: str) -> list:
    """[(name, successors, instruction lines)] in listing order, from IGC's block comments;
    lines before the first block (none in IGC's listings) are left out."""
    blocks = []
    for line in isa.splitlines():
        header = _BLOCK_HEADER.match(line.strip())
        if header:
            successors = [f"B{int(n[1:])}" for n in re.findall(r"B\d+", header.group(3))]
            blocks.append((f"B{int(header.group(1))}", successors, []))
        elif blocks:
            blocks[-1][2].append(line)
    return blocks


def _immediate_dominators(entry, successors, predecessors) -> dict:
    """{block: its immediate dominator} of the blocks reachable from ``entry`` (the entry
    its own), by Cooper, Harvey and Kennedy's iteration over the reverse postorder."""
    order, seen, stack = [], {entry}, [(entry, iter(successors[entry]))]
    while stack:                                   # postorder, without recursion
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            order.append(node)
            stack.pop()
        elif child not in seen:
            seen.add(child)
            stack.append((child, iter(successors[child])))
    order.reverse()
    rank = {name: i for i, name in enumerate(order)}
    idom = {entry: entry}

    def intersect(a, b):
        while a != b:
            while rank[a] > rank[b]:
                a = idom[a]
            while rank[b] > rank[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for node in order[1:]:
            done = [p for p in predecessors[node] if p in idom]
            new = done[0]
            for p in done[1:]:
                new = intersect(p, new)
            if idom.get(node) != new:
                idom[node] = new
                changed = True
    return idom


def hot_loop(isa: str) -> HotLoop | None:
    """The hot loop of an IGC ``.asm`` listing (``ck.isa``), or None where it has no loop.

    The listing's basic blocks and edges are IGC's own (the ``// Bnnn: Preds:{..}, Succs:{..}``
    comment opening each block).  A loop is a backward edge, from a block to one at or
    before it in the listing that dominates it (its header; IGC lays a loop out from its
    header down to the branch back; a subroutine's return to the block after its call is
    no loop); its body is the header and every block that reaches the branching block
    without passing through the header (the natural loop; back edges to one header make one
    loop).  The hot loop is the loop with the most dpas instructions, and of those the
    smallest (fewest instructions): the innermost loop around the products, the one the
    kernel's time goes to.

    ``instructions`` are the instruction lines of its body, every path counted once (code
    a run never takes, such as a fallback, counts too); ``dpas`` and ``block2d`` count those
    opcodes among them (intel_gpu.opcodes).  ``path_*`` count the same along the shortest
    pass through the loop: from the header to a block branching back to it, forward edges
    only, with the fewest instructions -- what one iteration runs at least (where a branch
    chooses between block messages and their fallback, mostly the messages' side; not
    where the fallback is shorter, as for 32-bit blocks read by halves and shuffles).  "Instructions per
    dpas" is instructions / dpas of either."""
    from .codegen.intel_gpu import _BLOCK2D as block_opcodes, opcodes
    blocks = _basic_blocks(isa)
    position = {name: i for i, (name, _, _) in enumerate(blocks)}
    successors = {name: [s for s in succ if s in position] for name, succ, _ in blocks}
    predecessors = {name: [] for name in position}
    for name in position:
        for s in successors[name]:
            predecessors[s].append(name)
    dominator = _immediate_dominators(blocks[0][0], successors, predecessors) if blocks else {}

    def dominates(a, b):
        while b != a and dominator.get(b, b) != b:
            b = dominator[b]
        return a == b

    bodies = {}                                    # header -> body (set of block names)
    for name in position:
        for header in successors[name]:
            if position[header] <= position[name] and name in dominator and dominates(header, name):
                body = bodies.setdefault(header, {header})
                work = [name]
                while work:
                    b = work.pop()
                    if b not in body:
                        body.add(b)
                        work.extend(predecessors[b])
    if not bodies:
        return None
    counts = {}                                    # block -> (instructions, dpas, block2d)
    for name, _, text in blocks:
        ops = list(opcodes("\n".join(text)))
        counts[name] = (len(ops), sum(op.startswith("dpas") for op in ops),
                        sum(op in block_opcodes for op in ops))

    def shortest_pass(header, body):
        best = {header: counts[header]}            # forward edges go down the listing
        ends = []
        for name in sorted(body, key=position.get):
            if name not in best:
                continue
            for s in successors[name]:
                if s == header:
                    ends.append(best[name])
                elif s in body and position[s] > position[name]:
                    via = tuple(a + b for a, b in zip(best[name], counts[s]))
                    if s not in best or via[0] < best[s][0]:
                        best[s] = via
        return min(ends)

    loops = []
    for header, body in bodies.items():
        total = [sum(counts[name][k] for name in body) for k in range(3)]
        loops.append(HotLoop(*total, len(body), *shortest_pass(header, body)))
    return max(loops, key=lambda loop: (loop.dpas, -loop.instructions))


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
            build = build_native(spirv, name, device, target, getattr(spec.kernel, "grf", 128))
            for column in STATS_COLUMNS:
                setattr(row, column, build.stats[column])
            loop = hot_loop(build.isa)
            if loop is not None:
                row.loop_instructions, row.loop_dpas, row.loop_block2d = loop.instructions, loop.dpas, loop.block2d
                row.loop_path_instructions, row.loop_path_dpas = loop.path_instructions, loop.path_dpas
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
    """Constexpr values as JSON takes them: tuples as lists, element types (cm.bf16...) by name."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    return {k: plain(v) for k, v in values.items()}


def _per_dpas(instructions, dpas) -> str:
    """" (N per dpas)" where there are dpas."""
    return f" ({instructions / dpas:.1f} per dpas)" if dpas else ""


def _loop_cell(r) -> str:
    """The hot loop's "instructions / dpas / 2-D block" (per dpas) and its shortest pass's
    "instructions / dpas" (per dpas); "-" without a loop."""
    if r.loop_instructions is None:
        return "-"
    return (f"{r.loop_instructions} / {r.loop_dpas} / {r.loop_block2d}{_per_dpas(r.loop_instructions, r.loop_dpas)}"
            f"; pass {r.loop_path_instructions} / {r.loop_path_dpas}"
            f"{_per_dpas(r.loop_path_instructions, r.loop_path_dpas)}")


def format_table(rows) -> str:
    """A markdown table, one row per build."""
    header = ("kernel", "constexprs", "arguments", "target", "device", "instructions",
              "spill bytes", "GRF", "dpas", "2-D block", "hot loop: instructions / dpas / 2-D block")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        constexprs = _describe_options(r)
        args = ", ".join(r.argument_types)
        if r.error:
            cells = (r.kernel, constexprs, args, r.target, r.device,
                     "**rejected**: " + r.error.splitlines()[-1][:120].replace("|", "/"), "", "", "", "", "")
        else:
            cells = (r.kernel, constexprs, args, r.target, r.device, r.instructions,
                     r.spill_bytes, r.grf, r.dpas, r.block2d, _loop_cell(r))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _describe_options(row) -> str:
    """The constexpr values, and the sub-group size where it is not the usual 16."""
    parts = [f"{k}={v}" for k, v in row.constexprs.items()] + ([f"simd={row.simd}"] if row.simd != 16 else [])
    return ", ".join(parts) or "-"


def format_grid(rows) -> str:
    """A markdown table with one line per specialization (with the benchmark that first
    launched it) and a column per (target, device): "instructions / spill bytes", plus
    GRF, dpas and 2-D block counts where they are not 128, 0 and 0, and the instructions
    (per dpas) of the hot loop and of its shortest pass where it has dpas."""
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
                      f"2-D {r.block2d}" if r.block2d else "",
                      f"loop {r.loop_instructions}{_per_dpas(r.loop_instructions, r.loop_dpas)}, pass "
                      f"{r.loop_path_instructions}{_per_dpas(r.loop_path_instructions, r.loop_path_dpas)}"
                      if r.loop_dpas else ""]
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
