"""``trainer.logger=mlflow``: a run's config as params, its per-epoch metrics and its files as
artefacts, in an MLflow tracking store (a local SQLite file by default, any tracking URI)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# A SQLite database (MLflow 3 refuses its plain file store unless MLFLOW_ALLOW_FILE_STORE),
# relative to the working directory, beside the artefacts MLflow writes to ./mlruns/<id>/.
DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_EXPERIMENT = "widedeep"
INSTALL = "pip install -e '.[mlflow]' (or mlflow / mlflow-skinny)"


def tracking_uri(cfg: DictConfig) -> str:
    """``trainer.mlflow.tracking_uri``, else $MLFLOW_TRACKING_URI, else `DEFAULT_URI`."""
    return (
        _setting(cfg, "tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    )


def experiment_name(cfg: DictConfig) -> str:
    return _setting(cfg, "experiment") or DEFAULT_EXPERIMENT


def _ready(uri: str) -> str:
    if uri == DEFAULT_URI:  # SQLite creates the file, not its folder
        Path("mlruns").mkdir(exist_ok=True)
    return uri


def _setting(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, f"trainer.mlflow.{key}", default=None)


def params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved training config, flattened to ``trainer.max_epochs``-style keys; a list is
    one param (its JSON)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, list) else value

    walk("", resolved)
    return flat


def mlflow_logger(cfg: DictConfig, out: Path) -> Any:
    """Lightning's MLFlowLogger for this run: experiment ``trainer.mlflow.experiment`` (default
    `DEFAULT_EXPERIMENT`), run ``trainer.mlflow.run_name`` (default the output dir's name)."""
    from pytorch_lightning.loggers import MLFlowLogger

    class ConfigParamsLogger(MLFlowLogger):
        """Logs the run's training config as its params, not the LightningModule's
        constructor arguments (which hold the data schema, not settings)."""

        def log_hyperparams(self, _: Any) -> None:
            super().log_hyperparams(params(cfg))

    return ConfigParamsLogger(
        experiment_name=experiment_name(cfg),
        run_name=_setting(cfg, "run_name") or out.name,
        tracking_uri=_ready(tracking_uri(cfg)),
        tags={"widedeep.output_dir": str(out.resolve())},
    )


def log_artifacts(logger: Any, files: Iterable[Path]) -> None:
    """Attach ``files`` (those that exist) to the logger's run, if it is an MLflow run."""
    run_id = getattr(logger, "run_id", None)  # MLFlowLogger's alone
    if run_id is None:
        return
    for path in files:
        if path.is_file():
            logger.experiment.log_artifact(run_id, str(path))


def log_folder_run(cfg: DictConfig, run_name: str, folder: Path) -> str:
    """A run named ``run_name`` in the config's experiment holding every file under ``folder``
    (e.g. a benchmark's report and plots) as artefacts; returns its id."""
    from mlflow import MlflowClient

    client = MlflowClient(_ready(tracking_uri(cfg)))
    name = experiment_name(cfg)
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name)
    run = client.create_run(experiment, run_name=run_name)
    client.log_artifacts(run.info.run_id, str(folder))
    client.set_terminated(run.info.run_id)
    return run.info.run_id
