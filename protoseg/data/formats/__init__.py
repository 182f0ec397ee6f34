"""Official on-disk formats, one module each; ``get_format(name)`` looks one up."""
from __future__ import annotations

from protoseg.data.errors import DataError
from protoseg.data.formats import ade20k, ade20k_full, cityscapes, coco_stuff
from protoseg.data.formats.base import Format, Sample

FORMATS: dict[str, Format] = {
    f.name: f for f in (ade20k.FORMAT, ade20k_full.FORMAT, cityscapes.FORMAT,
                        coco_stuff.FORMAT_10K, coco_stuff.FORMAT_164K)
}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(FORMATS)}") from None


__all__ = ["FORMATS", "Format", "Sample", "get_format"]
