"""Every paper-scale entry (MMSegmentation recipe) against MMSegmentation's values in docs/recipes-mmseg.md."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protoseg.config import RunConfig
from protoseg.pipeline.experiments import build_plan

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes-mmseg.md"


def _table() -> list[dict[str, str]]:
    text = DOC.read_text()
    block = text.split("<!-- recipes-mmseg:begin -->")[1].split("<!-- recipes-mmseg:end -->")[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


ROWS = _table()


@pytest.fixture(scope="module")
def composed():
    """(model, dataset) -> the RunConfigs of every MMSeg-recipe entry of the paper plan."""
    plan = build_plan(scale="paper", seeds=[0])
    out: dict[tuple[str, str], list] = {}
    for e in plan.entries.values():
        if e.recipe != "mmseg" or e.table == "smoke":
            continue
        cfg = plan.run_config(plan.entry_run[e.id], 0, e.id)
        if e.dataset == "ade20k-full":  # its class count comes from the prepared root's meta: not here
            cfg["model"]["num_classes"], cfg["data"]["root"] = cfg["data"]["top_n"], ""
        out.setdefault((e.model, e.dataset), []).append(RunConfig.from_dict(cfg))
    return out


def _size(text: str) -> tuple[int, int]:
    a, b = text.split("x")
    return int(a), int(b)


def test_every_pair_of_the_tables_has_a_row(composed) -> None:
    assert {(r["model"], r["dataset"]) for r in ROWS} == set(composed)


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['model']}@{r['dataset']}" for r in ROWS])
def test_composed_config_equals_mmsegmentation(row, composed) -> None:
    for cfg in composed[row["model"], row["dataset"]]:
        full = cfg.data.dataset == "ade20k-full"  # top-N label sets need a prepared root; sizes do not
        o = cfg.optim
        spec = (dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, top_n=None)) if full else cfg).dataset_spec()
        got = {
            "optim": o.name, "lr": o.lr, "weight decay": o.weight_decay,
            "decay norm/pos": "no" if o.no_decay_norm_pos else "yes", "head x": o.head_lr_mult,
            "poly power": o.poly_power, "min lr": o.min_lr, "warm-up": o.warmup_iters,
            "crop": spec.crop_size, "base scale": spec.base_scale, "cat max ratio": spec.cat_max_ratio,
            "test": spec.test_mode, "test scale": spec.test_scale,
        }
        want = {
            "optim": row["optim"], "lr": float(row["lr"]), "weight decay": float(row["weight decay"]),
            "decay norm/pos": row["decay norm/pos"], "head x": float(row["head x"]),
            "poly power": float(row["poly power"]), "min lr": float(row["min lr"]),
            "warm-up": int(row["warm-up"]), "crop": _size(row["crop"]), "base scale": _size(row["base scale"]),
            "cat max ratio": float(row["cat max ratio"]), "test": row["test"], "test scale": _size(row["test scale"]),
        }
        assert got == want, cfg.tracking.entry
        assert (spec.augmentation, spec.normalisation, spec.test_resize, cfg.data.class_weight) == (
            "mmseg", "mmseg", True, None)
        if spec.test_mode == "slide":
            assert (spec.slide_crop, spec.slide_stride) == ((1024, 1024), (768, 768))
        assert o.momentum == 0.9 and o.betas == [0.9, 0.999]
        m = cfg.model
        if m.decoder == "mlp":
            assert m.decoder_channels == (256 if m.backbone in ("mit_b0", "mit_b1") else 768) and m.dropout == 0.1
        assert m.aux_head == (m.backbone == "resnet101")
