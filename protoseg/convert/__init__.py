"""Checkpoint converters (``protoseg convert-checkpoint --format FORMAT SRC DST``).

- ``official-protoseg``: the ProtoSeg release's ``hrnet_w48_proto_*.pth`` -> a protoseg checkpoint of
  the official variant (``protoseg evaluate --checkpoint DST``);
- ImageNet backbones -> backbone files for ``model.pretrained=DST``: ``hrnet-msra`` (HRNetV2-W48),
  ``resnet-v1c`` (open-mmlab resnet101_v1c), ``mit-nvlabs`` / ``mit-mmseg`` (MiT-B0..B5),
  ``swin-official`` / ``swin-mmseg``.
Nothing is downloaded; formats: shared/spec/checkpoints.md, mappings in each module's docstrings.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ConvertError

FORMATS = ("official-protoseg", "hrnet-msra", "resnet-v1c", "mit-nvlabs", "mit-mmseg", "swin-official",
           "swin-mmseg")


def convert_checkpoint(fmt: str, src: str | Path, dst: str | Path, *, backbone: str | None = None) -> dict:
    """Convert ``src`` (format ``fmt``) to ``dst``; returns a summary."""
    if fmt not in FORMATS:
        raise ConvertError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if Path(dst).resolve() == Path(src).resolve():
        raise ConvertError(f"{dst}: the output must not overwrite the source")
    if fmt == "official-protoseg":
        from .official import convert_official

        return convert_official(src, dst)
    from .imagenet import convert_imagenet

    return convert_imagenet(fmt, src, dst, backbone)


def _main(args) -> int:
    import json

    summary = convert_checkpoint(args.format, args.src, args.dst, backbone=args.backbone)  # ConvertError: status 2
    print(json.dumps(summary))
    return 0


def add_parser(subparsers) -> None:
    c = subparsers.add_parser(
        "convert-checkpoint", help="convert a released or ImageNet checkpoint to protoseg's layout",
        description="official-protoseg -> a checkpoint for `protoseg evaluate`; the ImageNet formats -> "
                    "a backbone file for model.pretrained=DST (loaded strictly).")
    c.add_argument("--format", required=True, choices=FORMATS)
    c.add_argument("--backbone", help="our backbone name (ImageNet formats; default: inferred from the weights)")
    c.add_argument("src")
    c.add_argument("dst")
    c.set_defaults(func=_main)


__all__ = ["FORMATS", "ConvertError", "convert_checkpoint"]
