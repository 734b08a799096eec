"""widedeep-data: info / prepare on a small synthetic log, download, and one-line errors."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest

from widedeep.cli import data as data_cli
from widedeep.data.sources import SOURCES, RemoteFile, Source

SMALL = ["data=synthetic", "data.generator.n_rows=5000"]


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("widedeep-data: error: "), err
    return lines[-1]


def test_info_prints_splits_and_oov(capsys):
    assert data_cli.main(["info", *SMALL]) == 0
    out = capsys.readouterr().out
    splits = {m[1]: (int(m[2]), float(m[3]))
              for m in re.finditer(r"^(train|valid|test)\s+(\d+)\s+([\d.]+)$", out, re.M)}
    assert set(splits) == {"train", "valid", "test"}
    assert sum(rows for rows, _ in splits.values()) == 5000
    assert all(0 < rate < 1 for _, rate in splits.values())
    header = next(line for line in out.splitlines() if line.startswith("field"))
    assert "cardinality" in header and "OOV % train" in header and "OOV % test" in header
    user = next(line.split() for line in out.splitlines() if line.startswith("user "))
    assert user[1] == "categorical" and int(user[2]) > 2 and float(user[3]) == 0.0


def test_prepare_prints_one_line_summary(capsys):
    assert data_cli.main(["prepare", *SMALL]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    rows = dict((s, int(n)) for s, n in re.findall(r"\b(train|valid|test) (\d+)", out))
    assert set(rows) == {"train", "valid", "test"} and sum(rows.values()) == 5000
    assert re.search(r"prepared in [\d.]+ s", out)


@pytest.mark.parametrize(
    "argv",
    [
        ["info", "data=nope"],
        ["prepare", "data=synthetic", "data.generator.no_such_key=1"],
        ["download", "nope"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path):
    root = ["--root", str(tmp_path)] if argv[0] == "download" else []
    assert data_cli.main([*argv, *root]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == _error_line(captured.err)  # the only line: no traceback
    assert "Traceback" not in captured.err


def test_download_from_a_mirror(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    payload = b"1,2,3\n"
    (mirror / "data.csv").write_bytes(payload)
    monkeypatch.setitem(SOURCES, "toy", Source(
        title="toy", homepage="https://example.invalid", automated=True, why="test",
        terms="test terms", provides="toy/data.csv as the reader expects",
        files=(RemoteFile("https://example.invalid/data.csv", "toy/data.csv",
                          sha256=hashlib.sha256(payload).hexdigest()),),
    ))
    root = tmp_path / "root"
    argv = ["download", "toy", "--root", str(root), "--base-url", mirror.as_uri()]
    assert data_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(root / "toy" / "data.csv")
    assert "test terms" in captured.err and "note: toy/data.csv" in captured.err
    assert "downloading " + (mirror / "data.csv").as_uri() in captured.err


def test_download_defaults_to_the_data_dir_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WIDEDEEP_DATA_DIR", str(tmp_path))
    assert data_cli.main(["download", "criteo"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "criteo" / "criteo_dac_train_first10k.txt") in err
    assert _error_line(err).startswith(
        "widedeep-data: error: criteo must be downloaded by hand (instructions above)"
    )


def test_download_without_network_is_one_line_naming_dataset_url_and_cause(tmp_path, capsys):
    """adult through a 'mirror' on a loopback port that refuses connections: no traceback."""
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        argv = ["download", "adult", "--root", str(tmp_path), "--base-url", base, "--retries", "0"]
        assert data_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _error_line(err) == (
        f"widedeep-data: error: download adult: {base}/adult.data: cannot connect "
        "(ConnectionRefusedError: [Errno 111] Connection refused) "
        "(WIDEDEEP_DEBUG=1 shows the traceback)"
    )
    assert not list(tmp_path.rglob("adult.data"))
