"""The processed-data cache: reuse, rebuild on any change, atomic writes, untrusted leftovers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch
from _toy_cache import CountingReader, assert_same, register_counting_reader, write_csv

from widedeep.data import cache, pipeline
from widedeep.data.preprocess import Preprocessor
from widedeep.data.readers import READERS


@pytest.fixture(autouse=True)
def _default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test its own default cache root ($XDG_CACHE_HOME/widedeep), not conftest's shared
    one and never the user's home."""
    monkeypatch.delenv("WIDEDEEP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> CountingReader:
    return register_counting_reader(monkeypatch)


@pytest.fixture
def cfg(tmp_path: Path) -> dict[str, Any]:
    write_csv(tmp_path / "toy.csv")
    return {
        "name": "toy",
        "root": str(tmp_path),
        "files": {"train": "toy.csv"},
        "batch_size": 64,
        "split": {"method": "random", "ratios": {"train": 0.8, "valid": 0.1, "test": 0.1}},
        "features": {
            "categorical": ["shop", "hour"],
            "discretize": ["visits"],
            "dense": ["price"],
            "crosses": [
                {"fields": ["shop", "hour"]},
                {"fields": ["shop", "visits"], "hashed": True, "num_buckets": 16},
            ],
            "min_count": 2,
        },
        "keep_columns": ["score"],
    }


def entries(cfg: dict[str, Any]) -> list[Path]:
    root = cache.cache_root(cfg, pipeline.data_root(cfg))
    return sorted(root.iterdir()) if root.exists() else []


def test_second_load_reuses_the_cache(cfg, reader) -> None:
    first = pipeline.load_data(cfg)
    second = pipeline.load_data(cfg)
    assert reader.calls == 1
    assert_same(first, second)
    assert not first.info["cache_hit"] and second.info["cache_hit"]
    assert second.info["rows"] == {"train": 240, "valid": 30, "test": 30}
    assert isinstance(second.preprocessor, Preprocessor)
    [entry] = entries(cfg)
    # The default root is outside the data root, which may be shared or read-only.
    assert entry == Path(cfg["root"]) / "xdg" / "widedeep" / entry.name
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["format_version"] == cache.FORMAT_VERSION
    assert set(manifest["timings_s"]) == {"read_split", "fit", "encode", "write"}
    assert 0 < manifest["click_rate"]["train"] < 1


def test_cache_equals_the_uncached_build_extras_included(cfg, reader) -> None:
    cached = pipeline.load_data(cfg)
    plain = pipeline.load_data({**cfg, "cache": False})
    assert_same(cached, plain)
    assert cached.extras["test"].columns == ["score"]


def test_lazy_reader_streams_to_the_same_cache_content(cfg, reader, monkeypatch) -> None:
    eager = pipeline.load_data({**cfg, "cache": False})
    monkeypatch.setattr("widedeep.data.preprocess.BATCH_ROWS", 50)  # several batches per pass
    lazy = pipeline.load_data({**cfg, "lazy": True})
    assert_same(eager, lazy)
    [entry] = entries(cfg)
    assert len(cache.split_files(entry, "train")) > 1


def test_time_split_of_lazy_and_eager_sources_agree(cfg, reader) -> None:
    split = {"method": "time", "column": "ts", "ratios": {"train": 0.7, "valid": 0.2, "test": 0.1}}
    cfg = {**cfg, "cache": False, "split": split, "keep_columns": ["ts"]}
    eager, lazy = pipeline.load_data(cfg), pipeline.load_data({**cfg, "lazy": True})
    assert_same(eager, lazy)
    assert eager.info["rows"] == {"train": 210, "valid": 60, "test": 30}
    ts = {s: eager.extras[s]["ts"] for s in ("train", "valid", "test")}
    assert ts["train"].max() <= ts["valid"].min() and ts["valid"].max() <= ts["test"].min()


def test_split_ratios_must_name_every_split(cfg, reader) -> None:
    cfg = {**cfg, "split": {"ratios": {"train": 0.8, "valid": 0.2}}}
    with pytest.raises(ValueError, match=r"names no \['test'\] split"):
        pipeline.load_data(cfg)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["features"].update(min_count=3),
        lambda c: c["split"].update(seed=1),
        lambda c: c.update(keep_columns=[]),
    ],
)
def test_config_change_rebuilds(cfg, reader, change) -> None:
    pipeline.load_data(cfg)
    pipeline.load_data({**cfg, "batch_size": 4096, "eval_batch_size": 1})  # not in the key
    assert reader.calls == 1
    changed = json.loads(json.dumps(cfg))
    change(changed)
    pipeline.load_data(changed)
    assert reader.calls == 2
    assert len(entries(cfg)) == 2


def test_raw_file_change_rebuilds(cfg, reader) -> None:
    path = Path(cfg["root"]) / "toy.csv"
    before = pipeline.load_data(cfg)
    write_csv(path, n=300, seed=1)  # same shape, other content
    after = pipeline.load_data(cfg)
    assert reader.calls == 2
    assert not torch.equal(before.splits["train"].categorical, after.splits["train"].categorical)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch: same bytes, new mtime
    pipeline.load_data(cfg)
    assert reader.calls == 3


def test_crash_mid_write_leaves_no_cache(cfg, reader, monkeypatch) -> None:
    def crash(self, directory):
        raise KeyboardInterrupt("killed while writing")

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(Preprocessor, "save", crash)
        pipeline.load_data(cfg)
    assert entries(cfg) == []  # neither an entry nor a temporary directory
    data = pipeline.load_data(cfg)
    assert reader.calls == 2 and data.info["cache"]


def test_a_killed_build_is_never_trusted_and_is_cleaned(cfg, reader, monkeypatch) -> None:
    def killed(*args):
        raise OSError("killed before the rename")

    with monkeypatch.context() as m, pytest.raises(OSError, match="killed"):
        # A kill -9 runs no cleanup: keep the temporary directory, as such a crash would.
        m.setattr(cache.shutil, "rmtree", lambda *a, **k: None)
        m.setattr(cache, "_publish", killed)
        pipeline.load_data(cfg)
    [leftover] = entries(cfg)
    assert leftover.name.startswith(".tmp-") and (leftover / "manifest.json").exists()
    # Its process is gone: give it the pid of a finished process.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stem, host, _, tag = leftover.name.rsplit("-", 3)
    leftover.rename(leftover.with_name(f"{stem}-{host}-{dead.pid}-{tag}"))
    data = pipeline.load_data(cfg)
    assert reader.calls == 2 and data.info["cache"]
    assert [e.name.startswith(".tmp-") for e in entries(cfg)] == [False]


@pytest.mark.parametrize("damage", ["manifest", "truncate", "version"])
def test_damaged_entry_is_rebuilt(cfg, reader, damage) -> None:
    pipeline.load_data(cfg)
    [entry] = entries(cfg)
    manifest = entry / "manifest.json"
    if damage == "manifest":
        manifest.unlink()
    elif damage == "truncate":
        part = cache.split_files(entry, "train")[0]
        part.write_bytes(part.read_bytes()[:100])
    else:
        doc = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**doc, "format_version": -1}))
    data = pipeline.load_data(cfg)
    assert reader.calls == 2 and data.info["rows"]["train"] == 240
    assert cache.trusted(entry, json.loads(manifest.read_text())["fingerprint"])


def test_cache_switch_and_root(cfg, reader, tmp_path, monkeypatch) -> None:
    assert cache.enabled(cfg) and not cache.enabled({"name": "synthetic"})
    assert cache.enabled({"name": "synthetic", "cache": True})
    with pytest.raises(ValueError, match="data.cache must be true or false"):
        cache.enabled({"cache": "yes"})
    monkeypatch.setenv("WIDEDEEP_CACHE_DIR", str(tmp_path / "elsewhere"))
    pipeline.load_data(cfg)
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1
    pipeline.load_data({**cfg, "cache": False})
    assert reader.calls == 2


def test_synthetic_extras_survive_the_cache(tmp_path) -> None:
    cfg = {
        "name": "synthetic",
        "cache": True,
        "cache_dir": str(tmp_path),
        "generator": {"n_rows": 3000, "n_users": 50, "n_items": 40, "n_exceptions": 20},
        "features": {
            "categorical": ["user", "item"],
            "dense": ["price"],
            "crosses": [["user", "item"]],
        },
        "keep_columns": ["true_logit", "is_exception"],
    }
    built, cached = pipeline.load_data(cfg), pipeline.load_data(cfg)
    assert cached.info["cache_hit"]
    assert_same(built, cached)
    assert_same(built, pipeline.load_data({**cfg, "cache": False}))
    assert cached.extras["test"]["true_logit"].dtype == pl.Float64


def test_unwritable_cache_root_builds_without_the_cache(cfg, reader, caplog) -> None:
    root = Path(cfg["root"]) / "readonly"
    root.mkdir()
    root.chmod(0o555)  # marked read-only (root could still write)
    try:
        cfg = {**cfg, "cache_dir": str(root / "cache")}
        first, second = pipeline.load_data(cfg), pipeline.load_data(cfg)
    finally:
        root.chmod(0o755)
    assert reader.calls == 2 and not (root / "cache").exists()
    assert_same(first, second)
    assert "not writable" in caplog.text


def _module_reader(path: Path, tag: str):
    """A reader defined in its own file ``path`` (the file written anew with ``tag``)."""
    import importlib.util

    path.write_text(
        f"# {tag}\nimport polars as pl\n\n\ndef read(cfg, root):\n"
        f"    return pl.read_csv(root / cfg['files']['train'])\n"
    )
    spec = importlib.util.spec_from_file_location(f"toy_reader_{tag}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read


def test_the_cache_is_keyed_by_the_code_that_builds_it(cfg, tmp_path, monkeypatch) -> None:
    """A change in the reader's own file, or in a module every reader shares, is a new entry:
    a fix of the code that built the cached splits never serves the old ones."""
    import shutil

    source = tmp_path / "toy_reader.py"
    monkeypatch.setitem(READERS, "toy", _module_reader(source, "v1"))
    assert not pipeline.load_data(cfg).info["cache_hit"]
    assert pipeline.load_data(cfg).info["cache_hit"]  # the same code: reused
    monkeypatch.setitem(READERS, "toy", _module_reader(source, "v2"))  # its file edited
    again = pipeline.load_data(cfg)
    assert not again.info["cache_hit"] and len(entries(cfg)) == 2

    # A shared module (readers/_rows.py) edited, in a copy of the package the cache hashes.
    package = Path(cache.__file__).parents[1]
    copy = tmp_path / "package"
    for name in {
        *cache.CODE,
        *(str(p.relative_to(package)) for p in (package / "data" / "readers").glob("*.py")),
    }:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package / name, copy / name)
    monkeypatch.setattr(cache, "__file__", str(copy / "data" / "cache.py"))
    pipeline.load_data(cfg)  # (a new entry or not: the files hash in path order)
    assert pipeline.load_data(cfg).info["cache_hit"]  # the same bytes: the same key
    before = len(entries(cfg))
    with (copy / "data" / "readers" / "_rows.py").open("a") as f:
        f.write("\n# a fix\n")
    assert not pipeline.load_data(cfg).info["cache_hit"] and len(entries(cfg)) == before + 1
