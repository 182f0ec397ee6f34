"""Loading a trained run from its checkpoint, and ``protoseg predict``: palette overlays and, for the
prototype head, the nearest-prototype map of the paper's Fig. 3.

Files per image (``<stem>`` of the input): ``<stem>_pred.png`` (palette-coloured classes at image
size), ``<stem>_overlay.png`` (image and prediction blended 50/50), and for prototype heads
``<stem>_prototypes.png``: every pixel coloured by its nearest prototype (class colour shaded by the
prototype index within the class, K shades).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from protoseg.atomic_io import write_bytes_atomic
from protoseg.data.image_io import encode_png, read_rgb

from .checkpoint import load_checkpoint
from protoseg.config import RunConfig, apply_overrides


@dataclass
class LoadedRun:
    cfg: RunConfig
    spec: Any
    model: torch.nn.Module
    device: torch.device
    iteration: int


def load_run(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
             device: str | torch.device | None = None) -> LoadedRun:
    """Config (from the checkpoint, plus ``overrides``), dataset spec and model in eval mode."""
    from protoseg.models import build_model

    ck = load_checkpoint(checkpoint)
    cfg = RunConfig.from_dict(apply_overrides(ck["config"], list(overrides)), source=f"{checkpoint} config")
    if cfg.data.root and (Path(cfg.data.root) / "meta.json").is_file():
        cfg.check_root_identity(splits=())  # the root must hold what the run was trained on (issue 19)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    import dataclasses

    model = build_model(dataclasses.replace(cfg.model, pretrained=None))  # the checkpoint holds every weight
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    return LoadedRun(cfg=cfg, spec=cfg.dataset_spec(), model=model, device=device, iteration=int(ck["iteration"]))


def colorize(classes: np.ndarray, palette) -> np.ndarray:
    """``[H, W]`` class ids -> ``[H, W, 3]`` uint8 (ids outside the palette are black)."""
    lut = np.zeros((max(len(palette), int(classes.max(initial=0)) + 1), 3), dtype=np.uint8)
    lut[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[classes]


def prototype_colors(classes: np.ndarray, protos: np.ndarray, palette, num_prototypes: int) -> np.ndarray:
    """Class colour shaded from 0.45x to 1.0x by the prototype index (Fig. 3 style)."""
    base = colorize(classes, palette).astype(np.float32)
    shade = 0.45 + 0.55 * (protos.astype(np.float32) / max(num_prototypes - 1, 1))
    return np.clip(base * shade[..., None], 0, 255).astype(np.uint8)


@torch.no_grad()
def predict_images(run: LoadedRun, images, out_dir: str | Path, *, nearest: bool = True) -> list[Path]:
    from protoseg.data.pipelines import pipelines_from_spec
    from protoseg.evaluation.inference import inference
    from protoseg.heads import PrototypeHead

    out_dir = Path(out_dir)
    pipe = pipelines_from_spec(run.spec, train=False)
    model, spec, device = run.model, run.spec, run.device
    written: list[Path] = []
    for path in images:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image not found")
        rgb = read_rgb(path)
        x = pipe(rgb, np.zeros(rgb.shape[:2], dtype=np.int64))["image"].unsqueeze(0).to(device)
        logits = inference(lambda t: model(t).logits.float(), x, spec, rgb.shape[:2],
                           align_corners=bool(getattr(model, "align_corners", False)))
        pred = logits.argmax(1)[0].cpu().numpy()
        color = colorize(pred, spec.palette)
        overlay = (0.5 * rgb.astype(np.float32) + 0.5 * color.astype(np.float32)).astype(np.uint8)
        for suffix, arr in (("pred", color), ("overlay", overlay)):
            write_bytes_atomic(out_dir / f"{path.stem}_{suffix}.png", encode_png(arr))
            written.append(out_dir / f"{path.stem}_{suffix}.png")
        if nearest and isinstance(model.head, PrototypeHead):
            feats = model.decoder(model.backbone(x))
            cls, proto, _ = model.head.nearest(feats)
            size = rgb.shape[:2]
            cls = F.interpolate(cls[:, None].float(), size=size, mode="nearest")[0, 0].long().cpu().numpy()
            proto = F.interpolate(proto[:, None].float(), size=size, mode="nearest")[0, 0].long().cpu().numpy()
            img = prototype_colors(cls, proto, spec.palette, model.head.num_prototypes)
            write_bytes_atomic(out_dir / f"{path.stem}_prototypes.png", encode_png(img))
            written.append(out_dir / f"{path.stem}_prototypes.png")
    return written
