"""The parsed source of a kernel or ``@cm.func`` and the file locations of its nodes."""
from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass

from ..errors import CompileError
from ..ir import Location


@dataclass
class FunctionSource:
    pyfn: object
    file: str
    tree: ast.FunctionDef
    first_line: int     # file line of the first source line (the first decorator)
    margin: int         # columns removed by dedent

    def loc(self, node) -> Location:
        """Absolute file line and 0-based column of an AST node."""
        return Location(self.file, self.first_line + node.lineno - 1, node.col_offset + self.margin)


_CACHE = {}


def function_source(pyfn) -> FunctionSource:
    """Parses ``pyfn``'s source once (cached per code object and file: code objects compare
    equal across files when their text and first line are the same, and the locations of
    one must never be reported for the other)."""
    code = pyfn.__code__
    key = (code.co_filename, code)
    src = _CACHE.get(key)
    if src is None:
        src = _CACHE[key] = _parse(pyfn)
    return src


def _parse(pyfn) -> FunctionSource:
    name = getattr(pyfn, "__qualname__", repr(pyfn))
    file = pyfn.__code__.co_filename
    try:
        lines, first_line = inspect.getsourcelines(pyfn)
    except (OSError, TypeError) as e:
        raise CompileError(f"cannot read the source of {name}: {e}; kernels and funcs must be "
                           "defined in a file") from None
    text = "".join(lines)
    dedented = textwrap.dedent(text)
    margin = len(lines[0]) - len(dedented.splitlines(True)[0])
    try:
        module = ast.parse(dedented)
    except SyntaxError as e:
        raise CompileError(f"cannot parse the source of {name}: {e.msg}") from None
    tree = module.body[0] if module.body else None
    if not isinstance(tree, ast.FunctionDef):
        raise CompileError(f"{name} is not a plain function definition (lambdas and async "
                           "functions cannot be kernels or funcs)")
    return FunctionSource(pyfn, file, tree, max(first_line, 1), margin)
