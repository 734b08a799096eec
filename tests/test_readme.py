"""The README's Python example is part of the documentation: it must run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # a script / example trained end to end: make test
def test_readme_python_example_trains_without_lightning_or_hydra():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme_example"})


def test_public_api_imports_no_lightning_or_hydra():
    import subprocess

    code = (
        "import sys, widedeep; bad = [m for m in sys.modules if m.split('.')[0] in "
        "('pytorch_lightning', 'lightning', 'hydra', 'omegaconf')]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_lists_every_public_name():
    import widedeep

    text = README.read_text()
    missing = [name for name in widedeep.__all__ if f"`{name}`" not in text]
    assert not missing, f"README's API table lacks {missing}"
