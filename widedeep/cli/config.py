"""The config ``widedeep-train`` would run, composed without its command line; how the Hydra
apps start; and what Hydra says about the running job. The one module below the entry points
that talks to Hydra.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from widedeep.cli.errors import report_user_error
from widedeep.cli.keys import check_keys, explain

# The config tree ships inside the package (a wheel finds it too); importing it registers the
# schema (widedeep/conf/schema.py) in Hydra's ConfigStore.
CONFIG_MODULE = "widedeep.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def compose_config(overrides: list[str] | None = None, output_dir: str | None = None) -> DictConfig:
    """The config ``widedeep-train`` would run, without the command line (tests, notebooks).
    A mistyped key or a value of the wrong type raises `ConfigError` naming it."""
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(overrides or []))
    except Exception as err:
        raise explain(err) from err
    check_keys(cfg, "train")
    OmegaConf.set_struct(cfg, False)
    cfg.output_dir = output_dir or "outputs/compose"
    OmegaConf.set_struct(cfg, True)
    return cfg


def run_app(prog: str, config_name: str, entry: Callable[[DictConfig], Any]) -> None:
    """``@hydra.main`` around ``entry``, with every mistake Hydra finds itself (an unknown key,
    a value of the wrong type, a missing group option) one line and exit code 2, as the
    entry's own (`report_user_error`); ``entry`` gets a config whose keys were checked."""
    import hydra

    @functools.wraps(entry)  # Hydra names the job after the entry's module or file
    def checked(cfg: DictConfig) -> Any:
        try:
            check_keys(cfg, config_name)
        except Exception as err:
            sys.exit(report_user_error(prog, err))
        return entry(cfg)

    main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    # HYDRA_FULL_ERROR: Hydra raises its errors instead of printing them and exiting with 1.
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main(checked)()
    except Exception as err:
        sys.exit(report_user_error(prog, explain(err)))
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


def hydra_multirun() -> bool:
    """Whether this process runs a job of a Hydra sweep (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
