"""Cache contents (issue 17, docs/faults.md "Cache contents"): a damaged, padded or stale cache
entry is never served, and a full disk in the cache folder ends in one line.

Each case builds a tiny entry, damages it the way the adversarial pass did (inverted bytes,
single bit flips, an extra part file, a same-size rewrite of an input, no space left), and
checks that widedeep rebuilds the entry (logged, counted in the manifest) or fails in one line
naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _toy_cache import CountingReader, assert_same, register_counting_reader, write_csv

from widedeep.cli import data as data_cli
from widedeep.cli.errors import report_user_error
from widedeep.data import cache, pipeline
from widedeep.data.preprocess import Preprocessor


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> CountingReader:
    return register_counting_reader(monkeypatch)


@pytest.fixture
def cfg(tmp_path: Path) -> dict[str, Any]:
    write_csv(tmp_path / "toy.csv")
    return {
        "name": "toy",
        "root": str(tmp_path),
        "cache_dir": str(tmp_path / "cache"),
        "files": {"train": "toy.csv"},
        "split": {"method": "random", "ratios": {"train": 0.8, "valid": 0.1, "test": 0.1}},
        "features": {"categorical": ["shop", "hour"], "dense": ["price"],
                     "crosses": [{"fields": ["shop", "hour"]}], "min_count": 1},
        "keep_columns": ["score"],
    }


def the_entry(cfg: dict[str, Any]) -> Path:
    [entry] = [p for p in Path(cfg["cache_dir"]).iterdir() if not p.name.startswith(".")]
    return entry


def manifest_of(entry: Path) -> dict[str, Any]:
    return json.loads((entry / "manifest.json").read_text())


def invert(path: Path, at: int, length: int = 64) -> None:
    body = bytearray(path.read_bytes())
    body[at:at + length] = bytes(b ^ 0xFF for b in body[at:at + length])
    path.write_bytes(bytes(body))


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- damaged contents --------------------------------------------------------------------------


def test_inverted_bytes_in_a_part_file_rebuild_the_entry(cfg, reader, caplog) -> None:
    first = pipeline.load_data(cfg)
    entry = the_entry(cfg)
    part = entry / "train" / "part-00000.parquet"
    invert(part, part.stat().st_size // 2)
    again = pipeline.load_data(cfg)
    assert reader.calls == 2 and not again.info["cache_hit"]
    assert_same(first, again)
    assert "train/part-00000.parquet" in caplog.text and "rebuilding" in caplog.text
    assert manifest_of(entry)["rebuilds"] == 1
    assert pipeline.load_data(cfg).info["cache_hit"] and reader.calls == 2


@pytest.mark.slow
def test_single_bit_flips_are_never_served(cfg, reader) -> None:
    """The adversarial pass served 20 of 40 random bit flips as a hit with other data."""
    first = pipeline.load_data(cfg)
    entry = the_entry(cfg)
    files = sorted(p for p in entry.rglob("*") if p.is_file() and p.name != "manifest.json")
    rng = random.Random(17)
    flips = 12
    for _ in range(flips):
        path = rng.choice(files)
        body = bytearray(path.read_bytes())
        at = rng.randrange(len(body))
        body[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(body))
        assert_same(first, pipeline.load_data(cfg))
    assert reader.calls == 1 + flips
    assert manifest_of(entry)["rebuilds"] == flips
    # The manifest carries a hash of itself: a flipped digit in, say, a vocabulary size too.
    manifest = entry / "manifest.json"
    body = bytearray(manifest.read_bytes())
    at = body.index(b'"rows"')
    at += body[at:].index(b"24")  # train's 240 rows
    body[at] ^= 1  # "2" -> "3"
    manifest.write_bytes(bytes(body))
    assert_same(first, pipeline.load_data(cfg))
    assert reader.calls == 2 + flips


def test_an_extra_part_file_is_not_read(cfg, reader) -> None:
    first = pipeline.load_data(cfg)
    train = the_entry(cfg) / "train"
    shutil.copy(train / "part-00000.parquet", train / "part-99999.parquet")
    again = pipeline.load_data(cfg)
    assert again.info["cache_hit"] and reader.calls == 1
    assert len(again.splits["train"]) == len(first.splits["train"]) == 240
    assert cache.split_files(the_entry(cfg), "train") == [train / "part-00000.parquet"]


def test_an_entry_without_content_hashes_is_rebuilt_once(cfg, reader) -> None:
    pipeline.load_data(cfg)
    entry = the_entry(cfg)
    doc = manifest_of(entry)
    # The manifest of an older widedeep: sizes only.
    doc["files"] = {rel: (p.stat().st_size) for rel in doc["files"]
                    for p in [entry / rel]}
    (entry / "manifest.json").write_text(json.dumps(doc))
    assert not pipeline.load_data(cfg).info["cache_hit"]
    assert pipeline.load_data(cfg).info["cache_hit"]
    assert reader.calls == 2


def test_damage_that_cannot_be_rebuilt_fails_in_one_line_naming_the_file(
    cfg, reader, capsys
) -> None:
    pipeline.load_data(cfg)
    entry = the_entry(cfg)
    part = entry / "valid" / "part-00000.parquet"
    invert(part, part.stat().st_size // 2)
    root = Path(cfg["cache_dir"])
    root.chmod(0o555)  # a shared, read-only cache: nothing can be rebuilt there
    try:
        with pytest.raises((ValueError, OSError)) as caught:
            pipeline.prepare(cfg)
    finally:
        root.chmod(0o755)
    assert report_user_error("widedeep-data", caught.value) == 2
    line = one_error_line(capsys)
    assert str(part) in line and "not writable" in line
    assert reader.calls == 1


def test_build_cache_refuses_a_damaged_entry_it_cannot_rebuild(tmp_path, capsys) -> None:
    from widedeep.cli.build_cache import main

    overrides = ["data=synthetic", "data.generator.n_rows=2000", f"data.cache_dir={tmp_path}"]
    assert main(overrides) == 0
    [entry] = list(tmp_path.iterdir())
    part = entry / "test" / "part-00000.parquet"
    invert(part, part.stat().st_size // 2)
    capsys.readouterr()
    tmp_path.chmod(0o555)
    try:
        assert main(overrides) == 2
    finally:
        tmp_path.chmod(0o755)
    line = one_error_line(capsys)
    assert line.startswith("python -m widedeep.cli.build_cache: error: ") and str(part) in line


@pytest.mark.parametrize("damage", ["invert", "append"])
def test_a_file_damaged_after_the_check_fails_in_one_line_naming_it(
    cfg, reader, capsys, damage
) -> None:
    directory, manifest, _ = pipeline.prepare(cfg)
    part = directory / "test" / "part-00000.parquet"
    # Inverted in the middle, this toy's part file stays valid parquet of other numbers (the
    # bytes land in a column's data page): only hashing the bytes read catches it.
    if damage == "invert":
        invert(part, part.stat().st_size // 2)
    else:
        with part.open("ab") as f:
            f.write(b"\0" * 10)
    with pytest.raises((ValueError, OSError)) as caught:
        cache.read(directory, manifest)
    assert report_user_error("widedeep-data", caught.value) == 2
    line = one_error_line(capsys)
    assert str(part) in line and "damaged" in line


@pytest.mark.slow
@pytest.mark.parametrize("command", ["prepare", "info"])
def test_data_cli_rebuilds_a_damaged_entry(tmp_path, capsys, command) -> None:
    overrides = ["data=synthetic", "data.generator.n_rows=2000", "data.cache=true",
                 f"data.cache_dir={tmp_path}"]
    assert data_cli.main(["prepare", *overrides]) == 0
    [entry] = list(tmp_path.iterdir())
    part = entry / "train" / "part-00000.parquet"
    invert(part, part.stat().st_size // 2)
    capsys.readouterr()
    assert data_cli.main([command, *overrides]) == 0
    assert "synthetic" in capsys.readouterr().out
    assert manifest_of(entry)["rebuilds"] == 1


# --- stale inputs --------------------------------------------------------------------------


def rewrite_same_size_and_mtime(path: Path) -> None:
    """Other bytes, the same size, the old mtime (``cp -p`` / ``rsync -t`` of other content)."""
    st = path.stat()
    body = bytearray(path.read_bytes())
    first_row = body.index(b"\n") + 1
    body[first_row] = ord("b") if body[first_row] != ord("b") else ord("c")  # its shop value
    path.write_bytes(bytes(body))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_large_input_rewritten_same_size_and_mtime_needs_verify_content(
    cfg, reader, monkeypatch
) -> None:
    monkeypatch.setattr(cache, "HASH_BELOW", 1024)  # the toy input counts as large
    path = Path(cfg["root"]) / "toy.csv"
    pipeline.load_data(cfg)
    rewrite_same_size_and_mtime(path)
    # The documented limit (README, "The processed-data cache"): size + mtime see no change.
    assert pipeline.load_data(cfg).info["cache_hit"]
    content = {**cfg, "cache_verify": "content"}
    fresh = pipeline.load_data({**content, "cache": False})
    rebuilt = pipeline.load_data(content)
    assert not rebuilt.info["cache_hit"] and reader.calls == 3
    assert_same(fresh, rebuilt)
    assert pipeline.load_data(content).info["cache_hit"]
    rewrite_same_size_and_mtime(path)
    assert not pipeline.load_data(content).info["cache_hit"]


def test_cache_verify_takes_size_or_content(cfg, reader) -> None:
    with pytest.raises(ValueError, match="data.cache_verify must be 'size' or 'content'"):
        pipeline.load_data({**cfg, "cache_verify": "always"})


@pytest.mark.slow
def test_cache_verify_is_in_the_config_schema(tmp_path) -> None:
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config

    for name in ("criteo", "synthetic", "table"):
        assert compose_config([f"data={name}"]).data.cache_verify == "size"
    cfg = compose_config(["data=criteo", "data.cache_verify=content"])
    assert OmegaConf.to_container(cfg.data)["cache_verify"] == "content"


# --- disk full -------------------------------------------------------------------------------


def assert_nothing_trusted(root: Path) -> None:
    left = [p.name for p in root.iterdir() if p.is_dir()] if root.exists() else []
    assert left == [], left


@pytest.fixture
def full_tmpfs(tmp_path: Path):
    """A tiny tmpfs mount, filled up: every write to it fails with ENOSPC."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        with (mount / "filler").open("wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_on_a_tmpfs_cache_folder_fails_in_one_line(
    cfg, reader, full_tmpfs, capsys
) -> None:
    root = full_tmpfs / "cache"
    with pytest.raises(OSError) as caught:
        pipeline.load_data({**cfg, "cache_dir": str(root)})
    assert report_user_error("widedeep-data", caught.value) == 2
    line = one_error_line(capsys)
    assert str(root) in line and "ENOSPC" in line
    assert_nothing_trusted(root)
    (full_tmpfs / "filler").unlink()  # space again: the next run builds the entry
    assert not pipeline.load_data({**cfg, "cache_dir": str(root)}).info["cache_hit"]


def test_disk_full_through_widedeep_data_prepare_exits_2(full_tmpfs, capsys) -> None:
    root = full_tmpfs / "cache"
    rc = data_cli.main(["prepare", "data=synthetic", "data.generator.n_rows=2000",
                        "data.cache=true", f"data.cache_dir={root}"])
    assert rc == 2
    line = one_error_line(capsys)
    assert line.startswith("widedeep-data: error: ") and str(root) in line and "ENOSPC" in line
    assert_nothing_trusted(root)


@pytest.mark.parametrize("where", ["parquet", "preprocessor", "manifest"])
def test_disk_full_injected_fails_in_one_line(cfg, reader, monkeypatch, capsys, where) -> None:
    def parquet_full(*args: Any, **kwargs: Any) -> None:
        # What polars raises on a full disk.
        raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO "
                                         "error: No space left on device (os error 28)")

    def os_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "parquet":
        monkeypatch.setattr(pl.DataFrame, "write_parquet", parquet_full)
    elif where == "preprocessor":
        monkeypatch.setattr(Preprocessor, "save", os_full)
    else:
        monkeypatch.setattr(Path, "write_text", os_full)
    with pytest.raises(OSError) as caught:
        pipeline.load_data(cfg)
    assert report_user_error("widedeep-data", caught.value) == 2
    line = one_error_line(capsys)
    assert cfg["cache_dir"] in line and "ENOSPC" in line
    assert_nothing_trusted(Path(cfg["cache_dir"]))
