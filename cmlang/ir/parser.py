"""Reads the IR's text form (``cmlang.ir.printer``) back into a ``Function``.

The grammar is ``ir.lark`` (LALR). The parse tree is turned into IR by a small
recursive walk that keeps a scope of visible value names, so a use of a value that
is not defined before it (in its block or an enclosing one) is reported right away.
Every problem is an ``IRSyntaxError`` (a ``CompileError`` and a ``ValueError``) whose
message starts with ``line:col:``; texts past ``CMLANG_MAX_IR_TEXT_BYTES`` or nested past
``CMLANG_MAX_NESTING`` are refused the same way.
The parser reads what the printer writes, valid or not: run ``verify_function``
for the type rules.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from .. import limits
from ..errors import CompileError
from ..types import SCALAR_TYPES, VectorType, PtrType
from .core import Function, Block, Op, Location
from .ops import OPS
from .printer import block_separator


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    # Built once per process: constructing the LALR tables is the slow part.
    return Lark.open(os.path.join(os.path.dirname(__file__), "ir.lark"),
                     parser="lalr", maybe_placeholders=True)


class IRSyntaxError(CompileError, ValueError):
    """IR text that does not read back; the message starts with ``line:col:``."""


def parse_function(text: str) -> Function:
    if len(text) > limits.IR_TEXT_BYTES.value:
        raise IRSyntaxError(limits.IR_TEXT_BYTES.exceeded(len(text), "the IR text"))
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise IRSyntaxError(f"{e.line}:{e.column}: {_describe(e)}\n{e.get_context(text).rstrip()}") from None
    try:
        with limits.compiler_recursion():
            return _Reader().function(tree.children[0])
    except RecursionError:
        raise IRSyntaxError(limits.recursion_message("the IR text")) from None


def _describe(e: UnexpectedInput) -> str:
    token = getattr(e, "token", None)
    if token is not None:
        if token.type == "$END":
            return "unexpected end of text"
        return f"unexpected {token.value!r}"
    char = getattr(e, "char", None)
    return f"unexpected character {char!r}" if char else "syntax error"


def _error(token, message):
    if isinstance(token, Token) and token.line is not None:
        return IRSyntaxError(f"{token.line}:{token.column}: {message}")
    return IRSyntaxError(message)


@contextlib.contextmanager
def _at(token):
    """Errors from reading the text at ``token`` (a number too long for Python, a bad
    string escape, a register over its budget) as IRSyntaxErrors at its line:col."""
    try:
        yield
    except IRSyntaxError:
        raise
    except CompileError as e:
        raise _error(token, e.message) from None
    except (ValueError, TypeError, ArithmeticError) as e:
        raise _error(token, f"{type(e).__name__}: {e}") from None


def _hint(name: str) -> str:
    """``%acc.12`` -> ``acc``; ``%12`` -> ``""``."""
    base = name[1:]
    head, dot, tail = base.rpartition(".")
    if dot and tail.isdigit():
        return head
    return "" if base.isdigit() else base


class _Reader:
    def __init__(self):
        self.scopes = [{}]   # innermost last: value name -> Value
        self.max_depth = limits.NESTING.value

    # --- names ---------------------------------------------------------------
    def lookup(self, token: Token):
        for scope in reversed(self.scopes):
            if token.value in scope:
                return scope[token.value]
        raise _error(token, f"undefined value {token.value}")

    def bind(self, token: Token, value):
        if any(token.value in scope for scope in self.scopes):
            raise _error(token, f"value {token.value} is defined twice")
        value.hint = _hint(token.value)
        self.scopes[-1][token.value] = value

    # --- structure -------------------------------------------------------------
    def function(self, tree: Tree) -> Function:
        name, *rest = tree.children
        params = [c for c in rest[:-1] if isinstance(c, Tree) and c.data == "typed_value"]
        attrs = [c for c in rest[:-1] if isinstance(c, Tree) and c.data == "attr"]
        with _at(name):
            body = Block([self.type(p.children[1]) for p in params])
        for p, arg in zip(params, body.args):
            self.bind(p.children[0], arg)
        fn = Function(name.value[1:], body, [a.hint for a in body.args])
        for attr in attrs:
            key, value = attr.children
            with _at(key):
                self.function_attr(fn, key, self.value(value))
        self.block_ops(rest[-1], body)
        return fn

    @staticmethod
    def function_attr(fn, key: Token, value):
        if key.value == "simd" and isinstance(value, int) and not isinstance(value, bool):
            fn.simd = value
        elif key.value == "constexprs" and isinstance(value, dict):
            fn.constexprs = value
        elif key.value == "file" and isinstance(value, str):
            fn.source_file = value
        else:
            raise _error(key, f"bad kernel attribute {key.value}={value!r}")

    def block(self, tree: Tree) -> Block:
        """A nested block in a fresh scope (its names are not visible after it)."""
        args_tree = tree.children[0]
        typed = [c for c in args_tree.children if c is not None] if args_tree is not None else []
        if len(self.scopes) > self.max_depth:
            raise _error(_first_token(tree), limits.NESTING.exceeded(len(self.scopes), "the IR text"))
        with _at(_first_token(tree)):
            block = Block([self.type(t.children[1]) for t in typed])
        self.scopes.append({})
        try:
            for t, arg in zip(typed, block.args):
                self.bind(t.children[0], arg)
            self.block_ops(tree, block)
        finally:
            self.scopes.pop()
        return block

    def block_ops(self, tree: Tree, block: Block):
        for child in tree.children[1:]:
            block.ops.append(self.op(child))

    def op(self, tree: Tree) -> Op:
        results, opcode, operands, attr_list, loc, regions = tree.children
        if opcode.value not in OPS:
            raise _error(opcode, f"unknown opcode {opcode.value!r}")
        result_vals = results.children if results is not None else []
        with _at(opcode):
            op = Op(opcode.value,
                    operands=[self.lookup(t) for t in operands.children] if operands is not None else [],
                    result_types=[self.type(r.children[1]) for r in result_vals],
                    attrs=self.attrs(attr_list),
                    loc=self.loc(loc) if loc is not None else None)
        if regions is not None:
            op.blocks = self.regions(opcode.value, regions)
        # Results become visible after the op's own blocks (they cannot use them).
        for r, value in zip(result_vals, op.results):
            self.bind(r.children[0], value)
        return op

    def regions(self, opcode: str, tree: Tree) -> list:
        blocks = []
        for child in tree.children:
            if isinstance(child, Token):
                if child.value != block_separator(opcode):
                    raise _error(child, f"expected '{block_separator(opcode)}' between the blocks of "
                                        f"{opcode}, got {child.value!r}")
            else:
                blocks.append(self.block(child))
        return blocks

    def attrs(self, tree) -> dict:
        if tree is None:
            return {}
        attrs = {}
        for attr in tree.children:
            if attr is None:  # "[]"
                continue
            key, value = attr.children
            if key.value in attrs:
                raise _error(key, f"attribute {key.value} given twice")
            attrs[key.value] = self.value(value)
        return attrs

    @staticmethod
    def loc(tree: Tree) -> Location:
        file, line, col = tree.children
        return Location(json.loads(file.value), int(line.value), int(col.value))

    # --- attribute values and types ---------------------------------------------
    def value(self, tree):
        if isinstance(tree, Token):  # a bare NAME cannot occur here; kept for safety
            raise _error(tree, f"unexpected {tree.value!r}")
        kind = tree.data
        if kind in _LEAF_VALUES:
            return _LEAF_VALUES[kind](tree.children)
        if kind == "tuple":
            return tuple(self.value(c) for c in tree.children if c is not None)
        if kind == "dict":
            return self.attrs(tree)
        return self.type(tree)

    @staticmethod
    def type(tree: Tree):
        kind, args = tree.data, tree.children
        elem = _scalar(args[0])
        if kind == "scalar_type":
            return elem
        if kind == "ptr_type":
            return PtrType(elem, args[1].value if args[1] is not None else "global")
        dims = tuple(int(a.value) for a in args[1:])
        if any(d <= 0 for d in dims):
            raise _error(args[1], f"register dimensions must be positive, got {dims}")
        return VectorType(elem, dims)


def _first_token(tree):
    """The first token under ``tree`` (for the line:col of a block), or None."""
    tokens = tree.scan_values(lambda v: isinstance(v, Token))
    return next(iter(tokens), None)


def _scalar(token: Token):
    if token.value not in SCALAR_TYPES:
        raise _error(token, f"unknown scalar type {token.value!r}")
    return SCALAR_TYPES[token.value]


_LEAF_VALUES = {
    "int": lambda c: int(c[0].value),
    "float": lambda c: float(c[0].value),
    "string": lambda c: json.loads(c[0].value),
    "true": lambda c: True,
    "false": lambda c: False,
    "none": lambda c: None,
    "inf": lambda c: float("inf"),
    "neg_inf": lambda c: float("-inf"),
    "nan": lambda c: float("nan"),
}
