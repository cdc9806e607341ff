"""Run a function in a forked child process: ``cmlang.runtime.forked`` (the runtime isolates
the driver's builds with it; the compiler, LLVM's SPIR-V backend)."""
from .runtime.forked import ChildCrashed, call_in_child  # noqa: F401
