"""SIMT code generation: IR built by hand -> LLVM -> SPIR-V -> the Intel OpenCL CPU runtime.

The kernels here are written with ``cmlang.ir.Builder`` directly (no front end), compiled
with ``cmlang.codegen.compile_function``, checked with spirv-val, run with plain pyopencl
and compared with numpy. Many cases share one kernel to keep the runtime builds few.
"""
import re

import numpy as np
import pytest

import cmlang  # noqa: F401  (registers the Intel CPU runtime before pyopencl loads)
from cmlang.errors import CompileError
from cmlang.ir.core import Block, Builder, Function
from cmlang.types import (VectorType, bf16, bool_, f16, f32, i8, i32, i64, ptr, u8, u16, u32)
from cmlang.codegen import compile_function, spirv as cg_spirv
from cmlang.codegen import llvm_builtins


def vec(t, n):
    return VectorType(t, (n,))


def mat(t, r, c):
    return VectorType(t, (r, c))


# --- building kernels by hand ---------------------------------------------------------------

class KB:
    """Builds an IR kernel op by op: ``kb("add", t, x, y)`` appends an op and returns its result."""

    def __init__(self, simd=16, **params):
        self.simd = simd
        self.names = list(params)
        self.body = Block(list(params.values()), self.names)
        self.b = Builder(self.body)
        self.p = dict(zip(self.names, self.body.args))

    def __call__(self, opcode, rtype, *operands, **attrs):
        return self.b.op1(opcode, list(operands), rtype, **attrs)

    def do(self, opcode, *operands, **attrs):
        return self.b.create(opcode, list(operands), [], attrs)

    def c(self, t, value):
        return self("const", t, value=value)

    def tid(self, dim=0):
        return self("thread_id", i32, dim=dim)

    def region(self, src, rtype, offset, vsize, vstride, hsize, hstride, dyn=None):
        ops = [src] + ([dyn] if dyn is not None else [])
        return self("rdregion", rtype, *ops, offset=offset, vsize=vsize, vstride=vstride,
                    hsize=hsize, hstride=hstride)

    def wregion(self, dst, src, offset, vsize, vstride, hsize, hstride, dyn=None):
        ops = [dst, src] + ([dyn] if dyn is not None else [])
        return self("wrregion", dst.type, *ops, offset=offset, vsize=vsize, vstride=vstride,
                    hsize=hsize, hstride=hstride)

    def nested(self, opcode, operands, result_types, blocks_args, fill):
        """An op owning blocks; ``fill(i, builder_args)`` fills block i and returns its terminator."""
        blocks = [Block(types) for types in blocks_args]
        op = self.b.create(opcode, operands, result_types, blocks=blocks)
        for i, block in enumerate(blocks):
            saved = self.b.block
            self.b.block = block
            term, values = fill(i, block.args)
            self.b.create(term, values)
            self.b.block = saved
        return op.results

    def for_(self, lo, hi, step, inits, body):
        types = [lo.type] + [v.type for v in inits]
        return self.nested("for", [lo, hi, step] + list(inits), [v.type for v in inits], [types],
                           lambda i, args: ("yield", body(*args)))

    def function(self, name="k"):
        self.b.create("return")
        return Function(name, self.body, self.names, self.simd)


# --- running on the Intel OpenCL CPU runtime -------------------------------------------------

_cl = {}


def opencl():
    """(pyopencl, context, queue) of the Intel CPU runtime, or skip."""
    if not _cl:
        cl = pytest.importorskip("pyopencl")
        platforms = [p for p in cl.get_platforms() if "Intel" in p.name and p.get_devices()]
        if not platforms:
            pytest.skip("the Intel OpenCL CPU runtime is not available")
        context = cl.Context(platforms[0].get_devices()[:1])
        _cl.update(cl=cl, context=context, queue=cl.CommandQueue(context))
    return _cl["cl"], _cl["context"], _cl["queue"]


def compile_checked(fn):
    result = compile_function(fn)
    cg_spirv.validate(result.spirv)
    return result


def run(fn, *args, grid=1, group=1):
    """Compile, validate, and run ``fn`` over ``grid`` CM threads; numpy arrays are copied back."""
    result = compile_checked(fn)
    cl, context, queue = opencl()
    kernel = getattr(cl.Program(context, result.spirv).build(), result.kernel_name)
    grid = grid if isinstance(grid, tuple) else (grid,)
    group = group if isinstance(group, tuple) else (group,)
    global_size = (grid[0] * fn.simd,) + tuple(grid[1:])
    local_size = (group[0] * fn.simd,) + tuple(group[1:])
    buffers = []
    cl_args = []
    for a in args:
        if isinstance(a, np.ndarray):
            buf = cl.Buffer(context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=a)
            buffers.append((buf, a))
            cl_args.append(buf)
        else:
            cl_args.append(a)
    kernel(queue, global_size, local_size, *cl_args)
    for buf, a in buffers:
        cl.enqueue_copy(queue, a, buf)
    queue.finish()
    return result


def bf16_bits(x):
    """float32 -> bf16 bit patterns (round to nearest even), as uint16."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype(np.uint16)


def from_bf16_bits(bits):
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)


RNG = np.random.default_rng(7)
pytestmark = pytest.mark.filterwarnings("ignore:Non-empty compiler output")


# --- element-wise ---------------------------------------------------------------------------

FLOAT_REFERENCE = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "min": np.fmin,
    "max": np.fmax, "pow": np.power, "rem": np.fmod,
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "log": np.log,
    "log2": np.log2, "sqrt": np.sqrt, "rsqrt": lambda a: 1 / np.sqrt(a), "inv": lambda a: 1 / a,
    "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil,
}
BINARY_NAMES = ("add", "sub", "mul", "div", "min", "max", "pow", "rem")


def test_float_elementwise_with_a_partial_slot():
    n = 24                      # 1.5 slots at simd 16
    t = vec(f32, n)
    kb = KB(a=ptr[f32], b=ptr[f32], out=ptr[f32])
    zero = kb.c(i32, 0)
    va = kb("load", t, kb.p["a"], zero)
    vb = kb("load", t, kb.p["b"], zero)
    results = []
    for name in FLOAT_REFERENCE:
        results.append(kb(name, t, va, vb) if name in BINARY_NAMES else kb(name, t, va))
    results.append(kb("fma", t, va, vb, va))
    mask = kb("cmp", vec(bool_, n), va, vb, pred="lt")
    results.append(kb("select", t, mask, va, vb))
    for i, r in enumerate(results):
        kb.do("store", kb.p["out"], kb.c(i32, i * n), r)
    a = RNG.uniform(0.5, 4, n).astype(np.float32)
    b = RNG.uniform(0.5, 3, n).astype(np.float32)
    out = np.full(len(results) * n + 8, -7, np.float32)
    run(kb.function(), a, b, out)
    expected = [FLOAT_REFERENCE[k](a, b) if k in BINARY_NAMES else FLOAT_REFERENCE[k](a)
                for k in FLOAT_REFERENCE]
    expected += [a * b + a, np.where(a < b, a, b)]
    for i, (name, e) in enumerate(zip(list(FLOAT_REFERENCE) + ["fma", "select"], expected)):
        np.testing.assert_allclose(out[i * n:(i + 1) * n], e, rtol=2e-6, err_msg=name)
    assert (out[len(results) * n:] == -7).all()      # padding lanes never stored


def test_half_math_lowers_without_imports():
    """Every f16 math op maps to a builtin the backend knows (computed in half)."""
    n = 16
    t = vec(f16, n)
    kb = KB(a=ptr[f16], out=ptr[f16])
    va = kb("load", t, kb.p["a"], kb.c(i32, 0))
    names = [k for k in FLOAT_REFERENCE if k not in BINARY_NAMES]
    for i, name in enumerate(names):
        kb.do("store", kb.p["out"], kb.c(i32, i * n), kb(name, t, va))
    kb.do("store", kb.p["out"], kb.c(i32, len(names) * n), kb("pow", t, va, va))
    a = RNG.uniform(0.5, 4, n).astype(np.float16)
    out = np.zeros((len(names) + 1) * n, np.float16)
    run(kb.function(), a, out)
    a32 = a.astype(np.float32)
    for i, name in enumerate(names + ["pow"]):
        e = np.power(a32, a32) if name == "pow" else FLOAT_REFERENCE[name](a32)
        np.testing.assert_allclose(out[i * n:(i + 1) * n].astype(np.float32), e, rtol=2e-3, err_msg=name)


INT_REFERENCE = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "div": lambda a, b: np.trunc(a / b).astype(a.dtype),
    "rem": lambda a, b: a - b * np.trunc(a / b).astype(a.dtype),
    "min": np.minimum, "max": np.maximum, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "shl": lambda a, b: a << (b & 31), "shr": lambda a, b: a >> (b & 31),
    "neg": np.negative, "not": np.invert, "abs": np.abs,
}


@pytest.mark.parametrize("elem", [i32, u32])
def test_int_elementwise(elem):
    n = 20
    t = vec(elem, n)
    kb = KB(a=ptr[elem], b=ptr[elem], out=ptr[elem])
    zero = kb.c(i32, 0)
    va = kb("load", t, kb.p["a"], zero)
    vb = kb("load", t, kb.p["b"], zero)
    names = [k for k in INT_REFERENCE if not (k in ("neg", "abs") and elem == u32)]
    for i, name in enumerate(names):
        r = kb(name, t, va) if name in ("neg", "not", "abs") else kb(name, t, va, vb)
        kb.do("store", kb.p["out"], kb.c(i32, i * n), r)
    dt = np.dtype(elem.np_dtype)
    a = RNG.integers(-1000 if elem == i32 else 0, 1000, n).astype(dt)
    b = RNG.integers(1, 40, n).astype(dt) * (RNG.choice([-1, 1], n).astype(dt) if elem == i32 else dt.type(1))
    out = np.zeros(len(names) * n, dt)
    run(kb.function(), a, b, out)
    for i, name in enumerate(names):
        args = (a,) if name in ("neg", "not", "abs") else (a, b)
        np.testing.assert_array_equal(out[i * n:(i + 1) * n], INT_REFERENCE[name](*args), err_msg=name)


def test_undefined_integer_division_does_not_trap():
    """x / 0 and INT_MIN / -1 are undefined; on the CPU runtime they must not kill the process."""
    n = 24
    t = vec(i32, n)
    kb = KB(a=ptr[i32], b=ptr[i32], out=ptr[i32])
    va = kb("load", t, kb.p["a"], kb.c(i32, 0))
    vb = kb("load", t, kb.p["b"], kb.c(i32, 0))
    kb.do("store", kb.p["out"], kb.c(i32, 0), kb("div", t, va, vb))
    kb.do("store", kb.p["out"], kb.c(i32, n), kb("rem", t, va, vb))
    a = np.arange(n, dtype=np.int32) * 7 - 50
    b = np.arange(n, dtype=np.int32) % 5 - 2                  # includes 0 and -1
    a[3], b[3] = -2 ** 31, -1
    out = np.zeros(2 * n, np.int32)
    run(kb.function(), a, b, out)
    ok = b != 0                                               # x / 0: any value
    a64, b64 = a[ok].astype(np.int64), b[ok].astype(np.int64)
    quotient = np.abs(a64) // np.abs(b64) * np.sign(a64) * np.sign(b64)
    np.testing.assert_array_equal(out[:n][ok], quotient.astype(np.int32))     # INT_MIN / -1 wraps
    np.testing.assert_array_equal(out[n:][ok], (a64 - b64 * quotient).astype(np.int32))


@pytest.mark.parametrize("simd", [16, 32])
def test_conversions_and_saturation(simd):
    n = 16
    kb = KB(simd=simd, x=ptr[f32], xi=ptr[i32], of=ptr[f32], oi=ptr[i32], ob=ptr[u8], oh=ptr[f16], obf=ptr[u16],
            os=ptr[u16])
    zero = kb.c(i32, 0)
    x = kb("load", vec(f32, n), kb.p["x"], zero)
    xi = kb("load", vec(i32, n), kb.p["xi"], zero)
    store = kb.do
    store("store", kb.p["oi"], zero, kb("convert", vec(i32, n), x, sat=False))
    store("store", kb.p["oi"], kb.c(i32, n), kb("convert", vec(i32, n), kb("convert", vec(i8, n), xi, sat=True), sat=False))
    store("store", kb.p["ob"], zero, kb("convert", vec(u8, n), x, sat=True))
    store("store", kb.p["of"], zero, kb("convert", vec(f32, n), xi, sat=False))
    store("store", kb.p["oh"], zero, kb("convert", vec(f16, n), x, sat=False))
    half_back = kb("convert", vec(f32, n), kb("convert", vec(f16, n), x, sat=False), sat=False)
    store("store", kb.p["of"], kb.c(i32, n), half_back)
    xb = kb("convert", vec(bf16, n), x, sat=False)
    store("store", kb.p["obf"], zero, kb("bitcast", vec(u16, n), xb))
    bsum = kb("add", vec(bf16, n), xb, xb)          # bf16 arithmetic rounds to bf16 again
    store("store", kb.p["obf"], kb.c(i32, n), kb("bitcast", vec(u16, n), bsum))
    # f16 -> u16 with saturation (at 32 lanes the CPU runtime once lacked a builtin for it)
    store("store", kb.p["os"], zero, kb("convert", vec(u16, n), kb("convert", vec(f16, n), x, sat=False), sat=True))
    flag = kb("convert", vec(bool_, n), xi, sat=False)
    store("store", kb.p["oi"], kb.c(i32, 2 * n), kb("convert", vec(i32, n), flag, sat=False))
    xv = np.array([-300.7, -1.5, -0.5, 0, 0.4, 1.6, 254.5, 255.5, 300, 1e10, -1e10, 3.14159,
                   65504, 70000, 1 / 3, np.nan], np.float32)
    xv[:8] *= 1
    xiv = np.array([-1000, -129, -128, -1, 0, 1, 127, 128, 1000, 5, -5, 77, 0, 3, 2 ** 30, -2 ** 31], np.int32)
    of, oi = np.zeros(2 * n, np.float32), np.zeros(3 * n, np.int32)
    ob, oh, obf = np.zeros(n, np.uint8), np.zeros(n, np.float16), np.zeros(2 * n, np.uint16)
    os_ = np.zeros(n, np.uint16)
    run(kb.function(), xv, xiv, of, oi, ob, oh, obf, os_)
    finite = np.isfinite(xv) & (np.abs(xv) < 2 ** 31)
    np.testing.assert_array_equal(oi[:n][finite], np.trunc(xv[finite]).astype(np.int32))
    np.testing.assert_array_equal(oi[n:2 * n], np.clip(xiv, -128, 127))
    np.testing.assert_array_equal(ob, np.nan_to_num(np.clip(np.trunc(xv), 0, 255), nan=0).astype(np.uint8))
    np.testing.assert_array_equal(of[:n], xiv.astype(np.float32))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(oh, xv.astype(np.float16))
        np.testing.assert_array_equal(of[n:], xv.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(obf[:n], bf16_bits(xv))
    np.testing.assert_array_equal(obf[n:][:-1], bf16_bits(2 * from_bf16_bits(bf16_bits(xv)))[:-1])
    np.testing.assert_array_equal(oi[2 * n:], (xiv != 0).astype(np.int32))
    with np.errstate(over="ignore", invalid="ignore"):
        h = xv.astype(np.float16).astype(np.float64)
    np.testing.assert_array_equal(os_, np.nan_to_num(np.clip(np.trunc(h), 0, 65535), nan=0).astype(np.uint16))


# --- regions: the permutation primitive ------------------------------------------------------

def _region_reference(src, offset, vsize, vstride, hsize, hstride):
    r, c = np.meshgrid(np.arange(vsize), np.arange(hsize), indexing="ij")
    return src[(offset + r * vstride + c * hstride).ravel()]


REGIONS = [  # (source size, offset, vsize, vstride, hsize, hstride)
    (24, 0, 1, 0, 24, 1),        # identity: moves only
    (24, 3, 1, 0, 8, 2),         # strided window
    (24, 5, 1, 0, 16, 1),        # shifted: two source slots per result slot
    (24, 23, 1, 0, 24, -1),      # reversed (negative stride)
    (8, 2, 1, 0, 24, 0),         # broadcast of one element
    (24, 0, 4, 6, 3, 2),         # 2-D region (rows of a 4x6 matrix)
    (24, 0, 6, 4, 4, 1),         # 2-D, more than a slot
    (32, 0, 16, 1, 2, 16),       # transpose of a 2x16 matrix
    (24, 0, 3, 0, 8, 1),         # replicate 3 times
]


@pytest.mark.parametrize("simd", [8, 16, 32])
def test_rdregion_static(simd):
    kb = KB(simd=simd, src=ptr[f32], out=ptr[f32])
    out_off = 0
    expected = []
    src = np.arange(100, 132, dtype=np.float32)
    for n_src, offset, vsize, vstride, hsize, hstride in REGIONS:
        v = kb("load", vec(f32, n_src), kb.p["src"], kb.c(i32, 0))
        r = kb.region(v, vec(f32, vsize * hsize), offset, vsize, vstride, hsize, hstride)
        kb.do("store", kb.p["out"], kb.c(i32, out_off), r)
        expected.append(_region_reference(src[:n_src], offset, vsize, vstride, hsize, hstride))
        out_off += vsize * hsize
    out = np.zeros(out_off, np.float32)
    run(kb.function(), src, out)
    np.testing.assert_array_equal(out, np.concatenate(expected))


WRITE_REGIONS = [  # (dest size, offset, vsize, vstride, hsize, hstride)
    (24, 3, 1, 0, 8, 2),
    (24, 5, 1, 0, 16, 1),
    (8, 1, 1, 0, 3, 3),
    (24, 0, 4, 6, 3, 2),
    (40, 2, 3, 13, 5, 2),
]


@pytest.mark.parametrize("simd", [8, 16])
def test_wrregion_static_and_dynamic(simd):
    """Each region written twice: at a constant offset and at a run-time offset."""
    kb = KB(simd=simd, dst=ptr[i32], src=ptr[i32], out=ptr[i32], dyn=i32)
    out_off, expected = 0, []
    dst = np.arange(40, dtype=np.int32) * 10
    src = -np.arange(1, 41, dtype=np.int32)
    dyn_value = 1
    for n, offset, vsize, vstride, hsize, hstride in WRITE_REGIONS:
        d = kb("load", vec(i32, n), kb.p["dst"], kb.c(i32, 0))
        s = kb("load", vec(i32, vsize * hsize), kb.p["src"], kb.c(i32, 0))
        static = kb.wregion(d, s, offset, vsize, vstride, hsize, hstride)
        dynamic = kb.wregion(d, s, offset - 1, vsize, vstride, hsize, hstride, dyn=kb.p["dyn"])
        for r in (static, dynamic):
            kb.do("store", kb.p["out"], kb.c(i32, out_off), r)
            e = dst[:n].copy()
            rr, cc = np.meshgrid(np.arange(vsize), np.arange(hsize), indexing="ij")
            e[(offset + rr * vstride + cc * hstride).ravel()] = src[:vsize * hsize]
            expected.append(e)
            out_off += n
    out = np.zeros(out_off, np.int32)
    run(kb.function(), dst, src, out, np.int32(dyn_value))
    np.testing.assert_array_equal(out, np.concatenate(expected))


def test_rdregion_dynamic_offset_and_iselect():
    n = 24
    kb = KB(src=ptr[f32], idx=ptr[i32], out=ptr[f32], dyn=i32)
    v = kb("load", vec(f32, n), kb.p["src"], kb.c(i32, 0))
    outs = [kb.region(v, vec(f32, 8), 1, 1, 0, 8, 2, dyn=kb.p["dyn"]),        # v[dyn+1 :: 2][:8]
            kb.region(v, vec(f32, 6), 0, 2, 5, 3, 1, dyn=kb.p["dyn"])]        # 2x3 block at dyn
    idx = kb("load", vec(i32, 20), kb.p["idx"], kb.c(i32, 0))
    outs.append(kb("iselect", vec(f32, 20), v, idx))                              # dynamic
    static_idx = [23, 0, 5, 5, 17, 16, 1, 2, 3, 22, 8, 9]
    outs.append(kb("iselect", vec(f32, 12), v, kb.c(vec(i32, 12), tuple(static_idx))))  # static
    xor_idx = [i ^ 1 for i in range(16)]
    outs.append(kb("iselect", vec(f32, 16), v, kb.c(vec(i32, 16), tuple(xor_idx))))     # shuffle_xor
    rot_idx = [(i + 3) % 16 for i in range(16)]
    outs.append(kb("iselect", vec(f32, 16), v, kb.c(vec(i32, 16), tuple(rot_idx))))     # rotation
    off = 0
    for r in outs:
        kb.do("store", kb.p["out"], kb.c(i32, off), r)
        off += r.type.size
    src = RNG.standard_normal(n).astype(np.float32)
    idx_v = RNG.integers(0, n, 20).astype(np.int32)
    out = np.zeros(off, np.float32)
    dyn = 5
    result = run(kb.function(), src, idx_v, out, np.int32(dyn))
    expected = [src[dyn + 1::2][:8], src[[dyn + 5 * r + c for r in range(2) for c in range(3)]],
                src[idx_v], src[static_idx], src[xor_idx], src[rot_idx]]
    np.testing.assert_array_equal(out, np.concatenate(expected))
    assert "intel_sub_group_shuffle_xor" in result.llvm_ir


def test_extract_insert_build_bitcast():
    kb = KB(src=ptr[i32], out=ptr[i32], dyn=i32)
    v = kb("load", vec(i32, 24), kb.p["src"], kb.c(i32, 0))
    e_static = kb("extract", i32, v, index=19)
    e_dyn = kb("extract", i32, v, kb.p["dyn"], index=2)
    ins = kb("insert", v.type, v, e_static, index=3)
    ins = kb("insert", v.type, ins, e_dyn, kb.p["dyn"], index=10)
    built = kb("build", vec(i32, 4), e_static, e_dyn, kb.c(i32, 7), e_static)
    as_bytes = kb("bitcast", vec(u8, 96), v)                        # split: 4 bytes per element
    wide = kb("bitcast", vec(i64, 12), v)                           # join: 2 elements per i64
    back = kb("bitcast", vec(i32, 24), as_bytes)
    bytes_i32 = kb("convert", vec(i32, 96), as_bytes, sat=False)
    wide_lo = kb("convert", vec(i32, 12), wide, sat=False)
    wide_hi = kb("convert", vec(i32, 12), kb("shr", vec(i64, 12), wide, kb("splat", vec(i64, 12), kb.c(i64, 32))), sat=False)
    kb.do("store", kb.p["out"], kb.c(i32, 0), e_static)
    kb.do("store", kb.p["out"], kb.c(i32, 1), e_dyn)
    off = 2
    for r in (ins, built, back, bytes_i32, wide_lo, wide_hi):
        kb.do("store", kb.p["out"], kb.c(i32, off), r)
        off += r.type.size
    src = (RNG.integers(-2 ** 31, 2 ** 31 - 1, 24)).astype(np.int32)
    out = np.zeros(off, np.int32)
    dyn = 9
    run(kb.function(), src, out, np.int32(dyn))
    ins_ref = src.copy()
    ins_ref[3] = src[19]
    ins_ref[10 + dyn] = src[2 + dyn]
    expected = np.concatenate([[src[19], src[2 + dyn]], ins_ref, [src[19], src[2 + dyn], 7, src[19]], src,
                               src.view(np.uint8).astype(np.int32), src.view(np.int64).astype(np.int32),
                               (src.view(np.int64) >> 32).astype(np.int32)])
    np.testing.assert_array_equal(out, expected)


# --- reductions ------------------------------------------------------------------------------

REDUCE_REFERENCE = {"add": np.add, "mul": np.multiply, "min": np.minimum, "max": np.maximum,
                    "and": np.bitwise_and, "or": np.bitwise_or}


@pytest.mark.parametrize("simd", [8, 16, 32])
def test_reductions(simd):
    """Full reductions of vectors with partial slots, and matrix reductions along each axis."""
    kb = KB(simd=simd, f=ptr[f32], i=ptr[i32], of=ptr[f32], oi=ptr[i32])
    shapes = [(24,), (5,), (4, 16), (8, 8), (3, 5), (2, 32), (16, 4)]
    if simd == 32:          # the CPU runtime builds 32-lane code slowly: fewer cases
        shapes = [(40,), (3, 5), (2, 32)]
    zero = kb.c(i32, 0)
    fo, io = [0], [0]
    expected_f, expected_i = [], []
    fdata = RNG.uniform(0.5, 1.5, 64).astype(np.float32)
    idata = RNG.integers(-100, 100, 64).astype(np.int32)

    def out(kind, r, e, is_float):
        ptr_, counter, exp = (kb.p["of"], fo, expected_f) if is_float else (kb.p["oi"], io, expected_i)
        kb.do("store", ptr_, kb.c(i32, counter[0]), r)
        counter[0] += 1 if r.type in (f32, i32) else r.type.size
        exp.append(np.atleast_1d(e))

    for shape in shapes:
        n = int(np.prod(shape))
        t = VectorType(f32, shape)
        fv = kb("load", vec(f32, n), kb.p["f"], zero)
        iv = kb("load", vec(i32, n), kb.p["i"], zero)
        fm, im = kb("bitcast", t, fv), kb("bitcast", t.with_elem(i32), iv)
        fref, iref = fdata[:n].reshape(shape), idata[:n].reshape(shape)
        axes = [None] if len(shape) == 1 else [None, 0, 1]
        for axis in axes:
            for kind in ("add", "mul", "min", "max"):
                rt = f32 if axis is None else vec(f32, shape[1 - axis])
                out(kind, kb("reduce", rt, fm, kind=kind, axis=axis), REDUCE_REFERENCE[kind].reduce(fref, axis=axis), True)
            for kind in ("add", "min", "max", "and", "or"):
                rt = i32 if axis is None else vec(i32, shape[1 - axis])
                out(kind, kb("reduce", rt.with_elem(i32) if axis is not None else i32, im, kind=kind, axis=axis),
                    REDUCE_REFERENCE[kind].reduce(iref, axis=axis), False)
    mask = kb("cmp", vec(bool_, 24), kb("load", vec(i32, 24), kb.p["i"], zero), kb("splat", vec(i32, 24), kb.c(i32, 90)), pred="lt")
    for kind in ("and", "or"):
        out(kind, kb("convert", i32, kb("reduce", bool_, mask, kind=kind, axis=None), sat=False),
            int(REDUCE_REFERENCE[kind].reduce(idata[:24] < 90)), False)
    of = np.zeros(fo[0], np.float32)
    oi = np.zeros(io[0], np.int32)
    run(kb.function(), fdata, idata, of, oi)
    np.testing.assert_allclose(of, np.concatenate(expected_f).astype(np.float32), rtol=1e-5)
    np.testing.assert_array_equal(oi, np.concatenate(expected_i))


# --- dpas ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("M,K,N,elem", [(4, 8, 16, f32), (8, 16, 32, f16), (3, 5, 7, f32), (2, 16, 8, bf16)])
def test_dpas(M, K, N, elem):
    kb = KB(acc=ptr[f32], a=ptr[u16 if elem == bf16 else elem], b=ptr[u16 if elem == bf16 else elem], out=ptr[f32])
    zero = kb.c(i32, 0)
    acc = kb("bitcast", mat(f32, M, N), kb("load", vec(f32, M * N), kb.p["acc"], zero))

    def operand(name, r, c):
        raw = kb("load", vec(u16 if elem == bf16 else elem, r * c), kb.p[name], zero)
        return kb("bitcast", mat(elem, r, c), raw)
    res = kb("dpas", mat(f32, M, N), acc, operand("a", M, K), operand("b", K, N))
    kb.do("store", kb.p["out"], zero, kb("bitcast", vec(f32, M * N), res))
    accv = RNG.standard_normal(M * N).astype(np.float32)
    a = RNG.standard_normal(M * K).astype(np.float32)
    b = RNG.standard_normal(K * N).astype(np.float32)
    if elem == f16:
        a, b = a.astype(np.float16), b.astype(np.float16)
        args = (a, b)
    elif elem == bf16:
        args = (bf16_bits(a), bf16_bits(b))
        a, b = from_bf16_bits(args[0]), from_bf16_bits(args[1])
    else:
        args = (a, b)
    out = np.zeros(M * N, np.float32)
    result = run(kb.function(), accv, *args, out)
    expected = accv.reshape(M, N) + a.astype(np.float32).reshape(M, K) @ b.astype(np.float32).reshape(K, N)
    np.testing.assert_allclose(out.reshape(M, N), expected, rtol=1e-4, atol=1e-4)
    if N % 16 == 0:      # fast path: a[m, k] broadcasts feeding one fma per slot, no shuffles
        assert "shuffle" not in result.llvm_ir


@pytest.mark.parametrize("M,K,N,elem,overwrite", [(8, 16, 32, f32, False), (6, 24, 32, f16, False),
                                                   (8, 16, 32, f32, True)])
def test_big_dpas_is_a_loop_reading_b_rows_from_memory(M, K, N, elem, overwrite):
    """b = load2d(...) used only by a big dpas: the dpas is a loop over k that loads row k of b
    (K = 24: a's rows straddle slots). A store between the load and the dpas keeps it unrolled."""
    pitch, off = N + 16, 3 * (N + 16) + 16          # b is a window of a wider matrix
    kb = KB(a=ptr[elem], b=ptr[elem], out=ptr[f32])
    zero = kb.c(i32, 0)
    a_tile = kb("bitcast", mat(elem, M, K), kb("load", vec(elem, M * K), kb.p["a"], zero))
    b_tile = kb("load2d", mat(elem, K, N), kb.p["b"], kb.c(i32, off), kb.c(i32, pitch))
    if overwrite:        # the dpas must still see the values loaded before this store
        kb.do("store2d", kb.p["b"], kb.c(i32, off), kb.c(i32, pitch), kb("const", mat(elem, K, N), value=0.0))
    acc = kb("const", mat(f32, M, N), value=1.0)
    res = kb("dpas", mat(f32, M, N), acc, a_tile, b_tile)
    kb.do("store", kb.p["out"], zero, kb("bitcast", vec(f32, M * N), res))
    dt = np.dtype(elem.np_dtype)
    a = RNG.standard_normal(M * K).astype(dt)
    b = RNG.standard_normal(off + K * pitch).astype(dt)
    window = b[off:off + K * pitch].reshape(K, pitch)[:, :N].astype(np.float32)
    out = np.zeros(M * N, np.float32)
    result = run(kb.function(), a, b.copy(), out)
    expected = 1.0 + a.astype(np.float32).reshape(M, K) @ window
    np.testing.assert_allclose(out.reshape(M, N), expected, rtol=1e-4, atol=1e-4)
    fmas = result.llvm_ir.count("@llvm.fma.f32(") - 1     # calls (the declaration too)
    if overwrite:
        assert fmas == M * K * N // 16
    else:                # one iteration's fmas
        assert "loop:" in result.llvm_ir and fmas == M * N // 16


@pytest.mark.parametrize("elem", [f32, f16])
def test_big_dpas_reads_a_from_memory_when_both_operands_are_loads(elem):
    """a = load2d(...) and b = load2d(...), each used only by a big dpas: a[m, k] is one
    uniform scalar load in the loop (no select chain picking a's slot, no broadcast)."""
    M, K, N, pitch = 8, 24, 32, 40
    kb = KB(a=ptr[elem], b=ptr[elem], out=ptr[f32])
    a_tile = kb("load2d", mat(elem, M, K), kb.p["a"], kb.c(i32, 5), kb.c(i32, pitch))   # a window
    b_tile = kb("load2d", mat(elem, K, N), kb.p["b"], kb.c(i32, 0), kb.c(i32, N))
    res = kb("dpas", mat(f32, M, N), kb("const", mat(f32, M, N), value=0.5), a_tile, b_tile)
    kb.do("store", kb.p["out"], kb.c(i32, 0), kb("bitcast", vec(f32, M * N), res))
    dt = np.dtype(elem.np_dtype)
    a = RNG.standard_normal(5 + M * pitch).astype(dt)
    b = RNG.standard_normal(K * N).astype(dt)
    out = np.zeros(M * N, np.float32)
    result = run(kb.function(), a, b, out)
    window = a[5:5 + M * pitch].reshape(M, pitch)[:, :K].astype(np.float32)
    np.testing.assert_allclose(out.reshape(M, N), 0.5 + window @ b.astype(np.float32).reshape(K, N),
                               rtol=1e-4, atol=1e-4)
    loop = result.llvm_ir.split("loop:", 1)[1].split("loop.exit", 1)[0]
    assert "sub_group_broadcast" not in loop and " select " not in loop
    assert loop.count("@llvm.fma.f32(") == M * N // 16


# --- memory ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("elem", [f32, f16, i8])
def test_block_load_store_with_partial_slots(elem):
    """Each CM thread copies 40 elements (2.5 slots) at a thread-dependent offset; scalar store too."""
    n = 40
    kb = KB(src=ptr[elem], dst=ptr[elem], unaligned=ptr[elem], last=ptr[elem])
    base = kb("mul", i32, kb.tid(), kb.c(i32, 64))
    v = kb("load", vec(elem, n), kb.p["src"], base)
    kb.do("store", kb.p["dst"], base, v)
    odd = kb("add", i32, base, kb.c(i32, 1))
    kb.do("store", kb.p["unaligned"], odd, kb("load", vec(elem, n), kb.p["src"], odd))
    kb.do("store", kb.p["last"], kb.tid(), kb("extract", elem, v, index=n - 1))
    dt = np.dtype(elem.np_dtype)
    src = (np.arange(4 * 64) % 100).astype(dt)
    dst, unaligned, last = np.zeros_like(src), np.zeros_like(src), np.zeros(4, dt)
    result = run(kb.function(), src, dst, unaligned, last, grid=4)
    expected = np.zeros_like(src)
    unaligned_expected = np.zeros_like(src)
    for t in range(4):
        expected[t * 64:t * 64 + n] = src[t * 64:t * 64 + n]
        unaligned_expected[t * 64 + 1:t * 64 + 1 + n] = src[t * 64 + 1:t * 64 + 1 + n]
    np.testing.assert_array_equal(dst, expected)
    np.testing.assert_array_equal(unaligned, unaligned_expected)
    np.testing.assert_array_equal(last, src[np.arange(4) * 64 + n - 1])
    ir_text = result.llvm_ir
    if elem.bits == 32:   # reads are legal at any 4-byte element; writes need 16-byte alignment
        assert ir_text.count("SubgroupBlockReadINTEL") >= 4
        assert ir_text.count("call spir_func void @_Z31__spirv_SubgroupBlockWriteINTEL") == 2
    else:                 # 16-bit block IO is off (the CPU runtime miscompiles it), 8-bit illegal
        assert "SubgroupBlock" not in ir_text


def test_scalar_store_needs_no_lane_guard():
    """A scalar is uniform: every lane stores it (one scalar store after vectorization)."""
    kb = KB(x=ptr[f32], out=ptr[f32])
    total = kb("reduce", f32, kb("load", vec(f32, 32), kb.p["x"], kb("mul", i32, kb.tid(), kb.c(i32, 32))),
               kind="add", axis=None)
    kb.do("store", kb.p["out"], kb.tid(), total)
    x = RNG.standard_normal(3 * 32).astype(np.float32)
    out = np.zeros(3, np.float32)
    result = run(kb.function(), x, out, grid=3)
    np.testing.assert_allclose(out, x.reshape(3, 32).sum(axis=1), rtol=1e-5)
    assert "br i1" not in result.llvm_ir


def test_load2d_store2d():
    kb = KB(src=ptr[f32], dst=ptr[f32], pitch=i32)
    zero = kb.c(i32, 0)
    shapes = [(3, 5), (4, 16), (2, 24)]
    off_src, off_dst = 0, 0
    expected = {}
    pitch = 40
    for r, c in shapes:
        m = kb("load2d", mat(f32, r, c), kb.p["src"], kb.c(i32, off_src), kb.p["pitch"])
        m = kb("add", m.type, m, kb("splat", m.type, kb.c(f32, 1000.0)))
        kb.do("store2d", kb.p["dst"], kb.c(i32, off_dst), kb.p["pitch"], m)
        expected[(off_src, off_dst)] = (r, c)
        off_src += 3
        off_dst += 7 + r * pitch
    src = np.arange(2000, dtype=np.float32)
    dst = np.zeros(2000, np.float32)
    run(kb.function(), src, dst, np.int32(pitch))
    ref = np.zeros_like(dst)
    for (o_s, o_d), (r, c) in expected.items():
        for i in range(r):
            ref[o_d + i * pitch:o_d + i * pitch + c] = src[o_s + i * pitch:o_s + i * pitch + c] + 1000
    np.testing.assert_array_equal(dst, ref)
    del zero


def test_gather_scatter_with_masks():
    n = 20
    kb = KB(src=ptr[f32], offs=ptr[i32], dst=ptr[f32], out=ptr[f32])
    zero = kb.c(i32, 0)
    offs = kb("load", vec(i32, n), kb.p["offs"], zero)
    mask = kb("cmp", vec(bool_, n), offs, kb("splat", vec(i32, n), kb.c(i32, 50)), pred="lt")
    plain = kb("gather", vec(f32, n), kb.p["src"], offs)
    masked = kb("gather", vec(f32, n), kb.p["src"], offs, mask)
    kb.do("store", kb.p["out"], zero, plain)
    kb.do("store", kb.p["out"], kb.c(i32, n), masked)
    kb.do("scatter", kb.p["dst"], offs, plain, mask)
    # out-of-bounds offsets (>= 50) in masked lanes must not be touched: the buffer has 50.
    src = np.arange(50, dtype=np.float32) * 3
    offs_v = RNG.permutation(100)[:n].astype(np.int32)
    offs_v = np.where(offs_v < 50, offs_v, offs_v + 10 ** 6).astype(np.int32)
    offs_v[:5] = [1, 2, 3, 4, 6]
    plain_offs = np.where(offs_v < 50, offs_v, 0)
    dst = np.full(50, -1, np.float32)
    out = np.zeros(2 * n, np.float32)
    # 'plain' gathers every lane, so give it in-bounds offsets through a second kernel run
    run(kb.function(), src, plain_offs.astype(np.int32), dst, out)
    np.testing.assert_array_equal(out[:n], src[plain_offs])
    dst2, out2 = np.full(50, -1, np.float32), np.zeros(2 * n, np.float32)
    kb2 = KB(src=ptr[f32], offs=ptr[i32], dst=ptr[f32], out=ptr[f32])
    offs2 = kb2("load", vec(i32, n), kb2.p["offs"], kb2.c(i32, 0))
    mask2 = kb2("cmp", vec(bool_, n), offs2, kb2("splat", vec(i32, n), kb2.c(i32, 50)), pred="lt")
    g = kb2("gather", vec(f32, n), kb2.p["src"], offs2, mask2)
    kb2.do("store", kb2.p["out"], kb2.c(i32, 0), g)
    kb2.do("scatter", kb2.p["dst"], offs2, g, mask2)
    run(kb2.function(), src, offs_v, dst2, out2)
    inside = offs_v < 50
    np.testing.assert_array_equal(out2[:n], np.where(inside, src[np.where(inside, offs_v, 0)], 0))
    ref = np.full(50, -1, np.float32)
    ref[offs_v[inside]] = src[offs_v[inside]]
    np.testing.assert_array_equal(dst2, ref)


def test_atomics():
    n = 24
    kb = KB(counts=ptr[i32], fsum=ptr[f32], cas=ptr[i32], mins=ptr[i32], old=ptr[i32], one=ptr[i32],
            fmax=ptr[f32], big=ptr[i64])
    zero = kb.c(i32, 0)
    lanes = kb.c(vec(i32, n), tuple(i % 6 for i in range(n)))
    ones = kb("splat", vec(i32, n), kb.c(i32, 1))
    kb.do("atomic", kb.p["counts"], lanes, ones, kind="add")
    kb("atomic", vec(f32, n), kb.p["fsum"], lanes, kb("splat", vec(f32, n), kb.c(f32, 0.5)), kind="add")
    # cmpxchg: element i of the CM thread tries 0 -> tid+1 at slot i % 4: one winner per slot
    slots = kb.c(vec(i32, n), tuple(i % 4 for i in range(n)))
    new = kb("splat", vec(i32, n), kb("add", i32, kb.tid(), kb.c(i32, 1)))
    kb("atomic", vec(i32, n), kb.p["cas"], slots, kb("splat", vec(i32, n), zero), new, kind="cmpxchg")
    kb("atomic", vec(i32, n), kb.p["mins"], lanes, kb("splat", vec(i32, n), kb.tid()), kind="min")
    tid_f = kb("convert", f32, kb.tid(), sat=False)
    kb("atomic", vec(f32, n), kb.p["fmax"], lanes, kb("splat", vec(f32, n), tid_f), kind="max")
    kb("atomic", vec(i64, n), kb.p["big"], lanes, kb("splat", vec(i64, n), kb.c(i64, 2 ** 33)), kind="add")
    # scalar offset: one update per CM thread; the old value comes back uniform
    old = kb("atomic", i32, kb.p["one"], zero, kb.c(i32, 1), kind="add")
    kb.do("store", kb.p["old"], kb.tid(), old)
    grid = 8
    counts, fsum = np.zeros(6, np.int32), np.zeros(6, np.float32)
    cas, mins = np.zeros(4, np.int32), np.full(6, 99, np.int32)
    old_v, one = np.zeros(grid, np.int32), np.zeros(1, np.int32)
    fmax, big = np.full(6, -1, np.float32), np.zeros(6, np.int64)
    run(kb.function(), counts, fsum, cas, mins, old_v, one, fmax, big, grid=grid)
    np.testing.assert_array_equal(fmax, [grid - 1] * 6)
    np.testing.assert_array_equal(big, [grid * 4 * 2 ** 33] * 6)
    np.testing.assert_array_equal(counts, [grid * 4] * 6)
    np.testing.assert_array_equal(fsum, [grid * 4 * 0.5] * 6)
    assert ((cas >= 1) & (cas <= grid)).all()
    np.testing.assert_array_equal(mins, [0] * 6)
    assert one[0] == grid and sorted(old_v) == list(range(grid))


def test_cmpxchg_with_gathered_expected_values_and_partial_slot():
    """The old value comes back as a plain int (LLVM's {T, i1} cmpxchg could end up in a phi,
    which the SPIR-V backend rejects)."""
    n = 20
    kb = KB(p=ptr[i32], old=ptr[i32])
    offs = kb.c(vec(i32, n), tuple(range(n)))
    expected = kb("gather", vec(i32, n), kb.p["p"], offs)
    desired = kb("add", vec(i32, n), expected, kb("splat", vec(i32, n), kb.c(i32, 100)))
    old = kb("atomic", vec(i32, n), kb.p["p"], offs, expected, desired, kind="cmpxchg")
    kb.do("store", kb.p["old"], kb.c(i32, 0), old)
    p = np.arange(n, dtype=np.int32) * 3
    old_v = np.zeros(n, np.int32)
    run(kb.function(), p, old_v)
    np.testing.assert_array_equal(old_v, np.arange(n) * 3)
    np.testing.assert_array_equal(p, np.arange(n) * 3 + 100)


def test_slm_and_barrier_across_cm_threads():
    """A group of 4 CM threads: each writes its vector to SLM, then reads its neighbour's."""
    n, group = 24, 4
    kb = KB(src=ptr[f32], dst=ptr[f32])
    slm = kb("slm", ptr[f32].__class__(f32, "local"), n=n * group)
    lid = kb("local_id", i32, dim=0)
    base = kb("mul", i32, kb.tid(), kb.c(i32, n))
    v = kb("load", vec(f32, n), kb.p["src"], base)
    kb.do("store", slm, kb("mul", i32, lid, kb.c(i32, n)), v)
    kb.do("barrier")
    nxt = kb("rem", i32, kb("add", i32, lid, kb.c(i32, 1)), kb.c(i32, group))
    w = kb("load", vec(f32, n), slm, kb("mul", i32, nxt, kb.c(i32, n)))
    kb.do("fence")
    kb.do("store", kb.p["dst"], base, w)
    grid = 8
    src = np.arange(grid * n, dtype=np.float32)
    dst = np.zeros_like(src)
    run(kb.function(), src, dst, grid=grid, group=group)
    ref = src.reshape(grid // group, group, n)
    np.testing.assert_array_equal(dst.reshape(grid // group, group, n), np.roll(ref, -1, axis=1))


# --- control flow ------------------------------------------------------------------------------

def test_for_if_while_with_loop_carried_registers():
    """acc = sum of rows i < n; if sum > 0 negate; then halve while max(acc) > 10 (count steps)."""
    n, width = 5, 24
    t = vec(f32, width)
    kb = KB(src=ptr[f32], out=ptr[f32], steps=ptr[i32], rows=i32)
    zero_v = kb("splat", t, kb.c(f32, 0.0))

    def body(iv, acc):
        row = kb("load", t, kb.p["src"], kb("mul", i32, iv, kb.c(i32, width)))
        return [kb("add", t, acc, row)]
    (acc,) = kb.for_(kb.c(i32, 0), kb.p["rows"], kb.c(i32, 1), [zero_v], body)
    total = kb("reduce", f32, acc, kind="add", axis=None)
    positive = kb("cmp", bool_, total, kb.c(f32, 0.0), pred="gt")

    def branch(i, args):
        return ("yield", [kb("neg", t, acc)] if i == 0 else [acc])
    (acc2,) = kb.nested("if", [positive], [t], [[], []], branch)

    def loop(i, args):
        if i == 0:        # condition block: continue while max > 10
            v, count = args
            big = kb("cmp", bool_, kb("reduce", f32, kb("abs", t, v), kind="max", axis=None), kb.c(f32, 10.0), pred="gt")
            return "condition", [big, v, count]
        v, count = args
        return "yield", [kb("mul", t, v, kb("splat", t, kb.c(f32, 0.5))), kb("add", i32, count, kb.c(i32, 1))]
    acc3, count = kb.nested("while", [acc2, kb.c(i32, 0)], [t, i32], [[t, i32], [t, i32]], loop)
    kb.do("store", kb.p["out"], kb.c(i32, 0), acc3)
    kb.do("store", kb.p["steps"], kb.c(i32, 0), count)
    src = RNG.uniform(-3, 8, (8, width)).astype(np.float32)
    out, steps = np.zeros(width, np.float32), np.zeros(1, np.int32)
    run(kb.function(), src, out, steps, np.int32(n))
    ref = src[:n].sum(axis=0)
    if ref.sum() > 0:
        ref = -ref
    k = 0
    while np.abs(ref).max() > 10:
        ref, k = ref * np.float32(0.5), k + 1
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    assert steps[0] == k


def test_loop_with_negative_runtime_step_and_2d_grid():
    """for i in range(hi, lo, step) with step < 0 known only at run time; ids in 3 dimensions."""
    kb = KB(out=ptr[i32], step=i32)
    t = vec(i32, 8)

    def body(iv, acc):
        return [kb("add", t, acc, kb("splat", t, iv))]
    (acc,) = kb.for_(kb.c(i32, 10), kb.c(i32, 0), kb.p["step"], [kb("splat", t, kb.c(i32, 0))], body)
    iota = kb.c(t, tuple(range(8)))
    ids = [kb.tid(0), kb.tid(1), kb("group_id", i32, dim=1), kb("group_count", i32, dim=0),
           kb("local_size", i32, dim=0), kb("local_id", i32, dim=0)]
    flat = kb("add", i32, kb("mul", i32, kb.tid(1), kb.c(i32, 4)), kb.tid(0))
    base = kb("mul", i32, flat, kb.c(i32, 16))
    kb.do("store", kb.p["out"], base, kb("add", t, acc, iota))
    info = kb("build", t, *ids, kb.c(i32, 0), kb.c(i32, 0))
    kb.do("store", kb.p["out"], kb("add", i32, base, kb.c(i32, 8)), info)
    out = np.zeros(4 * 3 * 16, np.int32)
    run(kb.function(), out, np.int32(-3), grid=(4, 3), group=(2, 1))
    out = out.reshape(3, 4, 16)
    np.testing.assert_array_equal(out[..., :8], np.broadcast_to(10 + 7 + 4 + 1 + np.arange(8), (3, 4, 8)))
    for y in range(3):
        for x in range(4):
            np.testing.assert_array_equal(out[y, x, 8:14], [x, y, y, 2, 2, x % 2])


def test_loop_bound_from_scalar_min_is_broadcast_from_lane_0():
    """for i in range(min(n, tid + 2)): the CPU vectorizer sees OpenCL min() as per-lane and
    would run the loop under a lane mask; the bound must reach the loop only through a
    sub-group broadcast (a kernel-argument bound needs none)."""
    kb = KB(out=ptr[i32], n=i32)
    t = vec(i32, 16)
    bound = kb("min", i32, kb.p["n"], kb("add", i32, kb.tid(), kb.c(i32, 2)))

    def body(iv, acc):
        return [kb("add", t, acc, kb("splat", t, iv))]
    (acc,) = kb.for_(kb.c(i32, 0), bound, kb.c(i32, 1), [kb("splat", t, kb.c(i32, 0))], body)
    (acc,) = kb.for_(kb.c(i32, 0), kb.p["n"], kb.c(i32, 1), [acc], body)
    kb.do("store", kb.p["out"], kb("mul", i32, kb.tid(), kb.c(i32, 16)), acc)
    out = np.zeros(4 * 16, np.int32)
    llvm_ir = run(kb.function(), out, np.int32(4), grid=4).llvm_ir
    bounds = [min(4, tid + 2) for tid in range(4)]          # the second loop adds 0+1+2+3 = 6
    np.testing.assert_array_equal(out.reshape(4, 16), [[b * (b - 1) // 2 + 6] * 16 for b in bounds])
    (minimum,) = re.findall(r"(%[\w.]+) = [^\n]*call i32 @llvm\.[su]min\.i32\(", llvm_ir)
    uses = re.findall(re.escape(minimum) + r"\b(?! =)", llvm_ir)
    assert len(uses) == 1, llvm_ir
    assert re.search(r"call spir_func i32 @_Z19sub_group_broadcast\w*\(i32 " + re.escape(minimum)
                     + r", i32 0\)", llvm_ir), llvm_ir
    # calls for thread_id and the min bound, and the declaration: range(n) got none
    assert llvm_ir.count("sub_group_broadcast") == 3, llvm_ir


def test_while_condition_with_a_scalar_min_is_broadcast_from_lane_0():
    """while i < min(n, tid + 2): the condition reaches the branch through a sub-group
    broadcast (else the CPU vectorizer runs the loop masked); while i < n gets none."""
    import cmlang as cm

    def counting(bounded):
        def kernel(out: cm.ptr[i32], n: i32):
            t = cm.thread_id(0)
            acc = cm.zeros(cm.vector[i32, 16])
            i = 0
            if bounded:
                while i < cm.min(n, t + 2):
                    acc += i
                    i += 1
            else:
                while i < n:
                    acc += i
                    i += 1
            cm.store(out, t * 16, acc)
        kernel.__name__ = f"count_{'bounded' if bounded else 'plain'}"
        return cm.kernel(simd=16)(kernel)

    for bounded in (True, False):
        k = counting(bounded)
        out = np.zeros(4 * 16, np.int32)
        k[4](out, 4)
        bounds = [min(4, t + 2) if bounded else 4 for t in range(4)]
        np.testing.assert_array_equal(out.reshape(4, 16), [[b * (b - 1) // 2] * 16 for b in bounds])
        llvm_ir = k.compile().llvm_ir
        broadcast_branch = re.search(r"(%[\w.]+) = tail call spir_func i32 @_Z19sub_group_broadcastjj\(i32 [^,]+, "
                                     r"i32 0\)\n\s*(%[\w.]+) = trunc i32 \1 to i1\n\s*br i1 \2, label %while\.body",
                                     llvm_ir)
        assert bool(broadcast_branch) == bounded, llvm_ir


@pytest.mark.parametrize("simd", [8, 32])
def test_simd_widths_end_to_end(simd):
    """A kernel mixing loads, regions, a reduction and a dpas at each lane count."""
    kb = KB(simd=simd, a=ptr[f32], out=ptr[f32])
    base = kb("mul", i32, kb.tid(), kb.c(i32, 64))
    m = kb("bitcast", mat(f32, 8, 8), kb("load", vec(f32, 64), kb.p["a"], base))
    tr = kb.region(m, mat(f32, 8, 8), 0, 8, 1, 8, 8)                          # transpose
    prod = kb("dpas", mat(f32, 8, 8), kb("splat", mat(f32, 8, 8), kb.c(f32, 0.0)), m, tr)
    rowmax = kb("reduce", vec(f32, 8), prod, kind="max", axis=1)
    kb.do("store", kb.p["out"], base, kb("bitcast", vec(f32, 64), prod))
    kb.do("store", kb.p["out"], kb("add", i32, kb("mul", i32, kb.tid(), kb.c(i32, 8)), kb.c(i32, 3 * 64)), rowmax)
    a = RNG.standard_normal(3 * 64).astype(np.float32)
    out = np.zeros(3 * 64 + 3 * 8, np.float32)
    run(kb.function(), a, out, grid=3)
    for t in range(3):
        m_ref = a[t * 64:(t + 1) * 64].reshape(8, 8)
        p = m_ref @ m_ref.T
        np.testing.assert_allclose(out[t * 64:(t + 1) * 64].reshape(8, 8), p, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[3 * 64 + t * 8:3 * 64 + t * 8 + 8], p.max(axis=1), rtol=1e-5)


# --- debug ops -------------------------------------------------------------------------------------

def test_print_from_lane_zero(capfd):
    kb = KB(x=ptr[f32])
    v = kb("load", vec(f32, 4), kb.p["x"], kb.c(i32, 0))
    kb.do("print", kb.tid(), kb("extract", f32, v, index=2), v, fmt="t={} x={} v={} 100%")
    kb.do("breakpoint")
    run(kb.function(), np.array([1.5, 2.5, 3.5, 4.5], np.float32), grid=2)
    lines = sorted(line for line in capfd.readouterr().out.splitlines() if "t=" in line)
    assert lines == [f"[thread ({t}, 0, 0)] t={t} x=3.500000 v=[1.500000, 2.500000, 3.500000, 4.500000] 100%"
                     for t in range(2)]


# --- safety checks and errors ---------------------------------------------------------------------

def test_unrecognised_builtin_is_a_compile_error(monkeypatch):
    """A builtin the SPIR-V backend does not know would become an import: refuse the module."""
    monkeypatch.setitem(llvm_builtins.MATH_BUILTINS, "exp", "my_exp")
    kb = KB(x=ptr[f32])
    v = kb("load", vec(f32, 16), kb.p["x"], kb.c(i32, 0))
    kb.do("store", kb.p["x"], kb.c(i32, 0), kb("exp", v.type, v))
    with pytest.raises(CompileError, match=r"did not recognise the builtin\(s\) _Z6my_expf"):
        compile_function(kb.function())


def test_import_check_on_llvm_text():
    text = """target triple = "spirv64-unknown-unknown"
declare spir_func float @_Z9not_a_fnf(float)
declare spir_func i64 @_Z13get_global_idj(i32)
define spir_kernel void @k(ptr addrspace(1) %p) {
  %i = call spir_func i64 @_Z13get_global_idj(i32 0)
  %q = getelementptr float, ptr addrspace(1) %p, i64 %i
  %x = load float, ptr addrspace(1) %q
  %y = call spir_func float @_Z9not_a_fnf(float %x)
  store float %y, ptr addrspace(1) %q
  ret void
}"""
    with pytest.raises(CompileError, match="_Z9not_a_fnf") as info:
        cg_spirv.llvm_to_spirv(text)
    assert "get_global_id" not in str(info.value)    # builtin variables are imports too: not reported
    ok_text = text.replace("@_Z9not_a_fnf", "@_Z3expf")
    _, binary = cg_spirv.llvm_to_spirv(ok_text)
    assert cg_spirv.imported_functions(binary) == []


def test_backend_fatal_error_is_reported_not_fatal():
    text = """target triple = "spirv64-unknown-unknown"
declare spir_func float @_Z16sub_group_rotatefi(float, i32)
define spir_kernel void @k(ptr addrspace(1) %p) {
  %x = load float, ptr addrspace(1) %p
  %y = call spir_func float @_Z16sub_group_rotatefi(float %x, i32 1)
  store float %y, ptr addrspace(1) %p
  ret void
}"""
    if not cg_spirv._use_fork():
        pytest.skip("the backend runs in this process here: an LLVM fatal error would end it")
    with pytest.raises(CompileError, match="SPV_KHR_subgroup_rotate"):
        cg_spirv.llvm_to_spirv(text)


def test_targets_extensions_and_tools():
    kb = KB(x=ptr[f32])
    v = kb("load", vec(f32, 32), kb.p["x"], kb.c(i32, 0))
    kb.do("store", kb.p["x"], kb.c(i32, 0), kb("reduce", f32, v, kind="add", axis=None))
    fn = kb.function("my_kernel")
    with pytest.raises(CompileError, match="unknown target"):
        compile_function(fn, target="ptx")
    result = compile_function(fn)
    assert result.kernel_name == "my_kernel"
    assert result.extensions == ("SPV_INTEL_subgroups",)
    assert result.spirv[:4] == (0x07230203).to_bytes(4, "little")
    assert re.search(r"define spir_kernel void @my_kernel\(.*!intel_reqd_sub_group_size (!\d+)", result.llvm_ir)
    assert "= !{i32 16}" in result.llvm_ir
    assert cg_spirv.extensions(result.spirv) == result.extensions
    text = cg_spirv.disassemble(result.spirv)
    if text is not None:
        assert "OpEntryPoint Kernel" in text and '"my_kernel"' in text
    with pytest.raises(CompileError, match="spirv-val"):
        if text is None:
            pytest.skip("spirv-val is not installed")
        cg_spirv.validate(result.spirv[:-8])   # a truncated module


def test_unsupported_ops_are_compile_errors():
    kb = KB(x=ptr[i8])
    offs = kb.c(vec(i32, 16), 0)
    kb.do("atomic", kb.p["x"], offs, kb("splat", vec(i8, 16), kb.c(i8, 1)), kind="add")
    with pytest.raises(CompileError, match="atomics on i8"):
        compile_function(kb.function())
    kb = KB(x=ptr[f32])
    kb("load", vec(f32, 16), kb.p["x"], kb.c(i32, 0))
    with pytest.raises(CompileError, match="simd must be 8, 16 or 32"):
        compile_function(Function("k", kb.body, kb.names, simd=4))


# --- lane formulas (pure Python) ----------------------------------------------------------------

def test_lane_formulas():
    from cmlang.codegen.layout import fit_affine, fit_rotation, fit_xor, LaneFormula
    iota = list(range(16))
    assert fit_affine([3 + 2 * l for l in iota], 16) == LaneFormula(3, 16, 0, 2)
    # rows of 4 with stride 10 (a 2-D region): (l // 4) * 10 + (l % 4)
    f = fit_affine([(l // 4) * 10 + l % 4 for l in iota], 16)
    assert f is not None and f.width == 4 and all(f.eval(l) == (l // 4) * 10 + l % 4 for l in iota)
    # padding lanes (None) are free: a partial slot still fits the affine formula
    assert fit_affine([l * 3 if l < 5 else None for l in iota], 16) == LaneFormula(0, 16, 0, 3)
    assert fit_affine([(l + 3) % 16 for l in iota], 16) is None                 # a rotation ...
    assert fit_rotation([(l + 3) % 16 for l in iota], 16) == LaneFormula(3, 16, 0, 1, 15)
    assert fit_xor([l ^ 5 for l in iota]) == 5 and fit_xor([15 - l for l in iota]) == 15
    assert fit_affine([7, 1, 12, 3, 0, 0, 9, 2, 5, 5, 5, 5, 1, 1, 1, 1], 16) is None  # -> a lane table


# --- which sub-group operations each case lowers to -----------------------------------------------

def _calls(llvm_ir):
    """Cross-lane builtins called in the kernel body, with counts."""
    body = llvm_ir[llvm_ir.index("define spir_kernel"):]
    body = body[:body.index("\n}\n")]
    names = re.findall(r"call spir_func \S+ @(\w+)\(", body)
    counts = {}
    for name in names:
        for short in ("intel_sub_group_shuffle_xor", "intel_sub_group_shuffle", "sub_group_broadcast",
                      "sub_group_reduce_add", "sub_group_reduce_max", "sub_group_all", "sub_group_any"):
            if short in name:
                counts[short] = counts.get(short, 0) + 1
                break
    return counts


def _lowered(build, simd=16, **params):
    kb = KB(simd=simd, **params)
    build(kb)
    return _calls(compile_function(kb.function()).llvm_ir)


def _src(kb, n, t=f32):
    return kb("load", vec(t, n), kb.p["x"], kb.c(i32, 0))


def _out(kb, value):
    kb.do("store", kb.p["y"], kb.c(i32, 0), value)


LOWERING_CASES = {
    # region reading whole slots in place: plain moves, nothing emitted
    "identity": (lambda kb: _out(kb, kb.region(_src(kb, 32), vec(f32, 16), 16, 1, 0, 16, 1)), {}),
    "broadcast": (lambda kb: _out(kb, kb.region(_src(kb, 32), vec(f32, 32), 19, 1, 0, 32, 0)),
                  {"sub_group_broadcast": 1}),
    # window shifted by 5: two source slots per result slot, one shuffle each, all by the
    # same lane index (l + 5) & 15, so the shuffle of the middle slot is shared
    "shifted": (lambda kb: _out(kb, kb.region(_src(kb, 48), vec(f32, 32), 5, 1, 0, 32, 1)),
                {"intel_sub_group_shuffle": 3}),
    "xor": (lambda kb: _out(kb, kb("iselect", vec(f32, 16), _src(kb, 16),
                                   kb.c(vec(i32, 16), tuple(i ^ 3 for i in range(16))))),
            {"intel_sub_group_shuffle_xor": 1}),
    "reduce_add": (lambda kb: _out(kb, kb("reduce", f32, _src(kb, 40), kind="add", axis=None)),
                   {"sub_group_reduce_add": 1}),
    "reduce_mul": (lambda kb: _out(kb, kb("reduce", f32, _src(kb, 16), kind="mul", axis=None)),
                   {"intel_sub_group_shuffle_xor": 4}),
    "any": (lambda kb: _out(kb, kb("convert", f32, kb("reduce", bool_, kb("cmp", vec(bool_, 20), _src(kb, 20),
                                   kb("splat", vec(f32, 20), kb.c(f32, 0.0)), pred="lt"), kind="or", axis=None),
                                   sat=False)),
            {"sub_group_any": 1}),
    "columns": (lambda kb: _out(kb, kb("reduce", vec(f32, 32), kb("bitcast", mat(f32, 4, 32), _src(kb, 128)),
                                       kind="max", axis=0)), {}),    # lane-local: no cross-lane op
    "rows_of_8": (lambda kb: _out(kb, kb("reduce", vec(f32, 4), kb("bitcast", mat(f32, 4, 8), _src(kb, 32)),
                                         kind="max", axis=1)),
                  {"intel_sub_group_shuffle_xor": 6, "intel_sub_group_shuffle": 2}),
    "dpas": (lambda kb: _out(kb, kb("bitcast", vec(f32, 64), kb("dpas", mat(f32, 2, 32),
                                    kb("bitcast", mat(f32, 2, 32), _src(kb, 64)),
                                    kb("bitcast", mat(f32, 2, 4), _src(kb, 8)),
                                    kb("bitcast", mat(f32, 4, 32), _src(kb, 128))))),
             {"sub_group_broadcast": 8}),      # a[m, k] broadcasts, then one fma per slot
}


@pytest.mark.parametrize("case", sorted(LOWERING_CASES))
def test_lowering_table(case):
    build, expected = LOWERING_CASES[case]
    assert _lowered(build, x=ptr[f32], y=ptr[f32]) == expected


def test_known_multiple_drives_block_io():
    from cmlang.passes import induction_loops, known_multiple
    kb = KB(x=ptr[f32], n=i32)
    tid = kb.tid()
    a = kb("add", i32, kb("mul", i32, tid, kb.c(i32, 32)), kb.c(i32, 8))          # 32*t + 8
    b = kb("shl", i32, kb("add", i32, tid, kb.p["n"]), kb.c(i32, 3))              # (t + n) << 3
    c = kb("sub", i32, a, kb.c(i32, 0))
    d = kb("convert", i64, kb("mul", i32, kb.p["n"], kb.c(i32, 6)), sat=False)    # widened 6n
    assert [known_multiple(v) for v in (tid, a, b, c, d, kb.c(i32, 0))] == [1, 8, 8, 8, 6, 0]
    loops = {}

    def body(iv, acc):
        loops["iv"] = iv
        return [acc]
    kb.for_(kb.c(i32, 16), kb.p["n"], kb.c(i32, 4), [kb.c(f32, 0.0)], body)
    fn = kb.function()
    assert known_multiple(loops["iv"], induction_loops(fn)) == 4
