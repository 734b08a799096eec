"""What an error may show of a data file, and the byte-order mark every reader ignores.

A config is trusted, but the file it names may be anything the user can read (a mistyped
``data.files.train=/etc/shadow``), so an error names the file and the line and shows little of
it: at most a `PREFIX`-character prefix of a bad line and a `VALUE`-character bad value, escaped
(`repr`: control characters, NULs and terminal escapes come out as ``\\x1b``, never raw). A
line that fails as the first line of its file says the file is not in the expected format:
nothing of it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

PREFIX = 40
VALUE = 20
BOM = "\ufeff"
BOM_BYTES = BOM.encode()


def shown(value: object, limit: int = VALUE) -> str:
    """``value`` as an error shows it: a number as itself, text as an escaped, quoted prefix
    of ``limit`` characters, followed by ``...`` when cut."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def shown_names(names: Sequence[object], most: int = 30) -> str:
    """Column names as an error lists them: each `shown`, at most ``most`` of them."""
    listed = ", ".join(shown(n) for n in names[:most])
    more = f", ... ({len(names)} in all)" if len(names) > most else ""
    return f"[{listed}{more}]"


def plain(message: str, limit: int = 120) -> str:
    """A library's error message on one line, control characters escaped, cut to ``limit``."""
    text = " ".join(message.split())
    escaped = repr(text[:limit])[1:-1]
    return escaped + ("..." if len(text) > limit else "")


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith(BOM) else text


def opening_line(path: Path, limit: int = 1 << 20) -> str:
    """The first line of a text file (its first ``limit`` bytes), without a BOM or line end;
    bytes that are not UTF-8 replaced."""
    with open(path, "rb") as f:
        line = f.readline(limit)
    return strip_bom(line.decode("utf-8", "replace")).rstrip("\r\n")
