"""The package layout is the architecture: layers import downward only, and nothing cycles.

Two kinds of check: a fresh interpreter imports a layer and inspects ``sys.modules`` (what a
user of that layer actually pays for), and an AST walk over every ``import`` in the package,
module-level or inside a function (a lazy import is still a dependency, and still a cycle).
"""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import widedeep

PACKAGE = Path(widedeep.__file__).parent
# Each layer and the layers it may import (besides itself). The public API (widedeep/__init__)
# may import what a plain-PyTorch user needs: core, nn, optim, data; and, lazily, the notebook
# API (widedeep/api.py: fit, predict), which like cli is an entry point over everything and
# composes its config through cli.config.
MAY_IMPORT = {
    "core": set(),
    "nn": {"core"},
    "optim": {"core"},
    "data": {"core"},
    "training": {"core", "nn", "optim", "data"},
    "serving": {"core", "nn", "data", "training"},
    "experiment": {"core", "nn", "optim", "data", "training"},
    "cli": {"core", "nn", "optim", "data", "training", "serving", "experiment"},
    "api": {"core", "nn", "optim", "data", "training", "serving", "cli"},
    "": {"core", "nn", "optim", "data", "api"},
}
FRAMEWORKS = ("pytorch_lightning", "lightning", "hydra", "omegaconf", "polars")
# Modules that would make a tower or an optimizer touch files.
FILE_IO = {"os", "io", "pathlib", "shutil", "tempfile", "json", "pickle", "widedeep.core.io"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(module: str) -> set[str]:
    """Every module ``module`` imports, at any depth of its code (absolute names)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # ``from widedeep.data import cache`` imports the module widedeep.data.cache
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return found


def internal_graph() -> dict[str, set[str]]:
    return {m: {i for i in imports(m) if i in MODULES and i != m} for m in MODULES}


def test_every_layer_imports_only_the_layers_below_it():
    wrong = [
        f"{m} ({layer(m) or 'widedeep'}) imports {i}"
        for m, deps in internal_graph().items()
        for i in deps
        if layer(i) != layer(m) and layer(i) not in MAY_IMPORT[layer(m)]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_package_has_no_import_cycles():
    graph = internal_graph()
    # A package's __init__ runs before its modules, but importing widedeep.x.y runs
    # widedeep.x's __init__ without a cycle: only the edges the code writes count.
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_the_cycle_check_finds_a_cycle():
    """The check above must see lazy imports: a cycle written inside a function counts."""
    graph = internal_graph()
    graph["widedeep.core.schema"] = {*graph["widedeep.core.schema"], "widedeep.nn.wide"}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())


def test_towers_and_optimizers_touch_no_files():
    for module in MODULES:
        if layer(module) in ("nn", "optim"):
            tree = ast.parse(MODULES[module].read_text())
            opens = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "open"]
            assert not opens, f"{module} calls open()"
            assert not (imports(module) & FILE_IO), f"{module} imports {imports(module) & FILE_IO}"


def loaded_after(code: str) -> list[str]:
    """The top-level packages and widedeep modules a fresh interpreter holds after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    return json.loads(out.splitlines()[-1])


def ours(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("widedeep.")]


def roots(names: list[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def import_layer(name: str) -> str:
    return "\n".join(f"import {m}" for m in MODULES if layer(m) == name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["core", "nn", "optim"])
def test_towers_and_optimizers_load_no_framework(name):
    loaded = loaded_after(import_layer(name))
    assert not roots(loaded) & set(FRAMEWORKS), sorted(roots(loaded) & set(FRAMEWORKS))
    below = set(ours(loaded))
    assert all(layer(m) in {name, *MAY_IMPORT[name]} for m in below), below


@pytest.mark.slow
def test_the_data_layer_loads_no_model_trainer_or_command_line():
    loaded = loaded_after(import_layer("data"))
    above = [m for m in ours(loaded) if layer(m) in ("nn", "training", "experiment", "cli")]
    assert not above, above
    assert not roots(loaded) & {"pytorch_lightning", "lightning", "hydra"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["training", "serving"])
def test_training_and_serving_load_no_hydra(name):
    loaded = loaded_after(import_layer(name))
    assert "hydra" not in roots(loaded)
    assert not [m for m in ours(loaded) if layer(m) in ("experiment", "cli")]


@pytest.mark.slow
def test_the_public_api_loads_no_lightning_or_hydra():
    loaded = loaded_after("import widedeep\nfor name in widedeep.__all__: getattr(widedeep, name)")
    assert not roots(loaded) & {"pytorch_lightning", "lightning", "hydra"}
    assert sorted(widedeep.__all__) == sorted(widedeep._HOME)


def test_training_knows_no_raw_file_format():
    """The LightningModule and its runner see processed data only: readers stay behind
    `widedeep.data.pipeline`."""
    readers = [
        f"{m} imports {i}"
        for m, deps in internal_graph().items()
        if layer(m) == "training"
        for i in deps
        if i.startswith("widedeep.data.readers")
    ]
    assert not readers, readers
