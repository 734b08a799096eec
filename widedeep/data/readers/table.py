"""A user's own table (``data=table``): any files polars reads, with the columns the config
declares.

Files: ``data.files`` is a path, a glob or a list of them (one table, split as ``data.split``
says: random or by a time column), or a mapping ``{train: ..., valid: ..., test: ...}`` of
them (the split is given; without ``valid``, a ``split.valid_ratio`` share of train). Each file
is CSV/TSV (with a header, or headerless with ``data.columns``), Parquet or NDJSON, by
``data.format`` or its suffix. Only the declared columns are kept: the features
(``features.categorical``, ``dense``, ``bags``, ``discretize``), the label's column, the time
column of a time split and ``keep_columns``.

Types, whatever the file's: categorical columns become strings (``42`` in a CSV and 42 in a
Parquet file are the same value; null = missing); dense and discretized columns numbers (a
value that is not one is a bad row); a bag is a list column or a string of values split on
``data.bag_separator`` (empty = no value). The label (Int8 0/1, named ``features.label``) is
``data.label.column`` compared with ``label.positive`` (a value, or a list of values, that
means 1), else ``>= label.threshold``, else the column itself, which must hold 0/1 (or
true/false). Bad rows go through the bad-row policy, numbered per file (``line`` for text files,
counting the header; ``row`` for Parquet and NDJSON); a blank line is skipped; a text value
holding a NUL byte is a bad row; a leading UTF-8 byte-order mark is ignored. A line with more
fields than the header cannot be parsed, and is an error under either policy; a shorter one's
missing fields are missing values. When serving (``labels="optional"``), a table without the
label's column is read without a label.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.data.split import random_split

from ._rows import (
    BadInputError,
    Rows,
    bad_rows_policy,
    describe_first_line,
    label_name,
    labels_optional,
    resolve_files,
)
from ._shown import BOM_BYTES, plain, shown_names

FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
    ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson",
}
TAB_SUFFIXES = (".tsv", ".txt")
# Row bookkeeping of `Rows`: a table may not declare columns of these names.
RESERVED = ("line", "text")
BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


def read_table(
    cfg: Mapping[str, Any], root: Path, labels: str = "required"
) -> pl.DataFrame | dict[str, pl.DataFrame]:
    """``data.files`` -> the declared columns (see the module docstring); a dict of splits for
    a mapping of files."""
    files = cfg.get("files")
    if not files:
        raise ValueError("data=table needs data.files: a file, a glob or a list of them, e.g. "
                         "data.files=[ratings.csv]")
    if not isinstance(files, Mapping):
        return read_files(cfg, resolve_files(root, files), labels)
    unknown = sorted(set(files) - {"train", "valid", "test"})
    if unknown or not {"train", "test"} <= set(files):
        raise ValueError(f"data.files as a given split maps train, test (and valid) to files; "
                         f"got keys {sorted(files)}")
    parts = {s: read_files(cfg, resolve_files(root, f, f"files.{s}"), labels)
             for s, f in files.items()}
    if "valid" not in parts:
        split = cfg.get("split") or {}
        ratio = float(split.get("valid_ratio", 0.1))
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"data.split.valid_ratio must be in (0, 1), got {ratio}")
        ratios = {"train": 1.0 - ratio, "valid": ratio}
        parts |= random_split(parts["train"], ratios, int(split.get("seed", 0)))
    return parts


def read_files(
    cfg: Mapping[str, Any], paths: Sequence[Path], labels: str = "required"
) -> pl.DataFrame:
    """Several files of one table, each checked on its own (bad rows are numbered per file)."""
    frames = [table_rows(cfg, path, *_load(cfg, path), labels) for path in paths]
    return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]


def table_rows(
    cfg: Mapping[str, Any],
    where: Path,
    frame: pl.DataFrame,
    first_line: int | None = None,
    labels: str = "required",
) -> pl.DataFrame:
    """The declared columns of raw rows, converted and checked. ``first_line``: the line
    number of a text file's first row (bad rows are then named by line), else None (by row)."""
    features = cfg.get("features") or {}
    label = dict(cfg.get("label") or {})
    source = label.get("column") or label_name(cfg)
    names = frame.columns
    needed = declared_columns(cfg)
    if source not in names and not labels_optional(labels):
        needed.append(source)
    missing = [c for c in dict.fromkeys(needed) if c not in names]
    about = describe_first_line(where) if first_line is not None else None
    if missing:
        # None of the columns asked for: the file may be anything, so none of its names.
        has = (f"the table has {shown_names(names)}" if len(missing) < len(set(needed))
               else f"the table has none of them ({len(names)} columns)")
        raise BadInputError(where, f"no column {missing} (data.features, data.label.column); "
                            f"{has}" + (f"; {about}" if about else ""))
    kept = list(dict.fromkeys([*needed, *_present(source, names)]))
    reserved = [c for c in kept if c in RESERVED]
    if reserved:
        raise ValueError(f"columns {reserved}: the names {list(RESERVED)} are reserved; "
                         "rename them in the table")
    rows = _rows(cfg, where, frame.select(kept), first_line)
    rows.about = about
    rows.refuse_nul([c for c, t in rows.frame.schema.items() if t == pl.String and c != "line"])
    categorical = list(features.get("categorical") or ())
    rows.frame = rows.frame.with_columns(pl.col(categorical).cast(pl.String))
    numbers = [*(features.get("dense") or ()), *(features.get("discretize") or ())]
    rows.to_numbers(numbers, pl.Float64)
    for bag in features.get("bags") or ():
        rows.frame = rows.frame.with_columns(_bag(rows.frame.schema[bag], bag, cfg))
    time = _time_column(cfg)
    if time:
        rows.reject(pl.col(time).is_null(), f"no value in the time column {time!r}")
        rows.frame = rows.frame.with_columns(_sortable(rows.frame[time]))
    if source in names:
        _label(rows, source, label, label_name(cfg))
    return rows.finish()


def _rows(cfg: Mapping[str, Any], where: Path, frame: pl.DataFrame, first_line: int | None) -> Rows:
    policy = bad_rows_policy(cfg)
    if first_line is None:
        return Rows.from_frame(where, frame, policy)
    frame = frame.with_row_index("line", offset=first_line)
    blank = pl.all_horizontal(pl.col(c).is_null() for c in frame.columns[1:])
    # Without a header, nothing has vouched for the file's format yet.
    return Rows(where, frame.filter(~blank), policy, unchecked=not cfg.get("header", True))


def frame_rows(cfg: Mapping[str, Any], frame: pl.DataFrame, labels: str = "required",
               name: str = "frame") -> pl.DataFrame:
    """`table_rows` of a DataFrame in memory (the Python API's training and scoring input);
    bad rows are numbered as rows of ``name``."""
    return table_rows(cfg, Path(name), frame, None, labels)


def declared_columns(cfg: Mapping[str, Any]) -> list[str]:
    """The raw columns a table config uses, besides the label's."""
    features = cfg.get("features") or {}
    kinds = ("categorical", "dense", "bags", "discretize")
    columns = [c for k in kinds for c in features.get(k) or ()]
    columns += [c for c in (_time_column(cfg),) if c]
    columns += list(cfg.get("keep_columns") or ())
    return list(dict.fromkeys(columns))


def _present(column: str, names: Sequence[str]) -> list[str]:
    return [column] if column in names else []


def _time_column(cfg: Mapping[str, Any]) -> str | None:
    split = cfg.get("split") or {}
    return split.get("column") if split.get("method") == "time" else None


def _sortable(times: pl.Series) -> pl.Series:
    """A time column read as text: numbers if every value is one (``9`` before ``10``), else
    the text (ISO dates sort as text)."""
    if times.dtype != pl.String:
        return times
    numbers = times.cast(pl.Float64, strict=False)
    return numbers if not numbers.is_null().any() else times


def _bag(dtype: pl.DataType, bag: str, cfg: Mapping[str, Any]) -> pl.Expr:
    """A bag column as a list of strings; a missing bag has no values."""
    if isinstance(dtype, pl.List):
        values = pl.col(bag).cast(pl.List(pl.String))
    else:
        sep = cfg.get("bag_separator") or "|"
        values = pl.col(bag).cast(pl.String).str.split(sep)
    values = values.list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
    return values.fill_null(pl.lit([], pl.List(pl.String))).alias(bag)


def _label(rows: Rows, source: str, label: Mapping[str, Any], out: str) -> None:
    """``source`` -> Int8 0/1 under ``out`` (see the module docstring)."""
    positive, threshold = label.get("positive"), label.get("threshold")
    if positive is not None and threshold is not None:
        raise ValueError("data.label: set positive or threshold, not both")
    raw = pl.col(source)
    rows.reject(raw.is_null(), f"no label (column {source!r} is empty)")
    if positive is not None:
        values = positive if isinstance(positive, Sequence) and not isinstance(
            positive, str) else [positive]
        text = raw.cast(pl.String).str.strip_chars()
        value = text.is_in([str(v) for v in values]).cast(pl.Int8)
    elif threshold is not None:
        number = raw.cast(pl.Float64, strict=False)
        rows.reject(number.is_null(), f"label column {source} is not a number: {{value}}",
                    raw.cast(pl.String))
        value = (number >= float(threshold)).cast(pl.Int8)
    else:
        text = raw.cast(pl.String).str.strip_chars().str.to_lowercase()
        rows.reject(~text.is_in(list(BINARY)), "label {value} is not 0/1 (set "
                    "data.label.positive or data.label.threshold)", raw.cast(pl.String))
        value = text.replace_strict(BINARY, return_dtype=pl.Int8)
    rows.frame = rows.frame.with_columns(value.alias("__label__")).drop(source)
    rows.frame = rows.frame.rename({"__label__": out})


def _format(cfg: Mapping[str, Any], path: Path) -> str:
    fmt = cfg.get("format") or "auto"
    if fmt != "auto":
        if fmt not in set(FORMATS.values()):
            raise ValueError(f"data.format={fmt!r}: expected auto, csv, parquet or ndjson")
        return fmt
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise BadInputError(path, f"data.format=auto knows the suffixes {sorted(FORMATS)}; "
                            "set data.format=csv, parquet or ndjson")
    return FORMATS[suffix]


def _load(cfg: Mapping[str, Any], path: Path) -> tuple[pl.DataFrame, int | None]:
    """One file's raw columns (CSV: every column a string) and, for a text file, the line
    number of its first row."""
    fmt = _format(cfg, path)
    try:
        if fmt == "parquet":
            frame = pl.read_parquet(path)
        elif fmt == "ndjson":
            frame = pl.read_ndjson(_without_bom(path), infer_schema_length=None)
        else:
            frame = _read_csv(cfg, path)
    except (pl.exceptions.PolarsError, OSError) as e:  # OSError: e.g. no mmap on /proc
        about = f"; {describe_first_line(path)}" if fmt == "csv" else ""
        first = plain(str(e).strip().splitlines()[0])
        raise BadInputError(path, f"cannot be read as {fmt} ({first}){about}") from e
    if frame.is_empty():
        raise BadInputError(path, "the file is empty (no rows)")
    # A header is line 1. (A quoted field spanning lines is counted as one line.)
    return frame, (1 + int(bool(cfg.get("header", True))) if fmt == "csv" else None)


def _without_bom(path: Path) -> Path | io.BytesIO:
    """``path``, or its bytes after a leading byte-order mark (polars' CSV reader drops one,
    its NDJSON reader fails on it)."""
    with open(path, "rb") as f:
        if f.read(len(BOM_BYTES)) != BOM_BYTES:
            return path
        return io.BytesIO(f.read())


def _read_csv(cfg: Mapping[str, Any], path: Path) -> pl.DataFrame:
    sep = cfg.get("separator") or ("\t" if path.suffix.lower() in TAB_SUFFIXES else ",")
    sep = "\t" if sep == "\\t" else sep  # data.separator='\t' from a shell is two characters
    header, columns = cfg.get("header", True), cfg.get("columns")
    if not header and not columns:
        raise ValueError("data.header=false needs data.columns: the names of the columns, "
                         "in file order")
    return pl.read_csv(
        path,
        separator=sep,
        has_header=bool(header),
        new_columns=None if header else list(columns),
        infer_schema=False,
        null_values=list(cfg.get("null_values") or [""]),
    )
