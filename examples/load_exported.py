"""Run a model exported by ``python -m widedeep.cli.export`` with torch alone (no widedeep import).

    python examples/load_exported.py model.pt2

Checks the program against the example batch stored in the file, then scores a fresh batch of
encoded ids. In a service, the ids come from the run's preprocessing (vocabularies: 0 = missing,
1 = unseen); here they are random ids within each field's cardinality.
"""

from __future__ import annotations

import json
import sys

import torch


def as_inputs(raw: dict) -> dict:
    """The stored example (lists) -> the program's keyword tensors."""
    return {
        "categorical": torch.tensor(raw["categorical"], dtype=torch.long),
        "crosses": torch.tensor(raw["crosses"], dtype=torch.long),
        "dense": torch.tensor(raw["dense"], dtype=torch.float32),
        "bags": [
            (torch.tensor(v, dtype=torch.long), torch.tensor(o, dtype=torch.long))
            for v, o in raw["bags"]
        ],
    }


def random_inputs(schema: dict, size: int) -> dict:
    """A batch of ``size`` rows: one id per field, one to three ids per bag row."""

    def ids(fields: list) -> torch.Tensor:
        cols = [torch.randint(0, f["cardinality"], (size,)) for f in fields]
        return torch.stack(cols, 1) if cols else torch.zeros(size, 0, dtype=torch.long)

    bags = []
    for f in schema["bags"]:
        lengths = torch.randint(1, 4, (size,))
        values = torch.randint(0, f["cardinality"], (int(lengths.sum()),))
        bags.append((values, torch.cumsum(lengths, 0) - lengths))  # offsets: each row's start
    return {
        "categorical": ids(schema["categorical"]),
        "crosses": ids(schema["crosses"]),
        "dense": torch.randn(size, len(schema["dense"])),
        "bags": bags,
    }


def main(path: str) -> None:
    extra = {"widedeep.json": ""}
    model = torch.export.load(path, extra_files=extra).module()
    meta = json.loads(extra["widedeep.json"])
    example = meta["example"]
    logit, wide, deep = model(**as_inputs(example["inputs"]))
    error = (logit - torch.tensor(example["logit"])).abs().max().item()
    print(f"{meta['kind']} model: example batch max |logit - expected| = {error:.2e}")
    if error > 1e-5:
        sys.exit("the exported program does not reproduce its example batch")
    logit, wide, deep = model(**random_inputs(meta["schema"], size=5))
    for row, p in enumerate(torch.sigmoid(logit).tolist()):
        print(f"row {row}: click probability {p:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
