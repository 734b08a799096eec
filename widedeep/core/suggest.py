"""``did you mean ...?`` for a mistyped name: the closest of the valid ones (difflib)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, valid: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean <prefix><closest>?)``, or "" when nothing is close."""
    close = difflib.get_close_matches(word, [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_choice(key: str, value: object, valid: Iterable[str]) -> str | None:
    """The message for ``key=value`` when ``value`` is not one of ``valid``, else None."""
    valid = sorted(str(v) for v in valid)
    if isinstance(value, str) and value in valid:
        return None
    hint = did_you_mean(str(value), valid)
    return f"{key}={value!r}: unknown{hint}; choose from {', '.join(valid)}"
