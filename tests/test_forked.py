"""cmlang.runtime.forked: results, exceptions and crashes of a forked child reach the parent."""
import os

import pytest

from cmlang.errors import CompileError
from cmlang.runtime.forked import ChildCrashed, call_in_child


def test_result_comes_back():
    assert call_in_child(lambda a, b: {"sum": a + b}, 2, 3) == {"sum": 5}


def test_exception_is_raised_in_the_parent():
    def fail():
        raise CompileError("no such builtin")
    with pytest.raises(CompileError, match="no such builtin"):
        call_in_child(fail)


def test_a_crash_reports_status_and_stderr():
    def crash():
        os.write(2, b"LLVM ERROR: something fatal\n")
        os.abort()
    with pytest.raises(ChildCrashed) as info:
        call_in_child(crash)
    assert "LLVM ERROR: something fatal" in info.value.log and info.value.status != 0
