"""The benchmark suite: every workload's cmlang and OpenCL C versions against numpy,
the harness (records, table, JSON, plot, skipped peers) and ``cmlang bench``."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import cmlang.bench as bench
from cmlang.runtime import get_device

BENCHMARKS = bench.load_benchmarks(report=lambda message: pytest.fail(message))
BY_NAME = {b.name: b for b in BENCHMARKS}
EXPECTED = {"sgemm", "hgemm", "bgemm", "igemm", "histogram", "bitonic_sort", "prefix_sum", "transpose", "filter3x3",
            "kmeans", "spmv"}


def test_every_workload_is_registered():
    assert EXPECTED <= set(BY_NAME)
    for b in BENCHMARKS:
        assert {"cmlang", "opencl-simt", "numpy"} <= set(b.implementations), b.name
        assert set(bench.SIZES) <= set(b.sizes), b.name


def run_implementation(b, impl, size="tiny"):
    inputs = b.make_inputs(b.sizes[size], np.random.default_rng(7))
    run = b.implementations[impl](inputs, get_device())
    seconds = run.run()
    return seconds, run.output(), b.reference(inputs)


@pytest.mark.parametrize("impl", ["cmlang", "opencl-simt"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_implementation_matches_numpy(name, impl):
    b = BY_NAME[name]
    seconds, got, expected = run_implementation(b, impl)
    assert b.verify(got, expected) is None, b.verify(got, expected)
    assert seconds > 0 and math.isfinite(seconds)


@pytest.mark.parametrize("name", ["histogram", "bitonic_sort", "transpose", "kmeans"])
def test_cmlang_version_in_the_interpreter(name, monkeypatch):
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    b = BY_NAME[name]
    seconds, got, expected = run_implementation(b, "cmlang")
    assert b.verify(got, expected) is None
    assert math.isnan(seconds)   # no device time when interpreting


def test_host_functions(rng):
    from cmlang.examples.bench import sgemm, histogram, bitonic_sort, prefix_sum, spmv
    a = rng.standard_normal((64, 32)).astype(np.float32)
    b = rng.standard_normal((32, 64)).astype(np.float32)
    np.testing.assert_allclose(sgemm.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sgemm.opencl_matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    pixels = rng.integers(0, 256, 1 << 15).astype(np.uint8)
    assert (histogram.histogram(pixels, per_thread=4096) == np.bincount(pixels, minlength=256)).all()
    keys = rng.standard_normal(1 << 12).astype(np.float32)
    assert (bitonic_sort.sort(keys) == np.sort(keys)).all()
    x = rng.integers(-5, 5, 1 << 18).astype(np.int32)
    assert (prefix_sum.inclusive_scan(x) == np.cumsum(x)).all()
    inputs = spmv.make_inputs({"rows": 256}, rng)
    nnz = inputs["row_ptr"][-1]
    y = spmv.spmv(inputs["row_ptr"], inputs["cols"][:nnz], inputs["vals"][:nnz], inputs["x"])
    np.testing.assert_allclose(y, spmv.reference(inputs), rtol=1e-4, atol=1e-4)


def test_a_wrong_result_is_a_fail_and_never_timed():
    calls = []

    def wrong(inputs, device):
        def run():
            calls.append(1)
            return 1.0
        return bench.Run(run, lambda: inputs["x"] + 1)

    b = bench.Benchmark("toy", "toy", {"tiny": {"n": 8}}, lambda p, rng: {"x": np.zeros(p["n"])},
                        lambda inputs: inputs["x"], {"opencl-simt": wrong})
    (record,) = bench.measure(b, "tiny", get_device(), repeat=5)
    assert record.status == "FAIL" and record.seconds is None
    assert "8 of 8 elements differ" in record.note
    assert len(calls) == 1


def test_missing_peers_are_skipped(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyclblast", None)       # import pyclblast -> ImportError
    (record,) = bench.measure(BY_NAME["sgemm"], "tiny", get_device(), repeat=1, impls=["clblast"])
    assert record.status == "skipped" and "pyclblast" in record.note
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "matplotlib" in bench.write_plot([record], str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_table_ratios_and_summary():
    def rec(kernel, impl, seconds, status="ok"):
        return bench.Record(kernel, "n", impl, seconds, None, 1.0 if seconds else None, "dev", status)

    records = [rec("a", "opencl-simt", 2.0), rec("a", "cmlang", 1.0), rec("b", "opencl-simt", 3.0),
               rec("b", "cmlang", 0.5), rec("b", "clblast", None, "skipped")]
    assert bench.ratios(records)[("b", "n", "cmlang")] == 6.0
    table = bench.format_table(records)
    assert "| a      | n    | cmlang      | 1.000e+00 |         |  1.0 | 2.00x |" in table
    assert "skipped" in table
    assert bench.summary(records).startswith(
        f"cmlang vs opencl-simt: geometric mean {math.sqrt(12):.2f}x over 2 kernels; lowest 2.00x (a n)")


def test_cli_bench_writes_json_and_plot(tmp_path):
    out, png = tmp_path / "out.json", tmp_path / "chart.png"
    proc = subprocess.run(
        [sys.executable, "-m", "cmlang.cli", "bench", "--size", "tiny", "--repeat", "1",
         "--json", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ))   # every workload at tiny size
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())
    keys = {"kernel", "size", "impl", "seconds", "gflops", "gbs", "device"}
    assert all(keys <= set(r) for r in records)
    assert {r["kernel"] for r in records} >= EXPECTED
    for r in records:
        assert r["status"] in ("ok", "skipped"), r
        assert (r["seconds"] is None) == (r["status"] != "ok")
    assert "| kernel" in proc.stdout and "geometric mean" in proc.stdout
    assert png.exists() or "plot skipped: matplotlib" in proc.stdout


def test_cli_quick_runs_named_benchmarks(tmp_path):
    out = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, "-m", "cmlang.cli", "bench", "transpose", "--quick",
                           "--repeat", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())
    assert {(r["kernel"], r["size"]) for r in records} == {("transpose", "1024x1024")}
    assert {r["impl"] for r in records} == {"cmlang", "opencl-simt", "numpy"}


def test_cli_rejects_unknown_names():
    proc = subprocess.run([sys.executable, "-m", "cmlang.cli", "bench", "nosuch"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown benchmark(s) nosuch" in proc.stderr


def test_select_takes_names_and_groups():
    def make(name, group=""):
        return bench.Benchmark(name, "", {}, None, None, {}, group=group)
    a, b, c = make("sgemm"), make("attn-dense", "attention"), make("attn-rope", "attention")
    everything = [a, b, c]
    assert bench.select(everything, []) == everything
    assert bench.select(everything, ["attention"]) == [b, c]
    assert bench.select(everything, ["attn-rope", "attention", "sgemm"]) == [c, b, a]   # each once
    with pytest.raises(SystemExit, match="unknown benchmark.*attn; available: sgemm, attn-dense, attn-rope, attention"):
        bench.select(everything, ["attn"])


def test_attention_benchmarks_form_the_attention_group():
    names = [b.name for b in bench.select(bench.load_benchmarks(), ["attention"])]
    assert names == ["attn-dense", "attn-dense-bf16", "attn-lightning", "attn-lightning-bf16", "attn-infllmv2",
                     "attn-infllmv2-bf16", "attn-rope", "attn-rope-bf16", "attn-rmsnorm", "attn-rmsnorm-bf16"]


def test_copy_bandwidth_probe_reports_read_plus_write():
    from examples.attention.bench import copy_bandwidth
    lines = []
    gbs = copy_bandwidth(1 << 16, repeat=2, report=lines.append)
    assert gbs > 0 and len(lines) == 1
    assert lines[0].startswith("OpenCL C copy of 0.2 MiB") and f"{gbs:.1f} GB/s (read + write)" in lines[0]
