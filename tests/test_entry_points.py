"""Every command the README names starts from where pyproject.toml and the docs say it lives."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
SMALL = ["data=synthetic", "data.generator.n_rows=3000"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_resolve_to_a_cli_function(script):
    module, _, function = SCRIPTS[script].partition(":")
    assert module.startswith("widedeep.cli."), f"{script}: entry points live in widedeep.cli"
    assert callable(getattr(importlib.import_module(module), function))


def test_every_python_m_module_the_docs_name_exists():
    docs = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    named = {m for doc in docs for m in re.findall(r"-m (widedeep[\w.]*)", doc.read_text())}
    assert named, "the docs name no python -m entry point"
    for module in named:
        assert importlib.util.find_spec(module) is not None, module
        assert hasattr(importlib.import_module(module), "main"), module


def test_build_cache_builds_then_reuses_the_entry(tmp_path, monkeypatch, capsys):
    from widedeep.cli.build_cache import main

    monkeypatch.setenv("WIDEDEEP_CACHE_DIR", str(tmp_path))
    main(SMALL)
    main(SMALL)
    first, second = capsys.readouterr().out.strip().splitlines()
    assert ": built, rows {'train': 2400," in first and ": reused, rows {'train': 2400," in second
    entry = Path(first.split(":")[0])
    assert entry.parent == tmp_path and json.loads((entry / "manifest.json").read_text())


def test_summary_tabulates_runs_and_refuses_a_missing_folder(tmp_path, capsys):
    from widedeep.cli.summary import main

    run = tmp_path / "0_model=wide"
    run.mkdir()
    metrics = {
        "dataset": "synthetic", "kind": "wide", "seed": 3, "epochs": 2, "best_epoch": 1,
        "val": {"auc": 0.7, "logloss": 0.5}, "test": {"auc": 0.71, "logloss": 0.49},
        "params": {"total": 10, "wide": 10, "deep": 0, "wide_nonzero": 4}, "wall_time_s": 1.0,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main([str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| synthetic | wide | 3 | 0.7100 |" in table
    assert main([str(tmp_path / "missing")]) == 2
    assert main([]) == 2
