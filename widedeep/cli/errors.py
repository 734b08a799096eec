"""How the command-line tools report a user's mistake: one line naming it, exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

# Wrong config values, missing or malformed files, bad overrides: the user's to fix.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, TypeError, OSError)


def user_error_types() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (*USER_ERRORS, HydraException, OmegaConfBaseException)


def report_user_error(prog: str, err: BaseException) -> int:
    """Print ``prog: error: message`` and return 2; re-raise bugs and, under WIDEDEEP_DEBUG,
    everything (for the traceback). An interruption that carries its own exit code (a run
    preempted by SIGTERM: `widedeep.training.run.Preempted`, 143) prints its one line and
    returns that code, whichever command ran the training (train, tune, bench)."""
    code = getattr(err, "EXIT_CODE", None)
    if isinstance(code, int):
        print(f"{prog}: {' '.join(str(err).split())}", file=sys.stderr)
        return code
    if os.environ.get("WIDEDEEP_DEBUG") or not isinstance(err, user_error_types()):
        raise err
    # Hydra appends its config search path: noise for someone who mistyped a name.
    text = str(err).split("Config search path")[0]
    message = " ".join(text.split()) or type(err).__name__
    print(f"{prog}: error: {message} (WIDEDEEP_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with a usage mistake in one ``prog: error: ...`` line (exit 2), not the usage."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make an existing parser (Hydra's) report a usage mistake as `OneLineParser` does."""
    parser.error = lambda message: usage_error(parser.prog, message)  # type: ignore[method-assign]


def usage_error(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {' '.join(message.split())} (--help shows the usage)", file=sys.stderr)
    sys.exit(2)


class StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr``, not the stream of its creation: a command's main()
    run in-process (tests, notebooks) may outlive the stream it started with."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)
