"""Launch forms: ``k[grid]`` is always the grid, groups are ``cm.group(...)``, arguments
bind by name, and every launch returns an event.

Each launchable thing (an ``@cm.kernel`` on the device and in the interpreter, a
``CompiledKernel``, a package kernel, the dpctl backend) takes the same forms; every
spelling that could be read two ways is a ``LaunchError`` naming the forms (earlier
``k[(5, 5)]`` ran a 1-D grid of 5 in groups of 5).
"""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32
from cmlang.errors import LaunchError
from cmlang.runtime import device as device_module
from cmlang.runtime import set_device

FORMS = ("launch forms: k[n], k[nx, ny], k[(nx, ny, nz)] (always the grid of CM threads) or "
         "k[grid, cm.group(gx, gy, gz)] (the grid in groups)")


def k_ids(out: cm.ptr[i32]):
    """Each CM thread writes its ids at its place in the row-major (z, y, x) grid."""
    t0, t1, t2 = cm.thread_id(0), cm.thread_id(1), cm.thread_id(2)
    nx = cm.group_count(0) * cm.local_size(0)
    ny = cm.group_count(1) * cm.local_size(1)
    v = cm.vector[i32, 8](t0, t1, t2, cm.local_id(0), cm.local_id(1), cm.local_id(2),
                          cm.local_size(0), cm.local_size(1))
    cm.store(out, ((t2 * ny + t1) * nx + t0) * 8, v)


def expected_ids(grid, group=(1, 1, 1)):
    grid = tuple(grid) + (1,) * (3 - len(grid))
    group = tuple(group) + (1,) * (3 - len(group))
    z, y, x = np.meshgrid(*(np.arange(n) for n in grid[::-1]), indexing="ij")
    ids = np.stack([x, y, z, x % group[0], y % group[1], z % group[2],
                    np.full_like(x, group[0]), np.full_like(x, group[1])], axis=-1)
    return ids.reshape(-1).astype(np.int32)


def use(path, monkeypatch):
    """Launch on ``path``: the default device, the interpreter or the dpctl backend."""
    monkeypatch.delenv("CMLANG_INTERPRET", raising=False)
    if path == "interpret":
        monkeypatch.setenv("CMLANG_INTERPRET", "1")
    elif path == "dpctl":
        pytest.importorskip("dpctl")
        monkeypatch.setattr(device_module, "_current", None)
        monkeypatch.delenv("CMLANG_DEVICE", raising=False)
        set_device("dpctl:opencl:cpu")
    return path


@pytest.fixture(params=["device", "interpret", "dpctl"])
def path(request, monkeypatch):
    return use(request.param, monkeypatch)


@pytest.fixture(params=["device", "dpctl"])
def device_path(request, monkeypatch):
    """The paths package kernels run on (they carry no IR for the interpreter)."""
    return use(request.param, monkeypatch)


# --- the grid ------------------------------------------------------------------------

def test_a_pair_is_a_2d_grid_not_grid_and_group(path):
    """The issue's trap: k[(5, 5)] ran 5 CM threads in groups of 5; now 5 x 5 run."""
    k = cm.kernel(simd=8)(k_ids)
    for config in [(5, 5), [5, 5]]:
        out = np.full(25 * 8, -1, np.int32)
        k[config](out)
        np.testing.assert_array_equal(out, expected_ids((5, 5)), err_msg=repr(config))
    out = np.full(25 * 8, -1, np.int32)
    k[5, 5](out)
    np.testing.assert_array_equal(out, expected_ids((5, 5)))


@pytest.mark.parametrize("launch, grid, group", [
    (lambda k, out: k[4, 3](out), (4, 3), (1, 1)),
    (lambda k, out: k[np.int64(4), np.int32(3)](out), (4, 3), (1, 1)),
    (lambda k, out: k[(4, 3), cm.group(2, 3)](out), (4, 3), (2, 3)),
    (lambda k, out: k[4, 3, cm.group(4, 1)](out), (4, 3), (4, 1)),
    (lambda k, out: k[[4, 3], cm.group(2)](out), (4, 3), (2, 1)),
    (lambda k, out: k[2, 3, 2](out), (2, 3, 2), (1, 1, 1)),
    (lambda k, out: k[(2, 3, 2), cm.group(2, 1, 2)](out), (2, 3, 2), (2, 1, 2)),
    (lambda k, out: k.launch((4, 3), out), (4, 3), (1, 1)),
    (lambda k, out: k.launch((4, 3), out, group=cm.group(2, 3)), (4, 3), (2, 3)),
    (lambda k, out: k.launch([4, 3], group=(4, 1), out=out), (4, 3), (4, 1)),
])
def test_every_form_runs_the_grid_it_names(path, launch, grid, group):
    k = cm.kernel(simd=8)(k_ids)
    out = np.full(int(np.prod(grid)) * 8, -1, np.int32)
    launch(k, out)
    np.testing.assert_array_equal(out, expected_ids(grid, group))


@pytest.mark.parametrize("config, shown, problem", [
    (((4, 3), (2, 1)), "(4, 3), (2, 1)", "not a launch configuration"),
    (((4, 3), None), "(4, 3), None", "not a launch configuration"),
    ((4, None), "4, None", "not a launch configuration"),
    ((4, (2,)), "4, (2,)", "not a launch configuration"),
    (((4,),), "((4,),)", "not a launch configuration"),
    ((4.0,), "(4.0,)", "not a launch configuration"),
    ((4, 2.0), "4, 2.0", "not a launch configuration"),
    (True, "True", "not a launch configuration"),
    ((4, True), "4, True", "not a launch configuration"),
    ("4", "'4'", "not a launch configuration"),
    (None, "None", "not a launch configuration"),
    ((), "()", "not a launch configuration"),
    (cm.group(2), "cm.group(2)", "a group without a grid"),
    (0, "0", "grid sizes must be positive"),
    ((4, -1), "4, -1", "grid sizes must be positive"),
    ((1, 2, 3, 4), "1, 2, 3, 4", "a grid has 1 to 3 dimensions"),
    ((1, 2, 3, 4, cm.group(1)), "1, 2, 3, 4, cm.group(1)", "a grid has 1 to 3 dimensions"),
    (((4, 3), cm.group(2), cm.group(1)), "(4, 3), cm.group(2), cm.group(1)",
     "not a launch configuration"),
])
def test_ambiguous_spellings_are_refused_naming_the_forms(config, shown, problem):
    k = cm.kernel(simd=8)(k_ids)
    with pytest.raises(LaunchError) as info:
        k[config]
    assert str(info.value) == f"k_ids[{shown}]: {problem}; {FORMS}"


@pytest.mark.parametrize("dims, message", [
    ((0,), "cm.group(...): group sizes must be positive, got (0,)"),
    ((2, -1), "cm.group(...): group sizes must be positive, got (2, -1)"),
    ((2.0,), "cm.group(...): group must be an int or a tuple of ints, got (2.0,)"),
    ((True,), "cm.group(...): group must be an int or a tuple of ints, got (True,)"),
    ((1, 1, 1, 1), "cm.group(...): group must have 1 to 3 dimensions, got (1, 1, 1, 1)"),
    ((), "cm.group(...): group must have 1 to 3 dimensions, got ()"),
])
def test_bad_groups(dims, message):
    with pytest.raises(LaunchError) as info:
        cm.group(*dims)
    assert str(info.value) == message


def test_group_is_a_value():
    assert cm.group(2, 3) == cm.group((2, 3)) and cm.group(2) != cm.group(2, 1)
    assert hash(cm.group(4)) == hash(cm.group([4])) and repr(cm.group(2, 3)) == "cm.group(2, 3)"


def test_launch_call_form_errors():
    k = cm.kernel(simd=8)(k_ids)
    out = np.zeros(8, np.int32)
    with pytest.raises(LaunchError, match=r"^k_ids.launch\(\): grid sizes must be positive, "
                                          r"got \(4, 0\)$"):
        k.launch((4, 0), out)
    with pytest.raises(LaunchError, match=r"^k_ids.launch\(\): group must be an int or a tuple "
                                          r"of ints, got 'big'$"):
        k.launch(4, out, group="big")
    with pytest.raises(LaunchError, match=r"grid \(4,\) is not divisible by group \(3,\)"):
        k[4, cm.group(3)](out)


# --- keyword arguments -----------------------------------------------------------------

@cm.kernel(simd=8)
def scaled_add(x: cm.ptr[f32], y: cm.ptr[f32], a: f32, N: cm.constexpr):
    base = cm.thread_id(0) * N
    cm.store(y, base, a * cm.load(x, base, N) + cm.load(y, base, N))


def test_keyword_arguments_bind_by_name(path, rng):
    x = rng.standard_normal(64).astype(np.float32)
    y0 = rng.standard_normal(64).astype(np.float32)
    want = (2.5 * x.astype(np.float64) + y0).astype(np.float32)
    for launch in [lambda y: scaled_add[8](x=x, y=y, a=2.5, N=8),
                   lambda y: scaled_add[8](N=8, a=2.5, y=y, x=x),
                   lambda y: scaled_add[8](x, y, N=8, a=2.5),
                   lambda y: scaled_add.launch(8, x, y=y, a=2.5, N=8)]:
        y = y0.copy()
        launch(y)
        np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {"x": 1, "y": 2, "a": 1.0, "N": 8, "z": 3}, "got an unexpected keyword argument 'z'"),
    ((1,), {"x": 1, "y": 2, "a": 1.0, "N": 8}, "multiple values for argument 'x'"),
    ((), {"x": 1, "a": 1.0, "N": 8}, "missing a required argument: 'y'"),
    ((1, 2, 3, 4, 5), {"b": 1.0}, "too many positional arguments"),
])
def test_keyword_argument_errors_name_the_kernel(args, kwargs, message):
    with pytest.raises(LaunchError) as info:
        scaled_add[8](*args, **kwargs)
    assert str(info.value) == f"scaled_add(x, y, a, N): {message}"


def test_positional_count_error_is_unchanged():
    with pytest.raises(LaunchError, match=r"^scaled_add\(\) takes 4 arguments \(x, y, a, N\), "
                                          r"got 2$"):
        scaled_add[8](np.zeros(64, np.float32), np.zeros(64, np.float32))


# --- compiled kernels and packages take the same forms -----------------------------------

def test_compiled_kernel_forms_keywords_and_event():
    ck = cm.kernel(simd=8)(k_ids).compile()
    out = np.full(12 * 8, -1, np.int32)
    launched = ck[(4, 3), cm.group(2, 3)](out=out)
    np.testing.assert_array_equal(out, expected_ids((4, 3), (2, 3)))
    assert launched.wait() is launched and launched.seconds > 0
    with pytest.raises(LaunchError, match=r"k_ids\[\(4, 3\), None\]: not a launch configuration"):
        ck[(4, 3), None]


def test_package_kernel_forms_keywords_and_event(tmp_path, device_path):
    k = cm.kernel(simd=8)(k_ids)
    pkg = cm.load_package(cm.build_package(str(tmp_path / "ids.cmpkg"), [k], progress=False))
    out = np.full(12 * 8, -1, np.int32)
    launched = pkg.k_ids[4, 3, cm.group(2, 1)](out=out)
    np.testing.assert_array_equal(out, expected_ids((4, 3), (2, 1)))
    assert launched.wait() is launched and launched.seconds > 0
    out[:] = -1
    pkg.k_ids.launch((4, 3), out, group=cm.group(1, 3))
    np.testing.assert_array_equal(out, expected_ids((4, 3), (1, 3)))
    with pytest.raises(LaunchError, match=r"^k_ids\[4, \(2,\)\]: not a launch configuration"):
        pkg.k_ids[4, (2,)]
    with pytest.raises(LaunchError, match=r"k_ids\(out\): got an unexpected keyword argument 'o'"):
        pkg.k_ids[4](out, o=out)


# --- events ------------------------------------------------------------------------------

def test_every_launch_returns_an_event(path):
    k = cm.kernel(simd=8)(k_ids)
    host = np.zeros(4 * 8, np.int32)
    on_device = cm.to_device(host)
    for launched in [k[4](host), k[4](on_device), k.launch(4, on_device)]:
        assert launched.wait() is launched
        if path == "interpret":
            assert launched.seconds is None     # nothing timed it
        else:
            assert 0 < launched.seconds < 5
    np.testing.assert_array_equal(host, expected_ids((4,)))
    np.testing.assert_array_equal(on_device.numpy(), expected_ids((4,)))
