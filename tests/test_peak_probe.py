"""The peak probe (``cmlang bench --peak``): its FMA chains compute the recurrence they
claim, in every config, and the command prints the figure and reads the other rows
against it (% peak column, JSON); ``--size large`` runs only the workloads that have one."""
import json
import re

import numpy as np
import pytest

import cmlang as cm
import cmlang.bench as bench
from cmlang.cli import main
from cmlang.examples.bench import peak, sgemm


@pytest.mark.parametrize("config", peak.PEAK_CONFIGS, ids=lambda c: f"{c['CHAINS']}x{c['W']}-simd{c['simd']}")
@pytest.mark.parametrize("iters, a, b", [(0, 0.5, 1.0), (1, 0.5, 1.0), (7, -0.75, 0.25), (40, 0.5, 1.0)])
def test_every_config_computes_the_chains(config, iters, a, b, rng):
    """x <- x * a + b, iters times, in every value: the float64 closed form (each FMA is
    rounded once in f32, so a contracting chain stays within a few ulps of it)."""
    x = rng.uniform(-4, 4, 2048).astype(np.float32)
    y = np.empty_like(x)
    kernel = cm.kernel(simd=config["simd"])(peak.fma_chains.kernel.fn)
    threads = x.size // (config["CHAINS"] * config["W"])
    kernel[(threads,)](x, y, iters, a, b, config["CHAINS"], config["W"])
    expected = peak.reference_chains(x, iters, a, b)
    np.testing.assert_allclose(y, expected, rtol=4e-7, atol=4e-7)
    if iters == 40:     # converged: every chain at the fixed point b / (1 - a) = 2
        assert np.all(y == 2.0)


def test_reference_is_the_recurrence():
    x = np.array([-3.0, 0.0, 1.5, 2.0])
    walked = x.copy()
    for _ in range(5):
        walked = walked * -0.75 + 0.25
    np.testing.assert_allclose(peak.reference_chains(x, 5, -0.75, 0.25), walked, rtol=1e-15)


def test_tuned_probe_matches_the_reference(rng):
    x = rng.uniform(-4, 4, 4096).astype(np.float32)
    y, _ = peak.chains(x, 3)
    np.testing.assert_allclose(y, peak.reference_chains(x, 3), rtol=4e-7, atol=4e-7)
    assert peak.fma_chains.best in peak.PEAK_CONFIGS


def test_probe_benchmark_checks_its_result():
    b = peak.benchmark
    params = b.sizes["tiny"]
    inputs = b.make_inputs(params, np.random.default_rng(1))
    expected = b.reference(inputs)
    assert b.verify(expected, expected) is None
    assert b.verify(expected + 1e-3, expected) is not None   # a chain that went wrong is a FAIL
    assert b.flops(params) == 2.0 * params["n"] * params["iters"]


def _peak_figure(out):
    found = re.search(r"peak f32 FMA throughput: ([0-9.]+) GFLOP/s", out)
    assert found, out
    return float(found.group(1))


def test_cli_peak_alone_prints_a_positive_figure(capsys):
    assert main(["bench", "--peak", "--size", "tiny", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert _peak_figure(out) > 0
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == ["kernel", "peak"]   # the probe alone


def test_cli_peak_adds_a_percent_column_and_json(tmp_path, capsys):
    out_json = tmp_path / "peak.json"
    assert main(["bench", "--peak", "sgemm", "--size", "tiny", "--repeat", "1",
                 "--impl", "cmlang", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    figure = _peak_figure(out)
    header = next(line for line in out.splitlines() if line.startswith("| kernel"))
    cells = [c.strip() for c in header.split("|")[1:-1]]
    assert cells[cells.index("GFLOP/s") + 1] == "% peak"
    records = {r["kernel"]: r for r in json.loads(out_json.read_text())}
    assert set(records) == {"peak", "sgemm"}
    assert records["peak"]["peak_fraction"] == 1.0
    assert records["peak"]["gflops"] == pytest.approx(figure, abs=0.05)
    sgemm_row = records["sgemm"]
    assert sgemm_row["peak_fraction"] == pytest.approx(sgemm_row["gflops"] / records["peak"]["gflops"])
    table_row = next(line for line in out.splitlines() if line.startswith("| sgemm"))
    percent = float(table_row.split("|")[1:-1][cells.index("% peak")])
    assert percent == pytest.approx(100 * sgemm_row["peak_fraction"], abs=0.05)


def test_without_peak_there_is_no_percent_column():
    r = bench.Record("k", "1", "cmlang", 1.0, 2.0, None, "dev")
    assert "% peak" not in bench.format_table([r])
    bench.read_against_peak([r], [bench.Record("peak", "1", "cmlang", 1.0, 8.0, None, "dev")])
    assert r.peak_fraction == 0.25 and "% peak" in bench.format_table([r])


def test_large_size_runs_only_the_workloads_that_have_one():
    benchmarks = bench.load_benchmarks(report=pytest.fail)
    left_out = []
    large = bench.with_size(benchmarks, "large", left_out.append)
    assert [b.name for b in large] == ["sgemm"]
    assert "histogram has no large size: left out" in left_out
    params = large[0].sizes["large"]
    assert (params["m"], params["n"], params["k"]) == (4096, 4096, 4096)
    assert bench.with_size(benchmarks, "full", left_out.append) == benchmarks
    for c in sgemm.GEMM_CONFIGS:     # every tile divides the large size too
        assert 4096 % c["TM"] == 0 and 4096 % c["TN"] == 0 and 4096 % c["KU"] == 0
