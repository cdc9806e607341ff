"""The docs stay true: ops.md is generated from the catalogue, every Python block of
docs/api.md runs, and the repository cites no document outside itself."""
import json
import os
import re
import subprocess
import sys

import pytest

from cmlang.ir.ops import OPS, docs_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_MD = os.path.join(ROOT, "docs", "api.md")
# A block whose first line is this comment uses the launch forms k[grid, cm.group(...)],
# k.launch(grid, group=...) and keyword arguments; it runs where cmlang has cm.group.
LAUNCH_FORMS_MARK = "# needs the launch forms"


def test_ops_md_is_generated_from_the_catalogue():
    with open(os.path.join(ROOT, "docs", "ops.md"), encoding="utf-8") as f:
        assert f.read() == docs_markdown(), "run: python -c 'from cmlang.ir.ops import write_docs; write_docs()'"


def test_every_op_is_documented_in_one_sentence_or_more():
    for op in OPS.values():
        assert len(op.doc) > 10 and op.doc.endswith("."), op.name


# --- docs/api.md: every python block runs, in order, in one namespace -------------------

def api_blocks():
    with open(API_MD, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


# Runs the blocks in one process and one namespace (later blocks use earlier names); each
# block is its own file, since kernels are compiled from their source file. Prints one
# JSON line per block: "ok", "skipped" or the error.
_RUNNER = r"""
import json, sys, traceback
import cmlang as cm
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__docs__"}
results = []
for i, block in enumerate(blocks):
    if block.startswith(MARK) and not hasattr(cm, "group"):
        results.append("skipped")
        continue
    path = f"{sys.argv[2]}/api_block_{i}.py"
    with open(path, "w") as f:
        f.write(block)
    try:
        exec(compile(block, path, "exec"), namespace)
        results.append("ok")
    except BaseException:
        results.append(traceback.format_exc())
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module", params=["device", "interpreter"])
def api_results(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api_md_" + request.param)
    (tmp / "blocks.json").write_text(json.dumps(api_blocks()))
    runner = tmp / "runner.py"
    runner.write_text(f"MARK = {LAUNCH_FORMS_MARK!r}\n" + _RUNNER)
    env = {k: v for k, v in os.environ.items() if k != "CMLANG_INTERPRET"}
    if request.param == "interpreter":
        env["CMLANG_INTERPRET"] = "1"
    out = subprocess.run([sys.executable, str(runner), str(tmp / "blocks.json"), str(tmp)], cwd=str(tmp),
                         capture_output=True, text=True, timeout=900,
                         env={**env, "PYTHONPATH": ROOT})
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert lines, f"the docs runner died:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULTS "):])


def test_api_md_has_examples_of_every_register_method():
    text = "".join(api_blocks())
    for method in ("select", "replicate", "iselect", "format", "row", "column", "any", "all",
                   "astype"):
        assert f".{method}(" in text, method


@pytest.mark.parametrize("index", range(len(api_blocks())))
def test_api_md_block_runs(api_results, index):
    result = api_results[index]
    if result == "skipped":
        pytest.skip("uses the launch forms (cm.group), which this checkout does not have yet")
    assert result == "ok", f"docs/api.md python block {index}:\n{api_blocks()[index]}\n{result}"


# --- the repository stands alone: every document it cites is in it ------------------------

def tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in names:
        path = os.path.join(ROOT, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            if b"\0" not in data:
                yield name, data.decode("utf-8", "replace")


def _cited_file_exists(citing, cited, tracked):
    """``cited`` as written in ``citing``: a path from the root or from the citing file's
    folder, or a bare file name that some tracked file has."""
    if "/" not in cited:
        return cited in {os.path.basename(t) for t in tracked}
    here = os.path.dirname(os.path.join(ROOT, citing))
    return any(os.path.exists(os.path.normpath(os.path.join(base, cited))) for base in (ROOT, here))


def test_every_cited_markdown_document_is_in_the_repository():
    files = dict(tracked_text_files())
    missing = []
    for name, text in files.items():
        for cited in set(re.findall(r"[\w./-]*\w\.md\b", text)):
            if not _cited_file_exists(name, cited, files):
                missing.append(f"{name}: {cited}")
    assert not missing, "documents cited but not in the repository:\n" + "\n".join(sorted(missing))


def test_every_cited_docs_path_exists():
    missing = []
    for name, text in tracked_text_files():
        for cited in set(re.findall(r"(?<![\w.-])docs/[\w-]+(?:\.\w+)?", text)):
            if not os.path.exists(os.path.join(ROOT, cited)):
                missing.append(f"{name}: {cited}")
    assert not missing, "\n".join(sorted(missing))


def test_no_tracked_file_points_outside_the_repository():
    outside = re.compile(r"(?:\.\./)+shared\b|/" + r"work/")     # the sibling folder of a checkout
    me = os.path.relpath(__file__, ROOT)
    hits = [f"{name}: {m.group(0)}" for name, text in tracked_text_files() if name != me
            for m in outside.finditer(text)]
    assert not hits, "\n".join(hits)


def test_the_outside_check_catches_a_document_outside():
    files = {"README.md": "", "docs/api.md": ""}
    assert not _cited_file_exists("cmlang/x.py", "TOOLCHAIN" + ".md", files)
    assert _cited_file_exists("tests/test_x.py", "../docs/api.md", files)
    assert _cited_file_exists("cmlang/x.py", "README.md", files)
