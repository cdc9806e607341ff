"""The ``cmlang`` command line: devices, compile."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys


def load_kernel(ref: str):
    """``path/to/file.py::kernel_name`` -> the Kernel object defined there."""
    from .kernel import Kernel
    path, sep, name = ref.partition("::")
    if not sep or not name:
        raise SystemExit(f"cmlang: expected FILE::KERNEL, got {ref!r}")
    if not os.path.isfile(path):
        raise SystemExit(f"cmlang: no such file: {path}")
    module_name = "_cmlang_cli_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    k = getattr(module, name, None)
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
    ck = k.compile(target=args.target, **parse_constexprs(args.constexpr))
    if args.emit == "ir":
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
    c.add_argument("--target", default="spirv", choices=("spirv", "spirv-vc"))
    c.add_argument("--emit", default="ir", choices=("ir", "llvm", "spirv", "spirv-asm"))
    c.add_argument("-o", "--output")
    c.set_defaults(run=cmd_compile)
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
