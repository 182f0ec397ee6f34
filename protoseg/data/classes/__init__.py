"""Class lists and label maps, copied from ``shared/data`` (see its README for sources and checks).

Read with :func:`protoseg.data.classes.read_table`; the files ship as package data.
"""
from __future__ import annotations

import csv
import functools
from importlib import resources

TABLES = (
    "ade20k_150.tsv",
    "ade20k_full_847.tsv",
    "cityscapes_19.tsv",
    "cityscapes_labels_all.tsv",
    "coco_stuff_171.tsv",
)


@functools.cache
def read_table(filename: str) -> tuple[dict[str, str], ...]:
    """Rows of one TSV as dicts of strings (header line gives the keys)."""
    if filename not in TABLES:
        raise KeyError(f"unknown class table {filename!r}; expected one of {TABLES}")
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    return tuple(dict(r) for r in rows)
