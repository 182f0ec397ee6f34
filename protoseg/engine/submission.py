"""Cityscapes test-server submissions (Table 6): ``protoseg predict --format cityscapes-submission``.

For every image of a prepared split: the model's prediction (the dataset's test protocol, the
model's own ``align_corners``) in trainIds, mapped to Cityscapes labelIds (trainId 0..18 -> 7, 8, 11,
..., 33; ``protoseg/data/classes/cityscapes_19.tsv``), written as an 8-bit PNG named
``<city>_<seq>_<frame>_leftImg8bit.png`` (the server matches ``<city>_<seq>_<frame>``), and all of
them in ``submission.zip`` (flat), ready to upload.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from protoseg.atomic_io import write_bytes_atomic
from protoseg.data.image_io import encode_png

SUFFIX = "_leftImg8bit.png"


def train_to_label_lut() -> np.ndarray:
    """uint8[256]: trainId -> labelId (anything else -> 0, 'unlabeled')."""
    from protoseg.data.classes import read_table

    lut = np.zeros(256, dtype=np.uint8)
    for row in read_table("cityscapes_19.tsv"):
        lut[int(row["train_id"])] = int(row["label_id"])
    return lut


def label_to_train_lut() -> np.ndarray:
    """uint8[256]: labelId -> trainId (labels outside the 19 classes -> 255)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for train_id, label_id in enumerate(train_to_label_lut()[:19]):
        lut[label_id] = train_id
    return lut


@torch.no_grad()
def write_cityscapes_submission(run, split: str, out_dir: str | Path, *, progress: bool = False) -> dict:
    """Predict every image of ``split`` of the run's prepared root; write labelId PNGs and the zip."""
    from protoseg.data.dataset import SegmentationDataset
    from protoseg.evaluation.inference import inference

    from protoseg.config import ConfigError

    spec = run.spec
    if spec.name != "cityscapes":
        raise ConfigError(f"--format cityscapes-submission needs a Cityscapes model, got dataset {spec.name!r}")
    root = run.cfg.data.root
    if not root:
        raise ConfigError("data.root is empty: give the prepared Cityscapes root (--set data.root=PATH)")
    try:
        ds = SegmentationDataset.from_spec(root, spec, split, train=False)
    except Exception as err:  # DataError: missing root or split
        raise ConfigError(str(err)) from None
    out_dir = Path(out_dir)
    lut = train_to_label_lut()
    align = bool(getattr(run.model, "align_corners", False))
    model, device = run.model, run.device
    names: list[str] = []
    items = range(len(ds))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"submission {split}", dynamic_ncols=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in items:
            item = ds[i]
            image = item["image"].unsqueeze(0).to(device)
            logits = inference(lambda t: model(t).logits.float(), image, spec, tuple(item["label"].shape[-2:]),
                               align_corners=align)
            pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
            name = f"{item['stem']}{SUFFIX}"
            png = encode_png(lut[pred])
            write_bytes_atomic(out_dir / name, png)
            zf.writestr(name, png)
            names.append(name)
    write_bytes_atomic(out_dir / "submission.zip", buf.getvalue())
    return {"split": split, "images": len(names), "dir": str(out_dir), "zip": str(out_dir / "submission.zip")}
