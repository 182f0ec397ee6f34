"""``protoseg export-backbone``: the backbone of a trained run as a backbone file.

The mini scale pre-trains each small backbone once on its own synthetic set (the stand-in for the
paper's ImageNet initialisation) and every mini run fine-tunes from the exported file through
``model.pretrained=PATH`` (``protoseg/models/backbones/weights.py`` loads it strictly). With
``--remove-checkpoint`` the run's checkpoint is deleted once the backbone file is written: the
pre-training rule uses it, since the exported file holds every backbone tensor in fp32 and nothing
reads the checkpoint afterwards (176.7 MB of ``runs/`` at mini scale).
"""
from __future__ import annotations

from pathlib import Path


def export_backbone(checkpoint: str | Path, out: str | Path, remove_checkpoint: bool = False) -> Path:
    """Write the ``backbone.*`` tensors of ``checkpoint`` (a protoseg checkpoint) as a backbone file;
    with ``remove_checkpoint``, delete ``checkpoint`` after the file is written (never before)."""
    from protoseg.models.backbones.weights import save_backbone_file  # late: torch (keeps `protoseg` fast)

    from .checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    name = ck["config"]["model"]["backbone"]
    state = {k.removeprefix("backbone."): v.float() if v.is_floating_point() else v
             for k, v in ck["model"].items() if k.startswith("backbone.")}
    if not state:
        raise ValueError(f"{checkpoint}: holds no backbone.* tensors")
    written = save_backbone_file(out, name, state, source_format=f"protoseg-run:{ck['config']['run']['name']}")
    if remove_checkpoint:  # only a file that loaded as a protoseg checkpoint (this project wrote it)
        Path(checkpoint).unlink()
    return written


def _cli(args) -> int:
    out = export_backbone(args.checkpoint, args.out, remove_checkpoint=args.remove_checkpoint)
    print(f"wrote {out} (backbone of {args.checkpoint}" + (", checkpoint removed)" if args.remove_checkpoint else ")"))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-backbone", help="write the backbone of a trained checkpoint as a "
                              "backbone file that model.pretrained=PATH loads",
                              description="Write the backbone of a trained checkpoint as a backbone file.")
    p.add_argument("checkpoint", help="a protoseg checkpoint, e.g. runs/.../checkpoints/final.pt")
    p.add_argument("out", help="the backbone file to write (.pt)")
    p.add_argument("--remove-checkpoint", action="store_true",
                   help="delete the checkpoint once the backbone file is written (the exported file "
                   "supersedes it; the pre-training rule does this)")
    p.set_defaults(func=_cli)


__all__ = ["export_backbone"]
