"""``@cm.autotune``: timing and choosing configs, the disk cache of choices across processes,
key changes, CMLANG_AUTOTUNE=0, failing and rejected configs, the budget, ranking by
compiler stats, callable grids, host functions, and results that stay right after tuning."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import cmlang as cm
from cmlang import autotuning as tuning
from cmlang import f32, i32

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 1 << 16


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test tunes from scratch: a cache folder of its own, tuning on, no interpreter."""
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("CMLANG_AUTOTUNE", "CMLANG_AUTOTUNE_LOG", "CMLANG_AUTOTUNE_BUDGET",
                 "CMLANG_AUTOTUNE_DEVICE", "CMLANG_INTERPRET"):
        monkeypatch.delenv(name, raising=False)


def _double_kernel():
    """y = 2 x; REDUNDANT repeats a loop whose adds of v * 0.0 change nothing but cost time."""
    @cm.kernel(simd=16)
    def double(x: cm.ptr[f32], y: cm.ptr[f32], BLOCK: cm.constexpr, REDUNDANT: cm.constexpr):
        base = cm.thread_id(0) * BLOCK
        v = cm.load(x, base, BLOCK)
        acc = v * 2.0
        for _ in range(REDUNDANT):
            acc = acc + v * 0.0
        cm.store(y, base, acc)
    return double


SLOW, FAST = {"BLOCK": 64, "REDUNDANT": 400}, {"BLOCK": 64, "REDUNDANT": 1}


def _tuned_double(configs=(SLOW, FAST), **options):
    options.setdefault("repeat", 5)     # the median of 5 shrugs off a burst of load elsewhere
    return cm.autotune(configs=list(configs), key=["x"], **options)(_double_kernel())


def _launch_double(k, x):
    y = np.zeros_like(x)
    k[lambda c: x.size // c["BLOCK"]](x, y)
    return y


def test_picks_the_fastest_and_the_result_is_right(rng):
    k = _tuned_double()
    x = rng.standard_normal(N).astype(np.float32)
    y = _launch_double(k, x)
    np.testing.assert_array_equal(y, 2 * x)
    assert k.best == FAST and k.timed and k.how == "timed"
    slow, fast = k.table
    assert slow.status == fast.status == "ok"
    assert slow.seconds > 5 * fast.seconds, (slow.seconds, fast.seconds)


def test_a_choice_is_per_element_type():
    """Key values alike, element types not: two choices (a tile ranked for f32 operands once
    served bf16 ones, for which it did not even build)."""
    @cm.autotune(configs=[{"B": 16}, {"B": 32}], key=["n"])
    @cm.kernel(simd=16)
    def scale(x: "cm.ptr[T]", y: "cm.ptr[T]", n: i32, T: cm.constexpr, B: cm.constexpr):
        i = cm.thread_id(0) * B
        cm.store(y, i, (cm.load(x, i, B).astype(f32) * 2.0).astype(T))

    keys = set()
    for t, dtype in ((f32, np.float32), (cm.f16, np.float16)):
        x = np.arange(64, dtype=dtype)
        y = np.zeros_like(x)
        scale[lambda c: 64 // c["B"]](x, y, 64, t)
        np.testing.assert_array_equal(y, 2 * x)
        keys.add(tuning._key_values(["n"], ("x", "y", "n", "T"), (x, y, 64, t)))
    assert len(keys) == 2 and len(scale._choices) == 2


def test_log_prints_the_table(rng, monkeypatch, capsys):
    monkeypatch.setenv("CMLANG_AUTOTUNE_LOG", "1")
    k = _tuned_double()
    _launch_double(k, rng.standard_normal(N).astype(np.float32))
    err = capsys.readouterr().err
    assert ("cm.autotune double key=(('array', (65536,), 'float32'), ('types', 'float32', 'float32')): "
            "timed on the device") in err
    chosen = [line for line in err.splitlines() if line.startswith(" * ")]
    assert chosen == [line for line in err.splitlines() if "'REDUNDANT': 1}" in line]
    assert " ms" in chosen[0]


def test_key_change_tunes_again_and_same_key_is_remembered(rng):
    k = _tuned_double()
    x = rng.standard_normal(N).astype(np.float32)
    _launch_double(k, x)
    first_table = k.table
    y = _launch_double(k, x)                    # same key: the choice made above, no new table
    assert k.table is first_table and k.timed
    np.testing.assert_array_equal(y, 2 * x)
    x2 = rng.standard_normal(N // 2).astype(np.float32)
    y2 = _launch_double(k, x2)                  # another shape: timed anew
    assert k.table is not first_table and k.timed and k.best == FAST
    np.testing.assert_array_equal(y2, 2 * x2)


def test_autotune_off_takes_the_first_config(rng, monkeypatch):
    monkeypatch.setenv("CMLANG_AUTOTUNE", "0")
    k = _tuned_double()
    x = rng.standard_normal(N).astype(np.float32)
    np.testing.assert_array_equal(_launch_double(k, x), 2 * x)
    assert k.best == SLOW and not k.timed and k.how == "first" and k.table == []


def test_interpreter_takes_the_first_config(rng, monkeypatch):
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    k = _tuned_double(configs=({"BLOCK": 16, "REDUNDANT": 2}, FAST))
    x = rng.standard_normal(256).astype(np.float32)
    np.testing.assert_array_equal(_launch_double(k, x), 2 * x)
    assert k.best == {"BLOCK": 16, "REDUNDANT": 2} and k.how == "first"


def test_failing_config_is_skipped_with_a_warning(rng):
    broken = {"BLOCK": 1.5, "REDUNDANT": 1}          # a float offset: does not compile
    k = _tuned_double(configs=(broken, SLOW))
    x = rng.standard_normal(N).astype(np.float32)
    with pytest.warns(cm.AutotuneWarning, match=r"double: config \{'BLOCK': 1.5, 'REDUNDANT': 1\} "
                                                 r"skipped: CompileError"):
        y = np.zeros_like(x)
        k[lambda c: x.size // int(c["BLOCK"])](x, y)
    assert k.best == SLOW
    assert k.table[0].status.startswith("skipped: CompileError")
    np.testing.assert_array_equal(y, 2 * x)


def test_every_config_failing_is_an_error(rng):
    k = _tuned_double(configs=({"BLOCK": 1.5, "REDUNDANT": 1},))
    x = rng.standard_normal(N).astype(np.float32)
    with pytest.warns(cm.AutotuneWarning), pytest.raises(cm.LaunchError, match="every autotune config failed"):
        k[lambda c: 64](x, np.zeros_like(x))


def test_check_rejects_a_wrong_config(rng):
    @cm.kernel(simd=16)
    def scaled(x: cm.ptr[f32], y: cm.ptr[f32], FACTOR: cm.constexpr, REDUNDANT: cm.constexpr):
        base = cm.thread_id(0) * 64
        v = cm.load(x, base, 64)
        acc = v * FACTOR
        for _ in range(REDUNDANT):
            acc = acc + v * 0.0
        cm.store(y, base, acc)

    right_but_slow, wrong_but_fast = {"FACTOR": 2.0, "REDUNDANT": 200}, {"FACTOR": 3.0, "REDUNDANT": 0}
    seen = []

    def check(args, result):
        x, y = args
        seen.append(result)
        return None if np.array_equal(y, 2 * x) else "y != 2 x"

    k = cm.autotune(configs=[wrong_but_fast, right_but_slow], key=[], check=check, repeat=2)(scaled)
    x = rng.standard_normal(N).astype(np.float32)
    y = np.zeros_like(x)
    with pytest.warns(cm.AutotuneWarning, match=r"FACTOR': 3.0.*skipped: check failed: y != 2 x"):
        k[N // 64](x, y)
    assert k.best == right_but_slow and seen == [None, None]
    np.testing.assert_array_equal(y, 2 * x)


def test_budget_stops_tuning_and_keeps_the_best_so_far(rng, monkeypatch):
    monkeypatch.setenv("CMLANG_AUTOTUNE_LOG", "1")
    k = _tuned_double(configs=(SLOW, FAST), budget=0)
    x = rng.standard_normal(N).astype(np.float32)
    np.testing.assert_array_equal(_launch_double(k, x), 2 * x)
    assert k.best == SLOW and k.timed
    assert [r.status for r in k.table] == ["ok", "not tried (budget)"]
    again = _tuned_double(configs=(SLOW, FAST))         # same disk key, a fresh object
    np.testing.assert_array_equal(_launch_double(again, x), 2 * x)
    assert again.how == "timed" and again.best == FAST  # the cut-short choice was not stored
    monkeypatch.setenv("CMLANG_AUTOTUNE_BUDGET", "not a number")
    with pytest.raises(ValueError, match="CMLANG_AUTOTUNE_BUDGET='not a number'"):
        _launch_double(_tuned_double(configs=(FAST,)), x)


def test_in_place_kernel_result_is_right_after_tuning(rng):
    """Timing runs the kernel many times; its writes are undone before the real launch."""
    @cm.kernel(simd=16)
    def bump(x: cm.ptr[f32], BLOCK: cm.constexpr):
        base = cm.thread_id(0) * BLOCK
        cm.store(x, base, cm.load(x, base, BLOCK) + 1.0)

    k = cm.autotune(configs=[{"BLOCK": 16}, {"BLOCK": 64}, {"BLOCK": 32, "simd": 8}], key=["x"],
                    repeat=3)(bump)
    x0 = rng.standard_normal(N).astype(np.float32)
    x = x0.copy()
    k[lambda c: N // c["BLOCK"]](x)
    np.testing.assert_array_equal(x, x0 + 1)
    assert len(k.table) == 3 and all(r.status == "ok" for r in k.table)
    d = cm.to_device(x0)                          # device arrays too, on a new key
    d2 = cm.to_device(np.zeros(N // 2, np.float32))
    k[lambda c: (N // 2) // c["BLOCK"]](d2)
    np.testing.assert_array_equal(d2.numpy(), np.ones(N // 2, np.float32))
    k[lambda c: N // c["BLOCK"]](d)               # same key as x: remembered, not re-timed
    np.testing.assert_array_equal(d.numpy(), x0 + 1)


def test_grid_callable_and_keyword_arguments(rng):
    @cm.kernel(simd=16)
    def axpy(a: f32, x: cm.ptr[f32], y: cm.ptr[f32], n: i32, BLOCK: cm.constexpr):
        base = cm.thread_id(0) * BLOCK
        cm.store(y, base, a * cm.load(x, base, BLOCK) + cm.load(y, base, BLOCK))

    k = cm.autotune(configs=[{"BLOCK": 32}, {"BLOCK": 128}], key=["n"], repeat=2)(axpy)
    grids = []

    def grid(config):
        grids.append(config["BLOCK"])
        return N // config["BLOCK"]

    x, y0 = rng.standard_normal(N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    y = y0.copy()
    k[grid](2.5, x, y=y, n=N)
    np.testing.assert_allclose(y, 2.5 * x + y0, rtol=1e-6)
    assert set(grids) == {32, 128} and grids[-1] == k.best["BLOCK"]
    y2 = y0.copy()
    k.launch(grid, 2.5, x, y2, N)                       # the call form, and with a group
    k[grid, cm.group(2)](2.5, x, y=y0, n=N)
    np.testing.assert_array_equal(y2, y0)
    with pytest.raises(cm.LaunchError, match=r"axpy\(a, x, y, n\): got an unexpected keyword argument 'BLOCK'"):
        k[grid](2.5, x, y, N, BLOCK=32)
    with pytest.raises(cm.LaunchError, match=r"axpy\(\) takes 4 arguments \(a, x, y, n\), got 3"):
        k[grid](2.5, x, y)
    with pytest.raises(cm.LaunchError, match=r"with a function of the config the launch is"):
        k[grid, 4](2.5, x, y, N)
    with pytest.raises(cm.LaunchError, match=r"k\[grid, cm.group"):
        k[(4, 2), (2, 1)](2.5, x, y, N)                  # the forms every kernel refuses


def test_decoration_errors():
    kernel = _double_kernel()
    with pytest.raises(cm.CompileError, match="config key 'SIZE' is not a constexpr parameter"):
        cm.autotune(configs=[{"SIZE": 4}])(kernel)
    with pytest.raises(cm.CompileError, match="key 'n' is not an argument"):
        cm.autotune(configs=[SLOW], key=["n"])(kernel)
    with pytest.raises(cm.CompileError, match="every config must name the same parameters"):
        cm.autotune(configs=[SLOW, {"BLOCK": 8}])(kernel)
    with pytest.raises(cm.CompileError, match="needs at least one config"):
        cm.autotune(configs=[])(kernel)


def test_host_function(rng):
    kernel = _double_kernel()

    @cm.autotune(configs=[{"redundant": 300}, {"redundant": 1}], key=["x"], repeat=2)
    def double_twice(x, y, redundant):
        kernel[x.size // 64](x, y, 64, redundant)
        kernel[x.size // 64](y, x, 64, redundant)      # writes its input: restored while tuning
        return "done"

    x0 = rng.standard_normal(N).astype(np.float32)
    x, y = x0.copy(), np.zeros_like(x0)
    assert double_twice(x, y) == "done"
    assert double_twice.best == {"redundant": 1} and double_twice.timed
    np.testing.assert_array_equal(x, 4 * x0)
    np.testing.assert_array_equal(y, 2 * x0)


def test_host_function_is_not_ranked_for_another_device(rng, monkeypatch):
    kernel = _double_kernel()
    monkeypatch.setenv("CMLANG_AUTOTUNE_DEVICE", "pvc")

    @cm.autotune(configs=[{"redundant": 3}, {"redundant": 1}], key=["x"])
    def double(x, y, redundant):
        kernel[x.size // 64](x, y, 64, redundant)

    x = rng.standard_normal(N).astype(np.float32)
    y = np.zeros_like(x)
    with pytest.warns(cm.AutotuneWarning, match="tuned only on the device it runs on, not for "
                                                "the pvc profile; first config taken"):
        double(x, y)
    assert double.best == {"redundant": 3} and double.how == "first"
    np.testing.assert_array_equal(y, 2 * x)


# ---------------------------------------------------------------------------
# Ranking by compiler stats (stats injected: the lead wires Intel's compiler in)

def _fake_stats(table):
    calls = []

    def native_stats(kernel, args, device, target="spirv"):
        config = dict(zip([n for n, _ in kernel.params], args))
        calls.append((device, config["TM"], config["TN"], getattr(kernel, "grf", 128), kernel.simd))
        stats = table[(config["TM"], config["TN"])]
        if isinstance(stats, Exception):
            raise stats
        return stats
    return native_stats, calls


def _gemm_like():
    @cm.kernel(simd=16)
    def tile(c: cm.ptr[f32], n: i32, TM: cm.constexpr, TN: cm.constexpr):
        cm.store(c, cm.thread_id(0) * TM * TN, cm.zeros(cm.vector[f32, TM * TN]))
    return tile


def test_ranking_no_spill_first_then_instructions_per_work(monkeypatch):
    configs = [{"TM": 8, "TN": 64, "grf": 128}, {"TM": 8, "TN": 64, "grf": 256},
               {"TM": 4, "TN": 64, "grf": 128}, {"TM": 2, "TN": 32, "grf": 128}]
    table = {(8, 64): {"instructions": 900, "spill_bytes": 0},   # both grf get the same fake stats
             (4, 64): {"instructions": 400, "spill_bytes": 0},   # 400 / 256 work: the best
             (2, 32): {"instructions": 60, "spill_bytes": 128}}  # fewest per work, but spills
    stats, calls = _fake_stats(table)
    monkeypatch.setattr(tuning, "native_stats", stats)
    k = cm.autotune(configs=configs, key=["n"], work=lambda c: c["TM"] * c["TN"])(_gemm_like())
    chosen = k[lambda c: 4096 // (c["TM"] * c["TN"])].tune(np.zeros(4096, np.float32), 4096, device="pvc")
    assert chosen == {"TM": 4, "TN": 64, "grf": 128}
    assert k.how == "ranked" and not k.timed
    assert [c[0] for c in calls] == ["pvc"] * 4
    assert [c[3] for c in calls] == [128, 256, 128, 128]        # the grf of each config reached the build
    scores = [r.score for r in k.table]
    assert scores == [900 / 512, 900 / 512, 400 / 256, 60 / 64]


def test_ranking_is_not_cut_short_by_the_budget(monkeypatch):
    """A spent budget stops timing, not ranking: under load the builds took longer than the
    budget and the first config (which spilled most) was kept instead of the best."""
    table = {(8, 64): {"instructions": 900, "spill_bytes": 4096},
             (4, 64): {"instructions": 400, "spill_bytes": 0}}
    stats, calls = _fake_stats(table)
    monkeypatch.setattr(tuning, "native_stats", stats)
    configs = [{"TM": 8, "TN": 64}, {"TM": 4, "TN": 64}]
    k = cm.autotune(configs=configs, key=["n"], budget=0)(_gemm_like())
    chosen = k[lambda c: 4096 // (c["TM"] * c["TN"])].tune(np.zeros(4096, np.float32), 4096, device="pvc")
    assert chosen == {"TM": 4, "TN": 64} and len(calls) == 2
    assert [r.status for r in k.table] == ["ok", "ok"]


def test_ranking_by_threads_when_no_work_measure_and_failures_skipped(monkeypatch, capsys):
    monkeypatch.setenv("CMLANG_AUTOTUNE_LOG", "1")
    table = {(8, 64): cm.CompileError("IGC rejected it"),
             (4, 64): {"instructions": 400, "spill_bytes": 0},    # 400 x 16 threads
             (2, 32): {"instructions": 60, "spill_bytes": 0}}     # 60 x 64 threads: the best
    stats, _ = _fake_stats(table)
    monkeypatch.setattr(tuning, "native_stats", stats)
    monkeypatch.setenv("CMLANG_AUTOTUNE_DEVICE", "dg2")
    k = cm.autotune(configs=[{"TM": 8, "TN": 64}, {"TM": 4, "TN": 64}, {"TM": 2, "TN": 32}],
                    key=["n"])(_gemm_like())
    c = np.zeros(4096, np.float32)
    with pytest.warns(cm.AutotuneWarning, match="skipped: CompileError: IGC rejected it"):
        k[lambda cfg: 4096 // (cfg["TM"] * cfg["TN"])](c, 4096)    # ranked for dg2, runs here
    assert k.best == {"TM": 2, "TN": 32} and k.how == "ranked"
    assert "ranked by compiler stats, not timed" in capsys.readouterr().err
    assert [r.score for r in k.table[1:]] == [400 * 16, 60 * 64]


def test_rank_key_orders_spill_before_score():
    rows = [({"spill_bytes": 64}, 1.0), ({"spill_bytes": 0}, 5.0), ({"spill_bytes": 0}, 2.0)]
    assert sorted(rows, key=lambda r: tuning.rank_key(*r)) == [rows[2], rows[1], rows[0]]


def test_tuning_for_a_profile_without_a_compiler_is_an_error():
    k = cm.autotune(configs=[{"TM": 1, "TN": 16}], key=[])(_gemm_like())
    with pytest.raises(cm.LaunchError, match="cannot tune for device profile 'generic'"):
        k[1].tune(np.zeros(16, np.float32), 16, device="generic")


def test_without_a_native_compiler_ranking_says_why(monkeypatch):
    """Until Intel's compiler is wired into k.compile, ranking reports it per config."""
    monkeypatch.setattr(cm.Kernel, "compile", lambda self, *a, **kw: object())
    k = cm.autotune(configs=[{"TM": 1, "TN": 16}], key=[])(_gemm_like())
    with pytest.warns(cm.AutotuneWarning, match="configs for 'pvc' cannot be ranked"), \
            pytest.raises(cm.LaunchError, match="every autotune config failed"):
        k[1].tune(np.zeros(16, np.float32), 16, device="pvc")


# ---------------------------------------------------------------------------
# The disk cache across processes

MODULE = '''
import cmlang as cm
from cmlang import f32


@cm.func
def finish(v):
    return v{finish}

@cm.autotune(configs=[{"BLOCK": 64, "REDUNDANT": 400}, {"BLOCK": 64, "REDUNDANT": 1}], key=["x"],
             repeat=5)
@cm.kernel(simd=16)
def double(x: cm.ptr[f32], y: cm.ptr[f32], BLOCK: cm.constexpr, REDUNDANT: cm.constexpr):
    base = cm.thread_id(0) * BLOCK
    v = cm.load(x, base, BLOCK)
    acc = v * FACTOR
    for _ in range(REDUNDANT):
        acc = acc + v * 0.0
    cm.store(y, base, finish(acc))
'''

CHILD = '''
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import tuned
x = np.arange(1 << 18, dtype=np.float32)
y = np.zeros_like(x)
tuned.double[lambda c: x.size // c["BLOCK"]](x, y)
assert np.array_equal(y, tuned.FACTOR * x), "wrong result"
print("timed", tuned.double.timed, "how", tuned.double.how, "best", tuned.double.best)
'''


def _child(project, env):
    out = subprocess.run([sys.executable, "-c", CHILD, str(project)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_choice_persists_across_processes_and_source_change_invalidates(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "tuned.py").write_text("FACTOR = 2.0\n" + MODULE.replace("{finish}", ""))
    env = dict(os.environ, CMLANG_CACHE_DIR=str(tmp_path / "shared-cache"))
    best = "best {'BLOCK': 64, 'REDUNDANT': 1}"
    assert _child(project, env) == f"timed True how timed {best}"
    assert _child(project, env) == f"timed False how cached {best}"     # not timed again
    logged = subprocess.run([sys.executable, "-c", CHILD, str(project)], capture_output=True, text=True,
                            env=dict(env, CMLANG_AUTOTUNE_LOG="1"), cwd=ROOT, timeout=600).stderr
    assert "timed on the device (the choice of an earlier process, from the disk cache)" in logged
    assert " * {'BLOCK': 64, 'REDUNDANT': 1}  " in logged
    (project / "tuned.py").write_text("FACTOR = 3.0\n" + MODULE.replace("{finish}", ""))
    assert _child(project, env) == f"timed True how timed {best}"       # a constant it reads: again
    assert _child(project, env) == f"timed False how cached {best}"
    (project / "tuned.py").write_text("FACTOR = 3.0\n" + MODULE.replace("{finish}", " + 0.0"))
    assert _child(project, env) == f"timed True how timed {best}"       # a @cm.func it calls: again
    env_off = dict(env, CMLANG_CACHE="0")
    assert _child(project, env_off) == f"timed True how timed {best}"   # no cache: always timed


def test_device_and_configs_enter_the_disk_key():
    k = _tuned_double()
    sources = tuning._kernel_sources(k.kernel)
    cpu = tuning._device_identity(cm.runtime.profiles.get_profile("cpu"), True)
    pvc = tuning._device_identity(cm.runtime.profiles.get_profile("pvc"), False)
    keys = {k._disk_key((1,), sources, cpu), k._disk_key((1,), sources, pvc),
            k._disk_key((2,), sources, cpu), _tuned_double(configs=(FAST, SLOW))._disk_key((1,), sources, cpu)}
    assert len(keys) == 4
    assert k._disk_key((1,), sources, cpu) == _tuned_double()._disk_key((1,), sources, cpu)


@cm.autotune(configs=[{"N": 16}, {"N": 64}, {"N": 4096}], key=["n"])
@cm.kernel(simd=16)
def _scale_rows(x: cm.ptr[f32], n: i32, N: cm.constexpr):
    base = cm.thread_id(0) * N
    cm.store(x, base, cm.load(x, base, N) * 2.0)


@pytest.mark.skipif(not __import__("shutil").which(os.environ.get("CMLANG_OCLOC", "ocloc")),
                    reason="needs Intel's offline compiler (apt-get install intel-opencl-icd; CI installs it)")
def test_ranking_for_pvc_with_intel_compilers_real_stats():
    """End to end on a compile-only profile: IGC builds each config for PVC; the 4096-element
    register spills (ranked last although it has the fewest instructions per CM thread of
    work), and of the others the one with fewer instructions for the whole grid wins."""
    x = np.ones(8192, np.float32)
    _scale_rows[lambda c: (8192 // c["N"],)].tune(x, 8192, device="pvc")
    assert _scale_rows.best == {"N": 64} and _scale_rows.how == "ranked"
    stats = {row.config["N"]: row.stats for row in _scale_rows.table}
    assert stats[4096]["spill_bytes"] > 0 and stats[16]["spill_bytes"] == stats[64]["spill_bytes"] == 0
    assert np.all(x == 1.0)        # ranking compiles, it launches nothing
