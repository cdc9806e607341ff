"""One build of a native binary however many ask for it at once (``disk_store.building``).

The test session's workers (and ``cmlang isa``'s parallel builds) share one disk cache:
without the lock, two that wanted the same Intel GPU binary at the same moment each ran
IGC on it.
"""
import threading

import pytest

import cmlang as cm
from cmlang import f32
from cmlang.codegen import intel_gpu
from cmlang.runtime import disk_store


@cm.kernel
def scale(x: cm.ptr[f32], a: f32):
    cm.store(x, cm.thread_id(0) * 16, cm.load(x, cm.thread_id(0) * 16, 16) * a)


def test_building_serializes_holders_of_one_key(tmp_path, monkeypatch):
    monkeypatch.setenv(disk_store.DIR_ENV, str(tmp_path))
    inside, most = [0], [0]
    guard = threading.Lock()

    def hold():
        with disk_store.building(disk_store.NATIVE_BINARIES, "ab" * 32):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            threading.Event().wait(0.05)
            with guard:
                inside[0] -= 1
    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 1 and not any(t.is_alive() for t in threads)


@pytest.mark.skipif(not intel_gpu.available(), reason="Intel's offline compiler (ocloc) is not installed")
def test_concurrent_requests_for_one_binary_run_ocloc_once(tmp_path, monkeypatch):
    monkeypatch.setenv(disk_store.DIR_ENV, str(tmp_path))
    spirv = scale.compile(target="spirv").spirv
    runs, real = [], intel_gpu._run_ocloc

    def counted(*args):
        runs.append(args[2])
        return real(*args)
    monkeypatch.setattr(intel_gpu, "_run_ocloc", counted)
    builds = [None] * 4

    def build(i):
        builds[i] = intel_gpu.build_native(spirv, "scale", "pvc")
    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert runs == ["scale"]
    assert all(b is not None and b.binary == builds[0].binary and b.stats == builds[0].stats for b in builds)
