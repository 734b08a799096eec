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

from widedeep.cli.errors import one_line_errors, report_user_error
from widedeep.cli.keys import check_keys, explain
from widedeep.training.run import ConfigError

# The config tree ships inside the package (a wheel finds it too); importing it registers the
# schema (widedeep/conf/schema.py) in Hydra's ConfigStore.
CONFIG_MODULE = "widedeep.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def compose_config(overrides: list[str] | None = None, output_dir: str | None = None) -> DictConfig:
    """The config ``widedeep-train`` would run, without the command line (tests, notebooks).
    A mistyped key or a value of the wrong type raises `ConfigError` naming it."""
    cfg = _compose("train", list(overrides or []))
    OmegaConf.set_struct(cfg, False)
    cfg.output_dir = output_dir or "outputs/compose"
    OmegaConf.set_struct(cfg, True)
    return cfg


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """``config_name`` composed with ``overrides``, its keys checked; config mistakes raise a
    one-line `ConfigError`."""
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as err:
        raise explain(err, config_name, overrides) from err
    check_keys(cfg, config_name)
    return cfg


def run_app(prog: str, config_name: str, entry: Callable[[DictConfig], Any]) -> None:
    """``@hydra.main`` around ``entry``, with every mistake Hydra finds itself (an unknown key
    or flag, a value of the wrong type, a missing group option, a run folder that cannot be
    written) one line and exit code 2, as the entry's own (`report_user_error`); a single run's
    config is checked before Hydra creates its run folder; ``entry`` gets a config whose keys
    were checked."""
    import hydra

    overrides = _precheck(prog, config_name)

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
        sys.exit(report_user_error(prog, _explain_hydra(err, config_name, overrides)))
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


def _precheck(prog: str, config_name: str) -> list[str]:
    """Parse the command line as Hydra will (an unknown flag: one line, exit 2) and, for a
    plain single run, compose and check its config, so that a mistake leaves no run folder
    behind; returns the overrides."""
    from hydra._internal.utils import get_args_parser  # the parser hydra.main itself uses

    parser = get_args_parser()
    parser.prog = prog
    one_line_errors(parser)
    args = parser.parse_args()
    special = (args.multirun, args.help, args.hydra_help, args.cfg, args.info, args.run,
               args.shell_completion, args.config_path, args.config_name, args.config_dir,
               args.experimental_rerun)
    if not any(special):
        try:
            _compose(config_name, list(args.overrides))
        except ConfigError as err:
            sys.exit(report_user_error(prog, err))
        except Exception:  # anything else: Hydra's own run reports it its way
            pass
    return list(args.overrides)


def _explain_hydra(err: BaseException, config_name: str, overrides: list[str]) -> BaseException:
    """`explain`, and a run folder Hydra cannot create or write in words naming it."""
    explained = explain(err, config_name, overrides)
    if explained is err and isinstance(err, OSError) and err.filename:
        sweep = any(a in ("-m", "--multirun") for a in sys.argv[1:])
        key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
        reason = (err.strerror or type(err).__name__).lower()
        return RunFolderError(f"run folder {err.filename}: cannot create or write it ({reason});"
                              f" set {key} to a writable folder")
    return explained


class RunFolderError(OSError):
    """The run folder (hydra.run.dir / hydra.sweep.dir) cannot be created or written."""


def hydra_multirun() -> bool:
    """Whether this process runs a job of a Hydra sweep (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
