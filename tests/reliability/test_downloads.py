"""Downloads (issue 17, docs/faults.md "Command line and downloads"): a checksum mismatch or a
refused connection is one ``widedeep-data: error: ...`` line naming the file, the URL and the
cause, exit 2; what a killed download leaves is cleaned up by the next run; every registry
file carries a checksum. Loopback and file:// URLs only, never the internet."""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pooch
import pytest
from conftest import real_data

from widedeep.cli import data as data_cli
from widedeep.data import download
from widedeep.data.sources import SOURCES, RemoteFile, Source

PAYLOAD = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(200))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def toy(monkeypatch, sha256: str = SHA) -> None:
    """A test-only dataset 'toy' of one file, toy/data.csv (base_url replaces its URL)."""
    monkeypatch.setitem(SOURCES, "toy", Source(
        title="toy", homepage="https://example.invalid", automated=True, why="test",
        terms="test terms", provides="toy/data.csv",
        files=(RemoteFile("https://example.invalid/data.csv", "toy/data.csv", sha256=sha256),),
    ))


def error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("widedeep-data: error: ")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]), err  # the last line, the only error
    assert "Traceback" not in err
    return lines[0]


def test_a_checksum_mismatch_is_one_line_naming_file_url_and_both_checksums(tmp_path,
                                                                            monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.csv").write_bytes(b"not the published bytes\n")
    toy(monkeypatch)
    root = tmp_path / "root"
    code = data_cli.main(["download", "toy", "--root", str(root), "--base-url", mirror.as_uri(),
                          "--retries", "0"])
    line = error_line(code, capsys.readouterr().err)
    got = hashlib.sha256(b"not the published bytes\n").hexdigest()
    assert f"{mirror.as_uri()}/data.csv" in line and "(data.csv)" in line, line
    assert f"expected sha256:{SHA}" in line and f"got {got}" in line, line
    assert not (root / "toy" / "data.csv").exists()


def test_a_refused_connection_is_one_line_naming_file_url_and_cause(tmp_path, monkeypatch,
                                                                    capsys):
    toy(monkeypatch)
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        code = data_cli.main(["download", "toy", "--root", str(tmp_path), "--base-url", base,
                              "--retries", "0"])
    line = error_line(code, capsys.readouterr().err)
    assert f"download toy: {base}/data.csv: cannot connect (ConnectionRefusedError" in line, line


def leftovers_of_a_killed_download(folder: Path) -> list[Path]:
    """What a download killed at each stage leaves in ``folder``: pooch's staging folder (with
    a partial file), an unpack's staging folder, a half-written derived file. Named as the
    code names them (the same prefixes and tempfile's random part)."""
    folder.mkdir(parents=True, exist_ok=True)
    fetch_stage = Path(tempfile.mkdtemp(prefix=download.staging_prefix("data.csv"), dir=folder))
    (fetch_stage / "tmpabc123").write_bytes(PAYLOAD[:10])
    unpack_stage = Path(tempfile.mkdtemp(prefix=download.staging_prefix("data.csv"), dir=folder))
    _, derived = tempfile.mkstemp(prefix=download.staging_prefix("data.csv"), suffix=".tmp",
                                  dir=folder)
    return [fetch_stage, unpack_stage, Path(derived)]


def test_a_killed_downloads_temporary_files_are_removed_by_the_next_run(tmp_path, monkeypatch,
                                                                         caplog):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.csv").write_bytes(PAYLOAD)
    toy(monkeypatch)
    root = tmp_path / "root"
    left = leftovers_of_a_killed_download(root / "toy")
    # Not widedeep's, or not this dataset's folder: kept.
    keep = [root / "toy" / ".hidden", root / "toy" / "notes.tmp", root / "toy" / ".other.x1y2z3w4",
            root / "elsewhere" / left[2].name]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep me")
    with caplog.at_level(logging.INFO, logger="widedeep.download"):
        download.download_dataset("toy", root, base_url=mirror.as_uri())
    assert [p for p in left if p.exists()] == []
    assert all(p.exists() for p in keep)
    assert (root / "toy" / "data.csv").read_bytes() == PAYLOAD
    assert re.search(r"removed 3 temporary file\(s\) .* in .*toy", caplog.text), caplog.text


def test_every_registry_file_has_a_sha256():
    """Every file a download fetches (or a user must put in place) has a sha256, except where
    none can be had; each exception says why and carries what check there is."""
    exceptions = {
        # NFM's original train split: no copy to hash anywhere; GitHub's tree publishes its git
        # blob SHA-1 (the same blob in the NFM and AFM repositories), which is checked instead.
        "frappe/nfm_libfm/frappe.train.libfm": "git_sha1",
        # Kaggle serves it only to a signed-in account; no checksum is published, no copy shared.
        "avazu/train.csv": None,
    }
    for name, source in SOURCES.items():
        for f in source.files:
            if f.target in exceptions:
                assert f.sha256 is None, f"{f.target} has a sha256 now: drop the exception"
                check = exceptions[f.target]
                assert check is None or re.fullmatch(r"[0-9a-f]{40}", getattr(f, check)), f.target
                continue
            assert f.sha256 and re.fullmatch(r"[0-9a-f]{64}", f.sha256), f"{name}: {f.target}"


def test_the_shared_copies_are_the_files_the_registry_downloads():
    """The sha256 taken from a shared copy is the original's: where GitHub's tree gives the
    source file's git blob SHA-1, the shared copy has it, and its size is the registry's."""
    root = real_data(
        "frappe/nfm_libfm/frappe.validation.libfm", "frappe/nfm_libfm/frappe.test.libfm"
    )
    checked = 0
    for source in SOURCES.values():
        for f in source.files:
            shared = root / f.target
            if not (f.git_sha1 and shared.is_file()):
                continue
            assert download.git_blob_sha1(shared) == f.git_sha1, f.target
            assert pooch.file_hash(str(shared)) == f.sha256, f.target
            assert shared.stat().st_size == f.size, f.target
            checked += 1
    assert checked == 2  # NFM's validation and test files


def test_a_git_sha1_is_checked_on_download(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.csv").write_bytes(PAYLOAD)
    monkeypatch.setitem(SOURCES, "toy", Source(
        title="toy", homepage="https://example.invalid", automated=True, why="test",
        terms="test terms", provides="toy/data.csv",
        files=(RemoteFile("https://example.invalid/data.csv", "toy/data.csv", git_sha1="0" * 40),),
    ))
    code = data_cli.main(["download", "toy", "--root", str(tmp_path / "root"),
                          "--base-url", mirror.as_uri(), "--retries", "0"])
    line = error_line(code, capsys.readouterr().err)
    assert "expected git blob SHA-1 " + "0" * 40 in line and "(data.csv)" in line, line
    assert not (tmp_path / "root" / "toy" / "data.csv").exists()


class _Stalls(http.server.BaseHTTPRequestHandler):
    """Sends half of PAYLOAD, then holds the connection open until the test ends."""

    release = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
        self.wfile.flush()
        self.release.wait(120)

    def log_message(self, *args) -> None:
        pass


_DOWNLOAD = """
import sys
from widedeep.data.download import download_dataset
from widedeep.data.sources import SOURCES, RemoteFile, Source
SOURCES["toy"] = Source(title="toy", homepage="x", automated=True, why="t", terms="t",
    provides="t", files=(RemoteFile("https://example.invalid/data.csv", "toy/data.csv",
                                    sha256=sys.argv[3]),))
download_dataset("toy", sys.argv[1], base_url=sys.argv[2], retries=0)
"""


@pytest.mark.slow
def test_a_download_really_killed_midway_is_cleaned_by_the_next_run(tmp_path, monkeypatch):
    handler = type("Handler", (_Stalls,), {"release": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root, script = tmp_path / "root", tmp_path / "download.py"
    script.write_text(_DOWNLOAD)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    child = subprocess.Popen([sys.executable, str(script), str(root), base, SHA])
    try:
        deadline = time.monotonic() + 120  # a bound, not a timing assumption
        while not list((root / "toy").glob(".data.csv.*/*")) and child.poll() is None:
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        child.kill()
        child.wait(30)
    finally:
        handler.release.set()
        server.shutdown()
        server.server_close()
    left = list((root / "toy").iterdir())
    assert left and not (root / "toy" / "data.csv").exists()  # what the kill left behind
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.csv").write_bytes(PAYLOAD)
    toy(monkeypatch)
    download.download_dataset("toy", root, base_url=mirror.as_uri())
    assert sorted(p.name for p in (root / "toy").iterdir()) == ["data.csv"]
