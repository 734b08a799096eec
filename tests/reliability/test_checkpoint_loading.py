"""Checkpoint and run-file loading (issue 17, docs/faults.md "Checkpoint loading and trust"):
hostile files are refused without running them, a resume that cannot fit the run fails in one
line before the data loads, and every mistake is one line naming the file."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from widedeep.cli.config import compose_config
from widedeep.data.checks import check_train_batches
from widedeep.training.checkpoint import load_checkpoint, model_from_checkpoint
from widedeep.training.module import WideDeepModule
from widedeep.training.run import ConfigError, train, validate

SETTINGS = [
    "data.batch_size=256",
    "optim=paper",  # FTRL (wide) and AdaGrad (deep): resuming with adam must be refused
    "model.deep.hidden=[8]",
    "model.deep.embedding_dim=4",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "trainer.logger=none",
]
TINY = ["data.generator.n_rows=2000", *SETTINGS]
REFUSED = "refused: the file holds pickled code objects ("
NEVER = "; widedeep never loads such files"
# torch's own advice, which a widedeep message must never repeat
TORCH_ADVICE = ("weights_only", "Weights only load failed", "arbitrary code", "trusted source")


class _System:
    """Unpickled, runs ``touch marker`` (os.system: a module torch's unpickler blocks)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    """Unpickled, runs Python (builtins.exec: not blocked, merely not allowed)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class _Custom:
    """A plain class of the test module: its import alone is refused."""

    def __init__(self) -> None:
        self.value = 1


def _one_line(text: str) -> str:
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture
def good(tmp_path, schema) -> dict:
    """A checkpoint's content as widedeep-train writes it, from an untrained module."""
    module = WideDeepModule(
        schema.to_dict(),
        deep={"embedding_dim": 4, "hidden": [8]},
        optim={"wide": {"name": "adam", "lr": 0.01}, "deep": {"name": "adam", "lr": 0.01}},
    )
    return {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny finished run (1 epoch): config.yaml, preprocessor/, best.ckpt and last.ckpt."""
    out = tmp_path_factory.mktemp("loading") / "run"
    train(compose_config(TINY, output_dir=str(out)))
    assert (out / "checkpoints" / "last.ckpt").is_file()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


# -- 1. hostile checkpoints ----------------------------------------------------------------------


def _hostile(kind: str, good: dict, marker: Path, path: Path) -> str:
    """Write a hostile file of ``kind`` to ``path``; return the import it must name."""
    if kind == "system_in_hyper_parameters":
        torch.save({**good, "hyper_parameters": {"schema": _System(marker)}}, path)
        return "posix.system"
    if kind == "system_in_state_dict":
        torch.save({**good, "state_dict": {**good["state_dict"], "w": _System(marker)}}, path)
        return "posix.system"
    if kind == "exec_in_an_extra_key":
        torch.save({**good, "extra": _Exec(marker)}, path)
        return "builtins.exec"
    if kind == "custom_class":
        torch.save({**good, "extra": _Custom()}, path)
        return f"{_Custom.__module__}._Custom"
    if kind == "protocol_4_in_a_torch_file":  # STACK_GLOBAL, an opcode torch does not read
        torch.save({**good, "extra": _System(marker)}, path, pickle_protocol=4)
        return "posix.system"
    if kind == "plain_pickle_protocol_2":  # a blocked module as torch's first global
        path.write_bytes(pickle.dumps({"hyper_parameters": _System(marker)}, protocol=2))
        return "posix.system"
    if kind == "plain_pickle_protocol_5":
        path.write_bytes(pickle.dumps({"state_dict": _Exec(marker)}, protocol=5))
        return "builtins.exec"
    raise AssertionError(kind)


HOSTILE = [
    "system_in_hyper_parameters",
    "system_in_state_dict",
    "exec_in_an_extra_key",
    "custom_class",
    "protocol_4_in_a_torch_file",
    "plain_pickle_protocol_2",
    "plain_pickle_protocol_5",
]


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_checkpoint_is_refused_and_never_runs(tmp_path, good, kind):
    marker, path = tmp_path / "pwned", tmp_path / "hostile.ckpt"
    name = _hostile(kind, good, marker, path)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = _one_line(str(info.value))
    assert message.startswith(f"checkpoint {path}: {REFUSED}"), message
    assert name in message and message.endswith(NEVER), message
    assert not any(advice in message for advice in TORCH_ADVICE), message
    assert not marker.exists()


def test_a_damaged_checkpoint_is_corrupted_without_torchs_advice(tmp_path, good):
    """Garbage a weights-only unpickler rejects is damage, not code: no "refused"."""
    path = tmp_path / "bad.ckpt"
    damaged = (b"\x80\x02}q\x00(X\x01\x00\x00\x00a\xff\xff", b"\x80\x02" + bytes(range(2, 60)))
    for content in damaged:
        path.write_bytes(content)
        with pytest.raises(ValueError, match="corrupted or not a checkpoint") as info:
            load_checkpoint(path)
        message = _one_line(str(info.value))
        assert not any(advice in message for advice in TORCH_ADVICE), message


def test_predict_and_export_refuse_a_hostile_checkpoint_in_one_line(tmp_path, run, capsys):
    from widedeep.cli.export import main as export_main
    from widedeep.cli.predict import main as predict_main

    copy, marker = _copy(run, tmp_path), tmp_path / "pwned"
    best = copy / "checkpoints" / "best.ckpt"
    state = torch.load(best, weights_only=True)
    torch.save({**state, "hyper_parameters": _System(marker)}, best)
    for main, args in (
        (predict_main, [f"checkpoint={copy}", f"input={tmp_path}/rows.parquet"]),
        (export_main, [str(copy), str(tmp_path / "model.pt2")]),
    ):
        (tmp_path / "rows.parquet").write_bytes(b"")
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        line = _one_line(capsys.readouterr().err.strip())
        assert line.startswith("widedeep-") and f"checkpoint {best}: {REFUSED}" in line, line
    assert not marker.exists()


# -- 2, 3. resuming from a checkpoint that does not fit the run ----------------------------------


def _resume_error(run: Path, tmp_path: Path, *overrides: str, base: list[str] = TINY) -> str:
    out = tmp_path / "resumed"
    cfg = compose_config(
        [*base, *overrides, f"resume_from={run}/checkpoints/last.ckpt"], output_dir=str(out)
    )
    with pytest.raises(ValueError) as info:
        train(cfg)
    return _one_line(str(info.value))


@pytest.mark.fast_first
@pytest.mark.parametrize(
    ("overrides", "difference"),
    [
        (["data=frappe", *SETTINGS], "categorical fields"),  # another dataset
        ([*TINY, "model.deep.hidden=[16]"], "model.deep.hidden"),  # another model size
        ([*TINY, "model.deep.embedding_dim=6"], "model.deep.embedding_dim"),
        ([*TINY, "model=wide"], "model.kind"),
    ],
    ids=["another_dataset", "deeper", "wider_embeddings", "another_kind"],
)
def test_resuming_another_runs_checkpoint_fails_before_loading_data(
    run, tmp_path, overrides, difference
):
    message = _resume_error(run, tmp_path, base=overrides)
    assert message.startswith(f"checkpoint {run}/checkpoints/last.ckpt: "), message
    assert "cannot resume this run" in message and difference in message, message
    assert not (tmp_path / "resumed").exists()  # nothing written, no data loaded


def test_resuming_with_other_vocabulary_sizes_fails_before_training(run, tmp_path):
    """Same fields, other data (more users): the table sizes are known after the data only."""
    message = _resume_error(run, tmp_path, "data.generator.n_rows=3000")
    assert message.startswith(f"checkpoint {run}/checkpoints/last.ckpt: "), message
    assert "cannot resume this run" in message and "ids" in message, message
    assert not list((tmp_path / "resumed").rglob("*.ckpt"))  # failed before fit saved any


def test_resuming_with_another_optimizer_names_both(run, tmp_path):
    message = _resume_error(run, tmp_path, "optim=adam")
    assert message.startswith(f"checkpoint {run}/checkpoints/last.ckpt: "), message
    assert "optimizer for the wide tower is ftrl" in message, message
    assert "the config's is adam (optim.wide.name)" in message, message


def test_the_same_run_passes_the_resume_check(run):
    from widedeep.training.resume import check_resume

    cfg = compose_config([*TINY, f"resume_from={run}/checkpoints/last.ckpt"])
    resume = check_resume(cfg.resume_from, cfg)
    assert resume.path == str(run / "checkpoints" / "last.ckpt")
    assert check_resume(None, cfg).path is None


# -- 4. a model too large to build ---------------------------------------------------------------


def test_an_impossible_table_is_refused_before_allocating(tmp_path, good):
    hp = good["hyper_parameters"]
    schema = {**hp["schema"], "categorical": [dict(f) for f in hp["schema"]["categorical"]]}
    schema["categorical"][0]["cardinality"] = 10**13
    path = tmp_path / "huge.ckpt"
    torch.save({**good, "hyper_parameters": {**hp, "schema": schema}}, path)
    with pytest.raises(ValueError) as info:
        model_from_checkpoint(path)
    message = _one_line(str(info.value))
    assert message.startswith(f"checkpoint {path}: "), message
    assert "memory" in message and "user" in message, message


def test_weights_that_do_not_fit_the_hyper_parameters_are_named(tmp_path, good):
    hp = good["hyper_parameters"]
    path = tmp_path / "other.ckpt"
    torch.save({**good, "hyper_parameters": {**hp, "deep": {**hp["deep"], "hidden": [16]}}}, path)
    with pytest.raises(ValueError, match="weights do not fit its model") as info:
        model_from_checkpoint(path)
    _one_line(str(info.value))


# -- 5. a run's config.yaml with Python tags -----------------------------------------------------

APPLY = "data: !!python/object/apply:os.system ['touch {marker}']\n"


def test_a_config_yaml_with_python_tags_is_refused_by_predict(tmp_path, run, capsys):
    from widedeep.cli.predict import main as predict_main

    copy, marker = _copy(run, tmp_path), tmp_path / "pwned"
    (copy / "config.yaml").write_text(APPLY.format(marker=marker))
    (tmp_path / "rows.parquet").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        predict_main([f"checkpoint={copy}", f"input={tmp_path}/rows.parquet"])
    assert exit_.value.code == 2
    line = _one_line(capsys.readouterr().err.strip())
    assert line.startswith("widedeep-predict: error: ") and f"{copy}/config.yaml" in line, line
    assert "python/object/apply" in line, line
    assert not marker.exists()


def test_every_reader_of_a_runs_yaml_refuses_python_tags(tmp_path, run, capsys):
    from widedeep.cli.inspect import main as inspect_main
    from widedeep.experiment.sweeps import run_overrides
    from widedeep.serving.predictor import Predictor

    copy, marker = _copy(run, tmp_path), tmp_path / "pwned"
    (copy / "config.yaml").write_text(APPLY.format(marker=marker))
    with pytest.raises(ValueError, match="config.yaml"):
        Predictor.load(copy)
    with pytest.raises(SystemExit) as exit_:
        inspect_main([str(copy)])
    assert exit_.value.code == 2
    assert "config.yaml" in _one_line(capsys.readouterr().err.strip())
    (copy / ".hydra").mkdir(exist_ok=True)
    (copy / ".hydra" / "overrides.yaml").write_text(
        f"- !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(ValueError, match="overrides.yaml"):
        run_overrides(copy)
    assert not marker.exists()


# -- 6. nothing to train -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "0.0"])
def test_no_training_batches_is_refused_up_front(value):
    with pytest.raises(ConfigError, match=rf"trainer.limit_train_batches={value}: .*no batch"):
        validate(compose_config([f"trainer.limit_train_batches={value}"]))


def test_a_fraction_that_rounds_to_no_batch_is_refused_in_one_line(tmp_path):
    # 2000 rows split 80% to train at batch 256: 7 batches; 0.1 of them is int(0.7) = 0,
    # which Lightning would refuse later with a traceback.
    cfg = compose_config(
        [*TINY, "trainer.limit_train_batches=0.1"], output_dir=str(tmp_path / "run")
    )
    with pytest.raises(ConfigError) as info:
        train(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("trainer.limit_train_batches=0.1: 0.1 of 7 training batch")
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize(("limit", "refused"), [(0.14, True), (0.15, False), (1, False)])
def test_the_batch_fraction_rule_matches_lightnings_rounding(limit, refused):
    # 7 batches: Lightning trains int(limit * 7) of them (0.14 -> 0, 0.15 -> 1).
    if refused:
        with pytest.raises(ValueError, match="use at least 0.143"):
            check_train_batches(1600, 256, limit)
    else:
        check_train_batches(1600, 256, limit)


# -- 7. a directory where a file is expected -----------------------------------------------------


def test_a_run_directory_as_a_checkpoint_suggests_its_checkpoints(run):
    with pytest.raises(ValueError) as info:
        load_checkpoint(run)
    message = _one_line(str(info.value))
    assert f"checkpoint {run}: a directory, not a file" in message, message
    assert f"{run}/checkpoints/best.ckpt" in message and "last.ckpt" in message, message


def test_a_run_directory_as_resume_from_suggests_last_ckpt(run, tmp_path):
    cfg = compose_config([*TINY, f"resume_from={run}"], output_dir=str(tmp_path / "resumed"))
    with pytest.raises(ValueError) as info:
        train(cfg)
    message = _one_line(str(info.value))
    assert f"checkpoint {run}: a directory" in message, message
    assert f"resume_from={run}/checkpoints/last.ckpt" in message, message


def test_predict_names_a_directory_as_a_directory(tmp_path, run, capsys):
    from widedeep.cli.predict import main as predict_main

    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "rows.parquet").write_bytes(b"")
    for args, expected in (
        ([f"checkpoint={empty}", f"input={tmp_path}/rows.parquet"],
         f"checkpoint {empty}: a directory without checkpoints/best.ckpt"),
        ([f"checkpoint={run}", f"input={empty}"], f"input {empty}: a directory, not a file"),
    ):
        with pytest.raises(SystemExit) as exit_:
            predict_main(args)
        assert exit_.value.code == 2
        line = _one_line(capsys.readouterr().err.strip())
        assert expected in line, line
