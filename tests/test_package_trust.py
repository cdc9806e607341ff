"""Malformed, oversized or inconsistent packages end in PackageError naming the problem;
the manifest has a checksum of its own; the manifest's simd must match the SPIR-V."""
import json
import os
import zipfile

import numpy as np
import pytest

import cmlang as cm
from cmlang.runtime.package import PackageError, load_package, manifest_checksum


@cm.kernel(simd=8)
def double(x: cm.ptr[cm.f32]):
    base = cm.thread_id(0) * 8
    cm.store(x, base, cm.load(x, base, 8) * 2.0)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pkg") / "double.cmpkg")
    cm.build_package(path, [double], progress=False)
    return path


def rewrite(src, dst, manifest=None, raw_manifest=None, checksum=True, extra=()):
    """A copy of package ``src`` with its manifest changed by ``manifest(dict)`` (or
    replaced by ``raw_manifest`` bytes), its checksum recomputed unless ``checksum`` is False."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        original = zin.read("manifest.json")
        data = raw_manifest
        if data is None:
            parsed = json.loads(original)
            if manifest is not None:
                parsed = manifest(parsed) or parsed
            data = json.dumps(parsed).encode()
        for item in zin.infolist():
            if item.filename == "manifest.json":
                zout.writestr(item, data)
            elif item.filename == "manifest.sha256":
                zout.writestr(item, manifest_checksum(data) if checksum else zin.read(item))
            else:
                zout.writestr(item, zin.read(item))
        for name, content in extra:
            zout.writestr(name, content)
    return str(dst)


def entry(change):
    def edit(m):
        change(m["kernels"][0])
    return edit


def test_intact_package_loads_and_runs(package):
    pkg = load_package(package)
    x = np.arange(32, dtype=np.float32)
    pkg.double[4](x)
    np.testing.assert_array_equal(x, np.arange(32) * 2)


def test_manifest_checksum(package, tmp_path):
    edited = rewrite(package, tmp_path / "a.cmpkg", entry(lambda r: r.update(simd=16)), checksum=False)
    with pytest.raises(PackageError, match=r"the manifest does not match its sha256 in "
                                           r"manifest.sha256: the package was modified or damaged"):
        load_package(edited)
    with zipfile.ZipFile(package) as zin, zipfile.ZipFile(tmp_path / "b.cmpkg", "w") as zout:
        for item in zin.infolist():
            if item.filename != "manifest.sha256":
                zout.writestr(item, zin.read(item))
    with pytest.raises(PackageError, match=r"has no manifest.sha256: the package was modified or "
                                           r"written by an older cmlang; build it again"):
        load_package(str(tmp_path / "b.cmpkg"))


@pytest.mark.parametrize("change, expected", [
    (entry(lambda r: r.update(simd=16)), "simd 16 but 8 work-items per CM thread"),
    (entry(lambda r: r.update(simd=16, lanes_per_thread=16)),
     "the record says 16 work-items per CM thread (simd 16) but the SPIR-V's SubgroupSize is 8"),
    (entry(lambda r: r.update(simd=0)), "simd must be one of (1, 8, 16, 32), got 0"),
    (entry(lambda r: r.update(simd="8")), "'simd' must be a int, got '8'"),
    (entry(lambda r: r.update(entry=7)), "'entry' must be a non-empty string, got 7"),
    (entry(lambda r: r.update(entry="other")), "the SPIR-V has no kernel entry point 'other' (it has: double)"),
    (entry(lambda r: r.update(extensions=[3])), "'extensions' must be strings, got [3]"),
    (entry(lambda r: r.pop("params")), "'params' must be a list, got None"),
    (entry(lambda r: r["params"][0].update(min_elems=-1)), "a params entry must be"),
    (entry(lambda r: r["params"][0].update(type="ptr<f64>")),
     "the signature's run-time parameters"),
    (entry(lambda r: r.update(signature=[{"name": 1}])), "a signature entry must be"),
    (entry(lambda r: r.update(constexprs={"N": 3})), "constexprs ['N'] do not match"),
    (entry(lambda r: r["params"][0].update(type="vector<<")), "damaged manifest entry"),
    (lambda m: m.update(kernels={}), "'kernels' must be a non-empty list"),
    (lambda m: m.update(kernels=[7]), "manifest entry 0 is not an object"),
    (entry(lambda r: r.update(payload="nope.spv")), "the payload nope.spv is missing"),
])
def test_malformed_manifest_entries(package, tmp_path, change, expected):
    edited = rewrite(package, tmp_path / "e.cmpkg", change)
    with pytest.raises(PackageError) as info:
        load_package(edited)
    assert expected in str(info.value), str(info.value)
    assert str(info.value).startswith(edited)


def test_manifest_budgets(package, tmp_path, monkeypatch):
    deep = b'{"format": "cmlang-package", "format_version": 1, "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    with pytest.raises(PackageError, match=r"the manifest has: 101 levels of nesting in a package "
                                           r"manifest, over the limit of 32 \(set CMLANG_MAX_MANIFEST_DEPTH"):
        load_package(rewrite(package, tmp_path / "d.cmpkg", raw_manifest=deep))
    very_deep = b"[" * 200000 + b"]" * 200000
    with pytest.raises(PackageError, match="nested too deeply|not valid JSON|nesting"):
        load_package(rewrite(package, tmp_path / "v.cmpkg", raw_manifest=very_deep))
    monkeypatch.setenv("CMLANG_MAX_MANIFEST_BYTES", "1000")
    big = json.dumps({"format": "cmlang-package", "pad": "x" * 5000}).encode()
    with pytest.raises(PackageError, match=r"manifest.json: the member has: 50\d\d bytes of package "
                                           r"manifest, over the limit of 1000 \(set CMLANG_MAX_MANIFEST_BYTES"):
        load_package(rewrite(package, tmp_path / "m.cmpkg", raw_manifest=big))


def test_payload_budget_is_checked_before_inflating(package, tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_MAX_PAYLOAD_BYTES", "64")
    with pytest.raises(PackageError, match=r"spirv/\S+: the member has: \d+ bytes of one package "
                                           r"payload, over the limit of 64 \(set CMLANG_MAX_PAYLOAD_BYTES"):
        load_package(package)


def test_package_errors_show_no_loader_frames(package, tmp_path):
    edited = rewrite(package, tmp_path / "t.cmpkg", entry(lambda r: r.update(simd=0)))
    with pytest.raises(PackageError) as info:
        load_package(edited)
    frames = [f.name for f in info.traceback]
    assert frames[-1] == "entry" and "_read_specialization" not in frames, frames


def test_cache_entry_whose_simd_disagrees_with_its_spirv_is_rebuilt(tmp_path, monkeypatch):
    from cmlang import cache
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    x = np.arange(32, dtype=np.float32)
    first = cm.kernel(simd=8)(double.fn)
    ck = first.compile(x)
    profile = cm.runtime.profiles.get_profile(ck.profile)
    key = cache.kernel_key(first, (), "spirv", profile)
    path = cache.entry_path(cache.KERNELS, key)
    sections = cache.unpack_entry(open(path, "rb").read())
    manifest = json.loads(sections["manifest"])
    manifest["binary"]["simd"] = manifest["binary"]["lanes_per_thread"] = 16
    sections["manifest"] = json.dumps(manifest).encode()
    with open(path, "wb") as f:
        f.write(cache.pack_entry(sections))       # a valid checksum over a wrong record
    fresh = cm.kernel(simd=8)(double.fn)          # a new process, as far as the cache knows
    assert cache.load_compiled(fresh, key, "spirv", {}) is None
    assert not os.path.exists(path)
    fresh[4](x)
    np.testing.assert_array_equal(x, np.arange(32) * 2)
