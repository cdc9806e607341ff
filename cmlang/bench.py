"""``cmlang bench``: explicit SIMD (cmlang) against SIMT OpenCL C, side by side.

The registry interface (how a workload joins the benchmark)
-----------------------------------------------------------
A workload is a module that defines ``benchmark`` (one :class:`Benchmark`) or
``benchmarks`` (a list of them).  The harness imports every module named in
``WORKLOAD_MODULES`` (the ``cmlang.examples.bench`` package) and, when they exist,
those in ``OPTIONAL_MODULES`` (e.g. ``cmlang.examples.attention.bench``); an optional
module that is missing is simply absent.

A :class:`Benchmark` says

- ``sizes``: ``{"tiny": params, "quick": params, "full": params}``, each a dict of
  problem parameters (``tiny`` is for the test suite, ``quick`` for ``--quick``); a
  workload may add ``"large"`` (``--size large``: sizes past ``full``, e.g. SGEMM 4096^3;
  the workloads without one are left out of such a run);
- ``make_inputs(params, rng) -> inputs`` (a dict of numpy arrays and numbers) and
  ``reference(inputs) -> expected`` (numpy; an array or a tuple of arrays);
- ``implementations``: ``{impl name: setup}`` where ``setup(inputs, device) -> Run``.
  A setup may raise :class:`Skip` ("pyclblast is not installed") to be reported as
  skipped.  ``Run.run()`` executes the computation once and returns its time in
  seconds (device time from OpenCL profiling events: :func:`event_seconds`; host
  time for host libraries: :func:`host_run`), or a :class:`Timing` that adds the
  wall-clock time of the whole call (:func:`profiled_run`: device time of every
  kernel a host function launches); ``Run.output()`` returns the result to
  compare with ``expected`` (the harness checks the first run before timing);
- ``flops(params)`` / ``bytes(params)``: work and compulsory memory traffic, for the
  GFLOP/s and GB/s columns (None where not meaningful);
- ``rtol``/``atol`` for the check (``numpy.allclose``), or ``check(got, expected)``
  returning an error message or None.

Implementation names the table knows: ``cmlang``, ``opencl-simt`` (the baseline every
ratio is relative to), ``numpy``, ``clblast``, ``torch``; any other name works too.
"""
from __future__ import annotations

import importlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

WORKLOAD_MODULES = tuple(f"cmlang.examples.bench.{name}" for name in (
    "sgemm", "histogram", "bitonic_sort", "prefix_sum", "transpose", "filter3x3", "kmeans", "spmv"))
OPTIONAL_MODULES = ("cmlang.examples.attention.bench",)
BASELINE = "opencl-simt"
SIZES = ("tiny", "quick", "full")          # every workload has these
EXTRA_SIZES = ("large",)                   # some workloads have these
PEAK_MODULE = "cmlang.examples.bench.peak"


class Skip(Exception):
    """Raised by an implementation's setup when it cannot run here (missing peer)."""


class Timing(NamedTuple):
    """A run's device time and the wall-clock time of the call around it (copies,
    allocation, host work included)."""
    seconds: float
    wall: float


@dataclass
class Run:
    """One prepared implementation: ``run()`` -> seconds, ``output()`` -> result.
    ``host``: it computes on the host CPU (timed apart from the device runs)."""
    run: Callable[[], float]
    output: Callable[[], object]
    host: bool = False


@dataclass
class Benchmark:
    name: str
    description: str
    sizes: dict
    make_inputs: Callable
    reference: Callable
    implementations: dict
    flops: Callable | None = None
    bytes: Callable | None = None
    rtol: float = 1e-4
    atol: float = 1e-4
    check: Callable | None = None
    size_label: Callable = field(default=lambda params: "x".join(str(v) for v in params.values()))
    group: str = ""             # a name selecting this benchmark together with others

    def verify(self, got, expected) -> str | None:
        """None when ``got`` matches ``expected``, else what is wrong."""
        if self.check is not None:
            return self.check(got, expected)
        return compare(got, expected, self.rtol, self.atol)


@dataclass
class Record:
    kernel: str
    size: str
    impl: str
    seconds: float | None
    gflops: float | None
    gbs: float | None
    device: str
    status: str = "ok"          # ok, FAIL, skipped, error
    note: str = ""
    wall: float | None = None   # median wall-clock seconds, where the run reports it
    peak_fraction: float | None = None   # GFLOP/s over the peak probe's (--peak)

    def as_json(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------
# Helpers the workloads use

def compare(got, expected, rtol, atol) -> str | None:
    """Element-wise comparison of arrays (or tuples of arrays) with a short message."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected {len(expected)} outputs"
        for i, (g, e) in enumerate(zip(got, expected)):
            message = compare(g, e, rtol, atol)
            if message:
                return f"output {i}: {message}"
        return None
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"shape {got.shape} != {expected.shape}"
    close = np.isclose(got, expected, rtol=rtol, atol=atol)
    if close.all():
        return None
    bad = np.argwhere(~close)
    where = tuple(int(i) for i in bad[0])
    return f"{len(bad)} of {got.size} elements differ, first at {where}: {got[where]} != {expected[where]}"


def event_seconds(events) -> float:
    """Device time of launches (waits for them): the sum of their profiled run
    times.  Takes cmlang launch results (``.seconds``) and pyopencl events.
    NaN when a launch ran in the interpreter (CMLANG_INTERPRET=1): no device time."""
    from cmlang.runtime.profiling import event_seconds as seconds_of
    seconds = [None if launched is None else seconds_of(launched) for launched in events]
    if None in seconds:   # interpreted (its launches have no device time): nothing ran on a device
        return math.nan
    return sum(seconds)


def span_seconds(queue, enqueue) -> float:
    """Device time of work we cannot see the events of (a library call): from a
    marker before it to a marker after it on the in-order queue."""
    import pyopencl as cl
    before = cl.enqueue_marker(queue)
    enqueue()
    after = cl.enqueue_marker(queue)
    after.wait()
    return (after.profile.end - before.profile.start) * 1e-9


def profiled_run(compute) -> Run:
    """A host function that launches device kernels (cmlang's, or OpenCL C ones that
    report to :func:`cmlang.runtime.profile`): its time is the summed device time of
    those launches, with the call's wall-clock time alongside."""
    from cmlang.runtime import profile
    result = []

    def run():
        with profile() as launched:
            start = time.perf_counter()
            value = compute()
            wall = time.perf_counter() - start
        result[:] = [value]
        if not launched.launches:
            raise RuntimeError("the function launched no kernel to time")
        return Timing(launched.seconds, wall)

    return Run(run, lambda: result[0])


def host_run(compute) -> Run:
    """A host implementation (numpy): timed with ``time.perf_counter``."""
    result = []

    def run():
        start = time.perf_counter()
        value = compute()
        seconds = time.perf_counter() - start
        result[:] = [value]
        return seconds

    return Run(run, lambda: result[0], host=True)


_programs: dict = {}


def opencl_program(device, source: str, options: str = ""):
    """Build OpenCL C source for ``device`` (a cmlang Device on the OpenCL backend); cached."""
    if getattr(device, "backend", None) != "opencl":
        raise Skip(f"{device.spec} is not an OpenCL device")
    key = (device.spec, source, options)
    program = _programs.get(key)
    if program is None:
        import warnings
        import pyopencl as cl
        with warnings.catch_warnings():   # the driver's build log is noise here
            warnings.simplefilter("ignore", cl.CompilerWarning)
            try:
                program = cl.Program(device.context, source).build(options=options)
            except cl.RuntimeError as exc:   # the message holds the build log
                log = str(exc).split("Compilation started", 1)[-1].strip()
                raise RuntimeError(f"OpenCL C build failed: {log}") from None
        _programs[key] = program
    return program


def opencl_kernel(device, source: str, name: str, options: str = ""):
    """One kernel object of :func:`opencl_program` (reuse it: each lookup makes a new one)."""
    import pyopencl as cl
    return cl.Kernel(opencl_program(device, source, options), name)


def to_buffer(device, array, copy=True):
    """A pyopencl buffer on ``device`` holding ``array`` (or sized for it when copy=False)."""
    import pyopencl as cl
    mf = cl.mem_flags
    if copy:
        return cl.Buffer(device.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(array))
    return cl.Buffer(device.context, mf.READ_WRITE, max(array.nbytes, 1))


def from_buffer(device, buffer, like):
    """Copy a buffer back into a new array shaped like ``like`` (shape, dtype)."""
    import pyopencl as cl
    shape, dtype = like
    host = np.empty(shape, dtype)
    cl.enqueue_copy(device.queue, host, buffer, is_blocking=True)
    return host


def refill(device, buffer, host) -> None:
    """Overwrite a device buffer (a pyopencl buffer or a cmlang DeviceArray's) with a
    host array, e.g. to zero an accumulator between runs; not timed."""
    import pyopencl as cl
    cl.enqueue_copy(device.queue, getattr(buffer, "buffer", buffer), host).wait()


def copy_buffer(device, dst, src):
    """Device-side copy (to restore the input of an in-place kernel); not timed."""
    import pyopencl as cl
    cl.enqueue_copy(device.queue, dst, src).wait()


# ---------------------------------------------------------------------------
# Registry

def load_benchmarks(report=print) -> list:
    """Every Benchmark of the workload modules, plus optional modules that exist."""
    found = []
    for name in WORKLOAD_MODULES + OPTIONAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name and name.startswith(exc.name):
                continue  # the optional workload does not exist (yet)
            report(f"skipped {name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a broken workload must not stop the others
            report(f"skipped {name}: {type(exc).__name__}: {exc}")
            continue
        found.extend(getattr(module, "benchmarks", None) or [module.benchmark])
    return found


def select(benchmarks, names) -> list:
    """The benchmarks named (in the order given), where a name may also be a group
    (``attention``: every benchmark whose ``group`` is that), each benchmark once."""
    if not names:
        return benchmarks
    by_name = {b.name: [b] for b in benchmarks}
    for b in benchmarks:
        if b.group and b.group not in by_name:
            by_name[b.group] = [x for x in benchmarks if x.group == b.group]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"cmlang bench: unknown benchmark(s) {', '.join(unknown)}; "
                         f"available: {', '.join(by_name)}")
    chosen = {b.name: b for n in names for b in by_name[n]}     # each once, first mention first
    return list(chosen.values())


def with_size(benchmarks, size, report=print) -> list:
    """The benchmarks that have ``size`` (every one has the SIZES; an EXTRA_SIZES one
    only some), reporting those left out."""
    for b in benchmarks:
        if size not in b.sizes:
            report(f"{b.name} has no {size} size: left out")
    return [b for b in benchmarks if size in b.sizes]


# ---------------------------------------------------------------------------
# Measuring

def measure(bench: Benchmark, size: str, device, repeat: int = 10, warmup: int = 1,
            impls=None, progress=None, seed: int = 0) -> list:
    """Records for the implementations of ``bench`` at ``size`` (all, or those in
    ``impls``).  Each one is prepared and its first run checked against the
    reference; the device implementations that pass are then timed round-robin (one
    run of each in turn, ``repeat`` rounds), so that a burst of load elsewhere on the
    machine hits them all alike; host ones (numpy) afterwards.  A failing
    implementation becomes a FAIL/skipped/error record."""
    params = bench.sizes[size]
    label = bench.size_label(params)
    inputs = bench.make_inputs(params, np.random.default_rng(seed))
    expected = bench.reference(inputs)
    records, runs = {}, {}
    for impl, setup in bench.implementations.items():
        if impl_selected(impl, impls):
            run, records[impl] = _prepare(bench, impl, setup, inputs, expected, device, warmup)
            if run is not None:
                runs[impl] = run
        if progress is not None:
            progress.update(1)
    times = {impl: [] for impl in runs}
    device_runs = {impl: run for impl, run in runs.items() if not run.host}
    host_runs = {impl: run for impl, run in runs.items() if run.host}
    for _ in range(max(1, repeat)):
        _time_once(device_runs, times, records)
    # Host libraries run after the device ones, not between them: their worker
    # threads (and the OpenCL runtime's) keep spinning for a moment after a call.
    time.sleep(0.1)
    for _ in range(max(1, repeat)):
        _time_once(host_runs, times, records)
    time.sleep(0.1)
    ok = set(device_runs) | set(host_runs)
    return [_record(bench, params, label, impl, device, *(
        ("ok", None) if impl in ok else records[impl]), times.get(impl)) for impl in records]


def _time_once(runs, times, records):
    for impl, run in list(runs.items()):
        try:
            times[impl].append(run.run())
        except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
            records[impl] = ("error", _describe(exc))
            del runs[impl]


def impl_selected(impl, impls) -> bool:
    return not impls or impl in impls


def _prepare(bench, impl, setup, inputs, expected, device, warmup):
    """(Run or None, (status, note)): set up, run once, check, warm up."""
    try:
        run = setup(inputs, device)
        run.run()                                   # first run: compiles, builds, and is checked
        problem = bench.verify(run.output(), expected)
        if problem:
            return None, ("FAIL", problem)
        for _ in range(warmup):
            run.run()
    except Skip as exc:
        return None, ("skipped", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
        return None, ("error", _describe(exc))
    return run, ("ok", "")


def _describe(exc) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _record(bench, params, label, impl, device, status, note, times):
    seconds = gflops = gbs = wall = None
    if status == "ok":
        walls = [t.wall for t in times if isinstance(t, Timing)]
        wall = statistics.median(walls) if walls else None
        seconds = statistics.median(float(t[0]) if isinstance(t, Timing) else t for t in times)
        work = bench.flops(params) if bench.flops else None
        traffic = bench.bytes(params) if bench.bytes else None
        gflops = work / seconds * 1e-9 if work else None
        gbs = traffic / seconds * 1e-9 if traffic else None
    return Record(bench.name, label, impl, seconds, gflops, gbs, device.name, status, note or "", wall)


# ---------------------------------------------------------------------------
# Reporting

def ratios(records) -> dict:
    """(kernel, size, impl) -> baseline seconds / impl seconds (above 1: faster than SIMT)."""
    base = {(r.kernel, r.size): r.seconds for r in records if r.impl == BASELINE and r.seconds}
    return {(r.kernel, r.size, r.impl): base[(r.kernel, r.size)] / r.seconds
            for r in records if r.seconds and (r.kernel, r.size) in base}


def format_table(records) -> str:
    """A markdown table; a "wall s" column (whole call: copies, allocation) appears when
    some run reported one, next to "median s" (device time for device runs), and a
    "% peak" column after GFLOP/s when the records were read against the peak probe."""
    ratio = ratios(records)
    with_wall = any(r.wall is not None for r in records)
    with_peak = any(r.peak_fraction is not None for r in records)
    header = ("kernel", "size", "impl", "median s") + (("wall s",) if with_wall else ()) + (
        "GFLOP/s",) + (("% peak",) if with_peak else ()) + ("GB/s", f"vs {BASELINE}")
    rows = []
    for r in records:
        if r.status != "ok":
            rows.append((r.kernel, r.size, r.impl, r.status) + ("",) * (len(header) - 5) + (r.note,))
            continue
        x = ratio.get((r.kernel, r.size, r.impl))
        wall = ((f"{r.wall:.3e}" if r.wall is not None else "",) if with_wall else ())
        peak = ((_num(None if r.peak_fraction is None else 100 * r.peak_fraction),) if with_peak else ())
        rows.append((r.kernel, r.size, r.impl, f"{r.seconds:.3e}") + wall + (_num(r.gflops),) + peak + (
            _num(r.gbs), f"{x:.2f}x" if x else ""))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header) - 1)]
    lines = []
    for row in [header] + rows:
        cells = [str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells + [str(row[-1])]) + " |")
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|" + "-" * (len(header[-1]) + 2) + "|")
    return "\n".join(lines)


def _num(value) -> str:
    return "" if value is None else f"{value:.1f}"


def summary(records) -> str:
    """Geometric mean of cmlang over opencl-simt, and the worst kernel."""
    ratio = ratios(records)
    mine = {(k, s): x for (k, s, impl), x in ratio.items() if impl == "cmlang"}
    if not mine:
        return "no cmlang/opencl-simt pair was measured"
    geomean = math.exp(sum(math.log(x) for x in mine.values()) / len(mine))
    (k, s), worst = min(mine.items(), key=lambda kv: kv[1])
    return (f"cmlang vs {BASELINE}: geometric mean {geomean:.2f}x over {len(mine)} kernels; "
            f"lowest {worst:.2f}x ({k} {s})")


def read_against_peak(records, probe) -> float | None:
    """Sets every record's ``peak_fraction`` (its GFLOP/s over the probe's); returns the
    probe's GFLOP/s, None when the probe did not run."""
    ok = [r.gflops for r in probe if r.impl == "cmlang" and r.status == "ok" and r.gflops]
    if not ok:
        return None
    peak = ok[0]
    for r in records:
        if r.gflops:
            r.peak_fraction = r.gflops / peak
    return peak


def write_json(records, path) -> None:
    with open(path, "w") as f:
        json.dump([r.as_json() for r in records], f, indent=1)
        f.write("\n")


def write_plot(records, path) -> str | None:
    """A bar chart of every implementation's ratio to opencl-simt; None or why skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'cmlang[plot]')"
    ratio = ratios(records)
    kernels = list(dict.fromkeys(f"{k}\n{s}" for k, s, _ in ratio))
    impls = [i for i in dict.fromkeys(i for _, _, i in ratio) if i != BASELINE]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(kernels)), 4))
    width = 0.8 / max(1, len(impls))
    for n, impl in enumerate(impls):
        xs, ys = [], []
        for i, name in enumerate(kernels):
            value = ratio.get(tuple(name.split("\n")) + (impl,))
            if value:
                xs.append(i + n * width)
                ys.append(value)
        ax.bar(xs, ys, width, label=impl)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(kernels))], kernels, fontsize=8)
    ax.set_ylabel(f"speed-up over {BASELINE}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------
# The command

def add_arguments(parser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--size", choices=SIZES + EXTRA_SIZES,
                        help="problem sizes (default: full, or quick); large: past full, only the "
                             "workloads that have one (sgemm at 4096^3)")
    parser.add_argument("--impl", action="append", metavar="IMPL",
                        help="run only these implementations (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="write the records as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write a chart of the ratios (matplotlib)")
    parser.add_argument("--device", metavar="SPEC", help="device spec, e.g. opencl:cpu")
    parser.add_argument("--repeat", type=int, help="timed runs per implementation (median)")
    parser.add_argument("--peak", action="store_true",
                        help="measure the device's f32 FMA throughput first (alone when no NAME is "
                             "given) and add each row's fraction of it (%% peak)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")


def run_command(args) -> int:
    import cmlang.runtime as runtime
    notes = []
    peak = args.peak
    benchmarks = [] if peak and not args.names else select(load_benchmarks(report=notes.append), args.names)
    if args.list:
        for b in benchmarks:
            print(f"{b.name:14s} {b.description}  [{', '.join(b.implementations)}]")
        return 0
    device = runtime.set_device(args.device) if args.device else runtime.get_device()
    size = args.size or ("quick" if args.quick else "full")
    repeat = args.repeat or {"full": 10, "large": 3}.get(size, 5)
    benchmarks = with_size(benchmarks, size, notes.append)
    print(f"device: {device.name} [{device.platform}] ({device.spec}); sizes: {size}; "
          f"median of {repeat} runs", flush=True)
    probe = []
    if peak:   # first, on a device no benchmark has warmed yet; the "full" probe at --size large
        probe_bench = importlib.import_module(PEAK_MODULE).benchmark
        probe = measure(probe_bench, size if size in probe_bench.sizes else "full", device, repeat=repeat)
    records = probe + _run_all(benchmarks, size, device, repeat, args.impl)
    if peak:
        figure = read_against_peak(records, probe)
        print(f"peak f32 FMA throughput: {figure:.1f} GFLOP/s (the peak row: {PEAK_MODULE})" if figure
              else f"peak probe {probe[0].status}: {probe[0].note}")
    print(format_table(records))
    if benchmarks:
        print(summary(records))
    for r in records:
        if r.status in ("skipped", "error", "FAIL"):
            notes.append(f"{r.status}: {r.kernel} {r.impl}: {r.note}")
    if args.json:
        write_json(records, args.json)
        notes.append(f"wrote {args.json}")
    if args.plot:
        why = write_plot(records, args.plot)
        notes.append(f"plot skipped: {why}" if why else f"wrote {args.plot}")
    for note in notes:
        print(note)
    return 1 if any(r.status in ("FAIL", "error") for r in records) else 0


def _run_all(benchmarks, size, device, repeat, impls):
    from tqdm import tqdm
    total = sum(len(b.implementations) for b in benchmarks)
    records = []
    with tqdm(total=total, file=sys.stderr, desc="bench", unit="impl", leave=False) as progress:
        for bench in benchmarks:
            progress.set_postfix_str(bench.name)
            records += measure(bench, size, device, repeat=repeat, impls=impls, progress=progress)
    return records
