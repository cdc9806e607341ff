"""Mutated kernels, IR text, manifests and launches, for a bounded time in a child
process (tests/fuzz_inputs.py): only cmlang's own exceptions may come out, and the
process must survive.  CMLANG_FUZZ_SECONDS (default 20) and CMLANG_FUZZ_SEED set the
run; the counts are printed (pytest -s) and kept in the JSON report."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mutated_inputs_end_in_cmlang_errors(tmp_path):
    seconds = float(os.environ.get("CMLANG_FUZZ_SECONDS", "20"))
    seed = os.environ.get("CMLANG_FUZZ_SEED", "2026")
    report = tmp_path / "fuzz.json"
    env = dict(os.environ, PYTHONPATH=REPO, CMLANG_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fuzz_inputs.py"),
                          "--seconds", str(seconds), "--seed", seed, "--json", str(report)],
                         env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=seconds * 4 + 120)
    assert out.returncode in (0, 1), f"the child died (status {out.returncode}):\n{out.stderr[-4000:]}"
    result = json.loads(report.read_text())
    print("fuzz counts:", json.dumps(result["counts"]))
    assert not result["findings"], "\n\n".join(
        f"{f['kind']}:\n{f['input']}\n{f['traceback']}" for f in result["findings"][:5])
    assert out.returncode == 0
    errors = {"kernel source": "CompileError", "IR text": "IRSyntaxError", "manifest": "PackageError",
              "launch": "LaunchError"}
    for kind, error in errors.items():   # every kind ran, and both ways
        counts = result["counts"][kind]
        assert counts.get(error, 0) > 0 and counts.get("accepted", 0) > 0, (kind, counts)
