"""The config ``widedeep-train`` would run, composed without its command line, and what Hydra
says about the running job. The one module below the entry points that talks to Hydra.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

# The config tree ships inside the package (a wheel finds it too).
CONFIG_MODULE = "widedeep.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def compose_config(overrides: list[str] | None = None, output_dir: str | None = None) -> DictConfig:
    """The config ``widedeep-train`` would run, without the command line (tests, notebooks)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    OmegaConf.set_struct(cfg, False)
    cfg.output_dir = output_dir or "outputs/compose"
    OmegaConf.set_struct(cfg, True)
    return cfg


def hydra_multirun() -> bool:
    """Whether this process runs a job of a Hydra sweep (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
