"""The ``cmlang`` command line: devices, compile, cache, build."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from .targets import target_names


def load_module(path: str, prefix: str):
    """Import a Python file as a module (registered in sys.modules, so kernels find their source)."""
    module_name = prefix + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_kernel(ref: str):
    """``path/to/file.py::kernel_name`` -> the Kernel object defined there."""
    from .kernel import Kernel
    path, sep, name = ref.partition("::")
    if not sep or not name:
        raise SystemExit(f"cmlang: expected FILE::KERNEL, got {ref!r}")
    if not os.path.isfile(path):
        raise SystemExit(f"cmlang: no such file: {path}")
    k = getattr(load_module(path, "_cmlang_cli_"), name, None)
    if not isinstance(k, Kernel):
        raise SystemExit(f"cmlang: {path} has no @cm.kernel named {name!r}")
    return k


def parse_constexprs(items):
    import ast
    values = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"cmlang: --constexpr expects NAME=VALUE, got {item!r}")
        try:
            values[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise SystemExit(f"cmlang: --constexpr {name}: {text!r} is not a Python literal") from None
    return values


def check_signature(k, signature: str):
    """The kernel's annotations are the truth; --signature must agree with them."""
    from .types import parse_type
    wanted = [parse_type(t) for t in _split_types(signature)]
    have = [t for _, t in k.runtime_params]
    if wanted != have:
        raise SystemExit(f"cmlang: --signature {', '.join(map(str, wanted))} does not match "
                         f"{k.__name__}'s parameters ({', '.join(f'{n}: {t}' for n, t in k.runtime_params)})")


def _split_types(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[<"
        depth -= ch in "]>"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in parts + [cur] if p.strip()]


def cmd_devices(args):
    from cmlang.runtime import devices, get_device
    current = get_device()
    for d in devices():
        mark = "*" if d.spec == current.spec else " "
        print(f"{mark} {d.spec:18s} {d.name}  [{d.platform}]")
    return 0


def cmd_compile(args):
    from .kernel import Kernel
    k = load_kernel(args.kernel)
    if args.simd and args.simd != k.simd:
        k = Kernel(k.fn, simd=args.simd)
    if args.signature:
        check_signature(k, args.signature)
    native_emits = ("isa", "stats", "native")
    if args.emit in native_emits and not args.device:
        raise SystemExit(f"cmlang: --emit {args.emit} needs --device (an ocloc -device name, e.g. pvc)")
    ck = k.compile(target=args.target, device=args.device, **parse_constexprs(args.constexpr))
    if args.emit == "isa":
        out = ck.isa
    elif args.emit == "stats":
        import json
        out = json.dumps({"kernel": k.__name__, "target": args.target, "device": args.device,
                          **{n: ck.stats[n] for n in ("instructions", "spill_bytes", "grf", "dpas",
                                                       "block2d", "messages")}}, indent=1)
    elif args.emit == "native":
        out = ck.native
    elif args.emit == "ir":
        out = ck.ir
    elif args.emit == "llvm":
        out = ck.llvm_ir
    elif args.emit == "spirv-asm":
        out = ck.spirv_asm
        if out is None:
            raise SystemExit("cmlang: spirv-dis is not installed (Debian package spirv-tools)")
    else:
        out = ck.spirv
    if args.output:
        mode = "wb" if isinstance(out, bytes) else "w"
        with open(args.output, mode) as f:
            f.write(out)
    elif isinstance(out, bytes):
        sys.stdout.buffer.write(out)
    else:
        print(out)
    return 0


def cmd_bench(args):
    from .bench import run_command
    return run_command(args)


def cmd_isa(args):
    from .isa_report import run_command
    return run_command(args)


def cmd_cache(args):
    from . import cache
    if args.action == "clear":
        removed = cache.clear(stale_only=args.stale)
        print(f"removed {removed} cache entr{'ies' if removed != 1 else 'y'} from {cache.cache_root()}")
        return 0
    info = cache.info()
    state = "on" if info["enabled"] else f"off ({cache.DISABLE_ENV}=0)"
    print(f"cache dir: {info['dir']}  [{state}; kept under {info['max_bytes'] / 2**20:.0f} MiB, "
          f"{cache.MAX_MB_ENV}]")
    for store, label in ((cache.KERNELS, "compiled kernels"), (cache.DEVICE_BINARIES, "driver binaries"),
                         (cache.NATIVE_BINARIES, "Intel GPU binaries")):
        print(f"  {label:17s} {info[store]['entries']:6d} entries  {info[store]['bytes'] / 1e6:9.2f} MB")
    if args.list:
        import time as _time
        for name, target, simd, size, created in cache.list_kernels():
            stamp = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(created))
            print(f"    {name:50s} {target:9s} simd={simd:<3d} {size / 1e3:8.1f} kB  {stamp}")
    return 0


class _SpecSetAction(argparse.Action):
    """``cmlang build``: each --signature opens a set of options; the --constexpr
    options after it (or before the first --signature) belong to that set."""

    def __call__(self, parser, namespace, value, option_string=None):
        sets = getattr(namespace, "spec_sets", None) or []
        namespace.spec_sets = sets
        if not sets or (self.dest == "signature" and sets[-1]["signature"] is not None):
            sets.append({"signature": None, "constexpr": []})
        if self.dest == "signature":
            sets[-1]["signature"] = value
        else:
            sets[-1]["constexpr"].append(value)


def cmd_build(args):
    from .package import build_package
    specs = []
    for ref in dict.fromkeys(args.kernels):  # dict: drop repeats, keep order
        if "::" in ref:
            kernel = load_kernel(ref)
            if args.simd and args.simd != kernel.simd:
                from .kernel import Kernel
                kernel = Kernel(kernel.fn, simd=args.simd)
            specs += _specs_for(kernel, getattr(args, "spec_sets", None) or [])
        else:
            specs += _recipe_specs(ref)
    devices = [d.strip() for d in (args.device or "").split(",") if d.strip()]
    path = build_package(args.output, specs, target=args.target,
                         progress=None if not args.quiet else False, devices=devices)
    if not args.quiet:
        from cmlang.runtime.package import load_package
        print(f"wrote {path}:")
        print("  " + load_package(path).describe().replace("\n", "\n  "))
    return 0


def _specs_for(kernel, spec_sets):
    """The (kernel, constexprs) specs that the option sets give one kernel."""
    import itertools
    from .types import constexpr
    if not spec_sets:
        return [(kernel, {})]
    names = {n for n, t in kernel.params if t is constexpr}
    specs = []
    for spec_set in spec_sets:
        values = {}
        for item in spec_set["constexpr"]:  # a name given twice: one spec per value
            (name, value), = parse_constexprs([item]).items()
            values.setdefault(name, []).append(value)
        if spec_set["signature"] is not None and not _signature_matches(kernel, spec_set["signature"]):
            continue
        if not set(values) <= names:
            continue
        for combo in itertools.product(*values.values()):
            specs.append((kernel, dict(zip(values, combo))))
    if not specs:
        params = ", ".join(f"{n}: {t}" for n, t in kernel.params)
        raise SystemExit(f"cmlang: no --signature/--constexpr set fits {kernel.__name__}({params})")
    return specs


def _signature_matches(kernel, signature):
    from .types import parse_type
    try:
        return [parse_type(t) for t in _split_types(signature)] == [t for _, t in kernel.runtime_params]
    except (ValueError, KeyError):
        raise SystemExit(f"cmlang: cannot parse --signature {signature!r}") from None


def _recipe_specs(path):
    """A build recipe: a Python file defining PACKAGE_SPECS (a list of build_package
    specs, or a function returning one)."""
    if not os.path.isfile(path):
        raise SystemExit(f"cmlang: no such file: {path} (expected FILE::KERNEL or a recipe file)")
    specs = getattr(load_module(path, "_cmlang_recipe_"), "PACKAGE_SPECS", None)
    if specs is None:
        raise SystemExit(f"cmlang: {path} defines no PACKAGE_SPECS (nor is it FILE::KERNEL)")
    return list(specs() if callable(specs) else specs)


def build_parser():
    p = argparse.ArgumentParser(prog="cmlang", description="explicit-SIMD kernels in Python")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("devices", help="list devices (* marks the default)")
    d.set_defaults(run=cmd_devices)
    c = sub.add_parser("compile", help="compile one kernel specialization")
    c.add_argument("kernel", help="FILE::KERNEL")
    c.add_argument("--signature", help='runtime parameter types, e.g. "ptr[f32], ptr[f32], f32, i32"')
    c.add_argument("--constexpr", action="append", metavar="NAME=VALUE")
    c.add_argument("--simd", type=int, choices=(8, 16, 32))
    c.add_argument("--target", default="spirv", choices=target_names())
    c.add_argument("--emit", default="ir", choices=("ir", "llvm", "spirv", "spirv-asm", "isa", "stats", "native"),
                   help="isa/stats/native: Intel's GPU compiler's output (needs --device)")
    c.add_argument("--device", help="compile for this device profile and, for an Intel GPU (pvc, dg2, "
                                    "tgllp, or any ocloc -device name), build it with Intel's GPU compiler")
    c.add_argument("-o", "--output")
    c.set_defaults(run=cmd_compile)
    b = sub.add_parser("bench", help="benchmark cmlang kernels against SIMT OpenCL C and libraries")
    from .bench import add_arguments as add_bench_arguments
    add_bench_arguments(b)
    b.set_defaults(run=cmd_bench)
    i = sub.add_parser("isa", help="Intel GPU code of every kernel the benchmarks launch (ocloc)")
    from .isa_report import add_arguments as add_isa_arguments
    add_isa_arguments(i)
    i.set_defaults(run=cmd_isa)
    k = sub.add_parser("cache", help="the on-disk compile cache: info, clear")
    k.add_argument("action", choices=("info", "clear"))
    k.add_argument("--list", action="store_true", help="info: list the cached kernels")
    k.add_argument("--stale", action="store_true",
                   help="clear: only kernels compiled by another cmlang/compiler/llvmlite")
    k.set_defaults(run=cmd_cache)
    pk = sub.add_parser("build", help="compile kernels into a precompiled package (.cmpkg)")
    pk.add_argument("kernels", nargs="+", metavar="FILE::KERNEL|RECIPE.py",
                    help="kernels, or recipe files that define PACKAGE_SPECS")
    pk.add_argument("--signature", action=_SpecSetAction, default=None,
                    help="starts a set: runtime parameter types; the --constexpr after it belong to it")
    pk.add_argument("--constexpr", action=_SpecSetAction, default=None, metavar="NAME=VALUE",
                    help="a constexpr value of the current set; a name given twice builds both")
    pk.add_argument("--simd", type=int, choices=(8, 16, 32))
    pk.add_argument("--target", default="spirv", choices=target_names())
    pk.add_argument("-o", "--output", required=True, metavar="NAME.cmpkg")
    pk.add_argument("--device", metavar="pvc,dg2",
                    help="also store native binaries for these Intel GPUs (ocloc -device names)")
    pk.add_argument("-q", "--quiet", action="store_true")
    pk.set_defaults(run=cmd_build)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .errors import CompileError, LaunchError
    try:
        return args.run(args)
    except (CompileError, LaunchError) as e:
        print(f"cmlang: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
