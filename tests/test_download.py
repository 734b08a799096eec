"""download_dataset against a loopback HTTP server and file:// URLs (never the internet)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pooch
import pytest
from conftest import real_data

from widedeep.data import sources
from widedeep.data.download import (
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    download_dataset,
)
from widedeep.data.sources import SOURCES, Derived, RemoteFile, Source

PAYLOAD = b"label,user,item\n" + b"".join(b"%d,u%d,i%d\n" % (i % 2, i, i % 7) for i in range(500))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _toy(monkeypatch, *files: RemoteFile, automated: bool = True) -> None:
    """Register a test-only dataset 'toy' (the URLs are never used: base_url replaces them)."""
    source = Source(
        title="toy",
        homepage="https://example.invalid/toy",
        files=files,
        automated=automated,
        why="test",
        terms="test terms",
        provides="test",
        manual="put it in {root}/toy",
    )
    monkeypatch.setitem(SOURCES, "toy", source)


def _file(target: str = "toy/data.csv", **kw) -> RemoteFile:
    return RemoteFile(url="https://example.invalid/toy/" + Path(target).name, target=target, **kw)


def _leftovers(directory: Path) -> list[str]:
    """Staging folders and temporary files (ours start with '.', pooch's with 'tmp')."""
    return sorted(p.name for p in directory.rglob("*") if p.name.startswith((".", "tmp")))


@pytest.fixture
def refused_url():
    """An http://127.0.0.1 URL on a port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def served(tmp_path):
    """A directory and a 127.0.0.1 HTTP server for it on an ephemeral port (stops itself)."""
    directory = tmp_path / "served"
    directory.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=directory))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    # Bounded even if teardown never runs; long enough never to end a test on a busy machine,
    # and a daemon, so that a pending one does not hold up the interpreter's exit.
    watchdog = threading.Timer(600, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    yield directory, f"http://127.0.0.1:{server.server_address[1]}"
    watchdog.cancel()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_good_checksum_downloads_and_verifies(served, tmp_path, monkeypatch, scheme):
    directory, http_url = served
    (directory / "data.csv").write_bytes(PAYLOAD)
    _toy(monkeypatch, _file(sha256=SHA, size=len(PAYLOAD)))
    base = http_url if scheme == "http" else directory.as_uri()
    root = tmp_path / "root"
    paths = download_dataset("toy", root, base_url=base)
    assert paths == [root / "toy" / "data.csv"]
    assert paths[0].read_bytes() == PAYLOAD
    assert _leftovers(root) == []


def test_bad_checksum_raises_and_leaves_no_file(served, tmp_path, monkeypatch):
    directory, base = served
    (directory / "data.csv").write_bytes(PAYLOAD)
    _toy(monkeypatch, _file(sha256="0" * 64))
    root = tmp_path / "root"
    with pytest.raises(ChecksumError) as err:
        download_dataset("toy", root, base_url=base, retries=0)
    message = str(err.value)
    assert "data.csv" in message and "0" * 64 in message and SHA in message
    assert not (root / "toy" / "data.csv").exists()
    assert _leftovers(root) == []


def test_md5_is_checked_when_no_sha256(served, tmp_path, monkeypatch):
    directory, base = served
    (directory / "data.csv").write_bytes(PAYLOAD)
    _toy(monkeypatch, _file(md5="f" * 32))
    with pytest.raises(ChecksumError, match="expected md5"):
        download_dataset("toy", tmp_path / "root", base_url=base, retries=0)


def test_present_file_is_skipped_and_a_corrupt_one_replaced(tmp_path, monkeypatch):
    _toy(monkeypatch, _file(sha256=SHA))
    root = tmp_path / "root"
    target = root / "toy" / "data.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    nowhere = (tmp_path / "empty").as_uri()  # fetching anything from here would fail
    assert download_dataset("toy", root, base_url=nowhere) == [target]
    with pytest.raises(DownloadError, match=r"file://.*/data\.csv: cannot read \(FileNotFound"):
        download_dataset("toy", root, base_url=nowhere, force=True)
    assert target.read_bytes() == PAYLOAD  # a failed forced download leaves the file alone

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.csv").write_bytes(PAYLOAD)
    target.write_bytes(b"truncated")
    download_dataset("toy", root, base_url=mirror.as_uri())
    assert target.read_bytes() == PAYLOAD


def test_http_404_is_a_clear_error(served, tmp_path, monkeypatch):
    _, base = served
    _toy(monkeypatch, _file(sha256=SHA))
    with pytest.raises(DownloadError, match=r"^download toy: http://.*/data\.csv: HTTP 404 "):
        download_dataset("toy", tmp_path / "root", base_url=base, retries=0)


def test_refused_connection_names_dataset_url_and_cause(tmp_path, monkeypatch, refused_url):
    _toy(monkeypatch, _file(sha256=SHA))
    root = tmp_path / "root"
    with pytest.raises(DownloadError) as err:
        download_dataset("toy", root, base_url=refused_url, retries=0)
    assert str(err.value) == (
        f"download toy: {refused_url}/data.csv: cannot connect "
        "(ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    assert not (root / "toy" / "data.csv").exists() and _leftovers(root) == []


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first request, then PAYLOAD; with ``truncate``, promises more bytes
    than it sends and hangs up (a transfer cut short)."""

    failures_left = 1
    truncate = False

    def do_GET(self) -> None:
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) * (2 if self.truncate else 1)))
        self.end_headers()
        self.wfile.write(PAYLOAD)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky():
    """A 127.0.0.1 server with a fresh `_Flaky` handler class (its counters per test)."""
    handler = type("Handler", (_Flaky,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_failed_attempt_is_retried(flaky, tmp_path, monkeypatch):
    handler, base = flaky
    _toy(monkeypatch, _file(sha256=SHA))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="HTTP 503"):
        download_dataset("toy", root, base_url=base, retries=0)
    handler.failures_left = 1
    waits: list[float] = []  # pooch waits a second before a retry: recorded, not slept
    monkeypatch.setattr(pooch.core.time, "sleep", waits.append)
    assert download_dataset("toy", root, base_url=base, retries=1)[0].read_bytes() == PAYLOAD
    assert handler.failures_left == 0 and _leftovers(root) == []
    assert waits == [1]


def test_a_transfer_cut_short_leaves_the_target_alone(flaky, tmp_path, monkeypatch):
    handler, base = flaky
    handler.failures_left, handler.truncate = 0, True
    _toy(monkeypatch, _file())  # no checksum: only the cut itself can reveal the damage
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="transfer failed"):
        download_dataset("toy", root, base_url=base, retries=0)
    assert not (root / "toy" / "data.csv").exists() and _leftovers(root) == []
    (root / "toy" / "data.csv").write_bytes(b"old")
    with pytest.raises(DownloadError, match="transfer failed"):
        download_dataset("toy", root, base_url=base, force=True, retries=0)
    assert (root / "toy" / "data.csv").read_bytes() == b"old" and _leftovers(root) == []


def test_unsupported_scheme_and_negative_retries_are_refused(tmp_path, monkeypatch):
    _toy(monkeypatch, _file(sha256=SHA))
    with pytest.raises(DownloadError, match=r"gopher://x/data\.csv: unsupported URL scheme"):
        download_dataset("toy", tmp_path, base_url="gopher://x")
    with pytest.raises(ValueError, match="retries must be 0 or more, got -1"):
        download_dataset("toy", tmp_path, base_url="gopher://x", retries=-1)


def test_zip_is_unpacked(served, tmp_path, monkeypatch):
    directory, base = served
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("pack/a.csv", PAYLOAD)
        zf.writestr("pack/sub/b.txt", b"hello\n")
    (directory / "pack.zip").write_bytes(buffer.getvalue())
    sha = hashlib.sha256(buffer.getvalue()).hexdigest()
    _toy(monkeypatch, _file("toy/pack.zip", sha256=sha, unpack="zip"))
    root = tmp_path / "root"
    paths = download_dataset("toy", root, base_url=base)
    assert paths == [root / "toy/pack.zip", root / "toy/pack/a.csv", root / "toy/pack/sub/b.txt"]
    assert paths[1].read_bytes() == PAYLOAD and paths[2].read_text() == "hello\n"
    assert _leftovers(root) == []


def test_gz_is_unpacked_and_unsafe_zip_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.csv.gz").write_bytes(gzip.compress(PAYLOAD))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    (mirror / "evil.zip").write_bytes(buffer.getvalue())
    _toy(monkeypatch, _file("toy/data.csv.gz", unpack="gz"))
    root = tmp_path / "root"
    assert download_dataset("toy", root, base_url=mirror.as_uri())[-1].read_bytes() == PAYLOAD

    _toy(monkeypatch, _file("toy/evil.zip", unpack="zip"))
    with pytest.raises(DownloadError, match="unsafe member"):
        download_dataset("toy", root, base_url=mirror.as_uri())
    assert not (tmp_path / "evil.txt").exists() and not (root / "evil.txt").exists()


def _tar_gz(path: Path, *members: tuple[str, bytes | None, str | None]) -> Path:
    """A .tar.gz of (name, data, link target) members: a file, or a symlink when data is None."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_tar_gz_is_unpacked_and_present_members_kept(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _tar_gz(mirror / "pack.tar.gz", ("pack/a.csv", PAYLOAD, None), ("pack/b.txt", b"b\n", None))
    _toy(monkeypatch, _file("toy/pack.tar.gz", unpack="tar.gz"))
    root = tmp_path / "root"
    paths = download_dataset("toy", root, base_url=mirror.as_uri())
    assert paths[1:] == [root / "toy/pack/a.csv", root / "toy/pack/b.txt"]
    assert paths[1].read_bytes() == PAYLOAD and _leftovers(root) == []
    paths[2].write_bytes(b"edited")
    paths[1].unlink()  # a missing member is restored from the archive, a present one is kept
    download_dataset("toy", root, base_url=mirror.as_uri())
    assert paths[1].read_bytes() == PAYLOAD and paths[2].read_bytes() == b"edited"
    download_dataset("toy", root, base_url=mirror.as_uri(), force=True)
    assert paths[2].read_bytes() == b"b\n"


@pytest.mark.parametrize(
    "kind, members",
    [
        ("zip", [("/abs.txt", b"x", None)]),
        ("tar.gz", [("ok.txt", b"x", None), ("../evil.txt", b"x", None)]),
        ("tar.gz", [("/tmp/evil.txt", b"x", None)]),
        ("tar.gz", [("pack/link", None, "/"), ("pack/link/evil.txt", b"x", None)]),
    ],
    ids=["zip-absolute", "tar-dotdot", "tar-absolute", "tar-symlink"],
)
def test_unsafe_archive_members_are_refused_before_extraction(tmp_path, monkeypatch, kind, members):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = f"evil.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(mirror / name, "w") as zf:
            for member, data, _ in members:
                zf.writestr(member, data)
    else:
        _tar_gz(mirror / name, *members)
    _toy(monkeypatch, _file(f"toy/{name}", unpack=kind))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="refusing (unsafe member path|links)"):
        download_dataset("toy", root, base_url=mirror.as_uri())
    assert sorted(p.name for p in (root / "toy").iterdir()) == [name]  # nothing extracted
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("ok.txt"))


def test_an_unpack_failing_midway_leaves_no_member(tmp_path, monkeypatch):
    """The first member extracts fine, the second has a bad CRC: neither may appear."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("pack/first.csv", PAYLOAD)
        zf.writestr("pack/second.txt", b"second member data\n")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pack.zip").write_bytes(buffer.getvalue().replace(b"second member", b"SECOND member"))
    _toy(monkeypatch, _file("toy/pack.zip", unpack="zip"))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match=r"^download toy: pack\.zip: cannot unpack \(BadZip"):
        download_dataset("toy", root, base_url=mirror.as_uri())
    assert not (root / "toy" / "pack").exists() and _leftovers(root) == []


def test_derived_files_are_built_checked_and_kept(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.libfm").write_bytes(PAYLOAD.replace(b"\n", b"\r\n"))
    lf = sources._lf("toy/data.libfm")
    monkeypatch.setitem(
        SOURCES,
        "toy",
        Source(
            title="toy",
            homepage="",
            files=(_file("toy/data.libfm"),),
            automated=True,
            why="",
            terms="",
            provides="",
            derived=(Derived("toy/x1/data.libfm", lf, SHA), Derived("toy/x1/unchecked.libfm", lf)),
        ),
    )
    root = tmp_path / "root"
    paths = download_dataset("toy", root, base_url=mirror.as_uri())
    assert paths[1:] == [root / "toy/x1/data.libfm", root / "toy/x1/unchecked.libfm"]
    assert paths[1].read_bytes() == PAYLOAD
    paths[2].write_bytes(b"kept")  # no checksum: an existing file is kept unless forced
    download_dataset("toy", root, base_url=mirror.as_uri())
    assert paths[2].read_bytes() == b"kept"
    download_dataset("toy", root, base_url=mirror.as_uri(), force=True)
    assert paths[2].read_bytes() == PAYLOAD

    bad = Derived("toy/x1/bad.libfm", lf, "0" * 64)
    monkeypatch.setitem(SOURCES, "toy", dataclasses.replace(SOURCES["toy"], derived=(bad,)))
    with pytest.raises(ChecksumError, match="bad.libfm"):
        download_dataset("toy", root, base_url=mirror.as_uri())
    assert not (root / "toy/x1/bad.libfm").exists() and _leftovers(root) == []


def test_manual_only_dataset_gives_instructions(tmp_path):
    with pytest.raises(ManualDownloadRequired) as err:
        download_dataset("criteo", tmp_path)
    text = err.value.instructions
    assert "by hand" in text and "criteo.com" in text
    assert str(tmp_path / "criteo" / "criteo_dac_train_first10k.txt") in text
    assert SOURCES["criteo"].files[0].sha256 in text
    assert list(tmp_path.iterdir()) == []  # nothing fetched, nothing created
    with pytest.raises(ManualDownloadRequired, match="Kaggle"):
        download_dataset("avazu", tmp_path)


def test_manual_dataset_already_in_place_is_accepted(tmp_path, monkeypatch):
    _toy(monkeypatch, _file(sha256=SHA), automated=False)
    with pytest.raises(ManualDownloadRequired, match=re.escape(str(tmp_path / "toy"))):
        download_dataset("toy", tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "data.csv").write_bytes(PAYLOAD)
    assert download_dataset("toy", tmp_path) == [tmp_path / "toy" / "data.csv"]


def test_unknown_dataset_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="known: adult, avazu, criteo, frappe, movielens"):
        download_dataset("nope", tmp_path)


def test_registry_entries_are_well_formed():
    assert set(SOURCES) == {"criteo", "avazu", "frappe", "movielens", "adult"}
    assert not SOURCES["criteo"].automated and not SOURCES["avazu"].automated
    for name, source in SOURCES.items():
        assert source.terms and source.why and source.provides, name
        assert source.automated or source.manual, name
        for f in source.files:
            assert not Path(f.target).is_absolute() and ".." not in Path(f.target).parts
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.target
            assert f.unpack in (None, "zip", "tar.gz", "gz")


def test_registry_checksums_match_the_shared_copies():
    """Every checksum transcribed from the shared README matches the shared file it names."""
    shared = real_data("criteo", "frappe", "movielens100k", "adult")
    checked = 0
    for source in SOURCES.values():
        for target, sha in [(f.target, f.sha256) for f in source.files] + [
            (d.target, d.sha256) for d in source.derived
        ]:
            if sha and (shared / target).is_file():
                assert pooch.file_hash(str(shared / target)) == sha, target
                checked += 1
    assert checked >= 9


def test_frappe_feature_map_is_rebuilt_from_the_raw_logs(tmp_path):
    shared = real_data("frappe/raw/frappe.csv.gz")
    raw = tmp_path / "frappe/raw/Mobile_Frappe/frappe/frappe.csv"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(gzip.decompress((shared / "frappe/raw/frappe.csv.gz").read_bytes()))
    (item,) = [d for d in SOURCES["frappe"].derived if d.target.endswith("feature_map.tsv")]
    assert hashlib.sha256(item.build(tmp_path)).hexdigest() == item.sha256


def test_movielens_text_files_convert_to_the_readers_parquet(tmp_path):
    """GroupLens-format files written from the shared tables convert back to equal tables."""
    shared = real_data(*(f"movielens100k/{t}.parquet" for t in ("data", "items", "users")))
    import polars as pl

    folder = tmp_path / "movielens100k/ml-100k"
    folder.mkdir(parents=True)
    for table, name in (("data", "u.data"), ("items", "u.item"), ("users", "u.user")):
        frame = pl.read_parquet(shared / f"movielens100k/{table}.parquet")
        text = frame.write_csv(
            separator="\t" if name == "u.data" else "|", include_header=False, quote_style="never"
        )
        (folder / name).write_bytes(text.encode("latin-1"))
        built = sources._movielens_parquet(name)(tmp_path)
        assert pl.read_parquet(io.BytesIO(built)).equals(frame), name
