"""Feeds mutated inputs to cmlang for a bounded time and counts what comes out.

    python -m tests.fuzz_inputs --seconds 30 [--seed 1] [--json out.json]

Four kinds of input, each mutated from valid seeds: kernel source text (compiled, not
launched), IR text (parsed and verified), package manifests (loaded) and launch
configurations and arguments (launched on a kernel whose accesses the launcher checks).
Every input must end normally or in one of cmlang's own exceptions (``CompileError``,
``LaunchError``, ``PackageError``, ``KernelRuntimeError``); Python's SyntaxError from
importing a mutated module counts as the user's Python being refused by Python.
Anything else is a finding: printed with its input, and the exit status is 1.
``tests/test_fuzz_inputs.py`` runs this in a child process, so a crash is a failure too.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import traceback
import warnings
import zipfile

import numpy as np

import cmlang as cm
from cmlang.errors import USER_ERRORS

EXTREME_INTS = ["0", "1", "-1", "7", "15", "16", "17", "255", "256", "2**31", "2**31 - 1", "2**32",
                "2**63", "-2**63", "2**64", "10**400", "-(10**400)"]
EXTREME_FLOATS = ["0.0", "-0.0", "1e308", "1e-320", "float('nan')", "float('inf')", "3.5e38", "0.5"]
NAMES = ["x", "y", "v", "n", "cm.i32", "cm.f32", "cm.u8", "cm.f16", "min", "max", "abs", "float",
         "int", "cm.static_range", "range", "cm.load", "cm.store", "cm.vector[cm.f32, 16]",
         "cm.matrix[cm.i32, 4, 4]", "cm.thread_id(0)", "True", "None", "(1, 2)", "cm.slm"]
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^", "<", "==", "and", "or"]

SEED_KERNELS = [
    '''
@cm.kernel
def k(x: cm.ptr[cm.f32], y: cm.ptr[cm.f32], n: cm.i32):
    base = cm.thread_id(0) * 16
    v = cm.load(x, base, 16)
    w = cm.load(y, base, 16)
    if n > 3:
        v = v * 2.0 + w
    else:
        v = cm.max(v, w)
    cm.store(y, base, v)
''',
    '''
@cm.func
def twice(a):
    return a + a

@cm.kernel(simd=8)
def k(x: cm.ptr[cm.i32], N: cm.constexpr):
    acc = cm.full(cm.vector[cm.i32, 8], 0)
    for i in cm.static_range(N):
        acc += twice(cm.load(x, i * 8, 8))
    m = acc.format(cm.i32, 2, 4)
    acc[0] = m[1, 2] >> 1
    cm.store(x, 0, acc)
''',
    '''
@cm.kernel
def k(x: cm.ptr[cm.i32], n: cm.i32):
    s = cm.slm(cm.i32, 64)
    i = 0
    t = cm.full(cm.vector[cm.i32, 16], 3)
    while i < n:
        t = t + cm.load(x, i * 16, 16)
        i += 1
    cm.store(s, 0, t)
    cm.barrier()
    cm.store(x, 0, cm.load(s, 0, 16))
''',
]
SEED_ARGS = [lambda: (np.zeros(64, np.float32), np.ones(64, np.float32), 4),
             lambda: (np.arange(64, dtype=np.int32), 4),
             lambda: (np.zeros(64, np.int32), 2)]


class _PythonRefused(Exception):
    """The mutated module failed in the user's own code as Python ran it."""


class Fuzzer:
    def __init__(self, rng, workdir):
        self.rng = rng
        self.workdir = workdir
        self.counts = {}          # kind -> {outcome: count}
        self.findings = []        # (kind, input text, traceback text)
        self.module_counter = 0

    def outcome(self, kind, what):
        bucket = self.counts.setdefault(kind, {})
        bucket[what] = bucket.get(what, 0) + 1

    def run_one(self, kind, describe, action):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                action()
            self.outcome(kind, "accepted")
        except USER_ERRORS as e:
            self.outcome(kind, type(e).__name__)
        except (SyntaxError, _PythonRefused):
            self.outcome(kind, "refused by Python")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - the point: anything else is a finding
            self.outcome(kind, "FINDING")
            self.findings.append((kind, describe(), traceback.format_exc()))

    # --- kernel source --------------------------------------------------------------
    def mutate_source(self, text):
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            choice = rng.random()
            if choice < 0.3:
                numbers = list(re.finditer(r"(?<![\w.])\d+(\.\d+)?", text))
                if numbers:
                    m = rng.choice(numbers)
                    new = rng.choice(EXTREME_FLOATS if m.group(1) else EXTREME_INTS)
                    text = text[:m.start()] + f"({new})" + text[m.end():]
            elif choice < 0.55:
                names = list(re.finditer(r"(?<![\w.])(x|y|v|w|n|acc|base|t|i|s|m|a)(?![\w(])", text))
                if names:
                    m = rng.choice(names)
                    text = text[:m.start()] + rng.choice(NAMES) + text[m.end():]
            elif choice < 0.7:
                ops = list(re.finditer(r" (\+|\*|-|>>|<|>) ", text))
                if ops:
                    m = rng.choice(ops)
                    text = text[:m.start()] + f" {rng.choice(OPERATORS)} " + text[m.end():]
            elif choice < 0.85:
                lines = text.splitlines()
                body = [i for i, line in enumerate(lines) if line.startswith("    ")]
                if body:
                    i = rng.choice(body)
                    if rng.random() < 0.5:
                        del lines[i]
                    else:
                        lines.insert(rng.choice(body), lines[i])
                text = "\n".join(lines) + "\n"
            else:
                pos = rng.randrange(len(text))
                text = text[:pos] + rng.choice(["(", ")", "[", "]", ",", ":", "0", ".", "-"]) + text[pos + 1:]
        return text

    def kernel_source(self):
        index = self.rng.randrange(len(SEED_KERNELS))
        text = self.mutate_source(SEED_KERNELS[index])
        args = SEED_ARGS[index]()

        def action():
            self.module_counter += 1
            path = os.path.join(self.workdir, f"fuzz_kernel_{self.module_counter}.py")
            with open(path, "w") as f:
                f.write("import cmlang as cm\n" + text)
            spec = importlib.util.spec_from_file_location(f"fuzz_kernel_{self.module_counter}", path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except USER_ERRORS:
                raise
            except Exception as e:  # noqa: BLE001
                # Python itself refusing the module (a bad name in an annotation or a
                # decorator) is the user's Python, not cmlang; an error from inside
                # cmlang while decorating is a finding.
                if traceback.extract_tb(e.__traceback__)[-1].filename == path:
                    raise _PythonRefused() from e
                raise
            kernel = getattr(module, "k", None)
            if isinstance(kernel, cm.Kernel):
                constexprs = {n: 3 for n, t in kernel.params if t is cm.constexpr}
                kernel.compile(**constexprs) if constexprs and len(kernel.params) != len(args) \
                    else kernel.compile(*args)
        self.run_one("kernel source", lambda: text, action)

    # --- IR text ----------------------------------------------------------------------
    def ir_seeds(self):
        if not hasattr(self, "_ir_seeds"):
            self._ir_seeds = [self._seed_ir(i) for i in range(len(SEED_KERNELS))]
        return self._ir_seeds

    def _seed_ir(self, index):
        path = os.path.join(self.workdir, f"seed_{index}.py")
        with open(path, "w") as f:
            f.write("import cmlang as cm\n" + SEED_KERNELS[index])
        spec = importlib.util.spec_from_file_location(f"seed_{index}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.k.compile(*SEED_ARGS[index]()).ir

    def ir_text(self):
        rng = self.rng
        text = rng.choice(self.ir_seeds())
        for _ in range(rng.randint(1, 4)):
            choice = rng.random()
            if choice < 0.35:
                numbers = list(re.finditer(r"-?\d+(\.\d+)?", text))
                if numbers:
                    m = rng.choice(numbers)
                    new = rng.choice(["0", "-1", "65537", "99999999999", "1" + "0" * 5000, "1e999", "-0"])
                    text = text[:m.start()] + new + text[m.end():]
            elif choice < 0.6:
                lines = text.splitlines()
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines.insert(j, lines[i]) if rng.random() < 0.5 else lines.pop(i)
                text = "\n".join(lines) + "\n"
            elif choice < 0.8:
                words = list(re.finditer(r"\b(i32|f32|u8|bool|vector|add|mul|load|store|if|yield|"
                                         r"const|cmp|slm|for|while)\b", text))
                if words:
                    m = rng.choice(words)
                    new = rng.choice(["i32", "f64", "u8", "bool", "matrix", "add", "select", "store",
                                      "if", "yield", "const", "cmp", "for", "nope"])
                    text = text[:m.start()] + new + text[m.end():]
            else:
                pos = rng.randrange(len(text))
                text = text[:pos] + rng.choice(["{", "}", "%", "[", "]", ",", "\n", "\"", "<", ">"]) + text[pos:]

        def action():
            from cmlang.ir.parser import parse_function
            from cmlang.ir.verify import verify_function
            verify_function(parse_function(text))
        self.run_one("IR text", lambda: text, action)

    # --- package manifests --------------------------------------------------------------
    def package_seed(self):
        if not hasattr(self, "_package"):
            path = os.path.join(self.workdir, f"fuzz_pkg_{self.module_counter}.py")
            with open(path, "w") as f:
                f.write("import cmlang as cm\n" + SEED_KERNELS[1])
            spec = importlib.util.spec_from_file_location("fuzz_pkg", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            package = os.path.join(self.workdir, "seed.cmpkg")
            cm.build_package(package, [(module.k, {"N": 2}), (module.k, {"N": 3})], progress=False)
            with zipfile.ZipFile(package) as zf:
                self._package = {i.filename: zf.read(i) for i in zf.infolist()}
        return self._package

    def mutate_json(self, value, depth=0):
        rng = self.rng
        if isinstance(value, dict) and value and rng.random() < 0.7:
            key = rng.choice(list(value))
            action = rng.random()
            if action < 0.2:
                del value[key]
            elif action < 0.6:
                value[key] = rng.choice([None, 0, -1, 2**70, 1.5, "", "x", [], {}, True, [[[]]],
                                         {"tuple": [1]}, "ptr<f32>", 16, 8, 32])
            else:
                value[key] = self.mutate_json(value[key], depth + 1)
        elif isinstance(value, list) and value and rng.random() < 0.7:
            i = rng.randrange(len(value))
            if rng.random() < 0.3:
                value.append(value[i])
            else:
                value[i] = self.mutate_json(value[i], depth + 1)
        elif isinstance(value, int) and not isinstance(value, bool):
            value = rng.choice([0, -1, 1, 2**63, 7, 8, 16, 32])
        elif isinstance(value, str):
            value = rng.choice(["", "f32", "ptr<f64>", "spirv-vc", "constexpr", value + "x", "\0"])
        return value

    def manifest(self):
        from cmlang.runtime.package import load_package, manifest_checksum
        files = dict(self.package_seed())
        manifest = json.loads(files["manifest.json"])
        for _ in range(self.rng.randint(1, 3)):
            manifest = self.mutate_json(manifest)
        raw = json.dumps(manifest).encode()
        files["manifest.json"] = raw
        if self.rng.random() < 0.9:
            files["manifest.sha256"] = manifest_checksum(raw)
        path = os.path.join(self.workdir, "mutated.cmpkg")
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        self.run_one("manifest", lambda: raw.decode(errors="replace"), lambda: load_package(path))

    # --- launches ---------------------------------------------------------------------
    def launch_kernel(self):
        if not hasattr(self, "_launch_kernel"):
            path = os.path.join(self.workdir, "fuzz_launch.py")
            with open(path, "w") as f:
                f.write("import cmlang as cm\n"
                        "@cm.kernel\n"
                        "def k(x: cm.ptr[cm.f32], y: cm.ptr[cm.i32], a: cm.f32, n: cm.i32):\n"
                        "    cm.store(x, 0, cm.load(x, 0, 16) * a)\n"
                        "    cm.store(y, 16, cm.full(cm.vector[cm.i32, 16], n))\n")
            spec = importlib.util.spec_from_file_location("fuzz_launch", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._launch_kernel = module.k
        return self._launch_kernel

    def launch(self):
        rng = self.rng
        kernel = self.launch_kernel()
        grids = [1, 2, 4, (2, 2), (1, 1, 2), 0, -1, 2**40, 2**64, 1.5, True, None, "4", (1, 2, 3, 4),
                 [], (2, 0), np.int64(3), (np.int32(2), 1)]
        groups = [None, cm.group(1), cm.group(2), cm.group(1, 1), cm.group(4096)]

        def value():
            return rng.choice([np.zeros(16, np.float32), np.zeros(32, np.int32), np.zeros(64, np.float32),
                               np.zeros(8, np.float32), np.zeros(32, np.float64), np.zeros((4, 8), np.int32),
                               2.0, 3, -1, 2**40, 1e300, float("nan"), True, None, "x", [1.0] * 16,
                               np.float32(2), np.int64(2**40)])
        args = [np.zeros(16, np.float32), np.zeros(32, np.int32), 2.0, 3]
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(args))
            args[i] = value()
        if rng.random() < 0.2:
            args = args[:rng.randrange(len(args))] if rng.random() < 0.5 else args + [value()]
        kwargs = {}
        if rng.random() < 0.2:
            kwargs[rng.choice(["a", "n", "x", "z"])] = value()
            args = args[:-1]
        grid = rng.choice(grids)
        group = rng.choice(groups)

        def action():
            launcher = kernel[grid] if group is None else kernel[grid, group]
            result = launcher(*args, **kwargs)
            if result is not None and hasattr(result, "wait"):
                result.wait()

        def describe():
            shown = [f"{type(a).__name__}{getattr(a, 'shape', '')}{getattr(a, 'dtype', '')}"
                     if isinstance(a, np.ndarray) else repr(a) for a in args]
            return f"k[{grid!r}, {group!r}]({', '.join(shown)}, **{kwargs!r})"
        self.run_one("launch", describe, action)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CMLANG_FUZZ_SECONDS", 30)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CMLANG_FUZZ_SEED", time.time())))
    parser.add_argument("--json", help="write the counts and findings here")
    opts = parser.parse_args(argv)
    rng = random.Random(opts.seed)
    kinds = ["kernel_source", "ir_text", "manifest", "launch"]
    with tempfile.TemporaryDirectory(prefix="cmlang-fuzz-") as workdir:
        fuzzer = Fuzzer(rng, workdir)
        sys.path.insert(0, workdir)
        share = opts.seconds / len(kinds)
        for kind in kinds:
            deadline = time.monotonic() + share
            while time.monotonic() < deadline:
                getattr(fuzzer, kind)()
    report = {"seed": opts.seed, "seconds": opts.seconds, "counts": fuzzer.counts,
              "findings": [{"kind": k, "input": i[:4000], "traceback": t[-4000:]}
                           for k, i, t in fuzzer.findings]}
    for k, i, t in fuzzer.findings[:20]:
        print(f"--- finding ({k}):\n{i[:2000]}\n{t[-2000:]}", file=sys.stderr)
    print(json.dumps({"seed": opts.seed, "counts": fuzzer.counts,
                      "findings": len(fuzzer.findings)}))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if fuzzer.findings else 0


if __name__ == "__main__":
    sys.exit(main())
