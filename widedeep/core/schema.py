"""The feature contract: what a dataset's columns are, independent of any file format.

Shapes used everywhere in widedeep:
    B = batch size, F = single-valued categorical fields, C = cross features,
    N = dense (numeric) fields, D = embedding dimension.

Every categorical id space (field, cross or bag) reserves two ids:
    0 = missing / padding (contributes nothing to any tower),
    1 = unseen / out of vocabulary (a learned weight like any other value).
So a field with V known values has ``cardinality == V + 2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PADDING_ID = 0
OOV_ID = 1
NUM_RESERVED_IDS = 2


@dataclass(frozen=True)
class CategoricalField:
    """A single-valued categorical field; ids in ``[0, cardinality)``."""

    name: str
    cardinality: int

    def __post_init__(self) -> None:
        if self.cardinality < NUM_RESERVED_IDS:
            raise ValueError(
                f"field {self.name!r}: cardinality {self.cardinality} < {NUM_RESERVED_IDS} "
                "(ids 0 = missing and 1 = unseen are always reserved)"
            )


@dataclass(frozen=True)
class BagField(CategoricalField):
    """A multi-valued categorical field (e.g. a movie's genres), stored as values + offsets."""


@dataclass(frozen=True)
class CrossField(CategoricalField):
    """A cross-product feature ``AND(field_a=x, field_b=y, ...)``.

    ``hashed`` crosses map each combination into ``cardinality - 2`` buckets with the project's
    own stable hash; exact crosses keep a vocabulary of observed combinations.
    """

    fields: tuple[str, ...] = ()
    hashed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.fields) < 2:
            raise ValueError(f"cross {self.name!r} needs at least two fields, got {self.fields}")


@dataclass(frozen=True)
class Schema:
    """A dataset's fields. Column order here is the column order of every batch tensor."""

    dense: tuple[str, ...] = ()
    categorical: tuple[CategoricalField, ...] = ()
    crosses: tuple[CrossField, ...] = ()
    bags: tuple[BagField, ...] = ()
    label: str = "label"

    def __post_init__(self) -> None:
        names = [*self.dense, *(f.name for f in self.all_categorical)]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"schema: duplicated field names {duplicated}")
        single = {f.name for f in (*self.categorical, *self.bags)}
        for cross in self.crosses:
            unknown = [f for f in cross.fields if f not in single]
            if unknown:
                raise ValueError(f"cross {cross.name!r} refers to unknown fields {unknown}")

    @property
    def all_categorical(self) -> tuple[CategoricalField, ...]:
        """Fields, crosses and bags: every id space the wide tower holds a weight for."""
        return (*self.categorical, *self.crosses, *self.bags)

    @property
    def num_dense(self) -> int:
        return len(self.dense)

    def field(self, name: str) -> CategoricalField:
        for f in self.all_categorical:
            if f.name == name:
                return f
        raise KeyError(f"schema has no categorical field {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Primitive types only, so it can live in checkpoint hyper-parameters and JSON."""
        return {
            "dense": list(self.dense),
            "categorical": [asdict(f) for f in self.categorical],
            "crosses": [{**asdict(f), "fields": list(f.fields)} for f in self.crosses],
            "bags": [asdict(f) for f in self.bags],
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        return cls(
            dense=tuple(d.get("dense", ())),
            categorical=tuple(CategoricalField(**f) for f in d.get("categorical", ())),
            crosses=tuple(
                CrossField(**{**f, "fields": tuple(f["fields"])}) for f in d.get("crosses", ())
            ),
            bags=tuple(BagField(**f) for f in d.get("bags", ())),
            label=d.get("label", "label"),
        )

    def without_crosses(self, keep: Sequence[str] = ()) -> Schema:
        """The same schema with only the named crosses (used to size the wide part)."""
        return Schema(
            dense=self.dense,
            categorical=self.categorical,
            crosses=tuple(c for c in self.crosses if c.name in keep),
            bags=self.bags,
            label=self.label,
        )
