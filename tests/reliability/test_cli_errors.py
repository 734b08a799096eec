"""Command-line mistakes (issue 17, docs/faults.md "Command line and downloads"): an unknown
key, a missing group option, an unknown flag, a run folder that cannot be written. Each ends in
one ``widedeep-<cmd>: error: ...`` line naming the mistake (with the closest valid name) and
exit code 2, on every command line; the apps run in process (Hydra reads sys.argv)."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# the apps Hydra parses the command line of, and their names
HYDRA_APPS = {
    "widedeep.cli.train": "widedeep-train",
    "widedeep.cli.tune": "widedeep-tune",
    "widedeep.cli.bench": "widedeep-bench",
}


def run(module: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``module``'s main() in process with ``argv``: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [module, *argv])
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    code = 0
    # Hydra's job logging binds root handlers to this test's captured stream, which closes with
    # the test: later tests' log records would then print "--- Logging error ---".
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        returned = importlib.import_module(module).main(*([argv] if _takes_argv(module) else []))
        code = int(returned or 0)
    except SystemExit as stop:
        code = int(stop.code or 0) if not isinstance(stop.code, str) else 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out, err = capsys.readouterr()
    return code, out, err


def _takes_argv(module: str) -> bool:
    return module not in HYDRA_APPS


def one_error_line(prog: str, code: int, err: str) -> str:
    """The single error line (asserted to be the only stderr line), without the debug hint."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0].removeprefix(f"{prog}: error: ").removesuffix(
        " (WIDEDEEP_DEBUG=1 shows the traceback)")


# override -> what the one line must say
KEY_MISTAKES = {
    "nosuch=1": "nosuch: no such key; the config has seed, data, model",
    "+nosuch=1": "nosuch: no such key; the config has seed, data, model",
    "seeed=1": "seeed: no such key (did you mean seed?)",
    "trainer.nosuch=1": "trainer.nosuch: no such key; trainer has max_epochs",
    "+trainer.nosuch=1": "trainer.nosuch: no such key; trainer has max_epochs",
    "trainer.max_epoch=1": "trainer.max_epoch: no such key (did you mean trainer.max_epochs?)",
    "data=nosuch": "data=nosuch: no such option; choose from adult, avazu, criteo",
    "data=synthetc": "data=synthetc: no such option (did you mean data=synthetic?)",
    "model=nosuch": "model=nosuch: no such option; choose from deep, wide, wide_deep",
}


# every mistake on widedeep-train; a few on the others (the same code path, seconds each)
CASES = [("widedeep.cli.train", o) for o in KEY_MISTAKES] + [
    (module, o) for module in ("widedeep.cli.tune", "widedeep.cli.bench")
    for o in ("nosuch=1", "+trainer.nosuch=1", "data=synthetc")
]


@pytest.mark.fast_first
@pytest.mark.parametrize("module, override", CASES)
def test_an_unknown_key_or_option_is_one_line_with_a_suggestion(module, override, monkeypatch,
                                                                 capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    prog = HYDRA_APPS[module]
    line = one_error_line(prog, *run(module, [override], monkeypatch, capsys)[::2])
    assert line.startswith(KEY_MISTAKES[override]), line
    assert "Could not" not in line and "use +" not in line  # Hydra's words, its '+' advice
    assert not list(tmp_path.iterdir())  # nothing ran


@pytest.mark.slow
@pytest.mark.parametrize("command, override", [
    ("prepare", "nosuch=1"), ("prepare", "data=synthetc"), ("info", "trainer.max_epoch=1")])
def test_widedeep_data_prepare_and_info_say_the_same(command, override, monkeypatch, capsys):
    line = one_error_line("widedeep-data",
                          *run("widedeep.cli.data", [command, override], monkeypatch, capsys)[::2])
    assert line.startswith(KEY_MISTAKES[override]), line


@pytest.mark.parametrize("override", ["nosuch=1", "data=nosuch"])
def test_build_cache_says_the_same(override, monkeypatch, capsys):
    line = one_error_line("python -m widedeep.cli.build_cache",
                          *run("widedeep.cli.build_cache", [override], monkeypatch, capsys)[::2])
    assert line.startswith(KEY_MISTAKES[override]), line


def test_a_mistyped_key_of_widedeep_predict_names_the_closest(monkeypatch, capsys):
    line = one_error_line("widedeep-predict", *run(
        "widedeep.cli.predict", ["checkpont=run", "input=x"], monkeypatch, capsys)[::2])
    assert line.startswith("checkpont: no such key (did you mean checkpoint?)"), line


def test_a_malformed_override_names_it(monkeypatch, capsys):
    line = one_error_line("widedeep-train", *run(
        "widedeep.cli.train", ["trainer.max_epochs=["], monkeypatch, capsys)[::2])
    assert line.startswith("override 'trainer.max_epochs=[': "), line


@pytest.mark.parametrize(
    "module, prog, argv",
    [
        ("widedeep.cli.train", "widedeep-train", ["--nosuch"]),
        ("widedeep.cli.data", "widedeep-data", ["download", "adult", "--nosuch"]),
        ("widedeep.cli.data", "widedeep-data", []),
        ("widedeep.cli.export", "widedeep-export", ["--nosuch", "a", "b"]),
        ("widedeep.cli.inspect", "widedeep-inspect", ["--nosuch"]),
        ("widedeep.cli.summary", "python -m widedeep.cli.summary", ["--nosuch", "runs"]),
    ],
)
def test_an_unknown_flag_is_one_line(module, prog, argv, monkeypatch, capsys):
    line = one_error_line(prog, *run(module, argv, monkeypatch, capsys)[::2])
    assert "--help" in line  # where the usage went


@pytest.mark.slow
def test_the_installed_script_exits_2_with_one_line(tmp_path):
    """The real console script (not main() in process): the exit status a shell sees."""
    script = Path(sys.executable).parent / "widedeep-train"
    if not script.exists():
        pytest.skip("widedeep-train is not installed in this environment")
    done = subprocess.run([str(script), "data=nosuch"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert one_error_line("widedeep-train", done.returncode, done.stderr).startswith(
        KEY_MISTAKES["data=nosuch"])


def _run_dir_refused(run_dir: Path, monkeypatch, capsys) -> str:
    argv = ["data=synthetic", "data.generator.n_rows=200", f"hydra.run.dir={run_dir}"]
    line = one_error_line("widedeep-train", *run("widedeep.cli.train", argv, monkeypatch,
                                                 capsys)[::2])
    assert f"run folder {run_dir}" in line and "hydra.run.dir" in line, line
    return line


@pytest.mark.slow
def test_a_run_dir_under_a_file_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    line = _run_dir_refused(tmp_path / "a_file" / "run", monkeypatch, capsys)
    assert "not a directory" in line.lower(), line


@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only tmpfs mounted on a fresh folder (root ignores chmod); skipped when mount is
    unavailable (not root, no CAP_SYS_ADMIN, no mount binary)."""
    point = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                                  str(point)], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a read-only tmpfs here (needs root / CAP_SYS_ADMIN)")
    yield point
    subprocess.run(["umount", str(point)], capture_output=True, timeout=30)


@pytest.mark.slow
def test_a_run_dir_on_a_read_only_mount_is_one_line_naming_the_folder(read_only_mount, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _run_dir_refused(read_only_mount / "run", monkeypatch, capsys)
    assert "read-only" in line.lower(), line
