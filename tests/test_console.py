"""What a run prints for a person: one line per validation epoch, Lightning's noise dropped,
the progress bar only on a terminal."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from widedeep.cli.config import compose_config
from widedeep.training.console import LIGHTNING_INFO, VALIDATION_LINE, quiet_lightning
from widedeep.training.run import ConfigError, _progress_bar, train

TINY = ["data.generator.n_rows=6000", "trainer.max_epochs=2", "data.batch_size=512"]
# Lightning's and torch's messages of every run before issue 16, as they were printed.
NOISE = (
    "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
    "`isinstance(treespec, LeafSpec)` is deprecated",
    "is smaller than the logging interval Trainer(log_every_n_steps=50)",
    "`Trainer(limit_train_batches=1.0)` was configured so 100% of the batches",
)


def _validation_lines(text: str) -> list[tuple[str, ...]]:
    return [m.groups() for line in text.splitlines() if (m := VALIDATION_LINE.search(line))]


def test_noise_is_dropped_and_every_other_message_kept(caplog):
    caplog.set_level(logging.INFO, logger=LIGHTNING_INFO.name)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with quiet_lightning():
            warnings.warn(NOISE[1] + ", use ... instead.", FutureWarning, stacklevel=1)
            warnings.warn("some other deprecation", FutureWarning, stacklevel=1)
            LIGHTNING_INFO.info(NOISE[0])
            LIGHTNING_INFO.info("GPU available: False, used: False")
    assert [str(w.message) for w in shown] == ["some other deprecation"]
    assert caplog.messages == ["GPU available: False, used: False"]
    # Only within: afterwards Lightning's info lines are untouched.
    LIGHTNING_INFO.info(NOISE[0])
    assert caplog.messages[-1] == NOISE[0]


def test_progress_bar_auto_follows_whether_stdout_is_a_terminal(monkeypatch):
    for terminal in (True, False):
        monkeypatch.setattr(sys.stdout, "isatty", lambda terminal=terminal: terminal)
        assert _progress_bar("auto") is terminal
        assert _progress_bar(True) is True and _progress_bar(False) is False
    with pytest.raises(ConfigError, match=r"trainer\.progress_bar='sometimes'"):
        _progress_bar("sometimes")


@pytest.mark.slow
def test_one_line_per_validation_epoch_with_the_bar_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="widedeep")
    overrides = [*TINY, "model=wide_deep", "trainer.logger=none", "trainer.progress_bar=true"]
    train(compose_config(overrides, output_dir=str(tmp_path)))
    lines = _validation_lines("\n".join(caplog.messages))
    # Two epochs, two lines: the sanity check and the final validate() of the best weights
    # print none.
    assert [line[0] for line in lines] == ["0", "1"]
    assert all(
        wide_nonzero is not None and int(wide_nonzero.replace(",", "")) > 0
        for *_, wide_nonzero, _ in lines
    )


@pytest.mark.slow
def test_a_redirected_run_prints_validation_lines_no_bar_and_no_noise(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "widedeep.cli.train",
            *TINY,
            "model=deep",
            "trainer.logger=csv",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout + result.stderr
    assert [n for n in NOISE if n in printed] == []
    lines = _validation_lines(result.stdout)
    assert [epoch for epoch, *_ in lines] == ["0", "1"]
    assert all(wide is None for *_, wide, _ in lines)  # a deep model has no wide tower
    assert "it/s" not in printed  # stdout is a pipe: trainer.progress_bar=auto turned it off
    # Hydra's log file of the run holds the same lines.
    assert len(_validation_lines((tmp_path / "run" / "train.log").read_text())) == 2
