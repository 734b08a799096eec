"""What every reader shares: finding a file, its data lines with 1-based line numbers, splitting
them into fields, vectorised checks, and the bad-row policy.

``on_bad_rows: error`` (the default) stops at the first bad row with a `BadInputError` naming the
file, the line and a short escaped excerpt (`_shown`: none of a line that fails as its file's
first); ``on_bad_rows: skip`` drops bad rows, logs them on the
``widedeep`` logger and counts them. Whoever needs the counts (the pipeline, for the run
manifest) wraps the reader call in `collect_bad_rows`, which returns ``{file: rows skipped}`` for
every file read inside it, so reader signatures stay ``read_X(cfg, root)``.

Labels: readers require a label column (training needs one). Only serving (``widedeep-predict``)
passes ``labels="optional"``: a file may then lack the label column (one field fewer on every
line, or no label in the header), and the reader returns no label column for it.

A leading UTF-8 byte-order mark is ignored. A value holding a NUL byte is a bad row (a NUL
does not occur in text data: the file is binary or damaged).

Parsing is vectorised polars string operations (no Python loop over lines), on the whole file
in memory: fine up to some GB, not for a whole Criteo 1TB day file.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import polars as pl

from ._shown import BOM_BYTES, PREFIX, opening_line, shown

log = logging.getLogger("widedeep")

ON_BAD_ROWS = ("error", "skip")
LABELS = ("required", "optional")
# The policy for files whose bad rows cannot be skipped (a feature map, a side table).
STRICT = "strict"
_CHUNK = 256 * 2**20
_counts: ContextVar[dict[str, int] | None] = ContextVar("widedeep_bad_rows", default=None)


class BadInputError(ValueError):
    """A data file a reader cannot use. ``line`` is 1-based (a row number for Parquet)."""

    def __init__(self, path: Path, message: str, line: int | None = None, unit: str = "line"):
        where = f"{path}, {unit} {line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


@contextmanager
def collect_bad_rows() -> Iterator[dict[str, int]]:
    """Collect ``{file path: rows skipped}`` for every file read inside the block."""
    counts: dict[str, int] = {}
    token = _counts.set(counts)
    try:
        yield counts
    finally:
        _counts.reset(token)


def bad_rows_policy(cfg: Mapping[str, Any]) -> str:
    policy = cfg.get("on_bad_rows") or "error"
    if policy not in ON_BAD_ROWS:
        raise ValueError(f"data.on_bad_rows must be one of {ON_BAD_ROWS}, got {policy!r}")
    return policy


def labels_optional(labels: str) -> bool:
    """True for ``labels="optional"`` (serving: a file may lack the label column)."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    return labels == "optional"


def label_name(cfg: Mapping[str, Any]) -> str:
    return (cfg.get("features") or {}).get("label") or "label"


def data_file(cfg: Mapping[str, Any], root: Path, key: str) -> Path:
    """``root / cfg.files[key]``, which must exist."""
    rel = (cfg.get("files") or {}).get(key)
    if not rel:
        raise ValueError(f"dataset {cfg.get('name')!r}: the config has no files.{key}")
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(
            f"{path.resolve()}: no such file. Data files are looked up under data.root, else "
            f"$WIDEDEEP_DATA_DIR (now {os.environ.get('WIDEDEEP_DATA_DIR')!r}), else ./data"
        )
    return path


def resolve_files(root: Path, spec: str | Sequence[str], key: str = "files") -> list[Path]:
    """``data.<key>``: a path, a glob (``parts/*.csv``) or a list of them, under ``root`` (an
    absolute path is itself) -> the files, each glob sorted; a name or glob that finds no file
    is an error."""
    names = [spec] if isinstance(spec, str) else list(spec)
    if not names:
        raise ValueError(f"data.{key} is empty: name a file, a glob or a list of them")
    paths: list[Path] = []
    for name in names:
        where = root / str(name)
        if glob.has_magic(str(name)):
            found = sorted(Path(p) for p in glob.glob(str(where), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise FileNotFoundError(f"data.{key}: {str(where)!r} matches no file")
            paths += found
        elif where.is_file():
            paths.append(where)
        else:
            raise FileNotFoundError(
                f"{where.resolve()}: no such file (data.{key}; relative names are looked up "
                f"under data.root={str(root)!r})"
            )
    return paths


SEPARATORS = ("\t", ",", ";", "|")


def describe_first_line(path: Path, limit: int = 1 << 20) -> str:
    """What the first line of a text file looks like, for an error about its format: how many
    fields it has with which separator, and whether it reads as a header (no field is empty
    or a number). None of its text: the file may be anything (`_shown`)."""
    line = opening_line(path, limit)
    sep = max(SEPARATORS, key=line.count)
    fields = line.split(sep) if line.count(sep) else [line]
    kind = "a header" if all(f.strip() and not _is_number(f) for f in fields) else "data"
    how = f"separated by {sep!r}" if len(fields) > 1 else f"(no {' '.join(map(repr, SEPARATORS))})"
    return f"line 1 looks like {kind}: {len(fields)} fields {how}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bucket_labels(expr: pl.Expr, boundaries: Sequence[int]) -> pl.Expr:
    """Integers -> buckets ``[b_k, b_k+1)`` named ``<b0``, ``b0-(b1-1)``, ..., ``bn+``."""
    inner = [f"{a}-{b - 1}" for a, b in zip(boundaries, boundaries[1:], strict=False)]
    labels = [f"<{boundaries[0]}", *inner, f"{boundaries[-1]}+"]
    return expr.bin_intervals(list(boundaries), labels=labels).cast(pl.String)


def _read_lines(path: Path, chunk_bytes: int = _CHUNK) -> pl.DataFrame:
    """``line`` (1-based) and ``text`` (no line ending) of every line, read in chunks that end at
    a newline: one polars string per chunk, as a single string cannot exceed 4 GB. A leading
    byte-order mark is dropped."""
    frames, first_line, rest = [], 1, b""
    with path.open("rb") as f:
        if f.read(len(BOM_BYTES)) != BOM_BYTES:
            f.seek(0)
        while True:
            block = f.read(chunk_bytes)
            data = rest + block
            end = len(data) if not block else data.rfind(b"\n") + 1
            if end == 0 and block:  # a line longer than a chunk: read on
                rest = data
                continue
            data, rest = data[:end], data[end:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = first_line + data.count(b"\n", 0, e.start)
                raise BadInputError(path, "not UTF-8 text", line) from e
            lines = pl.Series("text", [text]).str.split("\n").explode()
            if data.endswith(b"\n"):
                lines = lines.head(-1)  # the empty piece after the last newline
            frames.append(
                pl.DataFrame(lines)
                .with_row_index("line", offset=first_line)
                .with_columns(pl.col("text").str.strip_suffix("\r"))
            )
            first_line += lines.len()
            if not block:
                return pl.concat(frames)


class Rows:
    """The rows of one file while a reader parses it.

    ``frame`` holds ``line`` (1-based position in the file), the raw ``text`` of the line (text
    files only) and the columns parsed so far. Each check goes through `reject`, which applies
    the policy; `finish` records the skipped count and returns the parsed columns.
    """

    def __init__(
        self, path: Path, frame: pl.DataFrame, policy: str, unit: str = "line",
        unchecked: bool = False,
    ) -> None:
        self.path, self.frame, self.policy, self.unit = path, frame, policy, unit
        self.skipped = 0
        # ``unchecked``: no header vouches for the format, so a bad first row says the file is
        # in another one, and an error shows nothing of it.
        self.first = int(frame["line"][0]) if unchecked and frame.height else None
        self.header: list[str] | None = None
        # What the file looks like (`describe_first_line`), told when every row is bad: then
        # the file is in another format, and skipping bad rows would drop them all.
        self.about: str | None = None

    @classmethod
    def from_text(
        cls,
        path: Path,
        policy: str,
        header: Sequence[str] | None = None,
        sep: str = ",",
        comment: str | None = None,
        optional: str | None = None,
    ) -> Rows:
        """Non-blank lines of a UTF-8 text file, LF or CRLF. ``header``: the expected first line
        (split on ``sep``), also accepted without its ``optional`` column; ``header`` is then
        the one found. ``comment``: a prefix marking lines to ignore (adult.test's ``|``)."""
        frame = _read_lines(path).filter(pl.col("text").str.strip_chars() != "")
        if comment:
            frame = frame.filter(~pl.col("text").str.starts_with(comment))
        if frame.is_empty():
            raise BadInputError(path, "the file is empty (no data lines)")
        found = None
        if header is not None:
            first = frame.row(0, named=True)
            found = [h.strip() for h in first["text"].split(sep)]
            accepted = [list(header), [h for h in header if h != optional]]
            if found not in accepted:
                raise BadInputError(path, _header_mismatch(found, accepted, sep), first["line"])
            frame = frame.slice(1)
            if frame.is_empty():
                raise BadInputError(path, "the file is empty (a header and no data lines)")
        rows = cls(path, frame, policy, unchecked=header is None)
        rows.header = found
        return rows

    @classmethod
    def from_frame(cls, path: Path, frame: pl.DataFrame, policy: str) -> Rows:
        """Rows of an already-loaded table (Parquet); checks then report 1-based row numbers."""
        if frame.is_empty():
            raise BadInputError(path, "the file is empty (no rows)")
        return cls(path, frame.with_row_index("line", offset=1), policy, unit="row")

    def reject(
        self, bad: pl.Expr, reason: str, value: pl.Expr | None = None, content: bool = True
    ) -> None:
        """Rows where ``bad`` holds are bad: raise on the first one, or skip and count them.
        ``value``, evaluated on the bad row, replaces ``{value}`` in ``reason`` (`shown`);
        ``content=False``: it is not the file's text (a field count), and always shown."""
        mask = self.frame.select(bad.fill_null(False).alias("bad"))["bad"]
        n_bad = int(mask.sum())
        if not n_bad:
            return
        first = self.frame.filter(mask).head(1)
        line = int(first["line"][0])
        hidden = line == self.first  # the file's first row fails: show nothing of the file
        if value is None or (hidden and content):
            message = reason.replace(": {value}", "").replace(" {value}", "")
        else:
            message = reason.replace("{value}", shown(first.select(value).item()))
        if self.policy != "skip":
            hint = " (data.on_bad_rows=skip skips such rows)" if self.policy == "error" else ""
            if n_bad == self.frame.height:
                about = f"; {self.about}" if self.about else ""
                hint = f" (so is every {self.unit}: skipping would drop them all{about})"
            excerpt = "" if hidden else f"; the {self.unit} is {_excerpt(first)}"
            raise BadInputError(self.path, f"{message}{excerpt}{hint}", line, self.unit)
        self.skipped += n_bad
        self.frame = self.frame.filter(~mask)
        log.warning(
            "%s: skipped %d bad %ss, first at %s %d: %s", self.path, n_bad, self.unit, self.unit,
            line, message,
        )

    def layout(
        self, sep: str, names: Sequence[str], optional: str | None, source: str = "text"
    ) -> list[str]:
        """The columns of a headerless file whose ``optional`` column (the label, when serving)
        may be absent: ``names`` without it if the first line has one field fewer, else
        ``names``. The whole file must follow its first line: a line with or without the
        column when the first is the other way round is a bad row. None: ``names``."""
        if optional is None or optional not in names:
            return list(names)
        first = self.frame.row(0, named=True)
        width, full = first[source].count(sep) + 1, len(names)
        if width not in (full, full - 1):
            return list(names)  # neither layout: `split` reports the field count
        other = full - 1 if width == full else full
        count = pl.col(source).str.count_matches(sep, literal=True) + 1
        how = "without" if width < full else "with"
        self.reject(count == other, f"{other} fields, but line {first['line']} has {width} "
                    f"({how} the label): every line must be the same")
        return list(names) if width == full else [n for n in names if n != optional]

    def split(
        self,
        sep: str,
        names: Sequence[str],
        source: str = "text",
        strip: bool = False,
        null_values: Sequence[str] = ("",),
    ) -> None:
        """``source`` -> one String column per name; wrong field counts are bad rows; values in
        ``null_values`` (after stripping spaces, if ``strip``) become null = missing; a value
        holding a NUL byte is a bad row."""
        n = len(names)
        count = pl.col(source).str.count_matches(sep, literal=True) + 1
        self.reject(count != n, f"{{value}} fields, expected {n} separated by {sep!r}", count,
                    content=False)
        parts = pl.col(source).str.split_exact(sep, n - 1).struct.rename_fields(list(names))
        self.frame = self.frame.with_columns(parts.alias("_parts")).unnest("_parts")
        cols = [pl.col(c).str.strip_chars() if strip else pl.col(c) for c in names]
        self.frame = self.frame.with_columns(
            pl.when(c.is_in(list(null_values))).then(None).otherwise(c).name.keep() for c in cols
        )
        self.refuse_nul(names, source)

    def refuse_nul(self, columns: Sequence[str], source: str | None = None) -> None:
        """A value of ``columns`` (String) holding a NUL byte is a bad row: text data has none, a
        binary or damaged file does, and a NUL would pass unseen into vocabularies and output
        files. ``source``: the raw text column, checked first (one scan for a clean file)."""
        if source is not None and not self.frame[source].str.contains("\x00", literal=True).any():
            return
        for c in columns:
            self.reject(pl.col(c).str.contains("\x00", literal=True),
                        f"field {c} holds a NUL byte (\\x00): the file is binary or damaged")

    def to_numbers(self, columns: Sequence[str], dtype: pl.DataType = pl.Int64) -> None:
        """Cast String columns; a non-null value that does not parse is a bad row."""
        kind = "an integer" if dtype.is_integer() else "a number"
        for c in columns:
            failed = pl.col(c).is_not_null() & pl.col(c).cast(dtype, strict=False).is_null()
            self.reject(failed, f"field {c} is not {kind}: {{value}}", pl.col(c))
        self.frame = self.frame.with_columns(pl.col(c).cast(dtype) for c in columns)

    def to_integers(self, columns: Sequence[str]) -> None:
        """String columns -> Int64, accepting integers written as floats (``260.0``, as pandas
        writes an integer column with missing values); anything else is a bad row."""
        for c in columns:
            as_float = pl.col(c).cast(pl.Float64, strict=False)
            integral = pl.when(as_float == as_float.floor()).then(as_float.cast(pl.Int64))
            value = pl.coalesce(pl.col(c).cast(pl.Int64, strict=False), integral)
            self.reject(pl.col(c).is_not_null() & value.is_null(),
                        f"field {c} is not an integer: {{value}}", pl.col(c))
            self.frame = self.frame.with_columns(value.alias(c))

    def to_label(self, column: str, values: Mapping[str, int], out: str = "label") -> None:
        """Map raw labels to Int8 0/1 under ``out``; any other value is a bad row."""
        known = pl.col(column).is_in(list(values)).fill_null(False)
        self.reject(~known, f"label {{value}} is not one of {list(values)}",
                    pl.col(column).fill_null(""))
        label = pl.col(column).replace_strict(dict(values), return_dtype=pl.Int8)
        self.frame = self.frame.with_columns(label.alias("__label__")).drop(column)
        self.frame = self.frame.rename({"__label__": out})

    def finish(self) -> pl.DataFrame:
        """The parsed columns; records the skipped count with the active `collect_bad_rows`."""
        counts = _counts.get()
        if counts is not None:
            counts[str(self.path)] = counts.get(str(self.path), 0) + self.skipped
        if self.frame.is_empty():
            raise BadInputError(self.path, f"no valid rows ({self.skipped} bad rows skipped)")
        return self.frame.drop([c for c in ("line", "text") if c in self.frame.columns])


def _excerpt(row: pl.DataFrame) -> str:
    """A bad row as an error shows it: a prefix of its text, escaped (`shown`); a parsed table
    has no raw text, so its columns by name (a dict's str escapes every key and value)."""
    if "text" in row.columns:
        return shown(row["text"][0], PREFIX)
    text = str(row.drop("line").row(0, named=True))
    return text[:PREFIX] + ("..." if len(text) > PREFIX else "")


def _header_mismatch(found: list[str], accepted: list[list[str]], sep: str) -> str:
    """Why line 1 is not an accepted header: the first wrong name if it has as many fields as
    one of them (a typo), else only its field count (the file may be anything: `_shown`)."""
    for header in accepted:
        if len(found) == len(header):
            k = next(i for i, (a, b) in enumerate(zip(found, header, strict=True)) if a != b)
            return (f"header column {k + 1} is {shown(found[k])}, expected {header[k]!r} "
                    f"(the header is {sep.join(header)})")
    expected = accepted[0]
    names = sep.join(expected[:3]) + ("..." if len(expected) > 3 else "")
    counts = " or ".join(str(n) for n in dict.fromkeys(len(h) for h in accepted))
    return (f"header: expected {names} ({counts} fields separated by {sep!r}), found "
            f"{len(found)}")
