"""The interpreter: cmlang's executable reference semantics.

``run(fn, grid, group, args)`` executes an IR function (``cmlang.ir.Function``) on the
host with numpy, CM thread by CM thread, doing exactly what the op catalogue
``cmlang.ir.ops`` says for every opcode. It is what ``CMLANG_INTERPRET=1`` and
``@cm.kernel(interpret=True)`` run, and it is the oracle the compiled code is held to:
device tests launch a kernel on a device and in the interpreter with the same inputs
and compare the results.

Layout: ``values`` (how values are held; bf16 rounding), ``semantics`` (one numpy
function maker per data opcode, a table keyed by opcode), ``memory`` (buffers, SLM,
bounds-checked memory ops), ``executor`` (preparation into per-op closures, control
flow, CM threads, groups and barriers, print and breakpoint).

What a device must match, and how closely:
- Exactly (bit for bit): integer ops (wrapping; div/rem truncate toward zero; shifts
  by ``b mod bits``), comparisons, select, conversions (float->int truncates; ``sat``
  clamps, NaN -> 0), bitcasts, regions, iselect, integer reductions, memory ops,
  atomics on integers, ids, control flow; float ``add sub mul`` and ``fma``
  (computed here in float64 and rounded once to float32: identical except in rare
  double-rounding ties; f64 ``fma`` rounds once, in exact rationals), ``min``/``max`` (a NaN operand,
  quiet or signaling, is ignored), ``abs neg floor ceil``, float->float conversions (nearest
  even); float ``cmpxchg`` compares bit patterns.
- Within a few ulp: f32 ``div``, ``sqrt``, ``rsqrt``, ``inv`` (OpenCL allows up to 2.5-3
  ulp unless correctly rounded division/sqrt is requested), and the transcendental ops
  ``exp exp2 log log2 pow sin cos tanh``: numpy computes them in float32 (its SIMD
  kernels are within about 1-4 ulp); OpenCL's full-profile bounds are 3-4 ulp (``pow``
  16, ``tanh`` 5), native_* variants are looser. Tests should allow ~8 ulp (relative
  tolerance ~1e-6 for f32) for these ops, more for f16/bf16 only through the
  final rounding (1 ulp of the small type).
- Up to summation order: float ``reduce add/mul`` and ``dpas`` (numpy sums pairwise
  and BLAS blocks the matmul; devices use trees or systolic order): compare with a
  tolerance proportional to the number of terms.
- bf16 is computed as float32 and rounded to bf16 (nearest even) after every op.
- Anything ops.py calls undefined (float->int out of range without ``sat``, integer
  division by zero, data races between CM threads) is not compared; the interpreter
  raises for division by zero and out-of-range region/iselect indices, and checks
  every memory access against its buffer (``KernelRuntimeError`` names the file, line,
  column, the CM thread and the source line). SLM starts as NaN/0xCD garbage.
"""
from .executor import run, Program  # noqa: F401
from .values import round_to_bf16, round_to_tf32, bf16_bits_to_f32, f32_to_bf16_bits  # noqa: F401

__all__ = ["run", "Program", "round_to_bf16", "round_to_tf32", "bf16_bits_to_f32", "f32_to_bf16_bits"]
