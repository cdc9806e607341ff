import os
import tempfile

import numpy as np
import pytest

# Tests compile into a cache of their own: never answered from (or filling) the user's.
os.environ.setdefault("CMLANG_CACHE_DIR", tempfile.mkdtemp(prefix="cmlang-test-cache-"))


@pytest.fixture(params=["device", "interpret"])
def mode(request, monkeypatch):
    """Run a test on the default device and again in the interpreter (CMLANG_INTERPRET=1)."""
    if request.param == "interpret":
        monkeypatch.setenv("CMLANG_INTERPRET", "1")
    else:
        monkeypatch.delenv("CMLANG_INTERPRET", raising=False)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_report_header(config):
    try:
        from cmlang.runtime import get_device
        return f"cmlang device: {get_device()}  (CMLANG_INTERPRET={os.environ.get('CMLANG_INTERPRET', '')})"
    except Exception as e:  # the header must never break collection
        return f"cmlang device: unavailable ({e})"
