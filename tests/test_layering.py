"""The runtime is below the compiler: no runtime module imports a compiler module (at the
top or inside a function), so launching and loading packages never needs the compiler and
no import cycle joins the two."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the runtime may import from cmlang: the leaf modules shared by both sides (the
# interpreter executes IR, so the IR's data structures and op catalogue are among them;
# they import only cmlang.types and cmlang.limits).
SHARED_LEAVES = {"cmlang.errors", "cmlang.types", "cmlang.limits", "cmlang", "cmlang.ir.ops", "cmlang.ir.core"}


def imported_modules(path, package):
    """Every module ``path`` imports, absolute names (relative imports resolved)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            if module == "cmlang":          # from cmlang import limits -> cmlang.limits
                found.update(f"cmlang.{alias.name}" for alias in node.names)
    return found


def runtime_files():
    for folder, _, names in os.walk(os.path.join(ROOT, "runtime")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                package = "cmlang." + (rel[:-len(".__init__")] if rel.endswith("__init__") else rel.rsplit(".", 1)[0])
                yield path, package


def test_no_runtime_module_imports_the_compiler():
    offenders = []
    for path, package in runtime_files():
        for module in imported_modules(path, package):
            if module.startswith("cmlang.") and not module.startswith("cmlang.runtime") \
                    and module not in SHARED_LEAVES:
                offenders.append(f"{os.path.relpath(path, ROOT)} imports {module}")
            if module.split(".")[0] == "llvmlite":
                offenders.append(f"{os.path.relpath(path, ROOT)} imports llvmlite")
    assert offenders == []


def test_the_check_sees_a_compiler_import(tmp_path):
    """The checker itself: a function-level import of the compiler is found."""
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from ..cache import build_device_kernel\n    from cmlang import kernel\n")
    found = imported_modules(str(path), "cmlang.runtime")
    assert {"cmlang.cache", "cmlang.kernel"} <= found


def test_importing_and_launching_through_the_runtime_loads_no_compiler():
    code = ("import sys, numpy as np\n"
            "import cmlang.runtime as rt\n"
            "a = rt.to_device(np.arange(4, dtype=np.float32)); print(a.numpy().sum())\n"
            "print(sorted(m for m in sys.modules if m.startswith(('cmlang.frontend', 'cmlang.codegen', "
            "'cmlang.passes', 'llvmlite'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["6.0", "[]"]
