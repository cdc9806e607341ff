"""IR "lit" tests: a ``.cmir`` file holds one IR function, the command(s) to run on it and
what the output must contain, checked FileCheck-style.  The runner is ``test_lit.py``.

Header lines (IR comments, so the file stays valid IR text)::

    // RUN: pass dce                       the named IR passes in order, then the IR text
    // RUN: pipeline                       the whole pass pipeline, then the IR text
    // RUN: analyze known-multiple         an analysis's findings (the IR with comments)
    // RUN: lower spirv --device=pvc       the LLVM IR a target's lowering writes
    // RUN: compile spirv-vc               lowering and the binary step: the final LLVM IR
    // RUN: not lower spirv-vc             the command must fail; its output is the error
    // RUN: lower spirv --check-prefix=SIMT    check with SIMT: lines instead of CHECK: lines

Check lines (``PREFIX`` is ``CHECK`` unless a RUN line says otherwise)::

    // CHECK: text          found at or after the end of the previous match
    // CHECK-NEXT: text     found on the line after the previous match's line
    // CHECK-SAME: text     found on the previous match's line, after it
    // CHECK-NOT: text      absent between the previous match and the next one (or the end)

In a pattern, runs of spaces match runs of spaces or tabs, ``{{re}}`` is a regular
expression, ``[[NAME:re]]`` matches ``re`` and binds NAME, ``[[NAME]]`` matches what NAME
was bound to.  Every other character stands for itself.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

RUN_LINE = re.compile(r"^\s*//\s*RUN:\s*(.*?)\s*$")
DIRECTIVES = ("NEXT", "SAME", "NOT")


class CheckFailure(AssertionError):
    pass


@dataclass
class Check:
    kind: str       # "", "NEXT", "SAME" or "NOT"
    pattern: str
    line: int       # 1-based, in the test file


@dataclass
class Run:
    command: list   # the words after RUN:, without "not" and --check-prefix
    expect_failure: bool
    prefix: str


def read_runs(text: str) -> list:
    runs = []
    for line in text.splitlines():
        m = RUN_LINE.match(line)
        if not m:
            continue
        words = shlex.split(m.group(1))
        prefix = "CHECK"
        for w in list(words):
            if w.startswith("--check-prefix="):
                prefix = w.split("=", 1)[1]
                words.remove(w)
        expect_failure = bool(words) and words[0] == "not"
        runs.append(Run(words[1:] if expect_failure else words, expect_failure, prefix))
    return runs


def read_checks(text: str, prefix: str) -> list:
    """The check lines of ``prefix``; a misspelt directive (``CHECK-NXT:``) is an error, not
    a line silently skipped."""
    line_re = re.compile(rf"//\s*{re.escape(prefix)}(?:-([A-Z]+))?:\s?(.*?)\s*$")
    checks = []
    for number, line in enumerate(text.splitlines(), 1):
        m = line_re.search(line)
        if not m:
            continue
        if m.group(1) and m.group(1) not in DIRECTIVES:
            raise CheckFailure(f"line {number}: unknown directive {prefix}-{m.group(1)}: "
                               f"use {', '.join(prefix + '-' + d for d in DIRECTIVES)}")
        checks.append(Check(m.group(1) or "", m.group(2), number))
    return checks


def pattern_regex(pattern: str, bound: dict) -> tuple:
    """(compiled regex, names it binds in order); ``bound`` holds the variables defined so far."""
    parts, names = [], []
    for token in re.split(r"(\{\{.*?\}\}|\[\[.*?\]\])", pattern):
        if token.startswith("{{") and token.endswith("}}"):
            parts.append(f"(?:{token[2:-2]})")
        elif token.startswith("[[") and token.endswith("]]"):
            name, colon, regex = token[2:-2].partition(":")
            if colon:
                parts.append(f"(?P<{name}>{regex})")
                names.append(name)
            elif name in bound:
                parts.append(re.escape(bound[name]))
            else:
                raise CheckFailure(f"variable [[{name}]] is used before it is defined")
        else:
            parts.append(r"[ \t]+".join(re.escape(w) for w in re.split(r"[ \t]+", token)))
    return re.compile("".join(parts), re.MULTILINE), names


def check_output(output: str, checks: list, where: str = "") -> None:
    """Raises CheckFailure naming the first check that does not hold."""
    if not checks:
        raise CheckFailure(f"{where}: no check lines: a test must check something")
    bound, pending_not = {}, []
    pos = 0                     # where the next search starts
    last_line_start = 0         # start of the line holding the previous match

    def fail(check, message):
        line_no = output.count("\n", 0, pos) + 1
        raise CheckFailure(f"{where}:{check.line}: {message}: {check.pattern!r} "
                           f"(searched from output line {line_no})\n--- output ---\n{output}")

    def line_end(at):
        end = output.find("\n", at)
        return len(output) if end < 0 else end

    def verify_nots(upto):
        for check in pending_not:
            regex, _ = pattern_regex(check.pattern, bound)
            m = regex.search(output, pos, upto)
            if m:
                fail(check, f"CHECK-NOT pattern found at output line {output.count(chr(10), 0, m.start()) + 1}")
        pending_not.clear()

    for check in checks:
        if check.kind == "NOT":
            pending_not.append(check)
            continue
        regex, names = pattern_regex(check.pattern, bound)
        if check.kind == "SAME":
            m = regex.search(output, pos, line_end(pos))
        elif check.kind == "NEXT":
            next_start = line_end(last_line_start) + 1
            if pos > next_start:     # the previous match ran onto a later line
                fail(check, "CHECK-NEXT after a match that ends past the next line")
            m = regex.search(output, next_start, line_end(next_start)) if next_start <= len(output) else None
        else:
            m = None
            for line in re.finditer(r"[^\n]*", output[pos:]):   # a match lies within one line
                m = regex.search(output, pos + line.start(), pos + line.end())
                if m:
                    break
        if m is None:
            fail(check, f"CHECK{'-' + check.kind if check.kind else ''} not matched")
        verify_nots(m.start())
        bound.update({n: m.group(n) for n in names})
        last_line_start = output.rfind("\n", 0, m.start()) + 1
        pos = m.end()
    verify_nots(len(output))
