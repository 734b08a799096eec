"""Two small additions to pooch: a file:// downloader, and its log muted for one call."""

from __future__ import annotations

import logging
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pooch


def copy_file_url(url: str, output_file: str, _pooch: object) -> None:
    """A pooch downloader for file:// URLs (mirrors on disk, tests), which pooch has none of."""
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), output_file)


@contextmanager
def quiet() -> Iterator[None]:
    """Mute pooch's INFO messages: it logs on its own stderr handler and names staging folders,
    where the callers log what happens in their own words."""
    logger = pooch.get_logger()
    saved = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved)
