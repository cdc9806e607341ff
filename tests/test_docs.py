"""The written op semantics in docs/ stay generated from the catalogue."""
import os

from cmlang.ir.ops import OPS, docs_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ops_md_is_generated_from_the_catalogue():
    with open(os.path.join(ROOT, "docs", "ops.md"), encoding="utf-8") as f:
        assert f.read() == docs_markdown(), "run: python -c 'from cmlang.ir.ops import write_docs; write_docs()'"


def test_every_op_is_documented_in_one_sentence_or_more():
    for op in OPS.values():
        assert len(op.doc) > 10 and op.doc.endswith("."), op.name
